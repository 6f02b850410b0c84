"""Hub helpers: folders that load as remote code, model cards, and uploads.

Remote code. `DiTARConfig`, `DiTARForConditionalGeneration` and `DiTARProcessor` are registered for the Auto classes
(`__init__.py`), so their `save_pretrained` writes `auto_map` and copies their code files (with every module they import
relatively). A pipeline folder additionally gets, from [`write_pipeline_remote_code`]:

    model_index.json   "_class_name": ["pipeline_ditar", "DiTARPipeline"], "model": ["modeling_ditar", ...], ...
    pipeline_ditar.py  (+ every module it imports relatively, at the root)
    model/modeling_ditar.py, processor/processing_ditar.py, vocoder/vocoder_griffinlim.py  (+ their relative imports)

so that `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` works where `modeling_ditar` is not
installed. `DiTARPipeline.from_pretrained` maps those file names back to the installed modules
([`installed_libraries`]), so the package's own classes are used when it is installed and nothing is executed from the
folder.

Model cards. [`render_model_card`] fills a Jinja template (the project's card template when it sits next to the
package, else a built-in copy of its essentials) through `huggingface_hub.ModelCard`, with Hub metadata (library_name,
pipeline_tag, license, tags, datasets, base_model and, given evaluation results, a model-index with WER and SIM).

Uploads. [`push_to_hub`] saves an object into a temporary folder, writes its card and commits every file with one
`HfApi.create_commit`, which also deletes the repository's files the package wrote earlier and the new folder lacks
([`stale_files`]), so the repository matches the folder; [`commit_operations`] lists the added files, so everything up
to the network calls is testable.

This module only uses relative imports lazily, so it can travel as remote code with the pipeline.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

__all__ = [
    "commit_operations",
    "installed_libraries",
    "load_results",
    "make_saved_weights_readable",
    "model_weights_fingerprint",
    "push_keywords",
    "push_to_hub",
    "render_model_card",
    "save_for_hub",
    "stale_files",
    "write_pipeline_remote_code",
    "write_transformers_entry_points",
]

CODE_DIR = Path(__file__).resolve().parent
PAPER_URL = "https://arxiv.org/abs/2502.03930"
DEFAULT_TAGS = ["text-to-speech", "ditar", "zero-shot-tts", "voice-cloning", "speech-synthesis", "custom_code"]
# `from .x import y` / `import .x` at the start of a line (indented lazy imports too), like transformers and diffusers
_RELATIVE_IMPORT = re.compile(r"^\s*(?:from\s+\.(\w+)\s+import|import\s+\.(\w+))", flags=re.MULTILINE)


# ----------------------------------------------------------------------------------------------------------------------
# remote code
# ----------------------------------------------------------------------------------------------------------------------


def process_umask() -> int:
    """The process's umask, read without changing it (setting it, even briefly, would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def weight_file_inodes(folder: str | os.PathLike) -> dict[Path, int]:
    """The `*.safetensors` files under `folder` with their inodes, to tell afterwards which ones a save wrote."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {path: path.stat().st_ino for path in folder.rglob("*.safetensors") if path.is_file()}


def make_saved_weights_readable(folder: str | os.PathLike, earlier: dict[Path, int] | None = None) -> None:
    """Give the weight files a save wrote under `folder` the mode every other file of the save gets (0666 less the
    umask). safetensors (from 0.8) writes through a temporary file created private (0600) and renames it into place,
    so a folder saved by one user, or in a container image built as root, could not be loaded by another. Only files
    at 0600 are changed, and with `earlier` (from [`weight_file_inodes`] before the save) only those the save wrote."""
    for path, inode in weight_file_inodes(folder).items():
        if earlier is None or earlier.get(path) != inode:  # one there before the save is left as it is
            _open_private_weight_file(path)


def _open_private_weight_file(path: Path) -> None:
    """A weight file at 0600 gets the mode a new file gets (0666 less the umask; unchanged where that is 0600)."""
    mode = 0o666 & ~process_umask()
    if mode != 0o600 and not path.is_symlink() and path.stat().st_mode & 0o777 == 0o600:
        os.chmod(path, mode)


def save_safetensors(tensors: dict, path: str | os.PathLike) -> None:
    """`safetensors.torch.save_file` (with the "pt" format tag) for the files this package writes itself, readable
    like the rest of their folder (see [`make_saved_weights_readable`])."""
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"format": "pt"})
    _open_private_weight_file(Path(path))


def looks_like_a_local_path(name: str) -> bool:
    """Whether `name` can only be a local path, not a Hub repo id ('name' or 'org/name')."""
    return (
        os.path.exists(name)
        or os.path.isabs(name)
        or name.startswith((".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or name.endswith("/")
    )


def folder_or_hub_files(source: str | os.PathLike, names: tuple[str, ...], what: str, **hub_kwargs) -> list[Path]:
    """The files `names` of `what` (e.g. "a LoRA adapter") from a local folder (its `subfolder` when `hub_kwargs` name
    one, as on the Hub), or else from the Hub repo `source` (`hub_kwargs` go to the download). Errors name the source
    and what was expected instead of a Hub error about a path that was meant locally: a missing local path, a file, a
    folder without the files, or a repo id that cannot be fetched."""
    source = os.path.expanduser(str(source))  # as the save methods write "~/..."
    folder, name = Path(source), source
    if folder.is_dir() and hub_kwargs.get("subfolder"):
        folder = folder / hub_kwargs["subfolder"]
        name = str(folder)
    if folder.is_dir():
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not {what} folder: it has no {', '.join(missing)}.")
        return [folder / n for n in names]
    if looks_like_a_local_path(name):
        reason = "it is a file" if folder.exists() else "it does not exist"
        raise FileNotFoundError(
            f"{name} is not {what} folder ({reason}): pass the folder holding {', '.join(names)}, or a Hub repo id "
            "such as 'org/name'."
        )
    from huggingface_hub import hf_hub_download

    try:
        return [Path(hf_hub_download(name, n, **hub_kwargs)) for n in names]
    except Exception as err:  # huggingface_hub raises many types: offline, no such repo, no such file, bad id
        raise OSError(
            f"{name!r} is not a folder here, and {what} could not be fetched from the Hub repo of that name "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})."
        ) from err


def relative_imports(path: str | os.PathLike) -> list[str]:
    """Module names imported relatively by one file (`from .x import` / `import .x`), in order of appearance."""
    text = Path(path).read_text(encoding="utf-8")
    return list(dict.fromkeys(a or b for a, b in _RELATIVE_IMPORT.findall(text)))


def code_closure(path: str | os.PathLike) -> list[Path]:
    """The file and every sibling module it imports relatively, recursively (the files remote code needs)."""
    path = Path(path)
    seen: dict[Path, None] = {path: None}
    queue = [path]
    while queue:
        current = queue.pop(0)
        for name in relative_imports(current):
            sibling = path.parent / f"{name}.py"
            if not sibling.is_file():
                raise FileNotFoundError(f"{current} imports .{name}, but {sibling} does not exist.")
            if sibling not in seen:
                seen[sibling] = None
                queue.append(sibling)
    return list(seen)


def module_file(cls: type) -> Path | None:
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file else None


def _copy_files(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        target = folder / file.name
        if not target.is_file() or target.read_bytes() != file.read_bytes():
            shutil.copyfile(file, target)


def drop_loaded_from_path(folder: str | os.PathLike) -> None:
    """Take `_name_or_path` out of a saved folder's `model_index.json`: diffusers writes there where the pipeline was
    loaded from (a local path such as /home/name/..., or a repo id), which says nothing about the saved folder, and a
    push would publish it. Loading records it again from wherever the folder is then."""
    index_path = Path(folder) / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    if index.pop("_name_or_path", None) is not None:
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_pipeline_remote_code(pipeline, folder: str | os.PathLike) -> dict:
    """Make a saved pipeline folder self-contained for `trust_remote_code=True` (see the module docstring).

    Components whose class is defined next to the pipeline's own module (DiTAR's model, processor and vocoder) get their
    code in their folder and are recorded by file name; others (diffusers' scheduler and VAE) are left as they are.
    Returns the new `model_index.json` content."""
    folder = Path(folder)
    pipeline_file = module_file(type(pipeline))
    if pipeline_file is None:
        raise ValueError(f"cannot find the source file of {type(pipeline).__name__}; it must live in a module file.")
    _copy_files(code_closure(pipeline_file), folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text(encoding="utf-8"))
    index["_class_name"] = [pipeline_file.stem, type(pipeline).__name__]
    for name, component in pipeline.components.items():
        if component is None:
            continue
        source = module_file(type(component))
        if source is None or source.parent != pipeline_file.parent:
            continue
        _copy_files(code_closure(source), folder / name)
        index[name] = [source.stem, type(component).__name__]
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return index


def installed_libraries(config: dict, package: str, code_dir: str | os.PathLike = CODE_DIR) -> dict:
    """A `model_index.json` dict with the remote-code names of our components (`["modeling_ditar", cls]`, the file in
    the component folder) replaced by the installed modules (`["<package>.modeling_ditar", cls]`), and `_class_name`
    made a plain string, so diffusers imports nothing from the folder."""
    config = dict(config)
    if isinstance(config.get("_class_name"), (list, tuple)):
        config["_class_name"] = config["_class_name"][1]
    for key, value in list(config.items()):
        if key.startswith("_") or not isinstance(value, (list, tuple)) or len(value) != 2:
            continue
        library, class_name = value
        if isinstance(library, str) and "." not in library and (Path(code_dir) / f"{library}.py").is_file():
            config[key] = [f"{package}.{library}", class_name]
    return config


# Auto classes a pipeline folder's root answers (transformers' text-to-speech models live under
# AutoModelForTextToWaveform; AutoModel gives the feature-level model with the same weights).
ROOT_AUTO_MAP = {
    "AutoConfig": "configuration_ditar.DiTARConfig",
    "AutoModel": "modeling_ditar.DiTARForConditionalGeneration",
    "AutoModelForTextToWaveform": "modeling_ditar.DiTARForTextToSpeech",
}


# vocoder class -> the `vocoder_type` under which `DiTARForTextToSpeech` holds it (`modeling_ditar.build_vocoder`)
TRANSFORMERS_VOCODER_TYPES = {
    "GriffinLimVocoder": "griffin_lim",
    "VocosVocoder": "vocos",
    "SpeechT5HifiGanVocoder": "speecht5_hifigan",
}
SAFE_WEIGHTS_INDEX = "model.safetensors.index.json"
# the root file with the text-to-speech model's vocoder weights (named as the model holds them, `vocoder.*`)
ROOT_VOCODER_WEIGHTS = "model-vocoder.safetensors"


def write_transformers_entry_points(pipeline, folder: str | os.PathLike) -> bool:
    """Give a saved pipeline folder the files transformers reads at a repository's root: `config.json` (the model's
    config with its vocoder's, for `DiTARForTextToSpeech`; a half-precision `dtype` becomes float32, as the pipeline
    computes), `generation_config.json`, the weights and the processor's files. Skipped (returns False) for pipelines
    whose features are decoded by a VAE or by a vocoder the text-to-speech model cannot hold (one not in
    `TRANSFORMERS_VOCODER_TYPES`).

    Weights: with a weight-free vocoder (Griffin-Lim), hard links to `model/`'s files where the file system allows, so
    they take no extra space (the Hub stores equal files once). With a neural vocoder, a sharded-checkpoint index
    (`model.safetensors.index.json`) whose model entries point at `model/`'s own files and whose `vocoder.*` entries
    point at a root file holding the vocoder's weights under the names the text-to-speech model gives them."""
    folder = Path(folder)
    vocoder = getattr(pipeline, "vocoder", None)
    vocoder_type = TRANSFORMERS_VOCODER_TYPES.get(type(vocoder).__name__)
    if getattr(pipeline, "vae", None) is not None or vocoder is None or vocoder_type is None:
        return False
    config = json.loads((folder / "model" / "config.json").read_text(encoding="utf-8"))
    # a transformers config (the SpeechT5 HiFi-GAN) is not a mapping; its non-default fields rebuild it
    settings = vocoder.config.to_diff_dict() if hasattr(vocoder.config, "to_diff_dict") else dict(vocoder.config)
    config["vocoder_config"] = {
        "vocoder_type": vocoder_type,
        **{k: v for k, v in settings.items() if not k.startswith("_")},
    }
    config["architectures"] = ["DiTARForTextToSpeech"]
    config["auto_map"] = dict(ROOT_AUTO_MAP)
    if config.get("dtype") in ("float16", "bfloat16"):
        # stored in half precision (either kind) to stay small, computed in float32 unless a caller asks otherwise
        # (`dtype=`), as `DiTARPipeline.from_pretrained` computes it: CPUs without native half-precision kernels run
        # it several times slower (a sentence took 3x as long in float16 as in float32 on 2 cores), and the entry
        # points would otherwise speak differently from the pipeline loaded from the same folder
        config["dtype"] = "float32"
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    link_model_files(folder, vocoder.state_dict())  # no vocoder weights for Griffin-Lim (its buffers are not saved)
    for source in sorted((folder / "processor").iterdir()):
        if source.is_file() and source.suffix != ".py":
            shutil.copyfile(source, folder / source.name)
    return True


def link_model_files(folder: Path, vocoder_weights: dict) -> None:
    """The root's share of `model/`'s files (all but its config and code): hard links (or copies), or, with a neural
    vocoder's weights, a root index naming `model/`'s weight files beside a root file of the vocoder's weights."""
    for source in sorted((folder / "model").iterdir()):
        if source.name == "config.json" or source.suffix == ".py" or not source.is_file():
            continue
        if vocoder_weights and (source.suffix == ".safetensors" or source.name == SAFE_WEIGHTS_INDEX):
            continue  # listed in the root index instead
        _link_or_copy(source, folder / source.name)
    if vocoder_weights:
        _write_root_weight_index(folder, vocoder_weights)


def _write_root_weight_index(folder: Path, vocoder_weights: dict) -> None:
    """The root's sharded-checkpoint index for a text-to-speech model with a neural vocoder: the model's tensors stay
    in `model/` (the index names those files; nothing is copied) and the vocoder's are written once more, prefixed
    `vocoder.`, to `ROOT_VOCODER_WEIGHTS` (they are small next to the model)."""
    from safetensors import safe_open

    model_index = folder / "model" / SAFE_WEIGHTS_INDEX
    if model_index.is_file():
        shards = json.loads(model_index.read_text(encoding="utf-8"))["weight_map"]
        weight_map = {key: f"model/{shard}" for key, shard in shards.items()}
    else:
        with safe_open(str(folder / "model" / "model.safetensors"), framework="pt") as f:
            weight_map = {key: "model/model.safetensors" for key in f.keys()}
    tensors = {f"vocoder.{name}": tensor.detach().cpu().contiguous() for name, tensor in vocoder_weights.items()}
    save_safetensors(tensors, folder / ROOT_VOCODER_WEIGHTS)
    weight_map.update({name: ROOT_VOCODER_WEIGHTS for name in tensors})
    total_size = sum((folder / file).stat().st_size for file in set(weight_map.values()))
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors").unlink(missing_ok=True)  # a single-file checkpoint would shadow the index
    (folder / SAFE_WEIGHTS_INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _link_or_copy(source: Path, target: Path) -> None:
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, target)


# ----------------------------------------------------------------------------------------------------------------------
# model cards
# ----------------------------------------------------------------------------------------------------------------------

REPO_TEMPLATE = CODE_DIR.parent / "model_cards" / "ditar_template.md"
# The essentials of the project's card template, for installs that do not have it next to the package.
FALLBACK_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ summary }}

This is a [DiTAR]({{ paper_url }}) zero-shot text-to-speech {{ kind }} (Diffusion Transformer Autoregressive modeling).

## Evaluation

{{ results_table }}
{% if extra_results %}
{{ extra_results }}
{% endif %}
## Use it

```python
{{ usage }}
```
"""

PLACEHOLDER = "_placeholder_"


def load_results(path: str | os.PathLike) -> dict:
    """Read an evaluation results.json (a `rows` list of systems with WER, SIM, ...) and check its rows.

    A file that is not JSON (or not UTF-8), has no `rows` list or a row without `key` or `name` is a `ValueError`
    whose message starts with `path`."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:  # e.g. a cases.jsonl or an audio file given instead
        raise ValueError(f"{path}: not a JSON file ({err})") from None
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise ValueError(f"{path}: not an evaluation results.json (no 'rows' list).")
    for row in results["rows"]:
        if "key" not in row or "name" not in row:
            raise ValueError(f"{path}: every row needs 'key' and 'name' (got {sorted(row)}).")
    return results


def _number(value, percent: bool = False, digits: int = 3):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return round(100 * float(value), 2) if percent else round(float(value), digits)


def results_table(results: dict | None) -> str:
    """Markdown table of the evaluation rows, or a table of clearly marked placeholders without results."""
    columns = ["system", "cases", "WER (%)", "WER capped (%)", "SIM (prompt)", "stop rate", "RTF"]
    # naturalness (DNSMOS, evaluated with --dnsmos) as two more columns when any row has it
    dnsmos = results is not None and any(r.get("dnsmos_p808") is not None for r in results["rows"])
    if dnsmos:
        columns += ["DNSMOS P.808", "DNSMOS OVRL"]
    header = "| " + " | ".join(columns) + " |\n" + "|---" * len(columns) + "|"
    if results is None:
        row = f"| DiTAR (this checkpoint) | {PLACEHOLDER} | " + " | ".join([PLACEHOLDER] * 5) + " |"
        note = (
            "**No evaluation has been run for this checkpoint yet: every number above is a placeholder.** Fill them "
            "by rendering the card again with evaluation results (`render_model_card(..., results=results_json)`)."
        )
        return f"{header}\n{row}\n\n{note}"

    def cell(value, percent=False, digits=3):
        number = _number(value, percent, digits)
        return "–" if number is None else (f"{number:.2f}" if percent else f"{number:.{digits}f}")

    def cases(r):  # failed cases (an error, no speech) are named: the row's numbers do not cover them as speech
        return f"{r.get('cases', '–')}" + (f" ({r['failed']} failed)" if r.get("failed") else "")

    def sim(r):  # the number of cases SIM is averaged over, where cases failed and it is not every case
        n = r.get("sim_prompt_n")
        shown = r.get("failed") and n is not None and r.get("sim_prompt") is not None and n != r.get("cases")
        return cell(r.get("sim_prompt")) + (f" (n={n})" if shown else "")

    lines = [header]
    for r in results["rows"]:
        line = (
            f"| {r['name']} | {cases(r)} | {cell(r.get('wer'), True)} | {cell(r.get('wer_capped'), True)} | "
            f"{sim(r)} | {cell(r.get('stop_rate'), digits=2)} | {cell(r.get('rtf'), digits=2)} |"
        )
        if dnsmos:
            line += f" {cell(r.get('dnsmos_p808'), digits=2)} | {cell(r.get('dnsmos_ovrl'), digits=2)} |"
        lines.append(line)
    meta = results.get("meta", {})
    settings = meta.get("settings", {})
    details = []
    if meta.get("num_cases"):
        details.append(f"{meta['num_cases']} cases")
    for key in ("steps", "guidance_scale", "temperature", "seed"):
        if settings.get(key) is not None:
            details.append(f"{key} {settings[key]}")
    if meta.get("asr"):
        details.append(f"ASR: {meta['asr'] if isinstance(meta['asr'], str) else json.dumps(meta['asr'])}")
    if meta.get("speaker"):
        speaker = meta["speaker"]
        details.append(f"SIM: {speaker if isinstance(speaker, str) else json.dumps(speaker)}")
    if meta.get("date"):
        details.append(f"run {meta['date']}")
    note = "WER: corpus-level, lowercased, punctuation stripped. SIM: speaker-embedding cosine to the prompt."
    if dnsmos:
        note += " DNSMOS: a non-intrusive estimate of listeners' quality ratings (1-5; P.808, and P.835's OVRL)."
    if failed_cases_warnings(results):
        note += (
            ' **Some cases failed** ("N (k failed)"): k of the row\'s N cases ended in an error and produced no '
            "speech, so its numbers do not describe the model's speech on every case; SIM (n=...) is averaged over n "
            "cases."
        )
    return "\n".join(lines) + "\n\n" + note + ("\n\nSettings: " + "; ".join(details) if details else "")


def failed_cases_warnings(results: dict | None) -> list[str]:
    """One sentence per results row with failed cases (an evaluation's `failed` count), for the tools that put the
    row's numbers into a card."""
    return [
        f"{r['failed']} of the {r.get('cases', '?')} cases of row {r['key']!r} ({r['name']}) failed in the evaluation "
        "(an error, no speech): its numbers do not describe the model's speech on every case; the card marks them "
        f'"{r.get("cases", "?")} ({r["failed"]} failed)"'
        for r in (results or {}).get("rows", [])
        if r.get("failed")
    ]


def extra_results_tables(extra: list[tuple[str, dict | str | os.PathLike]] | None) -> str:
    """One `### title` section with a results table per (title, results.json) pair."""
    sections = []
    for title, results in extra or []:
        if not isinstance(results, dict):
            results = load_results(results)
        sections.append(f"### {title}\n\n{results_table(results)}")
    return "\n\n".join(sections)


def eval_results(
    results: dict, dataset_name: str, dataset_type: str, dataset_split: str | None = None, row_key: str = "model"
) -> list:
    """`huggingface_hub.EvalResult`s (WER in %, SIM) of one row of an evaluate.py results.json."""
    from huggingface_hub import EvalResult

    row = next((r for r in results["rows"] if r["key"] == row_key), None)
    if row is None:
        raise ValueError(f"results.json has no {row_key!r} row (rows: {[r['key'] for r in results['rows']]}).")
    common = dict(
        task_type="text-to-speech",
        task_name="Zero-shot text-to-speech",
        dataset_type=dataset_type,
        dataset_name=dataset_name,
        dataset_split=dataset_split,
    )
    out = []
    if _number(row.get("wer"), percent=True) is not None:
        out.append(
            EvalResult(metric_type="wer", metric_name="WER (%)", metric_value=_number(row["wer"], True), **common)
        )
    if _number(row.get("sim_prompt")) is not None:
        out.append(
            EvalResult(
                metric_type="speaker_similarity", metric_name="SIM", metric_value=_number(row["sim_prompt"]), **common
            )
        )
    if not out:
        raise ValueError(f"the {row_key!r} row of results.json has neither WER nor SIM.")
    return out


def _kind_of(obj) -> str:
    names = {cls.__name__ for cls in type(obj).__mro__}
    if "DiffusionPipeline" in names:
        return "pipeline"
    if "ProcessorMixin" in names:
        return "processor"
    return "model"


# The trained model shipped inside the package (`DiTARPipeline.from_pretrained()` loads it).
EMBEDDED_DEFAULT = Path(__file__).resolve().parent / "default"


def hub_cache_repo_id(path: str | os.PathLike) -> str | None:
    """The repo id of a folder inside the Hub's download cache (`.../models--org--name/snapshots/...`), else None."""
    part = next((p for p in Path(path).parts if p.startswith("models--")), None)
    return None if part is None else part[len("models--") :].replace("--", "/")


def source_folder(obj) -> Path | None:
    """The local folder a pipeline or model was loaded from (its `_name_or_path` / `name_or_path`), resolved; None
    for one built in memory or loaded by a Hub id that is not a folder here."""
    source = getattr(getattr(obj, "config", None), "_name_or_path", None) or getattr(obj, "name_or_path", None)
    return Path(str(source)).resolve() if source and os.path.isdir(str(source)) else None


@functools.cache
def card_keywords() -> frozenset[str]:
    """The model card settings `push_to_hub` passes to `render_model_card` (all its keywords but `kind`, `repo_id`)."""
    import inspect

    return frozenset(inspect.signature(render_model_card).parameters) - {"kind", "repo_id"}


def _model_weight_files(folder: Path) -> list[Path]:
    """The safetensors files of the model of a pipeline folder (its `model/`, also of a training run's `final/`) or of
    a model folder; [] where there are none."""
    folder = folder / "model" if (folder / "model" / "config.json").is_file() else folder
    index = folder / SAFE_WEIGHTS_INDEX
    if index.is_file():
        return sorted({folder / name for name in json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()})
    return [folder / "model.safetensors"] if (folder / "model.safetensors").is_file() else []


def same_model_weights(a: str | os.PathLike, b: str | os.PathLike) -> bool | None:
    """Whether the models saved in two folders (pipeline or model folders) hold the same tensors, each pair compared in
    the lower precision of the two (a copy saved in float16 is the same model); None where either has no safetensors
    weights. Tensors are read one at a time, so two large models are never in memory at once."""
    import torch
    from safetensors import safe_open

    files_a, files_b = _model_weight_files(Path(a)), _model_weight_files(Path(b))
    if not files_a or not files_b:
        return None

    def tensors(files):
        handles = [safe_open(str(f), framework="pt") for f in files]
        return {key: handle for handle in handles for key in handle.keys()}

    tensors_a, tensors_b = tensors(files_a), tensors(files_b)
    if tensors_a.keys() != tensors_b.keys():
        return False
    for key, handle in tensors_a.items():
        x, y = handle.get_tensor(key), tensors_b[key].get_tensor(key)
        low = x.dtype if x.element_size() <= y.element_size() else y.dtype
        if x.shape != y.shape or not torch.equal(x.to(low), y.to(low)):
            return False
    return True


def model_weights_fingerprint(folder: str | os.PathLike) -> dict | None:
    """Digests of the model saved in `folder` (a pipeline or model folder, as [`same_model_weights`] reads it), for an
    evaluation's results.json: `model_weights_sha256`, a sha256 over its tensors' names, dtypes, shapes and bytes in
    name order (neither the shard layout nor the file names count), and `model_weights_sha256_rounded`, the same per
    half precision (float16, bfloat16) with every floating tensor wider than it rounded to it: a published copy saved
    in half precision still matches the evaluated weights. None where the folder has no safetensors weights. Tensors
    are read one at a time, so a large model is never in memory at once."""
    import contextlib
    import hashlib

    import torch
    from safetensors import safe_open

    def add(digest, key, tensor):
        # a header line per tensor, so that names, dtypes and shapes count as well as the bytes, and no two tensors'
        # bytes run together; the bytes as torch holds them (little-endian on the platforms it supports)
        digest.update(json.dumps([key, str(tensor.dtype), list(tensor.shape)]).encode() + b"\n")
        digest.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())

    files = _model_weight_files(Path(folder))
    if not files:
        return None
    halves = {"float16": torch.float16, "bfloat16": torch.bfloat16}
    stored, rounded = hashlib.sha256(), {name: hashlib.sha256() for name in halves}
    with contextlib.ExitStack() as stack:
        handles = [stack.enter_context(safe_open(str(f), framework="pt")) for f in files]
        tensors = {key: handle for handle in handles for key in handle.keys()}
        for key in sorted(tensors):
            tensor = tensors[key].get_tensor(key)
            add(stored, key, tensor)
            for name, half in halves.items():
                wider = tensor.is_floating_point() and tensor.element_size() > half.itemsize
                add(rounded[name], key, tensor.to(half) if wider else tensor)
    return {
        "model_weights_sha256": stored.hexdigest(),
        "model_weights_sha256_rounded": {name: digest.hexdigest() for name, digest in rounded.items()},
    }


def results_of_another_model(
    results: dict | None, folder: str | os.PathLike | None = None, loaded_from: str | os.PathLike | None = None
) -> str | None:
    """Why an evaluation's `results` describe another model than the one saved in `folder` (a pipeline or model folder
    whose card they are to fill), or None: the same model, or either side unknown (results without settings, a
    processor).

    Results that carry the evaluated weights' fingerprint (`meta.model_weights_sha256`, see
    [`model_weights_fingerprint`]) are matched by it: `folder`'s weights are the evaluated model where either side's
    weights as stored equal the other's as stored or rounded to a half precision (a copy saved in float16 is the same
    model). This holds whatever became of the evaluated folder since: trained on, saved over, deleted, or named by a
    path relative to another working directory.

    Older results name only the pipeline they scored (`meta.settings.pipeline`, relative to `meta.cwd`; None is the
    package's embedded default, which an evaluation scores when no pipeline is named). Where that folder is still
    here its weights, as they are now, are compared with `folder`'s: a path says nothing about a model, since the same
    weights are evaluated in a training run's folder and published from a converted copy, and another model may be
    evaluated under the same path. Where it is gone, its path is compared with `loaded_from` (the folder the model
    was loaded from, if known)."""
    if results is None:
        return None
    meta = results.get("meta") or {}
    settings = meta.get("settings") or {}
    measured, scored = "the results for the card were measured on another model", None
    if "pipeline" in settings:
        scored = settings["pipeline"]
        scored = EMBEDDED_DEFAULT if scored is None else Path(meta.get("cwd") or ".", str(scored)).expanduser()
        which = "the package's default model" if scored == EMBEDDED_DEFAULT else "the pipeline the evaluation named"
        measured = f"the results for the card were measured on {scored} ({which})"
    advice = "Evaluate this model (name a folder of it as the evaluation's pipeline), or leave the results out."
    here = model_weights_fingerprint(folder) if folder is not None and meta.get("model_weights_sha256") else None
    if here is not None:

        def digests(fingerprint):  # as stored and rounded to each half precision
            return {
                fingerprint["model_weights_sha256"],
                *(fingerprint.get("model_weights_sha256_rounded") or {}).values(),
            }

        # each side as stored against the other rounded: same_model_weights' "in the lower precision of the two"
        if meta["model_weights_sha256"] in digests(here) or here["model_weights_sha256"] in digests(meta):
            return None
        return (
            f"{measured}, whose weights at the evaluation (fingerprint {str(meta['model_weights_sha256'])[:12]}) "
            f"differ from this model's ({here['model_weights_sha256'][:12]}): the card would publish another model's "
            f"numbers. {advice}"
        )
    if scored is None:
        return None
    same = same_model_weights(scored, folder) if folder is not None and scored.is_dir() else None
    if same is None:
        if loaded_from is None:
            return None
        loaded = Path(loaded_from).resolve()
        # a pipeline's (or a training run's final/) model/ folder is that pipeline's model
        if scored.resolve() in (loaded, loaded.parent if loaded.name == "model" else loaded):
            return None
        return (
            f"{measured}, but this model was loaded from {loaded}: the card would publish another model's numbers. "
            f"{advice}"
        )
    if same:
        return None
    return (
        f"{measured}, whose model weights differ from this model's: the card would publish another model's numbers. "
        f"{advice}"
    )


def warn_if_results_are_of_another_model(obj, results: dict | None, folder: str | os.PathLike) -> None:
    """Warn when an evaluation's results, about to go into `obj`'s card, were measured on another model than `obj`
    (saved in `folder`, compared by weights; see [`results_of_another_model`])."""
    import warnings

    message = results_of_another_model(results, folder, source_folder(obj))
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=3)


def own_folder_card(obj):
    """The `README.md` model card of the local folder `obj` was loaded from, where it has one: a push without card
    settings uploads the card its owner wrote or edited there (a fresh render would replace it). Not that of a Hub
    download or of the package's embedded default: those describe someone else's weights, which `obj` may no longer
    hold. None otherwise."""
    from huggingface_hub import ModelCard

    folder = source_folder(obj)
    if folder is None or hub_cache_repo_id(folder) or folder in (EMBEDDED_DEFAULT, EMBEDDED_DEFAULT / "model"):
        return None
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    return ModelCard.load(str(readme))


def _usage(kind: str, repo_id: str) -> str:
    if kind == "pipeline":
        return (
            "# transformers (add trust_remote_code=True where the DiTAR package, modeling_ditar, is not installed)\n"
            "import modeling_ditar  # with the package: registers DiTAR with the Auto classes\n"
            "from transformers import pipeline\n"
            f'tts = pipeline("text-to-speech", model="{repo_id}")\n'
            'out = tts("Hello there.")  # {"audio": ..., "sampling_rate": ...}, in the default voice\n'
            'voice = [{"role": "user", "content": [{"type": "audio", "path": "me.wav"},\n'
            '                                     {"type": "text", "text": "What I say in me.wav."}]},\n'
            '         {"role": "user", "content": "Hello there."}]\n'
            "out = tts(voice)  # cloned from me.wav\n\n"
            "# diffusers, with streaming (the DiTAR package installed: pip install . in its source folder)\n"
            "import torch\n"
            "from modeling_ditar import DiTARPipeline\n"
            f'pipe = DiTARPipeline.from_pretrained("{repo_id}")\n'
            'out = pipe("Hello there.", prompt_audio="me.wav", prompt_text="What I say in me.wav.",\n'
            "           generator=torch.manual_seed(0))\n"
            "pipe.enable_prompt_transcription()  # no transcript at hand: Whisper-base transcribes the prompt\n"
            'out = pipe("Hello there.", prompt_audio="me.wav")\n'
            'for chunk in pipe.stream("A long text."):\n'
            "    ...\n\n"
            "# diffusers without the package (code from this repository):\n"
            "from diffusers import DiffusionPipeline\n"
            "from huggingface_hub import snapshot_download\n"
            f'pipe = DiffusionPipeline.from_pretrained(snapshot_download("{repo_id}"), trust_remote_code=True)'
        )
    if kind == "processor":
        return (
            "from transformers import AutoProcessor\n"
            f'processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)'
        )
    return (
        "from transformers import AutoModel\n"
        f'model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True)  # DiTARForConditionalGeneration'
    )


def render_model_card(
    *,
    kind: str = "pipeline",
    model_name: str = "DiTAR",
    summary: str | None = None,
    repo_id: str | None = None,
    results: dict | str | os.PathLike | None = None,
    eval_dataset_name: str = "DiTAR zero-shot evaluation cases",
    eval_dataset_type: str = "custom",
    eval_dataset_split: str | None = None,
    license: str = "apache-2.0",
    language: list[str] | None = None,
    datasets: list[str] | None = None,
    base_model: str | None = None,
    tags: list[str] | None = None,
    details: dict | None = None,
    training: str | None = None,
    template_path: str | os.PathLike | None = None,
    extra_results: list[tuple[str, dict | str | os.PathLike]] | None = None,
):
    """A `huggingface_hub.ModelCard` for a DiTAR pipeline, model or processor.

    Args:
        kind: "pipeline", "model" or "processor" (the card's library is transformers for all three).
        results: an evaluation results.json (path or dict). Without it the evaluation table holds clearly
            marked placeholders and the metadata has no model-index.
        eval_dataset_*: how the model-index names the evaluation data (`dataset_type` should be a Hub dataset id when
            there is one).
        datasets / base_model: training data (Hub dataset ids) and the LM the backbone started from.
        details: architecture facts shown as a list (e.g. from [`describe_pipeline_folder`]).
        template_path: a Jinja template; default the project's card template or the built-in fallback.
        extra_results: (title, results.json) pairs shown as further tables under the main one (e.g. out-of-domain
            prompts, which no target is set for); they do not enter the model-index.
    """
    from huggingface_hub import ModelCard, ModelCardData

    if kind not in ("pipeline", "model", "processor"):
        raise ValueError(f"kind must be 'pipeline', 'model' or 'processor', got {kind!r}.")
    if results is not None and not isinstance(results, dict):
        results = load_results(results)
    repo_id = repo_id or "<org>/<name>"
    card_data = ModelCardData(
        # a pipeline folder's root is a transformers text-to-speech model, so the Hub's snippet is transformers'
        # pipeline("text-to-speech"); the `custom_code` tag makes it pass trust_remote_code=True
        library_name="transformers",
        pipeline_tag="text-to-speech",
        license=license,
        language=language or ["en"],
        tags=list(dict.fromkeys(DEFAULT_TAGS + list(tags or []))),
        datasets=list(datasets) if datasets else None,
        base_model=base_model,
        model_name=model_name if results is not None else None,
        eval_results=eval_results(results, eval_dataset_name, eval_dataset_type, eval_dataset_split)
        if results is not None
        else None,
    )
    template = (
        Path(template_path) if template_path is not None else (REPO_TEMPLATE if REPO_TEMPLATE.is_file() else None)
    )
    kwargs = dict(
        model_name=model_name,
        summary=summary or f"A DiTAR zero-shot text-to-speech {kind}.",
        kind=kind,
        repo_id=repo_id,
        paper_url=PAPER_URL,
        results_table=results_table(results),
        extra_results=extra_results_tables(extra_results),
        has_results=results is not None,
        usage=_usage(kind, repo_id),
        details="\n".join(f"- {k}: {v}" for k, v in (details or {}).items()),
        training=training or "",
        license=license,
    )
    if template is not None:
        return ModelCard.from_template(card_data, template_path=str(template), **kwargs)
    return ModelCard.from_template(card_data, template_str=FALLBACK_TEMPLATE, **kwargs)


def describe_pipeline_folder(folder: str | os.PathLike) -> dict:
    """Architecture facts of a saved pipeline folder (read from its JSON files only), for a card's details list."""
    folder = Path(folder)
    details = {}
    config_path = folder / "model" / "config.json"
    if config_path.is_file():
        config = json.loads(config_path.read_text())
        text = config.get("text_config", {})
        details["backbone"] = (
            f"{text.get('model_type', '?')}, {_layers(text.get('num_hidden_layers', '?'))}, "
            f"hidden {text.get('hidden_size', '?')}, vocabulary {text.get('vocab_size', '?')}"
        )
        details["LocDiT"] = f"{_layers(config.get('locdit_num_layers'))}, width {config.get('locdit_hidden_size')}"
        details["aggregation encoder"] = (
            f"{_layers(config.get('encoder_num_layers'))}, width {config.get('encoder_hidden_size')}"
        )
        details["patches"] = f"{config.get('patch_size')} frames, {config.get('num_history_patches')} history patches"
        if config.get("speech_positions", "sequential") != "sequential":
            details["patches"] += f", {config['speech_positions']} speech positions"
        details["features"] = f"{config.get('feature_dim')} channels"
        weights = folder / "model" / "model.safetensors"
        if weights.is_file():
            details["parameters"] = f"{_count_parameters(weights) / 1e6:.1f} M"
    index_path = folder / "model_index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("vae") and index["vae"][0]:
            details["features"] = details.get("features", "") + f" (VAE latents, {index['vae'][1]})"
        elif index.get("vocoder") and index["vocoder"][0]:
            details["vocoder"] = index["vocoder"][1]
    fe_path = folder / "processor" / "processor_config.json"
    if fe_path.is_file():
        fe = json.loads(fe_path.read_text()).get("feature_extractor", {})
        if fe:
            details["audio"] = (
                f"{fe.get('sampling_rate')} Hz, {fe.get('feature_size')} log-mel bins, hop {fe.get('hop_length')}"
            )
    return details


def _layers(count) -> str:
    return f"{count} layer" if count == 1 else f"{count} layers"


def _count_parameters(path: Path) -> int:
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            total += math.prod(f.get_slice(key).get_shape())
    return total


# ----------------------------------------------------------------------------------------------------------------------
# uploads
# ----------------------------------------------------------------------------------------------------------------------


def save_for_hub(
    obj,
    folder: str | os.PathLike,
    *,
    card=None,
    repo_id: str | None = None,
    save_kwargs: dict | None = None,
    **card_kwargs,
) -> Path:
    """Save a pipeline, model or processor into `folder` as it goes to the Hub: weights, configs, remote code and a
    README.md model card (`card`, or one rendered with `card_kwargs`, see [`render_model_card`]). `save_kwargs` go to
    its `save_pretrained`."""
    folder = Path(folder)
    obj.save_pretrained(folder, **(save_kwargs or {}))
    if card is None:
        card = render_model_card(kind=_kind_of(obj), repo_id=repo_id, **card_kwargs)
    card.save(str(folder / "README.md"))
    return folder


def commit_operations(folder: str | os.PathLike) -> list:
    """One `CommitOperationAdd` per file of `folder` (paths relative to it, '/'-separated), hidden files skipped."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(folder)
    operations = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            operations.append(CommitOperationAdd(path_in_repo=relative.as_posix(), path_or_fileobj=str(path)))
    return operations


# Files a push of this package writes, so a later push deletes them from the repository when its folder lacks them:
# every file of the component folders, and at the root the weights, shard indexes, configs, tokenizer files and code.
# Left behind, they win: an old root `model.safetensors` is loaded instead of a new shard index, an old default voice
# stays the default. Files the package never writes (.gitattributes, a user's documents or images) are kept.
WRITTEN_FOLDERS = ("model", "processor", "vocoder", "scheduler", "vae", "default_voice")
WRITTEN_ROOT_FILES = (
    "*.safetensors",
    "*.bin",
    "*.index.json",
    "*.py",
    "config.json",
    "generation_config.json",
    "model_index.json",
    "processor_config.json",
    "preprocessor_config.json",
    "adapter_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "chat_template.*",
    "*.model",
)


def written_by_a_save(path: str) -> bool:
    """Whether `path` ("/"-separated, relative to a pipeline folder or repository; a folder at the top as "name/") is
    one a save or push of this package writes (`WRITTEN_FOLDERS`, `WRITTEN_ROOT_FILES`); a hidden one never is."""
    from fnmatch import fnmatchcase

    parts = path.split("/")
    if any(part.startswith(".") for part in parts):
        return False
    if len(parts) > 1:
        return parts[0] in WRITTEN_FOLDERS
    return any(fnmatchcase(path, pattern) for pattern in WRITTEN_ROOT_FILES)


def stale_files(repo_files, folder: str | os.PathLike) -> list[str]:
    """The files of `repo_files` (paths in a repository) that a push of this package writes and that `folder`, the
    folder being pushed, lacks."""
    pushed = {op.path_in_repo for op in commit_operations(folder)}
    return sorted(name for name in repo_files if name not in pushed and written_by_a_save(name))


def repo_files(api, repo_id: str, revision: str | None) -> list[str]:
    """The files of a model repository at `revision`; none for a repository or revision without commits yet."""
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    try:
        return list(api.list_repo_files(repo_id, revision=revision, repo_type="model"))
    except (RevisionNotFoundError, EntryNotFoundError):
        return []


def create_branch_for(api, repo_id: str, revision: str | None) -> None:
    """Create the branch `revision` (from the default branch) unless it exists, as transformers' `push_to_hub` does;
    a commit to a branch that does not exist fails. A pull request's ref ("refs/pr/N") is not a branch to create."""
    if revision is not None and not revision.startswith("refs/pr/"):
        api.create_branch(repo_id, branch=revision, exist_ok=True)


# keywords of each kind of object's `save_pretrained` that `push_to_hub` passes on (the model's transformers
# `save_pretrained` takes no `safe_serialization`, and a pipeline passes it to no DiTAR component)
SAVE_KEYWORDS = {
    "pipeline": ("remote_code", "variant", "max_shard_size"),
    "model": ("variant", "max_shard_size"),
    "processor": (),
}


def push_keywords(push: bool = True) -> set[str]:
    """The keywords of a `save_pretrained` that belong to the upload, not to the folder: the commit's (always taken
    out), and with `push_to_hub=True` also the branch, the card and its settings (`render_model_card`'s)."""
    commit = {"repo_id", "commit_message", "private", "token", "create_pr"}
    if not push:
        return commit
    return commit | {"commit_description", "revision", "card", "api"} | card_keywords()


def _split_keywords(kind: str, kwargs: dict) -> tuple[dict, dict]:
    """`kwargs` of `push_to_hub` as (save keywords, card keywords); unknown ones are refused before anything is
    uploaded, naming those it takes."""
    save_keywords = SAVE_KEYWORDS[kind]
    unknown = sorted(k for k in kwargs if k not in card_keywords() and k not in save_keywords)
    if unknown:
        raise TypeError(
            f"push_to_hub() of a DiTAR {kind} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            "it takes commit_message, commit_description, private, token, revision, create_pr, card, api"
            + (f", the save_pretrained settings {', '.join(save_keywords)}" if save_keywords else "")
            + f" and the model card settings {', '.join(sorted(card_keywords()))}."
        )
    save_kwargs = {k: v for k, v in kwargs.items() if k in save_keywords}
    return save_kwargs, {k: v for k, v in kwargs.items() if k not in save_kwargs}


def push_to_hub(
    obj,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    card=None,
    api=None,
    **kwargs,
):
    """Upload a DiTAR pipeline, model or processor to `repo_id` in one commit, with its remote code and a rendered
    model card (pass `results="eval/results.json"` to fill the evaluation). Other keywords go to its `save_pretrained`
    (`SAVE_KEYWORDS`: `remote_code`, `variant`, `max_shard_size` for a pipeline; `variant`, `max_shard_size` for a
    model) or to [`render_model_card`]; others are refused. Returns the `CommitInfo`.

    The repository then holds what a local `save_pretrained` leaves in a folder, so the commit also deletes the files
    of the repository (at `revision`) that this package writes and the new folder lacks: everything under `model/`,
    `processor/`, `vocoder/`, `scheduler/`, `vae/` and `default_voice/`, and at the root the weights (`*.safetensors`,
    `*.bin`) and shard indexes, the configs (`config.json`, `generation_config.json`, `model_index.json`,
    `processor_config.json`, ...), the tokenizer files and the code files (`*.py`). Other files (`.gitattributes`, a
    user's documents or images) are kept.

    The folder is saved and its card rendered before the repository is created, so a refused keyword, a pipeline that
    cannot be saved or a missing results file leaves no empty repository behind. `api` is an `HfApi` (created with
    `token` when not given); the repository is created if it does not exist, and the branch `revision` too."""
    from huggingface_hub import CommitOperationDelete, HfApi

    kind = _kind_of(obj)
    save_kwargs, card_kwargs = _split_keywords(kind, kwargs)
    if card is None and not card_kwargs:
        card = own_folder_card(obj)
    if card_kwargs.get("results") is not None and not isinstance(card_kwargs["results"], dict):
        card_kwargs["results"] = load_results(card_kwargs["results"])  # read once: checked here, rendered below
    with tempfile.TemporaryDirectory() as tmp:
        save_for_hub(obj, tmp, card=card, repo_id=repo_id, save_kwargs=save_kwargs, **card_kwargs)
        # the weights as they are uploaded, compared with those the results were measured on
        warn_if_results_are_of_another_model(obj, card_kwargs.get("results"), tmp)
        api = api if api is not None else HfApi(token=token)
        created = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if created != repo_id and card is None:  # the namespace the Hub gave a bare name, for the card's snippets
            render_model_card(kind=kind, repo_id=created, **card_kwargs).save(str(Path(tmp) / "README.md"))
        create_branch_for(api, created, revision)
        deletions = [
            CommitOperationDelete(path_in_repo=name) for name in stale_files(repo_files(api, created, revision), tmp)
        ]
        return api.create_commit(
            repo_id=created,
            operations=commit_operations(tmp) + deletions,
            commit_message=commit_message or f"Upload DiTAR {kind}",
            commit_description=commit_description,
            revision=revision,
            create_pr=create_pr,
        )

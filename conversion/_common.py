"""Shared by the conversion scripts: safe output folders, weight files read without unpickling, shape checks."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT))

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ConversionError(SystemExit):
    """A clear, user-facing failure: exits with status 1 and prints the message as an `error: ...` line, as the
    project's other scripts report theirs (a traceback would hide the message)."""

    def __init__(self, message: str):
        message = message if message.startswith("error: ") else f"error: {message}"
        super().__init__(message)
        self.message = message


def check_output_folder(out: Path, force: bool, *sources: Path | None) -> None:
    """Refuse a non-empty output folder unless `force`; a file in the way is always refused, and so is an output that
    is one of the `sources` or holds one (replacing it would delete what is being converted). An output inside a
    source (e.g. RUN/pipeline) is fine."""
    if out.exists() and not out.is_dir():
        raise ConversionError(f"{out} exists and is not a folder")
    target = out.resolve()
    for source in sources:
        if source is not None and (target == Path(source).resolve() or target in Path(source).resolve().parents):
            raise ConversionError(
                f"{out} is or holds the source {source}: writing it replaces the whole folder, which would delete the "
                "source; choose another folder"
            )
    inside = [s for s in sources if s is not None and Path(s).resolve() in target.parents]
    if inside and out.is_dir() and any(out.iterdir()) and not (out / "model_index.json").is_file():
        # e.g. RUN/checkpoints or a pipeline's model/: part of the source; an earlier pipeline written there is not
        raise ConversionError(
            f"{out} lies inside the source {inside[0]} and holds files that are not an earlier pipeline: replacing it "
            "would delete part of the source; choose a new folder"
        )
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConversionError(f"{out} is not empty; pass --force to replace it")


def check_not_inside_inputs(out: Path, *inputs: Path | None) -> None:
    """Refuse an output folder inside one of the `inputs`: OUT is written next to itself and BASE is copied into it,
    so an OUT inside BASE copied the staging folder (and every earlier OUT) into itself, growing with each --force
    run, and any OUT inside an input changes that input."""
    target = out.resolve()
    for source in inputs:
        if source is not None and Path(source).is_dir() and Path(source).resolve() in target.parents:
            raise ConversionError(
                f"{out} lies inside the input {source}: writing there would copy the output into itself or change the "
                f"input; choose a folder outside it (e.g. next to it: {Path(source).parent / out.name})"
            )


@contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """A fresh temporary folder next to `out` to write into; renamed into place (replacing `out`) when the block
    ends, removed when it raises, so a failed conversion never leaves a half-written `out`."""
    tmp = out.parent / f".tmp-{out.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    from modeling_ditar.hub_utils import make_saved_weights_readable

    make_saved_weights_readable(tmp)  # safetensors writes them private
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def sync_transformers_root(folder: Path) -> None:
    """After `folder/model/` was rewritten (new weights, config or generation config), make the files transformers
    reads at the pipeline's root say the same: the root `config.json` is the model's config with the root's vocoder
    config, architecture, auto_map and compute dtype, and the root's other files follow `model/` as saving writes
    them (`hub_utils.link_model_files`). Without this, `AutoModel` and `pipeline("text-to-speech")` loaded the old
    weights from a folder whose `model/` was new."""
    from safetensors.torch import load_file

    from modeling_ditar.hub_utils import ROOT_VOCODER_WEIGHTS, SAFE_WEIGHTS_INDEX, link_model_files

    if not (folder / "config.json").is_file():  # no transformers entry (e.g. a VAE pipeline)
        return
    root = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config = json.loads((folder / "model" / "config.json").read_text(encoding="utf-8"))
    config.update({k: root[k] for k in ("vocoder_config", "architectures", "auto_map", "dtype") if k in root})
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    vocoder_file = folder / ROOT_VOCODER_WEIGHTS
    vocoder = {}
    if vocoder_file.is_file():  # a neural vocoder's weights, named as the text-to-speech model names them
        vocoder = {name.removeprefix("vocoder."): t for name, t in load_file(str(vocoder_file)).items()}
    for stale in [*folder.glob("*.safetensors"), folder / SAFE_WEIGHTS_INDEX]:  # links to the old model/ files
        stale.unlink(missing_ok=True)
    link_model_files(folder, vocoder)


def load_weights(folder_or_file: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint: `model.safetensors`, a sharded `model.safetensors.index.json`, any `*.safetensors`
    file, or (only when no safetensors exist) `pytorch_model.bin` read with `torch.load(weights_only=True)`."""
    from safetensors.torch import load_file

    path = Path(folder_or_file)
    if path.is_file():
        if path.suffix == ".safetensors":
            return load_file(str(path))
        if path.suffix == ".bin":
            return torch.load(path, map_location="cpu", weights_only=True)
        raise ConversionError(f"{path}: expected a .safetensors (or .bin) weight file")
    if (path / "model.safetensors").is_file():
        return load_file(str(path / "model.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        tensors = {}
        for shard in shards:
            tensors.update(load_file(str(path / shard)))
        return tensors
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ConversionError(f"{path}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def check_state_dict(expected: dict[str, torch.Tensor], given: dict[str, torch.Tensor], source: str) -> None:
    """Raise a ConversionError that names every missing, unexpected or wrongly shaped tensor."""
    problems = []
    for name in sorted(set(expected) - set(given)):
        problems.append(f"missing in {source}: {name} (model expects {tuple(expected[name].shape)})")
    for name in sorted(set(given) - set(expected)):
        problems.append(f"not in the model: {name} {tuple(given[name].shape)} from {source}")
    for name in sorted(set(expected) & set(given)):
        if tuple(expected[name].shape) != tuple(given[name].shape):
            problems.append(
                f"shape mismatch for {name}: {source} has {tuple(given[name].shape)}, the model expects "
                f"{tuple(expected[name].shape)}"
            )
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise ConversionError(f"{source} does not fit the model ({len(problems)} problem(s)):\n  " + "\n  ".join(shown))


def write_derived_card(
    folder: Path, source: Path, *, name: str, summary: str, made: str, kind: str = "pipeline"
) -> None:
    """A README.md model card for `folder`, made from the pipeline `source` by a conversion: what it is (`summary`)
    and how it was made (`made`), with placeholders for the evaluation. `source`'s own card is not copied: its
    measured results (and the model-index the Hub shows) and its parameter counts describe other weights. Its licence
    and languages, which the new weights inherit, carry over."""
    from huggingface_hub import ModelCard

    from modeling_ditar.hub_utils import describe_pipeline_folder, render_model_card

    license_, language = "apache-2.0", None
    readme = source / "README.md"
    if readme.is_file():
        data = ModelCard.load(str(readme)).data
        license_ = data.license or license_
        language = [data.language] if isinstance(data.language, str) else data.language
    card = render_model_card(
        kind=kind,
        model_name=name,
        summary=summary,
        license=license_,
        language=language,
        details=describe_pipeline_folder(folder),
        training=made,
    )
    card.save(str(folder / "README.md"))

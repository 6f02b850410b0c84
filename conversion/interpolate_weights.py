#!/usr/bin/env python
"""Interpolate a fine-tuned DiTAR model with the model it started from (WiSE-FT, Wortsman et al., CVPR 2022).

    python conversion/interpolate_weights.py modeling_ditar/default runs/my-finetune/final/model out/ditar-mixed \\
        --alpha 0.3

Every weight of OUT is (1 - alpha) * BASE + alpha * FINETUNED, computed in float32 and stored in the dtype BASE stores
it in. Fine-tuning on a narrow corpus (a few voices, a new domain, a small batch) moves a model far from where a
large run left it: it gains on the new data and forgets some of the rest. A point on the line between the two often
keeps most of the gain and most of what was there before, at no cost at inference. Choose alpha on validation data
of both kinds; alpha 0 gives BASE's weights back and alpha 1 FINETUNED's (a candidate LocDiT that FINETUNED lacks is
left out of OUT either way, see below).

`--module-alpha PREFIX=A` (repeatable) gives the tensors whose names start with PREFIX (a module path such as `locdit`
or `language_model.model.layers.5`) their own alpha; the longest matching prefix wins, and a prefix that matches no
tensor is an error. Modules learn different things from one fine-tune (the backbone reads the text, LocDiT draws the
sound), so they may be worth moving by different amounts:

    python conversion/interpolate_weights.py BASE FINETUNED OUT --alpha 0.3 --module-alpha locdit=0.6

BASE is a pipeline folder (with model/) or a model folder; OUT is a copy of it (processor, scheduler, vocoder, default
voice, code and all) with new model weights, written to a temporary folder and renamed into place. FINETUNED is a
model folder, a pipeline folder or a weight file, with the same tensors as BASE: a missing, extra or wrongly shaped
tensor is named. Only safetensors files and torch.load(weights_only=True) are read.

A BASE with a candidate LocDiT (a student distilled from BASE's LocDiT, as the embedded default has) and a FINETUNED
without one (training leaves it out) give an OUT without it: the mixed LocDiT is not the one it was distilled from.
OUT's candidates are then sampled with LocDiT at its own steps; `examples/distill_locdit.py` and
`conversion/add_candidate_locdit.py` give it a new student.

Settings. Some settings change what a model does at inference without changing any tensor's shape: in the model
config `ctc_position`, `speech_positions`, `text_tokens_per_frame`, the feature statistics, the backbone's rotary
settings, ...; in the generation config the sampling defaults (steps, guidance, candidates, ...). Where BASE and
FINETUNED (a model or pipeline folder) differ in such settings, OUT takes FINETUNED's when every weight comes from
FINETUNED (alpha 1, and every --module-alpha 1) and keeps BASE's when every weight comes from BASE (alpha 0); a true
mix is refused with a message naming the settings, until `--config-from finetuned` (the settings FINETUNED was
trained with) or `--config-from base` (BASE's, knowingly) chooses. Settings that only act in training (dropouts, loss
weights, noise and jitter, ...) follow the same choice but never stop the mix: OUT keeps BASE's unless FINETUNED's
are taken. Bookkeeping (`_name_or_path`, `transformers_version`, `dtype`, ...) is not compared, and neither is the
vocoder: OUT has BASE's. A FINETUNED weight file has no settings: OUT keeps BASE's.

OUT's README.md is a new model card saying what OUT is (its inputs and alphas) with placeholders for the evaluation:
BASE's card, with its measured results, describes other weights. OUT must not lie inside BASE or FINETUNED.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    ConversionError,
    check_not_inside_inputs,
    check_output_folder,
    check_state_dict,
    load_weights,
    staged_output,
    sync_transformers_root,
    write_derived_card,
)

CANDIDATE = "candidate_locdit."
# what a saved config records about where and how it was saved, not how the model computes
BOOKKEEPING = frozenset(
    {
        "_name_or_path",
        "_commit_hash",
        "_from_model_config",
        "_attn_implementation_autoset",
        "transformers_version",
        "dtype",
        "torch_dtype",
        "architectures",
        "auto_map",
        "output_attentions",
        "output_hidden_states",
        "return_dict",
        "use_cache",
    }
)
# the pipeline's vocoder (OUT keeps BASE's) and the candidate LocDiT (handled with its weights)
NOT_COMPARED = frozenset({"vocoder_config", "candidate_locdit"})
# DiTARConfig settings that only act in training: a difference there changes nothing OUT generates
TRAINING_ONLY = frozenset(
    {
        "cfg_dropout_prob",
        "history_dropout_prob",
        "input_noise_std",
        "scheduled_sampling_prob",
        "diffusion_batch_mul",
        "diffusion_time_shift",
        "stop_loss_weight",
        "ctc_loss_weight",
        "guided_attention_weight",
        "guided_attention_heads",
        "guided_attention_sigma",
        "speech_position_jitter",
        "initializer_range",
        "text_config.attention_dropout",
        "text_config.initializer_range",
    }
)
CONFIG_FILES = {"config": "config.json", "generation": "generation_config.json"}


def model_folder(folder: Path) -> Path:
    """The folder holding a model's config.json and weights: FOLDER/model for a pipeline folder, else FOLDER."""
    return folder / "model" if (folder / "model" / "config.json").is_file() else folder


def parse_module_alphas(specs: list[str]) -> dict[str, float]:
    """`PREFIX=ALPHA` strings -> {prefix: alpha}, each alpha in [0, 1]."""
    alphas = {}
    for spec in specs:
        prefix, sep, value = spec.partition("=")
        prefix = prefix.strip().rstrip(".")
        try:
            alpha = float(value) if sep else None
        except ValueError:
            alpha = None
        if not prefix or alpha is None:
            raise ConversionError(f"--module-alpha takes PREFIX=ALPHA (e.g. locdit=0.6), got {spec!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ConversionError(f"--module-alpha {prefix}: alpha must lie in [0, 1], got {alpha}")
        if prefix in alphas:
            raise ConversionError(f"--module-alpha names {prefix!r} twice")
        alphas[prefix] = alpha
    return alphas


def in_module(name: str, prefix: str) -> bool:
    """Whether tensor `name` lies under the module path `prefix` (whole path components: `locdit` is not `locdit2`)."""
    return name == prefix or name.startswith(prefix + ".")


def alpha_for(name: str, alpha: float, module_alphas: dict[str, float]) -> float:
    """The alpha of tensor `name`: that of the longest module prefix it lies in, else the global one."""
    matches = [p for p in module_alphas if in_module(name, p)]
    return module_alphas[max(matches, key=len)] if matches else alpha


def interpolate(
    base: dict[str, torch.Tensor],
    finetuned: dict[str, torch.Tensor],
    alpha: float,
    module_alphas: dict[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """(1 - a) * base + a * finetuned per tensor, in float32, cast back to base's dtype, with a = alpha or the
    tensor's module alpha. Integer and boolean tensors (buffers such as position ids) must be equal and are copied."""
    module_alphas = module_alphas or {}
    unused = [p for p in module_alphas if not any(in_module(n, p) for n in base)]
    if unused:
        tops = sorted({n.split(".")[0] for n in base})
        raise ConversionError(
            f"--module-alpha prefix(es) {', '.join(map(repr, unused))} match no tensor; the model's top-level modules "
            f"are {', '.join(tops)}"
        )
    mixed = {}
    for name, b in base.items():
        f = finetuned[name]
        if not b.is_floating_point():
            if not torch.equal(b, f.to(b.dtype)):
                raise ConversionError(f"{name} is a {b.dtype} tensor that differs between the two models")
            mixed[name] = b.clone()
            continue
        a = alpha_for(name, alpha, module_alphas)
        mixed[name] = ((1.0 - a) * b.float() + a * f.float()).to(b.dtype).contiguous()
    return mixed


def model_settings(folder: Path, drop_student: bool = False) -> dict[tuple[str, str], object]:
    """{(file, key): value} of a model folder's config and generation config, as the library reads them (absent keys at
    their defaults), the backbone's config as `text_config.KEY`, bookkeeping left out. `drop_student`: as OUT will have
    it, without the candidate LocDiT's step count."""
    from modeling_ditar import DiTARConfig
    from modeling_ditar.generation_ditar import DiTARGenerationConfig

    config = DiTARConfig.from_pretrained(folder)
    if (folder / "generation_config.json").is_file():
        generation = DiTARGenerationConfig.from_pretrained(folder).to_dict()
    else:  # an older folder: its sampling settings are in its config
        generation = DiTARGenerationConfig.from_model_config(config).to_dict()
    if drop_student:
        generation["candidate_num_inference_steps"] = None
    settings = {}
    for key, value in config.to_dict().items():
        if key == "text_config":
            settings.update({("config", f"text_config.{k}"): v for k, v in value.items() if k not in BOOKKEEPING})
        elif key not in BOOKKEEPING | NOT_COMPARED:
            settings[("config", key)] = value
    settings.update({("generation", k): v for k, v in generation.items() if k not in BOOKKEEPING})
    return settings


def differing_settings(base: dict, finetuned: dict) -> dict[tuple[str, str], tuple[object, object]]:
    """{(file, key): (BASE's value, FINETUNED's)} for the settings the two models differ in."""
    keys = sorted(base.keys() | finetuned.keys())
    return {key: (base.get(key), finetuned.get(key)) for key in keys if base.get(key) != finetuned.get(key)}


def _describe(differences: dict) -> str:
    def short(value) -> str:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    return "; ".join(
        f"{key}{' (generation config)' if file == 'generation' else ''}: {short(b)} in BASE, {short(f)} in FINETUNED"
        for (file, key), (b, f) in differences.items()
    )


def choose_config(differences: dict, alphas: set[float], config_from: str | None) -> str:
    """Whose settings OUT gets ("base" or "finetuned"): the one --config-from names; else FINETUNED's when every weight
    is FINETUNED's, BASE's when every weight is BASE's or no setting that acts at inference differs; else refused."""
    if config_from is not None:
        return config_from
    if alphas == {1.0}:
        return "finetuned"
    inference = {key: values for key, values in differences.items() if key[1] not in TRAINING_ONLY}
    if alphas == {0.0} or not inference:
        return "base"
    raise ConversionError(
        f"BASE and FINETUNED differ in {len(inference)} setting(s) that change what the model does at inference but "
        f"not the shape of any weight: {_describe(inference)}. OUT mixes weights of both, so it needs one set: pass "
        "--config-from finetuned to take FINETUNED's (those it was trained with), or --config-from base to keep "
        "BASE's knowingly"
    )


def apply_settings(model_dir: Path, differences: dict, finetuned: dict) -> None:
    """Write FINETUNED's value of each differing setting into the copied config files of `model_dir`."""
    for file, name in CONFIG_FILES.items():
        path = model_dir / name
        keys = [key for (f, key) in differences if f == file]
        if not keys:
            continue
        data = json.loads(path.read_text()) if path.is_file() else {}
        for key in keys:
            value = finetuned.get((file, key))
            if key.startswith("text_config."):
                data.setdefault("text_config", {})[key.removeprefix("text_config.")] = value
            else:
                data[key] = value
        path.write_text(json.dumps(data, indent=2) + "\n")


def save_like(tensors: dict[str, torch.Tensor], source: Path, target: Path) -> None:
    """Write tensors into target in the file layout of source: one model.safetensors, or the shards its
    model.safetensors.index.json names (the index is copied with the rest of the folder)."""
    from safetensors.torch import save_file

    index = source / "model.safetensors.index.json"
    if (source / "model.safetensors").is_file():
        save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
        return
    if not index.is_file():
        raise ConversionError(f"{source}: the base model has no model.safetensors or model.safetensors.index.json")
    shards: dict[str, dict[str, torch.Tensor]] = {}
    layout = json.loads(index.read_text())
    layout["weight_map"] = {name: shard for name, shard in layout["weight_map"].items() if name in tensors}
    for name, shard in layout["weight_map"].items():
        shards.setdefault(shard, {})[name] = tensors[name]
    for shard, part in shards.items():
        save_file(part, str(target / shard), metadata={"format": "pt"})
    (target / index.name).write_text(json.dumps(layout, indent=2) + "\n")


def leave_out_candidate_locdit(model_dir: Path) -> None:
    """Mark a model folder as having no candidate LocDiT: its config says so, and the generation config drops the
    student's step count (LocDiT samples the candidates at its own steps), as `remove_candidate_locdit()` does."""
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "candidate_locdit": False}, indent=2) + "\n")
    generation_path = model_dir / "generation_config.json"
    if generation_path.is_file():
        generation = json.loads(generation_path.read_text())
        generation["candidate_num_inference_steps"] = None
        generation_path.write_text(json.dumps(generation, indent=2) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("base", type=Path, help="the model fine-tuning started from: a pipeline or model folder")
    parser.add_argument("finetuned", type=Path, help="the fine-tuned model: a model or pipeline folder, or weight file")
    parser.add_argument("out", type=Path, help="folder to write: a copy of BASE with the interpolated weights")
    parser.add_argument("--alpha", type=float, required=True, help="weight of FINETUNED, from 0 (BASE's weights) to 1")
    parser.add_argument(
        "--module-alpha",
        action="append",
        default=[],
        metavar="PREFIX=ALPHA",
        help="another alpha for the tensors under a module prefix (e.g. locdit=0.6); repeatable, longest prefix wins",
    )
    parser.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    parser.add_argument(
        "--config-from",
        choices=["base", "finetuned"],
        help="whose config and generation config OUT gets where the two differ (default: FINETUNED's at alpha 1, "
        "BASE's at alpha 0; a mix that differs in a setting acting at inference needs this choice)",
    )
    args = parser.parse_args(argv)

    if not 0.0 <= args.alpha <= 1.0:
        raise ConversionError(f"--alpha must lie in [0, 1] (0 gives BASE, 1 FINETUNED), got {args.alpha}")
    module_alphas = parse_module_alphas(args.module_alpha)
    if not args.base.is_dir():
        raise ConversionError(f"{args.base} is not a folder: give the base pipeline or model folder")
    if args.out.resolve() in (args.base.resolve(), args.finetuned.resolve()):
        raise ConversionError(f"{args.out} is one of the inputs; write the result to a new folder")
    check_output_folder(args.out, args.force, args.base, args.finetuned)
    check_not_inside_inputs(args.out, args.base, args.finetuned)
    base_model = model_folder(args.base)
    base = load_weights(base_model)
    finetuned_source = args.finetuned if args.finetuned.is_file() else model_folder(args.finetuned)
    finetuned = load_weights(finetuned_source)
    student = [name for name in base if name.startswith(CANDIDATE)]
    drop_student = bool(student) and not any(name.startswith(CANDIDATE) for name in finetuned)
    if drop_student:
        base = {name: tensor for name, tensor in base.items() if not name.startswith(CANDIDATE)}
    check_state_dict(base, finetuned, str(finetuned_source))
    mixed = interpolate(base, finetuned, args.alpha, module_alphas)

    differences, finetuned_settings, config_from = {}, {}, "base"
    if finetuned_source.is_dir():  # a weight file has no settings: OUT keeps BASE's
        finetuned_settings = model_settings(finetuned_source)
        differences = differing_settings(model_settings(base_model, drop_student), finetuned_settings)
        alphas = {alpha_for(n, args.alpha, module_alphas) for n, t in base.items() if t.is_floating_point()}
        config_from = choose_config(differences, alphas, args.config_from)

    relative = base_model.relative_to(args.base)
    with staged_output(args.out) as tmp:
        shutil.copytree(args.base, tmp, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        target = tmp / relative
        for weights in target.glob("*.safetensors"):
            weights.unlink()
        save_like(mixed, base_model, target)
        if drop_student:
            leave_out_candidate_locdit(target)
        if config_from == "finetuned":
            apply_settings(target, differences, finetuned_settings)
        if relative == Path("model"):
            sync_transformers_root(tmp)
        write_blend_card(
            tmp, args, finetuned_source, module_alphas, "pipeline" if relative == Path("model") else "model"
        )
    changed = sum(not torch.equal(mixed[n], base[n]) for n in base)
    per_module = "".join(f", {prefix} at {a}" for prefix, a in module_alphas.items())
    print(
        f"wrote {args.out}: (1 - {args.alpha}) * {args.base} + {args.alpha} * {finetuned_source}{per_module}; "
        f"{changed} of {len(base)} tensors changed"
    )
    if differences:
        whose = "FINETUNED's" if config_from == "finetuned" else "BASE's"
        print(f"the two models' settings differ ({_describe(differences)}); OUT has {whose}")
    if drop_student:
        print(
            f"{args.base}'s candidate LocDiT ({len(student)} tensors) is left out: {finetuned_source} has none, and it "
            "was distilled from another LocDiT. The candidates are sampled with LocDiT at its own steps; "
            "examples/distill_locdit.py and conversion/add_candidate_locdit.py give OUT a new one."
        )


def write_blend_card(folder: Path, args, finetuned_source: Path, module_alphas: dict[str, float], kind: str) -> None:
    """OUT's model card: the blend and its inputs, no measured results (BASE's were measured on other weights)."""
    per_module = "".join(f"; the tensors under `{prefix}` at alpha {a}" for prefix, a in module_alphas.items())
    options = "".join(f" --module-alpha {prefix}={a}" for prefix, a in module_alphas.items())
    write_derived_card(
        folder,
        args.base,
        kind=kind,
        name=f"DiTAR weight interpolation (alpha {args.alpha})",
        summary=(
            f"A DiTAR {kind} whose weights are (1 - alpha) x `{args.base}` + alpha x `{finetuned_source}`, with "
            f"alpha {args.alpha}{per_module} (WiSE-FT weight interpolation). Everything else (processor, vocoder, "
            f"default voice) is `{args.base}`'s. It has not been evaluated: the results of its inputs do not carry "
            "over. Evaluate it with examples/evaluate.py and render this card again with the results "
            "(model_cards/make_card.py --results)."
        ),
        made=(
            f"Made with `conversion/interpolate_weights.py {args.base} {args.finetuned} OUT --alpha {args.alpha}"
            f"{options}`."
        ),
    )


if __name__ == "__main__":
    main()

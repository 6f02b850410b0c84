#!/usr/bin/env python
"""Give a DiTAR pipeline a candidate LocDiT: a distilled few-step student for the patches where candidates compete.

    python conversion/add_candidate_locdit.py modeling_ditar/default runs/distill-guided-k1-natural/pipeline \\
        out/ditar-candidate-locdit

With best of K and pruning after N patches, the first N patches of every text are sampled K times and streaming plays
nothing until they are ranked. STUDENT's LocDiT (a pipeline that `examples/distill_locdit.py` exported from BASE)
becomes BASE's `candidate_locdit` and samples those N patches with the student's step count
(`candidate_num_inference_steps`); the kept candidate goes on with BASE's own LocDiT and steps. Everything else is
BASE's: OUT is a copy of BASE (processor, scheduler, vocoder, default voice and all) whose model config sets
`candidate_locdit`, whose weights add the student's LocDiT under `candidate_locdit.` in BASE's stored dtype, and whose
generation config sets `candidate_num_inference_steps`.

The student is STUDENT's `locdit`: distillation trains LocDiT in place and exports the teacher's pipeline with the
student there and the student's step count as `num_inference_steps`. A `candidate_locdit` that STUDENT holds is the
teacher's (a student distilled from a BASE that had one keeps it unchanged) and is ignored.

STUDENT must be a student of BASE: all its weights but LocDiT's (backbone, aggregation encoder, heads) must be BASE's,
since the candidate LocDiT samples from BASE's backbone and was taught to follow BASE's LocDiT; the first differing
tensors are named otherwise (`--allow-other-base` installs a student of another model knowingly). BASE itself, or a
copy whose LocDiT is BASE's own, is not a student and is refused. The student must have BASE's LocDiT shape and sample
with guidance at BASE's scale (a student distilled with `student_guidance_scale`): the candidate phase uses the call's
guidance scale for both LocDiTs, so a student whose guidance was folded into its weights (`distilled_guidance_scale`)
is refused. A BASE that already has a candidate LocDiT (the embedded default does) needs `--replace`. Only safetensors
files are read.

OUT's README.md is a new model card saying what OUT is (BASE with STUDENT's LocDiT as its candidate LocDiT), with
placeholders for the evaluation: generation with several candidates changes, so BASE's measured results do not carry
over. OUT must not lie inside BASE or STUDENT.
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
    load_weights,
    staged_output,
    sync_transformers_root,
    write_derived_card,
)
from interpolate_weights import model_folder  # noqa: E402

LOCDIT_SHAPE_KEYS = ("locdit_hidden_size", "locdit_num_layers", "locdit_num_heads", "locdit_intermediate_size")


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise ConversionError(f"{path} is missing: give a saved DiTAR pipeline or model folder")
    return json.loads(path.read_text())


def student_steps(base_generation: dict, student_generation: dict, student: Path) -> int:
    """The student's steps per patch, after checking that it samples with guidance at the base's scale."""
    if student_generation.get("distilled_guidance_scale") is not None:
        raise ConversionError(
            f"{student}: its LocDiT has guidance {student_generation['distilled_guidance_scale']} folded in "
            "(distilled_guidance_scale); a candidate LocDiT runs with the call's guidance, so distil it with "
            "`student_guidance_scale` instead"
        )
    scale, base_scale = student_generation.get("guidance_scale"), base_generation.get("guidance_scale")
    if scale != base_scale:
        raise ConversionError(
            f"{student} samples with guidance_scale {scale} and the base with {base_scale}; a candidate LocDiT runs "
            "at the base's scale, so distil the student at that scale"
        )
    steps = student_generation.get("num_inference_steps")
    if not (isinstance(steps, int) and steps >= 1):
        raise ConversionError(f"{student}: generation_config.json has no num_inference_steps >= 1 (got {steps!r})")
    return steps


def same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, where one of the two may be stored in another dtype (a float16 BASE, a float32 export of it)."""
    if a.shape != b.shape:
        return False
    return torch.equal(a, b) if a.dtype == b.dtype else torch.equal(a.to(b.dtype), b) or torch.equal(b.to(a.dtype), a)


def check_student_of(base: dict, student: dict, student_source: str, base_source: str) -> None:
    """Refuse a STUDENT that is not a student of BASE: its weights outside LocDiT differ from BASE's (another model,
    e.g. a pipeline BASE was blended or fine-tuned from), or its LocDiT is BASE's own (BASE again, not a student)."""
    outside = [n for n in base if not n.startswith(("locdit.", "candidate_locdit."))]
    differing = [n for n in outside if n not in student or not same_tensor(base[n], student[n])]
    if differing:
        raise ConversionError(
            f"{student_source} is not a student of {base_source}: {len(differing)} of its {len(outside)} weights "
            f"outside LocDiT differ from the base's (e.g. {', '.join(differing[:3])}), and a candidate LocDiT "
            "distilled against another backbone does not match the base's. Give the pipeline "
            "examples/distill_locdit.py exported with this BASE as its teacher, or pass --allow-other-base to install "
            "it knowingly"
        )
    locdit = [n for n in base if n.startswith("locdit.")]
    if locdit and all(n in student and same_tensor(base[n], student[n]) for n in locdit):
        raise ConversionError(
            f"{student_source}'s LocDiT is {base_source}'s own LocDiT, not a distilled student: give the pipeline "
            "examples/distill_locdit.py exported"
        )


def candidate_weights(base: dict, student: dict, student_source: str) -> dict[str, torch.Tensor]:
    """The student's `locdit.*` tensors renamed `candidate_locdit.*`, in the dtype and shape of the base's LocDiT."""
    out = {}
    base_locdit = {name: tensor for name, tensor in base.items() if name.startswith("locdit.")}
    missing = sorted(set(base_locdit) - set(student))
    if missing:
        raise ConversionError(f"{student_source} lacks LocDiT tensors the base has: {', '.join(missing[:5])}")
    for name, tensor in base_locdit.items():
        given = student[name]
        if given.shape != tensor.shape:
            raise ConversionError(
                f"{student_source}: {name} has shape {tuple(given.shape)}, the base's {tuple(tensor.shape)}"
            )
        out["candidate_" + name] = given.to(tensor.dtype).contiguous()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("base", type=Path, help="the pipeline to extend (a pipeline folder with model/)")
    parser.add_argument("student", type=Path, help="a few-step student distilled from BASE: a pipeline or model folder")
    parser.add_argument("out", type=Path, help="folder to write: a copy of BASE with the candidate LocDiT")
    parser.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    parser.add_argument(
        "--replace", action="store_true", help="BASE already has a candidate LocDiT: put the student in its place"
    )
    parser.add_argument(
        "--allow-other-base",
        action="store_true",
        help="install STUDENT's LocDiT although its other weights are not BASE's (a student of another model)",
    )
    args = parser.parse_args(argv)

    if not (args.base / "model" / "config.json").is_file():
        raise ConversionError(f"{args.base} is not a pipeline folder with model/config.json")
    if args.out.resolve() in (args.base.resolve(), args.student.resolve()):
        raise ConversionError(f"{args.out} is one of the inputs; write the result to a new folder")
    check_output_folder(args.out, args.force, args.base, args.student)
    check_not_inside_inputs(args.out, args.base, args.student)
    base_model, student_model = args.base / "model", model_folder(args.student)
    if student_model.resolve() == base_model.resolve():
        raise ConversionError(
            f"{args.student} is BASE itself: give the student pipeline examples/distill_locdit.py exported from it"
        )
    base_config, student_config = read_json(base_model / "config.json"), read_json(student_model / "config.json")
    if base_config.get("candidate_locdit") and not args.replace:
        raise ConversionError(
            f"{args.base} already has a candidate LocDiT; pass --replace to put the student in its place"
        )
    shape_keys = (*LOCDIT_SHAPE_KEYS, "feature_dim", "patch_size")
    different = [key for key in shape_keys if base_config.get(key) != student_config.get(key)]
    if different:
        raise ConversionError(f"{args.student} differs from {args.base} in {', '.join(different)}")
    base_generation = read_json(base_model / "generation_config.json")
    steps = student_steps(base_generation, read_json(student_model / "generation_config.json"), args.student)

    base = load_weights(base_model)
    if args.replace:  # the student takes the old candidate LocDiT's place
        base = {name: tensor for name, tensor in base.items() if not name.startswith("candidate_locdit.")}
    elif any(name.startswith("candidate_locdit.") for name in base):
        raise ConversionError(f"{base_model} already holds candidate_locdit weights; pass --replace to replace them")
    student = load_weights(student_model)
    if not args.allow_other_base:
        check_student_of(base, student, str(args.student), str(args.base))
    weights = {**base, **candidate_weights(base, student, str(student_model))}

    from safetensors.torch import save_file

    with staged_output(args.out) as tmp:
        shutil.copytree(args.base, tmp, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        target = tmp / "model"
        for stale in [*target.glob("*.safetensors"), *target.glob("model.safetensors.index.json")]:
            stale.unlink()
        save_file(weights, str(target / "model.safetensors"), metadata={"format": "pt"})
        (target / "config.json").write_text(json.dumps({**base_config, "candidate_locdit": True}, indent=2) + "\n")
        generation = {**base_generation, "candidate_num_inference_steps": steps}
        (target / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        sync_transformers_root(tmp)
        write_derived_card(
            tmp,
            args.base,
            name="DiTAR with a candidate LocDiT",
            summary=(
                f"`{args.base}` with the LocDiT of `{args.student}` (a few-step student distilled from it) as its "
                f"candidate LocDiT: while several candidates compete, their patches are sampled with the student in "
                f"{steps} step(s) per patch; the kept candidate goes on with the base's LocDiT. All other weights and "
                "parts are the base's. It has not been evaluated: generation with several candidates differs from "
                "the base's, so the base's results do not carry over. Evaluate it with examples/evaluate.py and "
                "render this card again with the results (model_cards/make_card.py --results)."
            ),
            made=f"Made with `conversion/add_candidate_locdit.py {args.base} {args.student} OUT`.",
        )
    added = sum(t.numel() for n, t in weights.items() if n.startswith("candidate_locdit."))
    ignored = any(name.startswith("candidate_locdit.") for name in student)
    print(
        f"wrote {args.out}: {args.base} with {args.student}'s LocDiT (its `locdit`, the student distillation trains) "
        f"as its candidate LocDiT ({added / 1e6:.2f}M parameters, {steps} step(s) per patch while candidates compete)"
        + (f"; {args.student}'s own candidate LocDiT, its teacher's, is not used" if ignored else "")
    )


if __name__ == "__main__":
    main()

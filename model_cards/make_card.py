#!/usr/bin/env python
"""Render a DiTAR model card (README.md for the Hub) from model_cards/ditar_template.md.

The card of the embedded default checkpoint (model_cards/ditar-espeak-tiny.md) is produced by

    python model_cards/make_card.py --preset embedded-default --out model_cards/ditar-espeak-tiny.md --force
    # once examples/evaluate.py has run on the trained checkpoint, fill in the numbers:
    python model_cards/make_card.py --preset embedded-default --results eval/default/results.json \\
        --pipeline modeling_ditar/default --out model_cards/ditar-espeak-tiny.md --force

The whole embedded-default folder (pipeline + this card as its README.md) comes from a training run with

    python conversion/checkpoint_to_pipeline.py runs/default modeling_ditar/default --card-preset embedded-default \
        --voice-audio voice.wav --voice-text "..." --results eval/default/results.json --force

Without --results every evaluation number is a clearly marked placeholder and the metadata has no model-index; with it
the model-index carries the WER (%) and SIM of the results' "model" row. Any other card:

    python model_cards/make_card.py --out hub/README.md --pipeline hub --results eval/results.json \\
        --name "DiTAR base" --repo-id org/ditar-base --datasets mythicinfinity/libritts_r --force
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EMBEDDED_DEFAULT = dict(
    name="DiTAR espeak tiny (embedded default)",
    summary=(
        "A small English text-to-speech model that ships inside the `modeling-ditar` Python package: "
        '`ditar synthesize "Hello there." -o hello.wav` or `DiTARPipeline.from_pretrained()` uses it with no '
        "download. Give it 3 to 8 seconds of clean speech and the transcript of that speech, and it speaks any English "
        "text in that voice (zero-shot voice cloning); without a prompt it speaks in its default voice. It is an early "
        "demonstration model (12.5 M parameters) trained on synthetic voices: mostly espeak-ng voices, and lightly on "
        "neural and diphone voices built from real speakers (Piper, Kokoro, festival). On espeak-ng voices it "
        "never heard, Whisper recognises about seven in ten of its words (WER 39.2%, against 27.5% for the same speech "
        "resynthesised) and its speaker similarity to the prompt is 0.78 (resynthesised speech: 0.82). It does not "
        "yet clone natural or human voices well: with flite voices and real recordings as prompts Whisper recognises "
        "62% of its words (WER 51% with each case's errors capped at its length) and the similarity drops to 0.63 "
        "(natural-voice table below). On 2 CPU cores it generates about 8 times faster than real time and "
        "streams its first audio after 0.12-0.20 s. English only. Inside the package its folder holds the weights "
        'and settings only: `DiTARPipeline.from_pretrained().save_pretrained("ditar-espeak-tiny")` writes the complete '
        'folder (its code included) that the transformers and diffusers lines under "Use it" load, with that folder '
        "in place of `<org>/<name>`."
    ),
    details={
        "backbone": "Qwen2 architecture (random init), 6 layers, hidden 256, 4 heads; IPA characters via espeak-ng",
        "aggregation encoder": "1 layer, width 256",
        "LocDiT": "3 layers, width 256; 2 history patches; patches of 4 frames (12.5 patches per second); a second "
        "LocDiT of the same shape, distilled to one guided step, samples the candidates before they are ranked "
        "(`candidate_locdit`, not in the paper)",
        "speech positions": '"aligned" (not in the paper): the speech after j patches sits at position '
        "j x 4 x r, r = the prompt's text tokens per frame, next to the text being spoken",
        "audio": "16 kHz, 80 log-mel bins, hop 320 (50 frames per second); Griffin-Lim vocoder (no weights)",
        "weights": "stored in float16 (25 MB, 12.5 M parameters of which 2.6 M are the candidate LocDiT), loaded in "
        "float32 by `DiTARPipeline.from_pretrained()`; on CPUs with AVX512-BF16 and no AMX (e.g. AMD Zen 5; on an "
        "Intel Xeon with AMX bfloat16 products were slower, so it stays in float32 there) its transformers' linears "
        "multiply bfloat16 copies of them, everything else in float32 (`matmul_dtype: auto` in model_index.json; "
        "`matmul_dtype=torch.float32` turns it off). The tables below were measured in float32; paired against "
        "it, bfloat16 products kept words, SIM and DNSMOS within noise on six sets "
        "(docs/research/benchmark/bfloat16_matmuls.md in the repository)",
        "sampling": "4 LocDiT steps per patch, LM guidance g = 1.5, temperature 0.5; best of 4 candidates: every "
        "text is sampled 4 times in one batch, after 12 patches the candidate whose speech so far the model's own CTC "
        "head reads as a prefix of the text most closely goes on alone (`num_candidates: 4`, "
        "`candidate_prune_after_patches: 12`; not in the paper). Real-time factor 0.11-0.13 for 10 s of speech on 2 "
        "CPU cores with native bfloat16, first streamed audio after 0.12-0.15 s (in float32: RTF 0.12-0.15, first "
        "audio after 0.16-0.19 s; RTF 0.10-0.15 and first audio after 0.08-0.11 s with `num_candidates=1` or "
        "`ditar synthesize --candidates 1`; 2026-12-05 on a 2-core AMD EPYC VM; timings on shared virtual machines "
        "vary by up to 30% from day to day). The candidates are sampled with the candidate LocDiT in one step "
        "(`candidate_num_inference_steps: 1`) and the kept one goes on with the 4-step LocDiT: first audio 0.16 s "
        "instead of 0.28 s in an interleaved comparison, with words, SIM and DNSMOS within noise on both tables below "
        "(docs/research/sweeps/candidate_locdit.md in the repository). "
        "`num_inference_steps=10` gives the paper's sampling after the candidates are ranked at about 1.5 times the "
        "cost (RTF 0.21 against 0.13-0.14 for one sentence), with the same words and SIM within noise "
        "(docs/research/sweeps/fast_default.md in the repository); "
        "`pipe.model.remove_candidate_locdit()` samples the candidates with the 4-step LocDiT too. Before vocoding, "
        "the speech's long-term average spectrum is moved half-way towards the voice prompt's "
        "(`prompt_spectrum_match: 0.5`, not in the paper): similarity to the prompt +0.021 on the natural-voice set "
        "and +0.004 on the espeak-ng pairs with the words within noise and DNSMOS P.808 0.01-0.04 lower "
        "(docs/research/sweeps/prompt_spectrum_matching.md in the repository); `prompt_spectrum_match=0` turns it off",
        "evaluation notes": "WER with Whisper-base and `examples/evaluate.py --asr-redecode-loops --dnsmos`, which "
        "decodes a clip once more, at temperature 0 with a repetition penalty, when Whisper's transcript is a "
        "repetition loop. The capped WER counts each case's errors up to its reference length, so a case where "
        "Whisper transcribes babble at length cannot dominate. On the natural-voice set the uncapped WER is high "
        "because a few cases gain many insertions (one LibriVox case did not stop and ran on to its length limit); the "
        "capped WER and the share of words recognised (62%) are the "
        "steadier figures. Griffin-Lim, not the model, limits DNSMOS: the resynthesised ground truth scores about the "
        "same. The RTF column was measured during the evaluation, with other jobs sharing the 2 CPU cores (two to "
        "three processes), so it is two to four times the idle figure in the sampling line above. Whisper's "
        "transcripts of the same audio differ a little from "
        "one machine to another and from run to run (about one point of WER), so changes to the model are judged in "
        "paired comparisons on one machine and day: prompt spectrum matching, for example, changed the words on the "
        "espeak-ng pairs by +6 ± 12 (WER 41.5% with it, 41.9% without)",
    },
    training=(
        "About 23 minutes on one H200 GPU, in five runs that each continued the previous weights on new random "
        "voices, about 4,800 voices and more than 100 hours of speech in all. The corpus is synthetic and built "
        "offline by `examples/build_corpus.py`: random espeak-ng voice variants reading fortune sentences. Training "
        "used `examples/train.py` with `examples/configs/default-gpu.yaml`, then "
        "`examples/configs/default-gpu-continue.yaml` "
        "(once with aligned speech positions switched on, "
        "`examples/research/configs/default-gpu-continue-aligned.yaml`) and "
        "`examples/configs/default-gpu-polish.yaml`, "
        "driven by `examples/scripts/train_on_gpu.sh`: batches of 24,000 to 96,000 frames, bf16 autocast, AdamW with "
        "warm-up and cosine decay (peak lr 2e-3, then 1e-3, then 4e-4), EMA 0.999, history dropout 0.5, "
        "classifier-free-guidance dropout 0.1, auxiliary CTC loss 0.1. The full log is "
        "docs/research/training/gpu_continuation.md in the repository. The test voices are stock espeak-ng voices "
        "never seen in training. Then 80 minutes on one CPU core with a natural-voice pack (350 Piper, Kokoro and "
        "festival speakers, most of them pitch-, formant- and tempo-shifted variants, with rooms, noise, telephone "
        "band and level changes; 47% of the frames) next to 240 new espeak-ng voices "
        "(`examples/configs/default-cpu-natural.yaml`, 3,719 steps of 1,600 frames). The shipped weights are "
        "0.7 x the GPU-trained weights + 0.3 x that fine-tuned model (`conversion/interpolate_weights.py`): the "
        "fine-tuned model alone lost words, the interpolation gains words on natural voices and keeps the "
        "espeak-ng figures; docs/research/training/cpu_natural_continuation.md in the repository. The candidate "
        "LocDiT was then distilled from the shipped LocDiT on 2 CPU cores in 63 minutes (`examples/distill_locdit.py "
        "--config examples/configs/distill-guided-natural-cpu.yaml`: regression onto the 4-step sampler's patches "
        "from the same noise, one guided step, the backbone frozen, 4,500 steps with on-policy rounds, on the same "
        "training voices) and added with `conversion/add_candidate_locdit.py`. No voice or "
        "recording of the evaluation sets was used in training. Their sentences were not all kept out: 47 of the 100 "
        "espeak-ng test sentences were among the 4,800 fortune sentences the 80-minute CPU fine-tune read, in other "
        "voices (`examples/build_corpus.py` now keeps every evaluation sentence out of training). On the 53 test cases "
        "whose sentences no training corpus held, the WER is 38.4% (resynthesised: 25.8%); on the other 47, 40.2% "
        "(29.7%), so the sentences it had read did not flatter the figures "
        "(docs/research/diagnostics/evaluation_sentence_leak.md in the repository). The corpus is not on the Hub, so "
        "the card lists no training dataset."
    ),
    repo_id=None,
    eval_dataset_name="espeak-ng test voices (examples/evaluate.py cases)",
    eval_dataset_type="custom",
    eval_dataset_split="test",
    # further tables, shown when the file is there (python examples/evaluate.py ... then copy its results.json here)
    extra_results=[
        (
            "Natural voices: every flite voice and real recordings (LibriVox readers, pocketsphinx)",
            ROOT / "model_cards" / "results" / "ditar-espeak-tiny-natural.json",
        )
    ],
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="card file to write (e.g. FOLDER/README.md)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--preset", choices=["embedded-default"], help="texts of a card we publish")
    p.add_argument("--results", type=Path, help="results.json written by examples/evaluate.py")
    p.add_argument(
        "--extra-results",
        nargs=2,
        action="append",
        metavar=("TITLE", "RESULTS_JSON"),
        default=[],
        help="a further evaluation shown as its own table (repeatable), e.g. out-of-domain prompts",
    )
    p.add_argument("--pipeline", type=Path, help="a saved pipeline folder to describe (architecture, parameters)")
    p.add_argument("--kind", default="pipeline", choices=["pipeline", "model", "processor"])
    p.add_argument("--name", help="model name (card title)")
    p.add_argument("--summary", help="one paragraph under the title")
    p.add_argument("--repo-id", help="Hub repo id used in the code snippets")
    p.add_argument("--license", default="apache-2.0")
    p.add_argument("--language", nargs="+", default=["en"])
    p.add_argument("--datasets", nargs="*", help="training datasets (Hub dataset ids)")
    p.add_argument("--base-model", help="Hub id of the LM the backbone was initialised from")
    p.add_argument("--tags", nargs="*", help="extra tags")
    p.add_argument("--eval-dataset-name", help="name of the evaluation data in the model-index")
    p.add_argument("--eval-dataset-type", help="Hub id (or 'custom') of the evaluation data in the model-index")
    p.add_argument("--eval-split", help="split of the evaluation data")
    p.add_argument("--template", type=Path, help="Jinja template (default model_cards/ditar_template.md)")
    return p


RESULTS_HINT = "give the results.json that examples/evaluate.py wrote in its --out folder"


def read_results(path: Path, option: str, model_row: bool) -> dict:
    """The results file `path`, checked as the card reads it (its 'model' row feeds the model-index): a wrong file is
    one `error:` line naming it and what to give instead, not a traceback."""
    sys.path.insert(0, str(ROOT))
    from modeling_ditar.hub_utils import eval_results, load_results

    try:
        results = load_results(path)
    except ValueError as err:  # load_results names the file itself, a file that is not JSON included
        detail = str(err).removeprefix(f"{path}: ").rstrip(".")
        raise SystemExit(f"error: {option} {path}: {detail}; {RESULTS_HINT}") from None
    if model_row:
        try:
            eval_results(results, "", "custom")
        except (ValueError, TypeError) as err:
            row = next((r for r in results["rows"] if r["key"] == "model"), None)
            if row is None:
                fix = "evaluate the model too (examples/evaluate.py --rows gt,model --pipeline FOLDER)"
            elif row.get("failed") and row.get("failed") == row.get("cases"):
                fix = f"all {row['cases']} of its cases failed (their errors are in the evaluation's results.md)"
            else:
                fix = RESULTS_HINT
            raise SystemExit(f"error: {option} {path}: {str(err).rstrip('.')}; {fix}") from None
    return results


def render(args: argparse.Namespace):
    sys.path.insert(0, str(ROOT))
    from modeling_ditar.hub_utils import (
        describe_pipeline_folder,
        failed_cases_warnings,
        render_model_card,
        results_of_another_model,
    )

    preset = dict(EMBEDDED_DEFAULT) if args.preset == "embedded-default" else {}
    details = dict(preset.get("details", {}))
    results = None if args.results is None else read_results(args.results, "--results", model_row=True)
    extra = [(title, path) for title, path in preset.get("extra_results", []) if path.is_file()] + [
        (title, Path(path)) for title, path in args.extra_results
    ]
    extra = [(title, read_results(path, "--extra-results", model_row=False)) for title, path in extra]
    if args.pipeline is not None:
        if not (args.pipeline / "model_index.json").is_file():
            raise SystemExit(f"--pipeline {args.pipeline}: not a saved pipeline folder (no model_index.json)")
        details.update(describe_pipeline_folder(args.pipeline))
        mismatch = results_of_another_model(results, args.pipeline, args.pipeline)
        if mismatch is not None:
            print(f"warning: {mismatch}", file=sys.stderr)
    for table in [results, *(r for _, r in extra)]:
        for message in failed_cases_warnings(table):
            print(f"warning: {message}", file=sys.stderr)
    return render_model_card(
        kind=args.kind,
        model_name=args.name or preset.get("name", "DiTAR"),
        summary=args.summary or preset.get("summary"),
        repo_id=args.repo_id or preset.get("repo_id"),
        results=results,
        eval_dataset_name=args.eval_dataset_name or preset.get("eval_dataset_name", "DiTAR zero-shot evaluation cases"),
        eval_dataset_type=args.eval_dataset_type or preset.get("eval_dataset_type", "custom"),
        eval_dataset_split=args.eval_split or preset.get("eval_dataset_split"),
        license=args.license,
        language=args.language,
        datasets=args.datasets,
        base_model=args.base_model,
        tags=args.tags,
        details=details,
        training=preset.get("training"),
        template_path=args.template,
        extra_results=extra,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.out.exists() and not args.force:
        raise SystemExit(f"{args.out} exists; pass --force to overwrite it")
    for path in [args.results, *(Path(p) for _, p in args.extra_results)]:
        if path is not None and not path.is_file():
            raise SystemExit(f"{path}: no such file")
    card = render(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    card.save(str(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
        "The small checkpoint that ships inside the `modeling-ditar` package and answers "
        "`DiTARPipeline.from_pretrained()` and `ditar synthesize` when no model is given. It is an early demonstration "
        "model, 9.9 M parameters trained for about 23 minutes (five runs) on one GPU on synthetic espeak-ng speech: it "
        "clones the voice (speaker similarity above the bar) and the timing (it stops on its own, with durations "
        "within a few percent of the ground truth) and says most of the words. It samples 4 candidates per text and "
        "keeps the one its own CTC head reads as the text most closely (`num_candidates: 4` in its config; not in the "
        "paper; about 1.7 times the compute of one sample, real-time factor 1.3 on 2 CPU cores against 0.66; `num_candidates=1` "
        "or `ditar synthesize --candidates 1` for plain sampling). On unseen stock voices Whisper-base recognises 67% "
        "of the words (one candidate: 61%; resynthesised ground truth: 74%), and the WER, 45.3%, meets the bar of at "
        "most 49.2% (Evaluation, with `examples/evaluate.py --asr-redecode-loops`, which decodes a clip once more, at "
        "temperature 0 with a repetition penalty, when Whisper's transcript is a repetition loop). Without that "
        "re-decoding two of the 100 clips send Whisper into loops (\"do, do, do, ...\") and the WER is 66.0%; the capped "
        "WER (each case's errors at most its reference length) is 41.9% (42.7% without re-decoding) against 1.5 x "
        "31.2% = 46.8% for the resynthesis. Sampled from the real speech so far (teacher-forced) one candidate recognises no more words "
        "than generated: the per-patch prediction is the limit, not the autoregressive loop "
        "(docs/research/training/gpu_continuation.md and docs/research/sweeps/candidates_newvoices48.md in the repository)."
    ),
    details={
        "backbone": "Qwen2 architecture (random init), 6 layers, hidden 256, 4 heads; IPA characters via espeak-ng",
        "aggregation encoder": "1 layer, width 256",
        "LocDiT": "3 layers, width 256; 2 history patches; patches of 4 frames (12.5 patches per second)",
        "audio": "16 kHz, 80 log-mel bins, hop 320 (50 frames per second); Griffin-Lim vocoder (no weights)",
        "weights": "stored in float16 (20 MB), loaded in float32 by `DiTARPipeline.from_pretrained()`",
        "sampling": "10 LocDiT steps per patch, LM guidance g = 1.5, temperature 0.5; best of 4 candidates ranked by "
                    "the model's CTC head (`transcript_ctc_loss`)",
    },
    training=(
        "`bash examples/scripts/train_on_gpu.sh OUT 8.8 800` on one H200 (config `examples/configs/default-gpu.yaml`): "
        "a synthetic corpus built offline by `examples/build_corpus.py` (800 random espeak-ng voice variants reading "
        "fortune sentences, 19,823 utterances, 17.9 h; built in 51 s on 16 cores), then 1,742 steps of "
        "`examples/train.py` in a 6.1-minute budget: batches of 24,000 frames (8 min of speech), bf16 autocast, "
        "AdamW lr 2e-3 with warm-up and cosine decay, EMA 0.999, history dropout 0.5, classifier-free-guidance "
        "dropout 0.1, auxiliary CTC loss 0.1. Then, in a second GPU session, `VOICE_SEED=1 bash "
        "examples/scripts/train_on_gpu.sh OUT 8.8 800 examples/configs/default-gpu-continue.yaml`: 800 other random "
        "voices (19,836 utterances, 18.0 h, same sentence split), 1,484 more steps from those weights in 6.15 minutes, "
        "batches of 48,000 frames, lr 1e-3 with warm-up and cosine decay. Then, in a third, `VOICE_SEED=2 bash "
        "examples/scripts/train_on_gpu.sh OUT 9.4 1200 examples/research/configs/default-gpu-continue-aligned.yaml`: 1,200 "
        "other random voices (29,762 utterances, 26.9 h), speech positions switched to \"aligned\" (not in the paper: "
        "the speech after j patches sits at position j x 4 x r, r = the prompt's text tokens per frame), batches of "
        "96,000 frames, lr 1e-3; the call ran out of time at step ~1,650 and the shipped weights are the EMA of its "
        "step-1,000 checkpoint (about 88M frames, 139 s of training). Then, in a fourth session, `VOICE_SEED=3 bash "
        "examples/scripts/train_on_gpu.sh OUT 9.4 1200 examples/configs/default-gpu-continue.yaml`: 1,200 other voices "
        "(29,746 utterances, 27.1 h), 2,689 steps in 6.4 minutes at lr 1e-3 with cosine decay to 5e-5 (~234M frames), "
        "and in a second call `VOICE_SEED=4 bash examples/scripts/train_on_gpu.sh OUT 4.5 800 "
        "examples/configs/default-gpu-polish.yaml`: 800 other voices, 844 steps at a peak lr of 4e-4 with decay "
        "(docs/research/training/gpu_continuation.md). About 23 minutes of GPU training in all (6.1 + 6.15 + 2.3 + 6.2 + 1.7). The test "
        "voices are stock espeak-ng voices never seen in training. The corpus is not on the Hub, so the card lists no "
        "training dataset."
    ),
    repo_id=None,
    eval_dataset_name="espeak-ng test voices (examples/evaluate.py cases)",
    eval_dataset_type="custom",
    eval_dataset_split="test",
    # further tables, shown when the file is there (python examples/evaluate.py ... then copy its results.json here)
    extra_results=[("Out-of-domain prompts: flite voices and real speech (LibriVox); no bar",
                    ROOT / "model_cards" / "results" / "ditar-espeak-tiny-ood.json")],
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="card file to write (e.g. FOLDER/README.md)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--preset", choices=["embedded-default"], help="texts of a card we publish")
    p.add_argument("--results", type=Path, help="results.json written by examples/evaluate.py")
    p.add_argument("--extra-results", nargs=2, action="append", metavar=("TITLE", "RESULTS_JSON"), default=[],
                   help="a further evaluation shown as its own table (repeatable), e.g. out-of-domain prompts")
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


def render(args: argparse.Namespace):
    sys.path.insert(0, str(ROOT))
    from modeling_ditar.hub_utils import describe_pipeline_folder, render_model_card

    preset = dict(EMBEDDED_DEFAULT) if args.preset == "embedded-default" else {}
    details = dict(preset.get("details", {}))
    if args.pipeline is not None:
        if not (args.pipeline / "model_index.json").is_file():
            raise SystemExit(f"--pipeline {args.pipeline}: not a saved pipeline folder (no model_index.json)")
        details.update(describe_pipeline_folder(args.pipeline))
    return render_model_card(
        kind=args.kind,
        model_name=args.name or preset.get("name", "DiTAR"),
        summary=args.summary or preset.get("summary"),
        repo_id=args.repo_id or preset.get("repo_id"),
        results=args.results,
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
        extra_results=[(title, path) for title, path in preset.get("extra_results", []) if path.is_file()]
        + [(title, Path(path)) for title, path in args.extra_results],
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

"""Split an evaluation's cases by whether a training corpus read their target sentences, and compare the model's
errors beyond its own resynthesis on the two halves (docs/research/diagnostics/evaluation_sentence_leak.md).

    python examples/research/evaluation_sentence_leak.py MODEL_RESULTS GT_RESULTS -- BUILD_CORPUS_ARGS...

MODEL_RESULTS holds the `model` row of examples/evaluate.py, GT_RESULTS the `gt` and `resynth` rows of the same cases
(one results.json may hold all three). BUILD_CORPUS_ARGS is the training corpus's build_corpus.py command line; its
train split is planned as the builder planned it before evaluation sentences were reserved (no synthesis)."""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import build_corpus  # noqa: E402
from corpus.sentences import load_sentences  # noqa: E402
from corpus.voices import Voice  # noqa: E402


def planned_train_texts(argv: list[str]) -> set[str]:
    """The train sentences `build_corpus.py argv` planned before the evaluation sentences were kept out of training."""
    args = build_corpus.build_parser().parse_args(argv)
    if args.test_utts_per_voice is None:
        args.test_utts_per_voice = args.utts_per_speaker
    sentences = load_sentences(args.fortunes_dir, seed=args.seed, min_words=args.min_words, max_words=args.max_words)[
        args.skip_sentences :
    ]
    voices = args.num_train_speakers + args.num_val_speakers
    bank = [Voice(name=f"v{i:05d}", base="en-us", variant="", speed=170, path="") for i in range(voices)]
    plan = build_corpus.plan_synthetic(args, sentences, bank, reserved=frozenset())
    return {job["text"] for job in plan["train"]}


def summary(cases: dict, ids: list[str], row: str) -> str:
    words = [cases[i]["rows"][row]["words"] for i in ids]
    ref = sum(w["ref_words"] for w in words)
    wer = sum(w["errors"] for w in words) / ref
    return f"WER {wer:.1%}"


def capped(words: dict) -> int:
    return min(words["errors"], words["ref_words"])


def main(argv: list[str]) -> str:
    if "--" not in argv or argv.index("--") != 2:
        raise SystemExit(__doc__)
    model = {c["id"]: c for c in json.loads(Path(argv[0]).read_text())["cases"]}
    truth = {c["id"]: c for c in json.loads(Path(argv[1]).read_text())["cases"]}
    train = planned_train_texts(argv[3:])
    read = sorted(i for i, case in model.items() if case["target_text"] in train)
    unread = sorted(i for i in model if i not in read)
    lines, means = [], []
    for name, ids in (("target read in training", read), ("target never read", unread)):
        if len(ids) < 2:
            lines.append(f"{name}: {len(ids)} cases, too few to compare")
            continue
        excess = [
            capped(model[i]["rows"]["model"]["words"]) - capped(truth[i]["rows"]["resynth"]["words"]) for i in ids
        ]
        mean = sum(excess) / len(excess)
        se = math.sqrt(sum((x - mean) ** 2 for x in excess) / (len(excess) - 1) / len(excess))
        means.append((mean, se))
        lines.append(
            f"{name}: {len(ids)} cases, model {summary(model, ids, 'model')}, resynthesised "
            f"{summary(truth, ids, 'resynth')}, ground truth {summary(truth, ids, 'gt')}; capped errors beyond "
            f"resynthesis per case {mean:.2f} ± {se:.2f}"
        )
    if len(means) == 2:
        lines.append(
            f"read - never read: {means[0][0] - means[1][0]:+.2f} ± {math.hypot(means[0][1], means[1][1]):.2f} "
            "errors per case"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(main(sys.argv[1:]))

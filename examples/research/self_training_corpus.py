r"""A corpus of the model's own best clones, for self-training (a probe of on-policy training data).

Free-running, a model continued on natural voices loses words that it predicts well teacher-forced: it learns from
real speech histories and then reads its own. This builds training data in which every target is the model's own
speech: for each natural-voice utterance of a corpus split, the pipeline (as configured: best of K with its CTC head)
speaks that utterance's text from another utterance of the same speaker as the prompt, with prompt spectrum matching
off (the raw model output). Rows that did not stop, and those whose CTC score per token is outside the best
`--keep` fraction, are dropped. Each row keeps its real speaker's id, so training pairs (with `pair_prob`) put one of
the speaker's clones before another. No real recording is a target.

    python examples/research/self_training_corpus.py --corpus data/cpu_natural_corpus_clean \
        --sources piper,kokoro,festival --passes 2 --keep 0.7 --out data/self_natural_corpus
    python examples/train.py --config CONFIG   # dataset: data/self_natural_corpus, init_from the same pipeline

Writes a `datasets` folder with train and validation splits (text, speaker_id, source, duration, features), and the
source corpus's feature extractor and statistics, as build_corpus.py lays them out.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/


def prompt_pairs(
    speakers: list, sources: list, keep: set[str], max_rows: int | None, seed: int, passes: int = 1
) -> list[tuple[int, int]]:
    """(target row, prompt row) pairs: each row of the kept sources with another row of its speaker (a new draw in
    each of `passes` passes), shuffled."""
    rng = random.Random(seed)
    by_speaker: dict[str, list[int]] = {}
    for row, (speaker, source) in enumerate(zip(speakers, sources, strict=True)):
        if source in keep:
            by_speaker.setdefault(str(speaker), []).append(row)
    pairs = [
        (row, rng.choice([r for r in rows if r != row]))
        for _ in range(passes)
        for rows in by_speaker.values()
        if len(rows) > 1
        for row in rows
    ]
    rng.shuffle(pairs)
    return pairs[:max_rows] if max_rows else pairs


@torch.no_grad()
def speak(pipe, split, pairs, seed: int, log_every: int = 50) -> list[dict]:
    """The pipeline's features (de-normalised, [T, D]) for each pair, with its stop flag and CTC score per token."""
    model = pipe.model
    rows, start = [], time.perf_counter()
    for index, (target, prompt) in enumerate(pairs):
        target_row, prompt_row = split[target], split[prompt]
        audio = np.asarray(prompt_row["audio"], dtype=np.float32)
        out = pipe(
            target_row["text"],
            prompt_audio=audio,
            prompt_text=prompt_row["text"],
            sampling_rate=prompt_row["sampling_rate"],
            generator=torch.Generator().manual_seed(seed + index),
            output_type="features",
            prompt_spectrum_match=0.0,
        )
        features = torch.as_tensor(np.asarray(out.audios[0][: out.audio_lengths[0]]), dtype=torch.float32)
        inputs = pipe.encode_inputs([target_row["text"]], audio, prompt_row["text"], prompt_row["sampling_rate"])
        score = float(model.score_candidates(inputs, [model.normalize_features(features)])[0])
        rows.append(
            {
                "text": target_row["text"],
                "speaker_id": str(target_row["speaker_id"]),
                "source": f"self:{target_row['source']}",
                "features": features.numpy(),
                "stopped": bool(out.stopped[0]),
                "ctc": score,
            }
        )
        if (index + 1) % log_every == 0:
            print(f"{index + 1}/{len(pairs)} spoken ({time.perf_counter() - start:.0f} s)", flush=True)
    return rows


def keep_best(rows: list[dict], fraction: float) -> list[dict]:
    """The rows that stopped, and of those the `fraction` with the lowest CTC score per token."""
    stopped = [r for r in rows if r["stopped"] and np.isfinite(r["ctc"])]
    cut = sorted(r["ctc"] for r in stopped)[max(0, int(round(fraction * len(stopped))) - 1)] if stopped else 0.0
    return [r for r in stopped if r["ctc"] <= cut]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, help="a build_corpus.py folder with audio and a source column")
    p.add_argument("--split", default="train")
    p.add_argument("--sources", default="piper,kokoro,festival", help="comma-separated sources to clone")
    p.add_argument("--max-rows", type=int, default=None)
    p.add_argument("--passes", type=int, default=1, help="clones of each utterance (each from another prompt)")
    p.add_argument("--keep", type=float, default=0.7, help="fraction of the stopped rows kept, by CTC score")
    p.add_argument("--validation-rows", type=int, default=32, help="kept rows set aside as the validation split")
    p.add_argument("--pipeline", default=None, help="the pipeline that speaks (default: the embedded default)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if not 0 < args.keep <= 1:
        p.error("--keep must be in (0, 1]")
    from datasets import Dataset, DatasetDict, load_from_disk
    from eval_lib.systems import load_pipeline

    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    split = load_from_disk(args.corpus)[args.split]
    pairs = prompt_pairs(
        split["speaker_id"], split["source"], set(args.sources.split(",")), args.max_rows, args.seed, args.passes
    )
    rows = speak(pipe, split, pairs, args.seed)
    kept = keep_best(rows, args.keep)
    rate = pipe.processor.feature_extractor.sampling_rate / pipe.processor.feature_extractor.hop_length
    columns = {key: [r[key] for r in kept] for key in ("text", "speaker_id", "source")} | {
        "features": [r["features"].tolist() for r in kept],
        "duration": [len(r["features"]) / rate for r in kept],
    }
    data = Dataset.from_dict(columns)
    n_val = max(1, min(args.validation_rows, len(data) // 10))
    out = Path(args.out)
    DatasetDict({"train": data.select(range(n_val, len(data))), "validation": data.select(range(n_val))}).save_to_disk(
        str(out)
    )
    for name in ("feature_extractor", "feature_stats.json"):
        source = Path(args.corpus) / name
        if source.is_dir():
            shutil.copytree(source, out / name, dirs_exist_ok=True)
        elif source.exists():
            shutil.copy(source, out / name)
    summary = {
        "command": " ".join(["python", *sys.argv]),
        "spoken": len(rows),
        "stopped": sum(r["stopped"] for r in rows),
        "kept": len(kept),
        "ctc_spoken_mean": float(np.mean([r["ctc"] for r in rows if np.isfinite(r["ctc"])])),
        "ctc_kept_mean": float(np.mean([r["ctc"] for r in kept])) if kept else None,
        "hours": float(sum(columns["duration"]) / 3600),
    }
    (out / "self_training_summary.json").write_text(json.dumps(summary, indent=1))
    print(summary)


if __name__ == "__main__":
    main()

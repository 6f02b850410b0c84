"""Would the consensus of the candidates (minimum Bayes risk) pick better best-of-K candidates than the CTC head?

A misread word is one sample's accident; the words every candidate says alike are more likely right. So keep the
candidate closest, on average, to the other candidates of its text: distance = dynamic time warping between their
normalised log-mel frames (each candidate's own mean removed, so that content, not colour, counts), divided by the
warping path's length. Euclidean and cosine frame distances, each alone and as a rank sum with the CTC head.
Text-blind and training-free. Where the cases have their real recording, the candidate closest to it by the same
distance is shown too (a judge no generation could have, asking whether closeness to the right speech is a usable
label for training a judge). Reads the candidates `candidate_ranking_probe.py --save-candidates` wrote:

    python examples/research/consensus_judge_probe.py outputs/eval/candidates-natval48

Whisper's counts and Resemblyzer's SIM come from the ranking probe: they only measure. Writes PROBE/consensus_judges.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/

from eval_lib.cases import load_cases  # noqa: E402
from eval_lib.systems import load_pipeline, read_audio  # noqa: E402
from eval_lib.teacher_forcing import real_frames  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from judge_table import oracle_pick, rank_sum_pick, ranks, selection_table  # noqa: E402

METRICS = ("euclidean", "cosine")


def warped_distance(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    """Mean frame distance along the best warping path between [T_a, D] and [T_b, D]."""
    import librosa

    cost, path = librosa.sequence.dtw(X=a.T, Y=b.T, metric=metric, backtrack=True)
    return float(cost[-1, -1] / len(path))


def consensus(frames: list[np.ndarray], metric: str) -> list[float]:
    """Each candidate's mean warped distance to the others (lower = more typical)."""
    k = len(frames)
    distances = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            distances[i, j] = distances[j, i] = warped_distance(frames[i], frames[j], metric)
    return (distances.sum(1) / (k - 1)).tolist()


def picks(candidates: list[dict]) -> dict[str, int]:
    ctc = [c["ctc"] for c in candidates]
    out = {"seed 0": 0, "CTC head": ranks(ctc).index(0)}
    for metric in METRICS:
        distance = [c[f"consensus_{metric}"] for c in candidates]
        out[f"consensus ({metric})"] = ranks(distance).index(0)
        out[f"CTC + consensus ({metric})"] = rank_sum_pick(ctc, distance)
        if f"recording_{metric}" in candidates[0]:
            out[f"closest to the real recording ({metric})"] = ranks(
                [c[f"recording_{metric}"] for c in candidates]
            ).index(0)
    out["oracle"] = oracle_pick(candidates)
    return out


def main(argv=None, pipe=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("probe", help="the folder candidate_ranking_probe.py --save-candidates wrote")
    p.add_argument(
        "--pipeline",
        default=None,
        help="the pipeline whose feature extractor reads the audio (default: the embedded default)",
    )
    args = p.parse_args(argv)
    folder = Path(args.probe)
    if not (folder / "candidates").is_dir():
        raise SystemExit(f"{folder}/candidates is missing: run candidate_ranking_probe.py with --save-candidates")
    data = json.loads((folder / "candidates.json").read_text())
    records = data["cases"]
    cases = {case.id: case for case in load_cases(data["meta"]["cases"])}
    pipe = pipe or load_pipeline(args.pipeline)
    for record in records:
        recording = None
        if cases[record["id"]].target_audio:
            z = real_frames(pipe, *read_audio(cases[record["id"]].target_audio)).float().numpy()
            recording = z - z.mean(0, keepdims=True)
        frames = []
        for cand in record["candidates"]:
            wave, rate = read_audio(folder / "candidates" / f"{record['id']}_{cand['seed']}.wav")
            z = real_frames(pipe, wave, rate).float().numpy()
            frames.append(z - z.mean(0, keepdims=True))
        for metric in METRICS:
            for cand, value in zip(record["candidates"], consensus(frames, metric), strict=True):
                cand[f"consensus_{metric}"] = value
            if recording is not None:
                for cand, z in zip(record["candidates"], frames, strict=True):
                    cand[f"recording_{metric}"] = warped_distance(z, recording, metric)
    table = selection_table(records, picks)
    text = f"# Consensus as a judge, {len(records)} cases\n\n`python {' '.join(sys.argv)}`\n\n{table}"
    (folder / "consensus_judges.md").write_text(text)
    print(text)
    return table


if __name__ == "__main__":
    main()

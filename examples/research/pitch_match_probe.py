"""Does moving the generated speech's pitch to the prompt's make it sound more like the prompt's speaker?

Generated speech tends to sit nearer the middle of the training voices' pitch than a low or high prompt, and to vary
its pitch less. This probe takes saved candidates (`candidate_ranking_probe.py --save-candidates`), measures the
median pitch and the pitch spread (semitones) of each prompt and candidate with Praat, and re-synthesises the candidate
with Praat's PSOLA "Change gender" (formants kept): its median moved to the prompt's, and the same with its spread
scaled to the prompt's too (factor clipped to [0.5, 2]). Whisper's words and Resemblyzer's SIM are measured again
and paired against the unchanged candidate (from the ranking probe's record).

    python examples/research/pitch_match_probe.py outputs/eval/candidates-natval48 --seeds 2 --threads 2

Needs `praat-parselmouth` (the corpus extra). Writes PROBE/pitch_match.json and prints the paired differences.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/

from eval_lib.asr import WhisperASR  # noqa: E402
from eval_lib.cases import load_cases  # noqa: E402
from eval_lib.metrics import cosine, word_stats  # noqa: E402
from eval_lib.speaker import ResemblyzerEncoder  # noqa: E402
from eval_lib.systems import read_audio  # noqa: E402

VARIANTS = ("median", "median and spread")


def pitch_stats(wave: np.ndarray, rate: int):
    """(Praat sound, median pitch in Hz, pitch spread in semitones); NaN where Praat finds no voiced frame."""
    import parselmouth
    from parselmouth.praat import call

    sound = parselmouth.Sound(wave.astype(np.float64), sampling_frequency=rate)
    pitch = call(sound, "To Pitch", 0.0, 60, 500)
    median = call(pitch, "Get quantile", 0, 0, 0.5, "Hertz")
    spread = call(pitch, "Get standard deviation", 0, 0, "semitones")
    return sound, median, spread


def moved(sound, median: float, spread_factor: float) -> np.ndarray:
    """The sound with its median pitch at `median` Hz and its pitch spread times `spread_factor` (formants kept)."""
    from parselmouth.praat import call

    out = call(sound, "Change gender", 60, 500, 1.0, median, spread_factor, 1.0)
    return np.asarray(out.values, dtype=np.float32).reshape(-1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("probe", help="the folder candidate_ranking_probe.py --save-candidates wrote")
    p.add_argument("--seeds", type=int, default=2, help="the first N candidates of each case")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    folder = Path(args.probe)
    data = json.loads((folder / "candidates.json").read_text())
    cases = {case.id: case for case in load_cases(data["meta"]["cases"])}
    asr, speaker = WhisperASR(cpu_threads=args.threads, redecode_loops=True), ResemblyzerEncoder()
    rows = []
    for record in data["cases"]:
        case = cases[record["id"]]
        prompt, prompt_rate = read_audio(case.prompt_audio)
        _, prompt_median, prompt_spread = pitch_stats(prompt, prompt_rate)
        prompt_embedding = speaker.embed(prompt, prompt_rate)
        for cand in record["candidates"][: args.seeds]:
            wave, rate = read_audio(folder / "candidates" / f"{record['id']}_{cand['seed']}.wav")
            sound, median, spread = pitch_stats(wave, rate)
            row = {"id": record["id"], "seed": cand["seed"], "prompt": [prompt_median, prompt_spread]}
            row |= {"candidate": [median, spread], "unchanged": [cand["hits"], cand["sim"]]}
            for variant in VARIANTS:
                if math.isnan(prompt_median) or math.isnan(median):
                    row[variant] = row["unchanged"]  # nothing to move: the candidate stays as it is
                    continue
                factor = 1.0 if variant == "median" else float(np.clip(prompt_spread / max(spread, 1e-6), 0.5, 2.0))
                y = moved(sound, prompt_median, factor)
                row[variant] = [
                    word_stats(case.target_text, asr.transcribe(y, rate)).hits,
                    cosine(speaker.embed(y, rate), prompt_embedding),
                ]
            rows.append(row)
            print(row, flush=True)
    (folder / "pitch_match.json").write_text(json.dumps(rows, indent=1))
    known = [r for r in rows if not math.isnan(r["candidate"][0]) and not math.isnan(r["prompt"][0])]
    shift = np.array([12 * math.log2(r["candidate"][0] / r["prompt"][0]) for r in known])
    ratio = np.array([r["candidate"][1] / r["prompt"][1] for r in known])
    print(
        f"{len(known)} of {len(rows)} candidates with a pitch: median pitch {np.median(np.abs(shift)):.1f} semitones "
        f"from the prompt's (mean {shift.mean():+.1f}); spread {np.median(ratio):.2f} of the prompt's (median ratio)"
    )
    for variant in VARIANTS:
        dh = np.array([r[variant][0] - r["unchanged"][0] for r in rows], dtype=float)
        ds = np.array([r[variant][1] - r["unchanged"][1] for r in rows], dtype=float)
        print(
            f"{variant}: words {dh.sum():+.0f} ± {dh.std(ddof=1) * math.sqrt(len(dh)):.0f}, "
            f"SIM {ds.mean():+.4f} ± {ds.std(ddof=1) / math.sqrt(len(ds)):.4f}"
        )


if __name__ == "__main__":
    main()

"""How far apart are speech and steady noise on the voice prompt's is-it-speech measure? Prints the speech-band loudness
range (`modeling_ditar.prompt_audio.speech_band_loudness_range_db`) of every prompt and target of the evaluation sets
long enough to be judged, of random 0.5, 1 and 1.5 s windows of the prompts (shorter ones too, to show why the check
leaves them alone), of the prompts under white noise at 5 and 0 dB SNR, of the clips of training corpora, and of
steady noises (white, pink, brown, low-passed, hum with harmonics) at 8-48 kHz. The check's limit
(`MIN_PROMPT_LOUDNESS_RANGE_DB`) and the shortest clip it judges were chosen from these numbers. Run from the
repository root:

    python examples/research/prompt_loudness_range.py --eval-dir data/eval --corpus data/cpu_natural_corpus
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def coloured_noise(rng, n: int, exponent: float) -> np.ndarray:
    """Gaussian noise whose power falls as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    freqs = np.fft.rfftfreq(n)
    spectrum = rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))
    spectrum[1:] /= freqs[1:] ** (exponent / 2)
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def summary(name: str, values) -> None:
    v = np.array([x for x in values if np.isfinite(x)])
    if len(v):
        print(f"{name}: n={len(v)} min {v.min():.1f} p1 {np.percentile(v, 1):.1f} median {np.median(v):.1f} dB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=Path("data/eval"), help="folders holding cases.jsonl")
    parser.add_argument("--corpus", type=Path, action="append", default=[], help="a corpus of build_corpus.py")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import soundfile as sf

    import modeling_ditar.prompt_audio as prompt_audio
    from modeling_ditar.prompt_audio import MIN_PROMPT_LOUDNESS_RANGE_DB, speech_band_loudness_range_db

    measure = speech_band_loudness_range_db
    gate = prompt_audio._MIN_JUDGED_SECONDS

    def measure_any_length(audio, rate):  # the measure on windows shorter than the check judges
        prompt_audio._MIN_JUDGED_SECONDS = 0.0
        try:
            return measure(audio, rate)
        finally:
            prompt_audio._MIN_JUDGED_SECONDS = gate

    rng = np.random.default_rng(args.seed)
    whole, windows, noisy = [], {0.5: [], 1.0: [], 1.5: []}, {5: [], 0: []}
    for cases in sorted(args.eval_dir.glob("*/cases.jsonl")):
        for line in cases.read_text().splitlines():
            case = json.loads(line)
            for key in ("prompt_audio", "target_audio"):
                if not case.get(key):
                    continue
                audio, rate = sf.read(cases.parent / case[key])
                audio = audio.mean(axis=1) if audio.ndim > 1 else audio
                whole.append(measure(audio, rate))
                if key != "prompt_audio":
                    continue
                for seconds, found in windows.items():
                    n = int(seconds * rate)
                    for _ in range(5):
                        start = int(rng.integers(0, max(1, len(audio) - n)))
                        found.append(measure_any_length(audio[start : start + n], rate) if len(audio) >= n else np.inf)
                for snr, found in noisy.items():
                    noise = rng.standard_normal(len(audio))
                    noise *= np.sqrt(np.mean(audio**2) / np.mean(noise**2) / 10 ** (snr / 10))
                    found.append(measure(audio + noise, rate))
    print(f"limit: {MIN_PROMPT_LOUDNESS_RANGE_DB} dB; clips under {gate:g} s are not judged")
    summary("evaluation prompts and targets, whole", whole)
    for seconds, found in windows.items():
        summary(f"evaluation prompts, random {seconds:g} s windows", found)
    for snr, found in noisy.items():
        summary(f"evaluation prompts under white noise at {snr} dB SNR", found)
    for corpus in args.corpus:
        import datasets

        splits = datasets.load_from_disk(str(corpus))
        for split in splits:
            rows = splits[split].select_columns(["audio", "sampling_rate"])
            found = []
            for row in rows:
                audio = row["audio"]["array"] if isinstance(row["audio"], dict) else row["audio"]
                found.append(measure(np.asarray(audio), row["sampling_rate"]))
            summary(f"{corpus} {split}", found)
    worst: dict[str, float] = {}
    for rate in (8000, 16000, 22050, 24000, 44100, 48000):
        for _ in range(5):
            n = int(2.5 * rate)
            t = np.arange(n) / rate
            steady = {
                "white noise": coloured_noise(rng, n, 0),
                "pink noise": coloured_noise(rng, n, 1),
                "brown noise": coloured_noise(rng, n, 2),
                "low-passed noise (fan)": np.convolve(coloured_noise(rng, n, 0), np.ones(8) / 8, "same"),
                "50 Hz hum, 19 harmonics": sum(
                    np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 6)) / k for k in range(1, 20)
                )
                + 1e-3 * coloured_noise(rng, n, 0),
                "tone": np.sin(2 * np.pi * rng.uniform(200, 2000) * t),
            }
            for name, wave in steady.items():
                worst[name] = max(worst.get(name, -np.inf), measure(wave, rate))
    for name, value in worst.items():
        print(f"{name}, 8-48 kHz, worst of 30: {value:.1f} dB")


if __name__ == "__main__":
    main()

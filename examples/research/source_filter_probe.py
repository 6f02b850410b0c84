#!/usr/bin/env python
"""Would a source-filter vocoder beat Griffin-Lim? Resynthesise recordings through the pipeline's features with the
WORLD vocoder (pyworld): a pulse train at the pitch plus shaped noise, filtered by a spectral envelope. Its phase comes
from the excitation, so the harmonics stay coherent across frames, which Griffin-Lim's iterations do not give.

    pip install pyworld "setuptools<81"   # pyworld imports pkg_resources
    python examples/research/source_filter_probe.py --cases data/eval/natval48/cases.jsonl --num-cases 24 \\
        --out outputs/sf/natval24.json

Rows (each clip whole; Whisper words, DNSMOS, SIM to the prompt):
- `gl16`: the pipeline's vocoder (Griffin-Lim, 16 iterations) on the features;
- `world analysis`: WORLD's own analysis and synthesis of the recording (its pitch, CheapTrick envelope and D4C
  aperiodicity): the ceiling of the vocoder itself, not available at synthesis time;
- `world, features' envelope`: the recording's pitch and aperiodicity (an oracle a pitch predictor would have to
  match), the envelope from the features (the mel filter bank's pseudo-inverse, squared);
- `... smoothed`: the same envelope with the harmonic ripple of the low band removed (cepstral liftering).
Each row's level is matched to Griffin-Lim's (RMS), so DNSMOS compares timbre.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_lib.asr import WhisperASR  # noqa: E402
from eval_lib.cases import load_cases  # noqa: E402
from eval_lib.metrics import word_stats  # noqa: E402
from eval_lib.quality import DNSMOS  # noqa: E402
from eval_lib.speaker import ResemblyzerEncoder  # noqa: E402
from vocoder_phase_probe import print_scores  # noqa: E402

from modeling_ditar import DiTARPipeline  # noqa: E402
from modeling_ditar.audio_utils import load_audio, soft_limit  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pyworld  # noqa: E402


WORLD_FFT = 1024  # WORLD's FFT takes powers of two; the features' STFT has 1280 points


def envelope_from_features(vocoder, features: torch.Tensor) -> np.ndarray:
    """The features' linear power envelope on WORLD's bins, `[T, WORLD_FFT // 2 + 1]` (float64, as WORLD wants it):
    the mel filter bank's pseudo-inverse, interpolated in the log domain."""
    with torch.no_grad():
        magnitude = vocoder.mel_to_magnitude(features)[0].T.double().numpy()  # [T, F]
    ours = np.fft.rfftfreq(vocoder.n_fft, 1.0 / vocoder.sampling_rate)
    theirs = np.fft.rfftfreq(WORLD_FFT, 1.0 / vocoder.sampling_rate)
    log_power = 2.0 * np.log(np.maximum(magnitude, 1e-8))
    return np.exp(np.stack([np.interp(theirs, ours, frame) for frame in log_power]))


def lifter(power: np.ndarray, quefrency_bins: int) -> np.ndarray:
    """Keep the first `quefrency_bins` real-cepstrum coefficients of each frame's log power: a smooth envelope."""
    log_power = np.log(power)
    cepstrum = np.fft.irfft(log_power, axis=-1)
    window = np.zeros(cepstrum.shape[-1])
    window[:quefrency_bins] = 1.0
    window[-quefrency_bins + 1 :] = 1.0
    return np.exp(np.fft.rfft(cepstrum * window, axis=-1).real)


def world(f0: np.ndarray, envelope: np.ndarray, aperiodicity: np.ndarray, rate: int, frame_ms: float, length: int):
    frames = min(len(f0), len(envelope), len(aperiodicity))
    audio = pyworld.synthesize(
        np.ascontiguousarray(f0[:frames]),
        np.ascontiguousarray(envelope[:frames]),
        np.ascontiguousarray(aperiodicity[:frames]),
        rate,
        frame_ms,
    )
    return np.pad(audio, (0, max(0, length - len(audio))))[:length]


def match_level(audio: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return audio * (np.sqrt(np.mean(reference**2)) / max(np.sqrt(np.mean(audio**2)), 1e-9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", required=True)
    parser.add_argument("--num-cases", type=int, default=None)
    parser.add_argument("--lifter", type=int, default=40, help="cepstral coefficients kept for the smoothed envelope")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = DiTARPipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    extractor, vocoder = pipe.processor.feature_extractor, pipe.vocoder
    rate, hop = extractor.sampling_rate, extractor.hop_length
    frame_ms = 1000.0 * hop / rate

    cases = [case for case in load_cases(args.cases) if case.has_ground_truth][: args.num_cases]
    asr, dnsmos, speaker = WhisperASR(redecode_loops=True), DNSMOS(), ResemblyzerEncoder()
    scores: dict[str, list[dict]] = {}
    for case in cases:
        audio, _ = load_audio(case.target_audio, sampling_rate=rate)
        features = extractor.compute_log_mel(audio).reshape(1, -1, extractor.feature_size)
        with torch.no_grad():
            reference = soft_limit(vocoder(features)[0]).numpy().astype(np.float64)
        length = len(reference)
        outputs = {"gl16": reference}
        envelope = envelope_from_features(vocoder, features)
        x = audio.numpy().astype(np.float64)
        f0, times = pyworld.harvest(x, rate, frame_period=frame_ms)
        aperiodicity = pyworld.d4c(x, f0, times, rate, fft_size=WORLD_FFT)
        own_envelope = pyworld.cheaptrick(x, f0, times, rate, fft_size=WORLD_FFT)
        outputs["world analysis"] = world(f0, own_envelope, aperiodicity, rate, frame_ms, length)
        outputs["world, features' envelope"] = world(f0, envelope, aperiodicity, rate, frame_ms, length)
        outputs["world, features' envelope smoothed"] = world(
            f0, lifter(envelope, args.lifter), aperiodicity, rate, frame_ms, length
        )
        prompt_audio, _ = load_audio(case.prompt_audio, sampling_rate=rate)
        prompt_embedding = speaker.embed(np.asarray(prompt_audio), rate)
        for name, waveform in outputs.items():
            if name != "gl16":
                waveform = soft_limit(torch.from_numpy(match_level(waveform, reference)).float()).numpy()
            waveform = np.asarray(waveform, dtype=np.float32)
            words = word_stats(case.target_text, asr.transcribe(waveform, rate))
            row = {"id": case.id, "hits": words.hits, "words": words.ref_words, **(dnsmos.score(waveform, rate) or {})}
            embedding = speaker.embed(waveform, rate)
            if embedding is not None:
                row["sim"] = float(np.dot(embedding, prompt_embedding))
            scores.setdefault(name, []).append(row)

    print(f"{len(cases)} cases (resynthesised), whole clips")
    print_scores(scores, "row", with_sim=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "scores": scores}, indent=1))


if __name__ == "__main__":
    main()

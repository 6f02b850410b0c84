#!/usr/bin/env python
"""How much of Griffin-Lim's loss is its phase? Resynthesise ground-truth speech through the pipeline's features with
several weight-free phase choices and score each with Whisper (words recognised) and DNSMOS.

    python examples/research/vocoder_phase_probe.py --cases data/eval/val48/cases.jsonl --num-cases 24 \\
        --variant 'gl16={"n_iter": 16}' \\
        --variant 'pg2000+8={"initial_phase": "phase_gradient", "n_iter": 8}' --oracle --chunked

A variant is NAME=JSON, the keyword arguments of `GriffinLimVocoder.from_config(pipe.vocoder.config, **JSON)`.
`--vocoder NAME=DIR` adds a trained vocoder folder (e.g. `VocosVocoder`, the `vocoder/` of a train_vocoder.py run),
which must take the pipeline's features. `--gl-magnitude NAME=DIR` runs the pipeline's Griffin-Lim on the STFT
magnitude such a vocoder predicts, instead of the mel filter bank's pseudo-inverse (its phase is not used).
`--oracle` adds rows that use the real recording (not available at synthesis time): its phase with the pseudo-inverse
magnitude of the features, its phase and magnitude, and Griffin-Lim (the pipeline's settings) on its magnitude.
`--chunked` decodes as the pipeline does (`StreamingVocoder`: windows with left context, look-ahead and cross-fades);
otherwise each clip is inverted whole. Only cases with a target recording are used. Cases are taken in file order
(choose on validation cases).

`--generated` vocodes the pipeline's own speech instead: each case's target text, cloned from its prompt (seed 0, the
pipeline's generation settings), generated once and vocoded with every variant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_lib.asr import WhisperASR  # noqa: E402
from eval_lib.cases import load_cases  # noqa: E402
from eval_lib.metrics import word_stats  # noqa: E402
from eval_lib.quality import DNSMOS  # noqa: E402
from eval_lib.speaker import ResemblyzerEncoder  # noqa: E402
from paired_eval import paired  # noqa: E402

from modeling_ditar import DiTARPipeline, GriffinLimVocoder  # noqa: E402
from modeling_ditar.audio_utils import load_audio, soft_limit  # noqa: E402
from modeling_ditar.streaming import StreamingVocoder  # noqa: E402
from modeling_ditar.vocoder_vocos import VocosVocoder  # noqa: E402


def parse_variant(text: str) -> tuple[str, dict]:
    name, _, settings = text.partition("=")
    return name, json.loads(settings) if settings else {}


def oracle_rows(vocoder: GriffinLimVocoder, audio: torch.Tensor, features: torch.Tensor) -> dict[str, np.ndarray]:
    """The recording's own STFT phase, with the features' pseudo-inverse magnitude and with its own magnitude."""
    frames = features.shape[1]
    length = vocoder.num_samples(frames)
    audio = torch.nn.functional.pad(audio[:length], (0, max(0, length - audio.shape[0])))[None]
    spectrum = vocoder._stft(audio, vocoder.window)[..., :frames]
    angles = torch.sgn(spectrum)
    return {
        "oracle phase, pseudo-inverse magnitude": vocoder._istft(vocoder.mel_to_magnitude(features) * angles, length),
        "oracle phase and magnitude": vocoder._istft(spectrum, length),
        "Griffin-Lim on the oracle magnitude": vocoder._invert(spectrum.abs(), None, None, None),
    }


def print_scores(scores: dict[str, list[dict]], first_column: str, with_sim: bool) -> None:
    """The rows' totals as a Markdown table, then every row paired against the first, case by case."""
    keys = ("p808", "sig", "bak", "ovrl") + (("sim",) if with_sim else ())
    print(f"| {first_column} | words recognised | DNSMOS P.808 | SIG | BAK | OVRL |" + (" SIM |" if with_sim else ""))
    print("|---|---|---|---|---|---|" + ("---|" if with_sim else ""))
    for name, rows in scores.items():
        hits, words = sum(r["hits"] for r in rows), sum(r["words"] for r in rows)
        means = [np.mean([r[k] for r in rows if k in r]) for k in keys]
        print(f"| {name} | {hits}/{words} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    names = list(scores)
    if len(names) < 2:
        return
    print(f"\npaired against {names[0]} (words: summed differences; the rest: mean differences; ± standard error)")
    first = {r["id"]: r for r in scores[names[0]]}
    for name in names[1:]:
        other, parts = {r["id"]: r for r in scores[name]}, []
        for key in ("hits",) + keys:
            ids = [i for i in first if key in first[i] and key in other.get(i, {})]
            if len(ids) > 1:
                total, total_se, mean, mean_se = paired(first, other, ids, lambda row, key=key: row[key])
                value, error = (total, total_se) if key == "hits" else (mean, mean_se)
                parts.append(f"{'words' if key == 'hits' else key} {value:+.3f} ± {error:.3f}")
        print(f"  {name}: " + ", ".join(parts))


class MixedMagnitude(torch.nn.Module):
    """Griffin-Lim on a mix of a trained vocoder's magnitude and the features' pseudo-inverse magnitude, two mixes the
    library does not offer: "arithmetic" (weight * network + (1 - weight) * pseudo-inverse) and "above" (the network at
    and above `frequency` Hz, the pseudo-inverse below). The geometric mix is the library's
    `VocosVocoder(network_magnitude_weight=...)`. Whole clips only (no streaming)."""

    def __init__(self, network: VocosVocoder, griffin_lim: GriffinLimVocoder, mix: str, weight=0.5, frequency=1000.0):
        super().__init__()
        if mix not in ("arithmetic", "above"):
            raise ValueError(f"unknown mix {mix!r}")
        self.network, self.griffin_lim = network, griffin_lim
        self.mix, self.weight, self.frequency = mix, float(weight), float(frequency)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = self.network._check_features(features, self.network.num_mel_bins)
        network = self.network.spectrum(features).abs()  # [B, F, T]
        pseudo = self.griffin_lim.mel_to_magnitude(features)  # [B, F, T]
        if self.mix == "arithmetic":
            magnitude = self.weight * network + (1.0 - self.weight) * pseudo
        else:
            bins = torch.fft.rfftfreq(self.griffin_lim.n_fft, 1.0 / self.griffin_lim.sampling_rate)
            above = (bins >= self.frequency).to(network.dtype)[None, :, None]
            magnitude = above * network + (1.0 - above) * pseudo
        return self.griffin_lim._invert(magnitude, None, None, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", required=True)
    parser.add_argument("--num-cases", type=int, default=None)
    parser.add_argument("--pipeline", default=None, help="pipeline folder (default: the embedded default)")
    parser.add_argument("--variant", action="append", default=[], help="NAME=JSON vocoder settings (repeatable)")
    parser.add_argument(
        "--vocoder", action="append", default=[], help="NAME=DIR of a trained VocosVocoder (repeatable)"
    )
    parser.add_argument(
        "--gl-magnitude", action="append", default=[], help="NAME=DIR: Griffin-Lim on a trained vocoder's magnitude"
    )
    parser.add_argument(
        "--mixed-magnitude",
        action="append",
        default=[],
        help="NAME=DIR@JSON: Griffin-Lim on a mix of the vocoder's and the pseudo-inverse magnitude; JSON settings: "
        'mix "geometric" (the library\'s network_magnitude_weight), "arithmetic" or "above" (MixedMagnitude), weight, '
        'frequency; e.g. v2half=DIR@{"mix": "geometric", "weight": 0.5} (whole clips only)',
    )
    parser.add_argument("--oracle", action="store_true", help="add the rows with the recording's own phase")
    parser.add_argument("--chunked", action="store_true", help="decode as the pipeline does (StreamingVocoder)")
    parser.add_argument("--generated", action="store_true", help="vocode generated speech, not the recording's")
    parser.add_argument("--sim", action="store_true", help="also score speaker similarity to the prompt (Resemblyzer)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the per-case scores here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = DiTARPipeline.from_pretrained(args.pipeline) if args.pipeline else DiTARPipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    extractor = pipe.processor.feature_extractor
    variants = {
        name: GriffinLimVocoder.from_config(pipe.vocoder.config, **settings)
        for name, settings in map(parse_variant, args.variant)
    }
    for name, _, folder in (text.partition("=") for text in args.vocoder):
        variants[name] = VocosVocoder.from_pretrained(folder).eval()
        variants[name].check_feature_extractor(extractor)
    for name, _, folder in (text.partition("=") for text in args.gl_magnitude):
        # the vocoder's magnitude in front of Griffin-Lim with the pipeline's iteration count
        variants[name] = VocosVocoder.from_pretrained(folder, griffin_lim_iterations=pipe.vocoder.n_iter).eval()
        variants[name].check_feature_extractor(extractor)
    for name, _, spec in (text.partition("=") for text in args.mixed_magnitude):
        folder, _, settings = spec.partition("@")
        settings = json.loads(settings) if settings else {}
        if settings.get("mix") == "geometric":  # the library's mix (as a pipeline would decode it, but whole clips)
            network = VocosVocoder.from_pretrained(
                folder, griffin_lim_iterations=pipe.vocoder.n_iter, network_magnitude_weight=settings.get("weight", 0.5)
            ).eval()
            network.check_feature_extractor(extractor)
            variants[name] = network
            continue
        network = VocosVocoder.from_pretrained(folder).eval()
        network.check_feature_extractor(extractor)
        variants[name] = MixedMagnitude(network, pipe.vocoder, **settings).eval()
    if args.mixed_magnitude and args.chunked:
        parser.error("--mixed-magnitude decodes whole clips; leave out --chunked")
    if not variants and not args.oracle:
        parser.error("give at least one --variant, --vocoder, --gl-magnitude or --oracle")
    cases = [case for case in load_cases(args.cases) if case.has_ground_truth][: args.num_cases]
    if args.generated and args.oracle:
        parser.error("--oracle needs the recording's own speech; leave out --generated")
    asr, dnsmos = WhisperASR(redecode_loops=True), DNSMOS()
    speaker = ResemblyzerEncoder() if args.sim else None

    scores: dict[str, list[dict]] = {}
    for case in cases:
        audio, _ = load_audio(case.target_audio, sampling_rate=extractor.sampling_rate)
        if args.generated:
            out = pipe(
                case.target_text,
                prompt_audio=case.prompt_audio,
                prompt_text=case.prompt_text,
                generator=torch.manual_seed(0),
                output_type="features",
            )
            features = out.audios[:1, : int(out.audio_lengths[0])].float()
        else:
            features = extractor.compute_log_mel(audio).reshape(1, -1, extractor.feature_size)
        outputs = {}
        for name, vocoder in variants.items():
            if args.chunked:
                outputs[name] = StreamingVocoder(vocoder, limiter=soft_limit).decode(features[0])
            else:
                with torch.no_grad():
                    outputs[name] = soft_limit(vocoder(features)[0])
        if args.oracle:
            outputs.update({k: soft_limit(v[0]) for k, v in oracle_rows(pipe.vocoder, audio, features).items()})
        prompt_embedding = None
        if speaker is not None:
            prompt_audio, _ = load_audio(case.prompt_audio, sampling_rate=extractor.sampling_rate)
            prompt_embedding = speaker.embed(np.asarray(prompt_audio), extractor.sampling_rate)
        for name, waveform in outputs.items():
            waveform = waveform.numpy()
            words = word_stats(case.target_text, asr.transcribe(waveform, extractor.sampling_rate))
            quality = dnsmos.score(waveform, extractor.sampling_rate) or {}
            row = {"id": case.id, "hits": words.hits, "words": words.ref_words, **quality}
            if prompt_embedding is not None:
                embedding = speaker.embed(waveform, extractor.sampling_rate)
                if embedding is not None:
                    row["sim"] = float(np.dot(embedding, prompt_embedding))
            scores.setdefault(name, []).append(row)

    print(f"{len(cases)} cases ({'chunked as the pipeline decodes' if args.chunked else 'whole clips'})")
    print_scores(scores, "phase", with_sim=speaker is not None)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "scores": scores}, indent=1))


if __name__ == "__main__":
    main()

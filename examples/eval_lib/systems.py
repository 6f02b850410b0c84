"""The rows of the results table. A system turns a case into audio (`SystemOutput`); `applies(case)` says whether the
case has what the system needs (the ground-truth rows need `target_audio`).

* `gt`      "ground truth": the target audio itself.
* `resynth` "ground truth resynthesised": target audio -> the pipeline's feature extractor (log-mel) -> the
            pipeline's vocoder, chunked exactly as the pipeline vocodes (`StreamingVocoder`). The ceiling that the
            vocoder and the feature representation leave to the model.
* `tf`      "DiTAR teacher-forced": every target patch sampled from the real prefix and real history
            (`teacher_forcing.py`); a diagnostic that tells per-patch quality apart from drift in the loop.
* `model`   "DiTAR": `pipe(target_text, prompt_audio=..., prompt_text=..., generator=...)`.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cases import Case

ROW_NAMES = {
    "gt": "ground truth",
    "resynth": "ground truth resynthesised",
    "tf": "DiTAR teacher-forced",
    "model": "DiTAR",
}


@dataclass
class SystemOutput:
    audio: np.ndarray  # mono float32
    sampling_rate: int
    compute_seconds: float | None = None  # time spent producing the audio (None: not produced, e.g. ground truth)
    stopped: bool | None = None  # the stop head ended generation (None: not applicable)


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Mono float32 samples and rate of an audio file."""
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data.mean(axis=1).astype(np.float32), int(rate)


class GroundTruthSystem:
    key = "gt"

    def __init__(self, name: str = ROW_NAMES["gt"]):
        self.name = name

    def applies(self, case: Case) -> bool:
        return case.target_audio is not None

    def __call__(self, case: Case) -> SystemOutput:
        audio, rate = read_audio(case.target_audio)
        return SystemOutput(audio, rate)

    def describe(self) -> dict:
        return {"audio": "target_audio of each case"}


class ResynthesisSystem:
    key = "resynth"

    def __init__(self, feature_extractor, vocoder, name: str = ROW_NAMES["resynth"], source: str = ""):
        self.feature_extractor = feature_extractor
        self.vocoder = vocoder
        self.name = name
        self.source = source

    def applies(self, case: Case) -> bool:
        return case.target_audio is not None

    def __call__(self, case: Case) -> SystemOutput:
        import torch

        from modeling_ditar.streaming import StreamingVocoder

        audio, rate = read_audio(case.target_audio)
        start = time.perf_counter()
        with torch.no_grad():
            waveform = self.feature_extractor.prepare_audio(audio, rate)
            features = self.feature_extractor.compute_log_mel(waveform).float()  # [T, D], unnormalised
            out = StreamingVocoder(self.vocoder).decode(features)
        seconds = time.perf_counter() - start
        rate_out = int(getattr(self.vocoder, "sampling_rate", self.feature_extractor.sampling_rate))
        return SystemOutput(out.numpy().astype(np.float32), rate_out, compute_seconds=seconds)

    def describe(self) -> dict:
        fe = self.feature_extractor
        return {
            "source": self.source,
            "vocoder": type(self.vocoder).__name__,
            "vocoder_config": {
                k: v for k, v in dict(getattr(self.vocoder, "config", {}) or {}).items() if not k.startswith("_")
            },
            "features": {
                k: getattr(fe, k)
                for k in (
                    "sampling_rate",
                    "feature_size",
                    "n_fft",
                    "hop_length",
                    "win_length",
                    "f_min",
                    "f_max",
                    "log_floor",
                )
            },
        }


def case_seed(seed: int, case_id: str) -> int:
    """Per-case seed from the run seed and the case id: a case's sample does not depend on which cases run before."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{case_id}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


class PipelineSystem:
    key = "model"

    def __init__(
        self,
        pipe,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        max_new_patches: int | None = None,
        seed: int = 0,
        name: str = ROW_NAMES["model"],
        source: str = "",
        num_candidates: int | None = None,
        prompt_spectrum_match: float | None = None,
    ):
        self.pipe = pipe
        self.num_candidates = num_candidates
        self.prompt_spectrum_match = prompt_spectrum_match
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.temperature = temperature
        self.max_new_patches = max_new_patches
        self.seed = seed
        self.name = name
        self.source = source

    def applies(self, case: Case) -> bool:
        return True

    def __call__(self, case: Case) -> SystemOutput:
        import torch

        generator = torch.Generator().manual_seed(case_seed(self.seed, case.id))
        start = time.perf_counter()
        out = self.pipe(
            case.target_text,
            prompt_audio=case.prompt_audio,
            prompt_text=case.prompt_text,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            temperature=self.temperature,
            max_new_patches=self.max_new_patches,
            generator=generator,
            num_candidates=self.num_candidates,
            prompt_spectrum_match=self.prompt_spectrum_match,
        )
        seconds = time.perf_counter() - start
        audio = np.asarray(out.audios[0][: out.audio_lengths[0]], dtype=np.float32)
        return SystemOutput(audio, int(self.pipe.sample_rate), compute_seconds=seconds, stopped=bool(out.stopped[0]))

    def describe(self) -> dict:
        config = self.pipe.model.generation_config  # the sampling defaults live in the generation config
        return {
            "source": self.source,
            "num_inference_steps": self.num_inference_steps or config.num_inference_steps,
            "guidance_scale": self.guidance_scale if self.guidance_scale is not None else config.guidance_scale,
            "temperature": self.temperature if self.temperature is not None else config.temperature,
            "max_new_patches": self.max_new_patches,
            "num_candidates": self.num_candidates or getattr(config, "num_candidates", 1),
            "prompt_spectrum_match": self.prompt_spectrum_match
            if self.prompt_spectrum_match is not None
            else getattr(config, "prompt_spectrum_match", 0.0),
            "prompt_spread_match": getattr(config, "prompt_spread_match", 0.0),
            "seed": self.seed,
            "per_case_seed": "sha256(f'{seed}:{case_id}')",
            "parameters": int(sum(p.numel() for p in self.pipe.model.parameters())),
            "matmul_dtype": str(getattr(self.pipe.model, "matmul_dtype", "")).replace("torch.", ""),
            "sample_rate": int(self.pipe.sample_rate),
            "vocoder": type(self.pipe.vocoder).__name__,
        }


class TeacherForcedSystem(PipelineSystem):
    """The pipeline's model sampling each target patch from the ground-truth prefix (see `teacher_forcing.py`), with
    the same sampler settings and per-case seed as the `model` row, vocoded like it."""

    key = "tf"

    def __init__(
        self,
        pipe,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        seed: int = 0,
        name: str = ROW_NAMES["tf"],
        source: str = "",
    ):
        super().__init__(pipe, num_inference_steps, guidance_scale, temperature, None, seed, name, source)

    def applies(self, case: Case) -> bool:
        return case.target_audio is not None

    def __call__(self, case: Case) -> SystemOutput:
        import torch

        from modeling_ditar.streaming import StreamingVocoder

        from .teacher_forcing import teacher_forced_features

        audio, rate = read_audio(case.target_audio)
        generator = torch.Generator().manual_seed(case_seed(self.seed, case.id))
        start = time.perf_counter()
        features = teacher_forced_features(
            self.pipe,
            audio,
            rate,
            case.target_text,
            case.prompt_audio,
            case.prompt_text,
            self.num_inference_steps,
            self.guidance_scale,
            self.temperature,
            generator,
        )
        with torch.no_grad():
            waveform = StreamingVocoder(self.pipe.vocoder).decode(features)
        seconds = time.perf_counter() - start
        return SystemOutput(waveform.numpy().astype(np.float32), int(self.pipe.sample_rate), compute_seconds=seconds)

    def describe(self) -> dict:
        info = super().describe()
        info.pop("max_new_patches")
        info.pop("num_candidates")
        info["prefix"] = "ground truth (prompt + real target patches before each patch), real history patches"
        return info


def _training_folder_hint(folder: Path) -> str:
    """What to give instead of a training output folder (a common mistake: the run folder or one of its
    checkpoints), or "" for any other folder."""
    convert = "python conversion/checkpoint_to_pipeline.py"
    checkpoint = folder.parent.name == "checkpoints" and (folder / "model.safetensors").is_file()
    run = folder.parent.parent if checkpoint else folder
    if not (run / "train_config.json").is_file():
        return ""
    if (run / "vocoder").is_dir() and not (run / "final").is_dir():  # examples/train_vocoder.py writes vocoder/
        return (
            f": {run} is a vocoder training run (train_vocoder.py), not a TTS model; give a pipeline, and swap its "
            f"vocoder for {run / 'vocoder'} as docs/training.md shows to evaluate them together"
        )
    if checkpoint:
        return (
            f": it is a training checkpoint; make a pipeline of it with `{convert} {folder} OUT`, or give {run}/final"
        )
    if (run / "final").is_dir():
        return f": it is a training run folder; give its final model, {run / 'final'}"
    return f": it is a training run folder without final/ yet; `{convert} {run} OUT` makes a pipeline of its last step"


def load_pipeline(
    path: str | os.PathLike | None = None,
    dtype: str = "float32",
    locdit_dtype: str | None = None,
    matmul_dtype: str | None = None,
):
    """A DiTARPipeline from a saved pipeline folder (`model_index.json`), from a training output folder with `model/`
    and `processor/` (e.g. `runs/x/final`, vocoded with Griffin-Lim matching the processor), or, with no path, the
    checkpoint embedded in the package. The model computes in `dtype` (a torch dtype name), LocDiT alone in
    `locdit_dtype` where given, the transformers' linears multiply in `matmul_dtype` where given
    (`set_matmul_dtype`); the vocoder in float32."""
    import torch

    from modeling_ditar import DiTARForConditionalGeneration, DiTARPipeline, DiTARProcessor, build_pipeline

    if path is None:
        pipe = DiTARPipeline.from_pretrained()
    else:
        folder = Path(path)
        if (folder / "model_index.json").is_file():  # float32 compute also for folders stored in half precision
            pipe = DiTARPipeline.from_pretrained(str(folder), dtype=torch.float32)
        elif (folder / "model").is_dir() and (folder / "processor").is_dir():
            model = DiTARForConditionalGeneration.from_pretrained(str(folder / "model"), dtype=torch.float32).eval()
            pipe = build_pipeline(model, DiTARProcessor.from_pretrained(str(folder / "processor")))
        else:
            raise FileNotFoundError(
                f"{folder} is neither a saved DiTARPipeline (model_index.json) nor a folder with model/ and processor/"
                + _training_folder_hint(folder)
            )
    if dtype != "float32":
        pipe.model.to(getattr(torch, dtype))
    if locdit_dtype is not None:
        pipe.model.set_locdit_dtype(getattr(torch, locdit_dtype))
    if matmul_dtype is not None:
        pipe.model.set_matmul_dtype(matmul_dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe

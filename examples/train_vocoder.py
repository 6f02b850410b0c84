#!/usr/bin/env python
"""Train DiTAR's neural vocoder (`VocosVocoder`: ConvNeXt backbone + iSTFT head) as a GAN, with Accelerate.

    python examples/train_vocoder.py --config examples/configs/vocoder-cpu.yaml              # CPU or one GPU
    python examples/train_vocoder.py --config examples/configs/vocoder-cpu.yaml --resume     # continue the same run
    python examples/train_vocoder.py --config examples/configs/vocoder-gpu.yaml --time-budget-min 4
    python examples/train_vocoder.py --config examples/configs/vocoder-cpu.yaml --data my_recordings  # wav/flac folder
    accelerate launch examples/train_vocoder.py --config ...                                 # several GPUs

Data: a corpus folder of `examples/build_corpus.py` (its `train` split; `validation` gives the resynthesis samples; the
`test` split of evaluation-only voices is never read, and a split with rows of evaluation-only voices, such as stock
espeak-ng speakers `stock_*`, is refused) or a folder of audio files you may train on (none under `data/eval/`).
Every step draws `batch_size` random segments of `segment_seconds` (whole hops), computes their log-mel with the
feature extractor of `feature_extractor` on the training device, and trains the generator to invert them:

    generator loss  = mel_weight * L1(log-mel(G(x)), x)  [+ stft_weight * multi-resolution STFT loss]
                      [+ magnitude_weight * log-magnitude MSE + phase_weight * anti-wrapped phase errors]
                      + adv(MPD) + mrd_weight * adv(MRD) + feature_matching_weight * (fm(MPD) + mrd_weight * fm(MRD))
    discriminators  = adversarial loss (hinge or least squares) of MPD + mrd_weight * MRD on real vs G(x)

The adversarial terms start at `disc_start_step` (before it the generator learns from the other losses alone);
`adversarial: false` never starts them. The magnitude and phase terms (APNet) compare the generator's predicted STFT
frames with the real audio's STFT at the same framing: they teach the phase directly, which a GAN learns slowly, so
they are the recipe for training without discriminators (on a CPU: a generator step costs a small share of a GAN step).

Output (a new or empty `output_dir`): `checkpoints/step-N` (Accelerate state through a temporary folder and a rename,
so a killed run never leaves a half-written one; `--resume` continues from the newest with the same recipe: it refuses
other data, losses, segments, vocoder or discriminator settings than the run's train_config.json, and lets max_steps,
the time budget and the logging, checkpoint and evaluation intervals change), `log.csv` (training losses), `eval.csv`
(validation log-mel L1 of the EMA generator), `samples/step-N/*.wav` (validation resynthesis; the originals in
`samples/reference`), `feature_extractor/` and, at every evaluation and at the end, `vocoder/`: the EMA generator,
loadable with `VocosVocoder.from_pretrained(output_dir / "vocoder")`. A loss or validation L1 that turns NaN or Inf
stops the run before anything non-finite is saved.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel

from modeling_ditar.hub_utils import make_saved_weights_readable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train import (  # noqa: E402
    TimeBudget,
    TrainState,
    check_mixed_precision,
    configure_process,
    continue_schedule,
    drop_rows_after,
    is_number,
    lr_lambda,
    nearest_name,
    newest_checkpoint,
    read_settings,
    register_and_resume,
    save_checkpoint,
    stop_if_diverged,
)
from training_eval import spread_rows  # noqa: E402
from vocoder_training.data import (  # noqa: E402
    AlignedSegmentSampler,
    SegmentSampler,
    hop_aligned,
    is_corpus,
    load_corpus_clips,
    load_folder_clips,
    load_teacher_forced_clips,
)
from vocoder_training.discriminators import VocoderDiscriminators  # noqa: E402
from vocoder_training.losses import (  # noqa: E402
    ADVERSARIAL_KINDS,
    MelLoss,
    MultiResolutionSTFTLoss,
    SpectrumLoss,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)

from modeling_ditar import DiTARFeatureExtractor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# settings of the feature extractor that the vocoder's config must share
FEATURE_KEYS = ("sampling_rate", "n_fft", "hop_length", "win_length", "num_mel_bins", "f_min", "f_max", "log_floor")
LOSS_KEYS = (
    "generator_loss",
    "mel_loss",
    "stft_loss",
    "magnitude_loss",
    "phase_loss",
    "adversarial_loss",
    "feature_matching_loss",
    "disc_loss",
)


@dataclass
class VocoderTrainConfig:
    dataset: str = "data/corpus"  # a build_corpus.py corpus or a folder of audio files
    train_split: str = "train"
    validation_split: str = "validation"
    output_dir: str = "runs/vocoder"
    # a processor / feature-extractor folder or a JSON file of DiTARFeatureExtractor arguments: the features the
    # vocoder inverts (the default: the shipped model's, 16 kHz, 80 mel bins, hop 320)
    feature_extractor: str = "modeling_ditar/default/processor"
    vocoder: dict = field(default_factory=dict)  # VocosVocoder architecture arguments (dim, num_layers, ...)
    init_from: str | None = None  # a vocoder folder (or a pipeline folder with vocoder/) to continue from
    # a corpus of the model's own (teacher-forced) features next to their recordings, written by
    # vocoder_training/teacher_forced_corpus.py: `teacher_forced_share` of each batch's segments take their input
    # features from it (the losses still compare with the recording), so the vocoder learns the features it is given
    # at synthesis time, not only a recording's
    teacher_forced_corpus: str | None = None
    teacher_forced_share: float = 0.5
    segment_seconds: float = 1.0
    batch_size: int = 8  # segments per step and process
    gain_db: list[float] | None = None  # [low, high]: a random gain per segment, e.g. [-9, 0]
    max_steps: int = 10000
    learning_rate: float = 2e-4
    disc_learning_rate: float | None = None  # None: learning_rate
    warmup_steps: int = 0
    decay_start: float = 0.0  # fraction of max_steps after which both lrs decay (cosine) to min_lr_ratio
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.8, 0.9)
    grad_clip: float | None = 100.0  # None: no clipping (the norm is still logged)
    disc_start_step: int = 0  # steps of mel-only generator training before the discriminators switch on
    adversarial: bool = True  # false: no discriminators at all (train with the magnitude and phase losses)
    adversarial_loss: str = "hinge"  # or "lsgan"
    mel_weight: float = 45.0
    feature_matching_weight: float = 1.0
    mrd_weight: float = 0.1  # weight of the multi-resolution discriminator's terms against the multi-period one's
    stft_weight: float = 0.0
    magnitude_weight: float = 0.0  # log-magnitude MSE of the predicted STFT frames against the audio's (APNet)
    magnitude_loss: str = "log_mse"  # or "convergence_log_l1" (spectral convergence + L1 log-magnitude)
    phase_weight: float = 0.0  # anti-wrapped instantaneous phase + group delay + instantaneous frequency errors
    phase_terms: list[str] = field(default_factory=lambda: ["instantaneous", "group_delay", "frequency"])
    stft_resolutions: list[list[int]] = field(default_factory=lambda: [[512, 128, 512], [1024, 256, 1024]])
    mpd_periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    mpd_channels: list[int] = field(default_factory=lambda: [32, 128, 512, 1024])
    mrd_resolutions: list[list[int]] = field(
        default_factory=lambda: [[512, 128, 512], [1024, 256, 1024], [2048, 512, 2048]]
    )
    mrd_channels: int = 32
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    eval_every: int = 500
    log_every: int = 10
    eval_clips: int = 4  # validation clips resynthesised at every evaluation
    eval_seconds: float = 4.0  # at most this much of each
    seed: int = 0
    num_threads: int | None = None
    mixed_precision: str | None = None  # None lets `accelerate launch --mixed_precision` decide
    allow_tf32: bool = True  # TF32 matmuls and convolutions on CUDA

    # read by train.configure_process; a vocoder has no attention layers
    cudnn_attention = False

    @classmethod
    def load(cls, path: str) -> VocoderTrainConfig:
        data = read_settings(path, cls, "vocoder training")
        check_mixed_precision(data, path)
        cfg = cls(**data)
        cfg.check()
        return cfg

    def check(self):
        """Raises ValueError naming the first setting that cannot work."""
        if self.adversarial_loss not in ADVERSARIAL_KINDS:
            raise ValueError(f"adversarial_loss must be one of {ADVERSARIAL_KINDS}, got {self.adversarial_loss!r}")
        for name in ("batch_size", "max_steps", "checkpoint_every", "eval_every", "log_every", "keep_checkpoints"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("disc_start_step", "warmup_steps"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if int(self.eval_clips) < 1:
            raise ValueError(f"eval_clips must be at least 1 (validation clips resynthesised), got {self.eval_clips}")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.disc_learning_rate is not None and not float(self.disc_learning_rate) > 0:
            raise ValueError(
                f"disc_learning_rate must be > 0, got {self.disc_learning_rate} (leave it out, or null, for the "
                "generator's learning_rate)"
            )
        if self.grad_clip is not None and not float(self.grad_clip) > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip} (null: no clipping)")
        if not 0.0 <= float(self.min_lr_ratio) <= 1.0:
            raise ValueError(
                f"min_lr_ratio must lie in [0, 1] (the share of the lr left after the decay), got {self.min_lr_ratio}"
            )
        if not 0.0 <= float(self.decay_start) < 1.0:
            raise ValueError(
                f"decay_start is the fraction of max_steps after which the lrs decay and must lie in [0, 1), got "
                f"{self.decay_start} (at 1 or more they never decay: set min_lr_ratio: 1 for a constant lr)"
            )
        if not float(self.weight_decay) >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not all(0.0 <= float(b) < 1.0 for b in self.adam_betas):
            raise ValueError(f"adam_betas must both lie in [0, 1), got {list(self.adam_betas)}")
        if not 0.0 <= float(self.ema_decay) < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.num_threads is not None and int(self.num_threads) < 1:
            raise ValueError(f"num_threads must be at least 1 (or null: torch's default), got {self.num_threads}")
        self._check_lists()
        for name in (
            "mel_weight",
            "feature_matching_weight",
            "mrd_weight",
            "stft_weight",
            "magnitude_weight",
            "phase_weight",
        ):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.segment_seconds > 0 or not self.eval_seconds > 0:
            raise ValueError("segment_seconds and eval_seconds must be > 0")
        SpectrumLoss(1, 1, phase_terms=self.phase_terms, magnitude_loss=self.magnitude_loss)  # raises if unknown
        if not isinstance(self.adversarial, bool):
            raise ValueError(f"adversarial must be true or false, got {self.adversarial!r}")
        if not self.adversarial and self.mel_weight + self.stft_weight + self.magnitude_weight + self.phase_weight == 0:
            raise ValueError(
                "adversarial: false leaves the generator no loss: set mel_weight, stft_weight, magnitude_weight or "
                "phase_weight above 0"
            )
        if not 0.0 <= float(self.teacher_forced_share) <= 1.0:
            raise ValueError(f"teacher_forced_share must lie in [0, 1], got {self.teacher_forced_share}")
        if self.teacher_forced_corpus is not None and teacher_forced_rows(self) == 0:
            raise ValueError(
                f"teacher_forced_share {self.teacher_forced_share} of batch_size {self.batch_size} is no segment: "
                "raise it, or leave teacher_forced_corpus out"
            )
        gains = self.gain_db
        if gains is not None and (
            len(gains) != 2 or not all(is_number(g) for g in gains) or float(gains[0]) > float(gains[1])
        ):
            raise ValueError(f"gain_db must be [low_db, high_db] (two numbers, low <= high), got {gains}")

    def _check_lists(self):
        """The discriminators' and the STFT loss's list settings: their shapes, before anything is built."""

        def positive_ints(values) -> bool:
            return isinstance(values, list) and all(is_number(v) and int(v) == v and v > 0 for v in values)

        for name in ("mpd_periods", "mpd_channels"):
            values = getattr(self, name)
            if not (positive_ints(values) and values):
                raise ValueError(f"{name} must be a non-empty list of positive whole numbers, got {values!r}")
        for name in ("stft_resolutions", "mrd_resolutions"):
            values = getattr(self, name)
            if not (
                isinstance(values, list)
                and values
                and all(positive_ints(r) and len(r) == 3 and r[2] <= r[0] for r in values)
            ):
                raise ValueError(
                    f"{name} must be a non-empty list of [n_fft, hop_length, win_length] (positive whole numbers, "
                    f"win_length <= n_fft), got {values!r}"
                )
        if not (is_number(self.mrd_channels) and int(self.mrd_channels) == self.mrd_channels and self.mrd_channels > 0):
            raise ValueError(f"mrd_channels must be a positive whole number, got {self.mrd_channels!r}")


def teacher_forced_rows(cfg: VocoderTrainConfig) -> int:
    """Segments per batch whose input features come from the teacher-forced corpus (0 without one)."""
    if cfg.teacher_forced_corpus is None:
        return 0
    return int(round(cfg.teacher_forced_share * cfg.batch_size))


def resolve_path(path: str) -> Path:
    """A path as given, else relative to the repository (so the default feature extractor is found from anywhere)."""
    given = Path(path)
    return given if given.exists() or given.is_absolute() else ROOT / given


def load_feature_extractor(path: str) -> DiTARFeatureExtractor:
    """The feature extractor of a processor or feature-extractor folder, or of a JSON file of its arguments."""
    source = resolve_path(path)
    if source.is_file():
        try:
            settings = json.loads(source.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"feature_extractor {path!r} is not valid JSON: {error}") from None
        if not isinstance(settings, dict):
            raise ValueError(
                f"feature_extractor {path!r} must hold a JSON object of DiTARFeatureExtractor arguments, got a "
                f"{type(settings).__name__}"
            )
        unknown = unknown_names(settings, feature_extractor_keys(), OTHER_LIBRARIES_NAMES)
        if unknown:
            raise ValueError(f"feature_extractor {path!r}: unknown feature extractor settings: {unknown}")
        try:
            return DiTARFeatureExtractor(**settings)
        except (TypeError, ValueError) as error:
            raise ValueError(f"feature_extractor {path!r}: {error}") from None
    if not source.is_dir():
        raise ValueError(f"feature_extractor {path!r} is neither a folder nor a JSON file")
    try:
        return DiTARFeatureExtractor.from_pretrained(source)
    except (OSError, ValueError, TypeError) as error:
        # transformers' message on a folder without a config suggests the Hub: name the file instead
        why = "no readable preprocessor_config.json" if isinstance(error, OSError) else str(error).splitlines()[0]
        raise ValueError(
            f"feature_extractor {path!r} is not a processor or feature-extractor folder ({why}): give one saved "
            "with save_pretrained, or a JSON file of DiTARFeatureExtractor arguments"
        ) from None


# what other audio libraries call the feature extractor's settings: a misspelling of these means the setting here
OTHER_LIBRARIES_NAMES = {
    "n_mels": "num_mel_bins",
    "sample_rate": "sampling_rate",
    "sr": "sampling_rate",
    "fmin": "f_min",
    "fmax": "f_max",
    "hop_size": "hop_length",
    "win_size": "win_length",
}


def unknown_names(names, known, aliases: dict | None = None) -> str:
    """'' when every name is known, else the unknown ones, each with the nearest known name (a name another library
    uses, in `aliases`, counts as its known one)."""
    named = []
    for name in sorted(set(names) - set(known), key=str):
        close = nearest_name(name, known, aliases=aliases)
        named.append(f"{name!r} (did you mean {close!r}?)" if close else repr(name))
    return ", ".join(named)


def feature_extractor_keys() -> set[str]:
    """The settings a JSON file of DiTARFeatureExtractor arguments may hold: its arguments, and what
    `save_pretrained` writes besides (so a saved preprocessor_config.json reads too)."""
    import inspect

    known = set(inspect.signature(DiTARFeatureExtractor.__init__).parameters) - {"self", "kwargs"}
    return known | set(DiTARFeatureExtractor().to_dict()) | {"processor_class"}


def check_resumed_features(saved: Path, feature_extractor: DiTARFeatureExtractor, what: str = "--resume") -> None:
    """A resumed run must make the features its checkpoints were trained on: a vocoder learnt on one mel layout
    would load its weights (the shapes may even match) and then be trained on another."""
    if not saved.is_dir():
        return
    from modeling_ditar.vocoders import feature_analysis_settings

    before = feature_analysis_settings(DiTARFeatureExtractor.from_pretrained(saved), with_log_floor=True)
    now = feature_analysis_settings(feature_extractor, with_log_floor=True)
    wrong = [f"{k}={now[k]!r} (the run: {before[k]!r})" for k in now if now[k] != before[k]]
    if wrong:
        raise SystemExit(
            f"{what}: the feature extractor differs from the one this run was trained with ({saved}): "
            f"{', '.join(wrong)}. Use the run's feature_extractor"
            + (", or start a new output_dir" if what == "--resume" else "")
        )


# settings a resumed run may change: how long it runs and how often it logs, saves and evaluates, and process
# settings; everything else is the recipe its checkpoints were trained with
RESUMABLE_CHANGES = (
    "output_dir",
    "feature_extractor",  # compared by its content (check_resumed_features), not by its path
    "max_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_every",
    "log_every",
    "eval_clips",
    "eval_seconds",
    "validation_split",
    "num_threads",
    "mixed_precision",
    "allow_tf32",
)
PATH_SETTINGS = ("dataset", "init_from", "teacher_forced_corpus")


def recipe_changes(saved: Path, cfg: VocoderTrainConfig) -> list[str]:
    """The settings (with both values) in which `cfg` differs from the run's saved train_config.json, other than
    RESUMABLE_CHANGES; none when the run saved none. Paths compare as the folders they name."""
    if not saved.is_file():
        return []
    try:
        before = json.loads(saved.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    now = json.loads(json.dumps(asdict(cfg)))  # tuples as lists, as they were saved

    def same(key):
        if key in PATH_SETTINGS and before[key] and now[key]:
            return Path(before[key]).resolve() == Path(now[key]).resolve()
        return before[key] == now[key]

    return [
        f"{key}={now[key]!r} (the run: {before[key]!r})"
        for key in now
        if key in before and key not in RESUMABLE_CHANGES and not same(key)
    ]


def check_output_dir(out: Path, resume: bool) -> Path | None:
    """Refuses an output folder a run cannot use, before anything is loaded; returns the checkpoint to resume from
    (None without --resume). Without --resume the folder must be new or empty: a folder of another kind (a copy of
    a pipeline, whose vocoder/ a run would replace) or an earlier run (whose log.csv and eval.csv a run would append
    to) is refused. Log files a wrapper writes there before the run starts (`*.log`, `*.txt`) and hidden files do not
    count."""
    if out.exists() and not out.is_dir():
        raise SystemExit(f"error: output_dir {out} is a file: give a folder (a new one, or a run's for --resume)")
    checkpoints = out / "checkpoints"
    latest = newest_checkpoint(checkpoints) if out.is_dir() else None
    if resume:
        if latest is None:
            raise SystemExit(
                f"error: --resume: no checkpoint in {checkpoints}: run without --resume to start a new run"
            )
        return latest
    if latest is not None:
        raise SystemExit(
            f"{checkpoints} already holds checkpoints: pass --resume to continue, or pick another output_dir"
        )
    entries = (
        sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p.suffix not in (".log", ".txt"))
        if out.is_dir()
        else []
    )
    if not entries:
        return None
    if (out / "train_config.json").is_file():
        raise SystemExit(
            f"error: output_dir {out} holds a train_vocoder.py run that saved no checkpoint (nothing to resume): "
            "pick another --output-dir, or delete that folder to start over"
        )
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
    raise SystemExit(
        f"error: output_dir {out} is not empty and is not a train_vocoder.py run (it holds {shown}): a run would "
        "write its vocoder/, logs and samples into it. Pick another --output-dir (a new or empty folder), or "
        "--resume to continue a run there"
    )


def check_segments(cfg: VocoderTrainConfig, feature_extractor: DiTARFeatureExtractor) -> None:
    """A training segment must be at least as long as every STFT window computed on it (the log-mel, the STFT loss,
    the multi-resolution discriminator, the vocoder's own frames): said here, not at step 1."""
    rate, hop = feature_extractor.sampling_rate, feature_extractor.hop_length
    windows = {"the feature extractor's n_fft": int(feature_extractor.n_fft)}
    if cfg.stft_weight > 0:
        windows["stft_resolutions"] = max(int(r[0]) for r in cfg.stft_resolutions)
    if cfg.adversarial:
        windows["mrd_resolutions"] = max(int(r[0]) for r in cfg.mrd_resolutions)
    what, window = max(windows.items(), key=lambda item: item[1])
    samples = hop_aligned(cfg.segment_seconds, rate, hop)
    if samples < window:
        need = math.ceil(window / hop) * hop / rate
        raise SystemExit(
            f"error: segment_seconds {cfg.segment_seconds:g} gives segments of {samples} samples (whole hops of {hop} "
            f"at {rate} Hz), shorter than the largest STFT window ({window} samples, {what}): set segment_seconds to "
            f"at least {need:g}"
        )


def build_generator(cfg: VocoderTrainConfig, feature_extractor: DiTARFeatureExtractor):
    """A new `VocosVocoder` for the feature extractor, or the one of `init_from` (checked against it)."""
    import inspect

    from modeling_ditar.vocoder_vocos import VocosVocoder

    unknown = unknown_names(cfg.vocoder, set(inspect.signature(VocosVocoder.__init__).parameters) - {"self"})
    if unknown:
        raise ValueError(f"unknown `vocoder:` settings (VocosVocoder arguments): {unknown}")
    if not cfg.init_from:
        try:
            return VocosVocoder.from_feature_extractor(feature_extractor, **cfg.vocoder)
        except (TypeError, ValueError) as error:  # an unknown setting, or a value the vocoder refuses
            raise ValueError(f"the `vocoder:` settings {cfg.vocoder} do not build a VocosVocoder: {error}") from None
    source = resolve_path(cfg.init_from)
    folder = source / "vocoder" if (source / "vocoder").is_dir() else source
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"init_from {cfg.init_from!r} is not a vocoder folder (no config.json in {folder}): give a run's vocoder/ "
            "folder (or the run, or a pipeline folder with a trained vocoder/)"
        )
    try:
        kind = json.loads((folder / "config.json").read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError, AttributeError):
        kind = None
    if kind != VocosVocoder.__name__:
        raise ValueError(
            f"init_from {cfg.init_from!r}: {folder} holds no trained VocosVocoder (its config.json is a {kind}): give "
            "a train_vocoder.py run's vocoder/ folder, or leave init_from out to train a new vocoder"
        )
    # settings given under `vocoder:` override the saved ones (e.g. `griffin_lim_iterations` to train the magnitude
    # through Griffin-Lim); architecture settings must match the saved weights
    try:
        generator = VocosVocoder.from_pretrained(folder, **cfg.vocoder)
    except (OSError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"init_from {folder} does not load as a VocosVocoder with the `vocoder:` settings {cfg.vocoder}: "
            f"{str(error).splitlines()[0]}"
        ) from None
    expected = VocosVocoder.from_feature_extractor(feature_extractor).config
    wrong = [
        f"{k}={generator.config[k]!r} (features: {expected[k]!r})"
        for k in FEATURE_KEYS
        if k in generator.config and k in expected and generator.config[k] != expected[k]
    ]
    if wrong:
        raise ValueError(
            f"init_from {folder} was trained on other features than {cfg.feature_extractor}: {', '.join(wrong)}; "
            "point feature_extractor at the features it was trained on"
        )
    return generator


def load_clips(cfg: VocoderTrainConfig, sampling_rate: int, audio_folder: bool = False):
    """(train clips, validation clips, a line describing them). A corpus gives its train and validation splits; a
    folder holds out `eval_clips` files spread over it when it has at least twice as many (else it validates on
    training files)."""
    dataset = Path(cfg.dataset)
    if not dataset.exists():
        raise ValueError(
            f"dataset {cfg.dataset!r} does not exist; build one with examples/build_corpus.py or give a "
            "folder of audio files"
        )
    if is_corpus(dataset) and not audio_folder:
        train = load_corpus_clips(dataset, cfg.train_split, sampling_rate)
        try:
            valid = load_corpus_clips(dataset, cfg.validation_split, sampling_rate, training=False)  # only listened to
        except ValueError as err:
            print(f"no validation clips ({err}); validating on training clips", flush=True)
            valid = train
        valid = [valid[i] for i in spread_rows(len(valid), cfg.eval_clips)]
        return train, valid, f"corpus {dataset} ({cfg.train_split})"
    if is_corpus(dataset):
        raise ValueError(f"--data takes a folder of audio files, and {dataset} is a corpus: pass it with --dataset")
    clips, names = load_folder_clips(dataset, sampling_rate)
    held = spread_rows(len(clips), cfg.eval_clips) if len(clips) >= 2 * cfg.eval_clips else []
    valid = [clips[i] for i in held] or [clips[i] for i in spread_rows(len(clips), cfg.eval_clips)]
    train = [c for i, c in enumerate(clips) if i not in set(held)]
    note = f"{len(held)} held out for validation" if held else "validating on training files (too few to hold out)"
    return train, valid, f"folder {dataset} ({len(names)} files, {note})"


def export_checkpoint(cfg: VocoderTrainConfig, checkpoint: Path) -> Path:
    """The EMA generator of a checkpoint `RUN/checkpoints/step-N` as the vocoder folder `RUN/vocoder` (what the run
    writes when it evaluates): for a run cut off before its last evaluation. Returns that folder. ValueError (or
    SystemExit for other features than the run's) names what does not fit."""
    checkpoint = Path(checkpoint)
    path = checkpoint / "custom_checkpoint_0.pkl"
    if not checkpoint.is_dir() or checkpoint.parent.name != "checkpoints" or not path.is_file():
        raise ValueError(
            f"--export-checkpoint {checkpoint} is not a checkpoint of train_vocoder.py: give a run's "
            "checkpoints/step-N folder"
        )
    run = checkpoint.parent.parent
    feature_extractor = load_feature_extractor(cfg.feature_extractor)
    check_resumed_features(run / "feature_extractor", feature_extractor, "--export-checkpoint")
    generator = build_generator(cfg, feature_extractor)
    # Accelerate names registered objects by registration order: the EMA comes first (custom_checkpoint_0)
    state = torch.load(path, map_location="cpu", weights_only=True)
    shapes = [tuple(p.shape) for p in generator.parameters()]
    saved = [tuple(p.shape) for p in state.get("shadow_params", [])]
    if saved != shapes:
        raise ValueError(
            f"the EMA weights of {checkpoint} ({len(saved)} tensors) do not fit the generator of the `vocoder:` "
            f"settings {cfg.vocoder} ({len(shapes)} tensors, or other shapes): export with the config the run was "
            "trained with"
        )
    ema = EMAModel(generator.parameters())
    ema.load_state_dict(state)
    ema.copy_to(generator.parameters())
    out = run / "vocoder"
    save_folder_atomically(generator.save_pretrained, out)
    print(f"exported the EMA generator of {checkpoint} to {out}", flush=True)
    return out


def save_folder_atomically(save, final: Path):
    """`save(tmp)` writes a folder that replaces `final` once complete: a crash never leaves a half-written one."""
    tmp, old = final.with_name(f".{final.name}-tmp"), final.with_name(f".{final.name}-old")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    save(tmp)
    make_saved_weights_readable(tmp)  # safetensors writes them private
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def stop_if_not_finite(step: int, lr: float, sums: dict, models: list) -> None:
    """Stops the run (train.stop_if_diverged) when a loss not yet logged, or a weight, is NaN or Inf."""
    losses = [k for k, v in sums.items() if isinstance(v, tuple) and not bool(torch.isfinite(v[0]).all())]
    if losses:
        stop_if_diverged(step, lr, f"the {', '.join(losses)} of a step since the last log line is")
    for model in models:
        if model is not None and not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            stop_if_diverged(step, lr, "the trained weights hold")


def split_logits(logits: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Logits of the discriminators on `cat([real, fake])` -> (logits on the real half, logits on the fake half)."""
    halves = [x.chunk(2) for x in logits]
    return [h[0] for h in halves], [h[1] for h in halves]


def main(argv=None):
    process_started = time.time()  # --time-budget-min counts the start-up too
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML or JSON file with VocoderTrainConfig fields")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    parser.add_argument("--output-dir", help="override output_dir")
    parser.add_argument(
        "--dataset",
        help="override dataset: a build_corpus.py corpus (the folder with dataset_dict.json; rows of evaluation-only "
        "voices are refused) or a folder of audio files",
    )
    parser.add_argument(
        "--data",
        help="train on a folder of wav/flac/ogg files (searched recursively); it must hold only audio you may train "
        "on: files carry no speaker labels, so no stock espeak-ng or flite voice, no festival kal/slt and no "
        "evaluation recording may be in it (folders under data/eval/ are refused)",
    )
    parser.add_argument("--max-steps", type=int, help="override max_steps")
    parser.add_argument("--init-from", help="override init_from: a vocoder folder to continue training")
    parser.add_argument(
        "--teacher-forced-corpus",
        help="override teacher_forced_corpus: the model's features of the recordings "
        "(vocoder_training/teacher_forced_corpus.py)",
    )
    parser.add_argument("--stop-after", type=int, help="exit after this many steps of this invocation (testing)")
    parser.add_argument(
        "--time-budget-min",
        type=float,
        help="end the run (lr decay, checkpoint, final vocoder) about this many minutes after the script started: "
        "max_steps is set from the measured step rate",
    )
    parser.add_argument(
        "--export-checkpoint",
        metavar="CHECKPOINT",
        help="write the EMA generator of this checkpoint (RUN/checkpoints/step-N) as RUN/vocoder, exit (the "
        "config's vocoder and feature_extractor must be the run's)",
    )
    args = parser.parse_args(argv)
    if args.data and args.dataset:
        raise SystemExit("give either --data (a folder of audio files) or --dataset, not both")

    try:
        cfg = VocoderTrainConfig.load(args.config)
    except (OSError, ValueError) as error:  # a missing, unreadable or wrong config: its message, not a traceback
        raise SystemExit(f"error: {error}") from None
    if args.max_steps is not None and args.max_steps < 1:
        raise SystemExit(f"error: --max-steps {args.max_steps}: give at least 1")
    if args.time_budget_min is not None and not args.time_budget_min > 0:
        raise SystemExit(f"error: --time-budget-min {args.time_budget_min:g}: give a number of minutes > 0")
    cfg.dataset = args.data or args.dataset or cfg.dataset
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if args.max_steps:
        cfg.max_steps = args.max_steps
    if args.init_from:
        cfg.init_from = args.init_from
    if args.teacher_forced_corpus:
        cfg.teacher_forced_corpus = args.teacher_forced_corpus
        try:
            cfg.check()
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
    if args.export_checkpoint:
        configure_process(cfg)
        try:
            export_checkpoint(cfg, Path(args.export_checkpoint))
        except (OSError, ValueError) as error:
            raise SystemExit(f"error: {error}") from None
        return
    if not Path(cfg.dataset).exists():  # said before anything is written
        raise SystemExit(
            f"error: dataset {cfg.dataset!r} does not exist: build one with examples/build_corpus.py, or give a "
            "folder of audio files with --data"
        )
    out = Path(cfg.output_dir)
    checkpoints = out / "checkpoints"
    latest = check_output_dir(out, args.resume)
    if latest is not None:
        changed = recipe_changes(out / "train_config.json", cfg)
        if changed:
            raise SystemExit(
                f"error: --resume: the recipe differs from the one this run was trained with "
                f"({out / 'train_config.json'}): {', '.join(changed)}. Resume with the run's settings (only "
                "max_steps, --time-budget-min and how "
                "often it logs, saves and evaluates may change), or start a new run in another --output-dir"
            )
        done = int(latest.name.split("-")[1])
        if done >= cfg.max_steps:
            raise SystemExit(
                f"error: --resume: {latest} is at step {done} and max_steps is {cfg.max_steps}: nothing to train. "
                f"Raise --max-steps above {done} to train on"
            )
    if cfg.adversarial and cfg.disc_start_step >= cfg.max_steps and not args.time_budget_min:
        print(
            f"note: disc_start_step {cfg.disc_start_step} >= max_steps {cfg.max_steps}: the discriminators never "
            "switch on (set adversarial: false to train without them, or lower disc_start_step)",
            flush=True,
        )
    configure_process(cfg)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = cfg.allow_tf32
        torch.backends.cudnn.allow_tf32 = cfg.allow_tf32
        torch.backends.cudnn.benchmark = True  # every batch has the same shape

    try:
        feature_extractor = load_feature_extractor(cfg.feature_extractor)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    if args.resume:
        check_resumed_features(out / "feature_extractor", feature_extractor)
    check_segments(cfg, feature_extractor)
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision, project_dir=str(out))
    set_seed(cfg.seed)
    rate, hop = feature_extractor.sampling_rate, feature_extractor.hop_length
    try:
        train_clips, valid_clips, described = load_clips(cfg, rate, audio_folder=bool(args.data))
        sampler = SegmentSampler(train_clips, hop_aligned(cfg.segment_seconds, rate, hop), cfg.seed, cfg.gain_db)
    except (OSError, ValueError) as error:  # a corpus or folder that holds no usable audio
        raise SystemExit(f"error: {error}") from None
    accelerator.print(
        f"{described}: {len(train_clips)} training clips ({sampler.total_samples / rate / 3600:.2f} h), "
        f"segments of {sampler.segment_samples} samples, start-up {time.time() - process_started:.0f} s"
    )
    num_teacher_forced = teacher_forced_rows(cfg)
    teacher_forced = None
    if num_teacher_forced:
        try:
            pairs = load_teacher_forced_clips(Path(cfg.teacher_forced_corpus), cfg.train_split, rate)
            teacher_forced = AlignedSegmentSampler(pairs, sampler.segment_samples, hop, cfg.seed)
        except (OSError, ValueError) as error:
            raise SystemExit(f"error: {error}") from None
        if teacher_forced.pairs[0][1].shape[1] != feature_extractor.feature_size:
            raise SystemExit(
                f"{cfg.teacher_forced_corpus} holds {teacher_forced.pairs[0][1].shape[1]}-bin features and the "
                f"vocoder inverts {feature_extractor.feature_size}: write it with the matching pipeline"
            )
        accelerator.print(
            f"teacher-forced corpus {cfg.teacher_forced_corpus}: {len(teacher_forced.pairs)} utterances "
            f"({teacher_forced.total_samples / rate / 3600:.2f} h; {teacher_forced.skipped} shorter than a segment "
            f"left out), {num_teacher_forced} of {cfg.batch_size} segments per batch"
        )

    try:
        generator = build_generator(cfg, feature_extractor)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    opt_g = torch.optim.AdamW(
        generator.parameters(), lr=cfg.learning_rate, betas=cfg.adam_betas, weight_decay=cfg.weight_decay
    )
    # the step counter, and the end of the lr schedule that --time-budget-min sets while the run goes: the checkpoints
    # save it, so a resumed run goes on at the learning rate it had, not from the config's max_steps
    state = TrainState(cfg)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, lr_lambda(cfg, accelerator.num_processes, state))
    described_parameters = f"generator {sum(p.numel() for p in generator.parameters()) / 1e6:.2f}M parameters"
    discriminators = opt_d = sched_d = None
    if cfg.adversarial:
        discriminators = VocoderDiscriminators(cfg.mpd_periods, cfg.mpd_channels, cfg.mrd_resolutions, cfg.mrd_channels)
        described_parameters += f", discriminators {sum(p.numel() for p in discriminators.parameters()) / 1e6:.2f}M"
        opt_d = torch.optim.AdamW(
            discriminators.parameters(),
            lr=cfg.disc_learning_rate if cfg.disc_learning_rate is not None else cfg.learning_rate,
            betas=cfg.adam_betas,
            weight_decay=cfg.weight_decay,
        )
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, lr_lambda(cfg, accelerator.num_processes, state))
        generator, discriminators, opt_g, opt_d, sched_g, sched_d = accelerator.prepare(
            generator, discriminators, opt_g, opt_d, sched_g, sched_d
        )
    else:
        generator, opt_g, sched_g = accelerator.prepare(generator, opt_g, sched_g)
        described_parameters += ", no discriminators"
    accelerator.print(described_parameters)
    ema = EMAModel(
        accelerator.unwrap_model(generator).parameters(),
        decay=cfg.ema_decay,
        use_ema_warmup=True,
        power=0.75,
        foreach=True,
    )
    register_and_resume(accelerator, ema, checkpoints, args.resume, state)
    continue_schedule(cfg, state, budgeted=bool(args.time_budget_min), log=accelerator.print)

    csv_path = out / "log.csv"
    columns = ["step", *LOSS_KEYS, "lr", "grad_norm_g", "grad_norm_d", "audio_s_per_s", "elapsed_s"]
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        feature_extractor.save_pretrained(out / "feature_extractor")
        if not csv_path.exists():
            with csv_path.open("w", newline="") as f:
                csv.writer(f).writerow(columns)
        if args.resume:  # the steps after the checkpoint are trained, logged and evaluated again
            drop_rows_after(csv_path, state.step, header=True)
            drop_rows_after(out / "eval.csv", state.step, header=True)

    mel_loss = MelLoss(feature_extractor)
    stft_loss = MultiResolutionSTFTLoss(cfg.stft_resolutions) if cfg.stft_weight > 0 else None
    raw_generator = accelerator.unwrap_model(generator)
    spectrum_loss = None
    if cfg.magnitude_weight > 0 or cfg.phase_weight > 0:
        spectrum_loss = SpectrumLoss(
            raw_generator.n_fft,
            raw_generator.hop_length,
            raw_generator.win_length,
            phase_terms=cfg.phase_terms,
            magnitude_loss=cfg.magnitude_loss,
        )
    # The discriminators' scheduler steps from step 0 (so both lrs follow one schedule) while their optimizer waits
    # for disc_start_step; torch warns once about that order.
    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
    clip = cfg.grad_clip if cfg.grad_clip is not None else math.inf
    raw_discriminators = accelerator.unwrap_model(discriminators) if discriminators is not None else None
    generator.train()
    if discriminators is not None:
        discriminators.train()
    started, steps_this_run, window = time.time(), 0, {"segments": 0, "t": time.time()}
    sums: dict = {}
    budget = None
    if args.time_budget_min:
        budget = TimeBudget(args.time_budget_min, cfg, state.step, process_started, state)
        budget.note_if_it_cannot_resize(state.step, accelerator.print)
    while state.step < cfg.max_steps:
        rank = accelerator.process_index
        audio = sampler.batch(state.step, cfg.batch_size - num_teacher_forced, rank)
        model_made = None
        if teacher_forced is not None:
            tf_audio, model_made = teacher_forced.batch(state.step, num_teacher_forced, rank)
            audio = torch.cat([audio, tf_audio])
        audio = audio.to(accelerator.device)
        with torch.no_grad():
            features = feature_extractor.compute_log_mel(audio)  # [B, T, D], T = 1 + S / hop: the losses' target
        inputs = features
        if model_made is not None:  # the last rows read the model's features of their recordings
            inputs = torch.cat([features[: cfg.batch_size - num_teacher_forced], model_made.to(features)])
        if spectrum_loss is not None:
            generated, spectrum = generator(inputs, return_spectrum=True)  # [B, S], [B, F, T] complex
        else:
            generated = generator(inputs)  # [B, S]
        adversarial = cfg.adversarial and state.step >= cfg.disc_start_step
        losses, grad_norm_d = {}, None
        if adversarial:
            output = discriminators(torch.cat([audio, generated.detach()]))
            real_mpd, fake_mpd = split_logits(output["mpd"][0])
            real_mrd, fake_mrd = split_logits(output["mrd"][0])
            disc = discriminator_loss(real_mpd, fake_mpd, cfg.adversarial_loss) + cfg.mrd_weight * discriminator_loss(
                real_mrd, fake_mrd, cfg.adversarial_loss
            )
            opt_d.zero_grad(set_to_none=True)
            accelerator.backward(disc)
            grad_norm_d = accelerator.clip_grad_norm_(discriminators.parameters(), clip)
            opt_d.step()
            losses["disc_loss"] = disc.detach()
        if sched_d is not None:
            sched_d.step()

        mel = mel_loss(generated, features)
        total = cfg.mel_weight * mel
        losses["mel_loss"] = mel.detach()
        if stft_loss is not None:
            stft = stft_loss(generated, audio)
            total = total + cfg.stft_weight * stft
            losses["stft_loss"] = stft.detach()
        if spectrum_loss is not None:
            magnitude, phase = spectrum_loss(spectrum, audio)
            total = total + cfg.magnitude_weight * magnitude + cfg.phase_weight * phase
            losses["magnitude_loss"], losses["phase_loss"] = magnitude.detach(), phase.detach()
        if adversarial:
            # The generator's loss needs no gradient for the discriminators' weights: frozen, the backward pass only
            # goes through their activations (a third less work), and the unwrapped module skips the all-reduce of
            # several processes. The real audio's activations are targets only, so they need no graph at all.
            raw_discriminators.requires_grad_(False)
            with accelerator.autocast():
                with torch.no_grad():
                    real_output = raw_discriminators(audio)
                fake_output = raw_discriminators(generated)
            adv = fm = 0.0
            for key, weight in (("mpd", 1.0), ("mrd", cfg.mrd_weight)):
                fake = fake_output[key][0]
                adv = adv + weight * generator_adversarial_loss(fake, cfg.adversarial_loss)
                fm = fm + weight * feature_matching_loss(real_output[key][1], fake_output[key][1])
            total = total + adv + cfg.feature_matching_weight * fm
            losses["adversarial_loss"], losses["feature_matching_loss"] = adv.detach(), fm.detach()
        losses["generator_loss"] = total.detach()
        opt_g.zero_grad(set_to_none=True)
        accelerator.backward(total)
        if raw_discriminators is not None:
            raw_discriminators.requires_grad_(True)
        grad_norm_g = accelerator.clip_grad_norm_(generator.parameters(), clip)
        opt_g.step()
        sched_g.step()

        for key, value in losses.items():  # stays on the device until the next log line
            total_so_far, count = sums.get(key, (0.0, 0))
            sums[key] = (total_so_far + value.float(), count + 1)
        sums["grad_norm_g"] = grad_norm_g
        if grad_norm_d is not None:
            sums["grad_norm_d"] = grad_norm_d
        window["segments"] += cfg.batch_size
        state.step += 1
        steps_this_run += 1
        ema.step(accelerator.unwrap_model(generator).parameters())
        if budget is not None:
            budget.update(state.step)

        if state.step % cfg.log_every == 0:
            now = time.time()
            means = {k: v[0] / v[1] for k, v in sums.items() if isinstance(v, tuple)}
            local = torch.stack([torch.as_tensor(means.get(k, math.nan), device=accelerator.device) for k in LOSS_KEYS])
            logs = dict(zip(LOSS_KEYS, accelerator.reduce(local.float(), reduction="mean").cpu().tolist(), strict=True))
            diverged = [k for k in LOSS_KEYS if k in means and not math.isfinite(logs[k])]
            if diverged:
                stop_if_diverged(
                    state.step,
                    sched_g.get_last_lr()[0],
                    f"the logged {', '.join(diverged)} (the mean of the last {cfg.log_every} steps) is",
                )
            logs["lr"] = sched_g.get_last_lr()[0]
            logs["grad_norm_g"] = float(sums["grad_norm_g"])
            logs["grad_norm_d"] = float(sums["grad_norm_d"]) if "grad_norm_d" in sums else math.nan
            seconds = window["segments"] * accelerator.num_processes * sampler.segment_samples / rate
            logs["audio_s_per_s"] = seconds / (now - window["t"])
            if accelerator.is_main_process:
                with csv_path.open("a", newline="") as f:
                    csv.writer(f).writerow(
                        [state.step] + [f"{logs[c]:.6g}" for c in columns[1:-1]] + [f"{now - started:.1f}"]
                    )
                gan = ""
                if not math.isnan(logs["disc_loss"]):  # the discriminators are on
                    gan = (
                        f" adv {logs['adversarial_loss']:.3f} fm {logs['feature_matching_loss']:.3f} "
                        f"disc {logs['disc_loss']:.3f}"
                    )
                spectral = ""
                if not math.isnan(logs["phase_loss"]):
                    spectral = f" magnitude {logs['magnitude_loss']:.4f} phase {logs['phase_loss']:.4f}"
                print(
                    f"step {state.step} mel {logs['mel_loss']:.4f}{spectral}{gan} lr {logs['lr']:.2e} "
                    f"{logs['audio_s_per_s']:.1f} s audio/s",
                    flush=True,
                )
            sums, window = {}, {"segments": 0, "t": now}

        saving = state.step % cfg.checkpoint_every == 0 or state.step == cfg.max_steps
        if saving or state.step % cfg.eval_every == 0:  # nothing non-finite is saved
            stop_if_not_finite(state.step, sched_g.get_last_lr()[0], sums, [generator, discriminators])
        if saving:
            save_checkpoint(accelerator, checkpoints, state.step, cfg.keep_checkpoints)
        if accelerator.is_main_process and (state.step % cfg.eval_every == 0 or state.step == cfg.max_steps):
            evaluate(
                accelerator.unwrap_model(generator),
                ema,
                feature_extractor,
                valid_clips,
                out,
                state.step,
                cfg,
                sched_g.get_last_lr()[0],
            )
        if args.stop_after and steps_this_run >= args.stop_after:
            break
    accelerator.wait_for_everyone()
    accelerator.end_training()


@torch.no_grad()
def evaluate(
    generator, ema, feature_extractor, clips, out: Path, step: int, cfg: VocoderTrainConfig, lr: float = math.nan
):
    """With the EMA weights: resynthesise the validation clips (wavs and their log-mel L1 in eval.csv) and save the
    generator as `out/vocoder`; a non-finite L1 stops the run (train.stop_if_diverged) before anything is written."""
    import soundfile as sf

    rate, hop = feature_extractor.sampling_rate, feature_extractor.hop_length
    limit = hop_aligned(cfg.eval_seconds, rate, hop)
    ema.store(generator.parameters())
    ema.copy_to(generator.parameters())
    was_training = generator.training
    generator.eval()
    try:
        errors, outputs = [], []
        for clip in clips:
            length = max(hop, min(limit, len(clip) // hop * hop))  # whole hops: frames and samples line up
            audio = torch.zeros(length)
            audio[: min(length, len(clip))] = torch.tensor(
                clip[:length], dtype=torch.float32
            )  # a copy: views are read-only
            device = next(generator.parameters()).device
            features = feature_extractor.compute_log_mel(audio[None].to(device))
            resynthesised = generator(features)
            errors.append(float((feature_extractor.compute_log_mel(resynthesised) - features).abs().mean()))
            outputs.append((audio, resynthesised))
        mel_l1 = sum(errors) / max(len(errors), 1)
        if not math.isfinite(mel_l1):  # before any of it is written
            stop_if_diverged(step, lr, "the validation log-mel L1 of the EMA generator is")
        samples, references = out / "samples" / f"step-{step}", out / "samples" / "reference"
        samples.mkdir(parents=True, exist_ok=True)
        write_references = not references.exists()
        references.mkdir(parents=True, exist_ok=True)
        for index, (audio, resynthesised) in enumerate(outputs):
            sf.write(samples / f"clip-{index}.wav", resynthesised[0].float().cpu().numpy(), rate)
            if write_references:
                sf.write(references / f"clip-{index}.wav", audio.numpy(), rate)
        eval_csv = out / "eval.csv"
        new = not eval_csv.exists()
        with eval_csv.open("a", newline="") as f:
            if new:
                f.write("step,val_mel_l1\n")
            f.write(f"{step},{mel_l1:.6g}\n")
        print(f"eval step {step}: validation log-mel L1 {mel_l1:.4f} (EMA weights)", flush=True)
        save_folder_atomically(generator.save_pretrained, out / "vocoder")
    finally:
        ema.restore(generator.parameters())
        generator.train(was_training)


if __name__ == "__main__":
    main()

"""Feature extractor of DiTAR: raw audio (any rate, mono or multichannel, int or float) -> normalised log-mel frames.

Shapes: B batch, T frames, D mel bins (`feature_size`), S samples.

Frame convention: `torch.stft(center=True)` with reflect padding, so a clip of S samples gives `1 + S // hop_length`
frames, frame t centred on sample `t * hop_length`. The Griffin-Lim vocoder inverts T frames to `(T - 1) * hop_length`
samples, so a clip whose length is a multiple of `hop_length` round-trips to exactly its own length.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor
from transformers.feature_extraction_utils import BatchFeature
from transformers.utils import PaddingStrategy, logging

from .audio_utils import (
    ditar_mel_filter_bank,
    load_audio,
    resample_audio,
    to_mono_float32,
    validate_sampling_rate,
)

logger = logging.get_logger(__name__)

__all__ = ["DiTARFeatureExtractor", "VOCODER_PRESETS", "load_audio"]

MEL_SCALES = ("slaney", "htk")
MEL_NORMS = ("slaney", None)
LOG_MELS = {"log": math.log, "log10": math.log10}


def check_mel_transform(mel_scale, mel_norm, log_mel, power) -> None:
    """Validates the mel scale, filter normalisation, logarithm and spectrogram power (shared by the feature extractor
    and the vocoders that record the features they expect)."""
    if mel_scale not in MEL_SCALES:
        raise ValueError(f"`mel_scale` must be one of {MEL_SCALES}, got {mel_scale!r}.")
    if mel_norm not in MEL_NORMS:
        raise ValueError(f"`mel_norm` must be one of {MEL_NORMS}, got {mel_norm!r}.")
    if log_mel not in LOG_MELS:
        raise ValueError(f"`log_mel` must be 'log' (natural) or 'log10', got {log_mel!r}.")
    if isinstance(power, bool) or not (isinstance(power, (int, float)) and math.isfinite(power) and power > 0):
        raise ValueError(f"`power` must be a positive float (1 = magnitude, 2 = power), got {power!r}.")


# Analysis settings that reproduce, exactly, the features a published vocoder was trained on (see
# `DiTARFeatureExtractor.from_vocoder_preset`).
VOCODER_PRESETS: dict[str, dict] = {
    # transformers' SpeechT5HifiGan ("microsoft/speecht5_hifigan", HiFi-GAN V1 trained on LibriTTS): the targets of
    # SpeechT5FeatureExtractor, i.e. 16 kHz, 64 ms Hann window, 16 ms hop, 80 Slaney mels over 80-7600 Hz, log10 with
    # a 1e-10 floor. The vocoder normalises them itself with the statistics stored in its weights.
    "speecht5_hifigan": {
        "sampling_rate": 16000,
        "feature_size": 80,
        "n_fft": 1024,
        "hop_length": 256,
        "win_length": 1024,
        "f_min": 80.0,
        "f_max": 7600.0,
        "mel_scale": "slaney",
        "mel_norm": "slaney",
        "log_mel": "log10",
        "log_floor": 1e-10,
        "power": 1.0,
    },
    # Vocos' mel vocoder ("charactr/vocos-mel-24khz", trained on LibriTTS): torchaudio's MelSpectrogram defaults
    # (HTK scale, no filter normalisation, centred frames with reflect padding) at 24 kHz, 100 mels over 0-12 kHz,
    # magnitude (power 1), natural log with a 1e-7 floor.
    "vocos_mel_24khz": {
        "sampling_rate": 24000,
        "feature_size": 100,
        "n_fft": 1024,
        "hop_length": 256,
        "win_length": 1024,
        "f_min": 0.0,
        "f_max": 12000.0,
        "mel_scale": "htk",
        "mel_norm": None,
        "log_mel": "log",
        "log_floor": 1e-7,
        "power": 1.0,
    },
}


def _as_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return int(value)


def _as_stats(values, name: str, size: int, positive: bool) -> list[float] | None:
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().tolist()
    elif isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, (int, float)):
        raise ValueError(f"`{name}` must be a list of {size} floats (one per mel bin), got the scalar {values!r}.")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{name}` must be a list of {size} floats (one per mel bin): {err}") from err
    if len(values) != size:
        raise ValueError(f"`{name}` has {len(values)} values but `feature_size` is {size}; give one value per mel bin.")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"`{name}` contains NaN or Inf values.")
    if positive and min(values) <= 0:
        raise ValueError(f"`{name}` must be strictly positive, got a minimum of {min(values)}.")
    return values


class DiTARFeatureExtractor(SequenceFeatureExtractor):
    r"""
    Turns raw speech into the log-mel frames DiTAR models: resampling to `sampling_rate`, downmix to mono, STFT
    magnitude, mel filter bank (transformers' `mel_filter_bank`; by default Slaney, identical to librosa's default),
    log with a floor, and optional per-bin normalisation with `feature_mean` / `feature_std`.

    To train for a pretrained neural vocoder, build the extractor with [`~DiTARFeatureExtractor.from_vocoder_preset`],
    which sets every analysis parameter below to the values that vocoder was trained on.

    Args:
        feature_size (`int`, defaults to 100): number of mel bins D.
        sampling_rate (`int`, defaults to 24000): rate the features are computed at; other rates are resampled.
        n_fft (`int`, defaults to 1024): FFT size.
        hop_length (`int`, defaults to 256): hop between frames (frame rate = `sampling_rate / hop_length`).
        win_length (`int`, *optional*): Hann window length, defaults to `n_fft`.
        num_mel_bins (`int`, *optional*): alias of `feature_size`; must equal it when both are given.
        f_min / f_max (`float`): mel band edges in Hz (`f_max` defaults to `sampling_rate / 2`).
        log_floor (`float`, defaults to 1e-5): mel energies are clamped to this before the log.
        mel_scale (`str`, defaults to `"slaney"`): `"slaney"` (librosa's default) or `"htk"` (torchaudio's default).
        mel_norm (`str` or `None`, defaults to `"slaney"`): `"slaney"` divides each triangular filter by its width
            (librosa's default); `None` keeps unit-peak triangles (torchaudio's default).
        log_mel (`str`, defaults to `"log"`): `"log"` (natural logarithm) or `"log10"`.
        power (`float`, defaults to 1.0): exponent of the STFT magnitude before the filter bank (1 = magnitude,
            2 = power spectrogram).
        feature_mean / feature_std (`list[float]`, *optional*): per-bin statistics; `normalize` computes
            `(x - mean) / std`. Identity when not given.
        padding_value (`float`, defaults to 0.0): value of padded frames in `input_features`.
        return_attention_mask (`bool`, defaults to `True`): also return `attention_mask` [B, T] (1 = real frame).
    """

    model_input_names = ["input_features", "attention_mask"]

    def __init__(
        self,
        feature_size: int = 100,
        sampling_rate: int = 24000,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int | None = None,
        num_mel_bins: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        log_floor: float = 1e-5,
        mel_scale: str = "slaney",
        mel_norm: str | None = "slaney",
        log_mel: str = "log",
        power: float = 1.0,
        feature_mean: list[float] | None = None,
        feature_std: list[float] | None = None,
        padding_value: float = 0.0,
        return_attention_mask: bool = True,
        **kwargs,
    ):
        feature_size = _as_positive_int(feature_size, "feature_size")
        if num_mel_bins is not None and _as_positive_int(num_mel_bins, "num_mel_bins") != feature_size:
            raise ValueError(
                f"`num_mel_bins` ({num_mel_bins}) must equal `feature_size` ({feature_size}); it is only an alias."
            )
        sampling_rate = validate_sampling_rate(sampling_rate)
        n_fft = _as_positive_int(n_fft, "n_fft")
        if n_fft < 2:
            raise ValueError(f"`n_fft` must be at least 2, got {n_fft}.")
        hop_length = _as_positive_int(hop_length, "hop_length")
        win_length = n_fft if win_length is None else _as_positive_int(win_length, "win_length")
        if win_length > n_fft:
            raise ValueError(f"`win_length` ({win_length}) must be <= `n_fft` ({n_fft}).")
        if hop_length > win_length:
            raise ValueError(
                f"`hop_length` ({hop_length}) must be <= `win_length` ({win_length}), or frames would skip samples."
            )
        nyquist = sampling_rate / 2
        f_min = float(f_min)
        f_max = nyquist if f_max is None else float(f_max)
        if not 0.0 <= f_min < f_max:
            raise ValueError(f"Need 0 <= `f_min` < `f_max`, got f_min={f_min}, f_max={f_max}.")
        if f_max > nyquist:
            raise ValueError(f"`f_max` ({f_max}) must be <= sampling_rate / 2 ({nyquist}).")
        if not (isinstance(log_floor, (int, float)) and math.isfinite(log_floor) and log_floor > 0):
            raise ValueError(f"`log_floor` must be a positive finite float, got {log_floor!r}.")
        check_mel_transform(mel_scale, mel_norm, log_mel, power)
        if not (isinstance(padding_value, (int, float)) and math.isfinite(padding_value)):
            raise ValueError(f"`padding_value` must be a finite float, got {padding_value!r}.")

        super().__init__(
            feature_size=feature_size,
            sampling_rate=sampling_rate,
            padding_value=float(padding_value),
            return_attention_mask=return_attention_mask,
            **kwargs,
        )
        if self.padding_side != "right":
            raise ValueError(f"`padding_side` must be 'right' (frames are right-padded), got {self.padding_side!r}.")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = win_length
        self.num_mel_bins = feature_size
        self.f_min = f_min
        self.f_max = f_max
        self.log_floor = float(log_floor)
        self.mel_scale = mel_scale
        self.mel_norm = mel_norm
        self.log_mel = log_mel
        self.power = float(power)
        self.feature_mean = _as_stats(feature_mean, "feature_mean", feature_size, positive=False)
        self.feature_std = _as_stats(feature_std, "feature_std", feature_size, positive=True)
        if (self.feature_mean is None) != (self.feature_std is None):
            logger.warning(
                "Only one of `feature_mean` / `feature_std` was given; the missing one acts as 0 / 1 respectively."
            )

        # Cached tensors. Their names start with "_" and `to_dict` leaves such attributes out of the saved config.
        self._mel_filters = ditar_mel_filter_bank(
            sampling_rate, n_fft, feature_size, f_min, f_max, mel_scale=mel_scale, norm=mel_norm
        )  # [n_fft//2+1, D]
        self._window = torch.hann_window(win_length, periodic=True, dtype=torch.float32)
        self._mean = None if self.feature_mean is None else torch.tensor(self.feature_mean, dtype=torch.float32)
        self._std = None if self.feature_std is None else torch.tensor(self.feature_std, dtype=torch.float32)

    # ------------------------------------------------------------------------------------------------------------------
    # serialisation
    # ------------------------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        output = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        output = {k: (v.tolist() if isinstance(v, (np.ndarray, torch.Tensor)) else v) for k, v in output.items()}
        output["feature_extractor_type"] = self.__class__.__name__
        return output

    # ------------------------------------------------------------------------------------------------------------------
    # properties and helpers
    # ------------------------------------------------------------------------------------------------------------------

    @property
    def frame_rate(self) -> float:
        """Frames per second, `sampling_rate / hop_length`."""
        return self.sampling_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a clip of `num_samples` samples at `sampling_rate`: `1 + num_samples // hop_length`."""
        return 1 + int(num_samples) // self.hop_length

    @property
    def log_mel_floor(self) -> float:
        """The feature value of silence: `log_floor` in the configured logarithm (`log_mel`)."""
        return LOG_MELS[self.log_mel](self.log_floor)

    @classmethod
    def from_vocoder_preset(cls, name: str, **kwargs) -> DiTARFeatureExtractor:
        """A feature extractor whose log-mel is exactly what a published vocoder was trained on, so that a model
        trained on these features can be voiced by that vocoder.

        Presets:
            - `"speecht5_hifigan"`: transformers' `SpeechT5HifiGan` (`microsoft/speecht5_hifigan`): 16 kHz, n_fft
              1024, hop 256, 80 Slaney mels over 80-7600 Hz, log10, floor 1e-10 (the log-mel targets of
              `SpeechT5FeatureExtractor`).
            - `"vocos_mel_24khz"`: Vocos (`charactr/vocos-mel-24khz`): 24 kHz, n_fft 1024, hop 256, 100 HTK mels
              without filter normalisation over 0-12 kHz, natural log, floor 1e-7.

        Keyword arguments set the settings a preset leaves open (`feature_mean`, `feature_std`, `padding_value`,
        `return_attention_mask`); changing one of the preset's analysis settings is refused, since the vocoder would
        then get features it was not trained on.
        """
        if name not in VOCODER_PRESETS:
            raise ValueError(f"Unknown vocoder preset {name!r}; known presets: {sorted(VOCODER_PRESETS)}.")
        preset = VOCODER_PRESETS[name]
        fixed = sorted(k for k in kwargs if k in preset or k == "num_mel_bins")
        if fixed:
            raise ValueError(
                f"The {name!r} preset fixes {fixed} to match the vocoder's training features; build "
                f"`{cls.__name__}(...)` directly for other settings."
            )
        return cls(**preset, **kwargs)

    @property
    def mel_filters(self) -> torch.Tensor:
        """The cached filter bank `[n_fft // 2 + 1, D]` (do not modify in place)."""
        return self._mel_filters

    # ------------------------------------------------------------------------------------------------------------------
    # audio -> features
    # ------------------------------------------------------------------------------------------------------------------

    def prepare_audio(self, audio, sampling_rate) -> torch.Tensor:
        """Validates one clip and returns it as a float32 1-D torch tensor at `self.sampling_rate`.

        Accepts numpy or torch, `[S]`, `[channels, S]` (channels <= 8) or `[S, channels]`, int PCM (scaled to [-1, 1])
        or float. Multichannel audio is averaged to mono, then resampled if `sampling_rate != self.sampling_rate`.

        Raises `ValueError` for a missing `sampling_rate`, empty audio, NaN/Inf samples or silence (peak < 1e-6).
        """
        rate = validate_sampling_rate(sampling_rate)
        waveform = to_mono_float32(audio, check_silence=True)
        if rate != self.sampling_rate:
            waveform = resample_audio(waveform, rate, self.sampling_rate)
        return waveform

    def compute_log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-mel of `[S]` (or `[..., S]`) float audio at `self.sampling_rate` -> `[T, D]`
        (`[..., T, D]`), in the logarithm `log_mel` with energies clamped to `log_floor`.

        `T = 1 + S // hop_length` (centred frames, reflect padding; clips shorter than `n_fft // 2 + 1` samples, which
        reflect padding cannot handle, are zero-padded instead).
        """
        if not isinstance(waveform, torch.Tensor):
            waveform = torch.as_tensor(np.asarray(waveform))
        if waveform.dim() == 0 or waveform.shape[-1] == 0:
            raise ValueError(f"`waveform` must have at least one sample, got shape {tuple(waveform.shape)}.")
        if not waveform.is_floating_point():
            raise ValueError(f"`waveform` must be a float tensor, got dtype {waveform.dtype}; use `prepare_audio`.")
        lead = waveform.shape[:-1]
        x = waveform.reshape(-1, waveform.shape[-1])
        compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        x = x.to(compute_dtype)
        pad_mode = "reflect" if x.shape[-1] > self.n_fft // 2 else "constant"
        spec = torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self._window.to(device=x.device, dtype=compute_dtype),
            center=True,
            pad_mode=pad_mode,
            return_complex=True,
        )  # [rows, n_fft // 2 + 1, T]
        magnitude = spec.abs()
        if self.power != 1.0:
            magnitude = magnitude**self.power
        mel = torch.matmul(magnitude.transpose(-1, -2), self._mel_filters.to(device=x.device, dtype=compute_dtype))
        mel = torch.clamp(mel, min=self.log_floor)
        log_mel = torch.log10(mel) if self.log_mel == "log10" else torch.log(mel)  # [rows, T, D]
        return log_mel.reshape(*lead, log_mel.shape[-2], log_mel.shape[-1])

    def _stats_like(self, features):
        if isinstance(features, np.ndarray):
            mean = None if self._mean is None else self._mean.numpy().astype(features.dtype)
            std = None if self._std is None else self._std.numpy().astype(features.dtype)
        else:
            mean = None if self._mean is None else self._mean.to(device=features.device, dtype=features.dtype)
            std = None if self._std is None else self._std.to(device=features.device, dtype=features.dtype)
        if features.shape[-1] != self.feature_size:
            raise ValueError(
                f"features have {features.shape[-1]} channels in their last dimension, expected {self.feature_size}."
            )
        return mean, std

    def normalize(self, features):
        """`(features - feature_mean) / feature_std` over the last dimension (identity where the stats are None)."""
        mean, std = self._stats_like(features)
        if mean is not None:
            features = features - mean
        if std is not None:
            features = features / std
        return features

    def denormalize(self, features):
        """Inverse of [`normalize`]: `features * feature_std + feature_mean`."""
        mean, std = self._stats_like(features)
        if std is not None:
            features = features * std
        if mean is not None:
            features = features + mean
        return features

    def __call__(
        self,
        raw_speech,
        sampling_rate: int | None = None,
        return_tensors: str | None = None,
        padding: bool | str | PaddingStrategy = True,
        normalize: bool = True,
        max_length: int | None = None,
        truncation: bool = False,
        pad_to_multiple_of: int | None = None,
        return_attention_mask: bool | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Featurises one clip or a list of clips.

        Args:
            raw_speech: one clip (numpy array, torch tensor or list of floats; `[S]`, `[channels, S]` or
                `[S, channels]`) or a list/tuple of clips. A batch must be a list: a 2-D array is one multichannel clip,
                and a `[N, S]` array with 3 or more rows is refused as ambiguous (a stacked batch or N channels?).
            sampling_rate (`int`): rate of `raw_speech` in Hz (required); other rates than `self.sampling_rate` are
                resampled.
            return_tensors (`"pt"`, `"np"` or `None`): tensor type of the outputs. `None` gives numpy arrays (a list of
                `[T_i, D]` arrays when not padded).
            padding (`bool` or `str`): `True`/`"longest"` pads to the longest clip, `"max_length"` to `max_length`,
                `False`/`"do_not_pad"` keeps per-clip lengths (then clips of different lengths need
                `return_tensors=None`).
            normalize (`bool`): apply `feature_mean`/`feature_std`.
            max_length / truncation / pad_to_multiple_of: as in transformers' `pad` (in frames).
            return_attention_mask (`bool`, *optional*): defaults to `self.return_attention_mask`.

        Returns:
            [`BatchFeature`] with `input_features` `[B, T, D]` (right-padded with `padding_value`) and `attention_mask`
            `[B, T]` (1 for real frames).
        """
        if kwargs:
            from .generation_ditar import reject_unknown_kwargs

            reject_unknown_kwargs(
                f"{self.__class__.__name__}.__call__",
                kwargs,
                (
                    "raw_speech",
                    "sampling_rate",
                    "return_tensors",
                    "padding",
                    "normalize",
                    "max_length",
                    "truncation",
                    "pad_to_multiple_of",
                    "return_attention_mask",
                ),
            )
        if sampling_rate is None:
            raise ValueError(
                f"`sampling_rate` is required: pass the sampling rate (Hz) of `raw_speech`. {self.__class__.__name__} "
                f"computes features at {self.sampling_rate} Hz and resamples other rates, so silently assuming a rate "
                "would give wrong features."
            )
        if return_tensors not in (None, "pt", "np"):
            raise ValueError(f"`return_tensors` must be 'pt', 'np' or None, got {return_tensors!r}.")

        refuse_stacked_clips(raw_speech)
        is_batched = isinstance(raw_speech, (list, tuple)) and len(raw_speech) > 0 and not _is_number(raw_speech[0])
        clips = list(raw_speech) if is_batched else [raw_speech]
        if len(clips) == 0 or (isinstance(raw_speech, (list, tuple)) and len(raw_speech) == 0):
            raise ValueError("`raw_speech` is empty: pass one clip or a non-empty list of clips.")

        features = []
        for i, clip in enumerate(clips):
            try:
                waveform = self.prepare_audio(clip, sampling_rate)
            except ValueError as err:
                if is_batched:
                    raise ValueError(f"clip {i} of the batch: {err}") from err
                raise
            feats = self.compute_log_mel(waveform)
            if normalize:
                feats = self.normalize(feats)
            features.append(feats.float().cpu().numpy())

        return self._pad_features(
            features, padding, max_length, truncation, pad_to_multiple_of, return_attention_mask, return_tensors
        )

    def _pad_features(
        self, features, padding, max_length, truncation, pad_to_multiple_of, return_attention_mask, return_tensors
    ) -> BatchFeature:
        """Right-pads a list of `[T_i, D]` float32 arrays into `[B, T, D]` + `attention_mask` `[B, T]`."""
        strategy = PaddingStrategy.LONGEST if padding is True else PaddingStrategy(padding or "do_not_pad")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 1
        ):
            raise ValueError(f"`max_length` must be a positive integer (frames), got {max_length!r}.")
        if strategy == PaddingStrategy.MAX_LENGTH and max_length is None:
            raise ValueError("`padding='max_length'` needs `max_length` (in frames).")
        if truncation:
            if max_length is None:
                raise ValueError("`truncation=True` needs `max_length` (in frames).")
            features = [f[:max_length] for f in features]
        if return_attention_mask is None:
            return_attention_mask = self.return_attention_mask
        lengths = [f.shape[0] for f in features]

        if strategy == PaddingStrategy.DO_NOT_PAD:
            if len(set(lengths)) > 1:
                if return_tensors is not None:
                    raise ValueError(
                        "Clips have different numbers of frames and `padding=False`; pass `padding=True` or "
                        "`return_tensors=None`."
                    )
                data = {"input_features": features}
                if return_attention_mask:
                    data["attention_mask"] = [np.ones(n, dtype=np.int64) for n in lengths]
                return BatchFeature(data)
            target = lengths[0]
        elif strategy == PaddingStrategy.MAX_LENGTH:
            target = max(max_length, max(lengths))
        else:
            target = max(lengths)
        if strategy != PaddingStrategy.DO_NOT_PAD and pad_to_multiple_of is not None:
            multiple = _as_positive_int(pad_to_multiple_of, "pad_to_multiple_of")
            target = math.ceil(target / multiple) * multiple

        batch = np.full((len(features), target, self.feature_size), self.padding_value, dtype=np.float32)
        mask = np.zeros((len(features), target), dtype=np.int64)
        for i, feats in enumerate(features):
            batch[i, : feats.shape[0]] = feats
            mask[i, : feats.shape[0]] = 1
        data = {"input_features": batch}
        if return_attention_mask:
            data["attention_mask"] = mask
        return BatchFeature(data, tensor_type=return_tensors)


def refuse_stacked_clips(audio, name: str = "raw_speech", batch: int = 1) -> None:
    """A 2-D array of 3 or more rows, each longer than the number of rows, is ambiguous: a batch of stacked clips (as
    other feature extractors read it) or one clip of 3-8 channels (as this one used to, averaging the clips into one).
    With `batch` texts (the processor's prompts), as many rows as texts is most likely one prompt per text stacked
    together. Both are refused, with the two fixes; `[samples, channels]` and otherwise 2-row `[channels, samples]`
    (stereo) stay one clip."""
    shape = tuple(getattr(audio, "shape", ()))
    if len(shape) != 2 or not shape[0] < shape[1]:
        return
    if shape[0] >= 3 or shape[0] == batch > 1:
        texts = f" for {batch} texts" if batch > 1 else ""
        raise ValueError(
            f"{name} has shape {shape}{texts}: is that {shape[0]} clips stacked together or one clip with {shape[0]} "
            f"channels? Pass a batch as a list of 1-D clips (`list({name})`), or one multichannel clip as "
            f"[samples, channels] (`{name}.T`) or already downmixed to mono."
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)

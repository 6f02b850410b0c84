"""The vocoder interface of DiTAR: un-normalised log-mel frames -> waveform.

Shapes: B batch, T frames, D mel bins, S samples.

Every vocoder (Griffin-Lim by default; a neural vocoder or a VAE decoder can be plugged in) is a `torch.nn.Module` that
maps `features [B, T, D]` (the *un-normalised* log-mel of [`DiTARFeatureExtractor.compute_log_mel`]; de-normalise
model outputs first) to `waveform [B, S]` at `sampling_rate`, and exposes `sampling_rate`, `hop_length` and
`num_samples(num_frames)` so that callers can trim padded rows and align streamed chunks.
"""

from __future__ import annotations

import math

import torch

__all__ = ["DiTARVocoder", "check_mel_options", "feature_analysis_settings", "overlap_add", "padded_hann_window"]


def padded_hann_window(win_length: int, n_fft: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Periodic Hann window of `win_length` (float32), zero-padded to `n_fft` in the middle as `torch.istft` pads it."""
    window = torch.hann_window(win_length, periodic=True, dtype=torch.float32, device=device)
    left = (n_fft - win_length) // 2
    return torch.nn.functional.pad(window, (left, n_fft - win_length - left))


def overlap_add(frames: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Frames `[B, T, N]` laid `hop_length` apart and summed: `[B, N + (T - 1) * hop_length]` (the overlap-add of an
    inverse STFT). When N is a multiple of the hop, the output is N / hop shifted copies of the frames cut into hops,
    laid end to end: a few slice additions, several times faster on a CPU than `fold` (col2im), which takes the rest."""
    batch, count, size = frames.shape
    total = size + (count - 1) * hop_length
    if size % hop_length:
        folded = torch.nn.functional.fold(
            frames.transpose(1, 2), output_size=(1, total), kernel_size=(1, size), stride=(1, hop_length)
        )
        return folded.view(batch, total)
    ratio = size // hop_length
    out = frames.new_zeros(batch, total)
    parts = frames.reshape(batch, count, ratio, hop_length)
    for k in range(ratio):
        out[:, k * hop_length : (k + count) * hop_length] += parts[:, :, k].reshape(batch, count * hop_length)
    return out


# vocoder config name -> feature extractor attribute, for the settings that decide what a feature frame means
FEATURE_EXTRACTOR_NAMES = {"num_mel_bins": "feature_size"}
# Natural-log mel values: a full-scale square wave reaches about 2.8 with the default analysis, so features far above
# that come from a model pushed off its range (e.g. a very large guidance scale) or from another scale; beyond
# MAX_LOG_MEL (a magnitude of 5e8) Griffin-Lim's exp overflows towards NaN and any vocoder returns noise.
FULL_SCALE_LOG_MEL = 3.0
MAX_LOG_MEL = 20.0


def check_mel_options(sampling_rate: int, f_min, f_max, mel_scale, mel_norm, log_mel, power) -> float:
    """Validates the mel band, scale, normalisation, logarithm and power of a vocoder's features (the values a
    [`DiTARFeatureExtractor`] accepts) and returns `f_max` in effect (`None` means `sampling_rate / 2`)."""
    from .feature_extraction_ditar import check_mel_transform

    f_max_value = sampling_rate / 2 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max_value <= sampling_rate / 2:
        raise ValueError(f"Need 0 <= `f_min` < `f_max` <= sampling_rate / 2, got f_min={f_min}, f_max={f_max}.")
    check_mel_transform(mel_scale, mel_norm, log_mel, power)
    return f_max_value


def feature_analysis_settings(feature_extractor, with_log_floor: bool = False) -> dict:
    """The analysis settings of `feature_extractor` (a [`DiTARFeatureExtractor`]) as vocoder config keyword arguments:
    sampling rate, STFT, mel bins and band, mel scale and normalisation, logarithm and power (and the log floor)."""
    settings = {
        "sampling_rate": int(feature_extractor.sampling_rate),
        "n_fft": int(feature_extractor.n_fft),
        "hop_length": int(feature_extractor.hop_length),
        "win_length": int(feature_extractor.win_length),
        "num_mel_bins": int(feature_extractor.feature_size),
        "f_min": float(feature_extractor.f_min),
        "f_max": float(feature_extractor.f_max),
        # getattr defaults: a feature extractor from before these options computed Slaney natural-log magnitudes
        "mel_scale": getattr(feature_extractor, "mel_scale", "slaney"),
        "mel_norm": getattr(feature_extractor, "mel_norm", "slaney"),
        "log_mel": getattr(feature_extractor, "log_mel", "log"),
        "power": float(getattr(feature_extractor, "power", 1.0)),
    }
    if with_log_floor:
        settings["log_floor"] = float(feature_extractor.log_floor)
    return settings


class DiTARVocoder(torch.nn.Module):
    """Base class of DiTAR vocoders. Subclasses set `sampling_rate` and `hop_length` and implement `forward`.

    Convention: T input frames give `num_samples(T)` output samples. The base class defines it as
    `(T - 1) * hop_length`, which inverts the feature extractor's centred framing (`T = 1 + S // hop_length`);
    a vocoder with another convention overrides `num_samples`.
    """

    sampling_rate: int
    hop_length: int

    def num_samples(self, num_frames: int) -> int:
        """Number of output samples for `num_frames` input frames."""
        return max(int(num_frames) - 1, 0) * int(self.hop_length)

    def forward(self, features: torch.Tensor, **kwargs) -> torch.Tensor:  # pragma: no cover - interface
        """`features [B, T, D]` un-normalised log-mel -> `waveform [B, num_samples(T)]` (float32)."""
        raise NotImplementedError(f"{type(self).__name__} must implement `forward(features) -> waveform`.")

    def _raise_on_feature_mismatch(self, expected: dict, feature_extractor, verb: str, fix: str) -> None:
        """Raises a `ValueError` naming every setting of `expected` (vocoder config names -> the values in effect) in
        which `feature_extractor` differs, with both values, then `fix`."""
        wrong = []
        for name, value in expected.items():
            extractor_name = FEATURE_EXTRACTOR_NAMES.get(name, name)
            actual = getattr(feature_extractor, extractor_name, None)
            if isinstance(value, (int, float)) and isinstance(actual, (int, float)):
                same = math.isclose(float(actual), float(value), rel_tol=1e-6)
            else:  # the mel scale, norm and logarithm are names (mel_norm may be None)
                same = actual == value
            if not same:
                wrong.append(f"{extractor_name}: vocoder {value!r}, feature extractor {actual!r}")
        if wrong:
            raise ValueError(
                f"The {type(self).__name__} {verb} other features than the feature extractor computes ("
                + "; ".join(wrong)
                + f"). {fix}"
            )

    def _check_features(self, features: torch.Tensor, num_mel_bins: int) -> torch.Tensor:
        """Validates `features` and returns it as `[B, T, D]` float32 (a `[T, D]` input gets a batch axis)."""
        if not isinstance(features, torch.Tensor):
            raise ValueError(f"`features` must be a torch.Tensor [B, T, D], got {type(features).__name__}.")
        if features.dim() == 2:
            features = features[None]
        if features.dim() != 3 or features.shape[-1] != num_mel_bins:
            raise ValueError(
                f"`features` must have shape [B, T, {num_mel_bins}] (un-normalised log-mel), "
                f"got {tuple(features.shape)}."
            )
        if features.shape[0] < 1:
            raise ValueError("`features` is an empty batch (B = 0); pass at least one sequence of frames.")
        if features.shape[1] < 1:
            raise ValueError("`features` has no frames (T = 0).")
        if not features.is_floating_point():
            raise ValueError(f"`features` must be floating point, got dtype {features.dtype}.")
        features = features.float()
        if not bool(torch.isfinite(features).all()):
            raise ValueError("`features` contains NaN or Inf values; the vocoder cannot invert them.")
        log_mel = getattr(self, "log_mel", None)  # mel vocoders only (a VAE's latents have no such scale)
        if log_mel is not None:
            scale = 1.0 if log_mel == "log" else math.log(10.0)
            limit = MAX_LOG_MEL / scale
            peak = float(features.max())
            if peak > limit:
                raise ValueError(
                    f"`features` reach a log-mel value of {peak:.1f}, far above any recording's (full-scale audio "
                    f"stays below about {FULL_SCALE_LOG_MEL / scale:.1f}; the limit is {limit:.1f}): they would invert "
                    "to noise or overflow. Pass log-mel features (the logarithm of the mel magnitudes, not the "
                    "magnitudes); for generated speech, a smaller `guidance_scale` (1 to 3) keeps them in range."
                )
        return features

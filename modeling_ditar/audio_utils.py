"""Audio helpers shared by the feature extractor and the vocoders: loading, validation, mono downmix, resampling and the
mel filter bank.

Everything here is pure torch/numpy (plus `soundfile` for reading files); no torchaudio, librosa or scipy.
"""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import torch
from transformers.audio_utils import mel_filter_bank

__all__ = [
    "load_audio",
    "unpack_audio",
    "resample_audio",
    "to_mono_float32",
    "validate_sampling_rate",
    "ditar_mel_filter_bank",
    "soft_limit",
]

# A clip with more channels than this along its first axis is read as [samples, channels] instead.
MAX_CHANNELS = 8
# A clip whose peak absolute value is below this is "silence" and is rejected where audio content is needed.
SILENCE_PEAK = 1e-6
# Float audio is full scale at 1.0; a float clip peaking above this (12 dB over full scale) is not a recording but
# integer PCM converted with `.astype(float)` and not scaled (peaks in the thousands), and is refused: taken as it is,
# it would give features far outside anything the model saw (short, clipped speech).
MAX_FLOAT_PEAK = 4.0
# Sampling rates accepted for audio (telephone-band 2 kHz recordings to studio 768 kHz).
MIN_AUDIO_RATE = 2000
MAX_AUDIO_RATE = 768000
# Above this many kernel elements the polyphase resampler falls back to direct (per-output-sample) evaluation.
_MAX_POLYPHASE_KERNEL = 1 << 22
# Kernels up to this many elements (2 MB of float64: those of the usual rates, 1.3 MB or less) are kept for the next
# call; larger ones, of rare rate ratios (up to 32 MB each, 16 of them could pin half a gigabyte in a server), are made
# for each call.
_MAX_CACHED_POLYPHASE_KERNEL = 1 << 18


def validate_sampling_rate(sampling_rate, name: str = "sampling_rate") -> int:
    """Returns `sampling_rate` as a positive int, or raises a `ValueError` that names `name`."""
    if sampling_rate is None:
        raise ValueError(
            f"`{name}` is required: pass the sampling rate (in Hz) of the audio so that it can be resampled correctly."
        )
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, float, np.integer, np.floating)):
        raise ValueError(f"`{name}` must be a positive integer (Hz), got {sampling_rate!r}.")
    if not math.isfinite(float(sampling_rate)) or float(sampling_rate) != int(sampling_rate) or int(sampling_rate) < 1:
        raise ValueError(f"`{name}` must be a positive integer (Hz), got {sampling_rate!r}.")
    if not MIN_AUDIO_RATE <= int(sampling_rate) <= MAX_AUDIO_RATE:
        # e.g. a duration or a frame rate passed by mistake: the audio would be resampled to nonsense
        raise ValueError(
            f"`{name}`={int(sampling_rate)} Hz is not an audio sampling rate (audio is recorded at {MIN_AUDIO_RATE} "
            f"to {MAX_AUDIO_RATE} Hz, speech usually at 16000 to 48000); pass the rate the samples were recorded at."
        )
    return int(sampling_rate)


def _integer_scale(dtype: torch.dtype) -> float:
    return {torch.int8: 128.0, torch.int16: 32768.0, torch.int32: 2147483648.0, torch.int64: 9223372036854775808.0}[
        dtype
    ]


def to_mono_float32(audio, *, check_silence: bool = True, name: str = "audio") -> torch.Tensor:
    """Converts one clip to a 1-D float32 torch tensor in [-1, 1] (for integer input) and validates it.

    Accepts a numpy array, a torch tensor or a list of numbers, shaped `[samples]`, `[channels, samples]`
    (channels <= 8) or `[samples, channels]`; leading/trailing axes of size 1 are squeezed. Integer PCM
    (int8/int16/int32/int64, uint8) is scaled to [-1, 1] (int32/int64 arrays whose values all fit 16 bits as 16-bit
    PCM); channels are averaged. Raises `ValueError` (naming `name`)
    for empty audio, NaN/Inf samples, float samples peaking above `MAX_FLOAT_PEAK` (integer PCM passed as float), an
    unsupported shape or dtype and, when `check_silence`, for audio whose peak is below 1e-6.
    """
    if isinstance(audio, (list, tuple)):
        try:
            audio = np.asarray(audio, dtype=np.float32)
        except (TypeError, ValueError) as err:
            raise ValueError(f"`{name}` must be a numeric array of samples; could not convert it: {err}") from err
    if isinstance(audio, np.ndarray):
        if audio.dtype == np.uint8:
            audio = (audio.astype(np.float32) - 128.0) / 128.0
        elif audio.dtype == np.uint16:
            audio = (audio.astype(np.float32) - 32768.0) / 32768.0
        if audio.dtype.kind not in "iuf":
            raise ValueError(f"`{name}` must hold integer PCM or floating-point samples, got dtype {audio.dtype}.")
        native = audio.dtype.newbyteorder("=")
        if audio.dtype != native or not audio.flags.writeable:
            # torch takes neither big-endian samples (raw PCM, some file readers) nor read-only buffers: a native copy
            audio = audio.astype(native)
        tensor = torch.from_numpy(np.ascontiguousarray(audio))
    elif isinstance(audio, torch.Tensor):
        tensor = audio.detach()
    else:
        raise ValueError(
            f"`{name}` must be a numpy array, a torch tensor or a list of samples, got {type(audio).__name__}."
        )

    float_input = tensor.is_floating_point()
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(f"`{name}` must hold integer PCM or real floating-point samples, got dtype {tensor.dtype}.")
    if tensor.dtype == torch.uint8:
        tensor = (tensor.float() - 128.0) / 128.0
    elif not tensor.is_floating_point():
        scale = _integer_scale(tensor.dtype)
        if tensor.dtype in (torch.int32, torch.int64) and tensor.numel() and int(tensor.abs().max()) <= 32768:
            # 16-bit samples in a wide integer type (numpy's default int after `astype(int)`): read as 16-bit PCM.
            # At full 32- or 64-bit scale such values would be below -96 dBFS, silence, which no recording means.
            scale = 32768.0
        tensor = (tensor.double() / scale).float()
    else:
        tensor = tensor.float()

    if tensor.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(tensor.shape)}); it must contain at least one sample.")

    # squeeze axes of size 1 beyond the two we understand, e.g. [1, 1, T] or [T, 1, 1]
    while tensor.dim() > 2 and 1 in tensor.shape:
        tensor = tensor.squeeze(tensor.shape.index(1))
    if tensor.dim() == 0:
        tensor = tensor.reshape(1)
    if tensor.dim() == 2:
        rows, cols = tensor.shape
        if rows <= MAX_CHANNELS and (rows <= cols or cols > MAX_CHANNELS):
            tensor = tensor.mean(dim=0)  # [channels, samples]
        elif cols <= MAX_CHANNELS:
            tensor = tensor.mean(dim=1)  # [samples, channels]
        else:
            raise ValueError(
                f"`{name}` has shape {tuple(tensor.shape)}: a 2-D clip must be [channels, samples] or "
                f"[samples, channels] with at most {MAX_CHANNELS} channels. Pass a batch of clips as a list."
            )
    elif tensor.dim() != 1:
        raise ValueError(
            f"`{name}` has shape {tuple(tensor.shape)}; expected [samples], [channels, samples] or [samples, channels]."
        )

    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(tensor).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise ValueError(
            f"`{name}` contains non-finite samples ({n_nan} NaN, {n_inf} Inf); clean or re-decode the audio."
        )
    if float_input:
        peak = float(tensor.abs().max())
        if peak > MAX_FLOAT_PEAK:
            raise ValueError(
                f"`{name}` holds float samples peaking at {peak:.6g}, far above full scale (1.0): this looks like "
                "integer PCM converted to float without scaling. Pass the integer array as it is (int16 is scaled "
                "by 1/32768), or divide the floats by 32768 (16-bit) / 2147483648 (32-bit)."
            )
    if check_silence:
        peak = float(tensor.abs().max())
        # around the clip's mean, so that a constant offset (a DC level with no sound on it) counts as the silence it is
        swing = float((tensor - tensor.double().mean().float()).abs().max())
        if peak < SILENCE_PEAK or swing < SILENCE_PEAK:
            raise ValueError(
                f"`{name}` is silent (peak absolute amplitude {peak:.3g}, {swing:.3g} around its mean, < "
                f"{SILENCE_PEAK:g} after downmixing to mono); it must contain audible speech."
            )
    return tensor.contiguous()


# ----------------------------------------------------------------------------------------------------------------------
# resampling: windowed sinc (Hann window) at gcd-reduced rates
# ----------------------------------------------------------------------------------------------------------------------


def _sinc_kernel(t: torch.Tensor, cutoff: float, zeros: int) -> torch.Tensor:
    """Low-pass kernel h(t) = cutoff * sinc(cutoff * t) * hann, t in input samples, cutoff relative to input Nyquist."""
    half_width = zeros / cutoff
    window = torch.where(
        t.abs() <= half_width, torch.cos(0.5 * math.pi * t / half_width) ** 2, torch.zeros((), dtype=t.dtype)
    )
    return cutoff * torch.sinc(cutoff * t) * window


def _polyphase_kernel(orig: int, new: int, zeros: int, rolloff: float) -> tuple[torch.Tensor, int]:
    """Kernel [new, 1, orig + 2 * width] in float64 for `conv1d(stride=orig)`; phase j holds output sample q*new + j."""
    cutoff = min(1.0, new / orig) * rolloff
    width = math.ceil(zeros / cutoff)
    taps = torch.arange(orig + 2 * width, dtype=torch.float64)  # tap i reads input sample q*orig + i - width
    phase = torch.arange(new, dtype=torch.float64)[:, None] * (orig / new)  # output position within the block
    kernel = _sinc_kernel(phase + width - taps[None, :], cutoff, zeros)
    return kernel[:, None, :], width


_cached_polyphase_kernel = lru_cache(maxsize=16)(_polyphase_kernel)


def resample_audio(
    waveform: torch.Tensor,
    orig_sampling_rate: int,
    target_sampling_rate: int,
    *,
    zeros: int = 16,
    rolloff: float = 0.945,
) -> torch.Tensor:
    """Band-limited resampling of `[..., samples]` from `orig_sampling_rate` to `target_sampling_rate`.

    A Hann-windowed sinc low-pass (cut-off `rolloff` x the lower Nyquist, `zeros` zero crossings on each side) is
    evaluated at the gcd-reduced ratio up/down, as a polyphase `conv1d`. Output sample k sits at input time k * orig /
    target, so sample 0 is aligned, and the output has `ceil(samples * target / orig)` samples. Samples outside the clip
    are zero. Ratios whose reduced factors are huge (e.g. 44101 -> 24000) are evaluated output sample by output sample
    instead.
    """
    orig = validate_sampling_rate(orig_sampling_rate, "orig_sampling_rate")
    target = validate_sampling_rate(target_sampling_rate, "target_sampling_rate")
    if orig == target:
        return waveform
    if zeros < 1 or not 0.0 < rolloff <= 1.0:
        raise ValueError(f"`zeros` must be >= 1 and `rolloff` in (0, 1], got zeros={zeros}, rolloff={rolloff}.")
    g = math.gcd(orig, target)
    orig, new = orig // g, target // g
    dtype = waveform.dtype if waveform.is_floating_point() else torch.float32
    lead = waveform.shape[:-1]
    x = waveform.reshape(-1, waveform.shape[-1]).to(torch.float64)
    length = x.shape[-1]
    out_len = math.ceil(length * new / orig)
    cutoff = min(1.0, new / orig) * rolloff

    size = new * (orig + 2 * math.ceil(zeros / cutoff))
    if size <= _MAX_POLYPHASE_KERNEL:
        make = _cached_polyphase_kernel if size <= _MAX_CACHED_POLYPHASE_KERNEL else _polyphase_kernel
        kernel, width = make(orig, new, zeros, rolloff)
        kernel = kernel.to(x.device)
        blocks = math.ceil(out_len / new)
        needed = (blocks - 1) * orig + kernel.shape[-1]  # padded input length the conv must see
        x_pad = torch.nn.functional.pad(x, (width, max(0, needed - length - width)))
        y = torch.nn.functional.conv1d(x_pad[:, None, :], kernel, stride=orig)  # [rows, new, blocks]
        y = y.transpose(1, 2).reshape(x.shape[0], -1)[:, :out_len]
    else:
        y = _resample_direct(x, orig, new, out_len, cutoff, zeros)
    return y.to(dtype).reshape(*lead, out_len)


def _resample_direct(x: torch.Tensor, orig: int, new: int, out_len: int, cutoff: float, zeros: int) -> torch.Tensor:
    """Evaluates the same windowed-sinc filter at every output position (slow path for unwieldy rate ratios)."""
    width = math.ceil(zeros / cutoff)
    length = x.shape[-1]
    x_pad = torch.nn.functional.pad(x, (width + 1, width + 1))
    offsets = torch.arange(-width, width + 1, device=x.device)
    out = []
    for start in range(0, out_len, 16384):
        k = torch.arange(start, min(out_len, start + 16384), device=x.device, dtype=torch.float64)
        pos = k * (orig / new)  # output sample position in input samples
        base = torch.floor(pos).long()
        idx = base[:, None] + offsets[None, :]  # [chunk, taps]
        weights = _sinc_kernel(pos[:, None] - idx.to(torch.float64), cutoff, zeros)
        gathered = x_pad[:, (idx + width + 1).clamp(0, length + 2 * width + 1)]  # [rows, chunk, taps]
        out.append((gathered * weights[None]).sum(-1))
    return torch.cat(out, dim=-1)


# ----------------------------------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------------------------------


def refuse_audio_rate_pair(audio, name: str = "prompt_audio") -> None:
    """A 2-tuple or 2-list of an array and a number is an audio clip with its rate (`(array, sr)`, or Gradio's
    `(sr, array)`), which would otherwise read as two clips, one of them a number: refused with the way to pass it."""
    if not isinstance(audio, (list, tuple)) or len(audio) != 2:
        return
    numbers = [isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in audio]
    arrays = [isinstance(v, (np.ndarray, torch.Tensor)) and v.ndim >= 1 for v in audio]
    if sorted(numbers) != [False, True] or not any(arrays):
        return
    rate = audio[numbers.index(True)]
    order = "(audio, rate)" if numbers[1] else "(rate, audio), as Gradio returns it"
    raise ValueError(
        f"{name} is a clip paired with its sampling rate {order}; pass the clip alone and the rate as "
        f"sampling_rate: {name}=audio, sampling_rate={rate!r}."
    )


def unpack_audio(audio, sampling_rate: int | None = None):
    """`(audio, sampling_rate)` for the audio inputs that carry their own rate, which then wins over `sampling_rate`:

    - a `datasets` Audio value, `{"array": ..., "sampling_rate": ...}` (its "path" is ignored), or the
      `{"raw": ..., "sampling_rate": ...}` dict that transformers' audio pipelines take (without its own
      "sampling_rate", the dict's array is at `sampling_rate`);
    - an undecoded `datasets` value, `{"path": ..., "bytes": ...}`: the bytes are decoded, else the path is returned;
    - a torchcodec `AudioDecoder` (what `datasets` 4 returns): all its samples, channels averaged.

    Anything else (a path, an array, a tensor) comes back as it is, with `sampling_rate`."""
    decoders = sys.modules.get("torchcodec.decoders")  # an AudioDecoder means torchcodec is already imported
    if decoders is not None and isinstance(audio, getattr(decoders, "AudioDecoder", ())):
        samples = audio.get_all_samples()
        return samples.data.float().mean(0), int(samples.sample_rate)
    if not isinstance(audio, Mapping):
        return audio, sampling_rate
    array = audio.get("array", audio.get("raw"))
    if array is not None:
        rate = audio.get("sampling_rate", sampling_rate)
        if rate is None:
            raise ValueError(
                "an audio dict with an array needs its 'sampling_rate' (Hz), as a `datasets` Audio value has, or "
                f"pass sampling_rate=...; got keys {sorted(audio)}."
            )
        return array, rate
    if audio.get("bytes") is not None:
        import soundfile

        try:
            data, rate = soundfile.read(io.BytesIO(audio["bytes"]), dtype="float32", always_2d=True)
        except Exception as err:  # soundfile's errors differ by failure; name the source instead
            raise ValueError(f"could not decode the audio dict's 'bytes': {err}") from err
        return data.T, int(rate)
    if audio.get("path") is not None:
        return audio["path"], sampling_rate
    raise ValueError(
        "an audio dict needs 'array' (or 'raw') and 'sampling_rate', as a `datasets` Audio value has, or 'bytes' or "
        f"'path'; got keys {sorted(audio)}."
    )


def load_audio(path_or_array, sampling_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Loads one clip as a mono float32 torch tensor and returns `(waveform, sampling_rate)`.

    Args:
        path_or_array: a path to an audio file readable by `soundfile` (wav, flac, ogg, ...), or an array/tensor of
            samples (any layout accepted by [`to_mono_float32`]).
        sampling_rate: the rate of the returned audio. A file is resampled to it (`None` keeps the file's own rate).
            An array is taken to be at this rate already, so it is required for arrays.

    Raises:
        FileNotFoundError: the path does not exist (the message names it).
        ValueError: the file cannot be decoded (the message names the path and the decoder's reason), or the audio is
            empty or has NaN/Inf samples, or an array was given without `sampling_rate`.
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        path = os.fspath(path_or_array)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Audio file not found: {path!r}")
        if os.path.isdir(path):
            raise ValueError(f"Could not read audio file {path!r}: it is a directory, not a file.")
        import soundfile

        try:
            data, file_rate = soundfile.read(path, dtype="float32", always_2d=True)  # [samples, channels]
        except Exception as err:  # soundfile raises LibsndfileError/RuntimeError/TypeError depending on the failure
            raise ValueError(f"Could not read audio file {path!r}: {err}") from err
        waveform = to_mono_float32(data.T, check_silence=False, name=f"audio file {path!r}")
        if sampling_rate is not None:
            target = validate_sampling_rate(sampling_rate)
            waveform = resample_audio(waveform, file_rate, target)
            file_rate = target
        return waveform, int(file_rate)

    rate = validate_sampling_rate(sampling_rate)
    return to_mono_float32(path_or_array, check_silence=False), rate


# ----------------------------------------------------------------------------------------------------------------------
# output level
# ----------------------------------------------------------------------------------------------------------------------

# Output peaks stay below -1 dBFS; samples below -6 dBFS pass unchanged.
LIMIT_CEILING = 0.89
LIMIT_KNEE = 0.5


def soft_limit(audio: torch.Tensor, knee: float = LIMIT_KNEE, ceiling: float = LIMIT_CEILING) -> torch.Tensor:
    """Sample-wise soft limiter: |x| <= knee passes unchanged, louder samples are bent smoothly towards `ceiling`,
    knee + (ceiling - knee) * tanh((|x| - knee) / (ceiling - knee)), which has slope 1 at the knee and never reaches
    the ceiling, so the output never clips. It holds no state and never raises a level (quiet speech is not pumped up),
    so chunks limited one by one join to the limited whole: streaming-safe, unlike a whole-utterance normalisation."""
    if not 0.0 < knee < ceiling:
        raise ValueError(f"soft_limit needs 0 < knee < ceiling, got knee={knee}, ceiling={ceiling}.")
    magnitude = audio.abs()
    over = magnitude > knee
    if not bool(over.any()):
        return audio
    span = ceiling - knee
    bent = knee + span * torch.tanh((magnitude - knee) / span)
    return torch.where(over, torch.sign(audio) * bent, audio)


# ----------------------------------------------------------------------------------------------------------------------
# mel filter bank (shared by the feature extractor and the Griffin-Lim vocoder so both use exactly the same one)
# ----------------------------------------------------------------------------------------------------------------------


def ditar_mel_filter_bank(
    sampling_rate: int,
    n_fft: int,
    num_mel_bins: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: str = "slaney",
    norm: str | None = "slaney",
) -> torch.Tensor:
    """Mel filter bank `[n_fft // 2 + 1, num_mel_bins]` (float32). The defaults (Slaney scale, Slaney area
    normalisation) are librosa's default; `mel_scale="htk", norm=None` is torchaudio's `MelSpectrogram` default."""
    filters = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=num_mel_bins,
        min_frequency=float(f_min),
        max_frequency=float(sampling_rate / 2 if f_max is None else f_max),
        sampling_rate=sampling_rate,
        norm=norm,
        mel_scale=mel_scale,
        dtype=np.float32,
    )
    return torch.from_numpy(np.ascontiguousarray(filters, dtype=np.float32))

"""GAN discriminators of vocoder training: multi-period (HiFi-GAN) and multi-resolution spectrogram (UnivNet, Vocos).

Shapes: B batch, S samples. Every discriminator maps `audio [B, S]` to `(logits, features)`: `logits` is a list with
one `[B, N_k]` tensor per sub-discriminator k (a score per time-frequency patch), `features` a list with, per
sub-discriminator, the list of its hidden activations (what the feature-matching loss compares).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["MultiPeriodDiscriminator", "MultiResolutionDiscriminator", "VocoderDiscriminators"]

LEAKY_SLOPE = 0.1  # HiFi-GAN's and UnivNet's


def _check_audio(audio: torch.Tensor) -> torch.Tensor:
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
        shape = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise ValueError(f"discriminators take `audio` of shape [B, S], got {shape}")
    return audio


def conv_stack_scores(convs: nn.ModuleList, post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list]:
    """A sub-discriminator's layers: leaky-ReLU convolutions, then the score map; returns the flattened scores [B, *]
    and every layer's output (the features that feature matching compares)."""
    features = []
    for conv in convs:
        x = nn.functional.leaky_relu(conv(x), LEAKY_SLOPE)
        features.append(x)
    x = post(x)
    features.append(x)
    return x.flatten(1), features


class PeriodDiscriminator(nn.Module):
    """One period p of the multi-period discriminator: the waveform folded into `[B, 1, S / p, p]` (sample t at row
    t // p, column t % p), then 2-D convolutions whose kernels span rows only, so each column (samples p apart) is
    judged on its own: periodic structure of period p is what it sees."""

    def __init__(self, period: int, channels: list[int], kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = int(period)
        pad = (kernel_size - 1) // 2
        widths = [1, *channels]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (kernel_size, 1), (stride, 1), padding=(pad, 0)))
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        # one more layer at stride 1, as in HiFi-GAN, then a 1-channel score map
        self.convs.append(weight_norm(nn.Conv2d(widths[-1], widths[-1], (kernel_size, 1), 1, padding=(pad, 0))))
        self.post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, samples = audio.shape
        extra = -samples % self.period
        if extra:  # reflect needs extra < samples; constant padding covers clips shorter than one period
            mode = "reflect" if extra < samples else "constant"
            audio = nn.functional.pad(audio[:, None], (0, extra), mode=mode)[:, 0]
        x = audio.reshape(batch, 1, -1, self.period)
        return conv_stack_scores(self.convs, self.post, x)


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN's multi-period discriminator (MPD).

    Args:
        periods (`list[int]`, defaults to `[2, 3, 5, 7, 11]`): one sub-discriminator per period (primes, so that the
            periods overlap little).
        channels (`list[int]`, defaults to `[32, 128, 512, 1024]`): widths of the strided layers (HiFi-GAN's); smaller
            lists make a cheaper discriminator for CPU runs.
    """

    def __init__(self, periods: list[int] | None = None, channels: list[int] | None = None):
        super().__init__()
        periods = [2, 3, 5, 7, 11] if periods is None else [int(p) for p in periods]
        channels = [32, 128, 512, 1024] if channels is None else [int(c) for c in channels]
        if not periods or min(periods) < 1:
            raise ValueError(f"`periods` must be a non-empty list of positive integers, got {periods}")
        if not channels or min(channels) < 1:
            raise ValueError(f"`channels` must be a non-empty list of positive integers, got {channels}")
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """`audio [B, S]` -> (logits: one `[B, N_p]` per period, features: per period, its hidden activations)."""
        audio = _check_audio(audio)
        outputs = [d(audio) for d in self.discriminators]
        return [o[0] for o in outputs], [o[1] for o in outputs]


class ResolutionDiscriminator(nn.Module):
    """One STFT resolution of the multi-resolution discriminator: the linear magnitude `[B, 1, frames, bins]` of an
    STFT with `(n_fft, hop_length, win_length)`, then 2-D convolutions that halve the frequency axis three times."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, channels: int = 32):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = int(n_fft), int(hop_length), int(win_length)
        if not 0 < self.hop_length <= self.win_length <= self.n_fft:
            raise ValueError(f"need 0 < hop_length <= win_length <= n_fft, got {(n_fft, hop_length, win_length)}")
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, channels, (3, 9), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))),
            ]
        )
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        pad_mode = "reflect" if audio.shape[-1] > self.n_fft // 2 else "constant"
        spec = torch.stft(
            audio.float(),
            self.n_fft,
            self.hop_length,
            self.win_length,
            window=self.window,
            center=True,
            pad_mode=pad_mode,
            return_complex=True,
        )  # [B, n_fft // 2 + 1, frames]
        x = spec.abs().transpose(1, 2)[:, None]  # [B, 1, frames, bins]
        return conv_stack_scores(self.convs, self.post, x)


class MultiResolutionDiscriminator(nn.Module):
    """The multi-resolution (spectrogram) discriminator (MRD) of UnivNet, which Vocos trains with.

    Args:
        resolutions (`list[list[int]]`, defaults to `[[512, 128, 512], [1024, 256, 1024], [2048, 512, 2048]]`):
            `(n_fft, hop_length, win_length)` of each sub-discriminator: short windows judge timing, long ones
            harmonics.
        channels (`int`, defaults to 32): width of every layer.
    """

    def __init__(self, resolutions: list[list[int]] | None = None, channels: int = 32):
        super().__init__()
        if resolutions is None:
            resolutions = [[512, 128, 512], [1024, 256, 1024], [2048, 512, 2048]]
        if not resolutions or any(len(r) != 3 for r in resolutions):
            raise ValueError(
                f"`resolutions` must be a non-empty list of [n_fft, hop_length, win_length], got {resolutions}"
            )
        self.discriminators = nn.ModuleList(ResolutionDiscriminator(*r, channels=int(channels)) for r in resolutions)

    def forward(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        """`audio [B, S]` -> (logits: one `[B, N_r]` per resolution, features: per resolution, its activations)."""
        audio = _check_audio(audio)
        outputs = [d(audio) for d in self.discriminators]
        return [o[0] for o in outputs], [o[1] for o in outputs]


class VocoderDiscriminators(nn.Module):
    """Both discriminators as one module, so that training prepares (and, with several processes, synchronises) one
    model and one optimizer for them. `forward(audio [B, S])` returns `{"mpd": (logits, features), "mrd": (...)}`."""

    def __init__(
        self,
        periods: list[int] | None = None,
        mpd_channels: list[int] | None = None,
        resolutions: list[list[int]] | None = None,
        mrd_channels: int = 32,
    ):
        super().__init__()
        self.mpd = MultiPeriodDiscriminator(periods, mpd_channels)
        self.mrd = MultiResolutionDiscriminator(resolutions, mrd_channels)

    def forward(self, audio: torch.Tensor) -> dict[str, tuple[list[torch.Tensor], list[list[torch.Tensor]]]]:
        return {"mpd": self.mpd(audio), "mrd": self.mrd(audio)}

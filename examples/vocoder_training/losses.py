"""Losses of vocoder training (HiFi-GAN, Vocos, APNet): adversarial (hinge or least squares), feature matching, L1
log-mel, an optional multi-resolution STFT loss, and direct supervision of the predicted STFT frames (log-magnitude and
anti-wrapping phase losses) for a generator that predicts them, such as Vocos.

Shapes: B batch, S samples, T frames, D mel bins. Discriminator outputs are lists with one entry per sub-discriminator
(see `discriminators.py`); every adversarial and feature-matching loss is the mean over sub-discriminators, so that
its scale does not depend on how many there are.
"""

from __future__ import annotations

import torch

__all__ = [
    "MelLoss",
    "MultiResolutionSTFTLoss",
    "SpectrumLoss",
    "anti_wrapped",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
]

ADVERSARIAL_KINDS = ("hinge", "lsgan")


def _check_kind(kind: str) -> str:
    if kind not in ADVERSARIAL_KINDS:
        raise ValueError(f"adversarial loss must be one of {ADVERSARIAL_KINDS}, got {kind!r}")
    return kind


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    """The discriminators' loss on logits of real and generated audio. Hinge (Vocos): `relu(1 - D(y)) +
    relu(1 + D(G(x)))`; least squares (HiFi-GAN): `(1 - D(y))^2 + D(G(x))^2`. Means over patches, then over
    sub-discriminators."""
    _check_kind(kind)
    terms = []
    for r, f in zip(real, fake, strict=True):
        if kind == "hinge":
            terms.append(torch.relu(1 - r).mean() + torch.relu(1 + f).mean())
        else:
            terms.append((1 - r).square().mean() + f.square().mean())
    return torch.stack(terms).mean()


def generator_adversarial_loss(fake: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    """The generator's adversarial loss on the logits of its audio: `relu(1 - D(G(x)))` (hinge) or
    `(1 - D(G(x)))^2` (least squares), means over patches, then over sub-discriminators."""
    _check_kind(kind)
    terms = [torch.relu(1 - f).mean() if kind == "hinge" else (1 - f).square().mean() for f in fake]
    return torch.stack(terms).mean()


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Per sub-discriminator, the sum over its layers of the mean absolute difference between the activations on real
    and on generated audio; then the mean over sub-discriminators. The real activations are targets (no gradient)."""
    terms = []
    for layers_real, layers_fake in zip(real, fake, strict=True):
        terms.append(sum((r.detach() - f).abs().mean() for r, f in zip(layers_real, layers_fake, strict=True)))
    return torch.stack(terms).mean()


class MelLoss(torch.nn.Module):
    """L1 distance between log-mel spectrograms, computed with the feature extractor the vocoder is trained for (so
    the loss looks at exactly what the vocoder is given).

    `forward(audio [B, S], target_log_mel [B, T, D])`: `target_log_mel` is `compute_log_mel` of the real audio (the
    vocoder's input, reused rather than recomputed); the audio must have the same length as the real audio.
    """

    def __init__(self, feature_extractor):
        super().__init__()
        self.feature_extractor = feature_extractor

    def forward(self, audio: torch.Tensor, target_log_mel: torch.Tensor) -> torch.Tensor:
        log_mel = self.feature_extractor.compute_log_mel(audio)
        if log_mel.shape != target_log_mel.shape:
            raise ValueError(
                f"log-mel of the audio has shape {tuple(log_mel.shape)} but the target has "
                f"{tuple(target_log_mel.shape)}: the audio must have as many samples as the clip the target came from"
            )
        return (log_mel - target_log_mel).abs().mean()


class MultiResolutionSTFTLoss(torch.nn.Module):
    """Spectral convergence plus L1 log-magnitude distance, averaged over STFT resolutions (Parallel WaveGAN's auxiliary
    loss). `forward(audio [B, S], target [B, S])`.

    Args:
        resolutions (`list[list[int]]`): `(n_fft, hop_length, win_length)` of each STFT.
        floor (`float`, defaults to 1e-5): magnitudes are clamped to this before the log.
    """

    def __init__(self, resolutions: list[list[int]] | None = None, floor: float = 1e-5):
        super().__init__()
        self.resolutions = [tuple(int(v) for v in r) for r in (resolutions or [[512, 128, 512], [1024, 256, 1024]])]
        self.floor = float(floor)

    def _magnitude(self, audio: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
        window = torch.hann_window(win, device=audio.device, dtype=torch.float32)
        spec = torch.stft(audio.float(), n_fft, hop, win, window=window, center=True, return_complex=True)
        return spec.abs().clamp(min=self.floor)

    def forward(self, audio: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if audio.shape != target.shape:
            raise ValueError(f"audio {tuple(audio.shape)} and target {tuple(target.shape)} must have the same shape")
        total = audio.new_zeros(())
        for n_fft, hop, win in self.resolutions:
            pred, true = self._magnitude(audio, n_fft, hop, win), self._magnitude(target, n_fft, hop, win)
            total = total + convergence_log_l1(pred, true, self.floor)
        return total / len(self.resolutions)


def convergence_log_l1(pred: torch.Tensor, true: torch.Tensor, floor: float, per_clip: bool = False) -> torch.Tensor:
    """Parallel WaveGAN's STFT loss on magnitudes `[B, F, T]`: spectral convergence (the relative error of the linear
    magnitudes, led by the loud bins; over the whole batch, or per clip and averaged) plus the mean absolute
    log-magnitude error (magnitudes clamped to `floor` before the log)."""
    dim = (-2, -1) if per_clip else None
    convergence = torch.linalg.vector_norm(true - pred, dim=dim) / torch.linalg.vector_norm(true, dim=dim).clamp(
        min=floor
    )
    log_error = (pred.clamp(min=floor).log() - true.clamp(min=floor).log()).abs().mean()
    return convergence.mean() + log_error


def anti_wrapped(difference: torch.Tensor) -> torch.Tensor:
    """`|x - 2 pi round(x / 2 pi)|`: the distance between two phases on the circle (APNet's anti-wrapping function),
    so that a phase error of 2 pi costs nothing."""
    return (difference - 2 * torch.pi * torch.round(difference / (2 * torch.pi))).abs()


class SpectrumLoss(torch.nn.Module):
    """Supervises a vocoder's predicted STFT frames with the real audio's STFT at the same framing (Ai and Ling, 2023,
    "APNet"): a mean squared log-magnitude error, and the anti-wrapped errors of the phase itself (instantaneous
    phase), of its difference across frequency (group delay) and across time (instantaneous frequency).

    The phase losses are what a generator trained on magnitudes alone (mel, STFT and adversarial losses) never sees:
    without them it must find a consistent phase by itself, which is what GAN training is slow at.

    Args:
        n_fft, hop_length, win_length (`int`): the vocoder's inverse-STFT framing; the target STFT is centred with a
            periodic Hann window, so frame t is centred on sample `t * hop_length`, as the vocoder's frames are.
        floor (`float`, defaults to 1e-5): magnitudes are clamped to this before the log.

        magnitude_loss (`str`, defaults to `"log_mse"`): APNet's mean squared log-magnitude error, or
            `"convergence_log_l1"`: spectral convergence (the relative error of the linear magnitudes, which the loud
            bins lead) plus the mean absolute log-magnitude error, as Parallel WaveGAN's STFT loss.
        phase_terms (`list[str]`, defaults to all three): which phase terms to sum. The instantaneous phase itself is
            unpredictable where the recording's phase at its start is arbitrary (a steady sound's phase depends on when
            the clip began), so a generator that integrates its phase may leave it out.

    `forward(spectrum [B, F, T] complex, audio [B, S])` returns `(magnitude_loss, phase_loss)`, the phase loss being
    the sum of the chosen phase terms.
    """

    PHASE_TERMS = ("instantaneous", "group_delay", "frequency")
    MAGNITUDE_LOSSES = ("log_mse", "convergence_log_l1")

    def __init__(
        self,
        n_fft: int,
        hop_length: int,
        win_length: int | None = None,
        floor: float = 1e-5,
        phase_terms: list[str] | tuple[str, ...] = PHASE_TERMS,
        magnitude_loss: str = "log_mse",
    ):
        super().__init__()
        if magnitude_loss not in self.MAGNITUDE_LOSSES:
            raise ValueError(f"magnitude_loss must be one of {self.MAGNITUDE_LOSSES}, got {magnitude_loss!r}")
        self.magnitude_loss = magnitude_loss
        unknown = set(phase_terms) - set(self.PHASE_TERMS)
        if unknown or not phase_terms:
            raise ValueError(f"phase_terms must be a non-empty subset of {self.PHASE_TERMS}, got {list(phase_terms)}")
        self.phase_terms = tuple(phase_terms)
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self.win_length = int(win_length or n_fft)
        self.floor = float(floor)

    def target(self, audio: torch.Tensor) -> torch.Tensor:
        window = torch.hann_window(self.win_length, device=audio.device, dtype=torch.float32)
        return torch.stft(
            audio.float(), self.n_fft, self.hop_length, self.win_length, window=window, center=True, return_complex=True
        )

    def forward(self, spectrum: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        true = self.target(audio)
        if spectrum.shape != true.shape:
            raise ValueError(
                f"predicted STFT frames {tuple(spectrum.shape)} do not match the audio's STFT {tuple(true.shape)}: "
                "the vocoder's n_fft and hop must be the loss's, and the audio the clip the features came from"
            )
        pred_magnitude, true_magnitude = spectrum.abs(), true.abs()
        if self.magnitude_loss == "log_mse":
            log_pred = pred_magnitude.clamp(min=self.floor).log()
            magnitude = (log_pred - true_magnitude.clamp(min=self.floor).log()).square().mean()
        else:
            magnitude = convergence_log_l1(pred_magnitude, true_magnitude, self.floor, per_clip=True)
        phase_pred, phase_true = spectrum.angle(), true.angle()
        terms = {
            "instantaneous": lambda: anti_wrapped(phase_pred - phase_true).mean(),
            "group_delay": lambda: anti_wrapped(phase_pred.diff(dim=-2) - phase_true.diff(dim=-2)).mean(),
            "frequency": lambda: anti_wrapped(phase_pred.diff(dim=-1) - phase_true.diff(dim=-1)).mean(),
        }
        return magnitude, sum(terms[name]() for name in self.phase_terms)

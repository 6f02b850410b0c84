"""Phase from STFT magnitude by phase-gradient integration (Průša, Balazs and Søndergaard, "A Noniterative Method for
Reconstruction of Phase From STFT Magnitude", IEEE/ACM TASLP 2017; frame by frame as in Průša and Holighaus, "Phase
Vocoder Done Right", EUSIPCO 2017).

Shapes: B batch, F frequency bins (n_fft // 2 + 1, or the first bins only), T frames.

For a Gaussian window exp(-pi t^2 / lambda) the STFT phase phi and the log-magnitude s are tied (phase referenced to
the window centre, time x in samples, frequency w in cycles per sample):

    d phi / d x = (1 / lambda) d s / d w + 2 pi w        (instantaneous frequency)
    d phi / d w = -lambda d s / d x                       (local group delay)

A Hann window of L samples behaves like lambda = 0.25645 L^2. Each frame's phase is then built from the previous one:
the bins at spectral peaks advance by the instantaneous frequency over one hop (trapezoid rule), and every other bin
takes its peak's phase plus the integral of the group-delay term across frequency, from the peak down the slope it sits
on. That keeps the partials of voiced speech coherent across the bins of one peak and across frames, which random or
Griffin-Lim phases do not. The heap of the paper, which orders the whole integration by magnitude, is replaced by this
per-frame peak ownership so that the work is a few vectorised operations per frame.

Bins more than `tolerance_db` below a reference (by default their frame's loudest bin) carry noise; they keep the
time-integrated phase.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["HANN_GAUSSIAN_LAMBDA", "phase_gradient_phase", "strong_bins"]

#: lambda / L^2 of the Gaussian that best matches a Hann window of L samples (Průša et al. 2017)
HANN_GAUSSIAN_LAMBDA = 0.25645


def _peak_owners(magnitude: torch.Tensor, strong: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For frames `magnitude [B, F, T]`: the index of the spectral peak each bin belongs to (the peak at the top of
    the slope the bin is on) `[B, F, T]`, and whether each frame has any peak `[B, T]`. Peaks are local maxima among
    the `strong` bins."""
    bins = magnitude.shape[1]
    index = torch.arange(bins, device=magnitude.device)[None, :, None].expand_as(magnitude)
    left = torch.nn.functional.pad(magnitude[:, :-1], (0, 0, 1, 0), value=-math.inf)
    right = torch.nn.functional.pad(magnitude[:, 1:], (0, 0, 0, 1), value=-math.inf)
    is_peak = (magnitude >= left) & (magnitude > right) & strong
    previous_peak = torch.cummax(torch.where(is_peak, index, -1), dim=1).values  # last peak at or below each bin
    next_peak = torch.where(is_peak, index, bins).flip(1).cummin(dim=1).values.flip(1)  # first peak at or above
    rising = right > magnitude  # the bin is on a slope that climbs towards higher frequencies
    owner = torch.where(rising, next_peak, previous_peak)
    owner = torch.where(owner < 0, next_peak, owner)
    owner = torch.where(owner >= bins, previous_peak, owner)
    return owner.clamp(0, bins - 1), is_peak.any(dim=1)


def strong_bins(magnitude: torch.Tensor, tolerance_db: float, reference: torch.Tensor | None = None) -> torch.Tensor:
    """`[B, F, T]` bool: the bins of `magnitude [B, F, T]` within `tolerance_db` of `reference [B, T]` (default: each
    frame's loudest bin). The phase of the others is not worth integrating: they carry noise."""
    batch, _, frames = magnitude.shape
    if reference is None:
        reference = magnitude.amax(dim=1)
    elif tuple(reference.shape) != (batch, frames):
        raise ValueError(f"reference must be [B, T] = [{batch}, {frames}], got shape {tuple(reference.shape)}.")
    return magnitude > reference.float()[:, None] * 10.0 ** (-tolerance_db / 20.0)


def phase_gradient_phase(
    magnitude: torch.Tensor,
    hop_length: int,
    n_fft: int,
    win_length: int,
    tolerance_db: float = 40.0,
    first_phase: torch.Tensor | None = None,
    reference: torch.Tensor | None = None,
) -> torch.Tensor:
    """Phase `[B, F, T]` (radians, `torch.stft`'s convention: referenced to the frame start, `center=True`) for the
    STFT magnitude `magnitude [B, F, T]` of a Hann-windowed STFT. F may be fewer than `n_fft // 2 + 1` bins (the
    lowest ones): each bin's phase depends only on its own and its neighbours' magnitudes.

    The first frame takes `first_phase [B, F]` (in this function's output convention), or 0. Frame n's phase depends
    on frame n - 1's phase and on the magnitudes of frames n - 1 to n + 1 (the time derivative is a centred
    difference; one-sided at the last frame). So a sequence can be continued piece by piece exactly: start the next
    piece one frame before its first new frame, with that frame's phase as `first_phase`.

    `reference [B, T]`: the magnitude each frame's `tolerance_db` is counted down from (default: the frame's own
    loudest bin). Bins below it keep the time-integrated phase."""
    if magnitude.dim() != 3:
        raise ValueError(f"magnitude must be [B, F, T], got shape {tuple(magnitude.shape)}.")
    batch, bins, frames = magnitude.shape
    if first_phase is not None and tuple(first_phase.shape) != (batch, bins):
        raise ValueError(f"first_phase must be [B, F] = [{batch}, {bins}], got shape {tuple(first_phase.shape)}.")
    if frames == 0 or bins == 0:
        return magnitude.new_zeros(magnitude.shape)
    magnitude = magnitude.float()
    lam = HANN_GAUSSIAN_LAMBDA * float(win_length) ** 2
    log_magnitude = torch.log(magnitude.clamp(min=1e-30))
    # derivatives of the log-magnitude per bin and per frame (centred differences, one-sided at the edges)
    d_bin = torch.gradient(log_magnitude, dim=1)[0] if bins > 1 else torch.zeros_like(log_magnitude)
    d_frame = torch.gradient(log_magnitude, dim=2)[0] if frames > 1 else torch.zeros_like(log_magnitude)
    centre_frequency = 2 * math.pi * torch.arange(bins, device=magnitude.device, dtype=torch.float32) / n_fft
    # phase advance over one hop (radians), and phase change from one bin to the next (radians)
    advance = hop_length * (n_fft / lam * d_bin + centre_frequency[:, None])
    across = -(lam / (hop_length * n_fft)) * d_frame
    # integral of `across` from bin 0 to each bin (trapezoid rule)
    steps = 0.5 * (across[:, 1:] + across[:, :-1])
    across_integral = torch.cat([across.new_zeros(batch, 1, frames), steps.cumsum(dim=1)], dim=1)  # [B, F, T]

    strong = strong_bins(magnitude, tolerance_db, reference)
    # everything that depends on the magnitudes alone, for all frames at once: which peak each bin follows and the
    # phase it adds to that peak's, and the time step of every bin
    owner, has_peak = _peak_owners(magnitude, strong)  # [B, F, T], [B, T]
    use_peak = strong & has_peak[:, None]
    from_owner = across_integral - across_integral.gather(1, owner)
    time_step = 0.5 * (advance[..., :-1] + advance[..., 1:])  # [B, F, T - 1]: frame n - 1 -> n

    # the recursion over frames, on small arrays: numpy's per-call cost is a fraction of torch's
    owner_np, use_np, from_owner_np = owner.cpu().numpy(), use_peak.cpu().numpy(), from_owner.cpu().numpy()
    time_step_np = time_step.cpu().numpy()
    # from the window-centre reference of the relations above to torch.stft's frame-start reference: + pi * bin
    shift_np = (np.pi * np.arange(bins, dtype=np.float32))[None]
    two_pi = np.float32(2 * math.pi)
    phase = np.empty((batch, bins, frames), dtype=np.float32)
    if first_phase is not None:
        previous = np.mod(first_phase.float().cpu().numpy() - shift_np, two_pi)
    else:  # the first frame's peaks start at phase 0 and the other bins take their peak's phase plus the integral
        previous = np.mod(np.where(use_np[..., 0], from_owner_np[..., 0], 0), two_pi).astype(np.float32)
    phase[..., 0] = previous
    for n in range(1, frames):
        from_time = previous + time_step_np[..., n - 1]
        from_peak = np.take_along_axis(from_time, owner_np[..., n], 1) + from_owner_np[..., n]
        # wrapped every frame so that float32 keeps its precision over long utterances
        previous = np.mod(np.where(use_np[..., n], from_peak, from_time), two_pi)
        phase[..., n] = previous
    phase = np.mod(phase + shift_np[..., None], two_pi)
    if first_phase is not None:
        phase[..., 0] = first_phase.float().cpu().numpy()
    return torch.from_numpy(phase).to(magnitude.device)

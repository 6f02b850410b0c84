"""Prompt spectrum matching: move generated speech's long-term average spectrum towards the voice prompt's.

A small model cloning a voice far from its training voices gets the words and the rhythm of the prompt's speaker
before it gets the colour of the voice: the long-term average spectrum of its speech (timbre, microphone and room
colouring) stays closer to its training voices than to the prompt. A speaker encoder hears that difference, and so
do listeners. This post-process measures the average log-mel spectrum of the prompt's speech frames and shifts the
generated speech frames part of the way towards it, bin by bin. Silent frames are left alone, so the noise floor
does not rise.

The estimate of the generated speech's own average is causal: a running mean over the frames generated so far,
which starts at the prompt's spectrum with the weight of `prior_frames` frames. So the first frames are hardly
touched, the correction grows as speech accumulates, and streaming gives exactly what one-shot generation gives
(the same frames in the same order make the same running sums).

Optionally (`spread_strength`) the spread of each bin over the speech frames is matched too: a small model's speech
can vary over time less, or more, than the voice it clones ("over-smoothed" speech in the words of statistical
parametric synthesis, whose global-variance compensation this is), so each bin's deviation from its running mean is
scaled by (the prompt's spread / the running spread) ** spread_strength, with the same causal running estimate.

It applies to log-mel features (the feature extractor's log-mel frames); a pipeline that generates VAE latents has no
spectrum to match.
"""

from __future__ import annotations

import torch


class PromptSpectrumMatch:
    """Shift consecutive generated log-mel frames ([T, D], de-normalised) towards the prompt's average spectrum.

    Call it on the frames of one utterance in order, all at once or patch by patch: the result is the same.

    Args:
        prompt_frames: the prompt's log-mel frames, [T, D], de-normalised (padding removed).
        strength: how far to move, in [0, 1]: 0 leaves the speech as generated, 1 moves its running average spectrum
            all the way to the prompt's.
        prior_frames: weight, in frames, of the starting estimate of the generated speech's average (the prompt's own):
            the correction reaches half its full size after about this many speech frames.
        spread_strength: in [0, 1], the exponent of the per-bin spread ratio (0: the spread is left as generated).
    """

    # the spread of a bin is never scaled by more than this factor either way
    MAX_SPREAD_RATIO = 2.0

    def __init__(
        self, prompt_frames: torch.Tensor, strength: float, prior_frames: float = 25.0, spread_strength: float = 0.0
    ):
        if prompt_frames.ndim != 2 or prompt_frames.shape[0] < 1:
            raise ValueError(f"prompt_frames must be [T, D] with T >= 1, got {tuple(prompt_frames.shape)}.")
        self.strength = float(strength)
        energy = prompt_frames.double().mean(-1)
        # a frame's loudness between the prompt's quiet frames (10th percentile: pauses) and its typical speech
        # (median) says how much of it is speech; prompts are 3-8 s of speech with short pauses
        self._silence = torch.quantile(energy, 0.1)
        self._speech = torch.quantile(energy, 0.5)
        weights = self.speech_weight(prompt_frames)
        if float(weights.sum()) == 0:  # a constant prompt (all frames equally loud): every frame counts alike
            weights = torch.ones_like(weights)
        frames = prompt_frames.double()
        self.target = (weights[:, None] * frames).sum(0) / weights.sum()
        self.target_variance = (weights[:, None] * (frames - self.target) ** 2).sum(0) / weights.sum()
        self._sum = prior_frames * self.target
        self._weight = torch.tensor(float(prior_frames), dtype=torch.float64)
        # the spread: running first and second moments of the (shifted) speech frames, started at the prompt's
        self.spread_strength = float(spread_strength)
        self._moment1 = prior_frames * self.target
        self._moment2 = prior_frames * (self.target_variance + self.target**2)

    def speech_weight(self, frames: torch.Tensor) -> torch.Tensor:
        span = (self._speech - self._silence).clamp_min(1e-3)
        return ((frames.double().mean(-1) - self._silence) / span).clamp(0.0, 1.0)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[0] == 0 or (self.strength == 0.0 and self.spread_strength == 0.0):
            return frames
        weights = self.speech_weight(frames)
        values = frames.double().to(self.target.device)
        sums = self._sum + torch.cumsum(weights[:, None] * values, dim=0)
        counts = self._weight + torch.cumsum(weights, dim=0)
        self._sum, self._weight = sums[-1], counts[-1]
        running = sums / counts[:, None]
        shifted = values + self.strength * weights[:, None] * (self.target - running)
        if self.spread_strength > 0.0:
            shifted = self._match_spread(shifted, weights, counts)
        return shifted.to(frames.dtype)

    def _match_spread(self, shifted: torch.Tensor, weights: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        moment1 = self._moment1 + torch.cumsum(weights[:, None] * shifted, dim=0)
        moment2 = self._moment2 + torch.cumsum(weights[:, None] * shifted**2, dim=0)
        self._moment1, self._moment2 = moment1[-1], moment2[-1]
        mean = moment1 / counts[:, None]
        variance = (moment2 / counts[:, None] - mean**2).clamp_min(1e-6)
        ratio = (self.target_variance.clamp_min(1e-6) / variance).sqrt()
        ratio = ratio.clamp(1 / self.MAX_SPREAD_RATIO, self.MAX_SPREAD_RATIO) ** self.spread_strength
        # each frame's deviation from the running mean scaled by the ratio, as far as the frame is speech
        return shifted + weights[:, None] * (ratio - 1) * (shifted - mean)


def prompt_spectrum_matches(
    model, prompt_features: torch.Tensor | None, prompt_attention_mask: torch.Tensor | None, settings, rows: int
) -> list[PromptSpectrumMatch | None]:
    """One matcher per row of a batch of `rows` texts (`prompt_features` [rows, T, D] normalised, as the processor
    makes them), or None where the resolved generation `settings` switch both matchings off or a row has no prompt.
    `model` de-normalises the features (`model.denormalize_features`)."""
    strength, spread = settings.prompt_spectrum_match, settings.prompt_spread_match
    if prompt_features is None or (strength == 0 and spread == 0):
        return [None] * rows
    matches = []
    for row in range(rows):
        frames = prompt_features.shape[1] if prompt_attention_mask is None else int(prompt_attention_mask[row].sum())
        if frames == 0:
            matches.append(None)
            continue
        prompt = model.denormalize_features(prompt_features[row, :frames].float()).cpu()
        matches.append(PromptSpectrumMatch(prompt, strength, spread_strength=spread))
    return matches

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
    """

    def __init__(self, prompt_frames: torch.Tensor, strength: float, prior_frames: float = 25.0):
        if prompt_frames.ndim != 2 or prompt_frames.shape[0] < 1:
            raise ValueError(f"prompt_frames must be [T, D] with T >= 1, got {tuple(prompt_frames.shape)}.")
        self.strength = float(strength)
        energy = prompt_frames.double().mean(-1)
        # a frame's loudness between the prompt's quiet frames (10th percentile: pauses) and its typical speech
        # (median) says how much of it is speech; prompts are 3-8 s of speech with short pauses
        self._silence = torch.quantile(energy, 0.1)
        self._speech = torch.quantile(energy, 0.5)
        weights = self._speech_weight(prompt_frames)
        frames = prompt_frames.double()
        if float(weights.sum()) > 0:
            self.target = (weights[:, None] * frames).sum(0) / weights.sum()
        else:  # a constant prompt (all frames equally loud): every frame is as much speech as any other
            self.target = frames.mean(0)
        self._sum = prior_frames * self.target
        self._weight = torch.tensor(float(prior_frames), dtype=torch.float64)

    def _speech_weight(self, frames: torch.Tensor) -> torch.Tensor:
        span = (self._speech - self._silence).clamp_min(1e-3)
        return ((frames.double().mean(-1) - self._silence) / span).clamp(0.0, 1.0)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[0] == 0 or self.strength == 0.0:
            return frames
        weights = self._speech_weight(frames)
        values = frames.double().to(self.target.device)
        sums = self._sum + torch.cumsum(weights[:, None] * values, dim=0)
        counts = self._weight + torch.cumsum(weights, dim=0)
        self._sum, self._weight = sums[-1], counts[-1]
        running = sums / counts[:, None]
        shifted = values + self.strength * weights[:, None] * (self.target - running)
        return shifted.to(frames.dtype)

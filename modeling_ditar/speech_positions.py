"""Position ids for the speech part of the backbone sequence (config `speech_positions`).

The paper's backbone reads one stream: text tokens at positions 0..L-1, then the speech positions L, L+1, ... With
rotary embeddings a head sees only relative distances, and the text token being spoken at speech position j sits at a
distance that depends on the text length L and on j, so the backbone has to learn the text-speech alignment from
content, which a small model on a small budget does slowly (read out with `AttentionReader`, no head of a small
model trained briefly followed the text).

"aligned" positions put the speech position after j patches at j * patch_size * r, r being the speaking rate in text
tokens per feature frame. The text spoken in patch j then sits at a relative distance near zero, whatever L and j, so
one head with a local attention pattern follows the text. The rate of the target speech is not known when generating:
it comes from the prompt (its transcript's tokens over its frames), which for one speaker is close; training uses the
prompt part of paired examples the same way, and the whole utterance for single ones.
"""

from __future__ import annotations

import torch


def speaking_rate(text_lengths: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Text tokens per feature frame, [B] float32; rows without frames get 0 (callers fall back to a default)."""
    frames = frame_lengths.float()
    return torch.where(frames > 0, text_lengths.float() / frames.clamp(min=1.0), torch.zeros_like(frames))


def check_rate(rate, batch: int, device: torch.device) -> torch.Tensor:
    """`speech_position_rate` as given by a caller -> [batch] float32 on `device`, or a clear error."""
    if not isinstance(rate, torch.Tensor):
        if isinstance(rate, (int, float)) and not isinstance(rate, bool):
            rate = torch.full((batch,), float(rate))
        else:
            raise TypeError(
                f"speech_position_rate must be a float or a [batch] tensor of text tokens per frame, got "
                f"{type(rate).__name__}."
            )
    rate = rate.to(device=device, dtype=torch.float32).reshape(-1)
    if rate.shape[0] == 1 and batch > 1:
        rate = rate.expand(batch)
    if rate.shape[0] != batch:
        raise ValueError(f"speech_position_rate has {rate.shape[0]} values for a batch of {batch} rows.")
    if not bool(torch.isfinite(rate).all()) or bool((rate <= 0).any()):
        raise ValueError(
            "speech_position_rate must be finite and > 0 (text tokens per feature frame, e.g. 0.25); got "
            f"{rate.tolist()}."
        )
    return rate


def aligned_positions(num_slots: int, patch_rate: torch.Tensor) -> torch.Tensor:
    """[B, num_slots] float positions j * patch_rate for the start-of-speech slot (j = 0) and the patches after it;
    patch_rate [B] is text tokens per patch."""
    slots = torch.arange(num_slots, device=patch_rate.device, dtype=torch.float32)
    return slots[None] * patch_rate[:, None]


def jitter_rate(rate: torch.Tensor, scale: float) -> torch.Tensor:
    """Training-time noise on the rate, rate * exp(scale * N(0, 1)): generation estimates the rate from the prompt,
    which is off by a few percent, so the model should not rely on the positions being exact."""
    if scale <= 0:
        return rate
    return rate * torch.exp(scale * torch.randn_like(rate))


__all__ = ["aligned_positions", "check_rate", "jitter_rate", "speaking_rate"]

"""Pocket TTS (Kyutai) from transformers, at its published size with random weights, for `examples/benchmark.py`.

`PocketTTSForConditionalGeneration` is a causal transformer backbone (1024 wide, 6 layers, 16 heads, GELU MLP 4096)
over [voice latents, text tokens, BOS latent], then one continuous 32-dim latent per step at 12.5 frames/s, each
sampled by a 1-step LSD flow head (512 wide, 6 residual blocks) from the backbone's last hidden state; the default
configs of `PocketTTSConfig` and `PocketTTSAudioTokenizerConfig` are the released checkpoint's sizes (~89M for the
model, ~10M for the codec's decoder: the "100M" of the paper). The codec decoder turns 1920 samples of 24 kHz audio out
of each latent.

The benchmark needs no tokenizer or voice encoder: the cost does not depend on which ids or latents go in, so the
prompt is built by hand in the processor's layout (`audio_prompt_bos`, one `audio_prompt` placeholder per voice frame,
the text ids, `audio_bos`) with random ids and latents, and the end-of-speech head is silenced so that every row
generates exactly the requested number of frames. Time to first audio: transformers' `generate` has no streaming for
Pocket TTS (its `streamer` is ignored), so it is the time to generate the first frame (prefill + one flow-head call)
plus the codec's decode of that frame.
"""

from __future__ import annotations

import math

import torch
from transformers import (
    PocketTTSAudioTokenizerConfig,
    PocketTTSAudioTokenizerModel,
    PocketTTSConfig,
    PocketTTSForConditionalGeneration,
)

CHARS_PER_TEXT_TOKEN = 4.0  # English characters per sentencepiece token of a ~4k vocabulary (an estimate)


def build_pocket_tts(
    config: PocketTTSConfig | None = None,
    codec_config: PocketTTSAudioTokenizerConfig | None = None,
    seed: int = 0,
) -> tuple[PocketTTSForConditionalGeneration, PocketTTSAudioTokenizerModel]:
    """Random-weight Pocket TTS and its codec's decoder (no encoder: voices go in as latents), in eval mode.

    The defaults are the published size. The end-of-speech head always says "go on" (logit -30), so the length is
    set by `max_new_tokens` alone.
    """
    config = config if config is not None else PocketTTSConfig()
    codec_config = codec_config if codec_config is not None else PocketTTSAudioTokenizerConfig(encoder_config=None)
    if not isinstance(config, PocketTTSConfig):
        raise TypeError(f"config must be a PocketTTSConfig, got {type(config).__name__}")
    if codec_config.latent_dim != config.latent_dim:
        raise ValueError(
            f"The codec's latent_dim ({codec_config.latent_dim}) differs from the model's ({config.latent_dim}): "
            "build both from matching configs."
        )
    torch.manual_seed(seed)
    model = PocketTTSForConditionalGeneration(config).eval()
    codec = PocketTTSAudioTokenizerModel(codec_config).eval()
    with torch.no_grad():
        model.eos_head.weight.zero_()
        model.eos_head.bias.fill_(-30.0)  # never ends: fixed-length generation
    return model, codec


def frames_for(model: PocketTTSForConditionalGeneration, seconds: float) -> int:
    """Latent frames for `seconds` of audio (`config.frame_rate`, 12.5/s for the released model)."""
    return max(1, round(seconds * model.config.frame_rate))


def pocket_inputs(
    model: PocketTTSForConditionalGeneration,
    text_chars: int,
    batch: int,
    prompt_seconds: float = 3.0,
    seed: int = 0,
) -> dict:
    """Generation inputs for `batch` rows: a random voice of `prompt_seconds` and `text_chars` characters of text.

    Returns `input_ids` and `attention_mask` [batch, 1 + prompt frames + text tokens + 1], `audio_prompt_latents`
    [batch, prompt frames, latent_dim] with its mask, and `frames_after_eos` (unused: the end never fires).
    """
    if batch < 1 or text_chars < 1 or prompt_seconds <= 0:
        raise ValueError(
            f"batch ({batch}), text_chars ({text_chars}) and prompt_seconds ({prompt_seconds}) must be positive"
        )
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    prompt_frames = frames_for(model, prompt_seconds)
    text_tokens = max(1, math.ceil(text_chars / CHARS_PER_TEXT_TOKEN))
    # ordinary text ids lie below the placeholder ids (4000-4003 in the released vocabulary); skip the pad id
    low = config.pad_token_id + 1
    high = min(config.audio_prompt_token_id, config.audio_latent_token_id, config.vocab_size)
    text = torch.randint(low, high, (batch, text_tokens), generator=generator)
    input_ids = torch.cat(
        [
            torch.full((batch, 1), config.audio_prompt_bos_token_id),
            torch.full((batch, prompt_frames), config.audio_prompt_token_id),
            text,
            torch.full((batch, 1), config.audio_bos_token_id),
        ],
        dim=1,
    )
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        audio_prompt_latents=torch.randn(batch, prompt_frames, config.latent_dim, generator=generator),
        audio_prompt_latents_mask=torch.ones(batch, prompt_frames, dtype=torch.long),
        frames_after_eos=torch.ones(batch, dtype=torch.long),
    )


@torch.no_grad()
def pocket_generate(
    model: PocketTTSForConditionalGeneration, inputs: dict, frames: int, seed: int = 0, num_flow_steps: int = 1
) -> torch.Tensor:
    """Exactly `frames` latents per row, sampled with `num_flow_steps` flow-head calls per frame (1, as released; the
    temperature only scales the noise, so its value does not change the cost). Returns the denormalised latents
    [batch, frames, latent_dim]."""
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    torch.manual_seed(seed)
    out = model.generate(
        **inputs,
        max_new_tokens=frames,
        do_sample=True,
        temperature=0.7,
        num_flow_steps=num_flow_steps,
        return_dict_in_generate=True,
    )
    return out.audio_latents


@torch.no_grad()
def pocket_decode(codec: PocketTTSAudioTokenizerModel, latents: torch.Tensor) -> torch.Tensor:
    """Waveforms [batch, 1, frames x frame_size] at the codec's sampling rate from latents [batch, frames, dim]."""
    return codec.decode(latents).audio_values


def pocket_first_audio(model: PocketTTSForConditionalGeneration, codec: PocketTTSAudioTokenizerModel, inputs: dict):
    """The first audio a caller can play: one generated frame, decoded (80 ms at 24 kHz)."""
    return pocket_decode(codec, pocket_generate(model, inputs, 1))


__all__ = [
    "build_pocket_tts",
    "frames_for",
    "pocket_decode",
    "pocket_first_audio",
    "pocket_generate",
    "pocket_inputs",
]

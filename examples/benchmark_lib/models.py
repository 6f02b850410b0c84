"""Models for `examples/benchmark.py`: random-weight DiTAR pipelines of fixed sizes and a non-autoregressive (NAR)
full-sequence DiT baseline built from the same diffusers blocks, sized to the same parameter count.

The NAR baseline follows the F5-TTS recipe (`research/anchors.md` A1/B): every frame of the output *and* of the voice
prompt is one token; the input of a frame is [x_t, prompt mel (zeros where generated), text embedding (text padded with
a filler to the frame count)]; a stack of diffusers `BasicTransformerBlock`s with AdaLN-single time conditioning
(PixArt style, `AdaLayerNormSingle`) predicts the flow velocity; 32 Euler steps with classifier-free guidance, the
conditional and unconditional (text and prompt dropped) branches packed in one batch. Its cost does not depend on the
weights, so random weights time it exactly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.normalization import AdaLayerNormSingle
from torch import nn

from modeling_ditar import (
    DiTARConfig,
    DiTARFeatureExtractor,
    DiTARForConditionalGeneration,
    DiTARProcessor,
    build_ditar_tokenizer,
    build_pipeline,
)

from .measure import attention_flop_mapping, sdpa_flops

SAMPLING_RATE, NUM_MELS, N_FFT, HOP, PATCH = 16000, 80, 1280, 320, 4
FRAMES_PER_SECOND = SAMPLING_RATE / HOP  # 50
PATCHES_PER_SECOND = FRAMES_PER_SECOND / PATCH  # 12.5

# backbone (qwen2) / aggregation encoder (width, layers, ffn) / LocDiT (width, layers, ffn)
DITAR_SIZES = {
    # the shipped default model (examples/configs/default.yaml)
    "ship": dict(
        hidden=256, layers=6, heads=4, kv_heads=4, intermediate=1024, encoder=(256, 1, 1024), locdit=(256, 3, 1024)
    ),
    # ~40M with a LocDiT-heavy split
    "40M": dict(
        hidden=512, layers=6, heads=8, kv_heads=4, intermediate=2048, encoder=(384, 2, 1536), locdit=(384, 6, 1536)
    ),
    # the same total with the paper's emphasis: parameters in the backbone (runs once per patch), a small LocDiT
    # (runs 2 x NFE times per patch). The paper's per-size table was not available (research/paper.md).
    "40M-lm": dict(
        hidden=512, layers=8, heads=8, kv_heads=4, intermediate=2048, encoder=(256, 2, 1024), locdit=(256, 4, 1024)
    ),
}

# NAR width / heads / FFN multiple per DiTAR size; the depth is chosen to match the DiTAR parameter count
NAR_WIDTHS = {"ship": (256, 4, 4), "40M": (512, 8, 4), "40M-lm": (512, 8, 4)}

PROMPT_TEXT = "This is the voice that the model should imitate."
SENTENCE = (
    "The quick brown fox jumps over the lazy dog, and then it runs across the wide green field "
    "to find a quiet place under the old oak tree. "
)
CHARS_PER_SECOND = 14.0  # read-aloud English, characters (with spaces) per second


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def text_for(seconds: float) -> str:
    """A text that takes about `seconds` to read aloud."""
    chars = max(20, round(seconds * CHARS_PER_SECOND))
    text = (SENTENCE * math.ceil(chars / len(SENTENCE)))[:chars]
    return text.rsplit(" ", 1)[0].rstrip(",") + "."


def prompt_audio(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    f0 = 140 * (1 + 0.08 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLING_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.1 * wave).astype(np.float32)


def build_ditar(size: str, seed: int = 0):
    """A DiTARPipeline with random weights whose stop head never fires (length comes from `max_new_patches`)."""
    spec = DITAR_SIZES[size]
    fe = DiTARFeatureExtractor(feature_size=NUM_MELS, sampling_rate=SAMPLING_RATE, n_fft=N_FFT, hop_length=HOP)
    processor = DiTARProcessor(fe, build_ditar_tokenizer(phonemize=False))
    (enc_h, enc_l, enc_i), (dit_h, dit_l, dit_i) = spec["encoder"], spec["locdit"]
    config = DiTARConfig(
        text_config=dict(
            model_type="qwen2",
            hidden_size=spec["hidden"],
            intermediate_size=spec["intermediate"],
            num_hidden_layers=spec["layers"],
            num_attention_heads=spec["heads"],
            num_key_value_heads=spec["kv_heads"],
            vocab_size=len(processor.tokenizer),
            max_position_embeddings=4096,
            tie_word_embeddings=False,
        ),
        feature_dim=NUM_MELS,
        patch_size=PATCH,
        num_history_patches=2,
        encoder_hidden_size=enc_h,
        encoder_num_layers=enc_l,
        encoder_num_heads=4,
        encoder_intermediate_size=enc_i,
        locdit_hidden_size=dit_h,
        locdit_num_layers=dit_l,
        locdit_num_heads=4,
        locdit_intermediate_size=dit_i,
        num_inference_steps=10,
        guidance_scale=2.0,
        temperature=0.5,
        max_patches_per_text_token=8.0,
    )
    torch.manual_seed(seed)
    model = DiTARForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.locdit.out_proj.weight.normal_(std=0.02)  # zero-initialised: give the sampler something to integrate
        model.stop_head.weight.zero_()
        model.stop_head.bias.fill_(-30.0)  # never stop
    pipe = build_pipeline(model, processor)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------------------------------------------------
# NAR baseline


class SinusoidalPositions(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, length: int, device, dtype) -> torch.Tensor:
        position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, self.dim, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / self.dim))
        table = torch.cat([torch.sin(position * freq), torch.cos(position * freq)], dim=-1)
        return table.to(dtype)  # [T, C]


class NARBaselineDiT(nn.Module):
    """Full-sequence DiT over text + speech frames (F5-TTS shape) from diffusers `BasicTransformerBlock`s.

    forward(x_t [B, T, D], prompt [B, T, D], text_ids [B, T], t [B]) -> velocity [B, T, D].
    """

    def __init__(self, vocab_size: int, feature_dim: int, dim: int, depth: int, heads: int, ff_mult: int = 4):
        super().__init__()
        self.text_embedding = nn.Embedding(vocab_size + 1, dim)  # id vocab_size = filler after the text
        self.filler_id = vocab_size
        self.in_proj = nn.Linear(2 * feature_dim + dim, dim)
        self.positions = SinusoidalPositions(dim)
        self.time = AdaLayerNormSingle(dim)
        self.blocks = nn.ModuleList(
            [
                BasicTransformerBlock(
                    dim,
                    heads,
                    dim // heads,
                    activation_fn="gelu-approximate",
                    attention_bias=True,
                    norm_type="ada_norm_single",
                    ff_inner_dim=ff_mult * dim,
                )
                for _ in range(depth)
            ]
        )
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.out_proj = nn.Linear(dim, feature_dim)

    def forward(self, x_t, prompt, text_ids, t):
        batch, length, _ = x_t.shape
        hidden = self.in_proj(torch.cat([x_t, prompt, self.text_embedding(text_ids)], dim=-1))
        hidden = hidden + self.positions(length, x_t.device, hidden.dtype)
        modulation, embedded_t = self.time(t * 1000.0, batch_size=batch, hidden_dtype=hidden.dtype)
        for block in self.blocks:
            hidden = block(hidden, timestep=modulation)
        shift, scale = (self.scale_shift_table[None] + embedded_t[:, None]).chunk(2, dim=1)
        hidden = self.norm_out(hidden) * (1 + scale) + shift
        return self.out_proj(hidden)


def build_nar(size: str, target_parameters: int, vocab_size: int, seed: int = 0) -> NARBaselineDiT:
    """NAR baseline of the width of `NAR_WIDTHS[size]` with the depth whose parameter count is nearest the target."""
    dim, heads, ff_mult = NAR_WIDTHS[size]
    torch.manual_seed(seed)
    best = None
    for depth in range(1, 64):
        with torch.device("meta"):
            count = count_parameters(NARBaselineDiT(vocab_size, NUM_MELS, dim, depth, heads, ff_mult))
        if best is None or abs(count - target_parameters) < abs(best[1] - target_parameters):
            best = (depth, count)
        if count > target_parameters:
            break
    return NARBaselineDiT(vocab_size, NUM_MELS, dim, best[0], heads, ff_mult).eval()


def nar_inputs(model: NARBaselineDiT, tokenizer, prompt_features: torch.Tensor, text: str, seconds: float, batch: int):
    """Conditioning of the NAR model: prompt mel [B, T, D] (zeros after the prompt), text ids [B, T] padded with the
    filler to T = prompt frames + generated frames."""
    prompt_frames = prompt_features.shape[0]
    total = prompt_frames + round(seconds * FRAMES_PER_SECOND)
    ids = tokenizer(PROMPT_TEXT + " " + text, add_special_tokens=False)["input_ids"][:total]
    text_ids = torch.full((batch, total), model.filler_id, dtype=torch.long)
    text_ids[:, : len(ids)] = torch.tensor(ids)
    prompt = torch.zeros(batch, total, NUM_MELS)
    prompt[:, :prompt_frames] = prompt_features
    return prompt, text_ids


@torch.no_grad()
def nar_sample(
    model: NARBaselineDiT,
    prompt: torch.Tensor,
    text_ids: torch.Tensor,
    steps: int = 32,
    guidance: float = 2.0,
    generator: torch.Generator | None = None,
    run_steps: int | None = None,
):
    """F5-TTS sampling: Euler from noise (t=0) to data (t=1) with sway sampling, CFG branches packed in one batch.
    `run_steps` < `steps` stops early (for timing projections: every step costs the same)."""
    batch, length, dim = prompt.shape
    x = torch.randn(batch, length, dim, generator=generator)
    t = torch.linspace(0, 1, steps + 1)
    t = t + (-1.0) * (torch.cos(math.pi / 2 * t) - 1 + t)  # sway sampling, coefficient -1
    packed_prompt = torch.cat([prompt, torch.zeros_like(prompt)])
    packed_text = torch.cat([text_ids, torch.full_like(text_ids, model.filler_id)])
    for n in range(steps if run_steps is None else min(run_steps, steps)):
        v = model(torch.cat([x, x]), packed_prompt, packed_text, t[n].expand(2 * batch))
        v_cond, v_uncond = v.chunk(2)
        x = x + (t[n + 1] - t[n]) * (v_cond + guidance * (v_cond - v_uncond))  # F5: cfg_strength 2
    return x


def flop_counter_mapping() -> dict:
    """`count_flops` rules for what FlopCounterMode does not count on CPU: scaled-dot-product attention."""
    return attention_flop_mapping()


__all__ = [
    "DITAR_SIZES",
    "FRAMES_PER_SECOND",
    "NARBaselineDiT",
    "PATCHES_PER_SECOND",
    "PROMPT_TEXT",
    "build_ditar",
    "build_nar",
    "count_parameters",
    "flop_counter_mapping",
    "nar_inputs",
    "nar_sample",
    "prompt_audio",
    "sdpa_flops",
    "text_for",
]

"""Bidirectional transformer stack built from diffusers blocks, shared by the aggregation encoder and LocDiT.

Shapes: M items (patches), S tokens per item, C channels.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import BasicTransformerBlock
from torch import nn


class DiTARTransformerBlock(BasicTransformerBlock):
    """Pre-LayerNorm self-attention + GELU feed-forward block (diffusers `BasicTransformerBlock`), no causal mask.

    Subclassed only to give it our own name for `_no_split_modules` (device maps, FSDP wrapping).
    """

    def __init__(self, dim: int, num_heads: int, intermediate_size: int):
        super().__init__(
            dim,
            num_heads,
            dim // num_heads,
            activation_fn="gelu-approximate",
            attention_bias=True,
            norm_type="layer_norm",
            ff_inner_dim=intermediate_size,
        )


class DiTARTransformerStack(nn.Module):
    """Learned positions + `num_layers` bidirectional blocks + final LayerNorm over short sequences."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, intermediate_size: int, max_length: int):
        super().__init__()
        self.position_embedding = nn.Parameter(torch.zeros(max_length, dim))
        self.blocks = nn.ModuleList(
            [DiTARTransformerBlock(dim, num_heads, intermediate_size) for _ in range(num_layers)]
        )
        self.norm_out = nn.LayerNorm(dim)
        # transformers' activation checkpointing switches this flag and sets `_gradient_checkpointing_func`.
        self.gradient_checkpointing = False

    def forward(self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        # hidden_states: [M, S, C]; key_mask: [M, S] bool, True where a token may be attended to.
        seq_len = hidden_states.shape[1]
        hidden_states = hidden_states + self.position_embedding[:seq_len].to(hidden_states.dtype)
        attention_mask = None if key_mask is None else key_mask[:, None, :]  # [M, 1, S], broadcast over queries
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                hidden_states = self._gradient_checkpointing_func(block.__call__, hidden_states, attention_mask)
            else:
                hidden_states = block(hidden_states, attention_mask=attention_mask)
        return self.norm_out(hidden_states)

"""Bidirectional transformer stack built from diffusers blocks, shared by the aggregation encoder and LocDiT.

Shapes: M items (patches), S tokens per item, Q positions whose output is wanted, C channels.

Inference fast path: these stacks run thousands of times per utterance on sequences of 5-13 tokens, where the Python
side of diffusers' `BasicTransformerBlock` (argument handling, `inspect.signature` in `Attention.forward`, mask
preparation per head) costs about as much as the arithmetic. Without autograd, a block whose submodules are the stock
ones (plain `nn.Linear` or the library's low-precision linear, `LayerNorm`, the default attention processor) is
therefore evaluated by `DiTARTransformerBlock.fast_forward`, which calls the same modules' `forward` in the same order
(so the same numbers, bit for bit on CPU) with fewer Python layers. Anything else (training, activation checkpointing,
a custom attention processor, LoRA-wrapped linears, feed-forward chunking, `fast_inference = False`) takes the
diffusers `forward`.

The fast path still enters every block through `nn.Module.__call__` (`block(..., fast=True)`), so forward hooks on the
blocks and wrappers of their `forward` (accelerate's device hooks) run as usual. It calls the `forward` of the attention
module's and feed-forward's linears directly, so hooks registered on `attn1` or on those linears are not called: set
`fast_inference = False` for those.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import AttnProcessor2_0
from torch import nn

from .low_precision import is_plain_linear


class DiTARTransformerBlock(BasicTransformerBlock):
    """Pre-LayerNorm self-attention + GELU feed-forward block (diffusers `BasicTransformerBlock`), no causal mask.

    Subclassed to give it our own name for `_no_split_modules` (device maps, FSDP wrapping) and a lean inference path.
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
        # set through diffusers' public `set_chunk_feed_forward` (see below); the fast path does not chunk
        self.feed_forward_chunking = False

    def set_chunk_feed_forward(self, chunk_size: int | None, dim: int = 0):
        """diffusers' feed-forward chunking (`ModelMixin.enable_forward_chunking` calls this); recorded so that the
        fast path, which does not chunk, steps aside while it is on."""
        super().set_chunk_feed_forward(chunk_size, dim)
        self.feed_forward_chunking = chunk_size is not None

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *args,
        fast: bool = False,
        queries: slice | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """diffusers' `BasicTransformerBlock.forward`, or with `fast=True` (inference, see `supports_fast_forward`)
        `fast_forward`, which takes a bool mask [M, 1, 1, S] and optional `queries`."""
        if fast:
            return self.fast_forward(hidden_states, attention_mask, queries)
        return super().forward(hidden_states, attention_mask, *args, **kwargs)

    def supports_fast_forward(self) -> bool:
        """True when `fast_forward` computes exactly what `forward` does (stock submodules, no chunking)."""
        attn, ff = self.attn1, self.ff.net
        linears = (attn.to_q, attn.to_k, attn.to_v, attn.to_out[0], ff[0].proj, ff[2])
        return (
            type(attn.processor) is AttnProcessor2_0
            and all(is_plain_linear(layer) for layer in linears)
            and type(self.norm1) is nn.LayerNorm
            and type(self.norm3) is nn.LayerNorm
            and attn.rescale_output_factor == 1.0
            and not attn.residual_connection
            and attn.norm_q is None
            and attn.norm_k is None
            and not self.feed_forward_chunking
        )

    def fast_forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, queries: slice | None = None
    ) -> torch.Tensor:
        """The block's math without the diffusers plumbing (no dropout: inference only).

        hidden_states [M, S, C]; attention_mask None or bool [M, 1, 1, S] (True = may be attended to); with `queries`
        only those positions are computed as queries (keys and values still come from all S tokens), which is exact
        for a last block whose other outputs are never read. Returns [M, S or Q, C].
        """
        attn = self.attn1
        batch, length, channels = hidden_states.shape
        heads = attn.heads
        head_dim = channels // heads
        norm = F.layer_norm(hidden_states, (channels,), self.norm1.weight, self.norm1.bias, self.norm1.eps)
        key = attn.to_k.forward(norm)
        value = attn.to_v.forward(norm)
        if queries is not None:
            hidden_states = hidden_states[:, queries]
            norm = norm[:, queries]
        query = attn.to_q.forward(norm)
        query = query.view(batch, -1, heads, head_dim).transpose(1, 2)  # [M, heads, Q, C/heads]
        key = key.view(batch, -1, heads, head_dim).transpose(1, 2)  # [M, heads, S, C/heads]
        value = value.view(batch, -1, heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=0.0)
        out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim)
        out = attn.to_out[0].forward(out)
        hidden_states = out + hidden_states
        norm = F.layer_norm(hidden_states, (channels,), self.norm3.weight, self.norm3.bias, self.norm3.eps)
        ff_in, ff_out = self.ff.net[0], self.ff.net[2]
        inner = F.gelu(ff_in.proj.forward(norm), approximate=ff_in.approximate)
        return ff_out.forward(inner) + hidden_states


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
        # inference without autograd uses `DiTARTransformerBlock.fast_forward` where it is exact (module docstring);
        # False forces the diffusers blocks' own `forward` (the reference path).
        self.fast_inference = True

    def use_fast_path(self) -> bool:
        return (
            self.fast_inference
            and not torch.is_grad_enabled()
            and type(self.norm_out) is nn.LayerNorm
            and all(block.supports_fast_forward() for block in self.blocks)
        )

    def forward(
        self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None = None, queries: slice | None = None
    ) -> torch.Tensor:
        """hidden_states: [M, S, C]; key_mask: [M, S] bool, True where a token may be attended to; `queries` (a slice
        of positions) returns only those outputs ([M, Q, C]; the output at a position does not depend on which other
        positions are returned, so this equals slicing the full output). Returns [M, S or Q, C]."""
        seq_len = hidden_states.shape[1]
        hidden_states = hidden_states + self.position_embedding[:seq_len].to(hidden_states.dtype)
        if self.use_fast_path():
            return self.forward_fast(hidden_states, key_mask, queries)
        attention_mask = None if key_mask is None else key_mask[:, None, :]  # [M, 1, S], broadcast over queries
        for block in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                hidden_states = self._gradient_checkpointing_func(block.__call__, hidden_states, attention_mask)
            else:
                hidden_states = block(hidden_states, attention_mask=attention_mask)
        if queries is not None:
            hidden_states = hidden_states[:, queries]
        return self.norm_out(hidden_states)

    def forward_fast(
        self, hidden_states: torch.Tensor, key_mask: torch.Tensor | None = None, queries: slice | None = None
    ) -> torch.Tensor:
        """The inference path on inputs that already carry their position embeddings (see `forward`)."""
        attention_mask = None if key_mask is None else key_mask[:, None, None, :]  # [M, 1, 1, S]
        last = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            hidden_states = block(hidden_states, attention_mask, fast=True, queries=queries if index == last else None)
        if queries is not None and last < 0:
            hidden_states = hidden_states[:, queries]
        norm = self.norm_out
        return F.layer_norm(hidden_states, norm.normalized_shape, norm.weight, norm.bias, norm.eps)

"""Attention of chosen backbone heads from speech to text: read out (diagnostics) and guided towards the diagonal
(an optional training loss; not in the DiTAR paper).

Why: the shipped default's backbone reads the text it has heard (its CTC head decodes it) but no attention head
follows the text while speech is produced (attention read out with `AttentionReader`), so it cannot tell which sound
comes next. Guided attention (Tachibana et al., 2017, "Efficiently trainable text-to-speech system based on deep
convolutional networks with guided attention") is the classic cheap fix for slow alignment learning in
attention-based TTS: a penalty on a head's attention far from the text-speech diagonal.

Reading the probabilities: the backbone runs with its own attention kernel (SDPA, flash...), which does not return
them. `AttentionReader` hooks the chosen layers' attention modules, recomputes the queries and keys of the chosen
heads from the same inputs (projections, optional q/k norms, rotary embedding: the Llama / Qwen2 / Mistral / Qwen3
family), and keeps them with autograd, so a loss on them trains the backbone like any other.

Shapes: B batch, S merged sequence (text then speech), R query rows per item (speech positions), d head size.
"""

from __future__ import annotations

import sys

import torch
from torch import nn


class AttentionReader:
    """Context manager: while active, keeps (query, key) of `heads` [(layer, head), ...] of `backbone` for every
    forward pass. `queries_keys()` returns them as {(layer, head): (q [B, S, d], k [B, S, d])} after rotary
    embedding, scaled so that q @ k^T are the attention logits."""

    def __init__(self, backbone: nn.Module, heads: list[tuple[int, int]]):
        layers = getattr(backbone, "layers", None)
        if layers is None:
            raise TypeError(
                f"{type(backbone).__name__} has no `layers`: guided attention needs a decoder-only backbone "
                "like Llama or Qwen2."
            )
        self.modules = {}
        self.rotary = {}  # layer -> its modeling file's apply_rotary_pos_emb, looked up once
        for layer, head in heads:
            if not 0 <= layer < len(layers):
                raise ValueError(
                    f"guided attention layer {layer} does not exist: the backbone has {len(layers)} "
                    f"layers (0-{len(layers) - 1})."
                )
            attention = getattr(layers[layer], "self_attn", None)
            missing = [n for n in ("q_proj", "k_proj", "head_dim", "scaling") if not hasattr(attention, n)]
            if attention is None or missing:
                raise TypeError(
                    f"layer {layer}'s attention ({type(attention).__name__}) lacks {missing or 'self_attn'}: "
                    "guided attention supports Llama-style attention modules (q_proj, k_proj, rotary)."
                )
            rotary = getattr(sys.modules[type(attention).__module__], "apply_rotary_pos_emb", None)
            if rotary is None:
                raise TypeError(
                    f"{type(attention).__module__} has no apply_rotary_pos_emb: guided attention supports "
                    "Llama-style rotary attention."
                )
            self.rotary[layer] = rotary
            num_heads = attention.config.num_attention_heads
            if not 0 <= head < num_heads:
                raise ValueError(
                    f"guided attention head {head} does not exist: layer {layer} has {num_heads} heads "
                    f"(0-{num_heads - 1})."
                )
            self.modules.setdefault(layer, attention)
        self.heads = list(heads)
        self._handles: list = []
        self._captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __enter__(self) -> AttentionReader:
        self._captured.clear()
        for layer, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._hook(layer), with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, layer: int):
        def hook(module, args, kwargs):
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            cos, sin = kwargs["position_embeddings"]
            batch, length = hidden.shape[:2]
            q = module.q_proj(hidden).view(batch, length, -1, module.head_dim)
            k = module.k_proj(hidden).view(batch, length, -1, module.head_dim)
            if getattr(module, "q_norm", None) is not None:  # Qwen3-style per-head norms
                q, k = module.q_norm(q), module.k_norm(k)
            q, k = self.rotary[layer](
                q.transpose(1, 2), k.transpose(1, 2), cos, sin
            )  # [B, heads, S, d], [B, kv heads, S, d]
            self._captured[layer] = (q * module.scaling, k)

        return hook

    def queries_keys(self) -> dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]]:
        out = {}
        for layer, head in self.heads:
            q, k = self._captured[layer]
            groups = q.shape[1] // k.shape[1]  # grouped-query attention: query heads share key heads
            out[(layer, head)] = (q[:, head], k[:, head // groups])
        return out


def attention_rows(query: torch.Tensor, key: torch.Tensor, rows: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """Causal attention probabilities of query positions `rows` [B, R] over all keys: [B, R, S] (float32).
    query/key [B, S, d] from `AttentionReader`; key_mask [B, S] True for real positions."""
    q = query.gather(1, rows[..., None].expand(-1, -1, query.shape[-1]))  # [B, R, d]
    logits = (q @ key.transpose(1, 2)).float()  # [B, R, S]
    columns = torch.arange(key.shape[1], device=key.device)
    allowed = (columns[None, None] <= rows[..., None]) & key_mask.bool()[:, None]
    return logits.masked_fill(~allowed, float("-inf")).softmax(-1)


def diagonal_penalty(
    text_len: torch.Tensor, num_rows: torch.Tensor, rows: int, keys: int, sigma: float
) -> torch.Tensor:
    """Guided-attention weights [B, R, S]: for query row j of num_rows[b] and text key t of text_len[b] (text first
    in the sequence), 1 - exp(-((j + 0.5) / num_rows - (t + 0.5) / text_len)^2 / (2 sigma^2)); 1 on every other key,
    so the head is pulled onto the text near the diagonal."""
    device = text_len.device
    j = (torch.arange(rows, device=device)[None] + 0.5) / num_rows[:, None].clamp(min=1)  # [B, R]
    t = (torch.arange(keys, device=device)[None] + 0.5) / text_len[:, None].clamp(min=1)  # [B, S]
    weights = 1.0 - torch.exp(-((j[:, :, None] - t[:, None, :]) ** 2) / (2 * sigma**2))
    is_text = torch.arange(keys, device=device)[None] < text_len[:, None]  # [B, S]
    return torch.where(is_text[:, None], weights, torch.ones_like(weights))


def guided_attention_loss(
    reader: AttentionReader,
    rows: torch.Tensor,
    row_mask: torch.Tensor,
    key_mask: torch.Tensor,
    text_len: torch.Tensor,
    sigma: float,
) -> torch.Tensor:
    """Mean over the guided heads and the real query rows of sum_keys(attention x diagonal_penalty).

    rows [B, R]: the sequence positions whose outputs predict speech patches 0..R-1 (text first, right-padded
    batches); row_mask [B, R]; key_mask [B, S]; text_len [B]. Pairs of utterances (prompt + target) are one diagonal:
    the same voice speaks both at about the same rate."""
    num_rows = row_mask.sum(1)
    penalty = diagonal_penalty(text_len, num_rows, rows.shape[1], key_mask.shape[1], sigma)
    losses = []
    for query, key in reader.queries_keys().values():
        probs = attention_rows(query, key, rows, key_mask)  # [B, R, S]
        per_row = (probs * penalty).sum(-1)  # [B, R]
        losses.append((per_row * row_mask).sum() / row_mask.sum().clamp(min=1))
    return torch.stack(losses).mean()

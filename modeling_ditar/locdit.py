"""LocDiT: the local diffusion transformer that generates one patch (paper section 3.1).

Sequence per item: [condition token = proj(h_i) + time embedding(t), K*P history frames, P noisy frames],
bidirectional attention, velocity read at the noisy positions only.

Shapes: M items, P frames per patch, K history patches, D feature dim, C LocDiT width, H backbone hidden size,
N+1 points of the sampling time grid.

`forward` is the one-call interface (training and reference). Sampling calls LocDiT ten times per patch with the same
condition and history, so `prepare_context` computes what does not change between those calls once (condition
projection, history tokens with their positions, the key mask, dropped when nothing is masked), `embed_time` embeds the
whole time grid once, and `forward_prepared` runs one ODE step from them; the result equals `forward` (same operations
on the same values).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from .configuration_ditar import DiTARConfig
from .low_precision import is_plain_linear
from .transformer_blocks import DiTARTransformerStack

# Continuous t in [0, 1] is scaled like a discrete diffusion timestep before the sinusoidal embedding.
TIMESTEP_SCALE = 1000.0


@dataclass
class LocDiTContext:
    """What LocDiT's input holds apart from the noisy patch and the time, for M items (see `prepare_context`).

    cond: [M, C] projected LM output. history: [M, K*P, C] history tokens with their position embeddings, or None.
    key_mask: [M, 1+K*P+P] bool or None when every token may be attended to. cond_position: [C];
    noisy_positions: [P, C].
    """

    cond: torch.Tensor
    history: torch.Tensor | None
    key_mask: torch.Tensor | None
    cond_position: torch.Tensor
    noisy_positions: torch.Tensor

    def select(self, rows: torch.Tensor) -> LocDiTContext:
        """The context of a subset of the items (`rows`: index tensor)."""
        return LocDiTContext(
            self.cond[rows],
            None if self.history is None else self.history[rows],
            None if self.key_mask is None else self.key_mask[rows],
            self.cond_position,
            self.noisy_positions,
        )


class LocDiT(nn.Module):
    """The local diffusion transformer: predicts the velocity of one noisy patch from the backbone output (the
    condition, with the diffusion time added), the clean frames of the previous patches and the noisy frames, with
    bidirectional attention over that short sequence."""

    def __init__(self, config: DiTARConfig):
        super().__init__()
        width = config.locdit_hidden_size
        self.patch_size = config.patch_size
        self.cond_proj = nn.Linear(config.text_config.hidden_size, width)
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(256, width)
        self.in_proj = nn.Linear(config.feature_dim, width)
        max_length = 1 + (config.num_history_patches + 1) * config.patch_size
        self.transformer = DiTARTransformerStack(
            width, config.locdit_num_layers, config.locdit_num_heads, config.locdit_intermediate_size, max_length
        )
        self.out_proj = nn.Linear(width, config.feature_dim)
        # Zero-initialised output: the untrained model predicts v = 0 (DiT practice); read by `_init_weights`.
        self.out_proj._ditar_zero_init = True

    def forward(
        self,
        noisy: torch.Tensor,
        timestep: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        history: torch.Tensor | None = None,
        history_mask: torch.Tensor | None = None,
        *,
        time_emb: torch.Tensor | None = None,
        context: LocDiTContext | None = None,
    ) -> torch.Tensor:
        """
        Called with `time_emb` and `context` (from `embed_time` and `prepare_context`) instead of timestep, cond and
        history, it runs `forward_prepared`: one ODE step of the sampler, entered through `nn.Module.__call__` so that
        hooks on LocDiT run on that path too.

        Args:
            noisy: [M, P, D] x_t.
            timestep: [M] diffusion time t in [0, 1] (1 = pure noise).
            cond: [M, H] LM output h_i (zeros for the unconditional branch of LM guidance).
            history: [M, K*P, D] clean frames of the previous K patches, or None.
            history_mask: [M, K*P] bool, False where a history frame does not exist (start of speech) or is dropped.
        Returns:
            [M, P, D] predicted velocity v = cos(pi t/2) eps - sin(pi t/2) x0.
        """
        if context is not None:
            return self.forward_prepared(noisy, time_emb, context)
        dtype = self.in_proj.weight.dtype
        time_emb = self.embed_time(timestep)  # [M, C]
        cond_token = (self.cond_proj(cond.to(dtype)) + time_emb)[:, None]  # [M, 1, C]
        tokens = [cond_token]
        if history is not None and history.shape[1] > 0:
            tokens.append(self.in_proj(history.to(dtype)))  # [M, K*P, C]
        tokens.append(self.in_proj(noisy.to(dtype)))  # [M, P, C]
        hidden = torch.cat(tokens, dim=1)
        key_mask = self._key_mask(history, history_mask)
        hidden = self.transformer(hidden, key_mask, queries=slice(-self.patch_size, None))  # [M, P, C]
        return self.out_proj(hidden)  # [M, P, D]

    def _key_mask(self, history: torch.Tensor | None, history_mask: torch.Tensor | None) -> torch.Tensor | None:
        """[M, 1+K*P+P] bool, or None when nothing is masked (the unmasked attention is cheaper and equal)."""
        if history is None or history.shape[1] == 0 or history_mask is None or bool(history_mask.all()):
            return None
        always = history_mask.new_ones(history_mask.shape[0], 1)
        return torch.cat([always, history_mask, always.expand(-1, self.patch_size)], dim=1)

    # ------------------------------------------------------------------------------------------------------------------
    # sampling: per-patch context computed once, one call per ODE step

    def embed_time(self, timestep: torch.Tensor) -> torch.Tensor:
        """[M] times in [0, 1] -> [M, C] time embeddings."""
        dtype = self.in_proj.weight.dtype
        return self.time_embedding(self.time_proj(timestep * TIMESTEP_SCALE).to(dtype))

    def supports_prepared_calls(self) -> bool:
        """`prepare_context` + `forward_prepared` are used only where they equal `forward` exactly: without autograd and
        with stock submodules (otherwise callers use `forward`)."""
        return (
            self.transformer.use_fast_path()
            and is_plain_linear(self.in_proj)
            and is_plain_linear(self.cond_proj)
            and is_plain_linear(self.out_proj)
        )

    def prepare_context(
        self, cond: torch.Tensor, history: torch.Tensor | None = None, history_mask: torch.Tensor | None = None
    ) -> LocDiTContext:
        """The parts of LocDiT's input that stay fixed while one patch is solved (arguments as in `forward`)."""
        dtype = self.in_proj.weight.dtype
        positions = self.transformer.position_embedding.to(dtype)
        history_tokens = None
        offset = 1
        if history is not None and history.shape[1] > 0:
            offset += history.shape[1]
            history_tokens = self.in_proj(history.to(dtype)) + positions[1:offset]  # [M, K*P, C]
        return LocDiTContext(
            cond=self.cond_proj(cond.to(dtype)),
            history=history_tokens,
            key_mask=self._key_mask(history, history_mask),
            cond_position=positions[0],
            noisy_positions=positions[offset : offset + self.patch_size],
        )

    def forward_prepared(self, noisy: torch.Tensor, time_emb: torch.Tensor, context: LocDiTContext) -> torch.Tensor:
        """Velocity [M, P, D] for x_t `noisy` [M, P, D] and time embeddings `time_emb` ([M, C] or [1, C], from
        `embed_time`); equals `forward` with the arguments that made `context`."""
        cond_token = ((context.cond + time_emb) + context.cond_position)[:, None]  # [M, 1, C]
        noisy_tokens = self.in_proj.forward(noisy.to(context.cond.dtype))
        noisy_tokens = noisy_tokens + context.noisy_positions  # [M, P, C]
        if context.history is None:
            hidden = torch.cat([cond_token, noisy_tokens], dim=1)
        else:
            hidden = torch.cat([cond_token, context.history, noisy_tokens], dim=1)
        hidden = self.transformer.forward_fast(hidden, context.key_mask, queries=slice(-self.patch_size, None))
        return self.out_proj.forward(hidden)  # [M, P, D]

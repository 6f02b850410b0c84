"""LocDiT: the local diffusion transformer that generates one patch (paper section 3.1).

Sequence per item: [condition token = proj(h_i) + time embedding(t), K*P history frames, P noisy frames],
bidirectional attention, velocity read at the noisy positions only.

Shapes: M items, P frames per patch, K history patches, D feature dim, C LocDiT width, H backbone hidden size.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from .configuration_ditar import DiTARConfig
from .transformer_blocks import DiTARTransformerStack

# Continuous t in [0, 1] is scaled like a discrete diffusion timestep before the sinusoidal embedding.
TIMESTEP_SCALE = 1000.0


class LocDiT(nn.Module):
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
        timestep: torch.Tensor,
        cond: torch.Tensor,
        history: torch.Tensor | None = None,
        history_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            noisy: [M, P, D] x_t.
            timestep: [M] diffusion time t in [0, 1] (1 = pure noise).
            cond: [M, H] LM output h_i (zeros for the unconditional branch of LM guidance).
            history: [M, K*P, D] clean frames of the previous K patches, or None.
            history_mask: [M, K*P] bool, False where a history frame does not exist (start of speech) or is dropped.
        Returns:
            [M, P, D] predicted velocity v = cos(pi t/2) eps - sin(pi t/2) x0.
        """
        dtype = self.in_proj.weight.dtype
        time_emb = self.time_embedding(self.time_proj(timestep * TIMESTEP_SCALE).to(dtype))  # [M, C]
        cond_token = (self.cond_proj(cond.to(dtype)) + time_emb)[:, None]  # [M, 1, C]
        tokens = [cond_token]
        if history is not None and history.shape[1] > 0:
            tokens.append(self.in_proj(history.to(dtype)))  # [M, K*P, C]
        tokens.append(self.in_proj(noisy.to(dtype)))  # [M, P, C]
        hidden = torch.cat(tokens, dim=1)

        key_mask = None
        if history is not None and history_mask is not None and not bool(history_mask.all()):
            always = history_mask.new_ones(history_mask.shape[0], 1)
            key_mask = torch.cat([always, history_mask, always.expand(-1, self.patch_size)], dim=1)
        hidden = self.transformer(hidden, key_mask)
        return self.out_proj(hidden[:, -self.patch_size :])  # [M, P, D]

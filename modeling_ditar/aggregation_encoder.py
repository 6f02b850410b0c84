"""Aggregation encoder: one embedding per patch of P frames (paper section 3.1).

Shapes: B batch, N patches, P frames per patch, D feature dim, E encoder width, H backbone hidden size.
"""

from __future__ import annotations

import torch
from torch import nn

from .configuration_ditar import DiTARConfig
from .transformer_blocks import DiTARTransformerStack


class DiTARAggregationEncoder(nn.Module):
    """Bidirectional transformer over [special token, frame_1 .. frame_P]; the special token's output is the patch
    embedding (like a [CLS] token), projected to the backbone's hidden size."""

    def __init__(self, config: DiTARConfig):
        super().__init__()
        width = config.encoder_hidden_size
        self.in_proj = nn.Linear(config.feature_dim, width)
        self.special_token = nn.Parameter(torch.zeros(width))
        self.transformer = DiTARTransformerStack(
            width,
            config.encoder_num_layers,
            config.encoder_num_heads,
            config.encoder_intermediate_size,
            max_length=config.patch_size + 1,
        )
        self.out_proj = nn.Linear(width, config.text_config.hidden_size)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        batch, num_patches, patch_size, feature_dim = patches.shape
        frames = self.in_proj(patches.reshape(batch * num_patches, patch_size, feature_dim))  # [B*N, P, E]
        special = self.special_token.to(frames.dtype).expand(frames.shape[0], 1, -1)  # [B*N, 1, E]
        encoded = self.transformer(torch.cat([special, frames], dim=1))  # [B*N, 1+P, E]
        return self.out_proj(encoded[:, 0]).view(batch, num_patches, -1)  # [B, N, H]

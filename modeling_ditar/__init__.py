"""DiTAR for the Hugging Face ecosystem: `from_pretrained`, Accelerate training, a diffusers pipeline."""

from transformers import AutoConfig, AutoModel

from .configuration_ditar import DiTARConfig
from .modeling_ditar import (
    DiTARForConditionalGeneration,
    DiTARGenerationOutput,
    DiTAROutput,
    DiTARPreTrainedModel,
    PatchStep,
)
from .sampling import PatchSampler

# Registration is local and idempotent (exist_ok) so importing twice, or next to remote code, never fails.
AutoConfig.register("ditar", DiTARConfig, exist_ok=True)
AutoModel.register(DiTARConfig, DiTARForConditionalGeneration, exist_ok=True)

__all__ = [
    "DiTARConfig",
    "DiTARForConditionalGeneration",
    "DiTARGenerationOutput",
    "DiTAROutput",
    "DiTARPreTrainedModel",
    "PatchSampler",
    "PatchStep",
]

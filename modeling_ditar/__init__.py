"""DiTAR for the Hugging Face ecosystem: `from_pretrained`, Accelerate training, a diffusers pipeline."""

# ruff: noqa: E402 (the command-line check below must run before the imports that load torch)
# When this process is the `ditar` command, its arguments are checked (and --help answered) before the imports below
# load torch, which takes seconds; anywhere else this does nothing.
from .cli import check_command_line as _check_command_line

_check_command_line()

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForTextToWaveform, AutoProcessor

from .audio_utils import load_audio, resample_audio
from .configuration_ditar import DiTARConfig
from .feature_extraction_ditar import DiTARFeatureExtractor
from .generation_ditar import DiTARGenerationConfig
from .modeling_ditar import (
    DiTARForConditionalGeneration,
    DiTARForTextToSpeech,
    DiTARGenerationOutput,
    DiTAROutput,
    DiTARPreTrainedModel,
    DiTARSpeechOutput,
    PatchStep,
)
from .pipeline_ditar import DiTARPipeline, DiTARPipelineOutput, build_pipeline
from .processing_ditar import DiTARProcessor, DiTARVoice
from .prompt_transcription import PromptTranscriber
from .sampling import PatchSampler
from .streaming import SpeechStream, StreamingVocoder
from .tokenization_ditar import DiTARTextFrontend, build_ditar_tokenizer
from .vae_features import VAEPromptEncoder, VAEVocoder, compute_latent_statistics, ditar_config_kwargs
from .vocoder_griffinlim import GriffinLimVocoder
from .vocoder_hifigan import SpeechT5HifiGanVocoder
from .vocoder_vocos import VocosVocoder
from .vocoders import DiTARVocoder

# Registration is local and idempotent (exist_ok) so importing twice, or next to remote code, never fails.
AutoConfig.register("ditar", DiTARConfig, exist_ok=True)
AutoModel.register(DiTARConfig, DiTARForConditionalGeneration, exist_ok=True)
AutoModelForTextToWaveform.register(DiTARConfig, DiTARForTextToSpeech, exist_ok=True)
AutoFeatureExtractor.register(DiTARConfig, DiTARFeatureExtractor, exist_ok=True)
AutoProcessor.register(DiTARConfig, DiTARProcessor, exist_ok=True)
# Hub code: `save_pretrained` writes `auto_map` and copies the code files (with their relative imports), so saved
# folders load with `AutoModel/AutoConfig/AutoProcessor/AutoFeatureExtractor.from_pretrained(folder,
# trust_remote_code=True)` where this package is not installed. Where it is installed, transformers prefers the
# registered classes above.
DiTARConfig.register_for_auto_class("AutoConfig")
DiTARForConditionalGeneration.register_for_auto_class("AutoModel")
DiTARForTextToSpeech.register_for_auto_class("AutoModelForTextToWaveform")
DiTARProcessor.register_for_auto_class("AutoProcessor")
# (the feature extractor's own entry, written into its config by the processor's save too: AutoFeatureExtractor finds
# the class by `feature_extractor_type` only among the classes it knows, and without this package it knows none)
DiTARFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = [
    "DiTARConfig",
    "DiTARFeatureExtractor",
    "DiTARGenerationConfig",
    "DiTARPipeline",
    "DiTARPipelineOutput",
    "DiTARProcessor",
    "DiTARVoice",
    "build_pipeline",
    "load_audio",
    "resample_audio",
    "DiTARTextFrontend",
    "DiTARVocoder",
    "VAEPromptEncoder",
    "VAEVocoder",
    "compute_latent_statistics",
    "ditar_config_kwargs",
    "GriffinLimVocoder",
    "SpeechT5HifiGanVocoder",
    "VocosVocoder",
    "build_ditar_tokenizer",
    "DiTARForConditionalGeneration",
    "DiTARForTextToSpeech",
    "DiTARSpeechOutput",
    "DiTARGenerationOutput",
    "DiTAROutput",
    "DiTARPreTrainedModel",
    "PatchSampler",
    "PromptTranscriber",
    "SpeechStream",
    "StreamingVocoder",
    "PatchStep",
]

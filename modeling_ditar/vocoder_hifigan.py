"""transformers' SpeechT5 HiFi-GAN as a DiTAR vocoder, so a model trained on its features can use the pretrained
`microsoft/speecht5_hifigan` (HiFi-GAN V1 trained on LibriTTS at 16 kHz).

Shapes: B batch, T frames, D mel bins (`model_in_dim`, 80), S samples.

features [B, T, D] (log10-mel, as `DiTARFeatureExtractor.from_vocoder_preset("speecht5_hifigan")` computes them)
    --(x - mean) / scale with the statistics stored in the weights (`normalize_before`)--> conv_pre (k=7)
    --4 x (transposed conv upsampling + multi-receptive-field residual blocks)--> conv_post, tanh
    --> [B, T * hop] --drop the last hop samples--> waveform [B, (T - 1) * hop]

Output length. HiFi-GAN turns T frames into T * hop samples: it was trained on centred frames (frame t centred on
sample t * hop) with the audio cut to T * hop samples from its start, so output sample n lines up with input sample n
and the last hop samples lie past the end of the analysed clip. Dropping them gives the `(T - 1) * hop` samples of every
DiTAR vocoder, aligned with the audio the features came from, so streamed chunks and trimmed batch rows line up.
"""

from __future__ import annotations

import math

import torch

# PreTrainedModel is looked up in this module by diffusers to pick the component's save/load methods
from transformers import PreTrainedModel, SpeechT5HifiGan, SpeechT5HifiGanConfig  # noqa: F401

from .vocoders import DiTARVocoder

__all__ = ["SpeechT5HifiGanVocoder", "build_speecht5_hifigan", "receptive_field_frames"]

# The feature extractor preset whose features this vocoder expects (see `DiTARFeatureExtractor.from_vocoder_preset`).
FEATURE_PRESET = "speecht5_hifigan"
# kernel size of conv_pre and conv_post in transformers' SpeechT5HifiGan
_OUTER_KERNEL = 7


def receptive_field_frames(config: SpeechT5HifiGanConfig) -> int:
    """An upper bound on how many frames on either side of a frame reach its output samples.

    Sums, in frames, the half-span of every layer on the path from input to output: conv_pre, each transposed
    convolution (at most `kernel - 1` input samples of its rate) and the widest residual block after it (each of its
    dilated convolutions followed by an undilated one), and conv_post. A chunk decoded with this many frames of left
    context and lookahead equals the whole-sequence output in its own region (24 frames exactly for the default
    config; this bound gives 26)."""
    radius = (_OUTER_KERNEL - 1) / 2  # conv_pre, at 1 sample per frame
    rate = 1
    for upsample, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True):
        rate *= upsample
        radius += (kernel - 1) / rate
        widest = max(
            sum(d * (k - 1) / 2 + (k - 1) / 2 for d in dilations)
            # paired as SpeechT5HifiGan pairs them (the shorter list wins)
            for k, dilations in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=False)
        )
        radius += widest / rate
    radius += (_OUTER_KERNEL - 1) / 2 / rate  # conv_post
    return math.ceil(radius)


class SpeechT5HifiGanVocoder(DiTARVocoder, SpeechT5HifiGan):
    r"""
    transformers' [`SpeechT5HifiGan`] with the DiTAR vocoder interface: un-normalised log-mel `features [B, T, D]` ->
    `waveform [B, (T - 1) * hop_length]`. Same config and weights as `SpeechT5HifiGan`, so

    ```python
    vocoder = SpeechT5HifiGanVocoder.from_pretrained("microsoft/speecht5_hifigan")
    feature_extractor = DiTARFeatureExtractor.from_vocoder_preset("speecht5_hifigan")
    ```

    gives the pretrained vocoder and the features it was trained on (16 kHz, 80 mels, hop 256, log10). It saves with
    `save_pretrained` (config.json + model.safetensors) and a [`DiTARPipeline`] holds it as its `vocoder` component.

    The features are the log10-mel of `DiTARFeatureExtractor.compute_log_mel` with that preset; the vocoder applies
    its own mean/scale normalisation (`config.normalize_before`) as in transformers. `sampling_rate` is
    `config.sampling_rate` and `hop_length` the product of `config.upsample_rates`.

    Streaming: `streaming_left_context_frames` and `streaming_lookahead_frames` are the receptive field
    ([`receptive_field_frames`], 26 frames for the default config), so a chunk decoded with that context equals the
    whole-sequence output and chunks need no crossfade (`streaming_crossfade_samples = 0`). The price is about three
    times the computation per second of audio while streaming with 25-frame chunks.
    """

    feature_preset = FEATURE_PRESET

    def __init__(self, config: SpeechT5HifiGanConfig):
        if not isinstance(config, SpeechT5HifiGanConfig):
            raise TypeError(
                f"`config` must be a SpeechT5HifiGanConfig, got {type(config).__name__}; load a saved vocoder with "
                "`SpeechT5HifiGanVocoder.from_pretrained(path_or_repo_id)`."
            )
        if len(config.upsample_rates) != len(config.upsample_kernel_sizes) or not config.upsample_rates:
            raise ValueError(
                f"`upsample_rates` {list(config.upsample_rates)} and `upsample_kernel_sizes` "
                f"{list(config.upsample_kernel_sizes)} must be non-empty and of the same length."
            )
        super().__init__(config)
        radius = receptive_field_frames(config)
        self.streaming_left_context_frames = radius
        self.streaming_lookahead_frames = radius
        self.streaming_crossfade_samples = 0

    @property
    def sampling_rate(self) -> int:
        return int(self.config.sampling_rate)

    @property
    def hop_length(self) -> int:
        return math.prod(int(rate) for rate in self.config.upsample_rates)

    @property
    def num_mel_bins(self) -> int:
        return int(self.config.model_in_dim)

    def check_feature_extractor(self, feature_extractor) -> None:
        """Raises a `ValueError` naming every analysis setting of `feature_extractor` (a [`DiTARFeatureExtractor`])
        that differs from the features this vocoder was trained on (the `"speecht5_hifigan"` preset, at this
        vocoder's `sampling_rate`, mel bins and hop)."""
        from .feature_extraction_ditar import VOCODER_PRESETS

        expected = dict(VOCODER_PRESETS[FEATURE_PRESET])
        expected.update(sampling_rate=self.sampling_rate, feature_size=self.num_mel_bins, hop_length=self.hop_length)
        wrong = [
            f"{name}={getattr(feature_extractor, name, None)!r} (expected {value!r})"
            for name, value in expected.items()
            if getattr(feature_extractor, name, None) != value
        ]
        if wrong:
            raise ValueError(
                f"The feature extractor does not compute the features {type(self).__name__} was trained on: "
                f"{', '.join(wrong)}. Build it with `DiTARFeatureExtractor.from_vocoder_preset({FEATURE_PRESET!r})`."
            )

    def forward(self, features: torch.Tensor, **kwargs) -> torch.Tensor:
        """Log10-mel `features [B, T, D]` (or `[T, D]`, un-normalised) -> `waveform [B, (T - 1) * hop_length]`
        (float32). Runs in the dtype and on the device of the weights; keyword arguments are ignored (other vocoders
        take a `generator`)."""
        features = self._check_features(features, self.num_mel_bins)
        frames = features.shape[1]
        weight = self.conv_pre.weight
        waveform = SpeechT5HifiGan.forward(self, features.to(device=weight.device, dtype=weight.dtype))  # [B, T*hop]
        return waveform[:, : self.num_samples(frames)].float()


def build_speecht5_hifigan(**options) -> SpeechT5HifiGanVocoder:
    """A vocoder with random weights from the fields of a `SpeechT5HifiGanConfig` as its `to_dict()` /
    `to_diff_dict()` write them (the `vocoder_config` of a text-to-speech DiTAR config, minus `vocoder_type`); loading
    the model then fills the weights."""
    return SpeechT5HifiGanVocoder(SpeechT5HifiGanConfig.from_dict(options))

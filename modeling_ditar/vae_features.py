"""VAE latents as DiTAR's speech features (the paper models 64-dim VAE latents rather than mel frames).

Shapes: B batch, S samples, C audio channels of the VAE, T latent frames, D latent dim (`feature_dim`).

Any diffusers `AutoencoderOobleck` (the Stable Audio VAE) works: audio [B, C, S] -> `encode` -> latents [B, D, T] with
T = S // hop_length, and `decode` maps T latents back to T * hop_length samples. DiTAR works on [B, T, D] frames
normalised with per-channel statistics of the latents (`compute_latent_statistics`), exactly as it does with log-mel.

    vae = AutoencoderOobleck.from_pretrained("stabilityai/stable-audio-open-1.0", subfolder="vae")   # 64-dim, 44.1 kHz
    stats = compute_latent_statistics(vae, ["a.wav", "b.wav", ...])              # over the training data
    config = DiTARConfig(**ditar_config_kwargs(vae, stats), text_config=...)     # feature_dim = 64 from the VAE
    pipe = DiTARPipeline(model=model, processor=processor, scheduler=scheduler, vae=vae)   # no vocoder

In the pipeline the prompt audio is encoded to latents (`VAEPromptEncoder`, deterministic: the posterior mean) and the
generated latents are decoded to audio (`VAEVocoder`, mono: channels are averaged).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable

import numpy as np
import torch

from .audio_utils import load_audio, resample_audio, to_mono_float32
from .vocoders import DiTARVocoder

__all__ = [
    "VAEPromptEncoder",
    "VAEVocoder",
    "compute_latent_statistics",
    "ditar_config_kwargs",
    "encode_waveforms",
    "vae_decoder_reach",
    "vae_hop_length",
    "vae_latent_dim",
    "vae_sampling_rate",
]


def vae_latent_dim(vae) -> int:
    """Channels D of the VAE's latents (the DiTAR `feature_dim`)."""
    config = vae.config
    if "decoder_input_channels" in config:  # AutoencoderOobleck: the encoder emits mean and scale, 2 * D channels
        return int(config["decoder_input_channels"])
    if "latent_channels" in config:
        return int(config["latent_channels"])
    raise ValueError(f"cannot tell the latent size of {type(vae).__name__}; expected an AutoencoderOobleck.")


def vae_hop_length(vae) -> int:
    """Audio samples per latent frame (the product of the VAE's downsampling ratios)."""
    if getattr(vae, "hop_length", None):
        return int(vae.hop_length)
    return int(np.prod(vae.config["downsampling_ratios"]))


def vae_sampling_rate(vae) -> int:
    return int(vae.config["sampling_rate"])


def _audio_channels(vae) -> int:
    return int(vae.config.get("audio_channels", 1))


def _parameter(vae) -> torch.Tensor:
    return next(vae.parameters())


logger = logging.getLogger(__name__)

# decoder reach per VAE object: it depends on the architecture only, and the pipeline builds a VAEVocoder per call
_DECODER_REACH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PROBE_RADII = (16, 32, 64, 128)  # latent frames each side of the probed frame (a tiled decode starts above 512)


@torch.no_grad()
def vae_decoder_reach(vae) -> tuple[int, int]:
    """`(before, after)`: latent frames of context that a window of frames needs before its first frame and after its
    last one so that the VAE decodes the window's own samples exactly as it decodes them in the whole sequence.

    Measured once per VAE by perturbing one frame of a zero latent sequence and seeing which output samples change
    (any `decode` works, whatever its layers), with one frame of margin each side. A decoder that still reaches the
    probe's ends at its longest is given the longest probe's radius (with a warning): windows then only approximate
    whole-sequence decoding."""
    if vae in _DECODER_REACH:
        return _DECODER_REACH[vae]
    hop, weight = vae_hop_length(vae), _parameter(vae)
    for radius in _PROBE_RADII:
        latents = torch.zeros(2, vae_latent_dim(vae), 2 * radius + 1, device=weight.device, dtype=weight.dtype)
        latents[1, :, radius] = 1.0
        audio = vae.decode(latents).sample.float()  # [2, C, (2 * radius + 1) * hop]
        change = (audio[1] - audio[0]).abs().amax(dim=0)
        # rounding-level changes (a decoder kernel that mixes positions) are not reach
        changed = torch.nonzero(change > 1e-6 * change.max()).flatten()
        if changed.numel() == 0:
            reach = (1, 1)
            break
        first, last = int(changed[0]), int(changed[-1])
        if first > 0 and last < change.numel() - 1:
            # the probed frame changes samples [first, last]: later frames' samples need it as left context, earlier
            # frames' samples as lookahead
            reach = (max(0, last // hop - radius) + 1, max(0, radius - first // hop) + 1)
            break
    else:
        reach = (_PROBE_RADII[-1], _PROBE_RADII[-1])
        logger.warning(
            "the VAE decoder reaches past %d latent frames each side; streamed and chunked audio will differ slightly "
            "from decoding the whole sequence.",
            _PROBE_RADII[-1],
        )
    _DECODER_REACH[vae] = reach
    return reach


@torch.no_grad()
def encode_waveforms(
    vae, waveforms: list[torch.Tensor], generator: torch.Generator | None = None, sample: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mono waveforms at the VAE's rate -> un-normalised latents [B, T, D] (right-padded with zeros) and a [B, T] mask.

    Each clip is padded with zeros to a whole number of latent frames and encoded on its own (the encoder is
    convolutional, so padding a batch would change the edges). Mono audio is copied to every channel of a stereo VAE.
    `sample=False` takes the posterior mean (deterministic); `sample=True` draws from it with `generator`.
    """
    if not waveforms:
        raise ValueError("waveforms is empty; give at least one clip.")
    hop, channels, weight = vae_hop_length(vae), _audio_channels(vae), _parameter(vae)
    latents = []
    for index, waveform in enumerate(waveforms):
        wave = torch.as_tensor(waveform, dtype=torch.float32).flatten()
        if wave.numel() == 0:
            raise ValueError(f"waveform {index} is empty.")
        frames = max(1, -(-wave.numel() // hop))
        wave = torch.nn.functional.pad(wave, (0, frames * hop - wave.numel()))
        audio = wave[None, None].expand(1, channels, -1).to(device=weight.device, dtype=weight.dtype)  # [1, C, S]
        dist = vae.encode(audio).latent_dist
        z = dist.sample(generator=generator) if sample else dist.mean  # [1, D, T]
        latents.append(z[0].transpose(0, 1).float().cpu())  # [T, D]
    length = max(z.shape[0] for z in latents)
    out = torch.zeros(len(latents), length, latents[0].shape[1])
    mask = torch.zeros(len(latents), length, dtype=torch.long)
    for row, z in enumerate(latents):
        out[row, : z.shape[0]] = z
        mask[row, : z.shape[0]] = 1
    return out, mask


class VAEPromptEncoder:
    """Prompt audio -> normalised latents for [`DiTARProcessor.__call__`]'s `prompt_encoder`.

    `normalize` maps raw latents to the model's normalised space (the model's `normalize_features`)."""

    def __init__(self, vae, normalize: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.vae = vae
        self.normalize = normalize
        self.sampling_rate = vae_sampling_rate(vae)

    def __call__(self, waveforms: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        latents, mask = encode_waveforms(self.vae, waveforms)
        if self.normalize is not None:
            latents = self.normalize(latents) * mask[..., None]
        return latents, mask


class VAEVocoder(DiTARVocoder):
    """Un-normalised latents [B, T, D] -> mono waveform [B, (T - 1) * hop_length] through the VAE decoder.

    The decoder gives T * hop_length samples; the last hop is dropped so that the output follows the DiTAR vocoder
    convention that [`StreamingVocoder`] relies on (T frames -> (T - 1) * hop samples). The streaming context is the
    decoder's reach (`vae_decoder_reach`) and chunks need no crossfade, so chunked decoding equals decoding the whole
    sequence."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae
        self.sampling_rate = vae_sampling_rate(vae)
        self.hop_length = vae_hop_length(vae)
        self.latent_dim = vae_latent_dim(vae)
        self.streaming_left_context_frames, self.streaming_lookahead_frames = vae_decoder_reach(vae)
        self.streaming_crossfade_samples = 0

    @torch.no_grad()
    def forward(self, features: torch.Tensor, **kwargs) -> torch.Tensor:
        features = self._check_features(features, self.latent_dim)  # [B, T, D] float32
        weight = _parameter(self.vae)
        audio = self.vae.decode(features.transpose(1, 2).to(device=weight.device, dtype=weight.dtype)).sample
        audio = audio.float().mean(dim=1)  # [B, T * hop], channels averaged to mono
        return audio[:, : self.num_samples(features.shape[1])].cpu()


def _clips(audios: Iterable, sampling_rate: int | None) -> Iterable[tuple[torch.Tensor, int]]:
    for item in audios:
        if isinstance(item, dict):  # a `datasets` row or {"array", "sampling_rate"}
            array = item.get("array", item.get("audio"))
            yield to_mono_float32(np.asarray(array, dtype=np.float32), check_silence=False), int(item["sampling_rate"])
        elif isinstance(item, tuple):
            array, rate = item
            yield to_mono_float32(array, check_silence=False), int(rate)
        elif isinstance(item, (np.ndarray, torch.Tensor, list)):
            if sampling_rate is None:
                raise ValueError("arrays need `sampling_rate` (or give (array, rate) pairs or paths).")
            yield to_mono_float32(item, check_silence=False), int(sampling_rate)
        else:
            yield load_audio(item)


@torch.no_grad()
def compute_latent_statistics(vae, audios: Iterable, sampling_rate: int | None = None, min_std: float = 1e-5) -> dict:
    """Per-channel mean and standard deviation of the VAE latents over a dataset.

    Args:
        audios: paths, `(array, rate)` pairs, arrays at `sampling_rate`, or dicts with `array`/`audio` and
            `sampling_rate` (e.g. `datasets` audio dicts).
        min_std: floor of the standard deviation (a dead channel must not divide by zero).
    Returns:
        `{"feature_mean": [D], "feature_std": [D], "num_frames": int, "num_clips": int}` (float64 accumulation).
    """
    rate_out = vae_sampling_rate(vae)
    total = total_sq = None
    frames = clips = 0
    for waveform, rate in _clips(audios, sampling_rate):
        if rate != rate_out:
            waveform = resample_audio(waveform, rate, rate_out)
        latents, _ = encode_waveforms(vae, [waveform])
        z = latents[0].double()  # [T, D]
        total = z.sum(0) if total is None else total + z.sum(0)
        total_sq = (z * z).sum(0) if total_sq is None else total_sq + (z * z).sum(0)
        frames += z.shape[0]
        clips += 1
    if clips == 0:
        raise ValueError("no audio was given; statistics need at least one clip.")
    mean = total / frames
    std = (total_sq / frames - mean * mean).clamp(min=0).sqrt().clamp(min=min_std)
    return {"feature_mean": mean.tolist(), "feature_std": std.tolist(), "num_frames": frames, "num_clips": clips}


def ditar_config_kwargs(vae, statistics: dict | None = None) -> dict:
    """`DiTARConfig` keyword arguments that tie a model to `vae`: `feature_dim` and, with statistics, the
    normalisation (`feature_mean`, `feature_std`)."""
    kwargs = {"feature_dim": vae_latent_dim(vae)}
    if statistics is not None:
        for key in ("feature_mean", "feature_std"):
            if len(statistics[key]) != kwargs["feature_dim"]:
                raise ValueError(
                    f"statistics[{key!r}] has {len(statistics[key])} values but the VAE latents have "
                    f"{kwargs['feature_dim']} channels."
                )
            kwargs[key] = [float(v) for v in statistics[key]]
    return kwargs

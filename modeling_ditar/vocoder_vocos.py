"""Vocos neural vocoder (Siuzdak, 2023, "Vocos: Closing the gap between time-domain and Fourier-based neural
vocoders"): log-mel frames -> complex STFT frames -> inverse STFT, at the frame rate of the features throughout.

Shapes: B batch, T frames, D mel bins, H hidden size (`dim`), F = n_fft // 2 + 1 frequency bins, S samples.

features [B, T, D] --embed (Conv1d k=7) + LayerNorm--> [B, T, H] --num_layers ConvNeXt blocks (depthwise Conv1d k=7,
LayerNorm, Linear H->I, GELU, Linear I->H, layer scale, residual)--> final LayerNorm --head.out (Linear H->n_fft+2)-->
log-magnitude [B, F, T] and phase [B, F, T] --magnitude exp(.) capped at 1e2, phase via (cos, sin)--> complex STFT
--windowed inverse FFT + overlap-add, divided by the window envelope--> waveform [B, num_samples(T)]

Module and parameter names and shapes are those of the published Vocos checkpoints (`backbone.embed`, `backbone.norm`,
`backbone.convnext.{i}.{dwconv,norm,pwconv1,pwconv2,gamma}`, `backbone.final_layer_norm`, `head.out`), so their
weights map one to one; their `head.istft.window` buffer is rebuilt from the config here and is not saved.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .vocoders import DiTARVocoder, check_mel_options, feature_analysis_settings, overlap_add, padded_hann_window

__all__ = ["VocosVocoder"]

PADDINGS = ("center", "same")
PHASE_MODELS = ("direct", "integrated", "recurrent")
# Vocos' safeguard against exploding magnitudes (exp of the predicted log-magnitude)
MAX_MAGNITUDE = 1e2
# both magnitudes of a geometric mix are floored here first: the pseudo-inverse of the mel filter bank is near zero
# between some filter peaks, and a log of it would pull those bins to silence
MIX_MAGNITUDE_FLOOR = 1e-5
# overlap-add normalisation divides by the window envelope; below this it is treated as zero (no overlap)
MIN_ENVELOPE = 1e-11
CONV_KERNEL = 7
# the config fields that describe the input features (the rest describe the network)
ANALYSIS_SETTINGS = (
    "sampling_rate",
    "n_fft",
    "hop_length",
    "win_length",
    "num_mel_bins",
    "f_min",
    "f_max",
    "log_floor",
    "mel_scale",
    "mel_norm",
    "log_mel",
    "power",
)


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


class VocosConvNeXtBlock(nn.Module):
    """One ConvNeXt block on `[B, H, T]`: depthwise Conv1d (k=7) -> LayerNorm -> Linear H->I -> GELU -> Linear I->H ->
    per-channel layer scale `gamma [H]` -> residual. Keeps the shape `[B, H, T]`."""

    def __init__(self, dim: int, intermediate_dim: int, layer_scale_init: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=CONV_KERNEL, padding=CONV_KERNEL // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.layer_scale_init = float(layer_scale_init)
        self.gamma = nn.Parameter(torch.full((dim,), self.layer_scale_init))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        residual = hidden
        x = self.dwconv(hidden).transpose(1, 2)  # [B, T, H]
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        return residual + (self.gamma * x).transpose(1, 2)


class VocosBackbone(nn.Module):
    """Vocos' ConvNeXt backbone: `[B, D, T]` mel channels -> `[B, T, H]` hidden frames, at the same frame rate."""

    def __init__(self, input_channels: int, dim: int, intermediate_dim: int, num_layers: int, layer_scale_init: float):
        super().__init__()
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=CONV_KERNEL, padding=CONV_KERNEL // 2)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.convnext = nn.ModuleList(
            [VocosConvNeXtBlock(dim, intermediate_dim, layer_scale_init) for _ in range(num_layers)]
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.norm(self.embed(features).transpose(1, 2)).transpose(1, 2)  # [B, H, T]
        for block in self.convnext:
            hidden = block(hidden)
        return self.final_layer_norm(hidden.transpose(1, 2))  # [B, T, H]


class VocosISTFTHead(nn.Module):
    """Vocos' STFT head: hidden frames `[B, T, H]` -> complex STFT frames `[B, n_fft // 2 + 1, T]` (float32)."""

    def __init__(self, dim: int, n_fft: int):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        # the inverse FFT runs in float32 whatever dtype the layers are cast to (no half-precision CPU FFT)
        x = self.out(hidden).float().transpose(1, 2)  # [B, n_fft + 2, T]
        log_magnitude, phase = x.chunk(2, dim=1)
        magnitude = torch.exp(log_magnitude).clamp(max=MAX_MAGNITUDE)
        # (cos, sin) of the raw output: the phase wraps here, so it needs no range of its own
        return torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))


def _carried_phase_projection(dim: int, n_fft: int, hop_length: int, outputs: int) -> tuple[int, int, int, nn.Linear]:
    """(n_fft, hop_length, bins, projection) of a head that carries its phase across frames: a Linear from the hidden
    size to `outputs` values per bin, the first a log-magnitude, the others zero at the start (weights and biases)."""
    bins = n_fft // 2 + 1
    out = nn.Linear(dim, outputs * bins)
    nn.init.zeros_(out.weight[bins:])
    nn.init.zeros_(out.bias[bins:])
    return n_fft, hop_length, bins, out


class IntegratedPhaseISTFTHead(nn.Module):
    """An STFT head whose phase is integrated over time: `[B, T, H]` -> complex STFT frames `[B, F, T]` (float32).

    A convolutional network sees the same features in every frame of a steady sound, so a phase it predicts frame by
    frame cannot advance from one frame to the next as a steady partial's does (by its frequency times the hop). This
    head predicts what is local instead: per bin, the deviation of the instantaneous frequency from the bin's centre
    frequency and a phase offset. The phase of frame t is the centre frequency's exact advance over t hops, plus the sum
    of the deviations up to t, plus the offset, so a steady partial keeps advancing however long it lasts.

    The phase then depends on every earlier frame, so chunked decoding must carry the running sum from chunk to chunk
    (`initial_phase` in, the last frame's integrated deviation out).
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int):
        super().__init__()
        # log-magnitude, deviation, offset; no deviation and no offset at the start: a partial at each bin's centre
        self.n_fft, self.hop_length, self.bins, self.out = _carried_phase_projection(dim, n_fft, hop_length, 3)

    def centre_phase(self, start_frame: int, frames: int, device) -> torch.Tensor:
        """`[F, T]`: the phase of a partial at bin k's centre frequency in frame t, `2 pi k (t hop - n_fft / 2) /
        n_fft` (the inverse FFT puts a frame's time origin at its start, n_fft / 2 before its centre), computed modulo
        2 pi in integers so that it stays exact for any length."""
        k = torch.arange(self.bins, device=device)[:, None]
        t = torch.arange(start_frame, start_frame + frames, device=device)[None]
        turns = (k * (self.hop_length * t - self.n_fft // 2)) % self.n_fft
        return turns.float() * (2 * math.pi / self.n_fft)

    def forward(
        self, hidden: torch.Tensor, start_frame: int = 0, initial_phase: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.out(hidden).float().transpose(1, 2)  # [B, 3F, T]
        log_magnitude, deviation, offset = x.split(self.bins, dim=1)
        integrated = deviation.cumsum(dim=-1)
        if initial_phase is not None:
            integrated = integrated + initial_phase[..., None]
        phase = self.centre_phase(start_frame, x.shape[-1], x.device) + integrated + offset
        magnitude = torch.exp(log_magnitude).clamp(max=MAX_MAGNITUDE)
        spectrum = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        return spectrum, integrated[..., -1]


class RecurrentPhaseISTFTHead(nn.Module):
    """An STFT head whose phase is carried from frame to frame by a gated phasor per bin: `[B, T, H]` -> complex STFT
    frames `[B, F, T]` (float32).

    Per bin and frame the network predicts a log-magnitude, an instantaneous-frequency deviation `d` from the bin's
    centre frequency, a phase `p` and a gate `g` in (0, 1). The running phasor is

        z_t = g_t * z_{t-1} * exp(i (w_k hop + d_t)) + (1 - g_t) * exp(i (p_t - pi k))

    and the frame's phase is the angle of `z_t`. With the gate open a partial keeps advancing by its frequency over
    each hop however long it lasts (which a phase predicted frame by frame from unchanging features cannot do); closed,
    the phase restarts from the local prediction, so a new sound's bins take their relative phases from what the
    network sees around its onset rather than from the sum of everything before it (which integrating the frequency
    alone would impose). `w_k hop` is taken modulo 2 pi in integers; `- pi k` puts the phase origin at the frame start,
    as the inverse FFT does.
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int):
        super().__init__()
        # log-magnitude, deviation, phase, gate; no deviation, phase 0 and gate 0.5 at the start
        self.n_fft, self.hop_length, self.bins, self.out = _carried_phase_projection(dim, n_fft, hop_length, 4)
        k = torch.arange(self.bins)
        advance = (k * hop_length) % n_fft * (2 * math.pi / n_fft)
        origin = (k % 2) * math.pi  # pi k modulo 2 pi
        self.register_buffer("advance", torch.polar(torch.ones(self.bins), advance), persistent=False)
        self.register_buffer("origin", torch.polar(torch.ones(self.bins), -origin), persistent=False)

    def forward(self, hidden: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`(spectrum [B, F, T], last phasor [B, F])`; `state` is the phasor before the first frame (zero when None),
        for decoding a sequence in consecutive pieces."""
        x = self.out(hidden).float()  # [B, T, 4F]
        log_magnitude, deviation, phase, gate = x.split(self.bins, dim=-1)
        rotation = self.advance * torch.polar(torch.ones_like(deviation), deviation)  # [B, T, F]
        gate = torch.sigmoid(gate)
        fresh = (1 - gate) * (self.origin * torch.polar(torch.ones_like(phase), phase))
        z = torch.zeros_like(fresh[:, 0]) if state is None else state
        phasors = []
        for t in range(x.shape[1]):
            z = gate[:, t] * z * rotation[:, t] + fresh[:, t]
            phasors.append(z)
        phasor = torch.stack(phasors, dim=-1)  # [B, F, T]
        unit = phasor / phasor.abs().clamp(min=1e-6)
        magnitude = torch.exp(log_magnitude).clamp(max=MAX_MAGNITUDE).transpose(1, 2)
        return magnitude * unit, z


class VocosVocoder(DiTARVocoder, ModelMixin, ConfigMixin):
    r"""
    Vocos neural vocoder: un-normalised log-mel features -> waveform through a ConvNeXt backbone that predicts STFT
    magnitude and phase, and an inverse STFT. It is deterministic, differentiable (for GAN training) and fast on CPU.
    Weights are saved and loaded with diffusers' `save_pretrained` / `from_pretrained` (safetensors), so a
    [`DiTARPipeline`] can hold it as its `vocoder` component; a freshly built one has random weights and must be trained
    (or converted from a published Vocos checkpoint with the same analysis settings) before it makes speech.

    The analysis arguments describe the features the vocoder was trained on; they must equal the feature extractor's
    (a pipeline checks them). Build a matching vocoder with [`VocosVocoder.from_feature_extractor`].

    Args:
        sampling_rate (`int`, defaults to 16000), n_fft (`int`, defaults to 1280), hop_length (`int`, defaults to 320),
        win_length (`int`, *optional*, defaults to `n_fft`), num_mel_bins (`int`, defaults to 80), f_min (`float`,
        defaults to 0), f_max (`float`, *optional*, defaults to `sampling_rate / 2`), log_floor (`float`, defaults to
        1e-4), mel_scale (`str`, defaults to `"slaney"`), mel_norm (`str` or `None`, defaults to `"slaney"`), log_mel
        (`str`, defaults to `"log"`), power (`float`, defaults to 1.0): the analysis settings of the input features
        (the defaults are those of the default DiTAR model; Vocos' published checkpoints take HTK mels without filter
        normalisation, `mel_scale="htk", mel_norm=None`). `n_fft` and `win_length` are also the inverse STFT's, and
        `num_mel_bins` is the backbone's input width. The network never reads the mel settings: they record what it
        was trained on, so that `check_feature_extractor` can refuse other features.
        dim (`int`, defaults to 256): hidden size of the backbone.
        intermediate_dim (`int`, defaults to 768): hidden size inside each ConvNeXt block.
        num_layers (`int`, defaults to 8): number of ConvNeXt blocks.
        layer_scale_init (`float`, *optional*, defaults to `1 / num_layers`): initial value of each block's `gamma`.
        padding (`str`, defaults to `"center"`): framing of the inverse STFT. `"center"`: frame t is centred on sample
            `t * hop_length` (the feature extractor's framing), T frames give `(T - 1) * hop_length` samples.
            `"same"`: like a "same" convolution, T frames give `T * hop_length` samples (needs `n_fft - hop_length`
            even).
        phase (`str`, defaults to `"direct"`): how the head makes the phase. `"direct"`: Vocos' head, a phase per
            frame and bin (the published checkpoints). `"integrated"`: per bin, an instantaneous-frequency deviation
            summed over time plus an offset ([`IntegratedPhaseISTFTHead`]), so steady partials keep advancing; its
            output depends on every earlier frame, so it does not stream in independent windows. `"recurrent"`: a gated
            phasor per bin carried from frame to frame ([`RecurrentPhaseISTFTHead`]): it continues a partial's phase
            or restarts it from a local prediction; it does not stream in independent windows either.
        griffin_lim_iterations (`int`, *optional*): when set, the head's magnitude is inverted with that many
            Griffin-Lim iterations (momentum 0.99, seed 0, as [`GriffinLimVocoder`]) instead of with its own phase: a
            network trained on the STFT magnitude alone then replaces the mel filter bank's pseudo-inverse in front of
            Griffin-Lim. Streams like Griffin-Lim, in cross-faded windows.
        network_magnitude_weight (`float`, defaults to 1.0): with `griffin_lim_iterations`, the magnitude Griffin-Lim
            inverts is a geometric mix, the network's magnitude to this power times the mel filter bank's
            pseudo-inverse to the rest (both floored at 1e-5). 1 takes the network's alone; 0 the
            pseudo-inverse alone, as [`GriffinLimVocoder`] inverts it (but floored at 1e-5). A network trained on
            recordings sharpens the smoother features of generated speech into detail that was never there; a mix
            keeps part of the features' own spectrum while the network still cleans the signal.

    Output length: `num_samples(T)`, `(T - 1) * hop_length` for `"center"` and `T * hop_length` for `"same"`.

    Streaming: the output at a sample depends on a bounded number of frames around it, given by
    `streaming_left_context_frames` and `streaming_lookahead_frames`; [`StreamingVocoder`] uses them, so chunks decoded
    with that context equal the whole-sequence output (up to float rounding) and need no crossfade.
    """

    config_name = "config.json"
    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        sampling_rate: int = 16000,
        n_fft: int = 1280,
        hop_length: int = 320,
        win_length: int | None = None,
        num_mel_bins: int = 80,
        dim: int = 256,
        intermediate_dim: int = 768,
        num_layers: int = 8,
        layer_scale_init: float | None = None,
        padding: str = "center",
        f_min: float = 0.0,
        f_max: float | None = None,
        log_floor: float = 1e-4,
        mel_scale: str = "slaney",
        mel_norm: str | None = "slaney",
        log_mel: str = "log",
        power: float = 1.0,
        phase: str = "direct",
        griffin_lim_iterations: int | None = None,
        network_magnitude_weight: float = 1.0,
    ):
        super().__init__()
        for name, value in (
            ("sampling_rate", sampling_rate),
            ("n_fft", n_fft),
            ("hop_length", hop_length),
            ("num_mel_bins", num_mel_bins),
            ("dim", dim),
            ("intermediate_dim", intermediate_dim),
            ("num_layers", num_layers),
        ):
            _positive_int(value, name)
        win_length = n_fft if win_length is None else win_length
        if isinstance(win_length, bool) or not isinstance(win_length, int) or not hop_length <= win_length <= n_fft:
            raise ValueError(
                f"`win_length` must be an integer in [hop_length, n_fft] = [{hop_length}, {n_fft}], got {win_length!r}."
            )
        if phase not in PHASE_MODELS:
            raise ValueError(f"`phase` must be one of {PHASE_MODELS}, got {phase!r}.")
        if griffin_lim_iterations is not None:
            if isinstance(griffin_lim_iterations, bool) or not isinstance(griffin_lim_iterations, int):
                raise ValueError(
                    f"`griffin_lim_iterations` must be a non-negative integer or None, got {griffin_lim_iterations!r}."
                )
            if griffin_lim_iterations < 0:
                raise ValueError(f"`griffin_lim_iterations` must be >= 0, got {griffin_lim_iterations}.")
            if phase != "direct":
                raise ValueError(
                    f"`griffin_lim_iterations` takes the phase from Griffin-Lim, so `phase` must be 'direct' (its "
                    f"output is then unused), got {phase!r}."
                )
        if not (
            isinstance(network_magnitude_weight, (int, float))
            and not isinstance(network_magnitude_weight, bool)
            and 0.0 <= network_magnitude_weight <= 1.0
        ):
            raise ValueError(f"`network_magnitude_weight` must be a float in [0, 1], got {network_magnitude_weight!r}.")
        if network_magnitude_weight != 1.0 and griffin_lim_iterations is None:
            raise ValueError(
                "`network_magnitude_weight` mixes the network's magnitude with the features' pseudo-inverse in front "
                "of Griffin-Lim, so it needs `griffin_lim_iterations`; set it, or leave the weight at 1.0."
            )
        if padding not in PADDINGS:
            raise ValueError(f"`padding` must be one of {PADDINGS}, got {padding!r}.")
        if padding == "same" and (n_fft - hop_length) % 2:
            raise ValueError(
                f'padding="same" trims (n_fft - hop_length) / 2 samples at each end, so n_fft - hop_length must be '
                f"even; got n_fft={n_fft}, hop_length={hop_length}. Use padding='center' or an even difference."
            )
        layer_scale = 1.0 / num_layers if layer_scale_init is None else layer_scale_init
        if not (isinstance(layer_scale, (int, float)) and not isinstance(layer_scale, bool) and layer_scale > 0):
            raise ValueError(
                f"`layer_scale_init` must be a positive float (or None for 1 / num_layers), got {layer_scale!r}."
            )
        f_max_value = check_mel_options(sampling_rate, f_min, f_max, mel_scale, mel_norm, log_mel, power)
        if not (isinstance(log_floor, (int, float)) and math.isfinite(log_floor) and log_floor > 0):
            raise ValueError(f"`log_floor` must be a positive finite float, got {log_floor!r}.")

        # plain attributes (the DiTARVocoder interface, and what a pipeline compares with its feature extractor)
        self.sampling_rate = sampling_rate
        self.hop_length = hop_length
        self.n_fft = n_fft
        self.win_length = win_length
        self.num_mel_bins = num_mel_bins
        self.f_min, self.f_max, self.log_floor = float(f_min), f_max_value, float(log_floor)
        self.mel_scale, self.mel_norm, self.log_mel, self.power = mel_scale, mel_norm, log_mel, float(power)
        self.padding = padding

        self.backbone = VocosBackbone(num_mel_bins, dim, intermediate_dim, num_layers, float(layer_scale))
        self.phase = phase
        if phase == "integrated":
            self.head = IntegratedPhaseISTFTHead(dim, n_fft, hop_length)
        elif phase == "recurrent":
            self.head = RecurrentPhaseISTFTHead(dim, n_fft, hop_length)
        else:
            self.head = VocosISTFTHead(dim, n_fft)
        self._initialize_backbone()
        # non-persistent: rebuilt from the config, never saved, but follows `.to(device)`
        self.register_buffer("window", self._build_window(), persistent=False)
        self._check_overlap()

        # Receptive field in frames: the embedding and every block's depthwise conv see 3 frames on each side; a sample
        # then mixes the inverse FFTs of the frames whose n_fft-sample span covers it (`_frame_span`).
        conv_reach = (CONV_KERNEL // 2) * (num_layers + 1)
        before, after = self._frame_span()
        self.griffin_lim_iterations = griffin_lim_iterations
        self.network_magnitude_weight = float(network_magnitude_weight)
        self._magnitude_context_frames = conv_reach
        if griffin_lim_iterations is None:
            # A chunk decoded with these many frames around it equals the whole-sequence output where it owns samples,
            # so streamed audio needs no crossfade. Fewer frames would lower the latency (the lookahead is what a
            # stream waits for) at the price of chunk seams: the outermost frames of the receptive field contribute
            # little after training, but the result would no longer equal one-shot decoding, which streaming promises.
            self.streaming_left_context_frames = conv_reach + before
            self.streaming_lookahead_frames = conv_reach + after
            self.streaming_crossfade_samples = 0
        else:
            # Griffin-Lim's phase differs from window to window: a stream decodes windows as Griffin-Lim's own do
            # (its default context on each side, cross-faded joins), and each window's magnitude is computed from the
            # window's frames and `conv_reach` frames before it (`decode_stream_window`), never from later frames, so
            # a stream and a one-shot call (which decodes the same windows) give the same audio.
            self.streaming_left_context_frames = None
            self.streaming_lookahead_frames = None
            self.streaming_crossfade_samples = None
        # why this vocoder cannot be decoded in windows at all (None: it can), for `StreamingVocoder` to refuse it
        self.streaming_unsupported_reason = None
        if phase != "direct":
            self.streaming_unsupported_reason = (
                f"this vocoder carries its phase over the whole sequence (phase={phase!r}), so windows decoded apart "
                "do not join into its one-shot output; decode the whole sequence, or use a vocoder with "
                "phase='direct' or Griffin-Lim for streaming"
            )

    def _initialize_backbone(self):
        # Vocos' backbone initialisation: truncated normal (std 0.02) weights and zero biases for convs and linears
        for module in self.backbone.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def _build_window(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Periodic Hann window of `win_length`, zero-padded to `n_fft` in the middle as `torch.istft` pads it."""
        return padded_hann_window(self.win_length, self.n_fft, device=device)

    def _build_buffers(self) -> dict[str, torch.Tensor]:
        """The config-derived buffers (what a model loading this vocoder on the meta device must rebuild)."""
        return {"window": self._build_window()}

    @property
    def _trim(self) -> int:
        """Samples dropped at the start of the overlap-added signal: frame t's centre (`"center"`) or the
        (n_fft - hop) / 2 samples a "same" convolution pads (`"same"`) lands on sample `t * hop_length`."""
        return self.n_fft // 2 if self.padding == "center" else (self.n_fft - self.hop_length) // 2

    def _frame_span(self) -> tuple[int, int]:
        """(frames before, frames after) a sample's own frame whose n_fft-sample span can cover it. Frame t covers
        output samples [t * hop - trim, t * hop - trim + n_fft); the samples of frames [a, b) need frames
        [a - before, b - 1 + after]."""
        before = math.ceil((self.n_fft - self._trim) / self.hop_length) - 1
        after = (self._trim - 1) // self.hop_length + 1 if self._trim > 0 else 0
        return before, after

    def _check_overlap(self):
        """The inverse STFT divides by the window envelope; a hop too long for the window leaves samples no frame
        covers with a non-zero weight (its reconstruction is undefined), so such settings are refused up front."""
        frames = 2 * math.ceil(self.n_fft / self.hop_length) + 2
        # on CPU explicitly: a model may be built on the meta device, where values cannot be read
        envelope = self._envelope(frames, self._build_window(device="cpu"))
        if float(envelope.min()) <= MIN_ENVELOPE:
            raise ValueError(
                f"hop_length={self.hop_length} is too long for a {self.win_length}-sample Hann window: some samples "
                "get no weight in the overlap-add. Use a shorter hop_length or a longer win_length."
            )

    def num_samples(self, num_frames: int) -> int:
        """`(T - 1) * hop_length` output samples for `"center"` padding (the feature extractor's framing), `T *
        hop_length` for `"same"`."""
        if self.padding == "same":
            return max(int(num_frames), 0) * int(self.hop_length)
        return super().num_samples(num_frames)

    @classmethod
    def from_feature_extractor(cls, feature_extractor, **kwargs) -> VocosVocoder:
        """Builds a vocoder whose analysis settings match `feature_extractor` (a [`DiTARFeatureExtractor`]); keyword
        arguments set the architecture (`dim`, `intermediate_dim`, `num_layers`, `layer_scale_init`, `padding`)."""
        analysis = sorted(set(kwargs) & set(ANALYSIS_SETTINGS))
        if analysis:
            raise ValueError(
                f"from_feature_extractor takes {analysis} from the feature extractor; build the feature extractor with "
                "the settings you want, or call VocosVocoder(...) directly."
            )
        return cls(**feature_analysis_settings(feature_extractor, with_log_floor=True), **kwargs)

    def check_feature_extractor(self, feature_extractor) -> None:
        """Raises a `ValueError` naming every analysis setting (sampling rate, n_fft, hop, window, mel bins, mel band,
        log floor, mel scale and normalisation, logarithm and power) in which `feature_extractor` (a
        [`DiTARFeatureExtractor`]) differs from the features this vocoder expects, with both values; a pipeline calls
        it when it is built."""
        self._raise_on_feature_mismatch(
            {name: getattr(self, name) for name in ANALYSIS_SETTINGS},
            feature_extractor,
            "expects",
            "Use a vocoder trained on this feature extractor's settings (`VocosVocoder.from_feature_extractor` "
            "builds an untrained one) or the feature extractor the vocoder was trained with.",
        )

    def _apply(self, fn, recurse=True):
        """Moves and casts like any module, but keeps the window float32: the inverse FFT runs in float32 whatever
        dtype the layers are cast to, and a half-precision Hann window would be rounded."""
        super()._apply(fn, recurse)
        window = self._buffers.get("window")
        if window is not None and window.dtype != torch.float32 and window.device.type != "meta":
            self._buffers["window"] = self._build_window().to(window.device)
        return self

    def _envelope(self, frames: int, window: torch.Tensor) -> torch.Tensor:
        """Sum of the squared windows over `frames` frames, trimmed like the signal: `[num_samples(frames)]`."""
        folded = overlap_add(window.square().expand(1, frames, self.n_fft), self.hop_length)
        return folded[0, self._trim : self._trim + self.num_samples(frames)]

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        """Inverse STFT of complex frames `[B, n_fft // 2 + 1, T]` -> `[B, num_samples(T)]`: windowed inverse FFT,
        overlap-add and division by the window envelope, trimmed to the configured padding."""
        frames = spec.shape[-1]
        window = self.window.float()
        chunks = torch.fft.irfft(spec.transpose(1, 2), n=self.n_fft, dim=-1) * window  # [B, T, n_fft]
        signal = overlap_add(chunks, self.hop_length)[:, self._trim : self._trim + self.num_samples(frames)]  # [B, S]
        return signal / self._envelope(frames, window)

    def forward(
        self, features: torch.Tensor, return_spectrum: bool = False, **kwargs
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised log-mel `features [B, T, D]` (or `[T, D]`) -> `waveform [B, num_samples(T)]` (float32).

        Differentiable (no `torch.no_grad` here; wrap inference calls in it). Computes on the vocoder's device and
        returns the waveform on the features' device. With `return_spectrum=True` it returns `(waveform, spectrum)`,
        the complex STFT frames `[B, n_fft // 2 + 1, T]` the waveform was inverted from (on the vocoder's device), for
        losses that supervise them directly. Keyword arguments other vocoders take (e.g. `generator`) are accepted and
        ignored: the output is deterministic.
        """
        features = self._check_features(features, self.num_mel_bins)  # [B, T, D] float32
        spectrum = self.spectrum(features)  # [B, F, T] complex64
        if self.griffin_lim_iterations is not None:
            # a loss on this waveform reaches the magnitude through Griffin-Lim's last inverse STFT (its phases held),
            # so it teaches the magnitude that sounds right with Griffin-Lim's phases
            magnitude = self._griffin_lim_magnitude(spectrum.abs(), features)
            waveform = self._griffin_lim(spectrum.device)._invert(magnitude, None, None, None)
        else:
            waveform = self.istft(spectrum)  # [B, S] float32
        waveform = waveform.to(features.device)
        return (waveform, spectrum) if return_spectrum else waveform

    def spectrum(self, features: torch.Tensor) -> torch.Tensor:
        """Checked log-mel `features [B, T, D]` -> the head's complex STFT frames `[B, n_fft // 2 + 1, T]` (float32,
        on the vocoder's device), before any inversion."""
        weight = self.backbone.embed.weight
        hidden = self.backbone(features.to(device=weight.device, dtype=weight.dtype).transpose(1, 2))  # [B, T, H]
        spectrum = self.head(hidden)
        # the heads that carry their phase also return their running state: one call decodes the whole sequence
        return spectrum if self.phase == "direct" else spectrum[0]

    def _griffin_lim_magnitude(self, magnitude: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The magnitude Griffin-Lim inverts: the network's `magnitude [B, F, T]`, or its geometric mix with the
        pseudo-inverse of the same frames' checked `features [B, T, D]` (`network_magnitude_weight`)."""
        weight = self.network_magnitude_weight
        if weight == 1.0:
            return magnitude
        pseudo = self._griffin_lim(magnitude.device).mel_to_magnitude(features.to(magnitude.device))
        log_mix = weight * magnitude.clamp(min=MIX_MAGNITUDE_FLOOR).log()
        return torch.exp(log_mix + (1.0 - weight) * pseudo.clamp(min=MIX_MAGNITUDE_FLOOR).log())

    def _griffin_lim(self, device) -> torch.nn.Module:
        """The Griffin-Lim inverter of `griffin_lim_iterations` (the default's momentum and seed), built on first use
        from this vocoder's analysis settings and kept out of the module tree (it has no weights to save or load)."""
        from .vocoder_griffinlim import GriffinLimVocoder

        inverter = self.__dict__.get("_griffin_lim_inverter")
        if inverter is None:
            analysis = {name: getattr(self, name) for name in ANALYSIS_SETTINGS if name != "log_floor"}
            inverter = GriffinLimVocoder(**analysis, n_iter=self.griffin_lim_iterations)
        if inverter.window.device != torch.device(device):
            inverter = inverter.to(device)
        self.__dict__["_griffin_lim_inverter"] = inverter
        return inverter

    @torch.no_grad()
    def decode_stream_window(self, features: torch.Tensor, start: int, end: int, state: dict) -> torch.Tensor:
        """What `StreamingVocoder` calls to decode frames `[start, end)` of `features [T, D]` (every frame so far).
        With `griffin_lim_iterations`, the magnitude of those frames is computed from them and the frames before them
        that the network sees (never from later frames, which a stream may not have yet), then inverted with
        Griffin-Lim; otherwise this is `self(features[None, start:end])`."""
        if self.griffin_lim_iterations is None:
            return self(features[None, start:end])
        first = max(0, start - self._magnitude_context_frames)
        window = self._check_features(features[None, first:end], self.num_mel_bins)
        magnitude = self._griffin_lim_magnitude(
            self.spectrum(window).abs()[..., start - first :], window[:, start - first :]
        )
        return self._griffin_lim(magnitude.device)._invert(magnitude, None, None, None).to(features.device)

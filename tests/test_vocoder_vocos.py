"""Tests of the Vocos neural vocoder (tiny configs: dim 16, 2 layers; CPU, offline)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from pipeline_helpers import (
    HOP,
    N_FFT,
    get_dummy_components,
    get_dummy_feature_extractor,
    get_dummy_inputs,
    get_dummy_pipeline,
    get_dummy_processor,
    tone,
)
from test_remote_code import HIDE_PACKAGE, ROOT
from transformers import AutoModel, AutoModelForTextToWaveform, AutoProcessor

import modeling_ditar
from modeling_ditar import (
    DiTARForConditionalGeneration,
    DiTARForTextToSpeech,
    DiTARPipeline,
    DiTARVocoder,
    StreamingVocoder,
    VocosVocoder,
)
from modeling_ditar.modeling_ditar import build_vocoder

TINY = dict(dim=16, intermediate_dim=32, num_layers=2)


def tiny_vocoder(padding: str = "center", seed: int = 0, **kwargs) -> VocosVocoder:
    """A tiny vocoder for the dummy feature extractor (8 kHz, 8 mel bins, hop 16, n_fft 64), with weights large
    enough that every frame of the receptive field changes the output measurably, and audio peaks of about 0.4 (as
    a trained vocoder's), so absolute tolerances mean what they would in use."""
    torch.manual_seed(seed)
    vocoder = VocosVocoder.from_feature_extractor(get_dummy_feature_extractor(), padding=padding, **{**TINY, **kwargs})
    with torch.no_grad():
        for block in vocoder.backbone.convnext:
            block.gamma.fill_(1.0)
        vocoder.head.out.weight.mul_(4.0)
        vocoder.head.out.bias[: N_FFT // 2 + 1].fill_(-3.0)  # log-magnitudes around -3
    return vocoder.eval()


def log_mel(frames: int, seed: int = 0) -> torch.Tensor:
    """Plausible un-normalised log-mel frames [T, D] of the dummy feature extractor (a tone plus noise)."""
    fe = get_dummy_feature_extractor()
    base = fe.compute_log_mel(torch.from_numpy(tone(frames * HOP / fe.sampling_rate + 0.01)))[:frames]
    return base + 0.3 * torch.randn(base.shape, generator=torch.Generator().manual_seed(seed))


def pushed(streamer: StreamingVocoder, frames: torch.Tensor, sizes) -> list[torch.Tensor]:
    """The chunks a fresh stream returns for `frames [T, D]` pushed in pieces of `sizes` frames, then flushed."""
    streamer.reset()
    chunks, start = [], 0
    for size in sizes:
        chunks += streamer.push(frames[start : start + size])
        start += size
    return chunks + streamer.flush()


# ----------------------------------------------------------------------------------------------------------------------
# the module


def test_parameter_names_and_shapes_are_those_of_vocos_checkpoints():
    vocoder = VocosVocoder(num_mel_bins=8, n_fft=64, hop_length=16, sampling_rate=8000, **TINY)
    dim, inter = TINY["dim"], TINY["intermediate_dim"]
    expected = {
        "backbone.embed.weight": (dim, 8, 7),
        "backbone.embed.bias": (dim,),
        "backbone.norm.weight": (dim,),
        "backbone.norm.bias": (dim,),
        "backbone.final_layer_norm.weight": (dim,),
        "backbone.final_layer_norm.bias": (dim,),
        "head.out.weight": (64 + 2, dim),
        "head.out.bias": (64 + 2,),
    }
    for i in range(TINY["num_layers"]):
        block = f"backbone.convnext.{i}"
        expected.update(
            {
                f"{block}.dwconv.weight": (dim, 1, 7),
                f"{block}.dwconv.bias": (dim,),
                f"{block}.norm.weight": (dim,),
                f"{block}.norm.bias": (dim,),
                f"{block}.pwconv1.weight": (inter, dim),
                f"{block}.pwconv1.bias": (inter,),
                f"{block}.pwconv2.weight": (dim, inter),
                f"{block}.pwconv2.bias": (dim,),
                f"{block}.gamma": (dim,),
            }
        )
    assert {k: tuple(v.shape) for k, v in vocoder.state_dict().items()} == expected
    # layer scale starts at 1 / num_layers, LayerNorms use eps 1e-6 (as in Vocos)
    assert torch.equal(vocoder.backbone.convnext[0].gamma, torch.full((dim,), 0.5))
    assert vocoder.backbone.norm.eps == vocoder.backbone.convnext[1].norm.eps == 1e-6
    assert VocosVocoder(**TINY, layer_scale_init=0.1).backbone.convnext[1].gamma[0].item() == pytest.approx(0.1)


def test_defaults_match_the_default_model_features():
    processor_config = modeling_ditar.pipeline_ditar.EMBEDDED_DEFAULT / "processor" / "processor_config.json"
    fe = json.loads(processor_config.read_text())["feature_extractor"]
    vocoder = VocosVocoder()
    assert isinstance(vocoder, DiTARVocoder)
    config = vocoder.config
    assert (config.sampling_rate, config.n_fft, config.hop_length, config.num_mel_bins) == (
        fe["sampling_rate"],
        fe["n_fft"],
        fe["hop_length"],
        fe["feature_size"],
    )
    assert (vocoder.f_min, vocoder.f_max, vocoder.log_floor) == (fe["f_min"], fe["f_max"], fe["log_floor"])
    assert (config.dim, config.intermediate_dim, config.num_layers, config.padding) == (256, 768, 8, "center")


def test_from_feature_extractor_copies_the_analysis_settings():
    fe = get_dummy_feature_extractor(log_floor=1e-3, f_min=50.0, f_max=3000.0)
    vocoder = VocosVocoder.from_feature_extractor(fe, padding="same", **TINY)
    assert (vocoder.sampling_rate, vocoder.hop_length, vocoder.n_fft, vocoder.num_mel_bins) == (8000, HOP, N_FFT, 8)
    assert (vocoder.f_min, vocoder.f_max, vocoder.log_floor) == (50.0, 3000.0, 1e-3)
    assert vocoder.config.padding == "same" and vocoder.config.dim == 16
    with pytest.raises(ValueError, match="takes \\['hop_length'\\] from the feature extractor"):
        VocosVocoder.from_feature_extractor(fe, hop_length=32, **TINY)


def test_the_mel_options_are_recorded_checked_and_default_for_old_configs(tmp_path):
    vocos_features = modeling_ditar.DiTARFeatureExtractor.from_vocoder_preset("vocos_mel_24khz")
    vocoder = VocosVocoder.from_feature_extractor(vocos_features, **TINY)
    assert (vocoder.mel_scale, vocoder.mel_norm, vocoder.log_mel, vocoder.power) == ("htk", None, "log", 1.0)
    vocoder.check_feature_extractor(vocos_features)
    # the same STFT, band, floor and logarithm with Slaney mels: only the filter bank differs, and the check sees it
    slaney = modeling_ditar.DiTARFeatureExtractor(
        feature_size=100, f_max=12000.0, log_floor=1e-7, mel_scale="slaney", mel_norm="slaney"
    )
    with pytest.raises(ValueError) as error:
        vocoder.check_feature_extractor(slaney)
    assert (
        "mel_scale: vocoder 'htk', feature extractor 'slaney'; mel_norm: vocoder None, feature extractor 'slaney'"
        in (str(error.value))
    )
    with pytest.raises(ValueError, match="takes \\['mel_scale'\\] from the feature extractor"):
        VocosVocoder.from_feature_extractor(vocos_features, mel_scale="slaney", **TINY)

    # a config saved before these options existed loads with the features it was trained on: Slaney, natural log
    old = tiny_vocoder()
    old.save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(
        json.dumps({k: v for k, v in config.items() if k not in ("mel_scale", "mel_norm", "log_mel", "power")})
    )
    loaded = VocosVocoder.from_pretrained(tmp_path)
    assert (loaded.config.mel_scale, loaded.config.mel_norm, loaded.config.log_mel, loaded.config.power) == (
        "slaney",
        "slaney",
        "log",
        1.0,
    )
    loaded.check_feature_extractor(get_dummy_feature_extractor())
    with torch.no_grad():
        assert torch.equal(loaded(log_mel(12)[None]), old(log_mel(12)[None]))


@pytest.mark.parametrize("padding, extra", [("center", -1), ("same", 0)])
def test_output_length_follows_the_padding(padding, extra):
    vocoder = tiny_vocoder(padding)
    for frames in (1, 2, 7, 40):
        audio = vocoder(log_mel(frames)[None])
        assert audio.shape == (1, (frames + extra) * HOP) == (1, vocoder.num_samples(frames))
        assert audio.dtype == torch.float32 and torch.isfinite(audio).all()
    assert vocoder(log_mel(5)).shape == (1, vocoder.num_samples(5))  # [T, D] gets a batch axis


def test_center_padding_is_torch_istft_and_same_padding_is_shifted_by_half_a_hop():
    center, same = tiny_vocoder("center"), tiny_vocoder("same")
    frames = 30
    with torch.no_grad():
        spec = center.head(center.backbone(log_mel(frames)[None].transpose(1, 2)))
        reference = torch.istft(spec, N_FFT, HOP, N_FFT, torch.hann_window(N_FFT), center=True)
        torch.testing.assert_close(center.istft(spec), reference, atol=1e-6, rtol=0)
        # "same" frames start (n_fft - hop) / 2 samples before a centred frame would: its sample hop / 2 + n is the
        # centred output's sample n, and it has one more hop of samples
        shifted = same.istft(spec)[:, HOP // 2 : HOP // 2 + (frames - 1) * HOP]
        torch.testing.assert_close(shifted, center.istft(spec), atol=1e-6, rtol=0)


def test_a_shorter_window_is_zero_padded_like_torch_istft():
    vocoder = VocosVocoder.from_feature_extractor(get_dummy_feature_extractor(win_length=48), **TINY)
    with torch.no_grad():
        spec = vocoder.head(vocoder.backbone(log_mel(20)[None].transpose(1, 2)))
        window = torch.hann_window(48)
        torch.testing.assert_close(
            vocoder.istft(spec), torch.istft(spec, N_FFT, HOP, 48, window, center=True), atol=1e-6, rtol=0
        )


def test_deterministic_and_batch_independent():
    vocoder = tiny_vocoder()
    batch = torch.stack([log_mel(20, seed=1), log_mel(20, seed=2)])
    with torch.no_grad():
        together = vocoder(batch)
        alone = vocoder(batch[1:])
        assert torch.equal(vocoder(batch), together)
    torch.testing.assert_close(together[1:], alone, atol=1e-6, rtol=0)
    assert not torch.allclose(together[0], together[1])


def test_gradients_reach_every_parameter():
    vocoder = tiny_vocoder().train()
    features = log_mel(24)[None].requires_grad_(True)
    vocoder(features).square().mean().backward()
    for name, parameter in vocoder.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_magnitude_is_capped():
    vocoder = tiny_vocoder()
    with torch.no_grad():
        vocoder.head.out.bias[: N_FFT // 2 + 1].fill_(50.0)  # log-magnitude 50: exp would overflow the audio
        spec = vocoder.head(vocoder.backbone(log_mel(10)[None].transpose(1, 2)))
    assert float(spec.abs().max()) <= 100.0 * (1 + 1e-6)


def test_casting_keeps_the_window_and_output_float32():
    vocoder = tiny_vocoder().to(torch.bfloat16)
    assert vocoder.backbone.embed.weight.dtype == torch.bfloat16 and vocoder.window.dtype == torch.float32
    torch.testing.assert_close(vocoder.window, torch.hann_window(N_FFT))
    with torch.no_grad():
        audio = vocoder(log_mel(10)[None])
    assert audio.dtype == torch.float32 and torch.isfinite(audio).all()


def test_save_load_round_trip(tmp_path):
    vocoder = tiny_vocoder("same")
    vocoder.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = VocosVocoder.from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(vocoder.config)
    assert "window" not in loaded.state_dict()  # rebuilt from the config
    with torch.no_grad():
        assert torch.equal(loaded(log_mel(12)[None]), vocoder(log_mel(12)[None]))


# ----------------------------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "features, match",
    [
        (torch.zeros(1, 5, 80), r"shape \[B, T, 8\]"),
        (torch.zeros(1, 0, 8), "no frames"),
        (torch.full((1, 5, 8), float("nan")), "NaN"),
        (torch.zeros(1, 5, 8, dtype=torch.long), "floating point"),
        ([[0.0] * 8], "torch.Tensor"),
    ],
)
def test_bad_features_raise(features, match):
    with pytest.raises(ValueError, match=match):
        tiny_vocoder()(features)


def test_a_waveform_loss_reaches_the_learned_magnitude_through_the_last_inverse_stft():
    """Trained through Griffin-Lim, the waveform keeps a graph to the magnitude through the last inverse STFT only:
    its gradient is that of the inverse STFT with Griffin-Lim's final phases held fixed, and the audio is the
    inference audio."""
    from modeling_ditar import GriffinLimVocoder

    vocoder = tiny_vocoder(griffin_lim_iterations=3)
    features = log_mel(20)[None]
    audio, spectrum = vocoder(features, return_spectrum=True)
    with torch.no_grad():
        assert torch.equal(audio, vocoder(features))
    spectrum.retain_grad()
    target = torch.randn_like(audio)
    (audio - target).square().sum().backward()
    assert spectrum.grad is not None and spectrum.grad.abs().sum() > 0
    griffin_lim = GriffinLimVocoder.from_feature_extractor(get_dummy_feature_extractor(), n_iter=3)
    held = griffin_lim._phases(spectrum.detach().abs(), None, None, None)
    fixed = spectrum.detach().clone().requires_grad_(True)
    (griffin_lim._istft(fixed.abs() * held, audio.shape[-1]) - target).square().sum().backward()
    torch.testing.assert_close(spectrum.grad, fixed.grad)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"padding": "valid"}, "padding"),
        ({"n_fft": 64, "hop_length": 15, "win_length": 64, "padding": "same"}, "even"),
        ({"n_fft": 64, "hop_length": 16, "win_length": 128}, "win_length"),
        ({"n_fft": 64, "hop_length": 64}, "too long"),
        ({"num_layers": 0}, "num_layers"),
        ({"dim": 1.5}, "dim"),
        ({"layer_scale_init": 0.0}, "layer_scale_init"),
        ({"f_max": 9000.0}, "f_max"),
        ({"log_floor": -1.0}, "log_floor"),
        ({"mel_scale": "kaldi"}, "mel_scale"),
        ({"mel_norm": "area"}, "mel_norm"),
        ({"log_mel": "ln"}, "log_mel"),
        ({"power": -1.0}, "power"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        VocosVocoder(sampling_rate=8000, num_mel_bins=8, **{"n_fft": 64, "hop_length": 16, **TINY, **kwargs})


# ----------------------------------------------------------------------------------------------------------------------
# streaming


def frames_reached(vocoder: VocosVocoder, frames: torch.Tensor, sample: int) -> tuple[int, int]:
    """(first, last) input frame whose value changes output `sample` (the exact receptive field, by autograd)."""
    features = frames.clone()[None].requires_grad_(True)
    vocoder(features)[0, sample].backward()
    reached = features.grad[0].abs().sum(-1).nonzero().flatten()
    return int(reached.min()), int(reached.max())


@pytest.mark.parametrize("padding", ["center", "same"])
def test_streaming_context_is_the_exact_receptive_field(padding):
    """The samples of frames [a, b) depend on frames [a - left, b - 1 + lookahead] and no others, so the streaming
    context is both sufficient (exact chunks) and the least that is."""
    vocoder = tiny_vocoder(padding)
    frames, a, b = log_mel(80), 30, 40
    left, lookahead = vocoder.streaming_left_context_frames, vocoder.streaming_lookahead_frames
    assert (left, lookahead) == ({"center": (10, 11), "same": (11, 11)}[padding])
    assert frames_reached(vocoder, frames, a * HOP)[0] == a - left
    assert frames_reached(vocoder, frames, b * HOP - 1)[1] == b - 1 + lookahead
    assert vocoder.streaming_crossfade_samples == 0


def test_streaming_vocoder_takes_the_vocoders_context_and_griffin_lim_keeps_its_own():
    vocoder = tiny_vocoder()
    streamer = StreamingVocoder(vocoder)
    assert (streamer.left, streamer.lookahead, streamer.crossfade) == (10, 11, 0)
    assert StreamingVocoder(vocoder, left_context_frames=2, lookahead_frames=3).left == 2  # explicit values win
    griffin_lim = get_dummy_processor().build_vocoder(n_iter=2)
    streamer = StreamingVocoder(griffin_lim)
    assert (streamer.left, streamer.lookahead, streamer.crossfade) == (8, 8, 2 * HOP)


@pytest.mark.parametrize("padding", ["center", "same"])
@pytest.mark.parametrize("sizes", [[200], [1] * 90, [2] * 45, [7, 30, 3, 50]], ids=["one", "ones", "patches", "uneven"])
def test_streamed_chunks_equal_one_shot_and_whole_sequence_vocoding(padding, sizes):
    vocoder = tiny_vocoder(padding)
    frames = log_mel(90)
    streamer = StreamingVocoder(vocoder, chunk_frames=10, first_chunk_frames=4)
    one_shot = streamer.decode(frames)
    assert one_shot.shape == (vocoder.num_samples(90),)
    chunks = pushed(streamer, frames, sizes)
    assert [c.shape[0] // HOP for c in chunks[:3]] == [4, 10, 10]
    assert torch.equal(torch.cat(chunks), one_shot)
    with torch.no_grad():
        whole = vocoder(frames[None])[0]
    assert float((one_shot - whole).abs().max()) <= 1e-5  # float rounding only (convolutions of other lengths)


def test_pipeline_stream_equals_one_shot_with_vocos():
    pipe = DiTARPipeline(**{**get_dummy_components(), "vocoder": tiny_vocoder()})
    pipe.set_progress_bar_config(disable=True)
    one_shot = pipe(**get_dummy_inputs(max_new_patches=30))
    chunks = list(pipe.stream(**get_dummy_inputs(max_new_patches=30)))
    assert len(chunks) >= 3
    joined = np.concatenate(chunks)
    assert joined.shape[0] == one_shot.audio_lengths[0] == (2 * 30 - 1) * HOP
    np.testing.assert_allclose(joined, one_shot.audios[0][: one_shot.audio_lengths[0]], atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# loading: build_vocoder, pipeline folders, the transformers entry points, remote code


def test_build_vocoder_knows_vocos():
    vocoder = tiny_vocoder("same")
    config = {k: v for k, v in vocoder.config.items() if not k.startswith("_")}
    built = build_vocoder({"vocoder_type": "vocos", **config})
    assert isinstance(built, VocosVocoder) and built.config.padding == "same" and built.config.dim == 16
    known = r"\['griffin_lim', 'speecht5_hifigan', 'vocos'\]"
    with pytest.raises(ValueError, match=r"vocoder_type='hifi'; this version knows " + known):
        build_vocoder({"vocoder_type": "hifi"})


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"hop_length": 32}, "hop_length: vocoder 32, feature extractor 16"),
        ({"sampling_rate": 16000}, "sampling_rate: vocoder 16000, feature extractor 8000"),
        ({"n_fft": 128}, "n_fft: vocoder 128, feature extractor 64"),
        ({"num_mel_bins": 10}, "feature_size: vocoder 10, feature extractor 8"),
        ({"mel_scale": "htk"}, "mel_scale: vocoder 'htk', feature extractor 'slaney'"),
        ({"mel_norm": None}, "mel_norm: vocoder None, feature extractor 'slaney'"),
        ({"log_mel": "log10"}, "log_mel: vocoder 'log10', feature extractor 'log'"),
        ({"power": 2.0}, "power: vocoder 2.0, feature extractor 1.0"),
    ],
)
def test_a_pipeline_refuses_a_vocoder_for_other_features(setting, message):
    analysis = dict(sampling_rate=8000, n_fft=N_FFT, hop_length=HOP, num_mel_bins=8, f_max=4000.0, log_floor=1e-5)
    matching = VocosVocoder(**{**analysis, **TINY})
    DiTARPipeline(**{**get_dummy_components(), "vocoder": matching})  # the dummy extractor's settings: accepted
    with pytest.raises(ValueError, match=re.escape(message)):
        DiTARPipeline(**{**get_dummy_components(), "vocoder": VocosVocoder(**{**analysis, **TINY, **setting})})


def reference_audio(pipe, seed: int = 0) -> np.ndarray:
    out = pipe("hello there", generator=torch.Generator().manual_seed(seed), num_candidates=1, max_new_patches=12)
    return out.audios[0][: out.audio_lengths[0]]


@pytest.fixture(scope="module", params=[None, 4], ids=["vocos", "vocos-griffin-lim"])
def saved(tmp_path_factory, request):
    """A tiny pipeline with a Vocos vocoder (weights away from any initialisation), saved, and its audio; once with
    the network's own waveform, once with Griffin-Lim on its magnitude (`griffin_lim_iterations`)."""
    folder = tmp_path_factory.mktemp("vocos") / "pipeline"
    pipe = get_dummy_pipeline()
    vocoder = tiny_vocoder(seed=3, griffin_lim_iterations=request.param)
    pipe = DiTARPipeline(**{**pipe.components, "vocoder": vocoder})
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(folder)
    np.save(folder.parent / "reference.npy", reference_audio(pipe))
    return folder, pipe


def test_pipeline_round_trip_keeps_the_trained_vocoder(saved):
    folder, pipe = saved
    assert (folder / "vocoder" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((folder / "model_index.json").read_text())["vocoder"] == ["vocoder_vocos", "VocosVocoder"]
    loaded = DiTARPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.vocoder, VocosVocoder)
    for name, tensor in pipe.vocoder.state_dict().items():
        assert torch.equal(loaded.vocoder.state_dict()[name], tensor), name
    np.testing.assert_array_equal(reference_audio(loaded), np.load(folder.parent / "reference.npy"))


def test_the_text_to_speech_model_at_the_root_gets_the_vocoder_weights(saved):
    folder, pipe = saved
    config = json.loads((folder / "config.json").read_text())
    assert config["vocoder_config"]["vocoder_type"] == "vocos" and config["vocoder_config"]["dim"] == 16
    assert not (folder / "model.safetensors").exists()  # a single file would shadow the index
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    assert index["vocoder.head.out.weight"] == "model-vocoder.safetensors"
    assert index["stop_head.weight"] == "model/model.safetensors"  # the model's weights are not copied
    model, info = AutoModelForTextToWaveform.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]  # every vocoder weight came from the folder
    # the feature-level model skips the vocoder's weights without reporting them
    features_model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert isinstance(model, DiTARForTextToSpeech) and isinstance(model.vocoder, VocosVocoder)
    assert type(features_model) is DiTARForConditionalGeneration
    for name, tensor in pipe.vocoder.state_dict().items():
        assert torch.equal(model.vocoder.state_dict()[name], tensor), name
    torch.testing.assert_close(model.vocoder.window, torch.hann_window(N_FFT))
    inputs = AutoProcessor.from_pretrained(folder)("hello there")
    speech = model.generate(**inputs, generator=torch.Generator().manual_seed(0), num_candidates=1, max_new_patches=12)
    # the same computation by another path (generate, not the pipeline): float32 rounding differs by CPU kernel, seen
    # up to 1.5e-6 on one machine
    np.testing.assert_allclose(speech.audio[0].numpy(), np.load(folder.parent / "reference.npy"), atol=1e-5, rtol=0)


REMOTE = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from diffusers import DiffusionPipeline
    from transformers import AutoModelForTextToWaveform, AutoProcessor

    folder, reference = sys.argv[1], np.load(sys.argv[2])
    seed = lambda: torch.Generator().manual_seed(0)
    # 1e-5: generate() computes the same audio by another path than the pipeline; float32 rounding differs by CPU
    close = lambda audio: bool(audio.shape == reference.shape and np.abs(audio - reference).max() < 1e-5)
    report = {}
    pipe = DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("hello there", generator=seed(), num_candidates=1, max_new_patches=12)
    report["pipeline_vocoder"] = type(pipe.vocoder).__name__
    report["pipeline"] = close(out.audios[0][: out.audio_lengths[0]])
    model = AutoModelForTextToWaveform.from_pretrained(folder, trust_remote_code=True)
    inputs = AutoProcessor.from_pretrained(folder, trust_remote_code=True)("hello there")
    speech = model.generate(**inputs, generator=seed(), num_candidates=1, max_new_patches=12)
    report["model_vocoder"] = type(model.vocoder).__name__
    report["model"] = close(speech.audio[0].numpy())
    report["modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "modeling_ditar")
    print("REPORT " + json.dumps(report))
    """
)


@pytest.mark.slow  # a fresh interpreter importing torch, transformers and diffusers: about 20 s on 2 busy cores
def test_remote_code_loads_the_vocoder_where_the_package_cannot_be_imported(saved):
    folder, _ = saved
    script = HIDE_PACKAGE.replace("REPO", repr(str(ROOT))) + REMOTE
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder.parent),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_MODULES_CACHE": str(folder.parent / "modules"),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(folder.parent / "reference.npy")],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(folder.parent),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    report = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))[7:])
    assert report == {
        "pipeline_vocoder": "VocosVocoder",
        "pipeline": True,
        "model_vocoder": "VocosVocoder",
        "model": True,
        "modules": [],
    }


# ----------------------------------------------------------------------------------------------------------------------
# the head that integrates its phase


def test_integrated_phase_advances_a_steady_partial_however_long_it_lasts(tmp_path):
    """Frame-by-frame phase cannot advance where the features do not change; the integrated head's phase does: with
    no predicted deviation or offset, bin k advances by its centre frequency over a hop in every frame, and its
    origin is the frame start, as in `torch.stft` (so a click at a frame centre has phase pi k)."""
    vocoder = tiny_vocoder(phase="integrated")
    bins = N_FFT // 2 + 1
    assert vocoder.head.out.weight.shape == (3 * bins, TINY["dim"])
    with torch.no_grad():
        vocoder.head.out.weight[bins:].zero_()
        vocoder.head.out.bias[bins:].zero_()
        steady = log_mel(1).expand(40, -1)[None]  # the same features in every frame
        _, spectrum = vocoder(steady, return_spectrum=True)
    k = torch.arange(bins)[:, None]
    t = torch.arange(40)[None]
    expected = 2 * torch.pi * k * (t * HOP - N_FFT // 2) / N_FFT
    error = spectrum[0].angle() - expected
    assert float((error - 2 * torch.pi * torch.round(error / (2 * torch.pi))).abs().max()) < 1e-3
    # a direct head gives the same phase in every frame of steady features
    direct = tiny_vocoder()
    with torch.no_grad():
        _, flat = direct(steady, return_spectrum=True)
    assert torch.allclose(flat[0, :, 10:30].angle(), flat[0, :, 10:11].angle().expand(-1, 20), atol=1e-5)

    vocoder.save_pretrained(tmp_path)
    loaded = VocosVocoder.from_pretrained(tmp_path)
    assert loaded.config.phase == "integrated"
    with torch.no_grad():
        assert torch.equal(loaded(log_mel(12)[None]), vocoder(log_mel(12)[None]))


def test_integrated_phase_is_exact_for_long_inputs_and_refuses_windowed_streaming():
    vocoder = tiny_vocoder(phase="integrated")
    late = vocoder.head.centre_phase(10**7, 3, "cpu")  # computed in integers: no float error after many frames
    k = torch.arange(N_FFT // 2 + 1)[:, None]
    turns = (k * (HOP * torch.arange(10**7, 10**7 + 3)[None] - N_FFT // 2)) % N_FFT
    assert torch.allclose(late, turns.float() * 2 * torch.pi / N_FFT)
    # decoding in two pieces, the second starting where the first ended with its running sum, gives the same frames
    hidden = torch.randn(1, 20, TINY["dim"])
    with torch.no_grad():
        whole, _ = vocoder.head(hidden)
        first, running = vocoder.head(hidden[:, :8])
        second, _ = vocoder.head(hidden[:, 8:], start_frame=8, initial_phase=running)
    torch.testing.assert_close(torch.cat([first, second], dim=-1), whole, atol=1e-5, rtol=1e-5)
    with pytest.raises(NotImplementedError, match="carries its phase"):
        StreamingVocoder(vocoder)
    with pytest.raises(ValueError, match="`phase` must be one of"):
        tiny_vocoder(phase="learned")


def test_recurrent_phase_restarts_where_the_gate_closes_and_then_advances_by_the_frequency(tmp_path):
    """The gated phasor: with the gate closed a frame takes the predicted phase (origin at the frame start, -pi k);
    opened after that onset, every bin advances by its centre frequency plus the predicted deviation over each hop,
    for as long as the gate stays open, even where the features never change."""
    vocoder = tiny_vocoder(phase="recurrent")
    bins, frames = N_FFT // 2 + 1, 30
    local = torch.rand(bins, generator=torch.Generator().manual_seed(0)) * 6
    deviation = torch.linspace(-1, 1, bins)
    out = torch.zeros(1, frames, 4 * bins)
    out[..., bins : 2 * bins] = deviation
    out[..., 2 * bins : 3 * bins] = local
    out[..., 3 * bins :] = 8.0  # open ...
    out[:, :3, 3 * bins :] = -8.0  # ... after three closed frames
    vocoder.head.out.forward = lambda hidden: out
    with torch.no_grad():
        spectrum, last = vocoder.head(torch.zeros(1, frames, TINY["dim"]))
    wrap = lambda x: (x - 2 * torch.pi * torch.round(x / (2 * torch.pi))).abs()  # noqa: E731
    k = torch.arange(bins)[:, None]
    phase = spectrum[0].angle()
    assert float(wrap(phase[:, :3] - (local[:, None] - torch.pi * k)).max()) < 1e-2
    advance = 2 * torch.pi * k * HOP / N_FFT + deviation[:, None]
    assert float(wrap(phase.diff(dim=-1)[:, 3:] - advance).max()) < 1e-2
    # decoding in two pieces with the carried phasor gives the same frames
    vocoder.head.out.forward = lambda hidden: out[:, : hidden.shape[1]]
    first, state = vocoder.head(torch.zeros(1, 10, TINY["dim"]))
    vocoder.head.out.forward = lambda hidden: out[:, 10:]
    second, _ = vocoder.head(torch.zeros(1, frames - 10, TINY["dim"]), state=state)
    torch.testing.assert_close(torch.cat([first, second], dim=-1), spectrum)
    with pytest.raises(NotImplementedError, match="carries its phase"):
        StreamingVocoder(tiny_vocoder(phase="recurrent"))


# ----------------------------------------------------------------------------------------------------------------------
# a learned magnitude in front of Griffin-Lim


def test_griffin_lim_on_the_learned_magnitude_is_griffin_lim_of_the_head_magnitude_and_streams_as_one_shot(tmp_path):
    """With `griffin_lim_iterations` the head's phase is unused: the waveform is Griffin-Lim (that many iterations,
    seed 0) on the head's magnitude; it saves and loads with the setting, and a stream of pushes joins into exactly
    the one-shot decode (both decode the same windows, whose magnitudes never look at later frames)."""
    from modeling_ditar import GriffinLimVocoder

    vocoder = tiny_vocoder(griffin_lim_iterations=4)
    features = log_mel(60)[None]
    with torch.no_grad():
        audio, spectrum = vocoder(features, return_spectrum=True)
    griffin_lim = GriffinLimVocoder.from_feature_extractor(get_dummy_feature_extractor(), n_iter=4)
    assert torch.equal(audio, griffin_lim._invert(spectrum.abs(), None, None, None))
    assert not torch.allclose(audio, vocoder.istft(spectrum), atol=1e-3)  # not the head's own phase
    vocoder.save_pretrained(tmp_path)
    loaded = VocosVocoder.from_pretrained(tmp_path).eval()
    assert loaded.config.griffin_lim_iterations == 4
    with torch.no_grad():
        assert torch.equal(loaded(features), audio)
    stream = StreamingVocoder(loaded)
    assert stream.crossfade > 0 and stream.left == 8  # Griffin-Lim's windows, not the network's receptive field
    one_shot = stream.decode(features[0])
    assert torch.equal(torch.cat(pushed(stream, features[0], [7] * 9)), one_shot)
    assert one_shot.shape == (loaded.num_samples(60),)


def test_a_mixed_magnitude_is_the_geometric_mean_of_the_head_and_the_pseudo_inverse_and_streams_as_one_shot(tmp_path):
    """`network_magnitude_weight` w: Griffin-Lim inverts head^w * pseudo-inverse^(1 - w), both floored at 1e-5; w = 0
    is the features' pseudo-inverse alone, whatever the head says. The setting saves and loads, and a stream of pushes
    joins into exactly the one-shot decode (the pseudo-inverse is frame by frame, so windows need no more context)."""
    from modeling_ditar import GriffinLimVocoder

    features = log_mel(60)[None]
    griffin_lim = GriffinLimVocoder.from_feature_extractor(get_dummy_feature_extractor(), n_iter=4)
    pseudo = griffin_lim.mel_to_magnitude(features).clamp(min=1e-5)
    vocoder = tiny_vocoder(griffin_lim_iterations=4, network_magnitude_weight=0.25)
    with torch.no_grad():
        audio, spectrum = vocoder(features, return_spectrum=True)
    mixed = spectrum.abs().clamp(min=1e-5) ** 0.25 * pseudo**0.75
    torch.testing.assert_close(audio, griffin_lim._invert(mixed, None, None, None), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        full = tiny_vocoder(griffin_lim_iterations=4)(features)
    assert not torch.allclose(audio, full, atol=1e-3)  # the mix is not the network's magnitude alone
    # weight 0: the head's output does not matter
    none = tiny_vocoder(griffin_lim_iterations=4, network_magnitude_weight=0.0)
    with torch.no_grad():
        none.head.out.bias.add_(3.0)
        torch.testing.assert_close(none(features), griffin_lim._invert(pseudo, None, None, None), rtol=1e-4, atol=1e-5)
    # a stream window's pseudo-inverse is that of its own frames (not of the context frames before them)
    window = none.decode_stream_window(features[0], 20, 40, {})
    torch.testing.assert_close(window, griffin_lim._invert(pseudo[..., 20:40], None, None, None), rtol=1e-4, atol=1e-5)
    vocoder.save_pretrained(tmp_path)
    loaded = VocosVocoder.from_pretrained(tmp_path).eval()
    assert loaded.config.network_magnitude_weight == 0.25
    stream = StreamingVocoder(loaded)
    one_shot = stream.decode(features[0])
    assert torch.equal(torch.cat(pushed(stream, features[0], [9] * 7)), one_shot)
    # a window mixes the magnitude of its own frames: one window over every frame is the whole-clip decode
    whole = loaded.decode_stream_window(features[0], 0, 60, {})
    torch.testing.assert_close(whole[0], audio[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"griffin_lim_iterations": -1}, ">= 0"),
        ({"griffin_lim_iterations": 2.0}, "non-negative integer"),
        ({"griffin_lim_iterations": 4, "phase": "recurrent"}, "must be 'direct'"),
        ({"griffin_lim_iterations": 4, "network_magnitude_weight": 1.5}, r"in \[0, 1\]"),
        ({"griffin_lim_iterations": 4, "network_magnitude_weight": True}, r"in \[0, 1\]"),
        ({"network_magnitude_weight": 0.5}, "needs `griffin_lim_iterations`"),
    ],
)
def test_bad_griffin_lim_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_vocoder(**kwargs)

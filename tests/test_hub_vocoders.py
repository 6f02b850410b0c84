"""Pretrained vocoders from the Hub: feature-extractor presets that reproduce their training features exactly, the
SpeechT5 HiFi-GAN as a pipeline component, and the converter of Vocos' published mel checkpoint.

Hub weights cannot be fetched here, so everything runs on random weights and tiny configs saved in the Hub's formats.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_helpers import get_dummy_config
from preloaded_python import run as run_script
from transformers import SpeechT5FeatureExtractor, SpeechT5HifiGan, SpeechT5HifiGanConfig
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from modeling_ditar import (
    DiTARFeatureExtractor,
    DiTARForConditionalGeneration,
    DiTARPipeline,
    DiTARProcessor,
    SpeechT5HifiGanVocoder,
    StreamingVocoder,
    build_ditar_tokenizer,
    build_pipeline,
)
from modeling_ditar.feature_extraction_ditar import VOCODER_PRESETS
from modeling_ditar.vocoder_hifigan import receptive_field_frames

ROOT = Path(__file__).resolve().parents[1]
NEW_KEYS = ("mel_scale", "mel_norm", "log_mel", "power")


def noise(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr))).astype(np.float32)


def tiny_hifigan_config(**overrides) -> SpeechT5HifiGanConfig:
    """The geometry of microsoft/speecht5_hifigan's upsampling (hop 256 at 16 kHz, 80 mels) with few channels and
    one small residual block per stage."""
    kwargs = dict(
        model_in_dim=80,
        upsample_initial_channel=16,
        upsample_rates=[4, 4, 4, 4],
        upsample_kernel_sizes=[8, 8, 8, 8],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
    )
    kwargs.update(overrides)
    return SpeechT5HifiGanConfig(**kwargs)


def random_hifigan(seed: int = 0, **overrides) -> SpeechT5HifiGan:
    """transformers' own class with random weights and non-trivial normalisation statistics, as on the Hub."""
    torch.manual_seed(seed)
    model = SpeechT5HifiGan(tiny_hifigan_config(**overrides)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
        model.mean.uniform_(-6.0, -2.0)
        model.scale.uniform_(0.5, 2.0)
    return model


# ----------------------------------------------------------------------------------------------------------------------
# feature-extractor options and presets
# ----------------------------------------------------------------------------------------------------------------------


def test_configs_without_the_new_keys_load_with_todays_features():
    """A processor saved before these options existed (the shipped default) computes exactly what it did: the
    defaults are Slaney scale and norm, natural log and magnitude, checked bit for bit and against transformers'
    `spectrogram`."""
    saved = json.loads((ROOT / "modeling_ditar" / "default" / "processor" / "processor_config.json").read_text())
    settings = saved.get("feature_extractor", saved)
    assert not set(NEW_KEYS) & set(settings)
    old = DiTARFeatureExtractor.from_dict(settings)
    explicit = DiTARFeatureExtractor.from_dict(
        {**settings, "mel_scale": "slaney", "mel_norm": "slaney", "log_mel": "log", "power": 1.0}
    )
    audio = noise(0.5, old.sampling_rate)
    features = old.compute_log_mel(torch.from_numpy(audio))
    assert torch.equal(features, explicit.compute_log_mel(torch.from_numpy(audio)))
    assert old.win_length == old.n_fft
    reference = spectrogram(
        audio,
        window_function(old.n_fft, "hann", periodic=True),
        frame_length=old.n_fft,
        hop_length=old.hop_length,
        mel_filters=mel_filter_bank(
            old.n_fft // 2 + 1, old.feature_size, old.f_min, old.f_max, old.sampling_rate, "slaney", "slaney"
        ),
        mel_floor=old.log_floor,
        log_mel="log",
    ).T
    np.testing.assert_allclose(features.numpy(), reference, atol=1e-4)
    assert {k: old.to_dict()[k] for k in NEW_KEYS} == {
        "mel_scale": "slaney",
        "mel_norm": "slaney",
        "log_mel": "log",
        "power": 1.0,
    }


@pytest.mark.parametrize("seconds", [0.05, 1.0, 2.3])
def test_speecht5_preset_equals_speecht5_feature_extractor(seconds):
    fe = DiTARFeatureExtractor.from_vocoder_preset("speecht5_hifigan")
    audio = noise(seconds, 16000, seed=int(seconds * 10))
    # the log-mel targets SpeechT5's decoder predicts and its HiFi-GAN was trained on
    reference = SpeechT5FeatureExtractor()(audio_target=audio, sampling_rate=16000)["input_values"][0]
    ours = fe.compute_log_mel(torch.from_numpy(audio)).numpy()
    assert ours.shape == reference.shape == (1 + len(audio) // 256, 80)
    assert np.abs(ours - reference).max() < 1e-4
    # the normalising call (identity statistics) gives the same frames
    np.testing.assert_allclose(fe(audio, sampling_rate=16000)["input_features"][0], ours, atol=0)


def vocos_reference(audio: np.ndarray) -> np.ndarray:
    """torchaudio's MelSpectrogram(sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100, power=1) defaults
    (periodic Hann window of n_fft, centred frames with reflect padding, HTK mel scale, no filter normalisation, 0 Hz
    to Nyquist) followed by Vocos' log(clip(x, 1e-7)), computed here in float64 from torch.stft and transformers'
    filter bank."""
    x = torch.from_numpy(audio).double()
    window = torch.hann_window(1024, periodic=True, dtype=torch.float64)
    magnitude = torch.stft(x, 1024, 256, window=window, center=True, pad_mode="reflect", return_complex=True).abs()
    filters = torch.from_numpy(mel_filter_bank(513, 100, 0.0, 12000.0, 24000, norm=None, mel_scale="htk"))
    return torch.log(torch.clamp(magnitude.T @ filters, min=1e-7)).numpy()


@pytest.mark.parametrize("seconds", [0.05, 1.0])
def test_vocos_preset_equals_torchaudio_melspectrogram(seconds):
    fe = DiTARFeatureExtractor.from_vocoder_preset("vocos_mel_24khz")
    audio = noise(seconds, 24000, seed=3)
    ours = fe.compute_log_mel(torch.from_numpy(audio)).numpy()
    reference = vocos_reference(audio)
    assert ours.shape == reference.shape == (1 + len(audio) // 256, 100)
    assert np.abs(ours - reference).max() < 1e-4
    try:
        import torchaudio
    except ImportError:
        return
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=24000, n_fft=1024, hop_length=256, n_mels=100, power=1)
    direct = torch.log(torch.clip(mel(torch.from_numpy(audio)), min=1e-7)).T.numpy()
    assert np.abs(ours - direct).max() < 1e-4


def test_power_and_log_options_follow_transformers_spectrogram():
    fe = DiTARFeatureExtractor(
        feature_size=40, sampling_rate=16000, n_fft=512, hop_length=128, power=2.0, log_mel="log10", log_floor=1e-10
    )
    audio = noise(0.3, 16000, seed=5)
    reference = spectrogram(
        audio,
        window_function(512, "hann", periodic=True),
        frame_length=512,
        hop_length=128,
        power=2.0,
        mel_filters=mel_filter_bank(257, 40, 0.0, 8000.0, 16000, "slaney", "slaney"),
        mel_floor=1e-10,
        log_mel="log10",
    ).T
    np.testing.assert_allclose(fe.compute_log_mel(torch.from_numpy(audio)).numpy(), reference, atol=1e-4)


def test_presets_are_named_checked_and_saved(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown vocoder preset 'hifigan'.*speecht5_hifigan.*vocos_mel_24khz"):
        DiTARFeatureExtractor.from_vocoder_preset("hifigan")
    with pytest.raises(ValueError, match=r"fixes \['hop_length'\]"):
        DiTARFeatureExtractor.from_vocoder_preset("speecht5_hifigan", hop_length=320)
    fe = DiTARFeatureExtractor.from_vocoder_preset(
        "vocos_mel_24khz", feature_mean=[-5.0] * 100, feature_std=[2.0] * 100
    )
    assert fe.feature_mean == [-5.0] * 100
    for name, preset in VOCODER_PRESETS.items():
        built = DiTARFeatureExtractor.from_vocoder_preset(name)
        assert {k: getattr(built, k) for k in preset} == preset, name
    fe.save_pretrained(tmp_path)
    loaded = DiTARFeatureExtractor.from_pretrained(tmp_path)
    assert (loaded.mel_scale, loaded.mel_norm, loaded.log_mel, loaded.log_floor) == ("htk", None, "log", 1e-7)
    audio = torch.from_numpy(noise(0.2, 24000))
    assert torch.equal(loaded.compute_log_mel(audio), fe.compute_log_mel(audio))


def test_log_mel_floor_is_the_value_of_silence():
    speecht5 = DiTARFeatureExtractor.from_vocoder_preset("speecht5_hifigan")
    vocos = DiTARFeatureExtractor.from_vocoder_preset("vocos_mel_24khz")
    assert speecht5.log_mel_floor == pytest.approx(-10.0)
    assert vocos.log_mel_floor == pytest.approx(np.log(1e-7))
    silence = speecht5.compute_log_mel(torch.zeros(4096))
    assert torch.allclose(silence, torch.full_like(silence, speecht5.log_mel_floor))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mel_scale": "kaldi"}, "mel_scale"),
        ({"mel_norm": "area"}, "mel_norm"),
        ({"log_mel": "ln"}, "log_mel"),
        ({"power": 0.0}, "power"),
        ({"power": True}, "power"),
        ({"power": float("nan")}, "power"),
    ],
)
def test_bad_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiTARFeatureExtractor(**kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# SpeechT5 HiFi-GAN vocoder
# ----------------------------------------------------------------------------------------------------------------------


def test_loads_speecht5_hifigan_weights_and_keeps_its_output(tmp_path):
    """A folder saved by transformers' SpeechT5HifiGan (the Hub layout of microsoft/speecht5_hifigan) loads with every
    weight and the normalisation statistics; the output is SpeechT5HifiGan's, minus the hop past the clip's end."""
    reference = random_hifigan()
    reference.save_pretrained(tmp_path / "hub")
    vocoder = SpeechT5HifiGanVocoder.from_pretrained(tmp_path / "hub").eval()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(vocoder.state_dict()[name], tensor), name
    assert (vocoder.sampling_rate, vocoder.hop_length, vocoder.num_mel_bins) == (16000, 256, 80)
    features = torch.randn(2, 9, 80) - 4.0
    with torch.no_grad():
        full = reference(features)
        out = vocoder(features)
    assert full.shape == (2, 9 * 256)  # HiFi-GAN: T frames -> T * hop samples
    assert out.shape == (2, vocoder.num_samples(9)) == (2, 8 * 256)
    assert torch.equal(out, full[:, : 8 * 256])
    with torch.no_grad():
        torch.testing.assert_close(vocoder(features[0]), out[:1], rtol=0, atol=1e-6)  # [T, D] gets a batch axis
        assert vocoder(features[:, :1]).shape == (2, 0)
    # saved again, it is still a SpeechT5HifiGan folder (safetensors)
    vocoder.save_pretrained(tmp_path / "again")
    assert (tmp_path / "again" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "again" / "config.json").read_text())["model_type"] == "speecht5_hifigan"
    with torch.no_grad():
        assert torch.equal(SpeechT5HifiGan.from_pretrained(tmp_path / "again")(features), full)


def test_a_round_trip_through_the_preset_is_aligned():
    """A clip of a whole number of hops comes back at its own length: the preset's T = 1 + S // hop frames give
    (T - 1) * hop samples."""
    fe = DiTARFeatureExtractor.from_vocoder_preset("speecht5_hifigan")
    vocoder = SpeechT5HifiGanVocoder(tiny_hifigan_config()).eval()
    clip = torch.from_numpy(noise(0.2, 16000))[: 10 * 256]
    with torch.no_grad():
        assert vocoder(fe.compute_log_mel(clip)).shape == (1, clip.shape[0])


def test_bad_inputs_are_refused():
    vocoder = SpeechT5HifiGanVocoder(tiny_hifigan_config())
    with pytest.raises(ValueError, match=r"\[B, T, 80\]"):
        vocoder(torch.zeros(1, 5, 100))
    with pytest.raises(ValueError, match="NaN"):
        vocoder(torch.full((1, 5, 80), float("nan")))
    with pytest.raises(TypeError, match="SpeechT5HifiGanConfig"):
        SpeechT5HifiGanVocoder({"model_in_dim": 80})
    with pytest.raises(ValueError, match="same length"):
        SpeechT5HifiGanVocoder(tiny_hifigan_config(upsample_rates=[4, 4], upsample_kernel_sizes=[8]))


def test_check_feature_extractor_names_what_differs():
    vocoder = SpeechT5HifiGanVocoder(tiny_hifigan_config())
    vocoder.check_feature_extractor(DiTARFeatureExtractor.from_vocoder_preset("speecht5_hifigan"))
    with pytest.raises(ValueError, match=r"sampling_rate=24000 \(expected 16000\).*log_mel='log' \(expected 'log10'\)"):
        vocoder.check_feature_extractor(DiTARFeatureExtractor())


def measured_reach(vocoder: SpeechT5HifiGanVocoder, frames: int = 64) -> tuple[int, int]:
    """How many frames before and after its own frame reach the samples of the middle frame (from the gradient).
    Variance-preserving weights and float64 keep the far, weak paths from underflowing to an exact zero gradient
    (with the default init of std 0.01 they do, and the reach looks a frame shorter than it is)."""
    vocoder = vocoder.double()
    with torch.no_grad():
        for parameter in vocoder.parameters():
            fan = parameter[0].numel() if parameter.dim() > 1 else 0
            parameter.normal_(0.0, fan**-0.5) if fan else parameter.zero_()
    features = torch.randn(1, frames, vocoder.num_mel_bins, dtype=torch.float64, requires_grad=True)
    middle, hop = frames // 2, vocoder.hop_length
    out = vocoder(features)[0, middle * hop : (middle + 1) * hop].square().sum()
    (grad,) = torch.autograd.grad(out, features)
    reached = (grad[0].abs().sum(-1) > 0).nonzero().flatten()
    return middle - int(reached.min()), int(reached.max()) - middle


def test_receptive_field_bounds_the_measured_reach():
    # microsoft/speecht5_hifigan's geometry (kernels 3/7/11, dilations 1/3/5), with 16 channels to keep it fast
    default = SpeechT5HifiGanVocoder(SpeechT5HifiGanConfig(upsample_initial_channel=16)).eval()
    assert receptive_field_frames(default.config) == default.streaming_left_context_frames == 26
    assert measured_reach(default) == (24, 24)
    tiny = SpeechT5HifiGanVocoder(tiny_hifigan_config()).eval()
    before, after = measured_reach(tiny)
    assert max(before, after) <= tiny.streaming_lookahead_frames == receptive_field_frames(tiny.config)
    assert tiny.streaming_crossfade_samples == 0


def test_streamed_chunks_equal_the_whole_sequence():
    vocoder = SpeechT5HifiGanVocoder(random_hifigan().config)
    vocoder.load_state_dict(random_hifigan().state_dict())
    vocoder.eval()
    features = torch.randn(70, 80) - 4.0
    streamer = StreamingVocoder(vocoder)  # takes the vocoder's own context, lookahead and (no) crossfade
    reach = receptive_field_frames(vocoder.config)
    assert (streamer.left, streamer.lookahead, streamer.crossfade) == (reach, reach, 0)
    with torch.no_grad():
        chunks = []
        for start in range(0, 70, 7):
            chunks += streamer.push(features[start : start + 7])
        chunks += streamer.flush()
        one_shot = streamer.decode(features)
        whole = vocoder(features[None])[0]
    assert len(chunks) > 2
    assert torch.equal(torch.cat(chunks), one_shot)
    assert one_shot.shape == whole.shape
    assert (one_shot - whole).abs().max() < 1e-5
    # less context than the receptive field is allowed (lower latency) but no longer exact
    with torch.no_grad():
        short = StreamingVocoder(vocoder, left_context_frames=4, lookahead_frames=4).decode(features)
    assert (short - whole).abs().max() > 1e-3


# ----------------------------------------------------------------------------------------------------------------------
# a pipeline with the HiFi-GAN vocoder
# ----------------------------------------------------------------------------------------------------------------------

MEAN = [-4.0 + 0.01 * i for i in range(80)]
STD = [1.0 + 0.01 * i for i in range(80)]


def hifigan_pipeline() -> DiTARPipeline:
    """A tiny model on the speecht5 preset's features (80 mels, 16 kHz, hop 256) voiced by a tiny HiFi-GAN."""
    fe = DiTARFeatureExtractor.from_vocoder_preset("speecht5_hifigan", feature_mean=MEAN, feature_std=STD)
    processor = DiTARProcessor(fe, build_ditar_tokenizer(phonemize=False))
    torch.manual_seed(0)
    config = get_dummy_config(len(processor.tokenizer), feature_dim=80, feature_mean=MEAN, feature_std=STD)
    model = DiTARForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.locdit.out_proj.weight.normal_(0.0, 0.15)
        model.stop_head.weight.zero_()
        model.stop_head.bias.fill_(-20.0)  # never stop: the length comes from max_new_patches
    vocoder = SpeechT5HifiGanVocoder(random_hifigan().config)
    vocoder.load_state_dict(random_hifigan().state_dict())
    pipe = build_pipeline(model, processor, vocoder=vocoder.eval())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def speak(pipe, **kwargs):
    t = np.arange(1600) / 16000
    return pipe(
        "hello there",
        prompt_audio=(0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32),
        prompt_text="the prompt",
        sampling_rate=16000,
        max_new_patches=3,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        **kwargs,
    )


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hifigan") / "pipeline"
    pipe = hifigan_pipeline()
    out = speak(pipe)
    pipe.save_pretrained(folder)
    np.save(folder.parent / "audio.npy", out.audios)
    features = speak(pipe, output_type="features").audios
    np.save(folder.parent / "features.npy", np.asarray(features))
    return folder


def test_pipeline_runs_end_to_end_and_round_trips(saved_pipeline):
    audio = np.load(saved_pipeline.parent / "audio.npy")
    features = np.load(saved_pipeline.parent / "features.npy")
    assert audio.shape == (1, (features.shape[1] - 1) * 256) and np.isfinite(audio).all() and np.abs(audio).max() > 0
    index = json.loads((saved_pipeline / "model_index.json").read_text())
    assert index["vocoder"] == ["vocoder_hifigan", "SpeechT5HifiGanVocoder"]
    assert (saved_pipeline / "vocoder" / "model.safetensors").is_file()
    assert (saved_pipeline / "vocoder" / "vocoder_hifigan.py").is_file()
    loaded = DiTARPipeline.from_pretrained(saved_pipeline)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.vocoder) is SpeechT5HifiGanVocoder
    np.testing.assert_array_equal(speak(loaded).audios, audio)


@pytest.mark.slow
def test_pipeline_loads_as_remote_code(saved_pipeline):
    """Where the package is not installed, the saved folder loads with trust_remote_code, as a pipeline and as the
    text-to-speech model at its root, and both give the same audio."""
    from test_remote_code import HIDE_PACKAGE

    script = HIDE_PACKAGE.replace("REPO", repr(str(ROOT))) + (
        "import sys, numpy as np, torch\n"
        "torch.set_num_threads(1)\n"
        "from diffusers import DiffusionPipeline\n"
        "pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "pipe.set_progress_bar_config(disable=True)\n"
        "t = np.arange(1600) / 16000\n"
        "out = pipe('hello there', prompt_audio=(0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32),\n"
        "           prompt_text='the prompt', sampling_rate=16000, max_new_patches=3, num_inference_steps=2,\n"
        "           generator=torch.Generator().manual_seed(0))\n"
        "print('VOCODER', type(pipe.vocoder).__module__, type(pipe.vocoder).__name__)\n"
        "print('EQUAL', bool(np.array_equal(out.audios, np.load(sys.argv[2]))))\n"
        "from transformers import AutoModelForTextToWaveform, AutoProcessor\n"
        "model = AutoModelForTextToWaveform.from_pretrained(sys.argv[1], trust_remote_code=True)\n"
        "inputs = AutoProcessor.from_pretrained(sys.argv[1], trust_remote_code=True)('hello there',\n"
        "    prompt_audio=(0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), prompt_text='the prompt',\n"
        "    sampling_rate=16000)\n"
        "speech = model.generate(**inputs, generator=torch.Generator().manual_seed(0), max_new_patches=3,\n"
        "                        num_inference_steps=2)\n"
        "difference = np.abs(speech.audio[0].numpy() - np.load(sys.argv[2])[0]).max()\n"
        "print('MODEL', type(model.vocoder).__name__, bool(difference < 1e-6))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(saved_pipeline.parent),
        "HF_HUB_OFFLINE": "1",
        "HF_MODULES_CACHE": str(saved_pipeline.parent / "modules_cache"),
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(saved_pipeline), str(saved_pipeline.parent / "audio.npy")],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(saved_pipeline.parent),
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "EQUAL True" in result.stdout, result.stdout[-3000:]
    vocoder_line = next(line for line in result.stdout.splitlines() if line.startswith("VOCODER"))
    assert "vocoder_hifigan" in vocoder_line and vocoder_line.endswith("SpeechT5HifiGanVocoder")
    assert "modeling_ditar." not in vocoder_line
    assert "MODEL SpeechT5HifiGanVocoder True" in result.stdout, result.stdout[-3000:]


# ----------------------------------------------------------------------------------------------------------------------
# Vocos' published mel checkpoint -> VocosVocoder + feature extractor
# ----------------------------------------------------------------------------------------------------------------------

DIM, INTERMEDIATE, LAYERS = 8, 16, 2


def load_converter():
    spec = importlib.util.spec_from_file_location(
        "convert_vocos_checkpoint", ROOT / "conversion" / "convert_vocos_checkpoint.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def vocos_config_yaml(head_padding: str = "center", training_layout: bool = False, **backbone) -> str:
    """charactr/vocos-mel-24khz's config.yaml with a tiny backbone (the feature and head settings are the published
    ones)."""
    import yaml

    config = {
        "feature_extractor": {
            "class_path": "vocos.feature_extractors.MelSpectrogramFeatures",
            "init_args": {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"},
        },
        "backbone": {
            "class_path": "vocos.models.VocosBackbone",
            "init_args": {
                "input_channels": 100,
                "dim": DIM,
                "intermediate_dim": INTERMEDIATE,
                "num_layers": LAYERS,
                **backbone,
            },
        },
        "head": {
            "class_path": "vocos.heads.ISTFTHead",
            "init_args": {"dim": DIM, "n_fft": 1024, "hop_length": 256, "padding": head_padding},
        },
    }
    if training_layout:
        config = {"model": {"class_path": "vocos.experiment.VocosExp", "init_args": config}}
    return yaml.safe_dump(config)


def torchaudio_htk_filter_bank(n_freqs: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """torchaudio's melscale_fbanks(norm=None, mel_scale="htk") as documented: float32 triangles between HTK mel
    points spaced evenly from 0 Hz to Nyquist, over n_freqs bins from 0 to sample_rate // 2. [n_freqs, n_mels]"""
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_max = 2595.0 * np.log10(1.0 + (sample_rate / 2) / 700.0)
    f_pts = 700.0 * (10 ** (torch.linspace(0.0, float(m_max), n_mels + 2) / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.clamp(torch.minimum(down, up), min=0.0)


def vocos_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the names and shapes of Vocos' state dict (Vocos.state_dict(): feature extractor buffers,
    backbone, head)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.05):
        return torch.randn(*shape, generator=g) * std

    state = {
        "feature_extractor.mel_spec.spectrogram.window": torch.hann_window(1024),
        "feature_extractor.mel_spec.mel_scale.fb": torchaudio_htk_filter_bank(513, 100, 24000),
        "backbone.embed.weight": rand(DIM, 100, 7),
        "backbone.embed.bias": rand(DIM),
        "backbone.norm.weight": 1 + rand(DIM),
        "backbone.norm.bias": rand(DIM),
        "backbone.final_layer_norm.weight": 1 + rand(DIM),
        "backbone.final_layer_norm.bias": rand(DIM),
        "head.out.weight": rand(1026, DIM, std=0.2),
        "head.out.bias": rand(1026, std=0.2),
        "head.istft.window": torch.hann_window(1024),
    }
    for i in range(LAYERS):
        block = f"backbone.convnext.{i}"
        state |= {
            f"{block}.dwconv.weight": rand(DIM, 1, 7, std=0.3),
            f"{block}.dwconv.bias": rand(DIM),
            f"{block}.norm.weight": 1 + rand(DIM),
            f"{block}.norm.bias": rand(DIM),
            f"{block}.pwconv1.weight": rand(INTERMEDIATE, DIM, std=0.3),
            f"{block}.pwconv1.bias": rand(INTERMEDIATE),
            f"{block}.pwconv2.weight": rand(DIM, INTERMEDIATE, std=0.3),
            f"{block}.pwconv2.bias": rand(DIM),
            f"{block}.gamma": 0.5 + rand(DIM),
        }
    return state


def vocos_reference_decode(state: dict[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    """Vocos.decode computed straight from the raw state dict: ConvNeXt backbone, ISTFT head with torch.istft
    (center=True). features [B, T, 100] -> [B, (T - 1) * 256]."""
    import torch.nn.functional as F

    x = F.conv1d(features.transpose(1, 2), state["backbone.embed.weight"], state["backbone.embed.bias"], padding=3)
    x = F.layer_norm(x.transpose(1, 2), (DIM,), state["backbone.norm.weight"], state["backbone.norm.bias"], 1e-6)
    x = x.transpose(1, 2)
    for i in range(LAYERS):
        p = f"backbone.convnext.{i}."
        y = F.conv1d(x, state[p + "dwconv.weight"], state[p + "dwconv.bias"], padding=3, groups=DIM).transpose(1, 2)
        y = F.layer_norm(y, (DIM,), state[p + "norm.weight"], state[p + "norm.bias"], 1e-6)
        y = F.gelu(F.linear(y, state[p + "pwconv1.weight"], state[p + "pwconv1.bias"]))
        y = F.linear(y, state[p + "pwconv2.weight"], state[p + "pwconv2.bias"])
        x = x + (state[p + "gamma"] * y).transpose(1, 2)
    w, b = state["backbone.final_layer_norm.weight"], state["backbone.final_layer_norm.bias"]
    hidden = F.layer_norm(x.transpose(1, 2), (DIM,), w, b, 1e-6)
    out = F.linear(hidden, state["head.out.weight"], state["head.out.bias"]).transpose(1, 2)
    magnitude, phase = out.chunk(2, dim=1)
    magnitude = torch.clip(torch.exp(magnitude), max=1e2)
    spec = magnitude * (torch.cos(phase) + 1j * torch.sin(phase))
    return torch.istft(spec, 1024, 256, 1024, torch.hann_window(1024), center=True)


@pytest.fixture
def vocos_files(tmp_path):
    state = vocos_state_dict()
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.yaml").write_text(vocos_config_yaml())
    return tmp_path, state


def test_vocos_checkpoint_converts_one_to_one(vocos_files, capsys):
    from modeling_ditar import VocosVocoder

    folder, state = vocos_files
    converter = load_converter()
    out = folder / "converted"
    argv = ["--checkpoint", str(folder / "pytorch_model.bin"), "--config", str(folder / "config.yaml")]
    assert converter.main([*argv, "--out", str(out)]) == 0
    assert "'vocos_mel_24khz' preset" in capsys.readouterr().out

    vocoder = VocosVocoder.from_pretrained(out / "vocoder").eval()
    converted = vocoder.state_dict()
    buffers = {converter.FILTER_BANK, converter.ANALYSIS_WINDOW, converter.SYNTHESIS_WINDOW}
    assert set(converted) == set(state) - buffers  # every weight maps, nothing is left over
    for name, tensor in converted.items():
        assert torch.equal(tensor, state[name]), name
    assert (vocoder.sampling_rate, vocoder.hop_length, vocoder.n_fft, vocoder.num_mel_bins) == (24000, 256, 1024, 100)

    fe = DiTARFeatureExtractor.from_pretrained(out / "feature_extractor")
    preset = DiTARFeatureExtractor.from_vocoder_preset("vocos_mel_24khz")
    saved = fe.to_dict()
    # the saved config also maps AutoFeatureExtractor to the package's class, for loading as remote code
    assert saved.pop("auto_map") == {"AutoFeatureExtractor": "feature_extraction_ditar.DiTARFeatureExtractor"}
    assert saved == preset.to_dict()
    # the vocoder records Vocos' HTK, unnormalised, natural-log features, so a pipeline refuses Slaney or log10 ones
    assert (vocoder.config.mel_scale, vocoder.config.mel_norm, vocoder.config.log_mel) == ("htk", None, "log")
    vocoder.check_feature_extractor(fe)
    with pytest.raises(ValueError, match="mel_scale: vocoder 'htk', feature extractor 'slaney'"):
        vocoder.check_feature_extractor(
            DiTARFeatureExtractor(**{**VOCODER_PRESETS["vocos_mel_24khz"], "mel_scale": "slaney"})
        )

    audio = torch.from_numpy(noise(0.3, 24000, seed=7))
    features = fe.compute_log_mel(audio)[None]  # [1, T, 100]
    with torch.no_grad():
        ours = vocoder(features)
        reference = vocos_reference_decode(state, features)
    assert ours.shape == reference.shape == (1, (features.shape[1] - 1) * 256)
    assert float((ours - reference).abs().max()) <= 1e-5 * float(reference.abs().max())

    with pytest.raises(SystemExit, match="not empty; pass --force"):
        converter.main([*argv, "--out", str(out)])
    assert converter.main([*argv, "--out", str(out), "--force"]) == 0


def test_vocos_training_config_layout_is_read(tmp_path):
    (tmp_path / "config.yaml").write_text(vocos_config_yaml(training_layout=True, layer_scale_init_value=0.25))
    settings = load_converter().read_vocos_config(tmp_path / "config.yaml")
    assert settings["vocoder"]["layer_scale_init"] == 0.25 and settings["vocoder"]["num_layers"] == LAYERS
    assert settings["feature_extractor"] == VOCODER_PRESETS["vocos_mel_24khz"]


@pytest.mark.parametrize(
    "change, message",
    [
        ("drop", r"missing in pytorch_model.bin: backbone.convnext.1.gamma"),
        ("extra", r"not in the model: backbone.convnext.2.gamma"),
        ("shape", r"shape mismatch for head.out.bias"),
        ("slaney", r"feature_extractor.mel_spec.mel_scale.fb differs"),
        ("no_window", r"missing in pytorch_model.bin: head.istft.window"),
    ],
)
def test_vocos_checkpoint_problems_are_named(tmp_path, change, message):
    state = vocos_state_dict()
    if change == "drop":
        del state["backbone.convnext.1.gamma"]
    elif change == "extra":
        state["backbone.convnext.2.gamma"] = torch.ones(DIM)
    elif change == "shape":
        state["head.out.bias"] = torch.zeros(1000)
    elif change == "slaney":
        state["feature_extractor.mel_spec.mel_scale.fb"] = DiTARFeatureExtractor(feature_size=100).mel_filters
    elif change == "no_window":
        del state["head.istft.window"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.yaml").write_text(vocos_config_yaml())
    argv = ["--checkpoint", str(tmp_path / "pytorch_model.bin"), "--config", str(tmp_path / "config.yaml")]
    with pytest.raises(SystemExit, match=message):
        load_converter().main([*argv, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "config, message",
    [
        (lambda: vocos_config_yaml(head_padding="same"), "head padding is 'same'"),
        (lambda: vocos_config_yaml(adanorm_num_embeddings=4), "AdaLayerNorm"),
        (lambda: vocos_config_yaml().replace("MelSpectrogramFeatures", "EncodecFeatures"), "only MelSpectrogramFeat"),
        (lambda: vocos_config_yaml().replace("input_channels: 100", "input_channels: 80"), "n_mels=100 but backbone"),
        (lambda: "backbone: {}\n", "no `feature_extractor` block"),
    ],
)
def test_unsupported_vocos_configs_are_refused(tmp_path, config, message):
    (tmp_path / "config.yaml").write_text(config())
    with pytest.raises(SystemExit, match=message):
        load_converter().read_vocos_config(tmp_path / "config.yaml")


def test_converter_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_converter().main(["--help"])
    assert exit_info.value.code == 0
    assert "charactr/vocos-mel-24khz" in capsys.readouterr().out
    result = run_script(
        [sys.executable, str(ROOT / "conversion" / "convert_vocos_checkpoint.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "--checkpoint" in result.stdout


def test_a_saved_pipeline_takes_the_pretrained_vocoder(saved_pipeline, tmp_path):
    """The guide's recipe: a run's pipeline folder (Griffin-Lim) rebuilt with the HiFi-GAN as its vocoder gives the
    HiFi-GAN pipeline's audio, and saves as a HiFi-GAN pipeline."""
    pipe = hifigan_pipeline()
    hifigan = pipe.vocoder
    build_pipeline(pipe.model, pipe.processor).save_pretrained(tmp_path / "griffin_lim")
    assert json.loads((tmp_path / "griffin_lim" / "model_index.json").read_text())["vocoder"][1] == "GriffinLimVocoder"
    loaded = DiTARPipeline.from_pretrained(tmp_path / "griffin_lim")
    hifigan.check_feature_extractor(loaded.processor.feature_extractor)
    swapped = DiTARPipeline(**{**loaded.components, "vocoder": hifigan})
    swapped.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(speak(swapped).audios, np.load(saved_pipeline.parent / "audio.npy"))
    swapped.save_pretrained(tmp_path / "hifigan")
    index = json.loads((tmp_path / "hifigan" / "model_index.json").read_text())
    assert index["vocoder"] == ["vocoder_hifigan", "SpeechT5HifiGanVocoder"]


def test_the_text_to_speech_model_at_the_root_holds_the_hifigan(saved_pipeline):
    """The saved folder's root is a DiTARForTextToSpeech whose vocoder is the HiFi-GAN with the pipeline's weights;
    its audio is the pipeline's."""
    from transformers import AutoModel, AutoModelForTextToWaveform

    from modeling_ditar import DiTARForTextToSpeech
    from modeling_ditar.modeling_ditar import build_vocoder

    config = json.loads((saved_pipeline / "config.json").read_text())
    assert config["vocoder_config"]["vocoder_type"] == "speecht5_hifigan"
    assert config["vocoder_config"]["resblock_kernel_sizes"] == [3]
    assert isinstance(build_vocoder(config["vocoder_config"]), SpeechT5HifiGanVocoder)
    model, info = AutoModelForTextToWaveform.from_pretrained(saved_pipeline, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert isinstance(model, DiTARForTextToSpeech) and isinstance(model.vocoder, SpeechT5HifiGanVocoder)
    assert model.sampling_rate == 16000
    pipeline_vocoder = DiTARPipeline.from_pretrained(saved_pipeline).vocoder
    for name, tensor in pipeline_vocoder.state_dict().items():
        assert torch.equal(model.vocoder.state_dict()[name], tensor), name  # mean and scale included
    features_model, info = AutoModel.from_pretrained(saved_pipeline, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert type(features_model) is DiTARForConditionalGeneration
    t = np.arange(1600) / 16000
    inputs = DiTARProcessor.from_pretrained(saved_pipeline)(
        "hello there",
        prompt_audio=(0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32),
        prompt_text="the prompt",
        sampling_rate=16000,
    )
    speech = model.generate(
        **inputs, generator=torch.Generator().manual_seed(0), max_new_patches=3, num_inference_steps=2
    )
    reference = np.load(saved_pipeline.parent / "audio.npy")[0]
    np.testing.assert_allclose(speech.audio[0].numpy(), reference, atol=1e-6, rtol=0)

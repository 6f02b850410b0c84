"""Tests of the vocoder interface and the Griffin-Lim vocoder (tiny signals, CPU, offline)."""

import json

import numpy as np
import pytest
import torch

from modeling_ditar.feature_extraction_ditar import DiTARFeatureExtractor
from modeling_ditar.vocoder_griffinlim import GriffinLimVocoder
from modeling_ditar.vocoders import DiTARVocoder

SR = 24000


def harmonic(seconds=0.5, f0=150.0, partials=20, sr=SR):
    """A glottal-like harmonic signal with a slow vibrato and amplitude modulation."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.1 * np.sin(2 * np.pi * 2 * t))) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, partials + 1))
    return torch.tensor(0.2 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)), dtype=torch.float32)


@pytest.fixture(scope="module")
def fe():
    return DiTARFeatureExtractor()


@pytest.fixture(scope="module")
def vocoder(fe):
    return GriffinLimVocoder.from_feature_extractor(fe, n_iter=32)


def test_interface_and_output_length(fe, vocoder):
    assert isinstance(vocoder, DiTARVocoder)
    assert vocoder.sampling_rate == fe.sampling_rate and vocoder.hop_length == fe.hop_length
    assert list(vocoder.parameters()) == []
    features = fe.compute_log_mel(harmonic(0.1))[None]  # [1, T, D]
    frames = features.shape[1]
    out = vocoder(features, n_iter=2)
    assert out.shape == (1, (frames - 1) * fe.hop_length) == (1, vocoder.num_samples(frames))
    assert out.dtype == torch.float32
    # a clip whose length is a multiple of hop_length comes back at exactly its own length
    clip = harmonic(0.1)[: 9 * fe.hop_length]
    assert vocoder(fe.compute_log_mel(clip), n_iter=1).shape == (1, clip.shape[0])
    assert vocoder(features[:, :1]).shape == (1, 0)


def test_deterministic_and_batch_independent(fe, vocoder):
    features = fe.compute_log_mel(harmonic(0.1))[None]
    a, b = vocoder(features, n_iter=4), vocoder(features, n_iter=4)
    assert torch.equal(a, b)
    batch = vocoder(torch.cat([features, features - 1.0]), n_iter=4)
    torch.testing.assert_close(batch[0], a[0])
    seeded = vocoder(features, n_iter=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(seeded, vocoder(features, n_iter=4, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(seeded, a)


def test_reconstructs_harmonic_log_mel(fe, vocoder):
    signal = harmonic(0.4)
    log_mel = fe.compute_log_mel(signal)
    error = (fe.compute_log_mel(vocoder(log_mel[None])[0]) - log_mel).abs().mean()
    random_phase_error = (fe.compute_log_mel(vocoder(log_mel[None], n_iter=0)[0]) - log_mel).abs().mean()
    assert error < 0.4, error  # 0.30 nats measured (0.2 on 2 s clips; edges weigh more in short ones)
    assert error < 0.6 * random_phase_error


def test_save_load_round_trip(tmp_path, fe):
    vocoder = GriffinLimVocoder.from_feature_extractor(fe, n_iter=3, seed=7)
    vocoder.save_pretrained(tmp_path)
    loaded = GriffinLimVocoder.from_pretrained(tmp_path)
    public = lambda config: {k: v for k, v in config.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(vocoder.config)
    features = fe.compute_log_mel(harmonic(0.05))[None]
    assert torch.equal(loaded(features), vocoder(features))
    assert GriffinLimVocoder.from_pretrained(tmp_path, n_iter=5, torch_dtype=torch.float16).n_iter == 5


def test_pipeline_can_hold_and_reload_it(tmp_path, fe):
    from diffusers import DiffusionPipeline

    class TinyPipeline(DiffusionPipeline):
        def __init__(self, vocoder):
            super().__init__()
            self.register_modules(vocoder=vocoder)

    pipe = TinyPipeline(vocoder=GriffinLimVocoder.from_feature_extractor(fe, n_iter=2))
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path)
    reloaded = TinyPipeline.from_pretrained(tmp_path)
    assert isinstance(reloaded.vocoder, GriffinLimVocoder) and reloaded.vocoder.n_iter == 2


@pytest.mark.parametrize(
    "features, match",
    [
        (torch.zeros(1, 5, 80), "shape"),
        (torch.zeros(1, 0, 100), "no frames"),
        (torch.zeros(0, 5, 100), r"empty batch \(B = 0\)"),
        (torch.zeros(0, 0, 100), r"empty batch \(B = 0\)"),
        (torch.full((1, 5, 100), float("nan")), "NaN"),
    ],
)
def test_bad_features_raise(vocoder, features, match):
    with pytest.raises(ValueError, match=match):
        vocoder(features)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hop_length": 0}, "hop_length"),
        ({"momentum": 1.0}, "momentum"),
        ({"win_length": 2048}, "win_length"),
        ({"mel_scale": "kaldi"}, "mel_scale"),
        ({"mel_norm": "area"}, "mel_norm"),
        ({"log_mel": "ln"}, "log_mel"),
        ({"power": 0.0}, "power"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GriffinLimVocoder(**kwargs)


def test_stays_float32_when_cast(fe):
    vocoder = GriffinLimVocoder.from_feature_extractor(fe, n_iter=2)
    features = fe.compute_log_mel(harmonic(0.05))[None]
    reference = vocoder(features)
    vocoder.to(torch.float16)
    vocoder.half()
    assert vocoder.dtype == torch.float32 and vocoder.inverse_mel_filters.dtype == torch.float32
    assert torch.equal(vocoder(features.to(torch.bfloat16).float()), vocoder(features.to(torch.bfloat16)))
    assert torch.equal(vocoder(features), reference)


# ----------------------------------------------------------------------------------------------------------------------
# feature options (mel scale and normalisation, logarithm, power) and the feature-extractor check


def spectral_convergence(fe, reference: torch.Tensor, audio: torch.Tensor) -> float:
    """`||S_ref| - |S_audio||_F / ||S_ref||_F` of the STFT magnitudes (`fe`'s STFT); 0 is a perfect resynthesis."""
    n = min(reference.shape[-1], audio.shape[-1])
    window = torch.hann_window(fe.win_length)
    stft = lambda x: torch.stft(x[:n], fe.n_fft, fe.hop_length, fe.win_length, window, return_complex=True).abs()  # noqa: E731
    return float((stft(reference) - stft(audio)).norm() / stft(reference).norm())


def resynthesis_error(fe, vocoder) -> float:
    signal = harmonic(0.4, sr=fe.sampling_rate)
    return spectral_convergence(fe, signal, vocoder(fe.compute_log_mel(signal)[None])[0])


# the Griffin-Lim config the embedded default shipped with, written before the feature options existed
SHIPPED_GRIFFIN_LIM_CONFIG = {
    "_class_name": "GriffinLimVocoder",
    "_diffusers_version": "0.42.1",
    "f_max": 8000.0,
    "f_min": 0.0,
    "hop_length": 320,
    "min_magnitude": 1e-08,
    "momentum": 0.99,
    "n_fft": 1280,
    "n_iter": 16,
    "num_mel_bins": 80,
    "sampling_rate": 16000,
    "seed": 0,
    "win_length": 1280,
}


def test_shipped_config_without_the_feature_options_inverts_as_before(tmp_path):
    from modeling_ditar.audio_utils import ditar_mel_filter_bank
    from modeling_ditar.pipeline_ditar import EMBEDDED_DEFAULT
    from modeling_ditar.processing_ditar import DiTARProcessor

    (tmp_path / "config.json").write_text(json.dumps(SHIPPED_GRIFFIN_LIM_CONFIG))
    vocoder = GriffinLimVocoder.from_pretrained(tmp_path)
    config = vocoder.config
    assert (config.mel_scale, config.mel_norm, config.log_mel, config.power) == ("slaney", "slaney", "log", 1.0)
    vocoder.check_feature_extractor(DiTARProcessor.from_pretrained(EMBEDDED_DEFAULT / "processor").feature_extractor)
    # the magnitude estimate is the one these options replaced, bit for bit: exp, Slaney pseudo-inverse, floor
    filters = ditar_mel_filter_bank(16000, 1280, 80, 0.0, 8000.0).double().numpy()
    inverse = torch.from_numpy(np.linalg.pinv(filters.T).astype(np.float32))  # [F, D]
    features = torch.randn(2, 9, 80, generator=torch.Generator().manual_seed(0)) - 4.0
    before = torch.matmul(torch.exp(features), inverse.T).clamp(min=1e-8).transpose(1, 2)
    assert torch.equal(vocoder.mel_to_magnitude(features), before)


@pytest.mark.parametrize(
    "make_fe",
    [
        lambda: DiTARFeatureExtractor.from_vocoder_preset("speecht5_hifigan"),  # log10, 16 kHz, 80 mels 80-7600 Hz
        lambda: DiTARFeatureExtractor.from_vocoder_preset("vocos_mel_24khz"),  # HTK mels, unnormalised filters
        lambda: DiTARFeatureExtractor(power=2.0),  # power spectrogram
    ],
    ids=["speecht5_hifigan", "vocos_mel_24khz", "power2"],
)
def test_inverts_the_features_of_other_analysis_settings(fe, vocoder, make_fe):
    other = make_fe()
    matched = resynthesis_error(other, GriffinLimVocoder.from_feature_extractor(other))
    # measured: 0.24 with the default features; 0.42 (speecht5: fewer, narrower mels at 16 kHz), 0.23, 0.31
    assert matched < 2.0 * resynthesis_error(fe, vocoder), matched
    # what a vocoder built from the STFT settings alone (the Slaney natural-log magnitude inverse) gives:
    # 0.98, 31 and 28 (the wrong loudness and spectral tilt)
    stft_only = GriffinLimVocoder(
        sampling_rate=other.sampling_rate,
        n_fft=other.n_fft,
        hop_length=other.hop_length,
        num_mel_bins=other.feature_size,
        f_min=other.f_min,
        f_max=other.f_max,
    )
    assert resynthesis_error(other, stft_only) > 2.0 * matched


def test_from_feature_extractor_copies_the_feature_options_and_they_round_trip(tmp_path):
    fe = DiTARFeatureExtractor.from_vocoder_preset("speecht5_hifigan")
    vocoder = GriffinLimVocoder.from_feature_extractor(fe, n_iter=3)
    vocoder.check_feature_extractor(fe)
    vocoder.save_pretrained(tmp_path)
    loaded = GriffinLimVocoder.from_pretrained(tmp_path)
    assert (loaded.config.mel_scale, loaded.config.mel_norm, loaded.config.log_mel) == ("slaney", "slaney", "log10")
    assert (loaded.sampling_rate, loaded.num_mel_bins, loaded.config.f_min, loaded.config.f_max) == (
        16000,
        80,
        80,
        7600,
    )
    features = fe.compute_log_mel(harmonic(0.05, sr=16000))[None]
    assert torch.equal(loaded(features), vocoder(features))
    htk = GriffinLimVocoder.from_feature_extractor(DiTARFeatureExtractor.from_vocoder_preset("vocos_mel_24khz"))
    assert (htk.config.mel_scale, htk.config.mel_norm, htk.config.log_mel) == ("htk", None, "log")
    with pytest.raises(ValueError, match=r"takes \['log_mel'\] from the feature extractor"):
        GriffinLimVocoder.from_feature_extractor(fe, log_mel="log")


def test_check_feature_extractor_names_each_mismatch_with_both_values_and_the_fix(fe, vocoder):
    vocoder.check_feature_extractor(fe)
    other = DiTARFeatureExtractor(mel_scale="htk", mel_norm=None, log_mel="log10", power=2.0, hop_length=240)
    with pytest.raises(ValueError) as error:
        vocoder.check_feature_extractor(other)
    message = str(error.value)
    for part in (
        "hop_length: vocoder 256, feature extractor 240",
        "mel_scale: vocoder 'slaney', feature extractor 'htk'",
        "mel_norm: vocoder 'slaney', feature extractor None",
        "log_mel: vocoder 'log', feature extractor 'log10'",
        "power: vocoder 1.0, feature extractor 2.0",
        "GriffinLimVocoder.from_feature_extractor(feature_extractor)",
    ):
        assert part in message, (part, message)
    for name in ("n_fft", "sampling_rate", "feature_size", "f_min", "f_max", "win_length"):
        assert f"{name}:" not in message


def test_a_pipeline_refuses_a_griffin_lim_vocoder_for_other_features():
    from pipeline_helpers import get_dummy_components, get_dummy_feature_extractor

    from modeling_ditar import DiTARPipeline

    components = get_dummy_components()
    DiTARPipeline(**components)  # the processor's own Griffin-Lim: accepted
    log10 = GriffinLimVocoder.from_feature_extractor(get_dummy_feature_extractor(log_mel="log10"), n_iter=2)
    with pytest.raises(ValueError, match="log_mel: vocoder 'log10', feature extractor 'log'"):
        DiTARPipeline(**{**components, "vocoder": log10})


@pytest.mark.parametrize(
    "n_fft, hop_length, win_length",
    [(64, 16, 64), (64, 24, 64), (64, 16, 48), (1280, 320, 1280)],  # 24: the fold path; 48: a zero-padded window
)
def test_inverse_stft_equals_torch_istft(n_fft, hop_length, win_length):
    vocoder = GriffinLimVocoder(
        sampling_rate=16000, n_fft=n_fft, hop_length=hop_length, win_length=win_length, num_mel_bins=8
    )
    spec = torch.randn(2, n_fft // 2 + 1, 11, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    window = torch.hann_window(win_length, periodic=True)
    for length in (10 * hop_length, 7 * hop_length + 3):
        expected = torch.istft(spec, n_fft, hop_length, win_length, window, center=True, length=length)
        torch.testing.assert_close(vocoder._istft(spec, length), expected, atol=1e-6, rtol=0)


def test_a_window_the_inverse_stft_cannot_divide_out_is_refused_when_built():
    with pytest.raises(ValueError, match="NOLA.*hop_length of at most half"):
        GriffinLimVocoder(sampling_rate=16000, n_fft=64, hop_length=64, win_length=64, num_mel_bins=8)


def test_new_vocoder_from_the_default_processor_is_the_default_vocoder():
    """A pipeline built from a processor (build_pipeline, checkpoint conversion) vocodes like the embedded default:
    the Griffin-Lim settings chosen for it, 16 iterations among them, are the class defaults."""
    from pathlib import Path

    from modeling_ditar.processing_ditar import DiTARProcessor

    default = Path(__file__).resolve().parents[1] / "modeling_ditar" / "default"
    processor = DiTARProcessor.from_pretrained(default / "processor")
    saved = json.loads((default / "vocoder" / "config.json").read_text())
    built = dict(processor.build_vocoder().config)
    assert built["n_iter"] == 16
    for key, value in saved.items():
        if not key.startswith("_"):
            assert built[key] == pytest.approx(value), key


def test_griffin_lim_reuses_its_window_envelope_across_calls():
    """The inverse STFT's window envelope is cached per shape; a check inserted under its cache decorator once made
    every call (every streamed window) recompute it."""
    from modeling_ditar.vocoder_griffinlim import _istft_window_and_envelope

    vocoder = GriffinLimVocoder(sampling_rate=16000, n_fft=1024, hop_length=256, num_mel_bins=80, n_iter=2)
    features = torch.full((1, 20, 80), -4.0)
    vocoder(features)
    hits = _istft_window_and_envelope.cache_info().hits
    vocoder(features)
    assert _istft_window_and_envelope.cache_info().hits > hits

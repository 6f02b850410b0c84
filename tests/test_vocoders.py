"""Tests of the vocoder interface and the Griffin-Lim vocoder (tiny signals, CPU, offline)."""

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
        (torch.full((1, 5, 100), float("nan")), "NaN"),
    ],
)
def test_bad_features_raise(vocoder, features, match):
    with pytest.raises(ValueError, match=match):
        vocoder(features)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"hop_length": 0}, "hop_length"), ({"momentum": 1.0}, "momentum"), ({"win_length": 2048}, "win_length")],
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

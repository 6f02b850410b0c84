"""Phase-gradient phase reconstruction and the Griffin-Lim vocoder that starts from it (tiny signals, CPU)."""

import math

import numpy as np
import pytest
import torch
from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline
from test_vocoders import harmonic

from modeling_ditar.feature_extraction_ditar import DiTARFeatureExtractor
from modeling_ditar.phase_reconstruction import phase_gradient_phase
from modeling_ditar.pipeline_ditar import DiTARPipeline
from modeling_ditar.streaming import StreamingVocoder
from modeling_ditar.vocoder_griffinlim import GriffinLimVocoder


@pytest.fixture(scope="module")
def fe():
    return DiTARFeatureExtractor()


def stft(vocoder: GriffinLimVocoder, signal: torch.Tensor) -> torch.Tensor:
    return vocoder._stft(signal[None], vocoder.window)  # [1, F, T]


def inconsistency(vocoder: GriffinLimVocoder, magnitude: torch.Tensor, phase: torch.Tensor) -> float:
    """How far `magnitude` with `phase` is from being the STFT of a signal: the spectral convergence of its
    re-analysed inverse (0 for a consistent spectrogram)."""
    length = vocoder.num_samples(magnitude.shape[-1])
    rebuilt = vocoder._stft(
        vocoder._istft(magnitude * torch.polar(torch.ones_like(phase), phase), length), vocoder.window
    )
    return float((rebuilt.abs() - magnitude).norm() / magnitude.norm())


def test_phase_from_the_true_magnitude_is_nearly_consistent(fe):
    """On a harmonic signal with vibrato, the integrated phase with the true magnitude gives an almost consistent
    spectrogram, without a single Griffin-Lim iteration, where random phases do not come close."""
    vocoder = GriffinLimVocoder.from_feature_extractor(fe)
    magnitude = stft(vocoder, harmonic(0.5)).abs()
    integrated = phase_gradient_phase(magnitude, vocoder.hop_length, vocoder.n_fft, vocoder.win_length)
    assert integrated.shape == magnitude.shape
    assert float(integrated.min()) >= 0 and float(integrated.max()) < 2 * math.pi
    random = 2 * math.pi * torch.rand(magnitude.shape, generator=torch.Generator().manual_seed(0))
    ours, theirs = inconsistency(vocoder, magnitude, integrated), inconsistency(vocoder, magnitude, random)
    assert ours < 0.25 and ours < 0.4 * theirs, (ours, theirs)  # measured 0.12 vs 0.55


def test_integration_continues_piece_by_piece_exactly(fe):
    """A sequence integrated in pieces, each started one frame early from that frame's phase, has the phase of the
    sequence integrated at once (up to float32 rounding of the wrapped phase)."""
    vocoder = GriffinLimVocoder.from_feature_extractor(fe)
    magnitude = stft(vocoder, harmonic(0.6)).abs()
    args = (vocoder.hop_length, vocoder.n_fft, vocoder.win_length)
    whole = phase_gradient_phase(magnitude, *args)
    frames, cut = magnitude.shape[-1], 11
    # the first piece's last frame has a one-sided time derivative, so the continuation starts before it
    first = phase_gradient_phase(magnitude[..., : cut + 1], *args)
    rest = phase_gradient_phase(magnitude[..., cut - 1 :], *args, first_phase=first[..., cut - 1])
    joined = torch.cat([first[..., :cut], rest[..., 1:]], dim=-1)
    assert joined.shape[-1] == frames
    angle_error = torch.polar(torch.ones_like(joined), joined) - torch.polar(torch.ones_like(whole), whole)
    assert float(angle_error.abs().max()) < 1e-3


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match=r"\[B, F, T\]"):
        phase_gradient_phase(torch.ones(4, 5), 2, 8, 8)
    with pytest.raises(ValueError, match="first_phase must be"):
        phase_gradient_phase(torch.ones(1, 5, 3), 2, 8, 8, first_phase=torch.zeros(1, 4))
    assert phase_gradient_phase(torch.ones(1, 5, 0), 2, 8, 8).shape == (1, 5, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(initial_phase="zeros"), "initial_phase"),
        (dict(phase_gradient_max_frequency=0), "phase_gradient_max_frequency"),
        (dict(phase_gradient_tolerance_db=float("inf")), "phase_gradient_tolerance_db"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GriffinLimVocoder(**kwargs)


def test_vocoder_config_round_trips_and_band_edge(tmp_path, fe):
    vocoder = GriffinLimVocoder.from_feature_extractor(
        fe, n_iter=2, initial_phase="phase_gradient", phase_gradient_max_frequency=1000.0
    )
    assert vocoder.phase_gradient_bins == math.ceil(1000.0 * fe.n_fft / fe.sampling_rate)
    vocoder.save_pretrained(tmp_path)
    loaded = GriffinLimVocoder.from_pretrained(tmp_path)
    assert loaded.initial_phase == "phase_gradient" and loaded.phase_gradient_bins == vocoder.phase_gradient_bins
    features = fe.compute_log_mel(harmonic(0.2))[None]
    assert torch.equal(loaded(features), vocoder(features))


def test_iterations_refine_only_the_band_above_the_integrated_one(fe, monkeypatch):
    """The phases of the integrated band go into every iteration unchanged; the ones above start random."""
    vocoder = GriffinLimVocoder.from_feature_extractor(fe, n_iter=3, initial_phase="phase_gradient")
    features = fe.compute_log_mel(harmonic(0.3))[None]
    low = vocoder.phase_gradient_bins
    seen = []
    istft = vocoder._istft
    monkeypatch.setattr(vocoder, "_istft", lambda spec, length: seen.append(spec) or istft(spec, length))
    vocoder(features)
    assert len(seen) == 4  # three iterations and the final inverse
    magnitude = vocoder.mel_to_magnitude(features)
    expected = phase_gradient_phase(magnitude[:, :low], vocoder.hop_length, vocoder.n_fft, vocoder.win_length, 40.0)
    expected = magnitude[:, :low] * torch.polar(torch.ones_like(expected), expected)
    for spec in seen:
        torch.testing.assert_close(spec[:, :low], expected)
    assert not torch.allclose(seen[0][:, low:], seen[-1][:, low:])


def test_streamed_windows_continue_the_integrated_phase(fe, monkeypatch):
    """Each streamed window starts its integration from the phase the window before computed, so every window's
    low band has the phase of the whole sequence integrated at once; joined chunks still equal one-shot decoding."""
    vocoder = GriffinLimVocoder.from_feature_extractor(fe, n_iter=2, initial_phase="phase_gradient")
    features = fe.compute_log_mel(harmonic(1.2))  # [T, D]
    whole = vocoder._integrated_phase(vocoder.mel_to_magnitude(features[None]))
    held = []
    invert = vocoder._invert
    monkeypatch.setattr(vocoder, "_invert", lambda m, h, g, n: held.append(h) or invert(m, h, g, n))
    streamer = StreamingVocoder(vocoder, chunk_frames=10, left_context_frames=4, lookahead_frames=3)
    chunks = []
    for start in range(0, features.shape[0], 3):
        chunks += streamer.push(features[start : start + 3])
    chunks += streamer.flush()
    assert len(held) >= 4
    covered = 0
    for phase in held[1:]:
        # find the window's frames in the whole sequence: windows are contiguous ranges of frames
        for offset in range(whole.shape[-1] - phase.shape[-1] + 1):
            window = whole[..., offset : offset + phase.shape[-1]]
            error = torch.polar(torch.ones_like(phase), phase) - torch.polar(torch.ones_like(window), window)
            # the window's last frame had a one-sided time derivative, as the sequence's last frame has
            if float(error[..., :-1].abs().max()) < 1e-3:
                covered += 1
                break
    assert covered == len(held) - 1
    torch.testing.assert_close(torch.cat(chunks), streamer.decode(features), rtol=0, atol=0)


def test_pipeline_stream_equals_one_shot_with_the_integrated_phase():
    pipe = get_dummy_pipeline()
    vocoder = GriffinLimVocoder.from_config(pipe.vocoder.config, n_iter=2, initial_phase="phase_gradient")
    pipe = DiTARPipeline(**{**pipe.components, "vocoder": vocoder})
    pipe.set_progress_bar_config(disable=True)
    one_shot = pipe(**get_dummy_inputs(max_new_patches=40))
    joined = np.concatenate(list(pipe.stream(**get_dummy_inputs(max_new_patches=40))))
    np.testing.assert_allclose(joined, one_shot.audios[0], atol=1e-6, rtol=0)

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


def test_the_reference_decides_which_bins_follow_their_peak():
    """With a loud reference every bin of a quiet frame is below the tolerance and keeps its time-integrated phase;
    with the frame's own maximum its peak's neighbours follow the peak (different phases)."""
    magnitude = stft(GriffinLimVocoder(), harmonic(0.3)).abs()[:, :200]
    args = (256, 1024, 1024)
    own = phase_gradient_phase(magnitude, *args)
    loud = torch.full(magnitude.shape[::2], float(magnitude.max()) * 1e4)
    quiet = phase_gradient_phase(magnitude, *args, reference=loud)
    assert not torch.allclose(own, quiet)
    # nothing follows a peak: each bin advances by its own instantaneous frequency over a hop (trapezoid rule), which
    # for a Hann window of L samples is hop * (n_fft / (0.25645 L^2) * d log|X| / d bin + 2 pi bin / n_fft)
    hop, n_fft, window = args
    slope = torch.gradient(torch.log(magnitude.clamp(min=1e-30)), dim=1)[0]
    bins = torch.arange(magnitude.shape[1], dtype=torch.float32)[None, :, None]
    advance = hop * (n_fft / (0.25645 * window**2) * slope + 2 * math.pi * bins / n_fft)
    expected_step = 0.5 * (advance[..., 1:] + advance[..., :-1])
    step = torch.polar(torch.ones_like(quiet[..., 1:]), quiet[..., 1:] - quiet[..., :-1])
    torch.testing.assert_close(step, torch.polar(torch.ones_like(expected_step), expected_step), atol=2e-3, rtol=0)
    with pytest.raises(ValueError, match="reference must be"):
        phase_gradient_phase(magnitude, *args, reference=loud[:, :-1])


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
        (dict(phase_gradient_reference="utterance"), "phase_gradient_reference"),
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
    """With every bin of the band held, the band's phases go into every iteration unchanged; the ones above start
    random."""
    vocoder = GriffinLimVocoder.from_feature_extractor(
        fe, n_iter=3, initial_phase="phase_gradient", phase_gradient_reference="frame", phase_gradient_weak_bins="held"
    )
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


def test_weak_bins_can_be_left_to_the_iterations(fe, monkeypatch):
    """With phase_gradient_weak_bins="iterated" only the band's strong bins are held; its weak bins start random and
    change from iteration to iteration like the bins above the band, and no NaN reaches the audio."""
    vocoder = GriffinLimVocoder.from_feature_extractor(
        fe, n_iter=3, initial_phase="phase_gradient", phase_gradient_weak_bins="iterated"
    )
    features = fe.compute_log_mel(harmonic(0.3))[None]
    features[:, 10:14] -= 6.0  # a quiet stretch, so that some frames have weak bins
    magnitude = vocoder.mel_to_magnitude(features)
    held = vocoder._integrated_phase(magnitude)[1]
    weak = torch.isnan(held)
    assert weak.any() and (~weak).any()
    seen = []
    istft = vocoder._istft
    monkeypatch.setattr(vocoder, "_istft", lambda spec, length: seen.append(spec) or istft(spec, length))
    audio = vocoder(features)
    assert torch.isfinite(audio).all()
    low = vocoder.phase_gradient_bins
    strong_values = magnitude[:, :low] * torch.polar(torch.ones_like(held), held.nan_to_num(0.0))
    for spec in seen:
        torch.testing.assert_close(spec[:, :low][~weak], strong_values[~weak])
    assert not torch.allclose(seen[0][:, :low][weak], seen[-1][:, :low][weak])
    with pytest.raises(ValueError, match="phase_gradient_weak_bins"):
        GriffinLimVocoder(phase_gradient_weak_bins="random")


@pytest.mark.parametrize(
    "reference, weak_bins", [("frame", "held"), ("running_max", "held"), ("running_max", "iterated")]
)
def test_streamed_windows_continue_the_integrated_phase(fe, monkeypatch, reference, weak_bins):
    """Each streamed window starts its integration from the phase (and running maximum) the window before computed,
    so every window's low band has the phase of the whole sequence integrated at once; joined chunks still equal
    one-shot decoding."""
    vocoder = GriffinLimVocoder.from_feature_extractor(
        fe,
        n_iter=2,
        initial_phase="phase_gradient",
        phase_gradient_reference=reference,
        phase_gradient_weak_bins=weak_bins,
    )
    # a loud start then a quieter stretch, so that the running maximum differs from each frame's own
    signal = harmonic(1.2)
    signal[: signal.shape[0] // 3] *= 8.0
    features = fe.compute_log_mel(signal)  # [T, D]
    magnitude = vocoder.mel_to_magnitude(features[None])
    whole = vocoder._integrated_phase(magnitude)[1]
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
            # bins that are not held (NaN) must be the same bins in both
            if not torch.equal(torch.isnan(phase[..., :-1]), torch.isnan(window[..., :-1])):
                continue
            phase, window = phase.nan_to_num(0.0), window.nan_to_num(0.0)
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

"""Prompt spectrum matching: the running correction itself, and the pipeline's use of it (one-shot, streaming,
candidates, generation config, bad values)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline

from modeling_ditar.spectrum_matching import PromptSpectrumMatch

DIM = 6


def _utterance(frames: int, level: float, spectrum: torch.Tensor, seed: int) -> torch.Tensor:
    """Log-mel-like frames: a pause (level - 6) around speech at `level` with per-bin shape `spectrum`."""
    g = torch.Generator().manual_seed(seed)
    out = spectrum + level + 0.3 * torch.randn(frames, DIM, generator=g)
    out[: frames // 5] = level - 6.0 + 0.1 * torch.randn(frames // 5, DIM, generator=g)
    return out


PROMPT_SHAPE = torch.linspace(1.0, -1.0, DIM)


def test_patch_by_patch_equals_all_at_once():
    prompt = _utterance(120, -3.0, PROMPT_SHAPE, 0)
    generated = _utterance(90, -3.5, -PROMPT_SHAPE, 1)
    whole = PromptSpectrumMatch(prompt, 0.5)(generated)
    match = PromptSpectrumMatch(prompt, 0.5)
    pieces = torch.cat([match(generated[i : i + 4]) for i in range(0, 90, 4)])
    torch.testing.assert_close(pieces, whole, rtol=0, atol=1e-6)
    assert not torch.allclose(whole, generated)


def test_strength_zero_and_empty_input_change_nothing():
    prompt = _utterance(60, -3.0, PROMPT_SHAPE, 0)
    generated = _utterance(40, -3.0, -PROMPT_SHAPE, 1)
    assert torch.equal(PromptSpectrumMatch(prompt, 0.0)(generated), generated)
    assert PromptSpectrumMatch(prompt, 0.5)(generated[:0]).shape == (0, DIM)


def test_speech_moves_towards_the_prompt_and_pauses_stay():
    prompt = _utterance(200, -3.0, PROMPT_SHAPE, 0)
    generated = _utterance(400, -3.0, -PROMPT_SHAPE, 1)
    moved = PromptSpectrumMatch(prompt, 0.5, prior_frames=25)(generated)
    pause = slice(0, 80)
    # pauses, far below the prompt's speech, are hardly touched (the noise floor does not rise)
    assert (moved[pause] - generated[pause]).abs().max() < 0.02 * (moved[-100:] - generated[-100:]).abs().mean()
    # late in a long utterance the running estimate has converged: half of the spectral difference is gone
    before = generated[-100:].mean(0) - prompt[40:].mean(0)
    after = moved[-100:].mean(0) - prompt[40:].mean(0)
    torch.testing.assert_close(after, 0.5 * before, atol=0.1, rtol=0)
    # the first speech frames are hardly moved (the estimate starts at the prompt's own spectrum)
    first = (moved[80:82] - generated[80:82]).abs().max()
    assert first < 0.1 * before.abs().max()


def test_spread_patch_by_patch_equals_all_at_once_and_moves_towards_the_prompt():
    prompt = _utterance(200, -3.0, PROMPT_SHAPE, 0)
    prompt[40:] = prompt[40:].mean(0) + 2.0 * (prompt[40:] - prompt[40:].mean(0))  # a livelier voice
    generated = _utterance(400, -3.0, PROMPT_SHAPE, 1)
    whole = PromptSpectrumMatch(prompt, 0.5, spread_strength=1.0)(generated)
    match = PromptSpectrumMatch(prompt, 0.5, spread_strength=1.0)
    pieces = torch.cat([match(generated[i : i + 4]) for i in range(0, 400, 4)])
    torch.testing.assert_close(pieces, whole, rtol=0, atol=1e-6)
    # late in the utterance each bin varies much more, towards the prompt's speech (twice the generated spread; the
    # prompt's quieter speech frames count less, so its spread is measured a little smaller than that)
    spread = whole[-150:].std(0) / generated[-150:].std(0)
    assert bool(((spread > 1.5) & (spread < 2.2)).all()), spread
    # without it, the spread stays about the generated one (the mean shift itself varies a little over time)
    plain = PromptSpectrumMatch(prompt, 0.5)(generated)[-150:].std(0) / generated[-150:].std(0)
    torch.testing.assert_close(plain, torch.ones(DIM, dtype=plain.dtype), atol=0.05, rtol=0)


def test_spread_ratio_is_bounded():
    prompt = _utterance(200, -3.0, PROMPT_SHAPE, 0)
    generated = _utterance(400, -3.0, PROMPT_SHAPE, 1)
    generated[80:] = generated[80:].mean(0) + 0.01 * (generated[80:] - generated[80:].mean(0))  # nearly flat speech
    moved = PromptSpectrumMatch(prompt, 0.0, spread_strength=1.0)(generated)
    ratio = moved[-150:].std(0) / generated[-150:].std(0)
    assert float(ratio.max()) <= PromptSpectrumMatch.MAX_SPREAD_RATIO + 1e-6


def test_bad_prompt_frames():
    with pytest.raises(ValueError, match="prompt_frames must be"):
        PromptSpectrumMatch(torch.zeros(0, DIM), 0.5)


# ----------------------------------------------------------------------------------------------------------------------
# in the pipeline


@pytest.fixture(scope="module")
def pipe():
    return get_dummy_pipeline()


def test_call_moves_features_and_stream_matches_one_shot(pipe):
    plain = pipe(**get_dummy_inputs(max_new_patches=40), output_type="features").audios[0]
    moved = pipe(**get_dummy_inputs(max_new_patches=40), output_type="features", prompt_spectrum_match=1.0)
    assert moved.audios[0].shape == plain.shape and not torch.allclose(moved.audios[0], plain)
    one_shot = pipe(**get_dummy_inputs(max_new_patches=40), prompt_spectrum_match=1.0)
    streamed = np.concatenate(list(pipe.stream(**get_dummy_inputs(max_new_patches=40), prompt_spectrum_match=1.0)))
    np.testing.assert_allclose(streamed, one_shot.audios[0], atol=1e-6, rtol=0)


def test_stream_of_long_text_and_candidates_match_one_shot():
    pipe = get_dummy_pipeline(ctc_loss_weight=1.0, num_candidates=3)
    text = "A sentence that is part of a long paragraph. " * 12
    args = dict(text=text, max_new_patches=6, prompt_spectrum_match=0.5)
    one_shot = pipe(**get_dummy_inputs(**args))
    streamed = np.concatenate(list(pipe.stream(**get_dummy_inputs(**args))))
    np.testing.assert_allclose(streamed, one_shot.audios[0], atol=1e-6, rtol=0)


def test_default_comes_from_the_generation_config(tmp_path):
    pipe = get_dummy_pipeline()
    plain = pipe(**get_dummy_inputs(max_new_patches=20), output_type="features").audios[0]
    pipe.model.generation_config.prompt_spectrum_match = 1.0
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = type(pipe).from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.model.generation_config.prompt_spectrum_match == 1.0
    moved = loaded(**get_dummy_inputs(max_new_patches=20), output_type="features").audios[0]
    explicit = pipe(**get_dummy_inputs(max_new_patches=20), output_type="features", prompt_spectrum_match=1.0)
    torch.testing.assert_close(moved, explicit.audios[0])
    off = loaded(**get_dummy_inputs(max_new_patches=20), output_type="features", prompt_spectrum_match=0)
    torch.testing.assert_close(off.audios[0], plain)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5", True])
def test_bad_strength_is_named(pipe, value):
    with pytest.raises(ValueError, match="prompt_spectrum_match"):
        pipe(**get_dummy_inputs(), prompt_spectrum_match=value)
    with pytest.raises(ValueError, match="prompt_spectrum_match"):
        pipe.stream(**get_dummy_inputs(), prompt_spectrum_match=value)


def test_vae_pipeline_refuses_it():
    from test_vae import get_dummy_vae_pipeline

    vae_pipe = get_dummy_vae_pipeline()
    with pytest.raises(ValueError, match="prompt_spectrum_match=0.5 changes log-mel spectra.*VAE latents"):
        vae_pipe("hello there", max_new_patches=2, prompt_spectrum_match=0.5)
    vae_pipe.model.generation_config.prompt_spread_match = 0.5
    with pytest.raises(ValueError, match="prompt_spread_match=0.5 .*generation_config.prompt_spread_match = 0"):
        vae_pipe("hello there", max_new_patches=2)


def test_spread_from_the_generation_config_streams_like_one_shot():
    pipe = get_dummy_pipeline()
    plain = pipe(**get_dummy_inputs(max_new_patches=40), output_type="features").audios[0]
    pipe.model.generation_config.prompt_spread_match = 1.0
    spread = pipe(**get_dummy_inputs(max_new_patches=40), output_type="features").audios[0]
    assert not torch.allclose(spread, plain)
    one_shot = pipe(**get_dummy_inputs(max_new_patches=40))
    streamed = np.concatenate(list(pipe.stream(**get_dummy_inputs(max_new_patches=40))))
    np.testing.assert_allclose(streamed, one_shot.audios[0], atol=1e-6, rtol=0)
    pipe.model.generation_config.prompt_spread_match = 1.5
    with pytest.raises(ValueError, match="`prompt_spread_match` must be a number in \\[0, 1\\]"):
        pipe(**get_dummy_inputs())

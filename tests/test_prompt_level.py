"""Quiet prompts are raised to an ordinary recording level before their features are computed; others are untouched."""

import numpy as np
import pytest
import torch
from pipeline_helpers import SR, get_dummy_processor, tone

from modeling_ditar.prompt_audio import (
    PROMPT_LEVEL_TARGET_DB,
    QUIET_PROMPT_FLOOR_DB,
    raise_quiet_prompt,
    speech_level_db,
)


def at_level(db: float, seconds: float = 0.5) -> np.ndarray:
    """A tone whose active-speech level is `db` dBFS, with a silent second half (pauses do not count)."""
    wave = tone(seconds, amplitude=1.0).astype(np.float64)
    wave = wave * 10 ** ((db - speech_level_db(wave, SR)) / 20)
    return np.concatenate([wave, np.zeros_like(wave)]).astype(np.float32)


def test_speech_level_is_the_rms_of_the_active_frames():
    sine = np.sin(2 * np.pi * 200 * np.arange(SR) / SR).astype(np.float32) * 0.5
    assert speech_level_db(sine, SR) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.05)
    with_pause = np.concatenate([sine, np.zeros(SR, np.float32), 1e-4 * sine])  # pause and a faint tail: ignored
    assert speech_level_db(with_pause, SR) == pytest.approx(speech_level_db(sine, SR), abs=0.05)


def test_a_quiet_prompt_is_raised_to_the_target_and_others_are_untouched():
    quiet = torch.from_numpy(at_level(-40.0))
    raised = raise_quiet_prompt(quiet, SR, QUIET_PROMPT_FLOOR_DB, PROMPT_LEVEL_TARGET_DB)
    assert speech_level_db(raised, SR) == pytest.approx(PROMPT_LEVEL_TARGET_DB, abs=0.05)
    assert torch.allclose(raised / raised.abs().max(), quiet / quiet.abs().max(), atol=1e-5)  # only the gain changes
    ordinary = torch.from_numpy(at_level(-18.0))
    assert raise_quiet_prompt(ordinary, SR, QUIET_PROMPT_FLOOR_DB, PROMPT_LEVEL_TARGET_DB) is ordinary
    assert raise_quiet_prompt(quiet, SR, None, PROMPT_LEVEL_TARGET_DB) is quiet  # switched off


def test_raising_never_pushes_the_peak_past_full_scale():
    click = np.zeros(SR, np.float32)
    click[::800] = 0.02  # sparse clicks: a very high peak for its level
    raised = raise_quiet_prompt(torch.from_numpy(click), SR, QUIET_PROMPT_FLOOR_DB, PROMPT_LEVEL_TARGET_DB)
    assert float(raised.abs().max()) == pytest.approx(0.99, abs=1e-6)


def test_processor_features_of_a_quiet_prompt_equal_those_of_the_raised_prompt():
    processor = get_dummy_processor()
    quiet = at_level(-40.0)
    gain = 10 ** ((PROMPT_LEVEL_TARGET_DB + 40.0) / 20)
    kwargs = dict(prompt_text="The prompt.", sampling_rate=SR)
    got = processor("Hello.", prompt_audio=quiet, **kwargs)["prompt_features"]
    expected = processor("Hello.", prompt_audio=quiet * gain, **kwargs)["prompt_features"]
    assert torch.allclose(got, expected, atol=1e-4)
    processor.quiet_prompt_floor_db = None  # the prompt as given
    as_given = processor("Hello.", prompt_audio=quiet, **kwargs)["prompt_features"]
    assert not torch.allclose(as_given, expected, atol=1e-2)

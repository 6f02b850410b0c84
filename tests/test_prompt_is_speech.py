"""A voice prompt of 1.5 s or more must rise and fall like speech: steady noise, hum and tones are refused."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pipeline_helpers import SR, get_dummy_processor, spoken, tone

from modeling_ditar.prompt_audio import (
    MIN_PROMPT_LOUDNESS_RANGE_DB,
    check_prompt_is_speech,
    speech_band_loudness_range_db,
)

DEFAULT_VOICE = Path(__file__).resolve().parents[1] / "modeling_ditar" / "default" / "default_voice" / "prompt.wav"


def coloured_noise(seconds: float, sr: int, exponent: float, seed: int = 0) -> np.ndarray:
    """Gaussian noise with a power spectrum falling as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    freqs = np.fft.rfftfreq(n)
    spectrum = rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))
    spectrum[1:] /= freqs[1:] ** (exponent / 2)
    spectrum[0] = 0
    wave = np.fft.irfft(spectrum, n)
    return (0.1 * wave / wave.std()).astype(np.float32)


@pytest.mark.parametrize("sr", [8000, 16000, 44100])
def test_steady_noise_hum_and_tones_stay_below_the_limit(sr):
    t = np.arange(2 * sr) / sr
    steady = {
        "white": coloured_noise(2.0, sr, 0),
        "pink": coloured_noise(2.0, sr, 1),
        "brown": coloured_noise(2.0, sr, 2),
        "hum": sum(0.2 / k * np.sin(2 * np.pi * 50 * k * t + k) for k in range(1, 20)).astype(np.float32),
        "fan": np.convolve(coloured_noise(2.0, sr, 0), np.ones(8) / 8, mode="same"),
        "tone": tone(2.0, sr=sr, freq=440.0),
    }
    for name, wave in steady.items():
        assert speech_band_loudness_range_db(wave, sr) < MIN_PROMPT_LOUDNESS_RANGE_DB, name
        with pytest.raises(ValueError, match="does not sound like speech"):
            check_prompt_is_speech(wave, sr, MIN_PROMPT_LOUDNESS_RANGE_DB)


def test_speech_and_speech_like_clips_pass_with_margin():
    speech, rate = sf.read(str(DEFAULT_VOICE), dtype="float32")
    assert speech_band_loudness_range_db(speech, rate) > 15.0
    # the same speech under steady white noise at 10 dB SNR still varies by far more than the limit
    noise = coloured_noise(len(speech) / rate, rate, 0)[: len(speech)]
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10)
    assert speech_band_loudness_range_db(speech + noise, rate) > 2 * MIN_PROMPT_LOUDNESS_RANGE_DB
    assert speech_band_loudness_range_db(spoken(2.0), SR) > 15.0
    check_prompt_is_speech(speech, rate, MIN_PROMPT_LOUDNESS_RANGE_DB)


def test_clips_under_one_and_a_half_seconds_are_not_judged_and_none_turns_the_check_off():
    assert speech_band_loudness_range_db(coloured_noise(1.49, SR, 0), SR) == float("inf")
    check_prompt_is_speech(coloured_noise(1.49, SR, 0), SR, MIN_PROMPT_LOUDNESS_RANGE_DB)
    check_prompt_is_speech(coloured_noise(2.0, SR, 0), SR, None)


def test_the_processor_refuses_a_noise_prompt_unless_told_not_to():
    processor = get_dummy_processor()
    hiss = coloured_noise(2.0, SR, 0)
    with pytest.raises(ValueError, match=r"^prompt_audio does not sound like speech: .* varies by only \d+\.\d dB"):
        processor.load_prompt_audio(hiss, SR)
    with pytest.raises(ValueError, match="does not sound like speech"):
        processor.set_default_voice(hiss, "a clip of hiss", sampling_rate=SR)
    processor.min_prompt_loudness_range_db = None
    assert processor.load_prompt_audio(hiss, SR).shape == (2 * SR,)

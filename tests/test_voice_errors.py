"""`set_default_voice(audio, text, sampling_rate)` and `create_voice(audio, transcript, sampling_rate)` check a
recording as a call checks `prompt_audio`/`prompt_text`, but their errors name the arguments the user passed them as,
and the transcript goes through the text front end once (one warning per thing it reports, not one per check), with
the same features, ids and waveform as before."""

from __future__ import annotations

import logging
import re

import numpy as np
import pytest
import torch
from pipeline_helpers import SR, get_dummy_pipeline, spoken, tone

from modeling_ditar import prompt_audio

# (method, what it calls the recording, what it calls the transcript, what its ValueErrors start with)
VOICE_FUNCTIONS = [
    ("set_default_voice", "audio", "text", "the new default voice cannot be used: "),
    ("create_voice", "audio", "transcript", ""),
]
HISS = np.random.default_rng(0).normal(0.0, 0.1, 2 * SR).astype(np.float32)  # 2 s of steady noise, no voice
UNKNOWN = "\u2603"  # a character the vocabulary lacks: the front end warns about it each time it encodes it


@pytest.fixture(scope="module")
def pipe():
    return get_dummy_pipeline()


# (case, audio, transcript, sampling_rate, error, message with {audio} and {text} for the function's names)
BAD_VOICES = [
    ("non-string transcript", tone(0.1), 123, SR, ValueError, "{text} must be a string, got int"),
    ("empty transcript", tone(0.1), "  ", SR, ValueError, "`{text}` is empty or whitespace only"),
    ("punctuation only", tone(0.1), "?!...", SR, ValueError, r"`{text}` '\?!\.\.\.' has nothing to speak"),
    ("silent recording", np.zeros(800, np.float32), "a tone", SR, ValueError, "{audio}: `audio` is silent"),
    ("wrong sampling rate", tone(0.1), "a tone", -5, ValueError, "{audio}: `sampling_rate` must be a positive"),
    ("array without its rate", tone(0.1), "a tone", None, ValueError, "{audio} is an array but sampling_rate is"),
    ("missing file", "/no/such.wav", "a tone", None, FileNotFoundError, "{audio}: Audio file not found"),
    ("noise, not speech", HISS, "a clip of hiss", SR, ValueError, "{audio} does not sound like speech"),
    ("too short", tone(0.001), "a tone", SR, ValueError, "{audio} is shorter than the model needs"),
    (
        "transcript too long for the clip",
        tone(0.1),
        "word " * 200,
        SR,
        ValueError,
        r"{text} has \d+ tokens for 0\.10 s of {audio}: .* {text} must be the exact transcript of {audio}",
    ),
    (
        "transcript too short for the clip",
        spoken(2.0),
        "hi",
        SR,
        ValueError,
        r"{text} has 2 tokens for 2\.00 s of {audio}: .* {text} must be the complete transcript of {audio}",
    ),
]


@pytest.mark.parametrize(("function", "audio_name", "text_name", "prefix"), VOICE_FUNCTIONS)
@pytest.mark.parametrize(
    ("case", "audio", "transcript", "rate", "error", "message"), BAD_VOICES, ids=[case[0] for case in BAD_VOICES]
)
def test_errors_name_the_arguments_given(
    pipe, function, audio_name, text_name, prefix, case, audio, transcript, rate, error, message
):
    before = pipe.default_voice
    expected = "^" + re.escape(prefix) + message.format(audio=audio_name, text=text_name)
    with pytest.raises(error, match=expected) as raised:
        getattr(pipe, function)(audio, transcript, rate)
    assert "prompt_audio" not in str(raised.value) and "prompt_text" not in str(raised.value)
    assert pipe.default_voice is before  # a refused default voice leaves the previous one


@pytest.mark.parametrize(("function", "audio_name", "text_name", "prefix"), VOICE_FUNCTIONS)
def test_a_recording_of_the_wrong_type_is_named_as_given(pipe, function, audio_name, text_name, prefix):
    for audio in (object(), [tone(0.1)]):
        with pytest.raises(TypeError, match=f"^{audio_name} must be a path, a numpy array.*; got"):
            getattr(pipe, function)(audio, "a tone", SR)


@pytest.mark.parametrize(("function", "audio_name", "text_name", "prefix"), VOICE_FUNCTIONS)
def test_the_warning_of_a_cut_recording_names_the_arguments_given(
    pipe, function, audio_name, text_name, prefix, monkeypatch, caplog
):
    monkeypatch.setattr(prompt_audio, "MAX_PROMPT_SECONDS", 0.4)
    before = pipe.default_voice
    try:
        with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
            getattr(pipe, function)(spoken(0.6, sr=16000), "one two three four five six", 16000)
    finally:
        pipe.processor.default_voice = before
    assert f"{audio_name} is 0.6 s long" in caplog.text and f"and {text_name} to the first" in caplog.text
    assert "prompt_audio" not in caplog.text and "prompt_text" not in caplog.text


def test_the_transcript_goes_through_the_text_front_end_once(caplog):
    """set_default_voice encoded the transcript twice (to check the voice, then to store it), so each front-end
    warning came twice; with a prompt transcriber it was encoded three times (create_voice: twice)."""
    pipe = get_dummy_pipeline()
    transcript = f"a test voice {UNKNOWN}"
    calls = [
        lambda: pipe.set_default_voice(tone(0.1), transcript, SR),
        lambda: pipe.create_voice(tone(0.1), transcript, SR),
    ]
    pipe_hearing = get_dummy_pipeline()
    pipe_hearing.enable_prompt_transcription(lambda audio, rate: transcript)
    calls += [
        lambda: pipe_hearing.set_default_voice(spoken(1.6), sampling_rate=SR),
        lambda: pipe_hearing.create_voice(spoken(1.6), sampling_rate=SR),
    ]
    for index, call in enumerate(calls):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
            call()
        assert caplog.text.count("not in the vocabulary") == 1, (index, caplog.text)


def test_voices_are_as_the_processor_makes_them(pipe):
    """The voice of a recording and the default voice: the features and ids a call with that prompt gets, and the
    waveform the processor prepares, bit for bit."""
    recording, transcript = spoken(0.6, sr=16000), "a test voice"
    expected = pipe.processor(["hi"], prompt_audio=recording, prompt_text=transcript, sampling_rate=16000)
    voice = pipe.create_voice(recording, transcript, 16000)
    frames = int(expected["prompt_attention_mask"][0].sum())
    assert torch.equal(voice.prompt_features, expected["prompt_features"][0, :frames])
    ids = pipe.processor.encode_text(transcript) + pipe.processor.encode_text(" ", allow_empty=True)
    assert voice.prompt_input_ids.tolist() == ids
    assert torch.equal(voice.speech_position_rate, expected["speech_position_rate"][0])
    before = pipe.default_voice
    try:
        pipe.set_default_voice(recording, transcript, 16000)
        audio, rate, text = pipe.default_voice
    finally:
        pipe.processor.default_voice = before
    assert rate == SR and text == transcript
    np.testing.assert_array_equal(audio, pipe.processor.load_prompt_audio(recording, 16000, target_rate=SR).numpy())


def test_a_transcribed_voice_is_the_voice_of_its_transcript():
    heard = "a test voice"
    pipe = get_dummy_pipeline()
    recording = spoken(1.6)
    given = pipe.create_voice(recording, heard, SR)
    pipe.set_default_voice(recording, heard, SR)
    given_default = pipe.default_voice
    pipe.enable_prompt_transcription(lambda audio, rate: heard)
    transcribed = pipe.create_voice(recording, sampling_rate=SR)
    assert transcribed.transcript == heard
    assert torch.equal(transcribed.prompt_features, given.prompt_features)
    assert torch.equal(transcribed.prompt_input_ids, given.prompt_input_ids)
    assert torch.equal(transcribed.speech_position_rate, given.speech_position_rate)
    pipe.set_default_voice(recording, sampling_rate=SR)
    np.testing.assert_array_equal(pipe.default_voice[0], given_default[0])
    assert pipe.default_voice[1:] == given_default[1:]

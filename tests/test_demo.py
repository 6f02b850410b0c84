"""The Gradio demo (app.py): its action with the tiny pipeline, the served app, and the page in headless Chromium.
Slow, and only where the `demo` extra (gradio) is installed; the browser test also needs playwright and Chromium."""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from pipeline_helpers import SR, get_dummy_pipeline, spoken, tone, write_wav
from test_prompt_progress_level import speech_with_gaps

pytestmark = pytest.mark.slow
gr = pytest.importorskip("gradio")

ROOT = Path(__file__).resolve().parents[1]


def load_app():
    spec = importlib.util.spec_from_file_location("ditar_demo_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_action_speaks_like_the_pipeline_and_names_mistakes(tmp_path):
    app, pipe = load_app(), get_dummy_pipeline()
    (rate, samples), status = app.synthesize(pipe, "hello there", None, "", 4)
    expected = pipe("hello there", generator=torch.Generator().manual_seed(4))
    audio = expected.audios[0][: expected.audio_lengths[0]]
    assert rate == SR and samples.dtype == np.int16
    np.testing.assert_array_equal(samples, np.clip(np.round(audio.astype(np.float64) * 32768), -32768, 32767))
    assert "default voice" in status and "seed 4" in status
    voice = write_wav(tmp_path / "voice.wav", tone(0.06, freq=300.0))
    (_, cloned), status = app.synthesize(pipe, "hello there", voice, "the prompt", 4)
    assert "uploaded voice" in status and not np.array_equal(cloned[: len(samples)], samples[: len(cloned)])
    for args, words in [
        (("  ", None, "", 0), "Type the text"),
        (("x" * 1001, None, "", 0), "1001 characters"),
        (("hello", voice, " ", 0, None), "Type the transcript"),
        (("hello", voice, " ", 0, str(tmp_path / "no-asr")), "Type the transcript.*could not be transcribed"),
        (("hello", str(tmp_path / "missing.wav"), "the prompt", 0), "missing.wav"),
        (("你好", None, "", 0), "Han script"),
    ]:
        with pytest.raises(gr.Error, match=words) as error:
            app.synthesize(pipe, *args)
        assert getattr(error.value, "print_exception", False) is False  # no console traceback for a user's mistake


def test_messages_name_the_boxes_not_the_pipeline_arguments(tmp_path):
    """The page said "prompt_audio: `audio` is silent" and "prompt_text has 329 tokens for 1.20 s of prompt_audio"."""
    app, pipe = load_app(), get_dummy_pipeline()
    silent = write_wav(tmp_path / "silent.wav", np.zeros(SR, np.float32))
    voice = write_wav(tmp_path / "voice.wav", spoken(1.2))
    for args, words in [
        (("hello", silent, "the prompt", 0), r"^The voice recording is silent \("),
        (("hello", voice, "the prompt " * 30, 0), r"^The transcript has \d+ tokens for 1.20 s of the voice recording"),
        (("...!?", None, "", 0), r"^The text to speak '...!\?' has nothing to speak"),
    ]:
        with pytest.raises(gr.Error) as error:
            app.synthesize(pipe, *args)
        assert re.match(words, error.value.message), error.value.message
        assert not any(name in error.value.message for name in ("prompt_", "`audio`", "`text`")), error.value.message
    # every occurrence, with and without backticks; the one parenthesised name points at the box
    message = (
        "`prompt_text` 'x' is odd. prompt_text must be the transcript of prompt_audio: `prompt_audio` is 9 s long. "
        "Give the transcript (prompt_text)."
    )
    assert app.page_message(message) == (
        "The transcript 'x' is odd. The transcript must be the transcript of the voice recording: the voice recording "
        "is 9 s long. Give the transcript (in the transcript box)."
    )
    # a code hint keeps its argument names: "the voice recording=audio" helps nobody
    hint = "pass the clip alone: prompt_audio=audio, sampling_rate=8000, prompt_text=..."
    assert app.page_message(hint) == hint


def test_pipeline_warnings_show_on_the_page_and_still_on_the_console(tmp_path, monkeypatch):
    """A recording cut at a pause and characters dropped from the text were only logged to the console."""
    from modeling_ditar import prompt_audio

    app, pipe = load_app(), get_dummy_pipeline()
    monkeypatch.setattr(prompt_audio, "MAX_PROMPT_SECONDS", 0.45)  # the tiny model's scale
    audio, _ = speech_with_gaps([0.1, -0.12, 0.1, -0.12, 0.1])  # 0.54 s at 8 kHz, cut after "three four."
    voice = write_wav(tmp_path / "voice.wav", audio)
    # nothing configured logging (pytest's own handlers set aside): Python prints warnings with its last resort
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    console = io.StringIO()
    monkeypatch.setattr(logging, "lastResort", logging.StreamHandler(console))
    args = ("hello 😀 there", voice, "one two. three four. five six.")
    pipe(*args[:1], prompt_audio=voice, prompt_text=args[2], generator=torch.Generator().manual_seed(0))
    printed_by_the_pipeline = console.getvalue()
    console.seek(0), console.truncate()
    _, status = app.synthesize(pipe, *args, 0)
    assert console.getvalue() == printed_by_the_pipeline and "prompt_audio is 0.5 s long" in printed_by_the_pipeline
    assert "\n\nNote: The voice recording is 0.5 s long" in status and "and the transcript to the first 4" in status
    assert "\n\nNote: 1 character(s) of the text 'hello 😀 there' are not in the vocabulary" in status
    # each warning once, but the cap's, which the status line says in the page's words
    printed = [line for line in printed_by_the_pipeline.splitlines() if "did not end on its own" not in line]
    assert status.count("Note: ") == len(printed)
    _, status = app.synthesize(pipe, "hello there", None, "", 0)  # a call without warnings: none left over
    assert "voice recording" not in status and "vocabulary" not in status


def test_the_seed_box_takes_what_torch_takes(tmp_path):
    """A seed beyond 64 bits failed with torch's "Overflow when unpacking long long"."""
    app, pipe = load_app(), get_dummy_pipeline()
    for seed in (2**70, 1e20, -(2**63) - 1, float("inf"), float("nan"), "seven"):
        with pytest.raises(gr.Error, match="Seed must be a whole number from -9223372036854775808 to 1844674407"):
            app.synthesize(pipe, "hello there", None, "", seed)
    for seed in (-5, 2**64 - 1, -(2**63)):
        (_, samples), status = app.synthesize(pipe, "hello there", None, "", seed)
        expected = pipe("hello there", generator=torch.Generator().manual_seed(seed))
        assert f"(seed {seed})" in status and len(samples) == expected.audio_lengths[0]


def test_a_recogniser_that_failed_to_load_is_not_tried_again(tmp_path, monkeypatch):
    """Without network each click with an empty transcript waited for the Hub's retries (about 46 s) again."""
    app, pipe = load_app(), get_dummy_pipeline()
    tries = []

    def unreachable(asr_model):
        tries.append(asr_model)
        raise OSError(f"could not load the speech recognition model {asr_model!r}: no network")

    monkeypatch.setattr(pipe, "enable_prompt_transcription", unreachable)
    voice = write_wav(tmp_path / "voice.wav", spoken(1.2))
    messages = []
    for _ in range(3):
        with pytest.raises(gr.Error, match="Type the transcript.*could not be transcribed.*no network") as error:
            app.synthesize(pipe, "hello there", voice, "", 0, asr_model="someone/asr")
        messages.append(error.value.message)
    assert tries == ["someone/asr"] and len(set(messages)) == 1
    (_, _), status = app.synthesize(pipe, "hello there", voice, "the prompt", 0, asr_model="someone/asr")
    assert "uploaded voice" in status  # a typed transcript still works


def test_the_start_up_says_when_the_recogniser_cannot_be_loaded(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    app = load_app()
    assert app.recogniser_note(None) is None and app.recogniser_note(str(tmp_path)) is None  # a folder: fine
    assert "is not a folder" in app.recogniser_note(str(tmp_path / "no-such-asr"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "not downloaded and HF_HUB_OFFLINE is set" in app.recogniser_note("nobody/no-such-asr-model")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert "fetched from the Hub" in app.recogniser_note("nobody/no-such-asr-model")
    # main says it before serving (the served page itself is the other tests')
    launched = []

    class Demo:
        def queue(self, **kwargs):
            return self

        def launch(self, **kwargs):
            launched.append(kwargs)

    monkeypatch.setattr(app.DiTARPipeline, "from_pretrained", lambda model: get_dummy_pipeline())
    monkeypatch.setattr(app, "build_demo", lambda pipe, asr_model: Demo())
    app.main(["--asr-model", str(tmp_path / "no-such-asr"), "--port", "7873"])
    err = capsys.readouterr().err
    assert "note: the speech recogniser" in err and "no-such-asr' is not a folder" in err and launched


def test_a_model_that_cannot_be_loaded_is_one_line(tmp_path, capsys):
    app = load_app()
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--model", str(tmp_path / "no-such-folder")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--model" in err and "no-such-folder" in err and "Traceback" not in err


def test_a_recording_without_its_transcript_is_transcribed(tmp_path):
    app, pipe = load_app(), get_dummy_pipeline()
    pipe.enable_prompt_transcription(lambda audio, rate: "a voice recording of about one second")
    voice = write_wav(tmp_path / "voice.wav", spoken(1.2))
    (_, heard), status = app.synthesize(pipe, "hello there", voice, "", 4)
    (_, typed), _ = app.synthesize(pipe, "hello there", voice, "a voice recording of about one second", 4)
    np.testing.assert_array_equal(heard, typed)
    assert "transcribed as “a voice recording of about one second”" in status


def test_the_served_app_answers_through_gradio_client(tmp_path):
    from gradio_client import Client

    app = load_app()
    demo = app.build_demo(get_dummy_pipeline())
    demo.queue().launch(server_name="127.0.0.1", server_port=7871, prevent_thread_lock=True, quiet=True)
    try:
        client = Client("http://127.0.0.1:7871/", verbose=False)
        path, status = client.predict("hello there", None, "", 1, api_name="/speak")
        audio, rate = sf.read(path)
        assert rate == SR and len(audio) > 0 and "s of speech" in status
    finally:
        demo.close()


@pytest.mark.skipif(
    shutil.which("chromium") is None or importlib.util.find_spec("playwright") is None,
    reason="needs Chromium and playwright",
)
def test_the_page_in_headless_chromium(tmp_path):
    folder = tmp_path / "tiny"
    pipe = get_dummy_pipeline()
    pipe.set_default_voice(tone(0.06, sr=16000, freq=180.0), "a test voice", sampling_rate=16000)
    pipe.save_pretrained(folder)
    shot = tmp_path / "demo.png"
    command = [sys.executable, str(ROOT / "examples" / "demo_browser_check.py"), "--model", str(folder)]
    command += ["--port", "7872", "--screenshot", str(shot), "--text", "hello there", "--timeout", "120"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert shot.stat().st_size > 10_000 and "s of speech" in result.stdout


def test_a_text_the_length_limit_cut_is_said_once_in_the_page_s_words():
    """The status says "cut at the length limit"; the pipeline's own warning of it (naming `stopped` and
    `max_new_patches`) was repeated under it as a note."""
    app, pipe = load_app(), get_dummy_pipeline()  # its stop head never stops: the derived cap ends every text
    pipe.model.generation_config.min_max_new_patches = 2
    _, status = app.synthesize(pipe, "hello", None, "", 0)
    assert "cut at the length limit" in status
    assert "max_new_patches" not in status and "Note:" not in status, status

"""The Gradio demo (app.py): its action with the tiny pipeline, the served app, and the page in headless Chromium.
Slow, and only where the `demo` extra (gradio) is installed; the browser test also needs playwright and Chromium."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from pipeline_helpers import SR, get_dummy_pipeline, spoken, tone, write_wav

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

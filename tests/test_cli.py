"""The `ditar` command line, run in-process with a tiny pipeline saved to a temporary folder (and once as a process)."""

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from pipeline_helpers import (
    SR,
    get_dummy_pipeline,
    tone,
    write_wav,
)

from modeling_ditar import cli
from modeling_ditar import pipeline_ditar as pipeline_module


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline")
    get_dummy_pipeline().save_pretrained(folder)
    return folder


@pytest.fixture
def prompt(tmp_path):
    return write_wav(tmp_path / "prompt.wav", tone(0.05, sr=16000), sr=16000)


def run(capsys, *argv):
    """`ditar ARGV` in-process: (exit status, stdout, stderr)."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def expected_audio(model_dir, text, seed, **kwargs):
    pipe = pipeline_module.DiTARPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(text, generator=torch.Generator().manual_seed(seed), **kwargs)
    return np.clip(out.audios[0][: out.audio_lengths[0]], -1, 1)


def test_synthesize_with_prompt(capsys, tmp_path, model_dir, prompt):
    output = tmp_path / "out.wav"
    code, _, err = run(
        capsys,
        "synthesize",
        "Hello there.",
        "--prompt-audio",
        prompt,
        "--prompt-text",
        "the prompt",
        "-o",
        output,
        "--model",
        model_dir,
        "--steps",
        2,
        "--guidance-scale",
        1.5,
        "--temperature",
        0.3,
        "--max-new-patches",
        3,
        "--prompt-spectrum-match",
        0.7,
        "--seed",
        4,
    )
    assert code == 0, err
    audio, rate = sf.read(output, dtype="float32")
    assert rate == SR and sf.info(output).subtype == "PCM_16"
    expected = expected_audio(
        model_dir,
        "Hello there.",
        4,
        prompt_audio=prompt,
        prompt_text="the prompt",
        num_inference_steps=2,
        guidance_scale=1.5,
        temperature=0.3,
        max_new_patches=3,
        prompt_spectrum_match=0.7,
    )
    np.testing.assert_allclose(audio, expected, atol=1.5 / 32768, rtol=0)  # PCM_16 quantisation
    assert "Wrote" in err and "cut at the patch limit" in err  # the random stop head never fires
    assert not list(tmp_path.glob(".out.wav.*"))  # the temporary file was renamed into place
    umask = os.umask(0)
    os.umask(umask)
    assert output.stat().st_mode & 0o777 == 0o666 & ~umask  # not the temporary file's private mode


def test_default_voice_and_progress_bar(capsys, tmp_path, model_dir):
    output = tmp_path / "out.flac"
    code, _, err = run(
        capsys, "synthesize", "Hello there.", "-o", output, "--model", model_dir, "--max-new-patches", 3, "--seed", 0
    )
    assert code == 0, err
    assert "Generating:" in err and "/3 [" in err  # the progress bar (cleared when done: leave=False)
    audio, rate = sf.read(output, dtype="float32")
    np.testing.assert_allclose(
        audio, expected_audio(model_dir, "Hello there.", 0, max_new_patches=3), atol=1.5 / 32768, rtol=0
    )
    # --quiet: no progress bar, no summary
    code, out, err = run(
        capsys, "synthesize", "Hello there.", "-o", output, "--model", model_dir, "--max-new-patches", 3, "-q"
    )
    assert code == 0 and out == "" and err == ""


def test_stream_writes_the_same_audio(capsys, tmp_path, model_dir):
    text = "A sentence that is part of a long paragraph. " * 12  # three segments
    args = [text, "--model", model_dir, "--max-new-patches", 8, "--seed", 1, "-q"]
    assert run(capsys, "synthesize", *args, "-o", tmp_path / "a.wav")[0] == 0
    code, _, err = run(capsys, "synthesize", *args[:-1], "--stream", "-o", tmp_path / "b.wav")
    assert code == 0, err
    assert "first audio after" in err
    a, _ = sf.read(tmp_path / "a.wav", dtype="int16")
    b, _ = sf.read(tmp_path / "b.wav", dtype="int16")
    assert a.shape == b.shape and len(a) > 3 * 8 * 2 * 16
    np.testing.assert_array_equal(a, b)


def test_candidates_keep_the_best_of_k(capsys, tmp_path):
    folder = tmp_path / "ctc-pipeline"
    get_dummy_pipeline(ctc_loss_weight=1.0).save_pretrained(folder)
    code, _, err = run(
        capsys,
        "synthesize",
        "Hello there.",
        "--model",
        folder,
        "--max-new-patches",
        3,
        "--seed",
        2,
        "--candidates",
        3,
        "-q",
        "-o",
        tmp_path / "best.wav",
    )
    assert code == 0, err
    audio, _ = sf.read(tmp_path / "best.wav", dtype="float32")
    expected = expected_audio(folder, "Hello there.", 2, max_new_patches=3, num_candidates=3)
    np.testing.assert_allclose(audio, expected, atol=1.5 / 32768, rtol=0)
    assert not np.allclose(expected, expected_audio(folder, "Hello there.", 2, max_new_patches=3)[: len(expected)])


def test_stream_keeps_the_best_of_k(capsys, tmp_path):
    """--stream with several candidates writes the candidate one-shot keeps (it was refused before)."""
    folder = tmp_path / "ctc-pipeline"
    get_dummy_pipeline(ctc_loss_weight=1.0).save_pretrained(folder)
    args = ["Hello there.", "--model", folder, "--max-new-patches", 3, "--seed", 2, "--candidates", 3, "-q", "--stream"]
    code, _, err = run(capsys, "synthesize", *args, "-o", tmp_path / "best.wav")
    assert code == 0, err
    audio, _ = sf.read(tmp_path / "best.wav", dtype="float32")
    expected = expected_audio(folder, "Hello there.", 2, max_new_patches=3, num_candidates=3)
    np.testing.assert_allclose(audio, expected, atol=1.5 / 32768, rtol=0)


LONG_TEXT = "A sentence that is part of a long paragraph. " * 12  # streams in 9 chunks: 192 samples, 7 of 400, 160


def watch_stream(monkeypatch, before_chunk):
    """Makes `DiTARPipeline.stream` call `before_chunk(given)` each time the command asks for a chunk, with the chunks
    handed out so far (the command has written and flushed them by then)."""
    original = pipeline_module.DiTARPipeline.stream

    class Watched:
        def __init__(self, inner):
            self.inner = inner

        @property
        def stopped(self):
            return self.inner.stopped

        def __iter__(self):
            given, chunks = [], iter(self.inner)
            while True:
                before_chunk(given)
                try:
                    chunk = next(chunks)
                except StopIteration:
                    return
                given.append(chunk)
                yield chunk

    monkeypatch.setattr(pipeline_module.DiTARPipeline, "stream", lambda self, *a, **k: Watched(original(self, *a, **k)))


def test_a_text_that_names_a_file_is_refused_before_the_model_loads(capsys, tmp_path, model_dir, monkeypatch):
    (tmp_path / "hello.txt").write_text("Hello there.\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    for name in ("hello.txt", str(tmp_path / "hello.txt")):
        code, out, err = run(capsys, "synthesize", name, "-o", "out.wav", "--model", model_dir)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert f"TEXT {name!r} is the name of a file" in err and f"ditar synthesize - < {name}" in err
    assert not (tmp_path / "out.wav").exists()
    for words in ("hello.txt is a file", "Hello.", "-"):  # words with a space, or no such file: spoken as before
        args = cli.build_parser().parse_args(["synthesize", words, "-o", "out.wav"])
        assert cli._check_synthesize(args, read_stdin=False)[0] in (words, None)


@pytest.mark.parametrize("stream", [False, True])
def test_output_through_a_link_and_its_permission_bits_are_kept(capsys, tmp_path, model_dir, stream):
    """The file a symbolic link points to is written (the link stays), and an existing file keeps its mode."""
    (tmp_path / "links").mkdir()
    (tmp_path / "files").mkdir()
    real = Path(write_wav(tmp_path / "files" / "real.wav", tone(0.2)))
    real.chmod(0o600)
    link = tmp_path / "links" / "link.wav"
    link.symlink_to(Path("..") / "files" / "real.wav")
    common = ["--model", model_dir, "--max-new-patches", 3, "--seed", 3, "-q"] + (["--stream"] if stream else [])
    code, _, err = run(capsys, "synthesize", "Hello there.", "-o", link, *common)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(Path("..") / "files" / "real.wav")
    assert real.stat().st_mode & 0o777 == 0o600
    audio, _ = sf.read(real, dtype="float32")
    expected = expected_audio(model_dir, "Hello there.", 3, max_new_patches=3)
    np.testing.assert_allclose(audio, expected, atol=1.5 / 32768, rtol=0)
    assert sorted(p.name for p in (tmp_path / "files").iterdir()) == ["real.wav"]  # no temporary file left
    assert sorted(p.name for p in (tmp_path / "links").iterdir()) == ["link.wav"]
    shared = Path(write_wav(tmp_path / "files" / "shared.wav", tone(0.2)))
    shared.chmod(0o640)
    code, _, err = run(capsys, "synthesize", "Hello there.", "-o", shared, *common)
    assert code == 0 and shared.stat().st_mode & 0o777 == 0o640, err
    dangling = tmp_path / "links" / "dangling.wav"
    dangling.symlink_to(tmp_path / "no-such-folder" / "x.wav")
    code, _, err = run(capsys, "synthesize", "Hello there.", "-o", dangling, *common)
    assert code == 2 and "is a link to" in err and "whose folder does not exist" in err


@pytest.mark.parametrize("after_chunks", [2, 0])
def test_an_interrupted_stream_keeps_the_audio_so_far(capsys, tmp_path, model_dir, monkeypatch, after_chunks):
    """Ctrl-C mid-stream leaves the chunks written so far as a finished file (exit 130); before the first chunk, the
    file that was there stays as it was."""
    output = Path(write_wav(tmp_path / "out.wav", tone(0.3)))
    previous = output.read_bytes()
    kept = []

    def interrupt(given):
        if len(given) == after_chunks:
            kept.extend(given)
            raise KeyboardInterrupt

    watch_stream(monkeypatch, interrupt)
    args = [LONG_TEXT, "-o", output, "--model", model_dir, "--max-new-patches", 8, "--seed", 1, "--stream", "-q"]
    code, out, err = run(capsys, "synthesize", *args)
    assert code == 130 and out == "" and err.endswith("ditar: interrupted\n"), err
    if after_chunks == 0:
        assert "stopped before the first audio" in err and output.read_bytes() == previous
        return
    samples = sum(len(chunk) for chunk in kept)
    assert samples == 592
    assert f"kept the {samples / SR:.2f} s of audio generated so far in {output} (--seed 1 makes it again)" in err
    audio, _ = sf.read(output, dtype="float32")
    np.testing.assert_allclose(audio, np.clip(np.concatenate(kept), -1, 1), atol=1.5 / 32768, rtol=0)
    import wave

    with wave.open(str(output)) as reader:  # trusts the header's sizes: the file was closed properly
        assert reader.getnframes() == samples


def test_a_stream_that_fails_removes_its_unfinished_file_not_the_link_to_it(capsys, tmp_path, model_dir, monkeypatch):
    real = Path(write_wav(tmp_path / "real.wav", tone(0.2)))
    link = tmp_path / "link.wav"
    link.symlink_to(real)

    def fail(given):
        if len(given) == 2:
            raise RuntimeError("the vocoder broke")

    watch_stream(monkeypatch, fail)
    args = [LONG_TEXT, "-o", link, "--model", model_dir, "--max-new-patches", 8, "--stream", "-q"]
    with pytest.raises(RuntimeError, match="the vocoder broke"):
        run(capsys, "synthesize", *args)
    assert link.is_symlink() and not real.exists()


def test_sigterm_mid_stream_keeps_the_audio_and_still_ends_by_the_signal(tmp_path, model_dir):
    """SIGTERM is handled as Ctrl-C is, then the process ends by the signal as before (its exit status says so)."""
    import signal

    output = tmp_path / "out.wav"
    argv = ["synthesize", LONG_TEXT, "-o", str(output), "--model", str(model_dir), "--max-new-patches", "8"]
    argv += ["--seed", "1", "--stream", "-q"]
    script = f"""
import os, signal, sys
from modeling_ditar import cli, pipeline_ditar
original = pipeline_ditar.DiTARPipeline.stream
def stream(self, *args, **kwargs):
    for index, chunk in enumerate(original(self, *args, **kwargs)):
        if index == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        yield chunk
pipeline_ditar.DiTARPipeline.stream = stream
sys.exit(cli.main({argv!r}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == -signal.SIGTERM, result.stderr[-2000:]
    assert "kept the 0.07 s of audio generated so far" in result.stderr and "ditar: terminated" in result.stderr
    import wave

    with wave.open(str(output)) as reader:
        assert reader.getnframes() == 592


def test_a_streamed_wav_reads_as_complete_after_every_chunk(capsys, tmp_path, model_dir, monkeypatch):
    """The WAV header's sizes follow the written audio, so `wave` (which trusts them) reads what is there so far."""
    import wave

    output = tmp_path / "out.wav"
    seen = []

    def read_so_far(given):
        if not given:
            return
        with wave.open(str(output)) as reader:
            frames = reader.getnframes()
            written = np.frombuffer(reader.readframes(frames), dtype="<i2") / 32768.0
        assert frames == sum(len(chunk) for chunk in given)
        np.testing.assert_allclose(written, np.clip(np.concatenate(given), -1, 1), atol=1.5 / 32768, rtol=0)
        seen.append(frames)

    watch_stream(monkeypatch, read_so_far)
    args = [LONG_TEXT, "-o", output, "--model", model_dir, "--max-new-patches", 8, "--seed", 1, "--stream", "-q"]
    code, _, err = run(capsys, "synthesize", *args)
    assert code == 0, err
    assert len(seen) == 9 and seen[-1] == sf.info(output).frames  # after each chunk, the last after the end
    assert cli._update_header_on_every_write(type("NotSoundfile", (), {"format": "WAV"})()) is False  # no _file


def test_the_seed_drawn_is_printed_and_makes_the_same_audio(capsys, tmp_path, model_dir):
    import re

    common = ["Hello there.", "--model", model_dir, "--max-new-patches", 3]
    code, _, err = run(capsys, "synthesize", *common, "-o", tmp_path / "a.wav")
    assert code == 0, err
    seed = int(re.search(r"^Wrote .*; --seed (\d+) makes it again\)$", err, re.MULTILINE).group(1))
    code, _, err = run(capsys, "synthesize", *common, "-o", tmp_path / "b.wav", "--seed", seed, "-q")
    assert code == 0, err
    a, _ = sf.read(tmp_path / "a.wav", dtype="int16")
    b, _ = sf.read(tmp_path / "b.wav", dtype="int16")
    np.testing.assert_array_equal(a, b)
    expected = expected_audio(model_dir, "Hello there.", seed, max_new_patches=3)
    np.testing.assert_allclose(b / 32768, expected, atol=1.5 / 32768, rtol=0)


def test_text_from_stdin(capsys, tmp_path, model_dir, monkeypatch):
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("Hello from a pipe.\n"))
    code, _, err = run(
        capsys, "synthesize", "-", "-o", tmp_path / "s.wav", "--model", model_dir, "--max-new-patches", 2, "-q"
    )
    assert code == 0, err and (tmp_path / "s.wav").is_file()


def test_embedded_default_model(capsys, tmp_path, model_dir, monkeypatch):
    monkeypatch.setattr(pipeline_module, "EMBEDDED_DEFAULT", tmp_path / "not-installed")
    code, out, err = run(capsys, "synthesize", "Hello.", "-o", tmp_path / "x.wav")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("ditar: error: no default model is installed") and "--model" in err
    assert not (tmp_path / "x.wav").exists()
    default = tmp_path / "default"
    shutil.copytree(model_dir, default)
    monkeypatch.setattr(pipeline_module, "EMBEDDED_DEFAULT", default)
    code, _, err = run(capsys, "synthesize", "Hello.", "-o", tmp_path / "x.wav", "--max-new-patches", 2, "-q")
    assert code == 0, err and (tmp_path / "x.wav").is_file()


@pytest.fixture
def bad_files(tmp_path):
    fake = tmp_path / "fake.wav"
    fake.write_text("plain text, not audio")
    return {
        "fake": fake,
        "empty": write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32)),
        "silent": write_wav(tmp_path / "silent.wav", np.zeros(800, np.float32)),
        "short": write_wav(tmp_path / "short.wav", tone(0.001)),
        "good": write_wav(tmp_path / "good.wav", tone()),
        "nan": write_wav(tmp_path / "nan.wav", np.r_[tone(), np.nan].astype(np.float32), subtype="FLOAT"),
    }


USER_ERRORS = [
    # (arguments after "synthesize", expected words in the one-line message)
    (["Hi.", "--steps", "0"], "argument --steps: expected an integer >= 1"),
    (["Hi.", "--steps", "two"], "argument --steps: expected an integer >= 1"),
    (["Hi.", "--temperature", "1.5"], r"argument --temperature: expected a number in \[0, 1\]"),
    (["Hi.", "--prompt-spectrum-match", "2"], r"argument --prompt-spectrum-match: expected a number in \[0, 1\]"),
    (["Hi.", "--guidance-scale", "-1"], "argument --guidance-scale: expected a number >= 0"),
    (["Hi.", "--max-new-patches", "0"], "argument --max-new-patches: expected an integer >= 1"),
    (["Hi.", "--seed", "x"], "argument --seed: invalid int value"),
    (["Hi.", "--candidates", "0"], "argument --candidates: expected an integer >= 1"),
    (["Hi.", "--candidates", "2", "--stream"], "num_candidates=2 needs the model's CTC head"),
    (["Hi.", "--candidates", "2"], "num_candidates=2 needs the model's CTC head"),
    (["Hi.", "--bogus"], "unrecognized arguments: --bogus"),
    (["   "], "TEXT is empty"),
    (["你好"], "not in the vocabulary"),
    (["Hi.", "--prompt-audio", "{tmp}/missing.wav", "--prompt-text", "x"], "--prompt-audio: no such file"),
    (["Hi.", "--prompt-audio", "{fake}", "--prompt-text", "x"], "prompt_audio: Could not read audio file"),
    (["Hi.", "--prompt-audio", "{empty}", "--prompt-text", "x"], "prompt_audio: .* is empty"),
    (["Hi.", "--prompt-audio", "{silent}", "--prompt-text", "x"], "prompt_audio: .* is silent"),
    (["Hi.", "--prompt-audio", "{short}", "--prompt-text", "x"], "prompt_audio is shorter than the model needs"),
    (["Hi.", "--prompt-audio", "{nan}", "--prompt-text", "x"], "non-finite samples"),
    (["Hi.", "--stream", "--prompt-audio", "{silent}", "--prompt-text", "x"], "prompt_audio: .* is silent"),
    (
        ["Hi.", "--stream", "--temperature", "0.5", "--steps", "1", "--guidance-scale", "1"] + ["--model", "{tmp}/x"],
        "--model: no such folder",
    ),
    (["Hi.", "--prompt-audio", "{silent}"], "prompt_audio: .* is silent"),  # checked before a recogniser loads
    (["Hi.", "--prompt-audio", "{good}", "--asr-model", "{tmp}/no-asr"], "--asr-model: .* is not a folder"),
    (["Hi.", "--prompt-audio", "{good}", "--asr-model", "{tmp}"], "--asr-model: could not load"),
    (["Hi.", "--asr-model", "{tmp}"], "--asr-model transcribes --prompt-audio when --prompt-text is not given"),
    (["Hi.", "--prompt-audio", "{good}", "--prompt-text", "x", "--asr-model", "{tmp}"], "--asr-model .* unused"),
    (["Hi.", "--prompt-text", "x"], "--prompt-text was given without --prompt-audio"),
    (["Hi.", "--prompt-audio", "{good}", "--prompt-text", "你好"], "`prompt_text` .*not in the vocabulary"),
    (["Hi.", "--model", "{tmp}/no-such-model"], "--model: no such folder"),
    (["Hi.", "--model", "no-such-org/no-such-model"], "--model: could not load 'no-such-org/no-such-model'"),
    (["Hi.", "--model", "{tmp}"], "is not a DiTAR pipeline folder"),
    (["Hi.", "--device", "warp-drive"], "--device"),
    (["Hi.", "-o", "{tmp}/no/such/folder/x.wav"], "--output: the folder .* does not exist"),
    (["Hi.", "-o", "{tmp}"], "--output: .* is a folder"),
    (["Hi.", "-o", "{tmp}/x.unknown"], "--output: cannot tell the audio format"),
    (["Hi.", "-o", "{tmp}/x.raw"], "--output: cannot tell the audio format"),  # headerless: failed after generating
]


@pytest.mark.parametrize("argv, message", USER_ERRORS, ids=[m for _, m in USER_ERRORS])
def test_user_errors_exit_2_with_one_line(capsys, tmp_path, model_dir, bad_files, argv, message):
    import re

    names = {"tmp": tmp_path, **bad_files}
    argv = [a.format(**names) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "out.wav")]
    if "--model" not in argv:
        argv += ["--model", str(model_dir)]
    if "--max-new-patches" not in argv:
        argv += ["--max-new-patches", "2"]
    code, out, err = run(capsys, "synthesize", *argv)
    assert code == 2
    assert out == "" and "Traceback" not in err
    *status, error = err.splitlines()
    assert error.startswith("ditar") and re.search(message, error), err  # the message: one line
    assert all(line.startswith("Loading ") for line in status), err  # at most the "Loading PATH ..." status line
    assert not (tmp_path / "out.wav").exists()


def test_no_command_and_unknown_command(capsys):
    code, _, err = run(capsys)
    assert code == 2 and err.count("\n") == 1 and "choose a command" in err
    code, _, err = run(capsys, "speak")
    assert code == 2 and err.count("\n") == 1 and "invalid choice: 'speak'" in err


def test_help_reads_well(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "text-to-speech" in out and "synthesize" in out and "examples:" in out
    code, out, _ = run(capsys, "synthesize", "--help")
    assert code == 0
    for option in (
        "--prompt-audio",
        "--prompt-text",
        "--model",
        "--steps",
        "--guidance-scale",
        "--temperature",
        "--max-new-patches",
        "--candidates",
        "--seed",
        "--stream",
        "-o FILE, --output FILE",
        "examples:",
        "exit status",
    ):
        assert option in out, option
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("ditar ")


@pytest.mark.filterwarnings("ignore:'modeling_ditar.cli' found in sys.modules:RuntimeWarning")
def test_module_main_guard(capsys, monkeypatch):
    """`python -m modeling_ditar.cli` runs `main` (in-process: the package is already imported here)."""
    monkeypatch.setattr(sys, "argv", ["ditar", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("modeling_ditar.cli", run_name="__main__")
    assert exit_.value.code == 0
    assert "synthesize" in capsys.readouterr().out


def test_console_script_help_in_a_subprocess():
    """The installed `ditar` script, as a user runs it (slow-ish: a fresh process imports torch and transformers)."""
    script = Path(sys.executable).with_name("ditar")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "modeling_ditar.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "usage: ditar" in result.stdout and "examples:" in result.stdout


def _imported_modules(stderr: str) -> set[str]:
    """Module names from `python -X importtime` output."""
    return {line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def test_arguments_are_checked_before_torch_is_imported(tmp_path):
    """`ditar` answers --help and argument errors before the package imports torch (which takes seconds): both the
    console script and `python -m modeling_ditar.cli`, whose package `__init__` checks the command line first."""
    out = str(tmp_path / "out.wav")
    write_wav(tmp_path / "prompt.wav", tone(0.05))
    cases = [
        (["--help"], 0, "", "usage: ditar"),
        (["synthesize", "--help"], 0, "", "--prompt-audio FILE"),
        (["--version"], 0, "", "ditar "),
        ([], 2, "choose a command", ""),
        (["synthesize", "Hi."], 2, "the following arguments are required: -o/--output", ""),
        (["synthesize", "Hi.", "-o", out, "--steps", "0"], 2, "--steps: expected an integer >= 1, got '0'", ""),
        (["synthesize", "Hi.", "-o", out, "--temperature", "2"], 2, r"--temperature: expected a number in [0, 1]", ""),
        (["synthesize", "   ", "-o", out], 2, "TEXT is empty", ""),
        (["synthesize", "Hi.", "-o", str(tmp_path / "out.mp9")], 2, "cannot tell the audio format", ""),
        (["synthesize", "Hi.", "-o", str(tmp_path / "nope" / "o.wav")], 2, "does not exist", ""),
        (
            ["synthesize", "Hi.", "-o", out, "--prompt-audio", str(tmp_path / "missing.wav"), "--prompt-text", "x"],
            2,
            "--prompt-audio: no such file",
            "",
        ),
        (
            ["synthesize", "Hi.", "-o", out, "--prompt-text", "x", "--asr-model", "x"],
            2,
            "--asr-model transcribes --prompt-audio",
            "",
        ),
        (
            ["synthesize", "Hi.", "-o", out, "--prompt-text", "x"],
            2,
            "--prompt-text was given without --prompt-audio",
            "",
        ),
    ]
    script = Path(sys.executable).with_name("ditar")
    launchers = [[sys.executable, "-X", "importtime", "-m", "modeling_ditar.cli"]]
    if script.exists():
        launchers.append([sys.executable, "-X", "importtime", str(script)])
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for launcher in launchers:
        for argv, status, error, output in cases:
            result = subprocess.run([*launcher, *argv], capture_output=True, text=True, timeout=60, env=env)
            assert result.returncode == status, (argv, result.stderr[-2000:])
            imported = _imported_modules(result.stderr)
            assert "modeling_ditar" in imported and "torch" not in imported, argv
            messages = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
            assert error in "\n".join(messages), (argv, messages)
            assert output in result.stdout
            assert "Traceback" not in result.stderr
    if script.exists():  # the text from standard input is read once, by the early check, and kept for the command
        result = subprocess.run(
            [sys.executable, "-X", "importtime", str(script), "synthesize", "-", "-o", out],
            input="  \n",
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 2 and "TEXT is empty" in result.stderr
        assert "torch" not in _imported_modules(result.stderr)


def test_only_the_ditar_command_checks_early(monkeypatch):
    """The early check runs for the console script and `-m modeling_ditar.cli`, never for other programs."""
    for orig_argv, expected in [
        (["python", "/venv/bin/ditar", "synthesize"], "script"),
        (["python3", "-X", "importtime", "-u", "/venv/bin/ditar"], "script"),
        (["python", "C:\\venv\\Scripts\\ditar-script.py"], "script"),
        (["python", "-m", "modeling_ditar.cli", "--help"], "module"),
        (["python", "-W", "ignore", "-mmodeling_ditar.cli"], "module"),
        (["python", "-m", "pytest", "tests"], None),
        (["python", "-c", "import modeling_ditar"], None),
        (["python", "train.py", "--config", "ditar"], None),
        (["python"], None),
    ]:
        monkeypatch.setattr(sys, "orig_argv", orig_argv)
        assert cli._launched_as() == expected, orig_argv
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "pytest"])
    cli.check_command_line()  # not the command: does nothing (and never exits)


def test_the_command_makes_waiting_openmp_threads_sleep_unless_the_user_chose():
    environ: dict[str, str] = {}
    assert cli.quiet_thread_waits(environ, modules={}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "100000"}, {"KMP_BLOCKTIME": "200"}):
        environ = dict(chosen)
        assert cli.quiet_thread_waits(environ, modules={}) == {} and environ == chosen
    environ = {}
    assert cli.quiet_thread_waits(environ, modules={"torch": object()}) == {} and environ == {}  # too late to matter


def test_synthesize_runs_on_one_thread_unless_told_otherwise(capsys, tmp_path, model_dir, monkeypatch):
    """One text on one torch thread (fastest on small and shared machines for this model size); `--threads N` or a
    user's OMP_NUM_THREADS decide otherwise."""
    assert cli.synthesis_threads(None, {}) == 1
    assert cli.synthesis_threads(None, {"OMP_NUM_THREADS": "4"}) is None  # the user's choice stands
    assert cli.synthesis_threads(3, {"OMP_NUM_THREADS": "4"}) == 3
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    common = ["--model", model_dir, "--steps", 2, "--max-new-patches", 2, "--seed", 0, "-q"]
    torch.set_num_threads(2)
    code, _, err = run(capsys, "synthesize", "Hi.", "-o", tmp_path / "a.wav", *common)
    assert code == 0, err
    assert torch.get_num_threads() == 1
    code, _, err = run(capsys, "synthesize", "Hi.", "-o", tmp_path / "b.wav", "--threads", 2, *common)
    assert code == 0, err
    assert torch.get_num_threads() == 2
    code, _, err = run(capsys, "synthesize", "Hi.", "-o", tmp_path / "c.wav", "--threads", 0, *common)
    assert code == 2 and "--threads" in err


def test_locdit_dtype_runs_the_diffusion_head_alone_in_bfloat16(model_dir):
    pipe = cli._load_pipeline(str(model_dir), "cpu", quiet=True, locdit_dtype="bfloat16")
    assert pipe.model.locdit.in_proj.weight.dtype == torch.bfloat16
    assert pipe.model.language_model.embed_tokens.weight.dtype == torch.float32
    assert cli._load_pipeline(str(model_dir), "cpu", quiet=True).model.locdit.in_proj.weight.dtype == torch.float32


def test_matmul_dtype_follows_the_folder_unless_the_flag_says_otherwise(model_dir, monkeypatch):
    from modeling_ditar.low_precision import LowPrecisionLinear

    monkeypatch.setattr("modeling_ditar.low_precision.cpu_multiplies_bfloat16", lambda: True)
    assert cli._load_pipeline(str(model_dir), "cpu", quiet=True).model.matmul_dtype == torch.float32  # folder: None
    pipe = cli._load_pipeline(str(model_dir), "cpu", quiet=True, matmul_dtype="auto")
    assert pipe.model.matmul_dtype == torch.bfloat16
    assert any(type(m) is LowPrecisionLinear for m in pipe.model.locdit.modules())


@pytest.mark.parametrize(
    "flag, bad, named",
    [("--locdit-dtype", "int8", "bfloat16"), ("--matmul-dtype", "float16", "auto")],
)
def test_dtype_flags_synthesize_and_refuse_other_values(capsys, tmp_path, model_dir, flag, bad, named):
    common = ["--model", model_dir, "--steps", 2, "--max-new-patches", 2, "--seed", 0, "-q"]
    code, _, err = run(capsys, "synthesize", "Hi.", "-o", tmp_path / "a.wav", flag, "bfloat16", *common)
    assert code == 0, err
    audio, _ = sf.read(tmp_path / "a.wav")
    assert audio.size > 0 and np.isfinite(audio).all()
    code, _, err = run(capsys, "synthesize", "Hi.", "-o", tmp_path / "b.wav", flag, bad, *common)
    assert code == 2 and flag in err and named in err
    assert getattr(cli.build_parser().parse_args(["serve", flag, "float32"]), flag[2:].replace("-", "_")) == "float32"


@pytest.mark.parametrize("stream", [False, True])
def test_a_text_the_cap_ended_is_said_once_in_the_command_s_words(capsys, tmp_path, model_dir, stream):
    """The pipeline warns when the derived cap ends a text; `synthesize` says it once, its own way, in both modes,
    and not with -q."""
    args = ["synthesize", "Hi.", "-o", tmp_path / "out.wav", "--model", model_dir, "--seed", 0]
    args += ["--stream"] if stream else []
    code, _, err = run(capsys, *args)  # no --max-new-patches: the cap for the text's length ends it
    assert code == 0, err
    assert err.count("cut at the patch limit") == 1 and "did not end on its own" not in err
    code, out, err = run(capsys, *args, "-q")
    assert code == 0 and out == "" and err == ""

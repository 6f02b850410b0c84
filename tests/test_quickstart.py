"""examples/quickstart.py, the README's first command: it writes speech with the embedded default, and a bad text or
output path ends with one line before anything is generated."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import soundfile as sf

QUICKSTART = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"


def run_quickstart(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["quickstart.py", *args])
    runpy.run_path(str(QUICKSTART), run_name="__main__")


def test_quickstart_writes_the_audio(tmp_path, monkeypatch, capsys):
    output = tmp_path / "hello.wav"
    run_quickstart(monkeypatch, "Hello.", "-o", str(output))
    audio, rate = sf.read(output)
    assert rate > 0 and len(audio) > rate // 10 and abs(audio).max() > 0.01
    assert f"wrote {output}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["Hello.", "-o", "{tmp}/missing/hello.wav"], "missing does not exist: create it"),
        (["Hello.", "-o", "{tmp}/hello.xyz"], "cannot write 'hello.xyz'"),
        (["   ", "-o", "{tmp}/hello.wav"], "text is empty"),
        (["Hello.", "-o", "{tmp}/folder.wav"], "folder.wav is a folder"),  # failed after generating
        (["Hello.", "-o", "{tmp}/hello.raw"], "cannot write 'hello.raw'"),
    ],
)
def test_quickstart_names_a_bad_text_or_output_in_one_line(tmp_path, monkeypatch, capsys, args, message):
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(SystemExit):
        run_quickstart(monkeypatch, *[a.format(tmp=tmp_path) for a in args])
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("hello.*"))

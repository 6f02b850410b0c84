"""The same espeak-ng recordings listed in every metadata.csv layout that build_corpus.py and finetune.py read, for
the tests of both scripts."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

# (LJSpeech id, text, normalized text, stock espeak-ng voice): one sentence each, the last without a normalized text
SPOKEN = [
    ("LJ001-0001", "Printing, in 1 sense, is the art of arts.", "Printing, in one sense, is the art of arts.", "m3"),
    ("LJ001-0002", "It was 2 days before the market opened.", "It was two days before the market opened.", "f2"),
    ("LJ001-0003", "The 3 candles burned all night long.", "The three candles burned all night long.", "m3"),
    ("LJ001-0004", "A yellow basket stood by the window.", "", "f2"),
]
# what each row says (the normalized text, else the text) and who says it, as a header CSV lists it
SAID = [(f"wavs/{clip}.wav", normalized or text, voice) for clip, text, normalized, voice in SPOKEN]


def speak(wavs: Path) -> Path:
    """SPOKEN's sentences spoken by espeak-ng's stock voices as `wavs`/ID.wav."""
    from corpus.voices import synthesize

    wavs.mkdir(parents=True, exist_ok=True)
    for clip, text, normalized, voice in SPOKEN:
        synthesize(normalized or text, f"en-us+{voice}", wavs / f"{clip}.wav")
    return wavs


def layout_folders(root: Path, wavs: Path) -> dict[str, Path]:
    """One folder per layout under `root`, each with a copy of `wavs`: header CSVs separated by ',', ';' and tab (the
    voice as speaker_id; the tab header written in capitals, and its speaker column named `speaker`), LJSpeech rows,
    and a ',' CSV of what the LJSpeech rows say (one speaker)."""
    metadata = {
        "comma": "file_name,text,speaker_id\n" + "".join(f'{name},"{text}",{voice}\n' for name, text, voice in SAID),
        "semicolon": "file_name;text;speaker_id\n" + "".join(f"{name};{text};{voice}\n" for name, text, voice in SAID),
        "tab": "File_Name\tText\tSpeaker\n" + "".join(f"{name}\t{text}\t{voice}\n" for name, text, voice in SAID),
        "ljspeech": "".join(f"{clip}|{text}|{normalized}\n" for clip, text, normalized, _ in SPOKEN),
        "comma_one_speaker": "file_name,text\n" + "".join(f'{name},"{text}"\n' for name, text, _ in SAID),
    }
    folders = {}
    for layout, text in metadata.items():
        folders[layout] = root / layout
        shutil.copytree(wavs, folders[layout] / "wavs")
        (folders[layout] / "metadata.csv").write_text(text)
    return folders

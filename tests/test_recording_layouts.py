"""The layouts of recordings folders that examples/build_corpus.py --from-folder and examples/finetune.py read: '|'
files with and without a header, the column names of other tools, metadata.jsonl, quoting, file names that are not
quite the file's, and finetune's transcript files in LibriTTS, MFA, VCTK and per-speaker layouts."""

from __future__ import annotations

import shutil
import sys
import unicodedata
from pathlib import Path

import pytest
import soundfile as sf
from pipeline_helpers import SR, get_dummy_pipeline, spoken

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

pytest.importorskip("datasets")
import build_corpus as bc  # noqa: E402
import finetune  # noqa: E402
from corpus.recordings_metadata import ColumnChoice, check_folder_is_listed, read_folder_metadata  # noqa: E402

TEXTS = ["Hello there Anna.", "Good morning to you.", "See you again soon.", "The train was late."]


def _recordings(folder: Path, names: list[str], metadata: str | None = None, name: str = "metadata.csv") -> Path:
    """`folder` with a speech-like clip at each of `names` (relative paths; each another pitch) and the metadata
    file `name` holding `metadata`."""
    for index, clip in enumerate(names):
        (folder / clip).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(folder / clip), spoken(1.2 + 0.05 * index, freq=180.0 + 15 * index), SR)
    if metadata is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(metadata, encoding="utf-8")
    return folder


def _corpus_rows(folder: Path, *columns) -> list[tuple[str, str, str]]:
    return [(r["file_name"], r["text"], r["speaker_id"]) for r in read_folder_metadata(folder, *columns)]


def _finetune_rows(folder: Path, **kwargs) -> list[tuple[str, str, str]]:
    """(file, transcript, speaker) of the clips finetune's validation keeps; it must find no problem."""
    clips, problems = finetune.validate_recordings(folder, SR, **kwargs)
    assert not problems, [(p.file, p.issue, p.message) for p in problems]
    return [(c.path.relative_to(folder).as_posix(), c.text, c.speaker) for c in clips]


WAVS = [f"wavs/u{i}.wav" for i in range(4)]
SPEAKERS = ["anna", "anna", "bob", "bob"]


@pytest.mark.parametrize(
    "layout",
    ["id|text|speaker", "id|text|normalized|speaker", "id|speaker|text"],
)
def test_pipe_rows_with_a_speaker_column_are_read_by_its_values(tmp_path, capsys, layout):
    """The speaker became every transcript (id|text|speaker, piper's id|speaker|text), or was dropped, merging all
    voices, without a word (id|text|normalized|speaker)."""
    rows = []
    for i, (text, speaker) in enumerate(zip(TEXTS, SPEAKERS, strict=True)):
        # with a normalized column, the text column holds another spelling, which is not read
        written = text.replace("Anna", "A.") if "normalized" in layout else text
        cells = {"id": f"u{i}", "text": written, "normalized": text, "speaker": speaker}
        rows.append("|".join(cells[name] for name in layout.split("|")))
    folder = _recordings(tmp_path / "rec", WAVS, "\n".join(rows) + "\n")
    expected = list(zip(WAVS, TEXTS, SPEAKERS, strict=True))
    assert _corpus_rows(folder) == expected
    speaker_column = layout.split("|").index("speaker") + 1
    assert f"column {speaker_column} the speaker (2 speakers: anna, bob)" in capsys.readouterr().out
    assert _finetune_rows(folder) == expected
    assert f"column {speaker_column} the speaker" in capsys.readouterr().out


def test_pipe_rows_without_a_speaker_stay_ljspeech_and_labels_are_not_texts(tmp_path, capsys):
    """One-word texts (every column after the id looks like a speaker) are LJSpeech's rows, read as before and
    without a note; two label-like columns are not used (the last of them was read as the text)."""
    folder = _recordings(tmp_path / "words", WAVS, "u0|yes|yes\nu1|no|no\nu2|yes|yes\nu3|no|no\n")
    assert [text for _, text, _ in _corpus_rows(folder)] == ["yes", "no", "yes", "no"]
    assert capsys.readouterr().out == ""
    labels = "".join(
        f"u{i}|{text}|{s}|{'f' if s == 'anna' else 'm'}\n"
        for i, (text, s) in enumerate(zip(TEXTS, SPEAKERS, strict=True))
    )
    folder = _recordings(tmp_path / "labels", WAVS, labels)
    assert _corpus_rows(folder) == [(name, text, "speaker") for name, text in zip(WAVS, TEXTS, strict=True)]
    assert "columns 3, 4 look like labels (one repeated word) and are not used: one speaker" in capsys.readouterr().out
    # a first row whose text holds ", audio," is no comma-separated header naming an audio column
    (folder / "metadata.csv").write_text("".join(f"u{i}|Say the path, audio, and text {i}.|\n" for i in range(4)))
    assert [text for _, text, _ in _corpus_rows(folder)][:1] == ["Say the path, audio, and text 0."]
    # one row: no column can be told to hold speakers (LJSpeech's normalized text, as before)
    folder = _recordings(tmp_path / "one", WAVS[:1], "u0|Hello there.|anna\n")
    assert _corpus_rows(folder) == [("wavs/u0.wav", "anna", "speaker")]


def test_pipe_rows_with_another_number_of_fields_name_the_line(tmp_path):
    """A row of other fields (a '|' in a text, a missing column) was read as it came, each row its own way."""
    folder = _recordings(tmp_path / "rec", WAVS[:2], "u0|Hello there.|anna\nu1|Hi | there.|bob|x\n")
    for read in (read_folder_metadata, finetune.list_recordings):
        with pytest.raises(SystemExit, match=r"metadata.csv:2: 5 fields where the first row has 3"):
            read(folder)


def test_pipe_header_of_coqui_is_a_header_read_without_quoting(tmp_path, capsys):
    """`audio_file|text|speaker_name` (Coqui): every transcript became the speaker name, the header a missing row."""
    texts = ['"Come here," she said.', 'He shouted "stop" at the dog.', "It is raining again.", "We walked home."]
    rows = "".join(f"{name}|{text}|{s}\n" for name, text, s in zip(WAVS, texts, SPEAKERS, strict=True))
    folder = _recordings(tmp_path / "rec", WAVS, "audio_file|text|speaker_name\n" + rows)
    expected = list(zip(WAVS, texts, SPEAKERS, strict=True))
    assert _corpus_rows(folder) == expected
    read = "columns read: the audio files from 'audio_file', the transcripts from 'text', the speakers from"
    assert read in capsys.readouterr().out
    assert _finetune_rows(folder) == expected
    assert read in capsys.readouterr().out
    (folder / "metadata.csv").write_text("audio_file|text\nwavs/u0.wav|Yes | no.\n")
    with pytest.raises(SystemExit, match="3 fields where the header has 2; a text cannot hold '\\|' in this file"):
        finetune.list_recordings(folder)


@pytest.mark.parametrize(
    "header",
    ["file_name,transcription", "file_name,sentence", "path,transcript,speaker_id", "audio,normalized_text"],
)
def test_header_columns_under_the_names_of_other_tools_are_read(tmp_path, capsys, header):
    """Hugging Face's audiofolder (file_name,transcription or sentence) and the like were refused."""
    rows = "".join(
        f"{name},{text}" + (",anna\n" if "speaker" in header else "\n") for name, text in zip(WAVS, TEXTS, strict=True)
    )
    folder = _recordings(tmp_path / "rec", WAVS, f"{header}\n" + rows)
    speaker = "anna" if "speaker" in header else "speaker"
    expected = [(name, text, speaker) for name, text in zip(WAVS, TEXTS, strict=True)]
    assert _corpus_rows(folder) == expected
    file_column, text_column = header.split(",")[:2]
    said = f"columns read: the audio files from {file_column!r}, the transcripts from {text_column!r}"
    assert said in capsys.readouterr().out
    assert _finetune_rows(folder) == expected


def test_text_and_speaker_columns_are_named_in_folder_mode(tmp_path, capsys, monkeypatch):
    """--text-column / --speaker-column were ignored with --from-folder and without --dataset."""
    import datasets

    rows = "".join(f"{n},{t.upper()},{t},{s}\n" for n, t, s in zip(WAVS, TEXTS, SPEAKERS, strict=True))
    folder = _recordings(tmp_path / "rec", WAVS, "file_name,text,spoken,voice\n" + rows)
    out = tmp_path / "corpus"
    argv = ["--out", str(out), "--from-folder", str(folder), "--sampling-rate", str(SR), "--num-proc", "1"]
    bc.main([*argv, "--text-column", "spoken", "--speaker-column", "voice", "--min-sec", "0.5"])
    dsd = datasets.load_from_disk(str(out))
    assert sorted(t for split in dsd.values() for t in split["text"]) == sorted(TEXTS)
    assert sorted({s for split in dsd.values() for s in split["speaker_id"]}) == ["anna", "bob"]
    expected = list(zip(WAVS, TEXTS, SPEAKERS, strict=True))
    assert _corpus_rows(folder, ColumnChoice("Spoken", "voice")) == expected
    assert _finetune_rows(folder, columns=ColumnChoice("spoken", "voice")) == expected
    listed = "its columns are 'file_name', 'text', 'spoken', 'voice'"
    with pytest.raises(SystemExit, match=f"--text-column said: the header has no such column; {listed}"):
        read_folder_metadata(folder, ColumnChoice("said"))
    with pytest.raises(SystemExit, match=f"--speaker-column who: the header has no such column; {listed}"):
        finetune.list_recordings(folder, columns=ColumnChoice(speaker="who"))
    # finetune's command passes them on in folder mode
    seen = {}

    def stop(*args, **kwargs):
        seen.update(kwargs)
        raise SystemExit("stopped")

    monkeypatch.setattr(finetune, "validate_recordings", stop)
    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    with pytest.raises(SystemExit, match="stopped"):
        finetune.main([str(folder), "--out", str(tmp_path / "run"), "--base", str(base), "--text-column", "spoken"])
    assert seen["columns"] == ColumnChoice("spoken", None)


def test_metadata_jsonl_is_read_like_a_header_and_metadata_csv_wins(tmp_path, capsys):
    """metadata.jsonl (audiofolder) was not read: every clip was missing its transcript or the folder refused."""
    import json

    lines = [
        json.dumps({"file_name": name, "transcription": text, "speaker_id": 225 + (s == "bob")})
        for name, text, s in zip(WAVS, TEXTS, SPEAKERS, strict=True)
    ]
    folder = _recordings(tmp_path / "rec", WAVS, "\n".join(lines) + "\n", name="metadata.jsonl")
    expected = [(n, t, "225" if s == "anna" else "226") for n, t, s in zip(WAVS, TEXTS, SPEAKERS, strict=True)]
    assert _corpus_rows(folder) == expected
    assert _finetune_rows(folder) == expected
    check_folder_is_listed(folder)  # --from-folder takes it
    capsys.readouterr()
    (folder / "metadata.csv").write_text(
        "file_name,text\n" + "".join(f"{n},{t}\n" for n, t in zip(WAVS, TEXTS, strict=True))
    )
    assert [speaker for *_, speaker in _corpus_rows(folder)] == ["speaker"] * 4
    assert "metadata.csv: read, not metadata.jsonl beside it" in capsys.readouterr().out
    (folder / "metadata.csv").unlink()
    (folder / "metadata.jsonl").write_text(lines[0] + "\n" + '["wavs/u1.wav", "Hi."]\n')
    with pytest.raises(SystemExit, match="metadata.jsonl:2: not a JSON object"):
        finetune.list_recordings(folder)


def test_a_local_recordings_folder_given_as_a_hub_dataset_points_at_from_folder(tmp_path):
    """--from-hub-dataset FOLDER of recordings was a traceback (load_dataset's audiofolder needs torchcodec)."""
    folder = _recordings(
        tmp_path / "rec", WAVS, "file_name,text\n" + "".join(f"{n},{t}\n" for n, t in zip(WAVS, TEXTS, strict=True))
    )
    with pytest.raises(SystemExit, match="a folder of recordings \\(it has metadata.csv\\).* --from-folder"):
        bc.main(["--out", str(tmp_path / "corpus"), "--from-hub-dataset", str(folder), "--num-proc", "1"])


def test_tab_files_keep_the_quotes_of_their_texts(tmp_path):
    """A Common Voice style .tsv: a text opening with a quote swallowed the rows after it, and lost its quotes."""
    texts = ['"Come here," she said.', '"It was late, he said.', "We walked home.", '"He said ""hi""."']
    rows = "".join(f"{name}\t{text}\n" for name, text in zip(WAVS, texts, strict=True))
    folder = _recordings(tmp_path / "rec", WAVS, "file_name\ttext\n" + rows)
    # a text a spreadsheet wrapped in quotes (doubling those inside) is unwrapped; the others are as written
    expected = [(name, text, "speaker") for name, text in zip(WAVS, texts[:3] + ['He said "hi".'], strict=True)]
    assert _corpus_rows(folder) == expected
    assert _finetune_rows(folder) == expected


def test_a_comma_file_with_an_unclosed_quote_names_the_line_it_opens_on(tmp_path):
    """The quoted text ran on over the rows after it, which vanished into one transcript without a word."""
    rows = f'{WAVS[0]},Hello.\n{WAVS[1]},"It was late, he said.\n{WAVS[2]},We walked home.\n{WAVS[3]},Bye.\n'
    folder = _recordings(tmp_path / "rec", WAVS, "file_name,text\n" + rows)
    message = r"metadata.csv:3: a double quote opens a text on this line and is not closed before line 4, .*\(\"\"\)"
    for read in (read_folder_metadata, finetune.list_recordings):
        with pytest.raises(SystemExit, match=message):
            read(folder)
    # a quoted text over two lines that start no row is a text with a line break, as before
    (folder / "metadata.csv").write_text(f'file_name,text\n{WAVS[0]},"Hello,\nthere."\n')
    assert _corpus_rows(folder) == [(WAVS[0], "Hello,\nthere.", "speaker")]


def test_file_names_that_are_nearly_the_files_are_found(tmp_path):
    """No suffix, the file in wavs/ but named without it, another letter case, an accent composed where the disk has
    it decomposed, an LJSpeech id with its suffix or in another case: each row was a missing file (finetune reported
    it twice, as missing audio and as audio not in metadata.csv, and trained without it)."""
    nfd = unicodedata.normalize("NFD", "wavs/café.wav")
    files = ["wavs/a0.wav", "wavs/a1.wav", "wavs/A2.WAV", nfd]
    named = ["wavs/a0", "a1.wav", "wavs/a2.wav", unicodedata.normalize("NFC", "wavs/café.wav")]
    rows = "".join(f"{name},{text}\n" for name, text in zip(named, TEXTS, strict=True))
    folder = _recordings(tmp_path / "csv", files, "file_name,text\n" + rows)
    expected = [(name, text, "speaker") for name, text in zip(files, TEXTS, strict=True)]
    assert _corpus_rows(folder) == expected
    assert _finetune_rows(folder) == expected
    lj = _recordings(tmp_path / "lj", ["wavs/u0.WAV", "wavs/u1.wav"], f"u0|{TEXTS[0]}|\nu1.wav|{TEXTS[1]}|\n")
    expected = [("wavs/u0.WAV", TEXTS[0], "speaker"), ("wavs/u1.wav", TEXTS[1], "speaker")]
    assert _corpus_rows(lj) == expected
    assert _finetune_rows(lj) == expected
    # no file matches: the closest is named
    (folder / "metadata.csv").write_text(f"file_name,text\nwavs/a0.wv,{TEXTS[0]}\n")
    with pytest.raises(SystemExit, match=r"line 2: wavs/a0.wv is missing \(did you mean wavs/a0.wav\?\)"):
        read_folder_metadata(folder)
    _, problems = finetune.validate_recordings(folder, SR)
    missing = [p.message for p in problems if p.issue == "missing audio"]
    assert missing == ["named in metadata.csv but not found; did you mean wavs/a0.wav?"]


def test_transcript_pairs_in_speaker_subfolders_keep_their_speakers(tmp_path, capsys):
    """spk1/a.wav + a.txt and spk2/...: every voice became the one speaker "speaker"."""
    folder = tmp_path / "rec"
    names = ["spk1/a.wav", "spk1/b.wav", "spk2/c.wav", "spk2/d.wav"]
    _recordings(folder, names)
    for name, text in zip(names, TEXTS, strict=True):
        (folder / name).with_suffix(".txt").write_text(text)
    assert [speaker for *_, speaker in _finetune_rows(folder)] == ["spk1", "spk1", "spk2", "spk2"]
    assert "2 speakers, one per subfolder: spk1 (2 clips), spk2 (2 clips); if they are all one voice" in (
        capsys.readouterr().out
    )
    assert [speaker for *_, speaker in _finetune_rows(folder, one_speaker=True)] == ["speaker"] * 4
    assert "one per subfolder" not in capsys.readouterr().out
    # the folders common to all clips name no speaker
    shutil.move(folder, tmp_path / "session" / "rec")
    assert [s for *_, s in _finetune_rows(tmp_path / "session")] == ["spk1", "spk1", "spk2", "spk2"]
    assert [s for *_, s in _finetune_rows(tmp_path / "session" / "rec" / "spk1")] == ["speaker", "speaker"]


def test_libritts_mfa_and_vctk_transcripts_are_found(tmp_path):
    """id.normalized.txt / id.original.txt (LibriTTS), id.lab (MFA) and VCTK's txt/ tree beside wav48/ were all
    "missing transcript"."""
    libritts = tmp_path / "libritts"
    names = ["19/198/19_198_01.wav", "19/198/19_198_02.wav", "26/495/26_495_01.wav"]
    _recordings(libritts, names)
    for name, text in zip(names, TEXTS[:3], strict=True):
        stem = libritts / name[: -len(".wav")]
        Path(f"{stem}.normalized.txt").write_text(text)
        Path(f"{stem}.original.txt").write_text(text.upper())
    assert _finetune_rows(libritts) == [(n, t, n.split("/")[0]) for n, t in zip(names, TEXTS[:3], strict=True)]
    mfa = _recordings(tmp_path / "mfa", ["a.wav", "b.wav"])
    (mfa / "a.lab").write_text(TEXTS[0])
    (mfa / "b.lab").write_text(TEXTS[1])
    assert [text for _, text, _ in _finetune_rows(mfa)] == TEXTS[:2]
    vctk = tmp_path / "vctk"
    names = ["wav48/p225/p225_001.wav", "wav48/p225/p225_002.wav", "wav48/p226/p226_001.wav"]
    _recordings(vctk, names)
    for name, text in zip(names, TEXTS[:3], strict=True):
        transcript = vctk / "txt" / Path(name).relative_to("wav48").with_suffix(".txt")
        transcript.parent.mkdir(parents=True, exist_ok=True)
        transcript.write_text(text)
    assert _finetune_rows(vctk) == [(n, t, n.split("/")[1]) for n, t in zip(names, TEXTS[:3], strict=True)]
    (vctk / "txt" / "p227").mkdir()
    (vctk / "txt" / "p227" / "p227_009.txt").write_text("no audio")
    _, problems = finetune.validate_recordings(vctk, SR)
    assert [(p.file, p.issue) for p in problems] == [("txt/p227/p227_009.txt", "transcript without audio")]


def test_a_common_voice_folder_says_how_to_use_its_lists_and_a_copy_to_metadata_csv_is_read(tmp_path):
    """Common Voice's train.tsv beside clips/ was ignored: every clip was "missing transcript"."""
    header = "client_id\tpath\tsentence_id\tsentence\tup_votes\n"
    rows = "".join(f"{s}1\tc{i}.wav\tid{i}\t{t}\t2\n" for i, (t, s) in enumerate(zip(TEXTS, SPEAKERS, strict=True)))
    folder = _recordings(tmp_path / "cv", [f"clips/c{i}.wav" for i in range(4)], header + rows, name="train.tsv")
    hint = r"holds Common Voice lists \(train.tsv\).* `cp .*train.tsv .*metadata.csv`"
    with pytest.raises(SystemExit, match=hint):
        finetune.list_recordings(folder)
    with pytest.raises(SystemExit, match=hint):
        bc.main(["--out", str(tmp_path / "corpus"), "--from-folder", str(folder)])
    shutil.copy(folder / "train.tsv", folder / "metadata.csv")
    expected = [(f"clips/c{i}.wav", t, f"{s}1") for i, (t, s) in enumerate(zip(TEXTS, SPEAKERS, strict=True))]
    assert _corpus_rows(folder) == expected
    assert _finetune_rows(folder) == expected


def test_every_nested_metadata_file_is_named(tmp_path):
    """Several subfolders with a metadata.csv each: the message named the first only."""
    for voice in ("alice", "bob"):
        _recordings(tmp_path / "rec" / voice, ["wavs/LJ1.wav"], f"LJ1|{TEXTS[0]}|\n")
    with pytest.raises(SystemExit, match=r"found 2 in subfolders \(.*alice/metadata.csv, .*bob/metadata.csv\)"):
        finetune.list_recordings(tmp_path / "rec")


def test_finetune_notes_the_columns_it_does_not_use(tmp_path, capsys):
    """build_corpus.py said that a column was not used (a speaker column under another name: all one speaker),
    finetune.py merged the speakers without a word."""
    rows = "".join(f"{n},{t},{s}\n" for n, t, s in zip(WAVS, TEXTS, SPEAKERS, strict=True))
    folder = _recordings(tmp_path / "rec", WAVS, "file_name,text,voice\n" + rows)
    assert {speaker for *_, speaker in _finetune_rows(folder)} == {"speaker"}
    assert "columns not used: 'voice' (read: file_name, text; no speaker column" in capsys.readouterr().out


def test_finetune_dataset_notes_a_speaker_column_left_out(tmp_path, capsys, monkeypatch):
    """--dataset without --speaker-column on a dataset with a speaker column merged its speakers without a word."""
    from datasets import Dataset

    Dataset.from_dict({"audio": [[0.0] * 8], "sampling_rate": [SR], "text": ["a"], "speaker": ["x"]}).save_to_disk(
        str(tmp_path / "ds")
    )

    def stop(*args, **kwargs):
        raise SystemExit("stopped")

    monkeypatch.setattr(finetune, "dataset_to_folder", stop)
    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    with pytest.raises(SystemExit, match="stopped"):
        finetune.main([str(tmp_path / "ds"), "--dataset", "--out", str(tmp_path / "run"), "--base", str(base)])
    assert "pass --speaker-column speaker to keep its speakers" in capsys.readouterr().out

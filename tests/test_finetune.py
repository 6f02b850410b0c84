"""examples/finetune.py: the data-validation messages (table-driven), the metadata layouts, and the whole path from a
folder of recordings to an adapter, a voice folder and a report on a tiny model (a few steps)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import metadata_layouts
import numpy as np
import pytest
import soundfile as sf
from pipeline_helpers import SR, get_dummy_pipeline, spoken
from preloaded_python import run as run_script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

pytest.importorskip("peft")
pytest.importorskip("datasets")


import finetune  # noqa: E402  (examples/finetune.py)
from eval_lib.metrics import normalize_text  # noqa: E402


@pytest.fixture(autouse=True)
def preloaded_train_py(monkeypatch):
    """finetune.py starts train.py as `python train.py ...`; here that run is a fork of an interpreter that has the
    libraries imported already (preloaded_python.py), which saves about 10 s per run."""
    monkeypatch.setattr(finetune.subprocess, "run", run_script)


def _clip(seconds=1.2, freq=220.0, sr=SR):
    return spoken(seconds, sr=sr, freq=freq)


def _write(folder: Path, name: str, audio=None, text: str | None = "a clean sentence", sr: int = SR):
    if audio is not None:
        sf.write(str(folder / f"{name}.wav"), audio, sr)
    if text is not None:
        (folder / f"{name}.txt").write_text(text)


# (clip name, how it is written, issue, part of the message, dropped)
CASES = [
    ("notext", lambda f: _write(f, "notext", _clip(freq=150), None), "missing transcript", "no notext.txt", True),
    ("empty", lambda f: _write(f, "empty", _clip(freq=160), "  \n"), "empty transcript", "empty", True),
    (
        "broken",
        lambda f: ((f / "broken.wav").write_bytes(b"RIFF0000WAVEjunk"), (f / "broken.txt").write_text("x y")),
        "unreadable audio",
        "cannot be read as audio",
        True,
    ),
    ("short", lambda f: _write(f, "short", _clip(0.3, freq=170)), "too short", "0.30 s, under --min-sec 1 s", True),
    ("long", lambda f: _write(f, "long", _clip(16.0, freq=180)), "too long", "16.0 s, over --max-sec 15 s", True),
    ("silent", lambda f: _write(f, "silent", np.zeros(SR * 2, np.float32)), "silent audio", "silent", True),
    (
        "hiss",
        lambda f: _write(f, "hiss", np.random.default_rng(0).normal(0, 0.05, SR * 2).astype(np.float32)),
        "not speech",
        "steady noise",
        True,
    ),
    ("dup", lambda f: _write(f, "dup", _clip(freq=220.0), "another text"), "duplicate audio", "same audio as", True),
    (
        "mismatch",
        lambda f: _write(f, "mismatch", _clip(3.0, freq=260), "Yes."),
        "transcript does not fit",
        "4 characters for 3.0 s",
        True,
    ),
    (
        "voice",
        lambda f: (f / "voice.m4a").write_bytes(b"\0\0\0\x20ftypM4A "),
        "unsupported format",
        ".m4a cannot be read",
        True,
    ),
    (
        "orphan",
        lambda f: (f / "orphan.txt").write_text("no audio here"),
        "transcript without audio",
        "no recording",
        True,
    ),
    (
        "rate",
        lambda f: _write(f, "rate", _clip(freq=230, sr=16000), sr=16000),
        "sample rate",
        "16000 Hz, resampled to",
        False,
    ),
    (
        "narrow",
        lambda f: _write(f, "narrow", _clip(freq=235, sr=4000), "a narrow band", sr=4000),
        "sample rate",
        "4000 Hz, resampled to 8000 Hz: it lacks the voice above 2000 Hz",
        False,
    ),
    (
        "stereo",
        lambda f: _write(f, "stereo", np.stack([_clip(freq=240), _clip(freq=250)], axis=1), "two channels"),
        "stereo",
        "2 channels, downmixed to mono",
        False,
    ),
]


@pytest.fixture(scope="module")
def validated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("recordings")
    _write(folder, "a_good", _clip(freq=220.0), "the first sentence")  # "dup" repeats its audio
    for _, make, *_ in CASES:
        make(folder)
    return finetune.validate_recordings(folder, SR, min_sec=1.0, max_sec=15.0)


@pytest.mark.parametrize("name,make,issue,message,dropped", CASES, ids=[c[0] for c in CASES])
def test_validation_messages(validated, name, make, issue, message, dropped):
    clips, problems = validated
    found = [p for p in problems if Path(p.file).stem == name]
    assert len(found) == 1, [vars(p) for p in problems]
    assert found[0].issue == issue and message in found[0].message and found[0].dropped is dropped
    assert any(c.path.stem == name for c in clips) is not dropped
    assert f"| {found[0].file} | {issue} |" in finetune.validation_table(clips, problems)


def test_validation_keeps_good_clips_and_notes_fixes(validated):
    clips, _ = validated
    assert sorted(c.path.stem for c in clips) == ["a_good", "narrow", "rate", "stereo"]
    notes = {c.path.stem: c.notes for c in clips}
    assert notes == {"a_good": [], "narrow": ["resampled"], "rate": ["resampled"], "stereo": ["downmixed"]}


def test_recordings_without_a_transcript_are_transcribed_with_an_asr_model(tmp_path):
    from modeling_ditar import PromptTranscriber

    heard = {"a": "a sentence heard", "b": "  ", "c": "and again " * 30}

    def recogniser(audio, rate):  # tells the clips apart by their length
        return heard["abc"[round(len(audio) / rate) - 2]]

    folder = tmp_path / "recordings"
    folder.mkdir()
    _write(folder, "a", _clip(2.0, freq=150), None)
    _write(folder, "b", _clip(3.0, freq=160), None)
    _write(folder, "c", _clip(4.0, freq=170), None)
    _write(folder, "given", _clip(freq=180), "the sentence given")
    _write(folder, "blank", _clip(2.0, freq=190), "  \n")  # a blank transcript file is transcribed too
    clips, problems = finetune.validate_recordings(folder, SR, transcriber=PromptTranscriber(recogniser))
    assert {c.path.stem: (c.text, c.notes) for c in clips} == {
        "a": ("a sentence heard", ["transcribed"]),
        "blank": ("a sentence heard", ["transcribed"]),
        "given": ("the sentence given", []),
    }
    found = {Path(p.file).stem: p for p in problems}
    assert found["a"].issue == "transcribed" and "heard 'a sentence heard'" in found["a"].message
    assert not found["a"].dropped
    assert found["b"].issue == "nothing heard" and found["b"].dropped
    assert found["c"].issue == "transcript repeats itself" and found["c"].dropped
    assert "given" not in found
    _, problems = finetune.validate_recordings(folder, SR)
    assert "--asr-model" in {Path(p.file).stem: p for p in problems}["a"].message


def test_metadata_csv_and_ljspeech_layouts(tmp_path):
    csv_dir, lj_dir = tmp_path / "csv", tmp_path / "lj"
    (csv_dir / "clips").mkdir(parents=True)
    (lj_dir / "wavs").mkdir(parents=True)
    sf.write(str(csv_dir / "clips" / "1.wav"), _clip(freq=200), SR)
    (csv_dir / "metadata.csv").write_text(
        'file_name,text,speaker_id\nclips/1.wav,"Hello, there.",anna\nclips/2.wav,x,\n'
    )
    clips, problems = finetune.validate_recordings(csv_dir, SR)
    assert [(c.text, c.speaker) for c in clips] == [("Hello, there.", "anna")]
    assert [(p.file, p.issue) for p in problems] == [("clips/2.wav", "missing audio")]
    sf.write(str(lj_dir / "wavs" / "LJ001.wav"), _clip(freq=210), SR)
    (lj_dir / "metadata.csv").write_text("LJ001|Printing, in 1 sense|Printing, in one sense\n")
    clips, problems = finetune.validate_recordings(lj_dir, SR)
    assert [c.text for c in clips] == ["Printing, in one sense"] and problems == []
    # Excel's byte-order mark and semicolons; an unquoted delimiter inside a text is refused, naming the line
    (csv_dir / "metadata.csv").write_text("\ufefffile_name;text\nclips/1.wav;Hello there.\n", encoding="utf-8")
    clips, problems = finetune.validate_recordings(csv_dir, SR)
    assert [c.text for c in clips] == ["Hello there."] and problems == []
    (csv_dir / "metadata.csv").write_text("file_name,text,speaker_id\nclips/1.wav,I would like tea, please.,anna\n")
    with pytest.raises(SystemExit, match=r"metadata.csv:2: 4 fields where the header has 3; put a text"):
        finetune.validate_recordings(csv_dir, SR)
    # audio the metadata does not name is listed, not silently left out
    sf.write(str(csv_dir / "clips" / "3.wav"), _clip(freq=205), SR)
    (csv_dir / "metadata.csv").write_text("file_name,text\nclips/1.wav,Hello there.\n")
    clips, problems = finetune.validate_recordings(csv_dir, SR)
    assert [(p.file, p.issue) for p in problems] == [("clips/3.wav", "not in metadata.csv")]


@pytest.mark.skipif(finetune.shutil.which("espeak-ng") is None, reason="needs espeak-ng (setup.sh installs it)")
def test_finetune_and_build_corpus_read_the_same_rows_in_every_metadata_layout(tmp_path):
    """build_corpus.py --from-folder read only a ',' header CSV, and the two scripts could read one file apart."""
    import build_corpus

    folders = metadata_layouts.layout_folders(tmp_path, metadata_layouts.speak(tmp_path / "wavs"))
    spoken = metadata_layouts.SPOKEN
    for layout, folder in folders.items():
        corpus = [
            (Path(r["audio"]["path"]), r["text"], r["speaker_id"]) for r in build_corpus.read_folder_metadata(folder)
        ]
        one_speaker = layout in ("ljspeech", "comma_one_speaker")
        speakers = ["speaker"] * len(spoken) if one_speaker else [voice for *_, voice in spoken]
        texts = [normalized or text for _, text, normalized, _ in spoken]
        assert [(path.relative_to(folder).as_posix(), text, speaker) for path, text, speaker in corpus] == [
            (f"wavs/{clip}.wav", text, speaker)
            for (clip, *_), text, speaker in zip(spoken, texts, speakers, strict=True)
        ], layout
        clips, problems = finetune.validate_recordings(folder, 22050)
        assert [(c.path, c.text, c.speaker) for c in clips] == corpus and not problems, layout
    # an LJSpeech row whose wav is missing: finetune leaves the clip out, build_corpus stops naming its line
    (folders["ljspeech"] / "wavs" / "LJ001-0002.wav").unlink()
    clips, problems = finetune.validate_recordings(folders["ljspeech"], 22050)
    assert [(p.file, p.issue) for p in problems] == [("wavs/LJ001-0002.wav", "missing audio")] and len(clips) == 3
    with pytest.raises(SystemExit, match="1 of 4 rows cannot be used: line 2: wavs/LJ001-0002.wav is missing"):
        build_corpus.read_folder_metadata(folders["ljspeech"])
    # a header separated by '|' was read as LJSpeech rows (the speaker column became the transcripts), then refused
    (folders["comma"] / "metadata.csv").write_text("file_name|text|speaker_id\nwavs/LJ001-0001.wav|Hello.|m3\n")
    assert [(p.name, t, s) for p, t, s in finetune.list_recordings(folders["comma"])] == [
        ("LJ001-0001.wav", "Hello.", "m3")
    ]
    assert [(r["text"], r["speaker_id"]) for r in build_corpus.read_folder_metadata(folders["comma"])] == [
        ("Hello.", "m3")
    ]


def test_transcripts_that_are_not_utf8_or_not_speakable_are_named(tmp_path):
    from modeling_ditar import DiTARTextFrontend, build_ditar_tokenizer

    (tmp_path / "latin1").mkdir()
    _write(tmp_path / "latin1", "caf", _clip(freq=215), None)
    (tmp_path / "latin1" / "caf.txt").write_bytes("un caf\xe9 noir".encode("latin-1"))
    with pytest.raises(SystemExit, match=r"caf.txt: not UTF-8 text .* save it as UTF-8"):
        finetune.validate_recordings(tmp_path / "latin1", SR)
    (tmp_path / "cyrillic").mkdir()
    _write(tmp_path / "cyrillic", "ru", _clip(freq=225), "\u043f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440")
    check = DiTARTextFrontend(build_ditar_tokenizer(phonemize=False)).check_text_script
    clips, problems = finetune.validate_recordings(tmp_path / "cyrillic", SR, text_check=check)
    assert clips == [] and [(p.file, p.issue) for p in problems] == [("ru.wav", "text the model cannot speak")]
    assert "Cyrillic" in problems[0].message


def test_from_recordings_to_a_voice_end_to_end(tmp_path, capsys):
    from modeling_ditar import DiTARPipeline

    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    words = ["hello world", "a small test", "speech is fun", "more words here", "the quick fox", "good day", "yes"]
    rng = np.random.default_rng(0)
    for i, text in enumerate(words):
        audio = _clip(1.0 + 0.05 * i, freq=180 + 10 * i) + 0.01 * rng.standard_normal(int((1.0 + 0.05 * i) * SR))
        _write(recordings, f"utt{i}", audio.astype(np.float32), text)
    _write(recordings, "notext", _clip(freq=300), None)
    out = tmp_path / "out"
    argv = [str(recordings), "--out", str(out), "--base", str(base), "--max-steps", "4", "--rank", "4"]
    argv += ["--holdout", "2", "--eval", "none", "--threads", "1", "--min-sec", "0.5"]
    result = finetune.main(argv)

    assert "missing transcript" in (out / "validation.md").read_text()
    assert {p.name for p in (out / "adapter").iterdir()} == {
        "adapter_model.safetensors",
        "adapter_config.json",
        "README.md",
    }
    summary = json.loads((out / "adapter_summary.json").read_text())
    assert summary == pytest.approx(result["summary"]) and 0 < summary["fraction"] < 0.5
    log = (out / "run" / "log.csv").read_text().splitlines()
    assert log[-1].startswith("4,")  # trained 4 steps
    report = (out / "report.md").read_text()
    assert "Adapter:" in report and "Evaluation skipped: --eval none" in report and "5 training clips" in report

    voice = DiTARPipeline.from_pretrained(out / "voice")
    voice.set_progress_bar_config(disable=True)
    assert voice.default_voice is not None
    audio = voice("hello", num_inference_steps=2, max_new_patches=3).audios[0]
    assert np.isfinite(audio).all() and audio.size > 0
    pipe = DiTARPipeline.from_pretrained(base)
    pipe.load_lora_weights(out / "adapter", adapter_name="me")
    assert pipe.get_active_adapters() == ["me"]

    capsys.readouterr()
    finetune.main(argv)  # a second run resumes: nothing to train again
    assert "+ " not in capsys.readouterr().out
    # other settings or other recordings in the same --out are refused, not resumed under the new report
    with pytest.raises(SystemExit, match=r"holds a fine-tuning of other inputs \(changed: lora\).*new --out"):
        finetune.main([*argv, "--rank", "8"])
    _write(recordings, "utt0", _clip(1.0, freq=400).astype(np.float32), "hello world")
    with pytest.raises(SystemExit, match=r"changed: the recordings"):
        finetune.main(argv)


def test_a_diverging_run_stops_without_saving_non_finite_weights(tmp_path, capfd):
    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for i, text in enumerate(["hello world", "a small test", "speech is fun", "more words here", "the quick fox"]):
        _write(recordings, f"utt{i}", _clip(1.0, freq=180 + 10 * i), text)
    out = tmp_path / "out"
    argv = [str(recordings), "--out", str(out), "--base", str(base), "--max-steps", "4", "--rank", "4"]
    argv += ["--holdout", "1", "--eval", "none", "--threads", "1", "--min-sec", "0.5", "--learning-rate", "1e30"]
    with pytest.raises(SystemExit, match="train.py stopped with exit status"):
        finetune.main(argv)
    assert "training diverged at step" in capfd.readouterr().err
    checkpoints = out / "run" / "checkpoints"
    assert not checkpoints.is_dir() or not any(checkpoints.iterdir())  # nothing non-finite to resume from
    assert not (out / "run" / "final").exists()


def test_relative_paths_are_read_from_the_folder_the_command_runs_in(tmp_path, monkeypatch):
    """`finetune.py my_recordings --out runs/my-voice` from any folder: the training and evaluation it starts read
    the same relative paths (they ran in the repository's folder and found no config)."""
    get_dummy_pipeline().save_pretrained(tmp_path / "base")
    _five_clips(tmp_path / "recordings")
    monkeypatch.chdir(tmp_path)
    finetune.main(_quick_run(Path("recordings"), Path("runs/voice"), Path("base")))  # relative, as typed
    assert (tmp_path / "runs" / "voice" / "adapter").is_dir() and (tmp_path / "runs" / "voice" / "voice").is_dir()


def test_clips_that_trimming_takes_under_min_sec_are_named_and_a_rebuild_is_possible(tmp_path):
    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    pad = np.zeros(int(0.5 * SR), np.float32)  # half a second of silence on each side: 1.4 s, then 0.4 s of speech
    for i, text in enumerate(["hello world", "a small test", "speech is fun", "more words here", "the quick fox"]):
        _write(recordings, f"utt{i}", np.concatenate([pad, _clip(0.4, freq=180 + 10 * i), pad]), text)
    out = tmp_path / "out"
    argv = [str(recordings), "--out", str(out), "--base", str(base), "--max-steps", "2", "--rank", "4"]
    argv += ["--holdout", "1", "--eval", "none", "--threads", "1", "--min-sec", "1.0"]
    # the validation judges them on the length the build keeps, and names both lengths
    with pytest.raises(SystemExit, match=r"0 usable clips \(see validation.md\)"):
        finetune.main(argv)
    assert (
        "0.60 s of speech (1.4 s with the silence at its ends), under --min-sec 1 s"
        in (out / "validation.md").read_text()
    )
    assert not (out / "data" / "dataset_dict.json").exists()  # no broken corpus is left behind
    # the fix the message gives works in the same --out: nothing was built from the refused settings
    finetune.main([*argv[:-1], "0.3"])
    assert (out / "data" / "dataset_dict.json").is_file() and (out / "adapter").is_dir()


def test_a_datasets_audio_dataset_becomes_a_checked_folder(tmp_path):
    import io

    from datasets import Audio, Dataset

    def wav_bytes(audio):  # an Audio column stored as encoded files, as datasets keeps it
        buffer = io.BytesIO()
        sf.write(buffer, audio, SR, format="WAV", subtype="FLOAT")
        return {"bytes": buffer.getvalue(), "path": None}

    clips = [_clip(1.2, freq=200), _clip(1.3, freq=260), _clip(0.2, freq=300)]
    ds = Dataset.from_dict(
        {
            "audio": [wav_bytes(c) for c in clips],
            "sentence": ["hello there", "", "too short"],
            "who": ["anna", "anna", "ben"],
        }
    ).cast_column("audio", Audio(sampling_rate=SR))
    ds.save_to_disk(str(tmp_path / "saved"))

    loaded = finetune.load_audio_dataset(str(tmp_path / "saved"), "train")
    folder = tmp_path / "source"
    finetune.dataset_to_folder(loaded, folder, "sentence", "audio", "who")
    clips_ok, problems = finetune.validate_recordings(folder, SR)
    assert [(c.text, c.speaker) for c in clips_ok] == [("hello there", "anna")]
    found = sorted((p.file, p.issue) for p in problems)
    assert found == [("00001.wav", "empty transcript"), ("00002.wav", "too short")]
    data, sr = sf.read(str(folder / "00000.wav"), dtype="float32")
    assert sr == SR and np.allclose(data, clips[0], atol=1e-4)

    with pytest.raises(SystemExit, match="--text-column"):
        finetune.dataset_to_folder(loaded, tmp_path / "x", "text", "audio", None)
    with pytest.raises(SystemExit, match="not a dataset saved with save_to_disk"):
        finetune.load_audio_dataset(str(tmp_path / "source"), "train")


def test_a_corpus_of_plain_sample_arrays_with_a_rate_column_becomes_a_checked_folder(tmp_path):
    """The layout examples/build_corpus.py writes (audio as a list of floats, `sampling_rate` beside it) was written
    as empty files and reported as unreadable audio."""
    from datasets import Dataset

    clips = [_clip(1.2, freq=200), _clip(1.3, freq=260)]
    ds = Dataset.from_dict(
        {"audio": [c.tolist() for c in clips], "sampling_rate": [SR, SR], "text": ["hello there", "and again"]}
    )
    folder = tmp_path / "source"
    finetune.dataset_to_folder(ds, folder, "text", "audio", None)
    clips_ok, problems = finetune.validate_recordings(folder, SR)
    assert [c.text for c in clips_ok] == ["hello there", "and again"] and not problems
    data, sr = sf.read(str(folder / "00001.wav"), dtype="float32")
    assert sr == SR and np.allclose(data, clips[1], atol=1e-4)
    with pytest.raises(SystemExit, match="plain sample arrays .* no 'sampling_rate' column"):
        finetune.dataset_to_folder(ds.remove_columns("sampling_rate"), tmp_path / "x", "text", "audio", None)


def test_finetune_command_takes_a_saved_dataset(tmp_path):
    import io

    from datasets import Dataset

    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    rows = {"audio": [], "text": []}
    for i, text in enumerate(["hello world", "a small test", "speech is fun", "more words here", "good day"]):
        buffer = io.BytesIO()
        sf.write(buffer, _clip(1.0 + 0.05 * i, freq=180 + 10 * i), SR, format="WAV")
        rows["audio"].append({"bytes": buffer.getvalue(), "path": None})
        rows["text"].append(text)
    Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "out"
    argv = [str(tmp_path / "ds"), "--dataset", "--out", str(out), "--base", str(base), "--max-steps", "1"]
    argv += ["--rank", "2", "--holdout", "2", "--eval", "none", "--threads", "1", "--min-sec", "0.5"]
    finetune.main(argv)
    assert len(list((out / "source").glob("*.wav"))) == 5
    assert "3 training clips, 2 held out" in (out / "report.md").read_text()


@pytest.mark.skipif(
    not Path("/usr/share/games/fortunes").is_dir() or finetune.shutil.which("espeak-ng") is None,
    reason="replay speech needs espeak-ng and fortunes (setup.sh installs them)",
)
def test_replay_utterances_join_the_training_split_only_and_dora_with_norms_trains(tmp_path):
    from datasets import load_from_disk

    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    for i, text in enumerate(["hello world", "a small test", "speech is fun", "more words here", "good day"]):
        _write(recordings, f"utt{i}", _clip(1.0 + 0.05 * i, freq=180 + 10 * i), text)
    out = tmp_path / "out"
    argv = [str(recordings), "--out", str(out), "--base", str(base), "--max-steps", "2", "--rank", "2", "--dora"]
    argv += ["--train-norms"]
    argv += ["--holdout", "2", "--eval", "none", "--threads", "1", "--min-sec", "0.5", "--replay", "6"]
    finetune.main(argv)

    corpus = load_from_disk(str(out / "data"))
    replay = [row for row in corpus["train"] if row["voice"] == "finetune:replay"]
    assert len(replay) == 6 and len(corpus["train"]) == 9
    # 4 utterances per replay speaker: two espeak-ng voices, so prompt/target pairs of one speaker exist
    assert sorted({row["speaker_id"] for row in replay}) == ["replay-r00000", "replay-r00001"]
    assert all(row["voice"] != "finetune:replay" for row in corpus["validation"])
    assert not {row["text"] for row in replay} & {"hello world", "a small test", "speech is fun"}
    assert "3 training clips + 6 replay utterances" in (out / "report.md").read_text()
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert config["use_dora"] is True and "norm1" in config["modules_to_save"]
    from safetensors.torch import load_file

    saved = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert any(key.endswith("norm1.weight") for key in saved)  # the trained normalisation layers travel too
    assert "DoRA" in (out / "adapter" / "README.md").read_text()

    with pytest.raises(SystemExit, match=r"other inputs \(changed: replay\)"):
        finetune.main([*argv[:-1], "3"])
    (out / "inputs.json").unlink()  # a folder made before inputs.json existed: its corpus still says how it was built
    with pytest.raises(SystemExit, match="built with --replay 6"):
        finetune.main([*argv[:-1], "3"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--full", "--dora"], "--dora shapes a LoRA adapter; --full trains every weight"),
        (["--full", "--train-norms"], "--train-norms shapes a LoRA adapter"),
        (["--replay", "-1"], "--replay -1"),
        (["--max-steps", "0"], "--max-steps 0"),
        (["--rank", "0"], "--rank 0"),
        (["--targets", "backbone+decoder"], "--targets: LoRA targets 'backbone\\+decoder'"),
        (["--holdout", "0"], "--holdout 0: give at least 1"),
        (["--min-sec", "5", "--max-sec", "2"], "give 0 <= --min-sec < --max-sec"),
        (["--learning-rate", "0"], "--learning-rate 0: give a finite number > 0"),
        (["--learning-rate", "inf"], "--learning-rate inf: give a finite number > 0"),
        (["--alpha", "-2"], "--alpha -2: give a finite number > 0"),
        (["--max-batch-frames", "0"], "--max-batch-frames 0: give at least 1"),
        (["--threads", "0"], "--threads 0: give at least 1"),
    ],
)
def test_impossible_settings_are_refused_before_any_work(tmp_path, extra, message):
    with pytest.raises(SystemExit, match=message):
        finetune.main([str(tmp_path / "recordings"), "--out", str(tmp_path / "out"), *extra])
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_missing_recordings_folder_base_or_dataset_is_named_before_any_work(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="no such folder of recordings .* add --dataset"):
        finetune.main([str(tmp_path / "recordings"), "--out", str(out)])
    (tmp_path / "recordings").mkdir()
    with pytest.raises(SystemExit, match="--base .*nowhere: no such pipeline folder"):
        finetune.main([str(tmp_path / "recordings"), "--out", str(out), "--base", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="--base .*recordings: no DiTAR processor could be loaded"):
        finetune.main([str(tmp_path / "recordings"), "--out", str(out), "--base", str(tmp_path / "recordings")])
    assert not out.exists()
    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    with pytest.raises(SystemExit, match="--base .*processor: a part of a pipeline; give the pipeline folder"):
        finetune.main([str(tmp_path / "recordings"), "--out", str(out), "--base", str(base / "processor")])
    out.write_text("not a folder")
    with pytest.raises(SystemExit, match="--out .*: a file is in the way"):
        finetune.main([str(tmp_path / "recordings"), "--out", str(out), "--base", str(base)])
    out.unlink()
    with pytest.raises(SystemExit, match="no-such-dataset: no such local folder, and loading it as a Hub dataset"):
        finetune.load_audio_dataset(str(tmp_path / "no-such-dataset"), "train")


def _five_clips(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(["hello world", "a small test", "speech is fun", "more words here", "the quick fox"]):
        _write(folder, f"utt{i}", _clip(1.0, freq=180 + 10 * i), text)
    return folder


def _quick_run(recordings: Path, out: Path, base: Path) -> list[str]:
    argv = [str(recordings), "--out", str(out), "--base", str(base), "--max-steps", "2", "--rank", "4"]
    return argv + ["--holdout", "1", "--eval", "none", "--threads", "1", "--min-sec", "0.5"]


def test_an_out_that_is_no_run_of_this_script_is_refused_before_anything_is_deleted(tmp_path):
    """A run replaces its --out's data/ and adapter/: `--out` set to the recordings folder deleted the recordings the
    user kept in recordings/data, and any other folder lost its data/ or adapter/ without a word."""
    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    recordings = _five_clips(tmp_path / "recordings")
    _five_clips(recordings / "data")
    kept = sorted(recordings.rglob("*"))
    with pytest.raises(SystemExit, match=r"--out .*recordings: is the recordings folder; give a new or empty folder"):
        finetune.main(_quick_run(recordings, recordings, base))
    with pytest.raises(SystemExit, match=r"--out .*: holds the recordings folder; give a new or empty folder"):
        finetune.main(_quick_run(recordings, tmp_path, base))
    other = tmp_path / "project"
    (other / "adapter").mkdir(parents=True)
    (other / "adapter" / "mine.safetensors").write_bytes(b"weights")
    with pytest.raises(SystemExit, match=r"--out .*project: holds other files and is no run of this script"):
        finetune.main(_quick_run(recordings, other, base))
    assert sorted(recordings.rglob("*")) == kept and (other / "adapter" / "mine.safetensors").read_bytes() == b"weights"
    assert sorted(p.name for p in other.iterdir()) == ["adapter"]  # nothing was written either
    # a new or empty folder, and a run of this script, are taken
    (tmp_path / "empty").mkdir()
    (tmp_path / "old-run").mkdir()
    (tmp_path / "old-run" / "inputs.json").write_text("{}")
    for out in ("new", "empty", "old-run"):
        finetune.check_arguments(finetune.build_parser().parse_args(_quick_run(recordings, tmp_path / out, base)))


def test_an_out_inside_the_recordings_folder_is_not_read_as_recordings(tmp_path, capsys):
    """Its prompts and clips were scanned as recordings: the next run was refused as one of other inputs."""
    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    recordings = _five_clips(tmp_path / "recordings")
    argv = _quick_run(recordings, recordings / "run", base)
    finetune.main(argv)
    capsys.readouterr()
    finetune.main(argv)  # resumes: nothing to train again
    assert "+ " not in capsys.readouterr().out
    assert "run/" not in (recordings / "run" / "validation.md").read_text()
    assert "0 left out, 0 notes on kept clips" in (recordings / "run" / "validation.md").read_text()


def test_an_interrupted_corpus_save_is_built_again_on_the_next_run(tmp_path, monkeypatch):
    """save_to_disk writes dataset_dict.json before the splits: a run stopped there was taken as a finished corpus,
    and every re-run ended in a FileNotFoundError."""
    import datasets

    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    out = tmp_path / "out"
    argv = _quick_run(_five_clips(tmp_path / "recordings"), out, base)

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(datasets.Dataset, "save_to_disk", interrupted)
        with pytest.raises(KeyboardInterrupt):
            finetune.main(argv)
    assert not (out / "data").exists() and (out / "data.partial" / "dataset_dict.json").is_file()
    finetune.main(argv)
    assert (out / "adapter").is_dir() and not (out / "data.partial").exists()


def test_an_unwritable_out_is_one_message_naming_it(tmp_path, monkeypatch):
    import errno

    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    recordings = _five_clips(tmp_path / "recordings")
    (tmp_path / "somefile").write_text("x")
    with pytest.raises(SystemExit, match=r"--out .*somefile/run: cannot write there \(Not a directory\)"):
        finetune.main(_quick_run(recordings, tmp_path / "somefile" / "run", base))
    finished = tmp_path / "finished"  # a run in a read-only folder (simulated: root writes to any folder)
    finished.mkdir()
    (finished / "inputs.json").write_text("{}")

    def read_only(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", dir)

    monkeypatch.setattr(finetune.tempfile, "TemporaryFile", read_only)
    with pytest.raises(SystemExit, match=r"--out .*finished: cannot write there \(Permission denied\)"):
        finetune.main(_quick_run(recordings, finished, base))
    assert sorted(p.name for p in finished.iterdir()) == ["inputs.json"]


@pytest.mark.parametrize(
    "header",
    [
        '"file_name","text","speaker_id"',
        "File_Name,Text,Speaker_ID",
        "file_name, text, speaker_id",
        "file_name,text,speaker",
    ],
)
def test_a_metadata_csv_header_is_read_as_spreadsheets_write_it(tmp_path, header):
    sf.write(str(tmp_path / "1.wav"), _clip(freq=200), SR)
    (tmp_path / "metadata.csv").write_text(f'{header}\n1.wav, "Hello, there.", anna\n')
    clips, problems = finetune.validate_recordings(tmp_path, SR)
    assert [(c.path.name, c.text, c.speaker) for c in clips] == [("1.wav", "Hello, there.", "anna")] and not problems


def test_transcripts_pair_with_their_audio_whatever_the_case_of_the_suffix(tmp_path):
    sf.write(str(tmp_path / "a.wav"), _clip(freq=200), SR)
    (tmp_path / "a.TXT").write_text("the first sentence")
    sf.write(str(tmp_path / "b.WAV"), _clip(freq=210), SR)
    (tmp_path / "b.txt").write_text("the second sentence")
    (tmp_path / "c.TXT").write_text("no audio for this one")
    clips, problems = finetune.validate_recordings(tmp_path, SR)
    assert [(c.path.name, c.text) for c in clips] == [("a.wav", "the first sentence"), ("b.WAV", "the second sentence")]
    assert [(p.file, p.issue) for p in problems] == [("c.TXT", "transcript without audio")]


def test_errors_name_the_minimum_a_metadata_csv_in_a_subfolder_and_unreadable_formats(tmp_path):
    lj = tmp_path / "rec" / "LJSpeech-mini"
    (lj / "wavs").mkdir(parents=True)
    sf.write(str(lj / "wavs" / "LJ001.wav"), _clip(freq=210), SR)
    (lj / "metadata.csv").write_text("LJ001|Printing, in 1 sense|Printing, in one sense\n")
    with pytest.raises(SystemExit, match=r"no metadata.csv at the top, but found one in a subfolder .*LJSpeech-mini"):
        finetune.validate_recordings(tmp_path / "rec", SR)
    phone = tmp_path / "phone"
    phone.mkdir()
    for name in ("a.webm", "b.m4a", "c.m4a"):
        (phone / name).write_bytes(b"\0" * 16)
    with pytest.raises(SystemExit, match=r"phone: only \.m4a, \.webm audio, which cannot be read; convert it"):
        finetune.validate_recordings(phone, SR)

    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    recordings = _five_clips(tmp_path / "recordings")
    argv = _quick_run(recordings, tmp_path / "out", base)
    argv[argv.index("--holdout") + 1] = "4"
    with pytest.raises(
        SystemExit, match=r"5 usable clips .*at least --holdout \+ 2 = 6 .*or hold out fewer \(--holdout 1"
    ):
        finetune.main(argv)


def test_clips_are_judged_on_their_length_without_the_silence_at_their_ends(tmp_path):
    """The build trims leading and trailing silence; the validation judged the untrimmed length: a 3.7 s sentence
    with 6 s of silence on each side was 'too long', an exact transcript followed by 8 s of silence did not 'fit'."""
    silence = np.zeros(6 * SR, np.float32)
    _write(tmp_path, "padded", np.concatenate([silence, _clip(3.7, freq=200), silence]), "a sentence of some length")
    _write(tmp_path, "trailing", np.concatenate([_clip(2.0, freq=220), np.zeros(8 * SR, np.float32)]), "short one")
    clips, problems = finetune.validate_recordings(tmp_path, SR, max_sec=15.0)
    assert sorted(c.path.stem for c in clips) == ["padded", "trailing"] and not problems
    assert {c.path.stem: c.seconds for c in clips} == {
        "padded": pytest.approx(3.8, abs=0.15),
        "trailing": pytest.approx(2.0, abs=0.05),
    }


def _speakers(folder: Path, texts: dict[str, list[str]]) -> Path:
    """A metadata.csv folder with the clips of several speakers: {speaker: [texts]}."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, number = ["file_name,text,speaker_id"], 0
    for speaker, said in texts.items():
        for i, text in enumerate(said):
            sf.write(str(folder / f"{speaker}{i}.wav"), _clip(1.0 + 0.05 * number, freq=170 + 10 * number), SR)
            rows.append(f"{speaker}{i}.wav,{text},{speaker}")
            number += 1
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def stub_evaluation(monkeypatch):
    """finetune.py's evaluation with evaluate.py's real case builder (a fork of the preloaded interpreter) and a
    stand-in for the scoring (Whisper and Resemblyzer are not run here); returns the evaluate.py command lines."""
    calls, real_run = [], finetune._run

    def run(command):
        command = [str(c) for c in command]
        if Path(command[1]).name != "evaluate.py":
            return real_run(command)
        calls.append(command)
        if "--make-cases-from" in command:
            return real_run(command)
        cases = [json.loads(line) for line in Path(command[command.index("--cases") + 1]).read_text().splitlines()]
        target = Path(command[command.index("--out") + 1])
        target.mkdir(parents=True, exist_ok=True)
        label = command[command.index("--label") + 1]
        row = {"name": label, "sim_prompt": 0.5, "wer": 0.25, "cases": len(cases)}
        (target / "results.json").write_text(json.dumps({"rows": [row]}))

    monkeypatch.setattr(finetune, "eval_available", lambda: None)
    monkeypatch.setattr(finetune, "_run", run)
    return calls


def test_the_held_out_clips_the_voice_and_the_evaluation_are_one_speakers(tmp_path, stub_evaluation, capsys):
    """The held-out clips were a random pick of all speakers': with 3 clips of one speaker and 2 of another, one of
    each was held out, evaluate.py could make no case (prompt and target must share a speaker) and stopped."""
    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    texts = {"b": ["hello world", "a small test"], "a": ["speech is fun", "more words here", "the quick fox"]}
    recordings = _speakers(tmp_path / "recordings", texts)
    out = tmp_path / "out"
    argv = _quick_run(recordings, out, base)
    argv[argv.index("--holdout") + 1] = "2"
    argv[argv.index("--eval") + 1] = "auto"
    for seed in ("0", "1"):  # seed 1 held out one clip of each speaker
        run = out / seed
        finetune.main([*argv[:2], str(run), *argv[3:], "--seed", seed])
        from datasets import load_from_disk

        held = load_from_disk(str(run / "data"))["validation"]
        assert held["speaker_id"] == ["a", "a"]
        cases = [json.loads(line) for line in (run / "eval" / "cases.jsonl").read_text().splitlines()]
        assert [case["speaker_id"] for case in cases] == ["a"]
        prompt, _ = sf.read(str(run / "prompt.wav"), dtype="float32")  # the voice's default prompt: a's first
        assert np.array_equal(prompt, np.asarray(held[0]["audio"], dtype=np.float32))
        report = (run / "report.md").read_text()
        assert "Voice: speaker a (3 of 5 clips" in report and "| fine-tuned |" in report
    assert "the voice is speaker a's" in capsys.readouterr().out


def test_an_evaluation_without_a_possible_case_is_skipped_with_the_reason(tmp_path, stub_evaluation):
    """Two held-out clips of the same sentence (a repeated transcript is kept, and held out with all its clips) make
    no case: evaluate.py stopped and finetune.py wrote no report."""
    base = tmp_path / "base"
    get_dummy_pipeline().save_pretrained(base)
    said = ["the same sentence", "The same sentence!", "another sentence", "another sentence"]
    recordings = _speakers(tmp_path / "recordings", {"a": said, "b": ["hello world", "yes no"]})
    out = tmp_path / "out"
    argv = _quick_run(recordings, out, base)
    argv[argv.index("--holdout") + 1] = "2"
    argv[argv.index("--eval") + 1] = "auto"
    finetune.main(argv)
    report = (out / "report.md").read_text()
    assert "Evaluation skipped: no evaluation case could be made from the 2 held-out clips" in report
    assert "different sentences" in report and stub_evaluation == []
    assert (out / "voice").is_dir()


def test_held_out_clips_are_whole_sentences_that_training_never_sees(tmp_path, capsys):
    """Clips were held out, not sentences: with two recordings of one text, --holdout 4 --seed 3 put "The cat sat on
    the warm mat today." in both the training and the held-out split, of the same speaker."""
    said = {
        "me": [
            "The cat sat on the warm mat today.",
            "the cat sat on the warm mat today",  # the same sentence, written otherwise
            "A bird flew over the quiet river.",
            "Green apples grow on the old tree.",
            "Rain fell softly on the tin roof.",
            "We walked home along the sandy beach.",
            "Snow covered the hills by morning.",
        ],
        "other": ["The cat sat on the warm mat today.", "A bird flew over the quiet river."],
    }
    clean = _speakers(tmp_path / "clean", said)  # a metadata.csv folder, as write_clean_clips leaves it
    processor = get_dummy_pipeline().processor
    held_the_repeated = []
    for seed in range(4):
        dsd = finetune.build_features(clean, tmp_path / f"data{seed}", processor, 4, seed, 0.5, 15.0)
        train, held = dsd["train"], dsd["validation"]
        assert set(held["speaker_id"]) == {"me"} and 1 <= len(held) <= 4
        assert not {normalize_text(t) for t in train["text"]} & {normalize_text(t) for t in held["text"]}
        held_the_repeated.append(normalize_text(said["me"][0]) in {normalize_text(t) for t in held["text"]})
    assert any(held_the_repeated) and not all(held_the_repeated)  # held out by some seeds, trained on by others
    out = capsys.readouterr().out
    left_out = [line for line in out.splitlines() if line.startswith("left out of training: ")]
    assert left_out and all("other speakers' clips of a held-out sentence" in line for line in left_out)
    assert any("other0.wav" in line for line in left_out)


def test_held_out_sentences_keep_the_count_where_they_can_and_say_when_they_cannot(capsys):
    def rows(texts: str) -> list[dict]:
        return [{"text": t, "speaker_id": "me", "file_name": f"{i}.wav"} for i, t in enumerate(texts)]

    singles = rows("abcdef")  # every sentence once: --holdout clips exactly, nothing said
    assert len(finetune.hold_out_sentences(singles, "me", 3, seed=5)[0]) == 3
    assert "not --holdout" not in capsys.readouterr().out
    for seed in range(6):  # sentence a has 2 clips: held out whole, or two single sentences instead
        held, left_out = finetune.hold_out_sentences(rows("aabcd"), "me", 2, seed)
        texts = sorted(rows("aabcd")[i]["text"] for i in held)
        assert texts in (["a", "a"], ["b", "c"], ["b", "d"], ["c", "d"]) and left_out == set()
    twice = rows("aabbcc")  # --holdout 1 and every sentence recorded twice: one whole sentence, said
    held, _ = finetune.hold_out_sentences(twice, "me", 1, seed=0)
    assert len(held) == 2 and len({twice[i]["text"] for i in held}) == 1
    assert "2 clips of 1 sentence held out, not --holdout 1" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="every clip of speaker me reads the same sentence .*more different"):
        finetune.hold_out_sentences(rows("aaaa"), "me", 2, seed=0)


def test_a_dropped_clip_is_given_the_reason_that_applies(tmp_path):
    """A Japanese transcript was 'does not fit' (the speaking rate was checked first), a float WAV with a NaN was kept
    (and left out at the build as 'under --min-sec after trimming'), a cut-off WAV was 'too short: 0.00 s' and one
    with no samples stopped the validation with a ValueError."""
    from modeling_ditar import DiTARTextFrontend, build_ditar_tokenizer

    _write(tmp_path, "japanese", _clip(3.0, freq=200), "\u3053\u3093\u306b\u3061\u306f")
    broken = _clip(2.0, freq=210)
    broken[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), broken, SR, subtype="FLOAT")
    (tmp_path / "nan.txt").write_text("a broken float file")
    sf.write(str(tmp_path / "whole.wav"), _clip(2.0, freq=220), SR)
    for name, size in (("cut", 60), ("header", 44)):
        (tmp_path / f"{name}.wav").write_bytes((tmp_path / "whole.wav").read_bytes()[:size])
        (tmp_path / f"{name}.txt").write_text("a sentence cut off")
    (tmp_path / "whole.wav").unlink()
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), SR)
    (tmp_path / "empty.txt").write_text("nothing recorded")
    check = DiTARTextFrontend(build_ditar_tokenizer(phonemize=False)).check_text_script
    clips, problems = finetune.validate_recordings(tmp_path, SR, text_check=check)
    assert clips == []
    found = {Path(p.file).stem: (p.issue, p.message, p.dropped) for p in problems}
    assert found["japanese"][0] == "text the model cannot speak" and "Hiragana" in found["japanese"][1]
    assert found["nan"][:1] == ("non-finite audio",) and "1 sample is not a number" in found["nan"][1]
    assert found["cut"][0] == "truncated audio" and "0.00 s of the 2.00 s its header declares" in found["cut"][1]
    assert found["header"][0] == "truncated audio" and "no audio of the 2.00 s" in found["header"][1]
    assert found["empty"][0] == "empty audio" and "no audio samples" in found["empty"][1]
    assert all(dropped for *_, dropped in found.values())


def test_loud_clipped_and_quiet_recordings_are_kept_with_a_note(tmp_path):
    """A float recording peaking at 6x full scale was hard-clipped by the build; clipped and very quiet ones were
    taken without a word."""
    clip = _clip(1.5, freq=200)
    sf.write(str(tmp_path / "loud.wav"), clip * (6.0 / np.abs(clip).max()), SR, subtype="FLOAT")
    (tmp_path / "loud.txt").write_text("a loud sentence")
    _write(tmp_path, "clipped", np.clip(_clip(1.5, freq=210) * 8, -1, 1), "a clipped sentence")
    _write(tmp_path, "quiet", _clip(1.5, freq=220) * 0.01, "a quiet sentence")
    _write(tmp_path, "normal", _clip(1.5, freq=230), "a normal sentence")
    clips, problems = finetune.validate_recordings(tmp_path, SR)
    assert sorted(c.path.stem for c in clips) == ["clipped", "loud", "normal", "quiet"]
    found = {Path(p.file).stem: (p.issue, p.message, p.dropped) for p in problems}
    assert found["loud"] == ("over full scale", "peaks at 6.0x full scale: scaled down", False)
    issue, message, dropped = found["clipped"]
    assert issue == "clipped" and message.startswith("clipped: ") and not dropped
    assert "% of samples at full scale; the voice learns the distortion" in message
    assert found["quiet"][0] == "quiet" and " dBFS" in found["quiet"][1] and not found["quiet"][2]
    assert "normal" not in found
    finetune.write_clean_clips(clips, tmp_path / "clean", SR)
    written = {p.stem.split("_", 1)[1]: sf.read(str(p), dtype="float32")[0] for p in (tmp_path / "clean").glob("*/*")}
    assert 0.98 < np.abs(written["loud"]).max() < 1.0
    np.testing.assert_allclose(written["loud"], clip * (np.abs(written["loud"]).max() / np.abs(clip).max()), atol=1e-6)
    np.testing.assert_array_equal(written["normal"], sf.read(str(tmp_path / "normal.wav"), dtype="float32")[0])


def test_a_transcript_that_looks_like_another_language_is_noted(tmp_path):
    from pipeline_helpers import get_dummy_processor

    _write(tmp_path, "french", _clip(2.5, freq=200), "je ne sais pas ce que tu veux dire")
    _write(tmp_path, "english", _clip(2.5, freq=210), "I do not know what you mean")
    text_check, language_check = finetune.text_checks(get_dummy_processor())
    clips, problems = finetune.validate_recordings(tmp_path, SR, text_check=text_check, language_check=language_check)
    assert sorted(c.path.stem for c in clips) == ["english", "french"]
    assert [(p.file, p.issue, p.dropped) for p in problems] == [("french.wav", "other language", False)]
    assert "looks French" in problems[0].message and "English pronunciation" in problems[0].message


@pytest.mark.skipif("OPUS" not in sf.available_subtypes("OGG"), reason="this libsndfile has no Opus")
def test_opus_recordings_are_read(tmp_path):
    sf.write(str(tmp_path / "note.opus"), _clip(1.5, freq=200), SR, format="OGG", subtype="OPUS")
    (tmp_path / "note.txt").write_text("a voice note")
    clips, problems = finetune.validate_recordings(tmp_path, SR)
    assert [(c.path.name, c.text) for c in clips] == [("note.opus", "a voice note")] and not problems


def test_the_evaluation_scores_with_whispers_normaliser_where_its_spelling_map_is_installed(tmp_path, monkeypatch):
    """Your own transcripts hold numbers, symbols and contractions that Whisper writes its own way; with the basic
    normaliser a correct "50%" for "fifty percent" counted as errors in the before/after table."""
    import importlib.util
    import json

    commands = []

    def fake_run(command):
        commands.append([str(part) for part in command])
        out = Path(commands[-1][commands[-1].index("--out") + 1])
        if "--rows" in commands[-1]:
            out.mkdir(parents=True, exist_ok=True)
            (out / "results.json").write_text(json.dumps({"rows": {}}))

    monkeypatch.setattr(finetune, "_run", fake_run)
    args = finetune.build_parser().parse_args(["recordings", "--out", str(tmp_path), "--threads", "1"])
    real_find_spec = importlib.util.find_spec
    for installed in (True, False):
        commands.clear()

        def find_spec(name, *rest, installed=installed):
            if name == "whisper_normalizer":
                return object() if installed else None
            return real_find_spec(name, *rest)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        out = tmp_path / ("with" if installed else "without")
        finetune.run_evaluation(args, tmp_path / "data", tmp_path / "voice", out)
        scored = [c for c in commands if "--rows" in c]
        assert len(scored) == 2
        for command in scored:
            assert (
                (command[command.index("--text-normalizer") + 1] == "whisper")
                if installed
                else ("--text-normalizer" not in command)
            )


def test_the_validation_table_counts_left_out_recordings_apart_from_notes_on_kept_ones():
    """Resampling notes counted as "findings" with the recordings left out: "12 clips usable, 12 findings" read as
    twelve problems where nothing was wrong."""
    problems = [
        finetune.Problem("a.wav", "sample rate", "22050 Hz, resampled", dropped=False),
        finetune.Problem("b.wav", "sample rate", "22050 Hz, resampled", dropped=False),
        finetune.Problem("c.wav", "missing transcript", "no c.txt next to it"),
    ]
    assert finetune.validation_table([], problems).startswith("0 clips usable (0.0 min), 1 left out, 2 notes on kept")

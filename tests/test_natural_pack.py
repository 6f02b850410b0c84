"""Natural-voice packs (examples/corpus/natural_pack.py): Opus export/load round trip, build_corpus.py --add-pack
merging, clear errors for bad packs; and the device bundle's tools (slim_wheel.py, device_payload_size.sh)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
sys.path.insert(0, str(EXAMPLES / "scripts"))

import build_corpus as bc  # noqa: E402
from corpus import natural_pack  # noqa: E402
from slim_wheel import slim_wheel  # noqa: E402

SR = 16000
# conditions in the voice column, as examples/corpus/natural.py's describe() writes them
CONDITION_OF = {"train00001": " | room dims=[4, 5, 3] rt60=0.3", "train00002": " | noise snr_db=12 | level peak_db=-20"}


def _clip(freq: float, seconds: float, sr: int = SR) -> np.ndarray:
    """A voiced-speech-like test signal: 8 harmonics, a syllable-rate envelope and a faint noise floor."""
    t = np.arange(int(seconds * sr)) / sr
    voiced = sum(np.sin(2 * np.pi * k * freq * t) / k for k in range(1, 9))
    noise = np.random.default_rng(int(freq)).standard_normal(t.size)
    return (0.15 * voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.003 * noise).astype(np.float32)


def _rows(split: str, speakers: list[str], sources: list[str], per_speaker: int, start: int = 0) -> list[dict]:
    rows = []
    for k, (spk, src) in enumerate(zip(speakers, sources, strict=True)):
        for j in range(per_speaker):
            n = start + k * per_speaker + j
            audio = _clip(150 + 40 * n, 0.6 + 0.1 * j)
            rows.append(
                {
                    "audio": audio,
                    "sampling_rate": SR,
                    "text": f"{split} sentence number {n}.",
                    "speaker_id": spk,
                    "voice": f"{src}:fake {spk}" + CONDITION_OF.get(spk, ""),
                    "duration": audio.size / SR,
                    "source": src,
                }
            )
    return rows


def _dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset(bc.rows_to_table(rows)).cast(bc.base_features())


def _fake_corpus(path: Path) -> Path:
    """A build_corpus.py folder: 3 train speakers (piper, kokoro, festival), 1 validation speaker, a test split."""
    from datasets import DatasetDict

    dsd = DatasetDict(
        {
            "train": _dataset(
                _rows("train", ["train00000", "train00001", "train00002"], ["piper", "kokoro", "festival"], 2)
            ),
            "validation": _dataset(_rows("validation", ["val00000"], ["piper"], 2)),
            "test": _dataset(_rows("test", ["stock_en-us"], ["espeak"], 2)),
        }
    )
    dsd.save_to_disk(str(path))
    mix = {"mix_arg": "piper=0.4,kokoro=0.3,festival=0.3", "conditions_arg": "noise=0.5", "pseudo_prob": 0.9}
    (path / "corpus_summary.json").write_text(json.dumps({"info": {"mix": mix}, "args": {"seed": 3, "out": "x"}}))
    return path


@pytest.fixture
def pack(tmp_path):
    info = natural_pack.export(_fake_corpus(tmp_path / "corpus"), tmp_path / "natural-test", quality_rows=2)
    return tmp_path / "natural-test", info


# --------------------------------------------------------------------------------------------------------------
# export / load


def test_export_load_round_trip(pack, tmp_path):
    pack_dir, info = pack
    assert sorted(p.name for p in pack_dir.iterdir()) == ["pack_info.json", "train.parquet", "validation.parquet"]
    assert json.loads((pack_dir / "pack_info.json").read_text()) == info
    train = info["splits"]["train"]
    assert (train["utterances"], train["speakers"], info["splits"]["validation"]["utterances"]) == (6, 3, 2)
    assert {src: v["utterances"] for src, v in train["per_source"].items()} == {"festival": 2, "kokoro": 2, "piper": 2}
    assert info["mix"] == "piper=0.4,kokoro=0.3,festival=0.3" and info["conditions"] == "noise=0.5"
    assert info["sampling_rate"] == SR and info["codec"]["compression_level"] == natural_pack.DEFAULT_COMPRESSION
    assert info["total_bytes"] == sum((pack_dir / f"{s}.parquet").stat().st_size for s in ("train", "validation"))
    assert 0 < info["codec"]["bytes_per_second"] < 8000  # ~29 kbit/s, far below 16-bit PCM's 32 kB/s
    assert 0 <= info["codec"]["mean_abs_log_mel_error"] < 0.6 and info["codec"]["log_mel_error_rows"] == 2
    assert "numpy" in info["builder"] and info["corpus_args"] == {"seed": 3}

    originals = _rows("train", ["train00000", "train00001", "train00002"], ["piper", "kokoro", "festival"], 2)
    rows = natural_pack.load(pack_dir, "train")
    assert [r["text"] for r in rows] == [r["text"] for r in originals]
    for got, want in zip(rows, originals, strict=True):
        assert set(got) == {"audio", "sampling_rate", "text", "speaker_id", "voice", "duration", "source"}
        assert (got["speaker_id"], got["voice"], got["source"], got["sampling_rate"]) == (
            want["speaker_id"], want["voice"], want["source"], SR,
        )  # fmt: skip
        assert got["audio"].dtype == np.float32 and got["audio"].shape == want["audio"].shape
        assert got["duration"] == pytest.approx(want["duration"], rel=1e-6)
        assert np.corrcoef(got["audio"], want["audio"])[0, 1] > 0.95  # lossy, but the same signal
    assert len(natural_pack.load(pack_dir, "validation")) == 2
    # a pack folder whose parents do not exist yet (data_packs/ on a fresh checkout)
    nested = natural_pack.export(tmp_path / "corpus", tmp_path / "a" / "b" / "natural-test", quality_rows=0)
    assert nested["splits"]["train"]["per_source"] == info["splits"]["train"]["per_source"]
    assert nested["codec"]["mean_abs_log_mel_error"] is None
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["natural-test"]  # no temporary left


def test_opus_codec_keeps_length_and_refuses_bad_input():
    audio = _clip(220, 1.237)
    blob = natural_pack.encode_opus(audio, SR)
    decoded, sr = natural_pack.decode_opus(blob, audio.size)
    assert sr == SR and decoded.shape == audio.shape
    assert natural_pack.log_mel_distance(audio, decoded, SR) < 0.6
    with pytest.raises(ValueError, match="16000"):
        natural_pack.encode_opus(audio, 22050)
    with pytest.raises(ValueError, match="compression_level"):
        natural_pack.encode_opus(audio, SR, 1.5)
    with pytest.raises(ValueError, match="1-D"):
        natural_pack.encode_opus(np.zeros((2, 100), np.float32), SR)


def test_bad_pack_dirs_give_clear_errors(pack, tmp_path):
    pack_dir, _ = pack
    with pytest.raises(ValueError, match="does not exist"):
        natural_pack.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no pack_info.json"):
        natural_pack.read_info(tmp_path / "empty")
    with pytest.raises(ValueError, match="no 'test' split"):
        natural_pack.load(pack_dir, "test")
    with pytest.raises(ValueError, match="not a build_corpus.py output"):
        natural_pack.export(tmp_path / "empty", tmp_path / "p2")
    broken = tmp_path / "broken"
    shutil.copytree(pack_dir, broken)
    (broken / "validation.parquet").unlink()
    with pytest.raises(ValueError, match="validation.parquet is missing"):
        natural_pack.read_info(broken)
    info = json.loads((pack_dir / "pack_info.json").read_text())
    (broken / "pack_info.json").write_text(json.dumps({**info, "format_version": 99}))
    with pytest.raises(ValueError, match="format 99"):
        natural_pack.read_info(broken)


# --------------------------------------------------------------------------------------------------------------
# build_corpus.py --add-pack


def _espeak_corpus(test_text: str):
    from datasets import DatasetDict

    train = _rows("train", ["train00000", "train00001"], ["espeak", "espeak"], 2, start=100)
    test = _rows("test", ["stock_en-us"], ["espeak"], 1)
    test[0]["text"] = test_text
    return DatasetDict(
        {
            "train": _dataset(train),
            "validation": _dataset(_rows("validation", ["val00000"], ["espeak"], 2, start=200)),
            "test": _dataset(test),
        }
    )


def test_merge_into_prefixes_counts_and_drops_held_out_sentences(pack, tmp_path):
    pack_dir, _ = pack
    dsd = _espeak_corpus(test_text="train sentence number 3.")  # a pack train sentence: must not be trained on
    info = {"mix": {"speakers_per_source": {"train": {"espeak": 2}}, "utterances_per_source": {"espeak": 6}}}
    merged, out = natural_pack.merge_into(dsd, info, [str(pack_dir)], SR, str(tmp_path))
    assert merged["train"].features == bc.base_features() == merged["validation"].features
    assert len(merged["train"]) == 4 + 5 and len(merged["validation"]) == 2 + 2 and len(merged["test"]) == 1
    pack_rows = [r for r in merged["train"] if r["source"] != "espeak"]
    assert {r["speaker_id"] for r in pack_rows} == {"natural-test:train00000", "natural-test:train00001",
                                                    "natural-test:train00002"}  # fmt: skip
    assert "train sentence number 3." not in {r["text"] for r in pack_rows}
    assert {r["speaker_id"] for r in merged["train"] if r["source"] == "espeak"} == {"train00000", "train00001"}
    entry = out["pack"][0]
    assert entry["prefix"] == "natural-test:" and entry["dropped_held_out_sentences"] == 1
    assert entry["splits"]["train"]["utterances"] == 5 and entry["splits"]["validation"]["speakers"] == 1
    assert out["mix"]["utterances_per_source"] == {"espeak": 6, "piper": 4, "kokoro": 1, "festival": 2}
    assert out["mix"]["speakers_per_source"]["train"] == {"espeak": 2, "festival": 1, "kokoro": 1, "piper": 1}
    with pytest.raises(ValueError, match="already in the corpus"):
        natural_pack.merge_into(merged, out, [str(pack_dir)], SR, str(tmp_path))


def _save_corpus(path: Path, train: list[dict], validation: list[dict]) -> Path:
    from datasets import DatasetDict

    DatasetDict({"train": _dataset(train), "validation": _dataset(validation)}).save_to_disk(str(path))
    return path


def _export_pack(tmp_path: Path, name: str, train: list[dict], validation: list[dict]) -> Path:
    natural_pack.export(_save_corpus(tmp_path / f"{name}-corpus", train, validation), tmp_path / name, quality_rows=0)
    return tmp_path / name


def test_merge_into_trains_on_no_pack_validation_or_reserved_sentence(pack, tmp_path):
    """A pack's validation sentences went into the merged validation split while the corpus trained on them (its
    train pool and other packs' train rows were filtered against its own test and validation splits alone)."""
    pack_dir, _ = pack  # validation sentences: "validation sentence number 0." and "... 1."
    dsd = _espeak_corpus("unrelated.")
    train = _rows("train", ["train00000", "train00001"], ["espeak", "espeak"], 2, start=100)
    train[1]["text"] = "validation sentence number 0."  # a hub or folder corpus's train row
    dsd["train"] = _dataset(train)
    other_train = _rows("train", ["train00000"], ["piper"], 3, start=50)
    other_train[2]["text"] = "validation sentence number 1."  # another pack trains on this pack's validation
    other = _export_pack(tmp_path, "natural-other", other_train, _rows("validation", ["val00000"], ["piper"], 1, 60))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()  # two merges: each writes its rows to its own folder
    merged, out = natural_pack.merge_into(dsd, {}, [str(pack_dir), str(other)], SR, str(tmp_path / "a"))
    train_texts = set(merged["train"]["text"])
    assert "validation sentence number 0." not in train_texts and "validation sentence number 1." not in train_texts
    assert out["train_rows_dropped_for_pack_validation"] == 1 and len(merged["train"]) == 3 + 6 + 2
    assert [e["dropped_held_out_sentences"] for e in out["pack"]] == [0, 1]
    reserved = {"train sentence number 4.", "validation sentence number 60."}  # an evaluation set's sentences
    merged, out = natural_pack.merge_into(
        dsd, {}, [str(pack_dir), str(other)], SR, str(tmp_path / "b"), reserved=reserved
    )
    train_texts = set(merged["train"]["text"])
    assert "train sentence number 4." not in train_texts and "train sentence number 5." in train_texts
    assert [e["dropped_held_out_sentences"] for e in out["pack"]] == [1, 1] and len(merged["train"]) == 3 + 5 + 2
    assert "validation sentence number 60." in set(merged["validation"]["text"])  # validation keeps its rows


@pytest.mark.parametrize(
    ("speaker", "source", "voice", "rule"),
    [
        ("stock_en-us+m3", "recorded", "en-us+m3", "stock espeak-ng voices"),
        ("train00000", "flite", "flite slt", "flite voices"),
        ("train00000", "festival", "festival:cmu_us_kal_com_hts | level peak_db=-20", "festival kal and slt"),
    ],
)
def test_evaluation_only_voices_never_enter_a_pack_or_a_corpus_s_train_split(tmp_path, speaker, source, voice, rule):
    """natural_pack.py export of a corpus whose train split held eval_corpus's stock voices (a --from-hub-dataset
    conversion) made a pack of them, and --add-pack trained on it."""
    rows = _rows("train", ["train00001", speaker], ["piper", source], 1)
    rows[1]["voice"] = voice
    corpus = _save_corpus(tmp_path / "corpus", rows, _rows("validation", ["v"], ["piper"], 1))
    with pytest.raises(SystemExit, match=f"1 rows are evaluation-only voices.*{rule}.*: speakers {re.escape(speaker)}"):
        natural_pack.main(["export", str(corpus), str(tmp_path / "p")])
    assert not (tmp_path / "p").exists()
    # a pack made before this check: added to a corpus, it is refused before any synthesis or merge
    bad = _export_pack(tmp_path, "natural-old", rows[:1], _rows("validation", ["v"], ["piper"], 1))
    table = pq.read_table(bad / "train.parquet")
    for column, value in (("speaker_id", speaker), ("source", source), ("voice", voice)):
        table = table.set_column(table.column_names.index(column), column, pa.array([value], pa.string()))
    pq.write_table(table, bad / "train.parquet")
    with pytest.raises(ValueError, match=f"pack {re.escape(str(bad))} train split: 1 rows are evaluation-only"):
        natural_pack.merge_into(_espeak_corpus("unrelated."), {}, [str(bad)], SR, str(tmp_path))
    with pytest.raises(SystemExit, match=f"speakers {re.escape(speaker)}"):
        bc.main(["--out", str(tmp_path / "c"), "--add-pack", str(bad), "--num-train-speakers", "1"])
    assert not (tmp_path / "c").exists()


def test_merge_into_resamples_to_the_corpus_rate(pack, tmp_path):
    pack_dir, _ = pack
    merged, _ = natural_pack.merge_into(_espeak_corpus("unrelated."), {}, [str(pack_dir)], 24000, str(tmp_path))
    row = next(r for r in merged["validation"] if r["speaker_id"].startswith("natural-test:"))
    assert row["sampling_rate"] == 24000 and len(row["audio"]) == pytest.approx(row["duration"] * 24000, abs=1)
    assert row["duration"] == pytest.approx(0.6, abs=1e-3)


def test_conditions_in_reads_the_voice_column():
    from corpus.natural import conditions_in, parse_condition_names

    voice = "piper:joe | length_scale=1.1 | pseudo pitch=1.1 eq=peak@500:+1 | room dims=[4, 5, 3] | phone mulaw=True"
    assert conditions_in(voice) == {"room", "phone"}
    assert conditions_in("espeak:en-us+m3 | level peak_db=-20") == {"level"}
    assert conditions_in("kokoro jf_alpha*0.5+jm_kumo*0.5 speed=1.0") == set()
    assert parse_condition_names(" room, noise ", "--x") == ["room", "noise"]
    with pytest.raises(ValueError, match=r"unknown condition\(s\) \['rooms'\]; choose among room, noise"):
        parse_condition_names("rooms", "--x")


def test_merge_into_leaves_out_pack_rows_by_condition(pack, tmp_path):
    pack_dir, _ = pack

    def merged_speakers(drop):
        merged, out = natural_pack.merge_into(
            _espeak_corpus("unrelated."), {}, [str(pack_dir)], SR, str(tmp_path), drop_conditions=drop
        )
        pack_rows = [r["speaker_id"] for r in merged["train"] if r["source"] != "espeak"]
        espeak_rows = [r["speaker_id"] for r in merged["train"] if r["source"] == "espeak"]
        return sorted(set(pack_rows)), len(espeak_rows), out["pack"][0]["dropped_conditions"]

    kept, espeak, dropped = merged_speakers(["room"])
    assert kept == ["natural-test:train00000", "natural-test:train00002"]  # the kokoro speaker was in a room
    assert espeak == 4 and dropped == {"conditions": ["room"], "rows": 2}  # the corpus's own rows stay
    kept, _, dropped = merged_speakers(["room", "noise", "phone"])
    assert kept == ["natural-test:train00000"] and dropped["rows"] == 4
    assert merged_speakers([])[0] == [f"natural-test:train0000{k}" for k in range(3)]
    with pytest.raises(ValueError, match="unknown conditions"):
        merged_speakers(["reverb"])


def test_filter_writes_a_pack_without_the_conditioned_rows(pack, tmp_path):
    pack_dir, source_info = pack
    info = natural_pack.main(["filter", str(pack_dir), str(tmp_path / "natural-clean"), "--drop-conditions", "room"])
    assert info["name"] == "natural-clean" and info["filtered_from"] == "natural-test"
    assert info["dropped_conditions"] == ["room"] and "--drop-conditions room" in info["filter_command"]
    assert natural_pack.read_info(tmp_path / "natural-clean") == info
    rows = natural_pack.load(tmp_path / "natural-clean", "train")
    assert sorted({r["speaker_id"] for r in rows}) == ["train00000", "train00002"]  # the room speaker is gone
    assert info["splits"]["train"]["utterances"] == 4 and set(info["splits"]["train"]["per_source"]) == {
        "piper",
        "festival",
    }
    kept = {r["text"]: r["audio"] for r in natural_pack.load(pack_dir, "train")}
    for row in rows:  # the audio is the source pack's, bytes copied, not re-encoded
        np.testing.assert_array_equal(row["audio"], kept[row["text"]])
    assert info["splits"]["validation"] == source_info["splits"]["validation"] | {
        "file_bytes": info["splits"]["validation"]["file_bytes"]
    }
    with pytest.raises(SystemExit, match="exists"):
        natural_pack.main(["filter", str(pack_dir), str(tmp_path / "natural-clean"), "--drop-conditions", "room"])
    with pytest.raises(SystemExit, match="unknown condition"):
        natural_pack.main(["filter", str(pack_dir), str(tmp_path / "x"), "--drop-conditions", "reverb"])
    with pytest.raises(SystemExit, match="another folder"):
        natural_pack.main(["filter", str(pack_dir), str(pack_dir), "--drop-conditions", "room"])


def test_build_corpus_pack_drop_conditions_needs_a_pack_and_known_names(pack, tmp_path):
    with pytest.raises(SystemExit, match="filters the rows of --add-pack"):
        bc.main(["--out", str(tmp_path / "c"), "--pack-drop-conditions", "room", "--num-train-speakers", "1"])
    with pytest.raises(SystemExit, match="unknown condition"):
        bc.main(["--out", str(tmp_path / "c"), "--add-pack", str(pack[0]), "--pack-drop-conditions", "echo"])
    assert not (tmp_path / "c").exists()


def test_build_corpus_refuses_a_bad_pack_before_synthesis(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        bc.main(
            ["--out", str(tmp_path / "c"), "--add-pack", str(tmp_path / "missing-pack"), "--num-train-speakers", "1"]
        )
    assert not (tmp_path / "c").exists()


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")
def test_build_corpus_add_pack_end_to_end(pack, tmp_path):
    from test_corpus import _tiny_fortunes

    pack_dir, _ = pack
    out = tmp_path / "corpus"
    summary = bc.main(
        ["--out", str(out), "--num-train-speakers", "2", "--num-val-speakers", "1", "--utts-per-speaker", "2",
         "--num-test-voices", "1", "--sampling-rate", "16000", "--fortunes-dir", str(_tiny_fortunes(tmp_path)),
         "--num-proc", "1", "--add-pack", str(pack_dir)]
    )  # fmt: skip
    from datasets import load_from_disk

    dsd = load_from_disk(str(out))
    sources = sorted(set(dsd["train"]["source"]))
    assert sources == ["espeak", "festival", "kokoro", "piper"] and len(dsd["train"]) == 4 + 6
    assert sum(s.startswith("natural-test:") for s in dsd["train"]["speaker_id"]) == 6
    saved = json.loads((out / "corpus_summary.json").read_text())["info"]
    assert saved["pack"][0]["splits"]["train"]["utterances"] == 6
    assert saved["mix"]["utterances_per_source"]["piper"] == 4  # 2 train + 2 validation rows of the pack
    assert summary["splits"]["train"]["speakers"] == 2 + 3


# --------------------------------------------------------------------------------------------------------------
# device bundle tools


def _fake_wheel(path: Path) -> Path:
    files = {
        "pkg/__init__.py": b"x = 1\n",
        "pkg/models/keep/__init__.py": b"",
        "pkg/models/drop/__init__.py": b"big = 2\n",
        "pkg/models/__init__.py": b"",
    }
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([name, f"sha256={digest}", len(data)])
    writer.writerow(["pkg-1.0.dist-info/RECORD", "", ""])
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("pkg-1.0.dist-info/RECORD", record.getvalue())
    return path


def test_slim_wheel_drops_files_and_rewrites_record(tmp_path):
    wheel = _fake_wheel(tmp_path / "pkg-1.0-py3-none-any.whl")
    out = slim_wheel(wheel, tmp_path / "out", ["pkg/models/*/*"], ["pkg/models/keep/*"])
    assert out["removed_files"] == 1 and out["bytes_before"] == wheel.stat().st_size
    with zipfile.ZipFile(tmp_path / "out" / wheel.name) as z:
        names = set(z.namelist())
        record = [r[0] for r in csv.reader(io.StringIO(z.read("pkg-1.0.dist-info/RECORD").decode())) if r]
        note = json.loads(z.read("pkg-1.0.dist-info/SLIM.json"))
    assert "pkg/models/drop/__init__.py" not in names and "pkg/models/keep/__init__.py" in names
    assert set(record) == names and record[-1] == "pkg-1.0.dist-info/RECORD"
    assert note["removed_files"] == 1
    with pytest.raises(ValueError, match="match nothing"):
        slim_wheel(wheel, tmp_path / "out2", ["nothing/*"], [])


def test_device_payload_size_counts_and_enforces_the_limit(tmp_path):
    script = EXAMPLES / "scripts" / "device_payload_size.sh"
    (tmp_path / "carried").mkdir()
    (tmp_path / "carried" / "blob").write_bytes(b"\0" * 3 * 2**20)
    ok = subprocess.run(["bash", str(script), str(tmp_path / "carried")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert f"3.00 MiB  carried {tmp_path / 'carried'}" in ok.stdout and "total of 64 MiB" in ok.stdout
    env = {**os.environ, "LIMIT_MIB": "1"}
    big = subprocess.run(["bash", str(script), str(tmp_path / "carried")], capture_output=True, text=True, env=env)
    assert big.returncode == 1 and "TOO BIG" in big.stderr
    gone = subprocess.run(["bash", str(script), str(tmp_path / "nope")], capture_output=True, text=True)
    assert gone.returncode == 2 and "does not exist" in gone.stderr


def test_train_on_gpu_refuses_natural_sources_at_once(tmp_path):
    env = {**os.environ, "MIX": "piper=0.5,espeak=0.5", "SKIP_WHEELS": "1"}
    r = subprocess.run(
        ["bash", str(EXAMPLES / "scripts" / "train_on_gpu.sh"), str(tmp_path / "out"), "1"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 1 and "PACK=data_packs/natural-v1" in r.stderr and "64 MiB" in r.stderr
    assert not (tmp_path / "out").exists()


def test_build_passes_the_voice_seed_and_sentence_skip_to_build_corpus(tmp_path, monkeypatch):
    """A second pack: other speakers (--voice-seed) over the same sentence order, past the first pack's sentences."""
    calls = []

    def fake_main(argv):
        calls.append(argv)
        _fake_corpus(Path(argv[argv.index("--out") + 1]))

    monkeypatch.setattr(bc, "main", fake_main)
    common = dict(num_train_speakers=3, num_val_speakers=1, utts_per_speaker=2, skip_sentences=2220)
    info = natural_pack.build(tmp_path / "second", voice_seed=1, **common)
    argv = calls[0]
    assert argv[argv.index("--voice-seed") + 1] == "1" and argv[argv.index("--seed") + 1] == "0"
    assert argv[argv.index("--skip-sentences") + 1] == "2220"
    assert "--voice-seed 1" in info["build_command"] and "--voice-seed 1" in info["corpus_command"]
    natural_pack.build(tmp_path / "first", **common)
    assert "--voice-seed" not in calls[1]  # unset: build_corpus.py's default (the --seed)
    with pytest.raises(ValueError, match="names espeak"):
        natural_pack.build(tmp_path / "x", mix="espeak=1", **common)

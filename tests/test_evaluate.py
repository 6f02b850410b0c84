"""Zero-shot evaluation (examples/evaluate.py, examples/eval_lib/): WER and hit counting, the case builder, the table,
and the whole evaluation loop with a tiny random pipeline and stub ASR / speaker models (no weights needed).

Tests marked `slow` run the real Whisper-base and Resemblyzer; they are skipped unless the `eval` extra is installed
(and espeak-ng for the audio)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import SR, get_dummy_pipeline, tone, write_wav

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
RESEARCH = EXAMPLES / "research"  # the research probes
sys.path.insert(0, str(EXAMPLES))

# loaded under its own name: `import evaluate` could pick up Hugging Face's `evaluate` package
_spec = importlib.util.spec_from_file_location("ditar_evaluate_cli", EXAMPLES / "evaluate.py")
ev = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ev)
from eval_lib import asr as asr_mod  # noqa: E402
from eval_lib.cases import Case, load_cases, make_cases_from_dataset, select_pairs, write_cases  # noqa: E402
from eval_lib.metrics import WordStats, aggregate_word_stats, cosine, normalize_text, word_stats  # noqa: E402
from eval_lib.report import render_markdown, render_table  # noqa: E402
from eval_lib.runner import run_evaluation  # noqa: E402
from eval_lib.systems import GroundTruthSystem, ResynthesisSystem, SystemOutput, case_seed, read_audio  # noqa: E402

# ----------------------------------------------------------------------------------------------------------------------
# stubs behind the ASR / speaker interfaces


class StubASR:
    """Says `text` for every clip and remembers what it was given."""

    def __init__(self, text: str = "hello there"):
        self.text = text
        self.calls: list[tuple[int, int]] = []

    def transcribe(self, audio, sampling_rate):
        self.calls.append((len(audio), sampling_rate))
        return self.text

    def describe(self):
        return {"engine": "stub asr"}


class StubSpeaker:
    """A 3-dim "embedding" from simple signal statistics; None for empty clips."""

    def embed(self, audio, sampling_rate):
        audio = np.asarray(audio, dtype=np.float64)
        if audio.size == 0:
            return None
        return np.array([1.0, float(np.sqrt(np.mean(audio**2))), float(np.mean(np.abs(np.diff(audio))))])

    def describe(self):
        return {"engine": "stub speaker"}


# ----------------------------------------------------------------------------------------------------------------------
# metrics


def test_normalize_text_lowercases_and_strips_punctuation():
    assert normalize_text("Hello, World!  It's  well-known.") == "hello world its well known"
    assert normalize_text("Don\u2019t STOP") == normalize_text("don't stop") == "dont stop"
    assert normalize_text(" ... ") == ""


def test_word_stats_counts_hits_and_errors():
    s = word_stats("Hello big world.", "hello, word")
    assert (s.ref_words, s.hits, s.substitutions, s.deletions, s.insertions) == (3, 1, 1, 1, 0)
    assert s.wer == pytest.approx(2 / 3)
    assert word_stats("Hello there.", "HELLO THERE").wer == 0.0
    empty = word_stats("two words", "")
    assert (empty.deletions, empty.hits, empty.wer) == (2, 0, 1.0)
    assert word_stats("", "anything").wer is None


def test_aggregate_caps_hallucinations_per_utterance():
    good = word_stats("the cat sat on the mat", "the cat sat on a mat")  # 1 error / 6
    babble = word_stats("go now", "thank you thank you thank you for watching")  # 2 subs + 6 ins = 8 errors / 2
    agg = aggregate_word_stats([good, babble])
    assert agg["ref_words"] == 8 and agg["errors"] == 9
    assert agg["wer"] == pytest.approx(9 / 8)
    assert agg["wer_capped"] == pytest.approx((1 + 2) / 8)
    assert agg["recognised"] == pytest.approx(5 / 8)
    assert agg["mean_utterance_wer"] == pytest.approx((1 / 6 + 8 / 2) / 2)
    assert aggregate_word_stats([])["wer"] is None
    assert WordStats(2, 0, 0, 0, 9).capped_errors == 2


def test_cosine():
    assert cosine([1, 0], [1, 0]) == pytest.approx(1.0)
    assert cosine([1, 0], [0, 2]) == pytest.approx(0.0)
    assert np.isnan(cosine([0, 0], [1, 0]))


# ----------------------------------------------------------------------------------------------------------------------
# cases


def _tiny_corpus(root: Path) -> Path:
    """A DatasetDict on disk shaped like build_corpus.py's: 3 test speakers, one of them saying one sentence twice."""
    from datasets import Dataset, DatasetDict

    rows = []
    sentences = {
        "stock_a": ["Apples are red.", "The river is long.", "Stones are grey.", "Clouds move fast."],
        "stock_b": ["A garden grows.", "Windows open wide.", "Letters arrive late."],
        "stock_c": ["Same words here.", "Same words here.", "Other words there."],
    }
    for k, (speaker, texts) in enumerate(sentences.items()):
        for j, text in enumerate(texts):
            audio = tone(0.3 + 0.05 * j, sr=16000, freq=150.0 + 40 * k + 5 * j)
            rows.append(
                {
                    "audio": audio.tolist(),
                    "sampling_rate": 16000,
                    "text": text,
                    "speaker_id": speaker,
                    "voice": speaker.removeprefix("stock_"),
                    "duration": len(audio) / 16000,
                }
            )
    test = Dataset.from_list(rows)
    train = Dataset.from_list(rows[:2])
    path = root / "corpus"
    DatasetDict({"train": train, "validation": train, "test": test}).save_to_disk(str(path))
    return path


def test_make_cases_same_speaker_different_sentence(tmp_path):
    import soundfile as sf
    from datasets import load_from_disk

    corpus = _tiny_corpus(tmp_path)
    out = tmp_path / "cases" / "cases.jsonl"
    cases = make_cases_from_dataset(corpus, "test", 4, out, seed=1)
    assert len(cases) == 4
    test = load_from_disk(str(corpus))["test"]
    used = []
    for case in cases:
        src = case.extra["source"]
        prompt, target = test[src["prompt_row"]], test[src["target_row"]]
        assert prompt["speaker_id"] == target["speaker_id"] == case.extra["speaker_id"]
        assert prompt["text"] == case.prompt_text and target["text"] == case.target_text
        assert case.prompt_text != case.target_text
        used += [src["prompt_row"], src["target_row"]]
        audio, rate = sf.read(case.target_audio, dtype="float32")
        assert rate == 16000
        np.testing.assert_allclose(audio, np.asarray(target["audio"], dtype=np.float32), atol=1 / 32768 + 1e-6)
    assert len(used) == len(set(used)), "an utterance was used twice"
    assert len({c.extra["speaker_id"] for c in cases}) == 3  # spread over all speakers first
    # the JSONL stores paths relative to itself and reloads to the same cases
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["prompt_audio"].startswith("wavs/") and lines[0]["voice"]
    reloaded = load_cases(out)
    assert [(c.id, c.prompt_audio, c.target_audio, c.target_text) for c in reloaded] == [
        (c.id, c.prompt_audio, c.target_audio, c.target_text) for c in cases
    ]
    # the same seed gives the same cases; speaker stock_c cannot give a second pair (its other sentence is the same)
    again = make_cases_from_dataset(corpus, "test", 10, tmp_path / "again.jsonl", seed=1)
    assert [c.target_text for c in again[:4]] == [c.target_text for c in cases]
    assert len(again) == 4  # a: 2 pairs, b: 1 pair, c: 1 pair


def test_select_pairs_skips_speakers_without_a_second_sentence():
    pairs = select_pairs(["a", "b", "b"], ["x", "y", "z"], [1.0, 1.0, 1.0], 5)
    assert pairs in ([(1, 2)], [(2, 1)])
    assert select_pairs(["a", "a"], ["x", "y"], [1.0, 3.0], 1, min_prompt_seconds=2.0) == [(1, 0)]


def test_case_builder_cli(tmp_path):
    corpus = _tiny_corpus(tmp_path)
    info = ev.main(
        ["--make-cases-from", str(corpus), "--split", "test", "--num-cases", "2", "--out", str(tmp_path / "c")]
    )
    assert info["num_cases"] == 2 and Path(info["cases_file"]) == tmp_path / "c" / "cases.jsonl"
    assert len(list((tmp_path / "c" / "wavs" / "cases").glob("*.wav"))) == 4
    # mistakes named in one line (tracebacks before, or an empty cases file and exit status 0)
    out = ["--out", str(tmp_path / "d")]
    import shutil

    from datasets import load_from_disk

    load_from_disk(str(corpus))["train"].save_to_disk(str(tmp_path / "one" / "train"))  # a split folder
    from datasets import DatasetDict

    DatasetDict({"train": load_from_disk(str(corpus))["train"]}).save_to_disk(str(tmp_path / "folder-corpus"))
    with pytest.raises(SystemExit, match="has no split 'test' .*; choose one with --split"):  # a folder's corpus
        ev.main(["--make-cases-from", str(tmp_path / "folder-corpus"), "--split", "test", *out])
    shutil.rmtree(tmp_path / "folder-corpus")
    with pytest.raises(SystemExit, match="is not a corpus folder"):
        ev.main(["--make-cases-from", str(tmp_path / "nowhere"), *out])
    with pytest.raises(SystemExit, match="is one split of a corpus: give the folder"):
        ev.main(["--make-cases-from", str(tmp_path / "one" / "train"), *out])
    with pytest.raises(SystemExit, match="no case could be made from the test split"):
        ev.main(["--make-cases-from", str(corpus), "--split", "test", "--min-prompt-seconds", "100", *out])


def test_cases_from_the_train_split_need_to_be_asked_for(tmp_path):
    """--split train built cases of trained voices and sentences without a word: they measure memorisation."""
    corpus = _tiny_corpus(tmp_path)
    build = ["--make-cases-from", str(corpus), "--split", "train", "--num-cases", "1"]
    with pytest.raises(SystemExit, match="--split train: .*memorisation, not zero-shot quality.*--allow-train-split"):
        ev.main([*build, "--out", str(tmp_path / "refused")])
    assert not (tmp_path / "refused").exists()
    info = ev.main([*build, "--allow-train-split", "--out", str(tmp_path / "asked")])
    assert info["num_cases"] == 1 and info["speakers"] == ["stock_a"]


def test_case_files_built_side_by_side_keep_their_own_audio_and_none_is_overwritten(tmp_path):
    """Two case files in one folder shared wavs/ with names from split, number and speaker only: seeds 1 and 2 both
    make test-0000-stock_b, so b's build overwrote a's audio. And a second build to one --out replaced it silently."""
    import soundfile as sf
    from datasets import load_from_disk

    corpus = _tiny_corpus(tmp_path)
    test = load_from_disk(str(corpus))["test"]
    build = ["--make-cases-from", str(corpus), "--split", "test", "--num-cases", "2"]
    ev.main([*build, "--seed", "1", "--out", str(tmp_path / "cases" / "a.jsonl")])
    ev.main([*build, "--seed", "2", "--out", str(tmp_path / "cases" / "b.jsonl")])
    a = load_cases(tmp_path / "cases" / "a.jsonl")
    assert a[0].id == load_cases(tmp_path / "cases" / "b.jsonl")[0].id == "test-0000-stock_b"
    for case in a:
        audio, _ = sf.read(case.target_audio, dtype="float32")
        expected = np.asarray(test[case.extra["source"]["target_row"]]["audio"], dtype=np.float32)
        np.testing.assert_allclose(audio, expected, atol=1 / 32768 + 1e-6)
    before = (tmp_path / "cases" / "a.jsonl").read_text()
    with pytest.raises(SystemExit, match="a.jsonl already exists; give another --out, or delete it"):
        ev.main([*build, "--seed", "3", "--out", str(tmp_path / "cases" / "a.jsonl")])
    assert (tmp_path / "cases" / "a.jsonl").read_text() == before


def test_load_cases_refuses_a_target_text_without_words(tmp_path):
    """ "🙂 🙂" has no reference word, so every recognised word was an insertion against nothing: one such case
    beside a perfect one gave a corpus WER of 100%."""
    write_wav(tmp_path / "p.wav", tone(0.1))
    path = tmp_path / "cases.jsonl"
    row = {"id": "smiles", "prompt_audio": "p.wav", "prompt_text": "a b", "target_text": "\U0001f642 \U0001f642"}
    path.write_text(json.dumps(row))
    with pytest.raises(ValueError, match=":1: case 'smiles' has a target_text with no words"):
        load_cases(path)
    path.write_text(json.dumps({**row, "target_text": "3 \U0001f642"}))  # a digit is a word
    assert load_cases(path)[0].target_text == "3 \U0001f642"


def test_load_cases_says_what_is_wrong_with_a_number_id_and_reads_a_byte_order_mark(tmp_path):
    write_wav(tmp_path / "p.wav", tone(0.1))
    path = tmp_path / "cases.jsonl"
    row = {"id": 1, "prompt_audio": "p.wav", "prompt_text": "a b", "target_text": "c d"}
    path.write_text(json.dumps(row))
    with pytest.raises(ValueError, match="field\\(s\\) \\['id'\\] must be JSON strings"):  # was "missing or empty"
        load_cases(path)
    path.write_text(json.dumps({**row, "id": "1"}), encoding="utf-8-sig")  # as Windows editors save it
    assert load_cases(path)[0].id == "1"


def test_load_cases_validates_and_allows_prompt_only_cases(tmp_path):
    write_wav(tmp_path / "p.wav", tone(0.1))
    path = tmp_path / "cases.jsonl"
    path.write_text(
        "# out-of-domain prompt: no ground truth\n"
        + json.dumps(
            {
                "id": "ood",
                "prompt_audio": "p.wav",
                "prompt_text": "a b",
                "target_text": "c d",
                "voice": "flite slt",
                "speaker_id": "slt",
            }
        )
        + "\n\n"
    )
    (case,) = load_cases(path)
    assert case.prompt_audio == str(tmp_path / "p.wav") and not case.has_ground_truth
    assert case.extra == {"speaker_id": "slt"}
    path.write_text(json.dumps({"id": "x", "prompt_audio": "p.wav", "target_text": "c"}) + "\n")
    with pytest.raises(ValueError, match="prompt_text"):
        load_cases(path)
    path.write_text(json.dumps({"id": "x", "prompt_audio": "missing.wav", "prompt_text": "a", "target_text": "c"}))
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_cases(path)
    # a misspelt known field was kept as a label, so its ground truth was silently unused
    row = {"id": "x", "prompt_audio": "p.wav", "prompt_text": "a", "target_text": "c", "target_audo": "p.wav"}
    path.write_text(json.dumps(row))
    with pytest.raises(ValueError, match="field 'target_audo' is not a case field; did you mean 'target_audio'"):
        load_cases(path)
    (tmp_path / "notes.txt").write_text("not audio")
    path.write_text(json.dumps({"id": "x", "prompt_audio": "notes.txt", "prompt_text": "a", "target_text": "c"}))
    with pytest.raises(ValueError, match=":1: prompt_audio .*notes.txt' is not audio soundfile can read"):
        load_cases(path)


def test_parse_rows():
    assert ev.parse_rows("model, gt") == ["gt", "model"]
    with pytest.raises(SystemExit):
        ev.parse_rows("gt,vocoder")


def test_case_seed_depends_on_seed_and_id_only():
    assert case_seed(0, "a") == case_seed(0, "a") != case_seed(1, "a") != case_seed(0, "b")


# ----------------------------------------------------------------------------------------------------------------------
# table


def _row(**overrides):
    row = {
        "key": "model",
        "name": "DiTAR",
        "cases": 3,
        "failed": 0,
        "wer": 1.25,
        "wer_capped": 0.9,
        "recognised": 0.1,
        "ref_words": 10,
        "hits": 1,
        "sim_prompt": 0.4567,
        "sim_prompt_n": 3,
        "sim_gt": None,
        "stop_rate": 2 / 3,
        "duration_ratio": 1.234,
        "mean_seconds": 2.5,
        "rtf": 0.5,
    }
    row.update(overrides)
    return row


def test_render_table():
    gt = _row(
        key="gt",
        name="ground truth",
        wer=0.2,
        wer_capped=0.2,
        recognised=0.8,
        hits=8,
        stop_rate=None,
        duration_ratio=1.0,
        rtf=None,
        sim_prompt_n=2,
    )
    table = render_table([gt, _row()])
    lines = table.splitlines()
    assert lines[0].startswith("| system | cases | WER | WER (capped) | words recognised | SIM (prompt)")
    assert lines[1].count("---") == 11
    assert lines[2] == ("| ground truth | 3 | 20.0% | 20.0% | 8/10 (80.0%) | 0.457 (n=2) | – | – | 1.00 | 2.50 s | – |")
    assert lines[3] == "| DiTAR | 3 | 125.0% | 90.0% | 1/10 (10.0%) | 0.457 | – | 66.7% | 1.23 | 2.50 s | 0.500 |"
    assert "(1 failed)" in render_table([_row(failed=1)])


# ----------------------------------------------------------------------------------------------------------------------
# the loop and the CLI, with a tiny random pipeline


def _cases(tmp_path) -> Path:
    """Two cases with ground truth (8 kHz, lengths a multiple of the hop) and one prompt-only case."""
    cases = []
    for i, text in enumerate(["hello there", "hello big world"]):
        prompt = write_wav(tmp_path / f"p{i}.wav", tone(0.04, freq=200.0 + 30 * i))
        target = write_wav(tmp_path / f"t{i}.wav", tone(0.064, freq=210.0 + 30 * i))
        cases.append(
            Case(
                id=f"c{i}",
                prompt_audio=prompt,
                prompt_text="the prompt",
                target_text=text,
                target_audio=target,
                voice="tone",
            )
        )
    cases.append(
        Case(
            id="ood",
            prompt_audio=write_wav(tmp_path / "p_ood.wav", tone(0.05, freq=300.0)),
            prompt_text="a real recording",
            target_text="hello there",
        )
    )
    return write_cases(cases, tmp_path / "cases.jsonl")


def test_run_evaluation_gt_and_resynth(tmp_path):
    pipe = get_dummy_pipeline()
    cases = load_cases(_cases(tmp_path))
    systems = [GroundTruthSystem(), ResynthesisSystem(pipe.processor.feature_extractor, pipe.vocoder)]
    asr = StubASR("hello there")
    results = run_evaluation(cases, systems, asr, StubSpeaker(), out_dir=tmp_path / "out", log=lambda s: None)
    gt, resynth = results["rows"]
    assert gt["cases"] == resynth["cases"] == 2  # the prompt-only case has no ground truth
    # "hello there" vs "hello there" (0/2) and vs "hello big world" (2/3): 2 errors / 5 words, 3 hits
    assert gt["wer"] == pytest.approx(0.4) and gt["hits"] == 3 and gt["recognised"] == pytest.approx(0.6)
    assert gt["duration_ratio"] == pytest.approx(1.0) and gt["rtf"] is None and gt["sim_gt"] is None
    assert gt["stop_rate"] is None
    # 512 samples = 32 hops at 8 kHz: log-mel -> Griffin-Lim gives back exactly 512 samples
    assert resynth["duration_ratio"] == pytest.approx(1.0) and resynth["rtf"] > 0
    assert -1 <= resynth["sim_gt"] <= 1
    assert (tmp_path / "out" / "wavs" / "resynth" / "c1.wav").is_file()
    assert asr.calls == [(512, SR)] * 4


def test_evaluate_cli_end_to_end_with_tiny_pipeline(tmp_path):
    pipe = get_dummy_pipeline()
    pipe.save_pretrained(tmp_path / "pipe")
    cases = _cases(tmp_path)
    out = tmp_path / "eval"
    argv = [
        "--cases",
        str(cases),
        "--pipeline",
        str(tmp_path / "pipe"),
        "--out",
        str(out),
        "--steps",
        "2",
        "--guidance-scale",
        "2",
        "--temperature",
        "0.5",
        "--seed",
        "3",
        "--label",
        "DiTAR tiny",
    ]
    results = ev.main(argv, asr=StubASR(), speaker_encoder=StubSpeaker())
    keys = [r["key"] for r in results["rows"]]
    assert keys == ["gt", "resynth", "model"]
    model = results["rows"][2]
    assert model["name"] == "DiTAR tiny" and model["cases"] == 3 and model["failed"] == 0
    assert model["stop_rate"] == 0.0  # the dummy stop head never fires
    assert model["rtf"] > 0 and model["duration_ratio"] > 0 and model["sim_prompt_n"] == 3
    assert model["settings"]["num_inference_steps"] == 2 and model["settings"]["seed"] == 3
    assert model["settings"]["matmul_dtype"] == "float32"  # what the model multiplied in, for the record
    saved = json.loads((out / "results.json").read_text())
    assert saved["meta"]["command"].startswith("python examples/evaluate.py --cases")
    assert saved["meta"]["settings"]["rows"] == "gt,resynth,model" and saved["meta"]["num_cases"] == 3
    assert saved["cases"][2]["rows"].keys() == {"model"}
    md = (out / "results.md").read_text()
    assert "| DiTAR tiny | 3 |" in md and "## Per case" in md
    assert sorted(p.name for p in (out / "wavs" / "model").iterdir()) == ["c0.wav", "c1.wav", "ood.wav"]
    # the same seed gives the same audio
    again = ev.main(
        [
            "--cases",
            str(cases),
            "--pipeline",
            str(tmp_path / "pipe"),
            "--out",
            str(tmp_path / "eval2"),
            "--steps",
            "2",
            "--guidance-scale",
            "2",
            "--temperature",
            "0.5",
            "--seed",
            "3",
            "--rows",
            "model",
        ],
        asr=StubASR(),
        speaker_encoder=StubSpeaker(),
    )
    import soundfile as sf

    a, _ = sf.read(out / "wavs" / "model" / "c1.wav")
    b, _ = sf.read(tmp_path / "eval2" / "wavs" / "model" / "c1.wav")
    np.testing.assert_array_equal(a, b)
    assert again["rows"][0]["key"] == "model"


def test_gt_rows_without_pipeline_use_the_feature_extractor(tmp_path):
    pipe = get_dummy_pipeline()
    pipe.processor.feature_extractor.save_pretrained(tmp_path / "fe")
    results = ev.main(
        [
            "--cases",
            str(_cases(tmp_path)),
            "--rows",
            "gt,resynth",
            "--feature-extractor",
            str(tmp_path / "fe"),
            "--out",
            str(tmp_path / "o"),
            "--no-per-case",
        ],
        asr=StubASR(),
        speaker_encoder=StubSpeaker(),
    )
    assert [r["key"] for r in results["rows"]] == ["gt", "resynth"]
    assert "Griffin-Lim" in results["rows"][1]["settings"]["source"]
    assert "## Per case" not in (tmp_path / "o" / "results.md").read_text()


def test_load_pipeline_from_a_training_output_folder(tmp_path):
    from eval_lib.systems import load_pipeline

    pipe = get_dummy_pipeline()
    pipe.model.save_pretrained(tmp_path / "final" / "model")
    pipe.processor.save_pretrained(tmp_path / "final" / "processor")
    loaded = load_pipeline(tmp_path / "final")
    assert loaded.sample_rate == SR and type(loaded.vocoder).__name__ == "GriffinLimVocoder"
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_pipeline(tmp_path)


def test_a_training_run_folder_or_checkpoint_given_as_pipeline_says_what_to_give(tmp_path):
    from eval_lib.systems import load_pipeline

    run = tmp_path / "run"
    (run / "checkpoints" / "step-20").mkdir(parents=True)
    (run / "checkpoints" / "step-20" / "model.safetensors").write_bytes(b"")
    (run / "train_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="training run folder without final/ yet; `python conversion/checkp"):
        load_pipeline(run)
    (run / "final").mkdir()
    with pytest.raises(FileNotFoundError, match=f"it is a training run folder; give its final model, {run / 'final'}"):
        load_pipeline(run)
    with pytest.raises(FileNotFoundError, match="training checkpoint; make a pipeline of it with `python conversion/"):
        load_pipeline(run / "checkpoints" / "step-20")
    vocoder_run = tmp_path / "vocoder-run"
    (vocoder_run / "vocoder").mkdir(parents=True)
    (vocoder_run / "train_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="vocoder-run is a vocoder training run \\(train_vocoder.py\\)"):
        load_pipeline(vocoder_run)


def test_case_ids_differing_only_in_unsafe_characters_get_their_own_audio(tmp_path):
    """ "me 1" and "me/1" (and "é1" and "ü1") were all written to one file, so results.json's "wav" fields of
    different cases pointed at the audio of the last one."""
    base = load_cases(_cases(tmp_path))[0]
    ids = ["me 1", "me/1", "\u00e91", "\u00fc1", "c-0.ok"]
    cases = [
        Case(id=i, prompt_audio=base.prompt_audio, prompt_text="p", target_text="t", target_audio=base.target_audio)
        for i in ids
    ]
    results = run_evaluation(
        cases, [GroundTruthSystem()], StubASR(), StubSpeaker(), out_dir=tmp_path / "o", log=lambda s: None
    )
    wavs = [case["rows"]["gt"]["wav"] for case in results["cases"]]
    assert len(set(wavs)) == len(ids) and all((tmp_path / "o" / wav).is_file() for wav in wavs)
    assert wavs[-1] == "wavs/gt/c-0.ok.wav"  # a file-safe id keeps its plain name


def test_a_rerun_into_the_same_out_moves_the_earlier_results_aside_first(tmp_path, capsys):
    """An interrupted re-run left the old results.json beside the new audio, describing audio no longer there."""

    class DiesMidway(StubASR):
        def transcribe(self, audio, sampling_rate):
            raise KeyboardInterrupt

    cases, out = _cases(tmp_path), tmp_path / "o"
    argv = ["--cases", str(cases), "--rows", "gt", "--out", str(out)]
    ev.main(argv, asr=StubASR(), speaker_encoder=StubSpeaker())
    first = (out / "results.json").read_text()
    with pytest.raises(KeyboardInterrupt):
        ev.main(argv, asr=DiesMidway(), speaker_encoder=StubSpeaker())
    assert not (out / "results.json").exists() and not (out / "results.md").exists()
    assert (out / "results.previous.json").read_text() == first and (out / "results.previous.md").is_file()
    assert "held results.json of an earlier run; moved it to results.previous.json" in capsys.readouterr().out


def test_targets_in_another_language_are_named_once_as_not_scored_by_english_whisper(tmp_path, capsys):
    prompt = write_wav(tmp_path / "p.wav", tone(0.05))
    texts = {
        "en": "She sells sea shells by the sea shore.",
        "fr": "Bonjour, je suis très content de vous voir aujourd'hui.",
        "ru": "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430?",
    }
    cases = [
        Case(id=k, prompt_audio=prompt, prompt_text="p", target_text=t, target_audio=prompt) for k, t in texts.items()
    ]
    path = write_cases(cases, tmp_path / "cases.jsonl")
    ev.main(
        ["--cases", str(path), "--rows", "gt", "--out", str(tmp_path / "o")],
        asr=StubASR(),
        speaker_encoder=StubSpeaker(),
    )
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].endswith("their WER is not meaningful: fr (French), ru (Cyrillic script)")


class BrokenSystem:
    """A system whose every case raises, as a model refusing its input would."""

    key, name = "model", "broken"

    def applies(self, case):
        return True

    def __call__(self, case):
        raise ValueError("prompt too short")

    def describe(self):
        return {}


def test_failed_case_counts_as_silence(tmp_path):
    cases = load_cases(_cases(tmp_path))[:1]
    results = run_evaluation(cases, [BrokenSystem()], StubASR(), StubSpeaker(), log=lambda s: None)
    (row,) = results["rows"]
    assert row["failed"] == 1 and row["wer"] == 1.0 and row["hits"] == 0
    assert results["cases"][0]["rows"]["model"]["error"].startswith("ValueError")
    assert "1 failed" in render_markdown(results)


# ----------------------------------------------------------------------------------------------------------------------
# the WER text normaliser (--text-normalizer)

# correct readings as a case's text holds them and as Whisper writes them; "basic" counted each as an error
READINGS = [
    ("The quiet harbour at dawn.", "The quiet harbor at dawn."),  # the shipped default voice's own transcript
    ("I'm sure we don't know.", "I am sure we do not know."),
    ("Fifty percent agreed.", "50% agreed."),
    ("It costs 25 dollars.", "It costs $25."),
    ("Three cats sat.", "3 cats sat."),
]


def _spelling_map_folder(path: Path) -> Path:
    """An ASR model folder carrying a (tiny) Whisper spelling map as normalizer.json, as Hugging Face folders do."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "normalizer.json").write_text(json.dumps({"harbour": "harbor", "colour": "color"}))
    return path


def test_whisper_normalizer_counts_correct_readings_as_correct_and_basic_does_not(tmp_path):
    from eval_lib.metrics import BASIC_NORMALIZER, make_text_normalizer

    whisper = make_text_normalizer("whisper", [_spelling_map_folder(tmp_path / "asr")])
    for reference, heard in READINGS:
        assert word_stats(reference, heard, BASIC_NORMALIZER).errors > 0, reference
        assert word_stats(reference, heard, whisper).errors == 0, (reference, whisper(reference), whisper(heard))
    assert whisper("The colour of the harbour") == "the color of the harbor"  # the map, not a rule
    described = whisper.describe()
    assert described["name"] == "whisper" and described["spelling_map"] == str(tmp_path / "asr" / "normalizer.json")
    assert described["spelling_map_entries"] == 2 and len(described["spelling_map_sha256"]) == 64
    assert word_stats("Hello there.", "HELLO THERE") == word_stats("Hello there.", "HELLO THERE", BASIC_NORMALIZER)


def _reading_cases(tmp_path, texts: dict[str, str]) -> Path:
    prompt = write_wav(tmp_path / "p.wav", tone(0.05))
    cases = [
        Case(id=k, prompt_audio=prompt, prompt_text="p", target_text=t, target_audio=prompt) for k, t in texts.items()
    ]
    return write_cases(cases, tmp_path / "readings.jsonl")


def test_evaluate_scores_wer_with_the_chosen_text_normalizer_and_records_it(tmp_path):
    """British spellings, expanded contractions, "%" and "$" and digits were errors, with no way to score otherwise."""
    reference, heard = READINGS[0][0] + " " + READINGS[1][0], READINGS[0][1] + " " + READINGS[1][1]
    cases = _reading_cases(tmp_path, {"r": reference})
    argv = ["--cases", str(cases), "--rows", "gt", "--asr-model", str(_spelling_map_folder(tmp_path / "asr"))]
    basic = ev.main([*argv, "--out", str(tmp_path / "basic")], asr=StubASR(heard), speaker_encoder=StubSpeaker())
    assert basic["rows"][0]["wer"] > 0.3  # the default stays the instrument every recorded number was measured with
    assert basic["meta"]["text_normalizer"]["name"] == "basic"
    assert "- WER text normaliser: basic" in (tmp_path / "basic" / "results.md").read_text()
    whisper = ev.main(
        [*argv, "--text-normalizer", "whisper", "--out", str(tmp_path / "whisper")],
        asr=StubASR(heard),
        speaker_encoder=StubSpeaker(),
    )
    assert whisper["rows"][0]["wer"] == 0.0 and whisper["rows"][0]["hits"] == whisper["rows"][0]["ref_words"]
    saved = json.loads((tmp_path / "whisper" / "results.json").read_text())
    assert saved["meta"]["text_normalizer"]["name"] == "whisper"
    assert saved["meta"]["text_normalizer"]["spelling_map"].endswith("normalizer.json")
    md = (tmp_path / "whisper" / "results.md").read_text()
    assert "- WER text normaliser: whisper (transformers " in md and "after Whisper's English text normaliser" in md


def test_the_whisper_normalizer_is_refused_without_its_spelling_map_or_for_a_text_it_empties(tmp_path, monkeypatch):
    import eval_lib.metrics as metrics

    monkeypatch.setattr(metrics, "SPELLING_MAP_PACKAGES", ())  # as where no package ships the map
    monkeypatch.setenv("DITAR_CACHE", str(tmp_path / "cache"))  # the default Whisper folder, without normalizer.json
    cases = _reading_cases(tmp_path, {"r": "The quiet harbour."})
    out = tmp_path / "out"
    argv = ["--cases", str(cases), "--rows", "gt", "--text-normalizer", "whisper", "--out", str(out)]
    stubs = {"asr": StubASR(), "speaker_encoder": StubSpeaker()}
    with pytest.raises(SystemExit, match="^error: --text-normalizer whisper needs Whisper's British-to-American"):
        ev.main(argv, **stubs)
    with pytest.raises(SystemExit, match=f"looked at: {tmp_path / 'cache' / 'whisper-base' / 'normalizer.json'}\\)"):
        ev.main(argv, **stubs)
    # a target text of fillers alone has no word left: every recognised word would be an insertion against nothing
    fillers = _reading_cases(tmp_path, {"ok": "Fine.", "um": "Hmm, uh."})
    asr_dir = str(_spelling_map_folder(tmp_path / "asr"))
    with pytest.raises(SystemExit, match="^error: --text-normalizer whisper leaves no word of the target_text.* um "):
        ev.main([*argv[2:], "--cases", str(fillers), "--asr-model", asr_dir], **stubs)
    assert not out.exists()


# ----------------------------------------------------------------------------------------------------------------------
# rows and columns over different cases


class ToneSystem:
    """A "model" row that answers every case with a short tone."""

    key, name = "model", "tones"

    def applies(self, case):
        return True

    def __call__(self, case):
        return SystemOutput(tone(0.064), SR, compute_seconds=0.01, stopped=True)

    def describe(self):
        return {}


def test_the_table_says_when_rows_and_columns_cover_different_cases(tmp_path):
    """With one case of three lacking target audio, the ground-truth rows scored 2 cases and the model row 3, and the
    model row's SIM (GT) and duration ratio averaged 2 of its 3 cases: the table said neither."""
    cases = load_cases(_cases(tmp_path))
    results = run_evaluation(cases, [GroundTruthSystem(), ToneSystem()], StubASR(), StubSpeaker(), log=lambda s: None)
    gt, model = results["rows"]
    assert (gt["cases"], model["cases"]) == (2, 3)
    assert (model["sim_prompt_n"], model["sim_gt_n"], model["duration_ratio_n"], model["stop_rate_n"]) == (3, 2, 2, 3)
    table = render_table(results["rows"]).splitlines()
    cells = table[3].split(" | ")
    assert cells[0] == "| tones" and cells[1] == "3" and "(n=" not in cells[5]  # SIM (prompt) over all 3
    assert cells[6].endswith(" (n=2)") and cells[8].endswith(" (n=2)")  # SIM (GT), duration ratio
    assert "(n=" not in cells[7] and "(n=" not in cells[9] and "(n=" not in table[2]
    md = render_markdown(results)
    assert "**The rows were scored on different cases** (ground truth: 2 cases; tones: 3 cases)" in md
    assert "(n=K): that column averages K of its row's cases" in md
    # rows over the same cases, every column over all of them: no note
    same = run_evaluation(cases[:2], [GroundTruthSystem(), ToneSystem()], StubASR(), StubSpeaker(), log=print)
    assert "(n=" not in render_markdown(same) and "different cases" not in render_markdown(same)


# ----------------------------------------------------------------------------------------------------------------------
# a re-run into the same --out


class FailsOn(ToneSystem):
    def __init__(self, failing=()):
        self.failing = set(failing)

    def __call__(self, case):
        if case.id in self.failing:
            raise RuntimeError("out of memory")
        return super().__call__(case)


def test_a_rerun_moves_the_earlier_audio_aside_so_the_folder_holds_only_its_own(tmp_path, monkeypatch):
    """A re-run left the last run's wavs/<row>/<id>.wav in place: a case the new run says failed still had audio."""
    cases, out = _cases(tmp_path), tmp_path / "o"
    stubs = {"asr": StubASR(), "speaker_encoder": StubSpeaker()}

    def run(*failing):
        monkeypatch.setattr(ev, "build_systems", lambda args, rows: ([FailsOn(failing)], None))
        return ev.main(["--cases", str(cases), "--out", str(out)], **stubs)

    def wavs(folder):
        return sorted(p.name for p in (out / folder / "model").iterdir())

    run()
    results = run("c1")
    assert results["cases"][1]["rows"]["model"]["error"] == "RuntimeError: out of memory"
    assert wavs("wavs") == ["c0.wav", "ood.wav"]  # c1 failed: it has no audio
    assert wavs("wavs.previous") == ["c0.wav", "c1.wav", "ood.wav"]  # the earlier run's, beside its results
    previous = json.loads((out / "results.previous.json").read_text())
    moved = [case["rows"]["model"]["wav"].replace("wavs/", "wavs.previous/", 1) for case in previous["cases"]]
    assert len(moved) == 3 and all((out / wav).is_file() for wav in moved)
    run("c0")  # wavs.previous/ is replaced as results.previous.* is: the run before this one
    assert wavs("wavs") == ["c1.wav", "ood.wav"] and wavs("wavs.previous") == ["c0.wav", "ood.wav"]

    # a run interrupted before its results.json: its audio describes nothing and goes; the previous run's stays
    class DiesMidway(StubASR):
        def transcribe(self, audio, sampling_rate):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ev.main(["--cases", str(cases), "--out", str(out)], asr=DiesMidway(), speaker_encoder=StubSpeaker())
    assert wavs("wavs") == ["c1.wav"] and wavs("wavs.previous") == ["c1.wav", "ood.wav"]  # c0 fails, c1 is written
    run()
    assert wavs("wavs") == ["c0.wav", "c1.wav", "ood.wav"] and wavs("wavs.previous") == ["c1.wav", "ood.wav"]


def test_a_rerun_leaves_the_cases_own_audio_where_it_is(tmp_path, monkeypatch):
    """A cases file whose audio lies in a folder named like a row (wavs/model/, beside model.jsonl in --out)."""
    out = tmp_path / "o"
    (out / "wavs" / "model").mkdir(parents=True)
    prompt = write_wav(out / "wavs" / "model" / "prompt.wav", tone(0.05))
    cases = write_cases([Case(id="c", prompt_audio=prompt, prompt_text="p", target_text="hello")], out / "model.jsonl")
    monkeypatch.setattr(ev, "build_systems", lambda args, rows: ([ToneSystem()], None))
    for _ in range(2):
        ev.main(
            ["--cases", str(cases), "--rows", "model", "--out", str(out)], asr=StubASR(), speaker_encoder=StubSpeaker()
        )
    assert Path(prompt).is_file() and (out / "wavs" / "model" / "c.wav").is_file()


def test_seed_help_says_how_the_per_case_seed_is_made():
    """The help said "seed + case id"; the per-case seed is a hash of both."""
    import hashlib

    text = " ".join(ev.build_parser().format_help().split())
    assert "seed + case id" not in text and "derived from sha256('SEED:CASE_ID')" in text
    digest = hashlib.sha256(b"3:c1").digest()[:8]
    assert case_seed(3, "c1") == int.from_bytes(digest, "little") & ((1 << 63) - 1)


# ----------------------------------------------------------------------------------------------------------------------
# Whisper-base assembly (fake package data) and the real models


def test_whisper_base_dir_assembles_the_parts_once(tmp_path, monkeypatch):
    d1, d2 = tmp_path / "pkg1", tmp_path / "pkg2"
    d1.mkdir()
    d2.mkdir()
    (d1 / "model.bin.part1").write_bytes(b"a" * 1000)
    (d2 / "model.bin.part2").write_bytes(b"b" * 500)
    for name in asr_mod.MODEL_FILES:
        (d2 / name).write_text("{}")
    monkeypatch.setattr(asr_mod, "_package_data_dir", lambda module: d1 if module.endswith("_1") else d2)
    target = asr_mod.whisper_base_dir(tmp_path / "cache")
    assert (target / "model.bin").read_bytes() == b"a" * 1000 + b"b" * 500
    assert all((target / n).is_file() for n in asr_mod.MODEL_FILES)
    stamp = (target / "model.bin").stat().st_mtime_ns
    assert asr_mod.whisper_base_dir(tmp_path / "cache") == target
    assert (target / "model.bin").stat().st_mtime_ns == stamp  # not rebuilt


_HAS_WHISPER = all(importlib.util.find_spec(m) for m in ("faster_whisper", *asr_mod.PART_PACKAGES))
_HAS_RESEMBLYZER = importlib.util.find_spec("resemblyzer") is not None
_HAS_ESPEAK = shutil.which("espeak-ng") is not None


def _espeak(path: Path, text: str, voice: str = "en-us") -> np.ndarray:
    import soundfile as sf

    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    audio, rate = sf.read(path, dtype="float32")
    return audio, rate


def test_rate_oracle_probe_generates_with_the_target_rate(tmp_path):
    from modeling_ditar import DiTARPipeline

    spec = importlib.util.spec_from_file_location("rate_oracle_probe", RESEARCH / "rate_oracle_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    pipe = get_dummy_pipeline(speech_positions="aligned")
    pipe.save_pretrained(tmp_path / "pipe")
    cases = [c for c in load_cases(_cases(tmp_path)) if c.target_audio is not None]
    path = write_cases(cases, tmp_path / "with_targets.jsonl")
    original = DiTARPipeline.encode_inputs
    seen = []

    def spy(self, texts, *args, **kwargs):
        inputs = original(self, texts, *args, **kwargs)
        seen.append(float(inputs["speech_position_rate"][0]))
        return inputs

    original_steps = DiTARPipeline._patch_steps
    generated_with = []

    def steps_spy(self, inputs, *args, **kwargs):
        generated_with.append(float(inputs["speech_position_rate"][0]))
        return original_steps(self, inputs, *args, **kwargs)

    DiTARPipeline.encode_inputs, DiTARPipeline._patch_steps = spy, steps_spy
    try:
        results, ratios = probe.run(
            [
                "--cases",
                str(path),
                "--pipeline",
                str(tmp_path / "pipe"),
                "--out",
                str(tmp_path / "eval"),
                "--steps",
                "2",
                "--max-new-patches",
                "3",
            ],
            asr=StubASR(),
            speaker_encoder=StubSpeaker(),
        )
        assert DiTARPipeline.encode_inputs is spy  # the probe put back what it found
    finally:
        DiTARPipeline.encode_inputs, DiTARPipeline._patch_steps = original, original_steps
    assert generated_with == pytest.approx([seen[1], seen[3]])  # generation used the targets' rates
    assert [r["key"] for r in results["rows"]] == ["model"] and results["rows"][0]["name"] == "target rate (oracle)"
    assert len(ratios) == 2 and all(r > 0 for r in ratios)
    # per case: the prompt's rate, then the target's (the oracle): the ratio is theirs
    assert ratios[0] == pytest.approx(seen[1] / seen[0]) and ratios[1] == pytest.approx(seen[3] / seen[2])
    assert ratios[0] != pytest.approx(1.0)  # prompt (0.04 s tone, "the prompt") and target differ in rate


class _Segment:
    def __init__(self, text, compression_ratio):
        self.text, self.compression_ratio = text, compression_ratio


class _LoopingWhisper:
    """Stands in for faster_whisper.WhisperModel: loops at temperature 0 unless a repetition penalty is given."""

    def __init__(self, redecoded=("no matter how much you do", 1.0)):
        self.calls, self.redecoded = [], redecoded

    def transcribe(self, audio, **options):
        self.calls.append(options)
        if options.get("repetition_penalty"):
            return [_Segment(*self.redecoded)], None
        return [_Segment("no matter" + " do," * 40, 12.0)], None


def _asr_with(model, redecode_loops):
    asr = asr_mod.WhisperASR.__new__(asr_mod.WhisperASR)  # no weights needed: the decoding logic only
    asr.language, asr.beam_size, asr.temperatures, asr.redecode_loops, asr.model = (
        "en",
        5,
        (0.0,),
        redecode_loops,
        model,
    )
    return asr


def test_repetition_loops_are_redecoded_only_when_asked():
    audio = np.ones(16000, dtype=np.float32)
    looping = _LoopingWhisper()
    assert _asr_with(looping, redecode_loops=False).transcribe(audio, 16000).count("do,") == 40
    assert len(looping.calls) == 1
    looping = _LoopingWhisper()
    assert _asr_with(looping, redecode_loops=True).transcribe(audio, 16000) == "no matter how much you do"
    assert looping.calls[1]["repetition_penalty"] == asr_mod.LOOP_REPETITION_PENALTY
    assert all(call["temperature"] == [0.0] for call in looping.calls)  # deterministic both times
    # a re-decode that loops as badly is not taken
    worse = _LoopingWhisper(redecoded=("do do do do do do", 20.0))
    assert _asr_with(worse, redecode_loops=True).transcribe(audio, 16000).count("do,") == 40


def test_clean_transcripts_are_decoded_once():
    class Clean(_LoopingWhisper):
        def transcribe(self, audio, **options):
            self.calls.append(options)
            return [_Segment("hello there", 1.1)], None

    clean = Clean()
    assert _asr_with(clean, redecode_loops=True).transcribe(np.ones(16000, dtype=np.float32), 16000) == "hello there"
    assert len(clean.calls) == 1 and not asr_mod.is_repetition_loop([]) and asr_mod.max_compression_ratio([]) == 0.0


@pytest.mark.slow
@pytest.mark.skipif(not (_HAS_WHISPER and _HAS_ESPEAK), reason="needs the eval extra and espeak-ng")
def test_real_whisper_base_transcribes_espeak(tmp_path):
    audio, rate = _espeak(tmp_path / "x.wav", "hello world, this is a test")
    asr = asr_mod.WhisperASR(cpu_threads=1)
    text = asr.transcribe(audio, rate)
    assert word_stats("hello world this is a test", text).hits >= 4, text


@pytest.mark.slow
@pytest.mark.skipif(not (_HAS_RESEMBLYZER and _HAS_ESPEAK), reason="needs the eval extra and espeak-ng")
def test_real_resemblyzer_separates_speakers(tmp_path):
    from eval_lib.speaker import ResemblyzerEncoder

    enc = ResemblyzerEncoder()
    a1 = enc.embed(*_espeak(tmp_path / "a1.wav", "The quick brown fox jumps over the lazy dog.", "en-us+m3"))
    a2 = enc.embed(*_espeak(tmp_path / "a2.wav", "Today is the tomorrow you worried about yesterday.", "en-us+m3"))
    b = enc.embed(*_espeak(tmp_path / "b.wav", "Today is the tomorrow you worried about yesterday.", "en-us+f2"))
    assert cosine(a1, a2) > cosine(a2, b)


def test_candidate_ranking_probe_scores_k_seeds_as_the_pipeline_ranks_them(tmp_path):
    spec = importlib.util.spec_from_file_location("candidate_ranking_probe", RESEARCH / "candidate_ranking_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    get_dummy_pipeline(ctc_loss_weight=1.0, max_patches_per_text_token=0.1).save_pretrained(tmp_path / "pipe")
    path = _cases(tmp_path)
    rows, records = probe.run(
        [
            "--cases",
            str(path),
            "--pipeline",
            str(tmp_path / "pipe"),
            "--num-candidates",
            "3",
            "--out",
            str(tmp_path / "probe"),
            "--save-candidates",
        ],
        asr=StubASR("hello"),
        speaker_encoder=StubSpeaker(),
    )
    assert len(records) == len(load_cases(path)) and all(len(r["candidates"]) == 3 for r in records)
    assert list(rows) == ["seed 0", "single seed, mean of K", "CTC best of 2", "CTC best of 3", "oracle best of 3"]
    # candidate k is the evaluation's sample with seed k
    import torch

    from modeling_ditar import DiTARPipeline

    pipe = DiTARPipeline.from_pretrained(tmp_path / "pipe")
    pipe.set_progress_bar_config(disable=True)
    case = load_cases(path)[0]
    seconds = [c["seconds"] for c in records[0]["candidates"]]

    def sample(k, **kwargs):
        generator = torch.Generator().manual_seed(case_seed(k, case.id))
        return pipe(
            case.target_text,
            prompt_audio=case.prompt_audio,
            prompt_text=case.prompt_text,
            generator=generator,
            num_candidates=1,
            **kwargs,
        )

    for k in range(3):
        out = sample(k)
        assert out.audio_lengths[0] / pipe.sample_rate == pytest.approx(seconds[k])
        saved, rate = read_audio(tmp_path / "probe" / "candidates" / f"{case.id}_{k}.wav")
        assert rate == pipe.sample_rate and len(saved) == out.audio_lengths[0]
        features = torch.load(tmp_path / "probe" / "candidates" / f"{case.id}_{k}.pt")
        out = sample(k, output_type="features")
        torch.testing.assert_close(features, torch.as_tensor(out.audios[0][: out.audio_lengths[0]]))
    scores = [c["ctc"] for c in records[0]["candidates"]]
    assert all(np.isfinite(scores)) and len(set(scores)) == 3
    assert (tmp_path / "probe" / "summary.md").read_text().count("| CTC best of") == 2
    with pytest.raises(SystemExit):
        probe.parse_args(["--cases", "x", "--out", "y", "--num-candidates", "1"])


def test_pocketsphinx_judge_probe_keeps_what_each_judge_ranks_first(tmp_path):
    spec = importlib.util.spec_from_file_location("pocketsphinx_judge_probe", RESEARCH / "pocketsphinx_judge_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)

    def cand(seed, ctc, hits, sim):
        return {"seed": seed, "ctc": ctc, "hits": hits, "errors": 4 - hits, "ref_words": 4, "sim": sim, "seconds": 0.5}

    # the CTC head prefers seed 1; the stub judge hears the most words in seed 2 and rates seed 3's pronunciation best
    four = [cand(0, 3.0, 1, 0.5), cand(1, 1.0, 2, 0.6), cand(2, 2.0, 4, 0.7), cand(3, 4.0, 3, 0.4)]
    records = [{"id": f"case{i}", "target_text": "one two three four", "candidates": four} for i in range(3)]
    (tmp_path / "candidates").mkdir()
    for r in records:
        for c in r["candidates"]:
            write_wav(tmp_path / "candidates" / f"{r['id']}_{c['seed']}.wav", tone(0.1 * (c["seed"] + 1), SR), SR)
    (tmp_path / "candidates.json").write_text(json.dumps({"meta": {"command": "probe"}, "cases": records}))

    class StubJudge:
        def score(self, wave, rate, text):
            seed = round(len(wave) / rate / 0.1) - 1
            return {"ps_hypothesis": "", "ps_errors": [3, 2, 0, 1][seed], "ps_hits": 0, "ps_gop": [0, 1, 2, 3][seed]}

    table, judged = probe.run([str(tmp_path)], judge=StubJudge())
    assert probe.picks(judged[0]["candidates"]) == {
        "seed 0": 0,
        "CTC head": 1,
        "ps-wer": 2,
        "ps-gop": 3,
        "ctc+ps-wer": 2,
        "ctc+ps-gop": 1,
        "oracle": 2,
    }
    assert "| ps-wer | 12/12 (100.0%) | 0.0% | 0.700 | +6 ± 0 | +0.1000 ± 0.0000 |" in table
    assert (tmp_path / "pocketsphinx_judges.md").exists()
    with pytest.raises(SystemExit, match="--save-candidates"):
        shutil.rmtree(tmp_path / "candidates")
        probe.run([str(tmp_path)], judge=StubJudge())


def test_consensus_judge_probe_keeps_the_candidate_closest_to_the_others():
    spec = importlib.util.spec_from_file_location("consensus_judge_probe", RESEARCH / "consensus_judge_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    cands = [
        {"ctc": ctc, "errors": e, "hits": 4 - e, "consensus_euclidean": m, "consensus_cosine": m}
        for ctc, e, m in ((2.0, 3, 0.9), (1.0, 2, 0.5), (3.0, 0, 0.1), (4.0, 1, 0.2))
    ]
    chosen = probe.picks(cands)
    assert chosen["CTC head"] == 1 and chosen["consensus (euclidean)"] == 2 and chosen["oracle"] == 2
    assert chosen["CTC + consensus (euclidean)"] == 1  # ranks 0+2 against 2+0: the head breaks the tie
    assert "closest to the real recording (cosine)" not in chosen  # only where the cases have their recording
    for cand, distance in zip(cands, (0.3, 0.2, 0.4, 0.1), strict=True):
        cand["recording_euclidean"] = cand["recording_cosine"] = distance
    assert probe.picks(cands)["closest to the real recording (cosine)"] == 3

    pytest.importorskip("librosa")  # the warping itself (the eval extra)
    rng = np.random.default_rng(0)
    word = rng.normal(size=(20, 6))
    # three candidates say the same thing at different speeds; the fourth says something else
    frames = [np.repeat(word, 2, axis=0), word, np.repeat(word, 3, axis=0)[::2], rng.normal(size=(30, 6))]
    for metric in probe.METRICS:
        scores = probe.consensus(frames, metric)
        assert int(np.argmax(scores)) == 3 and scores[1] < scores[3]


def test_judge_head_probe_starts_as_the_default_head_and_scores_as_the_model_does(tmp_path):
    spec = importlib.util.spec_from_file_location("judge_head_probe", RESEARCH / "judge_head_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    import torch

    from modeling_ditar.training_data import Utterance, collate_examples

    pipe = get_dummy_pipeline(ctc_loss_weight=1.0)
    model = pipe.model.eval()
    torch.manual_seed(0)
    dim = model.config.feature_dim
    utterances = [
        Utterance(token_ids=pipe.processor.encode_text(text), features=torch.randn(frames, dim), speaker=speaker)
        for text, frames, speaker in (("hello there", 24, "a"), ("a big world", 32, "a"), ("good day", 20, "b"))
    ]
    pairs = [(0, 1), (1, 0), (2, -1)]
    examples = probe.collect(
        pipe, utterances, pairs, pad_id=0, space_ids=pipe.processor.encode_text(" ", allow_empty=True), batch_size=2
    )
    assert [len(e["targets"]) for e in examples] == [
        len(utterances[1].token_ids) + 1 + len(utterances[0].token_ids),
        len(utterances[0].token_ids) + 1 + len(utterances[1].token_ids),
        len(utterances[2].token_ids),
    ]
    # a new head with its layers at the identity gives the model's own transcript loss on the collected outputs
    head = probe.JudgeHead(model.ctc_head, layers=2).eval()
    batch = collate_examples(pairs, utterances, 0, pipe.processor.encode_text(" ", allow_empty=True))
    with torch.no_grad():
        expected = model.transcript_ctc_loss(
            batch["input_ids"],
            batch["speech_features"],
            batch["attention_mask"],
            batch["speech_attention_mask"],
            batch["speech_position_rate"],
        )
        nll, _ = probe.ctc_batch(head, examples, model.config.ctc_frames_per_patch)
    per_token = nll / torch.tensor([len(e["targets"]) for e in examples])
    torch.testing.assert_close(per_token, expected, atol=2e-3, rtol=1e-3)
    metrics = probe.evaluate_head(head, examples, model.config.ctc_frames_per_patch)
    assert metrics["loss_per_token"] > 0 and 0 <= metrics["token_error_rate"]
    assert probe.edit_distance([1, 2, 3], [1, 3]) == 1 and probe.edit_distance([], [4, 5]) == 2
    # ranking swaps the head in for the call only, and with the default's own head scores as score_candidates does
    case = load_cases(_cases(tmp_path))[0]
    features = [torch.randn(12, dim).abs(), torch.randn(16, dim).abs()]
    inputs = pipe.encode_inputs([case.target_text], case.prompt_audio, case.prompt_text, None)
    with torch.no_grad():
        own = [float(model.score_candidates(inputs, [model.normalize_features(f)])[0]) for f in features]
    default_head = model.ctc_head
    scores = probe.judge_scores(pipe, head, case, features)
    assert model.ctc_head is default_head
    assert scores == pytest.approx(own, rel=1e-3, abs=1e-3)


def test_self_training_corpus_pairs_speakers_and_keeps_the_best_stopped_rows():
    spec = importlib.util.spec_from_file_location("self_training_corpus", RESEARCH / "self_training_corpus.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    speakers = ["a", "a", "b", "b", "b", "c", "d", "d"]
    sources = ["piper", "piper", "kokoro", "kokoro", "kokoro", "piper", "espeak", "espeak"]
    pairs = probe.prompt_pairs(speakers, sources, {"piper", "kokoro"}, None, seed=0, passes=2)
    # every row of a kept source with another utterance of its speaker ("c" has none; "d" is espeak-ng), twice
    assert sorted(target for target, _ in pairs) == sorted([0, 1, 2, 3, 4] * 2)
    assert all(target != prompt and speakers[target] == speakers[prompt] for target, prompt in pairs)
    assert len(probe.prompt_pairs(speakers, sources, {"piper", "kokoro"}, 3, seed=0, passes=2)) == 3
    rows = [{"stopped": s, "ctc": c} for s, c in ((True, 0.5), (True, 0.1), (False, 0.0), (True, 0.9), (True, 0.3))]
    assert [r["ctc"] for r in probe.keep_best(rows, 0.5)] == [0.1, 0.3]  # the run-on row never counts
    assert len(probe.keep_best(rows, 1.0)) == 4


def test_recognizer_judge_probe_model_reads_half_rate_frames_and_scores_a_transcript():
    spec = importlib.util.spec_from_file_location("recognizer_judge_probe", RESEARCH / "recognizer_judge_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    import torch

    torch.manual_seed(0)
    model = probe.PhonemeRecognizer(feature_dim=8, vocab_size=10, width=16, layers=1, heads=2).eval()
    features = torch.randn(2, 9, 8)
    mask = torch.tensor([[True] * 9, [True] * 5 + [False] * 4])
    logits, out_mask = model(features, mask)
    assert logits.shape == (2, 5, 11) and out_mask.sum(1).tolist() == [5, 3]
    with torch.no_grad():
        short, long = model.nll_per_token(features[0], [1, 2]), model.nll_per_token(features[0], [1, 2, 3, 4, 5, 6])
    assert np.isfinite(short) and short > 0 and long == float("inf")  # 6 tokens cannot fit in 5 frames


# ----------------------------------------------------------------------------------------------------------------------
# DNSMOS (--dnsmos)


class StubQuality:
    """Scores a clip by its length, so the means can be checked."""

    def __init__(self):
        self.calls = []

    def score(self, audio, rate):
        self.calls.append((audio.size, rate))
        return {"p808": 3.0, "sig": 3.5, "bak": 4.0, "ovrl": audio.size / 1000}

    def describe(self):
        return {"engine": "stub"}


def test_dnsmos_scores_every_row_and_reports_the_means(tmp_path):
    pipe = get_dummy_pipeline()
    cases = load_cases(_cases(tmp_path))
    systems = [GroundTruthSystem(), ResynthesisSystem(pipe.processor.feature_extractor, pipe.vocoder)]
    quality = StubQuality()
    results = run_evaluation(cases, systems, StubASR(), StubSpeaker(), log=lambda s: None, quality=quality)
    assert len(quality.calls) == 4  # 2 cases x (ground truth, resynthesised)
    for row in results["rows"]:
        assert row["dnsmos_n"] == 2 and row["dnsmos_p808"] == 3.0 and row["dnsmos_ovrl"] == pytest.approx(0.512)
    assert all(r["dnsmos"]["sig"] == 3.5 for c in results["cases"] for r in c["rows"].values())
    md = render_markdown(results)
    assert "DNSMOS" in md and "| P.808 | SIG | BAK | OVRL |" in md


def test_without_dnsmos_rows_have_no_dnsmos_columns(tmp_path):
    results = run_evaluation(load_cases(_cases(tmp_path)), [GroundTruthSystem()], StubASR(), StubSpeaker(), log=print)
    assert "dnsmos_ovrl" not in results["rows"][0] and "DNSMOS" not in render_markdown(results)


def test_dnsmos_flag_without_speechmos_names_the_install(tmp_path, monkeypatch):
    import eval_lib.quality as quality_mod

    monkeypatch.setitem(sys.modules, "speechmos", None)  # import fails as if the package were absent
    with pytest.raises(ImportError, match="pip install speechmos"):
        quality_mod.DNSMOS()


def test_dnsmos_cli_passes_the_scorer_to_every_row(tmp_path):
    pipe = get_dummy_pipeline()
    pipe.processor.feature_extractor.save_pretrained(tmp_path / "fe")
    argv = ["--cases", str(_cases(tmp_path)), "--rows", "gt,resynth", "--feature-extractor", str(tmp_path / "fe")]
    results = ev.main(
        [*argv, "--out", str(tmp_path / "o"), "--dnsmos"],
        asr=StubASR(),
        speaker_encoder=StubSpeaker(),
        quality=StubQuality(),
    )
    assert results["meta"]["quality"] == {"engine": "stub"}
    assert [r["dnsmos_n"] for r in results["rows"]] == [2, 2]
    assert "DNSMOS" in (tmp_path / "o" / "results.md").read_text()


@pytest.mark.skipif(importlib.util.find_spec("speechmos") is None, reason="needs speechmos (the eval extra)")
@pytest.mark.skipif(not _HAS_ESPEAK, reason="needs espeak-ng")
def test_real_dnsmos_penalises_noise(tmp_path):
    from eval_lib.quality import DNSMOS

    audio, rate = _espeak(tmp_path / "x.wav", "The quick brown fox jumps over the lazy dog.")
    scorer = DNSMOS()
    clean = scorer.score(audio, rate)
    noisy = scorer.score(audio + 0.3 * np.random.default_rng(0).standard_normal(audio.size).astype(np.float32), rate)
    assert set(clean) == {"p808", "sig", "bak", "ovrl"} and all(1 <= v <= 5 for v in clean.values())
    assert noisy["bak"] < clean["bak"] - 0.5, (clean, noisy)
    assert scorer.score(audio[: rate // 10], rate) is None  # too short to score


def test_a_missing_cases_file_pipeline_or_zero_cases_ends_with_one_line_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    stubs = {"asr": StubASR(), "speaker_encoder": StubSpeaker()}
    with pytest.raises(SystemExit, match="^error: .*no-cases.jsonl"):
        ev.main(["--cases", str(tmp_path / "no-cases.jsonl"), "--out", str(out)], **stubs)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(SystemExit, match="^error: .*empty.jsonl: no cases"):
        ev.main(["--cases", str(empty), "--out", str(out)], **stubs)
    cases = _cases(tmp_path)
    with pytest.raises(SystemExit, match="--max-cases 0: give at least 1"):
        ev.main(["--cases", str(cases), "--out", str(out), "--max-cases", "0"], **stubs)
    with pytest.raises(SystemExit, match="^error: .*nowhere is neither a saved DiTARPipeline"):
        ev.main(["--cases", str(cases), "--out", str(out), "--pipeline", str(tmp_path / "nowhere")], **stubs)
    # a sampler setting no call accepts would fail every case and still write an evaluation of failures
    for flag, value, named in (
        ("--temperature", "3", "`temperature` must be a number in \\[0, 1\\]"),
        ("--prompt-spectrum-match", "2", "`prompt_spectrum_match` must be a number in \\[0, 1\\]"),
        ("--prompt-spread-match", "-1", "`prompt_spread_match` must be a number in \\[0, 1\\]"),
    ):
        with pytest.raises(SystemExit, match=f"^error: {named}"):
            ev.main(["--cases", str(cases), "--out", str(out), "--rows", "model", flag, value], **stubs)
    assert not out.exists()
    (tmp_path / "file").write_text("kept")
    with pytest.raises(SystemExit, match="^error: --out .*file is a file"):
        ev.main(["--cases", str(cases), "--out", str(tmp_path / "file")], **stubs)
    with pytest.raises(SystemExit, match="^error: --asr-model .*no-such is not a folder"):  # a Hub-id error
        ev.main(["--cases", str(cases), "--out", str(out), "--asr-model", str(tmp_path / "no-such")], **stubs)
    prompt_only = cases.parent / "prompt-only.jsonl"  # the same cases without their ground truth
    rows = [json.loads(line) for line in cases.read_text().splitlines()]
    prompt_only.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "target_audio"}) for r in rows))
    with pytest.raises(SystemExit, match="^error: --rows gt scores the ground truth, but none of the .* target_audio"):
        ev.main(["--cases", str(prompt_only), "--out", str(out), "--rows", "gt,model"], **stubs)
    assert not out.exists() and (tmp_path / "file").read_text() == "kept"


def test_a_row_that_fails_every_case_fails_the_command_after_writing_its_results(tmp_path, monkeypatch, capsys):
    class FailsOnce(BrokenSystem):
        key, name = "flaky", "fails on c1"

        def __call__(self, case):
            if case.id == "c1":
                raise RuntimeError("out of memory")
            return SystemOutput(tone(0.1), SR)

    cases = _cases(tmp_path)
    stubs = {"asr": StubASR(), "speaker_encoder": StubSpeaker()}
    monkeypatch.setattr(ev, "build_systems", lambda args, rows: ([FailsOnce()], None))
    results = ev.main(["--cases", str(cases), "--out", str(tmp_path / "partly")], **stubs)
    assert results["rows"][0]["failed"] == 1
    assert "warning: 1 of 3 cases failed in row 'flaky'; first: RuntimeError: out of memory" in capsys.readouterr().out

    monkeypatch.setattr(ev, "build_systems", lambda args, rows: ([FailsOnce(), BrokenSystem()], None))
    with pytest.raises(SystemExit, match="^error: every case failed in row 'model' \\(ValueError: prompt too short\\)"):
        ev.main(["--cases", str(cases), "--out", str(tmp_path / "broken")], **stubs)
    written = json.loads((tmp_path / "broken" / "results.json").read_text())
    assert [r["failed"] for r in written["rows"]] == [1, 3]


# ----------------------------------------------------------------------------------------------------------------------
# the evaluated weights' fingerprint in results.json


def _evaluate_model_row(tmp_path, cases: Path, out: str, *pipeline: str) -> dict:
    """One case of the model row, as fast as the model allows; the results.json it wrote."""
    argv = ["--cases", str(cases), "--rows", "model", "--max-cases", "1", "--steps", "1", "--max-new-patches", "2"]
    ev.main([*argv, *pipeline, "--out", str(tmp_path / out)], asr=StubASR(), speaker_encoder=StubSpeaker())
    return json.loads((tmp_path / out / "results.json").read_text())


def _fingerprint(results: dict) -> dict:
    return {k: results["meta"][k] for k in ("model_weights_sha256", "model_weights_sha256_rounded")}


def test_results_record_a_fingerprint_of_the_evaluated_weights_whatever_their_shards(tmp_path):
    from modeling_ditar.hub_utils import model_weights_fingerprint

    pipe = get_dummy_pipeline()
    pipe.save_pretrained(tmp_path / "final")
    results = _evaluate_model_row(tmp_path, _cases(tmp_path), "eval", "--pipeline", str(tmp_path / "final"))
    recorded = _fingerprint(results)
    assert recorded == model_weights_fingerprint(tmp_path / "final")
    digest = recorded["model_weights_sha256"]
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert recorded["model_weights_sha256_rounded"].keys() == {"float16", "bfloat16"}
    assert digest not in recorded["model_weights_sha256_rounded"].values()  # float32 weights: rounding changes them
    # the same tensors in shards (a model folder, other file names) fingerprint the same; another model's do not
    pipe.model.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    assert model_weights_fingerprint(tmp_path / "sharded") == recorded
    get_dummy_pipeline(seed=1).save_pretrained(tmp_path / "other")
    assert model_weights_fingerprint(tmp_path / "other")["model_weights_sha256"] != digest
    # no model evaluated (the ground truth rows with a feature extractor): no fingerprint
    pipe.processor.feature_extractor.save_pretrained(tmp_path / "fe")
    argv = ["--cases", str(_cases(tmp_path)), "--rows", "gt,resynth", "--feature-extractor", str(tmp_path / "fe")]
    ev.main([*argv, "--out", str(tmp_path / "gt")], asr=StubASR(), speaker_encoder=StubSpeaker())
    gt = json.loads((tmp_path / "gt" / "results.json").read_text())
    assert _fingerprint(gt) == {"model_weights_sha256": None, "model_weights_sha256_rounded": None}


def test_results_of_the_embedded_default_carry_its_packaged_weights_fingerprint(tmp_path):
    """Without --pipeline the evaluation scores the package's default model: its weights are fingerprinted as
    packaged (float16), and a copy saved from the loaded default matches them, another model does not."""
    from safetensors.torch import load_file, save_file

    from modeling_ditar import DiTARPipeline
    from modeling_ditar.hub_utils import EMBEDDED_DEFAULT, model_weights_fingerprint, results_of_another_model

    prompt = write_wav(tmp_path / "p.wav", tone(1.0))  # long enough for the default model
    cases = write_cases(
        [Case(id="c", prompt_audio=prompt, prompt_text="the prompt", target_text="hello")], tmp_path / "cases.jsonl"
    )
    results = _evaluate_model_row(tmp_path, cases, "eval")
    assert _fingerprint(results) == model_weights_fingerprint(EMBEDDED_DEFAULT)
    DiTARPipeline.from_pretrained().save_pretrained(tmp_path / "copy")
    get_dummy_pipeline().save_pretrained(tmp_path / "dummy")
    assert results_of_another_model(results, tmp_path / "copy", tmp_path / "copy") is None
    # its model stored in float32 (every value as it was): the same weights, in the lower precision of the two
    shutil.copytree(EMBEDDED_DEFAULT / "model", tmp_path / "float32")
    weights = load_file(str(tmp_path / "float32" / "model.safetensors"))
    save_file(
        {k: v.float() if v.is_floating_point() else v for k, v in weights.items()},
        str(tmp_path / "float32" / "model.safetensors"),
    )
    assert (
        model_weights_fingerprint(tmp_path / "float32")["model_weights_sha256"]
        != _fingerprint(results)["model_weights_sha256"]
    )
    assert results_of_another_model(results, tmp_path / "float32") is None
    message = results_of_another_model(results, tmp_path / "dummy", tmp_path / "dummy")
    assert "the package's default model), whose weights at the evaluation (fingerprint" in message


def test_cards_match_results_by_the_recorded_fingerprint_whatever_became_of_the_evaluated_folder(tmp_path):
    """The weights of the folder the results named were compared as that folder is now: training continued into it,
    or a save over it, gave "another model" for the evaluated weights and "the same" for others; a deleted folder left
    only paths to compare. The fingerprint recorded at the evaluation decides; results without one (written before)
    still compare folders."""
    import torch

    from modeling_ditar.hub_utils import model_weights_fingerprint, results_of_another_model

    get_dummy_pipeline().save_pretrained(tmp_path / "final")
    results = _evaluate_model_row(tmp_path, _cases(tmp_path), "eval", "--pipeline", str(tmp_path / "final"))
    old = {**results, "meta": {k: v for k, v in results["meta"].items() if not k.startswith("model_weights_")}}
    for half in (torch.float16, torch.bfloat16):  # the evaluated weights, published in half precision elsewhere
        get_dummy_pipeline().to(half).save_pretrained(tmp_path / f"hub-{str(half)[6:]}")
    hubs = [tmp_path / "hub-float16", tmp_path / "hub-bfloat16"]
    for hub in hubs:
        assert model_weights_fingerprint(hub)["model_weights_sha256"] != results["meta"]["model_weights_sha256"]
        assert results_of_another_model(results, hub, hub) is None
    get_dummy_pipeline(seed=1).save_pretrained(tmp_path / "final")  # training went on into the evaluated folder
    for hub in hubs:
        assert results_of_another_model(results, hub, hub) is None
        assert "whose model weights differ" in results_of_another_model(old, hub, hub)
    # publishing the folder the results name, now holding other weights
    message = results_of_another_model(results, tmp_path / "final", tmp_path / "final")
    assert "measured on " in message and "whose weights at the evaluation (fingerprint" in message
    assert results_of_another_model(old, tmp_path / "final", tmp_path / "final") is None
    shutil.rmtree(tmp_path / "final")
    assert results_of_another_model(results, hubs[0], hubs[0]) is None
    assert "but this model was loaded from" in results_of_another_model(old, hubs[0], hubs[0])

"""Tests of the evaluation helpers around examples/evaluate.py: out-of-domain cases and side-by-side comparisons."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pipeline_helpers import tone, write_wav

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import compare_results  # noqa: E402
import make_ood_cases  # noqa: E402
from eval_lib.cases import load_cases  # noqa: E402

# ----------------------------------------------------------------------------------------------------------------------
# out-of-domain cases


def _fake_librivox(root: Path) -> Path:
    folder = root / "librivox"
    folder.mkdir()
    for i, text in enumerate(
        [
            "he was not an ill disposed young man",
            "he might even have been made amiable",
            "unless to be rather cold hearted",
        ]
    ):
        write_wav(folder / f"clip-{i:04d}.wav", tone(0.5, freq=200.0 + 10 * i))
        (folder / f"clip-{i:04d}.txt").write_text(f"  {text}\n")
    return folder


def _fake_flite(voice, text, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, tone(0.1 + 0.01 * len(text.split())))


def test_ood_cases_flite_and_librivox(tmp_path, monkeypatch):
    monkeypatch.setattr(make_ood_cases, "flite_say", _fake_flite)
    out = tmp_path / "ood" / "cases.jsonl"
    make_ood_cases.main(
        [
            "--out",
            str(out),
            "--flite-voices",
            "slt,rms",
            "--flite-cases-per-voice",
            "2",
            "--sentences-from",
            "",
            "--librivox-dir",
            str(_fake_librivox(tmp_path)),
        ]
    )
    cases = load_cases(out)  # checks that every audio file exists, relative to the JSONL
    assert [c.id for c in cases] == [
        "flite-slt-00",
        "flite-slt-01",
        "flite-rms-00",
        "flite-rms-01",
        "librivox-0000",
        "librivox-0001",
        "librivox-0002",
    ]
    assert all(c.has_ground_truth for c in cases)
    flite = [c for c in cases if c.id.startswith("flite")]
    texts = [t for c in flite for t in (c.prompt_text, c.target_text)]
    assert len(set(texts)) == len(texts)  # every prompt and target sentence differs
    real = [c for c in cases if c.id.startswith("librivox")]
    # each clip prompts for the next clip's transcript, whose recording is the ground truth; whitespace is tidied
    assert real[0].prompt_text == "he was not an ill disposed young man"
    assert real[0].target_text == real[1].prompt_text and real[-1].target_text == real[0].prompt_text
    assert Path(real[0].target_audio).name == Path(real[1].prompt_audio).name
    # the clips are copied beside the cases, so the case set stands alone
    assert all(Path(c.prompt_audio).parent == out.parent / "wavs" for c in cases)
    assert '"prompt_audio": "wavs/' in out.read_text()


def test_ood_cases_reject_a_folder_without_clips(tmp_path):
    with pytest.raises(SystemExit, match="LibriVox"):
        make_ood_cases.main(["--out", str(tmp_path / "c.jsonl"), "--flite-voices", "", "--librivox-dir", str(tmp_path)])


def test_ood_cases_need_some_source(tmp_path):
    with pytest.raises(SystemExit, match="no cases"):
        make_ood_cases.main(["--out", str(tmp_path / "c.jsonl"), "--flite-voices", "", "--no-librivox"])


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed (apt-get install flite)")
def test_real_flite_writes_16k_speech(tmp_path):
    import soundfile as sf

    make_ood_cases.flite_say("slt", "Hello there.", tmp_path / "a.wav")
    info = sf.info(tmp_path / "a.wav")
    assert info.samplerate == 16000 and 0.3 < info.duration < 3.0


# ----------------------------------------------------------------------------------------------------------------------
# side-by-side comparison


def _results(folder: Path, model_name: str, sim: float, with_reference: bool, teacher_forced: bool = False) -> Path:
    def row(key, name, **kw):
        base = {
            "key": key,
            "name": name,
            "cases": 4,
            "failed": 0,
            "wer": 0.3,
            "wer_capped": 0.3,
            "recognised": 0.75,
            "ref_words": 40,
            "hits": 30,
            "sim_prompt": 0.85,
            "sim_gt": None,
            "stop_rate": None,
            "duration_ratio": 1.0,
        }
        base.update(kw)
        return base

    rows = (
        [row("gt", "ground truth"), row("resynth", "ground truth resynthesised", sim_prompt=0.8)]
        if with_reference
        else []
    )
    if teacher_forced:
        rows.append(row("tf", f"{model_name} teacher-forced", sim_prompt=sim + 0.05))
    rows.append(
        row(
            "model",
            model_name,
            wer=2.0,
            wer_capped=0.95,
            recognised=0.05,
            hits=2,
            sim_prompt=sim,
            stop_rate=1.0,
            duration_ratio=1.2,
        )
    )
    cases = [{"id": f"c{i}", "rows": {"model": {"sim_prompt": sim + 0.01 * i}}} for i in range(4)]
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(
        json.dumps({"meta": {"command": f"evaluate {folder.name}"}, "rows": rows, "cases": cases})
    )
    return folder


def _run_dir(folder: Path) -> Path:
    folder.mkdir()
    header = "step,epoch,loss,diffusion_loss,stop_loss,lr,grad_norm,frames_per_s,elapsed_s\n"
    lines = [
        f"{s},0,1.0,{d},0.01,1e-4,0.5,1000,{s * 3}\n"
        for s, d in [(25, 0.9), (50, 0.5), (75, 0.4), (100, 0.3), (125, 0.2)]
    ]
    (folder / "log.csv").write_text(header + "".join(lines))
    (folder / "text_use.csv").write_text(
        "step,right,wrong,penalty\n60,0.5,0.51,0.02\n120,0.4,0.46,0.15,0.4,0.42,0.05\n"
    )
    return folder


def test_compare_results_table(tmp_path):
    before = _results(tmp_path / "before", "shipped", 0.70, with_reference=True)
    after = _results(tmp_path / "after", "tuned", 0.78, with_reference=True, teacher_forced=True)
    run = _run_dir(tmp_path / "run")
    out = tmp_path / "docs" / "cmp.md"
    text = compare_results.main(
        [
            "--out",
            str(out),
            "--title",
            "Before and after",
            "--intro",
            "Six voices.",
            f"default={before}",
            f"fine-tuned={after}@{run}",
        ]
    )
    assert out.read_text() == text and text.startswith("# Before and after\n\nSix voices.\n\n| system")
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table] == [
        "| system",
        "| ground truth",
        "| ground truth resynthesised",
        "| default",
        "| fine-tuned, teacher-forced",
        "| fine-tuned",
    ]
    # references shown once; a teacher-forced row is named as such
    tuned = table[-1].split(" | ")
    assert tuned[1] == "125 steps, 6 min"  # elapsed 375 s
    assert tuned[2] == "0.350"  # mean of the last four logged diffusion losses
    assert tuned[3] == "+15.0% (step 120); prompt + target +5.0%"
    assert tuned[8] == "0.780" and table[-3].split(" | ")[8] == "0.700" and table[-2].split(" | ")[8] == "0.830"
    assert table[-3].split(" | ")[1] == "–"  # no run folder given
    # per-case SIM differences on the shared cases: every case +0.08, so no spread
    assert (
        "- fine-tuned vs default: SIM (prompt) +0.080 ± 0.000 (standard error, 4 paired cases; higher in 4 of 4)"
        in text
    )
    assert "- `evaluate before`" in text and "- `evaluate after`" in text


def test_compare_results_errors(tmp_path):
    with pytest.raises(SystemExit, match="results.json not found"):
        compare_results.main([f"x={tmp_path}"])
    with pytest.raises(SystemExit):
        compare_results.main(["no-equals-sign"])
    # tracebacks before, or a run folder silently ignored
    good = _results(tmp_path / "good", "shipped", 0.70, with_reference=False)
    for content, message in [("not json", "not a results.json .*Expecting value"), ("[]", "no 'rows' list")]:
        (tmp_path / "bad").mkdir(exist_ok=True)
        (tmp_path / "bad" / "results.json").write_text(content)
        with pytest.raises(SystemExit, match=message):
            compare_results.main([f"x={tmp_path / 'bad'}"])
    with pytest.raises(SystemExit, match="the run folder .*nowhere does not exist"):
        compare_results.main([f"x={good}@{tmp_path / 'nowhere'}"])
    with pytest.raises(SystemExit):
        compare_results.main([f"x={good}", "--out", str(tmp_path)])  # a folder


def test_compare_results_names_failed_cases_and_different_cases_files(tmp_path, capsys):
    """A run whose cases failed showed as a plain 100% WER; entries on different cases files were put side by side
    without a word, with one set's ground truth and SIM pairs across unrelated cases."""
    a = _results(tmp_path / "a", "a", 0.70, with_reference=True)
    b = _results(tmp_path / "b", "b", 0.75, with_reference=True)
    for folder, digest in ((a, "1" * 64), (b, "2" * 64)):
        results = json.loads((folder / "results.json").read_text())
        results["meta"]["cases_sha256"] = digest
        results["rows"][-1]["failed"] = 1 if folder == b else 0
        (folder / "results.json").write_text(json.dumps(results))
    text = compare_results.main([f"a={a}", f"b={b}"])
    assert "**The entries were scored on different cases files (a; b): their rows do not compare.**" in text
    assert "different cases files" in capsys.readouterr().err
    table = [line for line in text.splitlines() if line.startswith("| ")]
    # one per cases file, each named by its entry
    assert [line.split(" | ")[0] for line in table if line.startswith("| ground truth: ")] == [
        "| ground truth: a",
        "| ground truth: b",
    ]
    assert "(1 failed)" in [line for line in table if line.startswith("| b |")][0]
    assert "Paired per case" not in text


def test_compare_results_warns_when_entries_cover_different_cases_of_one_cases_file(tmp_path, capsys):
    """A run with --max-cases 1 and a full run on one cases file (same sha256) were compared without a word."""
    full = _results(tmp_path / "full", "full", 0.70, with_reference=True)
    one = _results(tmp_path / "one", "one", 0.75, with_reference=True)
    results = json.loads((one / "results.json").read_text())
    results["cases"] = results["cases"][:1]
    (one / "results.json").write_text(json.dumps(results))
    text = compare_results.main([f"full={full}", f"one={one}"])
    message = "different cases of one cases file (full: 4 cases, one: 1 case): their rows do not compare"
    assert message in text and message in capsys.readouterr().err
    assert "different cases" not in compare_results.main([f"full={full}", f"again={full}"])


def _with_text_normalizer(folder: Path, described: dict) -> Path:
    results = json.loads((folder / "results.json").read_text())
    results["meta"]["text_normalizer"] = described
    (folder / "results.json").write_text(json.dumps(results))
    return folder


WHISPER_NORMALIZER = {"name": "whisper", "spelling_map": "english.json", "spelling_map_sha256": "ab" * 32}


def test_compare_results_warns_when_entries_used_different_text_normalizers(tmp_path, capsys):
    """A WER under Whisper's normaliser sat beside one under the basic normaliser as if they measured alike."""
    old = _results(tmp_path / "old", "old", 0.70, with_reference=True)  # written before the choice: basic
    basic = _with_text_normalizer(_results(tmp_path / "basic", "basic", 0.70, with_reference=True), {"name": "basic"})
    whisper = _with_text_normalizer(_results(tmp_path / "w", "w", 0.70, with_reference=True), WHISPER_NORMALIZER)
    text = compare_results.main([f"old={old}", f"basic={basic}", f"whisper={whisper}"])
    message = (
        "The entries' WERs were measured with different text normalisers (basic: old, basic; whisper (spelling map "
        "abababababab): whisper): their WER columns do not compare"
    )
    assert message in text and message in capsys.readouterr().err
    assert "text normalisers" not in compare_results.main([f"old={old}", f"basic={basic}"])
    other_map = _with_text_normalizer(
        _results(tmp_path / "w2", "w2", 0.70, with_reference=True), {**WHISPER_NORMALIZER, "spelling_map_sha256": "cd"}
    )
    assert "different text normalisers" in compare_results.main([f"w={whisper}", f"w2={other_map}"])


def test_paired_eval_warns_when_the_runs_used_different_text_normalizers(tmp_path, capsys):
    sys.path.insert(0, str(EXAMPLES / "research"))
    import paired_eval

    def run(name, normalizer):
        row = {"error": None, "words": {"hits": 3, "errors": 2, "ref_words": 5}, "sim_prompt": 0.5}
        meta = {} if normalizer is None else {"text_normalizer": normalizer}
        cases = [{"id": f"c{i}", "rows": {"model": row}} for i in range(3)]
        (tmp_path / name).write_text(json.dumps({"meta": meta, "cases": cases}))
        return str(tmp_path / name)

    old, basic, whisper = run("old.json", None), run("basic.json", {"name": "basic"}), run("w.json", WHISPER_NORMALIZER)
    paired_eval.main([old, basic])
    assert "text normaliser" not in capsys.readouterr().err
    assert paired_eval.main([basic, whisper]).startswith("3 cases: words +0")  # still paired, with a warning
    assert "A's WER was measured with text normaliser basic, B's with whisper" in capsys.readouterr().err


def test_compare_results_reads_a_continued_run_up_to_the_given_step(tmp_path):
    """RUN_DIR:STEP summarises the run as it was at STEP (a model saved part-way, the run continued later)."""
    after = _results(tmp_path / "after", "tuned", 0.78, with_reference=True)
    run = _run_dir(tmp_path / "run")
    text = compare_results.main([f"at-100={after}@{run}:100", f"at-end={after}@{run}"])
    rows = {line.split(" | ")[0]: line.split(" | ") for line in text.splitlines() if line.startswith("| at-")}
    assert rows["| at-100"][1] == "100 steps, 5 min"
    assert rows["| at-100"][2] == "0.525"  # mean of the diffusion losses logged at 25..100
    assert rows["| at-100"][3] == "+2.0% (step 60)"
    assert rows["| at-end"][1] == "125 steps, 6 min" and rows["| at-end"][3].startswith("+15.0% (step 120)")
    assert compare_results.parse_entry("x=a@runs/r:800") == ("x", Path("a"), Path("runs/r"), 800)
    assert compare_results.parse_entry("x=a@C:/runs/r") == ("x", Path("a"), Path("C:/runs/r"), None)


# ----------------------------------------------------------------------------------------------------------------------
# natural-voice evaluation set (make_natural_cases.py)

import make_natural_cases  # noqa: E402
from eval_lib.eval_sentences import HARVARD, HARVARD_MORE  # noqa: E402


def _fake_sdist_data(root: Path) -> Path:
    data = root / "data"
    shutil.copytree(_fake_librivox(root), data / "librivox")
    (np.asarray(tone(0.5) * 32767, dtype="<i2")).tofile(data / "goforward.raw")
    return data


def _fortunes(root: Path, text: str = "Something else was said here today.\n%\n") -> str:
    """A fortunes folder (the training text the targets are checked against) with one category file."""
    folder = root / "fortunes"
    folder.mkdir()
    (folder / "misc").write_text(text)
    return str(folder)


def test_natural_cases_cover_every_flite_voice_and_real_recording(tmp_path, monkeypatch):
    monkeypatch.setattr(make_natural_cases, "flite_say", _fake_flite)
    out = tmp_path / "natural" / "cases.jsonl"
    fortunes = ["--fortunes-dir", _fortunes(tmp_path)]
    cases = make_natural_cases.main(["--out", str(out), "--sdist-data", str(_fake_sdist_data(tmp_path)), *fortunes])
    assert len(cases) == 5 * 8 + 7 and len(load_cases(out)) == len(cases)  # 51 with the 5 real LibriVox clips
    flite = [c for c in cases if c.extra["source"] == "flite"]
    assert {c.voice for c in flite} == {f"flite {v}" for v in ("kal", "kal16", "awb", "rms", "slt")}
    assert all(sum(c.voice == v for c in flite) >= 8 for v in {c.voice for c in flite})
    real = [c for c in cases if c.extra["source"] != "flite"]
    assert len(real) == 3 * 2 + 1  # each LibriVox clip twice (next clip, unseen sentence) and goforward
    assert any(c.prompt_text == "go forward ten meters" for c in real)
    unseen = [c.target_text for c in cases if c.target_text in HARVARD]
    assert len(unseen) == len(set(unseen)) == len(flite) + 3 + 1  # unique unseen targets
    assert all(c.prompt_text != c.target_text for c in cases)


def test_a_second_natural_set_shares_no_sentence_with_the_first(tmp_path, monkeypatch):
    monkeypatch.setattr(make_natural_cases, "flite_say", _fake_flite)
    out = tmp_path / "natural2" / "cases.jsonl"
    cases = make_natural_cases.main(
        ["--out", str(out), "--sentences", "harvard-more", "--per-voice", "10", "--no-real"]
        + ["--fortunes-dir", _fortunes(tmp_path)]
    )
    assert len(cases) == 50 and {c.extra["source"] for c in cases} == {"flite"}
    assert not set(HARVARD) & set(HARVARD_MORE)
    texts = {c.target_text for c in cases} | {c.prompt_text for c in cases}
    assert texts <= set(HARVARD_MORE) and len({c.target_text for c in cases}) == 50


def test_natural_cases_skip_sentences_the_training_text_has(tmp_path):
    text = "The birch canoe slid on the smooth planks.\n%\nSomething else was said here today.\n%\n"
    left = make_natural_cases.check_unseen(HARVARD, _fortunes(tmp_path, text))
    assert HARVARD[0] not in left and len(left) == len(HARVARD) - 1


def test_natural_cases_are_not_written_when_the_training_text_cannot_be_read(tmp_path):
    """Missing fortunes kept every sentence without a word: the set was written with no target checked as unseen."""
    out = tmp_path / "natural" / "cases.jsonl"
    missing = tmp_path / "no-fortunes"
    with pytest.raises(SystemExit, match=rf"in {missing}, so the targets cannot be checked .*install the `fortunes`"):
        make_natural_cases.main(["--out", str(out), "--no-real", "--fortunes-dir", str(missing)])
    assert not (tmp_path / "natural").exists()
    with pytest.raises(SystemExit, match="or pass --fortunes-dir"):
        make_natural_cases.check_unseen(HARVARD, str(missing))


def test_natural_cases_need_enough_sentences(tmp_path):
    with pytest.raises(SystemExit, match="unseen targets"):
        make_natural_cases.flite_natural_cases(["slt"], 60, list(HARVARD), tmp_path, say=_fake_flite)


# ----------------------------------------------------------------------------------------------------------------------
# GPU bundle script


def test_device_bundle_dry_run_lists_the_wheels_and_refuses_natural():
    script = EXAMPLES / "scripts" / "prepare_device_bundle.sh"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    plain = subprocess.run(["bash", str(script)], env={**os.environ, "DRY_RUN": "1"}, capture_output=True, text=True)
    assert plain.returncode == 0 and "wheel diffusers==0.42.1" in plain.stdout and "piper" not in plain.stdout
    assert "slim transformers: keep models/{auto," in plain.stdout
    # the natural synthesizers (~160 MB) cannot fit the device's 64 MiB: their speech travels as a pack
    env = {**os.environ, "DRY_RUN": "1", "NATURAL": "1"}
    natural = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert natural.returncode == 1 and "data_packs/natural-v1" in natural.stderr


def test_build_eval_sets_gives_each_natural_set_its_own_seeds_and_conditions(tmp_path):
    """With PYTHON=echo the script prints the commands it would run: each natural-voice set is built from its own
    seeds, speaker count and conditions (the clean set without), and its cases go to its own folder."""
    script = EXAMPLES / "scripts" / "build_eval_sets.sh"
    env = {**os.environ, "PYTHON": "echo", "EVAL_ROOT": str(tmp_path), "FORCE": "1"}
    old = tmp_path / "eval" / "natval48" / "cases.jsonl"  # FORCE=1 removes it: evaluate.py refuses to overwrite it
    old.parent.mkdir(parents=True)
    old.write_text("{}\n")
    result = subprocess.run(
        ["bash", str(script), "natval48 natcond48 natcondfresh160"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    builds = [line.split() for line in lines if "examples/build_corpus.py" in line]
    cases = [line.split() for line in lines if "--make-cases-from" in line]

    def option(words, name):
        return words[words.index(name) + 1] if name in words else None

    expected = {  # set: (corpus folder, seed, voice seed, speakers, conditions)
        "natval48": ("natval_corpus", "11", "1111", "48", None),
        "natcond48": ("natcond_corpus", "21", "2121", "48", "room=0.5,noise=0.5,phone=0.3,level=0.5"),
        "natcondfresh160": ("natcondfresh_corpus", "41", "4141", "160", "room=0.5,noise=0.5,phone=0.3,level=0.5"),
    }
    assert len(builds) == len(cases) == len(expected)
    for build, make, (name, (corpus, seed, voice_seed, speakers, conditions)) in zip(
        builds, cases, expected.items(), strict=True
    ):
        assert option(build, "--out") == f"{tmp_path}/{corpus}"
        assert (option(build, "--seed"), option(build, "--voice-seed")) == (seed, voice_seed)
        assert option(build, "--num-val-speakers") == speakers and option(build, "--conditions") == conditions
        assert option(build, "--only-splits") == "validation" and option(build, "--num-test-voices") == "0"
        assert option(make, "--make-cases-from") == f"{tmp_path}/{corpus}" and option(make, "--num-cases") == speakers
        assert option(make, "--out") == f"{tmp_path}/eval/{name}/cases.jsonl"
    assert not old.exists()


@pytest.mark.parametrize("script", sorted(p.name for p in (EXAMPLES / "scripts").glob("*.sh")))
def test_example_shell_scripts_parse(script):
    result = subprocess.run(["bash", "-n", str(EXAMPLES / "scripts" / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_paired_eval_sums_per_case_differences(tmp_path):
    sys.path.insert(0, str(EXAMPLES / "research"))
    import paired_eval

    def run(name, hits, sims, seconds):
        cases = [
            {
                "id": f"c{i}",
                "rows": {
                    "model": {
                        "error": None,
                        "words": {"hits": h, "errors": 5 - h, "ref_words": 5},
                        "sim_prompt": s,
                        "compute_seconds": seconds,
                        "stopped": True,
                    }
                },
            }
            for i, (h, s) in enumerate(zip(hits, sims, strict=True))
        ]
        (tmp_path / name).write_text(json.dumps({"cases": cases}))
        return str(tmp_path / name)

    a = run("a.json", [1, 2, 3], [0.5, 0.5, 0.5], 2.0)
    b = run("b.json", [2, 4, 3], [0.6, 0.7, 0.5], 1.0)
    line = paired_eval.main([a, b])
    assert "3 cases: words +3 ± 2, capped errors -3 ± 2" in line and "SIM +0.100 ± 0.058" in line
    assert "compute 0.50x, stopped 3/3" in line
    with pytest.raises(SystemExit, match="usage"):
        paired_eval.main([a])
    # a clip too short to embed has no SIM: its words still count, its SIM is left out and the count is said
    c = run("c.json", [2, 4, 0], [0.6, 0.7, None], 1.0)
    line = paired_eval.main([a, c])
    assert "words +0 ± " in line and "SIM +0.150 ± 0.050 (2 cases with SIM in both)" in line
    # fewer than two such cases (a broken vocoder's clips): the rest is still paired
    d = run("d.json", [0, 0, 1], [None, None, 0.4], 1.0)
    line = paired_eval.main([a, d])
    assert "words -5 ± " in line and "SIM not paired (1 cases with SIM in both)" in line


def test_paired_eval_pairs_dnsmos_and_another_row(tmp_path):
    sys.path.insert(0, str(EXAMPLES / "research"))
    import paired_eval

    def run(name, p808s):
        rows = [
            {"error": None, "words": {"hits": 3, "errors": 2, "ref_words": 5}, "sim_prompt": 0.5, "dnsmos": d}
            for d in ({"p808": p, "ovrl": p - 1} for p in p808s)
        ]
        cases = [{"id": f"c{i}", "rows": {"resynth": row}} for i, row in enumerate(rows)]
        (tmp_path / name).write_text(json.dumps({"cases": cases}))
        return str(tmp_path / name)

    a, b = run("a.json", [2.0, 2.5, 3.0]), run("b.json", [2.5, 3.0, 3.5])
    line = paired_eval.main([a, b, "--row", "resynth"])
    assert "3 cases: words +0 ± 0" in line and "DNSMOS P.808 +0.500 ± 0.000, OVRL +0.500 ± 0.000" in line
    assert "compute" not in line and "stopped" not in line
    with pytest.raises(SystemExit, match="only 0 case"):
        paired_eval.main([a, b])  # no model row in these runs


def test_vocoder_phase_errors_are_zero_for_the_recording_and_near_chance_for_a_random_phase():
    import torch

    sys.path.insert(0, str(EXAMPLES / "research"))
    sys.path.insert(0, str(EXAMPLES))
    from vocoder_phase_errors import phase_errors
    from vocoder_training.losses import SpectrumLoss

    spectrum = SpectrumLoss(1280, 320)
    t = torch.arange(16000) / 16000
    recording = (0.3 * torch.sin(2 * torch.pi * 220 * t) * (1 + torch.sin(2 * torch.pi * 3 * t)))[None]
    same = phase_errors(recording, recording, spectrum)
    assert all(value < 1e-6 for value in same.values())
    true = spectrum.target(recording)
    random_phase = torch.polar(true.abs(), torch.rand(true.shape, generator=torch.Generator().manual_seed(0)) * 6.3)
    scrambled = torch.istft(random_phase, 1280, 320, 1280, torch.hann_window(1280), center=True, length=16000)
    errors = phase_errors(scrambled, recording, spectrum)
    # the inverse STFT makes the random phase partly consistent, so the heard bins end somewhat below chance (pi / 2)
    assert 0.8 < errors["gd_weighted"] < 1.7 and 0.8 < errors["iaf_weighted"] < 1.7
    # a shorter output is compared over the common length
    assert phase_errors(recording[:, :8000], recording, spectrum)["gd"] < 1e-6


def test_prompt_colour_probe_smooth_part_and_arguments():
    import torch

    sys.path.insert(0, str(EXAMPLES / "research"))
    import prompt_colour_probe

    bins = torch.arange(80, dtype=torch.float64)
    level_and_tilt = 2.0 + torch.cos(torch.pi * (bins + 0.5) / 80)
    wiggle = torch.cos(torch.pi * (bins + 0.5) * 17 / 80)
    # the first two DCT coefficients keep the level and the tilt and leave out a formant-scale wiggle
    torch.testing.assert_close(prompt_colour_probe.smooth_part(level_and_tilt + wiggle, 2), level_and_tilt)
    args, rest = prompt_colour_probe.parse_args(["--neutralise", "0.5", "--post", "1", "--cases", "c.jsonl"])
    assert (args.neutralise, args.post, args.smooth_coefficients) == (0.5, 1.0, None) and rest == ["--cases", "c.jsonl"]
    with pytest.raises(SystemExit, match="--neutralise must be in"):
        prompt_colour_probe.parse_args(["--neutralise", "2", "--post", "0.5"])
    with pytest.raises(SystemExit, match="--smooth-coefficients must be >= 1"):
        prompt_colour_probe.parse_args(["--neutralise", "1", "--post", "0.5", "--smooth-coefficients", "0"])
    with pytest.raises(SystemExit, match="no such folder"):
        prompt_colour_probe.reference_spectrum("/no/such/corpus", 4)

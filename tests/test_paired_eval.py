"""Tests of what the evaluation tools compare: paired_eval.py and compare_results.py on hand-made results.json files,
and the reuse of earlier results by the evaluation scripts (with a stand-in python, no model)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
sys.path.insert(0, str(EXAMPLES / "research"))

import compare_results  # noqa: E402
import paired_eval  # noqa: E402
from eval_lib.cases import Case  # noqa: E402
from eval_lib.runner import run_evaluation  # noqa: E402
from eval_lib.systems import SystemOutput  # noqa: E402

WHISPER_BASE = {
    "engine": "faster-whisper 1.2.1",
    "model_dir": "/root/.cache/ditar/whisper-base",
    "beam_size": 5,
    "temperature": [0.0],
    "cpu_threads": 1,
}


def _row(hits: int, ref: int = 5, **kw) -> dict:
    row = {
        "error": None,
        "words": {"hits": hits, "errors": ref - hits, "ref_words": ref},
        "sim_prompt": 0.5,
        "compute_seconds": 1.0,
        "stopped": True,
    }
    return {**row, **kw}


def _write(path: Path, rows: list[dict], meta: dict | None = None, texts: list[str] | None = None, key="model"):
    cases = [
        {"id": f"c{i}", "target_text": (texts or [f"text {j}" for j in range(len(rows))])[i], "rows": {key: row}}
        for i, row in enumerate(rows)
    ]
    path.write_text(json.dumps({"meta": meta or {}, "cases": cases}))
    return str(path)


# ----------------------------------------------------------------------------------------------------------------------
# paired_eval.py


class _SaysWhatItIsTold:
    """A system that "says" a given transcript per case (None: it fails), and a recogniser that hears it back: the
    clip's length encodes which transcript it is."""

    key, name = "model", "DiTAR"

    def __init__(self, said: dict, heard: dict):
        self.said, self.heard = said, heard

    def applies(self, case):
        return True

    def describe(self):
        return {}

    def __call__(self, case):
        if self.said[case.id] is None:
            raise RuntimeError("generation failed")
        samples = 16000 + 100 * len(self.heard)
        self.heard[samples] = self.said[case.id]
        return SystemOutput(np.full(samples, 0.01, np.float32), 16000, compute_seconds=1.0, stopped=True)


def test_paired_eval_counts_a_failed_case_as_silence_as_evaluate_does(tmp_path, capsys):
    """A case that failed in one run was dropped from both, so a method that crashes on hard cases looked better:
    B lost 8 words on evaluate.py's table and the paired line said +2."""
    sf.write(tmp_path / "prompt.wav", np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    texts = ["one two three four five", "six seven eight nine ten", "alpha beta gamma delta echo", "red green blue"]
    cases = [
        Case(id=f"c{i}", prompt_audio=str(tmp_path / "prompt.wav"), prompt_text="p", target_text=t)
        for i, t in enumerate(texts)
    ]
    heard: dict = {}

    class ASR:
        def transcribe(self, audio, rate):
            return heard[len(audio)]

        def describe(self):
            return {"engine": "stand-in"}

    class Encoder:
        def embed(self, audio, rate):
            return np.ones(4)

        def describe(self):
            return {"engine": "stand-in"}

    said = {
        "A": {"c0": texts[0], "c1": texts[1], "c2": "alpha beta", "c3": "red"},
        "B": {"c0": None, "c1": None, "c2": "alpha beta gamma", "c3": "red green"},
    }
    table = {}
    for arm, transcripts in said.items():
        results = run_evaluation(cases, [_SaysWhatItIsTold(transcripts, heard)], ASR(), Encoder(), log=lambda *_: None)
        (tmp_path / f"{arm}.json").write_text(json.dumps(results))
        table[arm] = results["rows"][0]
    assert (table["A"]["hits"], table["B"]["hits"], table["B"]["failed"]) == (13, 5, 2)
    line = paired_eval.main([str(tmp_path / "A.json"), str(tmp_path / "B.json")])
    assert line.startswith("4 cases (failed: A 0, B 2, scored as silence as evaluate.py does")
    # the table's differences: 8 words fewer, 8 (capped) errors more
    assert table["B"]["errors"] - table["A"]["errors"] == 8 and "words -8 ± " in line and "capped errors +8 ± " in line
    # SIM, compute time and stops exist only for the cases that did not fail: paired there, and said so
    assert "(2 cases with SIM in both)" in line and "compute 1.00x (2 cases)" in line and line.endswith("stopped 2/2")


def test_paired_eval_pairs_dnsmos_over_the_cases_that_did_not_fail(tmp_path):
    """A failed case has no DNSMOS score: DNSMOS is paired over the others, and the count said, rather than dropped."""
    silence = _row(0, error="RuntimeError: boom", sim_prompt=None, compute_seconds=None, stopped=None)
    a = _write(tmp_path / "a.json", [_row(5, dnsmos={"p808": 3.0, "ovrl": 2.5}) for _ in range(3)])
    b = _write(tmp_path / "b.json", [silence] + [_row(5, dnsmos={"p808": 3.5, "ovrl": 2.5}) for _ in range(2)])
    line = paired_eval.main([a, b])
    assert line.startswith("3 cases (failed: A 0, B 1, ") and "words -5 ± " in line
    assert "DNSMOS P.808 +0.500 ± 0.000, OVRL +0.000 ± 0.000 (2 cases with DNSMOS in both)" in line


def test_paired_eval_refuses_runs_of_different_cases(tmp_path):
    """Two runs of cases files built with another seed share ids (split-number-speaker) but not texts: they were
    paired as if they were the same cases."""
    texts = ["the birch canoe", "glue the sheet", "rice is often"]
    a = _write(
        tmp_path / "a.json", [_row(1), _row(2), _row(3)], {"cases_sha256": "a" * 64, "cases_file": "seed0"}, texts
    )
    b = _write(tmp_path / "b.json", [_row(4)] * 3, {"cases_sha256": "b" * 64, "cases_file": "seed1"}, texts)
    with pytest.raises(SystemExit, match=r"a\.json and .*b\.json were scored on different cases files, seed0 .*seed1"):
        paired_eval.main([a, b])
    # results without the cases file's digest: the texts of a shared id tell
    c = _write(tmp_path / "c.json", [_row(4)] * 3, {}, ["completely other", "sentences", "here"])
    with pytest.raises(SystemExit, match="case c0 asks for 'the birch canoe' in the first and 'completely other'"):
        paired_eval.main([a, c])
    same = _write(tmp_path / "same.json", [_row(4)] * 3, {"cases_sha256": "a" * 64}, texts)
    assert paired_eval.main([a, same]).startswith("3 cases: words +6")


def test_paired_eval_says_when_only_the_overlap_of_two_case_sets_is_paired(tmp_path, capsys):
    texts = ["one", "two", "three"]
    a = _write(tmp_path / "a.json", [_row(1), _row(2), _row(3)], {"cases_sha256": "a" * 64}, texts)
    b = _write(tmp_path / "b.json", [_row(4), _row(4)], {"cases_sha256": "a" * 64}, texts[:2])  # --max-cases 2
    line = paired_eval.main([a, b])
    assert line.startswith("2 cases (only those in both: A has 3, B 2): words +5")
    assert "only the 2 cases both have are paired" in capsys.readouterr().err
    paired_eval.main([a, a])
    assert "note" not in capsys.readouterr().err


def test_paired_eval_counts_no_stops_for_rows_without_a_stop_head(tmp_path):
    """The teacher-forced and resynthesised rows carry stopped None: the line said "stopped 0/3"."""
    a = _write(tmp_path / "a.json", [_row(h, stopped=None) for h in (1, 2, 3)], key="tf")
    b = _write(tmp_path / "b.json", [_row(h, stopped=None) for h in (2, 3, 3)], key="tf")
    line = paired_eval.main([a, b, "--row", "tf"])
    assert line == "3 cases: words +2 ± 1, capped errors -2 ± 1, SIM +0.000 ± 0.000, compute 1.00x"


def test_paired_eval_warns_when_the_runs_used_different_asr_settings(tmp_path, capsys):
    fallback = {**WHISPER_BASE, "temperature": [0.0, 0.2, 0.4], "redecode_loops": {"compression_ratio_above": 2.4}}
    a = _write(tmp_path / "a.json", [_row(3)] * 3, {"asr": WHISPER_BASE})
    b = _write(tmp_path / "b.json", [_row(3)] * 3, {"asr": fallback})
    assert paired_eval.main([a, b]).startswith("3 cases: words +0")  # still paired, with a warning
    err = capsys.readouterr().err
    assert (
        "A's and B's words were recognised with different ASR settings (redecode_loops none, temperature [0.0]: A;"
        in err
    )
    assert "--asr-redecode-loops" in err
    threads = _write(tmp_path / "t.json", [_row(3)] * 3, {"asr": {**WHISPER_BASE, "cpu_threads": 4}})
    paired_eval.main([a, threads])  # how many threads decoded does not change what was heard
    assert "ASR" not in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------------
# compare_results.py


def _table_row(key: str, name: str, wer: float, settings: dict | None = None) -> dict:
    return {
        "key": key,
        "name": name,
        "settings": settings or {},
        "cases": 2,
        "failed": 0,
        "wer": wer,
        "wer_capped": wer,
        "recognised": 1 - wer,
        "ref_words": 10,
        "hits": round(10 * (1 - wer)),
    }


def _eval_dir(folder: Path, rows: list[dict], asr: dict | None = None) -> Path:
    folder.mkdir(parents=True)
    meta = {"cases_sha256": "s" * 64, "command": f"evaluate --out {folder.name}", **({"asr": asr} if asr else {})}
    cases = [{"id": f"c{i}", "rows": {row["key"]: {"sim_prompt": 0.5} for row in rows}} for i in range(2)]
    (folder / "results.json").write_text(json.dumps({"meta": meta, "rows": rows, "cases": cases}))
    return folder


def _names(text: str) -> list[str]:
    return [line.split(" | ")[0][2:] for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]


def test_compare_results_shows_every_pipelines_resynthesis(tmp_path):
    """Only the first entry's resynthesis row was shown, though each pipeline resynthesises through its own vocoder:
    B's 60% WER resynthesis hid behind A's 10%."""
    gt = _table_row("gt", "ground truth", 0.05)
    a = _eval_dir(
        tmp_path / "a",
        [
            gt,
            _table_row("resynth", "ground truth resynthesised", 0.10, {"source": "pipeline a"}),
            _table_row("model", "x", 0.3),
        ],
    )
    b = _eval_dir(
        tmp_path / "b",
        [
            gt,
            _table_row("resynth", "ground truth resynthesised", 0.60, {"source": "pipeline b"}),
            _table_row("model", "x", 0.5),
        ],
    )
    text = compare_results.main([f"A={a}", f"B={b}"])
    assert _names(text) == [
        "ground truth",  # one recording, one recogniser: once
        "ground truth resynthesised: A (pipeline a)",
        "A",
        "ground truth resynthesised: B (pipeline b)",
        "B",
    ]
    assert "| 60.0% |" in [line for line in text.splitlines() if line.startswith("| ground truth resynthesised: B")][0]
    # one pipeline evaluated twice: its resynthesis once, under its plain name
    again = compare_results.main([f"A={a}", f"A2={a}"])
    assert _names(again) == ["ground truth", "ground truth resynthesised", "A", "A2"]


def test_compare_results_warns_and_shows_the_ground_truth_per_asr_settings(tmp_path, capsys):
    """Entries recognised by other ASR settings sat side by side without a word, under one entry's ground truth."""
    rows = [_table_row("gt", "ground truth", 0.05), _table_row("model", "x", 0.3)]
    a = _eval_dir(tmp_path / "a", rows, WHISPER_BASE)
    b = _eval_dir(tmp_path / "b", rows, {**WHISPER_BASE, "model_dir": "/models/whisper-large"})
    text = compare_results.main([f"A={a}", f"B={b}"])
    message = (
        "The entries' WERs were measured with different ASR settings (model_dir /root/.cache/ditar/whisper-base: A; "
        "model_dir /models/whisper-large: B): their WER columns do not compare"
    )
    assert message in text and message in capsys.readouterr().err
    assert _names(text) == ["ground truth: A", "A", "ground truth: B", "B"]
    threads = _eval_dir(tmp_path / "t", rows, {**WHISPER_BASE, "cpu_threads": 4})
    text = compare_results.main([f"A={a}", f"T={threads}"])
    assert "ASR settings" not in text and _names(text) == ["ground truth", "A", "T"]


# ----------------------------------------------------------------------------------------------------------------------
# reuse of earlier results by the evaluation scripts

FAKE_PYTHON = """#!{python}
# stands in for python in the evaluation scripts: runs their checks (examples/research/stale_results.py), makes an
# arm's folder for conversion/interpolate_weights.py, and writes for examples/evaluate.py a results.json whose meta is
# what evaluate.py records of the arguments the script gave it
import hashlib, json, os, sys

args = sys.argv[1:]
if args[:1] in (["-"], ["-c"], ["examples/research/stale_results.py"]):
    os.execv(sys.executable, [sys.executable, *args])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if args[:1] == ["conversion/interpolate_weights.py"]:  # BASE FINETUNED OUT ...: an arm's pipeline folder
    os.makedirs(args[3], exist_ok=True)
    open(os.path.join(args[3], "model_index.json"), "w").write("{{}}")
if args[:1] == ["examples/evaluate.py"]:
    option = lambda name: args[args.index(name) + 1] if name in args else None  # noqa: E731
    out, cases, max_cases = option("--out"), option("--cases"), option("--max-cases")
    os.makedirs(out, exist_ok=True)
    meta = {{
        "cwd": os.getcwd(),
        "cases_file": os.path.abspath(cases),
        "cases_sha256": hashlib.sha256(open(cases, "rb").read()).hexdigest(),
        "settings": {{"pipeline": option("--pipeline"), "rows": option("--rows"),
                     "max_cases": None if max_cases is None else int(max_cases)}},
        "model_weights_sha256": None if option("--pipeline") else os.environ.get("FAKE_WEIGHTS"),
    }}
    json.dump({{"meta": meta, "rows": [], "cases": []}}, open(os.path.join(out, "results.json"), "w"))
"""


def _fake_python(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "python"
    path.write_text(FAKE_PYTHON.format(python=sys.executable))
    path.chmod(0o755)
    return path


def _script_tree(root: Path, script: str, cases: str) -> Path:
    (root / "examples" / "scripts").mkdir(parents=True)
    shutil.copy(EXAMPLES / "scripts" / script, root / "examples" / "scripts" / script)
    (root / "examples" / "research").mkdir()
    shutil.copy(EXAMPLES / "research" / "stale_results.py", root / "examples" / "research")
    (root / cases).parent.mkdir(parents=True)
    (root / cases).write_text('{"id": "c0"}\n{"id": "c1"}\n')
    return root / "examples" / "scripts" / script


def _evaluations(log: Path) -> list[str]:
    calls = log.read_text().splitlines() if log.is_file() else []
    log.unlink(missing_ok=True)
    return [call for call in calls if call.startswith("examples/evaluate.py")]


def test_gpu_session_script_evaluates_again_when_the_kept_results_were_made_otherwise(tmp_path):
    """A results.json from an earlier call was reused whatever MAX_CASES or cases file made it."""
    root = tmp_path / "repo"
    script = _script_tree(root, "evaluate_gpu_session.sh", "data/eval/s1/cases.jsonl")
    (tmp_path / "returned" / "model").mkdir(parents=True)
    (tmp_path / "returned" / "model" / "config.json").write_text("{}")
    log = tmp_path / "calls.log"
    env = {
        **os.environ,
        "PYTHON": str(_fake_python(tmp_path / "bin")),
        "FAKE_LOG": str(log),
        "SETS": "s1",
        "STUDENT_SETS": "",
        "ALPHAS": "1.0",
        "JOBS": "1",
    }
    env.pop("MAX_CASES", None)

    def run(**extra):
        result = subprocess.run(
            ["bash", str(script), str(tmp_path / "returned")], env={**env, **extra}, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout, _evaluations(log)

    assert len(run()[1]) == 2  # the default and the model arm
    assert run()[1] == []  # made as they would be now: kept
    out, calls = run(MAX_CASES="1")
    assert len(calls) == 2 and all("--max-cases 1" in call for call in calls)
    said = (
        "evaluating default on s1 again: outputs/gpu_eval/eval/default-s1/results.json was made with --max-cases None"
    )
    assert f"{said} (now 1)" in out
    assert run(MAX_CASES="1")[1] == []
    (root / "data/eval/s1/cases.jsonl").write_text('{"id": "c2"}\n')
    out, calls = run(MAX_CASES="1")
    assert len(calls) == 2 and "was made with another cases file" in out

    # the files of a later device call landed in the same folder: the arm is built again and evaluated again, the
    # default is kept (its arm folder was reused whatever model it had been made from)
    (tmp_path / "returned" / "model" / "model.safetensors").write_bytes(b"other weights")
    out, calls = run(MAX_CASES="1")
    assert "building arm model-a1.0 again" in out
    assert len(calls) == 1 and "--label model-a1.0" in calls[0]
    assert run(MAX_CASES="1")[1] == []


def test_finetune_new_voices_script_evaluates_again_when_the_kept_results_were_made_otherwise(tmp_path):
    from modeling_ditar.hub_utils import EMBEDDED_DEFAULT, model_weights_fingerprint

    root = tmp_path / "repo"
    script = _script_tree(root, "finetune_new_voices.sh", "data/eval/newvoices18/cases.jsonl")
    (root / "data/newvoices").mkdir(parents=True)
    (root / "data/newvoices/dataset_dict.json").write_text("{}")
    (root / "runs/finetune-new-voices/final/model").mkdir(parents=True)
    log = tmp_path / "calls.log"
    weights = model_weights_fingerprint(EMBEDDED_DEFAULT)["model_weights_sha256"]
    env = {
        **os.environ,
        "PATH": f"{_fake_python(tmp_path / 'bin').parent}:{os.environ['PATH']}",
        "FAKE_LOG": str(log),
        "FAKE_WEIGHTS": weights,
    }

    def run():
        result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout, _evaluations(log)

    assert len(run()[1]) == 2  # before and after
    assert run()[1] == []
    before = root / "outputs/eval/newvoices-before/results.json"
    results = json.loads(before.read_text())
    results["meta"]["model_weights_sha256"] = "0" * 64  # the shipped default has changed since
    before.write_text(json.dumps(results))
    out, calls = run()
    assert len(calls) == 1 and "--out outputs/eval/newvoices-before" in calls[0]
    assert "evaluating again: outputs/eval/newvoices-before/results.json was made with other model weights" in out
    (root / "data/eval/newvoices18/cases.jsonl").write_text('{"id": "c2"}\n')
    assert len(run()[1]) == 2
    digest = hashlib.sha256((root / "data/eval/newvoices18/cases.jsonl").read_bytes()).hexdigest()
    assert json.loads(before.read_text())["meta"]["cases_sha256"] == digest

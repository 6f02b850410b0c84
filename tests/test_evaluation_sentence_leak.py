"""examples/research/evaluation_sentence_leak.py: the cases split by whether training read their sentences."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "research"))

import evaluation_sentence_leak as leak  # noqa: E402


def _case(case_id: str, text: str, rows: dict) -> dict:
    return {"id": case_id, "target_text": text, "rows": rows}


def _words(errors: int, ref: int = 5) -> dict:
    return {"words": {"errors": errors, "ref_words": ref, "hits": ref - min(errors, ref)}}


def test_cases_split_by_the_sentences_training_read(tmp_path, monkeypatch):
    model, truth = [], []
    for i, (text, errors, resynth) in enumerate(
        [("read one", 3, 1), ("read two", 2, 1), ("new one", 4, 1), ("new two", 9, 1)]
    ):
        model.append(_case(f"c{i}", text, {"model": _words(errors)}))
        truth.append(_case(f"c{i}", text, {"resynth": _words(resynth), "gt": _words(0)}))
    (tmp_path / "m.json").write_text(json.dumps({"cases": model}))
    (tmp_path / "g.json").write_text(json.dumps({"cases": truth}))
    monkeypatch.setattr(leak, "planned_train_texts", lambda argv: {"read one", "read two"})
    text = leak.main([str(tmp_path / "m.json"), str(tmp_path / "g.json"), "--", "--out", "X"])
    read, unread, difference = text.splitlines()
    # read: 3 and 2 errors of 10 words, 2 and 1 beyond resynthesis; never read: 4 and 5 (capped at 5 words) of 10
    assert read.startswith("target read in training: 2 cases, model WER 50.0%") and "per case 1.50 ± 0.50" in read
    assert unread.startswith("target never read: 2 cases, model WER 130.0%") and "per case 3.50 ± 0.50" in unread
    assert difference == "read - never read: -2.00 ± 0.71 errors per case"

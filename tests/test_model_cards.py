"""Model cards (model_cards/: template, generator, the embedded default's card) and push_to_hub up to the upload.

The Hub is never contacted: the metadata is parsed back with huggingface_hub, and push_to_hub runs against a stand-in
for `HfApi` that records the repository and commit it would create.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import CommitOperationAdd, ModelCard
from pipeline_helpers import get_dummy_pipeline

from modeling_ditar import hub_utils

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CARD = ROOT / "model_cards" / "ditar-espeak-tiny.md"
RESULTS = {
    "meta": {
        "num_cases": 10,
        "date": "2026-11-25T12:00:00",
        "settings": {"steps": 10, "guidance_scale": 2.0, "temperature": 0.5, "seed": 0},
    },
    "rows": [
        {"key": "gt", "name": "ground truth", "cases": 10, "wer": 0.021, "wer_capped": 0.021, "sim_prompt": 0.86},
        {
            "key": "model",
            "name": "DiTAR espeak tiny",
            "cases": 10,
            "wer": 0.1834,
            "wer_capped": 0.15,
            "sim_prompt": 0.7456,
            "stop_rate": 0.9,
            "rtf": 0.31,
        },
    ],
}


def make_card_module():
    spec = importlib.util.spec_from_file_location("make_card", ROOT / "model_cards" / "make_card.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def results_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(RESULTS))
    return path


def test_embedded_default_card_has_valid_metadata_and_marked_placeholders():
    card = ModelCard.load(DEFAULT_CARD)
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-to-speech"
    assert data.license == "apache-2.0" and data.language == ["en"]
    assert {"text-to-speech", "ditar", "custom_code"} <= set(data.tags)
    results = DEFAULT_CARD.parent / "results" / "ditar-espeak-tiny.json"
    if not results.is_file():  # no invented numbers: the model-index waits for examples/evaluate.py
        assert data.eval_results is None
        assert "_placeholder_" in card.text and "every number above is a placeholder" in card.text
        return
    measured = json.loads(results.read_text())  # the card's numbers are the committed evaluation's
    wer = {r.metric_type: r.metric_value for r in data.eval_results}["wer"]
    model_row = next(row for row in measured["rows"] if row["key"] == "model")
    assert "_placeholder_" not in card.text and abs(wer - round(100 * model_row["wer"], 2)) < 0.01


def test_embedded_default_card_is_up_to_date_with_the_generator(tmp_path):
    out = tmp_path / "card.md"
    results = DEFAULT_CARD.parent / "results" / "ditar-espeak-tiny.json"  # examples/evaluate.py's results.json
    extra = ["--results", str(results)] if results.is_file() else []
    make_card_module().main(["--preset", "embedded-default", "--out", str(out), *extra])
    assert out.read_text() == DEFAULT_CARD.read_text(), (
        "model_cards/ditar-espeak-tiny.md is stale: python model_cards/make_card.py --preset embedded-default "
        f"--out model_cards/ditar-espeak-tiny.md --force {' '.join(extra)}"
    )


def test_the_embedded_default_carries_its_card():
    """The embedded pipeline folder's README.md is the card that `push_to_hub` / the Hub shows for it."""
    embedded = ROOT / "modeling_ditar" / "default" / "README.md"
    assert embedded.read_text() == DEFAULT_CARD.read_text(), (
        "modeling_ditar/default/README.md differs from model_cards/ditar-espeak-tiny.md: "
        "cp model_cards/ditar-espeak-tiny.md modeling_ditar/default/README.md"
    )


def test_results_fill_the_default_card(tmp_path, results_file):
    out = tmp_path / "card.md"
    make_card_module().main(
        [
            "--preset",
            "embedded-default",
            "--results",
            str(results_file),
            "--out",
            str(out),
            "--datasets",
            "org/espeak-corpus",
            "--base-model",
            "Qwen/Qwen2.5-0.5B",
        ]
    )
    card = ModelCard.load(out)
    results = {r.metric_type: r for r in card.data.eval_results}
    assert results["wer"].metric_value == 18.34 and results["wer"].metric_name == "WER (%)"
    assert results["speaker_similarity"].metric_value == 0.746
    assert results["wer"].task_type == "text-to-speech" and results["wer"].dataset_split == "test"
    assert card.data.model_name == "DiTAR espeak tiny (embedded default)"
    assert card.data.datasets == ["org/espeak-corpus"] and card.data.base_model == "Qwen/Qwen2.5-0.5B"
    assert "_placeholder_" not in card.text
    assert "| DiTAR espeak tiny | 10 | 18.34 | 15.00 | 0.746 | 0.90 | 0.31 |" in card.text
    assert "| ground truth | 10 | 2.10 |" in card.text
    # the YAML itself round-trips through huggingface_hub
    reparsed = ModelCard(card.content)
    assert reparsed.data.to_dict()["model-index"][0]["results"][0]["metrics"][0]["value"] == 18.34


def test_generator_refuses_to_overwrite_and_checks_its_inputs(tmp_path, results_file):
    make_card = make_card_module()
    out = tmp_path / "card.md"
    out.write_text("mine")
    with pytest.raises(SystemExit, match="pass --force"):
        make_card.main(["--out", str(out)])
    assert out.read_text() == "mine"
    with pytest.raises(SystemExit, match="no such file"):
        make_card.main(["--out", str(tmp_path / "x.md"), "--results", str(tmp_path / "missing.json")])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"key": "gt", "name": "ground truth"}]}))
    with pytest.raises(SystemExit, match=r"^error: --results .*bad.json: .*no 'model' row.*--rows gt,model"):
        make_card.main(["--out", str(tmp_path / "y.md"), "--results", str(bad)])


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"id": "a", "text": "hi"}\n{"id": "b", "text": "ho"}\n', "not a JSON file"),  # a cases.jsonl
        (json.dumps({"dataset": "data/corpus", "model": {}}), r"no 'rows' list"),  # a train_config.json
        (
            json.dumps({"rows": [{"key": "model", "name": "DiTAR", "cases": 2, "failed": 2, "wer": None}]}),
            "neither WER nor SIM; all 2 of its cases failed",
        ),
    ],
)
def test_a_wrong_results_file_is_one_error_line(tmp_path, content, message):
    """These ended in tracebacks (JSONDecodeError, ValueError) instead of naming the file and what to give."""
    wrong = tmp_path / "wrong.json"
    wrong.write_text(content)
    options = [["--results", str(wrong)]]
    if "failed" not in message:  # a further table needs no model row
        options.append(["--extra-results", "Other voices", str(wrong)])
    for option in options:
        with pytest.raises(SystemExit, match=f"^error: {option[0]} .*wrong.json: .*{message}") as raised:
            make_card_module().main(["--out", str(tmp_path / "card.md"), *option])
        assert "\n" not in str(raised.value.code)
    assert not (tmp_path / "card.md").exists()


def test_failed_cases_are_shown_beside_the_numbers_they_leave_out(tmp_path, capsys):
    """A row with 3 of 4 cases failed read "| DiTAR | 4 | 76.67 | ... | 0.807 |", SIM measured on one case."""
    failed = dict(RESULTS, rows=[*RESULTS["rows"][:1], {**RESULTS["rows"][1], "failed": 3, "sim_prompt_n": 7}])
    table = hub_utils.results_table(failed)
    assert "| DiTAR espeak tiny | 10 (3 failed) | 18.34 | 15.00 | 0.746 (n=7) | 0.90 | 0.31 |" in table
    assert "| ground truth | 10 | 2.10 |" in table and "Some cases failed" in table
    assert "failed" not in hub_utils.results_table(RESULTS) and "(n=" not in hub_utils.results_table(RESULTS)
    path = tmp_path / "failed.json"
    path.write_text(json.dumps(failed))
    make_card_module().main(["--out", str(tmp_path / "card.md"), "--results", str(path)])
    assert "warning: 3 of the 10 cases of row 'model' (DiTAR espeak tiny) failed" in capsys.readouterr().err


def test_a_card_for_a_pipeline_warns_when_the_results_are_of_another_model(tmp_path, capsys):
    """make_card --pipeline X --results R never looked at which model R measured; the same weights saved elsewhere
    (an evaluated training folder, its converted copy) are the same model, another model's weights are not."""
    import torch

    pipe = get_dummy_pipeline()
    pipe.save_pretrained(tmp_path / "evaluated")
    pipe.save_pretrained(tmp_path / "copy")
    with torch.no_grad():
        pipe.model.stop_head.weight.add_(1.0)
    pipe.save_pretrained(tmp_path / "other")
    results = dict(RESULTS, meta={**RESULTS["meta"], "cwd": str(tmp_path), "settings": {"pipeline": "evaluated"}})
    (tmp_path / "results.json").write_text(json.dumps(results))
    make_card = make_card_module()
    for folder, warned in (("copy", False), ("other", True)):
        argv = ["--out", str(tmp_path / f"{folder}.md"), "--pipeline", str(tmp_path / folder)]
        make_card.main([*argv, "--results", str(tmp_path / "results.json")])
        err = capsys.readouterr().err
        assert ("warning: the results for the card were measured on" in err) == warned, err
        assert not warned or "whose model weights differ" in err


def test_a_card_matches_results_by_their_weight_fingerprint_after_the_evaluated_folder_changed(tmp_path, capsys):
    """Results carrying the evaluated weights' fingerprint (evaluate.py writes it) were still matched by the evaluated
    folder as it is now: deleted, it left only the paths to compare (a warning for the converted copy of the evaluated
    weights); saved over, it stood for weights nobody evaluated (no warning)."""
    import shutil

    import torch

    pipe = get_dummy_pipeline()
    pipe.save_pretrained(tmp_path / "evaluated")
    pipe.save_pretrained(tmp_path / "copy")
    settings = {"pipeline": "evaluated"}
    fingerprint = hub_utils.model_weights_fingerprint(tmp_path / "evaluated")
    results = dict(RESULTS, meta={**RESULTS["meta"], "cwd": str(tmp_path), "settings": settings, **fingerprint})
    (tmp_path / "results.json").write_text(json.dumps(results))
    make_card = make_card_module()

    def warning_for(folder):
        argv = ["--out", str(tmp_path / f"{folder}.md"), "--pipeline", str(tmp_path / folder), "--force"]
        make_card.main([*argv, "--results", str(tmp_path / "results.json")])
        return capsys.readouterr().err

    shutil.rmtree(tmp_path / "evaluated")
    assert "warning" not in warning_for("copy")
    with torch.no_grad():
        pipe.model.stop_head.weight.add_(1.0)
    pipe.save_pretrained(tmp_path / "evaluated")  # another model saved where the evaluated one was
    err = warning_for("evaluated")
    assert "warning: the results for the card were measured on" in err and "whose weights at the evaluation" in err


def test_builtin_template_gives_the_same_metadata(monkeypatch):
    with_repo = hub_utils.render_model_card(results=RESULTS, repo_id="org/x")
    monkeypatch.setattr(hub_utils, "REPO_TEMPLATE", Path("/nonexistent/template.md"))
    builtin = hub_utils.render_model_card(results=RESULTS, repo_id="org/x")
    assert builtin.data.to_dict() == with_repo.data.to_dict()
    assert 'DiTARPipeline.from_pretrained("org/x")' in builtin.text


def test_card_kinds():
    model_card = hub_utils.render_model_card(kind="model", repo_id="org/m")
    assert model_card.data.library_name == "transformers"
    assert 'AutoModel.from_pretrained("org/m", trust_remote_code=True)' in model_card.text
    with pytest.raises(ValueError, match="kind must be"):
        hub_utils.render_model_card(kind="vocoder")


# ----------------------------------------------------------------------------------------------------------------------
# push_to_hub: everything up to the upload
# ----------------------------------------------------------------------------------------------------------------------


class RecordingApi:
    """Stands in for `huggingface_hub.HfApi`: records what would be sent and checks the files exist at commit time."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id, private, exist_ok))
        return SimpleNamespace(repo_id=repo_id)

    def create_branch(self, repo_id, branch, exist_ok=False, **kwargs):
        self.calls.append(("create_branch", repo_id, branch, exist_ok))

    def list_repo_files(self, repo_id, revision=None, repo_type=None, **kwargs):
        return []  # a new repository: nothing to delete

    def create_commit(
        self, repo_id, operations, commit_message, commit_description=None, revision=None, create_pr=False, **kwargs
    ):
        files = {}
        for op in operations:
            assert isinstance(op, CommitOperationAdd)
            files[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()  # still there during the commit
        self.calls.append(("create_commit", repo_id, commit_message, revision, create_pr))
        self.files = files
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")


def test_pipeline_push_to_hub_uploads_the_folder_with_its_card(results_file):
    api = RecordingApi()
    pipe = get_dummy_pipeline()
    info = pipe.push_to_hub(
        "org/ditar-tiny",
        api=api,
        private=True,
        results=str(results_file),
        commit_message="first upload",
        create_pr=True,
    )
    assert info.commit_url.endswith("/commit/0")
    assert api.calls[0] == ("create_repo", "org/ditar-tiny", True, True)
    assert api.calls[1] == ("create_commit", "org/ditar-tiny", "first upload", None, True)
    files = api.files
    for expected in (
        "README.md",
        "model_index.json",
        "pipeline_ditar.py",
        "model/model.safetensors",
        "model/config.json",
        "model/modeling_ditar.py",
        "processor/processor_config.json",
        "processor/processing_ditar.py",
        "vocoder/vocoder_griffinlim.py",
        "scheduler/scheduler_config.json",
        "default_voice/prompt.wav",
        "default_voice/prompt.txt",
    ):
        assert expected in files, expected
    assert not any("__pycache__" in name or name.startswith(".") for name in files)
    card = ModelCard(files["README.md"].decode())
    assert card.data.library_name == "transformers" and card.data.eval_results[0].metric_value == 18.34
    assert 'DiTARPipeline.from_pretrained("org/ditar-tiny")' in card.text


def test_model_and_processor_push_to_hub(tmp_path):
    pipe = get_dummy_pipeline()
    api = RecordingApi()
    hub_utils.push_to_hub(pipe.model, "org/ditar-model", api=api)
    assert {
        "README.md",
        "config.json",
        "model.safetensors",
        "modeling_ditar.py",
        "configuration_ditar.py",
        "locdit.py",
    } <= set(api.files)
    assert ModelCard(api.files["README.md"].decode()).data.library_name == "transformers"
    assert api.calls[1][2] == "Upload DiTAR model"
    api = RecordingApi()
    pipe.processor.push_to_hub("org/ditar-processor", api=api)
    assert {
        "README.md",
        "processor_config.json",
        "tokenizer.json",
        "processing_ditar.py",
        "feature_extraction_ditar.py",
    } <= set(api.files)


def test_commit_operations_skip_hidden_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "w.bin").write_bytes(b"1")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x").write_text("x")
    (tmp_path / "README.md").write_text("hi")
    assert [op.path_in_repo for op in hub_utils.commit_operations(tmp_path)] == ["README.md", "a/w.bin"]


def test_extra_results_are_further_tables_outside_the_model_index(tmp_path, results_file):
    ood = dict(
        RESULTS,
        rows=[
            {
                "key": "model",
                "name": "DiTAR on flite",
                "cases": 3,
                "wer": 0.5,
                "wer_capped": 0.4,
                "sim_prompt": 0.61,
                "stop_rate": 1.0,
                "rtf": 0.4,
            }
        ],
    )
    ood_file = tmp_path / "ood.json"
    ood_file.write_text(json.dumps(ood))
    out = tmp_path / "card.md"
    make_card_module().main(
        ["--results", str(results_file), "--extra-results", "Out-of-domain voices", str(ood_file), "--out", str(out)]
    )
    card = ModelCard.load(out)
    assert "### Out-of-domain voices" in card.text
    assert "| DiTAR on flite | 3 | 50.00 | 40.00 | 0.610 | 1.00 | 0.40 |" in card.text
    assert (
        card.text.index("| DiTAR espeak tiny |")
        < card.text.index("### Out-of-domain voices")
        < card.text.index("## Use it")
    )
    assert {r.metric_value for r in card.data.eval_results} == {18.34, 0.746}  # only the main results
    with pytest.raises(SystemExit, match="no such file"):
        make_card_module().main(["--extra-results", "x", str(tmp_path / "missing.json"), "--out", str(tmp_path / "y")])


def test_dnsmos_scores_become_two_columns_of_the_results_table():
    rows = [
        {"name": "ground truth", "cases": 2, "wer": 0.1, "sim_prompt": 0.9, "dnsmos_p808": 3.44, "dnsmos_ovrl": 2.57},
        {"name": "DiTAR", "cases": 2, "wer": 0.4, "sim_prompt": 0.7, "stop_rate": 1.0, "rtf": 0.3},
    ]
    table = hub_utils.results_table({"rows": rows})
    assert "| RTF | DNSMOS P.808 | DNSMOS OVRL |\n|---|---|---|---|---|---|---|---|---|" in table
    assert "| ground truth | 2 | 10.00 | – | 0.900 | – | – | 3.44 | 2.57 |" in table
    assert "| DiTAR | 2 | 40.00 | – | 0.700 | 1.00 | 0.30 | – | – |" in table
    assert "DNSMOS" not in hub_utils.results_table({"rows": rows[1:]})

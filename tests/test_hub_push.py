"""push_to_hub / push_adapter_to_hub against a stand-in repository: pushing again, branches, refusals before the
repository is created, and the dtype the transformers entry points compute in.

The Hub is never contacted: `HubRepo` keeps a repository's files per branch and applies commits as the Hub does.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import torch
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import RevisionNotFoundError
from pipeline_helpers import VOICE_TEXT, get_dummy_pipeline, tone
from test_hub_vocoders import hifigan_pipeline

from modeling_ditar import DiTARPipeline, build_pipeline, hub_utils
from modeling_ditar.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, default_lora_config, push_adapter_to_hub


def _not_found(what: str) -> RevisionNotFoundError:
    request = httpx.Request("GET", "https://huggingface.co/api/models/org/x")
    return RevisionNotFoundError(f"Revision Not Found: {what}", response=httpx.Response(404, request=request))


class HubRepo:
    """Stands in for `huggingface_hub.HfApi` on one model repository: files per branch; a commit adds and deletes
    files on its branch, and a commit to (or a listing of) a branch that does not exist fails, as on the Hub."""

    def __init__(self, files: dict[str, bytes] | None = None, empty: bool = False):
        self.calls = []
        self.branches = {} if empty else {"main": {".gitattributes": b"*.safetensors filter=lfs\n", **(files or {})}}

    def create_repo(self, repo_id, private=None, exist_ok=False, **kwargs):
        self.calls.append(("create_repo", repo_id))
        return SimpleNamespace(repo_id=repo_id)

    def create_branch(self, repo_id, branch, exist_ok=False, **kwargs):
        self.calls.append(("create_branch", branch, exist_ok))
        assert exist_ok or branch not in self.branches
        self.branches.setdefault(branch, dict(self.branches.get("main", {})))

    def list_repo_files(self, repo_id, revision=None, repo_type=None, **kwargs):
        assert repo_type == "model"
        self.calls.append(("list_repo_files", revision))
        if (revision or "main") not in self.branches:
            raise _not_found(revision or "main")
        return sorted(self.branches[revision or "main"])

    def create_commit(self, repo_id, operations, commit_message, revision=None, create_pr=False, **kwargs):
        branch = revision or "main"
        if branch not in self.branches and not (branch == "main" and not self.branches):
            raise _not_found(branch)
        files = dict(self.branches.get(branch, {}))
        for op in operations:
            if isinstance(op, CommitOperationDelete):
                assert op.path_in_repo in files, f"deletes {op.path_in_repo}, which is not in the repository"
                del files[op.path_in_repo]
            else:
                assert isinstance(op, CommitOperationAdd)
                files[op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
        self.branches[branch] = files
        self.calls.append(("create_commit", revision))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    def files(self, branch: str = "main") -> set[str]:
        return set(self.branches[branch])

    def dump(self, folder: Path, branch: str = "main") -> Path:
        for name, data in self.branches[branch].items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return folder


def tree(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def test_pushing_again_leaves_the_repository_as_the_new_folder(tmp_path):
    """v1 (Griffin-Lim, a default voice, a root model.safetensors) then v2 (HiFi-GAN, a root shard index, no voice):
    v1's root weights would shadow v2's index and its voice would stay the default. Files the package never writes
    stay."""
    kept = {".gitattributes": b"*.safetensors filter=lfs\n", "NOTES.md": b"mine", "samples/demo.wav": b"RIFF"}
    repo = HubRepo(files=kept)
    v2 = hifigan_pipeline()
    v1 = build_pipeline(copy.deepcopy(v2.model), copy.deepcopy(v2.processor))  # Griffin-Lim
    v1.set_default_voice(tone(0.1, sr=16000), VOICE_TEXT, sampling_rate=16000)
    v1.push_to_hub("org/ditar", api=repo)
    assert {"model.safetensors", "default_voice/prompt.wav"} <= repo.files()
    v2.push_to_hub("org/ditar", api=repo)
    v2.save_pretrained(tmp_path / "local")
    assert repo.files() == tree(tmp_path / "local") | {"README.md"} | set(kept)
    assert "model.safetensors" not in repo.files() and hub_utils.SAFE_WEIGHTS_INDEX in repo.files()
    pushed = DiTARPipeline.from_pretrained(repo.dump(tmp_path / "snapshot"))
    assert pushed.default_voice is None and type(pushed.vocoder).__name__ == "SpeechT5HifiGanVocoder"


def test_stale_files_are_the_ones_the_package_writes(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "config.json").write_text("{}")
    repo = [
        ".gitattributes",
        "README.md",
        "config.json",
        "model/config.json",
        "model/model-00001-of-00002.safetensors",
        "model.safetensors",
        "pytorch_model.bin",
        "model.safetensors.index.json",
        "adapter_config.json",
        "tokenizer.json",
        "vocab.json",
        "pipeline_ditar.py",
        "default_voice/prompt.wav",
        "vae/config.json",
        "examples/demo.py",
        "results.json",
        "images/waveform.png",
    ]
    assert hub_utils.stale_files(repo, tmp_path) == [
        "adapter_config.json",
        "default_voice/prompt.wav",
        "model.safetensors",
        "model.safetensors.index.json",
        "model/model-00001-of-00002.safetensors",
        "pipeline_ditar.py",
        "pytorch_model.bin",
        "tokenizer.json",
        "vae/config.json",
        "vocab.json",
    ]


def test_a_push_to_a_new_branch_creates_it_first(tmp_path):
    pipe = get_dummy_pipeline()
    repo = HubRepo(files={"model/old-shard.safetensors": b"0"})
    pipe.push_to_hub("org/ditar", api=repo, revision="dev")
    names = [c[0] for c in repo.calls]
    assert names.index("create_branch") < names.index("list_repo_files") < names.index("create_commit")
    assert ("create_branch", "dev", True) in repo.calls and ("list_repo_files", "dev") in repo.calls
    assert "model/old-shard.safetensors" not in repo.files("dev") and "model_index.json" in repo.files("dev")
    assert repo.files("main") == {".gitattributes", "model/old-shard.safetensors"}  # main as it was
    repo = HubRepo()  # a pull request's ref is not a branch to create
    repo.branches["refs/pr/1"] = {}
    hub_utils.push_to_hub(pipe.processor, "org/ditar", api=repo, revision="refs/pr/1")
    assert "create_branch" not in [c[0] for c in repo.calls] and "processor_config.json" in repo.files("refs/pr/1")
    # a repository without any commit yet has nothing to delete
    repo = HubRepo(empty=True)
    hub_utils.push_to_hub(pipe.processor, "org/ditar", api=repo)
    assert "processor_config.json" in repo.files()


def test_push_adapter_to_a_new_branch_creates_it_first():
    pipe = get_dummy_pipeline()
    pipe.model.add_adapter(default_lora_config(rank=2), adapter_name="me")
    repo = HubRepo()
    push_adapter_to_hub(pipe.model, "org/voice", api=repo, revision="dev")
    assert ("create_branch", "dev", True) in repo.calls
    assert {ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md"} <= repo.files("dev")


@pytest.mark.parametrize(
    "kwargs, kind, unknown",
    [
        (dict(safe_serialization=True), "pipeline", "'safe_serialization'"),
        (dict(push_to_hub=True, tag="x"), "pipeline", "'push_to_hub', 'tag'"),
        (dict(remote_code=False), "processor", "'remote_code'"),
        (dict(variant="fp16"), "processor", "'variant'"),
    ],
)
def test_unknown_keywords_are_refused_before_the_repository_is_created(kwargs, kind, unknown):
    pipe = get_dummy_pipeline()
    obj = pipe if kind == "pipeline" else pipe.processor
    repo = HubRepo()
    with pytest.raises(TypeError, match=f"unexpected keyword argument\\(s\\) {unknown}; it takes .*results"):
        obj.push_to_hub("org/ditar", api=repo, **kwargs)
    assert repo.calls == []


def test_save_keywords_reach_save_pretrained():
    pipe = get_dummy_pipeline()
    repo = HubRepo()
    pipe.push_to_hub("org/ditar", api=repo, remote_code=False, variant="fp16", tags=["mine"])
    assert "model/model.fp16.safetensors" in repo.files() and "pipeline_ditar.py" not in repo.files()
    repo = HubRepo()
    hub_utils.push_to_hub(pipe.model, "org/model", api=repo, max_shard_size="20KB")
    assert "model.safetensors.index.json" in repo.files() and "model.safetensors" not in repo.files()


def test_failures_come_before_the_repository_is_created(tmp_path):
    pipe = get_dummy_pipeline()
    repo = HubRepo()
    with pytest.raises(FileNotFoundError):
        pipe.push_to_hub("org/ditar", api=repo, results=str(tmp_path / "missing.json"))
    pipe.model.add_adapter(default_lora_config(rank=2), adapter_name="me")
    with pytest.raises(ValueError, match="LoRA adapters are loaded"):
        pipe.push_to_hub("org/ditar", api=repo)
    assert repo.calls == []


def test_push_adapter_refuses_fused_adapters_and_folders_without_one(tmp_path):
    pipe = get_dummy_pipeline()
    pipe.model.add_adapter(default_lora_config(rank=2), adapter_name="me")
    pipe.model.save_adapter(tmp_path / "adapter")
    pipe.fuse_lora()
    repo = HubRepo()
    with pytest.raises(ValueError, match="fused"):
        push_adapter_to_hub(pipe.model, "org/voice", api=repo)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        push_adapter_to_hub(tmp_path / "adaptr", "org/voice", api=repo)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / ADAPTER_CONFIG).write_text("{}")
    with pytest.raises(FileNotFoundError, match=f"has no {ADAPTER_WEIGHTS}"):
        push_adapter_to_hub(tmp_path / "half", "org/voice", api=repo)
    assert repo.calls == []
    push_adapter_to_hub(tmp_path / "adapter", "org/voice", api=repo)
    assert {ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md"} <= repo.files()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_entry_points_compute_a_half_precision_model_in_float32(tmp_path, dtype):
    """The pipeline computes a model stored in either half precision in float32, and so do the transformers entry
    points of its folder (`pipeline("text-to-speech")`, `dtype="auto"`)."""
    pipe = get_dummy_pipeline().to(dtype)
    pipe.save_pretrained(tmp_path)
    stored = str(dtype).removeprefix("torch.")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["dtype"] == stored
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float32"
    assert DiTARPipeline.from_pretrained(tmp_path).model.dtype == torch.float32


def test_save_pretrained_with_push_to_hub_passes_the_branch_card_and_save_settings_on(tmp_path):
    """`save_pretrained(folder, push_to_hub=True, ...)` passed only five keywords to the push: revision (the commit went
    to main), commit_description, results and the save settings (variant, remote_code) were dropped."""
    repo = HubRepo()
    commits = []
    create_commit = repo.create_commit

    def recording_commit(*args, **kwargs):
        commits.append(kwargs)
        return create_commit(*args, **kwargs)

    repo.create_commit = recording_commit
    pipe = get_dummy_pipeline()
    pipe.save_pretrained(
        tmp_path / "local",
        push_to_hub=True,
        repo_id="org/ditar",
        revision="dev",
        commit_description="second try",
        api=repo,
        variant="v1",
        remote_code=False,
        model_name="DiTAR mine",
    )
    assert commits[0]["revision"] == "dev" and commits[0]["commit_description"] == "second try"
    pushed = repo.files("dev")
    assert any(name.startswith("model/model.v1") for name in pushed)
    local_code = {name for name in tree(tmp_path / "local") if name.endswith(".py")}
    assert {name for name in pushed if name.endswith(".py")} == local_code  # remote_code=False, as the local folder
    assert not any(name.endswith(".py") and "/" not in name for name in pushed)
    assert "DiTAR mine" in repo.branches["dev"]["README.md"].decode()
    with pytest.raises(TypeError, match="unexpected keyword"):
        pipe.save_pretrained(tmp_path / "again", push_to_hub=True, repo_id="org/ditar", api=repo, results_file="x")


def test_a_push_without_card_settings_keeps_the_card_of_the_folder_it_was_loaded_from(tmp_path):
    """The publishing guide has the card rendered and edited in the pipeline's folder, then pushes from Python: the
    push replaced it with a fresh render (the title, datasets and every edit gone). Card settings still render one; a
    pipeline built in memory gets a rendered card."""
    folder = tmp_path / "ditar-mine"
    get_dummy_pipeline().save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# DiTAR mine\n\nMy own words.\n")
    pipe = DiTARPipeline.from_pretrained(folder)
    repo = HubRepo()
    pipe.push_to_hub("org/ditar-mine", api=repo)
    assert "My own words." in repo.branches["main"]["README.md"].decode()
    pipe.push_to_hub("org/ditar-mine", api=repo, model_name="DiTAR rendered")
    card = repo.branches["main"]["README.md"].decode()
    assert "My own words." not in card and "DiTAR rendered" in card
    get_dummy_pipeline().push_to_hub("org/ditar-fresh", api=repo)
    assert "My own words." not in repo.branches["main"]["README.md"].decode()


def test_results_of_another_model_going_into_a_card_are_warned_about(tmp_path):
    """An evaluation without its pipeline named scores the embedded default (`meta.settings.pipeline` None); pushed
    with a model loaded from another folder, its numbers were published as that model's without a word."""
    import warnings

    folder = tmp_path / "ditar-mine"
    get_dummy_pipeline().save_pretrained(folder)
    pipe = DiTARPipeline.from_pretrained(folder)
    rows = [{"key": "model", "name": "DiTAR", "wer": 0.3, "sim": 0.8, "n": 2}]
    default = {"meta": {"cwd": str(tmp_path), "settings": {"pipeline": None}}, "rows": rows}
    own = {"meta": {"cwd": str(tmp_path), "settings": {"pipeline": "ditar-mine"}}, "rows": rows}
    with pytest.warns(UserWarning, match="measured on .*default.*the package's default model.*another model's numbers"):
        pipe.push_to_hub("org/ditar-mine", api=HubRepo(), results=default)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.push_to_hub("org/ditar-mine", api=HubRepo(), results=own)


def test_results_are_matched_to_a_model_by_its_weights_not_its_path(tmp_path):
    """The guide's flow (evaluate runs/mine/final, convert it into hub/, push hub/ with its results) warned that the
    results were of another model: only the paths were compared. The weights decide; a path only where the evaluated
    folder is gone."""
    import shutil
    import warnings

    pipe = get_dummy_pipeline()
    pipe.save_pretrained(tmp_path / "final")  # the evaluated folder
    pipe.model.to(torch.float16)  # the same weights, published in half precision from another folder
    pipe.save_pretrained(tmp_path / "hub")
    rows = [{"key": "model", "name": "DiTAR", "cases": 2, "wer": 0.3, "sim_prompt": 0.8}]
    results = {"meta": {"cwd": str(tmp_path), "settings": {"pipeline": "final"}}, "rows": rows}
    hub = DiTARPipeline.from_pretrained(tmp_path / "hub")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hub.push_to_hub("org/ditar-mine", api=HubRepo(), results=results)
    with torch.no_grad():
        hub.model.stop_head.weight.add_(1.0)  # trained on after loading: what is pushed is another model
    with pytest.warns(UserWarning, match="measured on .*final .*whose model weights differ.*another model's numbers"):
        hub.push_to_hub("org/ditar-mine", api=HubRepo(), results=results)
    shutil.rmtree(tmp_path / "final")  # gone: the folders' paths are all there is to compare
    with pytest.warns(UserWarning, match="measured on .*final .*but this model was loaded from .*hub"):
        hub.push_to_hub("org/ditar-mine", api=HubRepo(), results=results)


def test_the_model_pushes_with_its_own_card_from_push_to_hub_and_save_pretrained(tmp_path):
    """`pipe.model.push_to_hub()` and `pipe.model.save_pretrained(..., push_to_hub=True)` upload the model with a DiTAR
    card (transformers' own wrote a generic card) and its remote code, in one commit; the save keeps its folder, and
    the repository is named after it unless `repo_id` is given."""
    from huggingface_hub import ModelCard

    model = get_dummy_pipeline().model
    repo = HubRepo()
    model.push_to_hub("org/ditar-model", api=repo, tags=["mine"], max_shard_size="20KB")
    card = ModelCard(repo.branches["main"]["README.md"].decode())
    assert 'AutoModel.from_pretrained("org/ditar-model", trust_remote_code=True)' in card.text
    assert "mine" in card.data.tags and "model.safetensors.index.json" in repo.files()
    assert {"config.json", "generation_config.json", "modeling_ditar.py"} <= repo.files()

    repo = HubRepo()
    model.save_pretrained(tmp_path / "my-model", push_to_hub=True, api=repo, commit_message="first")
    assert repo.calls[0] == ("create_repo", "my-model") and (tmp_path / "my-model" / "model.safetensors").is_file()
    assert "AutoModel.from_pretrained" in repo.branches["main"]["README.md"].decode()
    repo = HubRepo()
    model.save_pretrained(tmp_path / "again", push_to_hub=True, repo_id="org/named", api=repo, variant="fp16")
    assert repo.calls[0] == ("create_repo", "org/named") and "model.fp16.safetensors" in repo.files()
    with pytest.raises(TypeError, match="unexpected keyword argument\\(s\\) 'safe_serialization'"):
        model.push_to_hub("org/ditar-model", api=HubRepo(), safe_serialization=True)

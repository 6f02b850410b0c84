"""Saved DiTAR folders load through remote code (`trust_remote_code=True`) where `modeling_ditar` is not importable, and
give the same output as the package; with the package installed its own classes are used.

The remote checks run in one subprocess in which `modeling_ditar` is hidden (an import hook refuses it and the
repository is not on sys.path), with a fresh HF_MODULES_CACHE and no network.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from pipeline_helpers import (
    SR,
    get_dummy_pipeline,
    tone,
)
from transformers import AutoModel, AutoProcessor

import modeling_ditar
from modeling_ditar import DiTARForConditionalGeneration, DiTARPipeline, DiTARProcessor, hub_utils

PACKAGE_DIR = Path(modeling_ditar.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
# diffusers' Oobleck (the VAE pipeline) uses torch.nn.utils.weight_norm, deprecated in torch
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")

HIDE_PACKAGE = textwrap.dedent(
    """
    import importlib.abc, importlib.util, sys
    class _Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname == "modeling_ditar" or fullname.startswith("modeling_ditar."):
                raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by the test)")
            return None
    sys.meta_path.insert(0, _Hide())
    sys.path[:] = [p for p in sys.path if p not in ("", ".", REPO)]
    try:
        import modeling_ditar  # noqa: F401
        raise SystemExit("modeling_ditar is still importable")
    except ModuleNotFoundError:
        pass
    """
)

REMOTE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from diffusers import DiffusionPipeline
    from transformers import AutoConfig, AutoModel, AutoProcessor

    data = sys.argv[1]
    report = {}
    def call(pipe, **kwargs):
        pipe.set_progress_bar_config(disable=True)
        out = pipe("hello there", max_new_patches=3, generator=torch.Generator().manual_seed(5), **kwargs)
        return out.audios

    # model folder: AutoModel / AutoConfig
    model = AutoModel.from_pretrained(f"{data}/model", trust_remote_code=True)
    report["model_class"] = type(model).__module__ + "." + type(model).__name__
    report["config_class"] = type(AutoConfig.from_pretrained(f"{data}/model", trust_remote_code=True)).__name__
    inputs = {k: torch.from_numpy(v) for k, v in np.load(f"{data}/model_inputs.npz").items()}
    features = model.generate(**inputs, max_new_patches=3, generator=torch.Generator().manual_seed(1)).features
    report["model_equal"] = bool(np.array_equal(features.numpy(), np.load(f"{data}/model_features.npy")))

    # processor folder: AutoProcessor
    processor = AutoProcessor.from_pretrained(f"{data}/processor", trust_remote_code=True)
    report["processor_class"] = type(processor).__name__
    report["feature_extractor_class"] = type(processor.feature_extractor).__name__
    ids = processor("hello there", prompt_text="a prompt", prompt_audio=np.load(f"{data}/prompt.npy"),
                    sampling_rate=int(np.load(f"{data}/rate.npy")))
    report["processor_equal"] = ids["input_ids"].tolist() == np.load(f"{data}/processor_ids.npy").tolist()
    sub = AutoProcessor.from_pretrained(f"{data}/pipeline", subfolder="processor", trust_remote_code=True)
    report["subfolder_processor_class"] = type(sub).__name__

    # pipeline folder: plain, custom_pipeline=, and saved again from the remote classes
    pipe = DiffusionPipeline.from_pretrained(f"{data}/pipeline", trust_remote_code=True)
    report["pipeline_class"] = type(pipe).__module__ + "." + type(pipe).__name__
    report["default_voice"] = pipe.default_voice is not None
    report["pipeline_equal"] = bool(np.array_equal(call(pipe), np.load(f"{data}/pipeline_audio.npy")))
    pipe = DiffusionPipeline.from_pretrained(f"{data}/pipeline", custom_pipeline="pipeline_ditar",
                                             trust_remote_code=True)
    report["custom_pipeline_equal"] = bool(np.array_equal(call(pipe), np.load(f"{data}/pipeline_audio.npy")))
    pipe.save_pretrained(f"{data}/resaved")
    again = DiffusionPipeline.from_pretrained(f"{data}/resaved", trust_remote_code=True)
    report["resaved_equal"] = bool(np.array_equal(call(again), np.load(f"{data}/pipeline_audio.npy")))

    # stored in float16, computed in float32 as the package computes it
    pipe = DiffusionPipeline.from_pretrained(f"{data}/half_pipeline", trust_remote_code=True)
    report["half_dtypes"] = [str(pipe.model.dtype), str(AutoModel.from_pretrained(f"{data}/half_pipeline/model",
                             trust_remote_code=True).dtype)]
    report["half_equal"] = bool(np.array_equal(call(pipe), np.load(f"{data}/half_audio.npy")))

    # a pipeline on VAE latents (AutoencoderOobleck component)
    pipe = DiffusionPipeline.from_pretrained(f"{data}/vae_pipeline", trust_remote_code=True)
    report["vae_class"] = type(pipe.vae).__name__
    report["vae_equal"] = bool(np.array_equal(call(pipe), np.load(f"{data}/vae_audio.npy")))

    # without trust_remote_code nothing is executed
    errors = []
    for load in (lambda: DiffusionPipeline.from_pretrained(f"{data}/pipeline"),
                 lambda: AutoModel.from_pretrained(f"{data}/model")):
        try:
            load()
            errors.append(None)
        except ValueError as err:
            errors.append(str(err)[:200])
    report["untrusted_errors"] = errors
    report["ditar_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "modeling_ditar")
    print("REPORT " + json.dumps(report))
    """
)


def _call(pipe, **kwargs):
    pipe.set_progress_bar_config(disable=True)
    return pipe("hello there", max_new_patches=3, generator=torch.Generator().manual_seed(5), **kwargs).audios


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Folders saved by the package and the outputs the package gives for them."""
    from test_vae import get_dummy_vae_pipeline

    data = tmp_path_factory.mktemp("remote")
    pipe = get_dummy_pipeline()
    pipe.save_pretrained(data / "pipeline")
    np.save(data / "pipeline_audio.npy", _call(pipe))
    pipe.model.save_pretrained(data / "model")
    pipe.processor.save_pretrained(data / "processor")
    prompt = tone(0.04)
    inputs = pipe.processor("hello there", prompt_text="a prompt", prompt_audio=prompt, sampling_rate=SR)
    np.save(data / "prompt.npy", prompt)
    np.save(data / "rate.npy", np.array(SR))
    np.save(data / "processor_ids.npy", inputs["input_ids"].numpy())
    model_inputs = {k: v.numpy() for k, v in inputs.items()}
    np.savez(data / "model_inputs.npz", **model_inputs)
    # what the package gives for the saved model folder (weights read from the file, like remote code reads them)
    loaded = AutoModel.from_pretrained(data / "model")
    features = loaded.generate(
        **{k: torch.from_numpy(v) for k, v in model_inputs.items()},
        max_new_patches=3,
        generator=torch.Generator().manual_seed(1),
    ).features
    np.save(data / "model_features.npy", features.numpy())
    # a pipeline whose model is stored in float16 (as the embedded default is): loaded, it computes in float32
    pipe.model.half()
    pipe.save_pretrained(data / "half_pipeline")
    np.save(data / "half_audio.npy", _call(DiTARPipeline.from_pretrained(data / "half_pipeline")))
    vae_pipe = get_dummy_vae_pipeline()
    vae_pipe.save_pretrained(data / "vae_pipeline")
    np.save(data / "vae_audio.npy", _call(vae_pipe))
    return data


def report_without_the_package(script: str, folder, timeout: int = 600) -> dict:
    """Run `script` (which prints `REPORT {json}`) in a fresh offline Python that cannot import `modeling_ditar`, with
    `folder` as its argument, home and working directory; returns the report."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_MODULES_CACHE": str(folder / "modules_cache"),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", HIDE_PACKAGE.replace("REPO", repr(str(ROOT))) + script, str(folder)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(folder),
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # (transformers' "Do you wish to run the custom code? [y/N]" prompt has no newline)
    lines = [line for line in result.stdout.splitlines() if "REPORT {" in line]
    assert lines, result.stdout[-3000:] + result.stderr[-5000:]
    return json.loads(lines[-1].split("REPORT ", 1)[1])


@pytest.fixture(scope="module")
def remote_report(saved):
    return report_without_the_package(REMOTE_SCRIPT, saved)


def test_model_loads_as_remote_code_and_generates_the_same_features(remote_report):
    assert remote_report["model_class"].startswith("transformers_modules.")
    assert remote_report["model_class"].endswith("modeling_ditar.DiTARForConditionalGeneration")
    assert remote_report["config_class"] == "DiTARConfig"
    assert remote_report["model_equal"]
    assert remote_report["ditar_modules"] == []


def test_processor_loads_as_remote_code(remote_report):
    assert remote_report["processor_class"] == "DiTARProcessor"
    assert remote_report["feature_extractor_class"] == "DiTARFeatureExtractor"
    assert remote_report["processor_equal"]
    assert remote_report["subfolder_processor_class"] == "DiTARProcessor"


def test_pipeline_loads_as_remote_code_and_generates_the_same_audio(remote_report):
    assert remote_report["pipeline_class"] == "diffusers_modules.local.pipeline_ditar.DiTARPipeline"
    assert remote_report["default_voice"]
    assert remote_report["pipeline_equal"]
    assert remote_report["custom_pipeline_equal"]
    assert remote_report["resaved_equal"]


def test_a_half_precision_folder_computes_in_float32_through_remote_code_too(remote_report):
    assert remote_report["half_dtypes"] == ["torch.float32", "torch.float32"]
    assert remote_report["half_equal"]


def test_vae_pipeline_loads_as_remote_code(remote_report):
    assert remote_report["vae_class"] == "AutoencoderOobleck"
    assert remote_report["vae_equal"]


def test_nothing_runs_without_trust_remote_code(remote_report):
    pipeline_error, model_error = remote_report["untrusted_errors"]
    assert pipeline_error is not None and "custom code" in pipeline_error
    assert model_error is not None and "custom code" in model_error


def test_saved_folders_carry_the_code_as_it_is(saved):
    index = json.loads((saved / "pipeline" / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_ditar", "DiTARPipeline"]
    assert index["model"] == ["modeling_ditar", "DiTARForConditionalGeneration"]
    assert index["processor"] == ["processing_ditar", "DiTARProcessor"]
    assert index["vocoder"] == ["vocoder_griffinlim", "GriffinLimVocoder"]
    assert index["scheduler"] == ["diffusers", "FlowMatchEulerDiscreteScheduler"]
    expected = {
        "": hub_utils.code_closure(PACKAGE_DIR / "pipeline_ditar.py"),
        "model": hub_utils.code_closure(PACKAGE_DIR / "modeling_ditar.py"),
        "processor": hub_utils.code_closure(PACKAGE_DIR / "processing_ditar.py"),
        "vocoder": hub_utils.code_closure(PACKAGE_DIR / "vocoder_griffinlim.py"),
    }
    for sub, files in expected.items():
        for file in files:
            assert (saved / "pipeline" / sub / file.name).read_bytes() == file.read_bytes(), (sub, file.name)
    assert {p.name for p in (saved / "model").glob("*.py")} == {f.name for f in expected["model"]}
    config = json.loads((saved / "model" / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_ditar.DiTARConfig",
        "AutoModel": "modeling_ditar.DiTARForConditionalGeneration",
    }
    processor_config = json.loads((saved / "processor" / "processor_config.json").read_text())
    assert processor_config["auto_map"] == {"AutoProcessor": "processing_ditar.DiTARProcessor"}


def test_pipeline_file_imports_every_module_it_needs_directly():
    """diffusers copies only the direct relative imports of a local remote-code pipeline file."""
    direct = set(hub_utils.relative_imports(PACKAGE_DIR / "pipeline_ditar.py"))
    closure = {p.stem for p in hub_utils.code_closure(PACKAGE_DIR / "pipeline_ditar.py")} - {"pipeline_ditar"}
    assert closure == direct


def test_installed_package_uses_its_own_classes(saved):
    before = {m for m in sys.modules if m.startswith(("diffusers_modules", "transformers_modules"))}
    pipe = DiTARPipeline.from_pretrained(saved / "pipeline")
    assert type(pipe) is DiTARPipeline and type(pipe.model) is DiTARForConditionalGeneration
    assert type(pipe.processor) is DiTARProcessor
    np.testing.assert_array_equal(_call(pipe), np.load(saved / "pipeline_audio.npy"))
    assert type(AutoModel.from_pretrained(saved / "model")) is DiTARForConditionalGeneration
    assert type(AutoProcessor.from_pretrained(saved / "processor")) is DiTARProcessor
    after = {m for m in sys.modules if m.startswith(("diffusers_modules", "transformers_modules"))}
    assert after == before  # nothing was imported from the folders


def test_save_without_remote_code(tmp_path):
    pipe = get_dummy_pipeline()
    pipe.save_pretrained(tmp_path, remote_code=False)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "DiTARPipeline" and not list(tmp_path.glob("*.py"))
    loaded = DiTARPipeline.from_pretrained(tmp_path)
    np.testing.assert_array_equal(_call(loaded), _call(pipe))


def test_hub_repo_is_downloaded_whole_and_loaded_with_the_package(saved, monkeypatch):
    """`DiTARPipeline.from_pretrained("org/name")` fetches the repository with snapshot_download (diffusers' own
    download would resolve the repository's remote-code pipeline class) and records the repo id."""
    import huggingface_hub

    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(saved / "pipeline")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    pipe = DiTARPipeline.from_pretrained("org/ditar-tiny", revision="v1", token="t")
    assert calls == [("org/ditar-tiny", {"revision": "v1", "token": "t"})]
    assert type(pipe.model) is DiTARForConditionalGeneration and pipe.name_or_path == "org/ditar-tiny"
    assert pipe.default_voice is not None
    np.testing.assert_array_equal(_call(pipe), np.load(saved / "pipeline_audio.npy"))

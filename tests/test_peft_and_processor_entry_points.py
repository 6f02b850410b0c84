"""Standard transformers / peft entry points on DiTAR: peft's `get_peft_model` with `merge_and_unload` / `unload`,
adapters saved by `PeftModel.save_pretrained` loaded with `model.load_adapter`, the processor's prompt settings through
save and load, its error for transformers' `audio=` argument, and `AutoFeatureExtractor` as remote code."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from model_helpers import DiTARModelTester
from pipeline_helpers import SR, get_dummy_pipeline, get_dummy_processor, tone
from test_remote_code import report_without_the_package
from transformers import AutoFeatureExtractor, AutoProcessor

from modeling_ditar import DiTARFeatureExtractor, DiTARForConditionalGeneration, DiTARPipeline, DiTARProcessor

peft = pytest.importorskip("peft")
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.tuners.tuners_utils import BaseTunerLayer  # noqa: E402

TESTER = DiTARModelTester()


def features(model) -> torch.Tensor:
    inputs = TESTER.prepare_generation_inputs()
    with torch.no_grad():
        return model.generate(**inputs, max_new_patches=3, generator=torch.Generator().manual_seed(0)).features


def peft_model() -> PeftModel:
    """A PeftModel on a fresh tiny model whose adapter changes the output (random B, not peft's zeros)."""
    config = LoraConfig(r=4, target_modules=["q_proj", "to_q"], init_lora_weights=False)
    return get_peft_model(TESTER.get_model(), config).eval()


def tuner_layers(model) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]


# ------------------------------------------------------------------------------------------------------------ peft
def test_peft_merge_and_unload_gives_a_plain_model_that_generates_like_the_peft_model(tmp_path):
    wrapped = peft_model()
    adapted = features(wrapped)
    assert not torch.equal(adapted, features(TESTER.get_model()))  # the adapter does change the output
    merged = wrapped.merge_and_unload()
    assert type(merged) is DiTARForConditionalGeneration and tuner_layers(merged) == []
    assert not hasattr(merged, "peft_config")  # no adapter is left
    torch.testing.assert_close(features(merged), adapted, rtol=1e-5, atol=1e-5)
    merged.save_pretrained(tmp_path)  # a plain model again: saved and loaded like any other
    torch.testing.assert_close(features(DiTARForConditionalGeneration.from_pretrained(tmp_path)), adapted)


def test_peft_unload_gives_back_the_base_model():
    wrapped = peft_model()
    base = wrapped.unload()
    assert tuner_layers(base) == [] and not hasattr(base, "peft_config")
    assert torch.equal(features(base), features(TESTER.get_model()))  # bit for bit


def test_get_peft_model_on_a_model_without_adapters_does_not_warn_of_existing_ones():
    model = TESTER.get_model()
    assert not hasattr(model, "peft_config")  # as on a transformers model: only once an adapter is loaded
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))
    assert not [w for w in caught if "Already found a `peft_config`" in str(w.message)]
    # the model holds the PeftModel's own registry, so an adapter the PeftModel adds later is the model's too
    wrapped.add_adapter("second", LoraConfig(r=2, target_modules=["to_q"]))
    assert model.peft_config is wrapped.peft_config and set(model.peft_config) == {"default", "second"}


def test_the_model_adapter_api_still_keeps_its_registry():
    model = TESTER.get_model()
    base = features(model)
    model.add_adapter(LoraConfig(r=4, target_modules=["q_proj", "to_q"], init_lora_weights=False), adapter_name="a")
    model.add_adapter(LoraConfig(r=2, target_modules=["q_proj"]), adapter_name="b")
    assert set(model.peft_config) == {"a", "b"} and model.active_adapters() == ["b"]
    model.set_adapter("a")
    model.disable_adapters()
    assert torch.equal(features(model), base)
    model.enable_adapters()
    assert not torch.equal(features(model), base)
    model.delete_adapter(["a", "b"])
    assert tuner_layers(model) == [] and not hasattr(model, "peft_config")
    assert torch.equal(features(model), base)


def test_load_adapter_reads_a_folder_saved_by_peft(tmp_path):
    wrapped = peft_model()
    adapted = features(wrapped)
    wrapped.save_pretrained(tmp_path)  # weights named base_model.model.<layer>...
    model = TESTER.get_model()
    model.load_adapter(tmp_path, adapter_name="peft")
    assert model.active_adapters() == ["peft"]
    torch.testing.assert_close(features(model), adapted, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------------- processor
SETTINGS = {"quiet_prompt_floor_db": -30.0, "prompt_level_target_db": -18.0, "min_prompt_loudness_range_db": None}
DEFAULTS = {"quiet_prompt_floor_db": -24.0, "prompt_level_target_db": -20.0, "min_prompt_loudness_range_db": 4.0}


def settings(processor) -> dict:
    return {key: getattr(processor, key) for key in SETTINGS}


def test_processor_prompt_settings_survive_save_and_load(tmp_path):
    processor = get_dummy_processor()
    assert settings(processor) == DEFAULTS
    for key, value in SETTINGS.items():
        setattr(processor, key, value)
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert {key: saved[key] for key in SETTINGS} == SETTINGS
    assert settings(DiTARProcessor.from_pretrained(tmp_path)) == SETTINGS
    assert settings(AutoProcessor.from_pretrained(tmp_path)) == SETTINGS


def test_pipeline_keeps_its_processor_prompt_settings(tmp_path):
    pipe = get_dummy_pipeline()
    pipe.processor.quiet_prompt_floor_db = None
    pipe.processor.min_prompt_loudness_range_db = 6.5
    pipe.save_pretrained(tmp_path)
    loaded = DiTARPipeline.from_pretrained(tmp_path).processor
    assert loaded.quiet_prompt_floor_db is None and loaded.min_prompt_loudness_range_db == 6.5


def test_processor_folder_saved_without_prompt_settings_loads_with_the_defaults(tmp_path):
    processor = get_dummy_processor()
    processor.quiet_prompt_floor_db = -30.0
    processor.save_pretrained(tmp_path)
    path = tmp_path / "processor_config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in config.items() if k not in SETTINGS}))  # as folders were saved before
    loaded = DiTARProcessor.from_pretrained(tmp_path)
    assert settings(loaded) == DEFAULTS
    assert loaded("hello", prompt_text="hi", prompt_audio=tone(0.1), sampling_rate=SR)["prompt_features"].shape[0] == 1


@pytest.mark.parametrize("name", ["audio", "audios"])
def test_audio_argument_error_names_prompt_audio_and_prompt_text(name):
    processor = get_dummy_processor()
    with pytest.raises(TypeError, match=rf"\['{name}'\].*prompt_audio=.*prompt_text="):
        processor(text="hello", sampling_rate=SR, **{name: tone(0.1)})


def test_other_unexpected_arguments_get_no_prompt_hint():
    with pytest.raises(TypeError, match=r"unexpected arguments \['padding'\]\.$"):
        get_dummy_processor()(text="hello", padding=True)


# --------------------------------------------------------------------------------------------------- remote code
REMOTE_FEATURE_EXTRACTOR = """
import json, sys
import numpy as np
from transformers import AutoFeatureExtractor

data = sys.argv[1]
clip = np.load(f"{data}/clip.npy")
report = {}
for folder in ("processor", "feature_extractor", "pipeline"):
    extractor = AutoFeatureExtractor.from_pretrained(f"{data}/{folder}", trust_remote_code=True)
    values = extractor([clip], sampling_rate=int(np.load(f"{data}/rate.npy")), return_tensors="np")["input_features"]
    report[folder] = [type(extractor).__module__, bool(np.array_equal(values, np.load(f"{data}/features.npy")))]
report["ditar_modules"] = sorted(m for m in sys.modules if m.split(".")[0] == "modeling_ditar")
print("REPORT " + json.dumps(report))
"""


def test_feature_extractor_loads_with_auto_feature_extractor_as_remote_code(tmp_path):
    pipe = get_dummy_pipeline()
    extractor = pipe.processor.feature_extractor
    pipe.processor.save_pretrained(tmp_path / "processor")
    extractor.save_pretrained(tmp_path / "feature_extractor")
    pipe.save_pretrained(tmp_path / "pipeline")
    clip = tone(0.2)
    np.save(tmp_path / "clip.npy", clip)
    np.save(tmp_path / "rate.npy", np.array(SR))
    np.save(tmp_path / "features.npy", extractor([clip], sampling_rate=SR, return_tensors="np")["input_features"])
    nested = json.loads((tmp_path / "processor" / "processor_config.json").read_text())["feature_extractor"]
    assert nested["auto_map"]["AutoFeatureExtractor"] == "feature_extraction_ditar.DiTARFeatureExtractor"
    # with the package imported its own class is used, remote code allowed or not
    for trust in (False, True):
        loaded = AutoFeatureExtractor.from_pretrained(tmp_path / "processor", trust_remote_code=trust)
        assert type(loaded) is DiTARFeatureExtractor

    report = report_without_the_package(REMOTE_FEATURE_EXTRACTOR, tmp_path, timeout=300)
    for folder in ("processor", "feature_extractor", "pipeline"):
        module, equal = report[folder]
        assert module.startswith("transformers_modules.") and module.endswith("feature_extraction_ditar"), folder
        assert equal, folder
    assert report["ditar_modules"] == []

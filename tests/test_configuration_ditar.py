"""DiTARConfig: defaults, round trips (qwen2 and llama backbones), Auto registration and value validation."""

import json

import pytest
from model_helpers import TEXT_CONFIGS, DiTARModelTester
from transformers import AutoConfig, LlamaConfig, Qwen2Config

import modeling_ditar  # noqa: F401  (registers "ditar" with the Auto classes)
from modeling_ditar import DiTARConfig, DiTARGenerationConfig

TEXT_CONFIG_CLASSES = {"qwen2": Qwen2Config, "llama": LlamaConfig}


def tiny_config(backbone: str = "qwen2", **overrides) -> DiTARConfig:
    return DiTARModelTester(backbone=backbone).get_config(**overrides)


def with_stats(backbone: str) -> DiTARConfig:
    return tiny_config(
        backbone,
        feature_mean=[0.5 * i for i in range(8)],
        feature_std=[1.0 + 0.25 * i for i in range(8)],
        patch_size=3,
    )


def test_default_config_builds_a_small_qwen2_backbone():
    config = DiTARConfig()
    assert config.model_type == "ditar"
    assert isinstance(config.text_config, Qwen2Config)
    assert config.text_config.hidden_size == 256 and config.text_config.num_hidden_layers == 4
    assert (config.feature_dim, config.patch_size, config.num_history_patches) == (100, 4, 2)
    generation = DiTARGenerationConfig.from_model_config(config)
    assert (generation.guidance_scale, generation.temperature, generation.num_inference_steps) == (2.0, 0.5, 10)
    assert generation.do_sample and generation.num_candidates == 1 and generation.max_new_patches is None
    assert config.feature_mean is None and config.feature_std is None


@pytest.mark.parametrize("backbone", ["qwen2", "llama"])
def test_dict_round_trip(backbone):
    config = with_stats(backbone)
    assert isinstance(config.text_config, TEXT_CONFIG_CLASSES[backbone])
    as_dict = config.to_dict()
    assert as_dict["model_type"] == "ditar"
    assert isinstance(as_dict["text_config"], dict) and as_dict["text_config"]["model_type"] == backbone
    json.dumps(as_dict)  # serialisable

    restored = DiTARConfig.from_dict(as_dict)
    assert type(restored.text_config) is TEXT_CONFIG_CLASSES[backbone]
    assert restored.text_config.hidden_size == TEXT_CONFIGS[backbone]["hidden_size"]
    assert restored.feature_mean == config.feature_mean and restored.feature_std == config.feature_std
    assert restored.patch_size == 3
    assert restored.to_dict() == as_dict


@pytest.mark.parametrize("backbone", ["qwen2", "llama"])
def test_save_pretrained_from_pretrained_round_trip(backbone, tmp_path):
    config = with_stats(backbone)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "ditar" and saved["text_config"]["model_type"] == backbone
    assert saved["patch_size"] == 3 and saved["feature_std"] == config.feature_std

    restored = DiTARConfig.from_pretrained(tmp_path)
    assert type(restored.text_config) is TEXT_CONFIG_CLASSES[backbone]
    assert restored.to_dict() == config.to_dict()


def test_auto_config_resolves_ditar(tmp_path):
    tiny_config("llama").save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is DiTARConfig
    assert isinstance(config.text_config, LlamaConfig)
    assert type(AutoConfig.for_model("ditar")) is DiTARConfig


def test_text_config_may_be_a_config_object():
    text_config = LlamaConfig(**{k: v for k, v in TEXT_CONFIGS["llama"].items() if k != "model_type"})
    config = DiTARConfig(text_config=text_config, feature_dim=8, patch_size=2)
    assert isinstance(config.text_config, LlamaConfig) and config.text_config.hidden_size == 32
    assert DiTARConfig.from_dict(config.to_dict()).text_config.model_type == "llama"


def test_unknown_kwargs_are_kept_through_a_round_trip(tmp_path):
    config = tiny_config(my_custom_field=3)
    assert config.my_custom_field == 3
    config.save_pretrained(tmp_path)
    assert DiTARConfig.from_pretrained(tmp_path).my_custom_field == 3


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"patch_size": 0}, "patch_size"),
        ({"feature_dim": 0}, "feature_dim"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"num_history_patches": -1}, "num_history_patches"),
        ({"cfg_dropout_prob": -0.1}, "cfg_dropout_prob"),
        ({"cfg_dropout_prob": 1.0}, "cfg_dropout_prob"),
        ({"history_dropout_prob": -0.5}, "history_dropout_prob"),
        ({"input_noise_std": -0.1}, "input_noise_std"),
        ({"diffusion_batch_mul": 0}, "diffusion_batch_mul"),
        ({"diffusion_time_shift": 0.0}, "diffusion_time_shift"),
        ({"diffusion_time_shift": -2.0}, "diffusion_time_shift"),
        ({"scheduled_sampling_prob": -0.1}, "scheduled_sampling_prob"),
        ({"scheduled_sampling_prob": 1.5}, "scheduled_sampling_prob"),
        ({"feature_mean": [0.0] * 7, "feature_std": [1.0] * 7}, "feature_mean"),
        ({"feature_mean": [0.0] * 8, "feature_std": [1.0] * 9}, "feature_std"),
        ({"feature_mean": [0.0] * 8, "feature_std": [1.0] * 7 + [0.0]}, "feature_std"),
        ({"feature_mean": [0.0] * 8, "feature_std": [1.0] * 7 + [-2.0]}, "feature_std"),
        ({"feature_mean": [0.0] * 8}, "feature_mean"),
        ({"feature_std": [1.0] * 8}, "feature_mean"),
        ({"temperature": 1.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"guidance_scale": -1.0}, "guidance_scale"),
        ({"stop_threshold": 1.0}, "stop_threshold"),
        ({"stop_threshold": 0.0}, "stop_threshold"),
        ({"stop_loss_weight": -1.0}, "stop_loss_weight"),
        ({"max_patches_per_text_token": 0.0}, "max_patches_per_text_token"),
        ({"min_max_new_patches": 0}, "min_max_new_patches"),
        ({"encoder_hidden_size": 30}, "encoder_hidden_size"),
        ({"locdit_hidden_size": 30}, "locdit_hidden_size"),
        ({"locdit_hidden_size": 32, "locdit_num_heads": 5}, "locdit_hidden_size"),
        ({"encoder_num_layers": 0}, "encoder_num_layers"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        tiny_config(**overrides)


def test_invalid_config_json_is_rejected_when_loading(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    data = json.loads(path.read_text())
    data["temperature"] = 1.5
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="`temperature`"):
        DiTARConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    "overrides",
    [
        {"temperature": 0.0},
        {"temperature": 1.0},
        {"guidance_scale": 0.0},
        {"guidance_scale": 1.0},
        {"num_history_patches": 0},
        {"cfg_dropout_prob": 0.0},
        {"stop_loss_weight": 0.0},
        # integers where a float is declared are fine (as in JSON written by hand)
        {"guidance_scale": 3},
        {"temperature": 1},
        {"feature_mean": [0.0] * 8, "feature_std": [2.0] * 8},
    ],
)
def test_boundary_values_are_accepted(overrides):
    config = tiny_config(**overrides)
    generation = DiTARGenerationConfig.from_model_config(config)
    for key, value in overrides.items():
        assert getattr(generation if key in ("temperature", "guidance_scale") else config, key) == value


def test_sampling_settings_of_older_configs_move_to_the_generation_config(tmp_path):
    """Configs written before generation configs kept the sampling settings; they load, become the generation
    config's values and are not written back into config.json (transformers refuses generation flags there)."""
    config = tiny_config(guidance_scale=1.5, temperature=0.2, num_inference_steps=6, stop_threshold=0.7)
    assert not {"guidance_scale", "temperature", "num_inference_steps", "stop_threshold"} & set(config.to_dict())
    generation = DiTARGenerationConfig.from_model_config(config)
    assert (generation.guidance_scale, generation.temperature, generation.num_inference_steps) == (1.5, 0.2, 6)
    assert generation.stop_threshold == 0.7
    config.save_pretrained(tmp_path)  # no "generation parameters in the model config" error
    assert "temperature" not in json.loads((tmp_path / "config.json").read_text())


@pytest.mark.parametrize(
    "overrides, field",
    [({"patch_size": 2.0}, "patch_size"), ({"feature_dim": True}, "feature_dim"), ({"patch_size": "2"}, "patch_size")],
)
def test_integer_fields_reject_non_integers(overrides, field):
    with pytest.raises(Exception, match=field):  # noqa: B017  (a ValueError or the hub's StrictDataclass error)
        tiny_config(**overrides)

"""Loading options users expect: dtype=torch.bfloat16, device_map="auto" (with a `_no_split_modules` that keeps every
block on one device) and attn_implementation="sdpa"/"eager" (CPU; an accelerator only changes where the blocks go)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from model_helpers import TEXT_CONFIGS
from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline
from transformers import AutoModel

from modeling_ditar import DiTARConfig, DiTARForConditionalGeneration, DiTARPipeline

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")  # diffusers' Oobleck (VAE test)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("loading")
    pipe = get_dummy_pipeline()
    pipe.save_pretrained(folder / "pipeline")
    pipe.model.save_pretrained(folder / "model")
    return folder


def generation_inputs(pipe):
    inputs = pipe.processor(
        "hello there", prompt_text="the prompt", prompt_audio=get_dummy_inputs()["prompt_audio"], sampling_rate=8000
    )
    return dict(inputs)


def generate(model, inputs, **kwargs):
    kwargs = {"max_new_patches": 3, "temperature": 0.0, "generator": torch.Generator().manual_seed(0), **kwargs}
    return model.generate(**inputs, **kwargs).features


@pytest.mark.parametrize("backbone, layer", [("qwen2", "Qwen2DecoderLayer"), ("llama", "LlamaDecoderLayer")])
def test_no_split_modules_lists_our_blocks_and_the_backbone_layer(backbone, layer):
    config = DiTARConfig(
        text_config=dict(TEXT_CONFIGS[backbone]),
        feature_dim=8,
        patch_size=2,
        encoder_hidden_size=32,
        encoder_num_layers=1,
        encoder_num_heads=4,
        encoder_intermediate_size=64,
        locdit_hidden_size=32,
        locdit_num_layers=1,
        locdit_num_heads=4,
        locdit_intermediate_size=64,
    )
    model = DiTARForConditionalGeneration(config)
    assert set(model._no_split_modules) == {"DiTARTransformerBlock", layer}
    names = {type(m).__name__ for m in model.modules()}
    assert set(model._no_split_modules) <= names  # FSDP's wrap policy raises for a listed class that is absent


def test_device_map_never_splits_a_block(saved):
    """accelerate's planner (what device_map="auto" runs) under many memory budgets: every DiTAR block and backbone
    layer lands on exactly one device."""
    from accelerate import infer_auto_device_map

    model = AutoModel.from_pretrained(saved / "model")
    blocks = [name for name, m in model.named_modules() if type(m).__name__ in model._no_split_modules]
    devices_seen = set()
    for budget in range(20_000, 180_000, 8_000):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Device 0 is not available" on a CPU-only machine
            device_map = infer_auto_device_map(
                model, max_memory={0: budget, 1: budget, "cpu": 10**9}, no_split_module_classes=model._no_split_modules
            )
        for block in blocks:
            placed = {
                device
                for name, device in device_map.items()
                if name == block or name.startswith(block + ".") or block.startswith(name + ".")
            }
            assert len(placed) == 1, (budget, block, placed)
        devices_seen |= set(device_map.values())
    assert {0, 1, "cpu"} <= devices_seen  # the budgets did spread the model over several devices


def test_device_map_auto_loads_and_generates_the_same(saved):
    pipe = get_dummy_pipeline()
    inputs = generation_inputs(pipe)
    plain = AutoModel.from_pretrained(saved / "model")
    mapped = AutoModel.from_pretrained(saved / "model", device_map="auto")
    assert {p.device.type for p in mapped.parameters()} == {"cpu"}  # no accelerator here: everything on the CPU
    torch.testing.assert_close(generate(mapped, inputs), generate(plain, inputs))


def test_bfloat16(saved):
    pipe = get_dummy_pipeline()
    inputs = generation_inputs(pipe)
    model = AutoModel.from_pretrained(saved / "model", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    features = generate(model, inputs)
    reference = generate(AutoModel.from_pretrained(saved / "model"), inputs)
    assert torch.isfinite(features).all()
    assert float((features.float() - reference).abs().mean()) < 0.1 * float(reference.abs().mean())
    # saved in bfloat16, it computes in float32 unless asked (CPUs without bfloat16 kernels run it slower);
    # dtype="auto" keeps the stored dtype
    model.save_pretrained(saved / "bf16")
    assert next(AutoModel.from_pretrained(saved / "bf16").parameters()).dtype == torch.float32
    assert next(AutoModel.from_pretrained(saved / "bf16", dtype="auto").parameters()).dtype == torch.bfloat16
    # the pipeline: dtype= casts the model; the audio stays float32
    loaded = DiTARPipeline.from_pretrained(saved / "pipeline", dtype=torch.bfloat16)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.model.dtype == torch.bfloat16
    audio = loaded(**get_dummy_inputs()).audios
    assert audio.dtype == np.float32 and np.isfinite(audio).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_cast_to_half_precision_keeps_the_rotary_frequencies_as_loading_in_it_does(saved, dtype):
    """`pipe.to(dtype)` samples what `from_pretrained(..., dtype=dtype)` samples, and a cast back to float32 what the
    pipeline sampled before: the backbone's rotary frequencies stay float32, as loading in half precision keeps them."""
    pipe = DiTARPipeline.from_pretrained(saved / "pipeline")
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():  # weights the cast round-trips exactly (as a folder stored in half precision has)
        for parameter in pipe.model.parameters():
            parameter.copy_(parameter.to(dtype))
    before = pipe(**get_dummy_inputs()).audios
    frequencies = pipe.model.language_model.rotary_emb.inv_freq.clone()
    pipe.to(dtype)
    rotary = pipe.model.language_model.rotary_emb
    assert rotary.inv_freq.dtype == torch.float32 and torch.equal(rotary.inv_freq, frequencies)
    loaded = DiTARPipeline.from_pretrained(saved / "pipeline", dtype=dtype)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(pipe(**get_dummy_inputs()).audios, loaded(**get_dummy_inputs()).audios)
    pipe.to(torch.float32)
    np.testing.assert_array_equal(pipe(**get_dummy_inputs()).audios, before)


def test_bfloat16_vae_pipeline(tmp_path):
    from test_vae import get_dummy_vae_pipeline, inputs

    get_dummy_vae_pipeline().save_pretrained(tmp_path)
    pipe = DiTARPipeline.from_pretrained(tmp_path, dtype=torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.model.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    audio = pipe(**inputs()).audios
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and np.abs(audio).max() > 0


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_attn_implementation(saved, implementation):
    pipe = get_dummy_pipeline()
    inputs = generation_inputs(pipe)
    model = AutoModel.from_pretrained(saved / "model", attn_implementation=implementation)
    assert model.config._attn_implementation == implementation
    assert model.language_model.config._attn_implementation == implementation
    reference = AutoModel.from_pretrained(saved / "model")  # sdpa is the default
    assert reference.config._attn_implementation == "sdpa"
    torch.testing.assert_close(generate(model, inputs), generate(reference, inputs), rtol=1e-4, atol=1e-4)
    batch = dict(input_ids=inputs["input_ids"], speech_features=torch.randn(1, 12, 8, generator=torch.manual_seed(0)))
    losses = []
    for m in (model, reference):
        torch.manual_seed(0)  # the training loss draws its noise and times from the global generator
        losses.append(m(**batch).loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-4, atol=1e-5)


def test_saving_a_float16_folder_leaves_a_bfloat16_locdit_as_it_was(tmp_path):
    """Saving writes a float16-stored pipeline in float16 again; it used to give every parameter the first one's
    dtype back afterwards, so a LocDiT put in bfloat16 (`set_locdit_dtype`) silently computed in float32 again."""
    get_dummy_pipeline().to(torch.float16).save_pretrained(tmp_path / "fp16")
    pipe = DiTARPipeline.from_pretrained(tmp_path / "fp16")
    pipe.set_progress_bar_config(disable=True)
    assert pipe.model.dtype == torch.float32
    pipe.model.set_locdit_dtype(torch.bfloat16)
    before = {name: p.dtype for name, p in pipe.model.named_parameters()}
    assert torch.bfloat16 in before.values() and torch.float32 in before.values()
    audio = pipe(**get_dummy_inputs()).audios
    pipe.save_pretrained(tmp_path / "again")
    assert {name: p.dtype for name, p in pipe.model.named_parameters()} == before
    np.testing.assert_array_equal(pipe(**get_dummy_inputs()).audios, audio)
    saved = AutoModel.from_pretrained(tmp_path / "again" / "model", dtype="auto")
    assert {p.dtype for p in saved.parameters()} == {torch.float16}


def test_a_home_relative_folder_loads_as_it_was_saved(tmp_path, monkeypatch):
    """save_pretrained("~/x") writes under the home folder; from_pretrained("~/x") (pipeline, voice) said the folder
    did not exist."""
    from pipeline_helpers import SR, tone

    from modeling_ditar import DiTARVoice

    monkeypatch.setenv("HOME", str(tmp_path))
    pipe = get_dummy_pipeline()
    pipe.save_pretrained("~/pipe")
    pipe.create_voice(tone(0.04), "the prompt", sampling_rate=SR).save_pretrained("~/voice")
    assert (tmp_path / "pipe" / "model_index.json").is_file()
    assert isinstance(DiTARPipeline.from_pretrained("~/pipe"), DiTARPipeline)
    assert DiTARVoice.from_pretrained("~/voice").transcript == "the prompt"


def test_dtype_auto_and_per_component_dtypes_load_alike_with_and_without_the_candidate_head(tmp_path):
    """dtype="auto" is the stored dtype (transformers' meaning) however the pipeline is loaded, and diffusers'
    per-component dtypes reach the model where candidate_locdit=False loads it (float32 and the raw dict before)."""
    get_dummy_pipeline().to(torch.float16).save_pretrained(tmp_path / "half")
    for candidate in (None, False):
        options = {} if candidate is None else {"candidate_locdit": candidate}
        assert DiTARPipeline.from_pretrained(tmp_path / "half", dtype="auto", **options).model.dtype == torch.float16
        per_component = {"model": torch.bfloat16, "default": torch.float32}
        pipe = DiTARPipeline.from_pretrained(tmp_path / "half", dtype=per_component, **options)
        assert pipe.model.dtype == torch.bfloat16
        assert DiTARPipeline.from_pretrained(tmp_path / "half", **options).model.dtype == torch.float32
    # the folder's root (transformers' entry points): "auto", which transformers' pipeline passes by default, computes
    # in float32, as documented; an explicit dtype is taken
    assert next(AutoModel.from_pretrained(tmp_path / "half", dtype="auto").parameters()).dtype == torch.float32
    assert next(AutoModel.from_pretrained(tmp_path / "half", dtype=torch.float16).parameters()).dtype == torch.float16


def test_a_pipeline_converted_to_a_narrower_dtype_is_saved_as_converted(tmp_path):
    """Loaded in float32 (or the float16 default) and converted to bfloat16 to halve the checkpoint, a pipeline was
    saved in its stored dtype again (its values survive the round trip); a float16 folder computed in float32 is still
    saved as float16."""
    get_dummy_pipeline().save_pretrained(tmp_path / "f32")
    get_dummy_pipeline().to(torch.float16).save_pretrained(tmp_path / "f16")
    for stored in ("f32", "f16"):
        DiTARPipeline.from_pretrained(tmp_path / stored, dtype=torch.bfloat16).save_pretrained(tmp_path / "bf16")
        saved = AutoModel.from_pretrained(tmp_path / "bf16" / "model", dtype="auto")
        assert {p.dtype for p in saved.parameters()} == {torch.bfloat16}, stored
    DiTARPipeline.from_pretrained(tmp_path / "f16").save_pretrained(tmp_path / "again")
    saved = AutoModel.from_pretrained(tmp_path / "again" / "model", dtype="auto")
    assert {p.dtype for p in saved.parameters()} == {torch.float16}


def test_pipeline_save_shards_and_names_the_variant_as_asked(tmp_path):
    """diffusers passes a component only the save arguments its signature names: `max_shard_size` and `variant` were
    dropped silently (one unsharded file, and loading with the variant failed)."""
    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=True)
    audio = pipe(**get_dummy_inputs()).audios
    pipe.save_pretrained(tmp_path / "p", max_shard_size="20KB", variant="v1")
    shards = sorted(p.name for p in (tmp_path / "p" / "model").glob("*.safetensors"))
    assert len(shards) > 1 and all(name.startswith("model.v1-") for name in shards)
    loaded = DiTARPipeline.from_pretrained(tmp_path / "p", variant="v1")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(loaded(**get_dummy_inputs()).audios, audio)
    assert type(AutoModel.from_pretrained(tmp_path / "p", variant="v1")) is DiTARForConditionalGeneration

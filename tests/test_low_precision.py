"""bfloat16 matmuls with float32 everywhere else (`set_matmul_dtype`, `low_precision.LowPrecisionLinear`)."""

import copy
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_helpers import DiTARModelTester, set_stop_logit
from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline
from torch import nn

from modeling_ditar.backbone_decoding import supports_decode_step
from modeling_ditar.low_precision import LowPrecisionLinear, cpu_multiplies_bfloat16, set_linear_matmul_dtype

TESTER = DiTARModelTester()


def _linear(seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Linear(16, 8, bias=bias)


@pytest.mark.parametrize("bias", [True, False])
def test_low_precision_linear_multiplies_bfloat16_copies_and_returns_the_input_dtype(bias):
    linear = _linear(bias=bias)
    x = torch.randn(3, 5, 16)
    exact = linear(x)
    assert set_linear_matmul_dtype(linear, torch.bfloat16) == 1 and type(linear) is LowPrecisionLinear
    with torch.no_grad():
        out = linear(x)
    expected = F.linear(x.bfloat16(), linear.weight.bfloat16(), None if linear.bias is None else linear.bias.bfloat16())
    assert out.dtype == torch.float32 and torch.equal(out, expected.float())
    assert not torch.equal(out, exact)  # it did round
    torch.testing.assert_close(out, exact, atol=0.05, rtol=0.02)
    assert linear.weight.dtype == torch.float32  # the parameters themselves stay float32


def test_low_precision_linear_follows_changes_of_its_weights():
    linear = _linear()
    set_linear_matmul_dtype(linear, torch.bfloat16)
    x = torch.randn(2, 16)
    with torch.no_grad():
        first = linear(x)
        linear.weight.mul_(2.0)  # in place
        doubled = linear(x)
        linear.load_state_dict(_linear(seed=1).state_dict())  # loading copies in place too
        loaded = linear(x)
    assert not torch.equal(first, doubled) and not torch.equal(doubled, loaded)
    fresh = _linear(seed=1)
    set_linear_matmul_dtype(fresh, torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(loaded, fresh(x))


def test_low_precision_linear_with_autograd_is_a_plain_linear():
    linear, plain = _linear(), _linear()
    set_linear_matmul_dtype(linear, torch.bfloat16)
    x = torch.randn(4, 16)
    out = linear(x)
    assert torch.equal(out, plain(x))  # float32 while gradients are wanted: training is unchanged
    out.sum().backward()
    assert linear.weight.grad is not None


def test_switching_back_to_float32_restores_the_plain_linear():
    linear = _linear()
    x = torch.randn(2, 16)
    exact = linear(x)
    set_linear_matmul_dtype(linear, torch.bfloat16)
    with torch.no_grad():
        linear(x)
    assert set_linear_matmul_dtype(linear, torch.float32) == 1
    assert type(linear) is nn.Linear and "_low_precision_weight" not in vars(linear)
    assert torch.equal(linear(x), exact)


def test_an_unsupported_matmul_dtype_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="bfloat16"):
        set_linear_matmul_dtype(_linear(), torch.float16)
    with pytest.raises(ValueError, match=r"auto.*torch.bfloat16 or torch.float32"):
        TESTER.get_model().set_matmul_dtype("float16")


def test_set_matmul_dtype_switches_the_transformers_and_keeps_parameters_and_state_dict():
    model = TESTER.get_model(candidate_locdit=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.set_matmul_dtype(torch.bfloat16) is model and model.matmul_dtype == torch.bfloat16
    switched = {name for name, m in model.named_modules() if type(m) is LowPrecisionLinear}
    for prefix in ("language_model.layers.", "aggregation_encoder.", "locdit.", "candidate_locdit."):
        assert any(name.startswith(prefix) for name in switched), prefix
    assert not any(name.startswith(("stop_head", "ctc_head", "language_model.embed")) for name in switched)
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(before[k], v) for k, v in after.items())
    model.set_matmul_dtype("float32")
    assert model.matmul_dtype == torch.float32
    assert not any(type(m) is LowPrecisionLinear for m in model.modules())


def test_bfloat16_matmuls_keep_the_fast_paths_and_equal_the_reference_path():
    """The lean backbone step and LocDiT's prepared calls run low-precision linears through their own forward, so the
    fast paths still equal the reference path (diffusers blocks, the model's forward) bit for bit."""
    model = TESTER.get_model()
    set_stop_logit(model, -30.0)
    model.set_matmul_dtype(torch.bfloat16)
    reference = copy.deepcopy(model).disable_fast_generation()
    inputs = TESTER.prepare_generation_inputs()
    with torch.no_grad():
        assert model.locdit.supports_prepared_calls()
        assert supports_decode_step(model.language_model, model._new_cache(2, 8))
    kwargs = dict(max_new_patches=4, guidance_scale=2.0, temperature=0.5)
    fast = model.generate(**inputs, **kwargs, generator=torch.Generator().manual_seed(0))
    slow = reference.generate(**inputs, **kwargs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fast.features, slow.features)
    exact = TESTER.get_model()
    set_stop_logit(exact, -30.0)
    float32 = exact.generate(**inputs, **kwargs, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(fast.features, float32.features)  # the switch is live


def test_bfloat16_matmuls_stream_like_one_shot_and_save_float32_weights(tmp_path):
    pipe = get_dummy_pipeline(ctc_loss_weight=1.0, candidate_locdit=True)
    pipe.model.generation_config.candidate_num_inference_steps = 1
    torch.manual_seed(0)
    with torch.no_grad():  # the dummy LocDiTs' zero output projections would ignore every matmul
        for parameter in pipe.model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    exact = pipe(**get_dummy_inputs(max_new_patches=12, num_candidates=2))
    pipe.model.set_matmul_dtype(torch.bfloat16)
    one_shot = pipe(**get_dummy_inputs(max_new_patches=12, num_candidates=2))
    audio = one_shot.audios[0][: one_shot.audio_lengths[0]]
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert not np.array_equal(audio, exact.audios[0][: exact.audio_lengths[0]])
    joined = np.concatenate(list(pipe.stream(**get_dummy_inputs(max_new_patches=12, num_candidates=2))))
    np.testing.assert_array_equal(joined, audio)
    pipe.save_pretrained(tmp_path)
    reloaded = type(pipe).from_pretrained(tmp_path)
    assert reloaded.model.matmul_dtype == torch.bfloat16  # the folder asks for the products the model made
    for key, value in pipe.model.state_dict().items():
        assert torch.equal(reloaded.model.state_dict()[key], value), key


def test_cpu_multiplies_bfloat16_reads_torch_capabilities(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True})
    assert cpu_multiplies_bfloat16()
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True, "amx_bf16": False})
    assert not cpu_multiplies_bfloat16()
    # AMX (Intel Xeon): bfloat16 linears were measured slower than float32 ones for these models
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True, "amx_bf16": True})
    assert not cpu_multiplies_bfloat16()

    def broken():
        raise RuntimeError("no cpuinfo")

    monkeypatch.setattr(torch.cpu, "get_capabilities", broken)
    assert not cpu_multiplies_bfloat16()


# ----------------------------------------------------------------------------------------------------------------------
# the pipeline setting (model_index.json), as diffusers pipelines keep theirs


def _saved_pipeline(tmp_path, matmul_dtype=None):
    pipe = get_dummy_pipeline()
    if matmul_dtype is not None:
        pipe.register_to_config(matmul_dtype=matmul_dtype)
    pipe.save_pretrained(tmp_path)
    return tmp_path


def test_a_pipeline_built_in_memory_saves_no_matmul_setting_and_reloads_in_float32(tmp_path):
    import json

    folder = _saved_pipeline(tmp_path)
    assert json.loads((folder / "model_index.json").read_text())["matmul_dtype"] is None
    pipe = type(get_dummy_pipeline()).from_pretrained(folder)
    assert pipe.config.matmul_dtype is None and pipe.model.matmul_dtype == torch.float32


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_in_the_folder_picks_bfloat16_only_on_a_cpu_that_multiplies_it(tmp_path, monkeypatch, native, expected):
    monkeypatch.setattr("modeling_ditar.low_precision.cpu_multiplies_bfloat16", lambda: native)
    folder = _saved_pipeline(tmp_path, matmul_dtype="auto")
    pipe = type(get_dummy_pipeline()).from_pretrained(folder)
    assert pipe.config.matmul_dtype == "auto" and pipe.model.matmul_dtype == expected
    # an argument overrides the folder's setting, as for any diffusers pipeline setting
    exact = type(pipe).from_pretrained(folder, matmul_dtype="float32")
    assert exact.model.matmul_dtype == torch.float32 and exact.config.matmul_dtype == "float32"


def test_a_model_that_is_not_float32_is_left_alone_by_auto(monkeypatch):
    monkeypatch.setattr("modeling_ditar.low_precision.cpu_multiplies_bfloat16", lambda: True)
    model = TESTER.get_model().to(torch.bfloat16)
    model.set_matmul_dtype("auto")
    assert not any(type(m) is LowPrecisionLinear for m in model.modules())


def test_a_bad_matmul_dtype_is_refused_before_loading(tmp_path):
    folder = _saved_pipeline(tmp_path)
    with pytest.raises(ValueError, match="matmul_dtype 'float16' is not supported"):
        type(get_dummy_pipeline()).from_pretrained(folder, matmul_dtype="float16")


def test_weights_made_under_inference_mode_work_and_a_new_switch_refreshes_them():
    with torch.inference_mode():
        linear = _linear()
    set_linear_matmul_dtype(linear, torch.bfloat16)
    x = torch.randn(2, 16)
    with torch.inference_mode():
        first = linear(x)
        linear.weight.mul_(2.0)  # no version counter on inference tensors: not seen ...
        set_linear_matmul_dtype(linear, torch.bfloat16)  # ... until the switch is made again
        doubled = linear(x)
    expected = F.linear(x.bfloat16(), linear.weight.bfloat16(), linear.bias.bfloat16()).float()
    assert not torch.equal(first, doubled) and torch.equal(doubled, expected)


def test_a_backbone_without_linear_layers_keeps_its_products_and_the_rest_switches():
    """GPT-2's decoder is built from Conv1D layers, not linears: the switch leaves them as they are."""
    gpt2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "vocab_size": 154, "n_positions": 512}
    model = TESTER.get_model(text_config=gpt2)
    model.set_matmul_dtype(torch.bfloat16)
    assert model.matmul_dtype == torch.float32  # the backbone multiplies as before
    assert any(type(m) is LowPrecisionLinear for m in model.locdit.modules())
    inputs = TESTER.prepare_generation_inputs()
    out = model.generate(**inputs, max_new_patches=2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.features).all()
    model.set_matmul_dtype("float32")
    assert not any(type(m) is LowPrecisionLinear for m in model.modules())


def test_bfloat16_products_bound_onednn_shape_caches_unless_the_user_set_them(monkeypatch):
    """oneDNN keeps a kernel per input shape (up to 1024 per cache by default): a long-running process whose calls
    meet new prompt and text lengths grew by about 0.6 GB. Switching to bfloat16 caps both caches; a value the
    environment gives is kept, and float32 sets nothing."""
    from modeling_ditar.low_precision import ONEDNN_SHAPE_CACHE_ENTRIES

    names = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
    for name in names:
        monkeypatch.delenv(name, raising=False)
    set_linear_matmul_dtype(nn.Sequential(nn.Linear(4, 4)), torch.float32)
    assert not any(name in os.environ for name in names)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "7")
    set_linear_matmul_dtype(nn.Sequential(nn.Linear(4, 4)), torch.bfloat16)
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(ONEDNN_SHAPE_CACHE_ENTRIES)
    assert os.environ["LRU_CACHE_CAPACITY"] == "7"

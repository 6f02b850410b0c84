"""The backbone's lean one-token step and the KV cache that grows in place: both equal what they replace."""

import copy

import pytest
import torch
from model_helpers import TEXT_CONFIGS, DiTARModelTester, set_stop_logit
from transformers import AutoConfig, AutoModel, DynamicCache, StaticCache
from transformers.cache_utils import DynamicLayer

import modeling_ditar.modeling_ditar as modeling
from modeling_ditar.backbone_decoding import (
    GrowingDynamicLayer,
    decode_step,
    growing_dynamic_cache,
    make_cache_grow_in_place,
    supports_decode_step,
)


def backbone(kind="qwen2", attention="sdpa", **overrides):
    config = AutoConfig.for_model(**{**TEXT_CONFIGS[kind], **overrides})
    config._attn_implementation = attention
    torch.manual_seed(0)
    return AutoModel.from_config(config).eval()


def prefilled(model, cache, batch=3, length=6, padded=False):
    generator = torch.Generator().manual_seed(1)
    embeds = torch.randn(batch, length, model.config.hidden_size, generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    if padded:
        mask[1, :2] = 0  # left padding
        mask[2, :1] = 0
    positions = (mask.cumsum(1) - 1).clamp(min=0).float() * 0.7  # DiTAR's aligned positions are fractional
    with torch.no_grad():
        model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True)
    return mask, positions[:, -1]


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_decode_step_equals_the_model_forward(kind, padded, attention):
    model = backbone(kind, attention, attention_bias=True) if kind == "llama" else backbone(kind, attention)
    reference_cache, fast_cache = DynamicCache(config=model.config), growing_dynamic_cache(model.config)
    mask, last = prefilled(model, reference_cache, padded=padded)
    prefilled(model, fast_cache, padded=padded)
    with torch.no_grad():
        if padded and attention == "eager":  # eager attention's float mask is left to the model's forward
            assert not supports_decode_step(model, fast_cache, masked=True)
            return
        assert supports_decode_step(model, fast_cache, masked=padded)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for step in range(5):
            embeds = torch.randn(3, 1, model.config.hidden_size, generator=generator)
            mask = torch.cat([mask, mask.new_ones(3, 1)], dim=1)
            positions = (last + 0.7 * (step + 1))[:, None]
            step_mask = mask if padded else None
            expected = model(
                inputs_embeds=embeds, attention_mask=step_mask, position_ids=positions, cache=reference_cache
            ).last_hidden_state
            got = decode_step(model, embeds, step_mask, positions, fast_cache).last_hidden_state
            assert torch.equal(got, expected)
    for fast, reference in zip(fast_cache.layers, reference_cache.layers, strict=True):
        assert torch.equal(fast.keys, reference.keys) and torch.equal(fast.values, reference.values)


def test_decode_step_equals_the_model_forward_in_bfloat16_with_gqa_heads():
    model = backbone().to(torch.bfloat16)  # 4 query heads share 2 key/value heads
    reference_cache, fast_cache = DynamicCache(config=model.config), growing_dynamic_cache(model.config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        prefix = torch.randn(2, 5, model.config.hidden_size, generator=generator).to(torch.bfloat16)
        model(inputs_embeds=prefix, cache=reference_cache, use_cache=True)
        model(inputs_embeds=prefix, cache=fast_cache, use_cache=True)
        for step in range(3):
            embeds = torch.randn(2, 1, model.config.hidden_size, generator=generator).to(torch.bfloat16)
            positions = torch.full((2, 1), 5 + step)
            expected = model(inputs_embeds=embeds, position_ids=positions, cache=reference_cache).last_hidden_state
            got = decode_step(model, embeds, None, positions, fast_cache).last_hidden_state
            assert got.dtype == torch.bfloat16 and torch.equal(got, expected)


def test_growing_layer_appends_in_place_and_equals_a_dynamic_layer():
    grown, plain = GrowingDynamicLayer(), DynamicLayer()
    generator = torch.Generator().manual_seed(0)

    def append(length):
        keys = torch.randn(2, 2, length, 4, generator=generator)
        values = torch.randn(2, 2, length, 4, generator=generator)
        got, want = grown.update(keys, values), plain.update(keys, values)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert grown.get_seq_length() == plain.get_seq_length()

    append(5)
    buffer = grown._key_buffer
    for _ in range(20):
        append(1)
    assert grown._key_buffer is buffer  # 25 columns fit the first buffer: no copy of the cache per token
    for _ in range(50):
        append(1)
    assert grown._key_buffer.shape[-2] >= 75 and grown._key_buffer is not buffer  # doubled when full
    grown.crop(-3), plain.crop(-3)
    append(1)  # overwrites the cropped columns
    rows = torch.tensor([1, 0])
    grown.batch_select_indices(rows), plain.batch_select_indices(rows)
    append(1)  # the selected rows are a new tensor: copied into a new buffer
    grown.batch_repeat_interleave(2), plain.batch_repeat_interleave(2)
    assert torch.equal(grown.keys, plain.keys) and torch.equal(grown.values, plain.values)
    buffer = grown._key_buffer  # repeated straight into a buffer with room: the next token is appended in place
    keys = torch.randn(4, 2, 1, 4, generator=generator)
    assert torch.equal(grown.update(keys, keys)[0], plain.update(keys, keys)[0])
    assert grown._key_buffer is buffer and torch.equal(grown.values, plain.values)
    grown.reset()
    assert grown.get_seq_length() == 0 and grown.update(keys, keys)[0].shape[-2] == 1


def test_make_cache_grow_in_place_keeps_the_cached_columns():
    model = backbone()
    cache = DynamicCache(config=model.config)
    prefilled(model, cache)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]
    make_cache_grow_in_place(cache)
    assert all(type(layer) is GrowingDynamicLayer for layer in cache.layers)
    assert all(torch.equal(layer.keys, keys) for layer, (keys, _) in zip(cache.layers, before, strict=True))
    assert cache.get_seq_length() == 6
    static = StaticCache(config=model.config, max_cache_len=8)
    make_cache_grow_in_place(static)  # other caches are left alone
    assert not any(isinstance(layer, GrowingDynamicLayer) for layer in static.layers)


def test_decode_step_is_not_used_where_it_would_differ():
    model = backbone()
    cache = growing_dynamic_cache(model.config)
    with torch.no_grad():
        assert supports_decode_step(model, cache)
        assert not supports_decode_step(model, StaticCache(config=model.config, max_cache_len=8))
        handle = model.layers[0].mlp.register_forward_hook(lambda *_: None)
        assert not supports_decode_step(model, cache)  # a hook would be skipped
        handle.remove()
        wrapped = copy.deepcopy(model)
        wrapped.layers[0].self_attn.q_proj = torch.nn.Sequential(wrapped.layers[0].self_attn.q_proj)
        assert not supports_decode_step(wrapped, cache)  # e.g. LoRA-wrapped projections
        assert not supports_decode_step(backbone(use_sliding_window=True, sliding_window=4), cache)
        assert not supports_decode_step(backbone(attention="eager"), cache, masked=True)
    assert not supports_decode_step(model, cache)  # autograd on: training takes the model's forward


@pytest.mark.parametrize("backbone_kind", ["qwen2", "llama"])
@pytest.mark.parametrize("left_pad", [False, True])
def test_generation_takes_the_lean_step_and_equals_the_model_forward(monkeypatch, backbone_kind, left_pad):
    tester = DiTARModelTester(backbone=backbone_kind)
    model = tester.get_model()
    set_stop_logit(model, -30.0)
    reference = copy.deepcopy(model)
    reference.generation_speedups.fast_backbone = False
    calls = []

    def counting(*args):
        calls.append(args[1].shape[0])
        return decode_step(*args)

    monkeypatch.setattr(modeling, "decode_step", counting)
    inputs = tester.prepare_generation_inputs(left_pad=left_pad)
    kwargs = dict(max_new_patches=4, generator=torch.Generator().manual_seed(0))
    fast = model.generate(**inputs, **kwargs)
    slow = reference.generate(**inputs, **{**kwargs, "generator": torch.Generator().manual_seed(0)})
    assert len(calls) == 4
    assert torch.equal(fast.features, slow.features) and torch.equal(fast.lengths, slow.lengths)

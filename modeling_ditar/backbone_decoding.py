"""The backbone's one-token decode step without transformers' per-call wrappers, and a KV cache that grows in place.

Generation runs the backbone once per patch on one new token. At the embedded default's size (a 6-layer, 256-wide
Qwen2) such a step is a few million multiply-adds per row, and most of its time goes to what surrounds them: the model's
output capturing and mask preparation, each layer's argument plumbing and deprecation wrappers, and `DynamicCache`'s
`torch.cat`, which copies the whole cache for every new token (quadratic in the length).

`decode_step` runs the decoder layers' own parts in the order their `forward` runs them: the model's rotary embedding,
the norms', projections' and MLP's `forward`, the modeling module's `apply_rotary_pos_emb` and the attention function
the config selects. So it equals the model's forward bit for bit and only skips the wrappers. It is used where that
holds (`supports_decode_step`): Llama, Mistral and Qwen2 decoder layers with plain (or low-precision) linear
projections, full attention, the sdpa or eager attention function, no hooks and no autograd. Anything else takes the
model's forward.

`GrowingDynamicLayer` is a `DynamicLayer` whose keys and values are views of buffers with room to spare (doubled when
full), so appending a token writes it in place. Everything else about the layer (cropping, selecting or repeating rows,
lengths) is `DynamicLayer`'s own, on those views.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .low_precision import is_plain_linear

# Decoder layers whose forward is: norm -> q/k/v projections -> rotary -> cache update -> attention -> o projection ->
# residual -> norm -> MLP -> residual, with `apply_rotary_pos_emb` and `eager_attention_forward` in their module.
SUPPORTED_DECODER_LAYERS = {
    "transformers.models.llama.modeling_llama": "LlamaDecoderLayer",
    "transformers.models.mistral.modeling_mistral": "MistralDecoderLayer",
    "transformers.models.qwen2.modeling_qwen2": "Qwen2DecoderLayer",
}
MINIMUM_CAPACITY = 64


class GrowingDynamicLayer(DynamicLayer):
    """A `DynamicLayer` that appends in place: `keys` and `values` are views of the first `length` positions of buffers
    with spare room, reallocated at twice the needed size when full. After anything that replaces `keys` with another
    tensor (selecting or repeating rows), the next update copies it into a new buffer."""

    _key_buffer: torch.Tensor | None = None
    _value_buffer: torch.Tensor | None = None

    def _buffer_holds_keys(self, length: int, new: torch.Tensor) -> bool:
        buffer = self._key_buffer
        return (
            buffer is not None
            and length > 0
            and self.keys.data_ptr() == buffer.data_ptr()
            and self.values.data_ptr() == self._value_buffer.data_ptr()
            and self.keys.stride() == buffer.stride()
            and self.keys.shape[:2] == new.shape[:2] == buffer.shape[:2]
            and buffer.dtype == new.dtype
        )

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        length = self.get_seq_length()
        end = length + key_states.shape[-2]
        if not (self._buffer_holds_keys(length, key_states) and end <= self._key_buffer.shape[-2]):
            capacity = max(MINIMUM_CAPACITY, 2 * end)
            keys = key_states.new_empty((*key_states.shape[:2], capacity, key_states.shape[-1]))
            values = value_states.new_empty((*value_states.shape[:2], capacity, value_states.shape[-1]))
            if length:
                keys[:, :, :length] = self.keys
                values[:, :, :length] = self.values
            self._key_buffer, self._value_buffer = keys, values
        self._key_buffer[:, :, length:end] = key_states
        self._value_buffer[:, :, length:end] = value_states
        self.keys = self._key_buffer[:, :, :end]
        self.values = self._value_buffer[:, :, :end]
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        """`DynamicLayer`'s repeat (each row `repeats` times in a row), written straight into buffers with room to
        spare: best of K repeats a text's prefilled cache for its K candidates, and the next update then appends in
        place instead of copying the repeated cache once more."""
        if self.get_seq_length() == 0:
            return super().batch_repeat_interleave(repeats)
        length = self.keys.shape[-2]
        capacity = max(MINIMUM_CAPACITY, 2 * (length + 1))
        buffers = []
        for tensor in (self.keys, self.values):
            batch, heads, _, dim = tensor.shape
            buffer = tensor.new_empty((batch * repeats, heads, capacity, dim))
            buffer.view(batch, repeats, heads, capacity, dim)[:, :, :, :length] = tensor[:, None]
            buffers.append(buffer)
        self._key_buffer, self._value_buffer = buffers
        self.keys = self._key_buffer[:, :, :length]
        self.values = self._value_buffer[:, :, :length]

    def reset(self) -> None:
        self._key_buffer = self._value_buffer = None
        super().reset()


def growing_dynamic_cache(config) -> DynamicCache:
    """A `DynamicCache` for `config` whose plain dynamic layers grow in place (other layer types are kept)."""
    cache = DynamicCache(config=config)
    make_cache_grow_in_place(cache)
    return cache


def make_cache_grow_in_place(cache) -> None:
    """Swap the plain `DynamicLayer`s of a `DynamicCache` for `GrowingDynamicLayer`s holding the same keys and values
    (the next update copies them into a buffer with room to spare). Other caches are left as they are."""
    if not isinstance(cache, DynamicCache):
        return
    for index, layer in enumerate(cache.layers):
        if type(layer) is not DynamicLayer:
            continue
        grown = GrowingDynamicLayer()
        grown.__dict__.update(layer.__dict__)
        cache.layers[index] = grown


def _has_hooks(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or getattr(module, "_forward_hooks_with_kwargs", None)
        or hasattr(module, "_hf_hook")  # accelerate's device and offload hooks
    )


def supports_decode_step(language_model: nn.Module, cache, masked: bool = False) -> bool:
    """Whether `decode_step` equals `language_model`'s forward for one new token appended to `cache` (see the module
    docstring); `masked`: the step will get an attention mask (padded rows)."""
    from torch.nn.modules import module as torch_module

    if torch.is_grad_enabled() or torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return False
    # a static or sliding cache attends over columns the model's own mask selects
    if not isinstance(cache, DynamicCache) or not all(
        isinstance(layer, DynamicLayer) and not layer.is_sliding for layer in cache.layers
    ):
        return False
    config = getattr(language_model, "config", None)
    layers = getattr(language_model, "layers", None)
    if config is None or not layers or len(layers) != getattr(config, "num_hidden_layers", len(layers)):
        return False
    if not all(isinstance(getattr(language_model, name, None), nn.Module) for name in ("rotary_emb", "norm")):
        return False
    sliding = getattr(config, "sliding_window", None) is not None and getattr(config, "use_sliding_window", True)
    if sliding or any(kind != "full_attention" for kind in (getattr(config, "layer_types", None) or ())):
        return False
    # eager attention takes a float mask, which is left to the model's forward
    if config._attn_implementation not in ("sdpa", "eager") or (masked and config._attn_implementation != "sdpa"):
        return False
    for layer in layers:
        attention = getattr(layer, "self_attn", None)
        if SUPPORTED_DECODER_LAYERS.get(type(layer).__module__) != type(layer).__name__ or attention is None:
            return False
        projections = [getattr(attention, name, None) for name in ("q_proj", "k_proj", "v_proj", "o_proj")]
        if not all(is_plain_linear(projection) for projection in projections):
            return False
        if getattr(attention, "sliding_window", None) is not None:
            return False
    return not any(_has_hooks(module) for module in language_model.modules())


def decode_step(
    language_model: nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    cache,
) -> BaseModelOutputWithPast:
    """One new token through a backbone that `supports_decode_step`: inputs_embeds [B, 1, H], attention_mask [B, L] (1
    where a cached or new column may be attended to) or None when no row is padded, position_ids [B, 1]; appends to
    `cache` and returns the last hidden state [B, 1, H] as the model's forward would."""
    batch = inputs_embeds.shape[0]
    config = language_model.config
    layers = language_model.layers
    modeling = importlib.import_module(type(layers[0]).__module__)
    attention_function = ALL_ATTENTION_FUNCTIONS.get_interface(
        config._attn_implementation, modeling.eager_attention_forward
    )
    # sdpa's mask for one query at the end of the cache: every unpadded column (causality holds for all of them)
    mask = None if attention_mask is None else attention_mask[:, None, None, :].bool()
    hidden = inputs_embeds
    cos, sin = language_model.rotary_emb(hidden, position_ids)
    for index, layer in enumerate(layers):
        attention = layer.self_attn
        shape = (batch, 1, -1, attention.head_dim)
        normed = layer.input_layernorm.forward(hidden)
        query = attention.q_proj.forward(normed).view(shape).transpose(1, 2)
        key = attention.k_proj.forward(normed).view(shape).transpose(1, 2)
        value = attention.v_proj.forward(normed).view(shape).transpose(1, 2)
        query, key = modeling.apply_rotary_pos_emb(query, key, cos, sin)
        key, value = cache.update(key, value, index)
        out, _ = attention_function(attention, query, key, value, mask, dropout=0.0, scaling=attention.scaling)
        out = attention.o_proj.forward(out.reshape(batch, 1, -1).contiguous())
        hidden = hidden + out
        hidden = hidden + layer.mlp.forward(layer.post_attention_layernorm.forward(hidden))
    return BaseModelOutputWithPast(last_hidden_state=language_model.norm.forward(hidden))

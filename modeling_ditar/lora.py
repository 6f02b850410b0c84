"""LoRA adapters for DiTAR through `peft`: small, swappable at run time, saved as safetensors, pushed to the Hub.

Model (transformers-style names): `model.add_adapter(default_lora_config(), adapter_name="me")`, `load_adapter`,
`set_adapter`, `disable_adapters` / `enable_adapters`, `active_adapters`, `delete_adapter`, `get_adapter_state_dict`,
plus `save_adapter(folder)` (adapter_model.safetensors + adapter_config.json + a README.md card), `unload_adapters()`
(the plain layers back: the base output bit for bit), `fuse_adapters()` / `unfuse_adapters()`, `merge_and_unload()`
(a plain model with the adapter built in), `adapter_summary()`.
These are implemented here on `peft`'s layer-level API (`inject_adapter_in_model` and the LoRA layers) rather than
inherited from transformers' `PeftAdapterMixin`, whose methods require a newer `peft` than the one published when this
was written; the names, arguments and saved files are the same, so a folder saved here loads with either.

Pipeline (diffusers-style names, [`DiTARLoraLoaderMixin`]): `pipe.load_lora_weights(folder_or_repo, adapter_name=...)`,
`set_adapters`, `disable_lora` / `enable_lora`, `get_active_adapters`, `get_list_adapters`, `delete_adapters`,
`fuse_lora` / `unfuse_lora`, `unload_lora_weights`.

Fast inference: LoRA-wrapped linears make the bidirectional stacks take the diffusers path (see transformer_blocks.py);
`fuse_lora` folds the active adapters into copies of the plain layers, so the fast path returns (`unfuse_lora` puts
the LoRA layers back exactly, moved to any device, dtype or matmul dtype the model was given while fused).

`peft` is imported only when an adapter is used (`pip install peft`); synthesis without adapters never needs it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn
from transformers.utils import logging

from .low_precision import LowPrecisionLinear, is_plain_linear, set_linear_matmul_dtype

logger = logging.get_logger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# Module-name patterns (matched in full by peft) of the linears each target group adapts.
TARGET_GROUPS = {
    # the causal LM backbone's attention projections (Qwen2, Llama, Mistral, ... all use these names)
    "backbone": r"language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
    # the backbone's MLP
    "backbone-mlp": r"language_model\.layers\.\d+\.mlp\.(gate_proj|up_proj|down_proj)",
    # LocDiT's diffusers blocks: attention and feed-forward
    "locdit": r"locdit\.transformer\.blocks\.\d+\.(attn1\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2))",
    # the aggregation encoder's diffusers blocks
    "encoder": r"aggregation_encoder\.transformer\.blocks\.\d+\."
    r"(attn1\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.(0\.proj|2))",
    # where features enter and leave the stacks: LocDiT's input, output and conditioning projections and the
    # aggregation encoder's input and output projections (small, but they touch the speech features directly)
    "io": r"(locdit\.(in_proj|out_proj|cond_proj)|aggregation_encoder\.(in_proj|out_proj))",
    # the heads on the backbone: the CTC head (which also ranks candidates at generation) and the stop head
    "heads": r"(ctc_head|stop_head)",
}
# Every linear of the transformer stacks and the projections around them at a low rank: on a new voice this gained
# more speaker similarity than the attention projections alone at twice the rank (about the same size). "all" adds the
# heads, which did not add to the gain.
DEFAULT_TARGETS = "backbone+backbone-mlp+locdit+encoder+io"
DEFAULT_RANK = 8
# Name endings (peft `modules_to_save` matches module names by their end) of the normalisation layers of the backbone
# (Qwen2 / Llama names), LocDiT and the aggregation encoder: `train_norms=True` trains a copy of each per adapter.
NORM_MODULES = ("input_layernorm", "post_attention_layernorm", "language_model.norm", "norm1", "norm3", "norm_out")


def _require_peft():
    try:
        import peft
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("LoRA adapters need peft: pip install peft (or the `train` extra)") from error
    return peft


def lora_target_modules(targets: str | list[str] = DEFAULT_TARGETS) -> str | list[str]:
    """peft `target_modules` for `targets`: groups of [`TARGET_GROUPS`] joined by '+' (e.g. "backbone+locdit",
    "backbone+backbone-mlp+locdit+encoder", or "all" for every group), or a list of module names / a regex passed
    through unchanged."""
    if isinstance(targets, list | tuple):
        return list(targets)
    if targets.strip() == "all":
        targets = "+".join(TARGET_GROUPS)
    groups = [group.strip() for group in targets.split("+") if group.strip()]
    if not groups or any(group not in TARGET_GROUPS for group in groups):
        if not any(group in TARGET_GROUPS for group in groups) and ("\\" in targets or "(" in targets):
            return targets  # a regex of module names
        raise ValueError(f"LoRA targets {targets!r}: use groups of {sorted(TARGET_GROUPS)} joined by '+', or a list")
    return "(" + "|".join(TARGET_GROUPS[group] for group in groups) + ")"


def default_lora_config(
    rank: int = DEFAULT_RANK,
    alpha: float | None = None,
    targets: str | list[str] = DEFAULT_TARGETS,
    dropout: float = 0.0,
    train_norms: bool = False,
    **kwargs,
):
    """A `peft.LoraConfig` for DiTAR: rank `rank`, `lora_alpha` = `alpha` (default 2 x rank), LoRA on `targets`
    (see [`lora_target_modules`]). On the shipped default (9.9M parameters) the default, rank 8 on every group but the
    heads, trains 4.5% of the parameters (an adapter of 1.8 MB in float32). `train_norms=True` also trains each
    normalisation layer's scale and shift (a copy per adapter, peft's `modules_to_save`; 8,448 more parameters)."""
    from peft import LoraConfig

    _require_peft()
    return LoraConfig(
        r=rank,
        lora_alpha=2 * rank if alpha is None else alpha,
        lora_dropout=dropout,
        target_modules=lora_target_modules(targets),
        **({"modules_to_save": list(NORM_MODULES)} if train_norms else {}),
        **kwargs,
    )


def _tuner_layers(model: nn.Module):
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # without peft no LoRA layer can be in the model (saving must work on a light install)
        return []

    return [(name, module) for name, module in model.named_modules() if isinstance(module, BaseTunerLayer)]


def _trained_copies(model: nn.Module):
    """peft's wrappers of modules trained whole per adapter (`modules_to_save`), with their names."""
    try:
        from peft.utils.other import ModulesToSaveWrapper
    except ImportError:
        return []

    return [(name, module) for name, module in model.named_modules() if isinstance(module, ModulesToSaveWrapper)]


def _active_copy(wrapper, names: list[str]) -> str | None:
    """The one adapter among `names` whose trained copy `wrapper` holds (None: the original module runs)."""
    holders = [name for name in names if name in wrapper.modules_to_save]
    if len(holders) > 1:
        raise ValueError(
            f"Adapters {holders} each train their own copy of the normalisation layers; only one of them can be "
            "active at a time: set_adapter one of them"
        )
    return holders[0] if holders else None


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _match_stand_in(restored: nn.Module, stand_in: nn.Module) -> None:
    """Give `restored`, a LoRA layer or trained-copy wrapper set aside while its adapters were fused, the device, dtype,
    matmul dtype and train/eval mode of `stand_in`, the plain layer that held the fused weights in its place: a `to`,
    `set_matmul_dtype` or `train` of the model while fused reached only the stand-in, and a layer put back as it was
    would then multiply in another dtype than its neighbours (an error, or a silent bfloat16 matmul)."""
    base = restored.get_base_layer() if hasattr(restored, "get_base_layer") else restored.original_module
    before = next((p for p in base.parameters() if p.is_floating_point()), None)
    now = next((p for p in stand_in.parameters() if p.is_floating_point()), None)
    if before is not None and now is not None:
        restored.to(device=now.device)
        if now.dtype != before.dtype:  # only on a change: a half model's adapters may be kept in float32 on purpose
            restored.to(dtype=now.dtype)
    matmul = _matmul_dtype(stand_in)
    if matmul is not None and matmul != _matmul_dtype(base):  # only on a change, as for the dtype
        set_linear_matmul_dtype(restored, matmul)
    restored.train(stand_in.training)


def _matmul_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype `module`'s plain linears multiply in (see `low_precision`); None when it has none."""
    linears = [m for m in module.modules() if is_plain_linear(m)]
    if not linears:
        return None
    return next((m.matmul_dtype for m in linears if type(m) is LowPrecisionLinear), torch.float32)


def _repeated_name_error(names: list[str]) -> ValueError | None:
    """Active adapters add up, so a name given twice would apply that adapter twice."""
    repeated = next((name for index, name in enumerate(names) if name in names[:index]), None)
    if repeated is None:
        return None
    return ValueError(
        f"Adapter {repeated!r} is named twice in {names}; each adapter is applied once (diffusers scales an adapter "
        "with set_adapters(..., adapter_weights=...), which here takes only 1.0: fuse_lora(lora_scale=...) scales "
        "fused adapters)."
    )


# what `load_adapter` passes to the Hub download (a local folder needs none of them)
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download", "subfolder")


def _read_adapter(source: str | os.PathLike, **hub_kwargs) -> tuple[dict, dict]:
    """(adapter config dict, state dict) of a local adapter folder or a Hub repository; a damaged file is named."""
    from safetensors.torch import load_file

    from .hub_utils import folder_or_hub_files

    unknown = sorted(set(hub_kwargs) - set(HUB_KWARGS))
    if unknown:
        raise TypeError(
            f"loading an adapter got unexpected keyword arguments {unknown}: an adapter folder holds {ADAPTER_CONFIG} "
            f"and {ADAPTER_WEIGHTS} (no other weight file is read); for a Hub repo it takes {list(HUB_KWARGS)}."
        )
    config_path, weights_path = folder_or_hub_files(
        source, (ADAPTER_CONFIG, ADAPTER_WEIGHTS), "a LoRA adapter", **hub_kwargs
    )
    try:
        config = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{config_path} is not valid JSON ({err}); save the adapter again.") from err
    if not isinstance(config, dict):
        raise ValueError(f"{config_path} holds a JSON {type(config).__name__}, not an adapter config; save it again.")
    try:
        state = load_file(str(weights_path))
    except Exception as err:  # safetensors raises its own error type for a truncated or foreign file
        raise ValueError(
            f"{weights_path} is truncated or not a safetensors file ({err}); save the adapter again."
        ) from err
    return config, _without_peft_model_prefix(state)


# `PeftModel.save_pretrained` names the weights from the wrapper (`base_model.model.<layer>...`); the model's own layers
# have no such prefix (transformers' `load_adapter` strips it too)
PEFT_MODEL_PREFIX = "base_model.model."


def _without_peft_model_prefix(state: dict) -> dict:
    return {key.removeprefix(PEFT_MODEL_PREFIX): tensor for key, tensor in state.items()}


def _check_adapter_fits(model: nn.Module, rank: int, state: dict, source) -> None:
    """Refuse, before anything is injected, an adapter whose weights do not fit the model's layers (an adapter of a
    model of another size, or of another rank than its config says), naming the first misfits."""
    problems = []
    for key, tensor in state.items():
        for part, axis in ((".lora_A.", 1), (".lora_B.", 0)):
            if part not in key:
                continue
            layer_name = key.split(part)[0]
            try:
                layer = model.get_submodule(layer_name)
            except AttributeError:
                problems.append(f"{layer_name} is not a layer of this model")
                continue
            layer = getattr(layer, "base_layer", layer)  # already wrapped by an earlier adapter
            if not isinstance(layer, nn.Linear) or tensor.dim() != 2:
                continue
            size = layer.in_features if axis == 1 else layer.out_features
            if tensor.shape[axis] != size:
                side = "input" if axis == 1 else "output"
                problems.append(f"{layer_name} has {side} size {tensor.shape[axis]} in the adapter, {size} here")
            elif tensor.shape[1 - axis] != rank:
                problems.append(
                    f"{layer_name} has rank {tensor.shape[1 - axis]} in the adapter, r={rank} in its config"
                )
    if problems:
        listing = "; ".join(dict.fromkeys(problems[:4])) + ("; ..." if len(problems) > 4 else "")
        raise ValueError(f"{source}: this adapter does not fit this model ({listing}); nothing was loaded.")


FUSED_NO_NEW_ADAPTER = "Adapters are fused: unfuse them first (pipe.unfuse_lora(), or model.unfuse_adapters())"


class DiTARLoraMixin:
    """LoRA adapters on a DiTAR model (module docstring). Adapter state: `peft_config` {name: LoraConfig}."""

    def _ditar_adapters(self) -> dict:
        adapters = self.__dict__.get("_ditar_peft_config")
        if adapters is None:
            adapters = self.__dict__["_ditar_peft_config"] = {}
        return adapters

    @property
    def peft_config(self) -> dict:
        """{adapter name: LoraConfig}; like a transformers model, a model without adapters has no `peft_config`
        (peft's `get_peft_model` takes one that exists for adapters already there and warns about them)."""
        adapters = self._ditar_adapters()
        if not adapters:
            # `hasattr(model, "peft_config")` is False; the message never reaches anyone: nn.Module's `__getattr__`,
            # which Python calls when a property raises AttributeError, raises its own ("... has no attribute ...")
            raise AttributeError
        return adapters

    @peft_config.setter
    def peft_config(self, value: dict) -> None:
        # peft's injection assigns its tuner's {adapter_name: config}: kept as that same dict (as on a transformers
        # model), so adapters a PeftModel adds or deletes later are this model's too
        self.__dict__["_ditar_peft_config"] = value

    @peft_config.deleter
    def peft_config(self) -> None:
        # peft's `unload()` / `merge_and_unload()` delete it once the plain layers are back: no adapter is left
        self._forget_adapters()

    def _forget_adapters(self) -> None:
        """Drop the adapter bookkeeping once no LoRA layer is left: the registry, the active adapters, and the base
        parameters' `requires_grad` flags from before the first adapter froze them (put back)."""
        flags = self.__dict__.pop("_ditar_requires_grad", None) or {}
        for name, parameter in self.named_parameters():
            parameter.requires_grad_(flags.get(name, parameter.requires_grad))
        self.__dict__.pop("_ditar_peft_config", None)
        self._ditar_active = []

    def _check_has_adapters(self) -> None:
        if not self._ditar_adapters():
            raise ValueError(
                "No adapter loaded: pipe.load_lora_weights(...) first (on the model: load_adapter(...) or "
                "add_adapter(...))"
            )

    def _check_not_fused(self, action: str, consequence: str = "would not change what the model speaks") -> None:
        """Fusing swaps the LoRA layers out for plain ones holding the fused weights, so switching, deleting or saving
        adapters would change the bookkeeping and not what the model speaks (or save an empty adapter)."""
        if getattr(self, "_ditar_fused", None):
            raise ValueError(
                f"The adapters are fused into the weights, so {action} {consequence}: pipe.unfuse_lora() (on the "
                "model: unfuse_adapters()) first."
            )

    def add_adapter(self, adapter_config, adapter_name: str | None = None) -> None:
        """Insert a new LoRA adapter (a `peft.LoraConfig`, e.g. [`default_lora_config`]) and make it the active one.
        Only adapter parameters stay trainable."""
        _require_peft()
        from peft import inject_adapter_in_model

        adapter_name = adapter_name or "default"
        adapters = self._ditar_adapters()
        if adapter_name in adapters:
            raise ValueError(f"Adapter {adapter_name!r} already exists; delete_adapter it or pick another name")
        if getattr(self, "_ditar_fused", None):
            raise ValueError(FUSED_NO_NEW_ADAPTER)
        adapter_config = copy.deepcopy(adapter_config)
        adapter_config.base_model_name_or_path = getattr(self, "name_or_path", None) or None
        adapter_config.inference_mode = False
        if not adapters and not _tuner_layers(self):  # peft freezes the base: its flags come back on unload
            self._ditar_requires_grad = {n: p.requires_grad for n, p in self.named_parameters()}
        with warnings.catch_warnings():  # with adapters already loaded peft warns of several adapters: on purpose
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            inject_adapter_in_model(adapter_config, self, adapter_name)
        self._ditar_adapters()[adapter_name] = adapter_config  # (the injection may have given the model a new dict)
        self.set_adapter(adapter_name)

    def load_adapter(self, peft_model_id: str | os.PathLike, adapter_name: str | None = None, **hub_kwargs) -> None:
        """Load an adapter saved by [`save_adapter`] (or peft / transformers) from a folder or a Hub repository."""
        _require_peft()
        from peft import LoraConfig, set_peft_model_state_dict

        adapter_name = "default" if adapter_name is None else adapter_name
        if getattr(self, "_ditar_fused", None):
            raise ValueError(FUSED_NO_NEW_ADAPTER)
        if not isinstance(adapter_name, str) or not adapter_name or "." in adapter_name:
            raise ValueError(f"adapter_name must be a non-empty string without '.', got {adapter_name!r}.")
        if adapter_name in self._ditar_adapters():
            raise ValueError(f"Adapter {adapter_name!r} already exists; delete_adapter it or pick another name")
        config, state = _read_adapter(peft_model_id, **hub_kwargs)
        if not state:
            raise ValueError(f"{peft_model_id}: the adapter file holds no weights; save the adapter again.")
        if config.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"{peft_model_id}: a {config.get('peft_type')} adapter; only LoRA is supported")
        known = set(LoraConfig.__dataclass_fields__)
        lora_config = LoraConfig(**{k: v for k, v in config.items() if k in known and k != "peft_type"})
        if not lora_config.rank_pattern:
            _check_adapter_fits(self, lora_config.r, state, peft_model_id)
        before = self._adapter_state()
        try:
            self.add_adapter(lora_config, adapter_name)
            result = set_peft_model_state_dict(self, state, adapter_name=adapter_name)
            missing = [key for key in getattr(result, "unexpected_keys", []) if "lora_" in key]
            if missing:
                raise ValueError(f"{peft_model_id}: {len(missing)} adapter weights match no layer, e.g. {missing[0]}")
        except BaseException as err:
            self._drop_failed_adapter(adapter_name, *before)  # the model as it was before the call
            if type(err).__name__ == "NoMatchingPeftModuleError":  # peft's, for target_modules that match no layer
                raise ValueError(f"{peft_model_id}: its target_modules match no layer of this model ({err})") from err
            raise
        if getattr(self, "candidate_locdit", None) is not None:
            # the student was distilled from the LocDiT and backbone before the adapter changed them
            logger.warning_once(
                "This model samples its candidates with a candidate LocDiT distilled from the model without the "
                "adapter, so the adapter does not shape the candidates' first patches; call "
                "`model.remove_candidate_locdit()` to sample them with the adapted LocDiT (slower first audio)."
            )

    def _adapters_disabled(self) -> bool:
        """Whether the adapters are switched off (`disable_adapters`): every LoRA layer carries the same flag."""
        layers = _tuner_layers(self)
        return bool(layers and layers[0][1].disable_adapters)

    def _adapter_state(self) -> tuple[list[str], bool]:
        """(active adapters, adapters switched off), to put back after a refused load."""
        return list(getattr(self, "_ditar_active", [])), self._adapters_disabled()

    def _drop_failed_adapter(self, name: str, active: list[str], disabled: bool) -> None:
        """Remove what a failed `load_adapter` of `name` left (its config, layers injected before the failure) and
        restore the adapters that were active or switched off."""
        adapters = self._ditar_adapters()
        adapters.pop(name, None)  # beside others, peft's injection registers the config before touching any layer
        if not adapters:
            self.unload_adapters()
            return
        for _, layer in _tuner_layers(self):
            if name in getattr(layer, "lora_A", {}):
                layer.delete_adapter(name)
        for _, wrapper in _trained_copies(self):
            if name in wrapper.modules_to_save:
                wrapper.delete_adapter(name, None)
        self.set_adapter(active or next(iter(adapters)))
        if disabled:
            self.disable_adapters()

    def set_adapter(self, adapter_name: str | list[str]) -> None:
        """Make `adapter_name` (or several, which then add up) the active adapter(s); enables adapters."""
        self._check_has_adapters()
        self._check_not_fused("switching adapters")
        if isinstance(adapter_name, str):
            names = [adapter_name]
        elif isinstance(adapter_name, (list, tuple)) and adapter_name and all(isinstance(n, str) for n in adapter_name):
            names = list(adapter_name)
        else:
            raise ValueError(
                f"Give an adapter name or a list of them, got {adapter_name!r}; loaded: "
                f"{sorted(self._ditar_adapters())} (disable_lora() runs the base model)"
            )
        unknown = [name for name in names if name not in self._ditar_adapters()]
        if unknown:
            raise ValueError(f"No adapter named {unknown}; loaded: {sorted(self._ditar_adapters())}")
        if error := _repeated_name_error(names):
            raise error
        copies = [(wrapper, _active_copy(wrapper, names)) for _, wrapper in _trained_copies(self)]
        for _, layer in _tuner_layers(self):
            layer.enable_adapters(True)
            layer.set_adapter(names)
        for wrapper, active in copies:
            wrapper.enable_adapters(True)
            wrapper.set_adapter([active] if active else [])
        self._ditar_active = names

    def disable_adapters(self) -> None:
        """Run the base model (adapters stay loaded; `enable_adapters` turns them back on)."""
        self._check_has_adapters()
        self._check_not_fused("disabling them")
        for _, layer in _tuner_layers(self) + _trained_copies(self):
            layer.enable_adapters(False)

    def enable_adapters(self) -> None:
        self._check_has_adapters()
        self._check_not_fused("enabling them")
        for _, layer in _tuner_layers(self) + _trained_copies(self):
            layer.enable_adapters(True)

    def active_adapters(self) -> list[str]:
        self._check_has_adapters()
        if self._adapters_disabled():
            return []
        return list(getattr(self, "_ditar_active", []))

    def delete_adapter(self, adapter_names: str | list[str]) -> None:
        """Remove adapters; when none is left the plain layers come back ([`unload_adapters`])."""
        # a name given twice is deleted once
        names = list(dict.fromkeys([adapter_names] if isinstance(adapter_names, str) else adapter_names))
        adapters = self._ditar_adapters()
        for name in names:
            if name not in adapters:
                raise ValueError(f"No adapter named {name!r}; loaded: {sorted(adapters)}")
        self._check_not_fused("deleting adapters")
        if not set(adapters) - set(names):
            self.unload_adapters()
            return
        disabled = self._adapters_disabled()  # set_adapter below switches the adapters on
        for _, layer in _tuner_layers(self):
            for name in names:
                layer.delete_adapter(name)
        for _, wrapper in _trained_copies(self):
            for name in names:
                wrapper.delete_adapter(name, None)  # set_adapter below activates the remaining adapter's copy
        for name in names:
            del adapters[name]
        remaining = [name for name in getattr(self, "_ditar_active", []) if name in adapters]
        self.set_adapter(remaining or next(iter(adapters)))
        if disabled:
            self.disable_adapters()

    def unload_adapters(self) -> None:
        """Remove every adapter and put the original layers back (same objects: the base output bit for bit, and the
        fast inference path again)."""
        if getattr(self, "_ditar_fused", None):
            self.unfuse_adapters()
        for name, layer in _tuner_layers(self):
            _set_submodule(self, name, layer.get_base_layer())
        for name, wrapper in _trained_copies(self):
            _set_submodule(self, name, wrapper.original_module)
        self._forget_adapters()

    def save_pretrained(self, save_directory, *args, variant=None, max_shard_size=None, **kwargs):
        """The model's own `save_pretrained`, refused while LoRA layers are in place (their weights would be saved
        under names a plain model does not load): `save_adapter` saves the adapter, `fuse_adapters` /
        `merge_and_unload` build it into a model that saves like any other, `unload_adapters` drops it.
        `variant` and `max_shard_size` are named here because a diffusers pipeline passes a component only the
        arguments its signature names (`pipe.save_pretrained(..., max_shard_size=...)` was dropped silently)."""
        if _tuner_layers(self) or _trained_copies(self):
            raise ValueError(
                "LoRA adapters are loaded: save_adapter(folder) saves an adapter; fuse_lora() / merge_and_unload() "
                "(or unload_lora_weights()) before saving the whole model or pipeline"
            )
        if variant is not None:
            kwargs["variant"] = variant
        if max_shard_size is not None:
            kwargs["max_shard_size"] = max_shard_size
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _adapter_name(self, adapter_name: str | None) -> str:
        """`adapter_name`, or the first active adapter (the first loaded one when none is active); refuses a name
        that is not loaded, before anything is read or written."""
        self._check_has_adapters()
        adapter_name = adapter_name or (getattr(self, "_ditar_active", None) or [next(iter(self.peft_config))])[0]
        if adapter_name not in self._ditar_adapters():
            raise ValueError(f"No adapter named {[adapter_name]}; loaded: {sorted(self._ditar_adapters())}")
        return adapter_name

    def get_adapter_state_dict(self, adapter_name: str | None = None) -> dict[str, torch.Tensor]:
        """The adapter's weights under peft's names (adapter name left out), as saved in adapter_model.safetensors."""
        from peft import get_peft_model_state_dict

        adapter_name = self._adapter_name(adapter_name)
        self._check_not_fused("reading an adapter's weights", "would find none (they are in the fused layers now)")
        return get_peft_model_state_dict(self, adapter_name=adapter_name)

    def save_adapter(self, save_directory: str | os.PathLike, adapter_name: str | None = None, card: bool = True):
        """Write adapter_model.safetensors, adapter_config.json and (with `card`) a README.md card into the folder."""
        from .hub_utils import save_safetensors

        adapter_name = self._adapter_name(adapter_name)
        self._check_not_fused("saving an adapter", "would write an empty one")
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.get_adapter_state_dict(adapter_name).items()}
        save_safetensors(state, folder / ADAPTER_WEIGHTS)
        config = self.peft_config[adapter_name]
        config.inference_mode = True
        config.save_pretrained(str(folder))
        config.inference_mode = False
        if card:
            (folder / "README.md").write_text(adapter_card(config, state, adapter_name))
        return folder

    def fuse_adapters(self, adapter_names: list[str] | None = None, lora_scale: float = 1.0) -> None:
        """Fold the adapters (default: the active ones) into copies of the plain layers, which replace the LoRA layers
        (the fast inference path applies again); [`unfuse_adapters`] restores the LoRA layers exactly."""
        self._check_has_adapters()
        if getattr(self, "_ditar_fused", None):
            raise ValueError("Adapters are already fused: unfuse_adapters() first")
        if self._adapters_disabled():
            raise ValueError(
                "The adapters are disabled (disable_lora), so fusing them would build in what is switched off: "
                "enable_lora() first, or unload_lora_weights() for the base model."
            )
        if isinstance(lora_scale, bool) or not isinstance(lora_scale, (int, float)) or not math.isfinite(lora_scale):
            raise ValueError(f"lora_scale must be a finite number, got {lora_scale!r}.")
        if adapter_names is None:
            names = list(getattr(self, "_ditar_active", []))
        else:
            names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
            unknown = [name for name in names if name not in self._ditar_adapters()]
            if unknown or not names:
                raise ValueError(f"No adapter named {unknown or names}; loaded: {sorted(self._ditar_adapters())}")
            if error := _repeated_name_error(names):
                raise error
        fused = {}
        with torch.no_grad():
            for name, layer in _tuner_layers(self):
                # peft's own merge on a copy: it knows each variant's rule (DoRA's weight renormalisation too)
                copied = copy.deepcopy(layer)
                present = [adapter for adapter in names if adapter in copied.lora_A]
                for adapter in present:
                    copied.scaling[adapter] *= lora_scale
                if present:
                    copied.merge(adapter_names=present)
                _set_submodule(self, name, copied.get_base_layer())
                fused[name] = layer
            for name, wrapper in _trained_copies(self):
                active = _active_copy(wrapper, names)
                if active is None:
                    plain = wrapper.original_module
                else:  # the trained copy, moved lora_scale of the way from the original
                    plain = copy.deepcopy(wrapper.modules_to_save[active])
                    for trained, original in zip(plain.parameters(), wrapper.original_module.parameters(), strict=True):
                        trained.copy_(original + lora_scale * (trained - original))
                _set_submodule(self, name, plain)
                fused[name] = wrapper
        self._ditar_fused = fused

    def merge_and_unload(self, adapter_names: list[str] | None = None):
        """Fold the adapters (default: the active ones) into the weights for good and forget them: a plain model
        that saves, loads and runs (fast path included) like any other, with the adapted voice built in. Returns the
        model, as peft's `merge_and_unload` does."""
        if not getattr(self, "_ditar_fused", None):
            self.fuse_adapters(adapter_names)
        self._ditar_fused = None
        self._forget_adapters()
        return self

    def unfuse_adapters(self) -> None:
        fused = getattr(self, "_ditar_fused", None)
        if not fused:
            raise ValueError("No fused adapters")
        for name, layer in fused.items():
            _match_stand_in(layer, self.get_submodule(name))
            _set_submodule(self, name, layer)
        self._ditar_fused = None

    def adapter_summary(self, adapter_name: str | None = None) -> dict:
        """Parameters of one adapter, of the base model, their ratio and the adapter's size in MB (float32 file)."""
        state = self.get_adapter_state_dict(adapter_name)
        adapter = sum(t.numel() for t in state.values())
        base = sum(p.numel() for n, p in self.named_parameters() if "lora_" not in n and "modules_to_save." not in n)
        size = sum(t.numel() * t.element_size() for t in state.values())
        # a LoRA layer's keys are "<layer>.lora_A.weight", ...; a trained normalisation layer's "<layer>.weight"
        layers = {k.split(".lora_")[0] if ".lora_" in k else k.rsplit(".", 1)[0] for k in state}
        return {
            "adapter_parameters": adapter,
            "base_parameters": base,
            "fraction": adapter / base,
            "size_mb": size / 1e6,
            "layers": len(layers),
        }


def base_pipeline_source(base: str | None) -> tuple[str | None, str]:
    """(Hub id or None, the `DiTARPipeline.from_pretrained` arguments) of the pipeline an adapter was trained on, from
    its model's `name_or_path`: a Hub id as it is; a Hub cache folder (`models--org--name/snapshots/...`) as its id;
    the package's embedded default as `from_pretrained()`; another local folder (a path on the trainer's machine,
    meaningless in a card) as a placeholder."""
    if not base:
        return None, '"BASE_PIPELINE"'
    from .hub_utils import EMBEDDED_DEFAULT, hub_cache_repo_id

    path = Path(str(base)).expanduser()
    if not path.exists():
        return str(base), f'"{base}"'
    repo = hub_cache_repo_id(path)
    if repo is not None:
        return repo, f'"{repo}"'
    if EMBEDDED_DEFAULT in (path.resolve(), path.resolve().parent):  # the default's folder or its model/ subfolder
        return None, ""
    return None, '"path/to/base_pipeline"'


def adapter_card(config, state: dict, adapter_name: str = "default") -> str:
    """A short README.md (Hub metadata + usage) for a DiTAR LoRA adapter folder."""
    base, source = base_pipeline_source(config.base_model_name_or_path)
    parameters = sum(t.numel() for t in state.values())
    targets = config.target_modules if isinstance(config.target_modules, str) else sorted(config.target_modules)
    meta = [
        "---",
        "library_name: peft",
        "pipeline_tag: text-to-speech",
        "tags:",
        "- ditar",
        "- lora",
        "- text-to-speech",
    ]
    if base:
        meta.append(f"base_model: {base}")
    meta.append("---")
    lines = [
        *meta,
        "",
        f"# DiTAR LoRA adapter ({adapter_name})",
        "",
        f"A {'DoRA (weight-decomposed LoRA)' if getattr(config, 'use_dora', False) else 'LoRA'} adapter for a DiTAR "
        f"text-to-speech model{f' ({base})' if base else ''}: rank {config.r}, alpha "
        f"{config.lora_alpha}, {parameters:,} parameters, on `{targets}`.",
        "",
        "```python",
        "from modeling_ditar import DiTARPipeline",
        "",
        f"pipe = DiTARPipeline.from_pretrained({source})" + ("  # the package's default model" if not source else ""),
        'pipe.load_lora_weights("THIS_REPO_OR_FOLDER", adapter_name="voice")',
        "```",
        "",
    ]
    return "\n".join(lines)


def push_adapter_to_hub(
    model,
    repo_id: str,
    *,
    adapter_name: str | None = None,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    api=None,
):
    """Upload one adapter (safetensors, config, card) to `repo_id` in one commit; `model` is a DiTAR model with the
    adapter loaded or an adapter folder. `api` is an `HfApi` (created with `token` when not given); the repository is
    created if it does not exist, and the branch `revision` too. The adapter is saved (or the folder checked) first, so
    an adapter that cannot be saved (fused, unknown name) or a folder without one leaves no repository behind."""
    from huggingface_hub import CommitOperationAdd, HfApi

    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model, str | os.PathLike):
            folder = _adapter_folder(model)
        else:
            folder = model.save_adapter(tmp, model._adapter_name(adapter_name))
        names = [n for n in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "README.md") if (folder / n).is_file()]
        operations = [CommitOperationAdd(path_in_repo=n, path_or_fileobj=str(folder / n)) for n in names]
        api = api if api is not None else HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision is not None and not revision.startswith("refs/pr/"):
            # a commit to a branch that does not exist fails; transformers' push_to_hub creates it the same way
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message or "Upload DiTAR LoRA adapter",
            revision=revision,
            create_pr=create_pr,
        )


def _adapter_folder(source: str | os.PathLike) -> Path:
    """`source` as a local adapter folder, refused unless it holds the adapter's config and weights (a mistyped path
    would otherwise be pushed as an empty commit)."""
    folder = Path(os.path.expanduser(str(source)))
    if not folder.is_dir():
        reason = "it is a file" if folder.exists() else "it does not exist"
        raise FileNotFoundError(
            f"{source} is not an adapter folder ({reason}): pass a folder saved with save_adapter, holding "
            f"{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}, or a model with the adapter loaded."
        )
    missing = [n for n in (ADAPTER_CONFIG, ADAPTER_WEIGHTS) if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not an adapter folder: it has no {', '.join(missing)}.")
    return folder


class DiTARLoraLoaderMixin:
    """diffusers-style LoRA methods of [`DiTARPipeline`]; they act on `self.model` (see [`DiTARLoraMixin`])."""

    def load_lora_weights(self, pretrained_model_name_or_path, adapter_name: str | None = None, **kwargs) -> None:
        """Load an adapter folder or Hub repository into the model and make it active (several can be loaded)."""
        if not isinstance(pretrained_model_name_or_path, (str, os.PathLike)):
            raise TypeError(
                "load_lora_weights takes an adapter folder or Hub repository id, got "
                f"{type(pretrained_model_name_or_path).__name__}."
            )
        if adapter_name is None:  # the first free default_N (after a deletion the count alone may be taken)
            adapters = self.model._ditar_adapters()
            index = len(adapters)
            while f"default_{index}" in adapters:
                index += 1
            adapter_name = f"default_{index}"
        self.model.load_adapter(pretrained_model_name_or_path, adapter_name=adapter_name, **kwargs)
        self.model.eval()

    def set_adapters(self, adapter_names: str | list[str], adapter_weights=None) -> None:
        """Make these adapters the active ones. diffusers' `adapter_weights` is taken only as all 1.0 (active adapters
        add up at their own scale); a weighted mix: `fuse_lora(lora_scale=...)` scales the fused adapters."""
        if adapter_weights is not None:
            weights = adapter_weights if isinstance(adapter_weights, (list, tuple)) else [adapter_weights]
            names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names or [])
            if isinstance(adapter_weights, (list, tuple)) and len(weights) != len(names):
                raise ValueError(f"adapter_weights has {len(weights)} values for {len(names)} adapters; give one each.")
            if any(isinstance(w, bool) or not isinstance(w, (int, float)) or w != 1.0 for w in weights):
                raise ValueError(
                    f"adapter_weights={adapter_weights!r}: per-adapter weights are not supported (each active adapter "
                    "adds at its own scale); leave them out, or fuse_lora(lora_scale=...) to scale fused adapters."
                )
        self.model.set_adapter(adapter_names)

    def get_active_adapters(self) -> list[str]:
        return self.model.active_adapters() if self.model._ditar_adapters() else []

    def get_list_adapters(self) -> dict[str, list[str]]:
        return {"model": sorted(self.model._ditar_adapters())}

    def disable_lora(self) -> None:
        self.model.disable_adapters()

    def enable_lora(self) -> None:
        self.model.enable_adapters()

    def delete_adapters(self, adapter_names: str | list[str]) -> None:
        self.model.delete_adapter(adapter_names)

    def fuse_lora(self, lora_scale: float = 1.0, adapter_names: list[str] | None = None) -> None:
        self.model.fuse_adapters(adapter_names, lora_scale=lora_scale)

    def unfuse_lora(self) -> None:
        self.model.unfuse_adapters()

    def unload_lora_weights(self) -> None:
        """Remove every adapter: the model is the base model again, output and fast path included."""
        if self.model._ditar_adapters() or getattr(self.model, "_ditar_fused", None):
            self.model.unload_adapters()

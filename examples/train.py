#!/usr/bin/env python
"""Train DiTAR with Accelerate.

    python examples/train.py --config examples/configs/tiny.yaml                 # one process (CPU or one GPU)
    accelerate launch examples/train.py --config examples/configs/default.yaml   # multi-GPU / multi-node
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 examples/train.py --config examples/configs/tiny.yaml  # CPU DDP
    python examples/train.py --config ... --resume                               # continue the same run

The dataset is a `datasets` folder written by `examples/build_corpus.py` (columns `features`, `text`, `speaker_id`).
Checkpoints are written to `<output_dir>/checkpoints/step-N` through a temporary folder and a rename, so a killed run
never leaves a half-written checkpoint; `--resume` continues from the newest one with the same data order.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import inspect
import json
import math
import os
import random
import shutil
import sys
import time
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from training_eval import (  # noqa: E402
    continuation_text_use_gap,
    spread_rows,
    text_use_gap,
    write_loss_plot,
    write_validation_sample,
)

from modeling_ditar import DiTARConfig, DiTARForConditionalGeneration  # noqa: E402
from modeling_ditar.configuration_ditar import LEGACY_GENERATION_KEYS  # noqa: E402
from modeling_ditar.training_data import (  # noqa: E402
    PairedLengthBatcher,
    Utterance,
    collate_examples,
    model_config_for_processor,
)


@dataclass
class TrainConfig:
    dataset: str = "data/corpus"
    output_dir: str = "runs/default"
    model: dict = field(default_factory=dict)  # DiTARConfig kwargs (with init_from: overrides of the saved ones)
    init_from: str | None = None  # a model folder or pipeline folder to start from
    # LoRA fine-tuning (needs peft): {rank: 8, alpha: 16, targets: "all", dropout: 0.0} trains only the
    # adapter (modeling_ditar.lora.default_lora_config) and writes final/adapter; None trains every weight
    lora: dict | None = None
    # only these top-level modules of the model train (e.g. [locdit]: the backbone, the aggregation encoder and the
    # heads keep their init_from weights); None trains every weight. Their names: `model.named_children()`
    trainable_modules: list | None = None
    phonemize: bool = True  # text front end for a new model: espeak-ng phonemes (True) or characters
    max_steps: int = 10000
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    decay_start: float = 0.9  # fraction of max_steps after which the lr decays (cosine) to min_lr_ratio
    weight_decay: float = 0.01
    adam_betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    gradient_accumulation_steps: int = 1
    mixed_precision: str | None = None  # None lets `accelerate launch --mixed_precision` decide
    max_batch_frames: int = 2000
    max_example_frames: int = 500
    pair_prob: float = 0.5
    # the aligned speech positions' rate of a row without a prompt partner: "own" (its utterance's text tokens per
    # frame, which carries its whole length) or "model" (the model's text_tokens_per_frame, as generation without a
    # prompt); rows with a partner take the partner's rate either way
    single_row_rate: str = "own"
    # per-source weight of the corpus's `source` column, e.g. {piper: 4, kokoro: 4, festival: 4}: each utterance of that
    # source appears that many times per epoch on average (sources not named: 1), so that a small natural-voice pack
    # weighs more than its share of the audio; the resulting share per source is logged
    source_weights: dict | None = None
    ema_decay: float = 0.999
    checkpoint_every: int = 250
    keep_checkpoints: int = 2
    eval_every: int = 500
    log_every: int = 10
    eval_utterances: int = 64  # validation utterances of the text-use gaps, spread over the voices
    seed: int = 0
    num_threads: int | None = None
    # cuDNN's fused attention (the SDPA kernel PyTorch picked on an H200 in bf16) builds an execution plan for every new
    # tensor shape (reported at hundreds of ms per build), and many batches here have new text/speech lengths. On one
    # H200 the 10M default took 375 ms per step on unseen batch shapes against ~27 ms of GPU work and ~94 ms of CPU op
    # time per step on repeated shapes (docs/research/benchmark/training_step); the plan builds are the suspected
    # cause, not yet confirmed with this off. False keeps SDPA on its flash/memory-efficient kernels.
    cudnn_attention: bool = False

    @classmethod
    def load(cls, path: str) -> TrainConfig:
        data = read_settings(path, cls, "training")
        if isinstance(data.get("model"), dict):  # YAML 1.1's 1e-6 is a string there too
            data["model"] = _numbers_in(data["model"])
        check_mixed_precision(data, path)
        cfg = cls(**data)
        cfg.check(path)
        return cfg

    def check(self, source: str = "the training config") -> None:
        """ValueError naming the first setting that cannot work (before any data is read or written)."""
        problems = []
        for name in (
            "max_steps",
            "max_batch_frames",
            "max_example_frames",
            "gradient_accumulation_steps",
            "checkpoint_every",
            "keep_checkpoints",
            "eval_every",
            "log_every",
        ):
            if not getattr(self, name) >= 1:
                problems.append(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "eval_utterances", "weight_decay"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not self.grad_clip > 0:
            problems.append(f"grad_clip must be > 0 (the largest gradient norm), got {self.grad_clip!r}")
        for name in ("min_lr_ratio", "decay_start", "pair_prob"):
            if not 0 <= getattr(self, name) <= 1:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if self.single_row_rate not in ("own", "model"):
            problems.append(f"single_row_rate must be 'own' or 'model', got {self.single_row_rate!r}")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.max_batch_frames < self.max_example_frames:
            problems.append(
                f"max_batch_frames ({self.max_batch_frames}) must be at least max_example_frames "
                f"({self.max_example_frames}): a batch holds at least one example"
            )
        if self.num_threads is not None and not self.num_threads >= 1:
            problems.append(f"num_threads must be at least 1 (or unset), got {self.num_threads!r}")
        problems += self._lora_problems()
        # DiTARConfig keeps any keyword it is given, so a misspelt model setting would otherwise train without it
        known = set(DiTARConfig().to_dict()) | set(LEGACY_GENERATION_KEYS)  # generation settings it still takes
        problems += _misspelt(self.model or {}, known, "model.{name} is not a DiTARConfig setting",
                              " (see DiTARConfig's arguments)")  # fmt: skip
        if not self.init_from and not problems:
            try:  # a new model's settings, checked now rather than when the model is built after the corpus is read
                DiTARConfig(**(self.model or {}))._check_values()
            except (ValueError, TypeError) as err:
                problems.append(f"model: {err}")
        text_config = (self.model or {}).get("text_config")
        if isinstance(text_config, dict):  # transformers' configs also keep any keyword: a typo would go unnoticed
            problems += _backbone_problems(text_config)
        if problems:
            raise ValueError(f"{source}: {problems[0]}")

    def _lora_problems(self) -> list[str]:
        if self.lora is None:
            return []
        from modeling_ditar.lora import default_lora_config, lora_target_modules

        own = [n for n in inspect.signature(default_lora_config).parameters if n != "kwargs"]
        try:  # the rest goes to peft's LoraConfig
            from peft import LoraConfig

            known = own + [f.name for f in fields(LoraConfig)]
        except ImportError:
            known = own
        fallback = f" (settings: {', '.join(own)}, or peft's LoraConfig)"
        problems = _misspelt(self.lora, known, "lora.{name} is not a LoRA setting", fallback, prefer=own)
        if "targets" in self.lora:
            try:
                lora_target_modules(self.lora["targets"])
            except (ValueError, AttributeError, TypeError) as err:
                problems.append(f"lora.targets: {err}")
        if self.trainable_modules:
            problems.append(
                "lora and trainable_modules cannot be combined: LoRA trains its adapter and saves nothing else, "
                "trainable_modules trains whole modules; choose one"
            )
        return problems


def nearest_name(name, known, prefer=(), aliases: dict | None = None) -> str | None:
    """The known name closest to a misspelt `name` (usually the typo's fix), or None: a close name in `prefer` first,
    then a close key of `aliases` (what other libraries call a setting) gives its known name, then `known`."""
    close = difflib.get_close_matches(str(name), list(prefer), n=1)
    if not close and aliases:
        close = [aliases[c] for c in difflib.get_close_matches(str(name), sorted(aliases), n=1, cutoff=0.75)]
    return (close or difflib.get_close_matches(str(name), sorted(known), n=1) or [None])[0]


def _misspelt(names, known, message: str, fallback: str = "", prefer=()) -> list[str]:
    """`message` (naming `{name}`) for every name that is not in `known`, with the nearest known name (names in
    `prefer` first) or else `fallback`."""
    problems = []
    for name in sorted(set(names) - set(known), key=str):
        close = nearest_name(name, known, prefer)
        problems.append(message.format(name=name) + (f" (did you mean {close!r}?)" if close else fallback))
    return problems


def _backbone_problems(text_config: dict) -> list[str]:
    """A new backbone's settings that its transformers config class does not know."""
    from transformers import AutoConfig

    model_type = text_config.get("model_type", "qwen2")
    try:
        backbone = AutoConfig.for_model(model_type)
    except ValueError:
        return [f"model.text_config.model_type {model_type!r} is not a transformers model type"]
    known = set(backbone.to_dict()) | set(inspect.signature(type(backbone).__init__).parameters)
    # older names transformers still converts, and settings its models read with getattr
    known |= {"rope_theta", "rope_scaling", "head_dim", "partial_rotary_factor", "attention_bias"}
    return _misspelt(text_config, known, f"model.text_config.{{name}} is not a {model_type} config setting")


def read_settings(path: str | Path, cls, kind: str) -> dict:
    """The settings a YAML (.yaml, .yml) or JSON config file gives for the dataclass `cls`, as a dict. ValueError names
    what is wrong with the file: unreadable syntax, something other than a mapping of settings, or a setting `cls` does
    not have (with the nearest known name, which is usually the typo's fix). An empty file gives no settings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader that refuses a name given twice
        except DuplicateSetting as error:
            raise ValueError(f"{path}: {error}") from None
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML: {error}") from None
    else:
        try:
            data = json.loads(text, object_pairs_hook=_unique_json_keys) if text.strip() else None
        except DuplicateSetting as error:
            raise ValueError(f"{path}: {error}") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: a {kind} config is a mapping of settings (`name: value` lines), got a {type(data).__name__}."
        )
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(known), key=str)
    if unknown:
        named = []
        for name in unknown:
            close = nearest_name(name, known)
            named.append(f"{name!r} (did you mean {close!r}?)" if close else repr(name))
        raise ValueError(f"{path}: unknown {kind} settings: {', '.join(named)}")
    if data.get("mixed_precision") is False:  # YAML 1.1 reads a bare `no` as false
        data["mixed_precision"] = "no"
    return typed_settings(data, cls, path)


class DuplicateSetting(ValueError):
    """A config file that gives one name twice in the same mapping."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader, except that a name given twice in one mapping (`max_steps: 6` and later `max_steps: 3`) raises
    DuplicateSetting naming it and both lines: safe_load keeps the last one without a word, so an edit appended to a
    config was silently overruled, or overruled the setting above it."""

    def construct_mapping(self, node, deep=False):
        first_line: dict = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges a mapping, it is no setting
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            if not isinstance(key, typing.Hashable):  # SafeLoader's own error names it
                break
            if key in first_line:
                raise DuplicateSetting(
                    f"{key!r} is given twice in one mapping (lines {first_line[key]} and {line}): only the last one "
                    "would count; keep one of them"
                )
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _unique_json_keys(pairs: list) -> dict:
    """json.loads' object_pairs_hook: DuplicateSetting for a name given twice in one object (json keeps the last)."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise DuplicateSetting(f"{key!r} is given twice in one object: only the last one would count; keep one")
        seen.add(key)
    return dict(pairs)


def typed_settings(data: dict, cls, path) -> dict:
    """`data` with every value checked against the type of its field in `cls`, and numbers written as strings read as
    numbers: YAML 1.1 reads `1e-3` (no dot) as the string '1e-3', and a quoted number is one too. ValueError names a
    value of the wrong kind (`max_steps: 2.5`, `seed: abc`, `adam_betas: 0.9`), before anything runs."""
    hints = typing.get_type_hints(cls)
    return {
        name: _typed(value, hints[name], f"{path}: {name}") if name in hints else value for name, value in data.items()
    }


def _typed(value, expected, where: str):
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _typed(value, options[0], where) if len(options) == 1 else value
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if expected in (int, float):
        number = _as_number(value)
        if number is None:
            raise ValueError(f"{where} must be a number, got {value!r}")
        if expected is float:
            return float(number)
        if float(number).is_integer():
            return int(number)
        raise ValueError(f"{where} must be a whole number, got {value!r}")
    if expected is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{where} must be a string, got {value!r}")
    if origin is tuple:
        if isinstance(value, (list, tuple)) and len(value) == len(args):
            return tuple(_typed(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        raise ValueError(f"{where} must be a list of {len(args)} values, got {value!r}")
    for kind, name in ((dict, "a mapping (`name: value` lines)"), (list, "a list")):
        if (expected is kind or origin is kind) and not isinstance(value, kind):
            raise ValueError(f"{where} must be {name}, got {value!r}")
    return value


def _numbers_in(settings: dict) -> dict:
    """`settings` with every string that spells a number (nested mappings too) read as that number: model settings
    are numbers, flags and names, and none of their names spells a number."""
    out = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            value = _numbers_in(value)
        elif isinstance(value, str) and _as_number(value) is not None:
            value = _as_number(value)
        out[key] = value
    return out


def is_number(value) -> bool:
    """A finite int or float, not a bool (a string that spells a number is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _as_number(value) -> int | float | None:
    """A finite int or float, from a number or a string that spells one; None otherwise (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            value = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


def check_mixed_precision(data: dict, path: str) -> None:
    """A config's `mixed_precision`, in place: YAML 1.1 reads a bare `no` as false, which accelerate would refuse;
    anything else that accelerate does not know is refused here, naming the choices."""
    if data.get("mixed_precision") is False:
        data["mixed_precision"] = "no"
    precision = data.get("mixed_precision")
    if precision is not None and precision not in ("no", "fp16", "bf16", "fp8"):
        raise ValueError(f"{path}: mixed_precision must be no, fp16, bf16 or fp8 (or unset), got {precision!r}")


# The settings that decide an epoch's batches (PairedLengthBatcher), with the number of processes: a checkpoint's
# batch_in_epoch counts batches of the plan they made, so a resume with others would skip or repeat part of an epoch.
DATA_PLAN_SETTINGS = ("max_batch_frames", "max_example_frames", "pair_prob", "seed", "source_weights")


def data_plan(cfg: TrainConfig, num_processes: int) -> dict:
    plan = {name: getattr(cfg, name) for name in DATA_PLAN_SETTINGS}
    plan["source_weights"] = dict(plan["source_weights"]) if plan["source_weights"] else None
    return plan | {"num_processes": num_processes}


class TrainState:
    """Position in the data stream and the end of the learning-rate schedule, saved with every checkpoint.

    With the run's config (`cfg`) it also saves the run's effective `max_steps` (which `--time-budget-min` sets while
    the run goes, in memory only), the `max_steps` the config and the command line asked for (`max_steps_given`: a
    resumed run whose config asks for another end moves its end) and `decay_from`, (step, lr factor) where the decay
    went on from after the end moved (`move_end`; None: the decay starts at decay_start x max_steps from the peak).
    `saved_max_steps` is the effective max_steps of the checkpoint loaded (None: a fresh run, or a checkpoint from
    before these were saved). `data_plan` holds the settings that plan the epoch's batches (`data_plan()`, with
    `num_processes`); `saved_data_plan` is the checkpoint's, which `check_data_plan` compares."""

    def __init__(self, cfg: TrainConfig | None = None, num_processes: int = 1):
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.cfg = cfg
        # a run of examples/train.py's batcher (train_vocoder.py saves its schedule with this class: its batches are a
        # function of the step, with no plan to record)
        plans_batches = cfg is not None and all(hasattr(cfg, name) for name in DATA_PLAN_SETTINGS)
        self.data_plan = data_plan(cfg, num_processes) if plans_batches else None
        self.saved_data_plan: dict | None = None
        self.max_steps_given = cfg.max_steps if cfg is not None else None
        self.decay_from: tuple[int, float] | None = None
        self.saved_max_steps: int | None = None
        self.saved_max_steps_given: int | None = None

    def state_dict(self):
        state = {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}
        if self.cfg is not None:
            state["max_steps"] = self.cfg.max_steps
            state["max_steps_given"] = self.max_steps_given
            state["decay_from"] = list(self.decay_from) if self.decay_from is not None else None
            state["data_plan"] = self.data_plan
        return state

    def load_state_dict(self, state):
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.saved_max_steps = state.get("max_steps")
        self.saved_max_steps_given = state.get("max_steps_given")
        decay_from = state.get("decay_from")
        self.decay_from = (int(decay_from[0]), float(decay_from[1])) if decay_from is not None else None
        self.saved_data_plan = state.get("data_plan")


def check_data_plan(state: TrainState) -> None:
    """ValueError when a run resumed within an epoch plans its batches with other settings than its checkpoint's: the
    checkpoint's place in the epoch would index another plan, and part of the epoch would be skipped (or seen twice)
    without a word. A checkpoint from before the plan was saved resumes as before; one at an epoch's start skips
    nothing, whatever the settings."""
    saved, now = state.saved_data_plan, state.data_plan
    if saved is None or now is None or state.batch_in_epoch == 0:
        return
    changed = [name for name in now if name in saved and saved[name] != now[name]]
    if changed:
        listing = ", ".join(f"{name} {saved[name]!r} (now {now[name]!r})" for name in changed)
        raise ValueError(
            f"the checkpoint stopped at batch {state.batch_in_epoch} of epoch {state.epoch}, planned with other "
            f"settings: {listing}; with these the rest of the epoch would be another plan's and part of it would be "
            "skipped. Resume with the run's settings (its train_config.json, the same number of processes)."
        )


def too_short_for_ctc(utterances, patch_size: int, frames_per_patch: int) -> int:
    """How many of `utterances` (alone, without a prompt partner) the auxiliary CTC loss cannot align: CTC needs a
    prediction per text token plus a blank between repeated tokens, and the model makes `frames_per_patch` per whole
    patch; the loss gives such rows 0 (`zero_infinity`) without a word."""
    short = 0
    for utterance in utterances:
        ids = list(utterance.token_ids)
        needed = len(ids) + sum(a == b for a, b in zip(ids, ids[1:], strict=False))
        short += (utterance.features.shape[0] // patch_size) * frames_per_patch < needed
    return short


def freeze_all_but(model, modules: list, log=print) -> None:
    """`trainable_modules`: every parameter outside the named top-level modules stops training."""
    children = dict(model.named_children())
    unknown = [name for name in modules if name not in children]
    if unknown:
        raise SystemExit(f"trainable_modules: {unknown} are not modules of the model; pick from {sorted(children)}.")
    for name, child in children.items():
        child.requires_grad_(name in modules)
    for parameter in model.parameters(recurse=False):
        parameter.requires_grad_(False)  # e.g. speech_start_embedding: part of the backbone's input
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log(f"trainable_modules {modules}: {trained:,} of {sum(p.numel() for p in model.parameters()):,} parameters train")


def ema_parameters(model, cfg: TrainConfig | None) -> list:
    """The parameters trained, averaged and checkpointed by position: all of them, or only the adapter's (LoRA) or
    the `trainable_modules`' ones."""
    if cfg is not None and (cfg.lora is not None or cfg.trainable_modules):
        return [p for p in model.parameters() if p.requires_grad]
    return list(model.parameters())


def lr_factor(cfg: TrainConfig, step: int, decay_from: tuple[int, float] | None = None) -> float:
    """The learning rate after `step` optimizer steps, as a fraction of learning_rate: a linear warmup over
    warmup_steps, the peak, then a cosine decay that reaches min_lr_ratio at max_steps. The decay starts from the peak
    at decay_start x max_steps, or, once the run's end has moved (`move_end`), from `decay_from` = (step, factor)."""
    if decay_from is not None and step >= decay_from[0]:
        start, top = decay_from
    else:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        start, top = int(cfg.decay_start * cfg.max_steps), 1.0
        if step < start:
            return 1.0
    progress = min(1.0, (step - start) / max(1, cfg.max_steps - start))
    return cfg.min_lr_ratio + (top - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def lr_lambda(cfg: TrainConfig, num_processes: int = 1, state: TrainState | None = None):
    """LambdaLR's factor of `lr_factor`, read from `cfg` (and `state.decay_from`) at every step, so that a max_steps
    that --time-budget-min or a resume changes takes effect."""

    # Accelerate steps a prepared scheduler once per process for every optimizer step, so count real steps.
    def factor(calls: int) -> float:
        return lr_factor(cfg, calls // num_processes, state.decay_from if state is not None else None)

    return factor


def move_end(cfg: TrainConfig, state: TrainState, step: int, max_steps: int) -> None:
    """Make `max_steps` the run's end, at `step`, without a jump in the learning rate. Before the decay the new end
    only moves where it starts (decay_start x max_steps; if that is already behind, it starts now, from the peak);
    once it has started, the cosine goes on from the present rate down to min_lr_ratio at the new end. So a longer run
    never goes back up to the peak: a finished run extended trains on at min_lr_ratio."""
    current = lr_factor(cfg, step, state.decay_from)
    decaying = state.decay_from is not None or step >= int(cfg.decay_start * cfg.max_steps)
    cfg.max_steps = max_steps
    if decaying or step >= int(cfg.decay_start * max_steps):
        state.decay_from = (step, current)


def continue_schedule(cfg: TrainConfig, state: TrainState, budgeted: bool, log=print) -> None:
    """A resumed run's end and lr schedule: those its checkpoint saved (a --time-budget-min run ends where its budget
    set, not at the config's max_steps). A new end continues the lr without a jump (`move_end`): a new
    --time-budget-min (until it has measured the step rate, the run goes on to the config's max_steps, or
    `TimeBudget.FIRST_ESTIMATE` steps further when that is behind), or another max_steps in the config or on the
    command line than the run was started with. Nothing changes for a fresh run or a checkpoint from before the
    schedule was saved (which goes on with the config's max_steps)."""
    if state.saved_max_steps is None:
        return
    given = cfg.max_steps
    cfg.max_steps = state.saved_max_steps
    state.max_steps_given = given
    if budgeted:
        move_end(cfg, state, state.step, max(given, state.step + TimeBudget.FIRST_ESTIMATE + 1))
        log(
            f"--time-budget-min: the run goes on from step {state.step} (it was to end at {state.saved_max_steps}) at "
            f"the learning rate it had ({lr_factor(cfg, state.step, state.decay_from):.3g} x learning_rate)"
        )
    elif state.saved_max_steps_given is not None and given != state.saved_max_steps_given:
        move_end(cfg, state, state.step, given)
        log(
            f"max_steps {given} (the run was started with {state.saved_max_steps_given}): it now ends at step {given}, "
            f"the learning rate going on from {lr_factor(cfg, state.step, state.decay_from):.3g} x learning_rate"
        )
    elif cfg.max_steps != given:
        log(f"max_steps {cfg.max_steps}: the end its --time-budget-min set (the config's is {given})")


# how to get a corpus whose features match a model's
REBUILD_CORPUS = (
    "Rebuild the corpus with the model's settings (examples/build_corpus.py --features --feature-config JSON; the "
    "shipped model's are in examples/configs/features_16k_80mel.json), or train a new model on it."
)


def backbone_changes(text_config, given: dict) -> dict:
    """The settings of `given` that would change the backbone config `text_config` ({} when none would), compared as
    configs, since transformers moves some settings (rope_theta into rope_parameters)."""
    if not given:
        return {}
    saved = text_config.to_dict()
    try:
        merged = type(text_config)(**{**saved, **given}).to_dict()
    except Exception:  # noqa: BLE001 - the class's own validation refused the mix (e.g. layer_types against the layers)
        return {k: v for k, v in given.items() if saved.get(k) != v} or dict(given)
    ignore = {"transformers_version", "_name_or_path", "architectures", "dtype"}
    if all(merged.get(k) == saved.get(k) for k in (set(merged) | set(saved)) - ignore):
        return {}
    # the given settings that differ (derived ones, such as layer_types, follow them)
    return {k: v for k, v in given.items() if merged.get(k, v) != saved.get(k)} or dict(given)


def corpus_problem(directory: Path, init_from: str | None = None) -> str | None:
    """What keeps the corpus folder `directory` (one with dataset_dict.json or dataset_info.json) from training, as the
    end of a sentence that starts with its name, with the fix; None when nothing does. Read from its small JSON files
    before anything is loaded: a half-saved corpus (a build killed while saving), one without a train or validation
    split, one built without --features (a new model, `init_from` None, also needs its feature_extractor/)."""
    rebuild = "rebuild it with examples/build_corpus.py (docs/training.md)"
    if not (directory / "dataset_dict.json").is_file():
        return f"is one dataset without splits; training needs a corpus with train and validation splits: {rebuild}"
    try:
        splits = json.loads((directory / "dataset_dict.json").read_text())["splits"]
        splits = [str(split) for split in splits]
    except (OSError, ValueError, KeyError, TypeError):
        return f"is incomplete: its dataset_dict.json cannot be read: {rebuild}"
    without_features, empty = [], []
    for split in splits:
        folder = directory / split
        try:
            info = json.loads((folder / "dataset_info.json").read_text())
            files = [f["filename"] for f in json.loads((folder / "state.json").read_text())["_data_files"]]
            missing = next((f"{split}/{f}" for f in files if not (folder / f).is_file()), None)
            if split in ("train", "validation") and "features" not in (info.get("features") or {}):
                without_features.append(split)
            if split in ("train", "validation") and not files:  # save_to_disk writes no file for no rows
                empty.append(split)
        except FileNotFoundError as error:
            missing = str(Path(error.filename).relative_to(directory))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            missing = f"a readable {split}/dataset_info.json and {split}/state.json"
        if missing:
            return f"is incomplete ({missing} is missing; was its build interrupted while saving?): {rebuild}"
    absent = [split for split in ("train", "validation") if split not in splits]
    if absent:
        return (
            f"has no {' and no '.join(absent)} split (its splits: {', '.join(splits) or 'none'}); training needs train "
            "and validation (the validation utterances are scored and voiced at every evaluation): rebuild it with "
            "one, e.g. examples/build_corpus.py --from-folder DIR --val-fraction F (a share of the recordings) or "
            "--from-hub-dataset NAME --hub-splits train=SPLIT,validation=SPLIT (a split of the Hub dataset); a "
            "synthetic corpus always has one" + (", and add --features: it has no features" if without_features else "")
        )
    if empty:
        return f"has no rows in its {' and '.join(empty)} split: {rebuild}"
    if without_features:
        settings = (
            "JSON with init_from's feature settings (the shipped model's: examples/configs/features_16k_80mel.json)"
            if init_from
            else "JSON for other feature settings than the default"
        )
        return (
            "has no features (its splits have no `features` column): rebuild it with examples/build_corpus.py and the "
            f"same options plus --features (and --feature-config {settings})"
        )
    if not init_from and not (directory / "feature_extractor" / "preprocessor_config.json").is_file():
        return (
            "is incomplete (feature_extractor/preprocessor_config.json is missing: build_corpus.py --features writes "
            f"it after the splits; a new model takes its feature settings and statistics from it): {rebuild}"
        )
    return None


def load_model_and_processor(cfg: TrainConfig, dataset_dir: Path):
    from modeling_ditar import DiTARFeatureExtractor, DiTARProcessor, build_ditar_tokenizer
    from modeling_ditar.training_data import check_corpus_features

    if cfg.init_from:
        source = Path(cfg.init_from)
        index = source / "model_index.json"
        vae = json.loads(index.read_text()).get("vae") if index.is_file() else None
        if vae and any(part is not None for part in (vae if isinstance(vae, list) else [vae])):
            # its model generates VAE latents, but training would feed it the corpus's log-mel frames
            raise ValueError(
                f"init_from {cfg.init_from!r} is a pipeline with a VAE (its model generates VAE latents); train.py "
                "trains on log-mel corpora only: start from a log-mel DiTAR model or pipeline folder"
            )
        model_dir = source / "model" if (source / "model").is_dir() else source
        processor_dir = source / "processor" if (source / "processor").is_dir() else source
        # Training-time settings of the run config (dropouts, loss weights, ...) override the saved ones; a setting that
        # changes a tensor's shape makes from_pretrained report which tensor does not fit. New parts (e.g. a CTC head)
        # start freshly initialised.
        config = DiTARConfig.from_pretrained(model_dir)
        if cfg.model.get("candidate_locdit"):
            raise ValueError(
                "model.candidate_locdit: train.py does not train a candidate LocDiT (it is distilled from a trained "
                "model: examples/distill_locdit.py, then conversion/add_candidate_locdit.py); remove the setting."
            )
        if config.candidate_locdit:
            # a student distilled from the LocDiT and backbone that training is about to change would no longer match
            print(f"{model_dir}: its candidate LocDiT is left out of training and of the trained model", flush=True)
            config.candidate_locdit = False
        # the backbone comes from init_from: a text_config that says otherwise was dropped without a word
        changed = backbone_changes(config.text_config, cfg.model.get("text_config") or {})
        if changed:
            raise ValueError(
                f"model.text_config {changed} differs from init_from's backbone ({model_dir}), which training keeps; "
                "remove it, or train a new model without init_from"
            )
        for key, value in cfg.model.items():
            if key != "text_config":
                setattr(config, key, value)
        config._check_values()
        # loaded without its candidate LocDiT, the model also drops the student's candidate step count
        model = DiTARForConditionalGeneration.from_pretrained(model_dir, config=config, dtype=torch.float32)
        if model.ctc_head is None:
            single_candidate_without_ctc_head(model, model_dir)
        processor = DiTARProcessor.from_pretrained(processor_dir)
        if (dataset_dir / "feature_extractor").is_dir():  # written by build_corpus.py --features with the features
            check_corpus_features(
                DiTARFeatureExtractor.get_feature_extractor_dict(str(dataset_dir / "feature_extractor"))[0],
                processor.feature_extractor,
                str(dataset_dir),
                str(source),
                REBUILD_CORPUS,
            )
        return model, processor
    processor = DiTARProcessor(
        DiTARFeatureExtractor.from_pretrained(dataset_dir / "feature_extractor"),
        build_ditar_tokenizer(phonemize=cfg.phonemize),
    )
    model = DiTARForConditionalGeneration(model_config_for_processor(processor, cfg.model))
    return model, processor


# generation settings that only act with several candidates per text, which the CTC head ranks
CANDIDATE_SETTINGS = (
    "candidate_prune_after_patches",
    "candidate_early_prune_after_patches",
    "candidate_early_prune_margin",
    "candidate_shared_patches",
    "candidate_num_inference_steps",
)


def single_candidate_without_ctc_head(model, source) -> None:
    """A model without a CTC head (ctc_loss_weight 0, e.g. set over an init_from that had one) samples one candidate:
    with init_from's `num_candidates` > 1 its generation config could not be used (the validation sample, and the
    exported model, would raise), so it becomes 1 and the candidate settings go back to their defaults, with a note."""
    from modeling_ditar.generation_ditar import GENERATION_DEFAULTS

    generation = model.generation_config
    if (getattr(generation, "num_candidates", None) or 1) <= 1:
        return
    changed = {"num_candidates": (generation.num_candidates, 1)}
    generation.num_candidates = 1
    for key in CANDIDATE_SETTINGS:
        if getattr(generation, key, GENERATION_DEFAULTS[key]) != GENERATION_DEFAULTS[key]:
            changed[key] = (getattr(generation, key), GENERATION_DEFAULTS[key])
            setattr(generation, key, GENERATION_DEFAULTS[key])
    print(
        f"{source}: the model trains without a CTC head (ctc_loss_weight 0), which ranks the candidates of its "
        "generation settings; they become "
        + ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items())
        + " (train with ctc_loss_weight > 0 to keep them)",
        flush=True,
    )


_ENCODER = None


class UnspeakableTexts(ValueError):
    """Texts of a corpus that the text front end refuses (another script, nothing to speak, empty): `reasons` maps
    each such text to the front end's message."""

    def __init__(self, reasons: dict):
        self.reasons = reasons
        super().__init__(f"{len(reasons)} text(s) cannot be spoken, e.g. {next(iter(reasons.values()))}")


def _encode_or_reason(processor, text) -> tuple[list[int] | None, str | None]:
    """(token ids, None), or (None, the front end's reason) for a text it refuses."""
    try:
        return processor.encode_text(text), None
    except ValueError as error:
        return None, str(error)


def _encode_in_worker(text: str) -> tuple[list[int] | None, str | None]:
    return _encode_or_reason(_ENCODER, text)


def encode_texts(processor, texts: list[str], num_proc: int = 1) -> dict[str, list[int]]:
    """Token ids of every distinct text; phonemizing is ~5 ms a sentence, so large corpora use forked workers. Every
    text is tried: `UnspeakableTexts` names all those the front end refuses, with its reasons."""
    global _ENCODER
    unique = sorted(set(texts), key=str)  # key: a missing text (None) sorts with the strings
    if num_proc <= 1 or len(unique) < 200:
        results = [_encode_or_reason(processor, t) for t in unique]
    else:
        import multiprocessing as mp

        _ENCODER = processor
        try:
            with mp.get_context("fork").Pool(num_proc) as pool:
                results = pool.map(_encode_in_worker, unique, chunksize=64)
        finally:
            _ENCODER = None
    reasons = {t: reason for t, (_, reason) in zip(unique, results, strict=True) if reason is not None}
    if reasons:
        raise UnspeakableTexts(reasons)
    return {t: ids for t, (ids, _) in zip(unique, results, strict=True)}


# columns that name a corpus row's recording or utterance, for the messages (the first one a corpus has)
ROW_ID_COLUMNS = ("file_name", "utterance_id", "id", "audio_path", "path")


def unspeakable_rows(split, texts: list, reasons: dict, name: str, rows=None, shown: int = 3) -> str:
    """One line naming how many rows of the split `name` have a text the front end refuses, the first `shown` of them
    (their row number in the split, the id column's value where the corpus has one, and the reason) and the fix.
    `rows`: the split's row numbers of `texts` when they are a selection of it."""
    bad = [i for i, text in enumerate(texts) if text in reasons]
    rows = list(rows) if rows is not None else list(range(len(texts)))
    id_column = next((c for c in ROW_ID_COLUMNS if c in split.column_names), None)
    ids = split.select(bad[:shown])[id_column] if id_column else None
    named = []
    for k, i in enumerate(bad[:shown]):
        where = f"row {rows[i]}" + (f" ({id_column} {ids[k]!r})" if ids is not None else "")
        named.append(f"{where}: {reasons[texts[i]].rstrip('.')}")
    more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
    return (
        f"{name} split: {len(bad)} of {len(texts)} rows have a text the model's text front end cannot speak: "
        + "; ".join(named)
        + more
        + ". Correct or remove these rows (in the recordings' metadata.csv or the source dataset) and rebuild the "
        "corpus with examples/build_corpus.py"
    )


def feature_arrays(split, column: str = "features") -> list[np.ndarray]:
    """Every row's [frames, dims] array, read from the Arrow buffers in one pass per chunk (read-only views). Row-by-row
    access costs ~2 ms a row (about a minute for 30k utterances on this project's CPUs), start-up time that a borrowed
    GPU's budget pays for; this takes milliseconds."""
    import pyarrow.compute as pc

    table = split.with_format("arrow", columns=[column])[:]  # follows a select()/shuffle() indices mapping
    arrays = []
    for chunk in table.column(column).chunks:
        frames = chunk.flatten()  # one list of `dims` values per frame, the chunk's rows one after another
        if chunk.null_count or frames.null_count:
            raise ValueError(f"column {column!r} holds missing values; rebuild the corpus (build_corpus.py --features)")
        rows = pc.list_value_length(chunk).to_numpy(zero_copy_only=False)
        if len(frames) == 0:
            arrays.extend(np.zeros((0, 0), np.float32) for _ in rows)
            continue
        widths = pc.min_max(pc.list_value_length(frames))
        if widths["min"] != widths["max"]:
            raise ValueError(f"column {column!r} mixes frames of {widths['min']} and {widths['max']} values")
        values = frames.flatten().to_numpy(zero_copy_only=False).reshape(len(frames), -1)
        bounds = np.concatenate([[0], np.cumsum(rows)])
        arrays.extend(values[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True))
    return arrays


def load_utterances(
    split, processor, model: DiTARForConditionalGeneration, num_proc: int = 1, name: str = "train", rows=None
) -> list[Utterance]:
    """The split's utterances (token ids, normalised features, speaker). ValueError names the rows whose text the front
    end refuses (`name`: the split's name; `rows`: the split's row numbers of `split` when it is a selection)."""
    texts, speakers = split["text"], split["speaker_id"]
    try:
        token_ids = encode_texts(processor, texts, num_proc)
    except UnspeakableTexts as error:
        raise ValueError(unspeakable_rows(split, texts, error.reasons, name, rows)) from None
    utterances = []
    for text, speaker, feats in zip(texts, speakers, feature_arrays(split), strict=True):
        feats = model.normalize_features(torch.tensor(feats, dtype=torch.float32))  # a copy: views are read-only
        utterances.append(Utterance(token_ids=token_ids[text], features=feats.half(), speaker=str(speaker)))
    return utterances


def source_weights(
    split, weights: dict | None, train: list[Utterance], log=print, max_example_frames: int | None = None
) -> list[float] | None:
    """Per-utterance epoch weights from `TrainConfig.source_weights` and the split's `source` column; logs each
    source's share of the training frames before and after weighting, over the utterances that fit
    `max_example_frames` (the longer ones are left out of training, so counting them would overstate their source)."""
    if not weights:
        return None
    if "source" not in split.column_names:
        raise ValueError(
            "source_weights needs the corpus's `source` column; rebuild the corpus with examples/build_corpus.py "
            "or remove source_weights from the config."
        )
    sources = [str(s) for s in split["source"]]
    unknown = set(weights) - set(sources)
    if unknown:
        known = sorted(set(sources))
        raise ValueError(f"source_weights names {sorted(unknown)}, not in this corpus (its sources: {known}).")
    bad = {k: v for k, v in weights.items() if not isinstance(v, (int, float)) or not 0 <= v < float("inf")}
    if bad:
        raise ValueError(f"source_weights must be finite numbers >= 0, got {bad}.")
    per_utt = [float(weights.get(s, 1.0)) for s in sources]
    frames: dict[str, list[float]] = {}
    for s, w, u in zip(sources, per_utt, train, strict=True):
        f = frames.setdefault(s, [0.0, 0.0])
        length = u.features.shape[0]
        if max_example_frames is None or length <= max_example_frames:
            f[0] += length
            f[1] += w * length
    before, after = sum(f[0] for f in frames.values()), sum(f[1] for f in frames.values())
    if not after:  # nothing would train: PairedLengthBatcher refuses it with the reason
        return per_utt
    fitting = "" if max_example_frames is None else f", utterances up to max_example_frames={max_example_frames}"
    log(
        f"source shares of training frames (before -> after source_weights{fitting}): "
        + ", ".join(f"{s} {100 * f[0] / before:.1f}% -> {100 * f[1] / after:.1f}%" for s, f in sorted(frames.items()))
    )
    return per_utt


class TimeBudget:
    """`--time-budget-min`: size max_steps from the measured step rate so that the run (with its lr decay) ends on
    time, e.g. on a borrowed GPU. The estimate is refreshed until the decay phase starts, then frozen. The minutes
    count from `started` (train.py passes its own start), so loading the corpus and the model is inside the budget.
    With the run's `state`, every new end goes through `move_end` (the lr goes on without a jump, and the checkpoints
    save the end), and a run resumed in its decay makes one estimate, which it would otherwise never make; without
    it, only cfg.max_steps is set."""

    SKIPPED_STEPS = 20  # the first steps after the start are not timed (allocator and kernel warm-up)
    MEASURED_STEPS = 50  # the estimate is refreshed every this many steps
    FIRST_ESTIMATE = SKIPPED_STEPS + MEASURED_STEPS  # steps after the start

    def note_if_it_cannot_resize(self, step: int, log=print) -> None:
        """Say so when the budget can only cut the run at its deadline: its first estimate comes FIRST_ESTIMATE steps
        after the start, and none is made once the decay has begun, so a shorter run, or one whose decay begins
        before then, keeps the config's max_steps."""
        first = step + self.FIRST_ESTIMATE
        decay = int(self.cfg.decay_start * self.cfg.max_steps)
        if self.cfg.max_steps <= first or (decay <= first and (self.state is None or self.state.decay_from is None)):
            log(
                f"--time-budget-min: the run keeps max_steps {self.cfg.max_steps} (the step rate is measured over "
                f"steps {step + self.SKIPPED_STEPS}-{first}, and the budget resizes a run only before its decay, "
                f"which starts at step {decay}); the deadline still ends it early"
            )

    def __init__(
        self,
        minutes: float,
        cfg: TrainConfig,
        start_step: int,
        started: float | None = None,
        state: TrainState | None = None,
    ):
        self.deadline = (time.time() if started is None else started) + 60 * minutes
        self.cfg, self.start_step, self.state = cfg, start_step, state
        self.mark: tuple[int, float] | None = None
        self.estimated = False

    def _end_at(self, step: int, max_steps: int) -> None:
        if self.state is not None:
            move_end(self.cfg, self.state, step, max_steps)
        else:
            self.cfg.max_steps = max_steps

    def _decaying(self, step: int) -> bool:
        if self.state is None:
            return step >= int(self.cfg.decay_start * self.cfg.max_steps)
        started = self.state.decay_from is not None or step >= int(self.cfg.decay_start * self.cfg.max_steps)
        return started and self.estimated

    def update(self, step: int) -> None:
        now = time.time()
        if now >= self.deadline:
            self._end_at(step, step)
            return
        if step == self.start_step + self.SKIPPED_STEPS:
            self.mark = (step, now)
        if self.mark is None or self._decaying(step) or (step - self.mark[0]) % self.MEASURED_STEPS:
            return
        if step == self.mark[0]:
            return
        rate = (step - self.mark[0]) / (now - self.mark[1])
        first = step == self.mark[0] + self.MEASURED_STEPS
        self._end_at(step, max(step + 1, step + int(rate * (self.deadline - now) * 0.97)))
        self.estimated = True
        if first or step % 500 == 0:
            print(f"time budget: {rate:.2f} steps/s -> max_steps {self.cfg.max_steps}", flush=True)


def configure_attention(cfg: TrainConfig):
    """Process-wide SDPA kernel choice for training on CUDA (see TrainConfig.cudnn_attention); no effect on a CPU."""
    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(bool(cfg.cudnn_attention))


def configure_process(cfg: TrainConfig):
    """Process-wide torch settings of a run: threads, attention kernels, denormals."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    configure_attention(cfg)
    # Tiny values (Adam second moments, near-zero activations) turn denormal on CPU and make every op ~10x slower.
    torch.set_flush_denormal(True)


def register_and_resume(
    accelerator: Accelerator, ema, checkpoints: Path, resume: bool, state: TrainState | None = None
) -> TrainState:
    """Registers the EMA weights and a step counter (`state`, or a new one) with Accelerate's checkpoints and, with
    `resume`, loads the newest checkpoint in `checkpoints`; returns the step counter."""
    state = state if state is not None else TrainState()
    accelerator.register_for_checkpointing(ema)
    accelerator.register_for_checkpointing(state)
    if resume:
        latest = newest_checkpoint(checkpoints)
        if latest is None:
            raise SystemExit(f"--resume: no checkpoint in {checkpoints}")
        accelerator.load_state(str(latest))
        accelerator.print(f"resumed from {latest} at step {state.step}")
    return state


def newest_checkpoint(directory: Path) -> Path | None:
    steps = [p for p in directory.glob("step-*") if p.is_dir() and p.name.split("-")[1].isdigit()]
    return max(steps, key=lambda p: int(p.name.split("-")[1])) if steps else None


def drop_rows_after(path: Path, step: int, header: bool = True) -> None:
    """A resumed run's CSV log (`log.csv`, `text_use.csv`: the step in the first column) without its rows past `step`,
    the checkpoint resumed: the run trains, evaluates and logs those steps again, and they would appear twice.
    Rewritten through a temporary file and a rename, only when there is such a row."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    head, rows = (lines[:1], lines[1:]) if header else ([], lines)
    kept = [row for row in rows if not (row.split(",", 1)[0].isdigit() and int(row.split(",", 1)[0]) > step)]
    if len(kept) < len(rows):
        tmp = path.with_name(f".tmp-{path.name}")
        tmp.write_text("".join(head + kept))
        os.replace(tmp, path)


def stop_if_diverged(step: int, lr: float, what: str) -> None:
    """Training that produced NaN or Inf cannot recover; stop before anything non-finite is saved."""
    raise SystemExit(
        f"training diverged at step {step}: {what} NaN or Inf (learning rate {lr:.3g}). Nothing from this step on was "
        "saved; start again with a lower learning rate in a new output folder (an earlier checkpoint, if any, is "
        "finite and can be resumed)."
    )


def save_checkpoint(accelerator: Accelerator, directory: Path, step: int, keep: int):
    """Write through a temporary folder and rename, so a crash never leaves a half-written `step-N`."""
    final = directory / f"step-{step}"
    tmp = directory / f".tmp-step-{step}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in sorted(directory.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def main(argv=None):
    process_started = time.time()  # --time-budget-min counts the start-up too
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML or JSON file with TrainConfig fields")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in output_dir")
    parser.add_argument("--output-dir", help="override output_dir")
    parser.add_argument("--max-steps", type=int, help="override max_steps")
    parser.add_argument("--stop-after", type=int, help="exit after this many steps of this invocation (testing)")
    parser.add_argument("--init-from", help="override init_from: a DiTAR model or pipeline folder to fine-tune")
    parser.add_argument(
        "--time-budget-min",
        type=float,
        help="end the run (lr decay, checkpoint, final EMA model) about this many minutes after "
        "train.py started: max_steps is set from the measured step rate (the checkpoints keep it; with --resume, "
        "a new budget for the rest of the run)",
    )
    parser.add_argument("--num-proc", type=int, default=1, help="processes for phonemizing the corpus at start-up")
    args = parser.parse_args(argv)

    try:
        cfg = TrainConfig.load(args.config)
    except (OSError, ValueError) as error:  # a missing, unreadable or wrong config: its message, not a traceback
        raise SystemExit(f"error: {error}") from None
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if args.max_steps:
        cfg.max_steps = args.max_steps
    if args.init_from:
        cfg.init_from = args.init_from
    if args.max_steps is not None and args.max_steps < 1:
        raise SystemExit(f"error: --max-steps {args.max_steps}: give at least 1")
    if args.time_budget_min is not None and not args.time_budget_min > 0:
        raise SystemExit(f"error: --time-budget-min {args.time_budget_min:g}: give a number of minutes > 0")
    if args.num_proc < 1:
        raise SystemExit(f"error: --num-proc {args.num_proc}: give at least 1")
    if cfg.init_from and not Path(cfg.init_from).is_dir():
        raise SystemExit(
            f"error: init_from {cfg.init_from!r} is not a folder: give a DiTAR model or pipeline folder "
            "(one saved with save_pretrained, e.g. modeling_ditar/default)"
        )
    if not any((Path(cfg.dataset) / name).is_file() for name in ("dataset_dict.json", "dataset_info.json")):
        raise SystemExit(
            f"error: dataset {cfg.dataset!r} is not a corpus folder (datasets' save_to_disk): build one with "
            f"examples/build_corpus.py (docs/training.md), or set `dataset:` in {args.config}"
        )
    problem = corpus_problem(Path(cfg.dataset), cfg.init_from)
    if problem:
        raise SystemExit(f"error: dataset {cfg.dataset!r} {problem}")
    configure_process(cfg)
    out = Path(cfg.output_dir)
    checkpoints = out / "checkpoints"
    if not args.resume and newest_checkpoint(checkpoints) is not None:
        raise SystemExit(
            f"{checkpoints} already holds checkpoints: pass --resume to continue, or pick another output_dir"
        )

    log_with = []
    try:
        import tensorboard  # noqa: F401

        log_with = ["tensorboard"]
    except ImportError:
        pass
    accelerator = Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        log_with=log_with,
        project_dir=str(out),
    )
    if accelerator.mixed_precision == "fp16" and accelerator.device.type == "cpu":
        accelerator.print(
            "warning: mixed_precision fp16 has no effect on the CPU (accelerate trains in float32 there); bf16 works "
            "on CPUs that multiply bfloat16 natively"
        )
    set_seed(cfg.seed)

    from datasets import load_from_disk

    dataset_dir = Path(cfg.dataset)
    data = load_from_disk(str(dataset_dir))
    try:
        model, processor = load_model_and_processor(cfg, dataset_dir)
    except ValueError as error:  # settings that do not fit init_from or the corpus: the message, not a traceback
        raise SystemExit(f"error: {error}") from None
    if cfg.lora is not None:  # `lora: {}` is LoRA with the default settings
        from modeling_ditar.lora import default_lora_config

        model.add_adapter(default_lora_config(**cfg.lora), adapter_name="default")
        summary = model.adapter_summary()
        accelerator.print(
            f"LoRA: {summary['adapter_parameters']:,} trainable parameters ({100 * summary['fraction']:.2f}% of "
            f"{summary['base_parameters']:,}), adapter {summary['size_mb']:.2f} MB"
        )
        if accelerator.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            (out / "adapter_summary.json").write_text(json.dumps(summary, indent=2))
    if cfg.trainable_modules:
        freeze_all_but(model, cfg.trainable_modules, accelerator.print)
    valid_rows = spread_rows(len(data["validation"]), cfg.eval_utterances)
    try:  # a transcript the text front end refuses: the split, the rows and the fix, not a traceback
        train = load_utterances(data["train"], processor, model, args.num_proc, "train")
        valid = load_utterances(data["validation"].select(valid_rows), processor, model, 1, "validation", valid_rows)
    except ValueError as error:
        raise SystemExit(f"error: dataset {cfg.dataset!r}, {error}") from None
    accelerator.print(
        f"{len(train)} training utterances ({sum(u.features.shape[0] for u in train)} frames), "
        f"start-up {time.time() - process_started:.0f} s"
    )
    if model.config.ctc_loss_weight > 0:
        frames_per_patch = model.config.ctc_frames_per_patch
        short = too_short_for_ctc(train, model.config.patch_size, frames_per_patch)
        if short:
            accelerator.print(
                f"{short} of {len(train)} training utterances have fewer CTC predictions than their text needs "
                f"(patches x ctc_frames_per_patch {frames_per_patch} < tokens + repeated tokens): "
                "their CTC loss is 0 (the diffusion and stop losses still train on them); a new model with a larger "
                "ctc_frames_per_patch gives them one"
            )
    if not cfg.init_from and "text_tokens_per_frame" not in cfg.model:
        # the rate "aligned" speech positions assume when a caller gives no prompt: this corpus's median
        rates = sorted(len(u.token_ids) / u.features.shape[0] for u in train)
        model.config.text_tokens_per_frame = round(rates[len(rates) // 2], 4)
    space_ids = processor.encode_text(" ", allow_empty=True)

    weights = source_weights(data["train"], cfg.source_weights, train, accelerator.print, cfg.max_example_frames)
    try:
        batcher = PairedLengthBatcher(
            [u.features.shape[0] for u in train],
            [u.speaker for u in train],
            cfg.max_batch_frames,
            cfg.max_example_frames,
            cfg.pair_prob,
            cfg.seed,
            num_replicas=accelerator.num_processes,
            rank=accelerator.process_index,
            weights=weights,
        )
    except ValueError as error:  # e.g. no utterance fits max_example_frames
        raise SystemExit(f"error: {error}") from None
    if batcher.too_long:
        accelerator.print(
            f"{batcher.too_long} of {len(train)} training utterances are longer than max_example_frames="
            f"{cfg.max_example_frames} and are left out"
        )
    optimizer = torch.optim.AdamW(
        ema_parameters(model, cfg), lr=cfg.learning_rate, betas=cfg.adam_betas, weight_decay=cfg.weight_decay
    )
    state = TrainState(cfg, accelerator.num_processes)  # the step counter, the lr schedule's end and the data plan
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, accelerator.num_processes, state))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    ema = EMAModel(
        ema_parameters(accelerator.unwrap_model(model), cfg),
        decay=cfg.ema_decay,
        use_ema_warmup=True,
        power=0.75,
        foreach=True,
    )  # one multi-tensor update instead of a few kernels per parameter
    register_and_resume(accelerator, ema, checkpoints, args.resume, state)
    try:
        check_data_plan(state)
    except ValueError as error:
        raise SystemExit(f"error: --resume: {error}") from None
    continue_schedule(cfg, state, budgeted=bool(args.time_budget_min), log=accelerator.print)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        processor.save_pretrained(out / "processor")
        # position -> name of every parameter: optimizer and EMA states are stored by position (resume_pack.py)
        names = [name for name, _ in accelerator.unwrap_model(model).named_parameters()]
        (out / "param_names.json").write_text(json.dumps(names))
        # the architecture, so that any checkpoint's EMA weights become a model folder (resume_pack.py ema-model),
        # and the sampling settings, which config.json does not hold (checkpoint_to_pipeline.py reads both)
        accelerator.unwrap_model(model).config.save_pretrained(out / "model_config")
        accelerator.unwrap_model(model).generation_config.save_pretrained(out / "model_config")
    accelerator.init_trackers("ditar", config={k: str(v) for k, v in asdict(cfg).items()})

    csv_path = out / "log.csv"
    # losses logged: the total, its two paper terms, and the optional auxiliary ones the model has
    model_config = accelerator.unwrap_model(model).config
    loss_keys = ["loss", "diffusion_loss", "stop_loss"]
    if model_config.ctc_loss_weight > 0:
        loss_keys.append("ctc_loss")
    if model_config.guided_attention_weight > 0:
        loss_keys.append("guided_attention_loss")
    columns = ["step", "epoch", *loss_keys, "lr", "grad_norm", "frames_per_s", "elapsed_s"]
    if accelerator.is_main_process and not csv_path.exists():
        with csv_path.open("w", newline="") as f:
            csv.writer(f).writerow(columns)
    elif csv_path.exists():  # a resumed run keeps its file's columns (runs from before the auxiliary-loss columns)
        with csv_path.open(newline="") as f:
            columns = next(csv.reader(f))
    if accelerator.is_main_process and args.resume:  # the steps after the checkpoint are trained and logged again
        drop_rows_after(csv_path, state.step, header=True)
        drop_rows_after(out / "text_use.csv", state.step, header=False)

    pad_id = processor.tokenizer.pad_token_id or 0
    single_rate = None  # single rows at their own rate
    if cfg.single_row_rate == "model":  # as generation without a prompt: the model's rate, set before this point
        single_rate = accelerator.unwrap_model(model).config.text_tokens_per_frame
    model.train()
    started, steps_this_run, window = time.time(), 0, {"frames": 0, "t": time.time()}
    sums = dict.fromkeys(loss_keys, 0.0) | {"n": 0}
    budget = None
    if args.time_budget_min:
        budget = TimeBudget(args.time_budget_min, cfg, state.step, process_started, state)
        budget.note_if_it_cannot_resize(state.step, accelerator.print)
    while state.step < cfg.max_steps:
        batches = batcher.epoch(state.epoch)
        while state.batch_in_epoch < len(batches) and state.step < cfg.max_steps:
            batch = collate_examples(batches[state.batch_in_epoch], train, pad_id, space_ids, single_rate)
            window["frames"] += int(batch["speech_attention_mask"].sum())  # on the CPU: no device sync
            batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
            state.batch_in_epoch += 1
            with accelerator.accumulate(model):
                output = model(**batch)
                accelerator.backward(output.loss)
                grad_norm = None
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    lr = optimizer.param_groups[0]["lr"]  # this step's; the scheduler then sets the next one's
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            for key in loss_keys:  # stays on the device until the next log line
                sums[key] = sums[key] + getattr(output, key).detach().float()
            sums["n"] += 1
            if not accelerator.sync_gradients:
                continue
            state.step += 1
            steps_this_run += 1
            ema.step(ema_parameters(accelerator.unwrap_model(model), cfg))
            if budget is not None:
                budget.update(state.step)

            if state.step % cfg.log_every == 0:
                now = time.time()
                local = torch.stack([sums[k] for k in loss_keys]) / sums["n"]
                mean = accelerator.reduce(local, reduction="mean").cpu()  # over processes
                if not bool(torch.isfinite(mean).all()):
                    stop_if_diverged(state.step, lr, f"the loss of the last {sums['n']} batches is")
                logs = dict(zip(loss_keys, mean.tolist(), strict=True))
                logs.update(
                    lr=lr,
                    grad_norm=float(grad_norm) if grad_norm is not None else float("nan"),
                    frames_per_s=window["frames"] * accelerator.num_processes / (now - window["t"]),
                )
                accelerator.log(logs, step=state.step)
                if accelerator.is_main_process:
                    with csv_path.open("a", newline="") as f:
                        csv.writer(f).writerow(
                            [state.step, state.epoch]
                            + [f"{logs.get(c, float('nan')):.6g}" for c in columns[2:-1]]
                            + [f"{now - started:.1f}"]
                        )
                    print(
                        f"step {state.step} epoch {state.epoch} loss {logs['loss']:.4f} "
                        f"(diff {logs['diffusion_loss']:.4f} stop {logs['stop_loss']:.4f}"
                        + "".join(f" {k.removesuffix('_loss')} {logs[k]:.4f}" for k in loss_keys[3:])
                        + f") lr {logs['lr']:.2e} "
                        f"{logs['frames_per_s']:.0f} frames/s",
                        flush=True,
                    )
                sums = dict.fromkeys(loss_keys, 0.0) | {"n": 0}
                window = {"frames": 0, "t": now}

            if state.step % cfg.checkpoint_every == 0 or state.step == cfg.max_steps:
                if not all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.requires_grad):
                    stop_if_diverged(state.step, lr, "the trained weights hold")
                save_checkpoint(accelerator, checkpoints, state.step, cfg.keep_checkpoints)
            if accelerator.is_main_process and (state.step % cfg.eval_every == 0 or state.step == cfg.max_steps):
                evaluate(
                    accelerator.unwrap_model(model), ema, processor, valid, pad_id, space_ids, out, state.step, cfg
                )
                write_loss_plot(csv_path, out / "loss.png")
            if args.stop_after and steps_this_run >= args.stop_after:
                accelerator.end_training()
                return
        if state.batch_in_epoch >= len(batches):
            state.epoch += 1
            state.batch_in_epoch = 0

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        ema.store(ema_parameters(final, cfg))
        ema.copy_to(ema_parameters(final, cfg))
        # LoRA: the adapter alone (load it onto init_from with pipe.load_lora_weights(out / "final/adapter"))
        if cfg.lora is not None:
            final.save_adapter(out / "final" / "adapter")
        else:
            final.save_pretrained(out / "final" / "model")
        processor.save_pretrained(out / "final" / "processor")
        ema.restore(ema_parameters(final, cfg))
    accelerator.end_training()


@torch.no_grad()
def evaluate(model, ema, processor, valid, pad_id, space_ids, out: Path, step: int, cfg: TrainConfig | None = None):
    """EMA weights: the right-vs-wrong-transcript loss gap (cheap sign that the text is used) and one sample. Whatever
    the evaluation draws, training goes on with the random numbers it would have had without it: the same weights
    whatever eval_every, and a run resumed from a checkpoint (whose random state was saved before the evaluation
    that followed it) goes on as the uninterrupted run."""
    was_training = model.training
    params = ema_parameters(model, cfg)
    ema.store(params)
    ema.copy_to(params)
    model.eval()
    try:
        with random_state_kept(model.device):
            _evaluate_ema(model, processor, valid, pad_id, space_ids, out, step)
    finally:
        ema.restore(params)
        model.train(was_training)


def _evaluate_ema(model, processor, valid, pad_id, space_ids, out: Path, step: int) -> None:
    if len(valid) < 2:
        # the wrong transcript is another utterance's: with one, it would be its own and the gap a false 0%
        print(
            f"eval step {step}: text use not measured (one validation utterance; it reads each with another's "
            "transcript, so it needs two or more: a larger --val-fraction in build_corpus.py)",
            flush=True,
        )
    else:
        gap = text_use_gap(model, valid, pad_id)
        # the same in prompt + target rows, scored on the target: how generation uses the text
        cont = continuation_text_use_gap(model, valid, pad_id, space_ids)
        cells = [f"{gap['right']:.5f}", f"{gap['wrong']:.5f}", f"{gap['penalty']:.4f}"]
        cells += [f"{cont['right']:.5f}", f"{cont['wrong']:.5f}", f"{cont['penalty']:.4f}"]
        with (out / "text_use.csv").open("a") as f:
            f.write(",".join([str(step), *cells]) + "\n")
        print(
            f"eval step {step}: x0-MSE at t=1 right text {gap['right']:.4f} wrong text {gap['wrong']:.4f} "
            f"({100 * gap['penalty']:+.1f}%; prompt + target {100 * cont['penalty']:+.1f}%)",
            flush=True,
        )
    write_validation_sample(model, processor, valid, space_ids, out / "samples" / f"step-{step}")


@contextlib.contextmanager
def random_state_kept(device: torch.device):
    """Every random stream training draws from, Python's, NumPy's and torch's on the CPU and on `device`, is as it
    was once the block is left."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    forked = {"devices": []} if device.type == "cpu" else {"devices": [device], "device_type": device.type}
    with torch.random.fork_rng(**forked):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


if __name__ == "__main__":
    main()

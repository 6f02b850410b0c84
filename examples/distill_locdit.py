#!/usr/bin/env python
"""Few-step LocDiT: distil a pipeline's guided multi-step patch sampler into K (1 or 2) unguided steps.

    python examples/distill_locdit.py --config examples/configs/distill-cpu.yaml
    python examples/distill_locdit.py --config examples/configs/distill-cpu.yaml --student-steps 1 \\
        --output-dir runs/distill-locdit-k1        # same teacher endpoints (pairs_dir), another student
    python examples/distill_locdit.py --config examples/configs/distill-gpu.yaml --assemble STUDENT_DIR \\
        --output-dir outputs/distilled             # a student brought back from a GPU machine -> a pipeline

Method: direct regression onto the teacher's sampler endpoints (Luhman & Luhman 2021, "Knowledge distillation in
iterative generative models"), with the backbone frozen, so only LocDiT learns.

- Contexts. The teacher's backbone runs teacher-forced over corpus utterances (half of them behind a prompt utterance
  of the same speaker, as in generation with a voice prompt). Every real patch gives one context: the backbone output
  h that predicts it, and its K history patches (masked at the start of speech). The last shard is held out for
  validation: it draws from utterances that no training shard (nor on-policy round) draws from, whole speakers where
  some make up about one in `num_pair_shards` of the corpus, else single utterances, so the held-out error is
  measured on contexts the student never trained on.
- Teacher endpoints. For each context and one Gaussian draw eps, the teacher's own sampler (its generation config:
  steps, LM guidance, temperature) gives the patch x0 = F(h, history, eps). With temperature tau the solve is
  deterministic apart from that one draw (injected at t ~ tau), so F is a function and x0 a regression target.
  Endpoints are computed once, in shards under `pairs_dir`, and reused by every student and epoch.
- Student. A copy of the teacher's LocDiT (same architecture, initialised from it) runs the same sampler with K steps,
  guidance 1 (the conditional branch alone: the teacher's guidance is folded into its weights, one LocDiT call per
  step) and the same eps, differentiably; the loss is the MSE between its patch and the teacher's, in normalised
  feature space. With K = 2 and tau = 0.5 the student's first step starts from zeros at t = 1 and eps enters at
  t = 0.5, as in the teacher; with K = 1 the grid [1, 0] starts from eps at t = 1, and the student learns the map
  eps -> teacher sample in one call. With `student_guidance_scale` g the student instead keeps LM guidance at g: each
  step runs both branches (one call of twice the rows) and the loss is taken on the guided patch.
- On-policy rounds (DAgger, Ross et al. 2011). Teacher-forced contexts alone leave an exposure gap: a student that
  matches the teacher from real contexts can still lose words when it runs on its own output. With
  `on_policy_rounds` R, at steps `on_policy_start + r * on_policy_every` the current student generates free-running
  (one candidate, its own K steps) for `on_policy_utterances` corpus texts, half behind a prompt utterance of the same
  speaker; every patch it solved gives a context and its draw eps, and the teacher labels them from the same eps.
  From then on a fraction `on_policy_fraction` of each batch comes from these on-policy pairs.
- Output. `OUTPUT_DIR/pipeline`: the teacher's pipeline with the student LocDiT, whose generation config sets
  `num_inference_steps` K, `guidance_scale` 1 and `distilled_guidance_scale` g (which makes any other guidance scale
  an error). The teacher's multi-step sampler is unchanged: any pipeline can still be run with more steps. A
  candidate LocDiT the teacher carries is left out: the student samples every patch, the competing candidates' too,
  at its own K steps (conversion/add_candidate_locdit.py can add one later; the run says how).
  `OUTPUT_DIR/student` holds what the student adds to the teacher (LocDiT in float16, the generation config), small
  enough to bring back from a GPU machine; `--assemble OUTPUT_DIR/student` rebuilds the pipeline from it elsewhere
  (it needs no corpus, and refuses to overwrite an existing OUTPUT_DIR/pipeline).

Resumable: finished pair shards are kept; `OUTPUT_DIR/checkpoint.pt` (student, optimizer, step, RNG, log) is written
atomically every `save_every` steps and at the end, and a rerun with the same config continues from it (max_steps and
the time budget may change; a changed teacher, pairs folder, number of shards or training setting is refused, named,
as are a checkpoint and a pairs folder made before the held-out shard was kept apart).
`--time-budget-min` fits the run into the minutes: it measures the step rate after a warm-up and moves the run's end
(never past max_steps) so that the lr decay ends on time, with the on-policy rounds moved in proportion and their
time kept free; at the deadline training stops wherever it is (saving and exporting). Problems with the inputs
(config, folders, teacher, corpus, checkpoint) end the run with one `error: ...` line, before its config, pairs or
student are written.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # examples/
import train as train_lib  # noqa: E402
from train import is_number  # noqa: E402

from modeling_ditar import DiTARPipeline  # noqa: E402
from modeling_ditar.sampling import GuidedVelocity, PatchSampler  # noqa: E402
from modeling_ditar.training_data import collate_examples  # noqa: E402

PAIRS_META = "pairs_meta.json"
CHECKPOINT = "checkpoint.pt"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class DistillConfig:
    """One distillation run (a YAML file's keys; see examples/configs/distill-*.yaml)."""

    output_dir: str | None = None  # required (config or --output-dir), as is corpus
    corpus: str | None = None
    teacher: str = "modeling_ditar/default"
    split: str = "train"
    pairs_dir: str | None = None  # default OUTPUT_DIR/pairs; share it between students of one teacher
    student_steps: int = 2
    # None: the student runs unguided (guidance 1) and the teacher's guidance is folded into its weights, one LocDiT
    # call per step. A number g: the student keeps LM guidance at g, both branches in one call of twice the rows,
    # and learns the teacher's endpoint through the guided combination.
    student_guidance_scale: float | None = None
    teacher_steps: int | None = None  # None: the teacher's generation config (as are the next two)
    guidance_scale: float | None = None
    temperature: float | None = None
    num_pair_shards: int = 8  # the last shard is held out for validation (from utterances no other shard draws from)
    utterances_per_shard: int = 64
    utterances_per_pass: int = 8  # rows of one teacher-forced backbone pass
    prompt_prob: float = 0.5
    teacher_chunk: int = 1024  # contexts solved together by the teacher sampler
    batch_size: int = 256
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 50
    max_steps: int = 2000
    grad_clip: float = 1.0
    eval_every: int = 100
    save_every: int = 100
    time_budget_min: float | None = None
    on_policy_rounds: int = 0  # DAgger rounds: contexts from the student's own free-running generations
    on_policy_start: int = 0  # step of the first round
    on_policy_every: int = 500  # steps between rounds
    on_policy_utterances: int = 64  # texts generated per round
    on_policy_fraction: float = 0.5  # share of each batch drawn from on-policy pairs once a round exists
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    # "bf16": the student's training steps under bfloat16 autocast (validation stays float32). On a CPU that multiplies
    # bfloat16 natively a step of the guided one-step recipe took 0.34 s instead of 0.56 s, and after 1,000 steps the
    # held-out error was the same (0.01307 against 0.01306).
    mixed_precision: str = "no"

    @classmethod
    def from_yaml(cls, path: str | Path, need_corpus: bool = True, **overrides) -> DistillConfig:
        """The config file's settings with the overrides that are not None; `need_corpus=False` (--assemble) lets the
        corpus be unset."""
        raw = train_lib.read_settings(path, cls, "distillation")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if raw.get("mixed_precision") is False:  # YAML 1.1 reads a bare `no` as false
            raw["mixed_precision"] = "no"
        cfg = cls(**raw)
        cfg.check(need_corpus)
        return cfg

    def check(self, need_corpus: bool = True):
        for name in ("output_dir", "corpus") if need_corpus else ("output_dir",):
            if not getattr(self, name):
                raise ValueError(f"{name} is not set: give `{name}:` in the config or --{name.replace('_', '-')}.")
        if self.student_steps not in (1, 2, 3, 4):
            raise ValueError(f"student_steps must be 1-4 (a few-step student), got {self.student_steps!r}.")
        if self.student_guidance_scale is not None and not (
            is_number(self.student_guidance_scale) and self.student_guidance_scale > 1
        ):
            raise ValueError(
                f"student_guidance_scale must be a number > 1 (LM guidance kept by the student) or unset (guidance "
                f"folded into the student), got {self.student_guidance_scale!r}."
            )
        if self.mixed_precision not in ("no", "bf16"):
            raise ValueError(f"mixed_precision must be no or bf16, got {self.mixed_precision!r}.")
        if self.num_pair_shards < 2:
            raise ValueError(f"num_pair_shards must be >= 2 (the last one is held out), got {self.num_pair_shards}.")
        for name in (
            "utterances_per_shard",
            "utterances_per_pass",
            "teacher_chunk",
            "batch_size",
            "eval_every",
            "save_every",
        ):
            if not (_is_int(getattr(self, name)) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}.")
        if not (_is_int(self.max_steps) and self.max_steps >= 1):
            raise ValueError(
                f"max_steps must be an integer >= 1 (to compute only the teacher endpoints, pass --pairs-only), got "
                f"{self.max_steps!r}."
            )
        if not (_is_int(self.warmup_steps) and self.warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be an integer >= 0, got {self.warmup_steps!r}.")
        if not (is_number(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate!r}.")
        if not (is_number(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(
                f"grad_clip must be a finite number > 0 (the largest gradient norm a step applies), got "
                f"{self.grad_clip!r}."
            )
        if not (is_number(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}.")
        if self.time_budget_min is not None and not (is_number(self.time_budget_min) and self.time_budget_min > 0):
            raise ValueError(
                f"time_budget_min (--time-budget-min) must be a finite number of minutes > 0 (or unset: no budget), "
                f"got {self.time_budget_min!r}."
            )
        if self.threads is not None and not (_is_int(self.threads) and self.threads >= 1):
            raise ValueError(f"threads must be an integer >= 1 (or unset: torch's default), got {self.threads!r}.")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be a torch device such as cpu, cuda or cuda:1, got {self.device!r}."
            ) from None
        # the teacher's sampler settings, named by their config keys here (the sampler would name its own arguments,
        # and only once the teacher has loaded)
        if self.teacher_steps is not None and not (_is_int(self.teacher_steps) and self.teacher_steps >= 1):
            raise ValueError(
                f"teacher_steps must be an integer >= 1 (or unset: the teacher's generation config), got "
                f"{self.teacher_steps!r}."
            )
        if self.guidance_scale is not None and not (is_number(self.guidance_scale) and self.guidance_scale >= 0):
            raise ValueError(
                f"guidance_scale must be a finite number >= 0 (1 disables guidance; unset: the teacher's generation "
                f"config), got {self.guidance_scale!r}."
            )
        if self.temperature is not None and not (is_number(self.temperature) and 0 <= self.temperature <= 1):
            raise ValueError(
                f"temperature must be a number in [0, 1] (or unset: the teacher's generation config), got "
                f"{self.temperature!r}."
            )
        if not 0 <= self.prompt_prob <= 1:
            raise ValueError(f"prompt_prob must be in [0, 1], got {self.prompt_prob!r}.")
        for name in ("on_policy_rounds", "on_policy_start"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be an integer >= 0, got {getattr(self, name)!r}.")
        for name in ("on_policy_every", "on_policy_utterances"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)!r}.")
        if not 0 < self.on_policy_fraction < 1:
            raise ValueError(
                f"on_policy_fraction must be in (0, 1) (the rest of each batch stays teacher-forced), got "
                f"{self.on_policy_fraction!r}."
            )
        if self.on_policy_rounds and self.on_policy_start >= self.max_steps:
            raise ValueError(
                f"on_policy_start={self.on_policy_start} is not before max_steps={self.max_steps}: no round would run; "
                "lower on_policy_start or set on_policy_rounds: 0."
            )
        fit = len(self.on_policy_round_steps())
        if fit < self.on_policy_rounds:
            raise ValueError(
                f"on_policy_rounds={self.on_policy_rounds} do not fit in max_steps={self.max_steps}: with "
                f"on_policy_start={self.on_policy_start} and on_policy_every={self.on_policy_every} only {fit} "
                f"round(s) start before it; set on_policy_rounds: {fit}, raise max_steps or lower on_policy_every."
            )

    def on_policy_round_steps(self) -> list[int]:
        """The steps at which a round of on-policy contexts is generated (those before max_steps)."""
        steps = [self.on_policy_start + r * self.on_policy_every for r in range(self.on_policy_rounds)]
        return [step for step in steps if step < self.max_steps]

    @property
    def student_guidance(self) -> float:
        """The guidance scale the student is sampled with (1: folded)."""
        return 1.0 if self.student_guidance_scale is None else float(self.student_guidance_scale)

    @property
    def pairs_path(self) -> Path:
        return Path(self.pairs_dir) if self.pairs_dir else Path(self.output_dir) / "pairs"


# ----------------------------------------------------------------------------------------------------------------------
# teacher endpoints


def load_teacher(teacher: str) -> DiTARPipeline:
    """The teacher pipeline from its folder or Hub repo id; one that neither holds is named (not the Hub's error)."""
    path = Path(teacher)
    if path.exists() and not path.is_dir():
        raise FileNotFoundError(
            f"teacher {teacher} is a file, not a folder: give the folder of a DiTAR pipeline (one "
            "DiTARPipeline.save_pretrained wrote, e.g. modeling_ditar/default) with teacher: or --teacher."
        )
    if path.is_dir():
        return DiTARPipeline.from_pretrained(teacher)
    try:
        return DiTARPipeline.from_pretrained(teacher)  # a Hub repo id (or its local cache)
    except (OSError, ValueError):
        raise FileNotFoundError(
            f"teacher {teacher} is no local folder, and no Hub repo id whose pipeline could be loaded: give the folder "
            "of a DiTAR pipeline (one DiTARPipeline.save_pretrained wrote, e.g. modeling_ditar/default) with "
            "teacher: or --teacher."
        ) from None


def teacher_settings(cfg: DistillConfig, pipe: DiTARPipeline) -> dict:
    """Steps, guidance and temperature of the teacher's sampler: the config's values, else its generation config."""
    settings = pipe.model.generation_settings(
        pipe.model.generation_config,
        num_inference_steps=cfg.teacher_steps,
        guidance_scale=cfg.guidance_scale,
        temperature=cfg.temperature,
    )
    if settings.distilled_guidance_scale is not None:
        raise ValueError("the teacher is itself a distilled student; distil from the multi-step pipeline it came from.")
    if settings.num_inference_steps <= cfg.student_steps:
        raise ValueError(
            f"the teacher samples with {settings.num_inference_steps} LocDiT step(s), no more than the student's "
            f"{cfg.student_steps}: it is probably a distilled student itself. Distil from a multi-step pipeline, or "
            "set teacher_steps."
        )
    return {
        "steps": settings.num_inference_steps,
        "guidance_scale": settings.guidance_scale,
        "temperature": settings.temperature,
    }


def patch_contexts(model, batch: dict) -> dict[str, torch.Tensor]:
    """Teacher-forced contexts of every real patch of a collated batch.

    Returns cond [M, H] (the backbone output that predicts the patch), history [M, K*P, D] and history_mask
    [M, K*P] (bool; both empty tensors with K = 0), and target patches [M, P, D] (the recorded speech, unused by the
    loss but kept for inspection)."""
    out = model(**batch, return_dict=True)
    patches, patch_mask = model.patchify(batch["speech_features"].to(model.dtype), batch["speech_attention_mask"])
    cond = out.speech_hidden_states[:, :-1][patch_mask]  # [M, H]
    num_history, patch_size = model.config.num_history_patches, model.config.patch_size
    if num_history > 0:
        windows, window_mask = model._history_windows(patches, num_history)
        history = windows[patch_mask].flatten(1, 2)  # [M, K*P, D]
        history_mask = window_mask[patch_mask].repeat_interleave(patch_size, dim=1)  # [M, K*P]
    else:
        history = patches.new_zeros(cond.shape[0], 0, patches.shape[-1])
        history_mask = torch.zeros(cond.shape[0], 0, dtype=torch.bool, device=cond.device)
    return {"cond": cond, "history": history, "history_mask": history_mask, "speech": patches[patch_mask]}


def solve(locdit, contexts: dict, noise: torch.Tensor, steps: int, guidance_scale: float, temperature: float):
    """The pipeline's patch sampler on M contexts with the given Gaussian draw: [M, P, D]. Differentiable when
    called with autograd enabled (LocDiT then runs its plain `forward`)."""
    history = contexts["history"] if contexts["history"].shape[1] > 0 else None
    history_mask = contexts["history_mask"] if history is not None else None
    velocity = GuidedVelocity(locdit, contexts["cond"], history, history_mask, guidance_scale)
    return PatchSampler().sample(
        velocity, tuple(noise.shape), steps, temperature, device=noise.device, dtype=torch.float32, noise=noise
    )


def speakers_index(utterances, pool: list[int] | None = None) -> dict[str, list[int]]:
    """Speaker -> indices of its utterances (those in `pool`, if given)."""
    by_speaker: dict[str, list[int]] = {}
    for index in range(len(utterances)) if pool is None else pool:
        by_speaker.setdefault(utterances[index].speaker, []).append(index)
    return by_speaker


def prompt_partner(index: int, utterances, by_speaker: dict, rng: random.Random, prompt_prob: float) -> int:
    """Another utterance of the same speaker (among those `by_speaker` holds) to speak before `index` as its prompt
    (with probability `prompt_prob`), else -1."""
    same = [j for j in by_speaker[utterances[index].speaker] if j != index]
    return rng.choice(same) if same and rng.random() < prompt_prob else -1


def teacher_endpoints(locdit, contexts: dict, noise: torch.Tensor, cfg: DistillConfig, settings: dict) -> torch.Tensor:
    """The teacher's sampler endpoints [M, P, D] (float32, CPU) for M contexts and their draws, `teacher_chunk` at a
    time."""
    targets = []
    for start in range(0, noise.shape[0], cfg.teacher_chunk):
        chunk = {key: value[start : start + cfg.teacher_chunk] for key, value in contexts.items()}
        patch = solve(
            locdit,
            chunk,
            noise[start : start + cfg.teacher_chunk],
            settings["steps"],
            settings["guidance_scale"],
            settings["temperature"],
        )
        targets.append(patch.float().cpu())
    return torch.cat(targets)


# Marks teacher endpoints (pairs_meta.json) and checkpoints (run key) whose held-out shard draws from utterances that
# no training shard draws from; those made before drew every shard from the whole corpus.
HELD_OUT = "apart"


def held_out_split(utterances, cfg: DistillConfig) -> dict:
    """The utterances the held-out shard draws from, and the others, which the training shards and on-policy rounds
    draw from: about one in `num_pair_shards` of the corpus, deterministic in (corpus, seed). Whole speakers are held
    out where some fill that share (at most twice it), so that validation also meets new voices; otherwise single
    utterances. Prompts are drawn from the same side. ValueError for a corpus too small to hold any utterance out.
    Returns {"held_out": indices, "train": indices, "description": a line for the log}."""
    total, shards = len(utterances), cfg.num_pair_shards
    want = math.ceil(total / shards)
    if total - want < 1:
        raise ValueError(
            f"corpus {cfg.corpus}: its {cfg.split!r} split has {total} utterance(s), too few to hold any out: the "
            f"held-out shard draws from {want} (1 in num_pair_shards={shards}) that no training shard draws from, and "
            "training needs at least one more; give a corpus with at least 2 utterances."
        )
    rng = random.Random(cfg.seed * 1_000_003 - 1)  # apart from every shard's seed (seed * 1_000_003 + shard)
    by_speaker = speakers_index(utterances)
    names = sorted(by_speaker)
    rng.shuffle(names)
    room = min(2 * want, total - 1)  # the held-out side stays near its share, and training keeps utterances
    speakers: list[str] = []
    held = 0
    for name in names:
        if held >= want:
            break
        if held + len(by_speaker[name]) <= room:
            speakers.append(name)
            held += len(by_speaker[name])
    if held >= want:
        held_out = sorted(index for name in speakers for index in by_speaker[name])
        what = f"{len(speakers)} of {len(by_speaker)} speakers ({held} of {total} utterances)"
    else:  # one speaker, or speakers too large to hold out whole ones near the share
        held_out = sorted(rng.sample(range(total), want))
        what = f"{want} of {total} utterances (no set of whole speakers fits 1 in {shards} of the corpus)"
    kept = set(held_out)
    train = [index for index in range(total) if index not in kept]
    description = (
        f"held out: {what}; the training shards and on-policy rounds draw from the other {len(train)} utterances"
    )
    return {"held_out": held_out, "train": train, "description": description}


def shard_pool(split: dict, shard: int, cfg: DistillConfig) -> list[int]:
    """The utterances a pair shard draws from: the held-out ones for the last shard, the others for the rest."""
    return split["held_out"] if shard == cfg.num_pair_shards - 1 else split["train"]


def shard_rows(utterances, shard: int, cfg: DistillConfig, pool: list[int]) -> list[tuple[int, int]]:
    """The (utterance, prompt partner or -1) rows of one shard: `utterances_per_shard` draws from `pool`, with
    replacement, deterministic in (seed, shard); a partner is another utterance of the same speaker in `pool`."""
    rng = random.Random(cfg.seed * 1_000_003 + shard)
    by_speaker = speakers_index(utterances, pool)
    picks = [pool[rng.randrange(len(pool))] for _ in range(cfg.utterances_per_shard)]
    return [(index, prompt_partner(index, utterances, by_speaker, rng, cfg.prompt_prob)) for index in picks]


@torch.no_grad()
def make_shard(
    pipe, utterances, shard: int, cfg: DistillConfig, settings: dict, pad_id: int, space_ids, pool: list[int]
) -> dict:
    """Teacher endpoints for one shard of utterances drawn from `pool` (`shard_pool`), deterministic in (seed,
    shard)."""
    model, device = pipe.model, torch.device(cfg.device)
    rows = shard_rows(utterances, shard, cfg, pool)
    contexts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(rows), cfg.utterances_per_pass):
        batch = collate_examples(rows[start : start + cfg.utterances_per_pass], utterances, pad_id, space_ids)
        part = patch_contexts(model, {k: v.to(device) for k, v in batch.items()})
        for key, value in part.items():
            contexts.setdefault(key, []).append(value)
    ctx = {key: torch.cat(values) for key, values in contexts.items()}
    items = ctx["cond"].shape[0]
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed * 1_000_003 + shard)
    noise = torch.randn(items, *ctx["speech"].shape[1:], generator=generator).to(device)
    # float32 on the CPU: a shard of 64 utterances (~2,500 patches) is ~10 MB
    return {
        "cond": ctx["cond"].float().cpu(),
        "history": ctx["history"].float().cpu(),
        "history_mask": ctx["history_mask"].cpu(),
        "noise": noise.cpu(),
        "target": teacher_endpoints(model.locdit, ctx, noise, cfg, settings),
    }


def atomic_save(obj, path: Path):
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# With a time budget, teacher endpoints may take at most this share of it (their cost on a new machine is unknown);
# training then uses the shards made so far, the last of them held out.
PAIRS_BUDGET_SHARE = 0.5


def ensure_pairs(
    pipe, cfg: DistillConfig, settings: dict, log, deadline: float | None = None, corpus: dict | None = None
) -> list[Path]:
    """Compute the missing pair shards (kept ones are reused); returns the paths of the shards that exist, in order.
    The held-out shard (the last) is made first, from utterances no other shard draws from (`held_out_split`). Past
    `deadline` (a `time.time()` value) no further shard is started once it and one training shard exist."""
    pairs = cfg.pairs_path
    cache = {} if corpus is None else corpus
    meta = {
        "held_out": HELD_OUT,
        "num_pair_shards": cfg.num_pair_shards,  # which shard is held out, and the share of utterances it draws from
        "teacher": str(Path(cfg.teacher).resolve()),
        "corpus": str(Path(cfg.corpus).resolve()),
        "split": cfg.split,
        "seed": cfg.seed,
        "utterances_per_shard": cfg.utterances_per_shard,
        "prompt_prob": cfg.prompt_prob,
        **{f"teacher_{k}": v for k, v in settings.items()},
    }
    meta_path = pairs / PAIRS_META
    if meta_path.is_file():
        kept = json.loads(meta_path.read_text())
        if kept.get("held_out") != HELD_OUT:
            raise ValueError(
                f"{pairs} holds teacher endpoints made before the held-out shard was kept apart: every shard drew "
                "from the whole corpus, so the held-out error was partly measured on trained contexts. Delete it to "
                "make them again, or use another pairs_dir."
            )
        if kept != meta:
            changed = sorted(k for k in meta if kept.get(k) != meta[k])
            raise ValueError(
                f"{pairs} holds teacher endpoints made with other settings ({changed}); use another pairs_dir or "
                "delete it."
            )
    paths = [pairs / f"shard-{i:04d}.pt" for i in range(cfg.num_pair_shards)]
    held_out = cfg.num_pair_shards - 1
    missing = sorted((i for i, path in enumerate(paths) if not path.is_file()), key=lambda i: i != held_out)
    if missing:
        utterances, pad_id, space_ids = corpus_once(pipe, cfg, cache)
        log(cache["split"]["description"])
    if not meta_path.is_file():  # only once the corpus has loaded: a wrong one must not claim the folder
        pairs.mkdir(parents=True, exist_ok=True)
        meta_path.write_text(json.dumps(meta, indent=1))
    if missing:
        for i in missing:
            made = sum(path.is_file() for path in paths)
            if deadline is not None and time.time() > deadline and made >= 2 and paths[held_out].is_file():
                log(
                    f"teacher endpoints used their share of the time budget: training on {made - 1} of "
                    f"{cfg.num_pair_shards - 1} training shards ({paths[held_out].name} held out)"
                )
                break
            start = time.time()
            pool = shard_pool(cache["split"], i, cfg)
            shard = make_shard(pipe, utterances, i, cfg, settings, pad_id, space_ids, pool)
            atomic_save(shard, paths[i])
            role = " (held out)" if i == held_out else ""
            log(f"pairs shard {i}{role}: {shard['target'].shape[0]} endpoints in {time.time() - start:.1f} s")
    return [path for path in paths if path.is_file()]


CORPUS_COLUMNS = ("features", "text", "speaker_id")


def corpus_once(pipe, cfg: DistillConfig, cache: dict):
    """`corpus_utterances`, loaded at most once per `cache` (pair shards and on-policy rounds share it); the cache's
    "split" is then its `held_out_split` (a corpus too small to hold any utterance out is refused here)."""
    if "corpus" not in cache:
        loaded = corpus_utterances(pipe, cfg)
        cache["split"] = held_out_split(loaded[0], cfg)
        cache["corpus"] = loaded
    return cache["corpus"]


def corpus_utterances(pipe, cfg: DistillConfig):
    """The corpus split's utterances (token ids, normalised features, speaker), the pad id and the space's ids.
    ValueError (FileNotFoundError for a missing folder) names what does not fit: no corpus folder, no such split, an
    empty split, a missing column, features of another size than the teacher's, or utterances shorter than a patch."""
    from datasets import DatasetDict, load_from_disk

    corpus = Path(cfg.corpus)
    build = (
        "give a corpus folder that examples/build_corpus.py --features wrote (docs/training.md) with corpus: or "
        "--corpus"
    )
    if not corpus.exists():
        raise FileNotFoundError(f"corpus {corpus} does not exist: {build}.")
    if not corpus.is_dir():
        raise ValueError(f"corpus {corpus} is a file, not a corpus folder: {build}.")
    single = f"corpus {corpus} is a single Dataset, not a corpus of splits (a DatasetDict with a {cfg.split!r} split)"
    if not (corpus / "dataset_dict.json").is_file():
        if (corpus / "dataset_info.json").is_file():
            raise ValueError(f"{single}: {build}.")
        raise ValueError(f"corpus {corpus} is not a corpus folder (no dataset_dict.json): {build}.")
    try:
        data = load_from_disk(str(corpus))
    except (IndexError, KeyError, ValueError, OSError) as error:  # a split saved without rows has no data file
        raise ValueError(
            f"corpus {corpus} cannot be loaded ({type(error).__name__}: {error}): a split without utterances or a "
            f"damaged folder; {build}."
        ) from None
    if not isinstance(data, DatasetDict):
        raise ValueError(f"{single}: {build}.")
    if cfg.split not in data:
        raise ValueError(f"corpus {corpus} has no split {cfg.split!r} (its splits: {sorted(data)}); set split: to one.")
    split = data[cfg.split]
    if len(split) == 0:
        raise ValueError(f"corpus {corpus}: its {cfg.split!r} split is empty; {build}.")
    missing = [name for name in CORPUS_COLUMNS if name not in split.column_names]
    if missing:
        raise ValueError(
            f"corpus {corpus}: its {cfg.split!r} split has no {', '.join(missing)} column (its columns: "
            f"{split.column_names}); distillation reads {', '.join(CORPUS_COLUMNS)}: {build}."
        )
    model, processor = pipe.model, pipe.processor
    if (corpus / "feature_extractor").is_dir():  # written by build_corpus.py --features with the features
        from modeling_ditar import DiTARFeatureExtractor
        from modeling_ditar.training_data import check_corpus_features

        check_corpus_features(
            DiTARFeatureExtractor.get_feature_extractor_dict(str(corpus / "feature_extractor"))[0],
            processor.feature_extractor,
            str(corpus),
            f"the teacher {cfg.teacher}",
            "Rebuild the corpus with the teacher's feature settings, or distil another teacher.",
        )
    try:
        arrays = train_lib.feature_arrays(split)
    except ValueError as error:  # missing values, frames of mixed sizes
        raise ValueError(f"corpus {corpus}: {error}") from None
    dim, patch_size = model.config.feature_dim, model.config.patch_size
    sizes = sorted({array.shape[1] for array in arrays if array.shape[0]})
    if sizes and sizes != [dim]:
        raise ValueError(
            f"corpus {corpus}: its features have {sizes[0] if len(sizes) == 1 else sizes} values per frame, the "
            f"teacher {cfg.teacher} reads {dim}: give the corpus built with the teacher's feature extractor, or "
            "distil another teacher."
        )
    short = [index for index, array in enumerate(arrays) if array.shape[0] < patch_size]
    if short:
        empty = sum(1 for index in short if arrays[index].shape[0] == 0)
        raise ValueError(
            f"corpus {corpus}: {len(short)} of the {len(arrays)} utterances of its {cfg.split!r} split have fewer "
            f"than patch_size={patch_size} feature frames ({f'{empty} have none; ' if empty else ''}rows "
            f"{short[:5]}{' ...' if len(short) > 5 else ''}), and the teacher predicts whole patches: rebuild the "
            "corpus without them (examples/build_corpus.py --min-sec) or drop those rows."
        )
    utterances = train_lib.load_utterances(split, processor, model)
    pad_id = processor.tokenizer.pad_token_id or 0
    return utterances, pad_id, processor.encode_text(" ", allow_empty=True)


# ----------------------------------------------------------------------------------------------------------------------
# on-policy contexts


@contextlib.contextmanager
def recording_patch_solves(generator: torch.Generator):
    """Records every patch that generation solves while the block runs: the solved rows' context (cond, history,
    history_mask), the Gaussian draw eps and the patch. The draw is taken here from `generator` and handed to the
    sampler as its `noise`, so a record holds exactly what was solved; the sampler itself is unchanged."""
    records: list[dict[str, torch.Tensor]] = []
    original = PatchSampler.sample

    def sample(self, velocity_fn, shape, num_inference_steps, temperature, *args, **kwargs):
        rows = shape[0]
        noise = torch.randn(shape, generator=generator).to(kwargs.get("device") or "cpu")
        kwargs["noise"] = noise
        patch = original(self, velocity_fn, shape, num_inference_steps, temperature, *args, **kwargs)
        history = velocity_fn.history
        cond = velocity_fn.cond[:rows]  # with packed guidance the first half is the conditional branch
        records.append(
            {
                "cond": cond.float().cpu(),
                "history": (
                    history[:rows].float().cpu() if history is not None else cond.new_zeros(rows, 0, shape[-1]).cpu()
                ),
                "history_mask": (
                    velocity_fn.history_mask[:rows].cpu()
                    if history is not None
                    else torch.zeros(rows, 0, dtype=torch.bool)
                ),
                "noise": noise.float().cpu(),
                "patch": patch.float().cpu(),
            }
        )
        return patch

    PatchSampler.sample = sample
    try:
        yield records
    finally:
        PatchSampler.sample = original


@torch.no_grad()
def make_on_policy_round(
    pipe,
    student_model,
    utterances,
    round_index: int,
    cfg: DistillConfig,
    settings: dict,
    space_ids,
    pool: list[int],
) -> dict:
    """One DAgger round: `student_model` (the teacher's model holding the current student LocDiT) generates
    free-running, one candidate at its K steps (unguided, or at `student_guidance_scale`), for
    `on_policy_utterances` texts of the corpus utterances in `pool` (the training side of `held_out_split`)
    (with probability `prompt_prob` behind a prompt utterance of the same speaker, from `pool` too);
    the teacher labels every solved patch's context from the same draw. Deterministic in (seed, round, student
    weights). Returns the pairs and the student's own patches."""
    device = torch.device(cfg.device)
    seed = cfg.seed * 1_000_003 + 7_654_321 * (round_index + 1)
    rng, by_speaker = random.Random(seed), speakers_index(utterances, pool)
    with recording_patch_solves(torch.Generator().manual_seed(seed)) as records:
        for _ in range(cfg.on_policy_utterances):
            index = pool[rng.randrange(len(pool))]
            partner = prompt_partner(index, utterances, by_speaker, rng, cfg.prompt_prob)
            target = utterances[index]
            inputs: dict = {}
            if partner >= 0:
                prompt = utterances[partner]
                ids = prompt.token_ids + list(space_ids) + target.token_ids
                inputs["prompt_features"] = prompt.features.float()[None].to(device)
                inputs["speech_position_rate"] = len(prompt.token_ids) / prompt.features.shape[0]
            else:
                ids = target.token_ids
            student_model.generate(
                input_ids=torch.tensor([ids], device=device),
                num_inference_steps=cfg.student_steps,
                guidance_scale=cfg.student_guidance,
                temperature=settings["temperature"],
                num_candidates=1,
                **inputs,
            )
    pairs = {key: torch.cat([r[key] for r in records]) for key in records[0]}
    student_patches = pairs.pop("patch")
    on_device = {key: value.to(device) for key, value in pairs.items()}
    pairs["target"] = teacher_endpoints(pipe.model.locdit, on_device, on_device["noise"], cfg, settings)
    # the student's error on its own contexts before it trains on them: the exposure gap this round closes
    return {"pairs": pairs, "student_mse": F.mse_loss(student_patches, pairs["target"]).item()}


def load_pairs(paths: list[Path]) -> dict[str, torch.Tensor]:
    shards = [torch.load(path, weights_only=True) for path in paths]
    return {key: torch.cat([shard[key] for shard in shards]) for key in shards[0]}


# ----------------------------------------------------------------------------------------------------------------------
# student


def student_loss(
    student, pairs: dict, rows: torch.Tensor, steps: int, temperature: float, device, guidance_scale: float = 1.0
) -> torch.Tensor:
    """MSE between the student's K-step patch (at `guidance_scale`; 1: unguided) and the teacher's endpoint for the
    same context and noise."""
    batch = {key: value[rows].to(device) for key, value in pairs.items()}
    patch = solve(student, batch, batch["noise"], steps, guidance_scale, temperature)
    return F.mse_loss(patch, batch["target"])


@torch.no_grad()
def validation_loss(student, pairs: dict, steps: int, temperature: float, device, guidance_scale: float = 1.0):
    """Mean patch MSE over held-out pairs (with `guidance_scale` != 1: an undistilled LocDiT at K guided steps)."""
    total, items = 0.0, pairs["target"].shape[0]
    for start in range(0, items, 1024):
        batch = {key: value[start : start + 1024].to(device) for key, value in pairs.items()}
        patch = solve(student, batch, batch["noise"], steps, guidance_scale, temperature)
        total += F.mse_loss(patch, batch["target"], reduction="sum").item()
    return total / pairs["target"].numel()


def decay_progress(step: int, cfg: DistillConfig, max_steps: int, decay_from: tuple[int, float] | None = None) -> float:
    """How far the cosine decay has gone at `step`: 0 at the end of the warm-up, 1 at `max_steps` (the run's end).
    Once the end has moved (`move_end`), `decay_from` = (step, progress) there: from it the progress goes on linearly
    to 1 at the new end, so the lr keeps the cosine's shape, only faster or slower, without a jump."""
    start, done = (cfg.warmup_steps, 0.0) if decay_from is None or step < decay_from[0] else decay_from
    return min(1.0, max(0.0, done + (1.0 - done) * (step - start) / max(1, max_steps - start)))


def lr_at(
    step: int, cfg: DistillConfig, max_steps: int | None = None, decay_from: tuple[int, float] | None = None
) -> float:
    """Linear warm-up, then cosine decay to 10% at the run's end (`max_steps`; unset: the config's)."""
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    progress = decay_progress(step, cfg, cfg.max_steps if max_steps is None else max_steps, decay_from)
    return cfg.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def move_end(state: dict, cfg: DistillConfig, step: int, max_steps: int) -> None:
    """Make `max_steps` the end of the run whose schedule `state` holds (its "max_steps" and "decay_from"), at `step`,
    without a jump in the lr: a decay under way goes on from its present progress (a finished run extended stays at
    10%); during the warm-up only the end moves."""
    if step > cfg.warmup_steps:
        state["decay_from"] = (step, decay_progress(step, cfg, state["max_steps"], state["decay_from"]))
    state["max_steps"] = max_steps


def on_policy_steps(cfg: DistillConfig, max_steps: int) -> list[int]:
    """The steps of the on-policy rounds in a run that ends at `max_steps`: the config's (`on_policy_round_steps`),
    moved in proportion when a time budget has moved the end, so that the rounds keep their place in the schedule."""
    return [step * max_steps // cfg.max_steps for step in cfg.on_policy_round_steps()]


class StepBudget:
    """`--time-budget-min`: sizes the run so that its lr decay ends on time, as examples/train.py's TimeBudget does.
    The step rate is measured after SKIPPED_STEPS steps and the run's end set from it (`move_end`: no lr jump), then
    refreshed every MEASURED_STEPS steps: evaluations, checkpoints and on-policy rounds make the rate uneven, and the
    decay is stretched or shortened from where it is. The time on-policy rounds took is set apart, and every round
    still to come is counted at their mean. The end never moves past max_steps: the budget only shortens a run. The
    minutes count from `started` (the process start), and at the deadline the run stops wherever it is."""

    SKIPPED_STEPS = 20  # the first steps are not timed (allocator and kernel warm-up)
    MEASURED_STEPS = 50
    RESERVE = 0.03  # of the budget, kept for the final validation and the export after the last step

    def __init__(self, minutes: float, started: float, start_step: int):
        self.deadline = started + 60 * minutes
        self.reserve = self.RESERVE * 60 * minutes  # not a share of the time left, which refreshes would wear away
        self.start_step = start_step
        self.mark: tuple[int, float] | None = None
        self.round_seconds: list[float] = []  # on-policy rounds made by this process
        self.rounds_since_mark = 0.0
        self.steps_per_second: float | None = None
        self.logged_end: int | None = None

    def note_round(self, seconds: float) -> None:
        self.round_seconds.append(seconds)
        if self.mark is not None:
            self.rounds_since_mark += seconds

    def passed(self) -> bool:
        return time.time() >= self.deadline

    def new_end(self, step: int, pending_rounds: int) -> int | None:
        """The step at which the run ends on time, measured at `step` with `pending_rounds` on-policy rounds still to
        come; None when no estimate is due."""
        now = time.time()
        if step == self.start_step + self.SKIPPED_STEPS:
            self.mark, self.rounds_since_mark = (step, now), 0.0
            return None
        if self.mark is None or step == self.mark[0] or (step - self.mark[0]) % self.MEASURED_STEPS:
            return None
        seconds_per_step = max(1e-9, (now - self.mark[1] - self.rounds_since_mark) / (step - self.mark[0]))
        self.steps_per_second = 1 / seconds_per_step
        per_round = sum(self.round_seconds) / len(self.round_seconds) if self.round_seconds else 0.0
        left = self.deadline - now - self.reserve - pending_rounds * per_round
        return step + max(1, int(left / seconds_per_step))

    def update(self, state: dict, cfg: DistillConfig, pending_rounds: int, log) -> None:
        """At the run's present step (`state`), move its end to the estimate when one is due (`move_end`, at most
        max_steps) and say so when it moved by more than 2% since last said."""
        end = self.new_end(state["step"], pending_rounds)
        if end is None:
            return
        if min(end, cfg.max_steps) == state["max_steps"]:
            if self.logged_end is None:
                self.logged_end = state["max_steps"]
                log(f"time budget: {self.steps_per_second:.2f} steps/s -> the run's {self.logged_end} steps fit in it")
            return
        move_end(state, cfg, state["step"], min(end, cfg.max_steps))
        end = state["max_steps"]
        if self.logged_end is None or abs(end - self.logged_end) > 0.02 * self.logged_end:
            self.logged_end = end
            rounds_at = on_policy_steps(cfg, end)
            log(
                f"time budget: {self.steps_per_second:.2f} steps/s -> the run ends at step {end}, where the lr decay "
                "ends" + (f"; on-policy rounds at steps {rounds_at}" if rounds_at else "")
            )


# the settings a checkpoint is resumed with, besides those of the run key: they only shape the rest of the run
RESUMABLE_CHANGES = "max_steps, time_budget_min, eval_every, save_every, threads and device"


def run_key(cfg: DistillConfig, settings: dict) -> dict:
    """What a checkpoint must share with the run that resumes it: the student, its teacher endpoints (pairs folder,
    sampler, shards: the last one is held out) and the training settings. max_steps and the time budget may change."""
    key = {
        "held_out": HELD_OUT,
        "student_steps": cfg.student_steps,
        "pairs": str(cfg.pairs_path.resolve()),
        **settings,
        "num_pair_shards": cfg.num_pair_shards,
        "learning_rate": cfg.learning_rate,
        "batch_size": cfg.batch_size,
        "weight_decay": cfg.weight_decay,
        "grad_clip": cfg.grad_clip,
        "warmup_steps": cfg.warmup_steps,
        "mixed_precision": cfg.mixed_precision,
    }
    if cfg.student_guidance_scale is not None:
        key["student_guidance_scale"] = cfg.student_guidance
    round_steps = cfg.on_policy_round_steps()
    if round_steps:
        key.update(
            on_policy_steps=round_steps,
            on_policy_utterances=cfg.on_policy_utterances,
            on_policy_fraction=cfg.on_policy_fraction,
        )
    return key


def read_checkpoint(path: Path, key: dict) -> dict | None:
    """The checkpoint a rerun resumes (None: none yet). ValueError when it cannot be read or belongs to a run with
    other settings (named, with both values)."""
    if not path.exists():
        return None
    start_over = "delete it to start the run over, or use another output_dir"
    try:
        state = torch.load(path, weights_only=False)
    except Exception as error:  # cut short (EOF, zip) or not a torch file (pickle): any of them
        raise ValueError(
            f"{path} cannot be read ({type(error).__name__}: {error}): it was cut short or is no checkpoint of this "
            f"script; {start_over}."
        ) from None
    if not (isinstance(state, dict) and {"run_key", "student", "optimizer", "step", "log"} <= set(state)):
        raise ValueError(f"{path} is no checkpoint of this script (it has no run key); {start_over}.")
    kept = state["run_key"]
    if kept.get("held_out") != key["held_out"]:
        raise ValueError(
            f"{path} belongs to a run from before the held-out shard was kept apart: its teacher endpoints drew every "
            "shard from the whole corpus, so its held-out error was partly measured on trained contexts, and the "
            "shards made now would differ. It cannot be resumed: start the run over in another output_dir and "
            "pairs_dir (or delete both)."
        )
    if kept != key:
        changed = [
            f"{name} {kept.get(name, 'unset')!r} -> {key.get(name, 'unset')!r}"
            for name in sorted(set(kept) | set(key))
            if kept.get(name) != key.get(name)
        ]
        raise ValueError(
            f"{path} belongs to another run: {', '.join(changed)} (checkpoint -> this config). To resume it, rerun "
            f"with its settings (only {RESUMABLE_CHANGES} may change); else use another output_dir."
        )
    return state


def continue_schedule(state: dict, cfg: DistillConfig, budgeted: bool, log) -> None:
    """A resumed run's end and lr schedule: those its checkpoint saved (a --time-budget-min run ends where its budget
    set), unless the end changes. A time budget now goes on from the saved lr toward max_steps until it has measured
    the step rate (`move_end`: no jump); another max_steps than the run was started with redoes the decay over it, as
    before budgets moved ends. (Checkpoints from before the schedule was saved are refused by their run key.)"""
    step, saved = state["step"], state["max_steps"]
    if budgeted and cfg.max_steps != saved:
        move_end(state, cfg, step, cfg.max_steps)
        log(
            f"--time-budget-min: the run goes on from step {step} (it was to end at {saved}) at the learning rate "
            f"it had, {lr_at(step, cfg, state['max_steps'], state['decay_from']):.3g}"
        )
    elif not budgeted and cfg.max_steps != state["max_steps_given"]:
        state.update(max_steps=cfg.max_steps, decay_from=None)
        log(f"max_steps {state['max_steps_given']} -> {cfg.max_steps}: the lr decays over the new max_steps")
    state["max_steps_given"] = cfg.max_steps


def resumed_shards(state: dict | None, paths: list[Path], log) -> list[Path]:
    """The pair shards a run trains and validates on: those it started with when it resumes. A first run cut short by
    its time budget makes fewer shards than `num_pair_shards` (the held-out one first); a rerun makes the rest, and
    would otherwise train on other contexts than its checkpoint's steps drew their batches from."""
    if state is None or "shards" not in state:  # a new run (or a checkpoint that did not record them)
        return paths
    by_name = {path.name: path for path in paths}
    gone = [name for name in state["shards"] if name not in by_name]
    if gone:
        raise ValueError(
            f"the pair shards {gone} this run trained on are gone from {paths[0].parent if paths else 'the pairs'}: "
            "delete the checkpoint to start the run over, or restore them."
        )
    kept = [by_name[name] for name in state["shards"]]
    if len(kept) < len(paths):
        log(
            f"resuming on the run's {len(kept)} pair shards ({kept[-1].name} held out); the {len(paths) - len(kept)} "
            "made since stay unused"
        )
    return kept


def train_student(
    pipe,
    cfg: DistillConfig,
    settings: dict,
    paths: list[Path],
    log,
    started: float,
    state: dict | None = None,
    corpus: dict | None = None,
) -> dict:
    """Train (or resume from `state`, a checkpoint `read_checkpoint` accepted) the student; returns the final
    checkpoint dict. `corpus`: a `corpus_once` cache (on-policy rounds read the corpus's texts)."""
    corpus = {} if corpus is None else corpus
    device = torch.device(cfg.device)
    train_pairs, valid_pairs = load_pairs(paths[:-1]), load_pairs(paths[-1:])
    items = train_pairs["target"].shape[0]
    temperature = settings["temperature"]
    student = copy.deepcopy(pipe.model.locdit).float().to(device).requires_grad_(True)  # the teacher is frozen
    optimizer = torch.optim.AdamW(student.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    out = Path(cfg.output_dir)
    ckpt_path = out / CHECKPOINT
    guidance = cfg.student_guidance
    if state is not None:
        student.load_state_dict(state["student"])
        optimizer.load_state_dict(state["optimizer"])
        log(f"resumed at step {state['step']}")
        continue_schedule(state, cfg, cfg.time_budget_min is not None, log)
    else:
        # the two references: the teacher's LocDiT at K guided steps (no distillation) and the student before training
        undistilled = validation_loss(
            pipe.model.locdit, valid_pairs, cfg.student_steps, temperature, device, settings["guidance_scale"]
        )
        initial = validation_loss(student, valid_pairs, cfg.student_steps, temperature, device, guidance)
        log(f"held-out MSE before training: undistilled guided {undistilled:.4f}, student init {initial:.4f}")
        baseline = {"undistilled_guided": undistilled, "initial": initial}
        state = {
            "step": 0,
            "log": [],
            "run_key": run_key(cfg, settings),
            "baseline": baseline,
            "shards": [path.name for path in paths],  # the last one held out
            # the lr schedule: the run's end (a time budget moves it), the config's max_steps it was given, and where
            # the decay went on from when the end moved
            "max_steps": cfg.max_steps,
            "max_steps_given": cfg.max_steps,
            "decay_from": None,
        }
    budget = None if cfg.time_budget_min is None else StepBudget(cfg.time_budget_min, started, state["step"])

    # on-policy rounds: the pairs of every round reached so far (kept on disk, so a resumed run reloads them)
    rounds: list[dict[str, torch.Tensor]] = []
    on_policy: dict[str, torch.Tensor] | None = None
    student_model = None

    def round_pairs(round_index: int) -> dict[str, torch.Tensor]:
        nonlocal student_model
        path = out / "on_policy" / f"round-{round_index:02d}.pt"
        if path.is_file():
            return torch.load(path, weights_only=True)
        begin = time.time()
        if student_model is None:
            student_model = copy.deepcopy(pipe.model)
        student_model.locdit.load_state_dict({k: v.to(student_model.dtype) for k, v in student.state_dict().items()})
        utterances, _, space_ids = corpus_once(pipe, cfg, corpus)
        made = make_on_policy_round(
            pipe, student_model, utterances, round_index, cfg, settings, space_ids, corpus["split"]["train"]
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(made["pairs"], path)
        log(
            f"on-policy round {round_index} at step {state['step']}: {made['pairs']['target'].shape[0]} contexts from "
            f"{cfg.on_policy_utterances} free-running generations in {time.time() - begin:.1f} s; the student's MSE "
            f"on them before training: {made['student_mse']:.4f}"
        )
        state.setdefault("on_policy_mse", []).append(
            {"round": round_index, "step": state["step"], "mse": made["student_mse"]}
        )
        if budget is not None:
            budget.note_round(time.time() - begin)
        return made["pairs"]

    made_before = len(state.get("on_policy_mse", []))  # rounds a resumed run made before its checkpoint
    student.train()
    total_rounds = len(cfg.on_policy_round_steps())
    while state["step"] < state["max_steps"]:
        step = state["step"]
        if budget is not None:
            if budget.passed():
                log(f"time budget of {cfg.time_budget_min} min reached at step {step}")
                break
            budget.update(state, cfg, total_rounds - max(len(rounds), made_before), log)
        reached = max(
            made_before, sum(1 for round_step in on_policy_steps(cfg, state["max_steps"]) if round_step <= step)
        )
        if reached > len(rounds):
            student.eval()
            while len(rounds) < reached:
                rounds.append(round_pairs(len(rounds)))
            student.train()
            on_policy = {key: torch.cat([r[key] for r in rounds]) for key in rounds[0]}
        # the batch is a pure function of (seed, step): a resumed run sees the batches it would have seen
        generator = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
        batch_pairs = train_pairs
        if on_policy is None:
            rows = torch.randint(0, items, (cfg.batch_size,), generator=generator)
        else:
            on_rows = round(cfg.on_policy_fraction * cfg.batch_size)
            tf_rows = torch.randint(0, items, (cfg.batch_size - on_rows,), generator=generator)
            op_rows = torch.randint(0, on_policy["target"].shape[0], (on_rows,), generator=generator)
            batch_pairs = {key: torch.cat([train_pairs[key][tf_rows], on_policy[key][op_rows]]) for key in train_pairs}
            rows = torch.arange(cfg.batch_size)
        lr = lr_at(step, cfg, state["max_steps"], state["decay_from"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=cfg.mixed_precision == "bf16"):
            loss = student_loss(student, batch_pairs, rows, cfg.student_steps, temperature, device, guidance)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"distillation loss is {loss.item()} at step {step}; lower learning_rate.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        optimizer.step()
        state["step"] = step + 1
        entry = {"step": step + 1, "loss": loss.item(), "lr": lr, "seconds": round(time.time() - started, 1)}
        if state["step"] % cfg.eval_every == 0 or state["step"] == state["max_steps"]:
            student.eval()
            entry["valid_mse"] = validation_loss(student, valid_pairs, cfg.student_steps, temperature, device, guidance)
            student.train()
            log(json.dumps(entry))
        state["log"].append(entry)
        if state["step"] % cfg.save_every == 0:
            save_state(student, optimizer, state, ckpt_path)
    student.eval()
    state["final_valid_mse"] = validation_loss(student, valid_pairs, cfg.student_steps, temperature, device, guidance)
    save_state(student, optimizer, state, ckpt_path)
    state["student"] = student.state_dict()
    return state


def save_state(student, optimizer, state: dict, path: Path):
    atomic_save({**state, "student": student.state_dict(), "optimizer": optimizer.state_dict()}, path)


def leave_out_candidate_locdit(model, teacher: str, target: Path, log=print) -> None:
    """The student samples every patch, the competing candidates included: a candidate LocDiT the teacher carries was
    distilled from the teacher's LocDiT and would sample the first patches of every text in the student's place (at
    its own steps, and unguided under a folded student's guidance 1). It is dropped, and with it
    `candidate_num_inference_steps`, so that the student samples the candidates at its own K steps."""
    had = model.candidate_locdit is not None
    model.remove_candidate_locdit()
    model.generation_config.candidate_num_inference_steps = None  # also a stale one in an older student's config
    if not had:
        return
    generation = model.generation_config
    said = (
        f"the teacher's candidate LocDiT is left out of {target}: the student samples the candidates too, at its "
        f"{generation.num_inference_steps} step(s)."
    )
    add = "python conversion/add_candidate_locdit.py"
    if generation.distilled_guidance_scale is not None:  # candidate LocDiTs run at the call's guidance scale
        said += f" ({add} takes and gives candidate LocDiTs that keep LM guidance, which this folded student does not.)"
    else:
        if generation.num_inference_steps > 1:
            said += f" `{add} {target} STUDENT OUT` gives it one (a student of the same teacher with fewer steps);"
        said += f" `{add} {teacher} {target} OUT --replace` makes this student the teacher's candidate LocDiT."
    log(said)


def export_pipeline(pipe, student_state: dict, cfg: DistillConfig, settings: dict, target: Path, log=print):
    """The teacher's pipeline with the student LocDiT and a K-step generation config: guidance folded (guidance 1 and
    `distilled_guidance_scale`, which makes any other guidance an error), or the student's own guidance scale. The
    teacher's candidate LocDiT is left out (`leave_out_candidate_locdit`)."""
    model = pipe.model
    model.locdit.load_state_dict({k: v.to(model.dtype) for k, v in student_state.items()})
    generation = model.generation_config
    generation.num_inference_steps = cfg.student_steps
    if cfg.student_guidance_scale is None:
        generation.guidance_scale = 1.0
        generation.distilled_guidance_scale = float(settings["guidance_scale"])
    else:
        generation.guidance_scale = cfg.student_guidance
        generation.distilled_guidance_scale = None
    generation.temperature = settings["temperature"]
    leave_out_candidate_locdit(model, cfg.teacher, target, log)
    pipe.save_pretrained(target)


STUDENT_WEIGHTS = "locdit.safetensors"
GENERATION_CONFIG = "generation_config.json"


def save_student(model, target: Path):
    """What the student adds to its teacher (`model`, after `export_pipeline`), small enough to send back from a
    borrowed machine: LocDiT's weights in float16 (about 5 MB for the shipped default, against 40 MB for the whole
    float32 pipeline) and the K-step generation config. `assemble` rebuilds the pipeline from these and the teacher."""
    from safetensors.torch import save_file

    target.mkdir(parents=True, exist_ok=True)
    state = model.locdit.state_dict()
    save_file(
        {key: value.detach().to("cpu", torch.float16) for key, value in state.items()}, str(target / STUDENT_WEIGHTS)
    )
    model.generation_config.save_pretrained(target)


def assemble(teacher: str, student_dir: Path, target: Path, log=print) -> Path:
    """The teacher's pipeline with a saved student's LocDiT and generation config (see `save_student`), without the
    teacher's candidate LocDiT (`leave_out_candidate_locdit`; a student folder written before it was left out still
    names the teacher's candidate steps, which are dropped too)."""
    from safetensors.torch import load_file

    student_dir, target = Path(student_dir), Path(target)
    if target.exists():
        raise FileExistsError(
            f"{target} already exists and --assemble does not overwrite it: give another --output-dir, or delete "
            f"{target} first."
        )
    if not student_dir.is_dir():
        raise FileNotFoundError(
            f"--assemble {student_dir}: no such folder; give the student folder a distillation run writes "
            "(OUTPUT_DIR/student)."
        )
    for name in (STUDENT_WEIGHTS, GENERATION_CONFIG):
        if not (student_dir / name).is_file():
            raise FileNotFoundError(
                f"{student_dir} has no {name}: give the student folder a distillation run writes (OUTPUT_DIR/student)."
            )
    pipe = load_teacher(teacher)
    model = pipe.model
    weights = load_file(str(student_dir / STUDENT_WEIGHTS))
    try:
        model.locdit.load_state_dict({key: value.to(model.dtype) for key, value in weights.items()})
    except RuntimeError as error:  # missing, unexpected or differently shaped tensors
        raise ValueError(
            f"The student in {student_dir} does not fit the LocDiT of the teacher {teacher}: give the teacher it was "
            f"distilled from (--teacher). {error}"
        ) from error
    model.generation_config = type(model.generation_config).from_pretrained(str(student_dir))
    leave_out_candidate_locdit(model, teacher, target, log)
    pipe.save_pretrained(target)
    return target


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="examples/configs/distill-*.yaml")
    parser.add_argument("--output-dir", default=None, help="overrides the config's output_dir")
    parser.add_argument("--teacher", default=None, help="overrides the config's teacher pipeline folder")
    parser.add_argument("--corpus", default=None, help="overrides the config's corpus (build_corpus.py --features)")
    parser.add_argument("--pairs-dir", default=None, help="overrides the config's pairs_dir")
    parser.add_argument("--student-steps", type=int, default=None, help="overrides the config's student_steps K")
    parser.add_argument(
        "--student-guidance-scale",
        type=float,
        default=None,
        help="overrides the config's student_guidance_scale (the student keeps LM guidance at this scale)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="overrides the config's max_steps")
    parser.add_argument(
        "--time-budget-min",
        type=float,
        default=None,
        help="fit training into these minutes (the lr decay ends on time)",
    )
    parser.add_argument("--device", default=None, help="overrides the config's device (cpu, cuda)")
    parser.add_argument("--pairs-only", action="store_true", help="compute the teacher endpoints, then stop")
    parser.add_argument(
        "--assemble",
        metavar="STUDENT_DIR",
        default=None,
        help="only build OUTPUT_DIR/pipeline from the teacher and STUDENT_DIR (a run's OUTPUT_DIR/student, e.g. one "
        "brought back from a GPU machine), then stop",
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def refusals():
    """A problem with the inputs (config, folders, teacher, corpus, checkpoint) ends the run with its message as one
    `error: ...` line, not a traceback."""
    try:
        yield
    except (OSError, ValueError) as error:
        raise SystemExit(f"error: {error}") from None


def check_device(name: str):
    """Refuse a device this machine does not have (torch would fail later, e.g. with an AssertionError for cuda)."""
    device = torch.device(name)
    if device.type == "cpu":
        return
    if device.type == "mps":
        available, count = torch.backends.mps.is_available(), 1
    else:
        backend = getattr(torch, device.type, None)  # torch.cuda, torch.xpu, ...
        available = backend is not None and hasattr(backend, "is_available") and backend.is_available()
        count = backend.device_count() if available and hasattr(backend, "device_count") else 1
    if not available:
        raise ValueError(
            f"device {name!r}: this machine has no {device.type} device; use device: cpu (or --device cpu)."
        )
    if device.index is not None and device.index >= count:
        raise ValueError(f"device {name!r}: this machine has {count} {device.type} device(s), numbered from 0.")


# options that only shape a training run: --assemble refuses them rather than ignore them
NOT_FOR_ASSEMBLE = {
    "pairs_only": "--pairs-only",
    "pairs_dir": "--pairs-dir",
    "student_steps": "--student-steps",
    "student_guidance_scale": "--student-guidance-scale",
    "max_steps": "--max-steps",
    "time_budget_min": "--time-budget-min",
}


def main(argv=None) -> Path | None:
    args = parse_args(argv)
    started = time.time()
    if args.assemble:
        ignored = [flag for name, flag in NOT_FOR_ASSEMBLE.items() if getattr(args, name) not in (None, False)]
        if ignored:
            raise SystemExit(
                f"error: --assemble only builds a pipeline from a trained student (its steps and guidance are in its "
                f"generation config), so {', '.join(ignored)} would do nothing; leave them out."
            )
    with refusals():  # a missing, unreadable or wrong config: its message, not a traceback
        cfg = DistillConfig.from_yaml(
            args.config,
            need_corpus=not args.assemble,  # assembling reads no corpus
            output_dir=args.output_dir,
            teacher=args.teacher,
            corpus=args.corpus,
            pairs_dir=args.pairs_dir,
            student_steps=args.student_steps,
            student_guidance_scale=args.student_guidance_scale,
            max_steps=args.max_steps,
            time_budget_min=args.time_budget_min,
            device=args.device,
        )
        out = Path(cfg.output_dir)
        folders = {"output_dir": out} if args.assemble else {"output_dir": out, "pairs_dir": cfg.pairs_path}
        for name, folder in folders.items():
            if folder.exists() and not folder.is_dir():
                raise ValueError(f"{name} {folder} is a file: give a folder (`{name}:` or --{name.replace('_', '-')}).")
        if not args.assemble:
            check_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if args.assemble:
        with refusals():
            target = out / "pipeline"
            out.mkdir(parents=True, exist_ok=True)
            assemble(cfg.teacher, Path(args.assemble), target)
        print(f"wrote {target}: the teacher {cfg.teacher} with the student of {args.assemble}")
        return target
    out.mkdir(parents=True, exist_ok=True)
    log_file = (out / "log.txt").open("a")

    def log(message: str):
        line = f"[{time.time() - started:7.1f}s] {message}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    torch.manual_seed(cfg.seed)
    # the teacher computes in float32 (its endpoints and the held-out error do not depend on the CPU); the written
    # pipeline keeps the teacher folder's matmul_dtype setting for its users
    with refusals():
        pipe = load_teacher(cfg.teacher)
        pipe.model.to(cfg.device).eval().requires_grad_(False).set_matmul_dtype(torch.float32)
        settings = teacher_settings(cfg, pipe)
        # a checkpoint of another run is refused before any teacher endpoint is computed
        state = None if args.pairs_only else read_checkpoint(out / CHECKPOINT, run_key(cfg, settings))
    log(f"teacher {cfg.teacher}: {settings}; student K={cfg.student_steps}, guidance {cfg.student_guidance}")
    deadline = None if cfg.time_budget_min is None else started + 60 * cfg.time_budget_min * PAIRS_BUDGET_SHARE
    corpus: dict = {}  # loaded once, by the first that needs it
    with refusals():  # the corpus's problems, and teacher endpoints made with other settings
        paths = ensure_pairs(pipe, cfg, settings, log, deadline, corpus)
        rounds = len(cfg.on_policy_round_steps())
        if not args.pairs_only and any(not (out / "on_policy" / f"round-{r:02d}.pt").is_file() for r in range(rounds)):
            corpus_once(pipe, cfg, corpus)  # on-policy rounds read it mid-run: its problems are found now
    if not (args.pairs_only and (out / CHECKPOINT).exists()):  # a trained run's config describes its checkpoint
        (out / "distill_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    if args.pairs_only:
        return None
    with refusals():
        paths = resumed_shards(state, paths, log)
    state = train_student(pipe, cfg, settings, paths, log, started, state, corpus)
    target = out / "pipeline"
    export_pipeline(pipe, state["student"], cfg, settings, target, log)
    save_student(pipe.model, out / "student")
    summary = {
        "step": state["step"],
        "final_valid_mse": state["final_valid_mse"],
        "baseline_valid_mse": state["baseline"],
        "teacher": settings,
        "student_steps": cfg.student_steps,
        "student_guidance_scale": cfg.student_guidance,
        "pipeline": str(target),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    log(f"wrote {target}: {json.dumps(summary)}")
    return target


if __name__ == "__main__":
    main()

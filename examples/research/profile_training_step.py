#!/usr/bin/env python
"""Where one training step's time goes: batch collation, host-to-device copy, forward, backward, optimizer and EMA,
each timed with a device synchronisation between phases, then the same steps without synchronisation (the rate
train.py sees) and, optionally, torch.profiler's most expensive operators.

    python examples/research/profile_training_step.py --config examples/configs/default-gpu.yaml --steps 20
    python examples/research/profile_training_step.py --config examples/configs/default-gpu.yaml \\
        --max-batch-frames 48000
    python examples/research/profile_training_step.py --config examples/configs/default-gpu.yaml --cudnn-attention on

The timed steps use batches the warm-up has not seen (new shapes, as in training); the profiled steps repeat the first
ones, so per-shape set-up costs (e.g. cuDNN attention plans) show in the timings but not in the profile.
The model, processor, corpus, batching, optimizer, mixed precision and EMA are set up as examples/train.py sets them up
(same config file); nothing is saved. Speed is checked by this script, not by tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/
import train as train_lib  # noqa: E402

PHASES = ("collate", "to device", "forward", "backward", "optimizer", "ema")


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(cfg, num_proc: int):
    from accelerate import Accelerator
    from datasets import load_from_disk
    from diffusers.training_utils import EMAModel

    from modeling_ditar.training_data import PairedLengthBatcher

    accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
    dataset_dir = Path(cfg.dataset)
    data = load_from_disk(str(dataset_dir))
    model, processor = train_lib.load_model_and_processor(cfg, dataset_dir)
    utterances = train_lib.load_utterances(data["train"], processor, model, num_proc)
    batcher = PairedLengthBatcher(
        [u.features.shape[0] for u in utterances],
        [u.speaker for u in utterances],
        cfg.max_batch_frames,
        cfg.max_example_frames,
        cfg.pair_prob,
        cfg.seed,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=cfg.learning_rate, betas=cfg.adam_betas, weight_decay=cfg.weight_decay
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    ema = EMAModel(
        accelerator.unwrap_model(model).parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=0.75, foreach=True
    )
    model.train()
    pad_id = processor.tokenizer.pad_token_id or 0
    space_ids = processor.encode_text(" ", allow_empty=True)
    return accelerator, model, optimizer, ema, utterances, batcher, pad_id, space_ids


def run_steps(setup, cfg, count: int, start: int, timed: bool) -> tuple[dict[str, list[float]], int, float]:
    """`count` steps from batch `start` of epoch 0 (cycled). Returns per-phase seconds (when `timed`), real frames and
    the wall time of the whole loop."""
    from modeling_ditar.training_data import collate_examples

    accelerator, model, optimizer, ema, utterances, batcher, pad_id, space_ids = setup
    device = accelerator.device
    batches = batcher.epoch(0)
    phases: dict[str, list[float]] = defaultdict(list)
    frames = 0
    _sync(device)
    loop_start = time.perf_counter()
    marks: list[float] = []

    def mark():
        if timed:
            _sync(device)
            marks.append(time.perf_counter())

    for i in range(count):
        marks[:] = [time.perf_counter()]

        batch = collate_examples(batches[(start + i) % len(batches)], utterances, pad_id, space_ids)
        frames += int(batch["speech_attention_mask"].sum())
        mark()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        mark()
        output = model(**batch)
        mark()
        accelerator.backward(output.loss)
        mark()
        accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mark()
        ema.step(accelerator.unwrap_model(model).parameters())
        mark()
        if timed:
            for name, a, b in zip(PHASES, marks[:-1], marks[1:], strict=True):
                phases[name].append(b - a)
    _sync(device)
    return phases, frames, time.perf_counter() - loop_start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a train.py run config (YAML)")
    parser.add_argument("--dataset", help="override the config's corpus folder")
    parser.add_argument("--max-batch-frames", type=int, help="override the config's max_batch_frames")
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], help="override the config's")
    parser.add_argument("--cudnn-attention", choices=["on", "off"], help="override the config's cudnn_attention")
    parser.add_argument("--steps", type=int, default=20, help="steps measured (each way)")
    parser.add_argument("--warmup", type=int, default=5, help="steps run first and not measured")
    parser.add_argument("--profile-steps", type=int, default=3, help="steps under torch.profiler (0: none)")
    parser.add_argument("--top", type=int, default=15, help="operators listed from the profile")
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.profile_steps < 0:
        raise SystemExit("--steps must be >= 1, --warmup and --profile-steps >= 0")

    cfg = train_lib.TrainConfig.load(args.config)
    if args.dataset:
        cfg.dataset = args.dataset
    if args.max_batch_frames:
        cfg.max_batch_frames = args.max_batch_frames
    if args.mixed_precision:
        cfg.mixed_precision = args.mixed_precision
    if args.cudnn_attention:
        cfg.cudnn_attention = args.cudnn_attention == "on"
    train_lib.configure_process(cfg)
    setup = build(cfg, args.num_proc)
    device = setup[0].device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(
        f"{args.config}: max_batch_frames {cfg.max_batch_frames}, mixed precision {cfg.mixed_precision}, {name}, "
        f"{sum(p.numel() for p in setup[1].parameters()) / 1e6:.1f}M parameters, cuDNN attention "
        f"{'on' if cfg.cudnn_attention else 'off'}",
        flush=True,
    )

    run_steps(setup, cfg, args.warmup, 0, timed=False)
    phases, frames, _ = run_steps(setup, cfg, args.steps, args.warmup, timed=True)
    total = sum(sum(v) for v in phases.values())
    print(f"\nsynchronised phases over {args.steps} steps ({frames / args.steps:.0f} real frames per step):")
    print("| phase | ms per step | share |\n|---|---|---|")
    for phase in PHASES:
        seconds = sum(phases[phase]) / args.steps
        print(f"| {phase} | {seconds * 1e3:.1f} | {sum(phases[phase]) / total:.0%} |")
    _, frames, wall = run_steps(setup, cfg, args.steps, args.warmup + args.steps, timed=False)
    print(
        f"\nunsynchronised (as train.py runs): {args.steps / wall:.2f} steps/s, {frames / wall:.0f} real frames/s",
        flush=True,
    )
    if device.type == "cuda":
        print(f"peak device memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")

    if args.profile_steps:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            run_steps(setup, cfg, args.profile_steps, 0, timed=False)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"\ntorch.profiler, {args.profile_steps} steps, by {key}:")
        print(prof.key_averages().table(sort_by=key, row_limit=args.top, max_name_column_width=60))


if __name__ == "__main__":
    main()

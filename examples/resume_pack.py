#!/usr/bin/env python
"""Carry a training run across machines in git: pack an Accelerate checkpoint into small safetensors files, unpack it.

    python examples/resume_pack.py pack runs/default/checkpoints/step-3000 resume/default
    python examples/resume_pack.py unpack resume/default runs/default       # then: train.py --config ... --resume
    python examples/resume_pack.py ema-model runs/gpu/checkpoints/step-1000 runs/gpu/step-1000-model --dtype float16

The pack keeps what continuing the run needs and nothing that must be unpickled: fp32 weights, EMA weights (fp16),
Adam moments (bf16), the optimizer/scheduler/EMA scalars and the data position (JSON), and the torch RNG state. Files
are sharded below 20 MB. Reduced precision of the EMA and Adam moments is the only difference from the original
checkpoint (a perturbation far below one optimizer step).

`ema-model` turns a checkpoint's EMA weights into a model folder, the same one train.py writes as `final/model` at the
end of a run: for a run stopped before its end (a borrowed GPU's time ran out), or to evaluate a mid-run checkpoint.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

SHARD_BYTES = 20_000_000


def _save_sharded(tensors: dict[str, torch.Tensor], directory: Path, prefix: str):
    shard, size, index = {}, 0, 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shard and size + nbytes > SHARD_BYTES:
            save_file(shard, str(directory / f"{prefix}-{index:03d}.safetensors"))
            shard, size, index = {}, 0, index + 1
        shard[name] = tensor.contiguous()
        size += nbytes
    if shard:
        save_file(shard, str(directory / f"{prefix}-{index:03d}.safetensors"))


def _load_sharded(directory: Path, prefix: str) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted(directory.glob(f"{prefix}-*.safetensors")):
        tensors.update(load_file(str(path)))
    return tensors


def pack(checkpoint: Path, out: Path):
    weights = load_file(str(checkpoint / "model.safetensors"))
    optimizer = torch.load(checkpoint / "optimizer.bin", map_location="cpu", weights_only=True)
    scheduler = torch.load(checkpoint / "scheduler.bin", map_location="cpu", weights_only=True)
    ema = torch.load(checkpoint / "custom_checkpoint_0.pkl", map_location="cpu", weights_only=True)
    state = torch.load(checkpoint / "custom_checkpoint_1.pkl", map_location="cpu", weights_only=True)
    rng = torch.load(checkpoint / "random_states_0.pkl", map_location="cpu", weights_only=False)

    # the optimizer and the EMA index parameters by position in model.parameters(); train.py records that order
    param_names = json.loads((checkpoint.parent.parent / "param_names.json").read_text())
    if sorted(param_names) != sorted(weights):
        raise ValueError("param_names.json does not match the checkpoint's tensors; was it written by this run?")
    shadow = ema.pop("shadow_params")
    if len(shadow) != len(param_names):
        raise ValueError(f"EMA holds {len(shadow)} tensors, the model {len(param_names)}.")
    moments = {}
    for index, name in enumerate(param_names):
        slot = optimizer["state"].get(index)
        if slot is None:
            continue
        moments[f"{name}::exp_avg"] = slot["exp_avg"].to(torch.bfloat16)
        moments[f"{name}::exp_avg_sq"] = slot["exp_avg_sq"].to(torch.bfloat16)
    steps = {str(i): float(s["step"]) for i, s in optimizer["state"].items()}

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _save_sharded(weights, out, "weights")
    _save_sharded({n: t.to(torch.float16) for n, t in zip(param_names, shadow, strict=True)}, out, "ema")
    _save_sharded(moments, out, "adam")
    save_file({"torch_rng_state": rng["torch_manual_seed"]}, str(out / "rng.safetensors"))
    meta = {
        "checkpoint": checkpoint.name,
        "param_names": param_names,
        "optimizer_param_groups": optimizer["param_groups"],
        "optimizer_steps": steps,
        "scheduler": {k: v for k, v in scheduler.items() if k != "lr_lambdas"},
        "ema": {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in ema.items()},
        "train_state": state,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"packed {checkpoint} into {out} ({total / 1e6:.1f} MB)")


def unpack(pack_dir: Path, run_dir: Path):
    meta = json.loads((pack_dir / "meta.json").read_text())
    names = meta["param_names"]
    weights = _load_sharded(pack_dir, "weights")
    ema = _load_sharded(pack_dir, "ema")
    moments = _load_sharded(pack_dir, "adam")
    target = run_dir / "checkpoints" / meta["checkpoint"]
    if target.exists():
        raise SystemExit(f"{target} already exists; unpack into a fresh run folder")
    tmp = target.with_name(".tmp-" + target.name)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    state = {}
    for index, name in enumerate(names):
        if f"{name}::exp_avg" in moments:
            state[index] = {
                "step": torch.tensor(meta["optimizer_steps"][str(index)]),
                "exp_avg": moments[f"{name}::exp_avg"].float(),
                "exp_avg_sq": moments[f"{name}::exp_avg_sq"].float(),
            }
    torch.save({"state": state, "param_groups": meta["optimizer_param_groups"]}, tmp / "optimizer.bin")
    scheduler = dict(meta["scheduler"])
    scheduler["lr_lambdas"] = [None]
    torch.save(scheduler, tmp / "scheduler.bin")
    ema_state = dict(meta["ema"])
    ema_state["shadow_params"] = [ema[name].float() for name in names]
    torch.save(ema_state, tmp / "custom_checkpoint_0.pkl")
    torch.save(meta["train_state"], tmp / "custom_checkpoint_1.pkl")
    rng = load_file(str(pack_dir / "rng.safetensors"))["torch_rng_state"]
    torch.save(
        {
            "random_state": random.Random(0).getstate(),
            "numpy_random_seed": np.random.RandomState(0).get_state(),
            "torch_manual_seed": rng,
        },
        tmp / "random_states_0.pkl",
    )
    (run_dir / "param_names.json").write_text(json.dumps(names))
    tmp.rename(target)
    print(
        f"unpacked {pack_dir} into {target}; continue with: python examples/train.py --config ... "
        f"--output-dir {run_dir} --resume"
    )


def ema_model(checkpoint: Path, out: Path, dtype: str = "float32", max_shard_size: str = "5GB") -> Path:
    from modeling_ditar import DiTARConfig, DiTARForConditionalGeneration

    run = checkpoint.parent.parent
    config_dir = run / "model_config"  # written by train.py at the start of a run
    if not (config_dir / "config.json").is_file():
        raise SystemExit(f"{config_dir}/config.json is missing: only runs started by this train.py version record it")
    names = json.loads((run / "param_names.json").read_text())
    shadow = torch.load(checkpoint / "custom_checkpoint_0.pkl", map_location="cpu", weights_only=True)["shadow_params"]
    model = DiTARForConditionalGeneration(DiTARConfig.from_pretrained(config_dir))
    # the sampling settings (steps, guidance, candidates, ...), which config.json does not hold: without them the
    # exported model would sample with the library's defaults, not the run's
    if (config_dir / "generation_config.json").is_file():
        model.generation_config = type(model.generation_config).from_pretrained(config_dir)
    else:
        print(
            f"warning: {config_dir} has no generation_config.json (a run started before train.py saved it): the model "
            "samples with the library's default settings; copy the run's init_from model's generation_config.json "
            f"into {out} to sample as it does"
        )
    params = dict(model.named_parameters())
    if sorted(names) != sorted(params) or len(shadow) != len(names):
        raise ValueError(f"{checkpoint} does not hold this model's parameters (model_config/ of another run?)")
    with torch.no_grad():
        for name, value in zip(names, shadow, strict=True):
            if params[name].shape != value.shape:
                raise ValueError(f"{name}: checkpoint {tuple(value.shape)} vs model {tuple(params[name].shape)}")
            params[name].copy_(value)
    tmp = out.with_name(f".tmp-{out.name}")  # a crash never leaves a half-written model folder in place
    if tmp.exists():
        shutil.rmtree(tmp)
    model.to(getattr(torch, dtype)).save_pretrained(tmp, max_shard_size=max_shard_size)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"wrote the EMA weights of {checkpoint} to {out} ({dtype})")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="checkpoint folder -> pack folder")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out", type=Path)
    u = sub.add_parser("unpack", help="pack folder -> <run>/checkpoints/step-N")
    u.add_argument("pack", type=Path)
    u.add_argument("run", type=Path)
    e = sub.add_parser("ema-model", help="checkpoint folder -> model folder with its EMA weights")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    e.add_argument("--max-shard-size", default="5GB", help='e.g. "12MB" for files that travel in small pieces')
    args = parser.parse_args(argv)
    if args.command == "pack":
        pack(args.checkpoint, args.out)
    elif args.command == "unpack":
        unpack(args.pack, args.run)
    else:
        ema_model(args.checkpoint, args.out, args.dtype, args.max_shard_size)


if __name__ == "__main__":
    sys.exit(main())

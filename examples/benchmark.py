"""DiTAR inference benchmark: speed, latency, memory and compute against a non-autoregressive baseline.

    python examples/benchmark.py --quick                       # ~5 minutes: shipped size, 5 and 10 s, batch 1 and 4
    python examples/benchmark.py                               # full grid: ship + 40M, 5/10/20/40 s, batch 1/4/16
    python examples/benchmark.py --sizes 40M --seconds 10,40 --batches 1 --repeats 3
    python examples/benchmark.py --from-jsonl outputs/benchmark/results.jsonl   # table + plot from saved results
    python examples/benchmark.py --knobs --sizes ship          # cost of each inference knob (10 s, batch 1 and 16)
    python examples/benchmark.py --systems ditar,ditar-1cand,pocket,f5,nar --seconds 10,20,40 --batches 1,4,16
                                 # the shipped default against Pocket TTS, F5-TTS small and the NAR baseline
                                 # (benchmark_lib/systems.py; F5 needs examples/scripts/install_f5tts_bench_env.sh)
    python examples/benchmark.py --systems ditar,ditar-1cand,pocket,f5,nar --quick   # ~6 minutes: 10 s, batch 1, 4

For each model size, speech length and batch size it reports, from the same process, threads and inputs:
  RTF            wall seconds / seconds of speech per row (generation of mel features; < 1 is faster than real time)
  throughput     seconds of speech produced per wall second (batch x length / wall)
  first chunk    time to the first streamed waveform chunk of `DiTARPipeline.stream` (batch 1: text and prompt in,
                 Griffin-Lim chunk out). The NAR baseline cannot stream: its first audio comes after the full solve.
  e2e RTF        batch 1: RTF plus the pipeline's Griffin-Lim vocoding of the whole row (16 iterations unless its
                 folder says otherwise; the size grid's published table used 32); the text and prompt are encoded
                 before the clock starts
  peak MB        extra resident memory at the peak of the run (VmHWM reset per run; see benchmark_lib/measure.py)
  GFLOP / s-audio FLOPs per second of speech: DiTAR counted with torch's FlopCounterMode over whole generations
                 (prefill + patches; attention added where CPU SDPA is not counted), NAR over one network evaluation x32
  GFLOP/s        achieved rate, also as a fraction of this machine's fp32 matmul rate (2048^3 GEMM, same threads)

Models (random weights; cost does not depend on them): DiTAR `ship` (the shipped default, ~9.8M parameters) and `40M`
(LocDiT-heavy) and `40M-lm` (parameters in the backbone, as in the paper), 10 LocDiT steps, guidance 2, temperature 0.5,
the stop head silenced and the length forced with `max_new_patches`; a 3 s voice prompt with its transcript. The NAR
baseline (benchmark_lib/models.py) is a full-sequence DiT over prompt + output frames from diffusers
`BasicTransformerBlock`s with AdaLN-single time conditioning, depth chosen to match the DiTAR parameter count, F5-TTS
sampling: 32 Euler steps, CFG 2 with cond/uncond packed in one batch. Every NAR step costs the same, so long NAR runs
time `--nar-timed-steps` steps (or fewer, to stay within `--nar-budget` seconds) and scale to 32 (marked "~"); DiTAR
runs over `--ditar-budget` time a prefix of the patches and scale likewise (DiTAR's cost per patch is flat: the only
growing term is the backbone's attention over its KV cache). Timed runs alternate DiTAR and NAR (`--repeats` rounds);
the fastest clean run counts (clean: the run got its CPU time, see benchmark_lib/measure.py). Results go to `--out-dir`
as JSON lines, a markdown table and a PNG plot.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmark_lib.measure import Timing, count_flops, matmul_flops_per_second, timed_run  # noqa: E402
from benchmark_lib.models import (  # noqa: E402
    DITAR_SIZES,
    FRAMES_PER_SECOND,
    PATCHES_PER_SECOND,
    PROMPT_TEXT,
    SAMPLING_RATE,
    build_ditar,
    build_nar,
    count_parameters,
    flop_counter_mapping,
    nar_inputs,
    nar_sample,
    prompt_audio,
    text_for,
)

NAR_STEPS = 32


def parse_list(text: str, kind=float):
    return [kind(x) for x in text.split(",") if x.strip()]


def ditar_generate(model, inputs, patches, args, batch):
    return model.generate(
        inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        prompt_features=inputs["prompt_features"],
        prompt_attention_mask=inputs["prompt_attention_mask"],
        max_new_patches=patches,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        temperature=args.temperature,
        generator=torch.Generator().manual_seed(0),
        speech_position_rate=inputs.get("speech_position_rate"),
    )


def ditar_inputs(pipe, seconds, batch):
    return pipe.encode_inputs([text_for(seconds)] * batch, prompt_audio(), PROMPT_TEXT, SAMPLING_RATE)


def ditar_flops(pipe, args, seconds, cache: dict) -> int:
    """FLOPs of one row generating `seconds` of speech: the prefill and first patch counted for this text, the other
    patches at the per-patch count (difference of two short counted generations, computed once per model)."""
    model, mapping = pipe.model, flop_counter_mapping()
    inputs = ditar_inputs(pipe, seconds, 1)
    patches = round(seconds * PATCHES_PER_SECOND)
    first = count_flops(lambda: ditar_generate(model, inputs, 1, args, 1), mapping)
    if "per_patch" not in cache:
        short = count_flops(lambda: ditar_generate(model, inputs, 3, args, 1), mapping)
        longer = count_flops(lambda: ditar_generate(model, inputs, 9, args, 1), mapping)
        cache["per_patch"] = (longer - short) / 6
    return int(first + (patches - 1) * cache["per_patch"])


def nar_step_flops(nar, prompt, text_ids) -> int:
    return count_flops(lambda: nar_sample(nar, prompt, text_ids, steps=NAR_STEPS, run_steps=1), flop_counter_mapping())


def measure_size(size, args, matmul_rate, log):
    pipe = build_ditar(size)
    model = pipe.model
    if args.reference:
        model.disable_fast_generation()
    elif args.compile or args.prune or args.static_cache:
        model.enable_fast_generation(compile=args.compile, prune_finished=args.prune, static_cache=args.static_cache)
    tokenizer = pipe.processor.tokenizer
    params = count_parameters(model)
    nar = build_nar(size, params, len(tokenizer))
    nar_params = count_parameters(nar)
    log(
        f"\n[{size}] DiTAR {params / 1e6:.1f}M parameters "
        f"(backbone {count_parameters(model.language_model) / 1e6:.1f}M, "
        f"encoder {count_parameters(model.aggregation_encoder) / 1e6:.1f}M, "
        f"LocDiT {count_parameters(model.locdit) / 1e6:.1f}M); "
        f"NAR baseline {nar_params / 1e6:.1f}M ({len(nar.blocks)} blocks)"
    )

    # warm-up (allocator, kernels, compile) and the prompt's features
    warm = ditar_inputs(pipe, 5, 1)
    start = time.perf_counter()
    ditar_generate(model, warm, 4, args, 1)
    log(f"  warm-up generate: {time.perf_counter() - start:.1f} s")
    prompt_features = warm["prompt_features"][0, : int(warm["prompt_attention_mask"][0].sum())]
    p, ids = nar_inputs(nar, tokenizer, prompt_features, text_for(1), 1, 1)
    nar_sample(nar, p, ids, run_steps=1)

    per_patch_time: dict[int, float] = {}  # batch -> seconds per patch (for budget projections)
    nar_rate = None
    flop_cache: dict = {}
    for seconds in args.seconds:
        patches = round(seconds * PATCHES_PER_SECOND)
        flops_ditar_row = ditar_flops(pipe, args, seconds, flop_cache) if not args.no_flops else None
        prompt1, ids1 = nar_inputs(nar, tokenizer, prompt_features, text_for(seconds), seconds, 1)
        nar_frames = prompt1.shape[1]
        nar_step_row = nar_step_flops(nar, prompt1, ids1) if not args.no_flops else None
        for batch in args.batches:
            inputs = ditar_inputs(pipe, seconds, batch)
            # DiTAR: time a prefix of the patches if the whole run would exceed the budget
            timed_patches = patches
            if batch in per_patch_time and per_patch_time[batch] * patches > args.ditar_budget:
                timed_patches = max(8, int(args.ditar_budget / per_patch_time[batch]))
            # NAR: as many of the 32 steps as fit the budget (every step costs the same)
            prompt, text_ids = nar_inputs(nar, tokenizer, prompt_features, text_for(seconds), seconds, batch)
            nar_steps = 0 if args.no_nar else args.nar_timed_steps
            if nar_steps and nar_rate is not None and nar_step_row is not None:
                step_estimate = nar_step_row * batch / nar_rate
                if step_estimate > args.nar_max_step_seconds:
                    nar_steps = 0
                else:
                    nar_steps = max(1, min(nar_steps, int(args.nar_budget / step_estimate)))
            ditar_timing, nar_timing = Timing(threads=args.threads), Timing(threads=args.threads)
            features = None
            for _ in range(args.repeats):
                out = timed_run(lambda: ditar_generate(model, inputs, timed_patches, args, batch), ditar_timing)  # noqa: B023
                features = out.features
                if nar_steps:
                    timed_run(
                        lambda: nar_sample(nar, prompt, text_ids, steps=NAR_STEPS, run_steps=nar_steps),  # noqa: B023
                        nar_timing,
                    )
            ditar_wall = ditar_timing.best * patches / timed_patches
            per_patch_time[batch] = ditar_timing.best / timed_patches
            nar_wall = nar_timing.best * NAR_STEPS / nar_steps if nar_steps else None
            if nar_steps and nar_step_row is not None:
                nar_rate = nar_step_row * batch * nar_steps / nar_timing.best
            row = dict(
                size=size,
                params=params,
                nar_params=nar_params,
                nar_blocks=len(nar.blocks),
                seconds=seconds,
                batch=batch,
                threads=args.threads,
                patches=patches,
                ditar_timed_patches=timed_patches,
                ditar_wall=ditar_wall,
                ditar_clean=ditar_timing.is_clean,
                ditar_peak_mb=ditar_timing.peak_bytes / 2**20,
                nar_frames=nar_frames,
                nar_timed_steps=nar_steps,
                nar_wall=nar_wall,
                nar_clean=nar_timing.is_clean if nar_steps else None,
                nar_peak_mb=nar_timing.peak_bytes / 2**20 if nar_steps else None,
                flops_ditar_per_audio_s=flops_ditar_row / seconds if flops_ditar_row else None,
                flops_nar_per_audio_s=nar_step_row * NAR_STEPS / seconds if nar_step_row else None,
                matmul_flops_per_s=matmul_rate,
                settings=settings_name(args),
            )
            if batch == 1:
                row.update(first_chunk_and_vocoder(pipe, seconds, patches, args, features))
            log(format_progress(row))
            yield row  # written out at once: a long grid can be stopped and resumed


def full_length_frames(features: torch.Tensor, frames: int) -> torch.Tensor:
    """The first row's generated frames, repeated up to `frames` frames. A row timed on a prefix of its patches has
    only the prefix's features, and Griffin-Lim's time grows with the frames it decodes: timed on the prefix, the
    vocoder's share of the row's e2e RTF came out that much too small."""
    row = features[0]
    return row.repeat(math.ceil(frames / row.shape[0]), 1)[:frames]


def first_chunk_and_vocoder(pipe, seconds, patches, args, features) -> dict:
    """Time to the first streamed chunk (best of `repeats`) and Griffin-Lim time for the row's full length (`patches`
    patches; the generated features are repeated where only a prefix of them was generated)."""
    best = float("inf")
    call = dict(
        prompt_audio=prompt_audio(),
        prompt_text=PROMPT_TEXT,
        sampling_rate=SAMPLING_RATE,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        temperature=args.temperature,
        max_new_patches=patches,
    )
    timing = Timing(threads=args.threads)
    for run in range(max(1, args.repeats)):

        def first():
            stream = pipe.stream(text_for(seconds), generator=torch.Generator().manual_seed(run), **call)  # noqa: B023
            next(stream)
            stream.close()

        timed_run(first, timing)
    best = timing.best
    vocoder = None
    if features is not None:
        full = full_length_frames(features, patches * pipe.model.config.patch_size)
        frames = pipe.model.denormalize_features(full.float())
        timing = Timing(threads=args.threads)
        timed_run(lambda: pipe._streaming_vocoder().decode(frames), timing)
        vocoder = timing.best
    return dict(first_chunk_s=best, vocoder_wall=vocoder)


def settings_name(args) -> str:
    if args.reference:
        return "reference"
    parts = ["fast"] + [name for name in ("compile", "prune", "static_cache") if getattr(args, name)]
    return "+".join(parts)


def format_progress(row) -> str:
    nar = "-" if row["nar_wall"] is None else f"{row['nar_wall'] / row['seconds']:.2f}"
    return (
        f"  {row['seconds']:>4g} s x{row['batch']:<2d}: DiTAR RTF {row['ditar_wall'] / row['seconds']:.3f}"
        f"{'' if row['ditar_clean'] else ' (contended)'}  NAR RTF {nar}"
        + (f"  first chunk {row['first_chunk_s'] * 1e3:.0f} ms" if "first_chunk_s" in row else "")
    )


# ----------------------------------------------------------------------------------------------------------------------
# knobs: what each inference setting costs (`--knobs`)


class _StopSchedule(torch.nn.Module):
    """Stop head for a batch whose row r stops after `stops[r]` patches (to time pruning of finished rows)."""

    def __init__(self, stops):
        super().__init__()
        self.stops, self.calls = stops, 0

    def forward(self, hidden):
        self.calls += 1
        logits = torch.full((hidden.shape[0], 1), -30.0)
        for row, after in enumerate(self.stops):
            if self.calls >= after:
                logits[row] = 30.0
        return logits


def knobs(size, args, log):
    from modeling_ditar.modeling_ditar import GenerationSpeedups

    pipe = build_ditar(size)
    model = pipe.model
    seconds = 10.0
    patches = round(seconds * PATCHES_PER_SECOND)
    one = ditar_inputs(pipe, seconds, 1)
    rows = []

    def run(name, inputs, batch, steps=args.steps, guidance=args.guidance_scale, settings=None, dtype=None, stops=None):
        model.generation_speedups = settings or GenerationSpeedups()
        model._compiled_locdit_step = None
        if dtype is not None:
            model.to(dtype)
        local = argparse.Namespace(**{**vars(args), "steps": steps, "guidance_scale": guidance})
        original_stop = model.stop_head
        if stops is not None:
            model.stop_head = _StopSchedule(stops)
        try:
            start = time.perf_counter()
            ditar_generate(model, inputs, 4, local, batch)  # warm-up (and compile)
            warm = time.perf_counter() - start
            timing = Timing(threads=args.threads)
            for _ in range(args.repeats):
                if stops is not None:
                    model.stop_head.calls = 0
                timed_run(lambda: ditar_generate(model, inputs, patches, local, batch), timing)  # noqa: B023
        finally:
            model.stop_head = original_stop
            model.to(torch.float32)
        rows.append((name, batch, timing.best, timing.is_clean, warm))
        log(
            f"  {name:<48} batch {batch:>2}: {timing.best:7.3f} s  RTF {timing.best / seconds:.3f}"
            f"{'' if timing.is_clean else ' (contended)'}"
        )

    log(f"\n[{size}] knobs, {seconds:g} s of speech ({patches} patches), {args.threads} thread(s)")
    run("default (fast paths, 10 steps, guidance 2)", one, 1)
    run(
        "reference path (disable_fast_generation)",
        one,
        1,
        settings=GenerationSpeedups(fast_blocks=False, inline_euler=False, skip_full_masks=False),
    )
    run("torch.compile of LocDiT (enable_fast_generation)", one, 1, settings=GenerationSpeedups(compile=True))
    run("static KV cache", one, 1, settings=GenerationSpeedups(static_cache=True))
    run("6 steps", one, 1, steps=6)
    run("4 steps", one, 1, steps=4)
    run("guidance 1 (no CFG branch)", one, 1, guidance=1.0)
    run("bfloat16 weights (changes numbers)", one, 1, dtype=torch.bfloat16)
    batch = 16
    many = ditar_inputs(pipe, seconds, batch)
    stops = [max(1, round(patches * (r + 1) / batch)) for r in range(batch)]  # rows stop evenly spread in time
    run("16 rows stopping evenly, no pruning", many, batch, stops=stops)
    run(
        "16 rows stopping evenly, prune_finished",
        many,
        batch,
        stops=stops,
        settings=GenerationSpeedups(prune_finished=True),
    )
    model.generation_speedups = GenerationSpeedups()
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# report


def table(rows) -> str:
    head = (
        "| model | params (DiTAR / NAR) | speech s | batch | DiTAR RTF | NAR RTF | NAR / DiTAR time | "
        "DiTAR audio-s/s | NAR audio-s/s | first chunk ms | e2e RTF (+GL) | peak MB DiTAR / NAR |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        d_rtf = r["ditar_wall"] / r["seconds"]
        proj_d = "~" if r["ditar_timed_patches"] < r["patches"] else ""
        flag_d = "" if r["ditar_clean"] else "*"
        if r["nar_wall"] is not None:
            proj_n = "~" if r["nar_timed_steps"] < NAR_STEPS else ""
            flag_n = "" if r["nar_clean"] else "*"
            nar_rtf = f"{proj_n}{r['nar_wall'] / r['seconds']:.2f}{flag_n}"
            ratio = f"{r['nar_wall'] / r['ditar_wall']:.1f}x"
            nar_tp = f"{r['batch'] * r['seconds'] / r['nar_wall']:.3f}"
            nar_mem = f"{r['nar_peak_mb']:.0f}"
        else:
            nar_rtf = ratio = nar_tp = nar_mem = "skipped"
        first = f"{r['first_chunk_s'] * 1e3:.0f}" if r.get("first_chunk_s") is not None else ""
        e2e = f"{(r['ditar_wall'] + r['vocoder_wall']) / r['seconds']:.3f}" if r.get("vocoder_wall") is not None else ""
        lines.append(
            f"| {r['size']} | {r['params'] / 1e6:.1f}M / {r['nar_params'] / 1e6:.1f}M | {r['seconds']:g} | "
            f"{r['batch']} | {proj_d}{d_rtf:.3f}{flag_d} | {nar_rtf} | {ratio} | "
            f"{r['batch'] * r['seconds'] / r['ditar_wall']:.2f} | {nar_tp} | {first} | {e2e} | "
            f"{r['ditar_peak_mb']:.0f} / {nar_mem} |"
        )
    return "\n".join(lines)


def compute_table(rows) -> str:
    lines = [
        "| model | speech s | batch | DiTAR GFLOP / s-audio | NAR GFLOP / s-audio | DiTAR GFLOP/s (of matmul) | "
        "NAR GFLOP/s (of matmul) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.get("flops_ditar_per_audio_s") is None:
            continue
        peak = r["matmul_flops_per_s"]
        d_rate = r["flops_ditar_per_audio_s"] * r["seconds"] * r["batch"] / r["ditar_wall"]
        if r["nar_wall"] is not None:
            n_rate = r["flops_nar_per_audio_s"] * r["seconds"] * r["batch"] / r["nar_wall"]
            nar = f"{n_rate / 1e9:.0f} ({n_rate / peak:.0%})"
        else:
            nar = "skipped"
        lines.append(
            f"| {r['size']} | {r['seconds']:g} | {r['batch']} | {r['flops_ditar_per_audio_s'] / 1e9:.1f} | "
            f"{r['flops_nar_per_audio_s'] / 1e9:.1f} | {d_rate / 1e9:.0f} ({d_rate / peak:.0%}) | {nar} |"
        )
    return "\n".join(lines)


def targets(rows) -> str:
    out = []
    by = {(r["size"], r["seconds"], r["batch"]): r for r in rows}
    for size in sorted({r["size"] for r in rows}):
        r10 = by.get((size, 10.0, 1))
        r40 = by.get((size, 40.0, 1))
        if r10 and r10["nar_wall"]:
            ratios = [
                f"{s:g} s: {by[(size, s, 1)]['nar_wall'] / by[(size, s, 1)]['ditar_wall']:.1f}x"
                for s in sorted({r["seconds"] for r in rows if r["size"] == size})
                if (size, s, 1) in by and by[(size, s, 1)]["nar_wall"]
            ]
            out.append(f"- {size}: DiTAR vs NAR speed-up at batch 1: {', '.join(ratios)}")
        if r10 and r40:
            out.append(f"- {size}: 40 s costs {r40['ditar_wall'] / r10['ditar_wall']:.2f}x the time of 10 s (batch 1)")
        if r10:
            e2e = (r10["ditar_wall"] + (r10.get("vocoder_wall") or 0)) / 10
            out.append(
                f"- {size}: batch-1 RTF at 10 s {r10['ditar_wall'] / 10:.3f} (with Griffin-Lim {e2e:.3f}), "
                f"first chunk {r10.get('first_chunk_s', float('nan')) * 1e3:.0f} ms"
            )
    return "\n".join(out)


def plot(rows, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["size"] for r in rows})
    batches = sorted({r["batch"] for r in rows})
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, size in enumerate(sizes):
        for j, batch in enumerate(batches):
            sel = sorted((r for r in rows if r["size"] == size and r["batch"] == batch), key=lambda r: r["seconds"])
            if not sel:
                continue
            color = colors[(i * len(batches) + j) % len(colors)]
            xs = [r["seconds"] for r in sel]
            axes[0].plot(
                xs, [r["ditar_wall"] / r["seconds"] for r in sel], "o-", color=color, label=f"DiTAR {size} b{batch}"
            )
            nar = [(r["seconds"], r["nar_wall"] / r["seconds"]) for r in sel if r["nar_wall"]]
            if nar:
                axes[0].plot(*zip(*nar, strict=True), "s--", color=color, alpha=0.7, label=f"NAR {size} b{batch}")
            axes[1].plot(
                xs,
                [r["batch"] * r["seconds"] / r["ditar_wall"] for r in sel],
                "o-",
                color=color,
                label=f"DiTAR {size} b{batch}",
            )
            if nar:
                axes[1].plot(
                    [r["seconds"] for r in sel if r["nar_wall"]],
                    [r["batch"] * r["seconds"] / r["nar_wall"] for r in sel if r["nar_wall"]],
                    "s--",
                    color=color,
                    alpha=0.7,
                    label=f"NAR {size} b{batch}",
                )
        sel = sorted(
            (r for r in rows if r["size"] == size and r["batch"] == batches[0] and r.get("flops_ditar_per_audio_s")),
            key=lambda r: r["seconds"],
        )
        if sel:
            axes[2].plot(
                [r["seconds"] for r in sel],
                [r["flops_ditar_per_audio_s"] / 1e9 for r in sel],
                "o-",
                color=colors[i],
                label=f"DiTAR {size}",
            )
            axes[2].plot(
                [r["seconds"] for r in sel],
                [r["flops_nar_per_audio_s"] / 1e9 for r in sel],
                "s--",
                color=colors[i],
                label=f"NAR {size}",
            )
    axes[0].axhline(1.0, color="grey", lw=0.8)
    titles = ("real-time factor (lower is faster)", "throughput (speech s per wall s)", "GFLOP per second of speech")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("speech length (s)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    r0 = rows[0]
    fig.suptitle(f"DiTAR vs NAR DiT on {platform.machine()} CPU, {r0['threads']} thread(s), settings {r0['settings']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(rows, out_dir: Path, header: str) -> str:
    text = "\n".join(
        [
            header,
            "",
            table(rows),
            "",
            compute_table(rows),
            "",
            targets(rows),
            "",
            "~ projected from a timed prefix (NAR: fewer than 32 steps; DiTAR: fewer patches); "
            "* no clean run (CPU shared with other work).",
        ]
    )
    (out_dir / "table.md").write_text(text + "\n")
    plot(rows, out_dir / "benchmark.png")
    return text


def compare_systems(args, out_dir: Path):
    """`--systems`: every system at every (length, batch) point, interleaved round by round (see systems.py)."""
    from benchmark_lib.systems import SYSTEMS_NOTES, build_systems, measure_grid, systems_table

    def log(message):
        print(message, flush=True)

    load = os.getloadavg()
    header = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} thread(s); load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"{time.strftime('%Y-%m-%d')}"
    )
    log(header)
    skipped = []
    systems = build_systems(_names(args.systems), args, log, skipped=skipped)
    if not systems:
        raise SystemExit(
            "error: none of the requested systems could be built, nothing was measured: "
            + "; ".join(f"{name}: {reason}" for name, reason in skipped)
        )
    results = out_dir / "systems.jsonl"
    rows = []
    try:
        for system in systems:
            log(f"  {system.describe()}")
        for row in measure_grid(systems, args, log):
            rows.append(row)
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
    finally:
        for system in systems:
            system.close()
    after = os.getloadavg()
    text = "\n".join(
        [header, *(f"- {s.describe()}" for s in systems), *(f"- {n}: skipped, {why}" for n, why in skipped)]
        + ["", systems_table(rows), "", SYSTEMS_NOTES]
        + [f"\nload average after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}"]
    )
    (out_dir / "systems.md").write_text(text + "\n")
    log("\n" + text + f"\nresults appended to {results}, table in {out_dir / 'systems.md'}")


# Options whose default depends on --quick (None in the parser): the value --quick gives where the option is not
# given, else the plain default. Given options are always kept.
PLAIN_DEFAULTS = {
    "sizes": "ship,40M",
    "seconds": "5,10,20,40",
    "batches": "1,4,16",
    "repeats": 2,
    "nar_timed_steps": NAR_STEPS,
    "ditar_budget": 120.0,
    "nar_max_step_seconds": 90.0,
    "quiet_wait": 20.0,
}
QUICK_DEFAULTS = {
    "grid": {"sizes": "ship", "seconds": "5,10", "batches": "1,4", "repeats": 1, "nar_timed_steps": 4},
    "systems": {
        "seconds": "10",
        "batches": "1,4",
        "repeats": 1,
        "nar_timed_steps": 1,
        "ditar_budget": 20.0,
        "nar_max_step_seconds": 30.0,
        "quiet_wait": 3.0,
    },
}
# The options each mode reads besides --out-dir: any other one given would have no effect there, so it is refused.
MODE_OPTIONS = {
    "grid": {
        "sizes",
        "seconds",
        "batches",
        "repeats",
        "threads",
        "steps",
        "guidance_scale",
        "temperature",
        "nar_timed_steps",
        "nar_budget",
        "nar_max_step_seconds",
        "ditar_budget",
        "no_nar",
        "no_flops",
        "reference",
        "compile",
        "prune",
        "static_cache",
        "quick",
    },  # fmt: skip
    "systems": {
        "systems",
        "seconds",
        "batches",
        "repeats",
        "threads",
        "nar_timed_steps",
        "nar_budget",
        "nar_max_step_seconds",
        "ditar_budget",
        "no_flops",
        "ditar_model",
        "f5_python",
        "quiet_wait",
        "quick",
    },  # fmt: skip
    "knobs": {"knobs", "sizes", "repeats", "threads", "steps", "guidance_scale", "temperature"},
    "from-jsonl": {"from_jsonl"},
}


def mode_of(args) -> str:
    if args.from_jsonl is not None:
        return "from-jsonl"
    if args.systems is not None:
        return "systems"
    return "knobs" if args.knobs else "grid"


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    """Every setting that cannot work, or would have no effect, is named before anything is built or timed. Fills the
    options whose defaults depend on --quick."""
    mode = mode_of(args)
    ignored = [
        "--" + name.replace("_", "-")
        for name, value in vars(args).items()
        if name != "out_dir" and name not in MODE_OPTIONS[mode] and value != parser.get_default(name)
    ]
    if ignored:
        what = {
            "from-jsonl": "--from-jsonl (it re-renders saved results)",
            "systems": "--systems",
            "knobs": "--knobs",
            "grid": "the size grid (without --systems or --knobs)",
        }[mode]
        parser.error(
            f"{', '.join(ignored)}: no effect with {what}; "
            f"leave {'it' if len(ignored) == 1 else 'them'} out (this mode reads "
            f"{', '.join('--' + o.replace('_', '-') for o in sorted(MODE_OPTIONS[mode]))})"
        )
    _check_out_dir(parser, Path(args.out_dir))
    if mode == "from-jsonl":
        if not args.from_jsonl:
            parser.error("--from-jsonl: give one or more results.jsonl files of the size grid")
        return
    quick = QUICK_DEFAULTS.get(mode, {}) if args.quick else {}
    for name, value in PLAIN_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, quick.get(name, value))
    if args.reference and (args.compile or args.prune or args.static_cache):
        parser.error(
            "--reference times the path without the fast-generation shortcuts: leave out --compile, --prune "
            "and --static-cache, or --reference"
        )
    for name in ("threads", "repeats", "steps", "nar_timed_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: give at least 1")
    for name in ("nar_budget", "nar_max_step_seconds", "ditar_budget"):
        if not math.isfinite(getattr(args, name)) or getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: give a number of seconds above 0")
    if not math.isfinite(args.quiet_wait) or args.quiet_wait < 0:
        parser.error(f"--quiet-wait {args.quiet_wait}: give a number of seconds, 0 or more")
    if not (math.isfinite(args.temperature) and 0 <= args.temperature <= 1):
        parser.error(f"--temperature {args.temperature}: give a number in [0, 1]")
    if not (math.isfinite(args.guidance_scale) and args.guidance_scale >= 0):
        parser.error(f"--guidance-scale {args.guidance_scale}: give a number, 0 or more (1: no guidance)")
    for name, kind in (("seconds", float), ("batches", int)):
        try:
            values = parse_list(getattr(args, name), kind)
        except ValueError:
            parser.error(f"--{name} {getattr(args, name)!r}: give comma-separated {kind.__name__}s, e.g. 5,10")
        if not values or min(values) <= 0:
            parser.error(f"--{name} {getattr(args, name)!r}: give comma-separated numbers above 0")
        if len(set(values)) < len(values):
            parser.error(f"--{name} {getattr(args, name)!r}: a value is given twice; give each once")
    shortest = 1 / PATCHES_PER_SECOND
    if any(not math.isfinite(s) or round(s * PATCHES_PER_SECOND) < 1 for s in parse_list(args.seconds)):
        parser.error(f"--seconds {args.seconds!r}: give finite lengths of at least {shortest:g} s (one patch)")
    for name, known in (("sizes", DITAR_SIZES), ("systems", None)):
        text = getattr(args, name)
        if text is None:
            continue
        if known is None:
            from benchmark_lib.systems import SYSTEMS as known
        names = _names(text)
        unknown = [n for n in names if n not in known]
        if unknown or not names:
            parser.error(
                f"--{name} {text!r}: "
                + (f"unknown {', '.join(map(repr, unknown))}; " if unknown else "")
                + f"choose among {', '.join(known)} (comma-separated)"
            )
        if len(set(names)) < len(names):
            parser.error(f"--{name} {text!r}: a name is given twice; give each once")
    if args.ditar_model is not None and not (Path(args.ditar_model) / "model_index.json").is_file():
        parser.error(
            f"--ditar-model {args.ditar_model}: not a saved DiTARPipeline folder (no model_index.json); give the "
            "folder `save_pretrained` wrote, or leave it out for the shipped default"
        )


def _check_out_dir(parser: argparse.ArgumentParser, out: Path) -> None:
    if out.exists() and not out.is_dir():
        parser.error(f"--out-dir {out} is a file: give a folder")
    existing = next((parent for parent in out.parents if parent.exists()), Path("."))
    if not out.exists() and (not existing.is_dir() or not os.access(existing, os.W_OK)):
        parser.error(f"--out-dir {out}: cannot create it ({existing} is not a writable folder)")


def read_grid_results(parser: argparse.ArgumentParser, paths: list[str]) -> list[dict]:
    """The rows of saved size-grid results, newest last; every problem is named before anything is written."""
    rows = []
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            parser.error(f"--from-jsonl {path}: cannot read it ({error.strerror or error})")
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                parser.error(f"--from-jsonl {path}, line {number}: not JSON ({error.msg})")
            if not isinstance(row, dict) or not {"size", "seconds", "batch", "threads", "settings"} <= row.keys():
                hint = " (a --systems run's systems.jsonl: its table is systems.md)" if "system" in str(row) else ""
                parser.error(f"--from-jsonl {path}, line {number}: not a row of the size grid's results.jsonl{hint}")
            rows.append(row)
    if not rows:
        parser.error(f"--from-jsonl {' '.join(paths)}: no results in them")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", help="model sizes, comma-separated (default ship,40M; --quick: ship)")
    parser.add_argument("--seconds", help="speech lengths in s (default 5,10,20,40; --quick: 5,10, with --systems 10)")
    parser.add_argument("--batches", help="batch sizes (default 1,4,16; --quick: 1,4)")
    parser.add_argument("--repeats", type=int, help="timed rounds, DiTAR and NAR alternate (default 2; --quick: 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: robust on a shared box)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument(
        "--nar-timed-steps",
        type=int,
        help=f"NAR steps actually run per timed run, scaled to {NAR_STEPS} (default {NAR_STEPS}; --quick: 4, with "
        "--systems 1)",
    )
    parser.add_argument("--nar-budget", type=float, default=60.0, help="max seconds per timed NAR run")
    parser.add_argument(
        "--nar-max-step-seconds",
        type=float,
        help="skip the NAR point if one of its steps is estimated to take longer (default 90; --quick --systems: 30)",
    )
    parser.add_argument(
        "--ditar-budget", type=float, help="max seconds per timed DiTAR run (default 120; --quick --systems: 20)"
    )
    parser.add_argument("--no-nar", action="store_true")
    parser.add_argument("--no-flops", action="store_true")
    parser.add_argument(
        "--reference", action="store_true", help="DiTAR on the reference path (no fast-generation shortcuts)"
    )
    parser.add_argument("--compile", action="store_true", help="model.enable_fast_generation(compile=True)")
    parser.add_argument("--prune", action="store_true", help="drop finished rows (no effect: rows never stop here)")
    parser.add_argument("--static-cache", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="ship size, 5 and 10 s, batch 1 and 4, one round (with --systems: 10 s); options given are kept",
    )
    parser.add_argument("--out-dir", default="outputs/benchmark")
    parser.add_argument("--from-jsonl", nargs="*", help="only re-render the table and plot from saved results")
    parser.add_argument("--knobs", action="store_true", help="time the inference knobs instead of the grid")
    parser.add_argument(
        "--systems",
        help="compare systems instead of sizes: ditar, ditar-1cand, ditar-fp32, ditar-bf16, ditar-locbf16, pocket, f5, "
        "nar (comma-separated)",
    )
    parser.add_argument("--ditar-model", help="DiTAR pipeline folder for --systems (default: the shipped default)")
    parser.add_argument(
        "--f5-python",
        default=str(Path(__file__).resolve().parents[1] / ".venv-f5" / "bin" / "python"),
        help="python of the F5-TTS environment (default: the repository's .venv-f5, which "
        "examples/scripts/install_f5tts_bench_env.sh creates)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="--systems: max seconds a timed run waits for free cores (default 20; --quick: 3)",
    )
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    out_dir = Path(args.out_dir)

    if args.from_jsonl:
        rows = read_grid_results(parser, args.from_jsonl)
        out_dir.mkdir(parents=True, exist_ok=True)
        latest = {(r["size"], r["seconds"], r["batch"], r["threads"], r["settings"]): r for r in rows}  # last wins
        rows = sorted(latest.values(), key=lambda r: (r["threads"], r["params"], r["batch"], r["seconds"]))
        # FLOPs per second of speech do not depend on the batch or threads: fill runs made with --no-flops
        flops = {(r["size"], r["seconds"]): r for r in rows if r.get("flops_ditar_per_audio_s")}
        for r in rows:
            if not r.get("flops_ditar_per_audio_s") and (r["size"], r["seconds"]) in flops:
                source = flops[(r["size"], r["seconds"])]
                r["flops_ditar_per_audio_s"] = source["flops_ditar_per_audio_s"]
                r["flops_nar_per_audio_s"] = source["flops_nar_per_audio_s"]
        print(report(rows, out_dir, f"Results from {', '.join(args.from_jsonl)}"))
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    args.sizes = _names(args.sizes)
    args.seconds = parse_list(args.seconds)
    args.batches = parse_list(args.batches, int)
    torch.set_num_threads(args.threads)
    if args.systems:
        return compare_systems(args, out_dir)
    if args.knobs:
        print(
            f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s); "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        for size in args.sizes:
            knobs(size, args, lambda m: print(m, flush=True))
        return

    matmul_rate = matmul_flops_per_second()
    load = os.getloadavg()
    header = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} thread(s); fp32 matmul {matmul_rate / 1e9:.0f} GFLOP/s; load average before "
        f"{load[0]:.2f}; DiTAR: {args.steps} steps, guidance {args.guidance_scale:g}, temperature "
        f"{args.temperature:g}, settings {settings_name(args)}; NAR: {NAR_STEPS} steps, CFG packed; "
        f"prompt 3 s ({FRAMES_PER_SECOND:g} frames/s)"
    )
    print(header, flush=True)
    results = out_dir / "results.jsonl"
    rows = []
    for size in args.sizes:
        for row in measure_size(size, args, matmul_rate, lambda m: print(m, flush=True)):
            rows.append(row)
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print("\n" + report(rows, out_dir, header))
    print(
        f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"results appended to {results}, table and plot in {out_dir}"
    )


if __name__ == "__main__":
    main()

"""The systems `examples/benchmark.py --systems ...` compares, behind one small interface, and the interleaved grid.

    ditar        the shipped default (`DiTARPipeline.from_pretrained()`), as shipped: its generation_config.json decides
                 steps, guidance, temperature, candidates (best of 4) and `candidate_prune_after_patches` (12), and
                 its `matmul_dtype` ("auto": bfloat16 products on CPUs with AVX512-BF16 and no AMX). Only the
                 length is forced: the stop head is silenced and `max_new_patches` set.
    ditar-1cand  the same model and settings with `num_candidates=1`.
    ditar-fp32   the shipped default with every product in float32 (`set_matmul_dtype(torch.float32)`): what CPUs
                 without native bfloat16, and those with AMX, run.
    ditar-bf16   the shipped default whose transformers multiply in bfloat16 (`set_matmul_dtype(torch.bfloat16)`;
                 norms, attention, sums and the KV cache stay float32), whatever the CPU.
    ditar-locbf16  the shipped default with LocDiT alone in bfloat16 (weights and activations), the rest float32.
    pocket       Pocket TTS from transformers at its published size, random weights, fixed length (`pocket.py`).
    f5           F5-TTS small in its own environment, random weights, 32 NFE + CFG (`f5_runner.py`, a subprocess).
    nar          the NAR DiT baseline of `models.py`, sized to the shipped default's parameter count.

Every system counts its work in units whose cost is flat (DiTAR: patches, Pocket: frames, the NAR models: ODE steps),
so a run over the time budget times a prefix of the units and scales (marked "~"), as the size grid does. For each
(length, batch) point all systems run once per round, round after round (`--repeats`), so that load changes hit every
system alike; the fastest clean run counts (`measure.py`).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from pathlib import Path

import torch

from .measure import Timing, count_flops, timed_run, wait_until_quiet
from .models import (
    FRAMES_PER_SECOND,
    PATCHES_PER_SECOND,
    PROMPT_TEXT,
    SAMPLING_RATE,
    build_nar,
    count_parameters,
    flop_counter_mapping,
    nar_inputs,
    nar_sample,
    prompt_audio,
    text_for,
)

NAR_STEPS = 32
SYSTEMS = ("ditar", "ditar-1cand", "ditar-fp32", "ditar-bf16", "ditar-locbf16", "pocket", "f5", "nar")
REPO = Path(__file__).resolve().parents[2]


def linear_flops(count_at, small: int, large: int, units: int) -> float:
    """FLOPs of `units` units from two counted prefixes (cost per unit is flat past `small`)."""
    low, high = count_at(small), count_at(large)
    return low + (units - small) * (high - low) / (large - small)


def gapless_start(arrivals: list[float], durations: list[float]) -> float:
    """The earliest playback start (seconds after the call) that never runs dry, for chunks that arrive at `arrivals`
    and last `durations`: chunk i plays at start + the audio before it, so start >= arrival_i - sum(durations[:i])."""
    start, played = 0.0, 0.0
    for arrival, duration in zip(arrivals, durations, strict=True):
        start = max(start, arrival - played)
        played += duration
    return start


class BenchSystem:
    """One system. `units(seconds)`: the flat-cost units of a row; `prepare(seconds, batch)`: build the inputs of a
    point before its timed runs; `run(seconds, batch, units, timing)`: one timed run of `units` of them;
    `first_audio(timing)`: one timed run up to the first playable audio (batch 1, 10 s text), or None when that is the
    whole generation; `gapless_start(seconds, threads)`: the earliest playback start of one whole stream that never
    runs dry, or None for a system that does not stream; `decode(seconds, timing)`: one timed vocoder/codec run for
    one row, or None; `flops(seconds)`: (generation, decoder) FLOPs of one row."""

    name = ""
    min_units = 1
    streams = False
    quiet_wait = 20.0  # seconds a timed run may wait for other processes to leave the cores (`--quiet-wait`)

    def units(self, seconds: float) -> int:
        raise NotImplementedError

    def inputs(self, seconds: float, batch: int):
        """This point's inputs, built once and kept (None for a system whose inputs are made elsewhere)."""
        return None

    def prepare(self, seconds: float, batch: int):
        """Build (and keep) the inputs of this point, so that its timed runs time generation only."""
        self.inputs(seconds, batch)

    def run(self, seconds: float, batch: int, units: int, timing: Timing):
        raise NotImplementedError

    def first_audio(self, seconds: float, timing: Timing) -> bool:
        return False

    def gapless_start(self, seconds: float, threads: int = 1) -> float | None:
        return None

    def decode(self, seconds: float, timing: Timing) -> bool:
        return False

    def flops(self, seconds: float) -> tuple[float, float | None]:
        raise NotImplementedError

    def close(self):
        pass


class DiTARSystem(BenchSystem):
    """The shipped default pipeline; `num_candidates` None keeps the shipped candidate policy."""

    min_units = 16  # past the shipped pruning point (12 patches), after which a patch costs one candidate

    def __init__(self, pipe, num_candidates: int | None = None, name: str = "ditar", source: str = "shipped default"):
        self.pipe, self.model, self.name, self.num_candidates = pipe, pipe.model, name, num_candidates
        self.source = source  # what the table calls the pipeline: the shipped default or the folder given
        self.streams = True
        settings = self.model.generation_settings(num_candidates=num_candidates)
        self.settings = settings
        self.params = count_parameters(self.model)
        self._inputs: dict = {}

    def describe(self) -> str:
        s = self.settings
        student = self.model.candidate_locdit is not None
        return (
            f"{self.name}: {self.source}, {self.params / 1e6:.1f}M parameters; {s.num_inference_steps} LocDiT steps, "
            f"guidance {s.guidance_scale:g}, temperature {s.temperature:g}, {s.num_candidates} candidate(s)"
            + (
                f" pruned after {s.candidate_prune_after_patches} patches"
                if s.num_candidates > 1 and s.candidate_prune_after_patches
                else ""
            )
            + (f"; LocDiT in {dtype}" if (dtype := self.model.locdit.in_proj.weight.dtype) != torch.float32 else "")
            + (f"; matmuls in {self.model.matmul_dtype}" if self.model.matmul_dtype != torch.float32 else "")
            + (
                f"; candidates sampled with {'the candidate LocDiT' if student else 'LocDiT'} at "
                f"{s.candidate_num_inference_steps or s.num_inference_steps} step(s)"
                if s.num_candidates > 1 and (student or s.candidate_num_inference_steps)
                else ""
            )
        )

    def units(self, seconds):
        return round(seconds * PATCHES_PER_SECOND)

    def inputs(self, seconds, batch):
        key = (seconds, batch)
        if key not in self._inputs:
            self._inputs[key] = self.pipe.encode_inputs(
                [text_for(seconds)] * batch, prompt_audio(), PROMPT_TEXT, SAMPLING_RATE
            )
        return self._inputs[key]

    def generate(self, seconds, batch, patches):
        inputs = self.inputs(seconds, batch)
        extra = {} if self.num_candidates is None else {"num_candidates": self.num_candidates}
        return self.model.generate(
            inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            prompt_features=inputs["prompt_features"],
            prompt_attention_mask=inputs["prompt_attention_mask"],
            speech_position_rate=inputs.get("speech_position_rate"),
            max_new_patches=patches,
            generator=torch.Generator().manual_seed(0),
            **extra,
        )

    def run(self, seconds, batch, units, timing):
        timed_run(lambda: self.generate(seconds, batch, units), timing, self.quiet_wait)

    def stream(self, seconds):
        """The pipeline's stream of a `seconds`-long text, seeded, with the system's candidate policy."""
        extra = {} if self.num_candidates is None else {"num_candidates": self.num_candidates}
        return self.pipe.stream(
            text_for(seconds),
            prompt_audio=prompt_audio(),
            prompt_text=PROMPT_TEXT,
            sampling_rate=SAMPLING_RATE,
            max_new_patches=self.units(seconds),
            generator=torch.Generator().manual_seed(0),
            **extra,
        )

    def first_audio(self, seconds, timing):
        def first():
            stream = self.stream(seconds)
            next(stream)
            stream.close()

        timed_run(first, timing, self.quiet_wait)
        return True

    def gapless_start(self, seconds, threads=1) -> float:
        """Seconds from the call until playback can start and never run dry: over the whole stream, the latest
        chunk arrival minus the audio before it. A stream that stays ahead of playback gives its first chunk's time;
        one that pauses (say, to rank candidates) after a short first chunk gives more."""
        wait_until_quiet(threads, self.quiet_wait)  # as timed runs with `threads` threads wait
        started = time.perf_counter()
        stream = self.stream(seconds)
        arrivals, durations = [], []
        for chunk in stream:
            arrivals.append(time.perf_counter() - started)
            durations.append(len(chunk) / self.pipe.sample_rate)
        return gapless_start(arrivals, durations)

    def decode(self, seconds, timing):
        frames = torch.randn(round(seconds * FRAMES_PER_SECOND), self.model.config.feature_dim)
        timed_run(lambda: self.pipe._streaming_vocoder().decode(frames), timing, self.quiet_wait)
        return True

    def flops(self, seconds):
        mapping = flop_counter_mapping()
        counted = linear_flops(
            lambda n: count_flops(lambda: self.generate(seconds, 1, n), mapping), 16, 24, self.units(seconds)
        )
        return counted, None  # Griffin-Lim (FFTs) is not counted by FlopCounterMode


class PocketSystem(BenchSystem):
    name = "pocket"
    min_units = 8

    def __init__(self, config=None, codec_config=None):
        from .pocket import build_pocket_tts

        self.model, self.codec = build_pocket_tts(config, codec_config)
        self.params = count_parameters(self.model)
        self.codec_params = count_parameters(self.codec)
        self._inputs: dict = {}

    def describe(self):
        c = self.model.config
        return (
            f"pocket: PocketTTSForConditionalGeneration {self.params / 1e6:.1f}M + codec decoder "
            f"{self.codec_params / 1e6:.1f}M, random weights; {c.hidden_size} wide x {c.num_hidden_layers} layers, "
            f"1-step LSD flow head, {c.frame_rate:g} frames/s, fixed length"
        )

    def units(self, seconds):
        from .pocket import frames_for

        return frames_for(self.model, seconds)

    def inputs(self, seconds, batch):
        from .pocket import pocket_inputs

        key = (seconds, batch)
        if key not in self._inputs:
            self._inputs[key] = pocket_inputs(self.model, len(PROMPT_TEXT) + 1 + len(text_for(seconds)), batch)
        return self._inputs[key]

    def run(self, seconds, batch, units, timing):
        from .pocket import pocket_generate

        inputs = self.inputs(seconds, batch)
        timed_run(lambda: pocket_generate(self.model, inputs, units), timing, self.quiet_wait)

    def first_audio(self, seconds, timing):
        from .pocket import pocket_first_audio

        timed_run(lambda: pocket_first_audio(self.model, self.codec, self.inputs(seconds, 1)), timing, self.quiet_wait)
        return True

    def decode(self, seconds, timing):
        from .pocket import pocket_decode

        latents = torch.randn(1, self.units(seconds), self.model.config.latent_dim)
        timed_run(lambda: pocket_decode(self.codec, latents), timing, self.quiet_wait)
        return True

    def flops(self, seconds):
        from .pocket import pocket_decode, pocket_generate

        mapping, inputs = flop_counter_mapping(), self.inputs(seconds, 1)
        gen = linear_flops(
            lambda n: count_flops(lambda: pocket_generate(self.model, inputs, n), mapping), 4, 12, self.units(seconds)
        )
        latents = torch.randn(1, self.units(seconds), self.model.config.latent_dim)
        return gen, count_flops(lambda: pocket_decode(self.codec, latents), mapping)


class NARSystem(BenchSystem):
    name = "nar"

    def __init__(self, target_parameters: int, tokenizer, prompt_features: torch.Tensor):
        self.nar = build_nar("ship", target_parameters, len(tokenizer))
        self.tokenizer, self.prompt_features = tokenizer, prompt_features
        self.params = count_parameters(self.nar)
        self._inputs: dict = {}

    def describe(self):
        return (
            f"nar: NAR DiT baseline {self.params / 1e6:.1f}M ({len(self.nar.blocks)} blocks), random weights; "
            f"{NAR_STEPS} Euler steps, CFG packed, 80-bin mel at 16 kHz (no vocoder timed)"
        )

    def units(self, seconds):
        return NAR_STEPS

    def inputs(self, seconds, batch):
        key = (seconds, batch)
        if key not in self._inputs:
            self._inputs[key] = nar_inputs(
                self.nar, self.tokenizer, self.prompt_features, text_for(seconds), seconds, batch
            )
        return self._inputs[key]

    def run(self, seconds, batch, units, timing):
        prompt, ids = self.inputs(seconds, batch)
        timed_run(lambda: nar_sample(self.nar, prompt, ids, steps=NAR_STEPS, run_steps=units), timing, self.quiet_wait)

    def flops(self, seconds):
        prompt, ids = self.inputs(seconds, 1)
        step = count_flops(lambda: nar_sample(self.nar, prompt, ids, run_steps=1), flop_counter_mapping())
        return step * NAR_STEPS, None


class F5System(BenchSystem):
    """F5-TTS small in its own environment: requests go to `f5_runner.py` over a pipe (JSON lines)."""

    name = "f5"

    def __init__(self, python: str, threads: int, extra_args: tuple[str, ...] = ()):
        if not Path(python).is_file():
            raise FileNotFoundError(
                f"no F5-TTS environment at {python}: run `bash examples/scripts/install_f5tts_bench_env.sh` "
                "(or pass --f5-python)"
            )
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(
            [python, str(Path(__file__).with_name("f5_runner.py")), *extra_args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.threads = threads
        ready = self._read()
        if "error" in ready:
            self.close()
            raise RuntimeError(f"the F5-TTS runner could not start: {ready['error']}")
        self.info = self.request(op="info")
        self.params = self.info["params"]

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            try:
                code = self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                code = None
            raise RuntimeError(
                f"the F5-TTS runner exited (code {code}): is {self.process.args[0]} the python of a working F5-TTS "
                "environment? (examples/scripts/install_f5tts_bench_env.sh makes one)"
            )
        return json.loads(line)

    def request(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"F5-TTS runner: {reply['error']}")
        return reply

    def describe(self):
        i = self.info
        return (
            f"f5: F5-TTS {i['config']} {i['params'] / 1e6:.1f}M + Vocos {i['vocoder_params'] / 1e6:.1f}M, random "
            f"weights, torch {i['torch']} in its own venv; {i['nfe']} NFE, CFG {i['cfg_strength']:g} packed, "
            f"{i['frames_per_second']:g} frames/s"
        )

    def units(self, seconds):
        return self.info["nfe"]

    def _timed(self, timing, **request):
        reply = self.request(threads=self.threads, quiet_wait=self.quiet_wait, **request)
        timing.add(reply["wall"], reply["cpu"], reply["peak_bytes"])

    def run(self, seconds, batch, units, timing):
        self._timed(timing, op="generate", seconds=seconds, batch=batch, steps=units)

    def decode(self, seconds, timing):
        self._timed(timing, op="vocode", seconds=seconds)
        return True

    def flops(self, seconds):
        reply = self.request(op="flops", seconds=seconds)
        return reply["nfe"] * self.info["nfe"], reply["vocoder"]

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.flush()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()


def build_systems(names, args, log, skipped: list | None = None) -> list[BenchSystem]:
    """The requested systems; one that cannot be built (F5 without its environment) is skipped with the reason, which
    is logged and appended to `skipped` as `(name, reason)`."""
    from modeling_ditar import DiTARPipeline

    unknown = [n for n in names if n not in SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}: choose from {', '.join(SYSTEMS)}")
    pipe = DiTARPipeline.from_pretrained(args.ditar_model) if args.ditar_model else DiTARPipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    source = f"pipeline {args.ditar_model}" if args.ditar_model else "shipped default"
    with torch.no_grad():
        pipe.model.stop_head.weight.zero_()
        pipe.model.stop_head.bias.fill_(-30.0)  # never stops: the length comes from max_new_patches
    systems = []
    for name in names:
        try:
            if name == "ditar":
                systems.append(DiTARSystem(pipe, source=source))
            elif name == "ditar-1cand":
                systems.append(DiTARSystem(pipe, num_candidates=1, name="ditar-1cand", source=source))
            elif name == "ditar-fp32":
                fp32 = copy.deepcopy(pipe)
                fp32.model.set_matmul_dtype(torch.float32)
                systems.append(DiTARSystem(fp32, name="ditar-fp32", source=source))
            elif name == "ditar-bf16":
                bf16 = copy.deepcopy(pipe)
                bf16.model.set_matmul_dtype(torch.bfloat16)
                systems.append(DiTARSystem(bf16, name="ditar-bf16", source=source))
            elif name == "ditar-locbf16":
                locbf16 = copy.deepcopy(pipe)
                locbf16.model.set_matmul_dtype(torch.float32)
                locbf16.model.set_locdit_dtype(torch.bfloat16)
                systems.append(DiTARSystem(locbf16, name="ditar-locbf16", source=source))
            elif name == "pocket":
                systems.append(PocketSystem())
            elif name == "nar":
                warm = pipe.encode_inputs([text_for(5)], prompt_audio(), PROMPT_TEXT, SAMPLING_RATE)
                prompt = warm["prompt_features"][0, : int(warm["prompt_attention_mask"][0].sum())]
                systems.append(NARSystem(count_parameters(pipe.model), pipe.processor.tokenizer, prompt))
            elif name == "f5":
                systems.append(F5System(args.f5_python, args.threads))
        except (FileNotFoundError, RuntimeError, ImportError) as error:
            log(f"  skipping {name}: {error}")
            if skipped is not None:
                skipped.append((name, str(error)))
    for system in systems:
        system.quiet_wait = args.quiet_wait
    return systems


def estimate_unit_time(system, seconds, batch, unit_time) -> float | None:
    """Seconds per unit at this point, scaled from the latest measured point of the system: linearly in the batch,
    and for the NAR models (whole sequence per step) in the sequence length with its 3 s prompt."""
    if system.name not in unit_time:
        return None
    known_seconds, known_batch, per_unit = unit_time[system.name]
    scale = batch / known_batch
    if system.min_units == 1:
        scale *= (seconds + 3.0) / (known_seconds + 3.0)
    return per_unit * scale


FIRST_STEPS = 2  # ODE steps timed at a NAR model's first point, before any estimate of its step time


def plan_units(system, seconds, batch, unit_time, args) -> int:
    """Units to time for this point: all of them, or the prefix that fits the budget (`--ditar-budget` for the
    autoregressive systems, `--nar-budget` and at most `--nar-timed-steps` steps for the NAR ones); 0 skips the point
    (one ODE step estimated over `--nar-max-step-seconds`)."""
    units = system.units(seconds)
    estimate = estimate_unit_time(system, seconds, batch, unit_time)
    if system.min_units == 1:  # NAR: every step costs the same
        if estimate is None:
            return min(units, FIRST_STEPS, args.nar_timed_steps)
        if estimate > args.nar_max_step_seconds:
            return 0
        return max(1, min(units, args.nar_timed_steps, int(args.nar_budget / estimate)))
    if estimate is None or estimate * units <= args.ditar_budget:
        return units
    return max(system.min_units, min(units, int(args.ditar_budget / estimate)))


def measure_grid(systems, args, log):
    """Rows, one per (system, length, batch), all systems interleaved per round."""
    unit_time: dict = {}
    flops: dict = {}
    for system in systems:  # warm-up: allocator, kernels, the prompt's features
        start, wait = time.perf_counter(), system.quiet_wait
        system.quiet_wait = 0.0
        system.prepare(2.0, 1)
        system.run(2.0, 1, system.min_units, Timing(threads=args.threads))  # short: warm-up is untimed
        system.quiet_wait = wait
        log(f"  warm-up {system.name}: {time.perf_counter() - start:.1f} s")
    for seconds in args.seconds:
        if not args.no_flops:
            for system in systems:
                flops[(system.name, seconds)] = system.flops(seconds)
        for batch in args.batches:
            plans = {s.name: plan_units(s, seconds, batch, unit_time, args) for s in systems}
            timings = {s.name: Timing(threads=args.threads) for s in systems}
            for system in systems:  # inputs are encoded here, not inside the first timed run (batch 1 or not)
                if plans[system.name]:
                    system.prepare(seconds, batch)
            for _ in range(args.repeats):
                for system in systems:
                    if plans[system.name]:
                        system.run(seconds, batch, plans[system.name], timings[system.name])
            for system in systems:
                units, timing = plans[system.name], timings[system.name]
                row = dict(
                    system=system.name,
                    params=system.params,
                    seconds=seconds,
                    batch=batch,
                    threads=args.threads,
                    units=system.units(seconds),
                    timed_units=units,
                    wall=timing.best * system.units(seconds) / units if units else None,
                    clean=timing.is_clean if units else None,
                    peak_mb=timing.peak_bytes / 2**20 if units else None,
                    load=os.getloadavg()[0],
                )
                if units:
                    unit_time[system.name] = (seconds, batch, timing.best / units)
                if (system.name, seconds) in flops:
                    gen, dec = flops[(system.name, seconds)]
                    row["gflop_per_audio_s"] = gen / seconds / 1e9
                    row["decoder_gflop_per_audio_s"] = dec / seconds / 1e9 if dec is not None else None
                if batch == 1 and units:
                    row.update(batch1_extras(system, seconds, args))
                log(format_row(row))
                yield row


def batch1_extras(system, seconds, args) -> dict:
    """First audio and decoder time at batch 1 (best of `repeats`)."""
    out = {}
    first, decode = Timing(threads=args.threads), Timing(threads=args.threads)
    for _ in range(args.repeats):
        if not system.first_audio(seconds, first):
            break
    if first.walls:
        out["first_audio_s"] = first.best
    gapless = [system.gapless_start(seconds, args.threads) for _ in range(args.repeats)]
    if gapless and gapless[0] is not None:
        out["gapless_start_s"] = min(gapless)
    for _ in range(args.repeats):
        if not system.decode(seconds, decode):
            break
    if decode.walls:
        out["decoder_wall"] = decode.best
    return out


def format_row(r) -> str:
    if r["wall"] is None:
        return f"  {r['system']:<12} {r['seconds']:>4g} s x{r['batch']:<2d}: skipped (one step over the limit)"
    first = f"  first audio {r['first_audio_s'] * 1e3:.0f} ms" if "first_audio_s" in r else ""
    if r.get("gapless_start_s") is not None:
        first += f" (gap-free start {r['gapless_start_s'] * 1e3:.0f} ms)"
    return (
        f"  {r['system']:<12} {r['seconds']:>4g} s x{r['batch']:<2d}: RTF {r['wall'] / r['seconds']:.3f}"
        f"{'' if r['clean'] else ' (contended)'}{'' if r['timed_units'] == r['units'] else ' (projected)'}{first}"
    )


def first_audio_of(r):
    """Time to the first playable audio: measured where the system streams, else the whole generation + decoder."""
    if r.get("first_audio_s") is not None:
        return r["first_audio_s"], ""
    if r.get("wall") is None:
        return None, ""
    return r["wall"] + (r.get("decoder_wall") or 0.0), "=" if r.get("decoder_wall") is not None else ">"


def systems_table(rows) -> str:
    lines = [
        "| system | params | speech s | batch | RTF | audio-s / s | first audio ms | e2e RTF (+decoder) | "
        "GFLOP / s-audio (+decoder) | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["wall"] is None:
            lines.append(
                f"| {r['system']} | {r['params'] / 1e6:.1f}M | {r['seconds']:g} | {r['batch']} | skipped | | | | | |"
            )
            continue
        mark = "" if r["timed_units"] == r["units"] else "~"
        flag = "" if r["clean"] else "*"
        first, how = first_audio_of(r) if r["batch"] == 1 else (None, "")
        first_text = f"{how}{first * 1e3:.0f}" if first is not None else ""
        if first is not None and r.get("gapless_start_s") is not None:
            first_text += f" ({r['gapless_start_s'] * 1e3:.0f})"
        e2e = f"{(r['wall'] + r['decoder_wall']) / r['seconds']:.3f}" if r.get("decoder_wall") is not None else ""
        flops = ""
        if r.get("gflop_per_audio_s") is not None:
            flops = f"{r['gflop_per_audio_s']:.1f}"
            if r.get("decoder_gflop_per_audio_s") is not None:
                flops += f" (+{r['decoder_gflop_per_audio_s']:.1f})"
        lines.append(
            f"| {r['system']} | {r['params'] / 1e6:.1f}M | {r['seconds']:g} | {r['batch']} | "
            f"{mark}{r['wall'] / r['seconds']:.3f}{flag} | {r['batch'] * r['seconds'] / r['wall']:.2f} | "
            f"{first_text} | {e2e} | {flops} | {r['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


SYSTEMS_NOTES = (
    "~ projected from a timed prefix (a flat-cost share of the patches, frames or ODE steps); * no clean run (CPU "
    "shared with other work). First audio: DiTAR's first streamed chunk (`pipe.stream`), Pocket TTS's first frame + "
    "its codec decode (transformers' Pocket TTS does not stream); '=' the whole generation + vocoder (F5), '>' the "
    "whole generation without a vocoder (NAR). e2e adds the system's decoder for one row: Griffin-Lim (DiTAR), the "
    "Pocket TTS codec decoder, Vocos (F5). GFLOP counted with FlopCounterMode (attention added); Griffin-Lim's FFTs "
    "are not counted."
)


__all__ = ["SYSTEMS", "SYSTEMS_NOTES", "build_systems", "measure_grid", "systems_table"]

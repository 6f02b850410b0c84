#!/usr/bin/env python
"""Where the time of one pipeline call goes: exclusive wall time per component (LocDiT, backbone, aggregation encoder,
candidate scoring, vocoder, everything else), averaged over a few calls after a warm-up.

    python examples/research/profile_call.py --threads 2 --calls 3
    python examples/research/profile_call.py --setting "steps2=num_inference_steps=2" --setting "one=num_candidates=1"
    python examples/research/profile_call.py --first-audio --setting "steps1=num_inference_steps=1"

`--first-audio` times `pipe.stream(...)` up to its first chunk instead of a whole call: what a listener waits for.

Each component is timed with forward pre/post hooks (or a wrapper for candidate scoring). Time is exclusive: while a
nested component runs (the backbone inside candidate scoring), the outer one's clock stops, so the rows add up to the
wall time of the call. Hooks cost a few microseconds per call; with hundreds of LocDiT calls that is well under 1%.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch

import modeling_ditar.modeling_ditar as modeling
from modeling_ditar import DiTARPipeline

TEXT = "The quick brown fox jumps over the lazy dog near the river bank."


class ExclusiveTimer:
    """Exclusive wall time per label, with nesting: entering a label pauses the one that was running."""

    def __init__(self):
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[tuple[str, float]] = []

    def enter(self, label: str) -> None:
        now = time.perf_counter()
        if self.stack:
            outer, since = self.stack[-1]
            self.totals[outer] += now - since
        self.stack.append((label, now))
        self.calls[label] += 1

    def leave(self) -> None:
        now = time.perf_counter()
        label, since = self.stack.pop()
        self.totals[label] += now - since
        if self.stack:
            outer, _ = self.stack[-1]
            self.stack[-1] = (outer, now)

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()


def hook(module: torch.nn.Module, label: str, timer: ExclusiveTimer) -> None:
    module.register_forward_pre_hook(lambda *_: timer.enter(label))
    module.register_forward_hook(lambda *_: timer.leave())


def wrap(owner, name: str, label: str, timer: ExclusiveTimer) -> None:
    function = getattr(owner, name)

    def timed(*args, **kwargs):
        timer.enter(label)
        try:
            return function(*args, **kwargs)
        finally:
            timer.leave()

    setattr(owner, name, timed)


def parse_setting(text: str) -> tuple[str, dict]:
    label, _, assignments = text.partition("=")
    settings = {}
    for item in filter(None, assignments.split(",")):
        key, _, value = item.partition("=")
        settings[key] = json.loads(value)
    return label, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="pipeline folder (default: the embedded default)")
    parser.add_argument("--text", default=TEXT)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32", help="model dtype")
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--first-audio", action="store_true", help="time the stream up to its first chunk")
    parser.add_argument(
        "--setting",
        action="append",
        default=None,
        help='LABEL=key=value,key=value (JSON values), e.g. "steps2=num_inference_steps=2"; default: the shipped one',
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = DiTARPipeline.from_pretrained(args.model) if args.model else DiTARPipeline.from_pretrained()
    pipe.set_progress_bar_config(disable=True)
    pipe.model.to(getattr(torch, args.dtype))
    timer = ExclusiveTimer()
    model = pipe.model
    hook(model.locdit, "LocDiT", timer)
    if model.candidate_locdit is not None:
        hook(model.candidate_locdit, "candidate LocDiT", timer)
    # The backbone is timed by wrapping what calls it: hooks on it would turn off its lean one-token step, which steps
    # aside for hooks (modeling_ditar.backbone_decoding).
    wrap(model, "_run_backbone", "backbone", timer)
    wrap(modeling, "decode_step", "backbone (one-token steps)", timer)
    hook(model.aggregation_encoder, "aggregation encoder", timer)
    hook(pipe.vocoder, "vocoder", timer)
    wrap(model, "score_candidates", "candidate scoring (rest)", timer)
    wrap(modeling, "prefix_ctc_loss", "candidate pruning (prefix CTC)", timer)
    wrap(type(pipe.processor), "__call__", "processor (text, prompt features)", timer)
    settings = [parse_setting(s) for s in (args.setting or ["shipped="])]

    def call(kwargs):
        """Seconds of speech of the whole call, or of the first chunk with --first-audio."""
        if not args.first_audio:
            out = pipe(args.text, generator=torch.manual_seed(0), **kwargs)
            return out.audio_lengths[0] / pipe.sample_rate
        chunks = pipe.stream(args.text, generator=torch.manual_seed(0), **kwargs)
        first = next(iter(chunks))
        chunks.close()
        return len(first) / pipe.sample_rate

    for label, kwargs in settings:
        call(kwargs)  # warm-up
        timer.reset()
        walls, seconds = [], 0.0
        for _ in range(args.calls):
            timer.enter("rest (Python, sampler, text, glue)")
            start = time.perf_counter()
            seconds = call(kwargs)
            walls.append(time.perf_counter() - start)
            timer.leave()
        wall = sum(walls) / len(walls)
        name = label or "shipped"
        what = "first chunk" if args.first_audio else "call"
        print(f"\n{name} {kwargs}: {wall:.3f} s per {what} for {seconds:.2f} s of speech, RTF {wall / seconds:.3f}")
        for name, total in sorted(timer.totals.items(), key=lambda item: -item[1]):
            share = total / args.calls
            print(f"  {name:36s} {share:7.3f} s {100 * share / wall:5.1f}%  {timer.calls[name] // args.calls:5d} calls")


if __name__ == "__main__":
    main()

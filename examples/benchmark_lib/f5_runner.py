"""F5-TTS small with random weights, timed inside its own environment for `examples/benchmark.py` (`--systems f5`).

Run by the benchmark as a long-lived subprocess with the F5 environment's python
(`bash examples/scripts/install_f5tts_bench_env.sh` makes it), so that its timed runs interleave with the other systems'
round by round. Protocol: one JSON request per line on stdin, one JSON answer per line on stdout (everything else that
F5-TTS or its dependencies print goes to stderr):

    {"op": "info"}                                         -> parameters, frame rate, settings
    {"op": "generate", "seconds": 10, "batch": 1, "steps": 4, "threads": 1}
                                                           -> {"wall", "cpu", "peak_bytes", "clean"}: `steps` of the
                                                              32 NFE (every step costs the same; the caller scales)
    {"op": "vocode", "seconds": 10, "threads": 1}          -> the same timing for Vocos on one row
    {"op": "flops", "seconds": 10}                         -> {"nfe": FLOPs of one NFE (CFG packed), "vocoder": ...}
    {"op": "quit"}

The model: `f5_tts.model.CFM` around `f5_tts.model.DiT` with the arch of the package's `configs/F5TTS_v1_Small.yaml`
(dim 768, depth 18, heads 12, FFN x2, text dim 512, 4 ConvNeXt text layers), the package's character vocabulary,
100 log-mel bins at 24 kHz with hop 256 (93.75 frames/s). Sampling as the package's inference defaults: 32 Euler steps
(NFE), CFG strength 2 with the conditional and unconditional branches packed in one batch, sway sampling -1. A 3 s
prompt (its mel given, as the other systems are given their prompt features) and its transcript, then a fixed output
length. The vocoder: Vocos built from the published mel-24 kHz config (ConvNeXt backbone 512 wide, 8 layers, FFN 1536,
ISTFT head n_fft 1024 / hop 256), random weights. Nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import os
import sys
from importlib.resources import files
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark_lib.measure import Timing, attention_flop_mapping, count_flops, timed_run  # noqa: E402

FRAMES_PER_SECOND = 24000 / 256
PROMPT_SECONDS = 3.0
NFE, CFG_STRENGTH, SWAY = 32, 2.0, -1.0
VOCOS_CONFIG = dict(dim=512, intermediate_dim=1536, num_layers=8, n_fft=1024, hop_length=256, n_mels=100)
# the benchmark's texts (benchmark_lib/models.py), kept in step by hand: this environment cannot import that module
PROMPT_TEXT = "This is the voice that the model should imitate."
SENTENCE = (
    "The quick brown fox jumps over the lazy dog, and then it runs across the wide green field "
    "to find a quiet place under the old oak tree. "
)
CHARS_PER_SECOND = 14.0


def text_for(seconds: float) -> str:
    chars = max(20, round(seconds * CHARS_PER_SECOND))
    text = (SENTENCE * math.ceil(chars / len(SENTENCE)))[:chars]
    return text.rsplit(" ", 1)[0].rstrip(",") + "."


def read_arch(config_name: str) -> dict:
    """The `model.arch` block of one of the package's training configs (e.g. F5TTS_v1_Small)."""
    import yaml

    path = files("f5_tts").joinpath(f"configs/{config_name}.yaml")
    if not path.is_file():
        raise ValueError(f"f5_tts has no config {config_name!r}; see {files('f5_tts').joinpath('configs')}")
    arch = dict(yaml.safe_load(path.read_text())["model"]["arch"])
    arch.pop("checkpoint_activations", None)
    return arch


def build_f5(config_name: str = "F5TTS_v1_Small", arch_overrides: dict | None = None, seed: int = 0):
    """Random-weight F5-TTS (CFM + DiT) of the named package config, and its character map. Returns (cfm, vocab)."""
    from f5_tts.model import CFM, DiT
    from f5_tts.model.utils import get_tokenizer

    vocab_map, vocab_size = get_tokenizer(str(files("f5_tts").joinpath("infer/examples/vocab.txt")), "custom")
    arch = {**read_arch(config_name), **(arch_overrides or {})}
    torch.manual_seed(seed)
    transformer = DiT(**arch, text_num_embeds=vocab_size, mel_dim=100)
    mel = dict(n_fft=1024, hop_length=256, win_length=1024, n_mel_channels=100, target_sample_rate=24000)
    cfm = CFM(
        transformer=transformer, mel_spec_kwargs=mel, odeint_kwargs=dict(method="euler"), vocab_char_map=vocab_map
    )
    return cfm.eval(), vocab_map


def build_vocos(overrides: dict | None = None, seed: int = 0):
    """Random-weight Vocos of the published mel-24 kHz shape (`VOCOS_CONFIG`), built without a download."""
    from vocos import Vocos
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    c = {**VOCOS_CONFIG, **(overrides or {})}
    torch.manual_seed(seed)
    return Vocos(
        MelSpectrogramFeatures(sample_rate=24000, n_fft=c["n_fft"], hop_length=c["hop_length"], n_mels=c["n_mels"]),
        VocosBackbone(
            input_channels=c["n_mels"], dim=c["dim"], intermediate_dim=c["intermediate_dim"], num_layers=c["num_layers"]
        ),
        ISTFTHead(dim=c["dim"], n_fft=c["n_fft"], hop_length=c["hop_length"], padding="same"),
    ).eval()


def f5_inputs(seconds: float, batch: int, seed: int = 0):
    """Prompt mel [batch, prompt frames, 100], texts (prompt transcript + text), total frames (prompt + output)."""
    if seconds <= 0 or batch < 1:
        raise ValueError(f"seconds ({seconds}) and batch ({batch}) must be positive")
    prompt_frames = round(PROMPT_SECONDS * FRAMES_PER_SECOND)
    cond = torch.randn(batch, prompt_frames, 100, generator=torch.Generator().manual_seed(seed))
    texts = [PROMPT_TEXT + " " + text_for(seconds)] * batch
    return cond, texts, prompt_frames + round(seconds * FRAMES_PER_SECOND)


@torch.no_grad()
def f5_generate(cfm, seconds: float, batch: int, steps: int = NFE):
    """`steps` Euler steps of the sampler (NFE 32 unless timing a prefix). Returns mel [batch, frames, 100]."""
    cond, texts, duration = f5_inputs(seconds, batch)
    out, _ = cfm.sample(
        cond=cond, text=texts, duration=duration, steps=steps, cfg_strength=CFG_STRENGTH, sway_sampling_coef=SWAY
    )
    return out


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


class Runner:
    def __init__(self, config_name: str, arch_overrides: dict | None = None, vocos_overrides: dict | None = None):
        self.config_name = config_name
        self.cfm, _ = build_f5(config_name, arch_overrides)
        self.vocos = build_vocos(vocos_overrides)
        f5_generate(self.cfm, 1.0, 1, steps=1)  # warm-up (allocator, kernels)

    def handle(self, request: dict) -> dict:
        op = request.get("op")
        if op == "info":
            return dict(
                config=self.config_name,
                params=count(self.cfm.transformer),
                vocoder_params=count(self.vocos),
                frames_per_second=FRAMES_PER_SECOND,
                nfe=NFE,
                cfg_strength=CFG_STRENGTH,
                torch=torch.__version__,
            )
        if op == "generate":
            torch.set_num_threads(int(request.get("threads", 1)))
            timing = Timing(threads=int(request.get("threads", 1)))
            seconds, batch, steps = float(request["seconds"]), int(request["batch"]), int(request.get("steps", NFE))
            timed_run(lambda: f5_generate(self.cfm, seconds, batch, steps), timing, request.get("quiet_wait", 20.0))
            return dict(wall=timing.walls[0], cpu=timing.cpus[0], peak_bytes=timing.peak_bytes, clean=timing.is_clean)
        if op == "vocode":
            torch.set_num_threads(int(request.get("threads", 1)))
            timing = Timing(threads=int(request.get("threads", 1)))
            frames = round(float(request["seconds"]) * FRAMES_PER_SECOND)
            mel = torch.randn(1, 100, frames)
            with torch.no_grad():
                timed_run(lambda: self.vocos.decode(mel), timing, request.get("quiet_wait", 20.0))
            return dict(wall=timing.walls[0], cpu=timing.cpus[0], peak_bytes=timing.peak_bytes, clean=timing.is_clean)
        if op == "flops":
            seconds = float(request["seconds"])
            mapping = attention_flop_mapping()  # CPU attention, which FlopCounterMode does not count
            nfe = count_flops(lambda: f5_generate(self.cfm, seconds, 1, steps=1), mapping)
            mel = torch.randn(1, 100, round(seconds * FRAMES_PER_SECOND))
            with torch.no_grad():
                vocoder = count_flops(lambda: self.vocos.decode(mel), mapping)
            return dict(nfe=nfe, vocoder=vocoder)
        raise ValueError(f"unknown op {op!r}: use info, generate, vocode, flops or quit")


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="F5TTS_v1_Small", help="a config name from f5_tts/configs")
    parser.add_argument("--arch", default="{}", help="JSON overrides of the DiT arch (tests use a tiny one)")
    parser.add_argument("--vocos", default="{}", help="JSON overrides of VOCOS_CONFIG")
    args = parser.parse_args(argv)
    answer = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # whatever the libraries print must not corrupt the answers
    try:
        runner = Runner(args.config, json.loads(args.arch), json.loads(args.vocos))
    except Exception as error:  # reported to the benchmark, which skips the row and says why
        answer.write(json.dumps(dict(error=f"{type(error).__name__}: {error}")) + "\n")
        return 1
    answer.write(json.dumps(dict(ready=True)) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("op") == "quit":
            break
        try:
            reply = runner.handle(request)
        except Exception as error:
            reply = dict(error=f"{type(error).__name__}: {error}")
        answer.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

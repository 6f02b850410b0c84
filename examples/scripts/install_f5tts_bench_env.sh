#!/usr/bin/env bash
# Separate environment for the F5-TTS row of examples/benchmark.py (`--systems f5`). F5-TTS is never a dependency of
# this package: it lives in its own venv, which benchmark.py runs as a subprocess (examples/benchmark_lib/f5_runner.py).
#
#   bash examples/scripts/install_f5tts_bench_env.sh            # creates .venv-f5 (git-ignored)
#   F5_VENV=/tmp/f5-venv bash examples/scripts/install_f5tts_bench_env.sh
#
# Torch: the same CPU build as .venv (setup.sh installs torch==2.13.0 first for that reason). The f5-tts wheel asks
# for torchaudio, whose newest release pins an older torch, and for gradio, bitsandbytes and the training stack, so
# pip must not resolve it: f5-tts, torchaudio, vocos and encodec go in with --no-deps (the benchmark uses the model,
# the mel front end and the Vocos vocoder only, all pure Python on top of torch), and the packages their imports need
# are listed below with torch pinned, so that no other torch build can be pulled in.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${F5_VENV:-.venv-f5}
TORCH_VERSION=${TORCH_VERSION:-$(.venv/bin/python -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null \
  || echo 2.13.0)}
F5_VERSION=${F5_VERSION:-1.1.22}

python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -U pip
"$VENV/bin/pip" install -q "torch==$TORCH_VERSION"  # the CPU build, as in setup.sh
# what `import f5_tts.model` and `import vocos` need (f5_tts.model's __init__ also imports its trainer)
"$VENV/bin/pip" install -q "torch==$TORCH_VERSION" numpy scipy einops einx loguru packaging pyyaml tqdm \
  x_transformers torchdiffeq ema_pytorch accelerate wandb datasets librosa soundfile pypinyin rjieba \
  safetensors huggingface_hub
"$VENV/bin/pip" install -q --no-deps "f5-tts==$F5_VERSION" torchaudio vocos encodec
# torchaudio's compiled extensions are built against its own (CUDA) torch release and fail to load on this torch
# (libc10_cuda.so); without them torchaudio imports as pure Python, which covers what F5-TTS and Vocos use here
# (MelSpectrogram and friends). torchaudio/_extension treats missing libraries as "not built", not as an error.
"$VENV/bin/python" - <<'PY'
import importlib.util
from pathlib import Path

lib = Path(importlib.util.find_spec("torchaudio").origin).parent / "lib"
for path in sorted(lib.glob("*.so")):
    path.unlink()
    print(f"removed {path.name} (built for another torch)")
PY
"$VENV/bin/python" - <<'PY'
import torch
import f5_tts
from f5_tts.model import CFM, DiT  # noqa: F401
from vocos import Vocos  # noqa: F401

print(f"F5-TTS benchmark environment ready: torch {torch.__version__}, f5_tts in {list(f5_tts.__path__)[0]}")
PY

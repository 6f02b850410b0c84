#!/usr/bin/env bash
# Create .venv with everything needed to run the examples and the tests (CPU).
# System packages (installed when run as root on a machine with apt-get; skipped when already present):
#   espeak-ng  the text front end's phonemes and the synthetic training voices
#   fortunes   sentences for the synthetic corpus (examples/build_corpus.py) and its tests
#   flite      out-of-domain evaluation voices (examples/make_ood_cases.py) and its tests
set -euo pipefail
cd "$(dirname "$0")"
missing=()
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
[ -d /usr/share/games/fortunes ] || missing+=(fortunes)
command -v flite >/dev/null 2>&1 || missing+=(flite)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing system packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: missing system packages ${missing[*]} (install them with your package manager;" \
         "some tests and corpus tools need them)" >&2
  fi
fi
python3 -m venv .venv
. .venv/bin/activate
pip install -q -U pip
# torch first, as the CPU build: from PyPI, Linux gets the multi-GB CUDA build. PyTorch's CPU index serves the CPU
# build where it can be reached; elsewhere (an offline mirror with its own CPU wheel) pip's own configuration decides.
torch_index=()
if python3 -c "import urllib.request; urllib.request.urlopen('https://download.pytorch.org/whl/cpu/', timeout=5)" \
    >/dev/null 2>&1; then
  torch_index=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
pip install -q ${torch_index[@]+"${torch_index[@]}"} torch==2.13.0
pip install -q -e ".[dev,train,serve]"  # synthesis alone needs only `pip install -e .`; the demo: ".[demo]"

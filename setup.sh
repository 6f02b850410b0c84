#!/usr/bin/env bash
# Create .venv with everything needed to run the examples and the tests (CPU).
set -euo pipefail
cd "$(dirname "$0")"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && ! command -v espeak-ng >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null || true
fi
python3 -m venv .venv
. .venv/bin/activate
pip install -q -U pip
pip install -q torch==2.13.0          # the CPU build first, or pip pulls a multi-GB CUDA build
pip install -q -e ".[dev,phonemize,train]"

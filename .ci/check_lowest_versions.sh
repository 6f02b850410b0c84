#!/usr/bin/env bash
# The lowest transformers and diffusers that pyproject.toml allows, checked: a separate venv with exactly those
# versions runs the tests of every entry point (model, pipeline, processor, remote code, transformers' pipeline).
# Usage: bash .ci/check_lowest_versions.sh   (after setup.sh; about 3 minutes on 2 cores, most of it installing)
set -euo pipefail
cd "$(dirname "$0")/.."
lowest() {  # the version after ">=" in the dependency line of $1 in pyproject.toml
  python3 - "$1" <<'PY'
import re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
name = sys.argv[1]
spec = next(d for d in deps if re.match(rf"{name}\b", d))
print(re.search(r">=\s*([\w.]+)", spec).group(1))
PY
}
TRANSFORMERS=$(lowest transformers)
DIFFUSERS=$(lowest diffusers)
VENV=.venv-lowest
python3 -m venv "$VENV"
. "$VENV/bin/activate"
pip install -q -U pip
pip install -q torch==2.13.0
pip install -q -e ".[dev]" "transformers==$TRANSFORMERS" "diffusers==$DIFFUSERS"
python -c "import transformers, diffusers; print('lowest allowed: transformers', transformers.__version__, 'diffusers', diffusers.__version__)"
HF_HUB_OFFLINE=1 python -m pytest -q -p no:cacheprovider tests/test_entry_points.py tests/test_remote_code.py \
  tests/test_modeling_ditar.py tests/test_pipeline_ditar.py tests/test_processing_ditar.py \
  tests/test_configuration_ditar.py tests/test_streaming.py tests/test_candidates.py

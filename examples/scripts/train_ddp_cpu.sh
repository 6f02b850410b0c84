#!/usr/bin/env bash
# Two-process data-parallel training on CPU (gloo). `accelerate launch --cpu` always starts ONE process, so torchrun
# is used with ACCELERATE_USE_CPU=1, which Accelerate maps to DistributedType.MULTI_CPU.
#   bash examples/scripts/train_ddp_cpu.sh examples/configs/tiny.yaml runs/tiny_ddp
set -euo pipefail
config=${1:-examples/configs/tiny.yaml}
out=${2:-runs/tiny_ddp}
shift $(( $# > 2 ? 2 : $# ))
# torchrun is on PATH in an activated venv; otherwise the same launcher runs as a module of $PYTHON, else of the
# repository's .venv (setup.sh makes it), else of python3
launcher=(torchrun)
if ! command -v torchrun > /dev/null; then
    python=${PYTHON:-python3}
    [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && python=.venv/bin/python
    launcher=("$python" -m torch.distributed.run)
fi
ACCELERATE_USE_CPU=1 OMP_NUM_THREADS=1 "${launcher[@]}" --nproc_per_node 2 examples/train.py --config "$config" \
    --output-dir "$out" "$@"

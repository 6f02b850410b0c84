#!/usr/bin/env bash
# Two-process data-parallel training on CPU (gloo). `accelerate launch --cpu` always starts ONE process, so torchrun
# is used with ACCELERATE_USE_CPU=1, which Accelerate maps to DistributedType.MULTI_CPU.
#   bash examples/scripts/train_ddp_cpu.sh examples/configs/tiny.yaml runs/tiny_ddp
set -euo pipefail
config=${1:-examples/configs/tiny.yaml}
out=${2:-runs/tiny_ddp}
shift $(( $# > 2 ? 2 : $# ))
ACCELERATE_USE_CPU=1 OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 examples/train.py --config "$config" --output-dir "$out" "$@"

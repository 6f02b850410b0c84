#!/usr/bin/env bash
# The paper's history ablation (K = 0 vs K = 2 clean history patches into LocDiT) in miniature, on 2 CPU cores:
# both arms train the default model from scratch side by side (one core each, same data order, same 800 steps),
# then both are scored by examples/evaluate.py on the same unseen (validation voice, validation sentence) cases.
#   bash examples/research/scripts/history_ablation_cpu.sh [NUM_CASES]
# Re-running resumes unfinished arms from their checkpoints and skips finished evaluations.
set -euo pipefail
cd "$(dirname "$0")/../../.."
num_cases=${1:-12}
cases=data/eval/validation${num_cases}/cases.jsonl

for k in 2 0; do
  out=runs/ablation-history$k
  resume=()
  [ -d "$out/checkpoints" ] && resume=(--resume)
  if [ ! -d "$out/final/model" ]; then
    OMP_NUM_THREADS=1 python examples/train.py --config examples/research/configs/ablation-history$k-cpu.yaml "${resume[@]}" \
      > "runs/ablation-history$k.log" 2>&1 &
  fi
done
wait

[ -f "$cases" ] || python examples/evaluate.py --make-cases-from data/corpus --split validation \
  --num-cases "$num_cases" --min-prompt-seconds 2 --out "$cases"
for k in 2 0; do
  res=outputs/eval/ablation-history$k
  [ -f "$res/results.json" ] || python examples/evaluate.py --cases "$cases" --rows model \
    --pipeline runs/ablation-history$k/final --label "DiTAR K=$k" --threads 1 --out "$res" &
done
wait
python examples/compare_results.py --out docs/research/ablation/history.md \
  --title "History ablation in miniature (2 CPU cores, 800 steps each, from scratch)" \
  --intro "The paper's ablation of LocDiT's historical context: K = 2 clean history patches (with history dropout \
0.5) against K = 0, same model otherwise (examples/configs/default.yaml's 9.9M-parameter shape), same data order, 800 \
steps of 1,600 frames each, trained side by side on one core each. Cases: 12 unseen validation voices, each \
prompted with one of its sentences and asked for another. Made by bash examples/research/scripts/history_ablation_cpu.sh." \
  "DiTAR K=2=outputs/eval/ablation-history2@runs/ablation-history2" \
  "DiTAR K=0=outputs/eval/ablation-history0@runs/ablation-history0"

#!/usr/bin/env bash
# Guided attention on the shipped default, against a control, on 2 CPU cores: both arms continue
# modeling_ditar/default side by side (one core each, same data order, recipe and steps; only
# guided_attention_weight differs), then each is scored on the same 12 unseen validation cases: does a backbone head
# follow the text (examples/research/attention_alignment_probe.py), teacher-forced and free-running speech (examples/evaluate.py).
#   bash examples/research/scripts/guided_attention_cpu.sh
# Re-running resumes unfinished arms from their checkpoints and skips finished evaluations.
set -euo pipefail
cd "$(dirname "$0")/../../.."
cases=data/eval/validation12/cases.jsonl
arms=(guided-attention guided-attention-control)

for arm in "${arms[@]}"; do
  resume=()
  [ -d "runs/$arm/checkpoints" ] && resume=(--resume)
  if [ ! -d "runs/$arm/final/model" ]; then
    OMP_NUM_THREADS=1 python examples/train.py --config "examples/research/configs/$arm-cpu-continue.yaml" "${resume[@]}" \
      > "runs/$arm.log" 2>&1 &
  fi
done
wait

[ -f "$cases" ] || python examples/evaluate.py --make-cases-from data/corpus --split validation \
  --num-cases 12 --min-prompt-seconds 2 --out "$cases"
for arm in "${arms[@]}"; do
  python examples/research/attention_alignment_probe.py --cases "$cases" --pipeline "runs/$arm/final" --threads 2 \
    --plot "runs/$arm/attention.png" > "runs/$arm/alignment.md"
  res=outputs/eval/$arm
  [ -f "$res/results.json" ] || python examples/evaluate.py --cases "$cases" --rows tf,model \
    --pipeline "runs/$arm/final" --label "$arm" --threads 2 --out "$res"
done

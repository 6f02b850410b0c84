#!/usr/bin/env bash
# The paper's patch-size ablation (Table 5) in miniature, on 2 CPU cores: P = 2 and P = 8 frames per patch train the
# default model shape from scratch side by side (one core each, same data order, same 800 steps of 1,600 frames, K = 2
# history patches); the P = 4 arm is the history ablation's K = 2 run (examples/research/configs/ablation-history2-cpu.yaml,
# the same recipe), trained first if it is missing. All three are scored by examples/evaluate.py (teacher-forced and
# free-running rows) on the same unseen (validation voice, validation sentence) cases.
#   bash examples/research/scripts/patch_size_ablation_cpu.sh [NUM_CASES]
# Re-running resumes unfinished arms from their checkpoints and skips finished evaluations; it rewrites the table
# part of docs/research/ablation/patch_size.md (the reading below it is written by hand).
set -euo pipefail
cd "$(dirname "$0")/../../.."
num_cases=${1:-12}
cases=data/eval/validation${num_cases}/cases.jsonl

train_arm() {  # config, output dir, log
  local resume=()
  [ -d "$2/checkpoints" ] && resume=(--resume)
  if [ ! -d "$2/final/model" ]; then
    OMP_NUM_THREADS=1 python examples/train.py --config "$1" "${resume[@]}" > "$3" 2>&1
  fi
}
train_arm examples/research/configs/ablation-history2-cpu.yaml runs/ablation-history2 runs/ablation-history2.log
for p in 2 8; do
  train_arm examples/research/configs/ablation-patch$p-cpu.yaml runs/ablation-patch$p runs/ablation-patch$p.log &
done
wait

[ -f "$cases" ] || python examples/evaluate.py --make-cases-from data/corpus --split validation \
  --num-cases "$num_cases" --min-prompt-seconds 2 --out "$cases"
evaluate_arm() {  # patch size, run dir
  local res=outputs/eval/ablation-patch$1
  [ -f "$res/results.json" ] || python examples/evaluate.py --cases "$cases" --rows tf,model \
    --pipeline "$2/final" --label "DiTAR P=$1" --threads 1 --out "$res"
}
evaluate_arm 4 runs/ablation-history2 &
evaluate_arm 2 runs/ablation-patch2 &
wait
evaluate_arm 8 runs/ablation-patch8
reading=$(sed -n '/^## Reading/,$p' docs/research/ablation/patch_size.md 2>/dev/null || true)
python examples/compare_results.py --out docs/research/ablation/patch_size.md \
  --title "Patch-size ablation in miniature (2 CPU cores, 800 steps each, from scratch)" \
  --intro "The paper's Table 5 ablation of the patch size P (frames per patch; the backbone runs at 50/P Hz): P = 2, \
4 and 8, same model otherwise (examples/configs/default.yaml's shape, K = 2 history patches with dropout 0.5), same \
data order, 800 steps of 1,600 frames each, trained side by side on one core each. Cases: 12 unseen validation \
voices, each prompted with one of its sentences and asked for another. Made by bash \
examples/research/scripts/patch_size_ablation_cpu.sh." \
  "DiTAR P=2=outputs/eval/ablation-patch2@runs/ablation-patch2" \
  "DiTAR P=4=outputs/eval/ablation-patch4@runs/ablation-history2" \
  "DiTAR P=8=outputs/eval/ablation-patch8@runs/ablation-patch8"
[ -z "$reading" ] || printf '\n%s\n' "$reading" >> docs/research/ablation/patch_size.md

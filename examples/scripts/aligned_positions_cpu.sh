#!/usr/bin/env bash
# "Aligned" speech positions against the paper's single position stream, at equal budget on 2 CPU cores: the history
# ablation's K = 2 recipe from scratch (examples/configs/ablation-history2-cpu.yaml, the control) and the same recipe
# with speech_positions: aligned (examples/configs/aligned-positions-cpu.yaml), 800 steps of 1,600 frames each, same
# data order. Both are scored on the same 12 unseen validation cases: does a backbone head follow the text
# (examples/attention_alignment_probe.py), how much the text is used (examples/training_eval.py's wrong-text penalty),
# teacher-forced and free-running speech (examples/evaluate.py).
#   bash examples/scripts/aligned_positions_cpu.sh
# Re-running resumes unfinished arms from their checkpoints and skips finished evaluations.
set -euo pipefail
cd "$(dirname "$0")/../.."
cases=data/eval/validation12/cases.jsonl
declare -A configs=([ablation-history2]=ablation-history2-cpu [aligned-positions]=aligned-positions-cpu)
declare -A results=([ablation-history2]=ablation-patch4 [aligned-positions]=aligned-positions)

for arm in "${!configs[@]}"; do
  resume=()
  [ -d "runs/$arm/checkpoints" ] && resume=(--resume)
  if [ ! -d "runs/$arm/final/model" ]; then
    OMP_NUM_THREADS=1 python examples/train.py --config "examples/configs/${configs[$arm]}.yaml" "${resume[@]}" \
      > "runs/$arm.log" 2>&1 &
  fi
done
wait

[ -f "$cases" ] || python examples/evaluate.py --make-cases-from data/corpus --split validation \
  --num-cases 12 --min-prompt-seconds 2 --out "$cases"
for arm in ablation-history2 aligned-positions; do
  [ -f "runs/$arm/alignment.md" ] || python examples/attention_alignment_probe.py --cases "$cases" \
    --pipeline "runs/$arm/final" --threads 2 --plot "runs/$arm/attention.png" > "runs/$arm/alignment.md"
  [ -f "runs/$arm/text_use_final.json" ] || python examples/training_eval.py --model "runs/$arm/final" \
    --dataset data/corpus > "runs/$arm/text_use_final.json"
  res=outputs/eval/${results[$arm]}
  [ -f "$res/results.json" ] || python examples/evaluate.py --cases "$cases" --rows tf,model \
    --pipeline "runs/$arm/final" --label "$arm" --threads 2 --out "$res"
done
python examples/compare_results.py --out docs/ablation/speech_positions.md \
  --title "Aligned speech positions in miniature (2 CPU cores, 800 steps each, from scratch)" \
  --intro "The paper's backbone reads one position stream (text 0..L-1, then speech L, L+1, ...); \
speech_positions: aligned puts the speech position after j patches at j x patch_size x the prompt's speaking rate, next \
to the text being spoken (modeling_ditar/speech_positions.py). Same recipe otherwise (examples/configs/default.yaml's \
shape, P = 4, K = 2 history patches with dropout 0.5, CTC 0.1), same data order, 800 steps of 1,600 frames, from \
scratch. Cases: 12 unseen validation voices, each prompted with one of its sentences and asked for another. Made by \
bash examples/scripts/aligned_positions_cpu.sh." \
  "sequential (paper)=outputs/eval/ablation-patch4@runs/ablation-history2" \
  "aligned=outputs/eval/aligned-positions@runs/aligned-positions"

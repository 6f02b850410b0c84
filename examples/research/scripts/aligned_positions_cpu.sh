#!/usr/bin/env bash
# "Aligned" speech positions against the paper's single position stream, at equal budget on 2 CPU cores: the history
# ablation's K = 2 recipe from scratch (examples/research/configs/ablation-history2-cpu.yaml, the control) and the same recipe
# with speech_positions: aligned (examples/research/configs/aligned-positions-cpu.yaml), side by side (one core each, same data
# order), 800 steps of 1,600 frames, then both continued to 1,600 steps (--resume --max-steps 1600: the lr warms back
# to its peak and decays again). At each stage both are scored on the same 12 unseen validation cases: does a backbone
# head follow the text (examples/research/attention_alignment_probe.py), how much the text is used (examples/training_eval.py's
# wrong-text penalty), teacher-forced and free-running speech (examples/evaluate.py).
#   bash examples/research/scripts/aligned_positions_cpu.sh
# Re-running resumes unfinished arms from their checkpoints and skips finished evaluations. Writes
# docs/research/ablation/speech_positions.md (its table part; the reading below it is written by hand).
set -euo pipefail
cd "$(dirname "$0")/../../.."
cases=data/eval/validation12/cases.jsonl
declare -A configs=([ablation-history2]=ablation-history2-cpu [aligned-positions]=aligned-positions-cpu)
declare -A names=([ablation-history2]=sequential [aligned-positions]=aligned)
[ -f "$cases" ] || python examples/evaluate.py --make-cases-from data/corpus --split validation \
  --num-cases 12 --min-prompt-seconds 2 --out "$cases"

for steps in 800 1600; do
  for arm in "${!configs[@]}"; do
    if [ ! -d "runs/$arm/final-$steps/model" ]; then
      resume=()
      [ -d "runs/$arm/checkpoints" ] && resume=(--resume)
      (OMP_NUM_THREADS=1 python examples/train.py --config "examples/research/configs/${configs[$arm]}.yaml" "${resume[@]}" \
        --max-steps "$steps" > "runs/$arm-$steps.log" 2>&1 && cp -r "runs/$arm/final" "runs/$arm/final-$steps") &
    fi
  done
  wait
  for arm in "${!configs[@]}"; do
    model=runs/$arm/final-$steps
    [ -f "$model/alignment.md" ] || python examples/research/attention_alignment_probe.py --cases "$cases" \
      --pipeline "$model" --threads 2 --plot "$model/attention.png" > "$model/alignment.md"
    [ -f "$model/text_use.txt" ] || python examples/training_eval.py --model "$model" --dataset data/corpus \
      > "$model/text_use.txt"
    res=outputs/eval/positions-${names[$arm]}-$steps
    [ -f "$res/results.json" ] || python examples/evaluate.py --cases "$cases" --rows tf,model \
      --pipeline "$model" --label "${names[$arm]} $steps" --threads 2 --out "$res"
  done
done

reading=$(sed -n '/^## Reading/,$p' docs/research/ablation/speech_positions.md 2>/dev/null || true)
python examples/compare_results.py --out docs/research/ablation/speech_positions.md \
  --title "Aligned speech positions in miniature (2 CPU cores, from scratch, 800 and 1,600 steps)" \
  --intro "The paper's backbone reads one position stream (text 0..L-1, then speech L, L+1, ...); \
speech_positions: aligned puts the speech position after j patches at j x patch_size x the prompt's speaking rate, next \
to the text being spoken (modeling_ditar/speech_positions.py). Same recipe otherwise (examples/configs/default.yaml's \
shape, P = 4, K = 2 history patches with dropout 0.5, CTC 0.1), same data order, batches of 1,600 frames, from \
scratch; 800 steps, then both continued to 1,600. Cases: 12 unseen validation voices, each prompted with one of its \
sentences and asked for another. Made by bash examples/research/scripts/aligned_positions_cpu.sh." \
  "sequential (paper), 800 steps=outputs/eval/positions-sequential-800@runs/ablation-history2:800" \
  "aligned, 800 steps=outputs/eval/positions-aligned-800@runs/aligned-positions:800" \
  "sequential (paper), 1600 steps=outputs/eval/positions-sequential-1600@runs/ablation-history2:1600" \
  "aligned, 1600 steps=outputs/eval/positions-aligned-1600@runs/aligned-positions:1600"
[ -z "$reading" ] || printf '\n%s\n' "$reading" >> docs/research/ablation/speech_positions.md

#!/usr/bin/env bash
# Fine-tune the shipped default on a few new voices and measure, before and after, how close its speech comes to them.
#   bash examples/scripts/finetune_new_voices.sh
# 1. data/newvoices: 6 random espeak-ng voices (seed 2026; the default never heard them), 60 training sentences each and
#    6 held-out sentences each (validation split: same voices, sentences the fine-tuning never sees).
# 2. cases: prompt = one held-out utterance of a voice, target = another held-out sentence of the same voice.
# 3. the shipped default on those cases (plus the ground truth and its resynthesis), fine-tuning with
#    examples/configs/finetune-new-voices.yaml (init_from modeling_ditar/default), the fine-tuned model on the same cases.
# 4. docs/research/finetune/new_voices.md puts both side by side.
# Re-running skips finished steps (and resumes the fine-tuning from its checkpoint); an evaluation made on another
# cases file, pipeline, rows or model weights is made again.
set -euo pipefail
cd "$(dirname "$0")/../.."
cases=data/eval/newvoices18/cases.jsonl

[ -f data/newvoices/dataset_dict.json ] || python examples/build_corpus.py --out data/newvoices --seed 2026 \
  --num-train-speakers 6 --num-val-speakers 0 --utts-per-speaker 60 --heldout-utts-per-speaker 6 --num-test-voices 0 \
  --sampling-rate 16000 --max-sec 8 --max-speed 190 --features --feature-config examples/configs/features_16k_80mel.json
[ -f "$cases" ] || python examples/evaluate.py --make-cases-from data/newvoices --split validation --num-cases 18 \
  --min-prompt-seconds 2 --out "$cases"
stale_results() {  # RESULTS CASES PIPELINE ROWS MAX_CASES: why RESULTS is not what this evaluation would make now
  python examples/research/stale_results.py "$@"
}
evaluated() {  # RESULTS PIPELINE ROWS: true when an earlier RESULTS was made as the evaluation after it would be now
  local why
  [ -f "$1" ] || return 1
  why=$(stale_results "$1" "$cases" "$2" "$3" "") || why="a check of it that failed"
  if [ -z "$why" ]; then return 0; fi
  echo "evaluating again: $1 was made with $why"
  return 1
}
evaluated outputs/eval/newvoices-before/results.json "" gt,resynth,model || python examples/evaluate.py \
  --cases "$cases" --rows gt,resynth,model --label "shipped default" --out outputs/eval/newvoices-before

run=runs/finetune-new-voices
if [ ! -d "$run/final/model" ]; then
  resume=()
  [ -d "$run/checkpoints" ] && resume=(--resume)
  python examples/train.py --config examples/configs/finetune-new-voices.yaml "${resume[@]}"
fi
evaluated outputs/eval/newvoices-after/results.json "$run/final" model || python examples/evaluate.py --cases "$cases" \
  --rows model --pipeline "$run/final" --label "fine-tuned" --out outputs/eval/newvoices-after

python examples/compare_results.py --out docs/research/finetune/new_voices.md \
  --title "Fine-tuning the shipped default on 6 new voices (2 CPU cores)" \
  --intro "6 random espeak-ng voices the default never heard (build_corpus.py --seed 2026), 60 sentences each for \
training; the cases prompt with one held-out sentence of a voice and ask for another held-out sentence of the same \
voice. Fine-tuning: examples/configs/finetune-new-voices.yaml (init_from modeling_ditar/default, 300 steps, lr 3e-4, \
EMA 0.98). Made by bash examples/scripts/finetune_new_voices.sh." \
  "shipped default=outputs/eval/newvoices-before" \
  "fine-tuned=outputs/eval/newvoices-after@$run"

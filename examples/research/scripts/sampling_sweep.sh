#!/usr/bin/env bash
# LM guidance scale, temperature and ODE steps of a pipeline, on 48 (voice, sentence) cases no training run has seen:
# 24 random espeak-ng voices of voice seed 1000 (runs so far used seeds 0-4; VoiceBank draws voices in sequence, so a
# corpus's validation voices of seed 0 are voices an 800-voice seed-0 run trained on), reading validation sentences
# (never in any corpus's train split, and not the test sentences). Writes docs/research/sweeps/sampling_newvoices48.md.
#   bash examples/research/scripts/sampling_sweep.sh [PIPELINE]     # default: the embedded default; ~35 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/../../.."
pipeline=${1:-}
corpus=data/corpus_newvoices_s1000
cases=data/eval/newvoices48/cases.jsonl
if [ ! -f "$corpus/dataset_dict.json" ]; then
  # 1 train voice (required by the builder) + 24 validation voices; 12 x 20 test utterances keep the sentence split's
  # offsets equal to the GPU corpora's, so the validation sentences are theirs (never trained on)
  python examples/build_corpus.py --out "$corpus" --voice-seed 1000 --num-train-speakers 1 --utts-per-speaker 20 \
    --num-val-speakers 24 --num-test-voices 12 --test-utts-per-voice 20 --sampling-rate 16000 --max-sec 8 \
    --max-speed 190 --features --feature-config examples/configs/features_16k_80mel.json --num-proc 2
fi
[ -f "$cases" ] || python examples/evaluate.py --make-cases-from "$corpus" --split validation --num-cases 48 \
  --min-prompt-seconds 2 --out "$cases"
name=${pipeline:+$(basename "$pipeline")}
name=${name:-default}
# the weights' hash in the folder names: a new default never reuses the outputs of the one it replaced
name=$name-$(sha256sum "${pipeline:-modeling_ditar/default}/model/model.safetensors" | cut -c1-8)
entries=()
# guidance temperature steps; the first is the reference the others are paired against and also scores the
# ground-truth rows (the shipped setting is modeling_ditar/default/model/config.json's)
for setting in "2.0 0.5 10" "1.5 0.5 10" "3.0 0.5 10" "4.0 0.5 10" "2.0 1.0 10" "2.0 0.0 10" "2.0 0.5 20" "1.0 0.5 10"; do
  read -r g t s <<< "$setting"
  out=outputs/eval/sweep-newvoices48/$name-g$g-t$t-s$s
  rows=model
  [ ${#entries[@]} -eq 0 ] && rows=gt,resynth,model
  [ -f "$out/results.json" ] || python examples/evaluate.py --cases "$cases" --rows "$rows" ${pipeline:+--pipeline "$pipeline"} \
    --guidance-scale "$g" --temperature "$t" --steps "$s" --label "g=$g, τ=$t, $s steps" --threads 2 --out "$out"
  entries+=("g=$g, τ=$t, $s steps=$out")
done
python examples/compare_results.py --out docs/research/sweeps/sampling_newvoices48.md \
  --title "Sampling settings on 48 cases of 24 voices no run has heard" \
  --intro "LM guidance g, temperature τ and ODE steps of ${pipeline:-the embedded default}: \`bash examples/research/scripts/sampling_sweep.sh${pipeline:+ $pipeline}\`. The first row is the reference the others are paired against; the shipped setting is the one in modeling_ditar/default/model/config.json." \
  "${entries[@]}"

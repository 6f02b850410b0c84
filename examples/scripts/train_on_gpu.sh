#!/usr/bin/env bash
# Build the corpus and train the default model on one GPU machine with no network, in a fixed time budget.
#   bash examples/scripts/prepare_device_bundle.sh        # here, once: .espeak/ and .whl/
#   bash examples/scripts/train_on_gpu.sh OUT_DIR MINUTES [NUM_TRAIN_SPEAKERS [CONFIG]]   # there, with .espeak, .whl
# Continue the embedded default instead of starting afresh, on voices it has not heard (VOICE_SEED picks them):
#   VOICE_SEED=5 bash examples/scripts/train_on_gpu.sh OUT_DIR 9.4 1200 examples/configs/default-gpu-continue.yaml
#   VOICE_SEED=6 bash examples/scripts/train_on_gpu.sh OUT_DIR 4.5 800 examples/configs/default-gpu-polish.yaml
# The natural-voice mix (examples/corpus/natural.py; needs the bundle made with NATURAL=1, i.e. .festival/ and the
# extra wheels in .whl/): MIX and CONDITIONS go to build_corpus.py --mix / --conditions, PSEUDO_PROB to --pseudo-prob:
#   MIX=piper=0.3,kokoro=0.2,festival=0.1,espeak=0.4 CONDITIONS=room=0.3,noise=0.3,phone=0.1,level=0.3 \
#     bash examples/scripts/train_on_gpu.sh OUT_DIR 14 1200
# MINUTES is the whole script's budget: training gets what is left after the corpus, less 1 minute for the final
# evaluation and the export (they took 23-32 s on an H200).
# A second, shorter call on the same machine (data/ and runs/ still there) trains more steps from the first call's
# result without rebuilding the corpus:
#   REUSE_CORPUS=1 RUN_DIR=runs/gpu-b INIT_FROM=runs/gpu/final bash examples/scripts/train_on_gpu.sh OUT_DIR 3.5 800 \
#       examples/configs/default-gpu-continue.yaml
# Writes OUT_DIR/model (EMA weights, fp16, shards under 12 MB) and OUT_DIR/logs.tar.gz (training log, CSV, loss plot,
# text-use gaps, validation sample, corpus summary).
set -euo pipefail
start=$(date +%s)
out=${1:?output folder}; minutes=${2:?training minutes}; speakers=${3:-800}
config=${4:-examples/configs/default-gpu.yaml}  # e.g. examples/research/configs/default-gpu-no-history.yaml
run=${RUN_DIR:-runs/gpu}
cd "$(dirname "$0")/../.."
if [ -d .whl ] && [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
if [ -d .espeak ]; then
  export PATH=$PWD/.espeak/bin:$PATH LD_LIBRARY_PATH=$PWD/.espeak/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export ESPEAK_DATA_PATH=$PWD/.espeak
  fortunes=$PWD/.espeak/fortunes
else
  fortunes=/usr/share/games/fortunes
fi
[ -d .festival ] && export PATH=$PWD/.festival/bin:$PATH
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mix=${MIX:-espeak=1}; conditions=${CONDITIONS:-room=0,noise=0,phone=0,level=0}; pseudo=${PSEUDO_PROB:-0.9}
nproc=$(nproc)
# Fail in seconds, not minutes, when something is missing.
espeak-ng --version
python3 -c "import torch, transformers, diffusers, datasets, soundfile, phonemizer, espeakng_loader, modeling_ditar
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__,
      'diffusers', diffusers.__version__, 'datasets', datasets.__version__)
from modeling_ditar import build_ditar_tokenizer; print(build_ditar_tokenizer(phonemize=True).encode('Hello there.'))"
if [ "$mix" != "espeak=1" ]; then  # every source of the mix synthesizes one sentence, through the corpus code
  python3 examples/corpus/natural.py --check "$mix"
fi
mkdir -p "$out" "$run"
# SMOKE=1: a corpus of a few utterances, to check the whole script on a CPU in a minute
if [ -n "${SMOKE:-}" ]; then sizes="--utts-per-speaker 2 --num-val-speakers 2 --num-test-voices 1 --test-utts-per-voice 2"
else sizes="--utts-per-speaker 25 --num-val-speakers 20 --num-test-voices 12 --test-utts-per-voice 20"; fi
t0=$(date +%s)
if [ -n "${REUSE_CORPUS:-}" ] && [ -f data/corpus/dataset_dict.json ]; then
  echo "reusing data/corpus"
else
  # shellcheck disable=SC2086
  python3 examples/build_corpus.py --out data/corpus --voice-seed "${VOICE_SEED:-0}" --num-train-speakers "$speakers" $sizes --sampling-rate 16000 --max-sec 8 \
    --max-speed 190 --mix "$mix" --conditions "$conditions" --pseudo-prob "$pseudo" --features --feature-config examples/configs/features_16k_80mel.json --num-proc "$nproc" \
    --fortunes-dir "$fortunes" 2>&1 | tail -n 25
fi
echo "corpus built in $(( $(date +%s) - t0 )) s"
train_minutes=$(python3 -c "print(round($minutes - ($(date +%s) - $start) / 60 - 1.0, 2))")
echo "training for $train_minutes minutes (start-up included)"
# train.py ends itself on time (--time-budget-min); the hard stop 40 s later keeps the export below from being cut off
# if it does not, and the export then takes the newest checkpoint's EMA weights.
timeout "$(python3 -c "print(int($train_minutes * 60 + 40))")" python3 examples/train.py --config "$config" \
  --output-dir "$run" --time-budget-min "$train_minutes" --num-proc "$nproc" ${INIT_FROM:+--init-from "$INIT_FROM"} 2>&1 \
  | tee "$run/train.log.txt" || true
tar czf "$out/logs.tar.gz" "$run"/log.csv "$run"/loss.png "$run"/text_use.csv "$run"/samples "$run"/processor \
  "$run"/train.log.txt "$run"/train_config.json data/corpus/corpus_summary.json data/corpus/feature_stats.json || true
if [ ! -f "$run/final/model/config.json" ]; then
  newest=$(ls -d "$run"/checkpoints/step-* | awk -F'step-' '{print $NF, $0}' | sort -n | tail -n 1 | cut -d' ' -f2)
  echo "no final model: exporting the EMA weights of $newest"
  python3 examples/resume_pack.py ema-model "$newest" "$run/final/model"
fi
python3 - "$out" "$run" <<'PY'
import sys, torch
from modeling_ditar import DiTARForConditionalGeneration
run = sys.argv[2]
model = DiTARForConditionalGeneration.from_pretrained(f"{run}/final/model", dtype=torch.float32).half()
model.save_pretrained(f"{run}/export", max_shard_size="12MB")  # plus remote-code files, which are not needed here
import shutil, pathlib
dst = pathlib.Path(sys.argv[1]) / "model"
dst.mkdir(parents=True, exist_ok=True)
for f in pathlib.Path(f"{run}/export").iterdir():
    if f.suffix in (".json", ".safetensors"):
        shutil.copy(f, dst / f.name)
print("exported", sum(p.numel() for p in model.parameters()), "parameters")
PY
ls -la "$out" "$out/model"

#!/usr/bin/env bash
# Build a corpus and train the vocoder (examples/train_vocoder.py) on one GPU machine with no network, in a fixed time
# budget. The setup is train_on_gpu.sh's: the repository copied over with .whl/ and .espeak/, made once on a machine
# with network by examples/scripts/prepare_device_bundle.sh.
#   bash examples/scripts/train_vocoder_on_gpu.sh OUT_DIR MINUTES [CONFIG]      # CONFIG: examples/configs/vocoder-gpu.yaml
# Environment:
#   PACK                          natural-voice packs, comma-separated (examples/corpus/natural_pack.py, e.g.
#                                 data_packs/natural-v1):
#                                 its train and validation rows join the espeak-ng corpus (build_corpus.py --add-pack);
#                                 natural synthesizers do not run on the GPU machine, so MIX is not taken here
#   CONDITIONS                    build_corpus.py --conditions for the espeak-ng speakers, e.g. noise=0.2,level=0.3
#   SPEAKERS, UTTS                train speakers and utterances each (default 300 x 10, about 2.5 hours of audio)
#   DATA_DIR                      where the corpus goes (default data/corpus_vocoder)
#   REUSE_CORPUS=1                train on DATA_DIR as it is, e.g. DATA_DIR=data/corpus after train_on_gpu.sh built it
#                                 on the same machine (the vocoder needs no corpus of its own)
#   RUN_DIR                       the training run (default runs/vocoder-gpu); INIT_FROM: a vocoder folder to continue
#                                 (the generator only: the discriminators start anew)
#   RESUME=1                      continue RUN_DIR from its newest checkpoint (generator, discriminators, optimisers,
#                                 EMA), e.g. a second call on the same warm machine; with REUSE_CORPUS=1 it starts in
#                                 seconds. The lr schedule is re-sized to the new budget: it rises again to where the
#                                 cosine decay of the longer run would be, then decays to its floor by the end
#   SMOKE=1                       a corpus of a few utterances: checks the whole script on a CPU in a minute, e.g.
#                                 SMOKE=1 bash examples/scripts/train_vocoder_on_gpu.sh /tmp/v 0.2 examples/configs/vocoder-tiny.yaml
# MINUTES is the whole script's budget: training gets what is left after the corpus, less RESERVE_MIN (default 0.5) for
# the export. Writes OUT_DIR/vocoder (the EMA generator: config.json and safetensors, loadable with
# VocosVocoder.from_pretrained), OUT_DIR/samples (validation resynthesis and the originals) and OUT_DIR/logs.tar.gz.
set -euo pipefail
start=$(date +%s)
out=${1:?output folder}; minutes=${2:?minutes}; config=${3:-examples/configs/vocoder-gpu.yaml}
run=${RUN_DIR:-runs/vocoder-gpu}; data=${DATA_DIR:-data/corpus_vocoder}
cd "$(dirname "$0")/../.."
source examples/scripts/device_env.sh  # wheels, espeak-ng, fortunes; refuses MIX
conditions=${CONDITIONS:-room=0,noise=0,phone=0,level=0}
pack_args=()
if [ -n "${PACK:-}" ]; then  # PACK=data_packs/a,data_packs/b: several packs
  IFS=',' read -r -a packs <<< "$PACK"
  for pack in "${packs[@]}"; do pack_args+=(--add-pack "$pack"); done
fi
nproc=$(nproc)
# Fail in seconds, not minutes, when something is missing.
python3 -c "import torch, diffusers, datasets, soundfile, accelerate
from modeling_ditar.vocoder_vocos import VocosVocoder
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'diffusers', diffusers.__version__,
      'datasets', datasets.__version__, 'accelerate', accelerate.__version__)"
python3 examples/train_vocoder.py --help > /dev/null
if [ -n "${RESUME:-}" ]; then
  if ! ls -d "$run"/checkpoints/step-* > /dev/null 2>&1; then
    echo "RESUME=1 but $run has no checkpoint to continue (a fresh machine?): nothing trained" >&2
    exit 1
  fi
  rm -rf "$run/vocoder"  # an earlier call's export must not pass for this call's if this one is cut off before it
fi
mkdir -p "$out" "$run"
t0=$(date +%s)
if [ -n "${REUSE_CORPUS:-}" ] && [ -f "$data/dataset_dict.json" ]; then
  echo "reusing $data"
else
  espeak-ng --version
  if [ -n "${SMOKE:-}" ]; then
    sizes="--num-train-speakers 4 --utts-per-speaker 2 --num-val-speakers 2 --num-test-voices 1 --test-utts-per-voice 1"
  else
    sizes="--num-train-speakers ${SPEAKERS:-300} --utts-per-speaker ${UTTS:-10} --num-val-speakers 8"
    sizes="$sizes --num-test-voices 1 --test-utts-per-voice 1"  # the test split is evaluation-only: never read here
  fi
  # shellcheck disable=SC2086
  python3 examples/build_corpus.py --out "$data" $sizes --sampling-rate 16000 --max-sec 8 \
    --conditions "$conditions" "${pack_args[@]}" --num-proc "$nproc" --fortunes-dir "$fortunes" 2>&1 | tail -n 15
fi
echo "corpus ready in $(( $(date +%s) - t0 )) s"
train_minutes=$(python3 -c "print(max(0.05, round($minutes - ($(date +%s) - $start) / 60 - ${RESERVE_MIN:-0.5}, 2)))")
echo "training for $train_minutes minutes (start-up included)"
# train_vocoder.py ends itself on time (--time-budget-min); the hard stop 40 s later keeps the export below from being
# cut off if it does not, and the export then takes the newest checkpoint's EMA weights.
timeout "$(python3 -c "print(int($train_minutes * 60 + 40))")" python3 examples/train_vocoder.py --config "$config" \
  --dataset "$data" --output-dir "$run" --time-budget-min "$train_minutes" ${INIT_FROM:+--init-from "$INIT_FROM"} \
  ${RESUME:+--resume} 2>&1 | tee "$run/train.log.txt" || true
if [ ! -f "$run/vocoder/config.json" ]; then
  newest=$(ls -d "$run"/checkpoints/step-* | awk -F'step-' '{print $NF, $0}' | sort -n | tail -n 1 | cut -d' ' -f2)
  echo "no vocoder folder: exporting the EMA weights of $newest"
  python3 examples/train_vocoder.py --config "$config" --output-dir "$run" --export-checkpoint "$newest"
fi
rm -rf "$out/vocoder" "$out/samples"
cp -r "$run/vocoder" "$out/vocoder"
mkdir -p "$out/samples"
[ -d "$run/samples/reference" ] && cp -r "$run/samples/reference" "$out/samples/"
last=$(ls -d "$run"/samples/step-* 2>/dev/null | awk -F'step-' '{print $NF, $0}' | sort -n | tail -n 1 | cut -d' ' -f2)
[ -n "$last" ] && cp -r "$last" "$out/samples/"
tar czf "$out/logs.tar.gz" "$run"/log.csv "$run"/eval.csv "$run"/train.log.txt "$run"/train_config.json \
  "$run"/feature_extractor "$data"/corpus_summary.json 2>/dev/null || true
python3 - "$out" "$data" "$run" <<'PY'
import sys, torch
from pathlib import Path
from modeling_ditar import DiTARFeatureExtractor
from modeling_ditar.vocoder_vocos import VocosVocoder
sys.path.insert(0, "examples")
from vocoder_training.data import load_corpus_clips
out = Path(sys.argv[1])
vocoder = VocosVocoder.from_pretrained(out / "vocoder")
fe = DiTARFeatureExtractor.from_pretrained(Path(sys.argv[3]) / "feature_extractor")  # the run's features
clip = torch.from_numpy(load_corpus_clips(Path(sys.argv[2]), "validation", vocoder.sampling_rate)[0].copy())
features = fe.compute_log_mel(clip[: len(clip) // fe.hop_length * fe.hop_length])
with torch.no_grad():
    audio = vocoder(features[None])
print(f"vocoder: {sum(p.numel() for p in vocoder.parameters()):,} parameters; {features.shape[0]} frames -> "
      f"{audio.shape[-1]} samples (expected {vocoder.num_samples(features.shape[0])}), "
      f"log-mel L1 {float((fe.compute_log_mel(audio[0]) - features).abs().mean()):.3f}")
PY
ls -la "$out" "$out/vocoder"

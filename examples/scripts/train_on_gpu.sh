#!/usr/bin/env bash
# Build the corpus and train the default model on one GPU machine with no network, in a fixed time budget.
#   bash examples/scripts/prepare_device_bundle.sh        # here, once: .espeak/ and .whl/
#   bash examples/scripts/train_on_gpu.sh OUT_DIR MINUTES [NUM_TRAIN_SPEAKERS [CONFIG]]   # there, with .espeak, .whl
# Continue the embedded default instead of starting afresh, on voices it has not heard (VOICE_SEED picks them):
#   VOICE_SEED=5 bash examples/scripts/train_on_gpu.sh OUT_DIR 9.4 1200 examples/configs/default-gpu-continue.yaml
#   VOICE_SEED=6 bash examples/scripts/train_on_gpu.sh OUT_DIR 4.5 800 examples/configs/default-gpu-polish.yaml
# Natural voices come from a pack built on a CPU machine and committed (examples/corpus/natural_pack.py; their
# synthesizers are ~160 MB and cannot travel): PACK appends its train and validation rows to the espeak-ng corpus built
# here (build_corpus.py --add-pack; NUM_TRAIN_SPEAKERS stays the espeak-ng count), and the log shows rows per source:
#   PACK=data_packs/natural-v1 bash examples/scripts/train_on_gpu.sh OUT_DIR 14 1200
# Several packs are separated by commas: PACK=data_packs/natural-v1,data_packs/natural-v2-clean
# CONDITIONS (build_corpus.py --conditions) gives espeak-ng speakers acoustic conditions too, e.g.
# CONDITIONS=noise=0.2,phone=0.05,level=0.2 (room needs pyroomacoustics, which the bundle does not carry). MIX with
# piper, kokoro or festival stops at once: those sources do not run here.
# MINUTES is the whole script's budget: training gets what is left after the corpus, less 1 minute for the final
# evaluation and the export (they took 23-32 s on an H200).
# A second, shorter call on the same machine (data/ and runs/ still there) trains more steps from the first call's
# result without rebuilding the corpus:
#   REUSE_CORPUS=1 RUN_DIR=runs/gpu-b INIT_FROM=runs/gpu/final bash examples/scripts/train_on_gpu.sh OUT_DIR 3.5 800 \
#       examples/configs/default-gpu-continue.yaml
# GROW_BACKBONE_LAYERS=N first deepens the model training starts from (INIT_FROM, else the config's init_from) to N
# backbone layers with identity layers (examples/research/grow_backbone.py; same audio before training), here, in
# seconds: the payload has no room for a second model folder.
# Writes OUT_DIR/model (EMA weights, fp16, shards under 12 MB) and OUT_DIR/logs.tar.gz (training log, CSV, loss plot,
# text-use gaps, validation sample, corpus summary).
set -euo pipefail
start=$(date +%s)
out=${1:?output folder}; minutes=${2:?training minutes}; speakers=${3:-800}
config=${4:-examples/configs/default-gpu.yaml}  # e.g. examples/research/configs/default-gpu-no-history.yaml
run=${RUN_DIR:-runs/gpu}
cd "$(dirname "$0")/../.."
source examples/scripts/device_env.sh  # wheels, espeak-ng, fortunes; refuses MIX
conditions=${CONDITIONS:-room=0,noise=0,phone=0,level=0}
pack_args=()
if [ -n "${PACK:-}" ]; then  # a missing or incomplete pack stops here, not after the espeak-ng synthesis
  IFS=',' read -r -a packs <<< "$PACK"  # PACK=data_packs/a,data_packs/b: several packs
  for pack in "${packs[@]}"; do
    python3 examples/corpus/natural_pack.py info "$pack"
    pack_args+=(--add-pack "$pack")
  done
  # PACK_DROP_CONDITIONS=room,noise,phone leaves out the pack's speakers recorded in rooms, with noise or through the
  # phone band (build_corpus.py --pack-drop-conditions): in short continuations they smear what the model generates
  # (docs/research/diagnostics/natural_voice_drift.md)
  if [ -n "${PACK_DROP_CONDITIONS:-}" ]; then pack_args+=(--pack-drop-conditions "$PACK_DROP_CONDITIONS"); fi
fi
nproc=$(nproc)
# Fail in seconds, not minutes, when something is missing.
espeak-ng --version
python3 -c "import torch, transformers, diffusers, datasets, soundfile, phonemizer, espeakng_loader, modeling_ditar
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__,
      'diffusers', diffusers.__version__, 'datasets', datasets.__version__)
from modeling_ditar import DiTARTextFrontend, build_ditar_tokenizer
print(DiTARTextFrontend(build_ditar_tokenizer(phonemize=True)).phonemize('Hello there.'))
from phonemizer.backend.espeak.wrapper import EspeakWrapper  # the library the phonemizer now uses (1.52 expected)
print('phonemizer espeak-ng', EspeakWrapper().version, EspeakWrapper().library_path)
import sys; sys.path.insert(0, 'examples'); from corpus import natural
if natural.parse_conditions('$conditions')['room'] > 0: import pyroomacoustics  # CONDITIONS room needs it"
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
    --max-speed 190 --conditions "$conditions" "${pack_args[@]}" --features --feature-config examples/configs/features_16k_80mel.json --num-proc "$nproc" \
    --fortunes-dir "$fortunes" 2>&1 | tail -n 25
fi
echo "corpus built in $(( $(date +%s) - t0 )) s"
# what train.py will read: rows per source of each split, and the pack's rows must be among them
python3 - "${PACK:-}" <<'PY'
import collections, sys
from datasets import load_from_disk
sys.path.insert(0, "examples")
corpus = load_from_disk("data/corpus")
for split in ("train", "validation"):
    counts = collections.Counter(corpus[split]["source"])
    print(f"[corpus] {split}: {len(corpus[split])} rows, per source {dict(sorted(counts.items()))}")
from corpus.natural_pack import read_info
for pack in filter(None, sys.argv[1].split(",")):
    prefix = read_info(pack)["name"] + ":"
    rows = sum(s.startswith(prefix) for s in corpus["train"]["speaker_id"])
    print(f"[corpus] train rows from the pack {pack}: {rows}")
    if not rows:
        sys.exit(f"PACK names {pack}, but data/corpus has none of its rows (REUSE_CORPUS of an older corpus?)")
PY
if [ -n "${GROW_BACKBONE_LAYERS:-}" ]; then
  base=${INIT_FROM:-$(python3 -c "import sys, yaml; print((yaml.safe_load(open(sys.argv[1])) or {}).get('init_from') or '')" "$config")}
  if [ -z "$base" ]; then echo "GROW_BACKBONE_LAYERS needs a model to grow: set INIT_FROM or init_from in $config" >&2; exit 2; fi
  python3 examples/research/grow_backbone.py "$base" "$run/grown" --layers "$GROW_BACKBONE_LAYERS" 2>&1 | grep -v '^Loading\|^Writing'
  INIT_FROM="$run/grown"
fi
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

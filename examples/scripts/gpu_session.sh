#!/usr/bin/env bash
# One call on a borrowed GPU machine that trains the default model, the vocoder and a few-step LocDiT at the same time
# on the one GPU. It was written on the premise that the model's training step is host-bound (on an H200 ~27 ms of GPU
# work in a ~217 ms step: see docs/research/benchmark/training_step), so that the vocoder's GAN training and the LocDiT
# distillation would fill idle GPU time; the distillation runs at a lower CPU priority (nice 5). Measured on an H200
# (docs/research/training/gpu_natural_session.md), the premise does not hold: beside them the model trained at 1.32
# steps/s, alone at 6.24. When the model matters most, train it alone (train_on_gpu.sh) and the others in their own
# calls (train_vocoder_on_gpu.sh, distill_locdit.py).
#   bash examples/scripts/prepare_device_bundle.sh                                  # here, once: .espeak/ and .whl/
#   PACK=data_packs/natural-v1 VOICE_SEED=5 bash examples/scripts/gpu_session.sh OUT 9.3 [SPEAKERS [CONFIG [VCONFIG \
#       [DCONFIG]]]]
# there, carrying .espeak and .whl (run's carry), with OUT the run's $OUT. SPEAKERS: espeak-ng training speakers of the
# corpus (default 800); CONFIG: the model's (default examples/configs/default-gpu-natural.yaml); VCONFIG: the vocoder's
# (default examples/configs/vocoder-gpu.yaml); DCONFIG: the distillation's (default examples/configs/distill-gpu.yaml,
# whose teacher is the embedded default; an empty string skips it). PACK (default data_packs/natural-v1; empty for
# none) joins the corpus.
# Steps: train_on_gpu.sh builds data/corpus (espeak-ng voices + the pack, features) and trains the model in MINUTES;
# as soon as the corpus exists, train_vocoder_on_gpu.sh trains the vocoder on its audio and distill_locdit.py distils
# the teacher's LocDiT on its features, for what is left of MINUTES. All end on time by themselves (--time-budget-min).
# OUT then holds what fits the device's return limits (at most 8 files, 2 folders down): OUT/model/ (the model, fp16,
# shards under 12 MB: 5 files for the shipped size), OUT/vocoder.tar.gz (the vocoder folder), OUT/distill.tar.gz (the
# student's LocDiT in fp16 and its generation config, ~5 MB, with its log; here `python examples/distill_locdit.py
# --config DCONFIG --assemble student --output-dir DIR` rebuilds the pipeline) and OUT/logs.tar.gz (the runs' logs,
# the corpus summary and the vocoder's validation samples).
# SMOKE=1 checks the whole script on a CPU in a few minutes with tiny configs (give them as CONFIG and VCONFIG, both
# with dataset: data/corpus, and DCONFIG, e.g. examples/configs/distill-tiny.yaml, which runs on the CPU).
set -euo pipefail
start=$(date +%s)
out=${1:?output folder}; minutes=${2:?minutes for the whole call}; speakers=${3:-800}
config=${4:-examples/configs/default-gpu-natural.yaml}; vconfig=${5:-examples/configs/vocoder-gpu.yaml}
dconfig=${6-examples/configs/distill-gpu.yaml}
cd "$(dirname "$0")/../.."
work=${WORK_DIR:-/tmp/gpu_session}
rm -rf "$work" && mkdir -p "$work" "$out"
rm -rf data/corpus  # the vocoder starts when this corpus is complete: never on an earlier call's
export PACK=${PACK-data_packs/natural-v1} SITE_DIR=${SITE_DIR:-/tmp/site}
echo "gpu_session: model $config, vocoder $vconfig, distillation '$dconfig', $speakers espeak-ng speakers," \
  "pack '${PACK}', $minutes minutes"
bash examples/scripts/train_on_gpu.sh "$work/model" "$minutes" "$speakers" "$config" > "$work/model.log" 2>&1 &
model_pid=$!
until [ -f data/corpus/corpus_summary.json ]; do
  if ! kill -0 "$model_pid" 2>/dev/null; then
    echo "the model script ended before the corpus existed:" >&2; tail -n 40 "$work/model.log" >&2; exit 1
  fi
  sleep 3
done
left=$(python3 -c "print(round($minutes - ($(date +%s) - $start) / 60, 2))")
echo "corpus ready after $(( $(date +%s) - start )) s; vocoder gets $left minutes"
distill_pid=""
if [ -n "$dconfig" ]; then
  # its own budget ends 1 minute early (final validation and export), and a hard stop 0.3 minutes before the call's end
  dleft=$(python3 -c "print(round($left - 1.0, 2))")
  echo "distillation ($dconfig) gets $dleft minutes"
  PYTHONPATH=$SITE_DIR:$PWD HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 nice -n 5 \
    timeout "$(python3 -c "print(max(1, int(($left - 0.3) * 60)))")" python3 examples/distill_locdit.py \
    --config "$dconfig" --corpus data/corpus --output-dir "$work/distill" --pairs-dir "$work/distill/pairs" \
    --time-budget-min "$dleft" > "$work/distill.log" 2>&1 &
  distill_pid=$!
fi
vocoder_status=0
SKIP_WHEELS=1 PYTHONPATH=$SITE_DIR REUSE_CORPUS=1 DATA_DIR=data/corpus RUN_DIR=runs/vocoder-gpu RESERVE_MIN=0.7 \
  bash examples/scripts/train_vocoder_on_gpu.sh "$work/vocoder" "$left" "$vconfig" > "$work/vocoder.log" 2>&1 \
  || vocoder_status=$?
model_status=0
wait "$model_pid" || model_status=$?
distill_status=0
if [ -n "$distill_pid" ]; then wait "$distill_pid" || distill_status=$?; fi
echo "model script exit $model_status, vocoder script exit $vocoder_status, distillation exit $distill_status," \
  "$(( $(date +%s) - start )) s in all"
tail -n 25 "$work/model.log"
tail -n 12 "$work/vocoder.log"
if [ -n "$distill_pid" ]; then tail -n 12 "$work/distill.log"; fi
rm -rf "$out/model" && mkdir -p "$out/model"
if [ -d "$work/model/model" ]; then cp "$work/model/model/"* "$out/model/"; fi
if [ -d "$work/vocoder/vocoder" ]; then tar czf "$out/vocoder.tar.gz" -C "$work/vocoder" vocoder; fi
if [ -d "$work/distill/student" ]; then  # the student, its log and summary; not the 40 MB float32 pipeline
  cp "$work/distill.log" "$work/distill/student/distill.log"
  for f in summary.json distill_config.json; do
    if [ -f "$work/distill/$f" ]; then cp "$work/distill/$f" "$work/distill/student/"; fi
  done
  tar czf "$out/distill.tar.gz" -C "$work/distill" student
fi
tar czf "$out/logs.tar.gz" -C "$work" model.log vocoder.log $(cd "$work" && ls -d distill.log model/logs.tar.gz \
  vocoder/logs.tar.gz vocoder/samples 2>/dev/null) || true
ls -la "$out" "$out/model"
files=$(find "$out" -type f | wc -l)
if [ "$files" -gt 8 ]; then echo "WARNING: $files files under OUT; only 8 come back from the device" >&2; fi
exit $(( model_status || vocoder_status || distill_status ))

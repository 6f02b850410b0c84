#!/usr/bin/env bash
# Score what one GPU call (examples/scripts/gpu_session.sh) brought back against the shipped default, on this CPU,
# in one command: every arm paired per case on the validation sets, so that the choice is made there and only the
# chosen arm meets the test sets once.
#   bash examples/scripts/evaluate_gpu_session.sh RETURNED [EVAL_DIR]
# RETURNED: the folder the device call's files landed in (model/, vocoder.tar.gz, distill.tar.gz; any may be missing).
# EVAL_DIR (default outputs/gpu_eval) gets arms/ (pipeline folders), eval/ (evaluate.py outputs) and summary.txt.
# Arms, each a copy of the shipped default (modeling_ditar/default) with one part replaced:
#   model-a1.0, model-a0.5, model-a0.3  the returned model's weights blended into the default's at ALPHAS
#                                       (conversion/interpolate_weights.py; 1.0 = the returned model alone). The
#                                       default is itself a blend, and continuing it alone has lost words before
#                                       (docs/research/training/cpu_natural_continuation.md), so blends are scored too.
#   vocoder                             the default speaking through the returned vocoder (also its resynthesis of
#                                       the ground truth, against Griffin-Lim's)
#   student                             the default with the returned few-step LocDiT (distill_locdit.py --assemble)
# Sets: SETS (default "val48 natval48 natcond48"), each data/eval/SET/cases.jsonl (`bash
# examples/scripts/build_eval_sets.sh` rebuilds them on a fresh machine in about 2 minutes). STUDENT_SETS (default
# "natcondfresh160", skipped with a note when its cases are missing: `bash examples/scripts/build_eval_sets.sh
# natcondfresh160`) are scored for the student and the default only: 151 degraded prompts, enough to count how often a
# few-step LocDiT fails to stop where the default does not (one case of natcond48 could not tell). examples/evaluate.py runs
# with --asr-redecode-loops --dnsmos on one thread, JOBS (default 2) at a time; finished evaluations are kept, so a
# rerun continues (one made on another cases file, MAX_CASES, pipeline, rows or model weights is made again).
# MAX_CASES limits the cases per set (a quick check of the script itself). PYTHON defaults to .venv/bin/python where it
# exists.
set -euo pipefail
returned=$(cd "${1:?the folder where the files of the GPU call landed}" && pwd)
cd "$(dirname "$0")/../.."
eval_dir=${2:-outputs/gpu_eval}
sets=${SETS:-val48 natval48 natcond48}
student_sets=${STUDENT_SETS-natcondfresh160}
alphas=${ALPHAS:-1.0 0.5 0.3}
jobs=${JOBS:-2}
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
default=modeling_ditar/default
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
for set in $sets; do
  if [ ! -f "data/eval/$set/cases.jsonl" ]; then
    echo "data/eval/$set/cases.jsonl is missing: build it first (bash examples/scripts/build_eval_sets.sh $set)," \
         "or leave it out of SETS" >&2
    exit 1
  fi
done
mkdir -p "$eval_dir/arms" "$eval_dir/eval" "$eval_dir/returned"

# 1. arms: pipeline folders, each built again (and its evaluations made again) when the files it was made from are not
# those given now, e.g. the files of a later GPU call landed in the same folder
fingerprint() {  # FILES...: their sha256 sums on one line (files that do not exist are left out)
  local f
  for f in "$@"; do
    if [ -f "$f" ]; then sha256sum "$f" | cut -d' ' -f1; fi
  done | tr '\n' ' '
}
built_from() {  # ARM FOLDER INPUTS: true when FOLDER (the arm's pipeline) was built from INPUTS (a fingerprint)
  if [ -f "$2/model_index.json" ] && [ "$(cat "$eval_dir/arms/$1.built-from" 2>/dev/null)" = "$3" ]; then return 0; fi
  if [ -e "$2" ]; then
    echo "building arm $1 again: it was made from other files than those in $returned now"
    rm -rf "$eval_dir/eval/$1-"*
  fi
  return 1
}
arms=()
if [ -f "$returned/model/config.json" ]; then
  for alpha in $alphas; do
    arm=model-a$alpha
    inputs="alpha $alpha $(fingerprint "$returned"/model/*.safetensors "$default"/model/*.safetensors)"
    if ! built_from "$arm" "$eval_dir/arms/$arm" "$inputs"; then
      "$python" conversion/interpolate_weights.py "$default" "$returned/model" "$eval_dir/arms/$arm" --alpha "$alpha" \
        --force
      echo "$inputs" > "$eval_dir/arms/$arm.built-from"
    fi
    arms+=("$arm")
  done
else
  echo "no model/ in $returned: no model arms"
fi
if [ -f "$returned/vocoder.tar.gz" ]; then
  inputs=$(fingerprint "$returned/vocoder.tar.gz" "$default"/model/*.safetensors)
  if ! built_from vocoder "$eval_dir/arms/vocoder" "$inputs"; then
    rm -rf "$eval_dir/arms/vocoder" "$eval_dir/returned/vocoder"
    tar xzf "$returned/vocoder.tar.gz" -C "$eval_dir/returned"
    "$python" - "$default" "$eval_dir/returned/vocoder" "$eval_dir/arms/vocoder" <<'PY'
import sys

from modeling_ditar import DiTARPipeline, VocosVocoder

default, vocoder, target = sys.argv[1:]
pipe = DiTARPipeline.from_pretrained(default)
DiTARPipeline(**{**pipe.components, "vocoder": VocosVocoder.from_pretrained(vocoder)}).save_pretrained(target)
print(f"wrote {target}: {default} with the vocoder of {vocoder}")
PY
    echo "$inputs" > "$eval_dir/arms/vocoder.built-from"
  fi
  arms+=(vocoder)
else
  echo "no vocoder.tar.gz in $returned: no vocoder arm"
fi
if [ -f "$returned/distill.tar.gz" ]; then
  inputs=$(fingerprint "$returned/distill.tar.gz" "$default"/model/*.safetensors)
  if ! built_from student "$eval_dir/arms/student/pipeline" "$inputs"; then
    rm -rf "$eval_dir/arms/student" "$eval_dir/returned/student"
    tar xzf "$returned/distill.tar.gz" -C "$eval_dir/returned"
    "$python" examples/distill_locdit.py --config examples/configs/distill-gpu.yaml --teacher "$default" \
      --assemble "$eval_dir/returned/student" --output-dir "$eval_dir/arms/student"
    echo "$inputs" > "$eval_dir/arms/student.built-from"
  fi
  arms+=(student)
else
  echo "no distill.tar.gz in $returned: no student arm"
fi
if [ ${#arms[@]} -eq 0 ]; then echo "nothing to evaluate in $returned" >&2; exit 1; fi
extra_sets=""
if [[ " ${arms[*]} " == *" student "* ]]; then
  for set in $student_sets; do
    if [ -f "data/eval/$set/cases.jsonl" ]; then extra_sets="$extra_sets $set"; else
      echo "data/eval/$set/cases.jsonl is missing: the student is not scored on $set" \
           "(bash examples/scripts/build_eval_sets.sh $set builds it)"
    fi
  done
fi
echo "arms: ${arms[*]}; sets: $sets${extra_sets:+; the student also on:$extra_sets}"

# 2. evaluations, JOBS at a time: the default and every arm on every set
pipeline_of() {
  case $1 in
    default) echo "$default" ;;
    student) echo "$eval_dir/arms/student/pipeline" ;;
    *) echo "$eval_dir/arms/$1" ;;
  esac
}
stale_results() {  # RESULTS CASES PIPELINE ROWS MAX_CASES: why RESULTS is not what this evaluation would make now
  "$python" examples/research/stale_results.py "$@"
}
evaluate() {  # ARM SET
  local out="$eval_dir/eval/$1-$2" rows=model why
  case $1 in default | vocoder) rows=resynth,model ;; esac
  if [ -f "$out/results.json" ]; then  # kept from an earlier run: reused only when made as this one would be
    why=$(stale_results "$out/results.json" "data/eval/$2/cases.jsonl" "$(pipeline_of "$1")" "$rows" \
      "${MAX_CASES:-}") || why="a check of it that failed"
    if [ -z "$why" ]; then return 0; fi
    echo "evaluating $1 on $2 again: $out/results.json was made with $why"
  fi
  "$python" examples/evaluate.py --cases "data/eval/$2/cases.jsonl" --rows "$rows" --asr-redecode-loops --threads 1 \
    --dnsmos --pipeline "$(pipeline_of "$1")" --label "$1" ${MAX_CASES:+--max-cases "$MAX_CASES"} --out "$out" \
    > "$out.log" 2>&1 || { echo "evaluation $1 on $2 failed: $out.log" >&2; return 1; }
  echo "evaluated $1 on $2"
}
started=$(date +%s)
running=0
status=0
queue=()  # "ARM SET": the default and every arm on SETS, then the default and the student on the extra sets
for set in $sets; do for arm in default "${arms[@]}"; do queue+=("$arm $set"); done; done
for set in $extra_sets; do queue+=("default $set" "student $set"); done
for job in "${queue[@]}"; do
  evaluate $job &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || status=1; running=$((running - 1)); fi
done
while [ "$running" -gt 0 ]; do wait -n || status=1; running=$((running - 1)); done
echo "evaluations took $(( $(date +%s) - started )) s"

# 3. every arm paired against the default, per set
{
  echo "Returned: $returned; arms against the shipped default, paired per case (examples/research/paired_eval.py)."
  for set in $sets $extra_sets; do
    echo "== $set"
    for arm in "${arms[@]}"; do
      if [ -f "$eval_dir/eval/$arm-$set/results.json" ]; then
        echo "$arm: $("$python" examples/research/paired_eval.py "$eval_dir/eval/default-$set/results.json" \
          "$eval_dir/eval/$arm-$set/results.json" | tail -n 1)"
        if [ "$arm" = vocoder ]; then
          echo "vocoder, resynthesised ground truth: $("$python" examples/research/paired_eval.py \
            "$eval_dir/eval/default-$set/results.json" "$eval_dir/eval/$arm-$set/results.json" --row resynth \
            | tail -n 1)"
        fi
      fi
    done
  done
} | tee "$eval_dir/summary.txt"
exit $status

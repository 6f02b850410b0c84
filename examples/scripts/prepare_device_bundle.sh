#!/usr/bin/env bash
# Prepare what a bare GPU machine without network needs to build the corpus and train (examples/scripts/train_on_gpu.sh):
#   .espeak/  the espeak-ng 1.51 binary and libraries of this Debian machine (audio output replaced by a stub library,
#             since `espeak-ng -w` only writes files), English espeak-ng data and the fortunes text source;
#   .whl/     wheels for Python 3.12 of the packages the GPU image lacks or has too old, three of them slimmed
#             (examples/scripts/slim_wheel.py) to what a run imports: transformers without the model folders DiTAR
#             never loads (13.5 -> 2.3 MB), diffusers without its pipeline folders (6.4 -> 2.8 MB), espeakng-loader
#             with the English dictionary only (10 -> 0.8 MB; the phonemizer keeps espeak-ng 1.52, the version users
#             get: the system 1.51 library changes the phonemes of ~10% of sentences, e.g. "ɔːɹ" -> "oːɹ").
# Both folders are git-ignored; carry them. Natural voices do not travel as synthesizers (Piper, Kokoro and festival
# are ~160 MB): their speech travels as the committed pack data_packs/natural-v1 (examples/corpus/natural_pack.py),
# which train_on_gpu.sh adds with PACK=. Ends by checking the slim wheels (a tiny generation and the training imports
# with them first on PYTHONPATH) and printing what a device call would carry (device_payload_size.sh, <= 64 MiB).
# Needs apt packages espeak-ng, fortunes and gcc here, and a Python with torch and the package's other dependencies
# for the check (PYTHON, default .venv/bin/python). Full wheels are downloaded once into WHEEL_CACHE (default
# ~/.cache/ditar-device-wheels) and slimmed from there on every run.
#   DRY_RUN=1 bash examples/scripts/prepare_device_bundle.sh   # print the wheel list and what is slimmed, no changes
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -n "${NATURAL:-}" ]; then
  echo "NATURAL=1 is gone: Piper, Kokoro and festival (~160 MB) cannot fit the GPU machine's 64 MiB. Their speech" \
       "travels as the pack data_packs/natural-v1 (examples/corpus/natural_pack.py build); train with" \
       "PACK=data_packs/natural-v1 bash examples/scripts/train_on_gpu.sh ..." >&2
  exit 1
fi
wheels=(diffusers==0.42.1 transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 phonemizer==3.4.0
        dlinfo==2.0.0 espeakng-loader==0.2.4 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12)
# transformers model folders a run can import: the backbones DiTAR configs name (qwen2; llama, qwen3, mistral work
# too), SpeechT5's HiFi-GAN vocoder, and the ones transformers/diffusers/peft import on their own when loaded.
keep_models=(auto llama qwen2 qwen3 mistral speecht5 bloom dinov2_with_registers encoder_decoder siglip vit_mae)
slim() {  # WHEEL_GLOB then slim_wheel.py arguments
  local w; w=$(ls .whl/$1); shift
  python3 examples/scripts/slim_wheel.py "$w" .whl "$@"
}
if [ -n "${DRY_RUN:-}" ]; then
  printf 'wheel %s\n' "${wheels[@]}"
  echo "slim transformers: keep models/{$(IFS=,; echo "${keep_models[*]}")}; diffusers: drop pipelines/*/;" \
       "espeakng-loader: keep en_dict and libespeak-ng.so"
  exit 0
fi
grep -qx '/.espeak/' .git/info/exclude 2>/dev/null || echo /.espeak/ >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
rm -rf .espeak && mkdir -p .espeak/bin .espeak/lib .espeak/fortunes
cat > /tmp/pcaudio_stub.c <<'C'
#include <stddef.h>
struct audio_object;
struct audio_object *create_audio_device_object(const char *d, const char *a, const char *n) { return NULL; }
int audio_object_open(struct audio_object *o, int f, unsigned r, unsigned char c) { return -1; }
void audio_object_close(struct audio_object *o) {}
void audio_object_destroy(struct audio_object *o) {}
int audio_object_write(struct audio_object *o, const void *d, size_t b) { return -1; }
int audio_object_drain(struct audio_object *o) { return 0; }
int audio_object_flush(struct audio_object *o) { return 0; }
const char *audio_object_strerror(struct audio_object *o, int e) { return "no audio device (stub)"; }
C
gcc -shared -fPIC -O2 -o .espeak/lib/libpcaudio.so.0 /tmp/pcaudio_stub.c
cp "$(command -v espeak-ng)" .espeak/bin/
cp -L /lib/x86_64-linux-gnu/libespeak-ng.so.1 /lib/x86_64-linux-gnu/libsonic.so.0 .espeak/lib/
cp -r /usr/lib/x86_64-linux-gnu/espeak-ng-data .espeak/
find .espeak/espeak-ng-data -name '*_dict' ! -name en_dict -delete
cp -r /usr/share/games/fortunes/* .espeak/fortunes/
# Full wheels are kept in a cache outside the repository (WHEEL_CACHE), so a rerun downloads nothing and slims afresh.
cache=${WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ditar-device-wheels}
mkdir -p "$cache"
rm -rf .whl && mkdir .whl
for p in "${wheels[@]}"; do
  name=${p%%==*}; name=${name//-/_}; version=${p##*==}
  if ! compgen -G "$cache/$name-$version-*.whl" >/dev/null; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$cache" "$p"
  fi
  cp "$cache/$name-$version-"*.whl .whl/
done
keep_args=()
for m in "${keep_models[@]}"; do keep_args+=(--keep "transformers/models/$m/*"); done
slim 'transformers-*.whl' --remove 'transformers/models/*/*' "${keep_args[@]}"
slim 'diffusers-*.whl' --remove 'diffusers/pipelines/*/*'
slim 'espeakng_loader-*.whl' --remove 'espeakng_loader/espeak-ng-data/*_dict' --keep '*/en_dict' \
  --remove 'espeakng_loader/libespeak-ng.so.1*'  # three copies of one library; get_library_path() names .so
chmod 644 .whl/*.whl
# The slim wheels must still do the job: install them alone, first on PYTHONPATH, and run a tiny generation with the
# embedded default, phonemize with the slim espeakng-loader and import the training scripts.
py=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
check=$(mktemp -d)
"$py" -m pip install -q --no-index --no-deps --no-compile --target "$check" .whl/transformers-*.whl \
  .whl/diffusers-*.whl .whl/espeakng_loader-*.whl
PYTHONPATH=$check:$PWD:$PWD/examples HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 "$py" - "$check" <<'PY'
import sys, torch
import diffusers, espeakng_loader, transformers
assert all(m.__file__.startswith(sys.argv[1]) for m in (diffusers, espeakng_loader, transformers)), "slim wheels unused"
from modeling_ditar import DiTARPipeline, DiTARTextFrontend, build_ditar_tokenizer
import build_corpus, train, training_eval  # noqa: F401  (what the GPU run imports)
from phonemizer.backend.espeak.wrapper import EspeakWrapper
ids = DiTARTextFrontend(build_ditar_tokenizer(phonemize=True)).encode("Hello there.")  # phonemized
version = EspeakWrapper().version
assert version[:2] == (1, 52), f"the phonemizer uses espeak-ng {version}, not the slim espeakng-loader's 1.52"
pipe = DiTARPipeline.from_pretrained()
out = pipe("Hello there.", generator=torch.Generator().manual_seed(0), num_inference_steps=2, max_new_patches=8)
audio = out.audios[0]
print(f"slim wheels ok: transformers {transformers.__version__}, espeak-ng {version}, "
      f"{len(ids)} token ids, {audio.shape[-1]} samples generated")
PY
rm -rf "$check"
du -sh .espeak .whl
bash examples/scripts/device_payload_size.sh .espeak .whl

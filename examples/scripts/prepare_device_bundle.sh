#!/usr/bin/env bash
# Prepare what a bare GPU machine without network needs to build the corpus and train (examples/scripts/train_on_gpu.sh):
#   .espeak/  the espeak-ng 1.51 binary and libraries of this Debian machine (audio output replaced by a stub library,
#             since `espeak-ng -w` only writes files), English espeak-ng data and the fortunes text source;
#   .whl/     wheels for Python 3.12 of the packages the GPU image lacks or has too old.
# Both folders are git-ignored; carry them to the machine. Needs apt packages espeak-ng, fortunes and gcc here.
set -euo pipefail
cd "$(dirname "$0")/../.."
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
for p in diffusers==0.42.1 transformers==5.24.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 phonemizer==3.4.0 \
         dlinfo==2.0.0 espeakng-loader==0.2.4 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "$p"
done
du -sh .espeak .whl

# Sourced by the scripts that run on a GPU machine without network (train_on_gpu.sh, train_vocoder_on_gpu.sh), from the
# repository root. The repository arrives there with .whl/ and .espeak/, made once by prepare_device_bundle.sh.
# - installs the wheels of .whl/ into SITE_DIR (default /tmp/site) and puts it and the repository on PYTHONPATH;
#   SKIP_WHEELS=1 keeps a site folder an earlier call made (or the caller's environment);
# - puts the bundled espeak-ng on PATH when .espeak/ is there, and sets `fortunes` to the sentence source;
# - refuses MIX with natural sources: their synthesizers (~160 MB) do not travel, their speech comes as a PACK.
site=${SITE_DIR:-/tmp/site}
if [ -d .whl ] && [ -z "${SKIP_WHEELS:-}" ]; then
  cross=()
  if [ "$(python3 -c 'import sys; print(sys.version_info[:2] == (3, 12))')" != True ]; then
    # the wheels are the GPU image's (cp312); a smoke test elsewhere installs them as they are: the pure-Python ones
    # (transformers, diffusers, datasets, ...) are what it exercises
    echo "python3 is not 3.12: installing the cp312 wheels of .whl for a smoke test"
    cross=(--python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --only-binary=:all:)
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "${cross[@]+"${cross[@]}"}" .whl/*.whl
  export PYTHONPATH=$site:$PWD
else
  export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
fi
if [ -d .espeak ]; then
  export PATH=$PWD/.espeak/bin:$PATH LD_LIBRARY_PATH=$PWD/.espeak/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export ESPEAK_DATA_PATH=$PWD/.espeak
  fortunes=$PWD/.espeak/fortunes
else
  fortunes=/usr/share/games/fortunes
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ -n "${MIX:-}" ] && [ "$MIX" != espeak=1 ]; then
  echo "MIX=$MIX: natural sources are not synthesized on the GPU machine: Piper, Kokoro and festival (~160 MB) do not" \
       "fit its 64 MiB transfer limit. Their speech comes from a pack built on a CPU machine: PACK=data_packs/natural-v1" \
       "(examples/corpus/natural_pack.py build; docs/research/natural_voice_corpus.md)." >&2
  exit 1
fi

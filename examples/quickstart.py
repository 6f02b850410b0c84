#!/usr/bin/env python
"""Write a wav with DiTAR.

    python examples/quickstart.py "Hello there." -o hello.wav

Uses the checkpoint embedded in the package when one is installed (`DiTARPipeline.from_pretrained()`); otherwise it
builds a tiny random-weight pipeline (which produces noise, not speech) so that the whole path text -> processor ->
model -> vocoder -> wav can be seen working on a fresh machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from modeling_ditar import (
    DiTARConfig,
    DiTARFeatureExtractor,
    DiTARForConditionalGeneration,
    DiTARPipeline,
    DiTARProcessor,
    build_ditar_tokenizer,
    build_pipeline,
)
from modeling_ditar.pipeline_ditar import EMBEDDED_DEFAULT


def random_pipeline() -> DiTARPipeline:
    torch.manual_seed(0)
    processor = DiTARProcessor(
        DiTARFeatureExtractor(feature_size=80, sampling_rate=16000, n_fft=1280, hop_length=320, log_floor=1e-4),
        build_ditar_tokenizer(phonemize=False),
    )
    text_config = dict(
        model_type="qwen2",
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(processor.tokenizer),
    )
    config = DiTARConfig(
        text_config=text_config,
        feature_dim=80,
        encoder_hidden_size=64,
        encoder_num_layers=1,
        locdit_hidden_size=64,
        locdit_num_layers=2,
        encoder_intermediate_size=128,
        locdit_intermediate_size=128,
    )
    pipe = build_pipeline(DiTARForConditionalGeneration(config).eval(), processor)
    rate = 16000
    t = np.arange(rate * 2) / rate
    voice = 0.2 * np.sin(2 * np.pi * 140 * t) * (1 + np.sin(2 * np.pi * 3 * t))  # a stand-in "voice"
    pipe.set_default_voice(voice.astype(np.float32), "a default voice", sampling_rate=rate)
    return pipe


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", nargs="?", default="Hello there, this is DiTAR speaking.")
    parser.add_argument("-o", "--output", default="quickstart.wav")
    args = parser.parse_args()
    output = Path(args.output)  # checked before generating, so no audio is lost to a bad path
    if not output.parent.is_dir():
        parser.error(f"{output.parent} does not exist: create it, or write elsewhere with -o")
    if output.is_dir():
        parser.error(f"{output} is a folder: give a file name such as {output / 'speech.wav'}")
    if output.suffix.lstrip(".").upper() not in sf.available_formats() or sf.default_subtype(output.suffix[1:]) is None:
        parser.error(f"cannot write {output.name!r}: give a file name ending in .wav, .flac or .ogg")
    if (EMBEDDED_DEFAULT / "model_index.json").is_file():
        pipe, max_new_patches = DiTARPipeline.from_pretrained(), None
    else:
        print("no embedded checkpoint installed: using a tiny RANDOM-weight pipeline (the wav will be noise)")
        pipe, max_new_patches = random_pipeline(), 25
    start = time.time()
    try:
        out = pipe(args.text, max_new_patches=max_new_patches, generator=torch.Generator().manual_seed(0))
    except ValueError as error:  # a text the model cannot speak: the pipeline names the problem
        parser.error(str(error))
    audio = out.audios[0][: out.audio_lengths[0]]
    sf.write(args.output, audio, pipe.sample_rate)
    seconds = len(audio) / pipe.sample_rate
    print(
        f"wrote {args.output}: {seconds:.2f} s of audio in {time.time() - start:.2f} s "
        f"(stopped by the model: {out.stopped[0]})"
    )


if __name__ == "__main__":
    main()

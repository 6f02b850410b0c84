"""Tiny DiTAR pipeline components for the processor, pipeline, streaming and CLI tests.

Shaped like diffusers' `get_dummy_components()` / `get_dummy_inputs()`: 8 kHz audio, 8 mel bins, hop 16 (500 frames/s),
patch size 2, a 1-layer qwen2 backbone of hidden 32, 2 sampler steps and a 4-iteration Griffin-Lim vocoder, so one
pipeline call takes milliseconds. The feature extractor and the model share non-trivial feature statistics, so any
missing (de-)normalisation shows up in the numbers. `run_in_threads` calls a function from several threads at once.
"""

from __future__ import annotations

import threading

import numpy as np
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

SR = 8000
FEATURE_DIM = 8
HOP = 16
N_FFT = 64
PATCH = 2
# per-bin statistics shared by the feature extractor and the model config
FEATURE_MEAN = [-9.0 + 0.25 * i for i in range(FEATURE_DIM)]
FEATURE_STD = [1.0 + 0.1 * i for i in range(FEATURE_DIM)]
VOICE_TEXT = "a test voice"


def tone(seconds: float = 0.05, sr: int = SR, freq: float = 220.0, amplitude: float = 0.3) -> np.ndarray:
    """A harmonic float32 test signal (mono)."""
    t = np.arange(int(round(seconds * sr))) / sr
    wave = sum(np.sin(2 * np.pi * k * freq * t) / k for k in range(1, 5))
    return (amplitude * wave / 2).astype(np.float32)


def spoken(seconds: float = 1.2, sr: int = SR, freq: float = 220.0, amplitude: float = 0.3) -> np.ndarray:
    """`tone` switched on and off four times a second (on 60% of the time, with 10 ms ramps), loud and quiet like
    syllables and pauses: prompts of 1.5 s or more must rise and fall like speech, where a steady tone is refused."""
    wave = tone(seconds, sr=sr, freq=freq, amplitude=amplitude)
    gate = ((np.arange(len(wave)) / sr * 4.0) % 1.0 < 0.6).astype(np.float32)
    ramp = max(1, round(0.01 * sr))
    envelope = np.convolve(gate, np.ones(ramp, dtype=np.float32) / ramp, mode="same")
    return (wave * envelope).astype(np.float32)


def get_dummy_feature_extractor(**overrides) -> DiTARFeatureExtractor:
    kwargs = dict(
        feature_size=FEATURE_DIM,
        sampling_rate=SR,
        n_fft=N_FFT,
        hop_length=HOP,
        feature_mean=FEATURE_MEAN,
        feature_std=FEATURE_STD,
    )
    kwargs.update(overrides)
    return DiTARFeatureExtractor(**kwargs)


def get_dummy_processor(**fe_overrides) -> DiTARProcessor:
    return DiTARProcessor(get_dummy_feature_extractor(**fe_overrides), build_ditar_tokenizer(phonemize=False))


def get_dummy_config(vocab_size: int, **overrides) -> DiTARConfig:
    kwargs = dict(
        text_config=dict(
            model_type="qwen2",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=vocab_size,
            max_position_embeddings=512,
            tie_word_embeddings=False,
        ),
        feature_dim=FEATURE_DIM,
        patch_size=PATCH,
        num_history_patches=2,
        feature_mean=FEATURE_MEAN,
        feature_std=FEATURE_STD,
        encoder_hidden_size=32,
        encoder_num_layers=1,
        encoder_num_heads=4,
        encoder_intermediate_size=64,
        locdit_hidden_size=32,
        locdit_num_layers=1,
        locdit_num_heads=4,
        locdit_intermediate_size=64,
        num_inference_steps=2,
        guidance_scale=2.0,
        temperature=0.5,
        # the random stop head must not stop: lengths then come from max_new_patches (or the text-length default)
        stop_threshold=0.999,
        max_patches_per_text_token=0.25,
        min_max_new_patches=2,
    )
    kwargs.update(overrides)
    return DiTARConfig(**kwargs)


def get_dummy_components(seed: int = 0, **config_overrides) -> dict:
    """model, processor, scheduler and vocoder of a tiny pipeline (random weights, LocDiT output made non-zero)."""
    processor = get_dummy_processor()
    torch.manual_seed(seed)
    model = DiTARForConditionalGeneration(get_dummy_config(len(processor.tokenizer), **config_overrides)).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # LocDiT's output projection is zero-initialised; random values give non-trivial audio
        out_proj = model.locdit.out_proj
        out_proj.weight.copy_(torch.randn(out_proj.weight.shape, generator=generator) * 0.15)
        model.stop_head.weight.zero_()
        model.stop_head.bias.fill_(-20.0)  # never stop
    pipe = build_pipeline(model, processor, vocoder=processor.build_vocoder(n_iter=4))
    return {"model": pipe.model, "processor": pipe.processor, "scheduler": pipe.scheduler, "vocoder": pipe.vocoder}


def get_dummy_pipeline(seed: int = 0, default_voice: bool = True, **config_overrides) -> DiTARPipeline:
    pipe = DiTARPipeline(**get_dummy_components(seed, **config_overrides))
    pipe.set_progress_bar_config(disable=True)
    if default_voice:
        pipe.set_default_voice(tone(0.05, sr=16000, freq=180.0), VOICE_TEXT, sampling_rate=16000)
    return pipe


def get_dummy_inputs(seed: int = 0, **overrides) -> dict:
    """Arguments of one fast, reproducible pipeline call (explicit prompt, 3 patches, 2 steps)."""
    inputs = dict(
        text="hello there",
        prompt_audio=tone(0.04),
        prompt_text="the prompt",
        sampling_rate=SR,
        num_inference_steps=2,
        guidance_scale=2.0,
        temperature=0.5,
        max_new_patches=3,
        generator=torch.Generator().manual_seed(seed),
    )
    inputs.update(overrides)
    return inputs


def write_wav(path, audio: np.ndarray, sr: int = SR, subtype: str | None = None) -> str:
    import soundfile as sf

    sf.write(str(path), audio, sr, subtype=subtype)
    return str(path)


def run_in_threads(function, arguments: list) -> list:
    """`function(argument)` for each argument, each in its own thread started together; results in order, and the
    first exception raised again."""
    results, errors = [None] * len(arguments), []
    start = threading.Barrier(len(arguments))

    def work(index, argument):
        start.wait()
        try:
            results[index] = function(argument)
        except BaseException as error:  # noqa: BLE001 - raised again below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=pair) for pair in enumerate(arguments)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results

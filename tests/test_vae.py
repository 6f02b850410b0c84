"""DiTAR on VAE latents: a tiny random AutoencoderOobleck as the pipeline's `vae` component (prompt audio encoded to
latents, generated latents decoded to audio), latent statistics over a dataset, save/load."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderOobleck
from pipeline_helpers import (
    SR,
    VOICE_TEXT,
    get_dummy_config,
    get_dummy_processor,
    tone,
    write_wav,
)
from preloaded_python import run as run_script

from modeling_ditar import (
    DiTARForConditionalGeneration,
    DiTARPipeline,
    build_pipeline,
    compute_latent_statistics,
    ditar_config_kwargs,
)
from modeling_ditar.audio_utils import soft_limit
from modeling_ditar.streaming import StreamingVocoder
from modeling_ditar.vae_features import (
    VAEVocoder,
    encode_waveforms,
    vae_hop_length,
    vae_latent_dim,
    vae_sampling_rate,
)

ROOT = Path(__file__).resolve().parent.parent
# diffusers' Oobleck uses torch.nn.utils.weight_norm, deprecated in torch
pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")
LATENT_DIM = 4
HOP = 8


def get_dummy_vae(seed: int = 0) -> AutoencoderOobleck:
    """Stereo, 8 kHz, hop 8 (1000 latent frames per second), 4-dim latents, ~7k parameters."""
    torch.manual_seed(seed)
    return AutoencoderOobleck(
        encoder_hidden_size=2 * LATENT_DIM,
        downsampling_ratios=[2, 4],
        channel_multiples=[1, 2],
        decoder_channels=4,
        decoder_input_channels=LATENT_DIM,
        audio_channels=2,
        sampling_rate=SR,
    ).eval()


def assert_same_stats(a: dict, b: dict):
    assert (a["num_clips"], a["num_frames"]) == (b["num_clips"], b["num_frames"])
    for key in ("feature_mean", "feature_std"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-7)


def dataset_clips():
    return [(tone(0.05, freq=f), SR) for f in (150.0, 220.0, 330.0)] + [(tone(0.03, sr=16000, freq=200.0), 16000)]


def get_dummy_vae_pipeline(seed: int = 0, default_voice: bool = True) -> DiTARPipeline:
    vae = get_dummy_vae(seed)
    stats = compute_latent_statistics(vae, dataset_clips())
    processor = get_dummy_processor()
    torch.manual_seed(seed)
    overrides = {**ditar_config_kwargs(vae, stats), "num_history_patches": 2}
    model = DiTARForConditionalGeneration(get_dummy_config(len(processor.tokenizer), **overrides)).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # zero-initialised LocDiT output and a stop head that never fires, as in pipeline_helpers
        model.locdit.out_proj.weight.copy_(torch.randn(model.locdit.out_proj.weight.shape, generator=generator) * 0.15)
        model.stop_head.weight.zero_()
        model.stop_head.bias.fill_(-20.0)
    pipe = build_pipeline(model, processor, vae=vae)
    pipe.set_progress_bar_config(disable=True)
    if default_voice:
        pipe.set_default_voice(tone(0.05, sr=16000, freq=180.0), VOICE_TEXT, sampling_rate=16000)
    return pipe


@pytest.fixture(scope="module")
def pipe():
    return get_dummy_vae_pipeline()


def inputs(seed: int = 0, **overrides):
    kwargs = dict(
        text="hello there",
        prompt_audio=tone(0.04),
        prompt_text="the prompt",
        sampling_rate=SR,
        num_inference_steps=2,
        max_new_patches=3,
        generator=torch.Generator().manual_seed(seed),
    )
    kwargs.update(overrides)
    return kwargs


def test_vae_facts():
    vae = get_dummy_vae()
    assert (vae_latent_dim(vae), vae_hop_length(vae), vae_sampling_rate(vae)) == (LATENT_DIM, HOP, SR)
    assert ditar_config_kwargs(vae) == {"feature_dim": LATENT_DIM}
    with pytest.raises(ValueError, match="feature_mean.*has 3 values but the VAE latents have 4"):
        ditar_config_kwargs(vae, {"feature_mean": [0.0] * 3, "feature_std": [1.0] * 3})


def test_encode_waveforms_pads_each_clip_and_masks():
    vae = get_dummy_vae()
    short, long = torch.from_numpy(tone(0.01)), torch.from_numpy(tone(0.02))  # 80 and 160 samples
    latents, mask = encode_waveforms(vae, [short, long[:-3]])
    assert latents.shape == (2, 20, LATENT_DIM) and mask.sum(1).tolist() == [10, 20]  # 157 samples -> 20 frames
    assert torch.all(latents[0, 10:] == 0)
    alone, _ = encode_waveforms(vae, [short])
    torch.testing.assert_close(latents[0, :10], alone[0])  # a clip does not depend on its batch
    with torch.no_grad():  # mono audio is copied to both channels of the stereo VAE; the posterior mean is used
        direct = vae.encode(short[None, None].expand(1, 2, -1)).latent_dist.mean[0].T
    torch.testing.assert_close(alone[0], direct)


def test_latent_statistics_over_a_dataset(tmp_path):
    vae = get_dummy_vae()
    clips = dataset_clips()
    stats = compute_latent_statistics(vae, clips)
    from modeling_ditar import resample_audio

    frames = torch.cat(
        [
            encode_waveforms(vae, [resample_audio(torch.from_numpy(a), r, SR) if r != SR else torch.from_numpy(a)])[0][
                0
            ]
            for a, r in clips
        ]
    ).double()
    assert stats["num_clips"] == 4 and stats["num_frames"] == frames.shape[0]
    np.testing.assert_allclose(stats["feature_mean"], frames.mean(0).numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(stats["feature_std"], frames.std(0, unbiased=False).numpy(), rtol=1e-5, atol=1e-7)
    # the same from files and from corpus-style rows
    paths = [write_wav(tmp_path / f"{i}.wav", a, r, subtype="FLOAT") for i, (a, r) in enumerate(clips)]
    assert_same_stats(compute_latent_statistics(vae, paths), stats)
    rows = [{"audio": a.tolist(), "sampling_rate": r} for a, r in clips]
    assert_same_stats(compute_latent_statistics(vae, rows), stats)
    with pytest.raises(ValueError, match="at least one clip"):
        compute_latent_statistics(vae, [])


def test_pipeline_generates_audio_from_latents_end_to_end(pipe):
    assert pipe.sample_rate == SR and set(pipe.components) == {"model", "processor", "scheduler", "vae"}
    out = pipe(**inputs())
    features = pipe(**inputs(output_type="features")).audios
    assert features.shape == (1, 6, LATENT_DIM)  # 3 patches of 2 latent frames
    assert out.audios.shape == (1, 5 * HOP) and out.audio_lengths == [5 * HOP]  # (T - 1) * hop samples
    assert np.isfinite(out.audios).all() and np.abs(out.audios).max() > 0
    decoded = VAEVocoder(pipe.vae)(features)  # output_type="features" gives tensors
    np.testing.assert_allclose(out.audios, decoded.numpy(), atol=1e-5)  # chunked decoding == one pass here
    np.testing.assert_array_equal(pipe(**inputs()).audios, out.audios)  # seeds reproduce
    assert not np.array_equal(pipe(**inputs(seed=1)).audios, out.audios)


def test_chunked_vae_decoding_equals_decoding_the_whole_sequence(pipe):
    # the tiny VAE's decoder reaches ~20 latent frames each side: a longer sequence is decoded in several chunks, which
    # must carry enough context (and no crossfade) to give the samples of one whole-sequence decode
    vocoder = VAEVocoder(pipe.vae)
    frames = torch.randn(64, LATENT_DIM, generator=torch.Generator().manual_seed(0))
    whole = vocoder(frames[None])[0]
    torch.testing.assert_close(StreamingVocoder(vocoder).decode(frames), whole, atol=1e-5, rtol=0)
    # the same through the pipeline: its one-shot audio is decoded chunk by chunk too
    out = pipe(**inputs(max_new_patches=30))
    features = pipe(**inputs(max_new_patches=30, output_type="features")).audios
    assert features.shape[1] >= 60
    np.testing.assert_allclose(out.audios[0], soft_limit(vocoder(features)[0]).numpy(), atol=1e-5, rtol=0)


def test_prompt_audio_is_encoded_to_normalised_latents(pipe):
    from modeling_ditar.vae_features import VAEPromptEncoder

    encoder = VAEPromptEncoder(pipe.vae, pipe.model.normalize_features)
    batch = pipe.processor("hi", prompt_text="a", prompt_audio=tone(0.04), sampling_rate=SR, prompt_encoder=encoder)
    latents, mask = encode_waveforms(pipe.vae, [torch.from_numpy(tone(0.04))])
    torch.testing.assert_close(batch["prompt_features"], pipe.model.normalize_features(latents))
    assert batch["prompt_attention_mask"].tolist() == mask.tolist()
    # a prompt at another rate is resampled to the VAE's rate first
    resampled = pipe.processor(
        "hi", prompt_text="a", prompt_audio=tone(0.04, sr=16000), sampling_rate=16000, prompt_encoder=encoder
    )
    assert resampled["prompt_features"].shape == batch["prompt_features"].shape
    # the prompt changes what is generated
    a = pipe(**inputs(prompt_audio=tone(0.04, freq=150.0))).audios
    b = pipe(**inputs(prompt_audio=tone(0.04, freq=400.0))).audios
    assert not np.array_equal(a, b)


def test_default_voice_stream_and_long_text(pipe):
    with_voice = pipe("hello there", max_new_patches=3, generator=torch.Generator().manual_seed(2))
    assert with_voice.audios.shape[1] > 0
    chunks = list(pipe.stream("hello there", max_new_patches=30, generator=torch.Generator().manual_seed(4)))
    one_shot = pipe("hello there", max_new_patches=30, generator=torch.Generator().manual_seed(4)).audios[0]
    np.testing.assert_allclose(np.concatenate(chunks), one_shot, atol=1e-6)
    long_text = "This is one sentence. " * 14  # over 250 characters: spoken sentence by sentence with VAE pauses
    out = pipe(long_text, max_new_patches=2, num_inference_steps=1, generator=torch.Generator().manual_seed(0))
    assert out.audios.shape[1] > 2 * 2 * HOP and np.isfinite(out.audios).all()


def test_save_and_load_round_trip(tmp_path, pipe):
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["vae"] == ["diffusers", "AutoencoderOobleck"] and index["vocoder"] == [None, None]
    loaded = DiTARPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.vae, AutoencoderOobleck) and loaded.vocoder is None
    np.testing.assert_array_equal(loaded(**inputs()).audios, pipe(**inputs()).audios)
    np.testing.assert_array_equal(
        loaded("hello there", max_new_patches=3, generator=torch.manual_seed(1)).audios,
        pipe("hello there", max_new_patches=3, generator=torch.manual_seed(1)).audios,
    )


def test_component_errors(pipe):
    with pytest.raises(ValueError, match="either a vocoder .* or a vae"):
        DiTARPipeline(
            model=pipe.model,
            processor=pipe.processor,
            scheduler=pipe.scheduler,
            vocoder=pipe.processor.build_vocoder(n_iter=2),
            vae=pipe.vae,
        )
    vae8 = AutoencoderOobleck(
        encoder_hidden_size=16,
        downsampling_ratios=[2, 4],
        channel_multiples=[1, 2],
        decoder_channels=4,
        decoder_input_channels=8,
        audio_channels=1,
        sampling_rate=SR,
    )
    with pytest.raises(ValueError, match="8-dim latents but the model expects feature_dim=4"):
        DiTARPipeline(model=pipe.model, processor=pipe.processor, scheduler=pipe.scheduler, vae=vae8)
    with pytest.raises(ValueError, match="a vocoder is required"):
        DiTARPipeline(model=pipe.model, processor=pipe.processor, scheduler=pipe.scheduler)


def test_latent_stats_script(tmp_path):
    vae = get_dummy_vae()
    vae.save_pretrained(tmp_path / "vae")
    audio_dir = tmp_path / "wavs"
    audio_dir.mkdir()
    for i, (audio, rate) in enumerate(dataset_clips()):
        write_wav(audio_dir / f"{i}.wav", audio, rate, subtype="FLOAT")
    out = tmp_path / "stats.json"
    script = str(ROOT / "conversion" / "vae_latent_stats.py")
    run = [sys.executable, script, "--vae", str(tmp_path / "vae"), "--audio-dir", str(audio_dir), "--out", str(out)]
    result = run_script(run, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = json.loads(out.read_text())
    assert_same_stats(stats, compute_latent_statistics(vae, dataset_clips()))
    again = run_script(run, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "pass --force" in again.stderr


@pytest.mark.parametrize("case", ["--max-clips 0", "--max-clips -1", "--out FOLDER --force"])
def test_latent_stats_script_names_options_that_cannot_work(tmp_path, case):
    """These raised tracebacks (no clip to average, islice's ValueError, IsADirectoryError after the work was done);
    each is now one `error:` line that says what to give instead."""
    get_dummy_vae().save_pretrained(tmp_path / "vae")
    (tmp_path / "wavs").mkdir()
    write_wav(tmp_path / "wavs" / "a.wav", tone(0.2), SR)
    out = tmp_path / "stats.json"
    if case.startswith("--max-clips"):
        extra, count = case.split(), case.split()[1]
        expected = f"error: --max-clips must be at least 1, got {count}; leave it out to use every clip"
    else:
        out = tmp_path / "folder"
        out.mkdir()
        extra = ["--force"]
        expected = f"error: --out {out} is a folder; give the JSON file to write, e.g. {out / 'stats.json'}"
    script = str(ROOT / "conversion" / "vae_latent_stats.py")
    command = [sys.executable, script, "--vae", str(tmp_path / "vae"), "--audio-dir", str(tmp_path / "wavs")]
    result = run_script([*command, "--out", str(out), *extra], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and result.stderr.strip().splitlines() == [expected], result.stderr[-2000:]

"""DiTARVoice: a prompt processed once and reused (tiny pipeline). Its inputs equal the plain path's bit for bit; the
reuse of the backbone's KV cache of the transcript gives the same speech up to float32 rounding; it saves without
audio, refuses another feature or text setup, and serves `stream()`, batches, long texts and the text-to-speech
model."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from pipeline_helpers import (
    FEATURE_DIM,
    SR,
    get_dummy_config,
    get_dummy_inputs,
    get_dummy_pipeline,
    get_dummy_processor,
    tone,
)

from modeling_ditar import DiTARForTextToSpeech, DiTARPipeline, DiTARVoice

PROMPT = tone(0.04)
TRANSCRIPT = "the prompt"
# float32 rounding: the transcript's keys and values come from a shorter backbone call than in the full prefill
ATOL = 1e-5


@pytest.fixture(scope="module")
def pipe():
    return get_dummy_pipeline()


@pytest.fixture(scope="module")
def voice(pipe):
    return pipe.create_voice(PROMPT, TRANSCRIPT, sampling_rate=SR)


def settings(seed: int = 0, **overrides) -> dict:
    kwargs = get_dummy_inputs(seed, **overrides)
    for key in ("prompt_audio", "prompt_text", "sampling_rate"):
        kwargs.pop(key)
    return kwargs


def plain(pipe, seed: int = 0, **overrides):
    return pipe(prompt_audio=PROMPT, prompt_text=TRANSCRIPT, sampling_rate=SR, **settings(seed, **overrides))


def test_voice_inputs_equal_the_prompt_inputs_exactly(pipe, voice):
    texts = ["hello there", "a longer second text"]
    expected = pipe.processor(texts, prompt_audio=PROMPT, prompt_text=TRANSCRIPT, sampling_rate=SR)
    got = pipe.processor(texts, voice=voice)
    assert set(got) == set(expected)
    for key in expected:
        assert torch.equal(torch.as_tensor(got[key]), torch.as_tensor(expected[key])), key
    transcript_ids = pipe.processor.encode_text(TRANSCRIPT)
    assert voice.prompt_input_ids.tolist()[: len(transcript_ids)] == transcript_ids


def test_pipeline_with_a_voice_speaks_as_with_its_prompt(pipe, voice):
    expected = plain(pipe, output_type="features").audios
    got = pipe(voice=voice, **settings(output_type="features")).audios
    assert voice._cache is not None  # batch 1: the transcript's KV cache was built and reused
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    again = pipe(voice=voice, **settings(output_type="features")).audios  # from the stored cache: the same numbers
    np.testing.assert_array_equal(again, got)
    audio = pipe(voice=voice, **settings()).audios
    np.testing.assert_allclose(audio, plain(pipe).audios, atol=ATOL, rtol=0)


def test_a_voice_works_with_weights_made_under_inference_mode():
    """Parameters made under `torch.inference_mode()` (a model built or an adapter loaded there) have no version
    counter: the voice's cache key read it and every call with a voice failed ("Inference tensors do not track
    version counter")."""
    with torch.inference_mode():
        made_there = get_dummy_pipeline()
    voice = made_there.create_voice(PROMPT, TRANSCRIPT, sampling_rate=SR)
    got = made_there(voice=voice, **settings(output_type="features")).audios
    np.testing.assert_allclose(got, plain(made_there, output_type="features").audios, atol=ATOL, rtol=0)


def test_padded_batch_skips_the_cache_and_is_bit_identical(pipe, voice):
    texts = ["hello there", "a somewhat longer second text"]
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    expected = plain(pipe, text=texts, generator=generators, output_type="features")
    generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
    got = pipe(voice=[voice, voice], **settings(text=texts, generator=generators, output_type="features"))
    np.testing.assert_array_equal(got.audios, expected.audios)
    assert got.audio_lengths == expected.audio_lengths


def test_candidates_and_long_texts_with_a_voice():
    pipe = get_dummy_pipeline(ctc_loss_weight=0.1)
    voice = pipe.create_voice(PROMPT, TRANSCRIPT, sampling_rate=SR)
    expected = plain(pipe, num_candidates=3, output_type="features").audios
    got = pipe(voice=voice, **settings(num_candidates=3, output_type="features")).audios
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)
    long_text = "First sentence here. " * 15  # spoken sentence by sentence
    expected = plain(pipe, text=long_text, output_type="features").audios
    got = pipe(voice=voice, **settings(text=long_text, output_type="features")).audios
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=0)


def test_stream_with_a_voice_joins_to_the_one_shot_audio(pipe, voice):
    stream = pipe.stream(voice=voice, **settings())
    joined = np.concatenate(list(stream))
    one_shot = pipe(voice=voice, **settings(num_candidates=1))
    np.testing.assert_array_equal(joined, one_shot.audios[0][: one_shot.audio_lengths[0]])
    assert stream.finished_reason in ("stopped", "max_new_patches")
    prompt_stream = np.concatenate(list(pipe.stream(prompt_audio=PROMPT, prompt_text=TRANSCRIPT, sampling_rate=SR,
                                                    **settings())))  # fmt: skip
    np.testing.assert_allclose(joined, prompt_stream, atol=ATOL, rtol=0)


def test_the_default_voice_as_a_voice(pipe):
    voice = pipe.create_voice()
    expected = pipe(**settings(output_type="features")).audios
    np.testing.assert_allclose(pipe(voice=voice, **settings(output_type="features")).audios, expected, atol=ATOL)


def test_save_and_load_without_audio(pipe, voice, tmp_path):
    voice.save_pretrained(tmp_path / "v")
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["voice.safetensors", "voice_config.json"]
    loaded = DiTARVoice.from_pretrained(tmp_path / "v")
    assert torch.equal(loaded.prompt_features, voice.prompt_features)
    assert torch.equal(loaded.prompt_input_ids, voice.prompt_input_ids)
    assert torch.equal(loaded.speech_position_rate, voice.speech_position_rate)
    assert loaded.transcript == TRANSCRIPT and loaded.setup == voice.setup
    np.testing.assert_array_equal(pipe(voice=loaded, **settings()).audios, pipe(voice=voice, **settings()).audios)
    (tmp_path / "file").write_text("kept")
    with pytest.raises(NotADirectoryError, match="save_directory .*file' is a file; pass a folder path"):
        voice.save_pretrained(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "kept"


def test_a_voice_of_another_setup_is_refused(pipe, voice, tmp_path):
    other = get_dummy_processor(n_fft=32)  # another STFT: other features
    with pytest.raises(ValueError, match="different feature setup: n_fft is 64 in the voice and 32 here"):
        other(["hello"], voice=voice)
    voice.save_pretrained(tmp_path / "v")
    config = json.loads((tmp_path / "v" / "voice_config.json").read_text())
    config["setup"]["text"]["vocab_size"] += 1
    (tmp_path / "v" / "voice_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="different text setup: vocab_size"):
        pipe(voice=DiTARVoice.from_pretrained(tmp_path / "v"), **settings())
    with pytest.raises(ValueError, match="either voice or prompt_audio"):
        pipe(voice=voice, prompt_audio=PROMPT, prompt_text=TRANSCRIPT, sampling_rate=SR, **settings())
    with pytest.raises(TypeError, match="must be a DiTARVoice"):
        pipe(voice="default", **settings())
    with pytest.raises(FileNotFoundError, match="is not a DiTARVoice folder: it has no voice_config.json"):
        DiTARVoice.from_pretrained(tmp_path)


def test_a_voice_made_before_saving_the_pipeline_works_after_loading_it(tmp_path):
    """Saving adds remote-code bookkeeping (auto_map) to the processor's config: it made the voice 'of another
    setup' for the loaded pipeline, and a voice of the loaded pipeline for the one in memory."""
    pipe = get_dummy_pipeline()
    voice = pipe.create_voice(PROMPT, TRANSCRIPT, sampling_rate=SR)
    expected = pipe(voice=voice, **settings()).audios
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = DiTARPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(loaded(voice=voice, **settings()).audios, expected)
    pipe(voice=loaded.create_voice(PROMPT, TRANSCRIPT, sampling_rate=SR), **settings())


def test_a_damaged_or_missing_voice_folder_is_named(pipe, voice, tmp_path):
    from safetensors.torch import load_file, save_file

    with pytest.raises(FileNotFoundError, match="nowhere is not a DiTARVoice folder \\(it does not exist\\)"):
        DiTARVoice.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(OSError, match="'org/no-voice' is not a folder here, and a DiTARVoice could not be fetched"):
        DiTARVoice.from_pretrained("org/no-voice")
    voice.save_pretrained(tmp_path / "v")
    config_file, weights_file = tmp_path / "v" / "voice_config.json", tmp_path / "v" / "voice.safetensors"
    config, tensors = json.loads(config_file.read_text()), load_file(str(weights_file))

    def damaged(match, config_text=None, **tensor_changes):
        config_file.write_text(json.dumps(config) if config_text is None else config_text)
        save_file({k: v for k, v in {**tensors, **tensor_changes}.items() if v is not None}, str(weights_file))
        with pytest.raises(ValueError, match=match):
            DiTARVoice.from_pretrained(tmp_path / "v")

    damaged("damaged voice folder: voice_config.json is not valid JSON", config_text="{")
    damaged("damaged voice folder: voice_config.json holds a JSON list", config_text="[1]")
    damaged("damaged voice folder: it lacks setup", config_text=json.dumps({"format_version": 1, "transcript": "x"}))
    damaged("damaged voice folder: it lacks prompt_features", prompt_features=None)
    damaged("damaged voice folder: prompt_input_ids must hold", prompt_input_ids=torch.zeros(0, dtype=torch.long))
    damaged(
        "damaged voice folder: speech_position_rate must be a finite number",
        speech_position_rate=torch.tensor([float("nan")]),
    )
    weights_file.write_bytes(weights_file.read_bytes()[:40])
    with pytest.raises(ValueError, match="damaged voice folder: voice.safetensors cannot be read"):
        DiTARVoice.from_pretrained(tmp_path / "v")
    ids = voice.prompt_input_ids.clone()
    ids[0] = 10_000
    outside = DiTARVoice(voice.prompt_features, ids, voice.speech_position_rate, voice.transcript, voice.setup)
    with pytest.raises(ValueError, match="token ids up to 10000, outside this tokenizer's"):
        pipe(voice=outside, **settings())


def test_changed_weights_rebuild_the_cache():
    pipe = get_dummy_pipeline()
    voice = pipe.create_voice(PROMPT, TRANSCRIPT, sampling_rate=SR)
    pipe(voice=voice, **settings())
    with torch.no_grad():
        pipe.model.language_model.layers[0].self_attn.k_proj.weight.mul_(1.5)  # in place: same tensor, new values
    expected = plain(pipe, output_type="features").audios
    np.testing.assert_allclose(pipe(voice=voice, **settings(output_type="features")).audios, expected, atol=ATOL)


def test_text_to_speech_model_takes_the_processors_voice_inputs_and_the_prefix_cache():
    processor = get_dummy_processor()
    vocoder = {"vocoder_type": "griffin_lim", "sampling_rate": SR, "n_fft": 64, "hop_length": 16,
               "num_mel_bins": FEATURE_DIM, "n_iter": 4}  # fmt: skip
    torch.manual_seed(0)
    model = DiTARForTextToSpeech(get_dummy_config(len(processor.tokenizer), vocoder_config=vocoder)).eval()
    voice = processor.create_voice(PROMPT, TRANSCRIPT, sampling_rate=SR)
    options = dict(max_new_patches=3, num_inference_steps=2)
    prompt_inputs = processor("hello there", prompt_audio=PROMPT, prompt_text=TRANSCRIPT, sampling_rate=SR)
    expected = model.generate(**prompt_inputs, generator=torch.Generator().manual_seed(0), **options)
    inputs = processor("hello there", voice=voice)
    got = model.generate(**inputs, generator=torch.Generator().manual_seed(0), **options)
    assert torch.equal(got.audio[0], expected.audio[0])
    cached = model.generate(
        **inputs, generator=torch.Generator().manual_seed(0), past_key_values=voice.prefix_cache(model), **options
    )
    torch.testing.assert_close(cached.features[0], expected.features[0], atol=ATOL, rtol=0)
    padded = processor(["hello there", "hi"], voice=voice)
    with pytest.raises(ValueError, match="rows without padding"):
        model.generate(**padded, past_key_values=voice.prefix_cache(model), **options)


def test_without_the_prefix_cache_a_voice_is_bit_identical(pipe, tmp_path):
    voice = pipe.create_voice(PROMPT, TRANSCRIPT, sampling_rate=SR, reuse_prefix_cache=False)
    np.testing.assert_array_equal(pipe(voice=voice, **settings()).audios, plain(pipe).audios)
    assert voice._cache is None
    voice.save_pretrained(tmp_path / "voice")  # the setting was lost on saving
    reloaded = DiTARVoice.from_pretrained(tmp_path / "voice")
    assert not reloaded.reuse_prefix_cache
    np.testing.assert_array_equal(pipe(voice=reloaded, **settings()).audios, plain(pipe).audios)
    with pytest.raises(TypeError, match="unexpected arguments \\['revison'\\]"):
        DiTARVoice.from_pretrained(tmp_path / "voice", revison="main")  # ignored before


def test_with_bfloat16_products_a_voice_does_not_use_its_cache_and_is_bit_identical():
    """With bfloat16 matmuls (what "auto" picks on CPUs that multiply them natively) the cache's rounding differed
    enough to sample other speech than the same seed gives from the audio and transcript."""
    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.model.set_matmul_dtype(torch.bfloat16)
    voice = pipe.create_voice(PROMPT, TRANSCRIPT, sampling_rate=SR)
    assert voice.reuse_prefix_cache
    np.testing.assert_array_equal(pipe(voice=voice, **settings()).audios, plain(pipe).audios)
    assert voice._cache is None
    pipe.model.set_matmul_dtype(torch.float32)  # float32 products use it again
    pipe(voice=voice, **settings())
    assert voice._cache is not None


def test_the_servers_voices_are_processed_once(pipe):
    pytest.importorskip("fastapi")
    from modeling_ditar.server import create_app

    stored = create_app(pipe).state.voices.get("default")
    assert isinstance(stored.processed, DiTARVoice) and not stored.processed.reuse_prefix_cache
    assert stored.prompt() == {"voice": stored.processed}


def test_a_long_text_reads_its_prompt_once_and_speaks_as_before(pipe, monkeypatch, caplog):
    """A text spoken in several sentence groups: the prompt is read, checked and encoded once (one warning about its
    transcript, not one per group), and the speech is bit-identical to encoding the prompt with every group."""
    text = "A sentence that is part of a long paragraph. " * 12  # three sentence groups
    transcript = "the prompt \u2603"  # a character the vocabulary lacks: one warning each time it is encoded

    def kwargs(**overrides):  # a fresh generator each time
        return dict(prompt_audio=PROMPT, prompt_text=transcript, sampling_rate=SR, **settings(text=text, **overrides))

    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        once = pipe(**kwargs()).audios
        streamed = np.concatenate(list(pipe.stream(**kwargs(num_candidates=1))))
    assert caplog.text.count(transcript) == 2  # the call's and the stream's
    one_shot = pipe(**kwargs(num_candidates=1))
    np.testing.assert_array_equal(streamed, one_shot.audios[0][: one_shot.audio_lengths[0]])
    monkeypatch.setattr(type(pipe), "_prompt_as_voice", lambda *args: None)  # the prompt encoded with each group
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        per_group = pipe(**kwargs()).audios
    assert caplog.text.count(transcript) == 3
    np.testing.assert_array_equal(once, per_group)
    np.testing.assert_array_equal(np.concatenate(list(pipe.stream(**kwargs(num_candidates=1)))), streamed)


def test_long_texts_sharing_one_prompt_read_it_once_and_speak_as_alone(pipe, monkeypatch, caplog):
    """Several texts, each spoken in sentence groups, with one prompt for all: the prompt's features were computed and
    its transcript encoded (and warned about) once per text. Each text's speech equals what it gives alone with its
    generator, a short text among them included (spoken alone without sentence groups)."""
    long_text = "A sentence that is part of a long paragraph. " * 12  # three sentence groups
    texts = [long_text, "A short one.", long_text.replace("long", "longer")]
    transcript = "the prompt \u2603"  # a character the vocabulary lacks: one warning each time it is encoded
    prompt = dict(prompt_audio=PROMPT, prompt_text=transcript, sampling_rate=SR)
    features = {"count": 0}
    waveform_features = pipe.processor._waveform_features

    def counting(*args, **kwargs):
        features["count"] += 1
        return waveform_features(*args, **kwargs)

    monkeypatch.setattr(pipe.processor, "_waveform_features", counting)
    generators = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        together = pipe(**prompt, **settings(text=texts, generator=generators))
    assert features["count"] == 1
    assert caplog.text.count("not in the vocabulary") == 1
    for row, text in enumerate(texts):
        alone = pipe(**prompt, **settings(text=text, generator=torch.Generator().manual_seed(row + 1)))
        length = alone.audio_lengths[0]
        assert together.audio_lengths[row] == length
        np.testing.assert_array_equal(together.audios[row][:length], alone.audios[0][:length])
    features["count"] = 0  # the default voice too: once for the call
    pipe(**settings(text=[long_text, long_text]))
    assert features["count"] == 1

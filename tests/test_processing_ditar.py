"""DiTARProcessor: text + prompt transcript + prompt audio -> model inputs (tiny, CPU, offline)."""

import logging

import numpy as np
import pytest
import torch
from pipeline_helpers import (
    FEATURE_MEAN,
    FEATURE_STD,
    HOP,
    SR,
    get_dummy_processor,
    tone,
    write_wav,
)
from transformers import AutoProcessor

from modeling_ditar import DiTARProcessor


@pytest.fixture(scope="module")
def processor():
    return get_dummy_processor()


def test_input_ids_are_prompt_text_space_text(processor):
    out = processor("Hello there.", prompt_text="The prompt.", prompt_audio=tone(), sampling_rate=SR)
    space = processor.encode_text(" ", allow_empty=True)
    assert len(space) == 1
    expected = processor.encode_text("The prompt.") + space + processor.encode_text("Hello there.")
    assert out["input_ids"].tolist() == [expected]
    assert out["attention_mask"].tolist() == [[1] * len(expected)]
    assert processor.tokenizer.decode(expected) == "the prompt. hello there."
    assert set(out) == {
        "input_ids",
        "attention_mask",
        "prompt_features",
        "prompt_attention_mask",
        "speech_position_rate",
    }
    # without a prompt only the text
    plain = processor("Hello there.")
    assert set(plain) == {"input_ids", "attention_mask"}
    assert plain["input_ids"].tolist() == [processor.encode_text("Hello there.")]


def test_batch_pads_right_with_attention_mask(processor):
    texts = ["hi", "a much longer text"]
    out = processor(texts, prompt_text="ab", prompt_audio=tone(), sampling_rate=SR)
    ids, mask = out["input_ids"], out["attention_mask"]
    lengths = [len(processor.encode_text("ab")) + 1 + len(processor.encode_text(t)) for t in texts]
    assert ids.shape == mask.shape == (2, max(lengths))
    assert mask.sum(1).tolist() == lengths
    pad = processor.tokenizer.pad_token_id
    for row, length in enumerate(lengths):
        assert mask[row, :length].all() and not mask[row, length:].any()  # right padding
        assert (ids[row, length:] == pad).all()
        single = processor(texts[row], prompt_text="ab", prompt_audio=tone(), sampling_rate=SR)
        assert ids[row, :length].tolist() == single["input_ids"][0].tolist()


def test_one_prompt_is_broadcast_to_all_texts(processor):
    out = processor(["one", "two", "three"], prompt_text="ab", prompt_audio=tone(), sampling_rate=SR)
    features, mask = out["prompt_features"], out["prompt_attention_mask"]
    assert features.shape[0] == mask.shape[0] == 3
    assert torch.equal(features[0], features[1]) and torch.equal(features[0], features[2])
    prefix = len(processor.encode_text("ab"))
    assert (out["input_ids"][:, :prefix] == out["input_ids"][0, :prefix]).all()


def test_one_transcript_for_many_texts_is_warned_about_once(processor, caplog):
    transcript = "ab \u2603"  # a character the vocabulary lacks: a warning each time it is encoded
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        out = processor(["one", "two", "three"], prompt_text=transcript, prompt_audio=tone(), sampling_rate=SR)
    assert caplog.text.count(transcript) == 1
    assert "of `prompt_text`" in caplog.text  # the argument it came from, not `text`
    prefix = len(processor.encode_text(transcript))
    assert (out["input_ids"][:, :prefix] == out["input_ids"][0, :prefix]).all()


def test_one_prompt_per_text_pads_prompt_frames(processor):
    short, long = tone(0.02), tone(0.05, freq=300.0)
    out = processor(["one", "two"], prompt_text=["ab", "cde"], prompt_audio=[short, long], sampling_rate=SR)
    frames = out["prompt_attention_mask"].sum(1).tolist()
    assert frames == [1 + len(short) // HOP, 1 + len(long) // HOP]
    assert out["prompt_features"].shape == (2, max(frames), 8)
    assert (out["prompt_features"][0, frames[0] :] == 0).all()  # padding_value
    assert out["input_ids"][1, :3].tolist() == processor.encode_text("cde")


def test_features_are_normalised_with_feature_extractor_stats(processor):
    wave = tone(0.05)
    out = processor("hi", prompt_text="ab", prompt_audio=wave, sampling_rate=SR)
    log_mel = processor.feature_extractor.compute_log_mel(torch.from_numpy(wave))
    expected = (log_mel - torch.tensor(FEATURE_MEAN)) / torch.tensor(FEATURE_STD)
    torch.testing.assert_close(out["prompt_features"][0], expected)
    # and the stats are what the features are normalised with (not the identity)
    assert not torch.allclose(out["prompt_features"][0], log_mel)


def test_save_pretrained_auto_processor_round_trip(tmp_path, processor):
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, DiTARProcessor)
    assert loaded.feature_extractor.to_dict() == processor.feature_extractor.to_dict()
    args = dict(text=["Hello!", "How are you?"], prompt_text="the prompt", prompt_audio=tone(), sampling_rate=SR)
    a, b = processor(**args), loaded(**args)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(
    "audio",
    [
        np.stack([tone(), tone()]),  # [channels, samples]
        np.stack([tone(), tone()], axis=1),  # [samples, channels]
        torch.from_numpy(tone()),
    ],
    ids=["channels-first", "channels-last", "torch"],
)
def test_layouts_match_mono(processor, audio):
    mono = processor("hi", prompt_text="ab", prompt_audio=tone(), sampling_rate=SR)["prompt_features"]
    torch.testing.assert_close(
        processor("hi", prompt_text="ab", prompt_audio=audio, sampling_rate=SR)["prompt_features"], mono
    )


def test_int16_and_other_rates_are_converted(processor, tmp_path):
    wave = tone(0.05)
    pcm = np.round(wave * 32767).astype(np.int16)
    a = processor("hi", prompt_text="ab", prompt_audio=wave, sampling_rate=SR)["prompt_features"]
    b = processor("hi", prompt_text="ab", prompt_audio=pcm, sampling_rate=SR)["prompt_features"]
    torch.testing.assert_close(a, b, atol=2e-3, rtol=0)
    for rate in (16000, 44100):
        out = processor("hi", prompt_text="ab", prompt_audio=tone(0.05, sr=rate), sampling_rate=rate)
        assert out["prompt_attention_mask"].sum() == 1 + round(0.05 * SR) // HOP
    # a stereo int16 file at 44.1 kHz
    path = write_wav(tmp_path / "stereo.wav", np.stack([tone(0.05, sr=44100)] * 2, axis=1), sr=44100, subtype="PCM_16")
    out = processor("hi", prompt_text="ab", prompt_audio=path)
    assert out["prompt_attention_mask"].sum() == 1 + round(0.05 * SR) // HOP
    assert torch.isfinite(out["prompt_features"]).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(text=""), "`text` is empty"),
        (dict(text="  \n "), "`text` is empty"),
        (dict(text="你好"), "not in the vocabulary"),
        (dict(text=["ok", "   "]), r"`text\[1\]` .*empty"),
        (dict(text="hi", prompt_text="你好", prompt_audio=tone(), sampling_rate=SR), "`prompt_text` .*vocabulary"),
        (dict(text="hi", prompt_text=" ", prompt_audio=tone(), sampling_rate=SR), "`prompt_text` .*empty"),
        (dict(text="hi", prompt_audio=tone(), sampling_rate=SR), "without prompt_text"),
        (dict(text="hi", prompt_text="ab"), "prompt_text was given without prompt_audio"),
        (dict(text="hi", prompt_text="ab", prompt_audio=tone()), "sampling_rate is missing"),
        (
            dict(text=["a", "b", "c"], prompt_text="ab", prompt_audio=[tone(), tone()], sampling_rate=SR),
            "got 2 prompt_audio for 3 texts",
        ),
        (
            dict(text=["a", "b", "c"], prompt_text=["x", "y"], prompt_audio=tone(), sampling_rate=SR),
            "got 2 prompt_text for 3 texts",
        ),
        (
            dict(text="hi", prompt_text="ab", prompt_audio=np.zeros(0, np.float32), sampling_rate=SR),
            "prompt_audio: .*empty",
        ),
        (
            dict(text="hi", prompt_text="ab", prompt_audio=np.zeros(400, np.float32), sampling_rate=SR),
            "prompt_audio: .*silent",
        ),
        (
            dict(text="hi", prompt_text="ab", prompt_audio=np.r_[tone(), np.nan].astype(np.float32), sampling_rate=SR),
            "prompt_audio: .*1 NaN",
        ),
        (
            dict(text="hi", prompt_text="ab", prompt_audio=np.r_[tone(), np.inf].astype(np.float32), sampling_rate=SR),
            "prompt_audio: .*1 Inf",
        ),
        (dict(text=None), "text is required"),
        (dict(text="hi", return_tensors="np"), "return_tensors"),
    ],
)
def test_bad_inputs_name_the_argument(processor, kwargs, match):
    with pytest.raises(ValueError, match=match):
        processor(**kwargs)


def test_bad_prompt_files(processor, tmp_path):
    with pytest.raises(FileNotFoundError, match="prompt_audio: .*missing.wav"):
        processor("hi", prompt_text="ab", prompt_audio=str(tmp_path / "missing.wav"))
    fake = tmp_path / "fake.wav"
    fake.write_text("this is not audio")
    with pytest.raises(ValueError, match="prompt_audio: Could not read audio file .*fake.wav"):
        processor("hi", prompt_text="ab", prompt_audio=fake)
    with pytest.raises(ValueError, match="prompt_audio: .*empty"):
        processor("hi", prompt_text="ab", prompt_audio=write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32)))
    with pytest.raises(ValueError, match="prompt_audio: .*silent"):
        processor("hi", prompt_text="ab", prompt_audio=write_wav(tmp_path / "zero.wav", np.zeros(400, np.float32)))
    with pytest.raises(TypeError, match="prompt_audio must be a path"):
        processor("hi", prompt_text="ab", prompt_audio=object(), sampling_rate=SR)


def test_prompt_audio_as_a_datasets_value_or_an_audio_decoder(processor, tmp_path, monkeypatch):
    """The audio values `datasets` rows hold are prompts as they are: {'array', 'sampling_rate'} (decoded),
    {'path', 'bytes'} (undecoded) and torchcodec's AudioDecoder (datasets 4); their own rate wins."""
    import io
    import sys
    import types

    import soundfile as sf

    wave = tone(0.1, sr=8000)
    reference = processor("hi", prompt_text="ab", prompt_audio=wave, sampling_rate=8000)["prompt_features"]

    def features(audio, **kwargs):
        return processor("hi", prompt_text="ab", prompt_audio=audio, **kwargs)["prompt_features"]

    row = {"array": wave, "sampling_rate": 8000, "path": "clip.wav"}
    torch.testing.assert_close(features(row), reference)
    torch.testing.assert_close(features(row, sampling_rate=SR), reference)  # the value's own rate wins
    torch.testing.assert_close(features({"raw": wave}, sampling_rate=8000), reference)
    buffer = io.BytesIO()
    sf.write(buffer, wave, 8000, format="WAV", subtype="FLOAT")
    torch.testing.assert_close(features({"path": None, "bytes": buffer.getvalue()}), reference)
    path = write_wav(tmp_path / "clip.wav", wave, sr=8000, subtype="FLOAT")
    torch.testing.assert_close(features({"path": path, "bytes": None}), reference)

    class AudioDecoder:  # torchcodec.decoders.AudioDecoder's interface: get_all_samples() -> data [C, N], rate
        def get_all_samples(self):
            stereo = torch.from_numpy(np.stack([wave, wave]))
            return types.SimpleNamespace(data=stereo, sample_rate=8000)

    monkeypatch.setitem(sys.modules, "torchcodec.decoders", types.SimpleNamespace(AudioDecoder=AudioDecoder))
    torch.testing.assert_close(features(AudioDecoder()), reference)

    with pytest.raises(ValueError, match="prompt_audio: an audio dict with an array needs its 'sampling_rate'"):
        features({"array": wave})
    with pytest.raises(ValueError, match=r"prompt_audio: an audio dict needs .*got keys \['wave'\]"):
        features({"wave": wave})
    with pytest.raises(ValueError, match="prompt_audio: could not decode the audio dict's 'bytes'"):
        features({"bytes": b"not audio"})

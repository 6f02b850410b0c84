"""Tests of DiTARFeatureExtractor and the audio helpers (tiny clips, CPU, offline)."""

import numpy as np
import pytest
import soundfile
import torch

from modeling_ditar.audio_utils import load_audio, resample_audio, to_mono_float32
from modeling_ditar.feature_extraction_ditar import DiTARFeatureExtractor

SR = 24000


def sine(freq=440.0, seconds=0.25, sr=SR, amplitude=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_frequency(x, sr):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * sr / len(x)


@pytest.fixture
def fe():
    return DiTARFeatureExtractor()


def test_shapes_and_frame_count(fe):
    lengths = [6000, 2560, 1001]
    clips = [sine(seconds=n / SR)[:n] for n in lengths]
    out = fe(clips, sampling_rate=SR, return_tensors="pt")
    frames = [1 + n // fe.hop_length for n in lengths]
    assert out["input_features"].shape == (3, max(frames), fe.feature_size)
    assert out["attention_mask"].dtype == torch.long
    assert out["attention_mask"].sum(1).tolist() == frames
    assert fe.num_frames(2560) == 11 and fe.frame_rate == SR / 256
    # padded frames hold padding_value and the real frames equal the single-clip features
    single = fe(clips[1], sampling_rate=SR, return_tensors="pt")["input_features"][0]
    torch.testing.assert_close(out["input_features"][1, : frames[1]], single)
    assert torch.all(out["input_features"][1, frames[1] :] == fe.padding_value)


def test_compute_log_mel_is_unnormalised_log_mel(fe):
    log_mel = fe.compute_log_mel(torch.from_numpy(sine(1000.0)))
    assert log_mel.shape == (1 + 6000 // 256, 100)
    assert log_mel.min() >= np.log(fe.log_floor) - 1e-6
    # the 1 kHz tone lands in the mel bin whose filter peaks nearest 1 kHz
    assert int(log_mel[5].argmax()) == int(fe.mel_filters[round(1000 / (SR / fe.n_fft))].argmax())


def test_padding_options(fe):
    clips = [sine(seconds=0.05), sine(seconds=0.1)]
    out = fe(clips, sampling_rate=SR, pad_to_multiple_of=4, return_tensors="np")
    assert out["input_features"].shape[1] % 4 == 0
    ragged = fe(clips, sampling_rate=SR, padding=False)
    assert [f.shape[0] for f in ragged["input_features"]] == [1 + 1200 // 256, 1 + 2400 // 256]
    with pytest.raises(ValueError, match="padding"):
        fe(clips, sampling_rate=SR, padding=False, return_tensors="pt")


def test_normalize_denormalize_inverse():
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=8).tolist(), (rng.random(8) + 0.5).tolist()
    fe = DiTARFeatureExtractor(feature_size=8, n_fft=256, hop_length=64, feature_mean=mean, feature_std=std)
    x = torch.randn(2, 5, 8)
    normalized = fe.normalize(x)
    torch.testing.assert_close(normalized, (x - torch.tensor(mean)) / torch.tensor(std))
    torch.testing.assert_close(fe.denormalize(normalized), x)
    np.testing.assert_allclose(fe.denormalize(fe.normalize(x.numpy())), x.numpy(), rtol=1e-5, atol=1e-5)
    raw = fe(sine(), sampling_rate=SR, normalize=False, return_tensors="pt")["input_features"]
    normed = fe(sine(), sampling_rate=SR, return_tensors="pt")["input_features"]
    torch.testing.assert_close(fe.normalize(raw), normed)
    identity = DiTARFeatureExtractor(feature_size=8, n_fft=256, hop_length=64)
    assert torch.equal(identity.normalize(x), x) and torch.equal(identity.denormalize(x), x)


def test_save_load_round_trip(tmp_path):
    fe = DiTARFeatureExtractor(
        feature_size=16, n_fft=512, hop_length=128, feature_mean=[0.5] * 16, feature_std=[2.0] * 16
    )
    fe.save_pretrained(tmp_path)
    loaded = DiTARFeatureExtractor.from_pretrained(tmp_path)
    assert loaded.to_dict() == fe.to_dict()
    assert "_mel_filters" not in loaded.to_json_string() and loaded.feature_mean == [0.5] * 16
    clip = sine(seconds=0.1)
    a = fe(clip, sampling_rate=SR, return_tensors="pt")["input_features"]
    b = loaded(clip, sampling_rate=SR, return_tensors="pt")["input_features"]
    assert torch.equal(a, b)


def test_stereo_int16_and_resampling(fe):
    mono = sine(seconds=0.2)
    reference = fe(mono, sampling_rate=SR, return_tensors="pt")["input_features"]
    stereo_first = np.stack([mono, mono])  # [2, T]
    for stereo in (stereo_first, stereo_first.T, torch.from_numpy(stereo_first)):
        torch.testing.assert_close(fe(stereo, sampling_rate=SR, return_tensors="pt")["input_features"], reference)
    pcm16 = np.round(mono * 32767).astype(np.int16)
    prepared = fe.prepare_audio(pcm16, SR)
    assert prepared.dtype == torch.float32 and prepared.abs().max() <= 1.0
    np.testing.assert_allclose(prepared.numpy(), mono, atol=1e-4)
    # a 16 kHz 1 kHz tone becomes 24 kHz audio that still peaks at 1 kHz
    resampled = fe.prepare_audio(sine(1000.0, seconds=0.5, sr=16000), 16000)
    assert resampled.shape == (12000,)
    assert abs(peak_frequency(resampled.numpy(), SR) - 1000.0) < 5.0
    features_16k = fe(sine(1000.0, seconds=0.5, sr=16000), sampling_rate=16000, return_tensors="pt")["input_features"]
    assert features_16k.shape[1] == 1 + 12000 // 256


def test_resampler_accuracy_and_antialiasing():
    t = np.arange(22050) / 22050
    x = torch.from_numpy(np.sin(2 * np.pi * 440 * t))
    y = resample_audio(x, 22050, SR).numpy()
    ref = np.sin(2 * np.pi * 440 * np.arange(len(y)) / SR)
    assert len(y) == SR and np.abs(y[1000:-1000] - ref[1000:-1000]).max() < 1e-3
    # a 15 kHz tone cannot exist at 24 kHz: it must be filtered out, not aliased to 9 kHz
    high = torch.from_numpy(np.sin(2 * np.pi * 15000 * np.arange(4410) / 44100)).float()
    assert resample_audio(high, 44100, SR)[200:-200].abs().max() < 1e-2
    # 22051 -> 24000 has no small gcd-reduced ratio and takes the direct (per-output-sample) path
    odd_t = np.arange(4000) / 22051
    odd = resample_audio(torch.from_numpy(np.sin(2 * np.pi * 440 * odd_t)), 22051, SR).numpy()
    assert odd.shape == (int(np.ceil(4000 * SR / 22051)),)
    odd_ref = np.sin(2 * np.pi * 440 * np.arange(len(odd)) / SR)
    assert np.abs(odd[500:-500] - odd_ref[500:-500]).max() < 1e-3


def test_only_small_resampling_kernels_are_kept_between_calls():
    """The usual rates' kernels (1.3 MB or less) are cached; a rare ratio's (15992 -> 16000 Hz: 32 MB) is made per
    call, so a server fed odd rates cannot pin 16 of them. The audio is the same either way."""
    from modeling_ditar import audio_utils

    audio_utils._cached_polyphase_kernel.cache_clear()
    x = torch.randn(16000, dtype=torch.float64)
    first = resample_audio(x, 15992, 16000)
    assert audio_utils._cached_polyphase_kernel.cache_info().currsize == 0
    assert torch.equal(first, resample_audio(x, 15992, 16000))
    resample_audio(x, 44100, 16000)
    assert audio_utils._cached_polyphase_kernel.cache_info().currsize == 1


@pytest.mark.parametrize(
    "audio, match",
    [
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN"),
        (np.array([0.1, np.inf, 0.2], dtype=np.float32), "Inf"),
        (np.zeros(1000, dtype=np.float32), "silent"),
        (np.zeros((20, 1000), dtype=np.float32) + 0.1, "channels"),
    ],
)
def test_bad_audio_raises(fe, audio, match):
    with pytest.raises(ValueError, match=match):
        fe(audio, sampling_rate=SR)


def test_missing_sampling_rate_raises(fe):
    with pytest.raises(ValueError, match="sampling_rate"):
        fe(sine())
    with pytest.raises(ValueError, match="sampling_rate"):
        fe.prepare_audio(sine(), None)
    with pytest.raises(ValueError, match="clip 1"):
        fe([sine(), np.zeros(100, np.float32)], sampling_rate=SR)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hop_length": 0}, "hop_length"),
        ({"feature_size": 4, "feature_mean": [0.0] * 3}, "feature_mean"),
        ({"feature_size": 4, "feature_std": [1.0, 1.0, 0.0, 1.0]}, "feature_std"),
        ({"win_length": 2048}, "win_length"),
        ({"f_max": 20000.0}, "f_max"),
        ({"num_mel_bins": 80}, "num_mel_bins"),
        ({"log_floor": 0.0}, "log_floor"),
        ({"sampling_rate": -1}, "sampling_rate"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiTARFeatureExtractor(**kwargs)


def test_load_audio(tmp_path):
    path = tmp_path / "clip.wav"
    stereo = np.stack([sine(seconds=0.1, sr=16000)] * 2, axis=1)
    soundfile.write(path, stereo, 16000, subtype="PCM_16")
    waveform, rate = load_audio(path)
    assert rate == 16000 and waveform.shape == (1600,) and waveform.dtype == torch.float32
    waveform24, rate24 = load_audio(str(path), sampling_rate=SR)
    assert rate24 == SR and waveform24.shape == (2400,)
    array, array_rate = load_audio(stereo, sampling_rate=16000)
    assert array_rate == 16000 and array.shape == (1600,)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        load_audio(tmp_path / "missing.wav")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(ValueError, match="garbage.wav"):
        load_audio(garbage)
    with pytest.raises(ValueError, match="sampling_rate"):
        load_audio(stereo)


def test_to_mono_float32_layouts():
    mono = sine(seconds=0.01)
    assert to_mono_float32(mono[None, None, :]).shape == mono.shape
    assert to_mono_float32(list(map(float, mono))).shape == mono.shape
    np.testing.assert_allclose(to_mono_float32(np.stack([mono, -mono, mono, mono])).numpy(), mono / 2, atol=1e-7)
    int32 = (mono.astype(np.float64) * 2**31 * 0.9).astype(np.int32)
    np.testing.assert_allclose(to_mono_float32(int32).numpy(), mono * 0.9, atol=1e-6)


def test_big_endian_and_read_only_arrays_are_read_like_native_ones():
    """torch refused big-endian samples ("conversion between byte orders is not supported") and warned about
    read-only buffers (`np.frombuffer`, a read-only memmap); both are copied to native, writable arrays."""
    import warnings

    mono = sine(seconds=0.01)
    pcm = (mono * 20000).astype(np.int16)
    read_only = np.frombuffer(mono.tobytes(), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "not writable" warning fails the test
        assert torch.equal(to_mono_float32(mono.astype(">f4")), to_mono_float32(mono))
        assert torch.equal(to_mono_float32(pcm.astype(">i2")), to_mono_float32(pcm))
        assert torch.equal(to_mono_float32(read_only), to_mono_float32(mono))
    assert read_only.flags.writeable is False  # the caller's array is left as it was

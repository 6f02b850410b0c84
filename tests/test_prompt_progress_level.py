"""The prompt's working range (cut at a pause, too short is an error), one progress bar per call counting real patches,
and an output level that never clips (a stateless soft limiter, so streamed and one-shot audio stay equal)."""

from unittest import mock

import numpy as np
import pytest
import torch
from diffusers.utils import logging
from pipeline_helpers import SR, get_dummy_inputs, get_dummy_pipeline, get_dummy_processor, tone

from modeling_ditar import prompt_audio
from modeling_ditar.audio_utils import LIMIT_CEILING, LIMIT_KNEE, soft_limit
from modeling_ditar.pipeline_ditar import split_sentences
from modeling_ditar.prompt_audio import cut_transcript, find_pause, trim_prompt
from modeling_ditar.streaming import StreamingVocoder


@pytest.fixture(scope="module")
def pipe():
    return get_dummy_pipeline()


def speech_with_gaps(pieces, sr: int = SR, noise: float = 1e-4) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tones ("words") of the given lengths (s) separated by silences (negative lengths), with a little noise; returns
    the waveform and the sample ranges of the silences."""
    rng = np.random.default_rng(0)
    parts, gaps, position = [], [], 0
    for seconds in pieces:
        n = int(round(abs(seconds) * sr))
        if seconds > 0:
            parts.append(tone(abs(seconds), sr=sr, freq=150 + 20 * len(parts)))
        else:
            parts.append(np.zeros(n, np.float32))
            gaps.append((position, position + n))
        position += n
    audio = np.concatenate(parts)
    return (audio + noise * rng.standard_normal(audio.shape)).astype(np.float32), gaps


# ------------------------------------------------------------------------------------------------------------------
# prompt length


def test_cut_falls_in_the_last_pause_before_the_limit():
    sr = 16000
    # speech 0-3 s, pause 3.0-3.4 s, speech to 6.2 s, a 40 ms gap (too short for a pause), speech to 9.5 s, pause
    # 9.5-10 s (past the 8 s limit), speech
    audio, gaps = speech_with_gaps([3.0, -0.4, 2.8, -0.04, 3.26, -0.5, 2.0], sr)
    limit = 8 * sr
    assert gaps[2][0] > limit
    # searching 2-8 s: the last pause that starts before the limit
    cut = find_pause(audio, sr, limit, earliest=2 * sr)
    assert gaps[0][0] < cut <= gaps[0][1]
    # searching 4-8 s only, where no pause is: the quietest frame, inside the 40 ms gap between two words
    cut = find_pause(audio, sr, limit, earliest=4 * sr)
    assert gaps[1][0] <= cut <= gaps[1][1]


def test_a_real_pause_wins_over_a_later_quiet_frame():
    sr = 16000
    audio, gaps = speech_with_gaps([4.0, -0.3, 4.5], sr)  # one pause at 4.0-4.3 s, speech to 8.8 s
    cut = find_pause(audio, sr, 8 * sr, earliest=4 * sr - 100)
    assert gaps[0][0] < cut <= gaps[0][1]
    assert abs(cut - (gaps[0][0] + int(0.1 * sr))) <= 0.02 * sr  # about 0.1 s of the pause kept after the last word


def test_trim_prompt_keeps_the_words_of_the_speech_kept():
    sr = 16000
    audio, gaps = speech_with_gaps([2.0, -0.3, 2.0, -0.3, 2.0, -0.3, 2.0, -0.3, 2.0], sr)  # 5 "sentences", 11.2 s
    text = "Red cat ran. Big dog sat. Old man ate. New car hit. Hot sun set."  # sentences as long as each other
    kept_audio, kept_text, message = trim_prompt(audio, sr, text, max_seconds=8.0)
    assert gaps[2][0] < len(kept_audio) <= gaps[2][1]  # after the third sentence (the fourth ends at 8.9 s)
    assert kept_text == "Red cat ran. Big dog sat. Old man ate."
    assert "11.2 s long" in message and "8 s" in message and "cut at a pause" in message
    assert "first 9 of its 15 words" in message and "('Red cat ran. Big dog sat. Old man ate.')" in message
    # a prompt within the range is left alone
    same_audio, same_text, none = trim_prompt(audio[: 5 * sr], sr, text)
    assert none is None and same_text == text and len(same_audio) == 5 * sr


def test_cut_transcript_prefers_sentence_ends():
    text = "Alpha beta gamma delta. Epsilon zeta eta theta iota kappa."
    assert cut_transcript(text, 0.45) == "Alpha beta gamma delta."
    assert cut_transcript(text, 0.9) == "Alpha beta gamma delta. Epsilon zeta eta theta iota"
    assert cut_transcript("word", 0.3) == "word"


def test_pipeline_cuts_a_long_prompt_with_a_warning(pipe, monkeypatch):
    monkeypatch.setattr(prompt_audio, "MAX_PROMPT_SECONDS", 0.45)  # the tiny model's scale (500 frames/s)
    audio, gaps = speech_with_gaps([0.1, -0.12, 0.1, -0.12, 0.1], SR)  # 0.54 s at 8 kHz
    logger = logging.get_logger("modeling_ditar.pipeline_ditar")
    with mock.patch.object(logger, "warning") as warning:
        out = pipe(**get_dummy_inputs(prompt_audio=audio, prompt_text="one two. three four. five six."))
    (message,), _ = warning.call_args
    assert warning.call_count == 1
    assert "prompt_audio is 0.5 s long, longer than the 0.45 s" in message
    assert "cut at a pause" in message and "'one two. three four.'" in message
    cut = int(round(float(message.split("its first ")[1].split(" s")[0]) * SR))
    assert gaps[1][0] < cut <= gaps[1][1]  # in the second pause (the first is too early, the limit is 0.45 s)
    # the same as passing the kept part and its words
    expected = pipe(**get_dummy_inputs(prompt_audio=audio[:cut], prompt_text="one two. three four."))
    np.testing.assert_array_equal(out.audios, expected.audios)
    # stream() cuts it the same way
    with mock.patch.object(logger, "warning") as warning:
        chunks = list(pipe.stream(**get_dummy_inputs(prompt_audio=audio, prompt_text="one two. three four. five six.")))
    assert warning.call_count == 1
    np.testing.assert_allclose(np.concatenate(chunks), out.audios[0][: out.audio_lengths[0]], atol=1e-6, rtol=0)


def test_a_long_default_voice_is_cut_once_when_it_is_set(monkeypatch):
    """set_default_voice kept an over-long recording whole: every call warned and cut it again, and a saved pipeline
    stored the whole recording."""
    pipe = get_dummy_pipeline()
    monkeypatch.setattr(prompt_audio, "MAX_PROMPT_SECONDS", 0.45)  # the tiny model's scale (500 frames/s)
    audio, gaps = speech_with_gaps([0.1, -0.12, 0.1, -0.12, 0.1], SR)  # 0.54 s at 8 kHz
    logger = logging.get_logger("modeling_ditar.pipeline_ditar")
    with mock.patch.object(logger, "warning") as warning:
        pipe.set_default_voice(audio, "one two. three four. five six.", sampling_rate=SR)
        assert warning.call_count == 1 and "cut at a pause" in warning.call_args[0][0]
        kept, rate, text = pipe.default_voice
        assert gaps[1][0] < len(kept) <= gaps[1][1] and rate == SR and text == "one two. three four."
        out = pipe(**get_dummy_inputs(prompt_audio=None, prompt_text=None))
        assert warning.call_count == 1  # calls use the kept part, without cutting again
    expected = pipe(**get_dummy_inputs(prompt_audio=audio[: len(kept)], prompt_text="one two. three four."))
    np.testing.assert_array_equal(out.audios, expected.audios)
    with pytest.raises(TypeError, match="a DiTARVoice holds features, not audio"):
        pipe.set_default_voice(pipe.create_voice())
    # a default voice that arrives long (a folder saved before) is cut at its first use, and kept cut
    pipe.processor.default_voice = (audio, SR, "one two. three four. five six.")
    with mock.patch.object(logger, "warning") as warning:
        again = pipe(**get_dummy_inputs(prompt_audio=None, prompt_text=None))
        pipe(**get_dummy_inputs(prompt_audio=None, prompt_text=None))
    assert warning.call_count == 1 and len(pipe.default_voice[0]) == len(kept)
    np.testing.assert_array_equal(again.audios, expected.audios)


def test_too_short_prompt_names_length_minimum_and_fix(pipe):
    # the tiny model: patches of 2 frames, 2 history patches -> at least 4 frames (hop 16 at 8 kHz)
    with pytest.raises(ValueError) as error:
        pipe(**get_dummy_inputs(prompt_audio=tone(0.004)))  # 32 samples: 3 frames
    message = str(error.value)
    assert "prompt_audio is shorter than the model needs: 3 feature frames" in message
    assert "at least 4 frames" in message and "2 patches of 2" in message and "Give a longer prompt" in message
    with pytest.raises(ValueError, match="shorter than the model needs"):
        pipe.stream(**get_dummy_inputs(prompt_audio=tone(0.004)))
    pipe(**get_dummy_inputs(prompt_audio=tone(0.006)))  # 48 samples: 4 frames is enough


# ------------------------------------------------------------------------------------------------------------------
# progress


class CountingBars:
    """Wraps `pipe.progress_bar` and keeps every bar it makes."""

    def __init__(self, pipe):
        self.bars, self.original = [], pipe.progress_bar

    def __call__(self, *args, **kwargs):
        bar = self.original(*args, **kwargs)
        self.bars.append(bar)
        return bar


@pytest.mark.parametrize("call", ["call", "stream"])
def test_one_progress_bar_per_call_that_ends_at_the_real_count(call, monkeypatch):
    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=False)  # the bars count (and are drawn) as a user would see them
    text = "A sentence that is part of a long paragraph. " * 12
    assert len(split_sentences(text)) == 3
    bars = CountingBars(pipe)
    monkeypatch.setattr(pipe, "progress_bar", bars)
    steps = []
    inputs = get_dummy_inputs(text=text, max_new_patches=4, callback_on_patch_end=lambda p, i, s: steps.append(i))
    if call == "call":
        pipe(**inputs)
    else:
        inputs.pop("callback_on_patch_end")
        list(pipe.stream(**inputs))
        steps = [0] * 12
    assert len(bars.bars) == 1
    (bar,) = bars.bars
    assert bar.n == bar.total == len(steps) == 12  # 3 segments x 4 patches: 100% at the end


def test_progress_total_is_the_expected_length_not_the_cap(monkeypatch):
    pipe = get_dummy_pipeline()
    bars = CountingBars(pipe)
    monkeypatch.setattr(pipe, "progress_bar", bars)
    totals = []
    original = pipe.progress_bar

    def spy(*args, **kwargs):
        totals.append(kwargs.get("total"))
        return original(*args, **kwargs)

    monkeypatch.setattr(pipe, "progress_bar", spy)
    # a prompt at a known speaking rate: "the prompt said this" (20 tokens) over 0.04 s (21 frames)
    inputs = get_dummy_inputs(text="hello there", prompt_text="the prompt said this", max_new_patches=None)
    encoded = pipe.encode_inputs([inputs["text"]], inputs["prompt_audio"], inputs["prompt_text"], SR)
    cap = int(pipe.model.default_max_new_patches(encoded["attention_mask"].sum(1)).max())
    rate = float(encoded["speech_position_rate"][0])
    expected = int(np.ceil(11 / rate / 2))  # "hello there": 11 tokens, 2 frames per patch
    assert expected < cap
    pipe(**inputs)
    assert totals == [expected]


def test_disabled_progress_bar_prints_nothing(capsys):
    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe(**get_dummy_inputs(text="A sentence that is part of a long paragraph. " * 12, max_new_patches=2))
    assert capsys.readouterr().err == ""


def test_a_call_made_inside_another_calls_patches_counts_on_its_own_bar(monkeypatch):
    """The bar was kept on the pipeline: a call made while another was generating (here from its patch callback, as a
    thread would) closed the first call's bar, whose later patches were lost, and its next sentence group counted on a
    third bar. Each call now counts its own patches, on its own bar, to its own total."""
    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=False)
    bars = CountingBars(pipe)
    monkeypatch.setattr(pipe, "progress_bar", bars)
    outer_steps, inner_steps = [], []

    def outer_callback(p, index, step):
        outer_steps.append(index)
        if len(outer_steps) == 2:  # inside the first sentence group
            pipe(**get_dummy_inputs(seed=1, callback_on_patch_end=lambda p, i, s: inner_steps.append(i)))

    text = "A sentence that is part of a long paragraph. " * 12
    pipe(**get_dummy_inputs(text=text, max_new_patches=4, callback_on_patch_end=outer_callback))
    assert len(outer_steps) == 12 and len(inner_steps) == 3
    outer, inner = bars.bars  # the outer bar is made at its first patch, before the inner call
    assert (outer.n, outer.total, inner.n, inner.total) == (12, 12, 3, 3)
    assert outer.disable and inner.disable  # both closed


def test_a_failed_calls_bar_is_closed_when_it_fails(monkeypatch):
    """A call stopped by its callback left its bar open until the next call closed it."""
    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=False)
    bars = CountingBars(pipe)
    monkeypatch.setattr(pipe, "progress_bar", bars)

    def stop(p, index, step):
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipe(**get_dummy_inputs(max_new_patches=6, callback_on_patch_end=stop))
    (bar,) = bars.bars
    assert bar.disable and bar.n == 1  # closed at once; the patch whose callback raised is not counted


def test_streams_iterated_side_by_side_with_calls_between_chunks_each_count_their_own_patches(monkeypatch):
    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=False)
    bars = CountingBars(pipe)
    monkeypatch.setattr(pipe, "progress_bar", bars)
    text = "A sentence that is part of a long paragraph. " * 12
    first = iter(pipe.stream(**get_dummy_inputs(text=text, max_new_patches=4)))
    second = iter(pipe.stream(**get_dummy_inputs(seed=1, max_new_patches=5)))
    done, calls = set(), 0
    while len(done) < 2:
        for name, stream in (("first", first), ("second", second)):
            if name not in done and next(stream, None) is None:
                done.add(name)
        if calls < 2:
            pipe(**get_dummy_inputs(seed=2, max_new_patches=2))
            calls += 1
    totals = sorted((bar.n, bar.total, bar.disable) for bar in bars.bars)
    assert totals == [(2, 2, True), (2, 2, True), (5, 5, True), (12, 12, True)]


def test_soft_limiter_keeps_peaks_below_the_ceiling_and_quiet_samples_unchanged():
    x = torch.linspace(-3, 3, 20001)
    y = soft_limit(x)
    assert float(y.abs().max()) < LIMIT_CEILING < 1.0
    quiet = x.abs() <= LIMIT_KNEE
    assert torch.equal(y[quiet], x[quiet])
    assert bool((y.diff() >= 0).all())  # monotonic: no folding
    slope = y.diff() / x.diff()
    assert float((slope[1:] - slope[:-1]).abs().max()) < 1e-2  # smooth: no kink at the knee
    speech = torch.from_numpy(tone(0.5, amplitude=0.4))  # peaks below the knee
    assert torch.equal(soft_limit(speech), speech)
    assert float(soft_limit(torch.tensor([1.24])).item()) < 0.89  # the peak issue 24 measured


class LoudVocoder(torch.nn.Module):
    """A vocoder whose output peaks far above full scale."""

    def __init__(self, vocoder, gain: float = 8.0):
        super().__init__()
        self.vocoder, self.gain, self.hop_length = vocoder, gain, vocoder.hop_length
        self.sampling_rate = vocoder.sampling_rate

    def forward(self, features):
        return self.vocoder(features) * self.gain


def test_limited_stream_chunks_join_to_the_limited_one_shot():
    vocoder = LoudVocoder(get_dummy_processor().build_vocoder(n_iter=3))
    fe = get_dummy_processor().feature_extractor
    frames = fe.compute_log_mel(torch.from_numpy(tone(0.2, amplitude=0.3)))
    unlimited = StreamingVocoder(vocoder).decode(frames)
    assert float(unlimited.abs().max()) > 1.0
    streamer = StreamingVocoder(vocoder, limiter=soft_limit)
    one_shot = streamer.decode(frames)
    assert float(one_shot.abs().max()) < LIMIT_CEILING
    chunks = []
    for start in range(0, frames.shape[0], 7):
        chunks += streamer.push(frames[start : start + 7])
    joined = torch.cat(chunks + streamer.flush())
    torch.testing.assert_close(joined, one_shot, atol=0, rtol=0)
    torch.testing.assert_close(one_shot, soft_limit(unlimited), atol=0, rtol=0)


def test_pipeline_output_never_clips_and_stream_still_equals_one_shot(monkeypatch):
    pipe = get_dummy_pipeline()
    forward = pipe.vocoder.forward
    monkeypatch.setattr(pipe.vocoder, "forward", lambda features: forward(features) * 20.0)  # far above full scale
    out = pipe(**get_dummy_inputs(max_new_patches=30))
    audio = out.audios[0][: out.audio_lengths[0]]
    assert 0.5 < float(np.abs(audio).max()) < LIMIT_CEILING
    chunks = list(pipe.stream(**get_dummy_inputs(max_new_patches=30)))
    np.testing.assert_allclose(np.concatenate(chunks), audio, atol=1e-6, rtol=0)

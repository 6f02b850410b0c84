"""Streaming: chunked vocoding (StreamingVocoder) and DiTARPipeline.stream (tiny, CPU)."""

import gc
import types
import weakref

import numpy as np
import pytest
import torch
from pipeline_helpers import (
    HOP,
    SR,
    get_dummy_inputs,
    get_dummy_pipeline,
    get_dummy_processor,
    tone,
)

from modeling_ditar.pipeline_ditar import split_sentences
from modeling_ditar.streaming import StreamingVocoder


@pytest.fixture(scope="module")
def vocoder():
    return get_dummy_processor().build_vocoder(n_iter=3)


@pytest.fixture(scope="module")
def pipe():
    return get_dummy_pipeline()


def features(frames: int, seed: int = 0) -> torch.Tensor:
    """Plausible de-normalised log-mel frames [T, D] (the log-mel of a tone plus noise)."""
    fe = get_dummy_processor().feature_extractor
    base = fe.compute_log_mel(torch.from_numpy(tone(frames * HOP / SR + 0.01)))[:frames]
    return base + 0.3 * torch.randn(base.shape, generator=torch.Generator().manual_seed(seed))


def stream_in_pieces(streamer: StreamingVocoder, frames: torch.Tensor, sizes) -> list[torch.Tensor]:
    chunks, start = [], 0
    for size in sizes:
        chunks += streamer.push(frames[start : start + size])
        start += size
    assert start >= frames.shape[0]
    return chunks + streamer.flush()


@pytest.mark.parametrize(
    "sizes",
    [[200], [1] * 90, [2] * 45, [7, 30, 3, 50], [0, 90]],
    ids=["one", "ones", "patches", "uneven", "empty-push"],
)
def test_joined_chunks_equal_one_shot_decode(vocoder, sizes):
    frames = features(90)
    streamer = StreamingVocoder(
        vocoder, chunk_frames=10, left_context_frames=4, lookahead_frames=3, first_chunk_frames=None
    )
    one_shot = streamer.decode(frames)
    assert one_shot.shape == ((90 - 1) * HOP,)
    chunks = stream_in_pieces(streamer, frames, sizes)
    assert len(chunks) == 9  # ceil(89 * hop / (10 * hop))
    assert all(c.shape[0] == 10 * HOP for c in chunks[:-1])
    assert torch.equal(torch.cat(chunks), one_shot)


def test_chunks_leave_as_soon_as_lookahead_is_there(vocoder):
    streamer = StreamingVocoder(
        vocoder, chunk_frames=10, left_context_frames=4, lookahead_frames=3, first_chunk_frames=None
    )
    frames = features(40)
    assert streamer.push(frames[:12]) == []  # chunk 0 needs frames [0, 10 + lookahead)
    assert len(streamer.push(frames[12:13])) == 1
    assert len(streamer.push(frames[13:23])) == 1
    assert len(streamer.push(frames[23:40])) == 1  # chunk 2 (needs 33 frames); chunk 3 would need 43
    last = streamer.flush()
    assert len(last) == 1 and last[0].shape == (9 * HOP,)  # samples [30 hop, 39 hop)


def test_default_settings_and_edge_lengths(vocoder):
    streamer = StreamingVocoder(vocoder)
    assert streamer.decode(features(1)).shape == (0,)  # one frame gives no samples
    for frames in (4, 24, 26, 60):  # shorter than one chunk, around a chunk boundary, several chunks
        x = features(frames, seed=frames)
        one_shot = streamer.decode(x)
        assert one_shot.shape == ((frames - 1) * HOP,)
        assert torch.isfinite(one_shot).all()
        assert torch.equal(torch.cat(stream_in_pieces(streamer, x, [3] * 30)), one_shot)
        streamer.reset()


def test_crossfade_hides_chunk_seams(vocoder):
    """Chunked Griffin-Lim cannot equal whole-sequence Griffin-Lim, but the crossfaded result must not jump at seams
    more than the signal itself moves between neighbouring samples."""
    frames = features(60)
    audio = StreamingVocoder(
        vocoder, chunk_frames=10, left_context_frames=6, lookahead_frames=4, first_chunk_frames=None
    ).decode(frames)
    steps = (audio[1:] - audio[:-1]).abs()
    seams = torch.tensor([k * 10 * HOP - 1 for k in range(1, 5)])
    assert float(steps[seams].max()) <= 4 * float(steps.quantile(0.99))


@pytest.mark.parametrize("sizes", [[200], [1] * 90, [4] * 23, [7, 30, 3, 50]], ids=["one", "ones", "patches", "uneven"])
def test_a_short_first_chunk_leaves_early_and_joins_exactly(vocoder, sizes):
    frames = features(90)
    streamer = StreamingVocoder(
        vocoder, chunk_frames=25, left_context_frames=8, lookahead_frames=8, first_chunk_frames=12
    )
    one_shot = streamer.decode(frames)
    assert one_shot.shape == ((90 - 1) * HOP,)
    chunks = stream_in_pieces(streamer, frames, sizes)
    assert [c.shape[0] // HOP for c in chunks] == [12, 25, 25, 25, 2]  # 12 + 3 x 25 + the 2 frames' samples left
    assert torch.equal(torch.cat(chunks), one_shot)
    streamer.reset()
    assert streamer.push(frames[:19]) == [] and len(streamer.push(frames[19:20])) == 1  # 12 + lookahead 8 frames


def test_bad_settings(vocoder):
    with pytest.raises(ValueError, match="first_chunk_frames"):
        StreamingVocoder(vocoder, first_chunk_frames=0)
    with pytest.raises(ValueError, match="chunk_frames"):
        StreamingVocoder(vocoder, chunk_frames=0)
    with pytest.raises(ValueError, match="lookahead"):
        StreamingVocoder(vocoder, lookahead_frames=-1)


def test_push_after_flush_is_refused_until_reset(vocoder):
    frames = features(60)
    streamer = StreamingVocoder(vocoder, chunk_frames=10, left_context_frames=4, lookahead_frames=3)
    one_shot = streamer.decode(frames)
    assert streamer.push(frames[:31]) + streamer.flush()  # the stream ended after 31 frames
    assert streamer.flush() == []  # a second flush has nothing left
    with pytest.raises(RuntimeError, match=r"flush\(\) ended this stream; call reset\(\)"):
        streamer.push(frames[31:])  # its samples would have been lost
    streamer.reset()
    assert torch.equal(torch.cat(stream_in_pieces(streamer, frames, [31, 29])), one_shot)


def test_a_vocoder_without_the_streaming_interface_is_refused_with_the_fix():
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    from modeling_ditar import SpeechT5HifiGanVocoder

    hifigan = SpeechT5HifiGan(SpeechT5HifiGanConfig(upsample_initial_channel=32))  # transformers' own class
    with pytest.raises(TypeError, match=r"SpeechT5HifiGan has no `hop_length`.*SpeechT5HifiGanVocoder\.from_pretr"):
        StreamingVocoder(hifigan)
    wrapped = SpeechT5HifiGanVocoder(hifigan.config)  # the fix the message names
    wrapped.load_state_dict(hifigan.state_dict())
    assert StreamingVocoder(wrapped).hop == wrapped.hop_length
    with pytest.raises(TypeError, match="Identity has no `hop_length`.*DiTARVocoder"):
        StreamingVocoder(torch.nn.Identity())
    with pytest.raises(TypeError, match="is not callable"):
        StreamingVocoder(types.SimpleNamespace(hop_length=HOP))
    no_hop = torch.nn.Identity()
    no_hop.hop_length = 0
    with pytest.raises(TypeError, match="has hop_length=0, not an integer >= 1"):
        StreamingVocoder(no_hop)


def test_very_short_sequences_are_vocoded(vocoder):
    assert vocoder.n_fft // 2 >= 2 * HOP  # 2 and 3 frames give 16 and 32 samples, not more than the STFT padding
    for frames in (2, 3):
        assert StreamingVocoder(vocoder).decode(features(frames)).shape == ((frames - 1) * HOP,)


# ------------------------------------------------------------------------------------------------------------------
# DiTARPipeline.stream


def test_stream_equals_one_shot(pipe):
    inputs = get_dummy_inputs(max_new_patches=40)  # 80 frames: several chunks of the default 25 frames
    one_shot = pipe(**inputs)
    chunks = list(pipe.stream(**get_dummy_inputs(max_new_patches=40)))
    assert len(chunks) >= 3
    assert all(isinstance(c, np.ndarray) and c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    joined = np.concatenate(chunks)
    assert joined.shape[0] == one_shot.audio_lengths[0]
    np.testing.assert_allclose(joined, one_shot.audios[0], atol=1e-6, rtol=0)


def test_stream_with_default_voice_equals_one_shot(pipe):
    args = dict(text="hello there", max_new_patches=20, temperature=0.0)
    one_shot = pipe(**args).audios[0]
    np.testing.assert_allclose(np.concatenate(list(pipe.stream(**args))), one_shot, atol=1e-6, rtol=0)


def test_a_stream_keeps_the_default_voice_it_started_with():
    """A default voice set between two chunks of a long text used to speak the later sentences."""
    pipe = get_dummy_pipeline()
    text = "A sentence that is part of a long paragraph. " * 12
    one_shot = pipe(text=text, max_new_patches=4, generator=torch.Generator().manual_seed(0)).audios[0]
    stream = pipe.stream(text=text, max_new_patches=4, generator=torch.Generator().manual_seed(0))
    chunks = [next(stream)]
    pipe.set_default_voice(tone(0.06, freq=300.0), "another voice", sampling_rate=SR)
    chunks += list(stream)
    np.testing.assert_allclose(np.concatenate(chunks), one_shot, atol=1e-6, rtol=0)
    closed = pipe.stream(text="hello there", max_new_patches=4)
    next(closed)
    closed.close()
    assert repr(closed) == "SpeechStream(closed)" and closed.finished_reason is None


def test_a_stream_dropped_half_way_is_freed_at_once_and_closes_its_bar(monkeypatch):
    """The generator behind a stream held the stream (to record how it ended), a reference cycle: a stream dropped
    half-way without close() (a client that disconnects) kept its 16-20 MB of tensors until a full garbage
    collection. Reference counting alone now frees it, and closes its progress bar; the end is still recorded."""
    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=False)
    bars, make_bar = [], pipe.progress_bar
    monkeypatch.setattr(
        pipe, "progress_bar", lambda *args, **kwargs: bars.append(make_bar(*args, **kwargs)) or bars[-1]
    )
    text = "A sentence that is part of a long paragraph. " * 12
    gc.collect()
    collecting = gc.isenabled()
    gc.disable()
    try:
        stream = pipe.stream(**get_dummy_inputs(text=text, max_new_patches=4))
        next(stream)
        (bar,) = bars
        assert not bar.disable  # open while the stream runs
        dropped = weakref.ref(stream)
        del stream
        assert dropped() is None
    finally:
        if collecting:
            gc.enable()
    assert bar.disable  # closed with the stream
    finished = pipe.stream(**get_dummy_inputs(max_new_patches=4))
    assert (finished.stopped, finished.finished_reason) == (None, None)
    list(finished)
    assert (finished.stopped, finished.finished_reason) == (False, "max_new_patches")
    assert repr(finished) == "SpeechStream(max_new_patches)"


def test_stream_of_long_text_equals_one_shot(pipe):
    text = "A sentence that is part of a long paragraph. " * 12
    assert len(split_sentences(text)) == 3
    one_shot = pipe(**get_dummy_inputs(text=text, max_new_patches=4))
    chunks = list(pipe.stream(**get_dummy_inputs(text=text, max_new_patches=4)))
    np.testing.assert_allclose(np.concatenate(chunks), one_shot.audios[0], atol=1e-6, rtol=0)


def test_stream_yields_before_generation_ends(monkeypatch):
    pipe = get_dummy_pipeline()
    produced = []
    generate_patches = pipe.model.generate_patches

    def counting(*args, **kwargs):
        for step in generate_patches(*args, **kwargs):
            produced.append(step.index)
            yield step

    monkeypatch.setattr(pipe.model, "generate_patches", counting)
    stream = pipe.stream(**get_dummy_inputs(max_new_patches=40))
    next(stream)
    assert 0 < len(produced) < 40  # the first chunk came while patches were still being generated
    rest = list(stream)
    assert len(produced) == 40 and rest


def test_stream_checks_inputs_when_called(pipe, tmp_path):
    """Errors come from the call itself, not from the first `next()` (a CLI must not open its output file first)."""
    with pytest.raises(ValueError, match="text is empty"):
        pipe.stream("  ")
    with pytest.raises(ValueError, match="temperature"):
        pipe.stream(**get_dummy_inputs(temperature=2.0))
    with pytest.raises(FileNotFoundError, match="prompt_audio"):
        pipe.stream(**get_dummy_inputs(prompt_audio=str(tmp_path / "missing.wav")))
    with pytest.raises(ValueError, match="prompt_audio: .*silent"):
        pipe.stream(**get_dummy_inputs(prompt_audio=np.zeros(400, np.float32)))
    with pytest.raises(ValueError, match="one text at a time"):
        pipe.stream(["a", "b"])


def test_stream_chunk_sizes(pipe):
    """A short first chunk (12 frames, so the first audio leaves early), then chunks of chunk_frames * hop samples."""
    chunks = list(pipe.stream(**get_dummy_inputs(max_new_patches=40)))
    assert chunks[0].shape[0] == 12 * HOP
    assert {c.shape[0] for c in chunks[1:-1]} == {25 * HOP}

"""Chunked vocoding that streams: audio leaves as soon as enough frames exist, and the one-shot result is the very same
computation run over the whole sequence, so joined stream chunks equal the one-shot waveform exactly.

Chunk 0 owns the output samples of frames [0, F0) and chunk k >= 1 those of frames [F0 + (k-1)*C, F0 + k*C): a short
first chunk (F0 < C) makes the first audio leave early, later chunks are longer and cheaper per second. Chunk k is
decoded from its frames widened by `left` frames before and `lookahead` frames after (clipped to what exists), and its
first `crossfade` samples are blended with the tail the previous chunk decoded past its end, which hides phase jumps
between independently vocoded windows (Griffin-Lim has no state to carry over). A vocoder whose output depends on a
bounded window of frames (a neural vocoder) says how many frames it needs through `streaming_left_context_frames`,
`streaming_lookahead_frames` and `streaming_crossfade_samples` (0): its chunks then equal whole-sequence vocoding. One
that cannot be decoded in windows at all says why in `streaming_unsupported_reason`, and is refused.
A vocoder maps F frames to `vocoder.num_samples(F)` samples, (F - 1) * hop for centred STFT frames, with sample i of a
window that starts at frame s being sample s * hop + i of the whole output.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch

# context and lookahead (frames) for vocoders that do not give their own (Griffin-Lim)
DEFAULT_CONTEXT_FRAMES = 8


def _vocoder_setting(vocoder, name: str, value: int | None, fallback: int | None) -> int | None:
    """`value` when given, else the vocoder's own `name` attribute when it has one, else `fallback`."""
    if value is not None:
        return value
    own = getattr(vocoder, name, None)
    return fallback if own is None else int(own)


def _vocoder_hop_length(vocoder) -> int:
    """The `hop_length` of a DiTAR vocoder (a callable from features `[B, T, D]` to waveforms `[B, S]`); a TypeError
    naming what is missing for anything else, since streaming cannot align chunks without the hop."""
    hop = getattr(vocoder, "hop_length", None)
    if callable(vocoder) and isinstance(hop, numbers.Integral) and not isinstance(hop, bool) and hop >= 1:
        return int(hop)
    if not callable(vocoder):
        problem = "is not callable"
    elif hop is None:
        problem = "has no `hop_length`"
    else:
        problem = f"has hop_length={hop!r}, not an integer >= 1"
    fix = "use a DiTAR vocoder (a `DiTARVocoder` subclass, e.g. the pipeline's `vocoder`)"
    from transformers import SpeechT5HifiGan

    if isinstance(vocoder, SpeechT5HifiGan):  # transformers' own class has no DiTAR interface (hop, output length)
        fix = (
            "wrap it in this package's `SpeechT5HifiGanVocoder`: load it with "
            "`SpeechT5HifiGanVocoder.from_pretrained('microsoft/speecht5_hifigan')` (or your checkpoint), or build "
            "`SpeechT5HifiGanVocoder(vocoder.config)` and `.load_state_dict(vocoder.state_dict())` into it"
        )
    raise TypeError(
        f"StreamingVocoder needs a vocoder that maps features [B, T, D] to a waveform and has a `hop_length`; the "
        f"given {type(vocoder).__name__} {problem}: {fix}."
    )


class StreamingVocoder:
    """Turns features into audio chunk by chunk: `push` frames as they are generated and get the chunks that became
    ready, `flush` at the end; `decode` runs the same computation over a whole sequence at once, so joined chunks
    equal the one-shot waveform exactly. `flush` ends the stream: `reset` starts a new one."""

    def __init__(
        self,
        vocoder: torch.nn.Module,
        chunk_frames: int = 25,
        left_context_frames: int | None = None,
        lookahead_frames: int | None = None,
        crossfade_samples: int | None = None,
        first_chunk_frames: int | None = 12,
        limiter: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        """`left_context_frames`, `lookahead_frames`, `crossfade_samples`: when not given, the vocoder's own
        `streaming_left_context_frames`, `streaming_lookahead_frames`, `streaming_crossfade_samples` where it has them,
        else 8 frames, 8 frames and two hops (at most the first chunk).
        `limiter`: a stateless sample-wise function applied to every emitted chunk (e.g. `audio_utils.soft_limit`),
        so that one-shot and streamed audio stay identical."""
        unsupported = getattr(vocoder, "streaming_unsupported_reason", None)
        if unsupported:  # a vocoder whose output cannot be decoded in windows says why
            raise NotImplementedError(unsupported)
        hop = _vocoder_hop_length(vocoder)
        left_context_frames = _vocoder_setting(
            vocoder, "streaming_left_context_frames", left_context_frames, DEFAULT_CONTEXT_FRAMES
        )
        lookahead_frames = _vocoder_setting(
            vocoder, "streaming_lookahead_frames", lookahead_frames, DEFAULT_CONTEXT_FRAMES
        )
        crossfade_samples = _vocoder_setting(vocoder, "streaming_crossfade_samples", crossfade_samples, None)
        first = chunk_frames if first_chunk_frames is None else first_chunk_frames
        for name, value, least in (
            ("chunk_frames", chunk_frames, 1),
            ("first_chunk_frames", first, 1),
            ("left_context_frames", left_context_frames, 0),
            ("lookahead_frames", lookahead_frames, 0),
            ("crossfade_samples", 0 if crossfade_samples is None else crossfade_samples, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"`{name}` must be an integer >= {least}, got {value!r}.")
        if limiter is not None and not callable(limiter):
            raise TypeError(
                f"`limiter` must be a function of a waveform tensor (or None), got {type(limiter).__name__}."
            )
        self.vocoder = vocoder
        self.limiter = limiter
        self.hop = hop
        self.chunk = chunk_frames
        self.first = min(first, chunk_frames)  # the first chunk is never the longer one
        self.left = left_context_frames
        self.crossfade = min(hop * 2, self.first * hop) if crossfade_samples is None else crossfade_samples
        # the tail past a chunk's end must come from inside the decoded window
        self.lookahead = max(lookahead_frames, math.ceil(self.crossfade / hop) + 1)
        fade = torch.linspace(0.0, 1.0, self.crossfade + 2)[1:-1] if self.crossfade > 0 else torch.zeros(0)
        self._fade_in = fade
        self.reset()

    def reset(self):
        self._frames: list[torch.Tensor] = []
        self._num_frames = 0
        self._next_chunk = 0
        self._tail: torch.Tensor | None = None
        self._vocoder_state: dict = {}
        self._flushed = False

    def _check_frames(self, frames: torch.Tensor) -> None:
        """Frames must be one sequence `[n, D]` of real numbers, with the same D as the frames before them."""
        if not isinstance(frames, torch.Tensor):
            raise TypeError(f"frames must be a torch.Tensor [n, D], got {type(frames).__name__}.")
        if frames.dim() != 2:
            hint = " (one sequence of a batch: frames[0])" if frames.dim() == 3 and frames.shape[0] == 1 else ""
            raise ValueError(f"frames must be one sequence [n, D], got shape {tuple(frames.shape)}{hint}.")
        if not frames.is_floating_point():
            raise ValueError(f"frames must be floating point (log-mel features), got dtype {frames.dtype}.")
        width = self._frames[0].shape[1] if self._frames else getattr(self.vocoder, "num_mel_bins", None)
        if width is not None and frames.shape[1] != width:
            raise ValueError(f"frames have {frames.shape[1]} features per frame; this stream takes {width}.")
        if not bool(torch.isfinite(frames).all()):
            raise ValueError("frames contain NaN or Inf values; the vocoder cannot invert them.")

    def push(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Add frames [n, D] (de-normalised features) and return the audio chunks that became ready."""
        if self._flushed:
            # the last chunk already went out without these frames' context: continuing would lose or garble samples
            raise RuntimeError("flush() ended this stream; call reset() to start a new one before pushing frames.")
        self._check_frames(frames)
        if frames.shape[0]:
            self._frames.append(frames.detach().float().cpu())
            self._num_frames += frames.shape[0]
        ready = []
        while self._chunk_end(self._next_chunk) + self.lookahead <= self._num_frames:
            ready.append(self._emit(final=False))
        return ready

    def _chunk_end(self, k: int) -> int:
        """Frame index where chunk k's own samples end (chunk k starts where chunk k - 1 ends, chunk 0 at 0)."""
        return self.first + k * self.chunk

    def _chunk_start(self, k: int) -> int:
        return 0 if k == 0 else self._chunk_end(k - 1)

    def num_samples(self, num_frames: int) -> int:
        """Output samples of `num_frames` (>= 1) frames: the vocoder's `num_samples`, `(T - 1) * hop` without one."""
        num_samples = getattr(self.vocoder, "num_samples", None)
        return int(num_samples(num_frames)) if num_samples is not None else (num_frames - 1) * self.hop

    def _total_samples(self) -> int:
        """Output samples of all frames so far."""
        return 0 if self._num_frames == 0 else self.num_samples(self._num_frames)

    def flush(self) -> list[torch.Tensor]:
        """Emit everything left once no more frames will come; this ends the stream (`push` then needs a `reset`, a
        second `flush` returns nothing)."""
        self._flushed = True
        ready = []
        total_samples = self._total_samples()
        while self._chunk_start(self._next_chunk) * self.hop < total_samples:
            ready.append(self._emit(final=True))
        return ready

    def decode(self, frames: torch.Tensor) -> torch.Tensor:
        """One-shot: the whole sequence [T, D] -> waveform [vocoder.num_samples(T)] ((T - 1) * hop for centred
        frames), identical to joining `push` + `flush`."""
        self.reset()
        chunks = self.push(frames) + self.flush()
        self.reset()
        return torch.cat(chunks) if chunks else torch.zeros(0)

    def _emit(self, final: bool) -> torch.Tensor:
        features = torch.cat(self._frames) if len(self._frames) > 1 else self._frames[0]
        self._frames = [features]
        k, hop = self._next_chunk, self.hop
        total_samples = self._total_samples()
        first_frame, last_frame = self._chunk_start(k), self._chunk_end(k)
        start_frame = max(0, first_frame - self.left)
        end_frame = min(self._num_frames, last_frame + self.lookahead)
        with torch.no_grad():  # inference only: a neural vocoder would otherwise record a graph for every chunk
            # a vocoder whose output carries state from window to window (e.g. an integrated phase) decodes its
            # windows itself, with a state this stream keeps for it
            decode_window = getattr(self.vocoder, "decode_stream_window", None)
            if decode_window is not None:
                audio = decode_window(features, start_frame, end_frame, self._vocoder_state)[0].float().cpu()
            else:
                audio = self.vocoder(features[None, start_frame:end_frame])[0].float().cpu()
        offset = start_frame * hop  # global index of audio[0]
        core_start, core_end = first_frame * hop, min(last_frame * hop, total_samples)
        is_last = core_end >= total_samples
        tail_end = core_end if is_last else core_end + self.crossfade
        segment = audio[core_start - offset : tail_end - offset]
        core = segment[: core_end - core_start].clone()
        if self._tail is not None and self.crossfade > 0:
            n = min(self.crossfade, core.shape[0], self._tail.shape[0])
            fade = self._fade_in[:n]
            core[:n] = self._tail[:n] * (1 - fade) + core[:n] * fade
        self._tail = None if is_last else segment[core_end - core_start :]
        self._next_chunk += 1
        return core if self.limiter is None else self.limiter(core)


class StreamOutcome:
    """How a stream's generation ended, written by the generator that makes its chunks and read by its `SpeechStream`.
    The generator holds this, not the stream: a generator holding its own stream is a reference cycle, and a stream
    dropped half-way (a client that disconnects) would keep its tensors alive until the next full garbage
    collection; without the cycle it is freed at once, and its generator closed (which closes its progress bar)."""

    __slots__ = ("stopped",)

    def __init__(self):
        self.stopped: bool | None = None

    def finish(self, stopped: bool) -> None:
        self.stopped = bool(stopped)


class SpeechStream:
    """The iterator `DiTARPipeline.stream()` returns: float32 waveform chunks (numpy), and after the last chunk why
    generation ended.

    - `finished_reason`: `None` while chunks are still coming (or if the stream was closed early), then `"stopped"`
      when the model's stop head ended every sentence, or `"max_new_patches"` when the patch cap cut a sentence short
      (the speech may be truncated).
    - `stopped`: `None`, then `True` / `False` with the same meaning (the `stopped` flag of the one-shot output).
    - `prompt_transcript`: the transcript the pipeline's prompt transcriber made of a prompt given without
      `prompt_text`, else `None`.

    `chunks` is the chunk iterator; it reports how generation ended through `outcome` (a `StreamOutcome`), which it
    holds instead of the stream.
    """

    def __init__(self, chunks, outcome: StreamOutcome | None = None):
        self._chunks = chunks
        self._outcome = StreamOutcome() if outcome is None else outcome
        self.prompt_transcript: str | None = None
        self._closed = False

    @property
    def stopped(self) -> bool | None:
        return self._outcome.stopped

    @property
    def finished_reason(self) -> str | None:
        if self._outcome.stopped is None:
            return None
        return "stopped" if self._outcome.stopped else "max_new_patches"

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._chunks)

    def close(self) -> None:
        """Stop generating (like a generator's `close`); `finished_reason` stays `None`."""
        self._chunks.close()
        self._closed = True  # shown only while no finished_reason is set

    def __repr__(self) -> str:
        state = self.finished_reason or ("closed" if self._closed else "running")
        return f"{type(self).__name__}({state})"

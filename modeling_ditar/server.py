"""`ditar serve`: an OpenAI-compatible speech endpoint with dynamic batching (FastAPI + uvicorn).

    POST /v1/audio/speech   {"model": ..., "input": "text", "voice": "default", "response_format": "mp3"}
    POST /v1/voices         multipart: `audio` (a recording) and `text` (its transcript) -> a voice id
    GET  /v1/voices         the voices this server speaks in
    DELETE /v1/voices/{id}  forget an uploaded voice
    GET  /health            liveness, compute device and matmul dtype, queue and batching counters

With an API key (`ServerSettings.api_key`, `ditar serve --api-key`), every path except /health and the API docs
pages needs `Authorization: Bearer KEY`, as OpenAI's clients send it; a request without it gets 401 before its body is
read.

Concurrent requests are batched: the scheduler collects them for a few milliseconds (up to a batch size) and runs one
pipeline call for all of them in a worker thread, with one prompt and one seeded generator per request, so a request
speaks the same audio alone or in a batch. The queue is bounded (429 when full), every request has a timeout (504),
texts and uploads have size limits (413), and user mistakes get 4xx JSON errors in OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`.

This module needs the `serve` extra (`pip install "modeling-ditar[serve]"`); `modeling_ditar` itself never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import ipaddress
import json
import logging
import math
import re
import secrets
import struct
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
import soundfile as sf
import torch
from fastapi import FastAPI, File, Form, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from .call_warnings import logged_warnings, package_logger
from .generation_ditar import cut_by_cap_message, least_seconds_of_text, too_short_message
from .pipeline_ditar import MAX_CHARS_PER_SEGMENT, split_sentences
from .processing_ditar import DiTARVoice
from .prompt_audio import PromptNames, trim_prompt
from .prompt_transcription import transcribe_prompt
from .sentence_splitting import mark_line_ends

logger = logging.getLogger("ditar.server")

DEFAULT_VOICE_ID = "default"
# OpenAI's built-in voice names: answered with the default voice, so OpenAI clients work unchanged
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "cedar",
    "coral",
    "echo",
    "fable",
    "marin",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
)


def is_default_voice_name(name: str) -> bool:
    """Whether `name` speaks the built-in default voice: its id or an OpenAI voice name, in any case."""
    return name.lower() in OPENAI_VOICES or name.lower() == DEFAULT_VOICE_ID


# OpenAI's formats but aac, in OpenAI's order; mp3 is OpenAI's default, which its examples save as speech.mp3
RESPONSE_FORMATS = ("mp3", "opus", "wav", "pcm", "flac")
DEFAULT_RESPONSE_FORMAT = "mp3"
# formats sent as they are generated; mp3 and flac are sent whole: libsndfile rewrites their first bytes when the file
# is closed (mp3's gapless-playback frame, FLAC's length), so bytes streamed before would not be the file
STREAM_FORMATS = ("wav", "pcm", "opus")
# pcm is raw 16-bit little-endian mono (not audio/L16, which RFC 2586 defines as big-endian)
CONTENT_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}
# libsndfile's container and codec of each format
SOUNDFILE_FORMATS = {
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "opus": ("OGG", "OPUS"),
    "wav": ("WAV", "PCM_16"),
    "flac": ("FLAC", "PCM_16"),
}
# OpenAI's pcm is 24 kHz, and its clients' players assume that rate: pcm is resampled to it. wav and flac keep the
# model's rate (their header says it)
PCM_RATE = 24_000
# the rates the lossy encoders take (MPEG-1, -2 and -2.5 layer III; Opus): another model rate is resampled to the next
# one up
ENCODER_RATES = {
    "mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
    "opus": (8000, 12000, 16000, 24000, 48000),
}
MAX_SEED = 2**63 - 1
# An upload longer than this is refused before it is decoded: a prompt is cut to 8 s anyway, and a compressed file
# (FLAC of silence packs ~300 samples per byte) could otherwise decode to gigabytes inside the model's worker.
MAX_UPLOAD_SECONDS = 60.0
# samples (frames x channels) an upload may decode to: 60 s of stereo at 192 kHz (92 MB as float32). The length alone
# does not bound the work: a 338 kB FLAC of 59 s of silence in 8 channels at 655 kHz decoded to 1.7 GB.
MAX_UPLOAD_SAMPLES = int(MAX_UPLOAD_SECONDS * 192_000 * 2)
MAX_VOICE_NAME_CHARS = 100


@dataclass
class ServerSettings:
    """Limits and sampling settings of one server (the `ditar serve` options)."""

    max_batch_size: int = 8
    batch_wait_ms: float = 10.0
    max_queue: int = 32
    request_timeout: float = 120.0
    max_text_chars: int = 1000
    max_upload_bytes: int = 10 * 1024 * 1024
    max_voices: int = 64
    shutdown_timeout: float = 30.0
    model_name: str = "ditar"
    # sampling: None takes the model's generation config
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    temperature: float | None = None
    num_candidates: int | None = None
    prompt_spectrum_match: float | None = None
    # requests must send `Authorization: Bearer <api_key>`; None serves everyone who can reach the port. Left out of
    # the repr, so that logging the settings does not print the key
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("api_key is empty; give a key the clients must send, or None to require no key")

    def sampling(self) -> dict:
        """Keyword arguments of the pipeline call, streamed or not: a stream samples the same candidates, so the same
        seed gives the same audio either way."""
        return dict(
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            temperature=self.temperature,
            prompt_spectrum_match=self.prompt_spectrum_match,
            num_candidates=self.num_candidates,
        )

    @property
    def max_json_bytes(self) -> int:
        """Largest JSON body accepted: room for a text at the limit (4 bytes per character, escapes) and the rest."""
        return 16 * 1024 + 8 * self.max_text_chars


class APIError(Exception):
    """An error answered as `{"error": {...}}` with its HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.param, self.code, self.headers)


def error_response(status: int, message: str, param=None, code=None, headers=None) -> JSONResponse:
    kind = {429: "rate_limit_error", 503: "server_busy", 504: "timeout"}.get(
        status, "invalid_request_error" if status < 500 else "server_error"
    )
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


# ----------------------------------------------------------------------------------------------------------------------
# voices


@dataclass
class Voice:
    """A voice prompt ready for the pipeline: the recording decoded, mono, resampled to the model's prompt rate and cut
    to the model's working range, with its (possibly cut) transcript, and processed once into a `DiTARVoice` (its
    features and transcript ids). Requests in this voice skip decoding, resampling, trimming, feature extraction and
    the transcript's text front end.

    The `DiTARVoice` does not reuse the backbone's KV cache of its transcript (`reuse_prefix_cache=False`): that
    would make a request's audio differ in the last bits between running alone and in a batch, and it saves only a
    few milliseconds of the prefill. A voice is used through `prompt()` (the pipeline's voice argument) and
    `describe()`."""

    id: str
    name: str
    transcript: str
    audio: np.ndarray
    sampling_rate: int
    created: int = field(default_factory=lambda: int(time.time()))
    builtin: bool = False
    notes: list[str] = field(default_factory=list)
    processed: DiTARVoice | None = None

    def prompt(self) -> dict:
        if self.processed is not None:
            return {"voice": self.processed}
        return {"prompt_audio": self.audio, "prompt_text": self.transcript, "sampling_rate": self.sampling_rate}

    def describe(self) -> dict:
        return {
            "id": self.id,
            "object": "voice",
            "name": self.name,
            "transcript": self.transcript,
            "seconds": round(len(self.audio) / self.sampling_rate, 3),
            "created": self.created,
            "builtin": self.builtin,
            "notes": list(self.notes),
        }


class VoiceStore:
    """Voices by id (thread-safe): the built-in default and the uploaded ones, at most `max_voices` uploads. OpenAI's
    voice names ("alloy", "nova", ...) are aliases of the default voice."""

    def __init__(self, max_voices: int):
        self.max_voices = max_voices
        self._voices: OrderedDict[str, Voice] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, voice: Voice) -> tuple[Voice, bool]:
        """Store `voice`; (the stored voice, whether it is new). The same recording and transcript give the same id."""
        with self._lock:
            if voice.id in self._voices:
                stored = self._voices[voice.id]
                if voice.name != voice.id:  # a re-upload that names the voice renames it
                    stored.name = voice.name
                return stored, False
            uploads = sum(not v.builtin for v in self._voices.values())
            if not voice.builtin and uploads >= self.max_voices:
                raise APIError(
                    429,
                    f"the server holds its maximum of {self.max_voices} uploaded voices; delete one with "
                    "DELETE /v1/voices/{id} (or start it with a larger --max-voices)",
                    code="voice_limit",
                )
            self._voices[voice.id] = voice
            return voice, True

    def get(self, voice_id: str) -> Voice | None:
        with self._lock:
            return self._voices.get(DEFAULT_VOICE_ID if is_default_voice_name(voice_id) else voice_id)

    def remove(self, voice_id: str) -> Voice | None:
        with self._lock:
            voice = self._voices.get(voice_id)
            if voice is None or voice.builtin:
                return None
            return self._voices.pop(voice_id)

    def list(self) -> list[Voice]:
        with self._lock:
            return list(self._voices.values())


def default_voice(pipe) -> Voice | None:
    """The pipeline's default voice as a `Voice` at the prompt rate (None when the pipeline has none)."""
    if pipe.default_voice is None:
        return None
    audio, rate, transcript = pipe.default_voice
    target = pipe._prompt_rate
    waveform = pipe.processor.load_prompt_audio(np.asarray(audio), rate, target_rate=target)
    fitted, kept, message = trim_prompt(waveform, target, transcript)
    notes = [] if message is None else [message]
    processed = pipe.create_voice(fitted.numpy(), kept, target, reuse_prefix_cache=False)
    voice = Voice(DEFAULT_VOICE_ID, DEFAULT_VOICE_ID, kept, fitted.numpy(), target, builtin=True, notes=notes)
    voice.processed = processed
    return voice


def _decode_error(err: Exception) -> APIError:
    # libsndfile names the in-memory file object and guesses at pipes; the client sent bytes
    reason = str(err).replace(" (possibly a pipe?)", "")
    reason = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the upload", reason)
    return APIError(
        400, f"audio: could not decode the upload as audio ({reason}); send WAV, FLAC or OGG", "audio", "bad_audio"
    )


def check_upload_length(data: bytes) -> None:
    """Refuse an upload whose header says it is longer than `MAX_UPLOAD_SECONDS` or holds more than
    `MAX_UPLOAD_SAMPLES` samples (413), or that has no readable header (400), before any sample is decoded."""
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as err:  # libsndfile's errors for anything it cannot read
        raise _decode_error(err) from None
    seconds = info.frames / info.samplerate if info.samplerate > 0 else 0.0
    if seconds > MAX_UPLOAD_SECONDS:
        raise APIError(
            413,
            f"audio: the recording is {seconds:.0f} s long; upload at most {MAX_UPLOAD_SECONDS:.0f} s (3-8 s of clear "
            "speech with its exact transcript works best)",
            "audio",
            "too_large",
        )
    if info.frames * max(info.channels, 1) > MAX_UPLOAD_SAMPLES:
        raise APIError(
            413,
            f"audio: the recording holds {info.channels} channels at {info.samplerate} Hz, "
            f"{info.frames * info.channels:,} samples in all; upload mono or stereo audio at up to 192 kHz (at most "
            f"{MAX_UPLOAD_SAMPLES:,} samples)",
            "audio",
            "too_large",
        )


def _form_names(text: str) -> str:
    """The pipeline's argument names in a message, as the upload form's fields are called."""
    return text.replace("prompt_audio", "audio").replace("prompt_text", "text")


def prepare_voice(pipe, data: bytes, transcript: str | None, name: str | None) -> Voice:
    """Decode an uploaded recording and check it with its transcript the way the pipeline will use them; raises
    `APIError` (400, or 413 for a recording too long to decode) naming what is wrong. Without a transcript the
    pipeline's prompt transcriber (`ditar serve --asr-model`) writes one, and the voice's notes say so."""
    check_upload_length(data)
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except Exception as err:  # libsndfile's errors for anything it cannot decode
        raise _decode_error(err) from None
    target = pipe._prompt_rate
    # what the checks warn of (e.g. characters of the transcript with no reading) goes into the voice's notes: the
    # client that uploads it sees only the answer, not the server's console
    with logged_warnings(pipe) as warned:
        fitted, kept, message, heard, processed = _checked_upload(pipe, samples, rate, target, transcript)
    audio = fitted.numpy().astype(np.float32)
    digest = hashlib.sha256(audio.tobytes() + b"\0" + kept.encode("utf-8") + struct.pack("<i", target)).hexdigest()
    voice_id = f"voice_{digest[:16]}"
    # the notes of a cut or transcribed upload and its warnings, in the form's field names
    notes = list(dict.fromkeys(_form_names(note) for note in (message, heard, *warned) if note))
    return Voice(voice_id, name or voice_id, kept, audio, target, notes=notes, processed=processed)


def _checked_upload(pipe, samples: np.ndarray, rate: int, target: int, transcript: str | None):
    """(fitted recording, its transcript, the note of a cut, the note of a transcription, the processed voice) of
    an upload, checked as the pipeline checks a voice; `APIError` naming what is wrong."""
    try:
        waveform = pipe.processor.load_prompt_audio(samples, rate, target_rate=target)
        # the checks of a real request: the transcript's text front end and the prompt's length
        if transcript is None:
            fitted, kept, heard, message = transcribe_prompt(pipe.prompt_transcriber, waveform, target)
            processed = pipe._check_transcript(fitted, kept, target)  # the voice, checked as the recogniser's
            processed.reuse_prefix_cache = False
        else:
            heard = None
            fitted, kept, message = trim_prompt(waveform, target, transcript)
            # the pipeline's checks of a voice, with errors that call the recording and transcript as the form does
            processed = pipe._checked_voice(fitted.numpy(), kept, target, names=PromptNames("audio", "text"))
            processed.reuse_prefix_cache = False
    except (ValueError, TypeError) as err:
        text = str(err)
        param = "text" if text.lstrip("`").startswith(("prompt_text", "text")) else "audio"
        text = _form_names(text)
        raise APIError(400, text, param, "bad_voice") from None
    except RuntimeError as err:  # the recogniser failed: the server's fault, said as such
        raise APIError(500, str(err), "audio", "transcription_failed") from None
    return fitted, kept, message, heard, processed


# ----------------------------------------------------------------------------------------------------------------------
# a request's warnings

# X-Warnings holds a JSON array of strings, ASCII only (other characters as \uXXXX escapes), of at most this many
# characters: proxies refuse responses whose headers pass a few kilobytes (nginx's default buffer holds 4 KB of them)
MAX_WARNINGS_HEADER_CHARS = 2048
# the most characters one message takes in it, escaped: a longer one is cut and ends in "..." (the text front end's
# warnings quote the whole text)
MAX_WARNING_CHARS = 600
# how the pipeline names rows of a batch ("Text 1 of the batch ...", "`text[1]` ..."): a message naming rows may be
# about another request, so it never reaches a client as it is
_ROW_OF_A_BATCH = re.compile(r"`\w+\[\d+\]`|\bof the batch\b")


@contextlib.contextmanager
def unprinted_warnings(pipe):
    """As `logged_warnings`, but the records of this thread reach no handler: for warnings worked out again, which the
    console printed once already."""
    package = package_logger(pipe).name
    thread = threading.get_ident()
    messages: list[str] = []

    def collect(record: logging.LogRecord) -> bool:
        if record.thread != thread:
            return True
        if record.levelno >= logging.WARNING and record.getMessage() not in messages:
            messages.append(record.getMessage())
        return False

    # a logger's filters see only the records logged on that logger, not those of the loggers below it: one on each
    loggers = [
        logger
        for name, logger in list(logging.Logger.manager.loggerDict.items())
        if isinstance(logger, logging.Logger) and (name == package or name.startswith(package + "."))
    ]
    for logger in loggers:
        logger.addFilter(collect)
    try:
        yield messages
    finally:
        for logger in loggers:
            logger.removeFilter(collect)


def speech_seconds(pipe, samples: int) -> float:
    """How long the pipeline reckons speech of `samples` output samples when it checks it against its text: its
    features' frames times the frame hop. The vocoder turns T frames into `num_samples(T)` samples (the streaming
    vocoder's count: (T - 1) x hop for centred frames), which gives T back."""
    streaming = pipe._streaming_vocoder()
    near = samples // streaming.hop
    for frames in range(max(near - 1, 1), near + 3):  # a row has at least one patch: T >= 1
        if streaming.num_samples(frames) == samples:
            return frames * pipe._frame_hop / pipe.sample_rate
    return samples / pipe.sample_rate  # no frame count gives this length: the audio's own seconds, near enough


def warnings_header(messages: list[str]) -> str | None:
    """The X-Warnings value of a request's warnings (None for none): a JSON array of the messages, ASCII only, each
    cut to `MAX_WARNING_CHARS` and all to `MAX_WARNINGS_HEADER_CHARS` escaped characters, where a last string says how
    many messages were left out."""
    if not messages:
        return None
    shown = [_shortened(message, MAX_WARNING_CHARS) for message in messages]
    whole = _header_json(shown)
    if len(whole) <= MAX_WARNINGS_HEADER_CHARS:
        return whole
    kept: list[str] = []
    for message in shown:
        if len(_header_json([*kept, message, _left_out(len(shown) - len(kept) - 1)])) > MAX_WARNINGS_HEADER_CHARS:
            break
        kept.append(message)
    return _header_json([*kept, _left_out(len(shown) - len(kept))])


def _left_out(count: int) -> str:
    return f"{count} more warning{'' if count == 1 else 's'} left out of this header; the server's log has them"


def _header_json(messages: list[str]) -> str:
    # ensure_ascii escapes every character outside printable ASCII (line breaks, DEL, non-ASCII), which no header holds
    return json.dumps(messages, ensure_ascii=True, separators=(",", ":"))


def _shortened(message: str, limit: int) -> str:
    """`message`, or its longest beginning followed by "..." whose JSON string takes at most `limit` characters."""
    if len(_header_json([message])) - 2 <= limit:
        return message
    low, high = 0, len(message)  # the longest beginning that fits lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if len(_header_json([message[:middle] + "..."])) - 2 <= limit:
            low = middle
        else:
            high = middle
    return message[:low] + "..."


# ----------------------------------------------------------------------------------------------------------------------
# scheduler


class QueueFull(Exception):
    """The scheduler's queue holds its maximum of requests."""


class ShuttingDown(Exception):
    """The server is stopping and takes no new work (or dropped queued work)."""


class _Aborted(Exception):
    """Raised in the pipeline's patch callback to stop a batch nobody waits for any more."""


@dataclass
class Job:
    """One request waiting for, or in, a batch."""

    text: str
    voice: Voice
    seed: int
    future: asyncio.Future
    multi_segment: bool
    cancelled: bool = False  # set from the event loop when the caller stopped waiting; read by the worker


@dataclass
class Speech:
    """A finished request: float32 audio, whether the model ended it itself (False: cut at the patch limit), and the
    warnings a pipeline call of its text alone logs."""

    audio: np.ndarray
    stopped: bool
    batch_size: int
    warnings: list[str] = field(default_factory=list)


class BatchScheduler:
    """Dynamic batching: requests queue up; the scheduler takes the first, waits up to `batch_wait_ms` for more (up to
    `max_batch_size`) and runs one pipeline call for them in its single worker thread, which all model work shares
    (the pipeline is not used from two threads at once). Texts the pipeline speaks sentence by sentence (longer than
    one segment) run alone: the pipeline generates such rows one after the other anyway.

    `pending` (queued, running and streaming requests) is bounded by `max_queue`: `reserve` raises `QueueFull` beyond
    it. A bad text in a batch fails only its own request: the batch is rerun one request at a time."""

    def __init__(self, pipe, settings: ServerSettings):
        self.pipe = pipe
        self.settings = settings
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ditar-model")
        self._queue: deque[Job] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._running = 0
        self._streams = 0
        self._closing = False
        self._abort = False
        self.stats = {"requests": 0, "batches": 0, "batched_rows": 0, "largest_batch": 0, "streams": 0}

    # -- lifecycle

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self, timeout: float) -> None:
        """Stop taking work, let queued and running requests finish for up to `timeout` seconds, then cancel the rest
        (queued requests get 503, a running batch stops at its next patch)."""
        self._closing = True
        self._wakeup.set()
        deadline = time.monotonic() + max(0.0, timeout)
        while (self._queue or self._running or self._streams) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self._abort = True
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(ShuttingDown("the server shut down before this request ran"))
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout=60)
        self.executor.shutdown(wait=False, cancel_futures=True)

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def pending(self) -> int:
        return len(self._queue) + self._running + self._streams

    def reserve_check(self) -> None:
        if self._closing:
            raise ShuttingDown("the server is shutting down")
        if self.pending >= self.settings.max_queue:
            raise QueueFull(f"the server's queue is full ({self.settings.max_queue} requests); retry shortly")

    # -- requests

    async def synthesize(self, text: str, voice: Voice, seed: int) -> Speech:
        """Queue a request and wait for its audio (raises QueueFull, ShuttingDown, TimeoutError, ValueError)."""
        self.reserve_check()
        loop = asyncio.get_running_loop()
        multi = len(split_sentences(text, MAX_CHARS_PER_SEGMENT)) > 1
        job = Job(text, voice, seed, loop.create_future(), multi)
        self._queue.append(job)
        self.stats["requests"] += 1
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.settings.request_timeout)
        except (TimeoutError, asyncio.CancelledError):
            job.cancelled = True
            raise

    def run_in_worker(self, fn, *args):
        """Run `fn(*args)` in the model's worker thread (after the work queued there)."""
        return asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def open_stream(self) -> None:
        """Count a streaming request towards `pending` (raises QueueFull, ShuttingDown); `close_stream` ends it."""
        self.reserve_check()
        self._streams += 1
        self.stats["streams"] += 1

    def close_stream(self) -> None:
        self._streams -= 1

    # -- the loop

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            first = self._queue[0]
            if not first.multi_segment and not self._closing:
                end = loop.time() + self.settings.batch_wait_ms / 1000
                while len(self._queue) < self.settings.max_batch_size and (remaining := end - loop.time()) > 0:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), remaining)
                    except TimeoutError:
                        break
            jobs = self._take_batch()
            if not jobs:
                continue
            self._running = len(jobs)
            try:
                results = await loop.run_in_executor(self.executor, self._run_batch, jobs)
            except Exception as err:  # the executor was shut down under the batch
                results = [err] * len(jobs)
            finally:
                self._running = 0
            for job, result in zip(jobs, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)

    def _take_batch(self) -> list[Job]:
        """The next batch: the first live job, then (unless it speaks several segments) the following live
        single-segment jobs with a prompt at the same rate, up to the batch size; the others keep their place."""
        while self._queue and (self._queue[0].cancelled or self._queue[0].future.done()):
            self._queue.popleft()
        if not self._queue:
            return []
        first = self._queue.popleft()
        jobs = [first]
        if first.multi_segment:
            return jobs
        kept: deque[Job] = deque()
        while self._queue and len(jobs) < self.settings.max_batch_size:
            job = self._queue.popleft()
            if job.cancelled or job.future.done():
                continue
            if job.multi_segment or job.voice.sampling_rate != first.voice.sampling_rate:
                kept.append(job)
            else:
                jobs.append(job)
        self._queue.extendleft(reversed(kept))
        return jobs

    def _run_batch(self, jobs: list[Job]) -> list[Speech | BaseException]:
        """One pipeline call for `jobs` (in the worker thread); per job its `Speech` or the exception to raise."""

        def check(pipe, index, step):
            if self._abort or all(job.cancelled for job in jobs):
                raise _Aborted()

        try:
            voices = [job.voice.prompt() for job in jobs]
            prompts = (
                {"voice": [v["voice"] for v in voices]}
                if all("voice" in v for v in voices)
                else {
                    "prompt_audio": [job.voice.audio for job in jobs],
                    "prompt_text": [job.voice.transcript for job in jobs],
                    "sampling_rate": jobs[0].voice.sampling_rate,
                }
            )
            with logged_warnings(self.pipe) as logged:
                out = self.pipe(
                    [job.text for job in jobs],
                    **prompts,
                    generator=[torch.Generator().manual_seed(job.seed) for job in jobs],
                    callback_on_patch_end=check,
                    **self.settings.sampling(),
                )
        except _Aborted:
            return [ShuttingDown("the request was cancelled")] * len(jobs)
        except (ValueError, TypeError) as err:  # the pipeline's input checks: find the request(s) at fault
            if len(jobs) == 1:
                return [err]
            return [result for job in jobs for result in self._run_batch([job])]
        except Exception as err:
            logger.exception("batch of %d failed", len(jobs))
            return [err] * len(jobs)
        self.stats["batches"] += 1
        self.stats["batched_rows"] += len(jobs)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(jobs))
        warnings = self._warnings_of(jobs, out, logged)
        return [
            Speech(
                np.asarray(out.audios[i][: out.audio_lengths[i]], dtype=np.float32),
                bool(out.stopped[i]),
                len(jobs),
                warnings[i],
            )
            for i in range(len(jobs))
        ]

    def _warnings_of(self, jobs: list[Job], out, logged: list[str]) -> list[list[str]]:
        """Per job, the warnings a pipeline call of its text alone logs (in its voice, a `DiTARVoice`), whatever else
        shared its batch. A batch of one logged just that. A batch of several speaks of its rows ("Text 1 of the batch
        ...", "`text[1]` ..."): each job's are worked out from its own text and speech instead, in the order a call
        logs them, after the messages about the call as a whole (its settings), which every job gets."""
        if len(jobs) == 1:
            return [logged]
        if not logged:  # a row warned about in a batch is warned about in a call of its own, and the other way round
            return [[] for _ in jobs]
        texts = [mark_line_ends(job.text) for job in jobs]  # as the pipeline encodes and measures them
        stopped = [bool(done) for done in out.stopped]
        seconds = [speech_seconds(self.pipe, length) for length in out.audio_lengths]
        least = [least_seconds_of_text(text) for text in texts]
        # the patch cap the call resolved: the cap message is only for a cap derived from the text (None here)
        cap = None if all(stopped) else self.pipe.model.generation_settings(**self.settings.sampling()).max_new_patches
        of_rows = {too_short_message(seconds, least, stopped), cut_by_cap_message(stopped, cap)}
        shared = [message for message in logged if message not in of_rows and not _ROW_OF_A_BATCH.search(message)]
        result = []
        with unprinted_warnings(self.pipe) as front_end:  # the text front end's, naming the text as a lone call
            for row, text in enumerate(texts):
                front_end.clear()
                self.pipe.processor.encode_text(text)
                own = [
                    *shared,
                    *front_end,
                    cut_by_cap_message([stopped[row]], cap),
                    too_short_message([seconds[row]], [least[row]], [stopped[row]]),
                ]
                result.append(list(dict.fromkeys(message for message in own if message is not None)))
        return result


# ----------------------------------------------------------------------------------------------------------------------
# audio encoding


def pcm16(audio: np.ndarray) -> np.ndarray:
    """16-bit samples (x 32768, rounded, clipped); every response format is made from these samples."""
    return np.clip(np.round(np.asarray(audio, dtype=np.float64) * 32768.0), -32768, 32767).astype("<i2")


def can_encode(response_format: str) -> bool:
    """Whether the installed libsndfile writes `response_format` (mp3 and opus need libsndfile >= 1.1 built with
    LAME and libopus, as soundfile's wheels bundle it)."""
    if response_format == "pcm":  # raw samples, no encoder
        return True
    container, codec = SOUNDFILE_FORMATS[response_format]
    return container in sf.available_formats() and codec in sf.available_subtypes(container)


def response_rate(response_format: str, model_rate: int) -> int:
    """The sample rate of a response: 24 kHz for pcm (OpenAI's), the model's for wav and flac, and for mp3 and opus
    the model's where their encoder takes it, else the next rate up that it takes."""
    if response_format == "pcm":
        return PCM_RATE
    rates = ENCODER_RATES.get(response_format)
    if rates is None or model_rate in rates:
        return model_rate
    return min((rate for rate in rates if rate > model_rate), default=max(rates))


class Resampler:  # not audio_utils.resample_audio, which resamples a whole clip: a stream's chunks must join exactly
    """A stateful polyphase resampler from `source` to `target` Hz: a Kaiser-windowed sinc low-pass (32 input samples
    each side, cut off at 92% of the lower Nyquist rate) evaluated at the `up` / `down` phases of the rational ratio.

    `process` takes the input in chunks and returns every output sample whose window it has seen; `flush` returns the
    rest, as if zeros followed. Each output sample is summed tap by tap in the same order whatever the chunks, so a
    stream resampled chunk by chunk equals the whole audio resampled at once, bit for bit."""

    HALF_WIDTH, ROLLOFF, KAISER_BETA = 32, 0.92, 8.0

    def __init__(self, source: int, target: int):
        divisor = math.gcd(source, target)
        self.up, self.down = target // divisor, source // divisor
        scale = min(1.0, self.up / self.down)  # downsampling lowers the cut-off and widens the window
        self.half = math.ceil(self.HALF_WIDTH / scale)
        cutoff = 0.5 * scale * self.ROLLOFF  # cycles per input sample
        self.offsets = np.arange(-self.half + 1, self.half + 1)
        # distance of each tap's input sample from the output's position, one row per phase
        distance = self.offsets[None, :] - np.arange(self.up)[:, None] / self.up
        window = np.i0(self.KAISER_BETA * np.sqrt(np.clip(1 - (distance / self.half) ** 2, 0, None)))
        taps = np.sinc(2 * cutoff * distance) * window
        self.taps = taps / taps.sum(axis=1, keepdims=True)  # each phase passes a constant unchanged
        self._buffer = np.zeros(self.half)  # the input from index `_start` on; zeros before the first sample
        self._start = -self.half
        self._received = 0
        self._next = 0  # the next output sample's index

    def process(self, samples: np.ndarray) -> np.ndarray:
        self._buffer = np.concatenate([self._buffer, np.asarray(samples, dtype=np.float64)])
        self._received += len(samples)
        # output j needs the input up to floor(j * down / up) + half
        return self._emit(-(-(self._received - self.half) * self.up // self.down))

    def flush(self) -> np.ndarray:
        self._buffer = np.concatenate([self._buffer, np.zeros(self.half)])
        return self._emit(-(-self._received * self.up // self.down))  # the outputs within the input's length

    def _emit(self, stop: int) -> np.ndarray:
        count = max(stop - self._next, 0)
        result = np.zeros(count)
        # every `up`-th output has the same phase and its input `down` samples further on: one strided pass per tap
        for first in range(min(self.up, count)):
            index = self._next + first
            phase, base = index * self.down % self.up, index * self.down // self.up - self._start
            n = len(range(first, count, self.up))
            for tap, offset in zip(self.taps[phase], self.offsets, strict=True):
                start = base + offset
                result[first :: self.up] += tap * self._buffer[start : start + self.down * (n - 1) + 1 : self.down]
        self._next += count
        drop = self._next * self.down // self.up - self.half + 1 - self._start  # input no later output needs
        if drop > 0:
            self._buffer, self._start = self._buffer[drop:], self._start + drop
        return result


def _resampled(resampler: Resampler | None, samples: np.ndarray, last: bool = False) -> np.ndarray:
    """16-bit `samples` at the response's rate. The 16-bit samples are resampled (and rounded again), not the model's
    floats: the stream's samples equal the whole audio's, so the resampled ones do too."""
    if resampler is None:
        return samples
    out = resampler.process(samples / 32768.0)
    if last:
        out = np.concatenate([out, resampler.flush()])
    return pcm16(out)


def encode_audio(audio: np.ndarray, model_rate: int, response_format: str) -> bytes:
    """The whole response: the audio's 16-bit samples at `response_rate`, raw or in the format's file."""
    rate = response_rate(response_format, model_rate)
    samples = _resampled(Resampler(model_rate, rate) if rate != model_rate else None, pcm16(audio), last=True)
    if response_format == "pcm":
        return samples.tobytes()
    container, codec = SOUNDFILE_FORMATS[response_format]
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=container, subtype=codec)
    return buffer.getvalue()


def streaming_wav_header(rate: int) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown" (0xFFFFFFFF), as streamed WAV is written."""
    unknown = 0xFFFFFFFF
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


class _StreamSink:
    """A write-only file object for libsndfile that hands out the bytes written since the last `take()`. An encoder
    that goes back to change bytes already handed out fails the stream: what the client got would not be the file."""

    def __init__(self):
        self._data = bytearray()
        self._position = 0
        self._taken = 0
        self._rewrote = False

    def write(self, data) -> int:
        data = bytes(data)
        if self._position < self._taken:
            self._rewrote = True
        end = self._position + len(data)
        self._data[self._position : end] = data
        self._position = end
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._data)}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        if self._rewrote:
            raise RuntimeError("the encoder rewrote bytes already streamed; this format cannot be streamed")
        new = bytes(self._data[self._taken :])
        self._taken = len(self._data)
        return new


class StreamEncoder:
    """The bytes of one streamed response, chunk by chunk: `start()`, `encode(chunk)` for each chunk of the model's
    float audio, `finish()` at its end (`close()` drops an unfinished one). WAV is a header with unknown sizes and
    then the samples; pcm is resampled to 24 kHz with the resampler's state carried from chunk to chunk, so the bytes
    equal the whole response's; opus is libsndfile's Ogg Opus written as it goes (it writes a page about every second
    of audio), which decodes to the whole response's audio."""

    def __init__(self, response_format: str, model_rate: int):
        self.format = response_format
        self.rate = response_rate(response_format, model_rate)
        self._resampler = Resampler(model_rate, self.rate) if self.rate != model_rate else None
        self._sink = self._file = None

    def start(self) -> bytes:
        if self.format == "wav":
            return streaming_wav_header(self.rate)
        if self.format == "pcm":
            return b""
        container, codec = SOUNDFILE_FORMATS[self.format]
        self._sink = _StreamSink()
        self._file = sf.SoundFile(self._sink, "w", self.rate, 1, format=container, subtype=codec)
        return self._sink.take()

    def encode(self, chunk: np.ndarray) -> bytes:
        return self._bytes(_resampled(self._resampler, pcm16(chunk)))

    def finish(self) -> bytes:
        tail = self._bytes(_resampled(self._resampler, np.zeros(0, "<i2"), last=True))
        if self._file is None:
            return tail
        self._file.close()
        return tail + self._sink.take()

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()

    def _bytes(self, samples: np.ndarray) -> bytes:
        if self._file is None:
            return samples.tobytes()
        if len(samples):
            self._file.write(samples)
        return self._sink.take()


# ----------------------------------------------------------------------------------------------------------------------
# request bodies


class VoiceRef(BaseModel):
    """A voice given as an object, `{"id": "voice_..."}` (OpenAI's form for custom voices)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    id: str


class SpeechRequest(BaseModel):
    """The body of POST /v1/audio/speech: OpenAI's fields, and `seed` (this server's addition)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    model: str
    input: str
    voice: str | VoiceRef = DEFAULT_VOICE_ID
    response_format: str = DEFAULT_RESPONSE_FORMAT
    speed: float = 1.0
    # None: stream when stream_format is "audio" (OpenAI's clients stream that way and never send `stream`)
    stream: bool | None = None
    stream_format: str | None = None
    instructions: str | None = None
    seed: int | None = None


class TrailingSlash:
    """ASGI middleware: `/v1/audio/speech/` is served as `/v1/audio/speech` (and so on for every path). Without it the
    router answers 307, which clients that do not follow redirects for POST report as an empty reply."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and len(scope["path"]) > 1 and scope["path"].endswith("/"):
            scope = {**scope, "path": scope["path"].rstrip("/") or "/"}
        return await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: a request body over its limit gets 413 before the app sees it (by its Content-Length, or while
    it is read when there is none); bodies under the limit are passed on whole."""

    def __init__(self, app, settings: ServerSettings):
        self.app, self.settings = app, settings

    def limit(self, path: str) -> tuple[int, str]:
        if path == "/v1/voices":
            return self.settings.max_upload_bytes, "--max-upload-mb"
        return self.settings.max_json_bytes, "--max-text-chars"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit, option = self.limit(scope["path"])
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await error_response(400, "the Content-Length header is not a number")(scope, receive, send)
            if int(length) > limit:
                return await self._too_large(int(length), limit, option, scope, receive, send)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                return await self._too_large(None, limit, option, scope, receive, send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(size, limit, option, scope, receive, send):
        what = "the upload" if option == "--max-upload-mb" else "the request body"
        got = f" is {size} bytes," if size is not None else " is"
        message = f"{what}{got} over this server's limit of {limit} bytes ({option})"
        await error_response(413, message, code="too_large")(scope, receive, send)


class ApiKey:
    """ASGI middleware for a server with `settings.api_key`: a request without `Authorization: Bearer <key>` gets 401
    before its body is read (no upload buffered or decoded, no queue slot taken). `open_paths` (liveness probes, the
    API docs) need no key; every other path does, so a path the router would answer 404 does too."""

    def __init__(self, app, settings: ServerSettings, open_paths: frozenset[str]):
        self.app, self.open_paths = app, open_paths
        # bytes: the header arrives as bytes, and compare_digest raises on str holding non-ASCII characters
        self.key = settings.api_key.encode("utf-8")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            return await self.app(scope, receive, send)
        problem = self.problem(scope.get("headers") or [])
        if problem is None:
            return await self.app(scope, receive, send)
        response = error_response(401, problem, code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def problem(self, headers) -> str | None:
        """What is wrong with the request's credentials, in words that never repeat what was sent; None when the key
        is right."""
        values = [value for name, value in headers if name.lower() == b"authorization"]
        if not values:
            return (
                "this server requires an API key: send it as the header 'Authorization: Bearer <key>' (OpenAI "
                "clients: api_key=<key>)"
            )
        scheme, _, token = values[0].strip().partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return "the Authorization header is not of the form 'Bearer <key>'; send this server's API key that way"
        if len(values) > 1 or not secrets.compare_digest(token, self.key):
            return (
                "the API key sent is not this server's; send the key it was started with (--api-key or "
                "DITAR_API_KEY) as 'Authorization: Bearer <key>'"
            )
        return None


def is_loopback(host: str) -> bool:
    """Whether `host` (an address to listen on) accepts connections from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to any interface
        return False


def exposure_warning(host: str, port: int, settings: ServerSettings) -> str | None:
    """The start-up warning for a server other machines can reach without a key (None when there is a key or the
    host is loopback)."""
    if settings.api_key is not None or is_loopback(host):
        return None
    return (
        f"listening on {host}:{port} without an API key: anyone who can reach this port can synthesise speech and "
        "upload or delete voices. Require a key with --api-key KEY or the DITAR_API_KEY environment variable "
        "(clients then send 'Authorization: Bearer KEY'), or listen on 127.0.0.1"
    )


def _document_bearer_auth(app: FastAPI, open_paths: frozenset[str]) -> None:
    """Declare the API key in the OpenAPI schema, so the docs page's "Authorize" button sends it with its requests."""
    build = app.openapi

    def openapi():
        schema = build()  # cached by FastAPI after the first call: the additions below are made once
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        if "apiKey" not in schemes:
            schemes["apiKey"] = {"type": "http", "scheme": "bearer", "description": "the server's --api-key"}
            for path, operations in schema.get("paths", {}).items():
                if path not in open_paths:
                    for operation in operations.values():
                        operation["security"] = [{"apiKey": []}]
        return schema

    app.openapi = openapi


# ----------------------------------------------------------------------------------------------------------------------
# the app


def create_app(pipe, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app serving `pipe` (a `DiTARPipeline`); run it with uvicorn (see `run`), or test it with
    `fastapi.testclient.TestClient(create_app(pipe))` used as a context manager (which starts the scheduler)."""
    settings = settings or ServerSettings()
    voices = VoiceStore(settings.max_voices)
    builtin = default_voice(pipe)
    if builtin is not None:
        voices.add(builtin)
    scheduler = BatchScheduler(pipe, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        scheduler.start()
        try:
            yield
        finally:
            await scheduler.close(settings.shutdown_timeout)

    app = FastAPI(title="DiTAR speech server", version="1", lifespan=lifespan)
    app.state.pipe, app.state.settings, app.state.voices, app.state.scheduler = pipe, settings, voices, scheduler
    app.add_middleware(BodyLimit, settings=settings)
    # liveness probes and the API docs pages need no key (the docs describe the API and hold no data)
    docs = (app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url)
    open_paths = frozenset(["/health", *(path for path in docs if path)])
    if settings.api_key is not None:
        app.add_middleware(ApiKey, settings=settings, open_paths=open_paths)  # before BodyLimit reads any body
        _document_bearer_auth(app, open_paths)
    app.add_middleware(TrailingSlash)  # added last, so it runs first

    @app.exception_handler(APIError)
    async def api_error(request, err: APIError):
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, err: RequestValidationError):
        if request.url.path == "/v1/audio/speech":
            # a body sent without the JSON content type is not parsed at all; say so instead of "not a dictionary"
            content_type = request.headers.get("content-type", "")
            if not content_type.split(";")[0].strip().lower().endswith("json"):
                shown = repr(content_type) if content_type else "no Content-Type"
                return error_response(
                    415, f"send the request as JSON with 'Content-Type: application/json' (got {shown})"
                )
            if not await request.body():
                return error_response(400, "the request body is empty; send a JSON object with at least 'input'")
        return validation_response(err.errors())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, err: StarletteHTTPException):
        return error_response(err.status_code, str(err.detail), headers=getattr(err, "headers", None))

    @app.get("/health")
    async def health():
        status = "shutting_down" if scheduler.closing else "ok"
        body = {
            "status": status,
            "model": settings.model_name,
            "sample_rate": pipe.sample_rate,
            # where and how the model computes: the matmul dtype depends on the CPU when the folder says "auto"
            "compute": {"device": str(pipe.device), "matmul_dtype": str(pipe.model.matmul_dtype).replace("torch.", "")},
            "queue": {"pending": scheduler.pending, "capacity": settings.max_queue},
            "max_batch_size": settings.max_batch_size,
            # the recogniser that transcribes voice uploads sent without text (`--asr-model`), or None
            "transcribes_uploads": getattr(pipe.prompt_transcriber, "name", None),
            "stats": dict(scheduler.stats),
        }
        return JSONResponse(body, status_code=503 if scheduler.closing else 200)

    @app.get("/v1/voices")
    async def list_voices():
        return {"object": "list", "data": [v.describe() for v in voices.list()]}

    @app.delete("/v1/voices/{voice_id}")
    async def delete_voice(voice_id: str):
        if voices.remove(voice_id) is None:
            if voices.get(voice_id) is not None:
                raise APIError(400, f"voice {voice_id!r} is built in and cannot be deleted", "voice_id")
            raise APIError(404, f"no voice {voice_id!r}; GET /v1/voices lists them", "voice_id", "voice_not_found")
        return {"id": voice_id, "object": "voice", "deleted": True}

    @app.post("/v1/voices")
    async def upload_voice(
        audio: Annotated[UploadFile, File(description="a recording of 3-8 s of speech (WAV, FLAC, OGG)")],
        text: Annotated[
            str | None,
            Form(description="the exact transcript of the recording (transcribed when left out, with --asr-model)"),
        ] = None,
        name: Annotated[str | None, Form(description="a name to list the voice by")] = None,
    ):
        if text is None and pipe.prompt_transcriber is None:
            raise APIError(
                400,
                "text (the exact transcript of the audio) is missing; send it, or start the server with --asr-model "
                "to have uploads without one transcribed",
                "text",
            )
        if text is not None and not text.strip():
            raise APIError(400, "text (the transcript of the audio) is empty", "text")
        if text is not None and len(text) > settings.max_text_chars:
            raise APIError(
                413, f"text is {len(text)} characters, over the limit of {settings.max_text_chars}", "text", "too_large"
            )
        if name is not None and len(name) > MAX_VOICE_NAME_CHARS:
            raise APIError(400, f"name is {len(name)} characters; give at most {MAX_VOICE_NAME_CHARS}", "name")
        if name is not None and is_default_voice_name(name):
            raise APIError(
                400,
                f"name {name!r} is a name of the built-in default voice (voice={name!r} speaks it); choose another",
                "name",
            )
        data = await audio.read()
        if not data:
            raise APIError(400, "audio: the uploaded file is empty", "audio", "bad_audio")
        if scheduler.closing:
            raise APIError(503, "the server is shutting down", code="shutting_down")
        voice = await scheduler.run_in_worker(prepare_voice, pipe, data, text, name)
        stored, new = voices.add(voice)
        return JSONResponse(stored.describe(), status_code=201 if new else 200)

    @app.post("/v1/audio/speech")
    async def speech(request: SpeechRequest):
        text, voice, response_format, seed, stream = check_speech_request(request, settings, voices)
        rate = response_rate(response_format, pipe.sample_rate)
        headers = {"X-Seed": str(seed), "X-Sample-Rate": str(rate)}
        media_type = CONTENT_TYPES[response_format]
        if response_format == "pcm":
            media_type += f";rate={rate};channels=1"
        if stream:
            return await start_stream(text, voice, seed, response_format, media_type, headers)
        try:
            result = await scheduler.synthesize(text, voice, seed)
        except QueueFull as err:
            raise APIError(429, str(err), code="queue_full", headers={"Retry-After": "1"}) from None
        except ShuttingDown as err:
            raise APIError(503, str(err), code="shutting_down") from None
        except TimeoutError:
            raise APIError(
                504,
                f"the request did not finish within this server's timeout of {settings.request_timeout:g} s "
                "(--timeout); try a shorter text",
                code="timeout",
            ) from None
        except (ValueError, TypeError) as err:  # the pipeline's checks of the text
            raise APIError(400, str(err), "input", "bad_input") from None
        headers["X-Audio-Seconds"] = f"{len(result.audio) / pipe.sample_rate:.3f}"
        headers["X-Stopped"] = "true" if result.stopped else "false"
        headers["X-Batch-Size"] = str(result.batch_size)
        # what the pipeline warned of for this request (speech far shorter than its text, characters dropped, ...):
        # the audio alone would not show it
        warnings = warnings_header(result.warnings)
        if warnings is not None:
            headers["X-Warnings"] = warnings
        # in a thread: encoding minutes of mp3 would hold up the event loop (and every other client) for a while
        content = await asyncio.to_thread(encode_audio, result.audio, pipe.sample_rate, response_format)
        return Response(content, media_type=media_type, headers=headers)

    async def start_stream(text, voice, seed, response_format, media_type, headers):
        """Streaming bypasses batching: the pipeline's `stream` yields chunks, each produced in the worker thread."""
        try:
            scheduler.open_stream()
        except QueueFull as err:
            raise APIError(429, str(err), code="queue_full", headers={"Retry-After": "1"}) from None
        except ShuttingDown as err:
            raise APIError(503, str(err), code="shutting_down") from None

        def open_stream():
            generator = torch.Generator().manual_seed(seed)
            return pipe.stream(text, **voice.prompt(), generator=generator, **settings.sampling())

        try:
            chunks = await asyncio.wait_for(scheduler.run_in_worker(open_stream), settings.request_timeout)
        except BaseException as err:
            scheduler.close_stream()
            if isinstance(err, TimeoutError):
                raise APIError(504, "the stream did not start within the server's timeout", code="timeout") from None
            if isinstance(err, (ValueError, TypeError)):
                raise APIError(400, str(err), "input", "bad_input") from None
            raise

        encoder = StreamEncoder(response_format, pipe.sample_rate)

        async def body():
            done = object()
            try:
                yield encoder.start()
                while not scheduler._abort:
                    chunk = await scheduler.run_in_worker(next, chunks, done)
                    data = encoder.finish() if chunk is done else encoder.encode(chunk)
                    if data:
                        yield data
                    if chunk is done:
                        break
            finally:
                encoder.close()
                scheduler.close_stream()
                with contextlib.suppress(Exception):
                    await scheduler.run_in_worker(chunks.close)

        return StreamingResponse(body(), media_type=media_type, headers=headers)

    return app


def check_speech_request(request: SpeechRequest, settings: ServerSettings, voices: VoiceStore):
    """(text, voice, response_format, seed, stream) of a valid request; `APIError` naming the first problem
    otherwise."""
    text = request.input
    if not request.model.strip():
        raise APIError(400, "model is empty; any model name is accepted (this server serves one model)", "model")
    if not text.strip():
        raise APIError(400, "input is empty or whitespace only; give the words to speak", "input")
    if len(text) > settings.max_text_chars:
        raise APIError(
            413,
            f"input is {len(text)} characters, over this server's limit of {settings.max_text_chars} "
            "(--max-text-chars); split the text over several requests",
            "input",
            "too_large",
        )
    response_format = check_response_format(request)
    if not math.isfinite(request.speed) or request.speed != 1.0:
        raise APIError(400, f"speed {request.speed!r} is not supported: this server speaks at speed 1.0 only", "speed")
    if request.stream_format not in (None, "audio"):
        raise APIError(400, f"stream_format {request.stream_format!r} is not supported; use 'audio'", "stream_format")
    stream = request.stream
    if stream is None:
        # OpenAI's clients ask for a stream with stream_format "audio" alone; a format sent whole answers the file
        stream = request.stream_format == "audio" and response_format in STREAM_FORMATS
    elif stream and response_format not in STREAM_FORMATS:
        raise APIError(
            400,
            f"stream needs response_format {', '.join(STREAM_FORMATS[:-1])} or {STREAM_FORMATS[-1]}; "
            f"{response_format!r} is sent whole. Ask for one of those, or leave stream out",
            "response_format",
        )
    if request.instructions is not None and request.instructions.strip():
        raise APIError(400, "instructions are not supported by this model; leave them out", "instructions")
    seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    if not 0 <= seed <= MAX_SEED:
        raise APIError(400, f"seed must be an integer in [0, 2**63 - 1], got {seed}", "seed")
    voice_id = request.voice.id if isinstance(request.voice, VoiceRef) else request.voice
    voice = voices.get(voice_id)
    if voice is None:
        known = ", ".join(repr(v.id) for v in voices.list()[:10])
        raise APIError(
            400, f"unknown voice {voice_id!r}; known voices: {known} (POST /v1/voices adds one)", "voice", "no_voice"
        )
    return text, voice, response_format, seed, stream


def check_response_format(request: SpeechRequest) -> str:
    """The request's response format, lower case; `APIError` for one this server cannot send. Not given, it is mp3 (as
    in OpenAI's API), but wav with `stream: true`, this server's own flag, whose clients were sent wav before mp3
    became the default (mp3 is sent whole)."""
    if "response_format" not in request.model_fields_set and request.stream:
        return "wav"
    response_format = request.response_format.lower()
    if response_format not in RESPONSE_FORMATS:
        raise APIError(
            400,
            f"response_format {request.response_format!r} is not supported; use one of {', '.join(RESPONSE_FORMATS)}",
            "response_format",
        )
    if not can_encode(response_format):
        default = "" if "response_format" in request.model_fields_set else " (the default, as in OpenAI's API)"
        raise APIError(
            400,
            f"response_format {response_format!r}{default}: the installed libsndfile ({sf.__libsndfile_version__}) "
            "cannot encode it; ask for wav, pcm or flac, or install a soundfile whose libsndfile can "
            "(pip install -U soundfile: its wheels bundle libsndfile with MP3 and Opus)",
            "response_format",
            "unsupported_format",
        )
    return response_format


def validation_response(errors) -> JSONResponse:
    """FastAPI's validation errors as one 400 naming the fields (malformed JSON, missing fields, wrong types)."""
    parts, param = [], None
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "form", "query", "path")]
        if error.get("type") == "json_invalid":
            detail = (error.get("ctx") or {}).get("error", "")
            return error_response(400, f"the request body is not valid JSON ({detail})", code="invalid_json")
        where = ".".join(location)
        if param is None and location:
            param = location[0]
        kind = error.get("type", "")
        if kind == "missing":
            parts.append(f"{where}: this field is required")
        elif kind == "extra_forbidden":
            parts.append(f"{where}: unknown field")
        else:
            parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid body"))
    return error_response(400, "; ".join(parts) or "invalid request", param, "invalid_request")


def run(pipe, settings: ServerSettings, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve `pipe` with uvicorn until interrupted; on SIGINT/SIGTERM running requests get `shutdown_timeout` seconds
    to finish, then the rest are cancelled."""
    import signal
    import threading

    import uvicorn

    app = create_app(pipe, settings)
    warning = exposure_warning(host, port, settings)
    if warning is not None:
        logger.warning(warning)
    if not can_encode(DEFAULT_RESPONSE_FORMAT):
        logger.warning(
            "the installed libsndfile (%s) cannot encode %s, the default response_format: requests without one get "
            "400. pip install -U soundfile installs one that can",
            sf.__libsndfile_version__,
            DEFAULT_RESPONSE_FORMAT,
        )
    # uvicorn shuts down gracefully on SIGINT and SIGTERM, then raises the signal again for the handler that was there
    # before it. For SIGINT that is a KeyboardInterrupt, which `uvicorn.run` swallows; Python's default for SIGTERM
    # killed the process (exit status 143) after the clean shutdown. SIGTERM is handled as Ctrl-C is.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level,
            timeout_graceful_shutdown=settings.shutdown_timeout,
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

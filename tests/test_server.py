"""`ditar serve`: the OpenAI-compatible speech endpoint, voices, batching, limits and errors (tiny pipeline)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from fastapi.testclient import TestClient
from pipeline_helpers import SR, get_dummy_pipeline, spoken, tone
from test_cli import _imported_modules

from modeling_ditar import cli
from modeling_ditar.server import (
    MAX_WARNING_CHARS,
    MAX_WARNINGS_HEADER_CHARS,
    BatchScheduler,
    Resampler,
    ServerSettings,
    ShuttingDown,
    StreamEncoder,
    create_app,
    encode_audio,
    pcm16,
    run,
    streaming_wav_header,
    warnings_header,
)

SPEECH = "/v1/audio/speech"


@pytest.fixture(scope="module")
def pipe():
    return get_dummy_pipeline()


def make_client(pipe, **settings) -> TestClient:
    return TestClient(create_app(pipe, ServerSettings(**settings)))


@pytest.fixture
def client(pipe):
    with make_client(pipe) as client:
        yield client


def wav_bytes(audio: np.ndarray, rate: int = SR, format: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=format)
    return buffer.getvalue()


def decode(content: bytes) -> tuple[np.ndarray, int]:
    return sf.read(io.BytesIO(content), dtype="float32")


def expected_pcm(pipe, text: str, seed: int, prompt_audio=None, prompt_text=None) -> np.ndarray:
    """What a separate pipeline call gives, as the server's 16-bit samples."""
    if prompt_audio is None:
        prompt_audio, rate, prompt_text = pipe.default_voice
    out = pipe(text, prompt_audio=prompt_audio, prompt_text=prompt_text, sampling_rate=SR,
               generator=torch.Generator().manual_seed(seed))  # fmt: skip
    audio = out.audios[0][: out.audio_lengths[0]]
    return np.clip(np.round(audio.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)


def pcm(content: bytes) -> np.ndarray:
    return np.frombuffer(content, dtype="<i2")


def samples(content: bytes) -> np.ndarray:
    """The 16-bit samples of an audio file (WAV, FLAC)."""
    return sf.read(io.BytesIO(content), dtype="int16")[0]


def assert_error(response, status: int, param: str | None, *words: str):
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param, error
    for word in words:
        assert word in error["message"], (word, error["message"])


def upload(client, audio: bytes, text: str | None = "the prompt", name: str | None = None, headers=None):
    data = {} if text is None else {"text": text}
    if name is not None:
        data["name"] = name
    files = {"audio": ("voice.wav", audio, "audio/wav")}
    return client.post("/v1/voices", data=data, files=files, headers=headers)


# ----------------------------------------------------------------------------------------------------------------------
# happy paths


def test_health_and_voices(client, pipe):
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["sample_rate"] == pipe.sample_rate
    assert body["queue"] == {"pending": 0, "capacity": 32}
    assert body["compute"] == {"device": "cpu", "matmul_dtype": "float32"}  # a folder without "auto"
    assert body["transcribes_uploads"] is None  # no --asr-model: uploads need their transcript
    voices = client.get("/v1/voices").json()
    assert voices["object"] == "list" and [v["id"] for v in voices["data"]] == ["default"]
    assert voices["data"][0]["builtin"] is True


def test_speech_wav_is_the_pipeline_audio_for_its_seed(client, pipe):
    body = {"model": "ditar", "input": "hello there", "voice": "default", "seed": 7, "response_format": "wav"}
    response = client.post(SPEECH, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["x-seed"] == "7" and response.headers["x-sample-rate"] == str(SR)
    audio, rate = decode(response.content)
    assert rate == SR and len(audio) > 0
    np.testing.assert_array_equal(
        sf.read(io.BytesIO(response.content), dtype="int16")[0], expected_pcm(pipe, "hello there", 7)
    )


def test_a_trailing_slash_is_served_not_redirected(client, pipe):
    request = {"model": "ditar", "input": "hello there", "voice": "default", "seed": 7}
    response = client.post(SPEECH + "/", json=request, follow_redirects=False)
    assert response.status_code == 200, response.text
    assert response.content == client.post(SPEECH, json=request).content
    assert client.get("/health/", follow_redirects=False).status_code == 200
    assert client.post(SPEECH + "/", content=b"", follow_redirects=False).status_code == 415  # the speech path's checks


def test_formats_and_openai_voice_names(client, pipe):
    base = {"model": "tts-1", "input": "hello there", "seed": 3}
    wav = client.post(SPEECH, json={**base, "voice": "default", "response_format": "wav"})
    named = client.post(SPEECH, json={**base, "voice": "alloy", "response_format": "wav"})
    flac = client.post(SPEECH, json={**base, "voice": {"id": "Nova"}, "response_format": "flac"})
    assert flac.headers["content-type"] == "audio/flac"
    expected = samples(wav.content)
    np.testing.assert_array_equal(samples(named.content), expected)  # OpenAI's names speak in the default voice
    np.testing.assert_array_equal(samples(flac.content), expected)
    capital = client.post(SPEECH, json={**base, "voice": "Default", "response_format": "wav"})
    np.testing.assert_array_equal(samples(capital.content), expected)  # the built-in name in any case, as OpenAI's
    unseeded = [client.post(SPEECH, json={"model": "m", "input": "hello there"}) for _ in range(2)]
    assert unseeded[0].headers["x-seed"] != unseeded[1].headers["x-seed"]  # a random seed, reported


def test_uploaded_voice_is_cached_and_speaks_like_the_pipeline(client, pipe):
    prompt = tone(0.06, freq=300.0)
    first = upload(client, wav_bytes(prompt), "the prompt", name="mine")
    assert first.status_code == 201, first.text
    voice = first.json()
    assert voice["id"].startswith("voice_") and voice["name"] == "mine" and voice["transcript"] == "the prompt"
    again = upload(client, wav_bytes(prompt), "the prompt")
    assert again.status_code == 200 and again.json()["id"] == voice["id"]  # same recording and transcript: same id
    assert again.json()["name"] == "mine"  # no name given: the voice keeps its name
    renamed = upload(client, wav_bytes(prompt), "the prompt", name="ours")
    assert renamed.status_code == 200 and renamed.json()["name"] == "ours"
    assert voice["id"] in [v["id"] for v in client.get("/v1/voices").json()["data"]]
    response = client.post(SPEECH, json={"model": "m", "input": "hello there", "voice": voice["id"], "seed": 5,
                                         "response_format": "wav"})  # fmt: skip
    assert response.status_code == 200, response.text
    decoded = sf.read(io.BytesIO(wav_bytes(prompt)), dtype="float32")[0]  # the WAV round trip of the upload
    np.testing.assert_array_equal(
        samples(response.content), expected_pcm(pipe, "hello there", 5, decoded, "the prompt")
    )
    assert client.delete(f"/v1/voices/{voice['id']}").json()["deleted"] is True
    gone = client.post(SPEECH, json={"model": "m", "input": "hello there", "voice": voice["id"]})
    assert_error(gone, 400, "voice", "unknown voice", voice["id"])
    assert_error(client.delete(f"/v1/voices/{voice['id']}"), 404, "voice_id", "no voice")
    assert_error(client.delete("/v1/voices/default"), 400, "voice_id", "built in")


def test_stream_yields_the_one_shot_audio(client, pipe):
    body = {"model": "m", "input": "hello there", "seed": 11, "stream": True, "response_format": "wav"}
    with client.stream("POST", SPEECH, json=body) as response:
        assert response.status_code == 200
        content = b"".join(response.iter_bytes())
    header = streaming_wav_header(SR)
    assert content.startswith(header)
    np.testing.assert_array_equal(pcm(content[len(header) :]), expected_pcm(pipe, "hello there", 11))
    whole = client.post(SPEECH, json={**body, "stream": False})
    np.testing.assert_array_equal(samples(whole.content), pcm(content[len(header) :]))


def test_a_stream_samples_the_configured_candidates_like_a_plain_request():
    """The server's --candidates applies to streamed requests too, and the same seed gives the same audio streamed or
    not (streams used to sample the model's own number of candidates, with another draw of the generator)."""
    pipe = get_dummy_pipeline(ctc_loss_weight=1.0)
    with make_client(pipe, num_candidates=3) as client:
        body = {"model": "m", "input": "hello there", "seed": 4, "response_format": "wav"}
        plain = client.post(SPEECH, json=body)
        with client.stream("POST", SPEECH, json={**body, "stream": True}) as response:
            streamed = b"".join(response.iter_bytes())[len(streaming_wav_header(SR)) :]
    assert plain.status_code == 200
    np.testing.assert_array_equal(samples(plain.content), pcm(streamed))
    prompt_audio, _, prompt_text = pipe.default_voice
    out = pipe("hello there", prompt_audio=prompt_audio, prompt_text=prompt_text, sampling_rate=SR, num_candidates=3,
               generator=torch.Generator().manual_seed(4))  # fmt: skip
    expected = np.clip(np.round(out.audios[0][: out.audio_lengths[0]].astype(np.float64) * 32768), -32768, 32767)
    np.testing.assert_array_equal(samples(plain.content), expected.astype(np.int16))


# ----------------------------------------------------------------------------------------------------------------------
# response formats as OpenAI's clients expect them


def streamed(client, body: dict) -> tuple[bytes, dict]:
    """The body and headers of a request read as a stream, and whether the server streamed it (its stream counter)."""
    before = client.get("/health").json()["stats"]["streams"]
    with client.stream("POST", SPEECH, json=body) as response:
        assert response.status_code == 200, response.read()
        content, headers = b"".join(response.iter_bytes()), dict(response.headers)
    headers["streamed"] = client.get("/health").json()["stats"]["streams"] > before
    return content, headers


def test_pcm_is_little_endian_24_khz_said_so_by_its_media_type(client, pipe):
    """OpenAI's pcm is 24 kHz (its clients' players assume it) and little-endian: not audio/L16 (big-endian) at the
    model's rate."""
    body = {"model": "m", "input": "hello there", "seed": 3, "response_format": "pcm"}
    response = client.post(SPEECH, json=body)
    assert response.headers["content-type"] == "audio/pcm;rate=24000;channels=1"
    assert response.headers["x-sample-rate"] == "24000"
    wav = samples(client.post(SPEECH, json={**body, "response_format": "wav"}).content)
    raw = pcm(response.content)
    assert len(raw) == 3 * len(wav)  # 8 kHz to 24 kHz
    # every third 24 kHz sample sits on an 8 kHz one: the same signal, up to the low-pass near 4 kHz
    assert np.corrcoef(raw[::3].astype(float), wav.astype(float))[0, 1] > 0.99
    big_endian = np.frombuffer(response.content, ">i2")  # what an audio/L16 reader makes of the bytes
    assert np.corrcoef(big_endian[::3].astype(float), wav.astype(float))[0, 1] < 0.5
    content, headers = streamed(client, {**body, "stream": True})
    assert headers["streamed"] and headers["content-type"] == "audio/pcm;rate=24000;channels=1"
    assert content == response.content  # the resampler's state carried over: the stream is the file, byte for byte


def test_the_resampler_is_accurate_and_exact_in_chunks():
    for source, target in [(16_000, 24_000), (8_000, 24_000), (22_050, 24_000), (44_100, 24_000)]:
        seconds = np.arange(source) / source
        signal = 0.5 * np.sin(2 * np.pi * 1000.0 * seconds) + 0.3 * np.sin(2 * np.pi * 3100.0 * seconds)
        resampler = Resampler(source, target)
        whole = np.concatenate([resampler.process(signal), resampler.flush()])
        assert len(whole) == target  # one second in, one second out
        times = np.arange(target) / target
        truth = 0.5 * np.sin(2 * np.pi * 1000.0 * times) + 0.3 * np.sin(2 * np.pi * 3100.0 * times)
        inner = slice(100, target - 100)  # away from the zeros before and after
        assert np.abs(whole[inner] - truth[inner]).max() < 1 / 32768, (source, target)  # within a 16-bit step
        rng = np.random.default_rng(source)
        for _ in range(3):
            cuts = np.sort(rng.integers(0, source, rng.integers(1, 30)))
            resampler = Resampler(source, target)
            parts = [resampler.process(part) for part in np.split(signal, cuts)] + [resampler.flush()]
            np.testing.assert_array_equal(np.concatenate(parts), whole)  # bit for bit, whatever the chunks
    audio = np.random.default_rng(0).normal(0.0, 0.2, 2400).astype(np.float32)
    assert encode_audio(audio, 24_000, "pcm") == pcm16(audio).tobytes()  # a 24 kHz model's pcm is not resampled
    assert StreamEncoder("pcm", 24_000).encode(audio) == pcm16(audio).tobytes()


def test_stream_format_audio_streams_as_openai_clients_ask(client):
    """OpenAI's clients stream with stream_format "audio" and never send `stream`; formats sent whole answer the
    file, and an explicit `stream: false` does not stream."""
    body = {"model": "m", "input": "hello there", "seed": 2, "stream_format": "audio"}
    wav, headers = streamed(client, {**body, "response_format": "wav"})
    assert headers["streamed"] and "x-audio-seconds" not in headers and wav.startswith(streaming_wav_header(SR))
    whole = client.post(SPEECH, json={**body, "response_format": "wav", "stream_format": None})
    np.testing.assert_array_equal(pcm(wav[len(streaming_wav_header(SR)) :]), samples(whole.content))
    for extra in ({"response_format": "wav", "stream": False}, {"response_format": "flac"}, {}):
        content, headers = streamed(client, {**body, **extra})
        assert not headers["streamed"] and "x-audio-seconds" in headers, extra
        whole = client.post(SPEECH, json={**body, **extra})
        np.testing.assert_array_equal(decode(content)[0], decode(whole.content)[0])
    assert headers["content-type"] == "audio/mpeg"  # the default, sent whole


def test_stream_true_without_a_format_streams_wav_as_before_mp3_became_the_default(client):
    """`stream: true` is this server's own flag, and its clients were sent wav by default; with mp3 the default (sent
    whole) such requests got a 400. Without a format they stream wav; an explicit mp3 with it still gets the 400."""
    body = {"model": "m", "input": "hello there", "seed": 4, "stream": True}
    content, headers = streamed(client, body)
    assert headers["streamed"] and headers["content-type"] == "audio/wav"
    assert content.startswith(streaming_wav_header(SR))
    refused = client.post(SPEECH, json={**body, "response_format": "mp3"})
    assert refused.status_code == 400 and "stream needs response_format" in refused.json()["error"]["message"]


def test_mp3_is_the_default_and_opus_streams(client):
    body = {"model": "m", "input": "hello there", "seed": 6}
    wav = samples(client.post(SPEECH, json={**body, "response_format": "wav"}).content)
    mp3 = client.post(SPEECH, json=body)  # no response_format: OpenAI's default
    assert mp3.headers["content-type"] == "audio/mpeg" and mp3.headers["x-sample-rate"] == str(SR)
    assert mp3.content[:3] == b"ID3" or mp3.content[0] == 0xFF  # an MPEG audio stream, not a WAV
    opus = client.post(SPEECH, json={**body, "response_format": "opus"})
    assert opus.headers["content-type"] == "audio/ogg" and opus.content.startswith(b"OggS")
    for content, floor in ((mp3.content, 0.9), (opus.content, 0.95)):
        audio, rate = sf.read(io.BytesIO(content), dtype="int16")
        assert rate == SR and len(audio) == len(wav)  # lossy, but the same audio
        assert np.corrcoef(audio.astype(float), wav.astype(float))[0, 1] > floor
    content, headers = streamed(client, {**body, "response_format": "opus", "stream_format": "audio"})
    assert headers["streamed"] and headers["content-type"] == "audio/ogg"
    np.testing.assert_array_equal(samples(content), samples(opus.content))  # decodes to the file's audio


def test_a_format_the_installed_libsndfile_cannot_encode_is_refused(client, monkeypatch):
    formats = {name: text for name, text in sf.available_formats().items() if name != "MP3"}
    monkeypatch.setattr(sf, "available_formats", lambda: formats)
    default = client.post(SPEECH, json={"model": "m", "input": "hello there"})
    assert_error(default, 400, "response_format", "'mp3' (the default", "libsndfile", "cannot encode", "wav")
    assert_error(client.post(SPEECH, json={"model": "m", "input": "hi", "response_format": "MP3"}), 400,
                 "response_format", "cannot encode")  # fmt: skip
    assert client.post(SPEECH, json={"model": "m", "input": "hi", "response_format": "opus"}).status_code == 200


def test_concurrent_requests_are_batched_and_equal_separate_calls(pipe):
    texts, seeds = ["hello there", "a much longer second text"], [21, 22]
    with make_client(pipe, batch_wait_ms=2000, max_batch_size=2) as client:

        def send(i):
            body = {"model": "m", "input": texts[i], "seed": seeds[i], "response_format": "wav"}
            return client.post(SPEECH, json=body)

        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(send, range(2)))
        stats = client.get("/health").json()["stats"]
    assert [r.headers["x-batch-size"] for r in responses] == ["2", "2"]
    assert stats["batches"] == 1 and stats["largest_batch"] == 2
    for response, text, seed in zip(responses, texts, seeds, strict=True):
        expected = expected_pcm(pipe, text, seed)
        got = samples(response.content)
        assert len(got) == len(expected)
        assert np.abs(got.astype(int) - expected).max() <= 2  # batching rounds differently by ~1e-6


def test_a_bad_text_in_a_batch_fails_only_its_own_request(pipe):
    with make_client(pipe, batch_wait_ms=2000, max_batch_size=2) as client:
        bodies = [{"model": "m", "input": "hello there", "seed": 1}, {"model": "m", "input": "你好", "seed": 2}]
        with ThreadPoolExecutor(2) as pool:
            good, bad = pool.map(lambda body: client.post(SPEECH, json=body), bodies)
    assert good.status_code == 200
    assert_error(bad, 400, "input", "Han script")


# ----------------------------------------------------------------------------------------------------------------------
# a request's warnings: X-Warnings

# 50 characters take over a second to say; speech that the model ends after 4 patches (0.016 s) skipped most of it
LONG_TEXT = "hello there, this is a much longer sentence to say"


class StopEveryFourthPatch(torch.nn.Module):
    """Stop head that ends every row at the 4th patch of each generation: its calls are counted across calls, and each
    generation makes 4 of them (the tiny model's derived patch caps are larger). 4 patches are 8 frames: 0.016 s of
    speech by the pipeline's count of frames, where the vocoder makes 7 hops (0.014 s) of audio out of them."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, hidden):
        self.calls += 1
        return torch.full((hidden.shape[0], 1), 30.0 if self.calls % 4 == 0 else -30.0)


@pytest.fixture(scope="module")
def stopping_pipe():
    """A tiny pipeline whose model ends its speech itself, after 4 patches (the plain tiny model never does: every
    text runs to its patch cap, with the pipeline's warning)."""
    pipe = get_dummy_pipeline()
    pipe.model.stop_head = StopEveryFourthPatch()
    return pipe


def request_warnings(response) -> list[str] | None:
    """The X-Warnings of a response, as a client reads them (None without the header)."""
    assert response.status_code == 200, response.text
    value = response.headers.get("X-Warnings")
    return None if value is None else json.loads(value)


def lone_call_warnings(pipe, text: str, seed: int, caplog, **settings) -> list[str]:
    """What a Python call `pipe(text, voice=...)` logs at WARNING for `text` in the server's default voice, with the
    sampling of a server started with `settings`."""
    voice = create_app(pipe).state.voices.get("default").processed
    sampling = ServerSettings(**settings).sampling()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        pipe(text, voice=voice, generator=torch.Generator().manual_seed(seed), **sampling)
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_what_the_checks_of_an_upload_warn_of_is_in_the_voices_notes(client):
    """A transcript with a character the text front end cannot read uploaded as a 201 whose notes said nothing: the
    warning reached only the server's console."""
    response = upload(client, wav_bytes(tone(0.06, freq=310.0)), "the \N{SNOWMAN} prompt")
    assert response.status_code == 201, response.text
    notes = response.json()["notes"]
    assert len(notes) == 1 and "\N{SNOWMAN}" in notes[0] and "the \N{SNOWMAN} prompt" in notes[0], notes
    assert "prompt_text" not in notes[0]  # in the form's field names
    clean = upload(client, wav_bytes(tone(0.06, freq=320.0)), "the prompt")
    assert clean.json()["notes"] == []


def test_speech_far_shorter_than_its_text_is_said_in_x_warnings(stopping_pipe, caplog):
    """A model that ends the speech after a fraction of its text (a voice whose transcript does not match its
    recording does that) gave a 200 with the wrong audio and no sign of it: the warning the pipeline logged reached
    only the server's console. A streamed answer sends its headers before the speech exists: none there."""
    body = {"model": "m", "input": LONG_TEXT, "seed": 3, "response_format": "wav"}
    with make_client(stopping_pipe) as client:
        response = client.post(SPEECH, json=body)
        stream = client.post(SPEECH, json={**body, "stream": True})
    warnings = request_warnings(response)
    assert warnings == lone_call_warnings(stopping_pipe, LONG_TEXT, 3, caplog)
    assert len(warnings) == 1 and warnings[0].startswith("The text ended much shorter than it can be spoken (0.02 s")
    assert response.headers["X-Stopped"] == "true"
    assert stream.status_code == 200 and "X-Warnings" not in stream.headers


def test_a_character_the_text_front_end_cannot_read_is_said_in_x_warnings(stopping_pipe, caplog):
    text = "hi \N{SNOWMAN} there"
    with make_client(stopping_pipe) as client:
        response = client.post(SPEECH, json={"model": "m", "input": text, "seed": 5, "response_format": "wav"})
    assert response.headers["X-Warnings"].isascii()  # the snowman as JSON's \u2603: HTTP headers are latin-1
    warnings = request_warnings(response)
    assert warnings == lone_call_warnings(stopping_pipe, text, 5, caplog)
    assert warnings == [f"1 character(s) of the text {text!r} are not in the vocabulary: '\N{SNOWMAN}' (U+2603) x1; "
                        "they are mapped to <unk>."]  # fmt: skip


def test_only_a_request_with_warnings_has_x_warnings(pipe, stopping_pipe):
    body = {"model": "m", "input": "hi there", "seed": 1, "response_format": "wav"}
    with make_client(stopping_pipe) as client:
        assert request_warnings(client.post(SPEECH, json=body)) is None  # ended by the model, long enough: nothing
    with make_client(pipe) as client:  # the plain tiny model never stops: the patch cap ends every text
        (cut,) = request_warnings(client.post(SPEECH, json=body))
    assert cut.startswith("The text did not end on its own: the patch cap derived from the text length ended it")


def test_batched_requests_each_get_their_own_warnings_and_no_other(stopping_pipe, caplog, monkeypatch):
    """The pipeline warns of a batch's rows by their place in it ("Text 0 of the batch ...", "`text[1]` ..."): each
    request gets the warnings a call of its text alone logs, which it also gets when it runs alone; the console prints
    the batch's own warnings once."""
    texts = [LONG_TEXT, "hi \N{SNOWMAN} there", "hi there"]
    bodies = [{"model": "m", "input": text, "seed": seed, "response_format": "wav"} for seed, text in enumerate(texts)]
    with make_client(stopping_pipe, max_batch_size=1) as client:
        alone = [request_warnings(client.post(SPEECH, json=body)) for body in bodies]
    expected = [lone_call_warnings(stopping_pipe, text, seed, caplog) or None for seed, text in enumerate(texts)]
    assert alone == expected and [len(w or []) for w in alone] == [1, 1, 0]
    # nothing configured logging (pytest's own handlers set aside): Python prints warnings with its last resort
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    console = io.StringIO()
    monkeypatch.setattr(logging, "lastResort", logging.StreamHandler(console))
    with make_client(stopping_pipe, batch_wait_ms=2000, max_batch_size=3) as client:
        with ThreadPoolExecutor(3) as pool:
            responses = list(pool.map(lambda body: client.post(SPEECH, json=body), bodies))
    assert [r.headers["X-Batch-Size"] for r in responses] == ["3", "3", "3"]
    assert [request_warnings(r) for r in responses] == alone
    # in the batch's words, each once (the rows are in the order the requests came)
    printed = sorted(re.sub(r"\d of the batch|`text\[\d\]`", "ROW", line) for line in console.getvalue().splitlines())
    assert len(printed) == 2 and printed[0].startswith("1 character(s) of the text of ROW 'hi \N{SNOWMAN} there'")
    assert printed[1].startswith("Text ROW ended much shorter than it can be spoken (0.02 s")


def test_a_warning_about_the_whole_call_reaches_every_request_of_its_batch(stopping_pipe, caplog):
    """A warning about the call's settings (here the server's --guidance-scale below 1) is each request's, alone or
    batched."""
    bodies = [{"model": "m", "input": text, "seed": 4, "response_format": "wav"} for text in ("hi there", "good day")]
    with make_client(stopping_pipe, guidance_scale=0.5, batch_wait_ms=2000, max_batch_size=2) as client:
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(lambda body: client.post(SPEECH, json=body), bodies))
    (expected,) = lone_call_warnings(stopping_pipe, "hi there", 4, caplog, guidance_scale=0.5)
    assert expected.startswith("guidance_scale=0.5 is below 1")
    assert [r.headers["X-Batch-Size"] for r in responses] == ["2", "2"]
    assert [request_warnings(r) for r in responses] == [[expected], [expected]]


def test_the_warnings_header_is_ascii_json_of_bounded_size():
    assert warnings_header([]) is None
    assert json.loads(warnings_header(['a "quoted"\nline \N{SNOWMAN}'])) == ['a "quoted"\nline \N{SNOWMAN}']
    long = "\N{GRINNING FACE}" * 500  # 12 escaped characters each
    (shortened,) = json.loads(warnings_header([long]))
    assert shortened.endswith("...") and len(json.dumps(shortened)) <= MAX_WARNING_CHARS
    many = [f"warning {i}: " + "x" * 400 for i in range(10)]
    value = warnings_header(many)
    assert value.isascii() and len(value) <= MAX_WARNINGS_HEADER_CHARS
    shown = json.loads(value)
    assert shown[:-1] == many[: len(shown) - 1] and len(shown) > 2
    assert shown[-1] == f"{len(many) - len(shown) + 1} more warnings left out of this header; the server's log has them"


# ----------------------------------------------------------------------------------------------------------------------
# malformed requests


@pytest.mark.parametrize(
    ("body", "status", "param", "words"),
    [
        ({"input": "hi"}, 400, "model", ["model", "required"]),
        ({"model": "m"}, 400, "input", ["input", "required"]),
        ({"model": "m", "input": 123}, 400, "input", ["input", "string"]),
        ({"model": "m", "input": "hi", "stream": "yes"}, 400, "stream", ["stream"]),
        ({"model": "m", "input": "hi", "speed": "fast"}, 400, "speed", ["speed"]),
        ({"model": "m", "input": "hi", "voice": 5}, 400, "voice", ["voice"]),
        ({"model": "m", "input": "hi", "temprature": 1}, 400, "temprature", ["temprature", "unknown field"]),
        ({"model": "m", "input": "   "}, 400, "input", ["input is empty"]),
        ({"model": "", "input": "hi"}, 400, "model", ["model is empty"]),
        ({"model": "m", "input": "x" * 1001}, 413, "input", ["1001 characters", "limit of 1000"]),
        ({"model": "m", "input": "hi", "voice": "nobody"}, 400, "voice", ["unknown voice 'nobody'", "'default'"]),
        ({"model": "m", "input": "hi", "response_format": "aac"}, 400, "response_format", ["'aac'", "mp3, opus, wav"]),
        ({"model": "m", "input": "hi", "speed": 1.5}, 400, "speed", ["speed 1.5", "1.0 only"]),
        ({"model": "m", "input": "hi", "stream": True, "response_format": "flac"}, 400, "response_format", ["stream"]),
        (
            {"model": "m", "input": "hi", "stream": True, "response_format": "flac", "stream_format": "audio"},
            400,
            "response_format",
            ["wav, pcm or opus", "'flac' is sent whole"],
        ),
        (
            {"model": "m", "input": "hi", "stream": True, "response_format": "mp3"},
            400,
            "response_format",
            ["'mp3'", "sent whole"],
        ),
        ({"model": "m", "input": "hi", "stream_format": "sse"}, 400, "stream_format", ["'sse'"]),
        ({"model": "m", "input": "hi", "instructions": "whisper"}, 400, "instructions", ["instructions"]),
        ({"model": "m", "input": "hi", "seed": -1}, 400, "seed", ["seed"]),
        ({"model": "m", "input": "Ни слова"}, 400, "input", ["Cyrillic"]),
        ({"model": "m", "input": "你好", "stream": True, "response_format": "pcm"}, 400, "input", ["Han script"]),
    ],
)
def test_malformed_speech_requests(client, body, status, param, words):
    assert_error(client.post(SPEECH, json=body), status, param, *words)


def test_malformed_bodies(client):
    headers = {"Content-Type": "application/json"}
    assert_error(client.post(SPEECH, content=b'{"model": "m", "input": ', headers=headers), 400, None, "not valid JSON")
    assert_error(client.post(SPEECH, content=b"[1, 2]", headers=headers), 400, None, "valid dictionary")
    assert_error(client.post(SPEECH, content=b"x" * 100_000, headers=headers), 413, None, "over this server's limit")
    assert_error(client.get("/v1/nothing"), 404, None, "Not Found")
    assert_error(client.get(SPEECH), 405, None, "Method Not Allowed")
    assert_error(client.post(SPEECH, content=b"", headers=headers), 400, None, "body is empty")
    body = json.dumps({"model": "m", "input": "hi"}).encode()
    plain = client.post(SPEECH, content=body, headers={"Content-Type": "text/plain"})
    assert_error(plain, 415, None, "Content-Type: application/json", "text/plain")
    assert_error(client.post(SPEECH, content=body), 415, None, "no Content-Type")
    assert client.post(SPEECH, json={"model": "m", "input": "hi", "speed": 1}).status_code == 200  # 1 is 1.0


def test_an_upload_of_many_channels_at_a_high_rate_is_refused_before_decoding(pipe):
    """Within 60 s, many channels at a high rate decoded to gigabytes (a small FLAC of silence); 60 s of ordinary
    stereo is still taken."""
    big, ordinary = io.BytesIO(), io.BytesIO()
    sf.write(big, np.zeros((16 * 192_000, 8), np.float32), 192_000, format="FLAC")
    sf.write(ordinary, np.zeros((40 * 96_000, 2), np.float32), 96_000, format="FLAC")
    with make_client(pipe) as client:
        assert_error(upload(client, big.getvalue()), 413, "audio", "8 channels at 192000 Hz")
        assert "8 channels" not in upload(client, ordinary.getvalue()).text  # refused later: it is silent


def test_malformed_voice_uploads(pipe):
    with make_client(pipe, max_upload_bytes=20_000) as client:
        assert_error(upload(client, b"not audio at all"), 400, "audio", "could not decode")
        assert_error(upload(client, wav_bytes(np.zeros(800, np.float32))), 400, "audio", "silent")
        assert_error(upload(client, wav_bytes(tone(0.002))), 400, "audio", "shorter than the model needs")
        assert_error(upload(client, wav_bytes(tone(0.06)), text=None), 400, "text", "missing", "--asr-model")
        assert_error(upload(client, wav_bytes(tone(0.06)), text="  "), 400, "text", "empty")
        assert_error(upload(client, wav_bytes(tone(0.06)), text="你好"), 400, "text", "Han script")
        assert_error(client.post("/v1/voices", data={"text": "the prompt"}), 400, "audio", "required")
        assert_error(upload(client, b""), 400, "audio", "empty")
        big = wav_bytes(tone(2.0))  # 32 kB of 16-bit samples
        assert_error(upload(client, big), 413, None, "over this server's limit of 20000 bytes", "--max-upload-mb")
        # a compressed file that would decode to minutes is refused from its header, before any sample is decoded
        long_silence = wav_bytes(np.zeros(61 * SR, np.float32), format="FLAC")
        assert len(long_silence) < 20_000
        assert_error(upload(client, long_silence), 413, "audio", "61 s long; upload at most 60 s")
        assert "BytesIO" not in upload(client, b"RIFF" + b"x" * 100).json()["error"]["message"]
        assert_error(upload(client, wav_bytes(spoken(1.2)), text="a"), 400, "text", "far below human speech")
        hiss = np.random.default_rng(0).normal(0.0, 0.002, SR * 2).astype(np.float32)  # 2 s, quiet: a small FLAC
        assert_error(
            upload(client, wav_bytes(hiss, format="FLAC"), text="a clip of hiss"), 400, "audio", "not sound like speech"
        )
        assert_error(upload(client, wav_bytes(tone(0.06)), name="n" * 101), 400, "name", "at most 100")
        # "alloy" would be listed, but voice="alloy" speaks the built-in default
        assert_error(upload(client, wav_bytes(tone(0.06)), name="Alloy"), 400, "name", "built-in default voice")
        silent = upload(client, wav_bytes(np.zeros(800, np.float32))).json()["error"]["message"]
        assert "prompt_" not in silent and silent.startswith("audio:")  # the form's field names
        assert upload(client, wav_bytes(tone(0.06))).status_code == 201
        assert client.get("/health").json()["status"] == "ok"


def test_chunked_upload_over_the_limit_is_413(pipe):
    with make_client(pipe, max_upload_bytes=1000) as client:

        def chunks():
            for _ in range(10):
                yield b"y" * 500

        response = client.post("/v1/voices", content=chunks(), headers={"Content-Type": "multipart/form-data"})
    assert_error(response, 413, None, "over this server's limit of 1000 bytes")


# ----------------------------------------------------------------------------------------------------------------------
# the API key

KEY = "sk-test-Key_0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def keyed(pipe):
    with make_client(pipe, api_key=KEY) as client:
        yield client


def keyed_requests(client, headers):
    """One request of each kind, all sent with `headers`."""
    speech = {"model": "m", "input": "hello there", "seed": 1}
    yield "speech", client.post(SPEECH, json=speech, headers=headers)
    streaming = {**speech, "stream": True, "response_format": "pcm"}
    with client.stream("POST", SPEECH, json=streaming, headers=headers) as streamed:
        streamed.read()
        yield "stream", streamed
    yield "upload", upload(client, wav_bytes(tone(0.06)), headers=headers)
    yield "list", client.get("/v1/voices", headers=headers)
    yield "delete", client.delete("/v1/voices/voice_0123456789abcdef", headers=headers)
    yield "unknown path", client.get("/v1/nothing", headers=headers)


def test_without_a_key_the_server_asks_for_none(client):
    for headers in (None, {"Authorization": "Bearer anything"}, {"Authorization": "Basic eDp5"}):
        assert client.get("/v1/voices", headers=headers).status_code == 200
        assert client.post(SPEECH, json={"model": "m", "input": "hi"}, headers=headers).status_code == 200
    assert "securitySchemes" not in client.get("/openapi.json").json().get("components", {})


@pytest.mark.parametrize(
    "headers, words",
    [
        ({}, "requires an API key"),
        ({"Authorization": "Bearer sk-test-wrong-guess"}, "not this server's"),
        ({"Authorization": f"Bearer {KEY}x"}, "not this server's"),
        ({"Authorization": f"Basic {KEY}"}, "not of the form 'Bearer <key>'"),
        ({"Authorization": "Bearer"}, "not of the form 'Bearer <key>'"),
        ({"Authorization": "Bearer   "}, "not of the form 'Bearer <key>'"),
        ({"Authorization": KEY}, "not of the form 'Bearer <key>'"),
        ({"Authorization": "Bearer sk-t\xe9st".encode("latin-1")}, "not this server's"),  # non-ASCII: 401, not 500
    ],
    ids=["missing", "wrong", "longer", "basic", "scheme-only", "blank", "no-scheme", "non-ascii"],
)
def test_a_request_without_the_key_gets_401_in_openai_s_shape(keyed, headers, words):
    for kind, response in keyed_requests(keyed, headers):
        assert_error(response, 401, None, words, "Bearer <key>")
        assert response.headers["www-authenticate"] == "Bearer", kind
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key"), kind
        sent = headers.get("Authorization", b"")
        sent = sent.decode("latin-1") if isinstance(sent, bytes) else sent
        for word in set(sent.split()) - {"Bearer", "Basic"}:
            assert word not in response.text, (kind, response.text)  # the key sent is never echoed
        assert KEY not in response.text
    assert keyed.app.state.scheduler.stats == {"requests": 0, "batches": 0, "batched_rows": 0, "largest_batch": 0,
                                               "streams": 0}  # fmt: skip
    assert [v["id"] for v in keyed.get("/v1/voices", headers=AUTH).json()["data"]] == ["default"]  # nothing uploaded


def test_the_right_key_opens_every_route(keyed, pipe):
    speech = {"model": "m", "input": "hello there", "seed": 7, "response_format": "pcm"}
    response = keyed.post(SPEECH, json=speech, headers=AUTH)
    assert response.status_code == 200, response.text
    wav = keyed.post(SPEECH, json={**speech, "response_format": "wav"}, headers=AUTH)
    np.testing.assert_array_equal(samples(wav.content), expected_pcm(pipe, "hello there", 7))
    with keyed.stream("POST", SPEECH, json={**speech, "stream": True}, headers=AUTH) as streamed:
        assert streamed.status_code == 200
        assert b"".join(streamed.iter_bytes()) == response.content
    lower = {"Authorization": f"bearer  {KEY}"}  # the scheme is case-insensitive (RFC 7235)
    voice = upload(keyed, wav_bytes(tone(0.06, freq=300.0)), name="mine", headers=lower)
    assert voice.status_code == 201, voice.text
    voice_id = voice.json()["id"]
    assert voice_id in [v["id"] for v in keyed.get("/v1/voices", headers=AUTH).json()["data"]]
    assert_error(keyed.delete(f"/v1/voices/{voice_id}"), 401, None, "requires an API key")
    assert keyed.delete(f"/v1/voices/{voice_id}", headers=AUTH).json()["deleted"] is True
    assert keyed.get("/v1/voices/", headers=AUTH).json()["data"][0]["id"] == "default"  # a trailing slash too
    assert_error(keyed.get("/v1/voices/"), 401, None, "requires an API key")


def test_health_and_the_api_docs_need_no_key(keyed):
    assert keyed.get("/health").status_code == 200 and keyed.get("/health/").status_code == 200
    assert keyed.get("/docs").status_code == 200 and keyed.get("/redoc").status_code == 200
    schema = keyed.get("/openapi.json").json()
    # the docs page's "Authorize" button sends the key to the routes that need it
    assert schema["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": "the server's --api-key"
    }  # fmt: skip
    assert schema["paths"]["/v1/audio/speech"]["post"]["security"] == [{"apiKey": []}]
    assert schema["paths"]["/v1/voices/{voice_id}"]["delete"]["security"] == [{"apiKey": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert keyed.get("/openapi.json").json() == schema  # built once


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(pipe):
    """The key is checked before the body-size limit reads the body: a 10 MB upload without the key is neither
    buffered nor decoded."""
    app = create_app(pipe, ServerSettings(api_key=KEY))
    received, sent = [], []

    async def receive():
        received.append(True)
        return {"type": "http.request", "body": b"x" * (10 * 1024 * 1024), "more_body": False}

    async def send(message):
        sent.append(message)

    headers = [
        (b"content-type", b"multipart/form-data; boundary=x"),
        (b"content-length", str(10 * 1024 * 1024).encode()),
    ]
    scope = {"type": "http", "method": "POST", "path": "/v1/voices", "raw_path": b"/v1/voices", "query_string": b"",
             "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("test", 80),
             "client": ("test", 1), "root_path": "", "asgi": {"version": "3.0"}}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401 and received == []


def test_the_settings_repr_does_not_show_the_key():
    settings = ServerSettings(api_key="s3cret")
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    assert settings.api_key == "s3cret"


def test_settings_refuse_an_empty_key():
    for empty in ("", "  "):
        with pytest.raises(ValueError, match="api_key is empty"):
            ServerSettings(api_key=empty)


@pytest.mark.parametrize(
    "host, key, warns",
    [
        ("0.0.0.0", None, True),
        ("::", None, True),
        ("192.168.1.20", None, True),
        ("myhost.example", None, True),
        ("0.0.0.0", KEY, False),
        ("127.0.0.1", None, False),
        ("127.0.0.2", None, False),
        ("::1", None, False),
        ("localhost", None, False),
    ],
)
def test_a_server_others_can_reach_without_a_key_warns_at_start(pipe, monkeypatch, caplog, host, key, warns):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.append(options))
    with caplog.at_level("WARNING", logger="ditar.server"):
        run(pipe, ServerSettings(api_key=key), host=host, port=8123)
    assert served and served[0]["host"] == host
    warnings = [r.getMessage() for r in caplog.records if r.name == "ditar.server" and r.levelname == "WARNING"]
    if warns:
        assert len(warnings) == 1, warnings
        for words in (f"{host}:8123 without an API key", "upload or delete voices", "--api-key", "DITAR_API_KEY"):
            assert words in warnings[0]
    else:
        assert warnings == []


def test_the_command_takes_the_key_from_its_option_or_the_environment(capsys):
    parse = cli.build_parser().parse_args
    assert cli.server_settings(parse(["serve"]), environ={}).api_key is None
    assert cli.server_settings(parse(["serve"]), environ={"DITAR_API_KEY": KEY}).api_key == KEY
    keyed = parse(["serve", "--api-key", "from-the-option"])
    assert cli.server_settings(keyed, environ={"DITAR_API_KEY": KEY}).api_key == "from-the-option"  # the option wins
    for argv, environ, words in [
        (["serve", "--api-key", ""], {}, "--api-key is empty"),
        (["serve", "--api-key", " "], {"DITAR_API_KEY": KEY}, "--api-key is empty"),
        (["serve"], {"DITAR_API_KEY": ""}, "the DITAR_API_KEY environment variable is empty"),
        (["serve", "--api-key", f"{KEY} "], {}, "ends with whitespace"),
        (["serve", "--api-key", "cl\xe9"], {}, "printable ASCII"),
    ]:
        with pytest.raises(cli.UsageError, match=words):
            cli.server_settings(parse(argv), environ=environ)
    assert cli.main(["serve", "--api-key", ""]) == 2  # refused before the model loads
    assert "--api-key is empty" in capsys.readouterr().err
    assert cli.main(["serve", "--help"]) == 0
    assert "DITAR_API_KEY" in " ".join(capsys.readouterr().out.split())


# ----------------------------------------------------------------------------------------------------------------------
# queue, timeouts and shutdown


def block_worker(app) -> threading.Event:
    """Occupy the model's worker thread until the returned event is set."""
    release = threading.Event()
    app.state.scheduler.executor.submit(release.wait, 30)
    return release


def wait_until(condition, seconds: float = 10.0):
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def test_queue_full_answers_429(pipe):
    with make_client(pipe, max_queue=1, batch_wait_ms=0) as client:
        release = block_worker(client.app)
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.post, SPEECH, json={"model": "m", "input": "hello there"})
            wait_until(lambda: client.app.state.scheduler.pending == 1)
            full = client.post(SPEECH, json={"model": "m", "input": "hello there"})
            stream = client.post(SPEECH, json={"model": "m", "input": "hello there", "stream_format": "audio",
                                               "response_format": "wav"})  # fmt: skip
            release.set()
            assert first.result().status_code == 200
    assert_error(full, 429, None, "queue is full")
    assert full.headers["retry-after"] == "1"
    assert_error(stream, 429, None, "queue is full")


def test_request_timeout_answers_504_and_its_job_is_dropped(pipe):
    with make_client(pipe, request_timeout=0.3) as client:
        release = block_worker(client.app)
        late = client.post(SPEECH, json={"model": "m", "input": "hello there"})
        release.set()
        wait_until(lambda: client.app.state.scheduler.pending == 0)
        assert client.post(SPEECH, json={"model": "m", "input": "hello there"}).status_code == 200
        stats = client.get("/health").json()["stats"]
    assert_error(late, 504, None, "timeout of 0.3 s")
    assert stats["batches"] == 1  # the timed-out request never ran


def test_shutdown_finishes_running_work_then_cancels_the_rest(pipe):
    voice = create_app(pipe).state.voices.get("default")

    async def finish():
        scheduler = BatchScheduler(pipe, ServerSettings(batch_wait_ms=0))
        scheduler.start()
        tasks = [asyncio.ensure_future(scheduler.synthesize(t, voice, 0)) for t in ("hello there", "good bye")]
        await asyncio.sleep(0)
        await scheduler.close(timeout=30)
        results = [await t for t in tasks]
        with pytest.raises(ShuttingDown):
            await scheduler.synthesize("too late", voice, 0)
        return results

    results = asyncio.run(finish())
    assert all(len(r.audio) > 0 for r in results)

    async def cancel():
        scheduler = BatchScheduler(pipe, ServerSettings(batch_wait_ms=0, max_batch_size=1))
        scheduler.start()
        release = threading.Event()
        scheduler.executor.submit(release.wait, 30)
        tasks = [asyncio.ensure_future(scheduler.synthesize(t, voice, 0)) for t in ("hello there", "good bye")]
        await asyncio.sleep(0.05)  # the first is taken into a batch (waiting for the worker), the second is queued
        assert scheduler.pending == 2
        threading.Timer(0.5, release.set).start()
        started = time.monotonic()
        await scheduler.close(timeout=0.1)
        return await asyncio.gather(*tasks, return_exceptions=True), time.monotonic() - started

    outcomes, seconds = asyncio.run(cancel())
    assert all(isinstance(outcome, ShuttingDown) for outcome in outcomes), outcomes
    assert seconds < 5


def test_shutdown_stops_a_running_batch_at_its_next_patch(pipe):
    voice = create_app(pipe).state.voices.get("default")
    calls = []

    def slow(*args):  # every LocDiT call takes 20 ms: the batch runs for seconds
        calls.append(1)
        time.sleep(0.02)

    async def run():
        scheduler = BatchScheduler(pipe, ServerSettings(batch_wait_ms=0))
        scheduler.start()
        task = asyncio.ensure_future(scheduler.synthesize("a long text to speak " * 8, voice, 0))
        while not calls:
            await asyncio.sleep(0.01)
        await scheduler.close(timeout=0)
        return await asyncio.gather(task, return_exceptions=True), len(calls)

    hook = pipe.model.locdit.register_forward_hook(slow)
    try:
        (outcome,), count = asyncio.run(run())
    finally:
        hook.remove()
    assert isinstance(outcome, ShuttingDown), outcome
    assert count < 20  # stopped early, not after all of its patches


# ----------------------------------------------------------------------------------------------------------------------
# the command line


def test_serve_help_and_argument_errors_do_not_load_torch():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    launcher = [sys.executable, "-X", "importtime", "-m", "modeling_ditar.cli"]
    for argv, status, words in [
        (["serve", "--help"], 0, "POST /v1/audio/speech"),
        (["serve", "--port", "70000"], 2, "--port: expected an integer in [1, 65535]"),
        (["serve", "--max-batch-size", "0"], 2, "--max-batch-size"),
        (["serve", "--model", "./no/such/folder"], 2, "--model: no such folder"),
        (["serve", "--api-key", ""], 2, "--api-key is empty"),
    ]:
        result = subprocess.run([*launcher, *argv], capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == status, (argv, result.stderr[-2000:])
        assert "torch" not in _imported_modules(result.stderr) and "fastapi" not in _imported_modules(result.stderr)
        messages = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("import time:"))
        assert words in result.stdout + messages, (argv, result.stdout, messages)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_on_loopback(tmp_path, stop):
    """The real command: start `ditar serve` with the tiny pipeline saved to a folder, synthesise, stop with Ctrl-C
    (SIGINT) or SIGTERM (a service manager's, a container's stop): a clean shutdown either way, exit status 0."""
    folder = tmp_path / "tiny"
    get_dummy_pipeline().save_pretrained(folder)
    port = 8000 + os.getpid() % 1000
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [str(Path(sys.executable).with_name("ditar")), "serve", "--model", str(folder), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        import httpx

        end = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < end, server.stdout.read() if server.poll() else ""
            time.sleep(0.2)
        response = httpx.post(f"http://127.0.0.1:{port}{SPEECH}", json={"model": "m", "input": "hello"}, timeout=30)
        assert response.status_code == 200 and decode(response.content)[1] == SR
        assert response.headers["content-type"] == "audio/mpeg"  # OpenAI's default format
        json_type = {"Content-Type": "application/json"}
        bad = httpx.post(f"http://127.0.0.1:{port}{SPEECH}", content=b"{", headers=json_type, timeout=30)
        assert bad.status_code == 400 and "error" in json.loads(bad.content)
    finally:
        server.send_signal(stop)
        output = server.communicate(timeout=60)[0]
    assert server.returncode == 0, output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--clients", "0"], "--clients 0: give a number above 0"),  # sent nothing and passed
        (["--seconds", "-5"], "--seconds -5: give a number above 0"),
        (["--timeout", "0"], "--timeout 0: give a number above 0"),  # every request 'lost' as if the server failed
        (["--serve-args=--candidates 4"], "--serve-args only applies with --spawn"),  # silently ignored
        (["--json", "/no/such/dir/r.json"], "the folder /no/such/dir does not exist"),  # failed after the whole test
    ],
)
def test_load_test_arguments_that_would_test_nothing_are_refused(argv, message, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    import load_test

    with pytest.raises(SystemExit):
        load_test.main(argv)
    assert message in capsys.readouterr().err


def test_load_test_sends_the_api_key_of_its_environment(monkeypatch):
    """A server started with DITAR_API_KEY (or spawned by the load test, which inherits it) requires the key: the
    load test's requests send it, and none without the variable."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    import load_test

    monkeypatch.delenv("DITAR_API_KEY", raising=False)
    assert load_test.auth_headers() == {}
    monkeypatch.setenv("DITAR_API_KEY", "s3cret")
    assert load_test.auth_headers() == {"Authorization": "Bearer s3cret"}

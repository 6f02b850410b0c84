"""Voice prompts without a transcript: `PromptTranscriber` (a transformers speech recognition model or a function),
`DiTARPipeline.enable_prompt_transcription`, `ditar synthesize` without --prompt-text and the server's uploads without
text. A tiny random Whisper saved to a folder serves the transformers path; a function with a known transcript serves
the pipeline, whose audio must equal the audio made with that transcript given by hand."""

from __future__ import annotations

import io
import json
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import torch
from pipeline_helpers import SR, get_dummy_pipeline, spoken, tone, write_wav

from modeling_ditar import PromptTranscriber, cli, prompt_audio
from modeling_ditar import prompt_transcription as transcription
from modeling_ditar.prompt_audio import MAX_PROMPT_SECONDS
from modeling_ditar.prompt_transcription import compression_ratio, transcribe_prompt

HEARD = "a test voice"
PROMPT = spoken(1.6)
LOOP = "and you will not have any film " * 20


def tiny_whisper_folder(folder) -> str:
    """A 1-layer Whisper of 16 dims with a byte-level tokenizer and a multilingual generation config, saved as
    transformers saves one (model, tokenizer, feature extractor)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    special = [
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|en|>",
        "<|de|>",
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nocaptions|>",
        "<|notimestamps|>",
    ]
    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    for token in special:
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    ids = {t: vocab[t] for t in special}
    end, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(vocab),
        num_mel_bins=8,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_target_positions=64,
        pad_token_id=end,
        bos_token_id=end,
        eos_token_id=end,
        decoder_start_token_id=start,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start,
        eos_token_id=end,
        pad_token_id=end,
        max_length=12,
        lang_to_id={"<|en|>": ids["<|en|>"], "<|de|>": ids["<|de|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        is_multilingual=True,
    )
    target = folder / "whisper"
    model.save_pretrained(target)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=8), tokenizer).save_pretrained(target)
    return str(target)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return tiny_whisper_folder(tmp_path_factory.mktemp("asr"))


@pytest.fixture(scope="module")
def pipe():
    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Heard:
    """A transcriber function that hears `text` and counts its calls."""

    def __init__(self, text: str = HEARD):
        self.text, self.calls, self.lengths = text, 0, []

    def __call__(self, audio: np.ndarray, sampling_rate: int) -> str:
        assert audio.dtype == np.float32 and audio.ndim == 1
        self.calls += 1
        self.lengths.append(len(audio) / sampling_rate)
        return self.text


@pytest.fixture
def transcribing(pipe):
    heard = Heard()
    pipe.enable_prompt_transcription(heard)
    yield heard
    pipe.disable_prompt_transcription()


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------------------------------
# the transcriber


def test_a_transformers_whisper_folder_transcribes_with_the_language_and_a_length_bound(whisper_dir, monkeypatch):
    from transformers import AutomaticSpeechRecognitionPipeline

    transcriber = PromptTranscriber(whisper_dir)
    assert isinstance(transcriber._asr, AutomaticSpeechRecognitionPipeline)
    text = transcriber(spoken(2.0, sr=SR), SR)  # 8 kHz: resampled to Whisper's 16 kHz first
    assert isinstance(text, str)

    calls = []
    real_generate = transcriber._asr.model.generate

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(transcriber._asr.model, "generate", spy)
    transcriber(spoken(2.5, sr=SR), SR)
    assert calls[-1]["language"] == "en" and calls[-1]["task"] == "transcribe"
    assert calls[-1]["max_length"] == int(transcription._MAX_TOKENS_PER_SECOND * 2.5) + transcription._TOKEN_SLACK + 4
    untold = PromptTranscriber(transcriber._asr, language=None)
    untold(spoken(2.5, sr=SR, freq=200.0), SR)
    assert "language" not in calls[-1] and "task" not in calls[-1]


def test_a_looping_transcript_is_decoded_again_with_a_repetition_penalty(whisper_dir, monkeypatch):
    from transformers import AutomaticSpeechRecognitionPipeline

    transcriber = PromptTranscriber(whisper_dir)
    seen = []

    def fake_call(self, inputs, **kwargs):
        seen.append(kwargs["generate_kwargs"])
        assert inputs["sampling_rate"] == 16000
        return {"text": HEARD if "repetition_penalty" in kwargs["generate_kwargs"] else LOOP}

    monkeypatch.setattr(AutomaticSpeechRecognitionPipeline, "__call__", fake_call)
    assert transcriber(PROMPT, SR) == HEARD
    assert len(seen) == 2 and seen[1]["repetition_penalty"] > 1
    assert compression_ratio(LOOP) > transcription.LOOP_COMPRESSION_RATIO > compression_ratio(HEARD)


def test_transcripts_are_cached_by_audio(pipe):
    heard = Heard()
    transcriber = PromptTranscriber(heard)
    assert transcriber(PROMPT, SR) == transcriber(PROMPT.copy(), SR) == HEARD
    assert heard.calls == 1
    transcriber(PROMPT, SR * 2)  # the same samples at another rate are another clip
    assert heard.calls == 2
    # the cache keeps a digest of each clip, not the clip (32 long prompts would be kept whole)
    assert all(len(key) == 32 for key in transcriber._cache)


def test_transcriber_arguments_are_checked(tmp_path, whisper_dir):
    from transformers import WhisperForConditionalGeneration

    with pytest.raises(TypeError, match="Hub id or local folder"):
        PromptTranscriber(3)
    with pytest.raises(TypeError, match="WhisperForConditionalGeneration object; give its Hub id or folder"):
        PromptTranscriber(WhisperForConditionalGeneration.from_pretrained(whisper_dir))
    assert PromptTranscriber(whisper_dir, language=" English ").language == "en"
    with pytest.raises(ValueError, match="language='xx' is not a language Whisper knows"):
        PromptTranscriber(whisper_dir, language="xx")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        PromptTranscriber(str(tmp_path / "no-such-asr"))
    with pytest.raises(OSError, match="could not load the speech recognition model .*prompt's transcript instead"):
        PromptTranscriber(str(tmp_path))  # a folder, but no model in it
    with pytest.raises(ValueError, match="language"):
        PromptTranscriber(Heard(), language="")
    with pytest.raises(TypeError, match="must return the transcript as a string"):
        PromptTranscriber(lambda audio, rate: None)(PROMPT, SR)
    with pytest.raises(ValueError, match="one mono waveform"):
        PromptTranscriber(Heard())(np.stack([PROMPT, PROMPT]), SR)


def test_a_long_prompt_is_cut_at_a_pause_before_it_is_transcribed():
    heard = Heard()
    long_prompt = torch.from_numpy(spoken(MAX_PROMPT_SECONDS + 3.0))
    audio, text, message, cut_message = transcribe_prompt(PromptTranscriber(heard), long_prompt, SR)
    assert text == HEARD and heard.lengths == [len(audio) / SR]
    assert MAX_PROMPT_SECONDS / 2 <= len(audio) / SR <= MAX_PROMPT_SECONDS
    assert "cut at a pause" in cut_message and repr(HEARD) in message
    assert transcribe_prompt(PromptTranscriber(heard), torch.from_numpy(PROMPT), SR)[3] is None


def test_the_pipeline_warns_when_it_cuts_a_prompt_it_transcribes(pipe, monkeypatch):
    from diffusers.utils import logging

    monkeypatch.setattr(prompt_audio, "MAX_PROMPT_SECONDS", 1.2)  # the tiny model's scale (500 frames/s)
    pipe.enable_prompt_transcription(Heard("a few words said"))
    logger = logging.get_logger("modeling_ditar.pipeline_ditar")
    try:
        with mock.patch.object(logger, "warning") as warning:
            pipe("Hi.", prompt_audio=spoken(2.0), sampling_rate=SR, max_new_patches=2)
    finally:
        pipe.disable_prompt_transcription()
    (message,), _ = warning.call_args
    assert "cut at a pause" in message and "transcribed" in message
    pipe.enable_prompt_transcription(Heard("a few words said"))
    try:
        with mock.patch.object(logger, "warning") as warning:  # one recording for two texts: one cut, one warning
            out = pipe(
                ["Hi.", "Yo."], prompt_audio=spoken(2.0), prompt_text=[None, None], sampling_rate=SR, max_new_patches=2
            )
    finally:
        pipe.disable_prompt_transcription()
    assert warning.call_count == 1 and warning.call_args[0][0].startswith("prompt_audio is")
    assert out.prompt_transcripts == ["a few words said"] * 2


def test_nothing_heard_a_loop_a_short_clip_or_a_failing_recogniser_is_refused_by_name():
    with pytest.raises(ValueError, match="heard no words .*give the transcript"):
        transcribe_prompt(PromptTranscriber(Heard("  ")), torch.from_numpy(PROMPT), SR)
    with pytest.raises(ValueError, match="repeats itself"):
        transcribe_prompt(PromptTranscriber(Heard(LOOP)), torch.from_numpy(PROMPT), SR)
    with pytest.raises(ValueError, match="holds about 0.4. s of speech .*too little to transcribe.*Thank you"):
        transcribe_prompt(PromptTranscriber(Heard()), torch.from_numpy(spoken(0.6)), SR)
    silence = np.zeros(SR, np.float32)  # silence around a short word does not count as speech
    padded = np.concatenate([silence, spoken(0.6), silence])
    with pytest.raises(ValueError, match="too little to transcribe"):
        transcribe_prompt(PromptTranscriber(Heard()), torch.from_numpy(padded), SR)
    transcribe_prompt(PromptTranscriber(Heard()), torch.from_numpy(np.concatenate([silence, PROMPT])), SR)

    def broken(audio, rate):
        raise ZeroDivisionError("division by zero")

    with pytest.raises(RuntimeError, match="failed on the voice prompt .*ZeroDivisionError.*give the prompt's"):
        transcribe_prompt(PromptTranscriber(broken), torch.from_numpy(PROMPT), SR)


# ----------------------------------------------------------------------------------------------------------------------
# the pipeline


def test_without_a_transcriber_a_missing_transcript_names_both_fixes(pipe):
    for call in (
        lambda: pipe("Hello.", prompt_audio=PROMPT, sampling_rate=SR),
        lambda: pipe.stream("Hello.", prompt_audio=PROMPT, sampling_rate=SR),
        lambda: pipe(["Hi.", "Yo."], prompt_audio=[PROMPT, PROMPT], prompt_text=["the prompt", None], sampling_rate=SR),
    ):
        with pytest.raises(ValueError, match="enable_prompt_transcription"):
            call()
    with pytest.raises(ValueError, match="without transcript.*enable_prompt_transcription"):
        pipe.create_voice(PROMPT, sampling_rate=SR)


def test_a_transcribed_prompt_speaks_as_the_same_transcript_given(pipe, transcribing):
    out = pipe("Hello there.", prompt_audio=PROMPT, sampling_rate=SR, generator=seeded(), max_new_patches=6)
    ref = pipe(
        "Hello there.", prompt_audio=PROMPT, prompt_text=HEARD, sampling_rate=SR, generator=seeded(), max_new_patches=6
    )
    assert np.array_equal(out.audios, ref.audios)
    assert out.prompt_transcripts == [HEARD] and ref.prompt_transcripts is None
    assert transcribing.calls == 1  # not asked when the transcript is given


def test_only_prompts_without_a_transcript_are_transcribed(pipe, transcribing):
    other = spoken(1.6, freq=180.0)
    out = pipe(
        ["Hi.", "Yo."],
        prompt_audio=[PROMPT, other],
        prompt_text=["the prompt", None],
        sampling_rate=SR,
        generator=seeded(),
        max_new_patches=4,
    )
    assert out.prompt_transcripts == [None, HEARD] and transcribing.calls == 1
    ref = pipe(
        ["Hi.", "Yo."],
        prompt_audio=[PROMPT, other],
        prompt_text=["the prompt", HEARD],
        sampling_rate=SR,
        generator=seeded(),
        max_new_patches=4,
    )
    assert np.array_equal(out.audios, ref.audios)
    shared = pipe(["Hi.", "Yo."], prompt_audio=PROMPT, sampling_rate=SR, max_new_patches=2)
    assert shared.prompt_transcripts == [HEARD, HEARD]
    one_recording = pipe(
        ["Hi.", "Yo."], prompt_audio=PROMPT, prompt_text=["the prompt", None], sampling_rate=SR, max_new_patches=2
    )
    assert one_recording.prompt_transcripts == [None, HEARD]


def test_stream_and_voices_use_the_transcriber(pipe, transcribing):
    stream = pipe.stream("Hello there.", prompt_audio=PROMPT, sampling_rate=SR, generator=seeded(), max_new_patches=6)
    assert stream.prompt_transcript == HEARD
    joined = np.concatenate(list(stream))
    once = pipe("Hello there.", prompt_audio=PROMPT, sampling_rate=SR, generator=seeded(), max_new_patches=6)
    np.testing.assert_allclose(joined, once.audios[0][: once.audio_lengths[0]], atol=1e-6)
    voice = pipe.create_voice(PROMPT, sampling_rate=SR)
    assert voice.transcript == HEARD
    assert transcribing.calls == 1  # the same clip again: the transcript is cached


def test_a_default_voice_can_be_set_from_a_recording_alone():
    pipe = get_dummy_pipeline()
    with pytest.raises(ValueError, match="transcript of the audio.*enable_prompt_transcription"):
        pipe.set_default_voice(PROMPT, sampling_rate=SR)
    pipe.enable_prompt_transcription(Heard())
    pipe.set_default_voice(PROMPT, sampling_rate=SR)
    audio, rate, transcript = pipe.default_voice
    assert transcript == HEARD and rate == SR and np.array_equal(audio, PROMPT)


def test_a_prompt_file_is_transcribed(pipe, transcribing, tmp_path):
    path = write_wav(tmp_path / "me.wav", PROMPT)
    out = pipe("Hello.", prompt_audio=str(path), generator=seeded(), max_new_patches=3)
    assert out.prompt_transcripts == [HEARD]


def test_what_the_recogniser_heard_is_named_when_the_prompt_checks_refuse_it(pipe):
    pipe.enable_prompt_transcription(Heard("你好世界"))
    try:
        with pytest.raises(
            ValueError, match="the transcript Heard made of the voice prompt, '你好世界', cannot be used"
        ):
            pipe("Hello.", prompt_audio=PROMPT, sampling_rate=SR)
        with pytest.raises(ValueError, match="^prompt 1: the transcript Heard made"):
            pipe(
                ["Hi.", "Yo."],
                prompt_audio=[PROMPT, spoken(1.6, freq=180.0)],
                prompt_text=["a", None],
                sampling_rate=SR,
            )
        with pytest.raises(ValueError, match="^the transcript Heard made"):  # one recording: no row to name
            pipe(["Hi.", "Yo."], prompt_audio=PROMPT, prompt_text=["the prompt", None], sampling_rate=SR)
    finally:
        pipe.disable_prompt_transcription()


def test_only_a_missing_transcript_is_transcribed(pipe, transcribing):
    for bad in (5, b"a test voice", ["a test voice", 7], [None, 7]):
        with pytest.raises((TypeError, ValueError), match="prompt_text"):
            pipe(
                ["Hi.", "Yo."] if isinstance(bad, list) else "Hi.",
                prompt_audio=PROMPT,
                prompt_text=bad,
                sampling_rate=SR,
            )
    with pytest.raises(TypeError, match="got list"):
        pipe.create_voice([PROMPT], sampling_rate=SR)
    assert transcribing.calls == 0


def test_enable_takes_a_transcriber_and_disable_requires_transcripts_again(pipe):
    transcriber = PromptTranscriber(Heard())
    with pytest.raises(ValueError, match="keeps its own"):
        pipe.enable_prompt_transcription(transcriber, language="de")
    pipe.enable_prompt_transcription(transcriber)
    assert pipe.prompt_transcriber is transcriber
    pipe.disable_prompt_transcription()
    with pytest.raises(ValueError, match="prompt_text"):
        pipe("Hello.", prompt_audio=PROMPT, sampling_rate=SR)


# ----------------------------------------------------------------------------------------------------------------------
# the command line and the server


@pytest.fixture
def model_dir(tmp_path, pipe):
    folder = tmp_path / "pipeline"
    pipe.save_pretrained(folder)
    return folder


def test_cli_transcribes_a_prompt_without_prompt_text(capsys, tmp_path, model_dir, monkeypatch):
    assert cli.DEFAULT_ASR_MODEL == transcription.DEFAULT_ASR_MODEL
    loaded = []

    def load(name, device, dtype):  # stands in for transformers.pipeline("automatic-speech-recognition", name)
        loaded.append(name)
        return Heard()

    monkeypatch.setattr(transcription, "_load_asr_pipeline", load)
    prompt = write_wav(tmp_path / "me.wav", PROMPT)
    common = ["--model", model_dir, "--seed", "3", "--max-new-patches", "4", "--prompt-audio", prompt]
    code = cli.main(["synthesize", "Hello there.", "-o", str(tmp_path / "a.wav"), *map(str, common)])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert loaded == [transcription.DEFAULT_ASR_MODEL] and f"heard {HEARD!r}" in err
    code = cli.main(
        ["synthesize", "Hello there.", "-o", str(tmp_path / "b.wav"), *map(str, common), "--prompt-text", HEARD]
    )
    assert code == 0 and "heard" not in capsys.readouterr().err
    a, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    b, _ = sf.read(tmp_path / "b.wav", dtype="float32")
    assert np.array_equal(a, b)
    code = cli.main(["synthesize", "Hi.", "-o", str(tmp_path / "c.wav"), "-q", *map(str, common), "--asr-model", "x/y"])
    _, err = capsys.readouterr()
    assert code == 0 and loaded[-1] == "x/y" and err == ""


def test_server_transcribes_uploads_without_text_when_started_with_a_recogniser():
    from fastapi.testclient import TestClient

    from modeling_ditar.server import ServerSettings, create_app

    pipe = get_dummy_pipeline()
    pipe.enable_prompt_transcription(Heard())
    buffer = io.BytesIO()
    sf.write(buffer, PROMPT, SR, format="WAV")
    with TestClient(create_app(pipe, ServerSettings())) as client:
        assert client.get("/health").json()["transcribes_uploads"] == "Heard"
        response = client.post("/v1/voices", files={"audio": ("me.wav", buffer.getvalue(), "audio/wav")})
        assert response.status_code == 201, response.text
        voice = response.json()
        assert voice["transcript"] == HEARD and any("transcribed the voice prompt" in n for n in voice["notes"])
        speech = client.post("/v1/audio/speech", json={"model": "ditar", "input": "Hello.", "voice": voice["id"]})
        assert speech.status_code == 200
        silent = io.BytesIO()
        sf.write(silent, tone(0.002), SR, format="WAV")
        bad = client.post("/v1/voices", files={"audio": ("x.wav", silent.getvalue(), "audio/wav")})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "audio"

    def broken(audio, rate):
        raise ZeroDivisionError("division by zero")

    pipe.enable_prompt_transcription(broken)
    with TestClient(create_app(pipe, ServerSettings())) as client:
        failed = client.post("/v1/voices", files={"audio": ("me.wav", buffer.getvalue(), "audio/wav")})
        assert failed.status_code == 500 and "failed on the voice prompt" in failed.json()["error"]["message"]

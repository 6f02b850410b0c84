"""Transcripts for voice prompts that come without one, from a speech recognition model.

DiTAR continues its prompt: the prompt's transcript comes first in the input, then the text to speak, then the prompt's
speech. So a voice prompt needs the transcript of what is said in it. Users often have a recording of a voice and no
transcript; [`PromptTranscriber`] writes one with a transformers speech recognition model (Whisper-base by default, as
other zero-shot TTS systems do), and `DiTARPipeline.enable_prompt_transcription()` makes the pipeline use it for every
prompt given without `prompt_text`.

An automatic transcript is not an exact one: Whisper-base misheard 9-17% of the words of natural-voice prompts (clean,
noisy, reverberant, telephone) and 64% of synthetic espeak-ng voices'. The speech generated from its transcripts kept
its words and likeness to the voice within noise of the speech from exact transcripts (paired, 45-51 cases per set),
perhaps because a transcript of what the voice sounds like aligns with its sound as well as the intended words do.
An exact `prompt_text` is still used whenever it is given.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import torch

from . import prompt_audio
from .audio_utils import resample_audio
from .hub_utils import looks_like_a_local_path

DEFAULT_ASR_MODEL = "openai/whisper-base"
# The model speaks English: a multilingual Whisper is told the language, so that a short or accented clip is not
# "detected" as another language and transcribed or translated into it.
DEFAULT_LANGUAGE = "en"
# Transcripts kept per transcriber, by the audio's bytes: a call repeated with the same prompt does not run the
# recogniser again.
_CACHE_SIZE = 32
# With less speech than this, recognisers make words up: Whisper-base heard "Thank you." for the first 0.3 s and 0.6 s
# of a LibriVox sentence ("And Mr. John...") with silence around them, "Hi." and "Bye." for 0.4-0.6 s of others, and
# plausible beginnings from 0.8 s on. Measured as the clip's frames above its pauses (silence around a short word does
# not count); every prompt and target of the evaluation sets (574 clips) holds 0.68 s or more, 1% under 0.97 s.
MIN_TRANSCRIBED_SPEECH_SECONDS = 0.8
# Whisper sometimes loops on unclear audio ("you will not have any film and you will not have any film and ..." for a
# 6 s clip, 448 tokens in 19 s on 2 CPU cores). Fluent speech is 3-5 tokens a second, so decoding stops at this many
# per second of audio (plus a slack for short clips), a transcript that compresses more than Whisper's own loop
# threshold is decoded once more with a repetition penalty, and one that still loops is refused.
_MAX_TOKENS_PER_SECOND = 12
_TOKEN_SLACK = 16
LOOP_COMPRESSION_RATIO = 2.4
_LOOP_REPETITION_PENALTY = 1.2


class PromptTranscriber:
    """Transcribe a voice prompt: `transcriber(waveform, sampling_rate) -> str`.

    Args:
        asr: a transformers speech recognition model (a Hub id or a local folder, loaded with
            `transformers.pipeline("automatic-speech-recognition", ...)`), a pipeline of that task, or any function
            `fn(waveform: np.ndarray, sampling_rate: int) -> str` (mono float32 audio).
        language: the language a multilingual Whisper model is told to transcribe (models without languages ignore
            it); None lets Whisper detect it.
        device, dtype: where and in which precision a model loaded from `asr` runs (default: CPU, float32).
    """

    def __init__(
        self,
        asr: str | Callable = DEFAULT_ASR_MODEL,
        language: str | None = DEFAULT_LANGUAGE,
        device: str | int | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        if language is not None and not (isinstance(language, str) and language.strip()):
            raise ValueError(f"language must be a language name or code such as 'en', or None, got {language!r}.")
        self.language = None if language is None else language.strip().lower()
        if _is_model(asr):
            raise TypeError(
                f"the speech recognition model was given as a {type(asr).__name__} object; give its Hub id or folder "
                "(e.g. 'openai/whisper-base'), or transformers.pipeline('automatic-speech-recognition', model=model, "
                "tokenizer=..., feature_extractor=...), which prepares the audio for it."
            )
        if isinstance(asr, str) or hasattr(asr, "__fspath__"):
            self.name = str(asr)
            self._asr = _load_asr_pipeline(self.name, device, dtype)
        elif callable(asr):
            self.name = getattr(getattr(asr, "model", None), "name_or_path", None) or getattr(
                asr, "__name__", type(asr).__name__
            )
            self._asr = asr
        else:
            raise TypeError(
                "the speech recognition model must be a Hub id or local folder (e.g. 'openai/whisper-base'), a "
                "transformers automatic-speech-recognition pipeline or a function fn(waveform, sampling_rate) -> str, "
                f"got {type(asr).__name__}."
            )
        # transcripts by a digest of the audio (not the audio's bytes: 32 long clips would be kept whole)
        self._cache: OrderedDict[bytes, str] = OrderedDict()
        self._is_pipeline = _is_transformers_asr(self._asr)
        if self._is_pipeline and self.language is not None and _is_multilingual_whisper(self._asr.model):
            self.language = _whisper_language(self.language)

    def __call__(self, waveform, sampling_rate: int) -> str:
        audio = _mono_float32(waveform)
        key = hashlib.sha256(audio.tobytes() + int(sampling_rate).to_bytes(4, "little")).digest()
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        try:
            run = self._run_pipeline if self._is_pipeline else self._asr
            text = run(audio, int(sampling_rate))
        except Exception as err:  # the recogniser itself failed (a model error, out of memory, a bug in a function)
            raise RuntimeError(
                f"the prompt transcriber {self.name} failed on the voice prompt ({type(err).__name__}: {err}); give "
                "the prompt's transcript instead."
            ) from err
        if not isinstance(text, str):
            raise TypeError(
                f"the prompt transcriber {self.name!r} returned {type(text).__name__}; a transcriber function must "
                "return the transcript as a string."
            )
        text = " ".join(text.split())
        self._cache[key] = text
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return text

    def _run_pipeline(self, audio: np.ndarray, sampling_rate: int) -> str:
        asr = self._asr
        rate = asr.feature_extractor.sampling_rate
        if sampling_rate != rate:  # resampled here: transformers' pipeline would need torchaudio for it
            audio = resample_audio(torch.from_numpy(audio), sampling_rate, rate).numpy()
        generate_kwargs = {}
        if getattr(asr.model.config, "is_encoder_decoder", False):  # a decoder that writes tokens (Whisper, ...)
            # as a total length, which Whisper's generation config also sets (max_new_tokens next to it warns); the
            # total counts Whisper's 4 start tokens
            limit = getattr(asr.model.config, "max_target_positions", None) or 448
            tokens = int(_MAX_TOKENS_PER_SECOND * len(audio) / rate) + _TOKEN_SLACK
            generate_kwargs["max_length"] = min(tokens + 4, limit)
        if self.language is not None and _is_multilingual_whisper(asr.model):
            generate_kwargs.update(language=self.language, task="transcribe")

        def decode(**extra) -> str:
            options = {"generate_kwargs": {**generate_kwargs, **extra}} if generate_kwargs or extra else {}
            result = asr({"raw": audio, "sampling_rate": rate}, **options)
            return result["text"] if isinstance(result, dict) else str(result)

        text = decode()
        if generate_kwargs and compression_ratio(text) > LOOP_COMPRESSION_RATIO:
            again = decode(repetition_penalty=_LOOP_REPETITION_PENALTY)
            if compression_ratio(again) < compression_ratio(text):
                text = again
        return text

    def __repr__(self) -> str:
        return f"PromptTranscriber({self.name!r}, language={self.language!r})"


def transcribe_prompt(
    transcriber: Callable, waveform: torch.Tensor, sampling_rate: int, max_seconds: float | None = None
) -> tuple[torch.Tensor, str, str, str | None]:
    """(waveform, transcript, message, cut_message) of a prompt without a transcript: a prompt longer than
    `max_seconds` is first cut at a pause (as `trim_prompt` cuts prompts with transcripts; `cut_message` says so, else
    None), then what is kept is transcribed, so the transcript matches the audio exactly where the recogniser is right.
    `message` says what was heard. Raises `ValueError` for a clip too short to transcribe reliably and when the
    recogniser hears no words or loops, `RuntimeError` when the recogniser itself fails."""
    audio = waveform.numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform, dtype=np.float32)
    max_seconds = prompt_audio.MAX_PROMPT_SECONDS if max_seconds is None else max_seconds
    name = getattr(transcriber, "name", None) or getattr(transcriber, "__name__", "the prompt transcriber")
    seconds = len(audio) / sampling_rate
    cut_message = None
    cut = prompt_audio.pause_cut(audio, sampling_rate, max_seconds)
    if cut is not None:
        cut_message = (
            f"prompt_audio is {seconds:.1f} s long, longer than the {max_seconds:g} s the model was trained on: it was "
            f"cut at a pause to its first {cut / sampling_rate:.2f} s, and that part was transcribed. For the best "
            f"result give a prompt of at most {max_seconds:g} s."
        )
        audio = audio[:cut].copy()
    check_enough_speech(audio, sampling_rate)
    transcript = transcriber(audio, sampling_rate)
    if not transcript.strip():
        raise ValueError(
            f"prompt_audio: {name} heard no words in the voice prompt ({len(audio) / sampling_rate:.1f} s), so there "
            "is no transcript to use; give the transcript of what is said in it, or a clip of clear speech."
        )
    if compression_ratio(transcript) > LOOP_COMPRESSION_RATIO:
        shown = transcript if len(transcript) <= 80 else transcript[:77] + "..."
        raise ValueError(
            f"prompt_audio: {name}'s transcript of the voice prompt repeats itself ({shown!r}), as speech recognisers "
            "do on audio they cannot make out; give the transcript of what is said in it, or a clip of clear speech."
        )
    message = (
        f"{name} transcribed the voice prompt as {transcript!r}; an automatic transcript can mishear words, and the "
        "exact transcript gives the best result."
    )
    return torch.as_tensor(audio), transcript, message, cut_message


def check_enough_speech(audio: np.ndarray, sampling_rate: int, name: str = "prompt_audio") -> None:
    """Raise `ValueError` for a clip with less than `MIN_TRANSCRIBED_SPEECH_SECONDS` of speech (its frames above its
    pauses), for which a recogniser would make words up."""
    voiced, size = prompt_audio.speech_frames(audio, sampling_rate)
    speech = float(voiced.sum()) * size / sampling_rate
    if speech < MIN_TRANSCRIBED_SPEECH_SECONDS:
        raise ValueError(
            f"{name} holds about {speech:.2f} s of speech (in {len(audio) / sampling_rate:.2f} s), too little to "
            "transcribe reliably: recognisers make words up for short speech (Whisper heard 'Thank you.' for the "
            f"first 0.6 s of a sentence); at least {MIN_TRANSCRIBED_SPEECH_SECONDS:g} s. Give its transcript, or a "
            "longer clip (3 to 8 s of speech work best)."
        )


def compression_ratio(text: str) -> float:
    """Bytes of `text` per byte of its gzip compression: about 1 for ordinary sentences, far above for a transcript
    that repeats itself (Whisper's loop test)."""
    data = text.encode("utf-8")
    return len(data) / len(gzip.compress(data)) if data else 0.0


def _load_asr_pipeline(name: str, device, dtype):
    from transformers import pipeline

    if looks_like_a_local_path(name) and not os.path.isdir(os.path.expanduser(name)):
        raise FileNotFoundError(
            f"the speech recognition model {name!r} is not a folder; give a local model folder or a Hub id such as "
            f"{DEFAULT_ASR_MODEL!r}."
        )
    try:
        return pipeline("automatic-speech-recognition", model=os.path.expanduser(name), device=device, dtype=dtype)
    except Exception as err:  # a missing folder, no network for a Hub id, a model of another task, ...
        raise OSError(
            f"could not load the speech recognition model {name!r} to transcribe voice prompts ({type(err).__name__}: "
            f"{err}). Give a model that transformers.pipeline('automatic-speech-recognition', model=...) loads (a Hub "
            f"id such as {DEFAULT_ASR_MODEL!r}, downloaded once, or a local folder) and a device and dtype it can run "
            "on; or give the prompt's transcript instead."
        ) from err


def _whisper_language(language: str) -> str:
    """Whisper's code for `language` ("en", "english", "English" -> "en"), or a ValueError listing the choices."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

    if language in LANGUAGES:
        return language
    if language in TO_LANGUAGE_CODE:
        return TO_LANGUAGE_CODE[language]
    raise ValueError(
        f"language={language!r} is not a language Whisper knows; give a code or name such as 'en' or 'english' "
        f"(Whisper's codes: {', '.join(sorted(LANGUAGES))}), or None to let it detect the language."
    )


def _is_model(asr) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(asr, PreTrainedModel)


def _is_transformers_asr(asr) -> bool:
    try:
        from transformers import AutomaticSpeechRecognitionPipeline
    except ImportError:  # pragma: no cover - every supported transformers has it
        return False
    return isinstance(asr, AutomaticSpeechRecognitionPipeline)


def _is_multilingual_whisper(model) -> bool:
    if getattr(model.config, "model_type", None) != "whisper":
        return False
    generation_config = getattr(model, "generation_config", None)
    return bool(getattr(generation_config, "is_multilingual", False)) and bool(
        getattr(generation_config, "lang_to_id", None)
    )


def _mono_float32(waveform) -> np.ndarray:
    audio = waveform.detach().cpu().numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"a prompt to transcribe must be one mono waveform, got an array of shape {audio.shape}.")
    return audio

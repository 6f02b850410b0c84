"""DiTARPipeline: text (+ a voice prompt) -> waveform, with the anatomy of diffusers' audio pipelines.

text, prompt audio -> DiTARProcessor -> DiTARForConditionalGeneration.generate_patches (aggregation encoder -> backbone
-> LocDiT sampler stepped by `scheduler`) -> de-normalise -> vocoder (chunked, see `streaming.py`) -> waveform.
With a `vae` component (diffusers' AutoencoderOobleck) instead of a vocoder, the features are VAE latents: the prompt
audio is encoded by the VAE and the generated latents are decoded by it (`vae_features.py`).

A saved pipeline folder carries its code (`hub_utils.write_pipeline_remote_code`), so it also loads with
`DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)` where this package is not installed.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.pipelines.pipeline_utils import AudioPipelineOutput
from diffusers.utils import logging
from diffusers.utils.torch_utils import is_compiled_module
from transformers import PreTrainedModel, ProcessorMixin

# Loading a local folder with trust_remote_code, diffusers copies only the modules that the pipeline file imports
# directly, so every module the pipeline needs, also indirectly, is imported here (the ones marked F401 only for that).
from .aggregation_encoder import DiTARAggregationEncoder  # noqa: F401
from .audio_utils import load_audio, refuse_audio_rate_pair, soft_limit  # noqa: F401
from .backbone_decoding import decode_step  # noqa: F401
from .candidate_pruning import CandidateFollower, choose_candidates
from .configuration_ditar import DiTARConfig  # noqa: F401
from .feature_extraction_ditar import DiTARFeatureExtractor  # noqa: F401
from .generation_ditar import (
    GenerationSettings,
    cut_by_cap_message,
    least_seconds_of_text,
    reject_unknown_kwargs,
    repeat_for_candidates,
    too_short_message,
    warn_once,
)
from .generation_progress import GenerationProgress
from .guided_attention import AttentionReader  # noqa: F401
from .hub_utils import (
    EMBEDDED_DEFAULT,
    drop_loaded_from_path,
    installed_libraries,
    looks_like_a_local_path,
    make_saved_weights_readable,
    process_umask,
    push_keywords,
    write_pipeline_remote_code,
    write_transformers_entry_points,
    written_by_a_save,
)
from .locdit import LocDiT  # noqa: F401
from .lora import DiTARLoraLoaderMixin
from .low_precision import linear_matmul_dtype, matmul_dtype_setting
from .modeling_ditar import DiTARForConditionalGeneration, PatchStep
from .phase_reconstruction import phase_gradient_phase  # noqa: F401
from .processing_ditar import (
    DEFAULT_VOICE_DIR,
    VOICE_NAMES,
    DiTARProcessor,
    DiTARVoice,
    audio_type_error,
    write_default_voice,
)
from .prompt_audio import (
    PromptNames,
    check_prompt_length,
    check_prompt_speaking_rate,
    fit_prompts,
    load_and_fit_prompt,
)
from .prompt_transcription import DEFAULT_ASR_MODEL, DEFAULT_LANGUAGE, PromptTranscriber, transcribe_prompt
from .sampling import PatchSampler, check_scheduler  # noqa: F401
from .sentence_splitting import MAX_CHARS_PER_SEGMENT, mark_line_ends, split_sentences
from .spectrum_matching import PromptSpectrumMatch, prompt_spectrum_matches
from .speech_positions import speaking_rate  # noqa: F401
from .streaming import SpeechStream, StreamingVocoder, StreamOutcome
from .tokenization_ditar import DiTARTextFrontend  # noqa: F401
from .transformer_blocks import DiTARTransformerBlock  # noqa: F401
from .vae_features import (
    VAEPromptEncoder,
    VAEVocoder,
    encode_waveforms,
    vae_hop_length,
    vae_latent_dim,
    vae_sampling_rate,
)
from .vocoder_griffinlim import GriffinLimVocoder  # noqa: F401
from .vocoder_hifigan import SpeechT5HifiGanVocoder  # noqa: F401
from .vocoder_vocos import VocosVocoder  # noqa: F401
from .vocoders import DiTARVocoder  # noqa: F401

logger = logging.get_logger(__name__)

MISSING_PROMPT_TEXT = (
    "prompt_audio was given without prompt_text: DiTAR continues the prompt, so it needs the transcript of the prompt "
    "audio. Pass prompt_text=... (what is said in the prompt audio), or call pipe.enable_prompt_transcription() to "
    "have a speech recognition model (Whisper) transcribe prompts given without one."
)

# what errors call a prompt: a call's arguments, and those of `set_default_voice` (`create_voice`'s: VOICE_NAMES)
CALL_PROMPT_NAMES = PromptNames()
DEFAULT_VOICE_NAMES = PromptNames(audio="audio", text="text")

# the package (or remote-code module folder) this file lives in, e.g. "modeling_ditar"
_PACKAGE = __name__.rpartition(".")[0]
_CODE_DIR = Path(__file__).resolve().parent
OUTPUT_TYPES = ("np", "pt", "features")
SENTENCE_PAUSE_SECONDS = 0.15


@dataclass
class DiTARPipelineOutput(AudioPipelineOutput):
    """audios: `np.ndarray`/`torch.Tensor` [B, samples] (zero-padded; see `audio_lengths`) or, for
    output_type="features", de-normalised features [B, T, D] (log-mel rows padded with the features of silence, the
    feature extractor's `log_mel_floor`). audio_lengths: real samples (or frames) per row.
    stopped: per row, whether the stop head ended generation (False: `max_new_patches` did).
    prompt_transcripts: per row, the transcript the pipeline's prompt transcriber made of a prompt given without
    `prompt_text` (see `enable_prompt_transcription`), else None; None when no prompt was transcribed."""

    audio_lengths: list[int] | None = None
    stopped: list[bool] | None = None
    prompt_transcripts: list[str | None] | None = None


class DiTARPipeline(DiTARLoraLoaderMixin, DiffusionPipeline):
    r"""
    Zero-shot text-to-speech with DiTAR.

    Components: `model` ([`DiTARForConditionalGeneration`]), `processor` ([`DiTARProcessor`]), `scheduler` (a
    flow-matching scheduler such as [`FlowMatchEulerDiscreteScheduler`], used for every patch's ODE), and either
    `vocoder` (log-mel features -> waveform, e.g. [`GriffinLimVocoder`]) or `vae` (an `AutoencoderOobleck` whose
    latents are the features: it encodes the prompt audio and decodes the output). A default voice (prompt audio +
    transcript) can be saved with the pipeline and is used when `prompt_audio` is not given.
    """

    # `enable_model_cpu_offload()` keeps the model on the CPU while no call or stream generates with it (see
    # `_generating`). The vocoder and a VAE stay on the accelerator: they are small, they are called chunk by chunk in
    # streams, where moving them out for each chunk would cost more than it saves, and accelerate's hook cannot place
    # a vocoder without weights (Griffin-Lim).
    model_cpu_offload_seq = "model"
    _exclude_from_cpu_offload = ["vocoder", "vae"]
    _optional_components = ["vocoder", "vae"]

    # `model` is a DiTARForConditionalGeneration and `processor` a DiTARProcessor. The annotations name their stable
    # base classes: loading remote code, diffusers re-executes a module for every component it loads from it, after it
    # has resolved these annotations, so the DiTAR classes themselves would fail its type check with a warning.
    def __init__(
        self,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        scheduler,
        vocoder=None,
        vae=None,
        matmul_dtype: str | torch.dtype | None = None,
    ):
        super().__init__()
        self.register_modules(model=model, processor=processor, scheduler=scheduler, vocoder=vocoder, vae=vae)
        matmul_dtype = matmul_dtype_setting(matmul_dtype)
        self._vae_pause: torch.Tensor | None = None
        # transcribes prompts given without prompt_text, once `enable_prompt_transcription()` sets it (not saved)
        self.prompt_transcriber: PromptTranscriber | None = None
        # diffusers' `pipe._interrupt`, kept per thread (see `interrupt`)
        self._interrupts: dict[int, bool] = {}
        self._check_components()  # before the model is touched: components refused leave it as it was given
        # how the model multiplies, saved with the pipeline (model_index.json) like any pipeline setting; None leaves
        # the model as it was given and records what it does (see `_matmul_setting_of`)
        if matmul_dtype is not None:
            model.set_matmul_dtype(matmul_dtype)
        self.register_to_config(matmul_dtype=_matmul_setting_of(model, matmul_dtype))
        # weights loaded from a memory-mapped file can sit at unaligned addresses (see `_align_cpu_tensors`)
        for module in (model, vae):
            if isinstance(module, torch.nn.Module):
                _align_cpu_tensors(module)

    def _check_components(self):
        fe, config = self.processor.feature_extractor, self.model.config
        if self.scheduler is not None:  # a scheduler that cannot step the patch ODE is refused now, not at a call
            check_scheduler(self.scheduler)
        if self.vae is not None:
            if self.vocoder is not None:
                raise ValueError(
                    "give either a vocoder (log-mel features) or a vae (VAE latent features), not both; the VAE "
                    "decodes the latents itself."
                )
            if vae_latent_dim(self.vae) != config.feature_dim:
                raise ValueError(
                    f"the vae has {vae_latent_dim(self.vae)}-dim latents but the model expects "
                    f"feature_dim={config.feature_dim}; build the model config with "
                    "vae_features.ditar_config_kwargs(vae)."
                )
            return
        if self.vocoder is None:
            raise ValueError("a vocoder is required (or a vae, for a model trained on VAE latents).")
        # a vocoder that records the analysis settings it was trained on checks them against the feature extractor
        check_features = getattr(self.vocoder, "check_feature_extractor", None)
        if check_features is not None:
            check_features(fe)
        if fe.feature_size != config.feature_dim:
            raise ValueError(
                f"processor features have {fe.feature_size} channels but the model expects "
                f"feature_dim={config.feature_dim}."
            )
        differ = [
            name
            for name in ("feature_mean", "feature_std")
            if (getattr(fe, name) is None) != (getattr(config, name) is None)
            or (getattr(fe, name) is not None and not np.allclose(getattr(fe, name), getattr(config, name), atol=1e-5))
        ]
        if differ:
            raise ValueError(
                f"the processor's {' and '.join(differ)} differ from the model config's; the prompt would be "
                "normalised differently from the training data. Save both from the same statistics."
            )

    @property
    def components(self) -> dict:
        """The components this pipeline holds; an optional one that is not set (the `vae` of a log-mel pipeline, the
        `vocoder` of a VAE pipeline) is left out. `DiTARPipeline(**pipe.components)` rebuilds the pipeline."""
        return {k: v for k, v in super().components.items() if v is not None or k not in self._optional_components}

    @property
    def sample_rate(self) -> int:
        if self.vae is not None:
            return vae_sampling_rate(self.vae)
        return int(getattr(self.vocoder, "sampling_rate", self.processor.sampling_rate))

    @property
    def _prompt_rate(self) -> int:
        """Rate prompt audio is brought to: the VAE's, or the feature extractor's."""
        return vae_sampling_rate(self.vae) if self.vae is not None else self.processor.sampling_rate

    @property
    def interrupt(self) -> bool:
        """diffusers' interruption flag: a `callback_on_patch_end` that sets `pipe._interrupt = True` ends the call
        after that patch; the call returns the speech generated so far (its rows, and texts left unspoken, are marked
        not `stopped`). A call starts with it False. It belongs to the thread that runs the call: calls on one pipeline
        from several threads each interrupt only themselves, and setting it from another thread does not stop a call
        (stop a stream by no longer iterating it)."""
        return self._interrupt

    @property
    def _interrupt(self) -> bool:
        return self._interrupts.get(threading.get_ident(), False)

    @_interrupt.setter
    def _interrupt(self, value: bool) -> None:
        self._interrupts[threading.get_ident()] = bool(value)

    # ----------------------------------------------------------------------------------------------------------------
    # default voice and persistence

    @property
    def default_voice(self) -> tuple[np.ndarray, int, str] | None:
        """(waveform, rate, transcript) of the voice used when `prompt_audio` is not given; the processor holds it."""
        return self.processor.default_voice

    def set_default_voice(self, audio, text: str | None = None, sampling_rate: int | None = None):
        """Voice used when `prompt_audio` is not given: `audio` (path or array) and its transcript `text` (after
        `enable_prompt_transcription()`, None has it transcribed). Checked now as a call checks a prompt, so a voice
        no call could use fails here (and the previous voice stays); a recording longer than the model's prompts is
        cut at a pause now, with one warning, and kept cut (in calls and in a saved pipeline). Errors name `audio`,
        `text` and `sampling_rate`."""
        if audio is None:
            raise ValueError("set_default_voice needs the audio of the voice (and its transcript).")
        if isinstance(audio, DiTARVoice):
            raise TypeError(
                "set_default_voice takes a recording and its transcript; a DiTARVoice holds features, not audio: "
                "pass it as voice=... in calls instead."
            )
        if isinstance(audio, (list, tuple)):  # a voice is one recording
            refuse_audio_rate_pair(audio, DEFAULT_VOICE_NAMES.audio)
            raise audio_type_error(audio, DEFAULT_VOICE_NAMES.audio)
        if text is None and self.prompt_transcriber is None:
            raise ValueError(
                "set_default_voice needs the transcript of the audio; pass text=..., or call "
                "pipe.enable_prompt_transcription() to have it transcribed."
            )
        try:
            waveform, text, _ = self._voice_of_recording(audio, text, sampling_rate, DEFAULT_VOICE_NAMES)
        except (ValueError, FileNotFoundError) as err:
            raise type(err)(f"the new default voice cannot be used: {err}") from err
        self.processor.set_default_voice(waveform, text, target_rate=self._prompt_rate, prepared=True)

    def create_voice(
        self,
        audio=None,
        transcript: str | None = None,
        sampling_rate: int | None = None,
        reuse_prefix_cache: bool = True,
    ) -> DiTARVoice:
        """A reusable [`DiTARVoice`] of `audio` (path or array, with `sampling_rate` for arrays) and its `transcript`
        (default: the default voice), prepared as a call with `prompt_audio` prepares it (an over-long prompt is cut at
        a pause) and checked now. `pipe(text, voice=voice)` and `pipe.stream(text, voice=voice)` then skip reading the
        audio, its features and its transcript's front end, and reuse the backbone's KV cache of the transcript
        (unless `reuse_prefix_cache=False`: then the speech is bit-identical to the plain path's, alone or batched;
        with it, equal up to float32 rounding; with products in bfloat16 or half precision the cache is not used, so
        the speech stays bit-identical there too). Errors name `audio`, `transcript` and `sampling_rate`."""
        if audio is None and transcript is None and self.default_voice is None:
            raise ValueError("create_voice needs audio and its transcript (this pipeline has no default voice).")
        if audio is None and transcript is not None:
            raise ValueError("transcript was given without audio; pass both (or neither, for the default voice).")
        if isinstance(audio, (list, tuple)):  # a voice is one recording
            refuse_audio_rate_pair(audio, VOICE_NAMES.audio)
            raise audio_type_error(audio, VOICE_NAMES.audio)
        if audio is not None and transcript is None and self.prompt_transcriber is None:
            raise ValueError(
                MISSING_PROMPT_TEXT.replace("prompt_audio was", "audio was").replace("prompt_text", "transcript")
            )
        if audio is None:  # the default voice; one saved longer than the model's prompts is cut (and kept cut)
            audio, transcript, sampling_rate = fit_prompts(self, audio, transcript, sampling_rate)
            if audio is None:
                audio, sampling_rate, transcript = self.default_voice
            voice = self._checked_voice(audio, transcript, sampling_rate, names=VOICE_NAMES)
        else:
            _, _, voice = self._voice_of_recording(audio, transcript, sampling_rate, VOICE_NAMES)
        voice.reuse_prefix_cache = reuse_prefix_cache
        return voice

    def _voice_of_recording(
        self, audio, transcript, sampling_rate, names: PromptNames
    ) -> tuple[torch.Tensor, str, DiTARVoice]:
        """(waveform at the prompt rate, transcript, checked voice) of the one recording `set_default_voice` or
        `create_voice` was given, prepared as a call prepares `prompt_audio`: read and brought to the prompt rate once,
        cut at a pause when longer than the model's prompts, transcribed when `transcript` is None (the callers allow
        that only with a prompt transcriber), and checked as a call checks a prompt, with the transcript through the
        text front end once (so its warnings are logged once). Errors call the arguments as `names` says."""
        if transcript is not None:
            waveform, transcript = self._load_voice_recording(audio, transcript, sampling_rate, names)
            return waveform, transcript, self._checked_voice(waveform, transcript, names=names, prepared=True)
        fitted, transcript = self._transcribe_recording(audio, sampling_rate, names=names)
        # the transcribed part, prepared as the recording a call is handed after transcribing its prompt
        rate = self._prompt_rate
        waveform = self.processor.load_prompt_audio(fitted.numpy(), rate, target_rate=rate, name=names.audio)
        return waveform, transcript, self._check_transcript(waveform, transcript, rate, names=names, prepared=True)

    def _load_voice_recording(self, audio, transcript, sampling_rate, names: PromptNames = CALL_PROMPT_NAMES):
        """(waveform, transcript) of one voice recording: the audio read, checked and brought to the prompt rate once,
        and cut at a pause with a warning when longer than the model's prompts, as a call prepares `prompt_audio`.
        A transcript that is not a string comes back with the audio as given: the processor names that mistake
        first, before any audio is read."""
        if not isinstance(transcript, str):
            return audio, transcript
        waveform, kept, message = load_and_fit_prompt(self, audio, transcript, sampling_rate, names=names)
        if message is None:
            return waveform, transcript
        logger.warning(message)
        # the kept part is checked (and raised if quiet) as a prompt of its own, as a call does with a cut prompt
        rate = self._prompt_rate
        return self.processor.load_prompt_audio(waveform.numpy(), rate, target_rate=rate, name=names.audio), kept

    def _checked_voice(
        self,
        audio,
        transcript,
        sampling_rate=None,
        prepared: bool = False,
        names: PromptNames = CALL_PROMPT_NAMES,
    ) -> DiTARVoice:
        """The processor's voice of `audio` (a waveform `_load_voice_recording` made, with `prepared=True`), refused
        now where a call could not use it (a prompt too long for the model's positions, or spoken implausibly); errors
        call the audio and the transcript as `names` says."""
        voice = self.processor.create_voice(
            audio, transcript, sampling_rate, prompt_encoder=self._prompt_encoder(), prepared=prepared, names=names
        )
        self._check_prompts(torch.tensor([voice.prompt_features.shape[0]]), voice.speech_position_rate[None], names)
        return voice

    def enable_prompt_transcription(
        self,
        asr=DEFAULT_ASR_MODEL,
        language: str | None = DEFAULT_LANGUAGE,
        device=None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Transcribe voice prompts given without `prompt_text` (in calls, `stream()` and `create_voice()`) with a
        speech recognition model, as other zero-shot TTS systems do when the reference text is left out.

        `asr`: a transformers speech recognition model (Hub id or local folder; default Whisper-base, downloaded once),
        a transformers automatic-speech-recognition pipeline, a function `fn(waveform, sampling_rate) -> str`, or a
        [`PromptTranscriber`]. `language` is told to multilingual Whisper models (English: what this model speaks);
        `device` and `dtype` place a model loaded from `asr`. A prompt longer than the model's working range is cut at
        a pause first and what is kept is transcribed. The transcripts made are in the output's `prompt_transcripts`
        (and a `DiTARVoice`'s `transcript`). An automatic transcript can mishear words, above all in unusual voices:
        an exact `prompt_text` stays the better input and is always used when given. Not saved with the pipeline."""
        if isinstance(asr, PromptTranscriber):
            if device is not None or dtype is not None or language != DEFAULT_LANGUAGE:
                raise ValueError(
                    "language, device and dtype set up a recogniser loaded here; a PromptTranscriber given ready-made "
                    "keeps its own (set them when you make it)."
                )
            self.prompt_transcriber = asr
        else:
            self.prompt_transcriber = PromptTranscriber(asr, language=language, device=device, dtype=dtype)

    def disable_prompt_transcription(self) -> None:
        """Require `prompt_text` with every prompt again."""
        self.prompt_transcriber = None

    def _transcribe_missing(self, prompt_audio, prompt_text, sampling_rate):
        """(prompt_audio, prompt_text, sampling_rate, transcripts): the prompts whose transcript is None transcribed by
        the prompt transcriber (the audio then comes back as arrays at the prompt rate, over-long ones cut at a pause
        with a warning), `transcripts` the ones made (None per prompt that had one); everything as given when nothing
        was missing. A transcript the prompt checks refuse is named as the recogniser's, with what it heard."""
        if prompt_audio is None or self.prompt_transcriber is None:
            return prompt_audio, prompt_text, sampling_rate, None
        many = isinstance(prompt_audio, (list, tuple))
        audios = list(prompt_audio) if many else [prompt_audio]
        texts = list(prompt_text) if isinstance(prompt_text, (list, tuple)) else [prompt_text]
        if len(texts) == 1 and len(audios) > 1:
            texts = texts * len(audios)
        if all(t is not None for t in texts) or any(t is not None and not isinstance(t, str) for t in texts):
            return prompt_audio, prompt_text, sampling_rate, None  # nothing missing, or the processor names a bad one
        recordings = len(audios)
        if recordings == 1 and len(texts) > 1:  # one recording, a transcript (or None) per text
            audios, many = audios * len(texts), True
        rate = self._prompt_rate
        new_audios, new_texts, made, done = [], [], [], {}
        for index, (audio, text) in enumerate(zip(audios, texts, strict=True)):
            source = index if recordings > 1 else 0  # the recording this row uses
            which = f"prompt {source}: " if recordings > 1 else ""
            if text is not None:
                new_audios.append(self.processor.load_prompt_audio(audio, sampling_rate, target_rate=rate).numpy())
                new_texts.append(text)
                made.append(None)
                continue
            if source not in done:  # a recording shared by several texts is transcribed (and warned about) once
                fitted, transcript = self._transcribe_recording(audio, sampling_rate, which)
                self._check_transcript(fitted, transcript, rate, which)
                done[source] = (fitted.numpy(), transcript)
            fitted, transcript = done[source]
            new_audios.append(fitted)
            new_texts.append(transcript)
            made.append(transcript)
        if many:
            return new_audios, new_texts, rate, made
        return new_audios[0], new_texts[0], rate, made

    def _transcribe_recording(
        self, audio, sampling_rate, which: str = "", names: PromptNames = CALL_PROMPT_NAMES
    ) -> tuple[torch.Tensor, str]:
        """(the part transcribed, at the prompt rate; its transcript) of one recording given without a transcript: read
        and brought to the prompt rate, cut at a pause (with a warning) when longer than the model's prompts, and
        transcribed by the prompt transcriber. `which` starts its messages (the prompt's index in a call)."""
        rate = self._prompt_rate
        waveform = self.processor.load_prompt_audio(audio, sampling_rate, target_rate=rate, name=names.audio)
        try:
            fitted, transcript, message, cut_message = transcribe_prompt(self.prompt_transcriber, waveform, rate)
        except (ValueError, RuntimeError) as err:
            raise type(err)(which + str(err)) from err
        if cut_message is not None:
            logger.warning(which + cut_message)
        logger.info(which + message)
        return fitted, transcript

    def _check_transcript(
        self,
        waveform: torch.Tensor,
        transcript: str,
        rate: int,
        which: str = "",
        names: PromptNames = CALL_PROMPT_NAMES,
        prepared: bool = False,
    ) -> DiTARVoice:
        """The prompt checks of a call, run on a transcript the recogniser made, so that a refusal quotes it and does
        not blame a transcript the user never gave. Returns the checked voice (for callers that keep one)."""
        try:
            return self._checked_voice(waveform.numpy(), transcript, rate, prepared=prepared, names=names)
        except ValueError as err:
            name = self.prompt_transcriber.name
            raise ValueError(
                f"{which}the transcript {name} made of the voice prompt, {transcript!r}, cannot be used: {err} Give "
                f"the exact transcript of the prompt ({names.text}), or a clip of clear speech."
            ) from err

    def _prompt_encoder(self) -> VAEPromptEncoder | None:
        """The VAE's prompt encoder (None for log-mel features), with the setup a voice made with it records."""
        if self.vae is None:
            return None
        encoder = VAEPromptEncoder(self.vae, self.model.normalize_features)
        config = json.dumps(dict(self.vae.config), sort_keys=True, default=str)
        encoder.feature_setup = {
            "kind": "vae",
            "sampling_rate": vae_sampling_rate(self.vae),
            "hop_length": vae_hop_length(self.vae),
            "latent_dim": vae_latent_dim(self.vae),
            "vae_config_sha256": hashlib.sha256(config.encode("utf-8")).hexdigest(),
            "feature_mean": self.model.config.feature_mean,
            "feature_std": self.model.config.feature_std,
        }
        return encoder

    def save_pretrained(self, save_directory: str | os.PathLike, remote_code: bool = True, **kwargs):
        """Save every component and the default voice, and (with `remote_code`, the default) the code that lets the
        folder load without this package. The folder also serves transformers: its root holds the text-to-speech model
        (`config.json`, `generation_config.json`, the weights, linked to `model/`'s where the file system allows) and
        the processor, for `pipeline("text-to-speech")`, `AutoModelForTextToWaveform`, `AutoModel` and `AutoProcessor`.

        diffusers saves each component in its own subfolder and has no hook for files at the root, hence the override.

        The folder is written into a temporary folder next to `save_directory` and moved into place when complete, so
        a failed save leaves an existing `save_directory` as it was (and no half-written one), and a save over an older
        pipeline folder keeps none of the files a save writes (no stale shard or shard index) but keeps the others: its
        model card (`README.md`), hidden files (`.git`, `.gitattributes` of a cloned repository) and any other file
        of the user's. A folder that holds files and is no pipeline folder is refused (nothing is written).
        """
        push = kwargs.pop("push_to_hub", False)
        hub_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in push_keywords(push)}
        # diffusers hands other keywords to its own upload, which this override replaces: a misspelt one was ignored
        known = set(inspect.signature(DiffusionPipeline.save_pretrained).parameters) - {"self", "save_directory"}
        unknown = sorted(set(kwargs) - known - {"kwargs"})
        if unknown:
            raise TypeError(
                f"save_pretrained() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; it takes "
                f"remote_code, {', '.join(sorted(known - {'kwargs'}))}"
                + (", and with push_to_hub=True the commit and card settings of push_to_hub." if not push else ".")
            )
        if kwargs.get("safe_serialization") is False:
            logger.warning(
                "save_pretrained(safe_serialization=False): the model's weights are saved as safetensors all the same "
                "(model/model.safetensors: transformers writes no pytorch_model.bin); load the folder without "
                "use_safetensors=False."
            )
        target = Path(save_directory).expanduser().resolve()
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"save_directory {str(target)!r} is a file; pass a folder path to save into.")
        if target.is_dir() and not (target / "model_index.json").is_file():
            others = sorted(p.name for p in target.iterdir() if not p.name.startswith("."))
            if others:  # a save replaces what it writes (config.json, *.py, *.safetensors, ...) in the folder
                shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
                raise FileExistsError(
                    f"save_directory {str(target)!r} holds other files ({shown}) and is no pipeline folder (it has no "
                    "model_index.json): saving there could replace some of them. Pass a new or empty folder."
                )
        # the folder asks for the products the model makes now (it may have been switched since the pipeline was built)
        self.register_to_config(matmul_dtype=_matmul_setting_of(self.model, self.config.matmul_dtype))
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
        try:
            os.chmod(staging, 0o777 & ~process_umask())  # mkdtemp makes it private; a saved folder gets the usual mode
            with _parameters_stored_as(self.model, getattr(self, "_stored_dtype", None)):
                super().save_pretrained(staging, **kwargs)
            drop_loaded_from_path(staging)
            # one copy of the default voice, at the root, where the processor looks for it from any subfolder
            shutil.rmtree(staging / "processor" / DEFAULT_VOICE_DIR, ignore_errors=True)
            if self.default_voice is not None:
                write_default_voice(staging, *self.default_voice)
            if remote_code:
                write_pipeline_remote_code(self, staging)
            write_transformers_entry_points(self, staging)
            make_saved_weights_readable(staging)  # safetensors writes them private
            _replace_folder(staging, target, keep=_kept_on_saving)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if push:  # the same save settings as the folder (the push saves its own copy)
            saved_as = {k: kwargs[k] for k in ("variant", "max_shard_size") if k in kwargs}
            self.push_to_hub(hub_kwargs.pop("repo_id", target.name), remote_code=remote_code, **saved_as, **hub_kwargs)

    def to(self, *args, **kwargs):
        """diffusers' `to`, refusing what would leave no usable pipeline: the meta device (the weights' values are
        dropped) and dtypes that are not real floating point (the next call would fail deep inside)."""
        if kwargs.get("dtype") is _KEEP_DTYPES:  # `from_pipe` without a dtype: the components keep theirs
            return self
        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.dtype) and (not value.is_floating_point or value.is_complex):
                raise ValueError(f"the pipeline computes in real floating point; {value} is not (use torch.float32).")
            if _device_type(value) == "meta":
                raise ValueError(
                    "moving the pipeline to the meta device would drop its weights' values and nothing could speak; "
                    "the pipeline is unchanged."
                )
        return super().to(*args, **kwargs)

    def set_progress_bar_config(self, **kwargs):
        """diffusers' setting of the tqdm progress bar, checked now (a misspelt or fixed option failed at the next
        call, inside tqdm)."""
        import inspect

        from tqdm import tqdm  # the options of every tqdm front end (diffusers uses tqdm.auto's)

        known = set(inspect.signature(tqdm.__init__).parameters) - {"self", "iterable", "total", "args", "kwargs"}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"set_progress_bar_config got {unknown}, which tqdm does not take here; options: {sorted(known)}."
            )
        # the values, by the types tqdm needs (a bar is not drawn here: tqdm's instances share a lock across threads)
        number, integer, text = (int, float), int, str
        expected = {"disable": bool, "leave": bool, "position": integer, "ncols": integer, "nrows": integer}
        expected |= {"mininterval": number, "maxinterval": number, "miniters": number, "smoothing": number}
        expected |= {"desc": text, "unit": text, "bar_format": text, "colour": text, "postfix": (text, dict)}
        for name, kind in expected.items():
            value = kwargs.get(name)
            if value is None:
                continue
            wrong_bool = isinstance(value, bool) and kind is not bool
            if wrong_bool or not isinstance(value, kind) or (kind is integer and value < 0):
                raise TypeError(f"set_progress_bar_config: {name} got {value!r}, which tqdm cannot use.")
        return super().set_progress_bar_config(**kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None = None, **kwargs):
        """Load a saved pipeline folder (or Hub repo). With no argument, the default checkpoint embedded in the package.

        The package's own classes are used (the code files saved in the folder for remote code are not executed), and
        the folder's default voice, if any, is loaded. A model stored in half precision (float16 or bfloat16, to stay
        small) computes in float32 unless `dtype=` says otherwise, as diffusers pipelines load: CPUs without native
        half-precision kernels run it several times slower, and the result would depend on how the folder was
        named rather than on what was asked.

        `matmul_dtype`: the dtype the model's transformers multiply in (see
        [`DiTARForConditionalGeneration.set_matmul_dtype`]); default: the folder's `model_index.json` setting. "auto"
        (the embedded default's setting) picks bfloat16 for a float32 model on a CPU where its products pay
        (AVX512-BF16 without AMX) and float32 elsewhere, when the pipeline is built; after moving the pipeline to
        another device, `pipe.model.set_matmul_dtype("auto")` decides again. `torch.float32` keeps every
        multiplication in float32.

        `candidate_locdit=False` loads the model without the folder's distilled candidate LocDiT (as
        [`DiTARForConditionalGeneration.from_pretrained`] does): LocDiT itself then samples the candidates."""
        matmul_dtype_setting(kwargs.get("matmul_dtype"))  # a bad value is refused before anything loads
        candidate_locdit = kwargs.pop("candidate_locdit", None)
        if candidate_locdit not in (None, False):
            raise ValueError(
                f"candidate_locdit={candidate_locdit!r}: on loading it can only be False (leave out the folder's "
                "candidate LocDiT); loading cannot add one, a candidate LocDiT is distilled from a trained model."
            )
        if pretrained_model_name_or_path is None:
            if not (EMBEDDED_DEFAULT / "model_index.json").is_file():
                raise ValueError(
                    "No embedded default checkpoint is installed with this copy of modeling_ditar; pass a pipeline "
                    "folder: DiTARPipeline.from_pretrained('path/to/pipeline')."
                )
            pretrained_model_name_or_path = EMBEDDED_DEFAULT
        source = os.path.expanduser(str(pretrained_model_name_or_path))  # as save_pretrained writes "~/..."
        if not os.path.isdir(source) and looks_like_a_local_path(source):
            raise FileNotFoundError(
                f"pretrained_model_name_or_path {source!r} does not exist"
                + (" as a folder (it is a file)" if os.path.exists(source) else "")
                + ": pass the folder of a pipeline saved with DiTARPipeline.save_pretrained, or a Hub repo id such as "
                "'org/name'."
            )
        if not os.path.isdir(source):
            # diffusers' own download would resolve the folder's remote-code pipeline class; fetch the whole repo
            from huggingface_hub import snapshot_download

            hub = {
                k: kwargs[k]
                for k in ("cache_dir", "revision", "token", "local_files_only", "force_download")
                if kwargs.get(k) is not None
            }
            local = snapshot_download(source, **hub)
        else:
            local = source
        check_pipeline_folder(local, use_safetensors=kwargs.get("use_safetensors"), variant=kwargs.get("variant"))
        stored = _stored_dtype(Path(local) / "model" / "config.json")
        if kwargs.get("dtype") is None and kwargs.get("torch_dtype") is None and stored in HALF_DTYPES:
            kwargs["dtype"] = torch.float32
        dtype_key = "torch_dtype" if kwargs.get("torch_dtype") is not None else "dtype"
        if kwargs.get(dtype_key) == "auto":  # transformers' meaning, the stored dtype (diffusers warns, uses float32)
            kwargs[dtype_key] = stored or torch.float32
        if candidate_locdit is False and "model" not in kwargs:  # diffusers passes no settings to one component
            dtype = kwargs.get(dtype_key)
            if isinstance(dtype, dict):  # diffusers' per-component dtypes
                dtype = dtype.get("model", dtype.get("default"))
            # the weight-file options that diffusers would pass on (given only when asked for)
            options = {k: kwargs[k] for k in ("variant", "use_safetensors") if kwargs.get(k) is not None}
            kwargs["model"] = DiTARForConditionalGeneration.from_pretrained(
                Path(local) / "model", candidate_locdit=False, dtype=dtype, **options
            )
        try:
            pipe = super().from_pretrained(local, **kwargs)
        except Exception as err:
            corrupt = _corrupt_weight_file(local)
            if corrupt is None:
                raise
            path, reason = corrupt
            raise OSError(
                f"{path}: the weight file is truncated or corrupt ({reason}); download it again or re-save the "
                "pipeline."
            ) from err
        if local != source:  # record the repo id, as diffusers does
            pipe.register_to_config(_name_or_path=source)
        # the dtype the weights were stored in: saving writes them in it again while they still fit it exactly (a
        # float16 checkpoint computed in float32 stays float16 on disk), see `_parameters_stored_as`
        pipe._stored_dtype = stored
        return pipe

    @classmethod
    def from_pipe(cls, pipeline, **kwargs):
        """diffusers' `from_pipe`: a new pipeline with the components of `pipeline`, the same objects (no memory is
        copied), except those given as keywords (`scheduler=...`). What changes a shared component, such as
        `pipe.model.set_matmul_dtype(...)`, a LoRA or a new default voice (the processor holds it), changes it for both
        pipelines. `dtype=` converts the shared components, so both pipelines then compute in it; without it they keep
        their dtypes (diffusers' own `from_pipe` converts them to float32). `matmul_dtype` is refused unless a `model`
        of the new pipeline's own is given: on the shared model it would change how both pipelines multiply."""
        if kwargs.get("matmul_dtype") is not None and "model" not in kwargs:
            raise ValueError(
                "from_pipe shares the pipeline's model, so matmul_dtype would change how both pipelines multiply. "
                "Change the shared model for both with pipe.model.set_matmul_dtype(...), or load a pipeline of its "
                "own: DiTARPipeline.from_pretrained(folder, matmul_dtype=...)."
            )
        # diffusers carries a model component over only when its class is the one the `__init__` annotation names, and
        # the vocoder and the VAE have none (see `__init__`), so they are handed over here
        source_components = getattr(pipeline, "components", {})
        for name in ("vocoder", "vae"):
            if name not in kwargs and name in source_components:
                kwargs[name] = source_components[name]
        if kwargs.get("dtype") is None and kwargs.get("torch_dtype") is None:
            kwargs["dtype"] = _KEEP_DTYPES
        shared_model = "model" not in kwargs
        if shared_model:
            kwargs["matmul_dtype"] = None  # the source's setting would be applied to the shared model again
        new = super().from_pipe(pipeline, **kwargs)
        if shared_model and new.model is getattr(pipeline, "model", None):
            new.register_to_config(matmul_dtype=_matmul_setting_of(new.model, pipeline.config.get("matmul_dtype")))
            # the same model saves its weights in the dtype they were loaded from (see `from_pretrained`)
            if hasattr(pipeline, "_stored_dtype"):
                new._stored_dtype = pipeline._stored_dtype
        return new

    @classmethod
    def load_config(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`model_index.json` with the remote-code component names mapped to this package's modules (see
        `hub_utils.installed_libraries`), so that loading through the class never runs code from the folder."""
        out = super().load_config(pretrained_model_name_or_path, *args, **kwargs)
        if isinstance(out, tuple):
            return (installed_libraries(out[0], _PACKAGE, _CODE_DIR), *out[1:])
        return installed_libraries(out, _PACKAGE, _CODE_DIR)

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload the pipeline (weights, remote code, default voice) with a rendered model card in one commit.

        Keywords: `commit_message`, `private`, `token`, `revision`, `create_pr`, and card settings such as
        `results="eval/results.json"` (see `hub_utils.push_to_hub` and `hub_utils.render_model_card`)."""
        from .hub_utils import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    # ----------------------------------------------------------------------------------------------------------------
    # inputs

    def check_inputs(
        self,
        text,
        prompt_audio,
        prompt_text,
        num_inference_steps,
        guidance_scale,
        temperature,
        max_new_patches,
        output_type,
        num_candidates=None,
        generator=None,
        voice=None,
        candidate_prune_after_patches=None,
        prompt_spectrum_match=None,
    ) -> GenerationSettings:
        """Raise a ValueError or TypeError naming the first bad argument; return the call's sampler settings, resolved
        (call, then generation config) and checked by the generation config's rules, for every generation it makes."""
        texts = [text] if isinstance(text, str) else text
        if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"text must be a string or a non-empty list of strings, got {text!r:.80}.")
        for index, t in enumerate(texts):
            if not t.strip():
                which = "text" if isinstance(text, str) else f"text[{index}] of the {len(texts)} texts"
                raise ValueError(f"{which} is empty or whitespace only; give the words to speak.")
        refuse_audio_rate_pair(prompt_audio, "prompt_audio")
        if isinstance(prompt_audio, (list, tuple)) and len(prompt_audio) not in (1, len(texts)):
            raise ValueError(
                f"got {len(prompt_audio)} prompt_audio for {len(texts)} texts; give one prompt for all or one per text."
            )
        if isinstance(prompt_text, (list, tuple)) and len(prompt_text) not in (1, len(texts)):
            raise ValueError(
                f"got {len(prompt_text)} prompt_text for {len(texts)} texts; "
                "give one transcript for all or one per text."
            )
        if voice is not None:
            voices = voice if isinstance(voice, (list, tuple)) else [voice]
            if prompt_audio is not None or prompt_text is not None:
                raise ValueError("give either voice or prompt_audio and prompt_text, not both.")
            if not voices or len(voices) not in (1, len(texts)):
                raise ValueError(
                    f"got {len(voices)} voices for {len(texts)} texts; give one voice for all or one per text."
                )
            for item in voices:
                self.processor.check_voice(item, self._prompt_encoder())
        if prompt_audio is None and prompt_text is not None:
            raise ValueError("prompt_text was given without prompt_audio; pass both or neither.")
        transcripts = prompt_text if isinstance(prompt_text, (list, tuple)) else [prompt_text]
        if prompt_audio is not None and self.prompt_transcriber is None and any(t is None for t in transcripts):
            raise ValueError(MISSING_PROMPT_TEXT)
        if prompt_audio is None and voice is None and self.default_voice is None:
            raise ValueError(
                "no prompt_audio was given and this pipeline has no default voice; pass prompt_audio and prompt_text "
                "or call pipe.set_default_voice(audio, transcript)."
            )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        # the sampler's settings, checked by the same rules as the generation config's
        settings = self.model.generation_settings(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            temperature=temperature,
            max_new_patches=max_new_patches,
            num_candidates=num_candidates,
            candidate_prune_after_patches=candidate_prune_after_patches,
            prompt_spectrum_match=prompt_spectrum_match,
        )
        for name in ("prompt_spectrum_match", "prompt_spread_match"):
            if getattr(settings, name) > 0 and self.vae is not None:
                raise ValueError(
                    f"{name}={getattr(settings, name):g} changes log-mel spectra, and this pipeline generates VAE "
                    f"latents; pass {name}=0 where the call takes it, or set pipe.model.generation_config.{name} = 0."
                )
        generators = generator if isinstance(generator, (list, tuple)) else [generator]
        if generator is not None and not all(isinstance(g, torch.Generator) for g in generators):
            raise TypeError(
                f"generator must be a torch.Generator or a list of them (one per text), got {generator!r:.60}; "
                "for a seed, pass generator=torch.Generator().manual_seed(seed)."
            )
        if isinstance(generator, (list, tuple)) and len(generator) != len(texts):
            raise ValueError(
                f"got {len(generator)} generators for a batch of {len(texts)}; pass a list of one per text, or a "
                "single torch.Generator (not in a list) for the whole batch."
            )
        if isinstance(generator, (list, tuple)):
            first = {}
            for index, g in enumerate(generator):
                if id(g) in first:
                    # [torch.manual_seed(0), torch.manual_seed(1)] is torch's global generator twice, reseeded to 1
                    logger.warning(
                        f"generator[{first[id(g)]}] and generator[{index}] are the same torch.Generator (torch."
                        "manual_seed(s) returns torch's one global generator), so those texts draw from one random "
                        "stream and neither gives what it gives alone with its seed; give each text its own: "
                        "[torch.Generator().manual_seed(s) for s in seeds]."
                    )
                    break
                first[id(g)] = index
        if settings.guidance_scale < 1:
            logger.warning(
                f"guidance_scale={settings.guidance_scale:g} is below 1: the text conditioning is weakened (0 ignores "
                "the text), so the speech may not follow the text nor stop before the patch cap; use 1 to 3."
            )
        return settings

    def encode_inputs(
        self, texts: list[str], prompt_audio, prompt_text, sampling_rate, voice=None
    ) -> dict[str, torch.Tensor]:
        """Model inputs of `texts` in a voice: `voice` (a [`DiTARVoice`] or one per text), else the prompt (default:
        the default voice). With one `DiTARVoice` for every row, it is also returned under "voice" (for its KV
        cache)."""
        encoder = self._prompt_encoder()
        if voice is not None:
            inputs = self.processor(texts, voice=voice, prompt_encoder=encoder)
        else:
            if prompt_audio is None:
                audio, rate, transcript = self.default_voice
                prompt_audio, prompt_text, sampling_rate = audio, transcript, rate
            inputs = self.processor(
                texts,
                prompt_text=prompt_text,
                prompt_audio=prompt_audio,
                sampling_rate=sampling_rate,
                prompt_encoder=encoder,
            )
        self._check_prompts(inputs["prompt_attention_mask"].sum(1), inputs.get("speech_position_rate"))
        device = self._execution_device  # diffusers looks it up through every component's modules: once
        out = {k: v.to(device) for k, v in inputs.items()}
        voices = voice if isinstance(voice, (list, tuple)) else [voice]
        if voice is not None and all(v is voices[0] for v in voices):
            out["voice"] = voices[0]
        return out

    def _encode(self, texts, prompt_audio, prompt_text, sampling_rate, voice):
        """`encode_inputs`, called with `voice` only when there is one (wrappers of `encode_inputs` that take the
        four prompt arguments keep working)."""
        if voice is None:
            return self.encode_inputs(texts, prompt_audio, prompt_text, sampling_rate)
        return self.encode_inputs(texts, prompt_audio, prompt_text, sampling_rate, voice=voice)

    def _check_scripts(self, texts: list[str]) -> None:
        """Raises the text front end's error for a text in another writing system (English models with the language
        check on), for every text at once; its warnings come later, when each text is encoded."""
        frontend = getattr(self.processor, "frontend", None)
        if frontend is not None and hasattr(frontend, "check_text_script"):
            for text in texts:
                frontend.check_text_script(text)

    @property
    def _frame_hop(self) -> int:
        """Samples per frame of the model's features (log-mel, or a VAE's latents) at `sample_rate`."""
        return vae_hop_length(self.vae) if self.vae is not None else self.processor.feature_extractor.hop_length

    def _check_prompts(
        self, frames: torch.Tensor, rate: torch.Tensor | None, names: PromptNames = CALL_PROMPT_NAMES
    ) -> None:
        hop = self._frame_hop
        config = self.model.config
        check_prompt_length(frames, config.patch_size, config.num_history_patches, hop, self._prompt_rate, names.audio)
        if rate is not None:
            check_prompt_speaking_rate(rate, frames, hop, self._prompt_rate, names)

    def _voice_cache(self, inputs: dict):
        """The backbone's KV cache of the voice's transcript for these inputs, or None where it does not apply:
        no single voice, `reuse_prefix_cache` off, padded rows (the prefix would not start every row at column 0), a
        static cache, training, and products in less than float32 (a model in half precision, or bfloat16 matmuls):
        the cache comes from a shorter backbone call, and its larger rounding there turned into other sampled speech
        than the same seed gives without a voice, for a saving under 1% of a call."""
        voice = inputs.get("voice")
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        if voice is None or not voice.reuse_prefix_cache or self.model.training:
            return None
        if self.model.dtype != torch.float32 or self.model.matmul_dtype != torch.float32:
            return None
        if self.model.generation_speedups.static_cache or not bool(mask.all()):
            return None
        prefix = voice.prompt_input_ids.to(ids.device)
        if ids.shape[1] <= prefix.numel() or not bool((ids[:, : prefix.numel()] == prefix).all()):
            return None
        # one row: `generate` repeats it for the texts, and with best of K prefills the rest of the prompt once per text
        # and repeats that for the candidates; a cache of all K x texts rows would make it prefill every candidate
        return voice.prefix_cache(self.model)

    # ----------------------------------------------------------------------------------------------------------------
    # generation

    def _patch_steps(
        self,
        inputs: dict,
        sampling: GenerationSettings,
        generator,
        callback_on_patch_end,
        progress: GenerationProgress,
    ) -> Iterator[PatchStep]:
        """`generate_patches` over rows laid out as `repeat_for_candidates` lays them out (K candidates per text).
        Each patch is counted on `progress`, the bar of the call or stream that asked for it (see
        `generation_progress`). A callback that sets `pipe._interrupt = True` ends the loop after its patch (see
        `interrupt`)."""
        self._warn_if_forward_compiled()
        steps = self.model.generate_patches(
            inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            prompt_features=inputs["prompt_features"],
            prompt_attention_mask=inputs["prompt_attention_mask"],
            max_new_patches=sampling.max_new_patches,
            num_inference_steps=sampling.num_inference_steps,
            guidance_scale=sampling.guidance_scale,
            temperature=sampling.temperature,
            generator=generator,
            scheduler=self.scheduler,
            speech_position_rate=inputs.get("speech_position_rate"),
            past_key_values=self._voice_cache(inputs),
            candidates_per_text=sampling.num_candidates,
            candidate_prune_after_patches=sampling.candidate_prune_after_patches,
        )
        progress.start_segment(inputs, sampling)
        for step in steps:
            if callback_on_patch_end is not None:
                callback_on_patch_end(self, step.index, step)
            progress.update()
            yield step
            if callback_on_patch_end is not None and self._interrupt:
                steps.close()
                break
        progress.end_segment()

    def _streaming_vocoder(self) -> StreamingVocoder:
        # the soft limiter keeps peaks below -1 dBFS, chunk by chunk (stream and one-shot stay identical)
        return StreamingVocoder(VAEVocoder(self.vae) if self.vae is not None else self.vocoder, limiter=soft_limit)

    @torch.no_grad()
    def __call__(
        self,
        text: str | list[str] | None = None,
        prompt_audio=None,
        prompt_text: str | list[str] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        max_new_patches: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_patch_end: Callable[[DiTARPipeline, int, PatchStep], None] | None = None,
        sampling_rate: int | None = None,
        num_candidates: int | None = None,
        voice: DiTARVoice | list[DiTARVoice] | None = None,
        candidate_prune_after_patches: int | None = None,
        prompt_spectrum_match: float | None = None,
        **unknown,
    ) -> DiTARPipelineOutput | tuple:
        r"""
        Args:
            text: what to say; a list gives a batch. A line break ends a sentence (a list item, a heading, a sign-off).
            prompt_audio / prompt_text: the voice to clone (path or array, and its transcript); one for all texts or one
                per text. Default: the pipeline's default voice. After `enable_prompt_transcription()`, a prompt
                without `prompt_text` (None, or None in the list) is transcribed by a speech recognition model.
            num_inference_steps: LocDiT ODE steps per patch (default from the model's generation config). With
                several candidates and a model that has a candidate LocDiT, the patches before the candidates are
                pruned are sampled by that LocDiT at its own `candidate_num_inference_steps` (generation config), so
                this setting applies from the pruning on: a text shorter than `candidate_prune_after_patches`
                patches does not change with it.
            guidance_scale: LM guidance g >= 0, v = v(0) + g (v(h) - v(0)); 1 disables it (paper's w = g - 1).
            temperature: tau in [0, 1], where on the reverse ODE noise is injected (rounded to the nearest of the
                sampler's step times, so with few steps it takes few distinct values); 0 is deterministic.
            max_new_patches: cap on generated patches per text; a long text is spoken in sentence groups, and the cap
                applies to each group (default derived from each group's length).
            generator: `torch.Generator` (or one per text) for reproducible sampling.
            output_type: "np" (float32 waveforms), "pt" (tensors) or "features" (de-normalised features, a float32
                tensor `[B, T, D]`).
            callback_on_patch_end: `fn(pipe, patch_index, patch_step)` after every generated patch (what it returns is
                not used). To stop early, set `pipe._interrupt = True` in it, as in diffusers: the call returns what
                was generated so far (rows marked not `stopped`); or raise in it to abandon the call. `patch_index`
                counts the patches of the batch being generated:
                texts long enough to be split into sentence groups are generated one group after another, and each
                group counts from 0 with its own rows only.
            sampling_rate: rate of array prompts (files carry their own).
            num_candidates: K candidates sampled per text (as one batch of K rows per text); the one whose speech the
                model's CTC head reads as the text most closely is kept (`transcript_ctc_loss`). Default from the
                model config (1 = plain sampling). The callback sees all K rows of every text.
            candidate_prune_after_patches: with K > 1, after this many patches each text keeps only the candidate
                whose speech so far best matches a prefix of its text, and the rest costs one candidate; 0 ranks whole
                candidates. Default from the model config. `stream()` keeps the same candidate.
            voice: a [`DiTARVoice`] from `pipe.create_voice(audio, transcript)` (or one per text) instead of
                `prompt_audio` and `prompt_text`; same audio for the same seed, without re-processing the prompt.
            prompt_spectrum_match: in [0, 1], how far the speech's long-term average spectrum is moved towards the
                voice prompt's before vocoding (speech frames only, estimated as it is generated; see
                `spectrum_matching`); 0 leaves it as generated. Default from the model's generation config. Applies
                to log-mel features (not to a VAE's latents); `output_type="features"` returns the moved features.
        Returns:
            [`DiTARPipelineOutput`] or `(audios,)`.
        """
        # 1. check inputs; the call's settings, resolved once for every generation it makes
        _refuse_unknown_arguments("__call__", self.__call__, unknown)
        if not isinstance(return_dict, bool):
            raise TypeError(f"return_dict must be True or False, got {return_dict!r}.")
        _check_patch_callback(self, callback_on_patch_end)
        sampling = self.check_inputs(
            text,
            prompt_audio,
            prompt_text,
            num_inference_steps,
            guidance_scale,
            temperature,
            max_new_patches,
            output_type,
            num_candidates,
            generator=generator,
            voice=voice,
            candidate_prune_after_patches=candidate_prune_after_patches,
            prompt_spectrum_match=prompt_spectrum_match,
        )
        transcripts = None
        if voice is None:
            prompt_audio, prompt_text, sampling_rate, transcripts = self._transcribe_missing(
                prompt_audio, prompt_text, sampling_rate
            )
            prompt_audio, prompt_text, sampling_rate = fit_prompts(self, prompt_audio, prompt_text, sampling_rate)
        # line breaks end sentences before the split (which collapses whitespace); the processor's own marking of
        # each piece then finds none left
        texts = [mark_line_ends(t) for t in ([text] if isinstance(text, str) else text)]

        # 2. long texts are spoken sentence by sentence with the same voice
        segments = [split_sentences(t, MAX_CHARS_PER_SEGMENT) for t in texts]
        spoken_in_turn = any(len(s) > 1 for s in segments)
        if spoken_in_turn:
            # texts are then encoded one sentence at a time: check them all before any sentence is generated (a batch
            # of short texts is encoded, and checked, together before generation anyway)
            self._check_scripts([s for segs in segments for s in segs])
        # the call's own progress bar, handed down to where its patches are counted: concurrent calls (threads, a
        # stream between whose chunks this call runs) each count on their own
        progress = GenerationProgress(self, [len(s) for segs in segments for s in segs] if spoken_in_turn else [1])
        self._interrupt = False  # as diffusers pipelines start a call
        try:
            with self._generating():  # an offloaded model is on the accelerator until the last patch
                if spoken_in_turn:
                    if voice is None:  # one prompt for all texts is read, checked and encoded once, not once per text
                        voice = self._shared_prompt_voice(prompt_audio, prompt_text, sampling_rate, len(texts))
                    outputs = [
                        self._generate_segments(
                            segs,
                            _pick(prompt_audio, i),
                            _pick(prompt_text, i),
                            sampling_rate,
                            _pick(voice, i),
                            sampling,
                            _pick(generator, i),
                            callback_on_patch_end,
                            progress=progress,
                        )
                        for i, segs in enumerate(segments)
                    ]
                    features = [o[0] for o in outputs]
                    stopped = [o[1] for o in outputs]
                else:
                    # 3. encode text and prompt, 4. generate all rows together
                    inputs = self._encode(texts, prompt_audio, prompt_text, sampling_rate, voice)
                    features, stopped = self._generate_rows(
                        inputs, sampling, generator, callback_on_patch_end, progress=progress
                    )
        finally:
            progress.close()  # also the bar of a call that failed or was interrupted
            interrupted = self._interrupts.pop(threading.get_ident(), False)
        if not interrupted:  # rows a callback ended are not stopped, and the patch cap did not end them
            self._warn_if_cut(stopped, sampling.max_new_patches)
            self._warn_if_too_short([self._seconds_of(f) for f in features], texts, stopped)

        # 5. post-process: de-normalised features or waveform through the vocoder
        if output_type == "features":
            items = features
        else:
            items = [self._streaming_vocoder().decode(f) for f in features]
        lengths = [int(x.shape[0]) for x in items]
        # padded log-mel rows hold silence (the features' floor), so padding vocoded by mistake stays quiet; waveforms
        # and a VAE's latents are zero-padded
        pad = self.processor.feature_extractor.log_mel_floor if output_type == "features" and self.vae is None else 0.0
        padded = torch.full((len(items), max(lengths), *items[0].shape[1:]), float(pad))
        for row, x in enumerate(items):
            padded[row, : x.shape[0]] = x
        audios = padded.numpy() if output_type == "np" else padded
        if not return_dict:
            return (audios,)
        if transcripts is not None and len(transcripts) != len(texts):  # one prompt for every text
            transcripts = transcripts * len(texts)
        return DiTARPipelineOutput(
            audios=audios, audio_lengths=lengths, stopped=stopped, prompt_transcripts=transcripts
        )

    def _seconds_of(self, features: torch.Tensor) -> float:
        """How long the speech of `features` (frames of log-mel, or of a VAE's latents) lasts."""
        return features.shape[0] * self._frame_hop / self.sample_rate

    def _warn_if_too_short(self, seconds: list[float], texts: list[str], stopped: list[bool]) -> None:
        """Warn when the model ended a text's speech sooner than its words can be said (`too_short_message`)."""
        message = too_short_message(seconds, [least_seconds_of_text(text) for text in texts], stopped)
        if message is not None:
            logger.warning(message)

    def _warn_if_cut(self, stopped: list[bool], max_new_patches: int | None) -> None:
        """Warn when the patch cap derived from a text's length, not the model, ended it (`cut_by_cap_message`)."""
        message = cut_by_cap_message(stopped, max_new_patches)
        if message is not None:
            logger.warning(message)

    def _generate_rows(
        self,
        inputs: dict,
        sampling: GenerationSettings,
        generator,
        callback_on_patch_end,
        progress: GenerationProgress,
    ) -> tuple[list[torch.Tensor], list[bool]]:
        """De-normalised features and stop flags per text; with K = num_candidates > 1 every text is sampled K times
        in one batch and one candidate is kept (pruned after `candidate_prune_after_patches` patches, else ranked
        whole; see `candidate_pruning`)."""
        num_candidates = sampling.num_candidates
        matchers = self._spectrum_matches(inputs, sampling)
        inputs, generator = repeat_for_candidates(inputs, generator, num_candidates)
        patches, counts, stopped, dropped = [], None, None, None
        for step in self._patch_steps(inputs, sampling, generator, callback_on_patch_end, progress=progress):
            patches.append(step.patch)
            counts = step.active.long() if counts is None else counts + step.active.long()
            stopped, dropped = step.stopped, step.dropped
        frames = torch.stack(patches, dim=1).flatten(1, 2)  # [B*K, N*P, D], normalised
        patch = self.model.config.patch_size
        rows = [frames[row, : int(counts[row]) * patch] for row in range(frames.shape[0])]
        stopped = stopped.tolist()
        if num_candidates > 1:
            best = choose_candidates(self.model, inputs, rows, num_candidates, dropped)
            rows, stopped = [rows[i] for i in best], [stopped[i] for i in best]
        features = [self.model.denormalize_features(r.float()).cpu() for r in rows]
        return [f if match is None else match(f) for f, match in zip(features, matchers, strict=True)], stopped

    def _spectrum_matches(self, inputs: dict, sampling: GenerationSettings) -> list[PromptSpectrumMatch | None]:
        """The prompt spectrum matching of each text's speech (None where the call's settings switch it off)."""
        prompts, masks = inputs.get("prompt_features"), inputs.get("prompt_attention_mask")
        return prompt_spectrum_matches(self.model, prompts, masks, sampling, len(inputs["input_ids"]))

    def _generate_segments(
        self,
        segments: list[str],
        prompt_audio,
        prompt_text,
        sampling_rate,
        voice: DiTARVoice | None,
        sampling: GenerationSettings,
        generator,
        callback_on_patch_end,
        progress: GenerationProgress,
    ) -> tuple[torch.Tensor, bool]:
        """One text spoken sentence by sentence with the same voice, a short pause between sentences."""
        pause = self._pause_frames()
        pieces, all_stopped = [], True
        if voice is None and len(segments) > 1:
            voice = self._prompt_as_voice(prompt_audio, prompt_text, sampling_rate)
        for segment in segments:
            if self._interrupt:  # a callback ended the call: the rest of the text is not spoken
                all_stopped = False
                break
            inputs = self._encode([segment], prompt_audio, prompt_text, sampling_rate, voice)
            features, stopped = self._generate_rows(
                inputs, sampling, generator, callback_on_patch_end, progress=progress
            )
            pieces += [features[0], pause]
            all_stopped = all_stopped and stopped[0]
        if not pieces:  # ended before this text began
            return pause[:0], False
        return torch.cat(pieces[:-1]), all_stopped

    def _shared_prompt_voice(self, prompt_audio, prompt_text, sampling_rate, count: int) -> DiTARVoice | None:
        """The voice (`_prompt_as_voice`) of the prompt all `count` texts of a call use: one recording (or the same
        one for each text) with one transcript, or the default voice. None when the texts have prompts of their own,
        each then encoded with its text."""
        audios = [_pick(prompt_audio, i) for i in range(count)]
        transcripts = [_pick(prompt_text, i) for i in range(count)]
        if not all(t is None or isinstance(t, str) for t in transcripts):
            return None  # the processor names the mistake where the text is encoded
        if any(a is not audios[0] for a in audios) or any(t != transcripts[0] for t in transcripts):
            return None
        return self._prompt_as_voice(audios[0], transcripts[0], sampling_rate)

    def _prompt_as_voice(self, prompt_audio, prompt_text, sampling_rate) -> DiTARVoice | None:
        """The prompt (default: the default voice) of a text spoken in several sentence groups (or of all the texts of
        a call that share it), read, checked and encoded once for all of them, so that its warnings are logged once,
        not once per group. Without the prefix cache, so the speech is bit-identical to encoding it with each group.
        None without a prompt."""
        if prompt_audio is None:
            if self.default_voice is None:
                return None
            prompt_audio, sampling_rate, prompt_text = self.default_voice
        voice = self.processor.create_voice(
            prompt_audio, prompt_text, sampling_rate, prompt_encoder=self._prompt_encoder(), names=CALL_PROMPT_NAMES
        )
        voice.reuse_prefix_cache = False
        return voice

    def _pause_frames(self) -> torch.Tensor:
        """Frames of silence between sentences: the feature value of silence is the log floor (for a VAE: the latents
        of silent audio)."""
        if self.vae is not None:
            if self._vae_pause is None:
                rate = vae_sampling_rate(self.vae)
                silence = torch.zeros(max(1, round(SENTENCE_PAUSE_SECONDS * rate)))
                self._vae_pause = encode_waveforms(self.vae, [silence])[0][0]  # [T, D]
            return self._vae_pause
        fe = self.processor.feature_extractor
        count = max(1, round(SENTENCE_PAUSE_SECONDS * fe.sampling_rate / fe.hop_length))
        return torch.full((count, fe.feature_size), float(fe.log_mel_floor))

    @torch.no_grad()
    def stream(
        self,
        text: str | None = None,
        prompt_audio=None,
        prompt_text: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        temperature: float | None = None,
        max_new_patches: int | None = None,
        generator: torch.Generator | None = None,
        sampling_rate: int | None = None,
        voice: DiTARVoice | None = None,
        num_candidates: int | None = None,
        candidate_prune_after_patches: int | None = None,
        prompt_spectrum_match: float | None = None,
        **unknown,
    ) -> SpeechStream:
        """Yield float32 waveform chunks while patches are generated; joined, they equal `pipe(...).audios[0]` for the
        same arguments and seed, candidates included: streaming samples `num_candidates` candidates (default: the
        generation config's) and keeps the same one as `pipe(...)`. Until only one candidate is left it plays only
        the patches all candidates share (the generation config's `candidate_shared_patches`), so the rest of the
        audio comes after `candidate_prune_after_patches` patches when that is set, and only at the end of each
        sentence when it is not (whole candidates are ranked); `num_candidates=1` streams from the first patch. The
        arguments (generator and settings included, and the prompt audio) are checked when `stream`
        is called, before the first chunk is asked for. The generator (or, without one, torch's global one) is drawn
        from while the stream is iterated, as the patches are made: give streams consumed side by side a generator
        each, and leave it alone until the stream ends, for the audio of `pipe(...)` with the same seed.

        Returns a [`SpeechStream`]: iterate it for the chunks; once it is exhausted, `stream.finished_reason` is
        `"stopped"` (the model ended the speech) or `"max_new_patches"` (the patch cap cut it, so it may be truncated),
        and `stream.stopped` is True / False accordingly (both are None until the last chunk has been taken)."""
        _refuse_unknown_arguments("stream", self.stream, unknown)
        if not isinstance(text, str):
            raise ValueError("stream() speaks one text at a time; pass a string (call it once per text).")
        sampling = self.check_inputs(
            text,
            prompt_audio,
            prompt_text,
            num_inference_steps,
            guidance_scale,
            temperature,
            max_new_patches,
            "np",
            num_candidates,
            generator=generator,
            voice=voice,
            candidate_prune_after_patches=candidate_prune_after_patches,
            prompt_spectrum_match=prompt_spectrum_match,
        )
        transcripts = None
        if voice is None:
            prompt_audio, prompt_text, sampling_rate, transcripts = self._transcribe_missing(
                prompt_audio, prompt_text, sampling_rate
            )
            prompt_audio, prompt_text, sampling_rate = fit_prompts(self, prompt_audio, prompt_text, sampling_rate)
            if prompt_audio is None and self.default_voice is not None:
                # the voice of the whole stream: a default voice set between two chunks does not change later sentences
                prompt_audio, sampling_rate, prompt_text = self.default_voice
        segments = split_sentences(text, MAX_CHARS_PER_SEGMENT)
        self._check_scripts(segments[1:])  # a later sentence in another script fails now, not after audio was played
        if voice is None and len(segments) > 1:
            voice = self._prompt_as_voice(prompt_audio, prompt_text, sampling_rate)
        first_inputs = self._encode([segments[0]], prompt_audio, prompt_text, sampling_rate, voice)  # fail now
        # the generator reports its end to `outcome`, not to the stream (holding it would be a cycle: see StreamOutcome)
        outcome = StreamOutcome()
        chunks = self._stream(
            outcome, segments, first_inputs, prompt_audio, prompt_text, sampling_rate, voice, sampling, generator
        )
        stream = SpeechStream(chunks, outcome)
        stream.prompt_transcript = transcripts[0] if transcripts else None
        return stream

    @torch.no_grad()
    def _stream(
        self,
        outcome: StreamOutcome,
        segments,
        first_inputs,
        prompt_audio,
        prompt_text,
        sampling_rate,
        voice: DiTARVoice | None,
        sampling: GenerationSettings,
        generator,
    ) -> Iterator[np.ndarray]:
        num_candidates = sampling.num_candidates
        vocoder = self._streaming_vocoder()
        # the stream's own bar, open while it is iterated (a call made between two chunks counts on its own)
        progress = GenerationProgress(self, [len(s) for s in segments])
        all_stopped, samples = True, 0
        # an offloaded model stays on the accelerator from the first patch to the last, also while the stream waits
        # between chunks (see `_generating`); a stream closed or dropped before its end lets it go and closes its bar
        with self._generating(), contextlib.closing(progress):
            for index, segment in enumerate(segments):
                if index == 0:
                    inputs = first_inputs
                else:
                    inputs = self._encode([segment], prompt_audio, prompt_text, sampling_rate, voice)
                # as one-shot generation moves this segment's frames
                match = self._spectrum_matches(inputs, sampling)[0]
                # the rows of one-shot generation; the candidate it keeps is played once it is known
                inputs, segment_generator = repeat_for_candidates(inputs, generator, num_candidates)
                follower = CandidateFollower(
                    num_candidates,
                    lambda rows, dropped, inputs=inputs: choose_candidates(
                        self.model, inputs, rows, num_candidates, dropped
                    )[0],
                )
                for step in self._patch_steps(inputs, sampling, segment_generator, None, progress):
                    for chunk in self._vocode_patches(vocoder, follower.push(step), match):
                        samples += len(chunk)
                        yield chunk
                for chunk in self._vocode_patches(vocoder, follower.finish(), match):
                    samples += len(chunk)
                    yield chunk
                all_stopped = all_stopped and follower.stopped
                if index + 1 < len(segments):
                    for chunk in vocoder.push(self._pause_frames()):
                        samples += len(chunk)
                        yield chunk.numpy()
        for chunk in vocoder.flush():
            samples += len(chunk)
            yield chunk.numpy()
        self._warn_if_cut([all_stopped], sampling.max_new_patches)
        self._warn_if_too_short([samples / self.sample_rate], [" ".join(segments)], [all_stopped])
        outcome.finish(all_stopped)

    def _warn_if_forward_compiled(self) -> None:
        """`pipe.model = torch.compile(pipe.model)` and `pipe.model.compile()` compile the model's `forward`, which
        generation never calls (it runs the model's parts patch by patch): they compile nothing. Say so, once."""
        model = self.model
        wrapped = is_compiled_module(model)  # torch.compile(model)
        if wrapped or getattr(model, "_compiled_call_impl", None) is not None:  # model.compile()
            warn_once(
                logger,
                "compiled model forward",
                f"{'torch.compile(pipe.model)' if wrapped else 'pipe.model.compile()'} compiles the model's forward(), "
                "which generation never calls (it runs the model's parts patch by patch): nothing is compiled and the "
                "pipeline runs as before. For compiled generation call "
                "pipe.model.enable_fast_generation(compile=True), which compiles LocDiT's per-step call, where "
                "generation spends most of its time.",
            )

    @contextlib.contextmanager
    def _generating(self) -> Iterator[None]:
        """While a call or stream generates: an offloaded model (`enable_model_cpu_offload`) is on the accelerator, and
        goes back to the CPU when the last call or stream generating with it ends, also on an error or when a stream
        is closed or dropped (see `_GENERATING`). Without offloading, nothing is moved."""
        model = self.model  # the model this generation holds, even if `pipe.model` is replaced meanwhile
        try:
            _start_generating(model)
            yield
        finally:
            _end_generating(model)

    def maybe_free_model_hooks(self) -> None:
        """Move an offloaded model (`enable_model_cpu_offload`) back to the CPU, unless a call or stream is generating
        with it. Calls and streams do this themselves as they end. Unlike diffusers' version, it does not rebuild the
        offload hooks (which moved the model off under a generation running in another thread) and leaves the vocoder
        or VAE on the accelerator."""
        with _GENERATING_LOCK:
            if self.model not in _GENERATING:
                _offload(self.model)

    def enable_sequential_cpu_offload(self, gpu_id: int | None = None, device: torch.device | str | None = None):
        """Not supported: accelerate's module-by-module offloading fails inside the generation loop, which runs the
        model's parts patch by patch and reads some of its weights outside their modules' `forward`. Use
        `enable_model_cpu_offload()`, which keeps the model off the accelerator between calls."""
        raise NotImplementedError(
            "DiTARPipeline does not support enable_sequential_cpu_offload(): module-by-module offloading fails in its "
            "patch-by-patch generation loop. Use pipe.enable_model_cpu_offload() (the model is moved to the "
            "accelerator for each call and back to the CPU after it), or pipe.to('cuda'): the pipeline is small, and "
            "dtype=torch.bfloat16 halves its memory."
        )

    def _vocode_patches(
        self, vocoder: StreamingVocoder, patches: list[torch.Tensor], match: PromptSpectrumMatch | None = None
    ) -> Iterator[np.ndarray]:
        """The waveform chunks that normalised patches ([P, D] each, in order) complete, moved by `match` first."""
        for patch in patches:
            frames = self.model.denormalize_features(patch.float()).cpu()
            for chunk in vocoder.push(frames if match is None else match(frames)):
                yield chunk.numpy()


# arguments of diffusers' pipelines that DiTAR's calls do not take, and what to use instead
DIFFUSERS_ARGUMENTS = {
    "prompt": "the text to say is `text`; a voice prompt is `prompt_audio` with its transcript `prompt_text`",
    "callback_on_step_end": "use `callback_on_patch_end(pipe, patch_index, patch_step)`, called after every patch; "
    "set `pipe._interrupt = True` in it to stop",
    "callback_on_step_end_tensor_inputs": "`callback_on_patch_end` is handed the patch step itself",
    "negative_prompt": "guidance (`guidance_scale`) contrasts the model with and without its text; there is no "
    "negative prompt",
    "num_waveforms_per_prompt": "for several takes of a text call again with another generator, or give the text "
    "several times with a generator each; `num_candidates` samples several and keeps the one the model reads best",
    "audio_length_in_s": "the speech ends on its own; `max_new_patches` caps its length",
}


def _refuse_unknown_arguments(method: str, function, unknown: dict) -> None:
    """A TypeError for keyword arguments `function` does not take, with the closest name it does take or, for a
    diffusers pipeline's argument, what DiTAR uses instead (Python's own error says neither). `text` defaults to None
    so that `pipe(prompt=...)` gets here; a missing text is refused by the input checks after this."""
    if not unknown:  # every call: the signature is read only for a refusal
        return
    known = [name for name in inspect.signature(function).parameters if name != "unknown"]
    reject_unknown_kwargs(f"DiTARPipeline.{method}", unknown, known, instead=DIFFUSERS_ARGUMENTS)


# the dtype `from_pipe` hands diffusers' `from_pipe` when none was asked for: diffusers then calls `to(dtype=...)` with
# it, which leaves every component as it is (diffusers would convert them to float32)
_KEEP_DTYPES = object()

# Model CPU offload (`enable_model_cpu_offload`). accelerate's hook moves a module when its `forward` runs, and
# generation runs the model's parts patch by patch, never its `forward`, so the pipeline moves the model itself, as
# diffusers' `apply_forward_hook` does for a VAE's `decode`. The calls and streams generating with a model at one time
# (threads, a call between two chunks of a stream, pipelines sharing the model through `from_pipe`) are counted per
# model: each moves it in as it starts, and the last to end moves it out. One lock keeps the count and the moves in
# step; it is re-entrant because a stream dropped unfinished ends, and counts down, wherever it is garbage-collected,
# which can be inside a move made under the lock.
_GENERATING_LOCK = threading.RLock()
_GENERATING: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> how many generate with it


def _offload_hooks(model) -> list:
    """The accelerate `CpuOffload` hooks that `enable_model_cpu_offload` put on `model` (none without offloading)."""
    hook = getattr(model, "_hf_hook", None)
    if hook is None:
        return []
    from accelerate.hooks import CpuOffload  # accelerate is installed: it put the hook there

    return [h for h in getattr(hook, "hooks", [hook]) if isinstance(h, CpuOffload)]  # `hooks`: a SequentialHook's


def _start_generating(model) -> None:
    with _GENERATING_LOCK:
        _GENERATING[model] = _GENERATING.get(model, 0) + 1  # counted before the move (see the lock)
        for hook in _offload_hooks(model):
            hook.pre_forward(model)  # to the accelerator, unless it is there


def _end_generating(model) -> None:
    with _GENERATING_LOCK:
        _GENERATING[model] -= 1
        if not _GENERATING[model]:
            del _GENERATING[model]
            _offload(model)


def _offload(model) -> None:
    """Move an offloaded model back to the CPU with its hook and free the accelerator's cached memory, as diffusers'
    `enable_model_cpu_offload` does; a model without offload hooks is left alone."""
    hooks = _offload_hooks(model)
    for hook in hooks:
        hook.init_hook(model)
    if hooks:
        from accelerate.utils.memory import clear_device_cache

        clear_device_cache()


def _matmul_setting_of(model, asked: str | None) -> str | None:
    """The `matmul_dtype` a pipeline of `model` records and saves: "auto" as asked (it decides again wherever the
    folder is loaded), otherwise what the model's linears are set to multiply in now, None for the float32 products of
    a model without a setting. So a model switched directly (`pipe.model.set_matmul_dtype`) is saved as it multiplies,
    and a pipeline built on another's components keeps its setting."""
    if asked == "auto":
        return asked
    current = linear_matmul_dtype(model)
    if current == torch.float32 and asked in (None, "float32"):
        return asked
    return matmul_dtype_setting(current)


def _device_type(value) -> str | None:
    """The type of the device `value` (an argument of `to`) names, or None when it names none."""
    if not isinstance(value, (str, torch.device)):
        return None
    try:
        return torch.device(value).type
    except (RuntimeError, TypeError):
        return None


def _align_cpu_tensors(module: torch.nn.Module, alignment: int = 64) -> None:
    """Copy CPU parameters and buffers that sit at unaligned addresses (views into a memory-mapped safetensors file)
    into freshly allocated memory. CPU kernels (MKL/oneDNN) take other code paths for unaligned data, which changes
    results in the last bits; without this a loaded pipeline does not reproduce the saved one's audio bit for bit."""
    with torch.no_grad():
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            if tensor.device.type == "cpu" and tensor.numel() and tensor.data_ptr() % alignment:
                tensor.data = tensor.data.clone()


def _kept_on_saving(entry: Path) -> bool:
    """Whether a save over a pipeline folder keeps its top-level `entry`: one no save writes (the files a push
    replaces), such as its model card, a hidden file or a file of the user's."""
    return not written_by_a_save(entry.name + "/" if entry.is_dir() else entry.name)


def _replace_folder(staging: Path, target: Path, keep=None) -> None:
    """Move the complete folder `staging` to `target`, replacing a folder there: the old one is first renamed aside,
    the entries `keep(path)` accepts (and `staging` lacks) are moved from it into the new one, then it is removed
    (read-only files in it included); if it cannot be removed, a warning names what is left."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rmdir(old)
    os.replace(target, old)
    kept = [name for name in os.listdir(old) if keep is not None and keep(old / name) and not (staging / name).exists()]
    try:
        for name in kept:
            os.replace(old / name, staging / name)
        os.replace(staging, target)
    except OSError:
        for name in kept:  # put the old folder back as it was
            if (staging / name).exists():
                os.replace(staging / name, old / name)
        os.replace(old, target)
        raise

    def writable_then_retry(function, path, _error):
        for folder in (os.path.dirname(path), path):
            with contextlib.suppress(OSError):
                os.chmod(folder, os.stat(folder).st_mode | 0o700)
        with contextlib.suppress(OSError):
            function(path)

    if sys.version_info >= (3, 12):
        shutil.rmtree(old, onexc=writable_then_retry)
    else:
        shutil.rmtree(old, onerror=writable_then_retry)
    if old.exists():
        logger.warning(f"saved to {target}; the previous folder, moved to {old}, could not be removed entirely.")


def check_pipeline_folder(
    folder: str | os.PathLike, use_safetensors: bool | None = None, variant: str | None = None
) -> None:
    """Raise a FileNotFoundError naming what a pipeline folder lacks: `model_index.json`, a component's subfolder,
    `model/config.json`, or model weights that the loading options `use_safetensors` and `variant` can load
    (transformers' own errors for these name another file or none)."""
    folder = Path(folder)
    index = folder / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(
            f"{folder} is not a DiTAR pipeline folder: it has no model_index.json. Pass the folder written by "
            "DiTARPipeline.save_pretrained (or its Hub repo id)."
        )
    try:
        entries = json.loads(index.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{index} is not valid JSON ({err}); re-save the pipeline.") from err
    if not isinstance(entries, dict):
        raise ValueError(
            f"{index} holds a JSON {type(entries).__name__}, not an object of component names; re-save the pipeline "
            "with DiTARPipeline.save_pretrained."
        )
    for name, value in entries.items():
        if name.startswith("_") or not isinstance(value, list) or value[:1] == [None] or not any(value):
            continue
        if not (folder / name).is_dir():
            raise FileNotFoundError(
                f"{folder} lacks the {name}/ folder that model_index.json lists; copy the whole pipeline folder (or "
                "re-save it with DiTARPipeline.save_pretrained)."
            )
    if not (folder / "model" / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder / 'model' / 'config.json'} is missing: the model's configuration is needed to build it; copy "
            "the whole pipeline folder (or re-save it with DiTARPipeline.save_pretrained)."
        )
    _check_model_weights(folder / "model", use_safetensors, variant)


# a weight file of the model: `model.safetensors` or transformers' `pytorch_model.bin` (diffusers' component name
# `diffusion_pytorch_model` too), with an optional variant and shard: `model.fp16.safetensors`,
# `model-00001-of-00002.safetensors`, `model.fp16-00001-of-00002.safetensors`; not other files (`training_args.bin`)
_WEIGHT_FILE = re.compile(
    r"(?:model|pytorch_model|diffusion_pytorch_model)(?:\.(?P<variant>[^.]+?))?(?:-\d+-of-\d+)?"
    r"\.(?P<format>safetensors|bin)"
)


def _check_model_weights(folder: Path, use_safetensors: bool | None, variant: str | None) -> None:
    """Raise a FileNotFoundError naming the fix where the model's weights cannot load with these options (transformers
    names only the files it looked for): weights saved with a variant only, loaded without `variant=`; safetensors
    only, loaded with `use_safetensors=False`. The other components are diffusers' to check: it passes a variant only
    to the folders that have it, and names a variant that none has."""
    files = {name: match for name in sorted(os.listdir(folder)) if (match := _WEIGHT_FILE.fullmatch(name))}
    if not files:
        return
    names = list(files)
    listed = ", ".join(names[:3]) + (f", ... ({len(names)} files)" if len(names) > 3 else "")
    plain = [match["format"] for match in files.values() if match["variant"] is None]
    if variant is None and not plain:
        variants = sorted({match["variant"] for match in files.values()})
        raise FileNotFoundError(
            f"{folder} holds only weights saved with variant={' or '.join(map(repr, variants))} ({listed}); pass "
            f"variant={variants[0]!r} to from_pretrained."
        )
    loaded = [match["format"] for match in files.values() if match["variant"] == variant] or plain
    if use_safetensors is False and "bin" not in loaded:
        raise FileNotFoundError(
            f"{folder} holds the model's weights as safetensors only ({listed}), and use_safetensors=False loads only "
            ".bin files: drop use_safetensors=False (safetensors is the format save_pretrained writes)."
        )


def _corrupt_weight_file(folder: str | os.PathLike) -> tuple[Path, str] | None:
    """The first `.safetensors` file in a pipeline folder (root and component folders) that cannot be opened or is
    shorter than its header says, with the reason; None when all are whole."""
    from safetensors import safe_open

    for path in sorted(Path(folder).glob("*.safetensors")) + sorted(Path(folder).glob("*/*.safetensors")):
        try:
            with open(path, "rb") as handle:
                header_size = int.from_bytes(handle.read(8), "little")
                header = json.loads(handle.read(header_size)) if header_size < 100_000_000 else None
            if header is None:
                return path, "its header is not a safetensors header"
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if path.stat().st_size < 8 + header_size + end:
                return path, f"{path.stat().st_size} bytes, the header describes {8 + header_size + end}"
            with safe_open(str(path), framework="pt"):
                pass
        except Exception as err:  # noqa: BLE001 - any failure to read it is the reason reported
            return path, f"{type(err).__name__}: {err}"
    return None


# dtypes a checkpoint is stored in to stay small, and computed in float32 unless a caller asks for them
HALF_DTYPES = (torch.float16, torch.bfloat16)


def _stored_dtype(config_file: Path) -> torch.dtype | None:
    try:
        name = json.loads(config_file.read_text(encoding="utf-8")).get("dtype")
    except (OSError, ValueError):
        return None
    dtype = getattr(torch, name, None) if isinstance(name, str) else None
    return dtype if isinstance(dtype, torch.dtype) else None


@contextlib.contextmanager
def _parameters_stored_as(model: torch.nn.Module, dtype: torch.dtype | None):
    """While saving, hold the parameters in `dtype` (the dtype they were loaded from) if the model was upcast for
    computing (some parameters are wider than `dtype`) and every value survives the round trip exactly (not trained
    since); otherwise save them as they are: a model converted to a narrower dtype on purpose (float32 to bfloat16, to
    halve the checkpoint) is saved as converted. Buffers (computed, e.g. rotary frequencies) are left alone. Each
    parameter gets its own dtype back afterwards (a LocDiT put in bfloat16 by `set_locdit_dtype` stays so)."""
    params = [p for p in model.parameters() if p.is_floating_point()]
    if (
        dtype is None
        or not any(p.dtype.itemsize > dtype.itemsize for p in params)
        or not all(torch.equal(p.data, p.data.to(dtype).to(p.dtype)) for p in params)
    ):
        yield
        return
    dtypes = [p.dtype for p in params]
    for p in params:
        p.data = p.data.to(dtype)
    try:
        yield
    finally:
        for p, own in zip(params, dtypes, strict=True):
            p.data = p.data.to(own)


def _check_patch_callback(pipe, callback) -> None:
    """A callback that could not be called as `fn(pipe, patch_index, patch_step)` fails before any work, naming the
    form (diffusers' `callback_on_step_end(pipe, step, timestep, callback_kwargs)` failed at the first patch)."""
    if callback is None:
        return
    expected = "callback_on_patch_end must be a function fn(pipe, patch_index, patch_step) or None"
    if not callable(callback):
        raise TypeError(f"{expected}, got {type(callback).__name__}.")
    try:
        signature = inspect.signature(callback)
    except (TypeError, ValueError):  # a builtin or extension callable without a readable signature: trust it
        return
    try:
        signature.bind(pipe, 0, None)
    except TypeError as err:
        raise TypeError(
            f"{expected}; {getattr(callback, '__name__', type(callback).__name__)}{signature} cannot be called so "
            f"({err}). DiTAR's callback gets the pipeline, the patch's index and its PatchStep, and what it returns "
            "is not used."
        ) from None


def _pick(value, index: int):
    if isinstance(value, (list, tuple)):
        return value[index] if len(value) > 1 else value[0]
    return value


def build_pipeline(
    model: DiTARForConditionalGeneration, processor: DiTARProcessor, vocoder=None, scheduler=None, vae=None
) -> DiTARPipeline:
    """Assemble a pipeline with the default scheduler and a Griffin-Lim vocoder matching the processor (or, with
    `vae`, no vocoder: the VAE decodes the latents)."""
    if vae is None and vocoder is None:
        vocoder = processor.build_vocoder()
    scheduler = scheduler if scheduler is not None else FlowMatchEulerDiscreteScheduler(shift=1.0)
    return DiTARPipeline(model=model, processor=processor, scheduler=scheduler, vocoder=vocoder, vae=vae)

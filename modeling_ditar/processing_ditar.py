"""DiTARProcessor: text + prompt transcript + prompt audio -> model inputs.

input_ids = tokens(prompt_text) + [space] + tokens(text) (prompt transcript first, as the prompt audio is the first part
of the speech), right-padded; prompt audio -> mono, resampled, log-mel (or another `prompt_encoder`, e.g. a VAE),
normalised `prompt_features`.

Text goes through DiTAR's character front end (normalise, optionally phonemize, one token per character) when the
tokenizer is a DiTAR character tokenizer ([`build_ditar_tokenizer`]), and straight through the tokenizer otherwise (the
subword tokenizer of a pretrained LM the backbone was initialised from).
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BatchFeature, ProcessorMixin
from transformers.utils import logging

from .audio_utils import (
    load_audio,
    refuse_audio_rate_pair,
    resample_audio,
    to_mono_float32,
    unpack_audio,
    validate_sampling_rate,
)
from .feature_extraction_ditar import DiTARFeatureExtractor, refuse_stacked_clips
from .low_precision import tensor_key
from .prompt_audio import (
    MIN_PROMPT_LOUDNESS_RANGE_DB,
    PROMPT_LEVEL_TARGET_DB,
    QUIET_PROMPT_FLOOR_DB,
    PromptNames,
    check_prompt_is_speech,
    raise_quiet_prompt,
    trim_prompt,
)
from .sentence_splitting import mark_line_ends
from .speech_positions import speaking_rate
from .tokenization_ditar import DiTARTextFrontend

logger = logging.get_logger(__name__)

# keyword arguments of `from_pretrained` that locate files (forwarded to the feature extractor and the tokenizer)
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
_WHITESPACE = re.compile(r"\s+")
# The default voice lives in this folder of a saved repository (at its root, next to `model_index.json` in a pipeline
# folder): `prompt.wav` and its transcript `prompt.txt`.
DEFAULT_VOICE_DIR = "default_voice"
PROMPT_AUDIO_TYPES = (
    "prompt_audio must be a path, a numpy array or torch tensor (with sampling_rate), a `datasets` Audio value "
    "({{'array': ..., 'sampling_rate': ...}}) or a torchcodec AudioDecoder; got {}."
)
# what `DiTARProcessor.create_voice` (and `DiTARPipeline.create_voice`) call their recording and its transcript
VOICE_NAMES = PromptNames(audio="audio", text="transcript")


def audio_type_error(audio, name: str = "prompt_audio") -> TypeError:
    """The error for `audio` of a type no prompt can be read from, naming the argument it was passed as."""
    return TypeError(name + PROMPT_AUDIO_TYPES.removeprefix("prompt_audio").format(type(audio).__name__))


class DiTARProcessor(ProcessorMixin):
    r"""
    Wraps a [`DiTARFeatureExtractor`] and a DiTAR character tokenizer (see [`build_ditar_tokenizer`]); phonemization
    (espeak-ng) is on when the tokenizer was built with `phonemize=True`.
    """

    def __init__(
        self,
        feature_extractor,
        tokenizer,
        chat_template=None,
        quiet_prompt_floor_db: float | None = QUIET_PROMPT_FLOOR_DB,
        prompt_level_target_db: float = PROMPT_LEVEL_TARGET_DB,
        min_prompt_loudness_range_db: float | None = MIN_PROMPT_LOUDNESS_RANGE_DB,
    ):
        super().__init__(feature_extractor, tokenizer, chat_template=chat_template)
        # DiTAR's character tokenizer records `phonemize` in its init kwargs; any other tokenizer is used as it is
        self.frontend = DiTARTextFrontend(tokenizer) if "phonemize" in (tokenizer.init_kwargs or {}) else None
        # (mono float32 waveform, its rate, transcript): the voice used when a call gives no prompt
        self.default_voice: tuple[np.ndarray, int, str] | None = None
        # The prompt settings are `__init__` arguments so that `save_pretrained` writes them to processor_config.json
        # (transformers saves the attributes its `__init__` names) and `from_pretrained` reads them back.
        # prompts quieter than this active-speech level (dBFS) are raised to `prompt_level_target_db`; None turns it off
        self.quiet_prompt_floor_db: float | None = quiet_prompt_floor_db
        self.prompt_level_target_db: float = prompt_level_target_db
        # prompts whose speech-band loudness varies by less than this (dB) are refused as steady noise, hum or a tone,
        # not a voice; None turns it off
        self.min_prompt_loudness_range_db: float | None = min_prompt_loudness_range_db

    def set_default_voice(
        self,
        audio,
        text: str,
        sampling_rate: int | None = None,
        target_rate: int | None = None,
        *,
        prepared: bool = False,
    ):
        """Voice used when a call gives no `prompt_audio`: `audio` (path or array, with `sampling_rate` for arrays) and
        its transcript `text`, both checked now. `target_rate` keeps the waveform at another rate than the feature
        extractor's (a VAE's). `prepared=True`: both were checked already (`DiTARPipeline.set_default_voice` checks
        them as a call checks a prompt): `audio` is a waveform `load_prompt_audio` made at that rate, kept as it is,
        and `text` is not put through the text front end again (its warnings were logged once). `None` for both
        clears it."""
        if audio is None and text is None:
            self.default_voice = None
            return
        rate = self.sampling_rate if target_rate is None else int(target_rate)
        if prepared:
            if not isinstance(text, str):
                raise ValueError(f"text must be a string, got {type(text).__name__}.")
            waveform = torch.as_tensor(audio)
        else:
            waveform = self.load_prompt_audio(audio, sampling_rate, target_rate=rate, name="audio")
            self.encode_text(text)  # fail now, not at synthesis time
        self.default_voice = (waveform.numpy(), rate, text)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs):
        """`ProcessorMixin.save_pretrained`, plus the default voice (`default_voice/prompt.wav` and `prompt.txt`)."""
        out = super().save_pretrained(save_directory, **kwargs)
        if self.default_voice is not None:
            write_default_voice(save_directory, *self.default_voice)
        return out

    @property
    def text_mode(self) -> str:
        """ "characters" (DiTAR's character front end) or "tokenizer" (a subword tokenizer, used as it is)."""
        return "characters" if self.frontend is not None else "tokenizer"

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> DiTARProcessor:
        """Load a saved processor folder (or Hub repo).

        The feature extractor is built from this module's [`DiTARFeatureExtractor`] rather than looked up through
        `AutoFeatureExtractor`, so the processor also loads as remote code (`trust_remote_code=True`) in a Python
        where `modeling_ditar` is not installed; the tokenizer is an ordinary transformers tokenizer."""
        hub = {key: kwargs[key] for key in _HUB_KWARGS if kwargs.get(key) is not None}
        feature_extractor = DiTARFeatureExtractor.from_pretrained(pretrained_model_name_or_path, **hub)
        tokenizer = _load_tokenizer(pretrained_model_name_or_path, hub)
        processor = cls(feature_extractor, tokenizer, **_saved_prompt_settings(pretrained_model_name_or_path, hub))
        voice = find_default_voice(pretrained_model_name_or_path, hub)
        if voice is not None:
            import soundfile as sf

            wav = str(voice / "prompt.wav")
            # kept at the rate it was saved at: a VAE pipeline's voice is at the VAE's rate, not the processor's
            processor.set_default_voice(
                wav, (voice / "prompt.txt").read_text("utf-8").strip(), target_rate=sf.info(wav).samplerate
            )
        return processor

    def push_to_hub(self, repo_id: str, **kwargs):
        """Upload this processor (with its code, for `trust_remote_code=True`, and a model card); see
        [`hub_utils.push_to_hub`] for the arguments."""
        from .hub_utils import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @property
    def model_input_names(self):
        return ["input_ids", "attention_mask", "prompt_features", "prompt_attention_mask", "speech_position_rate"]

    def encode_text(
        self, text: str, allow_empty: bool = False, on_unknown: str = "warn", name: str = "text"
    ) -> list[int]:
        """Token ids of one text through the front end (normalise, optionally phonemize, map characters).

        `allow_empty=True` accepts a whitespace-only string (used for the separator between prompt and target text).
        `name` is what errors and warnings call the text (the argument it came from, e.g. `prompt_text`)."""
        if self.frontend is None:
            return self._encode_with_tokenizer(text, allow_empty, name)
        if allow_empty and isinstance(text, str) and not text.strip():
            space = self.frontend.tokenizer.convert_tokens_to_ids(" ")
            return [space] if text and space != self.frontend.unk_token_id else []
        return self.frontend.encode(text, on_unknown=on_unknown, name=name)

    def _encode_with_tokenizer(self, text: str, allow_empty: bool, name: str = "text") -> list[int]:
        """Subword tokenizers: NFKC and whitespace runs collapsed to one space, then the tokenizer without special
        tokens. A whitespace-only `text` (the prompt/target separator) keeps one space."""
        if not isinstance(text, str):
            raise ValueError(f"`{name}` must be a string, got {type(text).__name__}.")
        if allow_empty and not text.strip():
            return self.tokenizer.encode(" ", add_special_tokens=False) if text else []
        normalized = _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()
        if not normalized:
            raise ValueError(f"`{name}` is empty or whitespace only ({text!r}); give at least one word to speak.")
        ids = self.tokenizer.encode(normalized, add_special_tokens=False)
        if not ids:
            raise ValueError(f"`{name}` {text!r} encodes to no tokens.")
        return ids

    def __call__(
        self,
        text: str | list[str] | None = None,
        prompt_text: str | list[str] | None = None,
        prompt_audio=None,
        sampling_rate: int | None = None,
        return_tensors: str = "pt",
        on_unknown: str = "warn",
        prompt_encoder: Callable | None = None,
        use_default_voice: bool = True,
        voice: DiTARVoice | list[DiTARVoice] | None = None,
        **kwargs,
    ) -> BatchFeature:
        """
        Args:
            text: the text to speak, or a list of texts (one row each).
            prompt_text: transcript of `prompt_audio`, one for all rows or one per row.
            prompt_audio: a path, an array/tensor (needs `sampling_rate`), or a list of those (one per row); any rate,
                mono or multichannel, int or float samples. A prompt longer than the model's prompts in training
                (`MAX_PROMPT_SECONDS`) is cut at a pause and its transcript in proportion, with a warning, as
                `DiTARPipeline` cuts it.
            sampling_rate: rate of array prompts; files carry their own.
            prompt_encoder: replaces the log-mel feature extractor for the prompt audio (e.g. a VAE encoder, see
                `vae_features.VAEPromptEncoder`): an object with a `sampling_rate` attribute, called with the list of
                mono waveforms at that rate, returning normalised `(features [B, T, D], attention_mask [B, T])`.
            use_default_voice: with no `prompt_audio`, use the default voice if there is one (else no prompt).
            voice: a [`DiTARVoice`] (from [`create_voice`]), or one per text, instead of `prompt_audio` and
                `prompt_text`: its stored features and transcript ids are used as they are (no audio is read).
        Returns:
            `BatchFeature` with `input_ids`, `attention_mask` and, with a prompt, `prompt_features` [B, T, D]
            (normalised), `prompt_attention_mask` and `speech_position_rate` [B] (the prompt's speaking rate, its
            transcript's tokens per feature frame, which models with `speech_positions="aligned"` use).
        """
        if "processor_kwargs" in kwargs:
            # transformers' text-to-speech pipeline hands its `processor_kwargs` over as one keyword for plain text
            extra = kwargs.pop("processor_kwargs") or {}
            if not isinstance(extra, dict):
                raise TypeError(f"processor_kwargs must be a dict, got {type(extra).__name__}.")
            given = dict(text=text, prompt_text=prompt_text, prompt_audio=prompt_audio, sampling_rate=sampling_rate)
            given.update(return_tensors=return_tensors, on_unknown=on_unknown, prompt_encoder=prompt_encoder)
            given.update(use_default_voice=use_default_voice, voice=voice)
            return self(**{**given, **kwargs, **extra})
        if kwargs:
            raise TypeError(_unexpected_arguments_message(kwargs))
        if voice is not None:
            if prompt_audio is not None or prompt_text is not None:
                raise ValueError("give either `voice` or `prompt_audio` and `prompt_text`, not both.")
            return self._call_with_voice(text, voice, return_tensors, on_unknown, prompt_encoder)
        if prompt_audio is None and prompt_text is None and use_default_voice and self.default_voice is not None:
            prompt_audio, sampling_rate, prompt_text = self.default_voice
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt', got {return_tensors!r}.")
        texts = _as_list(text, "text")
        batch = len(texts)
        prompt_texts = (
            None if prompt_text is None else _broadcast(_as_list(prompt_text, "prompt_text"), batch, "prompt_text")
        )
        prompt_audios = None
        if prompt_audio is not None:
            refuse_audio_rate_pair(prompt_audio, "prompt_audio")
            refuse_stacked_clips(prompt_audio, "prompt_audio", batch)
            audios = prompt_audio if isinstance(prompt_audio, (list, tuple)) else [prompt_audio]
            if len(audios) == 0:
                raise ValueError("prompt_audio is an empty list; give one clip, one per text, or None.")
            prompt_audios = _broadcast(list(audios), batch, "prompt_audio")
        if prompt_audios is not None and prompt_texts is None:
            raise ValueError(
                "prompt_audio was given without prompt_text: DiTAR continues the prompt, so it needs the transcript of "
                "the prompt audio. Pass prompt_text=... (what is said in the prompt audio)."
            )
        if prompt_texts is not None and prompt_audios is None:
            raise ValueError("prompt_text was given without prompt_audio; pass both (voice cloning) or neither.")
        waves = None
        if prompt_audios is not None:
            waves, prompt_texts = self._load_and_fit_prompts(prompt_audios, prompt_texts, sampling_rate, prompt_encoder)

        ids, prompt_lengths, encoded_prompts = [], [], {}
        for row, target in enumerate(texts):
            row_ids = self._encode_argument(target, "text", row, batch, on_unknown, to_speak=True)
            if prompt_texts is not None:
                # one transcript for many texts is encoded (and warned about) once
                transcript = prompt_texts[row]
                prompt_ids = encoded_prompts.get(transcript) if isinstance(transcript, str) else None
                if prompt_ids is None:
                    rows = batch if isinstance(prompt_text, (list, tuple)) else 1  # a row index for a list only
                    prompt_ids = self._encode_argument(transcript, "prompt_text", row, rows, on_unknown)
                    if isinstance(transcript, str):
                        encoded_prompts[transcript] = prompt_ids
                prompt_lengths.append(len(prompt_ids))
                row_ids = prompt_ids + self.encode_text(" ", allow_empty=True) + row_ids
            ids.append(row_ids)
        length = max(len(r) for r in ids)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros(batch, length, dtype=torch.long)
        for row, row_ids in enumerate(ids):
            input_ids[row, : len(row_ids)] = torch.tensor(row_ids)
            attention_mask[row, : len(row_ids)] = 1
        data = {"input_ids": input_ids, "attention_mask": attention_mask}

        if waves is not None:
            data["prompt_features"], data["prompt_attention_mask"] = self._waveform_features(waves, prompt_encoder)
            data["speech_position_rate"] = speaking_rate(
                torch.tensor(prompt_lengths), torch.as_tensor(data["prompt_attention_mask"]).sum(1)
            )
        return BatchFeature(data=data, tensor_type=None)

    def _load_and_fit_prompts(
        self, prompt_audios: list, prompt_texts: list, sampling_rate, prompt_encoder
    ) -> tuple[list[torch.Tensor], list]:
        """Each row's prompt read at the prompt encoder's rate (or the feature extractor's) and, when longer than the
        model's training prompts, cut at a pause with its transcript in proportion (`trim_prompt`). One clip shared by
        several rows is read, cut and warned about once."""
        rate = self.sampling_rate if prompt_encoder is None else int(prompt_encoder.sampling_rate)
        fitted, waves, texts = {}, [], []
        for audio, transcript in zip(prompt_audios, prompt_texts, strict=True):
            key = (id(audio), transcript if isinstance(transcript, str) else id(transcript))
            if key not in fitted:
                wave = self.load_prompt_audio(audio, sampling_rate, target_rate=rate)
                if isinstance(transcript, str):  # a transcript of another type is refused when it is encoded
                    wave, transcript, message = trim_prompt(wave, rate, transcript)
                    if message is not None:
                        logger.warning(message)
                fitted[key] = (wave, transcript)
            wave, transcript = fitted[key]
            waves.append(wave)
            texts.append(transcript)
        return waves, texts

    def _prompt_features(
        self, prompt_audios: list, sampling_rate, prompt_encoder, name: str = "prompt_audio"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised features [B, T, D], attention mask [B, T]) of prompt clips (`name`: what errors call them)."""
        rate = None if prompt_encoder is None else int(prompt_encoder.sampling_rate)
        waves = [self.load_prompt_audio(a, sampling_rate, target_rate=rate, name=name) for a in prompt_audios]
        return self._waveform_features(waves, prompt_encoder)

    def _waveform_features(self, waves: list, prompt_encoder) -> tuple[torch.Tensor, torch.Tensor]:
        """`_prompt_features` of clips `load_prompt_audio` has prepared (at the prompt encoder's rate, or the feature
        extractor's)."""
        if prompt_encoder is not None:
            return prompt_encoder(waves)
        features = self.feature_extractor(
            [w.numpy() for w in waves], sampling_rate=self.sampling_rate, return_tensors="pt"
        )
        return features["input_features"], features["attention_mask"]

    # ----------------------------------------------------------------------------------------------------------------
    # reusable voices

    def create_voice(
        self,
        audio,
        transcript: str,
        sampling_rate: int | None = None,
        prompt_encoder: Callable | None = None,
        on_unknown: str = "warn",
        *,
        prepared: bool = False,
        names: PromptNames = VOICE_NAMES,
    ) -> DiTARVoice:
        """A [`DiTARVoice`]: the prompt `audio` (path or array, with `sampling_rate` for arrays) and its `transcript`
        processed once, to pass as `voice=` instead of `prompt_audio`/`prompt_text`. `prompt_encoder` as in
        `__call__` (a VAE's). The audio is used as given; `DiTARPipeline.create_voice` also cuts an over-long prompt
        at a pause, as a call with `prompt_audio` does. `prepared=True`: `audio` is a waveform `load_prompt_audio`
        made at the prompt encoder's rate (or the feature extractor's) already, used as it is (not read or checked
        again). `names`: what errors and warnings call the audio and the transcript (default: `audio`, `transcript`;
        the pipeline passes the names its own caller used)."""
        if not isinstance(transcript, str):
            raise ValueError(f"{names.text} must be a string, got {type(transcript).__name__}.")
        transcript_ids = self._encode_argument(transcript, names.text, 0, 1, on_unknown)
        if prepared:
            features, mask = self._waveform_features([torch.as_tensor(audio)], prompt_encoder)
        else:
            features, mask = self._prompt_features([audio], sampling_rate, prompt_encoder, name=names.audio)
        frames = int(torch.as_tensor(mask)[0].sum())
        rate = speaking_rate(torch.tensor([len(transcript_ids)]), torch.tensor([frames]))[0]
        return DiTARVoice(
            prompt_features=torch.as_tensor(features)[0, :frames].detach().float().cpu(),
            prompt_input_ids=torch.tensor(transcript_ids + self.encode_text(" ", allow_empty=True), dtype=torch.long),
            speech_position_rate=rate,
            transcript=transcript,
            setup=self.voice_setup(prompt_encoder),
        )

    def voice_setup(self, prompt_encoder: Callable | None = None) -> dict:
        """What a [`DiTARVoice`] made by this processor depends on: the feature setup (the feature extractor's
        settings and statistics, or the prompt encoder's `feature_setup`) and the text setup (tokenizer and front
        end). A voice is only used with a processor (and encoder) of the same setup."""
        if prompt_encoder is not None:
            features = dict(
                getattr(prompt_encoder, "feature_setup", None)
                or {"kind": type(prompt_encoder).__name__, "sampling_rate": int(prompt_encoder.sampling_rate)}
            )
        else:
            skip = {"feature_extractor_type", "padding_side", "padding_value", "return_attention_mask"}
            skip |= _BOOKKEEPING_KEYS
            features = {"kind": "log-mel"}
            features.update({k: v for k, v in self.feature_extractor.to_dict().items() if k not in skip})
        init = self.tokenizer.init_kwargs or {}
        text = {
            "mode": self.text_mode,
            "tokenizer_class": type(self.tokenizer).__name__,
            "vocab_size": len(self.tokenizer),
            **{key: init.get(key) for key in ("phonemize", "language", "normalize_text") if key in init},
        }
        # through JSON, as a saved voice holds it (tuples become lists, numpy numbers plain ones)
        return json.loads(json.dumps({"features": features, "text": text}, default=_json_default))

    def check_voice(self, voice: DiTARVoice, prompt_encoder: Callable | None = None) -> None:
        """Raise a ValueError naming the difference when `voice` was made for another feature or text setup."""
        if not isinstance(voice, DiTARVoice):
            raise TypeError(f"voice must be a DiTARVoice (see create_voice), got {type(voice).__name__}.")
        expected = self.voice_setup(prompt_encoder)
        for part in ("features", "text"):
            mine, theirs = expected[part], voice.setup.get(part, {})
            # (voices saved before bookkeeping keys were left out of the setup may hold them)
            for key in sorted((set(mine) | set(theirs)) - _BOOKKEEPING_KEYS):
                if mine.get(key) != theirs.get(key):
                    raise ValueError(
                        f"this voice was made for a different {'feature' if part == 'features' else 'text'} setup: "
                        f"{key} is {_short(theirs.get(key))} in the voice and {_short(mine.get(key))} here. Create "
                        "the voice again from its audio with this pipeline or processor (create_voice)."
                    )
        vocab_size = expected["text"]["vocab_size"]
        if int(voice.prompt_input_ids.max()) >= vocab_size:
            raise ValueError(
                f"this voice's transcript holds token ids up to {int(voice.prompt_input_ids.max())}, outside this "
                f"tokenizer's {vocab_size}: the voice is damaged. Create it again from its audio (create_voice)."
            )

    def _call_with_voice(self, text, voice, return_tensors, on_unknown, prompt_encoder) -> BatchFeature:
        if return_tensors != "pt":
            raise ValueError(f"return_tensors must be 'pt', got {return_tensors!r}.")
        texts = _as_list(text, "text")
        voices = list(voice) if isinstance(voice, (list, tuple)) else [voice]
        if not voices:
            raise ValueError("voice is an empty list; give one voice, one per text, or None.")
        voices = _broadcast(voices, len(texts), "voice")
        for checked in {id(v): v for v in voices}.values():
            self.check_voice(checked, prompt_encoder)
        ids = [
            v.prompt_input_ids.tolist() + self._encode_argument(t, "text", row, len(texts), on_unknown, to_speak=True)
            for row, (t, v) in enumerate(zip(texts, voices, strict=True))
        ]
        length = max(len(r) for r in ids)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(texts), length), pad_id, dtype=torch.long)
        attention_mask = torch.zeros(len(texts), length, dtype=torch.long)
        frames = max(v.prompt_features.shape[0] for v in voices)
        features = torch.zeros(len(texts), frames, voices[0].prompt_features.shape[1])
        feature_mask = torch.zeros(len(texts), frames, dtype=torch.long)
        for row, (row_ids, v) in enumerate(zip(ids, voices, strict=True)):
            input_ids[row, : len(row_ids)] = torch.tensor(row_ids)
            attention_mask[row, : len(row_ids)] = 1
            features[row, : v.prompt_features.shape[0]] = v.prompt_features
            feature_mask[row, : v.prompt_features.shape[0]] = 1
        data = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "prompt_features": features,
            "prompt_attention_mask": feature_mask,
            "speech_position_rate": torch.stack([v.speech_position_rate.float() for v in voices]),
        }
        return BatchFeature(data=data, tensor_type=None)

    def apply_chat_template(
        self,
        conversation,
        chat_template=None,
        tokenize: bool = True,
        return_dict: bool = True,
        add_generation_prompt: bool = True,
        processor_kwargs: dict | None = None,
        **kwargs,
    ):
        """Model inputs from a conversation, the form in which transformers' text-to-speech pipeline passes a voice:

            [{"role": "user", "content": [{"type": "audio", "path": "me.wav"},
                                          {"type": "text", "text": "What I say in me.wav."}]},
             {"role": "user", "content": "The text to speak."}]

        The message with an audio item is the voice prompt (its text items are the transcript; an array is given as
        `"audio"` with `"sampling_rate"`, or a `datasets` Audio value as `"audio"`), and the last message is what to
        say (the only message without audio). Without an audio message the default voice speaks. DiTAR needs no
        template: the conversation maps directly to `prompt_audio`, `prompt_text` and `text`, so only `tokenize=True,
        return_dict=True` is supported. A voice prompt longer than the model's prompts in training is cut at a pause,
        with a warning, as `DiTARPipeline` cuts it."""
        if not tokenize or not return_dict:
            raise ValueError(
                "DiTARProcessor.apply_chat_template returns model inputs: use tokenize=True, return_dict=True."
            )
        if not isinstance(conversation, (list, tuple)) or not conversation:
            raise ValueError("conversation must be a non-empty list of {'role': ..., 'content': ...} messages.")
        voices, texts = [], []
        for index, message in enumerate(conversation):
            if not isinstance(message, dict) or "content" not in message:
                raise ValueError(f"message {index} must be a dict with 'role' and 'content' keys, got {message!r:.80}.")
            audio, text = _message_parts(message["content"], index)
            (voices if audio is not None else texts).append((audio, text))
        if len(voices) > 1:
            raise ValueError(
                f"the conversation has {len(voices)} messages with audio; DiTAR clones one voice per text."
            )
        if not texts or not texts[-1][1]:
            raise ValueError("the last message must hold the text to speak (a text item, without audio).")
        if len(texts) > 1:  # earlier text-only messages would be dropped without a word
            raise ValueError(
                f"the conversation has {len(texts)} messages without audio; DiTAR speaks the text of one message per "
                "conversation: put the whole text in the last message (with at most one voice message before it), or "
                "pass one conversation per text."
            )
        options = {**(processor_kwargs or {}), **kwargs}
        if voices:
            (audio, rate), transcript = voices[0]
            if not transcript:
                raise ValueError("the voice message needs the transcript of its audio as a text item.")
            # read here, where the message's own sampling rate is known; `__call__` cuts a long one
            waveform = self.load_prompt_audio(audio, rate)
            options.update(prompt_audio=waveform.numpy(), prompt_text=transcript, sampling_rate=self.sampling_rate)
        return self(texts[-1][1], **options)

    def _encode_argument(
        self, value: str, name: str, row: int, batch: int, on_unknown: str, *, to_speak: bool = False
    ) -> list[int]:
        """`encode_text`, with errors and warnings naming the argument (and row) they come from, e.g.
        `prompt_text[1]`; a message that names none is prefixed with it. In a text to speak (`to_speak`) a line break
        ends a sentence (`mark_line_ends`; the front end would collapse it into a space), as in the pipeline; a
        transcript is encoded as written."""
        if to_speak and isinstance(value, str):
            value = mark_line_ends(value)
        where = f"{name}[{row}]" if batch > 1 else name
        try:
            return self.encode_text(value, on_unknown=on_unknown, name=where)
        except ValueError as err:
            if where == "text" or str(err).startswith(f"`{where}`"):  # named already, or by its default name
                raise
            raise ValueError(f"{where}: {err}") from err

    def load_prompt_audio(
        self, audio, sampling_rate: int | None = None, target_rate: int | None = None, *, name: str = "prompt_audio"
    ) -> torch.Tensor:
        """A prompt clip as mono float32 at the feature extractor's rate (or `target_rate`); clear errors (prefixed
        with `name`, the argument the clip was passed as: `prompt_audio:` by default) for missing, unreadable, empty,
        non-finite or silent audio, and for steady noise, hum or a tone (speech-band loudness varying by less than
        `min_prompt_loudness_range_db`). A clip quieter than `quiet_prompt_floor_db` (active-speech RMS, dBFS) is
        raised to `prompt_level_target_db`: the model only heard voices at ordinary recording levels."""
        try:
            refuse_audio_rate_pair(audio, name)
            audio, sampling_rate = unpack_audio(audio, sampling_rate)
            if target_rate is not None and int(target_rate) != self.sampling_rate:
                rate = int(target_rate)
                waveform = self._load_prompt_audio_at(audio, sampling_rate, rate, name)
            else:
                rate = self.sampling_rate
                waveform = self._load_prompt_audio(audio, sampling_rate, name)
            check_prompt_is_speech(waveform, rate, self.min_prompt_loudness_range_db, name=name)
            return raise_quiet_prompt(waveform, rate, self.quiet_prompt_floor_db, self.prompt_level_target_db)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{name}: {err}") from err
        except ValueError as err:
            message = str(err)
            raise ValueError(message if message.startswith(name) else f"{name}: {message}") from err

    def _load_prompt_audio(self, audio, sampling_rate: int | None = None, name: str = "prompt_audio") -> torch.Tensor:
        if isinstance(audio, (str, bytes)) or hasattr(audio, "__fspath__"):
            waveform, _ = load_audio(audio, sampling_rate=self.sampling_rate)
        else:
            if not isinstance(audio, (np.ndarray, torch.Tensor)):
                raise audio_type_error(audio, name)
            if sampling_rate is None:
                raise ValueError(
                    f"{name} is an array but sampling_rate is missing; pass sampling_rate=<Hz of the array>."
                )
            return self.feature_extractor.prepare_audio(audio, sampling_rate)
        return self.feature_extractor.prepare_audio(waveform, self.sampling_rate)

    @staticmethod
    def _load_prompt_audio_at(
        audio, sampling_rate: int | None, target_rate: int, name: str = "prompt_audio"
    ) -> torch.Tensor:
        if isinstance(audio, (str, bytes)) or hasattr(audio, "__fspath__"):
            waveform, _ = load_audio(audio, sampling_rate=target_rate)
            return to_mono_float32(waveform, check_silence=True)
        if not isinstance(audio, (np.ndarray, torch.Tensor)):
            raise audio_type_error(audio, name)
        if sampling_rate is None:
            raise ValueError(f"{name} is an array but sampling_rate is missing; pass sampling_rate=<Hz of the array>.")
        rate = validate_sampling_rate(sampling_rate)
        waveform = to_mono_float32(audio, check_silence=True)
        return resample_audio(waveform, rate, target_rate) if rate != target_rate else waveform

    def build_vocoder(self, **kwargs):
        """A Griffin-Lim vocoder matching this processor's features; keyword arguments (`n_iter`, ...) set its
        Griffin-Lim options, the class defaults otherwise."""
        from .vocoder_griffinlim import GriffinLimVocoder

        return GriffinLimVocoder.from_feature_extractor(self.feature_extractor, **kwargs)


def _as_list(value, name: str) -> list[str]:
    if value is None:
        raise ValueError(f"{name} is required.")
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    messages = [value] if isinstance(value, dict) else value
    if isinstance(messages, (list, tuple)) and messages and all(isinstance(v, dict) for v in messages):
        # transformers' pipelines pass a conversation on message by message when one lacks 'role' or 'content'
        lacking = [i for i, m in enumerate(messages) if not {"role", "content"} <= set(m)]
        if lacking:
            missing = sorted({"role", "content"} - set(messages[lacking[0]]))
            raise ValueError(
                f"{name} looks like a conversation message, but {messages[lacking[0]]!r:.60} has no "
                f"{' or '.join(map(repr, missing))}: every message needs 'role' and 'content'."
            )
    raise ValueError(f"{name} must be a string or a non-empty list of strings, got {value!r:.80}.")


def _broadcast(values: list, batch: int, name: str) -> list:
    if len(values) == 1:
        return values * batch
    if len(values) != batch:
        raise ValueError(f"got {len(values)} {name} for {batch} texts; give one {name} for all texts or one per text.")
    return values


def _unexpected_arguments_message(kwargs: dict) -> str:
    """The error for keyword arguments `__call__` does not take; `audio`, transformers' usual name for a processor's
    audio input, is pointed to DiTAR's names for a voice prompt."""
    message = f"DiTARProcessor got unexpected arguments {sorted(kwargs)}."
    if {"audio", "audios"} & set(kwargs):
        message += (
            " A voice prompt is given as prompt_audio= (a path, or an array with sampling_rate=) with its transcript "
            "as prompt_text=; the text to speak is text=."
        )
    return message


# processor settings kept in processor_config.json (the `__init__` arguments beside the feature extractor and tokenizer)
PROMPT_SETTINGS = ("quiet_prompt_floor_db", "prompt_level_target_db", "min_prompt_loudness_range_db")


def _saved_prompt_settings(source, hub: dict) -> dict:
    """The prompt settings saved in `source`'s processor_config.json (transformers' `get_processor_dict` reads it); a
    folder saved before they were kept has none (the defaults apply)."""
    saved, _ = DiTARProcessor.get_processor_dict(source, **hub)
    return {key: saved[key] for key in PROMPT_SETTINGS if key in saved}


def _load_tokenizer(source, hub: dict):
    """The tokenizer saved in `source`, by the class its `tokenizer_config.json` names. `AutoTokenizer` would first
    read the folder's `config.json`, which in a pipeline folder is the model's: that asks for remote code (a prompt, or
    an error) where this library is not imported, although the tokenizer itself is an ordinary transformers class."""
    from transformers.models.auto.tokenization_auto import get_tokenizer_config, tokenizer_class_from_name

    name = get_tokenizer_config(source, **hub).get("tokenizer_class")
    tokenizer_class = tokenizer_class_from_name(name) if name else None
    if tokenizer_class is None:
        return AutoTokenizer.from_pretrained(source, **hub)
    return tokenizer_class.from_pretrained(source, **hub)


def _message_parts(content, index: int):
    """((audio, sampling_rate) or None, text) of one chat message's content."""
    if isinstance(content, str):
        return None, content
    if not isinstance(content, (list, tuple)):
        raise ValueError(f"message {index}: content must be a string or a list of items, got {type(content).__name__}.")
    audio, words = None, []
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            words.append(str(item.get("text", "")))
        elif kind == "audio":
            source = item.get("path", item.get("audio"))
            if source is None or "url" in item:
                raise ValueError(f"message {index}: an audio item needs a local 'path' or an 'audio' array (no URLs).")
            if isinstance(source, (np.ndarray, torch.Tensor)) and item.get("sampling_rate") is None:
                raise ValueError(
                    f"message {index}: an audio item with an array needs its rate beside it: "
                    "{'type': 'audio', 'audio': array, 'sampling_rate': 16000} (Hz of the array)."
                )
            audio = (source, item.get("sampling_rate"))
        else:
            raise ValueError(f"message {index}: items must be of type 'text' or 'audio', got {item!r:.60}.")
    return audio, " ".join(w.strip() for w in words if w.strip())


def write_default_voice(folder: str | os.PathLike, audio: np.ndarray, rate: int, text: str) -> None:
    """Save a default voice as `folder/default_voice/prompt.wav` (float32) and `prompt.txt`."""
    import soundfile as sf

    voice_dir = Path(folder) / DEFAULT_VOICE_DIR
    voice_dir.mkdir(parents=True, exist_ok=True)
    sf.write(voice_dir / "prompt.wav", audio, rate, subtype="FLOAT")
    (voice_dir / "prompt.txt").write_text(text + "\n", encoding="utf-8")


def find_default_voice(source: str | os.PathLike, hub: dict | None = None) -> Path | None:
    """The `default_voice` folder of a saved processor or pipeline: in the folder itself or, for a processor saved in
    a subfolder of a pipeline, at the repository root. For a Hub repository the two files are downloaded. None when
    there is no default voice."""
    hub = dict(hub or {})
    subfolder = hub.pop("subfolder", None)
    local = Path(source) / subfolder if subfolder else Path(source)
    if local.is_dir():
        for folder in (local, local.parent):
            if (folder / DEFAULT_VOICE_DIR / "prompt.wav").is_file():
                return folder / DEFAULT_VOICE_DIR
        return None
    try:
        from huggingface_hub import hf_hub_download

        options = {k: v for k, v in hub.items() if k in ("cache_dir", "revision", "token", "local_files_only")}
        wav = hf_hub_download(str(source), f"{DEFAULT_VOICE_DIR}/prompt.wav", **options)
        hf_hub_download(str(source), f"{DEFAULT_VOICE_DIR}/prompt.txt", **options)
        return Path(wav).parent
    except Exception:  # a repository without a default voice, or no network: there is simply none
        return None


VOICE_CONFIG_NAME = "voice_config.json"
VOICE_WEIGHTS_NAME = "voice.safetensors"
VOICE_FORMAT_VERSION = 1


# saving and remote code add these to a processor's config; they say nothing about the features or the text
_BOOKKEEPING_KEYS = {"auto_map", "processor_class"}


class DiTARVoice:
    r"""
    A voice prompt processed once, for many calls: pass it as `voice=` to [`DiTARPipeline`] (`pipe(text,
    voice=voice)`, `pipe.stream(text, voice=voice)`) or to [`DiTARProcessor`] (`processor(text, voice=voice)`, whose
    output [`DiTARForTextToSpeech.generate`] takes). Made by `pipe.create_voice(audio, transcript)` or
    `processor.create_voice(...)`; a call with it gives the same inputs as a call with that audio and transcript.

    It holds the prompt's normalised features (`prompt_features` [T, D]), its transcript's token ids followed by the
    prompt/target separator (`prompt_input_ids`), its speaking rate (`speech_position_rate`) and the setup they were
    made with. A call with a voice skips loading, resampling and feature extraction of the audio and the text front end
    of the transcript. The backbone sequence is [transcript + target text][start of speech][prompt patches], so of the
    prefill only the transcript's tokens are shared by every call in a voice: the voice also keeps the backbone's KV
    cache of those tokens per model ([`prefix_cache`]), which the pipeline reuses where the batch allows it (one
    voice, rows of equal length) unless `reuse_prefix_cache` is False. That cache is computed by a shorter backbone
    call than the full prefill, so the speech equals the plain path's up to float32 rounding, not bit for bit; with
    `reuse_prefix_cache=False` it is bit-identical, alone or in any batch.

    `save_pretrained(folder)` writes `voice.safetensors` and `voice_config.json` (no audio, no KV cache);
    `DiTARVoice.from_pretrained(folder)` loads them. Using a voice with a processor whose feature or text setup differs
    from the one that made it is an error.
    """

    def __init__(
        self,
        prompt_features: torch.Tensor,
        prompt_input_ids: torch.Tensor,
        speech_position_rate: torch.Tensor | float,
        transcript: str,
        setup: dict,
        reuse_prefix_cache: bool = True,
    ):
        prompt_features = torch.as_tensor(prompt_features, dtype=torch.float32)
        if prompt_features.dim() != 2 or prompt_features.shape[0] == 0:
            raise ValueError(f"prompt_features must be [frames, feature_dim], got {tuple(prompt_features.shape)}.")
        if not bool(torch.isfinite(prompt_features).all()):
            raise ValueError("prompt_features contains NaN or Inf values.")
        self.prompt_features = prompt_features
        self.prompt_input_ids = torch.as_tensor(prompt_input_ids, dtype=torch.long).flatten()
        if self.prompt_input_ids.numel() == 0 or int(self.prompt_input_ids.min()) < 0:
            raise ValueError("prompt_input_ids must hold the transcript's token ids (at least one, none negative).")
        self.speech_position_rate = torch.as_tensor(speech_position_rate, dtype=torch.float32).reshape(())
        rate = float(self.speech_position_rate)
        if not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"speech_position_rate must be a finite number > 0 (tokens per frame), got {rate!r}.")
        if not isinstance(transcript, str) or not isinstance(setup, dict):
            raise ValueError("transcript must be a string and setup a dict (as create_voice makes them).")
        self.transcript = transcript
        self.setup = setup
        # False: the pipeline runs the whole prefill, so a call gives the same bits whatever the batch it is in
        self.reuse_prefix_cache = bool(reuse_prefix_cache)
        self._cache: tuple | None = None  # (model key, KV cache of prompt_input_ids)

    def __repr__(self) -> str:
        return (
            f"DiTARVoice(transcript={self.transcript!r:.60}, frames={self.prompt_features.shape[0]}, "
            f"tokens={self.prompt_input_ids.numel()}, features={self.setup.get('features', {}).get('kind')})"
        )

    # ----------------------------------------------------------------------------------------------------------------
    # the backbone's KV cache of the transcript

    def prefix_cache(self, model, batch_size: int = 1):
        """A fresh copy of the backbone's KV cache over `prompt_input_ids` (computed once per model and weights, then
        copied), with `batch_size` identical rows: pass it as `past_key_values` to the model's `generate` with
        inputs from `processor(text, voice=self)` whose rows all start with these ids and have no padding. The cache
        is rebuilt when the model's backbone weights, dtype, device or adapters change."""
        import copy

        key = _model_key(model)
        if self._cache is None or self._cache[0] != key:
            ids = self.prompt_input_ids[None].to(model.device)
            self._cache = (key, model.text_prefix_cache(ids))
        cache = copy.deepcopy(self._cache[1])
        if batch_size > 1:
            cache.batch_repeat_interleave(batch_size)
        return cache

    # ----------------------------------------------------------------------------------------------------------------
    # persistence

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write `voice.safetensors` (features, transcript ids, speaking rate) and `voice_config.json` (transcript and
        setup) into `save_directory`."""
        from .hub_utils import save_safetensors

        folder = Path(save_directory).expanduser()
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"save_directory {str(folder)!r} is a file; pass a folder path to save into.")
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            "prompt_features": self.prompt_features.contiguous(),
            "prompt_input_ids": self.prompt_input_ids.contiguous(),
            "speech_position_rate": self.speech_position_rate.reshape(1).contiguous(),
        }
        save_safetensors(tensors, folder / VOICE_WEIGHTS_NAME)
        config = {"format_version": VOICE_FORMAT_VERSION, "transcript": self.transcript, "setup": self.setup}
        if not self.reuse_prefix_cache:  # a voice made bit-identical to the audio path stays so when reloaded
            config["reuse_prefix_cache"] = False
        (folder / VOICE_CONFIG_NAME).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", "utf-8")

    @classmethod
    def from_pretrained(cls, pretrained_voice_name_or_path: str | os.PathLike, **kwargs) -> DiTARVoice:
        """Load a voice saved with `save_pretrained` from a folder (or a Hub repo; `subfolder`, `revision`, `token`,
        `cache_dir` and `local_files_only` are passed to the download)."""
        from safetensors.torch import load_file

        from .hub_utils import folder_or_hub_files

        keys = ("subfolder", "revision", "token", "cache_dir", "local_files_only")
        unknown = sorted(set(kwargs) - set(keys))
        if unknown:
            raise TypeError(f"DiTARVoice.from_pretrained got unexpected arguments {unknown}; it takes {list(keys)}.")
        options = {k: kwargs[k] for k in keys if kwargs.get(k) is not None}
        config_file, weights_file = folder_or_hub_files(
            pretrained_voice_name_or_path, (VOICE_CONFIG_NAME, VOICE_WEIGHTS_NAME), "a DiTARVoice", **options
        )
        damaged = f"{config_file.parent} is a damaged voice folder"
        again = "create the voice again from its audio (create_voice) and save it"
        try:
            config = json.loads(config_file.read_text("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{damaged}: {VOICE_CONFIG_NAME} is not valid JSON ({err}); {again}.") from err
        if not isinstance(config, dict):
            raise ValueError(f"{damaged}: {VOICE_CONFIG_NAME} holds a JSON {type(config).__name__}; {again}.")
        if config.get("format_version") != VOICE_FORMAT_VERSION:
            raise ValueError(
                f"{config_file}: voice format version {config.get('format_version')!r}, this library reads "
                f"{VOICE_FORMAT_VERSION}; create the voice again from its audio."
            )
        try:
            tensors = load_file(str(weights_file))
        except Exception as err:  # safetensors raises its own error type for a truncated or foreign file
            raise ValueError(f"{damaged}: {VOICE_WEIGHTS_NAME} cannot be read ({err}); {again}.") from err
        missing = [k for k in ("prompt_features", "prompt_input_ids", "speech_position_rate") if k not in tensors]
        missing += [k for k in ("transcript", "setup") if k not in config]
        if missing:
            raise ValueError(f"{damaged}: it lacks {', '.join(missing)}; {again}.")
        try:
            return cls(
                prompt_features=tensors["prompt_features"],
                prompt_input_ids=tensors["prompt_input_ids"],
                speech_position_rate=tensors["speech_position_rate"].reshape(-1)[0],
                transcript=config["transcript"],
                setup=config["setup"],
                reuse_prefix_cache=config.get("reuse_prefix_cache", True),
            )
        except (ValueError, TypeError, IndexError, OverflowError) as err:
            raise ValueError(f"{damaged}: {err} {again[0].upper()}{again[1:]}.") from err


def _model_key(model) -> tuple:
    """What the backbone's KV cache of a text prefix depends on: the model, its backbone's parameters (identity,
    storage and in-place version, so loaded, replaced or edited weights count; parameters made under
    `torch.inference_mode()` have no version), adapter switches, dtype, device and attention backend."""
    backbone = model.language_model
    params = tuple((id(p), *tensor_key(p)) for p in backbone.parameters())
    adapters = tuple(  # peft's adapter layers: which adapters are on, merged, and their scales
        tuple(repr(getattr(m, name, None)) for name in ("active_adapters", "disable_adapters", "merged", "scaling"))
        for m in backbone.modules()
        if type(m).__module__.startswith("peft")
    )
    attention = getattr(model.config.text_config, "_attn_implementation", None)
    return (id(model), str(model.dtype), str(model.device), attention, params, adapters)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

"""Generation settings of DiTAR, kept in a `transformers.GenerationConfig` (`generation_config.json`).

DiTAR samples continuous patches, not tokens, so most of GenerationConfig's token-sampling flags do not apply. Its own
knobs are stored next to them as extra attributes:

- `num_inference_steps`: LocDiT ODE steps per patch;
- `guidance_scale` g >= 0: LM guidance, v = v(0) + g (v(h) - v(0)); 1 disables it (the paper's w = g - 1);
- `temperature` tau in [0, 1]: the time on the reverse ODE at which fresh noise is injected (0 = deterministic);
- `num_candidates`: candidates sampled per text; the one the model's CTC head reads as the text most closely is kept;
- `candidate_prune_after_patches`: with several candidates, after this many patches each text keeps only the
  candidate whose speech so far best matches a prefix of its text, and goes on with that one alone (None or 0: all
  candidates run to the end and are ranked whole);
- `candidate_early_prune_after_patches` E and `candidate_early_prune_margin` m: with pruning, after E patches (fewer
  than `candidate_prune_after_patches`) a text already keeps its best candidate when the runner-up's prefix score is
  worse by at least m; texts whose best candidates are that close wait for the usual pruning point (None: off);
- `candidate_num_inference_steps`: with several candidates, LocDiT ODE steps per patch while the candidates compete
  (the patches before `candidate_prune_after_patches`, or all of them without pruning); a model with a
  `candidate_locdit` (see `DiTARConfig`) samples those patches with it. None: `num_inference_steps` and the model's
  own LocDiT;
- `candidate_shared_patches`: with several candidates, each text's candidates share their first N patches (one
  Gaussian draw for all of them), so streaming can play those patches before the candidates are ranked; the
  candidates differ from patch N on (0: from the first patch);
- `max_new_patches`: a fixed cap on generated patches, or None for the per-text bound
  `ceil(max_patches_per_text_token * text_length) + min_max_new_patches`;
- `stop_threshold`: a row stops when sigmoid(stop logit) exceeds it;
- `prompt_spectrum_match` in [0, 1]: how far the pipeline moves the generated speech's long-term average spectrum
  towards the voice prompt's before vocoding (log-mel features only; see `spectrum_matching`); 0 leaves the speech as
  generated. `DiTARForTextToSpeech.generate` (transformers' text-to-speech pipeline) does the same; the
  feature-level `DiTARForConditionalGeneration.generate` returns the patches as sampled;
- `prompt_spread_match` in [0, 1]: with it, the pipeline also scales how much each mel bin of the speech varies over
  time towards the prompt's (the exponent of the spread ratio; 0 leaves it as generated);
- `distilled_guidance_scale`: set by few-step distillation, the LM guidance scale folded into LocDiT's weights (it
  samples guided with the conditional branch alone, one LocDiT call per step), so `guidance_scale` must be 1; None
  for a LocDiT that was not distilled.

`do_sample=True` is recorded because DiTAR always samples (temperature 0 only moves where the noise enters), which also
keeps GenerationConfig's own validation quiet about `temperature`.
"""

from __future__ import annotations

import difflib
import functools
import math
import numbers
import threading
from dataclasses import dataclass

import torch
from transformers import GenerationConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)


class _WarnOncePerKind:
    """`warn_once(log, kind, message)`: log `message` as a warning the first time `kind` is seen in this process, then
    never again. transformers' `logger.warning_once` remembers each message text in an unbounded cache, so a message
    that carries per-call values (a setting's value, the flags a caller set) is logged again, and remembered again,
    for every new value. Here `kind` names what is warned about (a setting's name, a set of flag names), so there are
    as few entries as kinds, and the first message, values included, is the one shown. `warn_once.cache_clear()`
    forgets them, as `logger.warning_once.cache_clear()` does (for tests)."""

    def __init__(self):
        self._seen: set = set()
        self._lock = threading.Lock()  # calls from several threads: one of them logs

    def __call__(self, log, kind, message: str) -> None:
        with self._lock:
            if kind in self._seen:
                return
            self._seen.add(kind)
        log.warning(message)

    def __len__(self) -> int:
        return len(self._seen)

    def cache_clear(self) -> None:
        with self._lock:
            self._seen.clear()


warn_once = _WarnOncePerKind()

# Settings allowed but far beyond normal cost: generation warns, naming what they cost (the defaults are 4-10 steps,
# 1-4 candidates, and a cap from the text's length). Once per setting: one call resolves its settings several times.
COSTLY_SETTINGS: dict = {
    "num_inference_steps": (100, "every step is one LocDiT call per patch; 4 to 10 are usual"),
    "candidate_num_inference_steps": (100, "every step is one LocDiT call per patch and candidate; 1 to 10 are usual"),
    "num_candidates": (16, "every candidate is one more row sampled for every text"),
    "max_new_patches": (4096, "a patch is 4 frames, 4096 patches are minutes of audio"),
}

# settings whose None is a value of its own (no cap, no pruning), not "use the default"
OPTIONAL_SETTINGS = (
    "max_new_patches",
    "candidate_prune_after_patches",
    "candidate_early_prune_after_patches",
    "candidate_num_inference_steps",
    "distilled_guidance_scale",
)

GENERATION_DEFAULTS: dict = {
    "num_inference_steps": 10,
    "guidance_scale": 2.0,
    "temperature": 0.5,
    "num_candidates": 1,
    "candidate_prune_after_patches": None,
    "candidate_early_prune_after_patches": None,
    "candidate_early_prune_margin": 0.0,
    "candidate_shared_patches": 0,
    "candidate_num_inference_steps": None,
    "max_new_patches": None,
    "max_patches_per_text_token": 3.0,
    "min_max_new_patches": 16,
    "stop_threshold": 0.5,
    "distilled_guidance_scale": None,
    "prompt_spectrum_match": 0.0,
    "prompt_spread_match": 0.0,
}


class DiTARGenerationConfig(GenerationConfig):
    """A `GenerationConfig` whose DiTAR settings (see the module docstring) default to `GENERATION_DEFAULTS`."""

    def __init__(self, **kwargs):
        for key, value in GENERATION_DEFAULTS.items():
            kwargs.setdefault(key, value)
        kwargs.setdefault("do_sample", True)
        super().__init__(**kwargs)

    def validate(self, strict: bool = False, **kwargs):
        """transformers' checks, after DiTAR's own reading of `do_sample=False` (saving refuses it: transformers would
        blame `temperature`, which is DiTAR's own setting, not token sampling's)."""
        if self.do_sample is False:
            if strict:
                raise ValueError(DO_SAMPLE_FALSE + " Set do_sample=True (or leave it out) to save this config.")
            logger.warning_once(DO_SAMPLE_FALSE)
        super().validate(strict=strict, **kwargs)

    @classmethod
    def from_model_config(cls, model_config) -> DiTARGenerationConfig:
        """The defaults, updated with the sampling settings that configs written before generation configs existed
        kept in the model config (`DiTARConfig` reads them aside)."""
        legacy = getattr(model_config, "_legacy_generation_settings", None) or {}
        return cls(**legacy)


@dataclass(frozen=True)
class GenerationSettings:
    """The resolved DiTAR settings of one generation call."""

    num_inference_steps: int
    guidance_scale: float
    temperature: float
    num_candidates: int
    candidate_prune_after_patches: int | None
    candidate_early_prune_after_patches: int | None
    candidate_early_prune_margin: float
    candidate_shared_patches: int
    candidate_num_inference_steps: int | None
    max_new_patches: int | None
    max_patches_per_text_token: float
    min_max_new_patches: int
    stop_threshold: float
    distilled_guidance_scale: float | None = None
    prompt_spectrum_match: float = 0.0
    prompt_spread_match: float = 0.0


def resolve_generation_settings(
    generation_config: GenerationConfig | None, fallback_config: GenerationConfig | None = None, **overrides
) -> GenerationSettings:
    """Settings for one call: each override that is not None, else the generation config's value, else the default.
    Every value is checked, so a bad setting fails here with its name, from a call or from a saved file alike.

    With `fallback_config` (the model's own generation config) and another `generation_config` passed for one call,
    each setting is the override, else the passed config's value, else the fallback's, else the default. As in
    transformers' `generate` (which fills a passed config from the model's with `GenerationConfig.update(...,
    defaults_only=True)`), the passed config leaves a setting unset only where it is None or absent; any other value
    is used as given, the library default included. A `GenerationConfig(temperature=0.3)` (no DiTAR settings,
    `guidance_scale` None) thus changes the temperature alone and keeps the model's steps, guidance, candidates and
    distilled guidance; a `DiTARGenerationConfig` is used as it is but for its None values: there an optional
    setting's None means the model's value, not "no cap" or "no pruning" (set those on `model.generation_config`)."""
    if generation_config is not None and not isinstance(generation_config, GenerationConfig):
        # a dict would be read as "no settings" and silently fall back to the library defaults, not the model's
        raise TypeError(
            f"`generation_config` must be a transformers GenerationConfig (e.g. a copy of `model.generation_config` "
            f"with changes), got {type(generation_config).__name__}. To change single settings, pass them as "
            "keyword arguments instead, e.g. `generate(..., num_inference_steps=4)`."
        )
    merge = fallback_config is not None and generation_config is not None and fallback_config is not generation_config
    values, from_config = {}, set()
    for key, default in GENERATION_DEFAULTS.items():
        value = _plain_number(overrides.pop(key, None))
        if value is None and generation_config is not None:
            value = _plain_number(getattr(generation_config, key, None))
            if value is None and merge:
                value = _plain_number(getattr(fallback_config, key, None))
            from_config.add(key)
        values[key] = default if value is None and key not in OPTIONAL_SETTINGS else value
    if overrides:
        raise TypeError(f"unknown generation settings: {sorted(overrides)}; known: {sorted(GENERATION_DEFAULTS)}.")
    for config in (generation_config, fallback_config if merge else None):
        if config is not None:
            check_config_attributes(config)
    try:
        check_generation_settings(values)
    except ValueError as err:
        named = next((key for key in from_config if f"`{key}`" in str(err).split(" must be")[0]), None)
        if named is None:
            raise
        raise ValueError(f"{err} (from the generation config: `model.generation_config.{named}`)") from err
    for key, (bound, cost) in COSTLY_SETTINGS.items():
        if values[key] is not None and values[key] > bound:
            message = f"{key}={values[key]} is far beyond the usual cost ({cost}); expect a slow call."
            warn_once(logger, ("costly setting", key), message)
    return GenerationSettings(**values)


# Standard GenerationConfig flags that a user may expect to shape DiTAR's output (length, search, token sampling)
IGNORED_STANDARD_FLAGS = (
    "max_new_tokens",
    "max_length",
    "min_new_tokens",
    "min_length",
    "num_beams",
    "top_k",
    "top_p",
    "repetition_penalty",
)

# Names of the same settings in other diffusion and TTS libraries, too far from ours for a spelling match
SETTING_ALIASES = {
    "guidance": "guidance_scale",
    "cfg_scale": "guidance_scale",
    "cfg_strength": "guidance_scale",
    "steps": "num_inference_steps",
    "num_steps": "num_inference_steps",
    "nfe_step": "num_inference_steps",
    "candidates": "num_candidates",
    "max_patches": "max_new_patches",
}

# DiTAR always samples; transformers' do_sample=False would otherwise be kept and silently unused
DO_SAMPLE_FALSE = (
    "do_sample=False does not apply to DiTAR: it always samples its patches. For the same audio every time, pass a "
    "seeded generator; temperature=0 also leaves out the fresh noise of the reverse ODE."
)


def _plain_number(value):
    """numpy and 0-d torch numbers as Python ints and floats (`np.float32(2.0)`, `torch.tensor(0.5)`, `np.int64(4)`
    from sweeps and arrays), so that they are checked and used like the numbers they are."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.dtype.is_complex:
        value = value.item()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


@functools.cache
def _standard_flag_defaults() -> dict:
    """transformers' `GenerationConfig` flags and their defaults (built once: a config takes a while to make)."""
    return {key: value for key, value in vars(GenerationConfig()).items() if not key.startswith("_")}


def check_config_attributes(generation_config: GenerationConfig) -> None:
    """Refuse an attribute of the generation config that looks like a misspelt DiTAR setting
    (`generation_config.guidance_scal = 5` was kept and silently unused), and warn about standard flags set to values
    DiTAR does not use (`max_new_tokens`, `num_beams`, ...)."""
    defaults = _standard_flag_defaults()
    standard = set(defaults)
    ignored = [
        key for key in IGNORED_STANDARD_FLAGS if getattr(generation_config, key, defaults.get(key)) != defaults.get(key)
    ]
    if ignored:
        values = ", ".join(f"{key}={getattr(generation_config, key)!r}" for key in ignored)
        warn_once(
            logger,
            ("generation config sets unused flags", tuple(ignored)),
            f"The generation config sets {values}, which DiTAR does not use: its length is set by "
            "max_new_patches and its stop head, its sampling by temperature, guidance_scale, num_inference_steps and "
            "num_candidates.",
        )
    if getattr(generation_config, "do_sample", True) is False:
        logger.warning_once("The generation config sets " + DO_SAMPLE_FALSE)
    for key in vars(generation_config):
        if key.startswith("_") or key in GENERATION_DEFAULTS or key in standard:
            continue
        close = [SETTING_ALIASES[key]] if key in SETTING_ALIASES else []
        close = close or difflib.get_close_matches(key, list(GENERATION_DEFAULTS), n=1, cutoff=0.8)
        if close:
            raise ValueError(
                f"the generation config has `{key}`, which is not a DiTAR setting; did you mean `{close[0]}`? "
                f"(model.generation_config.{close[0]} = ...)"
            )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_generation_settings(values: dict) -> None:
    """Raise a ValueError naming the first invalid setting in `values` (keys of `GENERATION_DEFAULTS`)."""
    rules = {
        "num_inference_steps": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        "guidance_scale": (lambda v: _is_number(v) and v >= 0, "a finite number >= 0 (1 disables guidance)"),
        "temperature": (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1] (0 = deterministic)"),
        "num_candidates": (lambda v: _is_int(v) and v >= 1, "an integer >= 1 (1 samples one candidate)"),
        "candidate_prune_after_patches": (
            lambda v: v is None or (_is_int(v) and v >= 0),
            "an integer >= 0 or None (patches after which each text keeps its best candidate; 0 or None keeps all "
            "candidates to the end)",
        ),
        "candidate_early_prune_after_patches": (
            lambda v: v is None or (_is_int(v) and v >= 0),
            "an integer >= 0 or None (patches after which a text whose best candidate leads by the margin keeps it; "
            "0 or None: off)",
        ),
        "candidate_early_prune_margin": (
            lambda v: _is_number(v) and v >= 0,
            "a finite number >= 0 (how much worse the runner-up's prefix score must be for an early choice)",
        ),
        "candidate_shared_patches": (
            lambda v: _is_int(v) and v >= 0,
            "an integer >= 0 (patches that each text's candidates share before they branch; 0 shares none)",
        ),
        "candidate_num_inference_steps": (
            lambda v: v is None or (_is_int(v) and v >= 1),
            "an integer >= 1 or None (LocDiT steps per patch while candidates compete; None: num_inference_steps)",
        ),
        "max_new_patches": (lambda v: v is None or (_is_int(v) and v >= 1), "an integer >= 1 or None"),
        "max_patches_per_text_token": (lambda v: _is_number(v) and v > 0, "a number > 0"),
        "min_max_new_patches": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
        "stop_threshold": (lambda v: _is_number(v) and 0 < v < 1, "a number in (0, 1)"),
        "distilled_guidance_scale": (
            lambda v: v is None or (_is_number(v) and v >= 0),
            "None or the finite guidance scale >= 0 that distillation folded into LocDiT",
        ),
        "prompt_spectrum_match": (
            lambda v: _is_number(v) and 0 <= v <= 1,
            "a number in [0, 1] (how far to move the speech's average spectrum towards the prompt's; 0: not at all)",
        ),
        "prompt_spread_match": (
            lambda v: _is_number(v) and 0 <= v <= 1,
            "a number in [0, 1] (how far to scale the speech's spread per mel bin towards the prompt's; 0: not at all)",
        ),
    }
    for key, value in values.items():
        valid, allowed = rules[key]
        if not valid(value):
            raise ValueError(f"`{key}` must be {allowed}, got {value!r}.")
    shared, prune = values.get("candidate_shared_patches"), values.get("candidate_prune_after_patches")
    if shared and prune and shared >= prune:
        # at the pruning point the candidates would still be identical, and ranking them would choose nothing
        raise ValueError(
            f"`candidate_shared_patches`={shared} must be less than `candidate_prune_after_patches`={prune}: the "
            "candidates must have branched before they are ranked; share fewer patches or prune later."
        )
    early = values.get("candidate_early_prune_after_patches")
    if early and (not prune or early >= prune or (shared and shared >= early)):
        # an early choice only makes sense before the usual one, and after the candidates have branched
        raise ValueError(
            f"`candidate_early_prune_after_patches`={early} needs `candidate_prune_after_patches` above it (got "
            f"{prune!r}) and `candidate_shared_patches` below it (got {shared!r}); set them so, or leave it None."
        )
    folded, scale = values.get("distilled_guidance_scale"), values.get("guidance_scale")
    if folded is not None and scale is not None and scale != 1:
        # a folded LocDiT has no trained unconditional branch: guiding it again would extrapolate towards noise
        raise ValueError(
            f"`guidance_scale` must be 1 for this model: its LocDiT was distilled with guidance {folded:g} folded in "
            f"(`distilled_guidance_scale`), got guidance_scale={scale!r}; leave guidance_scale unset or pass 1."
        )


def reject_unknown_kwargs(
    method: str, kwargs: dict, known, hint: str | None = None, instead: dict[str, str] | None = None
) -> None:
    """Raise a TypeError naming every unexpected keyword argument of `method`, with the closest known name, so that a
    misspelt argument (`speech_atention_mask`) fails instead of being ignored; `instead` maps names another library's
    methods take to what to use here (said in place of the closest name); `hint`, when given, ends the message (what
    the caller probably did, and what to do instead)."""
    if not kwargs:
        return
    import difflib

    instead = instead or {}
    parts = []
    for name in sorted(kwargs):
        if name in instead:
            parts.append(f"{name!r} ({instead[name]})")
            continue
        close = difflib.get_close_matches(name, list(known), n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    message = f"{method}() got unexpected keyword arguments: {', '.join(parts)}."
    raise TypeError(message if hint is None else f"{message} {hint}")


def default_generator(device: torch.device) -> torch.Generator | None:
    """The generator torch samples from on `device` when none is given (None where torch keeps no such object here)."""
    if device.type == "cpu":
        return torch.default_generator
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return None


def candidate_generators(generator, batch: int, num_candidates: int, device: torch.device | None = None):
    """Generators for a batch whose rows were repeated num_candidates times: a single generator (or None) serves the
    whole batch of several texts; a list of one per text gives every candidate of text i its own generator, seeded from
    generator i, so a text's candidates still do not depend on the rest of the batch. A single generator for a single
    text counts as a list of one: `pipe(text, generator=g)` then samples what `pipe([text, ...], generator=[g, ...])`
    samples for that text, and what a long text's sentence groups (generated one call each) sample. No generator for a
    single text means torch's global one on `device`, as in diffusers: `torch.manual_seed(0); pipe(text)` samples what
    `pipe(text, generator=torch.manual_seed(0))` samples."""
    if not isinstance(generator, (list, tuple)):
        if generator is None and batch == 1 and device is not None:
            generator = default_generator(device)
        if generator is None or batch != 1:
            return generator
        generator = [generator]
    if len(generator) != batch:
        raise ValueError(f"got {len(generator)} generators for {batch} texts; pass one per text or a single one.")
    children = []
    for parent in generator:
        seeds = torch.randint(0, 2**62, (num_candidates,), generator=parent, device=parent.device)
        children += [torch.Generator(device=parent.device).manual_seed(int(seed)) for seed in seeds]
    return children


def repeat_for_candidates(inputs: dict, generator, num_candidates: int) -> tuple[dict, object]:
    """The inputs and generators of K = num_candidates candidates per text: every batched tensor's rows repeated K
    times in place (text i's candidates are rows i*K ... i*K+K-1), and the generators from `candidate_generators`.
    A missing attention mask becomes all ones, since ranking the candidates reads it. K = 1 returns both unchanged."""
    if num_candidates == 1:
        return inputs, generator
    input_ids = inputs["input_ids"]
    generator = candidate_generators(generator, input_ids.shape[0], num_candidates, input_ids.device)
    if inputs.get("attention_mask") is None:
        inputs = {**inputs, "attention_mask": torch.ones_like(input_ids)}
    inputs = {
        key: value.repeat_interleave(num_candidates, dim=0)
        if isinstance(value, torch.Tensor) and value.dim()
        else value
        for key, value in inputs.items()
    }
    return inputs, generator


# Flags transformers' text-to-speech pipeline passes to every model's generate, with its own values: not the user's.
_PIPELINE_FLAGS = {"max_new_tokens": 256, "return_dict_in_generate": True}
_BOOKKEEPING_FLAGS = {"pad_token_id", "bos_token_id", "eos_token_id", "output_attentions", "output_hidden_states"}


# Said when the derived patch cap, not the stop head, ended a text (the CLI words its own warning and drops this one).
CUT_BY_CAP_WARNING = "the patch cap derived from the text length ended"


def cut_by_cap_message(stopped: list[bool], max_new_patches: int | None) -> str | None:
    """The warning for texts the patch cap derived from their length ended, not the model (it failed to stop: speech
    that runs on with wrong words, or an end that is missing); None when every text stopped, or when the cap was the
    caller's own (the resolved `max_new_patches`, from the call or the generation config), which is not news."""
    if max_new_patches is not None:
        return None
    cut = [row for row, done in enumerate(stopped) if not done]
    if not cut:
        return None
    one = len(cut) == 1
    which = "The text" if len(stopped) == 1 else f"Text{'' if one else 's'} {', '.join(map(str, cut))} of the batch"
    return (
        f"{which} did not end on {'its' if one else 'their'} own: {CUT_BY_CAP_WARNING} {'it' if one else 'them'}, "
        "so the end may be missing or the speech may run on with wrong words (`stopped` is False there). Another "
        "seed or a cleaner voice prompt of 3-8 s usually helps; `max_new_patches` sets the cap."
    )


# Read speech runs at about 12-23 characters of text a second (spaces and punctuation counted; numbers and
# abbreviations are spoken longer than they are written): speech that ended faster than this for its text skipped part
# of it, and the seconds of slack spare a short text's quick end.
MAX_SPOKEN_CHARACTERS_PER_SECOND = 35.0
SHORT_SPEECH_SLACK_SECONDS = 0.3


def least_seconds_of_text(text: str) -> float:
    """The fewest seconds a text's words can be said in (`MAX_SPOKEN_CHARACTERS_PER_SECOND`, less the slack)."""
    return len(text.strip()) / MAX_SPOKEN_CHARACTERS_PER_SECOND - SHORT_SPEECH_SLACK_SECONDS


# Where only the voice prompt's speaking rate is known (the model sees token ids, not the text): speech that ends
# before a third of the time its text takes at that rate skipped part of it (a voice rarely speeds up that much).
SPEAKING_RATE_SHORT_FACTOR = 3.0


def too_short_message(seconds: list[float], least: list[float | None], stopped: list[bool]) -> str | None:
    """The warning for texts whose speech the model ended sooner than their words can be said (`least[row]` seconds,
    None where unknown): part of the text was skipped, often because the voice prompt's transcript does not match its
    recording. None when every text's speech is long enough, or ran to the patch cap (warned about on its own)."""
    short = [
        (row, length, bound)
        for row, (length, bound, done) in enumerate(zip(seconds, least, stopped, strict=True))
        if done and bound is not None and length < bound
    ]
    if not short:
        return None
    which = "The text" if len(seconds) == 1 else "Text " + ", ".join(str(row) for row, _, _ in short) + " of the batch"
    said = "; ".join(f"{length:.2f} s where its words take at least {bound:.1f} s" for _, length, bound in short)
    return (
        f"{which} ended much shorter than it can be spoken ({said}): part of the text was probably skipped. A voice "
        "prompt whose transcript does not say exactly what its recording says often causes this: check prompt_text "
        "word for word (or let the pipeline transcribe the prompt); another seed may also help."
    )


def warn_ignored_generation_flags(flags: dict) -> None:
    """Warn once per set of standard `GenerationConfig` flags that a caller set and DiTAR does not use (e.g.
    `max_new_tokens=50`, `do_sample=False`, `num_beams=4`): they are accepted so that generic callers work, but they
    change nothing, which should not go unnoticed."""
    ignored = sorted(
        key
        for key, value in flags.items()
        if key not in _BOOKKEEPING_FLAGS and not (key in _PIPELINE_FLAGS and _PIPELINE_FLAGS[key] == value)
    )
    if ignored:
        values = ", ".join(f"{key}={flags[key]!r}" for key in ignored)
        warn_once(
            logger,
            ("generate ignores flags", tuple(ignored)),
            f"generate ignores {values}: DiTAR's length is set by max_new_patches and its stop head, its "
            "sampling by temperature (0: no fresh noise), guidance_scale, num_inference_steps, num_candidates and "
            "generator.",
        )


def split_generation_kwargs(kwargs: dict) -> tuple[dict, dict]:
    """Split keyword arguments into standard `GenerationConfig` flags (which callers such as transformers' pipelines
    pass to every model: `max_new_tokens`, `pad_token_id`, `return_dict_in_generate`, ...) and the rest."""
    standard = _standard_flag_defaults()
    flags = {key: value for key, value in kwargs.items() if key in standard}
    return flags, {key: value for key, value in kwargs.items() if key not in standard}

"""The bad-input table: unusual or wrong inputs at every public layer, each with the outcome it must give.

Every case has an id, the layer it exercises, a short description of the input and either an expected error (type and a
regular expression its message must match: the message names the argument and the fix) or a function that checks a
documented sensible result and describes it. `tests/test_bad_inputs.py` runs the table under pytest;
`examples/research/bad_inputs_table.py` runs it and prints it as Markdown (docs/research/bad_inputs.md).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from model_helpers import DiTARModelTester, set_stop_logit
from pipeline_helpers import (
    SR,
    get_dummy_feature_extractor,
    get_dummy_inputs,
    get_dummy_pipeline,
    spoken,
    tone,
    write_wav,
)

from modeling_ditar import (
    DiTARForConditionalGeneration,
    DiTARPipeline,
    DiTARProcessor,
    DiTARTextFrontend,
    GriffinLimVocoder,
    build_ditar_tokenizer,
)

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    id: str
    layer: str
    input: str
    run: Callable
    raises: type[BaseException] | tuple | None = None
    match: str | None = None


CASES: list[Case] = []


def case(id: str, layer: str, input: str, raises=None, match: str | None = None):
    """Register `fn(ctx)`: with `raises`, it must raise that type with a message matching `match`; without, it must
    return a string describing the (checked) sensible result."""

    def register(fn):
        CASES.append(Case(id, layer, input, fn, raises, match))
        return fn

    return register


class Context:
    """Lazily built, shared objects for the cases (tiny models and pipelines, a scratch folder)."""

    def __init__(self, tmp: Path):
        self.tmp = Path(tmp)
        self._counter = 0

    def folder(self, name: str) -> Path:
        self._counter += 1
        path = self.tmp / f"{self._counter:03d}-{name}"
        path.mkdir(parents=True)
        return path

    @cached_property
    def pipe(self) -> DiTARPipeline:
        return get_dummy_pipeline()

    @cached_property
    def stopping_pipe(self) -> DiTARPipeline:
        pipe = get_dummy_pipeline()
        set_stop_logit(pipe.model, 20.0)  # stops after the first patch
        return pipe

    @cached_property
    def tester(self) -> DiTARModelTester:
        return DiTARModelTester()

    @cached_property
    def model(self) -> DiTARForConditionalGeneration:
        return self.tester.get_model()

    def train_inputs(self) -> dict:
        return self.tester.prepare_inputs()

    def gen_inputs(self) -> dict:
        return self.tester.prepare_generation_inputs()

    @cached_property
    def fe(self):
        return get_dummy_feature_extractor()

    @cached_property
    def processor(self) -> DiTARProcessor:
        return self.pipe.processor

    @cached_property
    def frontend(self) -> DiTARTextFrontend:
        return DiTARTextFrontend(build_ditar_tokenizer(phonemize=False))

    @cached_property
    def vocoder(self) -> GriffinLimVocoder:
        return GriffinLimVocoder.from_feature_extractor(self.fe, n_iter=2)

    @cached_property
    def saved(self) -> Path:
        """A saved tiny pipeline folder (copy it before changing it)."""
        folder = self.tmp / "saved-pipeline"
        self.pipe.save_pretrained(folder)
        return folder

    def copy_saved(self, name: str) -> Path:
        target = self.folder(name) / "pipe"
        shutil.copytree(self.saved, target)
        return target


def run_case(item: Case, ctx: Context) -> tuple[bool, str]:
    """(passed, outcome): the outcome names the error raised (type and first line) or the result returned."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = item.run(ctx)
    except BaseException as err:  # noqa: BLE001 - every outcome is recorded, SystemExit of the scripts included
        if isinstance(err, KeyboardInterrupt):
            raise
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        outcome = f"{type(err).__name__}: {message}"
        if item.raises is None:
            return False, "unexpected " + outcome
        if not isinstance(err, item.raises):
            return False, f"expected {_names(item.raises)}, got {outcome}"
        if item.match and not re.search(item.match, str(err), flags=re.S | re.I):
            return False, f"message does not match {item.match!r}: {outcome}"
        return True, outcome
    if item.raises is not None:
        return False, f"expected {_names(item.raises)}, got a result: {str(result)[:150]}"
    return True, str(result)


def _names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    return "/".join(t.__name__ for t in types)


def run_all(tmp: Path | None = None) -> list[tuple[Case, bool, str]]:
    with contextlib.ExitStack() as stack:
        if tmp is None:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ctx = Context(tmp)
        return [(item, *run_case(item, ctx)) for item in CASES]


def markdown_table(results: list[tuple[Case, bool, str]]) -> str:
    def cell(text: str) -> str:
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= 160 else text[:157] + "..."

    lines = ["| case | layer | input | outcome | ok |", "|---|---|---|---|---|"]
    for item, passed, outcome in results:
        lines.append(
            f"| `{item.id}` | {item.layer} | {cell(item.input)} | {cell(outcome)} | {'yes' if passed else '**no**'} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def call(ctx: Context, **overrides):
    return ctx.pipe(**get_dummy_inputs(**overrides))


def expect(condition: bool, message: str):
    if not condition:
        raise AssertionError(message)


def stream_args(**overrides) -> dict:
    args = get_dummy_inputs(**overrides)
    return args


def cli(*argv: str) -> tuple[int, str]:
    from modeling_ditar.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(argv))
    return code, err.getvalue()


def cli_error(*argv: str, match: str) -> str:
    code, err = cli(*argv)
    expect(code == 2, f"exit status {code}, expected 2; stderr: {err[-300:]}")
    expect(re.search(match, err, flags=re.I) is not None, f"stderr does not match {match!r}: {err[-300:]}")
    return f"exit status 2: {err.strip().splitlines()[-1]}"


def load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"conversion_{name}", ROOT / "conversion" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------------------------------
# pipeline __call__

P = "pipeline"
for _id, _text, _match in (
    ("pipe-text-none", None, "text must be"),
    ("pipe-text-empty", "", "text is empty"),
    ("pipe-text-spaces", "   \n\t", "text is empty"),
    ("pipe-text-int", 42, "text must be"),
    ("pipe-text-empty-list", [], "text must be"),
    ("pipe-text-list-with-none", ["hi", None], "text must be"),
    ("pipe-text-list-with-empty", ["hi", "  "], "text\\[1\\] of the 2 texts is empty"),
    ("pipe-text-punctuation-only", "...!!!", "text"),
):
    case(_id, P, f"text={_text!r}", ValueError, _match)(lambda ctx, _t=_text: call(ctx, text=_t))

for _id, _name, _value, _exc in (
    ("pipe-steps-zero", "num_inference_steps", 0, ValueError),
    ("pipe-steps-float", "num_inference_steps", 2.5, ValueError),
    ("pipe-guidance-negative", "guidance_scale", -1.0, ValueError),
    ("pipe-guidance-nan", "guidance_scale", float("nan"), ValueError),
    ("pipe-guidance-string", "guidance_scale", "2", ValueError),
    ("pipe-temperature-above-1", "temperature", 2.0, ValueError),
    ("pipe-spectrum-match-above-1", "prompt_spectrum_match", 1.5, ValueError),
    ("pipe-spectrum-match-string", "prompt_spectrum_match", "0.5", ValueError),
    ("pipe-max-new-patches-zero", "max_new_patches", 0, ValueError),
    ("pipe-max-new-patches-bool", "max_new_patches", True, ValueError),
    ("pipe-num-candidates-zero", "num_candidates", 0, ValueError),
    ("pipe-num-candidates-without-ctc", "num_candidates", 2, ValueError),
    ("pipe-output-type-wav", "output_type", "wav", ValueError),
    ("pipe-generator-string", "generator", "seed0", TypeError),
    ("pipe-generator-int", "generator", 42, TypeError),
    ("pipe-generator-list-of-int", "generator", [1], TypeError),
    ("pipe-sampling-rate-negative", "sampling_rate", -8000, ValueError),
    ("pipe-sampling-rate-float", "sampling_rate", 8000.5, ValueError),
    ("pipe-sampling-rate-not-audio", "sampling_rate", 100, ValueError),
):
    case(_id, P, f"{_name}={_value!r}", _exc, re.escape(_name))(lambda ctx, _n=_name, _v=_value: call(ctx, **{_n: _v}))


@case(
    "pipe-spread-match-in-generation-config",
    P,
    "generation_config.prompt_spread_match = 2",
    ValueError,
    "prompt_spread_match.*\\[0, 1\\]",
)
def _(ctx):
    config = ctx.pipe.model.generation_config
    config.prompt_spread_match = 2
    try:
        return call(ctx)
    finally:
        config.prompt_spread_match = 0.0


@case("pipe-unknown-keyword", P, "guidance=2.0 (misspelt guidance_scale)", TypeError, "guidance")
def _(ctx):
    return call(ctx, guidance=2.0)


@case("pipe-prompt-text-without-audio", P, "prompt_text without prompt_audio", ValueError, "prompt_audio")
def _(ctx):
    return call(ctx, prompt_audio=None)


@case(
    "pipe-prompt-audio-without-text",
    P,
    "prompt_audio without prompt_text",
    ValueError,
    "without prompt_text.*Pass prompt_text=.*enable_prompt_transcription",
)
def _(ctx):
    return call(ctx, prompt_text=None)


@case(
    "pipe-asr-model-missing-folder",
    P,
    "enable_prompt_transcription('./no-such-asr')",
    FileNotFoundError,
    "not a folder",
)
def _(ctx):
    ctx.pipe.enable_prompt_transcription("./no-such-asr-model-folder")


@case(
    "pipe-asr-model-not-a-model",
    P,
    "enable_prompt_transcription(a folder without a model)",
    OSError,
    "could not load the speech recognition model.*local folder.*or give the prompt's transcript instead",
)
def _(ctx):
    with tempfile.TemporaryDirectory() as folder:
        ctx.pipe.enable_prompt_transcription(folder)


@case("pipe-asr-model-wrong-type", P, "enable_prompt_transcription(3)", TypeError, "Hub id or local folder.*function")
def _(ctx):
    ctx.pipe.enable_prompt_transcription(3)


@case(
    "pipe-transcriber-hears-nothing",
    P,
    "a prompt the transcriber hears nothing in",
    ValueError,
    "heard no words.*give the transcript",
)
def _(ctx):
    ctx.pipe.enable_prompt_transcription(lambda audio, rate: "")
    try:
        return call(ctx, prompt_audio=spoken(2.0), prompt_text=None)
    finally:
        ctx.pipe.disable_prompt_transcription()


@case(
    "pipe-transcriber-loops",
    P,
    "a transcriber whose transcript repeats itself",
    ValueError,
    "repeats itself.*give the transcript",
)
def _(ctx):
    ctx.pipe.enable_prompt_transcription(lambda audio, rate: "and you will not " * 40)
    try:
        return call(ctx, prompt_audio=spoken(2.0), prompt_text=None)
    finally:
        ctx.pipe.disable_prompt_transcription()


@case("pipe-prompt-missing-file", P, "prompt_audio='/no/such.wav'", FileNotFoundError, "prompt_audio.*no/such.wav")
def _(ctx):
    return call(ctx, prompt_audio="/no/such.wav")


@case("pipe-prompt-array-without-rate", P, "array prompt_audio, sampling_rate=None", ValueError, "sampling_rate")
def _(ctx):
    return call(ctx, sampling_rate=None)


@case("pipe-prompt-silent", P, "prompt_audio all zeros", ValueError, "prompt_audio.*silent")
def _(ctx):
    return call(ctx, prompt_audio=np.zeros(800, dtype=np.float32))


@case(
    "pipe-prompt-dc-only", P, "prompt_audio a constant 0.01 (a DC offset, no sound)", ValueError, "prompt_audio.*silent"
)
def _(ctx):
    return call(ctx, prompt_audio=np.full(800, 0.01, dtype=np.float32))


@case(
    "pipe-default-voice-too-short",
    P,
    "set_default_voice with a 1 ms clip",
    ValueError,
    "new default voice cannot be used.*shorter than the model needs",
)
def _(ctx):
    pipe = get_dummy_pipeline()
    before = pipe.default_voice
    try:
        pipe.set_default_voice(tone(0.001), "a tone", sampling_rate=SR)
    finally:
        expect(pipe.default_voice is before, "the refused voice replaced the previous one")


@case("pipe-prompt-big-endian", P, "prompt_audio a big-endian ('>f4') array")
def _(ctx):
    native = call(ctx, generator=torch.Generator().manual_seed(0)).audios[0]
    swapped = np.asarray(get_dummy_inputs()["prompt_audio"], dtype=np.float32).astype(">f4")
    out = call(ctx, prompt_audio=swapped, generator=torch.Generator().manual_seed(0)).audios[0]
    expect(np.array_equal(out, native), "a big-endian prompt speaks otherwise than the same samples in native order")
    return "read like the native array (torch refused it: 'conversion between byte orders is not supported')"


@case(
    "pipe-diffusers-prompt-argument",
    P,
    "pipe(prompt='Hello.'), diffusers' name for the text",
    TypeError,
    r"'prompt' \(the text to say is `text`",
)
def _(ctx):
    return ctx.pipe(prompt="Hello.")


@case(
    "pipe-prompt-audio-rate-pair",
    P,
    "pipe([a, b], prompt_audio=(array, 8000)): a clip paired with its rate",
    ValueError,
    r"prompt_audio is a clip paired with its sampling rate \(audio, rate\); .*prompt_audio=audio, sampling_rate=8000",
)
def _(ctx):
    return ctx.pipe(**get_dummy_inputs(text=["one", "two"], prompt_audio=(spoken(), SR), sampling_rate=None))


@case(
    "pipe-prompt-audio-gradio-pair",
    P,
    "pipe(text, prompt_audio=(8000, array)), Gradio's (rate, audio)",
    ValueError,
    r"\(rate, audio\), as Gradio returns it; .*sampling_rate=8000",
)
def _(ctx):
    return ctx.pipe(**get_dummy_inputs(prompt_audio=(SR, spoken()), sampling_rate=None))


@case(
    "pipe-voice-audio-rate-pair",
    P,
    "create_voice((array, 8000), transcript)",
    ValueError,
    r"audio is a clip paired with its sampling rate \(audio, rate\); .*audio=audio, sampling_rate=8000",
)
def _(ctx):
    return get_dummy_pipeline().create_voice((spoken(), SR), "a test voice")


@case(
    "pipe-default-voice-transcript-not-str",
    P,
    "set_default_voice(audio, 123)",
    ValueError,
    "cannot be used: text must be a string",
)
def _(ctx):
    pipe = get_dummy_pipeline()
    before = pipe.default_voice
    try:
        pipe.set_default_voice(spoken(), 123, sampling_rate=SR)
    finally:
        expect(pipe.default_voice is before, "the refused voice replaced the previous one")


@case(
    "pipe-stochastic-scheduler",
    P,
    "a pipeline built with FlowMatchEulerDiscreteScheduler(stochastic_sampling=True)",
    TypeError,
    "injects its own noise.*set `temperature`",
)
def _(ctx):
    from diffusers import FlowMatchEulerDiscreteScheduler

    components = get_dummy_pipeline().components
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(components["scheduler"].config, stochastic_sampling=True)
    return DiTARPipeline(**{**components, "scheduler": scheduler})


@case(
    "pipe-sequential-offload",
    P,
    "pipe.enable_sequential_cpu_offload()",
    NotImplementedError,
    r"enable_model_cpu_offload\(\)",
)
def _(ctx):
    return get_dummy_pipeline().enable_sequential_cpu_offload(device="cpu")


@case(
    "pipe-from-pipe-matmul-dtype",
    P,
    "DiTARPipeline.from_pipe(pipe, matmul_dtype=torch.bfloat16)",
    ValueError,
    "shares the pipeline's model.*set_matmul_dtype",
)
def _(ctx):
    pipe = get_dummy_pipeline()
    try:
        DiTARPipeline.from_pipe(pipe, matmul_dtype=torch.bfloat16)
    finally:
        expect(pipe.model.matmul_dtype == torch.float32, "the refused from_pipe switched the source's model")


@case("pipe-prompt-nan", P, "prompt_audio with NaN samples", ValueError, "prompt_audio.*non-finite")
def _(ctx):
    audio = tone(0.1)
    audio[10] = np.nan
    return call(ctx, prompt_audio=audio)


@case(
    "pipe-prompt-int-pcm-as-float",
    P,
    "int16 PCM values in a float32 array (peak ~10,000)",
    ValueError,
    "prompt_audio.*full scale.*32768",
)
def _(ctx):
    return call(ctx, prompt_audio=(tone(0.1) * 32768).astype(np.float32))


for _id, _dtype, _desc, _result in (
    ("pipe-prompt-int16", np.int16, "prompt_audio as an int16 array", "int PCM scaled by 1/32768"),
    (
        "pipe-prompt-int64-16-bit",
        np.int64,
        "16-bit samples in an int64 array (numpy's default int)",
        "values within 16 bits read as 16-bit PCM, not as silence",
    ),
):

    @case(_id, P, _desc)
    def _(ctx, _dtype=_dtype, _result=_result):
        out = call(ctx, prompt_audio=(tone(0.1) * 32767).astype(_dtype))
        reference = call(ctx, prompt_audio=tone(0.1))
        expect(np.allclose(out.audios, reference.audios, atol=1e-3), "integer prompt differs from its float version")
        return f"same audio as the float prompt ({_result})"


@case(
    "pipe-prompt-text-too-short",
    P,
    "prompt_text='hi' for 2 s of prompt_audio",
    ValueError,
    "prompt_text has .* tokens .* far below human speech.* complete transcript",
)
def _(ctx):
    return call(ctx, prompt_audio=spoken(2.0), prompt_text="hi")


@case("pipe-prompt-white-noise", P, "2 s of white noise as prompt_audio", ValueError, "does not sound like speech")
def _(ctx):
    hiss = np.random.default_rng(0).normal(0.0, 0.05, 2 * SR).astype(np.float32)
    return call(ctx, prompt_audio=hiss, prompt_text="a clip of hiss")


@case(
    "pipe-prompts-stacked",
    P,
    "2 prompts stacked into one [2, S] array for 2 texts",
    ValueError,
    r"prompt_audio has shape \(2, 800\).*list\(prompt_audio\)",
)
def _(ctx):
    return call(ctx, text=["hello there", "good day"], prompt_audio=np.stack([tone(0.1), tone(0.1) * 0.5]))


@case("pipe-generator-list-of-one", P, "[generator] for 2 texts", ValueError, "1 generators for a batch of 2")
def _(ctx):
    return call(ctx, text=["hello there", "good day"], generator=[torch.Generator().manual_seed(0)])


@case("pipe-generator-same-twice", P, "[torch.manual_seed(0), torch.manual_seed(1)] for 2 texts")
def _(ctx):
    seen = _pipeline_warnings(
        lambda: call(ctx, text=["hello there", "good day"], generator=[torch.manual_seed(0), torch.manual_seed(1)])
    )[1]
    expect(any("are the same torch.Generator" in m for m in seen), "no warning about the generator given twice")
    return "warns: the list holds torch's global generator twice, so neither text reproduces its seed alone"


@case(
    "pipe-callback-not-callable", P, "callback_on_patch_end=True", TypeError, "callback_on_patch_end must be a function"
)
def _(ctx):
    return call(ctx, callback_on_patch_end=True)


@case(
    "pipe-callback-diffusers-form",
    P,
    "callback_on_patch_end=fn(pipe, step, timestep, callback_kwargs)",
    TypeError,
    r"fn\(pipe, patch_index, patch_step\) or None; cb\(pipe, step, timestep, callback_kwargs\) cannot be called so",
)
def _(ctx):
    def cb(pipe, step, timestep, callback_kwargs):
        return callback_kwargs

    return call(ctx, callback_on_patch_end=cb)


@case("pipe-steps-numpy-int", P, "num_inference_steps=np.int64(2)")
def _(ctx):
    out = call(ctx, num_inference_steps=np.int64(2))
    reference = call(ctx)
    expect(np.array_equal(out.audios, reference.audios), "numpy integer steps differ from int steps")
    return "same audio as num_inference_steps=2"


@case("pipe-prompt-stereo-channel-last", P, "prompt_audio [samples, 2]")
def _(ctx):
    stereo = np.stack([tone(0.1), tone(0.1)], axis=1)
    out = call(ctx, prompt_audio=stereo)
    reference = call(ctx, prompt_audio=tone(0.1))
    expect(np.allclose(out.audios, reference.audios, atol=1e-5), "stereo prompt differs from its mono downmix")
    return "same audio as the mono downmix"


@case("pipe-prompt-too-short", P, "prompt_audio of 1 ms", ValueError, "prompt_audio.*shorter.*longer prompt")
def _(ctx):
    return call(ctx, prompt_audio=tone(0.001))


@case("pipe-prompt-dict", P, "prompt_audio={'array': ..., 'sampling_rate': ...} (a `datasets` Audio value)")
def _(ctx):
    out = call(ctx, prompt_audio={"array": tone(0.1), "sampling_rate": SR, "path": "x.wav"}, sampling_rate=None)
    reference = call(ctx, prompt_audio=tone(0.1))
    expect(np.array_equal(out.audios, reference.audios), "a datasets Audio value differs from its array")
    return "same audio as its array at its own sampling rate"


@case(
    "pipe-prompt-dict-no-rate",
    P,
    "prompt_audio={'array': ...} and no sampling_rate",
    ValueError,
    "prompt_audio: an audio dict with an array needs its 'sampling_rate'",
)
def _(ctx):
    return call(ctx, prompt_audio={"array": tone(0.1)}, sampling_rate=None)


@case(
    "pipe-prompt-dict-keys",
    P,
    "prompt_audio={'audio': ...}",
    ValueError,
    r"prompt_audio: an audio dict needs 'array' \(or 'raw'\) and 'sampling_rate'.*got keys \['audio'\]",
)
def _(ctx):
    return call(ctx, prompt_audio={"audio": tone(0.1)})


@case("pipe-prompt-object", P, "prompt_audio=object()", TypeError, "prompt_audio must be a path, a numpy array")
def _(ctx):
    return call(ctx, prompt_audio=object())


@case("pipe-prompt-count-mismatch", P, "3 prompt_audio for 2 texts", ValueError, "3 prompt_audio for 2 texts")
def _(ctx):
    return call(ctx, text=["a b", "c d"], prompt_audio=[tone(0.1)] * 3, prompt_text="x")


@case(
    "pipe-runaway-transcript",
    P,
    "3 s prompt with a 2,000-character transcript",
    ValueError,
    r"prompt_text.*\d+ tokens for 3\.0\d s of prompt_audio.*per second",
)
def _(ctx):
    text = " ".join(["hello world"] * 170)[:2000]
    return call(ctx, prompt_audio=spoken(3.0), prompt_text=text, max_new_patches=None)


@case("pipe-speaking-rate-cap", P, "1.5 s prompt with a 60-character transcript, no max_new_patches")
def _(ctx):
    pipe = ctx.pipe
    args = get_dummy_inputs(prompt_audio=spoken(1.5), prompt_text="one two three four five six seven eight nine ten")
    args["max_new_patches"] = None
    inputs = pipe.encode_inputs([args["text"]], args["prompt_audio"], args["prompt_text"], SR)
    settings = pipe.model.generation_settings(max_patches_per_text_token=100.0)
    old = int(pipe.model.default_max_new_patches(inputs["attention_mask"].sum(1), settings)[0])
    new = int(
        pipe.model.default_max_new_patches(
            inputs["attention_mask"].sum(1),
            settings,
            prompt_frames=inputs["prompt_attention_mask"].sum(1),
            speech_position_rate=inputs["speech_position_rate"],
        )[0]
    )
    expect(new < old, f"the cap from the prompt's speaking rate ({new}) is not below the text-only cap ({old})")
    return f"cap follows the prompt's pace: {new} patches (text length alone would allow {old})"


@case("pipe-guidance-zero", P, "guidance_scale=0 (no text conditioning), stop head never fires")
def _(ctx):
    out, seen = _pipeline_warnings(lambda: call(ctx, guidance_scale=0.0))
    expect(out.stopped == [False], f"stopped={out.stopped}, expected [False] (the cap ended it)")
    expect(any("guidance_scale" in m for m in seen), "no warning about guidance_scale < 1")
    return "warns that guidance_scale < 1 ignores the text; stopped=[False] (the patch cap ended it)"


def _pipeline_warnings(run) -> tuple:
    """(what `run()` returns, the messages the pipeline logged meanwhile)."""
    from diffusers.utils import logging

    logger = logging.get_logger("modeling_ditar.pipeline_ditar")
    seen = []
    handler = _ListHandler(seen)
    logger.addHandler(handler)
    try:
        return run(), seen
    finally:
        logger.removeHandler(handler)


class _ListHandler:
    def __init__(self, sink):
        import logging

        self.sink = sink
        self.level = logging.WARNING
        self._handler = logging.Handler()

    def handle(self, record):
        self.sink.append(record.getMessage())

    def __getattr__(self, name):
        return getattr(self._handler, name)


@case("pipe-output-peak", P, "default voice, 20 patches")
def _(ctx):
    out = ctx.pipe("hello there", num_inference_steps=2, max_new_patches=20, generator=torch.manual_seed(0))
    peak = float(np.abs(out.audios).max())
    expect(peak < 1.0, f"peak {peak} >= 1.0")
    return f"peak {peak:.3f} < 1.0 (soft limiter)"


@case("pipe-text-with-nul", P, "text='hello\\x00 there. second sentence'")
def _(ctx):
    ids = ctx.processor(["hello\x00 there. second sentence"])["input_ids"]
    clean = ctx.processor(["hello there. second sentence"])["input_ids"]
    expect(torch.equal(ids, clean), "NUL changed the tokens")
    return "NUL removed; same tokens as the clean text"


@case("pipe-return-dict-false", P, "return_dict=False")
def _(ctx):
    out = call(ctx, return_dict=False)
    expect(isinstance(out, tuple) and len(out) == 1, f"got {type(out)}")
    return "a 1-tuple (audios,)"


@case("pipe-batch-stop-flags", P, "2 texts, cap of 3 patches, never stopping")
def _(ctx):
    out = call(ctx, text=["hello there", "good day"])
    expect(out.stopped == [False, False], f"stopped={out.stopped}")
    return "stopped=[False, False]: both rows ended at the cap"


# ---------------------------------------------------------------------------------------------------------------------
# stream()

S = "stream"


@case("stream-list-text", S, "text=['a', 'b']", ValueError, "one text at a time")
def _(ctx):
    return ctx.pipe.stream(**stream_args(text=["a b", "c d"]))


@case("stream-empty-text", S, "text=''", ValueError, "text is empty")
def _(ctx):
    return ctx.pipe.stream(**stream_args(text=""))


@case("stream-generator-string", S, "generator='seed0', raised at the call", TypeError, "generator.*manual_seed")
def _(ctx):
    return ctx.pipe.stream(**stream_args(generator="seed0"))


@case("stream-generator-list", S, "2 generators for one text", ValueError, "2 generators for a batch of 1")
def _(ctx):
    return ctx.pipe.stream(**stream_args(generator=[torch.Generator(), torch.Generator()]))


@case(
    "stream-long-text-other-script-later",
    S,
    "a 300-character text whose last sentence has a Han letter, raised at the call",
    ValueError,
    "Han script",
)
def _(ctx):
    return ctx.pipe.stream(**stream_args(text="Hello there friend. " * 15 + "My teacher was Mr. \u738b."))


@case("stream-steps-zero", S, "num_inference_steps=0, raised at the call", ValueError, "num_inference_steps")
def _(ctx):
    return ctx.pipe.stream(**stream_args(num_inference_steps=0))


@case("stream-missing-prompt", S, "prompt_audio='/no/such.wav', raised at the call", FileNotFoundError, "no/such")
def _(ctx):
    return ctx.pipe.stream(**stream_args(prompt_audio="/no/such.wav"))


@case("stream-unknown-keyword", S, "output_type='pt' (not a stream argument)", TypeError, "output_type")
def _(ctx):
    return ctx.pipe.stream(**stream_args(), output_type="pt")


@case("stream-reason-before", S, "finished_reason before the first chunk")
def _(ctx):
    stream = ctx.pipe.stream(**stream_args())
    expect(stream.finished_reason is None and stream.stopped is None, "a reason before generation ended")
    stream.close()
    return "finished_reason=None, stopped=None until the stream ends"


@case("stream-reason-cap", S, "a stream cut by max_new_patches=3")
def _(ctx):
    stream = ctx.pipe.stream(**stream_args())
    chunks = list(stream)
    expect(len(chunks) > 0, "no audio")
    expect(stream.finished_reason == "max_new_patches", f"finished_reason={stream.finished_reason!r}")
    expect(stream.stopped is False, f"stopped={stream.stopped!r}")
    return "finished_reason='max_new_patches', stopped=False"


@case("stream-reason-stop", S, "a stream the stop head ends")
def _(ctx):
    stream = ctx.stopping_pipe.stream(**stream_args(max_new_patches=10))
    list(stream)
    expect(stream.finished_reason == "stopped", f"finished_reason={stream.finished_reason!r}")
    expect(stream.stopped is True, f"stopped={stream.stopped!r}")
    return "finished_reason='stopped', stopped=True"


@case("stream-equals-call", S, "joined chunks vs pipe(...)")
def _(ctx):
    joined = np.concatenate(list(ctx.pipe.stream(**stream_args())))
    out = call(ctx)
    expect(np.allclose(joined, out.audios[0][: out.audio_lengths[0]], atol=1e-6), "stream differs from the call")
    return "equal to the one-shot audio"


# ---------------------------------------------------------------------------------------------------------------------
# model forward

F = "model forward"


def forward(ctx, **changes):
    inputs = ctx.train_inputs()
    for key, value in changes.items():
        if callable(value):
            inputs[key] = value(inputs[key])
        elif value is None:
            inputs.pop(key)
        else:
            inputs[key] = value
    return ctx.model(**inputs)


@case("fwd-misspelt-mask", F, "speech_attention_masks=...", TypeError, "did you mean 'speech_attention_mask'")
def _(ctx):
    inputs = ctx.train_inputs()
    inputs["speech_attention_masks"] = inputs.pop("speech_attention_mask")
    return ctx.model(**inputs)


def _nan_features(x):
    x = x.clone()
    x[0, 0, 0] = float("nan")
    return x


for _id, _desc, _changes, _exc, _match in (
    ("fwd-nan-features", "a NaN in speech_features", {"speech_features": _nan_features}, ValueError, "speech_features"),
    (
        "fwd-inf-features",
        "an Inf in speech_features",
        {"speech_features": lambda x: x.index_fill(2, torch.tensor([1]), float("inf"))},
        ValueError,
        "speech_features",
    ),
    (
        "fwd-zero-speech-mask",
        "speech_attention_mask all zeros",
        {"speech_attention_mask": lambda m: torch.zeros_like(m)},
        ValueError,
        "fewer than patch_size.*real frames",
    ),
    (
        "fwd-zero-text-mask-row",
        "attention_mask with an all-zero row",
        {"attention_mask": lambda m: torch.cat([m[:1], torch.zeros_like(m[1:])])},
        ValueError,
        "attention_mask.*no text",
    ),
    ("fwd-oov-ids", "input_ids = vocab_size", {"input_ids": lambda x: x.fill_(64)}, ValueError, "vocabulary.*64"),
    ("fwd-negative-ids", "input_ids = -1", {"input_ids": lambda x: x.fill_(-1)}, ValueError, "input_ids"),
    ("fwd-float-ids", "float input_ids", {"input_ids": lambda x: x.float()}, (ValueError, TypeError), "input_ids"),
    (
        "fwd-feature-dim",
        "speech_features with D=5",
        {"speech_features": lambda x: x[..., :5]},
        ValueError,
        "feature_dim",
    ),
    ("fwd-batch-mismatch", "speech_features of batch 1", {"speech_features": lambda x: x[:1]}, ValueError, "batch"),
    ("fwd-1d-ids", "input_ids 1-D", {"input_ids": lambda x: x[0]}, ValueError, "input_ids"),
    (
        "fwd-left-padded-speech",
        "speech_attention_mask left-padded",
        {"speech_attention_mask": lambda m: m.flip(1)},
        ValueError,
        "speech_attention_mask",
    ),
    (
        "fwd-mask-shape",
        "attention_mask of another width",
        {"attention_mask": lambda m: m[:, :-1]},
        ValueError,
        "attention_mask",
    ),
    (
        "fwd-no-features",
        "speech_features missing",
        {"speech_features": None},
        (TypeError, ValueError),
        "speech_features",
    ),
):
    case(_id, F, _desc, _exc, _match)(lambda ctx, _c=_changes: forward(ctx, **_c))


@case("fwd-past-max-positions", F, "a training row longer than the backbone's max_position_embeddings")
def _(ctx):
    import logging

    from modeling_ditar.modeling_ditar import logger

    text_config = {**ctx.model.config.text_config.to_dict(), "max_position_embeddings": 8}
    model = ctx.tester.get_model(text_config=text_config).train()
    seen = []
    handler = _ListHandler(seen)
    logging.getLogger("modeling_ditar.modeling_ditar").addHandler(handler)
    logger.warning_once.cache_clear()
    try:
        model(**ctx.train_inputs())
    finally:
        logging.getLogger("modeling_ditar.modeling_ditar").removeHandler(handler)
    expect(any("past the backbone's max_position_embeddings (8)" in m for m in seen), f"no warning: {seen}")
    return "warns once: positions generation never reaches are trained for nothing"


@case("fwd-normal", F, "a right-padded batch")
def _(ctx):
    out = forward(ctx)
    expect(bool(torch.isfinite(out.loss)), "loss is not finite")
    return f"finite loss {float(out.loss):.3f}"


# ---------------------------------------------------------------------------------------------------------------------
# generate

G = "model generate"


def generate(ctx, **changes):
    inputs = ctx.gen_inputs()
    for key, value in changes.items():
        inputs[key] = value(inputs[key]) if callable(value) and key in inputs else value
    inputs.setdefault("max_new_patches", 2)
    return ctx.model.generate(**inputs, num_inference_steps=2)


for _id, _desc, _changes, _exc, _match in (
    ("gen-generator-string", "generator='seed0'", {"generator": "seed0"}, TypeError, "generator.*manual_seed"),
    ("gen-generator-int", "generator=42", {"generator": 42}, TypeError, "generator"),
    (
        "gen-generator-count",
        "3 generators for 2 rows",
        {"generator": [torch.Generator() for _ in range(3)]},
        ValueError,
        "3 generators",
    ),
    ("gen-oov-ids", "input_ids = vocab_size", {"input_ids": lambda x: x.fill_(64)}, ValueError, "vocabulary.*64"),
    ("gen-float-ids", "float input_ids", {"input_ids": lambda x: x.float()}, (ValueError, TypeError), "input_ids"),
    ("gen-nan-prompt", "NaN prompt_features", {"prompt_features": _nan_features}, ValueError, "prompt_features"),
    (
        "gen-empty-text-row",
        "attention_mask with an all-zero row",
        {"attention_mask": lambda m: torch.cat([m[:1], torch.zeros_like(m[1:])])},
        ValueError,
        "attention_mask",
    ),
    (
        "gen-mask-without-prompt",
        "prompt_attention_mask without prompt_features",
        {"prompt_features": None},
        ValueError,
        "prompt_attention_mask",
    ),
    ("gen-empty-ids", "input_ids [2, 0]", {"input_ids": torch.zeros(2, 0, dtype=torch.long)}, ValueError, "input_ids"),
    ("gen-stop-threshold", "stop_threshold=1.0", {"stop_threshold": 1.0}, ValueError, "stop_threshold"),
    ("gen-unknown-keyword", "guidance=2", {"guidance": 2.0}, TypeError, "did you mean 'guidance_scale'"),
    ("gen-max-new-patches-negative", "max_new_patches=-1", {"max_new_patches": -1}, ValueError, "max_new_patches"),
):
    case(_id, G, _desc, _exc, _match)(lambda ctx, _c=_changes: generate(ctx, **_c))


@case("gen-prompt-int-features", G, "int64 prompt_features", ValueError, "prompt_features must be floating point")
def _(ctx):
    inputs = ctx.gen_inputs()
    return ctx.model.generate(**{**inputs, "prompt_features": inputs["prompt_features"].long()}, max_new_patches=2)


@case("gen-patch-callback-not-callable", G, "patch_callback=5", TypeError, "patch_callback must be a function")
def _(ctx):
    return ctx.model.generate(**ctx.gen_inputs(), max_new_patches=2, patch_callback=5)


@case("gen-past-key-values-string", G, "past_key_values='x'", TypeError, "past_key_values must be a transformers Cache")
def _(ctx):
    return ctx.model.generate(**ctx.gen_inputs(), max_new_patches=2, past_key_values="x")


@case("gen-mask-as-list", G, "attention_mask as a list", ValueError, "attention_mask must be a torch.Tensor")
def _(ctx):
    inputs = ctx.gen_inputs()
    return ctx.model.generate(**{**inputs, "attention_mask": inputs["attention_mask"].tolist()}, max_new_patches=2)


@case(
    "gen-generation-config-dict",
    G,
    "generation_config={'num_inference_steps': 1}",
    TypeError,
    "GenerationConfig.*keyword",
)
def _(ctx):
    inputs = ctx.gen_inputs()
    return ctx.model.generate(**inputs, max_new_patches=2, generation_config={"num_inference_steps": 1})


@case("gen-rate-bounds-cap", G, "speech_position_rate of a very fast prompt, no max_new_patches")
def _(ctx):
    model = ctx.model
    inputs = ctx.gen_inputs()
    settings = model.generation_settings()
    text_lengths = inputs["attention_mask"].sum(1)
    frames = inputs["prompt_attention_mask"].sum(1)
    plain = model.default_max_new_patches(text_lengths, settings)
    # nearly all text tokens belong to the prompt's transcript: the target is a token or two
    rate = (text_lengths.float() - 1) / frames.float()
    capped = model.default_max_new_patches(text_lengths, settings, prompt_frames=frames, speech_position_rate=rate)
    expect(bool((capped <= plain).all()) and bool((capped < plain).any()), f"{capped.tolist()} vs {plain.tolist()}")
    out = model.generate(**inputs, speech_position_rate=rate, num_inference_steps=2)
    patches = int(out.lengths.max()) // model.config.patch_size
    expect(patches <= int(capped.max()), f"generated {patches} patches, cap {capped.tolist()}")
    return f"cap {capped.tolist()} patches (text length alone: {plain.tolist()})"


@case("gen-stopped-flags", G, "stop head never fires, cap 2")
def _(ctx):
    model = ctx.tester.get_model()
    set_stop_logit(model, -30.0)
    out = model.generate(**ctx.gen_inputs(), max_new_patches=2, num_inference_steps=2)
    expect(out.stopped.tolist() == [False, False], f"stopped={out.stopped.tolist()}")
    return "stopped=[False, False], lengths = 2 patches"


# ---------------------------------------------------------------------------------------------------------------------
# feature extractor

FE = "feature extractor"
_CLIP = tone(0.1)

for _id, _desc, _args, _exc, _match in (
    ("fe-no-rate", "sampling_rate missing", dict(raw_speech=_CLIP), ValueError, "sampling_rate"),
    (
        "fe-batch-as-2d",
        "a [4, S] array (4 clips stacked)",
        dict(raw_speech=np.stack([_CLIP] * 4), sampling_rate=SR),
        ValueError,
        r"raw_speech.*\(4, 800\).*list",
    ),
    ("fe-empty", "an empty array", dict(raw_speech=np.zeros(0, np.float32), sampling_rate=SR), ValueError, "empty"),
    ("fe-empty-list", "[]", dict(raw_speech=[], sampling_rate=SR), ValueError, "raw_speech"),
    (
        "fe-nan",
        "NaN samples",
        dict(raw_speech=np.full(800, np.nan, np.float32), sampling_rate=SR),
        ValueError,
        "non-finite",
    ),
    (
        "fe-tf-tensors",
        "return_tensors='tf'",
        dict(raw_speech=_CLIP, sampling_rate=SR, return_tensors="tf"),
        ValueError,
        "return_tensors",
    ),
    (
        "fe-max-length-negative",
        "truncation=True, max_length=-5",
        dict(raw_speech=_CLIP, sampling_rate=SR, truncation=True, max_length=-5),
        ValueError,
        "max_length.*positive integer",
    ),
    (
        "fe-max-length-float",
        "padding='max_length', max_length=2.5",
        dict(raw_speech=_CLIP, sampling_rate=SR, padding="max_length", max_length=2.5),
        ValueError,
        "max_length.*positive integer",
    ),
    (
        "fe-unknown-keyword",
        "sample_rate=8000 (misspelt)",
        dict(raw_speech=_CLIP, sampling_rate=SR, sample_rate=SR),
        TypeError,
        "did you mean 'sampling_rate'",
    ),
    (
        "fe-int-pcm-as-float",
        "int16 values in a float array",
        dict(raw_speech=_CLIP * 32768, sampling_rate=SR),
        ValueError,
        "full scale.*32768",
    ),
    (
        "fe-4d",
        "a [2, 2, 2, S] array",
        dict(raw_speech=np.ones((2, 2, 2, 800), np.float32), sampling_rate=SR),
        ValueError,
        "shape",
    ),
    ("fe-string", "raw_speech='hello'", dict(raw_speech="hello", sampling_rate=SR), ValueError, "numpy array"),
    ("fe-rate-zero", "sampling_rate=0", dict(raw_speech=_CLIP, sampling_rate=0), ValueError, "sampling_rate"),
    ("fe-silent", "all zeros", dict(raw_speech=np.zeros(800, np.float32), sampling_rate=SR), ValueError, "silent"),
):
    case(_id, FE, _desc, _exc, _match)(lambda ctx, _a=_args: ctx.fe(**_a))


@case("fe-stereo-channel-last", FE, "[S, 2] stereo")
def _(ctx):
    out = ctx.fe(np.stack([_CLIP, _CLIP], axis=1), sampling_rate=SR, return_tensors="np")
    mono = ctx.fe(_CLIP, sampling_rate=SR, return_tensors="np")
    expect(out["input_features"].shape == mono["input_features"].shape, "not one clip")
    expect(np.allclose(out["input_features"], mono["input_features"], atol=1e-5), "differs from mono")
    return f"one clip {out['input_features'].shape}, equal to the mono downmix"


@case("fe-stereo-channel-first", FE, "[2, S] stereo")
def _(ctx):
    out = ctx.fe(np.stack([_CLIP, _CLIP]), sampling_rate=SR, return_tensors="np")
    expect(out["input_features"].shape[0] == 1, "not one clip")
    return f"one clip {out['input_features'].shape}"


@case("fe-list-batch", FE, "a list of 4 clips")
def _(ctx):
    out = ctx.fe([_CLIP] * 4, sampling_rate=SR, return_tensors="np")
    expect(out["input_features"].shape[0] == 4, "not a batch of 4")
    return f"a batch {out['input_features'].shape}"


@case("fe-int16", FE, "int16 PCM")
def _(ctx):
    out = ctx.fe((_CLIP * 32767).astype(np.int16), sampling_rate=SR, return_tensors="np")
    ref = ctx.fe(_CLIP, sampling_rate=SR, return_tensors="np")
    expect(np.allclose(out["input_features"], ref["input_features"], atol=1e-2), "int16 differs from float")
    return "scaled by 1/32768: same features as the float clip"


# ---------------------------------------------------------------------------------------------------------------------
# processor

PR = "processor"


@case(
    "proc-prompt-audio-rate-pair",
    PR,
    "processor(text, prompt_audio=(array, 8000), prompt_text=...)",
    ValueError,
    r"prompt_audio is a clip paired with its sampling rate \(audio, rate\)",
)
def _(ctx):
    return ctx.processor("hello", prompt_audio=(spoken(), SR), prompt_text="a test voice")


for _id, _desc, _args, _exc, _match in (
    (
        "proc-unknown-keyword",
        "prompt_texts=... (misspelt)",
        dict(text="hi", prompt_texts="x"),
        TypeError,
        "prompt_text",
    ),
    (
        "proc-audio-without-text",
        "prompt_audio without prompt_text",
        dict(text="hi", prompt_audio=_CLIP, sampling_rate=SR),
        ValueError,
        "prompt_text",
    ),
    ("proc-return-np", "return_tensors='np'", dict(text="hi", return_tensors="np"), ValueError, "return_tensors"),
    ("proc-on-unknown", "on_unknown='ignore'", dict(text="hi", on_unknown="ignore"), ValueError, "on_unknown"),
    ("proc-text-int", "text=5", dict(text=5), ValueError, "text"),
    ("proc-text-none", "text=None", dict(text=None), ValueError, "text"),
    (
        "proc-two-texts-three-prompts",
        "2 texts, 3 prompt_text",
        dict(text=["a", "b"], prompt_text=["x", "y", "z"], prompt_audio=_CLIP, sampling_rate=SR),
        ValueError,
        "prompt_text",
    ),
    (
        "proc-empty-audio-list",
        "prompt_audio=[]",
        dict(text="hi", prompt_audio=[], prompt_text="x", sampling_rate=SR),
        ValueError,
        "prompt_audio",
    ),
):
    case(_id, PR, _desc, _exc, _match)(lambda ctx, _a=_args: ctx.processor(**_a))


# ---------------------------------------------------------------------------------------------------------------------
# text front end

T = "text front end"


@case("text-nul", T, "'hello\\x00 world'")
def _(ctx):
    expect(ctx.frontend.encode("hello\x00 world") == ctx.frontend.encode("hello world"), "NUL changed the tokens")
    return "NUL removed, nothing truncated"


@case("text-zero-width", T, "'wor\\u200bld'")
def _(ctx):
    expect(ctx.frontend.encode("wor\u200bld") == ctx.frontend.encode("world"), "zero-width space split the word")
    return "zero-width space removed"


@case("text-control", T, "'hello\\x07\\x1b world'")
def _(ctx):
    expect(ctx.frontend.encode("hello\x07\x1b world") == ctx.frontend.encode("hello world"), "controls kept")
    return "control characters removed"


for _id, _text, _desc, _exc, _match in (
    ("text-punctuation-only", "...!!!", "'...!!!'", ValueError, "nothing to say|no word|speak"),
    ("text-chinese", "你好世界", "Chinese text", ValueError, "Chinese|Han"),
    ("text-arabic", "مرحبا بالعالم", "Arabic text", ValueError, "Arabic"),
    ("text-cyrillic", "привет мир", "Cyrillic text", ValueError, "Cyrillic"),
    ("text-none", None, "None", (ValueError, TypeError), "text"),
    ("text-bytes", b"hello", "b'hello'", (ValueError, TypeError), "text"),
):
    case(_id, T, _desc, _exc, _match)(lambda ctx, _t=_text: ctx.frontend.encode(_t))


@case("text-snowman-error", T, "'snow ☃' with on_unknown='error'", ValueError, "☃|U\\+2603")
def _(ctx):
    return ctx.frontend.encode("snow \u2603", on_unknown="error")


@case("text-snowman-warn", T, "'snow ☃' (default on_unknown='warn')")
def _(ctx):
    ids, plain = ctx.frontend.encode("snow \u2603"), ctx.frontend.encode("snow")
    expect(ids[: len(plain)] == plain and ids[-1] == ctx.frontend.unk_token_id, f"☃ gave {ids[len(plain) :]}")
    expect(len(ids) <= len(plain) + 2, "☃ was spelt out")
    return "☃ mapped to <unk> (with a warning naming it), not spelt out"


@case("text-fraction-characters", T, "'add 1½ cups, ¾ tsp'")
def _(ctx):
    spelled = ctx.frontend.encode("add one and a half cups, three quarters teaspoon")
    expect(ctx.frontend.encode("add 1½ cups, ¾ tsp") == spelled, "read otherwise than spelled out")
    return "read 'one and a half cups, three quarters teaspoon' (NFKC made '1½' into '11⁄2', eleven halves)"


@case("text-mixed-number", T, "'add 2 3/4 cups'")
def _(ctx):
    spelled = ctx.frontend.encode("add two and three quarters cups")
    expect(ctx.frontend.encode("add 2 3/4 cups") == spelled, "read otherwise than spelled out")
    return "read 'two and three quarters cups'"


@case("text-on-unknown-bad", T, "on_unknown='skip'", ValueError, "on_unknown")
def _(ctx):
    return ctx.frontend.encode("hello", on_unknown="skip")


# ---------------------------------------------------------------------------------------------------------------------
# vocoder

V = "vocoder"

for _id, _desc, _features, _exc, _match in (
    ("voc-mel-bins", "features with 5 mel bins", torch.zeros(1, 10, 5), ValueError, "8|mel"),
    ("voc-nan", "NaN features", torch.full((1, 10, 8), float("nan")), ValueError, "features"),
    ("voc-1d", "1-D features", torch.zeros(10), ValueError, "features"),
):
    case(_id, V, _desc, _exc, _match)(lambda ctx, _f=_features: ctx.vocoder(_f))


@case("voc-n-iter-negative", V, "GriffinLimVocoder(n_iter=-1)", ValueError, "n_iter")
def _(ctx):
    return GriffinLimVocoder.from_feature_extractor(ctx.fe, n_iter=-1)


@case(
    "voc-from-missing-folder", V, "GriffinLimVocoder.from_pretrained('/no/such/voc')", FileNotFoundError, "not a folder"
)
def _(ctx):
    return GriffinLimVocoder.from_pretrained("/no/such/voc")


@case("voc-call-n-iter-negative", V, "vocoder(features, n_iter=-1)", ValueError, "n_iter")
def _(ctx):
    return ctx.vocoder(torch.full((1, 10, 8), -5.0), n_iter=-1)


@case("voc-generator-string", V, "vocoder(features, generator='x')", TypeError, "generator")
def _(ctx):
    return ctx.vocoder(torch.full((1, 10, 8), -5.0), generator="x")


@case(
    "voc-features-out-of-range",
    V,
    "log-mel values of 100 (e.g. a huge guidance_scale)",
    ValueError,
    "log-mel value of 100.0.*guidance_scale",
)
def _(ctx):
    return ctx.vocoder(torch.full((1, 10, 8), 100.0))


@case(
    "voc-stream-batched-features", V, "StreamingVocoder.decode of [1, T, D]", ValueError, r"one sequence.*frames\[0\]"
)
def _(ctx):
    from modeling_ditar import StreamingVocoder

    return StreamingVocoder(ctx.vocoder).decode(torch.full((1, 40, 8), -5.0))


@case("voc-stream-crossfade-negative", V, "StreamingVocoder(crossfade_samples=-5)", ValueError, "crossfade_samples")
def _(ctx):
    from modeling_ditar import StreamingVocoder

    return StreamingVocoder(ctx.vocoder, crossfade_samples=-5)


@case("voc-stream-chunk-float", V, "StreamingVocoder(chunk_frames=2.5)", ValueError, "chunk_frames")
def _(ctx):
    from modeling_ditar import StreamingVocoder

    return StreamingVocoder(ctx.vocoder, chunk_frames=2.5)


@case("voc-stream-width-change", V, "push 8-bin frames, then 5-bin frames", ValueError, "5 features per frame.*8")
def _(ctx):
    from modeling_ditar import StreamingVocoder

    stream = StreamingVocoder(ctx.vocoder)
    stream.push(torch.full((4, 8), -5.0))
    return stream.push(torch.full((4, 5), -5.0))


@case("voc-save-to-file", V, "save_pretrained('<a file>')", ValueError, "save_directory")
def _(ctx):
    target = ctx.folder("voc") / "file.txt"
    target.write_text("x")
    return ctx.vocoder.save_pretrained(target)


@case("voc-one-frame", V, "a single frame")
def _(ctx):
    out = ctx.vocoder(torch.full((1, 1, 8), -5.0))
    expect(out.shape == (1, 0), f"shape {tuple(out.shape)}")
    return "an empty waveform [1, 0] ((T - 1) * hop samples)"


# ---------------------------------------------------------------------------------------------------------------------
# CLI

C = "CLI"


@case("cli-no-command", C, "ditar")
def _(ctx):
    return cli_error(match="choose a command")


@case("cli-empty-text", C, "ditar synthesize ''")
def _(ctx):
    return cli_error("synthesize", "", "-o", str(ctx.folder("cli") / "a.wav"), match="text")


@case("cli-serve-empty-api-key", C, "ditar serve --api-key ''")
def _(ctx):
    return cli_error("serve", "--api-key", "", match="--api-key is empty")


@case("cli-bad-steps", C, "--steps 0")
def _(ctx):
    return cli_error("synthesize", "hi", "--steps", "0", "-o", str(ctx.folder("cli") / "a.wav"), match="steps")


@case("cli-bad-spectrum-match", C, "--prompt-spectrum-match 2")
def _(ctx):
    out = str(ctx.folder("cli") / "a.wav")
    return cli_error("synthesize", "hi", "--prompt-spectrum-match", "2", "-o", out, match="prompt-spectrum-match")


@case("cli-missing-model", C, "--model ./no/such/folder")
def _(ctx):
    out = str(ctx.folder("cli") / "a.wav")
    return cli_error("synthesize", "hi", "--model", "./no/such/folder", "-o", out, match="no such folder")


@case("cli-model-not-pipeline", C, "--model <an empty folder>")
def _(ctx):
    out = str(ctx.folder("cli") / "a.wav")
    return cli_error("synthesize", "hi", "--model", str(ctx.folder("empty")), "-o", out, match="model_index.json")


@case("cli-audio-without-text", C, "--prompt-audio without --prompt-text, --asr-model a missing folder")
def _(ctx):
    folder = ctx.folder("cli")
    wav = write_wav(folder / "p.wav", tone(0.5))
    missing = str(folder / "no-asr-model")
    argv = ("synthesize", "hi", "--prompt-audio", wav, "--asr-model", missing, "-o", str(folder / "a.wav"))
    return cli_error(*argv, match="--asr-model: the speech recognition model .* is not a folder")


@case("cli-bad-extension", C, "-o out.xyz")
def _(ctx):
    return cli_error("synthesize", "hi", "-o", str(ctx.folder("cli") / "a.xyz"), match="output")


@case("cli-headerless-extension", C, "-o out.raw (headerless: no sample format)")
def _(ctx):
    return cli_error("synthesize", "hi", "-o", str(ctx.folder("cli") / "a.raw"), match="cannot tell the audio format")


@case("cli-missing-prompt-file", C, "--prompt-audio /no/such.wav")
def _(ctx):
    out = str(ctx.folder("cli") / "a.wav")
    argv = ("synthesize", "hi", "--prompt-audio", "/no/such.wav", "--prompt-text", "x", "-o", out)
    return cli_error(*argv, match="no/such.wav")


@case("cli-guidance-negative", C, "--guidance-scale -1")
def _(ctx):
    out = str(ctx.folder("cli") / "a.wav")
    return cli_error("synthesize", "hi", "--guidance-scale", "-1", "-o", out, match="guidance")


# ---------------------------------------------------------------------------------------------------------------------
# save / load

L = "save/load"


@case("load-missing-path", L, "from_pretrained('./no/such/pipeline')", FileNotFoundError, "no/such/pipeline.*not exist")
def _(ctx):
    return DiTARPipeline.from_pretrained("./no/such/pipeline")


@case("load-missing-abs-path", L, "from_pretrained('/tmp/.../missing')", FileNotFoundError, "missing.*not exist")
def _(ctx):
    return DiTARPipeline.from_pretrained(str(ctx.tmp / "missing"))


@case("load-no-model-index", L, "a folder without model_index.json", FileNotFoundError, "model_index.json")
def _(ctx):
    return DiTARPipeline.from_pretrained(ctx.folder("empty"))


@case(
    "load-use-safetensors-false",
    L,
    "from_pretrained(folder, use_safetensors=False) on a folder saved as safetensors",
    FileNotFoundError,
    "safetensors only.*drop use_safetensors=False",
)
def _(ctx):
    return DiTARPipeline.from_pretrained(ctx.copy_saved("no-bin"), use_safetensors=False)


@case("load-model-index-list", L, "model_index.json holding a JSON list", ValueError, "JSON list.*save_pretrained")
def _(ctx):
    folder = ctx.copy_saved("index-list")
    (folder / "model_index.json").write_text("[]")
    return DiTARPipeline.from_pretrained(folder)


@case("load-no-processor", L, "a pipeline folder without processor/", FileNotFoundError, "processor")
def _(ctx):
    folder = ctx.copy_saved("no-processor")
    shutil.rmtree(folder / "processor")
    return DiTARPipeline.from_pretrained(folder)


@case("load-no-model-config", L, "a pipeline folder without model/config.json", FileNotFoundError, "model/config.json")
def _(ctx):
    folder = ctx.copy_saved("no-config")
    (folder / "model" / "config.json").unlink()
    return DiTARPipeline.from_pretrained(folder)


@case("load-truncated-weights", L, "model/model.safetensors cut in half", OSError, "model/model.safetensors")
def _(ctx):
    folder = ctx.copy_saved("truncated")
    weights = folder / "model" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return DiTARPipeline.from_pretrained(folder)


@case("load-garbage-weights", L, "model/model.safetensors replaced by text", OSError, "model/model.safetensors")
def _(ctx):
    folder = ctx.copy_saved("garbage")
    (folder / "model" / "model.safetensors").write_text("not a weight file")
    return DiTARPipeline.from_pretrained(folder)


def _nan_checkpoint(ctx) -> Path:
    from safetensors.torch import load_file, save_file

    folder = ctx.copy_saved("nan")
    weights = folder / "model" / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[name][0] = float("nan")
    save_file(tensors, str(weights), metadata={"format": "pt"})
    for linked in folder.glob("*.safetensors"):  # the root's copy for transformers
        linked.unlink()
        shutil.copy(weights, linked)
    return folder


@case("load-nan-weights-pipeline", L, "a NaN in model/model.safetensors", ValueError, "NaN.*model.safetensors")
def _(ctx):
    return DiTARPipeline.from_pretrained(_nan_checkpoint(ctx))


@case("load-nan-weights-model", L, "DiTARForConditionalGeneration from NaN weights", ValueError, "NaN.*safetensors")
def _(ctx):
    return DiTARForConditionalGeneration.from_pretrained(_nan_checkpoint(ctx) / "model")


@case("load-roundtrip", L, "save then load")
def _(ctx):
    loaded = DiTARPipeline.from_pretrained(ctx.saved)
    loaded.set_progress_bar_config(disable=True)
    a = loaded(**get_dummy_inputs()).audios
    b = call(ctx).audios
    expect(np.array_equal(a, b), "loaded pipeline gives other audio")
    return "same audio"


@case("save-over-file", L, "save_pretrained('<a file>')", (OSError, ValueError), "file")
def _(ctx):
    target = ctx.folder("file") / "pipe"
    target.write_text("x")
    return ctx.pipe.save_pretrained(target)


@case(
    "save-into-other-files",
    L,
    "save_pretrained('<a folder of the user's files>')",
    FileExistsError,
    "holds other files.*no pipeline folder.*new or empty folder",
)
def _(ctx):
    target = ctx.folder("documents")
    (target / "thesis.txt").write_text("important")
    try:
        return ctx.pipe.save_pretrained(target)
    finally:
        expect([p.name for p in target.iterdir()] == ["thesis.txt"], "the folder was changed")


@case("save-failure-atomic", L, "a component fails to save over an old save")
def _(ctx):
    target = ctx.copy_saved("atomic")
    before = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
    (target / "marker.txt").write_text("old")
    original = type(ctx.pipe.vocoder).save_pretrained

    def broken(self, *args, **kwargs):
        raise OSError("disk full (simulated)")

    type(ctx.pipe.vocoder).save_pretrained = broken
    try:
        ctx.pipe.save_pretrained(target)
        raise AssertionError("the failing save did not raise")
    except OSError:
        pass
    finally:
        type(ctx.pipe.vocoder).save_pretrained = original
    after = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.name != "marker.txt")
    expect(before == after and (target / "marker.txt").read_text() == "old", "the old folder was changed")
    leftovers = [p.name for p in target.parent.iterdir() if p.name != "pipe"]
    expect(not leftovers, f"left behind: {leftovers}")
    return "the error is raised; the old folder is untouched and no temporary folder is left"


@case("save-stale-shard-index", L, "re-save over a sharded save")
def _(ctx):
    target = ctx.copy_saved("sharded")
    index = target / "model" / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors"}}))
    (target / "model" / "model-00001-of-00002.safetensors").write_bytes(b"old")
    ctx.pipe.save_pretrained(target)
    expect(not index.exists(), "the stale shard index is still there")
    expect(not (target / "model" / "model-00001-of-00002.safetensors").exists(), "the stale shard is still there")
    DiTARPipeline.from_pretrained(target)
    return "no stale index or shard; the folder loads"


# ---------------------------------------------------------------------------------------------------------------------
# conversion scripts

K = "conversion"


@case("conv-missing-source", K, "checkpoint_to_pipeline /no/such out", SystemExit, "no/such")
def _(ctx):
    return load_script("checkpoint_to_pipeline").main(["/no/such", str(ctx.folder("conv") / "out")])


@case("conv-not-a-checkpoint", K, "checkpoint_to_pipeline <empty folder> out", SystemExit, "neither a checkpoint")
def _(ctx):
    folder = ctx.folder("conv")
    (folder / "src").mkdir()
    return load_script("checkpoint_to_pipeline").main([str(folder / "src"), str(folder / "out")])


@case("conv-out-not-empty", K, "init_from_lm LM <non-empty out>", SystemExit, "not empty.*--force")
def _(ctx):
    folder = ctx.folder("conv")
    (folder / "out").mkdir()
    (folder / "out" / "x").write_text("x")
    (folder / "lm").mkdir()
    return load_script("init_from_lm").main([str(folder / "lm"), str(folder / "out")])


@case("conv-lm-without-config", K, "init_from_lm <folder without config.json> out", SystemExit, "no config.json")
def _(ctx):
    folder = ctx.folder("conv")
    (folder / "lm").mkdir()
    return load_script("init_from_lm").main([str(folder / "lm"), str(folder / "out")])


@case("conv-stats-out-exists", K, "vae_latent_stats with an existing --out", SystemExit, "exists.*--force")
def _(ctx):
    folder = ctx.folder("conv")
    (folder / "stats.json").write_text("{}")
    script = load_script("vae_latent_stats")
    return script.main(["--vae", str(folder), "--audio-dir", str(folder), "--out", str(folder / "stats.json")])


assert len({c.id for c in CASES}) == len(CASES), "duplicate case ids"

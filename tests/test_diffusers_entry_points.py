"""diffusers' standard entry points on DiTARPipeline: `from_pipe`, the pipeline's `matmul_dtype` setting against what
the model does, `to(dtype)` with bfloat16 products, `torch.compile` of the model, the weight-file options of
`save_pretrained` / `from_pretrained`, and diffusers' interruption idiom (`pipe._interrupt`, `pipe.interrupt`)."""

from __future__ import annotations

import json
import logging
import re
import threading

import pytest
import torch
import torch.nn.functional as F
from diffusers import FlowMatchEulerDiscreteScheduler
from pipeline_helpers import PATCH, get_dummy_components, get_dummy_inputs, get_dummy_pipeline, run_in_threads
from torch import nn

from modeling_ditar import DiTARPipeline
from modeling_ditar.generation_ditar import warn_once
from modeling_ditar.low_precision import LowPrecisionLinear, set_linear_matmul_dtype


def features(pipe, **overrides) -> torch.Tensor:
    return pipe(**get_dummy_inputs(output_type="features", **overrides)).audios


def low_precision_layers(model) -> list:
    return [m for m in model.modules() if isinstance(m, LowPrecisionLinear)]


# ----------------------------------------------------------------------------------------------------------------------
# from_pipe


def test_from_pipe_shares_the_components_and_speaks_the_same(caplog):
    """diffusers carries a model component over only when its class is the `__init__` annotation's, and the vocoder
    has none: every from_pipe warned that the vocoder was not switched over and failed ("a vocoder is required")."""
    pipe = get_dummy_pipeline()
    expected = features(pipe)
    with caplog.at_level(logging.WARNING):
        new = DiTARPipeline.from_pipe(pipe)
    assert "not switched over" not in caplog.text
    for name, component in pipe.components.items():
        assert getattr(new, name) is component, name
    assert new.default_voice is not None and torch.equal(features(new), expected)
    # a component given replaces the source's, the others are still shared
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    other = DiTARPipeline.from_pipe(pipe, scheduler=scheduler)
    assert other.scheduler is scheduler and other.vocoder is pipe.vocoder and other.model is pipe.model
    assert torch.equal(features(other), expected)


def test_from_pipe_keeps_the_components_dtypes_unless_asked():
    """diffusers' from_pipe converts the shared components to float32 when no dtype is given, which changed the source
    pipeline too (a LocDiT kept in bfloat16 came back in float32); `dtype=` converts them, for both pipelines."""
    pipe = get_dummy_pipeline()
    pipe.model.set_locdit_dtype(torch.bfloat16)
    expected = features(pipe)
    new = DiTARPipeline.from_pipe(pipe)
    assert next(pipe.model.locdit.parameters()).dtype == torch.bfloat16
    assert torch.equal(features(new), expected)
    wide = DiTARPipeline.from_pipe(get_dummy_pipeline(), dtype=torch.float64)
    assert wide.model.dtype == torch.float64 and torch.isfinite(features(wide)).all()


def test_from_pipe_refuses_matmul_dtype_for_the_shared_model_and_keeps_the_source_setting(monkeypatch):
    """matmul_dtype given to from_pipe switched the source pipeline's model (shared) while its config still said None,
    even when from_pipe then failed. It is refused; the new pipeline records the source's setting without applying it
    again ("auto" would decide again on the shared model)."""
    pipe = get_dummy_pipeline()
    with pytest.raises(ValueError, match="shares the pipeline's model.*pipe.model.set_matmul_dtype"):
        DiTARPipeline.from_pipe(pipe, matmul_dtype=torch.bfloat16)
    assert low_precision_layers(pipe.model) == [] and pipe.config.matmul_dtype is None
    monkeypatch.setattr("modeling_ditar.low_precision.cpu_multiplies_bfloat16", lambda: True)
    auto = DiTARPipeline(**get_dummy_components(), matmul_dtype="auto")
    assert auto.model.matmul_dtype == torch.bfloat16
    auto.model.set_matmul_dtype(torch.float32)  # switched by hand: from_pipe must not switch it back
    new = DiTARPipeline.from_pipe(auto)
    assert new.config.matmul_dtype == "auto" and low_precision_layers(auto.model) == []


def test_refused_components_leave_the_model_as_given():
    components = get_dummy_components()
    del components["vocoder"]
    with pytest.raises(ValueError, match="a vocoder is required"):
        DiTARPipeline(**components, matmul_dtype=torch.bfloat16)
    assert low_precision_layers(components["model"]) == []


# ----------------------------------------------------------------------------------------------------------------------
# the matmul_dtype setting: a folder asks for what the model does


def test_a_model_switched_by_hand_is_saved_as_it_multiplies(tmp_path):
    """`pipe.model.set_matmul_dtype(torch.bfloat16)` then `save_pretrained` wrote "matmul_dtype": null, and the
    reloaded pipeline multiplied in float32."""
    pipe = get_dummy_pipeline()
    pipe.model.set_matmul_dtype(torch.bfloat16)
    expected = features(pipe)
    pipe.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "model_index.json").read_text())["matmul_dtype"] == "bfloat16"
    loaded = DiTARPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.model.matmul_dtype == torch.bfloat16 and torch.equal(features(loaded), expected)
    # and back: a pipeline built with bfloat16 whose model is switched to float32 saves float32
    exact = DiTARPipeline(**get_dummy_components(), matmul_dtype="bfloat16")
    exact.model.set_matmul_dtype(torch.float32)
    exact.save_pretrained(tmp_path / "exact")
    assert json.loads((tmp_path / "exact" / "model_index.json").read_text())["matmul_dtype"] == "float32"


def test_a_pipeline_built_on_anothers_components_keeps_its_setting():
    first = DiTARPipeline(**get_dummy_components(), matmul_dtype=torch.bfloat16)
    again = DiTARPipeline(**first.components)
    assert first.config.matmul_dtype == again.config.matmul_dtype == "bfloat16"
    assert DiTARPipeline(**get_dummy_components()).config.matmul_dtype is None  # float32 products, no setting


# ----------------------------------------------------------------------------------------------------------------------
# bfloat16 products only for float32 weights


def test_a_low_precision_linear_multiplies_other_weights_in_their_own_dtype():
    torch.manual_seed(0)
    linear = nn.Linear(16, 8)
    set_linear_matmul_dtype(linear, torch.bfloat16)
    x = torch.randn(3, 16)
    with torch.no_grad():
        linear.double()
        assert torch.equal(linear(x.double()), F.linear(x.double(), linear.weight, linear.bias))
        linear.float()  # float32 again: the bfloat16 products again
        bf16 = F.linear(x.bfloat16(), linear.weight.bfloat16(), linear.bias.bfloat16()).float()
        assert torch.equal(linear(x), bf16)


def test_a_pipeline_moved_to_float64_computes_as_a_float64_model_without_the_setting():
    """`pipe.to(torch.float64)` kept the bfloat16 products ("auto" on a CPU with native bfloat16): its features differed
    by up to 0.1 from a float64 model's."""
    pipe = get_dummy_pipeline()
    pipe.model.set_matmul_dtype(torch.bfloat16)
    pipe.to(torch.float64)
    reference = get_dummy_pipeline().to(torch.float64)
    assert torch.equal(features(pipe), features(reference))
    assert pipe.model.matmul_dtype == torch.float64  # it said bfloat16
    pipe.to(torch.float32)
    assert pipe.model.matmul_dtype == torch.bfloat16  # float32 weights take the bfloat16 products again


# ----------------------------------------------------------------------------------------------------------------------
# torch.compile of the model


@pytest.mark.parametrize("how", ["torch.compile(pipe.model)", "pipe.model.compile()"])
def test_compiling_the_models_forward_is_warned_about_once_and_the_pipeline_still_speaks(caplog, how):
    """Generation never calls the model's forward, so compiling it compiled nothing, silently."""
    expected = features(get_dummy_pipeline())
    pipe = get_dummy_pipeline()
    if how == "pipe.model.compile()":
        pipe.model.compile()
    else:
        pipe.model = torch.compile(pipe.model)
    warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        first = features(pipe)
        second = features(pipe)
    assert torch.equal(first, expected) and torch.equal(second, expected)
    warnings = [r.getMessage() for r in caplog.records if "enable_fast_generation(compile=True)" in r.getMessage()]
    assert len(warnings) == 1 and how in warnings[0]
    warn_once.cache_clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        features(get_dummy_pipeline())
    assert "enable_fast_generation" not in caplog.text


# ----------------------------------------------------------------------------------------------------------------------
# weight-file options


def test_safe_serialization_false_warns_that_the_model_is_saved_as_safetensors(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        get_dummy_pipeline().save_pretrained(tmp_path, safe_serialization=False)
    assert "saved as safetensors all the same" in caplog.text
    assert (tmp_path / "model" / "model.safetensors").is_file()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        get_dummy_pipeline().save_pretrained(tmp_path / "plain")
    assert "safe_serialization" not in caplog.text


def test_use_safetensors_false_on_a_safetensors_folder_says_so(tmp_path):
    """transformers said "no file named model.safetensors, or pytorch_model.bin" though model.safetensors was there.
    A `training_args.bin` beside the weights is not a weight file (it was counted as .bin weights, and hid that)."""
    get_dummy_pipeline().save_pretrained(tmp_path)
    (tmp_path / "model" / "training_args.bin").write_bytes(b"not weights")
    with pytest.raises(FileNotFoundError, match=r"safetensors only \(model.safetensors\).*drop use_safetensors=False"):
        DiTARPipeline.from_pretrained(tmp_path, use_safetensors=False)
    assert DiTARPipeline.from_pretrained(tmp_path, use_safetensors=True).default_voice is not None


def test_use_safetensors_false_loads_the_models_bin_weights(tmp_path):
    """`pytorch_model.bin`, transformers' name for them, beside `model.safetensors`, is loaded, not refused."""
    pipe = get_dummy_pipeline()
    pipe.save_pretrained(tmp_path)
    torch.save(pipe.model.state_dict(), tmp_path / "model" / "pytorch_model.bin")
    loaded = DiTARPipeline.from_pretrained(tmp_path, use_safetensors=False)
    torch.testing.assert_close(features(loaded), features(pipe), rtol=0, atol=0)


def test_a_folder_saved_with_a_variant_names_it(tmp_path):
    get_dummy_pipeline().save_pretrained(tmp_path, variant="fp16")
    with pytest.raises(FileNotFoundError, match=r"only weights saved with variant='fp16'.*pass variant='fp16'"):
        DiTARPipeline.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"variant=bf16"):  # a variant that no folder has: diffusers' own error
        DiTARPipeline.from_pretrained(tmp_path, variant="bf16")
    # the options reach the model also when it is loaded without its candidate LocDiT
    assert DiTARPipeline.from_pretrained(tmp_path, variant="fp16", candidate_locdit=False).model is not None


@pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")  # diffusers' Oobleck
def test_a_variant_that_only_the_vae_has_loads_with_the_plain_model(tmp_path):
    """diffusers passes a variant only to the folders that have it: a VAE saved in fp16 as well beside a plain model
    loads with variant="fp16" (the model was refused for lacking the variant)."""
    from test_vae import get_dummy_vae_pipeline

    pipe = get_dummy_vae_pipeline()
    pipe.save_pretrained(tmp_path)
    pipe.vae.save_pretrained(tmp_path / "vae", variant="fp16")
    assert (tmp_path / "vae" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert not list((tmp_path / "model").glob("*.fp16.*"))
    loaded = DiTARPipeline.from_pretrained(tmp_path, variant="fp16")
    torch.testing.assert_close(loaded.model.state_dict(), pipe.model.state_dict(), rtol=0, atol=0)
    assert loaded.vae is not None


# ----------------------------------------------------------------------------------------------------------------------
# diffusers' interruption idiom


def interrupt_at(patch: int, seen: list):
    def callback(pipe, index, step):
        seen.append(index)
        if index == patch:
            pipe._interrupt = True

    return callback


def test_a_callback_that_sets_interrupt_ends_the_call_with_what_was_generated(caplog):
    pipe = get_dummy_pipeline()
    full = pipe(**get_dummy_inputs(output_type="features", max_new_patches=6))
    assert pipe.interrupt is False
    seen = []
    with caplog.at_level(logging.WARNING, logger="modeling_ditar"):
        cut = pipe(
            **get_dummy_inputs(output_type="features", max_new_patches=6, callback_on_patch_end=interrupt_at(1, seen))
        )
    assert seen == [0, 1] and cut.stopped == [False] and cut.audio_lengths == [2 * PATCH]
    assert torch.equal(cut.audios[0], full.audios[0][: 2 * PATCH])  # the patches made, as a full call makes them
    assert "did not end" not in caplog.text  # the callback ended it, not the patch cap
    assert pipe.interrupt is False  # the next call starts afresh
    again = pipe(**get_dummy_inputs(output_type="features", max_new_patches=6))
    assert torch.equal(again.audios, full.audios)


def test_an_interrupted_long_text_leaves_its_remaining_sentences_and_texts_unspoken():
    pipe = get_dummy_pipeline()
    long_text = "This is one sentence of the text. " * 12
    seen = []
    out = pipe(**get_dummy_inputs(text=[long_text, long_text], callback_on_patch_end=interrupt_at(0, seen)))
    assert seen == [0]  # one patch of the first sentence, nothing after
    assert out.stopped == [False, False] and out.audio_lengths[0] > 0 and out.audio_lengths[1] == 0


def test_an_interrupt_stops_only_the_call_of_its_own_thread():
    """One pipeline serves calls from several threads: a callback's `pipe._interrupt = True` must end its own call, not
    another thread's, and a call starting in another thread must not clear it."""
    pipe = get_dummy_pipeline()
    alone = features(pipe, max_new_patches=6)
    other_started, interrupted = threading.Event(), threading.Event()

    def interrupting(p, index, step):
        other_started.wait(10)
        p._interrupt = True
        interrupted.set()

    def other(p, index, step):
        other_started.set()
        interrupted.wait(10)

    def run(callback):
        return pipe(**get_dummy_inputs(output_type="features", max_new_patches=6, callback_on_patch_end=callback))

    cut, whole = run_in_threads(run, [interrupting, other])
    assert interrupted.is_set() and cut.audio_lengths == [PATCH]
    assert torch.equal(whole.audios, alone)


# ----------------------------------------------------------------------------------------------------------------------
# diffusers' call arguments


@pytest.mark.parametrize(
    "arguments, said",
    [
        ({"prompt": "Hello."}, "'prompt' (the text to say is `text`"),
        ({"callback_on_step_end": print}, "use `callback_on_patch_end(pipe, patch_index, patch_step)`"),
        ({"negative_prompt": "noise"}, "there is no negative prompt"),
        ({"num_waveforms_per_prompt": 2}, "`num_candidates` samples several"),
        ({"audio_length_in_s": 5.0}, "`max_new_patches` caps its length"),
        ({"temprature": 0.3}, "'temprature' (did you mean 'temperature'?)"),
    ],
)
@pytest.mark.parametrize("method", ["__call__", "stream"])
def test_a_diffusers_argument_is_refused_with_what_to_use_instead(arguments, said, method):
    """Python's own error named the argument only (and `pipe(prompt=...)` said that `text` was missing)."""
    pipe = get_dummy_pipeline()
    call = pipe if method == "__call__" else pipe.stream
    text = {} if "prompt" in arguments else {"text": "hello there"}
    with pytest.raises(TypeError, match=re.escape(said)):
        call(**text, **arguments)


def test_a_call_without_text_is_refused_by_the_input_checks():
    """`text` defaults to None only so that `pipe(prompt=...)` reaches the refusal above."""
    pipe = get_dummy_pipeline()
    with pytest.raises(ValueError, match="text must be a string"):
        pipe()
    with pytest.raises(ValueError, match="pass a string"):
        pipe.stream()

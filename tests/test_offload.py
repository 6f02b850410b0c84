"""CPU offload (diffusers' `enable_model_cpu_offload`): the model is moved to the accelerator before it generates and
back after the call or stream; the vocoder (weight-free Griffin-Lim here) stays put; sequential offload is refused.

accelerate's hooks run on the CPU with `device="cpu"`: placement is then trivially right, so the tests follow the
hooks' own events (onload before generation, offload at the end) and compare the audio with the plain pipeline's.
"""

from __future__ import annotations

import numpy as np
import pytest
from accelerate import hooks
from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline


@pytest.fixture
def events(monkeypatch):
    """('on' | 'off', module class name) for each of accelerate's CPU-offload moves, in order."""
    log = []
    pre_forward, init_hook = hooks.CpuOffload.pre_forward, hooks.CpuOffload.init_hook

    def on(self, module, *args, **kwargs):
        log.append(("on", type(module).__name__))
        return pre_forward(self, module, *args, **kwargs)

    def off(self, module):
        log.append(("off", type(module).__name__))
        return init_hook(self, module)

    monkeypatch.setattr(hooks.CpuOffload, "pre_forward", on)
    monkeypatch.setattr(hooks.CpuOffload, "init_hook", off)
    return log


def offloaded_pipeline(events):
    pipe = get_dummy_pipeline()
    pipe.enable_model_cpu_offload(device="cpu")
    generate_patches = pipe.model.generate_patches

    def logged(*args, **kwargs):  # where generation starts, among the hooks' moves
        events.append(("generate", "model"))
        return generate_patches(*args, **kwargs)

    pipe.model.generate_patches = logged
    return pipe


def test_offloaded_call_and_stream_speak_as_the_plain_pipeline():
    """The weight-free vocoder made every offloaded call fail inside accelerate's hook (StopIteration)."""
    plain = get_dummy_pipeline()
    call = plain(**get_dummy_inputs()).audios
    stream = np.concatenate(list(plain.stream(**get_dummy_inputs())))
    pipe = get_dummy_pipeline()
    pipe.enable_model_cpu_offload(device="cpu")
    assert hasattr(pipe.model, "_hf_hook") and not hasattr(pipe.vocoder, "_hf_hook")
    np.testing.assert_array_equal(pipe(**get_dummy_inputs()).audios, call)
    np.testing.assert_array_equal(np.concatenate(list(pipe.stream(**get_dummy_inputs()))), stream)
    np.testing.assert_array_equal(pipe(**get_dummy_inputs()).audios, call)  # again, after the hooks were reset


@pytest.mark.parametrize("kind", ["call", "long text", "stream"])
def test_the_model_is_moved_in_before_it_generates_and_out_after(events, kind):
    """Generation never runs the model's `forward`, where accelerate's hook moves it: without the pipeline moving it
    in, an offloaded model generated on the CPU with its inputs on the accelerator."""
    pipe = offloaded_pipeline(events)
    events.clear()
    if kind == "stream":
        list(pipe.stream(**get_dummy_inputs()))
    else:
        text = "One sentence here. " * 30 if kind == "long text" else get_dummy_inputs()["text"]
        pipe(**get_dummy_inputs(text=text))
    model = [event for event, name in events if name == "DiTARForConditionalGeneration" or event == "generate"]
    assert "generate" in model
    moved = None
    for event in model:
        if event == "generate":
            assert moved == "on"
        else:
            moved = event
    assert moved == "off"  # back on the CPU once the call or stream is over


def test_sequential_offload_is_refused_with_the_way_out():
    pipe = get_dummy_pipeline()
    with pytest.raises(NotImplementedError, match=r"enable_model_cpu_offload\(\)"):
        pipe.enable_sequential_cpu_offload(device="cpu")
    assert pipe(**get_dummy_inputs()).audios.size > 0  # the pipeline is left as it was

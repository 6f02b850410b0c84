"""CPU offload (diffusers' `enable_model_cpu_offload`): the model is moved to the accelerator before it generates and
back once the last call or stream generating with it ends (threads, a call between two chunks of a stream, pipelines
sharing it through `from_pipe`; also after an error or an abandoned stream); the vocoder (weight-free Griffin-Lim
here) stays put; sequential offload is refused.

accelerate's hooks run on the CPU with `device="cpu"`: placement is then trivially right, so the tests follow the
hooks' own events (onload before generation, offload at the end) and compare the audio with the plain pipeline's.
"""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
from accelerate import hooks
from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline

from modeling_ditar import DiTARPipeline

MODEL = "DiTARForConditionalGeneration"


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

    def logged(*args, **kwargs):  # where generation starts, and each patch, among the hooks' moves
        events.append(("generate", "model"))
        for step in generate_patches(*args, **kwargs):
            events.append(("patch", threading.current_thread().name))
            yield step

    pipe.model.generate_patches = logged
    return pipe


def assert_generated_in_then_moved_out(events):
    """Every patch was generated with the model moved in (its last move before the patch was 'on'), and its last move
    was 'off'."""
    moved = None
    for event, name in events:
        if name == MODEL:
            moved = event
        elif event in ("generate", "patch"):
            assert moved == "on", events
    assert moved == "off", events


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
    model = [event for event, name in events if name == MODEL or event == "generate"]
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


def test_two_calls_in_threads_keep_the_model_in_until_both_have_ended(events):
    """The first call to end moved the model out (diffusers' `maybe_free_model_hooks` rebuilt the hooks) while the
    other still generated with it."""
    pipe = offloaded_pipeline(events)
    both_generating, short_done, errors = threading.Barrier(2, timeout=30), threading.Event(), []

    def first_patch_waits(long: bool):
        def callback(pipe, index, step):
            if index == 0:
                both_generating.wait()
                if long:  # the long call goes on once the short one has ended
                    short_done.wait(30)

        return callback

    def run(long: bool):
        try:
            pipe(**get_dummy_inputs(max_new_patches=8 if long else 3, callback_on_patch_end=first_patch_waits(long)))
        except Exception as err:  # noqa: BLE001 - reported by the test thread
            errors.append(err)
        if not long:
            events.append(("short call ended", "test"))
            short_done.set()

    threads = [threading.Thread(target=run, args=(long,), name=f"long={long}") for long in (True, False)]
    events.clear()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    ended = events.index(("short call ended", "test"))
    assert ("patch", "long=True") in events[ended:]  # the long call generated after the short one ended
    assert_generated_in_then_moved_out(events)


def test_a_call_between_two_chunks_of_a_stream_leaves_the_model_in_for_the_stream(events):
    """The call moved the model out as it ended, and the stream's remaining patches ran with it on the CPU."""
    pipe = offloaded_pipeline(events)
    stream = pipe.stream(**get_dummy_inputs(max_new_patches=40))
    events.clear()
    next(stream)
    pipe(**get_dummy_inputs())
    events.append(("call ended", "test"))
    list(stream)
    assert ("patch", "MainThread") in events[events.index(("call ended", "test")) :]
    assert_generated_in_then_moved_out(events)


def test_maybe_free_model_hooks_leaves_a_generating_model_in(events):
    """diffusers' version rebuilt the hooks, moving the model out under a stream that was generating with it."""
    pipe = offloaded_pipeline(events)
    stream = pipe.stream(**get_dummy_inputs(max_new_patches=40))
    events.clear()
    next(stream)
    pipe.maybe_free_model_hooks()
    list(stream)
    assert_generated_in_then_moved_out(events)
    events.clear()
    pipe.maybe_free_model_hooks()  # no generation: the model is moved out
    assert events == [("off", MODEL)]


def test_calls_and_streams_leave_the_vocoder_where_it_is(monkeypatch):
    """diffusers' `maybe_free_model_hooks` moved the vocoder (and a VAE) to the CPU and back after every call."""
    pipe = get_dummy_pipeline()
    pipe.enable_model_cpu_offload(device="cpu")
    moves, to = [], type(pipe.vocoder).to

    def logged(self, *args, **kwargs):
        moves.append((args, kwargs))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe.vocoder), "to", logged)
    pipe(**get_dummy_inputs())
    list(pipe.stream(**get_dummy_inputs()))
    pipe.maybe_free_model_hooks()
    assert moves == []


def test_a_call_that_raises_moves_the_model_out(events):
    pipe = offloaded_pipeline(events)

    def fail(pipe, index, step):
        raise RuntimeError("stopped by the callback")

    events.clear()
    with pytest.raises(RuntimeError, match="stopped by the callback"):
        pipe(**get_dummy_inputs(callback_on_patch_end=fail))
    assert_generated_in_then_moved_out(events)
    pipe(**get_dummy_inputs())  # and the next call moves it in again
    assert_generated_in_then_moved_out(events)


@pytest.mark.parametrize("end", ["closed", "dropped"])
def test_an_abandoned_stream_moves_the_model_out(events, end):
    pipe = offloaded_pipeline(events)
    stream = pipe.stream(**get_dummy_inputs(max_new_patches=40))
    events.clear()
    next(stream)
    if end == "closed":
        stream.close()
    else:
        del stream
        gc.collect()
    assert_generated_in_then_moved_out(events)


def test_a_pipeline_from_pipe_of_an_offloaded_one_moves_the_shared_model_out(events):
    """The new pipeline has none of diffusers' offload bookkeeping (`_all_hooks`): its calls moved the model in and
    never out."""
    pipe = offloaded_pipeline(events)
    other = DiTARPipeline.from_pipe(pipe)
    assert other.model is pipe.model
    events.clear()
    other(**get_dummy_inputs())
    assert_generated_in_then_moved_out(events)

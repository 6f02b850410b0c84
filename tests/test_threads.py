"""One pipeline called from several threads (a web app's workers, a thread pool over texts): what calls share must not
carry one call's state into another's.

espeak-ng keeps its input and output in process-wide state and releases the GIL, so two texts phonemized at once could
each come back as the other's phonemes; a pipeline's scheduler holds the time grid and step index of the call that set
it last, so a concurrent call with another step count stepped on a foreign grid (wrong audio, or an IndexError).
"""

from __future__ import annotations

import threading
import time

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from pipeline_helpers import get_dummy_pipeline, run_in_threads

from modeling_ditar import tokenization_ditar as tokenization
from modeling_ditar.sampling import PatchSampler


def test_espeak_ng_phonemizes_one_text_at_a_time(monkeypatch, phonemes):
    """Deterministic: the backend's `phonemize` is replaced by one that waits inside and counts the threads in it."""
    frontend = phonemes
    backend = tokenization._espeak_backend(frontend.language)
    inside, most = [0], [0]
    counting = threading.Lock()
    real = backend.phonemize

    def slow_phonemize(*args, **kwargs):
        with counting:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.02)
        try:
            return real(*args, **kwargs)
        finally:
            with counting:
                inside[0] -= 1

    monkeypatch.setattr(backend, "phonemize", slow_phonemize)
    texts = ["Hello there.", "We walked slowly down to the river.", "Good morning.", "Please call me back."]
    alone = [frontend.phonemize(text) for text in texts]
    assert run_in_threads(frontend.phonemize, texts * 2) == alone * 2
    assert most[0] == 1


def test_a_sampler_steps_on_its_own_copy_of_the_scheduler():
    """The scheduler given to a sampler (a pipeline's, shared by its calls) is left as it was."""
    shared = FlowMatchEulerDiscreteScheduler()
    before = shared.sigmas.clone()
    four, one = PatchSampler(shared), PatchSampler(shared, use_scheduler_step=True)
    assert four.scheduler is not shared and one.scheduler is not four.scheduler

    def velocity(x, t, **kwargs):
        return -x

    four.sample(velocity, (2, 2, 4), 4, 0.0)
    one.sample(velocity, (2, 2, 4), 1, 0.0)
    assert torch.equal(shared.sigmas, before) and len(four.scheduler.sigmas) == 5 and len(one.scheduler.sigmas) == 2


def test_calls_from_several_threads_give_each_call_its_own_audio():
    """Each call with its own generator gives what it gives alone, whatever runs beside it, also with other step
    counts (the shared scheduler failed with an IndexError or stepped on another call's grid)."""
    pipe = get_dummy_pipeline()
    calls = [
        dict(text="hello there", num_inference_steps=2),
        dict(text="good morning to you", num_inference_steps=4),
        dict(text="please call me back", num_inference_steps=3),
        dict(text="a fourth one", num_inference_steps=1),
    ]

    def speak(index):
        kwargs = dict(calls[index % len(calls)], max_new_patches=6)
        return pipe(**kwargs, generator=torch.Generator().manual_seed(index)).audios[0]

    alone = [speak(index) for index in range(8)]
    for _ in range(12):
        together = run_in_threads(speak, list(range(8)))
        for index, (a, b) in enumerate(zip(alone, together, strict=True)):
            assert a.shape == b.shape and (a == b).all(), f"call {index} differs when run beside others"


def test_calls_from_several_threads_each_count_their_patches_on_their_own_progress_bar():
    """The bar was kept on the pipeline: a call starting in one thread closed the bar of a call running in another,
    whose patches were then counted on the newcomer's bar. Each call now ends its own bar at its own count."""
    import io

    pipe = get_dummy_pipeline()
    pipe.set_progress_bar_config(disable=False, file=io.StringIO())
    made, recording = [], threading.Lock()
    make_bar = pipe.progress_bar

    def recording_bar(*args, **kwargs):
        bar = make_bar(*args, **kwargs)
        with recording:
            made.append((threading.get_ident(), bar))
        return bar

    pipe.progress_bar = recording_bar

    def speak(patches):
        seen = []

        def count(p, index, step):
            seen.append(index)
            time.sleep(0.002)  # lets the other calls run between this call's patches

        pipe(text="hello there", max_new_patches=patches, callback_on_patch_end=count, generator=torch.Generator())
        return threading.get_ident(), len(seen)

    for _ in range(3):
        made.clear()
        counted = dict(run_in_threads(speak, [3, 4, 5, 6]))
        assert len(made) == 4  # one bar per call
        assert {thread: (bar.n, bar.total, bar.disable) for thread, bar in made} == {
            thread: (patches, patches, True) for thread, patches in counted.items()
        }

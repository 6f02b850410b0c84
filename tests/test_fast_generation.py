"""Generation speed-ups (issue 6): every fast path equals the reference path it replaces.

Reference = `model.disable_fast_generation()`: diffusers blocks' own forward, `scheduler.step` each ODE step, full
attention masks, no pruning, no compile. The default settings (lean blocks, LocDiT prepared inputs, inline Euler, no
mask on unpadded one-token steps) give bit-identical numbers on CPU; pruning finished rows, a static cache and
torch.compile change float rounding only (checked to 1e-5).
"""

import copy
import warnings

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.models.attention_processor import AttnProcessor
from model_helpers import DiTARModelTester, ScriptedStopHead, generators, set_stop_logit

from modeling_ditar import PatchSampler
from modeling_ditar.modeling_ditar import GenerationSpeedups
from modeling_ditar.sampling import GuidedVelocity, guided_velocity
from modeling_ditar.transformer_blocks import DiTARTransformerStack

TESTER = DiTARModelTester()
P, D, K, H = TESTER.patch_size, TESTER.feature_dim, TESTER.num_history_patches, 32
SHAPE = (3, P, D)


def make_model(**overrides):
    return TESTER.get_model(**overrides)


def reference_copy(model):
    reference = copy.deepcopy(model)
    reference.disable_fast_generation()
    return reference


def nonlinear_velocity(x, t):
    weight = torch.linspace(-1.0, 1.0, D * D).reshape(D, D)
    return torch.tanh(x @ weight + 0.3) * (1.0 + t[:, None, None]) - 0.5 * x


def locdit_inputs(batch=3, seed=0, masked=True):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, P, D, generator=generator)
    t = torch.rand(batch, generator=generator)
    cond = torch.randn(batch, H, generator=generator)
    history = torch.randn(batch, K * P, D, generator=generator)
    history_mask = torch.ones(batch, K * P, dtype=torch.bool)
    if masked:
        history_mask[1, :P] = False
        history_mask[2] = False
    return x, t, cond, history, history_mask


# ----------------------------------------------------------------------------------------------------------------------
# sampler: inline Euler vs scheduler.step


@pytest.mark.parametrize("temperature", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_inline_euler_equals_scheduler_step(temperature, steps):
    fast, reference = PatchSampler(), PatchSampler(use_scheduler_step=True)
    assert fast.inline_euler and not reference.inline_euler
    out = fast.sample(nonlinear_velocity, SHAPE, steps, temperature, generator=torch.Generator().manual_seed(3))
    expected = reference.sample(
        nonlinear_velocity, SHAPE, steps, temperature, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert torch.equal(out, expected)  # the same float32 operations on the same constants


def test_inline_euler_equals_scheduler_step_in_bfloat16_and_with_per_row_generators():
    fast, reference = PatchSampler(), PatchSampler(use_scheduler_step=True)

    def velocity(x, t):
        return nonlinear_velocity(x.float(), t).to(x.dtype)

    def run(sampler):
        return sampler.sample(velocity, SHAPE, 5, 0.5, generator=generators([1, 2, 3]), dtype=torch.bfloat16)

    assert torch.equal(run(fast), run(reference))


def test_inline_euler_takes_its_steps_from_the_scheduler():
    sampler = PatchSampler()
    sampler.sample(nonlinear_velocity, SHAPE, 6, 0.0)
    grid = sampler._grid(6, torch.device("cpu"))
    sigmas = sampler.scheduler.sigmas
    assert len(grid["dt"]) == 6
    for n, dt in enumerate(grid["dt"]):
        assert torch.equal(dt, sigmas[n + 1] - sigmas[n])


def test_other_schedulers_use_scheduler_step():
    # (a stochastic FlowMatchEulerDiscreteScheduler, which once took this path too, is refused when the sampler is made)
    class MyScheduler(FlowMatchEulerDiscreteScheduler):
        pass

    assert not PatchSampler(MyScheduler(shift=1.0)).inline_euler
    # a subclass still gives the same solve through its own `step`
    torch.testing.assert_close(
        PatchSampler(MyScheduler(shift=1.0)).sample(nonlinear_velocity, SHAPE, 4, 0.0),
        PatchSampler().sample(nonlinear_velocity, SHAPE, 4, 0.0),
        atol=1e-6,
        rtol=0,
    )


@pytest.mark.parametrize("use_scheduler_step", [False, True])
@pytest.mark.parametrize("per_row", [False, True])
def test_noise_rows_solve_a_subset_with_the_full_batch_noise(use_scheduler_step, per_row):
    sampler = PatchSampler(use_scheduler_step=use_scheduler_step)

    def gen():
        return generators([4, 5, 6, 7]) if per_row else torch.Generator().manual_seed(4)

    full = sampler.sample(nonlinear_velocity, (4, P, D), 5, 0.6, generator=gen())
    rows = torch.tensor([1, 3])
    subset = sampler.sample(nonlinear_velocity, (2, P, D), 5, 0.6, generator=gen(), noise_rows=(4, rows))
    torch.testing.assert_close(subset, full[rows], atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# blocks and LocDiT


@pytest.mark.parametrize("masked", [False, True])
def test_fast_blocks_equal_the_diffusers_blocks(masked):
    model = make_model()
    x, t, cond, history, history_mask = locdit_inputs(masked=masked)
    stack = model.locdit.transformer
    with torch.no_grad():
        assert stack.use_fast_path()
        fast = model.locdit(x, t, cond, history, history_mask)
        stack.fast_inference = False
        assert not stack.use_fast_path()
        reference = model.locdit(x, t, cond, history, history_mask)
    assert torch.equal(fast, reference)


def test_stack_queries_equal_slicing_the_full_output():
    model = make_model()
    stack = model.locdit.transformer
    hidden = torch.randn(3, 1 + (K + 1) * P, 32)
    key_mask = torch.ones(3, hidden.shape[1], dtype=torch.bool)
    key_mask[0, 1:3] = False
    with torch.no_grad():
        for fast in (True, False):
            stack.fast_inference = fast
            full = stack(hidden, key_mask)
            torch.testing.assert_close(
                stack(hidden, key_mask, queries=slice(-P, None)), full[:, -P:], atol=1e-6, rtol=0
            )
            torch.testing.assert_close(stack(hidden, key_mask, queries=slice(0, 1)), full[:, :1], atol=1e-6, rtol=0)


def test_fast_blocks_are_not_used_with_autograd_or_custom_attention():
    model = make_model()
    stack = model.locdit.transformer
    assert not stack.use_fast_path()  # grad enabled: training goes through the diffusers blocks
    with torch.no_grad():
        assert stack.use_fast_path()
        stack.blocks[0].attn1.set_processor(AttnProcessor())
        assert not stack.use_fast_path() and not model.locdit.supports_prepared_calls()
        x, t, cond, history, history_mask = locdit_inputs(masked=False)  # (AttnProcessor takes no bool mask)
        velocity = GuidedVelocity(model.locdit, cond, history, history_mask, 2.0)
        # the sampler's entry point falls back to the plain call
        torch.testing.assert_close(velocity.at_step(x, 1, torch.linspace(1, 0, 5)), velocity(x, torch.full((3,), 0.75)))


def test_fast_blocks_respect_forward_hooks():
    """The fast path enters blocks and LocDiT through `nn.Module.__call__`, so hooks run and change the output exactly
    as they do on the diffusers path."""
    model = make_model()
    block = model.locdit.transformer.blocks[0]
    seen = []
    handles = [
        block.register_forward_hook(lambda _m, _i, out: seen.append(1) or out * 0.5),
        model.locdit.register_forward_hook(lambda _m, _i, out: out + 1.0),
    ]
    x, t, cond, history, history_mask = locdit_inputs()
    with torch.no_grad():
        assert model.locdit.transformer.use_fast_path() and model.locdit.supports_prepared_calls()
        fast = model.locdit(x, t, cond, history, history_mask)
        prepared = model.locdit(
            x, time_emb=model.locdit.embed_time(t), context=model.locdit.prepare_context(cond, history, history_mask)
        )
        model.locdit.transformer.fast_inference = False
        reference = model.locdit(x, t, cond, history, history_mask)
    assert seen == [1, 1, 1]  # the hooked block ran on every path
    assert torch.equal(fast, reference) and torch.equal(prepared, reference)
    for handle in handles:
        handle.remove()


def test_feed_forward_chunking_takes_the_diffusers_path():
    model = make_model()
    stack = model.locdit.transformer
    with torch.no_grad():
        assert stack.use_fast_path()
        stack.blocks[0].set_chunk_feed_forward(2, dim=1)  # what diffusers' enable_forward_chunking calls
        assert not stack.use_fast_path()
        stack.blocks[0].set_chunk_feed_forward(None)
        assert stack.use_fast_path()


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("with_history", [False, True])
def test_prepared_locdit_calls_equal_forward(masked, with_history):
    model = make_model()
    x, t, cond, history, history_mask = locdit_inputs(masked=masked)
    if not with_history:
        history = history_mask = None
    with torch.no_grad():
        context = model.locdit.prepare_context(cond, history, history_mask)
        assert (context.key_mask is not None) == (masked and with_history)  # no mask when nothing is masked
        prepared = model.locdit.forward_prepared(x, model.locdit.embed_time(t), context)
        plain = model.locdit(x, t, cond, history, history_mask)
        model.locdit.transformer.fast_inference = False
        reference = model.locdit(x, t, cond, history, history_mask)
    assert torch.equal(prepared, plain) and torch.equal(plain, reference)


def test_locdit_context_select_equals_a_context_of_the_rows():
    model = make_model()
    x, t, cond, history, history_mask = locdit_inputs()
    rows = torch.tensor([0, 2])
    with torch.no_grad():
        selected = model.locdit.prepare_context(cond, history, history_mask).select(rows)
        direct = model.locdit.prepare_context(cond[rows], history[rows], history_mask[rows])
        torch.testing.assert_close(
            model.locdit.forward_prepared(x[rows], model.locdit.embed_time(t[rows]), selected),
            model.locdit.forward_prepared(x[rows], model.locdit.embed_time(t[rows]), direct),
            atol=1e-6,
            rtol=0,
        )


@pytest.mark.parametrize("guidance", [0.0, 1.0, 2.5])
@pytest.mark.parametrize("masked", [False, True])
def test_guided_velocity_at_step_equals_its_call(guidance, masked):
    model = make_model()
    x, _, cond, history, history_mask = locdit_inputs(masked=masked)
    t_grid = torch.linspace(1.0, 0.0, 5)
    cache = {}
    with torch.no_grad():
        velocity = guided_velocity(model.locdit, cond, history, history_mask, guidance, time_cache=cache)
        for n in range(4):
            expected = velocity(x, t_grid[n].expand(3))
            assert torch.equal(velocity.at_step(x, n, t_grid), expected)
        assert cache["grid"] is t_grid and len(cache) == 5  # the grid and one embedding per step


def test_guided_velocity_forward_fn_replaces_the_prepared_call():
    model = make_model()
    x, _, cond, history, history_mask = locdit_inputs()
    calls = []

    def forward_fn(locdit, noisy, time_emb, context):
        calls.append(noisy.shape[0])
        return locdit.forward_prepared(noisy, time_emb, context)

    with torch.no_grad():
        velocity = GuidedVelocity(model.locdit, cond, history, history_mask, 2.0, forward_fn=forward_fn)
        plain = GuidedVelocity(model.locdit, cond, history, history_mask, 2.0)
        t_grid = torch.linspace(1.0, 0.0, 3)
        assert torch.equal(velocity.at_step(x, 0, t_grid), plain.at_step(x, 0, t_grid))
    assert calls == [6]  # cond and uncond packed


# ----------------------------------------------------------------------------------------------------------------------
# generation: default fast settings vs the reference path


def generation_inputs(left_pad=False, prompt=True):
    inputs = TESTER.prepare_generation_inputs(left_pad=left_pad)
    if not prompt:
        del inputs["prompt_features"], inputs["prompt_attention_mask"]
    return inputs


@pytest.mark.parametrize("left_pad", [False, True])
@pytest.mark.parametrize("prompt", [False, True])
@pytest.mark.parametrize("guidance, temperature", [(2.0, 0.5), (1.0, 0.0), (0.0, 1.0)])
def test_default_generation_equals_the_reference_path(left_pad, prompt, guidance, temperature):
    model = make_model()
    set_stop_logit(model, -30.0)
    reference = reference_copy(model)
    inputs = generation_inputs(left_pad, prompt)
    kwargs = dict(max_new_patches=4, guidance_scale=guidance, temperature=temperature)
    fast = model.generate(**inputs, **kwargs, generator=torch.Generator().manual_seed(0))
    slow = reference.generate(**inputs, **kwargs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(fast.features, slow.features)
    assert torch.equal(fast.lengths, slow.lengths) and torch.equal(fast.stopped, slow.stopped)


def test_batch_of_one_skips_the_mask_and_equals_the_reference():
    model = make_model()
    set_stop_logit(model, -30.0)
    reference = reference_copy(model)
    inputs = {k: v[:1] for k, v in generation_inputs().items()}
    seen = []
    handle = model.language_model.register_forward_pre_hook(
        lambda _, a, kw: seen.append(kw["attention_mask"]), with_kwargs=True
    )
    fast = model.generate(**inputs, max_new_patches=3, temperature=0.0)
    handle.remove()
    assert seen[0] is not None and all(mask is None for mask in seen[1:])  # the prefill keeps its mask
    assert torch.equal(fast.features, reference.generate(**inputs, max_new_patches=3, temperature=0.0).features)


def test_fast_settings_do_not_touch_weights_or_state_dict_keys():
    model = make_model()
    keys = list(model.state_dict())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.enable_fast_generation(compile=False, prune_finished=True, static_cache=True)
    model.generate(**generation_inputs(), max_new_patches=2)
    model.disable_fast_generation()
    assert list(model.state_dict()) == keys
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_enable_and_disable_fast_generation():
    model = make_model()
    assert model.generation_speedups == GenerationSpeedups()
    assert model.enable_fast_generation(compile=False, prune_finished=True) is model
    assert model.generation_speedups.prune_finished and not model.generation_speedups.compile
    model.disable_fast_generation()
    settings = model.generation_speedups
    assert not (settings.fast_blocks or settings.inline_euler or settings.prune_finished or settings.compile)
    assert all(not m.fast_inference for m in model.modules() if isinstance(m, DiTARTransformerStack))
    model.generation_speedups = GenerationSpeedups()
    model.generate(**generation_inputs(), max_new_patches=1)  # generate applies the setting to the stacks again
    assert all(m.fast_inference for m in model.modules() if isinstance(m, DiTARTransformerStack))


# ----------------------------------------------------------------------------------------------------------------------
# pruning finished rows


class LocDiTBatchSizes:
    def __init__(self, model):
        self.sizes = []
        self.model = model
        self.original = model.locdit.forward_prepared

        def record(noisy, time_emb, context):
            self.sizes.append(noisy.shape[0])
            return self.original(noisy, time_emb, context)

        model.locdit.forward_prepared = record


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("generator", ["single", "per-row", "none"])
def test_pruning_finished_rows_equals_the_unpruned_batch(use_cache, generator):
    tester = DiTARModelTester(batch_size=3, text_lengths=(7, 4, 5), prompt_frame_lengths=(6, 3, 4))
    model = tester.get_model()
    model.stop_head = ScriptedStopHead([1, None, 3])  # row 0 stops after 1 patch, row 2 after 3, row 1 runs to the end
    inputs = tester.prepare_generation_inputs()

    def gen():
        return {"single": torch.Generator().manual_seed(0), "per-row": generators([1, 2, 3]), "none": None}[generator]

    temperature = 0.0 if generator == "none" else 0.7
    unpruned_steps, pruned_steps = [], []
    unpruned = model.generate(
        **inputs,
        max_new_patches=5,
        temperature=temperature,
        generator=gen(),
        use_cache=use_cache,
        patch_callback=unpruned_steps.append,
    )
    model.stop_head.calls = 0
    model.enable_fast_generation(compile=False, prune_finished=True)
    recorder = LocDiTBatchSizes(model)
    pruned = model.generate(
        **inputs,
        max_new_patches=5,
        temperature=temperature,
        generator=gen(),
        use_cache=use_cache,
        patch_callback=pruned_steps.append,
    )
    torch.testing.assert_close(pruned.features, unpruned.features, atol=1e-5, rtol=0)
    assert torch.equal(pruned.lengths, unpruned.lengths) and torch.equal(pruned.stopped, unpruned.stopped)
    # the LocDiT batch (cond + uncond) shrinks as rows stop: 3 rows for patch 1, then 2, then 1
    steps = model.generation_settings().num_inference_steps
    assert recorder.sizes == [6] * steps + [4] * 2 * steps + [2] * 2 * steps
    for a, b in zip(pruned_steps, unpruned_steps, strict=True):
        assert torch.equal(a.active, b.active) and torch.equal(a.finished, b.finished)
        torch.testing.assert_close(
            a.patch * a.active[:, None, None], b.patch * b.active[:, None, None], atol=1e-5, rtol=0
        )
        assert torch.equal(a.patch[~a.active], torch.zeros_like(a.patch[~a.active]))  # rows that left give zeros


def test_pruning_drops_rows_from_the_kv_cache():
    model = make_model()
    model.enable_fast_generation(compile=False, prune_finished=True)
    model.stop_head = ScriptedStopHead([1, None])
    widths = []
    handle = model.language_model.register_forward_pre_hook(
        lambda _, a, kw: widths.append(kw["inputs_embeds"].shape[0]), with_kwargs=True
    )
    model.generate(**generation_inputs(), max_new_patches=3, temperature=0.0)
    handle.remove()
    assert widths == [2, 2, 1, 1]  # prefill, patch 1 (both rows), then only row 1


def test_pruning_is_skipped_for_a_static_cache():
    model = make_model()
    model.enable_fast_generation(compile=False, prune_finished=True, static_cache=True)
    model.stop_head = ScriptedStopHead([1, None])
    recorder = LocDiTBatchSizes(model)
    out = model.generate(**generation_inputs(), max_new_patches=3, temperature=0.0)
    assert set(recorder.sizes) == {4}
    assert out.lengths.tolist() == [P, 3 * P]


# ----------------------------------------------------------------------------------------------------------------------
# static cache and torch.compile


@pytest.mark.parametrize("left_pad", [False, True])
def test_static_cache_equals_the_dynamic_cache(left_pad):
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = generation_inputs(left_pad)
    dynamic = model.generate(**inputs, max_new_patches=4, temperature=0.5, generator=torch.Generator().manual_seed(1))
    model.enable_fast_generation(compile=False, static_cache=True)
    static = model.generate(**inputs, max_new_patches=4, temperature=0.5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(static.features, dynamic.features, atol=1e-5, rtol=0)


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch, caplog):
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = generation_inputs()
    eager = model.generate(**inputs, max_new_patches=2, temperature=0.0)

    def broken_compile(fn, **kwargs):
        def compiled(*args):
            raise RuntimeError("no C++ compiler")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    model.enable_fast_generation(compile=True)
    with caplog.at_level("WARNING"):
        out = model.generate(**inputs, max_new_patches=2, temperature=0.0)
    assert torch.equal(out.features, eager.features)
    assert model._compiled_locdit_step.failed
    assert "no C++ compiler" in caplog.text


def test_errors_that_are_not_the_compilers_leave_compiling_on(monkeypatch):
    """Out of memory, or an error eager raises too, is the call's problem, not the compiler's: it is raised and the
    compiled step stays in use (it was switched off for the rest of the process)."""
    model = make_model()
    set_stop_logit(model, -30.0)
    inputs = generation_inputs()
    failures = []

    def flaky_compile(fn, **kwargs):
        def compiled(*args):
            if failures:
                raise failures.pop()
            return fn(*args)

        return compiled

    monkeypatch.setattr(torch, "compile", flaky_compile)
    model.enable_fast_generation(compile=True)
    first = model.generate(**inputs, max_new_patches=2, temperature=0.0)
    failures.append(torch.OutOfMemoryError("out of memory"))
    with pytest.raises(torch.OutOfMemoryError):
        model.generate(**inputs, max_new_patches=2, temperature=0.0)
    assert not model._compiled_locdit_step.failed
    failures.append(RuntimeError("a bad input"))
    monkeypatch.setattr(type(model.locdit), "forward", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("eager too")))
    with pytest.raises(RuntimeError, match="eager too"):
        model.generate(**inputs, max_new_patches=2, temperature=0.0)
    assert not failures  # the compiled step met the error, and eager raised its own
    monkeypatch.undo()
    monkeypatch.setattr(torch, "compile", flaky_compile)
    assert not model._compiled_locdit_step.failed
    assert torch.equal(model.generate(**inputs, max_new_patches=2, temperature=0.0).features, first.features)


def test_compile_unavailable_at_construction_falls_back(monkeypatch):
    model = make_model()
    set_stop_logit(model, -30.0)

    def unavailable(fn, **kwargs):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unavailable)
    model.enable_fast_generation(compile=True)
    out = model.generate(**generation_inputs(), max_new_patches=2, temperature=0.0)
    assert model._compiled_locdit_step.failed and out.features.shape == (2, 2 * P, D)


def _can_compile() -> bool:
    import shutil

    return shutil.which("g++") is not None or shutil.which("c++") is not None


@pytest.mark.skipif(not _can_compile(), reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.parametrize("matmul_dtype", [torch.float32, torch.bfloat16])
def test_compiled_locdit_matches_eager(matmul_dtype):
    import torch._dynamo

    torch._dynamo.reset()
    model = make_model().set_matmul_dtype(matmul_dtype)  # bfloat16: the low-precision linears trace too
    set_stop_logit(model, -30.0)
    inputs = generation_inputs()
    eager = model.generate(**inputs, max_new_patches=3, temperature=0.5, generator=torch.Generator().manual_seed(2))
    model.enable_fast_generation(compile=True, compile_dynamic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = model.generate(
            **inputs, max_new_patches=3, temperature=0.5, generator=torch.Generator().manual_seed(2)
        )
    assert not model._compiled_locdit_step.failed
    torch.testing.assert_close(compiled.features, eager.features, atol=1e-5, rtol=0)


def test_locdit_alone_in_bfloat16_runs_the_prepared_path_and_streams_like_one_shot():
    """LocDiT in bfloat16 beside a float32 backbone (faster on CPUs that multiply bfloat16 natively): generation takes
    the prepared LocDiT path in bfloat16, the patches come out float32, and streaming still equals one-shot."""
    import numpy as np
    from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline

    pipe = get_dummy_pipeline()
    pipe.model.locdit.to(torch.bfloat16)
    with torch.no_grad():
        assert pipe.model.locdit.supports_prepared_calls()
    seen = []
    pipe.model.locdit.register_forward_hook(
        lambda module, args, kwargs, out: seen.append((out.dtype, kwargs.get("context") is not None)), with_kwargs=True
    )
    one_shot = pipe(**get_dummy_inputs(max_new_patches=12))
    assert seen and set(seen) == {(torch.bfloat16, True)}
    audio = one_shot.audios[0][: one_shot.audio_lengths[0]]
    assert audio.dtype == np.float32 and np.isfinite(audio).all() and np.abs(audio).max() > 0
    joined = np.concatenate(list(pipe.stream(**get_dummy_inputs(max_new_patches=12))))
    np.testing.assert_allclose(joined, audio, atol=1e-6, rtol=0)


def test_fast_generation_and_locdit_dtype_settings_are_checked_when_set():
    """`enable_fast_generation(static_cache="no")` turned the static cache on, `compile_mode="bogus"` failed only at
    the first call (as a warning), `set_locdit_dtype("bfloat16")` raised a device-string error."""
    from model_helpers import DiTARModelTester

    model = DiTARModelTester().get_model()
    for kwargs, message in (
        ({"static_cache": "no"}, "static_cache must be True or False, got 'no'"),
        ({"compile": "yes"}, "compile must be True or False"),
        ({"prune_finished": 2}, "prune_finished must be True or False"),
        ({"compile_dynamic": "x"}, "compile_dynamic must be True, False or None"),
        ({"compile_mode": "bogus"}, "compile_mode must be None or one of .*'reduce-overhead'"),
        ({"compile": False, "compile_mode": "reduce-overhead"}, "needs compile=True"),
    ):
        with pytest.raises(ValueError, match=message):
            model.enable_fast_generation(**kwargs)
    for dtype in ("bfloat16", 5, None, torch.int8):
        with pytest.raises(ValueError, match="dtype must be a floating-point torch.dtype"):
            model.set_locdit_dtype(dtype)
    assert {p.dtype for p in model.locdit.parameters()} == {torch.float32}

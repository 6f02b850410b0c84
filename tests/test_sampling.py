"""PatchSampler: cosine VP schedule, DDIM stepping through a flow-matching scheduler, temperature (paper 3.2-3.4)."""

import math
import re
from pathlib import Path

import diffusers
import pytest
import torch
from diffusers import DDPMScheduler, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

import modeling_ditar
from modeling_ditar.sampling import PatchSampler, check_scheduler, cosine_alpha_sigma

SHAPE = (3, 2, 8)  # [B, P, D]


def target_x0(seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


class OracleVelocity:
    """The exact velocity for a known x0: eps_hat = (x_t - cos x0) / sin, v = cos eps_hat - sin x0. Records its
    calls."""

    def __init__(self, x0: torch.Tensor):
        self.x0 = x0
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.clone(), t.clone()))
        alpha, sigma = cosine_alpha_sigma(t.float())
        alpha, sigma = alpha[:, None, None], sigma[:, None, None]
        eps_hat = (x.float() - alpha * self.x0) / sigma
        return (alpha * eps_hat - sigma * self.x0).to(x.dtype)


def nonlinear_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """An arbitrary smooth velocity field (stands in for a network)."""
    weight = torch.linspace(-1.0, 1.0, SHAPE[-1] * SHAPE[-1]).reshape(SHAPE[-1], SHAPE[-1])
    return torch.tanh(x @ weight + 0.3) * (1.0 + t[:, None, None]) - 0.5 * x


def reference_ddim(velocity_fn, num_steps: int, x_start: torch.Tensor) -> torch.Tensor:
    """Plain DDIM on x_t = cos(pi t/2) x0 + sin(pi t/2) eps with v-prediction, written out without any scheduler."""
    t = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    alpha, sigma = torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)
    alpha[0], sigma[-1] = 0.0, 0.0
    x = x_start.double()
    for n in range(num_steps):
        v = velocity_fn(x.float(), t[n].float().expand(x.shape[0])).double()
        x0_hat = alpha[n] * x - sigma[n] * v
        eps_hat = sigma[n] * x + alpha[n] * v
        x = alpha[n + 1] * x0_hat + sigma[n + 1] * eps_hat
    return x.float()


# ----------------------------------------------------------------------------------------------------------------------
# schedule


@pytest.mark.parametrize(
    "temperature, steps, expected",
    [(1.0, 10, 0), (0.0, 10, 10), (0.5, 10, 5), (0.3, 10, 7), (0.9, 10, 1), (0.0, 4, 4), (1.0, 1, 0), (0.0, 1, 1)],
)
def test_noise_injection_index(temperature, steps, expected):
    assert PatchSampler.noise_injection_index(temperature, steps) == expected


def test_cosine_alpha_sigma_endpoints_are_exact():
    alpha, sigma = cosine_alpha_sigma(torch.tensor([0.0, 1.0]))
    # float32 cos(pi/2) is -4.4e-8, not 0: the ends must be clamped exactly so t=1 is pure noise and t=0 is clean.
    assert alpha.tolist() == [1.0, 0.0]
    assert sigma.tolist() == [0.0, 1.0]

    t = torch.linspace(0.0, 1.0, 11)
    alpha, sigma = cosine_alpha_sigma(t)
    assert alpha.shape == sigma.shape == t.shape
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t))
    assert bool((alpha[1:] < alpha[:-1]).all()) and bool((sigma[1:] > sigma[:-1]).all())
    half_alpha, half_sigma = cosine_alpha_sigma(torch.tensor([0.5]))
    torch.testing.assert_close(half_alpha, torch.tensor([math.sqrt(0.5)]))
    torch.testing.assert_close(half_sigma, torch.tensor([math.sqrt(0.5)]))


# ----------------------------------------------------------------------------------------------------------------------
# sampling with an oracle velocity


@pytest.mark.parametrize("steps", [1, 4, 10])
def test_oracle_velocity_recovers_x0_at_temperature_zero_from_zeros(steps):
    x0 = target_x0()
    oracle = OracleVelocity(x0)
    out = PatchSampler().sample(oracle, SHAPE, steps, 0.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    # one network evaluation per step, starting from zeros at t = 1 and walking the grid down to t = 1/N
    assert len(oracle.calls) == steps
    assert torch.equal(oracle.calls[0][0], torch.zeros(SHAPE))
    times = torch.stack([t for _, t in oracle.calls])
    assert times.shape == (steps, SHAPE[0])
    torch.testing.assert_close(times[:, 0], torch.linspace(1.0, 0.0, steps + 1)[:-1])


def test_oracle_velocity_recovers_x0_at_temperature_one_from_noise():
    x0 = target_x0()
    oracle = OracleVelocity(x0)
    out = PatchSampler().sample(oracle, SHAPE, 10, 1.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)
    # tau = 1 starts from fresh Gaussian noise drawn from the generator
    expected_start = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(oracle.calls[0][0], expected_start)


@pytest.mark.parametrize("temperature", [0.1, 0.3, 0.5, 0.75])
def test_oracle_velocity_recovers_x0_at_intermediate_temperature(temperature):
    x0 = target_x0()
    out = PatchSampler().sample(OracleVelocity(x0), SHAPE, 10, temperature, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, x0, atol=1e-5, rtol=0)


def test_noise_is_injected_at_the_grid_point_nearest_tau():
    x0 = target_x0()
    oracle = OracleVelocity(x0)
    PatchSampler().sample(oracle, SHAPE, 10, 0.5, generator=torch.Generator().manual_seed(11))
    # before t_eta the solve is deterministic from zeros: with the oracle x_t = alpha_t x0 (no noise component)
    for n in range(5):
        x, t = oracle.calls[n]
        alpha, _ = cosine_alpha_sigma(t[:1])
        torch.testing.assert_close(x, alpha * x0, atol=1e-5, rtol=0)
    # at t_eta = 0.5 the x0 estimate is re-noised with the first draw of the generator
    x, t = oracle.calls[5]
    assert t[0].item() == pytest.approx(0.5)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(x, math.sqrt(0.5) * (x0 + noise), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------------------------------
# stepping equals DDIM, determinism, generators


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_stepping_matches_a_reference_ddim_loop(temperature):
    steps = 6
    out = PatchSampler().sample(
        nonlinear_velocity, SHAPE, steps, temperature, generator=torch.Generator().manual_seed(5)
    )
    start = torch.zeros(SHAPE) if temperature == 0.0 else torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    expected = reference_ddim(nonlinear_velocity, steps, start)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_temperature_zero_ignores_the_generator():
    sampler = PatchSampler()
    outputs = [
        sampler.sample(nonlinear_velocity, SHAPE, 5, 0.0, generator=generator)
        for generator in (None, torch.Generator().manual_seed(0), torch.Generator().manual_seed(1))
    ]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_seeds_reproduce_and_differ(temperature):
    sampler = PatchSampler()

    def run(seed):
        return sampler.sample(nonlinear_velocity, SHAPE, 5, temperature, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), run(0))
    assert (run(0) - run(1)).abs().max() > 1e-3


def test_per_row_generators_make_rows_independent_of_the_batch():
    sampler = PatchSampler()
    batch = sampler.sample(
        nonlinear_velocity, SHAPE, 5, 1.0, generator=[torch.Generator().manual_seed(s) for s in (10, 20, 30)]
    )
    for row, seed in enumerate((10, 20, 30)):
        single = sampler.sample(
            nonlinear_velocity, (1, *SHAPE[1:]), 5, 1.0, generator=torch.Generator().manual_seed(seed)
        )
        torch.testing.assert_close(batch[row : row + 1], single, atol=1e-6, rtol=0)


def test_sampler_is_reusable_across_calls_and_step_counts():
    sampler = PatchSampler()
    first = sampler.sample(nonlinear_velocity, SHAPE, 5, 0.0)
    other = sampler.sample(nonlinear_velocity, SHAPE, 3, 0.0)
    again = sampler.sample(nonlinear_velocity, SHAPE, 5, 0.0)
    assert torch.equal(first, again)
    torch.testing.assert_close(other, PatchSampler().sample(nonlinear_velocity, SHAPE, 3, 0.0), atol=0, rtol=0)


def test_explicit_default_scheduler_matches_the_default():
    explicit = PatchSampler(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0))
    torch.testing.assert_close(
        explicit.sample(nonlinear_velocity, SHAPE, 4, 0.0), PatchSampler().sample(nonlinear_velocity, SHAPE, 4, 0.0)
    )


def test_low_precision_dtype_reaches_the_velocity_and_the_output():
    seen = []

    def velocity(x, t):
        seen.append(x.dtype)
        return nonlinear_velocity(x.float(), t).to(x.dtype)

    out = PatchSampler().sample(
        velocity, SHAPE, 3, 0.5, generator=torch.Generator().manual_seed(0), dtype=torch.bfloat16
    )
    assert out.dtype == torch.bfloat16 and bool(torch.isfinite(out.float()).all())
    assert set(seen) == {torch.bfloat16}


# ----------------------------------------------------------------------------------------------------------------------
# scheduler validation


def test_rejects_a_scheduler_that_is_not_flow_matching():
    with pytest.raises(TypeError, match="flow-matching"):
        PatchSampler(DDPMScheduler())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside diffusers' EulerDiscreteScheduler
@pytest.mark.parametrize(
    "scheduler",
    [
        pytest.param(lambda: FlowMatchEulerDiscreteScheduler(shift=3.0), id="flow-match-shift-3"),
        pytest.param(lambda: EulerDiscreteScheduler(), id="euler-discrete"),
    ],
)
def test_incompatible_scheduler_is_rejected_or_gives_the_exact_solve(scheduler):
    x0 = target_x0()
    try:
        sampler = PatchSampler(scheduler())
        out = sampler.sample(OracleVelocity(x0), SHAPE, 10, 0.0)
    except (TypeError, ValueError):
        return  # rejecting the scheduler is an acceptable fix
    torch.testing.assert_close(out, x0, atol=1e-4, rtol=0)


def shipped_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """The scheduler of the shipped default pipeline."""
    folder = Path(modeling_ditar.__file__).parent / "default" / "scheduler"
    return FlowMatchEulerDiscreteScheduler.from_pretrained(folder)


def from_shipped_config(class_name: str, **overrides):
    """`Cls.from_config(shipped config, **overrides)`, as a user swaps the pipeline's scheduler."""
    cls = getattr(diffusers, class_name, None)
    if cls is None:
        pytest.skip(f"diffusers {diffusers.__version__} has no {class_name}")
    return cls.from_config(shipped_scheduler().config, **overrides)


class DoubleStepScheduler(FlowMatchEulerDiscreteScheduler):
    """Deterministic, on the given sigmas, but not the Euler step (stands in for another solver)."""

    def step(self, model_output, timestep, sample, **kwargs):
        return super().step(2.0 * model_output, timestep, sample, **kwargs)


OWN_NOISE = "injects its own noise .* temperature=0 would not be deterministic.* with `temperature`"
NOT_EULER = "does not take the deterministic flow-matching Euler step.* injects noise of its own.* with `temperature`"
CANNOT_STEP = "cannot step DiTAR's patch ODE: its `set_timesteps"
FIX = "use FlowMatchEulerDiscreteScheduler(shift=1.0)"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside some diffusers schedulers
@pytest.mark.parametrize(
    "make, message",
    [
        # accepted before, and gave different audio for the same generator
        pytest.param(
            lambda: from_shipped_config("FlowMatchEulerDiscreteScheduler", stochastic_sampling=True),
            OWN_NOISE,
            id="euler-stochastic",
        ),
        # its `step` draws noise, which the probe's one run cannot tell from another solver: one message for both
        pytest.param(lambda: from_shipped_config("FlowMatchLCMScheduler"), NOT_EULER, id="flow-match-lcm"),
        # failed inside diffusers before
        pytest.param(
            lambda: from_shipped_config("FlowMatchEulerDiscreteScheduler", use_dynamic_shifting=True),
            "use_dynamic_shifting=True: it shifts the time grid by a `mu`",
            id="euler-dynamic-shifting",
        ),
        pytest.param(
            lambda: from_shipped_config("UniPCMultistepScheduler"), CANNOT_STEP + ".*use_flow_sigmas", id="unipc"
        ),
        pytest.param(
            lambda: from_shipped_config(
                "UniPCMultistepScheduler", use_flow_sigmas=True, prediction_type="flow_prediction"
            ),
            CANNOT_STEP,
            id="unipc-flow-sigmas",
        ),
        pytest.param(lambda: from_shipped_config("EDMEulerScheduler"), CANNOT_STEP, id="edm-euler"),
        pytest.param(lambda: from_shipped_config("HeliosScheduler"), CANNOT_STEP, id="helios"),
        pytest.param(lambda: from_shipped_config("MiniMaxH3Scheduler"), CANNOT_STEP, id="minimax-h3"),
        pytest.param(lambda: from_shipped_config("PiflowScheduler"), CANNOT_STEP, id="piflow"),
        # accepted before at 1 or 2 steps only (where the conversion changes nothing), refused at more
        pytest.param(
            lambda: from_shipped_config("FlowMatchEulerDiscreteScheduler", use_karras_sigmas=True),
            "does not step on the sigmas it is given",
            id="euler-karras-sigmas",
        ),
        # deterministic and on the given sigmas, but another step than DiTAR's
        pytest.param(lambda: DoubleStepScheduler(shift=1.0), NOT_EULER, id="not-euler"),
    ],
)
def test_unsuitable_scheduler_is_refused_with_the_fix(make, message):
    scheduler = make()
    for check in (check_scheduler, PatchSampler):  # on its own, and when a sampler is made (a generation's start)
        with pytest.raises(TypeError, match=message) as refused:
            check(scheduler)
        assert FIX in str(refused.value)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: FlowMatchEulerDiscreteScheduler(stochastic_sampling=True), id="stochastic-sampling"),
        pytest.param(lambda: from_shipped_config("FlowMatchLCMScheduler"), id="flow-match-lcm"),
    ],
)
def test_own_noise_refusal_says_to_use_temperature(make):
    with pytest.raises(TypeError, match=f"{re.escape(FIX)} and set `temperature`"):
        check_scheduler(make())


def test_a_pipeline_with_a_swapped_in_stochastic_scheduler_refuses_its_first_call():
    from pipeline_helpers import get_dummy_inputs, get_dummy_pipeline

    pipe = get_dummy_pipeline()
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config, stochastic_sampling=True)
    with pytest.raises(TypeError, match=OWN_NOISE):
        pipe(**get_dummy_inputs())


def test_a_pipeline_is_not_built_with_a_scheduler_it_cannot_step():
    from pipeline_helpers import get_dummy_pipeline

    from modeling_ditar import DiTARPipeline

    components = get_dummy_pipeline().components
    stochastic = FlowMatchEulerDiscreteScheduler.from_config(components["scheduler"].config, stochastic_sampling=True)
    with pytest.raises(TypeError, match=OWN_NOISE):
        DiTARPipeline(**{**components, "scheduler": stochastic})


def test_check_scheduler_accepts_the_shipped_scheduler_and_leaves_it_as_it_was():
    scheduler = shipped_scheduler()
    sigmas, timesteps = scheduler.sigmas.clone(), scheduler.timesteps.clone()
    assert check_scheduler(scheduler) is None
    assert torch.equal(scheduler.sigmas, sigmas) and torch.equal(scheduler.timesteps, timesteps)
    assert scheduler.step_index is None and scheduler.begin_index is None


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: from_shipped_config("FlowMatchEulerDiscreteScheduler"), id="euler-from-config"),
        pytest.param(lambda: from_shipped_config("FlowMatchEulerDiscreteScheduler", num_train_timesteps=50), id="t50"),
        pytest.param(lambda: from_shipped_config("FlowMapEulerDiscreteScheduler"), id="flow-map-euler"),
    ],
)
def test_euler_schedulers_on_the_given_sigmas_stay_accepted(make):
    scheduler = make()
    check_scheduler(scheduler)
    torch.testing.assert_close(
        PatchSampler(scheduler).sample(nonlinear_velocity, SHAPE, 6, 0.0),
        PatchSampler().sample(nonlinear_velocity, SHAPE, 6, 0.0),
        atol=1e-6,
        rtol=0,
    )


def test_check_scheduler_leaves_the_random_state_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    check_scheduler(shipped_scheduler())
    assert torch.equal(torch.rand(3), expected)


def test_shared_noise_rows_give_each_group_its_first_rows_draw():
    sampler = PatchSampler()
    shape = (4, *SHAPE[1:])

    def run(groups, noise_rows=None):
        rows_shape = shape if noise_rows is None else (len(noise_rows[1]), *shape[1:])
        generator = torch.Generator().manual_seed(5)
        return sampler.sample(
            nonlinear_velocity, rows_shape, 5, 0.5, generator=generator, noise_rows=noise_rows, shared_noise_rows=groups
        )

    apart, together = run(1), run(2)
    assert torch.equal(together[1], together[0]) and torch.equal(together[3], together[2])
    assert torch.equal(together[0], apart[0]) and torch.equal(together[2], apart[2])  # the generator is read as before
    assert not torch.equal(apart[1], apart[0])
    # with rows that have left the batch, groups are rows of the whole batch
    assert torch.equal(run(2, noise_rows=(4, torch.tensor([1, 3]))), together[[1, 3]])
    with pytest.raises(ValueError, match="shared_noise_rows must be an integer >= 1 that divides the batch"):
        run(3)


# ----------------------------------------------------------------------------------------------------------------------
# argument validation


@pytest.mark.parametrize(
    "steps, temperature, match",
    [
        (0, 0.5, r"`num_inference_steps` must be an integer >= 1, got 0"),  # returned the raw noise
        (-1, 0.5, r"`num_inference_steps` must be an integer >= 1, got -1"),
        (2.5, 0.5, r"`num_inference_steps` must be an integer >= 1, got 2.5"),
        ("4", 0.5, r"`num_inference_steps` must be an integer >= 1, got '4'"),
        (True, 0.5, r"`num_inference_steps` must be an integer >= 1, got True"),
        (4, 5.0, r"`temperature` must be a number in \[0, 1\].*got 5.0"),  # was clamped to 1
        (4, -1.0, r"`temperature` must be a number in \[0, 1\].*got -1.0"),
        (4, float("nan"), r"`temperature` must be a number in \[0, 1\].*got nan"),
    ],
)
def test_bad_steps_or_temperature_are_refused_with_the_generation_settings_rules(steps, temperature, match):
    sampler = PatchSampler()
    with pytest.raises(ValueError, match=match):
        sampler.sample(nonlinear_velocity, SHAPE, steps, temperature, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=match):
        PatchSampler.noise_injection_index(temperature, steps)


def test_a_checked_setting_does_not_let_an_equal_bool_through():
    sampler = PatchSampler()
    sampler.sample(nonlinear_velocity, SHAPE, 1, 1)  # checked once, then looked up: True == 1 must not match it
    with pytest.raises(ValueError, match="`num_inference_steps` must be an integer >= 1, got True"):
        sampler.sample(nonlinear_velocity, SHAPE, True, 1)
    with pytest.raises(ValueError, match="`temperature` must be a number in .*got True"):
        sampler.sample(nonlinear_velocity, SHAPE, 1, True)


def test_numpy_and_tensor_numbers_are_accepted_like_the_generation_settings_accept_them():
    import numpy as np

    def run(steps, temperature):
        return sampler.sample(nonlinear_velocity, SHAPE, steps, temperature, generator=torch.Generator().manual_seed(1))

    sampler = PatchSampler()
    expected = run(4, 0.5)
    assert torch.equal(run(np.int64(4), np.float32(0.5)), expected)
    assert torch.equal(run(torch.tensor(4), torch.tensor(0.5)), expected)
    assert torch.equal(run(torch.tensor(4), torch.tensor(0.5)), expected)
    assert len(sampler._eta_cache) == 1  # all one setting: tensors do not add an entry per call

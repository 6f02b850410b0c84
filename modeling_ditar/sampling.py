"""Per-patch sampler: the paper's cosine VP schedule, DDIM stepping through a diffusers scheduler, LM guidance and
temperature (paper sections 3.2-3.4).

Schedule: x_t = cos(pi t / 2) x0 + sin(pi t / 2) eps, t in [0, 1]; the network predicts v = cos(.) eps - sin(.) x0
(the paper's dx_t/dt without the constant pi/2), so x0 = cos x_t - sin v and eps = sin x_t + cos v.

DDIM on this schedule is the same ODE step as flow-matching Euler on y = x / (cos + sin) with
sigma = sin / (cos + sin) and velocity eps - x0, so the stepping is done by diffusers'
`FlowMatchEulerDiscreteScheduler`. Another scheduler can be swapped in if it takes that same deterministic Euler step on
the sigmas it is given; `check_scheduler` refuses any other (see there).

Shapes: B rows, P frames per patch, D feature dim.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor

from .generation_ditar import _plain_number, check_generation_settings


def shifted_time(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Map times in [0, 1] through the rectified-flow time shift t = s u / (1 + (s - 1) u): 0 and 1 stay fixed, s > 1
    moves the rest towards 1 (noise), s < 1 towards 0; s = 1 returns `u` itself."""
    if shift == 1.0:
        return u
    return shift * u / (1.0 + (shift - 1.0) * u)


def cosine_alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha_t = cos(pi t / 2), sigma_t = sin(pi t / 2); exact zeros at the ends keep t=0 and t=1 clean."""
    alpha = torch.cos(t * (math.pi / 2))
    sigma = torch.sin(t * (math.pi / 2))
    alpha = torch.where(t >= 1, torch.zeros_like(alpha), alpha)
    sigma = torch.where(t <= 0, torch.zeros_like(sigma), sigma)
    return alpha, sigma


def default_scheduler() -> FlowMatchEulerDiscreteScheduler:
    # shift=1 so the sigmas we pass are used as given.
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)


# the fix named by every refusal below
_USE_DEFAULT = "use FlowMatchEulerDiscreteScheduler(shift=1.0)"
# the short grid a scheduler is tried on, and the tolerance of its steps against Euler's (float32 rounding)
_PROBE_STEPS = 4
_PROBE_ATOL, _PROBE_RTOL = 1e-6, 1e-5


def check_scheduler(scheduler) -> None:
    """Raise a TypeError that names the problem and the fix unless `scheduler` can step DiTAR's patch ODE.

    DiTAR solves each patch on its own cosine time grid, with DDIM steps that are flow-matching Euler steps
    (see the module docstring), and places its one noise draw itself (`temperature`, from the call's generator). So
    the scheduler must accept `sigmas` in `set_timesteps`, step on exactly those sigmas (no `shift` != 1, dynamic
    shifting or sigma conversion), and take the deterministic Euler step there: a scheduler that injects its own noise
    would draw it without the call's generator (different audio for the same generator, and `temperature=0` no longer
    deterministic), and a multistep solver's history would be broken by DiTAR's noise injection. The check steps a
    copy of the scheduler (the one given is left as it was) through a short grid, so a scheduler that fails inside
    diffusers is refused here too, with the error it raised.
    """
    _check_scheduler(copy.deepcopy(scheduler))


def _check_scheduler(scheduler) -> None:
    """`check_scheduler` on a scheduler that may be stepped (its grid and step index are left changed)."""
    name = type(scheduler).__name__
    if not hasattr(scheduler, "set_timesteps") or "sigmas" not in _parameters(scheduler.set_timesteps):
        raise TypeError(
            f"scheduler must be a flow-matching scheduler whose `set_timesteps` accepts `sigmas` "
            f"(e.g. FlowMatchEulerDiscreteScheduler); got {name}."
        )
    config = getattr(scheduler, "config", None) or {}
    if config.get("use_dynamic_shifting", False):
        # named up front: diffusers would only say that `mu` (the per-image shift, not a DiTAR argument) is missing
        raise TypeError(
            f"{name} has use_dynamic_shifting=True: it shifts the time grid by a `mu` per call, which DiTAR does not "
            "pass, and DiTAR steps on its own cosine time grid, which any shift would move (so `shift` != 1 is "
            f"refused too); {_USE_DEFAULT}, which has use_dynamic_shifting=False."
        )
    if config.get("stochastic_sampling", False):
        raise TypeError(_own_noise_message(name, "stochastic_sampling=True"))
    # The random state is neither seeded nor restored (that would disturb other threads' draws): an accepted
    # scheduler draws nothing.
    stepped, euler = _probe(scheduler), _probe_inputs()[-1]
    if stepped.shape == euler.shape and torch.allclose(stepped, euler, atol=_PROBE_ATOL, rtol=_PROBE_RTOL):
        return
    raise TypeError(
        f"{name} does not take the deterministic flow-matching Euler step on the sigmas it is given (DiTAR's DDIM "
        "step): it injects noise of its own, drawn without the call's generator (the same generator would give "
        "different audio from call to call, and temperature=0 would not be deterministic), or it is a multistep or "
        "higher-order solver, whose history DiTAR's noise injection would break. DiTAR places its noise itself, with "
        f"`temperature`: {_USE_DEFAULT} and set `temperature`."
    )


def _own_noise_message(name: str, how: str) -> str:
    return (
        f"{name} injects its own noise ({how}), drawn without the call's generator, so the same generator would give "
        "different audio from call to call and temperature=0 would not be deterministic. DiTAR places its noise "
        "itself, with `temperature` (the point of the reverse ODE where fresh noise is injected, 0 = deterministic, "
        f"1 = from pure noise): {_USE_DEFAULT} and set `temperature`."
    )


def _probe(scheduler) -> torch.Tensor:
    """Step `scheduler` through a short DiTAR grid as `PatchSampler.sample` does, on fixed samples and velocities;
    returns its result (to compare with `_probe_inputs`' Euler one)."""
    flow_sigmas, start, velocities, _ = _probe_inputs()
    _set_sigmas(scheduler, flow_sigmas, torch.device("cpu"))
    y = start.clone()  # copies: the inputs are shared by all checks, and a scheduler might write to what it is given
    try:
        for v, timestep in zip(velocities, scheduler.timesteps, strict=True):  # lengths checked
            y = scheduler.step(v.clone(), timestep, y, return_dict=False)[0]
        return torch.as_tensor(y).float()
    except Exception as err:  # any failure inside the scheduler: refused with its error, not left to surface raw
        raise TypeError(_failed_message(scheduler, "step", err)) from err


@functools.cache
def _probe_inputs() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """The probe's flow-matching sigmas, start sample, per-step velocities and the Euler result (made once; `_probe`
    steps copies of them)."""
    _, alpha, sigma = _cosine_grid(_PROBE_STEPS)
    flow_sigmas = (sigma / (alpha + sigma))[:-1].float()
    sigmas = torch.cat([flow_sigmas, flow_sigmas.new_zeros(1)])
    start = torch.linspace(-1.0, 1.0, 8).reshape(1, 2, 4)
    velocities = [torch.linspace(0.5, -0.5, 8).reshape(1, 2, 4) * (n + 1) for n in range(_PROBE_STEPS)]
    euler = start
    for n, v in enumerate(velocities):
        euler = euler + (sigmas[n + 1] - sigmas[n]) * v
    return flow_sigmas, start, velocities, euler


def _failed_message(scheduler, call: str, err: Exception) -> str:
    return (
        f"{type(scheduler).__name__} cannot step DiTAR's patch ODE: its `{call}` raised {type(err).__name__}: {err} "
        f"(DiTAR needs a flow-matching scheduler that takes deterministic Euler steps on the sigmas it is given); "
        f"{_USE_DEFAULT}."
    )


def _set_sigmas(scheduler, flow_sigmas: torch.Tensor, device: torch.device) -> None:
    """Give the scheduler DiTAR's flow-matching sigmas (without the terminal 0, which it appends itself) and check
    that it steps on exactly those; a failure inside the scheduler is refused with its error."""
    try:
        scheduler.set_timesteps(sigmas=flow_sigmas.tolist(), device=device)
        scheduler.set_begin_index(0)
    except Exception as err:
        raise TypeError(_failed_message(scheduler, "set_timesteps(sigmas=...)", err)) from err
    _check_sigmas(scheduler, flow_sigmas)


def _check_sigmas(scheduler, expected: torch.Tensor):
    """The scheduler must step exactly on the sigmas it was given, one step each: a shifted or non-flow-matching
    scheduler would silently solve another ODE."""
    sigmas = getattr(scheduler, "sigmas", None)
    timesteps = getattr(scheduler, "timesteps", None)
    wanted = torch.cat([expected, expected.new_zeros(1)])
    if sigmas is not None:
        sigmas = torch.as_tensor(sigmas).cpu().float()  # a custom scheduler may keep them as a list or an array
    if (
        sigmas is None
        or timesteps is None
        or len(timesteps) != len(expected)
        or sigmas.shape != wanted.shape
        or not torch.allclose(sigmas, wanted, atol=1e-5)
    ):
        raise TypeError(
            f"{type(scheduler).__name__} does not step on the sigmas it is given (a `shift` != 1, dynamic "
            f"shifting, or not a flow-matching scheduler); {_USE_DEFAULT}."
        )


def _cosine_grid(num_inference_steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The time grid t_N = 1 ... t_0 = 0 and its cosine alpha and sigma, float64."""
    t = torch.linspace(1.0, 0.0, num_inference_steps + 1, dtype=torch.float64)
    alpha, sigma = cosine_alpha_sigma(t)
    return t, alpha, sigma


class PatchSampler:
    """Solves the reverse ODE for one patch per row, with LM guidance and temperature.

    One instance holds one scheduler (a copy of the one given, which is left as it was); the time grid is shared by
    all rows, so a batch is solved in lockstep. Constants of the grid are computed once per `num_inference_steps` and
    reused for every patch.

    The scheduler is checked when the sampler is made (`check_scheduler`: a TypeError that names the fix). It is always
    the source of the sigmas (it is given the cosine grid and checked to step on exactly it).
    With a plain `FlowMatchEulerDiscreteScheduler` the Euler update itself is written inline on step sizes precomputed
    from the scheduler's sigmas (the same float32 operations as `scheduler.step`, without its per-step Python state
    and index lookups); `use_scheduler_step=True`, or any other scheduler class, calls `scheduler.step` every step.
    """

    def __init__(self, scheduler: FlowMatchEulerDiscreteScheduler | None = None, use_scheduler_step: bool = False):
        # its own copy: `set_timesteps` and `step` keep a call's grid and step index on the scheduler, so a pipeline's
        # scheduler shared by calls from several threads gave one call another's grid (wrong steps, or an IndexError)
        self.scheduler = copy.deepcopy(scheduler) if scheduler is not None else default_scheduler()
        _check_scheduler(self.scheduler)  # on the copy: `sample` sets its grid and step index again
        self.use_scheduler_step = use_scheduler_step
        self._grid_cache: dict[tuple[int, str], dict] = {}
        self._eta_cache: dict[tuple, int] = {}

    @property
    def inline_euler(self) -> bool:
        """True when the Euler update is done inline (see the class docstring)."""
        # a stochastic FlowMatchEulerDiscreteScheduler never gets here: `check_scheduler` refuses it
        return not self.use_scheduler_step and type(self.scheduler) is FlowMatchEulerDiscreteScheduler

    def _grid(self, num_inference_steps: int, device: torch.device) -> dict[str, torch.Tensor]:
        key = (num_inference_steps, str(device))
        if key not in self._grid_cache:
            t, alpha, sigma = _cosine_grid(num_inference_steps)
            grid = {
                "t": t.float().to(device),
                "alpha": alpha.float().to(device),
                "sigma": sigma.float().to(device),
                # flow-matching sigmas for the scheduler (without the terminal 0, which it appends itself)
                "flow_sigmas": (sigma / (alpha + sigma))[:-1].float(),
                "scale": (alpha + sigma).float().to(device),
                "noise_at": [bool(s > 0) for s in sigma],  # a grid point where re-noising changes anything
            }
            # per-step 0-d constants, indexed once here instead of every step
            for name in ("t", "alpha", "sigma", "scale"):
                grid[name + "_steps"] = list(grid[name].unbind())
            self._grid_cache[key] = grid
        return self._grid_cache[key]

    def _euler_steps(self, grid: dict, num_inference_steps: int, device) -> list[torch.Tensor]:
        """Step sizes sigma_{n+1} - sigma_n of the scheduler's own (checked) sigmas, as `scheduler.step` computes
        them; set once per grid."""
        if "dt" not in grid:
            _set_sigmas(self.scheduler, grid["flow_sigmas"], device)
            sigmas = self.scheduler.sigmas.to(device)
            grid["dt"] = [sigmas[n + 1] - sigmas[n] for n in range(num_inference_steps)]
        return grid["dt"]

    @staticmethod
    def noise_injection_index(temperature: float, num_inference_steps: int) -> int:
        """Index into the grid t = [1, ..., 0] of the point nearest to tau where fresh noise is injected
        (Algorithm 1: eta = argmin_n |t_n - tau|). Index 0 (t = 1) means start from pure noise; the last index
        (t = 0) means never inject noise (deterministic). Both arguments must satisfy the generation settings' rules
        (see `check_generation_settings`)."""
        temperature, num_inference_steps = _checked_settings(temperature, num_inference_steps)
        t = torch.linspace(1.0, 0.0, num_inference_steps + 1, dtype=torch.float64)
        return int(torch.argmin((t - temperature).abs()).item())

    def _noise_injection_index(self, temperature: float, num_inference_steps: int) -> int:
        """`noise_injection_index`, checked and computed once per pair of values: a patch that reuses its settings
        costs one lookup. The key holds the types, since `True == 1` and `1 == 1.0` would otherwise share an entry."""
        key = (type(temperature), temperature, type(num_inference_steps), num_inference_steps)
        try:
            return self._eta_cache[key]
        except (KeyError, TypeError):  # not seen yet, or unhashable (refused by the check)
            pass
        eta = self.noise_injection_index(temperature, num_inference_steps)
        # stored under the plain numbers: a tensor's key is its identity, which would grow the cache on every call
        temperature, num_inference_steps = _plain_number(temperature), _plain_number(num_inference_steps)
        self._eta_cache[(type(temperature), temperature, type(num_inference_steps), num_inference_steps)] = eta
        return eta

    def sample(
        self,
        velocity_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        shape: tuple[int, ...],
        num_inference_steps: int,
        temperature: float,
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        noise_rows: tuple[int, torch.Tensor] | None = None,
        noise: torch.Tensor | None = None,
        shared_noise_rows: int = 1,
    ) -> torch.Tensor:
        """Returns x0 of shape `shape` ([B, P, D]).

        `velocity_fn(x_t, t)` returns the (already guided) velocity for x_t [B, P, D] at time t [B]. A velocity that
        also has `at_step(x_t, n, t_grid)` (e.g. [`GuidedVelocity`]) is called through it with the grid index n, which
        lets it reuse per-grid work such as time embeddings; both must give the same values.

        Temperature (paper 3.4): the solve starts from zeros at t = 1 and is deterministic, except that on reaching the
        grid point t_eta nearest to tau the current x0 estimate is re-noised with fresh Gaussian noise,
        x = alpha(t_eta) x0_hat + sigma(t_eta) eps. tau = 1 is ordinary sampling from noise, tau = 0 is deterministic.
        Reusing the x0 estimate of the step that lands on t_eta costs no extra network evaluation.

        `noise_rows=(num_rows, rows)`: the B rows being solved are rows `rows` of a batch of `num_rows` (the others have
        finished); noise is drawn for the whole batch, as `generator` would for it, and the solved rows' part is used,
        so a row's numbers do not depend on which other rows are still being solved.

        `noise`: a standard normal [B, P, D] used as the solve's one Gaussian draw instead of drawing it (`generator`
        and `noise_rows` are then unused). Distillation pairs a teacher's and a student's solves on the same draw.

        `shared_noise_rows` G > 1: the batch (the whole batch of `noise_rows`) is made of groups of G consecutive rows,
        and every row of a group gets its group's first draw; the generator is consumed as without sharing. Rows with
        the same inputs then give the same patch (the candidates of one text before they branch).
        """
        # checked first: a bad step count or temperature would otherwise fail deep in the grid, or be clamped
        eta = self._noise_injection_index(temperature, num_inference_steps)
        num_inference_steps = int(num_inference_steps)  # a checked numpy or 0-d tensor integer indexes the grid
        device = torch.device(device)
        grid = self._grid(num_inference_steps, device)

        given_noise = noise
        if given_noise is not None and tuple(given_noise.shape) != tuple(shape):
            raise ValueError(f"noise must have the sample's shape {tuple(shape)}, got {tuple(given_noise.shape)}.")
        full_rows = shape[0] if noise_rows is None else noise_rows[0]
        if not (isinstance(shared_noise_rows, int) and shared_noise_rows >= 1 and full_rows % shared_noise_rows == 0):
            raise ValueError(
                f"shared_noise_rows must be an integer >= 1 that divides the batch ({full_rows} rows), got "
                f"{shared_noise_rows!r}."
            )

        def shared(draw: torch.Tensor) -> torch.Tensor:
            if shared_noise_rows == 1:
                return draw
            groups = draw.unflatten(0, (-1, shared_noise_rows))
            return groups[:, :1].expand_as(groups).flatten(0, 1)

        def noise() -> torch.Tensor:
            if given_noise is not None:
                return given_noise.to(device=device, dtype=torch.float32)
            if noise_rows is None:
                return shared(randn_tensor(shape, generator=generator, device=device, dtype=torch.float32))
            num_rows, rows = noise_rows
            full = randn_tensor((num_rows, *shape[1:]), generator=generator, device=device, dtype=torch.float32)
            return shared(full)[rows]

        x = noise() if eta == 0 else torch.zeros(shape, device=device, dtype=torch.float32)
        batch = shape[0]
        at_step = getattr(velocity_fn, "at_step", None)
        t_grid = grid["t"]

        def velocity(x: torch.Tensor, n: int) -> torch.Tensor:
            if at_step is not None:
                return at_step(x.to(dtype), n, t_grid).float()
            return velocity_fn(x.to(dtype), grid["t_steps"][n].expand(batch)).float()

        alphas, sigmas, scales = grid["alpha_steps"], grid["sigma_steps"], grid["scale_steps"]
        if self.inline_euler:
            dts = self._euler_steps(grid, num_inference_steps, device)
            for n in range(num_inference_steps):
                v = velocity(x, n)
                alpha, sigma = alphas[n], sigmas[n]
                x0_hat = alpha * x - sigma * v
                eps_hat = sigma * x + alpha * v
                y = x / scales[n]
                y = y + dts[n] * (eps_hat - x0_hat)  # FlowMatchEulerDiscreteScheduler.step, float32
                x = y * scales[n + 1]
                if n + 1 == eta and grid["noise_at"][n + 1]:
                    x = alphas[n + 1] * x0_hat + sigmas[n + 1] * noise()
            return x.to(dtype)

        _set_sigmas(self.scheduler, grid["flow_sigmas"], device)
        for n, timestep in enumerate(self.scheduler.timesteps):
            v = velocity(x, n)
            alpha, sigma = alphas[n], sigmas[n]
            x0_hat = alpha * x - sigma * v
            eps_hat = sigma * x + alpha * v
            y = x / scales[n]
            y = self.scheduler.step(eps_hat - x0_hat, timestep, y, return_dict=False)[0]
            x = y * scales[n + 1]
            if n + 1 == eta and grid["noise_at"][n + 1]:
                x = alphas[n + 1] * x0_hat + sigmas[n + 1] * noise()
        return x.to(dtype)


class GuidedVelocity:
    """LM guidance: v = v(0) + g (v(h) - v(0)); cond and uncond branches packed in one LocDiT batch.

    g = 1 runs the conditional branch alone (no guidance), g = 0 the unconditional branch alone. Calling it,
    `velocity(x_t, t)`, runs `locdit(...)`; `at_step(x_t, n, t_grid)` (used by [`PatchSampler`]) gives the same values
    from LocDiT's prepared calls: the condition and history part of the input is computed once per patch, the time
    embeddings once per grid (`time_cache`, a dict that may be shared by the patches of one generation).
    `forward_fn(locdit, x_t, time_emb, context)`, when given, stands in for `locdit.forward_prepared` (a compiled
    version of it, say).
    """

    def __init__(
        self,
        locdit: torch.nn.Module,
        cond: torch.Tensor,
        history: torch.Tensor | None,
        history_mask: torch.Tensor | None,
        guidance_scale: float,
        time_cache: dict | None = None,
        forward_fn: Callable | None = None,
    ):
        self.locdit = locdit
        # `forward_fn(locdit, x_t, time_emb, context)` replaces `locdit.forward_prepared` (e.g. a compiled version)
        self.forward_fn = forward_fn
        self.guidance_scale = guidance_scale
        self.packed = guidance_scale not in (0.0, 1.0)
        if guidance_scale == 0.0:
            cond = torch.zeros_like(cond)
        elif self.packed:
            cond = torch.cat([cond, torch.zeros_like(cond)])
            history = None if history is None else torch.cat([history, history])
            history_mask = None if history_mask is None else torch.cat([history_mask, history_mask])
        self.cond, self.history, self.history_mask = cond, history, history_mask
        self.time_cache = {} if time_cache is None else time_cache
        self._context = None
        self._prepared: bool | None = None

    def _combine(self, v: torch.Tensor) -> torch.Tensor:
        if not self.packed:
            return v
        v_cond, v_uncond = v.chunk(2)
        return v_uncond + self.guidance_scale * (v_cond - v_uncond)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.packed:
            x, t = torch.cat([x, x]), torch.cat([t, t])
        return self._combine(self.locdit(x, t, self.cond, self.history, self.history_mask))

    def at_step(self, x: torch.Tensor, n: int, t_grid: torch.Tensor) -> torch.Tensor:
        if self._prepared is None:
            self._prepared = bool(getattr(self.locdit, "supports_prepared_calls", lambda: False)())
        if not self._prepared:
            return self(x, t_grid[n].expand(x.shape[0]))
        if self._context is None:
            self._context = self.locdit.prepare_context(self.cond, self.history, self.history_mask)
        if self.packed:
            x = torch.cat([x, x])
        if self.time_cache.get("grid") is not t_grid:
            # keeping a reference to the grid makes the identity check safe
            self.time_cache.clear()
            self.time_cache["grid"] = t_grid
        # [M, C] per grid point, embedded with as many rows as `__call__` would use, so the numbers are the same
        key = (n, x.shape[0])
        time_emb = self.time_cache.get(key)
        if time_emb is None:
            time_emb = self.time_cache[key] = self.locdit.embed_time(t_grid[n].expand(x.shape[0]))
        if self.forward_fn is not None:
            return self._combine(self.forward_fn(self.locdit, x, time_emb, self._context))
        return self._combine(self.locdit(x, time_emb=time_emb, context=self._context))


def guided_velocity(
    locdit: torch.nn.Module,
    cond: torch.Tensor,
    history: torch.Tensor | None,
    history_mask: torch.Tensor | None,
    guidance_scale: float,
    time_cache: dict | None = None,
) -> GuidedVelocity:
    """LM guidance: v = v(0) + g (v(h) - v(0)); cond and uncond branches packed in one LocDiT batch (see
    [`GuidedVelocity`]). g = 1 runs the conditional branch alone (no guidance), g = 0 the unconditional branch alone."""
    return GuidedVelocity(locdit, cond, history, history_mask, guidance_scale, time_cache)


def _checked_settings(temperature, num_inference_steps) -> tuple[float, int]:
    """`temperature` and `num_inference_steps` as plain numbers, after the rules of the generation settings (a
    ValueError naming the argument, its value and the allowed range): 0 steps would return the raw noise, and a
    temperature outside [0, 1] would be clamped to an end of the grid."""
    values = {"num_inference_steps": _plain_number(num_inference_steps), "temperature": _plain_number(temperature)}
    check_generation_settings(values)
    return values["temperature"], values["num_inference_steps"]


def _parameters(fn) -> set[str]:
    import inspect

    return set(inspect.signature(fn).parameters)

"""Per-patch sampler: the paper's cosine VP schedule, DDIM stepping through a diffusers scheduler, LM guidance and
temperature (paper sections 3.2-3.4).

Schedule: x_t = cos(pi t / 2) x0 + sin(pi t / 2) eps, t in [0, 1]; the network predicts v = cos(.) eps - sin(.) x0
(the paper's dx_t/dt without the constant pi/2), so x0 = cos x_t - sin v and eps = sin x_t + cos v.

DDIM on this schedule is the same ODE step as flow-matching Euler on y = x / (cos + sin) with
sigma = sin / (cos + sin) and velocity eps - x0, so the stepping is done by diffusers'
`FlowMatchEulerDiscreteScheduler` and any compatible flow-matching scheduler can be swapped in.

Shapes: B rows, P frames per patch, D feature dim.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor


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


class PatchSampler:
    """Solves the reverse ODE for one patch per row, with LM guidance and temperature.

    One instance holds one scheduler; the time grid is shared by all rows, so a batch is solved in lockstep. Constants
    of the grid are computed once per `num_inference_steps` and reused for every patch.
    """

    def __init__(self, scheduler: FlowMatchEulerDiscreteScheduler | None = None):
        self.scheduler = scheduler if scheduler is not None else default_scheduler()
        if not hasattr(self.scheduler, "set_timesteps") or "sigmas" not in _parameters(self.scheduler.set_timesteps):
            raise TypeError(
                f"scheduler must be a flow-matching scheduler whose `set_timesteps` accepts `sigmas` "
                f"(e.g. FlowMatchEulerDiscreteScheduler); got {type(self.scheduler).__name__}."
            )
        self._grid_cache: dict[tuple[int, str], dict[str, torch.Tensor]] = {}

    def _grid(self, num_inference_steps: int, device: torch.device) -> dict[str, torch.Tensor]:
        key = (num_inference_steps, str(device))
        if key not in self._grid_cache:
            t = torch.linspace(1.0, 0.0, num_inference_steps + 1, dtype=torch.float64)  # t_N = 1 ... t_0 = 0
            alpha, sigma = cosine_alpha_sigma(t)
            self._grid_cache[key] = {
                "t": t.float().to(device),
                "alpha": alpha.float().to(device),
                "sigma": sigma.float().to(device),
                # flow-matching sigmas for the scheduler (without the terminal 0, which it appends itself)
                "flow_sigmas": (sigma / (alpha + sigma))[:-1].float(),
                "scale": (alpha + sigma).float().to(device),
            }
        return self._grid_cache[key]

    def _check_sigmas(self, expected: torch.Tensor):
        """The scheduler must step exactly on the sigmas it was given: a shifted or non-flow-matching scheduler would
        silently solve another ODE."""
        sigmas = getattr(self.scheduler, "sigmas", None)
        wanted = torch.cat([expected, expected.new_zeros(1)])
        if sigmas is None or sigmas.shape != wanted.shape or not torch.allclose(sigmas.cpu().float(), wanted, atol=1e-5):
            raise TypeError(
                f"{type(self.scheduler).__name__} does not step on the sigmas it is given (a `shift` != 1, dynamic "
                "shifting, or not a flow-matching scheduler); use FlowMatchEulerDiscreteScheduler(shift=1.0)."
            )

    @staticmethod
    def noise_injection_index(temperature: float, num_inference_steps: int) -> int:
        """Index into the grid t = [1, ..., 0] of the point nearest to tau where fresh noise is injected
        (Algorithm 1: eta = argmin_n |t_n - tau|). Index 0 (t = 1) means start from pure noise; the last index
        (t = 0) means never inject noise (deterministic)."""
        t = torch.linspace(1.0, 0.0, num_inference_steps + 1, dtype=torch.float64)
        return int(torch.argmin((t - temperature).abs()).item())

    def sample(
        self,
        velocity_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        shape: tuple[int, ...],
        num_inference_steps: int,
        temperature: float,
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Returns x0 of shape `shape` ([B, P, D]).

        `velocity_fn(x_t, t)` returns the (already guided) velocity for x_t [B, P, D] at time t [B].

        Temperature (paper 3.4): the solve starts from zeros at t = 1 and is deterministic, except that on reaching the
        grid point t_eta nearest to tau the current x0 estimate is re-noised with fresh Gaussian noise,
        x = alpha(t_eta) x0_hat + sigma(t_eta) eps. tau = 1 is ordinary sampling from noise, tau = 0 is deterministic.
        Reusing the x0 estimate of the step that lands on t_eta costs no extra network evaluation.
        """
        grid = self._grid(num_inference_steps, torch.device(device))
        eta = self.noise_injection_index(temperature, num_inference_steps)
        self.scheduler.set_timesteps(sigmas=grid["flow_sigmas"].tolist(), device=device)
        self._check_sigmas(grid["flow_sigmas"])
        self.scheduler.set_begin_index(0)

        if eta == 0:
            x = randn_tensor(shape, generator=generator, device=torch.device(device), dtype=torch.float32)
        else:
            x = torch.zeros(shape, device=device, dtype=torch.float32)
        batch = shape[0]
        for n, timestep in enumerate(self.scheduler.timesteps):
            t = grid["t"][n].expand(batch)
            alpha, sigma = grid["alpha"][n], grid["sigma"][n]
            v = velocity_fn(x.to(dtype), t).float()
            x0_hat = alpha * x - sigma * v
            eps_hat = sigma * x + alpha * v
            y = x / grid["scale"][n]
            y = self.scheduler.step(eps_hat - x0_hat, timestep, y, return_dict=False)[0]
            x = y * grid["scale"][n + 1]
            if n + 1 == eta and grid["sigma"][n + 1] > 0:
                noise = randn_tensor(shape, generator=generator, device=torch.device(device), dtype=torch.float32)
                x = grid["alpha"][n + 1] * x0_hat + grid["sigma"][n + 1] * noise
        return x.to(dtype)


def guided_velocity(
    locdit: torch.nn.Module,
    cond: torch.Tensor,
    history: torch.Tensor | None,
    history_mask: torch.Tensor | None,
    guidance_scale: float,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """LM guidance: v = v(0) + g (v(h) - v(0)); cond and uncond branches packed in one LocDiT batch.

    g = 1 runs the conditional branch alone (no guidance), g = 0 the unconditional branch alone.
    """
    if guidance_scale == 1.0:
        return lambda x, t: locdit(x, t, cond, history, history_mask)
    if guidance_scale == 0.0:
        return lambda x, t: locdit(x, t, torch.zeros_like(cond), history, history_mask)

    packed_cond = torch.cat([cond, torch.zeros_like(cond)])
    packed_history = None if history is None else torch.cat([history, history])
    packed_mask = None if history_mask is None else torch.cat([history_mask, history_mask])

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = locdit(torch.cat([x, x]), torch.cat([t, t]), packed_cond, packed_history, packed_mask)
        v_cond, v_uncond = v.chunk(2)
        return v_uncond + guidance_scale * (v_cond - v_uncond)

    return velocity


def _parameters(fn) -> set[str]:
    import inspect

    return set(inspect.signature(fn).parameters)

"""NoiseShift calibration search (arXiv 2510.02307; docs/design.md section 2.1).

For each step of a sampling schedule we look for the level ``sigma_hat`` the
network should be *conditioned on* while the trajectory really sits at
``sigma``. Input scaling, the denoised formula and the step sizes keep the
true ``sigma``; only the conditioning changes.

Objective for step i (state level ``s_i``, next level ``s_{i+1}``, one fixed
``eps`` per sample drawn from ``seed``)::

    x_i    = noised x0 at s_i
    x_hat  = x_i + (s_{i+1} - s_i) * (x_i - denoise(x_i, s_i, c)) / s_i
    err(c) = mean over samples of mean((x_hat - noised x0 at s_{i+1}) ** 2)

A final step to ``s_{i+1} = 0`` is included: its Euler step lands on the
denoised output itself.

Level space. Windows, steps and tolerances are measured in the
flow-equivalent level ``u``:

- ``"flow"`` (``x = (1 - s) x0 + s eps``): ``u = sigma``.
- ``"ve"`` (``x = x0 + sigma eps``, ComfyUI's eps/v discrete models in the
  k-diffusion form): ``u = sigma / (1 + sigma)``. A flow state at level ``u``
  divided by ``1 - u`` is ``x0 + u / (1 - u) eps``, so ``u`` has the same
  signal-to-noise ratio as ``sigma``; candidates map back with
  ``sigma = u / (1 - u)``. A window of +-0.1 thus means the same thing for
  SD1.5 as for SD3.

Order and constraint. Steps are searched from the noisiest (i = 0) to the
cleanest; step i may only choose ``u`` in ``[0, u_hat_{i-1}]``, so
``sigma_hat`` is monotone non-increasing along the schedule. The first step's
upper limit is the model's largest level ``sigma_max``: 1 for flow; for "ve"
it defaults to ``sigmas[0]``, because ComfyUI's ve schedules start at the
model's ``sigma_max`` and the discrete ``timestep()`` clamps above it, so
larger candidates could not be told apart. Pass ``model_sampling.sigma_max``
when the schedule starts lower (e.g. img2img).

Modes:

- ``"grid"``: the paper's coarse-to-fine search. Coarse window +-0.1 around
  ``u_i`` in steps of 0.01 (21 candidates), then +-0.01 around the coarse
  optimum in steps of 0.001 (21 candidates, the coarse optimum reused).
  Candidates are clipped to the allowed range and deduplicated. The paper
  gives the window half-widths but not the step sizes: 0.01 and 0.001 are our
  choice (one tenth of each window).
- ``"fast"`` (ours): same objective, far fewer evaluations. A three-point
  stencil (spacing 0.01) around a warm start (``u_i`` plus the previous
  steps' shift, linearly extrapolated), bracket expansion (gap doubled each
  round) towards lower error, then parabolic steps with golden-section
  fallback (Brent's safeguard) until two successive parabola vertices agree
  to 0.001 in ``u``, or earlier when the parabola predicts less than
  ``ftol`` = 1e-5 of the step's error left to gain (then the position is
  only as fine as the stencil, the error within about 1e-5 relative of the
  parabola's minimum).
  Flat objectives and minima at the range ends are detected. Unlike the
  grid, the search is not confined to +-0.1 around ``u_i``: bracketing finds
  large shifts. It is a local search: on a multimodal objective it keeps to
  the basin of the warm start and ``u_i``, as the grid keeps to its window.

- ``"lean"`` (ours): Gauss-Newton on the one-step residuals. u_i and the
  warm start are evaluated; the secant through two points gives the
  residuals' derivative in u and the zero of the objective's gradient the
  next candidate (the first step scaled by how far the previous step's first
  step fell short). It stops when the next step is below ``tolerance``
  (0.003) or when the model's predicted gain of that step, per latent, does
  not clear ``step_z`` (1) standard errors (the latents cannot resolve it),
  with one check a stencil step away where the secant was wide; at most
  ``max_points`` (6) candidates a step. A small shift (at most two stencil
  steps) is kept only where its gain over the identity clears ``z`` (2)
  standard errors of the paired per-latent gain, so few latents do not turn
  noise into a shift at the training resolution; where the curve has a
  significant larger shift somewhere (``restore_small``: off the training
  resolution) the dropped small shifts are put back, monotonicity
  permitting. Where the shift drops by more than ``jump_probe`` (0.05) from
  one step to the next, the previous step is probed at the next step's level
  (a second basin, where the curve joins a plateau a step earlier) and
  revised when that clears ``z`` standard errors. With ``warm_start`` (the
  curve of another resolution) each step starts from that curve instead of
  the extrapolated trend. About 3 evaluations per latent and step; meant for
  12-16 latents (bench/calibration_cost.py).

All candidates of a round go through ``denoise`` as one batch
(candidates x samples rows), split into chunks of at most ``max_batch`` rows;
NFE counts rows. Ties (relative 1e-9, e.g. a clamped timestep) go to the
candidate closest to ``u_i``, so a flat objective gives no shift.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch

from .levels import FAMILIES, check_descending, check_parameterization, sigma_to_u
from .noiseshift_grid_fast import FastSearch, GridSearch
from .noiseshift_lean import LeanSearch
from .noiseshift_points import Denoise, Points, StepObjective, draw_eps, key
from .sigma_hat_curve import SigmaHatCurve, as_sigma_list

__all__ = [
    "SearchResult",
    "calibrate_noiseshift",
    "step_errors",
    "GRID_PARAMS",
    "FAST_PARAMS",
]

MODES = ("grid", "fast", "lean")

GRID_PARAMS = {
    "coarse_window": 0.1,
    "coarse_step": 0.01,
    "fine_window": 0.01,
    "fine_step": 0.001,
}
FAST_PARAMS = {
    "initial_step": 0.01,
    "growth": 2.0,
    "tolerance": 0.001,
    "ftol": 1e-5,
    "trend": 1.0,
    "max_rounds": 40,
}

# The lean mode (see the module docstring); bench/calibration_cost.py and
# docs/results-calibration-cost.md measured these settings on 12 latents.
LEAN_PARAMS = {
    **FAST_PARAMS,
    "tolerance": 0.003,
    "ftol": 1e-4,
    "z": 2.0,
    "max_points": 6,
    "jump_probe": 0.05,
    "restore_small": 1.0,
    "step_z": 1.0,
}


@dataclass
class SearchResult:
    """Outcome of a calibration; lists are per searched step, noisiest first."""

    sigmas: list[float]
    sigma_hat: list[float]
    error_before: list[float]
    error_after: list[float]
    nfe: int
    wall_time_s: float
    mode: str
    params: dict = field(default_factory=dict)

    @property
    def total_error_before(self) -> float:
        return float(sum(self.error_before))

    @property
    def total_error_after(self) -> float:
        return float(sum(self.error_after))

    def to_dict(self) -> dict:
        return asdict(self)


def step_errors(
    denoise: Denoise,
    x0: torch.Tensor,
    sigma: float,
    sigma_next: float,
    candidates: Sequence[float],
    *,
    parameterization: str = "flow",
    seed: int = 0,
    max_batch: int = 64,
) -> list[float]:
    """One-step error at each conditioning level in ``candidates`` (sigmas).

    Same objective and noise as :func:`calibrate_noiseshift` for the same seed,
    e.g. for an exhaustive reference search.
    """
    check_parameterization(parameterization, FAMILIES)
    _check_batch(max_batch)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    eps = draw_eps(x0, seed)
    with torch.no_grad():
        obj = StepObjective(
            denoise, x0, eps, float(sigma), float(sigma_next), parameterization, max_batch
        )
        return obj(list(candidates))


def _settings(mode: str, overrides: Mapping[str, float] | None) -> dict:
    settings = dict({"grid": GRID_PARAMS, "fast": FAST_PARAMS, "lean": LEAN_PARAMS}[mode])
    for name, value in (overrides or {}).items():
        if name not in settings:
            raise ValueError(f"unknown {mode} search parameter {name!r}; known: {sorted(settings)}")
        value = float(value)
        zero_ok = name in (
            "ftol",
            "trend",
            "z",
            "jump_probe",
            "restore_small",
            "step_z",
        )
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            raise ValueError(f"search parameter {name} must be a positive number, got {value}")
        settings[name] = int(value) if name in ("max_rounds", "max_points") else value
    if mode == "grid" and (
        settings["coarse_step"] > settings["coarse_window"]
        or settings["fine_step"] > settings["fine_window"]
    ):
        raise ValueError("grid steps must not exceed their windows")
    if mode != "grid" and settings["growth"] <= 1:
        raise ValueError("fast search growth must be > 1")
    return settings


def _check_batch(max_batch) -> None:
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")


def _checked_levels(sigmas, parameterization: str) -> list[float]:
    levels = as_sigma_list(sigmas)
    if len(levels) < 2:
        raise ValueError("sigmas needs at least two levels (one step)")
    if any(not math.isfinite(s) for s in levels):
        raise ValueError("sigmas must be finite")
    check_descending(levels)
    if levels[-1] < 0 or levels[-2] <= 0:
        raise ValueError("sigmas must be > 0 except a final 0")
    if parameterization == "flow" and levels[0] > 1.0:
        raise ValueError(f"flow sigmas must be <= 1, got {levels[0]}")
    return levels


def _checked_sigma_max(sigma_max, levels: list[float], parameterization: str) -> float:
    """The first step's upper limit (default: 1 for flow, the first sigma for ve)."""
    if sigma_max is None:
        sigma_max = 1.0 if parameterization == "flow" else levels[0]
    sigma_max = float(sigma_max)
    if not (sigma_max > 0 and math.isfinite(sigma_max)):
        raise ValueError(f"sigma_max must be a positive finite level, got {sigma_max}")
    if parameterization == "flow" and sigma_max > 1.0:
        raise ValueError(f"flow sigma_max must be <= 1, got {sigma_max}")
    return sigma_max


def _search_curve(steps, objective, levels, sigma_max: float, parameterization: str, progress):
    """Every step in turn, noisiest first, each limited to at most the previous
    step's choice: (sigma_hat, error before, error after, rows)."""
    n_steps = len(levels) - 1
    out_hat: list[float] = []
    err_before: list[float] = []
    err_after: list[float] = []
    shifts: list[float] = []  # u_best - u per step, the warm start
    nfe = 0
    upper_sigma = sigma_max
    for i in range(n_steps):
        s, s_next = levels[i], levels[i + 1]
        u_i = sigma_to_u(s, parameterization)
        hi = sigma_to_u(upper_sigma, parameterization)
        obj = objective(s, s_next)
        # The range end last: if it coincides with u_i, monotonicity wins.
        pinned = {key(u_i): s, key(0.0): 0.0, key(hi): upper_sigma}
        pts = Points(obj, parameterization, u_i, pinned, 0.0, hi)
        pts.keep_residuals = steps.keep_residuals
        steps.search(pts, u_i, s, shifts)
        pts.evaluate([u_i])  # no-op unless u_i lay outside the allowed range
        u_best = pts.best()
        u_hat = steps.choose(i, pts, u_i, u_best)
        nfe += obj.rows
        sig_hat = pts.sigma_of(u_hat)
        out_hat.append(sig_hat)
        err_before.append(pts.error_at(u_i))
        err_after.append(pts.f[key(u_hat)])
        shifts.append(u_best - u_i)  # the trend follows the objective's minimum
        upper_sigma = sig_hat
        nfe += steps.revise(i, pts, u_i, u_hat, out_hat, err_after, shifts)
        if progress is not None:
            progress(i + 1, n_steps)
    steps.finish(out_hat, err_after)
    return out_hat, err_before, err_after, nfe


def calibrate_noiseshift(
    denoise: Denoise,
    x0: torch.Tensor,
    sigmas,
    *,
    parameterization: str = "flow",
    mode: str = "fast",
    seed: int = 0,
    max_batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
    sigma_max: float | None = None,
    search_params: Mapping[str, float] | None = None,
    warm_start: tuple[Sequence[float], Sequence[float]] | None = None,
) -> SearchResult:
    """Search sigma_hat for every step of ``sigmas`` (see the module docstring).

    ``denoise(x, sigma, sigma_cond)`` gets ``x`` [rows, ...] and two [rows]
    tensors: the true level and the conditioning level. ``progress(done,
    total)`` is called after each step; an exception from it or from
    ``denoise`` propagates (that is how a cancel works) and leaves no state.
    ``sigma_max`` is the first step's upper limit (default: 1 for flow,
    ``sigmas[0]`` for ve). ``search_params`` overrides entries of
    :data:`GRID_PARAMS` or :data:`FAST_PARAMS` (e.g. a wider coarse window).
    ``warm_start``: (sigmas, sigma_hat) of a calibration of the same network
    at another resolution (lean mode only; other modes ignore it). The first
    step starts from that curve's shift at its sigma (interpolated in sigma),
    each later one from this search's last shift moved by that curve's change
    between the two steps (scaled by how much larger this search's shifts have
    been so far), instead of the previous shifts extrapolated.
    """
    t_start = time.perf_counter()
    check_parameterization(parameterization, FAMILIES)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _check_batch(max_batch)
    if not isinstance(x0, torch.Tensor) or x0.dim() < 1 or x0.shape[0] < 1:
        raise ValueError("x0 must be a tensor [n, ...] with n >= 1 calibration latents")
    levels = _checked_levels(sigmas, parameterization)
    sigma_max = _checked_sigma_max(sigma_max, levels, parameterization)
    settings = _settings(mode, search_params)
    params = {
        "mode": mode,
        "parameterization": parameterization,
        "level_space": "flow_u",
        "sigma_max": sigma_max,
        "seed": int(seed),
        "n_samples": int(x0.shape[0]),
        "max_batch": int(max_batch),
        **settings,
    }
    if mode == "lean":
        prior = None if warm_start is None else SigmaHatCurve(*warm_start, max_level=sigma_max)
        steps = LeanSearch(settings, prior, parameterization)
    else:
        steps = GridSearch(settings) if mode == "grid" else FastSearch(settings)
    eps = draw_eps(x0, seed)

    def objective(sigma, sigma_next):
        return StepObjective(denoise, x0, eps, sigma, sigma_next, parameterization, max_batch)

    with torch.no_grad():
        out_hat, err_before, err_after, nfe = _search_curve(
            steps, objective, levels, sigma_max, parameterization, progress
        )
    return SearchResult(
        sigmas=levels[:-1],
        sigma_hat=out_hat,
        error_before=err_before,
        error_after=err_after,
        nfe=int(nfe),
        wall_time_s=time.perf_counter() - t_start,
        mode=mode,
        params=params,
    )

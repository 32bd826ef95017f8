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

from .levels import FAMILIES, check_descending, check_parameterization, sigma_to_u, u_to_sigma
from .sigma_hat_curve import SigmaHatCurve, as_sigma_list

__all__ = [
    "SearchResult",
    "calibrate_noiseshift",
    "step_errors",
    "GRID_PARAMS",
    "FAST_PARAMS",
]

Denoise = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

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

_TIE_RTOL = 1e-9  # errors this close count as equal (flat objective)
_KEY_DIGITS = 10  # u values equal to this many decimals are the same candidate


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


def _key(u: float) -> float:
    return round(float(u), _KEY_DIGITS)


def _noised(x0: torch.Tensor, eps: torch.Tensor, sigma: float, parameterization: str):
    if parameterization == "flow":
        return (1.0 - sigma) * x0 + sigma * eps
    return x0 + sigma * eps


def _draw_eps(x0: torch.Tensor, seed: int) -> torch.Tensor:
    # A CPU generator gives the same noise on every device.
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(x0.shape, generator=gen, dtype=torch.float64)


def _state_dtype(x0: torch.Tensor) -> torch.dtype:
    return x0.dtype if x0.is_floating_point() else torch.float32


class _StepObjective:
    """err(c) for one step, batched over candidates x samples within max_batch rows."""

    def __init__(
        self,
        denoise: Denoise,
        x0: torch.Tensor,
        eps: torch.Tensor,
        sigma: float,
        sigma_next: float,
        parameterization: str,
        max_batch: int,
    ):
        # float64 keeps differences between close candidates well above
        # rounding; MPS has no float64.
        self.acc = torch.float32 if x0.device.type == "mps" else torch.float64
        x0d = x0.to(self.acc)
        epsd = eps.to(device=x0.device, dtype=self.acc)
        self.denoise = denoise
        # The network sees the state in the latent's own dtype; the error is
        # measured against that same (rounded) state.
        self.x = _noised(x0d, epsd, sigma, parameterization).to(_state_dtype(x0))
        self.target = _noised(x0d, epsd, sigma_next, parameterization)
        self.sigma = float(sigma)
        self.ratio = (float(sigma_next) - float(sigma)) / float(sigma)
        self.max_batch = int(max_batch)
        self.sigma_dtype = torch.float64 if x0.dtype == torch.float64 else torch.float32
        self.rows = 0

    def __call__(self, conds: Sequence[float]) -> list[float]:
        if len(conds) == 0:
            return []
        return self.per_sample(conds).mean(dim=1).double().cpu().tolist()

    def per_sample(self, conds: Sequence[float], keep: bool = False) -> torch.Tensor:
        """Error of every sample at every candidate: [candidates, samples].

        keep: also store the residuals ``x_hat - target`` [candidates,
        samples, values] in ``self.residuals`` (the lean search's Jacobian).
        """
        n = self.x.shape[0]
        m = len(conds)
        device = self.x.device
        cond = torch.tensor([float(c) for c in conds], dtype=self.sigma_dtype, device=device)
        total = m * n
        per_row = torch.empty(total, dtype=self.acc, device=device)
        residuals = (
            torch.empty((total, self.x[0].numel()), dtype=self.acc, device=device) if keep else None
        )
        for start in range(0, total, self.max_batch):
            idx = torch.arange(start, min(start + self.max_batch, total), device=device)
            sample = idx % n
            x = self.x[sample]
            sig = torch.full((len(idx),), self.sigma, dtype=self.sigma_dtype, device=device)
            out = self.denoise(x, sig, cond[idx // n])
            if tuple(out.shape) != tuple(x.shape):
                raise ValueError(
                    f"denoise returned shape {tuple(out.shape)} for input {tuple(x.shape)}"
                )
            self.rows += len(idx)
            xd = x.to(self.acc)
            x_hat = xd + self.ratio * (xd - out.to(self.acc))
            diff = (x_hat - self.target[sample]).reshape(len(idx), -1)
            per_row[start : start + len(idx)] = diff.pow(2).mean(dim=1)
            if residuals is not None:
                residuals[start : start + len(idx)] = diff
        if residuals is not None:
            self.residuals = residuals.reshape(m, n, -1)
        return per_row.reshape(m, n)


class _Points:
    """Evaluated candidates of one step, keyed by u, with exact pinned sigmas."""

    def __init__(self, objective, parameterization, u_ref, pinned, lo, hi):
        self.objective = objective
        self.param = parameterization
        self.u_ref = u_ref
        self.pinned = pinned  # key(u) -> exact sigma (identity, range ends)
        self.lo, self.hi = lo, hi
        self.f: dict[float, float] = {}  # key(u) -> error, candidates in range only
        self.u: dict[float, float] = {}
        self.extra: dict[float, float] = {}  # out-of-range points (error_before)
        self.samples: dict[float, torch.Tensor] = {}  # key(u) -> error per sample
        self.keep_residuals = False
        self.residuals: dict[float, torch.Tensor] = {}  # key(u) -> [samples, values]

    def sigma_of(self, u: float) -> float:
        k = _key(u)
        return self.pinned[k] if k in self.pinned else u_to_sigma(float(u), self.param)

    def clip(self, u: float) -> float:
        return min(max(u, self.lo), self.hi)

    def known(self, u: float) -> bool:
        k = _key(u)
        return k in self.f or k in self.extra

    def evaluate(self, us: Sequence[float]) -> None:
        """One batched round for the not yet evaluated points."""
        todo: dict[float, float] = {}
        for u in us:
            k = _key(u)
            if k not in self.f and k not in self.extra and k not in todo:
                todo[k] = float(u)
        if not todo:
            return
        keep = self.keep_residuals
        rows = self.objective.per_sample([self.sigma_of(u) for u in todo.values()], keep)
        errs = rows.mean(dim=1).double().cpu().tolist()
        for j, ((k, u), e, row) in enumerate(zip(todo.items(), errs, rows, strict=True)):
            self.samples[k] = row
            if keep:
                self.residuals[k] = self.objective.residuals[j]
            if self.lo - 1e-12 <= u <= self.hi + 1e-12:
                self.f[k], self.u[k] = e, u
            else:
                self.extra[k] = e

    def error_at(self, u: float) -> float:
        k = _key(u)
        return self.f[k] if k in self.f else self.extra[k]

    def best(self) -> float:
        """u of the lowest error; near-ties go to the point closest to u_ref."""
        fmin = min(self.f.values())
        tie = fmin + _TIE_RTOL * abs(fmin) + 1e-300
        cands = [self.u[k] for k, e in self.f.items() if e <= tie]
        return min(cands, key=lambda u: (abs(u - self.u_ref), u))

    def sorted_u(self) -> list[float]:
        return sorted(self.u.values())


def _flat(*errs: float) -> bool:
    lo, hi = min(errs), max(errs)
    return hi - lo <= _TIE_RTOL * abs(lo) + 1e-300


def _search_grid(pts: _Points, u_i: float, p: dict) -> None:
    def window(center, half, step):
        k = int(round(half / step))
        return [pts.clip(round(center + j * step, _KEY_DIGITS)) for j in range(-k, k + 1)]

    coarse = window(u_i, p["coarse_window"], p["coarse_step"])
    pts.evaluate([u_i if _key(c) == _key(u_i) else c for c in coarse])
    u_c = pts.best()
    pts.evaluate(window(u_c, p["fine_window"], p["fine_step"]))


def _vertex(a, fa, b, fb, c, fc) -> float | None:
    """Abscissa of the parabola's minimum through three points, None if not convex."""
    num = (b - a) ** 2 * (fb - fc) - (b - c) ** 2 * (fb - fa)
    den = (b - a) * (fb - fc) - (b - c) * (fb - fa)
    if not den < 0.0 and not den > 0.0:
        return None
    v = b - 0.5 * num / den
    # A maximum (concave fit) is useless for a minimum search.
    curv = ((fc - fb) / (c - b) - (fb - fa) / (b - a)) / (c - a)
    return v if curv > 0 and math.isfinite(v) else None


def _parabola(a, fa, b, fb, c, fc, x) -> float:
    """Value at x of the parabola through three points (Newton form)."""
    ab = (fb - fa) / (b - a)
    curv = ((fc - fb) / (c - b) - ab) / (c - a)
    return fa + ab * (x - a) + curv * (x - a) * (x - b)


def _search_fast(pts: _Points, u_i: float, u_warm: float, p: dict) -> None:
    d = p["initial_step"]

    # Round 1: a stencil around the warm start. u_i is evaluated anyway (it
    # gives error_before), so use it as a stencil point when it is close.
    u_w = pts.clip(u_warm)
    if abs(u_w - u_i) < 0.5 * d:
        u_w = pts.clip(u_i)
    stencil = [u_w - d, u_w, u_w + d]
    off = u_i - u_w
    if 0.5 * d <= abs(off) <= 1.5 * d:
        stencil[2 if off > 0 else 0] = u_i
    first = [pts.clip(u) for u in stencil]
    pts.evaluate([u_i, *first])
    _refine(pts, p)


def _refine(pts: _Points, p: dict) -> None:
    """Bracket expansion, then parabolic steps with golden-section fallback (Brent)."""
    d, tol, growth = p["initial_step"], p["tolerance"], p["growth"]
    lo, hi = pts.lo, pts.hi
    gold = 0.5 * (3.0 - math.sqrt(5.0))
    last_vertex = None
    moves: list[float] = []  # distance of each refinement step from the best point
    for _ in range(int(p["max_rounds"])):
        if not pts.f:
            return
        b = pts.best()
        us = pts.sorted_u()
        left = [u for u in us if u < b]
        right = [u for u in us if u > b]
        L = left[-1] if left else None
        R = right[0] if right else None
        if L is None and R is None:
            return  # a single admissible point (lo == hi)
        if L is None or R is None:
            # b is the outermost point: expand outwards, or probe the range end.
            inner = R if L is None else L
            sign = -1.0 if L is None else 1.0
            end = lo if L is None else hi
            if abs(b - end) > 1e-12:
                step = max(d, growth * abs(inner - b))
                new = pts.clip(b + sign * step)
            else:
                # Minimum at the range end unless a point within tol beats it.
                if abs(inner - b) <= tol * (1 + 1e-6):
                    return
                new = b - sign * tol
            if pts.known(new):
                return
            pts.evaluate([new])
            continue
        fL, fb, fR = pts.f[_key(L)], pts.f[_key(b)], pts.f[_key(R)]
        if R - L <= 2 * tol * (1 + 1e-6) or _flat(fL, fb, fR):
            return
        v = _vertex(L, fL, b, fb, R, fR)
        if v is not None and _parabola(L, fL, b, fb, R, fR, v) >= fb * (1 - p["ftol"]):
            return  # what is left to gain is below ftol of this step's error
        if v is not None and abs(v - b) < tol:
            converged = last_vertex is not None and abs(b - last_vertex) <= 1e-12
            if converged or R - L <= 2 * d * (1 + 1e-6):
                return
            v = None  # trust the parabola only on a narrow bracket
        if v is not None and len(moves) >= 2 and abs(v - b) > 0.5 * moves[-2]:
            # Brent's safeguard: parabolic steps must halve every two rounds,
            # else they creep along a lopsided bracket.
            v = None
        if v is None:
            # Golden-section step into the larger side of the bracket.
            v = b + gold * (R - b) if R - b > b - L else b - gold * (b - L)
            last_vertex = None
        else:
            v = min(max(v, L + 0.5 * tol), R - 0.5 * tol)
            last_vertex = v
        if pts.known(v):
            return
        moves.append(abs(v - b))
        pts.evaluate([v])


def _search_lean(
    pts: _Points, u_i: float, u_warm: float, p: dict, gain: float = 1.0
) -> tuple[float, float] | None:
    """Gauss-Newton on the residuals ``x_hat - target``: the secant through two
    points gives their derivative J in u, and ``<r, J> = 0`` (the objective's
    gradient) the next candidate, from the better point. Stops when the next
    step is below ``tolerance``, at a range end, or after ``max_points``.

    u_i is evaluated anyway (error_before), so it is the secant's first point
    even where the monotone limit excludes it as a choice: the objective is
    the same function there. Its secant spans a wide range, where the
    residuals bend, so the first step is scaled by ``gain``: what the
    previous step's first step should have been (returned as (base, step)).
    """
    d, tol = p["initial_step"], p["tolerance"]
    u_w = pts.clip(u_warm)
    if abs(u_w - u_i) < 0.5 * d:
        # No shift expected (e.g. at the training resolution): probe below u_i,
        # where a lower resolution moves the minimum.
        u_w = pts.clip(u_i - d) if u_i - d >= pts.lo else pts.clip(u_i + d)
    pts.evaluate([u_i, u_w])
    if abs(u_w - u_i) < 0.5 * tol:
        _search_fast(pts, u_i, u_warm, p)  # the range collapsed onto u_i
        return None
    prev, last = u_i, u_w
    first = None
    for _ in range(int(p["max_points"]) - 2):
        r_prev, r_last = pts.residuals[_key(prev)], pts.residuals[_key(last)]
        jac = (r_last - r_prev) / (last - prev)
        jj = float((jac * jac).sum())
        if not jj > 0:
            break  # flat: the network ignores the level here
        base = prev if pts.error_at(prev) < pts.error_at(last) else last
        step = -float((pts.residuals[_key(base)] * jac).sum()) / jj
        if first is None:
            first = (base, step)
            step *= gain
        nxt = pts.clip(base + step)
        # converged: the step is below the tolerance, or the latents cannot
        # tell its gain from noise
        done = abs(nxt - base) <= tol or (
            p["step_z"] > 0 and not _step_pays(pts.residuals[_key(base)], jac, nxt - base, p)
        )
        if done and abs(last - prev) > 3 * d:
            # A wide secant understates the slope near base: check one point
            # a stencil step away before calling it converged.
            nxt = pts.clip(base + math.copysign(d, step))
        elif done:
            break
        if pts.known(nxt):
            break
        pts.evaluate([nxt])
        prev, last = base, nxt
    return first


def _probe_back(last, u_next: float, shift_next: float, p: dict) -> float | None:
    """Where the shift drops by more than ``jump_probe`` from one step to the
    next, the previous step may have a second basin at the level the next step
    chose (the curve joins a plateau one step earlier): probe it there, and a
    stencil step above, one Gauss-Newton step from the better, all at or above
    ``u_next`` so the curve stays monotone. Returns the previous step's new u
    where it beats the old choice by ``z`` standard errors, else None."""
    pts, u_prev, u_hat_prev = last
    if (u_hat_prev - u_prev) - shift_next <= p["jump_probe"]:
        return None
    d = p["initial_step"]
    lo, hi = max(u_next, pts.lo), pts.hi
    if hi - lo <= d:
        return None
    a, b = lo, min(lo + d, hi)
    pts.evaluate([a, b])
    jac = (pts.residuals[_key(b)] - pts.residuals[_key(a)]) / (b - a)
    jj = float((jac * jac).sum())
    base = a if pts.error_at(a) < pts.error_at(b) else b
    if jj > 0:
        nxt = min(max(base - float((pts.residuals[_key(base)] * jac).sum()) / jj, lo), hi)
        pts.evaluate([nxt])
        if pts.error_at(nxt) < pts.error_at(base):
            base = nxt
    if not _significant(pts, u_hat_prev, base, p["z"]) or base == u_hat_prev:
        return None
    return base


def _restore_small(dropped, levels, out_hat, err_after, parameterization) -> None:
    """On a curve that is shifted somewhere (off the training resolution), the
    small shifts the per-step rule dropped are put back where the curve stays
    monotone: the rule guards the training resolution against noise, and there
    no step clears it."""
    n = len(out_hat)
    for i in sorted(dropped):
        pts, u_best = dropped[i]
        sig = pts.sigma_of(u_best)
        upper = out_hat[i - 1] if i > 0 else math.inf
        lower = out_hat[i + 1] if i + 1 < n else 0.0
        if lower <= sig <= upper:
            out_hat[i] = sig
            err_after[i] = pts.f[_key(u_best)]


def _step_pays(r: torch.Tensor, jac: torch.Tensor, delta: float, p: dict) -> bool:
    """Whether the Gauss-Newton model's gain of the step ``delta``, per latent
    (``-2 delta <r, J> - delta^2 <J, J>`` over the latent's values), clears
    ``step_z`` standard errors: a step the latents cannot tell from noise is
    not taken."""
    per = -(2 * delta * (r * jac) + delta**2 * jac * jac).mean(dim=1)
    if per.numel() < 2:
        return True
    return float(per.mean()) > p["step_z"] * float(per.std()) / math.sqrt(per.numel())


def _significant(pts: _Points, u_i: float, u_hat: float, z: float) -> bool:
    """Whether u_hat's gain over the identity clears z standard errors of the
    paired per-sample gain (always, where the identity is not admissible)."""
    ki, kh = _key(u_i), _key(u_hat)
    if ki == kh or ki not in pts.f:
        return True
    gain = pts.samples[ki] - pts.samples[kh]
    if gain.numel() < 2:
        return True
    se = float(gain.std()) / math.sqrt(gain.numel())
    return float(gain.mean()) > z * se


def _prior_shift(prior, sigma: float, parameterization: str) -> float:
    """The other resolution's shift at ``sigma``, in u."""
    return sigma_to_u(prior(sigma), parameterization) - sigma_to_u(sigma, parameterization)


def _predict_shift(shifts: list[float], p: dict) -> float:
    """Warm start: the last shift, extrapolated along its trend (``trend`` = 1: linear).

    Shifts drift smoothly along a schedule, so the extrapolation usually lands
    the first stencil on the minimum and saves the bracketing rounds.
    """
    if not shifts:
        return 0.0
    if len(shifts) == 1:
        return shifts[-1]
    return shifts[-1] + p["trend"] * (shifts[-1] - shifts[-2])


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
    eps = _draw_eps(x0, seed)
    with torch.no_grad():
        obj = _StepObjective(
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
    if sigma_max is None:
        sigma_max = 1.0 if parameterization == "flow" else levels[0]
    sigma_max = float(sigma_max)
    if not (sigma_max > 0 and math.isfinite(sigma_max)):
        raise ValueError(f"sigma_max must be a positive finite level, got {sigma_max}")
    if parameterization == "flow" and sigma_max > 1.0:
        raise ValueError(f"flow sigma_max must be <= 1, got {sigma_max}")

    settings = _settings(mode, search_params)
    prior = None
    if warm_start is not None and mode == "lean":
        prior = SigmaHatCurve(*warm_start, max_level=sigma_max)
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

    eps = _draw_eps(x0, seed)
    n_steps = len(levels) - 1
    out_hat: list[float] = []
    err_before: list[float] = []
    err_after: list[float] = []
    nfe = 0
    upper_sigma = sigma_max
    shifts: list[float] = []  # u_best - u per step, the warm start
    gain = 1.0  # the lean mode's first-step scale, learned step to step
    prior_shifts: list[float] = []  # warm_start's shift at each step so far
    last = None  # the lean mode's previous step: (points, u_i, u_hat)
    dropped: dict[int, tuple] = {}  # lean: steps whose small shift was not significant
    shifted = False  # lean: a significant shift beyond two stencil steps somewhere

    with torch.no_grad():
        for i in range(n_steps):
            s, s_next = levels[i], levels[i + 1]
            u_i = sigma_to_u(s, parameterization)
            hi = sigma_to_u(upper_sigma, parameterization)
            obj = _StepObjective(denoise, x0, eps, s, s_next, parameterization, max_batch)
            # The range end last: if it coincides with u_i, monotonicity wins.
            pinned = {_key(u_i): s, _key(0.0): 0.0, _key(hi): upper_sigma}
            pts = _Points(obj, parameterization, u_i, pinned, 0.0, hi)
            pts.keep_residuals = mode == "lean"
            first = None
            if mode == "grid":
                _search_grid(pts, u_i, settings)
            elif mode == "lean":
                if prior is None:
                    warm = u_i + _predict_shift(shifts, settings)
                else:
                    here = _prior_shift(prior, s, parameterization)
                    prior_shifts.append(here)
                    if not shifts:
                        warm = u_i + here
                    else:
                        # this search's last minimum, moved by the other curve's change
                        # scaled by how much larger this curve's shifts have been so far
                        own = sum(abs(x) for x in shifts)
                        other = sum(abs(x) for x in prior_shifts[:-1])
                        scale = min(max(own / other, 0.25), 4.0) if other > 0 else 1.0
                        warm = u_i + shifts[-1] + scale * (here - prior_shifts[-2])
                first = _search_lean(pts, u_i, warm, settings, gain)
            else:
                _search_fast(pts, u_i, u_i + _predict_shift(shifts, settings), settings)
            pts.evaluate([u_i])  # no-op unless u_i lay outside the allowed range
            u_best = u_hat = pts.best()
            if mode == "lean":
                small = abs(u_hat - u_i) <= 2 * settings["initial_step"]
                if small and not _significant(pts, u_i, u_hat, settings["z"]):
                    u_hat = u_i
                    dropped[i] = (pts, u_best)
                elif not small and _significant(pts, u_i, u_hat, settings["z"]):
                    shifted = True
                if first is not None and abs(first[1]) > settings["tolerance"]:
                    base, step = first
                    gain = min(max((u_best - base) / step, 0.25), 2.0)
            nfe += obj.rows
            sig_hat = pts.sigma_of(u_hat)
            out_hat.append(sig_hat)
            err_before.append(pts.error_at(u_i))
            err_after.append(pts.f[_key(u_hat)])
            shifts.append(u_best - u_i)  # the trend follows the objective's minimum
            upper_sigma = sig_hat
            if mode == "lean" and last is not None and settings["jump_probe"] > 0:
                before = last[0].objective.rows
                revised = _probe_back(last, u_hat, u_hat - u_i, settings)
                nfe += last[0].objective.rows - before
                if revised is not None:
                    out_hat[i - 1] = last[0].sigma_of(revised)
                    err_after[i - 1] = last[0].f[_key(revised)]
                    shifts[i - 1] = revised - last[1]
            last = (pts, u_i, u_hat) if mode == "lean" else None
            if progress is not None:
                progress(i + 1, n_steps)

        if shifted and settings["restore_small"] > 0:
            _restore_small(dropped, levels, out_hat, err_after, parameterization)

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

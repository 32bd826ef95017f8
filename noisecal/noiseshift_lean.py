"""The lean mode of the NoiseShift search (noiseshift_search.py's module
docstring): Gauss-Newton on the one-step residuals, the significance rule for
small shifts, the probe for a second basin one step back, and the state the
mode carries from step to step."""

from __future__ import annotations

import math

import torch

from .levels import sigma_to_u
from .noiseshift_grid_fast import StepSearch, predict_shift, search_fast
from .noiseshift_points import Points, key


def _search_lean(
    pts: Points, u_i: float, u_warm: float, p: dict, gain: float = 1.0
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
        search_fast(pts, u_i, u_warm, p)  # the range collapsed onto u_i
        return None
    prev, last = u_i, u_w
    first = None
    for _ in range(int(p["max_points"]) - 2):
        r_prev, r_last = pts.residuals[key(prev)], pts.residuals[key(last)]
        jac = (r_last - r_prev) / (last - prev)
        jj = float((jac * jac).sum())
        if not jj > 0:
            break  # flat: the network ignores the level here
        base = prev if pts.error_at(prev) < pts.error_at(last) else last
        step = -float((pts.residuals[key(base)] * jac).sum()) / jj
        if first is None:
            first = (base, step)
            step *= gain
        nxt = pts.clip(base + step)
        # converged: the step is below the tolerance, or the latents cannot
        # tell its gain from noise
        done = abs(nxt - base) <= tol or (
            p["step_z"] > 0 and not _step_pays(pts.residuals[key(base)], jac, nxt - base, p)
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
    jac = (pts.residuals[key(b)] - pts.residuals[key(a)]) / (b - a)
    jj = float((jac * jac).sum())
    base = a if pts.error_at(a) < pts.error_at(b) else b
    if jj > 0:
        nxt = min(max(base - float((pts.residuals[key(base)] * jac).sum()) / jj, lo), hi)
        pts.evaluate([nxt])
        if pts.error_at(nxt) < pts.error_at(base):
            base = nxt
    if not _significant(pts, u_hat_prev, base, p["z"]) or base == u_hat_prev:
        return None
    return base


def _restore_small(dropped, out_hat, err_after) -> None:
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
            err_after[i] = pts.f[key(u_best)]


def _step_pays(r: torch.Tensor, jac: torch.Tensor, delta: float, p: dict) -> bool:
    """Whether the Gauss-Newton model's gain of the step ``delta``, per latent
    (``-2 delta <r, J> - delta^2 <J, J>`` over the latent's values), clears
    ``step_z`` standard errors: a step the latents cannot tell from noise is
    not taken."""
    per = -(2 * delta * (r * jac) + delta**2 * jac * jac).mean(dim=1)
    if per.numel() < 2:
        return True
    return float(per.mean()) > p["step_z"] * float(per.std()) / math.sqrt(per.numel())


def _significant(pts: Points, u_i: float, u_hat: float, z: float) -> bool:
    """Whether u_hat's gain over the identity clears z standard errors of the
    paired per-sample gain (always, where the identity is not admissible)."""
    ki, kh = key(u_i), key(u_hat)
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


class LeanSearch(StepSearch):
    """The lean mode and what it carries from step to step: the first-step scale
    (`gain`), the other resolution's shifts (`prior`, a SigmaHatCurve or None),
    the previous step (for the probe back), and the small shifts it dropped."""

    keep_residuals = True

    def __init__(self, settings: dict, prior, parameterization: str):
        super().__init__(settings)
        self.prior, self.parameterization = prior, parameterization
        self.gain = 1.0  # the first-step scale, learned step to step
        self.prior_shifts: list[float] = []  # the prior's shift at each step so far
        self.first = None  # this step's first Gauss-Newton step: (base, step)
        self.last = None  # the previous step: (points, u_i, u_hat)
        self.dropped: dict[int, tuple] = {}  # steps whose small shift was not significant
        self.shifted = False  # a significant shift beyond two stencil steps somewhere

    def search(self, pts, u_i, sigma, shifts):
        self.first = _search_lean(pts, u_i, self._warm(u_i, sigma, shifts), self.p, self.gain)

    def _warm(self, u_i: float, sigma: float, shifts: list[float]) -> float:
        if self.prior is None:
            return u_i + predict_shift(shifts, self.p)
        here = _prior_shift(self.prior, sigma, self.parameterization)
        self.prior_shifts.append(here)
        if not shifts:
            return u_i + here
        # this search's last minimum, moved by the other curve's change
        # scaled by how much larger this curve's shifts have been so far
        own = sum(abs(x) for x in shifts)
        other = sum(abs(x) for x in self.prior_shifts[:-1])
        scale = min(max(own / other, 0.25), 4.0) if other > 0 else 1.0
        return u_i + shifts[-1] + scale * (here - self.prior_shifts[-2])

    def choose(self, i, pts, u_i, u_best):
        u_hat = u_best
        small = abs(u_hat - u_i) <= 2 * self.p["initial_step"]
        if small and not _significant(pts, u_i, u_hat, self.p["z"]):
            u_hat = u_i
            self.dropped[i] = (pts, u_best)
        elif not small and _significant(pts, u_i, u_hat, self.p["z"]):
            self.shifted = True
        if self.first is not None and abs(self.first[1]) > self.p["tolerance"]:
            base, step = self.first
            self.gain = min(max((u_best - base) / step, 0.25), 2.0)
        return u_hat

    def revise(self, i, pts, u_i, u_hat, out_hat, err_after, shifts):
        rows, last = 0, self.last
        if last is not None and self.p["jump_probe"] > 0:
            before = last[0].objective.rows
            revised = _probe_back(last, u_hat, u_hat - u_i, self.p)
            rows = last[0].objective.rows - before
            if revised is not None:
                out_hat[i - 1] = last[0].sigma_of(revised)
                err_after[i - 1] = last[0].f[key(revised)]
                shifts[i - 1] = revised - last[1]
        self.last = (pts, u_i, u_hat)
        return rows

    def finish(self, out_hat, err_after):
        if self.shifted and self.p["restore_small"] > 0:
            _restore_small(self.dropped, out_hat, err_after)

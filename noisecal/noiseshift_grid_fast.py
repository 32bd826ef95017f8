"""The grid and fast modes of the NoiseShift search, one step at a time
(noiseshift_search.py's module docstring describes both)."""

from __future__ import annotations

import math

from .noiseshift_points import KEY_DIGITS, Points, flat, key


def search_grid(pts: Points, u_i: float, p: dict) -> None:
    def window(center, half, step):
        k = int(round(half / step))
        return [pts.clip(round(center + j * step, KEY_DIGITS)) for j in range(-k, k + 1)]

    coarse = window(u_i, p["coarse_window"], p["coarse_step"])
    pts.evaluate([u_i if key(c) == key(u_i) else c for c in coarse])
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


def search_fast(pts: Points, u_i: float, u_warm: float, p: dict) -> None:
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


def _refine(pts: Points, p: dict) -> None:
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
        fL, fb, fR = pts.f[key(L)], pts.f[key(b)], pts.f[key(R)]
        if R - L <= 2 * tol * (1 + 1e-6) or flat(fL, fb, fR):
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


def predict_shift(shifts: list[float], p: dict) -> float:
    """Warm start: the last shift, extrapolated along its trend (``trend`` = 1: linear).

    Shifts drift smoothly along a schedule, so the extrapolation usually lands
    the first stencil on the minimum and saves the bracketing rounds.
    """
    if not shifts:
        return 0.0
    if len(shifts) == 1:
        return shifts[-1]
    return shifts[-1] + p["trend"] * (shifts[-1] - shifts[-2])


class StepSearch:
    """One mode's search, step by step: `search` evaluates candidates for a step,
    `choose` picks its u from the best one, `revise` may change earlier steps
    (returns the rows it spent) and `finish` the whole curve. The grid and fast
    modes carry nothing from step to step but the shifts so far."""

    keep_residuals = False

    def __init__(self, settings: dict):
        self.p = settings

    def search(self, pts: Points, u_i: float, sigma: float, shifts: list[float]) -> None:
        raise NotImplementedError

    def choose(self, i: int, pts: Points, u_i: float, u_best: float) -> float:
        return u_best

    def revise(self, i, pts, u_i, u_hat, out_hat, err_after, shifts) -> int:
        return 0

    def finish(self, out_hat: list[float], err_after: list[float]) -> None:
        pass


class GridSearch(StepSearch):
    def search(self, pts, u_i, sigma, shifts):
        search_grid(pts, u_i, self.p)


class FastSearch(StepSearch):
    def search(self, pts, u_i, sigma, shifts):
        search_fast(pts, u_i, u_i + predict_shift(shifts, self.p), self.p)

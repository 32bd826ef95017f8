"""One step of the Noise Level Correction search: the distance after one
sampler step for candidate r values, batched, and the two ways of choosing the
candidates (the secant search, the fixed rounds); see correction_search.py."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .correction_spectrum import spectral_distance
from .spectra import bin_mean

R_LIMIT = 0.5  # the paper's noise mis-scaling range, eta ~ U(-0.5, 0.5)
# search rounds: (half width, points); each centred on the best so far
ROUNDS = ((R_LIMIT, 9), (0.125, 9), (0.03125, 5), (0.0078125, 5))
CANDIDATES_PER_STEP = sum(points for _, points in ROUNDS) - (len(ROUNDS) - 1)
# the default search: r = 0, a probe, then candidates predicted from the states so far
SECANT_EVALUATIONS = 4  # candidates a step, r = 0 included
PROBE_MIN = 0.01  # a previous r smaller than this is no probe: PROBE_DEFAULT instead
PROBE_DEFAULT = 0.1
PREDICT_GRID = 401  # r values the interpolated states are scored at (no network call)
_TIE_RTOL = 1e-9
# A step keeps r = 0 unless the best r lowers its distance by this fraction:
# the target spectrum is estimated from a few latents, and smaller gains were
# mostly fits to that estimate's noise (they hurt an already exact sampler).
MIN_GAIN = 0.05


class CorrectionStep:
    """Distance after one sampler step from ``x`` for candidate r values, batched.

    Euler: the candidate corrects the step's one evaluation. Heun: each level's
    r serves two evaluations, this step's second one (at sigma_next) and the
    next step's first, as the sampling-time table does; so with
    ``predictor_r`` set the first evaluation uses that fixed r (chosen by the
    step before) and the candidate corrects the second. Without it (the first
    step) the candidate corrects both.
    """

    def __init__(
        self,
        denoise,
        x,
        sigma,
        sigma_next,
        target,
        spectrum,
        sigma_max,
        max_batch,
        sampler,
        noise_floor,
        predictor_r=None,
        keep_transforms=False,
    ):
        self.denoise, self.x, self.sampler = denoise, x, sampler
        self.keep_transforms = keep_transforms  # the secant search interpolates them
        self.predictor_r = predictor_r
        self._fixed_slope = None
        self.sigma, self.sigma_next = float(sigma), float(sigma_next)
        self.target, self.spectrum = target, spectrum
        self.sigma_max, self.max_batch = float(sigma_max), int(max_batch)
        self.noise_floor = float(noise_floor)
        self.errors: dict[float, float] = {}
        self.states: dict[float, torch.Tensor] = {}
        self.fourier: dict[float, torch.Tensor] = {}  # of each evaluated next state
        self.rows = 0

    def effective_r(self, r: float) -> float:
        """r within the search limit, with sigma_hat kept within (0, sigma_max]."""
        r = min(max(r, -R_LIMIT), R_LIMIT)
        searched_second = self.predictor_r is not None and self.sigma_next > 0
        level = self.sigma_next if searched_second else self.sigma
        hat = min(max(level * (1 + r), level * 1e-3), max(self.sigma_max, level))
        return round(hat / level - 1, 12)

    def _denoise(self, states: dict, level: float) -> dict:
        """Denoised estimate of each candidate's states at level * (1 + r), batched."""
        n = self.x.shape[0]
        xs = torch.cat([states[r] for r in states])
        hats = torch.tensor([level * (1 + r) for r in states for _ in range(n)])
        denoised = batched(self.denoise, xs, hats.to(torch.float64), self.max_batch)
        self.rows += xs.shape[0]
        return dict(zip(states, denoised.reshape(len(states), *self.x.shape), strict=True))

    def evaluate(self, rs: Sequence[float]) -> None:
        todo = sorted({self.effective_r(r) for r in rs} - set(self.errors))
        if not todo:
            return
        xd = self.x.to(torch.float64)
        step = self.sigma_next - self.sigma
        if self.predictor_r is None:
            d = {
                r: (xd - den) / self.sigma
                for r, den in self._denoise(dict.fromkeys(todo, xd), self.sigma).items()
            }
        else:  # the same first evaluation for every candidate: run it once
            if self._fixed_slope is None:
                (den,) = self._denoise({self.predictor_r: xd}, self.sigma).values()
                self._fixed_slope = (xd - den) / self.sigma
            d = dict.fromkeys(todo, self._fixed_slope)
        nxt = {r: xd + step * d[r] for r in todo}
        if self.sampler == "heun" and self.sigma_next > 0:
            # second evaluation at the next level, corrected by the same r
            den2 = self._denoise(nxt, self.sigma_next)
            nxt = {r: xd + step * (d[r] + (nxt[r] - den2[r]) / self.sigma_next) / 2 for r in todo}
        for r in todo:
            transform = torch.fft.fft2(nxt[r], norm="ortho")
            self.errors[r] = spectral_distance(
                self.spectrum.power_of(transform), self.target, self.spectrum.weights
            )
            if self.keep_transforms:
                self.fourier[r] = transform
            self.states[r] = nxt[r]
            # keep only the states that can still be chosen (memory: one batch each)
            keep = {0.0, min(self.errors, key=lambda v: (self.errors[v], abs(v)))}
            self.states = {v: state for v, state in self.states.items() if v in keep}

    def best(self) -> float:
        base = self.errors[0.0]
        r_best = min(self.errors, key=lambda r: (self.errors[r], abs(r)))
        needed = max(max(MIN_GAIN, _TIE_RTOL) * abs(base), self.noise_floor)
        if base - self.errors[r_best] <= needed:
            return 0.0  # a gain this small may be fitting sampling noise: leave the level
        return r_best


def probe_from(r_previous: float) -> float:
    """The second point a step's search evaluates (besides r = 0): the previous
    step's r, where the table is smooth, or a small step where it was 0."""
    return r_previous if abs(r_previous) >= PROBE_MIN else PROBE_DEFAULT


def _predicted_best(step: CorrectionStep, rs: list[float]) -> float:
    """The r whose next state, interpolated in r through the states evaluated at
    ``rs`` (a line through two, a parabola through three), lands closest to the
    target; no network call. The batch power of an interpolated state is a
    quadratic form in the interpolation weights, so the per-bin cross spectra of
    the evaluated states give it exactly on a fine grid of r."""
    grid = torch.linspace(-R_LIMIT, R_LIMIT, PREDICT_GRID, dtype=torch.float64)
    nodes = torch.tensor(rs, dtype=torch.float64)
    weights = torch.ones(len(grid), len(rs), dtype=torch.float64)  # Lagrange basis
    for j in range(len(rs)):
        for k in range(len(rs)):
            if k != j:
                weights[:, j] *= (grid - nodes[k]) / (nodes[j] - nodes[k])
    spec = step.spectrum
    power = torch.zeros(len(grid), *step.target.shape, dtype=torch.float64)
    for j, a in enumerate(rs):
        for k, b in enumerate(rs[j:], start=j):
            cross = (step.fourier[a] * step.fourier[b].conj()).real.mean(dim=0)
            cross = bin_mean(cross, spec.index, spec.counts)
            factor = (weights[:, j] * weights[:, k] * (1 if j == k else 2)).reshape(-1, 1, 1)
            power += factor * cross
    diff = (power.clamp(min=0).sqrt() - step.target.clamp(min=0).sqrt()).square()
    distance = (diff * spec.weights).sum(dim=-1).mean(dim=-1)
    return float(grid[int(torch.argmin(distance))])


def secant_search(step: CorrectionStep, probe: float, evaluations: int) -> None:
    """Evaluate r = 0 and `probe`, then each next candidate where the states
    interpolated through the points so far predict the best landing (at most
    `evaluations` candidates a step, the last two or three points kept for the
    interpolation: the curve is smooth in r but not a line over the whole range)."""
    step.evaluate([0.0, probe])
    while len(step.errors) < evaluations:
        # the two or three evaluated points nearest the best so far
        best = min(step.errors, key=lambda v: (step.errors[v], abs(v)))
        near = sorted(step.errors, key=lambda v: abs(v - best))[:3]
        nxt = step.effective_r(_predicted_best(step, near))
        if nxt in step.errors:
            break  # the prediction is a point already evaluated: converged
        step.evaluate([nxt])


def rounds_search(step: CorrectionStep) -> None:
    """The fixed rounds: a grid of r around the best so far, narrower each round."""
    centre = 0.0
    for half, points in ROUNDS:
        step.evaluate([centre + half * float(k) for k in np.linspace(-1, 1, points)])
        centre = step.best()


def batched(denoise, xs: torch.Tensor, hats: torch.Tensor, max_batch: int) -> torch.Tensor:
    """denoise over rows of ``xs`` at levels ``hats``, max_batch rows a call, float64."""
    outs = []
    for start in range(0, xs.shape[0], max_batch):
        xb = xs[start : start + max_batch]
        out = denoise(xb, hats[start : start + max_batch])
        if tuple(out.shape) != tuple(xb.shape):
            raise ValueError(f"denoise returned {tuple(out.shape)} for {tuple(xb.shape)}")
        outs.append(out.to(xs.device, torch.float64))
    return torch.cat(outs)

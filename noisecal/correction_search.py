"""Noise Level Correction calibration: the table r(sigma) along sampling trajectories.

Correction source ``table`` (zero extra network evaluations when sampling):
r(sigma) calibrated per checkpoint and resolution, stored in the calibration
file. Which way r should point is decided by what it does, not by how noisy
the state looks: a naive "apparent noise level" (the level whose marginal
spectrum best matches the state) points the wrong way and made FD worse on
the exact testbed. The calibration here is greedy along sampling
trajectories: from pure noise, deterministic Euler over the calibration
schedule; at every step the r is kept whose step lands the batch's power
spectrum (per channel, radially binned, compared in amplitude as FD is)
closest to the true marginal at the next level, ``(1 - s')^2 S_data + s'^2``
for flow models and ``S_data + s'^2`` for eps/v models, S_data measured from
the calibration latents. The next step starts from the corrected state, so
the table holds r averaged over the trajectories the sampler really visits.
The trajectories inherit their noise's own spectral fluctuation, so the
target is scaled by it; and a step keeps r = 0 unless its gain clears both
MIN_GAIN and the distance the target's estimation error alone adds (smaller
gains fitted that error and made an already accurate sampler worse).
Search per step (``search="secant"``, the default): r = 0, a probe at the
previous step's r, then each next candidate where the states evaluated so far,
interpolated in r, predict the best landing (the batch power of an
interpolated state is a quadratic form of their cross spectra: no network call
to predict). Cost: ``SECANT_EVALUATIONS`` (4) network evaluations per latent
per step, twice that for Heun; the fixed rounds (``search="rounds"``) cost
``CANDIDATES_PER_STEP`` (25) for the same quality (bench/correction_search.py).

The table is calibrated for one sampler family (Euler, or Heun for second
order) at one step count: it includes the discretization error of that
schedule, so it fits that step count best (docs/results-correction.md
measures other step counts).

No ``online`` source ships: the obvious per-sample estimate, the apparent
noise level of the state, is the naive estimate above; on the testbed it
helped where the model is far off (N = M/2, "image") and hurt elsewhere, and
never beat the table (docs/results-correction.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .correction_table import CorrectionTable
from .levels import FAMILIES, check_descending, check_parameterization
from .spectra import bin_mean, fourier_power, radial_bins

__all__ = [
    "CorrectionResult",
    "calibrate_correction",
    "marginal_power",
    "spectral_distance",
    "CORRECTION_METHOD",
]

CORRECTION_METHOD = "nlc-marginal-spectrum"
R_LIMIT = 0.5  # the paper's noise mis-scaling range, eta ~ U(-0.5, 0.5)
# search rounds: (half width, points); each centred on the best so far
_ROUNDS = ((R_LIMIT, 9), (0.125, 9), (0.03125, 5), (0.0078125, 5))
CANDIDATES_PER_STEP = sum(points for _, points in _ROUNDS) - (len(_ROUNDS) - 1)
# the default search: r = 0, a probe, then candidates predicted from the states so far
SEARCHES = ("secant", "rounds")
SECANT_EVALUATIONS = 4  # candidates a step, r = 0 included
PROBE_MIN = 0.01  # a previous r smaller than this is no probe: PROBE_DEFAULT instead
PROBE_DEFAULT = 0.1
PREDICT_GRID = 401  # r values the interpolated states are scored at (no network call)
_TIE_RTOL = 1e-9
# A step keeps r = 0 unless the best r lowers its distance by this fraction:
# the target spectrum is estimated from a few latents, and smaller gains were
# mostly fits to that estimate's noise (they hurt an already exact sampler).
MIN_GAIN = 0.05
# ... and by more than this many times the distance the target's estimation
# error alone would add (target_noise)
NOISE_FLOOR_FACTOR = 1.0
# strengths of the greedy table whose whole trajectories are compared at the end
VERIFY_STRENGTHS = (0.0, 0.5, 1.0)
# the step the table is calibrated for: Euler (DDIM-NLC) or Heun (second order)
SAMPLERS = ("euler", "heun")

# denoise(x [rows, ...], sigma_hat [rows]) -> denoised [rows, ...]: the model
# evaluated at sigma_hat for input scaling, conditioning and denoised alike
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def marginal_power(data_power: torch.Tensor, sigma: float, parameterization: str) -> torch.Tensor:
    """Expected power of a true state at ``sigma``: data and unit-variance noise mixed."""
    check_parameterization(parameterization, FAMILIES)
    if parameterization == "flow":
        return (1.0 - sigma) ** 2 * data_power + sigma**2
    return data_power + sigma**2


class _Spectrum:
    """Per-channel, radially binned power of a batch (spectra.py's bins and DFT)."""

    def __init__(self, h: int, w: int, device):
        index, _, counts = radial_bins(h, w)
        self.index = index.reshape(-1).to(device)
        self.counts = counts.to(device, torch.float64)
        self.weights = self.counts / self.counts.sum()

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """[C, F] mean power over the batch ``x`` [n, C, h, w]."""
        return bin_mean(fourier_power(x).mean(dim=0), self.index, self.counts)

    def power_of(self, transform: torch.Tensor) -> torch.Tensor:
        """`power` of a batch from its orthonormal 2D DFT (one transform serves both)."""
        return bin_mean(transform.abs().square().mean(dim=0), self.index, self.counts)


def target_noise(data_weight: float, data_power, target, counts, samples: int, weights) -> float:
    """Expected spectral_distance that the target's own estimation error adds.

    The target's data part ``data_weight * S`` is estimated from ``samples``
    latents; a bin of m coefficients (m / 2 independent: real input) gives S
    with variance S^2 / (samples * m / 2), so sqrt(target) varies by
    ``data_weight^2 S^2 / (4 target samples m / 2)``. A gain below this is
    indistinguishable from fitting that error.
    """
    dof = samples * counts.clamp(min=2) / 2
    var = (data_weight * data_power).square() / (4 * target.clamp(min=1e-30) * dof)
    return float((var * weights).sum(dim=-1).mean())


def _target(level, data_power, noise_power, parameterization, spectrum, samples):
    """The spectrum a batch at ``level`` should have (scaled by its own noise's
    fluctuation) and the gain needed to beat the target's estimation noise."""
    target = marginal_power(data_power, level, parameterization) * noise_power
    data_weight = (1.0 - level) ** 2 if parameterization == "flow" else 1.0
    floor = NOISE_FLOOR_FACTOR * target_noise(
        data_weight, data_power, target, spectrum.counts, samples, spectrum.weights
    )
    return target, floor


def spectral_distance(power: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> float:
    """FD-like distance of two [C, F] spectra: mean over coefficients of the squared
    amplitude difference (``weights``: each bin's share of the coefficients)."""
    diff = (power.clamp(min=0).sqrt() - target.clamp(min=0).sqrt()).square()
    return float((diff * weights).sum(dim=-1).mean())


@dataclass
class CorrectionResult:
    """Outcome of a correction calibration; lists are per step, noisiest first."""

    sigmas: list[float]
    r: list[float]
    error_before: list[float]
    error_after: list[float]
    nfe: int
    wall_time_s: float
    params: dict = field(default_factory=dict)

    def table(self) -> CorrectionTable:
        return CorrectionTable(self.sigmas, self.r)

    def to_record(self) -> dict:
        """The calibration file's ``correction`` object."""
        return {
            "method": CORRECTION_METHOD,
            "sampler": self.params.get("sampler", "euler"),
            "sigmas": list(self.sigmas),
            "r": list(self.r),
            "error_before": list(self.error_before),
            "error_after": list(self.error_after),
            "network_evaluations": int(self.nfe),
            "params": dict(self.params),
        }

    def to_dict(self) -> dict:
        return asdict(self)


def _start_state(noise: torch.Tensor, sigma0: float, parameterization: str, sigma_max: float):
    # ComfyUI's noise scaling for an empty latent: sigma * noise for flow; eps/v
    # models starting at their top level scale by sqrt(1 + sigma^2)
    if parameterization == "ve" and sigma0 >= sigma_max * (1 - 1e-5):
        return noise * math.sqrt(1.0 + sigma0**2)
    return noise * sigma0


class _Step:
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
        denoised = _batched(self.denoise, xs, hats.to(torch.float64), self.max_batch)
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


def _predicted_best(step: _Step, rs: list[float]) -> float:
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


def _secant_search(step: _Step, probe: float, evaluations: int) -> None:
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


def _batched(denoise, xs: torch.Tensor, hats: torch.Tensor, max_batch: int) -> torch.Tensor:
    """denoise over rows of ``xs`` at levels ``hats``, max_batch rows a call, float64."""
    outs = []
    for start in range(0, xs.shape[0], max_batch):
        xb = xs[start : start + max_batch]
        out = denoise(xb, hats[start : start + max_batch])
        if tuple(out.shape) != tuple(xb.shape):
            raise ValueError(f"denoise returned {tuple(out.shape)} for {tuple(xb.shape)}")
        outs.append(out.to(xs.device, torch.float64))
    return torch.cat(outs)


def _sample(denoise, x, levels, r, sampler, max_batch):
    """Final state of ``sampler`` over ``levels`` with r[k] correcting level k; rows used."""
    rows = 0

    def denoised(states, level, r_level):
        nonlocal rows
        rows += states.shape[0]
        hats = torch.full((states.shape[0],), level * (1 + r_level), dtype=torch.float64)
        return _batched(denoise, states, hats, max_batch)

    for k, (a, b) in enumerate(zip(levels, levels[1:], strict=False)):
        if a <= 0:
            break
        d = (x - denoised(x, a, r[k])) / a
        nxt = x + (b - a) * d
        if sampler == "heun" and b > 0:
            nxt = x + (b - a) * (d + (nxt - denoised(nxt, b, r[k + 1])) / b) / 2
        x = nxt
    return x, rows


def _verify(
    denoise,
    start,
    levels,
    r,
    sampler,
    max_batch,
    spectrum,
    data_power,
    noise_power,
    parameterization,
    samples,
    greedy_end=None,
):
    """The strength of the greedy table to keep: (strength, distances, rows used);
    `greedy_end`, the greedy search's own last state, is strength 1's end.

    The greedy steps each land closer to their next level, which need not add
    up to a better sample (few-step trajectories can cancel errors): the table
    is kept only at the strength whose whole trajectory ends closest to the
    data, by more than a step's gain rule asks.
    """
    final, floor = _target(levels[-1], data_power, noise_power, parameterization, spectrum, samples)
    distances, rows = {}, 0
    for strength in VERIFY_STRENGTHS:
        if strength == 1.0 and greedy_end is not None:
            end = greedy_end
        else:
            end, used = _sample(
                denoise, start, levels, [strength * v for v in r], sampler, max_batch
            )
            rows += used
        distances[strength] = spectral_distance(spectrum.power(end), final, spectrum.weights)
    plain = distances[0.0]
    chosen = min(distances, key=lambda k: (distances[k], k))
    if plain - distances[chosen] <= max(MIN_GAIN * plain, floor):
        chosen = 0.0
    return chosen, distances, rows


def calibrate_correction(
    denoise: Denoise,
    x0: torch.Tensor,
    sigmas,
    *,
    parameterization: str = "flow",
    seed: int = 0,
    max_batch: int = 64,
    progress: Callable[[int, int], None] | None = None,
    sigma_max: float | None = None,
    sampler: str = "euler",
    search: str = "secant",
    evaluations: int = SECANT_EVALUATIONS,
    verify: bool = True,
) -> CorrectionResult:
    """Calibrate the r(sigma) table along Euler trajectories over ``sigmas``.

    ``x0``: clean calibration latents [n, C, h, w] in the model's space; they
    give the data spectrum, and n trajectories start from noise drawn with
    ``seed``. ``sigma_max``: the model's largest level (default: 1 for flow,
    ``sigmas[0]`` for ve). ``progress(done, total)`` runs after each step; an
    exception from it or from ``denoise`` propagates (a cancel) and leaves no state.
    """
    started = time.perf_counter()
    check_parameterization(parameterization, FAMILIES)
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a positive int, got {max_batch!r}")
    if not isinstance(x0, torch.Tensor) or x0.dim() != 4 or x0.shape[0] < 1:
        raise ValueError("x0 must be a tensor [n, C, h, w] with n >= 1 calibration latents")
    levels = [float(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1)]
    if len(levels) < 2 or any(not math.isfinite(s) for s in levels):
        raise ValueError("sigmas needs at least two finite levels (one step)")
    check_descending(levels)
    if levels[-1] < 0 or levels[-2] <= 0:
        raise ValueError("sigmas must be > 0 except a final 0")
    if sigma_max is None:
        sigma_max = 1.0 if parameterization == "flow" else levels[0]
    spectrum = _Spectrum(x0.shape[-2], x0.shape[-1], x0.device)
    data_power = spectrum.power(x0)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64).to(x0.device)
    start = _start_state(noise, levels[0], parameterization, float(sigma_max))
    # The trajectories inherit the drawn noise's own spectral fluctuation
    # (exactly so for a linear denoiser); scaling the target by it keeps the
    # search from "correcting" the seed instead of the level.
    noise_power = spectrum.power(noise)
    steps = [(a, b) for a, b in zip(levels, levels[1:], strict=False) if a > 0]
    heun = sampler == "heun"

    def in_model_dtype(xb, sigma_hat):
        return denoise(xb.to(x0.dtype), sigma_hat)

    x, r_out, before, after, nfe = start, [], [], [], 0
    with torch.no_grad():
        for i, (sigma, sigma_next) in enumerate(steps):
            target, floor = _target(
                sigma_next, data_power, noise_power, parameterization, spectrum, x0.shape[0]
            )
            predictor_r = r_out[i] if heun and i > 0 else None
            step = _Step(
                in_model_dtype,
                x,
                sigma,
                sigma_next,
                target,
                spectrum,
                sigma_max,
                max_batch,
                sampler,
                floor,
                predictor_r,
                keep_transforms=search == "secant",
            )
            free = not (heun and sigma_next == 0 and i > 0)  # Heun ends with an Euler step
            if not free:
                step.evaluate([0.0])
            elif search == "rounds":
                centre = 0.0
                for half, points in _ROUNDS:
                    step.evaluate([centre + half * float(k) for k in np.linspace(-1, 1, points)])
                    centre = step.best()
            else:
                _secant_search(step, probe_from(r_out[-1] if r_out else 0.0), evaluations)
            r = step.best()
            if not heun:
                r_out.append(float(r))
            elif i == 0:  # the first step's candidate corrected both of its levels
                r_out += [float(r), float(r)] if sigma_next > 0 else [float(r)]
            elif sigma_next > 0:
                r_out.append(float(r))  # the level sigma_next, also the next step's first
            before.append(float(step.errors[0.0]))
            after.append(float(step.errors[r]))
            x = step.states[r]
            nfe += step.rows
            if progress is not None:
                progress(i + 1, len(steps))
        chosen, verified = 1.0, {}
        if verify:  # off where the held-out check tries the strengths on other latents
            chosen, verified, rows = _verify(
                in_model_dtype,
                start,
                levels,
                r_out,
                sampler,
                max_batch,
                spectrum,
                data_power,
                noise_power,
                parameterization,
                x0.shape[0],
                greedy_end=x,
            )
            nfe += rows
        r_out = [chosen * v for v in r_out]
    return CorrectionResult(
        sigmas=[s for s, _ in steps],
        r=r_out,
        error_before=before,
        error_after=after,
        nfe=nfe,
        wall_time_s=time.perf_counter() - started,
        params={
            "seed": int(seed),
            "trajectories": int(x0.shape[0]),
            "r_limit": R_LIMIT,
            "search": search,
            "candidates_per_step": CANDIDATES_PER_STEP if search == "rounds" else evaluations,
            "verified": bool(verify),
            "sampler": sampler,
            "strength": chosen,
            "final_distance": {str(k): v for k, v in verified.items()},
        },
    )

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from .correction_spectrum import Spectrum, marginal_power, spectral_distance, step_target
from .correction_step import (
    CANDIDATES_PER_STEP,
    MIN_GAIN,
    R_LIMIT,
    SECANT_EVALUATIONS,
    CorrectionStep,
    batched,
    probe_from,
    rounds_search,
    secant_search,
)
from .correction_table import CorrectionTable
from .levels import FAMILIES, check_descending, check_parameterization

__all__ = [
    "CorrectionResult",
    "calibrate_correction",
    "marginal_power",
    "spectral_distance",
    "CORRECTION_METHOD",
]

CORRECTION_METHOD = "nlc-marginal-spectrum"
SEARCHES = ("secant", "rounds")
# strengths of the greedy table whose whole trajectories are compared at the end
VERIFY_STRENGTHS = (0.0, 0.5, 1.0)
# the step the table is calibrated for: Euler (DDIM-NLC) or Heun (second order)
SAMPLERS = ("euler", "heun")

# denoise(x [rows, ...], sigma_hat [rows]) -> denoised [rows, ...]: the model
# evaluated at sigma_hat for input scaling, conditioning and denoised alike
Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


def _sample(denoise, x, levels, r, sampler, max_batch):
    """Final state of ``sampler`` over ``levels`` with r[k] correcting level k; rows used."""
    rows = 0

    def denoised(states, level, r_level):
        nonlocal rows
        rows += states.shape[0]
        hats = torch.full((states.shape[0],), level * (1 + r_level), dtype=torch.float64)
        return batched(denoise, states, hats, max_batch)

    for k, (a, b) in enumerate(zip(levels, levels[1:], strict=False)):
        if a <= 0:
            break
        d = (x - denoised(x, a, r[k])) / a
        nxt = x + (b - a) * d
        if sampler == "heun" and b > 0:
            nxt = x + (b - a) * (d + (nxt - denoised(nxt, b, r[k + 1])) / b) / 2
        x = nxt
    return x, rows


@dataclass
class _Run:
    """What every step of one calibration shares."""

    denoise: Denoise
    spectrum: Spectrum
    data_power: torch.Tensor
    noise_power: torch.Tensor
    parameterization: str
    samples: int
    sigma_max: float
    max_batch: int
    sampler: str
    search: str
    evaluations: int


def _verify(run: _Run, start, levels, r, greedy_end=None):
    """The strength of the greedy table to keep: (strength, distances, rows used);
    `greedy_end`, the greedy search's own last state, is strength 1's end.

    The greedy steps each land closer to their next level, which need not add
    up to a better sample (few-step trajectories can cancel errors): the table
    is kept only at the strength whose whole trajectory ends closest to the
    data, by more than a step's gain rule asks.
    """
    spectrum = run.spectrum
    final, floor = step_target(
        levels[-1], run.data_power, run.noise_power, run.parameterization, spectrum, run.samples
    )
    distances, rows = {}, 0
    for strength in VERIFY_STRENGTHS:
        if strength == 1.0 and greedy_end is not None:
            end = greedy_end
        else:
            end, used = _sample(
                run.denoise, start, levels, [strength * v for v in r], run.sampler, run.max_batch
            )
            rows += used
        distances[strength] = spectral_distance(spectrum.power(end), final, spectrum.weights)
    plain = distances[0.0]
    chosen = min(distances, key=lambda k: (distances[k], k))
    if plain - distances[chosen] <= max(MIN_GAIN * plain, floor):
        chosen = 0.0
    return chosen, distances, rows


def _checked_levels(sigmas, sampler, search, max_batch, x0) -> list[float]:
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
    return levels


def _greedy_table(run: _Run, start, steps, progress):
    """Step by step from `start`, the r whose step lands closest to the next
    level's spectrum: (r per level, distances before and after, last state, rows)."""
    heun = run.sampler == "heun"
    x, r_out, before, after, nfe = start, [], [], [], 0
    for i, (sigma, sigma_next) in enumerate(steps):
        target, floor = step_target(
            sigma_next,
            run.data_power,
            run.noise_power,
            run.parameterization,
            run.spectrum,
            run.samples,
        )
        step = CorrectionStep(
            run.denoise,
            x,
            sigma,
            sigma_next,
            target,
            run.spectrum,
            run.sigma_max,
            run.max_batch,
            run.sampler,
            floor,
            r_out[i] if heun and i > 0 else None,
            keep_transforms=run.search == "secant",
        )
        if heun and sigma_next == 0 and i > 0:  # Heun ends with an Euler step
            step.evaluate([0.0])
        elif run.search == "rounds":
            rounds_search(step)
        else:
            secant_search(step, probe_from(r_out[-1] if r_out else 0.0), run.evaluations)
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
    return r_out, before, after, x, nfe


def _prepare(
    denoise, x0, levels, parameterization, seed, sigma_max, max_batch, sampler, search, evaluations
):
    """The run's shared parts, and the trajectories' start: noise drawn with `seed`."""
    if sigma_max is None:
        sigma_max = 1.0 if parameterization == "flow" else levels[0]
    spectrum = Spectrum(x0.shape[-2], x0.shape[-1], x0.device)
    data_power = spectrum.power(x0)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64).to(x0.device)
    start = _start_state(noise, levels[0], parameterization, float(sigma_max))
    # The trajectories inherit the drawn noise's own spectral fluctuation
    # (exactly so for a linear denoiser); scaling the target by it keeps the
    # search from "correcting" the seed instead of the level.
    noise_power = spectrum.power(noise)

    def in_model_dtype(xb, sigma_hat):
        return denoise(xb.to(x0.dtype), sigma_hat)

    return _Run(
        in_model_dtype,
        spectrum,
        data_power,
        noise_power,
        parameterization,
        x0.shape[0],
        sigma_max,
        max_batch,
        sampler,
        search,
        evaluations,
    ), start


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
    levels = _checked_levels(sigmas, sampler, search, max_batch, x0)
    run, start = _prepare(
        denoise,
        x0,
        levels,
        parameterization,
        seed,
        sigma_max,
        max_batch,
        sampler,
        search,
        evaluations,
    )
    steps = [(a, b) for a, b in zip(levels, levels[1:], strict=False) if a > 0]
    with torch.no_grad():
        r_out, before, after, x, nfe = _greedy_table(run, start, steps, progress)
        chosen, verified = 1.0, {}
        if verify:  # off where the held-out check tries the strengths on other latents
            chosen, verified, rows = _verify(run, start, levels, r_out, greedy_end=x)
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

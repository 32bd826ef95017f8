"""Spectral schedule benchmark: FD of spectral sigmas against ComfyUI's schedulers.

Run from the repository root::

    .venv/bin/python bench/schedules.py            # full run (about 11 minutes, 2 cores)
    .venv/bin/python bench/schedules.py --quick    # smoke run (< 1 minute)
    .venv/bin/python bench/schedules.py --out DIR  # plots + JSON go to DIR (default out/bench)

Not a test: nothing here fails the run. Each target prints PASS or MISS.

Setup (docs/design.md sections 2.4 and 5). The exact-denoiser testbed "trained" at M = 32
(4 channels, the two spectra of bench/noiseshift.py) as a ComfyUI MODEL
(shift 1, sigma range [0.001, 1]), sampled at N = M and N = M/2 (there the
model is mismatched, "pixel" variant). The spectrum is the RAPSD
(``noisecal.spectra.rapsd``) of 64 calibration fields at N; the schedule is
``noisecal.spectral_schedule.spectral_sigmas`` with the model's sigma range and
its default start (``DEFAULT_START``, "model maximum": the first level is the
model's largest sigma); the default variant with start "spectral bound" (the
first level where the strongest frequency is just drowned, the schedule's
earlier behaviour) is shown beside it.
Core schedules come from ``comfy.samplers.calculate_sigmas(model_sampling,
name, steps)``; every schedule runs through ComfyUI's SamplerCustom path
(``comfy.sample.sample_custom`` with a SIGMAS tensor).

FD. Sampler and model are linear and act per Fourier frequency, so a sample
is the noise filtered by a gain ``G(k)`` that depends only on the schedule.
Running ComfyUI's sampler on a unit impulse gives ``G`` (its unnormalized
DFT), hence the exact, infinite-sample FD: ``mean_k (|G(k)| - sqrt(P(k)))^2``
with P the true power at N. No estimator noise, so schedules that differ by a
few percent can be ranked. Section 2 checks it against the usual FD of 512
samples (``noisecal.testing.metrics.frechet_distance``, sampling seed 3003).

Sections:

1. FD at 4, 6, 8, 12, 16, 32 steps with euler and dpmpp_2m (the benchmark's
   second-order sampler; heun is reported as well, without targets): the six
   core schedulers, the four spectral variants (default first), the default
   variant with the spectral-bound start, the default with per-seed schedules
   (16 seeds, FD of the mixed samples, closed form) and the FD-optimal "oracle"
   schedule. Oracle: the interior sigmas (and the first one, sigma_0 in
   [0.05, 0.9999]) optimized directly with L-BFGS-B on the closed-form FD (the
   same gains computed in float64 from the sampler's update rules; monotone by
   construction: sigma_0 then softplus decrements of logit(sigma)), started
   from the best core schedule, "simple" and the default variant from both
   starts, then re-evaluated through ComfyUI. An oracle no user has: it is
   tuned on the true FD of this very model. "gap closed" = (FD best core - FD
   default) / (FD best core - FD oracle).
2. Sampled FD (512 samples) against the exact FD, with the estimator's floor,
   for the default and the best core schedule at 4, 8 and 32 steps.
3. Selection: variants and thresholds over the benchmark spectra and four
   held-out spectra (closed-form FD, N = M and M/2), with the default start:
   how the default was chosen (with the spectral-bound start, its start then).
4. Properties: the schedule under a shifted model (SD3's shift 3) and the
   cost of computing RAPSD and sigmas.
5. The trained reference network (``models/reference/sd3_gaussian_field_m32``,
   an SD3 MMDiT trained on the f0 = 3, alpha = 2.5 field, 16 channels, at
   M = 32; loaded by ``bench/lib/reference.py`` with its shift 3 and zero
   conditioning): FD of 96 samples (SamplerCustom, then ``process_latent_in``)
   at N = 32 and 16 with euler 8 and 20, heun 10 and dpmpp_2m 8 steps, for
   "simple" and the default variant from each start, with the FD noise floor.
   The spectrum is the RAPSD of 64 field samples at N (what the Calibrate node
   stores for them: ``rapsd(process_latent_in(latents))``). On this network the
   exact FD does not exist, so the estimator's floor is printed.

Targets: T1-T3 (section 1, on the default start), T4 (run time), T5
(section 2), T6 (section 5: the default below simple in every cell) and T7
(section 5: the default start at least as good as the spectral-bound start).

Seeds: calibration fields 1001 (``sample_field``), sampled FD 3003, per-seed
schedules 0..15 (``bench/lib/seeds.py``). Shared helpers: ``bench/lib/``.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import host  # noqa: F401  (bootstraps ComfyUI and the pack)

# isort: split
import comfy.model_sampling
import comfy.sample
import comfy.samplers

from bench.lib import reference, testbed
from bench.lib.report import fmt, pct, print_section, print_table, spectrum_name
from bench.lib.run import Run, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED
from bench.lib.testbed import CHANNELS, M
from bench.lib.timing import per_call_us
from noise_calibration.noisecal import spectra
from noise_calibration.noisecal import spectral_schedule as ss
from noise_calibration.noisecal.testing import metrics
from noise_calibration.noisecal.testing.testbed import ExactDenoiser, FieldSpectrum
from noise_calibration.noisecal_host.testing import sampling, testbed_model

CORE = ("simple", "normal", "karras", "exponential", "sgm_uniform", "beta")
BOUND_START = "spectral bound"  # the other start, shown beside the default (ss.STARTS)
DEFAULT_SPECTRAL = f"{ss.DEFAULT_VARIANT}, {ss.DEFAULT_START}"  # the default schedule, in verdicts
TARGET_SAMPLERS = ("euler", "dpmpp_2m")
FEW_STEPS = 8  # T1 (and the selection's "few"): at most this many steps
LONG_STEPS = 32  # T2: this many steps
CONVERGED = ("euler", 200, "simple")  # sampler, steps, scheduler of the converged FD
CONVERGED_KEY = "fd_{}_{}_{}".format(*CONVERGED)
SHOWN_STEPS = 8  # the schedules of Table 6 and the sigmas plot
SHIFTS = (1.0, 3.0)  # model shifts of Table 6
COST_LATENTS = (64, 128)  # count, size of the latents rapsd is timed on
COST_STEPS = (8, 32)  # spectral_sigmas timed at these steps (the second with a seed)
RUN_TARGET_S = 600  # T4: a full run

FULL = {
    "spectra": [(3.0, 2.5), (1.0, 3.5)],
    "heldout": [(2.0, 3.0), (5.0, 2.0), (1.0, 2.5), (4.0, 4.0)],
    "resolutions": [M, M // 2],
    "steps": [4, 6, 8, 12, 16, 32],
    "samplers": ["euler", "dpmpp_2m", "heun"],
    "oracle_samplers": ["euler", "dpmpp_2m"],
    "oracle_maxiter": 200,
    "cal_count": 64,
    "seeds": 16,
    "samples": 512,
    "sampled_steps": [4, 8, 32],
    "sampled_samplers": ["euler", "dpmpp_2m"],
    "sweep_steps": [4, 6, 8, 32],
    "sweep_thresholds": [(0.03, 30.0), (0.1, 10.0), (0.3, 3.0)],
    "sweep_exponents": [0.0, 1.0, 2.0],
    "reference": {
        "resolutions": [M, M // 2],
        "cells": [("euler", 8), ("euler", 20), ("heun", 10), ("dpmpp_2m", 8)],
        "samples": 96,
    },
}
QUICK = {
    **FULL,
    "spectra": [(3.0, 2.5)],
    "heldout": [(4.0, 4.0)],
    "steps": [4, 8, 32],
    "samplers": ["euler", "dpmpp_2m"],
    "oracle_samplers": ["euler"],
    "oracle_maxiter": 60,
    "seeds": 4,
    "samples": 128,
    "sampled_steps": [4],
    "sampled_samplers": ["euler"],
    "sweep_steps": [4, 32],
    "sweep_thresholds": [(0.1, 10.0)],
    "sweep_exponents": [0.0, 2.0],
    "reference": {"resolutions": [M, M // 2], "cells": [("euler", 8)], "samples": 32},
}


def pct0(v) -> str:
    """A share as a whole signed percentage (gap closed)."""
    return pct(v, "+.0f")


# --------------------------------------------------------------------------- closed form


def gain(sampler: str, s, pm):
    """Per-frequency gain of ComfyUI's sampler on the exact denoiser (float64, autograd-able).

    ``s``: sigmas (ending at 0), ``pm``: the power the model assumes at each
    frequency. Mirrors k-diffusion's sample_euler / sample_dpmpp_2m /
    sample_heun (no churn) with denoised = x - s * v, v the model's velocity.
    """

    def g_denoised(si):
        return (1 - si) * pm / ((1 - si) ** 2 * pm + si**2)

    x = s[0] * torch.ones_like(pm)
    old = None
    for i in range(len(s) - 1):
        si, sn = s[i], s[i + 1]
        if sampler == "euler":
            x = x + (sn - si) * (1 - g_denoised(si)) / si * x
        elif sampler == "heun":
            d = (1 - g_denoised(si)) / si * x
            if sn == 0:
                x = x + d * (sn - si)
            else:
                x2 = x + d * (sn - si)
                d2 = (1 - g_denoised(sn)) / sn * x2
                x = x + (d + d2) / 2 * (sn - si)
        elif sampler == "dpmpp_2m":
            den = g_denoised(si) * x
            if sn == 0:
                x = den
            else:
                h = torch.log(si) - torch.log(sn)
                if old is None:
                    x = (sn / si) * x - torch.expm1(-h) * den
                else:
                    r = (torch.log(s[i - 1]) - torch.log(si)) / h
                    dd = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old
                    x = (sn / si) * x - torch.expm1(-h) * dd
            old = den
        else:
            raise ValueError(sampler)
    return x


def oracle_unpack(z):
    """Oracle parameters -> sigmas: sigma_0, then softplus decrements of logit(sigma), 0."""
    s0 = z[0]
    logit0 = torch.log(s0) - torch.log1p(-s0)
    rest = torch.sigmoid(logit0 - torch.cumsum(torch.nn.functional.softplus(z[1:]), 0))
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([s0.reshape(1), rest, zero])


def oracle_pack(s):
    """Sigmas -> oracle parameters (the inverse of ``oracle_unpack``, clamped)."""
    s = torch.as_tensor(s, dtype=torch.float64)[:-1].clamp(1e-4, 0.9999)
    logit = torch.log(s) - torch.log1p(-s)
    d = (logit[:-1] - logit[1:]).clamp_min(1e-3)
    return torch.cat([s[:1], torch.log(torch.expm1(d))]).numpy()


class ClosedForm:
    """FD of a schedule from the sampler's gains on unique (model power, true power) pairs."""

    def __init__(self, pm, pt):
        pairs = torch.stack([pm.reshape(-1), pt.reshape(-1)], dim=1)
        uniq, counts = torch.unique(pairs, dim=0, return_counts=True)
        self.pm, self.pt = uniq[:, 0].contiguous(), uniq[:, 1].contiguous()
        self.w = counts.to(torch.float64) / counts.sum()

    def fd_tensor(self, s, sampler):
        g = gain(sampler, s, self.pm)
        return (self.w * (g.abs() - self.pt.sqrt()).square()).sum()

    def fd(self, sigmas, sampler) -> float:
        s = torch.as_tensor(sigmas).to(torch.float64).reshape(-1)
        return float(self.fd_tensor(s, sampler))

    def fd_mixture(self, sigma_list, sampler) -> float:
        """FD of samples each drawn with its own schedule (per-seed schedules)."""
        v = 0.0
        for sig in sigma_list:
            s = torch.as_tensor(sig).to(torch.float64).reshape(-1)
            v = v + gain(sampler, s, self.pm).square()
        v = v / len(sigma_list)
        return float((self.w * (v.sqrt() - self.pt.sqrt()).square()).sum())

    def oracle(self, sampler, inits, maxiter):
        """Minimize FD over the sigmas from each start; returns (fd, sigmas float64)."""

        def objective(zn):
            z = torch.tensor(zn, dtype=torch.float64, requires_grad=True)
            loss = self.fd_tensor(oracle_unpack(z), sampler)
            loss.backward()
            return loss.item(), z.grad.numpy().copy()

        best = None
        for s_init in inits:
            z0 = oracle_pack(s_init)
            bounds = [(0.05, 0.9999)] + [(None, None)] * (len(z0) - 1)
            res = minimize(
                objective,
                z0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                options={"maxiter": maxiter},
            )
            cand = (float(res.fun), oracle_unpack(torch.tensor(res.x)).detach())
            if best is None or cand[0] < best[0]:
                best = cand
        return best


# --------------------------------------------------------------------------- the testbed


@dataclass
class Cell:
    """One spectrum at one resolution N: the model trained at M, the RAPSD of the
    calibration fields at N and the closed form of the FD there."""

    sp: FieldSpectrum
    n: int
    model: object
    stats: object
    cf: ClosedForm


def make_cell(sp, n: int, cal_count: int) -> Cell:
    model = testbed.model(sp, M, "pixel")
    return Cell(sp, n, model, calibration_stats(sp, n, cal_count), closed_form(sp, n))


def calibration_stats(sp, n: int, count: int):
    """The RAPSD of `count` calibration fields at N = n (seed CAL_DATA_SEED)."""
    return spectra.rapsd(testbed.cal_latents(sp, n, count))


def closed_form(sp, n: int) -> ClosedForm:
    """The closed-form FD at N = n of the testbed trained at M ("pixel")."""
    return ClosedForm(ExactDenoiser(sp, M, "pixel").assumed_power(n), sp.power(n))


def sigma_range(model) -> tuple[float, float]:
    ms = model.get_model_object("model_sampling")
    return float(ms.sigma_min), float(ms.sigma_max)


def core_sigmas(model, name: str, steps: int):
    ms = model.get_model_object("model_sampling")
    return comfy.samplers.calculate_sigmas(ms, name, steps).to(torch.float32)


def spectral(cell: Cell, steps: int, variant: str, seed=None, start: str = ss.DEFAULT_START):
    """The spectral schedule of the cell's calibration spectrum in the model's range."""
    return ss.spectral_sigmas(
        cell.stats,
        steps,
        parameterization="flow",
        variant=variant,
        sigma_range=sigma_range(cell.model),
        seed=seed,
        start=start,
    )


def gain2(model, sigmas, sampler: str, n: int):
    """|G(k)|^2 [n, n] through ComfyUI's SamplerCustom path (impulse response)."""
    noise = torch.zeros(1, CHANNELS, n, n)
    noise[:, :, 0, 0] = 1.0
    latent = torch.zeros_like(noise)
    cond = testbed_model.make_testbed_conditioning(1)
    out = comfy.sample.sample_custom(
        model,
        noise,
        1.0,
        comfy.samplers.sampler_object(sampler),
        torch.as_tensor(sigmas, dtype=torch.float32),
        cond,
        cond,
        latent,
        disable_pbar=True,
        seed=0,
    )
    return torch.fft.fft2(out.to(torch.float64)).abs().square().mean(dim=(0, 1))


def exact_fd(cell: Cell, sigmas, sampler: str) -> float:
    """The infinite-sample FD of the schedule through ComfyUI's sampler."""
    v = gain2(cell.model, sigmas, sampler, cell.n)
    return float((v.sqrt() - cell.sp.power(cell.n).sqrt()).square().mean())


def sampled_fd(cell: Cell, sigmas, sampler: str, count: int) -> float:
    """FD of `count` SamplerCustom samples (seed SAMPLE_SEED) to the true field."""
    model, n = cell.model, cell.n
    lat = sampling.empty_latent(model, n, n, count)
    cond = testbed_model.make_testbed_conditioning(count)
    sig = torch.tensor(sigmas, dtype=torch.float32)
    samples = sampling.sample_with_sigmas(
        model, lat, cond, sig, seed=SAMPLE_SEED, sampler_name=sampler
    )
    return metrics.frechet_distance(samples, cell.sp.power(n))


def gap_to_oracle(reference: float, fd: float, oracle):
    """The share of the way from `reference`'s FD to the oracle's that `fd` goes."""
    return None if oracle is None else testbed.gap(reference, fd, oracle)


@dataclass
class Bench:
    """The run, the benchmark spectra and the closed form's agreement with ComfyUI
    (|closed form - ComfyUI| / ComfyUI per schedule of section 1) and section 1's cells."""

    run: Run
    spectra: list
    agreement: list[float] = field(default_factory=list)
    cells: dict = field(default_factory=dict)  # (spectrum, N) -> Cell, from section 1

    @property
    def cfg(self) -> dict:
        return self.run.cfg

    def checked_fd(self, cell: Cell, sigmas, sampler: str) -> float:
        """Exact FD through ComfyUI, and the closed form's agreement with it."""
        fd = exact_fd(cell, sigmas, sampler)
        if fd > 0:
            self.agreement.append(abs(cell.cf.fd(sigmas, sampler) - fd) / fd)
        return fd


# --------------------------------------------------------------------------- 1. exact FD


def section_fd(b: Bench) -> None:
    print_section("1. Exact FD: spectral schedules against ComfyUI's schedulers")
    cells, cases = [], []
    for sp in b.spectra:
        for n in b.cfg["resolutions"]:
            cell = b.cells[(sp, n)] = make_cell(sp, n, b.cfg["cal_count"])
            cells.append(cell_summary(cell))
            cases += [
                fd_case(b, cell, sampler, steps)
                for sampler in b.cfg["samplers"]
                for steps in b.cfg["steps"]
            ]
            print(f"  {spectrum_name(sp)} N={n}: done ({len(cases)} cases so far)", flush=True)
    b.run.data["fd"] = cases
    b.run.data["cells"] = cells
    fd_tables(b, cases, cells)
    judge_fd(b, cases)


def cell_summary(cell: Cell) -> dict:
    """The calibration spectrum, its bounds at the default thresholds and the
    model's converged FD."""
    sampler, steps, scheduler = CONVERGED
    return {
        "spectrum": spectrum_name(cell.sp),
        "N": cell.n,
        "stats": cell.stats.to_json(),
        "bounds_ref": ss.schedule_bounds(cell.stats, "flow"),
        CONVERGED_KEY: exact_fd(cell, core_sigmas(cell.model, scheduler, steps), sampler),
    }


def fd_case(b: Bench, cell: Cell, sampler: str, steps: int) -> dict:
    """Exact FD of the core schedulers, the spectral variants, the default with
    per-seed schedules and (for the oracle samplers) the oracle."""
    t0 = time.perf_counter()
    core_sig = {name: core_sigmas(cell.model, name, steps) for name in CORE}
    core = {name: b.checked_fd(cell, sig, sampler) for name, sig in core_sig.items()}
    spec_sig = {v: spectral(cell, steps, v) for v in ss.VARIANTS}
    spec = {v: b.checked_fd(cell, sig, sampler) for v, sig in spec_sig.items()}
    bound_sig = spectral(cell, steps, ss.DEFAULT_VARIANT, start=BOUND_START)
    fd_bound = b.checked_fd(cell, bound_sig, sampler)
    per_seed = [spectral(cell, steps, ss.DEFAULT_VARIANT, seed=k) for k in range(b.cfg["seeds"])]
    best = min(core, key=core.get)
    oracle = None
    if sampler in b.cfg["oracle_samplers"]:
        starts = oracle_starts(core_sig, spec_sig, bound_sig, best)
        oracle = oracle_case(b.cfg, cell, sampler, starts)
    fd_def = spec[ss.DEFAULT_VARIANT]
    fd_oracle = None if oracle is None else oracle["fd"]
    return {
        "spectrum": spectrum_name(cell.sp),
        "N": cell.n,
        "sampler": sampler,
        "steps": steps,
        "core": core,
        "spectral": spec,
        "fd_default": fd_def,
        "fd_default_per_seed": cell.cf.fd_mixture(per_seed, sampler),
        "best_core": best,
        "fd_best_core": core[best],
        "ratio_best_core": fd_def / core[best],
        "fd_bound": fd_bound,
        "ratio_bound_best_core": fd_bound / core[best],
        "fd_oracle": fd_oracle,
        "fd_oracle_closed_form": None if oracle is None else oracle["fd_closed_form"],
        "gap_closed_vs_best_core": gap_to_oracle(core[best], fd_def, fd_oracle),
        "gap_closed_vs_simple": gap_to_oracle(core["simple"], fd_def, fd_oracle),
        "sigmas_default": spec_sig[ss.DEFAULT_VARIANT].tolist(),
        "sigmas_bound": bound_sig.tolist(),
        "sigmas_variants": {k: v.tolist() for k, v in spec_sig.items()},
        "sigmas_core": {k: v.tolist() for k, v in core_sig.items()},
        "sigmas_oracle": None if oracle is None else oracle["sigmas"].tolist(),
        "seconds": time.perf_counter() - t0,
    }


def oracle_starts(core_sig: dict, spec_sig: dict, bound_sig, best: str) -> list:
    """The oracle starts from the best core schedule, the default spectral one, the
    default variant at the spectral-bound start and simple."""
    starts = [core_sig[best], spec_sig[ss.DEFAULT_VARIANT], bound_sig]
    if best != "simple":
        starts.append(core_sig["simple"])
    return starts


def oracle_case(cfg: dict, cell: Cell, sampler: str, starts: list) -> dict:
    """The FD-optimal schedule on the closed form, re-evaluated through ComfyUI."""
    fd_closed_form, sigmas = cell.cf.oracle(sampler, starts, cfg["oracle_maxiter"])
    return {
        "fd": exact_fd(cell, sigmas, sampler),
        "fd_closed_form": fd_closed_form,
        "sigmas": sigmas,
    }


def fd_tables(b: Bench, cases: list[dict], cells: list[dict]) -> None:
    for sampler in b.cfg["samplers"]:
        fd_table(sampler, [c for c in cases if c["sampler"] == sampler])
    variants_table(b.cfg, cases)
    bounds_table(cells)
    print(
        "(def/best, bnd/best = FD default, bound / FD of the best core scheduler in that row;\n"
        " gap best, gap simple = share of the way from that scheduler's FD to the oracle's that\n"
        " the default goes (negative: worse than the scheduler). At N = M/2 the model is\n"
        " mismatched: its own error dominates the FD and does not shrink with more steps,\n"
        " see Table 3)\n"
    )
    if b.agreement:
        print(
            f"closed form vs ComfyUI: max relative FD difference {max(b.agreement):.2e} "
            f"over {len(b.agreement)} schedules\n"
        )


def fd_table(sampler: str, cases: list[dict]) -> None:
    rows = [
        [c["spectrum"], c["N"], c["steps"], *(fmt(c["core"][k]) for k in CORE)]
        + [fmt(c["fd_default"]), f"{c['ratio_best_core']:.3f}"]
        + [fmt(c["fd_bound"]), f"{c['ratio_bound_best_core']:.3f}", fmt(c["fd_oracle"])]
        + [pct0(c["gap_closed_vs_best_core"]), pct0(c["gap_closed_vs_simple"])]
        for c in cases
    ]
    print_table(
        f"Table 1 ({sampler}): exact FD to the true field; default = '{ss.DEFAULT_VARIANT}', "
        f"start '{ss.DEFAULT_START}'; bound = '{ss.DEFAULT_VARIANT}', start '{BOUND_START}'",
        ["spectrum", "N", "steps", *CORE, "default", "def/best", "bound", "bnd/best"]
        + ["oracle", "gap best", "gap simple"],
        rows,
    )


def variants_table(cfg: dict, cases: list[dict]) -> None:
    rows = [
        [c["spectrum"], c["N"], c["sampler"], c["steps"]]
        + [*(fmt(c["spectral"][v]) for v in ss.VARIANTS), fmt(c["fd_default_per_seed"])]
        + [c["best_core"]]
        for c in cases
    ]
    print_table(
        "Table 2: exact FD of each spectral variant, and of the default with per-seed "
        f"schedules ({cfg['seeds']} seeds)",
        ["spectrum", "N", "sampler", "steps", *ss.VARIANTS, "per-seed", "best core"],
        rows,
    )


def bounds_table(cells: list[dict]) -> None:
    sampler, steps, scheduler = CONVERGED
    rows = [
        [c["spectrum"], c["N"], f"{c['bounds_ref'][0]:.4f}", f"{c['bounds_ref'][1]:.4f}"]
        + [fmt(c[CONVERGED_KEY])]
        for c in cells
    ]
    print_table(
        f"Table 3: spectral bounds at the reference thresholds (SNR {ss.DEFAULT_SNR_LOW:g} / "
        f"{ss.DEFAULT_SNR_HIGH:g}) and the model's converged FD ({steps} "
        f"{sampler.capitalize()} steps, {scheduler})",
        ["spectrum", "N", "sigma_min", "sigma_max", f"FD {steps} steps"],
        rows,
    )


def judge_fd(b: Bench, cases: list[dict]) -> None:
    """T1: below every core scheduler at few steps; T2: within 5% of the best at
    many; T3: the closed form (the oracle's objective) agrees with ComfyUI."""
    for c in cases:
        if c["sampler"] in TARGET_SAMPLERS:
            judge_fd_case(b.run, c)
    gap_summary(b.cfg, cases)
    print()
    if b.agreement:
        worst = max(b.agreement)
        b.run.check(
            worst <= 1e-3,
            f"T3 closed-form FD (oracle objective) agrees with ComfyUI's sampler: max rel. "
            f"diff {worst:.2e} over {len(b.agreement)} schedules (target <= 1e-3)",
        )


def judge_fd_case(run: Run, c: dict) -> None:
    default = ss.DEFAULT_VARIANT
    name = f"{c['spectrum']} N={c['N']} {c['sampler']} {c['steps']} steps"
    if c["steps"] <= FEW_STEPS:
        losers = [k for k in CORE if not c["fd_default"] < c["core"][k]]
        run.check(
            not losers,
            f"T1 {name}: {default} FD {c['fd_default']:.5f} vs best core "
            f"{c['best_core']} {c['fd_best_core']:.5f} (ratio {c['ratio_best_core']:.3f})"
            + (f"; not below {', '.join(losers)}" if losers else "")
            + f"; gap to oracle closed {pct0(c['gap_closed_vs_best_core'])}"
            + f"; spectral-bound start {c['fd_bound']:.5f} ({c['ratio_bound_best_core']:.3f})"
            + " (target: below every core scheduler)",
        )
    if c["steps"] == LONG_STEPS:
        run.check(
            c["ratio_best_core"] <= 1.05,
            f"T2 {name}: {default} FD {c['fd_default']:.6f} vs best core "
            f"{c['best_core']} {c['fd_best_core']:.6f} (ratio {c['ratio_best_core']:.3f}, "
            f"target <= 1.05); spectral-bound start {c['fd_bound']:.6f} "
            f"({c['ratio_bound_best_core']:.3f})",
        )


def gap_summary(cfg: dict, cases: list[dict]) -> None:
    """The gap to the oracle the default closes at few steps, per sampler and N."""
    for sampler in TARGET_SAMPLERS:
        for n in cfg["resolutions"]:
            gaps = [
                c["gap_closed_vs_best_core"]
                for c in cases
                if (c["sampler"], c["N"]) == (sampler, n)
                and c["steps"] <= FEW_STEPS
                and c["gap_closed_vs_best_core"] is not None
            ]
            if gaps:
                print(
                    f"gap to the oracle closed at <= {FEW_STEPS} steps, {sampler}, N={n}: median "
                    f"{pct0(statistics.median(gaps))}, range {pct0(min(gaps))} .. "
                    f"{pct0(max(gaps))} (vs the best core scheduler of each row)"
                )


# --------------------------------------------------------------------------- 2. sampled FD


def section_sampled(b: Bench) -> None:
    print_section("2. Sampled FD (SamplerCustom, noise from a seed) vs exact FD")
    cfg = b.cfg
    by_key = {(c["spectrum"], c["N"], c["sampler"], c["steps"]): c for c in b.run.data["fd"]}
    out = []
    for sp in b.spectra:
        for n in cfg["resolutions"]:
            cell = b.cells[(sp, n)]
            for sampler in cfg["sampled_samplers"]:
                for steps in cfg["sampled_steps"]:
                    c = by_key.get((spectrum_name(sp), n, sampler, steps))
                    if c is not None:
                        out += sampled_cases(cell, c, cfg["samples"])
    sampled_table(cfg, out)
    b.run.data["sampled"] = out
    judge_sampled(b.run, cfg, out)


def sampled_cases(cell: Cell, c: dict, count: int) -> list[dict]:
    """Sampled FD of the default and the best core schedule of a section 1 case."""
    floor = testbed.floor(cell.sp, cell.n, count)
    picks = {"default": c["sigmas_default"], c["best_core"]: c["sigmas_core"][c["best_core"]]}
    return [
        {
            "spectrum": c["spectrum"],
            "N": c["N"],
            "sampler": c["sampler"],
            "steps": c["steps"],
            "schedule": label,
            "fd_sampled": sampled_fd(cell, sig, c["sampler"], count),
            "fd_exact": c["fd_default"] if label == "default" else c["core"][label],
            "floor": floor,
        }
        for label, sig in picks.items()
    ]


def sampled_table(cfg: dict, out: list[dict]) -> None:
    rows = [
        [r["spectrum"], r["N"], r["sampler"], r["steps"], r["schedule"]]
        + [fmt(r["fd_exact"]), fmt(r["fd_sampled"])]
        + [f"{(r['fd_sampled'] - r['fd_exact']) / r['floor']:+.2f}"]
        for r in out
    ]
    print_table(
        f"Table 4: FD of {cfg['samples']} samples (seed {SAMPLE_SEED}) vs the exact FD; "
        f"noise floor {fmt(out[0]['floor'] if out else None)} (N={cfg['resolutions'][0]})",
        ["spectrum", "N", "sampler", "steps", "schedule", "exact", "sampled", "diff/floor"],
        rows,
    )


def judge_sampled(run: Run, cfg: dict, out: list[dict]) -> None:
    """T5: the sampled FD ranks the schedules as the exact FD does, wherever the
    exact FD separates them by more than two noise floors."""
    groups: dict = {}
    for r in out:
        groups.setdefault((r["spectrum"], r["N"], r["sampler"], r["steps"]), []).append(r)
    flips = [
        f"{key} {a['schedule']} vs {b['schedule']}"
        for key, rs in groups.items()
        for a in rs
        for b in rs
        if a["fd_exact"] + 2 * a["floor"] < b["fd_exact"] and not a["fd_sampled"] < b["fd_sampled"]
    ]
    if out:
        run.check(
            not flips,
            f"T5 sampled FD ({cfg['samples']} samples) ranks the schedules as the exact FD "
            f"does in all {len(groups)} groups"
            + (f"; flipped: {'; '.join(flips)}" if flips else "")
            + " (pairs further apart than 2 noise floors)",
        )


# --------------------------------------------------------------------------- 3. selection


def section_selection(b: Bench) -> None:
    print_section("3. Selection of the default variant and thresholds (closed form)")
    cfg = b.cfg
    groups = [(sp, "bench") for sp in b.spectra]
    groups += [(sp, "held-out") for sp in testbed.spectra(cfg["heldout"])]
    model = testbed.model(b.spectra[0], M, "pixel")
    cells = [
        cell
        for sp, group in groups
        for n in (cfg["resolutions"] if group == "bench" else [M])
        for cell in selection_cells(cfg, model, sp, n)
    ]
    out = [
        selection_entry(cfg, cells, sigma_range(model), variant, low, high, k)
        for variant in ss.VARIANTS
        for low, high in cfg["sweep_thresholds"]
        for k in cfg["sweep_exponents"]
    ]
    selection_table(cfg, out, len(b.spectra))
    b.run.data["selection"] = out


def selection_cells(cfg: dict, model, sp, n: int) -> list[dict]:
    """The sweep's cells of one spectrum at N = n: calibration spectrum, closed
    form and the best core scheduler's FD per sampler and step count."""
    ms = model.get_model_object("model_sampling")
    stats = calibration_stats(sp, n, cfg["cal_count"])
    cf = closed_form(sp, n)
    return [
        {
            "n": n,
            "stats": stats,
            "cf": cf,
            "sampler": sampler,
            "steps": steps,
            "best": min(
                cf.fd(comfy.samplers.calculate_sigmas(ms, k, steps), sampler) for k in CORE
            ),
        }
        for sampler in cfg["samplers"]
        for steps in cfg["sweep_steps"]
    ]


def selection_entry(cfg: dict, cells, rng, variant: str, low: float, high: float, k: float):
    """One variant and threshold setting: FD / best core FD per cell, summarized
    per sampler (few steps and many at N = M, few at the other resolutions)."""
    score: dict = {}
    for c in cells:
        scale = (ss.REFERENCE_STEPS / c["steps"]) ** k
        sig = ss.spectral_sigmas(
            c["stats"],
            c["steps"],
            variant=variant,
            sigma_range=rng,
            snr_low=min(low * scale, 1.0),
            snr_high=max(high / scale, 1.0),
        )
        r = c["cf"].fd(sig.to(torch.float64), c["sampler"]) / c["best"]
        key = (c["sampler"], "few" if c["steps"] <= FEW_STEPS else "many", c["n"] == M)
        score.setdefault(key, []).append(r)
    entry = {"variant": variant, "snr_low": low, "snr_high": high, "exponent": k}
    for sampler in cfg["samplers"]:
        entry[sampler] = sampler_score(score, sampler)
    return entry


def sampler_score(score: dict, sampler: str) -> dict:
    few = score.get((sampler, "few", True), [])
    many = score.get((sampler, "many", True), [])
    few_h = score.get((sampler, "few", False), [])
    return {
        "wins_few_matched": sum(x < 1 for x in few),
        "cells_few_matched": len(few),
        "worst_few_matched": max(few),
        "worst_many_matched": max(many) if many else None,
        "wins_few_half_res": sum(x < 1 for x in few_h),
        "cells_few_half_res": len(few_h),
        "geo_mean_matched": math.exp(statistics.fmean(math.log(x) for x in few + many)),
    }


def selection_table(cfg: dict, out: list[dict], n_bench: int) -> None:
    rows = []
    for e in out:
        row = [e["variant"], f"{e['snr_low']:g}/{e['snr_high']:g}", f"{e['exponent']:g}"]
        for sampler in cfg["samplers"]:
            s = e[sampler]
            row += [f"{s['wins_few_matched']}/{s['cells_few_matched']}"]
            row += [f"{s['worst_few_matched']:.2f}", fmt(s["worst_many_matched"], ".2f")]
            row += [f"{s['geo_mean_matched']:.2f}"]
        rows.append(row)
    ref = ss.REFERENCE_STEPS
    many = ",".join(str(s) for s in cfg["sweep_steps"] if s > FEW_STEPS)  # the "many" cells
    header = ["variant", f"SNR lo/hi @{ref}", "exp"]
    for sampler in cfg["samplers"]:
        short = {"euler": "eu", "dpmpp_2m": "dpm", "heun": "heun"}.get(sampler, sampler)
        header += [f"{short} wins", f"{short} worst", f"{short} w{many}", f"{short} geo"]
    n_held = len(cfg["heldout"])
    print_table(
        f"Table 5: FD / best core FD over {n_bench + n_held} spectra at N = M "
        f"({n_bench} benchmark + {n_held} held-out); steps {cfg['sweep_steps']}",
        header,
        rows,
    )
    print(
        f"(wins: cells at <= {FEW_STEPS} steps below every core scheduler; worst: the largest "
        f"ratio\n there; w{many}: the largest ratio at {many} steps; geo: geometric mean of all "
        f"ratios.\n Thresholds scale as snr_low * ({ref}/steps)^exp, snr_high * (steps/{ref})^exp)\n"
    )


# --------------------------------------------------------------------------- 4. properties


def section_properties(b: Bench) -> None:
    print_section("4. Properties: shifted models, cost")
    sp = b.spectra[0]
    stats = calibration_stats(sp, M, b.cfg["cal_count"])
    shifts = shift_cases(stats)
    shift_table(sp, shifts)
    cost = cost_case(sp, stats)
    print_cost(cost)
    b.run.data["properties"] = {"shift": shifts, "cost": cost}


def flow_sampling(shift: float):
    """The model_sampling of a flow model with this shift (SD3: 3)."""
    ms = comfy.model_sampling.ModelSamplingDiscreteFlow()
    ms.set_parameters(shift=shift)
    return ms


def shift_cases(stats) -> list[dict]:
    """The spectral schedule at SHOWN_STEPS in the range of each shifted model."""
    cases = []
    for shift in SHIFTS:
        ms = flow_sampling(shift)
        rng = (float(ms.sigma_min), float(ms.sigma_max))
        sig = ss.spectral_sigmas(stats, SHOWN_STEPS, sigma_range=rng).tolist()
        first = cases[0]["sigmas"] if cases else sig
        cases.append({"shift": shift, "range": rng, "sigmas": sig, "same_as_shift_1": sig == first})
    return cases


def shift_table(sp, cases: list[dict]) -> None:
    """The schedules beside each model's own 'simple' schedule (for reference)."""
    rows = []
    for c in cases:
        simple = comfy.samplers.calculate_sigmas(flow_sampling(c["shift"]), "simple", SHOWN_STEPS)
        rows.append(
            [f"{c['shift']:g}", f"[{c['range'][0]:.4f}, {c['range'][1]:.4f}]"]
            + [" ".join(f"{v:.3f}" for v in c["sigmas"])]
            + [" ".join(f"{v:.3f}" for v in simple.tolist())]
        )
    print_table(
        f"Table 6: {SHOWN_STEPS}-step spectral schedule ({spectrum_name(sp)}, N={M}) under "
        "model shifts, and the model's own 'simple' schedule",
        ["shift", "sigma range", "spectral sigmas", "simple sigmas"],
        rows,
    )
    print(
        "(the spectral levels are absolute: a shift changes the model's range and its\n"
        f" timestep map, not the schedule; shift {SHIFTS[1]:g} gives the same sigmas here "
        "because both\n ranges end at 1, where the default start puts the first level, and the "
        "lower bound\n lies inside both)\n"
    )


def cost_keys() -> tuple[str, str, str]:
    count, size = COST_LATENTS
    few, many = COST_STEPS
    return (
        f"rapsd_{count}x{CHANNELS}x{size}x{size}_ms",
        f"spectral_sigmas_{few}_ms",
        f"spectral_sigmas_{many}_seed_ms",
    )


def cost_case(sp, stats) -> dict:
    """Median milliseconds per call of rapsd and spectral_sigmas."""
    count, size = COST_LATENTS
    few, many = COST_STEPS
    lat = testbed.cal_latents(sp, size, count)
    fns = (
        (lambda: spectra.rapsd(lat), 2),
        (lambda: ss.spectral_sigmas(stats, few, sigma_range=(0.001, 1.0)), 20),
        (lambda: ss.spectral_sigmas(stats, many, seed=5), 20),
    )
    return {k: per_call_us(fn, reps) / 1000 for k, (fn, reps) in zip(cost_keys(), fns, strict=True)}


def print_cost(cost: dict) -> None:
    count, size = COST_LATENTS
    few, many = COST_STEPS
    rapsd, sig_few, sig_many = (cost[k] for k in cost_keys())
    print(
        f"cost (median): rapsd of {count} x {CHANNELS} x {size} x {size} latents "
        f"{rapsd:.1f} ms; spectral_sigmas {few} steps {sig_few:.2f} ms; {many} steps with a "
        f"seed {sig_many:.2f} ms\n"
    )


# --------------------------------------------------------------------------- 5. reference


def section_reference(b: Bench) -> None:
    print_section("5. Trained reference network: sampled FD of the two starts against simple")
    cfg = b.cfg["reference"]
    r = reference.load()
    print(
        f"reference network loaded in {r.load_s:.1f} s (shift {r.ref.shift:g}, sigma range "
        f"[{sigma_range(r.model)[0]:.4f}, {sigma_range(r.model)[1]:.4f}], data "
        f"{spectrum_name(r.ref.spectrum)}, {r.ref.spectrum.channels} channels, "
        f"M = {r.ref.train_res})",
        flush=True,
    )
    out = []
    for n in cfg["resolutions"]:
        stats = calibration_stats(r.ref.spectrum, n, b.cfg["cal_count"])
        floor = testbed.floor(r.ref.spectrum, n, cfg["samples"])
        for sampler, steps in cfg["cells"]:
            out.append(reference_case(r, stats, n, sampler, steps, cfg["samples"], floor))
    b.run.data["reference"] = out
    reference_tables(cfg, out)
    judge_reference(b.run, out)


def reference_schedules(model, stats, steps: int) -> dict:
    """simple, and the default variant from each start, in the model's (shift 3) range."""
    rng = sigma_range(model)
    sched = {"simple": core_sigmas(model, "simple", steps)}
    for start in (ss.DEFAULT_START, BOUND_START):
        sched[start] = ss.spectral_sigmas(stats, steps, sigma_range=rng, start=start)
    return sched


def reference_case(r, stats, n: int, sampler: str, steps: int, count: int, floor: float):
    t0 = time.perf_counter()
    sched = reference_schedules(r.model, stats, steps)
    fd = {
        k: reference.fd_with_sigmas(r, r.model, n, count, sig, sampler) for k, sig in sched.items()
    }
    case = {
        "N": n,
        "sampler": sampler,
        "steps": steps,
        "samples": count,
        "fd": fd,
        "ratio_to_simple": {k: v / fd["simple"] for k, v in fd.items()},
        "floor": floor,
        "sigmas": {k: v.tolist() for k, v in sched.items()},
        "seconds": time.perf_counter() - t0,
    }
    print(
        f"  N={n} {sampler} {steps}: "
        + ", ".join(f"{k} {v:.5f}" for k, v in fd.items())
        + f" ({case['seconds']:.0f} s)",
        flush=True,
    )
    return case


def reference_tables(cfg: dict, out: list[dict]) -> None:
    names = ("simple", ss.DEFAULT_START, BOUND_START)
    rows = [
        [c["N"], c["sampler"], c["steps"], *(fmt(c["fd"][k]) for k in names)]
        + [f"{c['ratio_to_simple'][k]:.3f}" for k in names[1:]]
        + [fmt(c["floor"])]
        for c in out
    ]
    print_table(
        f"Table 7: reference network (trained at M = {M}, shift 3), FD of {cfg['samples']} "
        f"samples (seed {SAMPLE_SEED}): simple and the '{ss.DEFAULT_VARIANT}' schedule "
        "from each start",
        ["N", "sampler", "steps", "simple", "model max", "bound", "max/simple", "bnd/simple"]
        + ["floor"],
        rows,
    )
    rows = [
        [c["N"], k, " ".join(f"{v:.3f}" for v in c["sigmas"][k])]
        for c in out
        if (c["sampler"], c["steps"]) == ("euler", SHOWN_STEPS)
        for k in names
    ]
    if rows:
        print_table(
            f"Table 8: the {SHOWN_STEPS}-step schedules of Table 7",
            ["N", "schedule", "sigmas"],
            rows,
        )


def judge_reference(run: Run, out: list[dict]) -> None:
    """T6: the default below simple; T7: the default start at least as good as the
    spectral-bound start; each cell of Table 7."""
    for c in out:
        fd = c["fd"]
        default, bound = fd[ss.DEFAULT_START], fd[BOUND_START]
        name = f"reference N={c['N']} {c['sampler']} {c['steps']} steps"
        run.check(
            default < fd["simple"],
            f"T6 {name}: {DEFAULT_SPECTRAL} FD {default:.5f} vs simple {fd['simple']:.5f} "
            f"(ratio {default / fd['simple']:.3f}; floor {c['floor']:.5f}; target: below simple)",
        )
        run.check(
            default <= bound,
            f"T7 {name}: start '{ss.DEFAULT_START}' FD {default:.5f} vs '{BOUND_START}' "
            f"{bound:.5f} (ratio {default / bound:.3f}; target <= 1)",
        )


# --------------------------------------------------------------------------- plots


def plots(run: Run) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = run.data.get("fd", [])
    if not cases:
        return []
    written = [plot_fd(plt, run.cfg["samplers"], cases, run.out)]
    picks = [c for c in cases if c["steps"] == SHOWN_STEPS and c["sampler"] == "euler"]
    if picks:
        written.append(plot_sigmas(plt, picks, run.data["cells"], run.out))
    return written


def save(plt, fig, path: Path) -> Path:
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_fd(plt, samplers, cases, out: Path) -> Path:
    """FD against steps, one panel per spectrum, resolution and sampler."""
    panels = list(dict.fromkeys((c["spectrum"], c["N"]) for c in cases))
    fig, axes = plt.subplots(
        len(panels), len(samplers), figsize=(4.3 * len(samplers), 3.4 * len(panels)), squeeze=False
    )
    for i, key in enumerate(panels):
        for j, sampler in enumerate(samplers):
            ax = axes[i][j]
            rows = [c for c in cases if (c["spectrum"], c["N"]) == key and c["sampler"] == sampler]
            plot_fd_panel(plt, ax, rows)
            ax.set_title(f"{key[0]}, N={key[1]}, {sampler}", fontsize=9)
            if j == 0:
                ax.set_ylabel("exact FD")
            if i == len(panels) - 1:
                ax.set_xlabel("steps")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(f"Testbed FD vs steps (model trained at M={M})")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save(plt, fig, out / "schedules_fd.png")


def plot_fd_panel(plt, ax, rows) -> None:
    """The core schedulers, the default spectral schedule and the oracle."""
    colors = plt.get_cmap("tab10")
    steps = [c["steps"] for c in rows]
    for k, name in enumerate(CORE):
        core = [c["core"][name] for c in rows]
        ax.plot(steps, core, color=colors(k), lw=1, marker=".", label=name)
    default = [c["fd_default"] for c in rows]
    ax.plot(steps, default, color="k", lw=2.2, marker="o", label=f"spectral ({ss.DEFAULT_VARIANT})")
    bound = [c["fd_bound"] for c in rows]
    ax.plot(steps, bound, color="0.5", lw=1.6, marker="o", ms=3, label=f"spectral, {BOUND_START}")
    if rows and rows[0]["fd_oracle"] is not None:
        oracle = [c["fd_oracle"] for c in rows]
        ax.plot(steps, oracle, color="k", ls="--", lw=1, label="oracle (FD-optimal)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(steps)
    ax.set_xticklabels([str(s) for s in steps])


def plot_sigmas(plt, picks, cells, out: Path) -> Path:
    """The schedules at SHOWN_STEPS (top) and the calibration spectra (bottom)."""
    fig, axes = plt.subplots(2, len(picks), figsize=(4.2 * len(picks), 7), squeeze=False)
    for j, c in enumerate(picks):
        plot_schedules_panel(plt, axes[0][j], c)
        cell = next(x for x in cells if (x["spectrum"], x["N"]) == (c["spectrum"], c["N"]))
        plot_spectrum_panel(axes[1][j], cell)
    handles, labels = axes[0][0].get_legend_handles_labels()
    axes[0][-1].legend(handles, labels, fontsize=6)
    fig.tight_layout()
    return save(plt, fig, out / "schedules_sigmas.png")


def plot_schedules_panel(plt, ax, c: dict) -> None:
    colors = plt.get_cmap("tab10")
    for k, name in enumerate(CORE):
        ax.plot(c["sigmas_core"][name], color=colors(k), lw=1, marker=".", label=name)
    for v, ls in zip(ss.VARIANTS, ("-", "-.", ":", "--"), strict=False):
        lw = 2 if v == ss.DEFAULT_VARIANT else 1
        ax.plot(c["sigmas_variants"][v], color="k", lw=lw, ls=ls, label=f"spectral {v}")
    ax.plot(c["sigmas_bound"], color="0.5", lw=1.5, label=f"spectral, {BOUND_START}")
    if c["sigmas_oracle"] is not None:
        ax.plot(c["sigmas_oracle"], color="m", lw=1.5, ls="--", label=f"oracle ({c['sampler']})")
    ax.set_title(f"{c['spectrum']}, N={c['N']}: {c['steps']} steps", fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel("sigma")


def plot_spectrum_panel(ax, cell: dict) -> None:
    import matplotlib.ticker

    st = cell["stats"]
    p = np.mean(np.array(st["power"]), axis=0)
    ax.loglog(st["freqs"][1:], p[1:], color="k")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("frequency (cycles/pixel)")
    ax.set_ylabel("RAPSD (channel mean)")
    s_min, s_max = cell["bounds_ref"]
    ax.set_title(
        f"bounds @{ss.REFERENCE_STEPS} steps: sigma in [{s_min:.3f}, {s_max:.3f}]", fontsize=9
    )


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(__doc__, argv)
    run = Run.start(args, FULL, QUICK)
    describe_run(args.quick)
    b = Bench(run, testbed.spectra(run.cfg["spectra"]))
    timings = run_sections(
        (
            ("fd", lambda: section_fd(b)),
            ("sampled", lambda: section_sampled(b)),
            ("selection", lambda: section_selection(b)),
            ("properties", lambda: section_properties(b)),
            ("reference", lambda: section_reference(b)),
        )
    )
    defaults = {
        "variant": ss.DEFAULT_VARIANT,
        "snr_low": ss.DEFAULT_SNR_LOW,
        "snr_high": ss.DEFAULT_SNR_HIGH,
        "reference_steps": ss.REFERENCE_STEPS,
        "threshold_exponent": ss.THRESHOLD_EXPONENT,
        "start": ss.DEFAULT_START,
    }

    def time_target(total):
        if not args.quick:
            run.check(
                total <= RUN_TARGET_S, f"T4 full run {total:.0f} s (target <= {RUN_TARGET_S} s)"
            )

    seeds = {"calibration_data": CAL_DATA_SEED, "sampling": SAMPLE_SEED}
    extra = {"defaults": defaults}
    return finish(run, "schedules", timings, plots, seeds, extra=extra, after_total=time_target)


if __name__ == "__main__":
    sys.exit(main())

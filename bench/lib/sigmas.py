"""The schedules the benchmarks compare: ComfyUI's core schedulers and the pack's
spectral schedule (each variant, start, threshold and seed) of a calibration
spectrum, the closed-form sweep that chose the default, the schedule under shifted
models and what computing one costs."""

from __future__ import annotations

import math
import statistics
import time

import torch

from bench.lib import host  # noqa: F401  (bootstraps ComfyUI and the pack)

# isort: split
import comfy.model_sampling
import comfy.samplers

from bench.lib import reference, testbed
from bench.lib.exact_fd import Cell, calibration_stats, closed_form, core_sigmas, sigma_range
from bench.lib.report import spectrum_name
from bench.lib.testbed import CHANNELS, M
from bench.lib.timing import per_call_us
from noise_calibration.noisecal import spectra
from noise_calibration.noisecal import spectral_schedule as ss

CORE = ("simple", "normal", "karras", "exponential", "sgm_uniform", "beta")
BOUND_START = "spectral bound"  # the other start, shown beside the default (ss.STARTS)


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


def oracle_starts(core_sig: dict, spec_sig: dict, bound_sig, best: str) -> list:
    """The oracle starts from the best core schedule, the default spectral one, the
    default variant at the spectral-bound start and simple."""
    starts = [core_sig[best], spec_sig[ss.DEFAULT_VARIANT], bound_sig]
    if best != "simple":
        starts.append(core_sig["simple"])
    return starts


def oracle_schedule(cell: Cell, sampler: str, starts: list, maxiter: int) -> dict:
    """The FD-optimal schedule on the closed form, re-evaluated through ComfyUI."""
    fd_closed_form, sigmas = cell.cf.oracle(sampler, starts, maxiter)
    return {
        "fd": cell.exact_fd(sigmas, sampler),
        "fd_closed_form": fd_closed_form,
        "sigmas": sigmas,
    }


def compare(cell: Cell, sampler: str, steps: int, cfg: dict, fd) -> dict:
    """Exact FD (``fd(cell, sigmas, sampler)``) of the core schedulers, the spectral
    variants, the default with per-seed schedules (closed form) and, for the oracle
    samplers of `cfg`, the oracle."""
    t0 = time.perf_counter()
    core_sig = {name: core_sigmas(cell.model, name, steps) for name in CORE}
    core = {name: fd(cell, sig, sampler) for name, sig in core_sig.items()}
    spec_sig = {v: spectral(cell, steps, v) for v in ss.VARIANTS}
    spec = {v: fd(cell, sig, sampler) for v, sig in spec_sig.items()}
    bound_sig = spectral(cell, steps, ss.DEFAULT_VARIANT, start=BOUND_START)
    fd_bound = fd(cell, bound_sig, sampler)
    per_seed = [spectral(cell, steps, ss.DEFAULT_VARIANT, seed=k) for k in range(cfg["seeds"])]
    best = min(core, key=core.get)
    oracle = None
    if sampler in cfg["oracle_samplers"]:
        starts = oracle_starts(core_sig, spec_sig, bound_sig, best)
        oracle = oracle_schedule(cell, sampler, starts, cfg["oracle_maxiter"])
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
        "gap_closed_vs_best_core": gap_closed(core[best], fd_def, fd_oracle),
        "gap_closed_vs_simple": gap_closed(core["simple"], fd_def, fd_oracle),
        "sigmas_default": spec_sig[ss.DEFAULT_VARIANT].tolist(),
        "sigmas_bound": bound_sig.tolist(),
        "sigmas_variants": {k: v.tolist() for k, v in spec_sig.items()},
        "sigmas_core": {k: v.tolist() for k, v in core_sig.items()},
        "sigmas_oracle": None if oracle is None else oracle["sigmas"].tolist(),
        "seconds": time.perf_counter() - t0,
    }


def gap_closed(baseline: float, fd: float, oracle):
    """The share of the way from `baseline`'s FD to the oracle's that `fd` goes."""
    return None if oracle is None else testbed.gap(baseline, fd, oracle)


def sampled_against_exact(cell: Cell, c: dict, count: int) -> list[dict]:
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
            "fd_sampled": cell.sampled_fd(sig, c["sampler"], count),
            "fd_exact": c["fd_default"] if label == "default" else c["core"][label],
            "floor": floor,
        }
        for label, sig in picks.items()
    ]


# --------------------------------------------------------------------------- the sweep


def sweep_cells(cfg: dict, model, sp, n: int) -> list[dict]:
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


def sweep_entry(cfg: dict, cells, rng, setting: tuple, few_steps: int) -> dict:
    """One variant and threshold setting (variant, snr_low, snr_high, exponent): FD /
    best core FD per cell, summarized per sampler (few steps and many at N = M, few
    at the other resolutions)."""
    variant, low, high, k = setting
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
        key = (c["sampler"], "few" if c["steps"] <= few_steps else "many", c["n"] == M)
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


# --------------------------------------------------------------------------- properties


def flow_sampling(shift: float):
    """The model_sampling of a flow model with this shift (SD3: 3)."""
    ms = comfy.model_sampling.ModelSamplingDiscreteFlow()
    ms.set_parameters(shift=shift)
    return ms


def under_shifts(stats, shifts, steps: int) -> list[dict]:
    """The spectral schedule at `steps` in the range of each shifted model."""
    cases = []
    for shift in shifts:
        ms = flow_sampling(shift)
        rng = (float(ms.sigma_min), float(ms.sigma_max))
        sig = ss.spectral_sigmas(stats, steps, sigma_range=rng).tolist()
        first = cases[0]["sigmas"] if cases else sig
        cases.append({"shift": shift, "range": rng, "sigmas": sig, "same_as_shift_1": sig == first})
    return cases


def cost_keys(latents: tuple[int, int], steps: tuple[int, int]) -> tuple[str, str, str]:
    (count, size), (few, many) = latents, steps
    return (
        f"rapsd_{count}x{CHANNELS}x{size}x{size}_ms",
        f"spectral_sigmas_{few}_ms",
        f"spectral_sigmas_{many}_seed_ms",
    )


def cost_ms(sp, stats, latents: tuple[int, int], steps: tuple[int, int]) -> dict:
    """Median milliseconds per call of rapsd on (count, size) latents and of
    spectral_sigmas at (few, many) steps, the second with a seed."""
    (count, size), (few, many) = latents, steps
    lat = testbed.cal_latents(sp, size, count)
    fns = (
        (lambda: spectra.rapsd(lat), 2),
        (lambda: ss.spectral_sigmas(stats, few, sigma_range=(0.001, 1.0)), 20),
        (lambda: ss.spectral_sigmas(stats, many, seed=5), 20),
    )
    keys = cost_keys(latents, steps)
    return {k: per_call_us(fn, reps) / 1000 for k, (fn, reps) in zip(keys, fns, strict=True)}


def simple_and_starts(model, stats, steps: int) -> dict:
    """simple, and the default variant from each start, in the model's range."""
    rng = sigma_range(model)
    sched = {"simple": core_sigmas(model, "simple", steps)}
    for start in (ss.DEFAULT_START, BOUND_START):
        sched[start] = ss.spectral_sigmas(stats, steps, sigma_range=rng, start=start)
    return sched


def on_reference(r, stats, n: int, sampler: str, steps: int, count: int, floor: float) -> dict:
    """FD of `count` samples of the reference network at N = n for simple and the
    default variant from each start (progress printed)."""
    t0 = time.perf_counter()
    picked = simple_and_starts(r.model, stats, steps)
    fd = {
        k: reference.fd_with_sigmas(r, r.model, n, count, sig, sampler) for k, sig in picked.items()
    }
    case = {
        "N": n,
        "sampler": sampler,
        "steps": steps,
        "samples": count,
        "fd": fd,
        "ratio_to_simple": {k: v / fd["simple"] for k, v in fd.items()},
        "floor": floor,
        "sigmas": {k: v.tolist() for k, v in picked.items()},
        "seconds": time.perf_counter() - t0,
    }
    print(
        f"  N={n} {sampler} {steps}: "
        + ", ".join(f"{k} {v:.5f}" for k, v in fd.items())
        + f" ({case['seconds']:.0f} s)",
        flush=True,
    )
    return case

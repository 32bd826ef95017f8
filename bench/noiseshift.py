"""NoiseShift benchmark: quality, transfer, search cost and sampling overhead.

    .venv/bin/python bench/noiseshift.py [--quick] [--out DIR] [--threads N]

Not a test: each target prints PASS or MISS (bench/README.md, docs/results-noiseshift.md).
Calibration through ``noisecal_host.calibrate.run_search`` (inside a ComfyUI sampler
on the MODEL), sampling through KSampler, NoiseShift through the pack's node with
the calibration record connected.

Sections and judges:
1. Quality: the exact-denoiser testbed trained at M = 32, sampled at N = M, M/2,
   M/4 (two spectra, both mismatch variants, 20 simple Euler steps): FD plain /
   NoiseShift / native, gap closed, noise floor. S1: at N = M the shift stays
   within 0.01; below M NoiseShift closes at least half the gap.
2. Transfer: the 20-step calibration applied at 10 and 40 steps, with "beta",
   "normal" and dpmpp_2m; "recal" calibrates at the target schedule itself.
3. Search cost: grid (the paper's) against fast: NFE, wall time, total one-step
   error (S3: 5x fewer NFE, at most 1% more error); the exhaustive check of single
   steps (``bench/lib/search_check.py``).
4. Overhead: sampling wall time with NoiseShift against the unpatched model on
   tiny SD3 and Flux, interleaved repeats, the level function per call (S4: <= 3%).
Seeds: ``bench/lib/seeds.py``.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import figures, search_check, testbed
from bench.lib.calibration import Nodes, noiseshift_calibration, private_store, synthetic_record
from bench.lib.report import fmt, pct, print_section, print_table, spectrum_name
from bench.lib.run import Run, RunState, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import ALL as SEEDS
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED
from bench.lib.testbed import CAL_SCHEDULER, CAL_STEPS, M
from bench.lib.timing import TimedSampler, interleaved, level_profile, ratios
from noise_calibration.noisecal_host.testing import sampling, tiny_models

FULL = {
    "spectra": [(3.0, 2.5), (1.0, 3.5)],
    "variants": ["pixel", "image"],
    "resolutions": [M, M // 2, M // 4],
    "cal_count": 64,
    "samples": 512,
    # (label, steps, sampler, scheduler)
    "transfer": [
        ("10 steps", 10, "euler", "simple"),
        ("40 steps", 40, "euler", "simple"),
        ("beta", 20, "euler", "beta"),
        ("normal", 20, "euler", "normal"),
        ("dpmpp_2m", 20, "dpmpp_2m", "simple"),
    ],
    "transfer_resolutions": [M // 2, M // 4],
    "transfer_spectra": 2,
    "cost_cases": [
        (0, "pixel", M),
        (0, "pixel", M // 2),
        (0, "image", M // 2),
        (0, "image", M // 4),
        (1, "pixel", M // 2),
        (1, "pixel", M // 4),
        (1, "image", M // 2),
    ],
    "exhaustive_cases": [(0, "pixel", M // 2), (0, "image", M // 4), (1, "pixel", M // 2)],
    "exhaustive_steps": [0, 2, 3, 7, 12, 15, 17, 19],
    "tiny_cost": True,
    "overhead": {
        "latent": 32,
        "batch": 4,
        "steps": 20,
        "repeats": 25,
        "warmup": 2,
        "calibrate": True,
        "timeit_reps": 300,
    },
}
QUICK = {
    **FULL,
    "spectra": [(3.0, 2.5)],
    "samples": 256,
    "transfer": [FULL["transfer"][i] for i in (0, 2, 4)],
    "transfer_resolutions": [M // 2],
    "transfer_spectra": 1,
    "cost_cases": [(0, "image", M // 2), (0, "pixel", M // 4)],
    "exhaustive_cases": [(0, "image", M // 2)],
    "exhaustive_steps": [0, 10],
    "tiny_cost": False,
    "overhead": {
        **FULL["overhead"],
        **{"steps": 10, "repeats": 4, "warmup": 1, "calibrate": False, "timeit_reps": 100},
    },
}


@dataclass
class Bench(RunState):
    """The run and what its sections hand on: the section 1 calibrations
    (reused by transfer and diagnosis) and the section 3 searches."""

    nodes: Nodes
    spectra: list
    calibrations: dict = field(default_factory=dict)
    cost_results: dict = field(default_factory=dict)

    def fd(self, model, sp, n, **kw) -> float:
        return testbed.fd(model, sp, n, self.cfg["samples"], **kw)


def settings() -> str:
    """The calibration schedule, as printed in headers."""
    return f"{CAL_STEPS} Euler steps, {CAL_SCHEDULER}"


# --------------------------------------------------------------------------- 1. quality


def section_quality(b: Bench) -> None:
    print_section(f"1. Testbed quality (M = {M}, {settings()})")
    cases = [
        quality_case(b, sp, variant, n)
        for sp in b.spectra
        for variant in b.cfg["variants"]
        for n in b.cfg["resolutions"]
    ]
    quality_table(b.cfg, cases)
    judge_quality(b, cases)
    b.run.data["quality"] = cases


def quality_case(b: Bench, sp, variant: str, n: int) -> dict:
    """Calibrate at N = n (fast), then FD plain / NoiseShift / native."""
    plain_model = testbed.model(sp, M, variant)
    sigmas = testbed.sigmas(plain_model, CAL_STEPS, CAL_SCHEDULER)
    x0 = testbed.cal_latents(sp, n, b.cfg["cal_count"])
    res, record, wall = noiseshift_calibration(plain_model, x0, sigmas, "fast")
    b.calibrations[(sp, variant, n)] = (res, record, x0)
    ns_model = b.nodes.noiseshift(plain_model, record)
    native = testbed.model(sp, n, "pixel")  # trained at N: both variants agree
    fd_plain = b.fd(plain_model, sp, n)
    fd_ns = b.fd(ns_model, sp, n)
    fd_native = fd_plain if n == M else b.fd(native, sp, n)
    shifts = [h - s for s, h in zip(res.sigmas, res.sigma_hat, strict=True)]
    return {
        "spectrum": spectrum_name(sp),
        "variant": variant,
        "N": n,
        "fd_plain": fd_plain,
        "fd_noiseshift": fd_ns,
        "fd_native": fd_native,
        "gap_closed": None if n == M else testbed.gap(fd_plain, fd_ns, fd_native),
        "fd_floor": testbed.floor(sp, n, b.cfg["samples"]),
        "max_abs_shift": max(abs(v) for v in shifts),
        "largest_shift_signed": max(shifts, key=abs),
        "nfe": res.nfe,
        "calibration_s": wall,
        "sigmas": res.sigmas,
        "sigma_hat": res.sigma_hat,
        "total_error_before": res.total_error_before,
        "total_error_after": res.total_error_after,
    }


def quality_table(cfg: dict, cases: list[dict]) -> None:
    keys = ("fd_plain", "fd_noiseshift", "fd_native")
    rows = [
        [c["spectrum"], c["variant"], c["N"], *(fmt(c[k]) for k in keys)]
        + [pct(c["gap_closed"], ".0f"), fmt(c["fd_floor"]), f"{c['largest_shift_signed']:+.4f}"]
        + [c["nfe"], f"{c['calibration_s']:.2f}"]
        for c in cases
    ]
    print_table(
        f"Table 1: FD to the true field ({cfg['samples']} samples, seed "
        f"{SAMPLE_SEED}); calibration fast mode, {cfg['cal_count']} latents",
        ["spectrum", "variant", "N", "FD plain", "FD NoiseShift", "FD native", "gap closed"]
        + ["FD floor", "max shift", "cal NFE", "cal s"],
        rows,
    )
    print("(max shift: the largest sigma_hat - sigma of the schedule, signed)\n")


def judge_quality(b: Bench, cases: list[dict]) -> None:
    """S1: at N = M the shift stays small; below M NoiseShift closes half the gap."""
    for c in cases:
        name = f"{c['spectrum']} {c['variant']} N={c['N']}"
        if c["N"] == M:
            b.run.check(
                c["max_abs_shift"] <= 0.01,
                f"S1 {name}: max |sigma_hat - sigma| = {c['max_abs_shift']:.4f} (target <= 0.01)",
            )
            continue
        g = c["gap_closed"]
        ok = b.run.check(
            g is not None and g >= 0.5,
            f"S1 {name}: gap closed = {pct(g, '.0f')} (target >= 50%)",
        )
        if not ok:
            c["diagnosis"] = diagnose(b, c)


def diagnose(b: Bench, c: dict) -> dict:
    """A missed case: is it the search or the objective? Grid search and strength scan."""
    sp = next(s for s in b.spectra if spectrum_name(s) == c["spectrum"])
    n, variant = c["N"], c["variant"]
    res, record, x0 = b.calibrations[(sp, variant, n)]
    plain_model = testbed.model(sp, M, variant)
    sigmas = testbed.sigmas(plain_model, CAL_STEPS, CAL_SCHEDULER)
    grid, grid_record, _ = noiseshift_calibration(plain_model, x0, sigmas, "grid")
    fd_grid = b.fd(b.nodes.noiseshift(plain_model, grid_record), sp, n)
    out = {
        "fd_grid": fd_grid,
        "gap_closed_grid": testbed.gap(c["fd_plain"], fd_grid, c["fd_native"]),
        "total_error_fast": res.total_error_after,
        "total_error_grid": grid.total_error_after,
        "total_error_plain": res.total_error_before,
        "strength_scan": {},
    }
    for strength in (0.5, 0.75, 1.25, 1.5):
        fd = b.fd(b.nodes.noiseshift(plain_model, record, strength), sp, n)
        out["strength_scan"][strength] = (fd, testbed.gap(c["fd_plain"], fd, c["fd_native"]))
    scan = ", ".join(
        f"{k:g}: {v[0]:.5f} ({pct(v[1], '.0f')})" for k, v in out["strength_scan"].items()
    )
    print(
        f"      diagnosis: one-step total error plain {out['total_error_plain']:.6g}, "
        f"fast {out['total_error_fast']:.6g}, grid {out['total_error_grid']:.6g}; FD with "
        f"the grid calibration {fd_grid:.5f} (gap {pct(out['gap_closed_grid'], '.0f')}); "
        f"FD (gap) at NoiseShift strength {scan}",
        flush=True,
    )
    return out


# --------------------------------------------------------------------------- 2. transfer


def section_transfer(b: Bench) -> None:
    print_section(f"2. Transfer (calibrated at {settings()})")
    cases = []
    for sp in b.spectra[: b.cfg["transfer_spectra"]]:
        for variant in b.cfg["variants"]:
            for n in b.cfg["transfer_resolutions"]:
                cases += transfer_cases(b, sp, variant, n)
    transfer_table(cases)
    b.run.data["transfer"] = cases


def transfer_cases(b: Bench, sp, variant: str, n: int) -> list[dict]:
    """The section 1 calibration applied at other schedules, and a recalibration."""
    plain_model = testbed.model(sp, M, variant)
    res, record, x0 = b.calibrations[(sp, variant, n)]
    ns_model = b.nodes.noiseshift(plain_model, record)
    native = testbed.model(sp, n, "pixel")
    cases = []
    for label, steps, sampler, scheduler in b.cfg["transfer"]:
        kw = {"steps": steps, "sampler": sampler, "scheduler": scheduler}
        fd_plain = b.fd(plain_model, sp, n, **kw)
        fd_ns = b.fd(ns_model, sp, n, **kw)
        fd_native = b.fd(native, sp, n, **kw)
        fd_recal = gap_recal = None
        if sampler == "euler":  # the objective is an Euler step
            sig = testbed.sigmas(plain_model, steps, scheduler)
            _, rec2, _ = noiseshift_calibration(plain_model, x0, sig, "fast")
            fd_recal = b.fd(b.nodes.noiseshift(plain_model, rec2), sp, n, **kw)
            gap_recal = testbed.gap(fd_plain, fd_recal, fd_native)
        cases.append(
            {
                "spectrum": spectrum_name(sp),
                "variant": variant,
                "N": n,
                "applied_at": label,
                **{"steps": steps, "sampler": sampler, "scheduler": scheduler},
                "fd_plain": fd_plain,
                "fd_noiseshift": fd_ns,
                "fd_native": fd_native,
                "gap_closed": testbed.gap(fd_plain, fd_ns, fd_native),
                "fd_recalibrated": fd_recal,
                "gap_closed_recalibrated": gap_recal,
            }
        )
    return cases


def transfer_table(cases: list[dict]) -> None:
    rows = [
        [c["spectrum"], c["variant"], c["N"], c["applied_at"]]
        + [fmt(c["fd_plain"]), fmt(c["fd_noiseshift"]), fmt(c["fd_native"])]
        + [pct(c["gap_closed"], ".0f"), fmt(c["fd_recalibrated"])]
        + [pct(c["gap_closed_recalibrated"], ".0f")]
        for c in cases
    ]
    print_table(
        f"Table 2: transfer of the {CAL_STEPS}-step {CAL_SCHEDULER} calibration "
        "(recal = calibrated at the target schedule itself)",
        ["spectrum", "variant", "N", "applied at", "FD plain", "FD NoiseShift", "FD native"]
        + ["gap closed", "FD recal", "gap recal"],
        rows,
    )


# --------------------------------------------------------------------------- 3. search cost


def section_cost(b: Bench) -> None:
    print_section("3. Search cost: grid vs fast")
    warm_up_search(b.spectra[0])
    cases = [cost_case_testbed(b, si, variant, n) for si, variant, n in b.cfg["cost_cases"]]
    if b.cfg["tiny_cost"]:
        cases.append(cost_case_tiny_sd3())
    cost_table(b.cfg, cases)
    judge_cost(b.run, cases)
    b.run.data["cost"] = cases
    exhaustive = [
        exhaustive_case(b, key, i)
        for key in b.cfg["exhaustive_cases"]
        for i in b.cfg["exhaustive_steps"]
    ]
    exhaustive_table(exhaustive)
    b.run.data["exhaustive"] = exhaustive


def warm_up_search(sp) -> None:
    """One small search, so the first timed one does not pay for imports and caches."""
    warm = testbed.model(sp, M, "pixel")
    sigmas = testbed.sigmas(warm, 4, CAL_SCHEDULER)
    noiseshift_calibration(warm, testbed.cal_latents(sp, 8, 4), sigmas, "grid")


def grid_and_fast(model, x0, sigmas, **kw) -> dict:
    """mode -> (search result, wall seconds)."""
    out = {}
    for mode in ("grid", "fast"):
        res, _, wall = noiseshift_calibration(model, x0, sigmas, mode, **kw)
        out[mode] = (res, wall)
    return out


def cost_case_testbed(b: Bench, si: int, variant: str, n: int) -> dict:
    sp = b.spectra[si]
    model = testbed.model(sp, M, variant)
    sigmas = testbed.sigmas(model, CAL_STEPS, CAL_SCHEDULER)
    x0 = testbed.cal_latents(sp, n, b.cfg["cal_count"])
    out = grid_and_fast(model, x0, sigmas)
    b.cost_results[(si, variant, n)] = (out, x0, sigmas)
    return cost_case(f"testbed {spectrum_name(sp)} {variant}", n, out)


def cost_case_tiny_sd3() -> dict:
    tm = tiny_models.tiny_sd3()
    sigmas = testbed.sigmas(tm.patcher, CAL_STEPS, CAL_SCHEDULER)
    gen = torch.Generator().manual_seed(CAL_DATA_SEED)
    x0 = torch.randn(8, 16, 16, 16, generator=gen)
    out = grid_and_fast(tm.patcher, x0, sigmas, max_batch=64, positive=tm.conditioning(1))
    return cost_case("tiny SD3 (random weights), 8 latents", 16, out, info=True)


def cost_case(name, n, out, info=False) -> dict:
    g, gw = out["grid"]
    f, fw = out["fast"]
    return {
        "case": name,
        "N": n,
        "info": info,
        "grid_nfe": g.nfe,
        "fast_nfe": f.nfe,
        "nfe_ratio": g.nfe / f.nfe,
        "grid_s": gw,
        "fast_s": fw,
        "grid_error": g.total_error_after,
        "fast_error": f.total_error_after,
        "error_before": g.total_error_before,
        "rel_error": (f.total_error_after - g.total_error_after) / g.total_error_after,
        "grid_sigma_hat": g.sigma_hat,
        "fast_sigma_hat": f.sigma_hat,
        "sigmas": g.sigmas,
        "max_abs_hat_diff": max(abs(a - b) for a, b in zip(g.sigma_hat, f.sigma_hat, strict=True)),
    }


def cost_table(cfg: dict, cases: list[dict]) -> None:
    rows = [
        [c["case"] + (" [info]" if c["info"] else ""), c["N"], c["grid_nfe"], c["fast_nfe"]]
        + [f"{c['nfe_ratio']:.1f}x", f"{c['grid_s']:.2f}", f"{c['fast_s']:.2f}"]
        + [f"{c['grid_error']:.6g}", f"{c['fast_error']:.6g}", pct(c["rel_error"], "+.3f")]
        + [f"{c['error_before']:.6g}"]
        for c in cases
    ]
    print_table(
        f"Table 3a: calibration cost, {CAL_STEPS}-step {CAL_SCHEDULER} schedule "
        f"({cfg['cal_count']} latents on the testbed); "
        "err = total one-step error after (sum over steps)",
        ["case", "N", "grid NFE", "fast NFE", "NFE ratio", "grid s", "fast s", "grid err"]
        + ["fast err", "fast vs grid", "before"],
        rows,
    )
    print("(fast vs grid: (fast - grid) / grid of the total error; negative = fast lower)\n")


def judge_cost(run: Run, cases: list[dict]) -> None:
    """S3: fast needs 5x fewer evaluations than grid for no more than 1% more error."""
    for c in cases:
        if c["info"]:
            continue
        name = f"{c['case']} N={c['N']}"
        run.check(
            c["nfe_ratio"] >= 5,
            f"S3 {name}: grid/fast NFE = {c['nfe_ratio']:.1f}x (target >= 5x)",
        )
        run.check(
            c["rel_error"] <= 0.01,
            f"S3 {name}: fast total error {pct(c['rel_error'], '+.3f')} vs grid "
            f"(target within 1%, lower is better)",
        )


def exhaustive_case(b: Bench, key, i: int) -> dict:
    """Step i of a section 3 search against a dense scan of the same one-step error."""
    si, variant, n = key
    out, x0, sigmas = b.cost_results[key]
    results = {mode: out[mode][0] for mode in ("grid", "fast")}
    check = search_check.step_check(b.spectra[si], variant, x0, sigmas, i, results)
    return {"case": f"{spectrum_name(b.spectra[si])} {variant} N={n}", **check}


def exhaustive_table(cases: list[dict]) -> None:
    rows = []
    for c in cases:
        g, f = c["grid"], c["fast"]
        rows.append(
            [c["case"], c["step"], f"{c['sigma']:.4f}", f"{c['global_best_dense']:.3f}"]
            + [f"{g['exhaustive_sigma_hat']:.4f}", f"{g['sigma_hat']:.4f}"]
            + [pct(g["excess"], "+.4f"), f"{f['exhaustive_sigma_hat']:.4f}"]
            + [f"{f['sigma_hat']:.4f}", pct(f["excess"], "+.4f")]
            + [f"{c['error_plain'] / g['exhaustive_error'] - 1:+.1%}"]
        )
    print_table(
        "Table 3b: exhaustive check (dense candidates every 0.001 on [0, 1], then 0.0001 "
        "around the optimum, within each mode's allowed range [0, previous sigma_hat])",
        ["case", "step", "sigma", "global opt", "optimum (grid range)", "grid", "grid excess"]
        + ["optimum (fast range)", "fast", "fast excess", "plain excess"],
        rows,
    )
    print(
        "(global opt = best of the dense list on [0, 1]; excess = error / exhaustive optimum\n"
        " within that mode's range - 1; plain excess = conditioning on sigma itself, against\n"
        " the grid range's optimum)\n"
    )


# --------------------------------------------------------------------------- 4. overhead


def section_overhead(b: Bench) -> None:
    o = b.cfg["overhead"]
    print_section(
        f"4. Sampling overhead ({o['latent']}x{o['latent']} latent, batch "
        f"{o['batch']}, {o['steps']} Euler steps, cfg 1)"
    )
    cases = []
    for name in ("sd3", "flux"):
        cases.append(overhead_case(b, name, o))
        print(f"tiny {name}: NoiseShift record: {cases[-1]['record']}")
    print()
    overhead_tables(o, cases)
    for c in cases:
        b.run.check(
            c["ratio"] <= 1.03,
            f"S4 tiny {c['model']}: patched/plain = {c['ratio']:.4f} (target <= 1.03)"
            + (f" [quick: {o['repeats']} repeats, noisy]" if b.run.quick else ""),
        )
    b.run.data["overhead"] = cases


def overhead_record(tm, sigmas, o) -> tuple[dict, str]:
    """A real fast calibration, or (quick) sigma_hat = 1.05 sigma: (record, its source)."""
    model = tm.patcher
    h = w = o["latent"]
    if o["calibrate"]:
        gen = torch.Generator().manual_seed(CAL_DATA_SEED)
        lat = torch.randn(4, 16, h, w, generator=gen)
        res, record, cal_s = noiseshift_calibration(
            model, lat, sigmas, "fast", max_batch=32, positive=tm.conditioning(1)
        )
        return record, f"fast calibration ({res.nfe} NFE, {cal_s:.1f} s)"
    levels = [float(s) for s in sigmas[:-1]]
    shifted = [min(1.0, s * 1.05) for s in levels]
    record = synthetic_record(model, w, levels, shifted, "identity plus shift")
    return record, "identity-plus-shift record"


def overhead_case(b: Bench, name: str, o: dict) -> dict:
    """Interleaved sampling times of the tiny model with and without NoiseShift."""
    tm = tiny_models.TINY_MODELS[name]()
    model = tm.patcher
    sigmas = testbed.sigmas(model, o["steps"], CAL_SCHEDULER)
    record, source = overhead_record(tm, sigmas, o)
    patched = b.nodes.noiseshift(model, record)
    lat = sampling.empty_latent(model, o["latent"], o["latent"], o["batch"])
    run = TimedSampler(lat, tm.conditioning(o["batch"]), o["steps"])
    times = interleaved(run, model, patched, o["repeats"], o["warmup"])
    r = ratios(times)
    prof = level_profile(patched, model, sigmas, o, run)
    prof["estimated_overhead"] = (prof["in_sample_patched_ms"] - prof["in_sample_plain_ms"]) / (
        1000 * r["median_plain_s"]
    )
    return {
        "model": name,
        "record": source,
        "plain_s": times["t"]["plain"],
        "patched_s": times["t"]["patched"],
        **{k: r[k] for k in ("median_plain_s", "median_patched_s", "ratio")},
        **{k: r[k] for k in ("median_pair_ratio", "pair_ratio_quartiles", "min_ratio")},
        "plain_cpu_s": times["cpu"]["plain"],
        "patched_cpu_s": times["cpu"]["patched"],
        "cpu_ratio": r["cpu_ratio"],
        "profile": prof,
    }


def overhead_tables(o: dict, cases: list[dict]) -> None:
    rows = []
    for c in cases:
        p, (q1, q3) = c["profile"], c["pair_ratio_quartiles"]
        rows.append(
            [f"tiny {c['model']}", f"{1000 * c['median_plain_s']:.1f}"]
            + [f"{1000 * c['median_patched_s']:.1f}", f"{c['ratio']:.4f}"]
            + [f"{c['median_pair_ratio']:.4f}", f"{q1:.3f}-{q3:.3f}", f"{c['min_ratio']:.4f}"]
            + [f"{c['cpu_ratio']:.4f}", p["calls_per_sample"]]
            + [f"{p['in_sample_plain_ms']:.2f}", f"{p['in_sample_patched_ms']:.2f}"]
            + [f"{p['estimated_overhead']:+.2%}"]
        )
    print_table(
        f"Table 4: sampling wall time, median of {o['repeats']} interleaved repeats",
        ["model", "plain ms", "NoiseShift ms", "ratio", "pair ratio", "pair IQR", "min ratio"]
        + ["CPU-time ratio", "timestep calls", "in timestep() plain ms", "NoiseShift ms"]
        + ["est. overhead"],
        rows,
    )
    keys = ("plain_timestep_us", "patched_timestep_us", "resolver_us", "interp_us")
    keys += ("interp_cached_us", "interp_numpy_us")
    print_table(
        "Table 4b: per-call cost of the conditioning level (microseconds, median)",
        ["model", "timestep() plain", "timestep() NoiseShift", "level fn (resolver)"]
        + ["interp_sigma_hat", "bare interpolation", "numpy.interp"],
        [[f"tiny {c['model']}", *(f"{c['profile'][k]:.1f}" for k in keys)] for c in cases],
    )
    print(
        "(ratio = median NoiseShift / median plain; pair ratio = median of the per-repeat\n"
        " ratios, pair IQR their quartiles (the measurement's spread); min ratio = fastest\n"
        " / fastest; CPU-time ratio = the medians of process CPU time. In timestep(): total\n"
        " time spent in model_sampling.timestep() during one timed sample, which for\n"
        " NoiseShift includes the level function; est. overhead = the difference / plain\n"
        " sample time.\n"
        " Bare interpolation = torch.searchsorted + lerp on prebuilt knot tensors,\n"
        " numpy.interp = the same on prebuilt knot arrays: what a map that validates once\n"
        " and keeps its knots would cost per call)\n"
    )


# --------------------------------------------------------------------------- main


def plots(run: Run) -> list[Path]:
    return figures.noiseshift(run, M, settings(), f"{CAL_STEPS}-step {CAL_SCHEDULER}")


def main(argv=None) -> int:
    args = parse_args(__doc__, argv)
    run = Run.start(args, FULL, QUICK)
    describe_run(args.quick)
    # NoiseShift gets its calibration connected; a private empty store keeps
    # the user's calibration files out of it.
    with tempfile.TemporaryDirectory(prefix="noiseshift-bench-") as folder:
        b = Bench(run, Nodes(private_store(folder)), testbed.spectra(run.cfg["spectra"]))
        timings = run_sections(
            (
                ("quality", lambda: section_quality(b)),
                ("transfer", lambda: section_transfer(b)),
                ("cost", lambda: section_cost(b)),
                ("overhead", lambda: section_overhead(b)),
            )
        )
        return finish(run, "noiseshift", timings, plots, SEEDS)


if __name__ == "__main__":
    sys.exit(main())

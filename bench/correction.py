"""Noise Level Correction benchmark: testbed quality, calibration cost, overhead.

    .venv/bin/python bench/correction.py [--quick] [--out DIR] [--threads N]

Not a test: each target prints PASS or MISS (bench/README.md, docs/results-correction.md).
Calibration through ``noisecal_host.calibrate.run_search`` with ``correction`` set
(as the Calibrate node runs it), the pack's Noise Level Correction and NoiseShift
nodes with the record connected (a private store), sampling through KSampler.

Sections:
1. Quality: the exact-denoiser testbed trained at M = 32 (f0 = 3 and 1, alpha 2.5)
   at N = M and M/2 ("image", "pixel"), euler and heun at 4, 8, 20, 50 "simple"
   steps: FD ratio to plain (512 samples, the same noise for every method) of NLC
   with the table calibrated at the cell's steps (the default), with the 20-step
   table (transfer), NoiseShift, both nodes and the native model; network
   evaluations per sample (forward hook) and each calibration's NFE and time.
   Judges: C1 the default never more than 2% worse than plain, C2 below 0.98x
   somewhere, C3 no extra network evaluations when sampling.
2. Online candidate: the per-sample apparent noise level as the state function
   (``bench/lib/online_level.py``), Euler cells of the first spectrum.
3. Overhead: tiny SD3 with the node (a synthetic table, r = -0.02) against the
   unpatched model, interleaved repeats; the time in the state function.

Seeds: ``bench/lib/seeds.py``.
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import figures, online_level, testbed
from bench.lib.calibration import Nodes, correction_calibration, private_store, synthetic_record
from bench.lib.report import cell_name, fmt, print_section, print_table, ratio, spectrum_name
from bench.lib.run import Run, RunState, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import ALL as SEEDS
from bench.lib.seeds import SAMPLE_SEED
from bench.lib.testbed import CAL_SCHEDULER, CAL_STEPS, M, NetworkCounter
from bench.lib.timing import TimedSampler, interleaved, ratios, state_fn_profile
from noise_calibration.noisecal.correction_search import CorrectionResult
from noise_calibration.noisecal_host import user_messages
from noise_calibration.noisecal_host.testing import sampling, tiny_models

WORSE = 1.02  # the default may not make FD worse than this ratio to plain anywhere
BETTER = 0.98  # "improves": below this ratio
DIAGNOSIS_STRENGTH = 0.5  # a cell over WORSE is sampled again with the table at this strength
SYNTHETIC_R = -0.02  # the overhead section's table entry at every level
PROFILE_ROWS = 7  # about this many levels of each online profile are printed
# (label, variant, N): the rows; at N = M the two variants coincide
CASES = [("N=32", "image", M), ("N=16 image", "image", M // 2), ("N=16 pixel", "pixel", M // 2)]
METHODS = [
    ("default", "NLC (table at these steps)"),
    ("table20", f"NLC ({CAL_STEPS}-step table)"),
    ("noiseshift", "NoiseShift"),
    ("both", "NoiseShift + NLC"),
    ("native", "native"),
]

FULL = {
    "spectra": [(3.0, 2.5), (1.0, 2.5)],
    "cases": CASES,
    "samplers": ["euler", "heun"],
    "steps": [4, 8, 20, 50],
    "cal_count": 32,
    "samples": 512,
    "online": {"spectra": 1, "steps": [4, 8, 20, 50], "grid": 101, "profile_steps": 20},
    "overhead": {"latent": 32, "batch": 4, "steps": 20, "repeats": 15, "warmup": 2, "reps": 300},
}
QUICK = {
    **FULL,
    "spectra": [(3.0, 2.5)],
    "steps": [4, 20],
    "samples": 128,
    "online": {**FULL["online"], "steps": [4, 20]},
    "overhead": {"latent": 32, "batch": 4, "steps": 10, "repeats": 4, "warmup": 1, "reps": 100},
}


@dataclass
class Bench(RunState):
    """The run and what its sections hand on: per (spectrum, case) the calibration
    latents, the testbed model and every calibrated table (``case_data``)."""

    nodes: Nodes
    spectra: list
    counter: NetworkCounter = field(default_factory=NetworkCounter)
    case_data: dict = field(default_factory=dict)

    def model(self, sp, train_res: int, variant: str):
        """The testbed model, its network calls and rows counted by ``counter``."""
        return self.counter.watch(testbed.model(sp, train_res, variant))

    def fd_counted(self, model, sp, n, steps: int, sampler: str) -> tuple[float, float]:
        """FD of the samples and the network evaluations (rows) per sample."""
        self.counter.reset()
        count = self.cfg["samples"]
        fd = testbed.fd(model, sp, n, count, steps=steps, sampler=sampler, scheduler=CAL_SCHEDULER)
        return fd, self.counter.rows / count


# --------------------------------------------------------------------------- 1. quality


def section_quality(b: Bench) -> None:
    cfg = b.cfg
    print_section(
        f"1. Testbed quality (M = {M}, {cfg['samples']} samples, steps {cfg['steps']}, "
        f"{' and '.join(cfg['samplers'])}, {CAL_SCHEDULER})"
    )
    cells, cals = [], []
    for sp in b.spectra:
        for label, variant, n in cfg["cases"]:
            cals += calibrate_case(b, sp, label, variant, n)
            cells += quality_cells(b, sp, label, n)
    b.run.data["quality"] = cells
    b.run.data["calibrations"] = cals
    print()
    quality_table(cfg, cells)
    calibration_table(cfg, cals)
    judge_quality(b, cells)


def calibrate_case(b: Bench, sp, label: str, variant: str, n: int) -> list[dict]:
    """run_search with the correction for every sampler and step count (and the
    CAL_STEPS table); the tables go to ``b.case_data``, the cost rows are returned."""
    model = b.model(sp, M, variant)
    x0 = testbed.cal_latents(sp, n, b.cfg["cal_count"])
    tables, cals = {}, []
    for sampler in b.cfg["samplers"]:
        for steps in sorted(set(b.cfg["steps"]) | {CAL_STEPS}):
            sigmas = testbed.sigmas(model, steps, CAL_SCHEDULER)
            res, corr, record, wall = correction_calibration(model, x0, sigmas, sampler)
            tables[(sampler, steps)] = (corr, record)
            cals.append(calibration_row(sp, label, sampler, steps, res, corr, wall))
    b.case_data[(sp, label)] = {"x0": x0, "tables": tables, "model": model}
    return cals


def calibration_row(sp, label: str, sampler: str, steps: int, res, corr, wall: float) -> dict:
    return {
        "spectrum": spectrum_name(sp),
        "case": label,
        "sampler": sampler,
        "steps": steps,
        "nlc_nfe": corr.nfe,
        "nlc_s": corr.wall_time_s,
        "noiseshift_nfe": res.nfe,
        "run_search_s": wall,
        "sigmas": corr.sigmas,
        "r": corr.r,
        "error_before": corr.error_before,
        "error_after": corr.error_after,
        "strength": corr.params["strength"],
        "final_distance": corr.params["final_distance"],
    }


def quality_cells(b: Bench, sp, label: str, n: int) -> list[dict]:
    """Every (sampler, steps) cell of one case; NoiseShift is the CAL_STEPS Euler one."""
    info = b.case_data[(sp, label)]
    model, tables = info["model"], info["tables"]
    models = {
        "plain": model,
        "noiseshift": b.nodes.noiseshift(model, tables[("euler", CAL_STEPS)][1]),
        "native": b.model(sp, n, "pixel") if n != M else None,  # N = M: plain is native
    }
    return [
        quality_cell(b, sp, label, n, models, tables, sampler, steps)
        for sampler in b.cfg["samplers"]
        for steps in b.cfg["steps"]
    ]


def quality_cell(b: Bench, sp, label, n, models, tables, sampler, steps) -> dict:
    fd, nfe = cell_fds(b, sp, n, models, tables, sampler, steps)
    cell = {
        "spectrum": spectrum_name(sp),
        "case": label,
        "N": n,
        "sampler": sampler,
        "steps": steps,
        "fd": fd,
        "nfe_per_sample": nfe,
        "ratio": {k: ratio(fd[k], fd["plain"]) for k, _ in METHODS},
        "fd_floor": testbed.floor(sp, n, b.cfg["samples"]),
    }
    r = cell["ratio"]
    print(
        f"  {cell['spectrum']} {label} {sampler} {steps}: plain {fmt(fd['plain'])}, "
        f"default {r['default']:.3f}x, {CAL_STEPS}-step {r['table20']:.3f}x, "
        f"NoiseShift {r['noiseshift']:.3f}x, both {r['both']:.3f}x",
        flush=True,
    )
    return cell


def cell_fds(b: Bench, sp, n, models, tables, sampler, steps) -> tuple[dict, dict]:
    """FD and network evaluations per sample of every method, on the same noise."""
    fd, nfe = {}, {}

    def measure(name, m):
        fd[name], nfe[name] = b.fd_counted(m, sp, n, steps, sampler)

    plain, shifted = models["plain"], models["noiseshift"]
    default_record = tables[(sampler, steps)][1]
    measure("plain", plain)
    measure("default", b.nodes.nlc(plain, default_record))
    if steps == CAL_STEPS:  # the same table
        fd["table20"], nfe["table20"] = fd["default"], nfe["default"]
    else:
        measure("table20", b.nodes.nlc(plain, tables[(sampler, CAL_STEPS)][1]))
    measure("noiseshift", shifted)
    measure("both", b.nodes.nlc(shifted, default_record))
    if models["native"] is None:
        fd["native"], nfe["native"] = fd["plain"], nfe["plain"]
    else:
        measure("native", models["native"])
    return fd, nfe


def quality_table(cfg: dict, cells: list[dict]) -> None:
    rows = [
        [c["spectrum"], c["case"], c["sampler"], c["steps"], f"{c['nfe_per_sample']['plain']:g}"]
        + [fmt(c["fd"]["plain"]), *(f"{c['ratio'][k]:.3f}" for k, _ in METHODS)]
        + [fmt(c["fd_floor"])]
        for c in cells
    ]
    print_table(
        f"Table 1: FD ratio to plain ({cfg['samples']} samples, seed {SAMPLE_SEED}; "
        "< 1 = better than plain)",
        ["spectrum", "case", "sampler", "steps", "NFE", "FD plain", "NLC default"]
        + [f"NLC {CAL_STEPS}-step", "NoiseShift", "both", "native", "FD floor"],
        rows,
    )
    print(
        "(NLC default = the table calibrated at the cell's step count for its sampler;\n"
        f" NLC {CAL_STEPS}-step = the {CAL_STEPS}-step table of the same sampler; NoiseShift"
        f" = fast calibration\n at {CAL_STEPS} Euler steps; both = NoiseShift and NLC default"
        f" through both nodes; native =\n the exact denoiser trained at N (= plain at N = {M});"
        " NFE = network evaluations per\n"
        " sample, plain; FD floor = the expected FD of true samples)\n"
    )


def calibration_table(cfg: dict, cals: list[dict]) -> None:
    rows = []
    for c in cals:
        moved = [v for v in c["r"] if v != 0.0]
        rows.append(
            [c["spectrum"], c["case"], c["sampler"], c["steps"], c["nlc_nfe"]]
            + [f"{c['nlc_nfe'] / (cfg['cal_count'] * len(c['r'])):.1f}", f"{c['nlc_s']:.2f}"]
            + [c["noiseshift_nfe"], f"{c['run_search_s']:.2f}", f"{len(moved)}/{len(c['r'])}"]
            + [f"{min(c['r']):+.3f}", f"{max(c['r']):+.3f}"]
        )
    print_table(
        f"Table 2: calibration cost ({cfg['cal_count']} latents, run_search fast mode "
        "with the correction table)",
        ["spectrum", "case", "sampler", "steps", "NLC NFE", "per latent-step", "NLC s"]
        + ["NoiseShift NFE", "run_search s", "r != 0", "min r", "max r"],
        rows,
    )
    print(
        "(NLC NFE / s: CorrectionResult.nfe and wall time; run_search s: the whole call,\n"
        " NoiseShift search included; r != 0: steps whose table entry moves the level)\n"
    )


def judge_quality(b: Bench, cells: list[dict]) -> None:
    """C1 never worse (a diagnosis per cell over the line), C2 better somewhere,
    C3 no extra network evaluations."""
    for c in judge_never_worse(b.run, cells):
        c["diagnosis"] = diagnose(b, c)
    judge_improves(b.run, cells)
    judge_nfe(b.run, cells)


def judge_never_worse(run: Run, cells: list[dict]) -> list[dict]:
    """C1; returns the cells over the line."""
    worst = max(cells, key=lambda c: c["ratio"]["default"])
    over = [c for c in cells if c["ratio"]["default"] > WORSE]
    run.check(
        not over,
        f"C1 NLC default never worse than {WORSE:.2f}x plain: worst cell {cell_name(worst)} "
        f"{worst['ratio']['default']:.3f}x"
        + (f"; over in {len(over)} cells: " + ", ".join(map(cell_name, over)) if over else ""),
    )
    return over


def judge_improves(run: Run, cells: list[dict]) -> None:
    better = [c for c in cells if c["ratio"]["default"] < BETTER]
    rest = [c for c in cells if c["ratio"]["default"] >= BETTER]
    best = min(cells, key=lambda c: c["ratio"]["default"])
    # name the shorter list: the cells that improve, or those that do not
    named, which = (better, "in") if len(better) <= len(rest) else (rest, "not in")
    run.check(
        bool(better),
        f"C2 NLC default improves FD (< {BETTER:.2f}x) in {len(better)}/{len(cells)} cells"
        + (f"; {which}: " if named else "")
        + ", ".join(f"{cell_name(c)} {c['ratio']['default']:.3f}x" for c in named)
        + f"; best {cell_name(best)} {best['ratio']['default']:.3f}x",
    )


def judge_nfe(run: Run, cells: list[dict]) -> None:
    def same_as_plain(nfe):
        return nfe["plain"] > 0 and all(
            nfe[k] == nfe["plain"] for k in ("default", "table20", "noiseshift", "both")
        )

    same = [c for c in cells if same_as_plain(c["nfe_per_sample"])]
    run.check(
        len(same) == len(cells),
        "C3 NLC adds no network evaluations when sampling: NFE per sample of NLC, "
        f"NoiseShift and both equal to plain in {len(same)}/{len(cells)} cells",
    )


def diagnose(b: Bench, c: dict) -> dict:
    """For a cell over the line: the same table at DIAGNOSIS_STRENGTH."""
    sp = next(s for s in b.spectra if spectrum_name(s) == c["spectrum"])
    info = b.case_data[(sp, c["case"])]
    _, record = info["tables"][(c["sampler"], c["steps"])]
    weaker = b.nodes.nlc(info["model"], record, DIAGNOSIS_STRENGTH)
    fd, _ = b.fd_counted(weaker, sp, c["N"], c["steps"], c["sampler"])
    r = fd / c["fd"]["plain"]
    print(
        f"      diagnosis {cell_name(c)}: NLC at strength {DIAGNOSIS_STRENGTH:g} {r:.3f}x",
        flush=True,
    )
    return {f"strength_{DIAGNOSIS_STRENGTH:g}": r}


# --------------------------------------------------------------------------- 2. online


def section_online(b: Bench) -> None:
    o = b.cfg["online"]
    print_section("2. Online candidate: per-sample apparent noise level")
    cases, profiles = [], []
    for sp in b.spectra[: o["spectra"]]:
        for label, _, n in b.cfg["cases"]:
            for c in online_cells(b, sp, label):
                case, log = online_case(b, sp, label, n, c)
                cases.append(case)
                if c["steps"] == o["profile_steps"]:
                    corr, _ = b.case_data[(sp, label)]["tables"][("euler", c["steps"])]
                    profiles.append(online_profile(c, label, log, corr.table()))
    online_table(cases)
    profile_table(o, profiles)
    worse = [c for c in cases if c["ratio_online"] > 1.0]
    print(
        f"online apparent level: FD worse than plain in {len(worse)}/{len(cases)} Euler cells "
        f"(ratio {min(c['ratio_online'] for c in cases):.3f}-"
        f"{max(c['ratio_online'] for c in cases):.3f}x)\n"
    )
    b.run.data["online"] = {"cells": cases, "profiles": profiles}


def online_cells(b: Bench, sp, label: str) -> list[dict]:
    """The section 1 Euler cells of one case at the online section's step counts."""
    steps = b.cfg["online"]["steps"]
    return [
        c
        for c in b.run.data["quality"]
        if c["sampler"] == "euler"
        and c["steps"] in steps
        and c["spectrum"] == spectrum_name(sp)
        and c["case"] == label
    ]


def online_case(b: Bench, sp, label: str, n: int, c: dict) -> tuple[dict, list]:
    """FD with the apparent level as the state function; (results, the level log)."""
    info = b.case_data[(sp, label)]
    log: list = []
    model = online_level.online_model(info["model"], info["x0"], b.cfg["online"]["grid"], log)
    t0 = time.perf_counter()
    fd, nfe = b.fd_counted(model, sp, n, c["steps"], "euler")
    wall = time.perf_counter() - t0
    case = {
        "spectrum": c["spectrum"],
        "case": label,
        "steps": c["steps"],
        "fd_plain": c["fd"]["plain"],
        "fd_online": fd,
        "ratio_online": fd / c["fd"]["plain"],
        "ratio_default": c["ratio"]["default"],
        "nfe_per_sample": nfe,
        "wall_s": wall,
    }
    return case, log


def online_profile(c: dict, label: str, log: list, table) -> dict:
    """The logged r per network call (mean and spread over samples) and the table's r."""
    sig = [s for s, _ in log]
    return {
        "spectrum": c["spectrum"],
        "case": label,
        "sigma": sig,
        "online_r_mean": [statistics.fmean(rs) for _, rs in log],
        "online_r_std": [statistics.pstdev(rs) for _, rs in log],
        "table_r": table(torch.tensor(sig, dtype=torch.float64)).tolist(),
    }


def online_table(cases: list[dict]) -> None:
    rows = [
        [c["spectrum"], c["case"], c["steps"], fmt(c["fd_plain"]), fmt(c["fd_online"])]
        + [f"{c['ratio_online']:.3f}", f"{c['ratio_default']:.3f}"]
        for c in cases
    ]
    print_table(
        "Table 3: online apparent level (Euler), FD ratio to plain",
        ["spectrum", "case", "steps", "FD plain", "FD online", "online", "NLC default"],
        rows,
    )


def profile_table(o: dict, profiles: list[dict]) -> None:
    rows = []
    for p in profiles:
        for k in range(0, len(p["sigma"]), max(1, len(p["sigma"]) // PROFILE_ROWS)):
            rows.append(
                [p["spectrum"], p["case"], f"{p['sigma'][k]:.3f}"]
                + [f"{p['online_r_mean'][k]:+.4f}", f"{p['online_r_std'][k]:.4f}"]
                + [f"{p['table_r'][k]:+.4f}"]
            )
    print_table(
        f"Table 3b: r = sigma_hat / sigma - 1 along {o['profile_steps']} Euler steps: "
        "online estimate (mean and spread over samples) and the calibrated table",
        ["spectrum", "case", "sigma", "online r", "online r std", "table r"],
        rows,
    )


# --------------------------------------------------------------------------- 3. overhead


def section_overhead(b: Bench) -> None:
    o = b.cfg["overhead"]
    print_section(
        f"3. Sampling overhead (tiny SD3, {o['latent']}x{o['latent']} latent, "
        f"batch {o['batch']}, {o['steps']} Euler steps, cfg 1)"
    )
    case = overhead_case(b, o)
    overhead_table(o, case)
    b.run.data["overhead"] = case


def synthetic_table(model, sigmas: list[float], size: int) -> dict:
    """A record whose correction table has r = SYNTHETIC_R at every level."""
    table = CorrectionResult(
        sigmas=sigmas,
        r=[SYNTHETIC_R] * len(sigmas),
        error_before=[0.0] * len(sigmas),
        error_after=[0.0] * len(sigmas),
        nfe=0,
        wall_time_s=0.0,
        params={"sampler": "euler", "source": f"synthetic r = {SYNTHETIC_R:g}"},
    )
    return synthetic_record(model, size, sigmas, sigmas, "synthetic", correction=table.to_record())


def overhead_case(b: Bench, o: dict) -> dict:
    """Interleaved sampling times of tiny SD3 with and without the NLC node."""
    tm = tiny_models.tiny_sd3()
    model = tm.patcher
    sigmas = [float(s) for s in testbed.sigmas(model, o["steps"], CAL_SCHEDULER)[:-1]]
    patched = b.nodes.nlc(model, synthetic_table(model, sigmas, o["latent"]))
    lat = sampling.empty_latent(model, o["latent"], o["latent"], o["batch"])
    run = TimedSampler(lat, tm.conditioning(o["batch"]), o["steps"])
    nfe, changed = calls_and_change(run, model, patched)
    times = interleaved(run, model, patched, o["repeats"], o["warmup"])
    r = ratios(times)
    prof = state_fn_profile(patched, run, sigmas, o)
    return {
        "model": "sd3",
        "record": f"synthetic table, r = {SYNTHETIC_R:g}",
        "plain_s": times["t"]["plain"],
        "nlc_s": times["t"]["patched"],
        "median_plain_s": r["median_plain_s"],
        "median_nlc_s": r["median_patched_s"],
        **{k: r[k] for k in ("ratio", "median_pair_ratio", "pair_ratio_quartiles")},
        **{k: r[k] for k in ("min_ratio", "cpu_ratio")},
        "calls": {k: v[0] for k, v in nfe.items()},
        "rows": {k: v[1] for k, v in nfe.items()},
        "max_abs_output_change": changed,
        "profile": prof,
        "estimated_overhead": prof["in_sample_ms"] / (1000 * r["median_plain_s"]),
    }


def calls_and_change(run: TimedSampler, plain, patched) -> tuple[dict, float]:
    """Network (calls, rows) of one sample of each, and max |NLC - plain|."""
    nfe, outs = {}, {}
    with testbed.counting(plain) as counter:
        for name, m in (("plain", plain), ("NLC", patched)):
            counter.reset()
            run(m)
            nfe[name] = (counter.calls, counter.rows)
            outs[name] = run.out
    return nfe, float((outs["plain"] - outs["NLC"]).abs().max())


def overhead_table(o: dict, c: dict) -> None:
    p, (q1, q3) = c["profile"], c["pair_ratio_quartiles"]
    row = [
        ["tiny sd3", f"{1000 * c['median_plain_s']:.1f}", f"{1000 * c['median_nlc_s']:.1f}"]
        + [f"{c['ratio']:.4f}", f"{c['median_pair_ratio']:.4f}", f"{q1:.3f}-{q3:.3f}"]
        + [f"{c['min_ratio']:.4f}", f"{c['cpu_ratio']:.4f}"]
        + [f"{c['calls']['plain']}/{c['calls']['NLC']}", p["calls"], f"{p['in_sample_ms']:.2f}"]
        + [f"{c['estimated_overhead']:+.2%}", f"{p['state_fn_us']:.1f}"]
    ]
    print_table(
        f"Table 4: sampling wall time, median of {o['repeats']} interleaved repeats",
        ["model", "plain ms", "NLC ms", "ratio", "pair ratio", "pair IQR", "min ratio"]
        + ["CPU-time ratio", "calls plain/NLC", "state fn calls", "in state fn ms"]
        + ["est. overhead", "state fn us/call"],
        row,
    )
    print(
        "(ratio = median NLC / median plain sample time; pair ratio = median of the per-repeat\n"
        " ratios, pair IQR their quartiles; min ratio = fastest / fastest; CPU-time ratio =\n"
        " the medians of process CPU time; calls = network forward calls per sample (hook);\n"
        " in state fn = total time inside the NLC state function during one sample, est.\n"
        " overhead = that / plain sample time; us/call = warm microbenchmark of one call.\n"
        f" The patch changes the output: max |NLC - plain| = {c['max_abs_output_change']:.3g})\n"
    )


# --------------------------------------------------------------------------- main


def plots(run: Run) -> list[Path]:
    return figures.correction(run, METHODS, (BETTER, WORSE), M)


def main(argv=None) -> int:
    args = parse_args(__doc__, argv)
    run = Run.start(args, FULL, QUICK)
    # the "both" column pairs the nodes on purpose: their warning is known here
    logging.getLogger("noise_calibration").addFilter(
        lambda record: getattr(record, "message_id", None) != user_messages.PAIR
    )
    describe_run(args.quick)
    # records are connected to the nodes; a private empty store keeps the
    # user's calibration files out of it
    with tempfile.TemporaryDirectory(prefix="correction-bench-") as folder:
        b = Bench(run, Nodes(private_store(folder)), testbed.spectra(run.cfg["spectra"]))
        timings = run_sections(
            (
                ("quality", lambda: section_quality(b)),
                ("online", lambda: section_online(b)),
                ("overhead", lambda: section_overhead(b)),
            )
        )
        return finish(run, "correction", timings, plots, SEEDS)


if __name__ == "__main__":
    sys.exit(main())

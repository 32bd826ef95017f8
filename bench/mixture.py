"""Mixture benchmark: the Apply node on non-Gaussian data, with per-sample measures.

Run from the repository root::

    .venv/bin/python bench/mixture.py            # full run (30 cells, a few minutes on one thread)
    .venv/bin/python bench/mixture.py --quick    # four cells, under a minute
    .venv/bin/python bench/mixture.py --out DIR  # JSON goes to DIR (default out/bench)

Not a test: nothing here fails the run. Each target prints PASS or MISS.

The model is the mixture testbed (``noisecal/testing/mixture.py``: each sample
from one of K stationary Gaussian fields that differ in spectrum shape and
amplitude, with the exact posterior-mean denoiser) "trained" at M = 32, as a
ComfyUI MODEL (``testbed_model.make_mixture_model``), sampled at N = M, M/2
and M/4 (the "image" and "pixel" mismatch), euler 8 and 20 and heun 20 steps
("simple"). Calibration as in ``bench/apply.py``: ``calibrate(...,
correction=sampler, check=True)`` on the cell's schedule, the other table for
the columns by ``with_both_tables``; every method through the pack's nodes,
sampling through KSampler with the same noise for every model.

Methods: plain, NoiseShift 1, NLC 1 (table calibrated alone), NoiseShift 1 +
the joint NLC table at 1, the Apply node; native = the mixture's denoiser
trained at N (the reference). Measures (``noisecal/testing/per_sample.py``):
the batch-spectrum FD to the mixture's mean power (as ``bench/lib/testbed.fd``),
the SWD between the per-sample log band-power vectors of the samples and of
a true set, and the TV distance of the component histogram (exact-likelihood
classification) to the weights; each with its floor, the mean of the measure
over independent true sets of the same size.

Target: B1 Apply never worse than plain beyond the floor, in any measure, in
any cell (one line per measure, then the overall verdict).
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import testbed
from bench.lib.apply_models import (
    CANDIDATES,
    apply_model,
    calibrate_joint,
    candidate_model,
    guidance_weight,
)
from bench.lib.calibration import Nodes, private_store, with_both_tables
from bench.lib.mixture import (
    FLOOR_SEED,
    MEASURES,
    TITLES,
    TRUE_SEED,
    cal_latents,
    floors,
    measures,
    model,
)
from bench.lib.report import fmt, print_section, print_table
from bench.lib.run import Run, RunState, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import ALL as SEEDS
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED, SEARCH_SEED
from bench.lib.testbed import CAL_SCHEDULER, M
from noise_calibration.noisecal_host import user_messages
from noise_calibration.noisecal_host.calibration_job import DEFAULTS

METHODS = {  # column name -> check candidate (None: built here)
    "plain": "plain",
    "NS1": "noiseshift@1",
    "NLC1": "nlc@1",
    "NS+jNLC1": "noiseshift+nlc@1",
    "Apply": None,
    "native": None,
}
CASES = [
    ("N=32", "image", M),
    ("N=16 image", "image", M // 2),
    ("N=16 pixel", "pixel", M // 2),
    ("N=8 image", "image", M // 4),
    ("N=8 pixel", "pixel", M // 4),
]
RUNS = [("euler", 8), ("euler", 20), ("heun", 20)]
# cal_count: the Calibrate node's default (10 calibrated on, 6 held back for the check);
# samples: per method and cell, the same KSampler noise for every model
FULL = {
    "mixtures": ["two", "three"],
    "cases": CASES,
    "runs": RUNS,
    "cal_count": DEFAULTS.sample_count,
    "samples": 256,
}
QUICK = {
    "mixtures": ["two", "three"],
    "cases": [CASES[1], CASES[4]],
    "runs": [("euler", 8)],
    "cal_count": DEFAULTS.sample_count,
    "samples": 128,
}


@dataclass
class Bench(RunState):
    nodes: Nodes


def cell_name(c: dict) -> str:
    return f"[{c['mixture']} {c['case']} {c['sampler']} {c['steps']}]"


def method_models(b: Bench, name: str, variant: str, n: int, record: dict, full: dict) -> dict:
    """Every column's MODEL: the check candidates through the pack's nodes, Apply, native."""
    base = model(name, M, variant)
    by_name = {c.name: c for c in CANDIDATES}
    models = {
        col: candidate_model(b.nodes, base, full, by_name[cand])
        for col, cand in METHODS.items()
        if cand is not None
    }
    models["Apply"] = apply_model(b.nodes, base, record)
    models["native"] = model(name, n, "pixel")  # trained at N: both variants agree
    return models


def mixture_cell(b: Bench, name: str, label: str, variant: str, n: int, sampler: str, steps: int):
    """Calibrate one cell, sample every method with the same noise, measure."""
    cfg = b.cfg
    base = model(name, M, variant)
    x0 = cal_latents(name, n, cfg["cal_count"])
    sigmas = testbed.sigmas(base, steps, CAL_SCHEDULER)
    t0 = time.perf_counter()
    record, wall = calibrate_joint(base, x0, sigmas, sampler)
    full = with_both_tables(base, x0, sigmas, sampler, record)
    t1 = time.perf_counter()
    values = {}
    for col, m in method_models(b, name, variant, n, record, full).items():
        out = testbed.ksample_testbed(
            m, n, cfg["samples"], steps=steps, sampler=sampler, scheduler=CAL_SCHEDULER
        )
        values[col] = measures(name, out)
    fl = floors(name, n, cfg["samples"])
    cell = {
        "mixture": name,
        "case": label,
        "variant": variant,
        "N": n,
        "sampler": sampler,
        "steps": steps,
        "samples": cfg["samples"],
        "values": values,
        "floors": fl,
        "recommendation": record["check"]["recommendation"],
        "guidance": guidance_weight(record),
        "apply_worse": {k: values["Apply"][k] > values["plain"][k] + fl[k] for k in MEASURES},
        "calibration_s": t1 - t0,
        "calibration_joint_s": wall,
        "sampling_s": time.perf_counter() - t1,
    }
    print_cell(cell)
    return cell


def print_cell(c: dict) -> None:
    v, fl = c["values"], c["floors"]
    parts = [
        f"{k} plain {fmt(v['plain'][k], '.4g')} Apply {fmt(v['Apply'][k], '.4g')} "
        f"(floor {fmt(fl[k], '.3g')})"
        for k in MEASURES
    ]
    worse = [k for k in MEASURES if c["apply_worse"][k]]
    print(
        f"  {cell_name(c)} recommends {c['recommendation']} (guidance weight "
        f"{c['guidance']:g}); "
        + "; ".join(parts)
        + (f"; Apply WORSE in {', '.join(worse)}" if worse else "")
        + f"; calibration {c['calibration_s']:.1f} s, sampling {c['sampling_s']:.1f} s",
        flush=True,
    )


# --------------------------------------------------------------------------- report


def measure_table(cfg: dict, cells: list[dict], k: str, number: int) -> None:
    """One measure: plain, every method, native and the floor per cell; * = Apply worse."""
    cols = list(METHODS)
    rows = [
        [c["mixture"], c["case"], c["sampler"], c["steps"], c["recommendation"]]
        + [f"{c['guidance']:g}"]
        + [fmt(c["values"][m][k], ".4g") for m in cols]
        + [fmt(c["floors"][k], ".3g"), "*" if c["apply_worse"][k] else ""]
        for c in cells
    ]
    print_table(
        f"Table {number}: {TITLES[k]} ({cfg['samples']} samples, seed {SAMPLE_SEED}; lower is "
        "better)",
        [
            "mixture",
            "case",
            "sampler",
            "steps",
            "recommends",
            "guid w",
            *cols,
            "floor",
            "Apply worse",
        ],
        rows,
    )


def section_mixture(b: Bench) -> None:
    cfg = b.cfg
    print_section(
        f"Mixture testbed (M = {M}, {cfg['cal_count']} calibration latents per cell, "
        f"{cfg['samples']} samples, {', '.join(f'{s} {k}' for s, k in cfg['runs'])}, "
        f"{CAL_SCHEDULER})"
    )
    cells = [
        mixture_cell(b, name, label, variant, n, sampler, steps)
        for name in cfg["mixtures"]
        for label, variant, n in cfg["cases"]
        for sampler, steps in cfg["runs"]
    ]
    b.run.data["cells"] = cells
    print()
    for i, k in enumerate(MEASURES, start=1):
        measure_table(cfg, cells, k, i)
    print(
        "(NS1 = NoiseShift 1; NLC1 = NLC 1 with the table calibrated alone; NS+jNLC1 =\n"
        " NoiseShift 1 + the joint table at 1; native = the mixture's denoiser trained at N;\n"
        " floor = the measure's mean on independent true sets of as many samples;\n"
        " guid w = the guidance weight the check added to the recommendation in Apply;\n"
        " * = Apply above plain + floor)\n"
    )
    judge(b.run, cells)


def judge(run: Run, cells: list[dict]) -> None:
    """B1 per measure and overall: Apply never worse than plain beyond the floor."""
    any_over = []
    for k in MEASURES:
        over = [c for c in cells if c["apply_worse"][k]]
        any_over += over
        worst = max(
            cells,
            key=lambda c: (c["values"]["Apply"][k] - c["values"]["plain"][k]) / c["floors"][k],
        )
        gap = (worst["values"]["Apply"][k] - worst["values"]["plain"][k]) / worst["floors"][k]
        run.check(
            not over,
            f"B1 {k}: Apply never worse than plain beyond the floor: over in "
            f"{len(over)}/{len(cells)}; worst {cell_name(worst)} (Apply - plain) / floor "
            f"= {gap:.2f}" + (": " + ", ".join(map(cell_name, over)) if over else ""),
        )
    run.check(
        not any_over,
        f"B1 Apply never worse than plain beyond the floor in any measure: "
        f"{len(cells) - len({id(c) for c in any_over})}/{len(cells)} cells clean",
    )


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="four cells, under a minute")
    run = Run.start(args, FULL, QUICK)
    # the candidates pair the nodes on purpose: their warning is known here
    logging.getLogger("noise_calibration").addFilter(
        lambda record: getattr(record, "message_id", None) != user_messages.PAIR
    )
    describe_run(args.quick)
    with tempfile.TemporaryDirectory(prefix="mixture-bench-") as folder:
        b = Bench(run, Nodes(private_store(folder)))
        timings = run_sections((("mixture", lambda: section_mixture(b)),))
        seeds = {
            **SEEDS,
            "calibration_data": CAL_DATA_SEED,
            "check": SEARCH_SEED,
            "true_set": TRUE_SEED,
            "floors": FLOOR_SEED,
        }
        return finish(run, "mixture", timings, lambda _run: [], seeds)


if __name__ == "__main__":
    sys.exit(main())

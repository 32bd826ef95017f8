"""Above the training resolution: N = 2M on the field and the mixture testbeds.

Run from the repository root::

    .venv/bin/python bench/above_training.py            # full run (16 cells)
    .venv/bin/python bench/above_training.py --quick    # four cells, a few minutes
    .venv/bin/python bench/above_training.py --out DIR  # JSON goes to DIR (default out/bench)

Not a test: nothing here fails the run. Each target prints PASS or MISS.

Hi-res passes and upscales run a model above the resolution it was trained at,
which the NoiseShift paper does not cover. The testbeds' two mismatches read
for N > M as docs/design.md section 5 defines them ("pixel": the model keeps
M's statistics per pixel; "image": it keeps the spectrum per image with M's
normalization, too little power everywhere). Models "trained" at M = 32,
sampled at N = 64 with euler 8 and 20 ("simple").

Per cell, as ``bench/apply.py`` and ``bench/mixture.py`` do below M: one
calibration with the held-out check on the Calibrate node's default latent
count and the cell's schedule and sampler, the other table for the columns by
``with_both_tables``; plain, NoiseShift 1, NLC 1 (the table calibrated alone),
NoiseShift 1 + the joint table at 1 through the pack's nodes, the Apply node,
and the native model (trained at N), sampled through KSampler with the same
noise. Field testbed: the true FD with its floor. Mixture:
batch FD, per-sample log band-power SWD and component-histogram TV, each
with its floor (``bench/lib/mixture.py``).

Targets: C1 field testbed: Apply never worse than plain beyond the FD floor;
C2 mixture: Apply never worse than plain beyond the floor in any measure.
Also printed (not targets): in how many cells one of the three methods, and
Apply, beat plain beyond the floor.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import apply_models as am
from bench.lib import mixture, testbed
from bench.lib.calibration import Nodes, private_store, with_both_tables
from bench.lib.report import fmt, print_section, print_table, spectrum_name
from bench.lib.run import Run, RunState, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import ALL as SEEDS
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED, SEARCH_SEED
from bench.lib.testbed import CAL_SCHEDULER, M
from noise_calibration.noisecal.testing.metrics import frechet_distance
from noise_calibration.noisecal_host import user_messages
from noise_calibration.noisecal_host.calibration_job import DEFAULTS

N = 2 * M
CASES = [(f"N={N} image", "image"), (f"N={N} pixel", "pixel")]
# Heun is left out: at N = 64 a Heun 20 cell costs about twice a Euler 20 one
RUNS = [("euler", 8), ("euler", 20)]
COLUMNS = {"plain": "plain", "noiseshift@1": "NS1", "nlc@1": "NLC1", "noiseshift+nlc@1": "NS+jNLC1"}
FULL = {
    "spectra": [(3.0, 2.5), (1.0, 2.5)],
    "mixtures": ["two", "three"],
    "cases": CASES,
    "runs": RUNS,
    "cal_count": DEFAULTS.sample_count,  # the node's: 10 calibrated on, 6 held back
    "samples": 128,
}
QUICK = {**FULL, "spectra": [(3.0, 2.5)], "mixtures": ["three"], "runs": [("euler", 8)]}
QUICK["samples"] = 64


@dataclass
class Bench(RunState):
    nodes: Nodes


def cell_name(c: dict) -> str:
    return f"[{c['data']} {c['case']} {c['sampler']} {c['steps']}]"


def models_of(b: Bench, base, native, x0, sampler: str, steps: int) -> tuple[dict, dict]:
    """Calibrate on `x0` with the check; plain, the methods at strength 1 (COLUMNS),
    Apply and native: (models by name, record)."""
    sigmas = testbed.sigmas(base, steps, CAL_SCHEDULER)
    record, _ = am.calibrate_joint(base, x0, sigmas, sampler)
    full = with_both_tables(base, x0, sigmas, sampler, record)
    by_name = {c.name: c for c in am.CANDIDATES}
    models = {name: am.candidate_model(b.nodes, base, full, by_name[name]) for name in COLUMNS}
    models["Apply"] = am.apply_model(b.nodes, base, record)
    models["native"] = native
    return models, record


def sample(b: Bench, model, sampler: str, steps: int):
    return testbed.ksample_testbed(
        model, N, b.cfg["samples"], steps=steps, sampler=sampler, scheduler=CAL_SCHEDULER
    )


def cell(data: str, label: str, variant: str, sampler, steps, record, values, floors) -> dict:
    """One cell: every model's measures, the floors, Apply against plain."""
    methods = list(COLUMNS)[1:]
    c = {
        "data": data,
        "case": label,
        "variant": variant,
        "N": N,
        "sampler": sampler,
        "steps": steps,
        "values": values,
        "floors": floors,
        "recommendation": record["check"]["recommendation"],
        "guidance": am.guidance_weight(record),
        "check": record["check"]["candidates"],
    }
    plain, apply = values["plain"], values["Apply"]
    c["apply_worse"] = {k: apply[k] > plain[k] + floors[k] for k in floors}
    c["apply_better"] = {k: apply[k] < plain[k] - floors[k] for k in floors}
    c["method_better"] = {
        k: min(values[m][k] for m in methods) < plain[k] - floors[k] for k in floors
    }
    worse = [k for k, w in c["apply_worse"].items() if w]
    print(
        f"  {cell_name(c)} recommends {c['recommendation']} (guidance {c['guidance']:g}); "
        + "; ".join(
            f"{k} plain {fmt(plain[k], '.4g')} Apply {fmt(apply[k], '.4g')} "
            f"native {fmt(values['native'][k], '.4g')} (floor {fmt(floors[k], '.3g')})"
            for k in floors
        )
        + (f"; Apply WORSE in {', '.join(worse)}" if worse else ""),
        flush=True,
    )
    return c


def field_cell(b: Bench, sp, label: str, variant: str, sampler: str, steps: int) -> dict:
    base = testbed.model(sp, M, variant)
    x0 = testbed.cal_latents(sp, N, b.cfg["cal_count"])
    native = testbed.model(sp, N, "pixel")  # trained at N: both variants agree
    models, record = models_of(b, base, native, x0, sampler, steps)
    power = sp.power(N)
    values = {
        name: {"fd": frechet_distance(sample(b, m, sampler, steps), power)}
        for name, m in models.items()
    }
    floors = {"fd": testbed.floor(sp, N, b.cfg["samples"])}
    return cell(spectrum_name(sp), label, variant, sampler, steps, record, values, floors)


def mixture_cell(b: Bench, name: str, label: str, variant: str, sampler: str, steps: int):
    base = mixture.model(name, M, variant)
    x0 = mixture.cal_latents(name, N, b.cfg["cal_count"])
    native = mixture.model(name, N, "pixel")
    models, record = models_of(b, base, native, x0, sampler, steps)
    values = {n: mixture.measures(name, sample(b, m, sampler, steps)) for n, m in models.items()}
    floors = mixture.floors(name, N, b.cfg["samples"])
    return cell(name, label, variant, sampler, steps, record, values, floors)


def table(title: str, cells: list[dict], k: str) -> None:
    rows = [
        [c["data"], c["case"], c["sampler"], c["steps"], c["recommendation"]]
        + [f"{c['guidance']:g}"]
        + [fmt(c["values"][m][k], ".4g") for m in (*COLUMNS, "Apply", "native")]
        + [fmt(c["floors"][k], ".3g"), "*" if c["apply_worse"][k] else ""]
        for c in cells
    ]
    print_table(
        title,
        ["data", "case", "sampler", "steps", "recommends", "guid w", *COLUMNS.values()]
        + ["Apply", "native", "floor", "Apply worse"],
        rows,
    )


def judge(run: Run, target: str, what: str, cells: list[dict]) -> None:
    over = [c for c in cells if any(c["apply_worse"].values())]
    run.check(
        not over,
        f"{target} {what}: Apply never worse than plain beyond the floor in any measure: "
        f"{len(cells) - len(over)}/{len(cells)} cells clean"
        + (": " + ", ".join(map(cell_name, over)) if over else ""),
    )
    for k in cells[0]["floors"]:
        print(
            f"  {what} {k}: a calibrated method beats plain beyond the floor in "
            f"{sum(c['method_better'][k] for c in cells)}/{len(cells)} cells, Apply in "
            f"{sum(c['apply_better'][k] for c in cells)}/{len(cells)}",
            flush=True,
        )


def section_field(b: Bench) -> None:
    cfg = b.cfg
    print_section(f"Field testbed at N = {N} (M = {M}, {cfg['samples']} samples)")
    cells = [
        field_cell(b, sp, label, variant, sampler, steps)
        for sp in testbed.spectra(cfg["spectra"])
        for label, variant in cfg["cases"]
        for sampler, steps in cfg["runs"]
    ]
    b.run.data["field"] = cells
    print()
    table(f"Table 1: field testbed, true FD (seed {SAMPLE_SEED}; lower is better)", cells, "fd")
    judge(b.run, "C1", "field", cells)


def section_mixture(b: Bench) -> None:
    cfg = b.cfg
    print_section(f"Mixture testbed at N = {N} (M = {M}, {cfg['samples']} samples)")
    cells = [
        mixture_cell(b, name, label, variant, sampler, steps)
        for name in cfg["mixtures"]
        for label, variant in cfg["cases"]
        for sampler, steps in cfg["runs"]
    ]
    b.run.data["mixture"] = cells
    print()
    for i, k in enumerate(mixture.MEASURES, start=2):
        table(f"Table {i}: mixture, {mixture.TITLES[k]} (lower is better)", cells, k)
    print(
        "(NS1 = NoiseShift 1; NLC1 = the table calibrated alone at 1; NS+jNLC1 = NoiseShift 1\n"
        " + the joint table at 1; native = the model trained at N; * = Apply above plain +\n"
        " floor)\n"
    )
    judge(b.run, "C2", "mixture", cells)


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="four cells, a few minutes")
    run = Run.start(args, FULL, QUICK)
    # the candidates pair the nodes on purpose: their warning is known here
    logging.getLogger("noise_calibration").addFilter(
        lambda record: getattr(record, "message_id", None) != user_messages.PAIR
    )
    describe_run(args.quick, f"; N = {N}, M = {M}")
    with tempfile.TemporaryDirectory(prefix="above-training-bench-") as folder:
        b = Bench(run, Nodes(private_store(folder)))
        timings = run_sections(
            (("field", lambda: section_field(b)), ("mixture", lambda: section_mixture(b)))
        )
        seeds = {
            **SEEDS,
            "calibration_data": CAL_DATA_SEED,
            "check": SEARCH_SEED,
            "true_set": mixture.TRUE_SEED,
            "floors": mixture.FLOOR_SEED,
        }
        return finish(run, "above_training", timings, lambda _run: [], seeds)


if __name__ == "__main__":
    sys.exit(main())

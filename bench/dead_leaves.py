"""NoiseShift, NLC, the spectral schedule and Apply on the dead-leaves networks, measured
by metrics that are not the spectrum.

Run from the repository root::

    .venv/bin/python bench/dead_leaves.py --quick    # about 10 minutes on 2 shared cores
    .venv/bin/python bench/dead_leaves.py            # 2x samples, every cell: about 20 min
    .venv/bin/python bench/dead_leaves.py --out DIR  # JSON + sample grid go to DIR (out/bench)

Not a test: nothing here fails the run.

Models: ``models/reference/sd3_dead_leaves_m32.safetensors`` (trained at latent
M = 32) and the "native" ``..._m16`` (same size, same budget, trained at
N = 16), both loaded with ComfyUI's ``comfy.sd.load_diffusion_model`` (SD3,
shift 3, zero conditioning). Data: ``noisecal.testing.dead_leaves`` (scenes
in continuous coordinates, so true samples exist at every N).

Per N (32, 16, 8) the NoiseShift calibration is the pack's Calibrate node
(fast search, ``check`` off, 20 "simple" steps) on true dead-leaves latents
given as a LATENT; NoiseShift stores sigma_hat as a function of sigma, so the
20-step calibration serves every cell. Its record also holds the data spectrum,
which the pack's Spectral Scheduler node (source "calibration", default
variant, the sampler's seed) turns into the cell's SIGMAS for SamplerCustom:
"schedule" alone, and at N < M "schedule + NoiseShift" (the NoiseShift node on
the same model).

Apply, per cell: ``noisecal_host.calibrate.calibrate(..., correction=<sampler>,
check=True)`` (what the Calibrate node runs with ``correction`` set and
``check`` = held-out; the lean search on 16 true latents, 10 calibrated on and
6 held back, the node's default) at the cell's sampler, steps and
schedule; the recommendation sampled through the pack's "Noise Calibration:
Apply" node. Where it recommends plain, Apply leaves every call unchanged
(``noisecal_host/installer.py``): that is checked bit for bit on two samples
and plain's metrics are reused. NLC: the same record's table (calibrated alone,
on the 12 latents) at strength 1 through the pack's Noise Level Correction
node, i.e. the check's ``nlc@1`` candidate.
Cells: Euler 8 and 20 steps and Heun 10 steps (about 19 network evaluations),
all "simple".

Metrics, each against a true set of the same size as the generated one
(seed 7001), with its noise floor from a second independent true set
(seed 7002): patch SWD (``noisecal.testing.swd.patch_swd``, on the images
``dead_leaves.to_image`` of the model-space latents), the edge statistic
(W1 of neighbour differences) and the spectral FD on the latents (per-frequency
power of 4x as many true latents, seed 7003, as ``metrics.frechet_distance``
uses it). Gap closed at N = 16: (plain - method) / (plain - native), only where
the native network beats plain by more than the floor.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import figures, testbed
from bench.lib.calibration import Nodes, private_store, with_both_tables
from bench.lib.dead_leaves import (
    FLOOR_SEED,
    M_FILE,
    NATIVE_FILE,
    POWER_SEED,
    TRUE_SEED,
    TrueSets,
    load,
    sample,
)
from bench.lib.report import fmt, pct, print_section, print_table
from bench.lib.run import Run, RunState, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED, SEARCH_SEED
from noise_calibration.noisecal import held_out_check
from noise_calibration.noisecal.spectral_schedule import DEFAULT_VARIANT
from noise_calibration.noisecal.testing import dead_leaves as dl
from noise_calibration.noisecal_host import calibrate
from noise_calibration.noisecal_host.model_info import zero_conditioning
from noise_calibration.noisecal_host.testing import sampling

CAL_STEPS = 20
SCHEDULER = "simple"
SEARCH_MODE = "fast"
CELLS = (("euler", 8), ("euler", 20), ("heun", 10))
METRICS = ("swd", "edge", "fd")
M = 32
# the methods of a cell, in table order (native is added at N = 16)
METHODS = ("plain", "noiseshift", "nlc", "schedule", "schedule+ns", "apply")
LABELS = {
    "plain": "plain",
    "noiseshift": "NoiseShift",
    "nlc": "NLC",
    "schedule": "schedule",
    "schedule+ns": "sched+NS",
    "apply": "Apply",
    "native": "native",
}

# samples: per N, generated and true sets alike; cells: per N (sampler, steps); apply:
# the cells where Apply (and NLC, its table) is calibrated, and its calibration latents
FULL = {
    "ns": (32, 16, 8),
    "samples": {32: 64, 16: 160, 8: 256},
    "cells": {32: CELLS, 16: CELLS, 8: CELLS},
    "cal_count": 32,
    "max_batch": 32,
    "apply": {"cells": CELLS, "cal_count": 16, "mode": "lean", "ns": (32, 16, 8)},
}
QUICK = {
    "ns": (32, 16, 8),
    "samples": {32: 32, 16: 64, 8: 96},
    "cells": {32: (("euler", 8),), 16: CELLS, 8: CELLS},
    "cal_count": 16,
    "max_batch": 32,
    "apply": {
        "cells": (("euler", 8), ("heun", 10)),
        "cal_count": 8,
        "mode": "lean",
        "ns": (32, 16, 8),
    },
}


def calibrate_noiseshift(nodes, model, positive, truth: TrueSets, cfg) -> tuple[dict, float]:
    """The Calibrate node on true latents given as a LATENT (check off)."""
    latent = {"samples": model.model.process_latent_out(truth.cal)}
    t0 = time.perf_counter()
    n = truth.n
    records, _, _ = nodes.node("Calibrate").calibrate(
        model,
        CAL_STEPS,
        SCHEDULER,
        SEARCH_MODE,
        truth.cal.shape[0],
        SEARCH_SEED,
        8 * n,
        8 * n,
        "",
        cfg["max_batch"],
        latent=latent,
        positive=positive,
        check="off",
    )["result"]
    return records[0], time.perf_counter() - t0


class Bench(RunState):
    def __init__(self, run: Run, nodes: Nodes):
        self.run, self.nodes = run, nodes
        self.model, self.load_s = load(M_FILE)
        self.positive = zero_conditioning(self.model)
        self.truth: dict[int, TrueSets] = {}
        self.cells: list[dict] = []
        self.grids: dict = {}


def calibrate_apply(model, positive, truth: TrueSets, sampler, steps, cfg):
    """What the Calibrate node runs with ``correction`` = sampler and ``check`` = held-out,
    at the cell's schedule: (record with its ``check``, wall seconds)."""
    o = cfg["apply"]
    latents = model.model.process_latent_out(truth.cal[: o["cal_count"]])
    sigmas = testbed.sigmas(model, steps, SCHEDULER)
    t0 = time.perf_counter()
    record, _ = calibrate.calibrate(
        model,
        latents,
        sigmas,
        image_size=(8 * truth.n, 8 * truth.n),
        source="dead leaves",
        positive=positive,
        mode=o["mode"],
        correction=sampler,
        check=True,
        seed=SEARCH_SEED,
        max_batch=cfg["max_batch"],
    )
    return record, time.perf_counter() - t0


def spectral_sigmas(nodes, model, n: int, steps: int):
    """The Spectral Scheduler node: the calibration's spectrum at N = n, default variant,
    the sampler's seed."""
    node = nodes.node("SpectralScheduler")
    sigmas, _ = node.schedule(
        model, steps, "calibration", DEFAULT_VARIANT, SAMPLE_SEED, 1.0, 8 * n, 8 * n
    )
    return sigmas


def sample_sigmas(model, positive, n, count, sampler, sigmas):
    """SamplerCustom with the SIGMAS, the same noise as `sample`."""
    lat = sampling.empty_latent(model, n, n, count)
    out = sampling.sample_with_sigmas(
        model, lat, positive, sigmas, seed=SAMPLE_SEED, sampler_name=sampler
    )
    return model.model.process_latent_in(out)


def check_summary(record: dict) -> dict:
    """The held-out check's recommendation and the scores behind it."""
    check = record["check"]
    cands = check["candidates"]
    rec = check["recommendation"]
    # the edge veto (held_out_check.vetoed) where the check has one
    veto = getattr(held_out_check, "vetoed", lambda v: False)
    vetoed = [k for k, v in cands.items() if veto(v)]
    cleared = [
        k
        for k, v in cands.items()
        if k != "plain" and v["gain"] > 0 and v["gain"] > held_out_check.Z_GAIN * v["gain_noise"]
    ]
    best = min((k for k in cands if k != "plain"), key=lambda k: cands[k]["score"])
    return {
        "recommendation": rec,
        "held_out": check["held_out"],
        "plain_score": cands["plain"]["score"],
        "best": best,
        "best_score": cands[best]["score"],
        "best_gain_z": cands[best]["gain"] / max(cands[best]["gain_noise"], 1e-30),
        "cleared": cleared,
        "vetoed": vetoed,
        "network_evaluations": record["cost"]["network_evaluations"],
        "check_network_evaluations": check["network_evaluations"],
        "candidates": cands,
    }


def run_apply(b: Bench, truth: TrueSets, cell: dict, count: int) -> None:
    """Apply's calibration for the cell, the NLC row from its table, Apply itself."""
    n, sampler, steps = cell["N"], cell["sampler"], cell["steps"]
    record, wall = calibrate_apply(b.model, b.positive, truth, sampler, steps, b.cfg)
    # the table alone, as the NLC node gets it (the check calibrates the joint one
    # where NoiseShift shifts): for the NLC row only
    fit = b.model.model.process_latent_out(truth.cal[: b.cfg["apply"]["cal_count"]])
    tables = with_both_tables(
        b.model, fit, testbed.sigmas(b.model, steps, SCHEDULER), sampler, record, b.positive
    )
    corr = tables["correction"]
    cell["nlc"] = truth.measure(
        sample(b.nodes.nlc(b.model, tables), b.positive, n, count, sampler, steps)
    )
    cell["nlc_strength"] = corr["params"].get("strength")
    cell["nlc_r"] = [min(corr["r"]), max(corr["r"])]
    cell["apply_calibration_s"] = wall
    cell["check"] = check_summary(record)
    (applied,) = b.nodes.node("Apply").apply(b.model, 1.0, "error", "", calibration=[record])
    if cell["check"]["recommendation"] == "plain":
        # Apply leaves every call unchanged: shown on two samples, then plain's numbers
        two = [sample(m, b.positive, n, 2, sampler, steps) for m in (b.model, applied)]
        cell["apply_identical_to_plain"] = bool(torch.equal(*two))
        if cell["apply_identical_to_plain"]:
            cell["apply"] = dict(cell["plain"])
            return
    cell["apply"] = truth.measure(sample(applied, b.positive, n, count, sampler, steps))


def section_n(b: Bench, n: int) -> None:
    cfg = b.cfg
    count = cfg["samples"][n]
    t0 = time.perf_counter()
    truth = b.truth[n] = TrueSets(n, count, cfg["cal_count"])
    print(
        f"N = {n}: true sets ({count} each) rendered in {time.perf_counter() - t0:.1f} s; floors "
        + ", ".join(f"{k} {v:.5f}" for k, v in truth.floors.items()),
        flush=True,
    )
    record, cal_s = calibrate_noiseshift(b.nodes, b.model, b.positive, truth, cfg)
    shifts = [h - s for s, h in zip(record["sigmas"], record["sigma_hat"], strict=True)]
    print(
        f"N = {n}: NoiseShift calibrated in {cal_s:.1f} s "
        f"({record['cost']['network_evaluations']} NFE), largest shift "
        f"{max(shifts, key=abs):+.4f}",
        flush=True,
    )
    shifted = b.nodes.noiseshift(b.model, record)
    apply_cells = cfg["apply"]["cells"] if n in cfg["apply"]["ns"] else ()
    for sampler, steps in cfg["cells"][n]:
        cell = {
            "N": n,
            "sampler": sampler,
            "steps": steps,
            "samples": count,
            "floor": truth.floors,
            "noiseshift_calibration_s": cal_s,
            "noiseshift_nfe": record["cost"]["network_evaluations"],
            "largest_shift": max(shifts, key=abs),
        }
        grid = n == 16 and (sampler, steps) == ("euler", 20)
        t1 = time.perf_counter()
        out = sample(b.model, b.positive, n, count, sampler, steps)
        cell["plain"] = truth.measure(out)
        if grid:
            b.grids["plain"] = out[:8]
        out = sample(shifted, b.positive, n, count, sampler, steps)
        cell["noiseshift"] = truth.measure(out)
        if grid:
            b.grids["noiseshift"] = out[:8]
            b.grids["true"] = dl.to_latent(truth.ref[:8])
        sigmas = spectral_sigmas(b.nodes, b.model, n, steps)
        cell["schedule_sigmas"] = [round(float(s), 5) for s in sigmas]
        cell["schedule"] = truth.measure(
            sample_sigmas(b.model, b.positive, n, count, sampler, sigmas)
        )
        if n < M:
            out = sample_sigmas(shifted, b.positive, n, count, sampler, sigmas)
            cell["schedule+ns"] = truth.measure(out)
        cell["sampling_s"] = time.perf_counter() - t1
        if (sampler, steps) in apply_cells:
            run_apply(b, truth, cell, count)
        print_cell(cell)
        b.cells.append(cell)


def print_cell(c: dict) -> None:
    methods = [m for m in (*METHODS, "native") if m in c]
    text = "; ".join(f"{m} " + " ".join(f"{k} {c[m][k]:.5f}" for k in METRICS) for m in methods)
    print(f"N = {c['N']} {c['sampler']} {c['steps']}: {text}", flush=True)
    if "check" in c:
        k = c["check"]
        print(
            f"  Apply recommends {k['recommendation']} (held-out check on {k['held_out']}: "
            f"plain {k['plain_score']:.5f}, best {k['best']} {k['best_score']:.5f} at "
            f"{k['best_gain_z']:.1f} sigma; cleared {k['cleared'] or 'none'}, edge-vetoed "
            f"{k['vetoed'] or 'none'}); calibration {k['network_evaluations']} NFE, "
            f"{c['apply_calibration_s']:.1f} s",
            flush=True,
        )


def section_native(b: Bench) -> None:
    wait_until = time.time() + 30 * 60
    while not (NATIVE_FILE.is_file() and NATIVE_FILE.with_suffix(".json").is_file()):
        if time.time() > wait_until:
            print("native network not found: no gap closed", flush=True)
            return
        time.sleep(20)
    native, _ = load(NATIVE_FILE)
    positive = zero_conditioning(native)
    truth = b.truth.get(16)
    if truth is None:
        return
    for c in b.cells:
        if c["N"] != 16:
            continue
        out = sample(native, positive, 16, c["samples"], c["sampler"], c["steps"])
        c["native"] = truth.measure(out)
        if (c["sampler"], c["steps"]) == ("euler", 20):
            b.grids["native"] = out[:8]
        for m in METHODS[1:]:
            if m in c:
                c[f"gap_{m}"] = {k: gap(c, m, k) for k in METRICS}
        print_cell(
            {
                "N": 16,
                "sampler": c["sampler"] + " (native)",
                "steps": c["steps"],
                "plain": c["native"],
            }
        )


def gap(c: dict, method: str, k: str):
    """Gap closed, only where the native network beats plain by more than the floor."""
    if not c["plain"][k] - c["native"][k] > c["floor"][k]:
        return None
    return testbed.gap(c["plain"][k], c[method][k], c["native"][k])


def ratio_text(c: dict, m: str, k: str) -> str:
    return f"{c[m][k] / c['plain'][k]:.2f}" if m in c else "-"


def tables(b: Bench) -> None:
    print_section("Results")
    methods = [m for m in METHODS if any(m in c for c in b.cells)]
    for k, name in (("swd", "patch SWD"), ("edge", "edge W1"), ("fd", "spectral FD")):
        rows = []
        for c in b.cells:
            row = [c["N"], f"{c['sampler']} {c['steps']}", c["samples"]]
            row += [fmt(c[m][k]) if m in c else "-" for m in methods]
            row += [fmt(c["native"][k]) if "native" in c else "-"]
            row += [ratio_text(c, m, k) for m in methods[1:]]
            row += [fmt(c["floor"][k])]
            rows.append(row)
        print_table(
            f"{name} (lower is better; floor: two independent true sets of the same size)",
            ["N", "cell", "samples", *(LABELS[m] for m in methods), "native"]
            + [f"{LABELS[m]}/plain" for m in methods[1:]]
            + ["floor"],
            rows,
        )
    gap_rows = []
    for c in b.cells:
        if "native" not in c:
            continue
        for k in ("swd", "fd"):
            gap_rows.append(
                [c["N"], f"{c['sampler']} {c['steps']}", k]
                + [
                    pct(c[f"gap_{m}"][k], ".0f")
                    if c.get(f"gap_{m}", {}).get(k) is not None
                    else ("n/a" if m in c else "-")
                    for m in methods[1:]
                ]
            )
    if gap_rows:
        print_table(
            "gap closed at N = 16 (n/a: the native network does not beat plain by more than "
            "the floor)",
            ["N", "cell", "metric", *(LABELS[m] for m in methods[1:])],
            gap_rows,
        )
    rec_rows = []
    for c in b.cells:
        if "check" not in c:
            continue
        k = c["check"]
        rec_rows.append(
            [c["N"], f"{c['sampler']} {c['steps']}", k["recommendation"], k["held_out"]]
            + [fmt(k["plain_score"]), k["best"], fmt(k["best_score"]), f"{k['best_gain_z']:.1f}"]
            + [", ".join(k["vetoed"]) or "-", k["network_evaluations"]]
            + [f"{c['apply_calibration_s']:.0f}"]
            + [ratio_text(c, "apply", "swd"), "yes" if worse_swd(c) else "no"]
        )
    if rec_rows:
        print_table(
            "Apply: the held-out check (spectral score on the held-back latents; z = gain "
            "over plain in units of its bootstrap spread; vetoed = edges worse than plain)",
            ["N", "cell", "recommends", "held out", "plain score", "best other", "its score"]
            + ["z", "vetoed", "NFE", "calib s", "Apply/plain SWD", "worse beyond floor"],
            rec_rows,
        )


def worse_swd(c: dict) -> bool:
    return c["apply"]["swd"] > c["plain"]["swd"] + c["floor"]["swd"]


def plots(run: Run) -> list[Path]:
    grids = run.data.pop("_grids", {})
    if not grids:
        return []
    title = "dead leaves, N = 16 (32 px), Euler 20: M = 32 network"
    return figures.sample_grids(run.out / "dead_leaves_n16.png", grids, dl.to_image, title)


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="about 10 minutes on 2 shared cores")
    run = Run.start(args, FULL, QUICK)
    with tempfile.TemporaryDirectory(prefix="dead-leaves-bench-") as folder:
        b = Bench(run, Nodes(private_store(folder)))
        describe_run(args.quick, f"; model {M_FILE.name}, native {NATIVE_FILE.name}")
        sections = [(f"N={n}", lambda n=n: section_n(b, n)) for n in b.cfg["ns"]]
        sections.append(("native", lambda: section_native(b)))
        timings = run_sections(sections)
        tables(b)
        run.data["cells"] = b.cells
        run.data["_grids"] = b.grids
        seeds = {
            "calibration_data": CAL_DATA_SEED,
            "search": SEARCH_SEED,
            "sampling": SAMPLE_SEED,
            "true": TRUE_SEED,
            "floor": FLOOR_SEED,
            "power": POWER_SEED,
        }
        return finish(run, "dead_leaves", timings, plots, seeds)


if __name__ == "__main__":
    sys.exit(main())

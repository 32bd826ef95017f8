"""Training-free Noise Awareness Guidance with a weight chosen by the held-out check.

Run from the repository root::

    .venv/bin/python bench/guidance_calibrated.py --quick   # about 3 minutes
    .venv/bin/python bench/guidance_calibrated.py           # about 20 minutes, 2 busy cores

Not a test: nothing here fails the run. It measures the guidance stage of
the held-out check (``noisecal/held_out_check.py``): after the check has
recommended plain, NoiseShift or NLC, Noise Awareness Guidance (training-free,
offset mode, offset 2, weight per step size) at each weight of
``held_out_check.GUIDANCE_WEIGHTS`` samples on top of the recommendation from
the check's noise, and the same rule (spectral Frechet distance to the
held-back latents, paired bootstrap, the edge veto, a gain of twice its
noise), against the recommendation instead of plain, picks a weight or 0.

Per cell: ``noisecal_host.calibrate.calibrate`` (the Calibrate node's default
lean search and the held-out check; no correction table, so the check's
candidates are plain and NoiseShift at 0.5 and 1) on the cell's schedule. The
TRUE FD (the same sampling noise for all) of the Apply node with the record
as written (guidance at the chosen weight), with the guidance weight set to
0 ("off": the recommendation alone) and set to each weight the check tried,
says whether the choice helps and which weight would have been best.

Cells: the exact-denoiser testbed (f0 = 3, alpha = 2.5, M = 32) at N = 32 and
at N = 16 with the "image" and "pixel" mismatch, and the trained reference
network (``models/reference/sd3_gaussian_field_m32.safetensors``) at N = 32 and
16; the dead-leaves network trained at M = 32 (``sd3_dead_leaves_m32``) at N =
32 and 16, where the metric is the patch sliced Wasserstein distance of the
images to a true set (``noisecal/testing/swd.py``; floor: two true sets), not
the spectrum the check scores (its "FD" columns hold SWD); Euler 8 and 20
steps, "simple".

Targets: G1 the chosen weight is never worse than guidance off beyond the
metric's floor; G2 (reported) the cells where it helps by more than the floor, and
where the check's choice is within the floor of the best weight.
"""

from __future__ import annotations

import copy
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root


from bench.lib import reference, testbed
from bench.lib.apply_models import apply_model
from bench.lib.calibration import Nodes, calibrate_as_node, node_search_mode, private_store
from bench.lib.dead_leaves import FLOOR_SEED, M_FILE, TRUE_SEED
from bench.lib.report import fmt, print_section, print_table, spectrum_name
from bench.lib.run import Run, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import ALL as SEEDS
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED, SEARCH_SEED
from bench.lib.testbed import CAL_SCHEDULER, M
from noise_calibration.noisecal import held_out_check
from noise_calibration.noisecal.testing import dead_leaves as dl
from noise_calibration.noisecal.testing import swd
from noise_calibration.noisecal_host.model_info import zero_conditioning
from noise_calibration.noisecal_host.testing import sampling

WEIGHTS = held_out_check.GUIDANCE_WEIGHTS
OFFSET = held_out_check.GUIDANCE_OFFSET
CASES = [("N=32", "image", M), ("N=16 image", "image", M // 2), ("N=16 pixel", "pixel", M // 2)]

FULL = {
    "steps": (8, 20),
    "cases": CASES,
    "cal_count": 32,
    "samples": 256,
    "reference": {"cases": [(M, 24, 64), (M // 2, 32, 128)]},
    "dead_leaves": {"cal_count": 32, "cases": [(M, 64), (M // 2, 128)]},
}
QUICK = {
    "steps": (8,),
    "cases": CASES[:2],
    "cal_count": 32,
    "samples": 64,
    "reference": {"cases": [(M // 2, 16, 32)]},
    "dead_leaves": {"cal_count": 16, "cases": [(M // 2, 32)]},
}


def with_weight(record: dict, weight: float) -> dict:
    """The record with the check's guidance weight replaced (0: none)."""
    changed = copy.deepcopy(record)
    changed["check"]["guidance"]["weight"] = weight
    return changed


def calibrate_cell(model, latents, sigmas, positive=None) -> dict:
    """The Calibrate node's defaults with the check, no table."""
    return calibrate_as_node(model, latents, sigmas, source="bench", positive=positive, check=True)[
        0
    ]


def judge(cell: dict) -> dict:
    fd, floor = cell["fd"], cell["fd_floor"]
    off = fd["off"]
    chosen = fd["off"] if cell["weight"] == 0 else fd[held_out_check.guidance_name(cell["weight"])]
    best_name = min(fd, key=fd.get)
    return {
        "chosen_ratio": chosen / off,
        "best": best_name,
        "best_ratio": fd[best_name] / off,
        "worse": chosen > off + floor,
        "helps": chosen < off - floor,
        "agrees": chosen <= fd[best_name] + floor,
    }


def measure_cell(nodes: Nodes, model, record: dict, fd_of, floor: float) -> dict:
    t0 = time.perf_counter()
    guidance = record["check"]["guidance"]
    fd = {"off": fd_of(apply_model(nodes, model, with_weight(record, 0.0)))}
    for w in WEIGHTS:
        fd[held_out_check.guidance_name(w)] = fd_of(
            apply_model(nodes, model, with_weight(record, w))
        )
    as_written = fd_of(apply_model(nodes, model, record))
    chosen = (
        fd["off"]
        if guidance["weight"] == 0
        else fd[held_out_check.guidance_name(guidance["weight"])]
    )
    cell = {
        "fd": fd,
        "fd_floor": floor,
        "weight": guidance["weight"],
        "base": record["check"]["recommendation"],
        "check": guidance["candidates"],
        "apply_matches": as_written == chosen,  # Apply applies the chosen weight
        "nfe_check": record["check"]["network_evaluations"],
        "sampling_s": time.perf_counter() - t0,
    }
    cell.update(judge(cell))
    return cell


def section_testbed(b) -> None:
    run, cfg = b["run"], b["run"].cfg
    print_section(
        f"1. Testbed (M = {M}, f0 = 3, alpha = 2.5; {cfg['cal_count']} calibration latents, "
        f"{cfg['samples']} FD samples; weights {WEIGHTS}, offset {OFFSET}, per step size)"
    )
    sp = testbed.spectra([(3.0, 2.5)])[0]
    cells = []
    for label, variant, n in cfg["cases"]:
        for steps in cfg["steps"]:
            model = testbed.model(sp, M, variant)
            x0 = testbed.cal_latents(sp, n, cfg["cal_count"])
            record = calibrate_cell(model, x0, testbed.sigmas(model, steps, CAL_SCHEDULER))

            def fd_of(m, n=n, steps=steps):
                return testbed.fd(m, sp, n, cfg["samples"], steps=steps, sampler="euler")

            floor = testbed.floor(sp, n, cfg["samples"])
            cell = measure_cell(b["nodes"], model, record, fd_of, floor)
            cell.update(model=f"testbed {spectrum_name(sp)}", case=label, N=n, steps=steps)
            print_cell(cell)
            cells.append(cell)
    run.data["testbed"] = cells
    b["cells"] += cells


def section_reference(b) -> None:
    run, cfg = b["run"], b["run"].cfg
    print_section("2. Reference network (sd3_gaussian_field_m32, shift 3)")
    r = reference.load()
    cells = []
    for n, cal_count, samples in cfg["reference"]["cases"]:
        for steps in cfg["steps"]:
            x0 = testbed.cal_latents(r.ref.spectrum, n, cal_count)
            latents = r.model.model.process_latent_out(x0)
            sigmas = testbed.sigmas(r.model, steps, CAL_SCHEDULER)
            record = calibrate_cell(r.model, latents, sigmas, r.positive)

            def fd_of(m, n=n, samples=samples, steps=steps):
                return reference.fd(r, m, n, samples, steps)

            floor = testbed.floor(r.ref.spectrum, n, samples)
            cell = measure_cell(b["nodes"], r.model, record, fd_of, floor)
            cell.update(model="reference", case=f"N={n}", N=n, steps=steps)
            print_cell(cell)
            cells.append(cell)
    run.data["reference"] = cells
    b["cells"] += cells


def section_dead_leaves(b) -> None:
    """The dead-leaves network trained at M = 32: the verdict by patch SWD (not the
    spectrum the check scores), with edges and FD beside it."""
    import comfy.sd

    run, cfg = b["run"], b["run"].cfg
    o = cfg["dead_leaves"]
    print_section(
        f"3. Dead-leaves network (sd3_dead_leaves_m32; {o['cal_count']} calibration latents; "
        "patch SWD decides, floor: two true sets)"
    )
    model = comfy.sd.load_diffusion_model(str(M_FILE))
    positive = zero_conditioning(model)
    cells = []
    for n, samples in o["cases"]:
        ref = dl.render(dl.DeadLeaves(), samples, 2 * n, TRUE_SEED)
        floor = swd.patch_swd(dl.render(dl.DeadLeaves(), samples, 2 * n, FLOOR_SEED), ref)
        cal = model.model.process_latent_out(dl.sample_latents(o["cal_count"], n, CAL_DATA_SEED))
        for steps in cfg["steps"]:
            record = calibrate_cell(
                model, cal, testbed.sigmas(model, steps, CAL_SCHEDULER), positive
            )
            scores = {}

            def swd_of(m, n=n, samples=samples, steps=steps, ref=ref, scores=scores):
                lat = sampling.empty_latent(m, n, n, samples)
                out = sampling.ksample(
                    m, lat, positive, seed=SAMPLE_SEED, steps=steps, scheduler=CAL_SCHEDULER
                )
                images = dl.to_image(m.model.process_latent_in(out).float())
                value = swd.patch_swd(images, ref)["average"]
                scores[len(scores)] = {
                    "swd": value,
                    "edge": swd.edge_distance(images, ref)["average"],
                }
                return value

            cell = measure_cell(b["nodes"], model, record, swd_of, floor["average"])
            cell.update(model="dead-leaves (SWD)", case=f"N={n}", N=n, steps=steps)
            cell["edges"] = [v["edge"] for v in scores.values()]
            print_cell(cell)
            cells.append(cell)
    run.data["dead_leaves"] = cells
    b["cells"] += cells


def print_cell(c: dict) -> None:
    print(
        f"  [{c['model']} {c['case']} euler {c['steps']}] base {c['base']}, FD off "
        f"{fmt(c['fd']['off'])}; chosen w = {c['weight']:g} ({c['chosen_ratio']:.3f}x off); "
        f"best {c['best']} ({c['best_ratio']:.3f}x); {c['sampling_s']:.0f} s sampling",
        flush=True,
    )


def tables(b) -> None:
    print_section("4. All cells")
    cells = b["cells"]
    rows = []
    for c in cells:
        off = c["fd"]["off"]
        rows.append(
            [c["model"], c["case"], c["steps"], c["base"], fmt(off)]
            + [f"{c['fd'][held_out_check.guidance_name(w)] / off:.3f}" for w in WEIGHTS]
            + [f"{c['weight']:g}", f"{c['chosen_ratio']:.3f}", c["best"]]
            + ["yes" if c["agrees"] else "NO", fmt(c["fd_floor"])]
            + ["yes" if c["apply_matches"] else "NO", c["nfe_check"]]
        )
    print_table(
        "Table 1: FD relative to guidance off (Apply without the guidance weight)",
        [
            "model",
            "case",
            "steps",
            "base",
            "FD off",
            *(held_out_check.guidance_name(w) for w in WEIGHTS),
        ]
        + ["chosen w", "chosen/off", "best", "agrees", "FD floor", "Apply = chosen"]
        + ["check NFE"],
        rows,
    )
    print(
        "(off = Apply with the guidance weight set to 0: the check's recommendation alone;\n"
        " agrees = the chosen weight's FD is within the floor of the best; Apply = chosen:\n"
        " the record as written gives the chosen weight's FD to the last bit; check NFE: the\n"
        " whole check, guidance stage included)\n"
    )
    mismatched = [c for c in cells if not c["apply_matches"]]
    b["run"].check(
        not mismatched,
        f"G0 Apply applies the chosen weight: {len(cells) - len(mismatched)}/{len(cells)} cells",
    )
    rows = []
    for c in cells:
        for name, s in c["check"].items():
            rows.append(
                [c["model"], c["case"], c["steps"], name, f"{s['score']:.4g}"]
                + [f"{s['gain']:+.3g}", f"{s['gain_noise']:.3g}"]
                + [f"{s['edge_loss']:+.3g}", f"{s['edge_loss_noise']:.3g}"]
                + ["vetoed" if held_out_check.vetoed(s) else ""]
            )
    print_table(
        "Table 2: the check's scores (gain and edge loss against guidance off)",
        ["model", "case", "steps", "candidate", "score", "gain", "gain noise", "edge loss"]
        + ["edge noise", ""],
        rows,
    )
    run = b["run"]
    worse = [c for c in cells if c["worse"]]
    run.check(
        not worse,
        f"G1 the chosen weight never worse than guidance off beyond the FD floor: "
        f"{len(cells) - len(worse)}/{len(cells)} cells"
        + (": " + ", ".join(f"[{c['model']} {c['case']} {c['steps']}]" for c in worse))
        * bool(worse),
    )
    helps = [c for c in cells if c["helps"]]
    agrees = sum(c["agrees"] for c in cells)
    print(
        f"G2 helps beyond the floor in {len(helps)}/{len(cells)} cells; the choice is within "
        f"the floor of the best weight in {agrees}/{len(cells)}; a weight helps beyond the floor "
        f"in {sum(c['best_ratio'] * c['fd']['off'] < c['fd']['off'] - c['fd_floor'] for c in cells)}"
        f"/{len(cells)}\n"
    )


def plots(run: Run) -> list[Path]:
    return []


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="smoke run, about 3 minutes")
    run = Run.start(args, FULL, QUICK)
    describe_run(args.quick, f"; search {node_search_mode()}")
    with tempfile.TemporaryDirectory(prefix="guidance-calibrated-") as folder:
        b = {"run": run, "nodes": Nodes(private_store(folder)), "cells": []}
        timings = run_sections(
            (
                ("testbed", lambda: section_testbed(b)),
                ("reference", lambda: section_reference(b)),
                ("dead_leaves", lambda: section_dead_leaves(b)),
                ("tables", lambda: tables(b)),
            )
        )
        seeds = {**SEEDS, "calibration_data": CAL_DATA_SEED, "check": SEARCH_SEED}
        return finish(run, "guidance_calibrated", timings, plots, seeds)


if __name__ == "__main__":
    raise SystemExit(main())

"""Apply benchmark: the held-out check's recommendation against the true FD.

    .venv/bin/python bench/apply.py [--quick] [--latents K] [--out DIR] [--threads N]

Not a test: each target prints PASS or MISS (bench/README.md, docs/results-apply.md).
Calibration through ``noisecal_host.calibrate.calibrate`` with ``correction`` set and
``check=True`` (as the Calibrate node runs it with check = held-out), every model
through the pack's nodes with the record connected (``bench/lib/apply_models.py``),
sampling through KSampler.

Sections:
1. Testbed trained at M = 32 (f0 = 3 and 1, alpha 2.5) at N = M, M/2 and M/4 (both
   mismatch variants), euler 8 and 20 and heun 20 steps, one calibration per cell for
   its sampler: the true FD (the same noise for every model) of plain, every check
   candidate (NoiseShift, NLC alone, NoiseShift + the joint table, at 0.5 and 1), the
   old independent pair, the Apply node and the native denoiser; the recommendation
   against the true winner.
2. Reference network (``models/reference/``) at N = M and M/2, 20 Euler steps: FD
   plain, NoiseShift alone, Apply, native; the check's scores.
3. Cost: network evaluations and wall time of the joint calibration by phase
   against NoiseShift alone.

Judges (floor: the expected FD of as many true samples): A0 Apply without guidance
is its recommended candidate to the last bit; A1 Apply never worse than plain
beyond the floor; A2 within 5% of the best single method in every cell; A3 better
than every single method beyond the floor in a third of the cells where both help;
A4 the joint pair never worse than the better of NoiseShift 1 and NLC 1 beyond the
floor; A5 the recommendation within the floor of the true winner in 90% of the
cells; A6 on the reference at N = M Apply not worse than plain beyond the floor;
A7 the check's guidance never worse than Apply without it beyond the floor.
Seeds: ``bench/lib/seeds.py`` (calibration data 1001; search, trajectory and check 2002;
sampling 3003).
"""

from __future__ import annotations

import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import apply_models as am
from bench.lib import figures, reference, testbed
from bench.lib.apply_models import CANDIDATES, INDEPENDENT, JOINT, NAMES
from bench.lib.calibration import Nodes, private_store, with_both_tables
from bench.lib.report import cell_name, fmt, print_section, print_table, ratio, spectrum_name
from bench.lib.run import Run, RunState, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import ALL as SEEDS
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED, SEARCH_SEED
from bench.lib.testbed import CAL_SCHEDULER, M
from noise_calibration.noisecal import held_out_check
from noise_calibration.noisecal_host import user_messages
from noise_calibration.noisecal_host.calibration_job import DEFAULTS

WITHIN = 1.05  # A2: Apply within this ratio of the best single method
SHARE_BETTER = 1 / 3  # A3: share of the both-help cells where Apply beats every single method
AGREE = 0.90  # A5: share of cells where the recommendation agrees with the true winner
# (label, variant, N): at N = M the two variants coincide
CASES = [
    ("N=32", "image", M),
    ("N=16 image", "image", M // 2),
    ("N=16 pixel", "pixel", M // 2),
    ("N=8 image", "image", M // 4),
    ("N=8 pixel", "pixel", M // 4),
]
RUNS = [("euler", 8), ("euler", 20), ("heun", 20)]  # (sampler, steps) per cell
SHORT = {
    "plain": "plain",
    "noiseshift@0.5": "NS.5",
    "noiseshift@1": "NS1",
    "nlc@0.5": "NLC.5",
    "nlc@1": "NLC1",
    "noiseshift+nlc@0.5": "NS+NLC.5",
    "noiseshift+nlc@1": "NS+NLC1",
    INDEPENDENT: "indep",
}

# cal_count: calibration latents per cell (a quarter held back for the check);
# samples: FD samples per testbed cell (the same noise for every model).
# reference cases: (N, calibration latents, FD samples); at N = 32 the joint
# calibration on 24 latents (18 calibrated on, 6 held back) is about 18k network
# evaluations of about 19 ms each on one core, and a 20-step sample about 0.5 s
FULL = {
    "spectra": [(3.0, 2.5), (1.0, 2.5)],
    "cases": CASES,
    "runs": RUNS,
    "cal_count": DEFAULTS.sample_count,  # --latents; the node's: 10 calibrated on, 6 held
    "samples": 256,
    "reference": {"steps": 20, "cases": [(M, 16, 64), (M // 2, 16, 128)]},
}
QUICK = {
    **FULL,
    "spectra": [(3.0, 2.5)],
    "cases": [CASES[1], CASES[4]],
    "runs": [("euler", 8), ("heun", 20)],
    "samples": 64,
    "reference": {"steps": 8, "cases": [(M // 2, 8, 16)]},
}


@dataclass
class Bench(RunState):
    nodes: Nodes
    spectra: list


# --------------------------------------------------------------------------- 1. testbed


def section_testbed(b: Bench) -> None:
    cfg = b.cfg
    print_section(
        f"1. Testbed (M = {M}, {cfg['cal_count']} calibration latents per cell, "
        f"{cfg['samples']} FD samples, {', '.join(f'{s} {k}' for s, k in cfg['runs'])}, "
        f"{CAL_SCHEDULER})"
    )
    cells = [
        testbed_cell(b, sp, label, variant, n, sampler, steps)
        for sp in b.spectra
        for label, variant, n in cfg["cases"]
        for sampler, steps in cfg["runs"]
    ]
    b.run.data["cells"] = cells
    print()
    cell_table(cfg, cells)
    summary_table(cells)
    disagreement_table(cells)
    judge_testbed(b.run, cells)


def testbed_cell(b: Bench, sp, label: str, variant: str, n: int, sampler: str, steps: int):
    cfg = b.cfg
    model = testbed.model(sp, M, variant)
    x0 = testbed.cal_latents(sp, n, cfg["cal_count"])
    sigmas = testbed.sigmas(model, steps, CAL_SCHEDULER)
    record, wall = am.calibrate_joint(model, x0, sigmas, sampler)
    ns_record, ns_wall = am.calibrate_noiseshift(model, x0, sigmas)
    full = with_both_tables(model, x0, sigmas, sampler, record)
    models = {c.name: am.candidate_model(b.nodes, model, full, c) for c in CANDIDATES}
    models[INDEPENDENT] = am.independent_pair(b.nodes, model, full)
    models["apply"] = am.apply_model(b.nodes, model, record)
    models["apply_base"] = am.apply_model(b.nodes, model, am.without_guidance(record))
    if n != M:
        models["native"] = testbed.model(sp, n, "pixel")  # trained at N: both variants agree
    t0 = time.perf_counter()
    fd = {
        name: testbed.fd(m, sp, n, cfg["samples"], steps=steps, sampler=sampler)
        for name, m in models.items()
    }
    if n == M:
        fd["native"] = fd["plain"]  # plain is the exact denoiser at N = M
    cell = {
        "spectrum": spectrum_name(sp),
        "case": label,
        "variant": variant,
        "N": n,
        "sampler": sampler,
        "steps": steps,
        "samples": cfg["samples"],
        "fd_floor": testbed.floor(sp, n, cfg["samples"]),
        "fd": fd,
        **am.outcome(fd, testbed.floor(sp, n, cfg["samples"]), record),
        "check": record["check"]["candidates"],
        "cost": am.cost_of(record, wall, ns_record, ns_wall),
        "sampling_s": time.perf_counter() - t0,
    }
    print_cell(cell)
    return cell


def print_cell(c: dict) -> None:
    r = c["ratio"]
    print(
        f"  {cell_name(c)} plain {fmt(c['fd']['plain'])}: recommends {c['recommendation']} "
        f"(true winner {c['winner']}, {'agrees' if c['agree'] else 'DISAGREES'}); Apply "
        f"{r['apply']:.3f}x plain, {c['apply_best_single']:.3f}x best single "
        f"({c['best_single']}); joint pair {r[JOINT]:.3f}x, independent {r[INDEPENDENT]:.3f}x; "
        f"calibration {c['cost']['nfe']} NFE {c['cost']['wall_s']:.1f} s, sampling "
        f"{c['sampling_s']:.1f} s",
        flush=True,
    )


def cell_table(cfg: dict, cells: list[dict]) -> None:
    cols = [*NAMES[1:], INDEPENDENT]
    rows = [
        [c["spectrum"], c["case"], c["sampler"], c["steps"], fmt(c["fd"]["plain"])]
        + [f"{c['ratio'][k]:.3f}" for k in cols]
        + [f"{c['ratio']['native']:.3f}", SHORT[c["recommendation"]], SHORT[c["winner"]]]
        + ["yes" if c["agree"] else "NO", f"{c['apply_plain']:.3f}"]
        + [f"{c['apply_best_single']:.3f}", f"{c['guidance']:g}"]
        + [f"{c['guidance_ratio']:.3f}", fmt(c["fd_floor"]), vetoes(c)]
        for c in cells
    ]
    print_table(
        f"Table 1: FD ratio to plain ({cfg['samples']} samples, seed {SAMPLE_SEED}; "
        "< 1 = better than plain)",
        ["spectrum", "case", "sampler", "steps", "FD plain", *(SHORT[k] for k in cols)]
        + ["native", "recommends", "winner", "agree", "Apply/plain", "Apply/best single"]
        + ["guid w", "guid gain", "FD floor", "vetoed"],
        rows,
    )
    print(
        "(guid w = the guidance weight the check added on top of the recommendation (0:\n"
        " none); guid gain = Apply / Apply without that weight; vetoed = candidates the\n"
        " check's edge veto excluded (edges worse than plain's by a quarter and beyond\n"
        " twice the noise);\n"
        " NS = NoiseShift, NLC = Noise Level Correction with the table calibrated alone,\n"
        " NS+NLC = NoiseShift with the joint table (calibrated with NoiseShift on), at\n"
        " strength .5 or 1; indep = NoiseShift 1 + NLC 1 with the table calibrated alone\n"
        " (the old pair); native = the exact denoiser trained at N; winner = the check\n"
        " candidate of lowest true FD; agree = the recommendation's FD is at most the\n"
        " winner's + FD floor; best single = the lowest of NS.5, NS1, NLC.5, NLC1)\n"
    )


def vetoes(c: dict) -> str:
    names = [SHORT[k] for k, r in c["check"].items() if held_out_check.vetoed(r)]
    return ",".join(names) or "-"


def summary_table(cells: list[dict]) -> None:
    """Per sampler and steps: agreement, worst Apply ratios, geometric means."""
    groups = {}
    for c in cells:
        groups.setdefault(f"{c['sampler']} {c['steps']}", []).append(c)
    groups["all"] = cells
    rows = []
    for name, cs in groups.items():
        rows.append(
            [name, len(cs), f"{sum(c['agree'] for c in cs)}/{len(cs)}"]
            + [f"{max(c['apply_plain'] for c in cs):.3f}"]
            + [f"{max(c['apply_best_single'] for c in cs):.3f}"]
            + [f"{geomean(c['apply_plain'] for c in cs):.3f}"]
            + [f"{geomean(c['ratio'][c['best_single']] for c in cs):.3f}"]
            + [f"{max(c['joint_vs_better_single'] for c in cs):.3f}"]
            + [f"{max(c['independent_vs_better_single'] for c in cs):.3f}"]
            + [f"{max(c['ratio'][JOINT] for c in cs):.3f}"]
            + [f"{max(c['ratio'][INDEPENDENT] for c in cs):.3f}"]
        )
    print_table(
        "Table 2: per sampler (worst = the largest ratio over the cells)",
        ["runs", "cells", "agree", "worst Apply/plain", "worst Apply/best single"]
        + ["geomean Apply/plain", "geomean best single/plain", "worst joint/better single"]
        + ["worst indep/better single", "worst joint/plain", "worst indep/plain"],
        rows,
    )
    print(
        "(better single = the lower of NoiseShift 1 and NLC 1; joint = NoiseShift 1 + the\n"
        " joint table at 1; indep = NoiseShift 1 + the table calibrated alone at 1)\n"
    )


def geomean(values) -> float:
    return statistics.geometric_mean(list(values))


def disagreement_table(cells: list[dict]) -> None:
    bad = [c for c in cells if not c["agree"]]
    if not bad:
        print("Table 3: no disagreements\n")
        return
    rows = []
    for c in bad:
        rec, win = c["recommendation"], c["winner"]
        chk = c["check"]
        rows.append(
            [c["spectrum"], c["case"], c["sampler"], c["steps"], SHORT[rec]]
            + [f"{c['ratio'][rec]:.3f}", SHORT[win], f"{c['ratio'][win]:.3f}"]
            + [f"{(c['fd'][rec] - c['fd'][win]) / c['fd_floor']:.1f}"]
            # the winner may be a method the check did not compare (the other table)
            + [f"{chk[rec]['score']:.4g}", f"{chk[win]['score']:.4g}" if win in chk else "-"]
            + [am.z_of(chk[win]) if win in chk else "-", f"{c['apply_plain']:.3f}"]
        )
    print_table(
        "Table 3: disagreements (the recommendation is worse than the true winner by more "
        "than the FD floor)",
        ["spectrum", "case", "sampler", "steps", "recommends", "its FD/plain", "winner"]
        + ["winner FD/plain", "gap / floor", "check score rec", "check score winner"]
        + ["winner gain / noise", "Apply/plain"],
        rows,
    )
    print(
        "(check score: the check's spectral FD on the held-back latents, lower\n"
        " = better; winner gain / noise: its gain over plain in the check over the\n"
        f" bootstrap spread; the check recommends only above {held_out_check.Z_GAIN:g})\n"
    )


def judge_testbed(run: Run, cells: list[dict]) -> None:
    worst = max(cells, key=lambda c: c["apply_plain"])
    over = [c for c in cells if c["apply_worse_than_plain"]]
    run.check(
        not over,
        f"A1 Apply never worse than plain beyond the FD floor: worst {cell_name(worst)} "
        f"{worst['apply_plain']:.3f}x"
        + (f"; over in {len(over)}: " + ", ".join(map(cell_name, over)) if over else ""),
    )
    worst = max(cells, key=lambda c: c["apply_best_single"])
    over = [c for c in cells if c["apply_best_single"] > WITHIN]
    in_floor = [c for c in over if c["fd"]["apply"] <= c["fd"][c["best_single"]] + c["fd_floor"]]
    run.check(
        not over,
        f"A2 Apply within {WITHIN:.2f}x of the best single method in every cell: "
        f"{len(cells) - len(over)}/{len(cells)}; worst {cell_name(worst)} "
        f"{worst['apply_best_single']:.3f}x"
        + (
            f"; over in {len(over)} ({len(in_floor)} of them within the FD floor): "
            + ", ".join(f"{cell_name(c)} {c['apply_best_single']:.3f}x" for c in over)
            if over
            else ""
        ),
    )
    both = [c for c in cells if c["both_help"]]
    beat = [c for c in both if c["apply_beats_singles"]]
    raw = [c for c in both if c["apply_beats_singles_raw"]]
    run.check(
        bool(both) and len(beat) >= SHARE_BETTER * len(both),
        f"A3 Apply better than every single method (by more than the FD floor) in "
        f"{len(beat)}/{len(both)} of the cells where both methods help (target >= "
        f"{SHARE_BETTER:.0%}; {len(raw)}/{len(both)} without the floor)"
        + (": " + ", ".join(map(cell_name, beat)) if beat else ""),
    )
    joint_over = [c for c in cells if c["joint_worse"]]
    indep_over = [c for c in cells if c["independent_worse"]]
    wj = max(cells, key=lambda c: c["joint_vs_better_single"])
    wi = max(cells, key=lambda c: c["independent_vs_better_single"])
    run.check(
        not joint_over,
        f"A4 joint pair never worse than the better single method (NoiseShift 1, NLC 1) "
        f"beyond the FD floor: over in {len(joint_over)}/{len(cells)} cells, worst "
        f"{cell_name(wj)} {wj['joint_vs_better_single']:.3f}x ({wj['ratio'][JOINT]:.3f}x "
        f"plain); independent pair over in {len(indep_over)}/{len(cells)}, worst "
        f"{cell_name(wi)} {wi['independent_vs_better_single']:.3f}x "
        f"({wi['ratio'][INDEPENDENT]:.3f}x plain)"
        + (": " + ", ".join(map(cell_name, joint_over)) if joint_over else ""),
    )
    agree = [c for c in cells if c["agree"]]
    run.check(
        len(agree) >= AGREE * len(cells),
        f"A5 the recommendation agrees with the true winner (within the FD floor) in "
        f"{len(agree)}/{len(cells)} cells = {len(agree) / len(cells):.0%} (target >= "
        f"{AGREE:.0%})",
    )
    exact = [c for c in cells if c["apply_minus_recommended"] == 0]
    run.check(
        len(exact) == len(cells),
        f"A0 Apply without the guidance weight gives its recommended candidate's FD to the "
        f"last bit: {len(exact)}/{len(cells)} cells",
    )
    worse = [c for c in cells if c["guidance_worse"]]
    guided = [c for c in cells if c["guidance"] > 0]
    run.check(
        not worse,
        f"A7 the check's guidance never worse than Apply without it beyond the FD floor: "
        f"{len(cells) - len(worse)}/{len(cells)} cells; guidance chosen in {len(guided)}, "
        f"Apply/Apply without guidance there "
        + ", ".join(f"{c['guidance_ratio']:.3f}" for c in guided)
        + (": worse in " + ", ".join(map(cell_name, worse)) if worse else ""),
    )


# --------------------------------------------------------------------------- 2. reference


def section_reference(b: Bench) -> None:
    o = b.cfg["reference"]
    r = reference.load()
    ref = r.ref
    print_section(
        f"2. Reference network ({ref.path.name}, M = {ref.train_res}, shift {ref.shift:g}; "
        f"{o['steps']} Euler steps; (N, calibration latents, FD samples) {o['cases']})"
    )
    cases = [reference_case(b, r, *case) for case in o["cases"]]
    b.run.data["reference"] = {**reference.info(r), "cases": cases}
    print()
    reference_table(o, cases)
    judge_reference(b.run, cases, ref.train_res)


def reference_case(b: Bench, r: reference.Reference, n: int, cal_count: int, samples: int) -> dict:
    o = b.cfg["reference"]
    x0 = testbed.cal_latents(r.ref.spectrum, n, cal_count)
    latents = r.model.model.process_latent_out(x0)  # the field samples are model-space
    sigmas = testbed.sigmas(r.model, o["steps"], CAL_SCHEDULER)
    opts = {"positive": r.positive, "max_batch": 32}
    print(f"N = {n}: joint calibration with the check ({cal_count} latents) ...", flush=True)
    record, wall = am.calibrate_joint(r.model, latents, sigmas, "euler", **opts)
    print(f"N = {n}: NoiseShift alone ...", flush=True)
    ns_record, ns_wall = am.calibrate_noiseshift(r.model, latents, sigmas, **opts)
    models = {
        "plain": r.model,
        "noiseshift": b.nodes.noiseshift(r.model, ns_record),
        "apply": am.apply_model(b.nodes, r.model, record),
        "apply_base": am.apply_model(b.nodes, r.model, am.without_guidance(record)),
    }
    print(f"N = {n}: sampling {samples} per model ...", flush=True)
    fd = {k: reference.fd(r, m, n, samples, o["steps"]) for k, m in models.items()}
    fd["native"] = reference.native_fd(r, n, samples, o["steps"])
    floor = testbed.floor(r.ref.spectrum, n, samples)
    case = {
        "N": n,
        "steps": o["steps"],
        "cal_count": cal_count,
        "samples": samples,
        "fd": fd,
        "fd_floor": floor,
        "ratio": {k: ratio(v, fd["plain"]) for k, v in fd.items()},
        "recommendation": record["check"]["recommendation"],
        "guidance": am.guidance_weight(record),
        "check": record["check"]["candidates"],
        "apply_worse_than_plain": fd["apply"] > fd["plain"] + floor,
        "guidance_worse": fd["apply"] > fd["apply_base"] + floor,
        "cost": am.cost_of(record, wall, ns_record, ns_wall),
    }
    print(
        f"N = {n}: FD plain {fmt(fd['plain'])}, NoiseShift {case['ratio']['noiseshift']:.3f}x, "
        f"Apply ({case['recommendation']}) {case['ratio']['apply']:.3f}x, native "
        f"{case['ratio']['native']:.3f}x; joint calibration {case['cost']['nfe']} NFE in "
        f"{wall:.1f} s, NoiseShift alone {case['cost']['noiseshift_nfe']} NFE in "
        f"{ns_wall:.1f} s",
        flush=True,
    )
    return case


def reference_table(o: dict, cases: list[dict]) -> None:
    rows = [
        [c["N"], c["cal_count"], c["samples"]]
        + [fmt(c["fd"][k]) for k in ("plain", "noiseshift", "apply")]
        + [fmt(c["fd"]["native"]), f"{c['ratio']['noiseshift']:.3f}"]
        + [f"{c['ratio']['apply']:.3f}", c["recommendation"], f"{c['guidance']:g}"]
        + [f"{c['ratio']['apply_base']:.3f}", fmt(c["fd_floor"])]
        for c in cases
    ]
    print_table(
        f"Table 4: reference network, FD to the true field ({o['steps']} Euler steps, seed "
        f"{SAMPLE_SEED})",
        ["N", "cal latents", "samples", "FD plain", "FD NoiseShift", "FD Apply", "FD native"]
        + ["NS/plain"]
        + ["Apply/plain", "recommends", "guidance w", "Apply w/o guidance/plain", "FD floor"],
        rows,
    )
    rows = [
        [c["N"], name, f"{v['score']:.5g}", f"{v['gain']:+.5g}", f"{v['gain_noise']:.3g}"]
        + [am.z_of(v)]
        for c in cases
        for name, v in c["check"].items()
    ]
    print_table(
        "Table 5: the reference's held-out check (score: spectral FD to the "
        "held-back latents; gain over plain and its bootstrap spread)",
        ["N", "candidate", "score", "gain", "gain noise", "gain / noise"],
        rows,
    )
    print(
        "(NoiseShift: calibrate() without correction and check, on all the latents;\n"
        " Apply: the Apply node with the joint calibration's record; native: the exact\n"
        " testbed denoiser for N, same schedule)\n"
    )


def judge_reference(run: Run, cases: list[dict], m: int) -> None:
    worse = [c for c in cases if c["guidance_worse"]]
    run.check(
        not worse,
        f"A7 reference: the check's guidance never worse than Apply without it beyond the "
        f"floor: {len(cases) - len(worse)}/{len(cases)} (weights "
        + ", ".join(f"N={c['N']}: {c['guidance']:g}" for c in cases)
        + ")",
    )
    for c in cases:
        if c["N"] != m:
            continue
        run.check(
            not c["apply_worse_than_plain"],
            f"A6 reference N={c['N']}: Apply ({c['recommendation']}) FD {fmt(c['fd']['apply'])}"
            f" = {c['ratio']['apply']:.3f}x plain {fmt(c['fd']['plain'])} (floor "
            f"{fmt(c['fd_floor'])}); NoiseShift alone {c['ratio']['noiseshift']:.3f}x",
        )


# --------------------------------------------------------------------------- 3. cost


def section_cost(b: Bench) -> None:
    print_section("3. Calibration cost: the joint run against NoiseShift alone")
    rows = [
        (["testbed", c["spectrum"], c["case"], f"{c['sampler']} {c['steps']}"], c["cost"])
        for c in b.run.data.get("cells", [])
    ] + [
        (["reference", "", f"N={c['N']}", f"euler {c['steps']}"], c["cost"])
        for c in b.run.data.get("reference", {}).get("cases", [])
    ]
    table = [
        [*labels, k["calibrated_on"], k["held_out"], k["nfe"], k["nfe_search"]]
        + [f"{k['nfe_table']} ({k['table']})", k["nfe_check"], k["nfe_guidance"]]
        + [f"{k['wall_s']:.1f}"]
        + [k["noiseshift_nfe"], f"{k['noiseshift_wall_s']:.1f}", f"{k['nfe_ratio']:.1f}"]
        + [f"{k['wall_ratio']:.1f}"]
        for labels, k in rows
    ]
    print_table(
        "Table 6: calibration cost (NFE: latents through the network)",
        ["model", "spectrum", "case", "runs", "fit", "held", "NFE", "search"]
        + ["table", "check", "guidance", "s", "NS alone NFE", "NS alone s"]
        + ["NFE ratio", "wall ratio"],
        table,
    )
    print(
        "(calibrate(correction=..., check=True): the NoiseShift search and one table on\n"
        " 'fit' latents (joint: with NoiseShift on, where the curve shifts), the check's\n"
        " candidates and guidance weights on 'held' ones; NS alone: calibrate() without\n"
        " correction and check on all the latents)\n"
    )
    testbed_rows = [k for labels, k in rows if labels[0] == "testbed"]
    if testbed_rows:
        b.run.data["cost_summary"] = {
            "testbed_median_nfe_ratio": statistics.median(k["nfe_ratio"] for k in testbed_rows),
            "testbed_median_wall_ratio": statistics.median(k["wall_ratio"] for k in testbed_rows),
        }
        s = b.run.data["cost_summary"]
        print(
            f"testbed: median NFE ratio {s['testbed_median_nfe_ratio']:.1f}, median wall "
            f"ratio {s['testbed_median_wall_ratio']:.1f}\n"
        )


# --------------------------------------------------------------------------- main


def plots(run: Run) -> list[Path]:
    series = [
        ("best single", lambda c: c["ratio"][c["best_single"]], "o"),
        ("NoiseShift 1 + joint NLC 1", lambda c: c["ratio"][JOINT], "^"),
        ("NoiseShift 1 + independent NLC 1", lambda c: c["ratio"][INDEPENDENT], "v"),
        ("Apply", lambda c: c["ratio"]["apply"], "*"),
    ]
    return figures.apply(run, series, M)


def main(argv=None) -> int:
    def latents_flag(parser):
        parser.add_argument(
            "--latents",
            type=int,
            default=DEFAULTS.sample_count,
            help="calibration latents per cell, a quarter (at least 4) held back "
            f"(default: the Calibrate node's, {DEFAULTS.sample_count})",
        )

    args = parse_args(__doc__, argv, quick_help="smoke run, about a minute", extra=latents_flag)
    run = Run.start(args, FULL, QUICK)
    run.cfg["cal_count"] = args.latents
    run.cfg["reference"]["cases"] = [
        (n, args.latents, k) for n, _, k in run.cfg["reference"]["cases"]
    ]
    # the candidates pair the nodes on purpose: their warning is known here
    logging.getLogger("noise_calibration").addFilter(
        lambda record: getattr(record, "message_id", None) != user_messages.PAIR
    )
    describe_run(args.quick)
    with tempfile.TemporaryDirectory(prefix="apply-bench-") as folder:
        b = Bench(run, Nodes(private_store(folder)), testbed.spectra(run.cfg["spectra"]))
        timings = run_sections(
            (
                ("testbed", lambda: section_testbed(b)),
                ("reference", lambda: section_reference(b)),
                ("cost", lambda: section_cost(b)),
            )
        )
        seeds = {**SEEDS, "calibration_data": CAL_DATA_SEED, "check": SEARCH_SEED}
        return finish(run, "apply", timings, plots, seeds)


if __name__ == "__main__":
    sys.exit(main())

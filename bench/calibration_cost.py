"""Calibration cost: network evaluations (NFE) per resolution against gap closed.

Run from the repository root::

    .venv/bin/python bench/calibration_cost.py            # full: about 40 minutes on 2 busy cores
    .venv/bin/python bench/calibration_cost.py --quick    # smoke run: about 10 minutes

Cases: the exact-denoiser testbed (M = 32, both mismatch variants, the two
spectra of bench/noiseshift.py, N = 16 and 8) and the trained reference
network at N = 16, all on a 20-step "simple" schedule with the NoiseShift
search as the Calibrate node runs it (``calibrate.run_search``), sampled
through ComfyUI's KSampler with the pack's NoiseShift node.

Sections:

1. Latent count: the fast search on the first 8, 16, 32 and 64 latents of
   one calibration set, and the lean search on 8, 16 and 32: NFE, gap closed
   and the curve's spread (the largest per-step standard deviation of
   sigma_hat over disjoint subsets of the 64 latents).
2. Old and new default side by side: fast on 64 latents (the demo's and
   benchmarks' default until now) against lean on 12 (the new default), and
   the paper's grid on the same 64 latents (its NFE and gap closed). The old
   default is also run on two more calibration sets of 64 (data seeds 1002,
   1003): how far its own gap closed moves with the data is the comparison's
   noise. Targets: the new default <= 1000 NFE per resolution, and its gap
   closed at most 2 points below the old default's.
3. The training resolution: at N = M the new default's largest
   |sigma_hat - sigma| <= 0.01 (testbed), and the reference network's
   (training error, reported).
4. Search quality: the fast search's total one-step error against the
   grid's on the same latents (within 1%).
5. Reuse across resolutions: the new default started from the curve of the
   same model at another resolution (``calibrate.calibrate`` with
   ``warm_start``, the nearest file in the store), against the same search
   cold: NFE and gap closed, testbed N = 16 from 8 and 8 from 16, the
   reference network at N = 16 from N = 32 (what the demo calibrates first).
6. Memory: peak resident memory of an old-default calibration of the
   reference network at N = M (up to 192 rows per round) against
   ``max_batch`` (a fresh process per value), and the estimate for an
   SD3.5-medium-sized network (printed with its formula).
7. The Calibrate node at its defaults (and with correction = euler), phase
   by phase: rows through the network (``bench/node_cost_probe.py``, a hook on
   the network) on the reference network at 128 px and on the testbed, on
   this tree and on the commit before the cost work (BEFORE, a git worktree)
   in the same run, with each phase's formula. Targets: at most 1,500
   evaluations at the target size by default, 2,500 with correction.
8. The node's NoiseShift curve before (lean on 24 latents, the rest of 32
   held back) and now (lean on 10 of 16): gap closed within 2 points, as the
   mean over calibration sets of the case's 64 latents (3 sets of 24, 6
   disjoint sets of 10; one set in --quick).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import probes, reference, testbed  # noqa: E402
from bench.lib.calibration import Nodes, private_store  # noqa: E402
from bench.lib.cost_case import Case, field_set  # noqa: E402
from bench.lib.report import fmt, pct, print_section, print_table, spectrum_name  # noqa: E402
from bench.lib.run import ROOT, Run, describe_run, finish, parse_args, run_sections  # noqa: E402
from bench.lib.seeds import ALL as SEEDS  # noqa: E402
from bench.lib.seeds import SEARCH_SEED  # noqa: E402
from bench.lib.testbed import CAL_STEPS, M  # noqa: E402
from noise_calibration.noisecal import held_out_check  # noqa: E402
from noise_calibration.noisecal_host import calibrate  # noqa: E402
from noise_calibration.noisecal_host.calibration_job import DEFAULTS  # noqa: E402

OLD = ("fast", 64)  # (search mode, latents): the default until now
NEW = ("lean", 12)
GRID = ("grid", 64)
NFE_TARGET = 1000
GAP_POINTS = 0.02
REF_N = 16
FULL = {
    "spectra": [(3.0, 2.5), (1.0, 3.5)],
    "variants": ["pixel", "image"],
    "resolutions": [16, 8],
    "samples": 512,
    "ref_samples": 128,
    "counts_fast": [8, 16, 32, 64],
    "counts_lean": [8, 16, 32],
    "reference_grid": True,
    "identity_reference": True,
    "other_sets": [1002, 1003],
    "memory_batches": [1, 8, 32, 128],
    # section 8: where each calibration set starts in the 64 latents of a case
    # (before: 3 sets of 24, overlapping by 4; now: 6 disjoint sets of 10)
    "fit_offsets": {"before": [0, 20, 40], "now": [0, 10, 20, 30, 40, 50]},
}
QUICK = {
    **FULL,
    "spectra": [(3.0, 2.5)],
    "variants": ["pixel"],
    "resolutions": [16],
    "samples": 128,
    "ref_samples": 32,
    "counts_fast": [16, 64],
    "counts_lean": [16],
    "reference_grid": False,
    "identity_reference": False,
    "other_sets": [1002],
    "memory_batches": [1, 64],
    "fit_offsets": {"before": [0], "now": [0]},
}


def testbed_cases(cfg) -> list[Case]:
    cases = []
    for sp in testbed.spectra(cfg["spectra"]):
        for variant in cfg["variants"]:
            for n in cfg["resolutions"]:
                model = testbed.model(sp, M, variant)
                cases.append(
                    Case(
                        f"{spectrum_name(sp)} {variant} N={n}",
                        model,
                        testbed.cal_latents(sp, n, 64),
                        testbed.sigmas(model, CAL_STEPS),
                        lambda m, sp=sp, n=n: testbed.fd(m, sp, n, cfg["samples"]),
                        testbed.fd(testbed.model(sp, n, "pixel"), sp, n, cfg["samples"]),
                        other=lambda seed, sp=sp, n=n: field_set(sp, n, seed),
                    )
                )
    # reuse: each resolution from the other one of its spectrum and variant
    for case in cases:
        others = [c for c in cases if c.model is case.model and c is not case]
        if others:
            case.partner = (others[0].name, others[0].latents)
    return cases


def reference_case(cfg, ref, n: int) -> Case:
    latents = ref.model.model.process_latent_out(testbed.cal_latents(ref.ref.spectrum, n, 64))
    count = cfg["ref_samples"]
    native = None if n == M else reference.native_fd(ref, n, count)
    case = Case(
        f"reference N={n}",
        ref.model,
        latents,
        testbed.sigmas(ref.model, CAL_STEPS),
        lambda m: reference.fd(ref, m, n, count),
        native,
        positive=ref.positive,
        other=lambda seed: ref.model.model.process_latent_out(field_set(ref.ref.spectrum, n, seed)),
    )
    at_m = ref.model.model.process_latent_out(testbed.cal_latents(ref.ref.spectrum, M, 64))
    case.partner = (f"reference N={M}", at_m)
    return case


# --------------------------------------------------------------------------- 1. counts


def spread(case: Case, mode: str, count: int) -> float | None:
    """Largest per-step std of sigma_hat over disjoint subsets of the 64 latents."""
    subsets = min(4, 64 // count)
    if subsets < 2:
        return None
    curves = [case.calibrate(mode, count, offset=j * count)[0].sigma_hat for j in range(subsets)]
    return max(statistics.stdev(values) for values in zip(*curves, strict=True))


def section_counts(run: Run, cases: list[Case], nodes: Nodes) -> None:
    print_section("1. Latent count: fast and lean on the first k latents")
    rows, data = [], []
    for case in cases:
        for mode, counts in (("fast", run.cfg["counts_fast"]), ("lean", run.cfg["counts_lean"])):
            for k in counts:
                res, record, wall = case.calibrate(mode, k)
                d = {"case": case.name, "mode": mode, "latents": k, "nfe": res.nfe}
                d.update(gap=case.gap(nodes, record), spread=spread(case, mode, k), wall_s=wall)
                data.append(d)
                rows.append(
                    [case.name, mode, k, res.nfe, f"{res.nfe / (k * CAL_STEPS):.2f}"]
                    + [pct(d["gap"]), fmt(d["spread"], ".4f"), f"{wall:.2f}"]
                )
    print_table(
        "Table 1: NoiseShift by latent count (first k of one set of 64)",
        ["case", "mode", "latents", "NFE", "NFE/latent/step", "gap closed", "spread", "s"],
        rows,
    )
    print("(spread: largest per-step std of sigma_hat over disjoint k-latent subsets)\n")
    run.data["counts"] = data


# --------------------------------------------------------------------------- 2. defaults


def section_defaults(run: Run, cases: list[Case], nodes: Nodes, grid_cases) -> None:
    print_section(f"2. Old default {OLD} against new default {NEW}, and the grid {GRID}")
    rows, data = [], []
    for case in cases:
        d = {"case": case.name, "fd_plain": case.fd_plain, "fd_native": case.fd_native}
        for label, (mode, k) in (("old", OLD), ("new", NEW), ("grid", GRID)):
            if label == "grid" and case.name not in grid_cases:
                continue
            res, record, wall = case.calibrate(mode, k)
            d[label] = {
                "nfe": res.nfe,
                "wall_s": wall,
                "gap": case.gap(nodes, record),
                "total_error_after": res.total_error_after,
            }
        mode, k = OLD
        d["old_other_sets"] = {
            seed: case.gap(nodes, case.calibrate(mode, k, x0=case.other(seed))[1])
            for seed in run.cfg["other_sets"]
        }
        data.append(d)
        old, new, grid = d["old"], d["new"], d.get("grid")
        others = [g for g in d["old_other_sets"].values() if g is not None] + [old["gap"]]
        rows.append(
            [case.name, old["nfe"], new["nfe"], grid["nfe"] if grid else "not run"]
            + [f"{old['nfe'] / new['nfe']:.1f}x", f"{old['wall_s']:.1f}", f"{new['wall_s']:.1f}"]
            + [pct(old["gap"]), pct(new["gap"]), pct(grid["gap"]) if grid else "-"]
            + [points(new["gap"], old["gap"])]
            + [f"{100 * min(others):.1f}..{100 * max(others):.1f}%"]
        )
        run.check(
            new["nfe"] <= NFE_TARGET,
            f"C1 {case.name}: new default NFE {new['nfe']} (target <= 1000)",
        )
        ok = old["gap"] is not None and new["gap"] is not None
        run.check(
            ok and new["gap"] >= old["gap"] - GAP_POINTS,
            f"C2 {case.name}: gap closed {pct(new['gap'])} against {pct(old['gap'])} "
            f"({points(new['gap'], old['gap'])} points; target >= -2)",
        )
    print_table(
        f"Table 2: NFE, wall time and gap closed ({CAL_STEPS} steps), old {OLD} / new {NEW}",
        ["case", "NFE old", "NFE new", "NFE grid", "old/new", "s old", "s new", "gap old"]
        + ["gap new", "gap grid", "new - old", "old, 3 sets"],
        rows,
    )
    print("(old, 3 sets: the old default's gap closed on this set and two more of 64)\n")
    run.data["defaults"] = data


def points(new, old) -> str:
    return "n/a" if new is None or old is None else f"{100 * (new - old):+.1f}"


# --------------------------------------------------------------------------- 3. N = M


def section_identity(run: Run, cfg, ref) -> None:
    print_section("3. The training resolution: largest |sigma_hat - sigma| of the new default")
    rows, data = [], []
    targets = [
        (
            f"testbed {spectrum_name(sp)} N={M}",
            testbed.model(sp, M, "pixel"),
            testbed.cal_latents(sp, M, 64),
            None,
            True,
        )
        for sp in testbed.spectra(cfg["spectra"])
    ]
    ref_latents = ref.model.model.process_latent_out(testbed.cal_latents(ref.ref.spectrum, M, 64))
    if cfg["identity_reference"]:
        targets.append((f"reference N={M}", ref.model, ref_latents, ref.positive, False))
    for name, model, latents, positive, judged in targets:
        for mode, k in (OLD, NEW):
            res, _ = calibrate.run_search(
                model,
                latents[:k],
                testbed.sigmas(model, CAL_STEPS),
                positive=positive,
                mode=mode,
                seed=SEARCH_SEED,
                max_batch=64,
            )
            shift = max(abs(h - s) for s, h in zip(res.sigmas, res.sigma_hat, strict=True))
            data.append({"case": name, "mode": mode, "latents": k, "max_abs_shift": shift})
            rows.append([name, mode, k, res.nfe, f"{shift:.4f}"])
            if judged and (mode, k) == NEW:
                run.check(shift <= 0.01, f"C3 {name}: max |shift| {shift:.4f} (target <= 0.01)")
    print_table(
        "Table 3: at N = M (the reference network's shift there is training error, reported)",
        ["case", "mode", "latents", "NFE", "max |shift|"],
        rows,
    )
    run.data["identity"] = data


# --------------------------------------------------------------------------- 4. search


def section_search(run: Run) -> None:
    print_section("4. Fast against grid on the same 64 latents: total one-step error")
    rows = []
    for d in run.data["defaults"]:
        if "grid" not in d:
            continue
        fast, grid = d["old"]["total_error_after"], d["grid"]["total_error_after"]
        rel = (fast - grid) / grid
        rows.append([d["case"], f"{grid:.6g}", f"{fast:.6g}", pct(rel, "+.3f")])
        run.check(rel <= 0.01, f"C4 {d['case']}: fast total error {pct(rel, '+.3f')} vs grid")
    print_table(
        "Table 4: total one-step error after (sum over steps)",
        ["case", "grid", "fast", "fast vs grid"],
        rows,
    )


# --------------------------------------------------------------------------- 5. reuse


def section_reuse(run: Run, cases: list[Case], nodes: Nodes) -> None:
    print_section("5. Reuse across resolutions: the new default warm-started from another one")
    mode, k = NEW
    rows, data = [], []
    for case in cases:
        if case.partner is None:
            continue
        partner_name, partner_latents = case.partner
        with tempfile.TemporaryDirectory() as folder:
            source = case.calibrate_stored(folder, mode, k, False, latents=partner_latents)
            cold = case.calibrate_stored(tempfile.mkdtemp(dir=folder), mode, k, False)
            warm = case.calibrate_stored(folder, mode, k, True)
        started = warm["method"]["params"]["warm_start"]
        assert started is not None and cold["method"]["params"]["warm_start"] is None
        d = {"case": case.name, "from": partner_name, "warm_start": started}
        for label, record in (("cold", cold), ("warm", warm)):
            d[label] = {
                "nfe": record["cost"]["network_evaluations"],
                "gap": case.gap(nodes, record),
                "sigma_hat": record["sigma_hat"],
            }
        d["source_nfe"] = source["cost"]["network_evaluations"]
        data.append(d)
        c, w = d["cold"], d["warm"]
        rows.append(
            [case.name, partner_name, c["nfe"], w["nfe"], f"{w['nfe'] / c['nfe'] - 1:+.1%}"]
            + [pct(c["gap"]), pct(w["gap"]), points(w["gap"], c["gap"])]
        )
    print_table(
        f"Table 6: {NEW} cold and warm-started from the curve at another resolution",
        ["case", "from", "NFE cold", "NFE warm", "NFE change", "gap cold", "gap warm"]
        + ["warm - cold"],
        rows,
    )
    run.data["reuse"] = data


# --------------------------------------------------------------------------- 6. memory


def section_memory(run: Run) -> None:
    print_section("6. Memory against max_batch")
    rows, data = [], []
    for mb in run.cfg["memory_batches"]:
        out = (
            subprocess.run(
                [sys.executable, __file__, "--memory-probe", str(mb)],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        d = json.loads(out)
        d["extra_mib"] = (d["peak_kib"] - d["before_kib"]) / 1024
        data.append(d)
        rows.append(
            [mb, d["nfe"], f"{d['before_kib'] / 1024:.0f}", f"{d['peak_kib'] / 1024:.0f}"]
            + [f"{d['extra_mib']:.0f}", f"{d['wall_s']:.1f}"]
        )
    print_table(
        f"Table 5a: reference network, N = {M}, old default, one process per max_batch (CPU RSS)",
        ["max_batch", "NFE", "RSS before MiB", "peak MiB", "extra MiB", "s"],
        rows,
    )
    est = [
        [side, mb, f"{probes.activation_estimate(side, mb):.1f}"]
        for side in (512, 1024, 2048)
        for mb in (8, 32, 64)
    ]
    print_table(
        "Table 5b: estimated GPU memory of an SD3.5-medium-sized calibration (weights + activations)",
        ["image px", "max_batch", "GB"],
        est,
    )
    print(
        "(estimate: 2.5e9 parameters x 2 B, plus max_batch x tokens x 1536 x 9 x 2 B, tokens = "
        "(px / 16)^2 + 154; text encoders are offloaded by ComfyUI once the prompt is encoded)\n"
    )
    run.data["memory"] = {"measured": data, "estimate": est}


# the last commit before the calibration-cost work: section 7's "before"
BEFORE = "982b112"
NODE_TARGET = {"off": 1500, "euler": 2500}  # evaluations at the target size
NODE_PHASES = ["self-generation", "noiseshift", "correction", "check", "guidance"]
FORMULAS = {
    "self-generation": "count x generation steps (x2 with cfg > 1), at the native size",
    "noiseshift": "fit x steps x 3-6 (lean: r = 0, a warm start, Gauss-Newton steps)",
    "correction": "fit x (steps - 1) x 4 (r = 0, a probe, 2 predicted; was 25 and 2 tables)",
    "check": "candidates (3-4) x held x steps",
    "guidance": "weights (1) x held x steps x 2 rows (the branch rides in the call)",
}


def section_node(run: Run) -> None:
    print_section(
        "7. The Calibrate node at its defaults, phase by phase (20 steps; reference network "
        "at 128 px self-generated at 256 px, testbed f0=3 'image' N = 16 from a LATENT), "
        f"before ({BEFORE}) and now"
    )
    with tempfile.TemporaryDirectory() as folder:
        old_root = probes.before_tree(Path(folder), BEFORE)
        try:
            results = {}
            for kind in ("reference", "testbed"):
                for correction in ("off", "euler"):
                    now = probes.probe(ROOT, kind, correction)
                    old = probes.probe(old_root, kind, correction) if old_root else None
                    results[f"{kind} {correction}"] = {"now": now, "before": old}
        finally:
            if old_root is not None:
                probes.remove_tree(old_root)
    run.data["node"] = results
    rows = []
    for name, r in results.items():
        now, old = r["now"], r["before"]
        for ph in NODE_PHASES + ["at the target size"]:
            if ph == "at the target size":
                n = sum(v for k, v in now["rows"].items() if k != "self-generation")
                o = old and sum(v for k, v in old["rows"].items() if k != "self-generation")
            else:
                n, o = now["rows"].get(ph, 0), old and old["rows"].get(ph, 0)
            ratio_text = f"{o / n:.1f}x" if o and n else "-"
            rows.append([name, ph, o if old else "-", n, ratio_text])
        rows.append([name, "seconds", f"{old['seconds']:.0f}" if old else "-"])
        rows[-1] += [f"{now['seconds']:.0f}", "-"]
    print_table(
        "Table 7: rows through the network per phase (before / now = fewer by)",
        ["case", "phase", "before", "now", "before/now"],
        rows,
    )
    print("Each phase's count:")
    for ph, text in FORMULAS.items():
        print(f"  {ph}: {text}")
    for name, r in results.items():
        kind, correction = name.split()
        total = sum(v for k, v in r["now"]["rows"].items() if k != "self-generation")
        target = NODE_TARGET[correction]
        run.check(
            total <= target,
            f"N1 {name}: {total} evaluations at the target size (at most {target}; "
            f"{r['now']['sample_count']} latents, recommends {r['now']['recommendation']})",
        )


# the NoiseShift curve's latents in the Calibrate node's default run: before this
# round's cost work (32 latents, 24 calibrated on) and now (16, 10 calibrated on)
NODE_FIT = {"before": 24, "now": held_out_check.split(DEFAULTS.sample_count)[0]}


def section_node_fit(run: Run, cases: list[Case], nodes: Nodes) -> None:
    offsets = run.cfg["fit_offsets"]
    print_section(
        f"8. The node's NoiseShift curve: lean on {NODE_FIT['before']} latents (before) "
        f"and on {NODE_FIT['now']} (now, the rest held back for the check), each on "
        f"{len(offsets['before'])} and {len(offsets['now'])} calibration sets"
    )
    # One set of 10 latents is a noisy draw (the gap closed moves by several points
    # from one set to the next), so the verdict compares the mean over sets: what a
    # user calibrating on their own set can expect.
    rows, data = [], []
    for case in cases:
        d = {"case": case.name}
        for label, k in NODE_FIT.items():
            fits = [case.calibrate("lean", k, offset=o) for o in offsets[label]]
            gaps = [case.gap(nodes, record) for _, record, _ in fits]
            d[label] = {"nfe": [res.nfe for res, _, _ in fits], "gaps": gaps}
        data.append(d)
        before, now = d["before"], d["now"]
        ok = None not in before["gaps"] + now["gaps"]
        mean_before = statistics.mean(before["gaps"]) if ok else None
        mean_now = statistics.mean(now["gaps"]) if ok else None
        rows.append(
            [
                case.name,
                before["nfe"][0],
                now["nfe"][0],
                pct(before["gaps"][0]),
                pct(now["gaps"][0]),
                pct(mean_before),
                pct(mean_now),
                sd_points(now["gaps"]),
                points(mean_now, mean_before),
            ]
        )
        run.check(
            ok and mean_now >= mean_before - GAP_POINTS,
            f"C5 {case.name}: gap closed {pct(mean_now)} on {NODE_FIT['now']} latents "
            f"against {pct(mean_before)} on {NODE_FIT['before']}, means over sets "
            f"({points(mean_now, mean_before)} points; target >= -2)",
        )
    print_table(
        "Table 8: the node's NoiseShift curve, before and now (20 steps, lean; "
        "first set, then the mean over sets)",
        [
            "case",
            "NFE before",
            "NFE now",
            "gap before (set 1)",
            "gap now (set 1)",
            "mean before",
            "mean now",
            "now: sd over sets",
            "mean now - before",
        ],
        rows,
    )
    run.data["node_fit"] = data


def sd_points(values) -> str:
    """The sample standard deviation in points, or '-' for one value."""
    return f"{100 * statistics.stdev(values):.1f}" if len(values) > 1 else "-"


def main(argv=None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] == "--memory-probe":
        probes.memory_probe(int(sys.argv[2]), OLD)
        return 0
    args = parse_args(
        __doc__,
        argv,
        quick_help="smoke run, about 2 minutes",
        extra=lambda p: p.add_argument(
            "--only",
            nargs="+",
            metavar="SECTION",
            help="run these sections only (names as printed)",
        ),
    )
    run = Run.start(args, FULL, QUICK)
    describe_run(run.quick)
    cfg = run.cfg
    with tempfile.TemporaryDirectory() as folder:
        nodes = Nodes(private_store(Path(folder)))
        ref = reference.load()
        cases = testbed_cases(cfg) + [reference_case(cfg, ref, REF_N)]
        grid_cases = {
            c.name for c in cases if c.name != f"reference N={REF_N}" or cfg["reference_grid"]
        }
        sections = [
            ("counts", lambda: section_counts(run, cases, nodes)),
            ("defaults", lambda: section_defaults(run, cases, nodes, grid_cases)),
            ("identity", lambda: section_identity(run, cfg, ref)),
            ("search", lambda: section_search(run)),
            ("reuse", lambda: section_reuse(run, cases, nodes)),
            ("memory", lambda: section_memory(run)),
            ("node", lambda: section_node(run)),
            ("node fit", lambda: section_node_fit(run, cases, nodes)),
        ]
        timings = run_sections([s for s in sections if not args.only or s[0] in args.only])
    return finish(run, "calibration_cost", timings, lambda _run: [], SEEDS)


if __name__ == "__main__":
    sys.exit(main())

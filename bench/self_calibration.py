"""Self-calibration benchmark: NoiseShift calibrated from data the model generates
itself, against the same calibration from true data.

    .venv/bin/python bench/self_calibration.py [--quick] [--out DIR] [--threads N]

Not a test: each target prints PASS or MISS (bench/README.md,
docs/results-self-calibration.md). The Calibrate node's data = "self-generate"
samples the model at its native size and brings the set to the target
(``noisecal_host.self_calibration.to_target``; without a VAE in latent space by
``noisecal.resize.resize_latents``); the sets and the node runs: ``bench/lib/calibration_sets.py``.

Sections:
1. Testbed trained at M = 32 (the two spectra of ``bench/noiseshift.py``, "pixel"
   and "image"), N = M/2 and M/4: true fields at N against the generated set (20
   dpmpp_2m steps at M, seed 2002, one set per model for every N) brought to N,
   and without the spread rescale; the same fast NoiseShift search, the pack's
   node at N (512 samples), gap closed against the native exact denoiser.
   Diagnostics (full run): true fields at M resized, 50 generation steps, area or
   Fourier-crop resize, euler generation; each set's statistics against the true data.
2. The reference network at N = 16 through the Calibrate node, as ``bench/reference.py``
   runs it: a LATENT of true field samples against data = "self-generate".
3. The combined table with the network evaluations of generation and calibrations.

Judges: SC1 (testbed) and SC2 (reference): the self-generated calibration's gap
closed within 5 points of the true-data one (no-rescale rows are diagnostics).
Seeds: ``bench/lib/seeds.py``.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import figures, reference, testbed
from bench.lib.calibration import Nodes, noiseshift_calibration, private_store
from bench.lib.calibration_sets import (
    DATA_HEADER,
    GEN_CFG,
    GEN_SAMPLER,
    GEN_SCHEDULER,
    GEN_SEED,
    GEN_STEPS,
    Generated,
    area_resize,
    calibrate_node,
    data_row,
    data_stats,
    fourier_crop,
    generate,
    generation_settings,
    node_generated_set,
    self_generated_node,
    spread_like,
)
from bench.lib.report import fmt, pct, print_section, print_table, spectrum_name
from bench.lib.run import Run, RunState, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import ALL as SEEDS
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED
from bench.lib.testbed import CAL_SCHEDULER, CAL_STEPS, M
from noise_calibration.noisecal.resize import center_crop_resize, resize_latents
from noise_calibration.noisecal_host import self_calibration
from noise_calibration.noisecal_host.testing.testbed_model import make_testbed_conditioning

SEARCH_MODE = "fast"
DIFF_TARGET = 0.05  # |gap closed (self) - gap closed (true)| <= 5 points

# The calibration sets of a testbed case: key -> label. The first three are
# every case's; the rest are diagnostics (full run).
ARMS = {
    "true": "true data at N",
    "self": "self-generated, pack resize",
    "self_no_rescale": "self-generated, no rescale",
    "true_m_resized": "true data at M, pack resize",
    "self_50_steps": "self-generated 50 steps, pack resize",
    "self_area": "self-generated, area resize + rescale",
    "self_fourier": "self-generated, Fourier crop + rescale",
    "self_euler": "self-generated with euler (the earlier default), pack resize",
}
MAIN_ARMS = ("true", "self", "self_no_rescale")
DIAGNOSTIC_STEPS = 50

FULL = {
    "spectra": [(3.0, 2.5), (1.0, 3.5)],
    "variants": ["pixel", "image"],
    "resolutions": [M // 2, M // 4],
    "cal_count": 64,
    "samples": 512,
    "diagnostics": True,
    "reference": {
        "cal_count": 64,
        "samples": 128,
        "max_batch": 32,
        "extra_arms": ["self_no_rescale", "self_area", "true_m_resized", "self_euler"],
    },
}
QUICK = {
    **FULL,
    "spectra": [(3.0, 2.5)],
    "samples": 128,
    "diagnostics": False,
    "reference": {"cal_count": 4, "samples": 8, "max_batch": 32, "extra_arms": []},
}


@dataclass
class Bench(RunState):
    """The run, the patch nodes on their store, and the generated sets per
    (spectrum, variant, steps): one per model, shared by every N."""

    nodes: Nodes
    folder: Path
    spectra: list
    generated: dict = field(default_factory=dict)

    def fd(self, model, sp, n) -> float:
        return testbed.fd(model, sp, n, self.cfg["samples"])


def gap_points(a, b):
    """a - b in points (percent), None when either is missing."""
    return None if a is None or b is None else 100.0 * (a - b)


def verdict(diff) -> str:
    return "MISS" if diff is None or abs(diff) > 100.0 * DIFF_TARGET else "PASS"


# --------------------------------------------------------------------------- set up


def generated(
    b: Bench, sp, variant: str, steps: int = GEN_STEPS, sampler: str = GEN_SAMPLER
) -> Generated:
    """The model's own samples at M (generated once, then reused), with their NFE."""
    key = (sp, variant, steps, sampler)
    if key not in b.generated:
        model, positive = testbed.model(sp, M, variant), make_testbed_conditioning(1)
        settings = generation_settings(8 * M, steps, b.cfg["cal_count"], positive, sampler)
        b.generated[key] = generate(model, settings, positive)
    return b.generated[key]


def calibration_sets(b: Bench, sp, variant: str, n: int) -> dict[str, torch.Tensor]:
    """Every arm's calibration latents at N = n (64 each)."""
    count = b.cfg["cal_count"]
    native = generated(b, sp, variant).latents
    sets = {
        "true": testbed.cal_latents(sp, n, count),
        "self": self_calibration.to_target(native, 8 * n, 8 * n, vae=None),
        "self_no_rescale": center_crop_resize(native, n, n),
    }
    if b.cfg["diagnostics"]:
        native_50 = generated(b, sp, variant, DIAGNOSTIC_STEPS).latents
        sets["true_m_resized"] = resize_latents(testbed.cal_latents(sp, M, count), n, n)
        sets["self_50_steps"] = self_calibration.to_target(native_50, 8 * n, 8 * n, vae=None)
        sets["self_area"] = area_resize(native, n)
        sets["self_fourier"] = spread_like(fourier_crop(native, n), native)
        euler = generated(b, sp, variant, GEN_STEPS, "euler").latents
        sets["self_euler"] = self_calibration.to_target(euler, 8 * n, 8 * n, vae=None)
    return sets


# --------------------------------------------------------------------------- 1. testbed


def section_testbed(b: Bench) -> None:
    print_section(
        f"1. Testbed (M = {M}): NoiseShift from self-generated vs true data, "
        f"{CAL_STEPS} Euler steps, {CAL_SCHEDULER}"
    )
    cases = [
        testbed_case(b, sp, variant, n)
        for sp in b.spectra
        for variant in b.cfg["variants"]
        for n in b.cfg["resolutions"]
    ]
    same = same_sets_across_variants(b)
    print(f"(generated sets of the variants at M identical: {same})\n")
    b.run.data["testbed"] = cases
    b.run.data["generated_sets_identical_across_variants"] = same
    testbed_tables(b, cases)
    judge_testbed(b.run, cases)


def testbed_case(b: Bench, sp, variant: str, n: int) -> dict:
    """FD plain and native at N, then each arm's calibration and its FD and gap."""
    model = testbed.model(sp, M, variant)
    sigmas = testbed.sigmas(model, CAL_STEPS, CAL_SCHEDULER)
    fd_plain = b.fd(model, sp, n)
    fd_native = b.fd(testbed.model(sp, n, "pixel"), sp, n)  # trained at N: variants agree
    sets = calibration_sets(b, sp, variant, n)
    power = sp.power(n)
    arms = {}
    for key, x0 in sets.items():
        res, record, wall = noiseshift_calibration(model, x0, sigmas, SEARCH_MODE)
        fd = b.fd(b.nodes.noiseshift(model, record), sp, n)
        arms[key] = {
            "fd": fd,
            "gap_closed": testbed.gap(fd_plain, fd, fd_native),
            "nfe": res.nfe,
            "calibration_s": wall,
            "one_step_error_plain": res.total_error_before,
            "one_step_error_after": res.total_error_after,
            "data": data_stats(x0, sets["true"], power),
        }
    gen = generated(b, sp, variant)
    case = {
        "spectrum": spectrum_name(sp),
        "variant": variant,
        "N": n,
        "fd_plain": fd_plain,
        "fd_native": fd_native,
        "fd_floor": testbed.floor(sp, n, b.cfg["samples"]),
        "data_fd_floor": testbed.floor(sp, n, b.cfg["cal_count"]),
        "arms": arms,
        "generation": generation_info(gen),
    }
    for key in arms:
        if key != "true":
            arms[key]["diff_points"] = gap_points(
                arms[key]["gap_closed"], arms["true"]["gap_closed"]
            )
    print(
        f"{case_name(case)}: gap closed true {pct(arms['true']['gap_closed'], '.0f')}, self "
        f"{pct(arms['self']['gap_closed'], '.0f')}, no rescale "
        f"{pct(arms['self_no_rescale']['gap_closed'], '.0f')}",
        flush=True,
    )
    return case


def generation_info(gen: Generated) -> dict:
    return {
        "nfe": gen.nfe,
        "network_calls": gen.calls,
        "wall_s": gen.wall_s,
        "settings": gen.settings.describe(),
    }


def same_sets_across_variants(b: Bench):
    """The two variants are one model at N = M, so their generated sets should agree."""
    by_sp: dict = {}
    for (sp, _variant, steps, sampler), gen in b.generated.items():
        by_sp.setdefault((sp, steps, sampler), []).append(gen.latents)
    groups = [v for v in by_sp.values() if len(v) > 1]
    if not groups:
        return None
    return all(torch.equal(v[0], w) for v in groups for w in v[1:])


def case_name(c: dict) -> str:
    return f"{c['spectrum']} {c['variant']} N={c['N']}"


def testbed_tables(b: Bench, cases: list[dict]) -> None:
    fd_table(b, cases)
    data_table(b, cases)
    if b.cfg["diagnostics"]:
        diagnostic_table(cases)


def fd_table(b: Bench, cases: list[dict]) -> None:
    rows = []
    for c in cases:
        a = c["arms"]
        rows.append(
            [case_name(c), fmt(c["fd_plain"]), fmt(c["fd_native"]), fmt(a["true"]["fd"])]
            + [fmt(a["self"]["fd"]), fmt(a["self_no_rescale"]["fd"]), fmt(c["fd_floor"])]
            + [c["generation"]["nfe"], f"{c['generation']['wall_s']:.2f}"]
            + [f"{a[k]['calibration_s']:.2f}" for k in MAIN_ARMS]
        )
    print_table(
        f"Table 1a: testbed FD to the true field ({b.cfg['samples']} samples, seed "
        f"{SAMPLE_SEED}); NoiseShift {SEARCH_MODE}, {b.cfg['cal_count']} latents per set",
        ["case", "FD plain", "FD native", "FD NS true", "FD NS self", "FD NS no rescale"]
        + ["FD floor", "gen NFE", "gen s", "cal s true", "cal s self", "cal s no rescale"],
        rows,
    )
    print(
        "(gen: one set of the model's own samples at M, reused by both N, as the Calibrate\n"
        " node's cache does; NS = NoiseShift calibrated on that arm's set)\n"
    )


def data_table(b: Bench, cases: list[dict]) -> None:
    """One block per (spectrum, N): the sets are the same for both variants."""
    rows, seen = [], set()
    for c in cases:
        if (c["spectrum"], c["N"]) in seen:
            continue
        seen.add((c["spectrum"], c["N"]))
        for key, arm in c["arms"].items():
            rows.append(data_row(f"{c['spectrum']} N={c['N']} {ARMS[key]}", arm["data"]))
    print_table(
        f"Table 1b: the calibration sets against the true data at N ({b.cfg['cal_count']} "
        "latents each; the same for both variants)",
        DATA_HEADER,
        rows,
    )
    floors = ", ".join(
        f"{c['spectrum']} N={c['N']} {c['data_fd_floor']:.5f}"
        for c in cases
        if c["variant"] == cases[0]["variant"]
    )
    print(
        "(std: per-channel standard deviation, mean over channels (true field: 1); RAPSD:\n"
        " channel-mean radially averaged power of the set / the true set's, at the lowest\n"
        " non-DC bin, at 0.25 and at 0.5 cycles per pixel (Nyquist), and the rms of its log\n"
        " over all non-DC bins; data FD: the set's own FD to the true field, whose floor for\n"
        f" this count is {floors})\n"
    )


def diagnostic_table(cases: list[dict]) -> None:
    keys = list(ARMS)
    rows = [[case_name(c), *(pct(c["arms"][k]["gap_closed"], ".0f") for k in keys)] for c in cases]
    print_table(
        "Table 1c: gap closed by calibration set (diagnostics: where the difference comes from)",
        ["case", *(ARMS[k] for k in keys)],
        rows,
    )
    print(
        "(true data at M, pack resize: true fields at M through resize_latents, no generation\n"
        f" error; {DIAGNOSTIC_STEPS} steps: the same generation with more steps; area / Fourier"
        " crop:\n the generated set resized by 2x2 (4x4) averaging or by keeping the DFT "
        "coefficients\n below N/2 (exact for the testbed's periodic fields), then the same "
        "per-channel rescale)\n"
    )


def judge_testbed(run: Run, cases: list[dict]) -> None:
    """SC1: the self-generated calibration within 5 points of the true-data one."""
    for c in cases:
        judge_gap(run, f"SC1 testbed {case_name(c)}", c["arms"])


def judge_gap(run: Run, name: str, a: dict) -> None:
    diff = a["self"]["diff_points"]
    run.check(
        verdict(diff) == "PASS",
        f"{name}: gap closed self-generated "
        f"{pct(a['self']['gap_closed'], '.0f')} vs true data "
        f"{pct(a['true']['gap_closed'], '.0f')}, {fmt(diff, '+.1f')} points "
        f"(target |diff| <= {100 * DIFF_TARGET:.0f})",
    )


# --------------------------------------------------------------------------- 2. reference


def section_reference(b: Bench) -> None:
    cfg = b.cfg["reference"]
    r = reference.load()
    n = r.ref.train_res // 2
    print_section(
        f"2. Reference model ({r.ref.path.name}, M = {r.ref.train_res}, shift "
        f"{r.ref.shift:g}) at N = {n}: the Calibrate node, true vs self-generated data"
    )
    case = reference_case(b, r, n, cfg)
    b.run.data["reference"] = case
    b.run.data["reference_model"] = reference.info(r)
    reference_tables(cfg, case)
    judge_reference(b.run, case)


def reference_extra_sets(r: reference.Reference, native: torch.Tensor, n: int, cfg: dict) -> dict:
    """The diagnostic calibration sets of the reference (LATENT space) at N = n."""
    out = {}
    for key in cfg["extra_arms"]:
        if key == "self_no_rescale":
            out[key] = center_crop_resize(native, n, n)
        elif key == "self_area":
            out[key] = area_resize(native, n)
        elif key == "true_m_resized":
            x0 = testbed.cal_latents(r.ref.spectrum, r.ref.train_res, cfg["cal_count"])
            out[key] = resize_latents(r.model.model.process_latent_out(x0), n, n)
        elif key == "self_euler":
            size = 8 * r.ref.train_res
            settings = generation_settings(size, GEN_STEPS, cfg["cal_count"], r.positive, "euler")
            euler = self_calibration.generate(r.model, settings, positive=r.positive)
            out[key] = self_calibration.to_target(euler, 8 * n, 8 * n)
        else:
            raise ValueError(f"unknown reference arm {key!r}")
    return out


def reference_case(b: Bench, r: reference.Reference, n: int, cfg: dict) -> dict:
    """True data and self-generated calibrations through the node, FD and gap closed."""
    count, model = cfg["samples"], r.model
    true_x0 = testbed.cal_latents(r.ref.spectrum, n, cfg["cal_count"])  # model space
    print(f"N = {n}: calibrating on {cfg['cal_count']} true field samples ...", flush=True)
    rec_true, wall_true = calibrate_node(
        b.nodes, r, n, cfg, SEARCH_MODE, latent={"samples": model.model.process_latent_out(true_x0)}
    )
    print(f"N = {n}: self-generating and calibrating ...", flush=True)
    rec_self, wall_self, rows = self_generated_node(b.nodes, r, n, cfg, SEARCH_MODE)
    native = node_generated_set(r, cfg, b.folder)
    sets = {"true": (rec_true, wall_true), "self": (rec_self, wall_self)}
    x0s = {"true": true_x0, "self": self_calibration.to_target(native, 8 * n, 8 * n)}
    for key, latents in reference_extra_sets(r, native, n, cfg).items():
        print(f"N = {n}: calibrating on {ARMS[key]} ...", flush=True)
        sets[key] = calibrate_node(b.nodes, r, n, cfg, SEARCH_MODE, latent={"samples": latents})
        x0s[key] = latents
    print(f"N = {n}: sampling {count} per model ...", flush=True)
    fd_plain, t_plain = reference.fd_timed(r, model, n, count)
    fd_native = reference.native_fd(r, n, count)
    power = r.ref.spectrum.power(n)
    arms = {}
    for key, (record, wall) in sets.items():
        fd, t_sample = reference.fd_timed(r, b.nodes.noiseshift(model, record), n, count)
        x0 = x0s[key] if key == "true" else model.model.process_latent_in(x0s[key])
        arms[key] = {
            "fd": fd,
            "gap_closed": testbed.gap(fd_plain, fd, fd_native),
            "nfe": record["cost"]["network_evaluations"],
            "calibration_s": record["cost"]["wall_time_s"],
            "node_s": wall,
            "sampling_s": t_sample,
            "source": record["calibration_set"]["source"],
            "sigma_hat_minus_sigma": [
                h - s for s, h in zip(record["sigmas"], record["sigma_hat"], strict=True)
            ],
            "data": data_stats(x0, true_x0, power),
        }
    for key in arms:
        if key != "true":
            arms[key]["diff_points"] = gap_points(
                arms[key]["gap_closed"], arms["true"]["gap_closed"]
            )
    gen_nfe = rows - arms["self"]["nfe"]
    case = {
        "N": n,
        "samples": count,
        "fd_plain": fd_plain,
        "fd_native": fd_native,
        "fd_floor": testbed.floor(r.ref.spectrum, n, count),
        "data_fd_floor": testbed.floor(r.ref.spectrum, n, cfg["cal_count"]),
        "sampling_s_plain": t_plain,
        "arms": arms,
        "generation": {
            "nfe": gen_nfe,
            "node_rows_counted": rows,
            "wall_s_approx": arms["self"]["node_s"] - arms["self"]["calibration_s"],
            "settings": arms["self"]["source"],
        },
    }
    print(
        f"N = {n}: FD plain {fd_plain:.5f}, native {fd_native:.5f}; "
        + ", ".join(
            f"{k} {a['fd']:.5f} (gap {pct(a['gap_closed'], '.0f')})" for k, a in arms.items()
        ),
        flush=True,
    )
    return case


def reference_tables(cfg: dict, c: dict) -> None:
    a = c["arms"]
    rows = [
        [ARMS[k], fmt(arm["fd"]), pct(arm["gap_closed"], ".0f"), arm["nfe"]]
        + [f"{arm['calibration_s']:.1f}", f"{arm['node_s']:.1f}", f"{arm['sampling_s']:.1f}"]
        for k, arm in a.items()
    ]
    print_table(
        f"\nTable 2a: reference model at N = {c['N']}, FD to the true field ({c['samples']} "
        f"samples, seed {SAMPLE_SEED}); FD plain {fmt(c['fd_plain'])}, native "
        f"{fmt(c['fd_native'])}, floor {fmt(c['fd_floor'])}",
        ["calibration set", "FD NoiseShift", "gap closed", "cal NFE", "cal s", "node s"]
        + ["sampling s"],
        rows,
    )
    g = c["generation"]
    print(
        f"(generation: {g['nfe']} NFE, about {g['wall_s_approx']:.1f} s: the self-generate "
        f"node run counted {g['node_rows_counted']} network evaluations, its calibration\n"
        f" {a['self']['nfe']}; node s: the whole node call, cal s: the search alone)\n"
    )
    print_table(
        f"Table 2b: the reference's calibration sets against the true data at N = {c['N']} "
        f"(model space, {cfg['cal_count']} latents; data FD floor {fmt(c['data_fd_floor'])})",
        DATA_HEADER,
        [data_row(ARMS[k], arm["data"]) for k, arm in a.items()],
    )
    steps = len(a["true"]["sigma_hat_minus_sigma"])
    print_table(
        "Table 2c: sigma_hat - sigma per step (noisiest first)",
        ["step", *(ARMS[k] for k in a)],
        [[i, *(f"{a[k]['sigma_hat_minus_sigma'][i]:+.4f}" for k in a)] for i in range(steps)],
    )


def judge_reference(run: Run, c: dict) -> None:
    """SC2: the same on the reference network."""
    judge_gap(run, f"SC2 reference N={c['N']}", c["arms"])


# --------------------------------------------------------------------------- 3. the table


def section_table(b: Bench) -> None:
    """The issue's table: every case and its no-rescale row, with the costs."""
    print_section("3. Self-generated against true-data calibration")
    rows = []
    for c in b.run.data.get("testbed", []):
        rows.append(table_row(c, case_name(c), "self"))
        rows.append(table_row(c, f"{case_name(c)}, no rescale", "self_no_rescale"))
    ref = b.run.data.get("reference")
    if ref:
        name = f"reference N={ref['N']}"
        rows.append(table_row(ref, name, "self"))
        if "self_no_rescale" in ref["arms"]:
            rows.append(table_row(ref, f"{name}, no rescale", "self_no_rescale"))
    b.run.data["table"] = rows
    print_table(
        "Table 3: gap closed by NoiseShift calibrated from self-generated vs true data "
        "(same sample counts)",
        ["case", "gap closed (true)", "gap closed (self)", "diff (points)", "verdict"]
        + ["NFE generation", "NFE calibration (true)", "NFE calibration (self)"],
        rows,
    )
    print(
        "(verdict: |diff| <= 5 points; the targets are the rows without 'no rescale', which\n"
        " is the generated set resized by center_crop_resize alone, a diagnostic; NFE\n"
        " generation: one set per model at its native size, which serves every N)\n"
    )


def table_row(c: dict, name: str, arm: str) -> list:
    a = c["arms"]
    diff = a[arm]["diff_points"]
    return [
        name,
        pct(a["true"]["gap_closed"], ".1f"),
        pct(a[arm]["gap_closed"], ".1f"),
        fmt(diff, "+.1f"),
        verdict(diff),
        c["generation"]["nfe"],
        a["true"]["nfe"],
        a[arm]["nfe"],
    ]


# --------------------------------------------------------------------------- main


def plots(run: Run) -> list[Path]:
    return figures.self_calibration(run, ARMS)


def main(argv=None) -> int:
    args = parse_args(__doc__, argv)
    run = Run.start(args, FULL, QUICK)
    describe_run(args.quick)
    # the Calibrate node writes its records and generated sets to a private
    # store, and the patch nodes read only it
    with tempfile.TemporaryDirectory(prefix="self-calibration-bench-") as folder:
        b = Bench(
            run, Nodes(private_store(folder)), Path(folder), testbed.spectra(run.cfg["spectra"])
        )
        timings = run_sections(
            (
                ("testbed", lambda: section_testbed(b)),
                ("reference", lambda: section_reference(b)),
                ("table", lambda: section_table(b)),
            )
        )
        seeds = {**SEEDS, "generation": GEN_SEED}
        extra = {
            "generation": {
                "steps": GEN_STEPS,
                "cfg": GEN_CFG,
                "sampler": GEN_SAMPLER,
                "scheduler": GEN_SCHEDULER,
                "native_size_px": 8 * M,
            },
            "calibration_data_seed": CAL_DATA_SEED,
        }
        return finish(run, "self_calibration", timings, plots, seeds, extra=extra)


if __name__ == "__main__":
    sys.exit(main())

"""NoiseShift on the shipped reference network: a tiny SD3 trained at M = 32.

Run from the repository root::

    .venv/bin/python bench/reference.py            # full run (about 15 minutes, 2 cores)
    .venv/bin/python bench/reference.py --quick    # smoke run (about 2 minutes)
    .venv/bin/python bench/reference.py --out DIR  # plots + JSON go to DIR (default out/bench)

Not a test: nothing here fails the run. Each target prints PASS or MISS.

The model is ``models/reference/sd3_gaussian_field_m32.safetensors`` (see its
sidecar JSON): an SD3 MMDiT (depth 3, 3.75M parameters) trained by flow
matching on the testbed's Gaussian field (f0 = 3, alpha = 2.5, 16 channels)
at M = 32 latent pixels, loaded with ComfyUI's ``comfy.sd.load_diffusion_model``
(shift 3, zero conditioning). Unlike the exact-denoiser testbed it is a real
network with a real training error, so it shows what NoiseShift does to a
trained model rather than to an ideal one.

Everything runs through ComfyUI and the pack's nodes, as the README's main job
does: the Calibrate node (fast search, 64 field samples as a LATENT,
20 "simple" steps of the model's own shift-3 schedule), the NoiseShift node
with the calibration connected, sampling with ``comfy.sample.sample``
(KSampler path, Euler, 20 steps, "simple") at N = M, M/2 and M/4.

SD3's latent format maps latents to model space: the field samples x0 are
model-space, so the Calibrate node gets ``process_latent_out(x0)`` and sampled
LATENTs go through ``process_latent_in`` before FD against the true field.

Columns: FD plain / NoiseShift / native (the exact testbed denoiser for N on
the same data, 16 channels, sampled with the same shift-3 schedule, sampler and
seed), gap closed = (plain - NoiseShift) / (plain - native), the FD noise
floor for the sample count, the largest sigma_hat - sigma (signed), the
calibration's network evaluations (NFE, one latent through the network) and
wall time. At N = M the "gap" between the trained network and the exact
denoiser is training error, not a resolution mismatch: reported, not a target.

Targets: N = M, max |sigma_hat - sigma| <= 0.01 (DESIGN's target for the
testbed) and FD changed by less than 5%; N = M/2, gap closed >= 50%.

Second section, Noise Level Correction (NLC): at N = M and M/2, Euler at 20
and 8 steps ("simple"), the correction table calibrated on the reference
network with ``noisecal_host.calibrate.run_search(correction="euler")`` (the
NoiseShift search, then the table, inside a ComfyUI sampler, as the Calibrate
node runs it with 'correction' set) on the first 32 of the NoiseShift
section's calibration latents (quick: 8, and 8 steps only), at the step count
sampled; the record from ``noisecal.calibration_record.make_record``, applied through the
pack's Noise Level Correction node (strength 1), sampled as above (same
noise, same sample count). Columns: FD plain / NLC / NoiseShift (the 20-step
calibration of the first section, at every step count) / native, NLC as a
ratio to plain, the table's r range and how many steps it moves, the strength
the calibration kept (0, 0.5 or 1: the final whole-trajectory check) and the
calibration's network evaluations and wall time. The 20-step FD plain,
NoiseShift and native are the first section's. Target: NLC never worse than
1.02x plain in these cells.

Seeds (``bench/lib/seeds.py``): calibration data 1001, search noise 2002,
sampling noise 3003; different seeds, since the same seed would make x0 and
eps the same white noise. The Calibrate node and the patch nodes share a
private calibration store in a temporary folder (the user's calibrations stay
out). Shared helpers: ``bench/lib/``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import figures, reference, testbed
from bench.lib.calibration import Nodes, correction_calibration, private_store
from bench.lib.report import fmt, pct, print_section, print_table
from bench.lib.run import Run, RunState, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED, SEARCH_SEED

STEPS = 20
SCHEDULER = "simple"
SAMPLER = "euler"
SEARCH_MODE = "fast"
NLC_SAMPLER = "euler"  # the correction table's sampler
MAX_SHIFT_TARGET = 0.01  # DESIGN's N = M target for the testbed
FD_CHANGE_TARGET = 0.05  # |FD NoiseShift / FD plain - 1| at N = M
GAP_TARGET = 0.5  # gap closed at N = M/2
NLC_WORSE = 1.02  # NLC may not make FD worse than this ratio to plain in any cell

# sample counts per FD cell by M / N: a 20-step sample through plain and
# NoiseShift costs about 1 s of one core at N = 32, 0.2 s at 16, 0.06 s at 8.
# max_batch: calibration rows per forward; on CPU about 32 is fastest (bigger
# batches spend a quarter of their time in the kernel allocating activations)
# nlc: the Noise Level Correction section; its calibration latents are the first
# cal_count of the NoiseShift section's, one calibration per N and step count
# (at N = 32 about 19 ms per network evaluation, about 20 evaluations per latent-step)
FULL = {
    "cal_count": 64,
    "max_batch": 32,
    "samples": {1: 128, 2: 128, 4: 256},
    "nlc": {"factors": (1, 2), "steps": (20, 8), "cal_count": 32},
}
QUICK = {
    "cal_count": 16,
    "max_batch": 32,
    "samples": {1: 16, 2: 32, 4: 32},
    "nlc": {"factors": (1, 2), "steps": (8,), "cal_count": 8},
}


@dataclass
class Bench(RunState):
    """The run, the patch nodes on their store, the reference network and what
    the first section hands on: its cases and NoiseShift-patched models."""

    nodes: Nodes
    r: reference.Reference  # the network, its zero conditioning, its load time
    shifted: dict = field(default_factory=dict)  # N -> the NoiseShift-patched model
    cases: list = field(default_factory=list)

    @property
    def ref(self):
        return self.r.ref

    @property
    def model(self):
        return self.r.model

    @property
    def positive(self) -> list:
        return self.r.positive

    @property
    def m(self) -> int:
        return self.ref.train_res


def settings(b: Bench) -> str:
    """The calibration and sampling schedule, as printed in titles."""
    return f"{STEPS} {SCHEDULER} steps (shift {b.ref.shift:g})"


# --------------------------------------------------------------------------- set up


def field_latents(b: Bench, n: int, count: int):
    """The first `count` calibration field samples at N = n in latent space."""
    x0 = testbed.cal_latents(b.ref.spectrum, n, b.cfg["cal_count"])[:count]
    return b.model.model.process_latent_out(x0)


def calibrate_noiseshift(b: Bench, n: int) -> tuple[dict, float]:
    """The Calibrate node on field samples given as a LATENT: (record, wall seconds)."""
    count = b.cfg["cal_count"]
    latent = {"samples": field_latents(b, n, count)}
    t0 = time.perf_counter()
    records, _, _ = b.nodes.node("Calibrate").calibrate(
        b.model,
        STEPS,
        SCHEDULER,
        SEARCH_MODE,
        count,
        SEARCH_SEED,
        8 * n,
        8 * n,
        "",
        b.cfg["max_batch"],
        latent=latent,
        positive=b.positive,
    )["result"]
    return records[0], time.perf_counter() - t0


def calibrate_nlc(b: Bench, n: int, steps: int):
    """run_search with the correction table on the first nlc cal_count calibration
    latents: (calibration record, NoiseShift result, correction result, wall seconds)."""
    latents = field_latents(b, n, b.cfg["nlc"]["cal_count"])
    sigmas = testbed.sigmas(b.model, steps, SCHEDULER)
    res, corr, record, wall = correction_calibration(
        b.model, latents, sigmas, NLC_SAMPLER, positive=b.positive, max_batch=b.cfg["max_batch"]
    )
    return record, res, corr, wall


# --------------------------------------------------------------------------- 1. NoiseShift


def section_noiseshift(b: Bench) -> None:
    b.cases = [noiseshift_case(b, factor) for factor in b.cfg["samples"]]
    b.run.data["cases"] = b.cases
    noiseshift_tables(b, b.cases)
    judge_noiseshift(b, b.cases)


def noiseshift_case(b: Bench, factor: int) -> dict:
    """Calibrate at N = M / factor (the Calibrate node), then FD plain / NoiseShift / native."""
    n, count = b.m // factor, b.cfg["samples"][factor]
    print(f"N = {n}: calibrating ({b.cfg['cal_count']} field samples) ...", flush=True)
    record, cal_s = calibrate_noiseshift(b, n)
    b.shifted[n] = b.nodes.noiseshift(b.model, record)
    print(f"N = {n}: sampling {count} per model ...", flush=True)
    fd_plain, t_plain = reference.fd_timed(b.r, b.model, n, count)
    fd_ns, t_ns = reference.fd_timed(b.r, b.shifted[n], n, count)
    fd_native = reference.native_fd(b.r, n, count)
    case = {
        "N": n,
        "samples": count,
        "fd_plain": fd_plain,
        "fd_noiseshift": fd_ns,
        "fd_native": fd_native,
        "fd_change": fd_ns / fd_plain - 1.0,
        "gap_closed": testbed.gap(fd_plain, fd_ns, fd_native),
        "fd_floor": testbed.floor(b.ref.spectrum, n, count),
        **shift_summary(record),
        "calibration_s": cal_s,
        "sampling_s_plain": t_plain,
        "sampling_s_noiseshift": t_ns,
        "one_step_error_before": sum(record["metrics"]["error_before"]),
        "one_step_error_after": sum(record["metrics"]["error_after"]),
        "sigmas": record["sigmas"],
        "sigma_hat": record["sigma_hat"],
    }
    print(
        f"N = {n}: FD plain {fd_plain:.5f}, NoiseShift {fd_ns:.5f}, native "
        f"{fd_native:.5f}; calibration {case['nfe']} NFE in {cal_s:.1f} s",
        flush=True,
    )
    return case


def shift_summary(record: dict) -> dict:
    """The largest shifts sigma_hat - sigma of a record, and its network evaluations."""
    shifts = [h - s for s, h in zip(record["sigmas"], record["sigma_hat"], strict=True)]
    return {
        "max_abs_shift": max(abs(v) for v in shifts),
        "largest_shift_signed": max(shifts, key=abs),
        "max_up_shift": max(shifts),
        "max_down_shift": min(shifts),
        "nfe": record["cost"]["network_evaluations"],
    }


def noiseshift_tables(b: Bench, cases: list[dict]) -> None:
    fd_table(b, cases)
    shift_table(cases)
    cost_table(cases)


def fd_table(b: Bench, cases: list[dict]) -> None:
    rows = [
        [c["N"], c["samples"], *(fmt(c[k]) for k in ("fd_plain", "fd_noiseshift", "fd_native"))]
        + [pct(c["fd_change"]), pct(c["gap_closed"], ".0f"), fmt(c["fd_floor"])]
        + [f"{c['largest_shift_signed']:+.4f}", c["nfe"], f"{c['calibration_s']:.1f}"]
        for c in cases
    ]
    print_table(
        f"\nTable 1: FD to the true field (samples per cell as listed, seed {SAMPLE_SEED}); "
        f"Calibrate node, {SEARCH_MODE}, {b.cfg['cal_count']} field samples, {settings(b)}",
        ["N", "samples", "FD plain", "FD NoiseShift", "FD native", "FD change", "gap closed"]
        + ["FD floor", "max shift", "cal NFE", "cal s"],
        rows,
    )
    print(
        "(FD change: NoiseShift against plain; max shift: the largest sigma_hat - sigma, "
        "signed; at N = M the gap to the exact denoiser is training error)\n"
    )


def shift_table(cases: list[dict]) -> None:
    rows = [
        [i, f"{s:.4f}", *(f"{c['sigma_hat'][i] - c['sigmas'][i]:+.4f}" for c in cases)]
        for i, s in enumerate(cases[0]["sigmas"])
    ]
    print_table(
        "Table 2: sigma_hat - sigma per step (noisiest first)",
        ["step", "sigma", *(f"N={c['N']}" for c in cases)],
        rows,
    )


def cost_table(cases: list[dict]) -> None:
    rows = [
        [c["N"], c["nfe"], f"{c['calibration_s']:.1f}"]
        + [f"{1000 * c['calibration_s'] / c['nfe']:.2f}", f"{c['one_step_error_before']:.5g}"]
        + [f"{c['one_step_error_after']:.5g}"]
        + [f"{c['sampling_s_plain'] + c['sampling_s_noiseshift']:.1f}"]
        for c in cases
    ]
    print_table(
        "Table 3: calibration cost and one-step error (sum over steps)",
        ["N", "NFE", "cal s", "ms/NFE", "error plain", "error calibrated", "sampling s"],
        rows,
    )


def judge_noiseshift(b: Bench, cases: list[dict]) -> None:
    """R1, R2: at N = M a small shift and FD nearly unchanged; R3: at N = M/2 the gap closed."""
    at_m, half = cases[0], cases[1]
    b.run.check(
        at_m["max_abs_shift"] <= MAX_SHIFT_TARGET,
        f"R1 N={at_m['N']}: max |sigma_hat - sigma| = {at_m['max_abs_shift']:.4f} "
        f"(largest {at_m['largest_shift_signed']:+.4f}; DESIGN's testbed target "
        f"<= {MAX_SHIFT_TARGET})",
    )
    b.run.check(
        abs(at_m["fd_change"]) < FD_CHANGE_TARGET,
        f"R2 N={at_m['N']}: FD {at_m['fd_plain']:.5f} -> {at_m['fd_noiseshift']:.5f}, "
        f"change {pct(at_m['fd_change'])} (target |change| < {FD_CHANGE_TARGET:.0%})",
    )
    g = half["gap_closed"]
    b.run.check(
        g is not None and g >= GAP_TARGET,
        f"R3 N={half['N']}: gap closed = {pct(g, '.0f')} (FD plain "
        f"{half['fd_plain']:.5f}, NoiseShift {half['fd_noiseshift']:.5f}, native "
        f"{half['fd_native']:.5f}; target >= {GAP_TARGET:.0%})",
    )


# --------------------------------------------------------------------------- 2. NLC


def section_nlc(b: Bench) -> None:
    """Noise Level Correction on the reference network, against plain and NoiseShift."""
    cfg = b.cfg["nlc"]
    print_section(
        f"Noise Level Correction ({NLC_SAMPLER.capitalize()} tables, {cfg['cal_count']} "
        f"calibration latents, steps {list(cfg['steps'])}, {SCHEDULER})"
    )
    cells = [nlc_cell(b, factor, steps) for factor in cfg["factors"] for steps in cfg["steps"]]
    b.run.data["nlc"] = cells
    print()
    nlc_table(b.cfg, cells)
    judge_nlc(b.run, cells)


def nlc_cell(b: Bench, factor: int, steps: int) -> dict:
    """The table calibrated at N = M / factor and `steps`, its FD, and the comparisons."""
    n, count = b.m // factor, b.cfg["samples"][factor]
    print(f"N = {n}, {steps} steps: calibrating the correction table ...", flush=True)
    record, res, corr, wall = calibrate_nlc(b, n, steps)
    patched = b.nodes.nlc(b.model, record)
    print(f"N = {n}, {steps} steps: sampling {count} per model ...", flush=True)
    fd_nlc, t_nlc = reference.fd_timed(b.r, patched, n, count, steps)
    fd_plain, fd_ns, fd_native, reused = nlc_comparisons(b, n, count, steps)
    cell = {
        "N": n,
        "steps": steps,
        "samples": count,
        "fd_plain": fd_plain,
        "fd_nlc": fd_nlc,
        "fd_noiseshift": fd_ns,
        "fd_native": fd_native,
        "ratio_nlc": fd_nlc / fd_plain,
        "ratio_noiseshift": fd_ns / fd_plain,
        "reused_from_first_section": reused,
        "strength": corr.params["strength"],
        "final_distance": corr.params["final_distance"],
        "r_min": min(corr.r),
        "r_max": max(corr.r),
        "steps_moved": sum(v != 0.0 for v in corr.r),
        "sigmas": corr.sigmas,
        "r": corr.r,
        "error_before": corr.error_before,
        "error_after": corr.error_after,
        "nlc_nfe": corr.nfe,
        "nlc_s": corr.wall_time_s,
        "noiseshift_search_nfe": res.nfe,
        "run_search_s": wall,
        "sampling_s_nlc": t_nlc,
    }
    print_nlc_cell(cell)
    return cell


def nlc_comparisons(b: Bench, n: int, count: int, steps: int):
    """FD plain, NoiseShift (the first section's 20-step calibration) and native at
    `steps`; the first section's own at its step count: (plain, NS, native, reused)."""
    first = {c["N"]: c for c in b.cases}
    if steps == STEPS and n in first:
        c = first[n]
        return c["fd_plain"], c["fd_noiseshift"], c["fd_native"], True
    fd_plain, _ = reference.fd_timed(b.r, b.model, n, count, steps)
    fd_ns, _ = reference.fd_timed(b.r, b.shifted[n], n, count, steps)
    return fd_plain, fd_ns, reference.native_fd(b.r, n, count, steps), False


def print_nlc_cell(c: dict) -> None:
    n, steps = c["N"], c["steps"]
    print(
        f"N = {n}, {steps} steps: FD plain {c['fd_plain']:.5f}, NLC {c['fd_nlc']:.5f} "
        f"({c['ratio_nlc']:.3f}x), NoiseShift {c['fd_noiseshift']:.5f}, native "
        f"{c['fd_native']:.5f}; strength {c['strength']:g}, r {c['r_min']:+.3f}.."
        f"{c['r_max']:+.3f} ({c['steps_moved']}/{len(c['r'])} steps); calibration "
        f"{c['nlc_nfe']} NFE in {c['nlc_s']:.1f} s (run_search {c['run_search_s']:.1f} s)",
        flush=True,
    )


def nlc_table(cfg: dict, cells: list[dict]) -> None:
    keys = ("fd_plain", "fd_nlc", "fd_noiseshift", "fd_native")
    rows = [
        [c["N"], c["steps"], c["samples"], *(fmt(c[k]) for k in keys)]
        + [f"{c['ratio_nlc']:.3f}", f"{c['ratio_noiseshift']:.3f}", f"{c['strength']:g}"]
        + [f"{c['r_min']:+.3f}", f"{c['r_max']:+.3f}", f"{c['steps_moved']}/{len(c['r'])}"]
        + [c["nlc_nfe"], f"{c['nlc_s']:.1f}", c["noiseshift_search_nfe"]]
        + [f"{c['run_search_s']:.1f}"]
        for c in cells
    ]
    print_table(
        f"Table 4: Noise Level Correction, FD to the true field (seed {SAMPLE_SEED}); "
        f"{NLC_SAMPLER.capitalize()} tables from run_search, {cfg['nlc']['cal_count']} "
        "calibration latents",
        ["N", "steps", "samples", "FD plain", "FD NLC", "FD NoiseShift", "FD native"]
        + ["NLC/plain", "NS/plain", "strength", "min r", "max r", "r != 0", "NLC NFE"]
        + ["NLC s", "search NFE", "run_search s"],
        rows,
    )
    print(
        "(NLC: the Noise Level Correction node with the table calibrated at the cell's step\n"
        f" count; NoiseShift: the first section's {STEPS}-step calibration at every step count;\n"
        f" at {STEPS} steps FD plain, NoiseShift and native are the first section's;\n"
        " strength: what the calibration kept of its greedy table (0 = the table is all\n"
        " zeros); r != 0: steps the stored table moves; NLC NFE / s: the table's\n"
        " calibration (CorrectionResult.nfe, wall time); search NFE: the NoiseShift search\n"
        " run_search does first; run_search s: both)\n"
    )


def judge_nlc(run: Run, cells: list[dict]) -> None:
    """R4: the table never makes FD worse than NLC_WORSE x plain."""

    def name(c):
        return f"N={c['N']} {c['steps']} steps"

    worst = max(cells, key=lambda c: c["ratio_nlc"])
    over = [c for c in cells if c["ratio_nlc"] > NLC_WORSE]
    run.check(
        not over,
        f"R4 NLC never worse than {NLC_WORSE:.2f}x plain: "
        + ", ".join(f"{name(c)} {c['ratio_nlc']:.3f}x" for c in cells)
        + f"; worst {name(worst)}",
    )


# --------------------------------------------------------------------------- main


def plots(run: Run) -> list[Path]:
    return figures.reference(run, f"{STEPS} {SAMPLER.capitalize()} steps ({SCHEDULER})")


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="smoke run, about 2 minutes")
    run = Run.start(args, FULL, QUICK)
    # the Calibrate node writes its files to a private store, away from the user's
    with tempfile.TemporaryDirectory(prefix="reference-bench-") as folder:
        b = Bench(run, Nodes(private_store(folder)), reference.load())
        describe_run(args.quick, f"; model {b.ref.path.name}")
        timings = run_sections(
            (("noiseshift", lambda: section_noiseshift(b)), ("nlc", lambda: section_nlc(b)))
        )
        run.data["reference"] = reference.info(b.r)
        seeds = {"calibration_data": CAL_DATA_SEED, "search": SEARCH_SEED, "sampling": SAMPLE_SEED}
        return finish(run, "reference", timings, plots, seeds)


if __name__ == "__main__":
    sys.exit(main())

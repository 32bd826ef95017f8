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
sampled; the record from ``noisecal.store.make_record``, applied through the
pack's Noise Level Correction node (strength 1), sampled as above (same
noise, same sample count). Columns: FD plain / NLC / NoiseShift (the 20-step
calibration of the first section, at every step count) / native, NLC as a
ratio to plain, the table's r range and how many steps it moves, the strength
the calibration kept (0, 0.5 or 1: the final whole-trajectory check) and the
calibration's network evaluations and wall time. The 20-step FD plain,
NoiseShift and native are the first section's. Target: NLC never worse than
1.02x plain in these cells.

Seeds (as bench/noiseshift.py): calibration data 1001, search noise 2002,
sampling noise 3003; different seeds, since the same seed would make x0 and
eps the same white noise.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402  (needs ROOT on sys.path)
    Verdicts,
    describe_run,
    finish,
    fmt,
    jsonable,
    parse_args,
    print_table,
    run_sections,
)
from bench.lib.legacy_bench import CAL_DATA_SEED, SAMPLE_SEED, SEARCH_SEED, pct  # noqa: E402

STEPS = 20
SCHEDULER = "simple"
SAMPLER = "euler"
MAX_SHIFT_TARGET = 0.01  # DESIGN's N = M target for the testbed
FD_CHANGE_TARGET = 0.05  # |FD NoiseShift / FD plain - 1| at N = M
GAP_TARGET = 0.5  # gap closed at N = M/2
NLC_WORSE = 1.02  # NLC may not make FD worse than this ratio to plain in any cell

# sample counts per FD cell by N / M: a 20-step sample through plain and
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


class ReferenceBench:
    def __init__(self, cfg: dict, out_dir: Path, quick: bool):
        self.cfg = cfg
        self.out = out_dir
        self.quick = quick
        self.verdicts = Verdicts()
        self.tables: list[str] = []
        self.data: dict = {"mode": "quick" if quick else "full", "config": jsonable(cfg)}

        from noisecal_host.host import ensure_host

        self.host = ensure_host()
        from noisecal_host.pack_loader import load_pack

        pack = load_pack()
        import comfy.samplers
        import torch

        from noise_calibration.noisecal import store
        from noise_calibration.noisecal.testing import metrics
        from noise_calibration.noisecal.testing.testbed import sample_field
        from noise_calibration.noisecal_host import calibrate, cli
        from noise_calibration.noisecal_host.model_info import zero_conditioning
        from noise_calibration.noisecal_host.testing import sampling, testbed_model

        self.torch, self.comfy_samplers = torch, comfy.samplers
        self.metrics, self.sample_field = metrics, sample_field
        self.sampling, self.testbed_model, self.cli = sampling, testbed_model, cli
        self.store, self.host_calibrate = store, calibrate
        self.CalibrateNode = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"]
        self.NoiseShiftNode = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseShift"]
        self.NLCNode = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseLevelCorrection"]

        t0 = time.perf_counter()
        self.ref = cli.load_reference()
        self.load_s = time.perf_counter() - t0
        self.model = self.ref.model
        self.spectrum = self.ref.spectrum
        self.m = self.ref.train_res
        self.positive = zero_conditioning(self.model)
        self.shifted: dict = {}  # N -> the NoiseShift-patched model of the first section

    # ---- pieces

    def field_samples(self, n: int, count: int):
        return self.sample_field(
            self.spectrum, n, count, self.torch.Generator().manual_seed(CAL_DATA_SEED)
        )

    def calibrate(self, n: int):
        """The Calibrate node on field samples given as a LATENT (latent space)."""
        x0 = self.field_samples(n, self.cfg["cal_count"])
        latent = {"samples": self.model.model.process_latent_out(x0)}
        t0 = time.perf_counter()
        records, _, _ = self.CalibrateNode().calibrate(
            self.model,
            STEPS,
            SCHEDULER,
            "fast",
            self.cfg["cal_count"],
            SEARCH_SEED,
            8 * n,
            8 * n,
            "",
            self.cfg["max_batch"],
            latent=latent,
            positive=self.positive,
        )["result"]
        return records[0], time.perf_counter() - t0

    def calibrate_nlc(self, n: int, steps: int):
        """run_search with the Euler correction table on the first nlc cal_count
        calibration latents; the schema-1 record, the results and the wall time."""
        count = self.cfg["nlc"]["cal_count"]
        x0 = self.field_samples(n, self.cfg["cal_count"])[:count]
        latents = self.model.model.process_latent_out(x0)
        ms = self.model.get_model_object("model_sampling")
        sigmas = self.comfy_samplers.calculate_sigmas(ms, SCHEDULER, steps)
        sigmas = sigmas.to(self.torch.float64)
        cal = self.host_calibrate
        t0 = time.perf_counter()
        res, corr = cal.run_search(
            self.model,
            latents,
            sigmas,
            positive=self.positive,
            mode="fast",
            seed=SEARCH_SEED,
            max_batch=self.cfg["max_batch"],
            correction="euler",
        )
        wall = time.perf_counter() - t0
        record = self.store.make_record(
            key=cal.checkpoint_key(self.model),
            image_size=(8 * n, 8 * n),
            latent_size=(n, n),
            parameterization=cal.parameterization_of(self.model),
            method="noiseshift-fast",
            method_params=res.params,
            sigmas=res.sigmas,
            sigma_hat=res.sigma_hat,
            calibration_set={"count": count, "source": "bench", "seed": CAL_DATA_SEED},
            error_before=res.error_before,
            error_after=res.error_after,
            network_evaluations=res.nfe + corr.nfe,
            correction=corr.to_record(),
            wall_time_s=wall,
        )
        return record, res, corr, wall

    def fd(self, model, n: int, count: int, *, space: str, steps: int = STEPS):
        """FD to the true field at n, and the sampling wall time."""
        lat = self.sampling.empty_latent(model, n, n, count)
        if space == "latent":  # the reference: SD3 conditioning and latent format
            positive = self.positive
        else:  # the exact testbed: identity latent format, ignores its context
            positive = self.testbed_model.make_testbed_conditioning(count)
        t0 = time.perf_counter()
        out = self.sampling.ksample(
            model,
            lat,
            positive,
            seed=SAMPLE_SEED,
            steps=steps,
            sampler_name=SAMPLER,
            scheduler=SCHEDULER,
        )
        wall = time.perf_counter() - t0
        if space == "latent":
            out = model.model.process_latent_in(out)
        return self.metrics.frechet_distance(out, self.spectrum.power(n)), wall

    # ---- the run

    def run(self):
        m = self.m
        cases = []
        for factor in (1, 2, 4):
            n = m // factor
            count = self.cfg["samples"][factor]
            print(f"N = {n}: calibrating ({self.cfg['cal_count']} field samples) ...", flush=True)
            record, cal_s = self.calibrate(n)
            (shifted,) = self.NoiseShiftNode().apply(
                self.model, 1.0, "error", "", calibration=[record]
            )
            self.shifted[n] = shifted
            print(f"N = {n}: sampling {count} per model ...", flush=True)
            fd_plain, t_plain = self.fd(self.model, n, count, space="latent")
            fd_ns, t_ns = self.fd(shifted, n, count, space="latent")
            fd_native, _ = self.fd(self.cli.reference_native(self.ref, n), n, count, space="field")
            gap = (fd_plain - fd_ns) / (fd_plain - fd_native) if fd_plain > fd_native else None
            sigmas, hats = record["sigmas"], record["sigma_hat"]
            shifts = [h - s for s, h in zip(sigmas, hats, strict=True)]
            before = record["metrics"]["error_before"]
            after = record["metrics"]["error_after"]
            case = {
                "N": n,
                "samples": count,
                "fd_plain": fd_plain,
                "fd_noiseshift": fd_ns,
                "fd_native": fd_native,
                "fd_change": fd_ns / fd_plain - 1.0,
                "gap_closed": gap,
                "fd_floor": self.metrics.fd_noise_floor(
                    self.spectrum.power(n), count, self.spectrum.channels
                ),
                "max_abs_shift": max(abs(v) for v in shifts),
                "largest_shift_signed": max(shifts, key=abs),
                "max_up_shift": max(shifts),
                "max_down_shift": min(shifts),
                "nfe": record["cost"]["network_evaluations"],
                "calibration_s": cal_s,
                "sampling_s_plain": t_plain,
                "sampling_s_noiseshift": t_ns,
                "one_step_error_before": sum(before),
                "one_step_error_after": sum(after),
                "sigmas": sigmas,
                "sigma_hat": hats,
            }
            cases.append(case)
            print(
                f"N = {n}: FD plain {fd_plain:.5f}, NoiseShift {fd_ns:.5f}, native "
                f"{fd_native:.5f}; calibration {case['nfe']} NFE in {cal_s:.1f} s",
                flush=True,
            )
        self.cases = cases
        self.data["cases"] = cases

        self.tables.append(
            print_table(
                f"\nTable 1: FD to the true field (samples per cell as listed, seed "
                f"{SAMPLE_SEED}); Calibrate node, fast, {self.cfg['cal_count']} field samples, "
                f"{STEPS} {SCHEDULER} steps (shift {self.ref.shift:g})",
                [
                    "N",
                    "samples",
                    "FD plain",
                    "FD NoiseShift",
                    "FD native",
                    "FD change",
                    "gap closed",
                    "FD floor",
                    "max shift",
                    "cal NFE",
                    "cal s",
                ],
                [
                    [
                        c["N"],
                        c["samples"],
                        fmt(c["fd_plain"]),
                        fmt(c["fd_noiseshift"]),
                        fmt(c["fd_native"]),
                        pct(c["fd_change"]),
                        pct(c["gap_closed"], ".0f"),
                        fmt(c["fd_floor"]),
                        f"{c['largest_shift_signed']:+.4f}",
                        c["nfe"],
                        f"{c['calibration_s']:.1f}",
                    ]
                    for c in cases
                ],
            )
        )
        print(
            "(FD change: NoiseShift against plain; max shift: the largest sigma_hat - sigma, "
            "signed; at N = M the gap to the exact denoiser is training error)\n"
        )
        self.tables.append(
            print_table(
                "Table 2: sigma_hat - sigma per step (noisiest first)",
                ["step", "sigma", *[f"N={c['N']}" for c in cases]],
                [
                    [
                        i,
                        f"{s:.4f}",
                        *[f"{c['sigma_hat'][i] - c['sigmas'][i]:+.4f}" for c in cases],
                    ]
                    for i, s in enumerate(cases[0]["sigmas"])
                ],
            )
        )
        self.tables.append(
            print_table(
                "Table 3: calibration cost and one-step error (sum over steps)",
                ["N", "NFE", "cal s", "ms/NFE", "error plain", "error calibrated", "sampling s"],
                [
                    [
                        c["N"],
                        c["nfe"],
                        f"{c['calibration_s']:.1f}",
                        f"{1000 * c['calibration_s'] / c['nfe']:.2f}",
                        f"{c['one_step_error_before']:.5g}",
                        f"{c['one_step_error_after']:.5g}",
                        f"{c['sampling_s_plain'] + c['sampling_s_noiseshift']:.1f}",
                    ]
                    for c in cases
                ],
            )
        )

        at_m, half = cases[0], cases[1]
        self.verdicts.check(
            at_m["max_abs_shift"] <= MAX_SHIFT_TARGET,
            f"R1 N={m}: max |sigma_hat - sigma| = {at_m['max_abs_shift']:.4f} "
            f"(largest {at_m['largest_shift_signed']:+.4f}; DESIGN's testbed target "
            f"<= {MAX_SHIFT_TARGET})",
        )
        self.verdicts.check(
            abs(at_m["fd_change"]) < FD_CHANGE_TARGET,
            f"R2 N={m}: FD {at_m['fd_plain']:.5f} -> {at_m['fd_noiseshift']:.5f}, "
            f"change {pct(at_m['fd_change'])} (target |change| < {FD_CHANGE_TARGET:.0%})",
        )
        self.verdicts.check(
            half["gap_closed"] is not None and half["gap_closed"] >= GAP_TARGET,
            f"R3 N={half['N']}: gap closed = {pct(half['gap_closed'], '.0f')} (FD plain "
            f"{half['fd_plain']:.5f}, NoiseShift {half['fd_noiseshift']:.5f}, native "
            f"{half['fd_native']:.5f}; target >= {GAP_TARGET:.0%})",
        )

    def section_nlc(self):
        """Noise Level Correction on the reference network, against plain and NoiseShift."""
        cfg = self.cfg["nlc"]
        print(
            "=" * 78 + f"\nNoise Level Correction (Euler tables, {cfg['cal_count']} calibration "
            f"latents, steps {list(cfg['steps'])}, {SCHEDULER})\n",
            flush=True,
        )
        first = {c["N"]: c for c in self.cases}
        cells = []
        for factor in cfg["factors"]:
            n = self.m // factor
            count = self.cfg["samples"][factor]
            for steps in cfg["steps"]:
                print(f"N = {n}, {steps} steps: calibrating the correction table ...", flush=True)
                record, res, corr, wall = self.calibrate_nlc(n, steps)
                (patched,) = self.NLCNode().apply(
                    self.model, 1.0, 0.0, 1000.0, "error", "", calibration=[record]
                )
                print(f"N = {n}, {steps} steps: sampling {count} per model ...", flush=True)
                fd_nlc, t_nlc = self.fd(patched, n, count, space="latent", steps=steps)
                if steps == STEPS and n in first:  # the first section's cells
                    fd_plain, fd_ns = first[n]["fd_plain"], first[n]["fd_noiseshift"]
                    fd_native, reused = first[n]["fd_native"], True
                else:
                    fd_plain, _ = self.fd(self.model, n, count, space="latent", steps=steps)
                    fd_ns, _ = self.fd(self.shifted[n], n, count, space="latent", steps=steps)
                    native = self.cli.reference_native(self.ref, n)
                    fd_native, _ = self.fd(native, n, count, space="field", steps=steps)
                    reused = False
                moved = sum(v != 0.0 for v in corr.r)
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
                    "steps_moved": moved,
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
                cells.append(cell)
                print(
                    f"N = {n}, {steps} steps: FD plain {fd_plain:.5f}, NLC {fd_nlc:.5f} "
                    f"({cell['ratio_nlc']:.3f}x), NoiseShift {fd_ns:.5f}, native "
                    f"{fd_native:.5f}; strength {cell['strength']:g}, r {cell['r_min']:+.3f}.."
                    f"{cell['r_max']:+.3f} ({moved}/{len(corr.r)} steps); calibration "
                    f"{corr.nfe} NFE in {corr.wall_time_s:.1f} s (run_search {wall:.1f} s)",
                    flush=True,
                )
        self.data["nlc"] = cells
        print()
        self.tables.append(
            print_table(
                f"Table 4: Noise Level Correction, FD to the true field (seed {SAMPLE_SEED}); "
                f"Euler tables from run_search, {cfg['cal_count']} calibration latents",
                [
                    "N",
                    "steps",
                    "samples",
                    "FD plain",
                    "FD NLC",
                    "FD NoiseShift",
                    "FD native",
                    "NLC/plain",
                    "NS/plain",
                    "strength",
                    "min r",
                    "max r",
                    "r != 0",
                    "NLC NFE",
                    "NLC s",
                    "search NFE",
                    "run_search s",
                ],
                [
                    [
                        c["N"],
                        c["steps"],
                        c["samples"],
                        fmt(c["fd_plain"]),
                        fmt(c["fd_nlc"]),
                        fmt(c["fd_noiseshift"]),
                        fmt(c["fd_native"]),
                        f"{c['ratio_nlc']:.3f}",
                        f"{c['ratio_noiseshift']:.3f}",
                        f"{c['strength']:g}",
                        f"{c['r_min']:+.3f}",
                        f"{c['r_max']:+.3f}",
                        f"{c['steps_moved']}/{len(c['r'])}",
                        c["nlc_nfe"],
                        f"{c['nlc_s']:.1f}",
                        c["noiseshift_search_nfe"],
                        f"{c['run_search_s']:.1f}",
                    ]
                    for c in cells
                ],
            )
        )
        print(
            "(NLC: the Noise Level Correction node with the table calibrated at the cell's step\n"
            " count; NoiseShift: the first section's 20-step calibration at every step count;\n"
            f" at {STEPS} steps FD plain, NoiseShift and native are the first section's;\n"
            " strength: what the calibration kept of its greedy table (0 = the table is all\n"
            " zeros); r != 0: steps the stored table moves; NLC NFE / s: the table's\n"
            " calibration (CorrectionResult.nfe, wall time); search NFE: the NoiseShift search\n"
            " run_search does first; run_search s: both)\n"
        )
        worst = max(cells, key=lambda c: c["ratio_nlc"])
        over = [c for c in cells if c["ratio_nlc"] > NLC_WORSE]

        def name(c):
            return f"N={c['N']} {c['steps']} steps"

        self.verdicts.check(
            not over,
            f"R4 NLC never worse than {NLC_WORSE:.2f}x plain: "
            + ", ".join(f"{name(c)} {c['ratio_nlc']:.3f}x" for c in cells)
            + f"; worst {name(worst)}",
        )

    # ---- output

    def plots(self) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.out.mkdir(parents=True, exist_ok=True)
        written = []
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 7), sharex=True)
        hi = max(max(c["sigmas"]) for c in self.cases)
        top.plot([0, hi], [0, hi], color="0.6", linestyle="--", label="identity")
        bottom.axhline(0.0, color="0.6", linestyle="--")
        for c in self.cases:
            shifts = [h - s for s, h in zip(c["sigmas"], c["sigma_hat"], strict=True)]
            top.plot(c["sigmas"], c["sigma_hat"], marker="o", markersize=3, label=f"N={c['N']}")
            bottom.plot(c["sigmas"], shifts, marker="o", markersize=3, label=f"N={c['N']}")
        top.set_ylabel("sigma_hat (told to the network)")
        top.set_title(f"Reference SD3 (M={self.m}, shift {self.ref.shift:g}): NoiseShift levels")
        top.legend(fontsize=8)
        bottom.set_xlabel("sigma (trajectory)")
        bottom.set_ylabel("sigma_hat - sigma")
        bottom.legend(fontsize=8)
        fig.tight_layout()
        path = self.out / "reference_sigma_hat.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

        fig, ax = plt.subplots(figsize=(6.5, 4))
        x = list(range(len(self.cases)))
        width = 0.27
        for k, (key, name) in enumerate(
            (("fd_plain", "plain"), ("fd_noiseshift", "NoiseShift"), ("fd_native", "native"))
        ):
            ax.bar(
                [i + (k - 1) * width for i in x], [c[key] for c in self.cases], width, label=name
            )
        ax.scatter(
            x, [c["fd_floor"] for c in self.cases], color="k", marker="_", s=300, label="FD floor"
        )
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([f"N={c['N']}" for c in self.cases])
        ax.set_ylabel("FD to the true field")
        ax.set_title(f"Reference SD3, {STEPS} Euler steps ({SCHEDULER})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = self.out / "reference_fd.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
        return written


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="smoke run, about 2 minutes")
    # the Calibrate node writes its file here, away from the user's calibrations
    os.environ["NOISE_CALIBRATION_DIR"] = tempfile.mkdtemp(prefix="reference-bench-")
    t_start = time.perf_counter()
    bench = ReferenceBench(QUICK if args.quick else FULL, Path(args.out), args.quick)
    describe_run(bench, args.quick, f"; model {bench.ref.path.name}")
    timings = run_sections((("noiseshift", bench.run), ("nlc", bench.section_nlc)))
    reference = {
        "file": bench.ref.path.name,
        "sha256": bench.ref.sidecar.get("sha256"),
        "train_res": bench.m,
        "shift": bench.ref.shift,
        "spectrum": bench.ref.sidecar["data"]["spectrum"],
        "load_s": bench.load_s,
    }
    seeds = {"calibration_data": CAL_DATA_SEED, "search": SEARCH_SEED, "sampling": SAMPLE_SEED}
    return finish(bench, "reference", timings, t_start, seeds, extra={"reference": reference})


if __name__ == "__main__":
    sys.exit(main())

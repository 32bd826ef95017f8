"""NoiseShift on the shipped reference network: a tiny SD3 trained at M = 32.

Run from the repository root::

    .venv/bin/python bench/reference.py            # full run (about 5 minutes, 2 cores)
    .venv/bin/python bench/reference.py --quick    # smoke run (about a minute)
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

Seeds (as bench/noiseshift.py): calibration data 1001, search noise 2002,
sampling noise 3003; different seeds, since the same seed would make x0 and
eps the same white noise.
"""

from __future__ import annotations

import json
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
    fmt,
    jsonable,
    parse_args,
    print_summary,
    print_table,
)
from bench.noiseshift import CAL_DATA_SEED, SAMPLE_SEED, SEARCH_SEED, pct  # noqa: E402

STEPS = 20
SCHEDULER = "simple"
SAMPLER = "euler"
MAX_SHIFT_TARGET = 0.01  # DESIGN's N = M target for the testbed
FD_CHANGE_TARGET = 0.05  # |FD NoiseShift / FD plain - 1| at N = M
GAP_TARGET = 0.5  # gap closed at N = M/2

# sample counts per FD cell by N / M: a 20-step sample through plain and
# NoiseShift costs about 1 s of one core at N = 32, 0.2 s at 16, 0.06 s at 8.
# max_batch: calibration rows per forward; on CPU about 32 is fastest (bigger
# batches spend a quarter of their time in the kernel allocating activations)
FULL = {"cal_count": 64, "max_batch": 32, "samples": {1: 128, 2: 128, 4: 256}}
QUICK = {"cal_count": 16, "max_batch": 32, "samples": {1: 16, 2: 32, 4: 32}}


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
        from noisecal.pack_loader import load_pack

        pack = load_pack()
        import comfy.samplers
        import torch
        from noise_calibration.noisecal import metrics
        from noise_calibration.noisecal.testbed import sample_field
        from noise_calibration.noisecal_host import cli, sampling, testbed_model
        from noise_calibration.noisecal_host.calibrate import zero_conditioning

        self.torch, self.comfy_samplers = torch, comfy.samplers
        self.metrics, self.sample_field = metrics, sample_field
        self.sampling, self.testbed_model, self.cli = sampling, testbed_model, cli
        self.CalibrateNode = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"]
        self.NoiseShiftNode = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseShift"]

        t0 = time.perf_counter()
        self.ref = cli.load_reference()
        self.load_s = time.perf_counter() - t0
        self.model = self.ref.model
        self.spectrum = self.ref.spectrum
        self.m = self.ref.train_res
        self.positive = zero_conditioning(self.model)

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

    def fd(self, model, n: int, count: int, *, space: str) -> tuple[float, float]:
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
            steps=STEPS,
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

    def write_json(self) -> Path:
        self.out.mkdir(parents=True, exist_ok=True)
        self.data["verdicts"] = self.verdicts.lines
        self.data["host"] = self.host.describe()
        self.data["reference"] = {
            "file": self.ref.path.name,
            "sha256": self.ref.sidecar.get("sha256"),
            "train_res": self.m,
            "shift": self.ref.shift,
            "spectrum": self.ref.sidecar["data"]["spectrum"],
            "load_s": self.load_s,
        }
        self.data["seeds"] = {
            "calibration_data": CAL_DATA_SEED,
            "search": SEARCH_SEED,
            "sampling": SAMPLE_SEED,
        }
        path = self.out / "reference.json"
        path.write_text(json.dumps(jsonable(self.data), indent=1))
        return path


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="smoke run, about a minute")
    # the Calibrate node writes its file here, away from the user's calibrations
    os.environ["NOISE_CALIBRATION_DIR"] = tempfile.mkdtemp(prefix="reference-bench-")
    t_start = time.perf_counter()
    bench = ReferenceBench(QUICK if args.quick else FULL, Path(args.out), args.quick)
    describe_run(bench, args.quick, f"; model {bench.ref.path.name}")
    bench.run()
    written = bench.plots()
    total = time.perf_counter() - t_start
    bench.data["total_s"] = total
    written.append(bench.write_json())
    print_summary(bench.verdicts, total, written)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Resolution-dependent shifts: calibrate NoiseShift at one flow shift, sample at another.

Run from the repository root::

    .venv/bin/python bench/resolution_shift.py           # full run (a few minutes, 2 cores)
    .venv/bin/python bench/resolution_shift.py --quick   # smoke run

Flux's ModelSamplingFlux node sets the schedule's shift from the image size
(mu = 0.5 at 256 tokens to 1.15 at 4096, linear in the token count); other
families' ModelSampling nodes are set per resolution by hand. A NoiseShift
calibration is a function sigma -> sigma_hat of the true noise level, made
on the schedule of the shift it was calibrated with. Sampling with another
shift moves where the steps fall, not what the network should be told at a
given sigma, so the calibration should still apply wherever the new steps
fall inside the calibrated sigma range (the pack interpolates between the
calibrated levels, runs linearly to (0, 0) below the smallest and keeps the
largest level's additive shift above it).

Measured on the exact-denoiser testbed (trained at M = 32, sampled at
N = 16, both mismatch variants, 20 Euler steps, "simple"), with the flow
shift of Flux's formula at two image sizes: FD of plain, NoiseShift
calibrated at the sampling shift ("matched"), NoiseShift calibrated at the
other shift ("crossed") and the native denoiser, and the FD gap each closes.
The JSON goes to ``<out>/resolution_shift.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import testbed
from bench.lib.calibration import Nodes, noiseshift_calibration, private_store
from bench.lib.testbed import CAL_STEPS, M
from noise_calibration.noisecal_host.demo_models import with_flow_shift

N = 16
SPECTRUM = (3.0, 2.5)
VARIANTS = ("pixel", "image")


def flux_mu(width: int, height: int) -> float:
    """ModelSamplingFlux's mu for an image size (base 0.5 at 256 tokens, max 1.15 at 4096)."""
    tokens = width * height / (16 * 16)
    slope = (1.15 - 0.5) / (4096 - 256)
    return 0.5 + slope * (tokens - 256)


# Flux's time shift exp(mu) / (exp(mu) + (1/t - 1)) is the flow shift alpha = exp(mu)
SIZES = {"512x512": (512, 512), "1024x1024": (1024, 1024)}
SHIFTS = {name: math.exp(flux_mu(*wh)) for name, wh in SIZES.items()}


def measure(variant: str, count: int, nodes: Nodes) -> list[dict]:
    sp = testbed.spectra([SPECTRUM])[0]
    trained = testbed.model(sp, M, variant)
    native = testbed.model(sp, N, "pixel")
    latents = testbed.cal_latents(sp, N, count)
    shifted = {name: with_flow_shift(trained, a) for name, a in SHIFTS.items()}
    records = {}
    for name, model in shifted.items():
        _, records[name], _ = noiseshift_calibration(
            model, latents, testbed.sigmas(model, CAL_STEPS), "fast"
        )
    rows = []
    for sample_at, model in shifted.items():
        plain = testbed.fd(model, sp, N, count)
        fd_native = testbed.fd(with_flow_shift(native, SHIFTS[sample_at]), sp, N, count)
        row = {"variant": variant, "sampled at": sample_at, "shift": SHIFTS[sample_at]}
        row.update(fd_plain=plain, fd_native=fd_native)
        for cal_at, record in records.items():
            kind = "matched" if cal_at == sample_at else "crossed"
            fd = testbed.fd(nodes.noiseshift(model, record), sp, N, count)
            row[f"fd_{kind}"] = fd
            row[f"gap_{kind}"] = testbed.gap(plain, fd, fd_native)
            row[f"{kind} calibrated at"] = cal_at
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parent.parent / "out" / "bench")
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    count = 64 if args.quick else 512
    with tempfile.TemporaryDirectory() as folder:
        nodes = Nodes(private_store(Path(folder)))
        rows = [row for v in VARIANTS for row in measure(v, count, nodes)]
    print("shifts: " + ", ".join(f"{k}: {v:.3f}" for k, v in SHIFTS.items()))
    print(f"testbed M={M}, N={N}, {CAL_STEPS} Euler steps, simple, {count} samples")
    head = ["variant", "sampled at", "FD plain", "matched", "crossed", "native", "gap m", "gap c"]
    print(" | ".join(head))
    for r in rows:
        cells = [r["variant"], r["sampled at"]]
        cells += [f"{r[k]:.4f}" for k in ("fd_plain", "fd_matched", "fd_crossed", "fd_native")]
        cells += [
            "-" if r[k] is None else f"{100 * r[k]:.0f}%" for k in ("gap_matched", "gap_crossed")
        ]
        print(" | ".join(cells))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"shifts": SHIFTS, "M": M, "N": N, "steps": CAL_STEPS, "count": count, "rows": rows}
    (out / "resolution_shift.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

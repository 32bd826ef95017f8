"""The correction table's per-step search: evaluations against quality, on the exact testbed.

Run from the repository root::

    .venv/bin/python bench/correction_search.py           # 8 of the 30 cells, about 3 minutes
    .venv/bin/python bench/correction_search.py --full    # all 30 cells

Not a test: nothing here fails the run.

``noisecal.correction_search.calibrate_correction`` with the exact testbed
denoiser (trained at M = 32, "pixel"/"image" mismatch, N = 32, 16, 8; Euler 8
and 20, Heun 20), 12 calibration latents (data seed 1001, search seed 2002),
strength verified on them: the table alone, as the NLC node gets it. Each
search: the old fixed rounds (25 candidates a step) and the secant search with
3, 4 (the default) and 5 candidates a step. Quality: FD of 256 samples (seed
3003) sampled with the table, as a ratio to plain (< 1: better); cost: the
table's network evaluations (rows), verification included.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from noisecal import correction_search as cs  # noqa: E402  (host-free: no ComfyUI needed)
from noisecal.spectra import fourier_power  # noqa: E402
from noisecal.testing.testbed import (  # noqa: E402
    ExactDenoiser,
    FieldSpectrum,
    flow_sigmas,
    sample_field,  # noqa: E402
)

SEARCHES = [("rounds", 25), ("secant", 3), ("secant", 4), ("secant", 5)]
CELLS = [
    (f0, n, variant, sampler, steps)
    for f0 in (3.0, 1.0)
    for n, variant in [(32, "pixel"), (16, "image"), (16, "pixel"), (8, "image"), (8, "pixel")]
    for sampler, steps in [("euler", 8), ("euler", 20), ("heun", 20)]
]


def fd(samples: torch.Tensor, spectrum: FieldSpectrum, n: int) -> float:
    """FD of the samples' mean power spectrum to the true field's (per coefficient)."""
    power = fourier_power(samples).mean(0)
    return float((power.sqrt() - spectrum.power(n).sqrt()).square().mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="all 30 cells")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cells = CELLS if args.full else CELLS[::4]
    totals = {s: [0, 0.0] for s in SEARCHES}
    print("cell\tplain FD\t" + "\t".join(f"{name} {k}: FD ratio / NFE" for name, k in SEARCHES))
    for f0, n, variant, sampler, steps in cells:
        spectrum = FieldSpectrum(f0, 2.5, 4)
        model = ExactDenoiser(spectrum, 32, variant)
        x0 = sample_field(spectrum, n, 12, torch.Generator().manual_seed(1001)).double()
        sigmas = flow_sigmas(steps)
        gen = torch.Generator().manual_seed(3003)
        noise = torch.randn((256, 4, n, n), generator=gen, dtype=torch.float64)
        levels = [float(s) for s in sigmas]

        def sample(r, model=model, noise=noise, levels=levels, sampler=sampler):
            start = noise * levels[0]
            return cs._sample(model.denoise, start, levels, r, sampler, 4096)[0]

        plain = fd(sample([0.0] * len(levels)), spectrum, n)
        row = [f"f0={f0:g} N={n} {variant} {sampler} {steps}", f"{plain:.5f}"]
        for name, k in SEARCHES:
            result = cs.calibrate_correction(
                model.denoise,
                x0,
                sigmas,
                seed=2002,
                max_batch=4096,
                sampler=sampler,
                search=name,
                evaluations=k,
            )
            r = result.r + [0.0] * (len(levels) - len(result.r))
            ratio = fd(sample(r), spectrum, n) / plain
            totals[(name, k)][0] += result.nfe
            totals[(name, k)][1] += ratio
            row.append(f"{ratio:.3f} / {result.nfe}")
        print("\t".join(row), flush=True)
    print("\nsearch\tcandidates a step\tNFE (all cells)\tmean FD ratio")
    for (name, k), (nfe, ratio_sum) in totals.items():
        print(f"{name}\t{k}\t{nfe}\t{ratio_sum / len(cells):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

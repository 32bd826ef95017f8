"""Headless command line: the same code the nodes run, without a UI."""

from __future__ import annotations

import argparse
import logging
import sys
import time


def _demo(args) -> int:
    """The main job on the embedded default: the exact-denoiser testbed."""
    from ..noisecal.metrics import fd_noise_floor, frechet_distance
    from ..noisecal.testbed import FieldSpectrum
    from .sampling import empty_latent, ksample
    from .testbed_model import make_testbed_conditioning, make_testbed_model

    spectrum = FieldSpectrum(f0=args.f0, alpha=args.alpha, channels=4)
    train_res = args.train_res
    print(
        f"testbed: Gaussian field f0={spectrum.f0} alpha={spectrum.alpha} "
        f"C={spectrum.channels}, model trained at M={train_res}, "
        f"{args.samples} samples, ComfyUI sampler '{args.sampler}', scheduler 'simple'"
    )
    header = f"{'N':>4} {'model':<22} " + " ".join(f"{s:>7} st" for s in args.steps)
    print(header)
    print("-" * len(header))
    for n in (train_res, train_res // 2):
        floor = fd_noise_floor(spectrum.power(n), args.samples, spectrum.channels)
        latent = empty_latent(make_testbed_model(spectrum, n), n, n, args.samples)
        cond = make_testbed_conditioning(args.samples)
        models = [
            (
                f"trained at M={train_res} ({args.variant})",
                make_testbed_model(spectrum, train_res, args.variant),
            )
        ]
        if n != train_res:
            models.append((f"native (trained at {n})", make_testbed_model(spectrum, n)))
        for name, model in models:
            fds = []
            for steps in args.steps:
                out = ksample(
                    model, latent, cond, steps=steps, sampler_name=args.sampler, seed=args.seed
                )
                fds.append(frechet_distance(out, spectrum.power(n)))
            print(f"{n:>4} {name:<22} " + " ".join(f"{fd:10.5f}" for fd in fds))
        print(f"{n:>4} {'noise floor':<22} {floor:10.5f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m noisecal", description=__doc__)
    parser.add_argument(
        "--gpu", action="store_true", help="use ComfyUI's GPU device instead of forcing CPU"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="sample the testbed at M and M/2 and print FD")
    demo.add_argument("--train-res", type=int, default=32, help="M, the training resolution")
    demo.add_argument("--variant", choices=["pixel", "image"], default="image")
    demo.add_argument("--f0", type=float, default=3.0)
    demo.add_argument("--alpha", type=float, default=2.5)
    demo.add_argument("--samples", type=int, default=128)
    demo.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    demo.add_argument("--sampler", default="euler")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    code = args.run(args)
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return code

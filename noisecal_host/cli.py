"""Headless command line: the same code the nodes run, without a UI.

python -m noisecal_host demo        the main job: calibrate the shipped reference model (a
                                    tiny SD3 trained at M = 32) at M/2 and M with the
                                    Calibrate node's defaults (self-generated data, held-out
                                    check), sample plain vs Apply vs the native denoiser,
                                    print the FD table and write a picture; then NoiseShift
                                    alone as a second table (--model dead-leaves: the
                                    dead-leaves network at M/2 with Apply, and a picture)
python -m noisecal_host calibrate   calibrate a diffusion-model file (or the testbed)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from .demo_models import DEFAULT_EVAL_SAMPLES, DEFAULT_MAX_BATCH
from .plots import calibration_plot, save_png

DEFAULT_OUT = Path("out")


def _testbed_setup(args):
    from ..noisecal.testing.testbed import FieldSpectrum, sample_field
    from .testing.testbed_model import make_testbed_model

    spectrum = FieldSpectrum(f0=args.f0, alpha=args.alpha, channels=4)
    model = make_testbed_model(spectrum, args.train_res, args.variant)
    # data seed far from the search/sampling seeds: equal seeds would make x0 and eps one noise
    latents = sample_field(
        spectrum, args.res, args.samples, torch.Generator().manual_seed(10_000 + args.seed)
    )
    return spectrum, model, latents


def _demo(args) -> int:
    from . import demo

    return demo.run(args)


def _inputs(args):
    """The connected data of a headless run, as the node receives it."""
    from .calibration_job import Inputs

    if args.latents:
        import comfy.utils

        tensors = comfy.utils.load_torch_file(args.latents)
        samples = tensors.get("latents", tensors.get("samples"))
        if samples is None:
            samples = next(iter(tensors.values()))
        source = f"latents file {Path(args.latents).name}"
        return Inputs(latent={"samples": samples.float()}, latent_source=source)
    if args.images or args.vae:
        if not (args.images and args.vae):
            raise SystemExit("--images needs --vae to encode them (and --vae needs --images)")
        import comfy.sd
        import comfy.utils

        from .image_folder import load_image_folder

        folder = Path(args.images).resolve()
        # the Load Image Folder node's own loader, the folder's parent as its input folder
        images, _ = load_image_folder(folder.name, args.width, args.height, 0, folder.parent)
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(args.vae))
        return Inputs(image=images, vae=vae)
    return Inputs()  # nothing connected: the model generates its own data


def _calibrate(args) -> int:
    from . import calibration_job
    from .store import CalibrationStore

    if args.testbed:
        _, model, latents = _testbed_setup(args)
        inputs = calibration_job.Inputs(latent={"samples": latents}, latent_source="testbed")
    else:
        if not args.model:
            raise SystemExit("calibrate needs --model FILE (a diffusion model) or --testbed")
        import comfy.sd

        model = comfy.sd.load_diffusion_model(args.model)
        inputs = _inputs(args)
    out = Path(args.out) / "calibrations" if args.out_dir is None else Path(args.out_dir)
    given = {
        name: getattr(args, name)
        for name in calibration_job.Request.__dataclass_fields__
        if getattr(args, name, None) is not None
    }
    request = calibration_job.Request(**given)
    record, path, text = calibration_job.run(model, request, inputs, CalibrationStore([out], out))
    plot_path = Path(path).with_suffix(".png")
    save_png(calibration_plot(record), plot_path)
    print(f"{text}\nplot  {plot_path}")
    return 0


def _node_settings(cal) -> None:
    """The Calibrate node's settings as flags, each defaulting to the node's default."""
    from .calibration_job import DEFAULTS

    flags = {  # flag: (setting, type, choices)
        "--steps": ("steps", int, None),
        "--scheduler": ("scheduler", str, None),
        "--mode": ("search_mode", str, ["fast", "grid", "lean"]),
        "--samples": ("sample_count", int, None),
        "--seed": ("seed", int, None),
        "--label": ("label", str, None),
        "--max-batch": ("max_batch", int, None),
        "--correction": ("correction", str, ["off", "euler", "heun"]),
        "--check": ("check", str, ["held-out", "off"]),
        "--generation-steps": ("generation_steps", int, None),
        "--generation-cfg": ("generation_cfg", float, None),
        "--native-width": ("native_width", int, None),
        "--native-height": ("native_height", int, None),
    }
    for flag, (name, kind, choices) in flags.items():
        help_text = f"the Calibrate node's {name} (default {getattr(DEFAULTS, name)!r})"
        cal.add_argument(flag, type=kind, dest=name, choices=choices, help=help_text)
    cal.add_argument(
        "--recalibrate",
        action="store_const",
        const="recalibrate",
        dest="mode",
        help="calibrate even where a file for the same settings exists (the node's mode)",
    )


def _testbed_args(p, res_default):
    p.add_argument("--train-res", type=int, default=32, help="M, the testbed's training size")
    p.add_argument("--res", type=int, default=res_default, help="N, the latent size to use")
    p.add_argument("--variant", choices=["pixel", "image"], default="image")
    p.add_argument("--f0", type=float, default=3.0)
    p.add_argument("--alpha", type=float, default=2.5)


def _demo_parser(sub) -> None:
    demo = sub.add_parser(
        "demo",
        help="calibrate the reference model at M/2 and M as the Calibrate node does, "
        "sample plain vs Apply, print FD",
    )
    demo.add_argument(
        "--model",
        choices=["reference", "testbed", "dead-leaves"],
        default="reference",
        help="reference (default): the shipped tiny SD3 trained at M = 32 "
        "(models/reference/); testbed: the exact-denoiser testbed (fast; the --train-res, "
        "--variant, --f0 and --alpha options apply to it only); dead-leaves: the tiny SD3 "
        "trained on dead-leaves scenes at M = 32, calibrated at N = 16 with the held-out "
        "check, sampled plain, NoiseShift and Apply against the native N = 16 network "
        "(patch SWD, edge statistic, spectral FD; a picture of the samples)",
    )
    _testbed_args(demo, 16)
    demo.add_argument(
        "--samples",
        type=int,
        default=None,
        help="calibration latents (default: the Calibrate node's 16, self-generated, for "
        "Apply, and 12 true field samples, lean search, for NoiseShift alone; given, both "
        "use it; dead-leaves: 16, of which the check holds back 4)",
    )
    demo.add_argument(
        "--eval-samples",
        type=int,
        default=None,
        help="samples per FD cell (default: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_EVAL_SAMPLES.items())
        + ")",
    )
    demo.add_argument("--steps", type=int, default=20)
    demo.add_argument("--mode", choices=["fast", "grid", "lean"], default="lean")
    demo.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="calibration rows per forward (default: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_MAX_BATCH.items())
        + ")",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: on a shared machine more threads can be much slower)",
    )
    demo.set_defaults(run=_demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m noisecal_host",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--gpu", action="store_true", help="use ComfyUI's GPU device instead of forcing CPU"
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default out/)")
    sub = parser.add_subparsers(dest="command", required=True)

    _demo_parser(sub)

    cal = sub.add_parser("calibrate", help="calibrate NoiseShift for a model file")
    cal.add_argument("--model", help="diffusion model file (.safetensors), as UNETLoader loads")
    cal.add_argument("--latents", help="safetensors with a 'latents' tensor [n, C, h, w]")
    cal.add_argument("--images", help="folder of calibration images (needs --vae)")
    cal.add_argument("--vae", help="VAE file to encode --images")
    cal.add_argument("--width", type=int, help="target width in pixels (images, self-generation)")
    cal.add_argument("--height", type=int, help="target height in pixels")
    cal.add_argument("--testbed", action="store_true", help="calibrate the embedded testbed")
    _testbed_args(cal, 16)
    _node_settings(cal)
    cal.add_argument(
        "--out-dir",
        default=None,
        help="folder for the calibration file (default <out>/calibrations; "
        "point it at ComfyUI/models/noise_calibration to use it there)",
    )
    cal.set_defaults(run=_calibrate)
    return parser


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    code = args.run(args)
    print(f"done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return code

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
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .plots import calibration_plot, save_png

DEFAULT_OUT = Path("out")
PACK_ROOT = Path(__file__).resolve().parent.parent
# the shipped reference network (tools/train_reference.py); its sidecar is the .json beside it
REFERENCE_MODEL = PACK_ROOT / "models" / "reference" / "sd3_gaussian_field_m32.safetensors"
# samples per FD cell when --eval-samples is not given. The reference is a real network:
# a 20-step sample at N = 32 costs about 0.5 s of one CPU core per method, and 40 keeps
# the whole demo (Calibrate + Apply, then NoiseShift alone, at N = 16 and 32) at about 3
# minutes on 2 shared cores (64 took about 4; bench/reference.py uses 128 at N = M)
DEFAULT_EVAL_SAMPLES = {"testbed": 256, "reference": 40, "dead-leaves": 64}
# calibration rows per forward when --max-batch is not given: the testbed's FFTs like big
# batches; the network on CPU is fastest at about 32 (bigger batches spend a quarter of
# their time in the kernel allocating activations)
DEFAULT_MAX_BATCH = {"testbed": 256, "reference": 32, "dead-leaves": 32}
# calibration latents when --samples is not given: 12 (lean search, no check) for the
# Gaussian demos; 16 for dead leaves, whose calibration holds back 4 for the check
DEFAULT_CAL_SAMPLES = {"testbed": 12, "reference": 12, "dead-leaves": 16}


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


def with_flow_shift(model, shift: float):
    """What ComfyUI's ModelSamplingSD3 node does: a clone sampling the flow with ``shift``."""
    import comfy.model_sampling

    class ModelSamplingAdvanced(
        comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST
    ):
        pass

    sampling = ModelSamplingAdvanced(model.model.model_config)
    sampling.set_parameters(shift=shift, multiplier=1000)
    patched = model.clone()
    patched.add_object_patch("model_sampling", sampling)
    return patched


@dataclass
class Reference:
    """The shipped reference network with what its sidecar says about it."""

    model: object  # ModelPatcher, loaded by ComfyUI's diffusion-model loader
    path: Path
    sidecar: dict
    spectrum: object  # noisecal.testing.testbed.FieldSpectrum of its training data
    train_res: int  # M
    shift: float  # its ModelSamplingDiscreteFlow shift


def load_reference(path: Path | str = REFERENCE_MODEL) -> Reference:
    """Load the reference network as UNETLoader does and read its training data's spectrum."""
    from ..noisecal.testing.testbed import FieldSpectrum
    from . import reference_models

    path = Path(path)
    if not path.is_file() or not path.with_suffix(".json").is_file():
        # a registry install leaves the reference model out (.comfyignore): only a clone has it
        raise SystemExit(
            f"the reference model {path.name} is not in this install (a Comfy Registry "
            f"install leaves it out); run the demo from a git clone of the pack, or use "
            f"'demo --model testbed'"
        )
    # the loader node's own: the trained size is recorded on the model for Calibrate
    sidecar = reference_models.sidecar(path.name)
    spec = sidecar["data"]["spectrum"]
    spectrum = FieldSpectrum(f0=spec["f0"], alpha=spec["alpha"], channels=spec["channels"])
    model = reference_models.load(path.name)
    shift = float(model.get_model_object("model_sampling").shift)
    return Reference(model, path, sidecar, spectrum, int(sidecar["native_resolution"]), shift)


def reference_native(reference: Reference, n: int):
    """The exact testbed denoiser for resolution n, on the reference's data and schedule shift."""
    from .testing.testbed_model import make_testbed_model

    return with_flow_shift(make_testbed_model(reference.spectrum, n), reference.shift)


@dataclass
class _DemoSetup:
    """One kind of model for the demo: everything but the calibration and the sampling."""

    model: object  # the M-model as a MODEL
    spectrum: object
    train_res: int
    native: Callable[[int], object]  # n -> the native reference MODEL at n
    to_latent: Callable[[torch.Tensor], torch.Tensor]  # field samples -> LATENT samples
    to_field: Callable[[torch.Tensor], torch.Tensor]  # sampled LATENT -> field space
    positive: Callable[[int], list]  # batch -> conditioning
    description: str


def _demo_setup(args) -> _DemoSetup:
    from ..noisecal.testing.testbed import FieldSpectrum
    from .model_info import zero_conditioning
    from .testing.testbed_model import make_testbed_conditioning, make_testbed_model

    if args.model == "testbed":
        spectrum = FieldSpectrum(f0=args.f0, alpha=args.alpha, channels=4)
        return _DemoSetup(
            model=make_testbed_model(spectrum, args.train_res, args.variant),
            spectrum=spectrum,
            train_res=args.train_res,
            native=lambda n: make_testbed_model(spectrum, n),
            to_latent=lambda x: x,
            to_field=lambda x: x,
            positive=make_testbed_conditioning,
            description=(
                f"testbed: Gaussian field f0={args.f0} alpha={args.alpha} C=4, model trained at "
                f"M={args.train_res} ({args.variant} variant)"
            ),
        )
    ref = load_reference()
    inner = ref.model.model
    sp = ref.spectrum
    return _DemoSetup(
        model=ref.model,
        spectrum=sp,
        train_res=ref.train_res,
        native=lambda n: reference_native(ref, n),
        # SD3's latent format: the field lives in model space, a LATENT holds
        # process_latent_out of it, and the sampler's output is mapped back
        to_latent=inner.process_latent_out,
        to_field=inner.process_latent_in,
        positive=lambda batch: zero_conditioning(ref.model),
        description=(
            f"reference: {ref.path.name}, a tiny SD3 (MMDiT) trained by flow matching at "
            f"M={ref.train_res} on the Gaussian field f0={sp.f0:g} alpha={sp.alpha:g} "
            f"C={sp.channels} (shift {ref.shift:g}); native = the exact denoiser for N on the "
            f"same schedule"
        ),
    )


DEAD_LEAVES_MODEL = PACK_ROOT / "models" / "reference" / "sd3_dead_leaves_m32.safetensors"
DEAD_LEAVES_NATIVE = PACK_ROOT / "models" / "reference" / "sd3_dead_leaves_m16.safetensors"
# the dead-leaves demo's picture: a row per method, GRID_COLUMNS samples each, every
# 2n-pixel image scaled by GRID_SCALE, GRID_GAP pixels between tiles, labels on the left
GRID_ROWS = ("plain", "NoiseShift", "Apply", "native", "true")
GRID_COLUMNS = 8
GRID_SCALE = 3
GRID_GAP = 4
GRID_LABEL = 132
GRID_TITLE = 24
# the Gaussian reference's picture: latent pixels (16 at M/2) scaled up more
REFERENCE_GRID_SCALE = 5


def grid_size(rows: int, columns: int, pixels: int, scale: int = GRID_SCALE) -> tuple[int, int]:
    """(width, height) of a demo's picture for images of `pixels` pixels scaled by `scale`."""
    tile = pixels * scale
    return (
        GRID_LABEL + columns * tile + (columns + 1) * GRID_GAP,
        GRID_TITLE + rows * tile + (rows + 1) * GRID_GAP,
    )


def sample_grid(rows: dict, title: str, scale: int = GRID_SCALE):
    """rows: label -> images [k, C >= 3, p, p] in [0, 1]: an RGB uint8 picture, a row per
    label (the first three channels, each pixel `scale` x `scale`), the label on the left."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    columns = max(len(images) for images in rows.values())
    pixels = next(iter(rows.values())).shape[-1]
    tile = pixels * scale
    width, height = grid_size(len(rows), columns, pixels, scale)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for r, images in enumerate(rows.values()):
        top = GRID_TITLE + GRID_GAP + r * (tile + GRID_GAP)
        for c, image in enumerate(images):
            rgb = image[:3].clamp(0, 1).permute(1, 2, 0).numpy()
            rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
            left = GRID_LABEL + GRID_GAP + c * (tile + GRID_GAP)
            canvas[top : top + tile, left : left + tile] = (rgb * 255).round().astype(np.uint8)
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=13)
    draw.text((GRID_GAP, 5), title, fill=(0, 0, 0), font=font)
    for r, label in enumerate(rows):
        top = GRID_TITLE + GRID_GAP + r * (tile + GRID_GAP)
        draw.multiline_text((GRID_GAP, top + tile // 2 - 14), label, fill=(0, 0, 0), font=font)
    return np.asarray(picture)


def _demo_dead_leaves(args) -> int:
    """The dead-leaves network at N = M/2: Calibrate with the held-out check, then plain,
    NoiseShift and Apply against the native network and true scenes; a table and a picture."""
    import comfy.sd

    from ..noisecal.spectra import fourier_power
    from ..noisecal.testing import dead_leaves, swd
    from ..noisecal.testing.metrics import frechet_distance
    from . import apply_patch, calibration_run, folders, level_patches
    from .model_info import zero_conditioning
    from .testing.sampling import empty_latent, ksample

    for path in (DEAD_LEAVES_MODEL, DEAD_LEAVES_NATIVE):
        if not path.is_file():
            raise SystemExit(
                f"the dead-leaves network {path.name} is not in this install (a Comfy Registry "
                f"install leaves models/reference/ out); run the demo from a git clone"
            )
    torch.set_num_threads(max(1, args.threads))
    count = args.eval_samples or DEFAULT_EVAL_SAMPLES[args.model]
    cal_count = args.samples if args.samples is not None else DEFAULT_CAL_SAMPLES[args.model]
    max_batch = args.max_batch or DEFAULT_MAX_BATCH[args.model]
    out_dir = Path(args.out) / "demo"
    calibration_store = folders.user_store(out_dir / "calibrations")
    model = comfy.sd.load_diffusion_model(str(DEAD_LEAVES_MODEL))
    native = comfy.sd.load_diffusion_model(str(DEAD_LEAVES_NATIVE))
    m = int(json.loads(DEAD_LEAVES_MODEL.with_suffix(".json").read_text())["native_resolution"])
    n = m // 2
    print(
        f"dead leaves: {DEAD_LEAVES_MODEL.name}, a tiny SD3 (MMDiT) trained by flow matching at "
        f"M={m} on dead-leaves scenes; native = {DEAD_LEAVES_NATIVE.name} (same size and "
        f"budget, trained at {n}); N={n}, sampled through ComfyUI (euler, simple, "
        f"{args.steps} steps), {count} samples per row; calibration: {cal_count} true "
        f"latents, {args.mode} search, correction euler, held-out check",
        flush=True,
    )
    # data seeds far from the search/sampling seeds (and from each other)
    cal = dead_leaves.sample_latents(cal_count, n, 10_000 + args.seed)
    ref = dead_leaves.render(dead_leaves.DeadLeaves(), count, 2 * n, 20_000 + args.seed)
    floor_set = dead_leaves.render(dead_leaves.DeadLeaves(), count, 2 * n, 30_000 + args.seed)
    power_latents = dead_leaves.sample_latents(4 * count, n, 40_000 + args.seed)
    power = fourier_power(power_latents.double()).reshape(-1, n, n).mean(dim=0)

    def measure(latents) -> dict:
        images = dead_leaves.to_image(latents.float())
        return {
            "swd": swd.patch_swd(images, ref)["average"],
            "edge": swd.edge_distance(images, ref)["average"],
            "fd": frechet_distance(latents.float(), power),
        }

    started = time.perf_counter()
    # what the Calibrate node runs (correction euler, check held-out), on the demo's store
    record, path = calibration_run.calibrate_latents(
        model,
        model.model.process_latent_out(cal),
        calibration_run.schedule_sigmas(model, "simple", args.steps),
        source="LATENT input",
        positive=zero_conditioning(model),
        mode=args.mode,
        seed=args.seed,
        max_batch=max_batch,
        calibration_store=calibration_store,
        correction="euler",
        check=True,
    )
    seconds = time.perf_counter() - started
    save_png(calibration_plot(record), out_dir / f"calibration_dead_leaves_N{n}.png")
    recommendation = record.get("check", {}).get("recommendation", "noiseshift (no check)")
    shifted = level_patches.apply_noiseshift(model, 1.0, "error", "", None, calibration_store)
    applied = apply_patch.apply_recommended(model, 1.0, "error", "", None, calibration_store)
    samples, scores = {}, {}
    for label, sampled in (
        ("plain", model),
        ("NoiseShift", shifted),
        ("Apply", applied),
        ("native", native),
    ):
        out = ksample(
            sampled,
            empty_latent(sampled, n, n, count),
            zero_conditioning(sampled),
            steps=args.steps,
            seed=args.seed + 1,
        )
        samples[label] = sampled.model.process_latent_in(out)
        scores[label] = measure(samples[label])
    scores["true (floor)"] = measure(dead_leaves.to_latent(floor_set))
    samples["true"] = dead_leaves.to_latent(ref)
    max_shift = max(abs(h - s) for s, h in zip(record["sigmas"], record["sigma_hat"], strict=True))
    print(
        f"  calibrated N={n}: {path} ({record['cost']['network_evaluations']} network "
        f"evaluations, {seconds:.1f} s, max|shift| {max_shift:.4f}); Apply recommends "
        f"{recommendation}",
        flush=True,
    )
    names = {**{k: k for k in scores}, "Apply": f"Apply: {recommendation}"}
    width = max(len(name) for name in names.values())
    header = (
        f"{'':>{width}} {'patch SWD':>10} {'edge W1':>9} {'spectral FD':>12} "
        f"{'SWD/plain':>10} {'FD/plain':>9}"
    )
    print(header)
    print("-" * len(header))
    plain = scores["plain"]
    for label, s in scores.items():
        print(
            f"{names[label]:>{width}} {s['swd']:10.4f} {s['edge']:9.4f} {s['fd']:12.4f} "
            f"{s['swd'] / plain['swd']:10.2f} {s['fd'] / plain['fd']:9.2f}"
        )
    columns = min(GRID_COLUMNS, count)
    rows = {
        (f"Apply\n({recommendation})" if label == "Apply" else label): dead_leaves.to_image(
            samples[label][:columns].float()
        )
        for label in GRID_ROWS
    }
    picture = out_dir / f"dead_leaves_N{n}.png"
    title = f"dead leaves, N = {n} ({2 * n} px), euler {args.steps}: the M = {m} network"
    save_png(sample_grid(rows, title), picture)
    print(f"picture: {picture}\nplots: {out_dir}/calibration_dead_leaves_N{n}.png")
    return 0


def _demo_apply(args, setup, sizes, sample_fd, gap, out_dir, eval_samples, count) -> None:
    """The product: the Calibrate node at its defaults (self-generated data at the
    network's trained size, held-out check) for each N, the Apply node on its record,
    FD to the true field for plain, Apply and native; a picture of the samples at M/2."""
    from ..noisecal.calibration_record import recommendation
    from ..noisecal.testing.metrics import fd_noise_floor
    from ..noisecal.testing.testbed import sample_field
    from . import apply_patch, calibration_job, folders

    spectrum, model, m = setup.spectrum, setup.model, setup.train_res
    store = folders.user_store(out_dir / "calibrations")
    native_px = 8 * m  # the trained size, which the loader recorded on the model
    print(
        f"Calibrate at the node's defaults ({count} latents "
        f"self-generated at the trained {native_px}x{native_px} px, "
        f"{calibration_job.DEFAULTS.search_mode} search, check "
        f"{calibration_job.DEFAULTS.check}, correction {calibration_job.DEFAULTS.correction}), "
        f"then Apply at strength 1",
        flush=True,
    )
    rows, pictures = [], {}
    for n in sizes:
        # the node's defaults (the native size: the model's own) but the size, and the
        # demo's steps and --samples (by default the node's: 20 steps, 16 latents)
        request = calibration_job.Request(
            steps=args.steps, sample_count=count, width=8 * n, height=8 * n
        )
        started = time.perf_counter()
        record, path, text = calibration_job.run(model, request, calibration_job.Inputs(), store)
        seconds = time.perf_counter() - started
        save_png(calibration_plot(record), out_dir / f"calibration_apply_N{n}.png")
        notes: list = []
        applied = apply_patch.apply_recommended(
            model, 1.0, "error", None, [record], store, "", notes
        )
        fd = {name: sample_fd(name, n, model) for name in ("plain", "native")}
        fd["Apply"] = sample_fd("Apply", n, applied)
        chosen = recommendation(record)["name"]
        floor = fd_noise_floor(spectrum.power(n), eval_samples, spectrum.channels)
        closed = gap(fd["plain"][0], fd["Apply"][0], fd["native"][0])
        reused = text.startswith("reused")
        rows.append((n, fd, closed, floor, chosen, seconds, reused))
        print(f"  calibrated N={n}: {path}{' (reused)' if reused else ''}", flush=True)
        if n == sizes[0]:
            pictures = {label: fd[label][1] for label in ("plain", "Apply", "native")}
            pictures["true"] = sample_field(
                spectrum, n, GRID_COLUMNS, torch.Generator().manual_seed(20_000 + args.seed)
            )
            pictures["Apply"] = (chosen, pictures["Apply"])
    header = (
        f"{'N':>4} {'FD plain':>10} {'FD Apply':>10} {'FD native':>10} {'gap closed':>11} "
        f"{'floor':>9} {'calib s':>8}  Apply applied"
    )
    print(header)
    print("-" * len(header))
    for n, fd, closed, floor, chosen, seconds, reused in rows:
        print(
            f"{n:>4} {fd['plain'][0]:10.5f} {fd['Apply'][0]:10.5f} {fd['native'][0]:10.5f} "
            f"{closed:>11} {floor:9.5f} {seconds:8.2f}  {chosen}{' (reused)' if reused else ''}"
        )
    n = sizes[0]
    chosen, applied_samples = pictures.pop("Apply")
    pictures = {
        "plain": pictures["plain"],
        "Apply\n" + chosen.replace("+", "\n+"): applied_samples,
        "native": pictures["native"],
        "true": pictures["true"],
    }
    scale = float(pictures["true"].float().std())
    columns = min(GRID_COLUMNS, eval_samples)
    rows_px = {label: _field_images(x[:columns], scale) for label, x in pictures.items()}
    picture = out_dir / f"reference_N{n}.png"
    title = f"Gaussian field, N = {n} latents, euler {args.steps}: the M = {m} network"
    save_png(sample_grid(rows_px, title, REFERENCE_GRID_SCALE), picture)
    print(f"picture: {picture}\nplots: {out_dir}/calibration_apply_N*.png", flush=True)


def _field_images(fields: torch.Tensor, scale: float) -> torch.Tensor:
    """Field samples [k, C, n, n] as pictures: the first three channels, 0 at mid-grey,
    +-2 standard deviations of the true field (`scale`) at the ends."""
    return (0.5 + fields.float()[:, :3] / (4 * scale)).clamp(0, 1)


def _demo(args) -> int:
    """Main job on the shipped reference: the Calibrate node's defaults -> Apply -> FD to
    the true field at N = M/2 and M, a picture; then NoiseShift alone as before."""
    if args.model == "dead-leaves":
        return _demo_dead_leaves(args)
    from ..noisecal.testing.metrics import fd_noise_floor, frechet_distance, gap_closed
    from ..noisecal.testing.testbed import sample_field
    from . import calibration_job, calibration_run, folders, level_patches
    from .testing.sampling import empty_latent, ksample
    from .testing.testbed_model import make_testbed_conditioning

    # --samples, where given, sizes both calibrations; else each keeps its own default
    apply_count = args.samples or calibration_job.DEFAULTS.sample_count
    if args.samples is None:
        args.samples = DEFAULT_CAL_SAMPLES[args.model]
    torch.set_num_threads(max(1, args.threads))
    eval_samples = args.eval_samples or DEFAULT_EVAL_SAMPLES[args.model]
    max_batch = args.max_batch or DEFAULT_MAX_BATCH[args.model]
    out_dir = Path(args.out) / "demo"
    setup = _demo_setup(args)
    spectrum, model, m = setup.spectrum, setup.model, setup.train_res
    sizes = (m // 2, m)
    print(
        f"{setup.description}; sampled through ComfyUI (euler, simple, {args.steps} steps), "
        f"{eval_samples} samples per cell",
        flush=True,
    )
    fd_cache: dict = {}

    def sample_fd(name: str, n: int, sampled_model) -> tuple[float, torch.Tensor]:
        """FD to the true field of `eval_samples` samples at n (and the samples): plain and
        native once per size, shared by both tables."""
        if (name, n) not in fd_cache:
            if name == "native":
                sampled_model = setup.native(n)
                positive = make_testbed_conditioning(eval_samples)
                to_field = lambda x: x  # noqa: E731 - the testbed works in field space
            else:
                positive, to_field = setup.positive(eval_samples), setup.to_field
            samples = to_field(
                ksample(
                    sampled_model,
                    empty_latent(sampled_model, n, n, eval_samples),
                    positive,
                    steps=args.steps,
                    seed=args.seed + 1,
                )
            )
            fd_cache[name, n] = (frechet_distance(samples, spectrum.power(n)), samples)
        return fd_cache[name, n]

    def gap(plain, method, native) -> str:
        try:
            return f"{100 * gap_closed(plain, method, native):.1f}%"
        except ValueError:
            return "no gap"

    if args.model == "reference":
        _demo_apply(args, setup, sizes, sample_fd, gap, out_dir, eval_samples, apply_count)

    # NoiseShift alone: the earlier demo, on field samples passed as a LATENT
    store = folders.user_store(out_dir / "noiseshift_calibrations")
    print(
        f"NoiseShift alone: calibration on {args.samples} true field samples, {args.mode} "
        f"search, no check",
        flush=True,
    )
    rows = []
    for n in reversed(sizes):
        # data seed far from the search/sampling seeds: equal seeds would make x0 and eps
        # one noise
        fields = sample_field(
            spectrum, n, args.samples, torch.Generator().manual_seed(10_000 + args.seed)
        )
        started = time.perf_counter()
        # what the Calibrate and NoiseShift nodes run, on the demo's own store
        record, path = calibration_run.calibrate_latents(
            model,
            setup.to_latent(fields),
            calibration_run.schedule_sigmas(model, "simple", args.steps),
            sample_count=args.samples,
            source="LATENT input",
            positive=setup.positive(1),
            mode=args.mode,
            seed=args.seed,
            max_batch=max_batch,
            calibration_store=store,
        )
        seconds = time.perf_counter() - started
        save_png(calibration_plot(record), out_dir / f"calibration_N{n}.png")
        shifted = level_patches.apply_noiseshift(model, 1.0, "error", "", None, store)
        fd = {name: sample_fd(name, n, model)[0] for name in ("plain", "native")}
        fd["noiseshift"] = sample_fd("noiseshift", n, shifted)[0]
        max_shift = max(
            abs(h - s) for s, h in zip(record["sigmas"], record["sigma_hat"], strict=True)
        )
        floor = fd_noise_floor(spectrum.power(n), eval_samples, spectrum.channels)
        closed = gap(fd["plain"], fd["noiseshift"], fd["native"])
        nfe = record["cost"]["network_evaluations"]
        rows.append(
            (n, fd["plain"], fd["noiseshift"], fd["native"], closed, floor, max_shift, nfe, seconds)
        )
        print(f"  calibrated N={n}: {path}", flush=True)
    header = (
        f"{'N':>4} {'FD plain':>10} {'FD NoiseShift':>14} {'FD native':>10} "
        f"{'gap closed':>11} {'floor':>9} {'max|shift|':>11} {'NFE':>7} {'calib s':>8}"
    )
    print(header)
    print("-" * len(header))
    for n, plain, shifted_fd, native_fd, closed, floor, shift, nfe, seconds in rows:
        print(
            f"{n:>4} {plain:10.5f} {shifted_fd:14.5f} {native_fd:10.5f} {closed:>11} "
            f"{floor:9.5f} {shift:11.4f} {nfe:7d} {seconds:8.2f}"
        )
    print(f"plots: {out_dir}/calibration_N*.png")
    return 0


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

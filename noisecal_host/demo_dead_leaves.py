"""`demo --model dead-leaves`: the dead-leaves network at N = M/2, calibrated as
the Calibrate node does (held-out check), sampled plain, with NoiseShift and
with Apply against the native network and true scenes; a table and a picture."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .demo_models import (
    DEAD_LEAVES_MODEL,
    DEAD_LEAVES_NATIVE,
    DEFAULT_CAL_SAMPLES,
    DEFAULT_EVAL_SAMPLES,
    DEFAULT_MAX_BATCH,
)
from .demo_pictures import GRID_COLUMNS, GRID_ROWS, sample_grid
from .plots import calibration_plot, save_png


def run(args) -> int:
    import comfy.sd

    from . import folders

    for path in (DEAD_LEAVES_MODEL, DEAD_LEAVES_NATIVE):
        if not path.is_file():
            raise SystemExit(
                f"the dead-leaves network {path.name} is not in this install (a Comfy Registry "
                f"install leaves models/reference/ out); run the demo from a git clone"
            )
    torch.set_num_threads(max(1, args.threads))
    count = args.eval_samples or DEFAULT_EVAL_SAMPLES[args.model]
    cal_count = args.samples if args.samples is not None else DEFAULT_CAL_SAMPLES[args.model]
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
    cal = _sample_latents(cal_count, n, 10_000 + args.seed)
    measure, ref, floor_set = _scorer(args, n, count)
    record, recommendation = _calibrate(args, model, cal, n, calibration_store, out_dir)
    samples, scores = _sample_methods(args, model, native, n, count, calibration_store, measure)
    scores["true (floor)"] = measure(_to_latent(floor_set))
    samples["true"] = _to_latent(ref)
    _print_table(scores, recommendation)
    columns = min(GRID_COLUMNS, count)
    rows = {
        (f"Apply\n({recommendation})" if label == "Apply" else label): _to_image(
            samples[label][:columns].float()
        )
        for label in GRID_ROWS
    }
    picture = out_dir / f"dead_leaves_N{n}.png"
    title = f"dead leaves, N = {n} ({2 * n} px), euler {args.steps}: the M = {m} network"
    save_png(sample_grid(rows, title), picture)
    print(f"picture: {picture}\nplots: {out_dir}/calibration_dead_leaves_N{n}.png")
    return 0


def _sample_latents(count: int, n: int, seed: int):
    from ..noisecal.testing import dead_leaves

    return dead_leaves.sample_latents(count, n, seed)


def _to_latent(images):
    from ..noisecal.testing import dead_leaves

    return dead_leaves.to_latent(images)


def _to_image(latents):
    from ..noisecal.testing import dead_leaves

    return dead_leaves.to_image(latents)


def _scorer(args, n: int, count: int):
    """measure(latents) -> patch SWD, edge statistic and spectral FD to true scenes;
    and the true scenes (reference, and a second set for the floor)."""
    from ..noisecal.spectra import fourier_power
    from ..noisecal.testing import dead_leaves, swd
    from ..noisecal.testing.metrics import frechet_distance

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

    return measure, ref, floor_set


def _calibrate(args, model, cal, n: int, calibration_store, out_dir: Path):
    """What the Calibrate node runs (correction euler, check held-out), on the demo's store."""
    from . import calibration_run
    from .model_info import zero_conditioning

    started = time.perf_counter()
    record, path = calibration_run.calibrate_latents(
        model,
        model.model.process_latent_out(cal),
        calibration_run.schedule_sigmas(model, "simple", args.steps),
        source="LATENT input",
        positive=zero_conditioning(model),
        mode=args.mode,
        seed=args.seed,
        max_batch=args.max_batch or DEFAULT_MAX_BATCH[args.model],
        calibration_store=calibration_store,
        correction="euler",
        check=True,
    )
    seconds = time.perf_counter() - started
    save_png(calibration_plot(record), out_dir / f"calibration_dead_leaves_N{n}.png")
    recommendation = record.get("check", {}).get("recommendation", "noiseshift (no check)")
    max_shift = max(abs(h - s) for s, h in zip(record["sigmas"], record["sigma_hat"], strict=True))
    print(
        f"  calibrated N={n}: {path} ({record['cost']['network_evaluations']} network "
        f"evaluations, {seconds:.1f} s, max|shift| {max_shift:.4f}); Apply recommends "
        f"{recommendation}",
        flush=True,
    )
    return record, recommendation


def _sample_methods(args, model, native, n: int, count: int, calibration_store, measure):
    """Samples (model space) and scores of plain, NoiseShift, Apply and the native network."""
    from . import level_patches
    from .model_info import zero_conditioning
    from .testing.sampling import empty_latent, ksample

    shifted = level_patches.apply_noiseshift(model, 1.0, "error", "", None, calibration_store)
    applied = level_patches.apply_recommended(model, 1.0, "error", "", None, calibration_store)
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
    return samples, scores


def _print_table(scores: dict, recommendation: str) -> None:
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

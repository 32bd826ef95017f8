"""`demo`: the main job on the shipped reference (or the testbed). The Calibrate
node's defaults -> Apply -> FD to the true field at N = M/2 and M, with a
picture; then NoiseShift alone, calibrated on true field samples."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from .demo_models import DEFAULT_CAL_SAMPLES, DEFAULT_EVAL_SAMPLES, DEFAULT_MAX_BATCH, demo_setup
from .demo_pictures import GRID_COLUMNS, REFERENCE_GRID_SCALE, field_images, sample_grid
from .plots import calibration_plot, save_png


def run(args) -> int:
    if args.model == "dead-leaves":
        from . import demo_dead_leaves

        return demo_dead_leaves.run(args)
    from . import calibration_job

    # --samples, where given, sizes both calibrations; else each keeps its own default
    apply_count = args.samples or calibration_job.DEFAULTS.sample_count
    if args.samples is None:
        args.samples = DEFAULT_CAL_SAMPLES[args.model]
    torch.set_num_threads(max(1, args.threads))
    eval_samples = args.eval_samples or DEFAULT_EVAL_SAMPLES[args.model]
    out_dir = Path(args.out) / "demo"
    setup = demo_setup(args)
    sizes = (setup.train_res // 2, setup.train_res)
    print(
        f"{setup.description}; sampled through ComfyUI (euler, simple, {args.steps} steps), "
        f"{eval_samples} samples per cell",
        flush=True,
    )
    sample_fd = _fd_sampler(args, setup, eval_samples)
    if args.model == "reference":
        _apply_table(args, setup, sizes, sample_fd, out_dir, eval_samples, apply_count)
    _noiseshift_table(args, setup, sizes, sample_fd, out_dir, eval_samples)
    return 0


def _fd_sampler(args, setup, eval_samples: int):
    """sample_fd(name, n, model): FD to the true field of `eval_samples` samples at n
    (and the samples); plain and native once per size, shared by both tables."""
    from ..noisecal.testing.metrics import frechet_distance
    from .testing.sampling import empty_latent, ksample
    from .testing.testbed_model import make_testbed_conditioning

    fd_cache: dict = {}

    def sample_fd(name: str, n: int, sampled_model) -> tuple[float, torch.Tensor]:
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
            fd_cache[name, n] = (frechet_distance(samples, setup.spectrum.power(n)), samples)
        return fd_cache[name, n]

    return sample_fd


def _gap(plain, method, native) -> str:
    from ..noisecal.testing.metrics import gap_closed

    try:
        return f"{100 * gap_closed(plain, method, native):.1f}%"
    except ValueError:
        return "no gap"


def _apply_table(args, setup, sizes, sample_fd, out_dir, eval_samples, count) -> None:
    """The product: the Calibrate node at its defaults (self-generated data at the
    network's trained size, held-out check) for each N, the Apply node on its record,
    FD to the true field for plain, Apply and native; a picture of the samples at M/2."""
    from ..noisecal.calibration_record import recommendation
    from ..noisecal.testing.metrics import fd_noise_floor
    from . import calibration_job, folders, level_patches

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
    rows, first = [], None
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
        applied = level_patches.apply_recommended(
            model, 1.0, "error", None, [record], store, "", notes
        )
        fd = {name: sample_fd(name, n, model) for name in ("plain", "native")}
        fd["Apply"] = sample_fd("Apply", n, applied)
        chosen = recommendation(record)["name"]
        floor = fd_noise_floor(spectrum.power(n), eval_samples, spectrum.channels)
        closed = _gap(fd["plain"][0], fd["Apply"][0], fd["native"][0])
        reused = text.startswith("reused")
        rows.append((n, fd, closed, floor, chosen, seconds, reused))
        print(f"  calibrated N={n}: {path}{' (reused)' if reused else ''}", flush=True)
        if n == sizes[0]:
            first = (fd, chosen)
    _print_apply_rows(rows)
    _apply_picture(args, setup, sizes[0], *first, out_dir, eval_samples)


def _print_apply_rows(rows) -> None:
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


def _apply_picture(args, setup, n, fd, chosen, out_dir, eval_samples) -> None:
    """Plain, Apply, native and true field samples at n, a row each."""
    from ..noisecal.testing.testbed import sample_field

    true = sample_field(
        setup.spectrum, n, GRID_COLUMNS, torch.Generator().manual_seed(20_000 + args.seed)
    )
    pictures = {
        "plain": fd["plain"][1],
        "Apply\n" + chosen.replace("+", "\n+"): fd["Apply"][1],
        "native": fd["native"][1],
        "true": true,
    }
    scale = float(true.float().std())
    columns = min(GRID_COLUMNS, eval_samples)
    rows_px = {label: field_images(x[:columns], scale) for label, x in pictures.items()}
    picture = out_dir / f"reference_N{n}.png"
    title = (
        f"Gaussian field, N = {n} latents, euler {args.steps}: the M = {setup.train_res} network"
    )
    save_png(sample_grid(rows_px, title, REFERENCE_GRID_SCALE), picture)
    print(f"picture: {picture}\nplots: {out_dir}/calibration_apply_N*.png", flush=True)


def _noiseshift_table(args, setup, sizes, sample_fd, out_dir, eval_samples) -> None:
    """NoiseShift alone: the earlier demo, on true field samples passed as a LATENT."""
    from ..noisecal.testing.metrics import fd_noise_floor
    from ..noisecal.testing.testbed import sample_field
    from . import calibration_run, folders, level_patches

    spectrum, model = setup.spectrum, setup.model
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
            max_batch=args.max_batch or DEFAULT_MAX_BATCH[args.model],
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
        closed = _gap(fd["plain"], fd["noiseshift"], fd["native"])
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

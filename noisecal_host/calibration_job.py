"""One Calibrate run from its settings and inputs: the Calibrate node and the
command line both call `run`, with the same defaults (`Request`).

What it does, in order, every check before any network call: the schedule; the
data (connected latents, images + VAE, or self-generated at the native size);
reuse of a stored calibration made for the same request; the memory and the
folders the run needs; then self-generation and `calibrate.calibrate` under
one progress bar (noisecal_host/calibration_phases.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import comfy.model_management
import torch

from ..noisecal import errors, held_out_check
from ..noisecal.calibration_summary import summary
from ..noisecal.resize import center_crop_resize
from ..noisecal.reuse import SELF_GENERATED
from . import calibrate, calibrate_inputs, calibration_run, memory, self_calibration
from .calibration_phases import BAR_UNITS, GENERATION, Phases, progress_text
from .fingerprint import checkpoint_key
from .network_calls import network_calls


@dataclass(frozen=True)
class Request:
    """A Calibrate run's settings; these defaults are the node's widget defaults."""

    steps: int = 20
    scheduler: str = "simple"
    search_mode: str = "lean"
    sample_count: int = 16
    seed: int = 0
    width: int = 512
    height: int = 512
    label: str = ""
    max_batch: int = 32
    correction: str = "off"
    mode: str = "reuse"
    data: str = "auto"
    generation_steps: int = 20
    generation_cfg: float = 1.0
    generation_sampler: str = "dpmpp_2m"
    generation_scheduler: str = "simple"
    native_width: int = 0
    native_height: int = 0
    check: str = "held-out"


DEFAULTS = Request()


@dataclass
class Inputs:
    """What is connected: data (a LATENT dict, or IMAGE + VAE), conditioning, SIGMAS."""

    latent: dict | None = None
    image: torch.Tensor | None = None
    vae: object = None
    positive: list | None = None
    negative: list | None = None
    sigmas: torch.Tensor | None = None
    latent_source: str = "LATENT input"  # how the record names connected latents


def run(model, request: Request, inputs: Inputs, calibration_store):
    """Calibrate (or reuse) as the request says: (record, path, summary text)."""
    started = time.perf_counter()
    calibrate_inputs.check_family(model)
    sigmas = calibration_run.schedule_sigmas(model, request.scheduler, request.steps, inputs.sigmas)
    calibrate_inputs.check_schedule(model, torch.as_tensor(sigmas, dtype=torch.float64).flatten())
    key = checkpoint_key(model, request.label or None)
    settings = None
    if _generates(request.data, inputs):
        settings = _generation_settings(model, request, inputs)
        calibrate_inputs.check_image_size(model, request.width, request.height, "width/height")
        latent_size, count = (request.height // 8, request.width // 8), request.sample_count
    else:
        latent_size, count = _connected_size(model, request, inputs)
    correction = None if request.correction == "off" else request.correction
    generation = asdict(settings) if settings is not None else None
    if request.mode == "reuse":
        found = calibration_run.find_reusable(
            calibration_store,
            key,
            latent_size,
            sigmas=sigmas.tolist(),
            method=f"noiseshift-{request.search_mode}",
            correction=correction,
            count=count,
            generation=generation,
            # a set too small to hold any back gets no check either way
            check=request.check == "held-out" and held_out_check.split(count)[1] > 0,
        )
        if found is not None:
            record, path = found
            seconds = time.perf_counter() - started
            data = record["calibration_set"]["source"]
            return (
                record,
                path,
                summary(record, path, reused=True, data=data, evaluations=0, seconds=seconds),
            )
    # a size one network call cannot hold is refused before any (it ignored Cancel)
    _check_memory(model, latent_size, inputs.latent, settings)
    # a folder or path this machine cannot write is refused before any network call
    calibration_store.check_writable(key, latent_size)
    if settings is not None:
        self_calibration.check_cache_writable(calibration_store.write_dir, key, settings)
    phases = _phases(sigmas, count, request.check, correction, settings)
    with network_calls(model) as calls:
        if settings is not None:
            latents, source = _self_generated(
                model, key, settings, request, inputs, calibration_store, phases
            )
        else:
            latents, source = _latents(request, inputs)
        record, path = calibration_run.calibrate_latents(
            model,
            latents,
            sigmas,
            sample_count=request.sample_count,
            source=source,
            positive=inputs.positive,
            mode=request.search_mode,
            seed=request.seed,
            label=request.label or None,
            max_batch=request.max_batch,
            calibration_store=calibration_store,
            correction=correction,
            generation=generation,
            check=request.check == "held-out",
            phases=phases,
        )
    seconds = time.perf_counter() - started
    if phases.say is not None:  # else the last phase's text ("guidance weight...") stays
        phases.say(f"done: {calls[0]} network evaluations, {seconds:.1f} s")
    text = summary(record, path, reused=False, data=source, evaluations=calls[0], seconds=seconds)
    return record, path, text


def _generates(data: str, inputs: Inputs) -> bool:
    """Whether the run makes its own data (data = self-generate, or auto with nothing connected)."""
    if data == "self-generate":
        return True
    if inputs.latent is not None or inputs.image is not None:
        return False
    if data == "connected":
        raise errors.CalibrationError(
            "data is 'connected' but nothing is connected: connect a LATENT of encoded "
            "real images, or IMAGE + VAE, or set data to self-generate"
        )
    return True


def _check_memory(model, latent_size, latent, settings) -> None:
    """Refuse a generation or calibration size whose one row does not fit."""
    channels = model.model.latent_format.latent_channels
    if settings is not None:
        native = (settings.height // 8, settings.width // 8)
        memory.check_one_row_fits(model, (1, channels, *native), "native_width/native_height")
    names = "latent" if latent is not None and settings is None else "width/height"
    memory.check_one_row_fits(model, (1, channels, *latent_size), names)


def _generation_settings(model, request: Request, inputs: Inputs):
    """What the generated set depends on: the native size (the model's own where
    the widgets are 0), count, sampling settings, seed and conditioning."""
    default_w, default_h = self_calibration.native_size(model)
    native = (request.native_width or default_w, request.native_height or default_h)
    calibrate_inputs.check_image_size(model, *native, "native_width/native_height")
    return self_calibration.GenerationSettings(
        width=native[0] // 8 * 8,
        height=native[1] // 8 * 8,
        count=int(request.sample_count),
        steps=int(request.generation_steps),
        cfg=float(request.generation_cfg),
        sampler=request.generation_sampler,
        scheduler=request.generation_scheduler,
        seed=int(request.seed),
        conditioning=self_calibration.conditioning_digest(inputs.positive, inputs.negative),
    )


def _phases(sigmas, count, check, correction, settings) -> Phases:
    """One progress bar for the whole run, its phase named on the node."""
    generation = 0
    if settings is not None:  # rows at the native size, in target-size rows
        generation = settings.count * settings.steps * (2 if settings.cfg > 1 else 1)
    plan = calibrate.plan(sigmas, count, check == "held-out", correction, generation)
    return Phases(plan, calibrate.comfy_progress(BAR_UNITS), progress_text())


def _self_generated(model, key, settings, request, inputs, calibration_store, phases):
    """The generated set (cached or new) brought to the target size, and its description."""
    channels = model.get_model_object("latent_format").latent_channels
    native_shape = (1, channels, settings.height // 8, settings.width // 8)
    rows = 2 if settings.cfg > 1 else 1  # cfg > 1 runs the negative too
    with phases.phase(GENERATION, model) as progress:
        native, cached = self_calibration.generated_set(
            model,
            key,
            settings,
            calibration_store.write_dir,
            inputs.positive,
            inputs.negative,
            max_batch=memory.batch_size(model, native_shape, request.max_batch, rows),
            progress=progress,
        )
    latents = self_calibration.to_target(
        native, request.width, request.height, inputs.vae, request.max_batch
    )
    how = "through the VAE" if inputs.vae is not None else "resized in latent space"
    origin = "cached" if cached else "new"
    return latents, f"{SELF_GENERATED} ({origin}): {settings.describe()}, {how}"


def _connected_size(model, request: Request, inputs: Inputs):
    """(latent size, count) of connected data, checked before encoding anything."""
    if inputs.latent is not None:
        samples = inputs.latent["samples"]
        count = request.sample_count
        used = samples[:count] if isinstance(samples, torch.Tensor) else samples
        calibrate_inputs.check_latents(model, used)
        calibrate_inputs.check_latent_size(model, samples)
        return tuple(samples.shape[-2:]), min(count, samples.shape[0])
    calibrate_inputs.check_image_size(model, request.width, request.height, "width/height")
    return (request.height // 8, request.width // 8), min(
        request.sample_count, inputs.image.shape[0]
    )


def _latents(request: Request, inputs: Inputs) -> tuple[torch.Tensor, str]:
    """The connected data as latents: the LATENT, or the images resized, center-cropped
    and encoded with the VAE (max_batch images a call, Cancel between calls)."""
    if inputs.latent is not None:
        samples = inputs.latent["samples"]
        if torch.count_nonzero(samples) == 0:
            raise errors.CalibrationError(
                "the calibration latent is empty (all zeros): connect latents of real "
                "images (VAE Encode), or connect IMAGE + VAE"
            )
        return samples, inputs.latent_source
    image, vae = inputs.image, inputs.vae
    if image is None:
        raise errors.CalibrationError(
            "connect calibration data: a LATENT of encoded real images, or IMAGE + VAE"
        )
    if vae is None:
        raise errors.CalibrationError("an IMAGE input needs the VAE input to encode it")
    encoded = []
    step = request.max_batch
    for start in range(0, image.shape[0], step):
        comfy.model_management.throw_exception_if_processing_interrupted()
        part = image[start : start + step, ..., :3].movedim(-1, 1)
        pixels = center_crop_resize(part, request.height, request.width).movedim(1, -1)
        encoded.append(vae.encode(pixels.clamp(0, 1)))
    return torch.cat(encoded), "images + VAE"

"""What Calibrate refuses before any network call: models NoiseShift cannot serve,
schedules and latents the search cannot use, and sizes the network cannot take."""

from __future__ import annotations

import torch

from ..noisecal.errors import CalibrationError, InvalidInput
from ..noisecal.levels import check_descending
from . import family_support
from .memory import check_one_row_fits
from .model_info import max_level, parameterization_of

PIXELS_PER_LATENT = 8  # SD1/SDXL/SD3/Flux VAEs
MAX_LATENT_STD = 1e3  # real latents have a spread of about 1 after process_latent_in
SIGMA_MAX_TOLERANCE = 1e-4  # relative: float32 rounding of the scheduler's top level


def check_all(model, latents, sigmas: torch.Tensor) -> None:
    """Every check of calibration data, schedule and model (calibrate.check_inputs)."""
    check_family(model)
    check_latents(model, latents)
    check_latent_size(model, latents)
    check_schedule(model, sigmas)
    check_one_row_fits(model, latents.shape, "latent")


def check_family(model) -> None:
    """Refuse a model NoiseShift cannot apply a calibration to (it would be written
    for nothing): an unknown parameterization, or a family family_support refuses."""
    parameterization_of(model)
    family_support.check(model, "Calibrate (for NoiseShift)")


def check_schedule(model, sigmas: torch.Tensor) -> None:
    """Refuse SIGMAS the search cannot use: too short, not finite, not strictly
    descending, or above the model's highest level."""
    if sigmas.numel() < 2:
        raise CalibrationError(
            f"the schedule has {sigmas.numel()} sigma(s): calibration needs at least two "
            f"levels (one step); connect a longer SIGMAS or set steps >= 1"
        )
    if not bool(torch.isfinite(sigmas).all()) or bool((sigmas < 0).any()):
        raise CalibrationError("the schedule's sigmas must be finite and not negative")
    try:
        check_descending(sigmas.tolist(), "the schedule's sigmas")
    except ValueError as exc:
        raise CalibrationError(str(exc)) from None
    top, limit = float(sigmas.max()), max_level(model)
    if top > limit * (1 + SIGMA_MAX_TOLERANCE):
        raise InvalidInput(
            f"sigmas: the schedule starts at {top:g}, above this model's highest noise "
            f"level {limit:g}: connect SIGMAS from this model's own scheduler (or steps + "
            f"scheduler instead)"
        )


def check_latents(model, latents) -> None:
    """Refuse calibration latents the search cannot use (shape, channels, size,
    NaN) or whose scale is far from the model's latent space."""
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4:
        shape = list(getattr(latents, "shape", [])) or type(latents).__name__
        raise CalibrationError(
            f"the calibration latents must be a batch [count, channels, height, width], got {shape}"
        )
    channels = model.model.latent_format.latent_channels
    if latents.shape[1] != channels:
        raise CalibrationError(
            f"the calibration latents have {latents.shape[1]} channels but this model's "
            f"latents have {channels}: encode the images with this model's VAE"
        )
    if latents.shape[0] < 1 or min(latents.shape[-2:]) < 2:
        raise CalibrationError(
            f"calibration needs at least one latent of at least 2x2 latent pixels "
            f"(16x16 image pixels), got {list(latents.shape)}"
        )
    if not bool(torch.isfinite(latents).all()):
        raise CalibrationError(
            "the calibration latents contain NaN or infinite values: check the images and "
            "the VAE that encoded them"
        )
    _check_scale(model, latents)


def _check_scale(model, latents: torch.Tensor) -> None:
    # float64: the spread of latents scaled by 1e20 overflows float32
    inside = model.model.process_latent_in(latents.to(torch.float64))
    spread = inside.flatten(1).std(dim=1)
    worst = int(spread.argmax())
    if not float(spread[worst]) <= MAX_LATENT_STD:
        raise InvalidInput(
            f"latent: calibration latent {worst + 1} of {len(latents)} has a spread (std) of "
            f"{float(spread[worst]):.3g} in the model's latent space, where real images give "
            f"about 1 (at most {MAX_LATENT_STD:g} is accepted): connect latents straight "
            f"from this model's VAE Encode, unscaled"
        )


def size_multiple(model) -> int:
    """Image pixels a width or height must be a multiple of: the VAE's 8 times the
    network's patch size (2 for SD3/Flux, 1 for a UNet)."""
    return PIXELS_PER_LATENT * patch_size(model)


def patch_size(model) -> int:
    """Latent pixels per side of the network's patches (1 where it has none)."""
    config = getattr(getattr(model.model, "model_config", None), "unet_config", None) or {}
    size = config.get("patch_size") or getattr(model.model.diffusion_model, "patch_size", 1)
    if isinstance(size, (tuple, list)):
        size = max(size)
    return max(1, int(size or 1))


def check_pixel_size(model, width: int, height: int, names: str) -> None:
    """Refuse a size in pixels (the inputs `names`) the network cannot take whole."""
    step = size_multiple(model)
    for name, value in zip(names.split("/"), (width, height), strict=True):
        if value % step:
            raise InvalidInput(
                f"{name} ({value}) must be a multiple of {step} for "
                f"{type(model.model).__name__} ({PIXELS_PER_LATENT} pixels per latent pixel "
                f"times its {patch_size(model)}x{patch_size(model)} patches): set "
                f"{_nearest(value, step)}"
            )


def check_image_size(model, width: int, height: int, names: str) -> None:
    """Refuse a size in pixels the network cannot take: not whole patches, or
    past its position embedding."""
    check_pixel_size(model, width, height, names)
    check_fits_network(model, width, height, names)


def largest_latent(model) -> int | None:
    """Latent pixels per side the network takes at most (None: no limit). An MMDiT
    with a fixed position embedding (SD3) covers pos_embed_max_size patches per side;
    past that ComfyUI fails inside the network."""
    network = getattr(model.model, "diffusion_model", None)
    config = getattr(getattr(model.model, "model_config", None), "unet_config", None) or {}
    limit = getattr(network, "pos_embed_max_size", None) or config.get("pos_embed_max_size")
    return int(limit) * patch_size(model) if limit else None


def check_fits_network(model, width: int, height: int, names: str) -> None:
    """Refuse a size in pixels (the inputs `names`) larger than the network takes."""
    largest = largest_latent(model)
    if largest is None:
        return
    for name, value in zip(names.split("/"), (width, height), strict=True):
        if value // PIXELS_PER_LATENT > largest:
            raise InvalidInput(
                f"{name} ({value}) is larger than {type(model.model).__name__} takes: its "
                f"position embedding covers at most {largest * PIXELS_PER_LATENT} pixels "
                f"({largest} latent pixels) per side: set {name} to "
                f"{largest * PIXELS_PER_LATENT} or less"
            )


def check_latent_size(model, latents: torch.Tensor) -> None:
    """Refuse a LATENT whose size the network cannot take whole, or at all."""
    patch = patch_size(model)
    h, w = (int(s) for s in latents.shape[-2:])
    if h % patch or w % patch:
        raise InvalidInput(
            f"latent: its size {w}x{h} latent pixels is not a multiple of "
            f"{type(model.model).__name__}'s {patch}x{patch} patches: encode images whose "
            f"width and height are multiples of {patch * PIXELS_PER_LATENT} pixels"
        )
    largest = largest_latent(model)
    if largest is not None and max(h, w) > largest:
        raise InvalidInput(
            f"latent: its size {w}x{h} latent pixels is larger than "
            f"{type(model.model).__name__} takes ({largest}x{largest}, its position "
            f"embedding): encode images of at most {largest * PIXELS_PER_LATENT} pixels per side"
        )


def _nearest(value: int, step: int) -> str:
    low = max(step, value // step * step)
    high = low + step if low < value else low
    return f"{low} or {high}" if low != high else f"{low}"

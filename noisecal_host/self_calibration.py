"""Calibration data made by the model itself: sampled at its native resolution, where
it is good, then brought to the target resolution.

With a VAE the generated latents are decoded, center-cropped and resized with
antialiasing, and encoded again (a photo made smaller). Without one (latent-only
models such as the trained reference model) the latents are resized directly
(noisecal/resize.py: an approximation, documented there).

The generated set is cached next to the calibrations, in
`generated/<checkpoint>__<settings digest>.safetensors`, at the native size:
calibrating a second resolution of the same checkpoint with the same settings
reuses it without a network evaluation. A cache file that cannot be read is
regenerated (and replaced atomically), never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import comfy.model_management
import comfy.sample
import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from ..noisecal.resize import center_crop_resize, resize_latents
from ..noisecal.store import CalibrationError, CheckpointKey, check_writable, write_atomically
from .model_info import zero_conditioning

log = logging.getLogger("noise_calibration")

GENERATED_FOLDER = "generated"
# Native resolution (pixels per side) by ComfyUI model class; others are ~1 MP.
NATIVE_SIDE = {"SD15": 512, "SD15_instructpix2pix": 512, "SD20": 768, "SD21UnclipL": 768}
DEFAULT_NATIVE_SIDE = 1024
PIXELS_PER_LATENT = 8


@dataclass(frozen=True)
class GenerationSettings:
    """Everything the generated set depends on (its cache key, with the checkpoint)."""

    width: int  # native size, pixels
    height: int
    count: int
    steps: int
    cfg: float
    sampler: str
    scheduler: str
    seed: int
    conditioning: str  # digest of the positive and negative conditioning

    def describe(self) -> str:
        return (
            f"{self.count} generated at {self.width}x{self.height} ({self.steps} steps, "
            f"{self.sampler}/{self.scheduler}, cfg {self.cfg:g}, seed {self.seed})"
        )


def native_size(model) -> tuple[int, int]:
    """(width, height) the model's family is trained at, in pixels."""
    side = NATIVE_SIDE.get(type(model.model.model_config).__name__, DEFAULT_NATIVE_SIDE)
    return side, side


def conditioning_digest(*conditionings) -> str:
    """A stable digest of CONDITIONING lists (tensors by dtype, shape and bytes)."""
    digest = hashlib.sha256()

    def add(value):
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
            digest.update(f"{t.dtype}{list(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                digest.update(str(k).encode())
                add(value[k])
        elif isinstance(value, (list, tuple)):
            digest.update(b"[")
            for v in value:
                add(v)
            digest.update(b"]")
        else:
            digest.update(repr(value).encode())

    for c in conditionings:
        add(c)
    return digest.hexdigest()[:16]


def cache_path(folder: Path, key: CheckpointKey, settings: GenerationSettings) -> Path:
    text = json.dumps({"checkpoint": key.identity, **asdict(settings)}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return folder / GENERATED_FOLDER / f"{key.file_stem()}__{digest}.safetensors"


def check_cache_writable(folder, key: CheckpointKey, settings: GenerationSettings) -> None:
    """Refuse, before generating, a cache file this machine could not write."""
    if folder is not None:
        check_writable(cache_path(Path(folder), key, settings))


def _read_cache(path: Path, settings: GenerationSettings, channels: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        # read whole, not memory-mapped: a mapped file cannot be replaced on Windows
        latents = load(path.read_bytes())["latents"]
    except (SafetensorError, KeyError, OSError, RuntimeError, ValueError) as exc:
        log.warning(
            "generated calibration set %s is unreadable (%s): generating it again", path, exc
        )
        return None
    expected = (settings.count, channels)
    if tuple(latents.shape[:2]) != expected or not bool(torch.isfinite(latents).all()):
        log.warning(
            "generated calibration set %s does not match its settings: generating it again", path
        )
        return None
    return latents


def _write_cache(path: Path, latents: torch.Tensor, settings: GenerationSettings) -> None:
    def write(tmp: str) -> None:
        metadata = {"settings": json.dumps(asdict(settings))}
        save_file({"latents": latents.contiguous().cpu()}, tmp, metadata=metadata)

    write_atomically(path, write, suffix=".safetensors.part")


def generate(
    model,
    settings: GenerationSettings,
    positive=None,
    negative=None,
    *,
    max_batch: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """`settings.count` samples of the model at its native size, as a LATENT holds them.
    Noise comes from the seed for the whole set at once, so the batch size does not
    change the result."""
    positive = positive if positive is not None else zero_conditioning(model)
    negative = negative if negative is not None else zero_conditioning(model)
    channels = model.get_model_object("latent_format").latent_channels
    h, w = settings.height // PIXELS_PER_LATENT, settings.width // PIXELS_PER_LATENT
    empty = torch.zeros(settings.count, channels, h, w)
    noise = comfy.sample.prepare_noise(empty, settings.seed)
    batches = range(0, settings.count, max_batch)
    out = []
    for i, start in enumerate(batches):
        stop = min(start + max_batch, settings.count)

        def step_done(step, *_, done=i):
            comfy.model_management.throw_exception_if_processing_interrupted()
            if progress is not None:
                progress(done * settings.steps + step + 1, len(batches) * settings.steps)

        out.append(
            comfy.sample.sample(
                model,
                noise[start:stop],
                settings.steps,
                settings.cfg,
                settings.sampler,
                settings.scheduler,
                positive,
                negative,
                empty[start:stop],
                callback=step_done,
                disable_pbar=True,
                seed=settings.seed,
            ).cpu()
        )
    return torch.cat(out).to(torch.float32)


def generated_set(
    model,
    key: CheckpointKey,
    settings: GenerationSettings,
    folder: Path | None,
    positive=None,
    negative=None,
    **options,
) -> tuple[torch.Tensor, bool]:
    """(native latents, whether they came from the cache). `folder`: the calibration
    store's write folder (None: no cache). `options`: generate's."""
    channels = model.get_model_object("latent_format").latent_channels
    path = cache_path(folder, key, settings) if folder is not None else None
    cached = _read_cache(path, settings, channels) if path is not None else None
    if cached is not None:
        return cached, True
    latents = generate(model, settings, positive, negative, **options)
    if path is not None:
        _write_cache(path, latents, settings)
    return latents, False


def to_target(latents: torch.Tensor, width: int, height: int, vae=None, max_batch: int = 8):
    """Native latents -> latents at width x height pixels: through the VAE's pixels
    when one is given, else resized in latent space (an approximation)."""
    h, w = height // PIXELS_PER_LATENT, width // PIXELS_PER_LATENT
    if min(h, w) < 1:
        raise CalibrationError(f"target size {width}x{height} is smaller than one latent pixel")
    if vae is None:
        return resize_latents(latents, h, w)
    out = []
    for start in range(0, latents.shape[0], max_batch):
        comfy.model_management.throw_exception_if_processing_interrupted()
        pixels = vae.decode(latents[start : start + max_batch])[..., :3]  # [n, H, W, 3]
        pixels = center_crop_resize(
            pixels.movedim(-1, 1), h * PIXELS_PER_LATENT, w * PIXELS_PER_LATENT
        )
        out.append(vae.encode(pixels.clamp(0, 1).movedim(1, -1)).cpu())
    return torch.cat(out).to(torch.float32)

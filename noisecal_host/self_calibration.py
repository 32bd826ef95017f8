"""Calibration data made by the model itself: sampled at its native resolution, where
it is good, then brought to the target resolution.

With a VAE the generated latents are decoded, center-cropped and resized with
antialiasing, and encoded again (a photo made smaller). Without one (latent-only
models such as the trained reference model) the latents are resized directly
(noisecal/resize.py: an approximation, documented there).

The generated set is cached next to the calibrations, in
`generated/<checkpoint>__<settings digest>.safetensors`, at the native size:
calibrating a second resolution of the same checkpoint with the same settings
reuses it without a network evaluation.

A cache file describes its set in the safetensors metadata: the checkpoint
identity, the generation settings, shape, dtype and a sha256 of the tensor
bytes. It is used only when all of it is what this run expects (count x
channels x native latent height x width, float32, finite, not all zero, the
checksum of the bytes read). Any other file (unreadable, an older version's,
another checkpoint's or settings', changed on disk) is logged with the reason
and generated again, then replaced atomically; it is never trusted. A cache path
that is a folder, or a cache folder that is a file, is refused with the pack's
error before any generation. Files are read whole, never memory-mapped: Windows
cannot replace a mapped file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import comfy.model_management
import comfy.sample
import torch
from safetensors.torch import load, save_file

from ..noisecal.checkpoint_key import CheckpointKey
from ..noisecal.errors import CalibrationError
from ..noisecal.resize import center_crop_resize, resize_latents
from .atomic_write import check_writable, write_atomically
from .calibrate_inputs import largest_latent
from .model_info import zero_conditioning

log = logging.getLogger("noise_calibration")

GENERATED_FOLDER = "generated"
# Native resolution (pixels per side) by ComfyUI model class; others are ~1 MP.
NATIVE_SIDE = {"SD15": 512, "SD15_instructpix2pix": 512, "SD20": 768, "SD21UnclipL": 768}
DEFAULT_NATIVE_SIDE = 1024
# model_options key where a loader that knows the model's trained size (pixels per
# side) records it: the pack's reference loader, from the network's sidecar
NATIVE_OPTION = "noise_calibration_native_side"
PIXELS_PER_LATENT = 8
# The cache file's description (safetensors metadata); files without it are regenerated.
CACHE_FORMAT = "noisecal-generated-set/1"
CACHE_DTYPE = "float32"
# a cache header holds one tensor entry and a short description: far under this
MAX_HEADER_BYTES = 1 << 20


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
    """(width, height) the model generates well at, in pixels: what its loader
    recorded (a reference network's sidecar), else its family's, within the largest
    size the network takes."""
    recorded = getattr(model, "model_options", {}).get(NATIVE_OPTION)
    if recorded:
        return int(recorded), int(recorded)
    side = NATIVE_SIDE.get(type(model.model.model_config).__name__, DEFAULT_NATIVE_SIDE)
    largest = largest_latent(model)
    if largest is not None:  # a small MMDiT's position embedding ends before 1024 px
        side = min(side, largest * PIXELS_PER_LATENT)
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
    """Where the set of this checkpoint and these settings is cached."""
    text = json.dumps({"checkpoint": key.identity, **asdict(settings)}, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return folder / GENERATED_FOLDER / f"{key.file_stem()}__{digest}.safetensors"


def check_cache_writable(folder, key: CheckpointKey, settings: GenerationSettings) -> None:
    """Refuse, before generating, a cache file this machine could not write."""
    if folder is not None:
        path = cache_path(Path(folder), key, settings)
        _check_cache_place(path)
        check_writable(path)


def _check_cache_place(path: Path) -> None:
    """Refuse a cache path that is a folder, or a cache folder that is a file: a
    write there fails, and deleting what the user put there is not the pack's call."""
    if path.parent.exists() and not path.parent.is_dir():
        raise CalibrationError(
            f"cannot cache the generated calibration set: {path.parent} is a file, not a "
            f"folder; move or remove it"
        )
    if path.exists() and not path.is_file():
        raise CalibrationError(
            f"cannot cache the generated calibration set: {path} is a folder, not a file; "
            f"move or remove it"
        )


def expected_shape(settings: GenerationSettings, channels: int) -> tuple[int, int, int, int]:
    """The shape generate() gives: count x channels x native latent height x width."""
    h, w = settings.height // PIXELS_PER_LATENT, settings.width // PIXELS_PER_LATENT
    return (settings.count, channels, h, w)


def tensor_digest(latents: torch.Tensor) -> str:
    """sha256 of a float32 tensor's bytes (little-endian, as safetensors stores them)."""
    return hashlib.sha256(latents.contiguous().numpy().tobytes()).hexdigest()


def _description(key: CheckpointKey, settings: GenerationSettings, shape) -> dict[str, str]:
    """The metadata a cache file of this run carries, less the checksum."""
    return {
        "format": CACHE_FORMAT,
        "checkpoint": key.identity,
        "settings": json.dumps(asdict(settings), sort_keys=True),
        "shape": json.dumps(list(shape)),
        "dtype": CACHE_DTYPE,
    }


def _header_metadata(data: bytes) -> dict:
    """The `__metadata__` of safetensors bytes: 8-byte length, then a JSON header."""
    if len(data) < 8:
        raise ValueError("shorter than a safetensors header")
    size = int.from_bytes(data[:8], "little")
    if size > min(len(data) - 8, MAX_HEADER_BYTES):
        raise ValueError("header length past the end of the file")
    header = json.loads(data[8 : 8 + size])
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise ValueError("no metadata")
    return metadata


def _metadata_problem(metadata: dict, expected: dict[str, str]) -> str | None:
    """Which described field differs from this run's (None: all match)."""
    if metadata.get("format") != CACHE_FORMAT:
        return "was written without a description of its set (an older version)"
    for field, value in expected.items():
        if metadata.get(field) != value:
            found = str(metadata.get(field))[:80]
            return f"differs in its {field} (file: {found!r}, this run: {value[:80]!r})"
    if set(metadata) != {*expected, "sha256"}:
        return "has unknown metadata fields"
    return None


def _tensor_problem(tensors: dict, shape, checksum) -> str | None:
    """What is wrong with the stored tensors (None: the set described)."""
    if set(tensors) != {"latents"}:
        return f"holds tensors {sorted(tensors)[:4]}, not just 'latents'"
    latents = tensors["latents"]
    if latents.dtype != torch.float32:
        return f"holds {latents.dtype}, not float32"
    if tuple(latents.shape) != tuple(shape):
        return f"holds shape {list(latents.shape)}, not {list(shape)}"
    if not bool(torch.isfinite(latents).all()):
        return "holds NaN or infinite values"
    if not bool(latents.any()):
        return "holds only zeros"
    if tensor_digest(latents) != checksum:
        return "does not match its checksum (changed on disk)"
    return None


def _cache_problem(data: bytes, expected: dict[str, str], shape):
    """(why the bytes are not this run's set or None, the latents when they are)."""
    try:
        metadata = _header_metadata(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return f"is unreadable ({exc})", None
    problem = _metadata_problem(metadata, expected)
    if problem:
        return problem, None
    try:
        tensors = load(data)
    except Exception as exc:  # any parse failure only means: generate again
        return f"is unreadable ({type(exc).__name__}: {exc})", None
    problem = _tensor_problem(tensors, shape, metadata["sha256"])
    return problem, None if problem else tensors["latents"]


def _read_cache(
    path: Path, key: CheckpointKey, settings: GenerationSettings, channels: int
) -> torch.Tensor | None:
    """The cached set when the file is exactly this run's set, else None (generate)."""
    if not path.is_file():
        return None
    shape = expected_shape(settings, channels)
    try:
        if path.stat().st_size > math.prod(shape) * 4 + 8 + MAX_HEADER_BYTES:
            problem, latents = "is larger than its set can be", None
        else:
            # read whole, not memory-mapped: a mapped file cannot be replaced on Windows
            data = path.read_bytes()
            problem, latents = _cache_problem(data, _description(key, settings, shape), shape)
    except OSError as exc:
        problem, latents = f"is unreadable ({exc.strerror or exc})", None
    if problem:
        log.warning("generated calibration set %s %s: generating it again", path, problem)
    return latents


def _write_cache(
    path: Path, latents: torch.Tensor, key: CheckpointKey, settings: GenerationSettings
) -> None:
    """Write the set with its description and checksum, atomically."""
    latents = latents.detach().to("cpu", torch.float32).contiguous()
    metadata = {**_description(key, settings, latents.shape), "sha256": tensor_digest(latents)}

    def write(tmp: str) -> None:
        save_file({"latents": latents}, tmp, metadata=metadata)

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
    path = cache_path(Path(folder), key, settings) if folder is not None else None
    if path is not None:
        _check_cache_place(path)
    cached = _read_cache(path, key, settings, channels) if path is not None else None
    if cached is not None:
        return cached, True
    latents = generate(model, settings, positive, negative, **options)
    if path is not None:
        _write_cache(path, latents, key, settings)
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

"""How many latents of a shape one network call can take on this machine, from
ComfyUI's own estimate (BaseModel.memory_required) and free memory."""

from __future__ import annotations

import comfy.model_management

from ..noisecal.errors import InvalidInput

GIB = 1024**3


def row_bytes(model, shape) -> float | None:
    """ComfyUI's estimate of one row's memory (a [1, *shape[1:]] input) for
    `model` (a ModelPatcher); None where the host has no estimate."""
    estimate = getattr(model.model, "memory_required", None)
    if estimate is None:
        return None
    return float(estimate([1, *(int(s) for s in shape[1:])]))


def free_bytes(model) -> float:
    """Memory the network call can get on the model's device: what is free, plus
    what ComfyUI can free there by offloading the other models it holds."""
    device = model.load_device
    free = float(comfy.model_management.get_free_memory(device))
    return free + _offloadable(device, model)


def rows_that_fit(model, shape, max_batch: int) -> int:
    """Latents of `shape` (any batch size) one network call can take, at most
    `max_batch`; 0 where not even one fits. `max_batch` where the host has no
    estimate."""
    per_row = row_bytes(model, shape)
    if not per_row or per_row <= 0:
        return int(max_batch)
    return max(0, min(int(max_batch), int(free_bytes(model) // per_row)))


def batch_size(model, shape, max_batch: int, rows_per_latent: int = 1) -> int:
    """Latents a call of the calibration takes: as many as fit (each taking
    `rows_per_latent` rows: 2 with cfg > 1 or guidance), at most `max_batch`, at
    least 1 (a size where one does not fit is refused before: check_one_row_fits)."""
    rows = rows_that_fit(model, shape, int(max_batch) * rows_per_latent)
    return max(1, min(int(max_batch), rows // rows_per_latent))


def check_one_row_fits(model, shape, what: str) -> None:
    """Refuse, before any network call, a latent size whose single row does not
    fit in memory (it would run for minutes, ignoring Cancel, then fail)."""
    if rows_that_fit(model, shape, 1) >= 1:
        return
    h, w = int(shape[-2]), int(shape[-1])
    raise InvalidInput(
        f"{what}: one network call on a {w}x{h} latent ({w * 8}x{h * 8} pixels) needs about "
        f"{row_bytes(model, shape) / GIB:.1f} GiB (ComfyUI's estimate for "
        f"{type(model.model).__name__}), but about {free_bytes(model) / GIB:.1f} GiB is "
        f"free on {model.load_device}: calibrate at a smaller size"
    )


def _offloadable(device, model) -> float:
    """Bytes of the models ComfyUI has loaded on `device` (it offloads them to make
    room), except `model`'s own weights: they stay for the call."""
    total = 0.0
    for loaded in list(getattr(comfy.model_management, "current_loaded_models", [])):
        try:
            if loaded.model is model or loaded.model.is_clone(model):
                continue
            if str(loaded.device) == str(device):
                total += float(loaded.model.loaded_size())
        except Exception:  # noqa: BLE001 - a host without these methods: count nothing
            continue
    return total

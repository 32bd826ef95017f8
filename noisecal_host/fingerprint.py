"""Checkpoint identity from a MODEL: ComfyUI's MODEL carries no file name.

`weights_fingerprint` hashes the diffusion model's BASE weights: every key's
name, shape and dtype, plus a strided sample of the values of a few tensors.
Cheap (a few thousand numbers), stable across runs and processes (sha256 of
fixed bytes), and different for different weights. While weight patches are
applied ComfyUI keeps the originals in `patcher.backup`, which is what it reads.

The checkpoint key also follows the weight patches registered on the MODEL
(a LoRA, a model merge: `patcher.patches`), their tensors and strengths: a LoRA
changes the denoiser the calibration measured (bench/lora_fp8.py, on the
dead-leaves network: the base network's calibration on it is worse than
recalibrating beyond the difference of two calibrations of one network), so
it gets calibrations of its own. A MODEL without weight patches keeps the
key it always had. Weight dtype (fp8) is part of the base fingerprint: the
stored weights differ; the key carries a few of the values (`weight_sample`),
so the same checkpoint at another precision finds its calibration
(rounded_weights.py).
"""

from __future__ import annotations

import hashlib

import torch

from ..noisecal import errors
from ..noisecal.checkpoint_key import CheckpointKey
from ..noisecal.weight_sample import MANTISSA_BITS, WeightSample

SAMPLED_TENSORS = 8
VALUES_PER_TENSOR = 1024
PATCH_VALUES_PER_TENSOR = 64  # per tensor of a weight patch (a LoRA has hundreds)
KEPT_VALUES_PER_TENSOR = 32  # kept in the calibration (weight_sample)
PATCHED_PREFIX = "diffusion_model."


def _weights(patcher) -> tuple[dict, list[str], list[str]]:
    """(state dict, its diffusion weight names, the names whose values are sampled):
    read once per key, for the fingerprint and the kept values."""
    state = patcher.model.state_dict()
    keys = sorted(k for k in state if k.startswith("diffusion_model."))
    if not keys:
        raise errors.InvalidInput("this MODEL has no diffusion_model weights to fingerprint")
    step = max(1, len(keys) // SAMPLED_TENSORS)
    return state, keys, keys[::step][:SAMPLED_TENSORS]


def weights_fingerprint(patcher, weights=None) -> str:
    state, keys, sampled = weights or _weights(patcher)
    digest = hashlib.sha256()
    for k in keys:
        digest.update(f"{k}|{tuple(state[k].shape)}|{state[k].dtype}\n".encode())
    for k in sampled:
        values = _base_weight(patcher, k, state[k])
        digest.update(b"no values" if values is None else _sample_values(values))
    return digest.hexdigest()


def weight_sample(patcher, weights=None) -> WeightSample | None:
    """A few base weight values with their dtypes and the layout (names and shapes);
    None where a sampled tensor is not a plain float tensor (GGUF's quantized ones)."""
    state, keys, sampled = weights or _weights(patcher)
    layout = hashlib.sha256()
    for k in keys:
        layout.update(f"{k}|{tuple(state[k].shape)}\n".encode())
    dtypes, values = [], []
    for k in sampled:
        tensor = _base_weight(patcher, k, state[k])
        dtype = str(getattr(tensor, "dtype", "")).removeprefix("torch.")
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter) or dtype not in MANTISSA_BITS:
            return None
        row = _sampled(tensor, KEPT_VALUES_PER_TENSOR)
        if not torch.isfinite(row).all():
            return None
        dtypes.append(dtype)
        values.append(tuple(row.tolist()))
    return WeightSample(layout.hexdigest(), tuple(dtypes), tuple(values))


def weight_patches(patcher) -> dict[str, list]:
    """The diffusion model's weight patches on the MODEL (LoRA, merges), by weight name."""
    patches = getattr(patcher, "patches", None) or {}
    return {k: v for k, v in patches.items() if k.startswith(PATCHED_PREFIX) and v}


def patches_fingerprint(patcher) -> str | None:
    """sha256 of every weight patch (weight name, strengths, offset, function, the
    type, shape and sampled values of its tensors); None without patches."""
    patches = weight_patches(patcher)
    if not patches:
        return None
    digest = hashlib.sha256()
    for key in sorted(patches):
        digest.update(f"{key}\n".encode())
        for patch in patches[key]:
            _hash_patch_part(digest, patch)
    return digest.hexdigest()


def checkpoint_key(patcher, label: str | None = None, with_patches: bool = True) -> CheckpointKey:
    """The key calibrations are stored and found by. A label replaces the weights;
    `with_patches` False: the key of the checkpoint without its weight patches."""
    model = patcher.model
    latent_format = type(model.latent_format).__name__
    model_class = type(model).__name__
    if model_class == "BaseModel":  # SD1.x/2.x use the base class; the config says which
        model_class = type(model.model_config).__name__
    label = (label or "").strip() or None
    weights = _weights(patcher)
    fingerprint = weights_fingerprint(patcher, weights)
    patched = patches_fingerprint(patcher) if with_patches and label is None else None
    if patched is not None:
        fingerprint = hashlib.sha256(f"{fingerprint}|patches|{patched}".encode()).hexdigest()
    # only the plain checkpoint's values are kept: a LoRA'd one is another denoiser
    kept = weight_sample(patcher, weights) if label is None and patched is None else None
    return CheckpointKey(fingerprint, model_class, latent_format, label, kept)


def _hash_patch_part(digest, part) -> None:
    """Hash a weight patch's tuple: numbers, strings, tensors, nested tuples/lists/dicts
    and weight adapter objects (ComfyUI 2025+: `.weights` holds the tensors)."""
    if isinstance(part, torch.Tensor):
        shape = tuple(getattr(part, "tensor_shape", part.shape))  # GGUF keeps the real shape
        digest.update(f"T{shape}|{part.dtype}|".encode())
        digest.update(_sample_values(part, PATCH_VALUES_PER_TENSOR))
    elif isinstance(part, (list, tuple)):
        digest.update(f"[{len(part)}|".encode())
        for item in part:
            _hash_patch_part(digest, item)
    elif isinstance(part, dict):
        for k in sorted(part, key=str):
            digest.update(f"{k}:".encode())
            _hash_patch_part(digest, part[k])
    elif part is None or isinstance(part, (bool, int, float, str)):
        digest.update(f"{part!r}|".encode())
    elif callable(part) and not hasattr(part, "weights"):
        digest.update(f"fn:{getattr(part, '__qualname__', type(part).__name__)}|".encode())
    else:
        digest.update(f"{type(part).__name__}|".encode())
        _hash_patch_part(digest, getattr(part, "weights", None))


def _base_weight(patcher, key: str, state: torch.Tensor) -> torch.Tensor | None:
    """The weight without patches: ComfyUI's backup while patched, else the state
    dict's tensor, else the module's own (loaders such as ComfyUI-GGUF give a state
    dict of empty `meta` placeholders, plus keys that are no weight, for memory
    estimates); None where there are no values."""
    backup = getattr(patcher, "backup", {}).get(key)
    if backup is not None:
        return backup.weight
    if not state.is_meta:
        return state
    live = patcher.model
    for part in key.split("."):
        live = getattr(live, part, None)
    if not isinstance(live, torch.Tensor) or live.is_meta:
        return None
    return live


def _sampled(tensor: torch.Tensor, count: int) -> torch.Tensor:
    """`count` evenly strided values as float32 on the CPU."""
    # a plain tensor view: subclasses (GGUF's quantized GGMLTensor) redefine shape, to()
    flat = tensor.detach().as_subclass(torch.Tensor).reshape(-1)
    if flat.numel() > count:
        index = torch.linspace(0, flat.numel() - 1, count).round().long()
        flat = flat[index.to(flat.device)]
    return flat.to(device="cpu", dtype=torch.float32).contiguous()


def _sample_values(tensor: torch.Tensor, count: int = VALUES_PER_TENSOR) -> bytes:
    return _sampled(tensor, count).numpy().tobytes()

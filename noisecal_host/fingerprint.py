"""Checkpoint identity from a MODEL: ComfyUI's MODEL carries no file name.

The fingerprint hashes the diffusion model's BASE weights: every key's name,
shape and dtype, plus a strided sample of the values of a few tensors. Cheap
(a few thousand numbers), stable across runs and processes (sha256 of fixed
bytes), and different for different weights. LoRA and other weight patches
registered on the ModelPatcher do not change it: they are not applied until
sampling, and while applied ComfyUI keeps the original in `patcher.backup`,
which is what we read. So one calibration serves a checkpoint with any LoRA.
"""

from __future__ import annotations

import hashlib

import torch

from ..noisecal import errors
from ..noisecal.checkpoint_key import CheckpointKey

SAMPLED_TENSORS = 8
VALUES_PER_TENSOR = 1024


def weights_fingerprint(patcher) -> str:
    state = patcher.model.state_dict()
    keys = sorted(k for k in state if k.startswith("diffusion_model."))
    if not keys:
        raise errors.InvalidInput("this MODEL has no diffusion_model weights to fingerprint")
    digest = hashlib.sha256()
    for k in keys:
        digest.update(f"{k}|{tuple(state[k].shape)}|{state[k].dtype}\n".encode())
    step = max(1, len(keys) // SAMPLED_TENSORS)
    for k in keys[::step][:SAMPLED_TENSORS]:
        digest.update(_sample_values(_base_weight(patcher, k, state[k])))
    return digest.hexdigest()


def checkpoint_key(patcher, label: str | None = None) -> CheckpointKey:
    model = patcher.model
    latent_format = type(model.latent_format).__name__
    model_class = type(model).__name__
    if model_class == "BaseModel":  # SD1.x/2.x use the base class; the config says which
        model_class = type(model.model_config).__name__
    label = (label or "").strip() or None
    return CheckpointKey(weights_fingerprint(patcher), model_class, latent_format, label)


def _base_weight(patcher, key: str, live: torch.Tensor) -> torch.Tensor:
    backup = getattr(patcher, "backup", {}).get(key)
    return backup.weight if backup is not None else live


def _sample_values(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().reshape(-1)
    if flat.numel() > VALUES_PER_TENSOR:
        index = torch.linspace(0, flat.numel() - 1, VALUES_PER_TENSOR).round().long()
        flat = flat[index.to(flat.device)]
    return flat.to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes()

"""The pack's own small networks (models/reference/): loadable without downloading
weights, with what their sidecars say about them.

Each `<name>.safetensors` has a `<name>.json` sidecar; its `native_resolution`
(latent pixels per side the network was trained at) is recorded on the loaded
MODEL (self_calibration.NATIVE_OPTION), so the Calibrate node generates there.
The dead-leaves networks' latents are an exact 2x2 space-to-depth of a 4-channel
image (noisecal.testing.dead_leaves): `to_image` turns them back into pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..noisecal.errors import InvalidInput
from ..noisecal.testing import dead_leaves
from .self_calibration import NATIVE_OPTION, PIXELS_PER_LATENT

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "models" / "reference"


def names() -> list[str]:
    """File names of the reference networks present (those with a sidecar)."""
    if not REFERENCE_DIR.is_dir():
        return []
    files = REFERENCE_DIR.glob("*.safetensors")
    return sorted(p.name for p in files if p.with_suffix(".json").is_file())


def path_of(name: str) -> Path:
    """The file of a listed reference network; anything else is refused."""
    if name not in names():
        listed = ", ".join(names()) or "none (a registry install may lack them)"
        raise InvalidInput(f"model_name: {name!r} is not a reference network here: {listed}")
    return REFERENCE_DIR / name


def sidecar(name: str) -> dict:
    """What the network's .json sidecar says about it."""
    return json.loads(path_of(name).with_suffix(".json").read_text(encoding="utf-8"))


def load(name: str):
    """The network as ComfyUI's diffusion-model loader gives it, with its trained
    size recorded for the Calibrate node."""
    import comfy.sd

    model = comfy.sd.load_diffusion_model(str(path_of(name)))
    side = int(sidecar(name)["native_resolution"]) * PIXELS_PER_LATENT
    model.model_options[NATIVE_OPTION] = side
    return model


def to_image(samples: torch.Tensor) -> torch.Tensor:
    """A dead-leaves network's LATENT -> IMAGE [B, 2h, 2w, 3] in [0, 1]."""
    import comfy.latent_formats

    if samples.ndim != 4 or samples.shape[1] != 16:
        raise InvalidInput(
            f"samples: a reference network's latents are [batch, 16, height, width], got "
            f"{list(samples.shape)}"
        )
    inside = comfy.latent_formats.SD3().process_in(samples.float())  # the model's space
    pixels = dead_leaves.to_image(inside)[:, :3]  # 4 image channels: show the first 3 as RGB
    return pixels.clamp(0, 1).movedim(1, -1).cpu()

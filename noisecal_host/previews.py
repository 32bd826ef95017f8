"""Images shown in a node itself (ComfyUI's `ui` images), as PreviewImage shows them."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger("noise_calibration")


def temp_previews(rgb: np.ndarray, prefix: str = "noise_calibration") -> list[dict]:
    """Save an HxWx3 uint8 image to ComfyUI's temp folder and return the `ui` entries
    that show it on the node; [] outside a ComfyUI with a temp folder."""
    try:
        import folder_paths
    except ImportError:
        return []
    folder = Path(folder_paths.get_temp_directory())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}.png"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / name, compress_level=4)
    except OSError as exc:  # a preview is never worth failing the run
        log.warning("could not save the calibration plot preview: %s", exc)
        return []
    return [{"filename": name, "subfolder": "", "type": "temp"}]

"""The demo's pictures: a row of samples per method, labelled."""

from __future__ import annotations

import torch

# the dead-leaves demo's picture: a row per method, GRID_COLUMNS samples each, every
# 2n-pixel image scaled by GRID_SCALE, GRID_GAP pixels between tiles, labels on the left
GRID_ROWS = ("plain", "NoiseShift", "Apply", "native", "true")
GRID_COLUMNS = 8
GRID_SCALE = 3
GRID_GAP = 4
GRID_LABEL = 132
GRID_TITLE = 24
# the Gaussian reference's picture: latent pixels (16 at M/2) scaled up more
REFERENCE_GRID_SCALE = 5


def grid_size(rows: int, columns: int, pixels: int, scale: int = GRID_SCALE) -> tuple[int, int]:
    """(width, height) of a demo's picture for images of `pixels` pixels scaled by `scale`."""
    tile = pixels * scale
    return (
        GRID_LABEL + columns * tile + (columns + 1) * GRID_GAP,
        GRID_TITLE + rows * tile + (rows + 1) * GRID_GAP,
    )


def sample_grid(rows: dict, title: str, scale: int = GRID_SCALE):
    """rows: label -> images [k, C >= 3, p, p] in [0, 1]: an RGB uint8 picture, a row per
    label (the first three channels, each pixel `scale` x `scale`), the label on the left."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    columns = max(len(images) for images in rows.values())
    pixels = next(iter(rows.values())).shape[-1]
    tile = pixels * scale
    width, height = grid_size(len(rows), columns, pixels, scale)
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for r, images in enumerate(rows.values()):
        top = GRID_TITLE + GRID_GAP + r * (tile + GRID_GAP)
        for c, image in enumerate(images):
            rgb = image[:3].clamp(0, 1).permute(1, 2, 0).numpy()
            rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
            left = GRID_LABEL + GRID_GAP + c * (tile + GRID_GAP)
            canvas[top : top + tile, left : left + tile] = (rgb * 255).round().astype(np.uint8)
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=13)
    draw.text((GRID_GAP, 5), title, fill=(0, 0, 0), font=font)
    for r, label in enumerate(rows):
        top = GRID_TITLE + GRID_GAP + r * (tile + GRID_GAP)
        draw.multiline_text((GRID_GAP, top + tile // 2 - 14), label, fill=(0, 0, 0), font=font)
    return np.asarray(picture)


def field_images(fields: torch.Tensor, scale: float) -> torch.Tensor:
    """Field samples [k, C, n, n] as pictures: the first three channels, 0 at mid-grey,
    +-2 standard deviations of the true field (`scale`) at the ends."""
    return (0.5 + fields.float()[:, :3] / (4 * scale)).clamp(0, 1)

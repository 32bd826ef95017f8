"""Bring a batch of images or latents to a target size: center crop, antialiased resize.

Used to take self-generated calibration data from the model's native
resolution to the target one. On pixels (a VAE decodes, this resizes, the
VAE encodes again) this is how a photo becomes a smaller photo. On latents
(models without a VAE) it is an approximation, see `resize_latents`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def center_crop_resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[n, c, h, w] -> [n, c, height, width]: the largest centered crop of the target's
    aspect ratio, resized with antialiasing (bicubic; area-weighted when shrinking)."""
    if x.ndim != 4:
        raise ValueError(f"expected a batch [n, c, h, w], got shape {list(x.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive, got {height}x{width}")
    h, w = x.shape[-2:]
    # crop to the target aspect ratio first, so the resize never distorts
    crop_h, crop_w = _aspect_crop(h, w, height, width)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    x = x[..., top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) == (height, width):
        return x.clone()
    out = F.interpolate(
        x.to(torch.float32),
        size=(height, width),
        mode="bicubic",
        antialias=True,
        align_corners=False,
    )
    return out.to(x.dtype)


def resize_latents(latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Latents shrunk by area averaging (after the same center crop), then each
    channel's spread around its mean set back to the input batch's: shrinking
    averages fine detail away, while an image VAE's latents keep about the same
    per-channel statistics at every image size. An approximation of encoding
    resized images, for models without a VAE. Area averaging, not the bicubic
    kernel used on pixels: on the testbed it kept more of the band's top and
    the calibration from it closed more of the gap (docs/results-self-calibration.md)."""
    h, w = latents.shape[-2:]
    if height > h or width > w:  # enlarging: nothing to average
        resized = center_crop_resize(latents, height, width).to(torch.float32)
    else:
        cropped = center_crop_resize(latents, *_aspect_crop(h, w, height, width))
        resized = F.interpolate(cropped.to(torch.float32), size=(height, width), mode="area")
    source = latents.to(torch.float32)
    dims = (0, 2, 3)
    mean = resized.mean(dim=dims, keepdim=True)
    spread = resized.std(dim=dims, keepdim=True).clamp_min(1e-12)
    target = source.std(dim=dims, keepdim=True)
    return ((resized - mean) * (target / spread) + source.mean(dim=dims, keepdim=True)).to(
        latents.dtype
    )


def _aspect_crop(h: int, w: int, height: int, width: int) -> tuple[int, int]:
    """The largest (h, w) inside the input with the target's aspect ratio."""
    if h * width > w * height:
        return max(1, round(w * height / width)), w
    return h, max(1, round(h * width / height))

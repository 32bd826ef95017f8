"""Bring a batch of images or latents to a target size: center crop, antialiased resize.

Used to take self-generated calibration data from the model's native
resolution to the target one. On pixels (a VAE decodes, this resizes, the
VAE encodes again) this is how a photo becomes a smaller photo. On latents
(models without a VAE) it is an approximation, see `resize_latents`.
"""

from __future__ import annotations

import math

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
    """Latents shrunk by an ideal low-pass (``band_limit``, after the same center
    crop), then each channel's spread around its mean set back to the input
    batch's: shrinking removes the detail above the new band, while an image
    VAE's latents keep about the same per-channel statistics at every image
    size. An approximation of encoding resized images, for models without a
    VAE. The band limit keeps the top of the band that area averaging and the
    bicubic kernel attenuate (to half the power at the new Nyquist frequency
    for a 2x shrink); on the testbed the calibration from it closed more of
    the gap (docs/results-self-calibration.md)."""
    h, w = latents.shape[-2:]
    if height > h or width > w:  # enlarging: nothing to remove
        resized = center_crop_resize(latents, height, width).to(torch.float32)
    else:
        cropped = center_crop_resize(latents, *_aspect_crop(h, w, height, width))
        resized = band_limit(cropped.to(torch.float32), height, width)
    source = latents.to(torch.float32)
    dims = (0, 2, 3)
    mean = resized.mean(dim=dims, keepdim=True)
    spread = resized.std(dim=dims, keepdim=True).clamp_min(1e-12)
    target = source.std(dim=dims, keepdim=True)
    return ((resized - mean) * (target / spread) + source.mean(dim=dims, keepdim=True)).to(
        latents.dtype
    )


def band_limit(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[n, c, h, w] -> [n, c, height, width] (not larger): the ideal low-pass. The
    DCT-II coefficients below the new size are kept as they are and the rest
    dropped, so every frequency under the new Nyquist keeps its amplitude; the
    DCT's mirrored boundary keeps the edges from wrapping into each other, as a
    plain Fourier crop of a non-periodic image would."""
    from scipy.fft import dctn, idctn  # a ComfyUI requirement

    h, w = x.shape[-2:]
    if height > h or width > w:
        raise ValueError(f"band_limit shrinks only: {h}x{w} -> {height}x{width}")
    coefficients = dctn(x.detach().cpu().double().numpy(), axes=(-2, -1), norm="ortho")
    out = idctn(coefficients[..., :height, :width], axes=(-2, -1), norm="ortho")
    out *= math.sqrt(height * width / (h * w))  # ortho bases of two lengths
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)


def _aspect_crop(h: int, w: int, height: int, width: int) -> tuple[int, int]:
    """The largest (h, w) inside the input with the target's aspect ratio."""
    if h * width > w * height:
        return max(1, round(w * height / width)), w
    return h, max(1, round(h * width / height))

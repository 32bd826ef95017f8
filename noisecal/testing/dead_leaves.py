"""Dead-leaves testbed: non-Gaussian image data that exists at every resolution.

The dead-leaves model (Matheron; Lee, Mumford & Huang 2001) is the classic
model of natural-image statistics: opaque disks of random color fall on the
image and occlude each other. It has what a Gaussian field lacks: sharp edges,
occlusion, flat regions, heavy-tailed gradients. Here:

- A scene is drawn in continuous image coordinates ``[0, 1]^2`` and does not
  depend on the resolution it is rendered at: the same seed rendered at 2N
  and downsampled 2x gives (up to antialiasing) the same picture as rendered
  at N, so true samples exist at every N.
- ``disks`` disks per scene (a fixed count, default 1500), front to back;
  centers uniform in ``[-r_max, 1 + r_max]^2`` (every disk that can touch the
  image), radii with density proportional to ``r^-3`` on ``[r_min, r_max]``
  (fractions of the image side; scale invariant), colors i.i.d. from
  ``sample_colors``. The fixed count is not "painted until covered": the
  expected uncovered fraction is ``exp(-disks * E[pi r^2] / (1 + 2 r_max)^2)``
  (``expected_uncovered``; 3e-4 at the defaults), and what stays uncovered
  shows one more leaf of random color behind all disks (the background leaf),
  so every pixel has a color from the same distribution.
- Antialiasing by supersampling: each pixel is the mean of ``supersample^2``
  point samples on a regular subgrid (4 x 4 by default), each of which sees
  the frontmost disk containing it. The frontmost disk is found with a depth
  buffer (``scatter_reduce`` amin of the disk index over each disk's bounding
  window), which is order independent and vectorized over disks and samples.
- ``channels`` image channels (4). ``to_latent`` is a 2x2 pixel-unshuffle
  (space-to-depth) to 16 channels at half the side, as SD3's latent format
  needs, followed by a fixed per-channel normalization; ``to_image`` inverts
  it exactly. The constants (``LATENT_MEAN``, ``LATENT_STD``) were measured
  once at latent M = 32 (64 px) on 4096 samples of seed 0 and are fixed here;
  a test recomputes them.

Host-free: torch and the standard library only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "DeadLeaves",
    "sample_radii",
    "sample_colors",
    "expected_uncovered",
    "render",
    "sample_images",
    "sample_latents",
    "to_latent",
    "to_image",
    "downsample",
    "LATENT_MEAN",
    "LATENT_STD",
    "NORMALIZATION_RES",
]

NORMALIZATION_RES = 32  # latent side at which LATENT_MEAN / LATENT_STD were measured
# per image channel, measured at 64 px on 4096 samples of seed 0 (see measure_normalization)
_CHANNEL_MEAN = (0.4998, 0.4988, 0.5001, 0.4998)
_CHANNEL_STD = (0.2709, 0.1911, 0.1917, 0.1919)
# pixel_unshuffle puts image channel c at latent channels 4c .. 4c + 3
LATENT_MEAN = tuple(m for m in _CHANNEL_MEAN for _ in range(4))
LATENT_STD = tuple(s for s in _CHANNEL_STD for _ in range(4))

_BLOCK = 64  # samples drawn and rendered per block (fixed: part of the seeded stream)
_WINDOW_BUDGET = 1 << 22  # subpixels per scatter chunk


@dataclass(frozen=True)
class DeadLeaves:
    """Parameters of the scene distribution (all lengths are fractions of the image side)."""

    r_min: float = 0.03
    r_max: float = 0.3
    disks: int = 1500
    channels: int = 4
    supersample: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.r_min < self.r_max:
            raise ValueError(f"need 0 < r_min < r_max, got {self.r_min}, {self.r_max}")
        if self.disks < 1 or self.channels < 1 or self.supersample < 1:
            raise ValueError("disks, channels and supersample must be >= 1")


def sample_radii(params: DeadLeaves, shape, gen: torch.Generator) -> torch.Tensor:
    """Radii with density proportional to r^-3 on [r_min, r_max] (inverse CDF)."""
    u = torch.rand(shape, generator=gen, dtype=torch.float64)
    a, b = params.r_min**-2, params.r_max**-2
    return (a - u * (a - b)) ** -0.5


def radius_cdf(params: DeadLeaves, r: torch.Tensor) -> torch.Tensor:
    a, b = params.r_min**-2, params.r_max**-2
    r = torch.as_tensor(r, dtype=torch.float64).clamp(params.r_min, params.r_max)
    return (a - r**-2) / (a - b)


def sample_colors(channels: int, shape, gen: torch.Generator) -> torch.Tensor:
    """Colors in [0, 1]: channel 0 a luminance L ~ U(0, 1), the others (L + U(0, 1)) / 2.

    Channels are correlated (as an image's are through luminance); shape
    ``[*shape, channels]``.
    """
    u = torch.rand((*shape, channels), generator=gen, dtype=torch.float64)
    lum = u[..., :1]
    return torch.cat([lum, 0.5 * (lum + u[..., 1:])], dim=-1)


def expected_uncovered(params: DeadLeaves) -> float:
    """Expected fraction of the image no disk covers (the background leaf shows there)."""
    a, b = params.r_min, params.r_max
    mean_r2 = math.log(b / a) / (0.5 * (a**-2 - b**-2))
    per_disk = math.pi * mean_r2 / (1 + 2 * b) ** 2
    return math.exp(-params.disks * per_disk)


def _draw_scene(params: DeadLeaves, count: int, gen: torch.Generator):
    k = params.disks
    centers = torch.rand((count, k, 2), generator=gen, dtype=torch.float64)
    centers = centers * (1 + 2 * params.r_max) - params.r_max
    radii = sample_radii(params, (count, k), gen)
    colors = sample_colors(params.channels, (count, k + 1), gen)  # last: background leaf
    return centers, radii, colors


def _depth_buffer(centers, radii, k: int, grid: int) -> torch.Tensor:
    """Index of the frontmost disk at each subpixel center, k where none: [B, grid, grid]."""
    b = centers.shape[0]
    cx = (centers[..., 0] * grid).reshape(-1)
    cy = (centers[..., 1] * grid).reshape(-1)
    rg = (radii * grid).reshape(-1)
    depth = torch.arange(k, dtype=torch.int64).repeat(b)
    sample = torch.arange(b, dtype=torch.int64).repeat_interleave(k)
    x0 = torch.floor(cx - rg).to(torch.int64)
    y0 = torch.floor(cy - rg).to(torch.int64)
    side = (torch.floor(cx + rg).to(torch.int64) - x0 + 1).clamp(min=1)
    side = torch.maximum(side, torch.floor(cy + rg).to(torch.int64) - y0 + 1)
    # skip disks whose window misses the grid
    hit = (x0 < grid) & (y0 < grid) & (x0 + side > 0) & (y0 + side > 0)
    order = torch.argsort(side[hit])
    idx_all = torch.nonzero(hit).squeeze(1)[order]
    buf = torch.full((b * grid * grid,), k, dtype=torch.int64)
    sides, counts = torch.unique_consecutive(side[idx_all], return_counts=True)
    chunks = []
    start = 0
    for w, c in zip(sides.tolist(), counts.tolist(), strict=True):  # one window side per chunk
        step = max(1, _WINDOW_BUDGET // (w * w))
        for i in range(start, start + c, step):
            chunks.append((w, idx_all[i : min(i + step, start + c)]))
        start += c
    for w, sel in chunks:
        offs = torch.arange(w, dtype=torch.int64)
        xs = x0[sel, None] + offs  # [n, w]
        ys = y0[sel, None] + offs
        dx2 = (xs.to(torch.float64) + 0.5 - cx[sel, None]) ** 2
        dy2 = (ys.to(torch.float64) + 0.5 - cy[sel, None]) ** 2
        inside = dy2[:, :, None] + dx2[:, None, :] <= (rg[sel] ** 2)[:, None, None]
        valid = ((xs >= 0) & (xs < grid))[:, None, :] & ((ys >= 0) & (ys < grid))[:, :, None]
        inside &= valid
        lin = sample[sel, None, None] * (grid * grid) + ys[:, :, None] * grid + xs[:, None, :]
        lin = torch.where(valid, lin, 0)
        val = torch.where(inside, depth[sel, None, None], k)
        buf.scatter_reduce_(0, lin.reshape(-1), val.reshape(-1), reduce="amin")
    return buf.view(b, grid, grid)


def _render_block(params: DeadLeaves, centers, radii, colors, pixels: int, return_depth: bool):
    s = params.supersample
    grid = pixels * s
    depth = _depth_buffer(centers, radii, params.disks, grid)  # [B, g, g]
    b = depth.shape[0]
    c = params.channels
    img = torch.gather(colors.float(), 1, depth.view(b, -1, 1).expand(-1, -1, c))
    img = img.view(b, grid, grid, c).permute(0, 3, 1, 2)
    if s > 1:
        img = torch.nn.functional.avg_pool2d(img, s)
    return (img.contiguous(), depth) if return_depth else (img.contiguous(), None)


def render(
    params: DeadLeaves,
    count: int,
    pixels: int,
    seed: int,
    return_depth: bool = False,
):
    """``count`` images [count, channels, pixels, pixels] (float32, values in [0, 1]).

    The scenes depend on ``seed`` and ``count``'s block structure only, never on
    ``pixels``: the same seed at another resolution renders the same scenes.
    With ``return_depth`` also the supersampled depth buffers (disk index per
    subpixel, ``params.disks`` where only the background leaf shows).
    """
    if count < 0 or pixels < 1:
        raise ValueError(f"bad count {count} or pixels {pixels}")
    gen = torch.Generator().manual_seed(int(seed))
    images, depths = [], []
    for start in range(0, count, _BLOCK):
        n = min(_BLOCK, count - start)
        centers, radii, colors = _draw_scene(params, _BLOCK, gen)  # always a full block
        img, depth = _render_block(params, centers[:n], radii[:n], colors[:n], pixels, return_depth)
        images.append(img)
        if return_depth:
            depths.append(depth)
    out = (
        torch.cat(images)
        if images
        else torch.zeros(0, params.channels, pixels, pixels, dtype=torch.float32)
    )
    if return_depth:
        return out, (torch.cat(depths) if depths else None)
    return out


def sample_images(count: int, pixels: int, seed: int, params: DeadLeaves | None = None):
    return render(params or DeadLeaves(), count, pixels, seed)


def _stats(channels: int, device=None, dtype=torch.float32):
    mean = torch.tensor(LATENT_MEAN, dtype=dtype, device=device).view(1, -1, 1, 1)
    std = torch.tensor(LATENT_STD, dtype=dtype, device=device).view(1, -1, 1, 1)
    if mean.shape[1] != 4 * channels:
        raise ValueError(f"normalization is for 4 image channels, got {channels}")
    return mean, std


def to_latent(images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """[B, 4, 2n, 2n] images -> [B, 16, n, n] latents (2x2 space-to-depth, then normalized)."""
    if images.ndim != 4 or images.shape[-1] % 2 or images.shape[-2] % 2:
        raise ValueError(f"expected [B, C, 2n, 2n] images, got {tuple(images.shape)}")
    lat = torch.nn.functional.pixel_unshuffle(images, 2)
    if normalize:
        mean, std = _stats(images.shape[1], images.device, lat.dtype)
        lat = (lat - mean) / std
    return lat


def to_image(latents: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Exact inverse of ``to_latent``: [B, 16, n, n] -> [B, 4, 2n, 2n]."""
    if latents.ndim != 4 or latents.shape[1] % 4:
        raise ValueError(f"expected [B, 4C, n, n] latents, got {tuple(latents.shape)}")
    if normalize:
        mean, std = _stats(latents.shape[1] // 4, latents.device, latents.dtype)
        latents = latents * std + mean
    return torch.nn.functional.pixel_shuffle(latents, 2)


def sample_latents(count: int, res: int, seed: int, params: DeadLeaves | None = None):
    """``count`` normalized latents [count, 16, res, res] (images of 2 * res pixels)."""
    return to_latent(render(params or DeadLeaves(), count, 2 * res, seed))


def downsample(images: torch.Tensor, factor: int = 2) -> torch.Tensor:
    """Box-filter downsampling (the antialiasing filter ``render`` itself uses)."""
    return torch.nn.functional.avg_pool2d(images, factor)


def measure_normalization(count: int = 4096, seed: int = 0, params: DeadLeaves | None = None):
    """Per-image-channel mean and std at NORMALIZATION_RES (how the constants were made)."""
    img = render(params or DeadLeaves(), count, 2 * NORMALIZATION_RES, seed).double()
    flat = img.transpose(0, 1).reshape(img.shape[1], -1)
    return flat.mean(dim=1).tolist(), flat.std(dim=1).tolist()

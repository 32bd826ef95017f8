"""The dead-leaves testbed (noisecal/testing/dead_leaves.py): seeded, resolution exact,
covered, with the r^-3 radius law, and an exactly invertible 16-channel latent."""

from __future__ import annotations

import math

import pytest
import torch

from noise_calibration.noisecal.testing import dead_leaves as dl

P = dl.DeadLeaves()


def _edge_stats(x: torch.Tensor) -> tuple[float, float]:
    dx = (x[..., 1:] - x[..., :-1]).abs()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs()
    d = torch.cat([dx.flatten(), dy.flatten()])
    return float(d.mean()), float((d > 0.05).float().mean())


def test_same_seed_same_images_other_seed_other_images():
    a = dl.render(P, 5, 32, seed=3)
    b = dl.render(P, 5, 32, seed=3)
    c = dl.render(P, 5, 32, seed=4)
    assert a.shape == (5, 4, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.05
    # a sample does not depend on how many were asked for (seeded blocks)
    assert torch.equal(dl.render(P, 2, 32, seed=3), a[:2])
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_latent_is_an_exact_inverse_pair():
    img = dl.render(P, 3, 32, seed=1)
    lat = dl.to_latent(img)
    assert lat.shape == (3, 16, 16, 16)
    assert torch.allclose(dl.to_image(lat), img, atol=1e-6)
    z = torch.randn(2, 16, 8, 8)
    assert torch.allclose(dl.to_latent(dl.to_image(z)), z, atol=1e-5)
    # without normalization it is a pure permutation of the pixels
    raw = dl.to_latent(img, normalize=False)
    assert torch.equal(torch.sort(raw.flatten())[0], torch.sort(img.flatten())[0])
    assert torch.equal(dl.to_image(raw, normalize=False), img)
    with pytest.raises(ValueError):
        dl.to_latent(torch.zeros(1, 4, 7, 8))


def test_normalization_constants_are_the_measured_ones():
    """Recomputed on other scenes (seed 9, 256 samples) at the normalization resolution."""
    mean, std = dl.measure_normalization(count=256, seed=9)
    assert mean == pytest.approx(list(dl._CHANNEL_MEAN), abs=0.03)
    assert std == pytest.approx(list(dl._CHANNEL_STD), abs=0.015)
    lat = dl.sample_latents(64, dl.NORMALIZATION_RES, seed=10)
    assert abs(float(lat.mean())) < 0.15 and 0.85 < float(lat.std()) < 1.15


def test_the_same_scene_at_2n_downsampled_is_the_scene_at_n():
    """Scenes live in continuous coordinates: only the antialiasing differs."""
    hi = dl.render(P, 16, 64, seed=5)
    lo = dl.render(P, 16, 32, seed=5)
    diff = (dl.downsample(hi) - lo).abs()
    assert float(diff.mean()) < 0.015  # images have std ~0.2
    # but not the same as another scene
    other = dl.render(P, 16, 32, seed=6)
    assert float((other - lo).abs().mean()) > 0.1


def test_statistics_at_n_match_independent_samples_rendered_at_2n_and_downsampled():
    lo = dl.render(P, 192, 32, seed=11)
    hi = dl.downsample(dl.render(P, 192, 64, seed=12))
    m_lo, m_hi = lo.mean(dim=(0, 2, 3)), hi.mean(dim=(0, 2, 3))
    s_lo, s_hi = lo.std(dim=(0, 2, 3)), hi.std(dim=(0, 2, 3))
    assert torch.allclose(m_lo, m_hi, atol=0.02)
    assert torch.allclose(s_lo, s_hi, rtol=0.05)
    e_lo, e_hi = _edge_stats(lo), _edge_stats(hi)
    assert e_lo[0] == pytest.approx(e_hi[0], rel=0.05)  # mean |gradient|
    assert e_lo[1] == pytest.approx(e_hi[1], rel=0.05)  # fraction of edge pixels
    # while a blurred set (2x box twice) is clearly told apart by the same statistics
    blurred = torch.nn.functional.interpolate(
        dl.downsample(lo), scale_factor=2, mode="bilinear", align_corners=False
    )
    assert _edge_stats(blurred)[0] < 0.8 * e_lo[0]


def test_coverage_follows_the_poisson_law_and_the_default_covers_almost_everything():
    few = dl.DeadLeaves(disks=60)
    _, depth = dl.render(few, 128, 32, seed=2, return_depth=True)
    uncovered = float((depth == few.disks).float().mean())
    assert uncovered == pytest.approx(dl.expected_uncovered(few), rel=0.05)
    _, depth = dl.render(P, 32, 32, seed=2, return_depth=True)
    assert dl.expected_uncovered(P) < 1e-3
    assert float((depth == P.disks).float().mean()) < 3e-3
    # the image shows many distinct leaves, small ones included
    visible = [int(torch.unique(d).numel()) for d in depth]
    assert min(visible) > 30


def test_radii_follow_the_r_minus_3_law():
    gen = torch.Generator().manual_seed(0)
    r = dl.sample_radii(P, (200_000,), gen)
    assert float(r.min()) >= P.r_min and float(r.max()) <= P.r_max
    # Kolmogorov-Smirnov against the r^-3 CDF
    rs = torch.sort(r)[0]
    empirical = torch.arange(1, rs.numel() + 1, dtype=torch.float64) / rs.numel()
    ks = float((empirical - dl.radius_cdf(P, rs)).abs().max())
    assert ks < 1.63 / math.sqrt(rs.numel())  # 1% level
    # scale invariance: the count in [a, 2a] is 4x the count in [2a, 4a]
    a = P.r_min
    n1 = int(((r >= a) & (r < 2 * a)).sum())
    n2 = int(((r >= 2 * a) & (r < 4 * a)).sum())
    assert n1 / n2 == pytest.approx(4.0, rel=0.05)
    # a different law would fail: uniform radii
    uniform = P.r_min + (P.r_max - P.r_min) * torch.rand(
        200_000, generator=gen, dtype=torch.float64
    )
    us = torch.sort(uniform)[0]
    assert float((empirical - dl.radius_cdf(P, us)).abs().max()) > 0.1

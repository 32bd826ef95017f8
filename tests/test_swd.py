"""Metrics that are not the spectrum (noisecal/testing/swd.py): the multi-scale patch
sliced Wasserstein distance and the edge statistic, checked on known cases and on
dead-leaves sets (two true sets score near their floor, a blurred or noisy set far
above it)."""

from __future__ import annotations

import math

import pytest
import torch

from noise_calibration.noisecal.testing import dead_leaves as dl
from noise_calibration.noisecal.testing import swd


@pytest.fixture(scope="module")
def true_sets():
    p = dl.DeadLeaves()
    return dl.render(p, 96, 32, seed=21), dl.render(p, 96, 32, seed=22), dl.render(p, 96, 32, 23)


def _reconstruct(levels):
    x = levels[-1]
    for lap in reversed(levels[:-1]):
        x = lap + swd._up(x)
    return x


def test_laplacian_pyramid_levels_and_exact_reconstruction():
    x = torch.rand(3, 4, 32, 32, dtype=torch.float64)
    levels = swd.laplacian_pyramid(x, min_res=8)
    assert [lv.shape[-1] for lv in levels] == [32, 16, 8]
    assert torch.allclose(_reconstruct(levels), x, atol=1e-12)
    # a constant image has no band-pass content
    flat = swd.laplacian_pyramid(torch.full((1, 1, 32, 32), 0.3), min_res=16)
    assert float(flat[0].abs().max()) < 1e-12


def test_patches_are_taken_from_the_image():
    x = torch.arange(2 * 3 * 10 * 10, dtype=torch.float64).view(2, 3, 10, 10)
    p = swd.patch_descriptors(x, 5, torch.Generator().manual_seed(0))
    assert p.shape == (10, 3, 7, 7)
    for k in range(10):
        b = k // 5
        y0, x0 = divmod(int(p[k, 0, 0, 0] - x[b, 0, 0, 0]), 10)
        assert torch.equal(p[k], x[b, :, y0 : y0 + 7, x0 : x0 + 7])


def test_sliced_wasserstein_known_values():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(2000, 20, generator=gen, dtype=torch.float64)
    assert swd.sliced_wasserstein(a, a.clone(), 64, 2, gen) == 0.0
    # a shift by delta: every projection moves by |delta . d|; E|d_1| = sqrt(2 / (pi D)) approx
    delta = torch.full((20,), 0.5, dtype=torch.float64)
    got = swd.sliced_wasserstein(a + delta, a, 256, 4, gen)
    expected = float(delta.norm()) * math.sqrt(2 / (math.pi * 20))
    assert got == pytest.approx(expected, rel=0.1)


def test_wasserstein_1d_known_values():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(50_000, generator=gen, dtype=torch.float64)
    assert swd.wasserstein_1d(a + 0.25, a) == pytest.approx(0.25, abs=1e-9)
    # N(0, 1) vs N(0, 4): W1 = E|Z| = sqrt(2 / pi)
    assert swd.wasserstein_1d(2 * a, a) == pytest.approx(math.sqrt(2 / math.pi), rel=0.02)


def test_two_true_sets_score_near_their_floor_and_blur_or_noise_far_above(true_sets):
    a, b, c = true_sets
    floor = swd.patch_swd(a, b)["average"]
    again = swd.patch_swd(c, b)["average"]
    assert again == pytest.approx(floor, rel=0.5)  # the floor is a stable number
    blurred = swd._up(swd._down(a.double())).float()
    noisy = (a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    r_blur = swd.patch_swd(blurred, b)
    r_noise = swd.patch_swd(noisy, b)
    assert r_blur["average"] > 3 * floor
    # noise lives in the finest band, where the floor is smallest
    fine_floor = max(swd.patch_swd(a, b)["levels"][0], swd.patch_swd(c, b)["levels"][0])
    assert r_noise["levels"][0] > 3 * fine_floor
    # the finest level is where blur shows most
    assert r_blur["levels"][0] == max(r_blur["levels"])
    assert r_blur["resolutions"] == [32, 16]
    # Karras et al.'s own normalization hides a contrast change that ours sees
    low_contrast = 0.5 + 0.6 * (a - 0.5)
    ours = swd.patch_swd(low_contrast, b)["average"]
    theirs = swd.patch_swd(low_contrast, b, normalize="own")["average"]
    assert ours > 3 * floor and theirs < 2 * floor


def test_edge_distance_floor_and_departures(true_sets):
    a, b, c = true_sets

    def edge(x, y):
        return swd.edge_distance(x, y)["average"]

    # the floor of 96 scenes varies from set to set (a few large disks move it)
    floor = max(swd.noise_floor(edge, a, b), swd.noise_floor(edge, c, b))
    assert edge(a, a) == 0.0
    assert floor < 0.01
    blurred = swd._up(swd._down(a.double())).float()
    assert edge(blurred, b) > 5 * floor
    noisy = a + 0.1 * torch.randn(a.shape, generator=torch.Generator().manual_seed(4))
    assert edge(noisy, b) > 5 * floor
    with pytest.raises(ValueError):
        swd.noise_floor(swd.edge_distance, a, b[:10])

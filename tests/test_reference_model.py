"""The trained reference network (tools/train_reference.py) and the optimal loss it is held to.

The committed file loads through ComfyUI's own diffusion-model loader as SD3,
samples through ComfyUI's sampler, and its sidecar records a training loss
within 10% of the closed-form optimum, which is itself checked here against a
Monte-Carlo estimate with the exact posterior-mean velocity.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from noise_calibration.noisecal.testing.optimal_loss import (
    mmse_per_frequency,
    optimal_flow_loss,
    optimal_loss_at,
)
from noise_calibration.noisecal.testing.testbed import ExactDenoiser, FieldSpectrum, sample_field

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = ROOT / "models" / "reference"
MAX_BYTES = 8_000_000


# ----------------------------------------------------------------- optimal loss


def _exact_losses(spectrum, n, t, gen):
    """Per-sample flow-matching loss of the exact posterior-mean velocity."""
    x0 = sample_field(spectrum, n, t.numel(), gen).double()
    eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    tb = t.view(-1, 1, 1, 1)
    x_t = (1 - tb) * x0 + tb * eps
    v = ExactDenoiser(spectrum, n).velocity(x_t, t)
    return ((v - (eps - x0)) ** 2).flatten(1).mean(dim=1)


def test_mmse_formula_limits():
    p = torch.tensor([0.01, 1.0, 30.0], dtype=torch.float64)
    # t = 0: x_t = x0 is known, eps is not: error 1; t = 1: x_t = eps, x0 unknown: error P
    assert torch.allclose(mmse_per_frequency(p, 0.0), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(mmse_per_frequency(p, 1.0), p)
    # never above the variance of the target, never below zero
    t = torch.linspace(0, 1, 101, dtype=torch.float64)[:, None]
    m = mmse_per_frequency(p, t)
    assert (m >= 0).all() and (m <= 1 + p + 1e-12).all()


@pytest.mark.parametrize("n", [8, 16])
def test_optimal_loss_matches_monte_carlo_per_level(n):
    spectrum = FieldSpectrum(f0=3.0, alpha=2.5, channels=4)
    gen = torch.Generator().manual_seed(n)
    for level in (0.05, 0.3, 0.5, 0.7, 0.95):
        losses = _exact_losses(spectrum, n, torch.full((256,), level, dtype=torch.float64), gen)
        se = float(losses.std()) / math.sqrt(losses.numel())
        expected = float(optimal_loss_at(spectrum, n, level))
        assert abs(float(losses.mean()) - expected) < 4 * se + 1e-9, (n, level)


def test_optimal_flow_loss_matches_monte_carlo_logit_normal():
    spectrum = FieldSpectrum(f0=3.0, alpha=2.5, channels=4)
    gen = torch.Generator().manual_seed(7)
    t = torch.sigmoid(torch.randn(2048, generator=gen, dtype=torch.float64))
    losses = _exact_losses(spectrum, 16, t, gen)
    se = float(losses.std()) / math.sqrt(losses.numel())
    assert abs(float(losses.mean()) - optimal_flow_loss(spectrum, 16)) < 4 * se
    # the quadrature is converged: a coarser grid agrees to 1e-9
    assert optimal_flow_loss(spectrum, 16) == pytest.approx(
        optimal_flow_loss(spectrum, 16, nodes=801, z_max=8.0), abs=1e-9
    )


# ------------------------------------------------------------- reference model


@pytest.fixture(scope="module")
def reference():
    # the Gaussian-field network; the dead-leaves ones are tests/test_dead_leaves_networks.py's
    files = sorted(REFERENCE_DIR.glob("sd3_gaussian_field_*.safetensors"))
    assert len(files) == 1, f"expected one Gaussian reference network in {REFERENCE_DIR}: {files}"
    sidecar = json.loads(files[0].with_suffix(".json").read_text())
    return files[0], sidecar


@pytest.fixture(scope="module")
def loaded(reference, pack):
    import comfy.sd

    return comfy.sd.load_diffusion_model(str(reference[0]))


def test_sidecar_records_a_loss_within_10_percent_of_the_optimum(reference):
    path, side = reference
    assert side["file"] == path.name
    assert side["bytes"] == path.stat().st_size <= MAX_BYTES
    assert side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    for key in ("architecture", "data", "native_resolution", "training", "evaluation"):
        assert key in side
    train = side["training"]
    assert train["steps"] > 0 and isinstance(train["seed"], int)
    assert 0 < side["training_time_s"] <= 30 * 60
    # the optimum is the closed form for the recorded data, recomputed here
    spec = side["data"]["spectrum"]
    spectrum = FieldSpectrum(f0=spec["f0"], alpha=spec["alpha"], channels=spec["channels"])
    assert side["optimal_loss"] == pytest.approx(
        optimal_flow_loss(spectrum, side["native_resolution"]), rel=1e-9
    )
    assert math.isfinite(side["final_loss"])
    assert side["optimal_loss"] < side["final_loss"] <= 1.10 * side["optimal_loss"]
    # the held-out estimate of the exact denoiser agrees with the closed form
    exact = side["evaluation"]["exact_denoiser"]
    assert abs(exact["mean"] - side["optimal_loss"]) < 4 * exact["se"]


def test_reference_loads_as_sd3(reference, loaded):
    _, side = reference
    model = loaded.model
    assert type(model).__name__ == "SD3"
    assert type(model.diffusion_model).__name__ == "OpenAISignatureMMDITWrapper"
    assert loaded.get_model_object("latent_format").latent_channels == 16
    assert float(model.model_sampling.shift) == 3.0
    assert float(model.model_sampling.multiplier) == 1000.0
    net = model.diffusion_model
    arch = side["architecture"]
    assert net.depth == arch["depth"] and net.patch_size == 2
    assert sum(p.numel() for p in net.parameters()) == arch["parameters"]


def test_reference_samples_to_finite_output_at_native_resolution(reference, loaded, pack_module):
    _, side = reference
    sampling = pack_module("noisecal_host.testing.sampling")
    m = side["native_resolution"]
    latent = sampling.empty_latent(loaded, m, m, batch=2)
    positive = [[torch.zeros(1, 1, 32), {"pooled_output": torch.zeros(1, 32)}]]
    out = sampling.ksample(loaded, latent, positive, steps=6, seed=1)
    assert out.shape == (2, 16, m, m)
    assert torch.isfinite(out).all()
    # in model space the samples are a unit-variance field, not noise or a constant
    x = loaded.model.process_latent_in(out)
    assert 0.3 < float(x.std()) < 2.0


def test_reference_predicts_near_the_exact_velocity(reference, loaded):
    """The committed weights are the trained ones: on fresh held-out samples, through
    apply_model as ComfyUI calls it, the loss is close to the exact denoiser's."""
    _, side = reference
    m = side["native_resolution"]
    spec = side["data"]["spectrum"]
    spectrum = FieldSpectrum(f0=spec["f0"], alpha=spec["alpha"], channels=spec["channels"])
    gen = torch.Generator().manual_seed(12345)
    count = 64
    x0 = sample_field(spectrum, m, count, gen)
    eps = torch.randn(x0.shape, generator=gen)
    t = torch.sigmoid(torch.randn(count, generator=gen)).clamp(0.02, 0.98)
    tb = t.view(-1, 1, 1, 1)
    x_t = (1 - tb) * x0 + tb * eps
    with torch.no_grad():
        denoised = loaded.model.apply_model(
            x_t, t, c_crossattn=torch.zeros(count, 1, 32), y=torch.zeros(count, 32)
        )
    v = (x_t - denoised) / tb
    target = eps - x0
    net_loss = float(((v - target) ** 2).mean())
    exact_loss = float(((ExactDenoiser(spectrum, m).velocity(x_t, t) - target) ** 2).mean())
    assert net_loss < 1.15 * exact_loss, (net_loss, exact_loss)

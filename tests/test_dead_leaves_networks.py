"""The dead-leaves reference networks (tools/train_reference.py --data dead-leaves):
the M = 32 network with noise-condition dropout and the native N = 16 one.

Both load through ComfyUI's own diffusion-model loader as SD3, sample through
ComfyUI's sampler to finite pictures, and predict fresh held-out data about as
well as their sidecars record. CI loads and samples them; it never trains.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from noise_calibration.noisecal.testing import dead_leaves as dl

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = ROOT / "models" / "reference"
MAX_BYTES = 8_000_000
NETWORKS = {32: "sd3_dead_leaves_m32", 16: "sd3_dead_leaves_m16"}


@pytest.fixture(scope="module", params=sorted(NETWORKS, reverse=True), ids=lambda m: f"m{m}")
def network(request, pack):
    import comfy.sd

    path = REFERENCE_DIR / f"{NETWORKS[request.param]}.safetensors"
    sidecar = json.loads(path.with_suffix(".json").read_text())
    return request.param, path, sidecar, comfy.sd.load_diffusion_model(str(path))


def test_sidecar_records_the_run(network):
    m, path, side, _ = network
    assert side["file"] == path.name
    assert side["bytes"] == path.stat().st_size <= MAX_BYTES
    assert side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert side["native_resolution"] == m
    train = side["training"]
    assert isinstance(train["seed"], int) and isinstance(side["data"]["pool_seed"], int)
    assert train["condition_dropout"] == pytest.approx(0.1)
    assert 0.0 <= train["pseudo_level"] <= 1.0
    curve = train["loss_curve"]
    assert len(curve) >= 5 and curve[-1]["step"] == train["steps"]
    # it learned: the running loss fell well below its start
    assert curve[-1]["ema"] < 0.8 * curve[0]["ema"]
    assert isinstance(side["evaluation"]["held_out_seed"], int)
    assert math.isfinite(side["final_loss"]) and side["final_loss"] > 0
    assert side["data"]["normalization"]["latent_std"] == list(dl.LATENT_STD)


def test_both_networks_have_the_same_size_and_budget():
    sides = {
        m: json.loads((REFERENCE_DIR / f"{name}.json").read_text()) for m, name in NETWORKS.items()
    }
    a, b = sides[32], sides[16]
    assert a["architecture"]["parameters"] == b["architecture"]["parameters"]
    assert a["architecture"]["unet_config"] == b["architecture"]["unet_config"]
    for key in ("steps", "batch", "lr", "seed", "condition_dropout", "pseudo_level"):
        assert a["training"][key] == b["training"][key], key


def test_loads_as_sd3(network):
    _, _, side, loaded = network
    model = loaded.model
    assert type(model).__name__ == "SD3"
    assert type(model.diffusion_model).__name__ == "OpenAISignatureMMDITWrapper"
    assert float(model.model_sampling.shift) == 3.0
    assert loaded.get_model_object("latent_format").latent_channels == 16
    params = sum(p.numel() for p in model.diffusion_model.parameters())
    assert params == side["architecture"]["parameters"]


def test_samples_are_finite_pictures(network, pack_module):
    m, _, _, loaded = network
    sampling = pack_module("noisecal_host.testing.sampling")
    positive = [[torch.zeros(1, 1, 32), {"pooled_output": torch.zeros(1, 32)}]]
    latent = sampling.empty_latent(loaded, m, m, batch=2)
    out = sampling.ksample(loaded, latent, positive, steps=6, seed=1)
    assert out.shape == (2, 16, m, m) and torch.isfinite(out).all()
    images = dl.to_image(loaded.model.process_latent_in(out))
    assert images.shape == (2, 4, 2 * m, 2 * m)
    # pictures, not noise or a constant: mostly inside the color range, with contrast
    inside = ((images > -0.15) & (images < 1.15)).float().mean()
    assert float(inside) > 0.9 and 0.05 < float(images.std()) < 0.6


def test_predicts_fresh_data_about_as_well_as_recorded(network):
    """The committed weights are the trained ones: on fresh scenes (a seed in neither
    the pool nor the held-out set), through apply_model, the loss is near the sidecar's."""
    m, _, side, loaded = network
    gen = torch.Generator().manual_seed(424242)
    count = 48
    x0 = dl.sample_latents(count, m, seed=424242)
    eps = torch.randn(x0.shape, generator=gen)
    t = torch.sigmoid(torch.randn(count, generator=gen)).clamp(0.02, 0.98)
    tb = t.view(-1, 1, 1, 1)
    x_t = (1 - tb) * x0 + tb * eps
    ctx, y = torch.zeros(count, 1, 32), torch.zeros(count, 32)
    with torch.no_grad():
        v = (x_t - loaded.model.apply_model(x_t, t, c_crossattn=ctx, y=y)) / tb
        pseudo = torch.full_like(t, side["training"]["pseudo_level"])
        v_pseudo = x_t - loaded.model.apply_model(x_t, pseudo, c_crossattn=ctx, y=y)
    target = eps - x0
    loss = float(((v - target) ** 2).mean())
    assert loss < 1.3 * side["final_loss"], (loss, side["final_loss"])
    # the noise-level-unconditional branch is worse than the conditional one, but finite
    # (it cannot know the level) and far better than predicting nothing
    loss_pseudo = float(((v_pseudo / pseudo.view(-1, 1, 1, 1) - target) ** 2).mean())
    assert math.isfinite(loss_pseudo) and loss < loss_pseudo < float((target**2).mean())

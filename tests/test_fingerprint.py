"""Checkpoint fingerprint from a real ComfyUI ModelPatcher."""

import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def test_equal_for_same_weights_and_differs_after_one_change(pack_module):
    fp = pack_module("noisecal_host.fingerprint")
    tiny = pack_module("noisecal_host.testing.tiny_models")
    a, b = tiny.tiny_sd3(seed=0).patcher, tiny.tiny_sd3(seed=0).patcher
    assert fp.weights_fingerprint(a) == fp.weights_fingerprint(b)
    state = b.model.diffusion_model.state_dict()
    name = sorted(state)[0]  # the first key is always among the sampled tensors
    with torch.no_grad():
        state[name].view(-1)[0] += 1e-3
    assert fp.weights_fingerprint(a) != fp.weights_fingerprint(b)
    assert fp.weights_fingerprint(tiny.tiny_sd3(seed=1).patcher) != fp.weights_fingerprint(a)


def test_weight_patches_leave_the_base_fingerprint_and_change_the_key(pack_module):
    """The base weights are read from the backup while patched; the key adds the
    patches (tests/test_weight_patch_key.py)."""
    fp = pack_module("noisecal_host.fingerprint")
    patcher = pack_module("noisecal_host.testing.tiny_models").tiny_sd3().patcher
    base = fp.weights_fingerprint(patcher)
    state = patcher.model.state_dict()
    patched = patcher.clone()
    keys = sorted(k for k in state if k.startswith("diffusion_model.") and state[k].dim() == 2)
    added = patched.add_patches({k: (torch.full_like(state[k], 0.5),) for k in keys}, 1.0)
    assert len(added) == len(keys)
    assert fp.weights_fingerprint(patched) == base
    assert fp.checkpoint_key(patched) != fp.checkpoint_key(patcher)
    patched.patch_model()  # weights now really modified; the backup holds the base ones
    try:
        assert not torch.equal(patched.model.state_dict()[keys[0]], state[keys[0]].clone() * 0)
        assert fp.weights_fingerprint(patched) == base
    finally:
        patched.unpatch_model()


def test_key_names_class_and_latent_format(pack_module, tiny_model):
    key = pack_module("noisecal_host.fingerprint").checkpoint_key(tiny_model.patcher, " mine ")
    assert key.label == "mine"
    assert key.model_class in {"SD3", "Flux", "SD15"}
    assert key.latent_format in {"SD3", "Flux", "SD15"}
    assert len(key.fingerprint) == 64


def test_stable_across_processes(pack_module):
    fp = pack_module("noisecal_host.fingerprint")
    here = fp.weights_fingerprint(
        pack_module("noisecal_host.testing.tiny_models").tiny_flux().patcher
    )
    code = (
        "from noisecal_host.host import ensure_host; ensure_host()\n"
        "from noisecal_host.pack_loader import load_pack; load_pack()\n"
        "from noise_calibration.noisecal_host import fingerprint\n"
        "from noise_calibration.noisecal_host.testing import tiny_models\n"
        "print(fingerprint.weights_fingerprint(tiny_models.tiny_flux().patcher))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == here

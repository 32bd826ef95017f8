"""Test harness: real ComfyUI code, never a mock of `comfy`.

The host is found by noisecal_host.host (COMFYUI_PATH, the ComfyUI this pack
sits in, or the registry snapshot notcomfy==0.1.0 installed into .cache/),
forced to CPU, and named in pytest's header. Then the pack is loaded the way
ComfyUI loads it (its folder as a package) under the name `noise_calibration`.
"""

from __future__ import annotations

import importlib

import pytest

from noisecal_host.host import ensure_host
from noisecal_host.pack_loader import load_pack

# Before any test module is collected: test modules import the pack's modules
# as `noise_calibration.*` (one import path, one copy of every class), and the
# pack loads its nodes only when `comfy` is importable.
_HOST = ensure_host(cpu=True)
_PACK = load_pack()


def pytest_report_header(config):
    return _HOST.describe()


@pytest.fixture(scope="session")
def pack():
    return _PACK


@pytest.fixture(scope="session")
def pack_module(pack):
    """Import a module of the loaded pack: pack_module("noisecal_host.testing.sampling")."""
    return lambda name: importlib.import_module(f"{pack.__name__}.{name}")


@pytest.fixture(scope="session")
def host_info():
    return _HOST


@pytest.fixture
def tiny_sd3(pack_module):
    return pack_module("noisecal_host.testing.tiny_models").tiny_sd3()


@pytest.fixture
def tiny_flux(pack_module):
    return pack_module("noisecal_host.testing.tiny_models").tiny_flux()


@pytest.fixture
def tiny_unet(pack_module):
    return pack_module("noisecal_host.testing.tiny_models").tiny_unet()


@pytest.fixture(params=["sd3", "flux", "unet"])
def tiny_model(request, pack_module):
    """Each tiny architecture in turn."""
    return pack_module("noisecal_host.testing.tiny_models").TINY_MODELS[request.param]()

"""Bootstraps the ComfyUI snapshot host and loads the pack, once per process.

Import this module before any ``comfy`` or ``noise_calibration`` module;
after it every pack module is imported as ``noise_calibration.<...>``.
"""

from __future__ import annotations

from noisecal_host.host import ensure_host
from noisecal_host.pack_loader import load_pack

HOST = ensure_host()
PACK = load_pack()


def node_class(name: str):
    """A node class of the pack, e.g. ``node_class("NoiseShift")``."""
    return PACK.NODE_CLASS_MAPPINGS[f"NoiseCalibration{name}"]

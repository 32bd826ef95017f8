"""noise-calibration: ComfyUI nodes that make diffusion models sample well at
low resolution and few steps by calibrating the noise level they are told.

Imports cleanly without ComfyUI (tools and tests load the pack that way):
the nodes are only imported when a `comfy` package can be found.
"""

import importlib.util

WEB_DIRECTORY = "./web"
NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

# __package__ is empty when a tool imports this file as a plain module (pytest
# does, for a folder like `noise-calibration` that is no valid package name).
if __package__ and importlib.util.find_spec("comfy") is not None:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F811
    from .noisecal_host import routes as _routes

    _routes.register_with_server()  # the calibrations browser; only inside a ComfyUI server

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]

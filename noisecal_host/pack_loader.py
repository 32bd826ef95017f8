"""Load the pack the way ComfyUI does (its root folder as a package), under a
fixed name, for tests and the command line. The pack's own modules import each
other relatively, so they need that parent package; the folder's name varies
(a clone, `custom_nodes/noise-calibration`), hence the fixed name here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACK_NAME = "noise_calibration"
PACK_ROOT = Path(__file__).resolve().parent.parent


def load_pack(name: str = PACK_NAME):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, PACK_ROOT / "__init__.py", submodule_search_locations=[str(PACK_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module

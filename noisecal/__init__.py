"""Host-free math of the noise-calibration pack.

Imports torch and numpy only (plus jsonschema for the store): no ComfyUI.
Modules import each other relatively so the package works both as a
top-level package (tests, tools) and inside the ComfyUI pack.
"""

__version__ = "0.1.0"

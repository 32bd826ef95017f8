"""The pack's error types: ComfyUI shows them by a short module name."""

from __future__ import annotations

# ComfyUI shows an error's type as module + name, and it names a custom node
# pack's modules by their file path: the pack's errors carry a short name.
ERROR_MODULE = "noise_calibration"


class CalibrationError(Exception):
    """A calibration file or record is missing, unreadable or invalid."""

    __module__ = ERROR_MODULE


class InvalidInput(CalibrationError, ValueError):
    """A node input or argument the pack cannot use (names the input)."""

    __module__ = ERROR_MODULE


class CalibrationNotFound(CalibrationError):
    """No calibration covers the requested checkpoint and resolution."""

    __module__ = ERROR_MODULE

"""Where calibration files live.

Read: the user folder(s) first, then the pack's shipped `calibration_data/`.
Write: the user folder. Inside ComfyUI that is `<models>/noise_calibration`,
registered with folder_paths under the name "noise_calibration" (so
extra_model_paths.yaml can add more, and pack updates never wipe it).
Outside ComfyUI the caller names the folder: `user_store(write_dir)`, handed
to what reads or writes calibrations (node classes take `calibration_store=`,
the command line passes one). The environment variable NOISE_CALIBRATION_DIR
is the user's override of the default folder, inside ComfyUI too; the pack
itself never sets it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .store import CalibrationStore

FOLDER_NAME = "noise_calibration"
ENV_DIR = "NOISE_CALIBRATION_DIR"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "calibration_data"


def register_folder() -> Path | None:
    """Register the user folder with ComfyUI; None when not inside ComfyUI."""
    try:
        import folder_paths
    except ImportError:
        return None
    default = Path(folder_paths.models_dir) / FOLDER_NAME
    if FOLDER_NAME not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[FOLDER_NAME] = ([str(default)], {".json"})
    return default


def user_store(write_dir: str | os.PathLike | None = None) -> CalibrationStore:
    """The store nodes and the CLI use: `write_dir` (then the shipped data) when
    given, else NOISE_CALIBRATION_DIR when set, else ComfyUI's folder(s)."""
    read_dirs: list[Path] = []
    write_dir = write_dir or os.environ.get(ENV_DIR) or None
    if write_dir is None:
        default = register_folder()
        if default is not None:
            import folder_paths

            read_dirs = [Path(p) for p in folder_paths.get_folder_paths(FOLDER_NAME)]
            write_dir = read_dirs[0] if read_dirs else default
    else:
        read_dirs = [Path(write_dir)]
    return CalibrationStore(read_dirs + [SHIPPED_DIR], write_dir)

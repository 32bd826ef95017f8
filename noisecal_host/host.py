"""Find a ComfyUI to run against and make `import comfy` work outside ComfyUI.

Order: a `comfy` package already imported (we are inside ComfyUI); the folder
in COMFYUI_PATH; the ComfyUI this pack sits in (`ComfyUI/custom_nodes/<pack>`);
otherwise the registry snapshot `notcomfy==0.1.0` (ComfyUI's python packages at
upstream commit 61196d8, 2024-11-25), installed once with `pip --no-deps
--target` into the git-ignored `.cache/` folder. The snapshot folder also holds
top-level `tests`, `utils`, `app` and `models` packages, so it is appended to
sys.path, never prepended: it must not shadow anything of ours.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT_SPEC = "notcomfy==0.1.0"
SNAPSHOT_UPSTREAM = "ComfyUI 61196d8 (2024-11-25)"
SNAPSHOT_DIR = PACK_ROOT / ".cache" / "notcomfy-0.1.0"

log = logging.getLogger("noise_calibration")


class HostNotFound(RuntimeError):
    """No ComfyUI could be found or installed."""


@dataclass(frozen=True)
class HostInfo:
    kind: str  # "loaded", "COMFYUI_PATH", "custom_nodes" or "snapshot"
    path: Path
    version: str
    torchvision_stand_in: bool = False

    def describe(self) -> str:
        text = f"ComfyUI host: {self.kind} at {self.path} ({self.version})"
        if self.torchvision_stand_in:
            text += "; torchvision: import-only stand-in"
        return text


_host: HostInfo | None = None


def ensure_host(cpu: bool = True, install: bool = True) -> HostInfo:
    """Make `comfy` importable (once per process) and return where it came from.

    `cpu=True` forces ComfyUI's CPU mode; it must be decided before
    comfy.model_management is first imported, so it only applies when this
    call is the one that loads ComfyUI.
    """
    global _host
    if _host is not None:
        return _host
    if "comfy" in sys.modules:
        path = Path(sys.modules["comfy"].__file__).resolve().parent.parent
        _host = HostInfo("loaded", path, _version_of(path))
        return _host

    kind, path = _locate(install)
    if kind == "snapshot":
        sys.path.append(str(path))
    else:
        sys.path.insert(0, str(path))
    stand_in = _ensure_torchvision_importable()
    import comfy.cli_args  # noqa: E402  (needs sys.path above)

    if cpu:
        comfy.cli_args.args.cpu = True
    importlib.import_module("comfy.model_management")
    _host = HostInfo(kind, path, _version_of(path), stand_in)
    return _host


def _locate(install: bool) -> tuple[str, Path]:
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser().resolve()
        if not (path / "comfy" / "__init__.py").is_file() and not (path / "comfy").is_dir():
            raise HostNotFound(f"COMFYUI_PATH={env} has no comfy/ package")
        return "COMFYUI_PATH", path
    parent = PACK_ROOT.parent
    if parent.name == "custom_nodes" and (parent.parent / "comfy").is_dir():
        return "custom_nodes", parent.parent
    if not (SNAPSHOT_DIR / "comfy").is_dir():
        if not install:
            raise HostNotFound("no ComfyUI found: set COMFYUI_PATH or install the snapshot")
        _install_snapshot()
    return "snapshot", SNAPSHOT_DIR


def _install_snapshot() -> None:
    """pip-install the snapshot into a temp folder, then rename: never half there."""
    SNAPSHOT_DIR.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="notcomfy-", dir=SNAPSHOT_DIR.parent))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        "--no-deps",
        "--target",
        str(tmp),
        SNAPSHOT_SPEC,
    ]
    try:
        subprocess.run(cmd, check=True)
        os.replace(tmp, SNAPSHOT_DIR)
    except (subprocess.CalledProcessError, OSError) as exc:
        raise HostNotFound(f"could not install {SNAPSHOT_SPEC}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _version_of(path: Path) -> str:
    if path == SNAPSHOT_DIR:
        return f"{SNAPSHOT_SPEC}, {SNAPSHOT_UPSTREAM}"
    parts = []
    version_file = path / "comfyui_version.py"
    if version_file.is_file():
        scope: dict = {}
        exec(version_file.read_text(), scope)  # a one-line `__version__ = "..."`
        parts.append(f"version {scope.get('__version__', '?')}")
    if (path / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            parts.append(f"commit {commit}")
        except (OSError, subprocess.CalledProcessError):
            pass
    return ", ".join(parts) or "unknown version"


def _ensure_torchvision_importable() -> bool:
    """ComfyUI imports torchvision at module level for models we never build
    (Stable Cascade's image coder). The registry's torchvision wheels don't
    load with every torch build; then an import-only stand-in takes its place,
    and using any of it raises. Returns True when the stand-in is used."""
    try:
        import torchvision  # noqa: F401

        return False
    except Exception as exc:  # a broken install raises more than ImportError
        reason = f"{type(exc).__name__}: {exc}"
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    sys.modules["torchvision"] = _StandIn("torchvision", reason)
    log.warning("torchvision could not be imported (%s); using an import-only stand-in", reason)
    return True


class _StandIn(types.ModuleType):
    def __init__(self, name: str, reason: str):
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec() reads it
        self.__path__ = []  # lets `import torchvision.x` reach __getattr__ paths
        self._reason = reason

    def __getattr__(self, item: str):
        if item.startswith("__"):
            raise AttributeError(item)
        return _StandIn(f"{self.__name__}.{item}", self._reason)

    def __call__(self, *args, **kwargs):
        raise ImportError(f"{self.__name__} is unavailable here ({self._reason})")

"""Which folder a Load Image Folder node reads: a folder named relative to
ComfyUI's input directory (as ComfyUI's own Load Image names its files);
absolute paths, `..` and links that lead outside it are refused. The node's
list of choices and its change fingerprint."""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path, PureWindowsPath

from ..noisecal.errors import CalibrationError
from .atomic_write import name_problem

THIS_FOLDER = "."  # the input directory itself


def input_directory() -> Path | None:
    """ComfyUI's input directory; None outside ComfyUI (no `folder_paths`)."""
    try:
        import folder_paths
    except ImportError:
        return None
    return Path(folder_paths.get_input_directory())


def natural_key(name: str) -> tuple:
    """Sort key: digit runs compare as numbers, the rest without case; the name
    itself breaks ties so the order is total."""
    parts = re.split(r"(\d+)", name)
    return (
        tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)),
        name,
    )


def inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def syntax_problem(folder: str) -> str | None:
    if not isinstance(folder, str) or not folder.strip():
        return f"folder {folder!r} is not a folder name: use '.' for the input directory itself"
    if "\x00" in folder:
        return f"folder {folder!r} is not a valid folder name"
    if os.path.isabs(folder) or PureWindowsPath(folder).anchor:
        return (
            f"folder {folder!r} is an absolute path: name a folder inside ComfyUI's "
            "input directory instead"
        )
    if ".." in re.split(r"[\\/]", folder):
        return f"folder {folder!r} leads out of ComfyUI's input directory ('..')"
    for part in re.split(r"[\\/]", folder):
        problem = part not in ("", ".") and name_problem(part)
        if problem:  # the same on every system, so a shared workflow loads everywhere
            return f"folder {folder!r} cannot be a folder on Windows: {part!r} has {problem}"
    return None


def input_root(input_dir: str | os.PathLike | None) -> Path:
    root = Path(input_dir) if input_dir is not None else input_directory()
    if root is None:
        raise CalibrationError(
            "ComfyUI's input directory is unknown here (no folder_paths module): "
            "load image folders inside ComfyUI, or name the input directory"
        )
    if not root.is_dir():
        raise CalibrationError(f"ComfyUI's input directory {root} does not exist")
    return root


def os_reason(exc: Exception) -> str:
    """Why the file system refused a path, in words, without the path."""
    # ERROR_FILENAME_EXCED_RANGE (206): Windows' word for a path too long
    if getattr(exc, "errno", None) == errno.ENAMETOOLONG or getattr(exc, "winerror", 0) == 206:
        return "the name is longer than the file system allows"
    if isinstance(exc, RuntimeError):
        return "its links form a loop"
    return getattr(exc, "strerror", None) or type(exc).__name__


def resolve_folder(folder: str, input_dir: str | os.PathLike | None = None) -> Path:
    """The folder's real path, checked to be a folder inside the input directory
    (`input_dir`, default ComfyUI's). CalibrationError says what is wrong."""
    problem = syntax_problem(folder)
    if problem:
        raise CalibrationError(problem)
    root = input_root(input_dir)
    try:
        real_root = root.resolve()
        path = (root / folder).resolve()
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, RuntimeError, ValueError) as exc:  # a name too long, a link loop
        raise CalibrationError(f"folder {folder!r} cannot be opened: {os_reason(exc)}") from None
    if not inside(path, real_root):
        raise CalibrationError(
            f"folder {folder!r} links outside ComfyUI's input directory: "
            "only folders inside it are read"
        )
    if not exists:
        raise CalibrationError(
            f"folder {folder!r} does not exist (any more) in ComfyUI's input directory "
            f"{root}: create it or pick another one (refresh the node's list with R)"
        )
    if not is_dir:
        raise CalibrationError(f"folder {folder!r} in ComfyUI's input directory is not a folder")
    return path


def folder_problem(folder: str) -> str | None:
    """What is wrong with a folder name (None: nothing), for VALIDATE_INPUTS, which
    replaces ComfyUI's own check against the list: the name must be listed.
    Outside ComfyUI (no input directory to look in) only the name is checked."""
    if input_directory() is None:
        return syntax_problem(folder)
    try:
        resolve_folder(folder)
    except CalibrationError as exc:
        return str(exc)
    if folder not in folder_choices():
        return (
            f"folder {folder!r} is not one of the listed folders (the input directory '.' "
            "and its subfolders, hidden ones left out): pick one from the list"
        )
    return None


def folder_choices() -> list[str]:
    """'.' and the input directory's subfolders (natural order, hidden ones and
    links leading outside left out). Never raises: a missing or unreadable
    input directory gives ['.']."""
    root = input_directory()
    names = []
    try:
        if root is not None and root.is_dir():
            real_root = root.resolve()
            with os.scandir(root) as entries:
                names = [e.name for e in entries if _listed(e, real_root)]
    except (OSError, RuntimeError, ValueError):
        names = []
    return [THIS_FOLDER, *sorted(names, key=natural_key)]


def _listed(entry: os.DirEntry, real_root: Path) -> bool:
    """Whether an input directory entry is a folder choice (one bad entry hides
    only itself)."""
    try:
        if entry.name.startswith(".") or not entry.is_dir():
            return False
        return inside(Path(os.path.realpath(entry.path)), real_root)
    except (OSError, RuntimeError, ValueError):
        return False


def folder_fingerprint(folder: str) -> str:
    """Changes when the folder's files change (names, sizes, modification
    times) or when the folder becomes unusable: for IS_CHANGED."""
    try:
        path = resolve_folder(folder)
    except CalibrationError as exc:
        return f"unusable: {exc}"
    digest = hashlib.sha256(str(path).encode("utf-8", "surrogateescape"))
    try:
        with os.scandir(path) as entries:
            names = sorted(e.name for e in entries)
    except OSError as exc:
        return f"unreadable: {os_reason(exc)}"
    for name in names:
        try:
            stat = os.stat(path / name)
            facts = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            facts = "?"
        digest.update(f"{name}\x00{facts}\x00".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()

"""Real images for calibration from a folder under ComfyUI's input directory.

The folder is named relative to `folder_paths.get_input_directory()` (as
ComfyUI's own Load Image names its files); absolute paths, `..` and links
that lead outside the input directory are refused. Every file of the folder
(not of its subfolders) is read with PIL in natural name order (img2 before
img10); a file PIL cannot decode is skipped with the reason, logged. Each
image is turned upright (EXIF orientation), converted to RGB (alpha dropped),
scaled with LANCZOS so its short side covers the target and center-cropped to
exactly width x height (PIL's ImageOps.fit). The result is a ComfyUI IMAGE:
[n, height, width, 3] float32 in [0, 1].
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path, PureWindowsPath

import numpy as np
import torch
from PIL import Image, ImageOps

from ..noisecal.atomic_write import name_problem
from ..noisecal.store import CalibrationError

log = logging.getLogger("noise_calibration")

THIS_FOLDER = "."  # the input directory itself
LISTED_SKIPS = 5  # skipped files named in a summary before "and N more"
_SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


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


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _syntax_problem(folder: str) -> str | None:
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


def _root(input_dir: str | os.PathLike | None) -> Path:
    root = Path(input_dir) if input_dir is not None else input_directory()
    if root is None:
        raise CalibrationError(
            "ComfyUI's input directory is unknown here (no folder_paths module): "
            "load image folders inside ComfyUI, or name the input directory"
        )
    if not root.is_dir():
        raise CalibrationError(f"ComfyUI's input directory {root} does not exist")
    return root


def resolve_folder(folder: str, input_dir: str | os.PathLike | None = None) -> Path:
    """The folder's real path, checked to be a folder inside the input directory
    (`input_dir`, default ComfyUI's). CalibrationError says what is wrong."""
    problem = _syntax_problem(folder)
    if problem:
        raise CalibrationError(problem)
    root = _root(input_dir)
    try:
        real_root = root.resolve()
        path = (root / folder).resolve()
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, RuntimeError) as exc:  # a name too long, a link loop
        raise CalibrationError(f"folder {folder!r} cannot be opened ({exc})") from None
    if not _inside(path, real_root):
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
    """What is wrong with a folder name (None: nothing), for VALIDATE_INPUTS.
    Outside ComfyUI (no input directory to look in) only the name is checked."""
    if input_directory() is None:
        return _syntax_problem(folder)
    try:
        resolve_folder(folder)
    except CalibrationError as exc:
        return str(exc)
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
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_dir():
                        continue
                    if _inside(Path(entry.path).resolve(), real_root):
                        names.append(entry.name)
    except (OSError, RuntimeError):
        names = []
    return [THIS_FOLDER, *sorted(names, key=natural_key)]


def folder_fingerprint(folder: str) -> str:
    """Changes when the folder's files change (names, sizes, modification
    times) or when the folder becomes unusable: for IS_CHANGED."""
    try:
        path = resolve_folder(folder)
    except CalibrationError as exc:
        return f"unusable: {exc}"
    digest = hashlib.sha256(str(path).encode())
    try:
        with os.scandir(path) as entries:
            names = sorted(e.name for e in entries)
    except OSError as exc:
        return f"unreadable: {exc}"
    for name in names:
        try:
            stat = os.stat(path / name)
            facts = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            facts = "?"
        digest.update(f"{name}\x00{facts}\x00".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _reason(exc: Exception) -> str:
    """A short reason, without the file's path."""
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image PIL can read"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return f"cannot be decoded ({text})" if text else f"cannot be decoded ({type(exc).__name__})"


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in _SIXTEEN_BIT:  # 16-bit grayscale: scale to 8 bits, not clip
        values = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return image.convert("RGB")


def _read(path: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image)
        fitted = ImageOps.fit(
            _to_rgb(upright), size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.5)
        )
    return np.asarray(fitted, dtype=np.uint8)


def load_image_folder(
    folder: str,
    width: int,
    height: int,
    limit: int,
    input_dir: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, list[tuple[str, str]]]:
    """Every image of `folder` (relative to the input directory) as one IMAGE
    batch of width x height (each rounded down to a multiple of 8), at most
    `limit` images (0: all), and the (file name, reason) of each file skipped."""
    width, height, limit = int(width) // 8 * 8, int(height) // 8 * 8, int(limit)
    if width < 8 or height < 8:
        raise CalibrationError(
            f"the image size must be at least 8 x 8 pixels, got {width} x {height}"
        )
    if limit < 0:
        raise CalibrationError(f"limit must be 0 (all images) or more, got {limit}")
    path = resolve_folder(folder, input_dir)
    real_root = _root(input_dir).resolve()
    try:
        with os.scandir(path) as entries:
            names = sorted((e.name for e in entries), key=natural_key)
    except OSError as exc:
        raise CalibrationError(f"folder {folder!r} cannot be listed: {exc.strerror}") from exc

    pixels: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    for name in names:
        if limit and len(pixels) >= limit:
            break
        file = path / name
        if file.is_dir():
            continue  # subfolders are not read (each is a choice of its own)
        if not file.exists():
            reason = "a broken link"
        elif not _inside(file.resolve(), real_root):
            reason = "links outside ComfyUI's input directory"
        else:
            try:
                pixels.append(_read(file, (width, height)))
                continue
            except Exception as exc:  # a user's file may break the decoder in any way
                reason = _reason(exc)
        skipped.append((name, reason))
        log.warning("image folder %r: skipped %s: %s", folder, name, reason)

    if not pixels:
        detail = f"; skipped: {skipped_text(skipped)}" if skipped else ""
        raise CalibrationError(
            f"folder {folder!r} holds no image that can be read{detail}: put real images "
            "(PNG, JPEG, WebP, ...) in it"
        )
    images = torch.from_numpy(np.stack(pixels)).to(torch.float32).div_(255.0)
    return images, skipped


def skipped_text(skipped: list[tuple[str, str]], listed: int = LISTED_SKIPS) -> str:
    shown = ", ".join(f"{name} ({reason})" for name, reason in skipped[:listed])
    more = len(skipped) - listed
    return f"{shown}, and {more} more" if more > 0 else shown


def summary(images: torch.Tensor, folder: str, skipped: list[tuple[str, str]]) -> str:
    """One line for the node: what was loaded, at what size, and what was skipped."""
    count, height, width = images.shape[0], images.shape[1], images.shape[2]
    noun = "image" if count == 1 else "images"
    text = f"loaded {count} {noun} ({width}x{height}) from {folder}"
    if skipped:
        text += f"; skipped {len(skipped)}: {skipped_text(skipped)}"
    return text

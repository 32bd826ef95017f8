"""Real images for calibration from a folder under ComfyUI's input directory.

The folder is checked by input_folders.py (inside ComfyUI's input
directory, no link leading out). Every file of the folder
(not of its subfolders) is read with PIL in natural name order (img2 before
img10); a file PIL cannot decode is skipped with the reason, logged. Each
image is turned upright (EXIF orientation), converted to RGB (alpha dropped),
scaled with LANCZOS so its short side covers the target and center-cropped to
exactly width x height (PIL's ImageOps.fit). The result is a ComfyUI IMAGE:
[n, height, width, 3] float32 in [0, 1].

Hostile folders: an entry that is no regular file (FIFO, socket, device) is
skipped from its lstat, never opened. A file is opened first (no link
followed, never blocking) and the open handle is then checked to be the
entry that was checked, so a swap in between is skipped, not read. Headers
are read before any decoding, and a batch that would not fit in
`memory_limit()` is refused; running out of memory is an error, never a
skip. Pixel modes keep their white: "F" is 1.0 (clipped to [0, 1], NaN 0),
"I;16*" 65535, and "I" (32-bit) 65535 when all values lie in 0-65535 (PNG
and TIFF store 16-bit gray so); other "I" images are skipped, their white
level unknown.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import torch
from PIL import Image, ImageOps

from ..noisecal.errors import CalibrationError
from .input_folders import input_root, inside, natural_key, os_reason, resolve_folder

log = logging.getLogger("noise_calibration")

LISTED_SKIPS = 5  # skipped files named in a summary before "and N more"
MEMORY_FRACTION = 0.5  # of the RAM available: the rest is ComfyUI's, the models' and the OS's
FALLBACK_AVAILABLE = 2 * 2**30  # bytes assumed available when the system cannot say
DECODE_BYTES_PER_PIXEL = 16  # one source image decoded: PIL's copies and numpy's, generously
CHANGED = "changed while being read (replaced by another file or a link): not read"
# Open without following a link (none on Windows: the handle is checked there) and
# without blocking (a FIFO swapped in after the check); binary on Windows.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_BINARY", 0)
)
_LINK_ERRNOS = {errno.ELOOP, errno.EMLINK}  # O_NOFOLLOW met a link (EMLINK on BSDs)


class _Entry(NamedTuple):
    """A folder file whose header was read: its name, the checked path and lstat."""

    name: str
    path: str
    info: os.stat_result
    pixels: int


def _reason(exc: Exception) -> str:
    """A short reason, without the file's path."""
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image PIL can read"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return f"cannot be decoded ({text})" if text else f"cannot be decoded ({type(exc).__name__})"


class _Skip(Exception):
    """A folder entry passed over, with the reason (not an error)."""


def memory_limit() -> int:
    """Bytes one load may use: a fraction of the RAM available now."""
    try:
        import psutil  # a ComfyUI requirement

        available = psutil.virtual_memory().available
    except Exception:  # no psutil, or no answer from the system: assume little
        available = FALLBACK_AVAILABLE
    return int(available * MEMORY_FRACTION)


def _kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _target(folder: Path, name: str, real_root: Path) -> tuple[str, os.stat_result] | None:
    """The path to open for entry `name` and its lstat, checked without opening
    anything; None for a subfolder. _Skip says why an entry cannot be read."""
    path = os.path.join(folder, name)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        if not os.path.exists(path):
            raise _Skip("a broken link")
        path = os.path.realpath(path)
        if not inside(Path(path), real_root):
            raise _Skip("links outside ComfyUI's input directory")
        info = os.lstat(path)
    if stat.S_ISDIR(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        raise _Skip(f"{_kind(info.st_mode)}, not a regular file: not opened")
    return path, info


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Whether two stats are of one file (some Windows file systems give no inode)."""
    if a.st_ino or b.st_ino:
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    return (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns)


def _open_checked(path: str, info: os.stat_result, real_root: Path) -> BinaryIO:
    """Open the checked file first (no link followed where the OS allows, never
    blocking), then check the handle is that very regular file: it may have been
    swapped since the check."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise _Skip(CHANGED) from None
        raise _Skip(exc.strerror or "cannot be opened") from None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode) or not _same_file(opened, info):
            raise _Skip(CHANGED)
        if not inside(Path(os.path.realpath(os.path.dirname(path))), real_root):
            raise _Skip(CHANGED)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _gray(values: np.ndarray) -> Image.Image:
    """An 8-bit gray image from values in [0, 255]."""
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with each mode's own white: 'F' is 1.0, 'I;16*' and 'I' 65535 (an 'I'
    image with values outside 0-65535 is skipped: its white is unknown)."""
    mode = image.mode
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        image = _gray(np.clip(values, 0.0, 1.0) * 255.0)
    elif mode.startswith("I;16") or mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise _Skip(
                "32-bit integer pixels outside 0-65535: their white level is unknown "
                "(save it as 8 or 16 bits, or as 32-bit float in 0-1)"
            )
        image = _gray(values.astype(np.float64) / 257.0)  # 16-bit: scale, not clip
    elif mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    try:
        return image.convert("RGB")
    except ValueError:
        raise _Skip(f"pixel mode {mode} has no RGB conversion") from None


def _header(path: str, info: os.stat_result, real_root: Path) -> tuple[int, int]:
    """The image's width and height from its header (nothing decoded)."""
    with _open_checked(path, info, real_root) as handle, Image.open(handle) as image:
        return image.size


def _decode(entry: _Entry, size: tuple[int, int], budget: int, real_root: Path) -> torch.Tensor:
    """One image, upright, RGB, fitted to `size`, as [height, width, 3] in [0, 1]."""
    with _open_checked(entry.path, entry.info, real_root) as handle, Image.open(handle) as image:
        need = image.size[0] * image.size[1] * DECODE_BYTES_PER_PIXEL
        if need > budget:
            raise CalibrationError(
                f"image {entry.name!r} is {image.size[0]} x {image.size[1]} pixels: decoding "
                f"it needs about {_gb(need)}, more than the {_gb(budget)} left to the "
                "loader: remove it from the folder or free memory"
            )
        upright = ImageOps.exif_transpose(image)
        fitted = ImageOps.fit(
            _to_rgb(upright), size, method=Image.Resampling.LANCZOS, centering=(0.5, 0.5)
        )
    return torch.from_numpy(np.array(fitted, dtype=np.uint8)).to(torch.float32).div_(255.0)


def _gb(count: int) -> str:
    """Bytes in words: MB below a gigabyte (small limits would read 0.00 GB)."""
    return f"{count / 2**30:.2f} GB" if count >= 2**30 else f"{count / 2**20:.1f} MB"


def _skip(folder: str, skipped: list, name: str, reason: str) -> None:
    skipped.append((name, reason))
    log.warning("image folder %r: skipped %s: %s", folder, name, reason)


def _candidates(folder: str, path: Path, real_root: Path, skipped: list) -> Iterator[_Entry]:
    """The folder's files whose image header reads, in natural name order; every
    other file is skipped with its reason, subfolders silently."""
    try:
        with os.scandir(path) as entries:
            names = sorted((e.name for e in entries), key=natural_key)
    except OSError as exc:
        raise CalibrationError(f"folder {folder!r} cannot be listed: {exc.strerror}") from None
    for name in names:
        try:
            found = _target(path, name, real_root)
            if found is None:
                continue  # subfolders are not read (each is a choice of its own)
            width, height = _header(*found, real_root)
        except _Skip as exc:
            _skip(folder, skipped, name, str(exc))
        except MemoryError:
            raise _out_of_memory(folder, name) from None
        except Exception as exc:  # a user's file may break the decoder in any way
            _skip(folder, skipped, name, _reason(exc))
        else:
            yield _Entry(name, found[0], found[1], width * height)


def _out_of_memory(folder: str, name: str) -> CalibrationError:
    return CalibrationError(
        f"image folder {folder!r}: ran out of memory reading {name!r}: free memory, "
        "lower width/height or limit, or remove very large images from the folder"
    )


def _check_memory(folder: str, count: int, size: tuple[int, int], largest: int) -> int:
    """The bytes left after the IMAGE batch; CalibrationError when it will not fit."""
    per_image = size[0] * size[1] * 3 * 4  # float32 RGB
    decode = largest * DECODE_BYTES_PER_PIXEL
    budget = memory_limit()
    if count * per_image + decode <= budget:
        return budget - count * per_image
    fit = max(0, (budget - decode) // per_image)
    raise CalibrationError(
        f"image folder {folder!r}: {count} image{'' if count == 1 else 's'} at "
        f"{size[0]} x {size[1]} need "
        f"{_gb(count * per_image + decode)} (the IMAGE batch is n x height x width x 3 "
        f"float32, plus {_gb(decode)} to decode the largest image), more than the "
        f"{_gb(budget)} this loader may use ({MEMORY_FRACTION:.0%} of the RAM available "
        f"now): {fit} fit. Set limit to {fit} or less, lower width/height, or free memory"
    )


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
    try:
        real_root = input_root(input_dir).resolve()
    except (OSError, RuntimeError) as exc:  # the input directory changed since
        raise CalibrationError(f"ComfyUI's input directory: {os_reason(exc)}") from None
    skipped: list[tuple[str, str]] = []
    found = _candidates(folder, path, real_root, skipped)
    first = list(itertools.islice(found, limit or None))  # headers only, nothing decoded
    budget = _check_memory(
        folder, len(first), (width, height), max((e.pixels for e in first), default=0)
    )
    images = _batch(folder, len(first), width, height)
    count = 0
    for entry in itertools.chain(first, found):  # a file that fails is replaced by the next
        if count == len(first):
            break
        try:
            images[count] = _decode(entry, (width, height), budget, real_root)
            count += 1
        except _Skip as exc:
            _skip(folder, skipped, entry.name, str(exc))
        except MemoryError:
            raise _out_of_memory(folder, entry.name) from None
        except CalibrationError:
            raise
        except Exception as exc:  # a user's file may break the decoder in any way
            _skip(folder, skipped, entry.name, _reason(exc))
    skipped.sort(key=lambda item: natural_key(item[0]))
    if not count:
        detail = f"; skipped: {skipped_text(skipped)}" if skipped else ""
        raise CalibrationError(
            f"folder {folder!r} holds no image that can be read{detail}: put real images "
            "(PNG, JPEG, WebP, ...) in it"
        )
    return images[:count], skipped


def _batch(folder: str, count: int, width: int, height: int) -> torch.Tensor:
    """The empty IMAGE batch, allocated before any decoding."""
    try:
        return torch.empty((count, height, width, 3), dtype=torch.float32)
    except (MemoryError, RuntimeError):  # torch's allocator raises RuntimeError
        raise CalibrationError(
            f"image folder {folder!r}: no memory for {count} images of {width} x {height}: "
            "lower limit or width/height, or free memory"
        ) from None


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

"""Atomic file writes that behave the same on Windows, macOS and Linux.

A write goes to a temp file beside the target, is flushed to disk, then renamed
over the target: a reader sees the old file or the new one, never a part.

Windows differs from POSIX in four ways that matter here, each handled below:
- `os.kill(pid, 0)` there calls TerminateProcess: asking whether a temp file's
  writer still runs must not signal (psutil asks the process table instead);
- renaming over a file another process holds open (a loader, an editor, the
  sidebar route) fails with a sharing error for as long as it is held: retried
  briefly, then refused with the pack's error, the old file unchanged;
- folders cannot be opened for fsync: skipped there;
- names like ``CON`` or ``nul.json``, trailing dots or spaces and paths over
  260 characters are not files: `name_problem` tells, `check_writable` tries the
  real folder before any long work starts.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from ..noisecal.errors import CalibrationError

# A temp file's name never matches `*.json`, so one left by a killed writer is
# never read as a calibration. The writer's process id is part of the name.
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".json.part"
# a temp file older than this was left by a killed writer (a live one takes seconds)
STALE_TEMP_SECONDS = 3600
# how long a rename waits for another program to let go of the target (Windows)
REPLACE_WAIT_SECONDS = 2.0
# the longest path Windows opens without long-path support enabled (MAX_PATH - 1)
WINDOWS_MAX_PATH = 259
ON_WINDOWS = os.name == "nt"

_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
_RESERVED |= {f"{d}{i}" for d in ("COM", "LPT") for i in [*range(10), "¹", "²", "³"]}
_BAD_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a file or folder name on Windows (None: it can)."""
    if not name or name in (".", ".."):
        return "an empty name"
    if _BAD_CHARS.search(name):
        return 'a character Windows forbids in names (< > : " / \\ | ? * or a control character)'
    if name[-1] in ". ":
        return "a trailing dot or space (Windows drops it)"
    if name.split(".")[0].rstrip(" ").upper() in _RESERVED:
        return "a device name on Windows (CON, NUL, COM1, ...)"
    if len(name) > 255:
        return "more than 255 characters"
    return None


def write_atomically(target: Path, write, suffix: str = TEMP_SUFFIX) -> None:
    """write(temp path) into a temp file beside `target`, flushed to disk, then renamed
    over it. Temp files of writers that are gone are removed first. The file gets
    the mode the user's umask gives a new file, as ComfyUI's own outputs do."""
    target = Path(target)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CalibrationError(f"cannot create the folder {folder} ({exc.strerror})") from None
    remove_stale_temp_files(folder, suffix=suffix)
    tmp = _new_temp_file(folder, suffix)
    try:
        write(str(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        _replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(folder)


def check_writable(target: Path) -> None:
    """Refuse, before long work, a target this machine cannot write: a bad name,
    a folder that is a file or read-only, a path too long (tried for real, with a
    temp file whose name is as long as the target's)."""
    target = Path(target)
    problem = name_problem(target.name)
    if problem:
        raise CalibrationError(f"cannot write {target}: its name has {problem}")
    if ON_WINDOWS and len(str(target.absolute())) > WINDOWS_MAX_PATH:
        raise CalibrationError(
            f"cannot write {target}: the path is {len(str(target.absolute()))} characters, "
            f"over Windows' {WINDOWS_MAX_PATH}; move ComfyUI or the calibration folder "
            f"(extra_model_paths.yaml) to a shorter path"
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        pad = max(0, len(target.name) - len(TEMP_PREFIX + TEMP_SUFFIX) - 24)
        probe = _new_temp_file(target.parent, "x" * pad + TEMP_SUFFIX)
    except OSError as exc:
        raise CalibrationError(
            f"cannot write into {target.parent} ({exc.strerror or exc}); check that it is a "
            f"folder you can write to"
        ) from None
    probe.unlink(missing_ok=True)


def remove_stale_temp_files(
    folder: Path, older_than: float = STALE_TEMP_SECONDS, suffix: str = TEMP_SUFFIX
) -> int:
    """Delete temp files whose writer is gone or that are older than `older_than`
    seconds, also the `.tmp-*.json` names earlier versions used; returns how many.
    A file another program still holds (Windows) is left for a later write."""
    removed = 0
    now = time.time()
    for path in [
        *folder.glob(TEMP_PREFIX + "*" + suffix),
        *folder.glob(TEMP_PREFIX + "*.json"),
    ]:
        try:
            mtime = path.stat().st_mtime
            if now - mtime <= older_than and writer_alive(path.name, mtime):
                continue
            path.unlink()
            removed += 1
        except OSError:  # its writer finished or another cleaned it; or still held
            pass
    return removed


def writer_alive(name: str, written_at: float) -> bool:
    """Whether the process named in a temp file's name still runs and is the one
    that wrote it (started before the file's time: process ids are reused). Asks
    the process table, never a signal (unknown: yes)."""
    match = re.match(re.escape(TEMP_PREFIX) + r"(\d+)-", name)
    if not match:
        return True  # a name without a process id: only its age can tell
    pid = int(match.group(1))
    if pid == os.getpid():
        return True
    try:
        import psutil  # a ComfyUI requirement
    except ImportError:
        return True
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except (psutil.Error, OSError, ValueError, OverflowError):
        return True  # e.g. another user's process: it exists
    return started <= written_at + 1.0  # the clocks differ by rounding only


def _new_temp_file(folder: Path, suffix: str) -> Path:
    """Create an empty temp file with the umask's mode (mkstemp would give 0600)."""
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = folder / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}{suffix}"
        try:
            os.close(os.open(path, flags, 0o666))
            return path
        except FileExistsError:
            continue
    raise CalibrationError(f"cannot create a temp file in {folder}")


def _replace(tmp: Path, target: Path) -> None:
    """os.replace, waiting briefly while another program holds the target (Windows
    refuses the rename then; POSIX never does)."""
    deadline = time.monotonic() + REPLACE_WAIT_SECONDS
    delay = 0.02
    while True:
        try:
            os.replace(tmp, target)
            return
        except PermissionError as exc:
            if time.monotonic() >= deadline:
                raise CalibrationError(
                    f"cannot replace {target}: another program holds it open "
                    f"({exc.strerror}); close it and run again (the previous file is unchanged)"
                ) from None
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows cannot open a folder."""
    if ON_WINDOWS:
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

"""Calibration files: one JSON file per (checkpoint, latent size), read from
several folders (the pack's shipped `calibration_data/` and the user's folder)
and written to one (the user's), atomically (atomic_write: a crash or a failed
write never leaves a partial file or destroys the previous one).

Which files serve a latent size is the lookup policy of noisecal.size_lookup;
what a file must hold is noisecal.calibration_record.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..noisecal import calibration_record
from ..noisecal.calibration_record import (
    check_model_type,
    loads,
    record_key,
    record_latent_size,
    validate,
)
from ..noisecal.checkpoint_key import CheckpointKey
from ..noisecal.errors import CalibrationError
from ..noisecal.size_lookup import choose_sizes, not_found
from .atomic_write import TEMP_PREFIX, check_writable, write_atomically


def file_name(key: CheckpointKey, latent_size: tuple[int, int]) -> str:
    h, w = (int(v) for v in latent_size)
    return f"{key.file_stem()}__{h}x{w}.json"


def load(path: str | os.PathLike) -> dict:
    """Read and validate one calibration file; errors name the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        limit = calibration_record.MAX_FILE_BYTES  # one limit for a file and a pasted text
        if size > limit:
            raise CalibrationError(
                f"{path}: {size} bytes is larger than a calibration file can be "
                f"({limit} bytes at most)"
            )
        data = path.read_bytes()
    except FileNotFoundError:
        raise CalibrationError(f"{path}: file not found") from None
    except OSError as exc:
        raise CalibrationError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark some editors add is fine
    except UnicodeDecodeError as exc:
        raise CalibrationError(
            f"{path}: not UTF-8 text (byte {exc.start}); a calibration file is JSON "
            f"written by the Calibrate node"
        ) from None
    return loads(text, str(path))


def load_for(path: str | os.PathLike, key: CheckpointKey) -> dict:
    """load(path), refused when the file belongs to another checkpoint than `key`."""
    record = load(path)
    if record_key(record).identity != key.identity:
        raise CalibrationError(
            f"{path}: belongs to {record_key(record).describe()}, "
            f"not {key.describe()} (renamed file?)"
        )
    return record


def save(record: dict, folder: str | os.PathLike) -> Path:
    """Atomically write a validated record into `folder`; returns its path."""
    validate(record, "calibration to save")
    target = Path(folder) / file_name(record_key(record), record_latent_size(record))

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=1, allow_nan=False)

    write_atomically(target, write)
    return target


@dataclass(frozen=True)
class Match:
    """What `find` returns: one record, or two that bracket the token count."""

    records: tuple[dict, ...]
    weights: tuple[float, ...]  # interpolation weights in log token count, sum 1
    paths: tuple[str, ...]


class CalibrationStore:
    """Read from several folders (first wins on equal names), write to one."""

    def __init__(self, read_dirs, write_dir=None):
        self.read_dirs = [Path(d) for d in read_dirs]
        self.write_dir = Path(write_dir) if write_dir is not None else None

    def save(self, record: dict) -> Path:
        if self.write_dir is None:
            raise CalibrationError("this store has no folder to write to")
        return save(record, self.write_dir)

    def check_writable(self, key: CheckpointKey, latent_size) -> Path:
        """Refuse, before any network call, a calibration this store could not write."""
        if self.write_dir is None:
            raise CalibrationError("this store has no folder to write to")
        target = self.write_dir / file_name(key, latent_size)
        check_writable(target)
        return target

    def fingerprint_files(self) -> str:
        """Names, sizes and times of every calibration file: changes when any does."""
        parts = []
        for folder in self.read_dirs:
            if folder.is_dir():
                for path in sorted(folder.glob("*.json")):
                    if path.name.startswith(TEMP_PREFIX):
                        continue  # a write in progress, or one a killed writer left
                    stat = path.stat()
                    parts.append(f"{path}|{stat.st_size}|{stat.st_mtime_ns}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def files_for(self, key: CheckpointKey) -> dict[tuple[int, int], Path]:
        """Calibration files of one checkpoint, by latent (h, w)."""
        prefix = key.file_stem() + "__"
        found: dict[tuple[int, int], Path] = {}
        for folder in self.read_dirs:
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob(prefix + "*.json")):
                m = re.fullmatch(re.escape(prefix) + r"(\d+)x(\d+)\.json", path.name)
                if m:
                    found.setdefault((int(m.group(1)), int(m.group(2))), path)
        return found

    def files_of_class(self, key: CheckpointKey) -> list[Path]:
        """Every calibration file named for a checkpoint of `key`'s model class."""
        prefix = key.class_stem() + "-"
        paths: list[Path] = []
        for folder in self.read_dirs:
            if folder.is_dir():
                paths += sorted(
                    p
                    for p in folder.glob(prefix + "*__*.json")
                    if not p.name.startswith(TEMP_PREFIX)
                )
        return paths

    def find(
        self, key: CheckpointKey, latent_size: tuple[int, int], parameterization=None
    ) -> Match:
        """Apply the lookup policy in the module docstring; a file made for another
        model type (class, latent format, ``parameterization``) is refused."""
        files = self.files_for(key)
        chosen = choose_sizes(list(files), latent_size)
        if chosen is None:
            raise not_found(key, latent_size, list(files))
        paths = [files[size] for size, _ in chosen]
        return self._match(paths, [w for _, w in chosen], key, parameterization)

    def _match(self, paths, weights, key: CheckpointKey, parameterization=None) -> Match:
        records = []
        for path in paths:
            record = load_for(path, key)
            check_model_type(record, key, parameterization, str(path))
            records.append(record)
        return Match(tuple(records), tuple(weights), tuple(str(p) for p in paths))

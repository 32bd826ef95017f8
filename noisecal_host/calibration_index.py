"""The index of the calibration files the browser's routes serve (routes.py):
each file's summary by an id that is a digest of its folder and name.

The index keeps each file's summary keyed by its folder, name, size, mtime (ns)
and inode: a list stats every file but parses and validates only the new or
changed ones, and drops the removed ones. It is shared by all requests; a lock
serializes refreshes, and concurrent requests share one refresh (one that
started after they arrived). All file work (scan, parse, plot, unlink) runs in
worker threads, never on the event loop. A plot or DELETE of an id the index
does not hold answers 404 without listing a folder when the folders have not
changed since the index was built (their mtime, checked with one stat each);
otherwise the index is refreshed once and asked again. See docs/reliability.md
("Routes at scale").
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..noisecal import calibration_record, calibration_summary, errors
from . import atomic_write
from . import store as store_mod

log = logging.getLogger("noise_calibration")

ID_LENGTH = 32
ID_PATTERN = re.compile(rf"[0-9a-f]{{{ID_LENGTH}}}")
MAX_FILES = 10_000  # a folder holding more is not listed past this many
# A folder whose mtime is this close to (or after) the scan that indexed it may
# have changed within the file system's timestamp granularity: not trusted as fresh.
RACY_NS = 2_000_000_000


def file_id(folder: Path, name: str) -> str:
    return _file_id(folder.resolve(), name)


def _file_id(resolved_folder: Path, name: str) -> str:
    digest = hashlib.sha256(f"{resolved_folder}\0{name}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:ID_LENGTH]


def regular_file(path: Path):
    """The file's stat when it is a regular file (not a link), else None."""
    try:
        st = path.lstat()
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def scan(calibration_store) -> dict[str, dict]:
    """id -> {"path", "folder", "deletable", "stat", "shadowed"} for every calibration
    file in the store's folders (write folder first wins on equal names, as the
    store reads them)."""
    entries: dict[str, dict] = {}
    seen: set[str] = set()
    write_dir = calibration_store.write_dir
    write_dir = write_dir.resolve() if write_dir is not None else None
    shipped = Path(__file__).resolve().parent.parent / "calibration_data"
    for folder in calibration_store.read_dirs:
        try:
            if not folder.is_dir():
                continue
            resolved = folder.resolve()
            # by name, as Paths of one folder compare (case-folded on Windows)
            paths = sorted(folder.glob("*.json"), key=lambda p: os.path.normcase(p.name))
            paths = paths[:MAX_FILES]
        except OSError:
            continue
        kind = "user" if resolved == write_dir else "shipped" if resolved == shipped else "extra"
        for path in paths:
            if path.name.startswith(atomic_write.TEMP_PREFIX):
                continue
            st = regular_file(path)
            if st is None:
                continue
            entries[_file_id(resolved, path.name)] = {
                "path": path,
                "folder": kind,
                "deletable": kind == "user",
                "stat": st,
                "shadowed": path.name in seen,
            }
            seen.add(path.name)
    return entries


def _finite(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def summary(entry_id: str, entry: dict) -> dict:
    """What the list shows of one file."""
    return {**_context(entry_id, entry), **parse_summary(entry["path"])}


def _context(entry_id: str, entry: dict) -> dict:
    """The list's fields of a file that come from its folder and stat, not its content."""
    path, st = entry["path"], entry["stat"]
    return {
        "id": entry_id,
        "file": path.name,
        "folder": entry["folder"],
        "deletable": entry["deletable"],
        "shadowed": entry["shadowed"],
        "size": st.st_size,
        "modified": st.st_mtime,
    }


def parse_summary(path: Path) -> dict:
    """The list's fields read from the file (parsed and validated): its error when it
    does not load."""
    try:
        record = store_mod.load(path)
    except errors.CalibrationError as exc:
        return {"error": str(exc).replace(str(path), path.name)}
    item = {}
    key = calibration_record.record_key(record)
    res = record["resolution"]
    methods = ["noiseshift"]
    if record.get("correction"):
        methods.append(f"nlc ({record['correction'].get('sampler', 'euler')})")
    if record.get("correction_joint"):
        methods.append("nlc joint")
    if record.get("check"):
        methods.append("held-out check")
    # what Apply uses (the recommendation with its guidance) and its gain over plain;
    # the one-step error summed over steps: the numbers the Calibrate node shows
    recommendation = {"name": calibration_record.recommendation(record)["name"]}
    gain = calibration_summary.recommendation_gain(record)
    if gain is not None:
        recommendation.update(
            gain=_finite(gain["gain"]),
            gain_noise=_finite(gain["gain_noise"]),
            held_out=record["check"].get("held_out"),
        )
    error = calibration_summary.one_step_error(record) or {}
    item.update(
        checkpoint={
            "identity": key.identity,
            "label": key.label,
            "fingerprint": key.fingerprint[:16],
            "model_class": key.model_class,
            "latent_format": key.latent_format,
            "name": key.describe(),
        },
        resolution=res,
        parameterization=record["parameterization"],
        method=record["method"]["name"],
        steps=len(record["sigmas"]),
        methods=methods,
        recommendation=recommendation,
        metrics={
            "error_before": error.get("before"),
            "error_after": error.get("after"),
            "ratio": _finite(error.get("ratio")),
        },
        calibration_set={
            "count": record["calibration_set"]["count"],
            "source": record["calibration_set"]["source"],
        },
        network_evaluations=record["cost"]["network_evaluations"],
        wall_time_s=_finite(record["cost"]["wall_time_s"]),
        created_at=record["created_at"],
    )
    return item


def folders_state(calibration_store) -> tuple:
    """One stat per folder the store reads: ((folder, resolved, inode, mtime_ns), ...)
    and the resolved write folder. Files added, removed or renamed change their
    folder's mtime; a file rewritten in place does not (the list stats every file)."""
    state = []
    for folder in calibration_store.read_dirs:
        try:
            st = folder.stat()
            resolved = str(folder.resolve()) if stat.S_ISDIR(st.st_mode) else None
            state.append((str(folder), resolved, st.st_ino, st.st_mtime_ns))
        except OSError:
            state.append((str(folder), None, None, None))
    write_dir = calibration_store.write_dir
    try:
        write = str(write_dir.resolve()) if write_dir is not None else None
    except OSError:
        write = str(write_dir)
    return tuple(state), write


def _config(state: tuple) -> tuple:
    """folders_state without the mtimes: which folders, and which one is written."""
    folders, write = state
    return tuple(f[:3] for f in folders), write


@dataclass(frozen=True)
class Snapshot:
    """One refresh of the index: read by requests, never changed."""

    entries: dict  # id -> scan() entry
    items: list  # summaries, newest first
    state: tuple  # folders_state() just before the scan
    scanned_ns: int  # time.time_ns() just before the scan
    write_folder: str | None
    version: int  # changes whenever the list's content does
    shape: tuple = ()  # (id, folder kind, shadowed) in scan order


@dataclass(eq=False)
class CalibrationIndex:
    """The store's files with their summaries, shared by all requests of one server.

    refresh_now() (a worker thread) stats every file and parses and validates only
    those whose (size, mtime_ns, inode) changed or that are new; removed files drop
    out. Refreshes are serialized by a lock; await refresh() shares one refresh
    among concurrent callers (one that started after each of them called).
    """

    store_factory: object
    scans: int = 0  # folder scans (listing every file), for tests and benchmarks
    parses: int = 0  # files parsed and validated
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _parsed: dict = field(default_factory=dict)  # id -> ((size, mtime_ns, ino), fields)
    _snapshot: Snapshot | None = None
    _loop: object = None
    _running: object = None  # the refresh task in flight
    _next: object = None  # the one that starts after it, for those who came during it

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def refresh_now(self) -> Snapshot:
        """Scan the folders and update the index (blocking: call it off the loop)."""
        with self._lock:
            calibration_store = self.store_factory()
            started = time.time_ns()
            state = folders_state(calibration_store)
            entries = scan(calibration_store)
            self.scans += 1
            parsed, shape, changed = {}, [], False
            for entry_id, entry in entries.items():
                st = entry["stat"]
                signature = (st.st_size, st.st_mtime_ns, st.st_ino)
                cached = self._parsed.get(entry_id)
                if cached is None or cached[0] != signature:
                    cached = (signature, parse_summary(entry["path"]))
                    self.parses += 1
                    changed = True
                parsed[entry_id] = cached
                shape.append((entry_id, entry["folder"], entry["shadowed"]))
            self._parsed = parsed
            previous = self._snapshot
            write_dir = calibration_store.write_dir
            write_folder = write_dir.name if write_dir is not None else None
            shape = tuple(shape)
            if (
                previous is not None
                and not changed
                and previous.shape == shape
                and previous.write_folder == write_folder
            ):
                items, version = previous.items, previous.version
            else:
                items = [
                    {**_context(entry_id, entry), **parsed[entry_id][1]}
                    for entry_id, entry in entries.items()
                ]
                items.sort(key=lambda e: e.get("created_at") or "", reverse=True)
                version = previous.version + 1 if previous is not None else 1
            self._snapshot = Snapshot(entries, items, state, started, write_folder, version, shape)
            return self._snapshot

    def lookup_now(self, entry_id: str):
        """(entry or None, trusted): trusted when a miss needs no refresh, because the
        folders are those the index last scanned, unchanged since (blocking: one stat
        per folder)."""
        snapshot = self._snapshot
        if snapshot is None:
            return None, False
        state = folders_state(self.store_factory())
        if _config(state) != _config(snapshot.state):
            return None, False  # other folders than those indexed: refresh first
        entry = snapshot.entries.get(entry_id)
        if entry is not None:
            return entry, True
        fresh = state == snapshot.state and all(
            mtime is not None and mtime < snapshot.scanned_ns - RACY_NS for *_, mtime in state[0]
        )
        return None, fresh

    async def refresh(self) -> Snapshot:
        """The index, refreshed by a scan that started after this call; concurrent
        callers share one (at most two scans run for any number of callers)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # tasks belong to one loop (tests run several)
            self._loop, self._running, self._next = loop, None, None
        if self._running is None:
            self._running = loop.create_task(self._refresh_task(None))
            task = self._running
        else:
            if self._next is None:
                self._next = loop.create_task(self._refresh_task(self._running))
            task = self._next
        return await asyncio.shield(task)

    async def _refresh_task(self, previous):
        if previous is not None:
            try:
                await previous
            except Exception:  # noqa: BLE001, S110 (its callers got the error)
                pass
        try:
            return await asyncio.to_thread(self.refresh_now)
        finally:
            if self._running is asyncio.current_task():
                self._running, self._next = self._next, None

    async def find(self, entry_id: str):
        """The entry of an id, or None; refreshes (once) only when the index is not
        known to be fresh. Blocking work runs in worker threads."""
        entry, trusted = await asyncio.to_thread(self.lookup_now, entry_id)
        if entry is not None or trusted:
            return entry
        return (await self.refresh()).entries.get(entry_id)

"""HTTP routes of the pack's calibrations browser (web/js/noise_calibration.js).

    GET    /noise_calibration/calibrations              the list (JSON)
    GET    /noise_calibration/calibrations/{id}/plot.png one file's plot
    DELETE /noise_calibration/calibrations/{id}          delete one file (user folder only)

ComfyUI serves each route under /api as well. A file is reached only by the
id the list gives it (32 hex digits: a digest of its folder and name): the
handlers scan the store's folders and pick the entry whose id matches; nothing
from the request is ever joined onto a folder. An id that is not 32 hex
digits is refused before any folder is read. Symbolic links and anything but
regular files are never listed, so never reached. Only files in the folder the
pack writes to can be deleted; the shipped calibrations are read-only.

A delete is refused (403) unless it comes from the ComfyUI page itself, the
rule ComfyUI applies to its own routes (server.py, origin_only_middleware): a
browser request whose Origin names another host than the Host it was sent to,
or that the browser marks as cross-site (Sec-Fetch-Site), is refused. The
handler checks this itself, so it also holds where the server runs with
--enable-cors-header (which turns ComfyUI's check off). With --multi-user the
request must name a known user (the Comfy-User header the frontend sends), as
ComfyUI's /userdata routes require. A request without Origin (a script on a
machine that reaches the server) is accepted, as ComfyUI's /prompt accepts it.
See docs/web-extension.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import math
import re
import stat
import threading
import urllib.parse
from pathlib import Path

from ..noisecal import store as store_mod

log = logging.getLogger("noise_calibration")

PREFIX = "/noise_calibration"
ID_LENGTH = 32
ID_PATTERN = re.compile(rf"[0-9a-f]{{{ID_LENGTH}}}")
MAX_FILES = 10_000  # a folder holding more is not listed past this many
_plot_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe


def file_id(folder: Path, name: str) -> str:
    digest = hashlib.sha256(f"{folder.resolve()}\0{name}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:ID_LENGTH]


def _regular(path: Path):
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
            paths = sorted(folder.glob("*.json"))[:MAX_FILES]
        except OSError:
            continue
        kind = "user" if resolved == write_dir else "shipped" if resolved == shipped else "extra"
        for path in paths:
            if path.name.startswith(store_mod.TEMP_PREFIX):
                continue
            st = _regular(path)
            if st is None:
                continue
            entries[file_id(folder, path.name)] = {
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


def _mean(values):
    values = [v for v in values or [] if _finite(v) is not None]
    return sum(values) / len(values) if values else None


def summary(entry_id: str, entry: dict) -> dict:
    """What the list shows of one file."""
    path, st = entry["path"], entry["stat"]
    item = {
        "id": entry_id,
        "file": path.name,
        "folder": entry["folder"],
        "deletable": entry["deletable"],
        "shadowed": entry["shadowed"],
        "size": st.st_size,
        "modified": st.st_mtime,
    }
    try:
        record = store_mod.load(path)
    except store_mod.CalibrationError as exc:
        item["error"] = str(exc).replace(str(path), path.name)
        return item
    key = store_mod.record_key(record)
    res = record["resolution"]
    methods = ["noiseshift"]
    if record.get("correction"):
        methods.append(f"nlc ({record['correction'].get('sampler', 'euler')})")
    if record.get("correction_joint"):
        methods.append("nlc joint")
    if record.get("check"):
        methods.append("held-out check")
    chosen = store_mod.recommendation(record)
    recommendation = {"name": chosen["name"]}
    check = record.get("check")
    if check:
        candidate = check["candidates"][check["recommendation"]]
        recommendation.update(gain=candidate["gain"], gain_noise=candidate["gain_noise"])
        recommendation["held_out"] = check.get("held_out")
    before = _mean(record["metrics"].get("error_before"))
    after = _mean(record["metrics"].get("error_after"))
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
            "error_before": before,
            "error_after": after,
            "ratio": after / before if before and after is not None else None,
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


def ui_request_problem(request, server=None) -> str | None:
    """Why a write or delete does not come from the ComfyUI page, or None."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site.lower() != "same-origin":
        return f"a {fetch_site} request (only the ComfyUI page itself may delete)"
    origin = request.headers.get("Origin")
    if origin is not None:
        host = request.headers.get("Host", "").lower()
        try:
            parsed = urllib.parse.urlsplit(origin.lower())
            host_parsed = urllib.parse.urlsplit("//" + host)
            origin_host = parsed.netloc
            # as ComfyUI compares them: a side without a port drops the other's
            if parsed.port is None:
                host = host_parsed.hostname or ""
            if host_parsed.port is None:
                origin_host = parsed.hostname or ""
        except ValueError:  # a port that is no number
            return f"an Origin ({origin!r}) or Host ({host!r}) that does not parse"
        if not host or origin_host != host:
            return f"the request's Origin {origin!r} is not this server ({host!r})"
    if server is not None and _multi_user():
        try:
            server.user_manager.get_request_user_id(request)
        except KeyError:
            return "an unknown user (--multi-user: the Comfy-User header must name a user)"
    return None


def _multi_user() -> bool:
    try:
        from comfy.cli_args import args
    except ImportError:
        return False
    return bool(getattr(args, "multi_user", False))


def render_png(record: dict) -> bytes:
    from PIL import Image

    from .plots import calibration_plot

    with _plot_lock:
        rgb = calibration_plot(record)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def add_routes(routes, store_factory, server=None) -> None:
    """Add the handlers to an aiohttp RouteTableDef. store_factory() returns the
    CalibrationStore to read (called per request: folders can change)."""
    from aiohttp import web

    def error(status: int, text: str):
        return web.json_response({"error": text}, status=status)

    def find(request):
        """(entry id, entry) for the request's id, or an error response."""
        entry_id = request.match_info.get("id", "")
        if not ID_PATTERN.fullmatch(entry_id):
            return None, error(400, f"not a calibration id (expected {ID_LENGTH} hex digits)")
        entry = scan(store_factory()).get(entry_id)
        if entry is None:
            return None, error(404, "no calibration has this id (deleted? refresh the list)")
        return (entry_id, entry), None

    @routes.get(PREFIX + "/calibrations")
    async def list_calibrations(request):
        calibration_store = store_factory()
        entries = await asyncio.to_thread(
            lambda: [summary(i, e) for i, e in scan(calibration_store).items()]
        )
        entries.sort(key=lambda e: e.get("created_at") or "", reverse=True)
        write_dir = calibration_store.write_dir
        return web.json_response(
            {
                "calibrations": entries,
                "write_folder": write_dir.name if write_dir is not None else None,
            },
            headers={"Cache-Control": "no-store"},
        )

    @routes.get(PREFIX + "/calibrations/{id}/plot.png")
    async def plot(request):
        found, response = find(request)
        if response is not None:
            return response
        _, entry = found
        try:
            record = await asyncio.to_thread(store_mod.load, entry["path"])
        except store_mod.CalibrationError as exc:
            return error(422, str(exc).replace(str(entry["path"]), entry["path"].name))
        png = await asyncio.to_thread(render_png, record)
        return web.Response(
            body=png, content_type="image/png", headers={"Cache-Control": "no-store"}
        )

    @routes.delete(PREFIX + "/calibrations/{id}")
    async def delete(request):
        problem = ui_request_problem(request, server)
        if problem is not None:
            log.warning("refused to delete a calibration: %s", problem)
            return error(403, f"refused: {problem}")
        found, response = find(request)
        if response is not None:
            return response
        _, entry = found
        if not entry["deletable"]:
            return error(403, "a shipped calibration is read-only: only the user folder's can go")
        path = entry["path"]
        if _regular(path) is None:  # replaced since the scan
            return error(404, "no calibration has this id (deleted? refresh the list)")
        try:
            path.unlink()
        except FileNotFoundError:
            return error(404, "no calibration has this id (deleted? refresh the list)")
        except OSError as exc:
            return error(500, f"could not delete {path.name}: {exc.strerror}")
        log.info("deleted calibration %s", path.name)
        return web.json_response({"deleted": path.name})


def register_with_server() -> bool:
    """Add the routes to ComfyUI's server when there is one (True when added)."""
    try:
        from server import PromptServer
    except ImportError:
        return False
    server = getattr(PromptServer, "instance", None)
    if server is None:
        return False
    from . import folders

    add_routes(server.routes, folders.user_store, server)
    return True

"""HTTP routes of the pack's calibrations browser (web/js/noise_calibration.js).

    GET    /noise_calibration/calibrations              the list (JSON), a page of it:
                                                        ?offset=0&limit=200 (at most 1000)
    GET    /noise_calibration/calibrations/{id}/plot.png one file's plot (?width=: drawn
                                                      that many pixels wide)
    DELETE /noise_calibration/calibrations/{id}          delete one file (user folder only)

ComfyUI serves each route under /api as well. A file is reached only by the
id the list gives it (32 hex digits: a digest of its folder and name): the
handlers look the id up in an index of the store's folders (CalibrationIndex)
and take the entry whose id matches; nothing from the request is ever joined
onto a folder. An id that is not 32 hex
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
The index of the files is calibration_index.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
import urllib.parse
from pathlib import Path

from ..noisecal import errors
from . import store as store_mod
from .calibration_index import ID_LENGTH, ID_PATTERN, CalibrationIndex, regular_file

log = logging.getLogger("noise_calibration")

PREFIX = "/noise_calibration"
DEFAULT_LIMIT = 200  # list entries per page unless ?limit= says otherwise
MAX_LIMIT = 1000
PLOT_WIDTH = (160, 2000)  # pixels: a plot drawn for the width it is shown at (?width=)
PAGE_NUMBER = re.compile(r"[0-9]{1,9}")
_plot_lock = threading.Lock()  # matplotlib's pyplot is not thread-safe


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


def render_png(record: dict, width: int | None = None) -> bytes:
    from PIL import Image

    from .plots import calibration_plot

    with _plot_lock:
        rgb = calibration_plot(record, width)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def page_bounds(query) -> tuple[int, int] | str:
    """(offset, limit) of a list request's query, or why they are refused."""
    bounds = {}
    for name, default, low, high in (
        ("offset", 0, 0, 10**9 - 1),
        ("limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
    ):
        values = query.getall(name, [])
        if len(values) > 1:
            return f"{name} is given {len(values)} times"
        if not values:
            bounds[name] = default
            continue
        text = values[0]
        if not PAGE_NUMBER.fullmatch(text) or not low <= int(text) <= high:
            return f"{name} must be a whole number from {low} to {high}"
        bounds[name] = int(text)
    return bounds["offset"], bounds["limit"]


def plot_width(query) -> int | None | str:
    """The plot's width in pixels from a query's `width` (None: the node's figure),
    or why it is refused."""
    values = query.getall("width", [])
    if not values:
        return None
    low, high = PLOT_WIDTH
    if len(values) > 1 or not PAGE_NUMBER.fullmatch(values[0]) or not low <= int(values[0]) <= high:
        return f"width must be given once, a whole number from {low} to {high}"
    return int(values[0])


def _unlink(path: Path):
    """Delete a file the index found: None, or (status, text) why not."""
    if regular_file(path) is None:  # replaced or removed since the scan
        return 404, "no calibration has this id (deleted? refresh the list)"
    try:
        path.unlink()
    except FileNotFoundError:
        return 404, "no calibration has this id (deleted? refresh the list)"
    except OSError as exc:
        return 500, f"could not delete {path.name}: {exc.strerror}"
    return None


def _load_for_plot(path: Path):
    """The record to plot, or (status, text) why not (blocking)."""
    if regular_file(path) is None:  # replaced or removed since the scan
        return None, (404, "no calibration has this id (deleted? refresh the list)")
    try:
        return store_mod.load(path), None
    except errors.CalibrationError as exc:
        return None, (422, str(exc).replace(str(path), path.name))


def add_routes(routes, store_factory, server=None) -> CalibrationIndex:
    """Add the handlers to an aiohttp RouteTableDef. store_factory() returns the
    CalibrationStore to read (called per refresh: folders can change). Returns the
    index the handlers share."""
    from aiohttp import web

    index = CalibrationIndex(store_factory)

    def error(status: int, text: str):
        return web.json_response({"error": text}, status=status)

    async def find(request):
        """(entry id, entry) for the request's id, or an error response."""
        entry_id = request.match_info.get("id", "")
        if not ID_PATTERN.fullmatch(entry_id):
            return None, error(400, f"not a calibration id (expected {ID_LENGTH} hex digits)")
        entry = await index.find(entry_id)
        if entry is None:
            return None, error(404, "no calibration has this id (deleted? refresh the list)")
        return (entry_id, entry), None

    @routes.get(PREFIX + "/calibrations")
    async def list_calibrations(request):
        bounds = page_bounds(request.query)
        if isinstance(bounds, str):
            return error(400, bounds)
        offset, limit = bounds
        snapshot = await index.refresh()
        payload = {
            "calibrations": snapshot.items[offset : offset + limit],
            "write_folder": snapshot.write_folder,
            "total": len(snapshot.items),
            "offset": offset,
            "limit": limit,
            "version": snapshot.version,
        }
        body = await asyncio.to_thread(json.dumps, payload)
        return web.Response(
            text=body, content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    @routes.get(PREFIX + "/calibrations/{id}/plot.png")
    async def plot(request):
        found, response = await find(request)
        if response is not None:
            return response
        _, entry = found
        width = plot_width(request.query)
        if isinstance(width, str):
            return error(400, width)
        record, problem = await asyncio.to_thread(_load_for_plot, entry["path"])
        if problem is not None:
            return error(*problem)
        png = await asyncio.to_thread(render_png, record, width)
        return web.Response(
            body=png, content_type="image/png", headers={"Cache-Control": "no-store"}
        )

    @routes.delete(PREFIX + "/calibrations/{id}")
    async def delete(request):
        problem = ui_request_problem(request, server)
        if problem is not None:
            log.warning("refused to delete a calibration: %s", problem)
            return error(403, f"refused: {problem}")
        found, response = await find(request)
        if response is not None:
            return response
        _, entry = found
        if not entry["deletable"]:
            return error(403, "a shipped calibration is read-only: only the user folder's can go")
        path = entry["path"]
        problem = await asyncio.to_thread(_unlink, path)
        if problem is not None:
            return error(*problem)
        log.info("deleted calibration %s", path.name)
        return web.json_response({"deleted": path.name})

    return index


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

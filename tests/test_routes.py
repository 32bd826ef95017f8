"""The calibrations browser's HTTP routes (noisecal_host/routes.py) through aiohttp's
test client: the list, the plot, delete, and hostile ids on every route."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="aiohttp (a ComfyUI requirement) is not installed")
from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from noise_calibration.noisecal import calibration_record, calibration_summary  # noqa: E402
from noise_calibration.noisecal.checkpoint_key import CheckpointKey  # noqa: E402
from noise_calibration.noisecal_host import calibration_index, routes, store  # noqa: E402
from noise_calibration.noisecal_host.store import CalibrationStore  # noqa: E402

KEY = CheckpointKey("ab" * 32, "SD3", "SD3", "browser test")
OTHER = CheckpointKey("cd" * 32, "Flux", "Flux")
BASE = routes.PREFIX + "/calibrations"
SAME_ORIGIN = {"Origin": "http://127.0.0.1:8190", "Host": "127.0.0.1:8190"}


def record(key=KEY, latent=(16, 16)):
    sigmas = [1.0, 0.75, 0.5, 0.25]
    return calibration_record.make_record(
        key=key,
        image_size=(latent[1] * 8, latent[0] * 8),
        latent_size=latent,
        parameterization="flow",
        method="noiseshift-fast",
        method_params={},
        sigmas=sigmas,
        sigma_hat=[s * 0.9 for s in sigmas],
        calibration_set={"count": 8, "source": "testbed", "seed": 0},
        error_before=[1, 2, 3, 4],
        error_after=[1, 1, 1, 1],
        network_evaluations=96,
        wall_time_s=1.5,
    )


@pytest.fixture
def folders(tmp_path):
    user, shipped, outside = tmp_path / "user", tmp_path / "shipped", tmp_path / "outside"
    for folder in (user, shipped, outside):
        folder.mkdir()
    store.save(record(), user)
    store.save(record(latent=(32, 32)), user)
    store.save(record(OTHER), shipped)
    store.save(record(OTHER, latent=(8, 8)), outside)  # reachable only through a link
    return user, shipped, outside


def call(folders, requests, server=None):
    """Run `requests(client)` (a coroutine function) against an app with the routes."""
    user, shipped, _ = folders

    async def main():
        table = web.RouteTableDef()
        routes.add_routes(table, lambda: CalibrationStore([user, shipped], user), server)
        app = web.Application()
        app.add_routes(table)
        async with TestClient(TestServer(app)) as client:
            return await requests(client)

    return asyncio.run(main())


async def listing(client):
    response = await client.get(BASE)
    assert response.status == 200
    return (await response.json())["calibrations"]


def by_file(items):
    return {item["file"]: item for item in items}


def test_the_list_shows_what_each_calibration_found(folders):
    items = by_file(call(folders, listing))
    assert len(items) == 3
    mine = items[store.file_name(KEY, (16, 16))]
    assert mine["checkpoint"]["label"] == "browser test"
    assert mine["checkpoint"]["model_class"] == "SD3"
    assert mine["resolution"]["image_width"] == 128 and mine["resolution"]["latent_height"] == 16
    assert mine["steps"] == 4 and mine["methods"] == ["noiseshift"]
    assert mine["recommendation"]["name"] == "noiseshift@1"
    # summed over steps, as the Calibrate node shows it
    assert mine["metrics"]["error_before"] == 10 and mine["metrics"]["error_after"] == 4
    assert mine["created_at"] and mine["size"] > 0
    assert mine["deletable"] and mine["folder"] == "user"
    shipped = items[store.file_name(OTHER, (16, 16))]
    assert not shipped["deletable"] and shipped["folder"] == "extra"  # a read-only folder
    for item in items.values():
        assert routes.ID_PATTERN.fullmatch(item["id"])
        assert str(folders[0].parent) not in json.dumps(item)  # no folder paths leave


def test_a_broken_file_is_listed_with_its_error_and_can_be_deleted(folders):
    user = folders[0]
    (user / "broken__16x16.json").write_text("{not json")

    async def requests(client):
        broken = by_file(await listing(client))["broken__16x16.json"]
        assert "not valid JSON" in broken["error"] and str(user) not in broken["error"]
        plot = await client.get(f"{BASE}/{broken['id']}/plot.png")
        assert plot.status == 422
        gone = await client.delete(f"{BASE}/{broken['id']}", headers=SAME_ORIGIN)
        assert gone.status == 200

    call(folders, requests)
    assert not (user / "broken__16x16.json").exists()


def test_the_plot_is_a_png(folders):
    async def requests(client):
        item = (await listing(client))[0]
        response = await client.get(f"{BASE}/{item['id']}/plot.png")
        assert response.status == 200 and response.content_type == "image/png"
        return await response.read()

    assert call(folders, requests).startswith(b"\x89PNG\r\n\x1a\n")


def test_the_plot_is_drawn_for_the_width_asked(folders):
    """?width= draws the plot that many pixels wide (the sidebar tab shows it unscaled:
    panels one under another when narrow); a width out of bounds, not a whole number
    or given twice is refused."""
    import io

    from PIL import Image

    async def requests(client):
        item = (await listing(client))[0]
        sizes = {}
        for width in (240, 900):
            response = await client.get(f"{BASE}/{item['id']}/plot.png?width={width}")
            assert response.status == 200 and response.content_type == "image/png"
            sizes[width] = Image.open(io.BytesIO(await response.read())).size
        bad = []
        for query in ("width=5", "width=99999", "width=abc", "width=-300", "width=300&width=400"):
            bad.append((await client.get(f"{BASE}/{item['id']}/plot.png?{query}")).status)
        return sizes, bad

    sizes, bad = call(folders, requests)
    assert sizes[240][0] == 240 and sizes[240][1] > 240  # stacked: taller than wide
    assert sizes[900][0] == 900 and sizes[900][1] < 900  # side by side
    assert bad == [400] * 5


def test_delete_removes_one_user_file_and_never_a_shipped_one(folders):
    user, shipped, _ = folders

    async def requests(client):
        items = by_file(await listing(client))
        mine = items[store.file_name(KEY, (32, 32))]
        response = await client.delete(f"{BASE}/{mine['id']}", headers=SAME_ORIGIN)
        assert response.status == 200, await response.text()
        again = await client.delete(f"{BASE}/{mine['id']}", headers=SAME_ORIGIN)
        assert again.status == 404
        theirs = items[store.file_name(OTHER, (16, 16))]
        refused = await client.delete(f"{BASE}/{theirs['id']}", headers=SAME_ORIGIN)
        assert refused.status == 403 and "read-only" in (await refused.json())["error"]
        return by_file(await listing(client))

    left = call(folders, requests)
    assert store.file_name(KEY, (32, 32)) not in left and len(left) == 2
    assert (shipped / store.file_name(OTHER, (16, 16))).exists()
    assert (user / store.file_name(KEY, (16, 16))).exists()


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example", "Host": "127.0.0.1:8190"},
        {"Origin": "http://127.0.0.1:9999", "Host": "127.0.0.1:8190"},
        {"Origin": "null", "Host": "127.0.0.1:8190"},
        {"Origin": "http://127.0.0.1:x", "Host": "127.0.0.1:8190"},
        {"Sec-Fetch-Site": "cross-site", "Host": "127.0.0.1:8190"},
        {"Sec-Fetch-Site": "same-site", "Host": "127.0.0.1:8190"},
        {**SAME_ORIGIN, "Sec-Fetch-Site": "cross-site"},
    ],
    ids=["other-host", "other-port", "null-origin", "bad-port", "cross-site", "same-site", "mixed"],
)
def test_a_delete_not_from_the_comfyui_page_is_refused(folders, headers):
    user = folders[0]

    async def requests(client):
        item = by_file(await listing(client))[store.file_name(KEY, (16, 16))]
        response = await client.delete(f"{BASE}/{item['id']}", headers=headers)
        return response.status, (await response.json())["error"]

    status, text = call(folders, requests)
    assert status == 403 and text.startswith("refused")
    assert (user / store.file_name(KEY, (16, 16))).exists()


@pytest.mark.parametrize(
    "headers",
    [SAME_ORIGIN, {**SAME_ORIGIN, "Sec-Fetch-Site": "same-origin"}, {}],
    ids=["same-origin", "fetch-metadata", "no-origin"],
)
def test_a_delete_from_the_page_or_a_local_script_is_accepted(folders, headers):
    async def requests(client):
        item = by_file(await listing(client))[store.file_name(KEY, (16, 16))]
        return (await client.delete(f"{BASE}/{item['id']}", headers=headers)).status

    assert call(folders, requests) == 200


def test_multi_user_deletes_need_a_known_user(folders, monkeypatch):
    class UserManager:
        def get_request_user_id(self, request):
            user = request.headers.get("comfy-user", "default")
            if user not in ("default", "alice"):
                raise KeyError("Unknown user: " + user)
            return user

    class Server:
        user_manager = UserManager()

    monkeypatch.setattr(routes, "_multi_user", lambda: True)

    async def requests(client):
        item = by_file(await listing(client))[store.file_name(KEY, (16, 16))]
        url = f"{BASE}/{item['id']}"
        unknown = await client.delete(url, headers={**SAME_ORIGIN, "Comfy-User": "mallory"})
        known = await client.delete(url, headers={**SAME_ORIGIN, "Comfy-User": "alice"})
        return unknown.status, known.status

    assert call(folders, requests, Server()) == (403, 200)


def hostile_ids(folders) -> dict[str, str]:
    user, _, outside = folders
    target = outside / store.file_name(OTHER, (8, 8))
    return {
        "traversal": "../outside/" + target.name,
        "traversal-encoded": "..%2Foutside%2F" + target.name,
        "dotdot": "..",
        "absolute": str(target),
        "absolute-encoded": "%2F" + str(target).lstrip("/").replace("/", "%2F"),
        "file-name": target.name,
        "nul": "a" * 16 + "%00" + "b" * 15,
        "upper-hex": "A" * routes.ID_LENGTH,
        "too-long": "a" * (routes.ID_LENGTH + 1),
        "huge": "a" * 100_000,
        "unicode": "é" * routes.ID_LENGTH,
    }


@pytest.mark.parametrize(
    "case",
    [
        "traversal",
        "traversal-encoded",
        "dotdot",
        "absolute",
        "absolute-encoded",
        "file-name",
        "nul",
        "upper-hex",
        "too-long",
        "huge",
        "unicode",
    ],
)
@pytest.mark.parametrize("route", ["plot", "delete"])
def test_hostile_ids_reach_nothing(folders, case, route):
    user, shipped, outside = folders
    before = sorted(p.name for f in folders for p in f.iterdir())
    hostile = hostile_ids(folders)[case]

    async def requests(client):
        if route == "plot":
            response = await client.get(f"{BASE}/{hostile}/plot.png")
        else:
            response = await client.delete(f"{BASE}/{hostile}", headers=SAME_ORIGIN)
        return response.status, response.content_type

    status, content_type = call(folders, requests)
    assert status in (400, 404, 405, 414, 431), status
    assert content_type != "image/png"
    assert sorted(p.name for f in folders for p in f.iterdir()) == before


def test_symlinks_are_never_listed_nor_reached(folders):
    user, shipped, outside = folders
    target = outside / store.file_name(OTHER, (8, 8))
    try:
        os.symlink(target, user / "linked__8x8.json")
        os.symlink(outside, user / "linked-folder.json")
    except OSError:
        pytest.skip("this file system cannot make symbolic links")
    secret = user.parent / "secret.json"
    secret.write_text(json.dumps(record(OTHER, latent=(4, 4))))
    os.symlink(secret, user / "secret__4x4.json")
    link_ids = {
        calibration_index.file_id(user, name)
        for name in ("linked__8x8.json", "linked-folder.json", "secret__4x4.json")
    }

    async def requests(client):
        items = await listing(client)
        statuses = []
        for link_id in link_ids:
            statuses.append((await client.get(f"{BASE}/{link_id}/plot.png")).status)
            statuses.append((await client.delete(f"{BASE}/{link_id}", headers=SAME_ORIGIN)).status)
        return items, statuses

    items, statuses = call(folders, requests)
    assert {item["file"] for item in items}.isdisjoint(
        {"linked__8x8.json", "linked-folder.json", "secret__4x4.json"}
    )
    assert statuses == [404] * len(statuses)
    assert target.exists() and secret.exists() and (user / "secret__4x4.json").is_symlink()


def test_an_id_names_the_folder_and_the_file():
    from pathlib import Path

    a, b = Path("/calibrations/a"), Path("/calibrations/b")
    assert calibration_index.file_id(a, "x.json") != calibration_index.file_id(b, "x.json")
    assert calibration_index.file_id(a, "x.json") == calibration_index.file_id(a, "x.json")
    assert routes.ID_PATTERN.fullmatch(calibration_index.file_id(a, "x.json"))


def test_without_a_server_nothing_is_registered():
    # the snapshot host has no ComfyUI server module: the pack imports and adds no routes
    try:
        import server  # noqa: F401
    except ImportError:
        assert routes.register_with_server() is False
    else:
        pytest.skip("a ComfyUI server module is importable here")


# ------------------------------------------------------------------ at scale: the index


def serve(folders, requests, write=True):
    """Like call(), with the index the handlers share: requests(client, index)."""
    user, shipped, _ = folders

    async def main():
        table = web.RouteTableDef()
        index = routes.add_routes(table, lambda: CalibrationStore([user, shipped], user))
        app = web.Application()
        app.add_routes(table)
        async with TestClient(TestServer(app)) as client:
            return await requests(client, index)

    return asyncio.run(main())


@pytest.fixture
def parses(monkeypatch):
    """The files parsed and validated (store.load), by name, in order."""
    names = []
    load = store.load

    def counting(path):
        names.append(os.path.basename(path))
        return load(path)

    monkeypatch.setattr(store, "load", counting)
    return names


def age(*folders, seconds=60):
    """Set the folders' mtime in the past, as any folder not written to lately."""
    for folder in folders:
        st = folder.stat()
        os.utime(folder, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9))


def test_a_second_list_parses_no_file(folders, parses):
    async def requests(client, index):
        first = await listing(client)
        parsed = len(parses)
        second = await listing(client)
        return first, parsed, second

    first, parsed, second = serve(folders, requests)
    assert parsed == 3 and len(parses) == 3  # none more for the second list
    assert second == first


def test_a_changed_file_is_parsed_again_and_a_removed_one_drops_out(folders, parses):
    user = folders[0]
    grown = user / store.file_name(KEY, (16, 16))
    touched = user / store.file_name(KEY, (32, 32))

    async def requests(client, index):
        await listing(client)
        parses.clear()
        # rewritten in place with another size (the folder's mtime does not change)
        grown.write_text(json.dumps(json.loads(grown.read_text()), indent=4))
        await listing(client)
        assert parses == [grown.name]
        parses.clear()
        # same size, another mtime
        st = touched.stat()
        os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        items = by_file(await listing(client))
        assert parses == [touched.name]
        assert items[touched.name]["checkpoint"]["label"] == "browser test"
        parses.clear()
        # broken in place: listed with its error
        touched.write_text("{not json")
        items = by_file(await listing(client))
        assert parses == [touched.name] and "not valid JSON" in items[touched.name]["error"]
        parses.clear()
        touched.unlink()
        store.save(record(OTHER, latent=(24, 24)), user)
        response = await client.get(BASE)
        return await response.json()

    body = serve(folders, requests)
    names = {item["file"] for item in body["calibrations"]}
    assert touched.name not in names and store.file_name(OTHER, (24, 24)) in names
    assert body["total"] == 3 == len(names)
    assert parses == [store.file_name(OTHER, (24, 24))]  # only the new file


def many(folders, count):
    user = folders[0]
    for i in range(count):
        store.save(record(CheckpointKey(f"{i:064x}", "SD3", "SD3"), latent=(8, 8 + i)), user)


def test_the_list_comes_in_pages(folders):
    many(folders, 7)  # 10 files in all

    async def requests(client, index):
        whole = await (await client.get(BASE)).json()
        pages = []
        for offset in range(0, 12, 3):
            response = await client.get(BASE, params={"offset": offset, "limit": 3})
            assert response.status == 200
            pages.append(await response.json())
        past = await (await client.get(BASE, params={"offset": 50})).json()
        return whole, pages, past

    whole, pages, past = serve(folders, requests)
    assert whole["total"] == 10 and len(whole["calibrations"]) == 10
    assert whole["offset"] == 0 and whole["limit"] == routes.DEFAULT_LIMIT
    assert whole["write_folder"] == "user"
    assert [len(p["calibrations"]) for p in pages] == [3, 3, 3, 1]
    assert all(p["total"] == 10 and p["limit"] == 3 for p in pages)
    assert [i["id"] for p in pages for i in p["calibrations"]] == [
        i["id"] for i in whole["calibrations"]
    ]
    created = [i["created_at"] for i in whole["calibrations"]]
    assert created == sorted(created, reverse=True)  # newest first, across pages
    assert past["calibrations"] == [] and past["total"] == 10


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=abc",
        "limit=",
        "limit=%2B5",
        "limit=1e3",
        "limit=%205",
        "limit=5&limit=6",
        "offset=-1",
        "offset=1.5",
        "offset=0x10",
        "offset=" + "9" * 40,
        "offset=%D9%A3",  # an Arabic-Indic digit: int() would take it
    ],
)
def test_bad_page_bounds_are_refused(folders, query):
    async def requests(client, index):
        response = await client.get(f"{BASE}?{query}")
        return response.status, await response.json()

    status, body = serve(folders, requests)
    assert status == 400 and ("offset" in body["error"] or "limit" in body["error"])


def test_the_largest_page_is_allowed(folders):
    async def requests(client, index):
        response = await client.get(BASE, params={"limit": routes.MAX_LIMIT})
        return response.status, await response.json()

    status, body = serve(folders, requests)
    assert status == 200 and body["limit"] == routes.MAX_LIMIT and body["total"] == 3


def test_an_unknown_id_is_answered_without_a_folder_scan(folders):
    user, shipped, _ = folders
    age(user, shipped)
    unknown = "0" * routes.ID_LENGTH

    async def requests(client, index):
        await listing(client)
        scans = index.scans
        plot = await client.get(f"{BASE}/{unknown}/plot.png")
        gone = await client.delete(f"{BASE}/{unknown}", headers=SAME_ORIGIN)
        assert (plot.status, gone.status) == (404, 404)
        assert index.scans == scans  # the index was fresh: no folder listed
        # a file saved since the list is still found: a miss on a changed folder
        # refreshes the index once
        path = store.save(record(OTHER, latent=(40, 40)), user)
        new_id = calibration_index.file_id(user, path.name)
        found = await client.get(f"{BASE}/{new_id}/plot.png")
        assert found.status == 200 and index.scans == scans + 1
        age(user)
        await listing(client)
        scans = index.scans
        gone = await client.delete(f"{BASE}/{new_id}", headers=SAME_ORIGIN)
        assert gone.status == 200 and index.scans == scans  # a hit needs no scan
        again = await client.delete(f"{BASE}/{new_id}", headers=SAME_ORIGIN)
        assert again.status == 404
        return path

    assert not serve(folders, requests).exists()


def test_concurrent_lists_share_a_refresh(folders, monkeypatch):
    """Lists that come while a refresh is in flight share the next one."""
    many(folders, 20)
    scan = calibration_index.scan

    def slow_scan(calibration_store):
        time.sleep(0.5)  # long enough for all 20 requests to come meanwhile
        return scan(calibration_store)

    monkeypatch.setattr(calibration_index, "scan", slow_scan)

    async def requests(client, index):
        await listing(client)
        scans = index.scans
        bodies = await asyncio.gather(*(listing(client) for _ in range(20)))
        return scans, index.scans, bodies

    before, after, bodies = serve(folders, requests)
    assert after - before <= 2  # the one in flight when the first came, one for the rest
    assert all(body == bodies[0] for body in bodies) and len(bodies[0]) == 23


def test_file_work_runs_off_the_event_loop(folders, monkeypatch):
    """Scans, parses, plots and unlinks run in worker threads, never the loop's."""
    threads = []

    def recorded(function):
        def wrapper(*args, **kwargs):
            threads.append((function.__name__, threading.get_ident()))
            return function(*args, **kwargs)

        return wrapper

    for module, name in (
        (calibration_index, "scan"),
        (calibration_index, "folders_state"),
        (routes, "render_png"),
        (routes, "_unlink"),
        (routes, "_load_for_plot"),
    ):
        monkeypatch.setattr(module, name, recorded(getattr(module, name)))
    monkeypatch.setattr(store, "load", recorded(store.load))

    async def requests(client, index):
        loop_thread = threading.get_ident()
        item = by_file(await listing(client))[store.file_name(KEY, (16, 16))]
        assert (await client.get(f"{BASE}/{item['id']}/plot.png")).status == 200
        assert (await client.get(f"{BASE}/{'0' * 32}/plot.png")).status == 404
        assert (await client.delete(f"{BASE}/{item['id']}", headers=SAME_ORIGIN)).status == 200
        return loop_thread

    loop_thread = serve(folders, requests)
    names = {name for name, _ in threads}
    assert {"scan", "render_png", "_unlink", "_load_for_plot", "load", "folders_state"} <= names
    assert all(ident != loop_thread for _, ident in threads), threads


def test_the_loop_keeps_answering_during_a_big_list(folders, monkeypatch):
    """A ticker coroutine keeps ticking while a cold list parses hundreds of files
    (each parse made to hold the interpreter about 2 ms, as a real parse does)."""
    many(folders, 250)
    load = store.load

    def slow(path):
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass
        return load(path)

    monkeypatch.setattr(store, "load", slow)

    async def requests(client, index):
        gaps = []

        async def ticker():
            last = time.perf_counter()
            while True:
                await asyncio.sleep(0.002)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        t0 = time.perf_counter()
        items, plot = await asyncio.gather(
            listing(client), client.get(f"{BASE}/{'0' * 32}/plot.png")
        )
        took = time.perf_counter() - t0
        task.cancel()
        return len(items), plot.status, took, gaps

    count, status, took, gaps = serve(folders, requests)
    assert count == 200 and status == 404  # the first page of 253
    assert took > 0.5  # at least 253 parses of 2 ms
    assert max(gaps) < 0.25, (max(gaps), took)  # never the whole list at once
    assert len(gaps) > 10


CHECK = {
    "method": "spectral-fd",
    "held_out": 4,
    "candidates": {
        "plain": {
            "noiseshift": 0.0,
            "correction": 0.0,
            "score": 1.0,
            "gain": 0.0,
            "gain_noise": 0.0,
        },
        "noiseshift@1": {
            "noiseshift": 1.0,
            "correction": 0.0,
            "score": 0.8,
            "gain": 0.2,
            "gain_noise": 0.01,
        },
        "noiseshift@0.5": {
            "noiseshift": 0.5,
            "correction": 0.0,
            "score": 0.9,
            "gain": 0.1,
            "gain_noise": 0.01,
        },
    },
    "recommendation": "noiseshift@0.5",
}


def test_the_list_shows_what_the_node_shows(folders):
    """The tab's one-step error and recommendation are the Calibrate node's: the error
    summed over steps, and what Apply uses (the recommendation with its guidance)
    with that one's gain over plain."""
    user = folders[0]
    guided = {
        **CHECK,
        "guidance": {
            "mode": "offset",
            "offset": 2.0,
            "weight_schedule": "per step size",
            "base": "noiseshift@0.5",
            "base_score": 0.9,
            "weight": 2.0,
            "candidates": {
                "guidance@2": {"weight": 2.0, "score": 0.7, "gain": 0.2, "gain_noise": 0.02}
            },
        },
    }
    rec = record(latent=(24, 24))
    rec["check"] = guided
    store.save(rec, user)
    item = by_file(call(folders, listing))[store.file_name(KEY, (24, 24))]
    text = calibration_summary.summary(
        calibration_record.validate(rec),
        None,
        reused=False,
        data="testbed",
        evaluations=1,
        seconds=1.0,
    )
    assert f"one-step error {item['metrics']['error_before']:.4g} -> " in text
    assert item["metrics"]["error_before"] == 10 and item["metrics"]["ratio"] == 0.4
    assert item["recommendation"]["name"] == calibration_record.recommendation(rec)["name"]
    assert item["recommendation"]["name"] == "noiseshift@0.5+guidance@2"
    # over plain: 0.1 (noiseshift@0.5) + 0.2 (guidance on top of it), not NoiseShift's 0.2
    assert item["recommendation"]["gain"] == pytest.approx(0.3)
    assert item["recommendation"]["gain_noise"] is None
    assert item["recommendation"]["held_out"] == 4

    rec["check"] = CHECK  # no guidance: the recommendation's own gain and spread
    store.save(rec, user)
    item = by_file(call(folders, listing))[store.file_name(KEY, (24, 24))]
    assert item["recommendation"]["name"] == "noiseshift@0.5"
    assert item["recommendation"]["gain"] == 0.1 and item["recommendation"]["gain_noise"] == 0.01

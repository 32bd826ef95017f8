"""The calibrations browser's HTTP routes (noisecal_host/routes.py) through aiohttp's
test client: the list, the plot, delete, and hostile ids on every route."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

aiohttp = pytest.importorskip("aiohttp", reason="aiohttp (a ComfyUI requirement) is not installed")
from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from noise_calibration.noisecal import store  # noqa: E402
from noise_calibration.noisecal.store import CalibrationStore, CheckpointKey  # noqa: E402
from noise_calibration.noisecal_host import routes  # noqa: E402

KEY = CheckpointKey("ab" * 32, "SD3", "SD3", "browser test")
OTHER = CheckpointKey("cd" * 32, "Flux", "Flux")
BASE = routes.PREFIX + "/calibrations"
SAME_ORIGIN = {"Origin": "http://127.0.0.1:8190", "Host": "127.0.0.1:8190"}


def record(key=KEY, latent=(16, 16)):
    sigmas = [1.0, 0.75, 0.5, 0.25]
    return store.make_record(
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
    assert mine["metrics"]["error_before"] == 2.5 and mine["metrics"]["error_after"] == 1.0
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
        routes.file_id(user, name)
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
    assert routes.file_id(a, "x.json") != routes.file_id(b, "x.json")
    assert routes.file_id(a, "x.json") == routes.file_id(a, "x.json")
    assert routes.ID_PATTERN.fullmatch(routes.file_id(a, "x.json"))


def test_without_a_server_nothing_is_registered():
    # the snapshot host has no ComfyUI server module: the pack imports and adds no routes
    try:
        import server  # noqa: F401
    except ImportError:
        assert routes.register_with_server() is False
    else:
        pytest.skip("a ComfyUI server module is importable here")

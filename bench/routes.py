"""Calibration routes at scale: list latency, event-loop stalls and memory.

Run from the repository root::

    .venv/bin/python bench/routes.py                 # full: 5,000 files (minutes on 2 cores)
    .venv/bin/python bench/routes.py --quick         # smoke run: 300 files, under a minute
    .venv/bin/python bench/routes.py --label before  # names the JSON (out/bench/routes-before.json)
    .venv/bin/python bench/routes.py --compare out/bench/routes-before.json

Not a test: nothing here fails the run. The routes of ``noisecal_host/routes.py``
run in an aiohttp test server in this process, on a user folder of small valid
calibration files written with the store's own ``save``. The client reads raw
bodies (no JSON decoding on the loop), so what stalls the loop is the server.

Measured:

1. list: the first request (cold), then p50/p95 of sequential requests of the
   default list (the first page where the routes page; the whole list where they
   do not) and of the whole list fetched page by page;
2. concurrency: concurrent lists, plots of known ids and plots of unknown ids
   together: their wall time and the longest gap of a ticker coroutine that
   sleeps 5 ms at a time (the longest the server could not answer anything);
3. unknown ids: plot and DELETE of an id no file has, latency and longest gap;
4. memory: peak RSS of the process, and its growth over the files' creation.

``--compare`` prints this run beside an earlier JSON (e.g. the same script run
on the code before the index) with the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repository root

from bench.lib import host  # noqa: E402,F401  (loads the pack as noise_calibration)
from bench.lib.report import print_table  # noqa: E402
from noise_calibration.noisecal import calibration_record  # noqa: E402
from noise_calibration.noisecal.checkpoint_key import CheckpointKey  # noqa: E402
from noise_calibration.noisecal_host import routes, store  # noqa: E402
from noise_calibration.noisecal_host.store import CalibrationStore  # noqa: E402

BASE = routes.PREFIX + "/calibrations"
SIZES_PER_KEY = 50
TICK_S = 0.005
UNKNOWN_ID = "0" * routes.ID_LENGTH
FULL = {"files": 5000, "lists": 20, "concurrent": 20, "plots": 10, "unknown": 10}
QUICK = {"files": 300, "lists": 5, "concurrent": 5, "plots": 3, "unknown": 5}


def record(index: int) -> dict:
    """A small valid record; (key, latent size) differ per index, so file names do."""
    key = CheckpointKey(f"{index // SIZES_PER_KEY:064x}", "SD3", "SD3", f"bench {index // 50}")
    side = 8 + index % SIZES_PER_KEY
    sigmas = [1.0, 0.75, 0.5, 0.25]
    return calibration_record.make_record(
        key=key,
        image_size=(side * 8, side * 8),
        latent_size=(side, side),
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


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


class Ticker:
    """Sleeps TICK_S at a time on the loop; the longest gap past TICK_S is the stall."""

    def __init__(self):
        self.max_gap = 0.0
        self.running = True

    async def run(self):
        last = time.perf_counter()
        while self.running:
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            self.max_gap = max(self.max_gap, now - last - TICK_S)
            last = now


async def with_ticker(coro):
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    result = await coro
    wall = time.perf_counter() - t0
    ticker.running = False
    await task
    return result, wall, ticker.max_gap


async def get(client, url):
    response = await client.get(url)
    body = await response.read()
    return response.status, body


async def fetch_all(client):
    """The whole list: page by page where the route pages, else one request."""
    status, body = await get(client, BASE)
    data = json.loads(body)
    items = list(data["calibrations"])
    total = data.get("total")
    while total is not None and len(items) < total:
        status, body = await get(client, f"{BASE}?offset={len(items)}&limit=1000")
        page = json.loads(body)["calibrations"]
        if not page:
            break
        items.extend(page)
    return items, total is not None


async def measure(cfg, folder: Path) -> dict:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    table = web.RouteTableDef()
    routes.add_routes(table, lambda: CalibrationStore([folder], folder))
    app = web.Application()
    app.add_routes(table)
    out = {}
    async with TestClient(TestServer(app)) as client:
        t0 = time.perf_counter()
        (status, body), wall, gap = await with_ticker(get(client, BASE))
        out["cold_list_s"] = wall
        out["cold_list_gap_s"] = gap
        first = json.loads(body)
        out["paged"] = "total" in first
        out["first_response_items"] = len(first["calibrations"])
        out["first_response_bytes"] = len(body)

        lat = []
        for _ in range(cfg["lists"]):
            t0 = time.perf_counter()
            status, _body = await get(client, BASE)
            lat.append(time.perf_counter() - t0)
        out["list_p50_s"], out["list_p95_s"] = statistics.median(lat), pct(lat, 0.95)

        whole = []
        for _ in range(max(1, cfg["lists"] // 4)):
            t0 = time.perf_counter()
            items, _ = await fetch_all(client)
            whole.append(time.perf_counter() - t0)
        out["whole_list_p50_s"] = statistics.median(whole)
        out["whole_list_items"] = len(items)
        ids = [item["id"] for item in items]

        async def burst():
            jobs = [get(client, BASE) for _ in range(cfg["concurrent"])]
            jobs += [get(client, f"{BASE}/{i}/plot.png") for i in ids[: cfg["plots"]]]
            jobs += [get(client, f"{BASE}/{UNKNOWN_ID}/plot.png") for _ in range(cfg["plots"])]
            return await asyncio.gather(*jobs)

        statuses, wall, gap = await with_ticker(burst())
        out["burst_wall_s"], out["burst_gap_s"] = wall, gap
        out["burst_statuses"] = sorted({s for s, _ in statuses})

        async def unknown():
            lat = []
            for _ in range(cfg["unknown"]):
                t0 = time.perf_counter()
                plot = await client.get(f"{BASE}/{UNKNOWN_ID}/plot.png")
                gone = await client.delete(f"{BASE}/{UNKNOWN_ID}")
                assert plot.status == 404 and gone.status == 404, (plot.status, gone.status)
                lat.append((time.perf_counter() - t0) / 2)
            return lat

        lat, wall, gap = await with_ticker(unknown())
        out["unknown_p50_s"], out["unknown_gap_s"] = statistics.median(lat), gap
    return out


def show(runs: dict[str, dict]) -> None:
    rows_spec = [
        ("files", "files", "{:.0f}"),
        ("cold list (first request), s", "cold_list_s", "{:.3f}"),
        ("default list p50, s", "list_p50_s", "{:.4f}"),
        ("default list p95, s", "list_p95_s", "{:.4f}"),
        ("default list items", "first_response_items", "{:.0f}"),
        ("default list bytes", "first_response_bytes", "{:.0f}"),
        ("whole list (all pages) p50, s", "whole_list_p50_s", "{:.3f}"),
        ("burst wall, s", "burst_wall_s", "{:.2f}"),
        ("burst longest loop stall, s", "burst_gap_s", "{:.3f}"),
        ("cold list longest loop stall, s", "cold_list_gap_s", "{:.3f}"),
        ("unknown id plot/DELETE p50, s", "unknown_p50_s", "{:.4f}"),
        ("unknown id longest loop stall, s", "unknown_gap_s", "{:.3f}"),
        ("peak RSS, MB", "peak_rss_mb", "{:.0f}"),
        ("RSS growth over requests, MB", "rss_growth_mb", "{:.0f}"),
    ]
    names = list(runs)
    header = ["measure", *names] + (["ratio"] if len(names) == 2 else [])
    rows = []
    for title, key, spec in rows_spec:
        values = [runs[n].get(key) for n in names]
        row = [title] + [spec.format(v) if v is not None else "n/a" for v in values]
        if len(names) == 2:
            a, b = values
            row.append(f"{a / b:.1f}x" if a and b else "n/a")
        rows.append(row)
    print_table("Routes at scale (" + ", ".join(names) + ")", header, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    parser.add_argument("--out", default=str(ROOT / "out" / "bench"), help="where the JSON goes")
    parser.add_argument("--label", default="after", help="this run's name (JSON routes-LABEL)")
    parser.add_argument("--compare", help="an earlier run's JSON to print beside this one")
    for name in FULL:
        parser.add_argument(f"--{name}", type=int, help=f"override ({FULL[name]} full)")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for name in FULL:
        if getattr(args, name) is not None:
            cfg[name] = getattr(args, name)
    print(f"mode: {'quick' if args.quick else 'full'}; {cfg}", flush=True)
    with tempfile.TemporaryDirectory(prefix="noisecal-routes-") as tmp:
        folder = Path(tmp) / "user"
        folder.mkdir()
        t0 = time.perf_counter()
        for i in range(cfg["files"]):
            store.save(record(i), folder)
        print(f"wrote {cfg['files']} files in {time.perf_counter() - t0:.1f} s", flush=True)
        base_rss = rss_mb()
        result = asyncio.run(measure(cfg, folder))
    result.update(files=cfg["files"], config=cfg, peak_rss_mb=peak_rss_mb())
    result["rss_growth_mb"] = result["peak_rss_mb"] - base_rss
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"routes-{args.label}.json"
    path.write_text(json.dumps(result, indent=1))
    runs = {args.label: result}
    if args.compare:
        earlier = json.loads(Path(args.compare).read_text())
        runs = {Path(args.compare).stem.removeprefix("routes-"): earlier, args.label: result}
    show(runs)
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

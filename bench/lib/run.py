"""The command line, a run's state, the section loop and the end every
benchmark shares: plots, ``<out>/<name>.json`` and the summary."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.lib.host import HOST
from bench.lib.report import Verdicts, jsonable

ROOT = Path(__file__).resolve().parents[2]
THREADS_HELP = (
    "torch intra-op threads (default 1: on a shared 2-core machine two threads slow down "
    "about 10x whenever another process is busy)"
)


def parse_args(doc: str, argv=None, quick_help: str = "smoke run, under a minute", extra=None):
    """--quick, --out and --threads (and what `extra(parser)` adds); sets torch's
    thread count."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if extra is not None:
        extra(parser)
    parser.add_argument("--out", default=str(ROOT / "out" / "bench"), help="plots and JSON")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    return args


@dataclass
class Run:
    """One benchmark run: its configuration, output folder, verdicts and the
    results dict that becomes the JSON file."""

    cfg: dict
    out: Path
    quick: bool
    verdicts: Verdicts = field(default_factory=Verdicts)
    data: dict = field(default_factory=dict)
    t_start: float = field(default_factory=time.perf_counter)

    @classmethod
    def start(cls, args, full: dict, quick: dict) -> Run:
        cfg = quick if args.quick else full
        run = cls(cfg, Path(args.out), args.quick)
        run.data.update(mode="quick" if args.quick else "full", config=jsonable(cfg))
        return run

    def check(self, ok: bool, text: str) -> bool:
        return self.verdicts.check(ok, text)


@dataclass
class RunState:
    """What a script's sections share (each script's Bench adds its own state):
    the run, and its configuration as `cfg`."""

    run: Run

    @property
    def cfg(self) -> dict:
        return self.run.cfg


def describe_run(quick: bool, extra: str = "") -> None:
    print(f"{HOST.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"mode: {'quick' if quick else 'full'}{extra}\n", flush=True)


def run_sections(sections) -> dict[str, float]:
    """Run (name, fn) pairs in order; returns each one's wall time."""
    timings = {}
    for name, fn in sections:
        t0 = time.perf_counter()
        fn()
        timings[name] = time.perf_counter() - t0
        print(f"[section {name}: {timings[name]:.1f} s]\n", flush=True)
    return timings


def print_summary(verdicts, total: float, written, timings=None, preamble=()) -> None:
    print("=" * 78 + "\nSummary")
    for line in preamble:
        print("  " + line)
    for line in verdicts.lines:
        print("  " + line)
    passed = sum(line.startswith("PASS") for line in verdicts.lines)
    print(f"  {passed}/{len(verdicts.lines)} targets met")
    if timings:
        print("Section times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"Total: {total:.1f} s. Wrote: " + ", ".join(str(p) for p in written))


def finish(run: Run, name: str, timings, plots, seeds: dict, **options) -> int:
    """Plots (``plots(run)`` returns the files written), then ``<out>/<name>.json``
    (all data, verdicts, host, seeds and ``extra``), then the summary.

    Options: ``extra`` (more JSON fields), ``after_total(total)`` (verdicts on the
    run's own time, before the JSON) and ``preamble`` (summary lines).
    """
    run.data["section_s"] = timings
    run.out.mkdir(parents=True, exist_ok=True)
    written = plots(run)
    total = time.perf_counter() - run.t_start
    run.data["total_s"] = total
    if options.get("after_total"):
        options["after_total"](total)
    run.data["verdicts"] = run.verdicts.lines
    run.data["host"] = HOST.describe()
    run.data["seeds"] = seeds
    run.data.update(options.get("extra", {}))
    path = run.out / f"{name}.json"
    path.write_text(json.dumps(jsonable(run.data), indent=1))
    written.append(path)
    print_summary(run.verdicts, total, written, timings, options.get("preamble", ()))
    return 0

"""What every benchmark script shares: its command line, the section loop,
tables, PASS/MISS verdicts, the JSON dump and the closing summary."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THREADS_HELP = (
    "torch intra-op threads (default 1: on a shared 2-core machine two threads slow down "
    "about 10x whenever another process is busy)"
)


def parse_args(doc: str, argv=None, quick_help: str = "smoke run, under a minute"):
    """--quick, --out and --threads; sets torch's thread count."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", default=str(ROOT / "out" / "bench"), help="plots and JSON")
    parser.add_argument("--threads", type=int, default=1, help=THREADS_HELP)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    return args


def describe_run(bench, quick: bool, extra: str = "") -> None:
    import torch

    print(f"{bench.host.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
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


def finish(bench, name: str, timings, t_start: float, seeds: dict, **options) -> int:
    """The end every benchmark shares: plots, then ``out/<name>.json`` (all data,
    verdicts, host, seeds and ``extra``), then the summary.

    Options: ``extra`` (more JSON fields), ``after_total(total)`` (verdicts on the
    run's own time, before the JSON) and ``preamble`` (summary lines).
    """
    bench.data["section_s"] = timings
    written = bench.plots()
    total = time.perf_counter() - t_start
    bench.data["total_s"] = total
    if options.get("after_total"):
        options["after_total"](total)
    bench.out.mkdir(parents=True, exist_ok=True)
    bench.data["verdicts"] = bench.verdicts.lines
    bench.data["host"] = bench.host.describe()
    bench.data["seeds"] = seeds
    bench.data.update(options.get("extra", {}))
    path = bench.out / f"{name}.json"
    path.write_text(json.dumps(jsonable(bench.data), indent=1))
    written.append(path)
    print_summary(bench.verdicts, total, written, timings, options.get("preamble", ()))
    return 0


def fmt(v, spec=".5f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, spec)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = [title, "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
    text = "\n".join(lines)
    print(text + "\n", flush=True)
    return text


class Verdicts:
    def __init__(self):
        self.lines: list[str] = []

    def check(self, ok: bool, text: str) -> bool:
        line = f"{'PASS' if ok else 'MISS'}  {text}"
        self.lines.append(line)
        print(line, flush=True)
        return ok


def spectrum_name(sp) -> str:
    return f"f0={sp.f0:g},a={sp.alpha:g}"


def jsonable(obj):
    """Plain JSON types; non-finite floats become null."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)

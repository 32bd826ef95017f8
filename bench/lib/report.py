"""Number formats, tables, PASS/MISS verdicts and plain JSON values."""

from __future__ import annotations

import math


def fmt(v, spec=".5f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return format(v, spec)


def pct(v, spec="+.1f") -> str:
    return "n/a" if v is None else format(100.0 * v, spec) + "%"


def ratio(a, b):
    return None if a is None or b is None or not b > 0 else a / b


def spectrum_name(sp) -> str:
    """A spectrum by both of its parameters, e.g. ``f0=3,a=2.5``."""
    return f"f0={sp.f0:g},a={sp.alpha:g}"


def cell_name(c: dict, first: str = "spectrum") -> str:
    """A testbed cell as verdicts name it, e.g. ``[f0=3,a=2.5 N=16 image euler 8]``."""
    return f"[{c[first]} {c['case']} {c['sampler']} {c['steps']}]"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    lines = [title, "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
    text = "\n".join(lines)
    print(text + "\n", flush=True)
    return text


def print_section(title: str) -> None:
    print("=" * 78 + f"\n{title}\n", flush=True)


class Verdicts:
    def __init__(self):
        self.lines: list[str] = []

    def check(self, ok: bool, text: str) -> bool:
        line = f"{'PASS' if ok else 'MISS'}  {text}"
        self.lines.append(line)
        print(line, flush=True)
        return ok


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

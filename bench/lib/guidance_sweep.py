"""The guidance sweep's candidates and its selection rule: every (mode, weight
schedule, weight, parameter) of a grid, named for tables, and ranked over a set of
cells by their FD ratios to guidance off (feasible first, by geometric mean; then
the best trade-off, by the worst cell)."""

from __future__ import annotations

import math


def candidate_grid(spec: dict) -> list[dict]:
    """Candidates: per mode, every (schedule, weight) with every value of its parameter."""
    out = []
    for mode, m in spec.items():
        for schedule in ("per step size", "constant"):
            for w in m[schedule]:
                for v in m.get("values", (None,)):
                    c = {"mode": mode, "schedule": schedule, "weight": w}
                    c["offset"] = v if mode == "offset" else 1.0
                    c["pseudo_level"] = v if mode == "pseudo-level" else 1.0
                    out.append(c)
    return out


def describe(c: dict) -> str:
    param = {"offset": f"offset {c['offset']:g}", "pseudo-level": f"level {c['pseudo_level']:g}"}
    extra = param.get(c["mode"], "")
    sched = "/step" if c["schedule"] == "per step size" else "const"
    return f"{c['mode']} w={c['weight']:g} {sched}" + (f" {extra}" if extra else "")


def geomean(values) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def worst_cell(r: dict, cells: list):
    return max(cells, key=lambda k: r[k])


def rank(ratios, cells, help_cells, worse: float):
    """Indices ordered by the selection rule of section 1 over `cells`, with feasibility.

    Feasible (no cell above `worse`, lower FD at every help cell) first, by
    geometric-mean ratio; then the infeasible, by worst-cell ratio."""
    scored = []
    for i, r in enumerate(ratios):
        vals = [r[k] for k in cells]
        ok = max(vals) <= worse and all(r[k] < 1 for k in help_cells)
        scored.append((not ok, geomean(vals) if ok else max(vals), geomean(vals), i))
    return [(i, not bad) for bad, _, _, i in sorted(scored)]

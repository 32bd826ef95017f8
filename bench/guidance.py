"""Noise Awareness Guidance benchmark: testbed quality sweep and chosen defaults.

    .venv/bin/python bench/guidance.py [--quick] [--out DIR] [--threads N]

Not a test: each target prints PASS or MISS (bench/README.md, docs/results-guidance.md).
The pack's Noise Awareness Guidance node patches the MODEL, sampling through
KSampler; NoiseShift is the pack's node with a fast calibration (64 latents, 20
simple Euler steps), as in ``bench/noiseshift.py``.

Cells: the exact-denoiser testbed trained at M = 32 (f0 = 3, alpha = 2.5), rows N = M
and N = M/2 "pixel" and "image" without and with NoiseShift, columns Euler 4, 8, 16,
32 and euler_ancestral 16; a candidate's FD ratio to guidance off per cell (the same
sampling noise).
1. Sweep (fewer samples): every candidate (mode x weight schedule x weight x offset /
   pseudo-level). The rule (``bench/lib/guidance_sweep.py``): feasible = no cell more
   than 5% worse and FD lower at 4, 8, 16 steps at N = M; the lowest geometric mean
   among them, else the lowest worst cell. Applied to all cells ("default") and
   without the N = M/2 rows lacking NoiseShift ("with NoiseShift"), per mode and over
   all; the best of each go to section 2.
2. Full set: the finalists on the full sample count; the same rule chooses the
   default and the pairing, and the targets are judged on them.
What the extra branch costs per step: ``bench/guidance_cost.py``.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import figures, testbed
from bench.lib.calibration import Nodes, guidance, noiseshift_calibration, private_store
from bench.lib.guidance_sweep import candidate_grid, describe, geomean, rank, worst_cell
from bench.lib.report import fmt, print_section, print_table
from bench.lib.run import Run, RunState, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import SAMPLE_SEED
from bench.lib.testbed import CAL_SCHEDULER, CAL_STEPS, M

WORSE = 1.05  # "never more than 5% worse than plain"
HELP_STEPS = (4, 8, 16)  # FD must drop at these Euler step counts at N = M

# (label, steps, sampler): the columns of every table
COLUMNS = [
    ("euler 4", 4, "euler"),
    ("euler 8", 8, "euler"),
    ("euler 16", 16, "euler"),
    ("euler 32", 32, "euler"),
    ("euler_a 16", 16, "euler_ancestral"),
]
# (label, variant, N, with NoiseShift): the rows
CASES = [
    ("N=32", "image", M, False),
    ("N=16 pixel", "pixel", M // 2, False),
    ("N=16 pixel+NS", "pixel", M // 2, True),
    ("N=16 image", "image", M // 2, False),
    ("N=16 image+NS", "image", M // 2, True),
]


FULL = {
    "spectra": [(3.0, 2.5)],
    "cal_count": 64,
    "sweep_samples": 64,
    "samples": 256,
    "columns": COLUMNS,
    "cases": CASES,
    # for small offsets what matters is about weight x offset (a first full run with
    # offsets 0.5, 1, 2 gave the same ratios, within 1%, at equal products), so two
    # offsets and a log-spaced weight list cover it; negative weights test the other sign
    "candidates": candidate_grid(
        {
            "offset": {
                "values": (0.5, 2.0),
                "per step size": (-1.0, 0.25, 0.5, 1.0, 2.0, 4.0),
                "constant": (0.01, 0.03, 0.1, 0.3),
            },
            "estimated": {
                "per step size": (-1.0, 0.25, 0.5, 1.0, 2.0, 4.0),
                "constant": (-0.03, 0.01, 0.03, 0.1),
            },
            "pseudo-level": {
                "values": (0.0, 0.5, 1.0),
                "per step size": (-1.0, 0.25, 0.5, 1.0),
                "constant": (0.01, 0.03),
            },
        }
    ),
    "finalists": {"any": 2, "per mode": 1},  # best K of each selection go to section 2
}
QUICK = {
    "spectra": [(3.0, 2.5)],
    "cal_count": 64,
    "sweep_samples": 32,
    "samples": 64,
    "columns": [COLUMNS[0], COLUMNS[2], COLUMNS[4]],
    "cases": [CASES[0], CASES[3], CASES[4]],
    "candidates": candidate_grid(
        {
            "offset": {"values": (0.5, 2.0), "per step size": (0.5, 4.0), "constant": (0.03,)},
            "estimated": {"per step size": (0.5,), "constant": (0.03,)},
            "pseudo-level": {"values": (1.0,), "per step size": (0.5,), "constant": (0.03,)},
        }
    ),
    "finalists": {"any": 2, "per mode": 1},
}
SETS = ("default", "with NoiseShift")
MODES = ("any", "offset", "estimated", "pseudo-level")


def guided(model, c: dict):
    """`model` through the pack's Noise Awareness Guidance node with candidate `c`."""
    return guidance(model, c["weight"], c["mode"], c["offset"], c["pseudo_level"], c["schedule"])


def lacking_ns(cfg: dict) -> str:
    """The rows below M without NoiseShift, by resolution, as tables name them."""
    return "/".join(f"N={n}" for n in sorted({c[2] for c in cfg["cases"] if c[2] < M and not c[3]}))


@dataclass
class Bench(RunState):
    """The run, the spectrum, its cells (all, the help cells at N = M, the
    NoiseShift set), the guidance-off model per row and what the sections hand on."""

    nodes: Nodes
    sp: object
    cells: list = field(default_factory=list)
    help_cells: list = field(default_factory=list)
    ns_cells: list = field(default_factory=list)
    base: dict = field(default_factory=dict)
    ns_info: dict = field(default_factory=dict)
    picks: dict = field(default_factory=dict)
    chosen: dict = field(default_factory=dict)
    full_shown: tuple | None = None

    def __post_init__(self):
        cases, columns = self.cfg["cases"], self.cfg["columns"]
        self.cells = [(c[0], col[0]) for c in cases for col in columns]
        self.help_cells = [
            (c[0], col[0])
            for c in cases
            if c[2] == M
            for col in columns
            if col[2] == "euler" and col[1] in HELP_STEPS
        ]
        # the recommended pairing: N = M, and N = M/2 only with NoiseShift
        self.ns_cells = [k for k in self.cells if self.case(k[0])[2] == M or self.case(k[0])[3]]

    def case(self, label):
        return next(c for c in self.cfg["cases"] if c[0] == label)

    def column(self, label):
        return next(c for c in self.cfg["columns"] if c[0] == label)

    def set_cells(self, set_name):
        return self.cells if set_name == "default" else self.ns_cells

    def fd_cell(self, model, cell, count):
        _, _, n, _ = self.case(cell[0])
        _, steps, sampler = self.column(cell[1])
        return testbed.fd(model, self.sp, n, count, steps=steps, sampler=sampler)

    def fd_row(self, c, count):
        """FD of every cell for candidate `c` (None: guidance off)."""
        out = {}
        for label, *_ in self.cfg["cases"]:
            model = self.base[label] if c is None else guided(self.base[label], c)
            for col in self.cfg["columns"]:
                out[(label, col[0])] = self.fd_cell(model, (label, col[0]), count)
        return out

    def rankings(self, ratios, indices):
        """(set, mode) -> [(candidate index, feasible)] best first, among `indices`."""
        cands = self.cfg["candidates"]
        out = {}
        for set_name in SETS:
            for mode in MODES:
                idx = [i for i in indices if mode == "any" or cands[i]["mode"] == mode]
                if not idx:
                    continue
                cells = self.set_cells(set_name)
                ranked = rank([ratios[i] for i in idx], cells, self.help_cells, WORSE)
                out[(set_name, mode)] = [(idx[j], ok) for j, ok in ranked]
        return out


# --------------------------------------------------------------------------- setup


def section_setup(b: Bench) -> None:
    """Models (guidance off) per row: NoiseShift calibrated as bench/noiseshift.py does."""
    for label, variant, n, ns in b.cfg["cases"]:
        model = testbed.model(b.sp, M, variant)
        if ns:
            model = shifted(b, label, model, n)
        b.base[label] = model


def shifted(b: Bench, label: str, model, n: int):
    """`model` with NoiseShift, fast calibration at N = n; its cost goes to ``b.ns_info``."""
    sigmas = testbed.sigmas(model, CAL_STEPS, CAL_SCHEDULER)
    x0 = testbed.cal_latents(b.sp, n, b.cfg["cal_count"])
    res, record, wall = noiseshift_calibration(model, x0, sigmas, "fast")
    shifts = [h - s for s, h in zip(res.sigmas, res.sigma_hat, strict=True)]
    b.ns_info[label] = {"nfe": res.nfe, "seconds": wall, "largest_shift": max(shifts, key=abs)}
    return b.nodes.noiseshift(model, record)


# --------------------------------------------------------------------------- 1. sweep


def section_sweep(b: Bench) -> None:
    count = b.cfg["sweep_samples"]
    cands = b.cfg["candidates"]
    print_section(
        f"1. Coarse sweep ({len(cands)} candidates x {len(b.cells)} cells, {count} samples)"
    )
    plain = b.fd_row(None, count)
    ratios = sweep_ratios(b, plain, count)
    b.picks = sweep_picks(b, ratios)
    sweep_table(b, ratios, count)
    picks_table(b, ratios)
    b.run.data["sweep"] = {
        "samples": count,
        "plain": plain,
        "candidates": [
            {**c, "label": describe(c), "ratios": ratios[i]} for i, c in enumerate(cands)
        ],
        "picks": {
            f"{s} / {m}": [{"setting": describe(cands[i]), "feasible": ok} for i, ok in ranked]
            for (s, m), ranked in b.picks.items()
        },
    }


def sweep_ratios(b: Bench, plain: dict, count: int) -> list[dict]:
    """Every candidate's FD ratio to guidance off, per cell."""
    cands = b.cfg["candidates"]
    ratios = []
    t0 = time.perf_counter()
    for i, c in enumerate(cands):
        fd = b.fd_row(c, count)
        ratios.append({k: fd[k] / plain[k] for k in b.cells})
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{len(cands)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return ratios


def sweep_picks(b: Bench, ratios: list[dict]) -> dict:
    """The finalists: the best K of each (set, mode) ranking."""
    ranking = b.rankings(ratios, range(len(ratios)))
    k_any, k_mode = b.cfg["finalists"]["any"], b.cfg["finalists"]["per mode"]
    return {key: ranked[: k_any if key[1] == "any" else k_mode] for key, ranked in ranking.items()}


def sweep_table(b: Bench, ratios: list[dict], count: int) -> None:
    cols = [col[0] for col in b.cfg["columns"]]
    n_m = b.cfg["cases"][0][0]
    rows = []
    for c, r in zip(b.cfg["candidates"], ratios, strict=True):
        worst = worst_cell(r, b.cells)
        rows.append(
            [describe(c), f"{geomean([r[k] for k in b.cells]):.3f}"]
            + [f"{max(r[k] for k in b.cells):.3f}", f"{geomean([r[k] for k in b.ns_cells]):.3f}"]
            + [f"{max(r[k] for k in b.ns_cells):.3f}"]
            + [f"{r[(n_m, col)]:.2f}" for col in cols]
            + [f"{worst[0]}, {worst[1]}"]
        )
    print_table(
        f"Table 1: coarse sweep, FD ratio guided / off ({count} samples, seed "
        f"{SAMPLE_SEED}); all = every cell, NS = without the {lacking_ns(b.cfg)} rows lacking "
        "NoiseShift",
        ["candidate", "geo all", "max all", "geo NS", "max NS"]
        + [f"{n_m} {col}" for col in cols]
        + ["worst cell"],
        rows,
    )


def picks_table(b: Bench, ratios: list[dict]) -> None:
    cands = b.cfg["candidates"]
    rows = []
    for (set_name, mode), ranked in b.picks.items():
        cells = b.set_cells(set_name)
        for rank_no, (i, ok) in enumerate(ranked, 1):
            r = ratios[i]
            rows.append(
                [set_name, mode, rank_no, describe(cands[i]), "yes" if ok else "no"]
                + [f"{geomean([r[k] for k in cells]):.3f}", f"{max(r[k] for k in cells):.3f}"]
            )
    help_steps = "/".join(str(s) for s in HELP_STEPS)
    print_table(
        f"Table 1b: picks of the coarse sweep, the finalists (feasible: no cell > "
        f"{round(100 * (WORSE - 1))}% worse and lower FD at N=M {help_steps} steps; ranked by "
        "geometric-mean ratio, the infeasible by worst cell)",
        ["set", "mode", "rank", "pick", "feasible", "geo ratio", "max ratio"],
        rows,
    )


# --------------------------------------------------------------------------- 2. full set


def section_full(b: Bench) -> None:
    count = b.cfg["samples"]
    finalists = list(dict.fromkeys(i for ranked in b.picks.values() for i, _ in ranked))
    print_section(f"2. Full set ({len(finalists)} finalists, {count} samples)")
    res = full_results(b, finalists, count)
    finalists_table(b, res, count)
    full_fd_table(b, res, count)
    choice_table(b, res)
    judge_full(b, res)
    cands = b.cfg["candidates"]
    b.run.data["full"] = {
        "samples": count,
        **{k: res[k] for k in ("plain", "native", "fd_floor", "variants_equal_at_M")},
        "noiseshift": b.ns_info,
        "finalists": {
            res["tag"][i]: {"setting": describe(cands[i]), **cands[i]}
            | {"fd": res["full"][i], "ratios": res["ratios"][i]}
            for i in finalists
        },
        "choice": {
            f"{s} / {m}": {"setting": describe(cands[i]), **cands[i], "feasible": ok}
            for (s, m), (i, ok) in res["choice"].items()
        },
    }
    (best, feasible), (pair, pair_ok) = res["best"], res["pair"]
    b.chosen = {"default": (cands[best], feasible), "pairing": (cands[pair], pair_ok)}
    b.full_shown = (finalists, res["ratios"], res["tag"])
    equal_nfe(b, res)


def full_results(b: Bench, finalists: list[int], count: int) -> dict:
    """FD off, native and of every finalist on the full count; ratios and the choice."""
    cands = b.cfg["candidates"]
    plain = b.fd_row(None, count)
    res = {
        "finalists": finalists,
        "plain": plain,
        "n_m": next(c for c in b.cfg["cases"] if c[2] == M),
    }
    res["variants_equal_at_M"] = variants_agree(b, res["n_m"][0], plain, count)
    res["native"] = native_fds(b, count)
    res["full"] = full = {i: b.fd_row(cands[i], count) for i in finalists}
    res["ratios"] = {i: {k: full[i][k] / plain[k] for k in b.cells} for i in finalists}
    # final choice: the same rule on the full-sample numbers, among the finalists
    ranking = b.rankings(res["ratios"], finalists)
    res["choice"] = choice = {key: ranked[0] for key, ranked in ranking.items()}
    res["best"], res["pair"] = choice[("default", "any")], choice[("with NoiseShift", "any")]
    res["tag"] = {i: f"F{j}" for j, i in enumerate(finalists, 1)}
    res["fd_floor"] = {n: testbed.floor(b.sp, n, count) for n in {c[2] for c in b.cfg["cases"]}}
    return res


def variants_agree(b: Bench, label: str, plain: dict, count: int) -> bool:
    """The variants coincide at N = M: checked on guidance off with the other variant."""
    other = "pixel" if b.case(label)[1] == "image" else "image"
    same_model = testbed.model(b.sp, M, other)
    same = {col[0]: b.fd_cell(same_model, (label, col[0]), count) for col in b.cfg["columns"]}
    return all(math.isclose(same[col], plain[(label, col)], rel_tol=1e-6) for col in same)


def native_fds(b: Bench, count: int) -> dict:
    """FD of the exact denoiser trained at N, for every cell below M."""
    native = {}
    for label, _, n, _ in b.cfg["cases"]:
        if n < M:
            nat = testbed.model(b.sp, n, "pixel")
            for col in b.cfg["columns"]:
                native[(label, col[0])] = b.fd_cell(nat, (label, col[0]), count)
    return native


def feasible(b: Bench, r: dict, cells: list) -> bool:
    return r[worst_cell(r, cells)] <= WORSE and all(r[k] < 1 for k in b.help_cells)


def finalists_table(b: Bench, res: dict, count: int) -> None:
    rows = []
    for i in res["finalists"]:
        r = res["ratios"][i]
        row = [res["tag"][i], describe(b.cfg["candidates"][i])]
        for set_name in SETS:
            cells = b.set_cells(set_name)
            worst = worst_cell(r, cells)
            row += [f"{geomean([r[k] for k in cells]):.3f}"]
            row += [f"{r[worst]:.3f} ({worst[0]}, {worst[1]})"]
            row += ["yes" if feasible(b, r, cells) else "no"]
        rows.append(row)
    print_table(
        f"Table 2a: the finalists on the full set ({count} samples); all = every cell, "
        f"NS = without the {lacking_ns(b.cfg)} rows lacking NoiseShift",
        ["", "setting", "geo all", "max all (cell)", "feasible all", "geo NS", "max NS (cell)"]
        + ["feasible NS"],
        rows,
    )


def full_fd_table(b: Bench, res: dict, count: int) -> None:
    (best, _), (pair, _), tag = res["best"], res["pair"], res["tag"]
    full, plain, cands = res["full"], res["plain"], b.cfg["candidates"]
    rows = []
    for label, col in b.cells:
        nat = res["native"].get((label, col))
        rows.append(
            [label, col, fmt(res["fd_floor"][b.case(label)[2]])]
            + [fmt(nat) if nat is not None else "-", fmt(plain[(label, col)])]
            + [fmt(full[best][(label, col)]), fmt(full[pair][(label, col)])]
            + [f"{res['ratios'][i][(label, col)]:.3f}" for i in res["finalists"]]
        )
    print_table(
        f"Table 2b: FD on the full set ({count} samples, seed {SAMPLE_SEED}); off = "
        "guidance off (NoiseShift alone on the +NS rows); F* = FD ratio to off",
        ["case", "sampler", "FD floor", "FD native", "FD off", f"FD default ({tag[best]})"]
        + [f"FD pairing ({tag[pair]})"]
        + [tag[i] for i in res["finalists"]],
        rows,
    )
    print(
        f"(default = {describe(cands[best])}, pairing = {describe(cands[pair])}; at N=M the "
        "'image' and 'pixel' variants give the same FD with guidance off: "
        f"{res['variants_equal_at_M']}; native = exact denoiser for N)\n"
    )


def choice_table(b: Bench, res: dict) -> None:
    rows = []
    for (set_name, mode), (i, ok) in res["choice"].items():
        cells = b.set_cells(set_name)
        r = res["ratios"][i]
        worst = worst_cell(r, cells)
        rows.append(
            [set_name, mode, f"{res['tag'][i]} {describe(b.cfg['candidates'][i])}"]
            + ["yes" if ok else "no", f"{geomean([r[k] for k in cells]):.3f}"]
            + [f"{r[worst]:.3f}", f"{worst[0]}, {worst[1]}"]
        )
    print_table(
        "Table 2c: chosen settings (the rule of Table 1b on the full-set numbers, among "
        "the finalists)",
        ["set", "mode", "setting", "feasible", "geo ratio", "max ratio", "worst cell"],
        rows,
    )


def judge_full(b: Bench, res: dict) -> None:
    """G1: the default and the pairing lower FD at N = M; G2: no cell over WORSE
    (anywhere for the default, on the NoiseShift set for the pairing)."""
    cands = b.cfg["candidates"]
    for name, (i, _), cells in (
        ("default", res["best"], b.cells),
        ("with NoiseShift pairing", res["pair"], b.ns_cells),
    ):
        r = res["ratios"][i]
        helps = ", ".join(f"{k[1]} {r[k]:.2f}x" for k in b.help_cells)
        b.run.check(
            all(r[k] < 1 for k in b.help_cells),
            f"G1 {name} ({describe(cands[i])}): FD lower than off at N=M: {helps}",
        )
        worst = worst_cell(r, cells)
        scope = "anywhere" if cells is b.cells else "on the NS set"
        b.run.check(
            r[worst] <= WORSE,
            f"G2 {name} ({describe(cands[i])}): worst cell {worst[0]}, {worst[1]} "
            f"{r[worst]:.3f}x (target <= {WORSE}x {scope})",
        )


def equal_nfe(b: Bench, res: dict) -> None:
    """At N = M and cfg 1 guidance doubles the network evaluations: guided at k steps
    against off at 2k steps (full set), and the sweep's strongest candidate at N = M
    (coarse numbers)."""
    label = res["n_m"][0]
    steps = {c[1] for c in b.cfg["columns"] if c[2] == "euler"}
    ks = sorted(k for k in steps if 2 * k in steps)
    if not ks:
        return
    sweep = b.run.data["sweep"]
    swept = [c["ratios"] for c in sweep["candidates"]]
    cells = [(label, f"euler {k}") for k in ks]
    strong = min(range(len(swept)), key=lambda i: geomean([swept[i][c] for c in cells]))
    rows = [equal_nfe_row(res, sweep["plain"], swept[strong], label, k) for k in ks]
    print_table(
        f"Table 2d: equal network evaluations at {label}, cfg 1 (guided: 2 per step, "
        "the first step of 'per step size' 1 on this host)",
        ["k", "off k steps", "off 2k steps", "default k", "pairing k", "sweep: off k", "off 2k"]
        + [f"{describe(b.cfg['candidates'][strong])} k"],
        rows,
    )
    print(
        f"(first five columns: full set, {b.cfg['samples']} samples; last three: the "
        f"coarse sweep, {sweep['samples']} samples, its lowest geometric-mean ratio at "
        f"{label}, {ks[0]}-{ks[-1]} steps)\n"
    )
    strongest = describe(b.cfg["candidates"][strong])
    b.run.data["full"]["equal_nfe"] = {"strongest_at_M": strongest, "rows": rows}


def equal_nfe_row(res: dict, sweep_plain: dict, strong: dict, label: str, k: int) -> list:
    a, b2 = (label, f"euler {k}"), (label, f"euler {2 * k}")
    plain, full = res["plain"], res["full"]
    (best, _), (pair, _) = res["best"], res["pair"]
    return [k, fmt(plain[a]), fmt(plain[b2]), fmt(full[best][a]), fmt(full[pair][a])] + [
        fmt(sweep_plain[a]),
        fmt(sweep_plain[b2]),
        fmt(strong[a] * sweep_plain[a]),
    ]


# --------------------------------------------------------------------------- main


def plots(b: Bench, run: Run) -> list[Path]:
    written = []
    if run.data.get("sweep"):
        panels = [
            (b.cells, "all cells"),
            (b.ns_cells, f"without {lacking_ns(b.cfg)} rows lacking NoiseShift"),
        ]
        written.append(figures.guidance_sweep(run, run.data["sweep"], panels, WORSE, geomean))
    if b.full_shown:
        finalists, ratios, tag = b.full_shown
        cands = b.cfg["candidates"]
        grid = np.array([[ratios[i][c] for c in b.cells] for i in finalists])
        names = [f"{tag[i]} {describe(cands[i])}" for i in finalists]
        written.append(figures.guidance_finalists(run, b.cells, names, grid, WORSE))
    return written


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="smoke run, about a minute")
    run = Run.start(args, FULL, QUICK)
    describe_run(args.quick)
    # NoiseShift gets its calibration connected; a private empty store keeps
    # the user's calibration files out of it
    with tempfile.TemporaryDirectory(prefix="guidance-bench-") as folder:
        b = Bench(run, Nodes(private_store(folder)), testbed.spectra(run.cfg["spectra"])[0])
        timings = run_sections(
            (
                ("setup", lambda: section_setup(b)),
                ("sweep", lambda: section_sweep(b)),
                ("full", lambda: section_full(b)),
            )
        )
        chosen = {
            k: {"setting": describe(c), **c, "feasible": ok} for k, (c, ok) in b.chosen.items()
        }
        preamble = [
            f"chosen {key}: {describe(c)} ({'feasible' if ok else 'best trade-off, infeasible'})"
            for key, (c, ok) in b.chosen.items()
        ]
        seeds = {"sampling": SAMPLE_SEED}
        return finish(
            run,
            "guidance",
            timings,
            partial(plots, b),
            seeds,
            extra={"chosen": chosen},
            preamble=preamble,
        )


if __name__ == "__main__":
    sys.exit(main())

"""Noise Awareness Guidance benchmark: testbed quality sweep, chosen defaults, cost.

Run from the repository root::

    .venv/bin/python bench/guidance.py            # full run (about 6.5 minutes, 2 cores)
    .venv/bin/python bench/guidance.py --quick    # smoke run (under a minute)
    .venv/bin/python bench/guidance.py --out DIR  # plots + JSON go to DIR (default out/bench)

Not a test: nothing here fails the run. Each target prints PASS or MISS.

Everything runs through ComfyUI (the host from ``noisecal_host.host``): the
pack's Noise Awareness Guidance node patches the MODEL, sampling is
``comfy.sample.sample`` (KSampler), NoiseShift is the pack's node with a
calibration record made by ``noisecal_host.calibrate.run_search`` (fast mode,
64 latents, 20 simple Euler steps), as in ``bench/noiseshift.py`` whose
helpers this file imports.

Sections (docs/design.md sections 2.2 and 5):

1. Sweep (coarse, fewer samples). The exact-denoiser testbed "trained" at
   M = 32 (f0 = 3, alpha = 2.5, 4 channels). Cells: N = M (the "pixel" and
   "image" variants coincide there), N = M/2 "pixel" and "image", each
   without and with NoiseShift; Euler at 4, 8, 16, 32 steps and
   euler_ancestral at 16 (fixed seed). Every candidate (mode x weight
   schedule x weight x offset / pseudo_level) against guidance off, as an FD
   ratio per cell. Selection, the same rule for every set of cells:
   feasible = no cell more than 5% worse and FD lower at 4, 8 and 16 steps
   at N = M; among the feasible the lowest geometric-mean ratio; with none
   feasible, the lowest worst-cell ratio (the best trade-off). Applied to
   the whole set ("default") and to the set without the N = M/2 rows that
   lack NoiseShift ("with NoiseShift", the recommended pairing), per mode
   and over all modes; the best 2 over all modes and the best per mode of
   each set are the finalists.
2. Full set. The finalists on the full sample count, same cells; the same
   rule on these numbers chooses the default and the pairing, and the
   targets are checked on them.
3. Cost. Step wall time of CFG + guidance against CFG alone on tiny SD3 and
   tiny Flux (cfg > 1, a negative conditioning), interleaved repeats,
   medians; network evaluations per step counted with a forward hook on the
   diffusion model (calls and batch rows).

Seeds: calibration data, search noise and sampling noise as in
``bench/noiseshift.py``; the FD samples of every cell and candidate share the
sampling seed, so a ratio compares the same initial noise (and, for
euler_ancestral, the same ancestral noise).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    describe_run,
    finish,
    fmt,
    parse_args,
    print_table,
    run_sections,
)
from bench.lib.legacy_bench import (  # noqa: E402  (needs ROOT on sys.path)
    CAL_SCHEDULER,
    CAL_STEPS,
    SAMPLE_SEED,
    TIMING_SEED,
    Bench,
    M,
)

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


def _grid(spec: dict) -> list[dict]:
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
    "candidates": _grid(
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
    "cost": {"latent": 32, "batch": 4, "steps": 5, "cfg": 4.0, "repeats": 20, "warmup": 2},
}
QUICK = {
    "spectra": [(3.0, 2.5)],
    "cal_count": 64,
    "sweep_samples": 32,
    "samples": 64,
    "columns": [COLUMNS[0], COLUMNS[2], COLUMNS[4]],
    "cases": [CASES[0], CASES[3], CASES[4]],
    "candidates": _grid(
        {
            "offset": {"values": (0.5, 2.0), "per step size": (0.5, 4.0), "constant": (0.03,)},
            "estimated": {"per step size": (0.5,), "constant": (0.03,)},
            "pseudo-level": {"values": (1.0,), "per step size": (0.5,), "constant": (0.03,)},
        }
    ),
    "finalists": {"any": 2, "per mode": 1},
    "cost": {"latent": 32, "batch": 4, "steps": 5, "cfg": 4.0, "repeats": 4, "warmup": 1},
}


def describe(c: dict) -> str:
    param = {"offset": f"offset {c['offset']:g}", "pseudo-level": f"level {c['pseudo_level']:g}"}
    extra = param.get(c["mode"], "")
    sched = "/step" if c["schedule"] == "per step size" else "const"
    return f"{c['mode']} w={c['weight']:g} {sched}" + (f" {extra}" if extra else "")


def geomean(values) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def rank(ratios, cells, help_cells):
    """Indices ordered by the selection rule of section 1 over `cells`, with feasibility.

    Feasible (no cell above WORSE, lower FD at every help cell) first, by
    geometric-mean ratio; then the infeasible, by worst-cell ratio."""
    scored = []
    for i, r in enumerate(ratios):
        vals = [r[k] for k in cells]
        ok = max(vals) <= WORSE and all(r[k] < 1 for k in help_cells)
        scored.append((not ok, geomean(vals) if ok else max(vals), geomean(vals), i))
    return [(i, not bad) for bad, _, _, i in sorted(scored)]


SETS = ("default", "with NoiseShift")
MODES = ("any", "offset", "estimated", "pseudo-level")


# --------------------------------------------------------------------------- the bench


class GuidanceBench(Bench):
    def _import_pack(self):
        super()._import_pack()
        from noisecal_host.pack_loader import load_pack

        pack = load_pack()
        self.GuidanceNode = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseAwarenessGuidance"]
        self.sp = None

    # ---- cells

    def prepare(self):
        """Models (guidance off) per row: NoiseShift calibrated as bench/noiseshift.py does."""
        self.sp = self.spectra[0]
        self.base: dict = {}
        self.ns_info: dict = {}
        for label, variant, n, ns in self.cfg["cases"]:
            model = self.model(self.sp, M, variant)
            if ns:
                sigmas = self.sigmas(model, CAL_STEPS, CAL_SCHEDULER)
                x0 = self.cal_latents(self.sp, n, self.cfg["cal_count"])
                res, record, wall = self.run_calibration(model, x0, sigmas, "fast")
                model = self.noiseshift(model, record)
                shifts = [h - s for s, h in zip(res.sigmas, res.sigma_hat, strict=True)]
                self.ns_info[label] = {
                    "nfe": res.nfe,
                    "seconds": wall,
                    "largest_shift": max(shifts, key=abs),
                }
            self.base[label] = model
        self.cells = [(c[0], col[0]) for c in self.cfg["cases"] for col in self.cfg["columns"]]
        self.help_cells = [
            (c[0], col[0])
            for c in self.cfg["cases"]
            if c[2] == M
            for col in self.cfg["columns"]
            if col[2] == "euler" and col[1] in HELP_STEPS
        ]
        # the recommended pairing: N = M, and N = M/2 only with NoiseShift
        self.ns_cells = [k for k in self.cells if self._case(k[0])[2] == M or self._case(k[0])[3]]

    def _case(self, label):
        return next(c for c in self.cfg["cases"] if c[0] == label)

    def _column(self, label):
        return next(c for c in self.cfg["columns"] if c[0] == label)

    def guided(self, model, c: dict):
        (patched,) = self.GuidanceNode().apply(
            model, c["weight"], c["mode"], c["offset"], c["pseudo_level"], c["schedule"], 1.0, 0.0
        )
        return patched

    def fd_cell(self, model, cell, count):
        _, _, n, _ = self._case(cell[0])
        _, steps, sampler = self._column(cell[1])
        lat = self.sampling.empty_latent(model, n, n, count)
        cond = self.testbed_model.make_testbed_conditioning(count)
        out = self.sampling.ksample(
            model, lat, cond, seed=SAMPLE_SEED, steps=steps, sampler_name=sampler
        )
        return self.metrics.frechet_distance(out, self.sp.power(n))

    def fd_row(self, c, count):
        """FD of every cell for candidate `c` (None: guidance off)."""
        out = {}
        for label, *_ in self.cfg["cases"]:
            model = self.base[label] if c is None else self.guided(self.base[label], c)
            for col in self.cfg["columns"]:
                out[(label, col[0])] = self.fd_cell(model, (label, col[0]), count)
        return out

    def set_cells(self, set_name):
        return self.cells if set_name == "default" else self.ns_cells

    def rankings(self, ratios, indices):
        """(set, mode) -> [(candidate index, feasible)] best first, among `indices`."""
        cands = self.cfg["candidates"]
        out = {}
        for set_name in SETS:
            for mode in MODES:
                idx = [i for i in indices if mode == "any" or cands[i]["mode"] == mode]
                if not idx:
                    continue
                ranked = rank([ratios[i] for i in idx], self.set_cells(set_name), self.help_cells)
                out[(set_name, mode)] = [(idx[j], ok) for j, ok in ranked]
        return out

    # ---- section 1

    def section_sweep(self):
        count = self.cfg["sweep_samples"]
        cands = self.cfg["candidates"]
        print(
            "=" * 78 + f"\n1. Coarse sweep ({len(cands)} candidates x {len(self.cells)} cells, "
            f"{count} samples)\n",
            flush=True,
        )
        plain = self.fd_row(None, count)
        ratios = []
        t0 = time.perf_counter()
        for i, c in enumerate(cands):
            fd = self.fd_row(c, count)
            ratios.append({k: fd[k] / plain[k] for k in self.cells})
            if (i + 1) % 10 == 0:
                print(f"  {i + 1}/{len(cands)} ({time.perf_counter() - t0:.0f} s)", flush=True)
        ranking = self.rankings(ratios, range(len(cands)))
        k_any, k_mode = self.cfg["finalists"]["any"], self.cfg["finalists"]["per mode"]
        picks = {
            key: ranked[: k_any if key[1] == "any" else k_mode] for key, ranked in ranking.items()
        }
        rows = []
        cols = [col[0] for col in self.cfg["columns"]]
        n_m = self.cfg["cases"][0][0]
        for i, c in enumerate(cands):
            r = ratios[i]
            worst = max(self.cells, key=lambda k, r=r: r[k])
            rows.append(
                [
                    describe(c),
                    f"{geomean([r[k] for k in self.cells]):.3f}",
                    f"{max(r[k] for k in self.cells):.3f}",
                    f"{geomean([r[k] for k in self.ns_cells]):.3f}",
                    f"{max(r[k] for k in self.ns_cells):.3f}",
                    *[f"{r[(n_m, col)]:.2f}" for col in cols],
                    f"{worst[0]}, {worst[1]}",
                ]
            )
        self.tables.append(
            print_table(
                f"Table 1: coarse sweep, FD ratio guided / off ({count} samples, seed "
                f"{SAMPLE_SEED}); all = every cell, NS = without the N=16 rows lacking NoiseShift",
                [
                    "candidate",
                    "geo all",
                    "max all",
                    "geo NS",
                    "max NS",
                    *[f"{n_m} {col}" for col in cols],
                    "worst cell",
                ],
                rows,
            )
        )
        prow = []
        for (set_name, mode), ranked in picks.items():
            cells = self.set_cells(set_name)
            for rank_no, (i, ok) in enumerate(ranked, 1):
                r = ratios[i]
                prow.append(
                    [
                        set_name,
                        mode,
                        rank_no,
                        describe(cands[i]),
                        "yes" if ok else "no",
                        f"{geomean([r[k] for k in cells]):.3f}",
                        f"{max(r[k] for k in cells):.3f}",
                    ]
                )
        self.tables.append(
            print_table(
                "Table 1b: picks of the coarse sweep, the finalists (feasible: no cell > 5% worse "
                "and lower FD at N=M 4/8/16 steps; ranked by geometric-mean ratio, the "
                "infeasible by worst cell)",
                ["set", "mode", "rank", "pick", "feasible", "geo ratio", "max ratio"],
                prow,
            )
        )
        self.data["sweep"] = {
            "samples": count,
            "plain": plain,
            "candidates": [
                {**c, "label": describe(c), "ratios": ratios[i]} for i, c in enumerate(cands)
            ],
            "picks": {
                f"{s} / {m}": [{"setting": describe(cands[i]), "feasible": ok} for i, ok in ranked]
                for (s, m), ranked in picks.items()
            },
        }
        self.picks = picks

    # ---- section 2

    def section_full(self):
        count = self.cfg["samples"]
        cands = self.cfg["candidates"]
        finalists = list(dict.fromkeys(i for ranked in self.picks.values() for i, _ in ranked))
        print(
            "=" * 78 + f"\n2. Full set ({len(finalists)} finalists, {count} samples)\n",
            flush=True,
        )
        plain = self.fd_row(None, count)
        # the variants coincide at N = M: check it on guidance off
        n_m = next(c for c in self.cfg["cases"] if c[2] == M)
        other = "pixel" if n_m[1] == "image" else "image"
        same_model = self.model(self.sp, M, other)
        same = {
            col[0]: self.fd_cell(same_model, (n_m[0], col[0]), count) for col in self.cfg["columns"]
        }
        variants_equal = all(
            math.isclose(same[col], plain[(n_m[0], col)], rel_tol=1e-6) for col in same
        )
        native = {}
        for label, _, n, _ in self.cfg["cases"]:
            if n < M:
                nat = self.model(self.sp, n, "pixel")
                for col in self.cfg["columns"]:
                    native[(label, col[0])] = self.fd_cell(nat, (label, col[0]), count)
        full = {i: self.fd_row(cands[i], count) for i in finalists}
        ratios = {i: {k: full[i][k] / plain[k] for k in self.cells} for i in finalists}
        # final choice: the same rule on the full-sample numbers, among the finalists
        choice = {key: ranked[0] for key, ranked in self.rankings(ratios, finalists).items()}
        best, feasible = choice[("default", "any")]
        pair, pair_ok = choice[("with NoiseShift", "any")]
        tag = {i: f"F{j}" for j, i in enumerate(finalists, 1)}
        frow = []
        for i in finalists:
            r = ratios[i]
            row = [tag[i], describe(cands[i])]
            for set_name in SETS:
                cells = self.set_cells(set_name)
                worst = max(cells, key=lambda k, r=r: r[k])
                ok = r[worst] <= WORSE and all(r[k] < 1 for k in self.help_cells)
                row += [
                    f"{geomean([r[k] for k in cells]):.3f}",
                    f"{r[worst]:.3f} ({worst[0]}, {worst[1]})",
                    "yes" if ok else "no",
                ]
            frow.append(row)
        self.tables.append(
            print_table(
                f"Table 2a: the finalists on the full set ({count} samples); all = every cell, "
                "NS = without the N=16 rows lacking NoiseShift",
                [
                    "",
                    "setting",
                    "geo all",
                    "max all (cell)",
                    "feasible all",
                    "geo NS",
                    "max NS (cell)",
                    "feasible NS",
                ],
                frow,
            )
        )
        floor = {n: self.floor(self.sp, n) for n in {c[2] for c in self.cfg["cases"]}}
        rows = []
        for label, col in self.cells:
            n = self._case(label)[2]
            nat = native.get((label, col))
            rows.append(
                [
                    label,
                    col,
                    fmt(floor[n]),
                    fmt(nat) if nat is not None else "-",
                    fmt(plain[(label, col)]),
                    fmt(full[best][(label, col)]),
                    fmt(full[pair][(label, col)]),
                    *[f"{ratios[i][(label, col)]:.3f}" for i in finalists],
                ]
            )
        self.tables.append(
            print_table(
                f"Table 2b: FD on the full set ({count} samples, seed {SAMPLE_SEED}); off = "
                "guidance off (NoiseShift alone on the +NS rows); F* = FD ratio to off",
                [
                    "case",
                    "sampler",
                    "FD floor",
                    "FD native",
                    "FD off",
                    f"FD default ({tag[best]})",
                    f"FD pairing ({tag[pair]})",
                    *[tag[i] for i in finalists],
                ],
                rows,
            )
        )
        print(
            f"(default = {describe(cands[best])}, pairing = {describe(cands[pair])}; at N=M the "
            f"'image' and 'pixel' variants give the same FD with guidance off: {variants_equal}; "
            "native = exact denoiser for N)\n"
        )
        srows = []
        for (set_name, mode), (i, ok) in choice.items():
            cells = self.set_cells(set_name)
            r = ratios[i]
            worst = max(cells, key=lambda k, r=r: r[k])
            srows.append(
                [
                    set_name,
                    mode,
                    f"{tag[i]} {describe(cands[i])}",
                    "yes" if ok else "no",
                    f"{geomean([r[k] for k in cells]):.3f}",
                    f"{r[worst]:.3f}",
                    f"{worst[0]}, {worst[1]}",
                ]
            )
        self.tables.append(
            print_table(
                "Table 2c: chosen settings (the rule of Table 1b on the full-set numbers, among "
                "the finalists)",
                ["set", "mode", "setting", "feasible", "geo ratio", "max ratio", "worst cell"],
                srows,
            )
        )
        best, feasible = choice[("default", "any")]
        pair, pair_ok = choice[("with NoiseShift", "any")]
        for name, i, cells in (
            ("default", best, self.cells),
            ("with NoiseShift pairing", pair, self.ns_cells),
        ):
            r = ratios[i]
            helps = ", ".join(f"{k[1]} {r[k]:.2f}x" for k in self.help_cells)
            self.verdicts.check(
                all(r[k] < 1 for k in self.help_cells),
                f"G1 {name} ({describe(cands[i])}): FD lower than off at N=M: {helps}",
            )
            worst = max(cells, key=lambda k, r=r: r[k])
            scope = "anywhere" if cells is self.cells else "on the NS set"
            self.verdicts.check(
                r[worst] <= WORSE,
                f"G2 {name} ({describe(cands[i])}): worst cell {worst[0]}, {worst[1]} "
                f"{r[worst]:.3f}x (target <= {WORSE}x {scope})",
            )
        self.data["full"] = {
            "samples": count,
            "plain": plain,
            "native": native,
            "fd_floor": floor,
            "variants_equal_at_M": variants_equal,
            "noiseshift": self.ns_info,
            "finalists": {
                tag[i]: {
                    "setting": describe(cands[i]),
                    **cands[i],
                    "fd": full[i],
                    "ratios": ratios[i],
                }
                for i in finalists
            },
            "choice": {
                f"{s} / {m}": {"setting": describe(cands[i]), **cands[i], "feasible": ok}
                for (s, m), (i, ok) in choice.items()
            },
        }
        self.chosen = {"default": (cands[best], feasible), "pairing": (cands[pair], pair_ok)}
        self.full_shown = (finalists, ratios, tag)
        self._equal_nfe(n_m[0], plain, full, best, pair)

    def _equal_nfe(self, label, plain, full, best, pair):
        """At N = M and cfg 1 guidance doubles the network evaluations: guided at k steps
        against off at 2k steps (full set), and the sweep's strongest candidate at N = M
        (coarse numbers)."""
        cands = self.cfg["candidates"]
        sweep = self.data["sweep"]
        steps = {c[1] for c in self.cfg["columns"] if c[2] == "euler"}
        ks = sorted(k for k in steps if 2 * k in steps)
        if not ks:
            return
        cells = [(label, f"euler {k}") for k in ks]
        strong = min(
            range(len(cands)),
            key=lambda i: geomean([sweep["candidates"][i]["ratios"][c] for c in cells]),
        )
        sp = sweep["plain"]
        rows = []
        for k in ks:
            a, b = (label, f"euler {k}"), (label, f"euler {2 * k}")
            rows.append(
                [
                    k,
                    fmt(plain[a]),
                    fmt(plain[b]),
                    fmt(full[best][a]),
                    fmt(full[pair][a]),
                    fmt(sp[a]),
                    fmt(sp[b]),
                    fmt(sweep["candidates"][strong]["ratios"][a] * sp[a]),
                ]
            )
        self.tables.append(
            print_table(
                f"Table 2d: equal network evaluations at {label}, cfg 1 (guided: 2 per step, "
                "the first step of 'per step size' 1 on this host)",
                [
                    "k",
                    "off k steps",
                    "off 2k steps",
                    "default k",
                    "pairing k",
                    "sweep: off k",
                    "off 2k",
                    f"{describe(cands[strong])} k",
                ],
                rows,
            )
        )
        print(
            f"(first five columns: full set, {self.cfg['samples']} samples; last three: the "
            f"coarse sweep, {sweep['samples']} samples, its lowest geometric-mean ratio at "
            f"{label}, 4-16 steps)\n"
        )
        self.data["full"]["equal_nfe"] = {"strongest_at_M": describe(cands[strong]), "rows": rows}

    # ---- section 3

    def section_cost(self):
        o = self.cfg["cost"]
        print(
            "=" * 78 + f"\n3. Cost ({o['latent']}x{o['latent']} latent, batch {o['batch']}, "
            f"{o['steps']} Euler steps, cfg {o['cfg']:g}, negative conditioning)\n",
            flush=True,
        )
        settings = {
            # 'constant' so that every step pays for the extra branch ('per step size' skips
            # the first step on a host without sample_sigmas); pseudo-level costs as offset
            "offset": {
                "mode": "offset",
                "schedule": "constant",
                "weight": 0.1,
                "offset": 1.0,
                "pseudo_level": 1.0,
            },
            "estimated": {
                "mode": "estimated",
                "schedule": "constant",
                "weight": 0.1,
                "offset": 1.0,
                "pseudo_level": 1.0,
            },
        }
        rows, cases = [], []
        for name in ("sd3", "flux"):
            tm = self.tiny_models.TINY_MODELS[name]()
            model = tm.patcher
            variants = {"CFG": model} | {
                f"CFG + {k}": self.guided(model, s) for k, s in settings.items()
            }
            lat = self.sampling.empty_latent(model, o["latent"], o["latent"], o["batch"])
            pos = tm.conditioning(o["batch"], seed=0)
            neg = tm.conditioning(o["batch"], seed=1)
            net = model.model.diffusion_model
            counter = {"calls": 0, "rows": 0}

            def hook(_mod, args, _out, counter=counter):
                counter["calls"] += 1
                counter["rows"] += int(args[0].shape[0])

            cpu = {}

            def run(m, _lat=lat, _pos=pos, _neg=neg, cpu=cpu):
                c0, t0 = time.process_time(), time.perf_counter()
                self.sampling.ksample(
                    m, _lat, _pos, _neg, seed=TIMING_SEED, steps=o["steps"], cfg=o["cfg"]
                )
                cpu["last"] = (time.process_time() - c0) / o["steps"]
                return (time.perf_counter() - t0) / o["steps"]

            nfe = {}
            handle = net.register_forward_hook(hook)
            try:
                for k, m in variants.items():
                    counter.update(calls=0, rows=0)
                    run(m)
                    nfe[k] = (counter["calls"] / o["steps"], counter["rows"] / o["steps"])
            finally:
                handle.remove()
            for _ in range(o["warmup"]):
                for m in variants.values():
                    run(m)
            times = {k: [] for k in variants}
            cpu_times = {k: [] for k in variants}
            keys = list(variants)
            for r in range(o["repeats"]):
                order = keys[r % len(keys) :] + keys[: r % len(keys)]
                for k in order:
                    times[k].append(run(variants[k]))
                    cpu_times[k].append(cpu["last"])
            base = statistics.median(times["CFG"])
            cpu_base = statistics.median(cpu_times["CFG"])
            for k in keys:
                med = statistics.median(times[k])
                pairs = [b / a for a, b in zip(times["CFG"], times[k], strict=True)]
                case = {
                    "model": name,
                    "variant": k,
                    "step_s": times[k],
                    "median_step_s": med,
                    "ratio": med / base,
                    "median_pair_ratio": statistics.median(pairs),
                    "cpu_step_s": cpu_times[k],
                    "cpu_ratio": statistics.median(cpu_times[k]) / cpu_base,
                    "calls_per_step": nfe[k][0],
                    "rows_per_step": nfe[k][1],
                }
                cases.append(case)
                rows.append(
                    [
                        f"tiny {name}",
                        k,
                        f"{1000 * med:.2f}",
                        f"{case['ratio']:.3f}",
                        f"{case['median_pair_ratio']:.3f}",
                        f"{case['cpu_ratio']:.3f}",
                        f"{nfe[k][0]:g}",
                        f"{nfe[k][1]:g}",
                    ]
                )
        self.tables.append(
            print_table(
                f"Table 3: step wall time, median of {o['repeats']} interleaved repeats; network "
                "calls and batch rows per step (forward hook on the diffusion model)",
                [
                    "model",
                    "sampling",
                    "ms/step",
                    "ratio",
                    "pair ratio",
                    "CPU-time ratio",
                    "calls/step",
                    "rows/step",
                ],
                rows,
            )
        )
        print(
            "(ratio = median step / median CFG step, the target's measure; pair ratio = median\n"
            " of the per-repeat ratios; CPU-time ratio = the same with process CPU time, which\n"
            " other processes on the machine disturb less. Batch "
            f"{o['batch']}: CFG evaluates cond and\n uncond in one call of {2 * o['batch']} rows; "
            "guidance adds one conditional call)\n"
        )
        for c in cases:
            if c["model"] == "sd3" and c["variant"] != "CFG":
                self.verdicts.check(
                    c["ratio"] <= 1.6,
                    f"G3 tiny sd3 {c['variant']}: step {c['ratio']:.3f}x the CFG step "
                    "(target <= 1.6x)" + (" [quick: few repeats]" if self.quick else ""),
                )
        self.data["cost"] = cases

    # ---- plots and output

    def plots(self):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker

        self.out.mkdir(parents=True, exist_ok=True)
        written = []
        sweep = self.data.get("sweep")
        if sweep:
            fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
            colors = {"offset": "C0", "estimated": "C1", "pseudo-level": "C2"}
            markers = {"per step size": "o", "constant": "^"}
            for ax, cells, title in (
                (axes[0], self.cells, "all cells"),
                (axes[1], self.ns_cells, "without N=16 rows lacking NoiseShift"),
            ):
                for c in sweep["candidates"]:
                    r = [c["ratios"][k] for k in cells]
                    ax.scatter(
                        geomean(r),
                        max(r),
                        color=colors[c["mode"]],
                        marker=markers[c["schedule"]],
                        s=18,
                    )
                ax.axhline(WORSE, color="0.5", linestyle="--")
                ax.axvline(1.0, color="0.5", linestyle=":")
                ax.set_xscale("log")
                ax.set_yscale("log")
                for axis in (ax.xaxis, ax.yaxis):
                    axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
                    axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
                ax.set_xlabel("geometric-mean FD ratio (guided / off)")
                ax.set_ylabel("worst-cell FD ratio")
                ax.set_title(title, fontsize=9)
            handles = [
                plt.Line2D([], [], color=v, marker="o", linestyle="", label=k)
                for k, v in colors.items()
            ] + [
                plt.Line2D([], [], color="k", marker=v, linestyle="", label=k)
                for k, v in markers.items()
            ]
            axes[0].legend(handles=handles, fontsize=8)
            fig.suptitle(f"Guidance sweep ({sweep['samples']} samples per cell)")
            fig.tight_layout()
            path = self.out / "guidance_sweep.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
        if getattr(self, "full_shown", None):
            import numpy as np

            finalists, ratios, tag = self.full_shown
            cands = self.cfg["candidates"]
            grid = np.array([[ratios[i][c] for c in self.cells] for i in finalists])
            fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(self.cells)), 1.2 + 0.5 * len(grid)))
            im = ax.imshow(np.log2(grid), cmap="RdBu_r", vmin=-2, vmax=2, aspect="auto")
            for y in range(grid.shape[0]):
                for x in range(grid.shape[1]):
                    v = grid[y, x]
                    ax.text(
                        x,
                        y,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=6,
                        fontweight="bold" if v > WORSE else "normal",
                    )
            ax.set_xticks(range(len(self.cells)))
            ax.set_xticklabels([f"{a}, {b}" for a, b in self.cells], fontsize=6, rotation=90)
            ax.set_yticks(range(len(finalists)))
            ax.set_yticklabels([f"{tag[i]} {describe(cands[i])}" for i in finalists], fontsize=7)
            cbar = fig.colorbar(im, ax=ax)
            cbar.set_label("log2 FD ratio to guidance off")
            ax.set_title(
                f"Finalists on the full set ({self.cfg['samples']} samples); bold: > {WORSE}x",
                fontsize=9,
            )
            fig.tight_layout()
            path = self.out / "guidance_fd_ratio.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
        return written


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="smoke run, about a minute")
    os.environ["NOISE_CALIBRATION_DIR"] = tempfile.mkdtemp(prefix="guidance-bench-")
    t_start = time.perf_counter()
    bench = GuidanceBench(QUICK if args.quick else FULL, Path(args.out), args.quick)
    describe_run(bench, args.quick)
    timings = run_sections(
        (
            ("setup", bench.prepare),
            ("sweep", bench.section_sweep),
            ("full", bench.section_full),
            ("cost", bench.section_cost),
        )
    )
    chosen = {
        k: {"setting": describe(c), **c, "feasible": ok}
        for k, (c, ok) in getattr(bench, "chosen", {}).items()
    }
    preamble = [
        f"chosen {key}: {describe(c)} ({'feasible' if ok else 'best trade-off, infeasible'})"
        for key, (c, ok) in bench.chosen.items()
    ]
    seeds = {"sampling": SAMPLE_SEED, "timing": TIMING_SEED}
    return finish(
        bench, "guidance", timings, t_start, seeds, extra={"chosen": chosen}, preamble=preamble
    )


if __name__ == "__main__":
    sys.exit(main())

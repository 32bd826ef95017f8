"""The paper's classifier-free Noise Awareness Guidance on the dropout-trained dead-leaves network.

Run from the repository root::

    .venv/bin/python bench/guidance_dropout.py --quick   # fewer samples, a few minutes
    .venv/bin/python bench/guidance_dropout.py           # the full sweep, under 12 minutes
    .venv/bin/python bench/guidance_dropout.py --out DIR # JSON goes to DIR (out/bench)

Not a test: nothing here fails the run. The target prints PASS or MISS.

Model: ``models/reference/sd3_dead_leaves_m32.safetensors``, trained at latent
M = 32 with 10% noise-condition dropout (level input replaced by the pseudo
level 1.0, timestep 1000), loaded as in ``bench/dead_leaves.py`` (SD3, shift 3,
zero conditioning, cfg 1).

Guidance: the pack's Noise Awareness Guidance node in ``pseudo-level`` mode,
pseudo level 1.0 (the level the network was trained with), weight schedule
``constant``, on at every level (level_start 1, level_end 0). At cfg 1 the node
returns cond + w (cond - cond at the pseudo level) = (w + 1) D(x | t) - w D(x | pseudo),
the paper's mix in denoised space (the node's guard, which limits the term's
RMS to that of the step D - x per sample, stays as shipped). w = 0 is plain
sampling (the node returns the model unchanged). "Uncapped": the same mix with
the guard off (``apply_guidance`` with guard 1e9), the paper's mix exactly, at
the target's step counts.

Cells: w in {0, 0.5, 1, 2, 4} x Euler 8, 20, 50 ("simple") at N = 32 (= M)
and N = 16 (= M/2), and uncapped w in {0.5, 1, 2, 4} x Euler 8, 20; every
cell shares the sampling seed. Metrics and floors:
``bench/dead_leaves.py``'s ``TrueSets`` (patch SWD and edge statistic on the
images, spectral FD on the latents, each against a true set of the same size;
floor = the same metric for a second independent true set). Cost: the wall
time of each guided cell over the plain cell at the same N and steps.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib.calibration import guidance
from bench.lib.dead_leaves import FLOOR_SEED, M_FILE, POWER_SEED, TRUE_SEED, TrueSets, load, sample
from bench.lib.report import fmt, print_section, print_table
from bench.lib.run import Run, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import SAMPLE_SEED
from noise_calibration.noisecal.guidance import GuidanceSettings
from noise_calibration.noisecal_host import level_patches
from noise_calibration.noisecal_host.model_info import zero_conditioning

PSEUDO_LEVEL = 1.0  # the network's training pseudo level (sigma 1.0, timestep 1000)
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
STEPS = (8, 20, 50)
SAMPLER = "euler"
TARGET = 0.8  # best w's SWD at most 0.8x plain (a 20% improvement) at 8 or 20 steps, N = M
TARGET_STEPS = (8, 20)
UNCAPPED = 1e9  # guard: the term's RMS may be 1e9x the step's, i.e. never cut
GUARDS = ("capped", "uncapped")
METRICS = (("swd", "patch SWD"), ("edge", "edge W1"), ("fd", "spectral FD"))

FULL = {"ns": (32, 16), "samples": {32: 32, 16: 64}}
QUICK = {"ns": (32, 16), "samples": {32: 12, 16: 24}}


def guided(model, w: float):
    """The guidance node at weight w, pseudo-level mode (w = 0: the model unchanged)."""
    return guidance(model, w, "pseudo-level", pseudo_level=PSEUDO_LEVEL)


def uncapped(model, w: float):
    """The paper's mix exactly: pseudo-level mode at weight w with the guard off."""
    s = GuidanceSettings(
        weight=w,
        mode="pseudo-level",
        pseudo_level=PSEUDO_LEVEL,
        weight_schedule="constant",
        guard=UNCAPPED,
    )
    return level_patches.apply_guidance(model, s)


class Bench:
    def __init__(self, run: Run):
        self.run = run
        self.model, self.load_s = load(M_FILE)
        self.positive = zero_conditioning(self.model)
        self.patched = {("capped", w): guided(self.model, w) for w in WEIGHTS}
        self.patched |= {("uncapped", w): uncapped(self.model, w) for w in WEIGHTS if w}
        self.cells: list[dict] = []


def section_n(b: Bench, n: int) -> None:
    count = b.run.cfg["samples"][n]
    t0 = time.perf_counter()
    truth = TrueSets(n, count, 1)
    print(
        f"N = {n}: true sets ({count} each) in {time.perf_counter() - t0:.1f} s; floors "
        + ", ".join(f"{k} {v:.5f}" for k, v in truth.floors.items()),
        flush=True,
    )
    for steps in STEPS:
        for guard, w in b.patched:
            if guard == "uncapped" and steps not in TARGET_STEPS:
                continue
            t1 = time.perf_counter()
            out = sample(b.patched[guard, w], b.positive, n, count, SAMPLER, steps)
            wall = time.perf_counter() - t1
            cell = {"N": n, "steps": steps, "w": w, "guard": guard}
            cell |= {"samples": count, "sampling_s": wall}
            cell.update(truth.measure(out))
            cell["floor"] = truth.floors
            b.cells.append(cell)
            print(
                f"N = {n} euler {steps} w {w:g} {guard}: "
                + " ".join(f"{k} {cell[k]:.5f}" for k, _ in METRICS)
                + f" ({wall:.1f} s)",
                flush=True,
            )


def cell(b: Bench, n: int, steps: int, w: float, guard: str = "capped") -> dict:
    if w == 0:
        guard = "capped"  # plain: the node returns the model unchanged
    key = (n, steps, w, guard)
    return next(c for c in b.cells if (c["N"], c["steps"], c["w"], c["guard"]) == key)


def best_w(b: Bench, n: int, steps: int, key: str = "swd", guard: str = "capped") -> float:
    return min(WEIGHTS, key=lambda w: cell(b, n, steps, w, guard)[key])


def tables(b: Bench) -> None:
    print_section("Results")
    for key, name in METRICS:
        rows = []
        for n in b.run.cfg["ns"]:
            for steps in STEPS:
                plain = cell(b, n, steps, 0.0)[key]
                row = [n, f"{SAMPLER} {steps}", b.run.cfg["samples"][n]]
                row += [fmt(cell(b, n, steps, w)[key]) for w in WEIGHTS]
                bw = best_w(b, n, steps, key)
                row += [f"{bw:g}", f"{cell(b, n, steps, bw)[key] / plain:.2f}"]
                row += [fmt(cell(b, n, steps, 0.0)["floor"][key])]
                rows.append(row)
        print_table(
            f"{name} by weight w (w = 0 is plain; lower is better; floor: two independent "
            "true sets of the same size)",
            ["N", "cell", "samples"]
            + [f"w={w:g}" for w in WEIGHTS]
            + ["best w", "best/plain", "floor"],
            rows,
        )
    uncapped_tables(b)
    rows = []
    for n in b.run.cfg["ns"]:
        for steps in STEPS:
            plain = cell(b, n, steps, 0.0)["sampling_s"]
            ratios = [cell(b, n, steps, w)["sampling_s"] / plain for w in WEIGHTS if w]
            rows.append(
                [n, f"{SAMPLER} {steps}", f"{plain:.1f}"]
                + [f"{r:.2f}" for r in ratios]
                + [f"{statistics.median(ratios):.2f}"]
            )
    print_table(
        "Wall time: plain cell (s) and guided / plain per weight",
        ["N", "cell", "plain s"] + [f"w={w:g}" for w in WEIGHTS if w] + ["median"],
        rows,
    )


def uncapped_tables(b: Bench) -> None:
    """Every metric of the uncapped mix next to the capped one, at the target's steps."""
    guided = [w for w in WEIGHTS if w]
    for key, name in METRICS:
        rows = []
        for n in b.run.cfg["ns"]:
            for steps in TARGET_STEPS:
                plain = cell(b, n, steps, 0.0)[key]
                row = [n, f"{SAMPLER} {steps}", fmt(plain)]
                for guard in GUARDS:
                    row += [fmt(cell(b, n, steps, w, guard)[key]) for w in guided]
                bw = best_w(b, n, steps, key, "uncapped")
                row += [f"{bw:g}", f"{cell(b, n, steps, bw, 'uncapped')[key] / plain:.2f}"]
                rows.append(row)
        print_table(
            f"{name}: the node's capped mix against the uncapped one (guard off, the paper's "
            "mix exactly)",
            ["N", "cell", "plain"]
            + [f"{g[:3]} w={w:g}" for g in GUARDS for w in guided]
            + ["uncapped best w", "best/plain"],
            rows,
        )


def best_at_m(b: Bench, steps: int) -> tuple[str, float, float]:
    """(guard, w, SWD / plain) of the lowest SWD at N = M over both mixes."""
    m = max(b.run.cfg["ns"])
    plain = cell(b, m, steps, 0.0)["swd"]
    options = [(g, w) for g in GUARDS for w in WEIGHTS]
    g, w = min(options, key=lambda gw: cell(b, m, steps, gw[1], gw[0])["swd"])
    return g, w, cell(b, m, steps, w, g)["swd"] / plain


def verdicts(b: Bench) -> None:
    m = max(b.run.cfg["ns"])
    results = {steps: best_at_m(b, steps) for steps in TARGET_STEPS}
    hit = [s for s, (_, _, r) in results.items() if r <= TARGET]
    text = "; ".join(
        f"euler {s}: best w {w:g} ({g}), SWD {r:.2f}x plain" for s, (g, w, r) in results.items()
    )
    b.run.check(
        bool(hit),
        f"N = M = {m}: the best w improves patch SWD by >= 20% at 8 or 20 steps "
        f"({text}; met at: {', '.join(f'euler {s}' for s in hit) or 'none'})",
    )
    ratios = [
        c["sampling_s"] / cell(b, c["N"], c["steps"], 0.0)["sampling_s"]
        for c in b.cells
        if c["w"] and c["guard"] == "capped"
    ]
    b.run.data["cost_ratio_median"] = statistics.median(ratios)
    print(
        f"guided / plain wall time, median over {len(ratios)} cells: "
        f"{statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})",
        flush=True,
    )


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="fewer samples, a few minutes on 2 shared cores")
    run = Run.start(args, FULL, QUICK)
    b = Bench(run)
    describe_run(args.quick, f"; model {M_FILE.name}, pseudo level {PSEUDO_LEVEL}")
    timings = run_sections([(f"N={n}", lambda n=n: section_n(b, n)) for n in run.cfg["ns"]])
    tables(b)
    verdicts(b)
    run.data["cells"] = b.cells
    seeds = {"sampling": SAMPLE_SEED, "true": TRUE_SEED, "floor": FLOOR_SEED, "power": POWER_SEED}
    return finish(run, "guidance_dropout", timings, lambda _run: [], seeds)


if __name__ == "__main__":
    sys.exit(main())

"""Noise Awareness Guidance benchmark: what the extra branch costs per step.

Run from the repository root::

    .venv/bin/python bench/guidance_cost.py            # full run (about 3 minutes, 2 cores)
    .venv/bin/python bench/guidance_cost.py --quick    # smoke run (under a minute)
    COMFYUI_PATH=<ComfyUI> <its python> bench/guidance_cost.py   # on another host

Not a test: nothing here fails the run. Each target prints PASS or MISS.

Step wall time of CFG + guidance against CFG alone (cfg > 1, a negative
conditioning, KSampler) on tiny SD3, tiny Flux and the dead-leaves reference
network (``models/reference/sd3_dead_leaves_m32.safetensors``, trained with
noise-condition dropout, zero conditioning), interleaved repeats, medians;
network calls and batch rows per step counted with a forward hook on the
diffusion model. Guidance through the pack's node, which puts the extra
branch in the step's own network call where the host chains patcher wrappers
(ComfyUI 2025+); there the same guidance as a separate call
(``apply_guidance(..., batched=False)``, what older hosts run) is timed next
to it. Section 2 times the bare network (``apply_model``) on one call of all
rows against two calls, what batching can save before any sampler. Quality
is not measured here: ``bench/guidance.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib import testbed
from bench.lib.calibration import guidance
from bench.lib.report import print_section, print_table
from bench.lib.run import ROOT, Run, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import TIMING_SEED
from noise_calibration.noisecal.guidance import GuidanceSettings
from noise_calibration.noisecal_host import guidance_patch, level_patches
from noise_calibration.noisecal_host.model_info import zero_conditioning
from noise_calibration.noisecal_host.testing import sampling, tiny_models

TARGET = 1.6  # CFG + guidance step / CFG step, tiny SD3
REFERENCE_FILE = ROOT / "models" / "reference" / "sd3_dead_leaves_m32.safetensors"
FULL = {"latent": 32, "batch": 4, "steps": 5, "cfg": 4.0, "repeats": 20, "warmup": 2}
QUICK = {"latent": 32, "batch": 4, "steps": 5, "cfg": 4.0, "repeats": 4, "warmup": 1}
# 'constant' so that every step pays for the extra branch ('per step size' skips
# the first step on a host without sample_sigmas); pseudo-level costs as offset
MODES = ("offset", "estimated")


class Reference:
    """The dead-leaves network in the shape the timer wants: patcher, conditioning."""

    def __init__(self):
        import comfy.sd

        self.patcher = comfy.sd.load_diffusion_model(str(REFERENCE_FILE))

    def conditioning(self, batch: int = 1, seed: int = 0) -> list:
        return zero_conditioning(self.patcher)  # ComfyUI repeats it to the batch


MODELS = {
    "tiny sd3": lambda: tiny_models.TINY_MODELS["sd3"](),
    "tiny flux": lambda: tiny_models.TINY_MODELS["flux"](),
    "dead-leaves m32": Reference,
}


def guided(model, mode: str):
    """`model` through the pack's Noise Awareness Guidance node."""
    return guidance(model, 0.1, mode)


def separate_call(model):
    """The same guidance (offset) with its extra branch in a call of its own."""
    s = GuidanceSettings(weight=0.1, mode="offset", offset=1.0, weight_schedule="constant")
    return level_patches.apply_guidance(model, s, batched=False)


class StepTimer:
    """Samples with cfg and a negative conditioning (KSampler, seed TIMING_SEED); each
    call returns the wall seconds per step and keeps the CPU seconds per step (``cpu``)."""

    def __init__(self, tm, o: dict):
        self.lat = sampling.empty_latent(tm.patcher, o["latent"], o["latent"], o["batch"])
        self.pos = tm.conditioning(o["batch"], seed=0)
        self.neg = tm.conditioning(o["batch"], seed=1)
        self.steps, self.cfg = o["steps"], o["cfg"]
        self.cpu = 0.0

    def __call__(self, model) -> float:
        c0, t0 = time.process_time(), time.perf_counter()
        sampling.ksample(
            model, self.lat, self.pos, self.neg, seed=TIMING_SEED, steps=self.steps, cfg=self.cfg
        )
        self.cpu = (time.process_time() - c0) / self.steps
        return (time.perf_counter() - t0) / self.steps


def variants_of(model) -> dict:
    variants = {"CFG": model} | {f"CFG + {m}": guided(model, m) for m in MODES}
    if guidance_patch.wrappers_available(model):
        variants["CFG + offset, separate call"] = separate_call(model)
    return variants


def cost_cases(name: str, o: dict) -> list[dict]:
    """CFG alone and CFG + guidance on one model: step times, ratios, calls and rows."""
    tm = MODELS[name]()
    variants = variants_of(tm.patcher)
    run = StepTimer(tm, o)
    nfe = calls_per_step(run, tm.patcher, variants)
    times, cpu = rotated_repeats(run, variants, o["repeats"], o["warmup"])
    base, cpu_base = statistics.median(times["CFG"]), statistics.median(cpu["CFG"])
    cases = []
    for k in variants:
        pairs = [v / a for a, v in zip(times["CFG"], times[k], strict=True)]
        cases.append(
            {
                "model": name,
                "variant": k,
                "step_s": times[k],
                "median_step_s": statistics.median(times[k]),
                "ratio": statistics.median(times[k]) / base,
                "median_pair_ratio": statistics.median(pairs),
                "cpu_step_s": cpu[k],
                "cpu_ratio": statistics.median(cpu[k]) / cpu_base,
                "calls_per_step": nfe[k][0],
                "rows_per_step": nfe[k][1],
            }
        )
    return cases


def calls_per_step(run: StepTimer, model, variants: dict) -> dict:
    """Network (calls, rows) per step of each variant (a hook on the shared network)."""
    nfe = {}
    with testbed.counting(model) as counter:
        for k, m in variants.items():
            counter.reset()
            run(m)
            nfe[k] = (counter.calls / run.steps, counter.rows / run.steps)
    return nfe


def rotated_repeats(run: StepTimer, variants: dict, repeats: int, warmup: int):
    """Warm-up rounds, then `repeats` rounds in rotating order: wall and CPU seconds per step."""
    for _ in range(warmup):
        for m in variants.values():
            run(m)
    keys = list(variants)
    times = {k: [] for k in keys}
    cpu = {k: [] for k in keys}
    for r in range(repeats):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            times[k].append(run(variants[k]))
            cpu[k].append(run.cpu)
    return times, cpu


def cost_table(o: dict, cases: list[dict]) -> None:
    rows = [
        [c["model"], c["variant"], f"{1000 * c['median_step_s']:.2f}"]
        + [f"{c['ratio']:.3f}", f"{c['median_pair_ratio']:.3f}", f"{c['cpu_ratio']:.3f}"]
        + [f"{c['calls_per_step']:g}", f"{c['rows_per_step']:g}"]
        for c in cases
    ]
    print_table(
        f"Table 1: step wall time, median of {o['repeats']} interleaved repeats; network "
        "calls and batch rows per step (forward hook on the diffusion model)",
        ["model", "sampling", "ms/step", "ratio", "pair ratio", "CPU-time ratio", "calls/step"]
        + ["rows/step"],
        rows,
    )
    print(
        "(ratio = median step / median CFG step, the target's measure; pair ratio = median\n"
        " of the per-repeat ratios; CPU-time ratio = the same with process CPU time, which\n"
        " other processes on the machine disturb less. Batch "
        f"{o['batch']}: CFG evaluates cond and\n uncond in one call of {2 * o['batch']} rows; "
        f"guidance adds {o['batch']} conditional rows, in that call where the host\n"
        " chains wrappers, else in a call of their own)\n"
    )


def section_cost(run: Run) -> None:
    o = run.cfg
    print_section(
        f"1. Cost ({o['latent']}x{o['latent']} latent, batch {o['batch']}, "
        f"{o['steps']} Euler steps, cfg {o['cfg']:g}, negative conditioning)"
    )
    cases = [case for name in MODELS for case in cost_cases(name, o)]
    cost_table(o, cases)
    for c in cases:
        if c["model"] == "tiny sd3" and c["variant"] in (f"CFG + {m}" for m in MODES):
            run.check(
                c["ratio"] <= TARGET,
                f"G3 tiny sd3 {c['variant']}: step {c['ratio']:.3f}x the CFG step "
                f"(target <= {TARGET}x)" + (" [quick: few repeats]" if run.quick else ""),
            )
    run.data["cost"] = cases


def network_rows(name: str, o: dict) -> dict:
    """The bare network (apply_model): one call of 3 x batch rows against calls of
    2 x batch and batch rows, what batching the extra branch changes, interleaved."""
    tm = MODELS[name]()
    net = tm.patcher.model
    rows = 3 * o["batch"]
    (context, extras), *_ = tm.conditioning(rows)
    inputs = {"c_crossattn": context}
    if "pooled_output" in extras:
        inputs["y"] = extras["pooled_output"]
    if name == "tiny flux":
        inputs["guidance"] = torch.full((rows,), 3.5)
    x = torch.randn(rows, net.latent_format.latent_channels, o["latent"], o["latent"])
    sigma = torch.full((rows,), 0.5)

    def call(n: int):
        net.apply_model(x[:n], sigma[:n], **{k: v[:n] for k, v in inputs.items()})

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    one, two = [], []
    with torch.no_grad():
        for _ in range(o["warmup"]):
            call(rows), call(2 * o["batch"]), call(o["batch"])
        for _ in range(o["repeats"]):
            one.append(timed(lambda: call(rows)))
            two.append(timed(lambda: (call(2 * o["batch"]), call(o["batch"]))))
    a, b = statistics.median(one), statistics.median(two)
    return {"model": name, "one_call_s": a, "two_calls_s": b, "ratio": a / b}


def section_rows(run: Run) -> None:
    o = run.cfg
    print_section("2. The network alone: one call of all rows against two calls")
    cases = [network_rows(name, o) for name in ("tiny sd3", "tiny flux")]
    b = o["batch"]
    print_table(
        f"Table 2: apply_model wall time, median of {o['repeats']} interleaved repeats "
        f"({o['latent']}x{o['latent']} latent)",
        ["model", f"one call, {3 * b} rows (ms)", f"calls of {2 * b} + {b} rows (ms)", "ratio"],
        [
            [c["model"], f"{1000 * c['one_call_s']:.1f}", f"{1000 * c['two_calls_s']:.1f}"]
            + [f"{c['ratio']:.3f}"]
            for c in cases
        ],
    )
    print(
        "(what batching the extra branch can save on this machine, before any sampler:\n"
        " below 1, one call of all rows is cheaper)\n"
    )
    run.data["network_rows"] = cases


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="smoke run, under a minute")
    run = Run.start(args, FULL, QUICK)
    describe_run(args.quick)
    timings = run_sections(
        (("cost", lambda: section_cost(run)), ("rows", lambda: section_rows(run)))
    )
    return finish(run, "guidance_cost", timings, lambda _run: [], {"timing": TIMING_SEED})


if __name__ == "__main__":
    sys.exit(main())

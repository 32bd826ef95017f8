"""Does a calibration made for the base weights serve the same checkpoint with a LoRA
or with fp8 weights? Measured on the dead-leaves reference network.

Run from the repository root (the LoRA rows need core's ``nodes_lora_extract`` and
``LoraLoaderModelOnly``, i.e. a full ComfyUI; the snapshot host runs the fp8 rows)::

    COMFYUI_PATH=/path/to/ComfyUI nice -n 10 python bench/lora_fp8.py [--quick]

Not a test: nothing here fails the run.

Testbed: ``models/reference/sd3_dead_leaves_m32.safetensors`` (trained at latent
M = 32) sampled at N = 16, where its NoiseShift calibration shifts the level (the
case the pack is for), Euler 20 steps "simple". Variants of the same checkpoint:

- LoRA: built at run time in a temporary folder from the difference of the two
  dead-leaves networks (``m16 - m32``, core's ``ModelMergeSubtract``) with core's
  ``nodes_lora_extract.calc_lora_model`` (what ``LoraSave`` writes: standard LoRA,
  rank 32, bias and norm diffs), saved with ``comfy.utils.save_torch_file`` and
  loaded with ``LoraLoaderModelOnly`` on the m32 network at strengths 1 and 0.5.
  At strength 1 the network approximates the one trained at N = 16: a LoRA that
  changes the denoiser at the sampled size, as step-distillation or style LoRAs do.
- fp8: the m32 file loaded by ``comfy.sd.load_diffusion_model`` with weight dtype
  ``float8_e4m3fn`` / ``float8_e5m2`` (what UNETLoader's weight_dtype does; the CPU
  computes in float32 through ComfyUI's manual cast).

Per variant: plain; NoiseShift with the base network's calibration ("base cal",
what a key that ignores the variant would hand it); NoiseShift recalibrated on the
variant ("own cal"). Control row: the base network calibrated again on other
latents with another search seed, so "base - own" and the curve gap there are
what two calibrations of one network differ by. Calibration: the Calibrate node (fast search, check off,
20 "simple" steps) on the same true dead-leaves latents at N = 16. Metrics as in
``bench/dead_leaves.py``: patch SWD of the images and spectral FD of the latents
against a true set of the same size (seed 7001), floor = a second true set (7002).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root

from bench.lib.calibration import Nodes, private_store
from bench.lib.host import HOST
from bench.lib.report import fmt, print_section, print_table
from bench.lib.run import ROOT, Run, describe_run, finish, parse_args, run_sections
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED, SEARCH_SEED
from noise_calibration.noisecal.spectra import fourier_power
from noise_calibration.noisecal.testing import dead_leaves as dl
from noise_calibration.noisecal.testing import metrics, swd
from noise_calibration.noisecal_host.fingerprint import checkpoint_key
from noise_calibration.noisecal_host.model_info import zero_conditioning
from noise_calibration.noisecal_host.testing import sampling

MODELS = ROOT / "models" / "reference"
M_FILE = MODELS / "sd3_dead_leaves_m32.safetensors"
LORA_FROM = MODELS / "sd3_dead_leaves_m16.safetensors"
TRUE_SEED, FLOOR_SEED, POWER_SEED = 7001, 7002, 7003
N, STEPS, SAMPLER, SCHEDULER = 16, 20, "euler", "simple"
LORA_RANK = 32
LORA_STRENGTHS = (1.0, 0.5)
FP8 = ("float8_e4m3fn", "float8_e5m2")
FULL = {"samples": 160, "cal_count": 16, "max_batch": 32}
QUICK = {"samples": 64, "cal_count": 8, "max_batch": 32}


class Truth:
    """True dead-leaves data at N: reference and floor images, power, calibration latents."""

    def __init__(self, count: int, cal_count: int):
        self.ref = dl.render(dl.DeadLeaves(), count, 2 * N, TRUE_SEED)
        floor_set = dl.render(dl.DeadLeaves(), count, 2 * N, FLOOR_SEED)
        power = fourier_power(dl.sample_latents(4 * count, N, POWER_SEED).double())
        self.power = power.reshape(-1, N, N).mean(dim=0)
        self.cal = dl.sample_latents(cal_count, N, CAL_DATA_SEED)
        # the control: other calibration data and search noise for the same network
        self.cal_other = dl.sample_latents(cal_count, N, CAL_DATA_SEED + 1)
        self.floor = self.measure(dl.to_latent(floor_set))

    def measure(self, latents) -> dict:
        images = dl.to_image(latents.float())
        return {
            "swd": swd.patch_swd(images, self.ref)["average"],
            "fd": metrics.frechet_distance(latents.float(), self.power),
        }


def load(dtype: str | None = None):
    import comfy.sd

    options = {} if dtype is None else {"dtype": getattr(torch, dtype)}
    return comfy.sd.load_diffusion_model(str(M_FILE), model_options=options)


def build_lora(folder: Path, base) -> str:
    """core's extraction of (m16 - m32) into a LoRA file in `folder`; its name."""
    import comfy.sd
    import comfy.utils
    import folder_paths
    from comfy_extras import nodes_lora_extract as extract
    from comfy_extras import nodes_model_merging as merging

    comfy_nodes()  # LoraLoaderModelOnly: fail here, before the extraction, without it
    other = comfy.sd.load_diffusion_model(str(LORA_FROM))
    (diff,) = merging.ModelSubtract().merge(other, base, 1.0)
    sd = extract.calc_lora_model(
        diff, LORA_RANK, "diffusion_model.", "diffusion_model.", {}, extract.LORAType.STANDARD, True
    )
    name = f"dead_leaves_m16_minus_m32_r{LORA_RANK}.safetensors"
    comfy.utils.save_torch_file(sd, str(folder / name))
    folder_paths.add_model_folder_path("loras", str(folder))
    return name


def comfy_nodes():
    """ComfyUI's top-level `nodes` module (the pack has a `nodes` package of its own)."""
    import importlib.util

    loaded = sys.modules.get("nodes")
    if loaded is not None and Path(loaded.__file__).resolve() == (HOST.path / "nodes.py").resolve():
        return loaded
    path = HOST.path / "nodes.py"
    if not path.is_file():
        raise ImportError(f"no nodes.py in {HOST.path}")
    spec = importlib.util.spec_from_file_location("nodes", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["nodes"] = module
    spec.loader.exec_module(module)
    return module


def with_lora(base, name: str, strength: float):
    loader = comfy_nodes().LoraLoaderModelOnly()
    return loader.load_lora_model_only(base, name, strength)[0]


def sample(model, positive, count):
    lat = sampling.empty_latent(model, N, N, count)
    out = sampling.ksample(
        model, lat, positive, seed=SAMPLE_SEED, steps=STEPS, sampler_name=SAMPLER,
        scheduler=SCHEDULER,
    )  # fmt: skip
    return model.model.process_latent_in(out)


def calibrate(nodes: Nodes, model, positive, truth: Truth, cfg, other=False):
    """(record, seconds): the Calibrate node (recalibrate: the node would reuse the file
    of an earlier run for the same key and settings); `other`: the control's data
    and seed."""
    cal = truth.cal_other if other else truth.cal
    latent = {"samples": model.model.process_latent_out(cal)}
    t0 = time.perf_counter()
    records, _, _ = nodes.node("Calibrate").calibrate(
        model, STEPS, SCHEDULER, "fast", cal.shape[0], SEARCH_SEED + other, 8 * N, 8 * N, "",
        cfg["max_batch"], latent=latent, positive=positive, check="off", mode="recalibrate",
    )["result"]  # fmt: skip
    return records[0], time.perf_counter() - t0


def curve_gap(a: dict, b: dict) -> float:
    """Largest |sigma_hat_a - sigma_hat_b| at a's calibrated levels (b interpolated)."""
    xs = torch.tensor(b["sigmas"]).flip(0)
    ys = torch.tensor(b["sigma_hat"]).flip(0)
    gaps = []
    for s, h in zip(a["sigmas"], a["sigma_hat"], strict=True):
        i = int(torch.searchsorted(xs, torch.tensor(s)).clamp(1, len(xs) - 1))
        w = (s - float(xs[i - 1])) / max(float(xs[i] - xs[i - 1]), 1e-12)
        gaps.append(abs(h - (float(ys[i - 1]) + w * float(ys[i] - ys[i - 1]))))
    return max(gaps)


def largest_shift(record: dict) -> float:
    shifts = [h - s for s, h in zip(record["sigmas"], record["sigma_hat"], strict=True)]
    return max(shifts, key=abs)


class Bench:
    def __init__(self, run: Run, nodes: Nodes, folder: Path):
        self.run, self.nodes, self.folder = run, nodes, folder
        self.base = load()
        self.positive = zero_conditioning(self.base)
        self.truth = Truth(run.cfg["samples"], run.cfg["cal_count"])
        self.rows: list[dict] = []
        self.base_record = None

    def variant(self, name: str, model, other: bool = False) -> None:
        cfg, count = self.run.cfg, self.run.cfg["samples"]
        t0 = time.perf_counter()
        record, cal_s = calibrate(self.nodes, model, self.positive, self.truth, cfg, other)
        row = {
            "variant": name,
            "same_key_as_base": checkpoint_key(model) == checkpoint_key(self.base),
            "calibration_s": cal_s,
            "largest_shift": largest_shift(record),
            "plain": self.truth.measure(sample(model, self.positive, count)),
            "own cal": self.truth.measure(
                sample(self.nodes.noiseshift(model, record), self.positive, count)
            ),
        }
        if self.base_record is None:
            self.base_record = record
            row["base cal"] = row["own cal"]
            row["curve_gap"] = 0.0
        else:
            patched = self.nodes.noiseshift(model, self.base_record)
            row["base cal"] = self.truth.measure(sample(patched, self.positive, count))
            row["curve_gap"] = curve_gap(record, self.base_record)
        row["s"] = time.perf_counter() - t0
        self.rows.append(row)
        print(
            f"{name}: largest shift {row['largest_shift']:+.4f}, curve gap to base "
            f"{row['curve_gap']:.4f}; "
            + "; ".join(
                f"{m} swd {row[m]['swd']:.5f} fd {row[m]['fd']:.5f}"
                for m in ("plain", "base cal", "own cal")
            )
            + f" ({row['s']:.0f} s)",
            flush=True,
        )

    def loras(self) -> None:
        try:
            name = build_lora(self.folder, self.base)
        except ImportError as e:  # the snapshot host has no folder_paths / nodes
            print(f"LoRA rows skipped: this host cannot run core's LoRA nodes ({e})", flush=True)
            return
        for strength in LORA_STRENGTHS:
            model = with_lora(self.base, name, strength)
            self.variant(f"LoRA r{LORA_RANK} @ {strength:g}", model)

    def fp8(self) -> None:
        for dtype in FP8:
            self.variant(dtype, load(dtype))


def tables(b: Bench) -> None:
    print_section("Results")
    floor = b.truth.floor
    for k, metric in (("swd", "patch SWD"), ("fd", "spectral FD")):
        rows = [
            [r["variant"], "yes" if r["same_key_as_base"] else "no"]
            + [fmt(r[m][k]) for m in ("plain", "base cal", "own cal")]
            + [fmt(r["base cal"][k] - r["own cal"][k]), fmt(floor[k])]
            for r in b.rows
        ]
        print_table(
            f"{metric} at N = {N}, {SAMPLER} {STEPS} {SCHEDULER}, {b.run.cfg['samples']} samples "
            f"(lower is better; NoiseShift with the base network's calibration vs recalibrated)",
            ["variant", "same key", "plain", "base cal", "own cal", "base - own", "floor"],
            rows,
        )
    print_table(
        "calibrations: largest shift sigma_hat - sigma and largest gap to the base curve",
        ["variant", "largest shift", "curve gap", "calibration s"],
        [
            [r["variant"], f"{r['largest_shift']:+.4f}", f"{r['curve_gap']:.4f}"]
            + [f"{r['calibration_s']:.0f}"]
            for r in b.rows
        ],
    )


def main(argv=None) -> int:
    args = parse_args(__doc__, argv, quick_help="fewer samples and calibration latents")
    run = Run.start(args, FULL, QUICK)
    with tempfile.TemporaryDirectory(prefix="lora-fp8-bench-") as folder:
        b = Bench(run, Nodes(private_store(folder)), Path(folder))
        describe_run(args.quick, f"; model {M_FILE.name}, N = {N}")
        sections = [
            ("base", lambda: b.variant("base (fp32 compute, fp16 file)", b.base)),
            # the control: how far two calibrations of the same network are apart
            ("control", lambda: b.variant("base, other cal data + seed", b.base, other=True)),
            ("lora", b.loras),
            ("fp8", b.fp8),
        ]
        timings = run_sections(sections)
        tables(b)
        run.data["rows"] = b.rows
        run.data["floor"] = b.truth.floor
        seeds = {"calibration_data": CAL_DATA_SEED, "search": SEARCH_SEED, "sampling": SAMPLE_SEED}
        seeds.update(true=TRUE_SEED, floor=FLOOR_SEED, power=POWER_SEED)
        return finish(run, "lora_fp8", timings, lambda _run: [], seeds)


if __name__ == "__main__":
    sys.exit(main())

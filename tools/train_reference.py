"""Train the reference network: ComfyUI's own SD3 MMDiT on the testbed's Gaussian field.

A tiny ``OpenAISignatureMMDITWrapper`` (16 latent channels, patch 2, so
ComfyUI's loader detects it as SD3 with shift 3.0) is trained by flow matching
at its native resolution M on fresh samples of the testbed's stationary
Gaussian field (``noisecal.testing.testbed.FieldSpectrum``):

    x_t = (1 - t) x0 + t eps,   target eps - x0,   t ~ logit-normal(0, 1)

The network is called exactly as ComfyUI calls it at sampling time
(``BaseModel.apply_model`` with ``ModelSamplingDiscreteFlow``): input x_t,
timestep ``1000 * t``, ``context = zeros[B, 1, 32]``, ``y = zeros[B, 32]``; its
output is the velocity and ComfyUI forms ``denoised = x - sigma * v``.

The loss is measured on a fixed held-out set of noisy samples and printed next
to the optimal loss for this data (closed form, ``noisecal.testing.optimal_loss``) and
next to the exact posterior-mean denoiser's loss on the same held-out set. The
weights are saved in fp16 as a diffusion-model safetensors with a sidecar JSON;
the saved file is then loaded back through ``comfy.sd.load_diffusion_model``
and its loss, through ``apply_model``, is the reported final loss.

    .venv/bin/python tools/train_reference.py                  # the shipped run
    .venv/bin/python tools/train_reference.py --benchmark 10   # seconds per step
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import math
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from noisecal_host.host import ensure_host  # noqa: E402
from noisecal_host.pack_loader import load_pack  # noqa: E402

DEFAULT_OUT = ROOT / "models" / "reference" / "sd3_gaussian_field_m32.safetensors"
CONTEXT_DIM = 32
CONTEXT_TOKENS = 1
POOLED_DIM = 32
TIMESTEP_MULTIPLIER = 1000.0  # ComfyUI's ModelSamplingDiscreteFlow for SD3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=3, help="MMDiT depth; hidden = 64 * depth")
    p.add_argument("--res", type=int, default=32, help="native resolution M in latent pixels")
    p.add_argument("--pos-embed-max-size", type=int, default=32, help="patches per side")
    p.add_argument("--f0", type=float, default=3.0)
    p.add_argument("--alpha", type=float, default=2.5)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.01, help="cosine floor / peak")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-samples", type=int, default=2048)
    p.add_argument("--eval-batch", type=int, default=128)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 is steadier than 2 on cores shared with other jobs",
    )
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop training early when the wall time passes this (recorded in the sidecar)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument(
        "--benchmark", type=int, default=0, help="time this many steps, print s/step and exit"
    )
    return p.parse_args(argv)


# --------------------------------------------------------------------------- model


def unet_config(depth: int, pos_embed_max_size: int) -> dict:
    hidden = 64 * depth
    return {
        "in_channels": 16,
        "patch_size": 2,
        "depth": depth,
        "adm_in_channels": POOLED_DIM,
        "context_embedder_config": {
            "target": "torch.nn.Linear",
            "params": {"in_features": CONTEXT_DIM, "out_features": hidden},
        },
        "pos_embed_max_size": pos_embed_max_size,
        "num_patches": pos_embed_max_size**2,
        "pos_embed_scaling_factor": None,
    }


def build_model(depth: int, pos_embed_max_size: int, seed: int):
    """ComfyUI's SD3 BaseModel (float32, CPU) with explicitly initialized weights."""
    import comfy.supported_models

    config = comfy.supported_models.SD3(unet_config(depth, pos_embed_max_size))
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model({}, device="cpu")
    init_weights(model.diffusion_model, seed)
    return model


def init_weights(net: torch.nn.Module, seed: int) -> None:
    """DiT-style init: xavier linears, N(0, 0.02) embedder MLPs, zero adaLN and output.

    ComfyUI's ops skip initialization (weights start as uninitialized memory),
    so every parameter is set here, and the check at the end enforces it.
    """
    from comfy.ldm.modules.diffusionmodules.mmdit import get_2d_sincos_pos_embed

    torch.manual_seed(seed)
    done: set[str] = set()
    params = dict(net.named_parameters())

    def set_(name: str, fn) -> None:
        with torch.no_grad():
            fn(params[name])
        done.add(name)

    for name, param in params.items():
        if name.endswith(".bias"):
            set_(name, torch.nn.init.zeros_)
        elif param.dim() >= 2:
            # xavier on the flattened [out, fan_in] view (also the patch conv)
            set_(name, lambda w: torch.nn.init.xavier_uniform_(w.view(w.shape[0], -1)))
        elif name.endswith(".weight"):
            set_(name, torch.nn.init.ones_)  # norm scales, where a config has them
    for name in params:
        if name.startswith(("t_embedder.mlp.", "y_embedder.mlp.")) and name.endswith(".weight"):
            set_(name, lambda w: torch.nn.init.normal_(w, std=0.02))
        if ".adaLN_modulation." in name or name.startswith("final_layer.linear."):
            set_(name, torch.nn.init.zeros_)  # blocks start as identity, output as 0
    missing = sorted(set(params) - done)
    if missing:
        raise RuntimeError(f"parameters left uninitialized: {missing}")
    pos = get_2d_sincos_pos_embed(net.hidden_size, net.pos_embed_max_size)
    with torch.no_grad():
        net.pos_embed.copy_(torch.from_numpy(pos).to(net.pos_embed.dtype).unsqueeze(0))


def count_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# --------------------------------------------------------------------------- data


def logit_normal(count: int, gen: torch.Generator) -> torch.Tensor:
    return torch.sigmoid(torch.randn(count, generator=gen))


def noisy_batch(testbed, spectrum, res: int, count: int, gen: torch.Generator):
    """(x_t, t, target) for fresh field samples: x_t = (1 - t) x0 + t eps, target eps - x0."""
    x0 = testbed.sample_field(spectrum, res, count, gen)
    eps = torch.randn(x0.shape, generator=gen)
    t = logit_normal(count, gen)
    tb = t.view(-1, 1, 1, 1)
    return (1 - tb) * x0 + tb * eps, t, eps - x0


def conditioning(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero text context and pooled vector, as at sampling time."""
    return torch.zeros(count, CONTEXT_TOKENS, CONTEXT_DIM), torch.zeros(count, POOLED_DIM)


def velocity(net, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The network call ComfyUI makes: timestep = 1000 * sigma, output = velocity."""
    context, y = conditioning(x_t.shape[0])
    return net(x_t, TIMESTEP_MULTIPLIER * t, context=context, y=y)


def velocity_via_apply_model(model, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The same through BaseModel.apply_model: v = (x - denoised) / sigma."""
    context, y = conditioning(x_t.shape[0])
    denoised = model.apply_model(x_t, t, c_crossattn=context, y=y)
    return (x_t - denoised) / t.view(-1, 1, 1, 1)


def make_eval_set(testbed, spectrum, res: int, count: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return noisy_batch(testbed, spectrum, res, count, gen)


@torch.no_grad()
def per_sample_loss(predict, eval_set, batch: int) -> torch.Tensor:
    """Per-sample mean squared error of ``predict(x_t, t)`` against the target, float64."""
    x_t, t, target = eval_set
    out = []
    for i in range(0, x_t.shape[0], batch):
        v = predict(x_t[i : i + batch], t[i : i + batch]).float()
        err = (v - target[i : i + batch]).double() ** 2
        out.append(err.flatten(1).mean(dim=1))
    return torch.cat(out)


def summarize(losses: torch.Tensor, reference: torch.Tensor | None = None) -> dict:
    n = losses.numel()
    out = {"mean": float(losses.mean()), "se": float(losses.std() / math.sqrt(n)), "samples": n}
    if reference is not None:
        diff = losses - reference
        out["minus_exact_mean"] = float(diff.mean())
        out["minus_exact_se"] = float(diff.std() / math.sqrt(n))
    return out


# --------------------------------------------------------------------------- training


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    floor = args.lr * args.min_lr_ratio
    return floor + (args.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train(net, testbed, spectrum, args, steps: int, log) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(
        net.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=args.weight_decay
    )
    net.train()
    running = None
    start = time.perf_counter()
    done = 0
    stopped_early = False
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        x_t, t, target = noisy_batch(testbed, spectrum, args.res, args.batch, gen)
        loss = torch.nn.functional.mse_loss(velocity(net, x_t, t), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip:
            torch.nn.utils.clip_grad_norm_(net.parameters(), args.grad_clip)
        opt.step()
        done = step + 1
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"loss is {value} at step {step}")
        running = value if running is None else 0.98 * running + 0.02 * value
        elapsed = time.perf_counter() - start
        if done % args.log_every == 0 or done == steps:
            rate = elapsed / done
            log(
                f"step {done:5d}/{steps}  loss {value:.4f}  ema {running:.4f}  "
                f"lr {lr_at(step, args):.2e}  {rate:.3f} s/step  "
                f"elapsed {elapsed / 60:.1f} min  eta {(steps - done) * rate / 60:.1f} min"
            )
        if args.max_minutes is not None and elapsed > 60 * args.max_minutes:
            stopped_early = done < steps
            log(f"stopping at step {done}: wall time passed {args.max_minutes} min")
            break
    net.eval()
    return {
        "steps_done": done,
        "stopped_early": stopped_early,
        "seconds": time.perf_counter() - start,
        "final_running_loss": running,
    }


def save_fp16(net, path: Path, metadata: dict) -> str:
    import safetensors.torch

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(state, str(path), metadata=metadata)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    host = ensure_host(cpu=True)
    pack = load_pack()
    testbed = importlib.import_module(f"{pack.__name__}.noisecal.testing.testbed")
    optimal = importlib.import_module(f"{pack.__name__}.noisecal.testing.optimal_loss")
    import comfy.sd

    def log(msg: str) -> None:
        print(msg, flush=True)

    spectrum = testbed.FieldSpectrum(f0=args.f0, alpha=args.alpha, channels=16)
    model = build_model(args.depth, args.pos_embed_max_size, args.seed)
    net = model.diffusion_model
    n_params = count_params(net)
    log(host.describe())
    log(
        f"SD3 MMDiT depth {args.depth}, hidden {net.hidden_size}, heads {net.num_heads}, "
        f"{n_params:,} parameters; data {spectrum} at M = {args.res}; "
        f"{torch.get_num_threads()} threads"
    )
    opt_loss = optimal.optimal_flow_loss(spectrum, args.res)
    log(f"optimal loss (closed form, logit-normal t): {opt_loss:.4f}")

    if args.benchmark:
        bench = argparse.Namespace(**{**vars(args), "log_every": 1, "steps": args.benchmark})
        stats = train(net, testbed, spectrum, bench, args.benchmark, log)
        rate = stats["seconds"] / stats["steps_done"]
        log(
            f"benchmark: {rate:.3f} s/step -> {args.steps} steps ~ {args.steps * rate / 60:.1f} min"
        )
        return 0

    wall_start = time.perf_counter()
    stats = train(net, testbed, spectrum, args, args.steps, log)
    log(f"trained {stats['steps_done']} steps in {stats['seconds'] / 60:.1f} min")

    eval_seed = args.seed + 1_000_003
    eval_set = make_eval_set(testbed, spectrum, args.res, args.eval_samples, eval_seed)
    exact = testbed.ExactDenoiser(spectrum, args.res)
    exact_losses = per_sample_loss(exact.velocity, eval_set, args.eval_batch)
    fp32_losses = per_sample_loss(lambda x, t: velocity(net, x, t), eval_set, args.eval_batch)

    metadata = {
        "format": "noisecal reference network; see the sidecar .json",
        "architecture": "SD3 MMDiT (comfy OpenAISignatureMMDITWrapper)",
    }
    sha = save_fp16(net, args.out, metadata)
    size = args.out.stat().st_size

    # the shipped file, loaded as ComfyUI loads it, called as ComfyUI calls it
    patcher = comfy.sd.load_diffusion_model(str(args.out))
    loaded = patcher.model
    detected = type(loaded).__name__
    shift = float(loaded.model_sampling.shift)
    if detected != "SD3" or shift != 3.0:
        raise RuntimeError(f"loader detected {detected} with shift {shift}, expected SD3 / 3.0")
    shipped_losses = per_sample_loss(
        lambda x, t: velocity_via_apply_model(loaded, x, t), eval_set, args.eval_batch
    )
    exact_s = summarize(exact_losses)
    fp32_s = summarize(fp32_losses, exact_losses)
    shipped_s = summarize(shipped_losses, exact_losses)
    final = shipped_s["mean"]
    ratio = final / opt_loss
    total_s = time.perf_counter() - wall_start

    log(f"held-out set: {args.eval_samples} noisy samples, seed {eval_seed}, logit-normal t")
    log(f"  exact posterior-mean velocity : {exact_s['mean']:.4f} +- {exact_s['se']:.4f}")
    log(f"  trained network (fp32)        : {fp32_s['mean']:.4f} +- {fp32_s['se']:.4f}")
    log(f"  shipped file (fp16, loader)   : {final:.4f} +- {shipped_s['se']:.4f}")
    log(f"final loss {final:.4f}   optimal loss {opt_loss:.4f}   ratio {ratio:.4f}")

    sidecar = {
        "file": args.out.name,
        "sha256": sha,
        "bytes": size,
        "dtype": "float16",
        "architecture": {
            "comfy_class": "comfy.ldm.modules.diffusionmodules.mmdit.OpenAISignatureMMDITWrapper",
            "comfy_model": "comfy.supported_models.SD3 -> comfy.model_base.SD3",
            "detected_as": detected,
            "model_sampling": {"type": "ModelSamplingDiscreteFlow", "shift": shift},
            "unet_config": unet_config(args.depth, args.pos_embed_max_size),
            "depth": args.depth,
            "hidden_size": net.hidden_size,
            "num_heads": net.num_heads,
            "patch_size": 2,
            "latent_channels": 16,
            "parameters": n_params,
            "pos_embed": "fixed 2D sin-cos (buffer), center-cropped by ComfyUI below max size",
        },
        "conditioning": {
            "context": f"zeros [B, {CONTEXT_TOKENS}, {CONTEXT_DIM}]",
            "pooled_output": f"zeros [B, {POOLED_DIM}]",
            "comfy_conditioning": (
                f"[[torch.zeros(1, {CONTEXT_TOKENS}, {CONTEXT_DIM}), "
                f"{{'pooled_output': torch.zeros(1, {POOLED_DIM})}}]]"
            ),
        },
        "data": {
            "source": "noisecal.testing.testbed.sample_field (stationary Gaussian field per channel)",
            "spectrum": {"f0": spectrum.f0, "alpha": spectrum.alpha, "channels": 16},
            "native_resolution": args.res,
            "normalization": "unit per-pixel variance at M (orthonormal DFT)",
            "latent_space": (
                "the field lives in model space; ComfyUI's SD3 latent format maps it to "
                "latent space as x / 1.5305 + 0.0609 (process_latent_out), so an empty "
                "latent samples to that and model.process_latent_in(samples) is the field"
            ),
        },
        "native_resolution": args.res,
        "training": {
            "objective": "flow matching: x_t = (1 - t) x0 + t eps, target eps - x0, MSE",
            "t_distribution": "logit-normal(0, 1)",
            "network_call": "net(x_t, 1000 * t, context=zeros, y=zeros) -> velocity",
            "optimizer": "AdamW",
            "lr": args.lr,
            "lr_schedule": (
                f"linear warmup {args.warmup} steps, cosine to {args.min_lr_ratio} x peak"
            ),
            "weight_decay": args.weight_decay,
            "grad_clip": args.grad_clip,
            "batch": args.batch,
            "steps": stats["steps_done"],
            "steps_planned": args.steps,
            "stopped_early": stats["stopped_early"],
            "seed": args.seed,
            "data": "fresh field samples every step",
            "final_running_loss": stats["final_running_loss"],
            "training_seconds": round(stats["seconds"], 1),
            "total_seconds": round(total_s, 1),
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "host": host.describe(),
            "date": datetime.date.today().isoformat(),
            "command": "tools/train_reference.py " + " ".join(argv or sys.argv[1:]),
        },
        "evaluation": {
            "held_out_samples": args.eval_samples,
            "held_out_seed": eval_seed,
            "t_distribution": "logit-normal(0, 1)",
            "exact_denoiser": exact_s,
            "trained_fp32": fp32_s,
            "shipped_fp16_via_loader": shipped_s,
        },
        "final_loss": final,
        "final_loss_se": shipped_s["se"],
        "optimal_loss": opt_loss,
        "optimal_loss_method": "closed form per frequency and t, mean over k, logit-normal t",
        "loss_ratio": ratio,
        "training_time_s": round(stats["seconds"], 1),
    }
    sidecar_path = args.out.with_suffix(".json")
    sidecar_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    log(f"wrote {args.out} ({size / 1e6:.2f} MB) and {sidecar_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

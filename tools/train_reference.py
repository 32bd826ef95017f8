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

Dead-leaves networks (``--data dead-leaves``): the same SD3 class trained on
normalized dead-leaves latents (``noisecal.testing.dead_leaves``: 2x2
space-to-depth of 4-channel images of 2 * res pixels) drawn from a pool of
``--pool`` rendered scenes (seeded) with a random one of the 8 flips/rotations
per draw (the scene law is invariant under them). No closed-form optimum
exists for this data: the sidecar records the held-out loss only. With
``--condition-dropout p --pseudo-level u`` the noise level the network is told
is replaced by the fixed level u for a fraction p of the training samples (the
noise-unconditional branch of Noise Awareness Guidance's classifier-free
variant, arXiv 2510.12497); the held-out loss is then also reported with the
level replaced by u for every sample.

    .venv/bin/python tools/train_reference.py --data dead-leaves --res 32 \
        --condition-dropout 0.1 --pseudo-level 1.0 \
        --out models/reference/sd3_dead_leaves_m32.safetensors
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
    p.add_argument("--out", type=Path, default=None, help="default: the Gaussian network's file")
    p.add_argument("--data", choices=("gaussian", "dead-leaves"), default="gaussian")
    p.add_argument(
        "--pool", type=int, default=8192, help="dead leaves: scenes rendered before training"
    )
    p.add_argument(
        "--condition-dropout",
        type=float,
        default=0.0,
        help="fraction of training samples whose noise level input is the pseudo level",
    )
    p.add_argument(
        "--pseudo-level",
        type=float,
        default=None,
        help="the fixed level (flow sigma, network timestep 1000 x this) for dropped samples",
    )
    p.add_argument(
        "--benchmark", type=int, default=0, help="time this many steps, print s/step and exit"
    )
    args = p.parse_args(argv)
    if args.out is None:
        args.out = DEFAULT_OUT
    if not 0.0 <= args.condition_dropout < 1.0:
        p.error("--condition-dropout must be in [0, 1)")
    if args.condition_dropout > 0 and args.pseudo_level is None:
        p.error("--condition-dropout needs --pseudo-level")
    return args


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


class GaussianData:
    """Fresh samples of the testbed's Gaussian field."""

    def __init__(self, testbed, spectrum, res: int):
        self.testbed, self.spectrum, self.res = testbed, spectrum, res

    def __call__(self, count: int, gen: torch.Generator) -> torch.Tensor:
        return self.testbed.sample_field(self.spectrum, self.res, count, gen)


class DeadLeavesPool:
    """Draws from a pool of rendered dead-leaves latents, each under a random flip/rotation."""

    def __init__(self, dead_leaves, res: int, pool: int, seed: int):
        self.latents = dead_leaves.sample_latents(pool, res, seed)

    def __call__(self, count: int, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, self.latents.shape[0], (count,), generator=gen)
        ops = torch.randint(0, 8, (count,), generator=gen).tolist()
        out = []
        for i, op in zip(idx.tolist(), ops, strict=True):
            # flips/rotations act on the image; on the latent they must also permute
            # the 2x2 sub-pixel channels, so they are applied in image space
            out.append(self.transform(self.latents[i : i + 1], op))
        return torch.cat(out)

    @staticmethod
    def transform(latent: torch.Tensor, op: int) -> torch.Tensor:
        img = torch.nn.functional.pixel_shuffle(latent, 2)
        if op & 4:
            img = img.flip(-1)
        img = torch.rot90(img, op & 3, dims=(-2, -1))
        return torch.nn.functional.pixel_unshuffle(img, 2)


def noisy_batch(data, count: int, gen: torch.Generator):
    """(x_t, t, target) for fresh data samples: x_t = (1 - t) x0 + t eps, target eps - x0."""
    x0 = data(count, gen)
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


def make_eval_set(data, count: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return noisy_batch(data, count, gen)


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


def train(net, data, args, steps: int, log) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(
        net.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=args.weight_decay
    )
    net.train()
    running = None
    start = time.perf_counter()
    done = 0
    stopped_early = False
    curve = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args)
        x_t, t, target = noisy_batch(data, args.batch, gen)
        t_in = t
        if args.condition_dropout > 0:
            drop = torch.rand(t.shape, generator=gen) < args.condition_dropout
            t_in = torch.where(drop, torch.full_like(t, args.pseudo_level), t)
        loss = torch.nn.functional.mse_loss(velocity(net, x_t, t_in), target)
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
            curve.append({"step": done, "loss": value, "ema": running})
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
        "loss_curve": curve,
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
    import comfy.sd

    def log(msg: str) -> None:
        print(msg, flush=True)

    gaussian = args.data == "gaussian"
    wall_start = time.perf_counter()
    if gaussian:
        testbed = importlib.import_module(f"{pack.__name__}.noisecal.testing.testbed")
        optimal = importlib.import_module(f"{pack.__name__}.noisecal.testing.optimal_loss")
        spectrum = testbed.FieldSpectrum(f0=args.f0, alpha=args.alpha, channels=16)
        data = GaussianData(testbed, spectrum, args.res)
        data_desc = str(spectrum)
    else:
        dead_leaves = importlib.import_module(f"{pack.__name__}.noisecal.testing.dead_leaves")
        pool_seed = args.seed + 500_009
        t0 = time.perf_counter()
        data = DeadLeavesPool(dead_leaves, args.res, args.pool, pool_seed)
        pool_seconds = time.perf_counter() - t0
        data_desc = f"dead leaves {dead_leaves.DeadLeaves()}, pool {args.pool} (seed {pool_seed})"
        log(f"rendered the pool in {pool_seconds:.1f} s")
    model = build_model(args.depth, args.pos_embed_max_size, args.seed)
    net = model.diffusion_model
    n_params = count_params(net)
    log(host.describe())
    log(
        f"SD3 MMDiT depth {args.depth}, hidden {net.hidden_size}, heads {net.num_heads}, "
        f"{n_params:,} parameters; data {data_desc} at M = {args.res}; "
        f"{torch.get_num_threads()} threads"
    )
    if args.condition_dropout > 0:
        log(f"noise-condition dropout {args.condition_dropout}, pseudo level {args.pseudo_level}")
    opt_loss = None
    if gaussian:
        opt_loss = optimal.optimal_flow_loss(spectrum, args.res)
        log(f"optimal loss (closed form, logit-normal t): {opt_loss:.4f}")

    if args.benchmark:
        bench = argparse.Namespace(**{**vars(args), "log_every": 1, "steps": args.benchmark})
        stats = train(net, data, bench, args.benchmark, log)
        rate = stats["seconds"] / stats["steps_done"]
        log(
            f"benchmark: {rate:.3f} s/step -> {args.steps} steps ~ {args.steps * rate / 60:.1f} min"
        )
        return 0

    if gaussian:
        wall_start = time.perf_counter()  # the shipped run's total excludes nothing before
    stats = train(net, data, args, args.steps, log)
    log(f"trained {stats['steps_done']} steps in {stats['seconds'] / 60:.1f} min")

    eval_seed = args.seed + 1_000_003
    if gaussian:
        eval_data = data
    else:
        eval_data = DeadLeavesPool(dead_leaves, args.res, args.eval_samples, eval_seed)
    if gaussian:
        eval_set = make_eval_set(eval_data, args.eval_samples, eval_seed)
    else:
        gen = torch.Generator().manual_seed(eval_seed)
        x0 = eval_data.latents  # held-out scenes as rendered, in order
        eps = torch.randn(x0.shape, generator=gen)
        t = logit_normal(x0.shape[0], gen)
        tb = t.view(-1, 1, 1, 1)
        eval_set = ((1 - tb) * x0 + tb * eps, t, eps - x0)
    exact_losses = None
    if gaussian:
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
    fp32_s = summarize(fp32_losses, exact_losses)
    shipped_s = summarize(shipped_losses, exact_losses)
    final = shipped_s["mean"]
    pseudo_s = None
    if args.condition_dropout > 0:
        pseudo_losses = per_sample_loss(
            lambda x, t: velocity_via_apply_model(loaded, x, torch.full_like(t, args.pseudo_level)),
            eval_set,
            args.eval_batch,
        )
        pseudo_s = summarize(pseudo_losses)
    total_s = time.perf_counter() - wall_start

    log(f"held-out set: {args.eval_samples} noisy samples, seed {eval_seed}, logit-normal t")
    if gaussian:
        exact_s = summarize(exact_losses)
        log(f"  exact posterior-mean velocity : {exact_s['mean']:.4f} +- {exact_s['se']:.4f}")
    log(f"  trained network (fp32)        : {fp32_s['mean']:.4f} +- {fp32_s['se']:.4f}")
    log(f"  shipped file (fp16, loader)   : {final:.4f} +- {shipped_s['se']:.4f}")
    if pseudo_s is not None:
        log(f"  shipped, level input = pseudo : {pseudo_s['mean']:.4f} +- {pseudo_s['se']:.4f}")
    if gaussian:
        ratio = final / opt_loss
        log(f"final loss {final:.4f}   optimal loss {opt_loss:.4f}   ratio {ratio:.4f}")

    if gaussian:
        data_record = {
            "source": "noisecal.testing.testbed.sample_field (stationary Gaussian field per channel)",
            "spectrum": {"f0": spectrum.f0, "alpha": spectrum.alpha, "channels": 16},
            "native_resolution": args.res,
            "normalization": "unit per-pixel variance at M (orthonormal DFT)",
            "latent_space": (
                "the field lives in model space; ComfyUI's SD3 latent format maps it to "
                "latent space as x / 1.5305 + 0.0609 (process_latent_out), so an empty "
                "latent samples to that and model.process_latent_in(samples) is the field"
            ),
        }
    else:
        params = dead_leaves.DeadLeaves()
        data_record = {
            "source": (
                "noisecal.testing.dead_leaves.sample_latents: dead-leaves images of "
                f"{2 * args.res} px, 2x2 space-to-depth to 16 channels, normalized"
            ),
            "dead_leaves": {
                "r_min": params.r_min,
                "r_max": params.r_max,
                "disks": params.disks,
                "channels": params.channels,
                "supersample": params.supersample,
            },
            "normalization": {
                "latent_mean": list(dead_leaves.LATENT_MEAN),
                "latent_std": list(dead_leaves.LATENT_STD),
                "measured_at_latent_res": dead_leaves.NORMALIZATION_RES,
            },
            "pool": args.pool,
            "pool_seed": pool_seed,
            "pool_render_seconds": round(pool_seconds, 1),
            "augmentation": "a random one of the 8 flips/rotations per draw (image space)",
            "native_resolution": args.res,
            "latent_space": (
                "the normalized latent lives in model space; ComfyUI's SD3 latent format maps "
                "it to latent space as x / 1.5305 + 0.0609 (process_latent_out)"
            ),
        }
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
        "data": data_record,
        "native_resolution": args.res,
        "training": {
            "objective": "flow matching: x_t = (1 - t) x0 + t eps, target eps - x0, MSE",
            "t_distribution": "logit-normal(0, 1)",
            "network_call": "net(x_t, 1000 * t, context=zeros, y=zeros) -> velocity",
            "condition_dropout": args.condition_dropout,
            "pseudo_level": args.pseudo_level,
            "condition_dropout_rule": (
                "per training sample with probability condition_dropout the level input is "
                "pseudo_level (timestep 1000 * pseudo_level); x_t and the target keep the true t"
            ),
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
            "data": "fresh field samples every step" if gaussian else "draws from the pool",
            "final_running_loss": stats["final_running_loss"],
            "loss_curve": stats["loss_curve"],
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
            "trained_fp32": fp32_s,
            "shipped_fp16_via_loader": shipped_s,
        },
        "final_loss": final,
        "final_loss_se": shipped_s["se"],
        "training_time_s": round(stats["seconds"], 1),
    }
    if gaussian:
        sidecar["evaluation"]["exact_denoiser"] = exact_s
        sidecar["optimal_loss"] = opt_loss
        sidecar["optimal_loss_method"] = (
            "closed form per frequency and t, mean over k, logit-normal t"
        )
        sidecar["loss_ratio"] = ratio
    else:
        sidecar["evaluation"]["held_out_data"] = (
            f"{args.eval_samples} scenes rendered with seed {eval_seed} (not in the pool)"
        )
        if pseudo_s is not None:
            sidecar["evaluation"]["shipped_fp16_level_input_pseudo"] = pseudo_s
    sidecar_path = args.out.with_suffix(".json")
    sidecar_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    log(f"wrote {args.out} ({size / 1e6:.2f} MB) and {sidecar_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

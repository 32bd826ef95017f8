"""The models the command line's demo runs: the shipped reference networks,
the exact-denoiser testbed, and each one's defaults."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

PACK_ROOT = Path(__file__).resolve().parent.parent
# the shipped reference network (tools/train_reference.py); its sidecar is the .json beside it
REFERENCE_MODEL = PACK_ROOT / "models" / "reference" / "sd3_gaussian_field_m32.safetensors"
DEAD_LEAVES_MODEL = PACK_ROOT / "models" / "reference" / "sd3_dead_leaves_m32.safetensors"
DEAD_LEAVES_NATIVE = PACK_ROOT / "models" / "reference" / "sd3_dead_leaves_m16.safetensors"
# samples per FD cell when --eval-samples is not given. The reference is a real network:
# a 20-step sample at N = 32 costs about 0.5 s of one CPU core per method, and 40 keeps
# the whole demo (Calibrate + Apply, then NoiseShift alone, at N = 16 and 32) at about 3
# minutes on 2 shared cores (64 took about 4; bench/reference.py uses 128 at N = M)
DEFAULT_EVAL_SAMPLES = {"testbed": 256, "reference": 40, "dead-leaves": 64}
# calibration rows per forward when --max-batch is not given: the testbed's FFTs like big
# batches; the network on CPU is fastest at about 32 (bigger batches spend a quarter of
# their time in the kernel allocating activations)
DEFAULT_MAX_BATCH = {"testbed": 256, "reference": 32, "dead-leaves": 32}
# calibration latents when --samples is not given: 12 (lean search, no check) for the
# Gaussian demos; 16 for dead leaves, whose calibration holds back 4 for the check
DEFAULT_CAL_SAMPLES = {"testbed": 12, "reference": 12, "dead-leaves": 16}


def with_flow_shift(model, shift: float):
    """What ComfyUI's ModelSamplingSD3 node does: a clone sampling the flow with ``shift``."""
    import comfy.model_sampling

    class ModelSamplingAdvanced(
        comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST
    ):
        pass

    sampling = ModelSamplingAdvanced(model.model.model_config)
    sampling.set_parameters(shift=shift, multiplier=1000)
    patched = model.clone()
    patched.add_object_patch("model_sampling", sampling)
    return patched


@dataclass
class Reference:
    """The shipped reference network with what its sidecar says about it."""

    model: object  # ModelPatcher, loaded by ComfyUI's diffusion-model loader
    path: Path
    sidecar: dict
    spectrum: object  # noisecal.testing.testbed.FieldSpectrum of its training data
    train_res: int  # M
    shift: float  # its ModelSamplingDiscreteFlow shift


def load_reference(path: Path | str = REFERENCE_MODEL) -> Reference:
    """Load the reference network as UNETLoader does and read its training data's spectrum."""
    from ..noisecal.testing.testbed import FieldSpectrum
    from . import reference_models

    path = Path(path)
    if not path.is_file() or not path.with_suffix(".json").is_file():
        # a registry install leaves the reference model out (.comfyignore): only a clone has it
        raise SystemExit(
            f"the reference model {path.name} is not in this install (a Comfy Registry "
            f"install leaves it out); run the demo from a git clone of the pack, or use "
            f"'demo --model testbed'"
        )
    # the loader node's own: the trained size is recorded on the model for Calibrate
    sidecar = reference_models.sidecar(path.name)
    spec = sidecar["data"]["spectrum"]
    spectrum = FieldSpectrum(f0=spec["f0"], alpha=spec["alpha"], channels=spec["channels"])
    model = reference_models.load(path.name)
    shift = float(model.get_model_object("model_sampling").shift)
    return Reference(model, path, sidecar, spectrum, int(sidecar["native_resolution"]), shift)


def reference_native(reference: Reference, n: int):
    """The exact testbed denoiser for resolution n, on the reference's data and schedule shift."""
    from .testing.testbed_model import make_testbed_model

    return with_flow_shift(make_testbed_model(reference.spectrum, n), reference.shift)


@dataclass
class DemoSetup:
    """One kind of model for the demo: everything but the calibration and the sampling."""

    model: object  # the M-model as a MODEL
    spectrum: object
    train_res: int
    native: Callable[[int], object]  # n -> the native reference MODEL at n
    to_latent: Callable[[torch.Tensor], torch.Tensor]  # field samples -> LATENT samples
    to_field: Callable[[torch.Tensor], torch.Tensor]  # sampled LATENT -> field space
    positive: Callable[[int], list]  # batch -> conditioning
    description: str


def demo_setup(args) -> DemoSetup:
    from ..noisecal.testing.testbed import FieldSpectrum
    from .model_info import zero_conditioning
    from .testing.testbed_model import make_testbed_conditioning, make_testbed_model

    if args.model == "testbed":
        spectrum = FieldSpectrum(f0=args.f0, alpha=args.alpha, channels=4)
        return DemoSetup(
            model=make_testbed_model(spectrum, args.train_res, args.variant),
            spectrum=spectrum,
            train_res=args.train_res,
            native=lambda n: make_testbed_model(spectrum, n),
            to_latent=lambda x: x,
            to_field=lambda x: x,
            positive=make_testbed_conditioning,
            description=(
                f"testbed: Gaussian field f0={args.f0} alpha={args.alpha} C=4, model trained at "
                f"M={args.train_res} ({args.variant} variant)"
            ),
        )
    ref = load_reference()
    inner = ref.model.model
    sp = ref.spectrum
    return DemoSetup(
        model=ref.model,
        spectrum=sp,
        train_res=ref.train_res,
        native=lambda n: reference_native(ref, n),
        # SD3's latent format: the field lives in model space, a LATENT holds
        # process_latent_out of it, and the sampler's output is mapped back
        to_latent=inner.process_latent_out,
        to_field=inner.process_latent_in,
        positive=lambda batch: zero_conditioning(ref.model),
        description=(
            f"reference: {ref.path.name}, a tiny SD3 (MMDiT) trained by flow matching at "
            f"M={ref.train_res} on the Gaussian field f0={sp.f0:g} alpha={sp.alpha:g} "
            f"C={sp.channels} (shift {ref.shift:g}); native = the exact denoiser for N on the "
            f"same schedule"
        ),
    )

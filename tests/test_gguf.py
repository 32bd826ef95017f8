"""The pack on a GGUF-quantized reference network loaded by city96's ComfyUI-GGUF.

Needs a full ComfyUI (COMFYUI_PATH), the `gguf` package and a checkout of
ComfyUI-GGUF named by NOISECAL_GGUF_PACK (docs/compatibility.md says how);
skips with the reason otherwise. The dead-leaves network (trained at M = 32)
is written as Q8_0 and Q4_0 GGUF by tools/quantize_gguf.py into a temporary
folder and loaded with that pack's UnetLoaderGGUF; then, as with the fp16 file
loaded by ComfyUI's own loader:
- the checkpoint key works on the quantized tensors: no error, the same for two
  loads, different from the fp16 file's and between the two types;
- Calibrate (NoiseShift + Euler table, check off) runs on it, and its curve is
  close to the fp16 network's (Q8_0 tighter than Q4_0);
- Apply, NoiseShift and Noise Level Correction reach the network: it is told
  other levels than without them, the ones the fp16 model with the same
  calibration is told, and the sample differs from the fp16 model's by no
  more than the quantization itself makes plain samples differ.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import comfy.sd
import pytest
import torch
from test_workflow_hosts import import_comfy_nodes

ROOT = Path(__file__).resolve().parent.parent
M32 = ROOT / "models" / "reference" / "sd3_dead_leaves_m32.safetensors"
PACK_ENV = "NOISECAL_GGUF_PACK"
TYPES = ("Q8_0", "Q4_0")
N, STEPS, CAL_COUNT = 16, 6, 4
# largest |sigma_hat - fp16's| of the calibration: measured 0.0022 (Q8_0) and 0.0059
# (Q4_0) on ComfyUI 0.3.64; two calibrations of the fp16 network on other latents
# differ by 0.058 (bench/lora_fp8.py)
CURVE_GAP = {"Q8_0": 0.02, "Q4_0": 0.05}
# a node's sample may differ from the fp16 model's by the quantization's own
# difference (plain GGUF vs plain fp16; Q4_0 about 11%), not more
BEYOND_QUANTIZATION = 1.25


def gguf_pack(host_info):
    """The ComfyUI-GGUF package imported as ComfyUI imports a custom node, or a skip."""
    folder = os.environ.get(PACK_ENV, "")
    if not folder or not (Path(folder) / "nodes.py").is_file():
        pytest.skip(f"set {PACK_ENV} to a checkout of city96/ComfyUI-GGUF to run this")
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("the gguf package is not installed (pip install gguf)")
    if importlib.util.find_spec("folder_paths") is None:
        pytest.skip("ComfyUI-GGUF needs a full ComfyUI: run with COMFYUI_PATH")
    import_comfy_nodes(host_info.path)  # ComfyUI's `nodes`, which that pack imports
    name = "ComfyUI_GGUF_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(folder) / "__init__.py", submodule_search_locations=[folder]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def quantizer():
    spec = importlib.util.spec_from_file_location("quantize_gguf", ROOT / "tools/quantize_gguf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def loader(host_info, tmp_path_factory):
    """load(type) -> a fresh MODEL from UnetLoaderGGUF."""
    pack = gguf_pack(host_info)
    import folder_paths

    folder = tmp_path_factory.mktemp("gguf")
    for t in TYPES:
        quantizer().convert(M32, folder / f"m32-{t}.gguf", t)
    folder_paths.add_model_folder_path("diffusion_models", str(folder))
    node = pack.NODE_CLASS_MAPPINGS["UnetLoaderGGUF"]()
    return lambda t: node.load_unet(f"m32-{t}.gguf")[0]


def key(pack_module, model):
    return pack_module("noisecal_host.fingerprint").checkpoint_key(model)


def test_the_key_works_on_quantized_tensors(pack_module, loader):
    fp16 = key(pack_module, comfy.sd.load_diffusion_model(str(M32)))
    keys = {t: key(pack_module, loader(t)) for t in TYPES}
    for t in TYPES:
        assert key(pack_module, loader(t)) == keys[t], f"{t}: stable across loads"
        assert keys[t] != fp16
    assert keys["Q8_0"] != keys["Q4_0"]


class World:
    """Calibrations of the fp16 network and of each GGUF one, on the same latents."""

    def __init__(self, pack, pack_module, loader, tmp_path):
        self.pm = pack_module
        store = pack_module("noisecal_host.store").CalibrationStore([tmp_path], tmp_path)
        self.node = {
            name: pack.NODE_CLASS_MAPPINGS[f"NoiseCalibration{name}"](calibration_store=store)
            for name in ("Calibrate", "Apply", "NoiseShift", "NoiseLevelCorrection")
        }
        self.models = {"fp16": comfy.sd.load_diffusion_model(str(M32))}
        self.models.update({t: loader(t) for t in TYPES})
        dead_leaves = pack_module("noisecal.testing.dead_leaves")
        self.cal = dead_leaves.sample_latents(CAL_COUNT, N, 1001)
        self.positive = pack_module("noisecal_host.model_info").zero_conditioning(
            self.models["fp16"]
        )
        self.records = {name: self.calibrate(m) for name, m in self.models.items()}

    def calibrate(self, model) -> dict:
        latent = {"samples": model.model.process_latent_out(self.cal)}
        records, _, _ = self.node["Calibrate"].calibrate(
            model, STEPS, "simple", "fast", CAL_COUNT, 2002, 8 * N, 8 * N, "", 32,
            latent=latent, positive=self.positive, correction="euler", check="off",
        )["result"]  # fmt: skip
        return records[0]

    def patched(self, node: str, model, record):
        n = self.node[node]
        if node == "NoiseLevelCorrection":
            return n.apply(model, 1.0, 0.0, 1000.0, "error", calibration=[record])[0]
        return n.apply(model, 1.0, "error", calibration=[record])[0]

    def sample(self, model):
        """(latent, the told timesteps) of one Euler sample at N."""
        sampling = self.pm("noisecal_host.testing.sampling")
        told = []

        def hook(module, args, kwargs):
            told.append(args[1].detach().float().reshape(-1).clone())

        net = model.model.diffusion_model
        handle = net.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            lat = sampling.empty_latent(model, N, N, 1)
            out = sampling.ksample(model, lat, self.positive, seed=3, steps=STEPS)
        finally:
            handle.remove()
        return out, torch.cat(told)


@pytest.fixture(scope="module")
def world(pack, pack_module, loader, tmp_path_factory):
    return World(pack, pack_module, loader, tmp_path_factory.mktemp("store"))


def curve_gap(a: dict, b: dict) -> float:
    assert a["sigmas"] == b["sigmas"]
    return max(abs(x - y) for x, y in zip(a["sigma_hat"], b["sigma_hat"], strict=True))


@pytest.mark.parametrize("qtype", TYPES)
def test_calibrate_on_gguf_is_close_to_fp16(world, qtype):
    record, fp16 = world.records[qtype], world.records["fp16"]
    assert record["correction"] and record["correction"]["r"], "the NLC table was calibrated"
    shifts = [abs(h - s) for s, h in zip(fp16["sigmas"], fp16["sigma_hat"], strict=True)]
    assert max(shifts) > 0.01, "the fp16 calibration shifts at N = 16"
    gap = curve_gap(record, fp16)
    print(f"{qtype}: largest |sigma_hat - fp16's| {gap:.4f}")  # shown with -s
    assert gap < CURVE_GAP[qtype]


@pytest.mark.parametrize("node", ["Apply", "NoiseShift", "NoiseLevelCorrection"])
@pytest.mark.parametrize("qtype", TYPES)
def test_pack_nodes_reach_the_gguf_network(world, qtype, node):
    model, record = world.models[qtype], world.records["fp16"]  # one calibration: same levels
    fp16 = world.models["fp16"]
    plain, plain_told = world.sample(model)
    out, told = world.sample(world.patched(node, model, record))
    ref, ref_told = world.sample(world.patched(node, fp16, record))
    assert torch.isfinite(out).all()
    assert not torch.allclose(told, plain_told), f"{node} changes the level the network gets"
    assert torch.allclose(told, ref_told, atol=1e-3), "the levels the fp16 model gets"
    plain_ref, _ = world.sample(fp16)
    quantization = float((plain - plain_ref).norm() / plain_ref.norm())
    gap = float((out - ref).norm() / ref.norm())
    print(f"{qtype} {node}: sample {gap:.4f} from fp16's; plain {quantization:.4f}")  # -s
    assert gap < BEYOND_QUANTIZATION * quantization + 0.005, f"{qtype} with {node}"


def test_a_lora_on_a_gguf_model(pack_module, loader, world):
    """ComfyUI's LoRA loading on a UnetLoaderGGUF model (that pack applies the patches
    to its quantized weights when a layer runs): the key follows the LoRA, the LoRA
    reaches the network, and NoiseShift still sets the level it is given."""
    from test_weight_patch_key import tiny_lora, with_lora

    base = loader("Q8_0")
    lora = tiny_lora(comfy.sd.load_diffusion_model(str(M32)), seed=0)
    one = with_lora(base, lora, 1.0)
    assert pack_module("noisecal_host.fingerprint").weight_patches(one), "the LoRA is registered"
    assert key(pack_module, one) != key(pack_module, base)
    assert key(pack_module, with_lora(loader("Q8_0"), lora, 1.0)) == key(pack_module, one)
    assert key(pack_module, one).weights is None, "a quantized model keeps no weight values"
    plain, plain_told = world.sample(base)
    out, _ = world.sample(one)
    assert not torch.allclose(out, plain, atol=1e-4), "the LoRA reaches the network"
    shifted, told = world.sample(world.patched("NoiseShift", one, world.records["Q8_0"]))
    assert torch.isfinite(shifted).all()
    assert not torch.allclose(told, plain_told), "NoiseShift changes the level on the LoRA'd model"

"""The checkpoint key follows weight patches (LoRA) and weight dtype (fp8).

Why (bench/lora_fp8.py, docs/compatibility.md): on the dead-leaves reference
network a LoRA changes the calibration beyond what two calibrations of one
network differ by, so a LoRA'd MODEL has calibrations of its own and the node
says why the base checkpoint's are not used. LoRAs here are loaded by ComfyUI's
own LoRA code (`comfy.sd.load_lora_for_models`, what LoraLoaderModelOnly runs);
on a host with core's LoRA nodes one is also extracted from the two reference
networks with `nodes_lora_extract` and loaded with LoraLoaderModelOnly.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import comfy.sd
import pytest
import torch
from test_noiseshift_host import make_record
from test_workflow_hosts import import_comfy_nodes

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "models" / "reference"
M32 = REFERENCE / "sd3_dead_leaves_m32.safetensors"
M16 = REFERENCE / "sd3_dead_leaves_m16.safetensors"


def tiny_lora(patcher, seed: int, rank: int = 2) -> dict:
    """A LoRA file's dict (lora_up / lora_down per 2-D weight), as LoraSave writes it."""
    gen = torch.Generator().manual_seed(seed)
    lora = {}
    for k, w in patcher.model.state_dict().items():
        if k.startswith("diffusion_model.") and k.endswith(".weight") and w.dim() == 2:
            name = k[: -len(".weight")]
            up = torch.randn(w.shape[0], rank, generator=gen) * 0.1
            lora[f"{name}.lora_up.weight"] = up.half()
            lora[f"{name}.lora_down.weight"] = torch.randn(rank, w.shape[1], generator=gen).half()
    return lora


def with_lora(patcher, lora: dict, strength: float):
    return comfy.sd.load_lora_for_models(patcher, None, dict(lora), strength, 0)[0]


def key(pack_module, model, label=None, **options):
    return pack_module("noisecal_host.fingerprint").checkpoint_key(model, label, **options)


def test_a_lora_and_its_strength_change_the_key(pack_module, tiny_sd3):
    base = tiny_sd3.patcher
    lora = tiny_lora(base, seed=0)
    one = with_lora(base, lora, 1.0)
    assert len(pack_module("noisecal_host.fingerprint").weight_patches(one)) == len(lora) // 2
    assert key(pack_module, one) != key(pack_module, base)
    assert key(pack_module, with_lora(base, lora, 1.0)) == key(pack_module, one), "stable"
    assert key(pack_module, with_lora(base, lora, 0.5)) != key(pack_module, one)
    other = with_lora(base, tiny_lora(base, seed=1), 1.0)
    assert key(pack_module, other) != key(pack_module, one)
    assert key(pack_module, one, with_patches=False) == key(pack_module, base)


def test_without_weight_patches_the_key_is_the_base_weights(pack_module, tiny_model):
    fingerprint = pack_module("noisecal_host.fingerprint")
    model = tiny_model.patcher.clone()
    assert key(pack_module, model).fingerprint == fingerprint.weights_fingerprint(model)
    assert fingerprint.patches_fingerprint(model) is None


def test_the_key_is_the_same_while_the_lora_is_applied(pack_module, tiny_sd3):
    model = with_lora(tiny_sd3.patcher, tiny_lora(tiny_sd3.patcher, seed=0), 1.0)
    before = key(pack_module, model)
    model.patch_model()  # what sampling does: weights modified, originals in the backup
    try:
        assert model.backup, "the LoRA really modified weights"
        assert key(pack_module, model) == before
    finally:
        model.unpatch_model()


def test_a_label_shares_one_calibration_across_loras(pack_module, tiny_sd3):
    base = tiny_sd3.patcher
    one = with_lora(base, tiny_lora(base, seed=0), 1.0)
    assert key(pack_module, one, "mine").identity == key(pack_module, base, "mine").identity


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_fp8_weights_have_their_own_key(pack_module, dtype):
    """What UNETLoader's weight_dtype does: the reference network loaded in fp8."""
    base = comfy.sd.load_diffusion_model(str(M32))
    options = {"dtype": getattr(torch, dtype)}
    fp8 = comfy.sd.load_diffusion_model(str(M32), model_options=options)
    again = comfy.sd.load_diffusion_model(str(M32), model_options=options)
    assert fp8.model.diffusion_model.x_embedder.proj.weight.dtype == getattr(torch, dtype)
    assert key(pack_module, fp8) != key(pack_module, base)
    assert key(pack_module, fp8) == key(pack_module, again), "stable across loads"
    assert key(pack_module, fp8, "mine").identity == key(pack_module, base, "mine").identity


def nodes_on(pack, store):
    m = pack.NODE_CLASS_MAPPINGS
    return {
        name: m[f"NoiseCalibration{name}"](calibration_store=store)
        for name in ("NoiseShift", "Apply")
    }


def test_the_node_says_why_the_base_calibration_is_not_used(pack, pack_module, tiny_sd3, tmp_path):
    errors = pack_module("noisecal.errors")
    store = pack_module("noisecal_host.store").CalibrationStore([tmp_path], tmp_path)
    base = tiny_sd3.patcher
    store.save(make_record(pack_module, base, lambda s: 0.8 * s))
    lora = with_lora(base, tiny_lora(base, seed=0), 1.0)
    nodes = nodes_on(pack, store)
    for name, node in nodes.items():
        node.apply(base, 1.0, "error", notes=[])  # the base checkpoint is calibrated
        with pytest.raises(errors.CalibrationNotFound, match="weight patches") as error:
            node.apply(lora, 1.0, "error", notes=[])
        assert "calibrated only without them (latent 8x8)" in str(error.value), name
        notes = []
        node.apply(lora, 1.0, "pass through", notes=notes)
        assert any("with the LoRA on" in n for n in notes), name
    store.save(make_record(pack_module, lora, lambda s: 0.9 * s))  # calibrated with it
    for node in nodes.values():
        notes = []
        node.apply(lora, 1.0, "error", notes=notes)
        assert not any("weight patches" in n for n in notes)


def test_a_label_finds_the_base_calibration_with_a_lora(pack, pack_module, tiny_sd3, tmp_path):
    store = pack_module("noisecal_host.store").CalibrationStore([tmp_path], tmp_path)
    base = tiny_sd3.patcher
    store.save(make_record(pack_module, base, lambda s: 0.8 * s, label="mine"))
    lora = with_lora(base, tiny_lora(base, seed=0), 1.0)
    for node in nodes_on(pack, store).values():
        notes = []
        node.apply(lora, 1.0, "error", "mine", notes=notes)
        assert not any("weight patches" in n for n in notes)


def core_lora_nodes(host_info):
    """ComfyUI's `nodes` module (LoraLoaderModelOnly), or a skip naming what is missing."""
    if (
        importlib.util.find_spec("folder_paths") is None
        or not (host_info.path / "nodes.py").is_file()
    ):
        pytest.skip(
            "this host has no folder_paths / nodes.py (LoraSave, LoraLoaderModelOnly): "
            "run on a full ComfyUI with COMFYUI_PATH"
        )
    return import_comfy_nodes(host_info.path)


def test_an_extracted_lora_loaded_by_lora_loader_model_only(pack_module, host_info, tmp_path):
    """core's extraction of (m16 - m32) at rank 8, loaded on m32 by LoraLoaderModelOnly:
    the key follows it, stably, and the LoRA reaches the network."""
    nodes = core_lora_nodes(host_info)
    import comfy.utils
    import folder_paths
    from comfy_extras import nodes_lora_extract as extract
    from comfy_extras import nodes_model_merging as merging

    sampling = pack_module("noisecal_host.testing.sampling")
    zero = pack_module("noisecal_host.model_info").zero_conditioning
    m32, m16 = (comfy.sd.load_diffusion_model(str(p)) for p in (M32, M16))
    (diff,) = merging.ModelSubtract().merge(m16, m32, 1.0)
    sd = extract.calc_lora_model(
        diff, 8, "diffusion_model.", "diffusion_model.", {}, extract.LORAType.STANDARD, True
    )
    comfy.utils.save_torch_file(sd, str(tmp_path / "m16_minus_m32.safetensors"))
    folder_paths.add_model_folder_path("loras", str(tmp_path))
    loader = nodes.LoraLoaderModelOnly()
    (one,) = loader.load_lora_model_only(m32, "m16_minus_m32.safetensors", 1.0)
    (again,) = loader.load_lora_model_only(
        comfy.sd.load_diffusion_model(str(M32)), "m16_minus_m32.safetensors", 1.0
    )
    assert key(pack_module, one) != key(pack_module, m32)
    assert key(pack_module, one) == key(pack_module, again)

    def out(model):
        lat = sampling.empty_latent(model, 8, 8, 1)
        return sampling.ksample(model, lat, zero(model), seed=1, steps=2)

    assert not torch.equal(out(one), out(m32)), "the LoRA reaches the network"


def test_an_uncalibrated_fp8_model_is_told_how_to_get_a_calibration(pack, pack_module, tmp_path):
    errors = pack_module("noisecal.errors")
    store = pack_module("noisecal_host.store").CalibrationStore([tmp_path], tmp_path)
    fp8 = comfy.sd.load_diffusion_model(str(M32), model_options={"dtype": torch.float8_e4m3fn})
    base = comfy.sd.load_diffusion_model(str(M32))
    for name, node in nodes_on(pack, store).items():
        with pytest.raises(errors.CalibrationNotFound, match="float8_e4m3fn") as error:
            node.apply(fp8, 1.0, "error", notes=[])
        assert "calibrate the fp16 or bf16 file it was loaded from" in str(error.value), name
        notes = []
        node.apply(fp8, 1.0, "pass through", notes=notes)
        assert any("float8_e4m3fn" in n for n in notes), name
        with pytest.raises(errors.CalibrationNotFound) as error:
            node.apply(base, 1.0, "error", notes=[])
        assert "float8" not in str(error.value), "fp16 weights: the usual error"
    store.save(make_record(pack_module, fp8, lambda s: 0.8 * s))
    for node in nodes_on(pack, store).values():
        notes = []
        node.apply(fp8, 1.0, "error", notes=notes)
        assert not any("float8" in n for n in notes), "its own calibration, nothing to say"


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_fp8_weights_use_the_calibration_of_their_fp16_file(pack, pack_module, tmp_path, dtype):
    """bench/lora_fp8.py: the fp16 calibration serves fp8 weights about as well as
    recalibrating, so the fp8 load finds it (through the weight values it keeps)."""
    store = pack_module("noisecal_host.store").CalibrationStore([tmp_path], tmp_path)
    base = comfy.sd.load_diffusion_model(str(M32))
    store.save(make_record(pack_module, base, lambda s: 0.8 * s))
    fp8 = comfy.sd.load_diffusion_model(str(M32), model_options={"dtype": getattr(torch, dtype)})
    assert key(pack_module, fp8) != key(pack_module, base), "the stored values differ"
    for name, node in nodes_on(pack, store).items():
        notes = []
        patched = node.apply(fp8, 1.0, "error", notes=notes)[0]
        assert patched is not fp8, f"{name}: the calibration's shift is installed"
        used = [n for n in notes if "using the calibrations of" in n]
        assert len(used) == 1 and dtype in used[0], (name, notes)
        assert key(pack_module, base).describe() in used[0]
    status = pack_module("noisecal_host.calibrations").calibrated(fp8, "", store)
    assert [s["latent"] for s in status["sizes"]] == [[8, 8]], "the node shows the sizes"


def test_another_network_at_fp8_does_not_use_the_calibration(pack, pack_module, tmp_path):
    """m16 has m32's layout (names, shapes) but other weights."""
    errors = pack_module("noisecal.errors")
    store = pack_module("noisecal_host.store").CalibrationStore([tmp_path], tmp_path)
    store.save(make_record(pack_module, comfy.sd.load_diffusion_model(str(M32)), lambda s: 0.8 * s))
    other = comfy.sd.load_diffusion_model(str(M16), model_options={"dtype": torch.float8_e5m2})
    rounded = pack_module("noisecal_host.rounded_weights")
    assert rounded.same_checkpoint(key(pack_module, other), store) is None
    for node in nodes_on(pack, store).values():
        with pytest.raises(errors.CalibrationNotFound, match="float8_e5m2"):
            node.apply(other, 1.0, "error", notes=[])


def test_a_lora_on_fp8_weights_does_not_use_the_base_calibration(pack_module, tmp_path):
    store = pack_module("noisecal_host.store").CalibrationStore([tmp_path], tmp_path)
    base = comfy.sd.load_diffusion_model(str(M32))
    store.save(make_record(pack_module, base, lambda s: 0.8 * s))
    fp8 = comfy.sd.load_diffusion_model(str(M32), model_options={"dtype": torch.float8_e4m3fn})
    lora = with_lora(fp8, tiny_lora(fp8, seed=0), 1.0)
    assert key(pack_module, lora).weights is None, "a LoRA'd model keeps no weight values"
    rounded = pack_module("noisecal_host.rounded_weights")
    assert rounded.same_checkpoint(key(pack_module, lora), store) is None

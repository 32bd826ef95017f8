"""The shipped reference networks in ComfyUI without downloads: the loader and decode
nodes, and the Calibrate node at its defaults on each of them (real host, real
networks; generation at the size the sidecar names)."""

import json

import pytest
import torch

NETWORKS = ["sd3_dead_leaves_m16", "sd3_dead_leaves_m32", "sd3_gaussian_field_m32"]


class Reached(Exception):
    """Raised from a forward hook to end a run once it got where the test looks."""


@pytest.fixture
def nodes(pack, tmp_path):
    m = pack.NODE_CLASS_MAPPINGS
    store = pack.noisecal_host.store.CalibrationStore([tmp_path], tmp_path)
    return m["NoiseCalibrationLoadReference"](), m["NoiseCalibrationCalibrate"](store)


def trained_latent(pack_module, name) -> int:
    folder = pack_module("noisecal_host.reference_models").REFERENCE_DIR
    return int(json.loads((folder / f"{name}.json").read_text())["native_resolution"])


def defaults(calibrate_node) -> dict:
    """Every widget of the Calibrate node at its default, by name."""
    spec = calibrate_node.INPUT_TYPES()
    groups = (*spec["required"].items(), *spec["optional"].items())
    return {name: s[1]["default"] for name, s in groups if len(s) > 1 and "default" in s[1]}


def shapes_seen(patcher, stop_at=None) -> list:
    """Latent sizes the network is called on; raises Reached after the first call
    on a `stop_at` (h, w) latent has run through the network."""
    seen = []

    def hook(module, args, output):
        seen.append(tuple(args[0].shape[-2:]))
        if seen[-1] == stop_at:
            raise Reached

    patcher.model.diffusion_model.register_forward_hook(hook)
    return seen


def test_the_loader_lists_the_shipped_networks(pack):
    spec = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationLoadReference"].INPUT_TYPES()
    assert spec["required"]["model_name"][0] == [f"{n}.safetensors" for n in NETWORKS]


@pytest.mark.parametrize("name", NETWORKS)
def test_native_size_comes_from_the_model(pack_module, nodes, name):
    import comfy.sd

    native = pack_module("noisecal_host.self_calibration").native_size
    (model,) = nodes[0].load(f"{name}.safetensors")
    side = 8 * trained_latent(pack_module, name)
    assert native(model) == (side, side)  # the sidecar's, recorded by the loader
    folder = pack_module("noisecal_host.reference_models").REFERENCE_DIR
    plain = comfy.sd.load_diffusion_model(str(folder / f"{name}.safetensors"))
    # without the sidecar (UNETLoader): the family's 1024 px, cut to what the network
    # takes (pos_embed_max_size 32 x patch 2 = 64 latent pixels)
    assert native(plain) == (512, 512)
    assert native(plain.clone()) == native(plain) and native(model.clone()) == native(model)


@pytest.mark.parametrize("name", NETWORKS)
def test_calibrate_at_every_default_runs_on_each_network(pack_module, nodes, name):
    """Every input at its default (self-generated data, 512 px): it passes every
    check, generates at the sidecar's size and the network takes the target size.
    The run stops after the first calibration call: a whole run at 512 px takes
    minutes on a CPU (the example workflow runs one whole, at 128 px)."""
    loader, calibrate = nodes
    (model,) = loader.load(f"{name}.safetensors")
    seen = shapes_seen(model, stop_at=(64, 64))
    with pytest.raises(Reached):
        calibrate.calibrate(model, **defaults(calibrate))
    m = trained_latent(pack_module, name)
    generation = [s for s in seen if s != (64, 64)]
    assert generation and set(generation) == {(m, m)} and seen[-1] == (64, 64)
    assert seen.index((64, 64)) == len(generation)  # generation, then calibration


BAD_SIZES = [  # (inputs, error)
    ({"native_width": 1024}, r"^native_width \(1024\) is larger than SD3 takes.* 512 or less"),
    ({"native_height": 136}, r"^native_height \(136\) must be a multiple of 16"),
    ({"width": 1024, "height": 1024}, r"^width \(1024\) is larger than SD3 takes"),
    ({"width": 520}, r"^width \(520\) must be a multiple of 16"),
]


@pytest.mark.parametrize("inputs, error", BAD_SIZES, ids=[str(i) for i, _ in BAD_SIZES])
def test_a_size_the_network_cannot_take_is_refused_before_any_call(pack, nodes, inputs, error):
    loader, calibrate = nodes
    (model,) = loader.load("sd3_dead_leaves_m16.safetensors")
    seen = shapes_seen(model)
    with pytest.raises(pack.noisecal.errors.InvalidInput, match=error):
        calibrate.calibrate(model, **{**defaults(calibrate), **inputs})
    assert seen == []


def test_a_connected_latent_larger_than_the_network_takes_is_refused(pack, nodes):
    loader, calibrate = nodes
    (model,) = loader.load("sd3_dead_leaves_m16.safetensors")
    seen = shapes_seen(model)
    latent = {"samples": torch.randn(4, 16, 72, 72)}
    with pytest.raises(
        pack.noisecal.errors.InvalidInput, match=r"^latent: .*larger than SD3 takes \(64x64"
    ):
        calibrate.calibrate(model, **defaults(calibrate), latent=latent)
    assert seen == []


def test_decode_gives_back_the_dead_leaves_image(pack, pack_module):
    import comfy.latent_formats

    dead_leaves = pack_module("noisecal.testing.dead_leaves")
    images = dead_leaves.render(dead_leaves.DeadLeaves(), 2, 16, 3)  # [2, 4, 16, 16]
    samples = comfy.latent_formats.SD3().process_out(dead_leaves.to_latent(images))
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationReferenceDecode"]()
    (decoded,) = node.decode({"samples": samples})
    assert decoded.shape == (2, 16, 16, 3)
    expected = images[:, :3].clamp(0, 1).movedim(1, -1)
    assert torch.allclose(decoded, expected, atol=1e-5)

"""The Calibrate node refuses data and schedules it cannot use with the pack's
error, before any network call (real tiny SD3, through the node)."""

import math
import types

import comfy.model_management
import comfy.supported_models
import pytest
import torch


@pytest.fixture
def calibrate_node(pack, tmp_path):
    store = pack.noisecal_host.store.CalibrationStore([tmp_path], tmp_path)
    return pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"](calibration_store=store)


def forward_calls(patcher) -> list:
    """A list that grows by one on every call of the network itself."""
    calls = []
    patcher.model.diffusion_model.register_forward_hook(lambda *a: calls.append(1))
    return calls


def run(node, model, latents, sigmas=None, steps=4):
    return node.calibrate(
        model,
        steps,
        "simple",
        "fast",
        8,
        0,
        64,
        64,
        "",
        8,
        latent={"samples": latents},
        sigmas=sigmas,
    )


def cases(channels):
    good = torch.randn(2, channels, 8, 8)
    nan = good.clone()
    nan[0, 0, 0, 0] = float("nan")
    return {
        "empty SIGMAS": (good, torch.tensor([]), "at least two levels"),
        "one sigma": (good, torch.tensor([1.0]), "at least two levels"),
        "ascending SIGMAS": (good, torch.tensor([0.0, 0.5, 1.0]), "strictly descending"),
        "NaN in SIGMAS": (good, torch.tensor([1.0, float("nan"), 0.0]), "finite"),
        "NaN latents": (nan, None, "NaN or infinite"),
        "wrong channel count": (torch.randn(2, channels + 1, 8, 8), None, "channels"),
        "1x1 latent": (torch.randn(2, channels, 1, 1), None, "at least 2x2"),
        "not a batch": (torch.randn(channels, 8, 8), None, "a batch"),
    }


@pytest.mark.parametrize("case", list(cases(16)))
def test_bad_calibration_input_is_refused_before_any_network_call(
    pack, calibrate_node, tiny_sd3, case
):
    patcher = tiny_sd3.patcher
    latents, sigmas, message = cases(patcher.model.latent_format.latent_channels)[case]
    calls = forward_calls(patcher)
    with pytest.raises(pack.noisecal.errors.CalibrationError, match=message):
        run(calibrate_node, patcher, latents, sigmas)
    assert calls == []


def test_good_input_still_calibrates(calibrate_node, tiny_sd3):
    patcher = tiny_sd3.patcher
    calls = forward_calls(patcher)
    latents = torch.randn(2, patcher.model.latent_format.latent_channels, 8, 8)
    records, path, _ = run(calibrate_node, patcher, latents, steps=2)["result"]
    assert calls and path and len(records[0]["sigmas"]) == 2  # one level per step


# every widget's range and type, checked in the node's function itself (headless callers)
WIDGETS = dict(
    steps=4,
    scheduler="simple",
    search_mode="fast",
    sample_count=8,
    seed=0,
    width=64,
    height=64,
    label="",
    max_batch=8,
)
HEADLESS = [
    ("steps", 0, "steps must be at least 2"),  # was a ZeroDivisionError
    ("max_batch", 0, "max_batch must be at least 1"),
    ("seed", 2**64, "seed must be at most"),
    ("sample_count", -1, "sample_count must be at least 1"),  # silently used 7 latents
    ("steps", 2.5, "steps must be a whole number"),
    ("label", 5, "label must be text"),
    ("generation_cfg", math.nan, "generation_cfg must be a finite number"),
]


def call(node, model, **inputs):
    """The node's function with small-run widgets, any of them overridden."""
    return node.calibrate(model, **{**WIDGETS, **inputs})


@pytest.mark.parametrize("name, value, message", HEADLESS, ids=[f"{n}={v}" for n, v, _ in HEADLESS])
def test_headless_widget_values_are_refused_naming_the_input(
    pack, calibrate_node, tiny_sd3, name, value, message
):
    calls = forward_calls(tiny_sd3.patcher)
    latents = torch.randn(2, 16, 8, 8)
    with pytest.raises(pack.noisecal.errors.InvalidInput, match=f"^{message}"):
        call(calibrate_node, tiny_sd3.patcher, latent={"samples": latents}, **{name: value})
    assert calls == []


def test_every_widget_range_and_choice_is_checked_in_the_function(
    pack, pack_module, calibrate_node, tiny_sd3
):
    """Past each end of every number widget, and an unknown choice of every list."""
    specs = pack_module("nodes.checks").widget_specs(type(calibrate_node))
    calls = forward_calls(tiny_sd3.patcher)
    latents = {"samples": torch.randn(2, 16, 8, 8)}
    checked = []
    for name, (kind, options) in specs.items():
        if kind in ("INT", "FLOAT"):
            bad = [options["min"] - 1, options["max"] + 1]
        elif isinstance(kind, list):
            bad = ["no such choice"]
        else:
            continue
        for value in bad:
            with pytest.raises(pack.noisecal.errors.InvalidInput, match=f"^{name} must"):
                call(calibrate_node, tiny_sd3.patcher, latent=latents, **{name: value})
        checked.append(name)
    assert calls == [] and len(checked) == 18  # every widget but label (checked as text)


def test_latents_far_outside_the_latent_space_are_refused(pack, calibrate_node, tiny_sd3):
    """Scaled by 1e20 they reached the search (min() arg is an empty sequence)."""
    calls = forward_calls(tiny_sd3.patcher)
    for scale in (1e20, 1e4):
        latents = torch.randn(2, 16, 8, 8) * scale
        with pytest.raises(pack.noisecal.errors.InvalidInput, match="^latent: .* spread"):
            run(calibrate_node, tiny_sd3.patcher, latents)
    assert calls == []


def test_sigmas_above_the_models_highest_level_are_refused(pack, calibrate_node, tiny_model):
    """SIGMAS above 1 for a flow model failed inside the search."""
    model = tiny_model.patcher
    top = float(model.get_model_object("model_sampling").sigma_max)
    calls = forward_calls(model)
    latents = torch.randn(2, model.model.latent_format.latent_channels, 8, 8)
    sigmas = torch.tensor([top * 1.01, top * 0.5, 0.0])
    with pytest.raises(pack.noisecal.errors.InvalidInput, match="^sigmas: .* highest noise"):
        run(calibrate_node, model, latents, sigmas)
    assert calls == []


def test_size_multiple_is_the_vae_times_the_patch(pack_module, tiny_sd3, tiny_flux, tiny_unet):
    inputs = pack_module("noisecal_host.calibrate_inputs")
    sizes = [inputs.size_multiple(m.patcher) for m in (tiny_sd3, tiny_flux, tiny_unet)]
    assert sizes == [16, 16, 8]


SIZES = {
    "native_width": (dict(data="self-generate", native_width=72), r"^native_width \(72\) "),
    "native_height": (dict(data="self-generate", native_height=1000), r"^native_height "),
    "width (self-generate)": (dict(data="self-generate", width=40), r"^width \(40\) "),
    "height (IMAGE)": (dict(image=torch.rand(2, 72, 72, 3), height=72), r"^height \(72\) "),
    "LATENT": (dict(latent={"samples": torch.randn(2, 16, 9, 8)}), "^latent: its size 8x9"),
}


@pytest.mark.parametrize("case", list(SIZES))
def test_sizes_the_network_cannot_take_are_refused_with_what_to_set(
    pack, calibrate_node, tiny_flux, case
):
    inputs, message = SIZES[case]
    calls = forward_calls(tiny_flux.patcher)
    with pytest.raises(pack.noisecal.errors.InvalidInput, match=message) as raised:
        call(calibrate_node, tiny_flux.patcher, **inputs)
    assert calls == []
    assert "set " in str(raised.value) or "multiples of 16" in str(raised.value)


def test_a_family_noiseshift_refuses_is_refused_at_calibrate(pack, pack_module, calibrate_node):
    """Stable Cascade C calibrated and wrote a file NoiseShift then refused."""
    fam = pack_module("noisecal_host.testing.family_models")
    cascade = getattr(comfy.supported_models, "Stable_Cascade_C", None)
    if cascade is None:
        pytest.skip("no Stable Cascade on this host")
    model = fam.tiny_family(cascade).patcher
    calls = forward_calls(model)
    unsupported = pack_module("noisecal_host.family_support").UnsupportedFamily
    with pytest.raises(unsupported, match="cannot be used with StableCascade"):
        call(calibrate_node, model, width=64, height=64)  # self-generates
    assert calls == []


def simulate_free_memory(pack_module, monkeypatch, free: float) -> None:
    """ComfyUI reports `free` bytes and holds no model it could offload."""
    monkeypatch.setattr(comfy.model_management, "get_free_memory", lambda *a, **k: free)
    monkeypatch.setattr(comfy.model_management, "current_loaded_models", [])


def test_rows_that_fit_counts_rows_in_the_free_memory(pack_module, tiny_sd3, monkeypatch):
    memory = pack_module("noisecal_host.memory")
    model, shape = tiny_sd3.patcher, (32, 16, 24, 24)
    per_row = memory.row_bytes(model, shape)
    # ComfyUI's estimate grows by one row's with each row: the count is exact
    assert model.model.memory_required([3, *shape[1:]]) == pytest.approx(3 * per_row)
    simulate_free_memory(pack_module, monkeypatch, 3.5 * per_row)
    assert memory.rows_that_fit(model, shape, 8) == 3
    assert memory.rows_that_fit(model, shape, 2) == 2
    simulate_free_memory(pack_module, monkeypatch, 0.5 * per_row)
    assert memory.rows_that_fit(model, shape, 8) == 0
    no_estimate = types.SimpleNamespace(model=object(), load_device=model.load_device)
    assert memory.rows_that_fit(no_estimate, shape, 8) == 8  # a host without an estimate


@pytest.mark.parametrize(
    "inputs, names",
    [
        (dict(data="self-generate", native_width=8192, native_height=8192), "native_width"),
        (dict(latent={"samples": torch.randn(2, 16, 512, 512)}), "latent"),
    ],
    ids=["self-generation 8192x8192", "LATENT 512x512"],
)
def test_work_whose_one_row_cannot_fit_is_refused_before_any_network_call(
    pack, pack_module, calibrate_node, tiny_flux, monkeypatch, inputs, names
):
    """Such a run did one network call over huge latents that ignored Cancel for 150 s.
    (Flux: SD3's position embedding refuses these sizes before the memory check.)"""
    simulate_free_memory(pack_module, monkeypatch, 16 * 1024**3)  # a 16 GiB card
    calls = forward_calls(tiny_flux.patcher)
    with pytest.raises(pack.noisecal.errors.InvalidInput, match=f"^{names}") as raised:
        call(calibrate_node, tiny_flux.patcher, **inputs)
    assert calls == []
    text = str(raised.value)
    assert "needs about" in text and "16.0 GiB is free" in text and "latent (" in text


def test_cancel_is_honoured_between_image_batches(pack, pack_module, calibrate_node, tiny_unet):
    """Encoding connected images stops at the next batch once Cancel is pressed."""
    vae = pack_module("noisecal_host.testing.tiny_models").tiny_vae()
    encoded = []
    encode = vae.encode

    def encode_then_cancel(pixels):
        encoded.append(len(pixels))
        comfy.model_management.interrupt_current_processing(True)
        return encode(pixels)

    vae.encode = encode_then_cancel
    calls = forward_calls(tiny_unet.patcher)
    images = torch.rand(4, 32, 32, 3)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            call(calibrate_node, tiny_unet.patcher, image=images, vae=vae, max_batch=1)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert encoded == [1] and calls == []


def test_a_latent_past_the_position_embedding_is_refused(pack, calibrate_node, tiny_sd3):
    """SD3's MMDiT takes pos_embed_max_size patches per side (the tiny one: 64 x 2)."""
    calls = forward_calls(tiny_sd3.patcher)
    latent = {"samples": torch.randn(2, 16, 136, 136)}
    with pytest.raises(pack.noisecal.errors.InvalidInput, match=r"^latent: .*\(128x128, its"):
        call(calibrate_node, tiny_sd3.patcher, latent=latent)
    with pytest.raises(pack.noisecal.errors.InvalidInput, match=r"^width \(1040\) is larger"):
        call(calibrate_node, tiny_sd3.patcher, data="self-generate", width=1040, height=64)
    assert calls == []

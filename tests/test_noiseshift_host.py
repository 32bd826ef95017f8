"""NoiseShift on ComfyUI's own models and samplers (tiny SD3, Flux, UNet; testbed)."""

import json

import comfy.model_management
import comfy.model_sampling
import comfy.samplers
import pytest
import torch

from noise_calibration.noisecal import calibration_record

LATENT = 8  # latent pixels per side in these tests


@pytest.fixture
def nodes(pack):
    m = pack.NODE_CLASS_MAPPINGS
    return m["NoiseCalibrationCalibrate"](), m["NoiseCalibrationNoiseShift"]()


@pytest.fixture
def cal_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISE_CALIBRATION_DIR", str(tmp_path))
    return tmp_path


def schedule_levels(patcher, steps=12):
    ms = patcher.get_model_object("model_sampling")
    sig = comfy.samplers.calculate_sigmas(ms, "karras" if _discrete(ms) else "simple", steps)
    return [float(s) for s in sig if s > 0]


def _discrete(ms):
    return isinstance(ms, comfy.model_sampling.ModelSamplingDiscrete)


def make_record(pack_module, patcher, shift_fn, latent=(LATENT, LATENT), label=None):
    fingerprint = pack_module("noisecal_host.fingerprint")
    sigmas = schedule_levels(patcher)
    return calibration_record.make_record(
        key=fingerprint.checkpoint_key(patcher, label),
        image_size=(latent[1] * 8, latent[0] * 8),
        latent_size=latent,
        parameterization=pack_module("noisecal_host.model_info").parameterization_of(patcher),
        method="test",
        method_params={},
        sigmas=sigmas,
        sigma_hat=[shift_fn(s) for s in sigmas],
        calibration_set={"count": 1, "source": "test", "seed": 0},
    )


def capture(patcher):
    """Record what the network gets (input, level) and returns, and what apply_model
    gets and returns."""
    seen = {"t": [], "v": [], "sigma": [], "x": [], "denoised": [], "xc": []}
    net = patcher.model.diffusion_model

    def hook(module, args, kwargs, output):
        seen["xc"].append(args[0].detach().clone().float())
        seen["t"].append(args[1].detach().clone())
        seen["v"].append(output.detach().clone().float())

    handle = net.register_forward_hook(hook, with_kwargs=True)

    def wrapper(apply_model, args):
        out = apply_model(args["input"], args["timestep"], **args["c"])
        seen["sigma"].append(args["timestep"].detach().clone())
        seen["x"].append(args["input"].detach().clone())
        seen["denoised"].append(out.detach().clone())
        return out

    patched = patcher.clone()
    patched.set_model_unet_function_wrapper(wrapper)
    return patched, seen, handle


def run(pack_module, model, tiny, sigmas=None, seed=0):
    sampling = pack_module("noisecal_host.testing.sampling")
    latent = sampling.empty_latent(model, LATENT, LATENT, batch=2)
    if sigmas is not None:
        return sampling.sample_with_sigmas(
            model, latent, tiny.conditioning(2), sigmas, seed=seed, cfg=1.0
        )
    return sampling.ksample(
        model,
        latent,
        tiny.conditioning(2),
        steps=4,
        cfg=1.0,
        seed=seed,
        scheduler="karras" if _discrete(model.get_model_object("model_sampling")) else "simple",
    )


def sample_captured(pack_module, patched, tiny, entry):
    """Sample through KSampler or SamplerCustom, capturing every network call;
    checks the sampler walked its own sigmas."""
    base_ms = tiny.patcher.get_model_object("model_sampling")
    model, seen, handle = capture(patched)
    sigmas = None
    if entry == "sample_custom":
        sigmas = comfy.samplers.calculate_sigmas(base_ms, "simple", 3)
    try:
        run(pack_module, model, tiny, sigmas)
    finally:
        handle.remove()
    assert len(seen["t"]) >= 3
    if sigmas is not None:  # the sampler walked exactly the given sigmas
        walked = sorted({round(float(s[0]), 6) for s in seen["sigma"]}, reverse=True)
        assert walked == [round(float(s), 6) for s in sigmas[:-1]]
    return seen


def told_timestep(pack_module, ms, sigma, level):
    """The conditioning the network should get for `level` while the sampler is at
    `sigma`: discrete models keep ComfyUI's rounded step plus a continuous offset."""
    if _discrete(ms):
        cont = pack_module("noisecal_host.conditioning_level")._continuous_step
        return ms.timestep(sigma).float() + cont(ms, level) - cont(ms, sigma)
    return ms.timestep(level).float()


@pytest.mark.parametrize("entry", ["ksampler", "sample_custom"])
def test_network_gets_sigma_hat_while_sampler_keeps_sigma(pack_module, nodes, tiny_model, entry):
    _, noiseshift = nodes
    base_ms = tiny_model.patcher.get_model_object("model_sampling")
    factor = 0.8
    record = make_record(pack_module, tiny_model.patcher, lambda s: s * factor)
    (patched,) = noiseshift.apply(tiny_model.patcher, 1.0, "error", calibration=[record])
    seen = sample_captured(pack_module, patched, tiny_model, entry)
    shift_map = pack_module("noisecal.noiseshift").ShiftMap.from_records([record], [1.0])
    keys = ("t", "v", "sigma", "x", "denoised")
    for t, v, sigma, x, denoised in zip(*(seen[k] for k in keys), strict=True):
        sigma_hat = shift_map(sigma)
        assert not torch.allclose(sigma_hat, sigma)
        expected = told_timestep(pack_module, base_ms, sigma, sigma_hat)
        assert torch.allclose(t.float(), expected, atol=1e-4)
        # the denoised estimate is formed with the trajectory's true sigma
        s = sigma.view(-1, 1, 1, 1)
        assert torch.allclose(denoised, x - s * v, atol=1e-4, rtol=1e-4)


def test_identity_calibration_and_strength_zero_are_bit_identical(pack_module, nodes, tiny_model):
    _, noiseshift = nodes
    plain = run(pack_module, tiny_model.patcher, tiny_model)
    identity = make_record(pack_module, tiny_model.patcher, lambda s: s)
    (model,) = noiseshift.apply(tiny_model.patcher, 1.0, "error", calibration=[identity])
    assert torch.equal(run(pack_module, model, tiny_model), plain)
    shifted = make_record(pack_module, tiny_model.patcher, lambda s: s * 0.7)
    (off,) = noiseshift.apply(tiny_model.patcher, 0.0, "error", calibration=[shifted])
    assert torch.equal(run(pack_module, off, tiny_model), plain)
    (on,) = noiseshift.apply(tiny_model.patcher, 1.0, "error", calibration=[shifted])
    assert not torch.equal(run(pack_module, on, tiny_model), plain)


def sd3_shift(pack_module, model, shift):
    """What core ModelSamplingSD3 does (comfy_extras needs ComfyUI's server modules)."""
    try:
        from comfy_extras.nodes_model_advanced import ModelSamplingSD3

        return ModelSamplingSD3().patch(model, shift)[0]
    except ImportError:
        return pack_module("noisecal_host.demo_models").with_flow_shift(model, shift)


def test_earlier_shift_survives_and_other_patches_compose(pack_module, nodes, tiny_sd3):
    _, noiseshift = nodes
    shifted = sd3_shift(pack_module, tiny_sd3.patcher, 6.0)
    calls = []
    shifted.set_model_sampler_post_cfg_function(lambda args: calls.append(1) or args["denoised"])
    record = make_record(pack_module, shifted, lambda s: s * 0.9)
    (model,) = noiseshift.apply(shifted, 1.0, "error", calibration=[record])
    ms = model.get_model_object("model_sampling")
    assert isinstance(ms, comfy.model_sampling.CONST)
    assert ms.shift == pytest.approx(6.0)  # the earlier shift is kept
    assert shifted.get_model_object("model_sampling").__class__.__name__ == "ModelSamplingAdvanced"
    sig = comfy.samplers.calculate_sigmas(ms, "simple", 4)
    base = comfy.samplers.calculate_sigmas(shifted.get_model_object("model_sampling"), "simple", 4)
    assert torch.equal(sig, base)  # schedules still come from the shifted sampling
    run(pack_module, model, tiny_sd3)
    assert calls, "the other pack's post-cfg patch still runs"
    # two NoiseShift nodes chain instead of replacing each other
    (twice,) = noiseshift.apply(model, 1.0, "error", calibration=[record])
    assert len(twice.get_model_object("model_sampling").level_fns) == 2


@pytest.mark.parametrize("search_mode", ["fast", "lean"])
def test_calibration_node_writes_a_file_the_apply_node_finds(
    pack_module, nodes, cal_dir, search_mode
):
    calibrate, noiseshift = nodes
    testbed = pack_module("noisecal_host.testing.testbed_model")
    spectrum = pack_module("noisecal.testing.testbed").FieldSpectrum()
    field = pack_module("noisecal.testing.testbed").sample_field
    model = testbed.make_testbed_model(spectrum, 16, "image")
    latents = field(spectrum, 8, 8, torch.Generator().manual_seed(11))
    out = calibrate.calibrate(
        model, 6, "simple", search_mode, 8, 0, 512, 512, "", 64, latent={"samples": latents}
    )
    records, path, plot = out["result"]
    assert records[0]["method"]["name"] == f"noiseshift-{search_mode}"
    assert plot.shape[0] == 1 and plot.shape[-1] == 3 and plot.dtype == torch.float32
    saved = json.loads(open(path).read())
    assert saved == records[0] and saved["resolution"]["latent_height"] == 8
    assert str(cal_dir) in path and saved["cost"]["network_evaluations"] > 0
    assert max(abs(h - s) for s, h in zip(saved["sigmas"], saved["sigma_hat"], strict=True)) > 0.02
    (patched,) = noiseshift.apply(model, 1.0, "error")  # finds the file by key + size
    sampling = pack_module("noisecal_host.testing.sampling")
    lat = sampling.empty_latent(model, 8, 8, 2)
    cond = testbed.make_testbed_conditioning(2)
    assert not torch.equal(
        sampling.ksample(patched, lat, cond, steps=4), sampling.ksample(model, lat, cond, steps=4)
    )


def test_missing_calibration_errors_or_passes_through(
    pack_module, nodes, tiny_sd3, cal_dir, caplog
):
    _, noiseshift = nodes
    errors = pack_module("noisecal.errors")
    key = pack_module("noisecal_host.fingerprint").checkpoint_key(tiny_sd3.patcher)
    # no calibration at any resolution: refused by the node itself, before sampling
    with pytest.raises(errors.CalibrationNotFound) as info:
        noiseshift.apply(tiny_sd3.patcher, 1.0, "error")
    message = str(info.value)
    assert message.startswith("NoiseShift node: ") and "Calibrate" in message
    assert key.fingerprint[:16] in message and "SD3" in message
    # a calibration for another size: the missing size is known only when sampling
    other = make_record(pack_module, tiny_sd3.patcher, lambda s: s * 0.8, latent=(4, 4))
    pack_module("noisecal_host.store").save(other, cal_dir)
    (model,) = noiseshift.apply(tiny_sd3.patcher, 1.0, "error")
    with pytest.raises(errors.CalibrationNotFound) as info:
        run(pack_module, model, tiny_sd3)
    message = str(info.value)
    assert message.startswith("NoiseShift node: ") and "calibrated latent sizes: 4x4" in message
    assert f"latent {LATENT}x{LATENT}" in message and "Calibrate" in message
    (passing,) = noiseshift.apply(tiny_sd3.patcher, 1.0, "pass through")
    with caplog.at_level("WARNING"):
        out = run(pack_module, passing, tiny_sd3)
    assert torch.equal(out, run(pack_module, tiny_sd3.patcher, tiny_sd3))
    pass_through = pack_module("noisecal_host.user_messages").PASS_THROUGH
    assert any(
        getattr(r, "message_id", None) == pass_through and key.fingerprint[:16] in r.message
        for r in caplog.records
    )


def test_inline_calibration_and_bad_inline_text(pack_module, nodes, tiny_sd3):
    _, noiseshift = nodes
    record = make_record(pack_module, tiny_sd3.patcher, lambda s: s * 0.8)
    (inline,) = noiseshift.apply(
        tiny_sd3.patcher, 1.0, "error", inline_calibration=json.dumps([record])
    )
    (connected,) = noiseshift.apply(tiny_sd3.patcher, 1.0, "error", calibration=[record])
    assert torch.equal(run(pack_module, inline, tiny_sd3), run(pack_module, connected, tiny_sd3))
    errors = pack_module("noisecal.errors")
    with pytest.raises(errors.CalibrationError, match="inline_calibration: not valid JSON"):
        noiseshift.apply(tiny_sd3.patcher, 1.0, "error", inline_calibration='{"schema_')


def test_cancel_mid_calibration_leaves_earlier_file_intact(pack_module, nodes, cal_dir):
    calibrate, _ = nodes
    testbed = pack_module("noisecal_host.testing.testbed_model")
    tb = pack_module("noisecal.testing.testbed")
    spectrum = tb.FieldSpectrum()
    model = testbed.make_testbed_model(spectrum, 16)
    latents = {"samples": tb.sample_field(spectrum, 8, 4, torch.Generator().manual_seed(5))}
    _, path, _ = calibrate.calibrate(
        model, 4, "simple", "fast", 4, 0, 64, 64, "", 16, latent=latents
    )["result"]
    before = open(path, "rb").read()
    progress = pack_module("noisecal_host.calibrate")
    original = progress.comfy_progress

    def cancelling(total, also=None):
        def cancel_after_two(done, total_steps):
            if done > 0:  # after the first step
                comfy.model_management.interrupt_current_processing(True)

        return original(total, cancel_after_two)

    progress.comfy_progress = cancelling
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            calibrate.calibrate(model, 12, "simple", "grid", 4, 1, 64, 64, "", 16, latent=latents)
    finally:
        progress.comfy_progress = original
        comfy.model_management.interrupt_current_processing(False)
    assert open(path, "rb").read() == before
    assert sorted(p.name for p in cal_dir.iterdir()) == [path.rsplit("/", 1)[-1]]


def test_unsupported_model_type_is_a_clear_error(pack_module, nodes, tiny_sd3):
    _, noiseshift = nodes

    class Odd(torch.nn.Module):  # a model_sampling of no known parameterization
        sigma_max = torch.tensor(1.0)

    model = tiny_sd3.patcher.clone()
    model.add_object_patch("model_sampling", Odd())
    errors = pack_module("noisecal.errors")
    with pytest.raises(errors.CalibrationError, match="Odd is not supported"):
        noiseshift.apply(model, 1.0, "error")


def test_warnings_a_user_must_see_are_shown_on_the_node(
    pack, pack_module, nodes, tiny_sd3, cal_dir
):
    """ComfyUI calls `run`: its ui text carries the warnings `apply` only logs."""
    _, noiseshift = nodes
    out = noiseshift.run(model=tiny_sd3.patcher, strength=1.0, if_missing="pass through", label="")
    assert "NoiseShift passes through" in out["ui"]["text"][0]
    other = pack_module("noisecal_host.testing.tiny_models").tiny_sd3(seed=1).patcher
    record = make_record(pack_module, other, lambda s: s * 0.8)
    out = noiseshift.run(
        model=tiny_sd3.patcher, strength=1.0, if_missing="error", label="", calibration=[record]
    )
    assert "was made for" in out["ui"]["text"][0]
    nlc = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseLevelCorrection"]()
    record = make_record(pack_module, tiny_sd3.patcher, lambda s: s * 0.8)
    record["correction"] = {
        "method": "test",
        "sigmas": record["sigmas"],
        "r": [0.0] * len(record["sigmas"]),
    }
    (shifted,) = noiseshift.apply(tiny_sd3.patcher, 1.0, "error", calibration=[record])
    out = nlc.run(
        model=shifted,
        strength=1.0,
        sigma_min=0.0,
        sigma_max=1000.0,
        if_missing="error",
        label="",
        calibration=[record],
    )
    assert out["ui"]["text"][0] == pack_module("noisecal_host.installer").PAIR_WARNING
    clean = noiseshift.run(
        model=tiny_sd3.patcher, strength=1.0, if_missing="error", label="", calibration=[record]
    )
    assert clean["ui"]["text"] == []


def test_lean_calibration_warm_starts_from_another_resolution(pack_module, tmp_path):
    """With warm_start the lean search starts from the checkpoint's calibration at
    the nearest other resolution in the store, and the record names it; where that
    curve is right (here: this resolution's own curve, filed under another size)
    it spends fewer evaluations for the same error."""
    calibrate = pack_module("noisecal_host.calibrate")
    calibration_run = pack_module("noisecal_host.calibration_run")
    store = pack_module("noisecal_host.store")
    testbed = pack_module("noisecal_host.testing.testbed_model")
    bed = pack_module("noisecal.testing.testbed")
    spectrum = bed.FieldSpectrum()
    model = testbed.make_testbed_model(spectrum, 16, "image")
    latents = bed.sample_field(spectrum, 8, 16, torch.Generator().manual_seed(11))
    sigmas = calibration_run.schedule_sigmas(model, "simple", 12)
    files = store.CalibrationStore([tmp_path], tmp_path)

    def run(warm_start, into=files):
        record, _ = calibrate.calibrate(
            model,
            latents,
            sigmas,
            image_size=(64, 64),
            source="test",
            mode="lean",
            calibration_store=into,
            warm_start=warm_start,
        )
        return record

    cold = run(True)  # nothing at another size yet
    assert cold["method"]["params"]["warm_start"] is None
    other = json.loads(json.dumps(cold))
    other["resolution"].update(latent_height=6, latent_width=6, image_height=48, image_width=48)
    files.save(other)
    warm = run(True)
    started = warm["method"]["params"]["warm_start"]
    assert started["latent_height"] == 6 and started["latent_width"] == 6
    assert started["method"] == "noiseshift-lean" and started["file"].endswith("__6x6.json")
    assert warm["cost"]["network_evaluations"] < cold["cost"]["network_evaluations"]
    assert sum(warm["metrics"]["error_after"]) <= 1.01 * sum(cold["metrics"]["error_after"])
    calibration_record.validate(warm)
    # off by default: the same search as cold
    plain = run(False)
    assert plain["method"]["params"]["warm_start"] is None
    assert plain["sigma_hat"] == cold["sigma_hat"]
    # a file that does not load is skipped, not an error
    next(tmp_path.glob("*__6x6.json")).write_text("{not json")
    assert run(True)["method"]["params"]["warm_start"] is None

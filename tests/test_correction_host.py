"""Noise Level Correction on ComfyUI's own models and samplers (tiny SD3, Flux, UNet; testbed)."""

import json

import comfy.model_management
import comfy.samplers
import pytest
import torch
from test_noiseshift_host import (
    LATENT,
    capture,
    make_record,
    run,
    sample_captured,
    schedule_levels,
    told_timestep,
)


@pytest.fixture
def nodes(pack):
    m = pack.NODE_CLASS_MAPPINGS
    return (
        m["NoiseCalibrationCalibrate"](),
        m["NoiseCalibrationNoiseLevelCorrection"](),
        m["NoiseCalibrationNoiseShift"](),
        m["NoiseCalibrationNoiseAwarenessGuidance"](),
    )


@pytest.fixture
def cal_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NOISE_CALIBRATION_DIR", str(tmp_path))
    return tmp_path


def with_table(pack_module, patcher, r_fn, shift_fn=lambda s: s):
    """A calibration record whose correction table holds r_fn(sigma)."""
    record = make_record(pack_module, patcher, shift_fn)
    sigmas = schedule_levels(patcher)
    record["correction"] = {"method": "test", "sigmas": sigmas, "r": [r_fn(s) for s in sigmas]}
    return pack_module("noisecal.calibration_record").validate(record)


def apply(nlc, model, record, strength=1.0, sigma_range=(0.0, 1000.0), if_missing="error"):
    return nlc.apply(model, strength, *sigma_range, if_missing, calibration=[record])[0]


@pytest.mark.parametrize("entry", ["ksampler", "sample_custom"])
def test_network_and_denoised_use_sigma_hat_while_sampler_keeps_sigma(
    pack_module, nodes, tiny_model, entry
):
    nlc = nodes[1]
    base_ms = tiny_model.patcher.get_model_object("model_sampling")
    record = with_table(pack_module, tiny_model.patcher, lambda s: -0.2 if s > 0.5 else 0.1)
    seen = sample_captured(pack_module, apply(nlc, tiny_model.patcher, record), tiny_model, entry)
    table = pack_module("noisecal.correction").CorrectionTable.from_json(record["correction"])
    keys = ("xc", "t", "v", "sigma", "x", "denoised")
    for xc, t, v, sigma, x, denoised in zip(*(seen[k] for k in keys), strict=True):
        hat = (sigma.double() * (1 + table(sigma))).float()
        assert not torch.allclose(hat, sigma)
        assert torch.allclose(t.float(), told_timestep(pack_module, base_ms, sigma, hat), atol=1e-4)
        # input scaling and the denoised estimate use sigma_hat too
        assert torch.allclose(xc, base_ms.calculate_input(hat, x).float(), atol=1e-5)
        expected = base_ms.calculate_denoised(hat, v, x)
        assert torch.allclose(denoised, expected, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(denoised, base_ms.calculate_denoised(sigma, v, x), atol=1e-4)


def test_strength_zero_and_a_zero_table_are_bit_identical(pack_module, nodes, tiny_model):
    nlc = nodes[1]
    plain = run(pack_module, tiny_model.patcher, tiny_model)
    zero = with_table(pack_module, tiny_model.patcher, lambda s: 0.0)
    assert torch.equal(run(pack_module, apply(nlc, tiny_model.patcher, zero), tiny_model), plain)
    table = with_table(pack_module, tiny_model.patcher, lambda s: -0.15)
    off = apply(nlc, tiny_model.patcher, table, strength=0.0)
    assert off is tiny_model.patcher
    assert torch.equal(run(pack_module, off, tiny_model), plain)
    on = apply(nlc, tiny_model.patcher, table)
    assert not torch.equal(run(pack_module, on, tiny_model), plain)
    # outside the sigma range nothing changes
    outside = apply(nlc, tiny_model.patcher, table, sigma_range=(500.0, 600.0))
    assert torch.equal(run(pack_module, outside, tiny_model), plain)


def test_schedules_of_a_patched_model_stay_plain(pack_module, nodes, tiny_sd3):
    _, nlc, noiseshift, _ = nodes
    record = with_table(pack_module, tiny_sd3.patcher, lambda s: -0.3, lambda s: 0.7 * s)
    (shifted,) = noiseshift.apply(tiny_sd3.patcher, 1.0, "error", calibration=[record])
    model = apply(nlc, shifted, record)
    base = tiny_sd3.patcher.get_model_object("model_sampling")
    ms = model.get_model_object("model_sampling")
    run(pack_module, model, tiny_sd3)  # leaves the last call's latent size behind
    for scheduler in ("normal", "simple", "sgm_uniform"):
        assert torch.equal(
            comfy.samplers.calculate_sigmas(ms, scheduler, 6),
            comfy.samplers.calculate_sigmas(base, scheduler, 6),
        )


def test_composes_with_noiseshift_in_either_order(pack_module, nodes, tiny_sd3, caplog):
    _, nlc, noiseshift, _ = nodes
    base_ms = tiny_sd3.patcher.get_model_object("model_sampling")
    record = with_table(pack_module, tiny_sd3.patcher, lambda s: -0.25, lambda s: 0.8 * s)
    (shift_first,) = noiseshift.apply(tiny_sd3.patcher, 1.0, "error", calibration=[record])
    shift_first = apply(nlc, shift_first, record)
    with caplog.at_level("WARNING"):
        (nlc_first,) = noiseshift.apply(
            apply(nlc, tiny_sd3.patcher, record), 1.0, "error", calibration=[record]
        )
    pair = pack_module("noisecal_host.user_messages").PAIR
    assert [getattr(r, "message_id", None) for r in caplog.records].count(pair) == 2
    model, seen, handle = capture(shift_first)
    try:
        out = run(pack_module, model, tiny_sd3)
    finally:
        handle.remove()
    assert torch.equal(out, run(pack_module, nlc_first, tiny_sd3))
    shift_map = pack_module("noisecal.noiseshift").ShiftMap.from_records([record], [1.0])
    for t, v, sigma, x, denoised in zip(
        seen["t"], seen["v"], seen["sigma"], seen["x"], seen["denoised"], strict=True
    ):
        hat = sigma * 0.75
        # NoiseShift shifts the conditioning of the corrected level ...
        assert torch.allclose(t.float(), base_ms.timestep(shift_map(hat)).float(), atol=1e-3)
        # ... and the denoised estimate uses the corrected level
        assert torch.allclose(denoised, x - hat.view(-1, 1, 1, 1) * v, atol=1e-4, rtol=1e-4)


def test_composes_with_the_guidance_node(pack_module, nodes, tiny_flux):
    _, nlc, _, guidance = nodes
    record = with_table(pack_module, tiny_flux.patcher, lambda s: -0.2)
    corrected = apply(nlc, tiny_flux.patcher, record)

    def guide(model, weight):
        (out,) = guidance.apply(model, weight, "offset", 1.0, 0.5, "constant", 1.0, 0.0)
        return out

    only_nlc = run(pack_module, corrected, tiny_flux)
    assert torch.equal(run(pack_module, guide(corrected, 0.0), tiny_flux), only_nlc)
    both = run(pack_module, guide(corrected, 0.8), tiny_flux)
    assert torch.equal(
        run(pack_module, apply(nlc, guide(tiny_flux.patcher, 0.8), record), tiny_flux), both
    )
    assert not torch.equal(both, only_nlc)
    assert not torch.equal(both, run(pack_module, guide(tiny_flux.patcher, 0.8), tiny_flux))
    # the guidance branch is evaluated at the corrected level too
    model, seen, handle = capture(guide(corrected, 0.8))
    try:
        run(pack_module, model, tiny_flux)
    finally:
        handle.remove()
    # every row: the guidance rows ride in the step's call where the host chains wrappers
    told = {float(v) for t in seen["t"] for v in t.reshape(-1)}
    assert len(told) > len({float(s[0]) for s in seen["sigma"]})  # guidance rows ran
    for v, sigma, x, denoised in zip(
        seen["v"], seen["sigma"], seen["x"], seen["denoised"], strict=True
    ):
        hat = 0.8 * sigma.view(-1, 1, 1, 1)
        assert torch.allclose(denoised, x - hat * v, atol=1e-4, rtol=1e-4)


def test_missing_table_errors_or_passes_through(pack_module, nodes, tiny_sd3, cal_dir, caplog):
    nlc = nodes[1]
    errors = pack_module("noisecal.errors")
    no_table = make_record(pack_module, tiny_sd3.patcher, lambda s: s)
    with pytest.raises(errors.CalibrationNotFound, match="has no correction table.*correction"):
        run(pack_module, apply(nlc, tiny_sd3.patcher, no_table), tiny_sd3)
    # no table at any resolution: refused by the node itself, before sampling
    with pytest.raises(
        errors.CalibrationNotFound, match="^Noise Level Correction node: .*Calibrate"
    ):
        nlc.apply(tiny_sd3.patcher, 1.0, 0.0, 1000.0, "error")
    passing = apply(nlc, tiny_sd3.patcher, no_table, if_missing="pass through")
    with caplog.at_level("WARNING"):
        out = run(pack_module, passing, tiny_sd3)
    assert torch.equal(out, run(pack_module, tiny_sd3.patcher, tiny_sd3))
    assert any(
        getattr(r, "message_id", None) == pack_module("noisecal_host.user_messages").PASS_THROUGH
        and r.message.startswith("Noise Level Correction")
        for r in caplog.records
    )
    with pytest.raises(ValueError, match="sigma_min"):
        nlc.apply(tiny_sd3.patcher, 1.0, 0.8, 0.2, "error", calibration=[no_table])


def test_calibrated_table_round_trips_through_the_file(pack_module, nodes, cal_dir):
    calibrate, nlc, _, _ = nodes
    testbed = pack_module("noisecal_host.testing.testbed_model")
    tb = pack_module("noisecal.testing.testbed")
    spectrum = tb.FieldSpectrum()
    model = testbed.make_testbed_model(spectrum, 16, "image")
    latents = {"samples": tb.sample_field(spectrum, 8, 8, torch.Generator().manual_seed(11))}
    widgets = (model, 6, "simple", "fast", 8, 0, 512, 512, "", 64)
    # check off: the table is calibrated alone, for this node (the check's is joint)
    records, path, _ = calibrate.calibrate(
        *widgets, latent=latents, correction="euler", check="off"
    )["result"]
    saved = pack_module("noisecal_host.store").load(path)
    assert saved == json.loads(json.dumps(records[0]))
    table = saved["correction"]
    assert table["sampler"] == "euler" and len(table["r"]) == 6 == len(table["sigmas"])
    assert max(table["r"]) > 0.05  # the "image" model below M needs a higher level
    assert saved["cost"]["network_evaluations"] >= table["network_evaluations"] > 0
    (patched,) = nlc.apply(model, 1.0, 0.0, 1000.0, "error")  # finds the file by key + size
    sampling = pack_module("noisecal_host.testing.sampling")
    lat = sampling.empty_latent(model, 8, 8, 2)
    cond = testbed.make_testbed_conditioning(2)
    plain = sampling.ksample(model, lat, cond, steps=6, sampler_name="euler")
    assert not torch.equal(
        sampling.ksample(patched, lat, cond, steps=6, sampler_name="euler"), plain
    )
    # without the option the file carries no table
    records, _, _ = calibrate.calibrate(*widgets, latent=latents, mode="recalibrate")["result"]
    assert records[0]["correction"] is None


def test_eps_models_calibrate_a_table_too(pack_module, tiny_unet):
    # SD1/SDXL: states are x0 + sigma * noise, sigma up to ~14.6; the table must
    # stay within the model's range and load back as a valid file field
    calibrate = pack_module("noisecal_host.calibrate")
    ms = tiny_unet.patcher.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(ms, "karras", 3)
    latents = torch.randn(2, 4, LATENT, LATENT, generator=torch.Generator().manual_seed(3))
    _, result = calibrate.run_search(
        tiny_unet.patcher, latents, sigmas, max_batch=16, correction="euler"
    )
    assert len(result.r) == 3 and all(-0.5 <= r <= 0.5 for r in result.r)
    assert result.sigmas == pytest.approx([float(s) for s in sigmas[:-1]])
    corrected = pack_module("noisecal.correction").CorrectionMap([result.table()], [1.0])
    assert float(corrected(torch.tensor([float(ms.sigma_max)]))) <= float(ms.sigma_max) + 1e-6

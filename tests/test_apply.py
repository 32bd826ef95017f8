"""The held-out check and the Apply node, on ComfyUI's own sampler.

The testbed model (an exact denoiser trained at M = 16, sampled at N = 8)
is calibrated by the Calibrate node with the check on: the file carries
every candidate's scores and a recommendation, and Apply then gives exactly
what the recommended combination of the NoiseShift and NLC nodes gives.
"""

import copy
import logging

import pytest
import torch

from noise_calibration.noisecal import calibration_record, errors

M, N = 16, 8
COUNT = 16  # 10 calibrate, 6 held out


@pytest.fixture(scope="module")
def world(pack, pack_module, tmp_path_factory):
    tb = pack_module("noisecal.testing.testbed")
    testbed_model = pack_module("noisecal_host.testing.testbed_model")
    spectrum = tb.FieldSpectrum()
    model = testbed_model.make_testbed_model(spectrum, M, "image")
    latents = tb.sample_field(spectrum, N, COUNT, torch.Generator().manual_seed(7))
    folder = tmp_path_factory.mktemp("calibrations")
    store = pack_module("noisecal_host.folders").user_store(folder)
    nodes = {
        name: pack.NODE_CLASS_MAPPINGS[f"NoiseCalibration{name}"](calibration_store=store)
        for name in ("Calibrate", "Apply", "NoiseShift", "NoiseLevelCorrection")
    }
    out = nodes["Calibrate"].calibrate(
        model,
        4,
        "simple",
        "fast",
        COUNT,
        0,
        64,
        64,
        "",
        COUNT,
        latent={"samples": latents},
        correction="euler",
    )
    (record,), path, _ = out["result"]
    return {
        "model": model,
        "record": record,
        "path": path,
        "nodes": nodes,
        "store": store,
        "summary": out["ui"]["text"][0],
        "cond": testbed_model.make_testbed_conditioning,
    }


def sample(pack_module, world, model, seed=3):
    sampling = pack_module("noisecal_host.testing.sampling")
    latent = sampling.empty_latent(world["model"], N, N, batch=2)
    return sampling.ksample(model, latent, world["cond"](2), steps=4, seed=seed)


def with_recommendation(record, name, guidance=0.0):
    changed = copy.deepcopy(record)
    changed["check"]["recommendation"] = name
    changed["check"]["guidance"]["base"] = name
    changed["check"]["guidance"]["weight"] = guidance
    return changed


def message_ids(caplog) -> list[str]:
    """The ids of the user messages logged (noisecal_host/user_messages.py)."""
    return [r.message_id for r in caplog.records if hasattr(r, "message_id")]


def apply(world, record):
    return world["nodes"]["Apply"].apply(world["model"], 1.0, "error", calibration=[record])[0]


def test_the_check_scores_every_candidate_and_recommends_one(pack_module, world):
    record, store = world["record"], pack_module("noisecal_host.store")
    check = record["check"]
    assert store.load(world["path"]) == record and record["schema_version"] == 2
    # NoiseShift shifts at N = M/2, so one table is calibrated, with NoiseShift on
    names = {"plain", "noiseshift@1", "noiseshift+nlc@0.5", "noiseshift+nlc@1"}
    assert set(check["candidates"]) == names
    assert check["held_out"] == 6 and check["calibrated_on"] == 10
    assert check["recommendation"] in names and record["correction_joint"]["r"]
    assert record["correction"] is None
    # 4 candidates x 6 held-out latents x 4 Euler steps, then the guidance weight on the
    # recommendation: one evaluation a step and one more where the weight is not 0
    guided = check["network_evaluations"] - 4 * 6 * 4
    assert 6 * 4 < guided <= 6 * 4 * 2
    guidance = check["guidance"]
    assert guidance["base"] == check["recommendation"]
    assert set(guidance["candidates"]) == {"guidance@2"}
    assert guidance["weight"] in (0.0, 2.0)
    phases = record["cost"]["phases"]
    assert list(phases) == ["noiseshift", "correction", "check", "guidance"]
    assert (
        sum(p["network_evaluations"] for p in phases.values())
        == (record["cost"]["network_evaluations"])
    )
    assert phases["check"]["network_evaluations"] == 4 * 6 * 4
    assert record["cost"]["network_evaluations"] > check["network_evaluations"]
    assert f"Apply uses {check['recommendation']}" in world["summary"]


@pytest.mark.parametrize("name", ["noiseshift@1", "noiseshift+nlc@0.5", "noiseshift+nlc@1"])
def test_apply_gives_what_the_recommended_nodes_give(pack_module, world, name):
    record = with_recommendation(world["record"], name)
    chosen = record["check"]["candidates"][name]
    nodes = world["nodes"]
    expected = world["model"]
    if chosen["correction"]:
        table_record = {**record, "correction": record[chosen["table"]]}
        (expected,) = nodes["NoiseLevelCorrection"].apply(
            expected, chosen["correction"], 0.0, 1000.0, "error", calibration=[table_record]
        )
    if chosen["noiseshift"]:
        (expected,) = nodes["NoiseShift"].apply(
            expected, chosen["noiseshift"], "error", calibration=[record]
        )
    got = sample(pack_module, world, apply(world, record))
    assert torch.equal(got, sample(pack_module, world, expected))
    if chosen["noiseshift"]:  # (a 4-step table may keep r = 0: then NLC alone is plain)
        assert not torch.equal(got, sample(pack_module, world, world["model"]))


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_recommended_guidance_is_the_guidance_node_at_the_chosen_weight(
    pack, pack_module, world, strength
):
    record = with_recommendation(world["record"], "noiseshift@1", guidance=2.0)
    assert calibration_record.validate(record)["check"]["guidance"]["weight"] == 2.0
    nodes = world["nodes"]
    (expected,) = nodes["NoiseShift"].apply(world["model"], strength, "error", calibration=[record])
    guidance = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseAwarenessGuidance"]()
    (expected,) = guidance.apply(
        expected, 2.0 * strength, "offset", 2.0, 1.0, "per step size", 1.0, 0.0
    )
    (applied,) = nodes["Apply"].apply(world["model"], strength, "error", calibration=[record])
    got = sample(pack_module, world, applied)
    assert torch.equal(got, sample(pack_module, world, expected))
    without = apply(world, with_recommendation(world["record"], "noiseshift@1"))
    assert not torch.equal(got, sample(pack_module, world, without))


def test_a_guidance_weight_the_check_did_not_try_is_refused(pack_module, world):
    record = with_recommendation(world["record"], "plain", guidance=3.0)
    with pytest.raises(errors.CalibrationError, match="not one the check tried"):
        calibration_record.validate(record)
    record = with_recommendation(world["record"], "plain", guidance=2.0)
    record["check"]["guidance"]["base"] = "nlc@1"
    with pytest.raises(errors.CalibrationError, match="another recommendation"):
        calibration_record.validate(record)


def test_plain_is_the_unpatched_model_bit_for_bit(pack_module, world):
    plain = apply(world, with_recommendation(world["record"], "plain"))
    assert torch.equal(
        sample(pack_module, world, plain), sample(pack_module, world, world["model"])
    )


def test_a_file_without_check_applies_noiseshift(pack_module, world):
    old = {**world["record"], "schema_version": 1}
    old.pop("check"), old.pop("correction_joint")
    (noiseshift,) = world["nodes"]["NoiseShift"].apply(
        world["model"], 1.0, "error", calibration=[old]
    )
    assert torch.equal(
        sample(pack_module, world, apply(world, old)), sample(pack_module, world, noiseshift)
    )


def test_two_sizes_that_disagree_sample_plain_with_a_warning(pack_module, world, caplog):
    small = with_recommendation(world["record"], "noiseshift@1")
    large = with_recommendation(world["record"], "noiseshift+nlc@1")
    small["resolution"].update(latent_height=4, latent_width=4, image_width=32, image_height=32)
    large["resolution"].update(latent_height=16, latent_width=16, image_width=128, image_height=128)
    model = world["nodes"]["Apply"].apply(world["model"], 1.0, "error", calibration=[small, large])[
        0
    ]
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        out = sample(pack_module, world, model)
    assert torch.equal(out, sample(pack_module, world, world["model"]))
    assert message_ids(caplog) == ["sizes-disagree"]
    assert calibration_record.validate(small) and calibration_record.validate(large)


def test_no_calibration_is_refused_at_the_apply_node(pack, pack_module, world, tmp_path, caplog):
    errors = pack_module("noisecal.errors")
    empty = pack_module("noisecal_host.folders").user_store(tmp_path)
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationApply"](calibration_store=empty)
    with pytest.raises(errors.CalibrationNotFound, match="^Noise Calibration: Apply node: "):
        node.apply(world["model"], 1.0, "error")
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        shown = node.run(model=world["model"], strength=1.0, if_missing="pass through", label="")
    assert message_ids(caplog) == ["pass-through"] and shown["ui"]["text"][0]
    assert shown["result"][0] is world["model"]  # nothing to apply: nothing installed
    listed = world["nodes"]["Apply"].run(
        model=world["model"], strength=1.0, if_missing="error", label=""
    )
    assert f"latent {N}x{N}" in listed["ui"]["text"][0]


def test_a_check_that_does_not_fit_its_file_is_refused(pack_module, world):
    unknown = with_recommendation(world["record"], "magic")
    with pytest.raises(errors.CalibrationError, match="not a candidate"):
        calibration_record.validate(unknown)
    no_table = copy.deepcopy(world["record"])
    no_table["correction_joint"] = None
    with pytest.raises(errors.CalibrationError, match="correction_joint"):
        calibration_record.validate(no_table)


def test_recommendation_needs_a_gain_beyond_the_noise(pack_module):
    check = pack_module("noisecal.held_out_check")
    results = {
        "plain": {"score": 1.0, "gain": 0.0, "gain_noise": 0.0},
        "a": {"score": 0.9, "gain": 0.1, "gain_noise": 0.2},  # within its noise
        "b": {"score": 0.95, "gain": 0.05, "gain_noise": 0.01},  # clears it
    }
    assert check.recommend(results) == "b"
    results["b"]["gain_noise"] = 0.05
    assert check.recommend(results) == "plain"


def test_guidance_is_chosen_against_the_recommendation_not_plain(pack_module):
    check = pack_module("noisecal.held_out_check")
    results = {
        "nlc@1": {"score": 0.5, "gain": 0.0, "gain_noise": 0.0},
        "guidance@1": {"score": 0.45, "gain": 0.05, "gain_noise": 0.01},
        "guidance@2": {"score": 0.3, "gain": 0.2, "gain_noise": 0.15},  # within its noise
    }
    assert check.recommend(results, baseline="nlc@1") == "guidance@1"
    results["guidance@1"]["gain_noise"] = 0.03
    assert check.recommend(results, baseline="nlc@1") == "nlc@1"


def test_the_score_prefers_data_like_the_held_out_set(pack_module):
    check = pack_module("noisecal.held_out_check")
    tb = pack_module("noisecal.testing.testbed")
    spectrum = tb.FieldSpectrum()
    held = tb.sample_field(spectrum, 8, 16, torch.Generator().manual_seed(1))
    like = tb.sample_field(spectrum, 8, 16, torch.Generator().manual_seed(2))
    results = check.score({"plain": like * 1.5, "like": like}, held)
    assert results["like"]["score"] < results["plain"]["score"]
    assert check.recommend(results) == "like"
    assert check.split(32) == (20, 12) and check.split(7) == (7, 0)
    assert check.split(16) == (10, 6) and check.split(8) == (4, 4)


def test_a_closer_spectrum_with_worse_edges_is_vetoed(pack_module):
    check = pack_module("noisecal.held_out_check")
    gen = torch.Generator().manual_seed(3)
    held = torch.randn(32, 4, 16, 16, generator=gen)
    plain = 1.1 * torch.randn(32, 4, 16, 16, generator=gen)
    # white like the held-out set (the same flat spectrum), but heavy-tailed
    # differences: a scale mixture of Gaussians with unit variance
    scale = torch.where(torch.rand(32, 4, 16, 16, generator=gen) < 0.1, 3.0, 0.36)
    spiky = torch.randn(32, 4, 16, 16, generator=gen) * scale / scale.square().mean().sqrt()
    results = check.score({"plain": plain, "spiky": spiky}, held)
    spiky_result = results["spiky"]
    assert spiky_result["gain"] > check.Z_GAIN * spiky_result["gain_noise"]  # spectrum: better
    assert check.vetoed(spiky_result) and not check.vetoed(results["plain"])
    assert check.recommend(results) == "plain"
    # the same spectrum with Gaussian differences passes
    fair = torch.randn(32, 4, 16, 16, generator=gen)
    results = check.score({"plain": plain, "fair": fair}, held)
    assert not check.vetoed(results["fair"]) and check.recommend(results) == "fair"


def test_apply_with_a_single_method_node_is_one_visible_warning(pack_module, world, caplog):
    record = world["record"]
    nodes = world["nodes"]
    (shifted,) = nodes["NoiseShift"].apply(world["model"], 1.0, "error", calibration=[record])
    applied = apply(world, with_recommendation(record, "noiseshift@1"))
    for model, node in ((shifted, "Apply"), (applied, "NoiseShift")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, "noise_calibration"):
            out = nodes[node].run(
                model=model, strength=1.0, if_missing="error", label="", calibration=[record]
            )
        assert message_ids(caplog) == ["apply-with-single-method"], node
        assert out["ui"]["text"][0]  # shown on the node too


def test_apply_with_a_guidance_node_is_one_visible_warning(pack, world, caplog):
    record, nodes = world["record"], world["nodes"]
    applied = apply(world, with_recommendation(record, "noiseshift@1", guidance=2.0))
    guidance = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseAwarenessGuidance"]()
    settings = dict(
        weight=1.0,
        mode="offset",
        offset=2.0,
        pseudo_level=1.0,
        weight_schedule="per step size",
        level_start=1.0,
        level_end=0.0,
    )
    (guided,) = guidance.run(model=world["model"], **settings)["result"]
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        nodes["Apply"].run(
            model=guided, strength=1.0, if_missing="error", label="", calibration=[record]
        )
        guidance.run(model=applied, **settings)
        assert message_ids(caplog) == ["apply-with-single-method"] * 2
        # a second Apply's own guidance is not a guidance node's
        nodes["Apply"].run(
            model=applied, strength=1.0, if_missing="error", label="", calibration=[record]
        )
    assert message_ids(caplog) == ["apply-with-single-method"] * 2


def test_strength_scales_the_recommendation(pack_module, world):
    record = with_recommendation(world["record"], "noiseshift@1")
    node = world["nodes"]["Apply"]
    (half,) = node.apply(world["model"], 0.5, "error", calibration=[record])
    (expected,) = world["nodes"]["NoiseShift"].apply(
        world["model"], 0.5, "error", calibration=[record]
    )
    assert torch.equal(sample(pack_module, world, half), sample(pack_module, world, expected))
    (off,) = node.apply(world["model"], 0.0, "error", calibration=[record])
    assert off is world["model"]


def _check_section(names_to_strengths, recommendation):
    return {
        "method": "test",
        "held_out": 4,
        "candidates": {
            name: {
                "noiseshift": ns,
                "correction": c,
                "table": table,
                "score": 0.0,
                "gain": 0.0,
                "gain_noise": 0.0,
            }
            for name, (ns, c, table) in names_to_strengths.items()
        },
        "recommendation": recommendation,
    }


@pytest.mark.parametrize("name", ["plain", "noiseshift@1", "noiseshift+nlc@1"])
def test_apply_on_tiny_models_is_the_recorded_combination(pack, pack_module, tiny_model, name):
    """What the embedder gets and what the denoiser is evaluated at, captured per call."""
    from test_correction_host import with_table
    from test_noiseshift_host import capture, run

    patcher = tiny_model.patcher
    record = with_table(pack_module, patcher, lambda s: -0.1, lambda s: 0.8 * s)
    record["correction_joint"] = {
        **record["correction"],
        "r": [0.05] * len(record["correction"]["r"]),
    }
    record["check"] = _check_section(
        {
            "plain": (0, 0, None),
            "noiseshift@1": (1, 0, None),
            "noiseshift+nlc@1": (1, 1, "correction_joint"),
        },
        name,
    )
    record = pack_module("noisecal.calibration_record").validate(record)
    m = pack.NODE_CLASS_MAPPINGS
    (applied,) = m["NoiseCalibrationApply"]().apply(patcher, 1.0, "error", calibration=[record])
    expected = patcher
    if name == "noiseshift+nlc@1":
        joint = {**record, "correction": record["correction_joint"]}
        (expected,) = m["NoiseCalibrationNoiseLevelCorrection"]().apply(
            expected, 1.0, 0.0, 1000.0, "error", calibration=[joint]
        )
    if name != "plain":
        (expected,) = m["NoiseCalibrationNoiseShift"]().apply(
            expected, 1.0, "error", calibration=[record]
        )
    seen = []
    for model in (applied, expected):
        captured, calls, handle = capture(model)
        try:
            out = run(pack_module, captured, tiny_model)
        finally:
            handle.remove()
        seen.append((out, calls))
    (got, got_calls), (want, want_calls) = seen
    assert torch.equal(got, want)
    for key in ("t", "xc", "denoised"):
        assert all(torch.equal(a, b) for a, b in zip(got_calls[key], want_calls[key], strict=True))
    if name == "plain":
        assert torch.equal(got, run(pack_module, patcher, tiny_model))


def test_the_guidance_node_reads_the_calibrated_weight(pack, pack_module, world, tmp_path, caplog):
    store = pack_module("noisecal_host.folders").user_store(tmp_path)
    store.save(with_recommendation(world["record"], "plain", guidance=2.0))
    cls = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseAwarenessGuidance"]
    manual = dict(mode="offset", offset=2.0, pseudo_level=1.0, weight_schedule="per step size")
    manual.update(level_start=1.0, level_end=0.0)
    for scale in (1.0, 0.5):
        (calibrated,) = cls(calibration_store=store).apply(
            world["model"],
            scale,
            "offset",
            0.3,
            1.0,
            "constant",
            1.0,
            0.0,
            weight_source="calibrated",
        )
        (expected,) = cls().apply(world["model"], 2.0 * scale, **manual)
        got = sample(pack_module, world, calibrated)
        assert torch.equal(got, sample(pack_module, world, expected))
    assert not torch.equal(got, sample(pack_module, world, world["model"]))
    empty = pack_module("noisecal_host.folders").user_store(tmp_path / "empty")
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        out = cls(calibration_store=empty).run(
            model=world["model"], weight=1.0, weight_source="calibrated", **manual
        )
    assert out["result"][0] is world["model"] and out["ui"]["text"][0]
    assert message_ids(caplog) == ["no-calibrated-guidance"]


def test_the_check_sampling_the_joint_pair_raises_no_pair_warning(pack_module, world, caplog):
    run = pack_module("noisecal_host.held_out_run")
    check = pack_module("noisecal.held_out_check")
    joint = next(
        c for c in check.candidates(table="correction_joint") if c.name == "noiseshift+nlc@1"
    )
    with caplog.at_level("WARNING", logger="noise_calibration"):
        run._patched(world["model"], world["record"], joint)
    assert "noiseshift-with-correction" not in message_ids(caplog)


def test_only_a_calibrated_guidance_weight_reruns_when_calibrations_change(pack):
    cls = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationNoiseAwarenessGuidance"]
    assert cls.IS_CHANGED(weight_source="manual") == ""
    assert cls.IS_CHANGED(weight_source="calibrated") == (
        pack.NODE_CLASS_MAPPINGS["NoiseCalibrationApply"].IS_CHANGED()
    )

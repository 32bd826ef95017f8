"""A ModelSampling node placed after a level patch is detected at sampling time.

Before detection, the output of such a graph was bit-identical to the
unpatched model's, with no message. On ComfyUI's own tiny SD3 model, with
ComfyUI's ModelSamplingSD3 node (or what it does, where comfy_extras cannot
be imported) after NoiseShift, Noise Level Correction and guidance.
"""

import copy
import logging

import pytest
import torch
from test_correction_host import with_table
from test_noiseshift_host import make_record, run, sd3_shift


@pytest.fixture
def nodes(pack):
    m = pack.NODE_CLASS_MAPPINGS
    return (
        m["NoiseCalibrationNoiseShift"](),
        m["NoiseCalibrationNoiseLevelCorrection"](),
        m["NoiseCalibrationNoiseAwarenessGuidance"](),
    )


def noiseshift(node, model, record, if_missing="error"):
    return node.apply(model, 1.0, if_missing, calibration=[record])[0]


def correction(node, model, record, if_missing="error"):
    return node.apply(model, 1.0, 0.0, 1000.0, if_missing, calibration=[record])[0]


def warnings(caplog):
    return [r for r in caplog.records if getattr(r, "message_id", None) == "patch-dropped"]


def test_model_sampling_after_noiseshift_is_an_error_naming_the_node(pack_module, nodes, tiny_sd3):
    record = make_record(pack_module, tiny_sd3.patcher, lambda s: s * 0.8)
    dropped = sd3_shift(pack_module, noiseshift(nodes[0], tiny_sd3.patcher, record), 3.0)
    errors = pack_module("noisecal_host.dropped_patch")
    with pytest.raises(errors.PatchDropped) as info:
        run(pack_module, dropped, tiny_sd3)
    message = str(info.value)
    assert "Move the NoiseShift node after" in message and "ModelSamplingSD3" in message
    assert isinstance(info.value, pack_module("noisecal.errors").CalibrationError)


def test_pass_through_samples_unpatched_and_warns_once_per_run(
    pack_module, nodes, tiny_sd3, caplog
):
    record = make_record(pack_module, tiny_sd3.patcher, lambda s: s * 0.8)
    patched = noiseshift(nodes[0], tiny_sd3.patcher, record, "pass through")
    dropped = sd3_shift(pack_module, patched, 3.0)
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        out = run(pack_module, dropped, tiny_sd3)  # 4 steps
    assert len(warnings(caplog)) == 1
    assert torch.equal(
        out, run(pack_module, sd3_shift(pack_module, tiny_sd3.patcher, 3.0), tiny_sd3)
    )


def test_model_sampling_after_correction_is_detected(pack_module, nodes, tiny_sd3):
    record = with_table(pack_module, tiny_sd3.patcher, lambda s: -0.1)
    dropped = sd3_shift(pack_module, correction(nodes[1], tiny_sd3.patcher, record), 3.0)
    errors = pack_module("noisecal_host.dropped_patch")
    with pytest.raises(errors.PatchDropped, match="Move the Noise Level Correction node"):
        run(pack_module, dropped, tiny_sd3)


def test_model_sampling_after_guidance_warns(pack_module, nodes, tiny_sd3, caplog):
    guided = nodes[2].apply(tiny_sd3.patcher, 1.0, "offset", 2.0, 0.5, "constant", 1.0, 0.0)[0]
    dropped = sd3_shift(pack_module, guided, 3.0)
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        run(pack_module, dropped, tiny_sd3)
    assert len(warnings(caplog)) == 1
    assert "Move the Noise Awareness Guidance node" in warnings(caplog)[0].message


def test_right_order_chains_and_copies_raise_nothing(pack_module, nodes, tiny_sd3, caplog):
    shifted = sd3_shift(pack_module, tiny_sd3.patcher, 3.0)
    record = make_record(pack_module, shifted, lambda s: s * 0.8)
    table = with_table(pack_module, shifted, lambda s: -0.1)
    model = noiseshift(nodes[0], shifted, record)
    model = noiseshift(nodes[0], model, record)  # two NoiseShift nodes chain
    model = correction(nodes[1], model, table)
    calls = []
    model.set_model_sampler_pre_cfg_function(lambda args: calls.append(1) or args["conds_out"])
    # another pack that copies the sampling object keeps our patches on it
    copied = model.clone()
    copied.add_object_patch(
        "model_sampling", copy.deepcopy(model.get_model_object("model_sampling"))
    )
    with caplog.at_level(logging.WARNING, "noise_calibration"):
        run(pack_module, copied, tiny_sd3)
    assert not warnings(caplog)
    assert calls, "another pack's pre-CFG function still runs"

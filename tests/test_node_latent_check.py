"""Apply, NoiseShift and Noise Level Correction with a LATENT connected: a size with
no calibration fails at the node when the graph runs, not inside the sampler."""

import pytest
import torch
from test_noiseshift_host import make_record, schedule_levels

from noise_calibration.noisecal import calibration_record

CALIBRATED = (4, 4)  # latent size of the stored calibration
WIDGETS = {"strength": 1.0, "if_missing": "error", "label": ""}
NODES = {  # node id -> (its widgets, how its errors start)
    "NoiseCalibrationApply": (WIDGETS, "Noise Calibration: Apply node: "),
    "NoiseCalibrationNoiseShift": (WIDGETS, "NoiseShift node: "),
    "NoiseCalibrationNoiseLevelCorrection": (
        {**WIDGETS, "sigma_min": 0.0, "sigma_max": 1000.0},
        "Noise Level Correction node: ",
    ),
}


@pytest.fixture
def calibrated(pack_module, tiny_sd3, tmp_path, monkeypatch):
    """A calibration (with a correction table) of the tiny SD3 at 4x4 latents only."""
    monkeypatch.setenv("NOISE_CALIBRATION_DIR", str(tmp_path))
    record = make_record(pack_module, tiny_sd3.patcher, lambda s: s * 0.9, latent=CALIBRATED)
    sigmas = schedule_levels(tiny_sd3.patcher)
    record["correction"] = {"method": "test", "sigmas": sigmas, "r": [0.05 for _ in sigmas]}
    store = pack_module("noisecal_host.store")
    store.save(calibration_record.validate(record), tmp_path)
    return tiny_sd3


def latent(h, w):
    return {"samples": torch.zeros(1, 16, h, w)}


@pytest.mark.parametrize("node_id", list(NODES))
def test_a_latent_size_without_calibration_fails_at_the_node(
    pack, pack_module, calibrated, node_id
):
    node = pack.NODE_CLASS_MAPPINGS[node_id]()
    errors = pack_module("noisecal.errors")
    with pytest.raises(errors.CalibrationNotFound) as info:
        node.run(model=calibrated.patcher, **inputs(node_id), latent=latent(8, 8))
    message = str(info.value)
    assert message.startswith(NODES[node_id][1]), message
    assert "latent 8x8" in message and "calibrated latent sizes: 4x4" in message
    assert "Calibrate" in message and "connected to this node" in message
    assert "pass through" in message


@pytest.mark.parametrize("node_id", list(NODES))
def test_a_calibrated_latent_size_or_pass_through_runs(pack, pack_module, calibrated, node_id):
    node = pack.NODE_CLASS_MAPPINGS[node_id]()
    out = node.run(model=calibrated.patcher, **inputs(node_id), latent=latent(*CALIBRATED))
    assert out["result"][0] is not calibrated.patcher
    passing = {**inputs(node_id), "if_missing": "pass through"}
    node.run(model=calibrated.patcher, **passing, latent=latent(8, 8))  # sampler warns later
    node.run(model=calibrated.patcher, **inputs(node_id))  # no latent: checked when sampling


def test_the_latent_input_is_an_optional_socket_after_the_widgets(pack):
    for node_id in NODES:
        spec = pack.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()
        assert list(spec["optional"])[-1] == "latent"
        assert spec["optional"]["latent"][0] == "LATENT"


def inputs(node_id) -> dict:
    """The node's widgets by name, as ComfyUI passes them."""
    return dict(NODES[node_id][0])

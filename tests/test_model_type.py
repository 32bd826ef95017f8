"""A calibration is refused on another kind of model (class, latent format,
parameterization), whether connected, pasted, or found by label; another
checkpoint of the same kind keeps its visible warning. Real tiny models."""

import json

import pytest
from test_noiseshift_host import make_record, run


@pytest.fixture
def errors(pack):
    return pack.noisecal.errors


def node(pack, name, store=None):
    return pack.NODE_CLASS_MAPPINGS[name](calibration_store=store)


PATCH_NODES = ["NoiseCalibrationNoiseShift", "NoiseCalibrationNoiseLevelCorrection"]


def with_table(record):
    """The record with a (zero) correction table, so both patch nodes can use it."""
    record["correction"] = {"method": "test", "sigmas": record["sigmas"][:4], "r": [0.0] * 4}
    return record


def apply(pack, name, model, **inputs):
    if name == "NoiseCalibrationNoiseShift":
        return node(pack, name).apply(model, 1.0, "error", **inputs)
    return node(pack, name).apply(model, 1.0, 0.0, 1000.0, "error", **inputs)


@pytest.mark.parametrize("name", PATCH_NODES)
@pytest.mark.parametrize("how", ["calibration", "inline_calibration"])
def test_a_record_of_another_model_class_is_refused_at_the_node(
    pack, pack_module, errors, tiny_sd3, tiny_flux, name, how
):
    record = with_table(make_record(pack_module, tiny_sd3.patcher, lambda s: s))
    value = [record] if how == "calibration" else json.dumps(record)
    with pytest.raises(errors.CalibrationError, match=f"{how}: made for another kind") as info:
        apply(pack, name, tiny_flux.patcher, **{how: value})
    assert "model class SD3 (this model: Flux)" in str(info.value)


def test_a_flow_record_on_an_eps_model_is_refused(pack, pack_module, errors, tiny_unet):
    record = make_record(pack_module, tiny_unet.patcher, lambda s: s)
    record["parameterization"] = "flow"
    with pytest.raises(errors.CalibrationError, match="parameterization flow .this model: eps"):
        apply(pack, "NoiseCalibrationNoiseShift", tiny_unet.patcher, calibration=[record])


def test_a_labelled_file_of_another_model_class_is_refused_when_sampling(
    pack, pack_module, errors, tiny_sd3, tiny_flux, tmp_path
):
    store = pack.noisecal_host.store.CalibrationStore([tmp_path], tmp_path)
    store.save(make_record(pack_module, tiny_sd3.patcher, lambda s: s, label="shared"))
    patch = node(pack, "NoiseCalibrationNoiseShift", store)
    (on_sd3,) = patch.apply(tiny_sd3.patcher, 1.0, "error", label="shared")
    run(pack_module, on_sd3, tiny_sd3)  # its own model type: used
    (on_flux,) = patch.apply(tiny_flux.patcher, 1.0, "error", label="shared")
    with pytest.raises(errors.CalibrationError, match="model class SD3 .this model: Flux"):
        run(pack_module, on_flux, tiny_flux)


def test_another_checkpoint_of_the_same_class_is_used_with_a_warning(
    pack, pack_module, tiny_sd3, caplog
):
    from noise_calibration.noisecal_host.testing.tiny_models import tiny_sd3 as build

    other = build(seed=1)  # same class, other weights: another fingerprint
    record = make_record(pack_module, other.patcher, lambda s: s * 0.9)
    with caplog.at_level("WARNING"):
        (patched,) = apply(
            pack, "NoiseCalibrationNoiseShift", tiny_sd3.patcher, calibration=[record]
        )
    messages = pack_module("noisecal_host.user_messages")
    assert messages.OTHER_CHECKPOINT in [getattr(r, "message_id", None) for r in caplog.records]
    run(pack_module, patched, tiny_sd3)

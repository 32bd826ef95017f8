"""What every node tells ComfyUI about itself and its inputs: TITLE (the display
name), OUTPUT_TOOLTIPS, and VALIDATE_INPUTS, which ComfyUI calls before a
workflow runs so a bad value is reported at its node. The node's own function
runs the same check (headless callers never go through VALIDATE_INPUTS).
"""

from __future__ import annotations

import inspect
import math
import os

import pytest
import torch

# the display names as released (ComfyUI-Manager and users' searches know them)
DISPLAY_NAMES = {
    "NoiseCalibrationCalibrate": "Noise Calibration: Calibrate",
    "NoiseCalibrationNoiseShift": "NoiseShift (calibrated noise levels)",
    "NoiseCalibrationNoiseAwarenessGuidance": "Noise Awareness Guidance",
    "NoiseCalibrationSpectralScheduler": "Spectral Scheduler (calibrated SIGMAS)",
    "NoiseCalibrationNoiseLevelCorrection": "Noise Level Correction",
    "NoiseCalibrationLoadImageFolder": "Noise Calibration: Load Image Folder",
    "NoiseCalibrationEmptyConditioning": "Noise Calibration: Empty Conditioning",
    "NoiseCalibrationApply": "Noise Calibration: Apply",
    "NoiseCalibrationLoadReference": "Noise Calibration: Load Reference Model",
    "NoiseCalibrationReferenceDecode": "Noise Calibration: Decode Reference Latent",
}
NAN, INF = math.nan, math.inf

# (node id, bad inputs, the input the message must name)
BAD_INPUTS = [
    ("NoiseCalibrationNoiseShift", {"if_missing": "skip"}, "if_missing"),
    ("NoiseCalibrationNoiseShift", {"strength": NAN}, "strength"),
    ("NoiseCalibrationNoiseShift", {"strength": INF}, "strength"),
    ("NoiseCalibrationNoiseShift", {"strength": 2.5}, "strength"),  # past the widget's max
    ("NoiseCalibrationNoiseShift", {"strength": -0.5}, "strength"),
    ("NoiseCalibrationNoiseLevelCorrection", {"if_missing": "skip"}, "if_missing"),
    ("NoiseCalibrationNoiseLevelCorrection", {"strength": NAN}, "strength"),
    ("NoiseCalibrationNoiseLevelCorrection", {"sigma_min": 0.8, "sigma_max": 0.2}, "sigma_min"),
    ("NoiseCalibrationNoiseLevelCorrection", {"sigma_max": -INF}, "sigma_max"),
    ("NoiseCalibrationNoiseLevelCorrection", {"sigma_min": 2000.0}, "sigma_min"),
    ("NoiseCalibrationNoiseAwarenessGuidance", {"weight": NAN}, "weight"),
    ("NoiseCalibrationNoiseAwarenessGuidance", {"weight": -INF}, "weight"),
    ("NoiseCalibrationNoiseAwarenessGuidance", {"offset": NAN}, "offset"),
    ("NoiseCalibrationNoiseAwarenessGuidance", {"pseudo_level": INF}, "pseudo_level"),
    ("NoiseCalibrationNoiseAwarenessGuidance", {"mode": "NAG"}, "mode"),
    ("NoiseCalibrationNoiseAwarenessGuidance", {"weight_schedule": "linear"}, "weight_schedule"),
    (
        "NoiseCalibrationNoiseAwarenessGuidance",
        {"level_start": 0.2, "level_end": 0.5},
        "level_end",
    ),
    ("NoiseCalibrationNoiseAwarenessGuidance", {"level_start": 1.5}, "level_start"),
    ("NoiseCalibrationCalibrate", {"correction": "dpmpp"}, "correction"),
    ("NoiseCalibrationSpectralScheduler", {"source": "a file"}, "source"),
    ("NoiseCalibrationSpectralScheduler", {"denoise": NAN}, "denoise"),
]


def validated_names(cls) -> list[str]:
    return [a for a in inspect.getfullargspec(cls.VALIDATE_INPUTS).args if a != "cls"]


def defaults(cls) -> dict:
    """The widget defaults of the inputs VALIDATE_INPUTS takes, as a new node sends them."""
    specs = {**cls.INPUT_TYPES()["required"], **cls.INPUT_TYPES().get("optional", {})}
    values = {}
    for name in validated_names(cls):
        kind, options = specs[name][0], specs[name][1]
        values[name] = options.get("default", kind[0] if isinstance(kind, list) else None)
    return values


def test_display_names_come_from_each_nodes_title(pack):
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert isinstance(cls.__dict__.get("TITLE"), str) and cls.TITLE, node_id
    assert pack.NODE_DISPLAY_NAME_MAPPINGS == DISPLAY_NAMES
    assert set(DISPLAY_NAMES) == set(pack.NODE_CLASS_MAPPINGS)


def test_every_output_has_a_tooltip(pack):
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        tips = cls.__dict__.get("OUTPUT_TOOLTIPS")
        assert isinstance(tips, tuple), f"{node_id} has no OUTPUT_TOOLTIPS tuple"
        assert len(tips) == len(cls.RETURN_TYPES), node_id
        assert all(isinstance(t, str) and t.strip() for t in tips), node_id


def test_validate_inputs_names_only_widgets_it_checks(pack):
    """No **kwargs and no socket input: the host skips its own type/range/choice
    checks for every input VALIDATE_INPUTS takes (all of them with **kwargs)."""
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        inputs = {**cls.INPUT_TYPES()["required"], **cls.INPUT_TYPES().get("optional", {})}
        if not any(isinstance(s[0], list) or s[0] in ("FLOAT", "INT") for s in inputs.values()):
            assert not hasattr(cls, "VALIDATE_INPUTS"), node_id  # links only: the host checks
            continue
        assert hasattr(cls, "VALIDATE_INPUTS"), node_id
        spec = inspect.getfullargspec(cls.VALIDATE_INPUTS)
        assert spec.varkw is None and spec.varargs is None, node_id
        names = validated_names(cls)
        assert names and set(names) <= set(inputs), node_id
        for name in names:
            kind = inputs[name][0]
            assert isinstance(kind, list) or kind in ("FLOAT", "INT"), f"{node_id}.{name}"
        assert "input_types" not in names  # that would skip the link type check


def test_validate_inputs_accepts_defaults_every_choice_and_linked_inputs(pack):
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        if not hasattr(cls, "VALIDATE_INPUTS"):
            continue  # links only (checked above)
        good = defaults(cls)
        assert cls.VALIDATE_INPUTS(**good) is True, node_id
        inputs = {**cls.INPUT_TYPES()["required"], **cls.INPUT_TYPES().get("optional", {})}
        for name in good:
            kind, options = inputs[name][0], inputs[name][1]
            for value in kind if isinstance(kind, list) else [options["min"], options["max"]]:
                values = {**good, name: value}
                if node_id.endswith("Guidance") and name.startswith("level_"):
                    values = {**good, "level_start": value, "level_end": value}
                assert cls.VALIDATE_INPUTS(**values) is True, f"{node_id} {name}={value!r}"
        # a widget turned into a linked input arrives as None: checked at execution
        assert cls.VALIDATE_INPUTS(**dict.fromkeys(good)) is True, node_id
        assert cls.VALIDATE_INPUTS() is True, node_id


@pytest.mark.parametrize(
    "node_id, bad, named", BAD_INPUTS, ids=[f"{n[16:]}-{'-'.join(b)}" for n, b, _ in BAD_INPUTS]
)
def test_validate_inputs_refuses_a_bad_value_naming_the_input(pack, node_id, bad, named):
    cls = pack.NODE_CLASS_MAPPINGS[node_id]
    answer = cls.VALIDATE_INPUTS(**{**defaults(cls), **bad})
    assert isinstance(answer, str) and answer.startswith(named), answer
    if named == "sigma_min" and "sigma_max" in bad:
        assert answer == "sigma_min (0.8) must not exceed sigma_max (0.2)"


def test_headless_calls_refuse_what_validate_inputs_refuses(pack, tiny_sd3):
    """A caller of the node's function (a script, a benchmark) gets a ValueError
    with the same message; widget min/max stay a UI limit there, except at
    Calibrate, whose function checks every widget's range (test_calibrate_inputs.py)."""
    m = pack.NODE_CLASS_MAPPINGS
    model = tiny_sd3.patcher
    noiseshift, nlc = m["NoiseCalibrationNoiseShift"](), m["NoiseCalibrationNoiseLevelCorrection"]()
    guidance = m["NoiseCalibrationNoiseAwarenessGuidance"]()
    message = m["NoiseCalibrationNoiseShift"].VALIDATE_INPUTS(strength=NAN)
    with pytest.raises(ValueError) as raised:
        noiseshift.apply(model, NAN, "error")
    assert str(raised.value) == message
    with pytest.raises(ValueError, match="if_missing must be one of"):
        noiseshift.apply(model, 0.0, "skip")  # checked even when off
    with pytest.raises(ValueError, match="sigma_min"):
        nlc.apply(model, 0.0, 0.8, 0.2, "error")
    with pytest.raises(ValueError, match="^weight must be a finite number"):
        guidance.apply(model, NAN, "offset", 1.0, 1.0, "constant", 1.0, 0.0)
    with pytest.raises(ValueError, match="^level_end"):
        guidance.apply(model, 1.0, "offset", 1.0, 1.0, "constant", 0.2, 0.5)
    calibrate = m["NoiseCalibrationCalibrate"]()
    with pytest.raises(ValueError, match="^correction must be one of"):
        calibrate.calibrate(model, 4, "simple", "fast", 4, 0, 64, 64, "", 4, correction="dpmpp")
    with pytest.raises(ValueError, match="^steps must be at least 2"):
        calibrate.calibrate(model, 0, "simple", "fast", 4, 0, 64, 64, "", 4)
    (off,) = noiseshift.apply(model, 0.0, "error")
    assert off is model


def test_nodes_use_the_store_they_are_given_and_leave_the_environment(
    pack, pack_module, tmp_path, monkeypatch
):
    """A node built with a store reads and writes only there; no node sets
    os.environ (NOISE_CALIBRATION_DIR is the user's override, never ours)."""
    monkeypatch.delenv(pack_module("noisecal_host.folders").ENV_DIR, raising=False)
    m = pack.NODE_CLASS_MAPPINGS
    store = pack_module("noisecal_host.store").CalibrationStore([tmp_path], tmp_path)
    testbed = pack_module("noisecal_host.testing.testbed_model")
    tb = pack_module("noisecal.testing.testbed")
    sampling = pack_module("noisecal_host.testing.sampling")
    spectrum = tb.FieldSpectrum()
    model = testbed.make_testbed_model(spectrum, 16, "image")
    latents = {"samples": tb.sample_field(spectrum, 8, 4, torch.Generator().manual_seed(5))}
    before = dict(os.environ)
    calibrate = m["NoiseCalibrationCalibrate"](calibration_store=store)
    out = calibrate.calibrate(model, 4, "simple", "fast", 4, 0, 64, 64, "", 8, latent=latents)
    _, path, _ = out["result"]
    assert [p.name for p in tmp_path.glob("*.json")] == [os.path.basename(path)]
    lat = sampling.empty_latent(model, 8, 8, 2)
    cond = testbed.make_testbed_conditioning(2)
    plain = sampling.ksample(model, lat, cond, steps=4)
    (shifted,) = m["NoiseCalibrationNoiseShift"](calibration_store=store).apply(model, 1.0, "error")
    assert not torch.equal(sampling.ksample(shifted, lat, cond, steps=4), plain)  # found it
    (passing,) = m["NoiseCalibrationNoiseLevelCorrection"](calibration_store=store).apply(
        model, 1.0, 0.0, 1000.0, "pass through"
    )
    sampling.ksample(passing, lat, cond, steps=4)  # no table in that file: passes through
    assert dict(os.environ) == before

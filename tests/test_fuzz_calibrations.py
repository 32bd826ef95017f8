"""Fuzzing mutated calibrations through the real nodes and sampler.

Every mutated text pasted as `inline_calibration` into NoiseShift and Noise
Level Correction either is refused with the pack's own error, or loads and
then samples a few steps on a tiny SD3 without error and with finite output.
Derandomized with a fixed budget for CI; NOISECAL_FUZZ_EXAMPLES raises it.
"""

import json
import os

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("NOISECAL_FUZZ_EXAMPLES", "60"))
LATENT = 8
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**45), 10**45)
    | st.floats(allow_nan=False)
    | st.sampled_from([0, 1, -1, 1e308, -1e-308, 0.5, 2.0])
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def world(pack):
    """A tiny SD3, a valid calibration of it (with a correction table), the nodes."""
    from noise_calibration.noisecal import calibration_record, errors
    from noise_calibration.noisecal_host import fingerprint, model_info
    from noise_calibration.noisecal_host.testing import sampling, tiny_models

    tiny = tiny_models.tiny_sd3()
    ms = tiny.patcher.get_model_object("model_sampling")
    import comfy.samplers

    sigmas = [float(s) for s in comfy.samplers.calculate_sigmas(ms, "simple", 4)[:-1]]
    record = calibration_record.make_record(
        key=fingerprint.checkpoint_key(tiny.patcher),
        image_size=(LATENT * 8, LATENT * 8),
        latent_size=(LATENT, LATENT),
        parameterization=model_info.parameterization_of(tiny.patcher),
        method="fuzz",
        method_params={},
        sigmas=sigmas,
        sigma_hat=[s * 0.9 for s in sigmas],
        calibration_set={"count": 1, "source": "test", "seed": 0},
        correction={"method": "fuzz", "sigmas": sigmas, "r": [0.05] * len(sigmas)},
    )
    nodes = pack.NODE_CLASS_MAPPINGS
    return {
        "tiny": tiny,
        "record": calibration_record.validate(record),
        "error": errors.CalibrationError,
        "noiseshift": nodes["NoiseCalibrationNoiseShift"](),
        "correction": nodes["NoiseCalibrationNoiseLevelCorrection"](),
        "latent": sampling.empty_latent(tiny.patcher, LATENT, LATENT, 1),
        "ksample": sampling.ksample,
    }


def paths(value, prefix=()):
    """Paths into a JSON value (dict keys and list indices): of a long list only its
    first three items and its last, so the weight values a record keeps (8 x 32)
    do not outnumber every other field."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i in sorted({*range(min(3, len(value))), len(value) - 1} - {-1}):
            yield from paths(value[i], (*prefix, i))


def replaced(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = replaced(value[head], rest, new)
    return copy


@st.composite
def mutated_texts(draw, record):
    """A valid record with one to three values replaced, keys dropped, or its
    text cut, spliced or byte-flipped."""
    data = record
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(data))))
        kind = draw(st.sampled_from(["replace", "drop", "number"]))
        if kind == "drop" and where:
            holder = data
            for step in where[:-1]:
                holder = holder[step]
            if isinstance(holder, dict):  # drop the key
                smaller = {k: v for k, v in holder.items() if k != where[-1]}
                data = replaced(data, where[:-1], smaller)
                continue
        new = draw(JSON_VALUES if kind != "number" else st.floats() | st.integers())
        data = replaced(data, where, new)
    text = json.dumps(data, allow_nan=True)
    edit = draw(st.sampled_from(["none", "none", "cut", "flip", "wrap"]))
    if edit == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif edit == "flip":
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + draw(st.characters()) + text[i + 1 :]
    elif edit == "wrap":
        text = "[" + text + "," + text + "]"
    return text


def check_one(world, text) -> str:
    """'refused' or 'sampled'; any other outcome fails the test."""
    tiny = world["tiny"]
    try:
        (shifted,) = world["noiseshift"].apply(tiny.patcher, 1.0, "error", inline_calibration=text)
        (model,) = world["correction"].apply(
            shifted, 1.0, 0.0, 1000.0, "error", inline_calibration=text
        )
        out = world["ksample"](model, world["latent"], tiny.conditioning(1), steps=4)
    except world["error"]:
        return "refused"
    assert torch.isfinite(out).all(), f"non-finite output from an accepted calibration: {text}"
    return "sampled"


def test_the_valid_record_samples(world):
    assert check_one(world, json.dumps(world["record"])) == "sampled"


def test_mutated_calibrations_are_refused_or_sample_cleanly(world):
    outcomes = {"refused": 0, "sampled": 0}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutated_texts(world["record"]))
    def run(text):
        outcomes[check_one(world, text)] += 1

    run()
    print(f"fuzz: {sum(outcomes.values())} inputs, {outcomes}")
    assert outcomes["refused"] and outcomes["sampled"], outcomes

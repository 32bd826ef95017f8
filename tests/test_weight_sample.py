"""The weight values a calibration keeps (noisecal/weight_sample.py): the same
weights at another precision agree, other weights do not, bad entries are refused."""

from __future__ import annotations

import json

import pytest
import torch

from noise_calibration.noisecal import calibration_record
from noise_calibration.noisecal.checkpoint_key import CheckpointKey
from noise_calibration.noisecal.errors import CalibrationError
from noise_calibration.noisecal.weight_sample import SAME_WEIGHTS, WeightSample, agreement


def sample(values: torch.Tensor, dtype: str, layout: str = "L") -> WeightSample:
    stored = values.to(getattr(torch, dtype)).float()
    return WeightSample(layout, (dtype,) * len(stored), tuple(tuple(r.tolist()) for r in stored))


WEIGHTS = torch.randn(8, 32, generator=torch.Generator().manual_seed(0)) * 0.05


@pytest.mark.parametrize("low", ["float8_e4m3fn", "float8_e5m2", "bfloat16", "float16"])
def test_the_same_weights_rounded_agree(low):
    """A file's weights loaded at a lower precision (UNETLoader's weight_dtype)."""
    fp16 = WEIGHTS.half().float()
    assert agreement(sample(fp16, "float16"), sample(fp16, low)) == 1.0
    assert agreement(sample(WEIGHTS, low), sample(WEIGHTS, "float32")) == 1.0


@pytest.mark.parametrize("low", ["float8_e4m3fn", "float8_e5m2"])
def test_fp8_of_fp32_weights_agrees_with_their_fp16_copy(low):
    assert agreement(sample(WEIGHTS, "float16"), sample(WEIGHTS, low)) == 1.0


@pytest.mark.parametrize("low", ["float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_other_weights_do_not_agree(low):
    other = torch.randn(8, 32, generator=torch.Generator().manual_seed(1)) * 0.05
    assert agreement(sample(WEIGHTS, "float16"), sample(other, low)) < 0.1
    # a fine-tune that moved every weight by 1% is another checkpoint, even at fp8
    noise = torch.randn(8, 32, generator=torch.Generator().manual_seed(2))
    tuned = (WEIGHTS * (1 + 0.01 * noise)).half().float()
    assert agreement(sample(WEIGHTS.half().float(), "float16"), sample(tuned, low)) < SAME_WEIGHTS


def test_another_layout_never_agrees():
    assert agreement(sample(WEIGHTS, "float16"), sample(WEIGHTS, "float8_e5m2", "M")) == 0.0
    fewer = sample(WEIGHTS[:4], "float16")
    assert agreement(sample(WEIGHTS, "float16"), fewer) == 0.0


def test_the_sample_travels_in_the_record_and_is_checked():
    weights = sample(WEIGHTS, "float16")
    key = CheckpointKey("ab" * 32, "SD3", "SD3", None, weights)
    record = calibration_record.make_record(
        key=key,
        image_size=(64, 64),
        latent_size=(8, 8),
        parameterization="flow",
        method="test",
        method_params={},
        sigmas=[1.0, 0.5],
        sigma_hat=[1.0, 0.5],
        calibration_set={"count": 1, "source": "test", "seed": 0},
    )
    again = calibration_record.loads(json.dumps(record))
    assert calibration_record.record_key(again).weights == weights
    assert calibration_record.record_key(again) == CheckpointKey("ab" * 32, "SD3", "SD3")
    for bad, message in [
        ({"dtypes": ["int8"] * 8}, "dtype 'int8'"),
        ({"dtypes": ["float16"]}, "one dtype and values list each"),
        ({"values": [[]] * 8}, "1-256 values"),
        ({"layout": 3}, "invalid at checkpoint/weights/layout"),
    ]:
        broken = calibration_record.loads(json.dumps(record))
        broken["checkpoint"]["weights"].update(bad)
        with pytest.raises(CalibrationError, match=message):
            calibration_record.validate(broken)

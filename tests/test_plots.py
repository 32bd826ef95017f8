"""Plots for IMAGE outputs: calibration plot with and without a correction table."""

import numpy as np

from noise_calibration.noisecal import calibration_record
from noise_calibration.noisecal.checkpoint_key import CheckpointKey
from noise_calibration.noisecal_host.plots import calibration_plot, save_png

KEY = CheckpointKey("ab" * 32, "SD3", "SD3")
SIGMAS = [1.0, 0.8, 0.6, 0.4, 0.2]


def correction(r=(0.0, 0.06, 0.04, -0.02, -0.05)):
    return {
        "method": "nlc-marginal-spectrum",
        "sampler": "euler",
        "sigmas": list(SIGMAS),
        "r": list(r),
        "error_before": [1.0] * len(SIGMAS),
        "error_after": [0.5] * len(SIGMAS),
        "network_evaluations": 400,
        "params": {"seed": 0},
    }


def record(correction=None):
    return calibration_record.make_record(
        key=KEY,
        image_size=(256, 256),
        latent_size=(32, 32),
        parameterization="flow",
        method="noiseshift-fast",
        method_params={},
        sigmas=SIGMAS,
        sigma_hat=[s * 0.9 for s in SIGMAS],
        calibration_set={"count": 8, "source": "testbed", "seed": 0},
        error_before=[1, 2, 3, 4, 5],
        error_after=[1, 1, 1, 1, 1],
        network_evaluations=500,
        wall_time_s=1.0,
        correction=correction,
    )


def test_plot_without_correction_is_unchanged():
    plain = calibration_plot(record())
    assert plain.dtype == np.uint8 and plain.shape == (360, 900, 3)
    # a record from before the correction field plots the same as one with null
    legacy = record()
    del legacy["correction"]
    assert np.array_equal(calibration_plot(legacy), plain)


def test_plot_with_correction_adds_the_table(tmp_path):
    plain = calibration_plot(record())
    corrected = calibration_plot(record(correction()))
    assert corrected.dtype == np.uint8 and corrected.ndim == 3 and corrected.shape[2] == 3
    assert corrected.shape != plain.shape or not np.array_equal(corrected, plain)
    assert corrected.shape[1] > plain.shape[1]  # a third panel
    assert corrected.std() > 0  # not a blank image
    # the panel draws the table itself: other r values give another image
    other = calibration_plot(record(correction(r=(0.0, -0.1, 0.1, 0.0, 0.2))))
    assert other.shape == corrected.shape and not np.array_equal(other, corrected)
    save_png(corrected, tmp_path / "plot.png")  # and it can be written
    assert (tmp_path / "plot.png").stat().st_size > 0

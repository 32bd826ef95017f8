"""The one definition of parameterizations, level conversions and schedule checks."""

from __future__ import annotations

import pytest
import torch

from noise_calibration.noisecal import levels, record_schema
from noise_calibration.noisecal.guidance import from_u, offset_level, to_u
from noise_calibration.noisecal.spectra import bin_mean, fourier_power, radial_bins
from noise_calibration.noisecal.spectral_schedule import log_snr_offset


@pytest.mark.parametrize(
    "name,family", [("flow", "flow"), ("eps", "ve"), ("v", "ve"), ("ve", "ve")]
)
def test_every_name_maps_to_its_level_family(name, family):
    assert levels.check_parameterization(name) == family


def test_searches_take_families_only():
    assert levels.check_parameterization("ve", levels.FAMILIES) == "ve"
    for bad in ("eps", "x0", None, ["flow"]):
        with pytest.raises(ValueError, match="parameterization must be one of"):
            levels.check_parameterization(bad, levels.FAMILIES)


def test_file_names_are_the_store_enum(pack_module):
    assert record_schema.SCHEMA["properties"]["parameterization"]["enum"] == list(
        levels.PARAMETERIZATIONS
    )


def test_flow_equivalent_level_floats_and_tensors():
    assert levels.sigma_to_u(3.0, "eps") == 0.75 and levels.u_to_sigma(0.75, "v") == 3.0
    with pytest.raises(ValueError, match="no ve sigma"):
        levels.u_to_sigma(1.0, "ve")
    u = torch.tensor([0.2, 0.5, 1.0])
    assert torch.equal(to_u(from_u(u[:2], "eps"), "eps"), u[:2])
    assert torch.isfinite(from_u(u, "eps")).all()  # the floor keeps u = 1 finite
    assert torch.equal(from_u(u, "flow"), u)


def test_log_snr_round_trip_keeps_dtype():
    s = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float32)
    lam = levels.log_snr(s, "flow")
    assert lam.dtype == torch.float32 and float(lam[1]) == 0.0
    assert torch.allclose(levels.sigma_from_log_snr(lam, "flow"), s)
    assert log_snr_offset(0.5, "flow").dtype == torch.float64
    assert torch.allclose(offset_level(s, 0.0), s)


def test_check_descending():
    levels.check_descending([3.0, 2.0, 0.0])
    for bad in ([1.0, 1.0], [0.5, 1.0]):
        with pytest.raises(ValueError, match="sigmas must be strictly descending"):
            levels.check_descending(bad)
    with pytest.raises(ValueError, match="^table must"):
        levels.check_descending([0.0, 1.0], "table")


def test_bin_mean_of_a_batch_is_the_mean_of_its_rows():
    x = torch.randn(3, 2, 8, 6, generator=torch.Generator().manual_seed(0))
    index, _, counts = radial_bins(8, 6)
    per_row = bin_mean(fourier_power(x), index, counts)
    assert per_row.shape == (3, 2, counts.numel())
    assert torch.allclose(bin_mean(fourier_power(x).mean(dim=0), index, counts), per_row.mean(0))

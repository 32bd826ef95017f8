"""Calibration store: schema, atomic writes, safe names, lookup policy (host-free)."""

import json

import pytest

from noise_calibration.noisecal import calibration_record
from noise_calibration.noisecal.checkpoint_key import CheckpointKey
from noise_calibration.noisecal.errors import CalibrationError, CalibrationNotFound
from noise_calibration.noisecal_host import store
from noise_calibration.noisecal_host.store import CalibrationStore

KEY = CheckpointKey("ab" * 32, "SD3", "SD3")


def record(key=KEY, latent=(32, 32), shift=0.0, **overrides):
    sigmas = [1.0, 0.75, 0.5, 0.25]
    rec = calibration_record.make_record(
        key=key,
        image_size=(latent[1] * 8, latent[0] * 8),
        latent_size=latent,
        parameterization="flow",
        method="noiseshift-fast",
        method_params={"tolerance": 1e-3},
        sigmas=sigmas,
        sigma_hat=[s + shift for s in sigmas],
        calibration_set={"count": 8, "source": "testbed", "seed": 0},
        error_before=[1, 2, 3, 4],
        error_after=[1, 1, 1, 1],
        network_evaluations=96,
        wall_time_s=1.5,
    )
    rec.update(overrides)
    return rec


def test_round_trip(tmp_path):
    rec = record()
    path = store.save(rec, tmp_path)
    assert path.parent == tmp_path and path.name == "SD3-abababababababab__32x32.json"
    assert store.load(path) == rec
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp")]


def test_truncated_file(tmp_path):
    path = store.save(record(), tmp_path)
    path.write_text(path.read_text()[:50])
    with pytest.raises(CalibrationError, match=r"32x32\.json: not valid JSON.*truncated"):
        store.load(path)


def test_wrong_schema_version(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({**record(), "schema_version": 3}))
    with pytest.raises(CalibrationError, match=r"x\.json: schema_version 3 is not supported"):
        store.load(path)


def test_missing_field(tmp_path):
    rec = record()
    del rec["sigma_hat"]
    path = tmp_path / "x.json"
    path.write_text(json.dumps(rec))
    with pytest.raises(CalibrationError, match=r"x\.json: invalid .*'sigma_hat' is a required"):
        store.load(path)


def test_inconsistent_lengths_and_order():
    with pytest.raises(CalibrationError, match="sigma_hat has 3"):
        calibration_record.validate({**record(), "sigma_hat": [1, 0.5, 0.2]})
    with pytest.raises(CalibrationError, match="strictly descending"):
        calibration_record.validate({**record(), "sigmas": [0.2, 0.5, 0.7, 1.0]})


def test_missing_file(tmp_path):
    with pytest.raises(CalibrationError, match="file not found"):
        store.load(tmp_path / "nope.json")


@pytest.mark.parametrize("label", ["../../x", "a/b", "..", "x\\y", "", " lead", "x" * 65])
def test_unsafe_labels_rejected(label):
    with pytest.raises(CalibrationError, match="is not allowed"):
        CheckpointKey("ab" * 32, "SD3", "SD3", label)


def test_labels_stay_inside_folder(tmp_path):
    key = CheckpointKey("ab" * 32, "SD3", "SD3", "My Model (v2.1)")
    path = store.save(record(key=key), tmp_path)
    assert path.parent == tmp_path
    assert path.name.startswith("label-my-model-v2-1-")
    # labels differing only in punctuation do not collide
    other = CheckpointKey("ab" * 32, "SD3", "SD3", "my model v2 1")
    assert other.file_stem() != key.file_stem()


def test_existing_file_survives_failed_write(tmp_path):
    path = store.save(record(), tmp_path)
    before = path.read_bytes()
    bad = record(shift=0.01, method={"name": "test", "params": {"t": object()}})  # fails mid-write
    with pytest.raises(TypeError):
        store.save(bad, tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_lookup_exact_bracketing_and_missing(tmp_path):
    user, shipped = tmp_path / "user", tmp_path / "shipped"
    st = CalibrationStore([user, shipped], user)
    st.save(record(latent=(32, 32)))
    store.save(record(latent=(64, 64), shift=0.1), shipped)
    exact = st.find(KEY, (32, 32))
    assert exact.weights == (1.0,) and exact.records[0]["resolution"]["latent_height"] == 32
    between = st.find(KEY, (48, 48))  # log-token interpolation weights
    assert len(between.records) == 2
    assert between.weights[1] == pytest.approx(0.5849625, abs=1e-6)
    with pytest.raises(
        CalibrationNotFound,
        match=r"SD3 checkpoint abababababababab at latent "
        r"16x16.*calibrated latent sizes: 32x32, 64x64",
    ):
        st.find(KEY, (16, 16))
    other = CheckpointKey("cd" * 32, "SD3", "SD3")
    with pytest.raises(CalibrationNotFound, match="calibrated latent sizes: none"):
        st.find(other, (32, 32))


def test_user_folder_wins_over_shipped(tmp_path):
    user, shipped = tmp_path / "user", tmp_path / "shipped"
    store.save(record(shift=0.05), shipped)
    st = CalibrationStore([user, shipped], user)
    st.save(record(shift=0.0))
    assert st.find(KEY, (32, 32)).records[0]["sigma_hat"][0] == 1.0


def test_renamed_file_is_detected(tmp_path):
    path = store.save(record(), tmp_path)
    other = CheckpointKey("cd" * 32, "SD3", "SD3")
    path.rename(tmp_path / store.file_name(other, (32, 32)))
    with pytest.raises(CalibrationError, match="belongs to SD3 checkpoint abab"):
        CalibrationStore([tmp_path]).find(other, (32, 32))


def test_version_1_files_still_load_and_recommend_noiseshift(tmp_path):
    """Files written before the check existed: version 1, no correction_joint, no check."""
    old = {**record(), "schema_version": 1}
    old.pop("correction_joint"), old.pop("check")
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    loaded = store.load(path)
    assert calibration_record.recommendation(loaded)["noiseshift"] == 1.0
    assert calibration_record.recommendation(loaded)["correction"] == 0.0

"""Bytes a calibration loader does not expect: each gives the pack's own error,
naming the file or the inline text, never a raw Python exception."""

import json

import pytest
from test_store import record

from noise_calibration.noisecal import store
from noise_calibration.noisecal.store import CalibrationError


def valid_text() -> str:
    return json.dumps(record())


def hostile_texts() -> dict[str, bytes]:
    text = valid_text()
    sigmas = json.dumps(record()["sigmas"])
    return {
        "non-UTF-8 byte": text.encode()[:40] + b"\xff\xfe" + text.encode()[40:],
        "integer of 5,000 digits": text.replace('"seed": 0', '"seed": ' + "9" * 5000).encode(),
        "huge integer in sigmas": text.replace(sigmas, "[" + "9" * 400 + ", 0.5]").encode(),
        "float overflow in sigmas": text.replace(sigmas, "[1e999, 0.5]").encode(),
        "NaN constant": text.replace('"wall_time_s": 1.5', '"wall_time_s": NaN').encode(),
        "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    }


@pytest.mark.parametrize("case", list(hostile_texts()))
def test_a_hostile_file_is_refused_naming_the_file(tmp_path, case):
    path = tmp_path / "calibration.json"
    path.write_bytes(hostile_texts()[case])
    with pytest.raises(CalibrationError, match="calibration.json"):
        store.load(path)


@pytest.mark.parametrize("case", list(hostile_texts()))
def test_a_hostile_inline_text_is_refused_naming_it(case):
    text = hostile_texts()[case].decode("utf-8", errors="replace")
    try:
        records = store.loads_many(text, "inline_calibration")
    except CalibrationError as exc:
        assert "inline_calibration" in str(exc)
    else:  # the replacement character made it valid text again: then it is a record
        assert case == "non-UTF-8 byte" and records


def test_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_bytes(b"\xef\xbb\xbf" + valid_text().encode())
    assert store.load(path)["sigmas"] == record()["sigmas"]
    assert store.loads("\ufeff" + valid_text())["sigmas"] == record()["sigmas"]


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "calibration.json"
    path.write_text(valid_text() + " " * 1000)
    with pytest.raises(CalibrationError, match="calibration.json: .* bytes is larger"):
        store.load(path)
    with pytest.raises(CalibrationError, match="inline_calibration: .* larger"):
        store.loads_many(valid_text() + " " * 1000, "inline_calibration")


def test_the_size_limit_leaves_room_for_real_files():
    """A calibration with 1,000 steps and a correction table is far below the limit."""
    sigmas = [1 - i / 1000 for i in range(1000)]
    big = record(sigmas=sigmas, sigma_hat=sigmas)
    big["correction"] = {"method": "nlc", "sigmas": sigmas[:-1], "r": [0.01] * 999}
    assert len(json.dumps(big, indent=1)) * 10 < store.MAX_FILE_BYTES
    store.validate(big)

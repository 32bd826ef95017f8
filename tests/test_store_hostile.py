"""Bytes a calibration loader does not expect: each gives the pack's own error,
naming the file or the inline text, never a raw Python exception."""

import json
import os
import random
import signal
import time

import pytest
from test_store import record

from noise_calibration.noisecal import calibration_record
from noise_calibration.noisecal.errors import CalibrationError
from noise_calibration.noisecal_host import atomic_write, store


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
        records = calibration_record.loads_many(text, "inline_calibration")
    except CalibrationError as exc:
        assert "inline_calibration" in str(exc)
    else:  # the replacement character made it valid text again: then it is a record
        assert case == "non-UTF-8 byte" and records


def test_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_bytes(b"\xef\xbb\xbf" + valid_text().encode())
    assert store.load(path)["sigmas"] == record()["sigmas"]
    assert calibration_record.loads("\ufeff" + valid_text())["sigmas"] == record()["sigmas"]


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(calibration_record, "MAX_FILE_BYTES", 1000)
    path = tmp_path / "calibration.json"
    path.write_text(valid_text() + " " * 1000)
    with pytest.raises(CalibrationError, match="calibration.json: .* bytes is larger"):
        store.load(path)
    with pytest.raises(CalibrationError, match="inline_calibration: .* larger"):
        calibration_record.loads_many(valid_text() + " " * 1000, "inline_calibration")


def test_the_size_limit_leaves_room_for_real_files():
    """A calibration with 1,000 steps and a correction table is far below the limit."""
    sigmas = [1 - i / 1000 for i in range(1000)]
    big = record(sigmas=sigmas, sigma_hat=sigmas)
    big["correction"] = {"method": "nlc", "sigmas": sigmas[:-1], "r": [0.01] * 999}
    assert len(json.dumps(big, indent=1)) * 10 < calibration_record.MAX_FILE_BYTES
    calibration_record.validate(big)


def test_a_writer_killed_at_any_point_leaves_the_old_or_the_new_file(tmp_path):
    """50 writers killed (SIGKILL) at random points: the file is always a whole
    old or new record, temp files are never counted as calibrations, and the
    next write removes the stale ones."""
    folder = tmp_path / "calibrations"
    old, new = record(shift=0.0), record(shift=0.01)
    path = store.save(old, folder)
    rng = random.Random(0)
    inside_a_write = 0
    for _ in range(50):
        started, ready = os.pipe()
        pid = os.fork()
        if pid == 0:  # the writer: rewrite the file until killed
            try:
                store.save(new, folder)
                os.write(ready, b"1")  # killed from now on, whatever the machine's load
                while True:
                    store.save(old, folder)
                    store.save(new, folder)
            finally:
                os._exit(0)
        os.read(started, 1)
        os.close(started), os.close(ready)
        time.sleep(rng.uniform(0.0, 0.03))  # a save takes a few ms to tens of ms
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert store.load(path)["sigma_hat"] in (old["sigma_hat"], new["sigma_hat"])
        # the next writer removes this one's temp file: count the kills inside a write here
        inside_a_write += any(p.name.startswith(atomic_write.TEMP_PREFIX) for p in folder.iterdir())
    assert inside_a_write, "no kill landed inside a write: the test tested nothing"
    assert sorted(p.name for p in folder.glob("*.json")) == [path.name]
    stamp = store.CalibrationStore([folder]).fingerprint_files()
    legacy = folder / ".tmp-legacy.json"  # an earlier version's temp name, two hours old
    legacy.write_text("{")
    os.utime(legacy, (time.time() - 7200, time.time() - 7200))
    assert store.CalibrationStore([folder]).fingerprint_files() == stamp  # never counted
    store.save(old, folder)  # the next write removes what the killed writers left
    assert not [p for p in folder.iterdir() if p.name.startswith(atomic_write.TEMP_PREFIX)]
    assert store.load(path)["sigma_hat"] == old["sigma_hat"]


@pytest.mark.parametrize(
    ("overrides", "section", "rule"),
    [
        ({"sigma_hat": [1.0, 0.5, 0.8, 0.25]}, "sigma_hat", "monotone"),
        ({"sigma_hat": [1.0, 0.75, 0.5, -0.1]}, "sigma_hat", ">= 0"),
        (
            {"sigmas": [1.0, 0.5, 0.25, 0.0], "sigma_hat": [1.0, 0.5, 0.25, 0.1]},
            "sigma_hat",
            "sigma = 0 must be 0",
        ),
        ({"correction": {"method": "x", "sigmas": [1.0, 0.5], "r": [0.1]}}, "correction", ""),
        ({"spectrum": {"freqs": [0.0], "power": [[1.0]], "count": 1}}, "spectrum", ""),
        ({"spectrum": {"freqs": [0.0, 0.5], "power": [[1.0, -1.0]], "count": 1}}, "spectrum", ""),
    ],
)
def test_a_file_the_sampler_could_not_use_is_refused_on_load(tmp_path, overrides, section, rule):
    """The loader builds every section as the sampler does: no file that loads can
    fail later inside KSampler."""
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({**record(), **overrides}))
    with pytest.raises(CalibrationError, match=f"calibration.json: {section}: .*{rule}"):
        store.load(path)

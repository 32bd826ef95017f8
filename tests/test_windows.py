"""Windows behaviour, simulated where it cannot run here: asking whether a temp
file's writer runs never signals (os.kill terminates on Windows), a target held
open by another program, folders that cannot be fsynced, device names, long paths,
and the mode of written files."""

import os
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_calibrate_inputs import forward_calls, run
from test_store import record

from noise_calibration.noisecal import checkpoint_key
from noise_calibration.noisecal.checkpoint_key import CheckpointKey
from noise_calibration.noisecal.errors import CalibrationError
from noise_calibration.noisecal_host import atomic_write, store


@pytest.fixture
def windows_kill(monkeypatch):
    """os.kill as Windows has it: any signal but the console events terminates."""
    terminated = []

    def kill(pid, sig):
        terminated.append(pid)  # the pack never sends a console event

    monkeypatch.setattr(os, "kill", kill)
    return terminated


def leftover(folder, pid, age_s, tag):
    path = folder / f"{atomic_write.TEMP_PREFIX}{pid}-{tag}{atomic_write.TEMP_SUFFIX}"
    path.write_text("{")
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_a_write_never_signals_and_tells_writers_by_process_table(
    tmp_path, windows_kill, monkeypatch
):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    # a live program whose process id a killed writer once had (started after the file)
    reused = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        gone = leftover(tmp_path, ended.pid, 5, "gone")
        stolen = leftover(tmp_path, reused.pid, 30, "reused")
        mine = leftover(tmp_path, os.getpid(), 0, "mine")  # this process writes it now
        parent = leftover(tmp_path, os.getppid(), 0, "parent")  # started before its file
        nameless = leftover(tmp_path, "x", 0, "nameless")
        store.save(record(), tmp_path)
        assert windows_kill == [], "a write signalled a process (terminates it on Windows)"
        assert reused.poll() is None, "the unrelated program was ended"
        assert not gone.exists() and not stolen.exists()
        assert mine.exists() and parent.exists() and nameless.exists()
    finally:
        monkeypatch.undo()  # the real os.kill again, to end the helper process
        reused.kill()
        reused.wait()


def test_old_temp_files_go_whoever_holds_their_id(tmp_path, windows_kill):
    old = leftover(tmp_path, os.getpid(), 2 * atomic_write.STALE_TEMP_SECONDS, "old")
    store.save(record(), tmp_path)
    assert not old.exists() and windows_kill == []


def test_a_temp_file_another_program_holds_is_left_for_later(tmp_path, monkeypatch):
    stale = leftover(tmp_path, 1, 2 * atomic_write.STALE_TEMP_SECONDS, "held")
    real_unlink = type(stale).unlink

    def unlink(path, missing_ok=False):
        if path == stale:
            raise PermissionError(13, "The process cannot access the file")
        return real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(type(stale), "unlink", unlink)
    path = store.save(record(), tmp_path)
    assert path.is_file() and stale.exists()


def held_open(monkeypatch, refusals):
    """os.replace as Windows has it while another program holds the target open."""
    real = os.replace
    tries = []

    def replace(src, dst):
        tries.append(dst)
        if len(tries) <= refusals:
            raise PermissionError(13, "The process cannot access the file")
        return real(src, dst)

    monkeypatch.setattr(atomic_write.os, "replace", replace)
    return tries


def test_a_briefly_held_target_is_replaced_after_a_wait(tmp_path, monkeypatch):
    path = store.save(record(), tmp_path)
    tries = held_open(monkeypatch, refusals=3)
    new = record(shift=0.2)
    store.save(new, tmp_path)
    assert len(tries) == 4
    assert store.load(path)["sigma_hat"] == new["sigma_hat"] != record()["sigma_hat"]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_target_held_for_good_is_refused_and_the_old_file_kept(tmp_path, monkeypatch):
    path = store.save(record(), tmp_path)
    before = path.read_bytes()
    monkeypatch.setattr(atomic_write, "REPLACE_WAIT_SECONDS", 0.2)
    held_open(monkeypatch, refusals=10**9)
    with pytest.raises(CalibrationError, match="another program holds it open"):
        store.save(record(shift=0.2), tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_folders_are_not_opened_for_fsync_on_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_write, "ON_WINDOWS", True)
    real_open = os.open
    opened_folders = []

    def windows_open(path, flags, *args):
        if os.path.isdir(path):
            opened_folders.append(path)
            raise PermissionError(13, "Access is denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(atomic_write.os, "open", windows_open)
    path = store.save(record(), tmp_path)
    assert store.load(path) and opened_folders == []


@pytest.mark.parametrize(
    "name",
    ["CON", "con.json", "NUL", "nul.txt", "COM1.json", "lpt9", "AUX .json", "a.", "a ", "a:b", ""],
)
def test_names_windows_cannot_hold_are_told(name):
    assert atomic_write.name_problem(name)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    label=st.from_regex(checkpoint_key.LABEL_PATTERN, fullmatch=True) | st.none(),
    model_class=st.text(min_size=0, max_size=80),
    size=st.tuples(st.integers(1, 10**5), st.integers(1, 10**5)),
)
def test_every_file_name_the_pack_builds_is_valid_on_windows(label, model_class, size):
    key = CheckpointKey("ab" * 32, model_class, "SD3", label)
    name = store.file_name(key, size)
    assert atomic_write.name_problem(name) is None, name
    assert len(name) < 100


def test_a_path_too_long_for_windows_is_refused_before_any_network_call(
    pack, tiny_sd3, tmp_path, monkeypatch
):
    monkeypatch.setattr(atomic_write, "ON_WINDOWS", True)
    deep = tmp_path / ("d" * 120) / ("e" * 120)
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"](
        calibration_store=store.CalibrationStore([deep], deep)
    )
    calls = forward_calls(tiny_sd3.patcher)
    channels = tiny_sd3.patcher.model.latent_format.latent_channels
    with pytest.raises(CalibrationError, match="over Windows' 259"):
        run(node, tiny_sd3.patcher, torch.randn(2, channels, 8, 8))
    assert calls == []


def test_a_folder_that_cannot_be_written_is_refused_before_any_network_call(
    pack, tiny_sd3, tmp_path
):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the calibration folder should be")
    node = pack.NODE_CLASS_MAPPINGS["NoiseCalibrationCalibrate"](
        calibration_store=store.CalibrationStore([blocked], blocked)
    )
    calls = forward_calls(tiny_sd3.patcher)
    channels = tiny_sd3.patcher.model.latent_format.latent_channels
    with pytest.raises(CalibrationError, match="cannot write into"):
        run(node, tiny_sd3.patcher, torch.randn(2, channels, 8, 8))
    assert calls == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_written_files_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o022)
    try:
        path = store.save(record(), tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("folder", ["CON", "photos/nul", "sets/a.", "x|y"])
def test_an_image_folder_windows_cannot_hold_is_refused(pack, folder):
    problem = pack.noisecal_host.input_folders.syntax_problem(folder)
    assert problem and "Windows" in problem

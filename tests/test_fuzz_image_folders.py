"""Fuzzing image folders through the real Load Image Folder node.

Random folders of random entries (images of many pixel modes and formats,
truncated files, random bytes, empty files, FIFOs, devices, links inside and
outside, loops, subfolders) either load as a valid IMAGE (finite, in [0, 1],
the asked shape) or are refused with the pack's CalibrationError: never a raw
exception, never a hang. Derandomized with a fixed budget for CI;
NOISECAL_FUZZ_EXAMPLES raises it.
"""

from __future__ import annotations

import collections
import io
import itertools
import os
import re
import shutil
import stat
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from noise_calibration.noisecal.errors import CalibrationError
from noise_calibration.noisecal_host import image_folder, input_folders

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("NOISECAL_FUZZ_EXAMPLES", "40"))
HANG_SECONDS = 20
NODE_ID = "NoiseCalibrationLoadImageFolder"
# pixel mode -> formats PIL writes it in
FORMATS = {
    "1": ["PNG", "BMP", "TIFF"],
    "L": ["PNG", "JPEG", "BMP", "TIFF", "GIF"],
    "LA": ["PNG", "TIFF"],
    "P": ["PNG", "GIF", "BMP"],
    "RGB": ["PNG", "JPEG", "BMP", "TIFF", "WEBP"],
    "RGBA": ["PNG", "TIFF", "WEBP"],
    "CMYK": ["JPEG", "TIFF"],
    "I;16": ["PNG", "TIFF"],
    "I": ["TIFF", "PNG"],
    "F": ["TIFF"],
}
KINDS = ["image", "image", "image", "truncated", "bytes", "empty", "fifo", "device"]
KINDS += ["link_inside", "link_outside", "link_broken", "link_loop", "subfolder"]


def pixels(rng, mode, size):
    """Random pixels of `mode`, including values beyond the usual range."""
    width, height = size
    if mode == "F":
        values = rng.choice([0.0, 0.5, 1.0, 2.0, -1.0, np.nan, np.inf, 1e30], (height, width))
        return Image.fromarray(values.astype(np.float32), "F")
    if mode == "I":
        top = int(rng.choice([255, 65535, 2**20, 2**31 - 1]))
        values = rng.integers(-top if rng.random() < 0.2 else 0, top, (height, width))
        return Image.fromarray(values.astype(np.int32), "I")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.uint16))
    bands = len(Image.new(mode, (1, 1)).getbands())
    rgb = rng.integers(0, 256, (height, width, bands), dtype=np.uint8)
    if mode in ("1", "L", "P"):
        return Image.fromarray(rgb[..., 0], "L").convert(mode)
    return Image.frombytes(mode, size, rgb.tobytes())


def image_bytes(rng, mode, fmt, size):
    """An image file's bytes, or None where this PIL cannot write the pair."""
    out = io.BytesIO()
    try:
        pixels(rng, mode, size).save(out, fmt)
    except (OSError, ValueError, KeyError):
        return None
    return out.getvalue()


@st.composite
def entries(draw):
    """A list of (name, kind, detail) for one folder."""
    count = draw(st.integers(0, 7))
    made = []
    for i in range(count):
        kind = draw(st.sampled_from(KINDS))
        name = f"e{i}" + draw(st.sampled_from([".png", ".jpg", ".tif", "", ".txt"]))
        if kind in ("image", "truncated"):
            mode = draw(st.sampled_from(sorted(FORMATS)))
            detail = {
                "mode": mode,
                "format": draw(st.sampled_from(FORMATS[mode])),
                "size": (draw(st.integers(1, 48)), draw(st.integers(1, 48))),
                "seed": draw(st.integers(0, 2**16)),
                "cut": draw(st.floats(0.0, 0.95)),
            }
        elif kind == "bytes":
            magic = draw(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00"]))
            detail = magic + draw(st.binary(max_size=300))
        elif kind == "link_inside":
            detail = draw(st.integers(0, 7))  # the entry it points at (may not exist)
        else:
            detail = None
        made.append((name, kind, detail))
    return made


def write_file(path, kind, detail):
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "bytes":
        path.write_bytes(detail)
    else:
        rng = np.random.default_rng(detail["seed"])
        data = image_bytes(rng, detail["mode"], detail["format"], detail["size"])
        data = data or b"\x00"
        if kind == "truncated":
            data = data[: int(len(data) * detail["cut"])]
        path.write_bytes(data)


def make_entry(folder, outside, name, kind, detail):
    """Create one entry; kinds this system or user cannot create are left out."""
    path = folder / name
    try:
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "device":
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
        elif kind == "link_inside":
            path.symlink_to(f"e{detail}.png")
        elif kind == "link_outside":
            path.symlink_to(outside)
        elif kind == "link_broken":
            path.symlink_to(folder / "nothing here")
        elif kind == "link_loop":
            path.symlink_to(name)
        elif kind == "subfolder":
            path.mkdir()
            Image.new("RGB", (8, 8), (9, 9, 9)).save(path / "inner.png")
        else:
            write_file(path, kind, detail)
    except (AttributeError, NotImplementedError, OSError):
        pass  # no mkfifo/mknod/symlink here (Windows, no privileges)


def within(seconds, fn, *args):
    """fn(*args) in a daemon thread; None back means it hung."""
    result = {}

    def target():
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the test's thread
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        return None
    if "error" in result:
        raise result["error"]
    return result


def done(fn, *args):
    """fn(*args), failing the example if it hangs."""
    result = within(HANG_SECONDS, fn, *args)
    assert result is not None, f"{fn.__name__}{args} hung"
    return result["value"]


def refusal(message):
    """A refusal's kind, for the counts printed."""
    if "of the RAM available" in message:
        return "refused: batch over the memory limit"
    if "left to the loader" in message:
        return "refused: one image over the memory left"
    return "refused: " + re.sub(r"^(image )?folder '[^']*':? ", "", message)[:30]


def check_load(name, width, height, limit, reasons):
    """'loaded' or 'refused' (reasons counted); anything else fails the example."""
    try:
        images, skipped = done(image_folder.load_image_folder, name, width, height, limit)
    except CalibrationError as exc:
        reasons[refusal(str(exc))] += 1
        return "refused"
    reasons.update(reason.split(" (")[0][:40] for _, reason in skipped)
    size = (height // 8 * 8, width // 8 * 8)
    assert images.dtype == torch.float32 and images.shape[1:] == (*size, 3), images.shape
    assert 1 <= images.shape[0] <= (limit or images.shape[0])
    assert torch.isfinite(images).all() and images.min() >= 0 and images.max() <= 1
    assert all(isinstance(n, str) and isinstance(r, str) and r for n, r in skipped)
    return "loaded"


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A temporary input directory, an image outside it, and a memory limit to set."""
    root = tmp_path / "input"
    root.mkdir()
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(outside)
    budget = {"bytes": None}
    real_limit = image_folder.memory_limit
    monkeypatch.setattr(input_folders, "input_directory", lambda: root)
    monkeypatch.setattr(image_folder, "memory_limit", lambda: budget["bytes"] or real_limit())
    return {"root": root, "outside": outside, "budget": budget, "names": itertools.count()}


def test_random_folders_load_or_are_refused_cleanly(world, pack):
    cls = pack.NODE_CLASS_MAPPINGS[NODE_ID]
    outcomes = {"loaded": 0, "refused": 0}
    reasons = collections.Counter()

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        entries(),
        st.sampled_from([8, 13, 16, 40]),
        st.sampled_from([8, 16, 24]),
        st.sampled_from([0, 1, 2, 5]),
        st.sampled_from([None, None, 10**4, 10**5, 10**6]),
    )
    def run(made, width, height, limit, budget):
        name = f"f{next(world['names'])}"
        folder = world["root"] / name
        folder.mkdir()
        for entry in made:
            make_entry(folder, world["outside"], *entry)
        world["budget"]["bytes"] = budget
        try:
            outcomes[check_load(name, width, height, limit, reasons)] += 1
            assert isinstance(done(cls.IS_CHANGED, name), str)
            assert done(cls.VALIDATE_INPUTS, name) is True
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    run()
    total = sum(outcomes.values())
    print(f"fuzz: {total} inputs, {outcomes}, raw exceptions 0, hangs 0")
    print(f"fuzz reasons: {dict(reasons.most_common())}")
    assert outcomes["loaded"] and outcomes["refused"], outcomes

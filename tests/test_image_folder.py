"""Load Image Folder: real images from a folder of ComfyUI's input directory,
written with PIL into a temporary input directory, as one IMAGE batch for the
Calibrate node."""

from __future__ import annotations

import errno
import math
import os
import re
import socket
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from noise_calibration.noisecal.errors import CalibrationError
from noise_calibration.noisecal_host import image_folder, input_folders

NODE_ID = "NoiseCalibrationLoadImageFolder"
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture
def input_dir(tmp_path, monkeypatch):
    """A temporary ComfyUI input directory: set with folder_paths.set_input_directory
    (as ComfyUI's --input-directory does) where the host has folder_paths, else
    through input_folders.input_directory (the registry snapshot ships no
    folder_paths module). Restored afterwards."""
    root = tmp_path / "input"
    root.mkdir()
    try:
        import folder_paths
    except ImportError:
        monkeypatch.setattr(input_folders, "input_directory", lambda: root)
        yield root
        return
    before = folder_paths.get_input_directory()
    folder_paths.set_input_directory(str(root))
    try:
        yield root
    finally:
        folder_paths.set_input_directory(before)


def solid(size, color, mode="RGB"):
    return Image.new(mode, size, color)


def stripes(size, colors, vertical=True):
    """Equal bands of `colors`, left to right (vertical) or top to bottom."""
    width, height = size
    pixels = np.zeros((height, width, 3), np.uint8)
    n = len(colors)
    for i, color in enumerate(colors):
        if vertical:
            pixels[:, i * width // n : (i + 1) * width // n] = color
        else:
            pixels[i * height // n : (i + 1) * height // n, :] = color
    return Image.fromarray(pixels, "RGB")


@pytest.fixture
def cats(input_dir):
    """A folder of mixed files: three images in natural order (img1, img2,
    img10), a text file, a corrupt and a truncated PNG, and a subfolder."""
    folder = input_dir / "cats"
    folder.mkdir()
    solid((120, 80), BLUE).save(folder / "img1.jpg", quality=95)  # non-square JPEG
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    rgba.putalpha(Image.linear_gradient("L").resize((64, 64)))  # alpha from 0 to 255
    rgba.save(folder / "img2.png")
    solid((50, 70), 128, "L").save(folder / "img10.png")  # grayscale
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    stripes((64, 64), [RED, GREEN]).save(folder / "truncated.png")
    data = (folder / "truncated.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "sub").mkdir()
    solid((32, 32), GREEN).save(folder / "sub" / "inner.png")
    return folder


def node():
    from noise_calibration import NODE_CLASS_MAPPINGS

    return NODE_CLASS_MAPPINGS[NODE_ID]


def test_loads_images_in_natural_order_skipping_what_is_no_image(cats):
    images, skipped = image_folder.load_image_folder("cats", 40, 24, 0)
    assert images.shape == (3, 24, 40, 3)  # [n, height, width, 3]: ComfyUI's IMAGE
    assert images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    means = images.mean(dim=(1, 2))
    assert torch.allclose(means[0], torch.tensor([0.0, 0.0, 1.0]), atol=0.03)  # img1.jpg
    assert torch.allclose(means[1], torch.tensor([1.0, 0.0, 0.0]), atol=1e-6)  # alpha dropped
    assert torch.allclose(means[2], torch.full((3,), 128 / 255), atol=1e-6)  # img10, gray
    # the subfolder is not read, and is no skipped file either
    assert [name for name, _ in skipped] == ["broken.png", "notes.txt", "truncated.png"]
    reasons = dict(skipped)
    assert reasons["notes.txt"] == "not an image PIL can read"
    assert reasons["broken.png"].startswith(("not an image", "cannot be decoded ("))
    assert reasons["truncated.png"].startswith("cannot be decoded (")
    assert all(str(cats) not in reason for reason in reasons.values())


def test_skipped_files_are_logged(cats, caplog):
    with caplog.at_level("WARNING", logger="noise_calibration"):
        image_folder.load_image_folder("cats", 32, 32, 0)
    logged = [r.getMessage() for r in caplog.records if r.name == "noise_calibration"]
    assert any("notes.txt" in m and "not an image" in m for m in logged), logged
    assert any("broken.png" in m for m in logged), logged


def test_limit_takes_the_first_images_by_name(cats):
    images, _ = image_folder.load_image_folder("cats", 32, 32, 2)
    assert images.shape[0] == 2
    assert images[1].mean(dim=(0, 1))[0] > 0.99  # img2 (red), not img10


def test_size_is_rounded_down_to_a_multiple_of_8(cats):
    images, _ = image_folder.load_image_folder("cats", 45, 39, 1)
    assert images.shape == (1, 32, 40, 3)
    with pytest.raises(CalibrationError, match="at least 8 x 8"):
        image_folder.load_image_folder("cats", 7, 64, 1)
    with pytest.raises(CalibrationError, match="limit"):
        image_folder.load_image_folder("cats", 64, 64, -1)


def test_center_crop_keeps_the_middle_and_never_stretches(input_dir):
    folder = input_dir / "crop"
    folder.mkdir()
    stripes((300, 100), [RED, GREEN, BLUE]).save(folder / "a_wide.png")
    stripes((100, 300), [RED, GREEN, BLUE], vertical=False).save(folder / "b_tall.png")
    square, _ = image_folder.load_image_folder("crop", 32, 32, 0)
    for image in (square[0], square[1].transpose(0, 1)):  # the outer thirds are cut away
        # all green but for the filter's reach across the cut at the two edges
        assert torch.allclose(image[:, 2:-2, 1], torch.ones(32, 28), atol=0.02)
        assert image[:, 2:-2, [0, 2]].max() < 0.02
        assert image[..., [0, 2]].mean() < 0.01  # stretched, two thirds would be red or blue
    # the target has the source's 3:1 aspect: nothing is cut, bands keep their place
    wide, _ = image_folder.load_image_folder("crop", 48, 16, 1)
    left, middle, right = wide[0, :, 4:12], wide[0, :, 20:28], wide[0, :, 36:44]
    for band, channel in ((left, 0), (middle, 1), (right, 2)):
        assert torch.allclose(band[..., channel], torch.ones_like(band[..., 0]), atol=0.02)


def test_exif_orientation_is_applied(input_dir):
    folder = input_dir / "phone"
    folder.mkdir()
    stored = stripes((60, 30), [(0, 0, 0), (255, 255, 255)])  # dark left, bright right
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: dark on top
    stored.save(folder / "photo.jpg", exif=exif, quality=95)
    (image,), _ = image_folder.load_image_folder("phone", 16, 32, 0)
    assert image[:12].mean() < 0.1 and image[-12:].mean() > 0.9


@pytest.mark.parametrize(
    "folder, message",
    [
        ("../outside", "leads out"),
        ("cats/../../outside", "leads out"),
        ("..\\outside", "leads out"),
        ("", "not a folder name"),
        ("missing", "does not exist"),
        ("cats/notes.txt", "not a folder"),
    ],
)
def test_refuses_names_outside_or_not_a_folder(cats, folder, message):
    with pytest.raises(CalibrationError, match=message):
        image_folder.load_image_folder(folder, 64, 64, 0)


def test_refuses_absolute_paths(cats):
    with pytest.raises(CalibrationError, match="absolute path"):
        image_folder.load_image_folder(str(cats), 64, 64, 0)
    with pytest.raises(CalibrationError, match="absolute path"):
        image_folder.load_image_folder("C:\\images", 64, 64, 0)


def test_refuses_links_outside_the_input_directory(input_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    solid((32, 32), RED).save(outside / "secret.png")
    (input_dir / "escape").symlink_to(outside, target_is_directory=True)
    with pytest.raises(CalibrationError, match="links outside"):
        image_folder.load_image_folder("escape", 64, 64, 0)
    # a file linking outside, inside a usable folder, is skipped
    folder = input_dir / "mixed"
    folder.mkdir()
    solid((32, 32), GREEN).save(folder / "own.png")
    (folder / "linked.png").symlink_to(outside / "secret.png")
    (folder / "gone.png").symlink_to(folder / "nothing.png")
    images, skipped = image_folder.load_image_folder("mixed", 32, 32, 0)
    assert images.shape[0] == 1
    assert skipped == [
        ("gone.png", "a broken link"),
        ("linked.png", "links outside ComfyUI's input directory"),
    ]
    # a link that stays inside is followed
    (input_dir / "alias").symlink_to(folder, target_is_directory=True)
    assert image_folder.load_image_folder("alias", 32, 32, 0)[0].shape[0] == 1


def test_refuses_a_folder_without_a_usable_image(input_dir):
    (input_dir / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no image that can be read"):
        image_folder.load_image_folder("empty", 64, 64, 0)
    (input_dir / "texts").mkdir()
    (input_dir / "texts" / "a.txt").write_text("hello")
    with pytest.raises(CalibrationError, match=r"skipped: a\.txt \(not an image"):
        image_folder.load_image_folder("texts", 64, 64, 0)


def test_the_input_directory_itself_is_a_choice(input_dir, cats):
    solid((20, 20), RED).save(input_dir / "top.png")
    images, skipped = image_folder.load_image_folder(".", 16, 16, 0)
    assert images.shape == (1, 16, 16, 3) and skipped == []  # cats/ is a subfolder


def test_folder_list_holds_subfolders_inside_only(input_dir, tmp_path, cats):
    for name in ("set10", "set2", ".hidden"):
        (input_dir / name).mkdir()
    (input_dir / "file.png").write_bytes(b"")
    (tmp_path / "outside").mkdir()
    (input_dir / "escape").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert input_folders.folder_choices() == [".", "cats", "set2", "set10"]
    kind, options = node().INPUT_TYPES()["required"]["folder"]
    assert kind == [".", "cats", "set2", "set10"] and options["default"] == "."


def test_input_types_never_raise_without_an_input_directory(input_dir, monkeypatch):
    input_dir.rmdir()
    assert input_folders.folder_choices() == ["."]
    assert node().INPUT_TYPES()["required"]["folder"][0] == ["."]
    monkeypatch.setattr(input_folders, "input_directory", lambda: None)  # outside ComfyUI
    assert node().INPUT_TYPES()["required"]["folder"][0] == ["."]


def test_node_loads_and_reports(cats):
    out = node()().load("cats", 40, 24, 64)
    images, count = out["result"]
    assert count == 3 and images.shape == (3, 24, 40, 3)
    (text,) = out["ui"]["text"]
    reasons = dict(image_folder.load_image_folder("cats", 8, 8, 0)[1])
    assert text == (
        f"loaded 3 images (40x24) from cats; skipped 3: broken.png ({reasons['broken.png']}), "
        f"notes.txt (not an image PIL can read), truncated.png ({reasons['truncated.png']})"
    )


def test_summary_truncates_a_long_skip_list():
    images = torch.zeros(2, 16, 24, 3)
    skipped = [(f"f{i}.txt", "not an image PIL can read") for i in range(8)]
    text = image_folder.summary(images, "set", skipped)
    assert text.startswith("loaded 2 images (24x16) from set; skipped 8: f0.txt (")
    assert "f4.txt" in text and "f5.txt" not in text and text.endswith(", and 3 more")
    assert image_folder.summary(images[:1], ".", []) == "loaded 1 image (24x16) from ."


def test_validate_inputs_names_the_problem(cats):
    cls = node()
    assert cls.VALIDATE_INPUTS(folder="cats", width=512, height=512, limit=64) is True
    assert cls.VALIDATE_INPUTS(folder=".", width=16, height=16384, limit=0) is True
    gone = cls.VALIDATE_INPUTS(folder="dogs", width=512, height=512, limit=64)
    assert gone.startswith("folder 'dogs' does not exist (any more)"), gone
    assert cls.VALIDATE_INPUTS(folder="../x").startswith("folder '../x' leads out")
    assert cls.VALIDATE_INPUTS(limit=-1).startswith("limit must be at least 0")
    assert cls.VALIDATE_INPUTS(width=math.nan).startswith("width must be a finite number")
    assert cls.VALIDATE_INPUTS(height=20000).startswith("height must be at most 16384")
    assert cls.VALIDATE_INPUTS(folder=None, width=None, height=None, limit=None) is True


def test_headless_calls_check_their_inputs(cats):
    with pytest.raises(ValueError, match="^width must be a finite number"):
        node()().load("cats", math.nan, 64, 0)
    with pytest.raises(CalibrationError, match="does not exist"):
        node()().load("dogs", 64, 64, 0)


def test_is_changed_follows_the_folders_files(cats):
    cls = node()
    first = cls.IS_CHANGED(folder="cats", width=64, height=64, limit=0)
    assert cls.IS_CHANGED(folder="cats", width=64, height=64, limit=0) == first
    solid((32, 32), GREEN).save(cats / "img11.png")
    added = cls.IS_CHANGED(folder="cats")
    assert added != first
    (cats / "notes.txt").write_text("a longer text than before\n")
    assert cls.IS_CHANGED(folder="cats") != added
    os.utime(cats / "img1.jpg", ns=(0, 0))
    assert cls.IS_CHANGED(folder="cats") not in (first, added)
    assert cls.IS_CHANGED(folder="dogs").startswith("unusable: folder 'dogs'")


def test_output_feeds_the_calibrate_nodes_image_input(cats, pack_module):
    """IMAGE + a real (untrained, tiny) ComfyUI VAE through Calibrate's own path."""
    vae = pack_module("noisecal_host.testing.tiny_models").tiny_vae()
    images, count = node()().load("cats", 64, 48, 0)["result"]
    job = pack_module("noisecal_host.calibration_job")
    request = job.Request(width=64, height=48, max_batch=8)
    latents, source = job._latents(request, job.Inputs(image=images, vae=vae))
    assert source == "images + VAE"
    assert latents.shape == (count, 4, 6, 8)
    assert torch.isfinite(latents).all()


# --- reliability: each class of hostile folder entry, on the real loader ---

POSIX_SPECIAL = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on Windows")


def within(seconds, fn, *args):
    """fn(*args) in a daemon thread: a hang fails the test instead of blocking it."""
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
        pytest.fail(f"{fn.__name__} hung for more than {seconds} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.fixture
def mixed(input_dir):
    """A folder with one good image, for entries to be added beside it."""
    folder = input_dir / "odd"
    folder.mkdir()
    solid((16, 16), GREEN).save(folder / "good.png")
    return folder


@POSIX_SPECIAL
def test_entries_that_are_no_regular_file_are_skipped_unopened(mixed):
    os.mkfifo(mixed / "pipe.png")
    (mixed / "pipe_link.png").symlink_to(mixed / "pipe.png")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(mixed / "sock.png"))
    except OSError:
        pytest.skip("no unix socket in the temporary folder")
    try:
        os.mknod(mixed / "null.png", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        device = True
    except (PermissionError, OSError):
        device = False  # creating a device needs privileges
    try:
        images, skipped = within(20, image_folder.load_image_folder, "odd", 16, 16, 0)
    finally:
        server.close()
    assert images.shape == (1, 16, 16, 3)
    reasons = dict(skipped)
    assert reasons["pipe.png"].startswith("a FIFO (named pipe), not a regular file")
    assert reasons["pipe_link.png"].startswith("a FIFO (named pipe)")
    assert reasons["sock.png"].startswith("a socket, not a regular file")
    if device:
        assert reasons["null.png"].startswith("a device, not a regular file")
    cls = node()
    assert within(20, cls.IS_CHANGED, "odd") == within(20, cls.IS_CHANGED, "odd")


def test_names_longer_than_the_file_system_allows_are_the_packs_error(input_dir):
    cls = node()
    deep = "/".join(["d" * 200] * 30)  # every part legal, the whole too long
    # Windows without long paths may call it missing: still the pack's error
    too_long = "longer than the" if os.name != "nt" else "longer than the|does not exist"
    for name, message in (("n" * 300, "more than 255 characters"), (deep, too_long)):
        with pytest.raises(CalibrationError, match=message):
            image_folder.load_image_folder(name, 64, 64, 0)
        assert re.search(message, cls.VALIDATE_INPUTS(folder=name))
        assert cls.IS_CHANGED(folder=name).startswith("unusable: ")
        assert str(input_dir) not in cls.VALIDATE_INPUTS(folder=name)


def test_validate_inputs_accepts_only_listed_folders(cats, input_dir):
    """ComfyUI skips its own list check for an input VALIDATE_INPUTS takes."""
    (input_dir / ".hidden").mkdir()
    cls = node()
    for name in (".hidden", "cats/sub", "./cats"):
        problem = cls.VALIDATE_INPUTS(folder=name)
        assert problem.startswith(f"folder {name!r} is not one of the listed folders"), problem
    assert cls.VALIDATE_INPUTS(folder=7).startswith("folder 7 is not a folder name")
    assert cls.VALIDATE_INPUTS(folder="cats") is True


def swap_after_check(monkeypatch, swap):
    """Run swap(path) right after the loader checked an entry, before it opens it."""
    checked = image_folder._target

    def racing(folder, name, real_root):
        found = checked(folder, name, real_root)
        if found is not None and name == "victim.png":
            swap(Path(found[0]))
        return found

    monkeypatch.setattr(image_folder, "_target", racing)


def to_outside_link(outside):
    def swap(path):
        path.unlink()
        path.symlink_to(outside)

    return swap


@pytest.fixture
def secret(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    solid((16, 16), RED).save(outside / "secret.png")
    return outside / "secret.png"


@pytest.mark.parametrize("nofollow", [True, False], ids=["O_NOFOLLOW", "no O_NOFOLLOW"])
def test_a_file_swapped_for_a_link_outside_after_the_check_is_not_read(
    mixed, secret, monkeypatch, nofollow
):
    solid((16, 16), BLUE).save(mixed / "victim.png")
    if not nofollow:  # as on Windows: only the opened handle can tell
        flags = image_folder._OPEN_FLAGS & ~getattr(os, "O_NOFOLLOW", 0)
        monkeypatch.setattr(image_folder, "_OPEN_FLAGS", flags)
    swap_after_check(monkeypatch, to_outside_link(secret))
    images, skipped = image_folder.load_image_folder("odd", 16, 16, 0)
    assert skipped == [("victim.png", image_folder.CHANGED)]
    assert images.shape[0] == 1 and images[..., 0].max() < 0.01  # no red from outside


def test_a_file_replaced_after_the_check_is_not_read(mixed, secret, monkeypatch):
    solid((16, 16), BLUE).save(mixed / "victim.png")

    def replace(path):
        (mixed / "new.tmp").write_bytes(secret.read_bytes())
        os.replace(mixed / "new.tmp", path)

    swap_after_check(monkeypatch, replace)
    _, skipped = image_folder.load_image_folder("odd", 16, 16, 0)
    assert skipped == [("victim.png", image_folder.CHANGED)]


@POSIX_SPECIAL
def test_a_file_swapped_for_a_fifo_after_the_check_never_blocks(mixed, monkeypatch):
    solid((16, 16), BLUE).save(mixed / "victim.png")

    def to_fifo(path):
        path.unlink()
        os.mkfifo(path)

    swap_after_check(monkeypatch, to_fifo)
    _, skipped = within(20, image_folder.load_image_folder, "odd", 16, 16, 0)
    assert skipped == [("victim.png", image_folder.CHANGED)]


def test_entries_that_vanish_or_loop_are_skipped_with_a_reason(mixed, monkeypatch):
    solid((16, 16), BLUE).save(mixed / "victim.png")
    (mixed / "loop_a.png").symlink_to(mixed / "loop_b.png")
    (mixed / "loop_b.png").symlink_to(mixed / "loop_a.png")
    checked = image_folder._target

    def vanishing(folder, name, real_root):
        if name == "victim.png":
            os.unlink(os.path.join(folder, name))  # deleted after the listing
        return checked(folder, name, real_root)

    monkeypatch.setattr(image_folder, "_target", vanishing)
    images, skipped = image_folder.load_image_folder("odd", 16, 16, 0)
    assert images.shape[0] == 1
    assert dict(skipped) == {
        "loop_a.png": "a broken link",
        "loop_b.png": "a broken link",
        "victim.png": os.strerror(errno.ENOENT),
    }


@pytest.fixture
def many(input_dir):
    folder = input_dir / "many"
    folder.mkdir()
    for i in range(30):
        solid((24, 24), (i, i, i)).save(folder / f"img{i}.png")
    return folder


def count_calls(monkeypatch, name):
    calls = []
    original = getattr(image_folder, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(image_folder, name, counted)
    return calls


def test_a_batch_larger_than_the_memory_limit_is_refused_before_decoding(many, monkeypatch):
    per_image = 64 * 32 * 3 * 4
    decode = 24 * 24 * image_folder.DECODE_BYTES_PER_PIXEL
    monkeypatch.setattr(image_folder, "memory_limit", lambda: 12 * per_image + decode)
    decoded = count_calls(monkeypatch, "_decode")
    with pytest.raises(CalibrationError, match=r"30 images at 64 x 32 need .* 12 fit\. Set limit"):
        image_folder.load_image_folder("many", 64, 32, 0)
    assert decoded == []
    assert image_folder.load_image_folder("many", 64, 32, 12)[0].shape[0] == 12
    with pytest.raises(CalibrationError, match="0 fit"):
        image_folder.load_image_folder("many", 512, 512, 1)


def test_the_memory_limit_is_a_fraction_of_the_available_ram():
    import psutil

    limit = image_folder.memory_limit()
    assert 0 < limit <= psutil.virtual_memory().total * image_folder.MEMORY_FRACTION


def test_an_image_too_large_to_decode_is_the_packs_error(many, monkeypatch):
    monkeypatch.setattr(image_folder, "memory_limit", lambda: 64 * 64 * 3 * 4 * 30 + 10**6)
    solid((400, 400), RED).save(many / "big.png")  # 400 x 400 x 16 bytes > 1 MB
    with pytest.raises(CalibrationError, match="more than the"):
        image_folder.load_image_folder("many", 64, 64, 0)


@pytest.mark.parametrize("stage", ["_to_rgb", "_header"])
def test_running_out_of_memory_is_an_error_not_a_skip(many, monkeypatch, stage):
    calls = []

    def exhausted(*args):
        calls.append(args)
        raise MemoryError

    monkeypatch.setattr(image_folder, stage, exhausted)
    with pytest.raises(CalibrationError, match="ran out of memory reading 'img0.png'"):
        image_folder.load_image_folder("many", 16, 16, 0)
    assert len(calls) == 1  # no retry on every other file


def test_each_pixel_mode_is_scaled_to_its_own_white(input_dir):
    folder = input_dir / "modes"
    folder.mkdir()
    full = (8, 8)
    Image.fromarray(np.full(full, 0.5, np.float32)).save(folder / "a_float_half.tif")
    Image.fromarray(np.full(full, 2.0, np.float32)).save(folder / "b_float_over.tif")
    Image.fromarray(np.full(full, np.nan, np.float32)).save(folder / "c_float_nan.tif")
    Image.fromarray(np.full(full, 65535, np.int32)).save(folder / "d_int_white.tif")
    Image.fromarray(np.full(full, 32768, np.int32)).save(folder / "e_int_half.tif")
    Image.fromarray(np.full(full, 65535, np.uint16)).save(folder / "f_16_white.png")
    Image.fromarray(np.full(full, 2**20, np.int32)).save(folder / "g_int_32bit.tif")
    Image.fromarray(np.full(full, -5, np.int32)).save(folder / "h_int_negative.tif")
    images, skipped = image_folder.load_image_folder("modes", 8, 8, 0)
    means = images.mean(dim=(1, 2, 3)).tolist()
    expected = [128 / 255, 1.0, 0.0, 1.0, 128 / 255, 1.0]
    assert means == pytest.approx(expected, abs=1e-6)
    assert [name for name, _ in skipped] == ["g_int_32bit.tif", "h_int_negative.tif"]
    assert all("white level is unknown" in reason for _, reason in skipped)

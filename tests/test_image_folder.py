"""Load Image Folder: real images from a folder of ComfyUI's input directory,
written with PIL into a temporary input directory, as one IMAGE batch for the
Calibrate node."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from noise_calibration.nodes.calibrate_node import Calibrate
from noise_calibration.noisecal.store import CalibrationError
from noise_calibration.noisecal_host import image_folder

NODE_ID = "NoiseCalibrationLoadImageFolder"
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


@pytest.fixture
def input_dir(tmp_path, monkeypatch):
    """A temporary ComfyUI input directory: set with folder_paths.set_input_directory
    (as ComfyUI's --input-directory does) where the host has folder_paths, else
    through image_folder.input_directory (the registry snapshot ships no
    folder_paths module). Restored afterwards."""
    root = tmp_path / "input"
    root.mkdir()
    try:
        import folder_paths
    except ImportError:
        monkeypatch.setattr(image_folder, "input_directory", lambda: root)
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
    assert image_folder.folder_choices() == [".", "cats", "set2", "set10"]
    kind, options = node().INPUT_TYPES()["required"]["folder"]
    assert kind == [".", "cats", "set2", "set10"] and options["default"] == "."


def test_input_types_never_raise_without_an_input_directory(input_dir, monkeypatch):
    input_dir.rmdir()
    assert image_folder.folder_choices() == ["."]
    assert node().INPUT_TYPES()["required"]["folder"][0] == ["."]
    monkeypatch.setattr(image_folder, "input_directory", lambda: None)  # outside ComfyUI
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
    latents, source = Calibrate._latents(None, images, vae, 64, 48)
    assert source == "images + VAE"
    assert latents.shape == (count, 4, 6, 8)
    assert torch.isfinite(latents).all()

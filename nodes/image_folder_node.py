"""Load Image Folder node: real images for the Calibrate node without another pack."""

from __future__ import annotations

from ..noisecal_host import image_folder, input_folders
from . import tooltips
from .checks import ChecksInputs
from .common import CATEGORY, log
from .widgets import Combo, Int, input_types


class LoadImageFolder(ChecksInputs):
    TITLE = "Noise Calibration: Load Image Folder"
    DESCRIPTION = (
        "Loads every image of a folder in ComfyUI's input directory as one IMAGE batch, "
        "for the Calibrate node's image input (with a VAE): 16-64 real images work well. "
        "Files are read in natural name order (img2 before img10), subfolders are not "
        "read, and files that are not images are skipped with the reason shown. Each "
        "image is turned upright (EXIF), alpha is dropped, and it is scaled so its short "
        "side covers width x height, then center-cropped to exactly that size "
        "(rounded down to a multiple of 8). Pipes, devices and other special files are "
        "skipped unopened; a batch larger than half of the free RAM is refused before "
        "any image is decoded."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "INT")
    RETURN_NAMES = ("images", "count")
    OUTPUT_TOOLTIPS = (
        "The images as one batch of width x height, for Calibrate's image input.",
        "How many images were loaded.",
    )
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        size = dict(min=16, max=16384, step=8)
        return input_types(
            tooltips.IMAGE_FOLDER,
            required=[
                Combo("folder", input_folders.folder_choices(), input_folders.THIS_FOLDER),
                Int("width", 512, **size),
                Int("height", 512, **size),
                Int("limit", 64, min=0, max=4096),
            ],
        )

    @classmethod
    def VALIDATE_INPUTS(cls, folder=None, width=None, height=None, limit=None):
        problem = cls.input_problem({"width": width, "height": height, "limit": limit}, bounds=True)
        if problem:
            return problem
        if folder is not None:
            problem = input_folders.folder_problem(folder)
        return problem or True

    @classmethod
    def IS_CHANGED(cls, folder=None, **kwargs):
        # the folder's files change without any input changing: re-run then
        return input_folders.folder_fingerprint(folder)

    def load(self, folder, width, height, limit):
        self.check(width=width, height=height, limit=limit)
        images, skipped = image_folder.load_image_folder(folder, width, height, limit)
        text = image_folder.summary(images, folder, skipped)
        log.info("Load Image Folder: %s", text)
        return {"ui": {"text": [text]}, "result": (images, images.shape[0])}

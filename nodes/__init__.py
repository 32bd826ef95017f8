"""ComfyUI node adapters: thin wrappers over noisecal (math) and noisecal_host.

Always imported relatively from the pack's root (ComfyUI has its own
top-level `nodes` module). Node ids and widget names never change: shared
workflow files must keep loading.
"""

from ..noisecal_host import folders
from .apply_node import Apply
from .calibrate_node import Calibrate
from .correction_node import NoiseLevelCorrection
from .empty_conditioning_node import EmptyConditioning
from .guidance_node import NoiseAwarenessGuidance
from .image_folder_node import LoadImageFolder
from .noiseshift_node import NoiseShift
from .reference_node import LoadReference, ReferenceDecode
from .spectral_node import SpectralScheduler

folders.register_folder()

NODE_CLASS_MAPPINGS = {
    "NoiseCalibrationCalibrate": Calibrate,
    "NoiseCalibrationNoiseShift": NoiseShift,
    "NoiseCalibrationNoiseAwarenessGuidance": NoiseAwarenessGuidance,
    "NoiseCalibrationSpectralScheduler": SpectralScheduler,
    "NoiseCalibrationNoiseLevelCorrection": NoiseLevelCorrection,
    "NoiseCalibrationLoadImageFolder": LoadImageFolder,
    "NoiseCalibrationEmptyConditioning": EmptyConditioning,
    "NoiseCalibrationApply": Apply,
    "NoiseCalibrationLoadReference": LoadReference,
    "NoiseCalibrationReferenceDecode": ReferenceDecode,
}
NODE_DISPLAY_NAME_MAPPINGS = {node_id: cls.TITLE for node_id, cls in NODE_CLASS_MAPPINGS.items()}

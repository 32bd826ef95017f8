"""The dead-leaves networks (``models/reference/sd3_dead_leaves_m32`` and the native
``..._m16``) as the benchmarks use them: loaded with ComfyUI's loader, sampled
through KSampler, and the true data at N they are measured against (patch SWD,
edge distance and spectral FD, each with its floor from a second true set)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.lib import host  # noqa: F401  (bootstraps ComfyUI and the pack)

# isort: split
from bench.lib.run import ROOT
from bench.lib.seeds import CAL_DATA_SEED, SAMPLE_SEED
from noise_calibration.noisecal.spectra import fourier_power
from noise_calibration.noisecal.testing import dead_leaves as dl
from noise_calibration.noisecal.testing import metrics, swd
from noise_calibration.noisecal_host.testing import sampling

MODELS = ROOT / "models" / "reference"
M_FILE = MODELS / "sd3_dead_leaves_m32.safetensors"
NATIVE_FILE = MODELS / "sd3_dead_leaves_m16.safetensors"
TRUE_SEED, FLOOR_SEED, POWER_SEED = 7001, 7002, 7003
SCHEDULER = "simple"


def load(path: Path):
    import comfy.sd

    t0 = time.perf_counter()
    model = comfy.sd.load_diffusion_model(str(path))
    return model, time.perf_counter() - t0


class TrueSets:
    """True data at N = n: the reference and floor sets (images), the power, cal latents."""

    def __init__(self, n: int, count: int, cal_count: int):
        self.n = n
        self.ref = dl.render(dl.DeadLeaves(), count, 2 * n, TRUE_SEED)
        self.floor_set = dl.render(dl.DeadLeaves(), count, 2 * n, FLOOR_SEED)
        power_lat = dl.sample_latents(4 * count, n, POWER_SEED)
        self.power = fourier_power(power_lat.double()).reshape(-1, n, n).mean(dim=0)
        self.cal = dl.sample_latents(cal_count, n, CAL_DATA_SEED)
        self.floors = self.measure(dl.to_latent(self.floor_set))

    def measure(self, latents) -> dict:
        """SWD and edge distance of the images of `latents` to the reference set, FD of the
        latents to the true power."""
        images = dl.to_image(latents.float())
        return {
            "swd": swd.patch_swd(images, self.ref)["average"],
            "edge": swd.edge_distance(images, self.ref)["average"],
            "fd": metrics.frechet_distance(latents.float(), self.power),
        }


def sample(model, positive, n, count, sampler, steps):
    lat = sampling.empty_latent(model, n, n, count)
    out = sampling.ksample(
        model,
        lat,
        positive,
        seed=SAMPLE_SEED,
        steps=steps,
        sampler_name=sampler,
        scheduler=SCHEDULER,
    )
    return model.model.process_latent_in(out)

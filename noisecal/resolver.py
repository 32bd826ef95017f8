"""Pick the calibration for the latent size being sampled, once per size.

NoiseShift and Noise Level Correction both install a function of
``(sigma, latent (h, w))`` that needs the calibration for the resolution being
sampled; the resolution is only known at sampling time. A resolver looks in
the records connected to the node first, then the store (the store's lookup
policy: exact size, near size, or two sizes bracketing the token count), and
caches what each size resolves to.
"""

from __future__ import annotations

import torch

from .calibration_record import record_latent_size
from .errors import CalibrationNotFound
from .size_lookup import choose_sizes, not_found


class CalibrationResolver:
    """Subclasses set ``what`` (for messages) and ``build(records, weights)``,
    which returns a map sigma -> sigma.

    ``on_missing`` is "error" (raise CalibrationNotFound with instructions) or
    "pass through" (plain levels, one warning per size through ``warn``).
    """

    what = "calibration"

    def __init__(
        self,
        key,
        provided,
        calibration_store,
        *,
        strength=1.0,
        on_missing="error",
        max_level=None,
        warn=None,
        parameterization=None,
    ):
        self.key = key
        self.parameterization = parameterization  # files of another one are refused
        self.provided = {record_latent_size(r): r for r in provided}
        self.store = calibration_store
        self.strength = strength
        self.on_missing = on_missing
        self.max_level = max_level
        self.warn = warn or (lambda message: None)
        self.maps: dict[tuple, object | None] = {}
        self.sources: dict[tuple, tuple[str, ...]] = {}

    def build(self, records, weights):
        raise NotImplementedError

    def map_for(self, latent_hw):
        latent_hw = tuple(int(v) for v in latent_hw)
        if latent_hw not in self.maps:
            self.maps[latent_hw] = self._resolve(latent_hw)
        return self.maps[latent_hw]

    def _resolve(self, latent_hw):
        try:
            chosen = choose_sizes(list(self.provided), latent_hw)
            if chosen is not None:
                records = [self.provided[size] for size, _ in chosen]
                weights = [w for _, w in chosen]
                sources = tuple("connected calibration" for _ in records)
            else:
                if self.store is None:
                    raise not_found(self.key, latent_hw, list(self.provided))
                match = self.store.find(self.key, latent_hw, self.parameterization)
                records, weights, sources = match.records, match.weights, match.paths
            built = self.build(records, weights)
        except CalibrationNotFound as exc:
            if self.on_missing == "error":  # raised inside the sampler: name our node
                raise CalibrationNotFound(f"{self.what} node: {exc}") from None
            self.warn(f"{self.what} passes through: {exc}")
            return None
        self.sources[latent_hw] = sources
        return built

    def __call__(self, sigma: torch.Tensor, latent_hw) -> torch.Tensor:
        if latent_hw is None:
            return sigma
        level_map = self.map_for(latent_hw)
        return sigma if level_map is None else level_map(sigma)

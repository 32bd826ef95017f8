"""A few stored weight values of a checkpoint, kept in its calibration so that
the same weights stored at another precision find it.

UNETLoader's weight_dtype (fp8) or a bf16 copy of an fp16 file stores other
values, so the checkpoint fingerprint (a hash of them) differs. Rounding both
samples to the coarser of the two dtypes tells the same checkpoint (nearly all
values equal) from another one (few equal). Measured on the pack's reference
network, a calibration made at fp16 serves the fp8 weights about as well as
recalibrating (bench/lora_fp8.py, docs/compatibility.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# mantissa bits: which of two dtypes is coarser (rounding both to it compares them)
MANTISSA_BITS = {
    "float32": 23,
    "float16": 10,
    "bfloat16": 7,
    "float8_e4m3fn": 3,
    "float8_e4m3fnuz": 3,
    "float8_e5m2": 2,
    "float8_e5m2fnuz": 2,
}
# share of sampled values that must agree. A file loaded at a lower precision
# agrees in all; another checkpoint in few; a fine-tune or merge that moved every
# weight by 1% in 94-96% at fp8 (tests/test_weight_sample.py), by 0.3% in 98-100%:
# such a close copy is not told apart at fp8 precision
SAME_WEIGHTS = 0.99
MAX_TENSORS = 64
MAX_VALUES = 256  # per tensor


@dataclass(frozen=True)
class WeightSample:
    """Per sampled tensor: its dtype and a few of its values, plus the layout
    (a hash of every weight's name and shape, not its dtype)."""

    layout: str
    dtypes: tuple[str, ...]
    values: tuple[tuple[float, ...], ...]

    def __post_init__(self):
        if not isinstance(self.layout, str) or not self.layout:
            raise ValueError("weights: layout must be a non-empty string")
        if not 0 < len(self.dtypes) == len(self.values) <= MAX_TENSORS:
            raise ValueError(f"weights: 1-{MAX_TENSORS} tensors, one dtype and values list each")
        for dtype, values in zip(self.dtypes, self.values, strict=True):
            if dtype not in MANTISSA_BITS:
                raise ValueError(f"weights: dtype {dtype!r} is not one of {sorted(MANTISSA_BITS)}")
            if not 0 < len(values) <= MAX_VALUES:
                raise ValueError(f"weights: 1-{MAX_VALUES} values a tensor")

    def to_json(self) -> dict:
        return {
            "layout": self.layout,
            "dtypes": list(self.dtypes),
            "values": [list(v) for v in self.values],
        }

    @classmethod
    def from_json(cls, data: dict) -> WeightSample:
        try:
            values = tuple(tuple(float(v) for v in row) for row in data["values"])
            return cls(data["layout"], tuple(data["dtypes"]), values)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"weights: {exc}") from None


def agreement(a: WeightSample, b: WeightSample) -> float:
    """Share of sampled values equal once each tensor's pair is rounded to the
    coarser of its two dtypes (0 where the layouts or sample shapes differ)."""
    if a.layout != b.layout or [len(v) for v in a.values] != [len(v) for v in b.values]:
        return 0.0
    equal = total = 0
    for dtype_a, dtype_b, values_a, values_b in zip(
        a.dtypes, b.dtypes, a.values, b.values, strict=True
    ):
        coarse = min(dtype_a, dtype_b, key=MANTISSA_BITS.__getitem__)
        rounded = [_rounded(v, coarse) for v in (values_a, values_b)]
        equal += int((rounded[0] == rounded[1]).sum())
        total += len(values_a)
    return equal / total


def _rounded(values, dtype: str) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).to(getattr(torch, dtype)).float()

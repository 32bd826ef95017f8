"""Fuzzing the generated-set cache reader with mutated cache files.

A valid cache file of a tiny SD3's generated set is mutated: bytes flipped,
cut or appended, its header or metadata edited, its tensor swapped, reshaped
or recast (with its metadata kept, or rewritten to describe the new tensor).
The reader must return exactly the stored set or None (generate again):
never a raw exception, never another set. Derandomized with a fixed budget
for CI; NOISECAL_FUZZ_EXAMPLES raises it.
"""

import hashlib
import json
import os

import pytest
import torch
from safetensors.torch import save

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("NOISECAL_FUZZ_EXAMPLES", "30"))
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False)
    | st.sampled_from([0, 1, -1, 8, 16, "F32", "F16", "I64", "BOOL", "latents", ""])
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
DTYPES = [torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int64, torch.bool]


@pytest.fixture(scope="module")
def world(pack, tmp_path_factory):
    """A tiny SD3's key and settings, its generated set and the valid cache file's bytes."""
    from noise_calibration.noisecal_host import fingerprint, self_calibration
    from noise_calibration.noisecal_host.testing import tiny_models

    tiny = tiny_models.tiny_sd3()
    settings = self_calibration.GenerationSettings(64, 64, 2, 2, 1.0, "euler", "simple", 0, "")
    key = fingerprint.checkpoint_key(tiny.patcher)
    folder = tmp_path_factory.mktemp("cache")
    latents, _ = self_calibration.generated_set(tiny.patcher, key, settings, folder)
    path = self_calibration.cache_path(folder, key, settings)
    return {
        "sc": self_calibration,
        "key": key,
        "settings": settings,
        "channels": latents.shape[1],
        "latents": latents,
        "path": path,
        "valid": path.read_bytes(),
    }


def split(data: bytes) -> tuple[dict, bytes]:
    """(header dict, tensor bytes) of a safetensors file."""
    size = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + size]), data[8 + size :]


def join(header, body: bytes, indent=None) -> bytes:
    """A safetensors file from a header (any JSON value) and tensor bytes."""
    text = json.dumps(header, indent=indent, allow_nan=True).encode()
    return len(text).to_bytes(8, "little") + text + body


def paths(value, prefix=()):
    """Every path into a JSON value (dict keys and list indices)."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def replaced(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = replaced(value[head], rest, new)
    return copy


def described(latents, metadata):
    """`metadata` rewritten to describe `latents` (shape, dtype, checksum)."""
    raw = latents.contiguous().view(torch.uint8).numpy().tobytes()
    return {
        **metadata,
        "shape": json.dumps(list(latents.shape)),
        "dtype": str(latents.dtype).removeprefix("torch."),
        "sha256": hashlib.sha256(raw).hexdigest(),
    }


def flipped(draw, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        out[draw(st.integers(0, len(out) - 1))] ^= draw(st.integers(1, 255))
    return bytes(out)


def cut_or_grown(draw, data: bytes) -> bytes:
    if draw(st.booleans()):
        return data[: draw(st.integers(0, len(data) - 1))]
    return data + draw(st.binary(min_size=1, max_size=64))


def header_edited(draw, data: bytes) -> bytes:
    """One to three header values replaced or dropped, or the length prefix changed."""
    header, body = split(data)
    if draw(st.integers(0, 4)) == 0:
        return draw(st.integers(0, 2**64 - 1)).to_bytes(8, "little") + data[8:]
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(header))))
        holder = header
        for step in where[:-1]:
            holder = holder[step]
        if where and isinstance(holder, dict) and draw(st.booleans()):
            smaller = {k: v for k, v in holder.items() if k != where[-1]}
            header = replaced(header, where[:-1], smaller)
        else:
            header = replaced(header, where, draw(JSON_VALUES))
    return join(header, body)


def metadata_edited(draw, world, data: bytes) -> bytes:
    """A metadata field changed, dropped or added; or settings with one field changed."""
    header, body = split(data)
    metadata = dict(header["__metadata__"])
    field = draw(st.sampled_from([*metadata, "extra"]))
    kind = draw(st.sampled_from(["text", "drop", "swap", "setting"]))
    if kind == "drop":
        metadata.pop(field, None)
    elif kind == "swap":
        metadata[field] = metadata[draw(st.sampled_from(sorted(metadata)))]
    elif kind == "setting":
        values = json.loads(metadata["settings"])
        values[draw(st.sampled_from(sorted(values)))] = draw(JSON_VALUES)
        metadata["settings"] = json.dumps(values, sort_keys=True)
    else:
        metadata[field] = draw(st.text(max_size=80) | st.sampled_from(["", "float32", "[]"]))
    return join({**header, "__metadata__": metadata}, body)


def tensor_changed(draw, world, data: bytes) -> bytes:
    """The tensor swapped, reshaped, recast or joined by others; the metadata kept, or
    rewritten to describe it where that cannot make another valid set."""
    metadata = split(data)[0]["__metadata__"]
    x = world["latents"]
    kind = draw(st.sampled_from(["reshape", "recast", "swap", "zeros", "nan", "extra", "rename"]))
    if kind == "reshape":
        dims = draw(st.sampled_from([[x.numel()], [2, -1], [2, x.shape[1], -1], [2, -1, 4, 4]]))
        new = x.reshape(dims) if draw(st.booleans()) else x.unsqueeze(draw(st.integers(0, 4)))
    elif kind == "recast":
        new = (x * draw(st.sampled_from([1, 100]))).to(draw(st.sampled_from(DTYPES)))
    elif kind == "swap":  # other values of the right shape and dtype: checksum kept
        new = draw(st.sampled_from([x.flip(0), x * 1.5, x + 1e-6, torch.randn_like(x)]))
    else:
        new = torch.zeros_like(x) if kind == "zeros" else x.clone()
    if kind == "nan":
        new.view(-1)[draw(st.integers(0, x.numel() - 1))] = float("nan")
    tensors = {"latents": new}
    if kind == "extra":
        tensors["other"] = draw(st.sampled_from([x, x[:1], torch.zeros(1)]))
    elif kind == "rename":
        tensors = {draw(st.sampled_from(["Latents", "latent", "samples"])): new}
    keep = kind == "swap" or draw(st.booleans())
    return save(tensors, metadata=metadata if keep else described(new, metadata))


def reformatted(draw, data: bytes) -> bytes:
    """The same file, its header JSON written another way (indented): still valid."""
    header, body = split(data)
    return join(header, body, indent=draw(st.sampled_from([None, 1, 2])))


@st.composite
def mutated_files(draw, world):
    """(kind, bytes): the valid cache file, mutated one way."""
    data = world["valid"]
    kind = draw(st.sampled_from(["flip", "cut", "header", "metadata", "tensor", "same"]))
    if kind == "flip":
        return kind, flipped(draw, data)
    if kind == "cut":
        return kind, cut_or_grown(draw, data)
    if kind == "header":
        return kind, header_edited(draw, data)
    if kind == "metadata":
        return kind, metadata_edited(draw, world, data)
    if kind == "tensor":
        return kind, tensor_changed(draw, world, data)
    return kind, reformatted(draw, data)


def read(world, data: bytes):
    world["path"].write_bytes(data)
    return world["sc"]._read_cache(
        world["path"], world["key"], world["settings"], world["channels"]
    )


def test_the_valid_file_is_read_back_exactly(world):
    assert torch.equal(read(world, world["valid"]), world["latents"])


def test_mutated_cache_files_give_the_stored_set_or_none(world):
    outcomes = {"reused": 0, "regenerated": 0}

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(mutated_files(world))
    def run(case):
        kind, data = case
        out = read(world, data)
        if kind == "same":  # a valid file, whatever its JSON layout
            assert out is not None
        if out is None:
            outcomes["regenerated"] += 1
            return
        assert out.dtype == torch.float32 and torch.equal(out, world["latents"]), kind
        outcomes["reused"] += 1

    run()
    print(f"cache fuzz: {sum(outcomes.values())} inputs, {outcomes}, raw exceptions 0")
    assert outcomes["regenerated"], outcomes

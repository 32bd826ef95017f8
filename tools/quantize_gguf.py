"""Write a reference network (models/reference/*.safetensors) as a quantized GGUF file
that city96's ComfyUI-GGUF loader (UnetLoaderGGUF) reads.

    python tools/quantize_gguf.py models/reference/sd3_dead_leaves_m32.safetensors \\
        --type Q8_0 --out /tmp/gguf/sd3_dead_leaves_m32-Q8_0.gguf

Needs the `gguf` package (pip install gguf). The file follows that loader's
converter (tools/convert.py of ComfyUI-GGUF): architecture "sd3", quantization
version, the state dict's own key names, 1-D and small tensors (<= 1024 values)
kept in F16 as it keeps them for an fp16 source. Where the converter then needs
a patched llama.cpp to quantize, this uses the gguf package's own quantizers
(Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): the 2-D weight matrices whose rows fit whole
blocks are quantized, everything else stays F16.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SMALL = 1024  # values: tensors this small stay F16 (the converter's threshold)
TYPES = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")


def qtype_for(gguf, name: str, shape: tuple, wanted):
    """The GGML type a tensor is written in."""
    n = 1
    for d in shape:
        n *= d
    block = gguf.GGML_QUANT_SIZES[wanted][0]
    if len(shape) == 2 and n > SMALL and name.endswith(".weight") and shape[-1] % block == 0:
        return wanted
    return gguf.GGMLQuantizationType.F16


def convert(src: Path, dst: Path, type_name: str) -> dict:
    """Write `src` as GGUF with the 2-D weights in `type_name`; counts by written type."""
    import gguf
    from safetensors.numpy import load_file

    wanted = getattr(gguf.GGMLQuantizationType, type_name)
    state = load_file(str(src))
    writer = gguf.GGUFWriter(path=None, arch="sd3")
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{type_name}"))
    counts: dict[str, int] = {}
    for name in sorted(state):
        data = state[name].astype("float32")
        qtype = qtype_for(gguf, name, data.shape, wanted)
        if qtype == gguf.GGMLQuantizationType.F16:
            data = data.astype("float16")
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        counts[qtype.name] = counts.get(qtype.name, 0) + 1
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_name(dst.name + ".part")  # whole file or none: renamed when written
    writer.write_header_to_file(path=str(part))
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(part, dst)
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="a reference network's .safetensors")
    parser.add_argument("--type", default="Q8_0", choices=TYPES, help="quantization type")
    parser.add_argument("--out", type=Path, required=True, help="the .gguf file to write")
    args = parser.parse_args(argv)
    counts = convert(args.src, args.out, args.type)
    size = args.out.stat().st_size
    print(f"{args.out}: {size} bytes; tensors by type: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

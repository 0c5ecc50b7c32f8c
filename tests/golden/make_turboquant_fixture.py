#!/usr/bin/env python3
"""Writes tests/golden/turboquant_seed5.safetensors with turboquant-vllm's own Python code.

The independent check of dsv4-calib's TQ codec (quant/turboquant.h): a few random matrices
quantized by upstream's converter function (checkpoint.py `_compress_tensor`, which is what
`save_tq3_checkpoint` writes as `<name>.tq_packed` / `<name>.tq_norms`), decoded by upstream's
`unpack_indices` + `PolarQuantTorch.dequantize`, plus its codebooks and rotation signs.
tests/quant/test_turboquant.cpp (TurboquantFixture.*) reads the file; CI does not run this script.

Upstream is the PyPI package turboquant-plus-vllm (import name turboquant_vllm; the PyPI project
named turboquant-vllm is another one). Its package __init__ imports vLLM, so the modules are
loaded under a bare package stub: torch_ops.py, weight_quant.py and checkpoint.py need only torch
and scipy (Debian: apt-get install python3-torch python3-scipy; run with /usr/bin/python3).

    /usr/bin/python3 tests/golden/make_turboquant_fixture.py                 # pip download 0.13.12
    /usr/bin/python3 tests/golden/make_turboquant_fixture.py --source DIR    # DIR/turboquant_vllm/*.py
"""

import argparse
import importlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import types
import zipfile

import torch

VERSION = "0.13.12"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "turboquant_seed5.safetensors")


def upstream_modules(source):
    """torch_ops, weight_quant, checkpoint from DIR/turboquant_vllm, or a downloaded wheel."""
    if source is None:
        tmp = tempfile.mkdtemp(prefix="tq_wheel_")
        subprocess.run([sys.executable, "-m", "pip", "download", f"turboquant-plus-vllm=={VERSION}", "--no-deps",
                        "-d", tmp], check=True)
        wheel = [f for f in os.listdir(tmp) if f.endswith(".whl")][0]
        zipfile.ZipFile(os.path.join(tmp, wheel)).extractall(tmp)
        source = tmp
    pkg = types.ModuleType("turboquant_vllm")
    pkg.__path__ = [os.path.join(source, "turboquant_vllm")]
    sys.modules["turboquant_vllm"] = pkg  # skips __init__ (vLLM imports)
    mods = [importlib.import_module("turboquant_vllm." + m) for m in ("torch_ops", "weight_quant", "checkpoint")]
    return mods, source


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    codes = {torch.float32: "F32", torch.uint8: "U8"}
    for name, t in tensors.items():
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", help="a directory holding turboquant_vllm/ (a checkout or an unpacked wheel)")
    args = ap.parse_args()
    (torch_ops, weight_quant, checkpoint), source = upstream_modules(args.source)

    g = torch.Generator().manual_seed(5)
    cases = {  # name: (bits, weight)
        "w3_a": (3, torch.randn(6, 256, generator=g) * 0.02),
        "w3_pad": (3, torch.randn(5, 200, generator=g) * 0.05),  # padded to 256 with zeros
        "w4_a": (4, torch.randn(4, 128, generator=g)),
        "w2_a": (2, torch.randn(4, 128, generator=g) * 3.0),
        "w3_expert3d": (3, torch.randn(2, 3, 128, generator=g) * 0.01),  # flattened to [6, 128]
    }
    edge = torch.randn(3, 128, generator=g) * 0.02
    edge[0] = 0.0                   # a zero group: norm 0
    edge[1, 5] = 1.0                # an outlier
    cases["w3_edge"] = (3, edge)

    tensors, meta = {}, {"turboquant_plus_vllm": VERSION, "torch": torch.__version__, "group_size": "128"}
    for bits in (2, 3, 4):
        q = torch_ops.PolarQuantTorch(128, bits, seed=42, device="cpu")
        tensors[f"codebook.b{bits}.centroids"] = q.centroids.float()
        tensors[f"codebook.b{bits}.boundaries"] = q.boundaries.float()
        if bits == 3:
            tensors["signs1"] = q.signs1.float()
            tensors["signs2"] = q.signs2.float()
    for name, (bits, w) in cases.items():
        q = torch_ops.PolarQuantTorch(128, bits, seed=42, device="cpu")
        packed, norms = checkpoint._compress_tensor(w.clone(), q, bits, 128)
        flat = w.reshape(-1, w.shape[-1])
        rows, cols = flat.shape
        idx = weight_quant.unpack_indices(packed, bits, 128)
        dq = q.dequantize(idx, norms.reshape(-1)).reshape(rows, -1)[:, :cols]
        tensors[name + ".w"] = flat.float()
        tensors[name + ".tq_packed"] = packed
        tensors[name + ".tq_norms"] = norms.float()
        tensors[name + ".dequant"] = dq.float().contiguous()
        meta[name + ".bits"] = str(bits)
    write_safetensors(OUT, tensors, meta)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes) from {source}")


if __name__ == "__main__":
    main()

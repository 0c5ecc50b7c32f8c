#!/usr/bin/env python3
"""Our RTN / GPTQ errors (dsv4-calib solve) against llm-compressor's RTN on one problem, fp32 and bf16 weights
(issue 27; docs/COMPATIBILITY.md). Not CI: needs llmcompressor==0.14.0.1 and compressed-tensors==0.19.0.
    python3 tests/golden/peer_rtn_compare.py [path/to/dsv4-calib]
"""
import json, subprocess, sys, torch
from safetensors.torch import save_file, load_file
from compressed_tensors.quantization import QuantizationArgs
from compressed_tensors.quantization.lifecycle.forward import fake_quantize
from llmcompressor.observers import Observer
B = sys.argv[1] if len(sys.argv) > 1 else "build/cpu/launch/dsv4-calib"
torch.manual_seed(0)
rows, cols = 256, 512
W = (torch.randn(rows, cols) * torch.rand(rows, 1) * 0.05).to(torch.bfloat16).float()
X = torch.randn(2048, cols) @ (torch.eye(cols) + 0.1 * torch.randn(cols, cols))
H = (X.T @ X / 2048).float()
save_file({"weight": W}, "/tmp/peer_rtn_w.safetensors"); save_file({"hessian": H}, "/tmp/peer_rtn_h.safetensors")
def rel(D): return float(torch.trace(D @ H @ D.T) / torch.trace(W @ H @ W.T))
for scheme, args in [("W8A16", dict(num_bits=8, strategy="group", group_size=128)),
                     ("W4A16", dict(num_bits=4, strategy="group", group_size=128)),
                     ("W4A16_ASYM", dict(num_bits=4, strategy="group", group_size=128, symmetric=False))]:
    r = json.loads(subprocess.run([B, "solve", "--weight", "/tmp/peer_rtn_w.safetensors", "--hessian", "/tmp/peer_rtn_h.safetensors",
                                   "--scheme", scheme, "--actorder", "none", "--out", f"/tmp/peer_rtn_{scheme}.safetensors", "--json"],
                                  capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
    qa = QuantizationArgs(**args)
    for wdt in (torch.float32, torch.bfloat16):
        obs = Observer.load_from_registry("memoryless_minmax", base_name="weight", args=qa)
        Wd = W.to(wdt)
        qp = obs(Wd).get_qparams(); scale, zp = qp["scale"], qp["zero_point"]
        Q = fake_quantize(Wd, scale, zp, qa).float()
        print(scheme, str(wdt), "ours rtn_rel", r["rtn_rel_error"], "llmc rtn_rel", rel(Q - W), "scale dtype", scale.dtype, "ours gptq", r["rel_error"])

#!/usr/bin/env python3
"""check_release_layout.py: reads a dsv4-calib synthetic checkpoint with independent code
(safetensors + torch, no dsv4-calib) and checks it is in the DeepSeek-V4 release layout; writes
the golden decode fixture that tests/model/test_golden_decode.cpp compares the C++ decoders to.

    dsv4-calib make-model --preset tiny --seed 1 --out /tmp/tiny1
    python3 tests/golden/check_release_layout.py /tmp/tiny1 --fixture tests/golden/tiny_seed1_decode.json

Needs: torch (float8_e4m3fn and float8_e8m0fnu, torch >= 2.7), safetensors, tokenizers.
Checks (each failure is printed; exit 1 on any):
  - every shard loads with safetensors.torch; the index's weight_map and total_size agree;
  - release dtypes: FP8 linears float8_e4m3fn with float8_e8m0fnu `.scale` of shape
    [ceil(out/128), ceil(in/128)]; experts int8 [out, in/2] with e8m0 `.scale` [out, in/32];
    hc_*/attn_sink/ape/gate.bias float32; tid2eid int64; norms/embed/head/compressor bfloat16;
  - decoded linears have RMS ~ 1/sqrt(fan_in) and finite values; no NaN scale;
  - tokenizer.json loads in HF tokenizers with BOS 0 / EOS 1 and the chat tokens.
"""
import argparse
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file

FP4_LUT = torch.tensor([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6])
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def decode_fp8(w, s):
    # torch decodes both formats itself: e4m3fn -> float, e8m0fnu -> 2^(b-127).
    scale = s.float().repeat_interleave(128, 0)[: w.shape[0]].repeat_interleave(128, 1)[:, : w.shape[1]]
    return w.float() * scale


def decode_fp4(w, s):
    b = w.view(torch.uint8)
    lo, hi = (b & 0xF).long(), (b >> 4).long()
    codes = torch.stack([lo, hi], dim=-1).reshape(w.shape[0], w.shape[1] * 2)  # low nibble = even input
    return FP4_LUT[codes] * s.float().repeat_interleave(32, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--fixture", help="write the golden decode fixture here")
    a = ap.parse_args()

    index = json.load(open(os.path.join(a.ckpt, "model.safetensors.index.json")))
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        part = load_file(os.path.join(a.ckpt, shard))
        for k in part:
            check(index["weight_map"].get(k) == shard, f"{k}: in {shard}, index says {index['weight_map'].get(k)}")
        tensors.update(part)
    check(set(tensors) == set(index["weight_map"]), "index and shards hold different tensor sets")
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    check(index["metadata"]["total_size"] == total, f"total_size {index['metadata']['total_size']} != {total}")

    decoded = {}
    for name, t in tensors.items():
        if name.endswith(".scale"):
            check(t.dtype == torch.float8_e8m0fnu, f"{name}: {t.dtype}")
            check(not torch.isnan(t.float()).any(), f"{name}: NaN scale")
            continue
        stem = name[: -len(".weight")] if name.endswith(".weight") else None
        if stem and stem + ".scale" in tensors:
            s = tensors[stem + ".scale"]
            if ".experts." in name and ".shared_experts." not in name:
                check(t.dtype == torch.int8, f"{name}: expert dtype {t.dtype}")
                check(list(s.shape) == [t.shape[0], t.shape[1] * 2 // 32], f"{name}: scale shape {list(s.shape)}")
                w = decode_fp4(t, s)
            else:
                check(t.dtype == torch.float8_e4m3fn, f"{name}: FP8 dtype {t.dtype}")
                want = [math.ceil(t.shape[0] / 128), math.ceil(t.shape[1] / 128)]
                check(list(s.shape) == want, f"{name}: scale shape {list(s.shape)} != {want}")
                w = decode_fp8(t, s)
            check(bool(torch.isfinite(w).all()), f"{name}: non-finite decoded value")
            r = w.pow(2).mean().sqrt().item() * math.sqrt(w.shape[1])
            check(0.5 < r < 2.0, f"{name}: RMS*sqrt(fan_in) = {r:.3f}")
            decoded[stem] = w
        elif name.endswith("tid2eid"):
            check(t.dtype == torch.int64, f"{name}: {t.dtype}")
        elif any(k in name for k in ("hc_", "attn_sink", ".ape", "gate.bias")):
            check(t.dtype == torch.float32, f"{name}: {t.dtype}")
        else:
            check(t.dtype == torch.bfloat16, f"{name}: {t.dtype}")

    try:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(os.path.join(a.ckpt, "tokenizer.json"))
        ids = tok.encode("<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜></think>ok<｜end▁of▁sentence｜>").ids
        check(ids[0] == 0 and ids[-1] == 1, f"tokenizer BOS/EOS ids {ids[0]}/{ids[-1]}")
        check(tok.token_to_id("<｜User｜>") is not None, "no <｜User｜> token")
    except ImportError:
        print("tokenizers not installed: tokenizer not checked")

    print(f"{len(tensors)} tensors, {total} bytes, {len(decoded)} decoded linears, {len(failures)} failures")
    for f in failures[:50]:
        print("FAIL", f)

    if a.fixture:
        pick = ["layers.1.attn.wq_a", "layers.1.attn.wo_b", "layers.2.ffn.experts.3.w1",
                "layers.3.ffn.experts.7.w2", "layers.0.ffn.shared_experts.w2", "mtp.0.e_proj"]
        out = {"magic": "dsv4-golden-decode", "version": 1,
               "source": "dsv4-calib make-model --preset tiny --seed 1, decoded by torch " + torch.__version__,
               "tensors": {}}
        for stem in pick:
            w = decoded[stem].double()
            out["tensors"][stem] = {"shape": list(w.shape), "sum": w.sum().item(), "sum_sq": w.pow(2).sum().item(),
                                    "first": [float(v) for v in decoded[stem].flatten()[:16]],
                                    "last": [float(v) for v in decoded[stem].flatten()[-16:]]}
        with open(a.fixture, "w") as f:
            json.dump(out, f, indent=1)
        print("wrote", a.fixture)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

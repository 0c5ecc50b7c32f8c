#!/usr/bin/env python3
"""peer_fake_dump.py: a BENCH_DUMP directory in bench_gptq_layer's format (bench/gptq_layer_dump.h)
made on the CPU at small sizes, for checking bench/peer_gptq_layer.py's reading and comparing code
without a GPU (bench/peer_side_by_side.sh with PEER_CPU_TEST=1). Its inputs are the bench's
(bench/peer_inputs.py); its "results" are round-to-nearest with absmax/7.5 bf16 scales, not GPTQ,
and its losses are Σ(w−q)²·cols: the comparison's numbers from such a dump mean nothing.

    python3 bench/peer_fake_dump.py DIR --experts 4 --hidden 256 --inter 128 --chunk 4
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_inputs as P  # noqa: E402

K, TOKENS = 4, 8192


def rtn(w):
    rows, cols = w.shape
    g = w.float().view(rows, cols // 128, 128)
    scale = (g.abs().amax(-1) / 7.5).to(torch.bfloat16).float().clamp_min(1e-12)
    codes = torch.clamp(torch.round(g / scale.unsqueeze(-1)), -8, 7)
    deq = (codes * scale.unsqueeze(-1)).to(torch.bfloat16).float()
    return codes.view(rows, cols).to(torch.int8), deq.view(rows, cols), scale


def write_family(d, name, count, rows, cols, seed, chunk, hessians):
    k = min(K, count)
    ws = [P.matrix(m, rows, cols, seed, chunk, "cpu").float() for m in range(count)]
    res = [rtn(w) for w in ws]
    torch.stack([P.hessian_sum(i, cols, TOKENS, seed, "cpu") for i in range(hessians)]).numpy().tofile(
        os.path.join(d, f"{name}_h.f32"))
    torch.stack(ws[:k]).numpy().tofile(os.path.join(d, f"{name}_w.f32"))
    torch.stack([r[0] for r in res[:k]]).numpy().tofile(os.path.join(d, f"{name}_codes.i8"))
    torch.stack([r[1] for r in res[:k]]).numpy().tofile(os.path.join(d, f"{name}_deq.f32"))
    torch.stack([r[2] for r in res[:k]]).numpy().tofile(os.path.join(d, f"{name}_scale.f32"))
    loss = torch.tensor([float(((w - r[1]) ** 2).sum()) * cols for w, r in zip(ws, res)], dtype=torch.float64)
    loss.numpy().tofile(os.path.join(d, f"{name}_loss.f64"))
    return {"k": k, "rows": rows, "cols": cols}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--inter", type=int, default=128)
    ap.add_argument("--chunk", type=int, default=4)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    fam = {"a": write_family(a.dir, "a", 2 * a.experts, a.inter, a.hidden, 11, a.chunk, 1),
           "b": write_family(a.dir, "b", a.experts, a.hidden, a.inter, 13, a.chunk, min(K, a.experts))}
    with open(os.path.join(a.dir, "meta.json"), "w") as f:
        json.dump({"chunk": a.chunk, "families": fam}, f)
    print(f"dump: {a.dir} (fake: RTN, first {K} matrices of each family, every matrix's loss)")
    return 0


if __name__ == "__main__":
    with torch.no_grad():
        sys.exit(main())

#!/usr/bin/env python3
"""gptq_torch.py: the same GPTQ algorithm in PyTorch on the same GPU, for the side-by-side ratio
with bench_gptq_layer (issue 8, goal >= 20x). Runs where torch with CUDA is installed (the GPU
machine); not part of CI.

It follows llm-compressor's quantize_weight (gptq_and_formats.md §1.4-1.6): act-order static
permutation, dead columns, relative damping 0.01, cholesky -> cholesky_inverse -> cholesky(upper),
128-column blocks with the per-column Python loop and the between-block matmul, INT4 symmetric
group-128 fake quantisation with qparams from the original W. fp32 throughout (the Cholesky chain
too, as torch does it). Timed per matrix on a few matrices of each layer shape and extrapolated to
the layer (512 x [2048, 4096] sharing one H, 256 x [4096, 2048] each with its own H), the
factorisation of the shared H counted once.

    python3 bench/gptq_torch.py [--matrices 4]
"""
import argparse
import time

import torch


def qparams(w, group=128):
    rows, cols = w.shape
    g = w.reshape(rows, cols // group, group)
    amax = torch.maximum(g.amin(-1).abs(), g.amax(-1).abs())
    scale = (amax / 7.5).to(torch.bfloat16).float()
    return torch.where(scale == 0, torch.full_like(scale, 1e-8), scale)


def prepare(h, damp_frac=0.01):
    perm = torch.argsort(torch.diag(h), descending=True, stable=True)
    h = h[perm][:, perm].clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    h += damp_frac * torch.mean(torch.diag(h)) * torch.eye(h.shape[0], device=h.device)
    l = torch.linalg.cholesky(h)
    hinv = torch.cholesky_inverse(l)
    u = torch.linalg.cholesky(hinv, upper=True)
    return perm, dead, u


def sweep(w, perm, dead, u, scale, block=128, group=128):
    rows, cols = w.shape
    w = w[:, perm].clone()
    w[:, dead] = 0
    q = torch.zeros_like(w)
    losses = torch.zeros(rows, device=w.device)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        w1 = w[:, i1:i2].clone()
        q1 = torch.zeros_like(w1)
        err1 = torch.zeros_like(w1)
        u1 = u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = w1[:, i]
            d = u1[i, i]
            s = scale[:, perm[i1 + i] // group]
            qc = torch.clamp(torch.round(col / s), -8, 7) * s
            q1[:, i] = qc
            losses += (col - qc) ** 2 / d ** 2
            e = (col - qc) / d
            w1[:, i:] -= e.unsqueeze(1).matmul(u1[i, i:].unsqueeze(0))
            err1[:, i] = e
        q[:, i1:i2] = q1
        w[:, i2:] -= err1.matmul(u[i1:i2, i2:])
    return q[:, torch.argsort(perm)], losses.sum() / 2


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--matrices", type=int, default=4)
    a = ap.parse_args()
    dev = torch.device("cuda")
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    torch.manual_seed(0)
    total = 0.0
    for name, count, rows, cols, shared in (("w1/w3", 512, 2048, 4096, True), ("w2", 256, 4096, 2048, False)):
        x = torch.randn(8192, cols, device=dev)
        h = 2.0 / 8192 * x.T @ x
        prepare(h)  # warm-up
        t_prep, (perm, dead, u) = timed(lambda: prepare(h))
        ws = [torch.randn(rows, cols, device=dev) * 0.02 for _ in range(a.matrices + 1)]
        sweep(ws[0], perm, dead, u, qparams(ws[0]))  # warm-up
        t_sweep = 0.0
        for w in ws[1:]:
            dt, _ = timed(lambda: sweep(w, perm, dead, u, qparams(w)))
            t_sweep += dt
        per_sweep = t_sweep / a.matrices
        family = (t_prep if shared else count * t_prep) + count * per_sweep
        total += family
        print(f"{name}: {count} x [{rows}, {cols}]: cholesky chain {t_prep:.4f} s per H, sweep {per_sweep:.3f} s "
              f"per matrix ({a.matrices} timed) -> {family:.1f} s")
    print(f"layer (extrapolated): {total:.1f} s")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""peer_hessian.py: llm-compressor's Hessian accumulation (accumulate_hessian, what its GPTQ forward
hook calls) on the activations of bench_hessian_throughput (bench/hessian_throughput.cu, regenerated
bit for bit by bench/peer_inputs.py), timed on the same GPU (issue 30). Not run in CI.

    python3 bench/peer_hessian.py [--scale 1]      # --scale 8: 1/8 of every token count (CPU checks)

Cases, as bench_hessian_throughput (mean of 10 calls after 2 warm-ups, synchronised):
  shared w1/w3 H: 49152 tokens x 4096 in one call, and as its sequential pipeline feeds it
    (96 samples of 512 tokens: one hook call each, the layer's 96 calibration samples);
  256 w2 H, 4096 tokens x 2048 each: one call per expert module (its hooks are per module).
TFLOP/s = 2·tokens·d² per Hessian / time, the same count as ours.
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_inputs as P  # noqa: E402


def mean_s(f, device, warm=2, runs=10):
    for _ in range(warm):
        f()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(runs):
        f()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args()
    import llmcompressor
    from llmcompressor.modifiers.gptq.helpers import accumulate_hessian, make_empty_hessian

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"llm-compressor {llmcompressor.__version__} accumulate_hessian, torch {torch.__version__}, {name}, "
          f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}")
    experts, w2_tokens, shared_tokens = 256 // a.scale, 4096 // a.scale, 49152 // a.scale
    x = P.bench_bf16_big(max(experts * w2_tokens * 2048, shared_tokens * 4096), 0, device)  # fill_random_bf16's buffer (its first part)

    def case(label, flops, d, inputs, one_module=False):
        """one_module: every input goes to one module's Hessian (its hook called once per sample)."""
        mods = [torch.nn.Linear(d, 1, bias=False, device="meta") for _ in inputs[:1 if one_module else None]]
        hs = [torch.zeros(d, d, device=device) for _ in mods]
        if one_module:
            mods, hs = mods * len(inputs), hs * len(inputs)
        n = torch.zeros((), device=device)

        def run():
            for m, h, inp in zip(mods, hs, inputs):
                accumulate_hessian(inp, m, h, n)

        s = mean_s(run, device, runs=a.runs)
        print(f"{label:<58} {s * 1e3:9.3f} ms {flops / s / 1e12:7.1f} TFLOP/s")

    d = 4096
    shared = x[: shared_tokens * d].view(1, shared_tokens, d)
    case(f"shared w1/w3 H: {shared_tokens} x {d}, one call", 2.0 * shared_tokens * d * d, d, [shared])
    per = shared_tokens // 96
    case(f"shared w1/w3 H: 96 calls of {per} x {d} (its pipeline)", 2.0 * shared_tokens * d * d, d,
         [shared[:, i * per:(i + 1) * per] for i in range(96)], one_module=True)
    d = 2048
    w2 = [x[e * w2_tokens * d:(e + 1) * w2_tokens * d].view(1, w2_tokens, d) for e in range(experts)]
    # The hooks hold one Hessian per module; the bench sums the 256 into one buffer per expert too.
    case(f"{experts} w2 H, {w2_tokens} tokens x {d}, one call per module", experts * 2.0 * w2_tokens * d * d, d, w2)
    return 0


if __name__ == "__main__":
    with torch.no_grad():
        sys.exit(main())

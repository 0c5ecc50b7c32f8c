"""peer_inputs.py: the inputs of bench/gptq_layer.cu and bench/hessian_throughput.cu, regenerated
bit for bit in PyTorch, so that the llm-compressor side-by-side (bench/peer_gptq_layer.py,
bench/peer_hessian.py) runs on exactly the matrices and activations our benches use.

Both CUDA benches draw every element from mix(index, seed), a 32-bit integer hash; here it runs
in int64 tensors with every product split so that nothing exceeds 2^63 (the low 32 bits of a
product are what the uint32 arithmetic keeps):
  weights: ((mix(i, seed) % 20001) - 10000) * 2e-6 in fp32, rounded to bf16 (ties to even);
  activations: bf16 bits sign | exponent 126..128 | 7 mantissa bits, all from mix(i, seed).
gptq_layer.cu fills each chunk of CHUNK matrices with seed = family seed + first matrix of the
chunk and indices from 0 within the chunk, so matrix m's values depend on the chunk size.
"""
import torch

M32 = 0xFFFFFFFF


def mul32(a, c):
    """(a * c) mod 2^32 for int64 tensors a in [0, 2^32) and a constant c < 2^32."""
    lo, hi = a & 0xFFFF, a >> 16
    return (lo * c + (((hi * c) & M32) << 16)) & M32


def mix(i, seed):
    """gptq_layer.cu's mix(i, seed) (hessian_throughput.cu's hash is mix(i, 0))."""
    h = mul32(i & M32, 2654435761) ^ mul32(i >> 32, 40503) ^ ((seed * 97531) & M32)
    h = h ^ (h >> 15)
    h = mul32(h, 2246822519)
    return h ^ (h >> 13)


def _indices(first, count, device):
    return torch.arange(first, first + count, dtype=torch.int64, device=device)


def bench_weights(first, count, seed, device):
    """fill_weights: `count` elements from index `first`, as bf16."""
    h = mix(_indices(first, count, device), seed)
    v = ((h % 20001).to(torch.float32) - 10000.0) * 2e-6
    return v.to(torch.bfloat16)


def bench_bf16(first, count, seed, device):
    """fill_bf16 / fill_random_bf16: `count` bf16 values from index `first`."""
    h = mix(_indices(first, count, device), seed)
    bits = (h & 0x8000) | ((126 + (h >> 20) % 3) << 7) | (h & 0x7F)
    bits = torch.where(bits >= 0x8000, bits - 0x10000, bits)
    return bits.to(torch.int16).view(torch.bfloat16)


def bench_bf16_big(count, seed, device, step=1 << 26):
    """bench_bf16(0, count, ...) filled in slices: the int64 temporaries of one call take ~40 bytes
    per element, too much for the 2^31 activations of bench_hessian_throughput at once."""
    out = torch.empty(count, dtype=torch.bfloat16, device=device)
    for first in range(0, count, step):
        out[first:first + step] = bench_bf16(first, min(step, count - first), seed, device)
    return out


def matrix(m, rows, cols, seed, chunk, device):
    """Matrix m [rows, cols] of a gptq_layer.cu family with this seed, swept in chunks of `chunk`."""
    done = (m // chunk) * chunk
    per = rows * cols
    return bench_weights((m - done) * per, per, seed + done, device).view(rows, cols)


def hessian_sum(i, cols, tokens, seed, device):
    """Hessian i of a gptq_layer.cu family: XᵀX of X [tokens, cols] = fill_bf16(seed + 1000 + i), in fp32.
    (The bench sums on tensor cores: entries agree to fp32 summation order, not bit for bit.)"""
    x = bench_bf16(0, tokens * cols, seed + 1000 + i, device).view(tokens, cols).float()
    return x.t() @ x

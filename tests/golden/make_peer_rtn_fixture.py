#!/usr/bin/env python3
"""Golden RTN fixture: what llm-compressor's round-to-nearest gives on a BF16 model (issue 27).

    pip install --no-deps llmcompressor==0.14.0.1 compressed-tensors==0.19.0 && pip install loguru
    python3 tests/golden/make_peer_rtn_fixture.py --out tests/golden/peer_rtn_seed4.safetensors

A user of the peer quantizes the BF16 copy of the release: its weight observer (memoryless_minmax,
the default for weights) runs calculate_qparams on bf16 min/max, and compressed-tensors' fake
quantization divides the bf16 weight by the bf16 scale *in bf16* (and adds the zero point in bf16)
before rounding to a code, then multiplies back in bf16. Its GPTQ sweep divides in fp32 (the weight
is widened), so only this RTN path has the bf16 quotient. tests/quant/test_quantizer.cpp
(QuantizerPeerRtn) requires quantizer_rtn(..., QuotientArith::kBf16Model) to give these values
bit for bit, and the fp32-quotient RTN to differ from them for 8 bits.

Problem (seed 4): W [32, 512] = bf16(N(0,1) * row scale U(0.01, 0.1)), with a few outliers.
Tensors: weight F32 [32, 512] (bf16-exact); per scheme s: s.dequant F32 [32, 512] (llm-compressor's
fake-quant weight, exact bf16 values). Metadata: versions, the schemes' arguments, the command.
"""
import argparse
import json

import torch
from safetensors.torch import save_file

import compressed_tensors
import llmcompressor
from compressed_tensors.quantization import QuantizationArgs
from compressed_tensors.quantization.lifecycle.forward import fake_quantize
from llmcompressor.observers import Observer

SCHEMES = {
    "int8_group128": dict(num_bits=8, strategy="group", group_size=128),
    "int8_channel": dict(num_bits=8, strategy="channel"),
    "int4_group128": dict(num_bits=4, strategy="group", group_size=128),
    "int4_group128_asym": dict(num_bits=4, strategy="group", group_size=128, symmetric=False),
}


def problem():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(32, 512, generator=g) * (0.01 + 0.09 * torch.rand(32, 1, generator=g))
    w[torch.randint(0, 32, (8,), generator=g), torch.randint(0, 512, (8,), generator=g)] *= 8.0
    return w.to(torch.bfloat16)


def peer_rtn(w_bf16, args):
    qp = Observer.load_from_registry("memoryless_minmax", base_name="weight", args=args)(w_bf16).get_qparams()
    assert qp["scale"].dtype == torch.bfloat16
    return fake_quantize(w_bf16, qp["scale"], qp["zero_point"], args)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    out = ap.parse_args().out
    w = problem()
    tensors = {"weight": w.float()}
    for name, kw in SCHEMES.items():
        d = peer_rtn(w, QuantizationArgs(**kw))
        assert d.dtype == torch.bfloat16
        tensors[f"{name}.dequant"] = d.float()
    meta = {"llmcompressor": llmcompressor.__version__, "compressed_tensors": compressed_tensors.__version__,
            "torch": torch.__version__, "schemes": json.dumps(SCHEMES),
            "command": "python3 tests/golden/make_peer_rtn_fixture.py --out " + out}
    save_file(tensors, out, metadata=meta)


if __name__ == "__main__":
    main()

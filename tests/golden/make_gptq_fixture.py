#!/usr/bin/env python3
"""Golden GPTQ fixture from llm-compressor's own solver (tests/quant/test_gptq_golden.cpp).

    pip install --no-deps llmcompressor==0.14.0.1 compressed-tensors==0.19.0 && pip install loguru
    python3 tests/golden/make_gptq_fixture.py --out tests/golden/gptq_w4a16_seed3.safetensors

Problem (seed 3, fp32, CPU): W [64, 256] ~ N(0, 0.05^2); 2048 correlated activation tokens x
(latent N(0,1) with a 0.97^k spectrum mixed by a Gaussian matrix, channel 3 scaled x20). H is
built by llm-compressor's own accumulate_hessian + the 1/num_samples of prepare_batch. Note
accumulate_hessian counts inp.shape[0] (sequences), not tokens, as samples: the tokens are
passed as [2048, 1, 256] so that num_samples = 2048 and H = 2/2048 * sum x x^T exactly.

Qparams: llm-compressor's default weight observer (memoryless_minmax) on the fp32 W, i.e.
calculate_qparams in fp32 (scale_dtype None -> fp32 scales). Then
llmcompressor.modifiers.gptq.gptq_quantize.quantize_weight(W[None], H[None], scale[None],
zp[None], None, args, blocksize=128, percdamp=0.01) on the eager (CPU) block backend, for
actorder "static" (= "weight") and None. compressed-tensors 0.19 removed actorder "group",
so there is no group variant (and no g_idx: static keeps the original groups on disk).

Tensors: weight F32 [64,256], hessian F32 [256,256] (the H quantize_weight receives), and per
variant v in {static, none}: v.codes I8 [64,256] (llm-compressor's fake-quant weight is exactly
v.codes * v.scale, checked bit-exact here), v.scale F32 [64,2]. Metadata: versions, v.loss
(quantize_weight's returned loss, repr of the fp32 value), v.rel_error, the command.

Variant bf16_static (default path for a bf16 Linear): weight_bf16 BF16 [64,256] = weight rounded
to bf16; observer on the bf16 weight (bf16 scale), sweep on it widened to fp32, actorder static.
bf16_static.codes I8, bf16_static.scale F32 (exact bf16 values); its fake-quant weight is
bf16(codes * scale) (compressed-tensors multiplies in scale.dtype), asserted here.
"""
import argparse
import sys

import torch
from safetensors.torch import save_file

import compressed_tensors
import llmcompressor
from compressed_tensors.quantization import QuantizationArgs, preset_name_to_scheme
from llmcompressor.modifiers.gptq.gptq_quantize import quantize_weight
from llmcompressor.modifiers.gptq.helpers import accumulate_hessian
from llmcompressor.observers.min_max import MemorylessMinMaxObserver

ROWS, COLS, TOKENS, SEED = 64, 256, 2048, 3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)  # deterministic summation order for the record

    g = torch.Generator().manual_seed(SEED)
    w = torch.randn(ROWS, COLS, generator=g, dtype=torch.float32) * 0.05
    z = torch.randn(TOKENS, COLS, generator=g, dtype=torch.float32)
    decay = 0.97 ** torch.arange(COLS, dtype=torch.float32)
    mix = torch.randn(COLS, COLS, generator=g, dtype=torch.float32) / COLS**0.5
    x = (z * decay) @ mix
    x[:, 3] *= 20.0

    lin = torch.nn.Linear(COLS, ROWS, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    hsum = torch.zeros(COLS, COLS, dtype=torch.float32)
    nsamp = torch.zeros((), dtype=torch.int64)
    hsum, nsamp = accumulate_hessian(x.reshape(TOKENS, 1, COLS), lin, hsum, nsamp)
    assert int(nsamp) == TOKENS, nsamp
    h = hsum / nsamp.to(hsum.device)  # exactly prepare_batch's normalization
    diag = torch.diagonal(h)
    assert torch.unique(diag).numel() == COLS, "diag(H) ties: argsort order would be ambiguous"

    tensors = {"weight": w.contiguous(), "hessian": h.contiguous()}
    meta = {
        "format": "dsv4-golden-gptq",
        "format_version": "1",
        "llmcompressor_version": llmcompressor.__version__,
        "compressed_tensors_version": compressed_tensors.__version__,
        "torch_version": torch.__version__,
        "generator_cmd": "python3 " + " ".join(sys.argv),
        "problem": f"seed {SEED}; W [{ROWS},{COLS}] N(0,0.05^2); {TOKENS} tokens, "
        "latent decay 0.97^k mixed by N(0,1/cols), channel 3 x20; H = 2/n sum x x^T",
        "scheme": "W4A16 (int4 sym group 128), fp32 scales, memoryless_minmax",
        "blocksize": "128",
        "percdamp": "0.01",
        "variants": "static,none",
    }
    base = preset_name_to_scheme("W4A16", ["Linear"]).weights
    for name, actorder in (("static", "static"), ("none", None)):
        args = QuantizationArgs(**{**base.model_dump(), "actorder": actorder})
        obs = MemorylessMinMaxObserver("weight", args)
        qp = obs(w.clone()).get_qparams()
        scale, zp = qp["scale"], qp["zero_point"]
        assert scale.dtype == torch.float32 and scale.shape == (ROWS, COLS // 128), scale.shape
        q, losses, rtn = quantize_weight(
            w.clone()[None], h.clone()[None], scale[None], zp[None], None, args,
            blocksize=128, percdamp=0.01)
        assert not bool(rtn.any())
        q = q[0]
        codes = torch.round(q / scale.repeat_interleave(128, dim=1))
        assert torch.equal(codes * scale.repeat_interleave(128, dim=1), q)
        assert codes.min() >= -8 and codes.max() <= 7
        # int8 codes instead of the F32 dequant keep the file small (about 400 KB with bf16_static); the dequant is
        # exactly codes * scale (asserted above), so nothing is lost.
        tensors[f"{name}.codes"] = codes.to(torch.int8).contiguous()
        tensors[f"{name}.scale"] = scale.contiguous()
        meta[f"{name}.loss"] = repr(float(losses[0]))
        meta[f"{name}.actorder"] = str(args.actorder)
        rel = float(torch.trace((w - q) @ h @ (w - q).T) / torch.trace(w @ h @ w.T))
        meta[f"{name}.rel_error"] = repr(rel)
        print(f"{name}: actorder={args.actorder} loss={float(losses[0])!r} rel_err={rel:.6g} "
              f"zp_all_zero={bool((zp == 0).all())}")
    # bf16_static: the default GPTQModifier path for a bf16 Linear (llm-compressor's own flow,
    # modifiers/gptq/base.py compress_module_list): the weight observer runs on the bf16
    # module.weight, so calculate_qparams computes in bf16 and the scale is bf16;
    # prepare_batch stacks module.weight into an fp32 buffer (GPTQ_PRECISION) for the sweep;
    # quantize_weight gets the bf16 scale as is; update_batch_qparams stores weight_scale in
    # the module dtype (bf16, unchanged). Same H as above (the test isolates the scale path).
    w_bf16 = w.to(torch.bfloat16)
    args = QuantizationArgs(**{**base.model_dump(), "actorder": "static"})
    obs = MemorylessMinMaxObserver("weight", args)
    qp = obs(w_bf16.clone()).get_qparams()
    scale, zp = qp["scale"], qp["zero_point"]
    assert scale.dtype == torch.bfloat16 and scale.shape == (ROWS, COLS // 128), (scale.dtype,
                                                                                 scale.shape)
    w32 = w_bf16.to(torch.float32)
    q, losses, rtn = quantize_weight(
        w32.clone()[None], h.clone()[None], scale[None], zp[None], None, args,
        blocksize=128, percdamp=0.01)
    assert not bool(rtn.any())
    q = q[0]
    assert q.dtype == torch.float32
    s32 = scale.to(torch.float32).repeat_interleave(128, dim=1)
    codes = torch.round(q / s32)
    # compressed-tensors _quantize_dequantize casts the rounded value to scale.dtype and
    # multiplies in bf16: the fake-quant weight is bf16(code * scale), not the fp32 product
    # (|code| <= 8 and the bf16 rounding error is <= 2^-9 relative, so round(q / s) recovers
    # the code exactly).
    assert torch.equal((codes.to(torch.bfloat16) * scale.repeat_interleave(128, dim=1))
                       .to(torch.float32), q), "fake-quant is not bf16(code * bf16 scale)"
    n_inexact = int((codes * s32 != q).sum())
    assert codes.min() >= -8 and codes.max() <= 7
    tensors["weight_bf16"] = w_bf16.contiguous()
    tensors["bf16_static.codes"] = codes.to(torch.int8).contiguous()
    tensors["bf16_static.scale"] = scale.to(torch.float32).contiguous()  # exact bf16 values
    meta["bf16_static.loss"] = repr(float(losses[0]))
    meta["bf16_static.dequant_not_fp32_product"] = str(n_inexact)
    meta["bf16_static.actorder"] = str(args.actorder)
    rel = float(torch.trace((w32 - q) @ h @ (w32 - q).T) / torch.trace(w32 @ h @ w32.T))
    meta["bf16_static.rel_error"] = repr(rel)
    meta["variants"] = "static,none,bf16_static"
    print(f"bf16_static: loss={float(losses[0])!r} rel_err={rel:.6g} "
          f"zp_all_zero={bool((zp == 0).all())} dequant!=fp32 code*scale: {n_inexact}")
    save_file(tensors, a.out, metadata=meta)
    print("wrote", a.out)


if __name__ == "__main__":
    main()

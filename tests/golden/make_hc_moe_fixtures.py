#!/usr/bin/env python3
"""make_hc_moe_fixtures.py: golden data for the C++ HC and MoE sub-layers (model/hc.cpp,
model/moe.cpp), computed by transformers 5.17.0's own modules in fp32 on the CPU.

Writes two small safetensors files (read by tests/model/test_hc.cpp and test_moe.cpp):
  hc_seed1.safetensors   DeepseekV4HyperConnection (pre/post/comb/collapse), the decoder layer's
                         post-mix, and DeepseekV4HyperHead, on random weights
  moe_seed1.safetensors  DeepseekV4SparseMoeBlock as a hash layer and as a learned (top-k) layer
                         sharing one set of random experts, router and shared expert

Random init leaves HC base = 0, scale = 1, the router bias = 0 and tid2eid = 0; all of those are
randomised here so every code path is exercised. Expert weights are large enough that gate/up
pre-activations cross the swiglu_limit (±10) clamps; the script asserts that they do.

  python3 tests/golden/make_hc_moe_fixtures.py --out-dir tests/golden
"""
import argparse
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import DeepseekV4Config
from transformers.models.deepseek_v4 import modeling_deepseek_v4 as m

HC_TOKENS = 8
MOE_TOKENS = 16
VOCAB = 32


def tiny_config(hidden, moe_inter):
    return DeepseekV4Config(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=32, partial_rotary_factor=0.25, q_lora_rank=32,
        o_groups=2, o_lora_rank=16, n_routed_experts=8, num_experts_per_tok=2,
        n_shared_experts=1, moe_intermediate_size=moe_inter, index_n_heads=2, index_head_dim=16,
        index_topk=4, sliding_window=8, hc_mult=4, hc_sinkhorn_iters=20,
        layer_types=["sliding_attention", "sliding_attention"],
        mlp_layer_types=["hash_moe", "moe"], pad_token_id=None)


def meta(config, extra):
    out = {
        "format": "dsv4-golden-hc-moe", "format_version": "1",
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "generator_cmd": " ".join(["python3"] + sys.argv),
        "seed": "1", "dtype": "float32", "device": "cpu",
        "hidden_size": str(config.hidden_size), "hc_mult": str(config.hc_mult),
        "hc_sinkhorn_iters": str(config.hc_sinkhorn_iters), "hc_eps": repr(config.hc_eps),
        "rms_norm_eps": repr(config.rms_norm_eps),
        "n_routed_experts": str(config.n_routed_experts),
        "num_experts_per_tok": str(config.num_experts_per_tok),
        "moe_intermediate_size": str(config.moe_intermediate_size),
        "routed_scaling_factor": repr(config.routed_scaling_factor),
        "swiglu_limit": repr(config.swiglu_limit), "vocab_size": str(config.vocab_size),
    }
    out.update(extra)
    return out


def make_hc(config, g):
    n, d = config.hc_mult, config.hidden_size
    hc = m.DeepseekV4HyperConnection(config).float()
    head = m.DeepseekV4HyperHead(config).float()
    with torch.no_grad():
        # fn std 0.1 on unit-RMS input gives mixing logits of a few units; base/scale non-trivial.
        hc.fn.copy_(torch.randn(hc.fn.shape, generator=g) * 0.1)
        hc.base.copy_(torch.randn(hc.base.shape, generator=g))
        hc.scale.copy_(torch.rand(3, generator=g) * 1.5 + 0.5)
        head.hc_fn.copy_(torch.randn(head.hc_fn.shape, generator=g) * 0.1)
        head.hc_base.copy_(torch.randn(head.hc_base.shape, generator=g))
        head.hc_scale.copy_(torch.rand(1, generator=g) * 1.5 + 0.5)
        # Rows of very different magnitude exercise the RMS rescale.
        state = torch.randn(1, HC_TOKENS, n, d, generator=g)
        state *= torch.logspace(-2, 2, HC_TOKENS).view(1, HC_TOKENS, 1, 1)
        f = torch.randn(1, HC_TOKENS, d, generator=g)
        post, comb, collapsed = hc(state)
        # The decoder layer's post-mix (modeling_deepseek_v4.py lines 1142-1144).
        next_state = post.unsqueeze(-1) * f.unsqueeze(-2) + torch.matmul(comb.transpose(-1, -2), state)
        head_y = head(state)
    tensors = {
        "state": state[0], "f": f[0],
        "attn.fn": hc.fn.detach(), "attn.base": hc.base.detach(), "attn.scale": hc.scale.detach(),
        "head.fn": head.hc_fn.detach(), "head.base": head.hc_base.detach(),
        "head.scale": head.hc_scale.detach(),
        "y": collapsed[0], "post": post[0], "comb": comb[0], "next_state": next_state[0],
        "head_y": head_y[0],
    }
    return {k: v.contiguous().float() for k, v in tensors.items()}


def make_moe(config, g):
    e_count, k = config.n_routed_experts, config.num_experts_per_tok
    d, inter = config.hidden_size, config.moe_intermediate_size
    hash_block = m.DeepseekV4SparseMoeBlock(config, 0).float()
    learned_block = m.DeepseekV4SparseMoeBlock(config, 1).float()
    assert hash_block.is_hash and not learned_block.is_hash
    with torch.no_grad():
        gate = torch.randn(e_count, d, generator=g) * 0.2
        bias = torch.randn(e_count, generator=g) * 0.3
        # Distinct expert ids per token row (duplicates are legal but double-count an expert).
        tid2eid = torch.stack([torch.randperm(e_count, generator=g)[:k] for _ in range(VOCAB)])
        # On x ~ N(0, 1), pre-activations get std ~10 (D = 64: std 1.2), so the clamps engage.
        w_std = 9.6 / d ** 0.5
        w1 = torch.randn(e_count, inter, d, generator=g) * w_std
        w3 = torch.randn(e_count, inter, d, generator=g) * w_std
        w2 = torch.randn(e_count, d, inter, generator=g) * 0.1
        sw1 = torch.randn(inter, d, generator=g) * w_std
        sw3 = torch.randn(inter, d, generator=g) * w_std
        sw2 = torch.randn(d, inter, generator=g) * 0.1
        for block in (hash_block, learned_block):
            block.gate.weight.copy_(gate)
            block.experts.gate_up_proj.copy_(torch.cat([w1, w3], dim=1))  # w1 rows first
            block.experts.down_proj.copy_(w2)
            block.shared_experts.gate_proj.weight.copy_(sw1)
            block.shared_experts.up_proj.weight.copy_(sw3)
            block.shared_experts.down_proj.weight.copy_(sw2)
        hash_block.gate.tid2eid.copy_(tid2eid)
        learned_block.gate.e_score_correction_bias.copy_(bias)
        x = torch.randn(1, MOE_TOKENS, d, generator=g)
        ids = torch.randint(0, VOCAB, (1, MOE_TOKENS), generator=g)
        pre_gate = torch.einsum("td,eid->eti", x[0], w1)
        pre_up = torch.einsum("td,eid->eti", x[0], w3)
        assert (pre_gate > 10).any() and (pre_up > 10).any() and (pre_up < -10).any(), "clamps unused"
        _, hw, hi = hash_block.gate(x, ids)
        _, lw, li = learned_block.gate(x)
        # The bias must change at least one selection, or the fixture misses that path.
        unbiased = torch.topk(m.ACT2FN["sqrtsoftplus"](x[0] @ gate.T), k, dim=-1).indices
        assert (unbiased.sort(-1).values != li.sort(-1).values).any(), "bias changed no selection"
        hash_out = hash_block(x, input_ids=ids)
        learned_out = learned_block(x)
    tensors = {
        "x": x[0], "input_ids": ids[0].long(), "gate.weight": gate, "gate.bias": bias,
        "tid2eid": tid2eid.long(), "experts.w1": w1, "experts.w3": w3, "experts.w2": w2,
        "shared.w1": sw1, "shared.w3": sw3, "shared.w2": sw2,
        "hash.out": hash_out[0], "hash.indices": hi.long(), "hash.weights": hw,
        "learned.out": learned_out[0], "learned.indices": li.long(), "learned.weights": lw,
    }
    return {k: v.contiguous() for k, v in tensors.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--allow-other-version", action="store_true")
    # The committed files use the defaults (< 300 KB each); the C++ tests read the sizes from the
    # metadata, so a larger one-off check (e.g. --hidden 256 --moe-inter 128) runs unchanged.
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--moe-inter", type=int, default=32)
    args = ap.parse_args()
    if transformers.__version__ != "5.17.0" and not args.allow_other_version:
        sys.exit(f"transformers {transformers.__version__}: fixtures are pinned to 5.17.0")
    torch.manual_seed(0)  # nothing should draw from the global generator; belt and braces
    config = tiny_config(args.hidden, args.moe_inter)
    g = torch.Generator().manual_seed(1)
    hc = make_hc(config, g)
    save_file(hc, f"{args.out_dir}/hc_seed1.safetensors",
              metadata=meta(config, {"tokens": str(HC_TOKENS)}))
    moe = make_moe(config, g)
    save_file(moe, f"{args.out_dir}/moe_seed1.safetensors",
              metadata=meta(config, {"tokens": str(MOE_TOKENS)}))
    print("wrote hc_seed1.safetensors and moe_seed1.safetensors to", args.out_dir)


if __name__ == "__main__":
    main()

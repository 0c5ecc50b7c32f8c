#!/usr/bin/env python3
"""make_attention_fixture.py: one DeepseekV4Attention module per attention kind (sliding, CSA, HCA)
from transformers 5.17.0 (fp32, CPU, eager), random weights, one sequence from position 0; writes
inputs, weights (release-style names) and outputs to a safetensors file for tests/model/test_attention.cpp.

    python3 tests/golden/make_attention_fixture.py --out tests/golden/attention_small_seed7.safetensors [--big]
"""
import argparse, json, math, sys
import torch
import transformers
from safetensors.torch import save_file
from transformers.models.deepseek_v4.configuration_deepseek_v4 import DeepseekV4Config
from transformers.models.deepseek_v4 import modeling_deepseek_v4 as M

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--big", action="store_true", help="the C++ tiny config (hidden 256), not committed")
ap.add_argument("--seed", type=int, default=7)
args = ap.parse_args()

if args.big:
    cfg = dict(hidden_size=256, num_attention_heads=4, head_dim=64, rope_dim=32, q_lora_rank=128,
               o_groups=2, o_lora_rank=64, sliding_window=16, csa=4, hca=128, index_n_heads=2,
               index_head_dim=64, index_topk=4, T=288, orig=64)
else:
    cfg = dict(hidden_size=64, num_attention_heads=4, head_dim=32, rope_dim=16, q_lora_rank=32,
               o_groups=2, o_lora_rank=16, sliding_window=8, csa=4, hca=16, index_n_heads=4,
               index_head_dim=16, index_topk=4, T=48, orig=64)
T = cfg["T"]
config = DeepseekV4Config(
    vocab_size=64, hidden_size=cfg["hidden_size"], num_hidden_layers=3,
    num_attention_heads=cfg["num_attention_heads"], num_key_value_heads=1, head_dim=cfg["head_dim"],
    partial_rotary_factor=cfg["rope_dim"] / cfg["head_dim"], q_lora_rank=cfg["q_lora_rank"],
    o_groups=cfg["o_groups"], o_lora_rank=cfg["o_lora_rank"], sliding_window=cfg["sliding_window"],
    index_n_heads=cfg["index_n_heads"], index_head_dim=cfg["index_head_dim"], index_topk=cfg["index_topk"],
    layer_types=["sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention"],
    mlp_layer_types=["moe", "moe", "moe"],
    compress_rates={"compressed_sparse_attention": cfg["csa"], "heavily_compressed_attention": cfg["hca"]},
    rope_theta=10000.0, compress_rope_theta=160000.0,
    rope_parameters={"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": cfg["orig"],
                     "beta_fast": 32.0, "beta_slow": 1.0},
    max_position_embeddings=4096, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
    pad_token_id=None, rms_norm_eps=1e-6)
config._attn_implementation = "eager"
print("rope_parameters", config.rope_parameters)

g = torch.Generator().manual_seed(args.seed)
def randn(*shape, std=1.0):
    return torch.randn(*shape, generator=g) * std

# release name -> transformers parameter name (relative to the attention module)
NAMES = {
    "wq_a": "q_a_proj.weight", "q_norm": "q_a_norm.weight", "wq_b": "q_b_proj.weight",
    "wkv": "kv_proj.weight", "kv_norm": "kv_norm.weight", "wo_a": "o_a_proj.weight",
    "wo_b": "o_b_proj.weight", "sink": "sinks",
    "compressor.wkv": "compressor.kv_proj.weight", "compressor.wgate": "compressor.gate_proj.weight",
    "compressor.ape": "compressor.position_bias", "compressor.norm": "compressor.kv_norm.weight",
    "indexer.wq_b": "compressor.indexer.q_b_proj.weight",
    "indexer.weights_proj": "compressor.indexer.scorer.weights_proj.weight",
    "indexer.compressor.wkv": "compressor.indexer.kv_proj.weight",
    "indexer.compressor.wgate": "compressor.indexer.gate_proj.weight",
    "indexer.compressor.ape": "compressor.indexer.position_bias",
    "indexer.compressor.norm": "compressor.indexer.kv_norm.weight",
}

rotary = M.DeepseekV4RotaryEmbedding(config)
x = randn(1, T, cfg["hidden_size"])
pos = torch.arange(T).unsqueeze(0)
pe = {"main": rotary(x, pos, layer_type="main"), "compress": rotary(x, pos, layer_type="compress")}
tq = torch.arange(T).view(-1, 1); ts = torch.arange(T).view(1, -1)
mask = torch.where((ts <= tq) & (ts > tq - cfg["sliding_window"]), 0.0, float("-inf")).view(1, 1, T, T)

tensors = {"x": x[0].contiguous(),
           "main_inv_freq": rotary.main_inv_freq.clone(), "compress_inv_freq": rotary.compress_inv_freq.clone()}
report = {}
for layer_idx, kind in enumerate(["swa", "csa", "hca"]):
    attn = M.DeepseekV4Attention(config, layer_idx).eval()
    params = dict(attn.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + randn(*p.shape, std=0.2))
            elif name == "sinks":
                p.copy_(randn(*p.shape, std=1.0))
            elif name.endswith("position_bias"):
                p.copy_(randn(*p.shape, std=0.5))
            else:
                fan_in = p.shape[-1]
                p.copy_(randn(*p.shape, std=1.0 / math.sqrt(fan_in)))
    captured = {}
    hooks = []
    if attn.compressor is not None:
        hooks.append(attn.compressor.register_forward_hook(lambda m, a, o: captured.__setitem__("compressed", o[0][0, 0])))
    if kind == "csa":
        ix = attn.compressor.indexer
        hooks.append(ix.register_forward_hook(lambda m, a, o: captured.__setitem__("topk", o[0])))
        hooks.append(ix.scorer.register_forward_hook(lambda m, a, o: captured.__setitem__("scores", o[0])))
    with torch.no_grad():
        out, _ = attn(x, pe, pos, mask)
    for h in hooks: h.remove()
    used = set()
    for rel, tname in NAMES.items():
        if tname in params:
            tensors[f"{kind}.{rel}"] = params[tname].detach().clone().contiguous()
            used.add(tname)
    missing = set(params) - used
    assert not missing, missing
    tensors[f"{kind}.out"] = out[0].contiguous()
    if "compressed" in captured:
        tensors[f"{kind}.compressed"] = captured["compressed"].contiguous()
    if kind == "csa":
        topk = captured["topk"].contiguous().to(torch.int64)
        tensors["csa.topk"] = topk
        tensors["csa.index_scores"] = captured["scores"].contiguous()  # [T, W] before visibility masking
        scores = captured["scores"]  # [T, W]
        W = scores.shape[-1]
        vis = (torch.arange(T) + 1) // cfg["csa"]
        k = min(cfg["index_topk"], W)
        pruned, min_gap = 0, float("inf")
        for t in range(T):
            v = min(int(vis[t]), W)
            if v > k:
                pruned += 1
                s, _ = scores[t, :v].sort(descending=True)
                min_gap = min(min_gap, float(s[k - 1] - s[k]))
        report["csa_pruned_queries"] = pruned
        report["csa_min_topk_gap"] = min_gap
        print(f"csa: W={W}, pruning queries {pruned}, smallest k-th/k+1-th score gap {min_gap:.3g}")
    print(kind, "out std", float(out.std()), "max", float(out.abs().max()))

meta = {"format": "dsv4-golden-attention", "format_version": "1",
        "transformers_version": transformers.__version__, "torch_version": torch.__version__,
        "seed": str(args.seed), "tokens": str(T), "config": json.dumps(cfg),
        "generator_cmd": "python3 tests/golden/make_attention_fixture.py" + (" --big" if args.big else "")}
save_file({k: v.contiguous() for k, v in tensors.items()}, args.out, metadata=meta)
print("wrote", args.out, sum(v.numel() for v in tensors.values()) * 4 / 1024, "KiB")

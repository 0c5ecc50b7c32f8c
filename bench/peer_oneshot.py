#!/usr/bin/env python3
"""peer_oneshot.py: llm-compressor's `oneshot` (sequential pipeline) with one of our recipes on a
checkpoint written by `dsv4-calib make-model`, decoded to BF16 in transformers' layout, timed end to
end on this machine's GPU (issue 30; bench/peer_side_by_side.sh runs it beside our main job on the
same checkpoint). Not run in CI: needs torch, transformers 5.17 and llm-compressor.

    python3 bench/peer_oneshot.py CKPT --recipe recipes/w4a16_mtp.yaml --samples 96 --seq-len 512

The checkpoint is read and renamed by tests/golden/make_forward_fixtures.py's read_release and
to_transformers (FP8 and MXFP4 decoded exactly, experts stacked as transformers holds them), loaded
with strict names into a BF16 DeepseekV4ForCausalLM and saved with save_pretrained (--bf16-dir; not
timed); then, as a user would, from_pretrained onto the GPU (timed: "load") and oneshot (timed).
Calibration tokens: `--samples` rows of `--seq-len` ids drawn uniformly from [3, vocab) with a
fixed generator (not our job's chat-templated records: the same count of tokens, not the same
tokens); the processor oneshot requires is the checkpoint's tokenizer (unused: the ids are given). The artifact is not saved (output_dir unset): timed is oneshot itself. If oneshot fails,
the exception and where it was raised are printed and the exit status is 3, so the caller records
the failure as a result.
"""
import argparse
import os
import sys
import time
import traceback

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "golden"))
import make_forward_fixtures as F  # noqa: E402


def convert(ckpt, out, device):
    """The checkpoint decoded to a BF16 transformers checkpoint in `out` (config without
    quantization_config: oneshot refuses a model whose config.json names another format)."""
    from transformers import DeepseekV4Config, DeepseekV4ForCausalLM, PreTrainedTokenizerFast

    config = DeepseekV4Config.from_pretrained(ckpt)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    with torch.device(device):  # random init, then every parameter overwritten (strict names)
        model = DeepseekV4ForCausalLM(config).to(torch.bfloat16)
    sd, skipped = F.to_transformers(F.read_release(ckpt), config.n_routed_experts)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        sys.exit(f"{ckpt}: transformers names missing {missing[:5]}, unexpected {unexpected[:5]}")
    if not all(n.startswith("mtp.") for n in skipped):
        sys.exit(f"{ckpt}: release tensors other than mtp.* not loaded: {[n for n in skipped if not n.startswith('mtp.')][:5]}")
    model.save_pretrained(out)
    # make-model writes tokenizer.json (and tokenizer_config.json only with --tokenizer).
    PreTrainedTokenizerFast(tokenizer_file=os.path.join(ckpt, "tokenizer.json")).save_pretrained(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--recipe", default="recipes/w4a16_mtp.yaml")
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--pipeline", default="sequential")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16",
                    help="what from_pretrained loads the BF16 checkpoint as (float32: the fallback when "
                         "transformers' BF16 forward fails)")
    ap.add_argument("--bf16-dir", default="/tmp/dsv4_peer_bf16", help="where the BF16 checkpoint is written")
    a = ap.parse_args()
    import llmcompressor
    import transformers
    from datasets import Dataset
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"llm-compressor {llmcompressor.__version__}, transformers {transformers.__version__}, "
          f"torch {torch.__version__}, {name}")
    if not os.path.isfile(os.path.join(a.bf16_dir, "config.json")):  # made once, for both dtypes
        t0 = time.perf_counter()
        convert(a.ckpt, a.bf16_dir, device)
        print(f"peer convert (not timed below): {time.perf_counter() - t0:.2f} s, {a.ckpt} -> {a.bf16_dir}")
    if device.type == "cuda":
        torch.cuda.empty_cache()
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.bf16_dir, dtype=getattr(torch, a.dtype),
                                                 device_map=device.type)
    config = model.config
    print(f"peer load: {time.perf_counter() - t0:.2f} s (from_pretrained, DeepseekV4ForCausalLM as {a.dtype}, "
          f"{config.num_hidden_layers} layers, {config.n_routed_experts} experts, hidden {config.hidden_size})")
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, config.vocab_size, (a.samples, a.seq_len), generator=g)
    ds = Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist()})
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    try:
        oneshot(model=model, processor=AutoTokenizer.from_pretrained(a.bf16_dir), dataset=ds, recipe=a.recipe, num_calibration_samples=a.samples,
                max_seq_length=a.seq_len, pipeline=a.pipeline)
    except Exception as e:  # the failure is the result: where and why
        traceback.print_exc()
        # Where: the innermost frames of llm-compressor, compressed-tensors and transformers, and the last.
        tb = traceback.extract_tb(e.__traceback__)
        pkgs = ("llmcompressor", "compressed_tensors", "transformers")
        last = [max((i for i, f in enumerate(tb) if f"/{p}/" in f.filename), default=None) for p in pkgs]
        keep = [tb[i] for i in sorted({i for i in last if i is not None} | {len(tb) - 1})]
        where = "; ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno} {f.name}" for f in keep)
        print(f"peer oneshot ({a.dtype}) FAILED after {time.perf_counter() - t0:.2f} s: {type(e).__name__}: "
              f"{str(e).splitlines()[0] if str(e) else ''} (at {where})")
        return 3
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else 0.0
    print(f"peer oneshot: {time.perf_counter() - t0:.2f} s ({a.dtype}, {a.pipeline} pipeline, {a.samples} x {a.seq_len} "
          f"tokens, {a.recipe}; peak GPU memory {peak:.1f} GB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

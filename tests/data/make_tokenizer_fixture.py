#!/usr/bin/env python3
"""make_tokenizer_fixture.py: writes the Hugging Face reference ids for tests/data/test_tokenizer.cpp.

    python3 tests/data/make_tokenizer_fixture.py \
        --tokenizer ../shared/data/deepseek_v3_tokenizer/tokenizer.json

Outputs (next to this script unless --out-dir is given):
  tokenizer_fixture.jsonl           line 1: {"meta": {...}} (tokenizers version, tokenizer sha256,
                                    seed, case count, Python's Unicode version); then one case per
                                    line: {"text": ..., "ids": [...]} with ids from
                                    Tokenizer.from_file(...).encode(text, add_special_tokens=False).
  tokenizer_features_fixture.json   small synthetic tokenizers (the built-in tiny tokenizer's shape,
                                    every Split behaviour, regex dialect corners, BPE options,
                                    added-token flags) with their cases: {"text", "ids", "decoded"}.

Needs only the `tokenizers` package (fixtures were made with 0.23.3). Deterministic: a fixed seed
and no dependence on hash order. Random code points are drawn among those assigned in Python's
Unicode database (14.0 with Python 3.11), which is also PCRE2 10.42's: code points assigned later
(Unicode 15/16) are letters to tokenizers' Oniguruma but unassigned to PCRE2 10.42 (data/regex.h).
"""
import argparse
import hashlib
import json
import os
import random
import sys
import unicodedata

import tokenizers
from tokenizers import Tokenizer

SEED = 20260624
HERE = os.path.dirname(os.path.abspath(__file__))

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "It was the best of times, it was the worst of times; it was the age of wisdom.",
    "Calibration data should look like the text the model will see in deployment.",
    "GPTQ quantizes each weight matrix column by column, updating the rest to compensate.",
    "She said, \"I'll be there at 5 o'clock, won't you?\" and he replied: 'Maybe.'",
    "Don't panic! We're testing contractions: isn't, aren't, they've, we'd, you'll, I'm.",
    "The U.S.A. and the U.K. signed the treaty on 12/03/2024 at 09:45 a.m.",
    "E-mail me at first.last@example.com or visit https://example.org/path?q=1&r=two#frag.",
    "Prices rose 3.5% to $1,234.56 (up from $999) -- a record for Q3.",
    "Hyphenated-words, em-dashes\u2014and en-dashes\u2013all appear in real prose.",
    "Mr. O'Neil's dog's bone was buried under the old oak tree's roots.",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong stepped out first.",
    "Large language models are trained on trillions of tokens of web text.",
    "Why? Because! What... really?! Yes -- really.",
    "ALL CAPS TEXT SHOULD TOKENIZE DIFFERENTLY FROM lower case text.",
    "CamelCaseIdentifiersLikeThisOne and snake_case_names_like_this_one.",
    "A list: (a) apples; (b) bananas; (c) cherries [optional] {maybe}.",
    "Footnotes1 and superscripts\u00b2 and fractions \u00bd sometimes show up.",
    "The temperature was -40\u00b0C, which is also -40\u00b0F.",
    "   Leading spaces, trailing spaces, and    multiple   spaces   inside.   ",
    "Tabs\tseparate\tthese\twords\tnicely.",
    "Line one.\nLine two.\n\nLine four after a blank line.\n",
    "Windows line endings\r\nare different\r\n\r\nfrom Unix ones.",
    "#hashtag @mention $variable %percent ^caret &amp *star _under ~tilde `tick`",
    "He read 'War and Peace' in 3 weeks; it has 1,225 pages.",
]

WORDS = ("time person year way day thing man world life hand part child eye woman place work week "
         "case point government company number group problem fact be have do say get make go know "
         "take see come think look want give use find tell ask seem feel try leave call good new "
         "first last long great little own other old right big high different small large next "
         "early young important few public bad same able to of in for on with at by from up about "
         "into over after beneath under above the and a that I it not he as you this but his they").split()

PYTHON_CODE = '''def fibonacci(n: int) -> list[int]:
    """Return the first n Fibonacci numbers."""
    seq = [0, 1]
    while len(seq) < n:
        seq.append(seq[-1] + seq[-2])
    return seq[:n]


if __name__ == "__main__":
    for i, x in enumerate(fibonacci(20)):
        print(f"{i:3d}: {x}")
'''

CPP_CODE = '''#include <vector>
#include <cstdint>

namespace dsv4 {
// Sums a vector; returns 0 for an empty one.
template <typename T>
T sum(const std::vector<T>& v) {
\tT acc{};
\tfor (const auto& x : v) acc += x;  // NOTE: no overflow check
\treturn acc;
}
}  // namespace dsv4

int main(int argc, char** argv) { return argc > 1 ? 0 : -1; }
'''

JSON_CODE = '''{
  "model": {"type": "BPE", "vocab_size": 128000},
  "layers": [0, 1, 2, 3],
  "nested": {
    "a": true,
    "b": null,
    "c": 1.5e-3
  }
}
'''

SHELL_CODE = "for f in *.txt; do\n  wc -l \"$f\" | awk '{print $1}' >> counts.log 2>&1\ndone\n"

CHINESE = [
    "我们今天去公园散步，天气非常好。",
    "深度学习模型的量化可以显著减少显存占用。",
    "北京是中华人民共和国的首都，历史悠久。",
    "这个问题很复杂，需要仔细分析每一个步骤。",
    "他说：“你好！欢迎来到上海。”",
    "模型一共有六十一层，每层有二百五十六个专家。",
]
JAPANESE = [
    "今日はとても良い天気ですね。",
    "東京タワーに行きたいです。カタカナとひらがなとカンジ。",
    "私は毎朝コーヒーを飲みます。",
    "ソフトウェアエンジニアリングは難しいけれど、楽しい。",
    "ｶﾀｶﾅ（半角）と全角カタカナ、ー長音符。",
]
KOREAN = ["안녕하세요, 만나서 반갑습니다.", "한국어 텍스트도 토큰화해야 합니다.", "서울은 대한민국의 수도입니다."]
ARABIC = ["مرحبا بالعالم", "اللغة العربية جميلة جداً.", "السلام عليكم ورحمة الله وبركاته"]
CYRILLIC = ["Привет, мир!", "Быстрая коричневая лиса перепрыгивает через ленивую собаку.",
            "Москва — столица России.", "Україна, Київ, їжак, ґанок."]
EMOJI = ["😀", "👍🏽", "👨\u200d👩\u200d👧\u200d👦", "🏳️\u200d🌈", "🇩🇪🇫🇷🇯🇵", "❤️", "🧑🏿\u200d💻",
         "✈️", "🙂🙃", "👩🏻\u200d🔬", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"]
ACCENTED = ["café", "naïve", "résumé", "Ångström", "Straße", "jalapeño", "façade", "Zürich",
            "crème brûlée", "São Paulo", "Dvořák", "Łódź", "Kraków", "Ærøskøbing", "Þórr", "İstanbul"]
SPECIAL_SPACES = ["\u00a0", "\u3000", "\u2028", "\u2029", "\u180e", "\u200b", "\ufeff", "\u0085",
                  "\u2000", "\u200a", "\u202f", "\u205f", "\u1680", "\x0b", "\x0c", "\x1c"]


def random_code_point(rng):
    """A code point assigned in Python's Unicode database, from one of many planes and blocks."""
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x250, 0x2FF), (0x300, 0x36F), (0x370, 0x3FF),
              (0x400, 0x52F), (0x530, 0x58F), (0x590, 0x6FF), (0x900, 0xDFF), (0xE00, 0xEFF),
              (0x1000, 0x109F), (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1FFF),
              (0x2000, 0x206F), (0x2070, 0x22FF), (0x2300, 0x27FF), (0x2E80, 0x2FDF),
              (0x3000, 0x30FF), (0x3100, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF),
              (0xA000, 0xA4CF), (0xAC00, 0xD7A3), (0xE000, 0xF8FF), (0xF900, 0xFAFF),
              (0xFB00, 0xFFFD), (0x10000, 0x1034F), (0x10400, 0x104FF), (0x1D400, 0x1D7FF),
              (0x1F000, 0x1FAFF), (0x20000, 0x2A6DF), (0x2A700, 0x2EBE0), (0x30000, 0x3134A),
              (0xE0001, 0xE007F), (0xF0000, 0xFFFFD)]
    while True:
        lo, hi = rng.choice(ranges)
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if unicodedata.category(chr(cp)) != "Cn":
            return chr(cp)


def english_words(rng, n):
    out = []
    for i in range(n):
        w = rng.choice(WORDS)
        if i == 0 or rng.random() < 0.08:
            w = w.capitalize()
        out.append(w)
        if rng.random() < 0.1:
            out[-1] += rng.choice([",", ";", ":", ".", "!", "?"])
    return " ".join(out) + "."


def build_cases(rng, added_tokens):
    cases = []
    add = cases.append
    # English prose: the fixed sentences, pairs of them, and generated word salads.
    for s in ENGLISH:
        add(s)
    for _ in range(120):
        k = rng.randint(2, 5)
        add(rng.choice([" ", "\n", "  ", "\n\n"]).join(rng.choice(ENGLISH) for _ in range(k)))
    for _ in range(80):
        add(english_words(rng, rng.randint(3, 60)))
    # Code with indentation and tabs, whole and cut at random line ranges.
    for code in (PYTHON_CODE, CPP_CODE, JSON_CODE, SHELL_CODE):
        add(code)
        lines = code.splitlines(keepends=True)
        for _ in range(15):
            a = rng.randrange(len(lines))
            b = rng.randint(a + 1, len(lines))
            chunk = "".join(lines[a:b])
            if rng.random() < 0.3:
                chunk = chunk.replace("    ", "\t")
            add(chunk)
    # Scripts other than Latin, alone and mixed with English and digits.
    for group in (CHINESE, JAPANESE, KOREAN, ARABIC, CYRILLIC):
        for s in group:
            add(s)
        for _ in range(25):
            parts = [rng.choice(group) for _ in range(rng.randint(1, 3))]
            if rng.random() < 0.5:
                parts.insert(rng.randrange(len(parts) + 1), rng.choice(ENGLISH))
            if rng.random() < 0.5:
                parts.append(str(rng.randint(0, 10**rng.randint(1, 8))))
            add(rng.choice(["", " ", "\n"]).join(parts))
    # Random CJK runs, inside and just outside the pre-tokenizer's [一-龥] range.
    for _ in range(30):
        lo, hi = rng.choice([(0x4E00, 0x9FA5), (0x9FA6, 0x9FFF), (0x3400, 0x4DBF), (0x3040, 0x30FF)])
        add("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 40))))
    # Emoji: ZWJ families, skin tones, flags, tag sequences.
    for e in EMOJI:
        add(e)
    for _ in range(40):
        add(" ".join(rng.choice(EMOJI) for _ in range(rng.randint(1, 5))) + rng.choice(["", " ok", "!"]))
    # Accented Latin in NFC and NFD.
    for w in ACCENTED:
        add(unicodedata.normalize("NFC", w))
        add(unicodedata.normalize("NFD", w))
    for _ in range(30):
        s = " ".join(rng.choice(ACCENTED) for _ in range(rng.randint(2, 6)))
        add(unicodedata.normalize(rng.choice(["NFC", "NFD", "NFKD"]), s))
    # Digit runs of 1..20 (the pre-tokenizer cuts them in groups of up to 3) in several contexts.
    for n in range(1, 21):
        digits = "".join(str(rng.randint(0, 9)) for _ in range(n))
        add(digits)
        add(f"x{digits}y")
        add(f"Pay {digits} dollars, {digits[::-1]}.")
        add(f"{digits}.{digits[:3]}")
    for _ in range(10):  # other decimal digits (Arabic-Indic, Devanagari, full width)
        zero = rng.choice([0x660, 0x966, 0xFF10, 0x1D7CE])
        add("".join(chr(zero + rng.randint(0, 9)) for _ in range(rng.randint(1, 12))))
    # Whitespace and newline runs.
    pieces = [" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n\n", " \n", "\t\t", "    "]
    for _ in range(60):
        s = ""
        for _ in range(rng.randint(1, 6)):
            s += rng.choice(pieces) * rng.randint(1, 4)
            if rng.random() < 0.6:
                s += rng.choice(WORDS)
        add(s)
    for n in (1, 2, 3, 7, 16, 33):
        add(" " * n)
        add("a" + " " * n + "b")
        add("a" + " " * n)
        add("\n" * n)
        add("word" + " " * n + "\n")
    for sp in SPECIAL_SPACES:  # Unicode spaces (U+180E and U+200B are not White_Space)
        add(f"a{sp}b")
        add(f"x {sp} y{sp}")
        add(f"{sp}{sp}word")
    # Every added token alone, then embedded in text.
    for t in added_tokens:
        add(t)
    for _ in range(150):
        parts = []
        for _ in range(rng.randint(1, 4)):
            r = rng.random()
            if r < 0.45:
                parts.append(rng.choice(added_tokens))
            elif r < 0.55:
                t = rng.choice(added_tokens)
                parts.append(t[: rng.randint(1, len(t) - 1)])  # a prefix of a token: no match
            else:
                parts.append(rng.choice(ENGLISH + CHINESE + ["\n", " ", "  ", "x", "<", ">"]))
        add("".join(parts))
    # Random code points from many planes, and ASCII punctuation soup.
    for _ in range(100):
        add("".join(random_code_point(rng) for _ in range(rng.randint(1, 30))))
    punct = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
    for _ in range(50):
        add("".join(rng.choice(punct + "  aZ09\n") for _ in range(rng.randint(1, 40))))
    # A few long inputs: a long document, long runs of one class (long BPE words).
    add("\n\n".join(" ".join(rng.choice(ENGLISH) for _ in range(8)) for _ in range(6)))
    add(" " * 700)
    add("a" * 500)
    add("".join(str(rng.randint(0, 9)) for _ in range(301)))
    add("".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(300)))
    add("ab" * 200 + "!" * 50)
    # Edge texts.
    for s in ["", " ", "a", "\n", "'s", "'S", "'ll", "l'", "''", "\x00", "\x00a\x00", "\x7f", "<", "<｜", "｜>"]:
        add(s)
    return cases


# --- small synthetic tokenizers for the features fixture -------------------------------------

def byte_symbols():
    out, nxt = [], 256
    for b in range(256):
        printable = (ord("!") <= b <= ord("~")) or (0xA1 <= b <= 0xAC) or b >= 0xAE
        out.append(chr(b if printable else nxt))
        if not printable:
            nxt += 1
    return out


SYNTH_MERGES = [("Ġ", "t"), ("h", "e"), ("Ġ", "a"), ("i", "n"), ("Ġt", "he"), ("e", "r"), ("o", "n"),
                ("r", "e"), ("Ġ", "s"), ("e", "n"), ("a", "t"), ("o", "r"), ("Ġ", "o"), ("e", "s"),
                ("Ġ", "w"), ("i", "s"), ("Ġ", "c"), ("a", "n"), ("i", "t"), ("Ġ", "i"), ("in", "g"),
                ("Ġ", "b"), ("Ġ", "f"), ("Ġ", "p"), ("a", "l"), ("Ġ", "m"), ("Ġo", "f"), ("an", "d"),
                ("Ġ", "and"), ("Ġt", "o"), ("Ġi", "n"), ("Ġ", "d"), ("l", "l"), ("o", "u"), ("Ġ", "h"),
                ("e", "d"), ("Ġ", "l"), ("Ġ", "n"), ("Ġ", "e"), ("Ġ", "T"), ("ĠT", "he"), ("Ġ", "is")]

# DeepSeek's pre-tokenizer regexes (model/synth_tokenizer.cpp uses the same).
DS_DIGITS = "\\p{N}{1,3}"
DS_CJK = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
DS_MAIN = ("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
           " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+")


def added(content, special, normalized=None, lstrip=False, rstrip=False, single_word=False, id_=0):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip,
            "rstrip": rstrip, "normalized": (not special) if normalized is None else normalized,
            "special": special}


def split(pattern, behavior="Isolated", invert=False, literal=False):
    return {"type": "Split", "pattern": {"String" if literal else "Regex": pattern},
            "behavior": behavior, "invert": invert}


def byte_level(add_prefix_space=False, use_regex=False):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True,
            "use_regex": use_regex}


def tokenizer_json(vocab, merges, pre, added_tokens=(), merges_as_pairs=False, **model_options):
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
             "ignore_merges": False, "vocab": vocab,
             "merges": [list(m) for m in merges] if merges_as_pairs else [f"{a} {b}" for a, b in merges]}
    model.update(model_options)
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": list(added_tokens),
            "normalizer": {"type": "Sequence", "normalizers": []}, "pre_tokenizer": pre,
            "post_processor": byte_level(True, True), "decoder": byte_level(True, True), "model": model}


def vocab_with_merges(first_id, merges, symbols=None):
    vocab, i = {}, first_id
    for s in (symbols if symbols is not None else byte_symbols()):
        vocab[s] = i
        i += 1
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = i
            i += 1
    return vocab


def feature_tokenizers():
    ds_pre = {"type": "Sequence", "pretokenizers": [split(DS_DIGITS), split(DS_CJK), split(DS_MAIN),
                                                    byte_level()]}
    out = []
    # The built-in tiny tokenizer's shape (model/synth_tokenizer.cpp): BOS/EOS/pad in the vocab at
    # 0..2, bytes 3..258, the merges, then the chat tokens numbered after the vocab.
    v = {"<｜begin▁of▁sentence｜>": 0, "<｜end▁of▁sentence｜>": 1, "<｜▁pad▁｜>": 2}
    v.update(vocab_with_merges(3, SYNTH_MERGES))
    synth_added = [added("<｜begin▁of▁sentence｜>", True, id_=0), added("<｜end▁of▁sentence｜>", True, id_=1),
                   added("<｜▁pad▁｜>", True, id_=2)]
    synth_added += [added(t, False, id_=len(v) + k)
                    for k, t in enumerate(["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"])]
    out.append(("synth", tokenizer_json(v, SYNTH_MERGES, ds_pre, synth_added)))
    # GPT-2 style: ByteLevel alone with its own regex and a prefix space; merges as pairs;
    # added tokens with lstrip / rstrip / single_word, normalized and not, overlapping.
    base = vocab_with_merges(0, SYNTH_MERGES)
    flags = [added("<mask>", True, lstrip=True), added("[R]", True, rstrip=True),
             added("cat", False, single_word=True), added("<both>", False, lstrip=True, rstrip=True),
             added("dog", True, normalized=False, single_word=True), added("<a", False),
             added("<ab>", True), added("b>c", True)]
    out.append(("gpt2_flags", tokenizer_json(base, SYNTH_MERGES, byte_level(True, True), flags,
                                             merges_as_pairs=True)))
    # Every Split behaviour, inverted or not, on a regex and on a literal.
    for behavior in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
        for invert in (False, True):
            pre = {"type": "Sequence", "pretokenizers": [split("\\s+", behavior, invert),
                                                         split("-", behavior, invert, literal=True),
                                                         byte_level()]}
            out.append((f"split_{behavior}_{'inv' if invert else 'plain'}",
                        tokenizer_json(base, SYNTH_MERGES, pre)))
    # Regex dialect corners: Oniguruma spellings PCRE2 reads differently, anchors, empty matches.
    dialect = {"space_class": "\\s+", "not_space": "\\S+", "hex_h": "\\h+", "u_escape": "\\uFF5C|\\u00e9",
               "line_anchors": "^a|b$", "dotall_m": "(?m)a.b", "ignore_case": "(?i)the",
               "posix_space": "[[:space:]]+", "lookbehind": "(?<=a)b+", "empty_alt": "x*",
               "text_anchors": "\\Aa|a\\z", "neg_prop": "\\P{L}+", "ds_main": DS_MAIN}
    for name, pattern in dialect.items():
        pre = {"type": "Sequence", "pretokenizers": [split(pattern), byte_level()]}
        out.append((f"regex_{name}", tokenizer_json(base, SYNTH_MERGES, pre)))
    # BPE options.
    ignore = dict(base)
    ignore["Ġhello"] = len(ignore)  # reachable only as a whole word (no merges build it)
    out.append(("bpe_ignore_merges", tokenizer_json(ignore, SYNTH_MERGES, byte_level(False, True),
                                                    ignore_merges=True)))
    syms = byte_symbols()
    missing = [s for s in syms if s not in "aeiouĠ"] + ["<0xC3>", "<0xA9>", "<0x61>", "<UNK>"]
    fb = vocab_with_merges(0, [], missing)
    out.append(("bpe_byte_fallback", tokenizer_json(fb, [], byte_level(False, True),
                                                    byte_fallback=True, unk_token="<UNK>")))
    out.append(("bpe_unk_fused", tokenizer_json(fb, [], byte_level(False, True), unk_token="<UNK>",
                                                fuse_unk=True)))
    out.append(("bpe_unk_plain", tokenizer_json(fb, [], byte_level(False, True), unk_token="<UNK>")))
    out.append(("bpe_drop_unknown", tokenizer_json(fb, [], byte_level(False, True))))
    pre_syms = syms + ["##" + s for s in syms] + [s + "</w>" for s in syms] + ["##" + s + "</w>" for s in syms]
    ps_merges = [("t", "##h"), ("th", "##e</w>"), ("Ġ", "##t"), ("a", "##n"), ("an", "##d</w>")]
    ps_vocab = vocab_with_merges(0, [], pre_syms)
    for a, b in ps_merges:
        ps_vocab[a + b[2:]] = len(ps_vocab)
    out.append(("bpe_prefix_suffix", tokenizer_json(ps_vocab, ps_merges, byte_level(False, True),
                                                    continuing_subword_prefix="##",
                                                    end_of_word_suffix="</w>")))
    # Vocab ids with a gap: added tokens new to the vocab are numbered from the entry count.
    gap = {s: (i if i < 200 else i + 50) for i, s in enumerate(syms)}
    gap_added = [added("<x>", True, id_=999), added("<y>", False, id_=5), added("a", False, id_=7)]
    out.append(("vocab_gap_ids", tokenizer_json(gap, [], byte_level(False, True), gap_added)))
    return out


FEATURE_TEXTS = [
    "", "the cat sat on the mat", "The and the other thing", "  two  spaces  ", "a-b--c-", "-lead",
    "trail-", "x - y", "tab\tand\nnewline\r\n", "nothing", "ｔｈｅ ＴＨＥ The THE", "a\u180eb c\u00a0d\u3000e",
    "0fF9 gg 12ab", "a｜b é e\u0301", "ab\nab\nb", "a\nb xa\nb", "aaa bbb abbb", "x xx xxx", "123 abc ÀÉ",
    "<mask> <mask>x y<mask>", "[R]  z [R]\n", "cat concat cat_ cat. cats", "dog hotdog dog", "x <both>  y",
    "<ab>c <abb>c <a <ab", "hello Ġhello hello world", "hi é café aé", "bcd", "é", "\u00e9t\u00e9",
    "thethe the and", "hello <x> <y> a b", "<｜User｜>hi<｜Assistant｜><think>x</think>done<｜end▁of▁sentence｜>",
    "Hello, world! It's 2024-06-24; 12345 apples.", "中文测试123と日本語", " 🙂 emoji\u200d",
]


def feature_fixture():
    suites = []
    for name, tok_json in feature_tokenizers():
        tok = Tokenizer.from_str(json.dumps(tok_json))
        cases = []
        for text in FEATURE_TEXTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            cases.append({"text": text, "ids": ids,
                          "decoded": tok.decode(ids, skip_special_tokens=False)})
        suites.append({"name": name, "tokenizer": tok_json, "cases": cases})
    return {"meta": {"tokenizers": tokenizers.__version__, "seed": SEED}, "suites": suites}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", required=True, help="DeepSeek's tokenizer.json")
    ap.add_argument("--out-dir", default=HERE)
    args = ap.parse_args()

    with open(args.tokenizer, "rb") as f:
        raw = f.read()
    tok = Tokenizer.from_str(raw.decode("utf-8"))
    added_tokens = [t["content"] for t in json.loads(raw)["added_tokens"]]
    rng = random.Random(SEED)
    texts = build_cases(rng, added_tokens)
    lines = []
    bad_roundtrip = 0
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        bad_roundtrip += tok.decode(ids, skip_special_tokens=False) != text
        lines.append(json.dumps({"text": text, "ids": ids}, ensure_ascii=False, separators=(",", ":")))
    meta = {"meta": {"tokenizers": tokenizers.__version__, "tokenizer_sha256": hashlib.sha256(raw).hexdigest(),
                     "seed": SEED, "cases": len(lines), "python_unicode": unicodedata.unidata_version}}
    path = os.path.join(args.out_dir, "tokenizer_fixture.jsonl")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(meta, separators=(",", ":")) + "\n")
        f.write("\n".join(lines) + "\n")
    print(f"{path}: {len(lines)} cases, {os.path.getsize(path) / 1e6:.2f} MB, "
          f"{bad_roundtrip} where HF's decode(encode(s)) != s", file=sys.stderr)

    path = os.path.join(args.out_dir, "tokenizer_features_fixture.json")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(feature_fixture(), f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"{path}: {os.path.getsize(path) / 1e6:.2f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()

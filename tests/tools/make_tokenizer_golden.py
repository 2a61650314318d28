#!/usr/bin/env python3
"""make_tokenizer_golden.py -- build the tokenizer parity fixtures for coil.

Trains a small byte-level BPE with the GPT-NeoX pipeline configuration using
Hugging Face `tokenizers` (NFC normalizer, ByteLevel pre-tokenizer with
add_prefix_space=false / trim_offsets / use_regex, ByteLevel decoder and
post-processor, GPT-NeoX-like added tokens: <|endoftext|> id 0, <|padding|>,
runs of 24..2 spaces, plus a few flagged extras) and records, for every case
of a test corpus, `encode(text).ids` and `decode(ids)` (with and without
skip_special_tokens).  Variants of the pipeline (add_prefix_space, the
Split+ByteLevel sequence form, TemplateProcessing, array-form merges) are
recorded as JSON patches applied by tests/test_tokenizer.c.

Writes tests/data/tokenizer/tokenizer.json and tests/data/tokenizer/golden.json.
Not needed to build or test coil; run by hand:  python3 make_tokenizer_golden.py
"""
import base64
import glob
import json
import os
import random

import tokenizers
from tokenizers import (AddedToken, Tokenizer, decoders, models, normalizers,
                        pre_tokenizers, processors, trainers)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "data", "tokenizer")

GPT2_SPLIT = (r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+"
              r"|\s+(?!\S)|\s+")

MULTI = [
    "Le café est très bon. Où est la bibliothèque? Ça va très bien, merci.",
    "Der Bär läuft über die Straße. Größe, Übermaß, Ärger.",
    "Привет, как дела? Это тестовый текст на русском языке.",
    "これは日本語のテキストです。東京は大きな都市です。",
    "这是一个中文句子。我们正在测试分词器。",
    "한국어 문장입니다. 토크나이저를 시험합니다.",
    "שלום עולם, זהו טקסט בעברית.",
    "مرحبا بالعالم، هذا نص باللغة العربية.",
    "Emoji: 😀 😃 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🎉",
    "Ελληνικά: Καλημέρα κόσμε. Αθήνα.",
]


def training_text():
    texts = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
    pydir = os.path.dirname(os.__file__)
    for name in ["json/decoder.py", "json/encoder.py", "textwrap.py",
                 "string.py", "base64.py", "heapq.py", "bisect.py"]:
        p = os.path.join(pydir, name)
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                texts.append(f.read())
    texts.extend(MULTI * 20)
    return texts


def build():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=1200, min_frequency=2, show_progress=False,
        special_tokens=[AddedToken("<|endoftext|>", special=True, normalized=False),
                        AddedToken("<|padding|>", special=True, normalized=False)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(training_text(), trainer)
    # GPT-NeoX: non-special, normalized added tokens for runs of spaces.
    tok.add_tokens([AddedToken(" " * n, normalized=True) for n in range(24, 1, -1)])
    tok.add_tokens([AddedToken("MAMBA", normalized=True),       # word-like, matched mid-word
                    AddedToken("zork", single_word=True),
                    AddedToken("café", normalized=True)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=True,
                                       special=True, normalized=False)])
    return tok


def cases():
    c = [
        ("empty", ""),
        ("prose", "The quick brown fox jumps over the lazy dog. It was the best of times, "
                  "it was the worst of times; it was the age of wisdom."),
        ("prose_nl", "First line.\nSecond line!\n\nThird paragraph, after a blank line.\n"),
        ("contractions", "I'm sure he's here. We've done it, you'll see, they'd know, "
                         "we're fine, it's, don't, can't, won't. IT'S HE'S I'LL WE'VE 'S 'T"),
        ("quotes", "'s 't 're 've 'm 'll 'd ''s x'sy 'hello' \"quoted\" ’s"),
        ("numbers", "In 2023, 1,234,567.89 people paid $12.50 each; 3.14159 26535 0x1F 1e-10 ½ ² ٣ ४"),
        ("code", "def f(x):\n    if x > 0:\n        return x ** 2  # square\n\treturn -x\n"
                 "int main(void) { printf(\"%d\\n\", a[i]++); return 0; }\n"),
        ("spaces", "a  b   c    d     e      f" + " " * 30 + "g" + " " * 50 + "h  "),
        ("tabs_newlines", "a\tb\t\tc\n\nd\r\ne \t \n f\u00a0g\u3000h\u2003i   \n\n\n   \t\t  x"),
        ("trailing_ws", "end with spaces   "),
        ("leading_ws", "   starts with spaces"),
        ("only_ws", " \n\t  \n "),
        ("cjk", MULTI[3] + MULTI[4] + MULTI[5]),
        ("emoji", MULTI[8] + " 👩🏽‍💻x👍🏽y"),
        ("nfc", "e\u0301 cafe\u0301 A\u030a o\u0308\u0304 \u1100\u1161\u11a8 \u212b K\u0301 "
                "\u212a \u037e q\u0307\u0323 \u1e0b\u0323"),
        ("rtl", MULTI[6] + " " + MULTI[7] + " mixed עברית and English 123"),
        ("european", MULTI[0] + " " + MULTI[1] + " " + MULTI[2] + " " + MULTI[9]),
        ("added_mid_word", "hello<|endoftext|>world<|padding|>!foo<|endoftext|><|endoftext|>"
                           "xMAMBAy MAMBA cafécafe\u0301 <|endof text|>"),
        ("added_flags", "a <mask> b<mask>c   <mask>   d zork xzork zorky (zork) zork."),
        ("added_spaces_mix", "x" + "".join(" " * n + str(n) for n in range(1, 30))),
        ("control", "null\x00bell\x07esc\x1b del\x7f \u200b\u200d\ufeff"),
        ("long_word", "a" * 300 + " " + "ab" * 200 + " " + "日本" * 100),
        ("punct", "!!! ??? ... --- ___ *** ((( ))) [[[]]] {{}} <<>> @@@ ### $$$ %%% ^^^ &&& ~~~"),
        ("url", "See https://example.com/path?q=1&r=two#frag or mail me@example.org."),
    ]
    random.seed(1234)
    pool = [t for _, t in c if t] + MULTI
    for i in range(6):
        parts = []
        for _ in range(12):
            t = random.choice(pool)
            a = random.randrange(len(t))
            b = random.randrange(a, min(len(t), a + 60) + 1)
            parts.append(t[a:b])
        c.append(("random_%d" % i, "".join(parts)))
    # Random strings over an alphabet chosen to hit the tricky interactions:
    # whitespace kinds, contractions, combining marks and jamo (NFC), added
    # tokens and fragments of them, word/non-word neighbours of single_word.
    alph = (list(" \t\n\r\x0b\x0c") * 3 + list("abcXYZ019'sStdmlrve.,!?-_()\"") * 2 +
            ["\u00a0", "\u2028", "\u0085", "\u3000", "\u2003", "\u0301", "\u0308",
             "\u0323", "e", "\u1100", "\u1161", "\u11a8", "\uac00", "日", "😀", "\u200d",
             "\U0001F3FD", "\ufe0f", "\u212b", "\u212a", "\u037e", "é", "ñ", "\u0958",
             "\u093e", "\u0b3e", "\u0b47", "<|endoftext|>", "<|endof", "text|>", "<mas",
             "<|padding|>", "<mask>", "MAMBA", "zork", "café", "cafe\u0301", "  ", "    ",
             "½", "٣", "\u05d0", "\u0627", "\U00010000", "\ufffd", "\x00", "\x7f"])
    for i in range(150):
        c.append(("fuzz_%d" % i,
                  "".join(random.choice(alph) for _ in range(random.randint(1, 60)))))
    return c


INVALID = [
    ("invalid_lone_cont", b"abc\x80def"),
    ("invalid_truncated", b"x\xe6\x97y \xf0\x9f\x98 z\xc3"),
    ("invalid_surrogate", b"s\xed\xa0\x80t \xc0\xaf \xf5\x80\x80\x80 \xff\xfe"),
    ("invalid_overlong", b"\xe0\x80\xaf \xf0\x80\x80\xaf ok"),
]


def record(tok, name, text, raw=None):
    enc = tok.encode(text)
    ids = enc.ids
    d = {"name": name, "ids": ids,
         "decoded": tok.decode(ids, skip_special_tokens=False),
         "decoded_skip": tok.decode(ids, skip_special_tokens=True)}
    if raw is not None:
        d["bytes_b64"] = base64.b64encode(raw).decode("ascii")
    else:
        d["text"] = text
    return d


def variant(base_json, patch):
    j = json.loads(base_json)
    for k, v in patch.items():
        if k == "ignore_merges":
            j["model"]["ignore_merges"] = v
        elif k == "merges_as_arrays":
            j["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m
                                    for m in j["model"]["merges"]]
        else:
            j[k] = v
    return Tokenizer.from_str(json.dumps(j))


def main():
    os.makedirs(OUT, exist_ok=True)
    tok = build()
    base = tok.to_str()
    # Store merges in the "a b" string form, like GPT-NeoX's tokenizer.json.
    j = json.loads(base)
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                            for m in j["model"]["merges"]]
    base = json.dumps(j, ensure_ascii=False, indent=1)
    with open(os.path.join(OUT, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(base)
    tok = Tokenizer.from_str(base)

    out = {"tokenizers_version": tokenizers.__version__, "cases": [], "variants": []}
    all_cases = cases()
    for name, text in all_cases:
        out["cases"].append(record(tok, name, text))
    for name, raw in INVALID:
        out["cases"].append(record(tok, name, raw.decode("utf-8", "replace"), raw))

    sample = [c for c in all_cases if c[0] in
              ("prose", "spaces", "tabs_newlines", "added_mid_word", "added_flags",
               "leading_ws", "empty", "nfc", "cjk")]
    variants = [
        ("add_prefix_space", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True,
                                                "trim_offsets": True, "use_regex": True}}),
        ("no_regex", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                                        "trim_offsets": True, "use_regex": False}}),
        ("split_sequence", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": GPT2_SPLIT}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": False}]}}),
        ("no_normalizer", {"normalizer": None}),
        ("template", {"post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "<|padding|>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {
                "<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]},
                "<|padding|>": {"id": "<|padding|>", "ids": [1], "tokens": ["<|padding|>"]}}}}),
        ("merges_as_arrays", {"merges_as_arrays": True}),
        ("ignore_merges", {"ignore_merges": True}),
    ]
    for vname, patch in variants:
        vt = variant(base, patch)
        rec = {"name": vname, "patch": patch, "cases": []}
        for name, text in sample:
            enc = vt.encode(text)
            rec["cases"].append({"name": name, "text": text, "ids": enc.ids})
        out["variants"].append(rec)
    # One case per line: small and still diff-friendly.
    with open(os.path.join(OUT, "golden.json"), "w", encoding="utf-8") as f:
        f.write('{"tokenizers_version": %s,\n"cases": [\n' % json.dumps(tokenizers.__version__))
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in out["cases"]))
        f.write('],\n"variants": [\n')
        f.write(",\n".join(json.dumps(v, ensure_ascii=False) for v in out["variants"]))
        f.write("]}\n")


if __name__ == "__main__":
    main()

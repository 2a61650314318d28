#!/usr/bin/env python3
"""make_tokenizer_golden.py -- build the tokenizer parity fixtures for coil.

Trains a small byte-level BPE with the GPT-NeoX pipeline configuration using
Hugging Face `tokenizers` (NFC normalizer, ByteLevel pre-tokenizer with
add_prefix_space=false / trim_offsets / use_regex, ByteLevel decoder and
post-processor, GPT-NeoX-like added tokens: <|endoftext|> id 0, <|padding|>,
runs of 24..2 spaces, plus a few flagged extras) and records, for every case
of a test corpus, `encode(text).ids` and `decode(ids)` (with and without
skip_special_tokens).  Variants of the pipeline (add_prefix_space, the
Split+ByteLevel sequence form, TemplateProcessing, array-form merges,
ignore_merges, ...) are recorded as JSON patches applied by
tests/test_tokenizer.c; each variant lists the cases ("differ") whose tokens
differ from the base pipeline's, and the script asserts there are some.

Then builds a tokenizer in the GPT-NeoX-20B shape (neox_build: 50,277 ids,
<|endoftext|> 0 and <|padding|> 1, added tokens 50254..50276 = runs of 24..2
spaces, whitespace-run merges up to 512 characters) trained on generated
text, with cases full of long space/tab/newline runs and decode cases for its
longest tokens.

Writes tests/data/tokenizer/{tokenizer,golden}.json and
tests/data/tokenizer/neox/{tokenizer,golden}.json (about 10 s).
Not needed to build or test coil; run by hand:  python3 make_tokenizer_golden.py
"""
import base64
import glob
import itertools
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
        elif k == "reverse_first_merges":   # ranks 0..v-1 in reverse order
            j["model"]["merges"][:v] = j["model"]["merges"][:v][::-1]
        elif k == "add_vocab":              # extra vocab entries no merge produces
            j["model"]["vocab"].update(v)
        else:
            j[k] = v
    return Tokenizer.from_str(json.dumps(j))


def differing(base_tok, vt, cases, what="ids"):
    """Names of the cases whose ids (or tokens) under vt differ from base_tok's."""
    return [n for n, t in cases
            if getattr(base_tok.encode(t), what) != getattr(vt.encode(t), what)]


def write_golden(path, out):
    # One case per line: small and still diff-friendly.
    with open(path, "w", encoding="utf-8") as f:
        f.write('{"tokenizers_version": %s,\n"cases": [\n' % json.dumps(tokenizers.__version__))
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in out["cases"]))
        f.write('],\n"variants": [\n')
        f.write(",\n".join(json.dumps(v, ensure_ascii=False) for v in out["variants"]))
        if "decode_cases" in out:
            f.write('],\n"decode_cases": [\n')
            f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in out["decode_cases"]))
        f.write("]}\n")


def run_variants(tok, base, variants, sample, must_differ):
    """Records each variant's ids on sample (plus its own extra cases).  Each
    variant must give tokens that differ from the base pipeline's on some case
    (listed as "differ"), or a test could not tell the variant's handling from
    no handling at all."""
    recs = []
    for vname, patch, extra in variants:
        vt = variant(base, patch)
        vcases = sample + extra
        rec = {"name": vname, "patch": patch, "cases": []}
        for name, text in vcases:
            rec["cases"].append({"name": name, "text": text, "ids": vt.encode(text).ids})
        diff = differing(tok, vt, vcases, "tokens")
        if vname in must_differ:
            assert diff, "variant %s gives the base tokens on every case" % vname
        rec["differ"] = diff
        recs.append(rec)
    return recs


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
    # ignore_merges: whole words that are vocab entries no merge sequence
    # reaches (as in Llama-3-style vocabularies) are taken as they are.  The
    # entries get the ids after the vocab, so the added tokens move up by as
    # many (`tokenizers` numbers added tokens from the model's vocab size).
    vocab = j["model"]["vocab"]
    words = ["Ġquick", "Ġbrown", "Ġjumps", "Ġlazy", "Ġwisdom", "Ġparagraph"]
    assert sorted(vocab.values()) == list(range(len(vocab)))
    add_vocab = {}
    for w in words:
        assert w not in vocab
        add_vocab[w] = len(vocab) + len(add_vocab)
    moved = [dict(a, id=a["id"] + len(words)) if a["id"] >= len(vocab) else a
             for a in j["added_tokens"]]
    im_extra = [("im_words", "The quick brown fox jumps over the lazy dog, in wisdom.")]
    variants = [
        # Split + ByteLevel(add_prefix_space): the prefix space goes before
        # every regex piece, not only the text's first one.
        ("add_prefix_space", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True,
                                                "trim_offsets": True, "use_regex": True}}, []),
        ("no_regex", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                                        "trim_offsets": True, "use_regex": False}}, []),
        ("split_sequence", {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": GPT2_SPLIT}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
             "use_regex": False}]}}, [("split_pieces", "Hello world\n  x 12ab 's!! (y)")]),
        ("no_normalizer", {"normalizer": None}, []),
        ("template", {"post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "<|padding|>", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {
                "<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]},
                "<|padding|>": {"id": "<|padding|>", "ids": [1], "tokens": ["<|padding|>"]}}}},
         []),
        # Array-form merges, with the first ranks reversed so that the ids
        # depend on the merges being read (and ranked) from the arrays.
        ("merges_as_arrays", {"merges_as_arrays": True, "reverse_first_merges": 200}, []),
        ("ignore_merges", {"ignore_merges": True, "add_vocab": add_vocab,
                           "added_tokens": moved}, im_extra),
    ]
    # The extra vocab alone changes no token: only ignore_merges reaches it.
    same = variant(base, {"add_vocab": add_vocab, "added_tokens": moved})
    assert not differing(tok, same, sample + im_extra, "tokens")
    out["variants"] = run_variants(tok, base, variants, sample, [v[0] for v in variants])
    write_golden(os.path.join(OUT, "golden.json"), out)
    neox_main()


# ---- the GPT-NeoX-20B-shaped fixture (tests/data/tokenizer/neox) -----------

NEOX_VOCAB = 50254   # model vocab: ids 0..50253, then 23 added space tokens


def neox_corpus():
    """Deterministic text for training: prose over a Zipf-distributed
    pseudo-word lexicon, space- and tab-indented code, long whitespace runs
    (spaces, tabs, newlines up to 1024), plus training_text()."""
    r = random.Random(20)
    cons = "b c d f g h j k l m n p r s t v w z br cr dr fl gr pl st tr ch sh th".split()
    vow = "a e i o u ai ea ou io y".split()
    lex = set()
    while len(lex) < 60000:
        w = "".join(r.choice(cons) + r.choice(vow) for _ in range(r.choice((1, 2, 2, 3, 3, 4))))
        if r.random() < 0.3:
            w += r.choice(cons)
        lex.add(w)
    lex = sorted(lex)
    r.shuffle(lex)
    cum = list(itertools.accumulate(1.0 / (k + 10) for k in range(len(lex))))

    def words(n):
        return r.choices(lex, cum_weights=cum, k=n)
    texts = []
    for _ in range(6000):
        sent = []
        for _ in range(r.randint(3, 8)):
            ws = words(r.randint(4, 16))
            ws[0] = ws[0].capitalize()
            if r.random() < 0.2:
                ws.insert(r.randrange(len(ws)), str(r.randint(0, 99999)))
            sent.append(" ".join(ws) + r.choice(".....!?;:"))
        texts.append(" ".join(sent) + "\n\n")
    ops = ["=", "+=", "==", "(", ")", "[", "]", "{", "}", ",", ":", "->", "*", "+", "-", "/"]
    for _ in range(4000):
        tab = r.random() < 0.3
        lines, depth = [], 0
        for _ in range(r.randint(5, 40)):
            depth = max(0, min(12, depth + r.choice((-1, 0, 0, 1))))
            ind = "\t" * depth if tab else " " * (depth * r.choice((2, 4, 4, 8)))
            toks = ["_".join(words(r.randint(1, 2))) if r.random() < 0.7 else r.choice(ops)
                    for _ in range(r.randint(1, 8))]
            lines.append(ind + " ".join(toks))
        texts.append("\n".join(lines) + "\n")
    for _ in range(3000):
        parts = []
        for _ in range(r.randint(2, 10)):
            ch = r.choice((" ", " ", "\t", "\n", " \t"))
            parts.append(ch * r.choice((r.randint(1, 40), r.randint(1, 600), 256, 512, 1024)))
            parts.append(" ".join(words(r.randint(1, 3))))
        texts.append("".join(parts))
    return texts + training_text()


def neox_build():
    """A byte-level BPE in the GPT-NeoX-20B shape and file layout: NFC, ByteLevel
    (add_prefix_space=false, trim_offsets, use_regex), 50,254 model tokens
    (<|endoftext|> 0, <|padding|> 1 special), merges of whitespace runs up to
    512 characters (two runs of 256 spaces, tabs, newlines), then NeoX's
    added tokens 50254..50276: runs of 24 down to 2 spaces, non-special,
    normalized.  Returns the tokenizer.json text."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=NEOX_VOCAB, min_frequency=2, show_progress=False, max_token_length=512,
        special_tokens=[AddedToken("<|endoftext|>", special=True, normalized=False),
                        AddedToken("<|padding|>", special=True, normalized=False)],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(neox_corpus(), trainer)
    j = json.loads(tok.to_str())
    vocab, merges = j["model"]["vocab"], j["model"]["merges"]
    assert len(vocab) == NEOX_VOCAB and len(merges) == NEOX_VOCAB - 258
    for i, (a, b) in enumerate(merges):
        assert vocab[a + b] == 258 + i
    # The trainer stops at 511 characters: the 512-character runs are merges
    # of two 256 runs, ranked just after the merge that makes the 256 run.
    # They replace the last trained merges, so that the ids stay 0..50253.
    runs = [c * 256 for c in "ĠĉĊ"]
    inv = {v: k for k, v in vocab.items()}
    for k in range(len(runs)):
        gone = inv[NEOX_VOCAB - 1 - k]
        assert merges[-1][0] + merges[-1][1] == gone and set(gone) - set("ĠĉĊ")
        del vocab[gone]
        merges.pop()
    for k, r in enumerate(runs):
        assert r in vocab and r + r not in vocab
        vocab[r + r] = NEOX_VOCAB - len(runs) + k
        at = next(i for i, m in enumerate(merges) if m[0] + m[1] == r)
        merges.insert(at + 1, [r, r])
    j["model"]["merges"] = [" ".join(m) for m in merges]
    tok = Tokenizer.from_str(json.dumps(j))
    tok.add_tokens([AddedToken(" " * n, normalized=True) for n in range(24, 1, -1)])
    j = json.loads(tok.to_str())
    assert tok.get_vocab_size() == 50277
    assert [(a["id"], a["content"]) for a in j["added_tokens"]] == (
        [(0, "<|endoftext|>"), (1, "<|padding|>")] +
        [(50254 + k, " " * (24 - k)) for k in range(23)])
    j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                            for m in j["model"]["merges"]]
    # The layout of EleutherAI's 20B_tokenizer.json (as published, before
    # the use_regex / byte_fallback / ignore_merges fields existed).
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
    j["pre_tokenizer"], j["post_processor"], j["decoder"] = dict(bl), dict(bl), dict(bl)
    for k in ("byte_fallback", "ignore_merges"):
        del j["model"][k]
    keys = ("id", "special", "content", "single_word", "lstrip", "rstrip", "normalized")
    j["added_tokens"] = [{k: a[k] for k in keys} for a in j["added_tokens"]]
    out = {k: j[k] for k in ("version", "truncation", "padding", "added_tokens", "normalizer",
                             "pre_tokenizer", "post_processor", "decoder", "model")}
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def neox_cases():
    code = ("class Tree:\n    def __init__(self, kids):\n        self.kids = kids\n\n"
            "    def walk(self):\n        for k in self.kids:\n            if k:\n"
            "                yield from k.walk()\n" + " " * 24 + "# deep\n" + " " * 40 + "x\n")
    tabs = "int main(void)\n{\n\tif (x) {\n\t\twhile (y) {\n\t\t\t\tz();\n\t\t}\n\t}\n}\n"
    c = [("prose", "The quick brown fox jumps over the lazy dog. It was the best of times."),
         ("code_spaces", code), ("code_tabs", tabs),
         ("specials", "<|endoftext|>Hello<|padding|> world<|endoftext|>\n<|endoftext|>"),
         ("nfc", "cafe\u0301 A\u030a \u212b \u1100\u1161\u11a8"),
         ("multi", " ".join(MULTI))]
    for n in list(range(1, 30)) + [47, 48, 49, 96]:
        c.append(("spaces_%d" % n, "a" + " " * n + "b"))
    for n in [1, 2, 3, 5, 16, 31, 100, 255, 256, 257, 511, 512, 513, 600, 1024, 1025]:
        c.append(("spaces_run_%d" % n, "x" + " " * n + "y" + " " * n))
        c.append(("tabs_run_%d" % n, "x" + "\t" * n + "y\n" + "\t" * n))
        c.append(("newlines_run_%d" % n, "p." + "\n" * n + "q"))
    c += [("mixed_ws", (" \t" * 300) + "z" + ("\t " * 257) + ("\n " * 100)),
          ("nbsp_run", "a" + "\u00a0" * 300 + "b" + "\u3000" * 200 + "c"),
          ("crlf_run", "line\r\n" * 40 + "\r\n" * 300),
          ("ws_then_added", " " * 600 + "<|endoftext|>" + "\t" * 600 + "<|padding|>")]
    r = random.Random(77)
    pool = [" ", "\t", "\n", "  ", "    ", "\t\t", "x", "def", "<|endoftext|>", "é", " " * 256,
            "\t" * 256, "\n" * 256, " " * 24, " " * 25]
    for i in range(20):
        c.append(("ws_fuzz_%d" % i, "".join(r.choice(pool) for _ in range(r.randint(1, 40)))))
    return c


def neox_main():
    out_dir = os.path.join(OUT, "neox")
    os.makedirs(out_dir, exist_ok=True)
    base = neox_build()
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(base)
    tok = Tokenizer.from_str(base)
    j = json.loads(base)
    out = {"cases": [record(tok, n, t) for n, t in neox_cases()]}
    # Decoding every whitespace-run token, the longest first, and every added one.
    inv = {v: k for k, v in j["model"]["vocab"].items()}
    ws = sorted((i for i, k in inv.items() if set(k) <= set("ĠĉĊ") and len(k) >= 128),
                key=lambda i: -len(inv[i]))
    dec = []
    for name, ids in [("ws_tokens", ws), ("added_tokens", list(range(50254, 50277))),
                      ("specials", [0, 1, 0])] + [("ws_token_%d" % i, [i]) for i in ws[:6]]:
        dec.append({"name": name, "ids": ids,
                    "decoded": tok.decode(ids, skip_special_tokens=False),
                    "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
    assert max(len(d["decoded"]) for d in dec if d["name"].startswith("ws_token_")) == 512
    out["decode_cases"] = dec
    sample = [x for x in neox_cases() if x[0] in ("code_spaces", "spaces_run_600",
                                                  "spaces_run_1024", "tabs_run_513",
                                                  "mixed_ws", "ws_then_added", "prose")]
    variants = [
        # Without the added space tokens, space runs reach the BPE merges.
        ("no_added_spaces", {"added_tokens": j["added_tokens"][:2]}, []),
    ]
    out["variants"] = run_variants(tok, base, variants, sample, [v[0] for v in variants])
    write_golden(os.path.join(out_dir, "golden.json"), out)


if __name__ == "__main__":
    main()

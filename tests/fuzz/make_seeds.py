#!/usr/bin/env python3
"""make_seeds.py -- writes the hand-made seed corpora of tests/fuzz/corpus/.

Run from the source tree root: python3 tests/fuzz/make_seeds.py
Seeds are named seed-*; the campaign's additions are named by libFuzzer
(sha1) and past crashes crash-* (kept forever: `make check` replays them).
The state harness's seeds need the C side (a model fingerprint): they are
written by `COIL_FUZZ_WRITE_SEEDS=DIR tests/fuzz/replay_state`.
"""
import json
import os
import struct
import sys

root = os.path.join("tests", "fuzz", "corpus")


def put(harness, name, data):
    d = os.path.join(root, harness)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def st_file(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, off, body = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        body += raw
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


# --- safetensors ----------------------------------------------------------------
f32 = lambda *v: struct.pack("<%df" % len(v), *v)
put("safetensors", "one-f32", st_file([("w", "F32", [2, 2], f32(1, 2, 3, 4))]))
put("safetensors", "mixed", st_file([
    ("a.weight", "F16", [3], b"\x00\x3c" * 3),
    ("b", "BF16", [1, 2], b"\x80\x3f" * 2),
    ("c", "I64", [1], struct.pack("<q", -1)),
    ("d", "U8", [5], b"abcde"),
    ("e", "BOOL", [2], b"\x01\x00"),
    ("f", "F64", [], struct.pack("<d", 2.5)),
    ("g", "I8", [0], b""),
    ("h", "F8_E4M3", [2], b"\x38\x40"),
], metadata={"format": "pt"}))
put("safetensors", "empty-header", struct.pack("<Q", 2) + b"{}")
put("safetensors", "overlap", struct.pack("<Q", 88) +
    b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'[:88]
    + b"\0" * 4)
put("safetensors", "short", b"\x08\x00\x00\x00\x00\x00\x00\x00{")

# --- model config.json -----------------------------------------------------------
# The harness's model: d_model 16, 2 layers, vocab 64, d_state 4, d_conv 4,
# expand 2, dt_rank auto (1), tied, F32 -- the config tests/testutil.c writes.
good = {
    "architectures": ["MambaForCausalLM"], "model_type": "mamba", "hidden_size": 16,
    "state_size": 4, "num_hidden_layers": 2, "expand": 2, "intermediate_size": 32,
    "conv_kernel": 4, "time_step_rank": 1, "vocab_size": 64, "layer_norm_epsilon": 1e-05,
    "use_bias": False, "use_conv_bias": True, "residual_in_fp32": True,
    "tie_word_embeddings": True, "hidden_act": "silu", "pad_token_id": 0,
    "bos_token_id": 0, "eos_token_id": 0}
put("model", "matching", json.dumps(good, indent=2))
put("model", "auto-rank", json.dumps(dict(good, time_step_rank="auto")))
ssm = {"d_model": 16, "n_layer": 2, "vocab_size": 64, "ssm_cfg": {}, "rms_norm": True,
       "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8}
put("model", "mamba-ssm", json.dumps(ssm))
put("model", "wrong-dims", json.dumps(dict(good, hidden_size=24, intermediate_size=48)))
put("model", "untied", json.dumps(dict(good, tie_word_embeddings=False)))
# The harness's models of the other families (same sizes; fuzz_model.c picks
# the weights by the word the config names: rwkv, mamba2, falcon)
put("model", "family-rwkv", json.dumps({"architectures": ["RwkvForCausalLM"], "model_type": "rwkv", "hidden_size": 16, "attention_hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "vocab_size": 64, "context_length": 1024, "layer_norm_epsilon": 1e-05, "rescale_every": 2, "tie_word_embeddings": True, "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0}, indent=2))
put("model", "family-mamba2", json.dumps({"architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "num_heads": 4, "head_dim": 8, "n_groups": 2, "hidden_size": 16, "state_size": 4, "num_hidden_layers": 2, "expand": 2, "intermediate_size": 32, "conv_kernel": 4, "time_step_rank": 1, "vocab_size": 64, "layer_norm_epsilon": 1e-05, "use_bias": False, "use_conv_bias": True, "residual_in_fp32": True, "tie_word_embeddings": True, "hidden_act": "silu", "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}, indent=2))
put("model", "family-falcon_mamba", json.dumps({"architectures": ["FalconMambaForCausalLM"], "model_type": "falcon_mamba", "mixer_rms_eps": 1e-06, "hidden_size": 16, "state_size": 4, "num_hidden_layers": 2, "expand": 2, "intermediate_size": 32, "conv_kernel": 4, "time_step_rank": 1, "vocab_size": 64, "layer_norm_epsilon": 1e-05, "use_bias": False, "use_conv_bias": True, "residual_in_fp32": True, "tie_word_embeddings": True, "hidden_act": "silu", "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0}, indent=2))
for d in sorted(os.listdir("tests/data/models")):
    p = os.path.join("tests/data/models", d, "config.json")
    if os.path.exists(p):
        put("model", "data-" + d, open(p, "rb").read())

# --- tokenizer.json (load) -----------------------------------------------------------
def byte_level_chars():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]

chars = byte_level_chars()
vocab = {c: i for i, c in enumerate(chars)}
merges = ["\u0120 t", "h e", "\u0120t he", "i n", "e r"]
for m in merges:
    a, b = m.split(" ")
    vocab.setdefault(a + b, len(vocab))
tok = {
    "version": "1.0", "truncation": None, "padding": None,
    "added_tokens": [{"id": len(vocab), "content": "<|endoftext|>", "single_word": False,
                      "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                       "use_regex": True},
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
              "ignore_merges": False, "vocab": vocab, "merges": merges},
}
put("tokenizer_load", "bytelevel-small", json.dumps(tok, ensure_ascii=False))
t2 = json.loads(json.dumps(tok))
t2["model"]["merges"] = [m.split(" ") for m in merges]
t2["normalizer"] = None
t2["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
     "behavior": "Isolated", "invert": False},
    {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
t2["post_processor"] = {"type": "TemplateProcessing",
                        "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                                   {"Sequence": {"id": "A", "type_id": 0}}],
                        "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>",
                                                             "ids": [len(vocab)],
                                                             "tokens": ["<|endoftext|>"]}}}
put("tokenizer_load", "sequence-template", json.dumps(t2, ensure_ascii=False))
t3 = json.loads(json.dumps(tok))
t3["model"]["vocab"] = {"a": 0, "b": 1, "ab": 2}
t3["model"]["merges"] = ["a b"]
t3["added_tokens"] = []
put("tokenizer_load", "tiny", json.dumps(t3))
put("tokenizer_load", "not-bpe", json.dumps(dict(tok, model={"type": "WordPiece", "vocab": {}})))

# --- tokenizer_encode: byte 0 = piece mode, then the text ---------------------------
texts = ["Hello, world!", " the theater in her", "caf\u00e9 cafe\u0301 \u00c5ngstr\u00f6m",
         "<|endoftext|>x<|endoftext|><|endoftext", "  \t\n\n  trailing   ", "don't we'll I'M",
         "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0 \U0001F600\U0001F3F3\uFE0F\u200D\U0001F308",
         "12345 3.14159 1e10", "a" * 300]
for i, t in enumerate(texts):
    put("tokenizer_encode", "text%d" % i, bytes([i * 37 % 256]) + t.encode())
put("tokenizer_encode", "invalid-utf8", b"\x85" + b"ab\xff\xfe\xc3(\xe2\x82\xf0\x9f\x98cd\xed\xa0\x80")
put("tokenizer_encode", "nul", b"\x03a\x00b\x00\x00c")

# --- YAML config ------------------------------------------------------------------
put("config", "example", open("schemas/coild.example.yaml", "rb").read())
put("config", "empty", "")
put("config", "comments", "# nothing\n\n")
put("config", "small", "workers: 4\nchunk_tokens: 512\nlog_level: debug\ndatabase: /var/lib/coil.db\n")
put("config", "curve", "curve:\n  server_secret_key_file: /etc/coild/server.key\n"
    "  allowed_client_keys: [\"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"]\n")
put("config", "flow", "{endpoints: {clients: 'ipc:///tmp/a', events: 'ipc:///tmp/b', workers: 'ipc:///tmp/c'},"
    " limits: {max_clients: 3}, checkpoint: {dense: 0}}\n")
put("config", "bad-alias", "a: &x 1\nb: *x\n")
put("config", "two-docs", "workers: 1\n---\nworkers: 2\n")

# --- protocol: byte 0 = frames (1, 2; 3 = too many), [len16] for 2+ frames --------------
cases = json.load(open("tests/data/protocol/cases.json"))
for i, c in enumerate(cases):
    body = c["raw"] if "raw" in c else json.dumps(c["json"], ensure_ascii=False)
    body = body.encode("utf-8", "surrogatepass")
    frames = c.get("frames", 1)
    if frames == 1:
        data = b"\x01" + body
    else:
        data = bytes([frames & 3]) + struct.pack("<H", len(body)) + body + b"COILSTAT\x01\x00\x00\x00"
    put("protocol", "case%03d" % i, data)

# --- search: byte 0 = limit (bits 0-2) and doc filter (bit 3: one doc, bit 4: "fox") ----
queries = ["times", "\"age of wisdom\"", "wis*", "best AND worst", "fox OR dog NOT lazy",
           "NEAR(best worst, 3)", "caf\u00e9", "\u65e5\u672c", "text:fox", "(", "\"unterminated",
           "^caret", "a*b", "-", "column:value", "{text}: fox", "\U0001F600", "na\u00efve AND",
           "AND", "x" * 200]
for i, q in enumerate(queries):
    put("search", "q%02d" % i, bytes([(i * 11) % 32]) + q.encode())

print("seeds written under", root)

# --- ingest part sequencer (fuzz_sequencer.c: byte 0 = limit / 8, then ops) -------
def seq_op(client, name, last, mode, text=b"", varint=None):
    b = bytes([client | name << 2 | last << 4 | mode << 5])
    if varint is not None:
        v, enc = varint, b""
        while True:
            enc += bytes([(v & 0x7f) | (0x80 if v >= 0x80 else 0)])
            v >>= 7
            if not v:
                break
        b += enc
    return b + bytes([len(text)]) + text


put("sequencer", "three-parts", bytes([255]) + seq_op(0, 0, 0, 0, b"first ") + seq_op(0, 0, 0, 0, b"second ")
    + seq_op(0, 0, 1, 0, b"third."))
put("sequencer", "whole", bytes([255]) + seq_op(1, 1, 1, 1, b"a whole document"))
put("sequencer", "interleaved", bytes([255]) + seq_op(0, 0, 0, 0, b"a0") + seq_op(1, 0, 0, 0, b"b0")
    + seq_op(0, 1, 0, 0, b"c0") + seq_op(1, 0, 1, 0, b"b1") + seq_op(0, 0, 1, 0, b"a1")
    + seq_op(0, 1, 1, 0, b"c1"))
put("sequencer", "out-of-order", bytes([255]) + seq_op(2, 2, 0, 0, b"x") + seq_op(2, 2, 0, 3, b"skip")
    + seq_op(2, 2, 0, 2, b"again") + seq_op(2, 2, 1, 0, b"done"))
put("sequencer", "late-start", bytes([255]) + seq_op(3, 3, 0, 5, b"nope", varint=7) + seq_op(3, 3, 1, 6, b""))
put("sequencer", "too-big", bytes([2]) + seq_op(0, 0, 0, 0, b"12345678") + seq_op(0, 0, 1, 0, b"9abcdefgh")
    + seq_op(0, 0, 1, 2, b"small"))
put("sequencer", "repeat", bytes([255]) + seq_op(0, 0, 0, 0, b"p0") + seq_op(0, 0, 0, 4, b"p0 again")
    + seq_op(0, 0, 0, 0, b"") + seq_op(0, 0, 1, 0, b""))
put("sequencer", "six-parts", bytes([255]) + b"".join(seq_op(1, 3, int(i == 5), 0, b"part %d;" % i) for i in range(6)))

# --- store: edit scripts on the harness's store (fuzz_store.c) -----------------
# One edit = table, column, row, kind [, value]; the tables in fuzz_store.c's order.
import sqlite3 as _sq, glob as _glob, struct as _st
_db = _sq.connect(":memory:")
for _f in sorted(_glob.glob("schemas/[0-9]*.sql")):
    _db.executescript(open(_f).read())
_tables = ["models", "documents", "chunks", "checkpoints", "sessions", "session_tokens", "request_keys",
           "chunks_fts_data"]
def _edit(t, c, row, kind, val=b""):
    return bytes([t, c, row, kind]) + val
put("store", "none", b"")
for _ti, _t in enumerate(_tables):
    _cols = [r[0] for r in _db.execute("SELECT name FROM pragma_table_info(?)", (_t,))]
    for _ci, _c in enumerate(_cols):
        _k = (_ti + _ci) % 8
        _val = {1: _st.pack("<q", -(1 << 63)), 2: _st.pack("<d", float("nan")), 3: b"\x03x\xffz",
                4: b"\x03\x01\x02\x03", 7: b"\xff"}.get(_k, b"")
        put("store", "%s-%s" % (_t, _c), _edit(_ti, _ci, 0, _k, _val))
    put("store", "%s-delete" % _t, _edit(_ti, 0, 255, 0))
put("store", "two-edits", _edit(2, 8, 1, 4, b"\x05\x00\x00\x00\x00") + _edit(3, 3, 0, 5))

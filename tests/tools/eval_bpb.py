#!/usr/bin/env python3
"""eval_bpb.py -- held-out bits per byte of a model, by transformers and by coil.

    python3 tests/tools/eval_bpb.py --model examples/model --text examples/sample.txt [--coil ./coil]

Both read the whole text as one sequence from a fresh state: the first token is
context, every later token is scored (natural-log softmax over the full
vocabulary), and bits per byte = -sum(log p) / ln 2 / bytes of the text.  The
reference is MambaForCausalLM in float32 (its plain PyTorch path); coil's side
is `coil score --model DIR --file TEXT`.  Prints both and their difference.
Needs torch, transformers, tokenizers (pip); not needed to build or test coil.
"""
import argparse
import json
import math
import subprocess

import torch
from tokenizers import Tokenizer
from transformers import MambaForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="examples/model")
    ap.add_argument("--text", default="examples/sample.txt")
    ap.add_argument("--coil", default="./coil")
    ap.add_argument("--random", action="store_true", help="also a random-weights model of the same config")
    ap.add_argument("--out", help="write the reference figures as JSON (the golden file test_bundled_model reads)")
    args = ap.parse_args()
    raw = open(args.text, "rb").read()
    text = raw.decode("utf-8", errors="replace")
    ids = Tokenizer.from_file(f"{args.model}/tokenizer.json").encode(text).ids
    torch.set_num_threads(2)

    def bpb(model):
        with torch.no_grad():
            logits = model(torch.tensor([ids]), use_cache=False).logits[0].double()
        lp = torch.log_softmax(logits[:-1], dim=-1).gather(1, torch.tensor(ids[1:])[:, None])
        total = float(lp.sum())
        return total, -total / math.log(2) / len(raw)

    model = MambaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    ref_total, ref_bpb = bpb(model)
    out = subprocess.run([args.coil, "score", "--model", args.model, "--file", args.text],
                         check=True, capture_output=True, text=True).stdout
    coil = json.loads(out)
    print(f"text: {args.text}, {len(raw)} bytes, {len(ids)} tokens")
    print(f"transformers: bits/byte {ref_bpb:.6f}  (sum log p {ref_total:.4f})")
    print(f"coil:         bits/byte {coil['bits_per_byte']:.6f}  (sum log p {coil['logprob']:.4f})")
    print(f"difference:   {abs(coil['bits_per_byte'] - ref_bpb):.2e} bits/byte")
    rnd_bpb = None
    if args.random:
        torch.manual_seed(0)
        rnd = MambaForCausalLM(model.config).float().eval()
        rnd_bpb = bpb(rnd)[1]
        print(f"random weights (same config): bits/byte {rnd_bpb:.6f}")
    if args.out:
        import transformers
        with open(args.out, "w") as f:
            json.dump(dict(text=args.text, bytes=len(raw), tokens=len(ids), transformers_logprob=ref_total,
                           transformers_bits_per_byte=ref_bpb, random_bits_per_byte=rnd_bpb,
                           transformers=transformers.__version__, torch=torch.__version__), f, indent=1)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""make_sampling_golden.py -- reference distributions for coil's sampler.

Takes next-token logits computed by transformers (MambaForCausalLM on the
tests/data/models/tied_f32 checkpoint, rows of a forward pass over its golden
ids), and for several (temperature, top_p, n_valid) settings writes the
distribution a correct sampler draws from:

    p = softmax(logits[:n_valid] / temperature), restricted to the nucleus
        (the smallest set of most probable tokens whose probability reaches
        top_p), renormalised; 0 for every other id.

The nucleus is checked against transformers' own TemperatureLogitsWarper +
TopPLogitsWarper (same kept set, same probabilities to 1e-12), and each top_p
is kept at least 1e-4 away from a cumulative sum, so float rounding cannot
move a token across the boundary.  tests/test_sampling.c draws from coil's
sampler and compares the frequencies with these probabilities.

Output: tests/data/sampling/golden.json.  Needs torch + transformers (not to
build or test coil: the output is committed).

    python3 tests/tools/make_sampling_golden.py [--out tests/data/sampling/golden.json]
"""
import argparse
import json
import os

import numpy as np
import torch
import transformers
from transformers import MambaForCausalLM
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "data", "models", "tied_f32")

# (logits row, temperature, top_p, n_valid or None = the whole vocabulary)
CASES = [
    (-1, 1.0, 1.0, None),
    (-1, 0.7, 1.0, None),
    (-1, 1.5, 0.9, None),
    (-1, 1.0, 0.5, None),
    (40, 1.0, 1.0, 250),   # a padded vocabulary: ids >= 250 never drawn
    (40, 0.8, 0.3, 250),
    (100, 2.0, 0.95, None),
]


def reference(logits64, temperature, top_p, n_valid):
    z = logits64[:n_valid] / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    order = sorted(range(n_valid), key=lambda i: (-p[i], i))
    keep, acc = [], 0.0
    for i in order:
        keep.append(i)
        acc += p[i]
        if acc >= top_p:
            break
    # no cumulative sum within 1e-4 of top_p (unless top_p is 1: everything)
    if top_p < 1.0:
        cums = np.cumsum([p[i] for i in order])
        margin = float(np.min(np.abs(cums - top_p)))
        assert margin > 1e-4, ("top_p too close to a cumulative sum", top_p, margin)
    q = np.zeros(len(logits64))
    mass = sum(p[i] for i in keep)
    for i in keep:
        q[i] = p[i] / mass
    return q, sorted(keep)


def with_transformers(logits32, temperature, top_p, n_valid):
    x = torch.tensor(logits32, dtype=torch.float64)[None].clone()
    x[0, n_valid:] = float("-inf")
    x = TemperatureLogitsWarper(temperature)(None, x)
    if top_p < 1.0:
        x = TopPLogitsWarper(top_p)(None, x)
    q = torch.softmax(x, dim=-1)[0].numpy()
    return q, sorted(int(i) for i in np.nonzero(q)[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "..", "data", "sampling", "golden.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(os.path.join(MODEL, "golden.json")) as f:
        ids = json.load(f)["ids"]
    model = MambaForCausalLM.from_pretrained(MODEL).float().eval()
    with torch.no_grad():
        rows = model(torch.tensor([ids]), use_cache=False).logits[0].float().numpy()
    out = dict(source="tests/data/models/tied_f32, transformers MambaForCausalLM logits",
               transformers=transformers.__version__, torch=torch.__version__, cases=[])
    for row, temperature, top_p, n_valid in CASES:
        logits32 = rows[row].astype(np.float32)
        V = len(logits32)
        nv = n_valid or V
        q, keep = reference(logits32.astype(np.float64), temperature, top_p, nv)
        q2, keep2 = with_transformers(logits32, temperature, top_p, nv)
        assert keep == keep2, ("nucleus differs from transformers'", row, temperature, top_p)
        assert np.max(np.abs(q - q2)) < 1e-12, np.max(np.abs(q - q2))
        out["cases"].append(dict(
            row=row % len(rows), temperature=temperature, top_p=top_p, n_valid=nv,
            logits=[float(v) for v in logits32],     # exact float32 values (shortest repr)
            argmax=int(np.argmax(logits32[:nv])),
            nucleus=keep, probs=[float(v) for v in q]))
        print(f"row {row % len(rows)} T={temperature} top_p={top_p} n_valid={nv}: "
              f"nucleus {len(keep)} of {nv}, max p {q.max():.4f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""eval_ask.py -- the golden file of tests/test_ask: what `ask` should score,
computed by transformers on the same token sequences coil feeds.

    python3 tests/tools/eval_ask.py --model examples/model [--out tests/data/ask_golden.json]

The document: the first speeches of Hamlet, Act I (examples/sample.txt), with
one planted sentence near the start,

    HAMLET.
    I dream'd of the quicksilver orchard of Zembla.

and then about FOLLOW tokens more of the play.  The question is the cue
"HAMLET.\\nAgain I dream'd of" and the answer scored is the phrase
" the quicksilver orchard of Zembla".  coil ingests the document on a grid of
CHUNK tokens; ask feeds, after the document's end state (see src/ask.h):

    state   tok("\\n\\n" + question)                          then the answer
    reread  blank + the planted chunk's ids + tok("\\n\\n" + question)
            (blank: "\\n\\n" as tokenized before a word, see src/ask.h)

(one passage: --evidence 1; the search for the question's words ranks the
planted chunk first -- "dream" is rare in the play -- and test_ask checks it).  This script tokenizes
the document whole with `tokenizers` (coil's ids are the same), finds the
chunk the planted sentence lies in, and scores the answer after each
sequence: log-softmax of float32 MambaForCausalLM logits, in double.
Needs torch, transformers, tokenizers; not needed to build or test coil.
"""
import argparse
import json
import os
import re

import torch
from tokenizers import Tokenizer
from transformers import MambaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHUNK = 256
FOLLOW = 3000
FACT = "HAMLET.\nI dream'd of the quicksilver orchard of Zembla.\n\n"
QUESTION = "HAMLET.\nAgain I dream'd of"
ANSWER = " the quicksilver orchard of Zembla"


def document(tok):
    """The speeches before the fact are chosen (8 to 30 of them) so that the
    fact ends close to the end of its chunk: a re-read chunk then brings it
    right before the question."""
    text = open(os.path.join(ROOT, "examples", "sample.txt"), encoding="utf-8").read()
    speeches = [p + "\n\n" for p in text.split("\n\n") if p.strip()]
    best = None
    for k in range(8, 31):
        n = len(tok.encode("".join(speeches[:k]) + FACT).ids)
        n0 = len(tok.encode("".join(speeches[:k])).ids)
        if n0 // CHUNK == (n - 1) // CHUNK and (best is None or CHUNK - n % CHUNK < best[1]):
            best = (k, CHUNK - n % CHUNK)
    k = best[0]
    doc = "".join(speeches[:k]) + FACT
    n_fact_end = len(tok.encode(doc).ids)
    i = k
    while len(tok.encode(doc).ids) < n_fact_end + FOLLOW:
        doc += speeches[i]
        i += 1
    return doc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "examples", "model"))
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(2)
    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    model = MambaForCausalLM.from_pretrained(a.model, dtype=torch.float32).eval()
    doc = document(tok)
    enc = tok.encode(doc)
    ids = enc.ids
    fact_at = doc.index(FACT)
    first = next(i for i, (s, e) in enumerate(enc.offsets) if e > fact_at)
    last = next(i for i, (s, e) in enumerate(enc.offsets) if e >= fact_at + len(FACT) - 2)
    chunk = first // CHUNK
    assert last // CHUNK == chunk, "the planted sentence straddles a chunk boundary: move it"
    words = re.findall(r"[a-z0-9]+", doc.lower())  # as FTS5's unicode61 tokenizer splits
    print(f"'dream' occurs {words.count('dream')} times, 'hamlet' {words.count('hamlet')}, "
          f"'again' {words.count('again')} (test_ask checks that BM25 ranks the planted chunk first)")
    q = tok.encode("\n\n" + QUESTION).ids
    # the blank line as it is tokenized before a word (ask.c's add_blank_line), not "\n\n" alone
    sep = tok.encode("\n\nA").ids[:-len(tok.encode("A").ids)]
    ans = tok.encode(ANSWER).ids
    passage = ids[chunk * CHUNK:(chunk + 1) * CHUNK]

    def score(seq):
        with torch.no_grad():
            lg = model(torch.tensor([seq + ans]), use_cache=False).logits[0].double()
        ls = torch.log_softmax(lg, dim=-1)
        per = [float(ls[len(seq) - 1 + i, t]) for i, t in enumerate(ans)]
        return sum(per), per

    lp_state, per_state = score(ids + q)
    lp_reread, per_reread = score(ids + sep + passage + q)
    print(f"document {len(ids)} tokens, fact at token {first} (chunk {chunk} of {CHUNK}), "
          f"{len(ids) - last} tokens after it")
    print(f"log p(answer): state {lp_state:.4f}, reread {lp_reread:.4f}, margin {lp_reread - lp_state:.4f} nats")
    if a.out:
        import transformers
        with open(a.out, "w") as f:
            json.dump(dict(model=os.path.relpath(a.model, ROOT), chunk_tokens=CHUNK, document=doc, question=QUESTION,
                           answer=ANSWER, answer_ids=ans, doc_tokens=len(ids), fact_token=first, fact_chunk=chunk,
                           state=dict(logprob=lp_state, per_token=per_state),
                           reread=dict(logprob=lp_reread, per_token=per_reread),
                           transformers=transformers.__version__, torch=torch.__version__), f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""eval_incontext.py -- in-context recall of a model, by transformers: the golden
file of test_bundled_model's in-context test.

    python3 tests/tools/eval_incontext.py --model examples/model \
        [--out tests/data/bundled_model_incontext.json] [--generalize 20]

Three documents end with the same question, "HAMLET.\\nAgain I dream'd of":

  with     eight speeches of Hamlet, Act I; four times Hamlet says
           "I dream'd of the quicksilver orchard of Zembla."
  control  the same text with the phrase replaced by an ordinary one
           ("the old garden by the sea")
  none     the question alone (no document)

For each, the log-probability (natural log, float32 MambaForCausalLM, softmax
over the full vocabulary) of the phrase " the quicksilver orchard of Zembla"
right after the document; document and phrase are tokenized separately, as
coil does when it scores a continuation of a stored document.  The texts are
those examples/train/finetune_copy.py reports its margin on.  Needs torch,
transformers, tokenizers (pip); not needed to build or test coil.
"""
import argparse
import json
import os
import sys

import torch
from tokenizers import Tokenizer
from transformers import MambaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "examples", "train"))
import finetune_copy as FC  # noqa: E402


def generalize(n, tok, model):
    """Margins on n documents unlike the test's: held-out speeches (Hamlet, Act I), invented names, other cues."""
    import random
    import statistics
    rng = random.Random(2026)
    text = open(os.path.join(ROOT, "examples", "sample.txt"), encoding="utf-8").read()
    speeches = [p.strip() + "\n\n" for p in text.split("\n\n") if len(p) > 40][5:]
    cues = ["I saw", "they spoke of", "we shall meet at", "he swore by", "she sings of", "remember"]
    syl = ["ka", "zor", "mel", "vik", "dra", "lun", "thes", "pol", "gri", "ven", "osk", "bel"]
    nouns = ["tower", "river", "lantern", "garden", "mirror", "harbour", "meadow", "crown"]
    adjs = ["silver", "crooked", "hollow", "amber", "silent", "burning", "velvet", "frozen"]
    margins = []
    for k in range(n):
        name = "".join(rng.choice(syl) for _ in range(rng.randint(2, 3))).capitalize()
        phrase = f" the {rng.choice(adjs)} {rng.choice(nouns)} of {name}"
        cue = rng.choice(cues)
        start = rng.randrange(0, len(speeches) - 8)
        w = wo = ""
        for i in range(8):
            w += speeches[start + i]
            wo += speeches[start + i]
            if i % 2 == 1:
                w += f"HAMLET.\n{cue}{phrase}.\n\n"
                wo += f"HAMLET.\n{cue} the old garden by the sea.\n\n"
        q = f"HAMLET.\nAgain {cue}"
        p_ids = tok.encode(phrase).ids
        lp = []
        for doc in (w + q, wo + q):
            d = tok.encode(doc).ids
            with torch.no_grad():
                logits = model(torch.tensor([d + p_ids]), use_cache=False).logits[0].double()
            ls = torch.log_softmax(logits, dim=-1)
            lp.append(sum(float(ls[len(d) - 1 + i, t]) for i, t in enumerate(p_ids)))
        margins.append(lp[0] - lp[1])
        print(f"  {phrase!r:40s} after {cue!r:18s}: {lp[0]:8.2f} vs {lp[1]:8.2f}  margin {lp[0] - lp[1]:6.2f}")
    print(f"generalization over {n} documents: margin median {statistics.median(margins):.2f}, "
          f"mean {statistics.mean(margins):.2f}, min {min(margins):.2f}, max {max(margins):.2f} nats")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "examples", "model"))
    ap.add_argument("--out", help="write the texts and reference figures as JSON")
    ap.add_argument("--generalize", type=int, default=0, metavar="N",
                    help="also the margin on N other documents: speeches of examples/sample.txt (held out) with an "
                         "invented phrase after a varied cue, four times, vs the same speeches without it")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    model = MambaForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    with_doc, control_doc = FC.test_documents()
    question = control_doc[control_doc.rindex("HAMLET.\n"):]
    assert with_doc.endswith(question)
    phrase_ids = tok.encode(FC.PHRASE).ids

    def score(doc):
        d = tok.encode(doc).ids
        with torch.no_grad():
            logits = model(torch.tensor([d + phrase_ids]), use_cache=False).logits[0].double()
        lp = torch.log_softmax(logits, dim=-1)
        per = [float(lp[len(d) - 1 + i, t]) for i, t in enumerate(phrase_ids)]
        return len(d), per

    res = {}
    for name, doc in (("with", with_doc), ("control", control_doc), ("none", question)):
        n, per = score(doc)
        res[name] = dict(text=doc, tokens=n, logprob=sum(per), per_token=per)
        print(f"{name:8s} {n:5d} tokens  log p(phrase) {sum(per):9.4f}  per token "
              + " ".join(f"{x:.2f}" for x in per))
    print(f"margin over control {res['with']['logprob'] - res['control']['logprob']:.4f} nats, "
          f"over no document {res['with']['logprob'] - res['none']['logprob']:.4f} nats")
    if args.generalize:
        generalize(args.generalize, tok, model)
    if args.out:
        import transformers
        with open(args.out, "w") as f:
            json.dump(dict(model=os.path.relpath(args.model, ROOT), phrase=FC.PHRASE, phrase_ids=phrase_ids,
                           documents=res, transformers=transformers.__version__, torch=torch.__version__),
                      f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()

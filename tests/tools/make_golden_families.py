#!/usr/bin/env python3
"""make_golden_families.py -- golden checkpoints for the model families beside Mamba-1.

Same method and output layout as make_golden.py (whose perturb() it uses):
seeded random weights perturbed away from the init, saved with
save_pretrained in the case's dtype, the reference computed by transformers
in float32 from exactly the stored values, T ids longer than the largest
chunk the tests cut (64), and the greedy continuation.

Falcon-Mamba (FalconMambaForCausalLM): tied and untied heads, F32 and BF16,
several layers, one case with no dimension a multiple of 8 (d_model 27,
d_inner 81, d_state 7, dt_rank 5) and use_bias, and a non-default
mixer_rms_eps.  Mamba-2 (Mamba2ForCausalLM): n_groups > 1, head_dim not a
power of two, tied and untied, F32, BF16 and F16, a clamping time_step_limit.
RWKV-4 (RwkvForCausalLM): several layers with rescale_every small enough to
act (weights of attention.output / feed_forward.value divided by
2**(block // rescale_every) at eval, hidden states halved every rescale_every
blocks), attention_hidden_size != hidden_size, odd sizes, untied and tied
heads, F32, BF16 and F16, a layer_norm_epsilon far from ln_out's fixed 1e-5,
and keys large enough that exp(k) overflows float32 without the max form.
perturb_rwkv() moves time_decay / time_first / the time mixes off their init.

    python3 tests/tools/make_golden_families.py [--out tests/data/models] [--cases a,b]
"""
import argparse
import json
import os
import shutil
import sys

import torch
import transformers
from transformers import (FalconMambaConfig, FalconMambaForCausalLM, Mamba2Config, Mamba2ForCausalLM,
                          RwkvConfig, RwkvForCausalLM)

sys.path.insert(0, os.path.dirname(__file__))
from make_golden import GREEDY, T, perturb  # noqa: E402

CASES = [
    dict(name="falcon_tied_f32", dtype="float32", family="falcon_mamba",
         cfg=dict(hidden_size=48, state_size=16, num_hidden_layers=3, expand=2,
                  conv_kernel=4, time_step_rank="auto", vocab_size=264,
                  use_bias=False, use_conv_bias=True, tie_word_embeddings=True,
                  layer_norm_epsilon=1e-5, mixer_rms_eps=1e-6)),
    dict(name="falcon_untied_odd_f32", dtype="float32", family="falcon_mamba",
         cfg=dict(hidden_size=27, state_size=7, num_hidden_layers=2, expand=3,
                  conv_kernel=3, time_step_rank=5, vocab_size=203,
                  use_bias=True, use_conv_bias=True, tie_word_embeddings=False,
                  layer_norm_epsilon=1e-6, mixer_rms_eps=1e-4)),
    dict(name="falcon_untied_bf16", dtype="bfloat16", family="falcon_mamba",
         cfg=dict(hidden_size=32, state_size=8, num_hidden_layers=4, expand=2,
                  conv_kernel=4, time_step_rank="auto", vocab_size=200,
                  use_bias=False, use_conv_bias=False, tie_word_embeddings=False,
                  layer_norm_epsilon=1e-5, mixer_rms_eps=1e-6)),
    # Mamba-2: n_groups 2 (3 heads a group), head_dim 10, untied (its default),
    # time_step_limit (0, inf) as saved: a bare Infinity in config.json
    dict(name="mamba2_groups_f32", dtype="float32", family="mamba2",
         cfg=dict(hidden_size=30, state_size=8, num_hidden_layers=3, expand=2, num_heads=6,
                  head_dim=10, n_groups=2, conv_kernel=4, vocab_size=211, use_bias=False,
                  use_conv_bias=True, tie_word_embeddings=False, layer_norm_epsilon=1e-5)),
    # tied, BF16, use_bias, no conv bias, dt clamped to [0.02, 0.4]
    dict(name="mamba2_tied_bf16", dtype="bfloat16", family="mamba2",
         cfg=dict(hidden_size=32, state_size=16, num_hidden_layers=2, expand=2, num_heads=4,
                  head_dim=16, n_groups=1, conv_kernel=4, vocab_size=200, use_bias=True,
                  use_conv_bias=False, tie_word_embeddings=True, layer_norm_epsilon=1e-5,
                  time_step_limit=(0.02, 0.4))),
    # F16, head_dim 9, n_groups 4, d_state 5, conv 3
    dict(name="mamba2_odd_f16", dtype="float16", family="mamba2",
         cfg=dict(hidden_size=24, state_size=5, num_hidden_layers=2, expand=3, num_heads=8,
                  head_dim=9, n_groups=4, conv_kernel=3, vocab_size=203, use_bias=False,
                  use_conv_bias=True, tie_word_embeddings=False, layer_norm_epsilon=1e-6)),
    # RWKV-4: untied, hidden 27, attention 21, FFN 75, 5 blocks rescaled every 2
    # (blocks 2-3 / 4 at 1/2 / 1/4, hidden halved after blocks 1 and 3), big keys
    dict(name="rwkv_odd_f32", dtype="float32", family="rwkv", key_gain=40.0,
         cfg=dict(hidden_size=27, attention_hidden_size=21, intermediate_size=75, num_hidden_layers=5,
                  vocab_size=203, rescale_every=2, layer_norm_epsilon=1e-3, tie_word_embeddings=False,
                  context_length=64)),
    # tied, BF16, no rescale (rescale_every 0), FFN 4 x hidden
    dict(name="rwkv_tied_bf16", dtype="bfloat16", family="rwkv", key_gain=1.0,
         cfg=dict(hidden_size=32, attention_hidden_size=32, intermediate_size=128, num_hidden_layers=3,
                  vocab_size=200, rescale_every=0, layer_norm_epsilon=1e-5, tie_word_embeddings=True)),
    # untied, F16, rescaled after every block
    dict(name="rwkv_untied_f16", dtype="float16", family="rwkv", key_gain=2.0,
         cfg=dict(hidden_size=24, attention_hidden_size=24, intermediate_size=72, num_hidden_layers=4,
                  vocab_size=203, rescale_every=1, layer_norm_epsilon=1e-6, tie_word_embeddings=False)),
]

FAMILIES = {"falcon_mamba": (FalconMambaConfig, FalconMambaForCausalLM),
            "mamba2": (Mamba2Config, Mamba2ForCausalLM),
            "rwkv": (RwkvConfig, RwkvForCausalLM)}


def perturb_rwkv(model, gen, key_gain):
    """RWKV's parameters off their init: decays and bonuses spread, mixes anywhere in [0, 1]."""
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("time_decay"):
                p.add_(0.7 * noise)                   # w = -exp(decay): from ~ -50 to ~ -0.001
            elif name.endswith("time_first"):
                p.copy_(-0.5 + 1.0 * noise)           # the init is ones (sic)
            elif "time_mix" in name:
                p.copy_(torch.rand(p.shape, generator=gen))
            elif name.endswith("ln_out.weight") or ("ln" in name and name.endswith(".weight")):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            elif p.dim() == 2:
                gain = key_gain if name.endswith("attention.key.weight") else 1.0
                p.copy_(gain * noise * (p.shape[1] ** -0.5))
            else:
                raise SystemExit("perturb_rwkv: no rule for " + name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "models"))
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    only = set(filter(None, args.cases.split(",")))
    for i, case in enumerate(CASES):
        if only and case["name"] not in only:
            continue
        Config, Model = FAMILIES[case["family"]]
        gen = torch.Generator().manual_seed(2000 + i)
        torch.manual_seed(2000 + i)
        cfg = Config(**case["cfg"], pad_token_id=0, bos_token_id=0, eos_token_id=0)
        model = Model(cfg).float().eval()
        if case["family"] == "rwkv":
            perturb_rwkv(model, gen, case["key_gain"])
        else:
            perturb(model, gen)
        with torch.no_grad():  # Mamba-2's dt_bias (perturb() knows Mamba-1's dt_proj.bias)
            for name, p in sorted(model.named_parameters()):
                if name.endswith("dt_bias"):
                    p.add_(0.5 * torch.randn(p.shape, generator=gen))
        dtype = getattr(torch, case["dtype"])
        out = os.path.join(args.out, case["name"])
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        save = model.to(dtype)
        save.save_pretrained(out, safe_serialization=True)
        # reference: transformers reads the saved directory back, in float32
        model = Model.from_pretrained(out, dtype=torch.float32).eval()
        ids = torch.randint(0, cfg.vocab_size, (1, T), generator=gen)
        with torch.no_grad():
            logits = model(ids, use_cache=False).logits[0].float().contiguous()
            seq = ids.clone()
            greedy = []
            for _ in range(GREEDY):
                nxt = int(model(seq, use_cache=False).logits[0, -1].argmax())
                greedy.append(nxt)
                seq = torch.cat([seq, torch.tensor([[nxt]])], dim=1)
        if case["family"] == "rwkv" and cfg.attention_hidden_size == cfg.hidden_size:
            # transformers' own recurrent path (use_cache: its state, one chunk after
            # another) agrees with the whole-sequence forward; it needs attention ==
            # hidden size (RwkvModel shapes the state by hidden_size)
            with torch.no_grad():
                first = model(ids[:, :70], use_cache=True)
                rest = model(ids[:, 70:], state=first.state, use_cache=True)
                rec = torch.cat([first.logits[0], rest.logits[0]]).float()
            print(case["name"], "recurrent vs whole: rel L2 %.3g" % float((rec - logits).norm() / logits.norm()))
        logits.numpy().astype("<f4").tofile(os.path.join(out, "logits.f32"))
        meta = dict(case=case["name"], family=case["family"], storage_dtype=case["dtype"], T=T,
                    vocab=int(logits.shape[1]), ids=ids[0].tolist(), greedy=greedy,
                    transformers=transformers.__version__, torch=torch.__version__)
        with open(os.path.join(out, "golden.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(case["name"], "->", sorted(os.listdir(out)))


if __name__ == "__main__":
    main()

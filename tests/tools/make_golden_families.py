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

    python3 tests/tools/make_golden_families.py [--out tests/data/models]
"""
import argparse
import json
import os
import shutil
import sys

import torch
import transformers
from transformers import FalconMambaConfig, FalconMambaForCausalLM, Mamba2Config, Mamba2ForCausalLM

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
]

FAMILIES = {"falcon_mamba": (FalconMambaConfig, FalconMambaForCausalLM),
            "mamba2": (Mamba2Config, Mamba2ForCausalLM)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "models"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for i, case in enumerate(CASES):
        Config, Model = FAMILIES[case["family"]]
        gen = torch.Generator().manual_seed(2000 + i)
        torch.manual_seed(2000 + i)
        cfg = Config(**case["cfg"], pad_token_id=0, bos_token_id=0, eos_token_id=0)
        model = Model(cfg).float().eval()
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
        logits.numpy().astype("<f4").tofile(os.path.join(out, "logits.f32"))
        meta = dict(case=case["name"], family=case["family"], storage_dtype=case["dtype"], T=T,
                    vocab=int(logits.shape[1]), ids=ids[0].tolist(), greedy=greedy,
                    transformers=transformers.__version__, torch=torch.__version__)
        with open(os.path.join(out, "golden.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(case["name"], "->", sorted(os.listdir(out)))


if __name__ == "__main__":
    main()

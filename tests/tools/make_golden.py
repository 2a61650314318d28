#!/usr/bin/env python3
"""make_golden.py -- build small random Mamba checkpoints and reference logits.

The reference is Hugging Face transformers' MambaForCausalLM (its plain PyTorch
path, run on the CPU in float32).  For each config below this script

  * builds a MambaForCausalLM with seeded random weights (perturbed away from
    the structured default init so every parameter matters),
  * saves it with save_pretrained (safetensors; sharded or in BF16/F16 where
    the case asks),
  * records fixed input ids, the logits of a full-sequence forward pass
    (float32, T x vocab, little-endian) and the greedy continuation.

Output: tests/data/models/<case>/{config.json, *.safetensors[, index], golden.json,
logits.f32}.  Needs: pip install torch transformers safetensors (not needed to
build or test coil; the outputs are committed).

    python3 tests/tools/make_golden.py [--out tests/data/models]
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from transformers import MambaConfig, MambaForCausalLM

CASES = [
    # tied head, F32, default conv 4, time_step_rank "auto"
    dict(name="tied_f32", dtype="float32", shard=None,
         cfg=dict(hidden_size=48, state_size=16, num_hidden_layers=3, expand=2,
                  conv_kernel=4, time_step_rank="auto", vocab_size=264,
                  use_bias=False, use_conv_bias=True, tie_word_embeddings=True,
                  layer_norm_epsilon=1e-5, residual_in_fp32=True)),
    # untied head, time_step_rank != hidden/16, conv 3, use_bias, sharded files
    dict(name="untied_bias_sharded", dtype="float32", shard="40KB",
         cfg=dict(hidden_size=32, state_size=8, num_hidden_layers=2, expand=2,
                  conv_kernel=3, time_step_rank=5, vocab_size=200,
                  use_bias=True, use_conv_bias=True, tie_word_embeddings=False,
                  layer_norm_epsilon=1e-5, residual_in_fp32=True)),
    # stored in BF16 (reference computed from the same BF16 values in float32)
    dict(name="tied_bf16", dtype="bfloat16", shard=None,
         cfg=dict(hidden_size=48, state_size=16, num_hidden_layers=2, expand=2,
                  conv_kernel=4, time_step_rank="auto", vocab_size=264,
                  use_bias=False, use_conv_bias=True, tie_word_embeddings=True,
                  layer_norm_epsilon=1e-5, residual_in_fp32=True)),
    # stored in F16, no conv bias, expand 3
    dict(name="untied_f16", dtype="float16", shard=None,
         cfg=dict(hidden_size=32, state_size=4, num_hidden_layers=2, expand=3,
                  conv_kernel=4, time_step_rank=3, vocab_size=130,
                  use_bias=False, use_conv_bias=False, tie_word_embeddings=False,
                  layer_norm_epsilon=1e-6, residual_in_fp32=True)),
]

T = 37
GREEDY = 8


def perturb(model, gen):
    """Move every parameter off its structured init, reproducibly."""
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("A_log"):
                p.add_(0.3 * noise)
            elif name.endswith(".D"):
                p.copy_(1.0 + 0.5 * noise)
            elif name.endswith("norm.weight") or name.endswith("norm_f.weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("dt_proj.bias"):
                p.add_(0.5 * noise)
            elif "conv1d" in name:
                p.copy_(0.3 * noise)
            elif p.dim() == 2:
                p.copy_(noise * (p.shape[1] ** -0.5))
            else:
                p.copy_(0.1 * noise)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "data", "models"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for i, case in enumerate(CASES):
        gen = torch.Generator().manual_seed(1000 + i)
        torch.manual_seed(1000 + i)
        cfg = MambaConfig(**case["cfg"], pad_token_id=0, bos_token_id=0, eos_token_id=0)
        model = MambaForCausalLM(cfg).float().eval()
        perturb(model, gen)
        dtype = getattr(torch, case["dtype"])
        # Round to the storage dtype, then compute the reference in float32
        # from exactly the stored values.
        model = model.to(dtype).float().eval()
        out = os.path.join(args.out, case["name"])
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        save = model.to(dtype)
        kw = dict(safe_serialization=True)
        if case["shard"]:
            kw["max_shard_size"] = case["shard"]
        save.save_pretrained(out, **kw)
        model = save.float().eval()
        gc = os.path.join(out, "generation_config.json")
        if os.path.exists(gc):
            os.remove(gc)

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
        meta = dict(case=case["name"], storage_dtype=case["dtype"], T=T,
                    vocab=int(logits.shape[1]), ids=ids[0].tolist(), greedy=greedy,
                    transformers=transformers.__version__, torch=torch.__version__)
        with open(os.path.join(out, "golden.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(case["name"], "->", sorted(os.listdir(out)))


if __name__ == "__main__":
    main()

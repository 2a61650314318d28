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

Two directory shapes:

  * as this transformers' save_pretrained writes them (config.json,
    generation_config.json, model.safetensors or shards + index);
  * "published": the shape of the published Mamba-1 checkpoints
    (state-spaces/mamba-130m-hf ... 2.8b-hf, written by transformers
    4.39.0.dev0): config.json with exactly their key set (d_model / d_inner /
    n_layer beside hidden_size / intermediate_size / num_hidden_layers,
    fused_add_norm, rms_norm, ssm_cfg, pad_vocab_size_multiple, torch_dtype ...),
    generation_config.json, special_tokens_map.json, tokenizer_config.json,
    tokenizer.json (the test tokenizer, 1227 ids, with the model's vocabulary
    padded to 1232 rows as 50277 ids are padded to 50280), and for the
    sharded one an index holding only "metadata": {"total_size": N} and
    "weight_map".  The reference logits for those are computed after reloading
    the rewritten directory with from_pretrained, so transformers itself reads
    that shape as coil must.

The sequence (T ids) is longer than the largest chunk size the tests cut it
into (64), and one case has d_inner = 81 and d_model = 27 (not multiples of 8
or 16) so the SIMD kernels' scalar tails run.

Output: tests/data/models/<case>/{config.json, *.safetensors[, index], golden.json,
logits.f32, ...}.  Needs: pip install torch transformers safetensors (not needed to
build or test coil; the outputs are committed).

    python3 tests/tools/make_golden.py [--out tests/data/models]
"""
import argparse
import json
import os
import shutil

import torch
import transformers
from safetensors import safe_open
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
    # d_model 27, d_inner 81, d_state 7, vocab 203: no dimension a multiple of 8
    dict(name="odd_dinner", dtype="float32", shard=None,
         cfg=dict(hidden_size=27, state_size=7, num_hidden_layers=2, expand=3,
                  conv_kernel=4, time_step_rank="auto", vocab_size=203,
                  use_bias=False, use_conv_bias=True, tie_word_embeddings=True,
                  layer_norm_epsilon=1e-5, residual_in_fp32=True)),
    # the published mamba-*-hf directory shape, one file and sharded
    dict(name="published_130m_shape", dtype="float32", shard=None, published=True,
         cfg=dict(hidden_size=32, state_size=16, num_hidden_layers=2, expand=2,
                  conv_kernel=4, time_step_rank="auto", vocab_size=1232,
                  use_bias=False, use_conv_bias=True, tie_word_embeddings=True,
                  layer_norm_epsilon=1e-5, residual_in_fp32=True)),
    dict(name="published_sharded_shape", dtype="float32", shard="100KB", published=True,
         cfg=dict(hidden_size=32, state_size=16, num_hidden_layers=3, expand=2,
                  conv_kernel=4, time_step_rank="auto", vocab_size=1232,
                  use_bias=False, use_conv_bias=True, tie_word_embeddings=True,
                  layer_norm_epsilon=1e-5, residual_in_fp32=True)),
]

T = 160
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


# The key set and order of state-spaces/mamba-130m-hf's config.json (the
# -hf checkpoints were converted from mamba_ssm with transformers 4.39.0.dev0,
# so d_model, d_inner, n_layer, fused_add_norm, rms_norm, ssm_cfg and
# pad_vocab_size_multiple are left over from the mamba_ssm config beside the
# MambaConfig fields; there is no tie_word_embeddings: it defaults to true).
def published_config(cfg):
    return {
        "architectures": ["MambaForCausalLM"],
        "bos_token_id": 0,
        "conv_kernel": cfg.conv_kernel,
        "d_inner": cfg.intermediate_size,
        "d_model": cfg.hidden_size,
        "eos_token_id": 0,
        "expand": cfg.expand,
        "fused_add_norm": True,
        "hidden_act": "silu",
        "hidden_size": cfg.hidden_size,
        "initializer_range": 0.1,
        "intermediate_size": cfg.intermediate_size,
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "model_type": "mamba",
        "n_layer": cfg.num_hidden_layers,
        "num_hidden_layers": cfg.num_hidden_layers,
        "pad_token_id": 0,
        "pad_vocab_size_multiple": 8,
        "rescale_prenorm_residual": False,
        "residual_in_fp32": True,
        "rms_norm": True,
        "ssm_cfg": {},
        "state_size": cfg.state_size,
        "time_step_floor": 0.0001,
        "time_step_init_scheme": "random",
        "time_step_max": 0.1,
        "time_step_min": 0.001,
        "time_step_rank": cfg.time_step_rank,
        "time_step_scale": 1.0,
        "torch_dtype": "float32",
        "transformers_version": "4.39.0.dev0",
        "use_bias": False,
        "use_cache": True,
        "use_conv_bias": True,
        "vocab_size": cfg.vocab_size,
    }


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def publish(out, cfg, tokenizer_json):
    """Rewrites a save_pretrained directory into the published mamba-*-hf shape."""
    write_json(os.path.join(out, "config.json"), published_config(cfg))
    write_json(os.path.join(out, "generation_config.json"),
               {"_from_model_config": True, "bos_token_id": 0, "eos_token_id": 0,
                "pad_token_id": 0, "transformers_version": "4.39.0.dev0"})
    eot = "<|endoftext|>"
    write_json(os.path.join(out, "special_tokens_map.json"),
               {"bos_token": eot, "eos_token": eot, "unk_token": eot})
    with open(tokenizer_json) as f:
        tok = json.load(f)
    added = {str(t["id"]): {k: t[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                              "single_word", "special")}
             for t in tok["added_tokens"]}
    write_json(os.path.join(out, "tokenizer_config.json"),
               {"add_bos_token": False, "add_eos_token": False, "add_prefix_space": False,
                "added_tokens_decoder": added, "bos_token": eot,
                "clean_up_tokenization_spaces": True, "eos_token": eot,
                "model_max_length": 1000000000000000019884624838656, "pad_token": None,
                "tokenizer_class": "GPTNeoXTokenizer", "unk_token": eot})
    shutil.copyfile(tokenizer_json, os.path.join(out, "tokenizer.json"))
    idx = os.path.join(out, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            index = json.load(f)
        total = 0
        for shard in sorted(set(index["weight_map"].values())):
            with safe_open(os.path.join(out, shard), "pt") as sf:
                for k in sf.keys():
                    t = sf.get_tensor(k)
                    total += t.numel() * t.element_size()
        assert total == index["metadata"]["total_size"], (total, index["metadata"])
        write_json(idx, {"metadata": {"total_size": total},
                         "weight_map": dict(sorted(index["weight_map"].items()))})


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
        if case.get("published"):
            publish(out, cfg, os.path.join(os.path.dirname(__file__), "..", "data", "tokenizer",
                                           "tokenizer.json"))
            # transformers must read the published shape as the same model
            again = MambaForCausalLM.from_pretrained(out).float().eval()
            assert again.config.hidden_size == cfg.hidden_size
            sd, sd2 = model.state_dict(), again.state_dict()
            assert sd.keys() == sd2.keys()
            assert all(torch.equal(sd[k], sd2[k]) for k in sd)
            model = again

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

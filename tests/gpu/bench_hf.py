#!/usr/bin/env python3
"""bench_hf.py -- transformers' MambaForCausalLM on the same GPU and weights.

    python3 tests/gpu/bench_hf.py MODEL_DIR [--chunk 2048] [--reps 3] [--dtype bf16|f32]

Times the forward of a `chunk`-token sequence from an empty state (no cache
carried, use_cache=False: transformers has no chunked prefill with a carried
state), on the device, and prints one key=value line: tok_per_s, the path it
took (the CUDA kernels of mamba_ssm / causal_conv1d when installed, else the
sequential PyTorch path), or hf=skipped with the reason.
"""
import argparse
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    a = ap.parse_args()
    try:
        import torch
        from transformers import MambaForCausalLM
    except Exception as e:  # noqa: BLE001 -- any import failure is a skip
        print(f'hf=skipped reason="import: {e}"')
        return 0
    if not torch.cuda.is_available():
        print('hf=skipped reason="torch has no CUDA device here"')
        return 0
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    try:
        m = MambaForCausalLM.from_pretrained(a.model, dtype=dt)
    except TypeError:  # transformers before 4.56 names it torch_dtype
        m = MambaForCausalLM.from_pretrained(a.model, torch_dtype=dt)
    m = m.to("cuda").eval()
    try:
        from transformers.models.mamba import modeling_mamba as mm
        fast = bool(getattr(mm, "is_fast_path_available", False))
    except Exception:  # noqa: BLE001
        fast = False
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, m.config.vocab_size, (1, a.chunk), generator=g).to("cuda")
    with torch.no_grad():
        m.backbone(input_ids=ids, use_cache=False)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.reps):
            m.backbone(input_ids=ids, use_cache=False)
        torch.cuda.synchronize()
        secs = (time.perf_counter() - t0) / a.reps
    mib = torch.cuda.max_memory_allocated() / 2**20
    print(f"hf=ok path={'mamba_ssm-kernels' if fast else 'pytorch-sequential'} dtype={a.dtype} "
          f"chunk={a.chunk} tok_per_s={a.chunk / secs:.0f} device_mib={mib:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Run llama.cpp's convert_hf_to_gguf.py on a coil/HF Mamba-1 directory.

usage: llamacpp_convert.py LLAMA_CPP_DIR MODEL_DIR OUTTYPE OUTFILE

The Feb 2025 converter writes mixer.conv1d.weight as (d_conv, 1, d_inner),
which its own ggml_ssm_conv refuses (GGML_ASSERT(ggml_is_matrix(c))); the
middle dimension of 1 is squeezed here, as later converters do.
"""
import os
import sys

lc, model, outtype, outfile = sys.argv[1:5]
sys.path.insert(0, os.path.join(lc, "gguf-py"))
sys.path.insert(0, lc)
import convert_hf_to_gguf as conv  # noqa: E402

orig = conv.MambaModel.modify_tensors


def modify_tensors(self, data_torch, name, bid):
    if name.endswith("conv1d.weight") and data_torch.dim() == 3:
        data_torch = data_torch.squeeze(1)
    return orig(self, data_torch, name, bid)


conv.MambaModel.modify_tensors = modify_tensors
sys.argv = ["convert_hf_to_gguf.py", model, "--outtype", outtype, "--outfile", outfile]
conv.main()

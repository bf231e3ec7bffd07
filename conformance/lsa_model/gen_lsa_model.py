#!/usr/bin/env python3
"""A PyTorch model with NNCodec's local scaling (LSA) layers, coded by the reference's model pipeline.

Run with the reference's venv (nncodec 2.1.3, torch) from this folder:

    /opt/nncodec-ref/bin/python gen_lsa_model.py

Writes:
    model.pt              state dict of a small conv net after `transforms.LSA(model).add_lsa_params()`:
                          every conv / linear layer gets `weight_scaling` ([out, 1, 1, 1] or [out, 1]),
                          set here to random values as a training would
    model.npz             the same state dict as NumPy arrays
    lsa.nnc               `nnc.compress_model(model, lsa=True, model_executer=...)`; the executer's
                          `tune_model` hands back the model's own scalings, so the "training" keeps them
    lsa_decoded.npz       `nnc.decompress(lsa.nnc, reconstruct_lsa=True)`
    plain.nnc             `nncodec.nn.encode(model)` (no blocks: each scaling an NDU of its own)
    bnf.nnc               `nncodec.nn.encode(model, {"bnf": True})`

The reference's `compress_model` is called with `nn.encode`'s defaults (qp -32, non-weight qp -75, DQ,
row skipping, param_opt), so all three streams share one set of arguments.
"""
import copy
import tempfile

import numpy as np
import torch

from nncodec import nn as nnc_nn
from nncodec import nnc, nnc_core
from nncodec.framework.applications.utils import transforms


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, bias=True)
        self.fc = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.conv2(torch.relu(self.bn1(self.conv1(x)))).mean((2, 3)))


class KeepScalings(nnc_core.nnr_model.ModelExecute):
    """An LSA 'training' that returns the model's own scalings (flattened, as tune_model does)."""

    def __init__(self, model):
        self.model = model

    def tune_model(self, parameters, param_types, lsa_flag, ft_flag, verbose=False, wandb_logging=False):
        sd = self.model.state_dict()
        return ({k: sd[k].numpy().flatten() for k in parameters if param_types[k] == "weight.ls"}, {})

    def has_eval(self):
        return False

    def has_test(self):
        return False

    def has_tune_ft(self):
        return False

    def has_tune_lsa(self):
        return True


def main():
    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():
        model.bn1.weight.normal_(1, 0.1)
        model.bn1.bias.normal_(0, 0.1)
        model.bn1.running_mean.normal_(0, 0.2)
        model.bn1.running_var.uniform_(0.5, 1.5)
    scaled = transforms.LSA(model).add_lsa_params()
    with torch.no_grad():
        for name, p in scaled.named_parameters():
            if name.endswith("weight_scaling"):
                p.uniform_(0.7, 1.3)
    torch.save(scaled.state_dict(), "model.pt")
    np.savez("model.npz", **{k: v.numpy() for k, v in scaled.state_dict().items()})

    args = dict(qp=-32, nonweight_qp=-75, row_skipping=True, use_dq=True, param_opt=True)
    bs = nnc.compress_model(copy.deepcopy(scaled), bitstream_path=None, lsa=True,
                            model_executer=KeepScalings(scaled), return_bitstream=True, verbose=False, **args)
    open("lsa.nnc", "wb").write(bytes(bs))
    decoded = nnc.decompress(bytearray(bs), reconstruct_lsa=True)
    np.savez("lsa_decoded.npz", **decoded)
    # nn.encode also writes each stream into `results`; "ioq" is a key it reads but does not default.
    nn_args = {"verbose": False, "ioq": False, "results": tempfile.mkdtemp()}
    bs = nnc_nn.encode(copy.deepcopy(scaled), dict(nn_args))
    open("plain.nnc", "wb").write(bytes(bs))
    bs = nnc_nn.encode(copy.deepcopy(scaled), {**nn_args, "bnf": True})
    open("bnf.nnc", "wb").write(bytes(bs))


if __name__ == "__main__":
    main()

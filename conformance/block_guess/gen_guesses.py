"""Writes torchvision.json: for some torchvision architectures, the state dict's names and
shapes, and the block structure NNCodec 2.1.3's model pipeline guesses for batch-norm folding
(its PyTorch model's guess given the modules' BatchNorm2d info) with the result of its check.

Run with the reference's venv (nncodec 2.1.3, torch, torchvision):
    python gen_guesses.py
"""
import json

import torchvision
from nncodec.framework import pytorch_model
from nncodec.nnc_core import nnr_model

ARCHITECTURES = ["resnet18", "mobilenet_v2", "vgg11_bn", "densenet121", "efficientnet_b0",
                 "shufflenet_v2_x0_5"]

cases = {}
for arch in ARCHITECTURES:
    module = getattr(torchvision.models, arch)()
    shapes = {k: list(v.shape) for k, v in module.state_dict().items()}
    coded = {k: v.detach().numpy() for k, v in module.state_dict().items()
             if "num_batches_tracked" not in k}
    nnc_model = pytorch_model.PytorchModel()
    guess = nnc_model.guess_block_id_and_param_type(
        coded, bn_info=nnc_model.get_torch_bn_info(module))
    check = None if guess is None else nnr_model.sanity_check_block_id_and_param_type(guess, coded)
    cases[arch] = {"tensors": [[k, s] for k, s in shapes.items()], "guess": guess,
                   "check_passes": check}

with open("torchvision.json", "w") as f:
    json.dump(cases, f, separators=(",", ":"))

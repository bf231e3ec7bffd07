"""Writes tiny_resnet/: a small residual network in torchvision's ResNet naming (stem, two
stages of basic blocks, a downsample branch, a linear head), randomly initialised with random
BatchNorm statistics, as its state dict (input.npz), and the stream NNCodec 2.1.3's model
pipeline codes from it with batch-norm folding (bitstream.nnc: `nncodec.nn.encode(model,
{"bnf": True}, epoch=0)`).

Run with the reference's venv (nncodec 2.1.3, torch):
    python gen_tiny_resnet.py
"""
import os
import tempfile

import numpy as np
import torch
from torch import nn
from nncodec import nn as nnc_nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(Block(8, 8, 1))
        self.layer2 = nn.Sequential(Block(8, 16, 2))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean((2, 3)))


torch.manual_seed(0)
model = TinyResNet()
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
model.eval()
os.makedirs("tiny_resnet", exist_ok=True)
np.savez("tiny_resnet/input.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
with tempfile.TemporaryDirectory() as results:
    stream = nnc_nn.encode(model, {"ioq": False, "bnf": True, "results": results}, epoch=0)
with open("tiny_resnet/bitstream.nnc", "wb") as f:
    f.write(bytes(stream))

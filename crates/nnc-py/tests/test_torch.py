"""PyTorch tensors as inputs: parameters (autograd), GPU tensors and bfloat16 are taken as their
values. The protocol nnc relies on (`detach`, `cpu`, `numpy`, `view(torch.int16)`) is tested with
a stand-in everywhere; the same tests run against real PyTorch where it is installed."""

import sys
import types

import numpy as np
import pytest

import nnc

RNG = np.random.default_rng(99)


def bf16_bits(x):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns, as torch does."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_values(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


class FakeDtype:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return "torch." + self.name


class Tensor:
    """What nnc uses of a torch.Tensor (nnc recognises the class by its module and name). `numpy()` refuses, as torch does, while the tensor needs
    grad or sits on a GPU, and for bfloat16."""

    def __init__(self, values, dtype="float32", requires_grad=False, device="cuda:0"):
        self.values = np.asarray(values)
        self.dtype = FakeDtype(dtype)
        self.requires_grad = requires_grad
        self.device = device
        self.shape = self.values.shape

    def detach(self):
        return FakeTensor(self.values, self.dtype.name, False, self.device)

    def cpu(self):
        return FakeTensor(self.values, self.dtype.name, self.requires_grad, "cpu")

    def contiguous(self):
        return self

    def view(self, dtype):
        assert self.dtype.name == "bfloat16" and dtype == "int16-marker"
        return FakeTensor(self.values.view(np.int16), "int16", self.requires_grad, self.device)

    def numpy(self):
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad.")
        if self.device != "cpu":
            raise TypeError("can't convert cuda:0 device type tensor to numpy.")
        if self.dtype.name == "bfloat16":
            raise TypeError("Got unsupported ScalarType BFloat16")
        if self.dtype.name == "float8_e4m3fn":
            raise TypeError("Got unsupported ScalarType Float8_e4m3fn")
        return self.values

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.numpy(), dtype=dtype)


Tensor.__module__ = "torch"


class FakeTensor(Tensor):
    """A subclass elsewhere, as `nn.Parameter` or a user's own tensor type is."""


FakeTensor.__module__ = "user.models"


@pytest.fixture(params=["stand-in", "torch"])
def torch_like(request, monkeypatch):
    """(make, torch module): `make(values, dtype, requires_grad)` builds a tensor."""
    if request.param == "torch":
        torch = pytest.importorskip("torch")
        dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float8_e4m3fn": torch.float8_e4m3fn,
                  "int64": torch.int64}

        def make(values, dtype="float32", requires_grad=False):
            if dtype == "bfloat16":
                t = torch.from_numpy(np.ascontiguousarray(values, np.float32)).to(torch.bfloat16)
            elif dtype == "float8_e4m3fn":
                t = torch.from_numpy(np.ascontiguousarray(values, np.float32)).to(torch.float8_e4m3fn)
            else:
                t = torch.from_numpy(np.ascontiguousarray(values)).to(dtypes[dtype])
            return torch.nn.Parameter(t) if requires_grad else t

        return make
    fake = types.ModuleType("torch")
    fake.int16 = "int16-marker"
    monkeypatch.setitem(sys.modules, "torch", fake)

    def make(values, dtype="float32", requires_grad=False):
        v = np.asarray(values)
        if dtype == "bfloat16":
            v = bf16_bits(v)  # the storage: bit patterns
        elif dtype == "float32":
            v = v.astype(np.float32)
        return FakeTensor(v, dtype, requires_grad)

    return make


def test_parameters_and_device_tensors_encode_as_their_values(torch_like):
    w = RNG.normal(0, 0.1, (12, 8)).astype(np.float32)
    model = {"fc.weight": torch_like(w, requires_grad=True), "steps": torch_like(np.array([3, 4]), "int64")}
    out = nnc.decode(nnc.encode(model))
    assert list(out) == ["fc.weight", "steps"]
    assert out["fc.weight"].dtype == np.float32 and out["fc.weight"].shape == (12, 8)
    assert np.abs(out["fc.weight"] - w).max() <= 2 * 2.0 ** (-32 / 4)
    assert out["steps"].dtype == np.int64 and out["steps"].tolist() == [3, 4]
    # The same values as a NumPy array give the same stream.
    assert nnc.encode({"fc.weight": torch_like(w, requires_grad=True)}) == nnc.encode({"fc.weight": w})


def test_bfloat16_tensors_keep_their_dtype(torch_like):
    x = RNG.normal(0, 0.1, (6, 10)).astype(np.float32)
    bits = nnc.encode({"x": torch_like(x, "bfloat16")})
    out = nnc.decode(bits)["x"]
    assert out.shape == (6, 10)
    try:
        import ml_dtypes

        assert out.dtype == ml_dtypes.bfloat16
        out = out.astype(np.float32)
    except ImportError:
        assert out.dtype == np.float32  # bfloat16 values, exactly, without ml_dtypes
    assert np.abs(out - bf16_values(bf16_bits(x))).max() <= 2 * 2.0 ** (-32 / 4)


def test_unsupported_torch_dtype_is_named(torch_like):
    with pytest.raises(nnc.InvalidArgumentError, match=r"tensor \"w\": a PyTorch tensor of torch.float8_e4m3fn"):
        nnc.encode({"w": torch_like(np.array([0.5, 1.0], np.float32), "float8_e4m3fn")})


def test_fl_codecs_take_torch_state_dicts(torch_like):
    w0 = RNG.normal(0, 0.1, (8, 4)).astype(np.float32)
    b0 = np.zeros(8, np.float32)
    layout = {"fc.weight": torch_like(w0, requires_grad=True), "fc.bias": torch_like(b0, "bfloat16")}
    opts = dict(compressed=True, qp=-24)
    server = nnc.ServerCodec(layout, layout, **opts)
    client = nnc.ClientCodec(layout, 1, **opts)
    g = client.receive(server.initial_message())
    assert np.array_equal(np.asarray(g["fc.weight"], np.float32), w0)
    local = {"fc.weight": torch_like(w0 + 0.01, requires_grad=True), "fc.bias": torch_like(b0 + 0.5, "bfloat16")}
    glob = client.receive(server.aggregate([(1, 10, client.send(local))]))
    assert np.abs(np.asarray(glob["fc.weight"], np.float32) - (w0 + 0.01)).max() < 0.02
    bias = glob["fc.bias"]
    assert bias.dtype.name in ("bfloat16", "float32")  # bfloat16 with ml_dtypes installed
    assert np.abs(np.asarray(bias, np.float32) - 0.5).max() < 0.02


def nnc_cli():
    """The command-line tool of this checkout, if built."""
    import os
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[3]
    for p in [os.environ.get("NNC_BIN"), root / "target/release/nnc", root / "target/debug/nnc"]:
        if p and pathlib.Path(p).is_file():
            return str(p)
    pytest.skip("the nnc command-line tool is not built")


def test_decoded_pytorch_checkpoints_load_in_torch(tmp_path):
    """`nnc decode -o X.pt` writes a state dict that torch.load reads with weights_only=True (its
    default) and with mmap=True, every dtype as the stream holds it."""
    import subprocess

    torch = pytest.importorskip("torch")
    cli = nnc_cli()
    model = {
        "w": RNG.normal(0, 0.1, (6, 5)).astype(np.float32),
        "h": RNG.normal(0, 0.1, (4,)).astype(np.float16),
        "b": RNG.normal(0, 0.1, (3,)).astype(np.float64),
        "n": np.array(7, np.int64),
        "u16": np.array([0, 65535], np.uint16),
        "u64": np.array([5], np.uint64),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
    }
    stream = tmp_path / "m.nnc"
    stream.write_bytes(nnc.encode(model))
    expected = nnc.decode(stream.read_bytes())
    out = tmp_path / "m.pt"
    subprocess.run([cli, "-q", "decode", str(stream), "-o", str(out)], check=True)
    for mmap in (False, True):
        sd = torch.load(out, mmap=mmap)
        assert type(sd).__name__ == "OrderedDict" and list(sd) == list(expected)
        for k, v in sd.items():
            assert str(v.dtype) == "torch." + str(expected[k].dtype), k
            assert np.array_equal(v.numpy(), expected[k]), k

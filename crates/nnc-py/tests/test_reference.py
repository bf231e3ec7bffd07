"""Cross-check against NNCodec 2.1.3: our ``nnc.encode`` bytes equal ``nncodec.tensor.encode``'s,
and NNCodec decodes our bytes to our values.

NNCodec is used in-process when importable, otherwise through the interpreter named by
``NNC_REFERENCE_PYTHON`` (default ``/opt/nncodec-ref/bin/python``); the tests are skipped when
neither exists.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import nnc

REFERENCE_PYTHON = os.environ.get("NNC_REFERENCE_PYTHON", "/opt/nncodec-ref/bin/python")

# The helper run under the reference interpreter: encodes every case with nncodec.tensor.encode and
# decodes every given bitstream with nncodec.tensor.decode.
REFERENCE_SCRIPT = textwrap.dedent(
    """
    import io, json, sys, contextlib
    import numpy as np
    from nncodec import tensor
    work = sys.argv[1]
    cases = json.load(open(work + "/cases.json"))
    arrays = np.load(work + "/inputs.npz")
    ours = np.load(work + "/ours.npz")
    encoded, decoded = {}, {}
    for name in ours.files:
        with contextlib.redirect_stdout(io.StringIO()):
            decoded[name] = np.asarray(tensor.decode(bytearray(ours[name].tobytes())))
            if name in cases:
                bs = tensor.encode(arrays[name], dict(cases[name], results=work))
                encoded[name] = np.frombuffer(bytes(bs), dtype=np.uint8)
    np.savez(work + "/reference_encoded.npz", **encoded)
    np.savez(work + "/reference_decoded.npz", **decoded)
    """
)


def reference_available():
    try:
        import nncodec  # noqa: F401

        return "inprocess"
    except ImportError:
        pass
    if os.path.exists(REFERENCE_PYTHON):
        return "subprocess"
    return None


MODE = reference_available()
pytestmark = pytest.mark.skipif(MODE is None, reason="NNCodec 2.1.3 is not installed")


def cases():
    rng = np.random.default_rng(7)
    w = rng.normal(0, 0.05, size=(48, 40)).astype(np.float32)
    conv = rng.normal(0, 0.1, size=(8, 4, 3, 3)).astype(np.float32)
    bias = rng.normal(0, 0.5, size=(33,)).astype(np.float32)
    sparse = w.copy()
    sparse[rng.random(sparse.shape) < 0.6] = 0
    sparse[5:9] = 0
    ints = rng.integers(-300, 300, size=(17, 9)).astype(np.int32)
    return {
        "default_2d": (w, {}),
        "conv_qp_m24": (conv, {"qp": -24}),
        "bias_1d": (bias, {}),
        "no_dq": (w, {"use_dq": False, "qp": -28}),
        "codebook": (w, {"approx_method": "codebook"}),
        "bitdepth_6": (conv, {"bitdepth": 6}),
        "opt_qp": (w, {"opt_qp": True}),
        "row_skipping_off": (sparse, {"row_skipping": False}),
        "row_skipping_on": (sparse, {}),
        "param_opt_off": (w, {"param_opt": False}),
        "sparsity_half": (w, {"sparsity": 0.5}),
        "sparsity_unstructured": (w, {"sparsity": 0.3, "struct_spars_factor": 0.0}),
        "int32": (ints, {}),
        "qp_per_tensor": (w, {"qp_per_tensor": {"0": -20}}),
    }


def decode_only_cases():
    rng = np.random.default_rng(11)
    return {
        "carried_float64": rng.normal(0, 0.1, size=(12, 20)),
        "carried_float16": rng.normal(0, 0.1, size=(12, 20)).astype(np.float16),
        "carried_int64": rng.integers(-9, 9, size=(7, 3)),
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Runs the reference once over every case; returns (encoded, decoded) dicts."""
    work = str(tmp_path_factory.mktemp("nncodec"))
    all_cases = cases()
    ours = {name: np.frombuffer(nnc.encode(a, **opts), dtype=np.uint8) for name, (a, opts) in all_cases.items()}
    # Decoded only: streams carrying dtypes in their topology data, which the reference ignores.
    for name, a in decode_only_cases().items():
        ours[name] = np.frombuffer(nnc.encode(a), dtype=np.uint8)
    np.savez(work + "/inputs.npz", **{n: a for n, (a, _) in all_cases.items()})
    np.savez(work + "/ours.npz", **ours)
    with open(work + "/cases.json", "w") as f:
        json.dump({n: o for n, (_, o) in all_cases.items()}, f)
    if MODE == "inprocess":
        cmd = [sys.executable, "-c", REFERENCE_SCRIPT, work]
    else:
        cmd = [REFERENCE_PYTHON, "-c", REFERENCE_SCRIPT, work]
    subprocess.run(cmd, check=True, timeout=600, stdout=subprocess.DEVNULL)
    enc = dict(np.load(work + "/reference_encoded.npz"))
    dec = dict(np.load(work + "/reference_decoded.npz"))
    return ours, enc, dec


@pytest.mark.parametrize("name", sorted(cases()))
def test_encoder_bytes_equal_reference(reference, name):
    ours, enc, _ = reference
    assert ours[name].tobytes() == enc[name].tobytes(), f"{name}: {len(ours[name])} vs {len(enc[name])} bytes"


@pytest.mark.parametrize("name", sorted(cases()) + sorted(decode_only_cases()))
def test_reference_decodes_our_bytes_to_our_values(reference, name):
    ours, _, dec = reference
    mine = nnc.decode(ours[name].tobytes())["0"]
    theirs = dec[name]
    assert mine.shape == theirs.shape
    # The reference returns float32 (int32 for integers); our values, in that type, are the same.
    np.testing.assert_array_equal(mine.astype(theirs.dtype), theirs)


def test_float64_without_carried_dtypes_codes_like_the_reference_float32():
    w = np.random.default_rng(3).normal(size=(20, 30))
    assert nnc.encode(w, carry_dtypes=False) == nnc.encode(w.astype(np.float32))
    # With dtypes carried the stream only grows by the topology data the reference ignores.
    assert len(nnc.encode(w)) > len(nnc.encode(w, carry_dtypes=False))

"""The Python API of nnc: round trips with dtypes and shapes, options, incremental states,
pickling, errors."""

import ast
import copy
import inspect
import pathlib
import pickle
import threading
from collections import OrderedDict

import numpy as np
import pytest

import nnc

RNG = np.random.default_rng(1234)


def weights(shape, scale=0.1, dtype=np.float32):
    return RNG.normal(0, scale, size=shape).astype(dtype)


def test_single_array_is_named_0_and_round_trips_within_two_steps():
    w = weights((32, 24))
    bits = nnc.encode(w)
    assert isinstance(bits, bytes) and len(bits) < w.nbytes
    out = nnc.decode(bits)
    assert list(out) == ["0"]
    assert out["0"].dtype == np.float32 and out["0"].shape == w.shape
    step = 2.0 ** (-32 / 4)
    assert np.abs(out["0"] - w).max() <= 2 * step  # dependent quantization: two interleaved grids


def test_tensor_id_names_the_single_array():
    assert list(nnc.decode(nnc.encode(weights((4, 4)), tensor_id="fc.weight"))) == ["fc.weight"]


@pytest.mark.parametrize(
    "dtype", ["float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint64", "uint32", "uint16", "uint8", "bool"]
)
def test_dtypes_and_shapes_survive(dtype):
    if dtype == "bool":
        x = RNG.random((5, 7)) > 0.5
    elif np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        x = RNG.integers(max(info.min, -1000), min(info.max, 1000), size=(5, 7)).astype(dtype)
    else:
        x = weights((5, 7), dtype=dtype)
    out = nnc.decode(nnc.encode({"x": x}))["x"]
    assert out.dtype == x.dtype and out.shape == x.shape
    if np.dtype(dtype).kind in "iub":
        np.testing.assert_array_equal(out, x)  # integers are lossless
    else:
        assert np.abs(out.astype(np.float64) - x.astype(np.float64)).max() < 0.01


def test_dict_order_scalars_and_1d_tensors():
    d = OrderedDict(
        [("b", weights((10,))), ("a", weights((6, 6))), ("step", np.int64(42)), ("lr", np.float64(0.5))]
    )
    out = nnc.decode(nnc.encode(d))
    assert list(out) == ["b", "a", "step", "lr"]
    assert out["step"].shape == () and out["step"].dtype == np.int64 and out["step"] == 42
    assert out["lr"].shape == () and abs(float(out["lr"]) - 0.5) < 1e-3
    # 1-D tensors use nonweight_qp (-75): far finer than the weights.
    assert np.abs(out["b"] - d["b"]).max() < 1e-5


def test_empty_arrays_come_back_in_their_place():
    d = OrderedDict(
        [
            ("w", weights((8, 8))),
            ("mask", np.zeros((0, 4), np.float16)),
            ("b", weights((8,))),
            ("no_width", np.zeros((4, 0), np.float32)),
            ("ids", np.zeros(0, np.int64)),
        ]
    )
    for state_dict in (False, True):
        out = nnc.decode(nnc.encode(d, state_dict=state_dict))
        assert list(out) == list(d)
        assert [(v.dtype, v.shape) for v in out.values()] == [(v.dtype, v.shape) for v in d.values()]
    # Rows of no width travel only in the metadata.
    with pytest.raises(nnc.InvalidArgumentError, match='"no_width" .* rows of no width'):
        nnc.encode(d, carry_dtypes=False)
    with pytest.raises(nnc.InvalidArgumentError, match="every tensor is empty"):
        nnc.encode(np.zeros((3, 0), np.float32))
    assert nnc.decode(nnc.encode(np.zeros((0, 3), np.float32)))["0"].shape == (0, 3)


def test_non_contiguous_big_endian_and_list_inputs():
    base = weights((12, 10)).astype(">f4")
    view = base[::2, 1::3]
    out = nnc.decode(nnc.encode(view))["0"]
    assert out.shape == view.shape and out.dtype == np.float32
    assert np.abs(out - view).max() < 0.01
    out = nnc.decode(nnc.encode([[1, 2], [3, 4]]))["0"]
    np.testing.assert_array_equal(out, [[1, 2], [3, 4]])


def test_fortran_ordered_and_transposed_arrays_are_coded_as_the_same_arrays():
    # Their memory is column-major; it used to be coded as if it were row-major.
    w = weights((12, 10))
    ints = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    given = {"f": np.asfortranarray(w), "t": w.T, "i": np.asfortranarray(ints)}
    assert given["f"].flags.f_contiguous and not given["f"].flags.c_contiguous
    plain = nnc.decode(nnc.encode({k: np.ascontiguousarray(v) for k, v in given.items()}))
    out = nnc.decode(nnc.encode(given))
    for k, v in given.items():
        assert out[k].shape == v.shape
        np.testing.assert_array_equal(out[k], plain[k])
    assert np.abs(out["f"] - w).max() < 0.01
    np.testing.assert_array_equal(out["i"], ints)


def test_lent_arrays_code_as_their_copies_and_stay_as_they_were():
    # C-contiguous native float32 and int32 arrays are read where they lie; the others (a
    # strided view, a byte-swapped array, another dtype) are copied. Either way, the same bytes.
    base = weights((16, 24))
    given = {
        "lent": base,
        "view": base[:, ::2],
        "swapped": base.astype(">f4"),
        "ints": np.arange(-30, 30, dtype=np.int32).reshape(6, 10),
        "wide": base.astype(np.float64),
    }
    before = {k: v.copy() for k, v in given.items()}
    copies = {
        k: np.array(v, dtype=v.dtype.newbyteorder("="), order="C", copy=True)
        for k, v in given.items()
    }
    assert nnc.encode(given) == nnc.encode(copies)
    assert nnc.encode(given, use_dq=False) == nnc.encode(copies, use_dq=False)
    a, b = nnc.EncoderState(), nnc.EncoderState()
    assert nnc.encode(given, tca=True, state=a) == nnc.encode(copies, tca=True, state=b)
    assert a == b
    for k, v in given.items():
        np.testing.assert_array_equal(v, before[k])
        assert v.flags.writeable
    given["lent"][0, 0] = 1.5  # still the caller's to write


def test_options_change_the_stream():
    w = weights((40, 40))
    default = nnc.encode(w)
    assert len(nnc.encode(w, qp=-20)) < len(default)
    assert nnc.encode(w, use_dq=False) != default
    cb = nnc.decode(nnc.encode(w, approx_method="codebook"))["0"]
    assert np.abs(cb - w).max() < 0.05
    sparse = nnc.decode(nnc.encode(w, sparsity=0.6))["0"]
    assert (sparse == 0).mean() >= 0.55
    levels_fit = nnc.decode(nnc.encode(w, bitdepth=4))["0"]
    assert len(np.unique(levels_fit)) <= 16


def test_incremental_sequence_with_tca_keeps_both_states_equal():
    enc, dec = nnc.EncoderState(), nnc.DecoderState()
    shapes = {"w": (24, 16), "b": (16,)}
    for _ in range(4):
        upd = {k: weights(s, 0.01) for k, s in shapes.items()}
        bits = nnc.encode(upd, qp=-36, compress_differences=True, tca=True, state=enc)
        out = nnc.decode(bits, state=dec)
        for k in upd:
            assert np.abs(out[k] - upd[k]).max() < 2 * 2 ** (-36 / 4)
    assert enc.to_json() == dec.to_json()
    assert sorted(dec.tensor_names) == ["b", "w"]
    assert dec.base_levels("w").shape == (24 * 16,)
    assert dec.base_levels("missing") is None


def test_hdsp_sequence_needs_hdsp_and_its_history_to_decode():
    """HDSP is not signalled: a decoder without it (or without the earlier updates' history) is
    refused with StateMismatchError instead of reading the sig flags in the wrong contexts."""
    rng = np.random.default_rng(3)
    mask = rng.random((32, 48)) < 0.3  # the same sparse positions in every update
    enc, dec, plain_dec = nnc.EncoderState(), nnc.DecoderState(), nnc.DecoderState()
    flagged = []
    for step in range(4):
        upd = {"w": np.where(mask, rng.normal(0, 0.05, (32, 48)), 0).astype(np.float32)}
        bits = nnc.encode(upd, compress_differences=True, hdsp=True, state=enc)
        out = nnc.decode(bits, state=dec, hdsp=True)
        assert np.abs(out["w"] - upd["w"]).max() < 2 * 2 ** (-32 / 4)
        try:
            nnc.decode(bits, state=plain_dec.copy(), update_state=False)
        except nnc.StateMismatchError as e:
            assert "history-dependent significance probability" in str(e)
            flagged.append(step)
            with pytest.raises(nnc.StateMismatchError):
                nnc.decode(bits, state=nnc.DecoderState(), hdsp=True)  # no history
        nnc.decode(bits, state=plain_dec, hdsp=True)
    assert flagged and flagged[0] > 0, flagged  # once there is history, HDSP pays


def test_decoding_without_updating_leaves_the_state_alone_and_repeats_are_refused():
    enc, dec = nnc.EncoderState(), nnc.DecoderState()
    first = nnc.encode({"w": weights((8, 8), 0.01)}, compress_differences=True, tca=True, state=enc)
    nnc.decode(first, state=dec)
    second = nnc.encode({"w": weights((8, 8), 0.01)}, compress_differences=True, tca=True, state=enc)
    before = dec.copy()
    peek = nnc.decode(second, state=dec, update_state=False)
    assert dec == before
    assert np.array_equal(peek["w"], nnc.decode(second, state=dec)["w"])
    with pytest.raises(nnc.StateMismatchError):
        nnc.decode(second, state=dec)  # the same update twice
    # A failed decode changes nothing.
    after_failure = dec.copy()
    with pytest.raises(nnc.NncError):
        nnc.decode(second[: len(second) // 2], state=dec)
    assert dec == after_failure


def test_an_update_failing_at_a_later_tensor_leaves_the_states_alone():
    """The decoder knows "a" but not "b": the update decodes "a" and then fails at "b", and the
    state is as it was. The encoder, refused at its second tensor, is left alone too."""
    enc, dec = nnc.EncoderState(), nnc.DecoderState()
    opts = dict(compress_differences=True, tca=True, threads=1)
    first = {"a": weights((8, 8), 0.01), "b": weights((8, 8), 0.01)}
    nnc.encode(first, state=enc, **opts)
    nnc.decode(nnc.encode({"a": first["a"]}, state=nnc.EncoderState(), **opts), state=dec)
    second = nnc.encode({k: weights((8, 8), 0.01) for k in first}, state=enc, **opts)
    before = dec.copy()
    with pytest.raises(nnc.StateMismatchError, match="lacks"):
        nnc.decode(second, state=dec)
    assert dec == before and dec.tensor_names == ["a"]

    enc_before = enc.copy()
    with pytest.raises(nnc.StateMismatchError):
        # "b" moves to parameter_id 2, after a new tensor.
        moved = {"a": first["a"], "c": first["b"], "b": first["b"]}
        nnc.encode(moved, state=enc, **opts)
    assert enc == enc_before


def test_deferred_calls_leave_the_states_alone_until_their_changes_apply():
    """encode and decode with deferred=True return the state changes beside their output; the
    states change only when those are applied, exactly as the direct calls change them, and
    changes applied twice, to the other kind of state or to another state are refused."""
    opts = dict(compress_differences=True, tca=True, threads=1)
    updates = [{"a": weights((8, 8), 0.01 * (i + 1)), "b": weights((4, 8), 0.02)} for i in range(3)]
    enc, dec = nnc.EncoderState(), nnc.DecoderState()
    direct_enc, direct_dec = nnc.EncoderState(), nnc.DecoderState()
    for i, u in enumerate(updates):
        expected = nnc.encode(u, state=direct_enc, **opts)
        enc_before = enc.copy()
        bits, enc_changes = nnc.encode(u, state=enc, deferred=True, **opts)
        assert bits == expected and enc == enc_before
        assert enc_changes.tensor_names == ["a", "b"] and not enc_changes.applied
        expected_values = nnc.decode(bits, state=direct_dec)
        dec_before = dec.copy()
        values, dec_changes = nnc.decode(bits, state=dec, deferred=True)
        assert dec == dec_before
        assert all(np.array_equal(values[k], expected_values[k]) for k in expected_values)
        with pytest.raises(TypeError, match="DecoderState"):
            dec_changes.apply(enc)
        dec_changes.apply(dec)
        enc_changes.apply(enc)
        assert enc == direct_enc and dec == direct_dec, f"update {i}"
        assert dec_changes.applied and "applied" in repr(dec_changes)
        with pytest.raises(nnc.InvalidArgumentError, match="applied already"):
            dec_changes.apply(dec)
    # Changes made against the state before the last update no longer fit it.
    _, stale = nnc.decode(bits, state=dec_before, deferred=True)
    with pytest.raises(nnc.StateMismatchError, match="do not fit"):
        stale.apply(dec)
    assert dec == direct_dec
    with pytest.raises(nnc.InvalidArgumentError, match="deferred"):
        nnc.decode(bits, deferred=True)
    with pytest.raises(nnc.InvalidArgumentError, match="deferred"):
        nnc.encode(updates[0], state=enc, update_state=False, deferred=True, **opts)


def test_states_pickle_copy_and_json():
    enc = nnc.EncoderState()
    nnc.encode({"w": weights((8, 8))}, compress_differences=True, state=enc, device_id=5)
    for clone in (pickle.loads(pickle.dumps(enc)), copy.copy(enc), copy.deepcopy(enc), enc.copy()):
        assert clone == enc and clone is not enc and type(clone) is nnc.EncoderState
    assert nnc.EncoderState.from_json(enc.to_json()) == enc
    blob = enc.to_bytes()
    assert blob.startswith(b"nnc-state\x02") and len(blob) < len(enc.to_json())
    assert nnc.EncoderState.from_bytes(blob) == enc
    # As read from a file into a buffer, or through an mmap.
    assert nnc.EncoderState.from_bytes(bytearray(blob)) == enc
    assert nnc.EncoderState.from_bytes(memoryview(b"xx" + blob)[2:]) == enc
    with pytest.raises(TypeError, match="bytes, bytearray or memoryview, not str"):
        nnc.EncoderState.from_bytes(enc.to_json())
    with pytest.raises(nnc.InvalidArgumentError, match="another version"):
        nnc.EncoderState.from_bytes(blob[:9] + b"\x03" + blob[10:])
    with pytest.raises(nnc.InvalidArgumentError, match="not a valid nnc state"):
        nnc.DecoderState.from_bytes(blob[: len(blob) // 2])
    assert enc.device_id == 5
    assert "EncoderState(tensors=1" in repr(enc)
    assert nnc.EncoderState() != enc
    with pytest.raises(nnc.InvalidArgumentError):
        nnc.DecoderState.from_json("{not json")


def test_errors_are_python_exceptions_with_the_rust_message():
    with pytest.raises(nnc.MalformedError, match="NNR unit 0 at byte 0"):
        nnc.decode(b"\x00\x01garbage")
    with pytest.raises(nnc.InvalidArgumentError, match="complex64"):
        nnc.encode(np.zeros(3, np.complex64))
    with pytest.raises(nnc.InvalidArgumentError, match="does not fit int32"):
        nnc.encode(np.array([2**40], dtype=np.int64))
    with pytest.raises(nnc.InvalidArgumentError, match="approx_method"):
        nnc.encode(weights((4, 4)), approx_method="lloyd")
    with pytest.raises(nnc.InvalidArgumentError, match="tca"):
        nnc.encode(weights((4, 4)), tca=True)
    with pytest.raises(nnc.InvalidArgumentError, match="names must be str"):
        nnc.encode({1: weights((4, 4))})
    with pytest.raises(nnc.InvalidArgumentError):
        nnc.encode({})
    with pytest.raises(nnc.LimitExceededError):
        nnc.decode(nnc.encode(weights((64, 64))), max_tensor_elements=100)
    with pytest.raises(TypeError):
        nnc.encode(weights((4, 4)), qp="fine")
    assert issubclass(nnc.NncError, ValueError)


def test_truncations_never_crash():
    bits = nnc.encode({"w": weights((16, 16)), "b": weights((16,))})
    for n in range(len(bits)):
        try:
            nnc.decode(bits[:n])
        except nnc.NncError:
            pass


def test_threads_can_encode_concurrently():
    w = weights((64, 64))
    expected = nnc.encode(w)
    results = []
    threads = [threading.Thread(target=lambda: results.append(nnc.encode(w))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def test_decode_takes_bytes_like_input():
    w = weights((16, 8))
    stream = nnc.encode(w)
    expected = nnc.decode(stream)["0"]
    for b in (bytearray(stream), memoryview(stream), memoryview(b"xx" + stream)[2:]):
        np.testing.assert_array_equal(nnc.decode(b)["0"], expected)
    for bad in (12, "text", [1, 2]):
        with pytest.raises(TypeError, match="bytes, bytearray or memoryview"):
            nnc.decode(bad)


def test_attributes_travel_with_the_stream():
    model = {"a.weight": weights((16, 8))}
    meta = {"format": "pt", "model_type": "bert", "ünï": 'quote " and \\ backslash'}
    plain = nnc.encode(model)
    carried = nnc.encode(model, attributes=meta)
    assert nnc.attributes(carried) == meta
    assert nnc.attributes(plain) == {}
    np.testing.assert_array_equal(nnc.decode(carried)["a.weight"], nnc.decode(plain)["a.weight"])
    # Not carried without metadata: the stream is the reference's.
    assert nnc.encode(model, attributes=meta, carry_dtypes=False) == plain
    with pytest.raises(TypeError):
        nnc.encode(model, attributes={"n": 1})
    with pytest.raises(nnc.MalformedError):
        nnc.attributes(carried[:7])


def test_summary_names_each_tensor_without_decoding():
    model = {"a.weight": weights((16, 8)), "a.bias": weights((16,)), "steps": np.arange(6, dtype=np.int64)}
    stream = nnc.encode(model)
    rows = nnc.summary(stream)
    decoded = nnc.decode(stream)
    assert [r["name"] for r in rows] == list(decoded)
    for r in rows:
        assert r["shape"] == decoded[r["name"]].shape
        assert r["dtype"] == decoded[r["name"]].dtype.name
    by_name = {r["name"]: r for r in rows}
    assert by_name["a.weight"]["qp"] == -32 and by_name["a.bias"]["qp"] == -75
    assert by_name["steps"]["qp"] is None
    assert by_name["a.weight"]["coded_values"] == 128
    assert 0 < sum(r["bytes"] for r in rows) < len(stream)
    with pytest.raises(nnc.MalformedError):
        nnc.summary(stream[:7])
    # Shapes a stream leaves out (the reference's pre-signalled block) come from the caller,
    # as for decode.
    case = pathlib.Path(__file__).resolve().parents[3] / "conformance/vectors"
    pre = (case / "c_block_pre_signalling_side_info/bitstream.nnc").read_bytes()
    with pytest.raises(nnc.InvalidArgumentError, match="l.weight"):
        nnc.summary(pre)
    dims = {"l.weight": [16, 8, 3, 3]}
    shapes = {r["name"]: r["shape"] for r in nnc.summary(pre, tensor_dimensions=dims)}
    assert shapes["l.weight"] == (16, 8, 3, 3)
    assert nnc.decode(pre, tensor_dimensions=dims)["l.weight"].shape == (16, 8, 3, 3)


def test_bnf_folds_a_state_dict_as_the_reference_model_pipeline():
    """bnf=True guesses the blocks from a state dict's names, as NNCodec's model pipeline does
    for a torch model: the reference's stream byte for byte. Where nothing can be folded it
    raises instead of coding the model unfolded."""
    case = pathlib.Path(__file__).resolve().parents[3] / "conformance/vectors/nn_tiny_bnf"
    with np.load(case / "input.npz") as z:
        model = {k: z[k] for k in z.files}
    reference = (case / "bitstream.nnc").read_bytes()
    stream = nnc.encode(model, state_dict=True, bnf=True, carry_dtypes=False)
    assert stream == reference
    assert nnc.encode(model, state_dict=True, carry_dtypes=False) != reference
    # Decoded, the batch norms come back under their names (with the effect of the folded
    # block); without the metadata, the coded scaling and bias do.
    decoded = nnc.decode(nnc.encode(model, state_dict=True, bnf=True))
    assert list(decoded) == list(model)
    assert np.all(decoded["bn1.running_mean"] == 0)
    folded = nnc.decode(stream)
    assert np.array_equal(decoded["bn1.weight"], folded["conv1.weight_scaling"])
    with pytest.raises(nnc.InvalidArgumentError, match="state dict"):
        nnc.encode(model, bnf=True)
    pre_activation = {
        "norm.weight": np.ones(4, np.float32),
        "norm.bias": np.zeros(4, np.float32),
        "norm.running_mean": np.zeros(4, np.float32),
        "norm.running_var": np.ones(4, np.float32),
        "conv.weight": weights((8, 4, 3, 3)),
    }
    with pytest.raises(nnc.InvalidArgumentError, match="cannot be folded"):
        nnc.encode(pre_activation, state_dict=True, bnf=True)


def test_attached_files_of_a_model_directory(tmp_path):
    """A stream made by `nnc encode DIR` attaches the directory's config; Python reads it."""
    import shutil
    import subprocess

    repo = pathlib.Path(__file__).resolve().parents[3]
    built = [repo / "target" / p / "nnc" for p in ("release", "debug")]
    exe = shutil.which("nnc") or next((str(b) for b in built if b.exists()), None)
    if exe is None:
        pytest.skip("the nnc command is not built")
    model = tmp_path / "hf"
    model.mkdir()
    # A directory needs a model file by its Hugging Face name: nnc itself writes one.
    stream = nnc.encode({"w": weights((8, 8))})
    (tmp_path / "m.nnc").write_bytes(stream)
    out = str(model / "model.safetensors")
    subprocess.run([exe, "decode", str(tmp_path / "m.nnc"), "-o", out, "-q"], check=True)
    config = b'{"model_type": "bert"}'
    (model / "config.json").write_bytes(config)
    subprocess.run([exe, "encode", str(model), "-o", str(tmp_path / "d.nnc"), "-q"], check=True)
    d = (tmp_path / "d.nnc").read_bytes()
    assert nnc.attached_files(d) == {"config.json": config}
    assert nnc.attached_files(stream) == {}
    assert list(nnc.decode(d)) == ["w"]

    # And the other way: files attached from Python come out of `nnc decode -o DIR/`.
    tokenizer = bytes(range(256)) * 40
    w = weights((8, 8))
    attached = nnc.encode({"w": w}, files={"config.json": config, "tokenizer.model": tokenizer})
    assert nnc.attached_files(attached) == {"config.json": config, "tokenizer.model": tokenizer}
    # Without metadata nothing is attached.
    plain = nnc.encode({"w": w}, carry_dtypes=False)
    assert nnc.encode({"w": w}, files={"a": b"x"}, carry_dtypes=False) == plain
    (tmp_path / "a.nnc").write_bytes(attached)
    out = tmp_path / "out"
    subprocess.run([exe, "decode", str(tmp_path / "a.nnc"), "-o", f"{out}/", "-q"], check=True)
    assert (out / "config.json").read_bytes() == config
    assert (out / "tokenizer.model").read_bytes() == tokenizer


def test_qp_per_tensor_refuses_names_that_match_nothing():
    w = weights((16, 8))
    assert nnc.encode({"a": w}, qp_per_tensor={"a": -20}) != nnc.encode({"a": w})
    with pytest.raises(nnc.InvalidArgumentError, match='qp_per_tensor names "zzz"'):
        nnc.encode({"a": w}, qp_per_tensor={"zzz": -20})


def test_worker_threads_do_not_change_the_bytes_or_values():
    model = {f"l{i}.weight": weights((64, 32 + i)) for i in range(5)}
    streams = [nnc.encode(model, threads=n, scan_order=2) for n in (1, 2, None, 0)]
    assert all(s == streams[0] for s in streams)
    decoded = [nnc.decode(streams[0], threads=n) for n in (1, 2, None)]
    for d in decoded[1:]:
        assert list(d) == list(decoded[0])
        assert all(np.array_equal(d[k], decoded[0][k]) for k in d)
    with pytest.raises(OverflowError):
        nnc.decode(streams[0], threads=-1)
    with pytest.raises(nnc.InvalidArgumentError, match="at most 1024"):
        nnc.decode(streams[0], threads=5000)
    with pytest.raises(nnc.InvalidArgumentError, match="at most 1024"):
        nnc.encode(model, threads=1025)


def test_bfloat16_when_ml_dtypes_is_installed():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = weights((6, 6)).astype(ml_dtypes.bfloat16)
    out = nnc.decode(nnc.encode({"x": x}))["x"]
    assert out.dtype == x.dtype
    assert np.abs(out.astype(np.float32) - x.astype(np.float32)).max() < 0.01


def test_an_unsignalable_qp_is_refused_unless_masking_is_asked_for():
    # The bias is coded at qp -66 where qp_density 1 signals [-64, 63] (docs/quirks.md
    # #qp-offset-range); masked to 7 bits it reads back as 62, a step 2^64 times too large.
    model = {
        "fc.weight": ((np.arange(128) % 7 - 3) * 0.1).astype(np.float32).reshape(16, 8),
        "fc.bias": ((np.arange(16) % 5 - 2) * 0.1).astype(np.float32),
    }
    args = dict(qp_density=1, nonweight_qp=-75, use_dq=False, state_dict=True)
    with pytest.raises(nnc.InvalidArgumentError, match="qp -66 is outside"):
        nnc.encode(model, **args)
    back = nnc.decode(nnc.encode(model, mask_unsignalable_qp=True, **args))
    assert np.abs(back["fc.bias"]).max() > 1e15
    assert np.abs(back["fc.weight"] - model["fc.weight"]).max() < 0.1


def test_apply_scaling_is_the_reference_reconstruct_lsa():
    lsa = pathlib.Path(__file__).resolve().parents[3] / "conformance/lsa"
    for name in ("lsa_fc_bias", "lsa_two_blocks", "lsa_bnf"):
        stream = (lsa / name / "bitstream.nnc").read_bytes()
        with np.load(lsa / name / "decoded.npz") as ref:
            expected = {k: ref[k] for k in ref.files}
        ours = nnc.decode(stream, apply_scaling=True)
        assert sorted(ours) == sorted(expected), name
        for k, v in expected.items():
            assert ours[k].dtype == v.dtype and np.array_equal(ours[k], v), (name, k)
        plain = nnc.decode(stream)
        assert any(k.endswith("weight_scaling") for k in plain), name


def test_lsa_codes_trained_scalings_as_the_reference_model_pipeline():
    case = pathlib.Path(__file__).resolve().parents[3] / "conformance/lsa_model"
    with np.load(case / "model.npz") as sd:
        arrays = {k: sd[k] for k in sd.files}
    ours = nnc.encode(arrays, state_dict=True, lsa=True, carry_dtypes=False)
    assert ours == (case / "lsa.nnc").read_bytes()
    with pytest.raises(nnc.InvalidArgumentError, match="local scalings"):
        nnc.encode({k: v for k, v in arrays.items() if "scaling" not in k}, state_dict=True, lsa=True)


def test_ioq_scores_trials_and_writes_the_reference_bytes():
    case = pathlib.Path(__file__).resolve().parents[3] / "conformance/ioq/cases/ioq_dq"
    config = __import__("json").loads((case / "config.json").read_text())
    with np.load(case / "input.npz") as f:
        model = {k: f[k] for k in f.files}
    tol = config["tolerance"]
    calls = []

    def score(rec):
        calls.append(sorted(rec))
        hits = sum(int(np.count_nonzero(np.abs(rec[k].astype(np.float64) - v.astype(np.float64)) <= tol))
                   for k, v in model.items())
        return {"acc": hits / sum(v.size for v in model.values())}

    args = config["encoder_args"]
    ours = nnc.encode(model, qp=args["qp"], row_skipping=False, ioq=score)
    assert ours == (case / "bitstream.nnc").read_bytes()
    assert len(calls) == config["evaluations"] and calls[0] == sorted(model)

    def broken(rec):
        raise KeyError("no accuracy")

    with pytest.raises(KeyError, match="no accuracy"):
        nnc.encode(model, ioq=broken)
    with pytest.raises(nnc.InvalidArgumentError, match="codebook"):
        nnc.encode(model, approx_method="codebook", ioq=score)


def test_quantize_only_gives_the_reference_quantize_only_values():
    # Where NNCodec's tensor.encode(..., quantize_only=True) equals its decode (recorded by the
    # generator), ours equals that decode too, without a stream.
    vectors = pathlib.Path(__file__).resolve().parents[3] / "conformance/vectors"
    for name in ("t_default_2d", "t_codebook_clustered_4d"):
        config = __import__("json").loads((vectors / name / "config.json").read_text())
        assert config["quantize_only_output_equals_decoded"]
        x = np.load(vectors / name / "input.npy")
        args = dict(config["encoder_args"])
        q = nnc.encode(x, quantize_only=True, **args)["0"]
        ref = np.load(vectors / name / "decoded.npy")
        assert q.dtype == ref.dtype and np.array_equal(q.reshape(ref.shape), ref), name
    with pytest.raises(nnc.InvalidArgumentError, match="quantize_only"):
        nnc.encode(x, quantize_only=True, state=nnc.EncoderState())


def test_every_function_takes_the_arguments_its_stub_declares():
    # help(nnc.encode) and IDEs show the runtime signature; it must name every argument the
    # stub (and the function) takes, in the same order.
    stub = pathlib.Path(nnc.__file__).with_name("_nnc.pyi")
    tree = ast.parse(stub.read_text())
    checked = 0
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        args = node.args
        declared = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        runtime = list(inspect.signature(getattr(nnc, node.name)).parameters)
        assert runtime == declared, node.name
        checked += 1
    assert checked >= 5

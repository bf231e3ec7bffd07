"""nnc.ClientCodec / nnc.ServerCodec (the nnc-fl codecs): a few rounds of NNC-coded FedAvg,
states that pickle and resume, errors."""

import pickle

import numpy as np
import pytest

import nnc

LAYOUT = {"fc.weight": (16, 8), "fc.bias": (16,)}
OPTS = dict(compressed=True, qp=-24, tca=True, sparsity=0.5, struct_spars_factor=0.9, use_dq=True)


def initial():
    rng = np.random.default_rng(0)
    return {"fc.weight": rng.normal(0, 0.1, (16, 8)).astype(np.float32), "fc.bias": np.zeros(16, np.float32)}


def run_rounds(server, clients, msg, rounds, rng):
    for _ in range(rounds):
        ups = []
        for c in clients:
            g = c.receive(msg)
            local = {k: v + rng.normal(0, 0.02, v.shape).astype(np.float32) for k, v in g.items()}
            ups.append((c.device_id, 10, c.send(local)))
        msg = server.aggregate(ups)
    return msg, ups


def test_rounds_keep_server_and_clients_in_step_and_compress():
    server = nnc.ServerCodec(LAYOUT, initial(), **OPTS)
    clients = [nnc.ClientCodec(LAYOUT, i + 1, **OPTS) for i in range(2)]
    first = server.initial_message()
    assert len(first) == 4 * 144  # the initial model goes uncompressed
    msg, ups = run_rounds(server, clients, first, 3, np.random.default_rng(1))
    assert server.round == 3 and all(c.comm_round == 3 for c in clients)
    for _, _, up in ups:
        assert len(up) < 0.35 * 4 * 144
    for c in clients:
        got = c.receive(msg)
        assert list(got) == list(LAYOUT)
        for k in got:
            assert got[k].dtype == np.float32 and got[k].shape == LAYOUT[k]
            np.testing.assert_array_equal(got[k], server.global_model[k])


def test_received_tensors_are_the_callers_own():
    # The arrays `receive` returns share the decoded model's memory, one tensor after the
    # other: writing one changes neither the other tensors nor the client's global model.
    server = nnc.ServerCodec(LAYOUT, initial(), **OPTS)
    client = nnc.ClientCodec(LAYOUT, 1, **OPTS)
    msg, _ = run_rounds(server, [client], server.initial_message(), 2, np.random.default_rng(3))
    got = client.receive(msg)
    kept = {k: v.copy() for k, v in got.items()}
    got["fc.weight"][...] = 7.0
    np.testing.assert_array_equal(got["fc.bias"], kept["fc.bias"])
    for k, v in client.global_model.items():
        np.testing.assert_array_equal(v, kept[k])
    got["fc.bias"] += 1.0  # writeable, like any array
    np.testing.assert_array_equal(client.global_model["fc.bias"], kept["fc.bias"])


def test_scalar_and_empty_tensors_of_a_state_dict():
    # A learnable scalar (CLIP's logit_scale) and an empty buffer, as a state dict holds them.
    layout = {"logit_scale": np.float32(2.5), "unused": np.zeros((0, 4), np.float32), **initial()}
    server = nnc.ServerCodec(layout, layout, **OPTS)
    clients = [nnc.ClientCodec(layout, i + 1, **OPTS) for i in range(2)]
    msg, _ = run_rounds(server, clients, server.initial_message(), 2, np.random.default_rng(4))
    for c in clients:
        got = c.receive(msg)
        assert got["logit_scale"].shape == () and got["unused"].shape == (0, 4)
        for k in got:
            np.testing.assert_array_equal(got[k], server.global_model[k])
    assert got["logit_scale"] != 2.5  # it was trained and coded like the rest


def test_fedbnf_clients_keep_their_batch_norm_statistics():
    rng = np.random.default_rng(5)
    model = {
        "conv.weight": rng.normal(0, 0.1, (4, 2, 3, 3)).astype(np.float32),
        "bn.weight": np.ones(4, np.float32),
        "bn.bias": np.zeros(4, np.float32),
        "bn.running_mean": np.zeros(4, np.float32),
        "bn.running_var": np.ones(4, np.float32),
        "bn.num_batches_tracked": np.int64(0),
        "fc.weight": rng.normal(0, 0.1, (3, 4)).astype(np.float32),
        "fc.bias": np.zeros(3, np.float32),
    }
    opts = dict(compressed=True, qp=-24, bnf=True)
    server = nnc.ServerCodec(model, model, **opts)
    clients = [nnc.ClientCodec(model, i + 1, **opts) for i in range(2)]
    msg = server.initial_message()
    sent = {}
    for _ in range(2):
        ups = []
        for c in clients:
            g = c.receive(msg)
            local = {k: (v + rng.normal(0, 0.05, np.shape(v))).astype(v.dtype) for k, v in g.items()}
            local["bn.running_var"] = np.abs(local["bn.running_var"]) + 0.5
            sent[c.device_id] = local
            ups.append((c.device_id, 10, c.send(local)))
        msg = server.aggregate(ups)
    for c in clients:
        got = c.receive(msg)
        assert list(got) == list(model) and got["bn.num_batches_tracked"].dtype == np.int64
        # The running statistics are the client's own; the coded weights are shared.
        for k in ("bn.running_mean", "bn.running_var"):
            np.testing.assert_array_equal(got[k], sent[c.device_id][k])
        assert not np.array_equal(got["bn.running_mean"], server.global_model["bn.running_mean"])
    np.testing.assert_array_equal(clients[0].global_model["fc.weight"], clients[1].global_model["fc.weight"])
    with pytest.raises(ValueError, match="bnf"):
        nnc.ClientCodec({"fc.weight": (3, 4)}, 1, **opts)


def test_models_come_back_in_the_layouts_dtypes():
    # A state dict as PyTorch gives it: float16 weights, a bool mask, an int64 counter.
    model = {
        "fc.weight": initial()["fc.weight"].astype(np.float16),
        "mask": np.array([True, False, True]),
        "bn.num_batches_tracked": np.array(40, np.int64),
    }
    server = nnc.ServerCodec(model, model, **OPTS)
    clients = [nnc.ClientCodec(model, i + 1, **OPTS) for i in range(2)]
    msg = server.initial_message()
    for step in range(2):
        ups = []
        for c in clients:
            g = c.receive(msg)
            assert {k: v.dtype for k, v in g.items()} == {k: v.dtype for k, v in model.items()}
            assert g["bn.num_batches_tracked"] == 40 + 10 * step
            local = dict(g, **{"bn.num_batches_tracked": g["bn.num_batches_tracked"] + 10})
            ups.append((c.device_id, 1, c.send(local)))
        msg = server.aggregate(ups)
    assert server.global_model["mask"].tolist() == [True, False, True]
    again = pickle.loads(pickle.dumps(clients[0]))
    assert again.global_model["bn.num_batches_tracked"].dtype == np.int64
    # float32 cannot hold every integer beyond 2^24: refused, not rounded.
    big = dict(model, **{"bn.num_batches_tracked": np.array(2**24 + 1, np.int64)})
    with pytest.raises(nnc.InvalidArgumentError, match="bn.num_batches_tracked.*beyond"):
        clients[0].send(big)
    lowest = dict(model, **{"bn.num_batches_tracked": np.array(np.iinfo(np.int64).min)})
    with pytest.raises(nnc.InvalidArgumentError, match="beyond"):
        clients[0].send(lowest)
    with pytest.raises(nnc.InvalidArgumentError, match="complex128"):
        nnc.ClientCodec({"z": np.zeros(2, complex)}, 1)


def test_codecs_pickle_and_resume_mid_session():
    rng = np.random.default_rng(2)
    server = nnc.ServerCodec(LAYOUT, initial(), **OPTS)
    clients = [nnc.ClientCodec(LAYOUT, i + 1, **OPTS) for i in range(2)]
    msg, _ = run_rounds(server, clients, server.initial_message(), 2, rng)
    server2 = pickle.loads(pickle.dumps(server))
    clients2 = [nnc.ClientCodec.resume(LAYOUT, clients[0].state_json(), **OPTS),
                nnc.ClientCodec.resume(LAYOUT, clients[1].state_bytes(), **OPTS)]
    server3 = nnc.ServerCodec.resume(LAYOUT, server.state_bytes(), **OPTS)
    for like in (bytearray, memoryview):
        resumed = nnc.ServerCodec.resume(LAYOUT, like(server.state_bytes()), **OPTS)
        assert resumed.state_bytes() == server.state_bytes()
    assert server2.state_json() == server.state_json() == server3.state_json()
    assert server2.state_bytes() == server.state_bytes()
    assert len(server.state_bytes()) < len(server.state_json())
    assert [c.state_json() for c in clients2] == [c.state_json() for c in clients]
    clients3 = [pickle.loads(pickle.dumps(c)) for c in clients]
    a, _ = run_rounds(server, clients, msg, 1, np.random.default_rng(3))
    b, _ = run_rounds(server2, clients2, msg, 1, np.random.default_rng(3))
    c, _ = run_rounds(server3, clients3, msg, 1, np.random.default_rng(3))
    assert a == b == c


def test_saved_states_of_the_wrong_kind_are_refused():
    server = nnc.ServerCodec(LAYOUT, initial(), **OPTS)
    client = nnc.ClientCodec(LAYOUT, 1, **OPTS)
    client.receive(server.initial_message())
    with pytest.raises(nnc.InvalidArgumentError, match="nnc FL client state"):
        nnc.ClientCodec.resume(LAYOUT, server.state_bytes(), **OPTS)
    with pytest.raises(nnc.InvalidArgumentError, match="after its end"):
        nnc.ServerCodec.resume(LAYOUT, server.state_bytes() + b"\0", **OPTS)
    with pytest.raises(nnc.InvalidArgumentError):
        nnc.ClientCodec.resume(LAYOUT, client.state_bytes()[:-3], **OPTS)
    with pytest.raises(TypeError, match="bytes, bytearray or memoryview .* or str .*, not int"):
        nnc.ClientCodec.resume(LAYOUT, 42, **OPTS)
    # Pickles of earlier builds carry the state as JSON; they still load.
    restore, (layout, options, _, _) = client.__reduce__()
    old = restore(layout, options, client.state_json())
    assert old.state_bytes() == client.state_bytes()


@pytest.mark.parametrize("local", [dict(threads=2), dict(verify_messages=True)])
def test_local_options_leave_the_messages_unchanged(local):
    rounds = []
    for opts in (dict(OPTS, threads=1), dict(OPTS, **local)):
        server = nnc.ServerCodec(LAYOUT, initial(), **opts)
        clients = [nnc.ClientCodec(LAYOUT, i + 1, **opts) for i in range(2)]
        rounds.append(run_rounds(server, clients, server.initial_message(), 2,
                                 np.random.default_rng(5)))
    assert rounds[0] == rounds[1]
    with pytest.raises(nnc.InvalidArgumentError, match="threads 5000 is above 1024"):
        nnc.ClientCodec(LAYOUT, 1, **dict(OPTS, threads=5000))


def test_clients_receive_bytes_like_messages():
    server = nnc.ServerCodec(LAYOUT, initial(), **OPTS)
    a, b = nnc.ClientCodec(LAYOUT, 1, **OPTS), nnc.ClientCodec(LAYOUT, 1, **OPTS)
    msg = server.initial_message()
    x, y = a.receive(msg), b.receive(bytearray(msg))
    assert all(np.array_equal(x[k], y[k]) for k in x)
    up = a.send({k: v + 0.01 for k, v in x.items()})
    assert b.send({k: v + 0.01 for k, v in y.items()}) == up
    down = server.aggregate([(1, 10, up)])
    x, y = a.receive(down), b.receive(memoryview(down))
    assert all(np.array_equal(x[k], y[k]) for k in x)
    with pytest.raises(TypeError, match="message must be bytes"):
        a.receive(42)


def test_flat_arrays_and_uncompressed_sessions():
    server = nnc.ServerCodec(list(LAYOUT.items()), np.zeros(144, np.float32))
    client = nnc.ClientCodec(LAYOUT, 1)
    g = client.receive(server.initial_message())
    assert all((v == 0).all() for v in g.values())
    up = client.send(np.full(144, 0.5, np.float32))
    assert len(up) == 4 * 144
    down = server.aggregate([(1, 3, up)])
    assert (client.receive(down)["fc.bias"] == 0.5).all()


def test_errors():
    with pytest.raises(TypeError, match="unknown FL option"):
        nnc.ClientCodec(LAYOUT, 1, qpp=3)
    with pytest.raises(nnc.InvalidArgumentError, match="device_id 0"):
        nnc.ClientCodec(LAYOUT, 0)
    with pytest.raises(nnc.InvalidArgumentError, match="tca"):
        nnc.ClientCodec(LAYOUT, 1, tca=True)
    with pytest.raises(nnc.InvalidArgumentError, match="approx_method|variant"):
        nnc.ClientCodec(LAYOUT, 1, approx_method="kmeans")
    with pytest.raises(TypeError, match="a string"):
        nnc.ClientCodec(LAYOUT, 1, approx_method=b"codebook")
    server = nnc.ServerCodec(LAYOUT, initial(), **OPTS)
    client = nnc.ClientCodec(LAYOUT, 1, **OPTS)
    with pytest.raises(nnc.NncError, match="before any global model"):
        client.send(initial())
    client.receive(server.initial_message())
    with pytest.raises(nnc.InvalidArgumentError, match="no tensor"):
        client.send({"fc.weight": np.zeros((16, 8))})
    with pytest.raises(nnc.InvalidArgumentError, match="shape"):
        client.send({"fc.weight": np.zeros((8, 16)), "fc.bias": np.zeros(16)})
    before = server.state_json()
    with pytest.raises(nnc.MalformedError):
        server.aggregate([(1, 10, b"junk")])
    assert server.state_json() == before


FL_SESSIONS = __import__("pathlib").Path(__file__).resolve().parents[3] / "conformance" / "fl"


@pytest.mark.parametrize("case", sorted(p.name for p in FL_SESSIONS.iterdir() if (p / "config.json").is_file()))
def test_reference_sessions_through_the_python_api(case):
    """The FL sessions recorded from the reference (conformance/gen_fl.py): every message the
    Python codecs write is the reference's, every global model they receive its values."""
    import json

    d = FL_SESSIONS / case
    cfg = json.loads((d / "config.json").read_text())
    opts = dict(cfg["options"], threads=1)
    layout = {name: tuple(shape) for name, shape in cfg["tensors"]}
    load = lambda p: {k: v for k, v in np.load(p).items()}
    server = nnc.ServerCodec(layout, load(d / "initial.npz"), **opts)
    clients = [nnc.ClientCodec(layout, i + 1, **opts) for i in range(cfg["clients"])]
    msg = server.initial_message()
    for rnd in range(1, cfg["rounds"] + 1):
        r = d / f"round_{rnd:02d}"
        ups = []
        for i, c in enumerate(clients):
            # FedBNF clients blend the batch norms with their own: each has its own model.
            own = r / f"client_{i + 1}_received.npz"
            expected = load(own if own.is_file() else r / "global.npz")
            got = c.receive(msg)
            for k in layout:
                np.testing.assert_array_equal(got[k].view(np.uint32), expected[k].view(np.uint32))
            up = c.send(load(r / f"client_{i + 1}_local.npz"))
            if opts["compress_upstream"]:
                assert up == (r / f"client_{i + 1}.nnc").read_bytes(), (rnd, i + 1)
            ups.append((i + 1, cfg["weights"][i], up))
        msg = server.aggregate(ups)
        if opts["compress_downstream"]:
            assert msg == (r / "server.nnc").read_bytes(), rnd

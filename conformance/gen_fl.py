#!/usr/bin/env python3
"""Federated-learning sessions of the reference (NNCodec 2.1.3), recorded message by message.

The reference's FL pipeline is `NNClient` / `NNCFedAvg` (framework/applications/utils/flwr) around
`nncodec.fl.encode` and `nncodec.nnc.decompress`. Those classes need Flower and keep their state in
`client_ID<k>_internal_states.npz` files; this script runs the same steps in a plain loop with the
states in memory, calling the reference's `fl.encode` and `nnc.decompress` with the arguments the
classes pass. Local training is replaced by a seeded perturbation of the received model, so a case
is a pure function of its seed: what is compared is the codec, not the training.

Usage (with the reference venv's python):

    python gen_fl.py OUTDIR --seed N [--random K [--no-fixed] [--random-layouts]] [--only NAME ...]
    PYTHONPATH=<flwr> python gen_fl.py OUTDIR --seed N --engine classes   # the same through NNClient/NNCFedAvg

The FedBNF cases (fl_bnf*) always run NNClient/NNCFedAvg, whose methods are the only
implementation of it, so they need Flower (`pip install --target DIR flwr==1.42.*`, then remove
the numpy it brings along so that the reference keeps its numpy<2, and PYTHONPATH=DIR).

Layout of OUTDIR/<case>/:

    config.json                 options (the FlOptions fields), clients, rounds, FedAvg weights, tensors
    initial.npz                 the server's initial model (sent raw in round 1, as Flower does)
    round_RR/global.npz         the model every client holds after receiving round RR's downstream
                                message (round 01: the initial model)
    round_RR/client_K_local.npz client K's model after local training in round RR
    round_RR/client_K_received.npz  (FedBNF) client K's model before training: its own blend
    round_RR/client_K.nnc       client K's upstream bitstream (with compress_upstream)
    round_RR/server.nnc         the server's downstream bitstream after round RR's aggregation
                                (with compress_downstream)
"""
import argparse
import contextlib
import copy
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import types
from collections import OrderedDict
from functools import reduce

import numpy as np

# nncodec.fl imports the Flower classes at module level; fl.encode needs neither Flower nor wandb.
sys.modules.setdefault("wandb", types.ModuleType("wandb"))
_flwr_stub = types.ModuleType("nncodec.framework.applications.utils.flwr")
_flwr_stub.NNClient = _flwr_stub.NNCFedAvg = None
sys.modules["nncodec.framework.applications.utils.flwr"] = _flwr_stub

from nncodec import fl as ref_fl  # noqa: E402
from nncodec import nnc as ref_nnc  # noqa: E402

TENSORS = [
    ("conv.weight", (8, 3, 3, 3)),
    ("conv.bias", (8,)),
    ("fc1.weight", (32, 72)),
    ("fc1.bias", (32,)),
    ("fc2.weight", (10, 32)),
    ("fc2.bias", (10,)),
]

# The reference's FL command line defaults (nnc_fl.py), as FlOptions names them.
DEFAULTS = dict(
    compress_upstream=True, compress_downstream=True, err_accumulation=True, compress_differences=True,
    qp=-32, diff_qp=None, nonweight_qp=-75, qp_density=2, use_dq=False, opt_qp=False, sparsity=0.0,
    struct_spars_factor=0.0, row_skipping=False, tca=False, bitdepth=None, bnf=False,
    approx_method="uniform", param_opt=True,
)

FIXED = OrderedDict([
    ("fl_qp32_dq", dict(qp=-32, use_dq=True)),
    ("fl_eucnc", dict(qp=-18, sparsity=0.8, struct_spars_factor=0.9, tca=True)),
    ("fl_eucnc_dq", dict(qp=-18, sparsity=0.8, struct_spars_factor=0.9, tca=True, use_dq=True)),
    ("fl_example_default", dict(qp=-12, nonweight_qp=-16, sparsity=0.8, use_dq=True)),
    ("fl_diff_qp_density3", dict(qp=-24, diff_qp=-28, qp_density=3, sparsity=0.5)),
    ("fl_rowskip_optqp_tca", dict(qp=-20, sparsity=0.6, row_skipping=True, opt_qp=True, tca=True)),
    ("fl_bitdepth_dq", dict(qp=-20, bitdepth=8, use_dq=True)),
    ("fl_whole_models", dict(qp=-30, compress_differences=False)),
    ("fl_no_err_acc_tca", dict(qp=-22, err_accumulation=False, tca=True, use_dq=True)),
    # One direction compressed: whole models only. With compress_differences the reference's
    # classes send the averaged differences as the raw model, or the averaged raw models as a
    # difference (docs/quirks.md#fl-one-direction); nnc-fl does not reproduce that.
    ("fl_upstream_only", dict(qp=-26, compress_downstream=False, compress_differences=False)),
    ("fl_downstream_only", dict(qp=-26, compress_upstream=False, compress_differences=False)),
    # FedBNF: the clients fold batch norm before coding and blend it back after decoding. That
    # logic lives only in NNClient/NNCFedAvg, so these cases always run them (needs flwr).
    ("fl_bnf", dict(qp=-24, bnf=True)),
    ("fl_bnf_tca_dq_sparse", dict(qp=-20, bnf=True, tca=True, use_dq=True, sparsity=0.5,
                                  struct_spars_factor=0.9)),
    ("fl_bnf_rowskip_no_err_acc", dict(qp=-26, bnf=True, row_skipping=True, err_accumulation=False)),
    # Codebooks: local steps of a few distinct sizes, so that a codebook is the smaller payload
    # for some tensors. Without error accumulation only: with it the reference's residual of a
    # codebook tensor is float64, which its encoder refuses in the next round
    # (docs/quirks.md#fl-codebook-residual).
    ("fl_no_param_opt", dict(qp=-24, param_opt=False, tca=True, use_dq=True)),
    ("fl_codebook", dict(qp=-23, approx_method="codebook", err_accumulation=False, training="discrete")),
    ("fl_codebook_tca_sparse", dict(qp=-21, approx_method="codebook", err_accumulation=False, tca=True,
                                    sparsity=0.5, training="discrete")),
])

# FedBNF cases: a convolution without bias and one with (whose bias the reference's unfolding
# counts twice, docs/quirks.md#fedbnf-layer-bias), each followed by a BatchNorm2d, then a linear layer.
BNF_TENSORS = [
    ("conv1.weight", (8, 3, 3, 3)),
    ("bn1.weight", (8,)),
    ("bn1.bias", (8,)),
    ("bn1.running_mean", (8,)),
    ("bn1.running_var", (8,)),
    ("conv2.weight", (6, 8, 3, 3)),
    ("conv2.bias", (6,)),
    ("bn2.weight", (6,)),
    ("bn2.bias", (6,)),
    ("bn2.running_mean", (6,)),
    ("bn2.running_var", (6,)),
    ("fc.weight", (10, 24)),
    ("fc.bias", (10,)),
]


def case_rng(seed, name):
    h = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def random_layout(rng):
    """2–5 tensors: convolutions, matrices up to 300 × 300 (with entry-point-sized rows), biases."""
    out = []
    for i in range(int(rng.integers(2, 6))):
        kind = rng.choice(["conv", "fc", "fc", "wide"])
        if kind == "conv":
            shape = (int(rng.integers(1, 33)), int(rng.integers(1, 17)), 3, 3)
        elif kind == "fc":
            shape = (int(rng.integers(1, 129)), int(rng.integers(1, 129)))
        else:
            shape = (int(rng.integers(100, 301)), int(rng.integers(100, 301)))
        out.append((f"l{i}.weight", shape))
        if rng.random() < 0.8:
            out.append((f"l{i}.bias", (shape[0],)))
    return out


def random_options(rng):
    o = dict(qp=int(rng.integers(-36, -9)), qp_density=int(rng.choice([2, 2, 2, 1, 3])))
    if rng.random() < 0.3:
        o["diff_qp"] = o["qp"] + int(rng.integers(-6, 7))
    o["nonweight_qp"] = int(rng.choice([-75, -40, -20]))
    o["use_dq"] = bool(rng.random() < 0.5)
    o["sparsity"] = float(rng.choice([0.0, 0.0, 0.3, 0.6, 0.8, 0.9]))
    if o["sparsity"] > 0 and rng.random() < 0.5:
        o["struct_spars_factor"] = float(rng.choice([0.5, 0.9, 1.0]))
    o["row_skipping"] = bool(rng.random() < 0.4)
    o["opt_qp"] = bool(rng.random() < 0.2)
    o["compress_differences"] = bool(rng.random() < 0.85)
    o["tca"] = bool(o["compress_differences"] and rng.random() < 0.5)
    o["err_accumulation"] = bool(rng.random() < 0.8)
    if rng.random() < 0.15:
        o["bitdepth"] = int(rng.choice([6, 8, 10]))
    d = rng.random()
    if d < 0.2:
        o["compress_upstream" if d < 0.1 else "compress_downstream"] = False
        o["compress_differences"] = o["tca"] = False  # see FIXED's one-direction cases
    return o


@contextlib.contextmanager
def silenced():
    """The reference prints from Python and from its C++ core; both are dropped."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def new_base(device_id):
    return {"parameters": {}, "put_node_depth": {}, "device_id": device_id, "parameter_id": {}}


def add(full, partial):
    return OrderedDict((k, full[k] + partial[k] if k in partial else full[k]) for k in full)


def residual_update(residuals, coded, uncoded):
    for k in uncoded:
        residuals[k] = uncoded[k] - coded[k] if k in coded else uncoded[k]
    return residuals


def fedavg(results):
    """Flower's `aggregate`: Σ n·w / Σ n, layer by layer, in the arrays' dtype."""
    total = sum(n for _, n in results)
    weighted = [[layer * n for layer in w] for w, n in results]
    return [reduce(np.add, layers) / total for layers in zip(*weighted)]


def local_training(rng, model, rnd, discrete=False):
    """A deterministic stand-in for training: a seeded step on every tensor, now and then none.
    `discrete`: steps of -0.5, 0 or 0.5 only (updates a codebook codes in fewer bytes)."""
    out = OrderedDict()
    for k, v in model.items():
        if rnd > 1 and rng.random() < 0.1:
            out[k] = v.copy()  # a tensor this client did not move (omitted from a differences message)
            continue
        if discrete:
            out[k] = (v + rng.choice(np.float32([-0.5, 0.0, 0.5]), size=v.shape)).astype(np.float32)
            continue
        scale = 0.02 if v.ndim > 1 else 0.005
        step = rng.normal(0.0, scale, size=v.shape) * (1.0 + rng.random() * 2.0)
        if v.ndim > 1 and rng.random() < 0.5:
            rows = rng.random(v.shape[0]) < 0.25
            step[rows] = 0.0  # rows untouched, so row skipping and structured sparsity see zero rows
        out[k] = (v + step.astype(np.float32)).astype(np.float32)
    return out


def save_npz(path, model):
    np.savez(path, **{k: np.ascontiguousarray(v, dtype=np.float32) for k, v in model.items()})


def run_case(out, name, opts, seed, clients, rounds, tensors=TENSORS):
    rng = case_rng(seed, name)
    args = dict(DEFAULTS)
    args.update(opts)
    if args["diff_qp"] is None:
        args["diff_qp"] = args["qp"]
    weights = [int(rng.integers(3, 20)) for _ in range(clients)]
    if args["bnf"]:
        tensors = BNF_TENSORS
    initial = OrderedDict(
        (k, (rng.normal(0.0, 0.1 if len(s) > 1 else 0.02, size=s)).astype(np.float32)) for k, s in tensors)
    for k in initial:
        if k.endswith("running_var"):
            initial[k] = rng.uniform(0.5, 1.5, size=initial[k].shape).astype(np.float32)
        elif k.startswith("bn") and k.endswith(".weight"):
            initial[k] = (1.0 + initial[k] * 5).astype(np.float32)
    keys = list(initial)

    case_dir = os.path.join(out, name)
    shutil.rmtree(case_dir, ignore_errors=True)
    os.makedirs(case_dir)
    save_npz(os.path.join(case_dir, "initial.npz"), initial)
    work = tempfile.mkdtemp()
    # What fl.encode reads: nnc_fl.py's argparse namespace as a dict.
    enc_args = dict(args, model="mlp", results=work, lsa=False, verbose=False, job_id="")
    if ENGINE == "classes" or args["bnf"]:
        run_classes(case_dir, rng, enc_args, initial, weights, clients, rounds)
        shutil.rmtree(work, ignore_errors=True)
        write_config(case_dir, seed, args, clients, rounds, weights, tensors)
        return

    server = {"base": new_base(0), "residuals": None, "prev": None, "global": copy.deepcopy(initial)}
    states = {c: {"base": new_base(c), "round": 0, "prev": None, "residuals": None} for c in range(1, clients + 1)}
    down = ("raw", initial)
    for rnd in range(1, rounds + 1):
        rdir = os.path.join(case_dir, f"round_{rnd:02d}")
        os.makedirs(rdir)
        ups = []
        received = None
        for c in range(1, clients + 1):
            st = states[c]
            # NNClient.set_parameters
            if down[0] == "nnc":
                with silenced():
                    dec = ref_nnc.decompress(bytearray(down[1]), approx_param_base=copy.deepcopy(server["base"]))
                if args["compress_differences"] and st["prev"] is not None:
                    dec = add(st["prev"], dec)
                model = OrderedDict((k, np.float32(dec[k])) for k in keys)
            else:
                model = OrderedDict((k, np.float32(down[1][k]).copy()) for k in keys)
            st["prev"] = copy.deepcopy(model)
            if received is None:
                received = model
                save_npz(os.path.join(rdir, "global.npz"), model)
            else:
                for k in keys:
                    assert np.array_equal(received[k].view(np.uint32), model[k].view(np.uint32)), (name, rnd, k)
            local = local_training(rng, model, rnd, args.get("training") == "discrete")
            save_npz(os.path.join(rdir, f"client_{c}_local.npz"), local)
            # NNClient.get_parameters
            if args["compress_upstream"]:
                update = OrderedDict((k, np.float32(local[k])) for k in keys)
                if args["compress_differences"]:
                    update = OrderedDict((k, update[k] - st["prev"][k]) for k in keys)
                if args["err_accumulation"] and st["residuals"] is not None:
                    update = add(update, st["residuals"])
                with silenced():
                    bs = ref_fl.encode(update, enc_args, blkid_ptypes=None, approx_param_base=st["base"],
                                       epoch=st["round"], device_id=c)
                    if args["err_accumulation"]:
                        coded = ref_nnc.decompress(bs, approx_param_base=st["base"])
                        st["residuals"] = residual_update(st["residuals"] or {}, coded, update)
                with open(os.path.join(rdir, f"client_{c}.nnc"), "wb") as f:
                    f.write(bytes(bs))
                ups.append(("nnc", bytes(bs)))
            else:
                ups.append(("raw", [local[k].copy() for k in keys]))
            st["round"] += 1

        # NNCFedAvg.aggregate_fit
        if server["prev"] is not None:
            with silenced():
                ref_nnc.decompress(server["prev"], approx_param_base=server["base"], update_base_param=True)
        results = []
        for c, (kind, payload) in zip(range(1, clients + 1), ups):
            if kind == "nnc":
                with silenced():
                    t = ref_nnc.decompress(bytearray(payload), approx_param_base=states[c]["base"],
                                           update_base_param=True)
                for k in keys:
                    t.setdefault(k, np.zeros_like(initial[k]))
                results.append(([t[k] for k in keys], weights[c - 1]))
            else:
                results.append((payload, weights[c - 1]))
        agg = fedavg(results)
        if args["compress_downstream"]:
            agg_model = OrderedDict((k, np.float32(v)) for k, v in zip(keys, agg))
            if args["err_accumulation"] and server["residuals"] is not None:
                agg_model = add(agg_model, server["residuals"])
            with silenced():
                bs = ref_fl.encode(agg_model, enc_args, approx_param_base=server["base"], device_id=0)
                if args["err_accumulation"]:
                    coded = ref_nnc.decompress(bs, approx_param_base=server["base"])
                    server["residuals"] = residual_update(server["residuals"] or {}, coded, agg_model)
            server["prev"] = bs
            with open(os.path.join(rdir, "server.nnc"), "wb") as f:
                f.write(bytes(bs))
            down = ("nnc", bytes(bs))
        else:
            down = ("raw", OrderedDict((k, np.float32(v)) for k, v in zip(keys, agg)))
    shutil.rmtree(work, ignore_errors=True)
    write_config(case_dir, seed, args, clients, rounds, weights, tensors)


def write_config(case_dir, seed, args, clients, rounds, weights, tensors):
    config = {
        "generator": "gen_fl.py",
        "seed": seed,
        "options": {k: args[k] for k in DEFAULTS
                    if (k != "bnf" or args["bnf"]) and (k != "approx_method" or args[k] != "uniform")
                    and (k != "param_opt" or not args[k])},
        "clients": clients,
        "rounds": rounds,
        "weights": weights,
        "tensors": [[k, list(s)] for k, s in tensors],
    }
    with open(os.path.join(case_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
        f.write("\n")


ENGINE = "mirror"


def make_torch_model(initial):
    """A module whose state_dict has exactly the layout's names and shapes; state_dict() hands out
    copies, as on CUDA (on the CPU NNClient's prev_mdl would alias the live parameters)."""
    import torch

    class Net(torch.nn.Module):
        def state_dict(self, *a, **kw):
            sd = super().state_dict(*a, **kw)
            return OrderedDict((k, v.detach().clone()) for k, v in sd.items())

    net = Net()
    for name, v in initial.items():
        owner = net
        parts = name.split(".")
        for part in parts[:-1]:
            if not hasattr(owner, part):
                owner.add_module(part, torch.nn.Module())
            owner = getattr(owner, part)
        owner.register_parameter(parts[-1], torch.nn.Parameter(torch.from_numpy(v.copy())))
    return net


def make_bn_model(initial):
    """BNF_TENSORS as a module with real BatchNorm2d layers (the reference finds them by type);
    state_dict() hands out copies, as make_torch_model's."""
    import torch

    class BnNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 8, 3, bias=False)
            self.bn1 = torch.nn.BatchNorm2d(8)
            self.conv2 = torch.nn.Conv2d(8, 6, 3, bias=True)
            self.bn2 = torch.nn.BatchNorm2d(6)
            self.fc = torch.nn.Linear(24, 10)

        def state_dict(self, *a, **kw):
            sd = super().state_dict(*a, **kw)
            return OrderedDict((k, v.detach().clone()) for k, v in sd.items())

    net = BnNet()
    set_model_values(net, initial)
    return net


def set_model_values(net, values):
    import torch

    with torch.no_grad():
        for k, t in list(net.named_parameters()) + list(net.named_buffers()):
            if k in values:
                t.copy_(torch.from_numpy(np.ascontiguousarray(values[k])))


def bnf_model_info(model):
    """What the reference's nnc_fl.py hands NNClient/NNCFedAvg with --bnf: the block guess from
    the module types, then nnc.compress(..., bnf_mapping=True)'s model information."""
    from nncodec.framework import pytorch_model

    nnc_mdl = pytorch_model.PytorchModel()
    params, _ = nnc_mdl.init_model_from_model_object(model)
    p_types = nnc_mdl.guess_block_id_and_param_type(model.state_dict(), bn_info=nnc_mdl.get_torch_bn_info(model))
    with silenced():
        return ref_nnc.compress(params, model=nnc_mdl, bnf_mapping=True, block_id_and_param_type=p_types)


def run_classes(case_dir, rng, enc_args, initial, weights, clients, rounds):
    """The same session through the reference's own NNClient and NNCFedAvg objects (needs flwr),
    driven in a plain loop as Flower's simulation would; their state goes through their .npz files.

    With bnf each client also gets round_RR/client_K_received.npz: the model it trains from,
    which FedBNF blends with its own batch-norm statistics, so it differs between clients."""
    import torch
    if getattr(sys.modules.get("nncodec.framework.applications.utils.flwr"), "NNClient", 1) is None:
        del sys.modules["nncodec.framework.applications.utils.flwr"]  # the mirror's stub
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from nncodec.framework.applications.utils.flwr.nnc_client import NNClient
    from nncodec.framework.applications.utils.flwr.nnc_fedavg import NNCFedAvg

    keys = list(initial)
    bnf = enc_args["bnf"]
    if bnf:
        model = make_bn_model(initial)
        mdl_info = bnf_model_info(model)
    else:
        model = make_torch_model(initial)
        mdl_info = {"parameter_index": {k: i for i, k in enumerate(keys)}}
    args = argparse.Namespace(**enc_args, lr=1e-3, weight_decay=0.0, wandb=False)
    state = {"round": 0, "global": None}

    def train_fn(model, optimizer, criterion, trainloader, device, verbose, args, round):
        held = OrderedDict((k, v.detach().numpy().copy()) for k, v in model.state_dict().items() if k in keys)
        if state["global"] is None:
            state["global"] = held
        if bnf:
            save_npz(os.path.join(state["dir"], f"client_{state['client']}_received.npz"), held)
        local = local_training(rng, held, state["round"], enc_args.get("training") == "discrete")
        set_model_values(model, local)
        save_npz(os.path.join(state["dir"], f"client_{state['client']}_local.npz"), local)
        return {"loss": 0.0}

    def metrics_fn(metrics):
        return {"accumulated_bs_sizes": sum(m["bs_size"] for _, m in metrics)}

    init_params = ndarrays_to_parameters([initial[k] for k in keys])
    with silenced():
        strategy = NNCFedAvg(min_fit_clients=clients, min_available_clients=clients, evaluate_fn=None,
                             accept_failures=False, fit_metrics_aggregation_fn=metrics_fn,
                             initial_parameters=init_params, model_arch=copy.deepcopy(model),
                             mdl_info=mdl_info, args=args, encode_fn=ref_fl.encode,
                             decode_fn=ref_nnc.decompress)
    params = init_params
    for rnd in range(1, rounds + 1):
        rdir = os.path.join(case_dir, f"round_{rnd:02d}")
        os.makedirs(rdir)
        state.update({"round": rnd, "dir": rdir, "global": None})
        results = []
        for c in range(1, clients + 1):
            state["client"] = c
            client = NNClient(None, trainloader=[None] * weights[c - 1], valloader=None, id=c, criterion=None,
                              device=torch.device("cpu"), c_model=model, args=args, mdl_info=mdl_info,
                              encode_fn=ref_fl.encode, decode_fn=ref_nnc.decompress, train_fn=train_fn)
            with silenced():
                out, ne, metrics = client.fit(parameters_to_ndarrays(params), {})
            if c == 1:
                save_npz(os.path.join(rdir, "global.npz"), state["global"])
            if args.compress_upstream:
                with open(os.path.join(rdir, f"client_{c}.nnc"), "wb") as f:
                    f.write(bytes(out[0]))
            results.append((None, FitRes(status=Status(code=Code.OK, message=""),
                                         parameters=ndarrays_to_parameters(out), num_examples=ne,
                                         metrics=metrics)))
        with silenced():
            params, _ = strategy.aggregate_fit(rnd, results, [])
        if args.compress_downstream:
            t = params.tensors[0]
            with open(os.path.join(rdir, "server.nnc"), "wb") as f:
                f.write(bytes(t[t.index(b"\n") + 1:]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--random", type=int, default=0, help="random option draws besides the fixed cases")
    ap.add_argument("--no-fixed", action="store_true", help="only the random draws")
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--random-layouts", action="store_true", help="random draws get random tensor shapes")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--codebook", action="store_true",
                    help="random draws code with approx_method codebook (no error accumulation, discrete steps)")
    ap.add_argument("--bnf", action="store_true",
                    help="random draws are FedBNF sessions (both directions, differences)")
    ap.add_argument("--engine", choices=["mirror", "classes"], default="mirror",
                    help="classes: the reference's NNClient/NNCFedAvg objects (needs flwr), to check the mirror")
    a = ap.parse_args()
    global ENGINE
    ENGINE = a.engine
    if ENGINE == "classes":
        del sys.modules["nncodec.framework.applications.utils.flwr"]
    cases = OrderedDict() if a.no_fixed else OrderedDict(FIXED)
    layouts = {}
    for i in range(a.random):
        name = f"fl_combo_{i:03d}"
        cases[name] = random_options(case_rng(a.seed, name + "/options"))
        if a.codebook:
            cases[name].update(approx_method="codebook", err_accumulation=False, training="discrete")
        if a.bnf:
            cases[name].update(bnf=True, compress_upstream=True, compress_downstream=True,
                               compress_differences=True)
        if a.random_layouts:
            layouts[name] = random_layout(case_rng(a.seed, name + "/layout"))
    os.makedirs(a.out, exist_ok=True)
    for name, opts in cases.items():
        if a.only and name not in a.only:
            continue
        try:
            run_case(a.out, name, opts, a.seed, a.clients, a.rounds, layouts.get(name, TENSORS))
            print(f"OK   {name}", flush=True)
        except Exception as e:  # the reference fails on some inputs; such a case is left out
            shutil.rmtree(os.path.join(a.out, name), ignore_errors=True)
            print(f"SKIP {name}: {type(e).__name__}: {e}", flush=True)


if __name__ == "__main__":
    main()

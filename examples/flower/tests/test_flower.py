"""The Flower app end to end: 3 rounds with 2 clients under Flower's simulation engine (NNC-coded
and plain FedAvg) and on a loopback deployment (SuperLink + 2 SuperNodes on 127.0.0.1), plus the
codec pieces on their own.

The runs go through run_flower.py, which starts and stops every process by pid with time bounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

APP_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(APP_DIR))

from nnc_flower import task  # noqa: E402
from nnc_flower.codec import (  # noqa: E402
    STYPE,
    CodecConfig,
    UpdateSender,
    apply_update,
    bitstream_array,
    bitstream_of,
    decode_model,
    encode_model,
    fill_missing,
)

import nnc  # noqa: E402

ROUNDS = 3
NODES = 2


def flower_run(mode: str, tmp_path: Path, *run_config: str) -> dict:
    results = tmp_path / f"{mode}.json"
    cmd = [
        sys.executable,
        str(APP_DIR / "run_flower.py"),
        mode,
        "--rounds",
        str(ROUNDS),
        "--nodes",
        str(NODES),
        "--results",
        str(results),
        "--timeout",
        "240",
        "--retries",
        "1",
    ]
    for item in run_config:
        cmd += ["--run-config", item]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    if "hung; starting over" in proc.stdout.decode(errors="replace"):
        print(proc.stdout.decode(errors="replace")[-20000:])  # shown by pytest on failure only
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out[-6000:]
    assert "plain FedAvg" in out  # the per-round table was printed
    return json.loads(results.read_text())


@pytest.fixture(scope="module")
def simulation_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("flower")
    return {
        "nnc": flower_run("simulation", tmp),
        "plain": flower_run("simulation", tmp, "compress=false"),
    }


def test_simulation_cuts_traffic_by_95_percent(simulation_runs):
    nnc_run, plain = simulation_runs["nnc"], simulation_runs["plain"]
    assert len(nnc_run["rounds"]) == ROUNDS and nnc_run["clients"] == NODES
    # What plain FedAvg actually sent equals its nominal 4 bytes per parameter each way.
    assert plain["bytes_total"] == plain["bytes_plain_fedavg"] == 2 * 4 * task.NUM_PARAMS * NODES * ROUNDS
    # Everything the NNC run sent, the round-1 broadcast of the initial model included.
    assert nnc_run["bytes_total"] <= 0.05 * plain["bytes_total"], nnc_run
    for r in nnc_run["rounds"]:
        assert 0 < r["bytes_up"] and 0 < r["bytes_down"]


def test_simulation_learns_with_compressed_updates(simulation_runs):
    nnc_run, plain = simulation_runs["nnc"], simulation_runs["plain"]
    accs = [r["accuracy"] for r in nnc_run["rounds"]]
    assert nnc_run["initial_accuracy"] < 0.2  # chance level: 10 classes
    assert accs[-1] >= 0.75, accs
    assert accs[-1] > accs[0]
    assert plain["final_accuracy"] - accs[-1] <= 0.10, (plain["final_accuracy"], accs)


def test_loopback_deployment_matches_the_simulation(simulation_runs, tmp_path):
    deployed = flower_run("deployment", tmp_path)
    sim = simulation_runs["nnc"]
    # Same seeds, same data, same codec: the real SuperLink/SuperNodes give the same bytes and
    # the same accuracy as the simulation engine.
    for key in ("bytes_up", "bytes_down", "final_accuracy"):
        assert deployed[key] == sim[key], key
    assert deployed["bytes_total"] <= 0.05 * 2 * 4 * task.NUM_PARAMS * NODES * ROUNDS


def test_bitstreams_travel_as_flower_arrays():
    bits = nnc.encode(np.ones((3, 3), np.float32))
    arr = bitstream_array(bits)
    assert arr.stype == STYPE == "iso15938-17" and arr.dtype == "uint8" and arr.shape == (len(bits),)
    assert bitstream_of(arr) == bits


def test_server_and_clients_hold_the_same_global_model():
    """Downstream: the server's model after applying what it sent equals each client's model
    after decoding it with its own decoder state, round after round; the residual keeps what
    quantization left out."""
    cfg = CodecConfig()
    rng = np.random.default_rng(5)
    initial = task.init_model(1)
    bits, server_model = encode_model(initial, cfg)
    clients = [[decode_model(bits, initial), nnc.DecoderState()] for _ in range(2)]
    sender = UpdateSender(cfg, device_id=0)
    for _ in range(4):
        update = OrderedDict((k, rng.normal(0, 0.02, v.shape).astype(np.float32)) for k, v in initial.items())
        before = OrderedDict((k, sender.residual.get(k, np.zeros_like(v))) for k, v in update.items())
        down, sent = sender.send(update)
        server_model = apply_update(server_model, sent)
        for c in clients:
            got = fill_missing(nnc.decode(down, state=c[1]), initial)
            c[0] = apply_update(c[0], got)
            for k in initial:
                np.testing.assert_array_equal(c[0][k], server_model[k])
        for k in update:
            np.testing.assert_array_equal(sender.residual[k], (update[k] + before[k]) - sent[k])
    assert len(down) < 4 * task.NUM_PARAMS * 0.2


def test_error_accumulation_carries_the_residual():
    cfg = CodecConfig(sparsity=0.0)
    sender = UpdateSender(cfg, device_id=1)
    small = OrderedDict([("w", np.full((16, 16), 0.01, np.float32))])  # below the step: sent as 0
    total_sent = np.zeros((16, 16), np.float32)
    for _ in range(30):
        _, sent = sender.send(small)
        total_sent += sent["w"]
    # Without error accumulation nothing would ever get through; with it the sum catches up.
    assert np.abs(total_sent.mean() - 0.3) < 0.1

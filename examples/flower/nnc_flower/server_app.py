"""ServerApp: FedAvg over NNC-coded updates (NNCodec's NNCFedAvg behaviour) on the digits task.

The strategy decodes each client's bitstream with that client's own decoder state, averages the
updates (weighted by ``num-examples``), applies the average to the global model and broadcasts it
as one NNC-coded update (again with error accumulation and TCA). The global model is evaluated
centrally on the held-out test split. With ``compress = false`` the same app runs plain FedAvg
(float32 arrays both ways), which is the baseline the traffic is compared with.

Prints accuracy and bytes per round and the totals; with ``results-file`` set, writes them as JSON.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Iterable
from logging import INFO

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

import nnc
from nnc_flower import task
from nnc_flower.codec import (
    MODEL_KEY,
    UPDATE_KEY,
    CodecConfig,
    UpdateSender,
    apply_update,
    arrays_to_record,
    bitstream_array,
    bitstream_of,
    encode_model,
    fill_missing,
    nominal_bytes,
    record_to_arrays,
)


class NNCFedAvg(FedAvg):
    """FedAvg whose messages are NNC bitstreams (``codec``) or plain arrays (``codec=None``).

    Every sampled client must take part in every round: each client's upstream decoder state and
    the shared downstream state advance once per round (as in NNCodec's NNCFedAvg).
    """

    def __init__(self, initial_model, codec: CodecConfig | None, **kwargs):
        super().__init__(**kwargs)
        self.codec = codec
        self.rounds: list[dict] = []
        self._pending_down = 0
        self._nodes_served: set[int] = set()
        if codec is None:
            self.global_model = OrderedDict((k, v.copy()) for k, v in initial_model.items())
            self._initial = arrays_to_record(self.global_model)
            self.initial_bytes = 4 * task.NUM_PARAMS
        else:
            bits, self.global_model = encode_model(initial_model, codec)
            self._initial = ArrayRecord({MODEL_KEY: bitstream_array(bits)})
            self.initial_bytes = len(bits)
            self.downstream = UpdateSender(codec, device_id=0)
            self.upstream: dict[int, nnc.DecoderState] = {}

    def initial_arrays(self) -> ArrayRecord:
        return self._initial

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        nodes = {m.metadata.dst_node_id for m in messages}
        if self.codec is not None and server_round > 1 and nodes != self._nodes_served:
            raise RuntimeError(
                "NNC-coded updates need every client in every round "
                f"(round {server_round} samples {sorted(nodes)}, before {sorted(self._nodes_served)})"
            )
        self._nodes_served = nodes
        self._pending_down = nominal_bytes(arrays) * len(messages)
        return messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        if self.codec is None:
            arrays, metrics = super().aggregate_train(server_round, replies)
            if arrays is not None:
                self.global_model = record_to_arrays(arrays)
            up = sum(nominal_bytes(m.content["arrays"]) for m in replies if not m.has_error())
            self._log_round(server_round, up)
            return arrays, metrics

        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        updates, weights, up = [], [], 0
        for msg in valid:
            node = msg.metadata.src_node_id
            bits = bitstream_of(msg.content["arrays"][UPDATE_KEY])
            up += len(bits)
            decoder = self.upstream.setdefault(node, nnc.DecoderState())
            updates.append(fill_missing(nnc.decode(bits, state=decoder), self.global_model))
            weights.append(float(msg.content["metrics"][self.weighted_by_key]))
        w = np.asarray(weights) / np.sum(weights)
        average = OrderedDict(
            (k, sum(wi * u[k] for wi, u in zip(w, updates)).astype(np.float32))
            for k in self.global_model
        )
        bits, sent = self.downstream.send(average)
        self.global_model = apply_update(self.global_model, sent)
        metrics = self.train_metrics_aggr_fn([m.content for m in valid], self.weighted_by_key)
        self._log_round(server_round, up)
        return ArrayRecord({UPDATE_KEY: bitstream_array(bits)}), metrics

    def _log_round(self, server_round: int, up: int) -> None:
        down = self._pending_down
        clients = len(self._nodes_served)
        self.rounds.append(
            {
                "round": server_round,
                "bytes_up": up,
                "bytes_down": down,
                "bytes_plain": 2 * 4 * task.NUM_PARAMS * clients,
            }
        )
        log(INFO, "[nnc] round %d: %d B up, %d B down", server_round, up, down)

    def evaluate_global(self, test: task.Split):
        def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            loss, acc = task.evaluate(self.global_model, test)
            if self.rounds and self.rounds[-1]["round"] == server_round:
                self.rounds[-1].update(accuracy=acc, loss=loss)
            elif server_round == 0:
                self.initial_accuracy = acc
            return MetricRecord({"accuracy": acc, "loss": loss})

        return evaluate_fn

    def summary_dict(self) -> dict:
        up = sum(r["bytes_up"] for r in self.rounds)
        down = sum(r["bytes_down"] for r in self.rounds)
        plain = sum(r["bytes_plain"] for r in self.rounds)
        clients = len(self._nodes_served)
        return {
            "compress": self.codec is not None,
            "codec": None if self.codec is None else self.codec.__dict__,
            "num_params": task.NUM_PARAMS,
            "clients": clients,
            "rounds": self.rounds,
            "initial_accuracy": getattr(self, "initial_accuracy", None),
            "final_accuracy": self.rounds[-1].get("accuracy") if self.rounds else None,
            "bytes_up": up,
            "bytes_down": down,
            "bytes_total": up + down,
            "bytes_plain_fedavg": plain,
            "traffic_cut": 1.0 - (up + down) / plain if plain else 0.0,
            "initial_broadcast_bytes": self.initial_bytes * clients,
            "initial_broadcast_bytes_plain": 4 * task.NUM_PARAMS * clients,
        }


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    num_rounds = int(rc.get("num-server-rounds", 3))
    compress = bool(rc.get("compress", True))
    min_nodes = int(rc.get("min-nodes", 2))
    test, _ = task.load_data(min_nodes, float(rc.get("alpha", 0.5)))
    strategy = NNCFedAvg(
        task.init_model(int(rc.get("seed", 808))),
        CodecConfig.from_run_config(rc) if compress else None,
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=min_nodes,
        min_available_nodes=min_nodes,
    )
    started = time.time()
    strategy.start(
        grid=grid,
        initial_arrays=strategy.initial_arrays(),
        num_rounds=num_rounds,
        timeout=float(rc.get("round-timeout", 300)),
        evaluate_fn=strategy.evaluate_global(test),
    )
    summary = strategy.summary_dict()
    summary["seconds"] = round(time.time() - started, 2)
    print(f"{'round':>5} {'accuracy':>9} {'bytes up':>10} {'bytes down':>11} {'plain FedAvg':>13}")
    for r in summary["rounds"]:
        print(
            f"{r['round']:>5} {r.get('accuracy', float('nan')):>9.4f} {r['bytes_up']:>10} "
            f"{r['bytes_down']:>11} {r['bytes_plain']:>13}"
        )
    print(
        f"total: {summary['bytes_total']} B ({summary['bytes_up']} up, {summary['bytes_down']} down) "
        f"vs {summary['bytes_plain_fedavg']} B plain FedAvg: {100 * summary['traffic_cut']:.2f} % less; "
        f"initial model {summary['initial_broadcast_bytes']} B "
        f"(plain {summary['initial_broadcast_bytes_plain']} B); "
        f"final accuracy {summary['final_accuracy']:.4f}"
    )
    path = str(rc.get("results-file", ""))
    if path:
        with open(path, "w") as f:
            json.dump(summary, f, indent=1)

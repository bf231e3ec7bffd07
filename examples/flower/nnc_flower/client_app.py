"""ClientApp: trains on its share of the digits and sends its update as an NNC bitstream.

Behaviour of NNCodec's NNClient: the client keeps, across rounds (in ``Context.state``), the
global model it reconstructed, its upstream encoder state (TCA) with the mirror decoder and the
residual (error accumulation), and the decoder state of the server's downstream stream.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

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
    decode_model,
    fill_missing,
    record_to_arrays,
)

app = ClientApp()

STATE_CODEC = "nnc-codec"
STATE_GLOBAL = "nnc-global"
STATE_RESIDUAL = "nnc-residual"


def _partition(context: Context) -> tuple[int, int]:
    return int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])


def _receive(msg: Message, context: Context, cfg: CodecConfig):
    """The global model this round starts from, from the server's message and our state."""
    record = msg.content["arrays"]
    template = task.init_model(0)
    if MODEL_KEY in record:  # round 1: the whole model, stand-alone
        context.state[STATE_CODEC] = ConfigRecord({"down-decoder": nnc.DecoderState().to_json()})
        return decode_model(bitstream_of(record[MODEL_KEY]), template)
    if UPDATE_KEY in record:  # later rounds: the difference to the model we hold
        codec_state = context.state[STATE_CODEC]
        decoder = nnc.DecoderState.from_json(codec_state["down-decoder"])
        update = fill_missing(nnc.decode(bitstream_of(record[UPDATE_KEY]), state=decoder), template)
        codec_state["down-decoder"] = decoder.to_json()
        context.state[STATE_CODEC] = codec_state
        return apply_update(record_to_arrays(context.state[STATE_GLOBAL]), update)
    return record_to_arrays(record)  # uncompressed FedAvg


@app.train()
def train(msg: Message, context: Context) -> Message:
    rc = context.run_config
    compress = bool(rc.get("compress", True))
    cfg = CodecConfig.from_run_config(rc)
    partition_id, num_partitions = _partition(context)
    _, clients = task.load_data(num_partitions, float(rc.get("alpha", 0.5)))
    data = clients[partition_id]
    server_round = int(msg.content["config"]["server-round"])
    batch_size = int(rc.get("batch-size", 16))

    global_model = _receive(msg, context, cfg)
    local, loss = task.train(
        global_model,
        data,
        epochs=int(rc.get("local-epochs", 1)),
        batch_size=batch_size,
        lr=float(rc.get("lr", 3e-3)),
        seed=int(rc.get("seed", 808)) + partition_id + 100 * server_round,
    )

    if compress:
        device_id = partition_id + 1  # 0 means "unset" in NNR
        sender = UpdateSender(cfg, device_id)
        if STATE_RESIDUAL in context.state:
            sender.load("up-", context.state[STATE_CODEC], context.state[STATE_RESIDUAL])
        update = {k: local[k] - global_model[k] for k in local}
        bits, _ = sender.send(update)
        codec_cfg, residual = sender.save("up-")
        codec_state = context.state[STATE_CODEC]
        codec_state.update(codec_cfg)
        context.state[STATE_CODEC] = codec_state
        context.state[STATE_RESIDUAL] = residual
        context.state[STATE_GLOBAL] = arrays_to_record(global_model)
        reply = ArrayRecord({UPDATE_KEY: bitstream_array(bits)})
        sent = len(bits)
    else:
        reply = arrays_to_record(local)
        sent = 4 * task.NUM_PARAMS

    metrics = MetricRecord(
        {"num-examples": task.num_batches(data, batch_size), "train-loss": loss, "bytes-up": sent}
    )
    return Message(content=RecordDict({"arrays": reply, "metrics": metrics}), reply_to=msg)

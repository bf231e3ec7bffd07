"""NNC coding of model updates for Flower, with the behaviour of NNCodec's NNClient / NNCFedAvg.

Every message after the first carries the *difference* to the model both sides already hold,
coded by ``nnc.encode`` with ``compress_differences=True``: sparsified, quantized, and with
temporal context adaptation (TCA) across rounds, which needs one incremental state per direction
and sender: an ``nnc.EncoderState`` at the sender, an ``nnc.DecoderState`` at the receiver. The
sender also keeps what quantization left out (the residual) and adds it to its next update (error
accumulation); to know what the receiver reconstructs it decodes its own bitstream with a mirror of
the receiver's decoder state.

A bitstream travels in a Flower ``Array`` whose ``stype`` is ``"iso15938-17"`` and whose bytes are
the bitstream (dtype ``uint8``, shape ``(len,)``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

import nnc
from flwr.app import Array, ArrayRecord, ConfigRecord

STYPE = "iso15938-17"
#: Key of a stand-alone bitstream of the whole model (the first downstream message).
MODEL_KEY = "nnc-model"
#: Key of a bitstream of an update (difference to the model the receiver holds).
UPDATE_KEY = "nnc-update"


def bitstream_array(bits: bytes) -> Array:
    """Wraps an NNC bitstream in a Flower Array."""
    return Array(dtype="uint8", shape=(len(bits),), stype=STYPE, data=bytes(bits))


def bitstream_of(array: Array) -> bytes:
    """The bitstream in a Flower Array made by `bitstream_array`."""
    if array.stype != STYPE:
        raise ValueError(f"expected an Array of stype {STYPE!r}, got {array.stype!r}")
    return bytes(array.data)


def arrays_to_record(model: "OrderedDict[str, np.ndarray]") -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v)) for k, v in model.items()})


def record_to_arrays(record: ArrayRecord) -> "OrderedDict[str, np.ndarray]":
    return OrderedDict((k, a.numpy()) for k, a in record.items())


def nominal_bytes(record: ArrayRecord) -> int:
    """Payload bytes of a record: bitstream lengths, or the raw size of plain arrays."""
    total = 0
    for a in record.values():
        if a.stype == STYPE:
            total += len(a.data)
        else:
            total += int(np.prod(a.shape)) * np.dtype(a.dtype).itemsize
    return total


@dataclass(frozen=True)
class CodecConfig:
    """Coding settings, named as NNCodec's FL arguments."""

    qp: int = -12
    nonweight_qp: int = -20
    sparsity: float = 0.5
    struct_spars_factor: float = 0.9
    tca: bool = True
    use_dq: bool = True
    err_accumulation: bool = True
    #: qp of the stand-alone initial model.
    initial_qp: int = -26

    @classmethod
    def from_run_config(cls, cfg) -> "CodecConfig":
        d = cls()
        return cls(
            qp=int(cfg.get("qp", d.qp)),
            nonweight_qp=int(cfg.get("nonweight-qp", d.nonweight_qp)),
            sparsity=float(cfg.get("sparsity", d.sparsity)),
            struct_spars_factor=float(cfg.get("struct-spars-factor", d.struct_spars_factor)),
            tca=bool(cfg.get("tca", d.tca)),
            use_dq=bool(cfg.get("use-dq", d.use_dq)),
            err_accumulation=bool(cfg.get("err-accumulation", d.err_accumulation)),
            initial_qp=int(cfg.get("initial-qp", d.initial_qp)),
        )

    def update_options(self, device_id: int) -> dict:
        return dict(
            qp=self.qp,
            nonweight_qp=self.nonweight_qp,
            sparsity=self.sparsity,
            struct_spars_factor=self.struct_spars_factor,
            tca=self.tca,
            use_dq=self.use_dq,
            compress_differences=True,
            device_id=device_id,
        )


def encode_model(model, cfg: CodecConfig) -> tuple[bytes, "OrderedDict[str, np.ndarray]"]:
    """Codes a whole model stand-alone; returns the bitstream and what a receiver decodes."""
    bits = nnc.encode(dict(model), qp=cfg.initial_qp)
    return bits, decode_model(bits, model)


def decode_model(bits: bytes, template) -> "OrderedDict[str, np.ndarray]":
    """Decodes a stand-alone model bitstream, in the order and dtypes of `template`."""
    decoded = nnc.decode(bits)
    return OrderedDict((k, decoded[k].astype(v.dtype, copy=False)) for k, v in template.items())


class UpdateSender:
    """The sending side of one direction: differences, error accumulation, TCA."""

    def __init__(self, cfg: CodecConfig, device_id: int):
        self.cfg = cfg
        self.device_id = device_id
        self.encoder = nnc.EncoderState()
        self.mirror = nnc.DecoderState()
        self.residual: "OrderedDict[str, np.ndarray]" = OrderedDict()

    def send(self, update) -> tuple[bytes, "OrderedDict[str, np.ndarray]"]:
        """Codes `update` (plus the residual); returns the bitstream and what the receiver
        will reconstruct from it."""
        if self.cfg.err_accumulation and self.residual:
            update = OrderedDict((k, v + self.residual[k]) for k, v in update.items())
        bits = nnc.encode(dict(update), state=self.encoder, **self.cfg.update_options(self.device_id))
        sent = fill_missing(nnc.decode(bits, state=self.mirror), update)
        if self.cfg.err_accumulation:
            self.residual = OrderedDict((k, (update[k] - sent[k]).astype(np.float32)) for k in update)
        return bits, sent

    def save(self, prefix: str) -> tuple[ConfigRecord, ArrayRecord]:
        """The state as Flower records (for `Context.state`)."""
        cfg = ConfigRecord(
            {f"{prefix}encoder": self.encoder.to_json(), f"{prefix}mirror": self.mirror.to_json()}
        )
        return cfg, arrays_to_record(self.residual)

    def load(self, prefix: str, cfg: ConfigRecord, residual: ArrayRecord) -> None:
        self.encoder = nnc.EncoderState.from_json(cfg[f"{prefix}encoder"])
        self.mirror = nnc.DecoderState.from_json(cfg[f"{prefix}mirror"])
        self.residual = record_to_arrays(residual)


def fill_missing(decoded, template) -> "OrderedDict[str, np.ndarray]":
    """Decoded update in `template`'s order; tensors the update left out (all zero) are zeros."""
    out = OrderedDict()
    for k, v in template.items():
        d = decoded.get(k)
        out[k] = np.zeros(v.shape, np.float32) if d is None else d.astype(np.float32, copy=False)
    return out


def apply_update(model, update) -> "OrderedDict[str, np.ndarray]":
    return OrderedDict((k, (v + update[k]).astype(np.float32)) for k, v in model.items())

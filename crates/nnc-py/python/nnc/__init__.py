"""NNR / NNCodec (ISO/IEC 15938-17) neural network compression, implemented in Rust.

``encode`` turns NumPy arrays (one array, or a dict of named arrays) into an NNR bitstream that
NNCodec 2.1.3 decodes; ``decode`` turns any NNR bitstream back into a dict of arrays. Options are
named and defaulted as NNCodec's tensor pipeline (``nncodec.tensor.encode``). For sequences of
updates (federated learning, temporal context adaptation) keep an ``EncoderState`` on the sending
side and a ``DecoderState`` on the receiving side and pass them as ``state=``. ``ClientCodec`` and
``ServerCodec`` are the federated-learning codecs (NNCodec's NNClient / NNCFedAvg coding).

>>> import numpy as np, nnc
>>> w = np.linspace(-1, 1, 256, dtype=np.float32).reshape(16, 16)
>>> bits = nnc.encode(w)
>>> back = nnc.decode(bits)["0"]
>>> back.dtype, back.shape, bool(np.abs(back - w).max() < 0.01)
(dtype('float32'), (16, 16), True)
"""

from ._nnc import (
    ClientCodec,
    DecoderState,
    EncoderState,
    InvalidArgumentError,
    LimitExceededError,
    MalformedError,
    NncError,
    ServerCodec,
    StateChanges,
    StateMismatchError,
    UnsupportedError,
    __version__,
    attached_files,
    attributes,
    decode,
    encode,
    summary,
)

__all__ = [
    "ClientCodec",
    "DecoderState",
    "EncoderState",
    "InvalidArgumentError",
    "LimitExceededError",
    "MalformedError",
    "NncError",
    "ServerCodec",
    "StateChanges",
    "StateMismatchError",
    "UnsupportedError",
    "__version__",
    "attached_files",
    "attributes",
    "decode",
    "encode",
    "summary",
]

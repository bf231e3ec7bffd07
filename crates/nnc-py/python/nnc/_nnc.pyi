"""Type stubs of the extension module (re-exported by ``nnc``)."""

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

__version__: str

ArrayLike = npt.ArrayLike

class NncError(ValueError):
    """Base class of every error the codec raises."""

class MalformedError(NncError):
    """The bitstream is invalid."""

class UnsupportedError(NncError):
    """The bitstream or the options use something the codec does not implement."""

class LimitExceededError(NncError):
    """Decoding would exceed a resource limit."""

class StateMismatchError(NncError):
    """The incremental state does not fit the bitstream (wrong base, skipped or repeated update)."""

class InvalidArgumentError(NncError):
    """The arguments are inconsistent or cannot be coded."""

class EncoderState:
    """Incremental encoder state (TCA base levels, update-tree depths, HDSP choices)."""

    def __init__(self) -> None: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, json: str) -> "EncoderState": ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls, data: bytes) -> "EncoderState": ...
    @property
    def tensor_names(self) -> list[str]: ...
    @property
    def device_id(self) -> int: ...
    def base_levels(self, name: str) -> Optional[npt.NDArray[np.int32]]: ...
    def copy(self) -> "EncoderState": ...
    def __copy__(self) -> "EncoderState": ...
    def __deepcopy__(self, memo: Any) -> "EncoderState": ...
    def __eq__(self, other: object) -> bool: ...

class DecoderState:
    """Incremental decoder state (TCA base levels, update-tree depths, HDSP history)."""

    def __init__(self) -> None: ...
    def to_json(self) -> str: ...
    @classmethod
    def from_json(cls, json: str) -> "DecoderState": ...
    def to_bytes(self) -> bytes: ...
    @classmethod
    def from_bytes(cls, data: bytes) -> "DecoderState": ...
    @property
    def tensor_names(self) -> list[str]: ...
    @property
    def device_id(self) -> int: ...
    def base_levels(self, name: str) -> Optional[npt.NDArray[np.int32]]: ...
    def copy(self) -> "DecoderState": ...
    def __copy__(self) -> "DecoderState": ...
    def __deepcopy__(self, memo: Any) -> "DecoderState": ...
    def __eq__(self, other: object) -> bool: ...

class StateChanges:
    """The changes a ``deferred=True`` call of ``encode`` or ``decode`` makes to its state, not
    yet made. ``apply(state)`` makes them (once); dropping them leaves the state as it was."""

    def apply(self, state: Union[EncoderState, DecoderState]) -> None: ...
    @property
    def tensor_names(self) -> list[str]: ...
    @property
    def applied(self) -> bool: ...

def encode(
    data: Union[ArrayLike, Mapping[str, ArrayLike]],
    *,
    qp: int = -32,
    qp_density: int = 2,
    nonweight_qp: Optional[int] = -75,
    qp_per_tensor: Optional[Mapping[str, int]] = None,
    use_dq: bool = True,
    approx_method: str = "uniform",
    bitdepth: Optional[int] = None,
    sparsity: float = 0.0,
    struct_spars_factor: float = 0.9,
    row_skipping: bool = True,
    param_opt: bool = True,
    opt_qp: bool = False,
    bnf: bool = False,
    lsa: bool = False,
    tca: bool = False,
    compress_differences: bool = False,
    pre_signalling: bool = False,
    hdsp: bool = False,
    scan_order: int = 0,
    lambda_scale: float = 0.0,
    cabac_unary_length_minus1: int = 10,
    device_id: int = 0,
    tensor_id: str = "0",
    state: Optional[EncoderState] = None,
    update_state: bool = True,
    state_dict: bool = False,
    carry_dtypes: bool = True,
    mask_unsignalable_qp: bool = False,
    threads: Optional[int] = None,
    attributes: Optional[Mapping[str, str]] = None,
    files: Optional[Mapping[str, bytes]] = None,
    ioq: Optional[Callable[[dict[str, np.ndarray]], Union[float, Mapping[str, float]]]] = None,
    quantize_only: bool = False,
    deferred: bool = False,
) -> Union[bytes, dict[str, np.ndarray], tuple[bytes, StateChanges]]:
    """Encodes one array (named ``tensor_id``) or a mapping of named arrays into an NNR
    bitstream. Options are NNCodec's tensor-pipeline arguments with its defaults. ``ioq``
    scores each trial's reconstructed tensors for inference-optimised quantization (NNCodec's
    ``ioq=True`` with a model executer's ``eval_model``). With ``quantize_only`` it returns the
    quantized tensors (a dict, as NNCodec's ``quantize_only``) instead of a stream. With
    ``deferred`` (and a ``state``) it returns ``(bytes, changes)`` and leaves the state alone
    until ``changes.apply(state)``."""

def decode(
    bitstream: Union[bytes, bytearray, memoryview],
    *,
    state: Optional[DecoderState] = None,
    update_state: bool = True,
    hdsp: bool = False,
    tensor_dimensions: Optional[Mapping[str, list[int]]] = None,
    max_tensor_elements: Optional[int] = None,
    max_total_elements: Optional[int] = None,
    threads: Optional[int] = None,
    apply_scaling: bool = False,
    deferred: bool = False,
) -> Union[dict[str, np.ndarray], tuple[dict[str, np.ndarray], StateChanges]]:
    """Decodes an NNR bitstream into a dict of arrays (dtypes and shapes as encoded). With
    ``apply_scaling`` each block's weight is multiplied by its local scaling, which is left
    out (NNCodec's ``reconstruct_lsa=True``). With ``deferred`` (and a ``state``) it returns
    ``(arrays, changes)`` and leaves the state alone until ``changes.apply(state)``."""

def attached_files(bitstream: Union[bytes, bytearray, memoryview]) -> dict[str, bytes]:
    """The files the bitstream attaches to its model (``nnc encode DIR``: config.json, the
    tokenizer); empty when there are none. Names are as the stream gives them."""

def attributes(bitstream: Union[bytes, bytearray, memoryview]) -> dict[str, str]:
    """The model attributes the bitstream carries (``encode(..., attributes=...)``, or a
    safetensors file's metadata carried by ``nnc encode``); empty when there are none."""

def summary(
    bitstream: Union[bytes, bytearray, memoryview],
    *,
    tensor_dimensions: Optional[Mapping[str, list[int]]] = None,
) -> list[dict[str, Any]]:
    """Each output tensor in ``decode``'s order: ``name``, ``shape``, ``dtype``, ``qp`` (None
    where no QP applies), ``coded_values`` and ``bytes`` (its share of the stream). Reads the unit
    headers and each tensor's QP only; an update needs no state. ``tensor_dimensions`` supplies
    shapes the stream leaves out, as for ``decode``."""

Layout = Union[Mapping[str, Any], Sequence[tuple[str, Sequence[int]]]]
Model = Union[Mapping[str, ArrayLike], ArrayLike]

class ClientCodec:
    """Client side of an NNC-coded FL session (nnc-fl; NNCodec's NNClient coding).

    Options (keywords): ``compressed`` (the four flags below at once), ``compress_upstream``,
    ``compress_downstream``, ``compress_differences``, ``err_accumulation``, ``qp`` (-32),
    ``diff_qp``, ``nonweight_qp`` (-75), ``qp_density`` (2; the sparsification threshold's only:
    messages are coded with 2, as NNCodec's ``fl.encode``), ``use_dq``, ``opt_qp``,
    ``sparsity``, ``struct_spars_factor``, ``row_skipping``, ``tca``, ``bitdepth``,
    ``param_opt``, ``approx_method`` (``"uniform"`` or ``"codebook"``), ``bnf``
    (FedBNF: batch norms folded before coding and blended with the client's own after
    decoding; needs ``compressed``), ``threads`` (this side's worker threads; ``None``: all
    cores; messages do not depend on it) and ``verify_messages`` (False; True decodes every
    sent message as its receiver will and raises unless it gives the sender's reconstruction;
    messages do not depend on it).

    Models are coded as float32 and come back in the dtypes of the layout's arrays (float32
    where the layout gives shapes)."""

    def __init__(self, layout: Layout, device_id: int, **options: Any) -> None: ...
    @classmethod
    def resume(cls, layout: Layout, state: Union[bytes, str], **options: Any) -> "ClientCodec": ...
    def receive(self, message: Union[bytes, bytearray, memoryview]) -> dict[str, np.ndarray]: ...
    def send(self, local: Model) -> bytes: ...
    @property
    def global_model(self) -> Optional[dict[str, np.ndarray]]: ...
    @property
    def comm_round(self) -> int: ...
    @property
    def device_id(self) -> int: ...
    def state_json(self) -> str: ...
    def state_bytes(self) -> bytes: ...

class ServerCodec:
    """Server side of an NNC-coded FL session (nnc-fl; NNCodec's NNCFedAvg coding)."""

    def __init__(self, layout: Layout, initial: Model, **options: Any) -> None: ...
    @classmethod
    def resume(cls, layout: Layout, state: Union[bytes, str], **options: Any) -> "ServerCodec": ...
    def initial_message(self) -> bytes: ...
    def aggregate(self, messages: Sequence[tuple[int, int, bytes]]) -> bytes: ...
    @property
    def global_model(self) -> dict[str, np.ndarray]: ...
    @property
    def round(self) -> int: ...
    def state_json(self) -> str: ...
    def state_bytes(self) -> bytes: ...

//! Decode and encode NNR bitstreams (ISO/IEC 15938-17) into named tensors: the tensor pipeline.
//!
//! Does not know about: model file formats, ML frameworks, federated learning.
//!
//! Covers hls.md §4 (NDU payload and its tensors), §5.4 (reconstruction), §6.2 (decoder pipeline)
//! and §6.4–6.5 (incremental state). Data flow when decoding:
//! bytes → [`nnc_bitstream::UnitReader`] (units) → NDU header → [`nnc_cabac::decode_layer`]
//! (levels) → `nnc_quant` reconstruction → [`DecodedTensor`]s.
//!
//! [`decode_stream`] returns every tensor at once; [`decode_stream_with`] (or a
//! [`StreamDecoder`], whose [`StreamPlan`] lists every output tensor's name, shape and dtype
//! before any payload is decoded) hands them out one by one while holding only a window of NDUs;
//! [`decode_standalone_with`] is that for a one-off decode, converting each tensor as it comes.
//! [`summarise_stream`] reads each tensor's QP and share of the bytes from the unit headers,
//! without decoding the values.
//! [`DecodeOptions::threads`] and [`EncodeOptions::threads`] choose the worker threads; the
//! output never depends on them.
//!
//! Errors are [`Error`] values naming the unit index, its byte offset and the tensor; a bitstream
//! declaring more elements than [`Limits`] allow is rejected before anything is allocated.
//!
//! The [`IncrementalState`] that carries TCA bases and the update tree from one bitstream to the
//! next is a serde value, with a compact binary form for saving it ([`binary_form`]).
//!
//! ```no_run
//! use nnc_tensor::{decode_stream, DecodeOptions, DecoderState};
//! let bytes = std::fs::read("model.nnc")?;
//! let mut state = DecoderState::default();
//! let decoded = decode_stream(&bytes, &mut state, &DecodeOptions::new())?;
//! for t in &decoded.tensors {
//!     println!("{} {:?} {:?}", t.tensor.name, t.tensor.shape, t.tensor.dtype());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Encoding builds an [`EncodeInput`] and hands it to [`encode()`]. Given by value, as here, the
//! input's elements are freed tensor by tensor as they are quantized; `encode(&input, ..)` reads
//! an input that the caller keeps, and [`EncodeInput::from_tensors`] builds one that borrows the
//! caller's float32 and int32 elements without copying them. The bytes are the same either way.
//!
//! ```
//! use nnc_tensor::{decode_stream, encode, DecodeOptions, DecoderState, EncodeInput};
//! use nnc_tensor::{EncodeOptions, Tensor, TensorData};
//! let w = Tensor::try_new("w", vec![2, 3], TensorData::F32(vec![0.5, -0.25, 0.0, 1.0, 0.75, -1.0]))?;
//! let input = EncodeInput::from_tensors_owned(vec![w])?;
//! let stream = encode(input, &EncodeOptions::default())?;
//! let decoded = decode_stream(&stream.bytes, &mut DecoderState::default(), &DecodeOptions::new())?;
//! assert_eq!(decoded.tensors[0].tensor.shape, vec![2, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod binary_form;
mod decode;
pub mod encode;
mod error;
mod limits;
pub mod members;
pub mod metadata;
pub mod named;
pub mod sparsify;
mod state;
mod stream;
pub mod tensor;
mod threads;

pub use decode::{
    decode_stream, decode_stream_deferred, hls_json, Approximation, DecodeOptions, DecodedStream,
    DecodedTensor,
};
pub use encode::{
    encode, encode_incremental, encode_incremental_deferred, quantize, CodebookMode, EncodeInput,
    EncodeOptions, EncodedStream, EncodedTensor,
};
pub use error::{Error, ErrorKind, Location, Result};
pub use limits::{
    Limits, DEFAULT_MAX_TENSOR_ELEMENTS, DEFAULT_MAX_TOTAL_ELEMENTS, DEFAULT_MAX_UNITS,
};
pub use named::{sort_by_unique_name, DuplicateName, Named};
pub use state::{DecoderState, EncoderState, IncrementalState, StateChanges, TensorBase};
pub use stream::{
    decode_standalone_with, decode_stream_with, plan_stream, summarise_stream, StreamDecoder,
    StreamPlan, TensorSpec, TensorSummary,
};
pub use tensor::{DType, ShapeMismatch, Tensor, TensorData};
pub use threads::MAX_THREADS;

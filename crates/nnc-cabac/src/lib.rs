//! DeepCABAC entropy coding of NNR tensor levels (ISO/IEC 15938-17), bit-exact with NNCodec 2.1.3.
//!
//! This crate is the arithmetic coder and the level coding of one tensor: the 9-bit-range
//! binary arithmetic engine ([`ArithEncoder`], [`ArithDecoder`]), the dual-estimator context
//! models ([`ContextModel`], [`ContextSet`]), the level binarization, the scan orders
//! ([`scan`]), row skipping, dependent-quantization state tracking, TCA and HDSP context
//! selection, context-initialisation optimisation (param_opt) and block-row entry points.
//!
//! It knows nothing about step sizes, floating-point weights, NNR unit headers or files: callers
//! hand it integer levels (DQ reconstruction indices when `dq_flag` is set) plus a
//! [`LayerConfig`] built from the NDU header, and get integer levels back.
//!
//! Main entry points (one call codes one tensor; the caller codes its QP offset with
//! `iae_v` first and ends the NDU with [`ArithEncoder::finish`] / [`ArithDecoder::finish`]):
//! - [`encode_layer`]: `initCtxModels` + `encodeLayer`/`encodeLayer2`, including the param_opt
//!   pseudo pass ([`param_opt`]);
//! - [`encode_layer_marking_entry_points`]: the same, also returning where the block rows restart
//!   ([`EntryMarks`]), which give the NDU header's entry points once the payload is finished;
//! - [`decode_layer`]: sequential decoding with the encoder's block-row resets (no entry points needed);
//! - [`decode_layer_and_create_entry_points`]: the reference's entry-point derivation for NDU
//!   headers, by decoding the payload (its quirks included);
//! - [`decode_layer_with_entry_points`]: decoding from signalled entry points, block rows optionally
//!   on several threads;
//! - [`payload_size`]: the length [`encode_layer`] and [`ArithEncoder::finish`] would give,
//!   counted from the coder's shifts without writing bytes (for trial encodes);
//! - [`shifted_payload_sizes`]: those lengths for the levels `indices − o` of a range of
//!   offsets `o` (the codebook zero-offset search), many offsets at a time;
//! - [`RateModel`]: bit estimates and context updates for rate-distortion quantizers;
//! - [`StateRates`]: the rate models of the eight dependent-quantization trellis states, priced
//!   and adapted together.
//!
//! Unsafe code: none, except in the AVX-512 and AVX2 forms of the param_opt replay, of the
//! recorders' bulk write of held-back unary bins, of [`StateRates`] and of the lanes of
//! [`shifted_payload_sizes`] (`x86_64` only, chosen at run time when the CPU has AVX-512 F
//! and BW (and VL for [`StateRates`], CD for the offset trials), or else AVX2, and BMI2 for the
//! bulk write; `NNC_NO_AVX512=1` and `NNC_NO_AVX2=1` rule each out, and with both the portable
//! forms run),
//! whose vector loads and stores need it, and in the decoder's greater-than flag loop, written in
//! x86-64 assembly (default feature `asm`; `--no-default-features` or any other target uses the
//! Rust loop). Each pair of forms gives the same results, and the tests compare them.
//!
//! Every reference behaviour that deviates from the obvious reading of the standard is reproduced
//! and documented with a "Reference quirk:" note. Malformed input gives an [`Error`], never a panic
//! or an unbounded loop; reads past the payload end return zero bytes and are counted
//! ([`ArithDecoder::over_read`]).
//!
//! ```
//! use nnc_cabac::{decode_layer, encode_layer, ArithDecoder, ArithEncoder, EncodeLayerOptions, LayerConfig, LayerHistory};
//!
//! let cfg = LayerConfig { cabac_unary_length: 10, ..LayerConfig::new(vec![2, 4]) };
//! let levels = [0, 1, -1, 2, 0, 0, 3, -5];
//! let mut enc = ArithEncoder::new();
//! encode_layer(&mut enc, &cfg, &LayerHistory::default(), &EncodeLayerOptions::default(), &levels)?;
//! let payload = enc.finish();
//! assert_eq!(payload, [0x8d, 0x00, 0x48, 0x54, 0xef, 0x7d, 0x98]); // KAT-B
//!
//! let mut dec = ArithDecoder::new(&payload);
//! let mut out = [0i32; 8];
//! decode_layer(&mut dec, &cfg, &LayerHistory::default(), &mut out)?;
//! assert_eq!(out, levels);
//! assert_eq!(dec.finish()?, payload.len());
//! # Ok::<(), nnc_cabac::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod binarization;
pub mod context;
mod ctx_init;
mod decode_layer;
mod decoder;
pub mod dq;
mod encode_layer;
mod encoder;
mod entry_point;
mod layer;
mod offset_trials;
pub mod param_opt;
mod payload_size;
mod pseudo_pass;
mod rate;
pub mod scan;
pub mod state_rates;
mod stream_bits;
pub mod tables;
pub mod threads;

pub use context::{ContextLayout, ContextModel, ContextSet};
pub use decode_layer::{
    decode_layer, decode_layer_and_create_entry_points, decode_layer_with_entry_points,
};
pub use decoder::ArithDecoder;
pub use encode_layer::{encode_layer, encode_layer_marking_entry_points, EncodeLayerOptions};
pub use encoder::ArithEncoder;
pub use entry_point::{EntryMarks, EntryPoint};
pub use layer::{DecodedLayerInfo, HdspMode, LayerConfig, LayerHistory, MAX_CABAC_UNARY_LENGTH};
pub use offset_trials::{shifted_payload_sizes, OFFSETS_PER_GROUP};
pub use payload_size::payload_size;
pub use rate::RateModel;
pub use state_rates::StateRates;

/// Errors of the level coder.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tensor dimensions overflow `usize`.
    #[error("tensor dimensions overflow")]
    DimsOverflow,
    /// An array does not have the tensor's length.
    #[error("{what} has {got} elements, expected {expected}")]
    LengthMismatch {
        /// Which array.
        what: &'static str,
        /// Required length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// `cabac_unary_length` (N) out of range (1..=256 for decoding, 0..=256 for encoding).
    #[error("cabac_unary_length {0} out of range")]
    CabacUnaryLength(u32),
    /// scan_order above 4 for a tensor that uses block scan.
    #[error("scan_order {0} is not supported (0..=4)")]
    ScanOrder(u8),
    /// `codebook_zero_offset` not below a non-zero `codebook_size`.
    #[error("codebook_zero_offset {zero_offset} is not below codebook_size {size}")]
    Codebook {
        /// Codebook size.
        size: u32,
        /// Zero offset.
        zero_offset: u32,
    },
    /// HDSP mode TensorOn without a history mask.
    #[error("HDSP mode TensorOn needs a history mask")]
    MissingHdspHistory,
    /// The tensor's `hist_dep_sig_prob_enabled_flag` is set, but it is decoded without a
    /// history (HDSP off, or the earlier updates' history missing): its sig flags would be read
    /// in the wrong contexts.
    #[error(
        "the tensor is coded with history-dependent significance probability (HDSP), which \
         needs HDSP decoding and the history of the earlier updates"
    )]
    HdspNotAvailable,
    /// A decoded level or reconstruction index does not fit an i32 (corrupt stream).
    #[error("decoded level overflows i32")]
    LevelOverflow,
    /// The level loop read this many bytes past the end of the payload (corrupt or truncated
    /// stream, or dimensions larger than the payload can code).
    #[error("payload exhausted: {over_read} bytes read past its end")]
    PayloadExhausted {
        /// Bytes read past the end when decoding stopped.
        over_read: usize,
    },
    /// The terminating bin decoded as 0 (corrupt or truncated stream).
    #[error("terminating bin not found")]
    MissingTerminatingBin,
    /// The payload cannot start with these bytes (first byte 0xFF).
    #[error("invalid start of arithmetic codeword")]
    InvalidCodewordStart,
    /// A level cannot be coded (outside the codebook, or against an implied sign).
    #[error("level {level} at position {pos} cannot be coded")]
    LevelNotCodable {
        /// Row-major position.
        pos: usize,
        /// The level as given.
        level: i32,
    },
    /// Decoding a block row from its entry point did not end where the next entry point says
    /// the next block row starts (bit offset, offset register or DQ state): the entry points do
    /// not belong to this stream. Decoding without them ([`decode_layer`]) is unaffected.
    #[error("block row {block_row} does not start where its entry point says")]
    EntryPointMismatch {
        /// The block row whose signalled start differs (1 is the first with an entry point).
        block_row: usize,
    },
    /// The number of entry points does not match the tensor's block rows.
    #[error("{got} entry points given, the tensor needs {expected}")]
    EntryPointCount {
        /// `num_block_rows − 1` (0 without block-row restarts).
        expected: usize,
        /// Entry points given.
        got: usize,
    },
    /// A row flagged for skipping holds non-zero levels.
    #[error("row {0} is flagged for skipping but is not all zero")]
    SkippedRowNotZero(usize),
    /// An internal invariant failed (a bug; reported instead of panicking).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

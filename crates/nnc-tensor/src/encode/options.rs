//! Encoder settings, named and defaulted as the reference's arguments.

use std::collections::BTreeMap;

pub use nnc_quant::qp_select::ParameterType;

/// Default weight qp of the tensor and model pipelines (`tensor.encode`, `nn.encode`).
pub const DEFAULT_QP: i32 = -32;
/// Default weight qp of the low-level `nnc.compress`.
pub const DEFAULT_COMPRESS_QP: i32 = -38;
/// Default `qp_density`.
pub const DEFAULT_QP_DENSITY: u8 = 2;
/// Default qp of non-weight tensors (biases, batch-norm parameters, 1-D tensors).
pub const DEFAULT_NONWEIGHT_QP: i32 = -75;
/// Default `cabac_unary_length_minus1`.
pub const DEFAULT_CABAC_UNARY_LENGTH_MINUS1: u8 = 10;

/// When to approximate tensors with a codebook (reference `codebook_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CodebookMode {
    /// Uniform quantization only (0).
    #[default]
    Off,
    /// Always use a codebook (1).
    Always,
    /// Use a codebook only where it gives a smaller payload (2; `approx_method = "codebook"` in the
    /// tensor and model pipelines).
    Auto,
}

/// Encoder settings. Field names follow the reference's `nnc.compress` arguments.
///
/// `Default` gives the defaults of the reference's tensor and model pipelines (`tensor.encode`,
/// `nn.encode`); [`EncodeOptions::compress_defaults`] those of `nnc.compress` (qp −38, no row
/// skipping).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EncodeOptions {
    /// Weight quantization parameter. Default: [`DEFAULT_QP`].
    pub qp: i32,
    /// Quantization steps per octave are `2^qp_density`. Default: [`DEFAULT_QP_DENSITY`].
    pub qp_density: u8,
    /// qp of non-weight tensors; `None` (or 0, as in the reference) derives `qp − 2^(qp_density+1)`.
    /// Default: `Some(`[`DEFAULT_NONWEIGHT_QP`]`)`.
    pub nonweight_qp: Option<i32>,
    /// Per-tensor qp overrides by name; a name that is not among the tensors to encode is an
    /// error. Default: none.
    pub qp_per_tensor: BTreeMap<String, i32>,
    /// Dependent (trellis-coded) quantization. Default: `true`.
    pub use_dq: bool,
    /// Codebook approximation. Default: [`CodebookMode::Off`].
    pub codebook_mode: CodebookMode,
    /// Scan order of tensors with more than one dimension: 0 row-major, 1..=4 block scan with
    /// 8, 16, 32 or 64 wide blocks and entry points. Default: 0.
    pub scan_order: u8,
    /// Rate-distortion weight of the quantizers (0: distortion only). Default: 0.
    pub lambda_scale: f32,
    /// Optimise the context initialisation per tensor. Default: `true`.
    pub param_opt: bool,
    /// Number of greater-than flags minus one. Default: [`DEFAULT_CABAC_UNARY_LENGTH_MINUS1`].
    pub cabac_unary_length_minus1: u8,
    /// Scale each weight tensor's qp by its size and spread. Default: `false`.
    pub opt_qp: bool,
    /// Fold batch-norm parameters into the preceding weight's scaling and bias, in the input's
    /// blocks ([`EncodeInput::apply_blocks`](super::EncodeInput::apply_blocks), or
    /// [`EncodeInput::apply_guessed_blocks`](super::EncodeInput::apply_guessed_blocks) for a
    /// state dict); an input without blocks is refused (the reference codes it unfolded, as
    /// with `bnf` off). Not with `compress_differences`. Default: `false`.
    pub bnf: bool,
    /// Signal all-zero first-dimension slices with one flag each. Default: `true` (`false` in
    /// [`EncodeOptions::compress_defaults`]).
    pub row_skipping: bool,
    /// Temporal context adaptation: code levels with the previous update's levels as context
    /// (needs `compress_differences` and incremental encoding). Default: `false`.
    pub tca: bool,
    /// History-dependent significance probability (needs incremental encoding and
    /// `compress_differences`). Default: `false`.
    pub hdsp: bool,
    /// Mark the stream as parent-signalled without differences (`nnr_pre_flag`). Default: `false`.
    pub pre_signalling: bool,
    /// `device_id` written in every NDU. Default: 0.
    pub device_id: u64,
    /// The tensors are differences to a base model (sets the parent signalling fields; all-zero
    /// tensors are then omitted). Default: `false`.
    pub compress_differences: bool,
    /// Integer-aligned bit depth: choose each tensor's qp so its levels fit this many bits.
    /// Default: `None`.
    pub int_quant_bw: Option<u32>,
    /// Carry original dtypes and shapes, and uncoded tensors, in the topology unit so decoding
    /// restores them (see `nnc_tensor::metadata`). The reference writes no such data: turn this off
    /// for byte-identical output when a tensor is not float32/int32. Not an argument of the
    /// reference. Default: `true`.
    pub carry_dtypes: bool,
    /// Write a tensor qp that its `iae_v(6 + qp_density)` field cannot hold (the codebook search
    /// can lower a non-weight qp past −2^(5+qp_density)) masked to the field's bits, as the
    /// reference does: the stream then decodes with another qp, so other values than were
    /// coded. Off, such a qp is refused by name (quirks.md#qp-offset-range). Only for
    /// byte-identical output with the reference (the conformance runner). A qp the overflow
    /// fallback raises past the field (weights beyond about 2^31 steps) is refused either way:
    /// no reference stream of that case is known. Not an argument of the reference.
    /// Default: `false`.
    pub mask_unsignalable_qp: bool,
    /// Worker threads: `None` (or `Some(0)`) uses rayon's global pool (all cores), `Some(n)` a
    /// pool of `n` threads (at most [`MAX_THREADS`](crate::MAX_THREADS), or the encode fails),
    /// kept for later calls with the same count when `n` is at most the machine's cores. The
    /// bitstream is the same for any value. `Some(1)` on fewer than 65 536 values, and any
    /// setting on one tensor of fewer than 8 192 values (without the codebook search, whose
    /// trials split even one tensor), runs on the calling thread without a pool: handing a call
    /// to a pool's threads costs some tens of microseconds, as much as coding a few hundred
    /// values. Not an argument of the reference. Default: `None`.
    pub threads: Option<usize>,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            qp: DEFAULT_QP,
            qp_density: DEFAULT_QP_DENSITY,
            nonweight_qp: Some(DEFAULT_NONWEIGHT_QP),
            qp_per_tensor: BTreeMap::new(),
            use_dq: true,
            codebook_mode: CodebookMode::Off,
            scan_order: 0,
            lambda_scale: 0.0,
            param_opt: true,
            cabac_unary_length_minus1: DEFAULT_CABAC_UNARY_LENGTH_MINUS1,
            opt_qp: false,
            bnf: false,
            row_skipping: true,
            tca: false,
            hdsp: false,
            pre_signalling: false,
            device_id: 0,
            compress_differences: false,
            int_quant_bw: None,
            carry_dtypes: true,
            mask_unsignalable_qp: false,
            threads: None,
        }
    }
}

impl EncodeOptions {
    /// The defaults of the reference's `nnc.compress` (qp −38, row skipping off).
    pub fn compress_defaults() -> Self {
        EncodeOptions {
            qp: DEFAULT_COMPRESS_QP,
            row_skipping: false,
            ..Default::default()
        }
    }
    /// Sets [`EncodeOptions::qp`].
    pub fn with_qp(mut self, qp: i32) -> Self {
        self.qp = qp;
        self
    }
    /// Sets [`EncodeOptions::use_dq`].
    pub fn with_dq(mut self, on: bool) -> Self {
        self.use_dq = on;
        self
    }
    /// Sets [`EncodeOptions::scan_order`].
    pub fn with_scan_order(mut self, scan_order: u8) -> Self {
        self.scan_order = scan_order;
        self
    }
    /// Sets [`EncodeOptions::threads`].
    pub fn with_threads(mut self, threads: Option<usize>) -> Self {
        self.threads = threads;
        self
    }
    /// Sets [`EncodeOptions::codebook_mode`].
    pub fn with_codebook_mode(mut self, mode: CodebookMode) -> Self {
        self.codebook_mode = mode;
        self
    }

    /// Whether a stream coded with these options may decode to other levels than the encoder
    /// coded: dependent quantization with a bit depth, whose clipping can break the DQ parity
    /// (`docs/quirks.md#bitdepth-dq-state`). Otherwise the decoder reconstructs exactly
    /// [`crate::EncodedTensor::reconstruction`].
    pub fn levels_may_decode_differently(&self) -> bool {
        self.use_dq && self.int_quant_bw.is_some_and(|b| b > 0)
    }

    /// Checks value ranges the bitstream syntax imposes.
    pub fn validate(&self) -> Result<(), String> {
        if self.qp_density > 7 {
            return Err(format!("qp_density {} is above 7", self.qp_density));
        }
        if self.scan_order > 4 {
            return Err(format!("scan_order {} is above 4", self.scan_order));
        }
        if self.bnf && self.compress_differences {
            return Err(
                "bnf folds a whole model's batch norm: an update of differences cannot \
                        be folded (fold both models, then code their difference)"
                    .into(),
            );
        }
        if self.hdsp && !self.compress_differences {
            return Err("hdsp needs compress_differences".into());
        }
        if let Some(b) = self.int_quant_bw {
            if !(1..32).contains(&b) {
                return Err(format!("int_quant_bw {b} is outside 1..=31"));
            }
        }
        if !self.lambda_scale.is_finite() {
            return Err("lambda_scale must be finite".into());
        }
        Ok(())
    }
}

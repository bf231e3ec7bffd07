//! FL settings, named and defaulted as the reference's FL command line (`example/nnc_fl.py`), and
//! their translation into the coder's options.

use nnc_tensor::encode::CodebookMode;
use nnc_tensor::sparsify::SparsifyOptions;
use nnc_tensor::EncodeOptions;
use serde::{Deserialize, Serialize};

use crate::error::{FlError, Result};

/// The `qp_density` every FL message is coded with (see [`FlOptions::qp_density`]).
const FL_CODING_QP_DENSITY: u8 = 2;

/// How FL messages approximate the values (the reference's `approx_method`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApproxMethod {
    /// Uniform quantization.
    #[default]
    Uniform,
    /// A codebook per tensor where it gives a smaller payload than uniform quantization
    /// (`codebook_mode` 2); such tensors decode to float64, which the reference's sums keep.
    Codebook,
}

/// FL codec settings. Both sides of a session must use the same values: they decide which
/// messages are NNC bitstreams and what they carry.
///
/// `Default` is the reference's command-line default: nothing compressed (plain FedAvg with
/// 4 bytes per parameter each way), qp −32, non-weight qp −75, `qp_density` 2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlOptions {
    /// Clients send NNC bitstreams (otherwise their raw local models).
    pub compress_upstream: bool,
    /// The server sends an NNC bitstream (otherwise the raw global model).
    pub compress_downstream: bool,
    /// Keep each coded direction's quantization/sparsification residual and add it to the next
    /// message's input.
    pub err_accumulation: bool,
    /// Code differences to the last global model instead of whole models (parent-signalled
    /// bitstreams; all-zero tensors are omitted).
    pub compress_differences: bool,
    /// qp of the sparsification threshold, and the coding qp when `diff_qp` is `None`.
    pub qp: i32,
    /// Coding qp of the weights. `None`: `qp` (as the reference's `nnc_fl.py` sets it).
    pub diff_qp: Option<i32>,
    /// qp of the non-weight (one-dimensional) tensors.
    pub nonweight_qp: i32,
    /// `2^qp_density` quantization steps per octave for the sparsification threshold.
    ///
    /// Reference quirk: the messages themselves are coded with `qp_density` 2 whatever this is
    /// (the reference's `fl.encode` does not hand it to `nnc.compress`), so `qp` and `diff_qp`
    /// count steps of a quarter octave there (`docs/quirks.md#fl-qp-density`).
    pub qp_density: u8,
    /// Dependent (trellis-coded) quantization.
    pub use_dq: bool,
    /// Scale each weight tensor's qp by its size and spread.
    pub opt_qp: bool,
    /// Target fraction of zeros of the unstructured sparsification, in `[0, 1)`; 0 disables
    /// sparsification.
    pub sparsity: f64,
    /// Gain of the structured (per output channel) sparsification after the unstructured one;
    /// 0 skips it.
    pub struct_spars_factor: f64,
    /// Signal all-zero rows with one flag each.
    pub row_skipping: bool,
    /// Temporal context adaptation: code each tensor's levels with the previous update's levels
    /// of the same direction and sender as context (needs `compress_differences`).
    pub tca: bool,
    /// Integer-aligned coding: choose each tensor's qp so its levels fit this many bits.
    pub bitdepth: Option<u32>,
    /// Choose each tensor's context initialisation by a trial coding (the reference's
    /// `param_opt`, on by default).
    pub param_opt: bool,
    /// How messages approximate the values: `Uniform` quantization, or `Codebook` where a
    /// codebook gives a smaller payload (the reference's `approx_method`).
    pub approx_method: ApproxMethod,
    /// FedBNF: clients fold each batch norm into its layer's scaling and bias before coding
    /// their update, and blend the batch norms they receive with those of their last local
    /// model (the reference's `--bnf`). The batch norms are found in the layout's names (a
    /// module with `running_mean` and `running_var`). Needs both directions compressed and
    /// `compress_differences`; see `docs/fl.md#fedbnf`.
    pub bnf: bool,
    /// Worker threads for this side's coding: `None` (or 0) all cores, `Some(n)` a pool of `n`
    /// (at most [`nnc_tensor::MAX_THREADS`]).
    /// Local to each side, unlike the other fields: the messages are the same for any value.
    pub threads: Option<usize>,
    /// Decode every message this side sends, as its receiver will, and fail with
    /// [`FlError::Internal`] unless the values and state changes are the encoder's own. Off,
    /// the sender takes its reconstruction straight from the coded levels, which is what the
    /// decoder gives back (a send does not pay for a second decode; `docs/fl.md#verify`).
    /// Local to each side, like `threads`.
    pub verify_messages: bool,
}

impl Default for FlOptions {
    fn default() -> Self {
        FlOptions {
            compress_upstream: false,
            compress_downstream: false,
            err_accumulation: false,
            compress_differences: false,
            qp: -32,
            diff_qp: None,
            nonweight_qp: -75,
            qp_density: 2,
            use_dq: false,
            opt_qp: false,
            sparsity: 0.0,
            struct_spars_factor: 0.0,
            row_skipping: false,
            tca: false,
            bitdepth: None,
            param_opt: true,
            approx_method: ApproxMethod::Uniform,
            bnf: false,
            threads: None,
            verify_messages: false,
        }
    }
}

impl FlOptions {
    /// Plain FedAvg, nothing compressed (the same as `Default`).
    pub fn uncompressed() -> Self {
        Self::default()
    }

    /// Both directions compressed as differences with error accumulation, at weight qp `qp`
    /// (the reference's four FL flags); everything else at its default.
    pub fn compressed(qp: i32) -> Self {
        FlOptions {
            compress_upstream: true,
            compress_downstream: true,
            err_accumulation: true,
            compress_differences: true,
            qp,
            ..Self::default()
        }
    }

    /// The coding qp of the weights (`diff_qp`, else `qp`).
    pub fn coding_qp(&self) -> i32 {
        self.diff_qp.unwrap_or(self.qp)
    }

    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(FlError::Options(what));
        if !(self.sparsity.is_finite() && (0.0..1.0).contains(&self.sparsity)) {
            return bad(format!("sparsity {} is outside [0, 1)", self.sparsity));
        }
        if !(self.struct_spars_factor.is_finite() && self.struct_spars_factor >= 0.0) {
            return bad(format!(
                "struct_spars_factor {} is negative or not finite",
                self.struct_spars_factor
            ));
        }
        if self.qp_density > 7 {
            return bad(format!("qp_density {} is above 7", self.qp_density));
        }
        if let Some(b) = self.bitdepth {
            if !(1..32).contains(&b) {
                return bad(format!("bitdepth {b} is outside 1..=31"));
            }
        }
        // What an NDU's qp field can hold at the coding qp_density; opt_qp and bit depth may
        // still move a tensor's qp out of it, which the encoder then refuses by name.
        let max = nnc_quant::qp_limit(FL_CODING_QP_DENSITY);
        for (what, qp) in [
            ("coding qp (diff_qp, else qp)", self.coding_qp()),
            ("nonweight_qp", self.nonweight_qp),
        ] {
            if !(-max..max).contains(&i64::from(qp)) {
                return bad(format!(
                    "{what} {qp} is outside [{}, {}], the range of qp_density {FL_CODING_QP_DENSITY} that FL messages are coded with",
                    -max,
                    max - 1
                ));
            }
        }
        if self.tca && !self.compress_differences {
            return bad("tca needs compress_differences".into());
        }
        if self.bnf && self.approx_method == ApproxMethod::Codebook {
            return bad("bnf cannot be combined with approx_method codebook".into());
        }
        if self.bnf
            && !(self.compress_upstream && self.compress_downstream && self.compress_differences)
        {
            // The reference's other combinations mix folded and unfolded tensor names between
            // the two sides (docs/quirks.md#fedbnf-orders).
            return bad(
                "bnf needs compress_upstream, compress_downstream and compress_differences".into(),
            );
        }
        if let Some(n) = self.threads.filter(|&n| n > nnc_tensor::MAX_THREADS) {
            return bad(format!("threads {n} is above {}", nnc_tensor::MAX_THREADS));
        }
        Ok(())
    }

    /// The coder's options for a message sent by `device_id` (0: the server), as the
    /// reference's `fl.encode` sets up `nnc.compress`.
    pub fn encode_options(&self, device_id: u64) -> EncodeOptions {
        let mut o = EncodeOptions::compress_defaults();
        o.qp = self.coding_qp();
        o.qp_density = FL_CODING_QP_DENSITY;
        o.nonweight_qp = Some(self.nonweight_qp);
        o.use_dq = self.use_dq;
        o.opt_qp = self.opt_qp;
        o.param_opt = self.param_opt;
        o.row_skipping = self.row_skipping;
        o.tca = self.tca;
        o.device_id = device_id;
        o.compress_differences = self.compress_differences;
        o.int_quant_bw = self.bitdepth;
        if self.approx_method == ApproxMethod::Codebook {
            o.codebook_mode = CodebookMode::Auto;
            // Codebook tensors decode to float64; the messages stay the reference's (no nnc
            // metadata to give them back as float32: the FL codecs do that themselves).
            o.carry_dtypes = false;
        }
        o.threads = self.threads;
        o
    }

    /// The sparsification options.
    ///
    /// Reference quirk: the threshold uses `qp`, not the coding qp `diff_qp`.
    pub fn sparsify_options(&self) -> SparsifyOptions {
        SparsifyOptions {
            qp: self.qp,
            qp_density: self.qp_density,
            sparsity: self.sparsity,
            struct_spars_factor: self.struct_spars_factor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_reference_command_line() {
        let o = FlOptions::default();
        assert!(!o.compress_upstream && !o.compress_downstream);
        assert_eq!((o.qp, o.nonweight_qp, o.qp_density), (-32, -75, 2));
        assert_eq!(o.coding_qp(), -32);
        o.validate().unwrap();
    }

    #[test]
    fn encode_options_follow_fl_encode() {
        let o = FlOptions {
            diff_qp: Some(-20),
            tca: true,
            bitdepth: Some(8),
            ..FlOptions::compressed(-18)
        };
        let e = o.encode_options(3);
        assert_eq!(e.qp, -20);
        assert_eq!(e.nonweight_qp, Some(-75));
        assert!(e.tca && e.compress_differences && !e.row_skipping && !e.use_dq);
        assert_eq!(e.device_id, 3);
        assert_eq!(e.int_quant_bw, Some(8));
        assert_eq!(o.sparsify_options().qp, -18);
    }

    #[test]
    fn validation() {
        let bad = [
            FlOptions {
                sparsity: 1.0,
                ..FlOptions::default()
            },
            FlOptions {
                sparsity: f64::NAN,
                ..FlOptions::default()
            },
            FlOptions {
                struct_spars_factor: -0.1,
                ..FlOptions::default()
            },
            FlOptions {
                tca: true,
                ..FlOptions::default()
            },
            FlOptions {
                bitdepth: Some(0),
                ..FlOptions::default()
            },
            FlOptions {
                qp_density: 8,
                ..FlOptions::default()
            },
            FlOptions {
                qp: -129,
                ..FlOptions::default()
            },
            FlOptions {
                diff_qp: Some(128),
                ..FlOptions::default()
            },
            FlOptions {
                nonweight_qp: -200,
                ..FlOptions::default()
            },
        ];
        for o in bad {
            assert!(matches!(o.validate(), Err(FlError::Options(_))), "{o:?}");
        }
    }

    #[test]
    fn serde_fills_defaults() {
        let o: FlOptions = serde_json::from_str(r#"{"compress_upstream":true,"qp":-18}"#).unwrap();
        assert!(o.compress_upstream);
        assert_eq!(o.qp, -18);
        assert_eq!(o.nonweight_qp, -75);
    }
}

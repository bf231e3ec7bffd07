//! What a bitstream holds, tensor by tensor, read from its unit headers: each output tensor's
//! spec, QP, coded values and share of the stream's bytes.
//!
//! Payloads are read only as far as the QPs need: a member's QP opens its part of the payload,
//! so an NDU of one tensor gives its QP from its first bits, and only a block's members before
//! its last one are entropy-decoded (a block codes its small members first and its weight
//! last). A summary of a whole model therefore takes milliseconds where decoding it takes
//! seconds, and an incremental update is summarised without the state its temporal context
//! needs. Payloads are not otherwise checked: decoding does that.

use super::{StreamDecoder, Target, TensorSpec};
use crate::decode::{checked_elements, member_qps, DecodeOptions};
use crate::error::Result;
use crate::state::DecoderState;

/// One output tensor of a bitstream, as [`summarise_stream`] finds it.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSummary {
    /// Name, shape and element type of the decoded tensor (after the stream metadata's casts).
    pub spec: TensorSpec,
    /// The tensor's quantization parameter; `None` for integer, raw float, verbatim and
    /// recomposed (low-rank) tensors, and for a block member whose QP lies behind a member that
    /// cannot be decoded without an earlier bitstream's state.
    pub qp: Option<i32>,
    /// Values coded for it: its elements, the elements of both factors for a weight recomposed
    /// from a low-rank pair, none for a tensor carried verbatim in the metadata.
    pub coded_values: u64,
    /// Its share of the NNR units that carry it, headers included: each NDU's bytes are split
    /// over the output tensors it carries in proportion to the values coded for each.
    pub bytes: f64,
}

/// Summarises a bitstream tensor by tensor, in output order (the order of
/// [`crate::decode_stream`]'s tensors), without decoding it.
///
/// Fails with the errors [`crate::plan_stream`] gives; `state` is only read, for the temporal
/// context of block members that must be decoded to reach the QPs after them.
///
/// ```
/// use nnc_tensor::{encode, summarise_stream, DecodeOptions, DecoderState, EncodeInput,
///     EncodeOptions, Tensor, TensorData};
/// let w = Tensor::try_new("w", vec![8, 8], TensorData::F32((0..64).map(|i| i as f32 / 64.0).collect()))?;
/// let b = Tensor::try_new("b", vec![8], TensorData::F32(vec![0.5; 8]))?;
/// let stream = encode(&EncodeInput::from_tensors_owned(vec![w, b])?, &EncodeOptions::default())?;
/// let summary = summarise_stream(&stream.bytes, &DecoderState::default(), &DecodeOptions::new())?;
/// assert_eq!(summary[0].spec.name, "w");
/// assert_eq!(summary[0].qp, Some(-32));
/// assert_eq!(summary[1].qp, Some(-75)); // biases get the reference's finer QP
/// let coded: f64 = summary.iter().map(|t| t.bytes).sum();
/// assert!(coded < stream.bytes.len() as f64); // the rest: stream header and parameter sets
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn summarise_stream(
    bytes: &[u8],
    state: &DecoderState,
    opts: &DecodeOptions,
) -> Result<Vec<TensorSummary>> {
    Ok(StreamDecoder::new(bytes, opts)?.summary(state))
}

impl StreamDecoder<'_> {
    fn summary(&self, state: &DecoderState) -> Vec<TensorSummary> {
        let outputs = &self.outputs;
        let mut out: Vec<TensorSummary> = outputs
            .slots
            .iter()
            .map(|s| TensorSummary {
                spec: s.spec.clone(),
                qp: None,
                coded_values: 0,
                bytes: 0.0,
            })
            .collect();
        let slot_of = |t: &Target| match *t {
            Target::Slot(i) => Some(i),
            Target::Factor(r, _) => outputs.recomposed_slot[r],
            Target::Drop => None,
        };
        for (job, targets) in self.parsed.jobs.iter().zip(&outputs.targets) {
            let qps = member_qps(job, state, self.opts);
            let mut carried = Vec::with_capacity(targets.len());
            for ((m, target), qp) in job.members.iter().zip(targets).zip(qps) {
                let Some(i) = slot_of(target) else { continue };
                // Within the limits `StreamDecoder::new` checked.
                let n = checked_elements(&m.dims).unwrap_or(0);
                if let Target::Slot(_) = target {
                    out[i].qp = qp;
                }
                out[i].coded_values += n;
                carried.push((i, n));
            }
            let total: u64 = carried.iter().map(|&(_, n)| n).sum();
            for &(i, n) in &carried {
                let share = match total {
                    0 => 1.0 / carried.len() as f64,
                    _ => n as f64 / total as f64,
                };
                out[i].bytes += job.unit_bytes as f64 * share;
            }
        }
        out
    }
}

//! State carried from one bitstream to the next (incremental coding): the parameter update tree
//! bookkeeping, the base levels for temporal context adaptation (TCA) and the HDSP history.
//!
//! The reference keeps this in a shared mutable dict (`approx_param_base`) and in an `HdspTool`
//! object; here it is a plain value the caller owns, clones and persists (serde). See
//! `docs/incremental.md` for how the fields map to the reference's dict keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the decoder (or encoder) remembers about one tensor from earlier updates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorBase {
    /// Levels of the last coded update, in reconstruction units (`parameters[name]`).
    pub levels: Vec<i32>,
    /// Depth of that update's node in the parameter update tree (`put_node_depth[name]`).
    pub put_node_depth: u64,
    /// The tensor's `parameter_id` (`parameter_id[name]`).
    pub parameter_id: u64,
}

/// Incremental coding state, kept by each side (encoder and decoder) between bitstreams. `Default`
/// is the state before the first bitstream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalState {
    /// Per tensor name: the last update (TCA base and update-tree bookkeeping).
    pub bases: BTreeMap<String, TensorBase>,
    /// The `device_id` of the updates seen so far (`device_id`; 0 counts as unset, as in the
    /// reference).
    pub device_id: u64,
    /// Per tensor name: HDSP history, 1 where any earlier update had a non-zero level. Used only
    /// when decoding with [`DecodeOptions::hdsp`](crate::DecodeOptions::hdsp).
    pub hdsp_history: BTreeMap<String, Vec<i8>>,
    /// Per tensor name: the HDSP mode the encoder chose last (0 off, 1 on). Encoder only.
    pub hdsp_best_mode: BTreeMap<String, u8>,
}

/// The decoder's incremental state.
pub type DecoderState = IncrementalState;
/// The encoder's incremental state.
pub type EncoderState = IncrementalState;

impl IncrementalState {
    /// Records a decoded (or encoded) tensor update, as the reference does with `update_base_param`.
    pub(crate) fn record_update(
        &mut self,
        name: &str,
        levels: &[i32],
        device_id: u64,
        parameter_id: u64,
    ) -> Result<(), String> {
        if self.device_id == 0 {
            self.device_id = device_id;
        } else if self.device_id != device_id {
            return Err(format!(
                "device_id {device_id} differs from the state's {}",
                self.device_id
            ));
        }
        match self.bases.get_mut(name) {
            Some(base) => {
                if base.parameter_id != parameter_id {
                    return Err(format!(
                        "parameter_id {parameter_id} differs from the state's {}",
                        base.parameter_id
                    ));
                }
                base.put_node_depth += 1;
                base.levels.clear();
                base.levels.extend_from_slice(levels);
            }
            None => {
                self.bases.insert(
                    name.to_string(),
                    TensorBase {
                        levels: levels.to_vec(),
                        put_node_depth: 1,
                        parameter_id,
                    },
                );
            }
        }
        Ok(())
    }

    /// Adds the non-zero positions of `levels` to the HDSP history of `name`.
    pub(crate) fn add_to_hdsp_history(&mut self, name: &str, levels: &[i32]) {
        let hist = self
            .hdsp_history
            .entry(name.to_string())
            .or_insert_with(|| vec![0; levels.len()]);
        if hist.len() != levels.len() {
            // A tensor whose shape changed starts a fresh history.
            *hist = vec![0; levels.len()];
        }
        for (h, &l) in hist.iter_mut().zip(levels) {
            if l != 0 {
                *h = 1;
            }
        }
    }
}

//! Rate model for rate-distortion quantizers (deepcabac.md §5.3–5.4; reference `CabacRate`).

use crate::binarization::{encode_level, EstimateSink, LevelCoding, Neighbourhood, UpdateSink};
use crate::context::ContextSet;
use crate::layer::MAX_CABAC_UNARY_LENGTH;
use crate::Error;

/// A context store plus neighbour variable that prices levels the way the coder would code them
/// (profile 0 binarization: no codebook, TCA or HDSP; all contexts in init set 0).
///
/// Costs are in 1/32768 bit; a bypass bin costs 32768. [`RateModel::estimate_bits`] reads the
/// current states without adapting them; [`RateModel::update`] adapts them along the bins of a
/// level and then makes that level the neighbour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateModel {
    ctxs: ContextSet,
    lc: LevelCoding,
    neighbour: i32,
}

impl RateModel {
    /// A fresh store for `num_gtx_flags` greater-than flags (0..=256).
    ///
    /// Reference quirk: the NNCodec driver passes `cabac_unary_length_minus1` here, i.e. one flag
    /// fewer than the coder uses; pass that value to reproduce its decisions.
    pub fn new(num_gtx_flags: u32) -> Result<Self, Error> {
        if num_gtx_flags > MAX_CABAC_UNARY_LENGTH {
            return Err(Error::CabacUnaryLength(num_gtx_flags));
        }
        Ok(Self {
            ctxs: ContextSet::new(num_gtx_flags),
            lc: LevelCoding::unbounded(num_gtx_flags),
            neighbour: 0,
        })
    }

    /// Estimated cost of coding `level` in `dq_state` with the current contexts and neighbour.
    #[inline]
    pub fn estimate_bits(&self, level: i32, dq_state: u8) -> u32 {
        let nbh = Neighbourhood {
            nb: self.neighbour,
            ..Default::default()
        };
        let mut sink = EstimateSink {
            ctxs: self.ctxs.models(),
            bits: 0,
        };
        encode_level(
            &mut sink,
            &self.ctxs.layout(),
            &nbh,
            &self.lc,
            level,
            (dq_state & 7) as usize,
        );
        sink.bits
    }

    /// Adapt the contexts along the bins of `level` in `dq_state` (using the current neighbour),
    /// then set the neighbour to `level`.
    #[inline]
    pub fn update(&mut self, level: i32, dq_state: u8) {
        let nbh = Neighbourhood {
            nb: self.neighbour,
            ..Default::default()
        };
        let layout = self.ctxs.layout();
        let mut sink = UpdateSink {
            ctxs: self.ctxs.models_mut(),
        };
        encode_level(
            &mut sink,
            &layout,
            &nbh,
            &self.lc,
            level,
            (dq_state & 7) as usize,
        );
        self.neighbour = level;
    }

    /// Copy the context states (not the neighbour) from `other`.
    #[inline]
    pub fn copy_contexts_from(&mut self, other: &RateModel) {
        self.ctxs.copy_from(&other.ctxs);
        self.lc = other.lc;
    }

    /// The neighbour level used for context selection.
    pub fn neighbour(&self) -> i32 {
        self.neighbour
    }

    /// Set the neighbour level.
    pub fn set_neighbour(&mut self, level: i32) {
        self.neighbour = level;
    }

    /// The underlying contexts.
    pub fn contexts(&self) -> &ContextSet {
        &self.ctxs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::est_bits_table;

    #[test]
    fn zero_costs_one_sig_bin() {
        let r = RateModel::new(10).unwrap();
        assert_eq!(r.estimate_bits(0, 0), est_bits_table()[512][0]);
        // sig + sign + gtx0 (all at P = 0): bin 1, bin 0, bin 0.
        let t = est_bits_table()[512];
        assert_eq!(r.estimate_bits(1, 0), t[1] + t[0] + t[0]);
    }

    #[test]
    fn update_moves_neighbour_and_states() {
        let mut r = RateModel::new(10).unwrap();
        let before = r.estimate_bits(3, 0);
        r.update(3, 0);
        assert_eq!(r.neighbour(), 3);
        let mut other = RateModel::new(10).unwrap();
        other.copy_contexts_from(&r);
        assert_eq!(other.neighbour(), 0);
        assert_eq!(other.contexts(), r.contexts());
        assert_ne!(other.estimate_bits(3, 0), before);
    }

    #[test]
    fn bypass_bins_cost_32768() {
        let r = RateModel::new(1).unwrap();
        // |k| = 2 + r with r = 3: prefix 110 (contexts) + 2 bypass bins.
        let with_suffix = r.estimate_bits(5, 0);
        let t = est_bits_table()[512];
        assert_eq!(
            with_suffix,
            t[1] + t[0] + t[1] + t[1] + t[1] + t[0] + 2 * 32768
        );
    }
}

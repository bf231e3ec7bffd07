//! Rate model for rate-distortion quantizers (deepcabac.md §5.3–5.4; reference `CabacRate`).

use crate::binarization::{
    encode_level, encode_nonzero_plain, encode_remainder, remainder_prefix_ones, EstimateSink,
    LevelCoding, Neighbourhood, SliceCoder, UNBOUNDED,
};
use crate::context::{ContextLayout, ContextModel, ContextSet};
use crate::layer::MAX_CABAC_UNARY_LENGTH;
use crate::tables::est_bits_table;
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

    /// [`RateModel::estimate_bits`] of each of `levels` in `dq_state`, with the bins they share
    /// priced once: the sig flag, the sign flag and the greater-than flags up to the largest
    /// magnitude of each sign. Quantizers price a few neighbouring candidates per weight, so this
    /// walks the flags once instead of once per candidate. The sums are the same (integer costs
    /// added in another order).
    #[inline]
    pub fn estimate_levels<const K: usize>(&self, levels: [i32; K], dq_state: u8) -> [u32; K] {
        let est = est_bits_table();
        let models = self.ctxs.models();
        // As `EstimateSink`: a context outside the set costs nothing.
        let cost = |ctx: usize, bin: bool| {
            models
                .get(ctx)
                .map_or(0, |m| est[m.est_index()][usize::from(bin)])
        };
        let nbh = Neighbourhood {
            nb: self.neighbour,
            ..Default::default()
        };
        let sig = nbh.sig_ctx(usize::from(dq_state & 7));
        let mut out = [cost(sig, false); K];
        let sig_one = cost(sig, true);
        // Without a codebook the flag loop always codes at least one flag.
        let flags = self.lc.num_gtx_flags.max(1) as u64;
        let rem = self.ctxs.layout().rem();
        for negative in [false, true] {
            let magnitude =
                |k: i32| (k != 0 && (k < 0) == negative).then(|| u64::from(k.unsigned_abs()));
            let Some(largest) = levels.iter().filter_map(|&k| magnitude(k)).max() else {
                continue;
            };
            let head = sig_one + cost(nbh.sign_ctx(), negative);
            // `ones`: the cost of flags 0..j all being 1. A magnitude m <= flags stops at flag
            // m − 1 with a 0; a larger one codes every flag as 1, then its remainder.
            let mut ones = 0u32;
            for j in 0..largest.min(flags) {
                let ctx = ContextLayout::gtx(j as usize, negative);
                for (o, &k) in out.iter_mut().zip(&levels) {
                    if magnitude(k) == Some(j + 1) {
                        *o = head + ones + cost(ctx, false);
                    }
                }
                ones += cost(ctx, true);
            }
            // A remainder's cost depends only on its prefix length (its ones, then a zero unless
            // all MAX_PREFIX_BINS are ones, then as many bypass bins as ones), which neighbouring
            // candidates nearly always share: priced once per length.
            let mut priced: Option<(usize, u32)> = None;
            for (o, &k) in out.iter_mut().zip(&levels) {
                if let Some(m) = magnitude(k).filter(|&m| m > flags) {
                    let r = m - flags - 1;
                    let prefix = remainder_prefix_ones(r);
                    let bits = match priced {
                        Some((len, bits)) if len == prefix => bits,
                        _ => {
                            let mut remainder = EstimateSink {
                                ctxs: models,
                                bits: 0,
                            };
                            encode_remainder(&mut remainder, rem, r, flags + 1, UNBOUNDED);
                            priced = Some((prefix, remainder.bits));
                            remainder.bits
                        }
                    };
                    *o = head + ones + bits;
                }
            }
        }
        out
    }

    /// Adapt the contexts along the bins of `level` in `dq_state` (using the current neighbour),
    /// then set the neighbour to `level`.
    ///
    /// The bins are [`encode_level`]'s (the model's binarization has no codebook bounds, TCA or
    /// HDSP), walked as the encoder's plain loop walks them: the greater-than and remainder
    /// contexts sliced once, their runs of 1-bins adapted with the bin a constant.
    #[inline]
    pub fn update(&mut self, level: i32, dq_state: u8) {
        let layout = self.ctxs.layout();
        let nb_class = ContextLayout::nb_class(self.neighbour);
        let models = self.ctxs.models_mut();
        if let Some(sig) = models.get_mut(ContextLayout::sig(usize::from(dq_state & 7), nb_class)) {
            sig.update(level != 0);
        }
        if level != 0 {
            // The layout keeps every index of the plain loop within the set.
            let walked = encode_nonzero_plain(&mut Adapt, models, &layout, nb_class, level);
            debug_assert!(walked.is_ok(), "context index out of range");
        }
        self.neighbour = level;
    }

    /// Copy the context states (not the neighbour) from `other`.
    #[inline]
    pub fn copy_contexts_from(&mut self, other: &RateModel) {
        self.ctxs.copy_from(&other.ctxs);
        self.lc = other.lc;
    }

    /// As [`RateModel::copy_contexts_from`], but moves `other`'s context states here instead of
    /// copying them, leaving `other` with this model's old ones: for a trellis whose last
    /// successor of a state no longer needs that state's model.
    #[inline]
    pub fn take_contexts_from(&mut self, other: &mut RateModel) {
        std::mem::swap(&mut self.ctxs, &mut other.ctxs);
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

/// Adapts each context along its bins and codes nothing: [`RateModel::update`]'s walk.
struct Adapt;

impl SliceCoder<ContextModel> for Adapt {
    #[inline(always)]
    fn bin(&mut self, ctx: &mut ContextModel, bin: bool) {
        ctx.update(bin);
    }
    #[inline(always)]
    fn zeros(&mut self, ctx: &mut ContextModel, n: usize) {
        for _ in 0..n {
            ctx.update(false);
        }
    }
    #[inline(always)]
    fn bypass_bins(&mut self, _n: u32, _value: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        // Taking the contexts moves the states but, like the copy, not the neighbour.
        let mut taker = RateModel::new(10).unwrap();
        taker.set_neighbour(-2);
        let states = r.contexts().clone();
        taker.take_contexts_from(&mut r);
        assert_eq!((taker.contexts(), taker.neighbour()), (&states, -2));
        assert_eq!(r.neighbour(), 3);
    }

    fn level() -> impl Strategy<Value = i32> {
        prop_oneof![
            -3i32..=3,
            -40i32..=40,
            any::<i32>(),
            Just(i32::MIN),
            Just(i32::MAX),
        ]
    }

    proptest! {
        #[test]
        fn estimate_levels_equals_one_by_one(
            flags in 0u32..=12,
            history in prop::collection::vec((-60i32..=60, 0u8..8), 0..200),
            candidates in prop::array::uniform3(level()),
            dq_state in 0u8..8,
        ) {
            let mut r = RateModel::new(flags).unwrap();
            for (k, s) in history {
                r.update(k, s);
            }
            let expected = candidates.map(|k| r.estimate_bits(k, dq_state));
            prop_assert_eq!(r.estimate_levels(candidates, dq_state), expected);
            let [a, b, _] = candidates;
            prop_assert_eq!(r.estimate_levels([b, a], dq_state), [expected[1], expected[0]]);
        }
    }

    /// [`RateModel::update`] as it was: every bin of [`encode_level`] through an [`UpdateSink`].
    fn update_by_sink(r: &mut RateModel, level: i32, dq_state: u8) {
        let nbh = Neighbourhood {
            nb: r.neighbour,
            ..Default::default()
        };
        let layout = r.ctxs.layout();
        let lc = r.lc;
        let mut sink = crate::binarization::UpdateSink {
            ctxs: r.ctxs.models_mut(),
        };
        encode_level(
            &mut sink,
            &layout,
            &nbh,
            &lc,
            level,
            (dq_state & 7) as usize,
        );
        r.neighbour = level;
    }

    proptest! {
        #[test]
        fn update_adapts_as_every_bin_of_encode_level(
            flags in 0u32..=12,
            history in prop::collection::vec((level(), 0u8..8), 0..300),
        ) {
            let mut fast = RateModel::new(flags).unwrap();
            let mut slow = RateModel::new(flags).unwrap();
            for (k, s) in history {
                fast.update(k, s);
                update_by_sink(&mut slow, k, s);
                prop_assert_eq!(&fast, &slow);
            }
        }
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

//! The size a tensor's payload would have, without coding it: for the encoder's trial encodes
//! (the codebook zero-offset search, the codebook-or-uniform decision), which keep nothing of a
//! trial but its length.
//!
//! An arithmetic codeword's length follows from its shifts alone: every shift of the offset
//! register moves one bit out, whatever the bits are, and a carry changes bytes already counted
//! but never their number. So this module runs the range and the contexts as the encoder does,
//! counts the shifts, and leaves out the offset register, its carries and the byte output.

use crate::binarization::SliceCoder;
use crate::context::{ContextLayout, ContextModel, ContextSet};
use crate::encode_layer::{
    code_plain_levels, encode_layer, ContextInits, EncodeLayerOptions, FlagChoices,
};
use crate::encoder::{ArithEncoder, RangeStep};
use crate::layer::{HdspMode, LayerConfig, LayerHistory, Prepared};
use crate::Error;

/// The shifts the terminating bin adds at the end of a codeword (`encode_terminate(1)`).
const TERMINATE_SHIFTS: u64 = 7;

/// An arithmetic encoder that keeps its range and counts its shifts.
struct ShiftCounter {
    range: u32,
    shifts: u64,
}

impl ShiftCounter {
    fn new() -> Self {
        Self {
            range: 510,
            shifts: 0,
        }
    }

    /// The payload length [`ArithEncoder::finish`] returns after these shifts: the offset
    /// register starts with 23 free bits, gives up a byte whenever fewer than 12 are left, and
    /// the flush writes what is left of it with the stop bit, so `ceil((shifts + 2) / 8)` bytes
    /// in all.
    fn payload_len(&self) -> usize {
        payload_len(self.shifts)
    }

    /// [`ArithEncoder::encode_bin`] without the offset register.
    #[inline(always)]
    fn encode_bin(&mut self, bin: bool, ctx: &mut ContextModel) {
        let step = RangeStep::new(self.range, bin, ctx);
        self.range = step.range;
        self.shifts += u64::from(step.shifts);
        ctx.update(bin);
    }
}

impl SliceCoder<ContextModel> for ShiftCounter {
    #[inline(always)]
    fn bin(&mut self, ctx: &mut ContextModel, bin: bool) {
        self.encode_bin(bin, ctx);
    }
    #[inline(always)]
    fn zeros(&mut self, ctx: &mut ContextModel, n: usize) {
        let mut local = *ctx;
        for _ in 0..n {
            self.encode_bin(false, &mut local);
        }
        *ctx = local;
    }
    #[inline(always)]
    fn bypass_bins(&mut self, n: u32, _value: u32) {
        // A bypass bin leaves the range alone and shifts once.
        self.shifts += u64::from(n.min(32));
    }
}

/// The length of the payload that [`encode_layer`] into a new [`ArithEncoder`], then
/// [`ArithEncoder::finish`], would give for `levels`: the same number, found without coding
/// the bins.
///
/// Counted without coding for tensors in one block row, without row skipping and whose contexts
/// depend on the previous level only (no TCA, HDSP or codebook bounds), which is what the
/// encoder's trials code; anything else is encoded and measured.
pub fn payload_size(
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
) -> Result<usize, Error> {
    preset_payload_size(cfg, hist, opts, levels, None)
}

/// [`payload_size`], the param_opt search of a counted tensor taking `preset`'s choices as
/// given (a tensor that is encoded and measured runs its whole search).
pub(crate) fn preset_payload_size(
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
    preset: Option<&FlagChoices>,
) -> Result<usize, Error> {
    match counted_shifts(cfg, hist, opts, levels, preset)? {
        Some(counter) => Ok(counter.payload_len()),
        None => {
            let mut enc = ArithEncoder::new();
            encode_layer(&mut enc, cfg, hist, opts, levels)?;
            Ok(enc.finish().len())
        }
    }
}

/// The shifts of `encode_layer`'s bins before the terminating one, or `None` for a tensor
/// [`payload_size`] does not count.
#[cfg(test)]
pub(crate) fn shifts_before_terminating(
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
) -> Result<Option<u64>, Error> {
    Ok(counted_shifts(cfg, hist, opts, levels, None)?.map(|c| c.shifts))
}

/// The shift counter after `encode_layer`'s bins, or `None` for a tensor it does not count.
fn counted_shifts(
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
    preset: Option<&FlagChoices>,
) -> Result<Option<ShiftCounter>, Error> {
    let Some(mut start) = CountStart::new(cfg, hist, opts, levels, preset)? else {
        return Ok(None);
    };
    // A counted tensor is scanned row-major in one block row: its levels in their own order.
    let (mut nb, mut dq_state) = (0, 0u8);
    code_plain_levels(
        &mut start.counter,
        start.contexts.models_mut(),
        &start.layout,
        start.dq,
        levels,
        &mut nb,
        &mut dq_state,
    )?;
    Ok(Some(start.counter))
}

/// A countable tensor's counter and contexts where its levels begin: after the header and the
/// context-initialisation bins. Its levels are then coded in their own order (row-major scan,
/// one block row).
pub(crate) struct CountStart {
    counter: ShiftCounter,
    pub contexts: ContextSet,
    pub layout: ContextLayout,
    pub dq: bool,
}

impl CountStart {
    /// `None` when the tensor's payload is not counted (see [`payload_size`]). With `preset`,
    /// the param_opt search takes those contexts' choices as given.
    pub fn new(
        cfg: &LayerConfig,
        hist: &LayerHistory<'_>,
        opts: &EncodeLayerOptions,
        levels: &[i32],
        preset: Option<&FlagChoices>,
    ) -> Result<Option<Self>, Error> {
        let p = Prepared::new(cfg, hist, levels.len(), 0)?;
        if !countable(&p, opts) {
            return Ok(None);
        }
        let hdsp_flag = header_hdsp_flag(&p);

        let mut counter = ShiftCounter::new();
        if p.header_present {
            // The HDSP flag (with a parent node) and row_skip_enabled_flag (0 here), both bypass.
            counter.bypass_bins(1 + u32::from(p.parent), 0);
        }
        let layout = p.layout;
        let mut contexts = ContextSet::new(layout.num_gtx_flags());
        let inits = ContextInits {
            p: &p,
            levels,
            skip_rows: &[],
            hdsp_flag,
            allow_plain: true,
            preset,
        };
        inits.code(&mut counter, contexts.models_mut(), opts.param_opt)?;
        Ok(Some(Self {
            counter,
            contexts,
            layout,
            dq: p.dq,
        }))
    }

    /// The range and the shifts so far.
    pub fn engine(&self) -> (u32, u64) {
        (self.counter.range, self.counter.shifts)
    }
}

/// Whether [`payload_size`] counts a tensor of `len` levels under `cfg`, `hist` and `opts`
/// rather than encoding it (an invalid configuration counts nothing).
pub(crate) fn counts(
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    opts: &EncodeLayerOptions,
    len: usize,
) -> bool {
    Prepared::new(cfg, hist, len, 0).is_ok_and(|p| countable(&p, opts))
}

/// Whether a tensor is counted: one block row, no row-skipping bins, and contexts that depend
/// on the previous level only (no TCA, HDSP or codebook bounds).
fn countable(p: &Prepared<'_>, opts: &EncodeLayerOptions) -> bool {
    let row_skip_bins = p.header_present && opts.row_skip_enabled_flag;
    let plain_contexts = !p.per_position_contexts(header_hdsp_flag(p)) && p.lc.is_unbounded();
    !row_skip_bins && !opts.tca_hdsp_flag_follows_profile && p.geo.scan_order == 0 && plain_contexts
}

/// The header's HDSP flag, as `encode_body` sets it.
fn header_hdsp_flag(p: &Prepared<'_>) -> bool {
    p.header_present && p.parent && p.hdsp_mode == HdspMode::TensorOn
}

/// The payload length after `shifts` shifts, the terminating bin's excluded (see
/// [`ShiftCounter::payload_len`]).
pub(crate) fn payload_len(shifts: u64) -> usize {
    let total = shifts + TERMINATE_SHIFTS;
    usize::try_from((total + 2).div_ceil(8)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn measured(
        cfg: &LayerConfig,
        hist: &LayerHistory<'_>,
        opts: &EncodeLayerOptions,
        levels: &[i32],
    ) -> usize {
        let mut enc = ArithEncoder::new();
        encode_layer(&mut enc, cfg, hist, opts, levels).unwrap();
        enc.finish().len()
    }

    #[test]
    fn known_lengths() {
        // The empty codeword is 2 bytes; the reference's trial encodes of the quirks test.
        let cfg = LayerConfig::new(vec![0]);
        let opts = EncodeLayerOptions::default();
        assert_eq!(
            payload_size(&cfg, &LayerHistory::default(), &opts, &[]).unwrap(),
            measured(&cfg, &LayerHistory::default(), &opts, &[])
        );
        let cfg = LayerConfig {
            cabac_unary_length: 0,
            ..LayerConfig::new(vec![12])
        };
        let opts = EncodeLayerOptions {
            param_opt: true,
            ..Default::default()
        };
        let levels = [2, -3, 0, 7, 0, 0, 1, -1, 12, 0, -40, 3];
        assert_eq!(
            payload_size(&cfg, &LayerHistory::default(), &opts, &levels).unwrap(),
            9
        );
    }

    /// Levels from a few magnitudes' scales: runs of zeros, small levels, and large ones whose
    /// remainders use long prefixes and bypass suffixes.
    fn level_vec() -> impl Strategy<Value = Vec<i32>> {
        prop::collection::vec(
            prop_oneof![
                4 => Just(0),
                6 => -8..=8i32,
                2 => -300..=300i32,
                1 => -100_000..=100_000i32,
                1 => prop::sample::select(vec![i32::MIN, i32::MAX, -(1 << 20), 1 << 24]),
            ],
            0..700,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn counted_size_is_the_encoded_size(
            levels in level_vec(),
            width in 1usize..40,
            dq in any::<bool>(),
            param_opt in any::<bool>(),
            gpi in 0u8..=1,
            parent in any::<bool>(),
            n in prop::sample::select(vec![0u32, 1, 3, 10, 15]),
            row_skip in any::<bool>(),
            scan_order in prop::sample::select(vec![0u8, 0, 0, 2]),
        ) {
            // DQ levels must be reconstruction indices the trellis could make: any level is
            // one, since the coded level follows from the DQ state.
            let rows = levels.len().div_ceil(width).max(1);
            let mut lv = levels.clone();
            lv.resize(rows * width, 0);
            let cfg = LayerConfig {
                dq_flag: dq,
                general_profile_idc: gpi,
                parent_node_id_present_flag: parent,
                cabac_unary_length: n,
                scan_order,
                ..LayerConfig::new(vec![rows, width])
            };
            let opts = EncodeLayerOptions {
                param_opt,
                row_skip_enabled_flag: row_skip,
                ..Default::default()
            };
            let hist = LayerHistory::default();
            if let Some(counter) = counted_shifts(&cfg, &hist, &opts, &lv, None).unwrap() {
                // Every shift, not only the length the shifts round to.
                let mut enc = ArithEncoder::new();
                encode_layer(&mut enc, &cfg, &hist, &opts, &lv).unwrap();
                prop_assert_eq!(counter.shifts, enc.bit_offset());
                prop_assert_eq!(counter.range, enc.range());
            }
            prop_assert_eq!(
                payload_size(&cfg, &hist, &opts, &lv).unwrap(),
                measured(&cfg, &hist, &opts, &lv)
            );
        }
    }
}

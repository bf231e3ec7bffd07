//! Level encoding of one tensor (reference `initCtxModels` + `encodeLayer` / `encodeLayer2`).

use crate::binarization::{
    ctx_mut, encode_level, encode_nonzero_plain, encode_nonzero_tca, BinSink, Neighbourhood,
    SliceCoder,
};
use crate::context::{ContextLayout, ContextModel, ContextSet};
use crate::ctx_init::CtxInitList;
use crate::dq;
use crate::encoder::ArithEncoder;
use crate::entry_point::EntryMarks;
use crate::layer::{HdspMode, LayerConfig, LayerHistory, Prepared, PLAIN_STRETCH};
use crate::pseudo_pass::pseudo_pass;
use crate::scan::Segment;
use crate::Error;

#[cfg(feature = "rayon")]
mod parallel;

/// Encoder-only choices for one tensor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodeLayerOptions {
    /// Choose context initialisation sets with the pseudo pass (`param_opt_flag`).
    pub param_opt: bool,
    /// `row_skip_enabled_flag`; only effective with general_profile_idc = 1 for tensors with
    /// W > 1 and H > 1 (and not a one-entry codebook).
    pub row_skip_enabled_flag: bool,
    /// `row_skip_flag` per row (length H). `None`: flag every all-zero row, as the reference driver
    /// does. A flagged row must be all zero.
    pub chan_zero: Option<Vec<bool>>,
    /// Reference quirk of `encodeLayer2` (TCA): it passes general_profile_idc in place of
    /// parent_node_id_present_flag, so the HDSP flag is written whenever TCA is used with
    /// gpi = 1. Off (default): the flag follows `parent_node_id_present_flag`, which is what the
    /// decoder reads; the two agree whenever the parent flag is 1.
    pub tca_hdsp_flag_follows_profile: bool,
}

/// `initCtxModels(N, param_opt)` + `encodeLayer` (or `encodeLayer2` when `hist.base_levels` is
/// `Some`): code one tensor's levels (reconstruction indices when `dq_flag`) into `enc`.
///
/// Errors leave `enc` with a partially written tensor; discard it.
pub fn encode_layer(
    enc: &mut ArithEncoder,
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
) -> Result<(), Error> {
    encode_layer_impl(enc, cfg, hist, opts, levels, true).map(|_| ())
}

/// [`encode_layer`], also returning where the tensor's block rows restart (`scan_order > 0`):
/// once the NDU's payload is finished, [`EntryMarks::resolve`] gives the entry points the
/// reference's encoder finds by decoding that payload, without decoding it.
pub fn encode_layer_marking_entry_points(
    enc: &mut ArithEncoder,
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
) -> Result<EntryMarks, Error> {
    encode_layer_impl(enc, cfg, hist, opts, levels, true)
}

/// [`encode_layer`]; `allow_plain = false` codes every tensor through the general level loop
/// (for the test that compares the two).
fn encode_layer_impl(
    enc: &mut ArithEncoder,
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
    allow_plain: bool,
) -> Result<EntryMarks, Error> {
    let p = Prepared::new(cfg, hist, levels.len(), 0)?;
    let row_skip = p.header_present && opts.row_skip_enabled_flag;
    let skip_rows: Vec<bool> = if row_skip {
        row_skip_flags(&p, opts, levels)?
    } else {
        Vec::new()
    };
    let mut e = std::mem::take(enc);
    let r = encode_body(&mut e, &p, opts, levels, &skip_rows, allow_plain);
    *enc = e;
    r
}

fn row_skip_flags(
    p: &Prepared<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
) -> Result<Vec<bool>, Error> {
    let w = p.geo.w;
    let row_zero = |row: usize| {
        levels
            .get(row * w..(row + 1) * w)
            .is_some_and(|r| r.iter().all(|&v| v == 0))
    };
    match &opts.chan_zero {
        None => Ok((0..p.geo.h).map(row_zero).collect()),
        Some(flags) => {
            if flags.len() != p.geo.h {
                return Err(Error::LengthMismatch {
                    what: "chan_zero",
                    expected: p.geo.h,
                    got: flags.len(),
                });
            }
            if let Some(row) = (0..p.geo.h).find(|&r| flags[r] && !row_zero(r)) {
                return Err(Error::SkippedRowNotZero(row));
            }
            Ok(flags.clone())
        }
    }
}

struct EncSink<'e> {
    enc: &'e mut ArithEncoder,
    ctxs: &'e mut [ContextModel],
}

impl BinSink for EncSink<'_> {
    #[inline(always)]
    fn ctx_bin(&mut self, ctx: usize, bin: bool) {
        if let Some(c) = self.ctxs.get_mut(ctx) {
            self.enc.encode_bin(bin, c);
        }
    }
    #[inline(always)]
    fn bypass_bins(&mut self, n: u32, value: u32) {
        self.enc.encode_bypass_bins(n, value);
    }
}

fn encode_body(
    e: &mut ArithEncoder,
    p: &Prepared<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
    skip_rows: &[bool],
    allow_plain: bool,
) -> Result<EntryMarks, Error> {
    let layout = p.layout;
    let mut ctx_set = ContextSet::new(layout.num_gtx_flags());
    let models = ctx_set.models_mut();

    let mut hdsp_flag = false;
    if p.header_present {
        let parent = if opts.tca_hdsp_flag_follows_profile && p.base.is_some() {
            p.gpi1
        } else {
            p.parent
        };
        if parent {
            hdsp_flag = p.hdsp_mode == HdspMode::TensorOn;
            e.encode_bypass(hdsp_flag);
        }
        e.encode_bypass(opts.row_skip_enabled_flag);
        if opts.row_skip_enabled_flag {
            let rs = models
                .get_mut(layout.rs())
                .ok_or(Error::Internal("RS context out of range"))?;
            for &f in skip_rows {
                e.encode_bin(f, rs);
            }
        }
    }

    let inits = ContextInits {
        p,
        levels,
        skip_rows,
        hdsp_flag,
        allow_plain,
        preset: None,
    };
    inits.code(e, models, opts.param_opt)?;

    let mut marks = EntryMarks {
        desyncs: p.geo.scan_order != 0 && !p.geo.has_block_row_restarts(),
        ..EntryMarks::default()
    };
    if p.geo.has_block_row_restarts() {
        e.reset_range();
        marks.start = e.bit_offset();
    }
    // Without TCA, HDSP or codebook bounds the contexts depend only on the previous level, the
    // DQ state and the sign (the decoder's `decode_plain` is the mirror); with TCA or HDSP they
    // follow each position (`decode_per_position`).
    let level_loop = match (
        allow_plain && p.lc.is_unbounded(),
        p.per_position_contexts(hdsp_flag),
    ) {
        (false, _) => LevelLoop::General,
        (true, false) => LevelLoop::Plain,
        (true, true) => LevelLoop::PerPosition,
    };
    let pass = LevelPass {
        p,
        levels,
        skip_rows,
        level_loop,
        hdsp_flag,
    };
    #[cfg(feature = "rayon")]
    if parallel::worthwhile(p) {
        parallel::code_block_rows(e, models, &pass, &mut marks)?;
        return Ok(marks);
    }
    let mut nbh = Neighbourhood::default();
    let mut dq_state = 0u8;
    for seg in p.geo.segments() {
        pass.code_segment(e, models, &seg, &mut nbh, &mut dq_state)?;
        if seg.ends_block_row {
            for m in models.iter_mut() {
                m.reset();
            }
            nbh = Neighbourhood::default();
            e.reset_range();
            marks.marks.push(e.restart_mark(dq_state));
        }
    }
    Ok(marks)
}

/// What the context initialisation of one tensor depends on.
pub(crate) struct ContextInits<'a> {
    pub p: &'a Prepared<'a>,
    pub levels: &'a [i32],
    pub skip_rows: &'a [bool],
    pub hdsp_flag: bool,
    /// The pseudo pass may use the plain level loop.
    pub allow_plain: bool,
    /// The greater-than flags' choices, when the caller already knows them; the pseudo pass
    /// then leaves those contexts out (used only where the param_opt search runs).
    pub preset: Option<&'a FlagChoices>,
}

/// The init sets the greater-than flag contexts (`GTX..GTX + 2N`, in context order) would
/// choose in the param_opt search, known beforehand: the codebook trials find them together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FlagChoices {
    pub chosen: Vec<u8>,
}

impl ContextInits<'_> {
    /// Chooses each context's init set (the param_opt pseudo pass, when `param_opt` applies),
    /// codes the indices (§2.6: always present, all 0 without param_opt) and initialises
    /// `models` with them.
    pub fn code<E: SliceCoder<ContextModel>>(
        &self,
        coder: &mut E,
        models: &mut [ContextModel],
        param_opt: bool,
    ) -> Result<(), Error> {
        let p = self.p;
        let chosen = if param_opt && (p.cbs != 1 || !p.gpi1) {
            let flags =
                ContextLayout::GTX..ContextLayout::GTX + 2 * p.layout.num_gtx_flags() as usize;
            let given = match self.preset {
                Some(preset) if preset.chosen.len() == flags.len() => flags,
                Some(_) => return Err(Error::Internal("flag choices for another layout")),
                None => 0..0,
            };
            let mut chosen = pseudo_pass(
                p,
                self.levels,
                self.skip_rows,
                self.hdsp_flag,
                self.allow_plain,
                given.clone(),
            )?;
            if let Some(preset) = self.preset {
                chosen
                    .get_mut(given)
                    .ok_or(Error::Internal("flag contexts out of range"))?
                    .copy_from_slice(&preset.chosen);
            }
            chosen
        } else {
            Vec::new()
        };
        let list = CtxInitList {
            layout: p.layout,
            dq_flag: p.dq,
            use_tca: p.base.is_some(),
            use_hdsp: self.hdsp_flag,
            cbs: p.cbs,
            cbz: p.cbz,
        };
        let po = p.layout.po();
        let mut bad_index = false;
        list.for_each(|c| {
            let idx = chosen.get(c).copied().unwrap_or(0);
            match models.get_mut(po) {
                Some(po_ctx) => coder.bin(po_ctx, idx != 0),
                None => bad_index = true,
            }
            if idx != 0 {
                coder.bypass_bins(3, u32::from(idx - 1));
            }
            match models.get_mut(c) {
                Some(m) => m.init(idx),
                None => bad_index = true,
            }
        });
        if bad_index {
            return Err(Error::Internal("context index out of range"));
        }
        Ok(())
    }
}

/// [`code_plain`] on the coded levels of `slice`, with or without dependent quantization.
pub(crate) fn code_plain_levels<C, E: SliceCoder<C>>(
    coder: &mut E,
    ctxs: &mut [C],
    layout: &ContextLayout,
    dq: bool,
    slice: &[i32],
    nb: &mut i32,
    dq_state: &mut u8,
) -> Result<(), Error> {
    if dq {
        code_plain::<true, false, _, _>(coder, ctxs, layout, slice, nb, dq_state)
    } else {
        code_plain::<false, false, _, _>(coder, ctxs, layout, slice, nb, dq_state)
    }
}

/// The real pass's level loop over a tensor's segments: the plain loop where it applies, else
/// the general one.
pub(crate) struct LevelPass<'a> {
    pub p: &'a Prepared<'a>,
    pub levels: &'a [i32],
    pub skip_rows: &'a [bool],
    pub level_loop: LevelLoop,
    pub hdsp_flag: bool,
}

/// Which level loop the real pass codes a tensor's levels with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LevelLoop {
    /// Neither TCA, HDSP nor codebook bounds: [`code_plain`].
    Plain,
    /// TCA or HDSP without codebook bounds: [`PerPosition`].
    PerPosition,
    /// Codebook bounds, or the tests' comparisons: [`encode_level`] position by position.
    General,
}

impl LevelPass<'_> {
    /// Whether row skipping flags `seg`'s row.
    pub fn skipped(&self, seg: &Segment) -> bool {
        self.skip_rows.get(seg.row).copied().unwrap_or(false)
    }

    /// Codes one segment's levels, or advances the DQ state past a skipped one.
    pub fn code_segment(
        &self,
        e: &mut ArithEncoder,
        models: &mut [ContextModel],
        seg: &Segment,
        nbh: &mut Neighbourhood,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        let p = self.p;
        let layout = p.layout;
        let slice = self
            .levels
            .get(seg.start..seg.start + seg.len)
            .ok_or(Error::Internal("segment out of range"))?;
        if self.skipped(seg) {
            if p.dq {
                // Reference quirk: a skipped segment advances the DQ state by W, not by its length.
                *dq_state = dq::advance_zeros(*dq_state, p.geo.w);
            }
        } else if self.level_loop == LevelLoop::Plain {
            code_plain_real(e, models, &layout, p.dq, slice, &mut nbh.nb, dq_state)?;
        } else if self.level_loop == LevelLoop::PerPosition {
            let run = PerPosition {
                p,
                hdsp_flag: self.hdsp_flag,
                start: seg.start,
            };
            run.code_into(e, models, slice, &mut nbh.nb, dq_state)?;
        } else {
            let lc = p.lc;
            let mut sink = EncSink {
                enc: e,
                ctxs: models,
            };
            for (i, &q) in slice.iter().enumerate() {
                let pos = seg.start + i;
                if p.gpi1 {
                    nbh.base = p.base_at(pos);
                    nbh.hdsp_here = p.hdsp_at(self.hdsp_flag, pos);
                }
                let k = if p.dq {
                    dq::coded_level(q, *dq_state)
                } else {
                    q
                };
                if !lc.accepts(k) {
                    return Err(Error::LevelNotCodable { pos, level: q });
                }
                encode_level(&mut sink, &layout, nbh, &lc, k, usize::from(*dq_state));
                nbh.nb = k;
                if p.dq {
                    *dq_state = dq::next_state(*dq_state, k);
                }
            }
        }
        Ok(())
    }
}

/// One segment's levels when [`encode_body`]'s `plain` holds, into the arithmetic encoder or,
/// with `RAW`, into the param_opt recorder: same bins, same order as [`encode_level`] in the
/// general loops. `RAW` binarizes the input values as the pseudo pass does (under DQ the
/// reconstruction indices; the DQ state still follows the coded levels), without `RAW` the
/// coded levels. A run of zeros whose sig flag stays in one context (neighbour zero, and the DQ
/// state maps to itself on a zero, which it always does without DQ) goes to the coder as one
/// call.
pub(crate) fn code_plain<const DQ: bool, const RAW: bool, C, E: SliceCoder<C>>(
    coder: &mut E,
    ctxs: &mut [C],
    layout: &ContextLayout,
    slice: &[i32],
    nb: &mut i32,
    dq_state: &mut u8,
) -> Result<(), Error> {
    code_plain_inline::<DQ, RAW, C, E>(coder, ctxs, layout, slice, nb, dq_state)
}

/// The real pass's [`code_plain`] on the engine's registers in locals
/// ([`ArithEncoder::with_local`]): reached through a reference, the loop kept them in
/// registers but stored them back after every bin.
#[inline(never)]
fn code_plain_real(
    e: &mut ArithEncoder,
    models: &mut [ContextModel],
    layout: &ContextLayout,
    dq: bool,
    slice: &[i32],
    nb: &mut i32,
    dq_state: &mut u8,
) -> Result<(), Error> {
    e.with_local(|e| {
        if dq {
            code_plain_inline::<true, false, _, _>(e, models, layout, slice, nb, dq_state)
        } else {
            code_plain_inline::<false, false, _, _>(e, models, layout, slice, nb, dq_state)
        }
    })
}

/// [`code_plain`]'s body.
#[inline(always)]
fn code_plain_inline<const DQ: bool, const RAW: bool, C, E: SliceCoder<C>>(
    coder: &mut E,
    ctxs: &mut [C],
    layout: &ContextLayout,
    slice: &[i32],
    nb: &mut i32,
    dq_state: &mut u8,
) -> Result<(), Error> {
    let mut state = *dq_state;
    let mut prev = *nb;
    let mut i = 0;
    while let Some(&q) = slice.get(i) {
        let nb_class = ContextLayout::nb_class(prev);
        let sig = ctx_mut(ctxs, ContextLayout::sig(usize::from(state), nb_class))?;
        if q == 0 && prev == 0 && (!DQ || dq::next_state(state, 0) == state) {
            let run = slice[i..].iter().take_while(|&&v| v == 0).count();
            coder.zeros(sig, run);
            coder.level_done(ctxs);
            i += run;
            continue;
        }
        let k = if DQ { dq::coded_level(q, state) } else { q };
        let v = if RAW { q } else { k };
        coder.bin(sig, v != 0);
        if v != 0 {
            encode_nonzero_plain(coder, ctxs, layout, nb_class, v)?;
        }
        coder.level_done(ctxs);
        if DQ {
            state = dq::next_state(state, k);
        }
        prev = v;
        i += 1;
    }
    *nb = prev;
    *dq_state = state;
    Ok(())
}

/// The positions of one stretch of a tensor whose contexts follow each position's TCA base
/// level and HDSP flag ([`Prepared::per_position_contexts`]), without codebook bounds.
pub(crate) struct PerPosition<'a> {
    pub p: &'a Prepared<'a>,
    /// The tensor's `hist_dep_sig_prob_enabled_flag`.
    pub hdsp_flag: bool,
    /// Position (row-major index) of the first level given to [`PerPosition::code`].
    pub start: usize,
}

impl PerPosition<'_> {
    /// [`code_plain`] with per-position contexts: the sig flag in the HDSP context where the
    /// history says so, else in the TCA one where the base level is non-zero; the rest of a
    /// level through [`encode_nonzero_tca`] where the base is non-zero, else as in the plain
    /// loop. Same bins, same order as [`encode_level`] in the general loops; `RAW` as there.
    ///
    /// Where most base levels are 0 ([`Prepared::mostly_plain`]: a sparse update), stretches of
    /// at least [`PLAIN_STRETCH`] positions whose base is 0 and whose HDSP flag is not set take
    /// the plain contexts, so they go through [`code_plain`] with its zero runs, as the decoder
    /// does.
    pub fn code<const DQ: bool, const RAW: bool, C, E: SliceCoder<C>>(
        &self,
        coder: &mut E,
        ctxs: &mut [C],
        slice: &[i32],
        nb: &mut i32,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        // Looking for stretches costs a dense update more than it gains.
        if self.p.mostly_plain(self.start, slice.len()) {
            return self.code_stretches::<DQ, RAW, C, E>(coder, ctxs, slice, nb, dq_state);
        }
        self.code_positions::<DQ, RAW, C, E>(coder, ctxs, slice, nb, dq_state)
    }

    /// The real pass's [`PerPosition::code`]. Position by position, the loop runs on the
    /// engine's registers in locals ([`ArithEncoder::with_local`]); the stretches of a sparse
    /// update hand the engine on to the plain loop, so there it stays where it is.
    #[inline(never)]
    pub fn code_into(
        &self,
        e: &mut ArithEncoder,
        models: &mut [ContextModel],
        slice: &[i32],
        nb: &mut i32,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        let dense = !self.p.mostly_plain(self.start, slice.len());
        match (self.p.dq, dense) {
            (true, true) => e.with_local(|e| {
                self.code_positions::<true, false, _, _>(e, models, slice, nb, dq_state)
            }),
            (false, true) => e.with_local(|e| {
                self.code_positions::<false, false, _, _>(e, models, slice, nb, dq_state)
            }),
            (true, false) => {
                self.code_stretches::<true, false, _, _>(e, models, slice, nb, dq_state)
            }
            (false, false) => {
                self.code_stretches::<false, false, _, _>(e, models, slice, nb, dq_state)
            }
        }
    }

    /// [`PerPosition::code`] position by position.
    #[inline(always)]
    fn code_positions<const DQ: bool, const RAW: bool, C, E: SliceCoder<C>>(
        &self,
        coder: &mut E,
        ctxs: &mut [C],
        slice: &[i32],
        nb: &mut i32,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        let mut state = *dq_state;
        let mut prev = *nb;
        for (i, &q) in slice.iter().enumerate() {
            prev = self.code_position::<DQ, RAW, C, E>(
                coder,
                ctxs,
                self.start + i,
                q,
                prev,
                &mut state,
            )?;
        }
        *nb = prev;
        *dq_state = state;
        Ok(())
    }

    /// [`PerPosition::code`] where most base levels are 0: stretches of at least
    /// [`PLAIN_STRETCH`] positions with the plain contexts go through [`code_plain`].
    fn code_stretches<const DQ: bool, const RAW: bool, C, E: SliceCoder<C>>(
        &self,
        coder: &mut E,
        ctxs: &mut [C],
        slice: &[i32],
        nb: &mut i32,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        let layout = self.p.layout;
        let mut state = *dq_state;
        let mut prev = *nb;
        let mut i = 0;
        // Positions before this one were looked at for a stretch (each is scanned at most once).
        let mut scanned = 0;
        while let Some(&q) = slice.get(i) {
            let pos = self.start + i;
            if i >= scanned {
                let plain = self.p.plain_positions(self.hdsp_flag, pos, slice.len() - i);
                if plain >= PLAIN_STRETCH {
                    let part = slice
                        .get(i..i + plain)
                        .ok_or(Error::Internal("stretch out of range"))?;
                    code_plain::<DQ, RAW, C, E>(coder, ctxs, &layout, part, &mut prev, &mut state)?;
                    i += plain;
                    continue;
                }
                scanned = i + plain.max(1);
            }
            prev = self.code_position::<DQ, RAW, C, E>(coder, ctxs, pos, q, prev, &mut state)?;
            i += 1;
        }
        *nb = prev;
        *dq_state = state;
        Ok(())
    }

    /// The level `q` at position `pos` in the contexts of its TCA base and HDSP flag, after a
    /// level `prev` in DQ state `state` (advanced): returns what the next position sees as its
    /// neighbour.
    #[inline(always)]
    fn code_position<const DQ: bool, const RAW: bool, C, E: SliceCoder<C>>(
        &self,
        coder: &mut E,
        ctxs: &mut [C],
        pos: usize,
        q: i32,
        prev: i32,
        state: &mut u8,
    ) -> Result<i32, Error> {
        let p = self.p;
        let layout = p.layout;
        let here = Neighbourhood {
            nb: prev,
            base: p.base_at(pos),
            hdsp_here: p.hdsp_at(self.hdsp_flag, pos),
        };
        let (base, nb_class) = (here.base, ContextLayout::nb_class(prev));
        let k = if DQ { dq::coded_level(q, *state) } else { q };
        let v = if RAW { q } else { k };
        coder.bin(
            ctx_mut(ctxs, here.sig_ctx_by_selects(usize::from(*state)))?,
            v != 0,
        );
        if v != 0 {
            if base == 0 {
                encode_nonzero_plain(coder, ctxs, &layout, nb_class, v)?;
            } else {
                encode_nonzero_tca(coder, ctxs, &layout, base, v)?;
            }
        }
        coder.level_done(ctxs);
        if DQ {
            *state = dq::next_state(*state, k);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Levels with runs of zeros, small and large magnitudes of both signs (SplitMix64).
    fn levels(len: usize, seed: u64) -> Vec<i32> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let r = next();
            match r % 8 {
                0 | 1 => out.extend(std::iter::repeat_n(0, (r >> 8) as usize % 40)),
                2 => out.push(((r >> 8) % 2_000_001) as i32 - 1_000_000),
                7 if r >> 60 == 0 => out.push(i32::MAX - ((r >> 8) % 3) as i32),
                _ => out.push(((r >> 8) % 15) as i32 - 7),
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn plain_loop_writes_the_general_loops_bytes() {
        for (seed, dq, n, row_skip, param_opt, scan_order, gpi) in [
            (1, false, 10, false, false, 0, 0),
            (2, true, 10, true, true, 0, 1),
            (3, true, 0, false, true, 2, 1),
            (4, false, 1, true, false, 1, 1),
            (5, true, 3, false, false, 0, 0),
            (6, false, 12, true, true, 3, 1),
            // N of 255 and more: the flags' codes no longer fit a byte, the prefix's still do.
            (7, true, 255, false, true, 0, 1),
            (8, false, 256, true, true, 0, 1),
        ] {
            let dims = vec![48, 40];
            let mut lv = levels(48 * 40, seed);
            // Some all-zero rows for row skipping.
            for row in [3, 4, 20] {
                lv[row * 40..(row + 1) * 40].fill(0);
            }
            let cfg = LayerConfig {
                dq_flag: dq,
                scan_order,
                general_profile_idc: gpi,
                cabac_unary_length: n,
                ..LayerConfig::new(dims)
            };
            let opts = EncodeLayerOptions {
                param_opt,
                row_skip_enabled_flag: row_skip,
                ..EncodeLayerOptions::default()
            };
            let hist = LayerHistory::default();
            let mut plain = ArithEncoder::new();
            encode_layer_impl(&mut plain, &cfg, &hist, &opts, &lv, true).unwrap();
            let mut general = ArithEncoder::new();
            encode_layer_impl(&mut general, &cfg, &hist, &opts, &lv, false).unwrap();
            assert_eq!(plain.finish(), general.finish(), "seed {seed}");
        }
    }

    /// With TCA base levels (zero and non-zero, small and large) and an HDSP history, the
    /// per-position loops write the general loops' bytes, and the decoder reads the levels back
    /// (under DQ, once they fit the states' parities): DQ or not, param_opt on or off, scan
    /// orders with block rows, N from 1 to 11, row skipping. Sparse updates too, whose zero
    /// bases come in stretches long and short, broken by HDSP flags here and there.
    #[test]
    fn per_position_loops_write_the_general_loops_bytes() {
        use crate::decode_layer::decode_layer;
        use crate::decoder::ArithDecoder;
        for (seed, dq, param_opt, scan_order, n, hdsp, row_skip, sparse) in [
            (21, true, true, 0, 11, false, true, false),
            (22, false, true, 0, 11, true, false, false),
            (23, true, false, 1, 3, true, true, false),
            (24, true, true, 2, 2, false, false, false),
            (25, false, false, 0, 1, true, true, false),
            (26, true, true, 3, 1, true, false, false),
            (27, true, true, 0, 11, false, true, true),
            (28, true, false, 0, 3, true, true, true),
            (29, false, true, 1, 11, true, false, true),
            (30, true, true, 2, 2, false, true, true),
        ] {
            let mut lv = levels(48 * 40, seed);
            for row in [3, 4, 20] {
                lv[row * 40..(row + 1) * 40].fill(0);
            }
            let mut base = levels(48 * 40, seed + 100);
            // Bases as large as the flags reach, and rows where the base is all zero.
            for (i, b) in base.iter_mut().enumerate() {
                if i % 7 == 0 {
                    *b = (*b).saturating_mul(3);
                }
            }
            base[40..120].fill(0);
            let mut hist_mask: Vec<i8> = (0..48 * 40).map(|i| i8::from(i % 5 < 2)).collect();
            if sparse {
                hist_mask = crate::layer::make_sparse_update(&mut base, &mut lv, seed as usize);
            }
            let cfg = LayerConfig {
                dq_flag: dq,
                scan_order,
                general_profile_idc: 1,
                parent_node_id_present_flag: true,
                cabac_unary_length: n,
                ..LayerConfig::new(vec![48, 40])
            };
            let hist = LayerHistory {
                base_levels: Some(&base),
                hdsp_mode: if hdsp {
                    HdspMode::TensorOn
                } else {
                    HdspMode::TensorOff
                },
                hdsp_hist: hdsp.then_some(&hist_mask[..]),
            };
            let opts = EncodeLayerOptions {
                param_opt,
                row_skip_enabled_flag: row_skip,
                ..EncodeLayerOptions::default()
            };
            let both = |lv: &[i32]| {
                let mut fast = ArithEncoder::new();
                encode_layer_impl(&mut fast, &cfg, &hist, &opts, lv, true).unwrap();
                let mut general = ArithEncoder::new();
                encode_layer_impl(&mut general, &cfg, &hist, &opts, lv, false).unwrap();
                let bytes = fast.finish();
                assert_eq!(bytes, general.finish(), "seed {seed}");
                let mut out = vec![0; lv.len()];
                let mut dec = ArithDecoder::new(&bytes);
                decode_layer(&mut dec, &cfg, &hist, &mut out).unwrap();
                out
            };
            let out = both(&lv);
            if dq {
                // Random reconstruction indices need not fit the DQ states' parities; the
                // decoded ones do, and come back as they are.
                assert_eq!(both(&out), out, "seed {seed}");
            } else {
                assert_eq!(out, lv, "seed {seed}");
            }
        }
    }

    /// Bytes of the reference's `deepCABAC.Encoder` after `initCtxModels(0, param_opt)` and
    /// `encodeLayer(levels, 0, 0, 0, 0, 0, ...)`: the trial encodes of the codebook zero-offset
    /// search with `cabac_unary_length_minus1 = 0` (quirks.md, "N = 0").
    #[test]
    fn n_0_trial_encodes_match_the_reference() {
        let cases: [(&[i32], bool, &[u8]); 4] = [
            (&[1], false, &[0x92, 0x2f]),
            (&[0, 0, 0, 0], true, &[0x93, 0x33]),
            (
                &[2, -3, 0, 7, 0, 0, 1, -1, 12, 0, -40, 3],
                true,
                &[0x90, 0x8d, 0x2e, 0x38, 0x3a, 0x05, 0x0b, 0x81, 0x31],
            ),
            (
                &[5; 8],
                true,
                &[0xb8, 0x71, 0xc0, 0x00, 0x00, 0x00, 0x01, 0xb1],
            ),
        ];
        for (levels, param_opt, want) in cases {
            // Profile 0, no DQ, row-major, no codebook, as the driver calls it; N = 0.
            let cfg = LayerConfig {
                cabac_unary_length: 0,
                ..LayerConfig::new(vec![levels.len()])
            };
            let opts = EncodeLayerOptions {
                param_opt,
                ..Default::default()
            };
            let mut enc = ArithEncoder::new();
            encode_layer(&mut enc, &cfg, &LayerHistory::default(), &opts, levels).unwrap();
            assert_eq!(enc.finish(), want, "{levels:?}, param_opt {param_opt}");
        }
    }

    #[test]
    fn i32_min_is_coded_as_magnitude_2_pow_31_and_decodes_back() {
        // The reference's quantizer makes −2^31 levels and its decoder returns them; both level
        // loops code them, and the decoder reads them back.
        let lv = vec![0, 3, -2, 0, i32::MIN, 5, i32::MAX, -7];
        for plain in [true, false] {
            let cfg = LayerConfig::new(vec![2, 4]);
            let mut enc = ArithEncoder::new();
            encode_layer_impl(
                &mut enc,
                &cfg,
                &LayerHistory::default(),
                &EncodeLayerOptions::default(),
                &lv,
                plain,
            )
            .unwrap();
            let bytes = enc.finish();
            let mut out = vec![0; lv.len()];
            let mut dec = crate::ArithDecoder::new(&bytes);
            crate::decode_layer(&mut dec, &cfg, &LayerHistory::default(), &mut out).unwrap();
            assert_eq!(out, lv, "plain loop {plain}");
        }
    }
}

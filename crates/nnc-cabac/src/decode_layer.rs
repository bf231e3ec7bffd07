//! Level decoding of one tensor (reference `decodeLayer`, `decodeLayerAndCreateEPs`).

use crate::binarization::{
    ctx_mut, decode_level_as, decode_nonzero_bounded, decode_nonzero_plain, decode_nonzero_tca,
    LevelCoding, Neighbourhood,
};
use crate::context::{ContextLayout, ContextModel, ContextSet};
use crate::ctx_init::CtxInitList;
use crate::decoder::{ArithDecoder, ZeroRun};
use crate::dq;
use crate::entry_point::EntryPoint;
use crate::layer::{
    DecodedLayerInfo, HdspMode, LayerConfig, LayerHistory, Prepared, PLAIN_STRETCH,
};
use crate::scan::Segment;
use crate::Error;

/// `initCtxModels(N)` + `decodeLayer`: decode one tensor's levels into `out` (length = product of
/// `cfg.dims`), in reconstruction units (DQ reconstruction indices when `dq_flag`).
///
/// Decodes sequentially, performing the same range and context resets at block rows as the encoder,
/// so entry points are not needed. Every element of `out` is written (row-skipped positions get 0).
/// On error `out` and the decoder state are unspecified.
pub fn decode_layer(
    dec: &mut ArithDecoder<'_>,
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    out: &mut [i32],
) -> Result<DecodedLayerInfo, Error> {
    let p = Prepared::new(cfg, hist, out.len(), 1)?;
    let (mut info, mut ctx_set) = decode_header(dec, &p)?;
    if p.geo.has_block_row_restarts() {
        dec.reset_range();
        info.num_block_rows = p.geo.num_block_rows;
    }
    decode_levels(dec, &p, &info, ctx_set.models_mut(), out, None)?;
    Ok(info)
}

/// Like [`decode_layer`], but also returns the entry points as the reference's
/// `decodeLayerAndCreateEPs` does: one packed `(delta_bit_offset << 11) | (val8 << 3) | dq_state`
/// per block-row boundary, the first delta relative to the start of block row 0.
///
/// Reference quirk: this decoder sets range = 256 at the start of every tensor with
/// `scan_order > 0`, even one with a single block row, where the encoder does not. Such a tensor
/// then decodes out of sync (wrong levels, wrong entry points for later tensors of the NDU, or an
/// error), exactly as in the reference; it is only used to derive header entry points.
pub fn decode_layer_and_create_entry_points(
    dec: &mut ArithDecoder<'_>,
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    out: &mut [i32],
) -> Result<(DecodedLayerInfo, Vec<u64>), Error> {
    let p = Prepared::new(cfg, hist, out.len(), 1)?;
    let (mut info, mut ctx_set) = decode_header(dec, &p)?;
    let mut eps = Vec::new();
    let mut start = 0;
    if p.geo.scan_order != 0 {
        dec.reset_range();
        start = dec.bit_offset();
    }
    if p.geo.has_block_row_restarts() {
        info.num_block_rows = p.geo.num_block_rows;
    }
    decode_levels(
        dec,
        &p,
        &info,
        ctx_set.models_mut(),
        out,
        Some((&mut eps, start)),
    )?;
    Ok((info, eps))
}

/// `setEntryPoints` + `decodeLayer`: decode one tensor restarting every block row from the entry
/// points signalled in the NDU header (packed as returned by
/// [`decode_layer_and_create_entry_points`], deltas relative to the previous block row).
///
/// Block rows are then independent; with `max_threads > 1` they are decoded on up to that many
/// scoped threads. Afterwards `dec` continues from the end of the last block row, as in the
/// reference. For tensors without block-row restarts (row-major scan or a single block row)
/// `entry_points` must be empty and this equals [`decode_layer`]; otherwise it must hold exactly
/// `num_block_rows − 1` entries.
///
/// Every block row but the last must end exactly where the next entry point starts (bit offset,
/// offset register, DQ state), or this fails with [`Error::EntryPointMismatch`]; so whenever it
/// succeeds, `out` and `dec` are what [`decode_layer`] gives. Entry points that do not match the
/// stream give an error, never a panic or other levels.
pub fn decode_layer_with_entry_points<'a>(
    dec: &mut ArithDecoder<'a>,
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    entry_points: &[u64],
    out: &mut [i32],
    max_threads: usize,
) -> Result<DecodedLayerInfo, Error> {
    let p = Prepared::new(cfg, hist, out.len(), 1)?;
    let expected = p.geo.num_block_rows.saturating_sub(1);
    if !p.geo.has_block_row_restarts() {
        if !entry_points.is_empty() {
            return Err(Error::EntryPointCount {
                expected: 0,
                got: entry_points.len(),
            });
        }
        return decode_layer(dec, cfg, hist, out);
    }
    if entry_points.len() != expected {
        return Err(Error::EntryPointCount {
            expected,
            got: entry_points.len(),
        });
    }
    let (mut info, mut ctx_set) = decode_header(dec, &p)?;
    info.num_block_rows = p.geo.num_block_rows;
    ctx_set.reset_all();

    // Absolute restart points: block row 0 starts right here, the others at the signalled deltas.
    let mut starts = Vec::with_capacity(entry_points.len() + 1);
    dec.reset_range();
    starts.push(dec.capture_entry_point(0));
    for &packed in entry_points {
        let mut ep = EntryPoint::unpack(packed);
        let prev = starts.last().map_or(0, |e: &EntryPoint| e.bit_offset);
        ep.bit_offset = ep.bit_offset.saturating_add(prev);
        starts.push(ep);
    }

    let rows_per_block = p.geo.block;
    let chunk = rows_per_block.saturating_mul(p.geo.w).max(1);
    let jobs: Vec<(usize, &mut [i32])> = out.chunks_mut(chunk).enumerate().collect();
    let threads = max_threads.clamp(1, jobs.len().max(1));
    let template = ctx_set.models();
    let run = |(br, part): (usize, &mut [i32]),
               base: &ArithDecoder<'a>|
     -> Result<ArithDecoder<'a>, Error> {
        let start = starts
            .get(br)
            .ok_or(Error::Internal("block row without entry point"))?;
        decode_block_row(
            base,
            start,
            starts.get(br + 1),
            template,
            &p,
            &info,
            br,
            br * chunk,
            part,
        )
    };

    let last = jobs.len().saturating_sub(1);
    let mut end_state = None;
    if threads <= 1 {
        for job in jobs {
            let br = job.0;
            let d = run(job, dec)?;
            if br == last {
                end_state = Some(d);
            }
        }
    } else {
        let base = dec.clone();
        let mut groups: Vec<Vec<(usize, &mut [i32])>> = (0..threads).map(|_| Vec::new()).collect();
        for (i, job) in jobs.into_iter().enumerate() {
            groups[i % threads].push(job);
        }
        let results: Vec<Result<Option<ArithDecoder<'a>>, Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|group| {
                    let base = &base;
                    let run = &run;
                    s.spawn(move || {
                        let mut end = None;
                        for job in group {
                            let br = job.0;
                            let d = run(job, base)?;
                            if br == last {
                                end = Some(d);
                            }
                        }
                        Ok(end)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or(Err(Error::Internal("decoder thread panicked")))
                })
                .collect()
        });
        for r in results {
            if let Some(d) = r? {
                end_state = Some(d);
            }
        }
    }
    *dec = end_state.ok_or(Error::Internal("no block rows decoded"))?;
    Ok(info)
}

/// Decode block row `br` from its restart point into `part` (rows of the block row, starting at
/// row-major position `offset`) and return the engine state at its end. `next_start`, the next
/// block row's restart point, must be where this one ends.
#[allow(clippy::too_many_arguments)]
fn decode_block_row<'a>(
    base: &ArithDecoder<'a>,
    start: &EntryPoint,
    next_start: Option<&EntryPoint>,
    template: &[ContextModel],
    p: &Prepared<'_>,
    info: &DecodedLayerInfo,
    br: usize,
    offset: usize,
    part: &mut [i32],
) -> Result<ArithDecoder<'a>, Error> {
    let mut d = base.clone();
    d.seek_entry_point(start);
    let mut models = template.to_vec();
    let segs = p.geo.block_row_segments(br);
    let dq_state = decode_segments(
        &mut d,
        p,
        info,
        &mut models,
        part,
        offset,
        segs,
        start.dq_state,
        None,
    )?;
    if let Some(next) = next_start {
        // Where the sequential decoder would restart the next block row.
        d.reset_range();
        if d.capture_entry_point(dq_state) != *next {
            return Err(Error::EntryPointMismatch { block_row: br + 1 });
        }
    }
    Ok(d)
}

/// Tensor header bins (§3.2) and the context-initialisation indices (§2.6).
fn decode_header(
    d: &mut ArithDecoder<'_>,
    p: &Prepared<'_>,
) -> Result<(DecodedLayerInfo, ContextSet), Error> {
    let layout = p.layout;
    let mut ctx_set = ContextSet::new(layout.num_gtx_flags());
    let mut info = DecodedLayerInfo::default();
    if p.header_present {
        if p.parent {
            info.hist_dep_sig_prob_enabled_flag = d.decode_bypass();
            // The encoder sets the flag only when coding against a history was shorter, so
            // decoding without one would misread the tensor.
            if info.hist_dep_sig_prob_enabled_flag && p.hdsp_mode != HdspMode::TensorOn {
                return Err(Error::HdspNotAvailable);
            }
        }
        info.row_skip_enabled_flag = d.decode_bypass();
        if info.row_skip_enabled_flag {
            let rs = ctx_mut(ctx_set.models_mut(), layout.rs())?;
            info.row_skip_flags = (0..p.geo.h).map(|_| d.decode_bin(rs)).collect();
        }
    }
    decode_init_indices(
        d,
        ctx_set.models_mut(),
        p,
        info.hist_dep_sig_prob_enabled_flag,
    )?;
    Ok((info, ctx_set))
}

/// The level loop over the whole tensor with block-row resets; with `eps`, capture the entry points
/// (deltas from the given start offset).
fn decode_levels(
    d: &mut ArithDecoder<'_>,
    p: &Prepared<'_>,
    info: &DecodedLayerInfo,
    models: &mut [ContextModel],
    out: &mut [i32],
    eps: Option<(&mut Vec<u64>, u64)>,
) -> Result<(), Error> {
    decode_segments(d, p, info, models, out, 0, p.geo.segments(), 0, eps).map(|_| ())
}

/// Decode the positions of `segments` into `out` (which starts at row-major position `offset`);
/// returns the DQ state after them.
#[allow(clippy::too_many_arguments)]
fn decode_segments(
    d: &mut ArithDecoder<'_>,
    p: &Prepared<'_>,
    info: &DecodedLayerInfo,
    models: &mut [ContextModel],
    out: &mut [i32],
    offset: usize,
    segments: impl Iterator<Item = Segment>,
    mut dq_state: u8,
    mut eps: Option<(&mut Vec<u64>, u64)>,
) -> Result<u8, Error> {
    let layout = p.layout;
    let lc = p.lc;
    let skip_active = p.header_present && info.row_skip_enabled_flag;
    let hdsp_flag = info.hist_dep_sig_prob_enabled_flag;
    // Per-position TCA/HDSP lookups are only needed with gpi = 1 and either tool in use.
    let extra = p.per_position_contexts(hdsp_flag);
    // Codebook bounds only matter when present; otherwise their checks are compiled out.
    let bounded = !lc.is_unbounded();
    let mut nbh = Neighbourhood::default();

    for seg in segments {
        let local = seg.start.wrapping_sub(offset);
        let slice = out
            .get_mut(local..local.saturating_add(seg.len))
            .ok_or(Error::Internal("segment out of range"))?;
        if skip_active && info.row_skip_flags.get(seg.row).copied().unwrap_or(false) {
            slice.fill(0);
            if p.dq {
                // Reference quirk: a skipped segment advances the DQ state by W, not by its length.
                dq_state = dq::advance_zeros(dq_state, p.geo.w);
            }
        } else {
            // In chunks, so a payload that ran out stops the loop early instead of decoding
            // up to 2^28 positions from the zero bytes past its end.
            for (c, chunk) in slice.chunks_mut(EXHAUSTION_CHECK_INTERVAL).enumerate() {
                let run = Run {
                    layout: &layout,
                    lc: &lc,
                    p,
                    hdsp_flag,
                    start: seg.start + c * EXHAUSTION_CHECK_INTERVAL,
                };
                macro_rules! variants {
                    ($(($dq:literal, $extra:literal, $bounded:literal))*) => {
                        match (p.dq, extra, bounded) {
                            $(($dq, $extra, $bounded) => run.decode::<$dq, $extra, $bounded>(
                                d, models, chunk, &mut nbh, &mut dq_state,
                            )?,)*
                        }
                    };
                }
                variants!((false, false, false)(true, false, false)(
                    false, true, false
                )(true, true, false)(false, false, true)(
                    true, false, true
                )(false, true, true)(true, true, true));
                check_not_exhausted(d)?;
            }
        }
        if seg.ends_block_row {
            for m in models.iter_mut() {
                m.reset();
            }
            nbh = Neighbourhood::default();
            d.reset_range();
            if let Some((list, last)) = eps.as_mut() {
                let mut ep = d.capture_entry_point(dq_state);
                let abs = ep.bit_offset;
                ep.bit_offset = abs.wrapping_sub(*last);
                *last = abs;
                list.push(ep.pack());
            }
        }
    }
    Ok(dq_state)
}

/// Writes the zeros of `run` into `slice` from position `*i` and moves `*i` and `*state` past
/// them. Returns whether the run stopped on a 1 bin (at the new `*i`); a run that did not must
/// have reached the end of `slice` (otherwise its contexts ran out).
#[inline(always)]
fn take_zero_run(
    slice: &mut [i32],
    i: &mut usize,
    state: &mut u8,
    run: ZeroRun,
) -> Result<bool, Error> {
    if let Some(zeros) = slice.get_mut(*i..*i + run.zeros) {
        zeros.fill(0);
    }
    *i += run.zeros;
    *state = run.state;
    if !run.one && *i != slice.len() {
        return Err(Error::Internal("sig contexts out of range"));
    }
    Ok(run.one)
}

/// Writes level `k`'s output to `o`, under DQ its reconstruction index in DQ state `*state`,
/// which then moves on past `k`.
#[inline(always)]
fn put_level<const DQ: bool>(o: &mut i32, k: i32, state: &mut u8) -> Result<(), Error> {
    if DQ {
        *o = dq::reconstruction_index(k, *state).ok_or(Error::LevelOverflow)?;
        *state = dq::next_state(*state, k);
    } else {
        *o = k;
    }
    Ok(())
}

/// Positions decoded between two checks for an exhausted payload.
const EXHAUSTION_CHECK_INTERVAL: usize = 4096;

/// Bytes the decoder may read past the payload end before a level loop gives up. A valid payload
/// is never over-read at all (the byte count only grows and must end equal to the payload
/// length); the slack keeps this check clear of the callers' own end-of-payload checks.
const MAX_OVER_READ: usize = 64;

#[inline]
fn check_not_exhausted(d: &ArithDecoder<'_>) -> Result<(), Error> {
    let over_read = d.over_read();
    if over_read > MAX_OVER_READ {
        return Err(Error::PayloadExhausted { over_read });
    }
    Ok(())
}

/// One row segment of coded positions.
struct Run<'r, 'h> {
    layout: &'r ContextLayout,
    lc: &'r LevelCoding,
    p: &'r Prepared<'h>,
    hdsp_flag: bool,
    start: usize,
}

impl Run<'_, '_> {
    /// Decode the positions of `slice`; `DQ` = dependent quantization, `EXTRA` = per-position
    /// TCA base / HDSP lookups, `BOUNDED` = codebook bounds on the levels.
    #[inline(always)]
    fn decode<const DQ: bool, const EXTRA: bool, const BOUNDED: bool>(
        &self,
        d: &mut ArithDecoder<'_>,
        models: &mut [ContextModel],
        slice: &mut [i32],
        nbh: &mut Neighbourhood,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        // The loops run on a local copy of the engine: one reached through `d` has its state
        // stored back after every bin, a local one stays in registers (3–4 % of a decode).
        let mut local = d.clone();
        let r = self.decode_with::<DQ, EXTRA, BOUNDED>(&mut local, models, slice, nbh, dq_state);
        *d = local;
        r
    }

    #[inline(always)]
    fn decode_with<const DQ: bool, const EXTRA: bool, const BOUNDED: bool>(
        &self,
        d: &mut ArithDecoder<'_>,
        models: &mut [ContextModel],
        slice: &mut [i32],
        nbh: &mut Neighbourhood,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        if !EXTRA && !BOUNDED {
            return self.decode_plain::<DQ, false>(d, models, slice, nbh, dq_state);
        }
        if !EXTRA && !DQ && !self.lc.nothing_coded {
            return self.decode_plain::<false, true>(d, models, slice, nbh, dq_state);
        }
        if EXTRA && !BOUNDED {
            return self.decode_per_position::<DQ>(d, models, slice, nbh, dq_state);
        }
        let mut state = *dq_state;
        for (i, o) in slice.iter_mut().enumerate() {
            if EXTRA {
                let pos = self.start + i;
                nbh.base = self.p.base_at(pos);
                nbh.hdsp_here = self.p.hdsp_at(self.hdsp_flag, pos);
            }
            let k =
                decode_level_as::<BOUNDED>(d, models, self.layout, nbh, self.lc, state as usize)?;
            nbh.nb = k;
            put_level::<DQ>(o, k, &mut state)?;
        }
        *dq_state = state;
        Ok(())
    }

    /// [`Run::decode`] with TCA or HDSP and without codebook bounds: the contexts of each
    /// position follow its TCA base level and HDSP flag, and the rest of a level goes through the
    /// unary loops ([`decode_nonzero_plain`] where the base is 0, [`decode_nonzero_tca`] where
    /// it is not). Without HDSP positions every zero run goes through
    /// [`Run::decode_tca_runs`]. With them, where most bases are 0, stretches of at least
    /// [`PLAIN_STRETCH`] positions whose base is 0 and whose HDSP flag is not set take the plain
    /// contexts, so they go through [`Run::decode_plain`] (with its zero runs). Same bins, same
    /// context states, same order as the general loop.
    #[inline(always)]
    fn decode_per_position<const DQ: bool>(
        &self,
        d: &mut ArithDecoder<'_>,
        models: &mut [ContextModel],
        slice: &mut [i32],
        nbh: &mut Neighbourhood,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        if let Some(bases) = self.p.bases_alone(self.hdsp_flag, self.start, slice.len()) {
            return self.decode_tca_runs::<DQ>(d, models, slice, bases, nbh, dq_state);
        }
        // Looking for stretches costs a dense update more than it gains.
        if self.p.mostly_plain(self.start, slice.len()) {
            return self.decode_stretches::<DQ>(d, models, slice, nbh, dq_state);
        }
        let mut state = *dq_state;
        let mut nb = nbh.nb;
        for (i, o) in slice.iter_mut().enumerate() {
            let k = self.decode_position::<DQ>(d, models, self.start + i, nb, &mut state, o)?;
            nb = k;
        }
        nbh.nb = nb;
        *dq_state = state;
        Ok(())
    }

    /// [`Run::decode_per_position`] where the TCA base levels `bases` (one per position of
    /// `slice`) alone choose the contexts: every run of zeros after a zero level goes through
    /// [`ArithDecoder::decode_tca_zero_run`], whatever the bases under it; a position after a
    /// non-zero level through [`Run::decode_position`]. Same bins, same context states, same
    /// order as the general loop.
    #[inline(always)]
    fn decode_tca_runs<const DQ: bool>(
        &self,
        d: &mut ArithDecoder<'_>,
        models: &mut [ContextModel],
        slice: &mut [i32],
        bases: &[i32],
        nbh: &mut Neighbourhood,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        let mut state = *dq_state;
        let mut nb = nbh.nb;
        let mut i = 0;
        while i < slice.len() {
            if nb != 0 {
                let o = slice
                    .get_mut(i)
                    .ok_or(Error::Internal("position out of range"))?;
                nb = self.decode_position::<DQ>(d, models, self.start + i, nb, &mut state, o)?;
                i += 1;
                continue;
            }
            let run = d.decode_tca_zero_run(models, state, bases.get(i..).unwrap_or_default());
            if !take_zero_run(slice, &mut i, &mut state, run)? {
                break;
            }
            // The sig flag of position i was 1; its neighbour was 0.
            let base = bases.get(i).copied().unwrap_or(0);
            let k = self.decode_nonzero_at(d, models, base, 0)?;
            let o = slice
                .get_mut(i)
                .ok_or(Error::Internal("position out of range"))?;
            put_level::<DQ>(o, k, &mut state)?;
            nb = k;
            i += 1;
        }
        nbh.nb = nb;
        *dq_state = state;
        Ok(())
    }

    /// [`Run::decode_per_position`] where most base levels are 0: stretches of at least
    /// [`PLAIN_STRETCH`] positions with the plain contexts go through [`Run::decode_plain`].
    #[inline(always)]
    fn decode_stretches<const DQ: bool>(
        &self,
        d: &mut ArithDecoder<'_>,
        models: &mut [ContextModel],
        slice: &mut [i32],
        nbh: &mut Neighbourhood,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        let mut state = *dq_state;
        let mut nb = nbh.nb;
        let mut i = 0;
        // Positions before this one were looked at for a stretch (each is scanned at most once).
        let mut scanned = 0;
        while i < slice.len() {
            let pos = self.start + i;
            if i >= scanned {
                let left = slice.len() - i;
                let plain = self.p.plain_positions(self.hdsp_flag, pos, left);
                if plain >= PLAIN_STRETCH {
                    let part = slice
                        .get_mut(i..i + plain)
                        .ok_or(Error::Internal("stretch out of range"))?;
                    nbh.nb = nb;
                    *dq_state = state;
                    let (after, r) =
                        self.decode_plain_stretch::<DQ>(d.clone(), models, part, nbh, dq_state);
                    *d = after;
                    r?;
                    (nb, state) = (nbh.nb, *dq_state);
                    i += plain;
                    continue;
                }
                scanned = i + plain.max(1);
            }
            let o = slice
                .get_mut(i)
                .ok_or(Error::Internal("position out of range"))?;
            nb = self.decode_position::<DQ>(d, models, pos, nb, &mut state, o)?;
            i += 1;
        }
        nbh.nb = nb;
        *dq_state = state;
        Ok(())
    }

    /// The level at position `pos` in the contexts of its TCA base and HDSP flag, after a level
    /// `nb` in DQ state `state` (advanced): writes its output (under DQ the reconstruction
    /// index) to `o` and returns the level.
    #[inline(always)]
    fn decode_position<const DQ: bool>(
        &self,
        d: &mut ArithDecoder<'_>,
        models: &mut [ContextModel],
        pos: usize,
        nb: i32,
        state: &mut u8,
        o: &mut i32,
    ) -> Result<i32, Error> {
        let here = Neighbourhood {
            nb,
            base: self.p.base_at(pos),
            hdsp_here: self.p.hdsp_at(self.hdsp_flag, pos),
        };
        let (base, nb_class) = (here.base, ContextLayout::nb_class(nb));
        let ctx = ctx_mut(models, here.sig_ctx(usize::from(*state)))?;
        let k = if d.decode_decision(ctx) {
            ctx.update(true);
            self.decode_nonzero_at(d, models, base, nb_class)?
        } else {
            ctx.update(false);
            0
        };
        put_level::<DQ>(o, k, state)?;
        Ok(k)
    }

    /// The rest of a non-zero level at a per-position position, after its sig flag: in the TCA
    /// contexts of its base level, or where the base is 0 in the plain ones of its neighbour
    /// class.
    #[inline(always)]
    fn decode_nonzero_at(
        &self,
        d: &mut ArithDecoder<'_>,
        models: &mut [ContextModel],
        base: i32,
        nb_class: usize,
    ) -> Result<i32, Error> {
        if base == 0 {
            decode_nonzero_plain(d, models, self.layout, nb_class)
        } else {
            decode_nonzero_tca(d, models, self.layout, base)
        }
    }

    /// [`Run::decode_plain`] on a stretch of a per-position run, out of line so that the
    /// per-position loop keeps its registers. The engine goes in and comes back by value: a
    /// reference to the caller's copy would make it live in memory for the whole loop.
    #[inline(never)]
    fn decode_plain_stretch<'p, const DQ: bool>(
        &self,
        mut d: ArithDecoder<'p>,
        models: &mut [ContextModel],
        slice: &mut [i32],
        nbh: &mut Neighbourhood,
        dq_state: &mut u8,
    ) -> (ArithDecoder<'p>, Result<(), Error>) {
        let r = self.decode_plain::<DQ, false>(&mut d, models, slice, nbh, dq_state);
        (d, r)
    }

    /// [`Run::decode`] without TCA or HDSP: the contexts depend only on the previous level, the
    /// DQ state and the sign.
    ///
    /// Runs of zeros are decoded with their sig-flag context held in a local. After a zero the
    /// neighbour class is 0, and when the DQ state maps to itself on a zero (always without DQ),
    /// every following sig flag of the run uses that same context: each bin would otherwise wait
    /// for the previous bin's context update to reach memory and come back. In the other DQ
    /// states a zero run visits a different context at each position, and goes through
    /// [`ArithDecoder::decode_dq_zero_run`] (the assembly loop on x86-64). Same bins, same
    /// context states, same order.
    ///
    /// With `BOUNDED`, under the codebook bounds of `lc` (never with DQ here, and not for a
    /// one-entry codebook, which codes no bins): the sig flags are those of the unbounded loop,
    /// the rest of a level comes from [`decode_nonzero_bounded`]. Otherwise without bounds.
    #[inline(always)]
    fn decode_plain<const DQ: bool, const BOUNDED: bool>(
        &self,
        d: &mut ArithDecoder<'_>,
        models: &mut [ContextModel],
        slice: &mut [i32],
        nbh: &mut Neighbourhood,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        let mut state = *dq_state;
        let mut nb = nbh.nb;
        let mut i = 0;
        while i < slice.len() {
            let nb_class = ContextLayout::nb_class(nb);
            let sig = ContextLayout::sig(usize::from(state), nb_class);
            if nb == 0 && (!DQ || dq::next_state(state, 0) == state) {
                let stored = ctx_mut(models, sig)?;
                let mut local = *stored;
                let mut nonzero = false;
                while let Some(o) = slice.get_mut(i) {
                    // The state after another zero is prepared while the bin is decoded, so
                    // the next bin does not wait for this one's context update.
                    let mut after_zero = local;
                    after_zero.update(false);
                    if d.decode_decision(&local) {
                        local.update(true);
                        nonzero = true;
                        break;
                    }
                    local = after_zero;
                    *o = 0;
                    i += 1;
                }
                *stored = local;
                if !nonzero {
                    break;
                }
            } else if DQ && nb == 0 {
                // A zero run in a state a zero moves on: the context changes at every position.
                let run = d.decode_dq_zero_run(models, state, slice.len() - i);
                if !take_zero_run(slice, &mut i, &mut state, run)? {
                    break;
                }
            } else {
                // The update on each side of the branch, with a constant bin.
                let ctx = ctx_mut(models, sig)?;
                if !d.decode_decision(ctx) {
                    ctx.update(false);
                    if let Some(o) = slice.get_mut(i) {
                        *o = 0;
                    }
                    if DQ {
                        state = dq::next_state(state, 0);
                    }
                    nb = 0;
                    i += 1;
                    continue;
                }
                ctx.update(true);
            }
            // The sig flag of position i was 1.
            let k = if BOUNDED {
                decode_nonzero_bounded(d, models, self.layout, nb_class, self.lc)?
            } else {
                decode_nonzero_plain(d, models, self.layout, nb_class)?
            };
            let value = if DQ {
                dq::reconstruction_index(k, state).ok_or(Error::LevelOverflow)?
            } else {
                k
            };
            if let Some(o) = slice.get_mut(i) {
                *o = value;
            }
            if DQ {
                state = dq::next_state(state, k);
            }
            nb = k;
            i += 1;
        }
        nbh.nb = nb;
        *dq_state = state;
        Ok(())
    }
}

/// Parse the context-initialisation indices (§2.6) and apply them.
fn decode_init_indices(
    d: &mut ArithDecoder<'_>,
    models: &mut [ContextModel],
    p: &Prepared<'_>,
    use_hdsp: bool,
) -> Result<(), Error> {
    let list = CtxInitList {
        layout: p.layout,
        dq_flag: p.dq,
        use_tca: p.base.is_some(),
        use_hdsp,
        cbs: p.cbs,
        cbz: p.cbz,
    };
    let po = p.layout.po();
    let mut result = Ok(());
    list.for_each(|c| {
        if result.is_err() {
            return;
        }
        let Some(po_ctx) = models.get_mut(po) else {
            result = Err(Error::Internal("PO context out of range"));
            return;
        };
        let idx = if d.decode_bin(po_ctx) {
            1 + d.decode_bypass_bins(3) as u8
        } else {
            0
        };
        match models.get_mut(c) {
            Some(m) => m.init(idx),
            None => result = Err(Error::Internal("context index out of range")),
        }
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a tensor far larger than its payload used to be decoded to the end from the
    /// zero bytes past the payload (minutes for 2^28 positions); now the loop stops early.
    #[test]
    fn exhausted_payload_stops_early() {
        let payload = [0x00, 0x00, 0x00, 0x00];
        let cfg = LayerConfig::new(vec![1 << 24]);
        let mut out = vec![0i32; 1 << 24];
        let mut dec = ArithDecoder::new(&payload);
        let r = decode_layer(&mut dec, &cfg, &LayerHistory::default(), &mut out);
        match r {
            Err(Error::PayloadExhausted { over_read }) => assert!(over_read > MAX_OVER_READ),
            other => panic!("expected PayloadExhausted, got {other:?}"),
        }
        // Stopped within one check interval of running out (≈ 1000 bins per byte at most).
        assert!(dec.over_read() <= MAX_OVER_READ + 1 + EXHAUSTION_CHECK_INTERVAL / 100);
    }

    /// A payload that is exactly consumed never trips the check.
    #[test]
    fn exact_payload_is_not_exhausted() {
        let cfg = LayerConfig {
            cabac_unary_length: 10,
            ..LayerConfig::new(vec![2, 4])
        };
        let payload = [0x8d, 0x00, 0x48, 0x54, 0xef, 0x7d, 0x98]; // KAT-B
        let mut out = [0i32; 8];
        let mut dec = ArithDecoder::new(&payload);
        decode_layer(&mut dec, &cfg, &LayerHistory::default(), &mut out).expect("decodes");
        assert_eq!(out, [0, 1, -1, 2, 0, 0, 3, -5]);
    }
}

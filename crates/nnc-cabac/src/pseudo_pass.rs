//! The param_opt pseudo pass (deepcabac.md §6.1): binarize the tensor once more, recording each
//! context's bins for the init-set search, before the real pass.
//!
//! On more than one thread a large tensor is cut into consecutive stretches that record at the
//! same time: the DQ state and the neighbour at each cut come from a quick scan of the values,
//! and the search replays the stretches in order, so it chooses what one pass would.

use std::ops::Range;

use crate::binarization::{encode_level, LevelCoding, Neighbourhood, SliceCoder};
use crate::dq;
use crate::encode_layer::{code_plain, PerPosition};
use crate::layer::Prepared;
use crate::param_opt::{InitSetSearch, Trace};
use crate::scan::{Segment, Segments};
use crate::Error;

/// Below this many coded positions the pass records on one thread.
const MIN_POSITIONS: usize = if cfg!(test) { 64 } else { 1 << 17 };
/// At most this many positions per stretch: with one stretch per thread recorded at a time,
/// this bounds the bits held before a replay (about 20 bins a value at most in practice).
const MAX_POSITIONS: usize = if cfg!(test) { 300 } else { 1 << 20 };

/// The param_opt pseudo pass: the chosen init set of every context.
///
/// Reference quirk: it binarizes the raw input values (reconstruction indices under DQ) without
/// codebook bounds, uses them as neighbours, and does not reset the neighbour at block rows; only
/// the shadow estimators are reset there. The DQ state still follows the coded levels.
///
/// The greater-than flag contexts `flags_given` (all of them, or none) are left out of the
/// search and choose set 0, for a caller that knows their choices.
pub(crate) fn pseudo_pass(
    p: &Prepared<'_>,
    levels: &[i32],
    skip_rows: &[bool],
    hdsp_flag: bool,
    allow_plain: bool,
    flags_given: Range<usize>,
) -> Result<Vec<u8>, Error> {
    let threads = crate::threads::worker_threads();
    search(
        p,
        levels,
        skip_rows,
        hdsp_flag,
        allow_plain,
        threads,
        flags_given,
    )
    .map(InitSetSearch::best_indices)
}

/// The search after the pseudo pass, recorded in stretches on up to `threads` threads when the
/// plain level loop applies.
fn search(
    p: &Prepared<'_>,
    levels: &[i32],
    skip_rows: &[bool],
    hdsp_flag: bool,
    allow_plain: bool,
    threads: usize,
    flags_given: Range<usize>,
) -> Result<InitSetSearch, Error> {
    let mut shadows = InitSetSearch::new(p.layout.len(), true);
    shadows.flags_given(flags_given);
    if allow_plain {
        let per_position = p.per_position_contexts(hdsp_flag).then_some(hdsp_flag);
        let pass = PlainPass::plan(p, levels, skip_rows, per_position, threads)?;
        pass.record(&mut shadows)?;
    } else {
        general_pass(&mut shadows, p, levels, skip_rows, hdsp_flag)?;
    }
    Ok(shadows)
}

/// The pass through the general level loop, on one thread (for the tests that compare it with
/// the others).
fn general_pass(
    shadows: &mut InitSetSearch,
    p: &Prepared<'_>,
    levels: &[i32],
    skip_rows: &[bool],
    hdsp_flag: bool,
) -> Result<(), Error> {
    let layout = p.layout;
    let lc = LevelCoding::unbounded(layout.num_gtx_flags());
    let mut nbh = Neighbourhood::default();
    let mut dq_state = 0u8;
    for seg in p.geo.segments() {
        if skipped(skip_rows, &seg) {
            if p.dq {
                dq_state = dq::advance_zeros(dq_state, p.geo.w);
            }
        } else {
            let slice = levels
                .get(seg.start..seg.start + seg.len)
                .ok_or(Error::Internal("segment out of range"))?;
            for (i, &q) in slice.iter().enumerate() {
                let pos = seg.start + i;
                if p.gpi1 {
                    nbh.base = p.base_at(pos);
                    nbh.hdsp_here = p.hdsp_at(hdsp_flag, pos);
                }
                encode_level(shadows, &layout, &nbh, &lc, q, dq_state as usize);
                nbh.nb = q;
                if p.dq {
                    dq_state = dq::next_state(dq_state, dq::coded_level(q, dq_state));
                }
            }
        }
        if seg.ends_block_row {
            shadows.reset_states();
        }
    }
    Ok(())
}

/// Row skipping flags this segment's row (`skip_rows` is empty without row skipping).
fn skipped(skip_rows: &[bool], seg: &Segment) -> bool {
    skip_rows.get(seg.row).copied().unwrap_or(false)
}

/// A stretch of the pass: `count` segments from `segs` on, the first from position `from`, the
/// last up to position `last_to`, and the neighbour and DQ state it starts with. Segments are
/// not stored (a block scan has one per eight positions), only the scan's state where the
/// stretch starts.
#[derive(Clone, Debug)]
struct Stretch {
    segs: Segments,
    count: usize,
    from: usize,
    last_to: usize,
    nb: i32,
    dq_state: u8,
}

impl Stretch {
    /// A stretch with no segments yet, starting at position `from` of the next segment of
    /// `segs`, with neighbour `nb` and DQ state `dq_state`.
    fn starting_at(segs: Segments, from: usize, nb: i32, dq_state: u8) -> Self {
        Self {
            segs,
            count: 0,
            from,
            last_to: 0,
            nb,
            dq_state,
        }
    }
}

/// The pass through the plain level loop (or, with TCA or HDSP, its per-position form), cut
/// into stretches.
struct PlainPass<'a> {
    p: &'a Prepared<'a>,
    levels: &'a [i32],
    skip_rows: &'a [bool],
    /// `Some(hist_dep_sig_prob_enabled_flag)` when the contexts follow each position's TCA
    /// base level and HDSP flag ([`PerPosition`]).
    per_position: Option<bool>,
    stretches: Vec<Stretch>,
    /// Stretches recorded at a time (read only with rayon).
    #[cfg_attr(not(feature = "rayon"), allow(dead_code))]
    threads: usize,
}

impl<'a> PlainPass<'a> {
    /// Cut the pass into stretches of equal position counts: one when a thread should do it
    /// all, else `threads` of them or more (at most [`MAX_POSITIONS`] each). A skipped row
    /// goes with the stretch before it.
    fn plan(
        p: &'a Prepared<'a>,
        levels: &'a [i32],
        skip_rows: &'a [bool],
        per_position: Option<bool>,
        threads: usize,
    ) -> Result<Self, Error> {
        let work: usize = p
            .geo
            .segments()
            .filter(|s| !skipped(skip_rows, s))
            .map(|s| s.len)
            .sum();
        let threads = if work < MIN_POSITIONS {
            1
        } else {
            threads.max(1)
        };
        let per = if threads == 1 {
            work
        } else {
            work.div_ceil(threads).min(MAX_POSITIONS)
        };
        let mut segs = p.geo.segments();
        let mut stretches = Vec::new();
        let mut current = Stretch::starting_at(segs.clone(), 0, 0, 0);
        let mut filled = 0;
        let (mut nb, mut state) = (0i32, 0u8);
        loop {
            let here = segs.clone();
            let Some(seg) = segs.next() else { break };
            if skipped(skip_rows, &seg) {
                current.count += 1;
                current.last_to = seg.len;
                if p.dq {
                    state = dq::advance_zeros(state, p.geo.w);
                }
                continue;
            }
            let mut from = 0;
            loop {
                if filled == per && from < seg.len {
                    let next = Stretch::starting_at(here.clone(), from, nb, state);
                    stretches.push(std::mem::replace(&mut current, next));
                    filled = 0;
                }
                let to = (from + per - filled).min(seg.len);
                current.count += 1;
                current.last_to = to;
                // Where the next stretch starts (not needed when there is only one).
                if threads > 1 {
                    let values = levels
                        .get(seg.start + from..seg.start + to)
                        .ok_or(Error::Internal("segment out of range"))?;
                    if p.dq {
                        state = dq::advance_over(state, values);
                    }
                    if let Some(&last) = values.last() {
                        nb = last;
                    }
                }
                filled += to - from;
                from = to;
                if from >= seg.len {
                    break;
                }
            }
        }
        stretches.push(current);
        Ok(Self {
            p,
            levels,
            skip_rows,
            per_position,
            stretches,
            threads,
        })
    }

    /// Record every stretch into `search`: in order on this thread, or `threads` stretches at a
    /// time, each group replayed before the next is recorded.
    fn record(&self, search: &mut InitSetSearch) -> Result<(), Error> {
        #[cfg(feature = "rayon")]
        if self.threads > 1 {
            for group in self.stretches.chunks(self.threads) {
                search.record_stretches(group.len(), |k, rec, traces| {
                    let stretch = group
                        .get(k)
                        .ok_or(Error::Internal("stretch out of range"))?;
                    self.record_one(stretch, rec, traces)
                })?;
            }
            return Ok(());
        }
        let (rec, traces) = search.parts();
        for stretch in &self.stretches {
            self.record_one(stretch, rec, traces)?;
        }
        Ok(())
    }

    fn record_one<R: SliceCoder<Trace>>(
        &self,
        stretch: &Stretch,
        rec: &mut R,
        traces: &mut [Trace],
    ) -> Result<(), Error> {
        let p = self.p;
        let layout = p.layout;
        let (mut nb, mut state) = (stretch.nb, stretch.dq_state);
        let mut segs = stretch.segs.clone();
        for i in 0..stretch.count {
            let seg = segs.next().ok_or(Error::Internal("segment out of range"))?;
            let from = if i == 0 { stretch.from } else { 0 };
            let to = if i + 1 == stretch.count {
                stretch.last_to
            } else {
                seg.len
            };
            if skipped(self.skip_rows, &seg) {
                if p.dq {
                    state = dq::advance_zeros(state, p.geo.w);
                }
            } else {
                let start = seg.start + from;
                let slice = self
                    .levels
                    .get(start..seg.start + to)
                    .ok_or(Error::Internal("segment out of range"))?;
                let (nb, state) = (&mut nb, &mut state);
                match self.per_position {
                    Some(hdsp_flag) => {
                        let run = PerPosition {
                            p,
                            hdsp_flag,
                            start,
                        };
                        if p.dq {
                            run.code::<true, true, _, _>(rec, traces, slice, nb, state)?;
                        } else {
                            run.code::<false, true, _, _>(rec, traces, slice, nb, state)?;
                        }
                    }
                    None if p.dq => {
                        code_plain::<true, true, _, _>(rec, traces, &layout, slice, nb, state)?;
                    }
                    None => {
                        code_plain::<false, true, _, _>(rec, traces, &layout, slice, nb, state)?;
                    }
                }
            }
            if to == seg.len && seg.ends_block_row {
                rec.settle(traces);
                for t in traces.iter_mut() {
                    t.reset();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{LayerConfig, LayerHistory};

    /// Levels with zero runs (some whole rows), small and large values of both signs.
    fn levels(len: usize, w: usize, seed: u64) -> Vec<i32> {
        let mut state = seed;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out: Vec<i32> = (0..len)
            .map(|_| match next() % 10 {
                0..=3 => 0,
                4 => (next() % 20_001) as i32 - 10_000,
                _ => (next() % 9) as i32 - 4,
            })
            .collect();
        for row in [1, 2, 7] {
            if let Some(r) = out.get_mut(row * w..(row + 1) * w) {
                r.fill(0);
            }
        }
        out
    }

    /// Row skipping's flags for `lv` as `h` rows of `w` (every all-zero row), or none.
    fn all_zero_rows(lv: &[i32], h: usize, w: usize, row_skip: bool) -> Vec<bool> {
        if !row_skip {
            return Vec::new();
        }
        (0..h)
            .map(|r| lv[r * w..(r + 1) * w].iter().all(|&v| v == 0))
            .collect()
    }

    /// Recording in stretches on several threads accumulates the same costs in every context
    /// as one pass: DQ or not, skipped rows, block-row resets (scan orders 1–3), stretches cut
    /// inside rows and rows longer than a stretch.
    #[test]
    fn stretches_accumulate_the_costs_of_one_pass() {
        for (seed, dq, scan_order, h, w, row_skip) in [
            (1, true, 0, 40, 37, true),
            (2, false, 0, 40, 37, false),
            (3, true, 1, 48, 40, true),
            (4, true, 3, 70, 24, false),
            (5, false, 2, 33, 64, true),
            (6, true, 0, 2, 900, false),
        ] {
            let lv = levels(h * w, w, seed);
            let cfg = LayerConfig {
                dq_flag: dq,
                scan_order,
                general_profile_idc: 1,
                ..LayerConfig::new(vec![h, w])
            };
            let hist = LayerHistory::default();
            let p = Prepared::new(&cfg, &hist, lv.len(), 0).unwrap();
            let skip = all_zero_rows(&lv, h, w, row_skip);
            let one = search(&p, &lv, &skip, false, true, 1, 0..0)
                .unwrap()
                .accumulated_costs();
            for threads in [2, 3, 7] {
                let pass = PlainPass::plan(&p, &lv, &skip, None, threads).unwrap();
                assert!(
                    pass.stretches.len() >= threads,
                    "seed {seed}: too few stretches"
                );
                let many = search(&p, &lv, &skip, false, true, threads, 0..0).unwrap();
                assert_eq!(
                    many.accumulated_costs(),
                    one,
                    "seed {seed}, {threads} threads"
                );
            }
        }
    }

    /// With TCA base levels and an HDSP history, the per-position pass accumulates the general
    /// pass's costs in every context, on one thread and in stretches on several.
    #[test]
    fn per_position_stretches_accumulate_the_general_pass_costs() {
        use crate::layer::HdspMode;
        for (seed, dq, scan_order, h, w, row_skip, hdsp, sparse) in [
            (11, true, 0, 40, 37, true, false, false),
            (12, false, 0, 40, 37, false, true, false),
            (13, true, 1, 48, 40, true, true, false),
            (14, true, 3, 70, 24, false, false, false),
            (15, false, 2, 33, 64, true, true, false),
            (16, true, 0, 40, 37, true, false, true),
            (17, false, 0, 48, 40, false, true, true),
            (18, true, 2, 33, 64, true, true, true),
        ] {
            let mut lv = levels(h * w, w, seed);
            let mut base = levels(h * w, w, seed + 50);
            base.iter_mut()
                .step_by(5)
                .for_each(|b| *b = b.saturating_mul(4));
            let mut mask: Vec<i8> = (0..h * w).map(|i| i8::from(i % 3 == 0)).collect();
            if sparse {
                mask = crate::layer::make_sparse_update(&mut base, &mut lv, seed as usize);
            }
            let cfg = LayerConfig {
                dq_flag: dq,
                scan_order,
                general_profile_idc: 1,
                parent_node_id_present_flag: true,
                ..LayerConfig::new(vec![h, w])
            };
            let hist = LayerHistory {
                base_levels: Some(&base),
                hdsp_mode: if hdsp {
                    HdspMode::TensorOn
                } else {
                    HdspMode::TensorOff
                },
                hdsp_hist: hdsp.then_some(&mask[..]),
            };
            let p = Prepared::new(&cfg, &hist, lv.len(), 0).unwrap();
            assert!(p.per_position_contexts(hdsp));
            let skip = all_zero_rows(&lv, h, w, row_skip);
            let general = search(&p, &lv, &skip, hdsp, false, 1, 0..0)
                .unwrap()
                .accumulated_costs();
            for threads in [1, 2, 5] {
                let fast = search(&p, &lv, &skip, hdsp, true, threads, 0..0).unwrap();
                assert_eq!(
                    fast.accumulated_costs(),
                    general,
                    "seed {seed}, {threads} threads"
                );
            }
        }
    }
}

//! The trials' lanes: every trial's start set out in them ([`count_group`]), and the walk over
//! the levels, written once over the operations it needs ([`TrialOps`]): [`super::avx512`] and
//! [`super::avx2`] supply those and call [`count_shifts`] from their `#[target_feature]` entry
//! points, into which it is inlined.
//!
//! Every lane runs [`crate::payload_size()`]'s counter on its own levels: the same bins in the
//! same order, with its own range and its own copy of every context. Lanes code different
//! contexts only where their levels' classes differ (the neighbour class of the sig and sign
//! flags, the sign of the greater-than flags), so a step takes two or three candidate contexts
//! and a mask per candidate, and a lane that codes no bin in a step (the greater-than flags and
//! remainder bins beyond its level, or a lane past the group's last trial) sits it out.

use std::ops::Range;

use super::shared_flags::SharedFlagChoices;
use super::{shifted, trials_line_up};
use crate::binarization::MAX_PREFIX_BINS;
use crate::context::ContextLayout;
use crate::encode_layer::EncodeLayerOptions;
use crate::layer::{LayerConfig, LayerHistory};
use crate::payload_size::CountStart;
use crate::tables::INIT_SETS;
use crate::Error;

/// A group of at most [`super::OFFSETS_PER_GROUP`] consecutive offsets' trials to count in lanes,
/// with the group's shared flag choices if found.
pub(super) struct Trials<'a> {
    pub cfg: &'a LayerConfig,
    pub opts: &'a EncodeLayerOptions,
    pub indices: &'a [i32],
    pub group: Range<u32>,
    pub shared: Option<&'a SharedFlagChoices>,
}

impl Trials<'_> {
    /// The first offset and the number of trials.
    pub fn span(&self) -> (u32, usize) {
        (self.group.start, self.group.len())
    }
}

/// Every context's state, lane by lane, for `V` vectors of `W` lanes: `p[c][v][l]` is context
/// `c`'s P in the lane of trial `W·v + l`.
pub(super) struct Lanes<const W: usize, const V: usize> {
    pub p: Vec<[[i32; W]; V]>,
    pub s0: Vec<[[i32; W]; V]>,
    pub shift0: Vec<[[i32; W]; V]>,
    pub shift1: Vec<[[i32; W]; V]>,
}

/// Every trial's start (each after its own param_opt search, the shared flag choices given)
/// set out in lanes of `V` vectors of `W`; then `count` gives each lane's shifts over the
/// levels, from the lanes, their ranges and the context layout. Returns each trial's shifts
/// before its terminating bin.
pub(super) fn count_group<const W: usize, const V: usize>(
    trials: &Trials<'_>,
    count: impl FnOnce(&mut Lanes<W, V>, [[i32; W]; V], &ContextLayout) -> [[u64; W]; V],
) -> Result<Option<Vec<u64>>, Error> {
    let Trials {
        cfg,
        opts,
        indices,
        ref group,
        shared,
    } = *trials;
    if !trials_line_up(cfg) || !(1..=W * V).contains(&group.len()) {
        return Ok(None);
    }
    // Each lane's start, with its own param_opt search: most of the work left once the lanes
    // count together, so on several threads when there are.
    let start = |offset: u32| {
        let preset = shared.map(|s| s.preset(offset - group.start));
        CountStart::new(
            cfg,
            &LayerHistory::default(),
            opts,
            &shifted(indices, offset),
            preset.as_ref(),
        )
    };
    #[cfg(feature = "rayon")]
    let starts: Vec<Option<CountStart>> = if crate::threads::worker_threads() > 1 {
        use rayon::prelude::*;
        group
            .clone()
            .into_par_iter()
            .map(start)
            .collect::<Result<_, _>>()?
    } else {
        group.clone().map(start).collect::<Result<_, _>>()?
    };
    #[cfg(not(feature = "rayon"))]
    let starts: Vec<Option<CountStart>> = group.clone().map(start).collect::<Result<_, _>>()?;
    let Some(starts) = starts.into_iter().collect::<Option<Vec<CountStart>>>() else {
        return Ok(None);
    };
    let layout = starts[0].layout;
    let n = layout.num_gtx_flags() as usize;
    let len = starts[0].contexts.models().len();
    if n == 0 || layout.rem() + MAX_PREFIX_BINS > len || ContextLayout::GTX + 2 * n > len {
        return Err(Error::Internal("context layout too small for the trials"));
    }

    // Lanes past the group's end code nothing, so their states stay as they are.
    let empty = [[0; W]; V];
    let mut lanes = Lanes {
        p: vec![empty; len],
        s0: vec![empty; len],
        shift0: vec![empty; len],
        shift1: vec![empty; len],
    };
    let mut range = empty;
    for (t, start) in starts.iter().enumerate() {
        let (v, l) = (t / W, t % W);
        for (c, m) in start.contexts.models().iter().enumerate() {
            let set = INIT_SETS[usize::from(m.init_idx()) % INIT_SETS.len()];
            lanes.p[c][v][l] = i32::from(m.p());
            lanes.s0[c][v][l] = i32::from(m.s0());
            lanes.shift0[c][v][l] = i32::from(set.shift0);
            lanes.shift1[c][v][l] = i32::from(set.shift1);
        }
        range[v][l] = start.engine().0 as i32;
    }
    let counted = count(&mut lanes, range, &layout);
    Ok(Some(
        starts
            .iter()
            .zip(counted.as_flattened())
            .map(|(start, shifts)| start.engine().1 + shifts)
            .collect(),
    ))
}

/// Values between two flushes of the lanes' 32-bit shift counts into 64-bit totals: a value
/// shifts at most 7 times in each of its 2 + N + 31 context-coded bins plus 31 times for its
/// suffix, which for N ≤ 256 keeps 4096 values under 2^31 shifts.
const FLUSH_VALUES: usize = 4096;

/// Operations on a vector of `W` 32-bit lanes, one trial each, and on sets of its lanes.
pub(super) trait TrialOps<const W: usize>: Copy {
    /// A vector of lanes.
    type V: Copy;
    /// A set of lanes.
    type M: Copy;
    /// One vector's engine: its lanes' ranges and their shifts since the last flush.
    type Engine;

    fn splat(self, x: i32) -> Self::V;
    fn vector(self, a: [i32; W]) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    /// `|a|` of each lane, `i32::MIN` as 2^31 (unsigned).
    fn abs(self, a: Self::V) -> Self::V;
    /// `⌊log2 r⌋` of each lane where `1 ≤ r < 2^31` (the others are the caller's to mask).
    fn floor_log2(self, r: Self::V) -> Self::V;

    /// The first `count` lanes.
    fn first_lanes(self, count: usize) -> Self::M;
    fn all(self) -> Self::M;
    /// The lanes of `a` that are zero, negative, positive.
    fn classes(self, a: Self::V) -> [Self::M; 3];
    fn nonzero(self, a: Self::V) -> Self::M;
    fn negative(self, a: Self::V) -> Self::M;
    /// The lanes whose unsigned `a` exceeds `t`.
    fn above(self, a: Self::V, t: usize) -> Self::M;
    /// The lanes where `a > b`, signed.
    fn greater(self, a: Self::V, b: Self::V) -> Self::M;
    fn and(self, a: Self::M, b: Self::M) -> Self::M;
    fn or(self, a: Self::M, b: Self::M) -> Self::M;
    fn not(self, a: Self::M) -> Self::M;
    fn none(self, a: Self::M) -> bool;

    /// An engine at the ranges `range`, no shifts yet.
    fn engine(self, range: &[i32; W]) -> Self::Engine;
    /// Adds `v` to the shifts of the lanes in `m` (the remainder's bypass suffix).
    fn add_shifts(self, eng: &mut Self::Engine, m: Self::M, v: Self::V);
    /// Each lane's shifts since the last flush, which start again from 0.
    fn take_shifts(self, eng: &mut Self::Engine) -> [u32; W];
    /// One bin in every `active` lane of vector `v`: lane `l` codes its lane of `bin` in the
    /// context `ctxs[k]` whose `sel[k]` holds it (the `sel` masks part the lanes), moving its
    /// range and shifts as [`crate::encoder::RangeStep`] and adapting that context as §2.3.
    #[allow(clippy::too_many_arguments)]
    fn step<const K: usize, const N: usize>(
        self,
        lanes: &mut Lanes<W, N>,
        v: usize,
        eng: &mut Self::Engine,
        ctxs: [usize; K],
        sel: [Self::M; K],
        active: Self::M,
        bin: Self::M,
    );
}

/// Every lane's shifts over the levels `indices[i] − (first + W·v + l)`, in index order (a
/// counted tensor is scanned row-major in one block row), for the first `trials` lanes (the
/// others count nothing).
///
/// The `N` vectors step together, bin for bin, so that their range chains overlap.
#[inline(always)]
pub(super) fn count_shifts<O: TrialOps<W>, const W: usize, const N: usize>(
    ops: O,
    lanes: &mut Lanes<W, N>,
    range: [[i32; W]; N],
    indices: &[i32],
    (first, trials): (u32, usize),
    layout: &ContextLayout,
) -> [[u64; W]; N] {
    let n = layout.num_gtx_flags() as usize;
    let rem = layout.rem();
    let zero = ops.splat(0);
    let any = |m: [O::M; N]| {
        m.into_iter()
            .reduce(|a, b| ops.or(a, b))
            .is_some_and(|m| !ops.none(m))
    };
    // Lanes past the last trial code nothing: their levels would add steps of their own.
    let live: [O::M; N] = std::array::from_fn(|v| ops.first_lanes(trials.saturating_sub(v * W)));
    let lane_offsets: [O::V; N] =
        std::array::from_fn(|v| ops.vector(std::array::from_fn(|l| (v * W + l) as i32)));
    let mut engines: [O::Engine; N] = std::array::from_fn(|v| ops.engine(&range[v]));
    let mut totals = [[0u64; W]; N];
    let flush = |engines: &mut [O::Engine; N], totals: &mut [[u64; W]; N]| {
        for (eng, total) in engines.iter_mut().zip(totals.iter_mut()) {
            for (t, s) in total.iter_mut().zip(ops.take_shifts(eng)) {
                *t += u64::from(s);
            }
        }
    };
    let sig = [
        ContextLayout::sig(0, 0),
        ContextLayout::sig(0, 1),
        ContextLayout::sig(0, 2),
    ];
    let sign = [
        ContextLayout::sign(0),
        ContextLayout::sign(1),
        ContextLayout::sign(2),
    ];
    let mut prev = [zero; N];
    let mut since_flush = 0;
    for &x in indices {
        let base = ops.splat(x.wrapping_sub(first as i32));
        let level: [O::V; N] = std::array::from_fn(|v| ops.sub(base, lane_offsets[v]));
        // Neighbour classes of the previous level: zero, negative, positive.
        let classes: [[O::M; 3]; N] = std::array::from_fn(|v| ops.classes(prev[v]));
        let nonzero: [O::M; N] = std::array::from_fn(|v| ops.and(live[v], ops.nonzero(level[v])));
        for (v, eng) in engines.iter_mut().enumerate() {
            ops.step(lanes, v, eng, sig, classes[v], live[v], nonzero[v]);
        }
        if any(nonzero) {
            let negative: [O::M; N] = std::array::from_fn(|v| ops.negative(level[v]));
            for (v, eng) in engines.iter_mut().enumerate() {
                ops.step(lanes, v, eng, sign, classes[v], nonzero[v], negative[v]);
            }
            let abs: [O::V; N] = std::array::from_fn(|v| ops.abs(level[v]));
            for j in 0..n {
                let coded: [O::M; N] =
                    std::array::from_fn(|v| ops.and(nonzero[v], ops.above(abs[v], j)));
                if !any(coded) {
                    break;
                }
                let gtx = ContextLayout::GTX + 2 * j;
                for (v, eng) in engines.iter_mut().enumerate() {
                    let neg = negative[v];
                    let one = ops.above(abs[v], j + 1);
                    ops.step(
                        lanes,
                        v,
                        eng,
                        [gtx, gtx + 1],
                        [ops.not(neg), neg],
                        coded[v],
                        one,
                    );
                }
            }
            let remainder: [O::M; N] =
                std::array::from_fn(|v| ops.and(nonzero[v], ops.above(abs[v], n)));
            if any(remainder) {
                // The Exp-Golomb prefix has ⌊log2(r + 1)⌋ ones, r = |level| − N − 1,
                // then a zero unless it is full; as many suffix bins follow, bypass.
                let ones: [O::V; N] =
                    std::array::from_fn(|v| ops.floor_log2(ops.sub(abs[v], ops.splat(n as i32))));
                for k in 0..MAX_PREFIX_BINS {
                    let kv = ops.splat(k as i32);
                    // k ≤ ones
                    let coded: [O::M; N] = std::array::from_fn(|v| {
                        ops.and(remainder[v], ops.not(ops.greater(kv, ones[v])))
                    });
                    if !any(coded) {
                        break;
                    }
                    for (v, eng) in engines.iter_mut().enumerate() {
                        let one = ops.greater(ones[v], kv);
                        ops.step(lanes, v, eng, [rem + k], [ops.all()], coded[v], one);
                    }
                }
                for (v, eng) in engines.iter_mut().enumerate() {
                    ops.add_shifts(eng, remainder[v], ones[v]);
                }
            }
        }
        prev = level;
        since_flush += 1;
        if since_flush == FLUSH_VALUES {
            flush(&mut engines, &mut totals);
            since_flush = 0;
        }
    }
    flush(&mut engines, &mut totals);
    totals
}

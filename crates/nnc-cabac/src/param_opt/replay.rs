//! Record-then-replay form of the param_opt search: same choices as [`super::ShadowContexts`].

use std::ops::Range;

use super::deferred::DeferredFlags;
use super::{best_of, INITIAL, ROWS};
use crate::binarization::{gtx_flags_one_by_one, prefix_bins_one_by_one, BinSink, SliceCoder};
use crate::context::{est_row, update_state};
use crate::tables::{est_bits_columns, INIT_SETS, NUM_INIT_SETS, S0_NEXT, S1_STEP};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Recorded bins are replayed once this many are pending, which bounds the recorder's memory
/// (2 MiB of bits) whatever the tensor size.
/// (Small under test, so the tests cross chunk boundaries.)
const CHUNK_BINS: usize = if cfg!(test) { 4096 } else { 1 << 24 };

/// Below this many pending bins a replay runs on the calling thread only.
#[cfg(feature = "rayon")]
const PARALLEL_MIN_BINS: usize = if cfg!(test) { 1024 } else { 1 << 16 };

/// Pairs `(member, leader)` of sets with the same shifts. A member whose S0 (or S1) equals its
/// leader's stays equal to it while they see the same bins, since each half-estimator moves by
/// its own value, its own shift and the bin only (§2.3); S0 and S1 are tracked separately.
/// Sets 7 and 8 share shift0 too, but set 8's S0 never leaves 8..=30 while set 7's stays 0.
const S0_PAIRS: [(usize, usize); 4] = [(1, 0), (2, 0), (5, 4), (6, 4)];
/// As [`S0_PAIRS`] for S1: the four above, and sets 7 and 8 (shift1 5) with set 3.
/// Sets 3 and 7 start from the same S1 (0), so theirs is always shared.
const S1_PAIRS: [(usize, usize); 6] = [(1, 0), (2, 0), (5, 4), (6, 4), (8, 3), (7, 3)];

const _: () = {
    let mut k = 0;
    while k < S0_PAIRS.len() {
        let (m, l) = S0_PAIRS[k];
        assert!(INIT_SETS[m].shift0 == INIT_SETS[l].shift0);
        k += 1;
    }
    let mut k = 0;
    while k < S1_PAIRS.len() {
        let (m, l) = S1_PAIRS[k];
        assert!(INIT_SETS[m].shift1 == INIT_SETS[l].shift1);
        k += 1;
    }
};

const _: () = {
    // Every S0 pair is an S1 pair too, for `merged_cost_source`.
    let mut k = 0;
    while k < S0_PAIRS.len() {
        assert!(S0_PAIRS[k].0 == S1_PAIRS[k].0 && S0_PAIRS[k].1 == S1_PAIRS[k].1);
        k += 1;
    }
};

/// The set whose cost set `k` has in a vector replay's word that starts with the members of
/// `S0_PAIRS[j]` merged with their leaders where `merged` has bit `j`: S0 and S1 both equal
/// to the leader's, so they stay equal for the word, and so do the costs.
#[cfg(target_arch = "x86_64")]
const fn merged_cost_source(merged: u8, k: usize) -> usize {
    let mut j = 0;
    while j < S0_PAIRS.len() {
        if S0_PAIRS[j].0 == k && merged & (1 << j) != 0 {
            return S0_PAIRS[j].1;
        }
        j += 1;
    }
    k
}

/// The leader of set `k` in `S0_PAIRS` (itself for a set that is no member): the lane a vector
/// replay compares set `k`'s lanes with.
#[cfg(target_arch = "x86_64")]
fn s0_leader(k: usize) -> usize {
    S0_PAIRS.iter().find(|m| m.0 == k).map_or(k, |m| m.1)
}

/// The `merged` key of [`merged_cost_source`] from a vector replay's comparison of its lanes
/// with their leaders': `both_equal(set)` says S0 and S1 of `set` equal its leader's.
#[cfg(target_arch = "x86_64")]
fn merged_key(both_equal: impl Fn(usize) -> bool) -> u8 {
    S0_PAIRS
        .iter()
        .enumerate()
        .fold(0, |key, (j, &(member, _))| {
            key | u8::from(both_equal(member)) << j
        })
}

/// A sharing key: bit `k` says member and leader of `S0_PAIRS[k]` have equal S0, bit `4 + k`
/// that those of `S1_PAIRS[k]` have equal S1.
type Sharing = u16;

/// The keys with a specialised replay loop: every S0 pair and the (7, 3) S1 pair shared (the
/// S0 pairs meet within the first bins of a context and set 7's S1 always equals set 3's),
/// any combination of the other five S1 pairs. Other keys replay with nothing shared.
const SPECIALISED: Sharing = 0b10_0000_1111;
const SPECIALISED_FREE: Sharing = 0b01_1111_0000;

/// The bins one context received since the last replay.
#[derive(Clone, Debug)]
pub(crate) struct Trace {
    /// Bin `i` is bit `i % 64` of word `i / 64`; the last, incomplete word is `current`.
    words: Vec<u64>,
    /// Bins `64 · words.len()..len` (higher bits zero).
    current: u64,
    pub(super) len: usize,
    /// Bin positions at which the shadows go back to their init states (block-row ends).
    resets: Vec<usize>,
    /// Bins recorded before this chunk, and the absolute bin count at the last reset: bins were
    /// seen since that reset when `replayed + len` exceeds it (`None`: unknown, as at the start
    /// of a stretch recorded apart from the ones before it).
    replayed: u64,
    at_last_reset: Option<u64>,
}

impl Default for Trace {
    fn default() -> Self {
        Self {
            words: Vec::new(),
            current: 0,
            len: 0,
            resets: Vec::new(),
            replayed: 0,
            at_last_reset: Some(0),
        }
    }
}

impl Trace {
    /// A trace for a stretch of the pass that continues bins recorded elsewhere: its first
    /// block-row end is always kept (resetting shadows already in their init states is a no-op).
    #[cfg(feature = "rayon")]
    fn continuing() -> Self {
        Self {
            at_last_reset: None,
            ..Self::default()
        }
    }

    #[inline(always)]
    pub(super) fn push(&mut self, bin: bool) {
        self.current |= u64::from(bin) << (self.len % 64);
        self.len += 1;
        if self.len.is_multiple_of(64) {
            self.words.push(std::mem::take(&mut self.current));
        }
    }

    /// The low `count` bits of `bins` (`count` ≤ 64, higher bits zero), bin `i` in bit `i`.
    /// (Only the AVX-512 recorder appends whole words of bins.)
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub(super) fn append_bits(&mut self, bins: u64, count: u32) {
        let at = (self.len % 64) as u32;
        self.current |= bins << at;
        if at + count >= 64 {
            self.words.push(self.current);
            // The bits that did not fit (none when the word started empty).
            self.current = bins.checked_shr(64 - at).unwrap_or(0);
        }
        self.len += count as usize;
    }

    /// `n` zero bins: bits past `len` are always zero, so only the length moves (and the
    /// words it completes are stored).
    #[inline]
    fn push_zeros(&mut self, n: usize) {
        let end = self.len + n;
        let complete = end / 64;
        if complete > self.words.len() {
            self.words.push(std::mem::take(&mut self.current));
            self.words.resize(complete, 0);
        }
        self.len = end;
    }

    /// Block-row end: record a reset if any bin came since the last one.
    pub(crate) fn reset(&mut self) {
        let now = self.replayed + self.len as u64;
        if self.at_last_reset.is_none_or(|at| now > at) {
            self.resets.push(self.len);
            self.at_last_reset = Some(now);
        }
    }

    /// The recorded words, the incomplete one included.
    pub(super) fn all_words(&mut self) -> &[u64] {
        if !self.len.is_multiple_of(64) {
            self.words.push(std::mem::take(&mut self.current));
        }
        &self.words
    }

    /// Forget the replayed bins; positions continue from here.
    fn clear(&mut self) {
        self.replayed += self.len as u64;
        self.words.clear();
        self.resets.clear();
        self.current = 0;
        self.len = 0;
    }

    #[cfg_attr(not(feature = "rayon"), allow(dead_code))]
    fn has_work(&self) -> bool {
        self.len > 0 || !self.resets.is_empty()
    }
}

/// The nine shadows of one context and their accumulated costs.
#[derive(Clone, Copy, Debug)]
struct Lanes {
    p: [i16; NUM_INIT_SETS],
    s0: [i8; NUM_INIT_SETS],
    acc: [u64; NUM_INIT_SETS],
}

impl Lanes {
    const INITIAL: Lanes = Lanes {
        p: INITIAL.p,
        s0: INITIAL.s0,
        acc: [0; NUM_INIT_SETS],
    };

    /// Shadows back to their init states; costs keep running.
    fn reset(&mut self) {
        self.p = INITIAL.p;
        self.s0 = INITIAL.s0;
    }

    /// Which half-estimators are equal to their leader's now.
    fn sharing(&self) -> Sharing {
        let s1 = |i: usize| i32::from(self.p[i]) - (i32::from(self.s0[i]) << 4);
        let mut key = 0;
        for (k, &(m, l)) in S0_PAIRS.iter().enumerate() {
            key |= Sharing::from(self.s0[m] == self.s0[l]) << k;
        }
        for (k, &(m, l)) in S1_PAIRS.iter().enumerate() {
            key |= Sharing::from(s1(m) == s1(l)) << (4 + k);
        }
        key
    }

    /// Replay bins `from..to` of `words`: on AVX-512 where the CPU has it, else on AVX2
    /// ([`avx2::replay`] checks, and falls back), else with [`Lanes::replay_scalar`]; the same
    /// costs and states either way.
    fn replay(&mut self, words: &[u64], from: usize, to: usize) {
        #[cfg(target_arch = "x86_64")]
        if avx512::available() {
            avx512::replay(self, words, from, to);
        } else {
            avx2::replay(self, words, from, to);
        }
        #[cfg(not(target_arch = "x86_64"))]
        self.replay_scalar(words, from, to);
    }

    /// Whether [`Lanes::replay_two`] replays two contexts side by side on this CPU (AVX-512
    /// with the gather), where that is faster than one after the other.
    fn replays_two() -> bool {
        #[cfg(target_arch = "x86_64")]
        return avx512::replays_two();
        #[cfg(not(target_arch = "x86_64"))]
        return false;
    }

    /// Two contexts' [`Lanes::replay`]: side by side where [`Lanes::replays_two`] holds (their
    /// update chains then overlap), else one after the other.
    fn replay_two(a: (&mut Lanes, &[u64], Range<usize>), b: (&mut Lanes, &[u64], Range<usize>)) {
        #[cfg(target_arch = "x86_64")]
        if avx512::replays_two() {
            return avx512::replay_two(a, b);
        }
        a.0.replay(a.1, a.2.start, a.2.end);
        b.0.replay(b.1, b.2.start, b.2.end);
    }

    /// Replay bins `from..to` of `words`, table-driven, specialised for the sharing.
    fn replay_scalar(&mut self, words: &[u64], from: usize, to: usize) {
        let est = est_bits_columns();
        for (word, lo, hi) in word_spans(words, from, to) {
            run_word(self, est, word, lo, hi);
        }
    }
}

/// The words holding bins `from..to` of a trace, each with the range `lo..hi` of its bits to
/// replay (stopping early if the words run out).
fn word_spans(words: &[u64], from: usize, to: usize) -> impl Iterator<Item = (u64, u32, u32)> + '_ {
    let mut pos = from;
    std::iter::from_fn(move || {
        let (word, lo, hi) = word_span(words, pos, to)?;
        pos += (hi - lo) as usize;
        Some((word, lo, hi))
    })
}

/// The word holding bin `pos` of a trace that ends at `to`, with the range `lo..hi` of its
/// bits to replay (`None` at the end, or where the words run out).
fn word_span(words: &[u64], pos: usize, to: usize) -> Option<(u64, u32, u32)> {
    if pos >= to {
        return None;
    }
    let word = *words.get(pos / 64)?;
    let lo = (pos % 64) as u32;
    let hi = (to - (pos - pos % 64)).min(64) as u32;
    Some((word, lo, hi))
}

/// Runs of a repeated bin shorter than this at a word's start are left to the vector replays'
/// bin-by-bin loops: checking whether the shadows stand still costs about as much as a few bins.
#[cfg(target_arch = "x86_64")]
const MIN_STANDING_RUN: u32 = 8;

/// The run of bins equal to bin `lo` at the start of bits `lo..hi` of `word`: the bin and
/// the run's length.
#[cfg(target_arch = "x86_64")]
fn run_at(word: u64, lo: u32, hi: u32) -> (bool, u32) {
    let bin = (word >> lo) & 1 != 0;
    // Bits shifted in above bit `63 − lo` end a run of ones; a run of zeros is cut at `hi`.
    let others = if bin { !(word >> lo) } else { word >> lo };
    (bin, others.trailing_zeros().min(hi - lo))
}

/// Below this `sgn·S1` the S1 of set 0 (shift1 4) still moves (§2.3: its step is 0 only at
/// the curve's last index, `(sgn·S1) >> 7 = 15`), so the shadows cannot stand still: the vector
/// replays read that one lane first, which rules most words out before [`standing_costs`].
#[cfg(target_arch = "x86_64")]
const SET0_S1_STANDING: i16 = 15 << 7;

const _: () = assert!(INIT_SETS[0].shift1 == 4);

/// Where a vector replay goes on with bits `lo..hi` of `word`: after the run of bins equal to
/// bin `lo` at their start, its costs added to `sums`, if the shadows stand still on that bin
/// ([`standing_costs`]); else at `lo`. The replay supplies its shadows lazily: set 0's S1
/// first ([`SET0_S1_STANDING`]), then all of them.
#[cfg(target_arch = "x86_64")]
fn skip_standing_run(
    word: u64,
    lo: u32,
    hi: u32,
    set0_s1: impl FnOnce() -> i16,
    shadows: impl FnOnce() -> ([i16; NUM_INIT_SETS], [i8; NUM_INIT_SETS]),
    sums: &mut [u32; NUM_INIT_SETS],
) -> u32 {
    let (bin, run) = run_at(word, lo, hi);
    if run < MIN_STANDING_RUN {
        return lo;
    }
    let s1 = set0_s1();
    if (if bin { s1 } else { -s1 }) < SET0_S1_STANDING {
        return lo;
    }
    let (p, s0) = shadows();
    let Some(costs) = standing_costs(&p, &s0, bin) else {
        return lo;
    };
    for (sum, cost) in sums.iter_mut().zip(costs) {
        *sum += cost * run;
    }
    lo + run
}

/// The nine costs of `bin` for the shadows `(p, s0)` if they stand still on it: when every
/// half-estimator's step towards the bin is 0 (all saturated, as in the long zero runs of
/// pruned tensors), each bin of a run of it costs what the first does and changes no state, so
/// a vector replay adds the run at once. `None` for shadows that move.
#[cfg(target_arch = "x86_64")]
fn standing_costs(
    p: &[i16; NUM_INIT_SETS],
    s0: &[i8; NUM_INIT_SETS],
    bin: bool,
) -> Option<[u32; NUM_INIT_SETS]> {
    let column = &est_bits_columns()[usize::from(bin)];
    let mut costs = [0; NUM_INIT_SETS];
    for (i, (cost, &(row0, row1))) in costs.iter_mut().zip(&ROWS).enumerate() {
        if update_state(p[i], s0[i], row0, row1, bin) != (p[i], s0[i]) {
            return None;
        }
        *cost = column[est_row(p[i])];
    }
    Some(costs)
}

/// Add the vector replays' 32-bit per-set cost sums into the accumulators and clear them.
#[cfg(target_arch = "x86_64")]
fn flush(acc: &mut [u64; NUM_INIT_SETS], sums: &mut [u32; NUM_INIT_SETS]) {
    for (a, v) in acc.iter_mut().zip(std::mem::take(sums)) {
        *a += u64::from(v);
    }
}

/// Replay bits `lo..hi` of `word` with the loop specialised for the current sharing.
#[inline]
fn run_word(lanes: &mut Lanes, est: &[[u32; 1024]; 2], word: u64, lo: u32, hi: u32) {
    let key = lanes.sharing();
    if key & SPECIALISED != SPECIALISED {
        run_bits::<0>(lanes, est, word, lo, hi);
        return;
    }
    macro_rules! dispatch {
        ($($x:literal)*) => {
            match (key & SPECIALISED_FREE) >> 4 {
                $($x => run_bits::<{ SPECIALISED | ($x << 4) }>(lanes, est, word, lo, hi),)*
                _ => run_bits::<0>(lanes, est, word, lo, hi),
            }
        };
    }
    dispatch!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
}

/// The leader of set `i` in `pairs` when `key` marks that pair shared (bit `first_bit + k` for
/// `pairs[k]`), else `i` itself.
const fn pair_source(pairs: &[(usize, usize)], first_bit: u32, key: Sharing, i: usize) -> usize {
    let mut k = 0;
    while k < pairs.len() {
        if pairs[k].0 == i && key & (1 << (first_bit + k as u32)) != 0 {
            return pairs[k].1;
        }
        k += 1;
    }
    i
}

/// The set whose S0 set `i` uses under `key` (itself unless shared).
const fn s0_source(key: Sharing, i: usize) -> usize {
    pair_source(&S0_PAIRS, 0, key, i)
}

/// The set whose S1 set `i` uses under `key` (itself unless shared).
const fn s1_source(key: Sharing, i: usize) -> usize {
    pair_source(&S1_PAIRS, 4, key, i)
}

/// The set whose cost set `i` has under `key`: the leader when both halves are shared with
/// it (then P is equal too), otherwise `i`.
const fn cost_source(key: Sharing, i: usize) -> usize {
    let l = s0_source(key, i);
    if l != i && s1_source(key, i) == l {
        l
    } else {
        i
    }
}

/// Sets whose fast estimator never leaves its initial value (set 7: S0 = 0 and the smallest
/// step, `64 >> 7`, is 0), so their S0 update can be skipped.
const FROZEN_S0: [bool; NUM_INIT_SETS] = {
    let mut f = [false; NUM_INIT_SETS];
    let mut i = 0;
    while i < NUM_INIT_SETS {
        let row = ROWS[i].0 as usize;
        let s0 = INIT_SETS[i].s0 as u8 as usize;
        f[i] =
            S0_NEXT[row | s0] as u8 as usize == s0 && S0_NEXT[row | 256 | s0] as u8 as usize == s0;
        i += 1;
    }
    f
};

/// The §2.3 update of every shadow for each bin, inlined per set so each set's table rows are
/// constants. Under key `K` a shared half-estimator is read from its leader and not updated,
/// and a set whose halves are both shared takes its leader's cost; the shared values are
/// copied back at the end, so the lanes always hold every set's own state. States are widened
/// to i32 for the run (they stay within ±3889).
///
/// The loop keeps `S1` (biased) rather than `P`: the cost index needs `P = S1 + 16·S0` once per
/// bin, while keeping `P` would need `S1 = P − 16·S0` before the update and `P` again after it.
/// The replay is bound by instruction throughput (about 2 ns per shadow update whatever the
/// grouping), so every saved operation shows.
#[inline(always)]
fn run_bits<const K: Sharing>(
    lanes: &mut Lanes,
    est: &[[u32; 1024]; 2],
    word: u64,
    lo: u32,
    hi: u32,
) {
    // `S1` is kept biased by 4096 = 512·8: the cost index `512 + (P >> 3)` becomes
    // `(S1b + 16·S0) >> 3`, and the bias only adds −32 to the S1 step index, which `& 31` removes.
    const BIAS: i32 = 4096;
    let mut s0 = lanes.s0.map(i32::from);
    let mut s1b: [i32; NUM_INIT_SETS] =
        std::array::from_fn(|i| i32::from(lanes.p[i]) - (s0[i] << 4) + BIAS);
    // Per-word sums fit in u32: 64 bins of at most ~2^18 each.
    let mut word_acc = [0u32; NUM_INIT_SETS];
    for b in lo..hi {
        let bin = (word >> b) & 1 != 0;
        let bit = usize::from(bin);
        let column = &est[bit];
        let round = i32::from(!bin) * 127;
        // Costs first: they read the states before this bin's updates, some of them a leader's.
        for i in 0..NUM_INIT_SETS {
            if cost_source(K, i) == i {
                let pb = s1b[s1_source(K, i)] + (s0[s0_source(K, i)] << 4);
                word_acc[i] += column[(pb >> 3) as usize & 1023];
            }
        }
        for i in 0..NUM_INIT_SETS {
            if s0_source(K, i) == i && !FROZEN_S0[i] {
                let idx = usize::from(ROWS[i].0) | bit << 8 | usize::from(s0[i] as u8);
                s0[i] = i32::from(S0_NEXT[idx & 2047]);
            }
            if s1_source(K, i) == i {
                let t = (s1b[i] + round) >> 7;
                let idx = usize::from(ROWS[i].1) | bit << 5 | (t as usize & 31);
                s1b[i] += i32::from(S1_STEP[idx & 511]);
            }
        }
    }
    for i in 0..NUM_INIT_SETS {
        s0[i] = s0[s0_source(K, i)];
        s1b[i] = s1b[s1_source(K, i)];
        word_acc[i] = word_acc[cost_source(K, i)];
    }
    lanes.p = std::array::from_fn(|i| (s1b[i] - BIAS + (s0[i] << 4)) as i16);
    lanes.s0 = s0.map(|v| v as i8);
    for (a, w) in lanes.acc.iter_mut().zip(word_acc) {
        *a += u64::from(w);
    }
}

/// A parallel replay's unit of work: one context, or two replayed side by side.
#[cfg(feature = "rayon")]
enum Task<'a> {
    One((&'a mut Lanes, &'a mut Trace)),
    Two(
        (&'a mut Lanes, &'a mut Trace),
        (&'a mut Lanes, &'a mut Trace),
    ),
}

/// Two contexts' pending bins, side by side where the CPU gains from it ([`Lanes::replay_two`])
/// and neither has a block-row end among them; otherwise one after the other.
fn replay_two_contexts(a: (&mut Lanes, &mut Trace), b: (&mut Lanes, &mut Trace)) {
    if !Lanes::replays_two() || !a.1.resets.is_empty() || !b.1.resets.is_empty() {
        replay_context(a.0, a.1);
        replay_context(b.0, b.1);
        return;
    }
    let (len_a, len_b) = (a.1.len, b.1.len);
    Lanes::replay_two(
        (a.0, a.1.all_words(), 0..len_a),
        (b.0, b.1.all_words(), 0..len_b),
    );
    a.1.clear();
    b.1.clear();
}

fn replay_context(lanes: &mut Lanes, trace: &mut Trace) {
    let len = trace.len;
    let resets = std::mem::take(&mut trace.resets);
    let words = trace.all_words();
    let mut from = 0;
    for &at in &resets {
        lanes.replay(words, from, at);
        lanes.reset();
        from = at;
    }
    lanes.replay(words, from, len);
    trace.clear();
}

/// The param_opt search as a [`BinSink`]: feed it the pseudo pass, call
/// [`InitSetSearch::reset_states`] at block-row ends, then [`InitSetSearch::best_indices`].
///
/// Chooses exactly what [`super::ShadowContexts`] chooses, faster: bins are recorded (one bit
/// each, at most 2 MiB pending) and replayed context by context.
#[derive(Clone, Debug)]
pub struct InitSetSearch {
    traces: Vec<Trace>,
    rec: Recorder,
}

/// The shadows of every context and the count of recorded bins not yet replayed; as a
/// [`SliceCoder`] over the traces, the pseudo pass's plain loop records into it directly.
#[derive(Clone, Debug)]
pub(crate) struct Recorder {
    lanes: Vec<Lanes>,
    /// Bins recorded (held-back flags included) and not yet replayed.
    pending: usize,
    parallel: bool,
    held: DeferredFlags,
    /// Contexts whose bins are dropped instead of replayed ([`InitSetSearch::flags_given`]).
    ignored: Range<usize>,
}

impl InitSetSearch {
    /// A search over `len` contexts. With `parallel` (and the `rayon` feature) replays spread
    /// the contexts over rayon's thread pool; the result is the same either way.
    pub fn new(len: usize, parallel: bool) -> Self {
        Self {
            traces: vec![Trace::default(); len],
            rec: Recorder {
                lanes: vec![Lanes::INITIAL; len],
                pending: 0,
                parallel,
                held: DeferredFlags::default(),
                ignored: 0..0,
            },
        }
    }

    /// Block-row boundary: shadows back to their init states; the costs keep running.
    pub fn reset_states(&mut self) {
        self.rec.held.settle(&mut self.traces);
        for t in &mut self.traces {
            t.reset();
        }
    }

    /// The greater-than flag contexts `flags` have their init sets chosen by the caller: their
    /// bins are dropped instead of replayed (recording them in bulk costs next to nothing), and
    /// they choose set 0 here.
    pub(crate) fn flags_given(&mut self, flags: Range<usize>) {
        self.rec.ignored = flags;
    }

    /// The recorder and the traces it records into, for [`SliceCoder`] loops.
    pub(crate) fn parts(&mut self) -> (&mut Recorder, &mut [Trace]) {
        (&mut self.rec, &mut self.traces)
    }

    fn flush(&mut self) {
        self.rec.flush(&mut self.traces);
    }

    /// Records `count` consecutive stretches of the pass at once on rayon's threads, each into
    /// traces of its own (`record(k, ..)` records stretch `k`), then replays them stretch after
    /// stretch: the same choices as recording them one after the other. Bins recorded before
    /// are replayed first. Errors are those of the lowest-numbered failing stretch.
    #[cfg(feature = "rayon")]
    pub(crate) fn record_stretches<E, F>(&mut self, count: usize, record: F) -> Result<(), E>
    where
        E: Send,
        F: Fn(usize, &mut StretchRecorder, &mut [Trace]) -> Result<(), E> + Sync,
    {
        use rayon::prelude::*;
        self.flush();
        let contexts = self.traces.len();
        let mut stretches: Vec<Vec<Trace>> = (0..count)
            .map(|_| vec![Trace::continuing(); contexts])
            .collect();
        let record_one = |(k, traces): (usize, &mut Vec<Trace>)| {
            let mut rec = StretchRecorder::default();
            let recorded = record(k, &mut rec, traces);
            rec.settle(traces);
            recorded
        };
        let results: Vec<Result<(), E>> = if crate::threads::worker_threads() == 1 {
            stretches.iter_mut().enumerate().map(record_one).collect()
        } else {
            stretches
                .par_iter_mut()
                .with_max_len(1)
                .enumerate()
                .map(record_one)
                .collect()
        };
        results.into_iter().collect::<Result<Vec<()>, E>>()?;
        // Stretch after stretch, so every context sees its bins in order.
        for traces in &mut stretches {
            let bins = traces.iter().map(|t| t.len).sum();
            self.rec.replay(traces, bins);
        }
        Ok(())
    }

    /// Every context's accumulated costs, one per init set, after replaying everything.
    #[cfg(test)]
    pub(crate) fn accumulated_costs(mut self) -> Vec<[u64; NUM_INIT_SETS]> {
        self.flush();
        self.rec.lanes.iter().map(|l| l.acc).collect()
    }

    /// The chosen init set of every context (0 for contexts that saw no bins).
    pub fn best_indices(mut self) -> Vec<u8> {
        self.flush();
        self.rec.lanes.iter_mut().map(|l| best_of(&l.acc)).collect()
    }
}

impl Recorder {
    /// Replay every pending bin.
    fn flush(&mut self, traces: &mut [Trace]) {
        self.held.settle(traces);
        let pending = std::mem::take(&mut self.pending);
        self.replay(traces, pending);
    }

    /// Replay `traces` (`bins` in all) into the shadows, in parallel over the contexts when
    /// there are enough bins.
    fn replay(&mut self, traces: &mut [Trace], bins: usize) {
        if let Some(ignored) = traces.get_mut(self.ignored.clone()) {
            ignored.iter_mut().for_each(Trace::clear);
        }
        #[cfg(feature = "rayon")]
        if self.parallel && bins >= PARALLEL_MIN_BINS {
            use rayon::prelude::*;
            // Busiest contexts first, one per rayon task: a few sig-flag and greater-than
            // contexts hold most bins, and contiguous runs of contexts would be far from equal.
            let mut work: Vec<(&mut Lanes, &mut Trace)> = self
                .lanes
                .iter_mut()
                .zip(traces.iter_mut())
                .filter(|(_, t)| t.has_work())
                .collect();
            work.sort_by_key(|(_, t)| std::cmp::Reverse(t.len));
            // Neighbours in that order have about as many bins, so a pair replayed side by side
            // ends about together. A pair is one task, so on several threads only contexts
            // small against each thread's share are paired: the busiest ones stay tasks of
            // their own, which the threads can spread.
            let threads = crate::threads::worker_threads();
            let share = bins / (2 * threads);
            let mut tasks = Vec::with_capacity(work.len());
            let mut work = work.into_iter().peekable();
            while let Some(first) = work.next() {
                let alone = first.1.len;
                tasks.push(
                    match work.next_if(|next| threads == 1 || alone + next.1.len <= share) {
                        Some(second) => Task::Two(first, second),
                        None => Task::One(first),
                    },
                );
            }
            let run = |task: &mut Task<'_>| match task {
                Task::One((l, t)) => replay_context(l, t),
                Task::Two((la, ta), (lb, tb)) => replay_two_contexts((la, ta), (lb, tb)),
            };
            if threads == 1 {
                tasks.iter_mut().for_each(run);
            } else {
                tasks.par_iter_mut().with_max_len(1).for_each(run);
            }
            return;
        }
        #[cfg(not(feature = "rayon"))]
        let _ = (bins, self.parallel);
        let mut work = self.lanes.iter_mut().zip(traces);
        while let Some((la, ta)) = work.next() {
            match work.next() {
                Some((lb, tb)) => replay_two_contexts((la, ta), (lb, tb)),
                None => replay_context(la, ta),
            }
        }
    }
}

/// Records one stretch of [`InitSetSearch::record_stretches`]: bins only, replayed afterwards.
#[cfg(feature = "rayon")]
#[derive(Default)]
pub(crate) struct StretchRecorder {
    held: DeferredFlags,
}

#[cfg(feature = "rayon")]
impl SliceCoder<Trace> for StretchRecorder {
    #[inline(always)]
    fn bin(&mut self, ctx: &mut Trace, bin: bool) {
        ctx.push(bin);
    }

    #[inline(always)]
    fn zeros(&mut self, ctx: &mut Trace, n: usize) {
        ctx.push_zeros(n);
    }

    #[inline(always)]
    fn bypass_bins(&mut self, _n: u32, _value: u32) {}

    #[inline(always)]
    fn gtx_flags(&mut self, gtx: &mut [Trace], negative: bool, abs: u64) -> bool {
        match self.held.push_flags(gtx, negative, abs) {
            Some(all_ones) => all_ones,
            None => gtx_flags_one_by_one(self, gtx, negative, abs),
        }
    }

    #[inline(always)]
    fn prefix_bins(&mut self, prefix: &mut [Trace], ones: usize) {
        if !self.held.push_prefix(prefix, ones) {
            prefix_bins_one_by_one(self, prefix, ones);
        }
    }

    fn settle(&mut self, ctxs: &mut [Trace]) {
        self.held.settle(ctxs);
    }
}

impl SliceCoder<Trace> for Recorder {
    #[inline(always)]
    fn bin(&mut self, ctx: &mut Trace, bin: bool) {
        ctx.push(bin);
        self.pending += 1;
    }

    #[inline(always)]
    fn zeros(&mut self, ctx: &mut Trace, n: usize) {
        ctx.push_zeros(n);
        self.pending += n;
    }

    #[inline(always)]
    fn bypass_bins(&mut self, _n: u32, _value: u32) {}

    #[inline(always)]
    fn level_done(&mut self, traces: &mut [Trace]) {
        if self.pending >= CHUNK_BINS {
            self.flush(traces);
        }
    }

    #[inline(always)]
    fn gtx_flags(&mut self, gtx: &mut [Trace], negative: bool, abs: u64) -> bool {
        match self.held.push_flags(gtx, negative, abs) {
            Some(all_ones) => {
                // The level's flags: up to and including the first 0, at most n.
                self.pending += abs.min(gtx.len() as u64 / 2) as usize;
                all_ones
            }
            None => gtx_flags_one_by_one(self, gtx, negative, abs),
        }
    }

    #[inline(always)]
    fn prefix_bins(&mut self, prefix: &mut [Trace], ones: usize) {
        if self.held.push_prefix(prefix, ones) {
            self.pending += (ones + 1).min(prefix.len());
        } else {
            prefix_bins_one_by_one(self, prefix, ones);
        }
    }

    fn settle(&mut self, ctxs: &mut [Trace]) {
        self.held.settle(ctxs);
    }
}

impl BinSink for InitSetSearch {
    #[inline(always)]
    fn ctx_bin(&mut self, ctx: usize, bin: bool) {
        let Some(t) = self.traces.get_mut(ctx) else {
            return;
        };
        t.push(bin);
        self.rec.pending += 1;
        if self.rec.pending >= CHUNK_BINS {
            self.flush();
        }
    }

    #[inline(always)]
    fn bypass_bins(&mut self, _n: u32, _value: u32) {}
}

/// Test helpers shared by the vector replays' tests.
#[cfg(all(test, target_arch = "x86_64"))]
mod vector_tests {
    use super::Lanes;
    use proptest::prelude::*;

    /// `n` random bins (bin `i` in bit `i % 64`, one spare word), each 1 with probability `skew`.
    fn random_bins(x: &mut u64, skew: f64, n: usize) -> Vec<u64> {
        let mut words = vec![0u64; n.div_ceil(64) + 1];
        for i in 0..n {
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            if ((*x >> 11) as f64 / (1u64 << 53) as f64) < skew {
                words[i / 64] |= 1 << (i % 64);
            }
        }
        words
    }

    /// Reachable shadows (a random prefix replayed) and a random trace of `from + len` bins.
    pub(super) fn shadows_and_trace(
        seed: u64,
        skew: f64,
        prefix: usize,
        len: usize,
    ) -> (Lanes, Vec<u64>) {
        let mut x = seed | 1;
        let mut start = Lanes::INITIAL;
        start.replay_scalar(&random_bins(&mut x, skew, prefix), 0, prefix);
        (start, random_bins(&mut x, skew, len))
    }

    /// The scalar replay of bins `range` of `words` from `start`.
    pub(super) fn scalar_replay(
        start: Lanes,
        words: &[u64],
        range: std::ops::Range<usize>,
    ) -> Lanes {
        let mut lanes = start;
        lanes.replay_scalar(words, range.start, range.end);
        lanes
    }

    /// From reachable shadows (a random prefix replayed first), bins `from..from + len` of a
    /// random trace replay with `replay` to the scalar replay's costs and states.
    pub(super) fn replays_like_the_scalar_form(
        seed: u64,
        skew: f64,
        prefix: usize,
        from: usize,
        len: usize,
        replay: impl Fn(&mut Lanes, &[u64], usize, usize),
    ) -> Result<(), TestCaseError> {
        let mut x = seed | 1;
        let mut start = Lanes::INITIAL;
        start.replay_scalar(&random_bins(&mut x, skew, prefix), 0, prefix);
        let words = random_bins(&mut x, skew, from + len);
        let mut scalar = start;
        scalar.replay_scalar(&words, from, from + len);
        let mut simd = start;
        replay(&mut simd, &words, from, from + len);
        prop_assert_eq!(simd.acc, scalar.acc);
        prop_assert_eq!(simd.p, scalar.p);
        prop_assert_eq!(simd.s0, scalar.s0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ShadowContexts;
    use super::*;
    use proptest::prelude::*;

    /// Feeds the same events to both searches and compares every context's choice.
    fn same_choices(events: &[(u8, bool)], contexts: usize, parallel: bool) {
        let mut reference = ShadowContexts::new(contexts);
        let mut fast = InitSetSearch::new(contexts, parallel);
        for &(ctx, bin) in events {
            if ctx == u8::MAX {
                reference.reset_states();
                fast.reset_states();
            } else {
                reference.ctx_bin(usize::from(ctx), bin);
                fast.ctx_bin(usize::from(ctx), bin);
            }
        }
        let expected: Vec<u8> = (0..contexts).map(|c| reference.best_idx(c)).collect();
        // The costs themselves, not only the choices, so a wrong shared update cannot hide
        // behind an unchanged minimum.
        fast.flush();
        for c in 0..contexts {
            assert_eq!(fast.rec.lanes[c].acc, reference.costs(c), "context {c}");
        }
        assert_eq!(fast.best_indices(), expected);
    }

    #[test]
    fn long_skewed_runs_merge_and_still_agree() {
        // Long single-context runs at several skews: members merge with their leaders.
        let mut events = Vec::new();
        let mut x = 12345u32;
        for (ctx, threshold) in [(0u8, 0.5), (1, 0.3), (2, 0.05), (3, 0.9)] {
            for _ in 0..50_000 {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                events.push((ctx, f64::from(x >> 8) / f64::from(1u32 << 24) < threshold));
            }
        }
        same_choices(&events, 5, false);
        same_choices(&events, 5, true);
    }

    #[test]
    fn recorded_zero_runs_equal_single_zero_bins() {
        let mut one_by_one = InitSetSearch::new(3, false);
        let mut runs = InitSetSearch::new(3, false);
        for (i, n) in [0usize, 1, 63, 64, 65, 200, 3, 5000, 7]
            .into_iter()
            .enumerate()
        {
            let ctx = i % 3;
            for _ in 0..n {
                one_by_one.ctx_bin(ctx, false);
            }
            one_by_one.ctx_bin(ctx, true);
            let (rec, traces) = runs.parts();
            rec.zeros(&mut traces[ctx], n);
            rec.bin(&mut traces[ctx], true);
            rec.level_done(traces);
            if i == 4 {
                one_by_one.reset_states();
                runs.reset_states();
            }
        }
        one_by_one.flush();
        runs.flush();
        for c in 0..3 {
            assert_eq!(
                one_by_one.rec.lanes[c].acc, runs.rec.lanes[c].acc,
                "context {c}"
            );
        }
    }

    #[test]
    fn resets_between_chunks_and_contexts() {
        let mut events = Vec::new();
        for row in 0..300u32 {
            for i in 0..(row % 7) * 40 {
                events.push(((i % 3) as u8, (i * 7 + row) % 5 < 2));
            }
            events.push((u8::MAX, false));
        }
        same_choices(&events, 4, false);
    }

    proptest! {
        #[test]
        fn agrees_with_shadow_contexts(
            events in prop::collection::vec((0u8..6, any::<bool>()), 0..4000),
            resets in prop::collection::vec(0usize..4000, 0..8),
        ) {
            let mut ev = events;
            for r in resets {
                let at = r.min(ev.len());
                ev.insert(at, (u8::MAX, false));
            }
            same_choices(&ev, 6, false);
        }
    }
}

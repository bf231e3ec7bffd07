//! The replay with AVX-512 (F + BW).
//!
//! The nine shadows of a context are one vector of 16-bit lanes: S0 of set `i` in lane `i`, S1
//! plus [`S1_BIAS`] in lane `16 + i`, the other lanes 0. A bin is then a handful of vector
//! operations for the update of all eighteen half-estimators, and up to nine cost lookups.
//!
//! Same arithmetic as the scalar replay, written as the §2.3 formula instead of its tables:
//! `S += sgn·(CURVE[16 + ((sgn·S) >> k)] >> shift)` with `k` = 3 for S0 and 7 for S1, `sgn` = ±1
//! from the bin. The curve lookup is one `vpermw` (32 entries of 16 bits), whose index wraps
//! modulo 32. Neither sign is computed: each bin value has its own table and offset `d`.
//! - Bin 1: `S + (CURVE[16 + (S >> k)] >> shift)`, the table stored rotated by 16, `d` = 0.
//! - Bin 0: with arithmetic shifts, `(−S) >> k = !((S − 1) >> k)`, so the lookup is
//!   `CURVE[15 − ((S − 1) >> k)]`, stored complemented so that `!c >> shift = !(c >> shift)`
//!   `= −(c >> shift) − 1`: the new state is `S + 1 + (table >> shift)`, `d` = 1.
//!
//! One update is then `(S + d) + (TABLE[(S − d) >> k] >> shift)`, a chain of five operations.
//! The negation by a mask on either side of the lookup made it seven, and on the Intel Xeon of
//! benchmarks.md a masked subtraction takes three cycles against one: there this form replays
//! 21 % faster (chain 13 → 8 cycles). The states stay within ±3889 (§2.1), inside 16 bits, and
//! S1 within about ±2048, so the biased S1 does too; the bias moves the curve index by 32, a
//! whole turn of the table.
//!
//! The nine costs come either from scalar loads or from one masked `vpgatherdd` into a
//! vector of sums ([`CostLookup`]). The gather makes a whole ResNet-50 encode 6–8 % faster on an
//! Intel Xeon with AVX-512 and made the replay 21 % slower on Zen 4, so the faster of the two is
//! timed once per process. Both skip, for a word of 64 bins, the sets that start it merged with
//! their leader (S0 and S1 both equal, [`merged_cost_source`]): their costs are the leader's.
//! That saves the scalar loads about a tenth of the replay on Zen 4. A gather costs the same
//! whatever its lane count, so there a word with at most eight sets to look up (97 % of dense
//! MiniLM's replayed bins) gathers two bins at a time ([`replay_pairs`]): 16 % less time per
//! bin on the Xeon. The gather's indices come from pairs of lanes: two `vpermw` put each looked-up
//! set's S0 and biased S1 side by side in a 32-bit lane, and one `vpmaddwd` makes
//! `16·S0 + S1 + 4096`, eight times the index ([`indices_of`]).
//!
//! With the gather, a bin then takes about 11 cycles on the Xeon against an update chain of 8,
//! so two contexts are replayed side by side ([`replay_two`], pairs of contexts with about as
//! many bins): each one's update chain runs while the other's waits, and a bin takes about a
//! sixth less time, bound now by the vector work (two ports for 512-bit operations) and the
//! gathers. The side-by-side form exists for the gather only; with the scalar loads (Zen 4's
//! pick) contexts go one at a time.
//! On Zen 4, with the masked update, a bin took 13–15 cycles against an update chain of 10–11
//! (`vpermw` alone about 6): the loop was bound by the chain and the vector work around it
//! together, and forms that shorten the chain with more vector work (`vpshufb` lookups on an
//! oriented state) or compute the costs in the vector were slower (benchmarks.md, "Session
//! 36"). Also tried and not faster on Zen 4: storing the cost indices and reading them back as
//! scalars (the store cannot forward to the narrower loads; stored for a whole word of 64
//! bins and summed after the word's updates, 11 % slower encodes: the update chain then no
//! longer hides under the loads), and two contexts in one vector of sixteen lanes each (the
//! AVX2 replay's layout): one update chain for two bins, but twice the loads per step, so the
//! same time per bin.

use std::arch::x86_64::*;
use std::ops::Range;
use std::sync::OnceLock;

use super::{
    flush, merged_cost_source, merged_key, s0_leader, skip_standing_run, word_span, Lanes,
};
use crate::tables::{est_bits_columns, CURVE, INIT_SETS, NUM_INIT_SETS};

/// Whether this CPU can run [`replay`] and the environment variable `NNC_NO_AVX512` is unset
/// (it selects the scalar replay, to compare the two or to rule this one out).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && std::env::var_os("NNC_NO_AVX512").is_none()
    })
}

/// How the replay reads the nine costs of a bin from the §2.4 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CostLookup {
    /// Nine scalar loads, summed in nine scalar registers (faster on AMD's Zen 4).
    Loads,
    /// One masked gather, summed in one vector (faster on the Intel Xeon of benchmarks.md).
    Gather,
}

impl CostLookup {
    /// The faster form on this CPU, timed once per process ([`CostLookup::timed`]).
    /// `NNC_REPLAY_COSTS=gather` or `=loads` picks one instead. Both give the same costs.
    fn for_this_cpu() -> CostLookup {
        static CHOSEN: OnceLock<CostLookup> = OnceLock::new();
        *CHOSEN.get_or_init(|| match std::env::var("NNC_REPLAY_COSTS").as_deref() {
            Ok("gather") => CostLookup::Gather,
            Ok("loads") => CostLookup::Loads,
            _ => CostLookup::timed(),
        })
    }

    /// Replays the same 64 Ki-bin trace with each form, three times in turn, and keeps the one
    /// with the shorter best time (about 2 ms in all). Timed rather than guessed from the vendor:
    /// gathers are fast on recent Xeons, slow on Zen 4, and slowed again by the microcode
    /// mitigation of older Intel cores (Gather Data Sampling). A wrong pick costs speed only.
    fn timed() -> CostLookup {
        const WORDS: usize = 1024;
        // Bins with about one 1 in four, as a busy significance flag has.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let words: Vec<u64> = (0..WORDS)
            .map(|_| {
                let mut word = 0;
                for _ in 0..2 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    word = (word << 32) ^ (x & (x >> 21)) as u32 as u64;
                }
                word
            })
            .collect();
        let forms = [CostLookup::Loads, CostLookup::Gather];
        let mut best = [std::time::Duration::MAX; 2];
        for _ in 0..3 {
            for (form, best) in forms.iter().zip(&mut best) {
                let mut lanes = Lanes::INITIAL;
                let started = std::time::Instant::now();
                replay_with(*form, &mut lanes, &words, 0, WORDS * 64);
                std::hint::black_box(&lanes);
                *best = (*best).min(started.elapsed());
            }
        }
        if best[1] < best[0] {
            CostLookup::Gather
        } else {
            CostLookup::Loads
        }
    }
}

/// [`Lanes::replay`] on AVX-512, falling back to [`Lanes::replay_scalar`] where the CPU lacks
/// it.
pub(super) fn replay(lanes: &mut Lanes, words: &[u64], from: usize, to: usize) {
    if !available() {
        return lanes.replay_scalar(words, from, to);
    }
    replay_with(CostLookup::for_this_cpu(), lanes, words, from, to);
}

/// Whether [`replay_two`] is the way to replay two contexts on this CPU: AVX-512 with the
/// gather picked ([`CostLookup::for_this_cpu`]). The side-by-side loop is built on the paired
/// gather; with the scalar loads (Zen 4's pick) contexts replay one at a time.
pub(super) fn replays_two() -> bool {
    available() && CostLookup::for_this_cpu() == CostLookup::Gather
}

/// Replays bins `a.2` of `a.1` into the shadows `a.0`, and those of `b` into `b.0`, side by
/// side: the same costs and states as two [`replay`] calls. The CPU must have AVX-512 F and
/// BW; [`replays_two`] says whether this is the faster way here.
pub(super) fn replay_two(
    a: (&mut Lanes, &[u64], Range<usize>),
    b: (&mut Lanes, &[u64], Range<usize>),
) {
    assert!(available(), "replay_two needs AVX-512 F and BW");
    // SAFETY: `available` checked that the CPU has AVX-512 F and BW.
    #[allow(unsafe_code)]
    unsafe {
        let mut x = Cursor::new(a.0, a.1, a.2.start, a.2.end);
        let mut y = Cursor::new(b.0, b.1, b.2.start, b.2.end);
        replay_two_bins(&mut x, &mut y);
        x.end();
        y.end();
    }
}

/// [`replay`] with the given cost lookup; the CPU must have AVX-512 F and BW.
fn replay_with(costs: CostLookup, lanes: &mut Lanes, words: &[u64], from: usize, to: usize) {
    debug_assert!(available());
    // SAFETY: the callers checked that the CPU has AVX-512 F and BW, all `replay_bins` needs.
    #[allow(unsafe_code)]
    unsafe {
        match costs {
            CostLookup::Loads => replay_bins::<false>(lanes, words, from, to),
            CostLookup::Gather => replay_bins::<true>(lanes, words, from, to),
        }
    }
}

/// Bins replayed between two flushes of the 32-bit cost sums into the 64-bit accumulators: a
/// cost is below 2^18 (§2.4: at most about 7.3 bits in 1/32768 bit), so 2^13 of them fit.
const FLUSH_BINS: usize = 1 << 13;

/// The replay's constants: the update's tables and shifts, and each lane's leader.
struct Constants {
    /// The curve for a 0 bin and for a 1 bin, indexed by `(S − d) >> k` modulo 32.
    curves: [__m512i; 2],
    /// `d`: 1 in every lane for a 0 bin, 0 for a 1 bin.
    offsets: [__m512i; 2],
    pre: __m512i,
    post: __m512i,
    /// Lane of the leader of each lane's set (its own lane for sets without one).
    leader: __m512i,
}

impl Constants {
    #[target_feature(enable = "avx512f,avx512bw")]
    fn new() -> Self {
        let sets = |j: usize| (j < NUM_INIT_SETS).then_some(j);
        Constants {
            curves: [
                // Index q = (S − 1) >> k, within −16..=15 (§2.1), lands in lane q mod 32.
                load(&lanes_of(|j| !(CURVE[(47 - j) % 32] as i16))),
                load(&lanes_of(|j| CURVE[(j + 16) % 32] as i16)),
            ],
            offsets: [load(&lanes_of(|_| 1)), load(&lanes_of(|_| 0))],
            pre: load(&lanes_of(|j| if j < 16 { 3 } else { 7 })),
            // Lanes without a shadow shift by 15: their step is always 0, so they stay 0.
            post: load(&lanes_of(|j| match (sets(j), sets(j.wrapping_sub(16))) {
                (Some(i), _) => i16::from(INIT_SETS[i].shift0),
                (_, Some(i)) => i16::from(INIT_SETS[i].shift1),
                _ => 15,
            })),
            leader: load(&lanes_of(|j| {
                let set = j % 16;
                (j - set + s0_leader(set)) as i16
            })),
        }
    }
}

/// One context's replay under way: its shadows' lanes and cost sums, and the word it is in.
struct Cursor<'a> {
    lanes: &'a mut Lanes,
    words: &'a [u64],
    /// The next bin to fetch a word at, and the end of the stretch.
    pos: usize,
    to: usize,
    s: __m512i,
    sums: [u32; NUM_INIT_SETS],
    /// The single-bin gather's sums: set `i` in 32-bit lane `i`, flushed with `sums`.
    vector_sums: __m512i,
    unflushed: usize,
    word: u64,
    /// The current word's next bin and end.
    b: u32,
    hi: u32,
    /// The current word's merged key ([`merged_cost_source`]).
    merged: u8,
    /// The current word's paired gathers' sums, in the lanes of `PLANS[merged]`.
    paired: __m512i,
}

impl<'a> Cursor<'a> {
    #[target_feature(enable = "avx512f,avx512bw")]
    fn new(lanes: &'a mut Lanes, words: &'a [u64], from: usize, to: usize) -> Self {
        let s = load(&state_lanes(&lanes.p, &lanes.s0));
        Cursor {
            lanes,
            words,
            pos: from,
            to,
            s,
            sums: [0; NUM_INIT_SETS],
            vector_sums: _mm512_setzero_si512(),
            unflushed: 0,
            word: 0,
            b: 0,
            hi: 0,
            merged: 0,
            paired: _mm512_setzero_si512(),
        }
    }

    /// Moves to the next word of the stretch (false at its end): adds its leading standing run
    /// at once ([`skip_standing_run`]) and notes which members start it merged with their
    /// leaders. Those stay merged for the whole word, so their costs are not looked up again.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn start_word(&mut self, c: &Constants) -> bool {
        let Some((word, lo, hi)) = word_span(self.words, self.pos, self.to) else {
            return false;
        };
        self.pos += (hi - lo) as usize;
        self.unflushed += (hi - lo) as usize;
        let s = self.s;
        self.b = skip_standing_run(word, lo, hi, || set0_s1(s), || shadows(s), &mut self.sums);
        self.word = word;
        self.hi = hi;
        let equal = _mm512_cmpeq_epi16_mask(s, _mm512_permutexvar_epi16(c.leader, s));
        let both = equal & (equal >> 16);
        self.merged = merged_key(|set| (both >> set) & 1 != 0);
        self.paired = _mm512_setzero_si512();
        true
    }

    /// Pairs of bins left in the word that one gather each can serve: a word with a merged
    /// key looks up at most eight sets per bin ([`replay_pairs`]).
    fn pairs_left(&self) -> u32 {
        if self.merged == 0 {
            0
        } else {
            (self.hi - self.b) / 2
        }
    }

    /// Ends the word: the paired sums go to their sets (and to the members merged with them),
    /// the bins left are replayed one by one, and the sums are flushed when due.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn finish_word<const GATHER: bool>(&mut self, c: &Constants) {
        if GATHER && self.merged != 0 {
            // Set k's cost is in the lane of its source set, once per bin of the pair.
            let plan = &PLANS[usize::from(self.merged)];
            let [first, second] = plan.fold.map(|lanes| {
                _mm512_maskz_permutexvar_epi32(SET_LANES, load32(&lanes), self.paired)
            });
            self.vector_sums = _mm512_add_epi32(self.vector_sums, _mm512_add_epi32(first, second));
        }
        if self.b < self.hi {
            if GATHER {
                replay_word::<true, 0>(c, self);
            } else {
                macro_rules! dispatch {
                    ($($m:literal)*) => {
                        match self.merged {
                            $($m => replay_word::<false, $m>(c, self),)*
                            _ => replay_word::<false, 0>(c, self),
                        }
                    };
                }
                dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
            }
        }
        if self.unflushed > FLUSH_BINS - 64 {
            take_vector_sums(&mut self.sums, &mut self.vector_sums);
            flush(&mut self.lanes.acc, &mut self.sums);
            self.unflushed = 0;
        }
    }

    /// Every word of the stretch, on its own.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn run_alone<const GATHER: bool>(&mut self, c: &Constants) {
        while self.start_word(c) {
            if GATHER {
                replay_pairs(c, self, self.pairs_left());
            }
            self.finish_word::<GATHER>(c);
        }
    }

    /// The rest of the current word and every word after it, on its own.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn finish_alone(&mut self, c: &Constants) {
        replay_pairs(c, self, self.pairs_left());
        self.finish_word::<true>(c);
        self.run_alone::<true>(c);
    }

    /// The costs to the accumulators, the shadows back to `Lanes`.
    #[target_feature(enable = "avx512f")]
    fn end(mut self) {
        take_vector_sums(&mut self.sums, &mut self.vector_sums);
        flush(&mut self.lanes.acc, &mut self.sums);
        (self.lanes.p, self.lanes.s0) = shadows(self.s);
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
fn replay_bins<const GATHER: bool>(lanes: &mut Lanes, words: &[u64], from: usize, to: usize) {
    let c = Constants::new();
    let mut cursor = Cursor::new(lanes, words, from, to);
    cursor.run_alone::<GATHER>(&c);
    cursor.end();
}

/// Two contexts' stretches replayed side by side (module doc), with the gather.
#[target_feature(enable = "avx512f,avx512bw")]
fn replay_two_bins(a: &mut Cursor<'_>, b: &mut Cursor<'_>) {
    let c = Constants::new();
    let mut a_live = a.start_word(&c);
    let mut b_live = b.start_word(&c);
    while a_live && b_live {
        let both = a.pairs_left().min(b.pairs_left());
        replay_two_pairs(&c, a, b, both);
        if a.pairs_left() == 0 {
            a.finish_word::<true>(&c);
            a_live = a.start_word(&c);
        }
        if b.pairs_left() == 0 {
            b.finish_word::<true>(&c);
            b_live = b.start_word(&c);
        }
    }
    if a_live {
        a.finish_alone(&c);
    }
    if b_live {
        b.finish_alone(&c);
    }
}

/// Set 0's S1, lane 16 less [`S1_BIAS`].
#[target_feature(enable = "avx512f")]
fn set0_s1(s: __m512i) -> i16 {
    _mm_extract_epi16::<0>(_mm512_extracti32x4_epi32::<2>(s)) as i16 - S1_BIAS
}

/// The shadows `(P, S0)` of the nine sets from the lanes.
#[target_feature(enable = "avx512f")]
fn shadows(s: __m512i) -> ([i16; NUM_INIT_SETS], [i8; NUM_INIT_SETS]) {
    let out = store(s);
    (
        std::array::from_fn(|i| out[16 + i] - S1_BIAS + (out[i] << 4)),
        std::array::from_fn(|i| out[i] as i8),
    )
}

/// Replays the cursor's word to its end, bin by bin: with the gather, or with scalar loads of
/// the costs of the sets not merged with their leader under `MERGED` ([`merged_cost_source`]).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn replay_word<const GATHER: bool, const MERGED: u8>(c: &Constants, r: &mut Cursor<'_>) {
    let (word, lo, hi) = (r.word, r.b, r.hi);
    let est = est_bits_columns();
    let zero = _mm512_setzero_si512();
    let pick = const { pick_pairs(&ALL_SETS, 0, NUM_INIT_SETS) };
    let pick = load(&pick);
    let mut s = r.s;
    for b in lo..hi {
        let bin = ((word >> b) & 1) as usize;
        // Costs first, from the states before this bin's update.
        if GATHER {
            let lanes32 = indices_of(_mm512_permutexvar_epi16(pick, s), zero);
            // SAFETY: lanes 0..9 (the mask) hold indices below 1024, inside the column.
            #[allow(unsafe_code)]
            let costs = unsafe {
                _mm512_mask_i32gather_epi32::<4>(zero, SET_LANES, lanes32, est[bin].as_ptr().cast())
            };
            r.vector_sums = _mm512_add_epi32(r.vector_sums, costs);
        } else {
            let index = cost_indices(s);
            // The indices come out of the vector as 64-bit words, four per word.
            let packed = [
                _mm256_extract_epi64::<0>(index) as u64,
                _mm256_extract_epi64::<1>(index) as u64,
                _mm256_extract_epi64::<2>(index) as u64,
            ];
            let column = &est[bin];
            let mut costs = [0u32; NUM_INIT_SETS];
            for (k, cost) in costs.iter_mut().enumerate() {
                if merged_cost_source(MERGED, k) == k {
                    let i = (packed[k / 4] >> (16 * (k % 4))) as usize & 1023;
                    // A volatile read, so the compiler does not turn the loads into a gather.
                    // SAFETY: a read through a reference to an initialised `u32` of `column`.
                    #[allow(unsafe_code)]
                    let c = unsafe { std::ptr::read_volatile(&column[i]) };
                    *cost = c;
                }
            }
            for (k, sum) in r.sums.iter_mut().enumerate() {
                *sum += costs[merged_cost_source(MERGED, k)];
            }
        }
        s = update(c, s, bin);
    }
    r.s = s;
    r.b = hi;
}

/// The cost index `512 + (P >> 3)` of each set, `P = S1 + 16·S0`, in 16-bit lane `i` for set
/// `i` (within 25..=998 by §2.1; callers mask it like the scalar replay). The lanes hold S1
/// plus [`S1_BIAS`], so this is `(S1 + bias + 16·S0) >> 3`.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn cost_indices(s: __m512i) -> __m256i {
    let p = _mm256_add_epi16(
        _mm512_extracti64x4_epi64::<1>(s),
        _mm256_slli_epi16::<4>(_mm512_castsi512_si256(s)),
    );
    _mm256_srai_epi16::<3>(p)
}

/// The gather's indices from `pairs`, 32-bit lanes that hold a set's S0 in their low half and
/// its biased S1 in their high half ([`pick_pairs`]): one `vpmaddwd` makes `16·S0 + S1 + bias`,
/// eight times the cost index, which is then masked to its column's 1024 entries (so a gather
/// stays inside the column whatever the lanes hold) and offset by `column`.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn indices_of(pairs: __m512i, column: __m512i) -> __m512i {
    let p = _mm512_madd_epi16(pairs, _mm512_set1_epi32(0x0001_0010));
    // (A & B) | C.
    _mm512_ternarylogic_epi32::<0xEA>(_mm512_srai_epi32::<3>(p), _mm512_set1_epi32(1023), column)
}

/// A `vpermw` control that moves S0 and S1 of set `sets[i − first]` into the low and high half
/// of 32-bit lane `i` for `i` in `first..first + n`, and every other lane's halves from lane 15,
/// which is always 0.
const fn pick_pairs(sets: &[usize; NUM_INIT_SETS], first: usize, n: usize) -> [i16; 32] {
    let mut out = [15; 32];
    let mut i = 0;
    while i < n {
        out[2 * (first + i)] = sets[i] as i16;
        out[2 * (first + i) + 1] = (16 + sets[i]) as i16;
        i += 1;
    }
    out
}

/// What a pair of bins needs for a word under one merged key: the two `vpermw` controls that
/// put the first bin's looked-up sets in lanes `0..n` and the second's in lanes `n..2n`, the
/// column offsets for the bins `(c & 1, c >> 1)` (`1024·(c & 1)` in lanes `0..n`,
/// `1024·(c >> 1)` in the others), the gather's lanes, and for each bin the `vpermd` control
/// that moves to lane `k` the lane of set `k`'s cost (its own, or its leader's when merged).
struct PairPlan {
    pick: [[i16; 32]; 2],
    columns: [[i32; 16]; 4],
    lanes: __mmask16,
    fold: [[i32; 16]; 2],
}

/// [`PairPlan`] of every merged key; key 0 (nine sets) is never paired.
const PLANS: [PairPlan; 16] = {
    let mut plans = [const {
        PairPlan {
            pick: [[15; 32]; 2],
            columns: [[0; 16]; 4],
            lanes: 0,
            fold: [[0; 16]; 2],
        }
    }; 16];
    let mut key = 1;
    while key < 16 {
        let (sets, n) = looked_up(key as u8);
        assert!(2 * n <= 16);
        let mut columns = [[0; 16]; 4];
        let mut c = 0;
        while c < 4 {
            let mut lane = 0;
            while lane < 16 {
                let bin = if lane < n { c & 1 } else { c >> 1 };
                columns[c][lane] = 1024 * bin as i32;
                lane += 1;
            }
            c += 1;
        }
        let mut fold = [[0; 16]; 2];
        let mut k = 0;
        while k < NUM_INIT_SETS {
            let source = merged_cost_source(key as u8, k);
            let mut lane = 0;
            while sets[lane] != source {
                lane += 1;
            }
            fold[0][k] = lane as i32;
            fold[1][k] = (n + lane) as i32;
            k += 1;
        }
        plans[key] = PairPlan {
            pick: [pick_pairs(&sets, 0, n), pick_pairs(&sets, n, n)],
            columns,
            lanes: ((1u32 << (2 * n)) - 1) as __mmask16,
            fold,
        };
        key += 1;
    }
    plans
};

/// The lanes after a `bin` (module doc). Lanes without a shadow stay 0 for either bin, since
/// their step is 0 >> 15 or !c >> 15 = −1.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn update(c: &Constants, s: __m512i, bin: usize) -> __m512i {
    let d = c.offsets[bin];
    let q = _mm512_srav_epi16(_mm512_sub_epi16(s, d), c.pre);
    let step = _mm512_srav_epi16(_mm512_permutexvar_epi16(q, c.curves[bin]), c.post);
    _mm512_add_epi16(_mm512_add_epi16(s, d), step)
}

/// The sets whose costs a word under `merged` looks up (those not merged with their leader,
/// [`merged_cost_source`]), in order, and how many there are.
const fn looked_up(merged: u8) -> ([usize; NUM_INIT_SETS], usize) {
    let mut sets = [0; NUM_INIT_SETS];
    let mut n = 0;
    let mut k = 0;
    while k < NUM_INIT_SETS {
        if merged_cost_source(merged, k) == k {
            sets[n] = k;
            n += 1;
        }
        k += 1;
    }
    (sets, n)
}

/// One step of [`replay_pairs`]: the next two bins of `word` from bin `b`, their costs by one
/// gather. Each bin's indices are offset by its column (`1024·bin` in the two-column table).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn pair_step(
    c: &Constants,
    table: &[[u32; 1024]; 2],
    plan: &PairPlan,
    pick: &[__m512i; 2],
    (s, paired): (__m512i, __m512i),
    word: u64,
    b: u32,
) -> (__m512i, __m512i) {
    let first = ((word >> b) & 1) as usize;
    let second = ((word >> (b + 1)) & 1) as usize;
    let after = update(c, s, first);
    let pairs = _mm512_or_si512(
        _mm512_permutexvar_epi16(pick[0], s),
        _mm512_permutexvar_epi16(pick[1], after),
    );
    let indices = indices_of(pairs, load32(&plan.columns[first | (second << 1)]));
    // SAFETY: the lanes under the mask hold `1024·bin + i` with i < 1024 (`indices_of`),
    // inside the 2048 `u32`s of the two columns, which are contiguous.
    #[allow(unsafe_code)]
    let costs = unsafe {
        _mm512_mask_i32gather_epi32::<4>(
            _mm512_setzero_si512(),
            plan.lanes,
            indices,
            table.as_ptr().cast(),
        )
    };
    (update(c, after, second), _mm512_add_epi32(paired, costs))
}

/// The `vpermw` controls of a plan, in registers.
#[target_feature(enable = "avx512f")]
fn picks(plan: &PairPlan) -> [__m512i; 2] {
    [load(&plan.pick[0]), load(&plan.pick[1])]
}

/// `count` pairs of the cursor's word, one gather each (its merged key is not 0, so at most
/// eight sets are looked up per bin); the costs are summed per lane until the word ends
/// ([`Cursor::finish_word`]).
#[target_feature(enable = "avx512f,avx512bw")]
fn replay_pairs(c: &Constants, r: &mut Cursor<'_>, count: u32) {
    let plan = &PLANS[usize::from(r.merged)];
    let pick = picks(plan);
    let (table, word) = (est_bits_columns(), r.word);
    let mut state = (r.s, r.paired);
    let mut b = r.b;
    for _ in 0..count {
        state = pair_step(c, table, plan, &pick, state, word, b);
        b += 2;
    }
    (r.s, r.paired) = state;
    r.b = b;
}

/// [`replay_pairs`] for two contexts at once: their update chains are independent, so each
/// runs under the other's (module doc).
#[target_feature(enable = "avx512f,avx512bw")]
fn replay_two_pairs(c: &Constants, x: &mut Cursor<'_>, y: &mut Cursor<'_>, count: u32) {
    let (plan_x, plan_y) = (&PLANS[usize::from(x.merged)], &PLANS[usize::from(y.merged)]);
    let (pick_x, pick_y) = (picks(plan_x), picks(plan_y));
    let (mut state_x, mut state_y) = ((x.s, x.paired), (y.s, y.paired));
    let (mut bx, mut by) = (x.b, y.b);
    let (table, word_x, word_y) = (est_bits_columns(), x.word, y.word);
    for _ in 0..count {
        state_x = pair_step(c, table, plan_x, &pick_x, state_x, word_x, bx);
        state_y = pair_step(c, table, plan_y, &pick_y, state_y, word_y, by);
        bx += 2;
        by += 2;
    }
    ((x.s, x.paired), (y.s, y.paired)) = (state_x, state_y);
    (x.b, y.b) = (bx, by);
}

/// Added to the S1 lanes (16..25), so that `(16·S0 + S1 + bias) >> 3` is the cost index
/// `512 + (P >> 3)`: 4096 is 32 steps of `2^7`, so `(S1 + bias − d) >> 7` is the curve index
/// plus 32, the same lane of the 32-entry table, and the update is unchanged.
const S1_BIAS: i16 = 4096;

/// Sets 0 to 8, in order.
const ALL_SETS: [usize; NUM_INIT_SETS] = [0, 1, 2, 3, 4, 5, 6, 7, 8];

/// The lanes of the gathered costs: one per init set.
const SET_LANES: __mmask16 = (1 << NUM_INIT_SETS) - 1;

/// Add the gather's vector of sums into `sums` and clear it.
#[target_feature(enable = "avx512f")]
fn take_vector_sums(sums: &mut [u32; NUM_INIT_SETS], vector: &mut __m512i) {
    let mut lanes = [0u32; 16];
    // SAFETY: `lanes` is 64 writable bytes; the store has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm512_storeu_si512(lanes.as_mut_ptr().cast(), *vector)
    };
    for (sum, lane) in sums.iter_mut().zip(lanes) {
        *sum += lane;
    }
    *vector = _mm512_setzero_si512();
}

fn lanes_of(f: impl Fn(usize) -> i16) -> [i16; 32] {
    std::array::from_fn(f)
}

/// The lanes of the shadows `(P, S0)`: S0 of set `i` in lane `i`, `S1 = P − 16·S0` plus
/// [`S1_BIAS`] in lane `16 + i`.
fn state_lanes(p: &[i16; NUM_INIT_SETS], s0: &[i8; NUM_INIT_SETS]) -> [i16; 32] {
    lanes_of(|j| {
        if j < NUM_INIT_SETS {
            i16::from(s0[j])
        } else if (16..16 + NUM_INIT_SETS).contains(&j) {
            p[j - 16] - (i16::from(s0[j - 16]) << 4) + S1_BIAS
        } else {
            0
        }
    })
}

#[target_feature(enable = "avx512f")]
fn load(a: &[i16; 32]) -> __m512i {
    // SAFETY: `a` is 64 readable bytes; the load has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm512_loadu_si512(a.as_ptr().cast())
    }
}

#[target_feature(enable = "avx512f")]
fn load32(a: &[i32; 16]) -> __m512i {
    // SAFETY: `a` is 64 readable bytes; the load has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm512_loadu_si512(a.as_ptr().cast())
    }
}

#[target_feature(enable = "avx512f")]
fn store(v: __m512i) -> [i16; 32] {
    let mut out = [0i16; 32];
    // SAFETY: `out` is 64 writable bytes; the store has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm512_storeu_si512(out.as_mut_ptr().cast(), v)
    };
    out
}

#[cfg(test)]
mod tests {
    use super::super::vector_tests::{
        replays_like_the_scalar_form, scalar_replay, shadows_and_trace,
    };
    use super::super::INITIAL;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// From any reachable shadows (a random prefix replayed first), any stretch of a random
        /// trace replays to the same costs and states as the scalar replay, whatever the bin
        /// skew and the stretch's offsets within its words, with either cost lookup.
        #[test]
        fn same_costs_and_states_as_the_scalar_replay(
            seed in any::<u64>(),
            skew in 0.0f64..1.0,
            prefix in 0usize..3000,
            from in 0usize..200,
            len in 0usize..20_000,
        ) {
            if !available() {
                return Ok(());
            }
            for costs in [CostLookup::Loads, CostLookup::Gather] {
                let replay = |l: &mut Lanes, w: &[u64], from, to| replay_with(costs, l, w, from, to);
                replays_like_the_scalar_form(seed, skew, prefix, from, len, replay)?;
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Two contexts replayed side by side reach the costs and states of the scalar replay
        /// of each, whatever their lengths, skews and starting offsets.
        #[test]
        fn two_side_by_side_replay_like_the_scalar_form(
            seeds in any::<(u64, u64)>(),
            skews in (0.0f64..1.0, 0.0f64..1.0),
            prefixes in (0usize..3000, 0usize..3000),
            froms in (0usize..200, 0usize..200),
            lens in (0usize..20_000, 0usize..20_000),
        ) {
            if !available() {
                return Ok(());
            }
            let (start_a, words_a) = shadows_and_trace(seeds.0, skews.0, prefixes.0, froms.0 + lens.0);
            let (start_b, words_b) = shadows_and_trace(seeds.1, skews.1, prefixes.1, froms.1 + lens.1);
            let (range_a, range_b) = (froms.0..froms.0 + lens.0, froms.1..froms.1 + lens.1);
            let (mut a, mut b) = (start_a, start_b);
            replay_two((&mut a, &words_a, range_a.clone()), (&mut b, &words_b, range_b.clone()));
            for (got, expected) in [
                (a, scalar_replay(start_a, &words_a, range_a)),
                (b, scalar_replay(start_b, &words_b, range_b)),
            ] {
                prop_assert_eq!(got.acc, expected.acc);
                prop_assert_eq!(got.p, expected.p);
                prop_assert_eq!(got.s0, expected.s0);
            }
        }
    }

    #[test]
    fn initial_lanes_hold_the_init_sets() {
        let lanes = state_lanes(&INITIAL.p, &INITIAL.s0);
        for (i, set) in INIT_SETS.iter().enumerate() {
            assert_eq!(lanes[i], i16::from(set.s0));
            assert_eq!(lanes[16 + i] - S1_BIAS + (lanes[i] << 4), set.p);
        }
        assert!(lanes[NUM_INIT_SETS..16].iter().all(|&v| v == 0));
        assert!(lanes[16 + NUM_INIT_SETS..].iter().all(|&v| v == 0));
    }
}

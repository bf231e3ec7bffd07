//! The replay with AVX-512 (F + BW).
//!
//! The nine shadows of a context are one vector of 16-bit lanes: S0 of set `i` in lane `i`, S1
//! in lane `16 + i`, the other lanes 0. A bin is then a handful of vector operations for the
//! update of all eighteen half-estimators, and up to nine cost lookups.
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
//! 21 % faster (chain 13 → 8 cycles). The states stay within ±3889 (§2.1), inside 16 bits.
//! The tests compare this replay with the scalar one.
//!
//! The nine costs come either from scalar loads or from one masked `vpgatherdd` into a
//! vector of sums ([`CostLookup`]). The gather makes a whole ResNet-50 encode 6–8 % faster on an
//! Intel Xeon with AVX-512 and made the replay 21 % slower on Zen 4, so the faster of the two is
//! timed once per process. Both skip, for a word of 64 bins, the sets that start it merged with
//! their leader (S0 and S1 both equal, [`merged_cost_source`]): their costs are the leader's.
//! That saves the scalar loads about a tenth of the replay on Zen 4. A gather costs the same
//! whatever its lane count, so there a word with at most eight sets to look up (97 % of dense
//! MiniLM's replayed bins) gathers two bins at a time ([`replay_word_paired`]): 16 % less time
//! per bin on the Xeon, where a bin then takes about 11 cycles against a chain of 8. On Zen 4,
//! with the masked update, a bin took 13–15 cycles against an update chain of 10–11 (`vpermw`
//! alone about 6): the loop was bound by the chain and the vector work around it together, and
//! forms that shorten the chain with more vector work (`vpshufb` lookups on an oriented state)
//! or compute the costs in the vector were slower (benchmarks.md, "Session 36").
//! Also tried and not faster on Zen 4: storing the cost indices and reading them back as
//! scalars (the store cannot forward to the narrower loads; stored for a whole word of 64
//! bins and summed after the word's updates, 11 % slower encodes: the update chain then no
//! longer hides under the loads), two contexts replayed side by
//! side (the registers then spill; with the gather on the Xeon, no faster than one), and two
//! contexts in one vector of sixteen lanes each (the AVX2 replay's layout): one update chain
//! for two bins, but twice the loads per step, so the same time per bin.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{
    flush, merged_cost_source, merged_key, s0_leader, skip_standing_run, word_spans, Lanes,
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

/// What the replay keeps in registers: constants, the shadows' lanes and the cost sums.
struct Registers {
    /// The curve for a 0 bin and for a 1 bin, indexed by `(S − d) >> k` modulo 32.
    curves: [__m512i; 2],
    /// `d`: 1 in every lane for a 0 bin, 0 for a 1 bin.
    offsets: [__m512i; 2],
    pre: __m512i,
    post: __m512i,
    /// Lane of the leader of each lane's set (its own lane for sets without one).
    leader: __m512i,
    s: __m512i,
    sums: [u32; NUM_INIT_SETS],
    /// The gather's sums: set `i` in 32-bit lane `i`, flushed with `sums`.
    vector_sums: __m512i,
}

#[target_feature(enable = "avx512f,avx512bw")]
fn replay_bins<const GATHER: bool>(lanes: &mut Lanes, words: &[u64], from: usize, to: usize) {
    let sets = |j: usize| (j < NUM_INIT_SETS).then_some(j);
    let mut r = Registers {
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
        s: load(&state_lanes(&lanes.p, &lanes.s0)),
        sums: [0; NUM_INIT_SETS],
        vector_sums: _mm512_setzero_si512(),
    };
    let mut unflushed = 0;
    for (word, lo, hi) in word_spans(words, from, to) {
        unflushed += (hi - lo) as usize;
        let lo = skip_standing_run(word, lo, hi, || set0_s1(r.s), || shadows(r.s), &mut r.sums);
        if lo == hi {
            // The whole word stood still (its costs are added; the flush below is still due).
        } else {
            // Members merged with their leaders now stay merged for the whole word: their
            // costs are not looked up again.
            let equal = _mm512_cmpeq_epi16_mask(r.s, _mm512_permutexvar_epi16(r.leader, r.s));
            let both = equal & (equal >> 16);
            let merged = merged_key(|set| (both >> set) & 1 != 0);
            macro_rules! dispatch {
                ($($m:literal)*) => {
                    match (GATHER, merged) {
                        (true, 0) => replay_word::<true, 0>(&mut r, word, lo, hi),
                        $((true, $m) => replay_word_paired::<$m>(&mut r, word, lo, hi),)*
                        $((false, $m) => replay_word::<false, $m>(&mut r, word, lo, hi),)*
                        _ => replay_word::<GATHER, 0>(&mut r, word, lo, hi),
                    }
                };
            }
            dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
        if unflushed > FLUSH_BINS - 64 {
            take_vector_sums(&mut r.sums, &mut r.vector_sums);
            flush(&mut lanes.acc, &mut r.sums);
            unflushed = 0;
        }
    }
    take_vector_sums(&mut r.sums, &mut r.vector_sums);
    flush(&mut lanes.acc, &mut r.sums);
    (lanes.p, lanes.s0) = shadows(r.s);
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

/// Replays bits `lo..hi` of `word`: with the gather, or with scalar loads of the costs of the
/// sets not merged with their leader under `MERGED` ([`merged_cost_source`]).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn replay_word<const GATHER: bool, const MERGED: u8>(
    r: &mut Registers,
    word: u64,
    lo: u32,
    hi: u32,
) {
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
        s = update(r, s, bin);
    }
    r.s = s;
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

/// [`replay_word_paired`]'s two `vpermw` controls: the first bin's sets to lanes `0..n`, the
/// second's to lanes `n..2n`.
const fn paired_picks(merged: u8) -> [[i16; 32]; 2] {
    let (sets, n) = looked_up(merged);
    [pick_pairs(&sets, 0, n), pick_pairs(&sets, n, n)]
}

/// [`replay_word_paired`]'s column offsets for the bins `(c & 1, c >> 1)`: `1024·(c & 1)` in
/// lanes `0..n`, `1024·(c >> 1)` in the others.
const fn paired_columns(merged: u8) -> [[i32; 16]; 4] {
    let (_, n) = looked_up(merged);
    let mut out = [[0; 16]; 4];
    let mut c = 0;
    while c < 4 {
        let mut lane = 0;
        while lane < 16 {
            let bin = if lane < n { c & 1 } else { c >> 1 };
            out[c][lane] = 1024 * bin as i32;
            lane += 1;
        }
        c += 1;
    }
    out
}

/// The lanes after a `bin` (module doc). Lanes without a shadow stay 0 for either bin, since
/// their step is 0 >> 15 or !c >> 15 = −1.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn update(r: &Registers, s: __m512i, bin: usize) -> __m512i {
    let d = r.offsets[bin];
    let q = _mm512_srav_epi16(_mm512_sub_epi16(s, d), r.pre);
    let step = _mm512_srav_epi16(_mm512_permutexvar_epi16(q, r.curves[bin]), r.post);
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

/// [`replay_word`] with the gather for a word whose `MERGED` key is not 0: at most eight sets
/// are looked up per bin, so one gather serves two bins. The index of each bin is offset by
/// its column (`1024·bin` in the two-column table), the two bins' indices are packed by one
/// `vpermw`, and the costs, summed per lane over the word, go to their sets at its end.
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
fn replay_word_paired<const MERGED: u8>(r: &mut Registers, word: u64, lo: u32, hi: u32) {
    let (sets, n) = const { looked_up(MERGED) };
    const { assert!(MERGED != 0 && 2 * looked_up(MERGED).1 <= 16) };
    // The first bin's sets in lanes 0..n, the second's in lanes n..2n.
    let pick = const { paired_picks(MERGED) };
    let pick = [load(&pick[0]), load(&pick[1])];
    let lanes = ((1u32 << (2 * n)) - 1) as __mmask16;
    let table: &[[u32; 1024]; 2] = est_bits_columns();
    let zero = _mm512_setzero_si512();
    let columns = const { paired_columns(MERGED) };
    let mut acc = zero;
    let mut s = r.s;
    let mut b = lo;
    while b + 1 < hi {
        let first = ((word >> b) & 1) as usize;
        let second = ((word >> (b + 1)) & 1) as usize;
        let before = s;
        s = update(r, s, first);
        let pairs = _mm512_or_si512(
            _mm512_permutexvar_epi16(pick[0], before),
            _mm512_permutexvar_epi16(pick[1], s),
        );
        s = update(r, s, second);
        let indices = indices_of(pairs, load32(&columns[first | (second << 1)]));
        // SAFETY: the lanes under the mask hold `1024·bin + i` with i < 1024 (masked above),
        // inside the 2048 `u32`s of the two columns, which are contiguous.
        #[allow(unsafe_code)]
        let costs = unsafe {
            _mm512_mask_i32gather_epi32::<4>(zero, lanes, indices, table.as_ptr().cast())
        };
        acc = _mm512_add_epi32(acc, costs);
        b += 2;
    }
    r.s = s;
    let mut sums = [0u32; 16];
    // SAFETY: `sums` is 64 writable bytes; the store has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm512_storeu_si512(sums.as_mut_ptr().cast(), acc)
    };
    let mut per_set = [0u32; NUM_INIT_SETS];
    for (i, &set) in sets[..n].iter().enumerate() {
        per_set[set] = sums[i] + sums[n + i];
    }
    for (k, sum) in r.sums.iter_mut().enumerate() {
        *sum += per_set[merged_cost_source(MERGED, k)];
    }
    if b < hi {
        replay_word::<true, 0>(r, word, b, hi);
    }
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
    use super::super::vector_tests::replays_like_the_scalar_form;
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

//! The replay with AVX2, for x86-64 CPUs without AVX-512 (AMD before Zen 4, Intel client cores).
//!
//! Eighteen half-estimators do not fit one 256-bit vector of 16-bit lanes, but sixteen are
//! enough: set 7's S0 never leaves 0 and its S1 always equals set 3's (§2.2; same shift1 and
//! start), so set 7 needs no lane of its own. Lane `k` holds S0 of set `SETS[k]` and lane
//! `8 + k` its S1. Per bin, with `sgn` = ±1 from the bin:
//!
//! - `j = (sgn·S) >> k` (k = 3 for S0, 7 for S1) is one signed high multiply by `sgn·2^(16−k)`;
//! - `CURVE[16 + j]` is two byte shuffles: every curve value is a multiple of 16 below 4096,
//!   so `CURVE / 16` fits a byte, and `j` spans −16..=15 (§2.1 bounds), one 16-entry table for
//!   the negative half and one for the rest;
//! - `CURVE >> shift` with shift 4..=7 is `(CURVE/16 · 2^(7−shift)) >> 3`: one multiply-add of
//!   bytes (which also drops the shuffle's high byte) and one shift;
//! - the step gets its sign back and is added.
//!
//! The nine costs are scalar loads (a `vpgatherdd` of eight was slower on Zen 3), skipping,
//! as the AVX-512 replay does, the sets merged with their leader for a word. The tests compare
//! this replay with the scalar one.

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{
    flush, merged_cost_source, merged_key, s0_leader, skip_standing_run, word_spans, Lanes,
    S0_PAIRS,
};
use crate::tables::{est_bits_columns, CURVE, INIT_SETS, NUM_INIT_SETS};

/// The sets with lanes, in lane order; set 7 borrows set 3's S1 and has S0 = 0.
const SETS: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 8];
const BORROWER: usize = 7;
const LENDER: usize = 3;
const _: () = assert!(SETS[LENDER] == LENDER, "set 3's lane is lane 3");

const _: () = {
    assert!(INIT_SETS[BORROWER].shift1 == INIT_SETS[LENDER].shift1);
    assert!(INIT_SETS[BORROWER].s0 == 0 && INIT_SETS[BORROWER].p == INIT_SETS[LENDER].p);
    assert!(INIT_SETS[LENDER].s0 == 0);
    // `CURVE[16] >> shift0` is 0 for set 7, so its S0 stays 0.
    assert!(64 >> INIT_SETS[BORROWER].shift0 == 0);
    let mut i = 0;
    while i < NUM_INIT_SETS {
        assert!(INIT_SETS[i].shift0 >= 4 && INIT_SETS[i].shift0 <= 7);
        assert!(INIT_SETS[i].shift1 >= 4 && INIT_SETS[i].shift1 <= 7);
        i += 1;
    }
};

// The members of `S0_PAIRS` and their leaders have the same lane numbers as set numbers, so
// the leader shuffle and the merged key take set numbers for lanes.
const _: () = {
    let mut k = 0;
    while k < S0_PAIRS.len() {
        let (member, leader) = S0_PAIRS[k];
        assert!(SETS[member] == member && SETS[leader] == leader);
        k += 1;
    }
};

/// Whether this CPU can run [`replay`] and the environment variable `NNC_NO_AVX2` is unset
/// (it selects the scalar replay, to compare the two or to rule this one out).
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx2") && std::env::var_os("NNC_NO_AVX2").is_none()
    })
}

/// [`Lanes::replay`] on AVX2, falling back to [`Lanes::replay_scalar`] where the CPU lacks it
/// (or for shadows where set 7 does not match set 3, which no replay from the init states
/// produces).
pub(super) fn replay(lanes: &mut Lanes, words: &[u64], from: usize, to: usize) {
    if !available() || !borrower_matches(lanes) {
        return lanes.replay_scalar(words, from, to);
    }
    // SAFETY: `available` checked that the CPU has AVX2.
    #[allow(unsafe_code)]
    unsafe {
        replay_bins(lanes, words, from, to)
    }
}

fn s1(lanes: &Lanes, i: usize) -> i16 {
    lanes.p[i] - (i16::from(lanes.s0[i]) << 4)
}

fn borrower_matches(lanes: &Lanes) -> bool {
    lanes.s0[BORROWER] == 0 && s1(lanes, BORROWER) == s1(lanes, LENDER)
}

/// Bins replayed between two flushes of the 32-bit cost sums into the 64-bit accumulators (a
/// cost is below 2^18, so 2^13 of them fit).
const FLUSH_BINS: usize = 1 << 13;

/// What the replay keeps in registers: constants, the shadows' lanes and the cost sums.
struct Registers {
    /// `(sgn·S) >> k` as the high half of `S · sgn·2^(16−k)`, for bin 0 and bin 1.
    towards: [__m256i; 2],
    signs: [__m256i; 2],
    /// `CURVE[16 + j] / 16` for j < 0 (entry `j + 16`) and j >= 0 (entry `j`), the same in
    /// both 128-bit halves.
    negative: __m256i,
    positive: __m256i,
    /// The byte multipliers `2^(7 − shift)` in each lane's low byte, 0 in the high byte, so
    /// whatever the shuffles put in a lane's high byte drops out.
    scale: __m256i,
    /// Byte shuffle putting each lane's leader (`S0_PAIRS`) in its place, per 128-bit half.
    leader: __m256i,
    s: __m256i,
    sums: [u32; NUM_INIT_SETS],
}

#[target_feature(enable = "avx2")]
fn replay_bins(lanes: &mut Lanes, words: &[u64], from: usize, to: usize) {
    let is_s0 = |j: usize| j < 8;
    let shift = |j: usize| {
        let set = &INIT_SETS[SETS[j % 8]];
        if is_s0(j) {
            set.shift0
        } else {
            set.shift1
        }
    };
    let k_scale = |j: usize| if is_s0(j) { 1 << 13 } else { 1 << 9 };
    let mut r = Registers {
        towards: [load(&lanes_of(|j| -k_scale(j))), load(&lanes_of(k_scale))],
        signs: [_mm256_set1_epi16(-1), _mm256_set1_epi16(1)],
        negative: table(&std::array::from_fn(|e| CURVE[e % 16] / 16)),
        positive: table(&std::array::from_fn(|e| CURVE[16 + e % 16] / 16)),
        scale: load(&lanes_of(|j| 1 << (7 - shift(j)))),
        leader: table(&std::array::from_fn(|e| {
            2 * s0_leader(e % 16 / 2) as i32 + e as i32 % 2
        })),
        s: load(&state_lanes(lanes)),
        sums: [0; NUM_INIT_SETS],
    };
    let mut unflushed = 0;
    for (word, lo, hi) in word_spans(words, from, to) {
        unflushed += (hi - lo) as usize;
        let lo = skip_standing_run(word, lo, hi, || set0_s1(r.s), || shadows(r.s), &mut r.sums);
        // Members merged with their leaders now stay merged for the whole word: their costs
        // are not looked up again. Two mask bits per lane, S0 in the low half, S1 in the high.
        let equal =
            _mm256_movemask_epi8(_mm256_cmpeq_epi16(r.s, _mm256_shuffle_epi8(r.s, r.leader)))
                as u32;
        let both = equal & (equal >> 16);
        let merged = merged_key(|set| (both >> (2 * set)) & 1 != 0);
        macro_rules! dispatch {
            ($($m:literal)*) => {
                match merged {
                    $($m => replay_word::<$m>(&mut r, word, lo, hi),)*
                    _ => replay_word::<0>(&mut r, word, lo, hi),
                }
            };
        }
        if lo < hi {
            dispatch!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
        if unflushed > FLUSH_BINS - 64 {
            flush(&mut lanes.acc, &mut r.sums);
            unflushed = 0;
        }
    }
    flush(&mut lanes.acc, &mut r.sums);
    (lanes.p, lanes.s0) = shadows(r.s);
}

/// The shadows `(P, S0)` of the nine sets from the lanes.
#[target_feature(enable = "avx2")]
fn shadows(s: __m256i) -> ([i16; NUM_INIT_SETS], [i8; NUM_INIT_SETS]) {
    let out = store(s);
    let mut p = [0; NUM_INIT_SETS];
    let mut s0 = [0; NUM_INIT_SETS];
    for (k, &set) in SETS.iter().enumerate() {
        s0[set] = out[k] as i8;
        p[set] = out[8 + k] + (out[k] << 4);
    }
    s0[BORROWER] = 0;
    p[BORROWER] = out[8 + LENDER];
    (p, s0)
}

/// Set 0's S1, lane 8.
#[target_feature(enable = "avx2")]
fn set0_s1(s: __m256i) -> i16 {
    _mm_extract_epi16::<0>(_mm256_extracti128_si256::<1>(s)) as i16
}

/// Replays bits `lo..hi` of `word`, looking up the costs of the sets not merged with their
/// leader under `MERGED` ([`merged_cost_source`]).
#[target_feature(enable = "avx2")]
#[inline]
fn replay_word<const MERGED: u8>(r: &mut Registers, word: u64, lo: u32, hi: u32) {
    // `j`'s low byte indexes the positive table as it is (a negative `j` has its top bit set,
    // which zeroes the byte) and the negative table with that bit flipped.
    let low_top = _mm256_set1_epi16(0x80);
    let bias = _mm_set1_epi16(512);
    let est = est_bits_columns();
    let mut s = r.s;
    for b in lo..hi {
        let bin = ((word >> b) & 1) as usize;
        // Costs first, from the states before this bin's update: index 512 + (P >> 3) with
        // P = S1 + 16·S0 (within 25..=998 by §2.1; masked like the scalar replay).
        let s0 = _mm256_castsi256_si128(s);
        let s1 = _mm256_extracti128_si256::<1>(s);
        let p = _mm_add_epi16(s1, _mm_slli_epi16::<4>(s0));
        let index = _mm_add_epi16(_mm_srai_epi16::<3>(p), bias);
        let borrowed = _mm_add_epi16(_mm_srai_epi16::<3>(s1), bias);
        let column = &est[bin];
        let packed = [
            _mm_cvtsi128_si64(index) as u64,
            _mm_extract_epi64::<1>(index) as u64,
        ];
        let mut costs = [0u32; NUM_INIT_SETS];
        for (k, &set) in SETS.iter().enumerate() {
            // (The compiler turns these loads into vector inserts and the sums into vector
            // adds; volatile scalar loads, as in the AVX-512 replay, timed the same on Zen 3.)
            if merged_cost_source(MERGED, set) == set {
                let i = (packed[k / 4] >> (16 * (k % 4))) as usize & 1023;
                costs[set] = column[i];
            }
        }
        let i = _mm_extract_epi16::<{ LENDER as i32 }>(borrowed) as usize & 1023;
        costs[BORROWER] = column[i];
        for (k, sum) in r.sums.iter_mut().enumerate() {
            *sum += costs[merged_cost_source(MERGED, k)];
        }
        // The update.
        let j = _mm256_mulhi_epi16(s, r.towards[bin]);
        let curve = _mm256_or_si256(
            _mm256_shuffle_epi8(r.negative, _mm256_xor_si256(j, low_top)),
            _mm256_shuffle_epi8(r.positive, j),
        );
        let step = _mm256_srli_epi16::<3>(_mm256_maddubs_epi16(curve, r.scale));
        s = _mm256_add_epi16(s, _mm256_sign_epi16(step, r.signs[bin]));
    }
    r.s = s;
}

fn lanes_of(f: impl Fn(usize) -> i16) -> [i16; 16] {
    std::array::from_fn(f)
}

/// A shuffle table from 32 values below 256 (the same 16 in both 128-bit halves).
#[target_feature(enable = "avx2")]
fn table(values: &[i32; 32]) -> __m256i {
    let bytes: [u8; 32] = values.map(|v| {
        debug_assert!((0..256).contains(&v));
        v as u8
    });
    // SAFETY: `bytes` is 32 readable bytes; the load has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_loadu_si256(bytes.as_ptr().cast())
    }
}

/// The vector lanes of the shadows: S0 of `SETS[k]` in lane `k`, its S1 in lane `8 + k`.
fn state_lanes(lanes: &Lanes) -> [i16; 16] {
    lanes_of(|j| {
        let set = SETS[j % 8];
        if j < 8 {
            i16::from(lanes.s0[set])
        } else {
            s1(lanes, set)
        }
    })
}

#[target_feature(enable = "avx2")]
fn load(a: &[i16; 16]) -> __m256i {
    // SAFETY: `a` is 32 readable bytes; the load has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_loadu_si256(a.as_ptr().cast())
    }
}

#[target_feature(enable = "avx2")]
fn store(v: __m256i) -> [i16; 16] {
    let mut out = [0i16; 16];
    // SAFETY: `out` is 32 writable bytes; the store has no alignment requirement.
    #[allow(unsafe_code)]
    unsafe {
        _mm256_storeu_si256(out.as_mut_ptr().cast(), v)
    };
    out
}

#[cfg(test)]
mod tests {
    use super::super::vector_tests::replays_like_the_scalar_form;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// From any reachable shadows (a random prefix replayed first), any stretch of a random
        /// trace replays to the same costs and states as the scalar replay, whatever the bin
        /// skew and the stretch's offsets within its words.
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
            replays_like_the_scalar_form(seed, skew, prefix, from, len, replay)?;
        }
    }

    /// Saturated estimators (long runs of one bin drive S0 and S1 to their bounds, where the
    /// curve index reaches both ends of its range) replay like the scalar replay.
    #[test]
    fn saturating_runs_agree() {
        if !available() {
            return;
        }
        for pattern in [0u64, !0, 0xffff_0000_ffff_0000, 1, !1] {
            let words = vec![pattern; 400];
            let mut scalar = Lanes::INITIAL;
            scalar.replay_scalar(&words, 0, 400 * 64);
            let mut simd = Lanes::INITIAL;
            replay(&mut simd, &words, 0, 400 * 64);
            assert_eq!(simd.acc, scalar.acc, "{pattern:x}");
            assert_eq!((simd.p, simd.s0), (scalar.p, scalar.s0), "{pattern:x}");
        }
    }

    #[test]
    fn lanes_round_trip_and_set_7_matches_set_3() {
        let lanes = Lanes::INITIAL;
        assert!(borrower_matches(&lanes));
        let v = state_lanes(&lanes);
        for (k, &set) in SETS.iter().enumerate() {
            assert_eq!(v[k], i16::from(INIT_SETS[set].s0));
            assert_eq!(v[8 + k] + (v[k] << 4), INIT_SETS[set].p);
        }
    }
}

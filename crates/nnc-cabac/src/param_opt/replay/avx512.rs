//! The replay with AVX-512 (F + BW).
//!
//! The nine shadows of a context are one vector of 16-bit lanes: S0 of set `i` in lane `i`, S1
//! in lane `16 + i`, the other lanes 0. A bin is then a handful of vector operations for the
//! update of all eighteen half-estimators, and nine scalar loads for the costs.
//!
//! Same arithmetic as the scalar replay, written as the §2.3 formula instead of its tables:
//! `S += sgn·(CURVE[16 + ((sgn·S) >> k)] >> shift)` with `k` = 3 for S0 and 7 for S1. The curve
//! lookup is one `vpermw` (32 entries of 16 bits), whose index wraps modulo 32, so the table is
//! stored rotated by 16 and the `+ 16` disappears. The states stay within ±3889 (§2.1), inside
//! 16 bits. The tests compare this replay with the scalar one.
//!
//! Tried and slower on Zen 4: gathering the nine costs (`vpgatherdd`), storing the cost indices
//! and reading them back as scalars (the store cannot forward to the narrower loads), and two
//! contexts replayed side by side (the registers then spill).

use std::arch::x86_64::*;
use std::sync::OnceLock;

use super::{word_spans, Lanes};
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

/// [`Lanes::replay`] on AVX-512, falling back to [`Lanes::replay_scalar`] where the CPU lacks
/// it.
pub(super) fn replay(lanes: &mut Lanes, words: &[u64], from: usize, to: usize) {
    if !available() {
        return lanes.replay_scalar(words, from, to);
    }
    // SAFETY: the CPU has AVX-512 F and BW (checked just above), all `replay_bins` needs.
    #[allow(unsafe_code)]
    unsafe {
        replay_bins(lanes, words, from, to)
    }
}

/// Bins replayed between two flushes of the 32-bit cost sums into the 64-bit accumulators: a
/// cost is below 2^18 (§2.4: at most about 7.3 bits in 1/32768 bit), so 2^13 of them fit.
const FLUSH_BINS: usize = 1 << 13;

#[target_feature(enable = "avx512f,avx512bw")]
fn replay_bins(lanes: &mut Lanes, words: &[u64], from: usize, to: usize) {
    let sets = |j: usize| (j < NUM_INIT_SETS).then_some(j);
    let curve = load(&lanes_of(|j| CURVE[(j + 16) % 32] as i16));
    let pre = load(&lanes_of(|j| if j < 16 { 3 } else { 7 }));
    // Lanes without a shadow shift by 15: their step is always 0, so they stay 0.
    let post = load(&lanes_of(|j| match (sets(j), sets(j.wrapping_sub(16))) {
        (Some(i), _) => i16::from(INIT_SETS[i].shift0),
        (_, Some(i)) => i16::from(INIT_SETS[i].shift1),
        _ => 15,
    }));
    let mut s = load(&state_lanes(&lanes.p, &lanes.s0));
    let est = est_bits_columns();
    let zero = _mm512_setzero_si512();
    let bias = _mm256_set1_epi16(512);
    let mut sums = [0u32; NUM_INIT_SETS];
    let mut unflushed = 0;
    for (word, lo, hi) in word_spans(words, from, to) {
        for b in lo..hi {
            let bin = ((word >> b) & 1) as usize;
            // Costs first, from the states before this bin's update: P = S1 + 16·S0, index
            // 512 + (P >> 3) (within 25..=998 by §2.1; masked like the scalar replay).
            let p = _mm256_add_epi16(
                _mm512_extracti64x4_epi64::<1>(s),
                _mm256_slli_epi16::<4>(_mm512_castsi512_si256(s)),
            );
            let index = _mm256_add_epi16(_mm256_srai_epi16::<3>(p), bias);
            // The indices come out of the vector as 64-bit words, four per word.
            let packed = [
                _mm256_extract_epi64::<0>(index) as u64,
                _mm256_extract_epi64::<1>(index) as u64,
                _mm256_extract_epi64::<2>(index) as u64,
            ];
            let column = &est[bin];
            for (k, sum) in sums.iter_mut().enumerate() {
                let i = (packed[k / 4] >> (16 * (k % 4))) as usize & 1023;
                // A volatile read, so the compiler does not turn the loads into a gather.
                // SAFETY: a read through a reference to an initialised `u32` of `column`.
                #[allow(unsafe_code)]
                let cost = unsafe { std::ptr::read_volatile(&column[i]) };
                *sum += cost;
            }
            // The update: `sgn·S` is `S` negated in every lane when the bin is 0.
            let negate: __mmask32 = (bin as u32).wrapping_sub(1);
            let towards = _mm512_mask_sub_epi16(s, negate, zero, s);
            let step = _mm512_srlv_epi16(
                _mm512_permutexvar_epi16(_mm512_srav_epi16(towards, pre), curve),
                post,
            );
            s = _mm512_add_epi16(s, _mm512_mask_sub_epi16(step, negate, zero, step));
        }
        unflushed += (hi - lo) as usize;
        if unflushed > FLUSH_BINS - 64 {
            flush(&mut lanes.acc, &mut sums);
            unflushed = 0;
        }
    }
    flush(&mut lanes.acc, &mut sums);
    let out = store(s);
    for i in 0..NUM_INIT_SETS {
        lanes.s0[i] = out[i] as i8;
        lanes.p[i] = out[16 + i] + (out[i] << 4);
    }
}

fn flush(acc: &mut [u64; NUM_INIT_SETS], sums: &mut [u32; NUM_INIT_SETS]) {
    for (a, v) in acc.iter_mut().zip(std::mem::take(sums)) {
        *a += u64::from(v);
    }
}

fn lanes_of(f: impl Fn(usize) -> i16) -> [i16; 32] {
    std::array::from_fn(f)
}

/// The lanes of the shadows `(P, S0)`: S0 of set `i` in lane `i`, `S1 = P − 16·S0` in lane
/// `16 + i`.
fn state_lanes(p: &[i16; NUM_INIT_SETS], s0: &[i8; NUM_INIT_SETS]) -> [i16; 32] {
    lanes_of(|j| {
        if j < NUM_INIT_SETS {
            i16::from(s0[j])
        } else if (16..16 + NUM_INIT_SETS).contains(&j) {
            p[j - 16] - (i16::from(s0[j - 16]) << 4)
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
    use super::super::INITIAL;
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
            let mut x = seed | 1;
            let mut bits = |n: usize| -> Vec<u64> {
                let mut words = vec![0u64; n.div_ceil(64) + 1];
                for i in 0..n {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    if ((x >> 11) as f64 / (1u64 << 53) as f64) < skew {
                        words[i / 64] |= 1 << (i % 64);
                    }
                }
                words
            };
            let mut start = Lanes::INITIAL;
            start.replay_scalar(&bits(prefix), 0, prefix);
            let words = bits(from + len);
            let mut scalar = start;
            scalar.replay_scalar(&words, from, from + len);
            let mut simd = start;
            replay(&mut simd, &words, from, from + len);
            prop_assert_eq!(simd.acc, scalar.acc);
            prop_assert_eq!(simd.p, scalar.p);
            prop_assert_eq!(simd.s0, scalar.s0);
        }
    }

    #[test]
    fn initial_lanes_hold_the_init_sets() {
        let lanes = state_lanes(&INITIAL.p, &INITIAL.s0);
        for (i, set) in INIT_SETS.iter().enumerate() {
            assert_eq!(lanes[i], i16::from(set.s0));
            assert_eq!(lanes[16 + i] + (lanes[i] << 4), set.p);
        }
        assert!(lanes[NUM_INIT_SETS..16].iter().all(|&v| v == 0));
        assert!(lanes[16 + NUM_INIT_SETS..].iter().all(|&v| v == 0));
    }
}

//! Dependent-quantization state machine as seen by the entropy coder (deepcabac.md §5.2).

use crate::tables::DQ_STATE_TRANSITION;

/// Next DQ state after coding level `k` in `state` (parity of |k|).
#[inline(always)]
pub const fn next_state(state: u8, k: i32) -> u8 {
    DQ_STATE_TRANSITION[(state & 7) as usize][(k & 1) as usize]
}

/// Reconstruction index of coded level `k` in `state`: 0, or `2k − sgn(k)·(state & 1)`.
/// `None` if it does not fit an i32.
#[inline(always)]
pub fn reconstruction_index(k: i32, state: u8) -> Option<i32> {
    if k == 0 {
        return Some(0);
    }
    let odd = i64::from(state & 1);
    let k = i64::from(k);
    let q = if k > 0 { 2 * k - odd } else { 2 * k + odd };
    i32::try_from(q).ok()
}

/// Coded level for reconstruction index `q` in `state`: `(q + sgn(q)·(state & 1)) >> 1`.
///
/// Reference quirk: an index of the wrong parity for the state is silently floored.
#[inline(always)]
pub const fn coded_level(q: i32, state: u8) -> i32 {
    if q == 0 {
        return 0;
    }
    let odd = (state & 1) as i64;
    let q = q as i64;
    let v = if q < 0 { q - odd } else { q + odd };
    (v >> 1) as i32
}

/// The state reached from `state` after coding the reconstruction indices `indices` (each as
/// [`coded_level`] in the state it meets).
///
/// Two indices per step through a table of index-class pairs, without a branch on their signs:
/// the encoder scans whole tensors with this before coding them in parallel, and the
/// level-by-level form's mispredicted sign branches made that scan about four times slower.
#[inline]
pub fn advance_over(state: u8, indices: &[i32]) -> u8 {
    let mut pairs = indices.chunks_exact(2);
    let mut s = state & 7;
    for pair in &mut pairs {
        let key = index_class(pair[0]) | (index_class(pair[1]) << 4);
        s = PAIR_STEPS[(usize::from(s) << 8) | key];
    }
    pairs
        .remainder()
        .iter()
        .fold(s, |s, &q| next_state(s, coded_level(q, s)))
}

/// What the next state depends on in a reconstruction index: the parity of its coded level
/// is bit 1 of `q`, `q + 1` or `q − 1` (by the state's quantizer and the sign), so `q mod 4`,
/// the sign, and whether it is 0. Classes 0..=3 positive, 4..=7 negative, 8 zero.
#[inline(always)]
fn index_class(q: i32) -> usize {
    (q & 3) as usize | (usize::from(q < 0) << 2) | (usize::from(q == 0) << 3)
}

/// A reconstruction index of each [`index_class`] (classes 9..=15 do not occur).
const fn class_representative(class: usize) -> i32 {
    match class {
        0..=3 => 4 + class as i32,
        4..=7 => class as i32 - 8,
        _ => 0,
    }
}

/// `PAIR_STEPS[(state << 8) | c0 | (c1 << 4)]`: the state after two indices of classes `c0`
/// then `c1`, from `state`.
static PAIR_STEPS: [u8; 8 * 256] = {
    const fn step(state: u8, class: usize) -> u8 {
        let q = class_representative(class);
        next_state(state, coded_level(q, state))
    }
    let mut t = [0u8; 8 * 256];
    let mut i = 0;
    while i < t.len() {
        let state = (i >> 8) as u8;
        t[i] = step(step(state, i & 15), (i >> 4) & 15);
        i += 1;
    }
    t
};

/// The state reached from `state` after `count` zero levels (cycles of the zero transition divide 4).
#[inline]
pub fn advance_zeros(state: u8, count: usize) -> u8 {
    let mut s = state & 7;
    for _ in 0..count % 4 {
        s = DQ_STATE_TRANSITION[s as usize][0];
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_round_trips() {
        for state in 0..8u8 {
            for k in -50..=50 {
                let q = reconstruction_index(k, state).unwrap();
                assert_eq!(coded_level(q, state), k, "state {state} k {k}");
            }
        }
        assert_eq!(reconstruction_index(-2, 1), Some(-3));
        assert_eq!(reconstruction_index(2, 1), Some(3));
        assert_eq!(reconstruction_index(i32::MAX, 0), None);
    }

    proptest::proptest! {
        /// The pair table gives the state of the level-by-level scan, over indices of every
        /// sign and residue, the extremes included, and odd lengths.
        #[test]
        fn advance_over_steps_like_coded_levels(
            state in 0u8..8,
            indices in proptest::collection::vec(
                proptest::prop_oneof![-9i32..=9, proptest::prelude::any::<i32>(),
                    proptest::strategy::Just(i32::MIN), proptest::strategy::Just(i32::MAX)],
                0..200,
            ),
        ) {
            let one_by_one = indices
                .iter()
                .fold(state, |s, &q| next_state(s, coded_level(q, s)));
            proptest::prop_assert_eq!(advance_over(state, &indices), one_by_one);
        }
    }

    #[test]
    fn zero_advance_matches_steps() {
        for s in 0..8u8 {
            let mut t = s;
            for count in 0..20usize {
                assert_eq!(advance_zeros(s, count), t);
                t = next_state(t, 0);
            }
        }
    }
}

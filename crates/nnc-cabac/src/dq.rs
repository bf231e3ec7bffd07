//! Dependent-quantization state machine as seen by the entropy coder (deepcabac.md §5.2).

use crate::tables::DQ_STATE_TRANSITION;

/// Next DQ state after coding level `k` in `state` (parity of |k|).
#[inline(always)]
pub fn next_state(state: u8, k: i32) -> u8 {
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
pub fn coded_level(q: i32, state: u8) -> i32 {
    if q == 0 {
        return 0;
    }
    let odd = i64::from(state & 1);
    let q = i64::from(q);
    let v = if q < 0 { q - odd } else { q + odd };
    (v >> 1) as i32
}

/// The state reached from `state` after coding the reconstruction indices `indices` (each as
/// [`coded_level`] in the state it meets).
#[inline]
pub fn advance_over(state: u8, indices: &[i32]) -> u8 {
    indices
        .iter()
        .fold(state, |s, &q| next_state(s, coded_level(q, s)))
}

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

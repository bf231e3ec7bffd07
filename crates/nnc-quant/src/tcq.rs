//! Dependent quantization: the 8-state trellis (TCQ, `dq_flag = 1`), deepcabac.md §5.2–5.3.
//!
//! The trellis runs in scan order. Each weight offers five candidates: four reconstruction indices
//! `q0 .. q0+3` around `|w|/Δ` (slot `q & 3`) and zero (slot 4). Every state keeps the cheapest of its
//! three incoming branches; the final path is traced back from the cheapest end state.

use std::f64::consts::LN_2;

use nnc_cabac::RateModel;

use crate::scan::{MatrixShape, ScanSegments};
use crate::Result;

/// Next state after coding a level of the given parity: `STATE_TRANSITION[state][parity]`.
pub const STATE_TRANSITION: [[u8; 2]; 8] = [
    [0, 2],
    [7, 5],
    [1, 3],
    [6, 4],
    [2, 0],
    [5, 7],
    [3, 1],
    [4, 6],
];

/// Slot of the zero candidate.
const ZERO: u8 = 4;

/// Incoming branches `(previous state, candidate slot)` of every current state, in the reference's
/// evaluation order. Ties keep the earlier branch.
const BRANCHES: [[(u8, u8); 3]; 8] = [
    [(0, 0), (0, ZERO), (4, 2)],
    [(2, 0), (2, ZERO), (6, 2)],
    [(0, 2), (4, 0), (4, ZERO)],
    [(2, 2), (6, 0), (6, ZERO)],
    [(3, 1), (7, 3), (7, ZERO)],
    [(1, 1), (5, 3), (5, ZERO)],
    [(3, 3), (3, ZERO), (7, 1)],
    [(1, 3), (1, ZERO), (5, 1)],
];

/// Start cost of the states other than 0 (the reference's `0.5 · DBL_MAX`).
const UNREACHED: f64 = 0.5 * f64::MAX;

/// What the traceback needs from one trellis step: the candidate grid and each state's branch.
#[derive(Clone, Copy)]
struct Step {
    /// `σ · q0`, the signed first candidate index (never 0 since `q0 >= 1`).
    signed_q0: i32,
    /// Two bits per current state: the index of the winning branch in [`BRANCHES`].
    branch: u16,
}

/// Candidate distortions for one weight, plus the data to rebuild its candidate levels.
#[derive(Clone, Copy)]
pub(crate) struct Candidates {
    /// Distortion per slot (`ds · (org − q)²`; slot 4 is zero).
    pub(crate) dist: [f64; 5],
    /// `σ · q0`.
    pub(crate) signed_q0: i32,
}

impl Candidates {
    /// Candidates for weight `w` (`org = (qscale · w) · σ` in `f64`), distortions scaled by `ds`.
    #[inline]
    pub(crate) fn new(w: f32, qscale: f64, ds: f64) -> Self {
        let value = f64::from(w);
        let sign: i32 = if value < 0.0 { -1 } else { 1 };
        let org = qscale * value * f64::from(sign);
        // Only reachable values matter; the clamp keeps q0 + 3 inside i32 for absurd inputs, where
        // the reference's int arithmetic is undefined anyway.
        let q0 = ((org as i64) - 1).clamp(1, i64::from(i32::MAX) - 3);
        let mut dist = [0.0; 5];
        dist[usize::from(ZERO)] = ds * (org * org);
        for q in q0..q0 + 4 {
            let diff = org - q as f64;
            dist[(q & 3) as usize] = ds * (diff * diff);
        }
        Self {
            dist,
            signed_q0: sign * q0 as i32,
        }
    }
}

/// The coded level `σ · ((q + 1) >> 1)` of candidate `slot` (0 for the zero slot).
#[inline]
fn level_of(signed_q0: i32, slot: u8) -> i32 {
    if slot == ZERO {
        return 0;
    }
    let q0 = i64::from(signed_q0.unsigned_abs());
    let q = q0 + (i64::from(slot) - q0).rem_euclid(4);
    signed_q0.signum() * ((q + 1) >> 1) as i32
}

/// Reconstruction index of coded level `k` in `state`: `2k − sgn(k)·(state & 1)`.
#[inline]
pub fn reconstruction_index(k: i32, state: u8) -> i32 {
    let odd = i32::from(state & 1);
    match k.signum() {
        0 => 0,
        1 => 2 * k - odd,
        _ => 2 * k + odd,
    }
}

/// Overflow test of the TCQ: `round(f32(w · f32(1/Δ)))` outside `[−(2^31 − 2), 2^31 − 3]` fails.
///
/// Reference quirk: the bounds come from the C++ constant expressions `(1 << 31) − 3` and
/// `−((1 << 31) − 2)` evaluated with two's-complement wrap.
#[inline]
pub(crate) fn overflows(w: f32, check_scale: f32) -> bool {
    let rounded = f64::from((w * check_scale).round());
    !(-2_147_483_646.0..=2_147_483_645.0).contains(&rounded)
}

/// `f32(1/Δ)` as the TCQ's overflow check computes it.
///
/// Reference quirk: the TCQ divides in `f64` (Δ widened from `f32`) and rounds the result to
/// `f32`, while the URQ divides in `f32`.
pub(crate) fn check_scale(step: f32) -> f32 {
    (1.0 / f64::from(step)) as f32
}

/// TCQ with `lambda_scale <= 0` (distortion only). Writes reconstruction indices in row-major order.
///
/// Returns `Ok(false)` when a weight fails the overflow test (the caller then raises qp).
pub(crate) fn quantize_plain(
    weights: &[f32],
    shape: MatrixShape,
    scan_order: u8,
    step: f32,
    levels: &mut [i32],
) -> Result<bool> {
    let qstep = f64::from(step);
    let qscale = 1.0 / qstep;
    let check = check_scale(step);

    let mut cost = [UNREACHED; 8];
    cost[0] = 0.0;
    let mut steps: Vec<Step> = Vec::with_capacity(weights.len());

    for run in ScanSegments::new(shape, scan_order)? {
        for &w in &weights[run] {
            if overflows(w, check) {
                return Ok(false);
            }
            let cand = Candidates::new(w, qscale, 1.0);
            let mut next = [0.0; 8];
            let mut branch = 0u16;
            for (state, branches) in BRANCHES.iter().enumerate() {
                let mut best = f64::MAX;
                let mut best_idx = 0u16;
                for (idx, &(prev, slot)) in branches.iter().enumerate() {
                    let c = cost[usize::from(prev)] + cand.dist[usize::from(slot)];
                    if c < best {
                        best = c;
                        best_idx = idx as u16;
                    }
                }
                next[state] = best;
                branch |= best_idx << (2 * state);
            }
            cost = next;
            steps.push(Step {
                signed_q0: cand.signed_q0,
                branch,
            });
        }
    }

    trace_back(&steps, &cost, shape, scan_order, levels)?;
    Ok(true)
}

/// `λf = λ_scale · 4 · (ln2 / 6) · 0.7`, the TCQ's Lagrange factor (`<= 0`: distortion only).
pub(crate) fn lambda_factor(lambda_scale: f32) -> f64 {
    f64::from(lambda_scale) * 4.0 * (LN_2 / 6.0) * 0.7
}

/// Rate-aware TCQ (`λf > 0`): branch cost `(cost[prev] + ds·dist) + rate`, `ds = 32768 / λf`.
///
/// Every trellis state owns a rate model (`base`, normally fresh: set-0 contexts and neighbour 0).
/// A branch's rate is the estimate of its coded level in the predecessor's model with
/// `dq_state = predecessor`. After state `c` is decided, `c`'s model takes the winner's contexts
/// and is then updated with the chosen level.
///
/// Reference quirk: the update uses `dq_state = c` (not the predecessor) and `c`'s own neighbour
/// from two steps earlier (neighbours are not copied with the contexts); the models of the previous
/// and current step are swapped each step.
pub(crate) fn quantize_rate_aware(
    weights: &[f32],
    shape: MatrixShape,
    scan_order: u8,
    step: f32,
    lambda_scale: f32,
    base: &RateModel,
    levels: &mut [i32],
) -> Result<bool> {
    let qscale = 1.0 / f64::from(step);
    let check = check_scale(step);
    let ds = 32768.0 / lambda_factor(lambda_scale);

    let mut cost = [UNREACHED; 8];
    cost[0] = 0.0;
    let mut prev_models: Vec<RateModel> = vec![base.clone(); 8];
    let mut curr_models: Vec<RateModel> = vec![base.clone(); 8];
    let mut steps: Vec<Step> = Vec::with_capacity(weights.len());

    for run in ScanSegments::new(shape, scan_order)? {
        for &w in &weights[run] {
            if overflows(w, check) {
                return Ok(false);
            }
            let cand = Candidates::new(w, qscale, ds);
            std::mem::swap(&mut prev_models, &mut curr_models);
            let mut next = [0.0; 8];
            let mut branch = 0u16;
            for (state, branches) in BRANCHES.iter().enumerate() {
                let mut best = f64::MAX;
                let mut best_idx = 0usize;
                for (idx, &(prev, slot)) in branches.iter().enumerate() {
                    let level = level_of(cand.signed_q0, slot);
                    let rate = prev_models[usize::from(prev)].estimate_bits(level, prev);
                    let c =
                        cost[usize::from(prev)] + cand.dist[usize::from(slot)] + f64::from(rate);
                    if c < best {
                        best = c;
                        best_idx = idx;
                    }
                }
                next[state] = best;
                branch |= (best_idx as u16) << (2 * state);
                let (prev, slot) = branches[best_idx];
                let model = &mut curr_models[state];
                model.copy_contexts_from(&prev_models[usize::from(prev)]);
                model.update(level_of(cand.signed_q0, slot), state as u8);
            }
            cost = next;
            steps.push(Step {
                signed_q0: cand.signed_q0,
                branch,
            });
        }
    }

    trace_back(&steps, &cost, shape, scan_order, levels)?;
    Ok(true)
}

/// Index of the first minimal cost.
pub(crate) fn best_state(cost: &[f64; 8]) -> u8 {
    let mut best = 0;
    for s in 1..8 {
        if cost[s] < cost[best] {
            best = s;
        }
    }
    best as u8
}

/// Follows the winning branches back from the cheapest end state and scatters the reconstruction
/// indices to their row-major positions.
fn trace_back(
    steps: &[Step],
    cost: &[f64; 8],
    shape: MatrixShape,
    scan_order: u8,
    levels: &mut [i32],
) -> Result<()> {
    let mut in_scan = vec![0i32; steps.len()];
    let mut state = best_state(cost);
    for (out, step) in in_scan.iter_mut().zip(steps).rev() {
        let idx = (step.branch >> (2 * state)) & 3;
        let (prev, slot) = BRANCHES[usize::from(state)][usize::from(idx)];
        let k = level_of(step.signed_q0, slot);
        state = prev;
        *out = reconstruction_index(k, state);
    }
    scatter_from_scan(&in_scan, shape, scan_order, levels)
}

/// Writes values given in scan order to their row-major positions.
pub(crate) fn scatter_from_scan(
    in_scan: &[i32],
    shape: MatrixShape,
    scan_order: u8,
    levels: &mut [i32],
) -> Result<()> {
    let mut k = 0;
    for run in ScanSegments::new(shape, scan_order)? {
        let len = run.len();
        levels[run].copy_from_slice(&in_scan[k..k + len]);
        k += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_follow_the_state_table() {
        // Rebuild the connections from STATE_TRANSITION as the reference does.
        let mut built: Vec<Vec<(u8, u8)>> = vec![Vec::new(); 8];
        for prev in 0..8u8 {
            let quantizer = prev & 1;
            let [even, odd] = STATE_TRANSITION[usize::from(prev)];
            built[usize::from(even)].push((prev, 3 * quantizer));
            built[usize::from(even)].push((prev, ZERO));
            built[usize::from(odd)].push((prev, 2 - quantizer));
        }
        for (state, list) in built.iter().enumerate() {
            assert_eq!(list.as_slice(), &BRANCHES[state][..], "state {state}");
        }
    }

    #[test]
    fn candidate_levels() {
        // org = 5.3: q0 = 4, candidates 4 5 6 7 in slots 0 1 2 3 → levels 2 3 3 4.
        let c = Candidates::new(5.3, 1.0, 1.0);
        assert_eq!(c.signed_q0, 4);
        let l = |slot| level_of(c.signed_q0, slot);
        assert_eq!([l(0), l(1), l(2), l(3)], [2, 3, 3, 4]);
        assert_eq!(l(ZERO), 0);
        let c = Candidates::new(-0.2, 1.0, 1.0);
        assert_eq!(c.signed_q0, -1);
        // q = 1 2 3 4 in slots 1 2 3 0.
        let l = |slot| level_of(c.signed_q0, slot);
        assert_eq!([l(1), l(2), l(3), l(0)], [-1, -1, -2, -2]);
        assert!((c.dist[1] - 0.64).abs() < 1e-6);
        assert!((c.dist[ZERO as usize] - 0.04).abs() < 1e-6);
    }

    #[test]
    fn reconstruction() {
        assert_eq!(reconstruction_index(0, 1), 0);
        assert_eq!(reconstruction_index(2, 0), 4);
        assert_eq!(reconstruction_index(2, 1), 3);
        assert_eq!(reconstruction_index(-2, 3), -3);
        assert_eq!(reconstruction_index(-1, 2), -2);
    }

    #[test]
    fn overflow_test_bounds() {
        assert!(!overflows(2_147_483_520.0, 1.0));
        assert!(overflows(2_147_483_648.0, 1.0));
        assert!(!overflows(-2_147_483_520.0, 1.0));
        assert!(overflows(-2_147_483_648.0, 1.0));
    }
}

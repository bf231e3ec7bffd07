//! Dependent quantization: the 8-state trellis (TCQ, `dq_flag = 1`), deepcabac.md §5.2–5.3.
//!
//! The trellis runs in scan order. Each weight offers five candidates: four reconstruction indices
//! `q0 .. q0+3` around `|w|/Δ` (slot `q & 3`) and zero (slot 4). Every state keeps the cheapest of its
//! three incoming branches; the final path is traced back from the cheapest end state.

use std::f64::consts::LN_2;

#[cfg(test)]
use nnc_cabac::RateModel;
use nnc_cabac::StateRates;

use crate::scan::{MatrixShape, ScanSegments};
use crate::{Error, Result};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

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

/// Each state quantizes with quantizer `state & 1`, whose candidates are the slots of its parity
/// and the zero slot: the rate-aware trellis prices those three per state, slot `s` as its
/// quantizer's candidate `CANDIDATE_OF_SLOT[s]`.
const CANDIDATE_OF_SLOT: [usize; 5] = [0, 0, 1, 1, 2];

const _: () = {
    let mut state = 0;
    while state < 8 {
        let mut k = 0;
        while k < 3 {
            let (prev, slot) = BRANCHES[state][k];
            assert!(slot == ZERO || slot & 1 == prev & 1);
            let c = CANDIDATE_OF_SLOT[slot as usize];
            assert!(if slot == ZERO {
                c == 2
            } else {
                c == (slot >> 1) as usize
            });
            k += 1;
        }
        state += 1;
    }
};

/// A step's branch bits unpacked, one byte (four states) at a time: for the low byte (states
/// 0..=3, `[0]`) or the high byte (4..=7, `[1]`), bits `3s..3s+3` hold state `s`'s predecessor
/// and bits `24 + 3s..` its candidate slot. (The branch index 3 never occurs; it reads as 0.)
const STEP_CHOICES: [[u64; 256]; 2] = {
    let mut t = [[0u64; 256]; 2];
    let mut half = 0;
    while half < 2 {
        let mut byte = 0;
        while byte < 256 {
            let mut k = 0;
            while k < 4 {
                let state = 4 * half + k;
                let idx = (byte >> (2 * k)) & 3;
                let (prev, slot) = BRANCHES[state][if idx == 3 { 0 } else { idx }];
                t[half][byte] |=
                    ((prev as u64) << (3 * state)) | ((slot as u64) << (24 + 3 * state));
                k += 1;
            }
            byte += 1;
        }
        half += 1;
    }
    t
};

/// Bit `s` of the index moved to bit `2s` (two bits per state in [`Step::branch`]).
const SPREAD: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut s = 0;
        while s < 8 {
            t[i] |= (((i >> s) & 1) as u16) << (2 * s);
            s += 1;
        }
        i += 1;
    }
    t
};

/// A run of zero weights in the forward pass, stepped in bulk once it has become periodic.
///
/// A zero weight's candidates are always the same (the indices 1 to 4 and zero, distortions 1,
/// 4, 9, 16 and 0), so its step is always the same map of the state costs, branch bits
/// included.
/// Once the costs before a zero equal, bit for bit, the costs before the zero four places
/// earlier, every later zero of the run repeats the step four places before it: its branch
/// bits are copied and the costs follow the four recorded ones in turn. Every cost and bit is
/// the one stepping would give. Four because the zero level's state transitions cycle with
/// periods 1, 4 and 2 (`0 → 0`, `5 → 5`, `1 → 7 → 4 → 2`, `3 → 6`); in a 90 %-pruned MiniLM
/// just over half of the zeros come after that point.
pub(crate) struct ZeroRun<V> {
    /// Zero weights stepped since the last nonzero one.
    seen: usize,
    /// The costs before each of the last four of them, at `index % 4`.
    before: [V; 4],
}

impl<V: Copy> ZeroRun<V> {
    pub(crate) fn new(fill: V) -> Self {
        Self {
            seen: 0,
            before: [fill; 4],
        }
    }

    /// The forward pass over the weights of one scan segment: zeros of a periodic run are
    /// stepped here, every other weight by `step` (which pushes its branch bits and moves
    /// `cost`, or returns false when the weight fails the overflow test; so does this then).
    /// `same` compares two cost vectors bit for bit. The run carries over from one segment to
    /// the next, as the costs do.
    #[inline(always)]
    pub(crate) fn forward(
        &mut self,
        weights: &[f32],
        cost: &mut V,
        same: impl Fn(V, V) -> bool,
        steps: &mut Vec<u16>,
        mut step: impl FnMut(f32, &mut V, &mut Vec<u16>) -> bool,
    ) -> bool {
        let mut i = 0;
        while let Some(&w) = weights.get(i) {
            if let Some(skipped) = self.visit(&weights[i..], cost, &same, steps) {
                i += skipped;
                continue;
            }
            i += 1;
            if !step(w, cost, steps) {
                return false;
            }
        }
        true
    }

    /// Called with the costs before the weight at the head of `rest`. Returns `None`, and the
    /// caller steps the weight, unless the weight is zero and the run has become periodic: then
    /// every zero at the head of `rest` is stepped here (their branch bits pushed, `cost` set)
    /// and their count returned.
    #[inline(always)]
    fn visit(
        &mut self,
        rest: &[f32],
        cost: &mut V,
        same: &impl Fn(V, V) -> bool,
        steps: &mut Vec<u16>,
    ) -> Option<usize> {
        if rest.first() != Some(&0.0) {
            // A nonzero weight ends the run.
            self.seen = 0;
            return None;
        }
        let phase = self.seen & 3;
        if self.seen >= 4 && same(*cost, self.before[phase]) {
            // The last four steps are this run's (`seen` >= 4), so they are the pattern.
            if let Some(&pattern) = steps.last_chunk::<4>() {
                let n = rest.iter().take_while(|&&w| w == 0.0).count();
                steps.extend((0..n).map(|j| pattern[j & 3]));
                self.seen += n;
                *cost = self.before[self.seen & 3];
                return Some(n);
            }
        }
        self.before[phase] = *cost;
        self.seen += 1;
        None
    }
}

/// Start cost of the states other than 0 (the reference's `0.5 · DBL_MAX`).
const UNREACHED: f64 = 0.5 * f64::MAX;

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
        let (sign, org, q0) = grid(w, qscale);
        // Slot `j` holds the candidate `q0 + ((j − q0) mod 4)`, computed slot by slot: stored
        // at the index `q & 3` instead, each distortion would reach the trellis step through
        // memory, a store and a reload on its path (1 M values: 42 ms before, 25 ms after).
        let slot = |j: i64| {
            let diff = org - (q0 + ((j - q0) & 3)) as f64;
            ds * (diff * diff)
        };
        Self {
            dist: [slot(0), slot(1), slot(2), slot(3), ds * (org * org)],
            signed_q0: sign * q0 as i32,
        }
    }
}

/// Sign `σ`, `org = (qscale · w) · σ` in `f64`, and the first candidate index `q0` of weight `w`.
#[inline(always)]
fn grid(w: f32, qscale: f64) -> (i32, f64, i64) {
    let value = f64::from(w);
    // Branch-free: signs are as unpredictable as the weights. `qscale · |w|` is bit-identical
    // to the reference's `(qscale · w) · σ`, since negation is exact.
    let sign = 1 - 2 * i32::from(value < 0.0);
    let org = qscale * value.abs();
    // Only reachable values matter; the clamp keeps q0 + 3 inside i32 for absurd inputs, where
    // the reference's int arithmetic is undefined anyway.
    let q0 = ((org as i64) - 1).clamp(1, i64::from(i32::MAX) - 3);
    (sign, org, q0)
}

/// `σ · q0` of weight `w`, as [`Candidates::new`] computes it: the traceback recomputes it
/// instead of storing it per step.
#[inline(always)]
fn signed_q0(w: f32, qscale: f64) -> i32 {
    let (sign, _, q0) = grid(w, qscale);
    sign * q0 as i32
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

/// `reconstruction_index(level_of(signed_q0, slot), state)` without branches on the data (the
/// traceback's choices are as unpredictable as the weights).
#[inline(always)]
fn chosen_reconstruction(signed_q0: i32, slot: u8, state: u8) -> i32 {
    let q0 = i64::from(signed_q0.unsigned_abs());
    let q = q0 + (i64::from(slot) - q0).rem_euclid(4);
    let nonzero = i64::from(slot != ZERO);
    let magnitude = nonzero * ((q + 1) >> 1);
    let index = 2 * magnitude - nonzero * i64::from(state & 1);
    let negative = i64::from(signed_q0 < 0);
    // ±index, selected arithmetically.
    ((index ^ -negative) + negative) as i32
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
    // The reference rounds first, but rounding cannot move the value across a bound: below 2^23
    // in magnitude both the value and its rounding are far inside, and from 2^23 on every f32
    // is an integer already. So the product is tested as it is (NaN still fails).
    let scaled = f64::from(w * check_scale);
    !(-2_147_483_646.0..=2_147_483_645.0).contains(&scaled)
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
///
/// The same trellis as [`BRANCHES`] describes, laid out for speed and without branches on the
/// data: the even-numbered states (0, 2, 4, 6) only feed states 0..=3 and the odd ones only
/// feed 4..=7, so each step is three candidate vectors per half, added and compared lane by lane.
/// Every sum and comparison is the one the branch table prescribes, in the same floating-point
/// operations, so costs, ties and levels are identical to the table-driven form (kept under
/// `cfg(test)` as the oracle).
pub(crate) fn quantize_plain(
    weights: &[f32],
    shape: MatrixShape,
    scan_order: u8,
    step: f32,
    levels: &mut [i32],
) -> Result<bool> {
    let qscale = 1.0 / f64::from(step);
    let check = check_scale(step);
    // Per step, two bits per current state: the index of the winning branch in [`BRANCHES`].
    let mut steps: Vec<u16> = crate::buffer::with_capacity(weights.len());
    let input = Forward {
        weights,
        shape,
        scan_order,
        qscale,
        check,
    };
    // The AVX-512 and AVX2 passes check the CPU themselves and fall back to the portable one.
    #[cfg(target_arch = "x86_64")]
    let forward: ForwardPass = if avx512::available() {
        avx512::forward
    } else {
        avx2::forward
    };
    #[cfg(not(target_arch = "x86_64"))]
    let forward: ForwardPass = forward_portable;
    let Some(cost) = forward(input, &mut steps)? else {
        return Ok(false);
    };
    trace_back(
        &mut steps, &cost, weights, qscale, shape, scan_order, levels,
    )?;
    Ok(true)
}

/// A forward pass over [`Forward`]: pushes each step's branch bits and returns the final state
/// costs, or `None` when a weight fails the overflow test.
type ForwardPass = fn(Forward<'_>, &mut Vec<u16>) -> Result<Option<[f64; 8]>>;

/// What [`quantize_plain`]'s forward pass runs over.
#[derive(Clone, Copy)]
struct Forward<'w> {
    weights: &'w [f32],
    shape: MatrixShape,
    scan_order: u8,
    /// `1/Δ` in `f64`.
    qscale: f64,
    /// [`check_scale`] of Δ.
    check: f32,
}

/// [`quantize_plain`]'s forward pass in portable code: pushes each step's branch bits onto
/// `steps` and returns the final state costs (state order), or `None` when a weight fails the
/// overflow test.
fn forward_portable(input: Forward<'_>, steps: &mut Vec<u16>) -> Result<Option<[f64; 8]>> {
    let Forward {
        weights,
        shape,
        scan_order,
        qscale,
        check,
    } = input;
    // Costs of states 0, 2, 4, 6 and of 1, 3, 5, 7.
    let mut cost = ([0.0, UNREACHED, UNREACHED, UNREACHED], [UNREACHED; 4]);
    let mut zeros = ZeroRun::new(cost);
    let same = |a: ([f64; 4], [f64; 4]), b: ([f64; 4], [f64; 4])| {
        let bits = |v: ([f64; 4], [f64; 4])| {
            v.0.map(f64::to_bits)
                .into_iter()
                .chain(v.1.map(f64::to_bits))
        };
        bits(a).eq(bits(b))
    };
    let mut step = |w: f32, (even, odd): &mut ([f64; 4], [f64; 4]), steps: &mut Vec<u16>| {
        if overflows(w, check) {
            return false;
        }
        let [s0, s1, s2, s3, z] = Candidates::new(w, qscale, 1.0).dist;
        let [e0, e1, e2, e3] = *even;
        let [o0, o1, o2, o3] = *odd;
        // Branch k of state s is `BRANCHES[s][k]`, spelled out.
        let b0 = [
            e0 + s0,
            e1 + s0,
            e0 + s2,
            e1 + s2,
            o1 + s1,
            o0 + s1,
            o1 + s3,
            o0 + s3,
        ];
        let b1 = [
            e0 + z,
            e1 + z,
            e2 + s0,
            e3 + s0,
            o3 + s3,
            o2 + s3,
            o1 + z,
            o0 + z,
        ];
        let b2 = [
            e2 + s2,
            e3 + s2,
            e2 + z,
            e3 + z,
            o3 + z,
            o2 + z,
            o3 + s1,
            o2 + s1,
        ];
        // First minimum wins: a later branch must be strictly cheaper. (The table form
        // starts its search at f64::MAX; no branch reaches it: a cost is at most
        // 0.5·f64::MAX plus a sum of distortions below 2^64 each, which rounds back.)
        // The third branch wins exactly where it is cheaper than both others (no cost is
        // NaN), so its comparisons need not wait for the first two's choice (11 % faster).
        let take1: [bool; 8] = std::array::from_fn(|s| b1[s] < b0[s]);
        let take2: [bool; 8] = std::array::from_fn(|s| b2[s] < b0[s] && b2[s] < b1[s]);
        let m1: [f64; 8] = std::array::from_fn(|s| if take1[s] { b1[s] } else { b0[s] });
        let next: [f64; 8] = std::array::from_fn(|s| if take2[s] { b2[s] } else { m1[s] });
        let bits = |t: [bool; 8]| t.iter().rev().fold(0u8, |a, &x| (a << 1) | u8::from(x));
        let (t1, t2) = (bits(take1), bits(take2));
        // Branch index 1 where only the second branch won, 2 where the third did.
        let branch = SPREAD[usize::from(t1 & !t2)] | (SPREAD[usize::from(t2)] << 1);
        *even = [next[0], next[2], next[4], next[6]];
        *odd = [next[1], next[3], next[5], next[7]];
        steps.push(branch);
        true
    };
    for run in ScanSegments::new(shape, scan_order)? {
        if !zeros.forward(&weights[run], &mut cost, same, steps, &mut step) {
            return Ok(None);
        }
    }
    let (even, odd) = cost;
    Ok(Some([
        even[0], odd[0], even[1], odd[1], even[2], odd[2], even[3], odd[3],
    ]))
}

/// The table-driven TCQ that [`quantize_plain`] must agree with, step for step. Its traceback is
/// the plain form too (each step's `σ · q0` stored, levels gathered in scan order and scattered),
/// so the tests also check [`trace_back`]'s in-place passes and recomputed grids.
#[cfg(test)]
pub(crate) fn quantize_plain_by_table(
    weights: &[f32],
    shape: MatrixShape,
    scan_order: u8,
    step: f32,
    levels: &mut [i32],
) -> Result<bool> {
    let qscale = 1.0 / f64::from(step);
    let check = check_scale(step);

    let mut cost = [UNREACHED; 8];
    cost[0] = 0.0;
    // Per step: `σ · q0` and two bits per current state (the winning branch in [`BRANCHES`]).
    let mut steps: Vec<(i32, u16)> = Vec::with_capacity(weights.len());

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
            steps.push((cand.signed_q0, branch));
        }
    }

    let mut in_scan = vec![0i32; steps.len()];
    let mut state = best_state(&cost);
    for (out, &(signed_q0, branch)) in in_scan.iter_mut().zip(&steps).rev() {
        let idx = (branch >> (2 * state)) & 3;
        let (prev, slot) = BRANCHES[usize::from(state)][usize::from(idx)];
        state = prev;
        *out = reconstruction_index(level_of(signed_q0, slot), state);
    }
    let mut k = 0;
    for run in ScanSegments::new(shape, scan_order)? {
        let len = run.len();
        levels[run].copy_from_slice(&in_scan[k..k + len]);
        k += len;
    }
    Ok(true)
}

/// `λf = λ_scale · 4 · (ln2 / 6) · 0.7`, the TCQ's Lagrange factor (`<= 0`: distortion only).
pub(crate) fn lambda_factor(lambda_scale: f32) -> f64 {
    f64::from(lambda_scale) * 4.0 * (LN_2 / 6.0) * 0.7
}

/// Rate-aware TCQ (`λf > 0`): branch cost `(cost[prev] + ds·dist) + rate`, `ds = 32768 / λf`.
///
/// Every trellis state owns a rate model (`rates`, fresh: set-0 contexts and neighbour 0). A
/// branch's rate is the estimate of its coded level in the predecessor's model with
/// `dq_state = predecessor`. After state `c` is decided, `c`'s model takes the winner's contexts
/// and is then updated with the chosen level ([`StateRates::advance`]).
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
    mut rates: StateRates,
    levels: &mut [i32],
) -> Result<bool> {
    let qscale = 1.0 / f64::from(step);
    let check = check_scale(step);
    let ds = 32768.0 / lambda_factor(lambda_scale);

    let mut cost = [UNREACHED; 8];
    cost[0] = 0.0;
    // Per step, two bits per current state: the index of the winning branch in [`BRANCHES`].
    let mut steps: Vec<u16> = Vec::with_capacity(weights.len());

    for run in ScanSegments::new(shape, scan_order)? {
        for &w in &weights[run] {
            if overflows(w, check) {
                return Ok(false);
            }
            let cand = Candidates::new(w, qscale, ds);
            let level = [0, 1, 2, 3, ZERO].map(|slot| level_of(cand.signed_q0, slot));
            // price[k][prev]: candidate k of the predecessor's quantizer (`prev & 1`) in its
            // model; quantizer q's candidates are slots q, q + 2 and the zero slot.
            let candidates = |q: usize| [level[q], level[q + 2], 0];
            let price = rates.estimate([candidates(0), candidates(1)]);
            let mut next = [0.0; 8];
            let mut branch = 0u16;
            let mut winners = [0u8; 8];
            let mut chosen = [0i32; 8];
            for (state, branches) in BRANCHES.iter().enumerate() {
                let mut best = f64::MAX;
                let mut best_idx = 0usize;
                for (idx, &(prev, slot)) in branches.iter().enumerate() {
                    let rate = price[CANDIDATE_OF_SLOT[usize::from(slot)]][usize::from(prev)];
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
                winners[state] = prev;
                chosen[state] = level[usize::from(slot)];
            }
            rates.advance(winners, chosen);
            cost = next;
            steps.push(branch);
        }
    }

    trace_back(
        &mut steps, &cost, weights, qscale, shape, scan_order, levels,
    )?;
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

/// Follows the winning branches back from the cheapest end state, then writes the
/// reconstruction indices straight to their row-major positions.
///
/// Two passes, so that the trellis of a large tensor keeps only two bytes per weight and no
/// scan-order copy of the levels: the backward pass is the serial chain of states and leaves each
/// step's chosen slot and state parity in place of its branch bits; the forward pass recomputes
/// each weight's candidate grid and reconstructs, with no dependence between weights.
fn trace_back(
    steps: &mut [u16],
    cost: &[f64; 8],
    weights: &[f32],
    qscale: f64,
    shape: MatrixShape,
    scan_order: u8,
    levels: &mut [i32],
) -> Result<()> {
    let mut state = best_state(cost);
    for step in steps.iter_mut().rev() {
        // Every state's predecessor and slot in this step, unpacked before the state is known,
        // so the chain from state to state is a shift and a mask.
        let [lo, hi] = step.to_le_bytes();
        let choices = STEP_CHOICES[0][usize::from(lo)] | STEP_CHOICES[1][usize::from(hi)];
        let at = 3 * u32::from(state);
        let slot = (choices >> (24 + at)) & 7;
        state = ((choices >> at) & 7) as u8;
        *step = slot as u16 | (u16::from(state & 1) << 3);
    }
    // Each weight's reconstruction index from its choice (`slot | parity << 3`); the AVX-512
    // and AVX2 forms check the CPU themselves and fall back to the portable one.
    #[cfg(target_arch = "x86_64")]
    let reconstruct = if avx512::available() {
        avx512::reconstruct
    } else {
        avx2::reconstruct
    };
    #[cfg(not(target_arch = "x86_64"))]
    let reconstruct = reconstruct_portable;
    let mut at = 0;
    for run in ScanSegments::new(shape, scan_order)? {
        let (Some(ws), Some(out)) = (weights.get(run.clone()), levels.get_mut(run.clone())) else {
            return Err(Error::LengthMismatch {
                expected: run.end,
                actual: weights.len().min(levels.len()),
            });
        };
        let Some(cs) = steps.get(at..at + ws.len()) else {
            return Err(Error::LengthMismatch {
                expected: at + ws.len(),
                actual: steps.len(),
            });
        };
        at += ws.len();
        reconstruct(ws, cs, qscale, out);
    }
    Ok(())
}

/// Each weight's reconstruction index from its traced-back choice, one weight at a time.
fn reconstruct_portable(weights: &[f32], chosen: &[u16], qscale: f64, out: &mut [i32]) {
    reconstruct_lanes(weights, chosen, qscale, out)
}

/// The body of [`reconstruct_portable`], inlined into each build of it (`avx2::reconstruct`).
#[inline(always)]
fn reconstruct_lanes(weights: &[f32], chosen: &[u16], qscale: f64, out: &mut [i32]) {
    for ((&w, o), &c) in weights.iter().zip(out).zip(chosen) {
        *o = chosen_reconstruction(signed_q0(w, qscale), (c & 7) as u8, (c >> 3) as u8);
    }
}

/// Test of a vector forward pass: on weights of mixed scales (small, large, on the half-step
/// grid so that branches tie, and zeros) drawn from `seed`, `forward` must push the portable
/// pass's branch bits and return its final costs, bit for bit. Returns the weights and steps.
#[cfg(all(test, target_arch = "x86_64"))]
fn forward_matches_portable(
    forward: ForwardPass,
    seed: u64,
    (h, w): (usize, usize),
    scan_order: u8,
    step: f32,
) -> std::result::Result<(Vec<f32>, Vec<u16>), proptest::test_runner::TestCaseError> {
    let mut x = seed | 1;
    let weights: Vec<f32> = (0..h * w)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            if (i / 16) % 3 == 0 {
                // Runs of zeros, long enough for the bulk steps of `ZeroRun`.
                return 0.0;
            }
            match i % 4 {
                0 => u * 0.2,
                1 => u * 40.0 * step,
                2 => (u * 16.0).round() * step * 0.5,
                _ => 0.0,
            }
        })
        .collect();
    let input = Forward {
        weights: &weights,
        shape: MatrixShape::from_dims(&[h, w]).expect("shape"),
        scan_order,
        qscale: 1.0 / f64::from(step),
        check: check_scale(step),
    };
    let (mut simd, mut portable) = (Vec::new(), Vec::new());
    let a = forward(input, &mut simd).expect("vector pass");
    let b = forward_portable(input, &mut portable).expect("portable pass");
    proptest::prop_assert_eq!(&simd, &portable);
    let bits = |c: Option<[f64; 8]>| c.map(|c| c.map(f64::to_bits));
    proptest::prop_assert_eq!(bits(a), bits(b));
    Ok((weights, simd))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs both TCQ forms on the same weights and compares outcome and levels.
    fn same_as_table(weights: &[f32], step: f32, scan_order: u8, w: usize) {
        let h = weights.len() / w;
        let weights = &weights[..h * w];
        let shape = MatrixShape::from_dims(&[h, w]).expect("shape");
        let mut fast = vec![0i32; weights.len()];
        let mut table = vec![0i32; weights.len()];
        let a = quantize_plain(weights, shape, scan_order, step, &mut fast);
        let b = quantize_plain_by_table(weights, shape, scan_order, step, &mut table);
        assert_eq!(a.ok(), b.ok());
        assert_eq!(fast, table);
    }

    #[test]
    fn fast_trellis_matches_table_on_ties_and_extremes() {
        // Multiples of half a step make many branches cost the same.
        let ties: Vec<f32> = (0..4096)
            .map(|i| ((i * 7919) % 41) as f32 * 0.5 - 10.0)
            .collect();
        same_as_table(&ties, 1.0, 0, 64);
        same_as_table(&ties, 0.5, 0, 64);
        let zeros = vec![0.0f32; 512];
        same_as_table(&zeros, 1.0, 0, 16);
        let huge: Vec<f32> = (0..256)
            .map(|i| if i % 3 == 0 { 2.0e9 } else { -1.5e9 } * (i as f32 / 256.0))
            .collect();
        same_as_table(&huge, 1.0, 0, 16);
        same_as_table(&huge, 1.0e-3, 0, 16);
    }

    /// Weights as a pruned tensor has them: runs of exact zeros (either sign) of random length
    /// between weights of all sizes, some below half a step.
    fn pruned(seed: u64, len: usize, step: f32) -> Vec<f32> {
        let mut x = seed | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let r = next();
            let zeros = (r % 48) as usize;
            let zero = if r >> 63 == 0 { 0.0 } else { -0.0 };
            out.extend(std::iter::repeat_n(zero, zeros));
            let u = (r >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            out.push(match (r >> 8) % 3 {
                0 => u * step,
                1 => u * 30.0 * step,
                _ => u * 0.5,
            });
        }
        out.truncate(len);
        out
    }

    proptest::proptest! {
        #[test]
        fn fast_trellis_matches_table_on_zero_runs(
            seed: u64,
            len in 1usize..3000,
            step in 0.001f32..2.0,
            scan_order in 0u8..3,
            w in 1usize..64,
        ) {
            let weights = pruned(seed, len, step);
            same_as_table(&weights, step, scan_order, w.min(len));
        }

        #[test]
        fn fast_trellis_matches_table(
            weights in proptest::collection::vec(-50.0f32..50.0, 1..600),
            step in 0.01f32..4.0,
            scan_order in 0u8..3,
            w in 1usize..24,
        ) {
            let w = w.min(weights.len());
            same_as_table(&weights, step, scan_order, w);
        }
    }

    /// The rate-aware trellis as the reference writes it: every branch priced with its own
    /// `estimate_bits`, and every state's model a copy of its winner's (the oracle for the
    /// shared pricing walk and the moved contexts).
    fn rate_aware_by_copies(weights: &[f32], step: f32, lambda_scale: f32, flags: u32) -> Vec<i32> {
        let qscale = 1.0 / f64::from(step);
        let ds = 32768.0 / lambda_factor(lambda_scale);
        let base = RateModel::new(flags).unwrap();
        let mut cost = [UNREACHED; 8];
        cost[0] = 0.0;
        let mut prev_models = vec![base.clone(); 8];
        let mut curr_models = vec![base; 8];
        let mut steps = Vec::new();
        for &w in weights {
            let cand = Candidates::new(w, qscale, ds);
            std::mem::swap(&mut prev_models, &mut curr_models);
            let mut next = [0.0; 8];
            let mut branch = 0u16;
            for (state, branches) in BRANCHES.iter().enumerate() {
                let (mut best, mut best_idx) = (f64::MAX, 0usize);
                for (idx, &(prev, slot)) in branches.iter().enumerate() {
                    let level = level_of(cand.signed_q0, slot);
                    let rate = prev_models[usize::from(prev)].estimate_bits(level, prev);
                    let c =
                        cost[usize::from(prev)] + cand.dist[usize::from(slot)] + f64::from(rate);
                    if c < best {
                        (best, best_idx) = (c, idx);
                    }
                }
                next[state] = best;
                branch |= (best_idx as u16) << (2 * state);
                let (prev, slot) = branches[best_idx];
                curr_models[state].copy_contexts_from(&prev_models[usize::from(prev)]);
                curr_models[state].update(level_of(cand.signed_q0, slot), state as u8);
            }
            cost = next;
            steps.push(branch);
        }
        let shape = MatrixShape::from_dims(&[weights.len()]).unwrap();
        let mut levels = vec![0; weights.len()];
        trace_back(&mut steps, &cost, weights, qscale, shape, 0, &mut levels).unwrap();
        levels
    }

    proptest::proptest! {
        #[test]
        fn rate_aware_trellis_matches_per_branch_pricing(
            weights in proptest::collection::vec(-40.0f32..40.0, 1..300),
            lambda_scale in 0.05f32..4.0,
            flags in 0u32..=12,
        ) {
            let shape = MatrixShape::from_dims(&[weights.len()]).unwrap();
            let rates = StateRates::new(flags).unwrap();
            let mut levels = vec![0; weights.len()];
            let ok = quantize_rate_aware(&weights, shape, 0, 1.0, lambda_scale, rates, &mut levels)
                .unwrap();
            proptest::prop_assert!(ok);
            proptest::prop_assert_eq!(levels, rate_aware_by_copies(&weights, 1.0, lambda_scale, flags));
        }
    }

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
    fn chosen_reconstruction_matches_level_then_index() {
        for signed_q0 in (-40..=40).chain([1 << 29, -(1 << 29) - 3]) {
            if signed_q0 == 0 {
                continue;
            }
            for slot in 0..=ZERO {
                for state in 0..8u8 {
                    assert_eq!(
                        chosen_reconstruction(signed_q0, slot, state),
                        reconstruction_index(level_of(signed_q0, slot), state),
                        "q0 {signed_q0} slot {slot} state {state}"
                    );
                }
            }
        }
    }

    #[test]
    fn overflow_test_equals_the_rounded_form() {
        let rounded = |w: f32, c: f32| {
            let r = f64::from((w * c).round());
            !(-2_147_483_646.0..=2_147_483_645.0).contains(&r)
        };
        let mut x = 0x2545_f491u32;
        let mut values: Vec<f32> = vec![
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            8_388_607.5,
            -8_388_608.5,
            2_147_483_520.0,
            2_147_483_648.0,
            -2_147_483_648.0,
            -2_147_483_904.0,
        ];
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            values.push(f32::from_bits(x));
        }
        for &w in &values {
            for c in [1.0f32, 0.5, 3.0, 1.0e-3, 1.0e6] {
                assert_eq!(overflows(w, c), rounded(w, c), "w {w} c {c}");
            }
        }
    }

    #[test]
    fn overflow_test_bounds() {
        assert!(!overflows(2_147_483_520.0, 1.0));
        assert!(overflows(2_147_483_648.0, 1.0));
        assert!(!overflows(-2_147_483_520.0, 1.0));
        assert!(overflows(-2_147_483_648.0, 1.0));
    }
}

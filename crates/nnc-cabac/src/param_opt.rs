//! Context-initialisation optimisation, "param_opt" (deepcabac.md §6.1).
//!
//! Before the real pass the encoder pseudo-codes the tensor. Every context carries nine shadow
//! estimators, one per init set, updated in lockstep; each accumulates the estimated cost of the
//! bins it saw. The cheapest set (with a 3-bit penalty for a non-default set) is signalled.
//!
//! Two implementations give the same choices:
//! - [`ShadowContexts`] updates the nine shadows of a context on every bin, as the reference does;
//! - [`InitSetSearch`] (what [`crate::encode_layer`] uses) only records each context's bins as a
//!   bit string and replays them later, context by context: the shadows then live in registers,
//!   contexts replay in parallel (feature `rayon`), and a half-estimator (S0 or S1) that has
//!   become equal to another set's with the same shift is read from that set instead of being
//!   updated (they move identically from then on).

use crate::binarization::BinSink;
use crate::context::{est_row, s0_row, s1_row, update_state};
use crate::tables::{est_bits_table, BYPASS_BITS, INIT_SETS, NUM_INIT_SETS};

mod deferred;
mod replay;
pub use replay::InitSetSearch;
pub(crate) use replay::Trace;

#[derive(Clone, Copy, Debug)]
struct Shadows {
    p: [i16; NUM_INIT_SETS],
    s0: [i8; NUM_INIT_SETS],
    acc: [u64; NUM_INIT_SETS],
}

const INITIAL: Shadows = {
    let mut s = Shadows {
        p: [0; NUM_INIT_SETS],
        s0: [0; NUM_INIT_SETS],
        acc: [0; NUM_INIT_SETS],
    };
    let mut i = 0;
    while i < NUM_INIT_SETS {
        s.p[i] = INIT_SETS[i].p;
        s.s0[i] = INIT_SETS[i].s0;
        i += 1;
    }
    s
};

/// Update-table rows of the nine sets.
const ROWS: [(u16, u16); NUM_INIT_SETS] = {
    let mut r = [(0u16, 0u16); NUM_INIT_SETS];
    let mut i = 0;
    while i < NUM_INIT_SETS {
        r[i] = (s0_row(INIT_SETS[i].shift0), s1_row(INIT_SETS[i].shift1));
        i += 1;
    }
    r
};

/// Nine shadow estimators and their cost accumulators for every context of a tensor.
#[derive(Clone, Debug)]
pub struct ShadowContexts {
    ctxs: Vec<Shadows>,
    est: &'static [[u32; 2]; 1024],
}

impl ShadowContexts {
    /// `len` contexts, shadows in their init states, accumulators at zero.
    pub fn new(len: usize) -> Self {
        Self {
            ctxs: vec![INITIAL; len],
            est: est_bits_table(),
        }
    }

    /// Block-row boundary: shadows back to their init states; the accumulators keep running.
    pub fn reset_states(&mut self) {
        for c in &mut self.ctxs {
            c.p = INITIAL.p;
            c.s0 = INITIAL.s0;
        }
    }

    /// The init set with the lowest accumulated cost plus 3 bits for any set other than 0
    /// (first minimum wins). 0 for contexts that saw no bins.
    ///
    /// Reference quirk: the penalty is 3 bits, although signalling a non-default set costs one
    /// context-coded flag plus 3 bypass bins.
    pub fn best_idx(&self, ctx: usize) -> u8 {
        let Some(c) = self.ctxs.get(ctx) else {
            return 0;
        };
        best_of(&c.acc)
    }

    /// The nine accumulated costs of context `ctx`.
    #[cfg(test)]
    fn costs(&self, ctx: usize) -> [u64; NUM_INIT_SETS] {
        self.ctxs[ctx].acc
    }
}

/// The init set with the lowest cost, 3 bits added to every set but 0, first minimum wins.
fn best_of(acc: &[u64; NUM_INIT_SETS]) -> u8 {
    let mut best = 0u8;
    let mut min = acc[0];
    for (i, &a) in acc.iter().enumerate().skip(1) {
        let cost = a + 3 * u64::from(BYPASS_BITS);
        if cost < min {
            min = cost;
            best = i as u8;
        }
    }
    best
}

impl BinSink for ShadowContexts {
    #[inline(always)]
    fn ctx_bin(&mut self, ctx: usize, bin: bool) {
        let Some(c) = self.ctxs.get_mut(ctx) else {
            return;
        };
        for (i, &(row0, row1)) in ROWS.iter().enumerate() {
            let p = c.p[i];
            c.acc[i] += u64::from(self.est[est_row(p)][bin as usize]);
            let (np, ns0) = update_state(p, c.s0[i], row0, row1, bin);
            c.p[i] = np;
            c.s0[i] = ns0;
        }
    }

    #[inline(always)]
    fn bypass_bins(&mut self, _n: u32, _value: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untouched_contexts_choose_default() {
        let s = ShadowContexts::new(4);
        assert_eq!(s.best_idx(2), 0);
        assert_eq!(s.best_idx(99), 0);
    }

    #[test]
    fn skewed_statistics_choose_a_skewed_set() {
        let mut s = ShadowContexts::new(1);
        for _ in 0..200 {
            s.ctx_bin(0, true);
        }
        // P starts high for sets 2 and 5 (3039): all-ones data favours one of them.
        assert!(matches!(s.best_idx(0), 2 | 5));
        let mut z = ShadowContexts::new(1);
        for _ in 0..200 {
            z.ctx_bin(0, false);
        }
        assert_eq!(z.best_idx(0), 1);
    }
}

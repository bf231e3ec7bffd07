//! The greater-than flags' init-set choices of a group of trials, found once for the group.
//!
//! Trial `o` codes greater-than flag `j` of a positive level `x − o` exactly when `x − o > j`,
//! as a 1 when `x − o > j + 1`: the flag's bins depend on the value and the threshold `o + j`
//! only. So flag `j` of trial `o + d` receives the same bins, in the same order, as flag
//! `j + d` of trial `o` would, and the param_opt search, which replays each context's bins from
//! the same nine init states, chooses the same set for both. Negative levels likewise, with
//! the threshold `o − j`. A group of `G` consecutive offsets with `N` flags therefore has
//! `G − 1 + N` distinct flag traces per sign instead of `G · N`, and each is replayed once.

use std::ops::Range;

use crate::binarization::SliceCoder;
use crate::encode_layer::FlagChoices;
use crate::param_opt::InitSetSearch;

/// The choice of every distinct flag trace of a group: `pos[T]` for the positive threshold
/// `first + T`, `neg[S + N − 1]` for the negative threshold `first + S`.
pub(super) struct SharedFlagChoices {
    n: usize,
    pos: Vec<u8>,
    neg: Vec<u8>,
}

impl SharedFlagChoices {
    /// The choices for the trials of `group` over `indices` with `n` greater-than flags, or
    /// `None` where a trial's levels `indices[i] − o` would wrap around `i32` (the thresholds
    /// then do not line up) or there is nothing to share.
    pub fn new(indices: &[i32], group: Range<u32>, n: usize) -> Option<Self> {
        let len = group.len();
        // Offsets are subtracted as `i32`, wrapping (`super::shifted`).
        let first = i64::from(group.start as i32);
        let last = first + len as i64 - 1;
        if len < 2 || n == 0 || last > i64::from(i32::MAX) {
            return None;
        }
        let (lo, hi) = indices.iter().fold((i64::MAX, i64::MIN), |(lo, hi), &x| {
            (lo.min(i64::from(x)), hi.max(i64::from(x)))
        });
        if !indices.is_empty()
            && (lo - last < i64::from(i32::MIN) || hi - first > i64::from(i32::MAX))
        {
            return None;
        }

        let thresholds = len - 1 + n;
        let t = thresholds as i64;
        let below = n as i64 - 1;
        let mut search = InitSetSearch::new(2 * thresholds, true);
        let (rec, traces) = search.parts();
        for &x in indices {
            let u = i64::from(x) - first;
            // Positive thresholds T < u code a flag, a 1 below u − 1.
            for k in 0..u.clamp(0, t) {
                rec.bin(&mut traces[k as usize], k < u - 1);
            }
            // Negative thresholds S > u (at S + N − 1) code a flag, a 1 above u + 1.
            for k in (u + 1 + below).clamp(0, t)..t {
                rec.bin(&mut traces[thresholds + k as usize], k > u + 1 + below);
            }
            rec.level_done(traces);
        }
        let mut chosen = search.best_indices();
        let neg = chosen.split_off(thresholds);
        Some(Self {
            n,
            pos: chosen,
            neg,
        })
    }

    /// The choices of trial `d` of the group (offset `first + d`) for its flag contexts.
    pub fn preset(&self, d: u32) -> FlagChoices {
        let d = d as usize;
        let mut chosen = Vec::with_capacity(2 * self.n);
        for j in 0..self.n {
            chosen.push(self.pos[d + j]);
            chosen.push(self.neg[d + self.n - 1 - j]);
        }
        FlagChoices { chosen }
    }
}

//! The context-initialisation index list that precedes the levels (deepcabac.md §2.6).
//!
//! Reference quirk: the list is always present, even when the encoder did not optimise (then
//! every flag is 0).

use crate::context::ContextLayout;

/// What decides which contexts get an init-index flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CtxInitList {
    pub layout: ContextLayout,
    pub dq_flag: bool,
    pub use_tca: bool,
    pub use_hdsp: bool,
    pub cbs: u32,
    pub cbz: u32,
}

impl CtxInitList {
    /// Call `f(ctx)` for every context that carries an init-index flag, in bitstream order.
    ///
    /// Reference quirk: the codebook conditions apply whenever `cbs` is non-zero, even with
    /// general_profile_idc = 0.
    pub fn for_each(&self, mut f: impl FnMut(usize)) {
        let n = self.layout.num_gtx_flags() as i64;
        let not_single = self.cbs != 1;
        if not_single {
            let sig_end = if self.dq_flag { 24 } else { 3 };
            (0..sig_end).for_each(&mut f);
            if self.use_tca {
                (24..if self.dq_flag { 40 } else { 26 }).for_each(&mut f);
            }
            if self.use_hdsp {
                (40..if self.dq_flag { 48 } else { 41 }).for_each(&mut f);
            }
        }
        let sign_implicit = self.cbs > 0 && (self.cbz == 0 || self.cbz == self.cbs - 1);
        if !sign_implicit && not_single {
            let count = if self.use_tca { 5 } else { 3 };
            (ContextLayout::SIGN..ContextLayout::SIGN + count).for_each(&mut f);
        }
        // Reference quirk: `cbs > 0 ? max(cbz, cbs - 1 - cbz) : -1` has an unsigned type in the
        // C++, so "no codebook" is 2^32 − 1 rather than −1. The three limits below then always
        // hold for N ≥ 1; with N = 0 (encoder trial passes) the remainder's running level starts
        // at 2^32 − 1 as well and no remainder context is listed.
        let max_abs: i64 = if self.cbs > 0 {
            i64::from(
                self.cbz
                    .max(self.cbs.wrapping_sub(1).wrapping_sub(self.cbz)),
            )
        } else {
            i64::from(u32::MAX)
        };
        for a in 0..2 * n {
            if a < 2 * max_abs {
                f(ContextLayout::GTX + a as usize);
            }
        }
        if self.use_tca {
            for a in 2 * n..4 * n {
                if a < 2 * (max_abs - 1) + 2 * n {
                    f(ContextLayout::GTX + a as usize);
                }
            }
        }
        // Reference quirk: the start value is computed as u32, so N = 0 wraps to 2^32 − 1.
        let mut level = i64::from(self.layout.num_gtx_flags().wrapping_sub(1));
        for a in 0..31usize {
            level += 1i64 << a;
            if level < max_abs {
                f(self.layout.rem() + a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(l: CtxInitList) -> Vec<usize> {
        let mut v = vec![];
        l.for_each(|c| v.push(c));
        v
    }

    #[test]
    fn kat_b_has_57_flags() {
        // N = 10, no dq: 3 sig + 3 sign + 20 gtx + 31 rem.
        let l = CtxInitList {
            layout: ContextLayout::new(10),
            dq_flag: false,
            use_tca: false,
            use_hdsp: false,
            cbs: 0,
            cbz: 0,
        };
        assert_eq!(list(l).len(), 57);
    }

    #[test]
    fn no_codebook_with_n_0_lists_no_remainder_context() {
        // The encoder's trial passes with N = 0: the remainder's running level starts at 2^32 − 1,
        // which is not below the "no codebook" bound 2^32 − 1, so only sig and sign are listed.
        let l = CtxInitList {
            layout: ContextLayout::new(0),
            dq_flag: false,
            use_tca: false,
            use_hdsp: false,
            cbs: 0,
            cbz: 0,
        };
        assert_eq!(list(l), vec![0, 1, 2, 48, 49, 50]);
        // With N = 1 the bound never bites: all 31 remainder contexts.
        let n1 = CtxInitList {
            layout: ContextLayout::new(1),
            ..l
        };
        assert_eq!(list(n1).len(), 3 + 3 + 2 + 31);
    }

    #[test]
    fn codebook_limits() {
        // cbs 4, cbz 0: sign implicit, M = 3: gtx a < 6, remainder levels N-1+2^a+... < 3 never for N = 11.
        let l = CtxInitList {
            layout: ContextLayout::new(11),
            dq_flag: false,
            use_tca: false,
            use_hdsp: false,
            cbs: 4,
            cbz: 0,
        };
        let v = list(l);
        assert_eq!(v, vec![0, 1, 2, 53, 54, 55, 56, 57, 58]);
        let single = CtxInitList { cbs: 1, ..l };
        // One-entry codebook: M = 0, nothing listed.
        assert!(list(single).is_empty());
    }
}

//! Adaptive context models (deepcabac.md §2) and the per-tensor context layout (§2.5).

use crate::tables::{est_bits_table, INIT_SETS, RLPS_SIGNED, S0_NEXT, S1_STEP};

/// One adaptive binary probability model: two estimators in a logit-like domain.
///
/// `P = S1 + 16·S0` is the combined state; the most probable symbol is 1 when `P >= 0`.
///
/// The layout is fixed (`repr(C)`, asserted below) because the decoder's assembly flag loop
/// reads and writes the fields by offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct ContextModel {
    p: i16,
    s0: i8,
    init_idx: u8,
    /// Row of `S0_NEXT` for shift0: `(shift0 − 4)·512`.
    s0_row: u16,
    /// Row of `S1_STEP` for shift1: `shift1·64`.
    s1_row: u16,
}

impl Default for ContextModel {
    fn default() -> Self {
        Self::new(0)
    }
}

impl ContextModel {
    /// A model in initialisation set `init_idx` (0..=8; larger values are clamped to 8).
    pub const fn new(init_idx: u8) -> Self {
        let idx = if init_idx as usize >= INIT_SETS.len() {
            INIT_SETS.len() - 1
        } else {
            init_idx as usize
        };
        let set = INIT_SETS[idx];
        Self {
            p: set.p,
            s0: set.s0,
            init_idx: idx as u8,
            s0_row: s0_row(set.shift0),
            s1_row: s1_row(set.shift1),
        }
    }

    /// `initState(idx)`: choose init set `idx` (clamped to 0..=8) and load its state and shifts.
    #[inline]
    pub fn init(&mut self, init_idx: u8) {
        *self = Self::new(init_idx);
    }

    /// `resetState()`: back to the initial state of the stored init set; shifts are kept.
    #[inline]
    pub fn reset(&mut self) {
        let set = INIT_SETS[self.init_idx as usize % INIT_SETS.len()];
        self.p = set.p;
        self.s0 = set.s0;
    }

    /// The init set this model was initialised with.
    pub fn init_idx(&self) -> u8 {
        self.init_idx
    }

    /// Combined state `P`.
    pub fn p(&self) -> i16 {
        self.p
    }

    /// Fast estimator `S0`.
    pub fn s0(&self) -> i8 {
        self.s0
    }

    /// The most probable symbol (`P >= 0` → 1).
    #[inline(always)]
    pub fn mps(&self) -> bool {
        self.p >= 0
    }

    /// LPS sub-range for the current 9-bit `range`.
    ///
    /// Reference quirk: the column is `|P >> 7|` with an arithmetic shift before the absolute
    /// value, so negative states land one column further than their magnitude suggests.
    #[inline(always)]
    pub fn rlps(&self, range: u32) -> u32 {
        self.rlps_packed(range) & 0xFF
    }

    /// [`crate::tables::RLPS_PACKED`] entry (rLPS, its renormalisation shift and renormalised
    /// range) for `range`, read from [`RLPS_SIGNED`], which folds in the column's absolute
    /// value (the same entry for every reachable state).
    #[inline(always)]
    pub fn rlps_packed(&self, range: u32) -> u32 {
        // The column's part of the index is added to the table address first: the range's part
        // is then one `and` and a scaled index on the decoder's dependency chain.
        // From the column's entry of the first row to its entry of the last: the range's part of
        // the index goes up to `0xE0 << 1`.
        const SPAN: usize = (0xE0 << 1) + 1;
        let col = (self.p >> 7) as usize & 63;
        let row: &[u32; SPAN] = RLPS_SIGNED[col..col + SPAN]
            .try_into()
            .expect("a column is at most 63, and 63 + SPAN is the table's length");
        row[(range as usize & 0xE0) << 1]
    }

    /// Estimated cost of coding `bin` in this state, in 1/32768 bit.
    #[inline(always)]
    pub fn est_bits(&self, bin: bool) -> u32 {
        est_bits_table()[self.est_index()][bin as usize]
    }

    /// Row of [`est_bits_table`] for the current state ([`est_row`]).
    #[inline(always)]
    pub(crate) fn est_index(&self) -> usize {
        est_row(self.p)
    }

    /// Adapt both estimators towards the coded `bin` (§2.3).
    #[inline(always)]
    pub fn update(&mut self, bin: bool) {
        let (p, s0) = update_state(self.p, self.s0, self.s0_row, self.s1_row, bin);
        self.p = p;
        self.s0 = s0;
    }
}

const _: () = {
    assert!(std::mem::size_of::<ContextModel>() == 8);
    assert!(std::mem::offset_of!(ContextModel, p) == 0);
    assert!(std::mem::offset_of!(ContextModel, s0) == 2);
    assert!(std::mem::offset_of!(ContextModel, s0_row) == 4);
    assert!(std::mem::offset_of!(ContextModel, s1_row) == 6);
};

/// Row of [`est_bits_table`] (and of the cost columns built from it) for combined state `p`:
/// `512 + (P >> 3)`.
#[inline(always)]
pub(crate) const fn est_row(p: i16) -> usize {
    (512 + (p as i32 >> 3)) as usize & 1023
}

/// `S0_NEXT` row offset of a shift0 value (4..=7).
pub(crate) const fn s0_row(shift0: u8) -> u16 {
    (shift0.saturating_sub(4) as u16 & 3) * 512
}

/// `S1_STEP` row offset of a shift1 value (0..=7).
pub(crate) const fn s1_row(shift1: u8) -> u16 {
    (shift1 as u16 & 7) * 64
}

/// The §2.3 update on a raw (P, S0) pair; shared with the parameter-optimisation shadows.
///
/// `S1 = P − 16·S0` moves by a signed step from [`S1_STEP`] and S0 to its tabulated successor in
/// [`S0_NEXT`]; the bin selects the table halves, so no sign is applied at run time.
#[inline(always)]
pub(crate) fn update_state(p: i16, s0: i8, s0_row: u16, s1_row: u16, bin: bool) -> (i16, i8) {
    let s1 = i32::from(p) - (i32::from(s0) << 4);
    let s0 =
        S0_NEXT[(usize::from(s0_row) | (usize::from(bin) << 8) | usize::from(s0 as u8)) & 2047];
    let t = (s1 + (i32::from(!bin) * 127)) >> 7;
    let d1 = S1_STEP[(usize::from(s1_row) | (usize::from(bin) << 5) | (t as usize & 31)) & 511];
    ((s1 + i32::from(d1) + (i32::from(s0) << 4)) as i16, s0)
}

/// Context indices of one tensor's context set for `N` greater-than flags (§2.5).
///
/// The set has `90 + 4N` contexts: sig 0..=23, sig with TCA base 24..=39, sig at HDSP positions
/// 40..=47, sign 48..=50, sign with base 51..=52, gtx `53..53+2N`, gtx with base `53+2N..53+4N`,
/// remainder prefix `53+4N..+31`, then three unused, PO, one unused and RS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextLayout {
    n: u32,
}

impl ContextLayout {
    /// First sign context.
    pub const SIGN: usize = 48;
    /// First sign context used when the TCA base level is non-zero.
    pub const SIGN_TCA: usize = 51;
    /// First greater-than-flag context.
    pub const GTX: usize = 53;

    /// Layout for `num_gtx_flags` = N greater-than flags.
    pub const fn new(num_gtx_flags: u32) -> Self {
        Self { n: num_gtx_flags }
    }

    /// N, the number of greater-than flags.
    pub const fn num_gtx_flags(&self) -> u32 {
        self.n
    }

    /// Total number of contexts, `90 + 4N`.
    pub const fn len(&self) -> usize {
        90 + 4 * self.n as usize
    }

    /// Never empty; present for API symmetry with `len`.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// The neighbour class of the previous level `nb` that selects sig and sign contexts:
    /// 0 for zero, 1 for negative, 2 for positive.
    #[inline(always)]
    pub const fn nb_class(nb: i32) -> usize {
        (nb != 0) as usize + (nb > 0) as usize
    }

    /// sig_flag context: `3·dqState + nbClass`.
    #[inline(always)]
    pub const fn sig(dq_state: usize, nb_class: usize) -> usize {
        3 * dq_state + nb_class
    }

    /// sig_flag context when the TCA base level is non-zero.
    #[inline(always)]
    pub const fn sig_tca(dq_state: usize, base_gt1: bool) -> usize {
        24 + 2 * dq_state + base_gt1 as usize
    }

    /// sig_flag context at HDSP-enabled positions.
    #[inline(always)]
    pub const fn sig_hdsp(dq_state: usize) -> usize {
        40 + dq_state
    }

    /// sign_flag context: `48 + nbClass`.
    #[inline(always)]
    pub const fn sign(nb_class: usize) -> usize {
        Self::SIGN + nb_class
    }

    /// sign_flag context when the base level is non-zero.
    #[inline(always)]
    pub const fn sign_tca(base_positive: bool) -> usize {
        Self::SIGN_TCA + base_positive as usize
    }

    /// Greater-than flag `k` without a base level: `53 + 2k + negative`.
    #[inline(always)]
    pub const fn gtx(k: usize, negative: bool) -> usize {
        Self::GTX + 2 * k + negative as usize
    }

    /// Greater-than flag `k` with a non-zero base level: `53 + 2N + 2k + far`, `far = !(|base| >= k)`.
    #[inline(always)]
    pub const fn gtx_tca(&self, k: usize, far: bool) -> usize {
        Self::GTX + 2 * self.n as usize + 2 * k + far as usize
    }

    /// First remainder-prefix context, `53 + 4N`; prefix bin `j` uses `rem() + j`.
    #[inline(always)]
    pub const fn rem(&self) -> usize {
        Self::GTX + 4 * self.n as usize
    }

    /// PO: the "non-default init index" flag context.
    #[inline(always)]
    pub const fn po(&self) -> usize {
        self.rem() + 34
    }

    /// RS: the row-skip flag context.
    #[inline(always)]
    pub const fn rs(&self) -> usize {
        self.rem() + 36
    }
}

/// The context models of one tensor (`initCtxModels(N)`), all in init set 0 to start with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextSet {
    layout: ContextLayout,
    models: Vec<ContextModel>,
}

impl ContextSet {
    /// `90 + 4N` contexts in init set 0.
    pub fn new(num_gtx_flags: u32) -> Self {
        let layout = ContextLayout::new(num_gtx_flags);
        Self {
            layout,
            models: vec![ContextModel::new(0); layout.len()],
        }
    }

    /// The index layout.
    pub fn layout(&self) -> ContextLayout {
        self.layout
    }

    /// All models, by index.
    pub fn models(&self) -> &[ContextModel] {
        &self.models
    }

    /// All models, by index, mutable.
    pub fn models_mut(&mut self) -> &mut [ContextModel] {
        &mut self.models
    }

    /// Every model back to set 0 (`initCtxModels` again).
    pub fn init_all(&mut self) {
        self.models.fill(ContextModel::new(0));
    }

    /// Every model back to its own init set (block-row boundary).
    pub fn reset_all(&mut self) {
        for m in &mut self.models {
            m.reset();
        }
    }

    /// Copy the model states of `other` (same N) without reallocating.
    pub fn copy_from(&mut self, other: &ContextSet) {
        self.layout = other.layout;
        self.models.clone_from(&other.models);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_spec() {
        let l = ContextLayout::new(11);
        assert_eq!(l.len(), 134);
        assert_eq!(l.rem(), 97);
        assert_eq!(l.po(), 131);
        assert_eq!(l.rs(), 133);
        assert_eq!(ContextLayout::gtx(4, true), 62);
        assert_eq!(l.gtx_tca(0, false), 75);
    }

    #[test]
    fn update_matches_kat_b_trace() {
        // ctx 0 bin 0 from P=0 gives P=-36, S0=-2 (KAT-B trace line 2).
        let mut c = ContextModel::new(0);
        c.update(false);
        assert_eq!((c.p(), c.s0()), (-36, -2));
        c.update(true);
        // ctx 0 later shows P=1, S0=0 after a 0 then a 1.
        assert_eq!((c.p(), c.s0()), (1, 0));
        assert!(c.mps());
        // P = -1 selects column 1 (rLPS 175 at range 426).
        let mut n = ContextModel::new(0);
        n.p = -1;
        assert_eq!(n.rlps(426), 175);
    }

    /// The §2.3 formula written out directly.
    fn update_plain(p: i16, s0: i8, shift0: u8, shift1: u8, bin: bool) -> (i16, i8) {
        let curve = crate::tables::CURVE;
        let sgn = if bin { 1 } else { -1 };
        let s0 = i32::from(s0);
        let s1 = i32::from(p) - 16 * s0;
        let s0 = s0 + sgn * (curve[(16 + ((sgn * s0) >> 3)) as usize] >> shift0);
        let s1 = s1 + sgn * (curve[(16 + ((sgn * s1) >> 7)) as usize] >> shift1);
        ((s1 + 16 * s0) as i16, s0 as i8)
    }

    #[test]
    fn table_update_matches_formula() {
        for (idx, set) in INIT_SETS.iter().enumerate() {
            let mut c = ContextModel::new(idx as u8);
            let (mut p, mut s0) = (c.p(), c.s0());
            let mut x = 0x1234_5678u32 + idx as u32;
            for i in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Long runs push the estimators to their extremes.
                let bin = if (i / 500) % 3 == 0 {
                    !x.is_multiple_of(8)
                } else if (i / 500) % 3 == 1 {
                    x.is_multiple_of(8)
                } else {
                    x.is_multiple_of(2)
                };
                c.update(bin);
                (p, s0) = update_plain(p, s0, set.shift0, set.shift1, bin);
                assert_eq!((c.p(), c.s0()), (p, s0), "set {idx} step {i}");
            }
        }
    }

    #[test]
    fn signed_s1_step_matches_formula_over_reachable_states() {
        let curve = crate::tables::CURVE;
        for shift1 in 4..=6u8 {
            for s1 in -1923..=1923i32 {
                for bin in [false, true] {
                    let sgn = if bin { 1 } else { -1 };
                    let want = sgn * (curve[(16 + ((sgn * s1) >> 7)) as usize] >> shift1);
                    // With S0 = 0, P = S1 and S0 moves by its own table only.
                    let (p, s0) = update_state(s1 as i16, 0, s0_row(5), s1_row(shift1), bin);
                    assert_eq!(
                        i32::from(p) - 16 * i32::from(s0),
                        s1 + want,
                        "s1 {s1} bin {bin}"
                    );
                }
            }
        }
    }

    #[test]
    fn set7_fast_estimator_never_moves() {
        let mut c = ContextModel::new(7);
        for i in 0..1000 {
            c.update(i % 3 == 0);
            assert_eq!(c.s0(), 0);
        }
    }

    #[test]
    fn reachable_states_stay_in_bounds() {
        for set in 0..9u8 {
            for pattern in [0u32, 1, 2, 3] {
                let mut c = ContextModel::new(set);
                for i in 0..5000u32 {
                    let bin = match pattern {
                        0 => false,
                        1 => true,
                        2 => i % 2 == 0,
                        _ => (i / 37) % 2 == 0,
                    };
                    c.update(bin);
                    assert!(c.p().unsigned_abs() <= 3889);
                    assert!(c.s0().unsigned_abs() <= 123);
                }
            }
        }
    }

    /// Every state reachable from the init sets has `P >> 7` in −32..=31, where
    /// [`RLPS_SIGNED`] gives the entry of the absolute column `|P >> 7| & 31`. S0 and S1 move
    /// apart (each by its own value, its own shift and the bin), so their reachable values are
    /// searched one at a time, exhaustively.
    #[test]
    fn signed_rlps_table_covers_every_reachable_state() {
        use crate::tables::RLPS_PACKED;
        use std::collections::BTreeSet;
        fn reachable(start: i32, step: impl Fn(i32, bool) -> i32) -> BTreeSet<i32> {
            let mut seen = BTreeSet::from([start]);
            let mut todo = vec![start];
            while let Some(v) = todo.pop() {
                for bin in [false, true] {
                    let next = step(v, bin);
                    if seen.insert(next) {
                        todo.push(next);
                    }
                }
            }
            seen
        }
        let max_abs = |set: &BTreeSet<i32>| set.iter().map(|v| v.unsigned_abs()).max();
        for set in INIT_SETS {
            let (r0, r1) = (s0_row(set.shift0), s1_row(set.shift1));
            let s0s = reachable(i32::from(set.s0), |s0, bin| {
                i32::from(update_state((s0 << 4) as i16, s0 as i8, r0, r1, bin).1)
            });
            let start_s1 = i32::from(set.p) - (i32::from(set.s0) << 4);
            let s1s = reachable(start_s1, |s1, bin| {
                let (p, s0) = update_state(s1 as i16, 0, r0, r1, bin);
                i32::from(p) - (i32::from(s0) << 4)
            });
            let bound = max_abs(&s1s).unwrap_or(0) + 16 * max_abs(&s0s).unwrap_or(0);
            assert!(bound < 4096, "|P| may reach {bound}");
        }
        for p in -4096..4096i32 {
            let c = ContextModel {
                p: p as i16,
                ..ContextModel::new(0)
            };
            for range in 256..512u32 {
                let col = (p >> 7).unsigned_abs() as usize & 31;
                assert_eq!(
                    c.rlps_packed(range),
                    RLPS_PACKED[(range as usize & 0xE0) | col]
                );
            }
        }
    }

    #[test]
    fn reset_restores_init() {
        let mut c = ContextModel::new(5);
        c.update(false);
        c.update(false);
        c.reset();
        assert_eq!(c, ContextModel::new(5));
    }
}

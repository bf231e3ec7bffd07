//! The store of [`super::StateRates`]' vector forms: a context is one 256-bit vector of eight
//! 32-bit lanes, one per state, each holding the state's S0 (low half) and S1 (high half). The
//! forms differ only in the instructions that price and adapt it: [`super::avx512`] and
//! [`super::avx2`].

use super::{avx2, avx512, CANDIDATES, STATES};
use crate::context::ContextLayout;
use crate::tables::INIT_SETS;

/// The instruction set a [`Lanes`] store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    /// AVX-512 F, BW and VL.
    Avx512,
    /// AVX2.
    Avx2,
}

impl Isa {
    /// The faster one this CPU has (and the environment does not rule out), if any.
    pub(super) fn detect() -> Option<Isa> {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|isa| isa.available())
    }

    pub(super) fn available(self) -> bool {
        match self {
            Isa::Avx512 => avx512::available(),
            Isa::Avx2 => avx2::available(),
        }
    }
}

/// One context's estimators for the eight states: S0 of state `s` in 16-bit lane `2s`, S1 in
/// lane `2s + 1` (so state `s` is 32-bit lane `s`).
pub(super) type Estimators = [i16; 2 * STATES];

/// Lanes with S0 `s0` and S1 `s1` in every state.
pub(super) const fn lanes_of(s0: i16, s1: i16) -> Estimators {
    let mut t = [s1; 2 * STATES];
    let mut i = 0;
    while i < STATES {
        t[2 * i] = s0;
        i += 1;
    }
    t
}

/// The eight models as one store of [`Estimators`] (the module documentation).
#[derive(Clone, Debug)]
pub(super) struct Lanes {
    pub ctxs: Vec<Estimators>,
    pub layout: ContextLayout,
    /// Neighbour levels of the two generations of models: `latest` was written by the last
    /// advance and prices the next step; the other one is used and written by the next advance
    /// (reference quirk: neighbours stay with their model slot, which alternates).
    pub nb: [[i32; STATES]; 2],
    pub latest: usize,
    /// Contexts an advance has adapted, one bit each: the others still hold the fresh state in
    /// every lane, which the step's shuffle leaves as it is.
    pub touched: Vec<u64>,
    isa: Isa,
}

impl Lanes {
    /// Fresh models for `layout`, where the CPU has `isa` ([`Isa::available`]): a `Lanes`
    /// exists only there, which is what its vector code relies on.
    pub(super) fn new(layout: ContextLayout, isa: Isa) -> Option<Self> {
        if !isa.available() {
            return None;
        }
        let set = INIT_SETS[0];
        let fresh = lanes_of(i16::from(set.s0), set.p - (i16::from(set.s0) << 4));
        Some(Self {
            ctxs: vec![fresh; layout.len()],
            layout,
            nb: [[0; STATES]; 2],
            latest: 0,
            touched: vec![0; layout.len().div_ceil(64)],
            isa,
        })
    }

    /// The greater-than flags coded before the remainder (the flag loop codes at least one).
    pub(super) fn flags(&self) -> u64 {
        u64::from(self.layout.num_gtx_flags().max(1))
    }

    /// Records that context `ctx` has left its fresh state.
    #[inline(always)]
    pub(super) fn touch(&mut self, ctx: usize) {
        if let Some(word) = self.touched.get_mut(ctx / 64) {
            *word |= 1 << (ctx % 64);
        }
    }

    pub(super) fn estimate(&self, levels: [[i32; CANDIDATES]; 2]) -> [[u32; STATES]; CANDIDATES] {
        // SAFETY: `self` exists only where the CPU has its `isa` (`new`), all that isa's
        // `estimate_lanes` needs.
        #[allow(unsafe_code)]
        unsafe {
            match self.isa {
                Isa::Avx512 => avx512::estimate_lanes(self, levels),
                Isa::Avx2 => avx2::estimate_lanes(self, levels),
            }
        }
    }

    pub(super) fn advance(&mut self, winners: [u8; STATES], levels: [i32; STATES]) {
        let now = 1 - self.latest;
        // SAFETY: as in `estimate`.
        #[allow(unsafe_code)]
        unsafe {
            match self.isa {
                Isa::Avx512 => avx512::advance_lanes(self, winners, levels, now),
                Isa::Avx2 => avx2::advance_lanes(self, winners, levels, now),
            }
        };
        self.nb[now] = levels;
        self.latest = now;
    }
}

/// Lane masks of the states whose neighbour is in class 0, 1 and 2.
pub(super) fn class_masks(nb: &[i32; STATES]) -> [u8; 3] {
    let mut masks = [0u8; 3];
    for (lane, &n) in nb.iter().enumerate() {
        masks[ContextLayout::nb_class(n)] |= 1 << lane;
    }
    masks
}

/// Lanes of the states that quantize with quantizer 0 (even states) and 1 (odd states).
const QUANTIZER_LANES: [u8; 2] = [0x55, 0xAA];

/// No position: the candidate does not end in the walk.
pub(super) const NONE: u64 = u64::MAX;

/// The lanes of the quantizers whose candidate ends at position `j` of a walk, from where it
/// ends in each quantizer.
#[inline(always)]
pub(super) fn ending_at(at: [u64; 2], j: u64) -> u8 {
    (QUANTIZER_LANES[0] * u8::from(at[0] == j)) | (QUANTIZER_LANES[1] * u8::from(at[1] == j))
}

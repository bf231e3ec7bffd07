//! The rate models of the eight dependent-quantization trellis states (deepcabac.md §5.4).
//!
//! A rate-aware trellis keeps one [`RateModel`] per state. Each step it prices the step's
//! candidate levels in every state's model, then gives each state its winning predecessor's
//! contexts, adapted along the level it chose. [`StateRates`] does both for all eight states:
//!
//! - its AVX-512 and AVX2 forms keep the eight models as one store whose every context holds
//!   the eight states' estimators side by side, so a step's copies are one lane shuffle per
//!   context, and a context several states code a bin in (sign, greater-than flags, remainder
//!   prefix) adapts in all of them at once;
//! - its portable form keeps eight [`RateModel`]s per generation, as the reference does, and
//!   moves rather than copies a model its last successor takes.
//!
//! Both give the costs and states the per-state models give (the tests compare them).
//! Only fresh models are supported: every context in init set 0 and every neighbour 0, the
//! quantizer's starting point.
//!
//! ```
//! use nnc_cabac::{RateModel, StateRates};
//!
//! let mut rates = StateRates::new(10)?;
//! // Quantizer 0's candidates (states 0, 2, 4, 6), then quantizer 1's (states 1, 3, 5, 7).
//! let price = rates.estimate([[2, 3, 0], [-1, 4, 0]]);
//! // Fresh models price a level as a fresh `RateModel` does, in each state's DQ state.
//! assert_eq!(price[1][3], RateModel::new(10)?.estimate_bits(4, 3));
//! // Every state takes state 0's contexts and codes its own level, which becomes the
//! // neighbour of the next estimate.
//! rates.advance([0; 8], [2, -1, 0, 4, 3, 0, 1, 1]);
//! let next = rates.estimate([[1, 0, 0], [1, 0, 0]]);
//! let mut state0 = RateModel::new(10)?;
//! state0.update(2, 0);
//! assert_eq!(next[0][0], state0.estimate_bits(1, 0));
//! # Ok::<(), nnc_cabac::Error>(())
//! ```

use crate::tables::INIT_SETS;
#[cfg(target_arch = "x86_64")]
use crate::{context::ContextLayout, layer::MAX_CABAC_UNARY_LENGTH};
use crate::{Error, RateModel};

// `steps` first: its macro is used by the two forms after it.
#[cfg(target_arch = "x86_64")]
#[macro_use]
mod steps;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod lanes;

/// Trellis states.
pub const STATES: usize = 8;

/// Candidate levels each state prices per step.
pub const CANDIDATES: usize = 3;

/// Adaptation shifts of init set 0, the set every rate model's contexts are in.
#[cfg(target_arch = "x86_64")]
const SHIFT0: u32 = INIT_SETS[0].shift0 as u32;
#[cfg(target_arch = "x86_64")]
const SHIFT1: u32 = INIT_SETS[0].shift1 as u32;

/// The rate models of the eight trellis states (see the module documentation).
#[derive(Clone, Debug)]
pub struct StateRates {
    form: Form,
}

#[derive(Clone, Debug)]
enum Form {
    Models(Models),
    #[cfg(target_arch = "x86_64")]
    Lanes(lanes::Lanes),
}

impl StateRates {
    /// Eight fresh models for `num_gtx_flags` greater-than flags (0..=256), as
    /// [`RateModel::new`] makes one, in the fastest form this CPU runs.
    pub fn new(num_gtx_flags: u32) -> Result<Self, Error> {
        #[cfg(target_arch = "x86_64")]
        if num_gtx_flags <= MAX_CABAC_UNARY_LENGTH {
            let lanes = lanes::Isa::detect()
                .and_then(|isa| lanes::Lanes::new(ContextLayout::new(num_gtx_flags), isa));
            if let Some(lanes) = lanes {
                return Ok(Self {
                    form: Form::Lanes(lanes),
                });
            }
        }
        // (Also where the count is out of range: `RateModel::new` refuses it.)
        Self::portable(num_gtx_flags)
    }

    /// [`StateRates::new`] in the portable form, whatever the CPU (to compare the forms).
    pub fn portable(num_gtx_flags: u32) -> Result<Self, Error> {
        Ok(Self {
            form: Form::Models(Models::new(num_gtx_flags)?),
        })
    }

    /// `rates[k][s]`: the estimated cost, in 1/32768 bit, of coding `levels[s & 1][k]` in state
    /// `s`'s model with `dq_state = s` and that model's neighbour, as
    /// [`RateModel::estimate_bits`] gives it. State `s` quantizes with quantizer `s & 1`, so
    /// `levels[q]` are the candidates of quantizer `q`.
    pub fn estimate(&self, levels: [[i32; CANDIDATES]; 2]) -> [[u32; STATES]; CANDIDATES] {
        match &self.form {
            Form::Models(m) => m.estimate(levels),
            #[cfg(target_arch = "x86_64")]
            Form::Lanes(l) => l.estimate(levels),
        }
    }

    /// Each state `s` takes the contexts of state `winners[s]` (0..=7) and adapts them along
    /// the bins of `levels[s]` in `dq_state = s`, with its own neighbour from two advances back;
    /// that neighbour then becomes `levels[s]`. Reference quirk (deepcabac.md §5.4): the
    /// neighbour is not taken with the contexts.
    pub fn advance(&mut self, winners: [u8; STATES], levels: [i32; STATES]) {
        let winners = winners.map(|w| w & (STATES as u8 - 1));
        match &mut self.form {
            Form::Models(m) => m.advance(winners, levels),
            #[cfg(target_arch = "x86_64")]
            Form::Lanes(l) => l.advance(winners, levels),
        }
    }
}

/// The portable form: the models of the last step and of the one before, whose slots swap
/// roles every step.
#[derive(Clone, Debug)]
struct Models {
    prev: Vec<RateModel>,
    curr: Vec<RateModel>,
}

impl Models {
    fn new(num_gtx_flags: u32) -> Result<Self, Error> {
        let fresh = RateModel::new(num_gtx_flags)?;
        Ok(Self {
            prev: vec![fresh.clone(); STATES],
            curr: vec![fresh; STATES],
        })
    }

    fn estimate(&self, levels: [[i32; CANDIDATES]; 2]) -> [[u32; STATES]; CANDIDATES] {
        let mut rates = [[0; STATES]; CANDIDATES];
        for (s, model) in self.curr.iter().enumerate() {
            let costs = model.estimate_levels(levels[s & 1], s as u8);
            for (rates, cost) in rates.iter_mut().zip(costs) {
                rates[s] = cost;
            }
        }
        rates
    }

    fn advance(&mut self, winners: [u8; STATES], levels: [i32; STATES]) {
        std::mem::swap(&mut self.prev, &mut self.curr);
        // A predecessor's last successor takes its contexts instead of copying them.
        let mut successors = [0u8; STATES];
        for &w in &winners {
            successors[usize::from(w)] += 1;
        }
        for (s, (&w, &level)) in winners.iter().zip(&levels).enumerate() {
            let w = usize::from(w);
            let model = &mut self.curr[s];
            successors[w] -= 1;
            if successors[w] == 0 {
                model.take_contexts_from(&mut self.prev[w]);
            } else {
                model.copy_contexts_from(&self.prev[w]);
            }
            model.update(level, s as u8);
        }
    }
}

/// The Exp-Golomb (order 0) binarization of a remainder `r`: the number of 1-bins of its prefix
/// (at most [`MAX_PREFIX_BINS`](crate::binarization::MAX_PREFIX_BINS), which ends it without a
/// 0-bin) and the length of its bypass suffix, as `encode_remainder` codes it without a
/// magnitude bound.
#[inline(always)]
fn exp_golomb(r: u64) -> (usize, u32) {
    // r in [2^n − 1, 2^(n+1) − 2] has n prefix ones and n suffix bits.
    let n = crate::binarization::remainder_prefix_ones(r);
    (n, n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The per-state models a rate-aware trellis keeps, advanced the reference's way: a previous
    /// and a current generation, swapped each step, every state copying its winner's contexts,
    /// every level priced on its own.
    struct Copies {
        prev: Vec<RateModel>,
        curr: Vec<RateModel>,
    }

    impl Copies {
        fn new(flags: u32) -> Self {
            let base = RateModel::new(flags).unwrap();
            Self {
                prev: vec![base.clone(); STATES],
                curr: vec![base; STATES],
            }
        }

        fn estimate(&self, levels: [[i32; CANDIDATES]; 2]) -> [[u32; STATES]; CANDIDATES] {
            std::array::from_fn(|k| {
                std::array::from_fn(|s| self.curr[s].estimate_bits(levels[s & 1][k], s as u8))
            })
        }

        fn advance(&mut self, winners: [u8; STATES], levels: [i32; STATES]) {
            std::mem::swap(&mut self.prev, &mut self.curr);
            for s in 0..STATES {
                let w = usize::from(winners[s]);
                let (curr, prev) = (&mut self.curr[s], &self.prev[w]);
                curr.copy_contexts_from(prev);
                curr.update(levels[s], s as u8);
            }
        }
    }

    fn level() -> impl Strategy<Value = i32> {
        prop_oneof![
            4 => Just(0),
            6 => -4i32..=4,
            3 => -40i32..=40,
            1 => -100_000i32..=100_000,
            1 => Just(i32::MIN + 1),
            1 => Just(i32::MIN),
        ]
    }

    type Step = ([u8; STATES], [i32; STATES], [[i32; CANDIDATES]; 2]);

    fn step() -> impl Strategy<Value = Step> {
        (
            proptest::array::uniform8(0u8..8),
            proptest::array::uniform8(level()),
            proptest::array::uniform2(proptest::array::uniform3(level())),
        )
    }

    /// The portable form and every vector form this CPU runs (and the environment allows).
    fn every_form(flags: u32) -> Vec<StateRates> {
        let mut forms = vec![StateRates::portable(flags).unwrap()];
        #[cfg(target_arch = "x86_64")]
        forms.extend(
            [lanes::Isa::Avx512, lanes::Isa::Avx2]
                .into_iter()
                .filter_map(|isa| lanes::Lanes::new(ContextLayout::new(flags), isa))
                .map(|l| StateRates {
                    form: Form::Lanes(l),
                }),
        );
        forms
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Every step's prices, in every form, equal the per-state models'; states only move
        /// the way the per-state models do (checked through the prices of the next steps).
        #[test]
        fn prices_equal_the_per_state_models(
            flags in prop_oneof![Just(0u32), 1u32..=12, Just(256)],
            steps in proptest::collection::vec(step(), 1..40),
        ) {
            let mut models = Copies::new(flags);
            let mut forms = every_form(flags);
            for (winners, levels, candidates) in steps {
                let want = models.estimate(candidates);
                for form in &forms {
                    prop_assert_eq!(form.estimate(candidates), want);
                }
                models.advance(winners, levels);
                for form in &mut forms {
                    form.advance(winners, levels);
                }
            }
        }
    }

    /// The vector forms this CPU has are among those tested.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn every_form_includes_the_vector_forms() {
        let expected = 1
            + usize::from(lanes::Isa::Avx512.available())
            + usize::from(lanes::Isa::Avx2.available());
        assert_eq!(every_form(4).len(), expected);
    }

    #[test]
    fn exp_golomb_lengths() {
        assert_eq!(exp_golomb(0), (0, 0));
        assert_eq!(exp_golomb(1), (1, 1));
        assert_eq!(exp_golomb(2), (1, 1));
        assert_eq!(exp_golomb(3), (2, 2));
        assert_eq!(exp_golomb(6), (2, 2));
        assert_eq!(exp_golomb(7), (3, 3));
        assert_eq!(exp_golomb(u64::from(u32::MAX)), (31, 31));
    }

    #[test]
    fn too_many_flags_are_refused() {
        let n = crate::MAX_CABAC_UNARY_LENGTH;
        assert!(StateRates::new(n).is_ok());
        assert!(StateRates::new(n + 1).is_err());
        assert!(StateRates::portable(n + 1).is_err());
    }
}

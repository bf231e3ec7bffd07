//! The codebook zero-offset search's trial sizes (hls.md's `codebook_zero_offset`, chosen by
//! the reference with one trial encode per codebook entry), many offsets at a time.
//!
//! Trial `o` codes `indices[i] − o`. Neighbouring offsets code nearly the same bins (the same
//! contexts, mostly the same bins), but each trial adapts its own contexts and range. On CPUs
//! with AVX-512 or AVX2 the trials of 32 consecutive offsets therefore step through the indices
//! together, one vector lane per offset ([`avx512`], [`avx2`]); each lane starts from the state
//! its own trial has after the header and the context-initialisation bins (which the param_opt
//! search chooses per trial), and every lane's shifts give its size as [`payload_size`] counts
//! it. The greater-than flags' part of those searches is shared by the group
//! ([`shared_flags`]), with or without the lanes.
//!
//! [`payload_size`]: crate::payload_size()
//!
//! Knows nothing of codebooks beyond that subtraction: the caller builds the indices.

use std::ops::Range;

use crate::encode_layer::EncodeLayerOptions;
use crate::layer::{LayerConfig, LayerHistory};
use crate::payload_size::{counts, payload_len, preset_payload_size};
use crate::Error;
use shared_flags::SharedFlagChoices;

mod shared_flags;
#[cfg(target_arch = "x86_64")]
mod walk;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// How many consecutive offsets [`shifted_payload_sizes`] counts together: a search spread
/// over threads gives each call a range of this many.
pub const OFFSETS_PER_GROUP: usize = 32;

/// The payload size of every trial in `offsets`: for offset `o`, what
/// [`payload_size`](crate::payload_size()) gives for the levels `indices[i] − o` (wrapping)
/// under `cfg` and `opts`, without history.
pub fn shifted_payload_sizes(
    cfg: &LayerConfig,
    opts: &EncodeLayerOptions,
    indices: &[i32],
    offsets: Range<u32>,
) -> Result<Vec<usize>, Error> {
    sizes_with(Kernel::for_layer(cfg), cfg, opts, indices, offsets)
}

/// [`shifted_payload_sizes`] with `kernel`'s lanes, or one trial at a time without.
fn sizes_with(
    kernel: Option<Kernel>,
    cfg: &LayerConfig,
    opts: &EncodeLayerOptions,
    indices: &[i32],
    offsets: Range<u32>,
) -> Result<Vec<usize>, Error> {
    let mut sizes = Vec::with_capacity(offsets.len());
    let mut next = offsets.start;
    while next < offsets.end {
        let group = next..offsets
            .end
            .min(next.saturating_add(OFFSETS_PER_GROUP as u32));
        let shared = shared_flag_choices(cfg, opts, indices, group.clone());
        let counted = match kernel {
            Some(kernel) if group.len() >= 2 => {
                kernel.group_shifts(cfg, opts, indices, group.clone(), shared.as_ref())?
            }
            _ => None,
        };
        match counted {
            Some(shifts) => sizes.extend(shifts.into_iter().map(payload_len)),
            None => {
                for offset in group.clone() {
                    let preset = shared.as_ref().map(|s| s.preset(offset - group.start));
                    let levels = shifted(indices, offset);
                    let hist = LayerHistory::default();
                    sizes.push(preset_payload_size(
                        cfg,
                        &hist,
                        opts,
                        &levels,
                        preset.as_ref(),
                    )?);
                }
            }
        }
        next = group.end;
    }
    Ok(sizes)
}

/// Whether the trials of consecutive offsets under `cfg` code the same bins in the same
/// contexts wherever their levels agree, which the lanes and the shared flag choices rely on:
/// no dependent quantization (each trial's DQ state would pick other sig contexts and other
/// coded levels), row-major scan, no codebook bounds, and at least one greater-than flag (with
/// none, flag 0 shares its contexts with the remainder's).
fn trials_line_up(cfg: &LayerConfig) -> bool {
    !cfg.dq_flag && cfg.scan_order == 0 && cfg.codebook_size == 0 && cfg.cabac_unary_length >= 1
}

/// The greater-than flags' init-set choices of the trials of `group`, found once for the group,
/// where the param_opt search runs, the trials line up and they are counted (a trial that is
/// encoded and measured runs its whole search, so shared choices would go unused).
fn shared_flag_choices(
    cfg: &LayerConfig,
    opts: &EncodeLayerOptions,
    indices: &[i32],
    group: Range<u32>,
) -> Option<SharedFlagChoices> {
    let hist = LayerHistory::default();
    if !opts.param_opt || !trials_line_up(cfg) || !counts(cfg, &hist, opts, indices.len()) {
        return None;
    }
    SharedFlagChoices::new(indices, group, cfg.cabac_unary_length as usize)
}

/// A form of the lanes' counting loop for this CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    /// Two vectors of 16 lanes ([`avx512`]).
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// Four vectors of 8 lanes ([`avx2`]).
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Kernel {
    /// The kernels this CPU runs, fastest first.
    #[cfg(test)]
    fn available() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut kernels = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if avx512::available() {
                kernels.push(Kernel::Avx512);
            }
            if avx2::available() {
                kernels.push(Kernel::Avx2);
            }
        }
        kernels
    }

    /// The fastest kernel, if the lanes can count `cfg`'s trials together at all
    /// ([`trials_line_up`]).
    fn for_layer(cfg: &LayerConfig) -> Option<Kernel> {
        if !trials_line_up(cfg) {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if avx512::available() {
                return Some(Kernel::Avx512);
            }
            if avx2::available() {
                return Some(Kernel::Avx2);
            }
        }
        None
    }

    /// The shifts of each trial of `group` (at most [`OFFSETS_PER_GROUP`] offsets) before its
    /// terminating bin, or `None` when a trial is not counted (the caller then measures each
    /// one by itself). `shared` holds the group's greater-than flag choices, if found.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn group_shifts(
        self,
        cfg: &LayerConfig,
        opts: &EncodeLayerOptions,
        indices: &[i32],
        group: Range<u32>,
        shared: Option<&SharedFlagChoices>,
    ) -> Result<Option<Vec<u64>>, Error> {
        #[cfg(target_arch = "x86_64")]
        let trials = walk::Trials {
            cfg,
            opts,
            indices,
            group,
            shared,
        };
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => avx512::group_shifts(&trials),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => avx2::group_shifts(&trials),
        }
    }
}

/// The levels of trial `offset`: `indices[i] − offset`, wrapping.
fn shifted(indices: &[i32], offset: u32) -> Vec<i32> {
    indices
        .iter()
        .map(|&i| i.wrapping_sub(offset as i32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload_size::payload_size;
    use proptest::prelude::*;

    fn one_by_one(
        cfg: &LayerConfig,
        opts: &EncodeLayerOptions,
        indices: &[i32],
        offsets: Range<u32>,
    ) -> Vec<usize> {
        offsets
            .map(|o| {
                payload_size(cfg, &LayerHistory::default(), opts, &shifted(indices, o)).unwrap()
            })
            .collect()
    }

    /// Checks [`shifted_payload_sizes`], every kernel this CPU runs and the one-trial path (all
    /// with the shared flag choices) against the trials counted one by one on their own.
    fn assert_every_kernel(
        cfg: &LayerConfig,
        opts: &EncodeLayerOptions,
        indices: &[i32],
        offsets: Range<u32>,
    ) {
        let expected = one_by_one(cfg, opts, indices, offsets.clone());
        assert_eq!(
            shifted_payload_sizes(cfg, opts, indices, offsets.clone()).unwrap(),
            expected
        );
        let kernels = Kernel::available().into_iter().map(Some);
        for kernel in kernels.chain([None]) {
            let sizes = sizes_with(kernel, cfg, opts, indices, offsets.clone()).unwrap();
            assert_eq!(sizes, expected, "{kernel:?}");
        }
    }

    /// Codebook-like indices: a bell around `centre` within `0..size`, with runs of one value.
    fn indices() -> impl Strategy<Value = (Vec<i32>, u32)> {
        (2u32..400, 0usize..900, any::<u64>()).prop_map(|(size, len, seed)| {
            let mut s = seed | 1;
            let mut next = || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            let centre = (next() % u64::from(size)) as i64;
            let spread = 1 + (next() % u64::from(size)) as i64;
            let mut v = Vec::with_capacity(len);
            while v.len() < len {
                let r = next();
                let d = (r % (2 * spread as u64 + 1)) as i64 - spread;
                let d = d * ((r >> 40) % 3) as i64 / 2;
                let x = (centre + d).clamp(0, i64::from(size) - 1) as i32;
                let run = if r >> 62 == 0 {
                    (r >> 20) as usize % 30
                } else {
                    1
                };
                v.extend(std::iter::repeat_n(x, run));
            }
            v.truncate(len);
            (v, size)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn group_sizes_are_the_one_by_one_sizes(
            (indices, size) in indices(),
            n in prop::sample::select(vec![1u32, 2, 4, 10, 15, 40]),
            width in 1usize..50,
            param_opt in any::<bool>(),
            gpi in 0u8..=1,
            first in 0u32..40,
        ) {
            let rows = indices.len().div_ceil(width).max(1);
            let mut lv = indices.clone();
            lv.resize(rows * width, 0);
            let cfg = LayerConfig {
                cabac_unary_length: n,
                general_profile_idc: gpi,
                ..LayerConfig::new(vec![rows, width])
            };
            let opts = EncodeLayerOptions { param_opt, ..Default::default() };
            let offsets = first.min(size)..size;
            // Every lane's shifts, not only the lengths they round to, in every kernel this
            // CPU runs.
            let end = offsets.end.min(offsets.start + OFFSETS_PER_GROUP as u32);
            let group = offsets.start..end;
            let single: Vec<u64> = group
                .clone()
                .map(|o| {
                    crate::payload_size::shifts_before_terminating(
                        &cfg,
                        &LayerHistory::default(),
                        &opts,
                        &shifted(&lv, o),
                    )
                    .unwrap()
                    .unwrap()
                })
                .collect();
            let shared = shared_flag_choices(&cfg, &opts, &lv, group.clone());
            for kernel in Kernel::available() {
                if group.is_empty() {
                    break;
                }
                for shared in [None, shared.as_ref()] {
                    let lanes = kernel.group_shifts(&cfg, &opts, &lv, group.clone(), shared);
                    prop_assert_eq!(lanes.unwrap(), Some(single.clone()), "{:?}", kernel);
                }
            }
            prop_assert_eq!(
                sizes_with(None, &cfg, &opts, &lv, offsets.clone()).unwrap(),
                one_by_one(&cfg, &opts, &lv, offsets.clone())
            );
            prop_assert_eq!(
                shifted_payload_sizes(&cfg, &opts, &lv, offsets.clone()).unwrap(),
                one_by_one(&cfg, &opts, &lv, offsets)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Trials that do not line up (dependent quantization, a block scan, no greater-than
        /// flag) or are not counted (row skipping) take neither the lanes nor the shared flag
        /// choices, and still give the sizes of trials coded one by one.
        #[test]
        fn other_configurations_are_the_one_by_one_sizes(
            (indices, size) in indices(),
            dq in any::<bool>(),
            scan_order in prop::sample::select(vec![0u8, 2]),
            n in prop::sample::select(vec![0u32, 1, 10]),
            row_skip in any::<bool>(),
            param_opt in any::<bool>(),
            first in 0u32..40,
        ) {
            let width = 16;
            let rows = indices.len().div_ceil(width).max(1);
            let mut lv = indices.clone();
            lv.resize(rows * width, 0);
            let cfg = LayerConfig {
                cabac_unary_length: n,
                dq_flag: dq,
                scan_order,
                general_profile_idc: 1,
                ..LayerConfig::new(vec![rows, width])
            };
            let opts = EncodeLayerOptions {
                param_opt,
                row_skip_enabled_flag: row_skip,
                ..Default::default()
            };
            let offsets = first.min(size)..size;
            let expected = one_by_one(&cfg, &opts, &lv, offsets.clone());
            prop_assert_eq!(
                shifted_payload_sizes(&cfg, &opts, &lv, offsets.clone()).unwrap(),
                expected.clone()
            );
            prop_assert_eq!(sizes_with(None, &cfg, &opts, &lv, offsets).unwrap(), expected);
        }
    }

    #[test]
    fn no_shared_choices_for_trials_that_are_encoded() {
        let lv: Vec<i32> = (0..64).map(|i| i % 9).collect();
        // Row skipping codes its flags in the header, which profile 1 has.
        let cfg = LayerConfig {
            cabac_unary_length: 4,
            general_profile_idc: 1,
            ..LayerConfig::new(vec![8, 8])
        };
        let counted = EncodeLayerOptions {
            param_opt: true,
            ..Default::default()
        };
        assert!(shared_flag_choices(&cfg, &counted, &lv, 0..9).is_some());
        let encoded = EncodeLayerOptions {
            row_skip_enabled_flag: true,
            ..counted
        };
        assert!(shared_flag_choices(&cfg, &encoded, &lv, 0..9).is_none());
    }

    #[test]
    #[allow(clippy::reversed_empty_ranges)] // a caller's reversed range must not panic
    fn empty_and_reversed_ranges() {
        let cfg = LayerConfig::new(vec![4]);
        let opts = EncodeLayerOptions::default();
        for offsets in [3..3, 9..2, u32::MAX..u32::MAX] {
            assert_eq!(
                shifted_payload_sizes(&cfg, &opts, &[1, 2, 3, 4], offsets).unwrap(),
                Vec::<usize>::new()
            );
        }
    }

    #[test]
    fn asymmetric_signs() {
        // Small negative and large positive levels: param_opt gives the greater-than flags of
        // the two signs different init sets, so a lane that took the other sign's context
        // would count other shifts.
        let lv: Vec<i32> = (0..3000u32)
            .map(|i| {
                let h = i.wrapping_mul(2_654_435_761) >> 24;
                if h % 3 == 0 {
                    20 + (h % 2) as i32
                } else {
                    80 + (h % 40) as i32
                }
            })
            .collect();
        let cfg = LayerConfig {
            cabac_unary_length: 6,
            ..LayerConfig::new(vec![30, 100])
        };
        let opts = EncodeLayerOptions {
            param_opt: true,
            ..Default::default()
        };
        assert_every_kernel(&cfg, &opts, &lv, 16..48);
    }

    #[test]
    fn extreme_indices_and_offsets() {
        // Magnitudes at the ends of i32 (wrapping subtraction), and every remainder length.
        let mut lv: Vec<i32> = (0..31).map(|k| (1i32 << k) - 1).collect();
        lv.extend([i32::MIN, i32::MAX, 0, -1, 1, i32::MIN + 1]);
        let cfg = LayerConfig {
            cabac_unary_length: 10,
            ..LayerConfig::new(vec![lv.len()])
        };
        let opts = EncodeLayerOptions {
            param_opt: true,
            ..Default::default()
        };
        for offsets in [0..40, u32::MAX - 20..u32::MAX, (1 << 31) - 8..(1 << 31) + 8] {
            assert_every_kernel(&cfg, &opts, &lv, offsets);
        }
    }
}

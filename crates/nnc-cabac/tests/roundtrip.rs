//! Property tests: encode → decode round trips over every feature combination, and decoding
//! random garbage never panics.
#![allow(clippy::unwrap_used)] // test helpers: a panic is a test failure

use nnc_cabac::scan::ScanGeometry;
use nnc_cabac::{
    decode_layer, decode_layer_and_create_entry_points, decode_layer_with_entry_points, dq,
    encode_layer, encode_layer_marking_entry_points, ArithDecoder, ArithEncoder,
    EncodeLayerOptions, HdspMode, LayerConfig, LayerHistory,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Tensor {
    cfg: LayerConfig,
    opts: EncodeLayerOptions,
    /// Levels as handed to the encoder (reconstruction indices under DQ).
    levels: Vec<i32>,
    base: Option<Vec<i32>>,
    hdsp_mode: HdspMode,
    hist: Option<Vec<i8>>,
    qp_offset: i32,
}

impl Tensor {
    fn history(&self) -> LayerHistory<'_> {
        LayerHistory {
            base_levels: self.base.as_deref(),
            hdsp_mode: self.hdsp_mode,
            hdsp_hist: self.hist.as_deref(),
        }
    }
}

fn dims_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        (1usize..400).prop_map(|a| vec![a]),
        (1usize..70, 1usize..70).prop_map(|(a, b)| vec![a, b]),
        (1usize..20, 1usize..12, 1usize..12).prop_map(|(a, b, c)| vec![a, b, c]),
        (1usize..24, 1usize..6, 1usize..4, 1usize..4).prop_map(|(a, b, c, d)| vec![a, b, c, d]),
        Just(vec![1]),
        Just(vec![65, 1]),
        Just(vec![1, 65]),
    ]
}

/// A coded level (DQ domain): mostly small, sometimes zero, occasionally huge.
fn level_value(rng: &mut impl FnMut() -> u64, max_abs: u64) -> i64 {
    let r = rng();
    let mag = match r % 16 {
        0..=5 => 0,
        6..=10 => 1 + (r >> 8) % 3,
        11..=13 => (r >> 8) % 40,
        14 => (r >> 8) % 70_000,
        _ => (r >> 8) % (max_abs + 1),
    }
    .min(max_abs);
    if (r >> 4) & 1 == 1 {
        -(mag as i64)
    } else {
        mag as i64
    }
}

fn tensor_strategy() -> impl Strategy<Value = Tensor> {
    (
        dims_strategy(),
        any::<u64>(),
        (
            any::<bool>(),
            0u8..=4,
            0u8..=1,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            0u32..=24,
            0u32..24,
            prop_oneof![1u32..=12, Just(1u32), Just(40u32), Just(256u32)],
        ),
        (any::<bool>(), 0u8..3, any::<bool>(), -64i32..64),
    )
        .prop_map(|(dims, seed, flags, cb, extra)| {
            let (dq_flag, scan_order, gpi, parent, row_skip, param_opt) = flags;
            let (cbs_raw, cbz_raw, n) = cb;
            let (tca, hdsp_sel, zero_rows, qp_offset) = extra;
            let mut state = seed | 1;
            let mut rng = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let geo = ScanGeometry::new(&dims, scan_order).unwrap();
            let (cbs, cbz) = if gpi == 1 && cbs_raw > 0 && rng() % 3 == 0 {
                (cbs_raw, cbz_raw % cbs_raw)
            } else {
                (0, 0)
            };
            let cfg = LayerConfig {
                dims: dims.clone(),
                dq_flag,
                scan_order,
                general_profile_idc: gpi,
                parent_node_id_present_flag: parent,
                codebook_size: cbs,
                codebook_zero_offset: cbz,
                cabac_unary_length: n,
            };
            // Coded levels within what the binarization (and the i32 reconstruction) can carry.
            let big = if dq_flag {
                (1u64 << 30) - 1
            } else {
                i32::MAX as u64
            };
            let (lo, hi): (i64, i64) = if cbs > 0 {
                (-(cbz as i64), (cbs - 1 - cbz) as i64)
            } else {
                (-(big as i64), big as i64)
            };
            let implied_sign = cbs > 0 && (cbz == 0 || cbz == cbs - 1);
            let mut k: Vec<i32> = (0..geo.n)
                .map(|_| {
                    let v = level_value(&mut rng, big);
                    let v = if implied_sign {
                        v.abs() * if cbz == 0 { 1 } else { -1 }
                    } else {
                        v
                    };
                    v.clamp(lo, hi) as i32
                })
                .collect();
            if zero_rows && geo.w > 0 {
                for r in 0..geo.h {
                    if rng() % 3 == 0 {
                        k[r * geo.w..(r + 1) * geo.w].fill(0);
                    }
                }
            }
            if gpi == 1 && cbs == 1 {
                k.fill(0);
            }
            let skip_active = gpi == 1 && row_skip && geo.w > 1 && geo.n > geo.w && cbs != 1;
            let levels = if dq_flag {
                to_reconstruction(&k, &geo, skip_active)
            } else {
                k
            };
            let base = tca.then(|| {
                (0..geo.n)
                    .map(|_| level_value(&mut rng, 5) as i32)
                    .collect::<Vec<_>>()
            });
            let hdsp_mode =
                [HdspMode::AlwaysOff, HdspMode::TensorOff, HdspMode::TensorOn][hdsp_sel as usize];
            let hist = (hdsp_mode != HdspMode::AlwaysOff)
                .then(|| (0..geo.n).map(|_| (rng() % 3) as i8).collect::<Vec<_>>());
            let opts = EncodeLayerOptions {
                param_opt,
                row_skip_enabled_flag: row_skip,
                chan_zero: None,
                tca_hdsp_flag_follows_profile: false,
            };
            Tensor {
                cfg,
                opts,
                levels,
                base,
                hdsp_mode,
                hist,
                qp_offset,
            }
        })
}

/// Map coded levels to reconstruction indices by running the DQ state machine in scan order.
fn to_reconstruction(k: &[i32], geo: &ScanGeometry, skip_active: bool) -> Vec<i32> {
    let w = geo.w;
    let zero_row = |r: usize| k[r * w..(r + 1) * w].iter().all(|&v| v == 0);
    let mut q = vec![0; k.len()];
    let mut s = 0u8;
    for seg in geo.segments() {
        if skip_active && zero_row(seg.row) {
            s = dq::advance_zeros(s, w);
            continue;
        }
        for pos in seg.start..seg.start + seg.len {
            q[pos] = dq::reconstruction_index(k[pos], s).unwrap();
            s = dq::next_state(s, k[pos]);
        }
    }
    q
}

fn encode_all(tensors: &[Tensor]) -> Vec<u8> {
    let mut enc = ArithEncoder::new();
    for t in tensors {
        enc.iae_v(8, t.qp_offset);
        encode_layer(&mut enc, &t.cfg, &t.history(), &t.opts, &t.levels).unwrap();
    }
    enc.finish()
}

/// [`encode_all`] through [`encode_layer_marking_entry_points`]: the same bytes, and each
/// tensor's entry points as the encoder resolves them from its marks.
fn encode_all_marking(tensors: &[Tensor]) -> (Vec<u8>, Vec<(Vec<u64>, bool)>) {
    let mut enc = ArithEncoder::new();
    let mut marks = vec![];
    for t in tensors {
        enc.iae_v(8, t.qp_offset);
        marks.push(
            encode_layer_marking_entry_points(&mut enc, &t.cfg, &t.history(), &t.opts, &t.levels)
                .unwrap(),
        );
    }
    let bytes = enc.finish();
    let eps = marks
        .iter()
        .map(|m| (m.resolve(&bytes), m.reference_decoder_desyncs()))
        .collect();
    (bytes, eps)
}

/// The entry-point-creating decoder only agrees with the encoder when no tensor triggers the
/// single-block-row quirk.
fn ep_decoder_in_sync(t: &Tensor) -> bool {
    let g = ScanGeometry::new(&t.cfg.dims, t.cfg.scan_order).unwrap();
    g.scan_order == 0 || g.num_block_rows > 1
}

proptest! {
    // 256 cases by default; set PROPTEST_CASES for a longer run.

    #[test]
    fn encode_decode_round_trip(tensors in prop::collection::vec(tensor_strategy(), 1..=3)) {
        let bytes = encode_all(&tensors);
        let (marked_bytes, marked) = encode_all_marking(&tensors);
        prop_assert_eq!(&marked_bytes, &bytes);
        for (t, (_, desyncs)) in tensors.iter().zip(&marked) {
            prop_assert_eq!(*desyncs, !ep_decoder_in_sync(t));
        }

        let mut dec = ArithDecoder::new(&bytes);
        for t in &tensors {
            prop_assert_eq!(dec.iae_v(8), t.qp_offset);
            let mut out = vec![i32::MIN; t.levels.len()];
            let info = decode_layer(&mut dec, &t.cfg, &t.history(), &mut out).unwrap();
            prop_assert_eq!(&out, &t.levels);
            if info.row_skip_enabled_flag {
                prop_assert_eq!(info.row_skip_flags.len(), t.cfg.dims[0]);
            }
        }
        prop_assert_eq!(dec.finish().unwrap(), bytes.len());
        prop_assert_eq!(dec.over_read(), 0);
        prop_assert!(dec.stop_pattern_ok());

        if tensors.iter().all(ep_decoder_in_sync) {
            let mut dec = ArithDecoder::new(&bytes);
            let mut all_eps = vec![];
            for t in &tensors {
                prop_assert_eq!(dec.iae_v(8), t.qp_offset);
                let mut out = vec![0; t.levels.len()];
                let (info, eps) = decode_layer_and_create_entry_points(&mut dec, &t.cfg, &t.history(), &mut out).unwrap();
                prop_assert_eq!(&out, &t.levels);
                prop_assert_eq!(eps.len(), info.num_block_rows.saturating_sub(1));
                // What the encoder resolves from its marks, without this decode.
                prop_assert_eq!(&marked[all_eps.len()].0, &eps);
                all_eps.push(eps);
            }
            prop_assert_eq!(dec.finish().unwrap(), bytes.len());

            for threads in [1, 3] {
                let mut dec = ArithDecoder::new(&bytes);
                for (t, eps) in tensors.iter().zip(&all_eps) {
                    prop_assert_eq!(dec.iae_v(8), t.qp_offset);
                    let mut out = vec![i32::MIN; t.levels.len()];
                    decode_layer_with_entry_points(&mut dec, &t.cfg, &t.history(), eps, &mut out, threads).unwrap();
                    prop_assert_eq!(&out, &t.levels);
                }
                prop_assert_eq!(dec.finish().unwrap(), bytes.len());
            }
        }
    }

    #[test]
    fn garbage_never_panics(
        payload in prop::collection::vec(any::<u8>(), 0..300),
        tensors in prop::collection::vec(tensor_strategy(), 1..=2),
    ) {
        let mut dec = ArithDecoder::new(&payload);
        for t in &tensors {
            let _ = dec.iae_v(8);
            let mut out = vec![0; t.levels.len()];
            if decode_layer(&mut dec, &t.cfg, &t.history(), &mut out).is_err() {
                break;
            }
        }
        let _ = dec.finish();
        let mut dec = ArithDecoder::new(&payload);
        let mut out = vec![0; tensors[0].levels.len()];
        let _ = decode_layer_and_create_entry_points(&mut dec, &tensors[0].cfg, &tensors[0].history(), &mut out);
    }
}

/// Why the encoder falls back to decoding when a single-block-row tensor comes first: the
/// marks give a later tensor its true entry points (those of a decoder in sync), while the
/// reference's entry-point decoder, out of sync after the first tensor, finds others.
#[test]
fn marks_give_true_entry_points_after_a_single_block_row_tensor() {
    let cfg = |h: usize| LayerConfig {
        dq_flag: true,
        scan_order: 1,
        general_profile_idc: 1,
        ..LayerConfig::new(vec![h, 20])
    };
    let (first, second) = (cfg(4), cfg(40));
    let levels = |n: usize, salt: i32| -> Vec<i32> {
        (0..n as i32).map(|i| ((i * 7 + salt) % 11) - 5).collect()
    };
    let (a, b) = (levels(80, 1), levels(800, 3));
    let opts = EncodeLayerOptions::default();
    let hist = LayerHistory::default();
    let mut enc = ArithEncoder::new();
    let ma = encode_layer_marking_entry_points(&mut enc, &first, &hist, &opts, &a).unwrap();
    let mb = encode_layer_marking_entry_points(&mut enc, &second, &hist, &opts, &b).unwrap();
    let bytes = enc.finish();
    assert!(ma.reference_decoder_desyncs());
    assert!(!mb.reference_decoder_desyncs());
    assert!(ma.resolve(&bytes).is_empty());
    let marked = mb.resolve(&bytes);
    assert_eq!(marked.len(), 4);

    let mut dec = ArithDecoder::new(&bytes);
    let mut out = vec![0; a.len()];
    decode_layer(&mut dec, &first, &hist, &mut out).unwrap();
    let mut out = vec![0; b.len()];
    let (_, in_sync) =
        decode_layer_and_create_entry_points(&mut dec, &second, &hist, &mut out).unwrap();
    assert_eq!(marked, in_sync);

    let mut dec = ArithDecoder::new(&bytes);
    let mut out = vec![0; a.len()];
    let quirk = decode_layer_and_create_entry_points(&mut dec, &first, &hist, &mut out)
        .and_then(|_| {
            let mut out = vec![0; b.len()];
            decode_layer_and_create_entry_points(&mut dec, &second, &hist, &mut out)
        })
        .map(|(_, eps)| eps);
    assert_ne!(quirk.as_ref(), Ok(&marked));
}

#[test]
fn tca_quirk_option_writes_hdsp_flag_without_parent() {
    // encodeLayer2 with gpi 1 and parent 0: the reference writes the HDSP flag anyway.
    let dims = vec![4, 8];
    let levels: Vec<i32> = (0..32).map(|i| (i % 5) - 2).collect();
    let base: Vec<i32> = (0..32).map(|i| (i % 3) - 1).collect();
    let cfg = LayerConfig {
        general_profile_idc: 1,
        ..LayerConfig::new(dims)
    };
    let hist = LayerHistory {
        base_levels: Some(&base),
        ..Default::default()
    };
    let plain = EncodeLayerOptions::default();
    let quirk = EncodeLayerOptions {
        tca_hdsp_flag_follows_profile: true,
        ..Default::default()
    };
    let mut a = ArithEncoder::new();
    encode_layer(&mut a, &cfg, &hist, &plain, &levels).unwrap();
    let mut b = ArithEncoder::new();
    encode_layer(&mut b, &cfg, &hist, &quirk, &levels).unwrap();
    assert_ne!(a.finish(), b.finish());
}

#[test]
fn rejects_bad_inputs() {
    let cfg = LayerConfig::new(vec![4, 4]);
    let h = LayerHistory::default();
    let mut dec = ArithDecoder::new(&[0, 0, 0]);
    assert!(decode_layer(&mut dec, &cfg, &h, &mut [0; 15]).is_err());
    let zero_n = LayerConfig {
        cabac_unary_length: 0,
        ..cfg.clone()
    };
    assert!(decode_layer(&mut dec, &zero_n, &h, &mut [0; 16]).is_err());
    let huge_n = LayerConfig {
        cabac_unary_length: 257,
        ..cfg.clone()
    };
    assert!(decode_layer(&mut dec, &huge_n, &h, &mut [0; 16]).is_err());
    let base = [0i32; 3];
    let bad_base = LayerHistory {
        base_levels: Some(&base),
        ..Default::default()
    };
    assert!(decode_layer(&mut dec, &cfg, &bad_base, &mut [0; 16]).is_err());
    let no_hist = LayerHistory {
        hdsp_mode: HdspMode::TensorOn,
        ..Default::default()
    };
    assert!(decode_layer(&mut dec, &cfg, &no_hist, &mut [0; 16]).is_err());
    let bad_cb = LayerConfig {
        general_profile_idc: 1,
        codebook_size: 3,
        codebook_zero_offset: 3,
        ..cfg.clone()
    };
    assert!(decode_layer(&mut dec, &bad_cb, &h, &mut [0; 16]).is_err());

    let mut enc = ArithEncoder::new();
    let mut levels = [0i32; 16];
    // i32::MIN is a level (the reference codes it), but not outside a codebook's range.
    let cb = LayerConfig {
        general_profile_idc: 1,
        codebook_size: 3,
        codebook_zero_offset: 1,
        ..cfg.clone()
    };
    levels[3] = 2;
    assert!(encode_layer(&mut enc, &cb, &h, &EncodeLayerOptions::default(), &levels).is_err());
    let bad_rows = EncodeLayerOptions {
        row_skip_enabled_flag: true,
        chan_zero: Some(vec![true; 4]),
        ..Default::default()
    };
    let gpi1 = LayerConfig {
        general_profile_idc: 1,
        ..cfg.clone()
    };
    levels[3] = 1;
    assert!(encode_layer(&mut enc, &gpi1, &h, &bad_rows, &levels).is_err());
}

#[test]
fn large_n_and_extreme_levels() {
    for n in [1u32, 2, 11, 255, 256] {
        let levels = [i32::MAX, -i32::MAX, 0, 1, -1, 1 << 30, -(1 << 30), 12345];
        let cfg = LayerConfig {
            cabac_unary_length: n,
            ..LayerConfig::new(vec![8])
        };
        let h = LayerHistory::default();
        let mut enc = ArithEncoder::new();
        encode_layer(
            &mut enc,
            &cfg,
            &h,
            &EncodeLayerOptions {
                param_opt: true,
                ..Default::default()
            },
            &levels,
        )
        .unwrap();
        let bytes = enc.finish();
        let mut dec = ArithDecoder::new(&bytes);
        let mut out = [0; 8];
        decode_layer(&mut dec, &cfg, &h, &mut out).unwrap();
        assert_eq!(out, levels, "n={n}");
        assert_eq!(dec.finish().unwrap(), bytes.len());
    }
}

/// Long runs of zeros (the decoder keeps a run's sig-flag context in a local when the DQ state
/// repeats on zeros), across the 4096-position chunks of the level loop and block-row resets,
/// with and without DQ, including runs that start in every DQ state.
#[test]
fn sparse_tensors_with_long_zero_runs() {
    let mut state = 0x5eed_u64;
    let mut rng = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for dq_flag in [false, true] {
        for scan_order in [0u8, 2] {
            for n in [1u32, 2, 10] {
                let dims = vec![300, 97];
                let geo = ScanGeometry::new(&dims, scan_order).unwrap();
                let mut k = vec![0i32; geo.n];
                let mut i = 0;
                while i < geo.n {
                    let r = rng();
                    if r % 10 == 0 {
                        // A run of up to 5000 zeros (already zero).
                        i += (r >> 8) as usize % 5000;
                    } else if r % 10 < 8 {
                        i += 1;
                    } else {
                        let mag = 1 + (r >> 12) as i32 % if r % 7 == 0 { 5000 } else { 4 };
                        k[i] = if (r >> 40) & 1 == 1 { -mag } else { mag };
                        i += 1;
                    }
                }
                let levels = if dq_flag {
                    to_reconstruction(&k, &geo, false)
                } else {
                    k
                };
                let cfg = LayerConfig {
                    dq_flag,
                    scan_order,
                    cabac_unary_length: n,
                    ..LayerConfig::new(dims)
                };
                let h = LayerHistory::default();
                let mut enc = ArithEncoder::new();
                encode_layer(&mut enc, &cfg, &h, &EncodeLayerOptions::default(), &levels).unwrap();
                let bytes = enc.finish();
                let mut dec = ArithDecoder::new(&bytes);
                let mut out = vec![0; levels.len()];
                decode_layer(&mut dec, &cfg, &h, &mut out).unwrap();
                assert_eq!(out, levels, "dq {dq_flag} scan {scan_order} n {n}");
                assert_eq!(dec.finish().unwrap(), bytes.len());
            }
        }
    }
}

/// Sparse updates against sparse TCA bases (the decoder's zero runs then pass over positions
/// of both kinds of sig context), with and without DQ, row skipping and block rows, with and
/// without an HDSP history, each base density around the 7-in-8 switch of the per-position
/// loops. The output buffer starts as garbage, so every zero must be written.
#[test]
fn sparse_updates_with_sparse_tca_bases() {
    let mut state = 0x7ca_u64;
    let mut rng = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let signed = |r: u64, big: bool| {
        let mag = 1 + (r >> 12) as i32 % if big { 300 } else { 3 };
        if (r >> 40) & 1 == 1 {
            -mag
        } else {
            mag
        }
    };
    for dq_flag in [false, true] {
        for (scan_order, row_skip) in [(0u8, false), (0, true), (2, true)] {
            for (base_every, level_every, hdsp_sel) in [
                (10, 10, 0),
                (6, 20, 0),
                (40, 3, 0),
                (10, 10, 1),
                (10, 10, 2),
            ] {
                let dims = vec![150, 97];
                let geo = ScanGeometry::new(&dims, scan_order).unwrap();
                let mut k = vec![0i32; geo.n];
                let mut base = vec![0i32; geo.n];
                for (l, b) in k.iter_mut().zip(base.iter_mut()) {
                    let r = rng();
                    if r % base_every == 0 {
                        *b = signed(r >> 3, r % 5 == 0);
                    }
                    let r = rng();
                    if r % level_every == 0 {
                        *l = signed(r >> 3, r % 7 == 0);
                    }
                }
                // Some all-zero rows, for row skipping.
                for row in k.chunks_mut(geo.w.max(1)) {
                    if rng() % 4 == 0 {
                        row.fill(0);
                    }
                }
                let skip_active = row_skip && geo.w > 1 && geo.n > geo.w;
                let levels = if dq_flag {
                    to_reconstruction(&k, &geo, skip_active)
                } else {
                    k
                };
                let hdsp_mode =
                    [HdspMode::AlwaysOff, HdspMode::TensorOff, HdspMode::TensorOn][hdsp_sel];
                let hist = (hdsp_mode != HdspMode::AlwaysOff).then(|| {
                    (0..geo.n)
                        .map(|_| i8::from(rng() % 9 == 0))
                        .collect::<Vec<_>>()
                });
                let cfg = LayerConfig {
                    dq_flag,
                    scan_order,
                    general_profile_idc: 1,
                    ..LayerConfig::new(dims)
                };
                let h = LayerHistory {
                    base_levels: Some(&base),
                    hdsp_mode,
                    hdsp_hist: hist.as_deref(),
                };
                let opts = EncodeLayerOptions {
                    row_skip_enabled_flag: row_skip,
                    ..EncodeLayerOptions::default()
                };
                let mut enc = ArithEncoder::new();
                encode_layer(&mut enc, &cfg, &h, &opts, &levels).unwrap();
                let bytes = enc.finish();
                let mut dec = ArithDecoder::new(&bytes);
                let mut out = vec![7; levels.len()];
                decode_layer(&mut dec, &cfg, &h, &mut out).unwrap();
                let case = format!(
                    "dq {dq_flag} scan {scan_order} skip {row_skip} bases 1/{base_every} \
                     levels 1/{level_every} hdsp {hdsp_sel}"
                );
                assert_eq!(out, levels, "{case}");
                assert_eq!(dec.finish().unwrap(), bytes.len(), "{case}");
            }
        }
    }
}

/// A tensor coded against an HDSP history carries `hist_dep_sig_prob_enabled_flag`; decoded
/// without that history (HDSP off, or no history for it) it is refused instead of being read in
/// the wrong contexts, and decoded with it, it comes back.
#[test]
fn an_hdsp_tensor_needs_its_history() {
    let cfg = LayerConfig {
        general_profile_idc: 1,
        parent_node_id_present_flag: true,
        ..LayerConfig::new(vec![8, 8])
    };
    let levels: Vec<i32> = (0..64).map(|i| [0, 0, 1, -2, 0, 3][i % 6]).collect();
    let hist: Vec<i8> = (0..64).map(|i| i8::from(i % 3 == 0)).collect();
    let with_hist = LayerHistory {
        hdsp_mode: HdspMode::TensorOn,
        hdsp_hist: Some(&hist),
        ..Default::default()
    };
    let mut enc = ArithEncoder::new();
    encode_layer(
        &mut enc,
        &cfg,
        &with_hist,
        &EncodeLayerOptions::default(),
        &levels,
    )
    .unwrap();
    let bytes = enc.finish();
    for mode in [HdspMode::AlwaysOff, HdspMode::TensorOff] {
        let without = LayerHistory {
            hdsp_mode: mode,
            ..Default::default()
        };
        let mut out = vec![0; 64];
        let r = decode_layer(&mut ArithDecoder::new(&bytes), &cfg, &without, &mut out);
        assert_eq!(
            r.err(),
            Some(nnc_cabac::Error::HdspNotAvailable),
            "{mode:?}"
        );
    }
    let mut out = vec![0; 64];
    let info = decode_layer(&mut ArithDecoder::new(&bytes), &cfg, &with_hist, &mut out).unwrap();
    assert!(info.hist_dep_sig_prob_enabled_flag);
    assert_eq!(out, levels);
}

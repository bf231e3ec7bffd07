//! Known-answer tests KAT-A..KAT-F of deepcabac.md §8 (reference output of NNCodec 2.1.3).
#![allow(clippy::unwrap_used)] // test helpers: a panic is a test failure

use nnc_cabac::{
    decode_layer, decode_layer_and_create_entry_points, decode_layer_with_entry_points,
    encode_layer, ArithDecoder, ArithEncoder, EncodeLayerOptions, EntryPoint, HdspMode,
    LayerConfig, LayerHistory,
};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn cfg(dims: Vec<usize>, n: u32) -> LayerConfig {
    LayerConfig {
        cabac_unary_length: n,
        ..LayerConfig::new(dims)
    }
}

fn opts(param_opt: bool, row_skip: bool) -> EncodeLayerOptions {
    EncodeLayerOptions {
        param_opt,
        row_skip_enabled_flag: row_skip,
        ..Default::default()
    }
}

/// Encode one tensor, check the bytes, decode them back and check levels and length.
fn round_trip(
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    o: &EncodeLayerOptions,
    levels: &[i32],
    expect: &str,
) {
    let mut enc = ArithEncoder::new();
    encode_layer(&mut enc, cfg, hist, o, levels).unwrap();
    let bytes = enc.finish();
    assert_eq!(hex(&bytes), expect);
    let mut dec = ArithDecoder::new(&bytes);
    let mut out = vec![7; levels.len()];
    decode_layer(&mut dec, cfg, hist, &mut out).unwrap();
    assert_eq!(out, levels);
    assert_eq!(dec.finish().unwrap(), bytes.len());
    assert_eq!(dec.over_read(), 0);
    assert!(dec.stop_pattern_ok());
}

#[test]
fn kat_b_minimal_level_coding() {
    let levels = [0, 1, -1, 2, 0, 0, 3, -5];
    let c = cfg(vec![2, 4], 10);
    for po in [false, true] {
        round_trip(
            &c,
            &LayerHistory::default(),
            &opts(po, false),
            &levels,
            "8d004854ef7d98",
        );
    }
}

#[test]
fn kat_c_remainder_path() {
    let levels = [0, 7, -12, 40, -100, 1000, 0, 0, 3, 65535, -2, 1];
    let c = cfg(vec![12], 4);
    round_trip(
        &c,
        &LayerHistory::default(),
        &opts(false, false),
        &levels,
        "8d00a0282c44b87821f003583e5a01170fd8a3f8",
    );
    round_trip(
        &c,
        &LayerHistory::default(),
        &opts(true, false),
        &levels,
        "90074b7d9b16ceaf559c6ad0c947494878fec51fc0",
    );
}

const KAT_D_Q: [[i32; 12]; 20] = [
    [-2, -2, -1, 0, 2, 3, -2, -1, 0, 1, 2, 2],
    [-1, 1, 2, 3, -3, -2, 0, 2, 2, -3, -2, -1],
    [0; 12],
    [-2, -1, 0, 2, 3, -2, -1, 0, 1, 3, -4, -2],
    [1, 3, -4, -2, -1, 0, 2, 3, -3, -2, 0, 1],
    [-2, -1, -1, 1, 2, 3, -3, -2, 0, 0, 2, -3],
    [0, 2, 2, -3, -2, -1, 1, 1, 3, -2, -2, 0],
    [0; 12],
    [-1, 0, 1, 3, -4, -2, -1, 0, 2, 2, -3, -2],
    [2, 3, -2, -1, -1, 1, 2, 3, -3, -1, 0, 1],
    [-3, -2, 0, 2, 2, -3, -2, -1, 0, 2, 3, -2],
    [1, 1, 2, -3, -1, 0, 1, 2, 3, -3, -2, 0],
    [0; 12],
    [0, 0, 2, 2, -3, -2, 0, 1, 2, 4, -3, -1],
    [2, 3, -3, -2, 0, 2, 2, -3, -2, -1, 0, 1],
    [-2, 0, 1, 2, 3, -3, -2, 0, 1, 2, 3, -3],
    [0, 2, 3, -2, -1, 1, 1, 2, -4, -2, -1, 0],
    [0; 12],
    [0, 1, 2, 3, -3, -2, 0, 2, 2, -3, -2, 0],
    [2, -3, -2, 0, 1, 2, 3, -3, -1, 0, 1, 2],
];

const KAT_D_BYTES: &str = "fcddd4d762e598fd4e5f5f27c3e010e00019785cce98c03f2d65102b772b0b21b2f237504698c72d9e98061d1468b246aa8c38b3ac667a2c2356d2eac9dba620ddf30e12784cb435fe93f8c42a21e81714237980";

#[test]
fn kat_d_dq_block_scan_row_skip_entry_points() {
    let q: Vec<i32> = KAT_D_Q.iter().flatten().copied().collect();
    let c = LayerConfig {
        dq_flag: true,
        scan_order: 1,
        general_profile_idc: 1,
        ..cfg(vec![20, 12], 11)
    };
    let hist = LayerHistory::default();
    let mut enc = ArithEncoder::new();
    enc.iae_v(8, -3);
    encode_layer(&mut enc, &c, &hist, &opts(true, true), &q).unwrap();
    let bytes = enc.finish();
    assert_eq!(hex(&bytes), KAT_D_BYTES);

    // Entry-point-creating decoder.
    let mut dec = ArithDecoder::new(&bytes);
    assert_eq!(dec.iae_v(8), -3);
    let mut out = vec![0; q.len()];
    let (info, eps) = decode_layer_and_create_entry_points(&mut dec, &c, &hist, &mut out).unwrap();
    assert_eq!(eps, vec![416_761, 448_356]);
    assert_eq!(
        EntryPoint::unpack(eps[0]),
        EntryPoint {
            bit_offset: 203,
            val8: 127,
            dq_state: 1
        }
    );
    assert_eq!(
        EntryPoint::unpack(eps[1]),
        EntryPoint {
            bit_offset: 218,
            val8: 236,
            dq_state: 4
        }
    );
    assert!(info.row_skip_enabled_flag);
    let skipped: Vec<usize> = (0..20).filter(|&r| info.row_skip_flags[r]).collect();
    assert_eq!(skipped, vec![2, 7, 12, 17]);
    assert_eq!(info.num_block_rows, 3);
    assert_eq!(out, q);
    assert_eq!(dec.finish().unwrap(), 84);

    // Decoding from the signalled entry points, sequentially and on two threads.
    for threads in [1, 2, 3] {
        let mut dec = ArithDecoder::new(&bytes);
        assert_eq!(dec.iae_v(8), -3);
        let mut out = vec![9; q.len()];
        let info =
            decode_layer_with_entry_points(&mut dec, &c, &hist, &eps, &mut out, threads).unwrap();
        assert_eq!(info.num_block_rows, 3);
        assert_eq!(out, q);
        assert_eq!(dec.finish().unwrap(), 84);
    }
    // Wrong entry points are an error, never a panic or other levels: a wrong count, and any
    // entry point that is not where the block row before it ends (its offset, its register
    // byte or only its DQ state changed).
    let mut dec = ArithDecoder::new(&bytes);
    let mut out = vec![0; q.len()];
    assert!(decode_layer_with_entry_points(&mut dec, &c, &hist, &eps[..1], &mut out, 1).is_err());
    let moved = |k: usize, f: fn(&mut EntryPoint)| {
        let mut e = eps.clone();
        let mut ep = EntryPoint::unpack(e[k]);
        f(&mut ep);
        e[k] = ep.pack();
        [e[0], e[1]]
    };
    let wrong = [
        [0u64, 0],
        [u64::MAX, 5],
        [416_761, u64::MAX >> 11 << 11],
        moved(0, |ep| ep.bit_offset += 1),
        moved(0, |ep| ep.val8 ^= 1),
        moved(0, |ep| ep.dq_state ^= 1),
        moved(1, |ep| ep.dq_state ^= 2),
    ];
    for (i, bad) in wrong.iter().enumerate() {
        for threads in [1, 2] {
            let mut dec = ArithDecoder::new(&bytes);
            let _ = dec.iae_v(8);
            let r = decode_layer_with_entry_points(&mut dec, &c, &hist, bad, &mut out, threads);
            assert!(r.is_err(), "wrong entry points {i} accepted");
        }
    }
    let mut dec = ArithDecoder::new(&bytes);
    let _ = dec.iae_v(8);
    let r = decode_layer_with_entry_points(
        &mut dec,
        &c,
        &hist,
        &moved(1, |ep| ep.val8 ^= 4),
        &mut out,
        2,
    );
    assert!(
        matches!(
            r,
            Err(nnc_cabac::Error::EntryPointMismatch { block_row: 2 })
        ),
        "{r:?}"
    );

    // Sequential decoder.
    let mut dec = ArithDecoder::new(&bytes);
    assert_eq!(dec.iae_v(8), -3);
    let mut out = vec![9; q.len()];
    decode_layer(&mut dec, &c, &hist, &mut out).unwrap();
    assert_eq!(out, q);
    assert_eq!(dec.finish().unwrap(), 84);
}

#[test]
fn kat_e_codebook_indices() {
    let e1: Vec<i32> = (0..6)
        .flat_map(|r| (0..10).map(move |c| ((3 * r + c) % 6) - 2))
        .collect();
    let c1 = LayerConfig {
        general_profile_idc: 1,
        codebook_size: 6,
        codebook_zero_offset: 2,
        ..cfg(vec![6, 10], 11)
    };
    round_trip(
        &c1,
        &LayerHistory::default(),
        &opts(true, false),
        &e1,
        "10187b34780be840646f8c5867ff940b2afb0d3becc0",
    );

    let e2: Vec<i32> = (0..6)
        .flat_map(|r| (0..10).map(move |c| if (r * c) % 3 != 0 { (r + c) % 4 } else { 0 }))
        .collect();
    let c2 = LayerConfig {
        general_profile_idc: 1,
        codebook_size: 4,
        codebook_zero_offset: 0,
        ..cfg(vec![6, 10], 11)
    };
    round_trip(
        &c2,
        &LayerHistory::default(),
        &opts(true, false),
        &e2,
        "489e8be100097b96795fb867bfe8",
    );
}

#[test]
fn kat_f_tca_hdsp_row_skip() {
    let (h, w) = (8i32, 16i32);
    let hist: Vec<i8> = (0..h)
        .flat_map(|r| (0..w).map(move |c| i8::from((r + c) % 3 == 0)))
        .collect();
    let base: Vec<i32> = (0..h)
        .flat_map(|r| (0..w).map(move |c| ((5 * r + c) % 7) - 3))
        .collect();
    let k: Vec<i32> = (0..h)
        .flat_map(|r| {
            (0..w).map(move |c| {
                if (r * c) % 4 == 1 || r == 5 {
                    0
                } else {
                    ((3 * r + 5 * c) % 9) - 4
                }
            })
        })
        .collect();
    let c = LayerConfig {
        general_profile_idc: 1,
        parent_node_id_present_flag: true,
        ..cfg(vec![8, 16], 11)
    };
    let lh = LayerHistory {
        base_levels: Some(&base),
        hdsp_mode: HdspMode::TensorOn,
        hdsp_hist: Some(&hist),
    };
    round_trip(
        &c,
        &lh,
        &opts(true, true),
        &k,
        "e5759dfc0c432d4001c8e1bd753a04757633d7cac5145612afc952fcc89f14062834432a502db577c815ebfe50bc2b511b489fcbb3eb38",
    );
}

//! encode_layer → decode_layer round trip (nnc-cabac) over arbitrary configurations and levels:
//! whatever the encoder accepts must decode to the same levels, consuming exactly the payload,
//! also through the entry-point decoders, and the entry points the encoder takes from its marks
//! must be those the decoder finds.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nnc_cabac::scan::ScanGeometry;
use nnc_cabac::{
    decode_layer, decode_layer_and_create_entry_points, decode_layer_with_entry_points, dq,
    encode_layer_marking_entry_points, ArithDecoder, ArithEncoder, EncodeLayerOptions, HdspMode,
    LayerConfig, LayerHistory,
};

const MAX_ELEMENTS: usize = 1 << 12;

#[derive(Arbitrary, Debug)]
struct Input {
    dims: Vec<u8>,
    dq_flag: bool,
    scan_order: u8,
    general_profile_idc: bool,
    parent_node_id_present_flag: bool,
    codebook_size: u8,
    codebook_zero_offset: u8,
    cabac_unary_length_minus1: u8,
    row_skip_enabled_flag: bool,
    param_opt: bool,
    tca_base: Option<Vec<i8>>,
    hdsp_mode: u8,
    hdsp_hist: Vec<u8>,
    /// Coded levels (DQ domain), tiled over the tensor.
    levels: Vec<i32>,
    /// Rows forced to zero (bit r % 64).
    zero_rows: u64,
    qp_offset: i8,
}

/// Coded levels → reconstruction indices, running the DQ state machine in scan order.
fn to_reconstruction(k: &[i32], geo: &ScanGeometry, skip_active: bool) -> Option<Vec<i32>> {
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
            q[pos] = dq::reconstruction_index(k[pos], s)?;
            s = dq::next_state(s, k[pos]);
        }
    }
    Some(q)
}

fuzz_target!(|input: Input| {
    let dims: Vec<usize> = input
        .dims
        .iter()
        .take(4)
        .map(|&d| usize::from(d % 64) + 1)
        .collect();
    if dims.is_empty() || dims.iter().product::<usize>() > MAX_ELEMENTS {
        return;
    }
    let gpi = u8::from(input.general_profile_idc);
    let (cbs, cbz) = match u32::from(input.codebook_size) {
        0 => (0, 0),
        s if gpi == 1 => (s, u32::from(input.codebook_zero_offset) % s),
        _ => (0, 0),
    };
    let cfg = LayerConfig {
        dims: dims.clone(),
        dq_flag: input.dq_flag,
        scan_order: input.scan_order % 5,
        general_profile_idc: gpi,
        parent_node_id_present_flag: input.parent_node_id_present_flag,
        codebook_size: cbs,
        codebook_zero_offset: cbz,
        cabac_unary_length: u32::from(input.cabac_unary_length_minus1) + 1,
    };
    let Ok(geo) = ScanGeometry::new(&dims, cfg.scan_order) else {
        return;
    };
    let n = geo.n;

    // Levels the binarization can carry: codebook range and implied sign, |k| < 2^30 under DQ,
    // any i32 otherwise (i32::MIN as magnitude 2^31, as the reference codes it).
    let (lo, hi) = if cbs > 0 {
        (-i64::from(cbz), i64::from(cbs - 1 - cbz))
    } else if cfg.dq_flag {
        (1 - (1 << 30), (1 << 30) - 1)
    } else {
        (i64::from(i32::MIN), i64::from(i32::MAX))
    };
    let implied = cbs > 0 && (cbz == 0 || cbz == cbs - 1);
    let mut k: Vec<i32> = (0..n)
        .map(|i| {
            let v = input
                .levels
                .get(i % input.levels.len().max(1))
                .map_or(0, |&v| i64::from(v));
            let v = if implied {
                v.abs() * if cbz == 0 { 1 } else { -1 }
            } else {
                v
            };
            v.clamp(lo, hi) as i32
        })
        .collect();
    for r in 0..geo.h {
        if input.zero_rows >> (r % 64) & 1 == 1 {
            k[r * geo.w..(r + 1) * geo.w].fill(0);
        }
    }
    if gpi == 1 && cbs == 1 {
        k.fill(0);
    }
    let skip_active =
        gpi == 1 && input.row_skip_enabled_flag && geo.w > 1 && geo.n > geo.w && cbs != 1;
    let levels = if cfg.dq_flag {
        match to_reconstruction(&k, &geo, skip_active) {
            Some(q) => q,
            None => return,
        }
    } else {
        k
    };

    let base: Option<Vec<i32>> = input
        .tca_base
        .as_deref()
        .filter(|b| !b.is_empty())
        .map(|b| (0..n).map(|i| i32::from(b[i % b.len()])).collect());
    let hdsp_mode = [HdspMode::AlwaysOff, HdspMode::TensorOff, HdspMode::TensorOn]
        [usize::from(input.hdsp_mode % 3)];
    let hist: Option<Vec<i8>> = (hdsp_mode != HdspMode::AlwaysOff).then(|| {
        (0..n)
            .map(|i| {
                input
                    .hdsp_hist
                    .get(i % input.hdsp_hist.len().max(1))
                    .map_or(0, |&h| (h % 3) as i8)
            })
            .collect()
    });
    let history = LayerHistory {
        base_levels: base.as_deref(),
        hdsp_mode,
        hdsp_hist: hist.as_deref(),
    };
    let opts = EncodeLayerOptions {
        param_opt: input.param_opt,
        row_skip_enabled_flag: input.row_skip_enabled_flag,
        chan_zero: None,
        tca_hdsp_flag_follows_profile: false,
    };

    let mut enc = ArithEncoder::new();
    enc.iae_v(8, i32::from(input.qp_offset));
    let marks = match encode_layer_marking_entry_points(&mut enc, &cfg, &history, &opts, &levels) {
        Ok(m) => m,
        Err(e) => panic!("encoder refused valid levels: {e}"),
    };
    let bytes = enc.finish();

    let mut dec = ArithDecoder::new(&bytes);
    assert_eq!(dec.iae_v(8), i32::from(input.qp_offset));
    let mut out = vec![i32::MIN; n];
    decode_layer(&mut dec, &cfg, &history, &mut out).expect("decodes");
    assert_eq!(out, levels, "decoded levels differ");
    assert_eq!(dec.finish().expect("terminates"), bytes.len());
    assert_eq!(dec.over_read(), 0);
    assert!(dec.stop_pattern_ok());

    // The entry-point decoders, where the reference's single-block-row quirk does not apply.
    if geo.scan_order != 0 && geo.num_block_rows <= 1 {
        return;
    }
    let mut dec = ArithDecoder::new(&bytes);
    dec.iae_v(8);
    let mut out = vec![0; n];
    let (_, eps) = decode_layer_and_create_entry_points(&mut dec, &cfg, &history, &mut out)
        .expect("decodes with entry points");
    assert_eq!(out, levels);
    assert_eq!(dec.finish().expect("terminates"), bytes.len());
    // The encoder's own entry points, from the marks of its real pass.
    assert_eq!(
        marks.resolve(&bytes),
        eps,
        "entry points from the marks differ"
    );
    for threads in [1, 2] {
        let mut dec = ArithDecoder::new(&bytes);
        dec.iae_v(8);
        let mut out = vec![i32::MIN; n];
        decode_layer_with_entry_points(&mut dec, &cfg, &history, &eps, &mut out, threads)
            .expect("decodes from entry points");
        assert_eq!(out, levels);
        assert_eq!(dec.finish().expect("terminates"), bytes.len());
    }
});

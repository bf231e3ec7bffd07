//! Level decoding (nnc-cabac) with an arbitrary `LayerConfig`, TCA base, HDSP history, entry
//! points and payload, through all three decoders. Errors are fine; panics and hangs are bugs.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nnc_cabac::{
    decode_layer, decode_layer_and_create_entry_points, decode_layer_with_entry_points,
    ArithDecoder, HdspMode, LayerConfig, LayerHistory,
};

/// Largest tensor tried (keeps executions fast; sizes beyond it take no other code paths).
const MAX_ELEMENTS: usize = 1 << 16;

#[derive(Arbitrary, Debug)]
struct Input {
    dims: Vec<u8>,
    dq_flag: bool,
    scan_order: u8,
    general_profile_idc: u8,
    parent_node_id_present_flag: bool,
    codebook_size: u8,
    codebook_zero_offset: u8,
    cabac_unary_length: u16,
    tca_base: Option<Vec<i8>>,
    hdsp_mode: u8,
    hdsp_hist: Option<Vec<u8>>,
    /// Use the pattern as is (usually the wrong length) instead of tiling it.
    raw_lengths: bool,
    entry_points: Vec<u64>,
    decoder: u8,
    payload: Vec<u8>,
}

fn tile<T: Copy, U>(pattern: &[T], n: usize, raw: bool, f: impl Fn(T) -> U) -> Vec<U> {
    if raw || pattern.is_empty() {
        pattern.iter().map(|&x| f(x)).collect()
    } else {
        (0..n).map(|i| f(pattern[i % pattern.len()])).collect()
    }
}

fuzz_target!(|input: Input| {
    let dims: Vec<usize> = input.dims.iter().take(5).map(|&d| usize::from(d)).collect();
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let Some(n) = n.filter(|&n| n <= MAX_ELEMENTS) else {
        return;
    };
    let cfg = LayerConfig {
        dims,
        dq_flag: input.dq_flag,
        scan_order: input.scan_order % 8,
        general_profile_idc: input.general_profile_idc % 3,
        parent_node_id_present_flag: input.parent_node_id_present_flag,
        codebook_size: u32::from(input.codebook_size),
        codebook_zero_offset: u32::from(input.codebook_zero_offset),
        cabac_unary_length: u32::from(input.cabac_unary_length % 300),
    };
    let base = input
        .tca_base
        .as_deref()
        .map(|b| tile(b, n, input.raw_lengths, i32::from));
    let hist = input
        .hdsp_hist
        .as_deref()
        .map(|h| tile(h, n, input.raw_lengths, |x| (x % 3) as i8));
    let hist_view = LayerHistory {
        base_levels: base.as_deref(),
        hdsp_mode: [HdspMode::AlwaysOff, HdspMode::TensorOff, HdspMode::TensorOn]
            [usize::from(input.hdsp_mode % 3)],
        hdsp_hist: hist.as_deref(),
    };
    let mut out = vec![0i32; n];
    let mut dec = ArithDecoder::new(&input.payload);
    let _ = match input.decoder % 4 {
        0 => decode_layer(&mut dec, &cfg, &hist_view, &mut out).map(|_| ()),
        1 => decode_layer_and_create_entry_points(&mut dec, &cfg, &hist_view, &mut out).map(|_| ()),
        t => decode_layer_with_entry_points(
            &mut dec,
            &cfg,
            &hist_view,
            &input.entry_points,
            &mut out,
            usize::from(t - 1),
        )
        .map(|_| ()),
    };
    let _ = dec.iae_v(8);
    let _ = dec.finish();
    let _ = dec.stop_pattern_ok();
    let _ = dec.over_read();
});

//! Whole-stream decoding (nnc-tensor): any input decodes to tensors or a typed error, and the
//! header view used by `nnc info` never panics either. Limits are lowered so that a plausible
//! but huge declared tensor does not spend the fuzzer's time on memset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc_tensor::{decode_stream, hls_json, DecodeOptions, DecoderState, Limits};

fuzz_target!(|data: &[u8]| {
    let opts = DecodeOptions::new()
        .with_tensor_dimensions("l.weight", vec![16, 8, 3, 3])
        .with_limits(
            Limits::default()
                .with_max_tensor_elements(1 << 20)
                .with_max_total_elements(1 << 22)
                .with_max_recompose_multiply_adds(1 << 24),
        );
    let _ = hls_json(data, &opts);
    let mut state = DecoderState::default();
    if let Ok(decoded) = decode_stream(data, &mut state, &opts) {
        for t in &decoded.tensors {
            let n: usize = t.tensor.shape.iter().product();
            assert_eq!(
                n,
                t.tensor.data.len(),
                "{}: shape and data disagree",
                t.tensor.name
            );
        }
    }
});

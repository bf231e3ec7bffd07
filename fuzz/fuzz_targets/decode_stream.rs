//! Whole-stream decoding (nnc-tensor): any input decodes to tensors or a typed error, and the
//! header view used by `nnc info` never panics either. The streaming decoder (`nnc decode`'s
//! path: one NDU per window on one thread, pipelined on two; levels dropped, dequantized in
//! place) must give the same tensors whenever both succeed, and the summary `nnc stats` prints
//! (read from the headers) must name them with their shapes, dtypes and QPs; with local
//! scalings applied, the plan names what comes out, all of it from the plain decode. Limits are lowered
//! so that a plausible but huge declared tensor does not spend the fuzzer's time on memset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc_tensor::{
    decode_standalone_with, decode_stream, hls_json, summarise_stream, DecodeOptions, DecoderState,
    Limits,
};

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
    let summary = summarise_stream(data, &DecoderState::default(), &opts);
    let mut state = DecoderState::default();
    let collected = decode_stream(data, &mut state, &opts);
    if let Ok(decoded) = &collected {
        let summary = summary.expect("a stream that decodes summarises");
        assert_eq!(
            summary.len(),
            decoded.tensors.len(),
            "summary's tensor count"
        );
        let shared: f64 = summary.iter().map(|s| s.bytes).sum();
        assert!(
            shared <= data.len() as f64 + 1e-6,
            "{shared} bytes of {}",
            data.len()
        );
        for (s, d) in summary.iter().zip(&decoded.tensors) {
            let t = &d.tensor;
            assert_eq!((&s.spec.name, &s.spec.shape), (&t.name, &t.shape));
            // The plan's recorded integer type, unless the values do not fit it (then int32).
            assert!(
                s.spec.dtype == t.dtype() || t.dtype() == nnc_tensor::DType::I32,
                "{}: summary's dtype {:?}, decoded {:?}",
                t.name,
                s.spec.dtype,
                t.dtype()
            );
            assert_eq!(s.qp, d.approximation.qp(), "{}: summary's qp", t.name);
        }
    }
    if let Ok(decoded) = &collected {
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
    // With local scalings applied the plan still names what comes out, and each tensor is one
    // of the plain decode's (a scaling left out, a weight's values scaled).
    let scaled_opts = opts.clone().with_apply_local_scaling(true);
    let scaled = decode_stream(data, &mut DecoderState::default(), &scaled_opts);
    if let (Ok(scaled), Ok(plain)) = (&scaled, &collected) {
        let plan = nnc_tensor::plan_stream(data, &scaled_opts).expect("a decoded stream plans");
        assert_eq!(plan.tensors.len(), scaled.tensors.len(), "scaled plan");
        assert!(scaled.tensors.len() <= plain.tensors.len());
        for (p, t) in plan.tensors.iter().zip(&scaled.tensors) {
            let t = &t.tensor;
            assert_eq!((&p.name, &p.shape), (&t.name, &t.shape), "scaled plan");
            assert!(
                plain
                    .tensors
                    .iter()
                    .any(|c| c.tensor.name == t.name && c.tensor.shape == t.shape),
                "{}: not in the plain decode",
                t.name
            );
        }
    }
    // One thread: one NDU per window; two: the pipelined path (workers decode while this
    // thread takes the results in order).
    for threads in [1, 2] {
        let streamed =
            decode_standalone_with(data, &opts.clone().with_threads(Some(threads)), |t| {
                Ok::<_, nnc_tensor::Error>(t)
            });
        if let (Ok(streamed), Ok(decoded)) = (streamed, &collected) {
            assert_eq!(streamed.len(), decoded.tensors.len(), "tensor count");
            for (s, c) in streamed.iter().zip(&decoded.tensors) {
                let c = &c.tensor;
                assert_eq!(
                    (&s.name, &s.shape, s.dtype()),
                    (&c.name, &c.shape, c.dtype())
                );
                // Floats by bit pattern (NaN payloads included), everything else by value.
                let bits = |t: &nnc_tensor::Tensor| {
                    t.data
                        .as_f32_lossless()
                        .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
                };
                match (bits(s), bits(c)) {
                    (Some(a), Some(b)) => assert!(a == b, "{}: streamed values differ", s.name),
                    _ => assert!(s.data == c.data, "{}: streamed values differ", s.name),
                }
            }
        }
    }
});

//! Regression tests for decoder bugs found by the hostile-input tests and the fuzzers
//! (see docs/fuzzing.md). Each test names the bug it pins.

mod common;

use std::time::{Duration, Instant};

use common::{edit_ndus, guarded, vector};
use nnc_tensor::{decode_stream, DecoderState, ErrorKind, Limits, TensorData};

/// Bug: any two tensors called `<w>_G` and `<w>_H` were "recomposed" by name, whatever their
/// shapes, indexing out of bounds (a panic) when the shapes did not chain. Only NDUs that signal
/// a low-rank decomposition (`NNR_CPT_DC`) are recomposed now.
#[test]
fn tensors_named_like_factors_are_not_recomposed() {
    let v = vector("c_multi_tensor_mixed");
    // a.weight [48, 40] becomes p_G, c.idx [7, 9] becomes p_H.
    let bytes = edit_ndus(&v.steps[0], &v.opts, |i, h| match i {
        0 => h.topology_elem_id = Some("p_G".into()),
        3 => h.topology_elem_id = Some("p_H".into()),
        _ => {}
    });
    let (r, _) = guarded(|| decode_stream(&bytes, &mut DecoderState::default(), &v.opts));
    let decoded = r.expect("no panic").expect("decodes");
    let names: Vec<&str> = decoded
        .tensors
        .iter()
        .map(|t| t.tensor.name.as_str())
        .collect();
    assert_eq!(names, ["p_G", "a.bias", "b.weight", "p_H"]);
    assert_eq!(decoded.tensors[0].tensor.shape, [48, 40]);
    assert_eq!(decoded.tensors[3].tensor.shape, [7, 9]);
}

/// Bug: the recomposed weight had shape [rows, cols] instead of the signalled dimensions, and its
/// size and the multiply-adds of G·H were not limited (2^42 from a few hundred bytes).
#[test]
fn low_rank_blocks_recompose_to_the_signalled_shape_within_limits() {
    let v = vector("c_block_dc_lowrank");
    let bytes = &v.steps[0];
    let factors = decode_stream(
        bytes,
        &mut DecoderState::default(),
        &v.opts.clone().with_recompose_decomposed(false),
    )
    .expect("decodes");
    let opts = v.opts.clone().with_recompose_decomposed(true);
    let recomposed = decode_stream(bytes, &mut DecoderState::default(), &opts).expect("decodes");

    let g = &factors.get("d.weight_G").expect("G").tensor;
    let h = &factors.get("d.weight_H").expect("H").tensor;
    assert_eq!(
        (g.shape.as_slice(), h.shape.as_slice()),
        (&[24, 4][..], &[4, 72][..])
    );
    let w = &recomposed.get("d.weight").expect("W").tensor;
    assert_eq!(w.shape, [24, 8, 3, 3]);
    assert!(recomposed.get("d.weight_G").is_none() && recomposed.get("d.weight_H").is_none());
    let names: Vec<&str> = recomposed
        .tensors
        .iter()
        .map(|t| t.tensor.name.as_str())
        .collect();
    assert_eq!(names, ["d.bias", "d.weight"]); // coding order, W in the place of G
    let (TensorData::F32(gd), TensorData::F32(hd), TensorData::F32(wd)) =
        (&g.data, &h.data, &w.data)
    else {
        panic!("float32 factors expected");
    };
    for r in 0..24 {
        for c in 0..72 {
            let mut acc = 0f32;
            for k in 0..4 {
                acc += gd[r * 4 + k] * hd[k * 72 + c];
            }
            assert_eq!(wd[r * 72 + c].to_bits(), acc.to_bits(), "W[{r}][{c}]");
        }
    }

    // 24 × 72 elements × rank 4 = 6912 multiply-adds.
    let limited = |n| {
        opts.clone()
            .with_limits(Limits::default().with_max_recompose_multiply_adds(n))
    };
    decode_stream(bytes, &mut DecoderState::default(), &limited(6912)).expect("at the limit");
    let e = decode_stream(bytes, &mut DecoderState::default(), &limited(6911)).expect_err("above");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    assert!(e.to_string().contains("multiply-add"), "{e}");
}

/// Bug: a tensor declared far larger than its payload was decoded element by element from the
/// zero bytes past the payload end: a 1 KB stream declaring 48 × 2^21 elements (row skipping
/// makes that plausible) took over a minute before failing. The level loop now stops once the
/// payload is exhausted.
#[test]
fn an_exhausted_payload_stops_the_level_loop() {
    let v = vector("t_uni_nodq_q38_2d");
    let bytes = edit_ndus(&v.steps[0], &v.opts, |_, h| {
        h.tensor_dimensions[1] = 1 << 22;
        h.tensor_dimensions_flag = Some(true);
    });
    let start = Instant::now();
    let e = decode_stream(&bytes, &mut DecoderState::default(), &v.opts).expect_err("corrupt");
    let t = start.elapsed();
    assert_eq!(e.kind(), ErrorKind::Malformed);
    assert!(e.to_string().contains("payload exhausted"), "{e}");
    assert!(t < Duration::from_secs(2), "took {t:?}");
}

/// Unit framing errors name their unit once (the location used to be prefixed to a message that
/// already held it: "NNR unit 0 at byte 0: NNR unit 0 at byte 0 declares ...").
#[test]
fn framing_errors_name_their_unit_once() {
    let opts = nnc_tensor::DecodeOptions::new();
    let e = decode_stream(b"junk", &mut DecoderState::default(), &opts).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.kind(), ErrorKind::Malformed);
    assert_eq!(text.matches("NNR unit 0 at byte 0").count(), 1, "{text}");
    assert!(text.contains("declares"), "{text}");
}

//! The incremental state across the multi-step conformance cases, decoded the ways a user can.

mod common;

use common::load_vectors;
use nnc_tensor::{decode_stream, DecodedStream, DecoderState, Tensor};

/// Without levels handed out, each update's levels move into the incremental state instead of
/// being copied: every multi-step conformance case (HDSP, TCA, update trees) then ends in the
/// same state, with the same values, as with levels kept.
#[test]
fn moved_levels_leave_the_same_state_as_copied_ones() {
    let sequences: Vec<_> = load_vectors()
        .into_iter()
        .filter(|v| v.steps.len() > 1)
        .collect();
    assert!(sequences.len() >= 5, "{} sequences", sequences.len());
    for v in &sequences {
        let mut kept = DecoderState::default();
        let mut moved = DecoderState::default();
        let without_levels = v.opts.clone().with_keep_levels(false);
        for (i, step) in v.steps.iter().enumerate() {
            let a = decode_stream(step, &mut kept, &v.opts).expect("decodes");
            let b = decode_stream(step, &mut moved, &without_levels).expect("decodes");
            let values = |d: &DecodedStream| -> Vec<Tensor> {
                d.tensors.iter().map(|t| t.tensor.clone()).collect()
            };
            assert_eq!(values(&a), values(&b), "{} step {i}", v.name);
            assert!(b.tensors.iter().all(|t| t.levels.is_none()));
            assert_eq!(kept, moved, "{} step {i}", v.name);
        }
    }
}

/// A bitstream that fails part way leaves the decoder's state as it was, whether the failure is
/// the stream's (a later NDU of another parameter) or the caller's (the callback refusing the
/// last tensor), on one thread and on two. Decoding the intact stream afterwards gives what
/// decoding it first would have.
#[test]
fn a_failed_update_leaves_the_decoder_state_as_it_was() {
    use common::edit_ndus;
    use nnc_tensor::{decode_stream_with, plan_stream, Error, ErrorKind};

    let (mut foreign_tried, mut refused_tried) = (0, 0);
    for v in load_vectors().into_iter().filter(|v| v.steps.len() > 1) {
        let mut state = DecoderState::default();
        for (i, step) in v.steps.iter().enumerate() {
            let mut ndus = 0;
            let foreign = edit_ndus(step, &v.opts, |n, h| {
                ndus = n + 1;
                if n > 0 {
                    h.parameter_id = h.parameter_id.map(|p| p + 1000);
                }
            });
            let outputs = plan_stream(step, &v.opts).expect("plans").tensors.len();
            for threads in [Some(1), Some(2)] {
                let opts = v.opts.clone().with_threads(threads);
                let mut work = state.clone();
                if i > 0 && ndus > 1 && foreign != *step {
                    let e = decode_stream(&foreign, &mut work, &opts).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::StateMismatch, "{e}");
                    assert_eq!(work, state, "{} step {i}, {threads:?}", v.name);
                    foreign_tried += 1;
                }
                let mut seen = 0;
                let refused = decode_stream_with(step, &mut work, &opts, |_| {
                    seen += 1;
                    if seen == outputs {
                        return Err(Error::InvalidArgument {
                            what: "the caller's own failure".into(),
                        });
                    }
                    Ok(())
                });
                assert!(refused.is_err());
                assert_eq!(work, state, "{} step {i}, {threads:?}", v.name);
                refused_tried += 1;
            }
            let before = state.clone();
            decode_stream(step, &mut state, &v.opts).expect("decodes");
            assert_ne!(state, before, "{} step {i} changes the state", v.name);
        }
    }
    assert!(foreign_tried >= 4, "{foreign_tried} foreign NDUs tried");
    assert!(refused_tried >= 20, "{refused_tried} refusals tried");
}

/// An update the encoder's state refuses part way (the second tensor's `parameter_id` moved)
/// leaves that state as it was; the same update in the state's order then codes as if the
/// refused one had never been tried.
#[test]
fn a_refused_update_leaves_the_encoder_state_as_it_was() {
    use nnc_tensor::{encode_incremental, EncodeInput, EncodeOptions, ErrorKind, TensorData};

    let tensor = |name: &str, seed: u32| {
        let data = (0..256u32)
            .map(|i| ((i * 37 + seed * 11) % 29) as f32 / 64.0 - 0.2)
            .collect();
        Tensor::try_new(name, vec![16, 16], TensorData::F32(data)).unwrap()
    };
    let mut opts = EncodeOptions::default().with_threads(Some(1));
    opts.tca = true;
    opts.compress_differences = true;
    let first = [tensor("a", 1), tensor("b", 2)];
    let mut state = nnc_tensor::EncoderState::default();
    encode_incremental(
        EncodeInput::from_tensors(&first).unwrap(),
        &opts,
        &mut state,
        true,
    )
    .unwrap();
    let before = state.clone();

    let moved = [tensor("a", 3), tensor("c", 4), tensor("b", 5)];
    let e = encode_incremental(
        EncodeInput::from_tensors(&moved).unwrap(),
        &opts,
        &mut state,
        true,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::StateMismatch, "{e}");
    assert_eq!(state, before);

    let second = [tensor("a", 3), tensor("b", 5)];
    let mut fresh = before.clone();
    let input = EncodeInput::from_tensors(&second).unwrap();
    let after_refusal = encode_incremental(&input, &opts, &mut state, true).unwrap();
    let direct = encode_incremental(&input, &opts, &mut fresh, true).unwrap();
    assert_eq!(after_refusal.bytes, direct.bytes);
    assert_eq!(state, fresh);
}

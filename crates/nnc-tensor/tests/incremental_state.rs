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

/// A deferred decode changes nothing until its changes are applied, and applied they leave the
/// state a direct decode leaves, on every multi-step conformance case, on one thread and on
/// two (pipelined). Changes applied a second time, or to the state after them, are refused
/// without changing it.
#[test]
fn deferred_decodes_apply_to_what_direct_decodes_leave() {
    use nnc_tensor::{decode_stream_deferred, ErrorKind, StreamDecoder};

    let mut stale_tried = 0;
    for v in load_vectors().into_iter().filter(|v| v.steps.len() > 1) {
        let mut direct = DecoderState::default();
        let mut deferred = DecoderState::default();
        for (i, step) in v.steps.iter().enumerate() {
            let at = format!("{} step {i}", v.name);
            let expected = decode_stream(step, &mut direct, &v.opts).expect("decodes");
            let before = deferred.clone();
            let (decoded, changes) =
                decode_stream_deferred(step, &deferred, &v.opts).expect("decodes");
            assert_eq!(deferred, before, "{at}");
            assert_eq!(decoded.tensors, expected.tensors, "{at}");
            let names: Vec<&str> = changes.tensor_names().collect();
            let coded: Vec<&str> = decoded
                .tensors
                .iter()
                .map(|t| t.tensor.name.as_str())
                .collect();
            assert!(names.iter().all(|n| coded.contains(n)), "{at}: {names:?}");
            assert!(!changes.is_empty(), "{at}");

            // The same changes through the pipelined stream decoder.
            let opts = v.opts.clone().with_threads(Some(2));
            let (_, piped) = StreamDecoder::new(step, &opts)
                .unwrap()
                .run_deferred(&deferred, |_| Ok::<(), nnc_tensor::Error>(()))
                .expect("decodes");
            assert_eq!(piped, changes, "{at}");

            changes.apply(&mut deferred).expect("applies");
            assert_eq!(deferred, direct, "{at}");
            let after = deferred.clone();
            let e = piped.apply(&mut deferred).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::StateMismatch, "{at}: {e}");
            assert!(matches!(e, nnc_tensor::Error::StaleChanges { .. }), "{e}");
            assert_eq!(deferred, after, "{at}");
            stale_tried += 1;
        }
    }
    assert!(stale_tried >= 10, "{stale_tried} stale applications tried");
}

/// A deferred encode leaves the state alone and its changes, applied, leave the state the
/// direct encode leaves, with the same bytes, step after step: with TCA, with HDSP, and with
/// the bit-depth clipping after DQ whose base is the decoder's levels
/// (quirks.md#bitdepth-dq-state). Without HDSP, its changes are the ones the decoder makes of
/// its bitstream.
#[test]
fn deferred_encodes_apply_to_what_direct_encodes_leave() {
    use nnc_tensor::{
        decode_stream_deferred, encode_incremental, encode_incremental_deferred, DecodeOptions,
        EncodeInput, EncodeOptions, EncoderState, TensorData,
    };

    let tensor = |name: &str, seed: u32, n: u32| {
        let data = (0..n * n)
            .map(|i| {
                let x = (i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97)) % 1000;
                if x % 3 == 0 {
                    0.0
                } else {
                    x as f32 / 500.0 - 1.0
                }
            })
            .collect();
        Tensor::try_new(name, vec![n as usize, n as usize], TensorData::F32(data)).unwrap()
    };
    let mut base = EncodeOptions::default().with_threads(Some(1));
    base.tca = true;
    base.compress_differences = true;
    base.device_id = 3;
    let mut hdsp = base.clone();
    hdsp.hdsp = true;
    let mut clipped = base.clone();
    clipped.int_quant_bw = Some(2);
    for (what, opts) in [("tca", base), ("hdsp", hdsp), ("bit depth", clipped)] {
        let mut direct = EncoderState::default();
        let mut deferred = EncoderState::default();
        let mut receiver = DecoderState::default();
        let dec_opts = DecodeOptions::new().with_hdsp(opts.hdsp);
        for step in 0..3 {
            let at = format!("{what}, step {step}");
            let tensors = [tensor("w", step, 24), tensor("b", step + 10, 4)];
            let input = EncodeInput::from_tensors(&tensors).unwrap();
            let expected = encode_incremental(&input, &opts, &mut direct, true).unwrap();
            let before = deferred.clone();
            let (encoded, changes) = encode_incremental_deferred(&input, &opts, &deferred).unwrap();
            assert_eq!(deferred, before, "{at}");
            assert_eq!(encoded.bytes, expected.bytes, "{at}");
            let (_, decoded) =
                decode_stream_deferred(&encoded.bytes, &receiver, &dec_opts).unwrap();
            if !opts.hdsp {
                assert_eq!(decoded, changes, "{at}");
            }
            decoded.apply(&mut receiver).unwrap();
            changes.apply(&mut deferred).unwrap();
            assert_eq!(deferred, direct, "{at}");
            assert_eq!(deferred.bases, receiver.bases, "{at}");
        }
    }
}

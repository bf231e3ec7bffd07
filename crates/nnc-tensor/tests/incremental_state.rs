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

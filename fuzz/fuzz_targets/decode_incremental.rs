//! Incremental decoding: two streams decoded one after the other with one `DecoderState` (TCA
//! bases, HDSP history, update tree), with and without HDSP. Input layout: a flags byte, a
//! little-endian u16 length of the first stream, the first stream, the second stream. A decode
//! that fails must leave the state as it was; a deferred decode of the second stream must make
//! the same changes when applied, and refuse to apply them a second time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc_tensor::{decode_stream, decode_stream_deferred, DecodeOptions, DecoderState, Limits};

fuzz_target!(|data: &[u8]| {
    let [flags, lo, hi, rest @ ..] = data else {
        return;
    };
    let split = usize::from(u16::from_le_bytes([*lo, *hi])).min(rest.len());
    let (first, second) = rest.split_at(split);
    let opts = DecodeOptions::new()
        .with_hdsp(flags & 1 != 0)
        .with_recompose_decomposed(flags & 2 != 0)
        .with_limits(
            Limits::default()
                .with_max_tensor_elements(1 << 20)
                .with_max_total_elements(1 << 22)
                .with_max_recompose_multiply_adds(1 << 24),
        );
    let mut state = DecoderState::default();
    let first_ok = decode_stream(first, &mut state, &opts).is_ok();
    if !first_ok {
        assert_eq!(
            state,
            DecoderState::default(),
            "a failed decode changed the state"
        );
    }
    let before = state.clone();
    let deferred = decode_stream_deferred(second, &before, &opts);
    if decode_stream(second, &mut state, &opts).is_err() {
        // Incremental calls are all or nothing.
        assert_eq!(state, before, "a failed decode changed the state");
        assert!(deferred.is_err(), "only the deferred decode succeeded");
    } else {
        let (_, changes) = deferred.expect("only the direct decode succeeded");
        let mut applied = before.clone();
        let empty = changes.is_empty();
        let second_try = decode_stream_deferred(second, &before, &opts).expect("decodes again");
        changes
            .apply(&mut applied)
            .expect("applies to its own state");
        assert_eq!(
            applied, state,
            "the deferred changes differ from the direct decode's"
        );
        if !empty {
            let after = applied.clone();
            assert!(second_try.1.apply(&mut applied).is_err(), "applied twice");
            assert_eq!(applied, after, "a refused apply changed the state");
        }
    }
    if flags & 4 != 0 && first_ok {
        // Decoding the same stream twice in a row is also a legal (if odd) sequence.
        let mut again = before;
        let _ = decode_stream(first, &mut again, &opts);
    }
});

//! Saved states: `IncrementalState::from_bytes` (versions 1 and 2) and the FL codecs'
//! `ClientState` / `ServerState::from_bytes` on raw bytes never panic nor allocate beyond the
//! input's size, and whatever they accept writes back to bytes that read back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc_fl::{ClientState, ServerState};
use nnc_tensor::IncrementalState;

/// Reads `data`; if accepted, its binary form must be stable through another read and write
/// (bytes are compared, not values: FL states may hold NaN).
macro_rules! check {
    ($ty:ty, $data:expr) => {
        if let Ok(value) = <$ty>::from_bytes($data) {
            let bytes = value.to_bytes().expect("an accepted state writes");
            let again = <$ty>::from_bytes(&bytes).expect("a written state reads");
            assert_eq!(again.to_bytes().expect("writes again"), bytes);
        }
    };
}

fuzz_target!(|data: &[u8]| {
    check!(IncrementalState, data);
    check!(ClientState, data);
    check!(ServerState, data);
});

//! A child made by `fork` after calls ran on worker threads has none of those threads: `fork`
//! copies only the thread that calls it. Pools kept between calls, and rayon's global pool,
//! would take the child's work and never run it. Here the parent encodes and decodes with every
//! kind of thread setting, forks, and the child does it all again under an alarm: the test
//! fails if the child is killed or its bytes differ.
//!
//! One test in this file, so that no other test's thread holds a lock at the fork. It lives in
//! this crate rather than in nnc-tensor, whose threads it tests, because `fork` needs `unsafe`,
//! which nnc-tensor forbids even in its tests.
#![cfg(unix)]
#![allow(clippy::unwrap_used, unsafe_code)]

use nnc_tensor::{
    decode_stream, encode, DecodeOptions, DecoderState, EncodeInput, EncodeOptions, Tensor,
    TensorData,
};

/// Every setting: the global pool, pools of one and two threads (the inputs are too large to
/// run inline), and more threads than the machine has cores.
fn settings() -> Vec<Option<usize>> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    vec![None, Some(1), Some(2), Some(cores + 1)]
}

/// The streams and decoded values of `tensors` with each setting.
fn code_all(tensors: &[Tensor]) -> Vec<(Vec<u8>, Vec<Tensor>)> {
    let input = EncodeInput::from_tensors(tensors).unwrap();
    settings()
        .into_iter()
        .map(|threads| {
            let bytes = encode(&input, &EncodeOptions::default().with_threads(threads))
                .unwrap()
                .bytes;
            let mut state = DecoderState::default();
            let opts = DecodeOptions::new().with_threads(threads);
            let decoded = decode_stream(&bytes, &mut state, &opts).unwrap();
            (
                bytes,
                decoded.tensors.into_iter().map(|t| t.tensor).collect(),
            )
        })
        .collect()
}

#[test]
fn a_forked_child_codes_with_every_thread_setting() {
    // Values from a xorshift generator, spread evenly over ±0.05.
    let mut x = 46u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((x >> 11) as f64 / (1u64 << 52) as f64 - 1.0) * 0.05
    };
    let tensors: Vec<Tensor> = (0..3)
        .map(|k| {
            let values = (0..300 * 256).map(|_| next() as f32).collect();
            Tensor::try_new(format!("t{k}"), vec![300, 256], TensorData::F32(values)).unwrap()
        })
        .collect();
    let parent = code_all(&tensors);
    // SAFETY: the child only codes, then leaves with `_exit`; this file's one test leaves no
    // other thread of the harness holding a lock the child needs.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain libc calls in the child.
        unsafe { libc::alarm(30) };
        let same = code_all(&tensors) == parent;
        unsafe { libc::_exit(if same { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child made above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status),
        "the child was killed by signal {} (SIGALRM: its work waited for threads it does not \
         have)",
        libc::WTERMSIG(status)
    );
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the child's streams or values differ from the parent's"
    );
}

//! A one-thread call on a small input runs on the calling thread (no pool, see `threads.rs`), and
//! then nothing of it may reach rayon's global pool: that pool belongs to the caller, who asked
//! for one thread. Here the global pool has one thread, kept busy for the whole test, so a call
//! that sent any work to it would wait for ever; the calls run on a thread of their own and the
//! test fails if they do not finish in time.
//!
//! One test in this file: the global pool is built here, before anything else uses it.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use nnc_tensor::{
    decode_stream, encode, CodebookMode, DecodeOptions, DecoderState, EncodeInput, EncodeOptions,
    Tensor, TensorData,
};

/// Values spread evenly over ±`half_width` (a fixed seed, so the test is repeatable).
fn tensor(name: &str, shape: &[usize], half_width: f64, seed: u64) -> Tensor {
    let mut rng = common::Rng::new(seed);
    let n = shape.iter().product();
    let values = (0..n)
        .map(|_| ((rng.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0) * half_width)
        .map(|v| v as f32)
        .collect();
    Tensor::try_new(name, shape.to_vec(), TensorData::F32(values)).unwrap()
}

/// Just under the inline limit of 65 536 values: several tensors (coded in parallel on a pool),
/// one whose large levels give the param_opt replay more bins than its parallel threshold.
fn small_model() -> Vec<Tensor> {
    vec![
        tensor("big.weight", &[200, 200], 2.0, 1),
        tensor("mid.weight", &[96, 96], 0.1, 2),
        tensor("small.weight", &[64, 16], 0.1, 3),
        tensor("small.bias", &[64], 0.1, 4),
    ]
}

/// A layer for a codebook encode, whose zero-offset trials and mode decision run in parallel
/// on a pool.
fn codebook_layer() -> (Vec<Tensor>, EncodeOptions) {
    let mut opts = EncodeOptions::default();
    opts.codebook_mode = CodebookMode::Auto;
    opts.qp = -20;
    (vec![tensor("cb.weight", &[40, 50], 0.1, 5)], opts)
}

/// Encodes and decodes `tensors` with `threads`, the decode both with and without recording
/// the decoder state (the two ways the stream decoder schedules NDUs). Returns the bitstream.
fn round_trip(tensors: &[Tensor], opts: &EncodeOptions, threads: Option<usize>) -> Vec<u8> {
    let input = EncodeInput::from_tensors(tensors).unwrap();
    let bytes = encode(&input, &opts.clone().with_threads(threads))
        .unwrap()
        .bytes;
    for update_state in [true, false] {
        let dopts = DecodeOptions::new()
            .with_threads(threads)
            .with_update_state(update_state);
        let decoded = decode_stream(&bytes, &mut DecoderState::default(), &dopts).unwrap();
        assert_eq!(decoded.tensors.len(), tensors.len());
    }
    bytes
}

#[test]
fn small_one_thread_calls_never_wait_on_the_global_pool() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    rayon::spawn(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv();
    });
    started_rx.recv().unwrap();

    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let plain = round_trip(&small_model(), &EncodeOptions::default(), Some(1));
        let (layer, opts) = codebook_layer();
        let with_codebook = round_trip(&layer, &opts, Some(1));
        done_tx.send((plain, with_codebook)).unwrap();
    });
    let Ok((plain, with_codebook)) = done_rx.recv_timeout(Duration::from_secs(300)) else {
        panic!("a one-thread call waited on rayon's global pool");
    };
    release_tx.send(()).unwrap();

    // The same streams as on a pool of two threads of its own.
    let two = round_trip(&small_model(), &EncodeOptions::default(), Some(2));
    assert_eq!(plain, two);
    let (layer, opts) = codebook_layer();
    assert_eq!(with_codebook, round_trip(&layer, &opts, Some(2)));
}

//! Hostile input: every conformance bitstream truncated at every byte and corrupted by a few hundred
//! seeded mutations decodes to `Ok` or a typed error, never a panic, each within a time bound.
//! Plus the resource limits and the side-information error.

mod common;

use std::time::Duration;

use common::{decode_guarded, edit_ndus, load_vectors, mutate, vector, Outcome, Rng, Vector};
use nnc_tensor::{decode_stream, DecodeOptions, DecoderState, Error, ErrorKind, Limits};

/// Wall-time bound for one decode (test profile, opt-level 2; generous for a loaded CI machine).
/// Measured maximum on a 2-core shared machine: see docs/fuzzing.md.
const DECODE_TIME_BOUND: Duration = Duration::from_secs(2);

/// Mutations per bitstream (every step of a sequence gets this many).
const MUTATIONS_PER_STREAM: usize = 300;

/// The limits of the corrupted decodes: 2^20 elements per tensor is 100× the largest vector
/// tensor. A plausible-looking stream may declare that many elements in a few bytes (row
/// skipping), and decoding time grows with the declared output, so the default 2^28 would make
/// single decodes take seconds; the time bound is about loops, not about output size.
fn test_limits() -> Limits {
    Limits::default()
        .with_max_tensor_elements(1 << 20)
        .with_max_total_elements(1 << 22)
}

fn with_test_limits(v: &Vector) -> nnc_tensor::DecodeOptions {
    v.opts.clone().with_limits(test_limits())
}

#[derive(Default)]
struct Tally {
    decodes: u64,
    ok: u64,
    errors: std::collections::BTreeMap<String, u64>,
    failures: Vec<String>,
    max_time: Duration,
    max_case: String,
}

impl Tally {
    fn record(&mut self, what: &str, outcome: Outcome, t: Duration, bytes: &[u8]) {
        self.decodes += 1;
        if t > self.max_time {
            self.max_time = t;
            self.max_case = what.to_string();
        }
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Err(kind) => *self.errors.entry(format!("{kind:?}")).or_default() += 1,
            Outcome::Panic(msg) => {
                let file = save_crasher(bytes, self.failures.len());
                self.failures
                    .push(format!("{what}: panic: {msg} (input saved to {file})"));
            }
        }
        if t > DECODE_TIME_BOUND {
            let file = save_crasher(bytes, self.failures.len());
            self.failures
                .push(format!("{what}: took {t:?} (input saved to {file})"));
        }
    }

    fn finish(self, title: &str) {
        eprintln!(
            "{title}: {} decodes, {} ok, errors {:?}, max {:?} ({})",
            self.decodes, self.ok, self.errors, self.max_time, self.max_case
        );
        assert!(
            self.failures.is_empty(),
            "{} failures:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

fn save_crasher(bytes: &[u8], n: usize) -> String {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{n}.nnc"));
    match std::fs::write(&path, bytes) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("<not saved: {e}>"),
    }
}

/// The state before each step of `v`, from decoding the unmodified earlier steps.
fn states_before_steps(v: &Vector) -> Vec<DecoderState> {
    let mut state = DecoderState::default();
    let mut out = Vec::new();
    for (i, bytes) in v.steps.iter().enumerate() {
        out.push(state.clone());
        if let Err(e) = decode_stream(bytes, &mut state, &v.opts) {
            panic!("{} step {i} does not decode: {e}", v.name);
        }
    }
    out
}

#[test]
fn every_truncation_is_ok_or_a_typed_error() {
    let mut tally = Tally::default();
    for v in load_vectors() {
        for (step, (bytes, state)) in v.steps.iter().zip(states_before_steps(&v)).enumerate() {
            let opts = with_test_limits(&v);
            for len in 0..bytes.len() {
                let cut = &bytes[..len];
                let (outcome, t) = decode_guarded(cut, &state, &opts);
                let what = format!("{} step {step} truncated to {len}", v.name);
                tally.record(&what, outcome, t, cut);
            }
        }
    }
    tally.finish("truncations");
}

#[test]
fn random_mutations_are_ok_or_a_typed_error() {
    let mut tally = Tally::default();
    for (case_index, v) in load_vectors().into_iter().enumerate() {
        for (step, (bytes, state)) in v.steps.iter().zip(states_before_steps(&v)).enumerate() {
            let mut rng = Rng::new(0x5eed ^ ((case_index as u64) << 20) ^ step as u64);
            let opts = with_test_limits(&v);
            for i in 0..MUTATIONS_PER_STREAM {
                let (mutated, desc) = mutate(bytes, &mut rng, &opts);
                let (outcome, t) = decode_guarded(&mutated, &state, &opts);
                let what = format!("{} step {step} mutation {i} ({desc})", v.name);
                tally.record(&what, outcome, t, &mutated);
            }
        }
    }
    tally.finish("mutations");
}

/// Re-encodes `bytes` with `edit` applied to the header of the first NDU.
fn edit_first_ndu(
    bytes: &[u8],
    opts: &DecodeOptions,
    edit: impl Fn(&mut nnc_bitstream::NduHeader),
) -> Vec<u8> {
    edit_ndus(bytes, opts, |i, h| {
        if i == 0 {
            edit(h)
        }
    })
}

#[test]
fn a_tera_element_tensor_is_rejected_before_allocating() {
    let v = vector("t_default_2d");
    let bytes = edit_first_ndu(&v.steps[0], &v.opts, |h| {
        h.tensor_dimensions = vec![1_000_000, 1_000_000];
        h.tensor_dimensions_flag = Some(true);
    });
    // A 10^12-element allocation would abort the process; getting here at all is the test.
    let err = decode_stream(&bytes, &mut DecoderState::default(), &v.opts)
        .expect_err("10^12 elements must be refused");
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    match &err {
        Error::LimitExceeded {
            declared,
            limit,
            at,
            ..
        } => {
            assert_eq!(*declared, 1_000_000_000_000);
            assert_eq!(*limit, nnc_tensor::DEFAULT_MAX_TENSOR_ELEMENTS);
            assert_eq!(at.unit_index, 3);
            assert!(at.tensor.is_some());
        }
        other => panic!("unexpected error {other}"),
    }
    // Also when the limits are raised, the plausibility bound (elements against payload bits)
    // refuses it without allocating: 10^9 rows need at least 10^9 bins (one row-skip flag each),
    // far more than the payload of a few hundred bytes can carry. (10^6 × 10^6 would be
    // plausible: 10^6 skipped rows fit in ~1000 bytes.)
    let bytes = edit_first_ndu(&v.steps[0], &v.opts, |h| {
        h.tensor_dimensions = vec![1_000_000_000, 1_000];
        h.tensor_dimensions_flag = Some(true);
    });
    let opts = v.opts.clone().with_limits(
        Limits::default()
            .with_max_tensor_elements(u64::MAX)
            .with_max_total_elements(u64::MAX),
    );
    let err = decode_stream(&bytes, &mut DecoderState::default(), &opts)
        .expect_err("10^12 elements in a small payload must be refused");
    assert_eq!(err.kind(), ErrorKind::Malformed, "{err}");
    assert!(err.to_string().contains("arithmetic-coded bins"), "{err}");
}

/// Zero dimensions in any place, declared over a payload that holds levels: the layer decoder
/// runs over no rows or rows of no width and the stream is refused (its terminating bin is not
/// where the levels end), never a panic such as a division by a zero row width.
#[test]
fn zero_dimensions_are_refused_without_panicking() {
    let v = vector("t_default_2d");
    for dims in [
        vec![4, 0],
        vec![0, 4],
        vec![0, 0],
        vec![0],
        vec![2, 0, 3],
        vec![0, 3, 3],
    ] {
        let bytes = edit_first_ndu(&v.steps[0], &v.opts, |h| {
            h.tensor_dimensions = dims.iter().map(|&d| d as u64).collect();
            h.tensor_dimensions_flag = Some(true);
            if dims.len() == 1 {
                // Only matrices carry these.
                h.first_tensor_dimension_shift = None;
                h.scan_order = None;
            }
        });
        let err = decode_stream(&bytes, &mut DecoderState::default(), &v.opts)
            .expect_err("levels left over");
        assert_eq!(err.kind(), ErrorKind::Malformed, "{dims:?}: {err}");
    }
}

#[test]
fn limits_are_configurable() {
    let v = vector("t_default_2d");
    let bytes = &v.steps[0];
    let ok = decode_stream(bytes, &mut DecoderState::default(), &v.opts).expect("decodes");
    let n = ok.tensors[0].tensor.shape.iter().product::<usize>() as u64;

    let at = |limits: Limits| {
        decode_stream(
            bytes,
            &mut DecoderState::default(),
            &v.opts.clone().with_limits(limits),
        )
    };
    // Exactly at the limit passes, one below fails.
    at(Limits::default().with_max_tensor_elements(n)).expect("limit = size passes");
    let e = at(Limits::default().with_max_tensor_elements(n - 1)).expect_err("below size");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    let e = at(Limits::default().with_max_total_elements(n - 1)).expect_err("total");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    assert!(e.to_string().contains("total element count"), "{e}");
    let units = nnc_tensor::hls_json(bytes, &v.opts).expect("parses").len() as u64;
    at(Limits::default().with_max_units(units)).expect("unit limit = count passes");
    let e = at(Limits::default().with_max_units(units - 1)).expect_err("units");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    assert!(e.to_string().contains("NNR units"), "{e}");
}

#[test]
fn missing_side_information_names_the_tensor() {
    let v = vector("c_block_pre_signalling_side_info");
    let bytes = &v.steps[0];
    decode_stream(bytes, &mut DecoderState::default(), &v.opts).expect("decodes with side info");
    let err = decode_stream(bytes, &mut DecoderState::default(), &DecodeOptions::new())
        .expect_err("needs side information");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("l.weight"), "{msg}");
    assert!(msg.contains("side information"), "{msg}");
    assert!(msg.contains("NNR unit 3"), "{msg}");
    match err {
        Error::Syntax { at, .. } => assert_eq!(at.tensor.as_deref(), Some("l.weight")),
        other => panic!("unexpected error {other}"),
    }
    // Side information for another tensor does not help.
    let wrong = DecodeOptions::new().with_tensor_dimensions("other", vec![16, 8, 3, 3]);
    let err = decode_stream(bytes, &mut DecoderState::default(), &wrong).expect_err("wrong name");
    assert!(err.to_string().contains("l.weight"), "{err}");
}

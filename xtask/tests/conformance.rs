//! `cargo test` runs the same conformance cases as `cargo xtask conformance`.

use xtask::conformance::{default_vectors_dir, run_decode, run_encode, RunOptions, Summary};

fn options() -> RunOptions {
    RunOptions {
        vectors: default_vectors_dir(),
        quiet: true,
        ..Default::default()
    }
}

#[test]
fn every_public_vector_decodes_bit_exactly() {
    assert_all_pass(&run_decode(&options()).expect("runner"));
}

#[test]
fn every_public_vector_encodes_to_the_reference_bytes() {
    assert_all_pass(&run_encode(&options()).expect("runner"));
}

fn assert_all_pass(summary: &Summary) {
    let failures: Vec<_> = summary
        .results
        .iter()
        .filter_map(|r| r.failure.as_ref().map(|f| format!("{}: {f}", r.name)))
        .collect();
    assert!(
        summary.results.len() >= 105,
        "only {} cases ran",
        summary.results.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

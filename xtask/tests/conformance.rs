//! `cargo test` runs the same conformance cases as `cargo xtask conformance`.

use xtask::conformance::{default_vectors_dir, run_decode, RunOptions};

#[test]
fn every_public_vector_decodes_bit_exactly() {
    let summary = run_decode(&RunOptions {
        vectors: default_vectors_dir(),
        quiet: true,
        ..Default::default()
    })
    .expect("runner");
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

//! `cargo test` runs the same conformance cases as `cargo xtask conformance`: the public set, the
//! edge cases and the option combinations.

use xtask::conformance::{
    default_vector_sets, run_decode, run_encode, run_sets, RunOptions, Summary,
};

fn options() -> RunOptions {
    RunOptions {
        quiet: true,
        ..Default::default()
    }
}

#[test]
fn every_vector_decodes_bit_exactly() {
    let sets = default_vector_sets();
    assert_all_pass(&run_sets(&sets, &options(), run_decode).expect("runner"));
}

#[test]
fn every_vector_encodes_to_the_reference_bytes() {
    let sets = default_vector_sets();
    assert_all_pass(&run_sets(&sets, &options(), run_encode).expect("runner"));
}

fn assert_all_pass(summary: &Summary) {
    let failures: Vec<_> = summary
        .results
        .iter()
        .filter_map(|r| r.failure.as_ref().map(|f| format!("{}: {f}", r.name)))
        .collect();
    // 105 public cases, 7 edge cases and 153 option combinations.
    assert!(
        summary.results.len() >= 265,
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

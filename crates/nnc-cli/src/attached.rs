//! Files attached to a model: what `nnc encode DIR` takes from a model directory besides the
//! weights (`config.json`, the tokenizer, ...), and what `nnc decode -o DIR` writes back beside
//! them, so that a Hugging Face directory goes through the codec whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nnc_nn::io::shard_writer::is_written_name;
use nnc_tensor::metadata::{unpack_each, AttachedFile};

use crate::destination::Destination;
use crate::files::write_atomically;
use crate::model_read::name_list;

/// Largest file attached by `nnc encode`.
const MAX_FILE_BYTES: u64 = 16 << 20;
/// Largest total attached by `nnc encode`.
const MAX_TOTAL_BYTES: u64 = 64 << 20;

/// Extensions of weight files (and other large binaries of model repositories) that are never
/// attached: the weights are what the codec codes.
const WEIGHT_EXTENSIONS: [&str; 14] = [
    "safetensors",
    "bin",
    "pt",
    "pth",
    "ckpt",
    "h5",
    "msgpack",
    "onnx",
    "gguf",
    "ot",
    "npz",
    "npy",
    "tflite",
    "pb",
];

/// Whether `name` may be attached and written back: one plain file name (no path separator, not
/// `.`/`..`, not hidden), not a weight file nor a shard index.
pub fn is_attachable_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let extension = lower.rsplit_once('.').map(|(_, e)| e);
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1
        && !is_written_name(name)
        && !lower.ends_with(".index.json")
        && !extension.is_some_and(|e| WEIGHT_EXTENSIONS.contains(&e))
}

/// The files of model directory `dir` to attach (see [`is_attachable_name`]; at most 16 MiB
/// each, 64 MiB in all, in name order), saying on stderr unless `quiet` what is attached and
/// what is not.
pub fn collect(dir: &Path, quiet: bool) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut candidates = Vec::new();
    let mut left_out = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("reading the directory {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let kind = entry
            .file_type()
            .with_context(|| format!("reading {name}"))?;
        if kind.is_dir() && !name.starts_with('.') {
            left_out.push(format!("{name}/ (a directory)"));
        } else if kind.is_file() && is_attachable_name(&name) {
            candidates.push((name, entry.path()));
        }
    }
    candidates.sort();
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for (name, path) in candidates {
        let size = std::fs::metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if size > MAX_FILE_BYTES || total + size > MAX_TOTAL_BYTES {
            left_out.push(format!("{name} ({} MB)", size.div_ceil(1 << 20)));
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        total += bytes.len() as u64;
        files.insert(name, bytes);
    }
    if !quiet {
        if !files.is_empty() {
            let names: Vec<String> = files.keys().cloned().collect();
            eprintln!(
                "note: {}: attaching {} ({} KB before deflating; --no-files leaves them out)",
                dir.display(),
                name_list(&names),
                total.div_ceil(1024)
            );
        }
        if !left_out.is_empty() {
            left_out.sort();
            eprintln!(
                "note: {}: not attached: {}",
                dir.display(),
                left_out.join(", ")
            );
        }
    }
    Ok(files)
}

/// The attached files of a stream to write into directory `dir`, unpacked: every name checked
/// ([`is_attachable_name`]; a hostile stream must not write elsewhere) and each file refused if
/// it exists and `force` is not given, before anything is unpacked; unpacking bounded as
/// [`unpack_each`] bounds it.
pub fn unpack_for(
    files: &BTreeMap<String, AttachedFile>,
    dir: &Path,
    force: bool,
) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    for name in files.keys() {
        if !is_attachable_name(name) {
            bail!("the stream attaches a file named {name:?}, which is not a plain file name");
        }
        let path = dir.join(name);
        if path.exists() && !force {
            bail!("{} exists (use --force to replace it)", path.display());
        }
    }
    unpack_each(files)
        .map(|(name, bytes)| {
            let bytes = bytes.with_context(|| format!("unpacking the attached file {name:?}"))?;
            Ok((dir.join(name), bytes))
        })
        .collect()
}

/// What of a stream's attached files `nnc decode` writes to `output`: for a directory, the
/// files unpacked ([`unpack_for`]); for a file, none, with a note (unless `quiet`) naming what
/// is left behind.
pub fn for_destination(
    files: &BTreeMap<String, AttachedFile>,
    output: &Destination,
    force: bool,
    quiet: bool,
) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    match output {
        Destination::Directory { dir, .. } => unpack_for(files, dir, force),
        Destination::File(path) => {
            if !files.is_empty() && !quiet {
                let names: Vec<String> = files.keys().cloned().collect();
                eprintln!(
                    "note: {}: the stream attaches {}; decode to a directory (-o DIR/) to get \
                     them",
                    path.display(),
                    name_list(&names)
                );
            }
            Ok(Vec::new())
        }
    }
}

/// Writes unpacked files, each through a temporary file renamed into place.
pub fn write(files: &[(PathBuf, Vec<u8>)]) -> anyhow::Result<()> {
    for (path, bytes) in files {
        write_atomically(path, bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_non_weight_names_are_attachable() {
        for name in [
            "config.json",
            "tokenizer.json",
            "vocab.txt",
            "README.md",
            "generation_config.json",
            "tokenizer.model",
        ] {
            assert!(is_attachable_name(name), "{name}");
        }
        for name in [
            "",
            ".",
            "..",
            ".gitattributes",
            "../config.json",
            "a/b.json",
            "a\\b.json",
            "/etc/passwd",
            "model.safetensors",
            "model-00001-of-00002.safetensors",
            "model.safetensors.index.json",
            "pytorch_model.bin",
            "pytorch_model.bin.index.json",
            "tf_model.h5",
            "flax_model.msgpack",
            "model.onnx",
            "weights.PT",
        ] {
            assert!(!is_attachable_name(name), "{name:?}");
        }
    }
}

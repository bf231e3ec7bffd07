//! Reading model files (the input, and `--base`): a file, a shard index or a model directory;
//! which state dict a PyTorch checkpoint holds, a name prefix to remove, a note of what a
//! checkpoint holds that is left out, and a safetensors file's `__metadata__`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use nnc_nn::io::{
    is_shard_index, map_npy_source, map_npz_sources, map_pytorch_sources, map_safetensors_sources,
    read_pytorch_summarized, read_safetensors_with_metadata, read_tensors, sharded,
    CheckpointSummary, FileFormat, PyTorchOptions, SafetensorsMetadata, TensorName,
};
use nnc_tensor::encode::TensorSource;
use nnc_tensor::Tensor;

/// A model as read: [`Tensor`]s, or [`TensorSource`]s for the encoder.
#[derive(Debug)]
pub struct Model<T = Tensor> {
    /// Its tensors, in file order.
    pub tensors: Vec<T>,
    /// A safetensors file's `__metadata__` (of a sharded model: its first shard's); empty for
    /// the other formats.
    pub metadata: SafetensorsMetadata,
}

/// How model files are read; applies to the input and to `--base` alike, so that their tensor
/// names agree.
#[derive(Args, Debug, Clone, Default)]
pub struct ModelRead {
    /// PyTorch checkpoints: take the state dict from this top-level entry (e.g. "ema",
    /// "model_ema") instead of the first of "state_dict", "model_state_dict", "model",
    /// "module" (or the top level).
    #[arg(long, value_name = "KEY")]
    pub checkpoint_key: Option<String>,
    /// Remove this prefix from every tensor name that starts with it (e.g. "module." of
    /// DataParallel, "model." of Lightning); decoding then gives the shorter names.
    #[arg(long, value_name = "PREFIX")]
    pub strip_prefix: Option<String>,
}

/// Reads the tensors of `path`: a model file, a shard index (`*.index.json`) or a directory
/// holding one of the Hugging Face file names ([`nnc_nn::io::sharded::MODEL_FILE_NAMES`]).
/// For a PyTorch checkpoint, says on stderr (unless `quiet`) what in it is left out: entries
/// beside the state dict, values that are not tensors; for a sharded model whose shards'
/// `__metadata__` differ, that only the first shard's is kept.
pub fn read_model(path: &Path, how: &ModelRead, quiet: bool) -> anyhow::Result<Model> {
    read_model_with(path, how, quiet, read_file)
}

/// As [`read_model`], reading in place what can be (float32 and int32 tensors of safetensors,
/// PyTorch, `.npy` and `.npz` files: [`map_safetensors_sources`], [`map_pytorch_sources`],
/// [`map_npy_source`], [`map_npz_sources`]); other tensors are read as [`read_model`] reads them.
/// For the encoder's input, and for the models an update is taken from or added to.
pub fn read_model_sources(
    path: &Path,
    how: &ModelRead,
    quiet: bool,
) -> anyhow::Result<Model<TensorSource<'static>>> {
    read_model_with(path, how, quiet, |file, key, quiet| {
        let format = FileFormat::detect(file)?;
        if format == FileFormat::PyTorch {
            let (sources, summary) = map_pytorch_sources(file, &pytorch_options(key))?;
            note_left_out(file, &summary, quiet);
            return Ok((sources, SafetensorsMetadata::new()));
        }
        if key.is_none() {
            match format {
                FileFormat::Safetensors => return Ok(map_safetensors_sources(file)?),
                FileFormat::Npy => {
                    let source = map_npy_source(file, "0")?;
                    return Ok((vec![source], SafetensorsMetadata::new()));
                }
                FileFormat::Npz => return Ok((map_npz_sources(file)?, SafetensorsMetadata::new())),
                _ => {}
            }
        }
        let (tensors, metadata) = read_file_as(file, format, key, quiet)?;
        Ok((
            tensors.into_iter().map(TensorSource::from).collect(),
            metadata,
        ))
    })
}

/// [`read_model`] with `read_file` reading one model file.
fn read_model_with<T: TensorName>(
    path: &Path,
    how: &ModelRead,
    quiet: bool,
    read_file: impl Fn(&Path, Option<&str>, bool) -> anyhow::Result<(Vec<T>, SafetensorsMetadata)>,
) -> anyhow::Result<Model<T>> {
    let resolved;
    let path = if path.is_dir() {
        resolved = sharded::model_file_in(path).with_context(|| {
            format!(
                "{}: a directory without a model file (looked for {})",
                path.display(),
                sharded::MODEL_FILE_NAMES.join(", ")
            )
        })?;
        if !quiet {
            eprintln!("note: reading {}", resolved.display());
        }
        resolved.as_path()
    } else {
        path
    };
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("nnc"))
    {
        anyhow::bail!(
            "{}: this is a bitstream, not a model (decode it with `nnc decode {} -o MODEL`)",
            path.display(),
            path.display()
        );
    }
    let mut seen: Vec<(PathBuf, SafetensorsMetadata)> = Vec::new();
    let mut read_one = |file: &Path| {
        let (tensors, metadata) = read_file(file, how.checkpoint_key.as_deref(), quiet)?;
        seen.push((file.to_path_buf(), metadata));
        Ok::<_, anyhow::Error>(tensors)
    };
    let mut tensors = if is_shard_index(path) {
        sharded::read_sharded_with(path, &mut read_one)?
    } else {
        read_one(path)?
    };
    // After reading: a shard index names the tensors as the shards hold them.
    if let Some(prefix) = &how.strip_prefix {
        strip(&mut tensors, prefix).with_context(|| format!("reading {}", path.display()))?;
    }
    let metadata = seen.first().map(|(_, m)| m.clone()).unwrap_or_default();
    if let Some((other, _)) = seen.iter().find(|(_, m)| *m != metadata) {
        if !quiet {
            eprintln!(
                "note: {}: the shards' safetensors metadata differ ({} and {}); the first \
                 shard's is kept",
                path.display(),
                seen[0].0.display(),
                other.display()
            );
        }
    }
    Ok(Model { tensors, metadata })
}

/// One model file (the library's errors name it), and its safetensors metadata.
fn read_file(
    path: &Path,
    checkpoint_key: Option<&str>,
    quiet: bool,
) -> anyhow::Result<(Vec<Tensor>, SafetensorsMetadata)> {
    read_file_as(path, FileFormat::detect(path)?, checkpoint_key, quiet)
}

/// [`read_file`] for a file whose format is known.
fn read_file_as(
    path: &Path,
    format: FileFormat,
    checkpoint_key: Option<&str>,
    quiet: bool,
) -> anyhow::Result<(Vec<Tensor>, SafetensorsMetadata)> {
    if format != FileFormat::PyTorch {
        if checkpoint_key.is_some() {
            bail!(
                "{}: --checkpoint-key applies to PyTorch checkpoints (.pt, .pth, .bin) only",
                path.display()
            );
        }
        if format == FileFormat::Safetensors {
            return Ok(read_safetensors_with_metadata(path)?);
        }
        return Ok((read_tensors(path, "0")?, SafetensorsMetadata::new()));
    }
    let (tensors, summary) = read_pytorch_summarized(path, &pytorch_options(checkpoint_key))?;
    note_left_out(path, &summary, quiet);
    Ok((tensors, SafetensorsMetadata::new()))
}

/// The reader's options for `--checkpoint-key` (a prefix is stripped after reading, when a
/// shard index has named the tensors).
fn pytorch_options(checkpoint_key: Option<&str>) -> PyTorchOptions {
    PyTorchOptions {
        state_dict_key: checkpoint_key.map(str::to_string),
        strip_prefix: None,
    }
}

/// Says on stderr (unless `quiet`) what reading a checkpoint left out.
fn note_left_out(path: &Path, summary: &CheckpointSummary, quiet: bool) {
    if !quiet {
        if let Some(key) = &summary.state_dict_key {
            eprintln!(
                "note: {}: the state dict is entry {key:?}{}",
                path.display(),
                if summary.other_entries.is_empty() {
                    String::new()
                } else {
                    format!("; left out: {}", name_list(&summary.other_entries))
                }
            );
        }
        if !summary.skipped_values.is_empty() {
            eprintln!(
                "note: {}: not tensors, left out: {}",
                path.display(),
                name_list(&summary.skipped_values)
            );
        }
    }
}

/// Removes `prefix` from the names that start with it; two tensors may not end up with one name.
fn strip<T: TensorName>(tensors: &mut [T], prefix: &str) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for t in tensors.iter_mut() {
        if let Some(rest) = t.tensor_name().strip_prefix(prefix) {
            let rest = rest.to_string();
            t.set_tensor_name(rest);
        }
    }
    for t in tensors.iter() {
        if !seen.insert(t.tensor_name()) {
            bail!(
                "two tensors are named {:?} once {prefix:?} is removed",
                t.tensor_name()
            );
        }
    }
    Ok(())
}

/// Names for a note: the first eight, quoted, then how many more.
pub fn name_list(names: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_name_lists_are_cut() {
        let names: Vec<String> = (0..11).map(|i| format!("n{i}")).collect();
        assert_eq!(name_list(&names[..2]), "\"n0\", \"n1\"");
        assert!(name_list(&names).ends_with("\"n7\" and 3 more"));
    }
}

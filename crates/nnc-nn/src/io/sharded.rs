//! Sharded checkpoints: a model split over several files, with an index naming the file of each
//! tensor, as Hugging Face writes large models (`model.safetensors.index.json` beside
//! `model-00001-of-00003.safetensors`, ..., or `pytorch_model.bin.index.json` beside `.bin`
//! shards).
//!
//! The index is JSON with a `weight_map` object from tensor name to shard file (relative to the
//! index's directory; other members such as `metadata` are ignored). The shards are read in the
//! order of their file names (for Hugging Face's `model-00001-of-0000N` names, shard order,
//! which is the order of the state dict that was split; the weight map's keys are sorted by
//! tensor name, so the order in which it names the shards says nothing), each with its own
//! format's reader, and their tensors concatenated in file order. Every tensor the index names must be in its shard, and no
//! name may appear twice; tensors a shard holds beyond the index are kept, so nothing in the
//! files is dropped. Shard names must stay inside the index's directory (no absolute paths,
//! no `..`).

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use nnc_tensor::Tensor;

use super::{check_unique_names, read_file, IoError, TensorName};

/// Largest index file read (real ones are tens of kilobytes).
const MAX_INDEX_BYTES: u64 = 64 << 20;

/// Whether `path` names a shard index (`*.index.json`).
pub fn is_shard_index(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".index.json"))
}

/// The shard files of an index, in the order of their names, each with the tensor names the
/// index puts in it.
pub fn shard_files(index: &Path) -> Result<Vec<(PathBuf, Vec<String>)>, IoError> {
    let invalid = |what: String| IoError::InvalidFile {
        path: index.display().to_string(),
        format: "shard index",
        what,
    };
    let size = std::fs::metadata(index)
        .map_err(|e| super::io_error(index, e))?
        .len();
    if size > MAX_INDEX_BYTES {
        return Err(IoError::LimitExceeded {
            path: index.display().to_string(),
            what: format!("the index is {size} bytes (limit {MAX_INDEX_BYTES})"),
        });
    }
    let text = read_file(index)?;
    let json: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| invalid("no \"weight_map\" object".into()))?;
    let dir = index.parent().unwrap_or(Path::new(""));
    let mut shards: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut position: HashMap<PathBuf, usize> = HashMap::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| invalid(format!("the shard of {name:?} is not a file name")))?;
        let rel = Path::new(file);
        if file.is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
            || is_shard_index(rel)
        {
            return Err(invalid(format!(
                "shard {file:?} (of {name:?}) is not a model file inside the index's directory"
            )));
        }
        let path = dir.join(rel);
        match position.get(&path) {
            Some(&i) => shards[i].1.push(name.clone()),
            None => {
                position.insert(path.clone(), shards.len());
                shards.push((path, vec![name.clone()]));
            }
        }
    }
    if shards.is_empty() {
        return Err(invalid("the weight map is empty".into()));
    }
    shards.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(shards)
}

/// Reads every tensor of a sharded checkpoint, reading each shard with `read_shard` (for
/// example [`super::read_tensors`], a PyTorch reader with options, or
/// [`super::map_safetensors_sources`] for the encoder).
pub fn read_sharded_with<T: TensorName, E: From<IoError>>(
    index: &Path,
    mut read_shard: impl FnMut(&Path) -> Result<Vec<T>, E>,
) -> Result<Vec<T>, E> {
    let mut out = Vec::new();
    for (shard, names) in shard_files(index)? {
        let tensors = read_shard(&shard)?;
        let held: HashSet<&str> = tensors.iter().map(TensorName::tensor_name).collect();
        for name in &names {
            if !held.contains(name.as_str()) {
                return Err(IoError::Malformed {
                    path: index.display().to_string(),
                    name: name.clone(),
                    what: format!("the index puts it in {}, which lacks it", shard.display()),
                }
                .into());
            }
        }
        out.extend(tensors);
    }
    check_unique_names(index, &out)?;
    Ok(out)
}

/// The model file a directory holds, as Hugging Face names them: `model.safetensors`, its
/// shard index, `pytorch_model.bin`, its shard index (the first that exists). `None` when there
/// is none of them.
pub fn model_file_in(dir: &Path) -> Option<PathBuf> {
    MODEL_FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

/// The names [`model_file_in`] looks for, in its order.
pub const MODEL_FILE_NAMES: [&str; 4] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

/// Reads every tensor of a sharded checkpoint (see the module doc).
pub fn read_sharded(index: &Path) -> Result<Vec<Tensor>, IoError> {
    read_sharded_with(index, |shard| super::read_tensors(shard, "0"))
}

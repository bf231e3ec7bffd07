//! A model written into a directory as Hugging Face lays it out: one `model.safetensors`, or,
//! when the model is larger than the shard size, `model-00001-of-0000N.safetensors` shards and
//! a `model.safetensors.index.json` naming each tensor's shard (what `save_pretrained` writes,
//! and what [`super::sharded`] and `from_pretrained` read).
//!
//! Tensors go to shards as `huggingface_hub` splits a state dict: in plan order, a tensor that
//! would take the current shard past the size closes it and starts the next one, and a tensor
//! larger than the size is a shard of its own, listed when it is met while the current shard
//! goes on filling. Each shard is a [`TensorWriter`], so tensors may arrive in
//! any order and only one needs to be in memory. Every file is written under a temporary name
//! in the directory and renamed into place by [`ShardedWriter::finish`]; a writer dropped
//! before that leaves nothing behind.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use nnc_tensor::{Tensor, TensorSpec};
use tempfile::NamedTempFile;

use super::safetensors::SafetensorsMetadata;
use super::writer::temp_file_in;
use super::{io_error, FileFormat, IoError, TensorWriter};

/// The file of a model that fits one shard.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The index of a sharded model.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// `save_pretrained`'s default shard size: 5 GB (decimal).
pub const DEFAULT_MAX_SHARD_BYTES: u64 = 5_000_000_000;

/// The name of shard `i` (from 0) of `n`: `model-00001-of-00003.safetensors`.
pub fn shard_file_name(i: usize, n: usize) -> String {
    format!("model-{:05}-of-{:05}.safetensors", i + 1, n)
}

/// Whether a file name is one this writer writes into a directory: the single file, the index,
/// or a shard (`model-NNNNN-of-NNNNN.safetensors`).
pub fn is_written_name(name: &str) -> bool {
    if name == SINGLE_FILE || name == INDEX_FILE {
        return true;
    }
    let Some(rest) = name
        .strip_prefix("model-")
        .and_then(|r| r.strip_suffix(".safetensors"))
    else {
        return false;
    };
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
    matches!(rest.split_once("-of-"), Some((a, b)) if digits(a) && digits(b))
}

/// Bytes a planned tensor takes in a file (`None` on overflow).
fn tensor_bytes(spec: &TensorSpec) -> Option<u64> {
    spec.shape
        .iter()
        .try_fold(spec.dtype.size_in_bytes() as u64, |a, &d| {
            a.checked_mul(d as u64)
        })
}

/// Splits a plan into shards of at most `max_bytes` each, as `huggingface_hub` splits a state
/// dict (see the module doc): the indices of each shard's tensors. An empty plan is one empty
/// shard.
pub fn split_into_shards(plan: &[TensorSpec], max_bytes: u64) -> Vec<Vec<usize>> {
    let mut shards: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut size = 0u64;
    for (i, spec) in plan.iter().enumerate() {
        let bytes = tensor_bytes(spec).unwrap_or(u64::MAX);
        if bytes > max_bytes {
            // A shard of its own, listed at once; the current shard goes on filling.
            shards.push(vec![i]);
            continue;
        }
        if size.saturating_add(bytes) > max_bytes {
            shards.push(std::mem::take(&mut current));
            size = 0;
        }
        current.push(i);
        size += bytes;
    }
    if !current.is_empty() || shards.is_empty() {
        shards.push(current);
    }
    shards
}

struct Shard {
    name: String,
    temp: NamedTempFile,
    writer: TensorWriter,
}

/// A model being written into a directory, tensor by tensor (see the module doc).
pub struct ShardedWriter {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// Per tensor name: its shard.
    route: HashMap<String, usize>,
    /// The index's text, when there is more than one shard.
    index: Option<String>,
}

impl std::fmt::Debug for ShardedWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedWriter")
            .field("dir", &self.dir)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl ShardedWriter {
    /// Starts writing the tensors of `plan` into the existing directory `dir`, in shards of at
    /// most `max_shard_bytes` (a tensor larger than that is a shard of its own). Every shard's
    /// header gets `metadata` as its `__metadata__`. Names and dtypes are checked before any
    /// file is created.
    pub fn create(
        dir: &Path,
        plan: &[TensorSpec],
        max_shard_bytes: u64,
        metadata: &SafetensorsMetadata,
    ) -> Result<Self, IoError> {
        if max_shard_bytes == 0 {
            return Err(IoError::ZeroShardSize {
                path: dir.display().to_string(),
            });
        }
        // One check of the whole plan (names, dtypes, sizes), before anything is created.
        super::safetensors::layout(dir, plan, metadata)?;
        let groups = split_into_shards(plan, max_shard_bytes);
        let n = groups.len();
        let mut shards = Vec::with_capacity(n);
        let mut route = HashMap::with_capacity(plan.len());
        let mut weight_map = BTreeMap::new();
        let mut total_size = 0u64;
        let mut total_parameters = 0u64;
        for (i, members) in groups.iter().enumerate() {
            let name = if n == 1 {
                SINGLE_FILE.to_string()
            } else {
                shard_file_name(i, n)
            };
            let specs: Vec<TensorSpec> = members.iter().map(|&m| plan[m].clone()).collect();
            for s in &specs {
                route.insert(s.name.clone(), i);
                weight_map.insert(s.name.clone(), name.clone());
                total_size = total_size.saturating_add(tensor_bytes(s).unwrap_or(u64::MAX));
                total_parameters =
                    total_parameters.saturating_add(s.shape.iter().product::<usize>() as u64);
            }
            let path = dir.join(&name);
            let temp = temp_file_in(dir).map_err(|e| io_error(&path, e))?;
            let writer =
                TensorWriter::open_as(&path, &specs, FileFormat::Safetensors, metadata, || {
                    temp.reopen()
                })?;
            shards.push(Shard { name, temp, writer });
        }
        let index = (n > 1)
            .then(|| {
                let json = serde_json::json!({
                    "metadata": {
                        "total_parameters": total_parameters,
                        "total_size": total_size,
                    },
                    "weight_map": weight_map,
                });
                serde_json::to_string_pretty(&json).map(|mut s| {
                    s.push('\n');
                    s
                })
            })
            .transpose()
            .map_err(|e| io_error(&dir.join(INDEX_FILE), std::io::Error::other(e)))?;
        Ok(ShardedWriter {
            dir: dir.to_path_buf(),
            shards,
            route,
            index,
        })
    }

    /// The files [`ShardedWriter::finish`] writes, index last (names within the directory).
    pub fn file_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.shards.iter().map(|s| s.name.clone()).collect();
        if self.index.is_some() {
            names.push(INDEX_FILE.to_string());
        }
        names
    }

    /// Writes one planned tensor into its shard ([`TensorWriter::write`]'s checks).
    pub fn write(&mut self, tensor: &Tensor) -> Result<(), IoError> {
        let Some(&i) = self.route.get(&tensor.name) else {
            return Err(IoError::NotAsPlanned {
                path: self.dir.display().to_string(),
                name: tensor.name.clone(),
                what: "not in the plan".into(),
            });
        };
        self.shards[i].writer.write(tensor)
    }

    /// Completes every shard, then renames the shards and the index into place (replacing
    /// files of those names). Fails, leaving no new file, if a planned tensor was not written.
    pub fn finish(self) -> Result<(), IoError> {
        let mut done = Vec::with_capacity(self.shards.len() + 1);
        for shard in self.shards {
            shard.writer.finish()?;
            done.push((shard.name, shard.temp));
        }
        if let Some(text) = &self.index {
            let path = self.dir.join(INDEX_FILE);
            let mut temp = temp_file_in(&self.dir).map_err(|e| io_error(&path, e))?;
            std::io::Write::write_all(&mut temp, text.as_bytes())
                .map_err(|e| io_error(&path, e))?;
            done.push((INDEX_FILE.to_string(), temp));
        }
        for (name, temp) in done {
            let path = self.dir.join(&name);
            temp.persist(&path).map_err(|e| io_error(&path, e.error))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_tensor::DType;

    fn spec(name: &str, n: usize) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            shape: vec![n],
            dtype: DType::F32,
        }
    }

    #[test]
    fn shards_fill_in_plan_order_and_large_tensors_stand_alone() {
        let plan = [
            spec("a", 10), // 40 bytes
            spec("b", 10), // 80
            spec("c", 5),  // 100: fits exactly
            spec("d", 1),  // next shard
            spec("e", 50), // 200 bytes > 100: its own
            spec("f", 1),
            spec("g", 0),
        ];
        // As huggingface_hub: "e" is listed when met, "d" goes on filling the shard it opened.
        assert_eq!(
            split_into_shards(&plan, 100),
            vec![vec![0, 1, 2], vec![4], vec![3, 5, 6]]
        );
        assert_eq!(
            split_into_shards(&[spec("big", 50), spec("a", 1)], 100),
            vec![vec![0], vec![1]]
        );
        assert_eq!(
            split_into_shards(&plan, u64::MAX),
            vec![vec![0, 1, 2, 3, 4, 5, 6]]
        );
        assert_eq!(split_into_shards(&[], 100), vec![Vec::<usize>::new()]);
        assert_eq!(split_into_shards(&plan[4..5], 100), vec![vec![0]]);
    }

    #[test]
    fn written_names_are_recognised() {
        assert_eq!(shard_file_name(0, 3), "model-00001-of-00003.safetensors");
        for name in [SINGLE_FILE, INDEX_FILE, "model-00002-of-00003.safetensors"] {
            assert!(is_written_name(name), "{name}");
        }
        for name in [
            "model.bin",
            "model-1-of-2.safetensors",
            "model-0000a-of-00003.safetensors",
            "config.json",
            "pytorch_model.bin.index.json",
        ] {
            assert!(!is_written_name(name), "{name}");
        }
    }
}

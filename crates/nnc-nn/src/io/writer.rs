//! Model files written tensor by tensor: for a decoder that hands out one tensor at a time
//! ([`nnc_tensor::StreamDecoder`]), so that no more than one tensor needs to be in memory.
//!
//! The writer is created from the plan (every tensor's name, shape and dtype). Safetensors:
//! the header is written first, with the layout [`super::write_safetensors`] gives the same
//! tensors (so the files are byte-identical), then each tensor is written at its offset as it
//! arrives, in any order. `.npz`: one archive entry per tensor, in arrival order (the archive
//! equals [`super::write_npz`]'s for tensors given in that order). `.npy`: the plan must hold
//! one tensor. PyTorch (`.pt`, `.pth`, `.bin`): the state dict's pickle is written from the plan
//! first, then each tensor's storage as it arrives, in any order (the file equals
//! [`super::write_pytorch`]'s for tensors given in plan order).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use nnc_tensor::{Tensor, TensorSpec};

use super::npy::{check_dtype_writable, write_array, write_npz_entry};
use super::safetensors::SafetensorsMetadata;
use super::{io_error, FileFormat, IoError};

/// A temporary file in `dir`, to be renamed over a final name once complete. It gets the
/// permissions a file created there would get (`0o666` less the umask), not the temporary
/// file's usual owner-only `0o600`, which the rename would carry over to the final file.
pub(crate) fn temp_file_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".nnc-tmp-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// The directory a file is written in (`.` for a bare file name), where its temporary goes.
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same directory (with the
/// permissions a new file there would get), renamed over `path` once complete. A reader never
/// sees a partial file, and a failed write leaves whatever was at `path` in place. Errors name
/// `path`.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let mut temp = temp_file_in(parent_dir(path)).map_err(|e| io_error(path, e))?;
    temp.write_all(bytes).map_err(|e| io_error(path, e))?;
    temp.persist(path).map_err(|e| io_error(path, e.error))?;
    Ok(())
}

/// The format `path`'s extension names.
fn format_of(path: &Path) -> Result<FileFormat, IoError> {
    FileFormat::from_path(path).ok_or_else(|| IoError::UnknownFormat {
        path: path.display().to_string(),
    })
}

/// A model file being written one tensor at a time (see the module doc).
pub struct TensorWriter {
    path: PathBuf,
    /// Per planned name: its spec, where it goes (safetensors: byte offset; PyTorch: index in the
    /// plan, its storage key) and whether written.
    planned: HashMap<String, Planned>,
    out: Out,
    /// [`TensorWriter::create_replacing`]: the file being written, renamed to `path` by
    /// [`TensorWriter::finish`] and removed if the writer is dropped before.
    pending: Option<tempfile::TempPath>,
}

impl std::fmt::Debug for TensorWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let written = self.planned.values().filter(|p| p.written).count();
        f.debug_struct("TensorWriter")
            .field("path", &self.path)
            .field("planned", &self.planned.len())
            .field("written", &written)
            .finish()
    }
}

struct Planned {
    spec: TensorSpec,
    offset: u64,
    written: bool,
}

enum Out {
    Safetensors(File),
    Npz(zip::ZipWriter<BufWriter<File>>),
    Npy(BufWriter<File>),
    PyTorch(zip::ZipWriter<BufWriter<File>>),
}

impl TensorWriter {
    /// Creates `path` (format by extension) for the tensors of `plan`. Checks names, dtypes and
    /// the tensor count of `.npy` before the file is created.
    pub fn create(path: &Path, plan: &[TensorSpec]) -> Result<Self, IoError> {
        Self::create_with_metadata(path, plan, &SafetensorsMetadata::new())
    }

    /// [`TensorWriter::create`], with a safetensors `__metadata__` map for the header (see
    /// [`super::safetensors::metadata_to_write`]). The other formats have no such map and
    /// ignore it.
    pub fn create_with_metadata(
        path: &Path,
        plan: &[TensorSpec],
        metadata: &SafetensorsMetadata,
    ) -> Result<Self, IoError> {
        Self::open_as(path, plan, format_of(path)?, metadata, || {
            File::create(path)
        })
    }

    /// [`TensorWriter::create_with_metadata`], except that `path` only appears (or is
    /// replaced) when [`TensorWriter::finish`] succeeds: the tensors go to a temporary file in
    /// the same directory, which `finish` renames to `path` and which is removed if the writer
    /// is dropped before, or `finish` fails. Errors name `path`, not the temporary file.
    pub fn create_replacing(
        path: &Path,
        plan: &[TensorSpec],
        metadata: &SafetensorsMetadata,
    ) -> Result<Self, IoError> {
        Self::replacing_as(path, plan, format_of(path)?, metadata)
    }

    /// [`TensorWriter::create_replacing`] in the given format, whatever the extension.
    pub(crate) fn replacing_as(
        path: &Path,
        plan: &[TensorSpec],
        format: FileFormat,
        metadata: &SafetensorsMetadata,
    ) -> Result<Self, IoError> {
        let (file, pending) = temp_file_in(parent_dir(path))
            .map_err(|e| io_error(path, e))?
            .into_parts();
        let mut writer = Self::open_as(path, plan, format, metadata, || Ok(file))?;
        writer.pending = Some(pending);
        Ok(writer)
    }

    /// [`TensorWriter::create_with_metadata`] in the given format, whatever the extension,
    /// writing to the file `open` gives once the plan is checked (a temporary file to be
    /// renamed to `path`, say); errors name `path`.
    pub(crate) fn open_as(
        path: &Path,
        plan: &[TensorSpec],
        format: FileFormat,
        metadata: &SafetensorsMetadata,
        open: impl FnOnce() -> std::io::Result<File>,
    ) -> Result<Self, IoError> {
        let mut planned = HashMap::with_capacity(plan.len());
        for s in plan {
            let entry = Planned {
                spec: s.clone(),
                offset: 0,
                written: false,
            };
            if planned.insert(s.name.clone(), entry).is_some() {
                return Err(IoError::DuplicateName {
                    path: path.display().to_string(),
                    name: s.name.clone(),
                });
            }
        }
        let check_numpy = |format| {
            plan.iter()
                .try_for_each(|s| check_dtype_writable(path, &s.name, s.dtype, format))
        };
        let io = |e| io_error(path, e);
        let out = match format {
            FileFormat::Safetensors => {
                let (header, offsets) = super::safetensors::layout(path, plan, metadata)?;
                let total = offsets
                    .iter()
                    .zip(plan)
                    .map(|(o, s)| {
                        o + (s.shape.iter().product::<usize>() * s.dtype.size_in_bytes()) as u64
                    })
                    .max()
                    .unwrap_or(header.len() as u64);
                for (s, &o) in plan.iter().zip(&offsets) {
                    if let Some(p) = planned.get_mut(&s.name) {
                        p.offset = o;
                    }
                }
                let mut file = open().map_err(io)?;
                file.write_all(&header).map_err(io)?;
                file.set_len(total).map_err(io)?;
                Out::Safetensors(file)
            }
            FileFormat::Npz => {
                check_numpy(".npz")?;
                let file = open().map_err(io)?;
                Out::Npz(zip::ZipWriter::new(BufWriter::new(file)))
            }
            FileFormat::Npy => {
                if plan.len() != 1 {
                    return Err(IoError::NotOneTensor {
                        path: path.display().to_string(),
                        count: plan.len(),
                    });
                }
                check_numpy(".npy")?;
                Out::Npy(BufWriter::new(open().map_err(io)?))
            }
            FileFormat::PyTorch => {
                super::pytorch::save::check_plan(path, plan)?;
                for (i, s) in plan.iter().enumerate() {
                    if let Some(p) = planned.get_mut(&s.name) {
                        p.offset = i as u64;
                    }
                }
                let file = BufWriter::new(open().map_err(io)?);
                Out::PyTorch(super::pytorch::save::start(file, plan).map_err(io)?)
            }
        };
        Ok(TensorWriter {
            path: path.to_path_buf(),
            planned,
            out,
            pending: None,
        })
    }

    /// Writes one planned tensor. Fails with [`IoError::NotAsPlanned`] when the tensor's name,
    /// dtype or shape is not in the plan or it was written already.
    pub fn write(&mut self, tensor: &Tensor) -> Result<(), IoError> {
        let not_planned = |what: String| IoError::NotAsPlanned {
            path: self.path.display().to_string(),
            name: tensor.name.clone(),
            what,
        };
        let Some(p) = self.planned.get_mut(&tensor.name) else {
            return Err(not_planned("not in the plan".into()));
        };
        if p.written {
            return Err(not_planned("written twice".into()));
        }
        if p.spec.dtype != tensor.dtype() || p.spec.shape != tensor.shape {
            return Err(not_planned(format!(
                "planned as {} {:?}, given as {} {:?}",
                p.spec.dtype.numpy_name(),
                p.spec.shape,
                tensor.dtype().numpy_name(),
                tensor.shape
            )));
        }
        if tensor.shape.iter().product::<usize>() != tensor.len() {
            return Err(not_planned("shape does not match the data".into()));
        }
        p.written = true;
        let offset = p.offset;
        let path = &self.path;
        let io = |e| io_error(path, e);
        match &mut self.out {
            Out::Safetensors(file) => {
                file.seek(SeekFrom::Start(offset)).map_err(io)?;
                let mut w = BufWriter::with_capacity(1 << 16, &*file);
                super::raw::write_le(&tensor.data, &mut w).map_err(io)?;
                w.flush().map_err(io)
            }
            Out::Npz(zip) => write_npz_entry(zip, tensor).map_err(io),
            Out::Npy(w) => write_array(w, tensor).map_err(io),
            Out::PyTorch(zip) => {
                super::pytorch::save::write_storage(zip, offset as usize, tensor).map_err(io)
            }
        }
    }

    /// Checks that every planned tensor was written and completes the file. Like the other
    /// writers of this crate it does not wait for the data to reach the disk (no `fsync`): that
    /// took 4–7 % of a decode of ResNet-50 to a file, and the CLI's rename into place already
    /// keeps a failed decode from leaving a partial file behind.
    pub fn finish(self) -> Result<(), IoError> {
        let mut missing: Vec<&String> = self
            .planned
            .iter()
            .filter(|(_, p)| !p.written)
            .map(|(n, _)| n)
            .collect();
        missing.sort();
        if let Some(name) = missing.first() {
            return Err(IoError::NotAsPlanned {
                path: self.path.display().to_string(),
                name: name.to_string(),
                what: "planned but never written".into(),
            });
        }
        let io = |e| io_error(&self.path, e);
        match self.out {
            Out::Safetensors(mut file) => file.flush().map_err(io)?,
            Out::Npz(zip) => {
                let mut inner = zip.finish().map_err(|e| io(std::io::Error::other(e)))?;
                inner.flush().map_err(io)?
            }
            Out::Npy(mut w) => w.flush().map_err(io)?,
            Out::PyTorch(zip) => super::pytorch::save::finish(zip)
                .map_err(io)?
                .flush()
                .map_err(io)?,
        }
        if let Some(pending) = self.pending {
            pending.persist(&self.path).map_err(|e| io(e.error))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_tensor::{DType, TensorData};

    #[test]
    fn atomic_writes_replace_the_file_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.nnc");
        write_file_atomically(&path, b"first").unwrap();
        write_file_atomically(&path, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["out.nnc"]);
        #[cfg(unix)]
        {
            // The permissions of a newly created file, not a temporary file's owner-only ones.
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode();
            let plain = dir.path().join("plain");
            std::fs::write(&plain, b"").unwrap();
            assert_eq!(mode(&path), mode(&plain));
            std::fs::remove_file(&plain).unwrap();
        }
        let missing = dir.path().join("no such dir").join("out.nnc");
        let err = write_file_atomically(&missing, b"x").unwrap_err();
        assert!(err.to_string().contains("no such dir"), "{err}");
    }

    fn model() -> Vec<Tensor> {
        vec![
            Tensor::try_new(
                "b.weight",
                vec![2, 3],
                TensorData::F32(vec![1.0, -2.5, 0.0, 3.0, 4.0, -0.0]),
            )
            .unwrap(),
            Tensor::try_new(
                "a",
                vec![4],
                TensorData::I64(vec![1, -2, i64::MAX, i64::MIN]),
            )
            .unwrap(),
            Tensor::try_new("c", vec![2, 1], TensorData::U8(vec![0, 255])).unwrap(),
            Tensor::try_new("e", vec![0], TensorData::F32(vec![])).unwrap(),
            Tensor::try_new("d", vec![], TensorData::F64(vec![0.1])).unwrap(),
            Tensor::try_new("h", vec![3], TensorData::F16(vec![0x3c00, 0xfc00, 1])).unwrap(),
        ]
    }

    /// `create_replacing` leaves the old file in place until `finish`, then replaces it with
    /// what `create` would have written; a writer dropped or failing on the way leaves the
    /// directory as it was.
    #[test]
    fn replacing_writers_touch_the_path_only_when_finished() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = model();
        let plan: Vec<TensorSpec> = tensors.iter().map(TensorSpec::from).collect();
        let meta = SafetensorsMetadata::new();
        let names = |dir: &Path| {
            let mut n: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        for ext in ["safetensors", "npz", "pt"] {
            let path = dir.path().join(format!("m.{ext}"));
            std::fs::write(&path, b"old").unwrap();
            let mut w = TensorWriter::create_replacing(&path, &plan, &meta).unwrap();
            w.write(&tensors[0]).unwrap();
            drop(w);
            assert_eq!(std::fs::read(&path).unwrap(), b"old", "{ext}");
            let mut w = TensorWriter::create_replacing(&path, &plan, &meta).unwrap();
            w.write(&tensors[0]).unwrap();
            let err = w.finish().unwrap_err();
            assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
            assert_eq!(std::fs::read(&path).unwrap(), b"old", "{ext}");
            assert_eq!(names(dir.path()).len(), 1, "{ext}: {:?}", names(dir.path()));

            let mut w = TensorWriter::create_replacing(&path, &plan, &meta).unwrap();
            for t in &tensors {
                w.write(t).unwrap();
            }
            w.finish().unwrap();
            let direct = dir.path().join(format!("direct.{ext}"));
            let mut w = TensorWriter::create(&direct, &plan).unwrap();
            for t in &tensors {
                w.write(t).unwrap();
            }
            w.finish().unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                std::fs::read(&direct).unwrap()
            );
            std::fs::remove_file(&direct).unwrap();
            std::fs::remove_file(&path).unwrap();
            assert!(names(dir.path()).is_empty(), "{ext}");
        }
    }

    #[test]
    fn streamed_files_equal_the_whole_model_writers() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = model();
        let plan: Vec<TensorSpec> = tensors.iter().map(TensorSpec::from).collect();
        for ext in ["safetensors", "npz", "pt"] {
            let whole = dir.path().join(format!("whole.{ext}"));
            super::super::write_tensors(&whole, &tensors).unwrap();
            let streamed = dir.path().join(format!("streamed.{ext}"));
            let mut w = TensorWriter::create(&streamed, &plan).unwrap();
            // Safetensors takes tensors in any order; npz and PyTorch entries follow the arrival
            // order.
            let order: Vec<usize> = if ext != "safetensors" {
                (0..tensors.len()).collect()
            } else {
                (0..tensors.len()).rev().collect()
            };
            for i in order {
                w.write(&tensors[i]).unwrap();
            }
            w.finish().unwrap();
            assert_eq!(
                std::fs::read(&streamed).unwrap(),
                std::fs::read(&whole).unwrap(),
                "{ext}"
            );
        }
        // A PyTorch file streamed in another order holds the same state dict, in plan order.
        let reversed = dir.path().join("reversed.pt");
        let mut w = TensorWriter::create(&reversed, &plan).unwrap();
        for t in tensors.iter().rev() {
            w.write(t).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(super::super::read_tensors(&reversed, "0").unwrap(), tensors);
        let one = dir.path().join("one.npy");
        let mut w = TensorWriter::create(&one, &plan[..1]).unwrap();
        w.write(&tensors[0]).unwrap();
        w.finish().unwrap();
        assert_eq!(
            super::super::read_npy(&one, "b.weight").unwrap(),
            tensors[0]
        );
    }

    #[test]
    fn tensors_off_the_plan_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = model();
        let plan: Vec<TensorSpec> = tensors.iter().map(TensorSpec::from).collect();
        let path = dir.path().join("m.safetensors");
        let mut w = TensorWriter::create(&path, &plan).unwrap();
        let other = Tensor::try_new("zzz", vec![1], TensorData::F32(vec![1.0])).unwrap();
        assert!(matches!(w.write(&other), Err(IoError::NotAsPlanned { .. })));
        let retyped = Tensor::try_new("a", vec![4], TensorData::I32(vec![1, 2, 3, 4])).unwrap();
        assert!(matches!(
            w.write(&retyped),
            Err(IoError::NotAsPlanned { .. })
        ));
        w.write(&tensors[0]).unwrap();
        assert!(matches!(
            w.write(&tensors[0]),
            Err(IoError::NotAsPlanned { .. })
        ));
        let err = w.finish().unwrap_err();
        assert!(matches!(err, IoError::NotAsPlanned { .. }), "{err}");

        let two = dir.path().join("two.npy");
        let err = TensorWriter::create(&two, &plan).unwrap_err();
        assert!(
            matches!(err, IoError::NotOneTensor { count: 6, .. }),
            "{err}"
        );
        let bf = [TensorSpec {
            name: "x".into(),
            shape: vec![1],
            dtype: DType::BF16,
        }];
        let err = TensorWriter::create(&dir.path().join("x.npz"), &bf).unwrap_err();
        assert!(matches!(err, IoError::DTypeNotWritable { .. }), "{err}");
        assert!(!dir.path().join("x.npz").exists());
        let dup = [plan[0].clone(), plan[0].clone()];
        let err = TensorWriter::create(&dir.path().join("d.safetensors"), &dup).unwrap_err();
        assert!(matches!(err, IoError::DuplicateName { .. }), "{err}");
    }

    #[test]
    fn mapped_reading_gives_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let tensors = model();
        let path = dir.path().join("m.safetensors");
        super::super::write_tensors(&path, &tensors).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (in_memory, _) = super::super::safetensors::parse(&bytes, &path).unwrap();
        assert_eq!(super::super::read_tensors(&path, "0").unwrap(), in_memory);
        let mut sorted = in_memory.clone();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut expected = tensors.clone();
        expected.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(sorted, expected);
    }
}

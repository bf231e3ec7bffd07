//! NumPy `.npy` / `.npz` files (via `npyz`), keeping each array's dtype.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use nnc_tensor::{Tensor, TensorData};
use npyz::{NpyFile, WriterBuilder};

use super::IoError;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IoError + '_ {
    move |source| IoError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn malformed(path: &Path, name: &str, what: impl Into<String>) -> IoError {
    IoError::Malformed {
        path: path.display().to_string(),
        name: name.to_string(),
        what: what.into(),
    }
}

/// Reads one array from an `.npy` stream.
fn read_array<R: Read>(npy: NpyFile<R>, path: &Path, name: &str) -> Result<Tensor, IoError> {
    if npy.order() == npyz::Order::Fortran && npy.shape().len() > 1 {
        return Err(malformed(
            path,
            name,
            "Fortran-ordered arrays are not supported",
        ));
    }
    let shape = npy
        .shape()
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| malformed(path, name, "dimension too large")))
        .collect::<Result<Vec<_>, _>>()?;
    let descr = npy.dtype().descr();
    let type_code = descr
        .trim_matches('\'')
        .trim_start_matches(['<', '>', '|', '=']);
    let data = match type_code {
        "f8" => TensorData::F64(npy.into_vec().map_err(io_err(path))?),
        "f4" => TensorData::F32(npy.into_vec().map_err(io_err(path))?),
        "i8" => TensorData::I64(npy.into_vec().map_err(io_err(path))?),
        "i4" => TensorData::I32(npy.into_vec().map_err(io_err(path))?),
        "i2" => TensorData::I16(npy.into_vec().map_err(io_err(path))?),
        "i1" => TensorData::I8(npy.into_vec().map_err(io_err(path))?),
        "u8" => TensorData::U64(npy.into_vec().map_err(io_err(path))?),
        "u4" => TensorData::U32(npy.into_vec().map_err(io_err(path))?),
        "u2" => TensorData::U16(npy.into_vec().map_err(io_err(path))?),
        "u1" => TensorData::U8(npy.into_vec().map_err(io_err(path))?),
        "b1" => TensorData::Bool(npy.into_vec().map_err(io_err(path))?),
        _ => {
            return Err(IoError::UnsupportedDType {
                path: path.display().to_string(),
                name: name.to_string(),
                dtype: descr,
            })
        }
    };
    Tensor::try_new(name, shape, data).map_err(|e| malformed(path, name, e.to_string()))
}

/// Reads a `.npy` file as one tensor called `name`.
pub fn read_npy(path: &Path, name: &str) -> Result<Tensor, IoError> {
    let file = File::open(path).map_err(io_err(path))?;
    let npy = NpyFile::new(BufReader::new(file)).map_err(io_err(path))?;
    read_array(npy, path, name)
}

/// Reads every array of a `.npz` file, in archive order.
pub fn read_npz(path: &Path) -> Result<Vec<Tensor>, IoError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut archive = npyz::npz::NpzArchive::new(BufReader::new(file)).map_err(io_err(path))?;
    // Archive order (the order the arrays were written), not the hash order of `array_names`.
    let zip = archive.zip_archive();
    let mut names = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| io_err(path)(std::io::Error::other(e)))?;
        if let Some(name) = npyz::npz::array_name_from_file_name(entry.name()) {
            names.push(name.to_string());
        }
    }
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let npy = archive
            .by_name(&name)
            .map_err(io_err(path))?
            .ok_or_else(|| malformed(path, &name, "listed but not found"))?;
        tensors.push(read_array(npy, path, &name)?);
    }
    Ok(tensors)
}

/// Writes one tensor as an `.npy` stream with its own dtype.
fn write_array<W: Write>(mut out: W, tensor: &Tensor) -> std::io::Result<()> {
    let shape: Vec<u64> = tensor.shape.iter().map(|&d| d as u64).collect();
    macro_rules! typed {
        ($values:expr, $t:ty) => {{
            let mut w = npyz::WriteOptions::<$t>::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut out)
                .begin_nd()?;
            w.extend($values.iter().copied())?;
            w.finish()
        }};
    }
    match &tensor.data {
        TensorData::F64(v) => typed!(v, f64),
        TensorData::F32(v) => typed!(v, f32),
        TensorData::I64(v) => typed!(v, i64),
        TensorData::I32(v) => typed!(v, i32),
        TensorData::I16(v) => typed!(v, i16),
        TensorData::I8(v) => typed!(v, i8),
        TensorData::U64(v) => typed!(v, u64),
        TensorData::U32(v) => typed!(v, u32),
        TensorData::U16(v) => typed!(v, u16),
        TensorData::U8(v) => typed!(v, u8),
        TensorData::Bool(v) => typed!(v, bool),
        other => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("cannot write dtype {:?}", other.dtype()),
        )),
    }
}

/// Writes one tensor to a `.npy` file with its own dtype.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), IoError> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut out = BufWriter::new(file);
    write_array(&mut out, tensor).map_err(io_err(path))?;
    out.flush().map_err(io_err(path))
}

/// Writes tensors to a `.npz` archive (uncompressed entries, as `numpy.savez`), each under its name.
pub fn write_npz(path: &Path, tensors: &[Tensor]) -> Result<(), IoError> {
    let file = File::create(path).map_err(io_err(path))?;
    write_npz_to(BufWriter::new(file), tensors).map_err(io_err(path))
}

fn write_npz_to<W: Write + Seek>(writer: W, tensors: &[Tensor]) -> std::io::Result<()> {
    let mut zip = npyz::zip::ZipWriter::new(writer);
    let options = npyz::zip::write::FileOptions::default()
        .compression_method(npyz::zip::CompressionMethod::Stored)
        .large_file(true);
    for tensor in tensors {
        zip.start_file(npyz::npz::file_name_from_array_name(&tensor.name), options)
            .map_err(std::io::Error::other)?;
        write_array(&mut zip, tensor)?;
    }
    let mut inner = zip.finish().map_err(std::io::Error::other)?;
    inner.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npz_round_trip_keeps_names_shapes_and_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npz");
        let tensors = vec![
            Tensor::try_new(
                "a.weight",
                vec![2, 3],
                TensorData::F32(vec![1.0, -2.5, 0.0, 3.0, 4.0, -0.0]),
            )
            .unwrap(),
            Tensor::try_new(
                "b",
                vec![4],
                TensorData::I64(vec![1, -2, i64::MAX, i64::MIN]),
            )
            .unwrap(),
            Tensor::try_new("c", vec![2, 1], TensorData::U8(vec![0, 255])).unwrap(),
            Tensor::try_new("d", vec![1], TensorData::F64(vec![0.1])).unwrap(),
        ];
        write_npz(&path, &tensors).unwrap();
        let back = read_npz(&path).unwrap();
        assert_eq!(back, tensors);
    }

    #[test]
    fn npy_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let t =
            Tensor::try_new("0", vec![3, 1, 2], TensorData::I32(vec![1, 2, 3, 4, 5, -6])).unwrap();
        write_npy(&path, &t).unwrap();
        assert_eq!(read_npy(&path, "0").unwrap(), t);
    }

    #[test]
    fn unknown_extension_is_an_error() {
        let err = super::super::read_tensors(Path::new("model.bin"), "0").unwrap_err();
        assert!(matches!(err, IoError::UnknownFormat { .. }));
    }
}

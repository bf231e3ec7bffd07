//! Model files, the command line's and Python's input: the npy, npz, safetensors and PyTorch
//! readers on raw bytes never panic nor allocate beyond what the input can hold, and every
//! tensor they accept holds as many elements as its shape says; what they accept (up to 1 MiB
//! of values) is written as a PyTorch checkpoint and as a safetensors file (with a
//! `__metadata__` map made of the tensor names) and reads back the same. The encoder's in-place
//! readers (`map_npy_source`, `map_npz_sources`, `map_safetensors_sources`,
//! `map_pytorch_sources`) accept exactly what the copying readers accept, with the same names,
//! shapes and elements. The first byte picks the reader, the rest is the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nnc_nn::io::{
    map_npy_source, map_npz_sources, map_pytorch_sources, map_safetensors_sources,
    read_safetensors_with_metadata, read_tensors, read_tensors_from_bytes, write_pytorch,
    write_safetensors_with_metadata, FileFormat, SafetensorsMetadata,
};
use nnc_tensor::encode::{ParameterData, TensorSource};
use nnc_tensor::{Tensor, TensorData};

/// The in-place reader of `format` on `file` (written to a temporary file) agrees with `read`,
/// what the copying reader made of the same bytes.
fn check_in_place(
    format: FileFormat,
    file: &[u8],
    read: &Result<Vec<Tensor>, nnc_nn::io::IoError>,
) {
    let path = std::env::temp_dir().join(format!("nnc-fuzz-{}.in", std::process::id()));
    std::fs::write(&path, file).expect("temporary file");
    let mapped = match format {
        FileFormat::Npy => map_npy_source(&path, "x").map(|s| vec![s]),
        FileFormat::Npz => map_npz_sources(&path),
        // A `.pt` name holding safetensors content is read as safetensors (`FileFormat::detect`).
        FileFormat::PyTorch if FileFormat::sniff(file) != Some(FileFormat::Safetensors) => {
            map_pytorch_sources(&path, &Default::default()).map(|(s, _)| s)
        }
        _ => map_safetensors_sources(&path).map(|(s, _)| s),
    };
    let _ = std::fs::remove_file(&path);
    let (mapped, read) = match (mapped, read) {
        (Ok(m), Ok(r)) => (m, r),
        (Err(_), Err(_)) => return,
        (m, r) => panic!(
            "in place {:?}, copied {:?}",
            m.map(|_| ()),
            r.as_ref().map(|_| ())
        ),
    };
    assert_eq!(mapped.len(), read.len());
    for (m, r) in mapped.iter().zip(read) {
        assert_eq!((m.name(), m.shape()), (r.name.as_str(), r.shape.as_slice()));
        // Debug forms: NaNs compare unequal as values.
        match m {
            TensorSource::Tensor(t) => assert_eq!(format!("{t:?}"), format!("{r:?}")),
            TensorSource::Elements(e) => match (e.data(), &r.data) {
                (ParameterData::F32(v), TensorData::F32(w)) => {
                    assert_eq!(format!("{:?}", &**v), format!("{w:?}"))
                }
                (ParameterData::I32(v), TensorData::I32(w)) => assert_eq!(**v, **w),
                (lent, copied) => panic!("lent {lent:?}, copied {copied:?}"),
            },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let format = match selector % 4 {
        0 => FileFormat::Npy,
        1 => FileFormat::Npz,
        2 => FileFormat::Safetensors,
        _ => FileFormat::PyTorch,
    };
    let read = read_tensors_from_bytes(file, format, Path::new("fuzz"), "x");
    check_in_place(format, file, &read);
    if let Ok(tensors) = read {
        for t in &tensors {
            let elements: usize = t.shape.iter().product();
            assert_eq!(t.data.len(), elements, "tensor {:?}", t.name);
        }
        let bytes: usize = tensors
            .iter()
            .map(|t| t.data.len() * t.dtype().size_in_bytes())
            .sum();
        if bytes <= 1 << 20 {
            let path = std::env::temp_dir().join(format!("nnc-fuzz-{}.pt", std::process::id()));
            write_pytorch(&path, &tensors).expect("accepted tensors are writable");
            let back = read_tensors(&path, "x").expect("a written checkpoint reads");
            // Debug forms: NaNs compare unequal as values.
            assert_eq!(format!("{back:?}"), format!("{tensors:?}"));
            let _ = std::fs::remove_file(&path);

            let path =
                std::env::temp_dir().join(format!("nnc-fuzz-{}.safetensors", std::process::id()));
            let metadata: SafetensorsMetadata = tensors
                .iter()
                .map(|t| (t.name.clone(), format!("{:?}", t.shape)))
                .collect();
            write_safetensors_with_metadata(&path, &tensors, &metadata)
                .expect("accepted tensors are writable");
            let (mut back, back_meta) =
                read_safetensors_with_metadata(&path).expect("a written file reads");
            assert_eq!(back_meta, metadata);
            // Safetensors lays tensors out by dtype and name: compare by name.
            let mut given: Vec<_> = tensors.iter().collect();
            given.sort_by(|a, b| a.name.cmp(&b.name));
            back.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(format!("{back:?}"), format!("{given:?}"));
            let _ = std::fs::remove_file(&path);
        }
    }
});

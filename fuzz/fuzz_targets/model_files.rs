//! Model files, the command line's and Python's input: the npy, npz, safetensors and PyTorch
//! readers on raw bytes never panic nor allocate beyond what the input can hold, and every
//! tensor they accept holds as many elements as its shape says; what they accept (up to 1 MiB
//! of values) is written as a PyTorch checkpoint and as a safetensors file (with a
//! `__metadata__` map made of the tensor names) and reads back the same. The first byte picks
//! the reader, the rest is the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nnc_nn::io::{
    read_safetensors_with_metadata, read_tensors, read_tensors_from_bytes, write_pytorch,
    write_safetensors_with_metadata, FileFormat, SafetensorsMetadata,
};

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
    if let Ok(tensors) = read_tensors_from_bytes(file, format, Path::new("fuzz"), "x") {
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

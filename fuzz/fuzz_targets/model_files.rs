//! Model files, the command line's and Python's input: the npy, npz, safetensors and PyTorch
//! readers on raw bytes never panic nor allocate beyond what the input can hold, and every
//! tensor they accept holds as many elements as its shape says. The first byte picks the
//! reader, the rest is the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use nnc_nn::io::{read_tensors_from_bytes, FileFormat};

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
    }
});

//! Safetensors `__metadata__` maps of any content (any Unicode, quotes, backslashes, control
//! characters, empty strings) survive `write_safetensors_with_metadata` and the streaming
//! `TensorWriter`, which write the same bytes, the same for equal maps.

use nnc_nn::io::{
    read_safetensors_with_metadata, write_safetensors_with_metadata, SafetensorsMetadata,
    TensorWriter,
};
use nnc_tensor::{Tensor, TensorData, TensorSpec};
use proptest::prelude::*;

fn tensors() -> Vec<Tensor> {
    vec![
        Tensor::try_new(
            "w",
            vec![2, 3],
            TensorData::F32(vec![0.5, -1.0, 2.0, 0.0, 3.5, -0.25]),
        )
        .expect("tensor"),
        Tensor::try_new("n", vec![], TensorData::I64(vec![7])).expect("tensor"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_metadata_round_trips(
        entries in prop::collection::vec(("\\PC{0,12}|[\"\\\\\n\t\u{0}]{0,3}", "\\PC{0,24}|[\"\\\\\n\u{1}]{0,4}"), 0..6)
    ) {
        let metadata: SafetensorsMetadata = entries.into_iter().collect();
        let dir = tempfile::tempdir().expect("tempdir");
        let whole = dir.path().join("whole.safetensors");
        let tensors = tensors();
        write_safetensors_with_metadata(&whole, &tensors, &metadata).expect("write");
        let (back, back_meta) = read_safetensors_with_metadata(&whole).expect("read");
        prop_assert_eq!(&back_meta, &metadata);
        let mut back = back;
        back.sort_by(|a, b| a.name.cmp(&b.name));
        let mut given = tensors.clone();
        given.sort_by(|a, b| a.name.cmp(&b.name));
        prop_assert_eq!(back, given);

        let streamed = dir.path().join("streamed.safetensors");
        let plan: Vec<TensorSpec> = tensors.iter().map(Into::into).collect();
        let mut w = TensorWriter::create_with_metadata(&streamed, &plan, &metadata).expect("create");
        for t in tensors.iter().rev() {
            w.write(t).expect("write");
        }
        w.finish().expect("finish");
        let bytes = std::fs::read(&whole).expect("read");
        prop_assert_eq!(&bytes, &std::fs::read(&streamed).expect("read"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode();
            prop_assert_eq!(mode(&whole), mode(&streamed));
        }
        // Header padded to 8 bytes, as the format asks.
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        prop_assert_eq!(n % 8, 0);
    }
}

//! Sharded checkpoints (`*.index.json` + shards): read whole, in shard order, with every
//! inconsistency between index and shards an error.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use nnc_nn::io::{read_sharded, read_tensors, write_tensors, IoError};
use nnc_tensor::{Tensor, TensorData};

fn t(name: &str, values: &[f32]) -> Tensor {
    Tensor::try_new(name, vec![values.len()], TensorData::F32(values.to_vec())).unwrap()
}

fn index(dir: &Path, name: &str, map: &[(&str, &str)]) -> std::path::PathBuf {
    let entries: Vec<String> = map.iter().map(|(t, f)| format!("{t:?}: {f:?}")).collect();
    let text = format!(
        "{{\"metadata\": {{\"total_size\": 0}}, \"weight_map\": {{{}}}}}",
        entries.join(", ")
    );
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn shards_are_read_in_index_order_whatever_their_format() {
    let dir = tempfile::tempdir().unwrap();
    let a = [t("layer.0.w", &[1.0, 2.0]), t("layer.0.b", &[3.0])];
    let b = [t("layer.1.w", &[4.0]), t("extra", &[5.0])];
    write_tensors(&dir.path().join("model-00002-of-00002.safetensors"), &a).unwrap();
    write_tensors(&dir.path().join("model-00001-of-00002.bin"), &b).unwrap();
    // The weight map names the .bin shard first.
    let idx = index(
        dir.path(),
        "model.safetensors.index.json",
        &[
            ("layer.1.w", "model-00001-of-00002.bin"),
            ("layer.0.w", "model-00002-of-00002.safetensors"),
            ("layer.0.b", "model-00002-of-00002.safetensors"),
        ],
    );
    // Each shard in its own file order (a safetensors file's data order need not be the order
    // its writer was given).
    let mut expected = read_tensors(&dir.path().join("model-00001-of-00002.bin"), "0").unwrap();
    expected
        .extend(read_tensors(&dir.path().join("model-00002-of-00002.safetensors"), "0").unwrap());
    assert_eq!(expected.len(), 4);
    assert_eq!(read_sharded(&idx).unwrap(), expected);
    // read_tensors dispatches on the name; "extra" (in a shard, not in the index) is kept.
    assert_eq!(read_tensors(&idx, "0").unwrap(), expected);
}

#[test]
fn index_and_shards_that_disagree_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_tensors(&dir.path().join("s1.safetensors"), &[t("w", &[1.0])]).unwrap();
    write_tensors(&dir.path().join("s2.safetensors"), &[t("w", &[2.0])]).unwrap();
    let case = |map: &[(&str, &str)]| {
        let idx = index(dir.path(), "m.index.json", map);
        read_sharded(&idx).unwrap_err()
    };
    let err = case(&[("v", "s1.safetensors")]);
    assert!(matches!(err, IoError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("which lacks it"), "{err}");
    let err = case(&[("w", "s1.safetensors"), ("w2", "absent.safetensors")]);
    assert!(matches!(err, IoError::NotFound { .. }), "{err}");
    // The same name in two shards.
    let err = case(&[("w", "s1.safetensors"), ("x", "s2.safetensors")]);
    assert!(
        matches!(
            err,
            IoError::Malformed { .. } | IoError::DuplicateName { .. }
        ),
        "{err}"
    );
    for bad in ["../s1.safetensors", "/etc/passwd", "", "m.index.json"] {
        let err = case(&[("w", bad)]);
        assert!(matches!(err, IoError::InvalidFile { .. }), "{bad}: {err}");
    }
    let idx = dir.path().join("broken.index.json");
    std::fs::write(&idx, "{\"weight_map\": [1, 2]}").unwrap();
    assert!(read_sharded(&idx)
        .unwrap_err()
        .to_string()
        .contains("weight_map"));
    std::fs::write(&idx, "not json").unwrap();
    assert!(read_sharded(&idx)
        .unwrap_err()
        .to_string()
        .contains("not JSON"));
    std::fs::write(&idx, "{\"weight_map\": {}}").unwrap();
    assert!(read_sharded(&idx)
        .unwrap_err()
        .to_string()
        .contains("empty"));
}

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
fn shards_are_read_in_file_name_order_whatever_their_format() {
    let dir = tempfile::tempdir().unwrap();
    let a = [t("layer.0.w", &[1.0, 2.0]), t("layer.0.b", &[3.0])];
    let b = [t("layer.1.w", &[4.0]), t("extra", &[5.0])];
    write_tensors(&dir.path().join("model-00002-of-00002.safetensors"), &a).unwrap();
    write_tensors(&dir.path().join("model-00001-of-00002.bin"), &b).unwrap();
    // The weight map names shard 2 first (as a sorted one would here); shard 1 is read first.
    let idx = index(
        dir.path(),
        "model.safetensors.index.json",
        &[
            ("layer.0.b", "model-00002-of-00002.safetensors"),
            ("layer.0.w", "model-00002-of-00002.safetensors"),
            ("layer.1.w", "model-00001-of-00002.bin"),
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

/// What `ShardedWriter` writes reads back through the index as the tensors given; one shard is a plain `model.safetensors`; nothing is left behind by a writer that
/// does not finish.
#[test]
fn sharded_writer_output_reads_back_through_its_index() {
    use nnc_nn::io::shard_writer::{INDEX_FILE, SINGLE_FILE};
    use nnc_nn::io::{read_safetensors_with_metadata, ShardedWriter};
    let model: Vec<Tensor> = (0..7)
        .map(|i| {
            let v: Vec<f32> = (0..(i * 3 + 1)).map(|j| (i * 100 + j) as f32).collect();
            t(&format!("layer.{i}.weight"), &v)
        })
        .collect();
    let plan: Vec<nnc_tensor::TensorSpec> = model.iter().map(Into::into).collect();
    let meta: nnc_nn::io::SafetensorsMetadata = [("format".to_string(), "pt".to_string())].into();
    let files = |dir: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };

    let dir = tempfile::tempdir().unwrap();
    let mut w = ShardedWriter::create(dir.path(), &plan, 40, &meta).unwrap();
    for t in model.iter().rev() {
        w.write(t).unwrap();
    }
    let names = w.file_names();
    w.finish().unwrap();
    assert_eq!(names.last().map(String::as_str), Some(INDEX_FILE));
    assert!(names.len() > 3, "{names:?}");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(files(dir.path()), sorted);
    // A tensor larger than a shard is listed when met (as huggingface_hub does), so the shards
    // need not hold the tensors in plan order.
    let mut back = read_sharded(&dir.path().join(INDEX_FILE)).unwrap();
    back.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(back, model);
    for name in &names[..names.len() - 1] {
        let (tensors, m) = read_safetensors_with_metadata(&dir.path().join(name)).unwrap();
        assert_eq!(m, meta);
        let bytes: usize = tensors.iter().map(|t| t.len() * 4).sum();
        // At most 40 bytes, unless one tensor alone is larger.
        assert!(bytes <= 40 || tensors.len() == 1, "{name}: {bytes} bytes");
    }
    #[cfg(unix)]
    {
        // The permissions of any new file there (not a temporary file's owner-only ones).
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"x").unwrap();
        for name in &names {
            assert_eq!(mode(&dir.path().join(name)), mode(&plain), "{name}");
        }
        std::fs::remove_file(&plain).unwrap();
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(INDEX_FILE)).unwrap()).unwrap();
    let total: usize = model.iter().map(|t| t.len() * 4).sum();
    assert_eq!(index["metadata"]["total_size"], total as u64);

    // One shard: a plain model.safetensors, no index.
    let one = tempfile::tempdir().unwrap();
    let mut w = ShardedWriter::create(one.path(), &plan, u64::MAX, &meta).unwrap();
    for t in &model {
        w.write(t).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(files(one.path()), [SINGLE_FILE]);
    assert_eq!(
        read_tensors(&one.path().join(SINGLE_FILE), "0").unwrap(),
        model
    );

    // Unfinished or incomplete: no file appears.
    let none = tempfile::tempdir().unwrap();
    let mut w = ShardedWriter::create(none.path(), &plan, 40, &meta).unwrap();
    w.write(&model[0]).unwrap();
    // Errors name the shard's own file, not its temporary name.
    let again = w.write(&model[0]).unwrap_err().to_string();
    assert!(
        again.contains("model-00001-of-") && !again.contains(".nnc-tmp"),
        "{again}"
    );
    drop(w);
    assert!(files(none.path()).is_empty());
    let mut w = ShardedWriter::create(none.path(), &plan, 40, &meta).unwrap();
    w.write(&model[0]).unwrap();
    assert!(matches!(w.finish(), Err(IoError::NotAsPlanned { .. })));
    assert!(files(none.path()).is_empty());
    assert!(matches!(
        ShardedWriter::create(none.path(), &plan, 0, &meta),
        Err(IoError::ZeroShardSize { .. })
    ));
}

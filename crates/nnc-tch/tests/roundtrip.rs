//! Tensor lists and VarStores made by tch through NNC and back: names, kinds and shapes
//! preserved, float values within the quantization error bound, integers and bools exact.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic as test failures

use std::collections::HashMap;

use nnc_tch::{
    decode_tensor_map, decode_tensors, encode_tensors, encode_varstore, from_nnc,
    load_into_varstore, to_nnc, Error,
};
use nnc_tensor::{DType, EncodeOptions, TensorData};
use tch::{nn, Device, Kind, Tensor};

/// Deterministic values in [-0.5, 0.5) (xorshift), so failures reproduce on any libtorch.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn float(shape: &[i64], seed: u64, kind: Kind) -> Tensor {
    let n = shape.iter().product::<i64>() as usize;
    Tensor::from_slice(&values(n, seed))
        .reshape(shape)
        .to_kind(kind)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Δ for qp with qp_density 2: (4 + (qp & 3)) · 2^((qp >> 2) − 2).
fn step(qp: i32) -> f64 {
    f64::from(4 + (qp & 3)) * 2f64.powi((qp >> 2) - 2)
}

/// Largest error the default (dependent, trellis-optimised) quantizer may make at `qp`: its two
/// quantizers have reconstruction points 2Δ apart and the trellis may pick the other state.
/// Half-precision tensors add the rounding of the decoded float32 back to their kind (values
/// below 1: at most 2^-11 for float16, 2^-8 for bfloat16).
fn bound(qp: i32, kind: Kind) -> f64 {
    let cast = match kind {
        Kind::Half => 2f64.powi(-11),
        Kind::BFloat16 => 2f64.powi(-8),
        _ => 0.0,
    };
    2.0 * step(qp) + cast
}

fn model() -> Vec<(String, Tensor)> {
    vec![
        ("conv.weight".into(), float(&[8, 3, 3, 3], 1, Kind::Float)),
        ("conv.bias".into(), float(&[8], 2, Kind::Float)),
        ("fc.weight".into(), float(&[10, 32], 3, Kind::Half)),
        ("fc.bias".into(), float(&[10], 4, Kind::BFloat16)),
        ("proj.weight".into(), float(&[4, 6], 5, Kind::Double)),
        ("scale".into(), Tensor::from(0.25f32)),
        (
            "position_ids".into(),
            Tensor::arange_start_step(-5000, 7000, 1000, (Kind::Int64, Device::Cpu))
                .reshape([1, 12]),
        ),
        (
            "offsets".into(),
            Tensor::from_slice(&[-7i32, 8, i32::MIN + 1, i32::MAX]).reshape([2, 2]),
        ),
        ("shorts".into(), Tensor::from_slice(&[-300i16, 0, 32767])),
        ("bytes".into(), Tensor::from_slice(&[-128i8, 0, 127])),
        ("mask".into(), Tensor::from_slice(&[0u8, 1, 255, 7])),
        (
            "keep".into(),
            Tensor::from_slice(&[true, false, false, true]).reshape([2, 2]),
        ),
    ]
}

#[test]
fn tensor_list_round_trip_keeps_names_kinds_shapes_and_values() {
    let qp = -32;
    let original = model();
    let opts = EncodeOptions::default().with_qp(qp);
    let bytes = encode_tensors(&original, &opts).unwrap();
    let decoded = decode_tensors(&bytes).unwrap();

    let mut expected_names: Vec<&str> = original.iter().map(|(n, _)| n.as_str()).collect();
    expected_names.sort_unstable();
    let names: Vec<&str> = decoded.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, expected_names, "stream order is name order");

    let by_name: HashMap<&str, &Tensor> = original.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut quantized = 0;
    for (name, back) in &decoded {
        let orig = by_name[name.as_str()];
        assert_eq!(back.kind(), orig.kind(), "{name}");
        assert_eq!(back.size(), orig.size(), "{name}");
        assert_eq!(back.device(), Device::Cpu);
        assert!(!back.requires_grad());
        let diff = max_abs_diff(back, orig);
        if back.is_floating_point() {
            assert!(diff <= bound(qp, orig.kind()), "{name}: {diff}");
            if diff > 0.0 {
                quantized += 1;
            }
        } else {
            assert!(back.equal(orig), "{name}: integers must be exact");
        }
    }
    assert!(quantized >= 4, "floats were actually quantized");
}

#[test]
fn containers_give_identical_bytes_and_coarser_qp_costs_accuracy() {
    let list = model();
    let map: HashMap<String, Tensor> = list
        .iter()
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let opts = EncodeOptions::default();
    let from_list = encode_tensors(&list, &opts).unwrap();
    assert_eq!(from_list, encode_tensors(&map, &opts).unwrap());
    assert_eq!(from_list, encode_tensors(list.as_slice(), &opts).unwrap());
    let pairs: Vec<(&str, Tensor)> = list
        .iter()
        .map(|(n, t)| (n.as_str(), t.shallow_clone()))
        .collect();
    assert_eq!(from_list, encode_tensors(pairs, &opts).unwrap());

    let w = float(&[64, 64], 9, Kind::Float);
    let fine = encode_tensors([("w", w.shallow_clone())], &opts.clone().with_qp(-40)).unwrap();
    let coarse = encode_tensors([("w", w.shallow_clone())], &opts.with_qp(-24)).unwrap();
    assert!(coarse.len() < fine.len());
    let err = |b: &[u8]| max_abs_diff(&decode_tensor_map(b).unwrap()["w"], &w);
    assert!(err(&coarse) > err(&fine));
}

#[test]
fn non_contiguous_scalar_and_grad_tensors_convert() {
    let t = Tensor::arange(6, (Kind::Int64, Device::Cpu)).reshape([2, 3]);
    let n = to_nnc("t", &t.tr()).unwrap();
    assert_eq!(n.shape, vec![3, 2]);
    assert_eq!(n.data, TensorData::I64(vec![0, 3, 1, 4, 2, 5]));

    let s = Tensor::from(7u8);
    let n = to_nnc("s", &s).unwrap();
    assert!(n.shape.is_empty());
    assert_eq!(n.data, TensorData::U8(vec![7]));
    let back = from_nnc(&n).unwrap();
    assert_eq!(back.dim(), 0);
    assert_eq!(back.int64_value(&[]), 7);

    let g = Tensor::from_slice(&[1.5f32, -2.0]).set_requires_grad(true);
    assert_eq!(
        to_nnc("g", &g).unwrap().data,
        TensorData::F32(vec![1.5, -2.0])
    );
}

#[test]
fn every_kind_converts_both_ways_exactly() {
    let base = Tensor::arange_start(-3, 3, (Kind::Int64, Device::Cpu)).reshape([2, 3]);
    for (kind, dtype) in [
        (Kind::Double, DType::F64),
        (Kind::Float, DType::F32),
        (Kind::Half, DType::F16),
        (Kind::BFloat16, DType::BF16),
        (Kind::Int64, DType::I64),
        (Kind::Int, DType::I32),
        (Kind::Int16, DType::I16),
        (Kind::Int8, DType::I8),
        (Kind::Bool, DType::Bool),
    ] {
        let t = base.to_kind(kind);
        let n = to_nnc("x", &t).unwrap();
        assert_eq!(n.dtype(), dtype);
        assert_eq!(n.shape, vec![2, 3]);
        let back = from_nnc(&n).unwrap();
        assert_eq!(back.kind(), kind);
        assert!(back.equal(&t), "{kind:?}");
    }
    // Half-precision bits survive verbatim: NaN, infinity, the smallest subnormal.
    for (kind, bits) in [
        (Kind::Half, [0x2e66u16, 0x7e00, 0xfc00, 0x0001]),
        (Kind::BFloat16, [0x3dcdu16, 0x7fc0, 0xff80, 0x0001]),
    ] {
        let n = nnc_tensor::Tensor::try_new(
            "h",
            vec![4],
            if kind == Kind::Half {
                TensorData::F16(bits.to_vec())
            } else {
                TensorData::BF16(bits.to_vec())
            },
        )
        .unwrap();
        let t = from_nnc(&n).unwrap();
        assert_eq!(t.kind(), kind);
        assert_eq!(to_nnc("h", &t).unwrap().data, n.data);
    }
}

#[test]
fn unsupported_kinds_dtypes_and_bad_inputs_are_typed_errors() {
    let c = Tensor::zeros([2], (Kind::ComplexFloat, Device::Cpu));
    let err = to_nnc("z", &c).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedTchKind { ref name, kind: Kind::ComplexFloat } if name == "z")
    );
    assert!(err.to_string().contains("ComplexFloat"), "{err}");

    let n = nnc_tensor::Tensor::try_new("u", vec![2], TensorData::U16(vec![1, 2])).unwrap();
    let err = from_nnc(&n).unwrap_err();
    assert!(matches!(
        err,
        Error::UnsupportedNncDType {
            dtype: DType::U16,
            ..
        }
    ));
    assert!(err.to_string().contains("uint16"), "{err}");

    // The fields are public: a shape that does not match the data must not reach libtorch.
    let bad = nnc_tensor::Tensor {
        name: "bad".into(),
        shape: vec![1000, 1000],
        data: TensorData::F32(vec![0.0; 3]),
    };
    assert!(matches!(from_nnc(&bad), Err(Error::Shape { .. })));

    let dup = [("w", Tensor::from(1f32)), ("w", Tensor::from(2f32))];
    assert!(matches!(
        encode_tensors(dup.iter(), &EncodeOptions::default()),
        Err(Error::DuplicateName(n)) if n == "w"
    ));
    // Empty tensors are no error: they come back with their shape and kind.
    let empties = [
        ("e", Tensor::zeros([0], (Kind::Float, Device::Cpu))),
        ("z", Tensor::zeros([3, 0], (Kind::Half, Device::Cpu))),
    ];
    let back =
        decode_tensors(&encode_tensors(empties, &EncodeOptions::default()).unwrap()).unwrap();
    let shapes: Vec<_> = back
        .iter()
        .map(|(n, t)| (n.as_str(), t.size(), t.kind()))
        .collect();
    assert_eq!(
        shapes,
        vec![("e", vec![0], Kind::Float), ("z", vec![3, 0], Kind::Half)]
    );
    let big = Tensor::from_slice(&[i64::from(i32::MAX) + 1]);
    assert!(matches!(
        encode_tensors([("big", big)], &EncodeOptions::default()),
        Err(Error::Input(_))
    ));

    let bytes = encode_tensors(model(), &EncodeOptions::default()).unwrap();
    for cut in [1, bytes.len() / 3, bytes.len() - 1] {
        assert!(
            matches!(decode_tensors(&bytes[..cut]), Err(Error::Codec(_))),
            "cut {cut}"
        );
    }
    assert!(matches!(
        decode_tensors(&[0xff, 0, 0x13]),
        Err(Error::Codec(_))
    ));
}

fn mlp(vs: &nn::VarStore) -> (nn::Linear, nn::BatchNorm) {
    let root = vs.root();
    (
        nn::linear(&root / "fc", 6, 4, Default::default()),
        nn::batch_norm1d(&root / "bn", 4, Default::default()),
    )
}

#[test]
fn varstore_round_trip_updates_in_place() {
    tch::manual_seed(0);
    let src = nn::VarStore::new(Device::Cpu);
    let _ = mlp(&src);
    let qp = -38;
    let bytes = encode_varstore(&src, &EncodeOptions::default().with_qp(qp)).unwrap();

    tch::manual_seed(1);
    let mut dst = nn::VarStore::new(Device::Cpu);
    let (fc, _) = mlp(&dst);
    let extra = dst.root().zeros("extra", &[3]);
    let summary = load_into_varstore(&bytes, &mut dst).unwrap();
    assert_eq!(
        summary.updated,
        [
            "bn.bias",
            "bn.running_mean",
            "bn.running_var",
            "bn.weight",
            "fc.bias",
            "fc.weight"
        ]
    );
    assert!(summary.inserted.is_empty());
    assert_eq!(summary.untouched, ["extra"]);
    assert!(extra.equal(&Tensor::zeros([3], (Kind::Float, Device::Cpu))));

    let src_vars = src.variables();
    let d = max_abs_diff(&fc.ws, &src_vars["fc.weight"]);
    assert!(d <= bound(qp, Kind::Float), "{d}");
    // The layer's own tensor was written (in place, not replaced), and still trains.
    assert!(fc.ws.requires_grad());
    assert!(
        max_abs_diff(&dst.variables()["fc.bias"], &src_vars["fc.bias"]) <= bound(qp, Kind::Float)
    );

    // Into an empty VarStore: everything is inserted, as non-trainable variables.
    let mut empty = nn::VarStore::new(Device::Cpu);
    let summary = load_into_varstore(&bytes, &mut empty).unwrap();
    assert_eq!(summary.inserted.len(), 6);
    assert!(summary.updated.is_empty() && summary.untouched.is_empty());
    assert_eq!(empty.variables()["fc.weight"].size(), [4, 6]);
    assert!(empty.trainable_variables().is_empty());
}

#[test]
fn varstore_mismatch_changes_nothing_and_floats_are_cast() {
    let src = nn::VarStore::new(Device::Cpu);
    let _ = mlp(&src);
    let bytes = encode_varstore(&src, &EncodeOptions::default()).unwrap();

    // Wrong shape for fc.weight: nothing written, not even the variables checked before it.
    let mut dst = nn::VarStore::new(Device::Cpu);
    let root = dst.root();
    let bn_bias = (&root / "bn").zeros("bias", &[4]);
    let _ = (&root / "fc").zeros("weight", &[6, 4]);
    let err = load_into_varstore(&bytes, &mut dst).unwrap_err();
    assert!(
        matches!(err, Error::VarShape { ref name, .. } if name == "fc.weight"),
        "{err}"
    );
    assert!(bn_bias.equal(&Tensor::zeros([4], (Kind::Float, Device::Cpu))));

    // An integer variable cannot take floats.
    let mut ints = nn::VarStore::new(Device::Cpu);
    ints.variables_.lock().unwrap().named_variables.insert(
        "fc.bias".into(),
        Tensor::zeros([4], (Kind::Int64, Device::Cpu)),
    );
    let err = load_into_varstore(&bytes, &mut ints).unwrap_err();
    assert!(
        matches!(
            err,
            Error::VarKind {
                expected: Kind::Int64,
                found: Kind::Float,
                ..
            }
        ),
        "{err}"
    );

    // A double-precision VarStore takes the float32 stream, cast.
    let mut dbl = nn::VarStore::new(Device::Cpu);
    let _ = mlp(&dbl);
    dbl.double();
    load_into_varstore(&bytes, &mut dbl).unwrap();
    let w = &dbl.variables()["fc.weight"];
    assert_eq!(w.kind(), Kind::Double);
    assert!(max_abs_diff(w, &src.variables()["fc.weight"]) <= bound(-32, Kind::Float));
}

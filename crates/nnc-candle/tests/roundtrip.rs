//! Tensor maps and VarMaps through NNC and back: names, dtypes and shapes preserved, float values
//! within the quantization step, integers exact.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic as test failures

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use nnc_candle::{decode_tensors, encode_tensors, Error};
use nnc_tensor::EncodeOptions;

/// Deterministic values in [-0.5, 0.5) (xorshift), so failures reproduce.
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

fn float(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(values(n, seed), shape, &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Δ for qp with qp_density 2: (4 + (qp & 3)) · 2^((qp >> 2) − 2).
fn step(qp: i32) -> f64 {
    f64::from(4 + (qp & 3)) * 2f64.powi((qp >> 2) - 2)
}

/// Largest error the default (dependent, trellis-optimised) quantizer may make at `qp`: each of
/// its two quantizers has reconstruction points 2Δ apart and the trellis may pick the other state,
/// so the bound is 2Δ rather than Δ/2.
fn bound(qp: i32) -> f64 {
    2.0 * step(qp)
}

fn model() -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let mut m = HashMap::new();
    m.insert("conv.weight".into(), float(&[8, 3, 3, 3], 1, DType::F32));
    m.insert("conv.bias".into(), float(&[8], 2, DType::F32));
    m.insert("fc.weight".into(), float(&[10, 32], 3, DType::F16));
    m.insert("fc.bias".into(), float(&[10], 4, DType::BF16));
    m.insert("proj.weight".into(), float(&[4, 6], 5, DType::F64));
    m.insert("scale".into(), Tensor::new(0.25f32, &dev).unwrap());
    let ids: Vec<i64> = (0..12).map(|i| i * 1000 - 5000).collect();
    m.insert(
        "position_ids".into(),
        Tensor::from_vec(ids, (1, 12), &dev).unwrap(),
    );
    m.insert("mask".into(), Tensor::new(&[0u8, 1, 255, 7], &dev).unwrap());
    m.insert(
        "counts".into(),
        Tensor::new(&[3u32, 0, 2_000_000_000], &dev).unwrap(),
    );
    m.insert(
        "offsets".into(),
        Tensor::new(&[[-7i32, 8], [i32::MIN + 1, i32::MAX]], &dev).unwrap(),
    );
    m.insert("small".into(), Tensor::new(&[-3i16, 300], &dev).unwrap());
    m
}

#[test]
fn tensor_map_round_trip_keeps_names_dtypes_shapes_and_values() {
    let qp = -32;
    let opts = EncodeOptions::default().with_qp(qp);
    let original = model();
    let bytes = encode_tensors(&original, &opts).unwrap();
    let decoded = decode_tensors(&bytes, &Device::Cpu).unwrap();

    let mut names: Vec<&String> = original.keys().collect();
    names.sort();
    let got: Vec<&String> = decoded.iter().map(|(n, _)| n).collect();
    assert_eq!(got, names);

    let weight_step = bound(qp);
    let nonweight_step = bound(opts.nonweight_qp.unwrap());
    let mut weights_quantized = false;
    for (name, t) in &decoded {
        let o = &original[name];
        assert_eq!(t.dtype(), o.dtype(), "{name}");
        assert_eq!(t.dims(), o.dims(), "{name}");
        let err = max_abs_diff(t, o);
        if o.dtype().is_float() {
            // Both the quantizer and the cast back to f16/bf16 may round.
            let cast = match o.dtype() {
                DType::F16 => 2f64.powi(-11),
                DType::BF16 => 2f64.powi(-8),
                _ => 0.0,
            };
            let delta = if o.rank() >= 2 {
                weight_step
            } else {
                nonweight_step
            };
            assert!(err <= delta + cast, "{name}: error {err} > step {delta}");
            weights_quantized |= o.rank() >= 2 && err > 0.0;
        } else {
            assert_eq!(err, 0.0, "{name}: integers must be exact");
        }
    }
    assert!(weights_quantized, "qp {qp} should quantize the weights");
}

#[test]
fn coarser_qp_gives_fewer_bytes_and_larger_errors() {
    let t = float(&[64, 64], 9, DType::F32);
    let map = [("w", t.clone())];
    let mut last: Option<(usize, f64)> = None;
    for qp in [-44, -32, -20] {
        let bytes = encode_tensors(map.iter(), &EncodeOptions::default().with_qp(qp)).unwrap();
        let decoded = decode_tensors(&bytes, &Device::Cpu).unwrap();
        let err = max_abs_diff(&decoded[0].1, &t);
        assert!(err <= bound(qp), "qp {qp}: {err}");
        if let Some((size, prev_err)) = last {
            assert!(bytes.len() < size, "qp {qp}");
            assert!(err > prev_err, "qp {qp}");
        }
        last = Some((bytes.len(), err));
    }
}

#[test]
fn integer_out_of_int32_range_is_an_input_error() {
    let big = Tensor::new(&[1i64 << 40], &Device::Cpu).unwrap();
    let err = encode_tensors([("big", big)], &EncodeOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err}");
    assert!(err.to_string().contains("big"), "{err}");
}

#[test]
fn truncated_streams_fail_cleanly() {
    let bytes = encode_tensors(model(), &EncodeOptions::default()).unwrap();
    for cut in [1, 7, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            decode_tensors(&bytes[..cut], &Device::Cpu).is_err(),
            "cut {cut}"
        );
    }
}

#[cfg(feature = "varmap")]
mod varmap {
    use super::*;
    use candle_core::Var;
    use candle_nn::{Init, VarMap};
    use nnc_candle::{encode_varmap, load_into_varmap, LoadSummary};

    fn filled(seed: u64) -> VarMap {
        let vm = VarMap::new();
        {
            let mut data = vm.data().lock().unwrap();
            data.insert(
                "layer.weight".into(),
                Var::from_tensor(&float(&[16, 8], seed, DType::F32)).unwrap(),
            );
            data.insert(
                "layer.bias".into(),
                Var::from_tensor(&float(&[16], seed + 1, DType::F16)).unwrap(),
            );
        }
        vm
    }

    #[test]
    fn varmap_round_trip() {
        let src = filled(11);
        let bytes = encode_varmap(&src, &EncodeOptions::default()).unwrap();

        // Same names, other values: overwritten in place; an extra variable stays untouched.
        let mut dst = filled(99);
        dst.get(3, "other", Init::Const(1.0), DType::F32, &Device::Cpu)
            .unwrap();
        let summary = load_into_varmap(&bytes, &mut dst).unwrap();
        assert_eq!(
            summary,
            LoadSummary {
                updated: vec!["layer.bias".into(), "layer.weight".into()],
                inserted: vec![],
                untouched: vec!["other".into()],
            }
        );
        let s = src.data().lock().unwrap();
        let d = dst.data().lock().unwrap();
        for name in ["layer.weight", "layer.bias"] {
            assert_eq!(d[name].dtype(), s[name].dtype());
            let err = max_abs_diff(d[name].as_tensor(), s[name].as_tensor());
            assert!(
                err < bound(EncodeOptions::default().qp) + 2f64.powi(-11),
                "{name}: {err}"
            );
        }

        // An empty VarMap receives new variables.
        let mut empty = VarMap::new();
        let summary = load_into_varmap(&bytes, &mut empty).unwrap();
        assert_eq!(summary.inserted, ["layer.bias", "layer.weight"]);
        assert_eq!(empty.all_vars().len(), 2);
    }

    #[test]
    fn varmap_shape_or_dtype_mismatch_changes_nothing() {
        let bytes = encode_varmap(&filled(1), &EncodeOptions::default()).unwrap();

        let mut wrong_shape = filled(2);
        wrong_shape.data().lock().unwrap().insert(
            "layer.weight".into(),
            Var::zeros((8, 16), DType::F32, &Device::Cpu).unwrap(),
        );
        let before = wrong_shape.data().lock().unwrap()["layer.bias"]
            .as_tensor()
            .copy()
            .unwrap();
        let err = load_into_varmap(&bytes, &mut wrong_shape).unwrap_err();
        assert!(matches!(err, Error::VarShape { .. }), "{err}");
        let after = wrong_shape.data().lock().unwrap()["layer.bias"]
            .as_tensor()
            .copy()
            .unwrap();
        assert_eq!(max_abs_diff(&before, &after), 0.0);

        let mut wrong_dtype = filled(2);
        wrong_dtype.data().lock().unwrap().insert(
            "layer.bias".into(),
            Var::zeros(16, DType::U32, &Device::Cpu).unwrap(),
        );
        let err = load_into_varmap(&bytes, &mut wrong_dtype).unwrap_err();
        assert!(matches!(err, Error::VarDType { .. }), "{err}");

        // A float variable of another float dtype receives a cast.
        let mut other_float = filled(2);
        other_float.data().lock().unwrap().insert(
            "layer.weight".into(),
            Var::zeros((16, 8), DType::F64, &Device::Cpu).unwrap(),
        );
        load_into_varmap(&bytes, &mut other_float).unwrap();
        let w = other_float.data().lock().unwrap()["layer.weight"]
            .as_tensor()
            .clone();
        assert_eq!(w.dtype(), DType::F64);
    }
}

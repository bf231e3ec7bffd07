//! Per-tensor qp selection (hls.md §5.2) against the reference's conformance vectors.

#![allow(clippy::unwrap_used)]

mod common;

use common::Case;
use nnc_quant::qp_select::{tensor_qps, ParameterType, QpConfig, QpTensor};

/// Recomputes every tensor's qp of a case from its inputs and compresses arguments.
fn check_case(name: &str) {
    let case = Case::load(name);
    // Integer tensors (qp null) are not quantized.
    let names: Vec<String> = case
        .tensor_names()
        .into_iter()
        .filter(|t| !case.config["encoder_internal"]["qp"][t].is_null())
        .collect();
    let data: Vec<(Vec<f32>, ParameterType)> = names
        .iter()
        .map(|t| {
            let ty = ParameterType::from_reference_str(&case.parameter_type(t)).expect("type");
            (case.read_f32("input", t).0, ty)
        })
        .collect();
    let tensors: Vec<QpTensor<'_>> = names
        .iter()
        .zip(&data)
        .map(|(n, (w, ty))| QpTensor {
            name: n,
            parameter_type: *ty,
            weights: w,
        })
        .collect();
    let overrides: Vec<(String, i32)> = case
        .kwarg("qp_per_tensor")
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_i64().expect("qp") as i32))
                .collect()
        })
        .unwrap_or_default();
    let override_refs: Vec<(&str, i32)> = overrides.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let cfg = QpConfig {
        qp: case.kwarg("qp").as_i64().expect("qp") as i32,
        qp_density: case.kwarg("qp_density").as_u64().expect("qpd") as u8,
        nonweight_qp: case.kwarg("nonweight_qp").as_i64().map(|q| q as i32),
        qp_per_tensor: &override_refs,
        opt_qp: case.kwarg("opt_qp").as_bool().unwrap_or(false),
        int_quant_bw: case.kwarg("int_quant_bw").as_u64().map(|b| b as u32),
    };
    let got = tensor_qps(&tensors, &cfg).unwrap();
    let expected: Vec<i32> = names
        .iter()
        .map(|t| case.internal_i64("qp", t) as i32)
        .collect();
    assert_eq!(got, expected, "{name}: {names:?}");
}

#[test]
fn opt_qp_multi_tensor() {
    check_case("nn_tiny_opt_qp_nodq");
}

#[test]
fn opt_qp_single_tensor() {
    check_case("t_opt_qp");
}

#[test]
fn qp_per_tensor_and_defaults() {
    for name in [
        "t_qp_per_tensor",
        "t_default_2d",
        "t_uni_dq_1d",
        "c_multi_tensor_mixed",
    ] {
        check_case(name);
    }
}

#[test]
fn bitdepth_qps() {
    for name in [
        "nn_tiny_bitdepth8",
        "t_bitdepth4_1d",
        "t_bitdepth8_unsigned_2d",
    ] {
        check_case(name);
    }
}

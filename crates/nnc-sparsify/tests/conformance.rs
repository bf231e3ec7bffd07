//! Sparsification against the reference's conformance vectors: sparsify `input`, quantize with
//! the case's settings, compare with the reference's levels.

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use ndarray_npy::{read_npy, NpzReader, ReadableElement};
use nnc_quant::{quantize_layer, QuantizeOptions};
use nnc_sparsify::{sparsify, SparsifyOptions, Tensor, TensorValues};
use serde_json::Value;

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/vectors")
        .join(name)
}

fn config(name: &str) -> Value {
    let text = std::fs::read_to_string(case_dir(name).join("config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// One array of a `.npy` file, or `tensor` of a `.npz` file.
fn read<T: ReadableElement>(path: &Path, tensor: &str) -> Option<ArrayD<T>> {
    if path.extension().is_some_and(|e| e == "npz") {
        NpzReader::new(File::open(path).ok()?)
            .ok()?
            .by_name(tensor)
            .ok()
    } else {
        read_npy(path).ok()
    }
}

/// Every input tensor of a case, in file order (float as f32, integers as i64).
fn inputs(name: &str, cfg: &Value) -> Vec<Tensor> {
    let path = case_dir(name).join(cfg["files"]["input"].as_str().unwrap());
    let names: Vec<String> = if path.extension().is_some_and(|e| e == "npz") {
        NpzReader::new(File::open(&path).unwrap())
            .unwrap()
            .names()
            .unwrap()
    } else {
        vec!["0".to_owned()]
    };
    names
        .into_iter()
        .map(|n| {
            if let Some(a) = read::<f32>(&path, &n) {
                let dims = a.shape().to_vec();
                Tensor::from_f32(n, dims, a.iter().copied().collect()).unwrap()
            } else {
                let a = read::<i64>(&path, &n).unwrap();
                let dims = a.shape().to_vec();
                Tensor::new(n, dims, TensorValues::Int(a.iter().copied().collect())).unwrap()
            }
        })
        .collect()
}

/// Sparsifies and quantizes every quantized tensor of `name`; returns the mismatching tensors.
fn check(name: &str) -> Vec<String> {
    let cfg = config(name);
    let args = &cfg["encoder_args_effective"];
    let internal = &cfg["encoder_internal"];
    let kwargs = &cfg["nnc_compress_kwargs"];
    let qpd = internal["qp_density"].as_u64().unwrap() as u8;
    let opts = SparsifyOptions {
        qp: args["qp"].as_i64().unwrap() as i32,
        // nncodec.tensor never passes qp_density to the sparsifier (default 2); nncodec.nn does.
        qp_density: if cfg["pipeline"] == "tensor" { 2 } else { qpd },
        sparsity: args["sparsity"].as_f64().unwrap(),
        struct_spars_factor: args["struct_spars_factor"].as_f64().unwrap(),
    };
    let mut tensors = inputs(name, &cfg);
    sparsify(&mut tensors, &opts);

    let levels_path = case_dir(name).join(cfg["files"]["levels"].as_str().unwrap());
    let enc_info = &internal["enc_info"];
    let mut failures = Vec::new();
    for t in &tensors {
        let Some(qp) = internal["qp"][&t.name].as_i64() else {
            continue;
        };
        let Some(weights) = t.as_f32() else { continue };
        let q = quantize_layer(
            weights,
            &t.dims,
            &QuantizeOptions {
                dq_flag: internal["dq_flag"][&t.name] == 1,
                qp_density: qpd,
                qp: qp as i32,
                lambda_scale: kwargs["lambda_scale"].as_f64().unwrap_or(0.0) as f32,
                max_num_no_rem: enc_info["cabac_unary_length_minus1"].as_u64().unwrap() as u32,
                scan_order: kwargs["scan_order"].as_u64().unwrap_or(0) as u8,
                general_profile_idc: enc_info["general_profile_idc"].as_u64().unwrap() as u8,
            },
        )
        .unwrap();
        let expected: Vec<i32> = read::<i32>(&levels_path, &t.name)
            .unwrap()
            .iter()
            .copied()
            .collect();
        if q.levels != expected {
            let n = q
                .levels
                .iter()
                .zip(&expected)
                .filter(|(a, b)| a != b)
                .count();
            failures.push(format!(
                "{name}[{}]: {n} of {} levels differ",
                t.name,
                expected.len()
            ));
        }
    }
    failures
}

#[test]
fn unstructured_4d() {
    assert_eq!(check("t_sparsity05_unstruct_4d"), Vec::<String>::new());
}

#[test]
fn unstructured_and_structured_2d_without_dq() {
    assert_eq!(check("t_sparsity05_struct09_2d_nodq"), Vec::<String>::new());
}

#[test]
fn unstructured_and_structured_4d() {
    assert_eq!(check("t_sparsity07_struct09_4d"), Vec::<String>::new());
}

#[test]
fn high_target_with_struct_factor_05() {
    assert_eq!(check("t_sparsity09_rowskip_off"), Vec::<String>::new());
}

#[test]
fn nn_pipeline_model() {
    assert_eq!(check("nn_tiny_sparsity_epoch1"), Vec::<String>::new());
}

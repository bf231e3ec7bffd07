//! Codebook approximation (hls.md §5.5) against the reference's conformance vectors, with the
//! `nnc-cabac` encoder plugged into the size callbacks as the pipeline will do.

#![allow(clippy::unwrap_used)]

mod common;

use common::{cases_with_prefix, Case};
use nnc_cabac::{encode_layer, ArithEncoder, EncodeLayerOptions, LayerConfig, LayerHistory};
use nnc_quant::bitdepth::{bitdepth_bits, bitdepth_qp, clip_levels_bitdepth, is_unsigned};
use nnc_quant::codebook::{
    best_codebook_egk, build_codebook, choose_codebook_zero_offset, codebook_mode2_decision,
    codebook_qp, codebook_syntax_bits,
};
use nnc_quant::{quantize_layer, QuantizeOptions};
use serde_json::Value;

/// Size in bytes of one tensor coded alone (fresh encoder, `initCtxModels(n, param_opt)`).
#[allow(clippy::too_many_arguments)]
fn encoded_size(
    levels: &[i32],
    dims: &[usize],
    dq_flag: bool,
    scan_order: u8,
    gpi: u8,
    parent: bool,
    n: u32,
    param_opt: bool,
) -> usize {
    let cfg = LayerConfig {
        dims: dims.to_vec(),
        dq_flag,
        scan_order,
        general_profile_idc: gpi,
        parent_node_id_present_flag: parent,
        codebook_size: 0,
        codebook_zero_offset: 0,
        cabac_unary_length: n,
    };
    let opts = EncodeLayerOptions {
        param_opt,
        ..EncodeLayerOptions::default()
    };
    let mut enc = ArithEncoder::new();
    encode_layer(&mut enc, &cfg, &LayerHistory::default(), &opts, levels).expect("encodes");
    enc.finish().len()
}

/// What the reference decided for one tensor.
#[derive(Debug, PartialEq)]
enum Decision {
    Codebook {
        qp: i32,
        values: Vec<i32>,
        zero_offset: u32,
        egk: u32,
        levels: Vec<i32>,
    },
    Uniform {
        qp: i32,
        dq: bool,
        levels: Vec<i32>,
    },
}

/// `codebook.approx` for one tensor (modes 1 and 2).
fn approximate(case: &Case, tensor: &str) -> Decision {
    let (weights, dims) = case.read_f32("input", tensor);
    let enc_info = &case.config["encoder_internal"]["enc_info"];
    let gpi = enc_info["general_profile_idc"].as_u64().unwrap_or(0) as u8;
    let parent = enc_info["parent_node_id_present_flag"]
        .as_u64()
        .unwrap_or(0)
        != 0;
    let param_opt = enc_info["param_opt_flag"].as_bool().unwrap_or(false);
    let cul_minus1 = enc_info["cabac_unary_length_minus1"].as_u64().unwrap_or(10) as u32;
    let qpd = case.config["encoder_internal"]["qp_density"]
        .as_u64()
        .expect("qpd") as u8;
    let mode = case.kwarg("codebook_mode").as_u64().expect("codebook_mode");
    let dq_requested = case.kwarg("use_dq").as_bool().unwrap_or(true);
    let scan_order = case.kwarg("scan_order").as_u64().unwrap_or(0) as u8;
    let is_weight = case.parameter_type(tensor) == "weight";
    let bw = case.kwarg("int_quant_bw").as_u64().map(|b| b as u32);

    let qp = match bw {
        Some(bw) => bitdepth_qp(&weights, is_weight, bw, qpd).unwrap(),
        None => {
            let qp = case.kwarg("qp").as_i64().expect("qp") as i32;
            let nonweight = case.kwarg("nonweight_qp").as_i64().map(|q| q as i32);
            nnc_quant::qp_select::base_qp(
                nnc_quant::qp_select::ParameterType::from_reference_str(
                    &case.parameter_type(tensor),
                )
                .expect("type"),
                qp,
                qpd,
                nonweight,
            )
        }
    };
    let clip = |levels: &mut Vec<i32>| {
        if let Some(bw) = bw {
            if weights.iter().any(|&w| w != 0.0) {
                clip_levels_bitdepth(levels, is_unsigned(&weights), bitdepth_bits(is_weight, bw));
            }
        }
    };
    let opts = QuantizeOptions {
        dq_flag: false,
        qp_density: qpd,
        qp: codebook_qp(qp, qpd, dq_requested),
        lambda_scale: 0.0,
        max_num_no_rem: cul_minus1,
        scan_order,
        general_profile_idc: gpi,
    };
    let q = quantize_layer(&weights, &dims, &opts).unwrap();
    let mut levels = q.levels;
    clip(&mut levels);
    let cb = build_codebook(&levels);
    let trial = |l: &[i32]| encoded_size(l, &dims, false, 0, 0, false, cul_minus1, true);
    let (zero_offset, indices) =
        choose_codebook_zero_offset(&cb.indices, cb.values.len(), &trial).unwrap();
    let (egk, _) = best_codebook_egk(&cb.values, zero_offset).unwrap();
    let codebook = Decision::Codebook {
        qp: q.qp,
        values: cb.values.clone(),
        zero_offset,
        egk,
        levels: indices.clone(),
    };
    if mode == 1 {
        return codebook;
    }
    let (uniform_qp, uniform_levels) = if dq_requested {
        let dq_opts = QuantizeOptions {
            dq_flag: true,
            qp,
            ..opts
        };
        let q = quantize_layer(&weights, &dims, &dq_opts).unwrap();
        let mut l = q.levels;
        clip(&mut l);
        (q.qp, l)
    } else {
        (q.qp, levels)
    };
    let bits = codebook_syntax_bits(&cb.values, zero_offset, egk).unwrap();
    let uni = |l: &[i32]| {
        encoded_size(
            l,
            &dims,
            dq_requested,
            scan_order,
            gpi,
            parent,
            cul_minus1,
            param_opt,
        )
    };
    let cbk = |l: &[i32]| {
        encoded_size(
            l, &dims, false, scan_order, gpi, parent, cul_minus1, param_opt,
        )
    };
    if codebook_mode2_decision(&uniform_levels, &indices, bits, &uni, &cbk) {
        codebook
    } else {
        Decision::Uniform {
            qp: uniform_qp,
            dq: dq_requested,
            levels: uniform_levels,
        }
    }
}

/// What the vectors say the reference decided.
fn reference_decision(case: &Case, tensor: &str, hls: &[Value]) -> Decision {
    let ei = &case.config["encoder_internal"];
    let qp = ei["qp"][tensor].as_i64().expect("qp") as i32;
    let levels = case.read_i32("levels", tensor);
    if ei["approx_method"][tensor] == "codebook" {
        let unit = hls
            .iter()
            .find(|u| u["topology_elem_id"] == tensor && u["codebook_present_flag"] == 1)
            .expect("codebook NDU");
        Decision::Codebook {
            qp,
            values: unit["codebook__"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v.as_i64().expect("int") as i32)
                .collect(),
            zero_offset: unit["CbZeroOffset__"].as_u64().expect("offset") as u32,
            egk: unit["codebook_egk__"].as_u64().expect("egk") as u32,
            levels,
        }
    } else {
        Decision::Uniform {
            qp,
            dq: ei["dq_flag"][tensor] == 1,
            levels,
        }
    }
}

#[test]
fn codebook_decisions_match_reference() {
    let mut names = cases_with_prefix("t_codebook_");
    names.push("nn_tiny_codebook".to_owned());
    names.push("c_codebook_mode1_forced".to_owned());
    let mut checked = 0;
    let mut codebooks = 0;
    let mut failures = Vec::new();
    for name in names {
        let case = Case::load(&name);
        let hls: Vec<Value> = serde_json::from_str(
            &std::fs::read_to_string(case.dir.join("hls.json")).expect("hls.json"),
        )
        .expect("hls parses");
        for tensor in case.tensor_names() {
            let expected = reference_decision(&case, &tensor, &hls);
            let got = approximate(&case, &tensor);
            if matches!(expected, Decision::Codebook { .. }) {
                codebooks += 1;
            }
            if got != expected {
                failures.push(format!(
                    "{name}[{tensor}]:\n  got      {got:?}\n  expected {expected:?}"
                ));
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 20 && codebooks >= 7,
        "checked {checked}, codebooks {codebooks}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

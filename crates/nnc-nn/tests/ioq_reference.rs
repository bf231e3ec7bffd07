//! Inference-optimised quantization against the reference: `conformance/ioq/cases` holds models
//! the reference coded with `nnc.compress(..., ioq=True)` and a model executer whose score is
//! the share of values reconstructed within a tolerance of the original
//! (`conformance/ioq/gen_ioq.py`). The same score here must lead to the same QPs, the same
//! number of evaluations and the same bytes. `NNC_IOQ_VECTORS=DIR` replays another set.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::{Path, PathBuf};

use nnc_nn::io::read_tensors;
use nnc_tensor::encode::{encode_inference_optimised, BlockIdAndParamType, EncodeInput};
use nnc_tensor::{EncodeOptions, Tensor, TensorData};
use serde_json::Value;

fn cases() -> Vec<PathBuf> {
    let root = std::env::var_os("NNC_IOQ_VECTORS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/ioq/cases"),
        PathBuf::from,
    );
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("ioq cases")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("config.json").exists())
        .collect();
    dirs.sort();
    dirs
}

/// Float elements as f64; integer tensors have none (the score counts floats only).
fn as_f64(t: &Tensor) -> Vec<f64> {
    match &t.data {
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        _ => Vec::new(),
    }
}

/// The reference's `nnc.compress` arguments of a case.
fn options(args: &Value) -> EncodeOptions {
    let mut o = EncodeOptions::compress_defaults();
    // The reference carries no metadata (ours would record the order its blocks change).
    o.carry_dtypes = false;
    let int = |k: &str| args.get(k).and_then(Value::as_i64);
    let flag = |k: &str| args.get(k).and_then(Value::as_bool);
    if let Some(qp) = int("qp") {
        o.qp = qp as i32;
    }
    if let Some(d) = int("qp_density") {
        o.qp_density = d as u8;
    }
    if let Some(s) = int("scan_order") {
        o.scan_order = s as u8;
    }
    if let Some(l) = args.get("lambda_scale").and_then(Value::as_f64) {
        o.lambda_scale = l as f32;
    }
    o.use_dq = flag("use_dq").unwrap_or(o.use_dq);
    o.opt_qp = flag("opt_qp").unwrap_or(o.opt_qp);
    o.param_opt = flag("param_opt").unwrap_or(o.param_opt);
    o.row_skipping = flag("row_skipping").unwrap_or(o.row_skipping);
    o
}

fn blocks(args: &Value) -> Option<BlockIdAndParamType> {
    let spec = args.get("block_id_and_param_type")?;
    let mut b = BlockIdAndParamType::default();
    for (name, id) in spec["block_identifier"].as_object().expect("ids") {
        b.block_identifier
            .insert(name.clone(), id.as_str().map(str::to_string));
    }
    for (name, t) in spec["parameter_type"].as_object().expect("types") {
        b.parameter_type
            .insert(name.clone(), t.as_str().expect("type").to_string());
    }
    Some(b)
}

#[test]
fn ioq_chooses_the_reference_qps_and_writes_its_bytes() {
    let dirs = cases();
    assert!(!dirs.is_empty());
    for dir in dirs {
        let name = dir
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let config: Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("config"))
                .expect("json");
        let model = read_tensors(&dir.join("input.npz"), "0").expect("input");
        let tolerance = config["tolerance"].as_f64().expect("tolerance");
        let originals: HashMap<&str, Vec<f64>> =
            model.iter().map(|t| (t.name.as_str(), as_f64(t))).collect();
        let total: usize = originals.values().map(Vec::len).sum();
        let score = |rec: &[Tensor]| -> Result<f64, Infallible> {
            let mut hits = 0usize;
            for t in rec {
                let orig = &originals[t.name.as_str()];
                hits += as_f64(t)
                    .iter()
                    .zip(orig)
                    .filter(|(r, o)| (*r - *o).abs() <= tolerance)
                    .count();
            }
            Ok(hits as f64 / total as f64)
        };
        let args = &config["encoder_args"];
        let mut input = EncodeInput::from_tensors(&model).expect("input");
        if let Some(b) = blocks(args) {
            assert!(input.apply_blocks(&b), "{name}: blocks");
        }
        let done = encode_inference_optimised(&input, &options(args), score).expect(&name);
        // The reference lists a QP for integer tensors too, which none uses.
        let mut expected: BTreeMap<String, i32> =
            serde_json::from_value(config["qp"].clone()).expect("qps");
        expected.retain(|k, _| {
            model
                .iter()
                .any(|t| &t.name == k && matches!(t.data, TensorData::F32(_)))
        });
        assert_eq!(done.qps, expected, "{name}: qps");
        assert_eq!(
            done.evaluations as u64,
            config["evaluations"].as_u64().expect("evaluations"),
            "{name}: evaluations"
        );
        let reference = std::fs::read(dir.join("bitstream.nnc")).expect("bitstream");
        assert!(done.stream.bytes == reference, "{name}: bytes differ");
    }
}

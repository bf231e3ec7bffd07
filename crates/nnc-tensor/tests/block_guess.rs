//! The block structure guessed for batch-norm folding against the reference's guesses on
//! torchvision architectures (`conformance/block_guess/torchvision.json`, written by its
//! `gen_guesses.py` with NNCodec 2.1.3): the same blocks and types from the names and shapes,
//! and the same verdict of the reference's check when applied.

use std::collections::BTreeMap;
use std::path::Path;

use nnc_tensor::encode::{
    BlockIdAndParamType, EncodeInput, ModelParameter, ParameterData, ParameterType,
    TOPOLOGY_PYTORCH,
};
use nnc_tensor::DType;
use serde_json::Value;

fn cases() -> serde_json::Map<String, Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/block_guess/torchvision.json");
    let text = std::fs::read_to_string(&path).expect("fixture");
    match serde_json::from_str(&text).expect("json") {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn reference_guess(v: &Value) -> BlockIdAndParamType {
    let map = |key: &str| v[key].as_object().expect(key).clone();
    BlockIdAndParamType {
        block_identifier: map("block_identifier")
            .into_iter()
            .map(|(k, b)| (k, b.as_str().map(str::to_string)))
            .collect(),
        parameter_type: map("parameter_type")
            .into_iter()
            .map(|(k, t)| (k, t.as_str().expect("type").to_string()))
            .collect(),
    }
}

/// Names and shapes as the state dict has them, without the step counters (which
/// `EncodeInput::from_state_dict` does not code either).
fn coded_tensors(case: &Value) -> Vec<(String, Vec<usize>)> {
    case["tensors"]
        .as_array()
        .expect("tensors")
        .iter()
        .map(|t| {
            let name = t[0].as_str().expect("name").to_string();
            let shape = t[1]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_u64().expect("dim") as usize)
                .collect();
            (name, shape)
        })
        .filter(|(name, _)| !name.ends_with("num_batches_tracked"))
        .collect()
}

/// An input with the model's names and shapes and no elements: applying blocks reads only
/// those.
fn shapes_only_input(tensors: &[(String, Vec<usize>)]) -> EncodeInput<'static> {
    EncodeInput {
        parameters: tensors
            .iter()
            .enumerate()
            .map(|(i, (name, shape))| ModelParameter {
                name: name.clone(),
                dims: if shape.is_empty() {
                    vec![1]
                } else {
                    shape.clone()
                },
                data: ParameterData::F32(Vec::new().into()),
                parameter_type: ParameterType::for_pytorch_tensor(name, shape.len()),
                parameter_index: i as u64,
                original_dtype: DType::F32,
                original_shape: shape.clone(),
            })
            .collect(),
        topology_storage_format: TOPOLOGY_PYTORCH,
        ..Default::default()
    }
}

#[test]
fn guesses_match_the_reference_on_torchvision_models() {
    let cases = cases();
    assert!(cases.len() >= 6);
    let mut verdicts = BTreeMap::new();
    for (arch, case) in &cases {
        let tensors = coded_tensors(case);
        let guessed = BlockIdAndParamType::guess_pytorch(
            tensors.iter().map(|(n, s)| (n.as_str(), s.as_slice())),
        )
        .unwrap_or_else(|e| panic!("{arch}: {e}"));
        let want = reference_guess(&case["guess"]);
        assert_eq!(guessed.block_identifier, want.block_identifier, "{arch}");
        assert_eq!(guessed.parameter_type, want.parameter_type, "{arch}");

        let mut input = shapes_only_input(&tensors);
        assert_eq!(
            BlockIdAndParamType::guess_for_state_dict(&input).expect("guess"),
            guessed,
            "{arch}"
        );
        let passes = input.apply_blocks(&guessed);
        assert_eq!(Some(passes), case["check_passes"].as_bool(), "{arch}");
        verdicts.insert(arch.as_str(), passes);
    }
    // The fixture covers both verdicts: DenseNet's pre-activation BatchNorms pair with weights
    // of other sizes and fail the check.
    assert_eq!(verdicts.get("densenet121"), Some(&false));
    assert_eq!(verdicts.get("resnet18"), Some(&true));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any names and shapes: the guess returns blocks or an error, never panics; blocks it
    /// returns name only the given tensors, and applying them (which runs the reference's
    /// check) does not panic either.
    #[test]
    fn the_guess_takes_any_state_dict(
        tensors in proptest::collection::vec(
            (0usize..4, 0usize..7, proptest::collection::vec(1usize..5, 0..4)),
            0..12,
        )
    ) {
        const MODULES: [&str; 4] = ["conv", "bn", "layer.0.bn1", "fc"];
        const ENDS: [&str; 7] =
            ["weight", "bias", "running_mean", "running_var", "weight_scaling", "gamma", "x"];
        let mut named: Vec<(String, Vec<usize>)> = Vec::new();
        for (m, e, shape) in tensors {
            let name = format!("{}.{}", MODULES[m], ENDS[e]);
            if named.iter().all(|(n, _)| *n != name) {
                named.push((name, shape));
            }
        }
        let guess = BlockIdAndParamType::guess_pytorch(
            named.iter().map(|(n, s)| (n.as_str(), s.as_slice())),
        );
        if let Ok(guess) = guess {
            for name in guess.block_identifier.keys() {
                proptest::prop_assert!(named.iter().any(|(n, _)| n == name));
            }
            let _ = shapes_only_input(&named).apply_blocks(&guess);
        }
    }
}

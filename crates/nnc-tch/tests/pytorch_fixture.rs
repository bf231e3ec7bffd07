//! A state dict saved by Python (`torch.save(model.state_dict())`, torch 2.13.0, made by
//! `fixtures/make_tiny_net.py`) is encoded with NNC and decoded into a VarStore of the same
//! architecture built with tch::nn; the decoded model's output stays close to PyTorch's.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic as test failures

use std::path::PathBuf;

use nnc_tch::{from_nnc, load_into_varstore};
use nnc_tensor::{EncodeInput, EncodeOptions};
use tch::{nn, Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `TinyNet` of make_tiny_net.py: conv 3→8 (3×3, padding 1), batch norm, ReLU, 2×2 max pool,
/// linear 128→10.
struct TinyNet {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    fc: nn::Linear,
}

impl TinyNet {
    fn new(vs: &nn::VarStore) -> Self {
        let root = vs.root();
        let conv_cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        TinyNet {
            conv: nn::conv2d(&root / "conv", 3, 8, 3, conv_cfg),
            bn: nn::batch_norm2d(&root / "bn", 8, Default::default()),
            fc: nn::linear(&root / "fc", 8 * 4 * 4, 10, Default::default()),
        }
    }

    fn eval(&self, x: &Tensor) -> Tensor {
        tch::no_grad(|| {
            x.apply(&self.conv)
                .apply_t(&self.bn, false)
                .relu()
                .max_pool2d_default(2)
                .flatten(1, -1)
                .apply(&self.fc)
        })
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// The fixture's input batch and PyTorch's eval-mode output for it.
fn io() -> (Tensor, Tensor) {
    let io = nnc_nn::io::read_pytorch(&fixture("tiny_net_io.pt")).unwrap();
    let get = |name: &str| from_nnc(io.iter().find(|t| t.name == name).unwrap()).unwrap();
    (get("x"), get("y"))
}

#[test]
fn torch_saved_state_dict_decodes_into_a_varstore() {
    let state_dict = nnc_nn::io::read_pytorch(&fixture("tiny_net.pt")).unwrap();
    let names: Vec<&str> = state_dict.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "conv.weight",
            "conv.bias",
            "bn.weight",
            "bn.bias",
            "bn.running_mean",
            "bn.running_var",
            "bn.num_batches_tracked",
            "fc.weight",
            "fc.bias"
        ]
    );

    let qp = -38;
    let input = EncodeInput::from_state_dict(&state_dict).unwrap();
    let bytes = nnc_tensor::encode(&input, &EncodeOptions::default().with_qp(qp))
        .unwrap()
        .bytes;

    tch::manual_seed(0);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = TinyNet::new(&vs);
    let before = vs.variables()["fc.weight"].copy();
    let summary = load_into_varstore(&bytes, &mut vs).unwrap();
    assert_eq!(
        summary.updated,
        [
            "bn.bias",
            "bn.running_mean",
            "bn.running_var",
            "bn.weight",
            "conv.bias",
            "conv.weight",
            "fc.bias",
            "fc.weight"
        ]
    );
    // tch's BatchNorm has no step counter: PyTorch's is added as a non-trainable variable.
    assert_eq!(summary.inserted, ["bn.num_batches_tracked"]);
    let steps = &vs.variables()["bn.num_batches_tracked"];
    assert_eq!((steps.kind(), steps.size()), (Kind::Int64, vec![]));
    assert_eq!(steps.int64_value(&[]), 5, "five training batches, exact");
    assert!(vs
        .trainable_variables()
        .iter()
        .all(|t| t.kind() == Kind::Float));
    assert!(summary.untouched.is_empty(), "{:?}", summary.untouched);

    // Every variable is close to the value PyTorch saved (Δ = 2^(qp/4) for weights, finer for
    // the 1-D parameters), and really changed from the random initialisation.
    let vars = vs.variables();
    let step = f64::from(4 + (qp & 3)) * 2f64.powi((qp >> 2) - 2);
    for t in state_dict
        .iter()
        .filter(|t| t.name != "bn.num_batches_tracked")
    {
        let var = &vars[&t.name];
        let saved = from_nnc(t).unwrap();
        assert_eq!(var.size(), saved.size(), "{}", t.name);
        assert_eq!(var.kind(), Kind::Float, "{}", t.name);
        let d = max_abs_diff(var, &saved);
        assert!(d <= 2.0 * step, "{}: {d}", t.name);
    }
    assert!(max_abs_diff(&vars["fc.weight"], &before) > 0.01);

    // The decoded model computes what PyTorch computed, up to the quantization error.
    let (x, y) = io();
    let out = net.eval(&x);
    assert_eq!(out.size(), [4, 10]);
    let scale = y.abs().max().double_value(&[]);
    let d = max_abs_diff(&out, &y);
    assert!(d <= 0.02 * scale, "output differs by {d} (scale {scale})");
}

#[test]
fn the_rust_architecture_matches_pytorch_exactly_on_the_original_weights() {
    // Guards the previous test: with unquantized weights copied in, tch::nn reproduces PyTorch.
    let state_dict = nnc_nn::io::read_pytorch(&fixture("tiny_net.pt")).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = TinyNet::new(&vs);
    let mut vars = vs.variables();
    for t in state_dict
        .iter()
        .filter(|t| t.name != "bn.num_batches_tracked")
    {
        let var = vars.get_mut(&t.name).unwrap();
        tch::no_grad(|| var.copy_(&from_nnc(t).unwrap()));
    }
    let (x, y) = io();
    let d = max_abs_diff(&net.eval(&x), &y);
    assert!(d < 1e-5, "{d}");
}

//! FedBNF, the reference's FL with `bnf`: a client folds every batch norm into its layer's
//! scaling and bias before taking the difference it codes, and blends what it receives back
//! into batch norms with its own statistics (`NNClient.fold_bn` / `unfold_bn`). The server
//! averages folded differences and never sees a batch norm.
//!
//! Messages then carry a layout other than the model's: the folded one. The reference writes
//! it in two orders (quirks.md#fedbnf-orders): upstream, the model's other tensors in model
//! order followed by each block's new bias and scaling (the order `fold_bn` leaves in a
//! dictionary); downstream, the model's order with each batch norm's weight replaced by its
//! block's scaling and its bias by the block's bias (the order of `mdl_info["bnf_map"]`).
//!
//! This module knows layouts and the folding arithmetic, nothing of coding.

use std::collections::{HashMap, HashSet};

use nnc_tensor::encode::bnf::{fold_into_bias, norm_gain, scale_by_gain};
use nnc_tensor::encode::BlockIdAndParamType;
use nnc_tensor::metadata::FoldedNorm;

use crate::error::{FlError, Result};
use crate::layout::{Layout, TensorSpec};
use crate::message::Decoded;

/// The weight of the received value in a client's blended batch norm (the reference's
/// `unfold_bn(momentum=0.3)`); the client's own last value keeps the rest.
const MOMENTUM: f32 = 0.3;
/// `1 − MOMENTUM` as the reference computes it (the float32 nearest 0.7).
const KEEP: f32 = 0.7;

/// One batch norm and where its tensors are.
#[derive(Clone, Debug)]
struct Fold {
    norm: FoldedNorm,
    /// Model-layout indices of gamma, beta, running mean and running variance.
    gamma: usize,
    beta: usize,
    mean: usize,
    var: usize,
    /// Upstream-layout indices of the folded scaling and bias.
    scaling_up: usize,
    bias_up: usize,
}

/// The folding of one model layout and the two message layouts it implies.
#[derive(Clone, Debug)]
pub(crate) struct Folding {
    folds: Vec<Fold>,
    upstream: Layout,
    downstream: Layout,
    /// Per upstream tensor, the model tensor it copies (`None`: a created scaling or bias).
    up_from_model: Vec<Option<usize>>,
    /// Per downstream tensor, its upstream index.
    down_to_up: Vec<usize>,
}

impl Folding {
    /// The foldings of `model`'s batch norms, found as the reference's model pipeline finds
    /// them ([`BlockIdAndParamType::guess_pytorch`]: a module with `running_mean` and
    /// `running_var` is a BatchNorm, folded into the weight before it).
    pub(crate) fn new(model: &Layout) -> Result<Self> {
        let options = |e: nnc_tensor::Error| FlError::Options(format!("bnf: {e}"));
        let specs = model.specs();
        let tensors = || specs.iter().map(|s| (s.name.as_str(), s.shape.as_slice()));
        let blocks = BlockIdAndParamType::guess_pytorch(tensors()).map_err(options)?;
        let norms = blocks.batch_norm_folds(tensors()).map_err(options)?;
        if norms.is_empty() {
            return Err(FlError::Options(
                "bnf: the layout has no batch norm to fold (a BatchNorm module is found by its \
                 running_mean and running_var)"
                    .into(),
            ));
        }
        let index = |name: &str| {
            model.index_of(name).ok_or_else(|| {
                FlError::Internal(format!("bnf: folding names {name:?}, not in the layout"))
            })
        };
        let folded_away: HashSet<&str> = norms
            .iter()
            .flat_map(|n| [&n.gamma, &n.beta, &n.mean, &n.var])
            .map(String::as_str)
            .collect();
        let mut up_specs = Vec::new();
        let mut up_from_model = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            if !folded_away.contains(s.name.as_str()) {
                up_specs.push(s.clone());
                up_from_model.push(Some(i));
            }
        }
        let mut folds = Vec::with_capacity(norms.len());
        for norm in norms {
            let mean = index(&norm.mean)?;
            let channels = specs[mean].shape.clone();
            // The upstream index of a block's bias or scaling: the layer's own, or a new tensor.
            let mut place = |name: &str, given: bool| -> Result<usize> {
                if given {
                    let m = index(name)?;
                    return up_from_model
                        .iter()
                        .position(|&u| u == Some(m))
                        .ok_or_else(|| {
                            FlError::Internal(format!("bnf: {name:?} is both folded and kept"))
                        });
                }
                up_specs.push(TensorSpec::new(name, channels.clone()));
                up_from_model.push(None);
                Ok(up_specs.len() - 1)
            };
            // fold_bn adds the bias first, then the scaling.
            let bias_up = place(&norm.bias, norm.bias_given)?;
            let scaling_up = place(&norm.scaling, norm.scaling_given)?;
            folds.push(Fold {
                gamma: index(&norm.gamma)?,
                beta: index(&norm.beta)?,
                mean,
                var: index(&norm.var)?,
                scaling_up,
                bias_up,
                norm,
            });
        }
        let upstream = Layout::new(up_specs)?;

        // bnf_map: each batch norm's weight becomes the scaling, its bias the bias, its
        // statistics go; a name already placed keeps its first place.
        let mut down_names: Vec<&str> = Vec::new();
        let mut placed: HashSet<&str> = HashSet::new();
        for (i, s) in specs.iter().enumerate() {
            let name = folds
                .iter()
                .find_map(|f| match i {
                    _ if i == f.gamma => Some(Some(f.norm.scaling.as_str())),
                    _ if i == f.beta => Some(Some(f.norm.bias.as_str())),
                    _ if i == f.mean || i == f.var => Some(None),
                    _ => None,
                })
                .unwrap_or(Some(s.name.as_str()));
            if let Some(n) = name.filter(|n| placed.insert(n)) {
                down_names.push(n);
            }
        }
        let up_index: HashMap<&str, usize> = (upstream.specs().iter().enumerate())
            .map(|(u, s)| (s.name.as_str(), u))
            .collect();
        let mut down_specs = Vec::with_capacity(down_names.len());
        let mut down_to_up = Vec::with_capacity(down_names.len());
        for name in down_names {
            let up = *up_index.get(name).ok_or_else(|| {
                FlError::Internal(format!("bnf: {name:?} is in one message layout only"))
            })?;
            down_specs.push(upstream.specs()[up].clone());
            down_to_up.push(up);
        }
        if down_specs.len() != upstream.specs().len() {
            return Err(FlError::Internal(
                "bnf: the two message layouts hold different tensors".into(),
            ));
        }
        let downstream = Layout::new(down_specs)?;
        Ok(Folding {
            folds,
            upstream,
            downstream,
            up_from_model,
            down_to_up,
        })
    }

    /// The layout of the clients' messages.
    pub(crate) fn upstream(&self) -> &Layout {
        &self.upstream
    }

    /// The layout of the server's messages.
    pub(crate) fn downstream(&self) -> &Layout {
        &self.downstream
    }

    /// Number of values [`Folding::local_norms`] keeps.
    pub(crate) fn local_norms_len(&self, model: &Layout) -> usize {
        self.folds
            .iter()
            .map(|f| 4 * model.range(f.mean).len())
            .sum()
    }

    /// `values` (over `model`) with every batch norm folded, over the upstream layout
    /// (`fold_bn`, in float32).
    pub(crate) fn fold(&self, model: &Layout, values: &[f32]) -> Vec<f32> {
        let up = &self.upstream;
        let mut out = vec![0f32; up.num_values()];
        for (u, m) in self.up_from_model.iter().enumerate() {
            if let Some(m) = m {
                out[up.range(u)].copy_from_slice(&values[model.range(*m)]);
            }
        }
        let of = |i: usize| &values[model.range(i)];
        for f in &self.folds {
            let gain = norm_gain(of(f.gamma), of(f.var), f.norm.eps);
            let scaling = &mut out[up.range(f.scaling_up)];
            if !f.norm.scaling_given {
                scaling.fill(1.0);
            }
            scale_by_gain(scaling, &gain);
            // A created bias starts at 0 (copied ones already hold the layer's bias).
            fold_into_bias(&mut out[up.range(f.bias_up)], &gain, of(f.mean), of(f.beta));
        }
        out
    }

    /// Upstream-ordered values in downstream order.
    pub(crate) fn to_downstream(&self, up_values: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(up_values.len());
        for &u in &self.down_to_up {
            out.extend_from_slice(&up_values[self.upstream.range(u)]);
        }
        out
    }

    /// Downstream-ordered values in upstream order.
    pub(crate) fn to_upstream(&self, down_values: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; self.upstream.num_values()];
        for (d, &u) in self.down_to_up.iter().enumerate() {
            out[self.upstream.range(u)].copy_from_slice(&down_values[self.downstream.range(d)]);
        }
        out
    }

    /// A downstream message in upstream order.
    pub(crate) fn message_to_upstream(&self, down: &Decoded) -> Decoded {
        Decoded {
            values: self.to_upstream(&down.values),
            wide: down
                .wide
                .iter()
                .map(|(d, v)| (self.down_to_up[*d], v.clone()))
                .collect(),
        }
    }

    /// An upstream message in downstream order.
    pub(crate) fn message_to_downstream(&self, up: &Decoded) -> Decoded {
        Decoded {
            values: self.to_downstream(&up.values),
            wide: (self.down_to_up.iter().enumerate())
                .filter_map(|(d, &u)| Some((d, up.wide_of(u)?.to_vec())))
                .collect(),
        }
    }

    /// The batch-norm tensors of `values` (over `model`), which a client keeps from its last
    /// local model to blend the next global model with: per batch norm, gamma, beta, mean and
    /// variance.
    pub(crate) fn local_norms(&self, model: &Layout, values: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.local_norms_len(model));
        for f in &self.folds {
            for i in [f.gamma, f.beta, f.mean, f.var] {
                out.extend_from_slice(&values[model.range(i)]);
            }
        }
        out
    }

    /// The model a client trains from, given the folded global model (upstream order) and the
    /// batch norms of its last local model (`NNClient.unfold_bn`): every other tensor as
    /// received (a layer's own bias too, although the received bias already holds it, as the
    /// reference's: quirks.md#fedbnf-layer-bias), and per batch norm, with `m = 0.3`,
    ///
    /// - `beta  = (1 − m)·beta_local + m·(bias + scaling·mean_local)`,
    /// - `gamma = (1 − m)·gamma_local + m·scaling·sqrt(var_local + eps)`,
    /// - mean and variance the local ones,
    ///
    /// in float32 and in that order of operations.
    pub(crate) fn unfold_blended(&self, model: &Layout, folded: &[f32], local: &[f32]) -> Vec<f32> {
        let up = &self.upstream;
        let mut out = vec![0f32; model.num_values()];
        for (u, m) in self.up_from_model.iter().enumerate() {
            if let Some(m) = m {
                out[model.range(*m)].copy_from_slice(&folded[up.range(u)]);
            }
        }
        let mut at = 0;
        for f in &self.folds {
            let n = model.range(f.mean).len();
            let [gamma_l, beta_l, mean_l, var_l] =
                std::array::from_fn(|k| &local[at + k * n..at + (k + 1) * n]);
            at += 4 * n;
            let scaling = &folded[up.range(f.scaling_up)];
            let bias = &folded[up.range(f.bias_up)];
            let beta: Vec<f32> = (0..n)
                .map(|c| KEEP * beta_l[c] + MOMENTUM * (bias[c] + scaling[c] * mean_l[c]))
                .collect();
            let gamma: Vec<f32> = (0..n)
                .map(|c| KEEP * gamma_l[c] + MOMENTUM * scaling[c] * (var_l[c] + f.norm.eps).sqrt())
                .collect();
            out[model.range(f.beta)].copy_from_slice(&beta);
            out[model.range(f.gamma)].copy_from_slice(&gamma);
            out[model.range(f.mean)].copy_from_slice(mean_l);
            out[model.range(f.var)].copy_from_slice(var_l);
        }
        out
    }

    /// The folded global model (downstream order) as a model with batch norms of the same
    /// effect, for evaluation: gamma the scaling, beta the bias, mean 0, variance `1 − eps`,
    /// the layer's own scaling 1 and bias 0 (as nnc's decoder unfolds, quirks.md#bnf-unfold).
    pub(crate) fn unfold_exact(&self, model: &Layout, folded_down: &[f32]) -> Vec<f32> {
        let folded = self.to_upstream(folded_down);
        let up = &self.upstream;
        let mut out = vec![0f32; model.num_values()];
        for (u, m) in self.up_from_model.iter().enumerate() {
            if let Some(m) = m {
                out[model.range(*m)].copy_from_slice(&folded[up.range(u)]);
            }
        }
        for f in &self.folds {
            out[model.range(f.gamma)].copy_from_slice(&folded[up.range(f.scaling_up)]);
            out[model.range(f.beta)].copy_from_slice(&folded[up.range(f.bias_up)]);
            let shape = &model.specs()[f.mean].shape;
            for t in f.norm.constants(shape) {
                if let (Some(i), nnc_tensor::TensorData::F32(v)) =
                    (model.index_of(&t.name), &t.data)
                {
                    out[model.range(i)].copy_from_slice(v);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference sessions' model (conformance/gen_fl.py BNF_TENSORS).
    pub(crate) fn model() -> Layout {
        let t = |n: &str, s: &[usize]| TensorSpec::new(n, s.to_vec());
        Layout::new(vec![
            t("conv1.weight", &[8, 3, 3, 3]),
            t("bn1.weight", &[8]),
            t("bn1.bias", &[8]),
            t("bn1.running_mean", &[8]),
            t("bn1.running_var", &[8]),
            t("conv2.weight", &[6, 8, 3, 3]),
            t("conv2.bias", &[6]),
            t("bn2.weight", &[6]),
            t("bn2.bias", &[6]),
            t("bn2.running_mean", &[6]),
            t("bn2.running_var", &[6]),
            t("fc.weight", &[10, 24]),
            t("fc.bias", &[10]),
        ])
        .unwrap()
    }

    fn values(layout: &Layout, seed: u32) -> Vec<f32> {
        let mut v: Vec<f32> = (0..layout.num_values() as u32)
            .map(|i| {
                let x = i
                    .wrapping_mul(2654435761)
                    .wrapping_add(seed.wrapping_mul(40503))
                    % 1000;
                x as f32 / 1000.0 - 0.5
            })
            .collect();
        for (i, s) in layout.specs().iter().enumerate() {
            if s.name.ends_with("running_var") {
                v[layout.range(i)].iter_mut().for_each(|x| *x += 1.0);
            }
        }
        v
    }

    fn names(layout: &Layout) -> Vec<&str> {
        layout.specs().iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn message_layouts_are_the_references() {
        let f = Folding::new(&model()).unwrap();
        assert_eq!(
            names(f.upstream()),
            [
                "conv1.weight",
                "conv2.weight",
                "conv2.bias",
                "fc.weight",
                "fc.bias",
                "conv1.weight.bias",
                "conv1.weight_scaling",
                "conv2.weight_scaling"
            ]
        );
        assert_eq!(
            names(f.downstream()),
            [
                "conv1.weight",
                "conv1.weight_scaling",
                "conv1.weight.bias",
                "conv2.weight",
                "conv2.bias",
                "conv2.weight_scaling",
                "fc.weight",
                "fc.bias"
            ]
        );
        let up = values(f.upstream(), 3);
        assert_eq!(f.to_upstream(&f.to_downstream(&up)), up);
    }

    /// Each channel's `gamma·(y + b − mean)/sqrt(var + eps) + beta` for a pre-bias output y.
    fn norm_outputs(layout: &Layout, v: &[f32], bn: &str, bias: Option<&str>, y: f32) -> Vec<f32> {
        let get = |n: &str| &v[layout.range(layout.index_of(n).unwrap())];
        let (g, b, m, var) = (
            get(&format!("{bn}.weight")),
            get(&format!("{bn}.bias")),
            get(&format!("{bn}.running_mean")),
            get(&format!("{bn}.running_var")),
        );
        (0..g.len())
            .map(|c| {
                let lb = bias.map_or(0.0, |n| get(n)[c]);
                g[c] * (y + lb - m[c]) / (var[c] + 1e-5).sqrt() + b[c]
            })
            .collect()
    }

    #[test]
    fn the_exact_unfolding_computes_what_the_model_computed() {
        let m = model();
        let f = Folding::new(&m).unwrap();
        let v = values(&m, 1);
        let back = f.unfold_exact(&m, &f.to_downstream(&f.fold(&m, &v)));
        for y in [-1.5f32, 0.0, 0.7] {
            for (bn, bias) in [("bn1", None), ("bn2", Some("conv2.bias"))] {
                let want = norm_outputs(&m, &v, bn, bias, y);
                let got = norm_outputs(&m, &back, bn, bias, y);
                for (a, b) in want.iter().zip(&got) {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + a.abs()),
                        "{bn} at {y}: {a} vs {b}"
                    );
                }
            }
        }
        // The layer's own bias went into the folded bias.
        let bias = m.range(m.index_of("conv2.bias").unwrap());
        assert!(back[bias].iter().all(|&b| b == 0.0));
    }

    #[test]
    fn blending_a_models_own_folding_gives_it_back() {
        // Received folded = the local model folded: the blend is the local batch norm again
        // (up to rounding), whatever the momentum, where the layer has no bias of its own.
        let m = model();
        let f = Folding::new(&m).unwrap();
        let v = values(&m, 2);
        let folded = f.fold(&m, &v);
        let blended = f.unfold_blended(&m, &folded, &f.local_norms(&m, &v));
        for (i, s) in m.specs().iter().enumerate() {
            if s.name.starts_with("bn2") || s.name == "conv2.bias" {
                continue;
            }
            for (a, b) in v[m.range(i)].iter().zip(&blended[m.range(i)]) {
                assert!((a - b).abs() <= 1e-5, "{}: {a} vs {b}", s.name);
            }
        }
        // A layer bias takes the folded bias, which holds it already (the reference's double
        // count, quirks.md#fedbnf-layer-bias).
        let at = |l: &Layout, n: &str| l.range(l.index_of(n).unwrap());
        assert_eq!(
            blended[at(&m, "conv2.bias")],
            folded[at(f.upstream(), "conv2.bias")]
        );
    }

    #[test]
    fn a_layers_own_scaling_is_folded_in_place() {
        let t = |n: &str, s: &[usize]| TensorSpec::new(n, s.to_vec());
        let m = Layout::new(vec![
            t("conv.weight", &[3, 2]),
            t("conv.weight_scaling", &[3]),
            t("bn.weight", &[3]),
            t("bn.bias", &[3]),
            t("bn.running_mean", &[3]),
            t("bn.running_var", &[3]),
        ])
        .unwrap();
        let f = Folding::new(&m).unwrap();
        let want = ["conv.weight", "conv.weight_scaling", "conv.weight.bias"];
        assert_eq!(names(f.upstream()), want);
        assert_eq!(names(f.downstream()), want);
        let v = values(&m, 4);
        let folded = f.fold(&m, &v);
        let get = |n: &str| &v[m.range(m.index_of(n).unwrap())];
        let gain = norm_gain(get("bn.weight"), get("bn.running_var"), 1e-5);
        for c in 0..3 {
            assert_eq!(folded[6 + c], get("conv.weight_scaling")[c] * gain[c]);
        }
        // Unfolded exactly, the layer's own scaling is 1 and gamma carries it.
        let back = f.unfold_exact(&m, &f.to_downstream(&folded));
        assert!(back[m.range(1)].iter().all(|&x| x == 1.0));
        assert_eq!(back[m.range(2)], folded[6..9]);
    }

    #[test]
    fn a_layout_without_batch_norm_is_refused() {
        let plain = Layout::new(vec![
            TensorSpec::new("fc.weight", vec![4, 8]),
            TensorSpec::new("fc.bias", vec![4]),
        ])
        .unwrap();
        let e = Folding::new(&plain).unwrap_err();
        assert!(matches!(e, FlError::Options(_)) && e.to_string().contains("no batch norm"));
        // A batch norm whose length no weight before it has: the guess fails.
        let stray = Layout::new(vec![
            TensorSpec::new("conv.weight", vec![4, 3, 3, 3]),
            TensorSpec::new("bn.weight", vec![5]),
            TensorSpec::new("bn.bias", vec![5]),
            TensorSpec::new("bn.running_mean", vec![5]),
            TensorSpec::new("bn.running_var", vec![5]),
        ])
        .unwrap();
        assert!(matches!(Folding::new(&stray), Err(FlError::Options(_))));
    }
}

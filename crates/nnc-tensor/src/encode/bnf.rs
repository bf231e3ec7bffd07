//! Batch-norm folding (reference `fold_bn`, hls.md §6.3): BN parameters are folded into the
//! block's local scaling and bias, which are created when absent.
//!
//! The encoder folds its blocks here; the arithmetic ([`norm_gain`], [`scale_by_gain`],
//! [`fold_into_bias`]) and the list of foldings a block description implies
//! ([`BlockIdAndParamType::batch_norm_folds`]) are public for pipelines that fold outside the
//! encoder, such as federated learning's FedBNF.

use std::collections::HashMap;

use super::model::{BlockIdAndParamType, ParameterData};
use super::options::{EncodeOptions, ParameterType};
use super::work::{default_bias_name, scaling_name, Item, Work, WorkModel};
use crate::error::{Error, Result};
use crate::members::cpt;
use crate::metadata::FoldedNorm;

fn f32_values(w: &Work<'_>) -> Result<Vec<f32>> {
    match &w.values {
        ParameterData::F32(v) => Ok(v.to_vec()),
        ParameterData::I32(_) => Err(Error::InvalidArgument {
            what: format!("batch-norm tensor {:?} is integer", w.name),
        }),
    }
}

/// The per-channel gain of a batch norm, `gamma / sqrt(var + eps)` in float32 (the reference's
/// order of operations, so that folded values are its bits).
pub fn norm_gain(gamma: &[f32], var: &[f32], eps: f32) -> Vec<f32> {
    gamma
        .iter()
        .zip(var)
        .map(|(&gm, &v)| gm / (v + eps).sqrt())
        .collect()
}

/// A block's scaling after folding: `scaling · gain`, channel by channel.
pub fn scale_by_gain(scaling: &mut [f32], gain: &[f32]) {
    scaling.iter_mut().zip(gain).for_each(|(a, &g)| *a *= g);
}

/// A block's bias after folding: `(bias − mean) · gain + beta`, channel by channel, in float32.
pub fn fold_into_bias(bias: &mut [f32], gain: &[f32], mean: &[f32], beta: &[f32]) {
    for (((b, &g), &m), &bt) in bias.iter_mut().zip(gain).zip(mean).zip(beta) {
        *b = (*b - m) * g + bt;
    }
}

/// Folds every block's batch norm: `ls := ls·g`, `bias := (bias − mean)·g + beta` with
/// `g = gamma / sqrt(var + eps)`, all in float32; `eps` is 1e-3 for TensorFlow models, 1e-5 otherwise.
pub(super) fn fold_batch_norm(model: &mut WorkModel, opts: &EncodeOptions) -> Result<()> {
    // Codebook coding of synthesised members is a reference crash (quirks.md#bnf-codebook).
    if opts.codebook_mode != super::options::CodebookMode::Off {
        return Err(Error::InvalidArgument {
            what: "bnf cannot be combined with codebook approximation (the reference fails too)"
                .into(),
        });
    }
    let eps: f32 = if model.topology_storage_format == 4 {
        1e-3
    } else {
        1e-5
    };
    let qp_other = nnc_quant::qp_select::nonweight_qp(opts.qp, opts.qp_density, opts.nonweight_qp);
    for i in 0..model.items.len() {
        let Item::Block(block) = &model.items[i] else {
            continue;
        };
        if block.cpt & cpt::BN == 0 {
            continue;
        }
        let block = block.clone();
        let missing = || Error::InvalidArgument {
            what: format!("block {:?} has an incomplete batch norm", block.id),
        };
        let (beta, gamma, mean, var) = (
            block.bn_beta.clone().ok_or_else(missing)?,
            block.bn_gamma.clone().ok_or_else(missing)?,
            block.bn_mean.clone().ok_or_else(missing)?,
            block.bn_var.clone().ok_or_else(missing)?,
        );
        // A qp asked for a tensor the folding removes would be dropped unseen.
        if let Some(name) = [&beta, &gamma, &mean, &var]
            .into_iter()
            .find(|n| opts.qp_per_tensor.contains_key(n.as_str()))
        {
            return Err(Error::InvalidArgument {
                what: format!(
                    "qp_per_tensor names {name:?}, a batch-norm tensor that bnf folds into block \
                     {:?}: its values are coded in the block's scaling and bias, at the \
                     non-weight qp",
                    block.id
                ),
            });
        }
        let mean_w = model.get(&mean)?.clone();
        let dq_flag = mean_w.dq_flag;
        let mut new_cpt = block.cpt;
        let synthesise = |name: &str, value: f32, ptype: ParameterType| Work {
            name: name.to_string(),
            dims: mean_w.dims.clone(),
            values: vec![value; mean_w.values.len()].into(),
            ptype,
            index: None,
            qp: qp_other,
            dq_flag,
            scan_order: None,
            method: None,
            levels: Vec::new(),
        };
        if block.cpt & cpt::BI == 0 {
            model.params.insert(
                block.bias.clone(),
                synthesise(&block.bias, 0.0, ParameterType::Bias),
            );
            new_cpt |= cpt::BI;
        }
        if block.cpt & cpt::LS == 0 {
            model.params.insert(
                block.ls.clone(),
                synthesise(&block.ls, 1.0, ParameterType::WeightLs),
            );
            new_cpt |= cpt::LS;
        }
        let g = norm_gain(
            &f32_values(model.get(&gamma)?)?,
            &f32_values(model.get(&var)?)?,
            eps,
        );
        let mean_v = f32_values(&mean_w)?;
        let beta_v = f32_values(model.get(&beta)?)?;
        let n = g.len();
        if [mean_v.len(), beta_v.len()].iter().any(|&l| l != n) {
            return Err(Error::InvalidArgument {
                what: format!("block {:?}: batch-norm tensors differ in length", block.id),
            });
        }
        {
            let ls = model.get_mut(&block.ls)?;
            let mut v = f32_values(ls)?;
            if v.len() != n {
                return Err(Error::InvalidArgument {
                    what: format!(
                        "block {:?}: scaling length differs from batch norm",
                        block.id
                    ),
                });
            }
            scale_by_gain(&mut v, &g);
            ls.values = v.into();
        }
        {
            let bias = model.get_mut(&block.bias)?;
            let mut v = f32_values(bias)?;
            if v.len() != n {
                return Err(Error::InvalidArgument {
                    what: format!("block {:?}: bias length differs from batch norm", block.id),
                });
            }
            fold_into_bias(&mut v, &g, &mean_v, &beta_v);
            bias.values = v.into();
        }
        for name in [&gamma, &var, &mean, &beta] {
            model.params.remove(name);
            model.order.retain(|n| n != name);
        }
        for name in [&block.bias, &block.ls] {
            if !model.order.contains(name) {
                model.order.push(name.clone());
            }
        }
        model.folded.push(FoldedNorm {
            scaling: block.ls.clone(),
            scaling_given: block.cpt & cpt::LS != 0,
            bias: block.bias.clone(),
            bias_given: block.cpt & cpt::BI != 0,
            gamma,
            beta,
            mean,
            var,
            eps,
        });
        new_cpt &= !cpt::BN;
        if let Item::Block(b) = &mut model.items[i] {
            b.cpt = new_cpt;
        }
    }
    Ok(())
}

impl BlockIdAndParamType {
    /// The batch norms these blocks fold, for a PyTorch model with `tensors` (names and shapes
    /// in model order), each as the [`FoldedNorm`] the encoder records (eps 1e-5), in block
    /// order. A block's scaling is its `weight.ls` member or `<weight>_scaling`, its bias its
    /// `bias` member or `<weight>.bias`, as the reference names them.
    ///
    /// Fails with [`Error::InvalidArgument`] where the description fails the reference's check
    /// (which makes the reference drop the folding silently), where a batch norm lacks one of
    /// its four tensors, or where a name the folding would create is taken by another tensor.
    pub fn batch_norm_folds<'n>(
        &self,
        tensors: impl IntoIterator<Item = (&'n str, &'n [usize])>,
    ) -> Result<Vec<FoldedNorm>> {
        let tensors: Vec<(&str, &[usize])> = tensors.into_iter().collect();
        let dims: HashMap<&str, &[usize]> = tensors.iter().copied().collect();
        let invalid = |what: String| Error::InvalidArgument { what };
        if !self.passes_reference_check(|name| dims.get(name).copied()) {
            return Err(invalid(
                "the block description fails the reference's check, so no batch norm would be \
                 folded"
                    .into(),
            ));
        }
        // Blocks in the order of their first member, members in model order.
        let mut blocks: Vec<(&str, Vec<(&str, &str)>)> = Vec::new();
        for &(name, _) in &tensors {
            let Some(Some(id)) = self.block_identifier.get(name) else {
                continue;
            };
            let ptype = self.parameter_type.get(name).map_or("", String::as_str);
            match blocks.iter_mut().find(|(b, _)| b == id) {
                Some((_, members)) => members.push((name, ptype)),
                None => blocks.push((id, vec![(name, ptype)])),
            }
        }
        let mut folds = Vec::new();
        for (id, members) in blocks {
            let of_type = |t: &str| members.iter().find(|m| m.1 == t).map(|m| m.0.to_string());
            let Some(gamma) = of_type("bn.gamma") else {
                continue;
            };
            let incomplete = || invalid(format!("block {id:?} has an incomplete batch norm"));
            let weight = of_type("weight").ok_or_else(incomplete)?;
            let (beta, mean, var) = (
                of_type("bn.beta").ok_or_else(incomplete)?,
                of_type("bn.mean").ok_or_else(incomplete)?,
                of_type("bn.var").ok_or_else(incomplete)?,
            );
            let scaling = of_type("weight.ls");
            let bias = of_type("bias");
            let made = |given: &Option<String>, name: String| match given {
                Some(n) => Ok(n.clone()),
                None if dims.contains_key(name.as_str()) => Err(invalid(format!(
                    "folding block {id:?} would create {name:?}, which is another tensor's name"
                ))),
                None => Ok(name),
            };
            folds.push(FoldedNorm {
                scaling: made(&scaling, scaling_name(&weight))?,
                scaling_given: scaling.is_some(),
                bias: made(&bias, default_bias_name(&weight))?,
                bias_given: bias.is_some(),
                gamma,
                beta,
                mean,
                var,
                eps: 1e-5,
            });
        }
        Ok(folds)
    }
}

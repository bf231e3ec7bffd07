//! Batch-norm folding (reference `fold_bn`, hls.md §6.3): BN parameters are folded into the
//! block's local scaling and bias, which are created when absent.

use super::model::ParameterData;
use super::options::{EncodeOptions, ParameterType};
use super::work::{Item, Work, WorkModel};
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
        let g: Vec<f32> = f32_values(model.get(&gamma)?)?
            .iter()
            .zip(f32_values(model.get(&var)?)?)
            .map(|(&gm, v)| gm / (v + eps).sqrt())
            .collect();
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
            v.iter_mut().zip(&g).for_each(|(a, &gi)| *a *= gi);
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
            for i in 0..n {
                v[i] = (v[i] - mean_v[i]) * g[i] + beta_v[i];
            }
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

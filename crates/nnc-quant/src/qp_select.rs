//! Which qp each tensor gets (hls.md §5.2, reference `approximator.ApproxInfo`).
//!
//! Pure functions over tensor names, parameter types and statistics; the pipeline decides which
//! tensors exist and in what order.

use crate::bitdepth::bitdepth_qp;
use crate::error::{Error, Result};
use crate::numpy::{round_half_even, std_f32};

/// The reference's parameter types (`model_info["parameter_type"]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParameterType {
    /// `"weight"`: every tensor with more than one dimension, and PyTorch 1-D `.weight` tensors.
    Weight,
    /// `"weight.ls"`: local scaling factors.
    WeightLs,
    /// `"bias"`.
    Bias,
    /// `"bn.beta"`.
    BnBeta,
    /// `"bn.gamma"`.
    BnGamma,
    /// `"bn.mean"`.
    BnMean,
    /// `"bn.var"`.
    BnVar,
    /// `"unspecified"`: any other tensor.
    Unspecified,
}

impl ParameterType {
    /// The reference's string for this type.
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterType::Weight => "weight",
            ParameterType::WeightLs => "weight.ls",
            ParameterType::Bias => "bias",
            ParameterType::BnBeta => "bn.beta",
            ParameterType::BnGamma => "bn.gamma",
            ParameterType::BnMean => "bn.mean",
            ParameterType::BnVar => "bn.var",
            ParameterType::Unspecified => "unspecified",
        }
    }

    /// Parses the reference's string.
    pub fn from_reference_str(s: &str) -> Option<Self> {
        Some(match s {
            "weight" => ParameterType::Weight,
            "weight.ls" => ParameterType::WeightLs,
            "bias" => ParameterType::Bias,
            "bn.beta" => ParameterType::BnBeta,
            "bn.gamma" => ParameterType::BnGamma,
            "bn.mean" => ParameterType::BnMean,
            "bn.var" => ParameterType::BnVar,
            "unspecified" => ParameterType::Unspecified,
            _ => return None,
        })
    }

    /// `true` for the weight types (`W_TYPES = ["weight"]`).
    pub fn is_weight(self) -> bool {
        self == ParameterType::Weight
    }

    /// Type of a tensor in a plain dict of arrays: weight if it has more than one dimension.
    pub fn for_dict_tensor(ndim: usize) -> Self {
        if ndim > 1 {
            ParameterType::Weight
        } else {
            ParameterType::Unspecified
        }
    }

    /// Type of a PyTorch state-dict entry: weight for `ndim > 1`; for 1-D tensors the first name
    /// rule that matches among `.bias`, `.running_mean`, `.running_var`, `.weight_scaling`, `gamma`,
    /// `.weight`; unspecified otherwise (scalars included).
    pub fn for_pytorch_tensor(name: &str, ndim: usize) -> Self {
        match ndim {
            0 => ParameterType::Unspecified,
            1 => {
                if name.contains(".bias") {
                    ParameterType::Bias
                } else if name.contains(".running_mean") {
                    ParameterType::BnMean
                } else if name.contains(".running_var") {
                    ParameterType::BnVar
                } else if name.contains(".weight_scaling") {
                    ParameterType::WeightLs
                } else if name.contains("gamma") {
                    ParameterType::BnGamma
                } else if name.contains(".weight") {
                    ParameterType::Weight
                } else {
                    ParameterType::Unspecified
                }
            }
            _ => ParameterType::Weight,
        }
    }
}

/// qp of the non-weight tensors: `nonweight_qp` if it is given and non-zero, else
/// `qp − 2^(qp_density + 1)` (a quarter of the weight step).
///
/// Reference quirk: `nonweight_qp = 0` counts as "not given" (Python truthiness).
pub fn nonweight_qp(qp: i32, qp_density: u8, nonweight_qp: Option<i32>) -> i32 {
    match nonweight_qp {
        Some(q) if q != 0 => q,
        _ => qp.saturating_sub(2i32 << qp_density.min(29)),
    }
}

/// The qp before any override: `qp` for weights (and decomposition factors), the non-weight rule
/// otherwise.
pub fn base_qp(
    parameter_type: ParameterType,
    qp: i32,
    qp_density: u8,
    nonweight: Option<i32>,
) -> i32 {
    if parameter_type.is_weight() {
        qp
    } else {
        nonweight_qp(qp, qp_density, nonweight)
    }
}

/// The `opt_qp` shares of the weight tensors: `size/total + 0.1·(1 − std/max_std)`, replaced by
/// 0.15 when above 0.5.
///
/// Reference quirk: `std/max_std` and `0.1·(1 − ·)` are `float32` numpy operations, the size ratio
/// and the sum `float64`.
///
/// When every std is zero (constant weights, such as an update in which no weight moved) the
/// reference divides 0 by 0 and crashes; here every `std/max_std` is taken as 1, its value
/// whenever all stds are equal, so the shares are the size ratios. Errors when a std is not
/// finite or every size is zero.
pub fn opt_qp_shares(sizes: &[usize], stds: &[f32]) -> Result<Vec<f64>> {
    if sizes.len() != stds.len() {
        return Err(Error::LengthMismatch {
            expected: sizes.len(),
            actual: stds.len(),
        });
    }
    if stds.iter().any(|s| !s.is_finite()) {
        return Err(Error::DegenerateOptQp);
    }
    let total: u128 = sizes.iter().map(|&s| s as u128).sum();
    let max_std = stds.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut shares = Vec::with_capacity(sizes.len());
    for (&size, &std) in sizes.iter().zip(stds) {
        let rel_size = size as f64 / total as f64;
        let rel_std = if max_std == 0.0 { 1.0 } else { std / max_std };
        let share = rel_size + f64::from(0.1f32 * (1.0f32 - rel_std));
        if share.is_nan() {
            return Err(Error::DegenerateOptQp);
        }
        shares.push(if share > 0.5 { 0.15 } else { share });
    }
    Ok(shares)
}

/// `opt_qp` adjustment of one weight tensor: `round_half_even(qp · (1 − share))`.
pub fn opt_qp_adjust(qp: i32, share: f64) -> i32 {
    round_half_even(f64::from(qp) * (1.0 - share)) as i32
}

/// One tensor as the qp selection sees it.
#[derive(Clone, Copy, Debug)]
pub struct QpTensor<'a> {
    /// Tensor name (for `qp_per_tensor`).
    pub name: &'a str,
    /// Its parameter type.
    pub parameter_type: ParameterType,
    /// Its values, row-major (for `opt_qp` statistics and bit-depth mode).
    pub weights: &'a [f32],
}

/// The encoder's qp settings.
#[derive(Clone, Copy, Debug)]
pub struct QpConfig<'a> {
    /// Weight qp (`qp` argument).
    pub qp: i32,
    /// `qp_density`.
    pub qp_density: u8,
    /// `nonweight_qp` argument (`None` or `Some(0)`: derive it from `qp`).
    pub nonweight_qp: Option<i32>,
    /// `qp_per_tensor`: overrides by name, applied after the type rule.
    pub qp_per_tensor: &'a [(&'a str, i32)],
    /// `opt_qp`: scale weight qps by their size/std share.
    pub opt_qp: bool,
    /// `int_quant_bw` (bit-depth mode); replaces all other rules when `Some(b)` with `b > 0`.
    pub int_quant_bw: Option<u32>,
}

/// The qp of every tensor, in the given order (reference `ApproxInfo.__init__`).
///
/// Decomposition factors (`_G`/`_H`) and the codebook/DQ qp shift are not handled here.
pub fn tensor_qps(tensors: &[QpTensor<'_>], cfg: &QpConfig<'_>) -> Result<Vec<i32>> {
    if let Some(bw) = cfg.int_quant_bw.filter(|&b| b > 0) {
        return tensors
            .iter()
            .map(|t| bitdepth_qp(t.weights, t.parameter_type.is_weight(), bw, cfg.qp_density))
            .collect();
    }
    let mut qps: Vec<i32> = tensors
        .iter()
        .map(|t| {
            let qp = base_qp(t.parameter_type, cfg.qp, cfg.qp_density, cfg.nonweight_qp);
            cfg.qp_per_tensor
                .iter()
                .find(|(name, _)| *name == t.name)
                .map_or(qp, |&(_, q)| q)
        })
        .collect();
    if cfg.opt_qp {
        // An empty weight has no statistics (the reference's share for it is NaN, and it
        // crashes): it keeps its qp and, of size 0, would change no other share anyway.
        let weight_idx: Vec<usize> = (0..tensors.len())
            .filter(|&i| tensors[i].parameter_type.is_weight() && !tensors[i].weights.is_empty())
            .collect();
        if !weight_idx.is_empty() {
            let sizes: Vec<usize> = weight_idx
                .iter()
                .map(|&i| tensors[i].weights.len())
                .collect();
            let stds: Vec<f32> = weight_idx
                .iter()
                .map(|&i| std_f32(tensors[i].weights))
                .collect();
            let shares = opt_qp_shares(&sizes, &stds)?;
            for (&i, &share) in weight_idx.iter().zip(&shares) {
                qps[i] = opt_qp_adjust(qps[i], share);
            }
        }
    }
    Ok(qps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_types() {
        assert_eq!(
            ParameterType::for_pytorch_tensor("conv1.weight", 4),
            ParameterType::Weight
        );
        assert_eq!(
            ParameterType::for_pytorch_tensor("bn1.weight", 1),
            ParameterType::Weight
        );
        assert_eq!(
            ParameterType::for_pytorch_tensor("bn1.bias", 1),
            ParameterType::Bias
        );
        assert_eq!(
            ParameterType::for_pytorch_tensor("bn1.running_var", 1),
            ParameterType::BnVar
        );
        assert_eq!(
            ParameterType::for_pytorch_tensor("x.weight_scaling", 1),
            ParameterType::WeightLs
        );
        assert_eq!(
            ParameterType::for_pytorch_tensor("gamma", 1),
            ParameterType::BnGamma
        );
        assert_eq!(
            ParameterType::for_pytorch_tensor("scale", 0),
            ParameterType::Unspecified
        );
        assert_eq!(ParameterType::for_dict_tensor(2), ParameterType::Weight);
        assert_eq!(
            ParameterType::for_dict_tensor(1),
            ParameterType::Unspecified
        );
        for t in [
            ParameterType::BnMean,
            ParameterType::WeightLs,
            ParameterType::Unspecified,
        ] {
            assert_eq!(ParameterType::from_reference_str(t.as_str()), Some(t));
        }
        assert_eq!(ParameterType::from_reference_str("conv"), None);
    }

    #[test]
    fn nonweight_rule() {
        assert_eq!(nonweight_qp(-32, 2, None), -40);
        assert_eq!(nonweight_qp(-32, 2, Some(0)), -40);
        assert_eq!(nonweight_qp(-32, 2, Some(-75)), -75);
        assert_eq!(base_qp(ParameterType::Weight, -32, 2, Some(-75)), -32);
        assert_eq!(base_qp(ParameterType::Bias, -32, 2, Some(-75)), -75);
    }

    #[test]
    fn single_weight_opt_qp() {
        // t_opt_qp: one weight tensor → share 1.0 > 0.5 → 0.15; round(−38 · 0.85) = −32.
        let w: Vec<f32> = (0..100).map(|i| i as f32 * 0.01).collect();
        let tensors = [QpTensor {
            name: "0",
            parameter_type: ParameterType::Weight,
            weights: &w,
        }];
        let cfg = QpConfig {
            qp: -38,
            qp_density: 2,
            nonweight_qp: Some(-75),
            qp_per_tensor: &[],
            opt_qp: true,
            int_quant_bw: None,
        };
        assert_eq!(tensor_qps(&tensors, &cfg).unwrap(), [-32]);
        assert_eq!(opt_qp_adjust(-30, 0.15), -26); // −25.5 → −26 (half to even)
        assert_eq!(opt_qp_adjust(-10, 0.15), -8); // −8.5 → −8
    }

    #[test]
    fn opt_qp_shares_of_constant_and_overflowing_weights() {
        // All stds zero: the shares are the size ratios (0.75 → 0.15 above 0.5, and 0.25).
        assert_eq!(opt_qp_shares(&[3, 1], &[0.0, 0.0]).unwrap(), [0.15, 0.25]);
        // One std zero among others keeps the reference's rule: 0.5 + 0.1·(1 − 0) and 0.5.
        let shares = opt_qp_shares(&[1, 1], &[0.0, 2.0]).unwrap();
        assert!((shares[0] - 0.15).abs() < 1e-6); // 0.6, above 0.5
        assert!((shares[1] - 0.5).abs() < 1e-6);
        for bad in [f32::NAN, f32::INFINITY] {
            assert_eq!(
                opt_qp_shares(&[1, 1], &[0.0, bad]),
                Err(Error::DegenerateOptQp)
            );
        }
        assert_eq!(opt_qp_shares(&[0], &[0.0]), Err(Error::DegenerateOptQp));
    }

    #[test]
    fn overrides_and_degenerate() {
        let w = [0.5f32; 4];
        let tensors = [
            QpTensor {
                name: "a",
                parameter_type: ParameterType::Weight,
                weights: &w,
            },
            QpTensor {
                name: "b",
                parameter_type: ParameterType::Bias,
                weights: &w[..1],
            },
        ];
        let mut cfg = QpConfig {
            qp: -32,
            qp_density: 2,
            nonweight_qp: None,
            qp_per_tensor: &[("b", -20)],
            opt_qp: false,
            int_quant_bw: None,
        };
        assert_eq!(tensor_qps(&tensors, &cfg).unwrap(), [-32, -20]);
        cfg.opt_qp = true;
        // Constant weights: every std is 0, taken as std/max_std = 1 (the reference divides 0 by
        // 0). One weight tensor: share 1 > 0.5 → 0.15; round(−32 · 0.85) = −27.
        assert_eq!(tensor_qps(&tensors, &cfg).unwrap(), [-27, -20]);
        cfg.int_quant_bw = Some(8);
        // Unsigned 8 bit, Δ = 0.5/255: qp = −36 + (4·0.5/255·2^9 − 4) = −36 + 0.0157 → −36.
        assert_eq!(tensor_qps(&tensors, &cfg).unwrap(), [-36, -36]);
    }
}

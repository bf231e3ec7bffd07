//! The block structure of a PyTorch state dict, guessed from its names and shapes as the
//! reference's model pipeline guesses it for batch-norm folding (`nncodec.nn` with `bnf`: the
//! PyTorch model's `guess_block_id_and_param_type`, given which tensors belong to BatchNorm
//! modules).
//!
//! The reference learns which modules are BatchNorm from the module objects. A state dict has
//! no module types, so here a module is BatchNorm when it keeps running statistics
//! (`<module>.running_mean` and `<module>.running_var`). The reference marks only `BatchNorm2d`
//! modules so; a `BatchNorm1d` (also with running statistics) is folded here, while the
//! reference fails its guess and codes the model without folding (quirks.md#bnf-batchnorm1d).
//!
//! This module knows names, shapes and the guess's rules, nothing of how blocks are coded.

use std::collections::{HashMap, HashSet};

use super::frontend::is_local_scaling;
use super::model::{BlockIdAndParamType, EncodeInput, TOPOLOGY_PYTORCH};
use crate::error::{Error, Result};

/// One tensor as the guess sees it.
struct Member<'n> {
    name: &'n str,
    ptype: &'static str,
    block: String,
    shape: &'n [usize],
}

/// Blocks in the order they were opened, each with its members in model order.
#[derive(Default)]
struct Blocks<'n> {
    order: Vec<(String, Vec<Member<'n>>)>,
    index: HashMap<String, usize>,
}

impl<'n> Blocks<'n> {
    fn get(&self, id: &str) -> Option<&[Member<'n>]> {
        self.index.get(id).map(|&i| self.order[i].1.as_slice())
    }

    fn push(&mut self, member: Member<'n>) {
        let i = *self.index.entry(member.block.clone()).or_insert_with(|| {
            self.order.push((member.block.clone(), Vec::new()));
            self.order.len() - 1
        });
        self.order[i].1.push(member);
    }
}

fn guess_failed(why: String) -> Error {
    Error::InvalidArgument {
        what: format!("batch norm cannot be folded: {why}"),
    }
}

impl BlockIdAndParamType {
    /// The block structure the reference's model pipeline guesses for a PyTorch model when
    /// asked to fold batch norm, from `input`'s parameter names and shapes (in model order):
    ///
    /// - every tensor of two or more dimensions is a `weight`, and opens a block or joins the
    ///   current one of its module (the name up to its last `.`);
    /// - one-dimensional tensors are typed by their names (`bias`/`beta`, `running_mean`,
    ///   `running_var`, `weight_scaling`, `gamma`, `weight`; those of a BatchNorm module
    ///   `bn.gamma`, `bn.beta`, `bn.mean`, `bn.var`) and join their module's block; a tensor of a
    ///   type its block already has opens a new one;
    /// - each BatchNorm block then joins the first weight block, in order, with a weight
    ///   dimension equal to its length.
    ///
    /// Tensors with other names or no dimensions are left out of blocks, as are those named
    /// `aux_classifier` (skipped by the reference). Fails where the reference's guess fails: a
    /// BatchNorm that no weight block takes, or whose preceding block has no weight. Apply the
    /// result with [`EncodeInput::apply_blocks`], which also runs the reference's check of it;
    /// [`BlockIdAndParamType::guess_pytorch`] does the same from names and shapes alone.
    ///
    /// ```
    /// use nnc_tensor::encode::{BlockIdAndParamType, EncodeInput};
    /// use nnc_tensor::{Tensor, TensorData};
    ///
    /// let t = |name: &str, shape: Vec<usize>| {
    ///     let n = shape.iter().product();
    ///     Tensor::try_new(name, shape, TensorData::F32(vec![1.0; n])).unwrap()
    /// };
    /// let model = vec![
    ///     t("conv.weight", vec![4, 2, 3, 3]),
    ///     t("bn.weight", vec![4]),
    ///     t("bn.bias", vec![4]),
    ///     t("bn.running_mean", vec![4]),
    ///     t("bn.running_var", vec![4]),
    /// ];
    /// let mut input = EncodeInput::from_state_dict(&model).unwrap();
    /// let blocks = BlockIdAndParamType::guess_for_state_dict(&input).unwrap();
    /// assert_eq!(blocks.block_identifier["bn.running_var"].as_deref(), Some("conv.0"));
    /// assert_eq!(blocks.parameter_type["bn.bias"], "bn.beta");
    /// assert!(input.apply_blocks(&blocks));
    /// ```
    pub fn guess_for_state_dict(input: &EncodeInput<'_>) -> Result<Self> {
        Self::guess_pytorch(
            input
                .parameters
                .iter()
                .map(|p| (p.name.as_str(), p.original_shape.as_slice())),
        )
    }

    /// [`BlockIdAndParamType::guess_for_state_dict`] from the state dict's names and shapes, in
    /// model order.
    pub fn guess_pytorch<'n>(
        tensors: impl IntoIterator<Item = (&'n str, &'n [usize])>,
    ) -> Result<Self> {
        let tensors: Vec<(&str, &[usize])> = tensors.into_iter().collect();
        let names: HashSet<&str> = tensors.iter().map(|&(name, _)| name).collect();
        let in_batch_norm = |name: &str| {
            name.rsplit_once('.').is_some_and(|(module, _)| {
                names.contains(format!("{module}.running_mean").as_str())
                    && names.contains(format!("{module}.running_var").as_str())
            })
        };
        let mut guess = BlockIdAndParamType::default();
        let mut blocks = Blocks::default();
        // The reference numbers blocks with one counter over all modules.
        let mut number: i64 = -1;
        for &(name, shape) in &tensors {
            if name.contains("aux_classifier") {
                continue;
            }
            let (module, last) = match name.rsplit_once('.') {
                Some((module, last)) => (format!("{module}."), last),
                None => ("genericBlk.".to_string(), name),
            };
            // The reference flattens a local scaling before guessing (`[out, 1, 1, 1]` → `[out]`).
            let rank = if is_local_scaling(name) {
                1
            } else {
                shape.len()
            };
            let ptype = match rank {
                0 => None,
                1 if !name.ends_with(".weight_scaling") && in_batch_norm(name) => {
                    Some(type_by(BATCH_NORM_TYPES, last).ok_or_else(|| {
                        guess_failed(format!("{name:?} is no BatchNorm parameter"))
                    })?)
                }
                1 => type_by(OTHER_TYPES, last),
                _ => Some("weight"),
            };
            let Some(ptype) = ptype else {
                guess
                    .parameter_type
                    .insert(name.into(), "unspecified".into());
                guess.block_identifier.insert(name.into(), None);
                continue;
            };
            let current = format!("{module}{number}");
            match blocks.get(&current) {
                Some(members) if !members.iter().any(|m| m.ptype == ptype) => {}
                _ => number += 1,
            }
            blocks.push(Member {
                name,
                ptype,
                block: format!("{module}{number}"),
                shape,
            });
        }
        let (norms, weights): (Vec<_>, Vec<_>) = blocks
            .order
            .into_iter()
            .map(|(_, members)| members)
            .partition(|members| members.iter().any(|m| m.ptype.starts_with("bn.")));
        let mut norms = norms.into_iter().peekable();
        for members in weights {
            let mut weight: Option<(&[usize], &str)> = None;
            for m in &members {
                guess.parameter_type.insert(m.name.into(), m.ptype.into());
                guess
                    .block_identifier
                    .insert(m.name.into(), Some(m.block.clone()));
                if m.ptype == "weight" {
                    weight = Some((m.shape, m.block.as_str()));
                }
            }
            let Some(norm) = norms.peek() else { continue };
            let Some((shape, id)) = weight else {
                return Err(guess_failed(format!(
                    "the block of {:?} has no weight to fold {:?} into",
                    members[0].name, norm[0].name
                )));
            };
            let length = norm[0].shape.first().copied();
            if shape.iter().any(|&d| Some(d) == length) {
                for m in norms.next().into_iter().flatten() {
                    guess.parameter_type.insert(m.name.into(), m.ptype.into());
                    guess
                        .block_identifier
                        .insert(m.name.into(), Some(id.into()));
                }
            }
        }
        if let Some(norm) = norms.next() {
            return Err(guess_failed(format!(
                "no weight before BatchNorm {:?} has a dimension of its length",
                norm[0].name
            )));
        }
        Ok(guess)
    }
}

impl EncodeInput<'_> {
    /// Forms the blocks batch-norm folding ([`EncodeOptions::bnf`](super::EncodeOptions::bnf))
    /// needs in a PyTorch state dict ([`EncodeInput::from_state_dict`]), guessed from the names
    /// ([`BlockIdAndParamType::guess_for_state_dict`]) and applied
    /// ([`EncodeInput::apply_blocks`]). Where the guess fails its check, the reference codes
    /// the model without blocks or folding (and where the guess itself fails, it crashes); this
    /// fails with [`Error::InvalidArgument`] in both cases and leaves the input as it was, so
    /// that a request to fold is never dropped unseen.
    pub fn apply_guessed_blocks(&mut self) -> Result<()> {
        if self.topology_storage_format != TOPOLOGY_PYTORCH {
            return Err(Error::InvalidArgument {
                what: "guessing layer blocks needs a PyTorch state dict (names such as \
                       conv.weight, bn.running_mean)"
                    .into(),
            });
        }
        let blocks = BlockIdAndParamType::guess_for_state_dict(self)?;
        if !self.apply_blocks(&blocks) {
            return Err(guess_failed(
                "the blocks guessed from the names fail the reference's check (a BatchNorm \
                 paired with a weight of another output size, as in pre-activation networks)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Puts each trained local scaling (`<layer>.weight_scaling`, the parameter NNCodec's LSA
    /// adds to convolutions and linear layers) in its layer's block, the blocks guessed as for
    /// [`EncodeInput::apply_guessed_blocks`]: the reference's model pipeline with `lsa` codes
    /// the scalings so once its training has set them (nnc does not train them). Fails with
    /// [`Error::InvalidArgument`] when the state dict has no local scaling, or as
    /// [`EncodeInput::apply_guessed_blocks`] fails.
    pub fn apply_local_scaling_blocks(&mut self) -> Result<()> {
        if !self.parameters.iter().any(|p| is_local_scaling(&p.name)) {
            return Err(Error::InvalidArgument {
                what: "the model has no local scalings (<layer>.weight_scaling tensors) to code; \
                       nnc codes trained scalings but does not train them"
                    .into(),
            });
        }
        self.apply_guessed_blocks()
    }
}

/// Types of a BatchNorm module's one-dimensional tensors: the first rule whose name part
/// occurs in the tensor's last name part.
const BATCH_NORM_TYPES: &[(&[&str], &str)] = &[
    (&["weight"], "bn.gamma"),
    (&["bias"], "bn.beta"),
    (&["running_mean"], "bn.mean"),
    (&["running_var"], "bn.var"),
];

/// Types of the other one-dimensional tensors, by the same rule; none: unspecified, in no block.
const OTHER_TYPES: &[(&[&str], &str)] = &[
    (&["bias", "beta"], "bias"),
    (&["running_mean", "moving_mean"], "bn.mean"),
    (&["running_var", "moving_variance"], "bn.var"),
    (&["weight_scaling"], "weight.ls"),
    (&["gamma"], "bn.gamma"),
    (&["weight"], "weight"),
];

fn type_by(rules: &[(&[&str], &'static str)], last: &str) -> Option<&'static str> {
    rules
        .iter()
        .find(|(parts, _)| parts.iter().any(|p| last.contains(p)))
        .map(|&(_, ptype)| ptype)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::tensor::{Tensor, TensorData};

    /// name → (block, type).
    fn as_map(g: &BlockIdAndParamType) -> BTreeMap<&str, (Option<&str>, &str)> {
        g.block_identifier
            .iter()
            .map(|(n, b)| (n.as_str(), (b.as_deref(), g.parameter_type[n].as_str())))
            .collect()
    }

    fn t(name: &str, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        Tensor::try_new(name, shape.to_vec(), TensorData::F32(vec![0.5; n])).unwrap()
    }

    /// A BatchNorm module's four tensors of length `n`.
    fn batch_norm(module: &str, n: usize) -> Vec<Tensor> {
        ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .map(|end| t(&format!("{module}.{end}"), &[n]))
            .collect()
    }

    #[test]
    fn blocks_are_numbered_by_one_counter_and_batch_norm_joins_the_weight_before() {
        let model = [
            vec![t("conv1.weight", &[8, 3, 3, 3])],
            batch_norm("bn1", 8),
            vec![t("conv2.weight", &[16, 8, 3, 3]), t("conv2.bias", &[16])],
            batch_norm("bn2", 16),
            vec![
                t("fc.weight", &[10, 16]),
                t("fc.bias", &[10]),
                t("pos", &[10]),
            ],
        ]
        .concat();
        let input = EncodeInput::from_state_dict(&model).unwrap();
        let g = BlockIdAndParamType::guess_for_state_dict(&input).unwrap();
        let m = as_map(&g);
        assert_eq!(m["conv1.weight"], (Some("conv1.0"), "weight"));
        assert_eq!(m["bn1.weight"], (Some("conv1.0"), "bn.gamma"));
        assert_eq!(m["bn1.running_var"], (Some("conv1.0"), "bn.var"));
        assert_eq!(m["conv2.bias"], (Some("conv2.2"), "bias"));
        assert_eq!(m["bn2.bias"], (Some("conv2.2"), "bn.beta"));
        assert_eq!(m["fc.weight"], (Some("fc.4"), "weight"));
        assert_eq!(m["fc.bias"], (Some("fc.4"), "bias"));
        assert_eq!(m["pos"], (None, "unspecified"));
    }

    /// `bnf` on an input without blocks is refused rather than ignored; with the guessed
    /// blocks the batch norm is folded (and reported as such).
    #[test]
    fn bnf_needs_blocks_and_folds_with_the_guessed_ones() {
        let model = [vec![t("conv.weight", &[4, 2, 3, 3])], batch_norm("bn", 4)].concat();
        let opts = crate::EncodeOptions {
            bnf: true,
            ..Default::default()
        };
        let mut input = EncodeInput::from_state_dict(&model).unwrap();
        let err = crate::encode(&input, &opts).unwrap_err();
        assert!(
            err.to_string().contains("needs the model's blocks"),
            "{err}"
        );
        input.apply_guessed_blocks().unwrap();
        // A qp for a tensor the folding removes is refused, not dropped.
        let mut with_qp = opts.clone();
        with_qp.qp_per_tensor.insert("bn.running_var".into(), -40);
        let err = crate::encode(&input, &with_qp).unwrap_err();
        assert!(err.to_string().contains("\"bn.running_var\""), "{err}");
        let stream = crate::encode(&input, &opts).unwrap();
        assert_eq!(stream.folded.len(), 1);
        assert_eq!(stream.folded[0].gamma, "bn.weight");
        assert!(!stream.folded[0].bias_given);
    }

    #[test]
    fn a_repeated_type_opens_a_new_block_of_the_same_module() {
        let model = [
            t("m.weight", &[4, 4]),
            t("m.bias", &[4]),
            t("m.weight_b", &[4, 4]),
        ];
        let input = EncodeInput::from_state_dict(&model).unwrap();
        let g = BlockIdAndParamType::guess_for_state_dict(&input).unwrap();
        let m = as_map(&g);
        assert_eq!(m["m.bias"], (Some("m.0"), "bias"));
        assert_eq!(m["m.weight_b"], (Some("m.1"), "weight"));
    }

    #[test]
    fn a_batch_norm_no_weight_takes_fails_the_guess() {
        let model = [vec![t("conv.weight", &[8, 3, 3, 3])], batch_norm("bn", 5)].concat();
        let input = EncodeInput::from_state_dict(&model).unwrap();
        let err = BlockIdAndParamType::guess_for_state_dict(&input).unwrap_err();
        assert!(err.to_string().contains("\"bn.weight\""), "{err}");
    }

    #[test]
    fn a_block_without_weight_before_a_batch_norm_fails_the_guess() {
        let model = [vec![t("head.bias", &[8])], batch_norm("bn", 8)].concat();
        let input = EncodeInput::from_state_dict(&model).unwrap();
        let err = BlockIdAndParamType::guess_for_state_dict(&input).unwrap_err();
        assert!(err.to_string().contains("no weight"), "{err}");
    }
}

//! The encoder's working model: every parameter with its approximation state, and the block
//! structure in coding order (the reference's `model_info` + `approx_data`).

use std::collections::BTreeMap;

use super::model::{has_zero_width, EncodeInput, ModelParameter, ParameterData};
use super::options::ParameterType;
use crate::error::{Error, Result};
use crate::members::cpt;

/// How a parameter's levels map to values.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Method {
    Uniform,
    Codebook {
        values: Vec<i64>,
        zero_offset: u32,
        egk: u8,
    },
    Skip,
}

/// One parameter during encoding.
#[derive(Clone, Debug)]
pub(crate) struct Work<'a> {
    pub name: String,
    pub dims: Vec<usize>,
    /// The input's tensor, borrowed, until an encoder step replaces it (batch-norm folding) or
    /// approximation takes it; empty after that.
    pub values: ParameterData<'a>,
    pub ptype: ParameterType,
    /// Index in the model enumeration; `None` for tensors the encoder synthesised (BN folding).
    pub index: Option<u64>,
    pub qp: i32,
    pub dq_flag: bool,
    pub scan_order: Option<u8>,
    pub method: Option<Method>,
    pub levels: Vec<i32>,
}

/// Names of a block's members (reference `NNRBlockAccess`).
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub id: String,
    pub w: String,
    pub bias: String,
    pub ls: String,
    pub bn_beta: Option<String>,
    pub bn_gamma: Option<String>,
    pub bn_mean: Option<String>,
    pub bn_var: Option<String>,
    pub dc_g: String,
    pub dc_h: String,
    pub cpt: u8,
}

impl Block {
    /// Members in CABAC coding order with their parameter types.
    pub fn coding_order(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        if self.cpt & cpt::LS != 0 {
            out.push(self.ls.clone());
        }
        if self.cpt & cpt::BI != 0 {
            out.push(self.bias.clone());
        }
        if self.cpt & cpt::BN != 0 {
            for n in [&self.bn_beta, &self.bn_gamma, &self.bn_mean, &self.bn_var] {
                out.push(n.clone().ok_or_else(|| Error::InvalidArgument {
                    what: format!("block {:?} has an incomplete batch norm", self.id),
                })?);
            }
        }
        if self.cpt & cpt::DC != 0 {
            out.push(self.dc_g.clone());
            out.push(self.dc_h.clone());
        } else {
            out.push(self.w.clone());
        }
        Ok(out)
    }

    /// Member names in `topology_elem_id_list` order.
    pub fn element_order(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.cpt & cpt::DC != 0 {
            out.push(self.dc_g.clone());
            out.push(self.dc_h.clone());
        } else {
            out.push(self.w.clone());
        }
        if self.cpt & cpt::LS != 0 {
            out.push(self.ls.clone());
        }
        if self.cpt & cpt::BN != 0 {
            for n in [&self.bn_beta, &self.bn_gamma, &self.bn_mean, &self.bn_var]
                .into_iter()
                .flatten()
            {
                out.push(n.clone());
            }
        }
        if self.cpt & cpt::BI != 0 {
            out.push(self.bias.clone());
        }
        out
    }
}

/// A unit of coding: one parameter, or one block.
#[derive(Clone, Debug)]
pub(crate) enum Item {
    Single(String),
    Block(Box<Block>),
}

/// The whole working model.
#[derive(Clone, Debug)]
pub(crate) struct WorkModel<'a> {
    pub params: BTreeMap<String, Work<'a>>,
    /// Parameter names in the order given (the reference's dict order).
    pub order: Vec<String>,
    /// Blocks and stand-alone parameters in model enumeration order.
    pub items: Vec<Item>,
    pub topology_storage_format: u8,
    /// Dimensions of each block weight (also for decomposed ones).
    pub weight_dims: BTreeMap<String, Vec<usize>>,
    /// Enumeration index of each block weight (also for decomposed ones).
    pub weight_index: BTreeMap<String, u64>,
    /// Batch norms folded into their blocks (`bnf`), for the metadata.
    pub folded: Vec<crate::metadata::FoldedNorm>,
}

impl<'a> WorkModel<'a> {
    pub fn new(input: &'a EncodeInput, scan_order: u8) -> Result<Self> {
        let mut params = BTreeMap::new();
        let mut order = Vec::new();
        // Low-rank factors: no index of their own; scan order from the weight's dimensions.
        let factor_of = |name: &str| {
            input.decomposed_weights.iter().find(|d| {
                name.strip_suffix("_G").or_else(|| name.strip_suffix("_H")) == Some(d.name.as_str())
            })
        };
        for d in &input.decomposed_weights {
            for suffix in ["_G", "_H"] {
                if input.get(&format!("{}{suffix}", d.name)).is_none() {
                    return Err(Error::InvalidArgument {
                        what: format!("decomposed weight {:?} lacks its factor {suffix}", d.name),
                    });
                }
            }
            if !input.block_identifier.contains_key(&d.name) {
                return Err(Error::InvalidArgument {
                    what: format!("decomposed weight {:?} must be in a block", d.name),
                });
            }
        }
        for p in &input.parameters {
            if params.contains_key(&p.name) {
                return Err(Error::InvalidArgument {
                    what: format!("tensor name {:?} appears twice", p.name),
                });
            }
            order.push(p.name.clone());
            params.insert(
                p.name.clone(),
                Work {
                    name: p.name.clone(),
                    dims: p.dims.clone(),
                    values: p.data.view(),
                    ptype: if factor_of(&p.name).is_some() {
                        ParameterType::Weight
                    } else {
                        p.parameter_type
                    },
                    index: factor_of(&p.name).is_none().then_some(p.parameter_index),
                    qp: 0,
                    dq_flag: false,
                    scan_order: (factor_of(&p.name).map_or(p.dims.len(), |d| d.dims.len()) > 1)
                        .then_some(scan_order),
                    method: None,
                    levels: Vec::new(),
                },
            );
        }
        // The model enumeration: indexed parameters and decomposed weights, by index.
        let mut sorted: Vec<(u64, &str, &[usize], bool)> = input
            .parameters
            .iter()
            .filter(|p| factor_of(&p.name).is_none())
            .map(|p| {
                (
                    p.parameter_index,
                    p.name.as_str(),
                    p.dims.as_slice(),
                    p.parameter_type.is_weight(),
                )
            })
            .chain(
                input
                    .decomposed_weights
                    .iter()
                    .map(|d| (d.parameter_index, d.name.as_str(), d.dims.as_slice(), true)),
            )
            .collect();
        sorted.sort_by_key(|e| e.0);
        let mut items = Vec::new();
        let mut weight_dims = BTreeMap::new();
        let mut weight_index = BTreeMap::new();
        for (index, name, dims, is_weight) in sorted {
            match input.block_identifier.get(name) {
                None => items.push(Item::Single(name.to_string())),
                Some(id) if is_weight => {
                    let block = Self::block(input, id, &params)?;
                    weight_dims.insert(block.w.clone(), dims.to_vec());
                    weight_index.insert(block.w.clone(), index);
                    items.push(Item::Block(Box::new(block)));
                }
                Some(_) => {}
            }
        }
        Ok(WorkModel {
            params,
            order,
            items,
            topology_storage_format: input.topology_storage_format,
            weight_dims,
            weight_index,
            folded: Vec::new(),
        })
    }

    fn block(input: &EncodeInput, id: &str, params: &BTreeMap<String, Work>) -> Result<Block> {
        let of_type = |t: ParameterType| {
            input
                .parameters
                .iter()
                .find(|p| {
                    input.block_identifier.get(&p.name).map(String::as_str) == Some(id)
                        && p.parameter_type == t
                })
                .map(|p| p.name.clone())
        };
        let decomposed = input
            .decomposed_weights
            .iter()
            .find(|d| input.block_identifier.get(&d.name).map(String::as_str) == Some(id))
            .map(|d| d.name.clone());
        let w = decomposed
            .or_else(|| of_type(ParameterType::Weight))
            .ok_or_else(|| Error::InvalidArgument {
                what: format!("block {id:?} has no weight"),
            })?;
        let bias = of_type(ParameterType::Bias).unwrap_or_else(|| default_bias_name(&w));
        let mut block = Block {
            id: id.to_string(),
            ls: scaling_name(&w),
            dc_g: format!("{w}_G"),
            dc_h: format!("{w}_H"),
            bias,
            bn_beta: of_type(ParameterType::BnBeta),
            bn_gamma: of_type(ParameterType::BnGamma),
            bn_mean: of_type(ParameterType::BnMean),
            bn_var: of_type(ParameterType::BnVar),
            w,
            cpt: 0,
        };
        // Reference `init_approx_data`: which member kinds the block carries.
        if block.bn_gamma.is_some() {
            block.cpt |= cpt::BN;
        }
        if params.contains_key(&block.bias) {
            block.cpt |= cpt::BI;
        }
        if params.contains_key(&block.dc_g) {
            block.cpt |= cpt::DC;
        }
        if params.contains_key(&block.ls) {
            block.cpt |= cpt::LS;
        }
        Ok(block)
    }

    /// Gives every parameter of `input` its own elements, `values[i]` being those of
    /// `input.parameters[i]` (taken from an input passed by value).
    pub fn adopt_values(&mut self, input: &EncodeInput<'_>, values: Vec<ParameterData<'a>>) {
        for (p, v) in input.parameters.iter().zip(values) {
            if let Some(w) = self.params.get_mut(&p.name) {
                w.values = v;
            }
        }
    }

    /// Every coded tensor's name in coding order: the items in order, a block's members in
    /// their NDU order.
    pub fn coding_order(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for item in &self.items {
            match item {
                Item::Single(n) => names.push(n.clone()),
                Item::Block(b) => names.extend(b.coding_order()?),
            }
        }
        Ok(names)
    }

    pub fn get(&self, name: &str) -> Result<&Work<'a>> {
        self.params.get(name).ok_or_else(|| Error::InvalidArgument {
            what: format!("block member {name:?} is missing"),
        })
    }

    pub fn get_mut(&mut self, name: &str) -> Result<&mut Work<'a>> {
        self.params
            .get_mut(name)
            .ok_or_else(|| Error::InvalidArgument {
                what: format!("block member {name:?} is missing"),
            })
    }
}

/// A parameter's dimensions must hold exactly its elements, and its rows must have a width: the
/// builders ensure both, a hand-made [`ModelParameter`] may not.
pub(super) fn check_dims(p: &ModelParameter) -> Result<()> {
    let what = if has_zero_width(&p.dims) {
        "has rows of no width; carry it in extra_tensors instead"
    } else if p.dims.is_empty()
        || p.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) != Some(p.data.len())
    {
        "does not hold as many elements as its dimensions say"
    } else {
        return Ok(());
    };
    Err(Error::InvalidArgument {
        what: format!("tensor {:?} of shape {:?} {what}", p.name, p.dims),
    })
}

/// The name of the local scaling of the block whose weight is `weight` (the reference's
/// `NNRModelAccess.ls`).
pub(super) fn scaling_name(weight: &str) -> String {
    format!("{weight}_scaling")
}

/// The name of the bias of a block whose weight is `weight` and which has no bias member (the
/// reference's `NNRModelAccess.bi`).
pub(super) fn default_bias_name(weight: &str) -> String {
    format!("{weight}.bias")
}

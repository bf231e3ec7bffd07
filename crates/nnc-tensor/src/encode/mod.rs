//! Named tensors → NNR bitstream: the encoder pipeline (hls.md §6.1), byte-identical with the
//! reference for the same input and arguments.
//!
//! Steps: working model (types, blocks) → qp per tensor → optional batch-norm folding →
//! approximation (uniform / codebook / integer) → units (STR, MPS, TPL, NDUs with CABAC payloads).

mod approx;
mod assemble;
mod bnf;
pub mod model;
pub mod options;
mod work;

use crate::decode::Approximation;
use crate::error::{Error, Result};
use crate::state::IncrementalState;

pub use model::{
    BlockIdAndParamType, DecomposedWeight, EncodeInput, InputError, ModelParameter, ParameterData,
    TOPOLOGY_PYTORCH, TOPOLOGY_UNRECOGNISED,
};
pub use options::{CodebookMode, EncodeOptions, ParameterType};

use work::{Item, Method, WorkModel};

/// One tensor as the encoder coded it.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedTensor {
    /// Name.
    pub name: String,
    /// Shape of the coded array.
    pub shape: Vec<usize>,
    /// The integers handed to the entropy coder (reconstruction units; codebook indices relative
    /// to the zero entry for codebook tensors).
    pub levels: Vec<i32>,
    /// How `levels` map to values.
    pub approximation: Approximation,
    /// The tensor was all zero in a parent-signalled stream and got no NDU.
    pub skipped: bool,
}

/// A bitstream and what went into it.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedStream {
    /// The NNR bitstream.
    pub bytes: Vec<u8>,
    /// Every coded tensor, in coding order.
    pub tensors: Vec<EncodedTensor>,
}

/// Encodes a model as a stand-alone bitstream (no base model, `put_node_depth` 0).
pub fn encode(input: &EncodeInput, opts: &EncodeOptions) -> Result<EncodedStream> {
    encode_impl(input, opts, None)
}

/// Encodes one update of an incremental sequence. `state` supplies the previous levels (TCA),
/// the HDSP history and the update-tree depths; when `update_state` is true the coded levels become
/// the new base (the reference's `update_base_param`).
pub fn encode_incremental(
    input: &EncodeInput,
    opts: &EncodeOptions,
    state: &mut IncrementalState,
    update_state: bool,
) -> Result<EncodedStream> {
    encode_impl(
        input,
        opts,
        Some(assemble::Incremental {
            state,
            update: update_state,
        }),
    )
}

fn encode_impl(
    input: &EncodeInput,
    opts: &EncodeOptions,
    inc: Option<assemble::Incremental<'_>>,
) -> Result<EncodedStream> {
    opts.validate()
        .map_err(|what| Error::InvalidArgument { what })?;
    if input.parameters.is_empty() {
        return Err(Error::InvalidArgument {
            what: "nothing to encode".into(),
        });
    }
    let mut model = WorkModel::new(input, opts.scan_order)?;
    approx::assign_qps(&mut model, opts)?;
    if opts.bnf {
        bnf::fold_batch_norm(&mut model, opts)?;
    }
    for item in model.items.clone() {
        let names = match &item {
            Item::Single(n) => vec![n.clone()],
            Item::Block(b) => b.coding_order()?,
        };
        for name in names {
            let w = model.get_mut(&name)?;
            if w.method.is_none() {
                approx::approximate(w, opts)?;
            }
        }
    }
    let (bytes, skipped) = assemble::write_stream(&model, opts, inc)?;
    let mut tensors = Vec::new();
    for item in &model.items {
        let names = match item {
            Item::Single(n) => vec![n.clone()],
            Item::Block(b) => b.coding_order()?,
        };
        for name in names {
            let w = model.get(&name)?;
            let approximation = match &w.method {
                Some(Method::Uniform) => Approximation::Uniform {
                    qp: w.qp,
                    qp_density: opts.qp_density,
                    dq_flag: w.dq_flag,
                },
                Some(Method::Codebook {
                    values,
                    zero_offset,
                    ..
                }) => Approximation::Codebook {
                    qp: w.qp,
                    qp_density: opts.qp_density,
                    codebook: values.clone(),
                    codebook_zero_offset: *zero_offset,
                },
                _ => Approximation::Integer,
            };
            tensors.push(EncodedTensor {
                name: name.clone(),
                shape: w.dims.clone(),
                levels: w.levels.clone(),
                approximation,
                skipped: skipped.contains(&name),
            });
        }
    }
    Ok(EncodedStream { bytes, tensors })
}

//! `candle_nn::VarMap` ⇄ NNR bitstream (feature `varmap`, on by default).

use std::collections::HashSet;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use nnc_tensor::EncodeOptions;

use crate::error::{Error, Result};
use crate::map::{decode_tensors, encode_lent};

/// What [`load_into_varmap`] did, each list in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Variables that existed and were overwritten in place.
    pub updated: Vec<String>,
    /// Tensors of the bitstream the VarMap did not hold, added as new CPU variables.
    pub inserted: Vec<String>,
    /// Variables of the VarMap the bitstream does not mention (left as they were).
    pub untouched: Vec<String>,
}

/// Encodes every variable of `varmap`, in name order (see [`crate::encode_tensors`]).
///
/// The VarMap stays locked during the encode: contiguous float32 and int32 variables on the CPU
/// are read in their own storage rather than copied.
pub fn encode_varmap(varmap: &VarMap, opts: &EncodeOptions) -> Result<Vec<u8>> {
    let vars = varmap.data().lock().map_err(|_| Error::Poisoned)?;
    let mut named: Vec<(&String, &Var)> = vars.iter().collect();
    named.sort_unstable_by(|a, b| a.0.cmp(b.0));
    encode_lent(
        named
            .into_iter()
            .map(|(name, var)| (name.as_str(), var.as_tensor())),
        opts,
    )
}

/// Decodes a bitstream into `varmap`: each existing variable of the same name gets the decoded
/// values in place (on its own device; a float tensor is cast to the variable's float dtype),
/// tensors the VarMap lacks become new CPU variables.
///
/// Every tensor is checked against its variable (shape, dtype) before any variable is written, so
/// a [`Error::VarShape`] or [`Error::VarDType`] leaves the VarMap unchanged.
pub fn load_into_varmap(bytes: &[u8], varmap: &mut VarMap) -> Result<LoadSummary> {
    let decoded = decode_tensors(bytes, &Device::Cpu)?;
    let mut vars = varmap.data().lock().map_err(|_| Error::Poisoned)?;
    let mut updates: Vec<(&Var, Tensor, &str)> = Vec::new();
    let mut inserts: Vec<(String, Tensor)> = Vec::new();
    for (name, tensor) in &decoded {
        let Some(var) = vars.get(name) else {
            inserts.push((name.clone(), tensor.clone()));
            continue;
        };
        if var.dims() != tensor.dims() {
            return Err(Error::VarShape {
                name: name.clone(),
                expected: var.dims().to_vec(),
                found: tensor.dims().to_vec(),
            });
        }
        let value = if var.dtype() == tensor.dtype() {
            tensor.clone()
        } else if var.dtype().is_float() && tensor.dtype().is_float() {
            tensor.to_dtype(var.dtype()).map_err(Error::candle(name))?
        } else {
            return Err(Error::VarDType {
                name: name.clone(),
                expected: var.dtype(),
                found: tensor.dtype(),
            });
        };
        let value = value.to_device(var.device()).map_err(Error::candle(name))?;
        updates.push((var, value, name));
    }
    let mut summary = LoadSummary::default();
    for (var, value, name) in updates {
        var.set(&value).map_err(Error::candle(name))?;
        summary.updated.push(name.to_string());
    }
    let in_stream: HashSet<&str> = decoded.iter().map(|(n, _)| n.as_str()).collect();
    let mut untouched: Vec<String> = vars
        .keys()
        .filter(|k| !in_stream.contains(k.as_str()))
        .cloned()
        .collect();
    untouched.sort_unstable();
    summary.untouched = untouched;
    for (name, tensor) in inserts {
        let var = Var::from_tensor(&tensor).map_err(Error::candle(&name))?;
        vars.insert(name.clone(), var);
        summary.inserted.push(name);
    }
    summary.updated.sort_unstable();
    summary.inserted.sort_unstable();
    Ok(summary)
}

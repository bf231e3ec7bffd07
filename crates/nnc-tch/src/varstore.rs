//! `tch::nn::VarStore` ⇄ NNR bitstream.
//!
//! Variable names are the VarStore's full paths (`"conv1.weight"`, `"bn.running_mean"`), which
//! match PyTorch's state-dict keys when the model is built with the same module names.

use std::collections::HashSet;

use nnc_tensor::{EncodeInput, EncodeOptions};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::map::{decode_tensors, to_nnc_tensors};

/// What [`load_into_varstore`] did, each list in name order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Variables that existed and were overwritten in place.
    pub updated: Vec<String>,
    /// Tensors of the bitstream the VarStore did not hold, added as new non-trainable variables
    /// (like PyTorch buffers) with their decoded kind.
    pub inserted: Vec<String>,
    /// Variables of the VarStore the bitstream does not mention (left as they were).
    pub untouched: Vec<String>,
}

fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double
    )
}

fn check_cpu(vs: &VarStore) -> Result<()> {
    match vs.device() {
        Device::Cpu => Ok(()),
        device => Err(Error::UnsupportedDevice {
            name: String::new(),
            device,
        }),
    }
}

/// Encodes every variable of `vs` (trainable or not), in name order, as a plain tensor
/// dictionary (see [`crate::encode_tensors`]). The VarStore must be on the CPU.
///
/// For PyTorch's parameter-type rules (`.bias`, `.running_var`, ... as non-weights whatever their
/// rank) build the input yourself: `EncodeInput::from_state_dict_owned(to_nnc_tensors(&vs.variables())?)`.
pub fn encode_varstore(vs: &VarStore, opts: &EncodeOptions) -> Result<Vec<u8>> {
    check_cpu(vs)?;
    let nnc = {
        let vars = vs.variables_.lock().map_err(|_| Error::Poisoned)?;
        to_nnc_tensors(vars.named_variables.iter())?
    };
    let input = EncodeInput::from_tensors_owned(nnc)?;
    Ok(nnc_tensor::encode(input, opts)?.bytes)
}

/// Decodes a bitstream into `vs`: each existing variable of the same name gets the decoded
/// values in place (without recording gradients; a float tensor is cast to the variable's float
/// kind), tensors the VarStore lacks become new non-trainable variables.
///
/// Every tensor is checked against its variable (shape, kind) before any variable is written, so
/// an [`Error::VarShape`] or [`Error::VarKind`] leaves the VarStore unchanged. The VarStore must
/// be on the CPU ([`Error::UnsupportedDevice`] otherwise).
pub fn load_into_varstore(bytes: &[u8], vs: &mut VarStore) -> Result<LoadSummary> {
    check_cpu(vs)?;
    let decoded = decode_tensors(bytes)?;
    let mut vars = vs.variables_.lock().map_err(|_| Error::Poisoned)?;
    let mut updates: Vec<(Tensor, &Tensor, &str)> = Vec::new();
    let mut inserts: Vec<&(String, Tensor)> = Vec::new();
    for entry in &decoded {
        let (name, tensor) = entry;
        let Some(var) = vars.named_variables.get(name) else {
            inserts.push(entry);
            continue;
        };
        let (expected, found) = (var.size(), tensor.size());
        if expected != found {
            return Err(Error::VarShape {
                name: name.clone(),
                expected,
                found,
            });
        }
        let (expected, found) = (
            var.f_kind().map_err(Error::tch(name))?,
            tensor.f_kind().map_err(Error::tch(name))?,
        );
        if expected != found && !(is_float(expected) && is_float(found)) {
            return Err(Error::VarKind {
                name: name.clone(),
                expected,
                found,
            });
        }
        // A shallow clone shares the variable's storage, so copying into it writes the variable.
        updates.push((var.shallow_clone(), tensor, name));
    }
    let mut summary = LoadSummary::default();
    for (mut var, value, name) in updates {
        tch::no_grad(|| var.f_copy_(value)).map_err(Error::tch(name))?;
        summary.updated.push(name.to_string());
    }
    let in_stream: HashSet<&str> = decoded.iter().map(|(n, _)| n.as_str()).collect();
    let mut untouched: Vec<String> = vars
        .named_variables
        .keys()
        .filter(|k| !in_stream.contains(k.as_str()))
        .cloned()
        .collect();
    untouched.sort_unstable();
    summary.untouched = untouched;
    for (name, tensor) in inserts {
        vars.named_variables
            .insert(name.clone(), tensor.shallow_clone());
        summary.inserted.push(name.clone());
    }
    summary.updated.sort_unstable();
    summary.inserted.sort_unstable();
    Ok(summary)
}

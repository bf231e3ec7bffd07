//! `nnc decode` to a file, tensor by tensor.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use nnc_nn::io::{
    attributes_to_carry, metadata_to_write, FileFormat, IoError, SafetensorsMetadata,
};
use nnc_tensor::encode::TensorSource;
use nnc_tensor::{DType, DecoderState, StreamDecoder, Tensor, TensorSpec};

use crate::destination::Destination;
use crate::model_read::{name_list, Model};
use crate::update::{apply_update_to_source, ensure_in_base};

/// The safetensors `__metadata__` of a decoded model: the attributes its stream carries, else
/// (an update) what the base file's metadata would carry, else `{"format": "pt"}`. Unless
/// `quiet`, a note when the output's format has no place for carried attributes.
pub fn output_metadata(
    stream: &BTreeMap<String, String>,
    base: Option<&SafetensorsMetadata>,
    output: &Destination,
    quiet: bool,
) -> SafetensorsMetadata {
    let carried = if stream.is_empty() {
        base.map(attributes_to_carry).unwrap_or_default()
    } else {
        stream.clone()
    };
    if !quiet && !carried.is_empty() && output.format() != Some(FileFormat::Safetensors) {
        let keys: Vec<String> = carried.keys().cloned().collect();
        eprintln!(
            "note: {}: the model's safetensors metadata ({}) is left out: only a .safetensors \
             output holds it",
            output.path().display(),
            name_list(&keys)
        );
    }
    metadata_to_write(&carried)
}

/// Decodes the stream `decoder` has read into `output`, writing each tensor as soon as it is
/// decoded (the output file's layout comes from the stream's plan), or with a `base` model, the
/// base plus the update (see [`onto_base`]). Returns `false`, having written nothing and left `state` to be reloaded, when
/// a tensor turns out other than planned (a recorded integer dtype that cannot hold the decoded
/// values): the caller then decodes in memory.
pub fn streaming(
    decoder: StreamDecoder<'_>,
    input: &Path,
    base: Option<Model<TensorSource<'static>>>,
    output: &Destination,
    state: &mut DecoderState,
    quiet: bool,
) -> anyhow::Result<bool> {
    let decoding = || format!("decoding {}", input.display());
    let metadata = output_metadata(
        &decoder.plan().attributes,
        base.as_ref().map(|b| &b.metadata),
        output,
        quiet,
    );
    let result = match base {
        Some(base) => onto_base(decoder, base.tensors, output, state, &metadata),
        None => {
            let plan = decoder.plan().tensors.clone();
            output.write(&plan, &metadata, |put| {
                decoder.run(state, |t| put(&t.tensor))?;
                Ok(())
            })
        }
    };
    not_as_planned_is_false(result, decoding)
}

/// An update added to a base model: the output has the base's tensors in the base's order;
/// each one the update carries is written as soon as it is decoded and applied to the base
/// ([`apply_update_to_source`]: added, or replacing an integer tensor), the others as they are.
/// The base is read in place and each of its tensors is let go once written; the update is
/// never held whole.
fn onto_base(
    decoder: StreamDecoder<'_>,
    base: Vec<TensorSource<'static>>,
    output: &Destination,
    state: &mut DecoderState,
    metadata: &SafetensorsMetadata,
) -> anyhow::Result<()> {
    // Each updated tensor comes out in the update's dtype (the model's, see `apply_update`).
    let updated: HashMap<String, DType> = decoder
        .plan()
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.dtype))
        .collect();
    ensure_in_base(
        &base,
        decoder.plan().tensors.iter().map(|t| t.name.as_str()),
    )?;
    let plan: Vec<TensorSpec> = base
        .iter()
        .map(|b| TensorSpec {
            name: b.name().to_string(),
            shape: b.shape().to_vec(),
            dtype: updated.get(b.name()).copied().unwrap_or_else(|| b.dtype()),
        })
        .collect();
    let mut base: Vec<Option<TensorSource<'static>>> = base.into_iter().map(Some).collect();
    output.write(&plan, metadata, |put| {
        // Decoded tensors wait here until every base tensor before them is written; the
        // encoder codes tensors in the order it was given, so with the base's order nothing waits.
        let mut decoded: HashMap<String, Tensor> = HashMap::new();
        let mut next = 0;
        let mut write_ready = |decoded: &mut HashMap<String, Tensor>| -> anyhow::Result<()> {
            while let Some(slot) = base.get_mut(next) {
                let Some(b) = slot.as_ref() else { break };
                let out = if updated.contains_key(b.name()) {
                    match decoded.remove(b.name()) {
                        Some(u) => Cow::Owned(apply_update_to_source(b, u)?),
                        None => break,
                    }
                } else {
                    b.to_tensor()
                };
                put(&out)?;
                *slot = None;
                next += 1;
            }
            Ok(())
        };
        decoder.run(state, |t| {
            decoded.insert(t.tensor.name.clone(), t.tensor);
            write_ready(&mut decoded)
        })?;
        write_ready(&mut decoded)
    })
}

/// `Ok(false)` for a tensor other than planned (the caller then decodes in memory), the error
/// with the input named for a decoding error, other errors as they are.
fn not_as_planned_is_false(
    result: anyhow::Result<()>,
    decoding: impl Fn() -> String,
) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e)
            if matches!(
                e.downcast_ref::<IoError>(),
                Some(IoError::NotAsPlanned { .. })
            ) =>
        {
            Ok(false)
        }
        Err(e) if e.downcast_ref::<nnc_tensor::Error>().is_some() => Err(e.context(decoding())),
        Err(e) => Err(e),
    }
}

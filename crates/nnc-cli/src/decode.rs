//! `nnc decode` to a file, tensor by tensor.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use nnc_nn::io::{IoError, TensorWriter};
use nnc_tensor::{DType, DecodeOptions, DecoderState, StreamDecoder, Tensor, TensorSpec};

use crate::files::write_atomically;
use crate::update::{apply_update, ensure_in_base};

/// Decodes `bytes` into `output`, writing each tensor as soon as it is decoded (the output file's
/// layout comes from the stream's plan), or with a `base` model, the base plus the update (see
/// [`onto_base`]). Returns `false`, having written nothing and left `state` to be reloaded, when
/// a tensor turns out other than planned (a recorded integer dtype that cannot hold the decoded
/// values): the caller then decodes in memory.
pub fn streaming(
    bytes: &[u8],
    input: &Path,
    base: Option<Vec<Tensor>>,
    output: &Path,
    state: &mut DecoderState,
    opts: &DecodeOptions,
) -> anyhow::Result<bool> {
    let decoding = || format!("decoding {}", input.display());
    let decoder = StreamDecoder::new(bytes, opts).with_context(decoding)?;
    let result = match base {
        Some(base) => onto_base(decoder, base, output, state),
        None => {
            let plan = decoder.plan().tensors.clone();
            write_atomically(output, |tmp| {
                let mut writer = TensorWriter::create(tmp, &plan)?;
                decoder.run(state, |t| {
                    writer.write(&t.tensor).map_err(anyhow::Error::from)
                })?;
                writer.finish()?;
                Ok(())
            })
        }
    };
    not_as_planned_is_false(result, decoding)
}

/// An update added to a base model: the output has the base's tensors in the base's order;
/// each one the update carries is written as soon as it is decoded and applied to the base
/// ([`apply_update`]: added, or replacing an integer tensor), the others as they are. The base
/// is held in memory and its tensors are dropped once written; the update is never held whole.
fn onto_base(
    decoder: StreamDecoder<'_>,
    base: Vec<Tensor>,
    output: &Path,
    state: &mut DecoderState,
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
            name: b.name.clone(),
            shape: b.shape.clone(),
            dtype: updated.get(&b.name).copied().unwrap_or_else(|| b.dtype()),
        })
        .collect();
    let mut base: Vec<Option<Tensor>> = base.into_iter().map(Some).collect();
    write_atomically(output, |tmp| {
        let mut writer = TensorWriter::create(tmp, &plan)?;
        // Decoded tensors wait here until every base tensor before them is written; the
        // encoder codes tensors in the order it was given, so with the base's order nothing waits.
        let mut decoded: HashMap<String, Tensor> = HashMap::new();
        let mut next = 0;
        let mut write_ready = |decoded: &mut HashMap<String, Tensor>| -> anyhow::Result<()> {
            while let Some(slot) = base.get_mut(next) {
                let Some(b) = slot.as_ref() else { break };
                let sum = if updated.contains_key(&b.name) {
                    match decoded.remove(&b.name) {
                        Some(u) => Some(apply_update(b, &u)?),
                        None => break,
                    }
                } else {
                    None
                };
                writer.write(sum.as_ref().unwrap_or(b))?;
                *slot = None;
                next += 1;
            }
            Ok(())
        };
        decoder.run(state, |t| {
            decoded.insert(t.tensor.name.clone(), t.tensor);
            write_ready(&mut decoded)
        })?;
        write_ready(&mut decoded)?;
        writer.finish()?;
        Ok(())
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

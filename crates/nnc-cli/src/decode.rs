//! `nnc decode` to a file, tensor by tensor.

use std::path::Path;

use anyhow::Context;
use nnc_nn::io::{IoError, TensorWriter};
use nnc_tensor::{DecodeOptions, DecoderState, StreamDecoder};

use crate::files::write_atomically;

/// Decodes `bytes` into `output`, writing each tensor as soon as it is decoded (the output file's
/// layout comes from the stream's plan). Returns `false`, having written nothing and left
/// `state` to be reloaded, when a tensor turns out other than planned (a recorded integer dtype
/// that cannot hold the decoded values): the caller then decodes in memory.
pub fn streaming(
    bytes: &[u8],
    input: &Path,
    output: &Path,
    state: &mut DecoderState,
    opts: &DecodeOptions,
) -> anyhow::Result<bool> {
    let decoding = || format!("decoding {}", input.display());
    let decoder = StreamDecoder::new(bytes, opts).with_context(decoding)?;
    let plan = decoder.plan().tensors.clone();
    let result = write_atomically(output, |tmp| {
        let mut writer = TensorWriter::create(tmp, &plan)?;
        decoder.run(state, |t| {
            writer.write(&t.tensor).map_err(anyhow::Error::from)
        })?;
        writer.finish()?;
        Ok(())
    });
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

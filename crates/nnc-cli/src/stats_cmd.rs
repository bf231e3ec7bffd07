//! `nnc stats`: per-tensor size and bits per parameter from a bitstream alone.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use nnc_tensor::{decode_stream_with, Approximation, DecodeOptions, DecodedTensor, DecoderState};

use crate::progress::Progress;
use crate::report::{self, Row};

/// What `nnc stats` keeps of a decoded tensor: everything but its values, so a stream is
/// summarised in the decoder's window of memory, not the whole model's.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    name: String,
    shape: Vec<usize>,
    dtype: &'static str,
    qp: Option<i32>,
    params: usize,
    /// Values coded (the levels where the decoder kept them, else the tensor's values).
    coded: usize,
}

impl Summary {
    /// The summary of a decoded tensor.
    pub fn of(d: &DecodedTensor) -> Self {
        Self {
            name: d.tensor.name.clone(),
            shape: d.tensor.shape.clone(),
            dtype: d.tensor.dtype().numpy_name(),
            qp: match d.approximation {
                Approximation::Uniform { qp, .. } | Approximation::Codebook { qp, .. } => Some(qp),
                _ => None,
            },
            params: d.tensor.len(),
            coded: d.levels.as_ref().map_or(d.tensor.len(), Vec::len),
        }
    }
}

/// The rows of `nnc stats`: one per decoded tensor, in stream order.
pub fn rows(bytes: &[u8], decoded: &[Summary]) -> anyhow::Result<Vec<Row>> {
    let sizes: BTreeMap<&str, usize> = decoded.iter().map(|d| (d.name.as_str(), d.coded)).collect();
    let ndu = report::ndu_bytes(bytes, &sizes)?;
    Ok(decoded
        .iter()
        .map(|d| Row {
            name: d.name.clone(),
            shape: d.shape.clone(),
            dtype: d.dtype,
            qp: d.qp,
            bits: ndu.get(&d.name).copied().unwrap_or(0.0) * 8.0,
            params: d.params,
            rel_error: None,
            psnr_db: None,
        })
        .collect())
}

/// Number of units up to the first malformed one: known before decoding and, minus the stream
/// header and parameter-set units, the number of NDUs (one or more tensors each).
pub fn unit_count(bytes: &[u8]) -> usize {
    let mut reader = nnc_bitstream::UnitReader::new(bytes);
    let mut n = 0;
    while let Ok(Some(_)) = reader.next() {
        n += 1;
    }
    n
}

/// Decodes `bytes` tensor by tensor, keeping only each one's [`Summary`].
pub fn summarise(bytes: &[u8]) -> Result<Vec<Summary>, nnc_tensor::Error> {
    let mut out = Vec::new();
    let opts = DecodeOptions::new()
        .with_keep_levels(false)
        .with_update_state(false);
    decode_stream_with(bytes, &mut DecoderState::default(), &opts, |d| {
        out.push(Summary::of(&d));
        Ok::<(), nnc_tensor::Error>(())
    })?;
    Ok(out)
}

/// Runs `nnc stats`.
pub fn run(input: &Path, json: bool, quiet: bool) -> anyhow::Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let progress = Progress::new(quiet);
    progress.show_for(unit_count(&bytes));
    progress.stage(format!("decoding {}", input.display()));
    let decoded = summarise(&bytes).with_context(|| format!("decoding {}", input.display()))?;
    let rows = rows(&bytes, &decoded)?;
    progress.finish();
    report::print(&rows, bytes.len(), json, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_tensor::{decode_stream, encode, EncodeInput, EncodeOptions, Tensor, TensorData};

    #[test]
    fn sizes_add_up_to_the_stream_and_follow_the_data() {
        let t = |name: &str, shape: Vec<usize>, scale: f32| {
            let n: usize = shape.iter().product();
            let data = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * scale)
                .collect();
            Tensor::try_new(name, shape, TensorData::F32(data)).expect("tensor")
        };
        // The same shape twice, one with 100x the spread: more levels, more bytes.
        let tensors = vec![
            t("a.weight", vec![32, 16], 1e-3),
            t("b.weight", vec![32, 16], 1e-1),
            t("b.bias", vec![32], 1e-2),
        ];
        let stream = encode(
            EncodeInput::from_tensors(&tensors).expect("input"),
            &EncodeOptions::default(),
        )
        .expect("encode");
        let decoded = decode_stream(
            &stream.bytes,
            &mut DecoderState::default(),
            &DecodeOptions::new(),
        )
        .expect("decode");
        // Tensor by tensor, without the levels: what the whole decode says.
        let summaries = summarise(&stream.bytes).expect("summaries");
        let whole: Vec<Summary> = decoded.tensors.iter().map(Summary::of).collect();
        assert_eq!(summaries, whole);
        let rows = rows(&stream.bytes, &summaries).expect("rows");
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a.weight", "b.weight", "b.bias"]);
        assert_eq!(rows[0].shape, [32, 16]);
        assert_eq!(rows[0].qp, Some(-32));
        assert_eq!(rows[2].qp, Some(-75));
        assert!(rows.iter().all(|r| r.bits > 0.0));
        assert!(rows[1].bits > rows[0].bits, "{rows:?}");
        let tensor_bytes: f64 = rows.iter().map(|r| r.bits / 8.0).sum();
        assert!(tensor_bytes < stream.bytes.len() as f64);
        // The rest is the stream header and parameter sets: a few dozen bytes.
        assert!(stream.bytes.len() as f64 - tensor_bytes < 64.0);
        // Stream header, model parameter set, topology unit, one NDU per tensor.
        assert_eq!(unit_count(&stream.bytes), 3 + 3);
        assert_eq!(unit_count(&stream.bytes[..stream.bytes.len() - 1]), 5);
    }
}

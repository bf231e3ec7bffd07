//! `nnc stats`: per-tensor size and bits per parameter from a bitstream's unit headers.

use std::path::Path;

use anyhow::Context;
use nnc_tensor::{summarise_stream, DecodeOptions, DecoderState, TensorSummary};

use crate::report::{self, Row};

/// The rows of `nnc stats`: one per output tensor, in output order.
pub fn rows(summary: &[TensorSummary]) -> Vec<Row> {
    summary
        .iter()
        .map(|t| Row {
            name: t.spec.name.clone(),
            shape: t.spec.shape.clone(),
            dtype: t.spec.dtype.numpy_name(),
            qp: t.qp,
            bits: t.bytes * 8.0,
            params: t.spec.shape.iter().product(),
            rel_error: None,
            psnr_db: None,
        })
        .collect()
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

/// Runs `nnc stats`: the stream's unit headers and each tensor's QP, no decode of the values,
/// so no state is needed for an incremental update either.
pub fn run(input: &Path, json: bool, opts: &DecodeOptions) -> anyhow::Result<()> {
    let bytes = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let summary = summarise_stream(&bytes, &DecoderState::default(), opts)
        .with_context(|| format!("reading {}", input.display()))?;
    report::print(&rows(&summary), bytes.len(), json, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_tensor::{encode, EncodeInput, EncodeOptions, Tensor, TensorData};

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
        let summary = summarise_stream(
            &stream.bytes,
            &DecoderState::default(),
            &DecodeOptions::new(),
        )
        .expect("summary");
        let rows = rows(&summary);
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

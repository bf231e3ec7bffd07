//! Per-tensor compression report: size, bits per parameter, error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use nnc_tensor::encode::{ParameterData, TensorSource};
use nnc_tensor::{
    summarise_stream, Approximation, DecodeOptions, DecoderState, EncodedStream, EncodedTensor,
    TensorData, TensorSummary,
};
use serde_json::json;

use crate::progress::Progress;

/// One line of the report.
#[derive(Debug)]
pub struct Row {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: &'static str,
    pub qp: Option<i32>,
    pub bits: f64,
    pub params: usize,
    pub rel_error: Option<f64>,
    pub psnr_db: Option<f64>,
}

/// Elements compared at a time: the report holds two blocks of this many `f64`, never a whole
/// tensor's.
const BLOCK: usize = 1 << 14;

/// Writes the original values `start..start + out.len()` of `t` as `f64`; false for tensors
/// whose error is not measured (integers).
fn original_values(t: &TensorSource<'_>, start: usize, out: &mut [f64]) -> bool {
    let end = start + out.len();
    let widen = |out: &mut [f64], v: &[f32]| {
        for (o, &x) in out.iter_mut().zip(&v[start..end]) {
            *o = f64::from(x);
        }
    };
    match t {
        TensorSource::Elements(e) => match e.data() {
            ParameterData::F32(v) => widen(out, v),
            ParameterData::I32(_) => return false,
        },
        TensorSource::Tensor(t) => match &t.data {
            TensorData::F64(v) => out.copy_from_slice(&v[start..end]),
            TensorData::F32(v) => widen(out, v),
            TensorData::F16(v) => {
                for (o, &b) in out.iter_mut().zip(&v[start..end]) {
                    *o = f64::from(half::f16::from_bits(b).to_f32());
                }
            }
            TensorData::BF16(v) => {
                for (o, &b) in out.iter_mut().zip(&v[start..end]) {
                    *o = f64::from(half::bf16::from_bits(b).to_f32());
                }
            }
            _ => return false,
        },
    }
    true
}

/// Writes the decoder's values for `levels` into `out` (as long); `None` when they cannot be
/// reconstructed.
fn reconstruction(levels: &[i32], approx: &Approximation, out: &mut [f64]) -> Option<()> {
    match approx {
        Approximation::Uniform { qp, qp_density, .. } => {
            let mut block = [0f32; BLOCK];
            let block = &mut block[..levels.len()];
            nnc_quant::dequantize_uniform(levels, *qp, *qp_density, block).ok()?;
            for (o, &y) in out.iter_mut().zip(block.iter()) {
                *o = f64::from(y);
            }
        }
        Approximation::Codebook {
            qp,
            qp_density,
            codebook,
            codebook_zero_offset,
        } => nnc_quant::dequantize_codebook(
            levels,
            codebook,
            *codebook_zero_offset,
            *qp,
            *qp_density,
            out,
        )
        .ok()?,
        _ => {
            for (o, &l) in out.iter_mut().zip(levels) {
                *o = f64::from(l);
            }
        }
    }
    Some(())
}

/// Relative error and PSNR of `coded` against the original `t`, a block at a time; `None`
/// where undefined or not measured.
fn error_of(t: &TensorSource<'_>, coded: &EncodedTensor) -> (Option<f64>, Option<f64>) {
    let n = coded.levels.len();
    if n != t.shape().iter().product::<usize>() {
        return (None, None);
    }
    let mut x = vec![0f64; n.min(BLOCK)];
    let mut y = vec![0f64; n.min(BLOCK)];
    let (mut err, mut energy, mut peak) = (0f64, 0f64, 0f64);
    for start in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - start);
        let (x, y) = (&mut x[..len], &mut y[..len]);
        if !original_values(t, start, x) {
            return (None, None);
        }
        let levels = &coded.levels[start..start + len];
        if reconstruction(levels, &coded.approximation, y).is_none() {
            return (None, None);
        }
        for (a, b) in x.iter().zip(y.iter()) {
            err += (a - b) * (a - b);
            energy += a * a;
            peak = peak.max(a.abs());
        }
    }
    let mse = err / n.max(1) as f64;
    // An all-zero tensor kept exactly has relative error 0, not "undefined".
    let rel = match (energy > 0.0, err == 0.0) {
        (true, _) => Some((err / energy).sqrt()),
        (false, true) => Some(0.0),
        (false, false) => None,
    };
    (
        rel,
        (mse > 0.0 && peak > 0.0).then(|| 10.0 * (peak * peak / mse).log10()),
    )
}

/// The report rows for every input tensor, in input order; `progress` ticks once per tensor.
/// The inputs are the tensors as read (or their views, [`TensorSource::view`], when the encoder
/// was given views of them).
pub fn rows(
    stream: &EncodedStream,
    inputs: &[TensorSource<'_>],
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    // The same shares `nnc stats` reports for the written file.
    let summary = summarise_stream(
        &stream.bytes,
        &DecoderState::default(),
        &DecodeOptions::new(),
    )?;
    let by_name: BTreeMap<&str, &TensorSummary> =
        summary.iter().map(|t| (t.spec.name.as_str(), t)).collect();
    // Tensors a batch-norm folding replaced: the coded scaling and bias stand for them, so their
    // values are not compared with the originals.
    let replaced: BTreeSet<&str> = stream
        .folded
        .iter()
        .flat_map(|f| f.unfolded_names())
        .collect();
    let mut out = Vec::new();
    progress.steps("measuring the error", inputs.len());
    for t in inputs {
        progress.step();
        let name = t.name();
        let coded = (!replaced.contains(name))
            .then(|| stream.tensors.iter().find(|e| e.name == name))
            .flatten();
        let (rel_error, psnr_db) = coded.map_or((None, None), |e| error_of(t, e));
        let summary = by_name.get(name);
        out.push(Row {
            name: name.to_string(),
            shape: t.shape().to_vec(),
            dtype: t.dtype().numpy_name(),
            qp: coded
                .and_then(|e| e.approximation.qp())
                .or_else(|| summary.and_then(|s| s.qp)),
            bits: summary.map_or(0.0, |s| s.bytes) * 8.0,
            params: t.shape().iter().product(),
            rel_error,
            psnr_db,
        });
    }
    // Coded tensors the model did not have (a folded block's scaling and bias, when the stream
    // carries no metadata to unfold them): their bytes, no parameters of the model.
    for s in &summary {
        if inputs.iter().all(|t| t.name() != s.spec.name) {
            out.push(Row {
                name: s.spec.name.clone(),
                shape: s.spec.shape.clone(),
                dtype: s.spec.dtype.numpy_name(),
                qp: s.qp,
                bits: s.bytes * 8.0,
                params: 0,
                rel_error: None,
                psnr_db: None,
            });
        }
    }
    Ok(out)
}

/// Bits per parameter; none for no parameters (an empty tensor).
pub fn per_param(bits: f64, params: usize) -> Option<f64> {
    (params > 0).then(|| bits / params as f64)
}

/// Mean of the per-tensor relative errors that are defined.
fn mean_rel_error(rows: &[Row]) -> Option<f64> {
    let errs: Vec<f64> = rows.iter().filter_map(|r| r.rel_error).collect();
    (!errs.is_empty()).then(|| errs.iter().sum::<f64>() / errs.len() as f64)
}

/// Prints the rows and totals as a table or as JSON. `stream_bytes` is the whole bitstream: what
/// the rows do not account for is shown as headers (parameter sets, topology, metadata).
/// `with_error` adds the relative error and PSNR columns.
pub fn print(
    rows: &[Row],
    stream_bytes: usize,
    json: bool,
    with_error: bool,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let tensor_bytes: f64 = rows.iter().map(|r| r.bits / 8.0).sum();
    let header_bytes = (stream_bytes as f64 - tensor_bytes).max(0.0).round();
    let total_params: usize = rows.iter().map(|r| r.params).sum();
    let bits_per_param = per_param(stream_bytes as f64 * 8.0, total_params);
    let mean_rel = mean_rel_error(rows);
    if json {
        let tensors: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut row = json!({
                    "name": r.name, "shape": r.shape, "dtype": r.dtype, "qp": r.qp,
                    "bytes": r.bits / 8.0, "bits_per_param": per_param(r.bits, r.params),
                });
                if with_error {
                    row["rel_error"] = json!(r.rel_error);
                    row["psnr_db"] = json!(r.psnr_db);
                }
                row
            })
            .collect();
        let mut total = json!({
            "params": total_params, "bytes": stream_bytes, "header_bytes": header_bytes,
            "bits_per_param": bits_per_param,
        });
        if with_error {
            total["mean_rel_error"] = json!(mean_rel);
        }
        serde_json::to_writer_pretty(&mut out, &json!({"tensors": tensors, "total": total}))
            .map_err(std::io::Error::from)?;
        writeln!(out)?;
        return Ok(());
    }
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(36);
    let fmt_opt =
        |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    let mut header = format!(
        "{:<w$} {:>18} {:>8} {:>5} {:>12} {:>9}",
        "tensor", "shape", "dtype", "qp", "bytes", "bits/par"
    );
    if with_error {
        header.push_str(&format!(" {:>10} {:>8}", "rel.err", "PSNR dB"));
    }
    writeln!(out, "{}", header.trim_end())?;
    for r in rows {
        let mut line = format!(
            "{:<w$} {:>18} {:>8} {:>5} {:>12.1} {:>9}",
            r.name,
            format!("{:?}", r.shape),
            r.dtype,
            r.qp.map_or("-".into(), |q| q.to_string()),
            r.bits / 8.0,
            fmt_opt(per_param(r.bits, r.params), 3),
        );
        if with_error {
            line.push_str(&format!(
                " {:>10} {:>8}",
                fmt_opt(r.rel_error, 5),
                fmt_opt(r.psnr_db, 2)
            ));
        }
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "{:<w$} {:>18} {:>8} {:>5} {:>12.0}",
        "(headers, parameter sets, metadata)", "", "", "", header_bytes
    )?;
    let mut total = format!(
        "{:<w$} {:>18} {:>8} {:>5} {:>12} {:>9}",
        "total",
        format!("{total_params} params"),
        "",
        "",
        stream_bytes,
        fmt_opt(bits_per_param, 3)
    );
    if with_error {
        total.push_str(&format!(" {:>10}", fmt_opt(mean_rel, 5)));
        total.push_str("  (mean)");
    }
    writeln!(out, "{total}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_tensor::encode::NamedElements;
    use nnc_tensor::{
        decode_stream, encode, DecodeOptions, DecoderState, EncodeInput, EncodeOptions, Tensor,
    };

    #[test]
    fn errors_are_measured_block_by_block_as_over_the_whole_tensor() {
        let n = 2 * BLOCK + 123;
        let w: Vec<f32> = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 900.0)
            .collect();
        let tensors = [
            Tensor::try_new("w", vec![n], TensorData::F32(w.clone())).unwrap(),
            Tensor::try_new("ids", vec![3], TensorData::I32(vec![1, -2, 3])).unwrap(),
        ];
        let stream = encode(
            EncodeInput::from_tensors(&tensors).unwrap(),
            &EncodeOptions::default(),
        )
        .unwrap();
        let decoded = decode_stream(
            &stream.bytes,
            &mut DecoderState::default(),
            &DecodeOptions::default(),
        )
        .unwrap();
        let y = match &decoded
            .tensors
            .iter()
            .find(|t| t.tensor.name == "w")
            .unwrap()
            .tensor
            .data
        {
            TensorData::F32(y) => y.clone(),
            other => panic!("decoded as {other:?}"),
        };
        // Over the whole tensor at once, from the decoder's values.
        let x: Vec<f64> = w.iter().map(|&a| f64::from(a)).collect();
        let err: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, &b)| (a - f64::from(b)).powi(2))
            .sum();
        let energy: f64 = x.iter().map(|a| a * a).sum();
        let peak = x.iter().fold(0f64, |m, a| m.max(a.abs()));
        assert!(err > 0.0);
        let rel = (err / energy).sqrt();
        let psnr = 10.0 * (peak * peak / (err / n as f64)).log10();

        let quiet = Progress::new(true);
        let lent: Vec<TensorSource<'_>> = tensors.iter().map(TensorSource::from).collect();
        let by_tensor = rows(&stream, &lent, &quiet).unwrap();
        assert_eq!(
            (by_tensor[0].rel_error, by_tensor[0].psnr_db),
            (Some(rel), Some(psnr))
        );
        // Integer tensors have no error to measure.
        assert_eq!((by_tensor[1].rel_error, by_tensor[1].psnr_db), (None, None));

        // The same elements read in place report the same.
        let in_place = [
            TensorSource::from(
                NamedElements::try_new("w", vec![n], ParameterData::from(w)).unwrap(),
            ),
            TensorSource::from(&tensors[1]),
        ];
        let by_elements = rows(&stream, &in_place, &quiet).unwrap();
        for (a, b) in by_tensor.iter().zip(&by_elements) {
            assert_eq!(
                (
                    &a.name,
                    &a.shape,
                    a.dtype,
                    a.qp,
                    a.bits,
                    a.params,
                    a.rel_error,
                    a.psnr_db
                ),
                (
                    &b.name,
                    &b.shape,
                    b.dtype,
                    b.qp,
                    b.bits,
                    b.params,
                    b.rel_error,
                    b.psnr_db
                )
            );
        }
    }
}

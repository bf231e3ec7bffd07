//! Per-tensor compression report: size, bits per parameter, error.

use std::collections::BTreeMap;
use std::io::Write;

use nnc_tensor::{Approximation, EncodedStream, Tensor, TensorData};
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

/// Bytes of each tensor's NDUs in `bytes`; an NDU carrying several tensors (a block) is shared
/// in proportion to their element counts `sizes`.
pub fn ndu_bytes(
    bytes: &[u8],
    sizes: &BTreeMap<&str, usize>,
) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let mut ctx = nnc_bitstream::ParseContext::default();
    let mut reader = nnc_bitstream::UnitReader::new(bytes);
    while let Some(raw) = reader.next()? {
        let len = raw.bytes.len();
        let parsed = nnc_bitstream::parse_unit(raw, &mut ctx, &Default::default())?;
        if let nnc_bitstream::NnrUnit::Ndu { header, .. } = &parsed.unit {
            let names: Vec<String> = match (&header.topology_elem_id, &header.topology_elem_id_list)
            {
                (Some(n), _) => vec![n.clone()],
                (None, Some(list)) => list.clone(),
                _ => Vec::new(),
            };
            let total: usize = names
                .iter()
                .map(|n| sizes.get(n.as_str()).copied().unwrap_or(0))
                .sum();
            for n in names {
                let share = match total {
                    0 => 1.0,
                    _ => sizes.get(n.as_str()).copied().unwrap_or(0) as f64 / total as f64,
                };
                *out.entry(n).or_insert(0.0) += len as f64 * share;
            }
        }
    }
    Ok(out)
}

fn values_f64(t: &Tensor) -> Option<Vec<f64>> {
    match &t.data {
        TensorData::F64(v) => Some(v.clone()),
        TensorData::F32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
        d => d
            .as_f32_lossless()
            .map(|v| v.iter().map(|&x| f64::from(x)).collect()),
    }
}

fn reconstruction(levels: &[i32], approx: &Approximation) -> Option<Vec<f64>> {
    match approx {
        Approximation::Uniform { qp, qp_density, .. } => {
            let mut out = vec![0f32; levels.len()];
            nnc_quant::dequantize_uniform(levels, *qp, *qp_density, &mut out).ok()?;
            Some(out.into_iter().map(f64::from).collect())
        }
        Approximation::Codebook {
            qp,
            qp_density,
            codebook,
            codebook_zero_offset,
        } => {
            let mut out = vec![0f64; levels.len()];
            nnc_quant::dequantize_codebook(
                levels,
                codebook,
                *codebook_zero_offset,
                *qp,
                *qp_density,
                &mut out,
            )
            .ok()?;
            Some(out)
        }
        _ => Some(levels.iter().map(|&l| f64::from(l)).collect()),
    }
}

/// The report rows for every input tensor, in input order; `progress` ticks once per tensor.
pub fn rows(
    stream: &EncodedStream,
    inputs: &[Tensor],
    progress: &Progress,
) -> anyhow::Result<Vec<Row>> {
    let sizes: BTreeMap<&str, usize> = stream
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.levels.len()))
        .collect();
    let bytes = ndu_bytes(&stream.bytes, &sizes)?;
    let mut out = Vec::new();
    progress.steps("measuring the error", inputs.len());
    for t in inputs {
        progress.step();
        let coded = stream.tensors.iter().find(|e| e.name == t.name);
        let (rel_error, psnr_db) = match (coded, values_f64(t)) {
            (Some(e), Some(x)) => match reconstruction(&e.levels, &e.approximation) {
                Some(y) if y.len() == x.len() => {
                    let err: f64 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum();
                    let energy: f64 = x.iter().map(|a| a * a).sum();
                    let peak = x.iter().fold(0f64, |m, a| m.max(a.abs()));
                    let mse = err / x.len().max(1) as f64;
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
                _ => (None, None),
            },
            _ => (None, None),
        };
        out.push(Row {
            name: t.name.clone(),
            shape: t.shape.clone(),
            dtype: t.dtype().numpy_name(),
            qp: coded.and_then(|e| match e.approximation {
                Approximation::Uniform { qp, .. } | Approximation::Codebook { qp, .. } => Some(qp),
                _ => None,
            }),
            bits: bytes.get(&t.name).copied().unwrap_or(0.0) * 8.0,
            params: t.len(),
            rel_error,
            psnr_db,
        });
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

//! Per-tensor compression report: size, bits per parameter, error.

use std::collections::BTreeMap;
use std::io::Write;

use nnc_tensor::{Approximation, EncodedStream, Tensor, TensorData};
use serde_json::json;

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

/// Bytes of each NDU, attributed to its tensors in proportion to their element counts.
fn bytes_per_tensor(stream: &EncodedStream) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let mut ctx = nnc_bitstream::ParseContext::default();
    let mut reader = nnc_bitstream::UnitReader::new(&stream.bytes);
    let sizes: BTreeMap<&str, usize> = stream
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.levels.len()))
        .collect();
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
                let share =
                    sizes.get(n.as_str()).copied().unwrap_or(0) as f64 / total.max(1) as f64;
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

/// The report rows for every input tensor, in input order.
pub fn rows(stream: &EncodedStream, inputs: &[Tensor]) -> anyhow::Result<Vec<Row>> {
    let bytes = bytes_per_tensor(stream)?;
    let mut out = Vec::new();
    for t in inputs {
        let coded = stream.tensors.iter().find(|e| e.name == t.name);
        let (rel_error, psnr_db) = match (coded, values_f64(t)) {
            (Some(e), Some(x)) => match reconstruction(&e.levels, &e.approximation) {
                Some(y) if y.len() == x.len() => {
                    let err: f64 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum();
                    let energy: f64 = x.iter().map(|a| a * a).sum();
                    let peak = x.iter().fold(0f64, |m, a| m.max(a.abs()));
                    let mse = err / x.len().max(1) as f64;
                    (
                        (energy > 0.0).then(|| (err / energy).sqrt()),
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

/// Prints the rows as a table (and totals) or as JSON.
pub fn print(rows: &[Row], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let total_bits: f64 = rows.iter().map(|r| r.bits).sum();
    let total_params: usize = rows.iter().map(|r| r.params).sum();
    if json {
        let tensors: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name, "shape": r.shape, "dtype": r.dtype, "qp": r.qp,
                    "bytes": r.bits / 8.0, "bits_per_param": r.bits / r.params.max(1) as f64,
                    "rel_error": r.rel_error, "psnr_db": r.psnr_db,
                })
            })
            .collect();
        let doc = json!({
            "tensors": tensors,
            "total": {"params": total_params, "bytes": total_bits / 8.0,
                      "bits_per_param": total_bits / total_params.max(1) as f64},
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    let fmt_opt =
        |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
    writeln!(
        out,
        "{:<40} {:>18} {:>8} {:>5} {:>10} {:>9} {:>10} {:>8}",
        "tensor", "shape", "dtype", "qp", "bytes", "bits/par", "rel.err", "PSNR dB"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<40} {:>18} {:>8} {:>5} {:>10.1} {:>9.3} {:>10} {:>8}",
            r.name,
            format!("{:?}", r.shape),
            r.dtype,
            r.qp.map_or("-".into(), |q| q.to_string()),
            r.bits / 8.0,
            r.bits / r.params.max(1) as f64,
            fmt_opt(r.rel_error, 5),
            fmt_opt(r.psnr_db, 2),
        )?;
    }
    writeln!(
        out,
        "{:<40} {:>18} {:>8} {:>5} {:>10.1} {:>9.3}",
        "total",
        format!("{total_params} params"),
        "",
        "",
        total_bits / 8.0,
        total_bits / total_params.max(1) as f64
    )?;
    Ok(())
}

//! Rough single-threaded throughput of the quantizers on a 1024×1024 Laplacian tensor.
use nnc_quant::{quantize_layer, QuantizeOptions};
use std::time::Instant;

fn main() {
    let n = 1024 * 1024;
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let w: Vec<f32> = (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let u = ((seed >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let l = if u < 0.5 {
                (2.0 * u).ln()
            } else {
                -(2.0 * (1.0 - u)).ln()
            };
            (l * 0.01) as f32
        })
        .collect();
    for (dq, lambda) in [(false, 0.0f32), (true, 0.0), (false, 1.0), (true, 1.0)] {
        let opts = QuantizeOptions {
            dq_flag: dq,
            qp: -28,
            lambda_scale: lambda,
            ..QuantizeOptions::default()
        };
        let t = Instant::now();
        let q = quantize_layer(&w, &[1024, 1024], &opts).expect("quantizes");
        let s = t.elapsed().as_secs_f64();
        let mean = q
            .levels
            .iter()
            .map(|l| l.unsigned_abs() as f64)
            .sum::<f64>()
            / n as f64;
        println!(
            "dq {dq} λ {lambda}: {:.1} M elem/s (mean |level| {mean:.2})",
            n as f64 / s / 1e6
        );
    }
}

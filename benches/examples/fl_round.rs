//! Times federated rounds at a model's size: one client's [`ClientCodec::send`], the server's
//! [`ServerCodec::aggregate`] of its message and the client's [`ClientCodec::receive`] of the
//! answer, each round from the states the round before left.
//!
//! `cargo run --release -p nnc-benches --example fl_round -- [--values N] [--threads N]
//! [--dense] [--rounds R] [--no-err-acc] [--verify]`
//!
//! The default is a MiniLM-sized model (22.7 M values in 384 × 1536 tensors) with the EuCNC 2025
//! settings of `shared/fl` (qp −18, sparsity 0.8, structured factor 0.9, TCA); `--dense` codes
//! every value at qp −32 instead. `--no-err-acc` turns error accumulation off, `--verify` turns
//! `verify_messages` on (each side decodes what it sends). Local training is the global model
//! plus fresh normals.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use nnc_benches::randn_f32;
use nnc_fl::{ClientCodec, ClientMessage, FlOptions, Layout, ServerCodec, TensorSpec};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let (mut values, mut threads, mut dense, mut rounds) = (22_700_000usize, Some(1), false, 4);
    let (mut no_err_acc, mut verify) = (false, false);
    while !args.is_empty() {
        let value = args.get(1).and_then(|v| v.parse::<usize>().ok());
        match args[0].as_str() {
            "--values" => values = value.unwrap_or(values),
            "--threads" => threads = value,
            "--rounds" => rounds = value.unwrap_or(rounds).max(2),
            flag @ ("--dense" | "--no-err-acc" | "--verify") => {
                match flag {
                    "--dense" => dense = true,
                    "--no-err-acc" => no_err_acc = true,
                    _ => verify = true,
                }
                args.remove(0);
                continue;
            }
            other => panic!("unknown argument {other:?}"),
        }
        args.drain(..2.min(args.len()));
    }

    const ROWS: usize = 384;
    const COLS: usize = 1536;
    let specs: Vec<TensorSpec> = (0..values.div_ceil(ROWS * COLS).max(1))
        .map(|i| TensorSpec::new(format!("layer{i}.weight"), vec![ROWS, COLS]))
        .collect();
    let layout = Layout::new(specs).unwrap();
    let n = layout.num_values();
    let opts = FlOptions {
        tca: true,
        threads,
        err_accumulation: !no_err_acc,
        verify_messages: verify,
        ..if dense {
            FlOptions::compressed(-32)
        } else {
            FlOptions {
                sparsity: 0.8,
                struct_spars_factor: 0.9,
                ..FlOptions::compressed(-18)
            }
        }
    };
    println!(
        "{n} values in {} tensors, {}, threads {threads:?}, err_accumulation {}, verify_messages {verify}",
        layout.specs().len(),
        if dense {
            "dense, qp -32"
        } else {
            "qp -18, sparsity 0.8, struct 0.9"
        },
        !no_err_acc
    );

    let initial = randn_f32(n, 0.05, 1);
    let mut server = ServerCodec::new(layout.clone(), opts.clone(), initial).unwrap();
    let mut client = ClientCodec::new(layout, opts, 1).unwrap();
    let mut global = client.receive(&server.initial_message()).unwrap();
    let mut best = [Duration::MAX; 3];
    for round in 1..=rounds {
        let noise = randn_f32(n, 0.01, 100 + round as u64);
        let local: Vec<f32> = global.iter().zip(&noise).map(|(g, e)| g + e).collect();
        let t0 = Instant::now();
        let up = client.send(&local).unwrap();
        let t1 = Instant::now();
        let message = ClientMessage {
            device_id: 1,
            weight: 1,
            bytes: &up,
        };
        let down = server.aggregate(&[message]).unwrap();
        let t2 = Instant::now();
        global = client.receive(&down).unwrap();
        let t3 = Instant::now();
        let times = [t1 - t0, t2 - t1, t3 - t2];
        println!(
            "round {round}: send {:.3} s, aggregate {:.3} s, receive {:.3} s ({} and {} bytes)",
            times[0].as_secs_f64(),
            times[1].as_secs_f64(),
            times[2].as_secs_f64(),
            up.len(),
            down.len()
        );
        // The first round codes without a TCA base.
        if round > 1 {
            for (b, t) in best.iter_mut().zip(times) {
                *b = (*b).min(t);
            }
        }
    }
    println!(
        "best of rounds 2..{rounds}: send {:.3} s, aggregate {:.3} s, receive {:.3} s",
        best[0].as_secs_f64(),
        best[1].as_secs_f64(),
        best[2].as_secs_f64()
    );
}

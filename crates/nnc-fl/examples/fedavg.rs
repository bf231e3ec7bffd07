//! FedAvg on the scikit-learn 8×8 digits with 5 non-IID clients, uncompressed and NNC-compressed,
//! in the reference's setup (`shared/fl/ref_fl_digits.py`): the same test/client split, MLP
//! 64-128-10, one local epoch per round, batch 16, Adam lr 3e-3 created fresh every round.
//!
//! ```text
//! cargo xtask fetch-digits                       # once: the data into the cache
//! cargo run --release --example fedavg -p nnc-fl # 30 rounds, both runs, JSON line at the end
//! cargo run --release --example fedavg -p nnc-fl -- --table   # the docs/fl.md table
//! ```
//!
//! Options: `--rounds N`, `--seed S`, `--quiet`, `--synthetic` (no data needed), and for the
//! compressed run `--qp Q`, `--diff-qp Q`, `--nonweight-qp Q`, `--sparsity S`, `--struct F`,
//! `--tca`/`--no-tca`, `--dq`/`--no-dq`, `--row-skipping`, `--opt-qp`, `--no-err-acc`,
//! `--bitdepth B`, `--codebook` (`approx_method` codebook), `--no-param-opt`.

mod support;

use std::process::ExitCode;

use nnc_fl::{simulate, ApproxMethod, FlOptions, Layout, SimConfig, SimReport};
use support::{digits, mlp};

/// Our settings for the compressed run (see docs/fl.md for how they were chosen).
fn best_options() -> FlOptions {
    FlOptions {
        nonweight_qp: -16,
        sparsity: 0.8,
        use_dq: true,
        ..FlOptions::compressed(-12)
    }
}

struct Args {
    rounds: u32,
    seed: u64,
    quiet: bool,
    synthetic: bool,
    table: bool,
    opts: FlOptions,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        rounds: 30,
        seed: 808,
        quiet: false,
        synthetic: false,
        table: false,
        opts: best_options(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: bad value {v:?}"))
        }
        match flag.as_str() {
            "--rounds" => a.rounds = num(&flag, value(&flag)?)?,
            "--seed" => a.seed = num(&flag, value(&flag)?)?,
            "--quiet" => a.quiet = true,
            "--synthetic" => a.synthetic = true,
            "--table" => a.table = true,
            "--qp" => a.opts.qp = num(&flag, value(&flag)?)?,
            "--diff-qp" => a.opts.diff_qp = Some(num(&flag, value(&flag)?)?),
            "--nonweight-qp" => a.opts.nonweight_qp = num(&flag, value(&flag)?)?,
            "--sparsity" => a.opts.sparsity = num(&flag, value(&flag)?)?,
            "--struct" => a.opts.struct_spars_factor = num(&flag, value(&flag)?)?,
            "--bitdepth" => a.opts.bitdepth = Some(num(&flag, value(&flag)?)?),
            "--tca" => a.opts.tca = true,
            "--no-tca" => a.opts.tca = false,
            "--dq" => a.opts.use_dq = true,
            "--no-dq" => a.opts.use_dq = false,
            "--row-skipping" => a.opts.row_skipping = true,
            "--opt-qp" => a.opts.opt_qp = true,
            "--no-err-acc" => a.opts.err_accumulation = false,
            "--codebook" => a.opts.approx_method = ApproxMethod::Codebook,
            "--no-param-opt" => a.opts.param_opt = false,
            "-h" | "--help" => {
                return Err("see the doc comment at the top of examples/fedavg.rs".into())
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

struct Setup {
    trainer: mlp::MlpTrainer,
    layout: Layout,
    initial: Vec<f32>,
}

fn setup(args: &Args) -> Result<Setup, String> {
    let (data, split) = if args.synthetic {
        digits::synthetic(5, 280, 360, args.seed)
    } else {
        (digits::load_digits()?, digits::reference_split())
    };
    let trainer = mlp::MlpTrainer::new(data, split, 16, 3e-3).map_err(|e| e.to_string())?;
    let layout = mlp::layout(128);
    let initial = mlp::init_params(&layout, args.seed);
    Ok(Setup {
        trainer,
        layout,
        initial,
    })
}

fn run(s: &mut Setup, args: &Args, name: &str, opts: &FlOptions) -> Result<SimReport, String> {
    let cfg = SimConfig {
        clients: s.trainer.clients(),
        rounds: args.rounds,
        seed: args.seed,
        options: opts.clone(),
    };
    let quiet = args.quiet;
    simulate(&mut s.trainer, &s.layout, s.initial.clone(), &cfg, |r| {
        if !quiet {
            println!(
                "[{name}] round {:>2}  acc {:6.2} %  loss {:.4}  up {:>7} B  down {:>7} B",
                r.round, r.metrics.accuracy, r.metrics.loss, r.bytes_up, r.bytes_down
            );
        }
    })
    .map_err(|e| format!("{name}: {e}"))
}

fn describe(o: &FlOptions) -> String {
    if !o.compress_upstream && !o.compress_downstream {
        return "uncompressed".into();
    }
    let mut s = format!("qp {}", o.qp);
    if let Some(d) = o.diff_qp {
        s += &format!(", diff_qp {d}");
    }
    if o.nonweight_qp != -75 {
        s += &format!(", nonweight_qp {}", o.nonweight_qp);
    }
    if o.sparsity > 0.0 {
        s += &format!(", sparsity {}", o.sparsity);
    }
    if o.struct_spars_factor > 0.0 {
        s += &format!(", struct {}", o.struct_spars_factor);
    }
    if o.tca {
        s += ", TCA";
    }
    if o.use_dq {
        s += ", DQ";
    }
    if o.row_skipping {
        s += ", row skipping";
    }
    if o.opt_qp {
        s += ", opt_qp";
    }
    if let Some(b) = o.bitdepth {
        s += &format!(", bitdepth {b}");
    }
    if !o.err_accumulation {
        s += ", no error accumulation";
    }
    if o.approx_method == ApproxMethod::Codebook {
        s += ", codebook";
    }
    if !o.param_opt {
        s += ", no param_opt";
    }
    s
}

fn table(s: &mut Setup, args: &Args) -> Result<(), String> {
    let eucnc = FlOptions {
        sparsity: 0.8,
        struct_spars_factor: 0.9,
        tca: true,
        ..FlOptions::compressed(-18)
    };
    let rows = [
        FlOptions::uncompressed(),
        FlOptions {
            use_dq: true,
            ..FlOptions::compressed(-32)
        },
        eucnc.clone(),
        FlOptions {
            use_dq: true,
            ..eucnc
        },
        args.opts.clone(),
        FlOptions {
            nonweight_qp: -12,
            sparsity: 0.85,
            use_dq: true,
            ..FlOptions::compressed(-10)
        },
        FlOptions {
            nonweight_qp: -12,
            sparsity: 0.9,
            use_dq: true,
            ..FlOptions::compressed(-7)
        },
    ];
    println!("| settings | final acc % | best acc % | bytes total | traffic cut |");
    println!("|---|---|---|---|---|");
    for o in &rows {
        let quiet_args = Args {
            quiet: true,
            opts: o.clone(),
            ..*args
        };
        let r = run(s, &quiet_args, "table", o)?;
        println!(
            "| {} | {:.2} | {:.2} | {} | {:.1} % |",
            describe(o),
            r.final_metrics().accuracy,
            r.best_accuracy(),
            r.bytes_total(),
            100.0 * r.traffic_cut()
        );
    }
    Ok(())
}

/// candle sizes its CPU matmuls by `RAYON_NUM_THREADS` and, without it, counts the physical
/// cores from `/proc/cpuinfo` on every matmul. This model's matrices are small enough for that
/// read to be most of the run (both runs 1.56 s on 2 cores, 0.58 s with the variable set, same
/// results), so the example sets the variable to what candle would count, once, before any
/// thread starts. It also sizes rayon's global pool, which the codec calls use.
fn count_cores_once() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var(
            "RAYON_NUM_THREADS",
            num_cpus::get_physical().max(1).to_string(),
        );
    }
}

fn main() -> ExitCode {
    count_cores_once();
    let result = parse_args().and_then(|args| {
        args.opts.validate().map_err(|e| e.to_string())?;
        let mut s = setup(&args)?;
        if args.table {
            return table(&mut s, &args);
        }
        let started = std::time::Instant::now();
        let plain = run(&mut s, &args, "uncompressed", &FlOptions::uncompressed())?;
        let coded = run(&mut s, &args, "compressed", &args.opts)?;
        println!(
            "uncompressed: final {:.2} % (best {:.2} %), {} B",
            plain.final_metrics().accuracy,
            plain.best_accuracy(),
            plain.bytes_total()
        );
        println!(
            "compressed ({}): final {:.2} % (best {:.2} %), {} B ({} up, {} down), {:.2} % less traffic; {:.1} s in all",
            describe(&args.opts),
            coded.final_metrics().accuracy,
            coded.best_accuracy(),
            coded.bytes_total(),
            coded.bytes_up,
            coded.bytes_down,
            100.0 * coded.traffic_cut(),
            started.elapsed().as_secs_f64()
        );
        println!(
            "{{\"rounds\":{},\"clients\":{},\"acc_uncompressed\":{:.4},\"acc_compressed\":{:.4},\"bytes_uncompressed\":{},\"bytes_compressed\":{}}}",
            args.rounds,
            plain.clients,
            plain.final_metrics().accuracy,
            coded.final_metrics().accuracy,
            plain.bytes_total(),
            coded.bytes_total()
        );
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fedavg: {e}");
            ExitCode::FAILURE
        }
    }
}

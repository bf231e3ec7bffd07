//! `nnc`: encode, decode and inspect NNR (ISO/IEC 15938-17) bitstreams.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use nnc_tensor::{decode_stream, hls_json, DecodeOptions, DecoderState, Limits};

#[derive(Parser)]
#[command(
    name = "nnc",
    version,
    about = "Neural network coding (ISO/IEC 15938-17 / NNCodec-compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode a bitstream into a NumPy file (.npz for any number of tensors, .npy for one).
    Decode {
        /// Input bitstream.
        input: PathBuf,
        /// Output file (.npz or .npy).
        #[arg(short, long)]
        output: PathBuf,
        /// Overwrite the output if it exists.
        #[arg(short, long)]
        force: bool,
        /// Keep low-rank factors G and H instead of recomposing the weight.
        #[arg(long)]
        no_recompose: bool,
        /// Maximum elements of one tensor (limit for untrusted input).
        #[arg(long, default_value_t = nnc_tensor::DEFAULT_MAX_TENSOR_ELEMENTS)]
        max_tensor_elements: u64,
    },
    /// Print every NNR unit and its header fields.
    Info {
        /// Input bitstream.
        input: PathBuf,
        /// Print JSON (one object per unit, the reference's field names).
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nnc: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Decode {
            input,
            output,
            force,
            no_recompose,
            max_tensor_elements,
        } => {
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            refuse_overwrite(&output, force)?;
            let opts = DecodeOptions::new()
                .with_recompose_decomposed(!no_recompose)
                .with_limits(Limits::default().with_max_tensor_elements(max_tensor_elements));
            let mut state = DecoderState::default();
            let decoded = decode_stream(&bytes, &mut state, &opts)
                .with_context(|| format!("decoding {}", input.display()))?;
            let tensors: Vec<_> = decoded.tensors.into_iter().map(|t| t.tensor).collect();
            write_atomically(&output, |tmp| Ok(nnc_nn::io::write_tensors(tmp, &tensors)?))?;
            Ok(())
        }
        Command::Info { input, json } => {
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let units = hls_json(&bytes, &DecodeOptions::new())
                .with_context(|| format!("parsing {}", input.display()))?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &units)?;
                writeln!(out)?;
            } else {
                for (i, unit) in units.iter().enumerate() {
                    writeln!(out, "unit {i}:")?;
                    for (k, v) in unit {
                        writeln!(out, "  {k}: {v}")?;
                    }
                }
            }
            Ok(())
        }
    }
}

fn refuse_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        bail!("{} exists (use --force to overwrite)", path.display());
    }
    Ok(())
}

/// Writes through a temporary file in the target directory, then renames it into place.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().context("output path has no file name")?;
    // Same extension as the target, so format detection by extension still works.
    let tmp = dir.join(format!(
        ".nnc-tmp-{}-{}",
        std::process::id(),
        file_name.to_string_lossy()
    ));
    let result = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

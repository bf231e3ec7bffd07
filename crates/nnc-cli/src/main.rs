//! `nnc`: encode, decode and inspect NNR (ISO/IEC 15938-17) bitstreams.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use nnc_tensor::{
    decode_stream, hls_json, DecodeOptions, Limits, StreamDecoder, Tensor, TensorSpec,
};

mod attached;
mod decode;
mod destination;
mod encode_cmd;
mod files;
mod hints;
mod model_read;
mod progress;
mod report;
mod stats_cmd;
mod update;

use files::{load_state, save_state};

#[derive(Parser)]
#[command(
    name = "nnc",
    version,
    about = "Neural network coding (ISO/IEC 15938-17 / NNCodec-compatible)",
    after_help = "Exit status: 0 on success, 1 on invalid input or any other error (the message on \
                  stderr names the NNR unit and its byte offset), 2 on a usage error."
)]
struct Cli {
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode a model or tensor file into an NNR bitstream (defaults: the reference's tensor and
    /// model pipelines: qp -32, dependent quantization, row skipping).
    Encode(encode_cmd::EncodeArgs),
    /// Decode a bitstream into a model file: .safetensors, .npz or .pt/.pth/.bin (a PyTorch
    /// state dict; any number of tensors), .npy (one tensor); or into a directory as Hugging
    /// Face lays a model out (model.safetensors, or shards and their index).
    Decode {
        /// Input bitstream.
        input: PathBuf,
        /// Output file (.safetensors, .npz, .npy or .pt/.pth/.bin), or a directory (one that
        /// exists, or a path ending in "/"): model.safetensors there, or
        /// model-00001-of-0000N.safetensors shards and model.safetensors.index.json past
        /// --max-shard-size.
        #[arg(short, long)]
        output: PathBuf,
        /// Largest shard of a directory output, e.g. 5GB (the default, as save_pretrained),
        /// 500MB, 2GiB.
        #[arg(long, value_name = "SIZE", value_parser = destination::parse_size)]
        max_shard_size: Option<u64>,
        /// Overwrite the output if it exists.
        #[arg(short, long)]
        force: bool,
        /// Keep low-rank factors G and H instead of recomposing the weight.
        #[arg(long)]
        no_recompose: bool,
        /// Multiply each block's weight by its local scaling (`weight.ls`, what NNCodec's LSA
        /// trains) row by row and leave the scaling out, as NNCodec's
        /// `decompress(reconstruct_lsa=True)`: the weights then load into the original layers.
        #[arg(long)]
        apply_scaling: bool,
        /// Maximum elements of one tensor (limit for untrusted input).
        #[arg(long, default_value_t = nnc_tensor::DEFAULT_MAX_TENSOR_ELEMENTS)]
        max_tensor_elements: u64,
        /// Maximum elements of all tensors of the stream (limit for untrusted input).
        #[arg(long, default_value_t = nnc_tensor::DEFAULT_MAX_TOTAL_ELEMENTS)]
        max_total_elements: u64,
        /// The stream is an update: add it to this base model (tensors the update omits keep
        /// their base values; integer tensors in the update replace the base's).
        #[arg(long)]
        base: Option<PathBuf>,
        /// How the base is read (as `encode` read it, so that the names agree).
        #[command(flatten)]
        read: model_read::ModelRead,
        /// Incremental state file shared with earlier decodes of the same sequence. Written as
        /// JSON when named `*.json`, otherwise in a compact binary form that loads about 7 times faster;
        /// either form is read.
        #[arg(long)]
        state: Option<PathBuf>,
        #[command(flatten)]
        side: SideInfo,
        /// The stream was coded with history-dependent significance probability (`encode
        /// --hdsp`, NNCodec's HdspTool); a sequence of such updates needs --state too.
        #[arg(long)]
        hdsp: bool,
        /// Worker threads (default: all cores; at most 1024); the output is the same for any
        /// number.
        #[arg(short = 'j', long, value_parser = threads_arg)]
        threads: Option<usize>,
    },
    /// Per-tensor size and bits per parameter of a bitstream (name, shape, dtype, qp), read from its unit headers without decoding it
    Stats {
        /// Input bitstream.
        input: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        side: SideInfo,
    },
    /// Print every NNR unit and its header fields.
    Info {
        /// Input bitstream.
        input: PathBuf,
        /// Print JSON (one object per unit, the reference's field names).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        side: SideInfo,
    },
}

/// `NAME=VALUE` of a per-tensor option, split at the last `=` (names may hold one);
/// `example` shows the form in the error.
pub(crate) fn split_named<'a>(s: &'a str, example: &str) -> Result<(&'a str, &'a str), String> {
    let (name, value) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected {example}, not {s:?}"))?;
    if name.is_empty() {
        return Err("the tensor name is empty".into());
    }
    Ok((name, value.trim()))
}

/// `--tensor-dims NAME=16x8x3x3`: a tensor's name and dimensions, separated by `x` or `,`.
fn tensor_dims_arg(s: &str) -> Result<(String, Vec<u64>), String> {
    let (name, dims) = split_named(s, "NAME=DIMS such as l.weight=16x8x3x3")?;
    let dims = dims
        .split(['x', ','])
        .map(|d| {
            d.trim()
                .parse::<u64>()
                .map_err(|e| format!("dimension {d:?} of {name}: {e}"))
        })
        .collect::<Result<Vec<u64>, String>>()?;
    Ok((name.to_string(), dims))
}

/// What a stream may leave out and the decoder then needs from the command line.
#[derive(clap::Args, Debug)]
struct SideInfo {
    /// Dimensions of a tensor whose NDU leaves them out (a stream coded with the dimensions
    /// signalled beforehand): NAME=16x8x3x3, split at the last `=`; repeat for several tensors.
    #[arg(long = "tensor-dims", value_name = "NAME=DIMS", value_parser = tensor_dims_arg)]
    tensor_dims: Vec<(String, Vec<u64>)>,
}

impl SideInfo {
    /// Decoder options with these dimensions.
    fn options(&self) -> DecodeOptions {
        self.tensor_dims
            .iter()
            .fold(DecodeOptions::new(), |opts, (name, dims)| {
                opts.with_tensor_dimensions(name.clone(), dims.clone())
            })
    }
}

/// `-j N`: a thread count the library accepts (0 means all cores).
fn threads_arg(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{e}"))?;
    if n > nnc_tensor::MAX_THREADS {
        return Err(format!(
            "at most {} worker threads",
            nnc_tensor::MAX_THREADS
        ));
    }
    Ok(n)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let decoding = match &cli.command {
        Command::Decode { state, hdsp, .. } => Some(hints::DecodeCall {
            state_given: state.is_some(),
            hdsp_given: *hdsp,
        }),
        _ => None,
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of a pipe stopped early (`nnc info x.nnc | head`): done, as for any filter.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let hint = hints::side_information(&e)
                .or_else(|| hints::encoder_state(&e))
                .or_else(|| decoding.and_then(|call| call.hint(&e)).map(String::from))
                .map_or_else(String::new, |h| format!(" ({h})"));
            eprintln!("nnc: {}{hint}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes on one line, `: `-separated. A cause that the message before it
/// already ends with (the library errors print their source) is not repeated.
fn error_chain(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Encode(args) => encode_cmd::run(&args, cli.quiet),
        Command::Decode {
            input,
            output,
            max_shard_size,
            force,
            no_recompose,
            apply_scaling,
            max_tensor_elements,
            max_total_elements,
            base,
            read,
            state,
            side,
            hdsp,
            threads,
        } => {
            if apply_scaling && base.is_some() {
                // An update's scaling is a difference, not a factor of the weight's update.
                anyhow::bail!(
                    "--apply-scaling with --base: an update's local scaling is a difference to \
                     the base's scaling, not a factor of the weight; decode the update onto its \
                     base without --apply-scaling"
                );
            }
            let output = destination::Destination::new(
                &output,
                max_shard_size,
                force,
                &[Some(&input), base.as_deref(), state.as_deref()],
            )?;
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let progress = progress::Progress::new(cli.quiet);
            progress.show_for(stats_cmd::unit_count(&bytes));
            progress.stage(format!("decoding {}", input.display()));
            // The state records levels only when it is kept in a file.
            let opts = side
                .options()
                .with_recompose_decomposed(!no_recompose)
                .with_apply_local_scaling(apply_scaling)
                .with_limits(
                    Limits::default()
                        .with_max_tensor_elements(max_tensor_elements)
                        .with_max_total_elements(max_total_elements),
                )
                .with_threads(threads)
                .with_hdsp(hdsp)
                .with_keep_levels(false)
                .with_update_state(state.is_some());
            let mut inc = load_state(state.as_deref())?;
            // The stream's units are read and checked once; the files it attaches are
            // unpacked and checked before any decoding, and written once the model is in place.
            let decoder = StreamDecoder::new(&bytes, &opts)
                .with_context(|| format!("decoding {}", input.display()))?;
            let attached =
                attached::for_destination(&decoder.plan().files, &output, force, cli.quiet)?;
            let read_base =
                |path: &std::path::Path| model_read::read_model_sources(path, &read, cli.quiet);
            let base_tensors = base.as_deref().map(read_base).transpose()?;
            let streamed =
                decode::streaming(decoder, &input, base_tensors, &output, &mut inc, cli.quiet)?;
            if !streamed {
                inc = load_state(state.as_deref())?;
                let decoded = decode_stream(&bytes, &mut inc, &opts)
                    .with_context(|| format!("decoding {}", input.display()))?;
                let mut tensors: Vec<Tensor> =
                    decoded.tensors.into_iter().map(|t| t.tensor).collect();
                let mut base_metadata = None;
                if let Some(base_path) = &base {
                    // Read again: the streaming attempt dropped the base tensors it wrote.
                    // Quietly: its notes were printed the first time.
                    let again = model_read::read_model(base_path, &read, true)?;
                    base_metadata = Some(again.metadata);
                    tensors = update::add_to_base(again.tensors, tensors)?;
                }
                // Quietly: the streaming attempt gave the note.
                let metadata = decode::output_metadata(
                    &decoded.attributes,
                    base_metadata.as_ref(),
                    &output,
                    true,
                );
                progress.stage(format!("writing {}", output.path().display()));
                let plan: Vec<TensorSpec> = tensors.iter().map(Into::into).collect();
                output.write(&plan, &metadata, |put| tensors.iter().try_for_each(put))?;
            }
            attached::write(&attached)?;
            save_state(state.as_deref(), &inc)?;
            Ok(())
        }
        Command::Stats { input, json, side } => stats_cmd::run(&input, json, &side.options()),
        Command::Info { input, json, side } => {
            let bytes =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            if bytes.is_empty() {
                anyhow::bail!("{}: empty file (no NNR units)", input.display());
            }
            let units = hls_json(&bytes, &side.options())
                .with_context(|| format!("parsing {}", input.display()))?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &units).map_err(std::io::Error::from)?;
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

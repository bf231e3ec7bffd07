//! `nnc encode`: model or tensor file → NNR bitstream.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use nnc_nn::io::{attributes_to_carry, SafetensorsMetadata};
use nnc_tensor::encode::{EncodeInput, TensorSource};
use nnc_tensor::sparsify::{sparsify_state_dict, sparsify_tensors, SparsifyOptions};
use nnc_tensor::{encode, encode_incremental, CodebookMode, EncodeOptions, Tensor};

use crate::attached;
use crate::files::{check_output, load_state, refuse_overwrite, save_state, write_atomically};
use crate::model_read::{read_model, read_model_sources, ModelRead};
use crate::progress::Progress;
use crate::report;
use crate::update;

/// How parameter types (weight vs. bias, batch norm...) are decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TypeRules {
    /// PyTorch names for state dicts (`.pt`, `.pth`, `.bin`, or names ending in `.weight`/`.bias`),
    /// otherwise plain-dictionary rules.
    Auto,
    /// Plain dictionary: every tensor with two or more dimensions is a weight.
    Dict,
    /// PyTorch state dict: types from the names; `num_batches_tracked` is not coded.
    Pytorch,
}

/// Approximation method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Approx {
    /// Uniform quantization.
    Uniform,
    /// Codebook where it pays off, uniform elsewhere (the reference's `approx_method="codebook"`).
    Codebook,
}

/// Arguments of `nnc encode`. Defaults are those of the reference's tensor and model pipelines.
#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// Input: .npz, .npy (one tensor, named "0"), .safetensors, .pt/.pth/.bin, a shard index
    /// (*.index.json) or a Hugging Face model directory.
    pub input: PathBuf,
    /// Output bitstream.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Overwrite the output if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Weight quantization parameter (smaller = finer).
    #[arg(long, default_value_t = nnc_tensor::encode::options::DEFAULT_QP, allow_hyphen_values = true)]
    pub qp: i32,
    /// Quantization steps per octave are 2^qp_density.
    #[arg(long, default_value_t = nnc_tensor::encode::options::DEFAULT_QP_DENSITY)]
    pub qp_density: u8,
    /// qp of non-weight tensors (biases, batch norm, 1-D tensors).
    #[arg(long, default_value_t = nnc_tensor::encode::options::DEFAULT_NONWEIGHT_QP, allow_hyphen_values = true)]
    pub nonweight_qp: i32,
    /// qp of one tensor, overriding --qp and --nonweight-qp: NAME=QP (e.g.
    /// classifier.weight=-40), split at the last `=`; repeat for several tensors. A name that
    /// is not in the model is an error.
    #[arg(long = "tensor-qp", value_name = "NAME=QP", value_parser = tensor_qp_arg, allow_hyphen_values = true)]
    pub tensor_qp: Vec<(String, i32)>,
    /// Disable dependent (trellis-coded) quantization.
    #[arg(long)]
    pub no_dq: bool,
    /// Approximation method.
    #[arg(long, value_enum, default_value_t = Approx::Uniform)]
    pub approx: Approx,
    /// Integer-aligned bit depth: choose each tensor's qp so levels fit N bits.
    #[arg(long)]
    pub bitdepth: Option<u32>,
    /// Target sparsity (0..1) before quantization. For a PyTorch model the BatchNorm
    /// num_batches_tracked counters take no part, as in nncodec.nn.
    #[arg(long, default_value_t = 0.0)]
    pub sparsity: f64,
    /// Gain of the structured (per output channel) sparsification step (with --sparsity).
    #[arg(long, default_value_t = 0.9, requires = "sparsity")]
    pub struct_spars_factor: f64,
    /// Do not signal all-zero rows with row-skip flags.
    #[arg(long)]
    pub no_row_skipping: bool,
    /// Scan order: 0 row-major, 1..4 block scan (8..64) with entry points.
    #[arg(long, default_value_t = 0)]
    pub scan_order: u8,
    /// Scale weight qps by tensor size and spread.
    #[arg(long)]
    pub opt_qp: bool,
    /// Do not optimise the context initialisation.
    #[arg(long)]
    pub no_param_opt: bool,
    /// Rate-distortion weight of the quantizers (0 = distortion only).
    #[arg(long, default_value_t = 0.0)]
    pub lambda_scale: f32,
    /// Greater-than flags minus one of the level binarization.
    #[arg(long, default_value_t = nnc_tensor::encode::options::DEFAULT_CABAC_UNARY_LENGTH_MINUS1)]
    pub cabac_unary_length_minus1: u8,
    /// Fold batch norm into the preceding weight's scaling and bias (PyTorch state dicts). The
    /// blocks are guessed from the names as NNCodec's model pipeline guesses them; a model
    /// whose BatchNorm cannot be placed is refused. Decoding gives the BatchNorm tensors back
    /// with the same effect (weight and bias the coded scaling and bias, mean 0, variance
    /// 1 − eps); with --no-metadata it gives the coded <weight>_scaling and bias instead.
    #[arg(long)]
    pub bnf: bool,
    /// The model carries trained local scalings (`<layer>.weight_scaling`, as NNCodec's LSA
    /// adds them to convolutions and linear layers): code each in its layer's block, the
    /// blocks guessed as NNCodec's model pipeline guesses them with `lsa`. nnc does not train
    /// the scalings; `nnc decode --apply-scaling` multiplies them into the weights.
    #[arg(long)]
    pub lsa: bool,
    /// Code the difference to this base model (same names and shapes) as an update; integer
    /// tensors (counters such as `num_batches_tracked`) are carried as their new values.
    #[arg(long)]
    pub base: Option<PathBuf>,
    /// How the input and the base are read.
    #[command(flatten)]
    pub read: ModelRead,
    /// Temporal context adaptation across updates (needs --base and --state).
    #[arg(long)]
    pub tca: bool,
    /// History-dependent significance probability across updates (HDSP: the sig flag's
    /// context follows where earlier updates were non-zero; needs --base and --state, and the
    /// decoder needs --hdsp).
    #[arg(long)]
    pub hdsp: bool,
    /// The sender's `device_id`, written in every NDU (0 = unset). A --state that recorded
    /// updates of another device refuses the encode.
    #[arg(long, default_value_t = 0)]
    pub device_id: u64,
    /// Pre-signalling (the reference's `pre_signalling`): the stream says its tensors'
    /// dimensions travel beforehand, and a block's NDU leaves its weight's out. The decoder
    /// then needs each such weight as --tensor-dims NAME=DIMS.
    #[arg(long)]
    pub pre_signalling: bool,
    /// Incremental state file, read before and written after encoding; keeps TCA bases and
    /// update depths between runs. Written as JSON when named `*.json`, otherwise in a compact
    /// binary form that loads about 7 times faster; either form is read.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// How parameter types are decided.
    #[arg(long, value_enum, default_value_t = TypeRules::Auto)]
    pub types: TypeRules,
    /// Print a per-tensor report (name, shape, dtype, qp, bits/param, relative error, PSNR).
    #[arg(long)]
    pub report: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write no dtype/shape metadata: the stream is then byte-identical with NNCodec's, but
    /// decodes to float32/int32 and loses uncoded tensors (num_batches_tracked). Nothing is
    /// written anyway when every tensor is float32 or int32 with at least one dimension.
    #[arg(long)]
    pub no_metadata: bool,
    /// Write a tensor qp its field cannot hold (6 + qp-density bits; the codebook search can
    /// push a non-weight qp there) masked to those bits, as NNCodec does, instead of refusing
    /// it: the stream then decodes with another qp. Only for NNCodec's exact bytes.
    #[arg(long)]
    pub mask_unsignalable_qp: bool,
    /// With a model directory as input: do not attach its other files (config.json, the
    /// tokenizer, ...; attached by default, deflated, and written back by `nnc decode -o DIR/`;
    /// never attached to an update, --base or --state).
    #[arg(long)]
    pub no_files: bool,
    /// Worker threads (default: all cores; at most 1024); the bitstream is the same for any
    /// number.
    #[arg(short = 'j', long, value_parser = crate::threads_arg)]
    pub threads: Option<usize>,
}

impl EncodeArgs {
    fn options(&self) -> EncodeOptions {
        let mut o = EncodeOptions::default();
        o.qp = self.qp;
        o.qp_density = self.qp_density;
        o.nonweight_qp = Some(self.nonweight_qp);
        o.qp_per_tensor = self.tensor_qp.iter().cloned().collect();
        o.use_dq = !self.no_dq;
        o.codebook_mode = match self.approx {
            Approx::Uniform => CodebookMode::Off,
            Approx::Codebook => CodebookMode::Auto,
        };
        o.scan_order = self.scan_order;
        o.lambda_scale = self.lambda_scale;
        o.param_opt = !self.no_param_opt;
        o.cabac_unary_length_minus1 = self.cabac_unary_length_minus1;
        o.opt_qp = self.opt_qp;
        o.bnf = self.bnf;
        o.row_skipping = !self.no_row_skipping;
        o.tca = self.tca;
        o.hdsp = self.hdsp;
        o.device_id = self.device_id;
        o.pre_signalling = self.pre_signalling;
        o.compress_differences = self.base.is_some();
        o.int_quant_bw = self.bitdepth;
        o.carry_dtypes = !self.no_metadata;
        o.mask_unsignalable_qp = self.mask_unsignalable_qp;
        o.threads = self.threads;
        o
    }
}

/// `--tensor-qp NAME=QP`.
fn tensor_qp_arg(s: &str) -> Result<(String, i32), String> {
    let (name, qp) = crate::split_named(s, "NAME=QP such as fc.weight=-40")?;
    let qp = qp
        .parse::<i32>()
        .map_err(|e| format!("qp {qp:?} of {name}: {e}"))?;
    Ok((name.to_string(), qp))
}

fn is_pytorch_file(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("pt" | "pth" | "bin")
    )
}

/// The encoder's input, and the counts the summary gives.
struct Prepared<'t> {
    input: EncodeInput<'t>,
    count: usize,
    params: usize,
}

/// Whether the tensors named are coded as a PyTorch state dict (see [`TypeRules`]).
fn is_state_dict<'n>(args: &EncodeArgs, names: impl IntoIterator<Item = &'n str>) -> bool {
    match args.types {
        TypeRules::Pytorch => true,
        TypeRules::Dict => false,
        TypeRules::Auto => {
            is_pytorch_file(&args.input) || EncodeInput::names_look_like_state_dict(names)
        }
    }
}

/// The input's safetensors `__metadata__` as the stream's attributes, and the files of a model
/// directory. An update (--base, --state) carries no files: they would be sent again with every
/// step.
fn with_attachments<'t>(
    args: &EncodeArgs,
    quiet: bool,
    input: EncodeInput<'t>,
    metadata: &SafetensorsMetadata,
) -> anyhow::Result<EncodeInput<'t>> {
    let whole_model = args.base.is_none() && args.state.is_none();
    let files = if args.input.is_dir() && whole_model && !args.no_files && !args.no_metadata {
        attached::collect(&args.input, quiet)?
    } else {
        Default::default()
    };
    Ok(input
        .with_attributes(attributes_to_carry(metadata))
        .with_files(files))
}

/// The input read in place ([`read_model_sources`]): nothing is copied that the encoder can
/// read where it lies. With a report to make, the sources stay in `held` and the input holds
/// views of them; otherwise they move into the input, which lets each go once quantized.
fn read_in_place<'t>(
    args: &EncodeArgs,
    quiet: bool,
    progress: &Progress,
    held: &'t mut Vec<TensorSource<'static>>,
) -> anyhow::Result<Prepared<'t>> {
    let model = read_model_sources(&args.input, &args.read, quiet)?;
    progress.show_for(model.tensors.len());
    let count = model.tensors.len();
    let params = model
        .tensors
        .iter()
        .map(|t| t.shape().iter().product::<usize>())
        .sum();
    let state_dict = is_state_dict(args, model.tensors.iter().map(TensorSource::name));
    let sources: Vec<TensorSource<'t>> = if args.report || args.json {
        *held = model.tensors;
        held.iter().map(TensorSource::view).collect()
    } else {
        model.tensors
    };
    let input = if state_dict {
        EncodeInput::from_state_dict_sources(sources)?
    } else {
        EncodeInput::from_sources(sources)?
    };
    let input = with_attachments(args, quiet, input, &model.metadata)?;
    Ok(Prepared {
        input,
        count,
        params,
    })
}

/// The input made into new tensors in `tensors`: updates against `--base` when given (both
/// models read in place, only the differences made), sparsified when asked. With a report to
/// make, the input borrows them, and when sparsification changes them `originals` holds the
/// model as it is in the file, read in place for the report; otherwise they move into the
/// input.
fn read_derived<'t>(
    args: &EncodeArgs,
    quiet: bool,
    progress: &Progress,
    opts: &EncodeOptions,
    tensors: &'t mut Vec<Tensor>,
    originals: &mut Vec<TensorSource<'static>>,
) -> anyhow::Result<Prepared<'t>> {
    let want_report = args.report || args.json;
    let metadata;
    *tensors = match &args.base {
        None => {
            let model = read_model(&args.input, &args.read, quiet)?;
            metadata = model.metadata;
            progress.show_for(model.tensors.len());
            if want_report && args.sparsity > 0.0 {
                *originals = read_model_sources(&args.input, &args.read, quiet)?.tensors;
            }
            model.tensors
        }
        Some(base_path) => {
            // Both models are read in place and each pair's maps are let go once their
            // difference is taken: only the differences are new memory.
            let model = read_model_sources(&args.input, &args.read, quiet)?;
            let mut base: HashMap<String, TensorSource<'static>> =
                read_model_sources(base_path, &args.read, quiet)?
                    .tensors
                    .into_iter()
                    .map(|b| (b.name().to_string(), b))
                    .collect();
            metadata = model.metadata;
            progress.show_for(model.tensors.len());
            model
                .tensors
                .into_iter()
                .map(|t| {
                    let b = base.remove(t.name()).with_context(|| {
                        format!("tensor {:?} is not in the base model", t.name())
                    })?;
                    update::update_of_source(&t, &b)
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    let pytorch = is_state_dict(args, tensors.iter().map(|t| t.name.as_str()));
    // Not `> 0.0`: a NaN target must reach the library's check instead of being skipped.
    if args.sparsity != 0.0 {
        progress.stage("sparsifying");
        let sparsify_opts = SparsifyOptions {
            qp: opts.qp,
            qp_density: opts.qp_density,
            sparsity: args.sparsity,
            struct_spars_factor: args.struct_spars_factor,
        };
        // A model (not an update) is sparsified as nncodec.nn.encode does a torch model.
        if pytorch && args.base.is_none() {
            sparsify_state_dict(tensors, &sparsify_opts)?;
        } else {
            sparsify_tensors(tensors, &sparsify_opts)?;
        }
    }
    let count = tensors.len();
    let params = tensors.iter().map(Tensor::len).sum();
    let input = match (want_report, pytorch) {
        (true, true) => EncodeInput::from_state_dict(tensors)?,
        (true, false) => EncodeInput::from_tensors(tensors)?,
        (false, true) => EncodeInput::from_state_dict_owned(std::mem::take(tensors))?,
        (false, false) => EncodeInput::from_tensors_owned(std::mem::take(tensors))?,
    };
    let input = with_attachments(args, quiet, input, &metadata)?;
    Ok(Prepared {
        input,
        count,
        params,
    })
}

/// Runs `nnc encode`.
pub fn run(args: &EncodeArgs, quiet: bool) -> anyhow::Result<()> {
    refuse_overwrite(&args.output, args.force)?;
    check_output(
        &args.output,
        &[
            Some(&args.input),
            args.base.as_deref(),
            args.state.as_deref(),
        ],
    )?;
    if args.tca && (args.base.is_none() || args.state.is_none()) {
        bail!("--tca needs --base (an update to code) and --state (where the previous update is kept)");
    }
    if args.hdsp && (args.base.is_none() || args.state.is_none()) {
        bail!("--hdsp needs --base (an update to code) and --state (where the earlier updates' history is kept)");
    }
    let progress = Progress::new(quiet);
    let want_report = args.report || args.json;
    let opts = args.options();
    // Before the model is read: options that cannot go together are refused at once.
    opts.validate().map_err(anyhow::Error::msg)?;
    // The tensors as read (or as updates against `--base`) when the report needs them again.
    let mut tensors: Vec<Tensor> = Vec::new();
    // The model read in place: the input itself when it is coded as it is, else (sparsified)
    // what the report compares the decoded tensors with.
    let mut held: Vec<TensorSource<'static>> = Vec::new();
    // When the tensors are coded as they are (no base to subtract, no sparsification),
    // safetensors, PyTorch and .npy inputs are read in place from memory maps, each let go once
    // its tensor is quantized unless the report reads it again. Otherwise the tensors coded are
    // new: differences to the base (taken from both models read in place) or a sparsified copy.
    let in_place = args.base.is_none() && args.sparsity == 0.0;
    let Prepared {
        mut input,
        count,
        params,
    } = if in_place {
        read_in_place(args, quiet, &progress, &mut held)?
    } else {
        read_derived(args, quiet, &progress, &opts, &mut tensors, &mut held)?
    };
    // Where the guess fails its check NNCodec codes the model without blocks (and where the
    // guess itself fails, it crashes); nnc refuses, saying why.
    if args.lsa {
        input.apply_local_scaling_blocks().context("--lsa")?;
    } else if args.bnf {
        input.apply_guessed_blocks().context("--bnf")?;
    }
    let mut state = load_state(args.state.as_deref())?;
    progress.stage(format!(
        "encoding {count} tensors ({:.1} M parameters)",
        params as f64 / 1e6
    ));
    let encoded = if args.state.is_some() || args.base.is_some() {
        encode_incremental(input, &opts, &mut state, true)?
    } else {
        encode(input, &opts)?
    };
    if args.bnf && encoded.folded.is_empty() && !quiet {
        eprintln!(
            "note: --bnf: no batch norm follows a weight in this model, so nothing was folded \
             (the tensors are coded in their layers' blocks, as NNCodec codes them)"
        );
    }
    progress.stage(format!("writing {}", args.output.display()));
    write_atomically(&args.output, &encoded.bytes)?;
    save_state(args.state.as_deref(), &state)?;
    if want_report {
        let reference: Vec<TensorSource<'_>> = if in_place || !held.is_empty() {
            // The sparsified copy the encoder read is not compared with: let it go first.
            drop(std::mem::take(&mut tensors));
            held.iter().map(TensorSource::view).collect()
        } else {
            tensors.iter().map(TensorSource::from).collect()
        };
        let rows = report::rows(&encoded, &reference, &progress)?;
        progress.finish();
        report::print(&rows, encoded.bytes.len(), args.json, true)?;
    } else if !quiet {
        progress.finish();
        let rate = report::per_param(encoded.bytes.len() as f64 * 8.0, params)
            .map_or(String::new(), |b| format!(" ({b:.3} bits/param)"));
        eprintln!(
            "{}: {} tensors, {} parameters -> {} bytes{rate}",
            args.output.display(),
            encoded.tensors.len(),
            params,
            encoded.bytes.len(),
        );
    }
    Ok(())
}

//! Encoder conformance: rebuild each case's encoder call from its `config.json` and compare bytes.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use nnc_nn::io::read_tensors;
use nnc_tensor::encode::{BlockIdAndParamType, EncodeInput};
use nnc_tensor::sparsify::{sparsify_state_dict, sparsify_tensors, SparsifyOptions};
use nnc_tensor::{
    decode_stream, encode, encode_incremental, CodebookMode, EncodeOptions, EncodedStream,
    IncrementalState, Tensor, TensorData,
};

use crate::conformance::{decode_options, file_path, steps_of};

/// How the reference's state dict (`approx_param_base`) was used across steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StateUse {
    /// No base: stand-alone bitstreams.
    None,
    /// The encoder owns its base and updates it.
    EncoderOwned,
    /// One dict shared by encoder and decoder: the encoder updates it (tensor pipeline) or not
    /// (model pipeline), and decoding each step updates it too.
    Shared { encoder_updates: bool },
}

fn options_from_kwargs(kw: &Value) -> Result<EncodeOptions> {
    let mut o = EncodeOptions::compress_defaults();
    // The reference carries no dtype metadata.
    o.carry_dtypes = false;
    // The reference's bytes also where it masks a qp its field cannot hold
    // (quirks.md#qp-offset-range).
    o.mask_unsignalable_qp = true;
    let int = |k: &str| kw.get(k).and_then(Value::as_i64);
    let flag = |k: &str| kw.get(k).and_then(Value::as_bool);
    if let Some(v) = int("qp") {
        o.qp = v as i32;
    }
    if let Some(v) = int("qp_density") {
        o.qp_density = v as u8;
    }
    o.nonweight_qp = int("nonweight_qp").map(|v| v as i32);
    if let Some(map) = kw.get("qp_per_tensor").and_then(Value::as_object) {
        for (k, v) in map {
            o.qp_per_tensor.insert(
                k.clone(),
                v.as_i64().ok_or_else(|| anyhow!("qp_per_tensor {k}"))? as i32,
            );
        }
    }
    if let Some(v) = flag("use_dq") {
        o.use_dq = v;
    }
    o.codebook_mode = match int("codebook_mode").unwrap_or(0) {
        0 => CodebookMode::Off,
        1 => CodebookMode::Always,
        2 => CodebookMode::Auto,
        m => bail!("codebook_mode {m}"),
    };
    if let Some(v) = int("scan_order") {
        o.scan_order = v as u8;
    }
    if let Some(v) = kw.get("lambda_scale").and_then(Value::as_f64) {
        o.lambda_scale = v as f32;
    }
    if let Some(v) = flag("param_opt") {
        o.param_opt = v;
    }
    if let Some(v) = int("cabac_unary_length_minus1") {
        o.cabac_unary_length_minus1 = v as u8;
    }
    o.opt_qp = flag("opt_qp").unwrap_or(false);
    o.bnf = flag("bnf").unwrap_or(false);
    o.row_skipping = flag("row_skipping").unwrap_or(false);
    o.tca = flag("tca").unwrap_or(false);
    o.hdsp = kw.get("hdsp_tool").is_some_and(|v| !v.is_null());
    o.pre_signalling = flag("pre_signalling").unwrap_or(false);
    o.device_id = int("device_id").unwrap_or(0) as u64;
    o.compress_differences = flag("compress_differences").unwrap_or(false);
    o.int_quant_bw = int("int_quant_bw").filter(|&b| b > 0).map(|b| b as u32);
    for unsupported in ["ioq", "lsa", "fine_tune"] {
        if flag(unsupported) == Some(true) {
            bail!("{unsupported} needs a model executer");
        }
    }
    Ok(o)
}

fn blocks_from_kwargs(kw: &Value) -> Result<Option<BlockIdAndParamType>> {
    let Some(spec) = kw.get("block_id_and_param_type").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let mut out = BlockIdAndParamType::default();
    if let Some(ids) = spec.get("block_identifier").and_then(Value::as_object) {
        for (k, v) in ids {
            out.block_identifier
                .insert(k.clone(), v.as_str().map(str::to_string));
        }
    }
    if let Some(types) = spec.get("parameter_type").and_then(Value::as_object) {
        for (k, v) in types {
            out.parameter_type
                .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    Ok(Some(out))
}

/// The encoder input of one step, as the case's pipeline builds it from the input file.
fn build_input(
    config: &Value,
    kw: &Value,
    mut tensors: Vec<Tensor>,
) -> Result<EncodeInput<'static>> {
    let pipeline = config.get("pipeline").and_then(Value::as_str).unwrap_or("");
    let input_type = config
        .get("encoder_input_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let args = config
        .get("encoder_args_effective")
        .cloned()
        .unwrap_or(Value::Null);
    let sparsity = args.get("sparsity").and_then(Value::as_f64).unwrap_or(0.0);
    // The model pipeline sparsifies only after the first epoch.
    let epoch = if config
        .get("encoder_call")
        .and_then(Value::as_str)
        .unwrap_or("")
        .contains("epoch=0")
    {
        0
    } else {
        1
    };
    if sparsity > 0.0 && (pipeline == "tensor" || epoch > 0) {
        let opts = SparsifyOptions {
            qp: args.get("qp").and_then(Value::as_i64).unwrap_or(-32) as i32,
            // Reference quirk: the tensor pipeline always uses qp_density 2 here.
            qp_density: if pipeline == "tensor" {
                2
            } else {
                args.get("qp_density").and_then(Value::as_i64).unwrap_or(2) as u8
            },
            sparsity,
            struct_spars_factor: args
                .get("struct_spars_factor")
                .and_then(Value::as_f64)
                .unwrap_or(0.9),
        };
        // A torch model is sparsified without its num_batches_tracked counters
        // (nncodec.nn's torch_to_numpy drops them).
        if pipeline == "nn" && input_type.starts_with("torch.nn.Module") {
            sparsify_state_dict(&mut tensors, &opts)?;
        } else {
            sparsify_tensors(&mut tensors, &opts)?;
        }
    }
    if kw.get("model").and_then(Value::as_str) == Some("NNRModel") {
        return decomposed_model_input(config, step_internal(config, kw), tensors);
    }
    let torch_model = pipeline == "nn" && input_type.starts_with("torch.nn.Module");
    let mut input = if torch_model {
        EncodeInput::from_state_dict_owned(tensors)?
    } else {
        EncodeInput::from_tensors_owned(tensors)?
    };
    let given = blocks_from_kwargs(kw)?;
    // The model pipeline guessed these blocks from the module for `bnf`; `nnc encode --bnf`
    // guesses them from the state dict's names, which must come to the same.
    if torch_model && kw.get("bnf").and_then(Value::as_bool) == Some(true) {
        let guessed = BlockIdAndParamType::guess_for_state_dict(&input)?;
        if given.as_ref() != Some(&guessed) {
            bail!("the blocks guessed from the names differ from the reference's: {guessed:?}");
        }
    }
    if let Some(spec) = given {
        input.apply_blocks(&spec);
    }
    Ok(input)
}

/// The `encoder_internal` block that belongs to the step whose kwargs are `kw`.
fn step_internal<'a>(config: &'a Value, kw: &Value) -> &'a Value {
    let steps = config.get("steps").and_then(Value::as_array);
    steps
        .and_then(|s| {
            s.iter()
                .find(|st| st.get("nnc_compress_kwargs") == Some(kw))
        })
        .unwrap_or(config)
        .get("encoder_internal")
        .unwrap_or(&Value::Null)
}

/// A case whose encoder got a separate model description (`model=NNRModel(...)`) in which a
/// weight `X` exists only as its low-rank factors `X_G`, `X_H` among the parameters.
///
/// The model's parameter names and order are `encoder_internal.parameter_type`; the weight's
/// shape is the one the case notes give ("reshaped to [...]"), else rows × columns of G·H; the
/// weight forms a block with the 1-D parameters of the same module (as the generator builds it).
fn decomposed_model_input(
    config: &Value,
    internal: &Value,
    tensors: Vec<Tensor>,
) -> Result<EncodeInput<'static>> {
    let types = internal
        .get("parameter_type")
        .and_then(Value::as_object)
        .ok_or_else(|| anyhow!("no encoder_internal.parameter_type for the model description"))?;
    let index_of = |name: &str| types.keys().position(|k| k == name).map(|i| i as u64);
    let notes = config.get("notes").and_then(Value::as_str).unwrap_or("");
    let noted_shape: Option<Vec<usize>> = notes
        .split("reshaped to ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .map(|list| {
            list.trim_start_matches('[')
                .split(',')
                .filter_map(|d| d.trim().parse().ok())
                .collect()
        });
    let mut input = EncodeInput::from_tensors_owned(tensors)?;
    let mut blocks = BlockIdAndParamType::default();
    for (name, ptype) in types {
        let g = input.get(&format!("{name}_G")).map(|p| p.dims.clone());
        let h = input.get(&format!("{name}_H")).map(|p| p.dims.clone());
        if let (Some(g), Some(h)) = (g, h) {
            let dims = noted_shape
                .clone()
                .filter(|d| d.iter().product::<usize>() == g[0] * h[h.len() - 1])
                .unwrap_or_else(|| vec![g[0], h[h.len() - 1]]);
            input
                .decomposed_weights
                .push(nnc_tensor::encode::DecomposedWeight {
                    name: name.clone(),
                    dims,
                    parameter_index: index_of(name).unwrap_or(0),
                });
            let module = name.rsplit_once('.').map_or(name.as_str(), |(m, _)| m);
            blocks
                .block_identifier
                .insert(name.clone(), Some(module.to_string()));
            blocks
                .parameter_type
                .insert(name.clone(), ptype.as_str().unwrap_or("weight").to_string());
            for p in &input.parameters {
                if p.dims.len() == 1 && p.name.starts_with(&format!("{module}.")) {
                    blocks
                        .block_identifier
                        .insert(p.name.clone(), Some(module.to_string()));
                    if let Some(t) = types.get(&p.name).and_then(Value::as_str) {
                        blocks.parameter_type.insert(p.name.clone(), t.to_string());
                    }
                }
            }
        }
    }
    for p in &mut input.parameters {
        if let Some(i) = index_of(&p.name) {
            p.parameter_index = i;
        }
    }
    input.apply_blocks(&blocks);
    Ok(input)
}

fn state_use(config: &Value, kw: &Value) -> StateUse {
    let has_base = kw.get("approx_param_base").is_some_and(|v| !v.is_null());
    if !has_base {
        return StateUse::None;
    }
    let call = config
        .get("encoder_call")
        .and_then(Value::as_str)
        .unwrap_or("");
    let updates = kw
        .get("update_base_param")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if call.contains("shared") {
        StateUse::Shared {
            encoder_updates: updates,
        }
    } else {
        StateUse::EncoderOwned
    }
}

/// Encodes the case's every step as the reference was called and compares bytes; with
/// `keep_ours`, writes our bitstream of a step whose bytes differ there.
pub(crate) fn check_encode_case(
    dir: &Path,
    config: &Value,
    keep_ours: Option<&Path>,
) -> Result<()> {
    let is_sequence = config.get("kind").and_then(Value::as_str) == Some("sequence");
    let (dec_opts, tensor_id) = decode_options(config)?;
    let step_configs: Vec<&Value> = if is_sequence {
        config
            .get("steps")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("sequence without steps"))?
            .iter()
            .collect()
    } else {
        vec![config]
    };
    let steps = steps_of(config)?;
    let mut enc_state = IncrementalState::default();
    for (index, (step_cfg, step)) in step_configs.iter().zip(&steps).enumerate() {
        let outcome = (|| -> Result<()> {
            let kw = step_cfg
                .get("nnc_compress_kwargs")
                .ok_or_else(|| anyhow!("no nnc_compress_kwargs"))?;
            let opts = options_from_kwargs(kw)?;
            let input_path = file_path(dir, step, "input").ok_or_else(|| anyhow!("no input"))?;
            let tensors = read_tensors(&input_path, tensor_id.as_deref().unwrap_or("0"))?;
            let input = build_input(config, kw, tensors)?;
            let expected = std::fs::read(
                file_path(dir, step, "bitstream").ok_or_else(|| anyhow!("no bitstream"))?,
            )?;
            let encoded = match state_use(config, kw) {
                // The input is given, not lent, as the CLI gives it (a property test in
                // nnc-tensor pins both ways to the same bytes).
                StateUse::None => {
                    let quantized = nnc_tensor::encode::quantize(&input, &opts)?;
                    let encoded = encode(input, &opts)?;
                    check_quantized(&quantized, &encoded).context("quantize")?;
                    encoded
                }
                StateUse::EncoderOwned => encode_incremental(input, &opts, &mut enc_state, true)?,
                StateUse::Shared { encoder_updates } => {
                    let encoded = if encoder_updates {
                        encode_incremental(input, &opts, &mut enc_state, true)?
                    } else {
                        encode_incremental(input, &opts, &mut enc_state.clone(), false)?
                    };
                    // The reference decoder updates the same state dict.
                    decode_stream(&expected, &mut enc_state, &dec_opts)
                        .context("decoding into the shared state")?;
                    encoded
                }
            };
            let compared = compare_bytes(&encoded.bytes, &expected);
            if let (Err(_), Some(keep)) = (&compared, keep_ours) {
                keep_our_bytes(keep, dir, is_sequence.then_some(index), &encoded.bytes)?;
            }
            compared
        })();
        if is_sequence {
            outcome.with_context(|| format!("step {index}"))?;
        } else {
            outcome?;
        }
    }
    Ok(())
}

/// [`nnc_tensor::encode::quantize`] gives the tensors the encode coded, with the same levels and
/// approximations, each reconstructed as the decoder reconstructs it (the decoder's conformance
/// pins that to the reference's values).
fn check_quantized(quantized: &[nnc_tensor::DecodedTensor], encoded: &EncodedStream) -> Result<()> {
    if quantized.len() != encoded.tensors.len() {
        bail!(
            "{} tensors, the encode coded {}",
            quantized.len(),
            encoded.tensors.len()
        );
    }
    for (q, e) in quantized.iter().zip(&encoded.tensors) {
        let t = &q.tensor;
        if t.name != e.name || t.shape != e.shape || q.approximation != e.approximation {
            bail!("{:?}: not the encoded tensor {:?}", t.name, e.name);
        }
        if q.levels.as_deref() != Some(e.levels.as_slice()) {
            bail!("{:?}: other levels than the encode's", t.name);
        }
        let expected = e.reconstruction()?;
        let same = match (&t.data, &expected) {
            (TensorData::F32(a), TensorData::F32(b)) => a
                .iter()
                .map(|x| x.to_bits())
                .eq(b.iter().map(|x| x.to_bits())),
            (TensorData::F64(a), TensorData::F64(b)) => a
                .iter()
                .map(|x| x.to_bits())
                .eq(b.iter().map(|x| x.to_bits())),
            (a, b) => a == b,
        };
        if !same {
            bail!("{:?}: other values than the levels reconstruct to", t.name);
        }
    }
    Ok(())
}

/// Writes our bitstream of a failing case (or step) into `keep` for inspection.
fn keep_our_bytes(keep: &Path, case_dir: &Path, step: Option<usize>, bytes: &[u8]) -> Result<()> {
    let case = case_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = match step {
        Some(i) => format!("{case}.step_{i:02}.nnc"),
        None => format!("{case}.nnc"),
    };
    std::fs::create_dir_all(keep).with_context(|| format!("creating {}", keep.display()))?;
    let path = keep.join(file);
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Fails with the first differing byte and the NNR unit it falls in.
fn compare_bytes(got: &[u8], want: &[u8]) -> Result<()> {
    if got == want {
        return Ok(());
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let mut unit = 0;
    let mut reader = nnc_bitstream::UnitReader::new(want);
    while let Ok(Some(raw)) = reader.next() {
        if raw.byte_offset + raw.bytes.len() > first {
            unit = raw.index;
            break;
        }
    }
    bail!(
        "{} bytes, reference {}; first difference at byte {first} (NNR unit {unit})",
        got.len(),
        want.len()
    )
}

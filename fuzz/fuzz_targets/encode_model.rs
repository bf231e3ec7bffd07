//! The encoder on whatever a user may hand it: a few small tensors of any dtype and shape (zero
//! dimensions, scalars, NaN and huge values included), as a dictionary or a PyTorch state dict,
//! after optional sparsification, under arbitrary encoder options, stand-alone or as two
//! updates of an incremental sequence (TCA, HDSP), with batch-norm folding or local scalings on
//! blocks guessed from the names (then of a few modules, so that blocks form). It returns a
//! bitstream or a
//! typed error,
//! never panics; a bitstream it returns decodes (in sequence, with one decoder state that then
//! holds what the encoder's holds), and with the metadata on gives back every tensor's name,
//! shape and dtype in the given order, integers exactly.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nnc_tensor::encode::encode_inference_optimised;
use nnc_tensor::sparsify::{sparsify_tensors, SparsifyOptions};
use nnc_tensor::{
    decode_stream, encode, encode_incremental, CodebookMode, DType, DecodeOptions, DecoderState,
    EncodeInput, EncodeOptions, EncodedStream, EncoderState, Tensor, TensorData,
};

/// Elements of all tensors together; keeps an execution in the milliseconds.
const MAX_ELEMENTS: usize = 2048;

#[derive(Arbitrary, Debug)]
struct FuzzTensor {
    /// Dimension sizes, each taken modulo 17 (so zeros are common).
    dims: Vec<u8>,
    dtype: u8,
    /// Values, tiled over the tensor: raw bit patterns, or scaled by `2^-scale`.
    values: Vec<i32>,
    raw_bits: bool,
    scale: u8,
    /// Suffix of the name (".weight", ".bias", "num_batches_tracked", ...).
    suffix: u8,
    /// With `bnf`, the module the tensor belongs to (one of three).
    module: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    tensors: Vec<FuzzTensor>,
    state_dict: bool,
    qp: i16,
    qp_density: u8,
    nonweight_qp: Option<i16>,
    use_dq: bool,
    codebook: u8,
    scan_order: u8,
    lambda_scale: u8,
    param_opt: bool,
    cabac_unary_length_minus1: u8,
    opt_qp: bool,
    row_skipping: bool,
    bitdepth: Option<u8>,
    carry_dtypes: bool,
    sparsity: u8,
    struct_spars_factor: u8,
    /// Two updates of an incremental sequence instead of one stand-alone stream.
    incremental: Option<Incremental>,
    /// Fold batch norm, the blocks guessed from the names.
    bnf: bool,
    /// Code the local scalings (`.weight_scaling`) in their layers' blocks, guessed likewise.
    lsa: bool,
    /// Choose the weights' QPs by inference-optimised quantization, with a score taken from
    /// the reconstruction (stand-alone streams only).
    ioq: Option<IoqScore>,
}

#[derive(Arbitrary, Debug)]
struct IoqScore {
    /// The score counts reconstructed values within `2^-tolerance` of zero...
    tolerance: u8,
    /// ...or their number when this is set (so that scores tie).
    flat: bool,
}

#[derive(Arbitrary, Debug)]
struct Incremental {
    tca: bool,
    hdsp: bool,
    /// The second update's values: the first's times `second_scale / 16`.
    second_scale: i8,
}

fn tensor(i: usize, t: &FuzzTensor, bnf: bool) -> Option<Tensor> {
    let shape: Vec<usize> = t
        .dims
        .iter()
        .take(4)
        .map(|&d| usize::from(d % 17))
        .collect();
    let n: usize = shape.iter().product();
    if n > MAX_ELEMENTS {
        return None;
    }
    let raw = |k: usize| {
        t.values
            .get(k % t.values.len().max(1))
            .copied()
            .unwrap_or(0)
    };
    let float = |k: usize| {
        if t.raw_bits {
            f32::from_bits(raw(k) as u32)
        } else {
            raw(k) as f32 * (-f32::from(t.scale % 64)).exp2()
        }
    };
    let data = match t.dtype % 8 {
        0 => TensorData::F32((0..n).map(float).collect()),
        1 => TensorData::F64((0..n).map(|k| f64::from(float(k))).collect()),
        2 => TensorData::from_f32_cast(DType::F16, &(0..n).map(float).collect::<Vec<_>>())?,
        3 => TensorData::I32((0..n).map(raw).collect()),
        4 => TensorData::I64(
            (0..n)
                .map(|k| i64::from(raw(k)) << (t.scale % 40))
                .collect(),
        ),
        5 => TensorData::U8((0..n).map(|k| raw(k) as u8).collect()),
        6 => TensorData::Bool((0..n).map(|k| raw(k) & 1 == 1).collect()),
        _ => TensorData::I8((0..n).map(|k| raw(k) as i8).collect()),
    };
    let suffix = [
        ".weight",
        ".bias",
        ".running_var",
        "num_batches_tracked",
        "",
        ".running_mean",
        ".weight_scaling",
    ][usize::from(t.suffix % 7)];
    let name = if bnf {
        format!("m{}{suffix}", t.module % 3)
    } else {
        format!("t{i}{suffix}")
    };
    Tensor::try_new(name, shape, data).ok()
}

fuzz_target!(|input: Input| {
    let Some(mut tensors) = input
        .tensors
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, t)| tensor(i, t, input.bnf || input.lsa))
        .collect::<Option<Vec<Tensor>>>()
    else {
        return;
    };
    if tensors.iter().map(Tensor::len).sum::<usize>() > MAX_ELEMENTS {
        return;
    }
    let qp = i32::from(input.qp % 160);
    if input.sparsity > 0 {
        let opts = SparsifyOptions {
            qp,
            qp_density: 2,
            sparsity: f64::from(input.sparsity) / 256.0,
            struct_spars_factor: f64::from(input.struct_spars_factor) / 128.0,
        };
        if sparsify_tensors(&mut tensors, &opts).is_err() {
            return;
        }
    }
    fn build(
        state_dict: bool,
        tensors: &[Tensor],
    ) -> Result<EncodeInput<'_>, nnc_tensor::encode::InputError> {
        if state_dict {
            EncodeInput::from_state_dict(tensors)
        } else {
            EncodeInput::from_tensors(tensors)
        }
    }
    let Ok(mut model) = build(input.state_dict, &tensors) else {
        return;
    };
    if input.lsa && model.apply_local_scaling_blocks().is_err() {
        return;
    }
    if input.bnf && !input.lsa && model.apply_guessed_blocks().is_err() {
        return;
    }
    // Non-exhaustive: set field by field.
    let mut opts = EncodeOptions::default();
    opts.qp = qp;
    opts.qp_density = input.qp_density % 8;
    opts.nonweight_qp = input.nonweight_qp.map(|q| i32::from(q % 160));
    opts.use_dq = input.use_dq;
    opts.codebook_mode = match input.codebook % 3 {
        0 => CodebookMode::Off,
        1 => CodebookMode::Always,
        _ => CodebookMode::Auto,
    };
    opts.scan_order = input.scan_order % 6;
    opts.lambda_scale = f32::from(input.lambda_scale) / 64.0;
    opts.param_opt = input.param_opt;
    opts.cabac_unary_length_minus1 = input.cabac_unary_length_minus1;
    opts.opt_qp = input.opt_qp;
    opts.row_skipping = input.row_skipping;
    opts.int_quant_bw = input.bitdepth.map(|b| u32::from(b % 34));
    opts.carry_dtypes = input.carry_dtypes;
    opts.bnf = input.bnf;
    opts.threads = Some(1);
    let Some(inc) = &input.incremental else {
        if let Some(ioq) = &input.ioq {
            let tolerance = (-f64::from(ioq.tolerance % 32)).exp2();
            let score = |rec: &[Tensor]| -> Result<f64, std::convert::Infallible> {
                let values: Vec<f64> = rec
                    .iter()
                    .flat_map(|t| match &t.data {
                        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
                        _ => Vec::new(),
                    })
                    .collect();
                let near = values.iter().filter(|x| x.abs() <= tolerance).count();
                Ok(if ioq.flat { values.len() } else { near } as f64)
            };
            let Ok(done) = encode_inference_optimised(&model, &opts, score) else {
                return;
            };
            // The chosen QPs are the stream's, and the stream is what an encode with them
            // writes.
            let decoded = decode_stream(
                &done.stream.bytes,
                &mut DecoderState::default(),
                &DecodeOptions::new(),
            )
            .expect("an IOQ stream decodes");
            for t in &decoded.tensors {
                if let Some(qp) = t.approximation.qp() {
                    assert_eq!(done.qps.get(&t.tensor.name), Some(&qp), "{}", t.tensor.name);
                }
            }
            let mut pinned = opts.clone();
            pinned.opt_qp = false;
            pinned.qp_per_tensor = done.qps.clone();
            let again = encode(&model, &pinned).expect("the chosen QPs encode");
            assert!(
                again.bytes == done.stream.bytes,
                "the IOQ stream is not its QPs' encode"
            );
            return;
        }
        let Ok(encoded) = encode(&model, &opts) else {
            return;
        };
        check(
            &encoded,
            &tensors,
            &opts,
            &mut DecoderState::default(),
            false,
        );
        return;
    };
    opts.compress_differences = true;
    opts.tca = inc.tca;
    opts.hdsp = inc.hdsp;
    let second: Vec<Tensor> = tensors
        .iter()
        .map(|t| {
            let mut t = t.clone();
            if let TensorData::F32(v) = &mut t.data {
                v.iter_mut()
                    .for_each(|x| *x *= f32::from(inc.second_scale) / 16.0);
            }
            t
        })
        .collect();
    let Ok(mut second_model) = build(input.state_dict, &second) else {
        return;
    };
    if input.lsa && second_model.apply_local_scaling_blocks().is_err() {
        return;
    }
    if input.bnf && !input.lsa && second_model.apply_guessed_blocks().is_err() {
        return;
    }
    let mut enc_state = EncoderState::default();
    let mut dec_state = DecoderState::default();
    for (model, given) in [(&model, &tensors), (&second_model, &second)] {
        let Ok(encoded) = encode_incremental(model, &opts, &mut enc_state, true) else {
            return;
        };
        check(&encoded, given, &opts, &mut dec_state, inc.hdsp);
        assert_eq!(
            enc_state.bases, dec_state.bases,
            "the two sides' states differ"
        );
        assert_eq!(enc_state.device_id, dec_state.device_id);
    }
});

/// Decodes `encoded` with `state`; with the metadata on, the tensors must be the `given` ones
/// but those the encoder left out (all-zero updates get no NDU, as in the reference).
fn check(
    encoded: &EncodedStream,
    given: &[Tensor],
    opts: &EncodeOptions,
    state: &mut DecoderState,
    hdsp: bool,
) {
    // A parent-signalled block NDU leaves its weight's dimensions to the decoder (as the
    // reference's do): the sender knows them.
    let mut dec_opts = DecodeOptions::new().with_hdsp(hdsp);
    for t in &encoded.tensors {
        dec_opts =
            dec_opts.with_tensor_dimensions(&t.name, t.shape.iter().map(|&d| d as u64).collect());
    }
    let decoded = decode_stream(&encoded.bytes, state, &dec_opts)
        .expect("a stream the encoder wrote decodes");
    // Folding replaces the batch-norm tensors with the blocks' scaling and bias.
    if !opts.carry_dtypes || opts.bnf {
        return;
    }
    // Everything given comes back, in order, with its shape and dtype.
    let got: Vec<(&str, &[usize], DType)> = decoded
        .tensors
        .iter()
        .map(|t| {
            (
                t.tensor.name.as_str(),
                t.tensor.shape.as_slice(),
                t.tensor.dtype(),
            )
        })
        .collect();
    let sent: Vec<&Tensor> = given
        .iter()
        .filter(|t| {
            !encoded
                .tensors
                .iter()
                .any(|e| e.skipped && e.name == t.name)
        })
        .collect();
    let want: Vec<(&str, &[usize], DType)> = sent
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice(), t.dtype()))
        .collect();
    assert_eq!(got, want);
    for (t, d) in sent.iter().zip(&decoded.tensors) {
        if !matches!(t.dtype(), DType::F32 | DType::F64 | DType::F16) {
            assert_eq!(t.data, d.tensor.data, "{} is not exact", t.name);
        }
    }
}

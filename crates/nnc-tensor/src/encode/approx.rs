//! Approximation: each parameter's qp, then its integer levels (uniform, codebook or as-is), as the
//! reference's `approximator` does (hls.md §5.2–5.6).

use std::borrow::Cow;

use nnc_cabac::{EncodeLayerOptions, LayerConfig, LayerHistory};
use nnc_quant::qp_select::{tensor_qps, QpConfig, QpTensor};
use nnc_quant::{bitdepth, codebook, quantize_layer, QuantizeOptions};

use super::model::ParameterData;
use super::options::{CodebookMode, EncodeOptions};
use super::work::{Method, Work, WorkModel};
use crate::error::{Error, Result};

fn invalid(what: impl Into<String>) -> Error {
    Error::InvalidArgument { what: what.into() }
}

/// Sets `qp` and `dq_flag` of every parameter (reference `ApproxInfo`).
pub(super) fn assign_qps(model: &mut WorkModel, opts: &EncodeOptions) -> Result<()> {
    // A name that matches nothing is most likely a typo; it would otherwise be ignored.
    if let Some(name) = opts
        .qp_per_tensor
        .keys()
        .find(|n| !model.params.contains_key(n.as_str()))
    {
        return Err(invalid(format!(
            "qp_per_tensor names {name:?}, which is not among the tensors to encode"
        )));
    }
    // Float tensors are read in place; only integer tensors need a float copy.
    let stats: Vec<Cow<'_, [f32]>> = model
        .order
        .iter()
        .map(|n| match &model.params[n].values {
            ParameterData::F32(v) => Cow::Borrowed(&**v),
            ParameterData::I32(v) => Cow::Owned(v.iter().map(|&x| x as f32).collect()),
        })
        .collect();
    let per_tensor: Vec<(&str, i32)> = opts
        .qp_per_tensor
        .iter()
        .map(|(k, &v)| (k.as_str(), v))
        .collect();
    let tensors: Vec<QpTensor<'_>> = model
        .order
        .iter()
        .zip(&stats)
        .map(|(n, w)| QpTensor {
            name: n,
            parameter_type: model.params[n].ptype,
            weights: w.as_ref(),
        })
        .collect();
    let cfg = QpConfig {
        qp: opts.qp,
        qp_density: opts.qp_density,
        nonweight_qp: opts.nonweight_qp,
        qp_per_tensor: &per_tensor,
        opt_qp: opts.opt_qp,
        int_quant_bw: opts.int_quant_bw,
    };
    let qps = tensor_qps(&tensors, &cfg).map_err(|e| invalid(e.to_string()))?;
    for (name, qp) in model.order.clone().iter().zip(qps) {
        let w = model
            .params
            .get_mut(name)
            .ok_or_else(|| invalid("internal: lost parameter"))?;
        w.qp = qp;
        w.dq_flag = opts.use_dq;
    }
    Ok(())
}

/// Encoded payload size of `levels` with a fresh arithmetic coder, as the reference's trial
/// encodes; counted from the coder's shifts, without writing the payload.
pub(super) fn trial_size(levels: &[i32], cfg: &LayerConfig, param_opt: bool) -> Result<usize> {
    let opts = trial_options(param_opt);
    nnc_cabac::payload_size(cfg, &LayerHistory::default(), &opts, levels)
        .map_err(|e| invalid(format!("trial encode: {e}")))
}

/// The options of the reference's trial encodes: param_opt as given, nothing else.
fn trial_options(param_opt: bool) -> EncodeLayerOptions {
    EncodeLayerOptions {
        param_opt,
        row_skip_enabled_flag: false,
        chan_zero: None,
        tca_hdsp_flag_follows_profile: false,
    }
}

/// The reference's zero-offset search (see [`codebook::choose_codebook_zero_offset`]): one trial
/// encode per codebook entry (with param_opt), which makes it the costliest step of a codebook
/// encode. Groups of consecutive offsets are counted together
/// ([`nnc_cabac::shifted_payload_sizes`]) and the groups run on the workers; the rule then picks
/// from their sizes, so the choice does not depend on the thread count.
fn choose_zero_offset(indices: &[i32], codebook_size: usize, cfg: &LayerConfig) -> Result<u32> {
    use rayon::prelude::*;
    let candidates =
        codebook::zero_offset_candidates(codebook_size).map_err(|e| invalid(e.to_string()))?;
    let opts = trial_options(true);
    let trials = |offsets: std::ops::Range<u32>| {
        nnc_cabac::shifted_payload_sizes(cfg, &opts, indices, offsets)
            .map_err(|e| invalid(format!("trial encode: {e}")))
    };
    let sizes = if nnc_cabac::threads::worker_threads() == 1 {
        trials(0..candidates)?
    } else {
        let group = nnc_cabac::OFFSETS_PER_GROUP as u32;
        (0..candidates.div_ceil(group))
            .into_par_iter()
            .map(|g| trials(g * group..(g * group).saturating_add(group).min(candidates)))
            .collect::<Result<Vec<Vec<usize>>>>()?
            .concat()
    };
    codebook::best_codebook_zero_offset(&sizes).map_err(|e| invalid(e.to_string()))
}

fn quantize(
    w: &Work,
    values: &[f32],
    qp: i32,
    dq: bool,
    opts: &EncodeOptions,
) -> Result<(Vec<i32>, i32)> {
    let q = quantize_layer(
        values,
        &w.dims,
        &QuantizeOptions {
            dq_flag: dq,
            qp_density: opts.qp_density,
            qp,
            lambda_scale: opts.lambda_scale,
            // Reference quirk (quirks.md#rate-model-gtx-count): the driver passes
            // cabac_unary_length_minus1 as the rate model's flag count.
            max_num_no_rem: u32::from(opts.cabac_unary_length_minus1),
            scan_order: w.scan_order.unwrap_or(0),
            general_profile_idc: 1,
        },
    )
    .map_err(|e| invalid(format!("quantizing {}: {e}", w.name)))?;
    Ok((q.levels, q.qp))
}

/// Refuses a qp that the overflow fallback raised past what the NDU can signal, naming the cause
/// (a qp asked for out of range is refused when the NDU is written).
fn check_raised_qp(w: &Work, requested: i32, values: &[f32], opts: &EncodeOptions) -> Result<()> {
    let signalable = nnc_quant::qp_limit(opts.qp_density);
    if i64::from(requested) >= signalable || i64::from(w.qp) < signalable {
        return Ok(());
    }
    let peak = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    Err(invalid(format!(
        "tensor {:?}: its weights are too large to code (largest magnitude {peak:.3e}): levels \
         within 32 bits need qp {} or coarser, beyond {}, the largest qp qp_density {} can signal",
        w.name,
        w.qp,
        signalable - 1,
        opts.qp_density
    )))
}

/// Bit-depth clipping of a tensor's levels, if bit-depth mode is on.
fn clip_bitdepth(w: &Work, values: &[f32], levels: &mut [i32], opts: &EncodeOptions) {
    if let Some(bw) = opts.int_quant_bw {
        let bits = bitdepth::bitdepth_bits(w.ptype.is_weight(), bw);
        bitdepth::clip_levels_bitdepth(levels, bitdepth::is_unsigned(values), bits);
    }
}

/// An integer parameter is coded as it is: its values are its levels.
fn keep_integers(w: &mut Work, values: Vec<i32>) -> Result<()> {
    w.levels = values;
    w.method = Some(Method::Skip);
    w.dq_flag = false;
    Ok(())
}

/// Approximates one parameter. Its values move out of `w` (nothing reads them once the levels
/// exist), so a float copy the encoder owns is freed as soon as its tensor is quantized.
pub(super) fn approximate(w: &mut Work, opts: &EncodeOptions) -> Result<()> {
    let values = match std::mem::replace(&mut w.values, Vec::<f32>::new().into()) {
        ParameterData::F32(v) => v,
        ParameterData::I32(v) => return keep_integers(w, v.into_vec()),
    };
    let requested = w.qp;
    // An empty tensor has no codebook to build (the reference crashes trying): uniform.
    if opts.codebook_mode == CodebookMode::Off || values.is_empty() {
        let (mut levels, qp) = quantize(w, &values, w.qp, w.dq_flag, opts)?;
        if !w.name.contains(".num_batches_tracked") {
            clip_bitdepth(w, &values, &mut levels, opts);
        }
        w.levels = levels;
        w.qp = qp;
        w.method = Some(Method::Uniform);
    } else {
        approximate_codebook(w, &values, opts)?;
    }
    check_raised_qp(w, requested, &values, opts)
}

fn approximate_codebook(w: &mut Work, values: &[f32], opts: &EncodeOptions) -> Result<()> {
    let n_trial = u32::from(opts.cabac_unary_length_minus1);
    let cb_qp = codebook::codebook_qp(w.qp, opts.qp_density, w.dq_flag);
    let (mut levels, used_qp) = quantize(w, values, cb_qp, false, opts)?;
    let all_zero = values.iter().all(|&v| v == 0.0);
    if !all_zero {
        clip_bitdepth(w, values, &mut levels, opts);
    }
    let book = codebook::build_codebook(&levels);
    // Reference quirk: the zero-offset trial encodes use cabac_unary_length_minus1 flags, profile 0.
    let offset_cfg = LayerConfig {
        dims: w.dims.clone(),
        dq_flag: false,
        scan_order: 0,
        general_profile_idc: 0,
        parent_node_id_present_flag: false,
        codebook_size: 0,
        codebook_zero_offset: 0,
        cabac_unary_length: n_trial,
    };
    let zero_offset = choose_zero_offset(&book.indices, book.values.len(), &offset_cfg)?;
    let mut indices = vec![0; book.indices.len()];
    codebook::shift_codebook_indices(&book.indices, zero_offset, &mut indices);
    let (egk, cb_bits) = codebook::best_codebook_egk(&book.values, zero_offset)
        .map_err(|e| invalid(e.to_string()))?;
    let codebook_method = Method::Codebook {
        values: book.values.iter().map(|&v| i64::from(v)).collect(),
        zero_offset,
        egk: egk as u8,
    };
    let use_codebook = match opts.codebook_mode {
        CodebookMode::Always => true,
        _ => {
            let (mut uniform, uniform_qp) = if w.dq_flag {
                quantize(w, values, w.qp, true, opts)?
            } else {
                (levels.clone(), used_qp)
            };
            if !all_zero {
                clip_bitdepth(w, values, &mut uniform, opts);
            }
            let trial = |dq: bool| LayerConfig {
                dims: w.dims.clone(),
                dq_flag: dq,
                scan_order: w.scan_order.unwrap_or(0),
                general_profile_idc: 1,
                parent_node_id_present_flag: opts.compress_differences,
                codebook_size: 0,
                codebook_zero_offset: 0,
                cabac_unary_length: n_trial,
            };
            let uniform_size = || trial_size(&uniform, &trial(w.dq_flag), opts.param_opt);
            let codebook_size = || trial_size(&indices, &trial(false), opts.param_opt);
            let (bytes_uniform, bytes_codebook) = if nnc_cabac::threads::worker_threads() == 1 {
                (uniform_size(), codebook_size())
            } else {
                rayon::join(uniform_size, codebook_size)
            };
            let (bytes_uniform, bytes_codebook) = (bytes_uniform?, bytes_codebook?);
            let prefer =
                codebook::codebook_mode2_prefers_codebook(bytes_uniform, bytes_codebook, cb_bits);
            if !prefer {
                w.levels = uniform;
                w.qp = if w.dq_flag { uniform_qp } else { used_qp };
                w.method = Some(Method::Uniform);
                return Ok(());
            }
            true
        }
    };
    debug_assert!(use_codebook);
    w.levels = indices;
    w.qp = used_qp;
    w.dq_flag = false;
    w.method = Some(codebook_method);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threads::Workers;

    #[test]
    fn threaded_zero_offset_search_picks_what_the_serial_rule_picks() {
        // Clustered indices into a 23-entry codebook, skewed towards entry 15.
        let indices: Vec<i32> = (0..6000u32)
            .map(|i| {
                let x = i.wrapping_mul(2_654_435_761) >> 20;
                (15 + (x % 9) as i32 - (x % 5) as i32 * (x % 3) as i32).clamp(0, 22)
            })
            .collect();
        let cfg = LayerConfig {
            cabac_unary_length: 10,
            ..LayerConfig::new(vec![60, 100])
        };
        let size = |l: &[i32]| trial_size(l, &cfg, true).expect("trial encode");
        let (serial, _) = codebook::choose_codebook_zero_offset(&indices, 23, &size).unwrap();
        // Not an end of the range, so a search that stops early or scans backwards would miss it.
        assert!((1..22).contains(&serial), "offset {serial}");
        for threads in [1, 3] {
            let workers = Workers::new(Some(threads)).unwrap();
            let threaded = workers
                .install(|| choose_zero_offset(&indices, 23, &cfg))
                .unwrap();
            assert_eq!(threaded, serial, "{threads} threads");
        }
        assert!(choose_zero_offset(&indices, 0, &cfg).is_err());
    }
}

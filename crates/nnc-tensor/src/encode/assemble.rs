//! NNR units from approximated parameters: STR, MPS, TPL, then one NDU per parameter or block,
//! each with its CABAC payload and entry points (reference `coder.encode`, hls.md §6.1 E10–E12).

use std::borrow::Cow;

use nnc_bitstream::{
    encode_unit, Codebook, ModelParameterSet, NduHeader, NnrUnit, ParseContext, PayloadType,
    StartUnit, TopologyUnit,
};
use nnc_cabac::{
    ArithDecoder, ArithEncoder, EncodeLayerOptions, EntryMarks, HdspMode, LayerConfig, LayerHistory,
};

use super::options::EncodeOptions;
use super::work::{Item, Method, Work, WorkModel};
use crate::error::{Error, Result};
use crate::members::cpt;
use crate::state::{IncrementalState, StateChanges};
use crate::threads::map_largest_first;

fn invalid(what: impl Into<String>) -> Error {
    Error::InvalidArgument { what: what.into() }
}

fn syntax(e: nnc_bitstream::Error) -> Error {
    Error::InvalidArgument {
        what: format!("writing a unit: {e}"),
    }
}

/// Incremental context of one encode call.
pub(super) struct Incremental<'s> {
    /// The state before this bitstream.
    pub state: &'s IncrementalState,
    /// Record the coded levels as the new base (the reference's `update_base_param`).
    pub update: bool,
    /// What the bitstream changes in the state, applied once the whole encode succeeds.
    pub changes: StateChanges,
}

/// One NDU to write: its header template and its members in coding order.
struct NduPlan {
    header: NduHeader,
    members: Vec<String>,
}

fn payload_type(method: &Method) -> PayloadType {
    match method {
        Method::Skip => PayloadType::Int,
        _ => PayloadType::Float,
    }
}

fn method_of<'w>(w: &'w Work<'_>) -> Result<&'w Method> {
    w.method
        .as_ref()
        .ok_or_else(|| invalid(format!("internal: {} was not approximated", w.name)))
}

fn codebook_of(w: &Work) -> Option<Codebook> {
    match &w.method {
        Some(Method::Codebook {
            values,
            zero_offset,
            egk,
        }) => Some(Codebook {
            codebook_egk: *egk,
            codebook_size: values.len() as u64,
            codebook_zero_offset: u64::from(*zero_offset),
            values: values.clone(),
        }),
        _ => None,
    }
}

/// The reference's `is_block_possible`.
fn block_possible(
    model: &WorkModel,
    block: &super::work::Block,
    members: &[String],
) -> Result<bool> {
    if block.cpt & cpt::DC != 0 {
        let g = method_of(model.get(&block.dc_g)?)?;
        let h = method_of(model.get(&block.dc_h)?)?;
        if std::mem::discriminant(g) != std::mem::discriminant(h) {
            return Ok(false);
        }
    }
    let mut dq = None;
    for name in members {
        let w = model.get(name)?;
        let m = method_of(w)?;
        let is_weight = name == &block.w || name == &block.dc_g || name == &block.dc_h;
        if !is_weight && matches!(m, Method::Codebook { .. }) {
            return Ok(false);
        }
        if *dq.get_or_insert(w.dq_flag) != w.dq_flag {
            return Ok(false);
        }
        if matches!(m, Method::Skip) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn base_header(opts: &EncodeOptions, parent_signalling: bool) -> NduHeader {
    NduHeader {
        nnr_compressed_data_unit_payload_type: PayloadType::Float,
        nnr_multiple_topology_elements_present_flag: false,
        nnr_decompressed_data_format_present_flag: false,
        input_parameters_present_flag: true,
        topology_elem_id_list: None,
        topology_elem_id_index_list: None,
        topology_elem_id: None,
        topology_elem_id_index: None,
        node_id_present_flag: Some(true),
        device_id: Some(opts.device_id),
        parameter_id: Some(0),
        put_node_depth: Some(0),
        parent_node_id_present_flag: parent_signalling.then_some(opts.compress_differences),
        parent_node_id_type: opts.compress_differences.then_some(0),
        temporal_context_modeling_flag: opts.compress_differences.then_some(false),
        parent_device_id: opts.compress_differences.then_some(0),
        parent_node_payload_sha256: None,
        parent_node_payload_sha512: None,
        codebook_present_flag: None,
        codebook: None,
        dq_flag: None,
        nnr_decompressed_data_format: None,
        tensor_dimensions_flag: Some(true),
        cabac_unary_length_flag: Some(true),
        compressed_parameter_types: 0,
        decomposition_rank: None,
        g_number_of_rows: None,
        tensor_dimensions: Vec::new(),
        cabac_unary_length_minus1: opts.cabac_unary_length_minus1,
        codebook_dc: None,
        first_tensor_dimension_shift: None,
        scan_order: None,
        cabac_entry_point_list: None,
    }
}

/// Fills the fields that depend on the NDU's leading parameter (reference `compile_ndu`).
#[allow(clippy::too_many_arguments)]
fn fill_header(
    h: &mut NduHeader,
    lead: &Work,
    dims: &[usize],
    cpt_bits: u8,
    parameter_id: u64,
    inc: Option<&Incremental<'_>>,
    opts: &EncodeOptions,
) -> Result<()> {
    let method = method_of(lead)?;
    h.dq_flag = Some(lead.dq_flag);
    if h.nnr_compressed_data_unit_payload_type != PayloadType::Int {
        h.codebook = codebook_of(lead);
        h.codebook_present_flag = Some(h.codebook.is_some());
    }
    let _ = method;
    h.compressed_parameter_types = cpt_bits;
    h.tensor_dimensions = dims.iter().map(|&d| d as u64).collect();
    h.parameter_id = Some(parameter_id);
    let stored = inc.and_then(|i| i.state.bases.get(&lead.name));
    h.put_node_depth = Some(match (inc, stored) {
        (None, _) => 0,
        (Some(_), None) => 1,
        (Some(_), Some(b)) => b.put_node_depth + 1,
    });
    if opts.compress_differences {
        h.temporal_context_modeling_flag = Some(opts.tca && inc.is_some() && stored.is_some());
    }
    if dims.len() > 1 {
        h.first_tensor_dimension_shift = Some(0);
        // A single row or column (or no row at all) cannot be block-scanned and gets no entry
        // points; the reference crashes writing such a header, we write scan order 0
        // (quirks.md#single-row-scan-order).
        let single_line = dims[0] <= 1 || dims[1..].iter().product::<usize>() == 1;
        h.scan_order = Some(if single_line {
            0
        } else {
            lead.scan_order.unwrap_or(0)
        });
    }
    Ok(())
}

fn plan_ndus(
    model: &WorkModel,
    opts: &EncodeOptions,
    inc: Option<&Incremental<'_>>,
) -> Result<Vec<NduPlan>> {
    let parent_signalling = opts.compress_differences || opts.pre_signalling;
    let mut plans = Vec::new();
    for item in &model.items {
        match item {
            Item::Single(name) => {
                let w = model.get(name)?;
                let mut h = base_header(opts, parent_signalling);
                h.nnr_compressed_data_unit_payload_type = payload_type(method_of(w)?);
                h.topology_elem_id = Some(name.clone());
                fill_header(&mut h, w, &w.dims, 0, w.index.unwrap_or(0), inc, opts)?;
                plans.push(NduPlan {
                    header: h,
                    members: vec![name.clone()],
                });
            }
            Item::Block(block) => {
                let members = block.coding_order()?;
                let w_dims = model.weight_dims.get(&block.w).cloned().ok_or_else(|| {
                    invalid(format!("block weight {:?} has no dimensions", block.w))
                })?;
                let w_index = model.weight_index.get(&block.w).copied().unwrap_or(0);
                let dc = block.cpt & cpt::DC != 0;
                let decomposition = if dc {
                    let g = model.get(&block.dc_g)?;
                    Some((g.dims.get(1).copied().unwrap_or(1) as u64, g.dims[0] as u64))
                } else {
                    None
                };
                if block_possible(model, block, &members)? {
                    let lead_name = if dc { &block.dc_g } else { &block.w };
                    let lead = model.get(lead_name)?;
                    let mut h = base_header(opts, parent_signalling);
                    h.nnr_compressed_data_unit_payload_type = PayloadType::Block;
                    h.nnr_multiple_topology_elements_present_flag = true;
                    h.topology_elem_id_list = Some(block.element_order());
                    fill_header(&mut h, lead, &w_dims, block.cpt, w_index, inc, opts)?;
                    if dc {
                        h.codebook_dc = codebook_of(model.get(&block.dc_h)?);
                    }
                    if let Some((rank, rows)) = decomposition {
                        h.decomposition_rank = Some(rank);
                        h.g_number_of_rows = Some(rows);
                    }
                    if parent_signalling {
                        // Reference: parent-signalled blocks carry their dimensions out of band.
                        h.tensor_dimensions_flag = Some(false);
                    }
                    plans.push(NduPlan { header: h, members });
                } else {
                    for name in &members {
                        let w = model.get(name)?;
                        let dims = if name == &block.ls || name == &block.bias {
                            vec![w_dims[0]]
                        } else if dc && (name == &block.dc_g || name == &block.dc_h) {
                            w_dims.clone()
                        } else {
                            w.dims.clone()
                        };
                        // Reference quirk: split members the encoder synthesised borrow the index
                        // of a batch-norm tensor (quirks.md#split-block-parameter-id).
                        let parameter_id = match w.index {
                            Some(i) => i,
                            None if name == &block.bias => block
                                .bn_beta
                                .as_ref()
                                .and_then(|n| model.params.get(n))
                                .and_then(|b| b.index)
                                .unwrap_or(0),
                            None => block
                                .bn_gamma
                                .as_ref()
                                .and_then(|n| model.params.get(n))
                                .and_then(|b| b.index)
                                .unwrap_or(0),
                        };
                        let mut h = base_header(opts, parent_signalling);
                        h.nnr_compressed_data_unit_payload_type = payload_type(method_of(w)?);
                        h.topology_elem_id = Some(name.clone());
                        fill_header(&mut h, w, &dims, block.cpt, parameter_id, inc, opts)?;
                        if let Some((rank, rows)) = decomposition {
                            h.decomposition_rank = Some(rank);
                            h.g_number_of_rows = Some(rows);
                        }
                        if parent_signalling {
                            h.tensor_dimensions_flag = Some(false);
                        }
                        plans.push(NduPlan {
                            header: h,
                            members: vec![name.clone()],
                        });
                    }
                }
            }
        }
    }
    Ok(plans)
}

/// LayerConfig of one member inside an NDU.
fn layer_config(h: &NduHeader, w: &Work) -> LayerConfig {
    let codebook = codebook_of(w);
    LayerConfig {
        dims: w.dims.clone(),
        dq_flag: w.dq_flag,
        scan_order: if w.dims.len() <= 1 {
            0
        } else {
            h.scan_order.unwrap_or(0)
        },
        general_profile_idc: 1,
        parent_node_id_present_flag: h.parent_node_id_present_flag.unwrap_or(false),
        codebook_size: codebook.as_ref().map_or(0, |c| c.codebook_size as u32),
        codebook_zero_offset: codebook
            .as_ref()
            .map_or(0, |c| c.codebook_zero_offset as u32),
        cabac_unary_length: u32::from(h.cabac_unary_length_minus1) + 1,
    }
}

fn check_tca(h: &NduHeader, name: &str, state: &IncrementalState) -> Result<()> {
    let base = state.bases.get(name).ok_or_else(|| {
        invalid(format!(
            "TCA for {name:?} needs its previous update in the state"
        ))
    })?;
    let depth = h.put_node_depth.unwrap_or(0);
    if h.device_id.unwrap_or(0) != state.device_id
        || h.parameter_id.unwrap_or(0) != base.parameter_id
        || depth.checked_sub(1) != Some(base.put_node_depth)
    {
        return Err(Error::EncoderState {
            what: format!(
                "tensor {name:?}: device, parameter id or update depth differ from the state"
            ),
        });
    }
    Ok(())
}

/// Bits of a tensor's qp in the NDU payload (`iae_v(6 + qp_density)`).
pub(super) fn qp_bits(qp_density: u8) -> u32 {
    6 + u32::from(qp_density)
}

/// One NDU's finished CABAC payload and where each member's block rows restart.
struct Payload {
    bytes: Vec<u8>,
    marks: Vec<EntryMarks>,
}

/// Encodes the members of one NDU into one CABAC payload with the given HDSP mode index
/// (`None`: HDSP not in use).
fn encode_payload(
    model: &WorkModel,
    plan: &NduPlan,
    opts: &EncodeOptions,
    state: Option<&IncrementalState>,
    hdsp_mode: Option<u8>,
) -> Result<Payload> {
    let mut marks = Vec::with_capacity(plan.members.len());
    let h = &plan.header;
    let mut enc = ArithEncoder::new();
    let quantized = h.nnr_compressed_data_unit_payload_type != PayloadType::Int;
    let tca = h.temporal_context_modeling_flag == Some(true);
    for name in &plan.members {
        let w = model.get(name)?;
        if quantized {
            let bits = qp_bits(opts.qp_density);
            let limit = nnc_quant::qp_limit(opts.qp_density);
            // The reference masks an out-of-range qp to `bits` bits and so writes a stream that
            // decodes to another qp; we refuse unless asked for its bytes
            // (quirks.md#qp-offset-range). `iae_v` writes the low `bits` bits either way.
            if !opts.mask_unsignalable_qp && !(-limit..limit).contains(&i64::from(w.qp)) {
                return Err(invalid(format!(
                    "tensor {name:?}: qp {} is outside [{}, {}], the range qp_density {} can signal",
                    w.qp,
                    -limit,
                    limit - 1,
                    opts.qp_density
                )));
            }
            enc.iae_v(bits, w.qp);
        }
        let cfg = layer_config(h, w);
        let base = match (tca, state) {
            (true, Some(s)) => {
                check_tca(h, name, s)?;
                Some(s.bases[name].levels.as_slice())
            }
            _ => None,
        };
        let hist = state.and_then(|s| s.hdsp_history.get(name));
        let (mode, hist) = match hdsp_mode {
            None => (HdspMode::AlwaysOff, None),
            Some(1) if hist.is_some() => (HdspMode::TensorOn, hist.map(Vec::as_slice)),
            Some(_) => (HdspMode::TensorOff, None),
        };
        let history = LayerHistory {
            base_levels: base,
            hdsp_mode: mode,
            hdsp_hist: hist,
        };
        let layer_opts = EncodeLayerOptions {
            param_opt: opts.param_opt,
            row_skip_enabled_flag: opts.row_skipping,
            chan_zero: None,
            tca_hdsp_flag_follows_profile: tca,
        };
        marks.push(
            nnc_cabac::encode_layer_marking_entry_points(
                &mut enc,
                &cfg,
                &history,
                &layer_opts,
                &w.levels,
            )
            .map_err(|e| invalid(format!("coding {name}: {e}")))?,
        );
    }
    Ok(Payload {
        bytes: enc.finish(),
        marks,
    })
}

/// Whether a tensor is block-scanned with exactly one block row (no entry points of its own).
fn single_block_row(cfg: &LayerConfig) -> bool {
    let h = cfg.dims.first().copied().unwrap_or(1);
    let w: usize = cfg.dims.iter().skip(1).product();
    cfg.dims.len() > 1 && h > 1 && w > 1 && cfg.scan_order > 0 && h <= 4usize << cfg.scan_order
}

/// The NDU's entry points, resolved from the marks its encode left. Where the reference's own
/// decode of the payload loses sync (quirks.md#entry-point-desync) before a later member, that
/// member's entry points are whatever the desynchronised decode finds, so the payload is
/// decoded as the reference does ([`decoded_entry_points`]).
fn entry_points(
    model: &WorkModel,
    plan: &NduPlan,
    payload: &Payload,
    opts: &EncodeOptions,
    state: Option<&IncrementalState>,
) -> Result<Vec<u64>> {
    let before_last = payload.marks.len().saturating_sub(1);
    if payload.marks[..before_last]
        .iter()
        .any(EntryMarks::reference_decoder_desyncs)
    {
        return decoded_entry_points(model, plan, &payload.bytes, opts, state);
    }
    Ok(payload
        .marks
        .iter()
        .flat_map(|m| m.resolve(&payload.bytes))
        .collect())
}

/// Entry points of a finished payload, found by decoding it as the reference does.
fn decoded_entry_points(
    model: &WorkModel,
    plan: &NduPlan,
    payload: &[u8],
    opts: &EncodeOptions,
    state: Option<&IncrementalState>,
) -> Result<Vec<u64>> {
    let h = &plan.header;
    let mut dec = ArithDecoder::new(payload);
    let quantized = h.nnr_compressed_data_unit_payload_type != PayloadType::Int;
    let tca = h.temporal_context_modeling_flag == Some(true);
    let mut eps = Vec::new();
    for (i, name) in plan.members.iter().enumerate() {
        let w = model.get(name)?;
        if quantized {
            dec.iae_v(6 + u32::from(opts.qp_density));
        }
        let cfg = layer_config(h, w);
        // Reference quirk (quirks.md#entry-point-desync): the entry-point decoder resets the
        // range of a single-block-row tensor and loses sync. A last member contributes no entry
        // points and affects nothing after it, so it is not decoded at all.
        if i + 1 == plan.members.len() && single_block_row(&cfg) {
            break;
        }
        let base = match (tca, state) {
            (true, Some(s)) => s.bases.get(name).map(|b| b.levels.as_slice()),
            _ => None,
        };
        let hist = if opts.hdsp {
            state
                .and_then(|s| s.hdsp_history.get(name))
                .map(Vec::as_slice)
        } else {
            None
        };
        let history = LayerHistory {
            base_levels: base,
            hdsp_mode: HdspMode::for_tensor(opts.hdsp, hist.is_some()),
            hdsp_hist: hist,
        };
        let mut out: Vec<i32> = nnc_quant::buffer::zeroed(w.levels.len());
        let (_, part) =
            nnc_cabac::decode_layer_and_create_entry_points(&mut dec, &cfg, &history, &mut out)
                .map_err(|e| invalid(format!("entry points of {name}: {e}")))?;
        eps.extend(part);
    }
    Ok(eps)
}

/// One NDU's CABAC payload, the HDSP mode chosen (when two were tried) and its entry points.
struct CodedNdu {
    payload: Vec<u8>,
    hdsp_mode: Option<u8>,
    entry_points: Vec<u64>,
}

fn code_ndu(
    model: &WorkModel,
    plan: &NduPlan,
    opts: &EncodeOptions,
    state: Option<&IncrementalState>,
    hdsp_on: bool,
) -> Result<CodedNdu> {
    let (payload, hdsp_mode) = if hdsp_on {
        let all_have_hist = plan
            .members
            .iter()
            .all(|n| state.is_some_and(|s| s.hdsp_history.contains_key(n)));
        let modes: u8 = if all_have_hist { 2 } else { 1 };
        let mut best: Option<(u8, Payload)> = None;
        for mode in 0..modes {
            let p = encode_payload(model, plan, opts, state, Some(mode))?;
            // The first (mode off) wins ties.
            if best
                .as_ref()
                .is_none_or(|(_, b)| p.bytes.len() < b.bytes.len())
            {
                best = Some((mode, p));
            }
        }
        let (mode, p) = best.ok_or_else(|| invalid("internal: no HDSP mode"))?;
        (p, (modes > 1).then_some(mode))
    } else {
        (encode_payload(model, plan, opts, state, None)?, None)
    };
    // Entry points only exist for block-scanned NDUs.
    let entry_points = if plan.header.scan_order.unwrap_or(0) > 0 {
        entry_points(model, plan, &payload, opts, state)?
    } else {
        Vec::new()
    };
    Ok(CodedNdu {
        payload: payload.bytes,
        hdsp_mode,
        entry_points,
    })
}

/// Writes the whole bitstream.
pub(super) fn write_stream(
    model: &WorkModel,
    opts: &EncodeOptions,
    topology_data: String,
    mut inc: Option<&mut Incremental<'_>>,
) -> Result<(Vec<u8>, Vec<String>)> {
    let parent_signalling = opts.compress_differences || opts.pre_signalling;
    let mut out = Vec::new();
    let str_ctx = ParseContext::default();
    out.extend(
        encode_unit(
            &NnrUnit::Str(StartUnit {
                general_profile_idc: 1,
            }),
            &str_ctx,
        )
        .map_err(syntax)?,
    );
    let mut ctx = str_ctx;
    ctx.general_profile_idc = 1;
    let mps = ModelParameterSet {
        topology_carriage_flag: true,
        mps_sparsification_flag: false,
        mps_pruning_flag: false,
        mps_unification_flag: false,
        mps_decomposition_performance_map_flag: false,
        mps_quantization_method_flags: 1,
        mps_topology_indexed_reference_flag: false,
        base_model_id_present_flag: Some(false),
        validation_set_performance_present_flag: Some(false),
        metric_type_performance_map_valid_flag: Some(false),
        mps_parent_signalling_enabled_flag: Some(parent_signalling),
        nnr_pre_flag: parent_signalling.then_some(opts.pre_signalling),
        nnr_reserved_zero_1bit: (!parent_signalling).then_some(0),
        nnr_reserved_zero_2bits: Some(0),
        base_model_id: None,
        performance_metric_type: None,
        nnr_reserved_zero_7bits: None,
        mps_qp_density: Some(opts.qp_density),
        mps_quantization_parameter: Some(0),
        sparsification_performance_map: None,
        pruning_performance_map: None,
        unification_performance_map: None,
        decomposition_performance_map: None,
        validation_set_performance: None,
    };
    out.extend(encode_unit(&NnrUnit::Mps(mps), &ctx).map_err(syntax)?);
    ctx = ParseContext::profile1(parent_signalling);
    let tpl = TopologyUnit {
        topology_storage_format: model.topology_storage_format,
        topology_compression_format: 0,
        topology_data: Some(topology_data),
        topology_elem_id_list: None,
    };
    out.extend(encode_unit(&NnrUnit::Tpl(tpl), &ctx).map_err(syntax)?);

    let plans = plan_ndus(model, opts, inc.as_deref())?;
    let hdsp_on = opts.hdsp && inc.is_some();
    let mut skipped = Vec::new();
    // All-zero NDUs of a parent-signalled stream are not written.
    let (plans, dropped): (Vec<NduPlan>, Vec<NduPlan>) = plans.into_iter().partition(|plan| {
        !(parent_signalling
            && plan.members.iter().all(|n| {
                model
                    .params
                    .get(n)
                    .is_some_and(|w| w.levels.iter().all(|&l| l == 0))
            }))
    });
    skipped.extend(dropped.into_iter().flat_map(|p| p.members));
    // NDUs are independent arithmetic-coded streams: code them in parallel against the state as it
    // was before this bitstream (a tensor appears in one NDU only), then apply the state updates
    // in order. Largest first: MiniLM's word embeddings are half its values.
    let coded: Vec<Result<CodedNdu>> = {
        let state_ref = inc.as_ref().map(|i| i.state);
        let elements = |plan: &NduPlan| -> u64 {
            plan.members
                .iter()
                .filter_map(|n| model.params.get(n))
                .map(|w| w.levels.len() as u64)
                .sum()
        };
        map_largest_first(
            plans.iter().collect(),
            |plan| elements(plan),
            |plan| code_ndu(model, plan, opts, state_ref, hdsp_on),
        )
    };
    // Room for every unit at once, so the stream never grows by copying itself (that copy was
    // the encoder's last peak of memory); headers are far below 256 bytes besides entry points.
    out.reserve(
        coded
            .iter()
            .flatten()
            .map(|c| c.payload.len() + 256 + 8 * c.entry_points.len())
            .sum(),
    );
    for (mut plan, coded) in plans.into_iter().zip(coded) {
        let coded = coded?;
        if let (Some(mode), Some(i)) = (coded.hdsp_mode, inc.as_mut()) {
            for n in &plan.members {
                i.changes.set_hdsp_best_mode(n, mode);
            }
        }
        let dims = &plan.header.tensor_dimensions;
        let height = dims.first().copied().unwrap_or(1);
        let width: u64 = dims.iter().skip(1).product();
        if width > 1 && height > 1 && plan.header.scan_order.unwrap_or(0) > 0 {
            plan.header.cabac_entry_point_list = Some(coded.entry_points);
        }
        if let Some(i) = inc.as_mut() {
            if i.update {
                let device = plan.header.device_id.unwrap_or(0);
                let pid = plan.header.parameter_id.unwrap_or(0);
                for n in &plan.members {
                    // The levels are copied from the encoded tensors when the changes apply.
                    i.changes
                        .record(i.state, n, None, device, pid, false)
                        .map_err(|what| Error::EncoderState {
                            what: format!("tensor {n:?}: {what}"),
                        })?;
                }
            }
        }
        let unit = NnrUnit::Ndu {
            header: plan.header,
            payload: Cow::Owned(coded.payload),
        };
        out.extend(encode_unit(&unit, &ctx).map_err(syntax)?);
    }
    if hdsp_on {
        if let Some(i) = inc.as_mut() {
            for name in &model.order {
                if let Some(w) = model.params.get(name) {
                    i.changes.mark_hdsp(name, &w.levels);
                }
            }
        }
    }
    Ok((out, skipped))
}

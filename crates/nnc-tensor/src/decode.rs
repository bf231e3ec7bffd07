//! Bitstream → named tensors: the NNR decoder pipeline (hls.md §6.2).
//!
//! Units are read in order; the parameter sets in force are kept in a [`StreamContext`]; each NDU's
//! tensors are entropy-decoded into levels and reconstructed. State that outlives one bitstream
//! (TCA bases, HDSP history, update-tree bookkeeping) lives in the caller's [`DecoderState`].

use nnc_bitstream::{NduHeader, NnrUnit, ParseContext, SideInfo, UnitReader};
use nnc_cabac::{ArithDecoder, HdspMode, LayerConfig, LayerHistory};

use crate::error::{Error, Location, Result};
use crate::limits::Limits;
use crate::members::{cpt, is_block, members, Member, MemberRole};
use crate::state::{DecoderState, StateChanges};
use crate::tensor::{DType, Tensor, TensorData};

/// Decoder settings.
///
/// `Default` is [`DecodeOptions::new`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DecodeOptions {
    /// Resource limits. Default: [`Limits::default`].
    pub limits: Limits,
    /// Out-of-band information the bitstream refers to but does not carry (tensor dimensions of
    /// parent-signalled block NDUs). Default: none.
    pub side_info: SideInfo,
    /// Recompose low-rank decomposed weights (W = G·H) in the output. Default: `true`
    /// (set through [`DecodeOptions::with_recompose_decomposed`]).
    pub recompose_decomposed: bool,
    /// Use history-dependent significance probability (HDSP) with the history kept in the
    /// [`DecoderState`]. Must match the encoder. Default: `false`.
    pub hdsp: bool,
    /// Return each tensor's entropy-decoded levels in [`DecodedTensor::levels`]. Turning this off
    /// (with [`DecodeOptions::update_state`] off too) lets the decoder turn the levels into values
    /// in place, halving the memory a tensor needs. Default: `true`.
    pub keep_levels: bool,
    /// Record the bitstream's tensors in the [`DecoderState`] (TCA bases, update depths, HDSP
    /// history), as incremental decoding needs. When off, the state is only read (and the same
    /// consistency checks are made), so a one-off decode does not hold every tensor's levels.
    /// Default: `true`.
    pub update_state: bool,
    /// Worker threads for entropy decoding: `None` (or `Some(0)`) uses rayon's global pool (all
    /// cores), `Some(n)` a pool of `n` threads (at most [`MAX_THREADS`](crate::MAX_THREADS), or
    /// the decode fails), kept for later calls with the same count when `n` is at most the
    /// machine's cores. The output is the same for any value. `Some(1)` on a stream of fewer
    /// than 65 536 values, and any setting on a stream of one NDU of fewer than 8 192 values,
    /// runs on the calling thread without a pool: handing a call to a pool's threads costs some
    /// tens of microseconds, as much as decoding several hundred values. Default: `None`.
    pub threads: Option<usize>,
    /// Apply each block's local scaling (`weight.ls`, the factors NNCodec's LSA trains) to its
    /// weight, row by row, and leave the scaling out of the output, as NNCodec's
    /// `decompress(reconstruct_lsa=True)` does: the weight comes out as the original layer's
    /// (a low-rank block's factor G takes the scaling, so its recomposed weight does). The
    /// weight's [`DecodedTensor::levels`] and approximation stay those of the coded values.
    /// A block whose scaling carries a batch norm folded by nnc (the stream's metadata) is
    /// unfolded instead. Not for a differential update, whose scaling is a difference to its
    /// base's rather than a factor (`nnc decode` refuses it with `--base`). Default: `false`,
    /// the scaling comes out as a tensor of its own.
    pub apply_local_scaling: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl DecodeOptions {
    /// Options with the defaults documented on each field.
    pub fn new() -> Self {
        DecodeOptions {
            limits: Limits::default(),
            side_info: SideInfo::default(),
            recompose_decomposed: true,
            hdsp: false,
            keep_levels: true,
            update_state: true,
            threads: None,
            apply_local_scaling: false,
        }
    }
    /// Sets [`DecodeOptions::limits`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
    /// Sets [`DecodeOptions::recompose_decomposed`].
    pub fn with_recompose_decomposed(mut self, on: bool) -> Self {
        self.recompose_decomposed = on;
        self
    }
    /// Sets [`DecodeOptions::hdsp`].
    pub fn with_hdsp(mut self, on: bool) -> Self {
        self.hdsp = on;
        self
    }
    /// Sets [`DecodeOptions::keep_levels`].
    pub fn with_keep_levels(mut self, on: bool) -> Self {
        self.keep_levels = on;
        self
    }
    /// Sets [`DecodeOptions::update_state`].
    pub fn with_update_state(mut self, on: bool) -> Self {
        self.update_state = on;
        self
    }
    /// Sets [`DecodeOptions::threads`].
    pub fn with_threads(mut self, threads: Option<usize>) -> Self {
        self.threads = threads;
        self
    }
    /// Sets [`DecodeOptions::apply_local_scaling`].
    pub fn with_apply_local_scaling(mut self, on: bool) -> Self {
        self.apply_local_scaling = on;
        self
    }
    /// Supplies the dimensions of a tensor the bitstream does not carry.
    pub fn with_tensor_dimensions(mut self, name: impl Into<String>, dims: Vec<u64>) -> Self {
        self.side_info.tensor_dimensions.insert(name.into(), dims);
        self
    }
}

/// How a tensor's levels become values.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Approximation {
    /// Uniform step size from `qp`, `qp_density`; levels are reconstruction indices.
    Uniform {
        /// The tensor's quantization parameter.
        qp: i32,
        /// `qp_density` in force.
        qp_density: u8,
        /// Dependent quantization was used.
        dq_flag: bool,
    },
    /// Codebook: value = codebook[level + zero offset] · step.
    Codebook {
        /// The tensor's quantization parameter.
        qp: i32,
        /// `qp_density` in force.
        qp_density: u8,
        /// Codebook entries (integers, in units of the step).
        codebook: Vec<i64>,
        /// Index of the zero entry (`CbZeroOffset`).
        codebook_zero_offset: u32,
    },
    /// Integer tensor: the levels are the values.
    Integer,
    /// Uncompressed float32 payload.
    RawFloat,
    /// Not coded: carried verbatim in the stream's metadata (see [`crate::metadata`]), or made
    /// from it (the constants of an unfolded batch norm, [`crate::metadata::FoldedNorm`]).
    Verbatim,
}

impl Approximation {
    /// The quantization parameter of a uniform or codebook tensor; `None` for the others.
    pub fn qp(&self) -> Option<i32> {
        match self {
            Approximation::Uniform { qp, .. } | Approximation::Codebook { qp, .. } => Some(*qp),
            _ => None,
        }
    }
}

/// One decoded tensor with the integers it was reconstructed from.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedTensor {
    /// Reconstructed tensor: float32 for uniform and raw payloads, float64 for codebook payloads
    /// (as the reference returns), int32 for integer payloads.
    pub tensor: Tensor,
    /// Entropy-decoded levels (reconstruction units), `None` for raw float payloads.
    pub levels: Option<Vec<i32>>,
    /// How `levels` map to values.
    pub approximation: Approximation,
}

impl DecodedTensor {
    /// The levels as an int32 tensor under the tensor's name and shape.
    pub fn levels_tensor(&self) -> Option<Tensor> {
        let levels = self.levels.clone()?;
        Some(Tensor {
            name: self.tensor.name.clone(),
            shape: self.tensor.shape.clone(),
            data: TensorData::I32(levels),
        })
    }
}

/// Everything a bitstream decodes to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodedStream {
    /// Tensors in decoding order (block members in coding order).
    pub tensors: Vec<DecodedTensor>,
    /// `general_profile_idc` of the stream.
    pub general_profile_idc: u8,
    /// `topology_storage_format` of the TPL unit, if any.
    pub topology_storage_format: Option<u8>,
    /// The model's free-form string attributes carried in the stream's metadata
    /// ([`crate::EncodeInput::attributes`]); empty when none are carried.
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Files attached to the model ([`crate::EncodeInput::files`]), still packed.
    pub files: std::collections::BTreeMap<String, crate::metadata::AttachedFile>,
}

impl DecodedStream {
    /// The decoded tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&DecodedTensor> {
        self.tensors.iter().find(|t| t.tensor.name == name)
    }
}

/// An NDU checked and ready to be entropy-decoded, with the parameter sets in force for it.
pub(crate) struct NduJob<'a> {
    pub(crate) header: NduHeader,
    payload: &'a [u8],
    /// Bytes of the whole NNR unit (header and payload).
    pub(crate) unit_bytes: usize,
    pub(crate) here: Location,
    pub(crate) members: Vec<Member>,
    qp_density: u8,
    base_qp: i32,
    general_profile_idc: u8,
    /// Elements of all members (checked against the limits).
    pub(crate) elements: u64,
}

impl NduJob<'_> {
    /// Whether the payload is raw float32 (then only the first member is decoded).
    pub(crate) fn is_raw(&self) -> bool {
        self.header.nnr_compressed_data_unit_payload_type == nnc_bitstream::PayloadType::RawFloat
    }

    /// Whether the members are quantized floats (each with its own QP in the payload), not
    /// integers or raw float32.
    pub(crate) fn is_quantized(&self) -> bool {
        matches!(
            self.header.nnr_compressed_data_unit_payload_type,
            nnc_bitstream::PayloadType::Float | nnc_bitstream::PayloadType::Block
        )
    }

    /// Whether the members' levels are dependent-quantization reconstruction indices.
    fn dq_flag(&self) -> bool {
        self.is_quantized() && self.header.dq_flag.unwrap_or(false)
    }

    /// The header's entry points, when exactly one member can own them: the reference hands
    /// every such member the list from its start (hls.md §4.5), so with two (a low-rank G and H
    /// in one block) they are not split here and both decode without them.
    fn entry_points(&self) -> Option<&[u64]> {
        let with_rows = self.members.iter().filter(|m| m.dims.len() > 1).count();
        self.header
            .cabac_entry_point_list
            .as_deref()
            .filter(|eps| !eps.is_empty() && with_rows == 1)
    }

    /// The element type a member decodes to, before any metadata cast.
    pub(crate) fn decoded_dtype(&self, m: &Member) -> DType {
        if self.is_raw() {
            DType::F32
        } else if !self.is_quantized() {
            DType::I32
        } else if member_codebook(&self.header, m).is_some() {
            DType::F64
        } else {
            DType::F32
        }
    }
}

/// What entropy decoding an NDU gives.
pub(crate) enum NduOutput {
    /// A raw float32 tensor.
    Raw(DecodedTensor),
    /// The coded members, in coding order.
    Coded(Vec<MemberOutput>),
}

/// Parameter sets in force while reading one bitstream.
#[derive(Debug, Default)]
struct StreamContext {
    parse: ParseContext,
    seen_start: bool,
    seen_mps: bool,
    seen_ndu: bool,
    qp_density: u8,
    base_qp: i32,
    parent_signalling: bool,
    /// Set after a non-block NDU carrying factor G: the next must carry H.
    pending_factor_h: bool,
    /// Name of that factor G and the dimensions of the weight it belongs to.
    pending_factor_g: Option<(String, Vec<u64>)>,
    total_elements: u64,
    /// Names of the tensors seen so far in this bitstream.
    names: std::collections::HashSet<String>,
    /// Low-rank pairs to multiply out after decoding, in decoding order.
    recompositions: Vec<Recomposition>,
}

/// A weight W = G·H to rebuild from two decoded factors.
#[derive(Debug)]
pub(crate) struct Recomposition {
    pub(crate) g: String,
    pub(crate) h: String,
    /// Shape of W as signalled (`tensor_dimensions` of the NDU carrying the factors).
    pub(crate) dims: Vec<u64>,
    /// Where the NDU carrying H starts (for errors).
    pub(crate) at: Location,
}

/// A bitstream whose units are parsed and checked, its NDUs not yet entropy-decoded.
pub(crate) struct ParsedStream<'a> {
    pub(crate) jobs: Vec<NduJob<'a>>,
    pub(crate) recompositions: Vec<Recomposition>,
    pub(crate) metadata: Option<crate::metadata::StreamMetadata>,
    pub(crate) general_profile_idc: u8,
    pub(crate) topology_storage_format: Option<u8>,
    pub(crate) parent_signalling: bool,
    pub(crate) total_elements: u64,
}

/// Decodes a whole bitstream, updating `state` (TCA bases, HDSP history, update tree) unless
/// [`DecodeOptions::update_state`] is off. The state changes only once every NDU is decoded: a
/// stream that fails part way leaves it as it was.
///
/// Collects what [`crate::decode_stream_with`] hands out, decoding every NDU at once (as many in
/// parallel as there are threads); use that function to bound the memory instead.
pub fn decode_stream(
    bytes: &[u8],
    state: &mut DecoderState,
    opts: &DecodeOptions,
) -> Result<DecodedStream> {
    let (decoded, changes) = decode_stream_deferred(bytes, state, opts)?;
    changes.commit(state);
    Ok(decoded)
}

/// [`decode_stream`] leaving `state` alone: returns the changes the stream makes to it beside
/// the tensors, for the caller to [`StateChanges::apply`] once it has checked them. A caller
/// that may refuse a decoded stream (values out of range, a protocol's rules) needs no copy of
/// the state to fall back on. The changes hold the new levels until applied; with
/// [`DecodeOptions::keep_levels`] off they are not copied for the tensors as well.
pub fn decode_stream_deferred(
    bytes: &[u8],
    state: &DecoderState,
    opts: &DecodeOptions,
) -> Result<(DecodedStream, StateChanges)> {
    let mut tensors = Vec::new();
    let (plan, changes) =
        crate::stream::StreamDecoder::new(bytes, opts)?.run_with_window(state, u64::MAX, |t| {
            tensors.push(t);
            Ok::<(), Error>(())
        })?;
    let decoded = DecodedStream {
        tensors,
        general_profile_idc: plan.general_profile_idc,
        topology_storage_format: plan.topology_storage_format,
        attributes: plan.attributes,
        files: plan.files,
    };
    Ok((decoded, changes))
}

/// Reads and checks every unit of a bitstream (no entropy decoding): the NDUs to decode with the
/// parameter sets in force for each, the low-rank pairs and the stream's metadata.
pub(crate) fn parse_stream<'a>(bytes: &'a [u8], opts: &DecodeOptions) -> Result<ParsedStream<'a>> {
    let mut ctx = StreamContext::default();
    let mut general_profile_idc = 0;
    let mut topology_storage_format = None;
    let mut metadata = None;
    let mut jobs = Vec::new();
    let mut reader = UnitReader::new(bytes);
    let mut unit_count: u64 = 0;
    loop {
        let at = |index: usize, offset: usize| Location {
            unit_index: index,
            byte_offset: offset,
            tensor: None,
        };
        let raw = match reader.next() {
            Ok(Some(raw)) => raw,
            Ok(None) => break,
            Err(source) => {
                return Err(Error::Syntax {
                    at: at(unit_count as usize, reader.byte_offset()),
                    source,
                })
            }
        };
        unit_count += 1;
        if unit_count > opts.limits.max_units {
            return Err(Error::LimitExceeded {
                at: at(raw.index, raw.byte_offset),
                what: "number of NNR units",
                declared: unit_count,
                limit: opts.limits.max_units,
            });
        }
        let here = at(raw.index, raw.byte_offset);
        let unit_bytes = raw.bytes.len();
        let parsed = nnc_bitstream::parse_unit(raw, &mut ctx.parse, &opts.side_info)
            .map_err(|source| syntax_error(here.clone(), source))?;
        if !ctx.seen_start && !matches!(parsed.unit, NnrUnit::Str(_)) {
            return Err(Error::Malformed {
                at: here,
                what: "the first NNR unit must be NNR_STR".into(),
            });
        }
        match &parsed.unit {
            NnrUnit::Str(start) => {
                if ctx.seen_start {
                    return Err(Error::Malformed {
                        at: here,
                        what: "a second NNR_STR unit".into(),
                    });
                }
                ctx.seen_start = true;
                general_profile_idc = start.general_profile_idc;
            }
            NnrUnit::Mps(mps) => {
                if ctx.seen_mps || ctx.seen_ndu {
                    return Err(Error::Malformed {
                        at: here,
                        what: "NNR_MPS must come once, before every NNR_NDU".into(),
                    });
                }
                ctx.seen_mps = true;
                ctx.qp_density = mps.mps_qp_density.unwrap_or(0);
                ctx.base_qp = mps.mps_quantization_parameter.map_or(0, i32::from);
                ctx.parent_signalling = mps.mps_parent_signalling_enabled_flag.unwrap_or(false);
            }
            NnrUnit::Lps(lps) => {
                // The last LPS parsed overrides the MPS quantization parameters (hls.md §2.7).
                if let Some(q) = lps.lps_qp_density {
                    ctx.qp_density = q;
                }
                if let Some(q) = lps.lps_quantization_parameter {
                    ctx.base_qp = i32::from(q);
                }
            }
            NnrUnit::Tpl(tpl) => {
                if !ctx.seen_mps {
                    return Err(Error::Malformed {
                        at: here,
                        what: "NNR_TPL before NNR_MPS".into(),
                    });
                }
                topology_storage_format = Some(tpl.topology_storage_format);
                metadata = tpl
                    .topology_data
                    .as_deref()
                    .and_then(crate::metadata::StreamMetadata::from_topology_data);
            }
            NnrUnit::Ndu { header, .. } => {
                if !ctx.seen_mps {
                    return Err(Error::Malformed {
                        at: here,
                        what: "NNR_NDU before NNR_MPS".into(),
                    });
                }
                ctx.seen_ndu = true;
                jobs.push(prepare_ndu(
                    header,
                    parsed.payload,
                    unit_bytes,
                    &here,
                    &mut ctx,
                    opts,
                )?);
            }
            other => {
                return Err(Error::Unsupported {
                    at: here,
                    what: format!("decoding of {:?} units", other.nnr_unit_type()),
                })
            }
        }
    }
    if !ctx.seen_start {
        return Err(Error::Malformed {
            at: Location::default(),
            what: "empty bitstream (no NNR_STR unit)".into(),
        });
    }
    Ok(ParsedStream {
        jobs,
        recompositions: ctx.recompositions,
        metadata,
        general_profile_idc,
        topology_storage_format,
        parent_signalling: ctx.parent_signalling,
        total_elements: ctx.total_elements,
    })
}

/// A syntax error at `at`; missing side information also names the tensor in the location.
fn syntax_error(mut at: Location, source: nnc_bitstream::Error) -> Error {
    if let nnc_bitstream::Error::MissingSideInformation { name } = &source {
        at.tensor = Some(name.clone());
    }
    Error::Syntax { at, source }
}

/// Upper bound on the context-coded bins one payload byte can carry in a stream that decodes
/// without error.
///
/// Why: let `I = shifts − log2(range)`. A context-coded bin raises `I` by
/// `log2(range / subrange)`, a bypass bin by 1, a block-row range reset (range := 256) by
/// `log2(range / 256) ≥ 0`. Over an NDU `I` starts at `−log2(510)` and ends at
/// `shifts − log2(range) ≤ (8·len − 9) − 8`, because a valid payload of `len` bytes is consumed
/// exactly (`⌈(shifts + 9) / 8⌉ = len`) and `range ≥ 256`. So the bins' costs sum to less than
/// `8·len` bits. The cheapest context-coded bin (an MPS with rLPS = 2 at range 351) costs
/// `log2(351/349) ≈ 0.00824` bits, hence at most ≈ 970.4 bins per byte; 1024 leaves a margin.
const MAX_CONTEXT_BINS_PER_BYTE: u64 = 1024;

/// The fewest context-coded bins `decode_layer` can spend on a tensor: one significance bin per
/// element, except one row-skip bin per row where row skipping can be signalled, and none for a
/// one-entry codebook (profile 1), where every level is implied.
fn min_context_bins(dims: &[u64], gpi: u8, codebook_size: u64) -> u64 {
    let n = checked_elements(dims).unwrap_or(u64::MAX);
    if n == 0 || (gpi == 1 && codebook_size == 1) {
        return 0;
    }
    let w = checked_elements(dims.get(1..).unwrap_or(&[])).unwrap_or(u64::MAX);
    let row_skip_possible = gpi == 1 && w > 1 && n > w;
    if row_skip_possible {
        n / w
    } else {
        n
    }
}

pub(crate) fn checked_elements(dims: &[u64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
}

/// Checks an NDU and lists its members (sequential: it follows the stream's context).
fn prepare_ndu<'a>(
    header: &NduHeader,
    payload: &'a [u8],
    unit_bytes: usize,
    here: &Location,
    ctx: &mut StreamContext,
    opts: &DecodeOptions,
) -> Result<NduJob<'a>> {
    let malformed = |what: String| Error::Malformed {
        at: here.clone(),
        what,
    };
    let is_dc = header.compressed_parameter_types & cpt::DC != 0;
    let split_factor = if !is_block(header) && is_dc {
        let role = if ctx.pending_factor_h {
            MemberRole::FactorH
        } else {
            MemberRole::FactorG
        };
        ctx.pending_factor_h = role == MemberRole::FactorG;
        Some(role)
    } else {
        if ctx.pending_factor_h {
            return Err(malformed(
                "an NDU with factor G must be followed by factor H".into(),
            ));
        }
        None
    };
    let members = members(header, split_factor).map_err(malformed)?;
    for m in &members {
        if !ctx.names.insert(m.name.clone()) {
            return Err(malformed(format!(
                "tensor {:?} appears twice in the bitstream",
                m.name
            )));
        }
    }

    // Check every size before allocating anything.
    let gpi = ctx.parse.general_profile_idc;
    let mut min_bins = 0u64;
    let mut elements = 0u64;
    for m in &members {
        let at = Location {
            tensor: Some(m.name.clone()),
            ..here.clone()
        };
        let n = checked_elements(&m.dims).ok_or_else(|| Error::LimitExceeded {
            at: at.clone(),
            what: "tensor element count",
            declared: u64::MAX,
            limit: opts.limits.max_tensor_elements,
        })?;
        if n > opts.limits.max_tensor_elements {
            return Err(Error::LimitExceeded {
                at,
                what: "tensor element count",
                declared: n,
                limit: opts.limits.max_tensor_elements,
            });
        }
        ctx.total_elements = ctx.total_elements.saturating_add(n);
        elements = elements.saturating_add(n);
        if ctx.total_elements > opts.limits.max_total_elements {
            return Err(Error::LimitExceeded {
                at,
                what: "total element count",
                declared: ctx.total_elements,
                limit: opts.limits.max_total_elements,
            });
        }
        let codebook_size = member_codebook(header, m).map_or(0, |cb| cb.codebook_size);
        min_bins = min_bins.saturating_add(min_context_bins(&m.dims, gpi, codebook_size));
    }
    let payload_type = header.nnr_compressed_data_unit_payload_type;
    let max_bins = MAX_CONTEXT_BINS_PER_BYTE.saturating_mul(payload.len() as u64 + 1);
    if payload_type != nnc_bitstream::PayloadType::RawFloat && min_bins > max_bins {
        return Err(malformed(format!(
            "the declared tensors need at least {min_bins} arithmetic-coded bins, more than \
             a payload of {} bytes can hold",
            payload.len()
        )));
    }
    if opts.recompose_decomposed {
        plan_recomposition(header, &members, here, ctx, &opts.limits)?;
    }

    Ok(NduJob {
        header: header.clone(),
        payload,
        unit_bytes,
        here: here.clone(),
        members,
        qp_density: ctx.qp_density,
        base_qp: ctx.base_qp,
        general_profile_idc: ctx.parse.general_profile_idc,
        elements,
    })
}

/// One decoded and reconstructed member of an NDU.
pub(crate) struct MemberOutput {
    pub(crate) member: Member,
    /// The levels, when the caller keeps them or the state records them.
    pub(crate) levels: Option<Vec<i32>>,
    /// The reconstruction (its error is reported after the state checks of the member, as
    /// the decoder has always done).
    pub(crate) values: Reconstruction,
}

/// A member's values and how they were made, or why they could not be.
pub(crate) type Reconstruction = std::result::Result<(TensorData, Approximation), nnc_quant::Error>;

/// Entropy-decodes and reconstructs one NDU against the state as it was before this bitstream
/// (read-only, so NDUs decode in parallel; `device_id` is the state's before the bitstream).
/// Levels are returned only when `keep_levels`; otherwise uniform tensors are reconstructed in
/// the levels' own memory.
pub(crate) fn run_ndu(
    job: &NduJob<'_>,
    state: &DecoderState,
    opts: &DecodeOptions,
    device_id: u64,
    keep_levels: bool,
) -> Result<NduOutput> {
    let (header, payload, here, members) = (&job.header, job.payload, &job.here, &job.members);
    let malformed = |what: String| Error::Malformed {
        at: here.clone(),
        what,
    };
    let payload_type = header.nnr_compressed_data_unit_payload_type;
    if payload_type == nnc_bitstream::PayloadType::RawFloat {
        let m = members
            .first()
            .ok_or_else(|| malformed("raw payload without tensor".into()))?;
        let n = checked_elements(&m.dims).unwrap_or(u64::MAX) as usize;
        if payload.len() != n.saturating_mul(4) {
            return Err(malformed(format!(
                "raw float payload of {} bytes for {n} elements",
                payload.len()
            )));
        }
        let values: Vec<f32> = payload
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        return Ok(NduOutput::Raw(DecodedTensor {
            tensor: Tensor {
                name: m.name.clone(),
                shape: m.dims.iter().map(|&d| d as usize).collect(),
                data: TensorData::F32(values),
            },
            levels: None,
            approximation: Approximation::RawFloat,
        }));
    }

    let mut dec = ArithDecoder::new(payload);
    let mut decoded = Vec::with_capacity(members.len());
    let entry_points = job.entry_points();
    for m in members {
        let qp = read_member_qp(&mut dec, job);
        let levels = decode_member(&mut dec, job, m, state, opts, device_id, entry_points)?;
        let (levels, values) = reconstruct(
            levels,
            keep_levels,
            qp,
            job.dq_flag(),
            member_codebook(header, m).cloned(),
            job.qp_density,
        );
        decoded.push(MemberOutput {
            member: m.clone(),
            levels,
            values,
        });
    }
    let consumed = dec.finish().map_err(|source| Error::Cabac {
        at: here.clone(),
        source,
    })?;
    if dec.over_read() > 0 || consumed != payload.len() {
        return Err(malformed(format!(
            "NDU declares {} payload bytes but the arithmetic decoder consumed {}",
            payload.len(),
            consumed + dec.over_read()
        )));
    }

    Ok(NduOutput::Coded(decoded))
}

/// A member's QP, read from the payload right before its levels: the parameter sets' QP plus
/// the member's signed offset (quantized payloads only).
fn read_member_qp(dec: &mut ArithDecoder<'_>, job: &NduJob<'_>) -> Option<i32> {
    job.is_quantized()
        .then(|| job.base_qp + dec.iae_v(6 + u32::from(job.qp_density)))
}

/// Entropy-decodes one member's levels (its QP already read), against the state as it was
/// before this bitstream.
fn decode_member(
    dec: &mut ArithDecoder<'_>,
    job: &NduJob<'_>,
    m: &Member,
    state: &DecoderState,
    opts: &DecodeOptions,
    device_id: u64,
    entry_points: Option<&[u64]>,
) -> Result<Vec<i32>> {
    let header = &job.header;
    let at = Location {
        tensor: Some(m.name.clone()),
        ..job.here.clone()
    };
    let gpi = job.general_profile_idc;
    let codebook = member_codebook(header, m);
    let dims: Vec<usize> = m.dims.iter().map(|&d| d as usize).collect();
    let scan_order = if dims.len() <= 1 {
        0
    } else {
        header.scan_order.unwrap_or(0)
    };
    let (codebook_size, codebook_zero_offset) = match (gpi, codebook) {
        // The parser bounds codebook sizes far below u32::MAX.
        (1, Some(cb)) => (
            u32::try_from(cb.codebook_size).unwrap_or(u32::MAX),
            u32::try_from(cb.codebook_zero_offset).unwrap_or(u32::MAX),
        ),
        _ => (0, 0),
    };
    let cfg = LayerConfig {
        dims: dims.clone(),
        dq_flag: job.dq_flag(),
        scan_order,
        general_profile_idc: gpi,
        parent_node_id_present_flag: header.parent_node_id_present_flag.unwrap_or(false),
        codebook_size,
        codebook_zero_offset,
        cabac_unary_length: u32::from(header.cabac_unary_length_minus1) + 1,
    };
    let tca = header.temporal_context_modeling_flag.unwrap_or(false) && gpi == 1;
    let n = dims.iter().product::<usize>();
    let base = if tca {
        let base = state.bases.get(&m.name).ok_or_else(|| Error::StateMismatch {
            at: at.clone(),
            what: "temporal context needs the previous update of this tensor, which the state lacks".into(),
        })?;
        check_tca_base(header, base, device_id).map_err(|what| Error::StateMismatch {
            at: at.clone(),
            what,
        })?;
        if base.levels.len() != n {
            return Err(Error::StateMismatch {
                at,
                what: format!(
                    "previous update has {} elements, this one {n}",
                    base.levels.len()
                ),
            });
        }
        Some(base.levels.as_slice())
    } else {
        None
    };
    let hist = if opts.hdsp {
        state.hdsp_history.get(&m.name).filter(|h| h.len() == n)
    } else {
        None
    };
    let history = LayerHistory {
        base_levels: base,
        hdsp_mode: HdspMode::for_tensor(opts.hdsp, hist.is_some()),
        hdsp_hist: hist.map(Vec::as_slice),
    };
    let mut levels: Vec<i32> = nnc_quant::buffer::zeroed(n);
    // `scan_order` is 0 for tensors of fewer than two dimensions.
    let eps = entry_points.filter(|_| scan_order > 0);
    decode_member_levels(dec, &cfg, &history, eps, &mut levels)
        .map_err(|source| Error::Cabac { at, source })?;
    Ok(levels)
}

/// The QP of each member of an NDU (`None` where its payload carries none), reading the
/// payload only as far as the last member's QP: the members before it are entropy-decoded and
/// their levels dropped. The QPs after a member that does not decode (one whose temporal
/// context needs an earlier bitstream's state, or a corrupt payload) are `None`.
pub(crate) fn member_qps(
    job: &NduJob<'_>,
    state: &DecoderState,
    opts: &DecodeOptions,
) -> Vec<Option<i32>> {
    let mut qps = vec![None; job.members.len()];
    if !job.is_quantized() {
        return qps;
    }
    let mut dec = ArithDecoder::new(job.payload);
    let entry_points = job.entry_points();
    for (k, m) in job.members.iter().enumerate() {
        qps[k] = read_member_qp(&mut dec, job);
        let last = k + 1 == job.members.len();
        if last
            || decode_member(&mut dec, job, m, state, opts, state.device_id, entry_points).is_err()
        {
            break;
        }
    }
    qps
}

/// Tensors with fewer elements decode their block rows on one thread even when the stream has
/// entry points: starting threads would cost more than it saves.
const ENTRY_POINT_MIN_ELEMENTS: usize = 1 << 16;

/// One member's levels (`decodeLayer`). With entry points (`scan_order > 0`), on more than one
/// worker thread and for a tensor that is large enough, its block rows are decoded in parallel
/// from them ([`nnc_cabac::decode_layer_with_entry_points`], which checks that every block row
/// ends where the next one's entry point says); entry points that do not fit the stream are
/// ignored and the tensor is decoded sequentially, as without them. Either way the levels and
/// the decoder's end state are the same.
fn decode_member_levels(
    dec: &mut ArithDecoder<'_>,
    cfg: &LayerConfig,
    history: &LayerHistory<'_>,
    entry_points: Option<&[u64]>,
    levels: &mut [i32],
) -> std::result::Result<(), nnc_cabac::Error> {
    let threads = nnc_cabac::threads::worker_threads();
    if let Some(eps) = entry_points {
        if threads > 1 && levels.len() >= ENTRY_POINT_MIN_ELEMENTS {
            let mut trial = dec.clone();
            let decoded = nnc_cabac::decode_layer_with_entry_points(
                &mut trial, cfg, history, eps, levels, threads,
            );
            if decoded.is_ok() {
                *dec = trial;
                return Ok(());
            }
        }
    }
    nnc_cabac::decode_layer(dec, cfg, history, levels).map(|_| ())
}

/// Notes the low-rank pair of this NDU (a block with G and H, or the second of two non-block
/// NDUs) for [`recompose_pair`], checking the size of W and the work of G·H against the limits.
fn plan_recomposition(
    header: &NduHeader,
    members: &[Member],
    here: &Location,
    ctx: &mut StreamContext,
    limits: &Limits,
) -> Result<()> {
    let find = |role: MemberRole| members.iter().find(|m| m.role == role);
    let (g, h, dims) = match (find(MemberRole::FactorG), find(MemberRole::FactorH)) {
        (Some(g), Some(h)) => (g.name.clone(), h, header.tensor_dimensions.clone()),
        (Some(g), None) => {
            ctx.pending_factor_g = Some((g.name.clone(), header.tensor_dimensions.clone()));
            return Ok(());
        }
        (None, Some(h)) => match ctx.pending_factor_g.take() {
            Some((g, dims)) => (g, h, dims),
            None => return Ok(()),
        },
        (None, None) => return Ok(()),
    };
    let at = Location {
        tensor: Some(h.name.clone()),
        ..here.clone()
    };
    let limit = |what, declared: u64, limit: u64| {
        if declared > limit {
            Err(Error::LimitExceeded {
                at: at.clone(),
                what,
                declared,
                limit,
            })
        } else {
            Ok(())
        }
    };
    let w = checked_elements(&dims).unwrap_or(u64::MAX);
    limit(
        "recomposed tensor element count",
        w,
        limits.max_tensor_elements,
    )?;
    ctx.total_elements = ctx.total_elements.saturating_add(w);
    limit(
        "total element count",
        ctx.total_elements,
        limits.max_total_elements,
    )?;
    // H is rank × cols: W costs rank multiply-adds per element.
    let rank = h.dims.first().copied().unwrap_or(0);
    limit(
        "recomposition multiply-add count",
        w.saturating_mul(rank),
        limits.max_recompose_multiply_adds,
    )?;
    ctx.recompositions.push(Recomposition {
        g,
        h: h.name.clone(),
        dims,
        at,
    });
    Ok(())
}

/// Reference checks before a TCA decode (`baseline.decode`): same device, same parameter, and this
/// update is the direct child of the stored one.
fn check_tca_base(
    header: &NduHeader,
    base: &crate::state::TensorBase,
    device_id: u64,
) -> Result<(), String> {
    let ndu_device = header.device_id.unwrap_or(0);
    if ndu_device != device_id {
        return Err(format!(
            "device_id {ndu_device}, the state holds {device_id}"
        ));
    }
    let pid = header.parameter_id.unwrap_or(0);
    if pid != base.parameter_id {
        return Err(format!(
            "parameter_id {pid}, the state holds {}",
            base.parameter_id
        ));
    }
    let depth = header.put_node_depth.unwrap_or(0);
    if depth.checked_sub(1) != Some(base.put_node_depth) {
        return Err(format!(
            "put_node_depth {depth} does not follow the state's {} (a skipped or repeated update?)",
            base.put_node_depth
        ));
    }
    Ok(())
}

/// The codebook that applies to a member (hls.md §5.4 and the reference's decoder rules): for
/// non-block NDUs the one codebook; in blocks only the weight, with G using `codebook("")` and H
/// `codebook("dc")`.
fn member_codebook<'h>(header: &'h NduHeader, m: &Member) -> Option<&'h nnc_bitstream::Codebook> {
    if !header.codebook_present_flag.unwrap_or(false) {
        return None;
    }
    match m.role {
        MemberRole::Single | MemberRole::Weight | MemberRole::FactorG => header.codebook.as_ref(),
        MemberRole::FactorH if is_block(header) => header.codebook_dc.as_ref(),
        MemberRole::FactorH => header.codebook.as_ref(),
        _ => None,
    }
}

/// Turns levels into values; returns the levels too when `keep_levels`. Without them, integer
/// levels become the data as they are and uniform ones are dequantized in their own memory.
fn reconstruct(
    levels: Vec<i32>,
    keep_levels: bool,
    qp: Option<i32>,
    dq_flag: bool,
    codebook: Option<nnc_bitstream::Codebook>,
    qp_density: u8,
) -> (Option<Vec<i32>>, Reconstruction) {
    let Some(qp) = qp else {
        return if keep_levels {
            let data = TensorData::I32(nnc_quant::buffer::copied(&levels));
            (Some(levels), Ok((data, Approximation::Integer)))
        } else {
            (None, Ok((TensorData::I32(levels), Approximation::Integer)))
        };
    };
    match codebook {
        Some(cb) => {
            let mut values: Vec<f64> = nnc_quant::buffer::zeroed(levels.len());
            let zero_offset = u32::try_from(cb.codebook_zero_offset).unwrap_or(u32::MAX);
            let result = nnc_quant::dequantize_codebook(
                &levels,
                &cb.values,
                zero_offset,
                qp,
                qp_density,
                &mut values,
            )
            .map(|()| {
                (
                    TensorData::F64(values),
                    Approximation::Codebook {
                        qp,
                        qp_density,
                        codebook: cb.values,
                        codebook_zero_offset: zero_offset,
                    },
                )
            });
            (keep_levels.then_some(levels), result)
        }
        None => {
            let approximation = Approximation::Uniform {
                qp,
                qp_density,
                dq_flag,
            };
            if keep_levels {
                let mut values: Vec<f32> = nnc_quant::buffer::zeroed(levels.len());
                let result = nnc_quant::dequantize_uniform(&levels, qp, qp_density, &mut values)
                    .map(|()| (TensorData::F32(values), approximation));
                (Some(levels), result)
            } else {
                let result = dequantize_in_place(levels, qp, qp_density)
                    .map(|values| (TensorData::F32(values), approximation));
                (None, result)
            }
        }
    }
}

/// Uniform dequantization that reuses the levels' allocation for the values (an `i32` and an
/// `f32` have the same size and alignment): each chunk is dequantized into a small buffer and
/// its bit patterns stored back, then the vector is reinterpreted element by element, which the
/// standard library does in place for a `Vec` of same-layout elements.
pub(crate) fn dequantize_in_place(
    mut levels: Vec<i32>,
    qp: i32,
    qp_density: u8,
) -> std::result::Result<Vec<f32>, nnc_quant::Error> {
    const CHUNK: usize = 2048;
    let mut buf = [0f32; CHUNK];
    for chunk in levels.chunks_mut(CHUNK) {
        let out = &mut buf[..chunk.len()];
        nnc_quant::dequantize_uniform(chunk, qp, qp_density, out)?;
        for (l, v) in chunk.iter_mut().zip(out.iter()) {
            *l = v.to_bits() as i32;
        }
    }
    Ok(levels
        .into_iter()
        .map(|bits| f32::from_bits(bits as u32))
        .collect())
}

/// The weight W = G·H of a planned pair of low-rank factors G (rows × rank) and H (rank × cols),
/// under G's name without its `_G` suffix, reshaped to the signalled dimensions (as the
/// reference's `recompose_params`). The product is accumulated in the factors' precision, in
/// index order.
pub(crate) fn recompose_pair(g: &Tensor, h: &Tensor, r: &Recomposition) -> Result<DecodedTensor> {
    let malformed = |what: String| Error::Malformed {
        at: r.at.clone(),
        what,
    };
    let (&[rows, rank], &[rank_h, cols]) = (g.shape.as_slice(), h.shape.as_slice()) else {
        return Err(malformed("low-rank factors must be matrices".into()));
    };
    let w_elements = rows.checked_mul(cols);
    if rank != rank_h
        || checked_elements(&r.dims).and_then(|n| usize::try_from(n).ok()) != w_elements
    {
        return Err(malformed(format!(
            "factors of shapes {:?} and {:?} do not make a weight of shape {:?}",
            g.shape, h.shape, r.dims
        )));
    }
    let data = match (&g.data, &h.data) {
        (TensorData::F32(a), TensorData::F32(b)) => TensorData::F32(
            matmul(a, b, rows, rank, cols)
                .ok_or_else(|| malformed("low-rank factor data does not match its shape".into()))?,
        ),
        (a, b) => {
            let (Some(a), Some(b)) = (as_f64(a), as_f64(b)) else {
                return Err(malformed("low-rank factors of unsupported type".into()));
            };
            TensorData::F64(
                matmul(&a, &b, rows, rank, cols).ok_or_else(|| {
                    malformed("low-rank factor data does not match its shape".into())
                })?,
            )
        }
    };
    Ok(DecodedTensor {
        tensor: Tensor {
            name: recomposed_name(&r.g),
            shape: r.dims.iter().map(|&d| d as usize).collect(),
            data,
        },
        levels: None,
        approximation: Approximation::RawFloat,
    })
}

/// The name of the weight recomposed from factor `g`.
pub(crate) fn recomposed_name(g: &str) -> String {
    g.strip_suffix("_G").unwrap_or(g).to_string()
}

/// The error for a planned pair whose factors were not both decoded.
pub(crate) fn factors_missing(r: &Recomposition) -> Error {
    Error::Malformed {
        at: r.at.clone(),
        what: format!(
            "low-rank factors {:?} and {:?} are not both decoded",
            r.g, r.h
        ),
    }
}

fn as_f64(d: &TensorData) -> Option<Vec<f64>> {
    match d {
        TensorData::F32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
        TensorData::F64(v) => Some(v.clone()),
        TensorData::I32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
        _ => None,
    }
}

/// `a` (rows × inner) times `b` (inner × cols), or `None` if the lengths do not match.
fn matmul<T>(a: &[T], b: &[T], rows: usize, inner: usize, cols: usize) -> Option<Vec<T>>
where
    T: Copy + Default + std::ops::Mul<Output = T> + std::ops::AddAssign,
{
    if Some(a.len()) != rows.checked_mul(inner) || Some(b.len()) != inner.checked_mul(cols) {
        return None;
    }
    let mut out = vec![T::default(); rows.checked_mul(cols)?];
    if inner == 0 || cols == 0 {
        return Some(out);
    }
    for (out_row, a_row) in out.chunks_exact_mut(cols).zip(a.chunks_exact(inner)) {
        for (&x, b_row) in a_row.iter().zip(b.chunks_exact(cols)) {
            for (o, &y) in out_row.iter_mut().zip(b_row) {
                *o += x * y;
            }
        }
    }
    Some(out)
}

/// Parses every unit header of a bitstream into the key/value form of the reference's `hls.json`.
pub fn hls_json(
    bytes: &[u8],
    opts: &DecodeOptions,
) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let mut ctx = ParseContext::default();
    let mut reader = UnitReader::new(bytes);
    let mut out = Vec::new();
    loop {
        let raw = match reader.next() {
            Ok(Some(raw)) => raw,
            Ok(None) => break,
            Err(source) => {
                return Err(Error::Syntax {
                    at: Location {
                        unit_index: out.len(),
                        byte_offset: reader.byte_offset(),
                        tensor: None,
                    },
                    source,
                })
            }
        };
        let at = Location {
            unit_index: raw.index,
            byte_offset: raw.byte_offset,
            tensor: None,
        };
        let parsed = nnc_bitstream::parse_unit(raw, &mut ctx, &opts.side_info)
            .map_err(|source| syntax_error(at, source))?;
        out.push(parsed.to_hls_json());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_cabac::{
        decode_layer_and_create_entry_points, encode_layer, ArithEncoder, EncodeLayerOptions,
        EntryPoint,
    };

    /// Levels of a 2-D tensor at scan order 2 (16 × 16 blocks), large enough for the parallel
    /// path, with the payload and the entry points the reference's encoder signals for it.
    fn coded_scan_tensor() -> (LayerConfig, Vec<i32>, Vec<u8>, Vec<u64>) {
        let cfg = LayerConfig {
            scan_order: 2,
            ..LayerConfig::new(vec![300, 256])
        };
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let levels: Vec<i32> = (0..300 * 256)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % 23) as i32 - 11) / 3
            })
            .collect();
        let hist = LayerHistory::default();
        let mut enc = ArithEncoder::new();
        let opts = EncodeLayerOptions {
            param_opt: true,
            ..Default::default()
        };
        encode_layer(&mut enc, &cfg, &hist, &opts, &levels).unwrap();
        let payload = enc.finish();
        let mut dec = ArithDecoder::new(&payload);
        let mut decoded = vec![0; levels.len()];
        let (_, eps) =
            decode_layer_and_create_entry_points(&mut dec, &cfg, &hist, &mut decoded).unwrap();
        assert_eq!(decoded, levels);
        (cfg, levels, payload, eps)
    }

    /// On two threads a tensor with entry points decodes from them to the levels and end state
    /// of the sequential decode; entry points that do not fit the stream fall back to it.
    #[test]
    fn entry_points_give_the_sequential_levels_or_are_ignored() {
        let (cfg, want, payload, eps) = coded_scan_tensor();
        assert!(want.len() >= ENTRY_POINT_MIN_ELEMENTS && eps.len() == 18);
        let hist = LayerHistory::default();
        let mut wrong = eps.clone();
        let mut ep = EntryPoint::unpack(wrong[7]);
        ep.val8 ^= 0x10;
        wrong[7] = ep.pack();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for given in [
            Some(eps.as_slice()),
            Some(wrong.as_slice()),
            Some(&eps[1..]),
            None,
        ] {
            let (levels, end) = pool.install(|| {
                let mut dec = ArithDecoder::new(&payload);
                let mut levels = vec![7; want.len()];
                decode_member_levels(&mut dec, &cfg, &hist, given, &mut levels).unwrap();
                (levels, dec.finish().unwrap())
            });
            assert_eq!(levels, want);
            assert_eq!(end, payload.len());
        }
        // The wrong list is refused by the entry-point decoder itself, so the test above did
        // go through the fallback.
        let mut dec = ArithDecoder::new(&payload);
        let mut levels = vec![0; want.len()];
        assert!(nnc_cabac::decode_layer_with_entry_points(
            &mut dec,
            &cfg,
            &hist,
            &wrong,
            &mut levels,
            2
        )
        .is_err());
    }
}

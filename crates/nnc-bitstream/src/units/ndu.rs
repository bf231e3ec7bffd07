//! `NNR_NDU`: the compressed data unit header (hls.md §2.9) and its composite descriptors
//! (`codebook()`, `cbZeroOffset()`, `entry_point_list()`, `topology_elements_ids_list()`).

use serde_json::{Map, Value};

use crate::context::SideInfo;
use crate::error::{Error, Result};
use crate::json::{hex, u64_values};
use crate::units::consts::{
    DEFAULT_CABAC_UNARY_LENGTH_MINUS1, ICNN_NDU_ID, ICNN_NDU_PL_SHA256, ICNN_NDU_PL_SHA512,
    NNR_CPT_DC,
};
use crate::units::{check_bits, check_presence, check_st, required, write_st};
use crate::{BitReader, BitWriter, ParseContext};

/// `nnr_compressed_data_unit_payload_type` (hls.md table 2.10a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum PayloadType {
    /// `NNR_PT_INT`: integer tensor, levels coded directly.
    Int = 0,
    /// `NNR_PT_FLOAT`: quantised float tensor (uniform or codebook).
    #[default]
    Float = 1,
    /// `NNR_PT_RAW_FLOAT`: raw little-endian float32 payload, no CABAC.
    RawFloat = 2,
    /// `NNR_PT_BLOCK`: several tensors of one layer block.
    Block = 3,
}

impl PayloadType {
    /// The type of a raw 5-bit value, if defined.
    pub fn from_raw(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Int,
            1 => Self::Float,
            2 => Self::RawFloat,
            3 => Self::Block,
            _ => return None,
        })
    }

    /// Whether `codebook_present_flag` is in the header (FLOAT and BLOCK).
    pub fn has_codebook_flag(self) -> bool {
        matches!(self, Self::Float | Self::Block)
    }

    /// Whether `dq_flag` is in the header (INT, FLOAT and BLOCK).
    pub fn has_dq_flag(self) -> bool {
        !matches!(self, Self::RawFloat)
    }
}

/// Which factor of a low-rank decomposition a non-block DC NDU carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecomposedTensorType {
    /// The `[g_number_of_rows, decomposition_rank]` factor.
    G,
    /// The `[decomposition_rank, …]` factor.
    H,
}

// codebook( cb_suffix ) {
//   codebook_egk                                       u(4)
//   codebook_size                                      ue(2)
//   codebook_center_offset                             ie(2)   CbZeroOffset = (codebook_size >> 1) + codebook_center_offset
//   codebook_zero_value                                ie(7)   = codebook[ CbZeroOffset ]
//   for( j = CbZeroOffset − 1; j >= 0; j−− )
//     codebook_delta_left                              ue(codebook_egk)  = codebook[ j + 1 ] − codebook[ j ] − 1
//   for( j = CbZeroOffset + 1; j < codebook_size; j++ )
//     codebook_delta_right                             ue(codebook_egk)  = codebook[ j ] − codebook[ j − 1 ] − 1
// }
/// A transmitted codebook: strictly increasing integers and the index of the entry that level 0
/// maps to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Codebook {
    /// Exp-Golomb order of the deltas, u(4).
    pub codebook_egk: u8,
    /// Number of entries (= `values.len()`).
    pub codebook_size: u64,
    /// `CbZeroOffset`: index of the entry level 0 maps to (< `codebook_size`).
    pub codebook_zero_offset: u64,
    /// The entries, strictly increasing, each within the int32 range (the reference stores them
    /// as int32).
    pub values: Vec<i64>,
}

fn check_i32(v: i128, element: &'static str, bit_offset: u64) -> Result<i64> {
    if v < i128::from(i32::MIN) || v > i128::from(i32::MAX) {
        return Err(Error::LimitExceeded {
            element,
            value: v,
            bit_offset,
        });
    }
    Ok(v as i64)
}

impl Codebook {
    /// Reads `codebook()` including `cbZeroOffset()`.
    pub fn read(r: &mut BitReader<'_>) -> Result<Self> {
        let codebook_egk = r.u8_bits(4, "codebook_egk")?;
        let codebook_size = r.ue(2, "codebook_size")?;
        let center = r.ie(2, "codebook_center_offset")?;
        if codebook_size == 0 {
            return Err(Error::InvalidValue {
                element: "codebook_size",
                value: 0,
                bit_offset: r.bit_offset(),
            });
        }
        let zero = i128::from(codebook_size >> 1) + i128::from(center);
        if zero < 0 || zero >= i128::from(codebook_size) {
            return Err(Error::InvalidValue {
                element: "codebook_center_offset",
                value: i128::from(center),
                bit_offset: r.bit_offset(),
            });
        }
        let zo = zero as usize;
        r.ensure_fits(
            u128::from(codebook_size - 1),
            1 + u32::from(codebook_egk),
            "codebook_size",
        )?;
        let mut values = vec![0i64; codebook_size as usize];
        let zero_value = r.ie(7, "codebook_zero_value")?;
        values[zo] = check_i32(
            i128::from(zero_value),
            "codebook_zero_value",
            r.bit_offset(),
        )?;
        let egk = u32::from(codebook_egk);
        let mut prev = i128::from(zero_value);
        for j in (0..zo).rev() {
            let d = r.ue(egk, "codebook_delta_left")?;
            prev = prev - i128::from(d) - 1;
            values[j] = check_i32(prev, "codebook_delta_left", r.bit_offset())?;
        }
        prev = i128::from(zero_value);
        for v in values.iter_mut().skip(zo + 1) {
            let d = r.ue(egk, "codebook_delta_right")?;
            prev = prev + i128::from(d) + 1;
            *v = check_i32(prev, "codebook_delta_right", r.bit_offset())?;
        }
        Ok(Self {
            codebook_egk,
            codebook_size,
            codebook_zero_offset: zo as u64,
            values,
        })
    }

    fn validate(&self) -> Result<()> {
        check_bits(u64::from(self.codebook_egk), 4, "codebook_egk")?;
        if self.values.len() as u64 != self.codebook_size || self.codebook_size == 0 {
            return Err(Error::InvalidArgument {
                element: "codebook_size",
                reason: "must be non-zero and equal values.len()",
            });
        }
        if self.codebook_zero_offset >= self.codebook_size {
            return Err(Error::InvalidArgument {
                element: "CbZeroOffset",
                reason: "must be below codebook_size",
            });
        }
        for &v in &self.values {
            if i32::try_from(v).is_err() {
                return Err(Error::ValueOutOfRange {
                    element: "codebook",
                    value: i128::from(v),
                });
            }
        }
        if self.values.windows(2).any(|p| p[0] >= p[1]) {
            return Err(Error::InvalidArgument {
                element: "codebook",
                reason: "values must be strictly increasing",
            });
        }
        Ok(())
    }

    /// Writes `codebook()` including `cbZeroOffset()`.
    pub fn write(&self, w: &mut BitWriter) -> Result<()> {
        self.validate()?;
        let zo = self.codebook_zero_offset as usize;
        let center = self.codebook_zero_offset as i64 - (self.codebook_size >> 1) as i64;
        let egk = u32::from(self.codebook_egk);
        w.write_u(4, u64::from(self.codebook_egk));
        w.write_ue(2, self.codebook_size);
        w.write_ie(2, center);
        w.write_ie(7, self.values[zo]);
        for j in (0..zo).rev() {
            w.write_ue(egk, (self.values[j + 1] - self.values[j] - 1) as u64);
        }
        for j in zo + 1..self.values.len() {
            w.write_ue(egk, (self.values[j] - self.values[j - 1] - 1) as u64);
        }
        Ok(())
    }

    fn append_json(&self, suffix: &str, m: &mut Map<String, Value>) {
        m.insert(format!("codebook_egk__{suffix}"), self.codebook_egk.into());
        m.insert(
            format!("codebook_size__{suffix}"),
            self.codebook_size.into(),
        );
        m.insert(
            format!("CbZeroOffset__{suffix}"),
            self.codebook_zero_offset.into(),
        );
        m.insert(
            format!("codebook__{suffix}"),
            Value::Array(self.values.iter().map(|&v| Value::from(v)).collect()),
        );
    }
}

// topology_elements_ids_list( topologyIndexedFlag ) {
//   count_topology_elements_minus2                     ue(7)
//   if( topologyIndexedFlag == 0 ) byte_alignment( )
//   for( j = 0; j < count_topology_elements_minus2 + 2; j++ )
//     if( topologyIndexedFlag == 0 )
//       topology_elem_id_list[ j ]                     st(v)
//     else
//       topology_elem_id_index_list[ j ]               ue(7)
//   if( topologyIndexedFlag == 1 ) byte_alignment( )
// }
/// The two forms of a topology element list: names, or indices.
pub(crate) type ElemIdLists = (Option<Vec<String>>, Option<Vec<u64>>);

/// Reads `topology_elements_ids_list(indexed)`: names or indices.
pub(crate) fn read_topology_elements_ids_list(
    r: &mut BitReader<'_>,
    indexed: bool,
) -> Result<ElemIdLists> {
    let count = u128::from(r.ue(7, "count_topology_elements_minus2")?) + 2;
    if indexed {
        r.ensure_fits(count, 8, "count_topology_elements_minus2")?;
        let list = (0..count)
            .map(|_| r.ue(7, "topology_elem_id_index_list"))
            .collect::<Result<Vec<_>>>()?;
        r.byte_alignment()?;
        Ok((None, Some(list)))
    } else {
        r.byte_alignment()?;
        r.ensure_fits(count, 8, "count_topology_elements_minus2")?;
        let list = (0..count)
            .map(|_| r.st("topology_elem_id_list"))
            .collect::<Result<Vec<_>>>()?;
        Ok((Some(list), None))
    }
}

/// Writes `topology_elements_ids_list()` from exactly one of `names` / `indices`.
pub(crate) fn write_topology_elements_ids_list(
    w: &mut BitWriter,
    names: Option<&Vec<String>>,
    indices: Option<&Vec<u64>>,
) -> Result<()> {
    let len = match (names, indices) {
        (Some(n), None) => n.len(),
        (None, Some(i)) => i.len(),
        _ => {
            return Err(Error::InvalidArgument {
                element: "topology_elem_id_list",
                reason: "exactly one of the name list and the index list must be given",
            })
        }
    };
    if len < 2 {
        return Err(Error::InvalidArgument {
            element: "count_topology_elements_minus2",
            reason: "a topology element list has at least two entries",
        });
    }
    w.write_ue(7, len as u64 - 2);
    if let Some(names) = names {
        w.byte_alignment();
        for n in names {
            write_st(w, n, "topology_elem_id_list")?;
        }
    }
    if let Some(indices) = indices {
        for &i in indices {
            w.write_ue(7, i);
        }
        w.byte_alignment();
    }
    Ok(())
}

/// Largest entry-point bit offset whose packed form `(offset << 11) | …` fits `u64`.
const MAX_EP_BIT_OFFSET: u64 = (1 << 53) - 1;

// nnr_compressed_data_unit_header( ) {
//   nnr_compressed_data_unit_payload_type              u(5)
//   nnr_multiple_topology_elements_present_flag        u(1)
//   nnr_decompressed_data_format_present_flag          u(1)
//   input_parameters_present_flag                      u(1)
//   if( nnr_multiple_topology_elements_present_flag )
//     topology_elements_ids_list( mps_topology_indexed_reference_flag )
//   else if( !mps_topology_indexed_reference_flag )
//     topology_elem_id                                 st(v)
//   else
//     topology_elem_id_index                           ue(7)
//   if( general_profile_idc == 1 ) {
//     node_id_present_flag                             u(1)
//     if( node_id_present_flag ) {
//       device_id                                      ue(1)
//       parameter_id                                   ue(5)
//       put_node_depth                                 ue(4)
//     }
//     if( mps_parent_signalling_enabled_flag ) {
//       parent_node_id_present_flag                    u(1)
//       if( parent_node_id_present_flag ) {
//         parent_node_id_type                          u(2)
//         temporal_context_modeling_flag               u(1)
//         if( parent_node_id_type == ICNN_NDU_ID ) {
//           parent_device_id                           ue(1)
//           if( !node_id_present_flag ) {
//             parameter_id                             ue(5)
//             put_node_depth                           ue(4)
//           }
//         } else if( parent_node_id_type == ICNN_NDU_PL_SHA256 )
//           parent_node_payload_sha256                 u(256)
//         else if( parent_node_id_type == ICNN_NDU_PL_SHA512 )
//           parent_node_payload_sha512                 u(512)
//       }
//     }
//   }
//   if( payload_type == NNR_PT_FLOAT || payload_type == NNR_PT_BLOCK ) {
//     codebook_present_flag                            u(1)
//     if( codebook_present_flag ) codebook( "" )
//   }
//   if( payload_type == NNR_PT_INT || payload_type == NNR_PT_FLOAT || payload_type == NNR_PT_BLOCK )
//     dq_flag                                          u(1)
//   if( nnr_decompressed_data_format_present_flag )
//     nnr_decompressed_data_format                     u(7)
//   if( input_parameters_present_flag ) {
//     tensor_dimensions_flag                           u(1)
//     cabac_unary_length_flag                          u(1)
//     compressed_parameter_types                       u(4)
//     if( compressed_parameter_types & NNR_CPT_DC ) {
//       decomposition_rank                             ue(3)
//       g_number_of_rows                               ue(3)
//     }
//     if( tensor_dimensions_flag ) {
//       count_tensor_dimensions                        ue(1)
//       for( j = 0; j < count_tensor_dimensions; j++ )
//         tensor_dimensions[ j ]                       ue(7)
//     }
//     if( payload_type != NNR_PT_BLOCK && nnr_multiple_topology_elements_present_flag )
//       topology_tensor_dimension_mapping( )           (not implemented by the reference)
//     if( cabac_unary_length_flag )
//       cabac_unary_length_minus1                      u(8)
//   }
//   -- reference defaults / out-of-band values applied here --
//   if( payload_type == NNR_PT_BLOCK && ( compressed_parameter_types & NNR_CPT_DC ) && codebook_present_flag )
//     codebook( "dc" )
//   if( count_tensor_dimensions > 1 ) {
//     if( general_profile_idc == 1 )
//       first_tensor_dimension_shift                   ue(1)
//     scan_order                                       u(4)
//     if( scan_order > 0 )
//       entry_point_list( numBlockRowsMinus1, dq_flag ) → cabac_entry_point_list
//   }
//   byte_alignment( )
// }
/// The NDU's type-specific header (`nnr_compressed_data_unit_header()`), up to and including
/// its final `byte_alignment()`. The payload after it (CABAC bytes, or raw floats) is opaque to
/// this crate.
///
/// Optional syntax elements are `Some` exactly where the syntax (given the
/// [`ParseContext`]) has them. Three fields hold the value *in force* rather than the
/// transmitted one, so that they are always known after parsing:
/// `compressed_parameter_types` (0 when `input_parameters_present_flag = 0`),
/// `cabac_unary_length_minus1` (9 when not transmitted) and `tensor_dimensions` (from the
/// [`SideInfo`] when `tensor_dimensions_flag` is not 1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NduHeader {
    /// u(5).
    pub nnr_compressed_data_unit_payload_type: PayloadType,
    /// 1 iff BLOCK in the reference.
    pub nnr_multiple_topology_elements_present_flag: bool,
    /// Reference: 0.
    pub nnr_decompressed_data_format_present_flag: bool,
    /// Reference: always 1.
    pub input_parameters_present_flag: bool,
    /// Names of a multi-element NDU (`count_topology_elements_minus2 = len − 2`).
    pub topology_elem_id_list: Option<Vec<String>>,
    /// Indices of a multi-element NDU with indexed topology references.
    pub topology_elem_id_index_list: Option<Vec<u64>>,
    /// Tensor name of a single-element NDU.
    pub topology_elem_id: Option<String>,
    /// Tensor index of a single-element NDU with indexed topology references.
    pub topology_elem_id_index: Option<u64>,
    /// Profile 1.
    pub node_id_present_flag: Option<bool>,
    /// ue(1), with `node_id_present_flag`.
    pub device_id: Option<u64>,
    /// ue(5), with `node_id_present_flag`, or in the parent part when that flag is 0.
    pub parameter_id: Option<u64>,
    /// ue(4), like `parameter_id`.
    pub put_node_depth: Option<u64>,
    /// Profile 1 with MPS parent signalling.
    pub parent_node_id_present_flag: Option<bool>,
    /// u(2): 0 `ICNN_NDU_ID`, 1 SHA-256, 2 SHA-512.
    pub parent_node_id_type: Option<u8>,
    /// TCA on/off, with `parent_node_id_present_flag`.
    pub temporal_context_modeling_flag: Option<bool>,
    /// ue(1), for `parent_node_id_type == ICNN_NDU_ID`.
    pub parent_device_id: Option<u64>,
    /// u(256), for `parent_node_id_type == ICNN_NDU_PL_SHA256` (MSB first).
    pub parent_node_payload_sha256: Option<[u8; 32]>,
    /// u(512), for `parent_node_id_type == ICNN_NDU_PL_SHA512` (MSB first).
    pub parent_node_payload_sha512: Option<[u8; 64]>,
    /// FLOAT and BLOCK payloads.
    pub codebook_present_flag: Option<bool>,
    /// `codebook("")`, with `codebook_present_flag`.
    pub codebook: Option<Codebook>,
    /// INT, FLOAT and BLOCK payloads.
    pub dq_flag: Option<bool>,
    /// u(7), with `nnr_decompressed_data_format_present_flag`.
    pub nnr_decompressed_data_format: Option<u8>,
    /// With `input_parameters_present_flag`.
    pub tensor_dimensions_flag: Option<bool>,
    /// With `input_parameters_present_flag`.
    pub cabac_unary_length_flag: Option<bool>,
    /// u(4) bit set of `NNR_CPT_*`; in force (0 when not transmitted).
    pub compressed_parameter_types: u8,
    /// ue(3), with `NNR_CPT_DC`.
    pub decomposition_rank: Option<u64>,
    /// ue(3), with `NNR_CPT_DC`.
    pub g_number_of_rows: Option<u64>,
    /// Shape in force, outermost first (`count_tensor_dimensions = len`); transmitted iff
    /// `tensor_dimensions_flag == Some(true)`, otherwise from the side information.
    pub tensor_dimensions: Vec<u64>,
    /// u(8); in force (reference default 9 when not transmitted). CABAC uses this + 1.
    pub cabac_unary_length_minus1: u8,
    /// `codebook("dc")`: BLOCK with `NNR_CPT_DC` and a codebook.
    pub codebook_dc: Option<Codebook>,
    /// ue(1), profile 1 with more than one dimension; reference: 0, ignored.
    pub first_tensor_dimension_shift: Option<u64>,
    /// u(4), with more than one dimension.
    pub scan_order: Option<u8>,
    /// With `scan_order > 0`: packed entry points
    /// `(bit_offset << 11) | (value << 3) | dq_state`.
    pub cabac_entry_point_list: Option<Vec<u64>>,
}

/// `numBlockRowsMinus1` of one first dimension: `⌈d0 / blockDim⌉ − 1` with
/// `blockDim = 4 << scan_order` (−1 for `d0 = 0`).
fn block_rows_minus1(d0: u64, scan_order: u8) -> i128 {
    let shift = 2 + u32::from(scan_order);
    ((i128::from(d0) + (1i128 << shift) - 1) >> shift) - 1
}

impl NduHeader {
    /// `count_topology_elements_minus2` of a multi-element NDU (`None` for a single element).
    pub fn count_topology_elements_minus2(&self) -> Option<u64> {
        self.topology_elem_id_list
            .as_ref()
            .map(Vec::len)
            .or(self.topology_elem_id_index_list.as_ref().map(Vec::len))
            .map(|n| (n as u64).saturating_sub(2))
    }

    /// Number of dimensions in force.
    pub fn count_tensor_dimensions(&self) -> u64 {
        self.tensor_dimensions.len() as u64
    }

    /// The name used to look up side information: the `topology_elem_id`, or the first name of
    /// the list of a multi-element NDU.
    pub fn element_name(&self) -> Option<&str> {
        self.topology_elem_id.as_deref().or(self
            .topology_elem_id_list
            .as_ref()
            .and_then(|l| l.first())
            .map(String::as_str))
    }

    /// For a non-block NDU with `NNR_CPT_DC`: which factor it carries.
    ///
    /// Reference quirk: the reference decides this from the name suffix (`_G` / `_H`) after
    /// parsing, too late for its own entry-point count; here a name ending in `_H` is the H
    /// factor and anything else the G factor.
    pub fn decomposed_tensor_type(&self) -> Option<DecomposedTensorType> {
        if self.compressed_parameter_types & NNR_CPT_DC == 0
            || self.nnr_compressed_data_unit_payload_type == PayloadType::Block
        {
            return None;
        }
        Some(match self.topology_elem_id.as_deref() {
            Some(n) if n.ends_with("_H") => DecomposedTensorType::H,
            _ => DecomposedTensorType::G,
        })
    }

    /// `numBlockRowsMinus1` of hls.md §2.9.1: how many entry points the header carries when
    /// `scan_order > 0` (may be negative for degenerate dimensions, which the reference cannot
    /// handle).
    fn entry_point_rows(&self, scan_order: u8) -> Option<i128> {
        if self.compressed_parameter_types & NNR_CPT_DC != 0 {
            let g = self.g_number_of_rows?;
            let rank = self.decomposition_rank?;
            if self.nnr_compressed_data_unit_payload_type == PayloadType::Block {
                return Some(
                    block_rows_minus1(g, scan_order) + block_rows_minus1(rank, scan_order),
                );
            }
            return Some(match self.decomposed_tensor_type() {
                Some(DecomposedTensorType::H) => block_rows_minus1(rank, scan_order),
                _ => block_rows_minus1(g, scan_order),
            });
        }
        self.tensor_dimensions
            .first()
            .map(|&d0| block_rows_minus1(d0, scan_order))
    }

    /// Number of entries `cabac_entry_point_list` must have for this header (0 when the list is
    /// absent), or `None` if the dimensions make it negative.
    pub fn expected_entry_points(&self) -> Option<u64> {
        match self.scan_order {
            Some(s) if s > 0 && self.tensor_dimensions.len() > 1 => {
                u64::try_from(self.entry_point_rows(s)?).ok()
            }
            _ => Some(0),
        }
    }

    /// Reads the header, starting right after the common unit header, through its final
    /// `byte_alignment()`.
    ///
    /// `side` supplies tensor dimensions the NDU does not transmit (looked up by
    /// [`element_name`](Self::element_name); for a block whose first name ends in `_G`/`_H`
    /// also without that suffix, as the reference does).
    pub fn read(r: &mut BitReader<'_>, ctx: &ParseContext, side: &SideInfo) -> Result<Self> {
        let raw_type = r.u8_bits(5, "nnr_compressed_data_unit_payload_type")?;
        let payload_type = PayloadType::from_raw(raw_type).ok_or(Error::InvalidValue {
            element: "nnr_compressed_data_unit_payload_type",
            value: i128::from(raw_type),
            bit_offset: r.bit_offset(),
        })?;
        let multi = r.flag("nnr_multiple_topology_elements_present_flag")?;
        let ddf_present = r.flag("nnr_decompressed_data_format_present_flag")?;
        let ipp = r.flag("input_parameters_present_flag")?;
        let mut h = Self {
            nnr_compressed_data_unit_payload_type: payload_type,
            nnr_multiple_topology_elements_present_flag: multi,
            nnr_decompressed_data_format_present_flag: ddf_present,
            input_parameters_present_flag: ipp,
            ..Self::default()
        };
        let indexed = ctx.mps_topology_indexed_reference_flag;
        if multi {
            let (names, indices) = read_topology_elements_ids_list(r, indexed)?;
            h.topology_elem_id_list = names;
            h.topology_elem_id_index_list = indices;
        } else if !indexed {
            h.topology_elem_id = Some(r.st("topology_elem_id")?);
        } else {
            h.topology_elem_id_index = Some(r.ue(7, "topology_elem_id_index")?);
        }

        if ctx.is_profile1() {
            let node = r.flag("node_id_present_flag")?;
            h.node_id_present_flag = Some(node);
            if node {
                h.device_id = Some(r.ue(1, "device_id")?);
                h.parameter_id = Some(r.ue(5, "parameter_id")?);
                h.put_node_depth = Some(r.ue(4, "put_node_depth")?);
            }
            if ctx.mps_parent_signalling_enabled_flag {
                let parent = r.flag("parent_node_id_present_flag")?;
                h.parent_node_id_present_flag = Some(parent);
                if parent {
                    let id_type = r.u8_bits(2, "parent_node_id_type")?;
                    h.parent_node_id_type = Some(id_type);
                    h.temporal_context_modeling_flag =
                        Some(r.flag("temporal_context_modeling_flag")?);
                    match id_type {
                        ICNN_NDU_ID => {
                            h.parent_device_id = Some(r.ue(1, "parent_device_id")?);
                            if !node {
                                h.parameter_id = Some(r.ue(5, "parameter_id")?);
                                h.put_node_depth = Some(r.ue(4, "put_node_depth")?);
                            }
                        }
                        ICNN_NDU_PL_SHA256 => {
                            let mut sha = [0u8; 32];
                            for b in &mut sha {
                                *b = r.u8_bits(8, "parent_node_payload_sha256")?;
                            }
                            h.parent_node_payload_sha256 = Some(sha);
                        }
                        ICNN_NDU_PL_SHA512 => {
                            let mut sha = [0u8; 64];
                            for b in &mut sha {
                                *b = r.u8_bits(8, "parent_node_payload_sha512")?;
                            }
                            h.parent_node_payload_sha512 = Some(sha);
                        }
                        _ => {
                            return Err(Error::InvalidValue {
                                element: "parent_node_id_type",
                                value: i128::from(id_type),
                                bit_offset: r.bit_offset(),
                            })
                        }
                    }
                }
            }
        }

        if payload_type.has_codebook_flag() {
            let cb = r.flag("codebook_present_flag")?;
            h.codebook_present_flag = Some(cb);
            if cb {
                h.codebook = Some(Codebook::read(r)?);
            }
        }
        if payload_type.has_dq_flag() {
            h.dq_flag = Some(r.flag("dq_flag")?);
        }
        if ddf_present {
            h.nnr_decompressed_data_format = Some(r.u8_bits(7, "nnr_decompressed_data_format")?);
        }

        let mut dims_in_band = false;
        let mut cul_in_band = false;
        if ipp {
            let tdf = r.flag("tensor_dimensions_flag")?;
            let culf = r.flag("cabac_unary_length_flag")?;
            h.tensor_dimensions_flag = Some(tdf);
            h.cabac_unary_length_flag = Some(culf);
            h.compressed_parameter_types = r.u8_bits(4, "compressed_parameter_types")?;
            if h.compressed_parameter_types & NNR_CPT_DC != 0 {
                h.decomposition_rank = Some(r.ue(3, "decomposition_rank")?);
                h.g_number_of_rows = Some(r.ue(3, "g_number_of_rows")?);
            }
            if tdf {
                let count = r.ue(1, "count_tensor_dimensions")?;
                r.ensure_fits(u128::from(count), 8, "count_tensor_dimensions")?;
                h.tensor_dimensions = (0..count)
                    .map(|_| r.ue(7, "tensor_dimensions"))
                    .collect::<Result<Vec<_>>>()?;
                dims_in_band = true;
            }
            if payload_type != PayloadType::Block && multi {
                return Err(Error::Unsupported {
                    what: "topology_tensor_dimension_mapping",
                    bit_offset: r.bit_offset(),
                });
            }
            if culf {
                h.cabac_unary_length_minus1 = r.u8_bits(8, "cabac_unary_length_minus1")?;
                cul_in_band = true;
            }
        }
        // Reference quirk: values not transmitted take the decoder's defaults here, before the
        // rest of the header is parsed.
        if !cul_in_band {
            h.cabac_unary_length_minus1 = DEFAULT_CABAC_UNARY_LENGTH_MINUS1;
        }
        if !dims_in_band {
            h.tensor_dimensions = h.side_dimensions(side)?;
        }

        if payload_type == PayloadType::Block
            && h.compressed_parameter_types & NNR_CPT_DC != 0
            && h.codebook_present_flag == Some(true)
        {
            h.codebook_dc = Some(Codebook::read(r)?);
        }
        if h.tensor_dimensions.len() > 1 {
            if ctx.is_profile1() {
                h.first_tensor_dimension_shift = Some(r.ue(1, "first_tensor_dimension_shift")?);
            }
            let scan_order = r.u8_bits(4, "scan_order")?;
            h.scan_order = Some(scan_order);
            if scan_order > 0 {
                let rows = h.entry_point_rows(scan_order).unwrap_or(-1);
                if rows < 0 {
                    return Err(Error::InvalidValue {
                        element: "tensor_dimensions",
                        value: rows,
                        bit_offset: r.bit_offset(),
                    });
                }
                h.cabac_entry_point_list = Some(read_entry_point_list(
                    r,
                    rows as u128,
                    h.dq_flag == Some(true),
                )?);
            }
        }
        r.byte_alignment()?;
        Ok(h)
    }

    fn side_dimensions(&self, side: &SideInfo) -> Result<Vec<u64>> {
        let name = match (&self.topology_elem_id, &self.topology_elem_id_list) {
            (Some(n), _) => n.clone(),
            (None, Some(list)) => list.first().cloned().unwrap_or_default(),
            _ => {
                let idx = self
                    .topology_elem_id_index
                    .or(self
                        .topology_elem_id_index_list
                        .as_ref()
                        .and_then(|l| l.first().copied()))
                    .unwrap_or(0);
                format!("#{idx}")
            }
        };
        if let Some(d) = side.dimensions_of(&name) {
            return Ok(d.to_vec());
        }
        if self.topology_elem_id_list.is_some() {
            if let Some(base) = name.strip_suffix("_G").or(name.strip_suffix("_H")) {
                if let Some(d) = side.dimensions_of(base) {
                    return Ok(d.to_vec());
                }
            }
        }
        Err(Error::MissingSideInformation { name })
    }

    fn validate(&self, ctx: &ParseContext) -> Result<()> {
        let pt = self.nnr_compressed_data_unit_payload_type;
        let multi = self.nnr_multiple_topology_elements_present_flag;
        let indexed = ctx.mps_topology_indexed_reference_flag;
        let ipp = self.input_parameters_present_flag;
        let p1 = ctx.is_profile1();
        check_presence(
            multi && !indexed,
            &self.topology_elem_id_list,
            "topology_elem_id_list",
        )?;
        check_presence(
            multi && indexed,
            &self.topology_elem_id_index_list,
            "topology_elem_id_index_list",
        )?;
        check_presence(
            !multi && !indexed,
            &self.topology_elem_id,
            "topology_elem_id",
        )?;
        check_presence(
            !multi && indexed,
            &self.topology_elem_id_index,
            "topology_elem_id_index",
        )?;
        if let Some(n) = &self.topology_elem_id {
            check_st(n, "topology_elem_id")?;
        }

        check_presence(p1, &self.node_id_present_flag, "node_id_present_flag")?;
        let node = self.node_id_present_flag == Some(true);
        check_presence(node, &self.device_id, "device_id")?;
        let parent_allowed = p1 && ctx.mps_parent_signalling_enabled_flag;
        check_presence(
            parent_allowed,
            &self.parent_node_id_present_flag,
            "parent_node_id_present_flag",
        )?;
        let parent = self.parent_node_id_present_flag == Some(true);
        check_presence(parent, &self.parent_node_id_type, "parent_node_id_type")?;
        check_presence(
            parent,
            &self.temporal_context_modeling_flag,
            "temporal_context_modeling_flag",
        )?;
        let id_type = self.parent_node_id_type;
        if let Some(t) = id_type {
            if t > ICNN_NDU_PL_SHA512 {
                return Err(Error::ValueOutOfRange {
                    element: "parent_node_id_type",
                    value: i128::from(t),
                });
            }
        }
        check_presence(
            parent && id_type == Some(ICNN_NDU_ID),
            &self.parent_device_id,
            "parent_device_id",
        )?;
        let node_ids = node || (parent && id_type == Some(ICNN_NDU_ID));
        check_presence(node_ids, &self.parameter_id, "parameter_id")?;
        check_presence(node_ids, &self.put_node_depth, "put_node_depth")?;
        check_presence(
            parent && id_type == Some(ICNN_NDU_PL_SHA256),
            &self.parent_node_payload_sha256,
            "parent_node_payload_sha256",
        )?;
        check_presence(
            parent && id_type == Some(ICNN_NDU_PL_SHA512),
            &self.parent_node_payload_sha512,
            "parent_node_payload_sha512",
        )?;

        check_presence(
            pt.has_codebook_flag(),
            &self.codebook_present_flag,
            "codebook_present_flag",
        )?;
        let cb = self.codebook_present_flag == Some(true);
        check_presence(cb, &self.codebook, "codebook")?;
        check_presence(pt.has_dq_flag(), &self.dq_flag, "dq_flag")?;
        check_presence(
            self.nnr_decompressed_data_format_present_flag,
            &self.nnr_decompressed_data_format,
            "nnr_decompressed_data_format",
        )?;
        if let Some(f) = self.nnr_decompressed_data_format {
            check_bits(u64::from(f), 7, "nnr_decompressed_data_format")?;
        }

        check_presence(ipp, &self.tensor_dimensions_flag, "tensor_dimensions_flag")?;
        check_presence(
            ipp,
            &self.cabac_unary_length_flag,
            "cabac_unary_length_flag",
        )?;
        check_bits(
            u64::from(self.compressed_parameter_types),
            4,
            "compressed_parameter_types",
        )?;
        if !ipp && self.compressed_parameter_types != 0 {
            return Err(Error::InvalidArgument {
                element: "compressed_parameter_types",
                reason: "must be 0 when input_parameters_present_flag is 0 (decoder default)",
            });
        }
        let dc = self.compressed_parameter_types & NNR_CPT_DC != 0;
        check_presence(dc, &self.decomposition_rank, "decomposition_rank")?;
        check_presence(dc, &self.g_number_of_rows, "g_number_of_rows")?;
        if ipp && multi && pt != PayloadType::Block {
            return Err(Error::Unsupported {
                what: "topology_tensor_dimension_mapping",
                bit_offset: 0,
            });
        }
        if self.cabac_unary_length_flag != Some(true)
            && self.cabac_unary_length_minus1 != DEFAULT_CABAC_UNARY_LENGTH_MINUS1
        {
            return Err(Error::InvalidArgument {
                element: "cabac_unary_length_minus1",
                reason: "a value that is not transmitted must be the decoder default 9",
            });
        }
        check_presence(
            pt == PayloadType::Block && dc && cb,
            &self.codebook_dc,
            "codebook_dc",
        )?;
        let multi_dim = self.tensor_dimensions.len() > 1;
        check_presence(
            multi_dim && p1,
            &self.first_tensor_dimension_shift,
            "first_tensor_dimension_shift",
        )?;
        check_presence(multi_dim, &self.scan_order, "scan_order")?;
        if let Some(s) = self.scan_order {
            check_bits(u64::from(s), 4, "scan_order")?;
        }
        let with_eps = multi_dim && self.scan_order.is_some_and(|s| s > 0);
        check_presence(
            with_eps,
            &self.cabac_entry_point_list,
            "cabac_entry_point_list",
        )?;
        if let Some(eps) = &self.cabac_entry_point_list {
            let expected = self.expected_entry_points().ok_or(Error::InvalidArgument {
                element: "tensor_dimensions",
                reason: "the dimensions give a negative number of entry points",
            })?;
            if eps.len() as u64 != expected {
                return Err(Error::InvalidArgument {
                    element: "cabac_entry_point_list",
                    reason: "length differs from numBlockRowsMinus1 of the dimensions",
                });
            }
            let dq = self.dq_flag == Some(true);
            if !dq && eps.iter().any(|ep| ep & 7 != 0) {
                return Err(Error::InvalidArgument {
                    element: "cabac_entry_point_list",
                    reason: "dq_state must be 0 when dq_flag is not set",
                });
            }
        }
        Ok(())
    }

    /// Writes the header (after the common unit header) through its final `byte_alignment()`.
    pub fn write(&self, w: &mut BitWriter, ctx: &ParseContext) -> Result<()> {
        self.validate(ctx)?;
        let pt = self.nnr_compressed_data_unit_payload_type;
        w.write_u(5, pt as u64);
        w.write_flag(self.nnr_multiple_topology_elements_present_flag);
        w.write_flag(self.nnr_decompressed_data_format_present_flag);
        w.write_flag(self.input_parameters_present_flag);
        if self.nnr_multiple_topology_elements_present_flag {
            write_topology_elements_ids_list(
                w,
                self.topology_elem_id_list.as_ref(),
                self.topology_elem_id_index_list.as_ref(),
            )?;
        } else if let Some(n) = &self.topology_elem_id {
            write_st(w, n, "topology_elem_id")?;
        } else if let Some(i) = self.topology_elem_id_index {
            w.write_ue(7, i);
        }

        if let Some(node) = self.node_id_present_flag {
            w.write_flag(node);
            if node {
                w.write_ue(1, *required(&self.device_id, "device_id")?);
                w.write_ue(5, *required(&self.parameter_id, "parameter_id")?);
                w.write_ue(4, *required(&self.put_node_depth, "put_node_depth")?);
            }
            if let Some(parent) = self.parent_node_id_present_flag {
                w.write_flag(parent);
                if parent {
                    let t = *required(&self.parent_node_id_type, "parent_node_id_type")?;
                    w.write_u(2, u64::from(t));
                    w.write_flag(*required(
                        &self.temporal_context_modeling_flag,
                        "temporal_context_modeling_flag",
                    )?);
                    if let Some(d) = self.parent_device_id {
                        w.write_ue(1, d);
                        if !node {
                            w.write_ue(5, *required(&self.parameter_id, "parameter_id")?);
                            w.write_ue(4, *required(&self.put_node_depth, "put_node_depth")?);
                        }
                    }
                    if let Some(sha) = &self.parent_node_payload_sha256 {
                        sha.iter().for_each(|&b| w.write_u(8, u64::from(b)));
                    }
                    if let Some(sha) = &self.parent_node_payload_sha512 {
                        sha.iter().for_each(|&b| w.write_u(8, u64::from(b)));
                    }
                }
            }
        }

        if let Some(cb) = self.codebook_present_flag {
            w.write_flag(cb);
            if let Some(c) = &self.codebook {
                c.write(w)?;
            }
        }
        if let Some(dq) = self.dq_flag {
            w.write_flag(dq);
        }
        if let Some(f) = self.nnr_decompressed_data_format {
            w.write_u(7, u64::from(f));
        }
        if self.input_parameters_present_flag {
            let tdf = self.tensor_dimensions_flag == Some(true);
            let culf = self.cabac_unary_length_flag == Some(true);
            w.write_flag(tdf);
            w.write_flag(culf);
            w.write_u(4, u64::from(self.compressed_parameter_types));
            if let (Some(rank), Some(g)) = (self.decomposition_rank, self.g_number_of_rows) {
                w.write_ue(3, rank);
                w.write_ue(3, g);
            }
            if tdf {
                w.write_ue(1, self.tensor_dimensions.len() as u64);
                for &d in &self.tensor_dimensions {
                    w.write_ue(7, d);
                }
            }
            if culf {
                w.write_u(8, u64::from(self.cabac_unary_length_minus1));
            }
        }
        if let Some(c) = &self.codebook_dc {
            c.write(w)?;
        }
        if let Some(s) = self.first_tensor_dimension_shift {
            w.write_ue(1, s);
        }
        if let Some(s) = self.scan_order {
            w.write_u(4, u64::from(s));
        }
        if let Some(eps) = &self.cabac_entry_point_list {
            write_entry_point_list(w, eps, self.dq_flag == Some(true))?;
        }
        w.byte_alignment();
        Ok(())
    }

    /// The header's fields as in the reference's `hls.json`, without the unit-level fields.
    pub(crate) fn append_json(&self, m: &mut Map<String, Value>) {
        let b = |v: bool| Value::from(u8::from(v));
        m.insert(
            "nnr_compressed_data_unit_payload_type".into(),
            (self.nnr_compressed_data_unit_payload_type as u8).into(),
        );
        m.insert(
            "nnr_multiple_topology_elements_present_flag".into(),
            b(self.nnr_multiple_topology_elements_present_flag),
        );
        m.insert(
            "nnr_decompressed_data_format_present_flag".into(),
            b(self.nnr_decompressed_data_format_present_flag),
        );
        m.insert(
            "input_parameters_present_flag".into(),
            b(self.input_parameters_present_flag),
        );
        if let Some(c) = self.count_topology_elements_minus2() {
            m.insert("count_topology_elements_minus2".into(), c.into());
        }
        if let Some(l) = &self.topology_elem_id_list {
            m.insert(
                "topology_elem_id_list".into(),
                Value::Array(l.iter().map(|s| Value::from(s.as_str())).collect()),
            );
        }
        if let Some(l) = &self.topology_elem_id_index_list {
            m.insert(
                "topology_elem_id_index_list".into(),
                u64_values(l.iter().copied()),
            );
        }
        if let Some(n) = &self.topology_elem_id {
            m.insert("topology_elem_id".into(), n.as_str().into());
        }
        if let Some(i) = self.topology_elem_id_index {
            m.insert("topology_elem_id_index".into(), i.into());
        }
        let node = self.node_id_present_flag == Some(true);
        let node_ids = |m: &mut Map<String, Value>| {
            if let Some(v) = self.parameter_id {
                m.insert("parameter_id".into(), v.into());
            }
            if let Some(v) = self.put_node_depth {
                m.insert("put_node_depth".into(), v.into());
            }
        };
        if let Some(f) = self.node_id_present_flag {
            m.insert("node_id_present_flag".into(), b(f));
        }
        if let Some(v) = self.device_id {
            m.insert("device_id".into(), v.into());
        }
        if node {
            node_ids(m);
        }
        if let Some(f) = self.parent_node_id_present_flag {
            m.insert("parent_node_id_present_flag".into(), b(f));
        }
        if let Some(v) = self.parent_node_id_type {
            m.insert("parent_node_id_type".into(), v.into());
        }
        if let Some(f) = self.temporal_context_modeling_flag {
            m.insert("temporal_context_modeling_flag".into(), b(f));
        }
        if let Some(v) = self.parent_device_id {
            m.insert("parent_device_id".into(), v.into());
        }
        if !node {
            node_ids(m);
        }
        // The reference holds these as (256/512-bit) Python integers; JSON here uses hex.
        if let Some(s) = &self.parent_node_payload_sha256 {
            m.insert("parent_node_payload_sha256".into(), hex(s).into());
        }
        if let Some(s) = &self.parent_node_payload_sha512 {
            m.insert("parent_node_payload_sha512".into(), hex(s).into());
        }
        if let Some(f) = self.codebook_present_flag {
            m.insert("codebook_present_flag".into(), b(f));
        }
        if let Some(c) = &self.codebook {
            c.append_json("", m);
        }
        if let Some(f) = self.dq_flag {
            m.insert("dq_flag".into(), b(f));
        }
        if let Some(v) = self.nnr_decompressed_data_format {
            m.insert("nnr_decompressed_data_format".into(), v.into());
        }
        let dims_in_band = self.tensor_dimensions_flag == Some(true);
        let cul_in_band = self.cabac_unary_length_flag == Some(true);
        let dims = |m: &mut Map<String, Value>, count_first: bool| {
            let count = Value::from(self.count_tensor_dimensions());
            let list = u64_values(self.tensor_dimensions.iter().copied());
            if count_first {
                m.insert("count_tensor_dimensions".into(), count);
                m.insert("tensor_dimensions".into(), list);
            } else {
                m.insert("tensor_dimensions".into(), list);
                m.insert("count_tensor_dimensions".into(), count);
            }
        };
        if self.input_parameters_present_flag {
            if let Some(f) = self.tensor_dimensions_flag {
                m.insert("tensor_dimensions_flag".into(), b(f));
            }
            if let Some(f) = self.cabac_unary_length_flag {
                m.insert("cabac_unary_length_flag".into(), b(f));
            }
            m.insert(
                "compressed_parameter_types".into(),
                self.compressed_parameter_types.into(),
            );
            if let Some(v) = self.decomposition_rank {
                m.insert("decomposition_rank".into(), v.into());
            }
            if let Some(v) = self.g_number_of_rows {
                m.insert("g_number_of_rows".into(), v.into());
            }
            if dims_in_band {
                dims(m, true);
            }
            if cul_in_band {
                m.insert(
                    "cabac_unary_length_minus1".into(),
                    self.cabac_unary_length_minus1.into(),
                );
            }
        } else {
            m.insert(
                "compressed_parameter_types".into(),
                self.compressed_parameter_types.into(),
            );
        }
        if !cul_in_band {
            m.insert(
                "cabac_unary_length_minus1".into(),
                self.cabac_unary_length_minus1.into(),
            );
        }
        if !dims_in_band {
            // Reference quirk: a block NDU without input parameters gets its dimensions in the
            // opposite key order.
            let block = self.nnr_compressed_data_unit_payload_type == PayloadType::Block;
            dims(m, !block || self.input_parameters_present_flag);
        }
        if let Some(c) = &self.codebook_dc {
            c.append_json("dc", m);
        }
        if let Some(v) = self.first_tensor_dimension_shift {
            m.insert("first_tensor_dimension_shift".into(), v.into());
        }
        if let Some(v) = self.scan_order {
            m.insert("scan_order".into(), v.into());
        }
        if let Some(eps) = &self.cabac_entry_point_list {
            m.insert(
                "cabac_entry_point_list".into(),
                u64_values(eps.iter().copied()),
            );
        }
    }
}

// entry_point_list( numBlockRowsMinus1, dq_flag ) {
//   for( j = 0; j < numBlockRowsMinus1; j++ ) {
//     value                                            u(8)
//     if( dq_flag ) dq_state                           u(3)
//     if( j == 0 ) bit_offset                          ue(11)
//     else         bit_offset_delta                    ie(7)   = bit_offset[ j ] − bit_offset[ j − 1 ]
//   }
// }
fn read_entry_point_list(r: &mut BitReader<'_>, n: u128, dq: bool) -> Result<Vec<u64>> {
    r.ensure_fits(n, 9, "cabac_entry_point_list")?;
    let mut list = Vec::with_capacity(n as usize);
    let mut prev: i128 = 0;
    for j in 0..n {
        let value = r.u(8, "cabac_entry_point_list")?;
        let dq_state = if dq {
            r.u(3, "cabac_entry_point_list")?
        } else {
            0
        };
        let offset = if j == 0 {
            i128::from(r.ue(11, "cabac_entry_point_list")?)
        } else {
            prev + i128::from(r.ie(7, "cabac_entry_point_list")?)
        };
        if offset < 0 || offset > i128::from(MAX_EP_BIT_OFFSET) {
            return Err(Error::InvalidValue {
                element: "cabac_entry_point_list",
                value: offset,
                bit_offset: r.bit_offset(),
            });
        }
        list.push(((offset as u64) << 11) | (value << 3) | dq_state);
        prev = offset;
    }
    Ok(list)
}

fn write_entry_point_list(w: &mut BitWriter, eps: &[u64], dq: bool) -> Result<()> {
    let mut prev = 0i64;
    for (j, &ep) in eps.iter().enumerate() {
        let offset = (ep >> 11) as i64;
        w.write_u(8, (ep >> 3) & 255);
        if dq {
            w.write_u(3, ep & 7);
        }
        if j == 0 {
            w.write_ue(11, offset as u64);
        } else {
            w.write_ie(7, offset - prev);
        }
        prev = offset;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::consts::{NNR_CPT_BI, NNR_CPT_BN};
    use crate::ErrorKind;

    fn ctx() -> ParseContext {
        ParseContext::profile1(false)
    }

    fn round_trip(h: &NduHeader, ctx: &ParseContext, side: &SideInfo) -> Vec<u8> {
        let mut w = BitWriter::new();
        h.write(&mut w, ctx).unwrap();
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        assert_eq!(&NduHeader::read(&mut r, ctx, side).unwrap(), h);
        assert_eq!(r.bits_left(), 0);
        bytes
    }

    /// hls.md §7 "Other verified header variants": codebook_mode=1, qp −20, use_dq=False.
    #[test]
    fn codebook_header_of_the_spec() {
        let bytes = [
            0x09, 0x30, 0x00, 0xd0, 0x42, 0x0f, 0x90, 0xad, 0x34, 0x6e, 0xac, 0x12, 0x12, 0x10,
            0x2a, 0x08,
        ];
        let mut r = BitReader::new(&bytes);
        let h = NduHeader::read(&mut r, &ctx(), &SideInfo::default()).unwrap();
        assert_eq!(r.bits_left(), 0);
        assert_eq!(h.codebook_present_flag, Some(true));
        let cb = h.codebook.as_ref().unwrap();
        assert_eq!(cb.codebook_egk, 0);
        assert_eq!(cb.codebook_size, 11);
        assert_eq!(cb.codebook_zero_offset, 5);
        assert_eq!(cb.values, [-13, -7, -5, -2, 0, 3, 4, 5, 6, 8, 9]);
        assert_eq!(h.dq_flag, Some(false));
        assert_eq!(round_trip(&h, &ctx(), &SideInfo::default()), bytes);
    }

    /// hls.md §4.5: 20×12 tensor, scan_order 1, DQ: two entry points.
    #[test]
    fn entry_points_of_the_spec() {
        let ep0 = (667u64 << 11) | (60 << 3) | 3;
        let ep1 = (665u64 << 11) | (44 << 3) | 3;
        let h = NduHeader {
            topology_elem_id: Some("w".into()),
            node_id_present_flag: Some(true),
            device_id: Some(0),
            parameter_id: Some(0),
            put_node_depth: Some(0),
            codebook_present_flag: Some(false),
            dq_flag: Some(true),
            input_parameters_present_flag: true,
            tensor_dimensions_flag: Some(true),
            cabac_unary_length_flag: Some(true),
            tensor_dimensions: vec![20, 12],
            cabac_unary_length_minus1: 10,
            first_tensor_dimension_shift: Some(0),
            scan_order: Some(1),
            cabac_entry_point_list: Some(vec![ep0, ep1]),
            ..NduHeader::default()
        };
        assert_eq!(h.expected_entry_points(), Some(2));
        let bytes = round_trip(&h, &ctx(), &SideInfo::default());
        // the list sits right before the alignment: u(8) u(3) ue(11) | u(8) u(3) ie(7)
        let mut w = BitWriter::new();
        w.write_u(8, 60);
        w.write_u(3, 3);
        w.write_ue(11, 667);
        w.write_u(8, 44);
        w.write_u(3, 3);
        w.write_ie(7, -2);
        let ep_bits = w.bit_len();
        assert_eq!(ep_bits, 8 + 3 + 12 + 8 + 3 + 8);
        // wrong list lengths or a dq_state without DQ are refused
        let mut bad = h.clone();
        bad.cabac_entry_point_list = Some(vec![ep0]);
        assert!(bad.write(&mut BitWriter::new(), &ctx()).is_err());
        let mut bad = h.clone();
        bad.dq_flag = Some(false);
        assert!(bad.write(&mut BitWriter::new(), &ctx()).is_err());
        let mut no_dq = h.clone();
        no_dq.dq_flag = Some(false);
        no_dq.cabac_entry_point_list = Some(vec![ep0 & !7, ep1 & !7]);
        let b2 = round_trip(&no_dq, &ctx(), &SideInfo::default());
        assert!(b2.len() <= bytes.len());
    }

    #[test]
    fn entry_point_counts() {
        let mut h = NduHeader {
            tensor_dimensions: vec![20, 12],
            scan_order: Some(1),
            ..NduHeader::default()
        };
        assert_eq!(h.expected_entry_points(), Some(2));
        h.scan_order = Some(2); // 16-row blocks
        assert_eq!(h.expected_entry_points(), Some(1));
        h.tensor_dimensions = vec![16, 3];
        assert_eq!(h.expected_entry_points(), Some(0));
        h.tensor_dimensions = vec![0, 3];
        assert_eq!(h.expected_entry_points(), None);
        h.scan_order = Some(0);
        assert_eq!(h.expected_entry_points(), Some(0));
        // DC block: rows(G) + rows(H)
        let mut b = NduHeader {
            nnr_compressed_data_unit_payload_type: PayloadType::Block,
            compressed_parameter_types: NNR_CPT_DC | NNR_CPT_BI,
            g_number_of_rows: Some(24),
            decomposition_rank: Some(9),
            tensor_dimensions: vec![24, 8, 3, 3],
            scan_order: Some(1),
            ..NduHeader::default()
        };
        assert_eq!(b.expected_entry_points(), Some(2 + 1));
        // separately coded factors
        b.nnr_compressed_data_unit_payload_type = PayloadType::Float;
        b.topology_elem_id = Some("d.weight_G".into());
        assert_eq!(b.decomposed_tensor_type(), Some(DecomposedTensorType::G));
        assert_eq!(b.expected_entry_points(), Some(2));
        b.topology_elem_id = Some("d.weight_H".into());
        assert_eq!(b.decomposed_tensor_type(), Some(DecomposedTensorType::H));
        assert_eq!(b.expected_entry_points(), Some(1));
    }

    #[test]
    fn block_names_and_side_info_lookup() {
        let h = NduHeader {
            nnr_compressed_data_unit_payload_type: PayloadType::Block,
            nnr_multiple_topology_elements_present_flag: true,
            input_parameters_present_flag: true,
            topology_elem_id_list: Some(vec!["c.weight_G".into(), "c.weight_H".into()]),
            node_id_present_flag: Some(true),
            device_id: Some(0),
            parameter_id: Some(3),
            put_node_depth: Some(0),
            parent_node_id_present_flag: Some(false),
            codebook_present_flag: Some(false),
            dq_flag: Some(true),
            tensor_dimensions_flag: Some(false),
            cabac_unary_length_flag: Some(true),
            compressed_parameter_types: NNR_CPT_DC,
            decomposition_rank: Some(2),
            g_number_of_rows: Some(8),
            tensor_dimensions: vec![8, 4],
            cabac_unary_length_minus1: 10,
            first_tensor_dimension_shift: Some(0),
            scan_order: Some(0),
            ..NduHeader::default()
        };
        let ctx = ParseContext::profile1(true);
        assert_eq!(h.count_topology_elements_minus2(), Some(0));
        assert_eq!(h.element_name(), Some("c.weight_G"));
        // the weight's name without the factor suffix is found too
        let side = SideInfo::new().with_tensor_dimensions("c.weight", vec![8, 4]);
        let bytes = round_trip(&h, &ctx, &side);
        // ue(7) count 0 = "10000000", then byte_alignment emits a whole 0x80 byte
        assert_eq!(bytes[1..3], [0x80, 0x80]);
        assert_eq!(&bytes[3..13], b"c.weight_G");
        let e = NduHeader::read(&mut BitReader::new(&bytes), &ctx, &SideInfo::default());
        assert_eq!(
            e,
            Err(Error::MissingSideInformation {
                name: "c.weight_G".into()
            })
        );
    }

    #[test]
    fn parent_signalling_fields() {
        // hls.md §7: compress_differences + TCA: after put_node_depth `1 00 1 10`
        let h = NduHeader {
            topology_elem_id: Some("w".into()),
            node_id_present_flag: Some(true),
            device_id: Some(0),
            parameter_id: Some(0),
            put_node_depth: Some(1),
            parent_node_id_present_flag: Some(true),
            parent_node_id_type: Some(ICNN_NDU_ID),
            temporal_context_modeling_flag: Some(true),
            parent_device_id: Some(0),
            codebook_present_flag: Some(false),
            dq_flag: Some(true),
            input_parameters_present_flag: true,
            tensor_dimensions_flag: Some(true),
            cabac_unary_length_flag: Some(true),
            tensor_dimensions: vec![7],
            cabac_unary_length_minus1: 10,
            ..NduHeader::default()
        };
        let ctx = ParseContext::profile1(true);
        round_trip(&h, &ctx, &SideInfo::default());
        // node ids in the parent part when node_id_present_flag = 0
        let h2 = NduHeader {
            node_id_present_flag: Some(false),
            device_id: None,
            ..h.clone()
        };
        round_trip(&h2, &ctx, &SideInfo::default());
        // without MPS parent signalling the parent fields must be absent
        assert!(h
            .write(&mut BitWriter::new(), &ParseContext::profile1(false))
            .is_err());
        // parent_node_id_type 3 is invalid
        let mut w = BitWriter::new();
        w.write_u(5, 1);
        w.write_u(3, 0);
        w.write_st("w");
        w.write_u(1, 0); // node_id_present_flag
        w.write_u(1, 1); // parent present
        w.write_u(2, 3);
        w.write_u(8, 0);
        let bytes = w.finish();
        let e = NduHeader::read(&mut BitReader::new(&bytes), &ctx, &SideInfo::default());
        assert!(matches!(
            e,
            Err(Error::InvalidValue {
                element: "parent_node_id_type",
                value: 3,
                ..
            })
        ));
    }

    #[test]
    fn defaults_when_input_parameters_are_absent() {
        let h = NduHeader {
            nnr_compressed_data_unit_payload_type: PayloadType::Int,
            topology_elem_id: Some("t".into()),
            dq_flag: Some(false),
            input_parameters_present_flag: false,
            tensor_dimensions: vec![5, 5],
            cabac_unary_length_minus1: DEFAULT_CABAC_UNARY_LENGTH_MINUS1,
            scan_order: Some(0),
            ..NduHeader::default()
        };
        let ctx = ParseContext {
            general_profile_idc: 0,
            ..ParseContext::default()
        };
        let side = SideInfo::new().with_tensor_dimensions("t", vec![5, 5]);
        round_trip(&h, &ctx, &side);
        let mut m = Map::new();
        h.append_json(&mut m);
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys[keys.len() - 5..],
            [
                "compressed_parameter_types",
                "cabac_unary_length_minus1",
                "count_tensor_dimensions",
                "tensor_dimensions",
                "scan_order"
            ]
        );
        assert_eq!(m["cabac_unary_length_minus1"], 9);
        // a non-default value that is not transmitted is refused
        let bad = NduHeader {
            cabac_unary_length_minus1: 10,
            ..h.clone()
        };
        assert!(bad.write(&mut BitWriter::new(), &ctx).is_err());
        let bad = NduHeader {
            compressed_parameter_types: NNR_CPT_BN,
            ..h
        };
        assert!(bad.write(&mut BitWriter::new(), &ctx).is_err());
    }

    #[test]
    fn hostile_counts_do_not_allocate() {
        // count_topology_elements_minus2 = 2^40 in a 16-byte buffer
        let mut w = BitWriter::new();
        w.write_u(5, 3);
        w.write_u(3, 0b101);
        w.write_ue(7, 1 << 40);
        w.byte_alignment();
        w.write_bytes(&[b'a', 0, b'b', 0]);
        let bytes = w.finish();
        let e = NduHeader::read(&mut BitReader::new(&bytes), &ctx(), &SideInfo::default());
        assert!(matches!(e, Err(Error::TooManyItems { .. })), "{e:?}");
        // count_tensor_dimensions = 2^50
        let mut w = BitWriter::new();
        w.write_u(5, 0);
        w.write_u(3, 0b001);
        w.write_st("x");
        w.write_flag(false); // node_id_present_flag
        w.write_flag(false); // dq_flag
        w.write_flag(true); // tensor_dimensions_flag
        w.write_flag(false);
        w.write_u(4, 0);
        w.write_ue(1, 1 << 50);
        w.write_u(32, 0);
        let bytes = w.finish();
        let e = NduHeader::read(&mut BitReader::new(&bytes), &ctx(), &SideInfo::default());
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Malformed);
        // codebook_size = 2^60
        let mut w = BitWriter::new();
        w.write_u(4, 0);
        w.write_ue(2, 1 << 60);
        w.write_ie(2, 0);
        w.write_u(64, 0);
        let bytes = w.finish();
        assert!(matches!(
            Codebook::read(&mut BitReader::new(&bytes)),
            Err(Error::TooManyItems { .. })
        ));
        // a codebook value outside int32
        let mut w = BitWriter::new();
        w.write_u(4, 0);
        w.write_ue(2, 1);
        w.write_ie(2, 0);
        w.write_ie(7, 1 << 40);
        let bytes = w.finish();
        let e = Codebook::read(&mut BitReader::new(&bytes)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LimitExceeded);
        // scan order with an entry point count beyond the data
        let h = NduHeader {
            topology_elem_id: Some("w".into()),
            node_id_present_flag: Some(false),
            codebook_present_flag: Some(false),
            dq_flag: Some(false),
            input_parameters_present_flag: true,
            tensor_dimensions_flag: Some(true),
            cabac_unary_length_flag: Some(false),
            tensor_dimensions: vec![1 << 40, 2],
            cabac_unary_length_minus1: 9,
            first_tensor_dimension_shift: Some(0),
            scan_order: Some(0),
            ..NduHeader::default()
        };
        let mut w = BitWriter::new();
        h.write(&mut w, &ctx()).unwrap();
        let mut bytes = w.finish();
        // patch scan_order 0 -> 1: its last bit is just before the alignment's 1 bit
        let last = bytes.len() - 1;
        let one_bit = last * 8 + 7 - bytes[last].trailing_zeros() as usize;
        let lsb = one_bit - 1;
        bytes[lsb / 8] |= 0x80 >> (lsb % 8);
        let e = NduHeader::read(&mut BitReader::new(&bytes), &ctx(), &SideInfo::default());
        assert!(matches!(e, Err(Error::TooManyItems { .. })), "{e:?}");
    }

    #[test]
    fn codebook_validation() {
        let good = Codebook {
            codebook_egk: 1,
            codebook_size: 3,
            codebook_zero_offset: 1,
            values: vec![-2, 0, 5],
        };
        let mut w = BitWriter::new();
        good.write(&mut w).unwrap();
        let bytes = w.finish();
        assert_eq!(Codebook::read(&mut BitReader::new(&bytes)).unwrap(), good);
        for bad in [
            Codebook {
                values: vec![0, 0, 5],
                ..good.clone()
            },
            Codebook {
                codebook_size: 2,
                ..good.clone()
            },
            Codebook {
                codebook_zero_offset: 3,
                ..good.clone()
            },
            Codebook {
                codebook_egk: 16,
                ..good.clone()
            },
            Codebook {
                values: vec![-2, 0, 1 << 40],
                ..good.clone()
            },
        ] {
            assert!(bad.write(&mut BitWriter::new()).is_err(), "{bad:?}");
        }
    }
}

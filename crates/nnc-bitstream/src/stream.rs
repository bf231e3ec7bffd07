//! Splitting a bitstream into NNR units, and parsing each unit with the context of the
//! preceding ones.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::units::consts::NNR_CPT_DC;
use crate::units::{
    LayerParameterSet, ModelParameterSet, NduHeader, NnrUnitHeader, NnrUnitSize, NnrUnitType,
    PayloadType, QuantizationUnit, StartUnit, TopologyUnit,
};
use crate::unit::{raw_float_len, NnrUnit};
use crate::{BitReader, ParseContext, SideInfo};

/// One NNR unit located by its size field, not yet parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawUnit<'a> {
    /// Position of the unit in the bitstream (0 = first).
    pub index: usize,
    /// Byte offset of the unit in the bitstream.
    pub byte_offset: usize,
    /// The unit's `nnr_unit_size_flag`.
    pub nnr_unit_size_flag: bool,
    /// The unit's `nnr_unit_size` (total bytes, size field included).
    pub nnr_unit_size: u64,
    /// The whole unit, size field included.
    pub bytes: &'a [u8],
}

impl RawUnit<'_> {
    /// Length of the size field (2 or 4 bytes).
    pub fn size_field_len(&self) -> usize {
        if self.nnr_unit_size_flag {
            4
        } else {
            2
        }
    }

    /// The unit's `nnr_unit_type`, read from the first header byte.
    pub fn nnr_unit_type(&self) -> Result<NnrUnitType> {
        let byte = self
            .bytes
            .get(self.size_field_len())
            .copied()
            .ok_or(Error::UnexpectedEnd {
                element: "nnr_unit_type",
                bit_offset: self.size_field_len() as u64 * 8,
            })?;
        NnrUnitType::try_from(byte >> 2)
    }
}

/// Iterates over the NNR units of a bitstream (a plain concatenation of units) using only
/// their size fields.
#[derive(Debug, Clone)]
pub struct UnitReader<'a> {
    data: &'a [u8],
    pos: usize,
    index: usize,
    failed: bool,
}

impl<'a> UnitReader<'a> {
    /// A reader over a whole bitstream.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            index: 0,
            failed: false,
        }
    }

    /// Byte offset of the next unit.
    pub fn byte_offset(&self) -> usize {
        self.pos
    }

    /// The next unit, `Ok(None)` at the end of the data. A size field that does not fit the
    /// remaining data is an error (and ends the iteration).
    #[allow(clippy::should_implement_trait)] // the fallible signature is the point
    pub fn next(&mut self) -> Result<Option<RawUnit<'a>>> {
        if self.failed || self.pos >= self.data.len() {
            return Ok(None);
        }
        let rest = &self.data[self.pos..];
        let long = rest[0] & 0x80 != 0;
        let field = if long { 4 } else { 2 };
        let fail = |this: &mut Self, e: Error| {
            this.failed = true;
            Err(e)
        };
        if rest.len() < field {
            return fail(
                self,
                Error::UnitTruncated {
                    index: self.index,
                    byte_offset: self.pos,
                    declared: field as u64,
                    available: rest.len() as u64,
                },
            );
        }
        let size = NnrUnitSize::read(&mut BitReader::new(&rest[..field]))?;
        let declared = u64::from(size.nnr_unit_size);
        if declared <= field as u64 {
            return fail(
                self,
                Error::InvalidUnitSize {
                    index: self.index,
                    byte_offset: self.pos,
                    nnr_unit_size: declared,
                },
            );
        }
        if declared > rest.len() as u64 {
            return fail(
                self,
                Error::UnitTruncated {
                    index: self.index,
                    byte_offset: self.pos,
                    declared,
                    available: rest.len() as u64,
                },
            );
        }
        let unit = RawUnit {
            index: self.index,
            byte_offset: self.pos,
            nnr_unit_size_flag: long,
            nnr_unit_size: declared,
            bytes: &rest[..declared as usize],
        };
        self.pos += declared as usize;
        self.index += 1;
        Ok(Some(unit))
    }
}

/// A parsed NNR unit.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedUnit<'a> {
    /// Position of the unit in the bitstream.
    pub index: usize,
    /// Byte offset of the unit in the bitstream.
    pub byte_offset: usize,
    /// The size field.
    pub size: NnrUnitSize,
    /// The common unit header.
    pub header: NnrUnitHeader,
    /// Type-specific header and payload.
    pub unit: NnrUnit<'a>,
    /// For NDUs: the bytes after the header's `byte_alignment()` up to the end of the unit
    /// (the CABAC segment); empty for other units.
    pub payload: &'a [u8],
    /// Offset of `payload` within the unit (= length of size field and headers).
    pub payload_offset: usize,
    /// The context in force for this unit (for the STR: the one it establishes; for the MPS:
    /// the one before it). Writing the unit needs the same context.
    pub context: ParseContext,
}

fn order_error(raw: &RawUnit<'_>, t: NnrUnitType, reason: &'static str) -> Error {
    Error::UnitOrder {
        index: raw.index,
        nnr_unit_type: t,
        reason,
    }
}

/// Parses one unit found by [`UnitReader`], checking the unit order the reference decoder
/// requires and updating `ctx` (the STR resets it, the MPS fills its fields).
///
/// Order rules: the first unit is the STR and no other unit is; the MPS is the second unit
/// (Reference quirk: the reference flags "an NDU was decoded" after *every* unit, so an MPS
/// anywhere else is rejected); TPL and NDU units need the MPS before them; `NNR_AGG` is
/// [`Error::Unsupported`].
///
/// For every unit but the NDU, the bytes consumed must equal `nnr_unit_size`; an NDU's payload
/// runs to the end of the unit (a `NNR_PT_RAW_FLOAT` payload must hold exactly the tensor).
pub fn parse_unit<'a>(
    raw: RawUnit<'a>,
    ctx: &mut ParseContext,
    side: &SideInfo,
) -> Result<ParsedUnit<'a>> {
    let mut r = BitReader::new(raw.bytes);
    let size = NnrUnitSize::read(&mut r)?;
    if u64::from(size.nnr_unit_size) != raw.bytes.len() as u64 {
        return Err(Error::SizeMismatch {
            element: "nnr_unit_size",
            expected: u64::from(size.nnr_unit_size),
            actual: raw.bytes.len() as u64,
        });
    }
    let header = NnrUnitHeader::read(&mut r)?;
    let t = header.nnr_unit_type;
    match t {
        NnrUnitType::Str if raw.index != 0 => {
            return Err(order_error(&raw, t, "NNR_STR may only be the first unit"))
        }
        _ if raw.index == 0 && t != NnrUnitType::Str => {
            return Err(order_error(&raw, t, "the first unit must be NNR_STR"))
        }
        NnrUnitType::Mps if raw.index != 1 => {
            return Err(order_error(
                &raw,
                t,
                "NNR_MPS must directly follow NNR_STR (at most one, before any other unit)",
            ))
        }
        NnrUnitType::Tpl | NnrUnitType::Ndu if !ctx.mps_seen => {
            return Err(order_error(&raw, t, "requires a preceding NNR_MPS"))
        }
        NnrUnitType::Agg => {
            return Err(Error::Unsupported {
                what: "nnr_aggregate_unit_header (NNR_AGG)",
                bit_offset: r.bit_offset(),
            })
        }
        _ => {}
    }
    let mut context = *ctx;
    let mut payload: &'a [u8] = &[];
    let unit = match t {
        NnrUnitType::Str => {
            let s = StartUnit::read(&mut r, ctx)?;
            *ctx = ParseContext {
                general_profile_idc: s.general_profile_idc,
                ..ParseContext::default()
            };
            context = *ctx;
            NnrUnit::Str(s)
        }
        NnrUnitType::Mps => {
            let m = ModelParameterSet::read(&mut r, ctx)?;
            ctx.mps_topology_indexed_reference_flag = m.mps_topology_indexed_reference_flag;
            ctx.mps_parent_signalling_enabled_flag =
                m.mps_parent_signalling_enabled_flag == Some(true);
            ctx.mps_seen = true;
            NnrUnit::Mps(m)
        }
        NnrUnitType::Lps => NnrUnit::Lps(LayerParameterSet::read(&mut r, ctx)?),
        NnrUnitType::Tpl => NnrUnit::Tpl(TopologyUnit::read(&mut r, ctx)?),
        NnrUnitType::Qnt => NnrUnit::Qnt(QuantizationUnit::read(&mut r, ctx)?),
        NnrUnitType::Ndu => {
            let h = NduHeader::read(&mut r, ctx, side)?;
            payload = r.remaining_bytes()?;
            if h.nnr_compressed_data_unit_payload_type == PayloadType::RawFloat {
                let expected = raw_float_len(&h.tensor_dimensions).unwrap_or(u64::MAX);
                if expected != payload.len() as u64 {
                    return Err(Error::SizeMismatch {
                        element: "raw_float32_parameter",
                        expected,
                        actual: payload.len() as u64,
                    });
                }
            }
            NnrUnit::Ndu {
                header: h,
                payload: Cow::Borrowed(payload),
            }
        }
        NnrUnitType::Agg => NnrUnit::Agg,
    };
    if t != NnrUnitType::Ndu && r.bytes_touched() != raw.bytes.len() {
        return Err(Error::SizeMismatch {
            element: "nnr_unit_size",
            expected: raw.bytes.len() as u64,
            actual: r.bytes_touched() as u64,
        });
    }
    Ok(ParsedUnit {
        index: raw.index,
        byte_offset: raw.byte_offset,
        size,
        header,
        payload_offset: raw.bytes.len() - payload.len(),
        payload,
        unit,
        context,
    })
}

impl ParsedUnit<'_> {
    /// The unit as the reference decoder's dictionary in the conformance vectors' `hls.json`:
    /// the same keys, values and key order, including the size fields and the context values
    /// the reference copies into the unit (`general_profile_idc` in STR/MPS/NDU,
    /// `mps_topology_indexed_reference_flag` in TPL/NDU, `mps_parent_signalling_enabled_flag`
    /// in NDU) and the defaults / side information an NDU received.
    pub fn to_hls_json(&self) -> Map<String, Value> {
        let b = |v: bool| Value::from(u8::from(v));
        let ctx = &self.context;
        let mut m = Map::new();
        m.insert("nnr_unit_size_flag".into(), b(self.size.nnr_unit_size_flag));
        m.insert("nnr_unit_size".into(), self.size.nnr_unit_size.into());
        m.insert(
            "nnr_unit_type".into(),
            u8::from(self.header.nnr_unit_type).into(),
        );
        match &self.unit {
            NnrUnit::Tpl(_) => {
                m.insert(
                    "mps_topology_indexed_reference_flag".into(),
                    b(ctx.mps_topology_indexed_reference_flag),
                );
            }
            NnrUnit::Ndu { .. } => {
                m.insert(
                    "mps_topology_indexed_reference_flag".into(),
                    b(ctx.mps_topology_indexed_reference_flag),
                );
                m.insert(
                    "mps_parent_signalling_enabled_flag".into(),
                    b(ctx.mps_parent_signalling_enabled_flag),
                );
                m.insert("general_profile_idc".into(), ctx.general_profile_idc.into());
            }
            _ => {}
        }
        m.insert(
            "independently_decodable_flag".into(),
            b(self.header.independently_decodable_flag),
        );
        m.insert(
            "partial_data_counter_present_flag".into(),
            b(self.header.partial_data_counter_present_flag),
        );
        if let Some(c) = self.header.partial_data_counter {
            m.insert("partial_data_counter".into(), c.into());
        }
        match &self.unit {
            NnrUnit::Str(s) => s.to_json(&mut m),
            NnrUnit::Mps(mps) => {
                m.insert("general_profile_idc".into(), ctx.general_profile_idc.into());
                mps.to_json(&mut m);
            }
            NnrUnit::Lps(l) => l.to_json(&mut m),
            NnrUnit::Tpl(t) => t.to_json(&mut m),
            NnrUnit::Qnt(q) => q.to_json(&mut m),
            NnrUnit::Ndu { header, .. } => {
                header.to_json(&mut m);
                if header.nnr_compressed_data_unit_payload_type == PayloadType::RawFloat {
                    let mut info = Map::new();
                    info.insert(
                        "shape".into(),
                        Value::Array(
                            header
                                .tensor_dimensions
                                .iter()
                                .map(|&d| Value::from(d))
                                .collect(),
                        ),
                    );
                    info.insert("dtype".into(), "float32".into());
                    m.insert("raw_float32_parameter".into(), Value::Object(info));
                }
                if header.compressed_parameter_types & NNR_CPT_DC != 0
                    && header.nnr_compressed_data_unit_payload_type != PayloadType::Block
                {
                    let name = header.topology_elem_id.as_deref().unwrap_or("");
                    let factor = if name.ends_with("_G") {
                        Some("G")
                    } else if name.ends_with("_H") {
                        Some("H")
                    } else {
                        None
                    };
                    if let Some(f) = factor {
                        m.insert("_decomposed_tensor_type".into(), f.into());
                    }
                }
            }
            NnrUnit::Agg => {}
        }
        m
    }
}

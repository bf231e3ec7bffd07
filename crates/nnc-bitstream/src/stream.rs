//! Splitting a bitstream into NNR units, and parsing each unit with the context of the
//! preceding ones.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::unit::{raw_float_len, NnrUnit};
use crate::units::consts::NNR_CPT_DC;
use crate::units::{
    LayerParameterSet, ModelParameterSet, NduHeader, NnrUnitHeader, NnrUnitSize, NnrUnitType,
    PayloadType, QuantizationUnit, StartUnit, TopologyUnit,
};
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
            NnrUnit::Str(s) => s.append_json(&mut m),
            NnrUnit::Mps(mps) => {
                m.insert("general_profile_idc".into(), ctx.general_profile_idc.into());
                mps.append_json(&mut m);
            }
            NnrUnit::Lps(l) => l.append_json(&mut m),
            NnrUnit::Tpl(t) => t.append_json(&mut m),
            NnrUnit::Qnt(q) => q.append_json(&mut m),
            NnrUnit::Ndu { header, .. } => {
                header.append_json(&mut m);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::consts::NNR_TPL_UNREC;
    use crate::{encode_unit, ErrorKind};

    /// hls.md §7: `nncodec.tensor.encode(x, args={'qp': -32})` of a 4×4 float32 tensor.
    const WORKED_EXAMPLE: [u8; 64] = [
        0x00, 0x04, 0x02, 0x01, 0x00, 0x08, 0x06, 0x81, 0x00, 0x40, 0x00, 0x80, 0x00, 0x06, 0x0e,
        0x00, 0x00, 0x00, 0x00, 0x2e, 0x16, 0x09, 0x30, 0x00, 0xd0, 0x41, 0xc1, 0x21, 0x21, 0x02,
        0xa0, 0x80, 0xe0, 0x17, 0xd4, 0x25, 0xd5, 0x90, 0xf8, 0xfd, 0x5a, 0xad, 0x6b, 0x5a, 0xd7,
        0x07, 0xc1, 0x28, 0x04, 0x99, 0xd1, 0x2e, 0x1b, 0x58, 0x53, 0x03, 0x82, 0xf0, 0x92, 0x33,
        0x29, 0xd3, 0xb8, 0x7f,
    ];

    fn parse_stream<'a>(data: &'a [u8], side: &SideInfo) -> Result<Vec<ParsedUnit<'a>>> {
        let mut reader = UnitReader::new(data);
        let mut ctx = ParseContext::default();
        let mut out = Vec::new();
        while let Some(raw) = reader.next()? {
            out.push(parse_unit(raw, &mut ctx, side)?);
        }
        Ok(out)
    }

    #[test]
    fn worked_example_parses_field_by_field() {
        let units = parse_stream(&WORKED_EXAMPLE, &SideInfo::default()).unwrap();
        assert_eq!(units.len(), 4);
        let offsets: Vec<usize> = units.iter().map(|u| u.byte_offset).collect();
        assert_eq!(offsets, [0, 4, 12, 18]);

        // Unit 1: STR 00 04 02 01
        let u = &units[0];
        assert_eq!(
            u.size,
            NnrUnitSize {
                nnr_unit_size_flag: false,
                nnr_unit_size: 4
            }
        );
        assert_eq!(u.header, NnrUnitHeader::new(NnrUnitType::Str));
        assert_eq!(
            u.unit,
            NnrUnit::Str(StartUnit {
                general_profile_idc: 1
            })
        );

        // Unit 2: MPS 00 08 06 81 00 40 00 80
        let NnrUnit::Mps(m) = &units[1].unit else {
            panic!("unit 2 is not an MPS")
        };
        assert_eq!(units[1].size.nnr_unit_size, 8);
        assert_eq!(*m, ModelParameterSet::reference(1, 2, false, false));
        assert!(m.topology_carriage_flag);
        assert_eq!(m.mps_quantization_method_flags, 1);
        assert_eq!(m.mps_parent_signalling_enabled_flag, Some(false));
        assert_eq!(m.nnr_reserved_zero_1bit, Some(0));
        assert_eq!(m.mps_qp_density, Some(2));
        assert_eq!(m.mps_quantization_parameter, Some(0));

        // Unit 3: TPL 00 06 0e 00 00 00
        assert_eq!(
            units[2].unit,
            NnrUnit::Tpl(TopologyUnit {
                topology_storage_format: NNR_TPL_UNREC,
                topology_compression_format: 0,
                topology_data: Some(String::new()),
                topology_elem_id_list: None,
            })
        );

        // Unit 4: NDU, 14 header bytes + 32 CABAC bytes
        let u = &units[3];
        assert_eq!(u.size.nnr_unit_size, 46);
        assert_eq!(u.payload_offset, 14);
        assert_eq!(u.payload.len(), 32);
        assert_eq!(&u.payload[..2], &[0xe0, 0x17]);
        assert_eq!(*u.payload.last().unwrap(), 0x7f);
        let NnrUnit::Ndu { header: h, .. } = &u.unit else {
            panic!("unit 4 is not an NDU")
        };
        let expected = NduHeader {
            nnr_compressed_data_unit_payload_type: PayloadType::Float,
            nnr_multiple_topology_elements_present_flag: false,
            nnr_decompressed_data_format_present_flag: false,
            input_parameters_present_flag: true,
            topology_elem_id: Some("0".into()),
            node_id_present_flag: Some(true),
            device_id: Some(0),
            parameter_id: Some(0),
            put_node_depth: Some(0),
            codebook_present_flag: Some(false),
            dq_flag: Some(true),
            tensor_dimensions_flag: Some(true),
            cabac_unary_length_flag: Some(true),
            compressed_parameter_types: 0,
            tensor_dimensions: vec![4, 4],
            cabac_unary_length_minus1: 10,
            first_tensor_dimension_shift: Some(0),
            scan_order: Some(0),
            ..NduHeader::default()
        };
        assert_eq!(*h, expected);
        assert_eq!(u.context, ParseContext::profile1(false));
    }

    #[test]
    fn worked_example_writes_back_byte_identical() {
        let units = parse_stream(&WORKED_EXAMPLE, &SideInfo::default()).unwrap();
        let mut out = Vec::new();
        for u in &units {
            out.extend(encode_unit(&u.unit, &u.context).unwrap());
        }
        assert_eq!(out, WORKED_EXAMPLE);
        // and from hand-built values, as an encoder would
        let ctx = ParseContext::profile1(false);
        let ndu = NnrUnit::Ndu {
            header: match &units[3].unit {
                NnrUnit::Ndu { header, .. } => header.clone(),
                _ => unreachable!(),
            },
            payload: Cow::Borrowed(&WORKED_EXAMPLE[32..]),
        };
        let mps = encode_unit(
            &NnrUnit::Mps(ModelParameterSet::reference(1, 2, false, false)),
            &ctx,
        )
        .unwrap();
        assert_eq!(mps, WORKED_EXAMPLE[4..12]);
        assert_eq!(encode_unit(&ndu, &ctx).unwrap(), WORKED_EXAMPLE[18..]);
    }

    #[test]
    fn worked_example_hls_json() {
        let units = parse_stream(&WORKED_EXAMPLE, &SideInfo::default()).unwrap();
        let ndu = units[3].to_hls_json();
        let keys: Vec<&str> = ndu.keys().map(String::as_str).collect();
        assert_eq!(
            keys[..8],
            [
                "nnr_unit_size_flag",
                "nnr_unit_size",
                "nnr_unit_type",
                "mps_topology_indexed_reference_flag",
                "mps_parent_signalling_enabled_flag",
                "general_profile_idc",
                "independently_decodable_flag",
                "partial_data_counter_present_flag",
            ]
        );
        assert_eq!(ndu["tensor_dimensions"], serde_json::json!([4, 4]));
        assert_eq!(ndu["topology_elem_id"], "0");
        assert_eq!(ndu["scan_order"], 0);
        let tpl = units[2].to_hls_json();
        assert_eq!(tpl["mps_topology_indexed_reference_flag"], 0);
        assert_eq!(tpl["topology_data"], "");
        let mps = units[1].to_hls_json();
        assert_eq!(mps["general_profile_idc"], 1);
        assert_eq!(mps["nnr_reserved_zero_1bit"], 0);
        assert!(!mps.contains_key("nnr_pre_flag"));
    }

    #[test]
    fn unit_order_rules() {
        let str_mps = &WORKED_EXAMPLE[..12];
        let tpl = &WORKED_EXAMPLE[12..18];
        let ndu = &WORKED_EXAMPLE[18..];
        let side = SideInfo::default();
        let cat = |parts: &[&[u8]]| parts.concat();
        // NDU first
        let e = parse_stream(ndu, &side).unwrap_err();
        assert!(matches!(e, Error::UnitOrder { index: 0, .. }), "{e:?}");
        // STR, NDU without MPS
        let s = cat(&[&WORKED_EXAMPLE[..4], ndu]);
        let e = parse_stream(&s, &side).unwrap_err();
        assert!(
            matches!(
                e,
                Error::UnitOrder {
                    index: 1,
                    nnr_unit_type: NnrUnitType::Ndu,
                    ..
                }
            ),
            "{e:?}"
        );
        // a second MPS
        let s = cat(&[str_mps, &WORKED_EXAMPLE[4..12]]);
        let e = parse_stream(&s, &side).unwrap_err();
        assert!(matches!(e, Error::UnitOrder { index: 2, .. }), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Malformed);
        // TPL before the MPS
        let s = cat(&[&WORKED_EXAMPLE[..4], tpl, &WORKED_EXAMPLE[4..12]]);
        assert!(parse_stream(&s, &side).is_err());
        // a second STR
        let s = cat(&[str_mps, &WORKED_EXAMPLE[..4]]);
        assert!(parse_stream(&s, &side).is_err());
        // NDU before TPL is fine
        let s = cat(&[str_mps, ndu, tpl]);
        assert_eq!(parse_stream(&s, &side).unwrap().len(), 4);
        // AGG is not supported
        let s = cat(&[str_mps, &[0x00, 0x03, 0x1a]]);
        let e = parse_stream(&s, &side).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn unit_reader_validates_sizes() {
        let mut r = UnitReader::new(&WORKED_EXAMPLE[..63]);
        for _ in 0..3 {
            assert!(r.next().unwrap().is_some());
        }
        assert_eq!(
            r.next(),
            Err(Error::UnitTruncated {
                index: 3,
                byte_offset: 18,
                declared: 46,
                available: 45
            })
        );
        assert_eq!(r.next(), Ok(None));
        let mut r = UnitReader::new(&[0x00, 0x02, 0x02]);
        assert!(matches!(
            r.next(),
            Err(Error::InvalidUnitSize {
                nnr_unit_size: 2,
                ..
            })
        ));
        let mut r = UnitReader::new(&[0x80, 0x00, 0x00]);
        assert!(matches!(
            r.next(),
            Err(Error::UnitTruncated { declared: 4, .. })
        ));
        assert_eq!(UnitReader::new(&[]).next(), Ok(None));
        // a size field shorter than the content parsed from it
        let mut s = WORKED_EXAMPLE[..12].to_vec();
        s[5] = 0x09;
        s.push(0);
        let e = parse_stream(&s, &SideInfo::default()).unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { .. }), "{e:?}");
    }

    #[test]
    fn side_information_for_missing_dimensions() {
        // the worked example's NDU rewritten with tensor_dimensions_flag = 0
        let units = parse_stream(&WORKED_EXAMPLE, &SideInfo::default()).unwrap();
        let NnrUnit::Ndu { header, .. } = &units[3].unit else {
            unreachable!()
        };
        let h = NduHeader {
            tensor_dimensions_flag: Some(false),
            ..header.clone()
        };
        let ctx = ParseContext::profile1(false);
        let unit = NnrUnit::Ndu {
            header: h.clone(),
            payload: Cow::Borrowed(&[1, 2, 3]),
        };
        let bytes = encode_unit(&unit, &ctx).unwrap();
        // 20 bits of dimensions fewer: the NDU header shrinks from 11 to 8 bytes
        assert_eq!(bytes.len(), 2 + 1 + 8 + 3);
        let raw = RawUnit {
            index: 3,
            ..UnitReader::new(&bytes).next().unwrap().unwrap()
        };
        let e = parse_unit(raw, &mut ctx.clone(), &SideInfo::default()).unwrap_err();
        assert_eq!(e, Error::MissingSideInformation { name: "0".into() });
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let side = SideInfo::new().with_tensor_dimensions("0", vec![4, 4]);
        let parsed = parse_unit(raw, &mut ctx.clone(), &side).unwrap();
        assert_eq!(parsed.unit, unit);
        let json = parsed.to_hls_json();
        let keys: Vec<&str> = json.keys().map(String::as_str).collect();
        let pos = |k| keys.iter().position(|x| *x == k).unwrap();
        assert!(pos("cabac_unary_length_minus1") < pos("count_tensor_dimensions"));
        assert_eq!(json["tensor_dimensions_flag"], 0);
        // one dimension from the side information: no scan_order in the header
        let side = SideInfo::new().with_tensor_dimensions("0", vec![16]);
        let e = parse_unit(raw, &mut ctx.clone(), &side);
        assert!(e.is_ok());
    }
}

//! A whole NNR unit as a value, and its serialisation with the size field.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::units::{
    LayerParameterSet, ModelParameterSet, NduHeader, NnrUnitHeader, NnrUnitSize, NnrUnitType,
    PayloadType, QuantizationUnit, StartUnit, TopologyUnit,
};
use crate::{BitWriter, ParseContext};

/// The content of one NNR unit after its common header: the type-specific header and payload.
#[derive(Debug, Clone, PartialEq)]
// One value per unit, never stored in bulk: boxing the NDU header would only complicate use.
#[allow(clippy::large_enum_variant)]
pub enum NnrUnit<'a> {
    /// `NNR_STR`.
    Str(StartUnit),
    /// `NNR_MPS`.
    Mps(ModelParameterSet),
    /// `NNR_LPS`.
    Lps(LayerParameterSet),
    /// `NNR_TPL`.
    Tpl(TopologyUnit),
    /// `NNR_NDU`: header and the opaque payload that follows it up to the end of the unit
    /// (the CABAC segment, or raw float32 data for `NNR_PT_RAW_FLOAT`).
    Ndu {
        /// The compressed data unit header.
        header: NduHeader,
        /// The bytes after the header's `byte_alignment()`.
        payload: Cow<'a, [u8]>,
    },
    /// `NNR_QNT`.
    Qnt(QuantizationUnit),
    /// `NNR_AGG` (not implemented by the reference: neither readable nor writable here).
    Agg,
}

impl NnrUnit<'_> {
    /// The `nnr_unit_type` of this unit.
    pub fn nnr_unit_type(&self) -> NnrUnitType {
        match self {
            NnrUnit::Str(_) => NnrUnitType::Str,
            NnrUnit::Mps(_) => NnrUnitType::Mps,
            NnrUnit::Lps(_) => NnrUnitType::Lps,
            NnrUnit::Tpl(_) => NnrUnitType::Tpl,
            NnrUnit::Ndu { .. } => NnrUnitType::Ndu,
            NnrUnit::Qnt(_) => NnrUnitType::Qnt,
            NnrUnit::Agg => NnrUnitType::Agg,
        }
    }

    /// A copy that owns its payload.
    pub fn into_owned(self) -> NnrUnit<'static> {
        match self {
            NnrUnit::Str(s) => NnrUnit::Str(s),
            NnrUnit::Mps(m) => NnrUnit::Mps(m),
            NnrUnit::Lps(l) => NnrUnit::Lps(l),
            NnrUnit::Tpl(t) => NnrUnit::Tpl(t),
            NnrUnit::Ndu { header, payload } => NnrUnit::Ndu {
                header,
                payload: Cow::Owned(payload.into_owned()),
            },
            NnrUnit::Qnt(q) => NnrUnit::Qnt(q),
            NnrUnit::Agg => NnrUnit::Agg,
        }
    }
}

/// Byte length of a `NNR_PT_RAW_FLOAT` payload: 4 bytes per element.
pub(crate) fn raw_float_len(dims: &[u64]) -> Option<u64> {
    dims.iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))?
        .checked_mul(4)
}

/// Serialises a unit with the header the reference writes (independently decodable, no
/// partial data counter), including the size field chosen by the reference's rule (see
/// [`NnrUnitSize::for_body_len`]).
pub fn encode_unit(unit: &NnrUnit<'_>, ctx: &ParseContext) -> Result<Vec<u8>> {
    encode_unit_with_header(&NnrUnitHeader::new(unit.nnr_unit_type()), unit, ctx)
}

/// Serialises a unit with an explicit common header (e.g. one taken from a parsed unit).
pub fn encode_unit_with_header(
    header: &NnrUnitHeader,
    unit: &NnrUnit<'_>,
    ctx: &ParseContext,
) -> Result<Vec<u8>> {
    if header.nnr_unit_type != unit.nnr_unit_type() {
        return Err(Error::InvalidArgument {
            element: "nnr_unit_type",
            reason: "the header's type differs from the unit's",
        });
    }
    let mut w = BitWriter::with_capacity(64);
    header.write(&mut w)?;
    let payload: &[u8] = match unit {
        NnrUnit::Str(s) => {
            s.write(&mut w, ctx)?;
            &[]
        }
        NnrUnit::Mps(m) => {
            m.write(&mut w, ctx)?;
            &[]
        }
        NnrUnit::Lps(l) => {
            l.write(&mut w, ctx)?;
            &[]
        }
        NnrUnit::Tpl(t) => {
            t.write(&mut w, ctx)?;
            &[]
        }
        NnrUnit::Qnt(q) => {
            q.write(&mut w, ctx)?;
            &[]
        }
        NnrUnit::Ndu { header, payload } => {
            header.write(&mut w, ctx)?;
            if header.nnr_compressed_data_unit_payload_type == PayloadType::RawFloat
                && raw_float_len(&header.tensor_dimensions) != Some(payload.len() as u64)
            {
                return Err(Error::InvalidArgument {
                    element: "raw_float32_parameter",
                    reason: "payload length must be 4 * prod(tensor_dimensions)",
                });
            }
            payload
        }
        NnrUnit::Agg => {
            return Err(Error::Unsupported {
                what: "nnr_aggregate_unit_header (NNR_AGG)",
                bit_offset: 0,
            })
        }
    };
    debug_assert!(w.is_byte_aligned(), "every unit header ends byte-aligned");
    let body_len = w.as_bytes().len() + payload.len();
    let size = NnrUnitSize::for_body_len(body_len)?;
    let mut sw = BitWriter::with_capacity(4);
    size.write(&mut sw)?;
    let mut out = Vec::with_capacity(size.field_len() + body_len);
    out.extend_from_slice(sw.as_bytes());
    out.extend_from_slice(w.as_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::testgen::{self, Rng};
    use crate::{parse_unit, BitReader, SideInfo, UnitReader};
    use proptest::prelude::*;

    /// Writes with `write`, reads back with `read`, and checks equality and full consumption.
    macro_rules! round_trip {
        ($value:expr, $ty:ty, $ctx:expr) => {{
            let v = $value;
            let mut w = BitWriter::new();
            v.write(&mut w, $ctx).expect("write");
            let bits = w.bit_len();
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            let back = <$ty>::read(&mut r, $ctx).expect("read");
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(r.bit_offset(), bits);
        }};
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn parameter_sets_and_small_units_round_trip(seed in any::<u64>()) {
            let mut rng = Rng::new(seed);
            let ctx = testgen::context(&mut rng);
            round_trip!(StartUnit { general_profile_idc: rng.below(256) as u8 }, StartUnit, &ctx);
            round_trip!(testgen::mps(&mut rng, &ctx), ModelParameterSet, &ctx);
            round_trip!(testgen::lps(&mut rng), LayerParameterSet, &ctx);
            round_trip!(testgen::tpl(&mut rng), TopologyUnit, &ctx);
            round_trip!(testgen::qnt(&mut rng), QuantizationUnit, &ctx);
        }

        #[test]
        fn ndu_headers_round_trip(seed in any::<u64>()) {
            let mut rng = Rng::new(seed);
            let ctx = testgen::context(&mut rng);
            let (h, side) = testgen::ndu(&mut rng, &ctx);
            let mut w = BitWriter::new();
            h.write(&mut w, &ctx).expect("write");
            let bits = w.bit_len();
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            let back = NduHeader::read(&mut r, &ctx, &side).expect("read");
            prop_assert_eq!(&back, &h);
            prop_assert_eq!(r.bit_offset(), bits);
            // without the side information the dimensions are missing
            if h.tensor_dimensions_flag != Some(true) {
                let e = NduHeader::read(&mut BitReader::new(&bytes), &ctx, &SideInfo::default());
                let missing = matches!(e, Err(Error::MissingSideInformation { .. }));
                prop_assert!(missing, "{:?}", e);
            }
        }

        #[test]
        fn whole_units_round_trip(seed in any::<u64>(), big in any::<bool>()) {
            let mut rng = Rng::new(seed);
            let mut ctx = testgen::context(&mut rng);
            let (h, side) = testgen::ndu(&mut rng, &ctx);
            let len = match h.nnr_compressed_data_unit_payload_type {
                PayloadType::RawFloat => raw_float_len(&h.tensor_dimensions).unwrap_or(0) as usize,
                _ if big => 40_000,
                _ => rng.below(40) as usize,
            };
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let unit = NnrUnit::Ndu { header: h, payload: Cow::Borrowed(&payload) };
            let bytes = encode_unit(&unit, &ctx).expect("encode");
            let mut reader = UnitReader::new(&bytes);
            let raw = reader.next().expect("split").expect("one unit");
            prop_assert_eq!(raw.nnr_unit_size_flag, bytes.len() > 32767);
            // pretend STR and MPS preceded it
            let raw = crate::RawUnit { index: 2, ..raw };
            let parsed = parse_unit(raw, &mut ctx, &side).expect("parse");
            prop_assert_eq!(&parsed.unit, &unit);
            prop_assert_eq!(parsed.payload, &payload[..]);
            prop_assert!(reader.next().expect("end").is_none());
        }
    }

    #[test]
    fn encode_rejects_inconsistent_units() {
        let ctx = ParseContext::profile1(false);
        let mismatch = encode_unit_with_header(
            &NnrUnitHeader::new(NnrUnitType::Mps),
            &NnrUnit::Str(StartUnit::default()),
            &ctx,
        );
        assert!(matches!(mismatch, Err(Error::InvalidArgument { .. })));
        assert!(matches!(
            encode_unit(&NnrUnit::Agg, &ctx),
            Err(Error::Unsupported { .. })
        ));
        let raw = NnrUnit::Ndu {
            header: NduHeader {
                nnr_compressed_data_unit_payload_type: PayloadType::RawFloat,
                topology_elem_id: Some("x".into()),
                node_id_present_flag: Some(false),
                input_parameters_present_flag: true,
                tensor_dimensions_flag: Some(true),
                cabac_unary_length_flag: Some(false),
                cabac_unary_length_minus1: 9,
                tensor_dimensions: vec![3],
                ..NduHeader::default()
            },
            payload: Cow::Owned(vec![0; 11]),
        };
        assert!(encode_unit(&raw, &ctx).is_err());
        let NnrUnit::Ndu { header, .. } = raw else {
            unreachable!()
        };
        let ok = NnrUnit::Ndu {
            header,
            payload: Cow::Owned(vec![0; 12]),
        };
        assert_eq!(encode_unit(&ok, &ctx).unwrap().len(), 2 + 1 + 6 + 12);
    }
}

//! `NNR_TPL`: the topology unit (hls.md §2.8).

use crate::error::{Error, Result};
use crate::units::consts::{NNR_TPL_PRUN, NNR_TPL_REFLIST};
use crate::units::ndu::{read_topology_elements_ids_list, write_topology_elements_ids_list};
use crate::units::{check_presence, write_st};
use crate::{BitReader, BitWriter, ParseContext};

// nnr_topology_unit_header( ) {
//   topology_storage_format                            u(8)
//   topology_compression_format                        u(8)
// }
// nnr_topology_unit_payload( ) {
//   if( topology_storage_format == NNR_TPL_PRUN )
//     nnr_pruning_topology_container( )                (not implemented by the reference)
//   else if( topology_storage_format == NNR_TPL_REFLIST )
//     topology_elements_ids_list( 0 )
//   else
//     topology_data                                    st(v)   (reference: always "")
// }
/// Type-specific header and payload of a topology unit. The network graph itself is never
/// transmitted by the reference: `topology_data` is the empty string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopologyUnit {
    /// 0 UNREC, 3 PYT, 4 TEF, ... (see [`consts`](crate::units::consts)).
    pub topology_storage_format: u8,
    /// 0 RAW, 1 DFL.
    pub topology_compression_format: u8,
    /// Present unless the format is `NNR_TPL_REFLIST`.
    pub topology_data: Option<String>,
    /// Present iff the format is `NNR_TPL_REFLIST` (at least two names;
    /// `count_topology_elements_minus2 = len − 2`).
    pub topology_elem_id_list: Option<Vec<String>>,
}

impl TopologyUnit {
    /// Reads the type-specific header and payload.
    pub fn read(r: &mut BitReader<'_>, _ctx: &ParseContext) -> Result<Self> {
        let topology_storage_format = r.u8_bits(8, "topology_storage_format")?;
        let topology_compression_format = r.u8_bits(8, "topology_compression_format")?;
        let mut unit = Self {
            topology_storage_format,
            topology_compression_format,
            topology_data: None,
            topology_elem_id_list: None,
        };
        match topology_storage_format {
            NNR_TPL_PRUN => {
                return Err(Error::Unsupported {
                    what: "nnr_pruning_topology_container (NNR_TPL_PRUN)",
                    bit_offset: r.bit_offset(),
                })
            }
            // Reference quirk: the list is always read with names (indexed flag 0).
            NNR_TPL_REFLIST => {
                let (names, _) = read_topology_elements_ids_list(r, false)?;
                unit.topology_elem_id_list = names;
            }
            _ => unit.topology_data = Some(r.st("topology_data")?),
        }
        Ok(unit)
    }

    /// Writes the type-specific header and payload.
    pub fn write(&self, w: &mut BitWriter, _ctx: &ParseContext) -> Result<()> {
        let reflist = self.topology_storage_format == NNR_TPL_REFLIST;
        if self.topology_storage_format == NNR_TPL_PRUN {
            return Err(Error::Unsupported {
                what: "nnr_pruning_topology_container (NNR_TPL_PRUN)",
                bit_offset: w.bit_len(),
            });
        }
        check_presence(
            reflist,
            &self.topology_elem_id_list,
            "topology_elem_id_list",
        )?;
        check_presence(!reflist, &self.topology_data, "topology_data")?;
        w.write_u(8, u64::from(self.topology_storage_format));
        w.write_u(8, u64::from(self.topology_compression_format));
        if let Some(names) = &self.topology_elem_id_list {
            write_topology_elements_ids_list(w, Some(names), None)?;
        }
        if let Some(data) = &self.topology_data {
            write_st(w, data, "topology_data")?;
        }
        Ok(())
    }
}

impl TopologyUnit {
    pub(crate) fn append_json(&self, m: &mut serde_json::Map<String, serde_json::Value>) {
        use serde_json::Value;
        m.insert(
            "topology_storage_format".into(),
            self.topology_storage_format.into(),
        );
        m.insert(
            "topology_compression_format".into(),
            self.topology_compression_format.into(),
        );
        if let Some(names) = &self.topology_elem_id_list {
            m.insert(
                "count_topology_elements_minus2".into(),
                (names.len() as u64).saturating_sub(2).into(),
            );
            m.insert(
                "topology_elem_id_list".into(),
                Value::Array(names.iter().map(|s| Value::from(s.as_str())).collect()),
            );
        }
        if let Some(d) = &self.topology_data {
            m.insert("topology_data".into(), d.as_str().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn formats() {
        let ctx = ParseContext::default();
        // reference TPL payloads: 00 00 00 (UNREC), 03 00 00 (PYT)
        for fmt in [0u8, 3, 4] {
            let t = TopologyUnit::read(&mut BitReader::new(&[fmt, 0, 0]), &ctx).unwrap();
            assert_eq!(t.topology_storage_format, fmt);
            assert_eq!(t.topology_data.as_deref(), Some(""));
        }
        let e = TopologyUnit::read(&mut BitReader::new(&[NNR_TPL_PRUN, 0, 0]), &ctx).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        // REFLIST: ue(7) count 0, byte_alignment (a whole 0x80 byte), then the names
        let data = [NNR_TPL_REFLIST, 0, 0x80, 0x80, b'a', 0, b'b', 0];
        let t = TopologyUnit::read(&mut BitReader::new(&data), &ctx).unwrap();
        assert_eq!(
            t.topology_elem_id_list,
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        let mut w = BitWriter::new();
        t.write(&mut w, &ctx).unwrap();
        assert_eq!(w.as_bytes(), &data);
        let bad = TopologyUnit {
            topology_elem_id_list: Some(vec!["a".into()]),
            ..t
        };
        assert!(bad.write(&mut BitWriter::new(), &ctx).is_err());
    }
}

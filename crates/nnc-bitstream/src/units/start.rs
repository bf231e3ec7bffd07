//! `NNR_STR`: the start unit (hls.md §2.5).

use crate::error::Result;
use crate::{BitReader, BitWriter, ParseContext};

// nnr_start_unit_header( ) {
//   general_profile_idc                                u(8)
// }
// nnr_start_unit_payload( ) { }                        (empty)
/// Type-specific header of the start unit (its payload is empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartUnit {
    /// 1 selects the second-edition (incremental) syntax; the reference API always writes 1.
    pub general_profile_idc: u8,
}

impl StartUnit {
    /// Reads the type-specific header and payload.
    pub fn read(r: &mut BitReader<'_>, _ctx: &ParseContext) -> Result<Self> {
        Ok(Self {
            general_profile_idc: r.u8_bits(8, "general_profile_idc")?,
        })
    }

    /// Writes the type-specific header and payload.
    pub fn write(&self, w: &mut BitWriter, _ctx: &ParseContext) -> Result<()> {
        w.write_u(8, u64::from(self.general_profile_idc));
        Ok(())
    }
}

impl StartUnit {
    pub(crate) fn append_json(&self, m: &mut serde_json::Map<String, serde_json::Value>) {
        m.insert(
            "general_profile_idc".into(),
            self.general_profile_idc.into(),
        );
    }
}

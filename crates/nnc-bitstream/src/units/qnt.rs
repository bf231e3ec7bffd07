//! `NNR_QNT`: the quantisation unit (hls.md §2.11). Never written by the reference, and its
//! decoder refuses it; the syntax is parsed here anyway.

use crate::error::Result;
use crate::units::check_st;
use crate::{BitReader, BitWriter, ParseContext};

// nnr_quantization_unit_header( ) {
//   quantization_storage_format                        u(8)
//   quantization_compression_format                    u(8)
// }
// nnr_quantization_unit_payload( ) {
//   quantization_data                                  st(v)
// }
/// Type-specific header and payload of a quantisation unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuantizationUnit {
    /// Storage format of the quantisation data.
    pub quantization_storage_format: u8,
    /// Compression format of the quantisation data.
    pub quantization_compression_format: u8,
    /// The quantisation data (a string in the reference).
    pub quantization_data: String,
}

impl QuantizationUnit {
    /// Reads the type-specific header and payload.
    pub fn read(r: &mut BitReader<'_>, _ctx: &ParseContext) -> Result<Self> {
        Ok(Self {
            quantization_storage_format: r.u8_bits(8, "quantization_storage_format")?,
            quantization_compression_format: r.u8_bits(8, "quantization_compression_format")?,
            quantization_data: r.st("quantization_data")?,
        })
    }

    /// Writes the type-specific header and payload.
    pub fn write(&self, w: &mut BitWriter, _ctx: &ParseContext) -> Result<()> {
        check_st(&self.quantization_data, "quantization_data")?;
        w.write_u(8, u64::from(self.quantization_storage_format));
        w.write_u(8, u64::from(self.quantization_compression_format));
        w.write_st(&self.quantization_data);
        Ok(())
    }
}

impl QuantizationUnit {
    pub(crate) fn append_json(&self, m: &mut serde_json::Map<String, serde_json::Value>) {
        m.insert(
            "quantization_storage_format".into(),
            self.quantization_storage_format.into(),
        );
        m.insert(
            "quantization_compression_format".into(),
            self.quantization_compression_format.into(),
        );
        m.insert(
            "quantization_data".into(),
            self.quantization_data.as_str().into(),
        );
    }
}

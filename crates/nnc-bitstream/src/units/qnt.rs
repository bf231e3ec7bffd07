//! `NNR_QNT`: the quantisation unit (hls.md §2.11). Never written by the reference, and its
//! decoder refuses it; the syntax is parsed here anyway.

use crate::error::Result;
use crate::units::write_st;
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
        w.write_u(8, u64::from(self.quantization_storage_format));
        w.write_u(8, u64::from(self.quantization_compression_format));
        write_st(w, &self.quantization_data, "quantization_data")?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn strings_need_alignment_and_no_nul() {
        let ctx = ParseContext::default();
        let q = QuantizationUnit {
            quantization_storage_format: 1,
            quantization_compression_format: 2,
            quantization_data: "qd".into(),
        };
        let mut w = BitWriter::new();
        q.write(&mut w, &ctx).unwrap();
        assert_eq!(w.as_bytes(), &[1, 2, b'q', b'd', 0]);
        let mut r = BitReader::new(w.as_bytes());
        assert_eq!(QuantizationUnit::read(&mut r, &ctx).unwrap(), q);
        let mut w = BitWriter::new();
        w.write_flag(true);
        assert!(matches!(
            q.write(&mut w, &ctx),
            Err(Error::NotByteAligned { .. })
        ));
        let bad = QuantizationUnit {
            quantization_data: "a\0b".into(),
            ..q
        };
        assert!(matches!(
            bad.write(&mut BitWriter::new(), &ctx),
            Err(Error::InvalidArgument { .. })
        ));
    }
}

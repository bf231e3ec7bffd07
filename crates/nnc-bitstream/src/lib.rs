//! # nnc-bitstream
//!
//! Bit-level descriptors and the typed high-level syntax of every NNR unit of
//! ISO/IEC 15938-17 (NNC), read **and** written bit-exactly as NNCodec 2.1.3 does.
//!
//! What this crate knows: the descriptors `u(n)`, `i(n)`, `ue(k)`, `ie(k)`, `flt(32)`, `st`,
//! `byte_alignment()` ([`BitReader`], [`BitWriter`]); the unit size and header
//! ([`NnrUnitSize`], [`NnrUnitHeader`]); the STR, MPS, LPS, TPL, QNT units and the NDU header
//! ([`StartUnit`], [`ModelParameterSet`], [`LayerParameterSet`], [`TopologyUnit`],
//! [`QuantizationUnit`], [`NduHeader`]); splitting a bitstream into units ([`UnitReader`]),
//! parsing them in context ([`parse_unit`], [`ParseContext`], [`SideInfo`]), serialising them
//! ([`encode_unit`]) and the reference decoder's `hls.json` view
//! ([`ParsedUnit::to_hls_json`]).
//!
//! What it must not know: CABAC (an NDU's payload after its header is an opaque byte slice),
//! what quantised values or floats mean, files, tensors.
//!
//! Reference quirks reproduced are documented on the items concerned with a line starting
//! "Reference quirk:".
//!
//! ```
//! use nnc_bitstream::{parse_unit, NnrUnit, ParseContext, SideInfo, UnitReader, encode_unit_with_header};
//!
//! // STR, MPS and TPL of the worked example of hls.md §7, then an NDU header with a 2-byte payload.
//! let stream = [
//!     0x00, 0x04, 0x02, 0x01, 0x00, 0x08, 0x06, 0x81, 0x00, 0x40, 0x00, 0x80,
//!     0x00, 0x06, 0x0e, 0x00, 0x00, 0x00,
//!     0x00, 0x10, 0x16, 0x09, 0x30, 0x00, 0xd0, 0x41, 0xc1, 0x21, 0x21, 0x02, 0xa0, 0x80,
//!     0xe0, 0x17,
//! ];
//! let mut units = UnitReader::new(&stream);
//! let mut ctx = ParseContext::default();
//! let side = SideInfo::default();
//! while let Some(raw) = units.next()? {
//!     let parsed = parse_unit(raw, &mut ctx, &side)?;
//!     if let NnrUnit::Ndu { header, .. } = &parsed.unit {
//!         assert_eq!(header.topology_elem_id.as_deref(), Some("0"));
//!         assert_eq!(header.tensor_dimensions, [4, 4]);
//!         assert_eq!(parsed.payload, &[0xe0, 0x17]);
//!     }
//!     // every unit re-encodes to its original bytes
//!     assert_eq!(encode_unit_with_header(&parsed.header, &parsed.unit, &parsed.context)?, raw.bytes);
//! }
//! assert_eq!(ctx.general_profile_idc, 1);
//! # Ok::<(), nnc_bitstream::Error>(())
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod context;
mod error;
mod json;
mod reader;
mod stream;
mod unit;
pub mod units;
mod writer;

pub use context::{ParseContext, SideInfo};
pub use error::{Error, ErrorKind, Result};
pub use reader::BitReader;
pub use stream::{parse_unit, ParsedUnit, RawUnit, UnitReader};
pub use unit::{encode_unit, encode_unit_with_header, NnrUnit};
pub use units::{
    Codebook, DecomposedTensorType, LayerParameterSet, ModelParameterSet, NduHeader, NnrUnitHeader,
    NnrUnitSize, NnrUnitType, PayloadType, QuantizationUnit, StartUnit, TopologyUnit,
};
pub use writer::{ie_bits, ue_bits, BitWriter};

//! `nnr_unit_size()` and `nnr_unit_header()` (hls.md §2.3, §2.4).

use crate::error::{Error, Result};
use crate::units::check_presence;
use crate::{BitReader, BitWriter};

/// `nnr_unit_type` (hls.md table 2.4a).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NnrUnitType {
    /// `NNR_STR`: start unit.
    Str = 0,
    /// `NNR_MPS`: model parameter set.
    Mps = 1,
    /// `NNR_LPS`: layer parameter set.
    Lps = 2,
    /// `NNR_TPL`: topology unit.
    Tpl = 3,
    /// `NNR_QNT`: quantisation unit.
    Qnt = 4,
    /// `NNR_NDU`: compressed data unit.
    Ndu = 5,
    /// `NNR_AGG`: aggregate unit.
    Agg = 6,
}

impl TryFrom<u8> for NnrUnitType {
    type Error = Error;

    fn try_from(value: u8) -> Result<Self> {
        Ok(match value {
            0 => Self::Str,
            1 => Self::Mps,
            2 => Self::Lps,
            3 => Self::Tpl,
            4 => Self::Qnt,
            5 => Self::Ndu,
            6 => Self::Agg,
            _ => return Err(Error::UnknownUnitType { value }),
        })
    }
}

impl From<NnrUnitType> for u8 {
    fn from(t: NnrUnitType) -> u8 {
        t as u8
    }
}

// nnr_unit_size( ) {
//   nnr_unit_size_flag                                 u(1)
//   nnr_unit_size                                      u(15 + nnr_unit_size_flag*16)
// }
/// `nnr_unit_size()`: the total byte count of the unit, **including** these 2 or 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NnrUnitSize {
    /// 0: 15-bit size (2 bytes), 1: 31-bit size (4 bytes).
    pub nnr_unit_size_flag: bool,
    /// Total size of the unit in bytes.
    pub nnr_unit_size: u32,
}

impl NnrUnitSize {
    /// Largest unit the long form can describe.
    pub const MAX_UNIT_SIZE: u64 = (1 << 31) - 1;

    /// Reads the size field.
    pub fn read(r: &mut BitReader<'_>) -> Result<Self> {
        let nnr_unit_size_flag = r.flag("nnr_unit_size_flag")?;
        let bits = if nnr_unit_size_flag { 31 } else { 15 };
        let nnr_unit_size = r.u(bits, "nnr_unit_size")? as u32;
        Ok(Self {
            nnr_unit_size_flag,
            nnr_unit_size,
        })
    }

    /// Writes the size field.
    pub fn write(&self, w: &mut BitWriter) -> Result<()> {
        let bits = if self.nnr_unit_size_flag { 31 } else { 15 };
        crate::units::check_bits(u64::from(self.nnr_unit_size), bits, "nnr_unit_size")?;
        w.write_flag(self.nnr_unit_size_flag);
        w.write_u(bits, u64::from(self.nnr_unit_size));
        Ok(())
    }

    /// Length of the size field itself in bytes (2 or 4).
    pub fn field_len(&self) -> usize {
        if self.nnr_unit_size_flag {
            4
        } else {
            2
        }
    }

    /// The size field the reference writes for a unit whose content after the size field is
    /// `body_len` bytes long.
    ///
    /// Reference quirk: the reference serialises with a 4-byte placeholder and switches to the
    /// 2-byte form iff `len − 2 < 32768`, i.e. iff the whole unit with a 2-byte field is at most
    /// 32767 bytes.
    pub fn for_body_len(body_len: usize) -> Result<Self> {
        let body = body_len as u64;
        if body + 2 < 32768 {
            return Ok(Self {
                nnr_unit_size_flag: false,
                nnr_unit_size: (body + 2) as u32,
            });
        }
        let total = body + 4;
        if total > Self::MAX_UNIT_SIZE {
            return Err(Error::ValueOutOfRange {
                element: "nnr_unit_size",
                value: i128::from(total),
            });
        }
        Ok(Self {
            nnr_unit_size_flag: true,
            nnr_unit_size: total as u32,
        })
    }
}

// nnr_unit_header( ) {
//   nnr_unit_type                                      u(6)
//   independently_decodable_flag                       u(1)
//   partial_data_counter_present_flag                  u(1)
//   if( partial_data_counter_present_flag )
//     partial_data_counter                             u(8)
//   <type-specific unit header>   (in the unit types' own modules)
// }
/// The common part of `nnr_unit_header()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NnrUnitHeader {
    /// Unit type.
    pub nnr_unit_type: NnrUnitType,
    /// The reference always writes 1 and ignores it when decoding.
    pub independently_decodable_flag: bool,
    /// The reference always writes 0.
    pub partial_data_counter_present_flag: bool,
    /// Present iff `partial_data_counter_present_flag`.
    pub partial_data_counter: Option<u8>,
}

impl NnrUnitHeader {
    /// The header the reference writes: independently decodable, no partial data counter.
    pub fn new(nnr_unit_type: NnrUnitType) -> Self {
        Self {
            nnr_unit_type,
            independently_decodable_flag: true,
            partial_data_counter_present_flag: false,
            partial_data_counter: None,
        }
    }

    /// Reads the common unit header.
    pub fn read(r: &mut BitReader<'_>) -> Result<Self> {
        let raw = r.u8_bits(6, "nnr_unit_type")?;
        let nnr_unit_type = NnrUnitType::try_from(raw)?;
        let independently_decodable_flag = r.flag("independently_decodable_flag")?;
        let partial_data_counter_present_flag = r.flag("partial_data_counter_present_flag")?;
        let partial_data_counter = if partial_data_counter_present_flag {
            Some(r.u8_bits(8, "partial_data_counter")?)
        } else {
            None
        };
        Ok(Self {
            nnr_unit_type,
            independently_decodable_flag,
            partial_data_counter_present_flag,
            partial_data_counter,
        })
    }

    /// Writes the common unit header.
    pub fn write(&self, w: &mut BitWriter) -> Result<()> {
        check_presence(
            self.partial_data_counter_present_flag,
            &self.partial_data_counter,
            "partial_data_counter",
        )?;
        w.write_u(6, u64::from(u8::from(self.nnr_unit_type)));
        w.write_flag(self.independently_decodable_flag);
        w.write_flag(self.partial_data_counter_present_flag);
        if let Some(c) = self.partial_data_counter {
            w.write_u(8, u64::from(c));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_type_round_trip_and_error() {
        for v in 0..=6u8 {
            assert_eq!(u8::from(NnrUnitType::try_from(v).unwrap()), v);
        }
        assert_eq!(
            NnrUnitType::try_from(7),
            Err(Error::UnknownUnitType { value: 7 })
        );
    }

    #[test]
    fn header_bytes_of_table_2_4a() {
        let expect = [0x02, 0x06, 0x0a, 0x0e, 0x12, 0x16, 0x1a];
        for (v, byte) in expect.into_iter().enumerate() {
            let h = NnrUnitHeader::new(NnrUnitType::try_from(v as u8).unwrap());
            let mut w = BitWriter::new();
            h.write(&mut w).unwrap();
            assert_eq!(w.as_bytes(), &[byte]);
            assert_eq!(
                NnrUnitHeader::read(&mut BitReader::new(&[byte])).unwrap(),
                h
            );
        }
        let h = NnrUnitHeader {
            partial_data_counter_present_flag: true,
            partial_data_counter: Some(0xa5),
            ..NnrUnitHeader::new(NnrUnitType::Ndu)
        };
        let mut w = BitWriter::new();
        h.write(&mut w).unwrap();
        assert_eq!(w.as_bytes(), &[0x17, 0xa5]);
        assert_eq!(
            NnrUnitHeader::read(&mut BitReader::new(&[0x17, 0xa5])).unwrap(),
            h
        );
        let bad = NnrUnitHeader {
            partial_data_counter: Some(1),
            ..NnrUnitHeader::new(NnrUnitType::Ndu)
        };
        assert!(bad.write(&mut BitWriter::new()).is_err());
        assert!(matches!(
            NnrUnitHeader::read(&mut BitReader::new(&[0xfc])),
            Err(Error::UnknownUnitType { value: 63 })
        ));
    }

    #[test]
    fn size_rule() {
        assert_eq!(
            NnrUnitSize::for_body_len(2).unwrap(),
            NnrUnitSize {
                nnr_unit_size_flag: false,
                nnr_unit_size: 4
            }
        );
        let s = NnrUnitSize::for_body_len(32765).unwrap();
        assert_eq!((s.nnr_unit_size_flag, s.nnr_unit_size), (false, 32767));
        let s = NnrUnitSize::for_body_len(32766).unwrap();
        assert_eq!((s.nnr_unit_size_flag, s.nnr_unit_size), (true, 32770));
        // hls.md §2.3: a 126 710-byte NDU is written as 80 01 ee f6
        let s = NnrUnitSize::for_body_len(126_706).unwrap();
        let mut w = BitWriter::new();
        s.write(&mut w).unwrap();
        assert_eq!(w.as_bytes(), &[0x80, 0x01, 0xee, 0xf6]);
        assert_eq!(
            NnrUnitSize::read(&mut BitReader::new(w.as_bytes())).unwrap(),
            s
        );
        assert!(NnrUnitSize::for_body_len(1 << 31).is_err());
    }
}

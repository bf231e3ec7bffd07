//! Typed errors of the crate.

use crate::units::NnrUnitType;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Coarse classification of an [`Error`], for callers that only need to know what went wrong in
/// broad terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The bitstream violates the syntax (truncated, impossible value, wrong unit order, ...).
    Malformed,
    /// The bitstream uses a feature that the reference does not implement either.
    Unsupported,
    /// A value exceeds what this implementation (or the reference's integer types) can hold.
    LimitExceeded,
    /// The caller passed something inconsistent (writer input, missing side information, ...).
    InvalidArgument,
}

/// Everything that can go wrong while reading or writing NNR syntax.
///
/// Bit offsets count from the start of the buffer the [`BitReader`](crate::BitReader) was
/// created on; for units parsed by [`parse_unit`](crate::parse_unit) that is the first bit of
/// the NNR unit (its size field).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data ended inside a syntax element.
    #[error("unexpected end of data while reading `{element}` at bit {bit_offset}")]
    UnexpectedEnd {
        /// Syntax element being read.
        element: &'static str,
        /// Position of the first bit of the element.
        bit_offset: u64,
    },
    /// A syntax element has a value the syntax (or the reference decoder) does not allow.
    #[error("invalid value {value} of `{element}` at bit {bit_offset}")]
    InvalidValue {
        /// Syntax element.
        element: &'static str,
        /// The offending value.
        value: i128,
        /// Position of the bit after the element.
        bit_offset: u64,
    },
    /// An Exp-Golomb code whose prefix is too long or whose value does not fit 64 bits.
    #[error("Exp-Golomb code of `{element}` at bit {bit_offset} is too long or overflows 64 bits")]
    ExpGolombOverflow {
        /// Syntax element.
        element: &'static str,
        /// Position of the first bit of the code.
        bit_offset: u64,
    },
    /// A count announces more items than the remaining data can possibly hold.
    #[error("`{element}` at bit {bit_offset}: {count} items cannot fit in the remaining {bits_left} bits")]
    TooManyItems {
        /// Syntax element holding the count.
        element: &'static str,
        /// Announced number of items.
        count: u128,
        /// Bits left in the data.
        bits_left: u64,
        /// Position after the count.
        bit_offset: u64,
    },
    /// A value is outside the range this implementation supports (e.g. a codebook entry outside
    /// the reference's int32 range).
    #[error("`{element}` at bit {bit_offset}: value {value} exceeds the supported range")]
    LimitExceeded {
        /// Syntax element.
        element: &'static str,
        /// The offending value.
        value: i128,
        /// Position after the element.
        bit_offset: u64,
    },
    /// A string (`st`) or a byte-aligned element was accessed at a non byte-aligned position.
    #[error("`{element}` must start byte-aligned, position is bit {bit_offset}")]
    NotByteAligned {
        /// Syntax element.
        element: &'static str,
        /// Current position.
        bit_offset: u64,
    },
    /// No NUL byte terminates a string before the end of the data.
    #[error("string `{element}` at bit {bit_offset} has no terminating NUL byte")]
    UnterminatedString {
        /// Syntax element.
        element: &'static str,
        /// Position of the first byte of the string.
        bit_offset: u64,
    },
    /// A string is not valid UTF-8.
    #[error("string `{element}` at bit {bit_offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Syntax element.
        element: &'static str,
        /// Position of the first byte of the string.
        bit_offset: u64,
    },
    /// `nnr_unit_type` outside 0..=6.
    #[error("unknown nnr_unit_type {value}")]
    UnknownUnitType {
        /// The raw 6-bit value.
        value: u8,
    },
    /// A feature the reference does not implement either.
    #[error("unsupported: {what} (at bit {bit_offset})")]
    Unsupported {
        /// What is not supported.
        what: &'static str,
        /// Position where it was met.
        bit_offset: u64,
    },
    /// An NDU does not carry its tensor dimensions and the side information has none for it.
    #[error(
        "tensor dimensions of `{name}` are neither in the bitstream nor in the side information"
    )]
    MissingSideInformation {
        /// Name under which the dimensions were looked up.
        name: String,
    },
    /// A length does not match what the syntax requires.
    #[error("size mismatch for `{element}`: expected {expected}, found {actual}")]
    SizeMismatch {
        /// What was measured.
        element: &'static str,
        /// Required size.
        expected: u64,
        /// Actual size.
        actual: u64,
    },
    /// The size field of an NNR unit claims more bytes than remain in the bitstream.
    #[error("NNR unit {index} at byte {byte_offset} declares {declared} bytes but only {available} remain")]
    UnitTruncated {
        /// Index of the unit in the bitstream.
        index: usize,
        /// Byte offset of the unit in the bitstream.
        byte_offset: usize,
        /// Declared size (or the size field's own length if even that is cut).
        declared: u64,
        /// Bytes remaining from the unit start.
        available: u64,
    },
    /// The size field of an NNR unit is too small to hold the size field and the unit header.
    #[error(
        "NNR unit {index} at byte {byte_offset} has an impossible nnr_unit_size {nnr_unit_size}"
    )]
    InvalidUnitSize {
        /// Index of the unit in the bitstream.
        index: usize,
        /// Byte offset of the unit in the bitstream.
        byte_offset: usize,
        /// The declared size.
        nnr_unit_size: u64,
    },
    /// Units appear in an order the reference decoder rejects.
    #[error("NNR unit {index} ({nnr_unit_type:?}): {reason}")]
    UnitOrder {
        /// Index of the unit in the bitstream.
        index: usize,
        /// Type of the offending unit.
        nnr_unit_type: NnrUnitType,
        /// Which rule is violated.
        reason: &'static str,
    },
    /// The value given to a writer does not fit its syntax element.
    #[error("cannot write `{element}`: value {value} does not fit")]
    ValueOutOfRange {
        /// Syntax element.
        element: &'static str,
        /// The offending value.
        value: i128,
    },
    /// The structure given to a writer is inconsistent (e.g. a flag says present but the field
    /// is `None`).
    #[error("cannot write `{element}`: {reason}")]
    InvalidArgument {
        /// Syntax element.
        element: &'static str,
        /// What is inconsistent.
        reason: &'static str,
    },
}

impl Error {
    /// Whether the message already names the NNR unit and where it starts (unit framing and
    /// order), so a caller adding its own location would say it twice.
    pub fn names_its_unit(&self) -> bool {
        matches!(
            self,
            Error::UnitTruncated { .. } | Error::InvalidUnitSize { .. } | Error::UnitOrder { .. }
        )
    }

    /// Coarse classification of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnexpectedEnd { .. }
            | Error::InvalidValue { .. }
            | Error::TooManyItems { .. }
            | Error::UnterminatedString { .. }
            | Error::InvalidUtf8 { .. }
            | Error::UnknownUnitType { .. }
            | Error::SizeMismatch { .. }
            | Error::UnitTruncated { .. }
            | Error::InvalidUnitSize { .. }
            | Error::UnitOrder { .. } => ErrorKind::Malformed,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::ExpGolombOverflow { .. } | Error::LimitExceeded { .. } => {
                ErrorKind::LimitExceeded
            }
            Error::NotByteAligned { .. }
            | Error::MissingSideInformation { .. }
            | Error::ValueOutOfRange { .. }
            | Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
        }
    }

    /// The bit offset the error refers to, if it has one.
    pub fn bit_offset(&self) -> Option<u64> {
        match self {
            Error::UnexpectedEnd { bit_offset, .. }
            | Error::InvalidValue { bit_offset, .. }
            | Error::ExpGolombOverflow { bit_offset, .. }
            | Error::TooManyItems { bit_offset, .. }
            | Error::LimitExceeded { bit_offset, .. }
            | Error::NotByteAligned { bit_offset, .. }
            | Error::UnterminatedString { bit_offset, .. }
            | Error::InvalidUtf8 { bit_offset, .. }
            | Error::Unsupported { bit_offset, .. } => Some(*bit_offset),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_offsets() {
        let e = Error::UnexpectedEnd {
            element: "dq_flag",
            bit_offset: 12,
        };
        assert_eq!(e.kind(), ErrorKind::Malformed);
        assert_eq!(e.bit_offset(), Some(12));
        assert!(e.to_string().contains("dq_flag"));
        let e = Error::Unsupported {
            what: "NNR_AGG",
            bit_offset: 3,
        };
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = Error::MissingSideInformation { name: "w".into() };
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.bit_offset(), None);
        let e = Error::ExpGolombOverflow {
            element: "ue",
            bit_offset: 0,
        };
        assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    }
}

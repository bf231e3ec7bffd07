//! The crate's error type.

/// Result alias used throughout `nnc-quant`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Coarse classification of an [`Error`], for callers that only need to branch on the category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument is out of its valid range or inconsistent with another argument.
    InvalidArgument,
    /// Data (typically from a bitstream) is inconsistent, e.g. a level outside its codebook.
    InvalidData,
    /// The weights cannot be represented as 32-bit levels at any usable step size.
    Overflow,
}

/// Everything that can go wrong between float weights and integer levels.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The element count implied by the dimensions differs from the data length.
    #[error("dims {dims:?} describe {expected} elements but {actual} were given")]
    ShapeMismatch {
        /// The tensor dimensions as given.
        dims: Vec<usize>,
        /// Product of `dims`.
        expected: usize,
        /// Length of the data slice.
        actual: usize,
    },
    /// The product of the dimensions does not fit in `usize`.
    #[error("the product of dims {dims:?} overflows")]
    ShapeOverflow {
        /// The tensor dimensions as given.
        dims: Vec<usize>,
    },
    /// Two slices that must have the same length do not.
    #[error("length mismatch: expected {expected} elements, got {actual}")]
    LengthMismatch {
        /// Required length.
        expected: usize,
        /// Length actually given.
        actual: usize,
    },
    /// A weight is NaN or infinite; the reference has undefined behaviour for these.
    #[error("weight at flat position {position} is not finite")]
    NonFiniteWeight {
        /// Row-major index of the offending weight.
        position: usize,
    },
    /// `qp_density` outside `0..=7` (the syntax element `qp_density` is `u(3)`).
    #[error("qp_density {0} is outside 0..=7")]
    InvalidQpDensity(u8),
    /// `scan_order` outside `0..=4` for a tensor where block scan applies.
    #[error("scan_order {0} is outside 0..=4")]
    InvalidScanOrder(u8),
    /// The step size of `qp` is zero or not finite as an `f32`.
    #[error("step size of qp {qp} at qp_density {qp_density} is not a positive finite f32")]
    InvalidStepSize {
        /// The quantization parameter.
        qp: i32,
        /// Its qp_density.
        qp_density: u8,
    },
    /// `lambda_scale` is NaN.
    #[error("lambda_scale is NaN")]
    InvalidLambdaScale,
    /// Even the overflow fallback qp leaves levels outside the 32-bit range.
    #[error("levels overflow i32 even at the fallback qp {qp}")]
    QuantizationOverflow {
        /// The fallback qp that was tried last.
        qp: i32,
    },
    /// A level points outside the codebook (hostile or corrupt input).
    #[error(
        "level {level} at position {position} with codebook_zero_offset {codebook_zero_offset} \
         is outside the codebook of {codebook_size} entries"
    )]
    CodebookIndexOutOfRange {
        /// Flat position of the level.
        position: usize,
        /// The level value.
        level: i32,
        /// The zero offset that was added.
        codebook_zero_offset: u32,
        /// Number of codebook entries.
        codebook_size: usize,
    },
    /// Codebook values must be strictly increasing for the `codebook()` syntax.
    #[error("codebook values are not strictly increasing at index {index}")]
    CodebookNotIncreasing {
        /// Index of the first value that is not larger than its predecessor.
        index: usize,
    },
    /// `codebook_zero_offset` does not index the codebook.
    #[error("codebook_zero_offset {codebook_zero_offset} is outside a codebook of {codebook_size} entries")]
    CodebookZeroOffsetOutOfRange {
        /// The offending offset.
        codebook_zero_offset: u32,
        /// Number of codebook entries.
        codebook_size: usize,
    },
    /// A codebook operation was asked for on an empty codebook (empty tensor).
    #[error("the codebook is empty")]
    EmptyCodebook,
    /// The integer bit depth cannot be used (zero, above 63, or 1 for signed data).
    #[error("int_quant_bw {0} cannot be used for this tensor")]
    InvalidBitDepth(u32),
    /// The statistics `opt_qp` needs are not finite (a weight tensor's standard deviation
    /// overflows float32) or cover no weights at all.
    #[error("opt_qp cannot weigh the weight tensors: their standard deviations are not finite or they hold no values")]
    DegenerateOptQp,
    /// The rate model's greater-than flag count (`max_num_no_rem`) is beyond what the coder supports.
    #[error("max_num_no_rem {0} is not a supported greater-than flag count")]
    InvalidMaxNumNoRem(u32),
}

impl Error {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ShapeMismatch { .. }
            | Error::ShapeOverflow { .. }
            | Error::LengthMismatch { .. }
            | Error::NonFiniteWeight { .. }
            | Error::InvalidQpDensity(_)
            | Error::InvalidScanOrder(_)
            | Error::InvalidStepSize { .. }
            | Error::InvalidLambdaScale
            | Error::EmptyCodebook
            | Error::InvalidBitDepth(_)
            | Error::DegenerateOptQp
            | Error::InvalidMaxNumNoRem(_) => ErrorKind::InvalidArgument,
            Error::CodebookIndexOutOfRange { .. }
            | Error::CodebookNotIncreasing { .. }
            | Error::CodebookZeroOffsetOutOfRange { .. } => ErrorKind::InvalidData,
            Error::QuantizationOverflow { .. } => ErrorKind::Overflow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(
            Error::InvalidQpDensity(9).kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(Error::EmptyCodebook.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            Error::CodebookIndexOutOfRange {
                position: 1,
                level: 7,
                codebook_zero_offset: 0,
                codebook_size: 3
            }
            .kind(),
            ErrorKind::InvalidData
        );
        assert_eq!(
            Error::QuantizationOverflow { qp: 3 }.kind(),
            ErrorKind::Overflow
        );
        assert_eq!(
            Error::InvalidMaxNumNoRem(999).kind(),
            ErrorKind::InvalidArgument
        );
        assert!(Error::InvalidScanOrder(7)
            .to_string()
            .contains("scan_order 7"));
    }
}

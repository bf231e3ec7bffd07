//! Typed syntax of every NNR unit: the unit size and header, and one module per unit type.

pub mod consts;
mod header;
mod lps;
mod mps;
mod ndu;
mod perf_maps;
mod qnt;
mod start;
#[cfg(test)]
pub(crate) mod testgen;
mod tpl;

pub use header::{NnrUnitHeader, NnrUnitSize, NnrUnitType};
pub use lps::LayerParameterSet;
pub use mps::ModelParameterSet;
pub use ndu::{Codebook, DecomposedTensorType, NduHeader, PayloadType};
pub use perf_maps::{
    DecompositionPerformanceMap, DpmEntry, PpmEntry, PruningPerformanceMap,
    SparsificationPerformanceMap, SpmEntry, UnificationPerformanceMap, UpmEntry,
};
pub use qnt::QuantizationUnit;
pub use start::StartUnit;
pub use tpl::TopologyUnit;

use crate::error::{Error, Result};

/// Fails with [`Error::InvalidArgument`] unless `flag` and the presence of `value` agree.
pub(crate) fn check_presence<T>(
    flag: bool,
    value: &Option<T>,
    element: &'static str,
) -> Result<()> {
    match (flag, value.is_some()) {
        (true, false) => Err(Error::InvalidArgument {
            element,
            reason: "the syntax requires this element but it is None",
        }),
        (false, true) => Err(Error::InvalidArgument {
            element,
            reason: "the syntax does not allow this element here but it is Some",
        }),
        _ => Ok(()),
    }
}

/// The value of an element the syntax requires, or [`Error::InvalidArgument`].
pub(crate) fn required<'v, T>(value: &'v Option<T>, element: &'static str) -> Result<&'v T> {
    value.as_ref().ok_or(Error::InvalidArgument {
        element,
        reason: "the syntax requires this element but it is None",
    })
}

/// Fails with [`Error::ValueOutOfRange`] unless `value < 2^bits`.
pub(crate) fn check_bits(value: u64, bits: u32, element: &'static str) -> Result<()> {
    if bits < 64 && value >> bits != 0 {
        return Err(Error::ValueOutOfRange {
            element,
            value: i128::from(value),
        });
    }
    Ok(())
}

/// Fails with [`Error::InvalidArgument`] if a string to be written as `st` contains NUL.
pub(crate) fn check_st(s: &str, element: &'static str) -> Result<()> {
    if s.as_bytes().contains(&0) {
        return Err(Error::InvalidArgument {
            element,
            reason: "an st string cannot contain a NUL byte",
        });
    }
    Ok(())
}

/// Writes `st` after checking the string and the alignment the syntax requires.
pub(crate) fn write_st(w: &mut crate::BitWriter, s: &str, element: &'static str) -> Result<()> {
    check_st(s, element)?;
    if !w.is_byte_aligned() {
        return Err(Error::NotByteAligned {
            element,
            bit_offset: w.bit_len(),
        });
    }
    w.write_st(s);
    Ok(())
}

//! Tensor-to-matrix view and scan order (deepcabac.md §3.1, §4.1–4.2).
//!
//! A tensor of dims `[d0, d1, …]` is an `H × W` matrix with `H = d0` and `W = d1·d2·…` (no
//! transposition). Scan order 0 is row-major; 1..=4 is a block scan with square `B × B` blocks,
//! `B = 4 << scan_order`, blocks left to right inside a block row, rows inside a block top to bottom.
//!
//! The order itself comes from the coder (`nnc_cabac::scan`); this module adds the quantizers'
//! matrix view and error type.

use std::ops::Range;

use crate::error::{Error, Result};

/// Largest supported `scan_order` (64 × 64 blocks).
pub const MAX_SCAN_ORDER: u8 = 4;

/// The matrix view of a tensor: `height` rows (dimension 0) of `width` elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatrixShape {
    /// `H`, the size of dimension 0 (1 for a scalar).
    pub height: usize,
    /// `W`, the product of the remaining dimensions (1 for 0-D and 1-D tensors).
    pub width: usize,
}

impl MatrixShape {
    /// Matrix view of `dims`; an empty `dims` is a scalar (1 × 1).
    pub fn from_dims(dims: &[usize]) -> Result<Self> {
        let overflow = || Error::ShapeOverflow {
            dims: dims.to_vec(),
        };
        let height = dims.first().copied().unwrap_or(1);
        let width = dims
            .iter()
            .skip(1)
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(overflow)?;
        height.checked_mul(width).ok_or_else(overflow)?;
        Ok(Self { height, width })
    }

    /// Number of elements, `H · W`.
    pub fn len(&self) -> usize {
        self.height * self.width
    }

    /// `true` when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scan order the coder really uses: 0 whenever `W == 1` or `H·W == W` (one row, or empty).
    pub fn effective_scan_order(&self, scan_order: u8) -> u8 {
        if self.width == 1 || self.len() == self.width {
            0
        } else {
            scan_order
        }
    }
}

/// Block edge `B` of a (non-zero) scan order.
pub fn block_size(scan_order: u8) -> usize {
    4usize << scan_order
}

/// Contiguous runs of flat (row-major) positions, in scan order.
///
/// A thin adapter over the coder's scan (`nnc_cabac::scan`), so quantizer and coder share one
/// definition of the order: row-major scan yields one run per row, block scan one run per block row
/// segment (at most `B` elements).
#[derive(Clone, Debug)]
pub struct ScanSegments {
    inner: nnc_cabac::scan::Segments,
}

impl ScanSegments {
    /// Runs for `shape` under `scan_order` (forced to 0 where the coder forces it).
    ///
    /// Fails for an effective scan order above [`MAX_SCAN_ORDER`].
    pub fn new(shape: MatrixShape, scan_order: u8) -> Result<Self> {
        let order = shape.effective_scan_order(scan_order);
        if order > MAX_SCAN_ORDER {
            return Err(Error::InvalidScanOrder(order));
        }
        let geometry = nnc_cabac::scan::ScanGeometry::from_hw(shape.height, shape.width, order)
            .map_err(|_| Error::InvalidScanOrder(order))?;
        Ok(Self {
            inner: geometry.segments(),
        })
    }
}

impl Iterator for ScanSegments {
    type Item = Range<usize>;

    #[inline]
    fn next(&mut self) -> Option<Range<usize>> {
        self.inner.next().map(|s| s.start..s.start + s.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(h: usize, w: usize, order: u8) -> Vec<usize> {
        let shape = MatrixShape {
            height: h,
            width: w,
        };
        ScanSegments::new(shape, order).unwrap().flatten().collect()
    }

    #[test]
    fn shapes() {
        assert_eq!(
            MatrixShape::from_dims(&[32, 16, 3, 3]).unwrap(),
            MatrixShape {
                height: 32,
                width: 144
            }
        );
        assert_eq!(MatrixShape::from_dims(&[7]).unwrap().width, 1);
        assert_eq!(MatrixShape::from_dims(&[]).unwrap().len(), 1);
        assert!(MatrixShape::from_dims(&[usize::MAX, 2]).is_err());
        assert!(MatrixShape::from_dims(&[2, usize::MAX, 2]).is_err());
    }

    #[test]
    fn forced_row_major() {
        let s = MatrixShape::from_dims(&[1, 50]).unwrap();
        assert_eq!(s.effective_scan_order(3), 0);
        let s = MatrixShape::from_dims(&[24, 1]).unwrap();
        assert_eq!(s.effective_scan_order(1), 0);
        let s = MatrixShape::from_dims(&[24, 2]).unwrap();
        assert_eq!(s.effective_scan_order(1), 1);
        // Forced to 0, so an out-of-range order is harmless there.
        assert!(ScanSegments::new(MatrixShape::from_dims(&[9]).unwrap(), 9).is_ok());
        assert!(ScanSegments::new(MatrixShape::from_dims(&[9, 9]).unwrap(), 5).is_err());
    }

    #[test]
    fn block_scan_small() {
        // 10 × 10 with 8 × 8 blocks: block (0,0) 8×8, (0,1) 8×2, (1,0) 2×8, (1,1) 2×2.
        let p = positions(10, 10, 1);
        assert_eq!(p.len(), 100);
        assert_eq!(&p[..9], &[0, 1, 2, 3, 4, 5, 6, 7, 10]);
        assert_eq!(p[63], 77);
        assert_eq!(&p[64..68], &[8, 9, 18, 19]);
        assert_eq!(p[80], 80);
        assert_eq!(&p[96..], &[88, 89, 98, 99]);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn block_scan_is_a_permutation() {
        for (h, w) in [
            (72, 40),
            (40, 72),
            (136, 12),
            (20, 12),
            (8, 8),
            (64, 65),
            (3, 200),
        ] {
            for order in 1..=4 {
                let p = positions(h, w, order);
                let mut sorted = p.clone();
                sorted.sort_unstable();
                assert_eq!(
                    sorted,
                    (0..h * w).collect::<Vec<_>>(),
                    "{h}x{w} order {order}"
                );
                // Block rows are contiguous ranges of W·B scan positions.
                let b = block_size(order);
                for (k, &pos) in p.iter().enumerate() {
                    assert_eq!(pos / w / b, k / (w * b));
                }
            }
        }
    }

    #[test]
    fn row_major_and_empty() {
        assert_eq!(positions(3, 4, 0), (0..12).collect::<Vec<_>>());
        assert!(positions(0, 4, 2).is_empty());
        assert!(positions(4, 0, 2).is_empty());
    }
}

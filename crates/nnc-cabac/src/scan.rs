//! Scan orders: row-major and square block scan (deepcabac.md §4.1–4.2).
//!
//! A tensor is an H×W matrix (H = `dims[0]`, W = product of the other dims). Block scan walks
//! block rows top to bottom, blocks left to right, and inside a block each row left to right.
//! The scan is described as a sequence of row segments: runs of consecutive matrix positions
//! `y·W + x0 .. y·W + x0 + len` that the coder visits in order. Row skipping and block-row
//! restarts both happen at segment boundaries.

use crate::Error;

/// Shape and effective scan order of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanGeometry {
    /// Rows (dimension 0).
    pub h: usize,
    /// Row width: product of the remaining dimensions (1 for a 1-D tensor).
    pub w: usize,
    /// Number of elements `h·w`.
    pub n: usize,
    /// Effective scan order after the reference's forcing rules (0..=4).
    pub scan_order: u8,
    /// Block width and height B (`4 << scan_order`), or W for row-major scan.
    pub block: usize,
    /// `ceil(H / B)` for block scan; 0 for row-major (reference `getNumOfBlockRows`).
    pub num_block_rows: usize,
}

impl ScanGeometry {
    /// Geometry of a tensor with shape `dims` coded with `scan_order`.
    ///
    /// The scan order is forced to 0 when the tensor has at most one dimension, when W == 1 or when
    /// H == 1 (as the reference driver and bindings do). A remaining scan order above 4 is an error.
    pub fn new(dims: &[usize], scan_order: u8) -> Result<Self, Error> {
        let w = dims
            .iter()
            .skip(1)
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or(Error::DimsOverflow)?;
        let n = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or(Error::DimsOverflow)?;
        let h = n
            .checked_div(w)
            .unwrap_or_else(|| dims.first().copied().unwrap_or(1));
        let forced = if dims.len() <= 1 { 0 } else { scan_order };
        Self::from_hw(h, w, forced)
    }

    /// Geometry of an H×W matrix (same forcing rules, except the one about dimensionality).
    pub fn from_hw(h: usize, w: usize, scan_order: u8) -> Result<Self, Error> {
        let n = h.checked_mul(w).ok_or(Error::DimsOverflow)?;
        let scan_order = if w == 1 || n == w { 0 } else { scan_order };
        if scan_order > 4 {
            return Err(Error::ScanOrder(scan_order));
        }
        let (block, num_block_rows) = if scan_order == 0 {
            (w, 0)
        } else {
            let b = 4usize << scan_order;
            (b, h.div_ceil(b))
        };
        Ok(Self {
            h,
            w,
            n,
            scan_order,
            block,
            num_block_rows,
        })
    }

    /// True when the coder restarts at block rows (block scan with more than one block row).
    pub fn has_block_row_restarts(&self) -> bool {
        self.scan_order != 0 && self.num_block_rows > 1
    }

    /// The row segments in scan order.
    pub fn segments(&self) -> Segments {
        Segments {
            g: *self,
            block_row: 0,
            x0: 0,
            y: 0,
            done: self.n == 0,
        }
    }

    /// Rows covered by block row `br` (block scan), as a row range.
    pub fn block_row_rows(&self, br: usize) -> std::ops::Range<usize> {
        let start = br.saturating_mul(self.block).min(self.h);
        start..(start + self.block).min(self.h)
    }

    /// The segments of block row `br` only (block scan; for row-major scan `br = 0` is the whole
    /// tensor). None of them has `ends_block_row` set.
    pub fn block_row_segments(&self, br: usize) -> Segments {
        let rows = if self.scan_order == 0 {
            0..self.h
        } else {
            self.block_row_rows(br)
        };
        let g = ScanGeometry {
            h: rows.end,
            num_block_rows: br + 1,
            ..*self
        };
        Segments {
            g,
            block_row: if self.scan_order == 0 { 0 } else { br },
            x0: 0,
            y: rows.start,
            done: rows.is_empty() || self.n == 0,
        }
    }
}

/// A run of consecutive positions in one matrix row, visited in scan order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Matrix row.
    pub row: usize,
    /// Row-major index of the first position.
    pub start: usize,
    /// Number of positions.
    pub len: usize,
    /// The segment ends a block row that is not the last one: contexts, neighbour and range are
    /// reset after it.
    pub ends_block_row: bool,
}

/// Iterator over the [`Segment`]s of a [`ScanGeometry`].
#[derive(Clone, Debug)]
pub struct Segments {
    g: ScanGeometry,
    block_row: usize,
    x0: usize,
    y: usize,
    done: bool,
}

impl Iterator for Segments {
    type Item = Segment;

    #[inline]
    fn next(&mut self) -> Option<Segment> {
        if self.done {
            return None;
        }
        let g = &self.g;
        if g.scan_order == 0 {
            let seg = Segment {
                row: self.y,
                start: self.y * g.w,
                len: g.w,
                ends_block_row: false,
            };
            self.y += 1;
            self.done = self.y >= g.h;
            return Some(seg);
        }
        let b = g.block;
        let y0 = self.block_row * b;
        let y1 = (y0 + b).min(g.h);
        let x1 = (self.x0 + b).min(g.w);
        let last_in_block_row = x1 == g.w && self.y + 1 == y1;
        let more_block_rows = self.block_row + 1 < g.num_block_rows;
        let seg = Segment {
            row: self.y,
            start: self.y * g.w + self.x0,
            len: x1 - self.x0,
            ends_block_row: last_in_block_row && more_block_rows,
        };
        if self.y + 1 < y1 {
            self.y += 1;
        } else if x1 < g.w {
            self.x0 = x1;
            self.y = y0;
        } else if more_block_rows {
            self.block_row += 1;
            self.x0 = 0;
            self.y = y1;
        } else {
            self.done = true;
        }
        Some(seg)
    }
}

/// Row-major positions `y·W + x` in scan order for an H×W matrix (`dims_h` = H, `w` = W).
///
/// The same forcing rules as [`ScanGeometry::from_hw`] apply; a scan order that remains above 4
/// yields an empty iterator.
pub fn scan_positions(dims_h: usize, w: usize, scan_order: u8) -> impl Iterator<Item = usize> {
    ScanGeometry::from_hw(dims_h, w, scan_order)
        .ok()
        .into_iter()
        .flat_map(|g| g.segments())
        .flat_map(|s| s.start..s.start + s.len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward port of the reference's position stepping, for cross-checking.
    fn reference_order(h: usize, w: usize, b: usize) -> Vec<usize> {
        let (bw, bh) = if b == 0 { (w, h) } else { (b, b) };
        let border_h = h % bh;
        let border_w = w % bw;
        let (mut x, mut y) = (0usize, 0usize);
        let mut out = vec![0];
        for _ in 1..h * w {
            if x + 1 < w && (x + 1) % bw != 0 {
                x += 1;
            } else if y + 1 < h && (y + 1) % bh != 0 {
                if x + border_w >= w {
                    x -= border_w - 1;
                } else {
                    x -= bw - 1;
                }
                y += 1;
            } else if x + 1 < w {
                x += 1;
                if y + border_h >= h {
                    y -= border_h - 1;
                } else {
                    y -= bh - 1;
                }
            } else if y + 1 < h {
                x = 0;
                y += 1;
            }
            out.push(y * w + x);
        }
        out
    }

    #[test]
    fn matches_reference_stepping() {
        for (h, w) in [
            (20, 12),
            (8, 8),
            (9, 17),
            (64, 3),
            (3, 70),
            (17, 17),
            (33, 65),
            (2, 9),
        ] {
            for so in 0..=4u8 {
                let g = ScanGeometry::from_hw(h, w, so).unwrap();
                let b = if g.scan_order == 0 { 0 } else { g.block };
                let ours: Vec<usize> = scan_positions(h, w, so).collect();
                assert_eq!(ours, reference_order(h, w, b), "h={h} w={w} so={so}");
            }
        }
    }

    #[test]
    fn block_row_ends() {
        let g = ScanGeometry::from_hw(20, 12, 1).unwrap();
        assert_eq!(g.num_block_rows, 3);
        let mut idx = 0;
        let mut ends = vec![];
        for s in g.segments() {
            idx += s.len;
            if s.ends_block_row {
                ends.push(idx);
            }
        }
        assert_eq!(ends, vec![96, 192]);
        assert_eq!(idx, 240);
    }

    #[test]
    fn block_row_segments_concatenate_to_full_scan() {
        for (h, w, so) in [(20, 12, 1), (17, 9, 2), (64, 3, 3), (3, 70, 1), (9, 17, 0)] {
            let g = ScanGeometry::from_hw(h, w, so).unwrap();
            let rows = g.num_block_rows.max(1);
            let parts: Vec<Segment> = (0..rows).flat_map(|br| g.block_row_segments(br)).collect();
            let full: Vec<Segment> = g
                .segments()
                .map(|s| Segment {
                    ends_block_row: false,
                    ..s
                })
                .collect();
            assert_eq!(parts, full, "h={h} w={w} so={so}");
        }
    }

    #[test]
    fn forcing_rules() {
        assert_eq!(ScanGeometry::new(&[100], 3).unwrap().scan_order, 0);
        assert_eq!(ScanGeometry::new(&[1, 100], 3).unwrap().scan_order, 0);
        assert_eq!(ScanGeometry::new(&[100, 1, 1], 3).unwrap().scan_order, 0);
        assert!(ScanGeometry::new(&[10, 10], 5).is_err());
        assert_eq!(ScanGeometry::new(&[10, 1], 9).unwrap().scan_order, 0);
        let g = ScanGeometry::new(&[], 0).unwrap();
        assert_eq!((g.h, g.w, g.n), (1, 1, 1));
        let z = ScanGeometry::new(&[3, 0, 2], 1).unwrap();
        assert_eq!(z.n, 0);
        assert_eq!(z.segments().count(), 0);
    }
}

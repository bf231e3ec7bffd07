//! Per-tensor configuration shared by the layer encoder and decoder.

use crate::binarization::LevelCoding;
use crate::context::ContextLayout;
use crate::scan::ScanGeometry;
use crate::Error;

/// Largest supported N (`cabac_unary_length_minus1` is 8 bits wide).
pub const MAX_CABAC_UNARY_LENGTH: u32 = 256;

/// History-dependent significance probability mode of one tensor (reference `HdspMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum HdspMode {
    /// No HDSP at all (reference default).
    #[default]
    AlwaysOff,
    /// A history exists but the tensor is coded without it.
    TensorOff,
    /// The tensor is coded with its history.
    TensorOn,
}

impl HdspMode {
    /// The mode of a tensor when HDSP is `enabled` for the stream: on where the tensor has a
    /// history, off where it has none yet.
    pub fn for_tensor(enabled: bool, has_history: bool) -> Self {
        match (enabled, has_history) {
            (false, _) => HdspMode::AlwaysOff,
            (true, false) => HdspMode::TensorOff,
            (true, true) => HdspMode::TensorOn,
        }
    }
}

/// What the NDU header and driver say about one tensor (coded in one call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerConfig {
    /// Tensor shape; H = `dims[0]`, W = product of the rest (1 for 1-D).
    pub dims: Vec<usize>,
    /// `dq_flag`: dependent quantization.
    pub dq_flag: bool,
    /// `scan_order` 0..=4 (forced to 0 when W == 1, H == 1 or `dims.len() <= 1`).
    pub scan_order: u8,
    /// `general_profile_idc` of the stream.
    pub general_profile_idc: u8,
    /// `parent_node_id_present_flag` of the NDU.
    pub parent_node_id_present_flag: bool,
    /// Codebook size (0 = no codebook). Only effective with general_profile_idc = 1.
    pub codebook_size: u32,
    /// `CbZeroOffset`, the codebook index of zero.
    pub codebook_zero_offset: u32,
    /// N = `cabac_unary_length_minus1 + 1`: 1..=256 for decoding; encoding also accepts 0
    /// (reference quirk: some encoder trial passes use `cabac_unary_length_minus1` as N).
    pub cabac_unary_length: u32,
}

impl LayerConfig {
    /// A profile-0-style default for `dims`: no DQ, row-major, no codebook, N = 11.
    pub fn new(dims: Vec<usize>) -> Self {
        Self {
            dims,
            dq_flag: false,
            scan_order: 0,
            general_profile_idc: 0,
            parent_node_id_present_flag: false,
            codebook_size: 0,
            codebook_zero_offset: 0,
            cabac_unary_length: 11,
        }
    }
}

/// Per-tensor state from earlier updates.
#[derive(Clone, Copy, Debug, Default)]
pub struct LayerHistory<'a> {
    /// TCA (`temporal_context_modeling_flag`): co-located levels of the previous update, in the
    /// reconstruction-index domain; same length as the tensor. `Some` selects the TCA variant
    /// (reference `encodeLayer2`/`decodeLayer2`).
    pub base_levels: Option<&'a [i32]>,
    /// HDSP mode.
    pub hdsp_mode: HdspMode,
    /// HDSP history mask (1 = position was non-zero in an earlier update), same length; required
    /// with [`HdspMode::TensorOn`].
    pub hdsp_hist: Option<&'a [i8]>,
}

/// Side information found while decoding one tensor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodedLayerInfo {
    /// `row_skip_enabled_flag` (false when not present).
    pub row_skip_enabled_flag: bool,
    /// `hist_dep_sig_prob_enabled_flag` (false when not present).
    pub hist_dep_sig_prob_enabled_flag: bool,
    /// `row_skip_flag[row]` for every row when row skipping is enabled, else empty.
    pub row_skip_flags: Vec<bool>,
    /// Number of block rows with restart points (0 for row-major or a single block row).
    pub num_block_rows: usize,
}

/// The fewest positions with the plain contexts that the per-position level loops (the
/// decoder's and the encoder's) hand to the plain loop; shorter stretches stay in the
/// per-position loop, whose set-up is cheaper.
pub(crate) const PLAIN_STRETCH: usize = 8;

/// Test data of a sparse update, as the per-position loops' tests use it: keeps the non-zero
/// bases only at gaps of 1 to 30 positions (so most zero bases lie in plain stretches), zeroes
/// 8 in 9 levels, and returns an HDSP history with few flags.
#[cfg(test)]
pub(crate) fn make_sparse_update(base: &mut [i32], levels: &mut [i32], seed: usize) -> Vec<i8> {
    let mut next = 0;
    for (i, b) in base.iter_mut().enumerate() {
        if i == next {
            next += 1 + (i * 7919 + seed) % 30;
        } else {
            *b = 0;
        }
    }
    for (i, l) in levels.iter_mut().enumerate() {
        if !(i * 31 + seed).is_multiple_of(9) {
            *l = 0;
        }
    }
    (0..levels.len()).map(|i| i8::from(i % 37 == 5)).collect()
}

/// Validated per-tensor parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Prepared<'h> {
    pub geo: ScanGeometry,
    pub layout: ContextLayout,
    pub lc: LevelCoding,
    pub dq: bool,
    pub gpi1: bool,
    pub parent: bool,
    pub cbs: u32,
    pub cbz: u32,
    /// The tensor header bins (HDSP flag, row skipping) are present.
    pub header_present: bool,
    pub base: Option<&'h [i32]>,
    pub hdsp_mode: HdspMode,
    pub hist: Option<&'h [i8]>,
}

impl<'h> Prepared<'h> {
    pub fn new(
        cfg: &LayerConfig,
        hist: &LayerHistory<'h>,
        len: usize,
        min_n: u32,
    ) -> Result<Self, Error> {
        let geo = ScanGeometry::new(&cfg.dims, cfg.scan_order)?;
        if len != geo.n {
            return Err(Error::LengthMismatch {
                what: "level array",
                expected: geo.n,
                got: len,
            });
        }
        let n = cfg.cabac_unary_length;
        if n < min_n || n > MAX_CABAC_UNARY_LENGTH {
            return Err(Error::CabacUnaryLength(n));
        }
        let (cbs, cbz) = (cfg.codebook_size, cfg.codebook_zero_offset);
        if cbs > 0 && cbz >= cbs {
            return Err(Error::Codebook {
                size: cbs,
                zero_offset: cbz,
            });
        }
        if let Some(b) = hist.base_levels {
            if b.len() != geo.n {
                return Err(Error::LengthMismatch {
                    what: "TCA base levels",
                    expected: geo.n,
                    got: b.len(),
                });
            }
        }
        if let Some(h) = hist.hdsp_hist {
            if h.len() != geo.n {
                return Err(Error::LengthMismatch {
                    what: "HDSP history",
                    expected: geo.n,
                    got: h.len(),
                });
            }
        }
        if hist.hdsp_mode == HdspMode::TensorOn && hist.hdsp_hist.is_none() {
            return Err(Error::MissingHdspHistory);
        }
        let gpi1 = cfg.general_profile_idc == 1;
        Ok(Self {
            geo,
            layout: ContextLayout::new(n),
            lc: LevelCoding::new(n, cfg.general_profile_idc, cbs, cbz),
            dq: cfg.dq_flag,
            gpi1,
            parent: cfg.parent_node_id_present_flag,
            cbs,
            cbz,
            header_present: gpi1 && geo.w > 1 && geo.n > geo.w && cbs != 1,
            base: hist.base_levels,
            hdsp_mode: hist.hdsp_mode,
            hist: hist.hdsp_hist,
        })
    }

    /// TCA base level at `pos` (0 when TCA is off or the profile ignores it).
    #[inline(always)]
    pub fn base_at(&self, pos: usize) -> i32 {
        match self.base {
            Some(b) if self.gpi1 => b.get(pos).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// How many positions from `pos` (at most `len`) code their levels in the plain contexts:
    /// a TCA base level of 0 and no HDSP flag set ([`Prepared::base_at`] and
    /// [`Prepared::hdsp_at`] for each).
    #[inline]
    pub fn plain_positions(&self, hdsp_flag: bool, pos: usize, len: usize) -> usize {
        let end = pos.saturating_add(len);
        let first = |s: Option<&[i32]>, set: fn(&i32) -> bool| {
            s.map_or(0, |s| s.iter().position(set).unwrap_or(s.len()))
        };
        let zero_base = match self.base {
            Some(b) if self.gpi1 => first(b.get(pos..end), |&v| v != 0),
            _ => len,
        };
        match self.hist {
            Some(h) if self.hdsp_on(hdsp_flag) => h
                .get(pos..pos + zero_base)
                .map_or(0, |s| s.iter().position(|&f| f == 1).unwrap_or(s.len())),
            _ => zero_base,
        }
    }

    /// Whether at least 7 in 8 of the TCA base levels of positions `pos..pos + len` are 0 (all
    /// of them without a base): a non-zero base every 8 positions or fewer on average, so that
    /// most zero bases lie in stretches long enough for the plain loop. At half, the update of
    /// the ResNet-50-shaped model (short stretches) decoded 7 % slower than without stretches.
    #[inline]
    pub fn mostly_plain(&self, pos: usize, len: usize) -> bool {
        match self.base {
            Some(b) if self.gpi1 => b
                .get(pos..pos.saturating_add(len))
                .is_some_and(|s| 8 * s.iter().filter(|&&v| v == 0).count() >= 7 * len),
            _ => true,
        }
    }

    /// The TCA base levels of positions `pos..pos + len` when they alone choose the contexts
    /// per position: gpi = 1, a base, and no HDSP position (the tensor's flag off or its mode
    /// not on).
    #[inline]
    pub fn bases_alone(&self, hdsp_flag: bool, pos: usize, len: usize) -> Option<&'h [i32]> {
        if !self.gpi1 || self.hdsp_on(hdsp_flag) {
            return None;
        }
        self.base?.get(pos..pos.checked_add(len)?)
    }

    /// Whether contexts depend on per-position TCA base levels or HDSP flags (gpi = 1 with a base
    /// or HDSP in use); otherwise the plain level loops apply.
    #[inline]
    pub fn per_position_contexts(&self, hdsp_flag: bool) -> bool {
        self.gpi1 && (self.base.is_some() || hdsp_flag)
    }

    /// Whether HDSP picks some positions' contexts, given the tensor's
    /// `hist_dep_sig_prob_enabled_flag`: the flag set and the mode on.
    #[inline(always)]
    fn hdsp_on(&self, flag: bool) -> bool {
        flag && self.hdsp_mode == HdspMode::TensorOn
    }

    /// HDSP enabled at `pos` given the tensor's `hist_dep_sig_prob_enabled_flag`.
    #[inline(always)]
    pub fn hdsp_at(&self, flag: bool, pos: usize) -> bool {
        self.hdsp_on(flag) && self.hist.and_then(|h| h.get(pos)).copied() == Some(1)
    }
}

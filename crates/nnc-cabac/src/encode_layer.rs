//! Level encoding of one tensor (reference `initCtxModels` + `encodeLayer` / `encodeLayer2`).

use crate::binarization::{encode_level, BinSink, LevelCoding, Neighbourhood};
use crate::context::{ContextModel, ContextSet};
use crate::ctx_init::CtxInitList;
use crate::dq;
use crate::encoder::ArithEncoder;
use crate::layer::{HdspMode, LayerConfig, LayerHistory, Prepared};
use crate::param_opt::InitSetSearch;
use crate::Error;

/// Encoder-only choices for one tensor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodeLayerOptions {
    /// Choose context initialisation sets with the pseudo pass (`param_opt_flag`).
    pub param_opt: bool,
    /// `row_skip_enabled_flag`; only effective with general_profile_idc = 1 for tensors with
    /// W > 1 and H > 1 (and not a one-entry codebook).
    pub row_skip_enabled_flag: bool,
    /// `row_skip_flag` per row (length H). `None`: flag every all-zero row, as the reference driver
    /// does. A flagged row must be all zero.
    pub chan_zero: Option<Vec<bool>>,
    /// Reference quirk of `encodeLayer2` (TCA): it passes general_profile_idc in place of
    /// parent_node_id_present_flag, so the HDSP flag is written whenever TCA is used with
    /// gpi = 1. Off (default): the flag follows `parent_node_id_present_flag`, which is what the
    /// decoder reads; the two agree whenever the parent flag is 1.
    pub tca_hdsp_flag_follows_profile: bool,
}

/// `initCtxModels(N, param_opt)` + `encodeLayer` (or `encodeLayer2` when `hist.base_levels` is
/// `Some`): code one tensor's levels (reconstruction indices when `dq_flag`) into `enc`.
///
/// Errors leave `enc` with a partially written tensor; discard it.
pub fn encode_layer(
    enc: &mut ArithEncoder,
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
) -> Result<(), Error> {
    let p = Prepared::new(cfg, hist, levels.len(), 0)?;
    let row_skip = p.header_present && opts.row_skip_enabled_flag;
    let skip_rows: Vec<bool> = if row_skip {
        row_skip_flags(&p, opts, levels)?
    } else {
        Vec::new()
    };
    let mut e = std::mem::take(enc);
    let r = encode_body(&mut e, &p, opts, levels, &skip_rows);
    *enc = e;
    r
}

fn row_skip_flags(
    p: &Prepared<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
) -> Result<Vec<bool>, Error> {
    let w = p.geo.w;
    let row_zero = |row: usize| {
        levels
            .get(row * w..(row + 1) * w)
            .is_some_and(|r| r.iter().all(|&v| v == 0))
    };
    match &opts.chan_zero {
        None => Ok((0..p.geo.h).map(row_zero).collect()),
        Some(flags) => {
            if flags.len() != p.geo.h {
                return Err(Error::LengthMismatch {
                    what: "chan_zero",
                    expected: p.geo.h,
                    got: flags.len(),
                });
            }
            if let Some(row) = (0..p.geo.h).find(|&r| flags[r] && !row_zero(r)) {
                return Err(Error::SkippedRowNotZero(row));
            }
            Ok(flags.clone())
        }
    }
}

struct EncSink<'e> {
    enc: &'e mut ArithEncoder,
    ctxs: &'e mut [ContextModel],
}

impl BinSink for EncSink<'_> {
    #[inline(always)]
    fn ctx_bin(&mut self, ctx: usize, bin: bool) {
        if let Some(c) = self.ctxs.get_mut(ctx) {
            self.enc.encode_bin(bin, c);
        }
    }
    #[inline(always)]
    fn bypass_bins(&mut self, n: u32, value: u32) {
        self.enc.encode_bypass_bins(n, value);
    }
}

fn encode_body(
    e: &mut ArithEncoder,
    p: &Prepared<'_>,
    opts: &EncodeLayerOptions,
    levels: &[i32],
    skip_rows: &[bool],
) -> Result<(), Error> {
    let layout = p.layout;
    let mut ctx_set = ContextSet::new(layout.num_gtx_flags());
    let models = ctx_set.models_mut();

    let mut hdsp_flag = false;
    if p.header_present {
        let parent = if opts.tca_hdsp_flag_follows_profile && p.base.is_some() {
            p.gpi1
        } else {
            p.parent
        };
        if parent {
            hdsp_flag = p.hdsp_mode == HdspMode::TensorOn;
            e.encode_bypass(hdsp_flag);
        }
        e.encode_bypass(opts.row_skip_enabled_flag);
        if opts.row_skip_enabled_flag {
            let rs = models
                .get_mut(layout.rs())
                .ok_or(Error::Internal("RS context out of range"))?;
            for &f in skip_rows {
                e.encode_bin(f, rs);
            }
        }
    }

    let chosen = if opts.param_opt && (p.cbs != 1 || !p.gpi1) {
        pseudo_pass(p, levels, skip_rows, hdsp_flag)?
    } else {
        Vec::new()
    };

    // Context initialisation indices (§2.6): always present, all 0 without param_opt.
    let list = CtxInitList {
        layout,
        dq_flag: p.dq,
        use_tca: p.base.is_some(),
        use_hdsp: hdsp_flag,
        cbs: p.cbs,
        cbz: p.cbz,
    };
    let po = layout.po();
    let mut bad_index = false;
    list.for_each(|c| {
        let idx = chosen.get(c).copied().unwrap_or(0);
        match models.get_mut(po) {
            Some(po_ctx) => e.encode_bin(idx != 0, po_ctx),
            None => bad_index = true,
        }
        if idx != 0 {
            e.encode_bypass_bins(3, u32::from(idx - 1));
        }
        match models.get_mut(c) {
            Some(m) => m.init(idx),
            None => bad_index = true,
        }
    });
    if bad_index {
        return Err(Error::Internal("context index out of range"));
    }

    if p.geo.has_block_row_restarts() {
        e.reset_range();
    }
    let row_skip = !skip_rows.is_empty();
    let lc = p.lc;
    let mut nbh = Neighbourhood::default();
    let mut dq_state = 0u8;
    for seg in p.geo.segments() {
        let slice = levels
            .get(seg.start..seg.start + seg.len)
            .ok_or(Error::Internal("segment out of range"))?;
        if row_skip && skip_rows.get(seg.row).copied().unwrap_or(false) {
            if p.dq {
                // Reference quirk: a skipped segment advances the DQ state by W, not by its length.
                dq_state = dq::advance_zeros(dq_state, p.geo.w);
            }
        } else {
            let mut sink = EncSink {
                enc: e,
                ctxs: models,
            };
            for (i, &q) in slice.iter().enumerate() {
                let pos = seg.start + i;
                if p.gpi1 {
                    nbh.base = p.base_at(pos);
                    nbh.hdsp_here = p.hdsp_at(hdsp_flag, pos);
                }
                let k = if p.dq {
                    dq::coded_level(q, dq_state)
                } else {
                    q
                };
                if !lc.accepts(k) {
                    return Err(Error::LevelNotCodable { pos, level: q });
                }
                encode_level(&mut sink, &layout, &nbh, &lc, k, dq_state as usize);
                nbh.nb = k;
                if p.dq {
                    dq_state = dq::next_state(dq_state, k);
                }
            }
        }
        if seg.ends_block_row {
            for m in models.iter_mut() {
                m.reset();
            }
            nbh = Neighbourhood::default();
            e.reset_range();
        }
    }
    Ok(())
}

/// The param_opt pseudo pass (§6.1).
///
/// Reference quirk: it binarizes the raw input values (reconstruction indices under DQ) without
/// codebook bounds, uses them as neighbours, and does not reset the neighbour at block rows; only
/// the shadow estimators are reset there. The DQ state still follows the coded levels.
fn pseudo_pass(
    p: &Prepared<'_>,
    levels: &[i32],
    skip_rows: &[bool],
    hdsp_flag: bool,
) -> Result<Vec<u8>, Error> {
    let layout = p.layout;
    let lc = LevelCoding::unbounded(layout.num_gtx_flags());
    let mut shadows = InitSetSearch::new(layout.len(), true);
    let row_skip = !skip_rows.is_empty();
    let mut nbh = Neighbourhood::default();
    let mut dq_state = 0u8;
    for seg in p.geo.segments() {
        let slice = levels
            .get(seg.start..seg.start + seg.len)
            .ok_or(Error::Internal("segment out of range"))?;
        if row_skip && skip_rows.get(seg.row).copied().unwrap_or(false) {
            if p.dq {
                dq_state = dq::advance_zeros(dq_state, p.geo.w);
            }
        } else {
            for (i, &q) in slice.iter().enumerate() {
                let pos = seg.start + i;
                if p.gpi1 {
                    nbh.base = p.base_at(pos);
                    nbh.hdsp_here = p.hdsp_at(hdsp_flag, pos);
                }
                encode_level(&mut shadows, &layout, &nbh, &lc, q, dq_state as usize);
                nbh.nb = q;
                if p.dq {
                    dq_state = dq::next_state(dq_state, dq::coded_level(q, dq_state));
                }
            }
        }
        if seg.ends_block_row {
            shadows.reset_states();
        }
    }
    Ok(shadows.best_indices())
}

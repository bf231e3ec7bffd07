//! Level decoding of one tensor (reference `decodeLayer`, `decodeLayerAndCreateEPs`).

use crate::binarization::{decode_level, LevelCoding, Neighbourhood};
use crate::context::{ContextLayout, ContextModel, ContextSet};
use crate::ctx_init::CtxInitList;
use crate::decoder::ArithDecoder;
use crate::dq;
use crate::layer::{DecodedLayerInfo, LayerConfig, LayerHistory, Prepared};
use crate::Error;

/// `initCtxModels(N)` + `decodeLayer`: decode one tensor's levels into `out` (length = product of
/// `cfg.dims`), in reconstruction units (DQ reconstruction indices when `dq_flag`).
///
/// Decodes sequentially, performing the same range and context resets at block rows as the encoder,
/// so entry points are not needed. Every element of `out` is written (row-skipped positions get 0).
/// On error `out` and the decoder state are unspecified.
pub fn decode_layer(
    dec: &mut ArithDecoder<'_>,
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    out: &mut [i32],
) -> Result<DecodedLayerInfo, Error> {
    let prep = Prepared::new(cfg, hist, out.len(), 1)?;
    let mut d = dec.clone();
    let r = decode_body(&mut d, &prep, out, None);
    *dec = d;
    r
}

/// Like [`decode_layer`], but also returns the entry points as the reference's
/// `decodeLayerAndCreateEPs` does: one packed `(delta_bit_offset << 11) | (val8 << 3) | dq_state`
/// per block-row boundary, the first delta relative to the start of block row 0.
///
/// Reference quirk: this decoder sets range = 256 at the start of every tensor with
/// `scan_order > 0`, even one with a single block row, where the encoder does not. Such a tensor
/// then decodes out of sync (wrong levels, wrong entry points for later tensors of the NDU, or an
/// error), exactly as in the reference; it is only used to derive header entry points.
pub fn decode_layer_and_create_entry_points(
    dec: &mut ArithDecoder<'_>,
    cfg: &LayerConfig,
    hist: &LayerHistory<'_>,
    out: &mut [i32],
) -> Result<(DecodedLayerInfo, Vec<u64>), Error> {
    let prep = Prepared::new(cfg, hist, out.len(), 1)?;
    let mut d = dec.clone();
    let mut eps = Vec::new();
    let r = decode_body(&mut d, &prep, out, Some(&mut eps));
    *dec = d;
    r.map(|info| (info, eps))
}

fn decode_body(
    d: &mut ArithDecoder<'_>,
    p: &Prepared<'_>,
    out: &mut [i32],
    mut eps: Option<&mut Vec<u64>>,
) -> Result<DecodedLayerInfo, Error> {
    let layout = p.layout;
    let mut ctx_set = ContextSet::new(layout.num_gtx_flags());
    let mut info = DecodedLayerInfo::default();

    if p.header_present {
        if p.parent {
            info.hist_dep_sig_prob_enabled_flag = d.decode_bypass();
        }
        info.row_skip_enabled_flag = d.decode_bypass();
        if info.row_skip_enabled_flag {
            let rs = ctx(ctx_set.models_mut(), layout.rs())?;
            info.row_skip_flags = (0..p.geo.h).map(|_| d.decode_bin(rs)).collect();
        }
    }

    decode_init_indices(
        d,
        ctx_set.models_mut(),
        p,
        info.hist_dep_sig_prob_enabled_flag,
    )?;

    let mut last_offset = 0u64;
    if eps.is_some() {
        if p.geo.scan_order != 0 {
            d.reset_range();
            last_offset = d.bit_offset();
        }
    } else if p.geo.has_block_row_restarts() {
        d.reset_range();
    }
    if p.geo.has_block_row_restarts() {
        info.num_block_rows = p.geo.num_block_rows;
    }

    let skip_active = p.header_present && info.row_skip_enabled_flag;
    let hdsp_flag = info.hist_dep_sig_prob_enabled_flag;
    let mut nbh = Neighbourhood::default();
    let mut dq_state = 0u8;
    let lc = p.lc;
    let models = ctx_set.models_mut();
    // Per-position TCA/HDSP lookups are only needed with gpi = 1 and either tool in use.
    let extra = p.gpi1 && (p.base.is_some() || hdsp_flag);

    for seg in p.geo.segments() {
        let slice = out
            .get_mut(seg.start..seg.start + seg.len)
            .ok_or(Error::Internal("segment out of range"))?;
        if skip_active && info.row_skip_flags.get(seg.row).copied().unwrap_or(false) {
            slice.fill(0);
            if p.dq {
                // Reference quirk: a skipped segment advances the DQ state by W, not by its length.
                dq_state = dq::advance_zeros(dq_state, p.geo.w);
            }
        } else {
            let run = Run {
                layout: &layout,
                lc: &lc,
                p,
                hdsp_flag,
                start: seg.start,
            };
            match (p.dq, extra) {
                (false, false) => {
                    run.decode::<false, false>(d, models, slice, &mut nbh, &mut dq_state)?
                }
                (true, false) => {
                    run.decode::<true, false>(d, models, slice, &mut nbh, &mut dq_state)?
                }
                (false, true) => {
                    run.decode::<false, true>(d, models, slice, &mut nbh, &mut dq_state)?
                }
                (true, true) => {
                    run.decode::<true, true>(d, models, slice, &mut nbh, &mut dq_state)?
                }
            }
        }
        if seg.ends_block_row {
            for m in models.iter_mut() {
                m.reset();
            }
            nbh = Neighbourhood::default();
            d.reset_range();
            if let Some(list) = eps.as_deref_mut() {
                let mut ep = d.capture_entry_point(dq_state);
                let abs = ep.bit_offset;
                ep.bit_offset = abs.wrapping_sub(last_offset);
                last_offset = abs;
                list.push(ep.pack());
            }
        }
    }
    Ok(info)
}

/// One row segment of coded positions.
struct Run<'r, 'h> {
    layout: &'r ContextLayout,
    lc: &'r LevelCoding,
    p: &'r Prepared<'h>,
    hdsp_flag: bool,
    start: usize,
}

impl Run<'_, '_> {
    /// Decode the positions of `slice`; `DQ` = dependent quantization, `EXTRA` = per-position
    /// TCA base / HDSP lookups.
    #[inline(always)]
    fn decode<const DQ: bool, const EXTRA: bool>(
        &self,
        d: &mut ArithDecoder<'_>,
        models: &mut [ContextModel],
        slice: &mut [i32],
        nbh: &mut Neighbourhood,
        dq_state: &mut u8,
    ) -> Result<(), Error> {
        let mut state = *dq_state;
        for (i, o) in slice.iter_mut().enumerate() {
            if EXTRA {
                let pos = self.start + i;
                nbh.base = self.p.base_at(pos);
                nbh.hdsp_here = self.p.hdsp_at(self.hdsp_flag, pos);
            }
            let k = decode_level(d, models, self.layout, nbh, self.lc, state as usize)?;
            nbh.nb = k;
            if DQ {
                *o = dq::reconstruction_index(k, state).ok_or(Error::LevelOverflow)?;
                state = dq::next_state(state, k);
            } else {
                *o = k;
            }
        }
        *dq_state = state;
        Ok(())
    }
}

/// Parse the context-initialisation indices (§2.6) and apply them.
fn decode_init_indices(
    d: &mut ArithDecoder<'_>,
    models: &mut [ContextModel],
    p: &Prepared<'_>,
    use_hdsp: bool,
) -> Result<(), Error> {
    let list = CtxInitList {
        layout: p.layout,
        dq_flag: p.dq,
        use_tca: p.base.is_some(),
        use_hdsp,
        cbs: p.cbs,
        cbz: p.cbz,
    };
    let po = p.layout.po();
    let mut result = Ok(());
    list.for_each(|c| {
        if result.is_err() {
            return;
        }
        let Some(po_ctx) = models.get_mut(po) else {
            result = Err(Error::Internal("PO context out of range"));
            return;
        };
        let idx = if d.decode_bin(po_ctx) {
            1 + d.decode_bypass_bins(3) as u8
        } else {
            0
        };
        match models.get_mut(c) {
            Some(m) => m.init(idx),
            None => result = Err(Error::Internal("context index out of range")),
        }
    });
    result
}

#[inline(always)]
fn ctx(models: &mut [ContextModel], idx: usize) -> Result<&mut ContextModel, Error> {
    models
        .get_mut(idx)
        .ok_or(Error::Internal("context index out of range"))
}

//! Binarization of one level and its context selection (deepcabac.md §3.4–3.5).
//!
//! A level k is coded as: sig flag; sign flag (unless implied by a codebook); up to N
//! greater-than flags; then an order-0 Exp-Golomb remainder whose unary prefix is context coded
//! (one context per prefix position) and whose suffix is bypass coded. With a codebook the
//! magnitude is bounded by M and bins that could only take one value are left out.

use crate::context::{ContextLayout, ContextModel};
use crate::decoder::ArithDecoder;
use crate::encoder::{ArithEncoder, LocalEncoder};
use crate::tables::BYPASS_BITS;
use crate::Error;
use core::hint::select_unpredictable;

/// Magnitude bound meaning "no codebook".
pub(crate) const UNBOUNDED: u64 = u64::MAX;

/// Longest remainder prefix the decoder reads (j = 0..=30).
pub(crate) const MAX_PREFIX_BINS: usize = 31;

/// Per-tensor parameters of the level binarization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelCoding {
    /// N, the number of greater-than flags.
    pub num_gtx_flags: u32,
    /// gpi = 1 with a one-entry codebook: no bins at all.
    pub nothing_coded: bool,
    /// The sign flag is coded (otherwise it is implied by the codebook).
    pub sign_coded: bool,
    /// The implied sign when it is not coded.
    pub implied_negative: bool,
    /// Largest magnitude of a positive level (`UNBOUNDED` without codebook).
    pub max_pos: u64,
    /// Largest magnitude of a negative level.
    pub max_neg: u64,
}

impl LevelCoding {
    /// Binarization without codebook bounds (also used by the parameter optimiser and rate models).
    pub const fn unbounded(num_gtx_flags: u32) -> Self {
        Self {
            num_gtx_flags,
            nothing_coded: false,
            sign_coded: true,
            implied_negative: false,
            max_pos: UNBOUNDED,
            max_neg: UNBOUNDED,
        }
    }

    /// Binarization for `general_profile_idc` and the codebook `cbs`/`cbz` (caller checks `cbz < cbs`
    /// when `cbs > 0`). The codebook is only effective with gpi = 1.
    pub fn new(num_gtx_flags: u32, general_profile_idc: u8, cbs: u32, cbz: u32) -> Self {
        let mut lc = Self::unbounded(num_gtx_flags);
        if general_profile_idc == 1 && cbs > 0 {
            lc.nothing_coded = cbs == 1;
            let implicit = cbz == 0 || cbz == cbs - 1;
            lc.sign_coded = !implicit;
            lc.implied_negative = cbz != 0;
            lc.max_pos = u64::from(cbs - 1 - cbz);
            lc.max_neg = u64::from(cbz);
        }
        lc
    }

    /// No codebook bounds: equal to [`LevelCoding::unbounded`] for its N.
    pub fn is_unbounded(&self) -> bool {
        *self == Self::unbounded(self.num_gtx_flags)
    }

    /// Whether level `k` can be represented (codebook bounds, implied sign). `i32::MIN` is coded
    /// with the bins of magnitude 2^31, as the reference does, and decodes back to `i32::MIN`.
    pub fn accepts(&self, k: i32) -> bool {
        if k == 0 {
            return true;
        }
        if self.nothing_coded {
            return false;
        }
        let neg = k < 0;
        if !self.sign_coded && neg != self.implied_negative {
            return false;
        }
        let max = if neg { self.max_neg } else { self.max_pos };
        u64::from(k.unsigned_abs()) <= max
    }
}

/// The level of magnitude `a` and sign `negative`. Magnitude 2^31 with a minus sign is `i32::MIN`:
/// the reference's quantizer makes such levels and its decoder returns them (its int32 sum wraps
/// to −2^31 and negates to itself); any other magnitude beyond `i32` is a corrupt stream.
#[inline(always)]
fn signed_level(a: u64, negative: bool) -> Result<i32, Error> {
    match i32::try_from(a) {
        Ok(mag) => Ok(if negative { -mag } else { mag }),
        Err(_) => int_min_or_overflow(a, negative),
    }
}

#[cold]
#[inline(never)]
fn int_min_or_overflow(a: u64, negative: bool) -> Result<i32, Error> {
    if negative && a == 1 << 31 {
        Ok(i32::MIN)
    } else {
        Err(Error::LevelOverflow)
    }
}

/// Context-selection state carried from level to level (the reference's context modeler).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Neighbourhood {
    /// Previous coded level in scan order (DQ domain).
    pub nb: i32,
    /// Co-located TCA base level (0 when unused).
    pub base: i32,
    /// HDSP is enabled at the current position.
    pub hdsp_here: bool,
}

impl Neighbourhood {
    #[inline(always)]
    fn nb_class(&self) -> usize {
        ContextLayout::nb_class(self.nb)
    }

    /// Context of the sig flag in `dq_state`.
    #[inline(always)]
    pub fn sig_ctx(&self, dq_state: usize) -> usize {
        if self.hdsp_here {
            ContextLayout::sig_hdsp(dq_state)
        } else if self.base != 0 {
            ContextLayout::sig_tca(dq_state, self.base.unsigned_abs() > 1)
        } else {
            ContextLayout::sig(dq_state, self.nb_class())
        }
    }

    /// [`Neighbourhood::sig_ctx`] chosen by selects instead of branches, for the encoder's
    /// loops. Whether a TCA base level is 0 is data, about as often true as not in a dense
    /// update, so a branch on it mispredicts; the encoder's per-position loops code the
    /// ResNet-50-shaped update about 3.5 % faster this way. The decoder keeps the branches: its
    /// branch on the base after a non-zero sig flag then follows this one's outcome, and with
    /// selects here its update decodes were 2–3 % slower (`benchmarks.md`, session 57).
    #[inline(always)]
    pub fn sig_ctx_by_selects(&self, dq_state: usize) -> usize {
        let tca = ContextLayout::sig_tca(dq_state, self.base.unsigned_abs() > 1);
        let plain = ContextLayout::sig(dq_state, self.nb_class());
        let ctx = select_unpredictable(self.base != 0, tca, plain);
        select_unpredictable(self.hdsp_here, ContextLayout::sig_hdsp(dq_state), ctx)
    }

    /// Context of the sign flag.
    #[inline(always)]
    pub fn sign_ctx(&self) -> usize {
        if self.base != 0 {
            ContextLayout::sign_tca(self.base > 0)
        } else {
            ContextLayout::sign(self.nb_class())
        }
    }

    /// Context of greater-than flag `k` of a level with the given sign.
    ///
    /// Reference quirk: without a base level the context depends on the sign of the current
    /// level; with one it compares `|base| >= k` (so index +1 of flag 0 is never used).
    #[inline(always)]
    pub fn gtx_ctx(&self, layout: &ContextLayout, k: usize, negative: bool) -> usize {
        if self.base != 0 {
            layout.gtx_tca(k, (self.base.unsigned_abs() as usize) < k)
        } else {
            ContextLayout::gtx(k, negative)
        }
    }
}

/// Receiver of the bins of a binarized level: the arithmetic encoder, the parameter optimiser's
/// shadow estimators, or a rate estimate.
pub trait BinSink {
    /// One context-coded bin in context `ctx`.
    fn ctx_bin(&mut self, ctx: usize, bin: bool);
    /// The low `n` bits of `value` as bypass bins, MSB first.
    fn bypass_bins(&mut self, n: u32, value: u32);
}

/// Binarize level `k` in `dq_state` into `sink` (the encoder-side mirror of [`decode_level`]).
///
/// The caller guarantees `lc.accepts(k)`.
#[inline(always)]
pub fn encode_level<S: BinSink>(
    sink: &mut S,
    layout: &ContextLayout,
    nbh: &Neighbourhood,
    lc: &LevelCoding,
    k: i32,
    dq_state: usize,
) {
    if lc.nothing_coded {
        return;
    }
    sink.ctx_bin(nbh.sig_ctx_by_selects(dq_state), k != 0);
    if k == 0 {
        return;
    }
    let negative = k < 0;
    if lc.sign_coded {
        sink.ctx_bin(nbh.sign_ctx(), negative);
    }
    let max = if negative { lc.max_neg } else { lc.max_pos };
    if max <= 1 {
        return;
    }
    let abs = u64::from(k.unsigned_abs());
    let n = lc.num_gtx_flags as usize;
    let mut a = 1u64;
    let mut j = 0usize;
    let mut flag;
    loop {
        flag = abs > a;
        sink.ctx_bin(nbh.gtx_ctx(layout, j, negative), flag);
        if !flag {
            break;
        }
        a += 1;
        j += 1;
        if j >= n || a >= max {
            break;
        }
    }
    if flag && a < max {
        encode_remainder(sink, layout.rem(), abs - a, a, max);
    }
}

/// The remainder `r = |k| − a` of a level whose `a − 1` greater-than flags were all 1: its
/// Exp-Golomb prefix on the contexts from `rem` (at most [`MAX_PREFIX_BINS`] bins, fewer when the
/// magnitude bound `max` rules longer ones out) and its bypass suffix.
#[inline(always)]
pub(crate) fn encode_remainder<S: BinSink>(sink: &mut S, rem: usize, r: u64, a: u64, max: u64) {
    let mut base = 0u64;
    let mut nbits = 0u32;
    let mut j = 0usize;
    loop {
        let more = r >= base + (1u64 << nbits);
        sink.ctx_bin(rem + j, more);
        if !more {
            break;
        }
        base += 1u64 << nbits;
        nbits += 1;
        if j + 1 >= MAX_PREFIX_BINS || a + base + (1u64 << nbits) > max {
            break;
        }
        j += 1;
    }
    sink.bypass_bins(nbits, (r - base) as u32);
}

/// Decode one level in `dq_state` (§3.4). Errors if the level does not fit an i32 (magnitude 2^31
/// only as −2^31).
///
/// Reference quirk: the remainder prefix stops after 31 bins (the encoder has no such limit, but
/// every i32 level, `i32::MIN` included, fits within it).
#[inline(always)]
pub fn decode_level(
    dec: &mut ArithDecoder<'_>,
    ctxs: &mut [ContextModel],
    layout: &ContextLayout,
    nbh: &Neighbourhood,
    lc: &LevelCoding,
    dq_state: usize,
) -> Result<i32, Error> {
    if lc.is_unbounded() {
        decode_level_as::<false>(dec, ctxs, layout, nbh, lc, dq_state)
    } else {
        decode_level_as::<true>(dec, ctxs, layout, nbh, lc, dq_state)
    }
}

/// [`decode_level`] for a binarization known to be bounded by a codebook (`BOUNDED`) or known
/// to be [`LevelCoding::unbounded`], where every bound check folds away.
#[inline(always)]
pub(crate) fn decode_level_as<const BOUNDED: bool>(
    dec: &mut ArithDecoder<'_>,
    ctxs: &mut [ContextModel],
    layout: &ContextLayout,
    nbh: &Neighbourhood,
    lc: &LevelCoding,
    dq_state: usize,
) -> Result<i32, Error> {
    if BOUNDED && lc.nothing_coded {
        return Ok(0);
    }
    let sig = ctx_mut(ctxs, nbh.sig_ctx(dq_state))?;
    if !dec.decode_decision(sig) {
        sig.update(false);
        return Ok(0);
    }
    sig.update(true);
    let negative = if !BOUNDED || lc.sign_coded {
        dec.decode_bin(ctx_mut(ctxs, nbh.sign_ctx())?)
    } else {
        lc.implied_negative
    };
    let max = if !BOUNDED {
        UNBOUNDED
    } else if negative {
        lc.max_neg
    } else {
        lc.max_pos
    };
    let mut a = 1u64;
    if max > 1 {
        let n = lc.num_gtx_flags as usize;
        let mut j = 0usize;
        let mut flag;
        loop {
            let ctx = ctx_mut(ctxs, nbh.gtx_ctx(layout, j, negative))?;
            flag = dec.decode_decision(ctx);
            if !flag {
                ctx.update(false);
                break;
            }
            ctx.update(true);
            a += 1;
            j += 1;
            if j >= n || (BOUNDED && a >= max) {
                break;
            }
        }
        if flag && (!BOUNDED || a < max) {
            let rem = layout.rem();
            let mut nbits = 0u32;
            let mut j = 0usize;
            loop {
                let ctx = ctx_mut(ctxs, rem + j)?;
                if !dec.decode_decision(ctx) {
                    ctx.update(false);
                    break;
                }
                ctx.update(true);
                a += 1u64 << nbits;
                nbits += 1;
                if j + 1 >= MAX_PREFIX_BINS || (BOUNDED && a + (1u64 << nbits) > max) {
                    break;
                }
                j += 1;
            }
            a += u64::from(dec.decode_bypass_bins(nbits));
        }
    }
    signed_level(a, negative)
}

/// The rest of a level whose sig flag decoded as 1, for the common case: no codebook bounds,
/// no TCA base and no HDSP, so the contexts depend only on the previous level's class
/// (`nb_class`: 0 zero, 1 negative, 2 positive) and the sign. The context runs of the
/// greater-than flags and of the remainder prefix are sliced once per level, which takes the
/// per-bin index arithmetic and bounds checks out of the loops. Same bins, same order as
/// [`decode_level_as`].
#[inline(always)]
pub(crate) fn decode_nonzero_plain(
    dec: &mut ArithDecoder<'_>,
    ctxs: &mut [ContextModel],
    layout: &ContextLayout,
    nb_class: usize,
) -> Result<i32, Error> {
    let negative = dec.decode_bin(ctx_mut(ctxs, ContextLayout::sign(nb_class))?);
    // The flag loop always reads flag 0, even with N = 0 (as the general form does).
    let n = (layout.num_gtx_flags() as usize).max(1);
    let gtx = ctx_mut(ctxs, ContextLayout::GTX..ContextLayout::GTX + 2 * n)?;
    let ones = dec.decode_unary::<2>(gtx, usize::from(negative), n);
    let mut a = 1 + ones as u64;
    if ones == n {
        a += decode_remainder(dec, ctxs, layout)?;
    }
    signed_level(a, negative)
}

/// The remainder of a level whose greater-than flags were all 1: its Exp-Golomb prefix (a
/// unary run in consecutive contexts) and suffix; unbounded.
#[inline(always)]
fn decode_remainder(
    dec: &mut ArithDecoder<'_>,
    ctxs: &mut [ContextModel],
    layout: &ContextLayout,
) -> Result<u64, Error> {
    let rem = layout.rem();
    let prefix = ctx_mut(ctxs, rem..rem + MAX_PREFIX_BINS)?;
    // A prefix of `nbits` ones adds 2^0 + ... + 2^(nbits-1).
    let nbits = dec.decode_unary::<1>(prefix, 0, MAX_PREFIX_BINS) as u32;
    Ok((1u64 << nbits) - 1 + u64::from(dec.decode_bypass_bins(nbits)))
}

/// [`decode_nonzero_plain`] at a position whose TCA base level `base` is non-zero (no codebook
/// bounds): the sign's context follows the base's sign, and greater-than flag `k` is in the
/// base's "near" context while `k <= |base|`, in its "far" one after, so the flags are two
/// unary runs. Same bins, same order as [`decode_level_as`].
#[inline(always)]
pub(crate) fn decode_nonzero_tca(
    dec: &mut ArithDecoder<'_>,
    ctxs: &mut [ContextModel],
    layout: &ContextLayout,
    base: i32,
) -> Result<i32, Error> {
    let negative = dec.decode_bin(ctx_mut(ctxs, ContextLayout::sign_tca(base > 0))?);
    // The flag loop always reads flag 0, even with N = 0 (as the general form does).
    let n = (layout.num_gtx_flags() as usize).max(1);
    let first = layout.gtx_tca(0, false);
    // `gtx_tca(k, far)` is `first + 2k + far`.
    let gtx = ctx_mut(ctxs, first..first + 2 * n)?;
    let near = usize::try_from(base.unsigned_abs())
        .map_or(n, |b| b.saturating_add(1))
        .min(n);
    let mut ones = dec.decode_unary::<2>(gtx, 0, near);
    if ones == near && near < n {
        ones += dec.decode_unary::<2>(gtx, 2 * near + 1, n - near);
    }
    let mut a = 1 + ones as u64;
    if ones == n {
        a += decode_remainder(dec, ctxs, layout)?;
    }
    signed_level(a, negative)
}

/// [`decode_nonzero_plain`] under codebook bounds (`lc`, no TCA base, no HDSP): the sign may be
/// implied, the greater-than flags stop at the sign's largest magnitude, and the remainder's
/// prefix stops where one more 1 would pass it. The flag and prefix runs go through the same
/// unary loops. Same bins, same order as [`decode_level_as`] with `BOUNDED`.
#[inline(always)]
pub(crate) fn decode_nonzero_bounded(
    dec: &mut ArithDecoder<'_>,
    ctxs: &mut [ContextModel],
    layout: &ContextLayout,
    nb_class: usize,
    lc: &LevelCoding,
) -> Result<i32, Error> {
    let negative = if lc.sign_coded {
        dec.decode_bin(ctx_mut(ctxs, ContextLayout::sign(nb_class))?)
    } else {
        lc.implied_negative
    };
    let max = if negative { lc.max_neg } else { lc.max_pos };
    let mut a = 1u64;
    if max > 1 {
        // Flag 0 is always read, even with N = 0; the flags stop after N ones, or once the
        // magnitude reaches `max`.
        let n = (layout.num_gtx_flags() as usize).max(1);
        let max_ones = usize::try_from(max - 1).map_or(n, |m| m.min(n));
        let gtx = ctx_mut(ctxs, ContextLayout::GTX..ContextLayout::GTX + 2 * n)?;
        let ones = dec.decode_unary::<2>(gtx, usize::from(negative), max_ones);
        a += ones as u64;
        if ones == max_ones && a < max {
            // After k prefix ones the magnitude is at least a + 2^k − 1; the prefix stops
            // after the k-th one when k reaches MAX_PREFIX_BINS or one more would pass `max`.
            let mut most = 1;
            while most < MAX_PREFIX_BINS && a + (1u64 << (most + 1)) - 1 <= max {
                most += 1;
            }
            let rem = layout.rem();
            let prefix = ctx_mut(ctxs, rem..rem + MAX_PREFIX_BINS)?;
            let nbits = dec.decode_unary::<1>(prefix, 0, most) as u32;
            a += (1u64 << nbits) - 1;
            a += u64::from(dec.decode_bypass_bins(nbits));
        }
    }
    signed_level(a, negative)
}

/// Where the plain level loops put their bins: contexts of type `C` live in a slice the loop
/// indexes itself, so runs of contexts can be sliced once per level. Implemented by the
/// arithmetic encoder (`C` = [`ContextModel`]) and by the param_opt recorder (`C` = one
/// context's bin trace).
pub(crate) trait SliceCoder<C> {
    /// One bin in `ctx`.
    fn bin(&mut self, ctx: &mut C, bin: bool);
    /// `n` zero bins in `ctx`.
    fn zeros(&mut self, ctx: &mut C, n: usize);
    /// The low `n` bits of `value` as bypass bins, MSB first.
    fn bypass_bins(&mut self, n: u32, value: u32);
    /// Called after every level with all contexts (the recorder replays when its buffer is full).
    fn level_done(&mut self, _ctxs: &mut [C]) {}
    /// The greater-than flags of a non-zero level of magnitude `abs`: flag `j` goes to
    /// `gtx[2j + negative]` (`gtx` holds the `2n` flag contexts) and is `abs > j + 1`, up to and
    /// including the first 0. Returns whether all `n` flags were 1 (the remainder follows).
    ///
    /// The flags are known up front: ones, then a zero unless all `n` are ones, so the default
    /// codes the ones with the bin a constant, which takes it out of a context update's table
    /// indices. Same bins, same order as [`gtx_flags_one_by_one`].
    #[inline(always)]
    fn gtx_flags(&mut self, gtx: &mut [C], negative: bool, abs: u64) -> bool {
        let n = gtx.len() / 2;
        let ones = abs.saturating_sub(1).min(n as u64) as usize;
        let (set, rest) = gtx.split_at_mut(2 * ones);
        let sign = usize::from(negative);
        for pair in set.chunks_exact_mut(2) {
            self.bin(&mut pair[sign], true);
        }
        match rest.get_mut(sign) {
            Some(ctx) => {
                self.bin(ctx, false);
                false
            }
            None => true,
        }
    }
    /// The remainder's prefix: 1-bins in `prefix[..ones]`, then a 0-bin in `prefix[ones]` when
    /// `ones < prefix.len()` (the ones with the bin a constant, as in
    /// [`SliceCoder::gtx_flags`]).
    #[inline(always)]
    fn prefix_bins(&mut self, prefix: &mut [C], ones: usize) {
        let (set, rest) = prefix.split_at_mut(ones.min(prefix.len()));
        for ctx in set {
            self.bin(ctx, true);
        }
        if let Some(ctx) = rest.first_mut() {
            self.bin(ctx, false);
        }
    }
    /// Put any bins held back into their contexts (`ctxs`: all of them), before the contexts
    /// are reset or read.
    fn settle(&mut self, _ctxs: &mut [C]) {}
}

/// [`SliceCoder::gtx_flags`] one [`SliceCoder::bin`] at a time, each flag compared as it is
/// coded: for the N = 0 quirk, where the flags' contexts are also the remainder's, and for the
/// recorders' fallback.
#[inline(always)]
pub(crate) fn gtx_flags_one_by_one<C, E: SliceCoder<C> + ?Sized>(
    coder: &mut E,
    gtx: &mut [C],
    negative: bool,
    abs: u64,
) -> bool {
    for (a, pair) in (1u64..).zip(gtx.chunks_exact_mut(2)) {
        let flag = abs > a;
        coder.bin(&mut pair[usize::from(negative)], flag);
        if !flag {
            return false;
        }
    }
    true
}

/// [`SliceCoder::prefix_bins`] one [`SliceCoder::bin`] at a time (as [`gtx_flags_one_by_one`]).
#[inline(always)]
pub(crate) fn prefix_bins_one_by_one<C, E: SliceCoder<C> + ?Sized>(
    coder: &mut E,
    prefix: &mut [C],
    ones: usize,
) {
    for (j, c) in prefix.iter_mut().enumerate() {
        let more = j < ones;
        coder.bin(c, more);
        if !more {
            break;
        }
    }
}

/// The real pass's level loops on an engine in locals ([`ArithEncoder::with_local`]).
impl SliceCoder<ContextModel> for LocalEncoder<'_> {
    #[inline(always)]
    fn bin(&mut self, ctx: &mut ContextModel, bin: bool) {
        self.encode_bin(bin, ctx);
    }
    #[inline(always)]
    fn zeros(&mut self, ctx: &mut ContextModel, n: usize) {
        // A local copy, so no bin waits for the previous one's context store.
        let mut local = *ctx;
        for _ in 0..n {
            self.encode_bin(false, &mut local);
        }
        *ctx = local;
    }
    #[inline(always)]
    fn bypass_bins(&mut self, n: u32, value: u32) {
        self.encode_bypass_bins(n, value);
    }
}

impl SliceCoder<ContextModel> for ArithEncoder {
    #[inline(always)]
    fn bin(&mut self, ctx: &mut ContextModel, bin: bool) {
        self.encode_bin(bin, ctx);
    }
    #[inline(always)]
    fn zeros(&mut self, ctx: &mut ContextModel, n: usize) {
        self.with_local(|e| e.zeros(ctx, n));
    }
    #[inline(always)]
    fn bypass_bins(&mut self, n: u32, value: u32) {
        self.encode_bypass_bins(n, value);
    }
}

/// Encoder-side mirror of [`decode_nonzero_plain`]: the sign, greater-than flags and remainder
/// of a non-zero level `k` in the common case (no codebook bounds, no TCA base, no HDSP), with
/// the greater-than and remainder-prefix contexts sliced once per level. Same bins, same order
/// as [`encode_level`].
#[inline(always)]
pub(crate) fn encode_nonzero_plain<C, E: SliceCoder<C>>(
    coder: &mut E,
    ctxs: &mut [C],
    layout: &ContextLayout,
    nb_class: usize,
    k: i32,
) -> Result<(), Error> {
    let negative = k < 0;
    let sign = ctx_mut(ctxs, ContextLayout::sign(nb_class))?;
    coder.bin(sign, negative);
    // The flag loop always codes flag 0, even with N = 0 (as the general form does).
    let n = (layout.num_gtx_flags() as usize).max(1);
    let gtx = ctx_mut(ctxs, ContextLayout::GTX..ContextLayout::GTX + 2 * n)?;
    let abs = u64::from(k.unsigned_abs());
    // Reference quirk: with N = 0, flag 0 is still coded, and its two contexts are also the
    // remainder's first two (`rem()` starts at `GTX + 4N`), so those bins must reach them in
    // coding order: one at a time.
    let in_order = layout.num_gtx_flags() == 0;
    let all_ones = if in_order {
        gtx_flags_one_by_one(coder, gtx, negative, abs)
    } else {
        coder.gtx_flags(gtx, negative, abs)
    };
    if !all_ones {
        return Ok(());
    }
    encode_remainder_plain(coder, ctxs, layout, abs - (n as u64 + 1), in_order)
}

/// The remainder `r` of a level whose `n` greater-than flags were all 1, without bounds: its
/// Exp-Golomb prefix on the remainder contexts (`in_order`: bin by bin, see
/// [`encode_nonzero_plain`]) and its bypass suffix.
#[inline(always)]
fn encode_remainder_plain<C, E: SliceCoder<C>>(
    coder: &mut E,
    ctxs: &mut [C],
    layout: &ContextLayout,
    r: u64,
    in_order: bool,
) -> Result<(), Error> {
    // The suffix is `r − (2^ones − 1)` in `ones` bypass bins.
    let ones = remainder_prefix_ones(r);
    let rem = layout.rem();
    let prefix = ctx_mut(ctxs, rem..rem + MAX_PREFIX_BINS)?;
    if in_order {
        prefix_bins_one_by_one(coder, prefix, ones);
    } else {
        coder.prefix_bins(prefix, ones);
    }
    coder.bypass_bins(ones as u32, (r - ((1u64 << ones) - 1)) as u32);
    Ok(())
}

/// [`encode_nonzero_plain`] at a position whose TCA base level `base` is non-zero: the sign in
/// the base sign's context, greater-than flag `j` in the base's "near" context while
/// `j <= |base|` and in its "far" one after. The flags go bin by bin ([`SliceCoder::gtx_flags`]
/// may hold bins back for the flag contexts of the plain block only). Same bins, same order as
/// [`encode_level`].
#[inline(always)]
pub(crate) fn encode_nonzero_tca<C, E: SliceCoder<C>>(
    coder: &mut E,
    ctxs: &mut [C],
    layout: &ContextLayout,
    base: i32,
    k: i32,
) -> Result<(), Error> {
    let negative = k < 0;
    coder.bin(ctx_mut(ctxs, ContextLayout::sign_tca(base > 0))?, negative);
    // The flag loop always codes flag 0, even with N = 0 (as the general form does).
    let n = (layout.num_gtx_flags() as usize).max(1);
    let first = layout.gtx_tca(0, false);
    // `gtx_tca(j, far)` is `first + 2j + far`.
    let gtx = ctx_mut(ctxs, first..first + 2 * n)?;
    let abs = u64::from(k.unsigned_abs());
    let far_from = u64::from(base.unsigned_abs()) + 1;
    for (j, pair) in (0u64..).zip(gtx.chunks_exact_mut(2)) {
        let flag = abs > j + 1;
        coder.bin(&mut pair[usize::from(j >= far_from)], flag);
        if !flag {
            return Ok(());
        }
    }
    // N = 0 shares its flag contexts with the remainder's first ones: bin by bin, in order.
    let in_order = layout.num_gtx_flags() == 0;
    encode_remainder_plain(coder, ctxs, layout, abs - (n as u64 + 1), in_order)
}

/// The ones of remainder `r`'s Exp-Golomb prefix, which is also its suffix's length: prefix
/// bin j is `r ≥ 2^(j+1) − 1`, so there are ⌊log2(r + 1)⌋ of them, at most [`MAX_PREFIX_BINS`]
/// (the prefix then has no terminating zero).
#[inline(always)]
pub(crate) fn remainder_prefix_ones(r: u64) -> usize {
    ((r + 1).ilog2() as usize).min(MAX_PREFIX_BINS)
}

/// The context (or run of contexts) at `idx`, or an internal error: the layouts keep every index
/// in range, so this only guards against a bug.
#[inline(always)]
pub(crate) fn ctx_mut<C, I: std::slice::SliceIndex<[C]>>(
    ctxs: &mut [C],
    idx: I,
) -> Result<&mut I::Output, Error> {
    ctxs.get_mut(idx)
        .ok_or(Error::Internal("context index out of range"))
}

/// Sink that adds up estimated bits without adapting the contexts (the reference's `BinEst` cost).
pub(crate) struct EstimateSink<'c> {
    pub ctxs: &'c [ContextModel],
    pub bits: u32,
}

impl BinSink for EstimateSink<'_> {
    #[inline(always)]
    fn ctx_bin(&mut self, ctx: usize, bin: bool) {
        if let Some(c) = self.ctxs.get(ctx) {
            self.bits += c.est_bits(bin);
        }
    }
    #[inline(always)]
    fn bypass_bins(&mut self, n: u32, _value: u32) {
        self.bits += n * BYPASS_BITS;
    }
}

/// Sink that only adapts the contexts (the reference's `BinEst` update): the test oracle of
/// `RateModel::update`.
#[cfg(test)]
pub(crate) struct UpdateSink<'c> {
    pub ctxs: &'c mut [ContextModel],
}

#[cfg(test)]
impl BinSink for UpdateSink<'_> {
    #[inline(always)]
    fn ctx_bin(&mut self, ctx: usize, bin: bool) {
        if let Some(c) = self.ctxs.get_mut(ctx) {
            c.update(bin);
        }
    }
    #[inline(always)]
    fn bypass_bins(&mut self, _n: u32, _value: u32) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records bins so the binarization itself can be checked.
    #[derive(Default)]
    struct Trace {
        bins: Vec<(usize, bool)>,
        bypass: Vec<(u32, u32)>,
    }

    impl BinSink for Trace {
        fn ctx_bin(&mut self, ctx: usize, bin: bool) {
            self.bins.push((ctx, bin));
        }
        fn bypass_bins(&mut self, n: u32, value: u32) {
            self.bypass.push((n, value));
        }
    }

    #[test]
    fn kat_b_minus_five() {
        // From the KAT-B trace: -5 after neighbour 3 codes sig ctx 2, sign ctx 50, gtx 54..62 = 1,1,1,1,0.
        let layout = ContextLayout::new(10);
        let nbh = Neighbourhood {
            nb: 3,
            ..Default::default()
        };
        let mut t = Trace::default();
        encode_level(&mut t, &layout, &nbh, &LevelCoding::unbounded(10), -5, 0);
        assert_eq!(
            t.bins,
            vec![
                (2, true),
                (50, true),
                (54, true),
                (56, true),
                (58, true),
                (60, true),
                (62, false)
            ]
        );
        assert!(t.bypass.is_empty());
    }

    #[test]
    fn remainder_prefix_groups() {
        let layout = ContextLayout::new(1);
        let nbh = Neighbourhood::default();
        let lc = LevelCoding::unbounded(1);
        // N = 1: |k| = 2 + r. r = 0 -> prefix "0"; r = 1..2 -> "10" + 1 bit; r = 3..6 -> "110" + 2 bits.
        for (k, prefix, nbits, suffix) in [
            (2, vec![false], 0, 0),
            (3, vec![true, false], 1, 0),
            (4, vec![true, false], 1, 1),
            (5, vec![true, true, false], 2, 0),
        ] {
            let mut t = Trace::default();
            encode_level(&mut t, &layout, &nbh, &lc, k, 0);
            let got: Vec<bool> = t
                .bins
                .iter()
                .filter(|(c, _)| *c >= layout.rem())
                .map(|(_, b)| *b)
                .collect();
            assert_eq!(got, prefix, "k={k}");
            assert_eq!(t.bypass, vec![(nbits, suffix)], "k={k}");
        }
    }

    #[test]
    fn codebook_bounds() {
        let lc = LevelCoding::new(11, 1, 6, 2);
        assert!(lc.accepts(3) && lc.accepts(-2) && !lc.accepts(4) && !lc.accepts(-3));
        let implicit = LevelCoding::new(11, 1, 4, 0);
        assert!(!implicit.sign_coded && implicit.accepts(3) && !implicit.accepts(-1));
        let gpi0 = LevelCoding::new(11, 0, 4, 0);
        assert_eq!(gpi0, LevelCoding::unbounded(11));
        assert!(LevelCoding::new(11, 1, 1, 0).nothing_coded);
    }
}

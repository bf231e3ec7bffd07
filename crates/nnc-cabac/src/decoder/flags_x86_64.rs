//! The greater-than flag loop in x86-64 assembly (feature `asm`, on by default).
//!
//! The flag loop decodes about 70 % of a dense tensor's bins: the greater-than flags and, in
//! the plain level loop, the remainder's prefix (a unary run too, in consecutive contexts).
//! Compiled from Rust, one of its bins took about 70 instructions, with the range spilled to
//! the stack and the context fields loaded twice; here it takes 52, and the range's path from
//! one bin to the next is two operations shorter (rLPS subtracted straight from memory, rMPS
//! doubled by a select instead of a variable shift). Source-level attempts to shorten it kept
//! losing to register allocation (docs/benchmarks-history.md, "Session 15"), so the loop is
//! written out by hand. It uses baseline x86-64 instructions only.
//!
//! Same arithmetic as [`ArithDecoder::decode_decision`] followed by [`ContextModel::update`],
//! bin for bin: `ArithDecoder::decode_unary_portable` is what the tests compare it with.

use super::ArithDecoder;
use crate::context::ContextModel;
use crate::tables::{RLPS_SIGNED, S0_NEXT, S1_STEP};

/// The tables the loop reads, at fixed offsets from one base register.
#[repr(C)]
struct Tables {
    rlps: [u32; 512],
    s0_next: [i8; 2048],
    s1_step: [i16; 512],
    /// The rLPS byte of `rlps`, widened: the loop subtracts it straight from memory.
    rlps_low: [u32; 512],
}

static TABLES: Tables = Tables {
    rlps: RLPS_SIGNED,
    s0_next: S0_NEXT,
    s1_step: S1_STEP,
    rlps_low: {
        let mut t = [0u32; 512];
        let mut i = 0;
        while i < 512 {
            t[i] = RLPS_SIGNED[i] & 0xFF;
            i += 1;
        }
        t
    },
};

const _: () = {
    assert!(std::mem::offset_of!(Tables, s0_next) == 2048);
    assert!(std::mem::offset_of!(Tables, s1_step) == 4096);
    assert!(std::mem::offset_of!(Tables, rlps_low) == 5120);
};

/// The loop stopped on a 0 bin (set with `xor`, so it must be 0).
const ZERO: u64 = 0;
const _: () = assert!(ZERO == 0);
/// The loop coded all its flags as 1.
const ALL_ONES: u64 = 1;
/// Fewer than 8 look-ahead bits are left: top up and go on.
const TOP_UP: u64 = 2;

/// The §2.3 update of the context at `{ctx}` (P in `{p}`) for a bin known on this path:
/// S0 from `S0_NEXT[s0_row + 256·bin + S0]` at `$s0_next` = offset of the bin's half, S1 moved by
/// `S1_STEP[s1_row + 32·bin + ((S1 + 127·!bin) >> 7 & 31)]` at `$s1_step`, where `$shift_in`
/// puts `S1` (bin 1) or `S1 + 127` (bin 0) into `{x}`.
macro_rules! constant_bin_update {
    ($s0_next:literal, $s1_step:literal, $shift_in:literal) => {
        concat!(
            "movsbl 2({ctx}), {sc:e}\n",
            "movzbl 2({ctx}), {y:e}\n",
            "movzwl 4({ctx}), {rm:e}\n",
            "add {rm:e}, {y:e}\n",
            "movsbl ",
            $s0_next,
            "({tab}, {y}), {y:e}\n",
            "shl $4, {sc:e}\n",
            "sub {sc:e}, {p:e}\n",
            "movzwl 6({ctx}), {rm:e}\n",
            $shift_in,
            "\n",
            "sar $7, {x:e}\n",
            "and $31, {x:e}\n",
            "add {rm:e}, {x:e}\n",
            "movzwl ",
            $s1_step,
            "({tab}, {x}, 2), {x:e}\n",
            "add {x:e}, {p:e}\n",
            "mov {y:e}, {x:e}\n",
            "shl $4, {x:e}\n",
            "add {x:e}, {p:e}\n",
            "mov {p:x}, ({ctx})\n",
            "mov {y:l}, 2({ctx})\n",
        )
    };
}

impl ArithDecoder<'_> {
    /// [`ArithDecoder::decode_unary`] in assembly (falls back to the Rust loop when the run
    /// would leave `ctxs`).
    #[inline(always)]
    pub(super) fn decode_unary_asm<const STEP: usize>(
        &mut self,
        ctxs: &mut [ContextModel],
        start: usize,
        max_ones: usize,
    ) -> usize {
        let fits = max_ones
            .checked_sub(1)
            .and_then(|m| m.checked_mul(STEP))
            .and_then(|m| m.checked_add(start))
            .is_some_and(|last| last < ctxs.len());
        if !fits {
            return self.decode_unary_portable::<STEP>(ctxs, start, max_ones);
        }
        let first = ctxs[start..].as_mut_ptr();
        let end = first as usize + 8 * STEP * max_ones;
        let mut ctx = first;
        loop {
            let mut range = u64::from(self.range);
            let mut window = self.window;
            let mut avail = u64::from(self.avail);
            let status: u64;
            // SAFETY: `ctx` walks `ctxs[start + STEP·j]` for j < max_ones, all in bounds (checked
            // above), and the loop leaves before `ctx` reaches `end`. Table reads stay inside
            // `TABLES`: the rLPS index is at most 63 + (0xE0 << 1) < 512; S0_NEXT's is
            // s0_row + 256 + 255 with s0_row <= 1536; S1_STEP's is s1_row + 32 + 31 with
            // s1_row <= 448 (`s0_row` / `s1_row` are only set from their constructors).
            // `avail` >= 8 on entry (the engine's invariant), so no bin runs out of bits.
            #[allow(unsafe_code)]
            unsafe {
                std::arch::asm!(
                    "2:",
                    // rLPS entry for the context's column and the range.
                    "movswl ({ctx}), {p:e}",
                    "mov {p:e}, {x:e}",
                    "sar $7, {x:e}",
                    "and $63, {x:e}",
                    "lea ({tab}, {x}, 4), {x}",
                    "mov {range:e}, {e:e}",
                    "and $0xe0, {e:e}",
                    // rMPS, its scaled compare value, and rMPS renormalised (doubled below 256).
                    "mov {range:e}, {rm:e}",
                    "sub 5120({x}, {e}, 8), {rm:e}",
                    "mov ({x}, {e}, 8), {e:e}",
                    "mov {rm}, {sc}",
                    "shl $47, {sc}",
                    "lea ({rm}, {rm}), {x}",
                    "xor %ecx, %ecx",
                    "cmp $256, {rm:e}",
                    "setb %cl",
                    "cmovb {x:e}, {rm:e}",
                    "mov {e:e}, {x:e}",
                    "shr $8, {x:e}",
                    "and $15, {x:e}",
                    "shr $16, {e:e}",
                    // LPS when window >= scaled: select range, shift and window.
                    "mov {window}, {y}",
                    "sub {sc}, {y}",
                    "cmovae {y}, {window}",
                    "cmovae {x:e}, %ecx",
                    "cmovb {rm:e}, {e:e}",
                    "setae {x:l}",
                    "shl %cl, {window}",
                    "sub %ecx, {avail:e}",
                    "mov {e:e}, {range:e}",
                    // bin = MPS ^ LPS; the MPS is 1 when P >= 0.
                    "mov {p:e}, {y:e}",
                    "shr $31, {y:e}",
                    "cmp {y:l}, {x:l}",
                    "jne 4f",
                    // bin 1: the bin-1 halves of S0_NEXT (2048 + 256) and S1_STEP (4096 + 2·32).
                    constant_bin_update!("2304", "4160", "mov {p:e}, {x:e}"),
                    "add ${stride}, {ctx}",
                    "cmp {end}, {ctx}",
                    "jae 5f",
                    "cmp $8, {avail:e}",
                    "jae 2b",
                    "mov ${top_up}, {e:e}",
                    "jmp 9f",
                    // bin 0: the bin-0 halves, and the S1 index rounded by 127.
                    "4:",
                    constant_bin_update!("2048", "4096", "lea 127({p}), {x}"),
                    // ZERO, which is 0 (asserted above).
                    "xor {e:e}, {e:e}",
                    "jmp 9f",
                    "5:",
                    "mov ${all_ones}, {e:e}",
                    "9:",
                    ctx = inout(reg) ctx,
                    range = inout(reg) range,
                    window = inout(reg) window,
                    avail = inout(reg) avail,
                    end = in(reg) end,
                    tab = in(reg) &TABLES,
                    stride = const 8 * STEP,
                    all_ones = const ALL_ONES,
                    top_up = const TOP_UP,
                    e = out(reg) status,
                    p = out(reg) _,
                    x = out(reg) _,
                    rm = out(reg) _,
                    sc = out(reg) _,
                    y = out(reg) _,
                    out("ecx") _,
                    options(att_syntax, nostack),
                );
            }
            self.range = range as u32;
            self.window = window;
            self.avail = avail as u32;
            if status == TOP_UP {
                self.refill();
                continue;
            }
            self.ensure();
            let ones = (ctx as usize - first as usize) / (8 * STEP);
            debug_assert!(status == ZERO || status == ALL_ONES);
            return ones;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{ArithDecoder, ArithEncoder, ContextModel};

    /// Runs of random length (many reaching their limit, some long enough to need top-ups
    /// inside the loop), in contexts of every init set, decoded by the assembly loop and by the
    /// Rust loop: same counts, same context states, same bytes consumed.
    fn same_as_portable<const STEP: usize>(seed: u64) {
        let mut x = seed;
        let mut next = |n: u64| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % n
        };
        let init: Vec<ContextModel> = (0..70).map(|i| ContextModel::new((i % 9) as u8)).collect();
        let mut enc = ArithEncoder::new();
        let mut ctxs = init.clone();
        let mut script = Vec::new();
        for _ in 0..20_000 {
            let start = next(2) as usize;
            let max = 1 + next(31) as usize;
            let ones = if next(4) == 0 {
                max
            } else {
                next(max as u64 + 1) as usize
            };
            for j in 0..ones {
                enc.encode_bin(true, &mut ctxs[start + STEP * j]);
            }
            if ones < max {
                enc.encode_bin(false, &mut ctxs[start + STEP * ones]);
            }
            let bypass = next(12) as u32;
            enc.encode_bypass_bins(bypass, 0x5A5 & ((1 << bypass) - 1));
            script.push((start, max, ones, bypass));
        }
        let bytes = enc.finish();
        let (mut a, mut b) = (ArithDecoder::new(&bytes), ArithDecoder::new(&bytes));
        let (mut ca, mut cb) = (init.clone(), init);
        for &(start, max, ones, bypass) in &script {
            assert_eq!(a.decode_unary::<STEP>(&mut ca, start, max), ones);
            assert_eq!(b.decode_unary_portable::<STEP>(&mut cb, start, max), ones);
            assert_eq!(ca, cb);
            assert_eq!(a.decode_bypass_bins(bypass), b.decode_bypass_bins(bypass));
        }
        assert_eq!(ctxs, ca);
        assert_eq!(a.finish(), Ok(bytes.len()));
        assert_eq!(b.finish(), Ok(bytes.len()));
    }

    #[test]
    fn greater_than_flags_match_the_rust_loop() {
        for seed in 1..4 {
            same_as_portable::<2>(seed);
        }
    }

    #[test]
    fn consecutive_contexts_match_the_rust_loop() {
        same_as_portable::<1>(7);
    }

    #[test]
    fn runs_past_the_slice_fall_back_to_the_rust_loop() {
        let mut enc = ArithEncoder::new();
        let mut ctxs = vec![ContextModel::new(3); 5];
        for i in 0..3 {
            enc.encode_bin(true, &mut ctxs[2 * i]);
        }
        let bytes = enc.finish();
        let mut d = ArithDecoder::new(&bytes);
        let mut dec_ctxs = vec![ContextModel::new(3); 5];
        // Four flags asked for, three contexts there: the run stops at the slice's end.
        assert_eq!(d.decode_unary::<2>(&mut dec_ctxs, 0, 4), 3);
        assert_eq!(dec_ctxs, ctxs);
    }
}

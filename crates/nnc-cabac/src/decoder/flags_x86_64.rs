//! The decoder's hand-written loops in x86-64 assembly (feature `asm`, on by default).
//!
//! **The greater-than flag loop** decodes about 70 % of a dense tensor's bins: the greater-than
//! flags and, in the plain level loop, the remainder's prefix (a unary run too, in consecutive
//! contexts). Compiled from Rust, one of its bins took about 70 instructions, with the range
//! spilled to the stack and the context fields loaded twice; here it takes 52, and the range's
//! path from one bin to the next is two operations shorter (rLPS subtracted straight from
//! memory, rMPS doubled by a select instead of a variable shift). Source-level attempts to
//! shorten it kept losing to register allocation (docs/benchmarks-history.md, "Session 15"), so
//! the loop is written out by hand.
//!
//! **The DQ zero-run loop** decodes the sig flags of a run of zeros in the DQ states a zero
//! moves on (1 → 7 → 4 → 2 and 3 → 6), where each position has another context. In a sparse
//! or pruned tensor these are most of the bins (docs/benchmarks.md, "Session 32"). It shares
//! the flag loop's decision and update code; the state lives in the register that indexes the
//! contexts, and the count of bins left on the stack, since no register is free.
//!
//! **The TCA zero-run loop** is the DQ zero-run loop for updates coded with temporal context
//! adaptation: each position's sig context also follows its base level (the plain context
//! where it is 0, one of two TCA contexts elsewhere), so a run of zeros goes on across
//! positions of both kinds. The base pointer and the context pointer join the count on the
//! stack. A sparse update spends most of its bins here.
//!
//! All use baseline x86-64 instructions only, with the same arithmetic as
//! [`ArithDecoder::decode_decision`] followed by [`ContextModel::update`], bin for bin:
//! `ArithDecoder::decode_unary_portable`, `ArithDecoder::decode_dq_zero_run_portable` and
//! `ArithDecoder::decode_tca_zero_run_portable` are what the tests compare them with.

use super::ArithDecoder;
use super::ZeroRun;
use crate::context::{ContextLayout, ContextModel};
use crate::tables::{DQ_STATE_TRANSITION, RLPS_SIGNED, S0_NEXT, S1_STEP};

/// The tables the loop reads, at fixed offsets from one base register.
#[repr(C)]
struct Tables {
    rlps: [u32; 512],
    s0_next: [i8; 2048],
    s1_step: [i16; 512],
    /// The rLPS byte of `rlps`, widened: the loop subtracts it straight from memory.
    rlps_low: [u32; 512],
    /// `3·s` → `3·s'`, `s'` the DQ state after a zero level in state `s` (other entries 0):
    /// the sig-flag context index of the next position of a zero run.
    zero_next3: [u8; 24],
    /// `3·s` → `ContextLayout::sig_tca(s, false)` (other entries 0): the first of the two
    /// sig-flag contexts of state `s` at a position whose TCA base level is not 0.
    tca_sig3: [u8; 24],
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
    zero_next3: {
        let mut t = [0u8; 24];
        let mut s = 0;
        while s < 8 {
            t[3 * s] = 3 * DQ_STATE_TRANSITION[s][0];
            s += 1;
        }
        t
    },
    tca_sig3: {
        let mut t = [0u8; 24];
        let mut s = 0;
        while s < 8 {
            t[3 * s] = ContextLayout::sig_tca(s, false) as u8;
            s += 1;
        }
        t
    },
};

const _: () = {
    assert!(std::mem::offset_of!(Tables, s0_next) == 2048);
    assert!(std::mem::offset_of!(Tables, s1_step) == 4096);
    assert!(std::mem::offset_of!(Tables, rlps_low) == 5120);
    assert!(std::mem::offset_of!(Tables, zero_next3) == 7168);
    assert!(std::mem::offset_of!(Tables, tca_sig3) == 7192);
};

/// The loop stopped on a 0 bin (set with `xor`, so it must be 0).
const ZERO: u64 = 0;
const _: () = assert!(ZERO == 0);
/// The loop coded all its flags as 1.
const ALL_ONES: u64 = 1;
/// Fewer than 8 look-ahead bits are left: top up and go on.
const TOP_UP: u64 = 2;
/// The sig-flag contexts of the eight DQ states; the zero-run loop indexes the one of state `s`
/// and neighbour class 0 as `3·s`, which is `ContextLayout::sig(s, 0)`.
const SIG_CONTEXTS: usize = ContextLayout::sig(8, 0);
const _: () = assert!(ContextLayout::sig(1, 0) == 3 && ContextLayout::sig(0, 0) == 0);
const _: () = assert!(SIG_CONTEXTS == 24);
/// The sig-flag contexts of the eight DQ states with and without a TCA base level: the TCA run
/// loop reads up to `ContextLayout::sig_tca(7, true)`.
const TCA_SIG_CONTEXTS: usize = ContextLayout::sig_tca(8, false);
const _: () = assert!(TCA_SIG_CONTEXTS == 40);
/// The zero run ended on a 1 bin.
const ONE: u64 = 3;
/// The zero run decoded all the bins it was given.
const MAX_REACHED: u64 = 4;

/// The §2.3 update of the context at `{ctx}` (P in `{p}`) for a bin known on this path:
/// S0 from `S0_NEXT[s0_row + 256·bin + S0]` at `$s0_next` = offset of the bin's half, S1 moved by
/// `S1_STEP[s1_row + 32·bin + ((S1 + 127·!bin) >> 7 & 31)]` at `$s1_step`, where `$shift_in`
/// puts `S1` (bin 1) or `S1 + 127` (bin 0) into `{x}`.
macro_rules! constant_bin_update {
    ($ctx:literal, $s0_next:literal, $s1_step:literal, $shift_in:literal) => {
        concat!(
            "movsbl 2({",
            $ctx,
            "}), {sc:e}\n",
            "movzbl 2({",
            $ctx,
            "}), {y:e}\n",
            "movzwl 4({",
            $ctx,
            "}), {rm:e}\n",
            "add {rm:e}, {y:e}\n",
            "movsbl ",
            $s0_next,
            "({tab}, {y}), {y:e}\n",
            "shl $4, {sc:e}\n",
            "sub {sc:e}, {p:e}\n",
            "movzwl 6({",
            $ctx,
            "}), {rm:e}\n",
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
            "mov {p:x}, ({",
            $ctx,
            "})\n",
            "mov {y:l}, 2({",
            $ctx,
            "})\n",
        )
    };
}

/// One bin's decision for the context whose P was loaded into `{p}`: the engine (`{range}`,
/// `{window}`, `{avail}`) moves on, and the comparison `cmp {y:l}, {x:l}` it ends with sets
/// equal for a 1 bin, not equal for a 0 bin. Clobbers `{e}`, `{x}`, `{rm}`, `{sc}`, `{y}`, `%ecx`.
macro_rules! decide {
    () => {
        concat!(
            // rLPS entry for the context's column and the range.
            "mov {p:e}, {x:e}\n",
            "sar $7, {x:e}\n",
            "and $63, {x:e}\n",
            "lea ({tab}, {x}, 4), {x}\n",
            "mov {range:e}, {e:e}\n",
            "and $0xe0, {e:e}\n",
            // rMPS, its scaled compare value, and rMPS renormalised (doubled below 256).
            "mov {range:e}, {rm:e}\n",
            "sub 5120({x}, {e}, 8), {rm:e}\n",
            "mov ({x}, {e}, 8), {e:e}\n",
            "mov {rm}, {sc}\n",
            "shl $47, {sc}\n",
            "lea ({rm}, {rm}), {x}\n",
            "xor %ecx, %ecx\n",
            "cmp $256, {rm:e}\n",
            "setb %cl\n",
            "cmovb {x:e}, {rm:e}\n",
            "mov {e:e}, {x:e}\n",
            "shr $8, {x:e}\n",
            "and $15, {x:e}\n",
            "shr $16, {e:e}\n",
            // LPS when window >= scaled: select range, shift and window.
            "mov {window}, {y}\n",
            "sub {sc}, {y}\n",
            "cmovae {y}, {window}\n",
            "cmovae {x:e}, %ecx\n",
            "cmovb {rm:e}, {e:e}\n",
            "setae {x:l}\n",
            "shl %cl, {window}\n",
            "sub %ecx, {avail:e}\n",
            "mov {e:e}, {range:e}\n",
            // bin = MPS ^ LPS; the MPS is 1 when P >= 0.
            "mov {p:e}, {y:e}\n",
            "shr $31, {y:e}\n",
            "cmp {y:l}, {x:l}\n",
        )
    };
}

impl ArithDecoder<'_> {
    /// The engine's state as the loops hold it: range, window, look-ahead bits.
    #[inline(always)]
    fn registers(&self) -> (u64, u64, u64) {
        (u64::from(self.range), self.window, u64::from(self.avail))
    }

    /// The engine's state back from the loops' registers (range < 2^9, avail <= 64).
    #[inline(always)]
    fn set_registers(&mut self, range: u64, window: u64, avail: u64) {
        self.range = range as u32;
        self.window = window;
        self.avail = avail as u32;
    }

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
            let (mut range, mut window, mut avail) = self.registers();
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
                    "movswl ({ctx}), {p:e}",
                    decide!(),
                    "jne 4f",
                    // bin 1: the bin-1 halves of S0_NEXT (2048 + 256) and S1_STEP (4096 + 2·32).
                    constant_bin_update!("ctx", "2304", "4160", "mov {p:e}, {x:e}"),
                    "add ${stride}, {ctx}",
                    "cmp {end}, {ctx}",
                    "jae 5f",
                    "cmp $8, {avail:e}",
                    "jae 2b",
                    "mov ${top_up}, {e:e}",
                    "jmp 9f",
                    // bin 0: the bin-0 halves, and the S1 index rounded by 127.
                    "4:",
                    constant_bin_update!("ctx", "2048", "4096", "lea 127({p}), {x}"),
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
            self.set_registers(range, window, avail);
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

    /// [`ArithDecoder::decode_dq_zero_run`] in assembly (the Rust loop when `ctxs` is too short
    /// for the sig contexts of all eight states).
    #[inline(always)]
    pub(super) fn decode_dq_zero_run_asm(
        &mut self,
        ctxs: &mut [ContextModel],
        state: u8,
        max: usize,
    ) -> ZeroRun {
        if ctxs.len() < SIG_CONTEXTS {
            return self.decode_dq_zero_run_portable(ctxs, state, max);
        }
        let base = ctxs.as_mut_ptr();
        self.zero_run_blocks(state, max, |r, _| {
            let status: u64;
            // SAFETY: `t` is always 3·s for a state s < 8 (`zero_next3` maps those to those), so
            // the context read and written is `ctxs[t]` with t <= 21 < SIG_CONTEXTS (24) <=
            // ctxs.len(). Table reads are bounded as in `decode_unary_asm`, and `zero_next3` is
            // read at t < 24.
            // The count of bins left is pushed on entry and popped on every exit (the block may
            // use the stack: no `nostack`). `avail` >= 8 on entry, as there.
            #[allow(unsafe_code)]
            unsafe {
                std::arch::asm!(
                    "push {y}",
                    "2:",
                    "movswl ({base}, {t}, 8), {p:e}",
                    decide!(),
                    "je 4f",
                    // bin 0: update, next state, one bin fewer left.
                    "lea ({base}, {t}, 8), {e}",
                    constant_bin_update!("e", "2048", "4096", "lea 127({p}), {x}"),
                    "movzbl 7168({tab}, {t}), {t:e}",
                    "subq $1, (%rsp)",
                    "je 5f",
                    "cmp $8, {avail:e}",
                    "jae 2b",
                    "mov ${top_up}, {e:e}",
                    "jmp 9f",
                    // bin 1: update and stop, the state left at this position.
                    "4:",
                    "lea ({base}, {t}, 8), {e}",
                    constant_bin_update!("e", "2304", "4160", "mov {p:e}, {x:e}"),
                    "mov ${one}, {e:e}",
                    "jmp 9f",
                    "5:",
                    "mov ${max_reached}, {e:e}",
                    "9:",
                    "pop {y}",
                    base = in(reg) base,
                    t = inout(reg) r.t,
                    range = inout(reg) r.range,
                    window = inout(reg) r.window,
                    avail = inout(reg) r.avail,
                    y = inout(reg) r.left,
                    tab = in(reg) &TABLES,
                    top_up = const TOP_UP,
                    one = const ONE,
                    max_reached = const MAX_REACHED,
                    e = out(reg) status,
                    p = out(reg) _,
                    x = out(reg) _,
                    rm = out(reg) _,
                    sc = out(reg) _,
                    out("ecx") _,
                    options(att_syntax),
                );
            }
            status
        })
    }

    /// A zero run decoded by `block`, one of the zero-run assembly blocks, called again after
    /// each top-up of the look-ahead bits until it stops on a 1 bin or after `max` bins. The
    /// block gets the engine's registers, the run's `t = 3·s` and the count of bins left, and
    /// the number of bins already decoded; it leaves them where it stopped and returns its
    /// status (`TOP_UP`, `ONE` or `MAX_REACHED`).
    #[inline(always)]
    fn zero_run_blocks(
        &mut self,
        state: u8,
        max: usize,
        mut block: impl FnMut(&mut RunRegisters, usize) -> u64,
    ) -> ZeroRun {
        let mut r = RunRegisters {
            range: 0,
            window: 0,
            avail: 0,
            t: 3 * u64::from(state & 7),
            left: max as u64,
        };
        loop {
            if r.left == 0 {
                return ZeroRun {
                    zeros: max,
                    state: (r.t / 3) as u8,
                    one: false,
                };
            }
            (r.range, r.window, r.avail) = self.registers();
            let done = max - r.left as usize;
            let status = block(&mut r, done);
            self.set_registers(r.range, r.window, r.avail);
            if status == TOP_UP {
                self.refill();
                continue;
            }
            self.ensure();
            debug_assert!(status == ONE || status == MAX_REACHED);
            return ZeroRun {
                zeros: max - r.left as usize,
                state: (r.t / 3) as u8,
                one: status == ONE,
            };
        }
    }

    /// [`ArithDecoder::decode_tca_zero_run`] in assembly (the Rust loop when `ctxs` is too short
    /// for the sig contexts of all eight states, with and without a base level).
    #[inline(always)]
    pub(super) fn decode_tca_zero_run_asm(
        &mut self,
        ctxs: &mut [ContextModel],
        state: u8,
        bases: &[i32],
    ) -> ZeroRun {
        if ctxs.len() < TCA_SIG_CONTEXTS {
            return self.decode_tca_zero_run_portable(ctxs, state, bases);
        }
        let base = ctxs.as_mut_ptr();
        self.zero_run_blocks(state, bases.len(), |r, done| {
            let next = bases[done..].as_ptr();
            let status: u64;
            // SAFETY: as in `decode_dq_zero_run_asm` for `t`, the tables and `avail`. The base
            // level read is `bases[done + j]` for the block's j-th bin, and the block decodes at
            // most `left` = `bases.len() − done` bins (it counts `left` down after each read and
            // leaves at 0), so every read is inside `bases`. The context index is `t` <= 21 or
            // `tca_sig3[t] + 1` <= 39 < TCA_SIG_CONTEXTS <= ctxs.len(). Three stack slots (count,
            // base pointer, which comes in as `{e}`, and context pointer) are pushed on entry and
            // dropped on every exit.
            #[allow(unsafe_code)]
            unsafe {
                std::arch::asm!(
                    "push {y}",
                    "push {e}",
                    "sub $8, %rsp",
                    "2:",
                    // The context: 3·s where the base level b is 0, else sig_tca(s, |b| > 1);
                    // |b| > 1 is b + 1 > 2 unsigned.
                    "mov 8(%rsp), {e}",
                    "movl ({e}), {x:e}",
                    "movzbl 7192({tab}, {t}), {rm:e}",
                    "lea 1({x}), {sc:e}",
                    "xor {y:e}, {y:e}",
                    "cmp $2, {sc:e}",
                    "seta {y:l}",
                    "add {y:e}, {rm:e}",
                    "test {x:e}, {x:e}",
                    "cmove {t:e}, {rm:e}",
                    "lea ({base}, {rm}, 8), {rm}",
                    "mov {rm}, (%rsp)",
                    "movswl ({rm}), {p:e}",
                    decide!(),
                    "je 4f",
                    // bin 0: update, next state, next base, one bin fewer left.
                    "mov (%rsp), {e}",
                    constant_bin_update!("e", "2048", "4096", "lea 127({p}), {x}"),
                    "movzbl 7168({tab}, {t}), {t:e}",
                    "addq $4, 8(%rsp)",
                    "subq $1, 16(%rsp)",
                    "je 5f",
                    "cmp $8, {avail:e}",
                    "jae 2b",
                    "mov ${top_up}, {e:e}",
                    "jmp 9f",
                    // bin 1: update and stop, the state left at this position.
                    "4:",
                    "mov (%rsp), {e}",
                    constant_bin_update!("e", "2304", "4160", "mov {p:e}, {x:e}"),
                    "mov ${one}, {e:e}",
                    "jmp 9f",
                    "5:",
                    "mov ${max_reached}, {e:e}",
                    "9:",
                    "add $16, %rsp",
                    "pop {y}",
                    base = in(reg) base,
                    t = inout(reg) r.t,
                    range = inout(reg) r.range,
                    window = inout(reg) r.window,
                    avail = inout(reg) r.avail,
                    y = inout(reg) r.left,
                    tab = in(reg) &TABLES,
                    top_up = const TOP_UP,
                    one = const ONE,
                    max_reached = const MAX_REACHED,
                    e = inout(reg) next => status,
                    p = out(reg) _,
                    x = out(reg) _,
                    rm = out(reg) _,
                    sc = out(reg) _,
                    out("ecx") _,
                    options(att_syntax),
                );
            }
            status
        })
    }
}

/// What the zero-run blocks hold in registers: the engine, the context index `t = 3·s` of the
/// run's DQ state and the count of bins left.
struct RunRegisters {
    range: u64,
    window: u64,
    avail: u64,
    t: u64,
    left: u64,
}

#[cfg(test)]
mod tests {
    use crate::{dq, ArithDecoder, ArithEncoder, ContextLayout, ContextModel};

    /// Seeded draws in `0..n` (a 64-bit LCG's high bits).
    fn draws(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut x = seed;
        move |n| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % n
        }
    }

    /// Runs of random length (many reaching their limit, some long enough to need top-ups
    /// inside the loop), in contexts of every init set, decoded by the assembly loop and by the
    /// Rust loop: same counts, same context states, same bytes consumed.
    fn same_as_portable<const STEP: usize>(seed: u64) {
        let mut next = draws(seed);
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

    /// Zero runs of random length from random DQ states (some ending on a 1 bin, some stopped
    /// by `max`, some long enough to need top-ups), decoded by the assembly loop and the Rust
    /// loop: same runs, same states, same contexts, same bytes consumed.
    #[test]
    fn dq_zero_runs_match_the_rust_loop() {
        let mut next = draws(11);
        let init: Vec<ContextModel> = (0..24).map(|i| ContextModel::new((i % 9) as u8)).collect();
        let mut enc = ArithEncoder::new();
        let mut ctxs = init.clone();
        let mut script = Vec::new();
        for _ in 0..20_000 {
            let state = next(8) as u8;
            let long = next(8) == 0;
            let max = 1 + next(if long { 400 } else { 12 }) as usize;
            let zeros = next(max as u64 + 1) as usize;
            let mut s = state;
            for _ in 0..zeros {
                enc.encode_bin(false, &mut ctxs[ContextLayout::sig(usize::from(s), 0)]);
                s = dq::next_state(s, 0);
            }
            let one = zeros < max;
            if one {
                enc.encode_bin(true, &mut ctxs[ContextLayout::sig(usize::from(s), 0)]);
            }
            enc.encode_bypass_bins(3, 5);
            script.push((state, max, zeros, s, one));
        }
        let bytes = enc.finish();
        let (mut a, mut b) = (ArithDecoder::new(&bytes), ArithDecoder::new(&bytes));
        let (mut ca, mut cb) = (init.clone(), init);
        for &(state, max, zeros, end_state, one) in &script {
            let ra = a.decode_dq_zero_run(&mut ca, state, max);
            let rb = b.decode_dq_zero_run_portable(&mut cb, state, max);
            assert_eq!(ra, rb);
            assert_eq!((ra.zeros, ra.state, ra.one), (zeros, end_state, one));
            assert_eq!(ca, cb);
            assert_eq!(a.decode_bypass_bins(3), 5);
            assert_eq!(b.decode_bypass_bins(3), 5);
        }
        assert_eq!(ctxs, ca);
        assert_eq!(a.finish(), Ok(bytes.len()));
        assert_eq!(b.finish(), Ok(bytes.len()));
    }

    /// Zero runs over random TCA base levels (0 at about half the positions; ±1, larger ones
    /// and the extremes of i32 elsewhere) from random DQ states, some ending on a 1 bin, some
    /// stopped by the end of their bases, some long enough to need top-ups: the assembly loop
    /// and the Rust loop give the same runs, states, contexts and bytes consumed.
    #[test]
    fn tca_zero_runs_match_the_rust_loop() {
        let mut next = draws(13);
        let init: Vec<ContextModel> = (0..40).map(|i| ContextModel::new((i % 9) as u8)).collect();
        let mut enc = ArithEncoder::new();
        let mut ctxs = init.clone();
        let mut script = Vec::new();
        for _ in 0..20_000 {
            let state = next(8) as u8;
            let long = next(8) == 0;
            let max = 1 + next(if long { 400 } else { 12 }) as usize;
            let bases: Vec<i32> = (0..max)
                .map(|_| match next(8) {
                    0..=3 => 0,
                    4 => 1,
                    5 => -1,
                    6 => [i32::MIN, i32::MAX, 2, -2][next(4) as usize],
                    _ => next(40) as i32 - 20,
                })
                .collect();
            let zeros = next(max as u64 + 1) as usize;
            let ctx_at = |s: u8, b: i32| {
                let s = usize::from(s);
                if b == 0 {
                    ContextLayout::sig(s, 0)
                } else {
                    ContextLayout::sig_tca(s, b.unsigned_abs() > 1)
                }
            };
            let mut s = state;
            for &b in &bases[..zeros] {
                enc.encode_bin(false, &mut ctxs[ctx_at(s, b)]);
                s = dq::next_state(s, 0);
            }
            let one = zeros < max;
            if one {
                enc.encode_bin(true, &mut ctxs[ctx_at(s, bases[zeros])]);
            }
            enc.encode_bypass_bins(3, 5);
            script.push((state, bases, zeros, s, one));
        }
        let bytes = enc.finish();
        let (mut a, mut b) = (ArithDecoder::new(&bytes), ArithDecoder::new(&bytes));
        let (mut ca, mut cb) = (init.clone(), init);
        for (state, bases, zeros, end_state, one) in &script {
            let ra = a.decode_tca_zero_run(&mut ca, *state, bases);
            let rb = b.decode_tca_zero_run_portable(&mut cb, *state, bases);
            assert_eq!(ra, rb);
            assert_eq!((ra.zeros, ra.state, ra.one), (*zeros, *end_state, *one));
            assert_eq!(ca, cb);
            assert_eq!(a.decode_bypass_bins(3), 5);
            assert_eq!(b.decode_bypass_bins(3), 5);
        }
        assert_eq!(ctxs, ca);
        assert_eq!(a.finish(), Ok(bytes.len()));
        assert_eq!(b.finish(), Ok(bytes.len()));
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

//! Constant tables of the DeepCABAC engine (deepcabac.md §1.9, §2.2–2.4, §5.2).

use std::sync::OnceLock;

/// rLPS lookup, flattened: index `(range & 0xE0) + column`, i.e. row `(range >> 5) & 7` times 32
/// plus the probability column `|P >> 7|` (0..=31).
pub const RLPS_TABLE: [u8; 256] = [
    // row 0: range 256..=287
    128, 112, 97, 84, 74, 65, 57, 50, 45, 39, 34, 30, 27, 23, 20, 18, //
    15, 14, 12, 11, 10, 9, 7, 7, 5, 5, 4, 4, 3, 3, 2, 2, //
    // row 1
    142, 125, 108, 93, 82, 72, 63, 56, 50, 43, 38, 33, 30, 26, 22, 20, //
    17, 16, 13, 12, 11, 10, 8, 8, 6, 6, 5, 5, 3, 3, 2, 2, //
    // row 2
    156, 137, 119, 103, 90, 79, 70, 61, 55, 48, 42, 37, 33, 28, 24, 22, //
    19, 17, 15, 13, 12, 11, 9, 9, 6, 6, 5, 5, 4, 4, 2, 2, //
    // row 3
    171, 150, 130, 112, 99, 87, 76, 67, 60, 52, 46, 40, 36, 31, 27, 24, //
    21, 19, 16, 15, 13, 12, 10, 10, 7, 7, 6, 6, 4, 4, 3, 3, //
    // row 4
    185, 162, 141, 121, 107, 94, 82, 73, 65, 56, 50, 43, 39, 34, 29, 26, //
    22, 21, 17, 16, 14, 13, 11, 11, 8, 8, 6, 6, 4, 4, 3, 3, //
    // row 5
    199, 175, 152, 131, 115, 101, 89, 78, 70, 61, 54, 47, 42, 36, 31, 28, //
    24, 22, 19, 17, 15, 14, 12, 12, 8, 8, 7, 7, 5, 5, 3, 3, //
    // row 6
    213, 187, 163, 140, 123, 108, 95, 84, 75, 65, 58, 50, 45, 39, 33, 30, //
    26, 24, 20, 18, 16, 15, 13, 13, 9, 9, 7, 7, 5, 5, 3, 3, //
    // row 7: range 480..=511
    228, 200, 174, 150, 132, 116, 102, 90, 80, 70, 62, 54, 48, 42, 36, 32, //
    28, 26, 22, 20, 18, 16, 14, 14, 10, 10, 8, 8, 6, 6, 4, 4,
];

/// [`RLPS_TABLE`] with the LPS renormalisation folded in: bits 0..8 hold rLPS, bits 8..12 the
/// renormalisation shift `n = 9 − bitlength(rLPS)`, bits 16.. the renormalised range `rLPS << n`.
pub const RLPS_PACKED: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let r = RLPS_TABLE[i] as u32;
        let n = r.leading_zeros() - 23;
        t[i] = r | (n << 8) | ((r << n) << 16);
        i += 1;
    }
    t
};

/// [`RLPS_PACKED`] indexed by `((range & 0xE0) << 1) | ((P >> 7) & 63)`: the column's absolute
/// value (`|P >> 7| & 31`, with `P >> 7` in −32..=31 as |P| ≤ 3889 by §2.1) is folded into the
/// table, which saves the per-bin absolute value.
pub const RLPS_SIGNED: [u32; 512] = {
    let mut t = [0u32; 512];
    let mut i = 0;
    while i < 512 {
        let row = i >> 6;
        let c = (i & 63) as i32;
        let signed = if c >= 32 { c - 64 } else { c };
        t[i] = RLPS_PACKED[(row << 5) | (signed.unsigned_abs() as usize & 31)];
        i += 1;
    }
    t
};

/// Adaptation step as a function of how far an estimator already points towards the coded bin
/// (index `16 + ((sgn·S) >> k)`); index 31 saturates.
pub static CURVE: [i32; 32] = CURVE_CONST;

/// Signed slow-estimator step `sgn·(CURVE[16 + ((sgn·S1) >> 7)] >> shift1)` for shift1 0..=7 and
/// both bins: entry `shift1·64 + bin·32 + (t & 31)` with `t = (S1 + (bin ? 0 : 127)) >> 7`.
///
/// `(−S1) >> 7 = −((S1 + 127) >> 7)`, so one arithmetic shift serves both bins and the sign
/// is folded into the table. Over the reachable |S1| <= 1923, t spans −16..=15 for bin 1 and
/// −15..=16 for bin 0, so `t & 31` never collides.
pub const S1_STEP: [i16; 512] = {
    let mut t = [0i16; 512];
    let mut i = 0;
    while i < 512 {
        let shift = (i / 64) as u32;
        let bin = (i / 32) % 2 == 1;
        let j = (i % 32) as i32;
        t[i] = if bin {
            let tt = if j >= 16 { j - 32 } else { j };
            CURVE_CONST[(16 + tt) as usize] >> shift
        } else {
            let tt = if j > 16 { j - 32 } else { j };
            -(CURVE_CONST[(16 - tt) as usize] >> shift)
        } as i16;
        i += 1;
    }
    t
};

/// Next fast estimator S0 for shift0 in 4..=7, bin and the current S0: entry
/// `(shift0 − 4)·512 + bin·256 + (S0 as u8)`. Precomputes `S0 ± CURVE[16 + ((±S0) >> 3)] >> shift0`.
pub const S0_NEXT: [i8; 2048] = {
    let mut t = [0i8; 2048];
    let mut i = 0;
    while i < 2048 {
        let shift = 4 + (i / 512) as u32;
        let bin = (i / 256) % 2 == 1;
        let s0 = (i % 256) as u8 as i8 as i32;
        let sgn = if bin { 1 } else { -1 };
        let step = CURVE_CONST[((16 + ((sgn * s0) >> 3)) & 31) as usize] >> shift;
        let next = s0 + sgn * step;
        // Unreachable states (|S0| > 123) are clamped only so the table stays in i8.
        t[i] = if next > 127 {
            127
        } else if next < -128 {
            -128
        } else {
            next
        } as i8;
        i += 1;
    }
    t
};

pub(crate) const CURVE_CONST: [i32; 32] = [
    2512, 2288, 2064, 1840, 1616, 1392, 1168, 944, 720, 560, 464, 368, 272, 208, 144, 80, //
    64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 0,
];

/// One of the nine context initialisation sets (§2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitSet {
    /// Adaptation shift of the fast estimator S0.
    pub shift0: u8,
    /// Adaptation shift of the slow estimator S1.
    pub shift1: u8,
    /// Initial combined state `P = S1 + 16·S0`.
    pub p: i16,
    /// Initial fast estimator.
    pub s0: i8,
}

/// Number of context initialisation sets.
pub const NUM_INIT_SETS: usize = 9;

/// The nine initialisation sets, indexed by the signalled init index.
pub static INIT_SETS: [InitSet; NUM_INIT_SETS] = [
    InitSet {
        shift0: 5,
        shift1: 4,
        p: 0,
        s0: 0,
    },
    InitSet {
        shift0: 5,
        shift1: 4,
        p: -1310,
        s0: -41,
    },
    InitSet {
        shift0: 5,
        shift1: 4,
        p: 3039,
        s0: 95,
    },
    InitSet {
        shift0: 4,
        shift1: 5,
        p: 0,
        s0: 0,
    },
    InitSet {
        shift0: 6,
        shift1: 6,
        p: 962,
        s0: 30,
    },
    InitSet {
        shift0: 6,
        shift1: 6,
        p: 3039,
        s0: 95,
    },
    InitSet {
        shift0: 6,
        shift1: 6,
        p: -673,
        s0: -21,
    },
    InitSet {
        shift0: 7,
        shift1: 5,
        p: 0,
        s0: 0,
    },
    InitSet {
        shift0: 7,
        shift1: 5,
        p: 962,
        s0: 30,
    },
];

/// Cost of one bypass bin in the estimated-bits unit (1/32768 bit).
pub const BYPASS_BITS: u32 = 1 << 15;

/// Estimated bits table: entry `512 + (P >> 3)` holds the cost of coding bin 0 and bin 1, in
/// 1/32768-bit units (§2.4). Built once on first use.
#[inline]
pub fn est_bits_table() -> &'static [[u32; 2]; 1024] {
    static TABLE: OnceLock<[[u32; 2]; 1024]> = OnceLock::new();
    TABLE.get_or_init(build_est_bits_table)
}

/// [`est_bits_table`] split by bin: `[bin][512 + (P >> 3)]`, so a caller coding many states
/// with the same bin picks its column once.
#[inline]
pub fn est_bits_columns() -> &'static [[u32; 1024]; 2] {
    static COLUMNS: OnceLock<[[u32; 1024]; 2]> = OnceLock::new();
    COLUMNS.get_or_init(|| {
        let mut c = [[0u32; 1024]; 2];
        for (i, e) in est_bits_table().iter().enumerate() {
            c[0][i] = e[0];
            c[1][i] = e[1];
        }
        c
    })
}

/// The §2.4 construction: the LPS cost grows linearly with |P| in steps of `G`.
fn build_est_bits_table() -> [[u32; 2]; 1024] {
    const G: f64 = 0.012_231_413_2;
    let mut table = [[0u32; 2]; 1024];
    for (i, entry) in table.iter_mut().enumerate() {
        let m = (i as i64 - 512).unsigned_abs().min(511) as f64;
        let lps_bits = 1.0 + (m + 0.5) * G;
        let lps = (32768.0 * lps_bits).round() as u32;
        let mps = (-32768.0 * (1.0 - (-lps_bits).exp2()).log2()).round() as u32;
        // From 512 on the MPS is 1, so bin 0 is the less probable one.
        *entry = if i >= 512 { [lps, mps] } else { [mps, lps] };
    }
    table
}

/// Dependent-quantization state transition `STT[state][parity]` (§5.2).
pub static DQ_STATE_TRANSITION: [[u8; 2]; 8] = [
    [0, 2],
    [7, 5],
    [1, 3],
    [6, 4],
    [2, 0],
    [5, 7],
    [3, 1],
    [4, 6],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn est_bits_checksums() {
        let t = est_bits_table();
        let sum0: u64 = t.iter().map(|e| u64::from(e[0])).sum();
        let sum1: u64 = t.iter().map(|e| u64::from(e[1])).sum();
        assert_eq!(sum0, 72_488_664);
        assert_eq!(sum1, 72_725_731);
        assert_eq!(t[0], t[1]);
        assert_eq!(t[512], [32968, 32568]);
    }

    #[test]
    fn rlps_rows_spot_checks() {
        assert_eq!(RLPS_TABLE[0], 128);
        assert_eq!(RLPS_TABLE[7 * 32], 228);
        assert_eq!(RLPS_TABLE[255], 4);
        assert_eq!(RLPS_TABLE[(426 & 0xE0) + 1], 175);
    }

    #[test]
    fn zero_transition_cycles_divide_four() {
        for s in 0..8u8 {
            let mut t = s;
            for _ in 0..4 {
                t = DQ_STATE_TRANSITION[t as usize][0];
            }
            assert_eq!(t, s);
        }
    }
}

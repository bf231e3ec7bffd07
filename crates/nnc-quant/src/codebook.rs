//! Codebook approximation helpers (hls.md §5.5, reference `approximator/codebook.py`).
//!
//! The codebook of a tensor is the sorted set of its distinct uniform levels; the coder sees each
//! element's index into it, shifted by `codebook_zero_offset` (`CbZeroOffset`). The decisions that
//! need an entropy coder (zero-offset search, mode 2) take an "encoded size in bytes" callback.

use crate::error::{Error, Result};

/// The codebook of a level array and the index of every element into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Codebook {
    /// Distinct levels, strictly increasing (numpy `unique`).
    pub values: Vec<i32>,
    /// Per element (same order as the input), the index of its level in `values`.
    pub indices: Vec<i32>,
}

/// Builds the codebook of `levels`: sorted distinct values and each element's index
/// (numpy `unique(…, return_inverse=True)`).
pub fn build_codebook(levels: &[i32]) -> Codebook {
    let mut values = levels.to_vec();
    values.sort_unstable();
    values.dedup();
    let indices = levels
        .iter()
        .map(|l| values.partition_point(|v| v < l) as i32)
        .collect();
    Codebook { values, indices }
}

/// The qp the codebook path quantizes at: one octave finer (`qp − 2^qp_density`) when dependent
/// quantization was requested, because the codebook path itself never uses DQ.
pub fn codebook_qp(qp: i32, qp_density: u8, dq_requested: bool) -> i32 {
    if dq_requested {
        qp.saturating_sub(1i32 << qp_density.min(30))
    } else {
        qp
    }
}

/// Bits of `ue(k)` (k-th order Exp-Golomb) for value `x`.
pub fn ue_bits(k: u32, x: u64) -> u64 {
    ue_bits_wide(k, u128::from(x))
}

/// `ue(k)` length for values up to 2^64 (the signed mapping of `i64::MIN` needs one more bit).
fn ue_bits_wide(k: u32, x: u128) -> u64 {
    // The prefix has one 0 per completed group; group j covers 2^(k+j) values.
    let groups = u64::from(u128::BITS - ((x >> k.min(127)) + 1).leading_zeros()) - 1;
    2 * groups + 1 + u64::from(k)
}

/// Bits of `ie(k)` (signed Exp-Golomb: `x <= 0 → −2x`, `x > 0 → 2x − 1`) for value `x`.
pub fn ie_bits(k: u32, x: i64) -> u64 {
    let magnitude = u128::from(x.unsigned_abs()) << 1;
    ue_bits_wide(k, if x <= 0 { magnitude } else { magnitude - 1 })
}

/// Bit count of the `codebook()` syntax: `codebook_egk u(4)`, `codebook_size ue(2)`,
/// `codebook_center_offset ie(2)`, `codebook_zero_value ie(7)`, then the deltas to the left and
/// right of the zero entry as `ue(codebook_egk)`.
pub fn codebook_syntax_bits<C: Copy + Into<i64>>(
    values: &[C],
    codebook_zero_offset: u32,
    codebook_egk: u32,
) -> Result<u64> {
    let size = values.len();
    let zero = codebook_zero_offset as usize;
    if zero >= size {
        return Err(Error::CodebookZeroOffsetOutOfRange {
            codebook_zero_offset,
            codebook_size: size,
        });
    }
    let center_offset = i64::from(codebook_zero_offset) - (size >> 1) as i64;
    let mut bits = 4 + ue_bits(2, size as u64) + ie_bits(2, center_offset);
    bits += ie_bits(7, values[zero].into());
    for (index, pair) in values.windows(2).enumerate() {
        let delta = i128::from(pair[1].into()) - i128::from(pair[0].into()) - 1;
        let delta =
            u64::try_from(delta).map_err(|_| Error::CodebookNotIncreasing { index: index + 1 })?;
        bits += ue_bits(codebook_egk, delta);
    }
    Ok(bits)
}

/// The `codebook_egk` in `0..=15` that minimises [`codebook_syntax_bits`] (first minimum), and that
/// bit count.
pub fn best_codebook_egk<C: Copy + Into<i64>>(
    values: &[C],
    codebook_zero_offset: u32,
) -> Result<(u32, u64)> {
    let mut best = (0, codebook_syntax_bits(values, codebook_zero_offset, 0)?);
    for egk in 1..16 {
        let bits = codebook_syntax_bits(values, codebook_zero_offset, egk)?;
        if bits < best.1 {
            best = (egk, bits);
        }
    }
    Ok(best)
}

/// Chooses `codebook_zero_offset`: for every candidate `c` in `0..codebook_size`, the callback gets
/// the coded indices `indices − c` and returns their encoded size in bytes; the smallest wins,
/// the lowest `c` on ties. Returns the offset and the shifted indices to code.
///
/// One candidate after the other; a caller with threads can measure the sizes itself (they are
/// independent) and pick with [`best_codebook_zero_offset`].
///
/// The reference encodes each candidate with a fresh encoder, `initCtxModels(cabac_unary_length_minus1,
/// param_opt = 1)`, dq 0, scan 0, profile 0, no row skip, no codebook.
///
/// Reference quirk: that encoder gets `cabac_unary_length_minus1` greater-than flags, one fewer
/// than the real coder; the callback must do the same to reproduce the choice.
pub fn choose_codebook_zero_offset(
    indices: &[i32],
    codebook_size: usize,
    encoded_size: &dyn Fn(&[i32]) -> usize,
) -> Result<(u32, Vec<i32>)> {
    let candidates = zero_offset_candidates(codebook_size)?;
    let mut shifted = vec![0i32; indices.len()];
    let sizes: Vec<usize> = (0..candidates)
        .map(|offset| {
            shift_codebook_indices(indices, offset, &mut shifted);
            encoded_size(&shifted)
        })
        .collect();
    let offset = best_codebook_zero_offset(&sizes)?;
    shift_codebook_indices(indices, offset, &mut shifted);
    Ok((offset, shifted))
}

/// The number of zero-offset candidates of a codebook with `codebook_size` entries (one per
/// entry), or why there are none.
pub fn zero_offset_candidates(codebook_size: usize) -> Result<u32> {
    if codebook_size == 0 {
        return Err(Error::EmptyCodebook);
    }
    u32::try_from(codebook_size).map_err(|_| Error::CodebookZeroOffsetOutOfRange {
        codebook_zero_offset: u32::MAX,
        codebook_size,
    })
}

/// The zero-offset rule on measured sizes: `sizes[c]` is the encoded size in bytes of the
/// indices shifted by `c`; the smallest wins, the lowest `c` on ties.
pub fn best_codebook_zero_offset(sizes: &[usize]) -> Result<u32> {
    zero_offset_candidates(sizes.len())?;
    // `min_by_key` keeps the first of equal minima, i.e. the lowest offset.
    let (offset, _) = sizes
        .iter()
        .enumerate()
        .min_by_key(|&(_, &bytes)| bytes)
        .ok_or(Error::EmptyCodebook)?;
    Ok(offset as u32)
}

/// Writes the coded indices for a zero offset, `indices − offset`, into `out` (same length).
pub fn shift_codebook_indices(indices: &[i32], offset: u32, out: &mut [i32]) {
    let shift = offset as i32;
    for (s, &i) in out.iter_mut().zip(indices) {
        *s = i.wrapping_sub(shift);
    }
}

/// Codebook mode 2 decision: use the codebook iff
/// `codebook payload bytes + codebook syntax bits < uniform payload bytes`.
///
/// Reference quirk: bytes are compared with bytes plus *bits*.
pub fn codebook_mode2_prefers_codebook(
    uniform_payload_bytes: usize,
    codebook_payload_bytes: usize,
    codebook_syntax_bits: u64,
) -> bool {
    (codebook_payload_bytes as u128 + u128::from(codebook_syntax_bits))
        < uniform_payload_bytes as u128
}

/// Codebook mode 2 with the encoder plugged in: encodes the uniform levels and the shifted codebook
/// indices with their callbacks and applies [`codebook_mode2_prefers_codebook`].
///
/// Both encodes in the reference use the tensor's scan order, profile and parent flag, no row skip
/// and no codebook; the uniform one uses the tensor's `dq_flag`, the codebook one dq 0.
///
/// Reference quirk: both use `initCtxModels(cabac_unary_length_minus1, param_opt)`, one
/// greater-than flag fewer than the real coder.
pub fn codebook_mode2_decision(
    uniform_levels: &[i32],
    codebook_levels: &[i32],
    codebook_syntax_bits: u64,
    encode_uniform: &dyn Fn(&[i32]) -> usize,
    encode_codebook: &dyn Fn(&[i32]) -> usize,
) -> bool {
    let uniform = encode_uniform(uniform_levels);
    let codebook = encode_codebook(codebook_levels);
    codebook_mode2_prefers_codebook(uniform, codebook, codebook_syntax_bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `ue(k)` bit by bit, as the HLS writer does, and counts the bits.
    fn ue_bits_by_loop(mut k: u32, mut x: u64) -> u64 {
        let mut bits = 0;
        while x >= 1 << k {
            bits += 1;
            x -= 1 << k;
            k += 1;
        }
        bits + 1 + u64::from(k)
    }

    #[test]
    fn exp_golomb_lengths() {
        for k in 0..16 {
            for x in 0..5000u64 {
                assert_eq!(ue_bits(k, x), ue_bits_by_loop(k, x), "k {k} x {x}");
            }
            assert_eq!(ue_bits(k, 1 << 40), ue_bits_by_loop(k, 1 << 40));
        }
        assert_eq!(ue_bits(0, 0), 1);
        assert_eq!(ue_bits(0, 1), 3);
        assert_eq!(ue_bits(2, 3), 3);
        assert_eq!(ue_bits(2, 4), 5);
        assert_eq!(ue_bits(0, u64::MAX), 129);
        assert_eq!(ie_bits(7, 0), 8);
        assert_eq!(ie_bits(2, -2), ue_bits(2, 4));
        assert_eq!(ie_bits(2, 2), ue_bits(2, 3));
        assert_eq!(ie_bits(0, i64::MIN), 129);
        assert_eq!(ie_bits(0, i64::MAX), 127);
    }

    #[test]
    fn build() {
        let cb = build_codebook(&[5, -3, 5, 0, 9, -3]);
        assert_eq!(cb.values, [-3, 0, 5, 9]);
        assert_eq!(cb.indices, [2, 0, 2, 1, 3, 0]);
        assert!(build_codebook(&[]).values.is_empty());
    }

    #[test]
    fn hls_example_syntax() {
        // hls.md §5.5: size 11, CbZeroOffset 5, egk 0 chosen.
        let values = [-13, -7, -5, -2, 0, 3, 4, 5, 6, 8, 9];
        let (egk, bits) = best_codebook_egk(&values, 5).unwrap();
        assert_eq!(egk, 0);
        // u(4) + ue(2,11)=5 + ie(2,0)=3 + ie(7,3)=8 + left deltas 2,1,2,1,5 + right 0,0,0,1,0.
        let deltas = [2u64, 1, 2, 1, 5, 0, 0, 0, 1, 0];
        let expected = 4 + 5 + 3 + 8 + deltas.iter().map(|&d| ue_bits(0, d)).sum::<u64>();
        assert_eq!(bits, expected);
    }

    #[test]
    fn syntax_errors() {
        assert!(codebook_syntax_bits(&[1, 2], 2, 0).is_err());
        assert_eq!(
            codebook_syntax_bits(&[1, 1], 0, 0),
            Err(Error::CodebookNotIncreasing { index: 1 })
        );
        assert!(codebook_syntax_bits::<i32>(&[], 0, 0).is_err());
    }

    #[test]
    fn zero_offset_search() {
        // A size model that is smallest when the shifted indices are centred on 0.
        let cost = |levels: &[i32]| {
            levels
                .iter()
                .map(|l| l.unsigned_abs() as usize)
                .sum::<usize>()
        };
        let (offset, shifted) = choose_codebook_zero_offset(&[0, 1, 2, 3, 4, 2], 5, &cost).unwrap();
        assert_eq!(offset, 2);
        assert_eq!(shifted, [-2, -1, 0, 1, 2, 0]);
        // Ties keep the lowest offset.
        let flat = |_: &[i32]| 7usize;
        assert_eq!(choose_codebook_zero_offset(&[0, 1], 2, &flat).unwrap().0, 0);
        assert_eq!(
            choose_codebook_zero_offset(&[], 0, &flat),
            Err(Error::EmptyCodebook)
        );
        // The rule on measured sizes, as a threaded caller uses it.
        assert_eq!(best_codebook_zero_offset(&[9, 4, 6, 4]), Ok(1));
        assert_eq!(best_codebook_zero_offset(&[]), Err(Error::EmptyCodebook));
        let mut out = [0; 3];
        shift_codebook_indices(&[0, 3, 1], 2, &mut out);
        assert_eq!(out, [-2, 1, -1]);
    }

    #[test]
    fn mode2() {
        assert!(codebook_mode2_prefers_codebook(100, 50, 49));
        assert!(!codebook_mode2_prefers_codebook(100, 50, 50));
        let len = |l: &[i32]| l.len();
        assert!(codebook_mode2_decision(&[0; 10], &[0; 4], 5, &len, &len));
        assert!(!codebook_mode2_decision(&[0; 10], &[0; 4], 6, &len, &len));
        assert_eq!(codebook_qp(-32, 2, true), -36);
        assert_eq!(codebook_qp(-32, 2, false), -32);
    }
}

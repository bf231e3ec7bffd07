//! Reconstruction: integer levels back to values (hls.md §5.4).

use crate::error::{Error, Result};
use crate::step::{step_size, step_size_f64};

/// Uniform reconstruction `out[i] = f32(Δ) · f32(levels[i])`, one `f32` multiply (C++ `deQuantize`).
///
/// `levels` are in reconstruction units (with DQ: reconstruction indices). Note that `f32(level)`
/// rounds for `|level| > 2^24`, as in the reference.
pub fn dequantize_uniform(levels: &[i32], qp: i32, qp_density: u8, out: &mut [f32]) -> Result<()> {
    if out.len() != levels.len() {
        return Err(Error::LengthMismatch {
            expected: levels.len(),
            actual: out.len(),
        });
    }
    let step = step_size(qp, qp_density);
    for (o, &l) in out.iter_mut().zip(levels) {
        *o = step * l as f32;
    }
    Ok(())
}

/// Codebook reconstruction `out[i] = codebook[levels[i] + codebook_zero_offset] · Δ`, in `f64` with
/// the Python step size (`get_stepsize_from_qp`), as the reference's `codebook.rec` (which returns a
/// float64 array).
///
/// A level that indexes outside the codebook is an error (hostile input); `out` may then be
/// partially written.
pub fn dequantize_codebook<C: Copy + Into<i64>>(
    levels: &[i32],
    codebook: &[C],
    codebook_zero_offset: u32,
    qp: i32,
    qp_density: u8,
    out: &mut [f64],
) -> Result<()> {
    if out.len() != levels.len() {
        return Err(Error::LengthMismatch {
            expected: levels.len(),
            actual: out.len(),
        });
    }
    let step = step_size_f64(qp, qp_density);
    let offset = i64::from(codebook_zero_offset);
    for (position, (o, &l)) in out.iter_mut().zip(levels).enumerate() {
        let value = usize::try_from(i64::from(l) + offset)
            .ok()
            .and_then(|idx| codebook.get(idx))
            .ok_or(Error::CodebookIndexOutOfRange {
                position,
                level: l,
                codebook_zero_offset,
                codebook_size: codebook.len(),
            })?;
        *o = (*value).into() as f64 * step;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform() {
        let mut out = [0.0f32; 4];
        dequantize_uniform(&[0, 1, -3, 16_777_217], -32, 2, &mut out).unwrap();
        assert_eq!(out, [0.0, 0.003_906_25, -0.011_718_75, 65_536.0]);
        assert!(dequantize_uniform(&[1, 2], -32, 2, &mut out).is_err());
    }

    #[test]
    fn codebook_hls_example() {
        // hls.md §5.5: qp −20 (Δ = 2^−5), CbZeroOffset 5.
        let cb: [i32; 11] = [-13, -7, -5, -2, 0, 3, 4, 5, 6, 8, 9];
        let mut out = [0.0f64; 3];
        dequantize_codebook(&[-5, 0, 5], &cb, 5, -20, 2, &mut out).unwrap();
        assert_eq!(out, [-13.0 / 32.0, 3.0 / 32.0, 9.0 / 32.0]);
        let cb64: Vec<i64> = cb.iter().map(|&v| i64::from(v)).collect();
        dequantize_codebook(&[-5, 0, 5], &cb64, 5, -20, 2, &mut out).unwrap();
        assert_eq!(out, [-13.0 / 32.0, 3.0 / 32.0, 9.0 / 32.0]);
    }

    #[test]
    fn codebook_index_out_of_range() {
        let cb = [1i32, 2, 3];
        let mut out = [0.0f64; 2];
        assert_eq!(
            dequantize_codebook(&[0, 2], &cb, 1, 0, 2, &mut out),
            Err(Error::CodebookIndexOutOfRange {
                position: 1,
                level: 2,
                codebook_zero_offset: 1,
                codebook_size: 3
            })
        );
        assert!(dequantize_codebook(&[-2, 0], &cb, 1, 0, 2, &mut out).is_err());
        assert!(dequantize_codebook(&[i32::MIN, 0], &cb, u32::MAX, 0, 2, &mut out).is_err());
        assert!(dequantize_codebook::<i32>(&[0], &[], 0, 0, 2, &mut out[..1]).is_err());
    }
}

//! Encoder-side sparsification of named tensors, before quantization (the reference's `sparsity`
//! and `struct_spars_factor` arguments of its tensor, model and FL pipelines).

pub use nnc_sparsify::SparsifyOptions;

use std::borrow::Cow;

use half::{bf16, f16};

use crate::encode::is_batch_counter;
use crate::error::{Error, Result};
use crate::tensor::{ShapeMismatch, Tensor, TensorData};

/// Sparsifies `tensors` in place as the reference does before compressing: unstructured
/// (statistics-based, towards `opts.sparsity`), then structured per output channel. Float tensors
/// with two or more dimensions are changed: float32 as they are, the other float types as the
/// float32 values the coder quantizes (exact for float16 and bfloat16, rounded for float64), and
/// of those only the elements zeroed change, so they keep their dtype and every other bit.
/// Integer tensors only count towards the sparsity.
///
/// A `sparsity` of 1 or more (which would zero every weight), or a `sparsity` or
/// `struct_spars_factor` that is not finite, is an [`Error::InvalidArgument`]; a `sparsity` of 0
/// or less turns sparsification off, as in the reference.
pub fn sparsify_tensors(tensors: &mut [Tensor], opts: &SparsifyOptions) -> Result<()> {
    sparsify_those(tensors, opts, |_| true)
}

/// [`sparsify_tensors`] for a PyTorch state dict, as `nncodec.nn.encode` sparsifies a torch model:
/// its BatchNorm `num_batches_tracked` counters take no part, neither changed nor counted towards
/// the sparsity reached (the reference's `torch_to_numpy` leaves them out). With counters among
/// the tensors the two functions can stop the threshold search at different rounds.
pub fn sparsify_state_dict(tensors: &mut [Tensor], opts: &SparsifyOptions) -> Result<()> {
    sparsify_those(tensors, opts, |t| !is_batch_counter(&t.name))
}

/// Writes into `elements` the zeros the sparsifier made in their float32 form (`±0` as it made
/// them); every other element keeps its bits, NaN payloads and float64 precision included.
fn zero_where_zeroed<T>(elements: &mut [T], sparsified: &[f32], convert: impl Fn(f32) -> T) {
    for (e, &x) in elements.iter_mut().zip(sparsified) {
        if x == 0.0 {
            *e = convert(x);
        }
    }
}

/// Integer elements as the sparsifier's `i64`.
fn widen<T: Copy + Into<i64>>(v: &[T]) -> Vec<i64> {
    v.iter().map(|&x| x.into()).collect()
}

fn sparsify_those(
    tensors: &mut [Tensor],
    opts: &SparsifyOptions,
    take_part: impl Fn(&Tensor) -> bool,
) -> Result<()> {
    let invalid = |what: String| Err(Error::InvalidArgument { what });
    if !(opts.sparsity.is_finite() && opts.sparsity < 1.0) {
        return invalid(format!("sparsity {} is not below 1", opts.sparsity));
    }
    if !opts.struct_spars_factor.is_finite() {
        return invalid(format!(
            "struct_spars_factor {} is not finite",
            opts.struct_spars_factor
        ));
    }
    if opts.sparsity <= 0.0 {
        return Ok(());
    }
    // Every tensor is checked before any is touched: a supported dtype, and a shape that
    // describes its elements (the fields are public, so a tensor may be built without it).
    for t in tensors.iter().filter(|t| take_part(t)) {
        let supported = matches!(
            t.data,
            TensorData::F32(_)
                | TensorData::F16(_)
                | TensorData::BF16(_)
                | TensorData::F64(_)
                | TensorData::I64(_)
                | TensorData::I32(_)
                | TensorData::I16(_)
                | TensorData::I8(_)
                | TensorData::U8(_)
        );
        if !supported {
            return invalid(format!(
                "sparsification of {} tensor {:?} is not supported",
                t.data.dtype().numpy_name(),
                t.name
            ));
        }
        if let Err(e) = ShapeMismatch::check(&t.shape, t.len()) {
            return invalid(format!("tensor {:?}: {e}", t.name));
        }
    }
    // Float elements move into the work tensors and back (integers, which only count, are
    // widened copies), so the model is not held twice while it is sparsified.
    let mut work = Vec::with_capacity(tensors.len());
    for t in tensors.iter_mut().filter(|t| take_part(t)) {
        let values = match &mut t.data {
            TensorData::F32(v) => nnc_sparsify::TensorValues::F32(std::mem::take(v)),
            // Widened exactly.
            TensorData::F16(_) | TensorData::BF16(_) => nnc_sparsify::TensorValues::F32(
                t.data
                    .as_f32_lossless()
                    .map(Cow::into_owned)
                    .unwrap_or_default(),
            ),
            TensorData::F64(v) => {
                nnc_sparsify::TensorValues::F32(v.iter().map(|&x| x as f32).collect())
            }
            TensorData::I64(v) => nnc_sparsify::TensorValues::Int(v.clone()),
            TensorData::I32(v) => nnc_sparsify::TensorValues::Int(widen(v)),
            TensorData::I16(v) => nnc_sparsify::TensorValues::Int(widen(v)),
            TensorData::I8(v) => nnc_sparsify::TensorValues::Int(widen(v)),
            TensorData::U8(v) => nnc_sparsify::TensorValues::Int(widen(v)),
            // Refused above.
            _ => nnc_sparsify::TensorValues::Int(Vec::new()),
        };
        // The shape was checked above, so this cannot fail.
        if let Ok(w) = nnc_sparsify::Tensor::new(t.name.clone(), t.shape.clone(), values) {
            work.push(w);
        }
    }
    nnc_sparsify::sparsify(&mut work, opts);
    let mut returned = work.into_iter().map(nnc_sparsify::Tensor::into_values);
    for t in tensors.iter_mut().filter(|t| take_part(t)) {
        let Some(nnc_sparsify::TensorValues::F32(src)) = returned.next() else {
            continue;
        };
        match &mut t.data {
            TensorData::F32(dst) => *dst = src,
            TensorData::F16(dst) => zero_where_zeroed(dst, &src, |x| f16::from_f32(x).to_bits()),
            TensorData::BF16(dst) => zero_where_zeroed(dst, &src, |x| bf16::from_f32(x).to_bits()),
            TensorData::F64(dst) => zero_where_zeroed(dst, &src, f64::from),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dicts_counters_neither_change_nor_count() {
        // 64 weights beside 64 non-zero counter entries: counted (the tensor pipeline's rule) they
        // halve the sparsity reached, so the threshold search goes on further than for the state
        // dict, where they take no part (held-out combo set, seed 15, combo_nn_006).
        let weights: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 64) as f32 - 31.5) * 0.01)
            .collect();
        let tensors = vec![
            Tensor::try_new("c.weight", vec![8, 8], TensorData::F32(weights)).unwrap(),
            Tensor::try_new(
                "bn.num_batches_tracked",
                vec![64],
                TensorData::I64(vec![7; 64]),
            )
            .unwrap(),
        ];
        let opts = SparsifyOptions {
            qp: -32,
            qp_density: 2,
            sparsity: 0.4,
            struct_spars_factor: 0.0,
        };
        let zeros = |t: &[Tensor]| match &t[0].data {
            TensorData::F32(v) => v.iter().filter(|&&x| x == 0.0).count(),
            _ => unreachable!(),
        };
        let mut as_dict = tensors.clone();
        sparsify_tensors(&mut as_dict, &opts).unwrap();
        let mut as_state_dict = tensors.clone();
        sparsify_state_dict(&mut as_state_dict, &opts).unwrap();
        assert_eq!(as_state_dict[1], tensors[1]);
        let (dict, state_dict) = (zeros(&as_dict), zeros(&as_state_dict));
        // 40 % of the weights alone, against 40 % of weights and counters together.
        assert!((26..40).contains(&state_dict), "{state_dict}");
        assert!(dict > state_dict + 10, "{dict} vs {state_dict}");
    }

    #[test]
    fn half_precision_tensors_are_sparsified_as_their_float32_values() {
        // Multiples of 1/64 up to ±2: exact in float16 and bfloat16 alike.
        let values = |seed: usize| -> Vec<f32> {
            (0..256)
                .map(|i| (((i + seed) * 37 % 255) as f32 - 127.0) / 64.0)
                .collect()
        };
        let (a, b) = (values(0), values(5));
        let as_f32 = vec![
            Tensor::try_new("a.weight", vec![16, 16], TensorData::F32(a.clone())).unwrap(),
            Tensor::try_new("b.weight", vec![16, 16], TensorData::F32(b.clone())).unwrap(),
        ];
        let f16_bits: Vec<u16> = a.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
        let bf16_bits: Vec<u16> = b.iter().map(|&x| bf16::from_f32(x).to_bits()).collect();
        let mut halves = vec![
            Tensor::try_new("a.weight", vec![16, 16], TensorData::F16(f16_bits)).unwrap(),
            Tensor::try_new("b.weight", vec![16, 16], TensorData::BF16(bf16_bits)).unwrap(),
        ];
        let opts = SparsifyOptions {
            qp: -32,
            qp_density: 2,
            sparsity: 0.6,
            struct_spars_factor: 0.9,
        };
        let mut expected = as_f32;
        sparsify_tensors(&mut expected, &opts).unwrap();
        sparsify_tensors(&mut halves, &opts).unwrap();
        let widened = |t: &Tensor| -> Vec<u32> {
            match &t.data {
                TensorData::F16(v) => v
                    .iter()
                    .map(|&b| f16::from_bits(b).to_f32().to_bits())
                    .collect(),
                TensorData::BF16(v) => v
                    .iter()
                    .map(|&b| bf16::from_bits(b).to_f32().to_bits())
                    .collect(),
                TensorData::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
                _ => unreachable!(),
            }
        };
        assert_eq!(halves[0].dtype(), crate::tensor::DType::F16);
        assert_eq!(halves[1].dtype(), crate::tensor::DType::BF16);
        for (h, e) in halves.iter().zip(&expected) {
            let zeros = widened(h)
                .iter()
                .filter(|&&b| f32::from_bits(b) == 0.0)
                .count();
            assert!(zeros >= 128, "{}: {zeros} zeros", h.name);
            assert_eq!(widened(h), widened(e), "{}", h.name);
        }
    }

    #[test]
    fn float64_tensors_are_sparsified_as_float32_and_keep_their_precision() {
        // Values float32 cannot hold: their float32 roundings decide, the survivors keep every bit.
        let exact: Vec<f64> = (0..256)
            .map(|i| (((i * 37) % 255) as f64 - 127.0) / 64.0 + 1e-12)
            .collect();
        let rounded: Vec<f32> = exact.iter().map(|&x| x as f32).collect();
        let mut wide =
            vec![Tensor::try_new("w", vec![16, 16], TensorData::F64(exact.clone())).unwrap()];
        let mut narrow =
            vec![Tensor::try_new("w", vec![16, 16], TensorData::F32(rounded)).unwrap()];
        let opts = SparsifyOptions {
            qp: -32,
            qp_density: 2,
            sparsity: 0.5,
            struct_spars_factor: 0.0,
        };
        sparsify_tensors(&mut wide, &opts).unwrap();
        sparsify_tensors(&mut narrow, &opts).unwrap();
        let (TensorData::F64(w), TensorData::F32(n)) = (&wide[0].data, &narrow[0].data) else {
            panic!("dtypes changed");
        };
        let mut zeros = 0;
        for ((&w, &n), &x) in w.iter().zip(n).zip(&exact) {
            if n == 0.0 {
                zeros += 1;
                assert_eq!(w.to_bits(), f64::from(n).to_bits());
            } else {
                assert_eq!(w.to_bits(), x.to_bits());
            }
        }
        assert!(zeros >= 128, "{zeros}");
    }

    #[test]
    fn a_tensor_whose_shape_does_not_hold_its_elements_is_refused_untouched() {
        let weights: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) * 0.01).collect();
        let mut tensors = vec![
            Tensor::try_new("a.weight", vec![8, 8], TensorData::F32(weights.clone())).unwrap(),
            // Public fields: a shape of 60 elements over 64.
            Tensor {
                name: "b.weight".into(),
                shape: vec![6, 10],
                data: TensorData::F32(weights),
            },
        ];
        let before = tensors.clone();
        let opts = SparsifyOptions {
            qp: -32,
            qp_density: 2,
            sparsity: 0.5,
            struct_spars_factor: 0.9,
        };
        let err = sparsify_tensors(&mut tensors, &opts).unwrap_err();
        assert!(err.to_string().contains("b.weight"), "{err}");
        assert_eq!(tensors, before);
    }

    #[test]
    fn targets_that_are_not_below_1_or_not_finite_are_refused() {
        let values: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) * 0.01).collect();
        let original = vec![Tensor::try_new("w", vec![8, 8], TensorData::F32(values)).unwrap()];
        let opts = |sparsity, struct_spars_factor| SparsifyOptions {
            qp: -32,
            qp_density: 2,
            sparsity,
            struct_spars_factor,
        };
        for (s, f) in [
            (1.0, 0.9),
            (1.5, 0.9),
            (f64::NAN, 0.9),
            (0.5, f64::NAN),
            (0.5, f64::INFINITY),
        ] {
            let mut t = original.clone();
            let e = sparsify_tensors(&mut t, &opts(s, f)).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{s} {f}");
            assert_eq!(t, original, "refused, so unchanged");
        }
        // Zero or less is off; a target below 1 zeroes some weights.
        for s in [0.0, -0.5] {
            let mut t = original.clone();
            sparsify_tensors(&mut t, &opts(s, 0.9)).unwrap();
            assert_eq!(t, original);
        }
        let mut t = original.clone();
        sparsify_tensors(&mut t, &opts(0.5, 0.0)).unwrap();
        let TensorData::F32(v) = &t[0].data else {
            unreachable!()
        };
        assert!(v.iter().filter(|&&x| x == 0.0).count() > 0);
    }
}

//! Encoder-side sparsification of named tensors, before quantization (the reference's `sparsity`
//! and `struct_spars_factor` arguments of its tensor, model and FL pipelines).

pub use nnc_sparsify::SparsifyOptions;

use crate::encode::is_batch_counter;
use crate::error::{Error, Result};
use crate::tensor::{ShapeMismatch, Tensor, TensorData};

/// Sparsifies `tensors` in place as the reference does before compressing: unstructured
/// (statistics-based, towards `opts.sparsity`), then structured per output channel. Float32 tensors
/// with two or more dimensions are changed; integer tensors only count towards the sparsity;
/// other float types are not supported (convert them to float32 first).
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
        let values = returned.next();
        if let (TensorData::F32(dst), Some(nnc_sparsify::TensorValues::F32(src))) =
            (&mut t.data, values)
        {
            *dst = src;
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

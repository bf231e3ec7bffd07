//! Models and their updates against a base (`--base`): reading the base, the update of a
//! model, and a base with an update applied.

use anyhow::{bail, Context};
use nnc_nn::io::TensorName;
use nnc_tensor::encode::{ParameterData, TensorSource};
use nnc_tensor::{Tensor, TensorData};

/// What `encode --base` codes for `model`'s tensor: its difference to the base tensor, or for
/// an integer tensor (counters and indices such as `num_batches_tracked`, which have no
/// meaningful difference) its new value. Either way the shapes must agree, as
/// [`apply_update`] requires, so no update is written that the base cannot take.
pub fn update_of(model: &Tensor, base: &Tensor) -> anyhow::Result<Tensor> {
    if model.dtype().is_integer() {
        same_shape(model, base)?;
        return Ok(model.clone());
    }
    combine(model, base, -1.0)
}

/// [`update_of`] for tensors read in place: two float32 tensors are subtracted where their
/// elements lie; any other pair is read into tensors first.
pub fn update_of_source(
    model: &TensorSource<'_>,
    base: &TensorSource<'_>,
) -> anyhow::Result<Tensor> {
    match (float32(model), float32(base)) {
        (Some(x), Some(y)) if model.shape() == base.shape() => Ok(Tensor {
            name: model.name().to_string(),
            shape: model.shape().to_vec(),
            data: TensorData::F32(add_scaled(x, y, -1.0)),
        }),
        _ => update_of(&model.to_tensor(), &base.to_tensor()),
    }
}

/// The float32 elements of a tensor or of elements read in place.
fn float32<'s>(source: &'s TensorSource<'_>) -> Option<&'s [f32]> {
    match source {
        TensorSource::Tensor(t) => match &t.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        },
        TensorSource::Elements(e) => match e.data() {
            ParameterData::F32(v) => Some(v),
            ParameterData::I32(_) => None,
        },
    }
}

/// `x + s·y`, element by element.
fn add_scaled(x: &[f32], y: &[f32], s: f32) -> Vec<f32> {
    x.iter().zip(y).map(|(&p, &q)| p + s * q).collect()
}

/// A base tensor with its update applied, the inverse of [`update_of`]: a float update is
/// added, an integer update is the tensor's new value. The result has the update's dtype, which
/// is the model's ([`update_of`] computes the difference in it), not the base's.
pub fn apply_update(base: &Tensor, update: &Tensor) -> anyhow::Result<Tensor> {
    if !update.dtype().is_integer() {
        return combine(update, base, 1.0);
    }
    same_shape(base, update)?;
    Ok(update.clone())
}

/// [`apply_update`] onto a base tensor read in place: a float32 base is added into a float32
/// update's own elements (no third buffer); any other pair is read into tensors first.
pub fn apply_update_to_source(
    base: &TensorSource<'_>,
    mut update: Tensor,
) -> anyhow::Result<Tensor> {
    if let (TensorData::F32(u), Some(b)) = (&mut update.data, float32(base)) {
        if base.shape() == update.shape.as_slice() {
            for (p, &q) in u.iter_mut().zip(b) {
                *p += 1.0 * q;
            }
            return Ok(update);
        }
    }
    apply_update(&base.to_tensor(), &update)
}

/// Refuses an update carrying a tensor the base lacks (the first such name in `update`'s order).
pub fn ensure_in_base<'a, T: TensorName>(
    base: &[T],
    update: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<()> {
    for name in update {
        if !base.iter().any(|b| b.tensor_name() == name) {
            bail!("the update has tensor {name:?}, which the base model lacks");
        }
    }
    Ok(())
}

/// The base with a whole decoded update applied, in the base's order; tensors the update omits
/// keep their values.
pub fn add_to_base(base: Vec<Tensor>, update: Vec<Tensor>) -> anyhow::Result<Vec<Tensor>> {
    ensure_in_base(&base, update.iter().map(|u| u.name.as_str()))?;
    base.into_iter()
        .map(|b| match update.iter().find(|u| u.name == b.name) {
            None => Ok(b),
            Some(u) => apply_update(&b, u),
        })
        .collect()
}

fn same_shape(a: &Tensor, b: &Tensor) -> anyhow::Result<()> {
    if a.shape != b.shape {
        bail!(
            "tensor {:?}: shape {:?} differs from {:?}",
            a.name,
            a.shape,
            b.shape
        );
    }
    Ok(())
}

/// Element-wise `a + sign·b` of two float tensors of the same name and shape, in `a`'s dtype
/// (f64 stays f64; f32, f16 and bf16 are computed in f32 and cast back).
fn combine(a: &Tensor, b: &Tensor, sign: f64) -> anyhow::Result<Tensor> {
    same_shape(a, b)?;
    // float32 with float32, the common case, without the float64 copies below (same values:
    // every f32 survives the round trip through f64).
    if let (TensorData::F32(x), TensorData::F32(y)) = (&a.data, &b.data) {
        return Ok(Tensor {
            name: a.name.clone(),
            shape: a.shape.clone(),
            data: TensorData::F32(add_scaled(x, y, sign as f32)),
        });
    }
    let as_f64 = |t: &Tensor| -> anyhow::Result<Vec<f64>> {
        match &t.data {
            TensorData::F64(v) => Ok(v.clone()),
            d => d
                .as_f32_lossless()
                .map(|v| v.iter().map(|&x| f64::from(x)).collect())
                .with_context(|| {
                    format!(
                        "tensor {:?}: {} data cannot be added",
                        t.name,
                        t.dtype().numpy_name()
                    )
                }),
        }
    };
    let (x, y) = (as_f64(a)?, as_f64(b)?);
    let data = match a.dtype() {
        nnc_tensor::DType::F64 => {
            TensorData::F64(x.iter().zip(&y).map(|(p, q)| p + sign * q).collect())
        }
        dtype => {
            let sum: Vec<f32> = x
                .iter()
                .zip(&y)
                .map(|(&p, &q)| (p as f32) + (sign as f32) * (q as f32))
                .collect();
            TensorData::from_f32_cast(dtype, &sum).context("not a float type")?
        }
    };
    Ok(Tensor {
        name: a.name.clone(),
        shape: a.shape.clone(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nnc_tensor::encode::NamedElements;

    fn t(name: &str, shape: Vec<usize>, data: TensorData) -> Tensor {
        Tensor::try_new(name, shape, data).unwrap()
    }

    fn in_place(t: &Tensor) -> TensorSource<'static> {
        let data = match &t.data {
            TensorData::F32(v) => ParameterData::from(v.clone()),
            TensorData::I32(v) => ParameterData::from(v.clone()),
            other => panic!("not an element type: {other:?}"),
        };
        NamedElements::try_new(t.name.clone(), t.shape.clone(), data)
            .unwrap()
            .into()
    }

    /// Float32 and int32 tensors as elements read in place, others as given tensors.
    fn in_place_or_tensor(x: &Tensor) -> TensorSource<'static> {
        match x.dtype() {
            nnc_tensor::DType::F32 | nnc_tensor::DType::I32 => in_place(x),
            _ => TensorSource::from(x.clone()),
        }
    }

    #[test]
    fn updates_of_and_onto_sources_are_those_of_their_tensors() {
        let w = |k: f32| TensorData::F32((0..6).map(|i| i as f32 * k - 0.3).collect());
        let (model, base) = (t("w", vec![2, 3], w(0.7)), t("w", vec![2, 3], w(0.2)));
        let half = t(
            "w",
            vec![2, 3],
            TensorData::from_f32_cast(nnc_tensor::DType::F16, &[0.5; 6]).unwrap(),
        );
        let ids = (
            t("n", vec![1], TensorData::I32(vec![9])),
            t("n", vec![1], TensorData::I32(vec![4])),
        );
        for (m, b) in [
            (&model, &base),
            (&half, &base),
            (&model, &half),
            (&ids.0, &ids.1),
        ] {
            let expected = update_of(m, b).unwrap();
            let elements = in_place_or_tensor;
            for (ms, bs) in [
                (elements(m), elements(b)),
                (TensorSource::from(m), elements(b)),
                (elements(m), TensorSource::from(b)),
            ] {
                assert_eq!(update_of_source(&ms, &bs).unwrap(), expected);
            }
        }
        // And back: the base read in place with the update applied is the base with it applied.
        for (b, m) in [
            (&base, &model),
            (&half, &base),
            (&base, &half),
            (&ids.1, &ids.0),
        ] {
            let update = update_of(m, b).unwrap();
            let expected = apply_update(b, &update).unwrap();
            assert_eq!(
                apply_update_to_source(&in_place_or_tensor(b), update).unwrap(),
                expected
            );
        }
        // Shapes must agree whatever holds the elements.
        let other = t("w", vec![3, 2], w(0.2));
        assert!(update_of_source(&in_place(&model), &in_place(&other)).is_err());
        let update = update_of(&model, &base).unwrap();
        assert!(apply_update_to_source(&in_place(&other), update).is_err());
    }
}

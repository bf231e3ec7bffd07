//! Models and their updates against a base (`--base`): reading the base, the update of a
//! model, and a base with an update applied.

use anyhow::{bail, Context};
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

/// Refuses an update carrying a tensor the base lacks (the first such name in `update`'s order).
pub fn ensure_in_base<'a>(
    base: &[Tensor],
    update: impl IntoIterator<Item = &'a str>,
) -> anyhow::Result<()> {
    for name in update {
        if !base.iter().any(|b| b.name == name) {
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
        let s = sign as f32;
        return Ok(Tensor {
            name: a.name.clone(),
            shape: a.shape.clone(),
            data: TensorData::F32(x.iter().zip(y).map(|(&p, &q)| p + s * q).collect()),
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

//! Inference-optimised quantization (IOQ): the weights' QPs chosen by what the reconstructed
//! model scores, as the reference's `nnc.compress(..., ioq=True)` chooses them with its model
//! executer's `eval_model`.
//!
//! The search (the reference's `inference_based_qp_opt`):
//! 1. the model as the options code it gives the reference size and score;
//! 2. every weight one QP finer, then one coarser, gives two slopes of score against bytes,
//!    whose mean (at least 0) weighs the bytes;
//! 3. each weight but the largest, largest first, tries its QP 4 to 1 steps finer, then 1 to 4
//!    coarser, on top of the best choice so far; a try is kept when its score loss plus the
//!    weighted byte change, both against the reference of step 1, is the lowest yet (below 0).
//!
//! The model is then coded with the QPs chosen. This module knows nothing of what the score
//! means: the caller's closure computes it from the reconstructed tensors.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use super::model::{EncodeInput, ModelParameter, ParameterData};
use super::options::{CodebookMode, EncodeOptions, ParameterType};
use super::{encode, EncodedStream};
use crate::decode::Approximation;
use crate::error::Error;
use crate::tensor::Tensor;

/// QP offsets each weight tries after the global steps, in the reference's order.
const OFFSETS: [i32; 8] = [-4, -3, -2, -1, 1, 2, 3, 4];

/// Why an inference-optimised encode stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoqError<E> {
    /// Coding the model (or the options) failed.
    #[error(transparent)]
    Codec(#[from] Error),
    /// The caller's evaluation failed.
    #[error("the evaluation of a trial failed: {0}")]
    Evaluation(E),
}

/// What [`encode_inference_optimised`] chose and coded.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct InferenceOptimised {
    /// The stream coded with the chosen QPs.
    pub stream: EncodedStream,
    /// The QP of every quantized tensor in the stream (weights as chosen, the others as the
    /// options give them), by name.
    pub qps: BTreeMap<String, i32>,
    /// How many times the evaluation ran.
    pub evaluations: usize,
}

/// Codes `input` with the weights' QPs chosen by inference-optimised quantization: `evaluate`
/// scores a reconstruction of the model (higher is better: an accuracy), given its coded tensors
/// in the input's order, each as the decoder reconstructs it (float32, or int32 for integer
/// tensors). The bytes are those of the reference's `nnc.compress(..., ioq=True)` whose
/// `eval_model` returns the same scores (its first value).
///
/// A model with `W` weights is evaluated `3 + 8·(W − 1)` times (trials of integer weights,
/// which no QP changes, are skipped). The first three trials code the whole model; each later
/// one moves one weight's QP, so it codes only that weight's NDU (NDUs are coded
/// independently, so the stream's size moves by that NDU's), where the reference codes the
/// whole model every time.
///
/// Refused with [`Error::InvalidArgument`] (as [`IoqError::Codec`]): codebooks, a bit depth
/// (`int_quant_bw`: each tensor's QP follows from it), batch-norm folding, low-rank weights
/// (the reference's search cannot handle them either), and a model whose size does not change
/// when every weight's QP moves by one step (the reference divides by that change).
///
/// ```
/// use nnc_tensor::encode::{encode_inference_optimised, EncodeInput};
/// use nnc_tensor::{EncodeOptions, Tensor, TensorData};
///
/// let w = |name: &str, rows: usize, scale: f32| {
///     let v: Vec<f32> = (0..rows * 16).map(|i| scale * ((i * 37 % 101) as f32 - 50.0)).collect();
///     Tensor::try_new(name, vec![rows, 16], TensorData::F32(v)).unwrap()
/// };
/// let model = vec![w("a", 32, 1e-3), w("b", 16, 2e-3), w("c", 8, 3e-3)];
/// let input = EncodeInput::from_tensors(&model).unwrap();
/// // Score: how many values lie within 1e-3 of the original.
/// let score = |rec: &[Tensor]| -> Result<f64, std::convert::Infallible> {
///     let mut hits = 0usize;
///     for (r, o) in rec.iter().zip(&model) {
///         let (TensorData::F32(r), TensorData::F32(o)) = (&r.data, &o.data) else { unreachable!() };
///         hits += r.iter().zip(o).filter(|(a, b)| (**a - **b).abs() <= 1e-3).count();
///     }
///     Ok(hits as f64 / 896.0)
/// };
/// let done = encode_inference_optimised(&input, &EncodeOptions::default(), score).unwrap();
/// assert_eq!(done.evaluations, 19);
/// assert_eq!(done.qps.len(), 3);
/// ```
pub fn encode_inference_optimised<'a, 'b: 'a, E, F>(
    input: impl Into<Cow<'a, EncodeInput<'b>>>,
    opts: &EncodeOptions,
    mut evaluate: F,
) -> Result<InferenceOptimised, IoqError<E>>
where
    F: FnMut(&[Tensor]) -> Result<f64, E>,
{
    let input = input.into();
    check(&input, opts)?;
    let mut evaluations = 0usize;
    let mut score = |reconstruction: &[Tensor]| -> Result<f64, IoqError<E>> {
        evaluations += 1;
        evaluate(reconstruction).map_err(IoqError::Evaluation)
    };

    let reference = encode(&*input, opts)?;
    // The model as the search's current choice reconstructs it, in the input's order.
    let mut current = reconstruct(&input, &reference)?;
    let ref_score = score(&current)?;
    let base = coded_qps(&reference);
    let ref_bytes = reference.bytes.len();
    // Weights in the input's order; integer ones count for the order but no QP moves them.
    let weights: Vec<(&str, usize, bool)> = input
        .parameters
        .iter()
        .filter(|p| p.parameter_type == ParameterType::Weight)
        .map(|p| {
            let quantized = matches!(p.data, ParameterData::F32(_)) && base.contains_key(&p.name);
            (p.name.as_str(), p.data.len(), quantized)
        })
        .collect();

    // Every weight moves: the whole model is coded.
    let mut slope = |step: i32| -> Result<f64, IoqError<E>> {
        let mut qps = base.clone();
        for &(name, _, quantized) in &weights {
            if let (true, Some(qp)) = (quantized, qps.get_mut(name)) {
                *qp += step;
            }
        }
        let stream = encode(&*input, &pinned(opts, &qps))?;
        let trial_score = score(&reconstruct(&input, &stream)?)?;
        let diff_bytes = stream.bytes.len() as i64 - ref_bytes as i64;
        if diff_bytes == 0 {
            return Err(Error::InvalidArgument {
                what: format!(
                    "inference-optimised quantization: the stream has the same size with every \
                     weight's QP moved by {step}, so its score cannot be weighed against bytes"
                ),
            }
            .into());
        }
        Ok(-(ref_score - trial_score) / diff_bytes as f64)
    };
    let minus = slope(-1)?;
    let plus = slope(1)?;
    // Python's max(x, 0.0): x unless 0.0 is greater (a NaN stays).
    let mean = (plus + minus) / 2.0;
    let lambda = if 0.0 > mean { 0.0 } else { mean };

    let mut by_size = weights.clone();
    // Stable, so weights of one size keep their order, as in Python's sort.
    by_size.sort_by_key(|w| std::cmp::Reverse(w.1));
    let position: HashMap<String, usize> = current
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut best = base.clone();
    let mut best_cost = 0.0f64;
    let mut best_bytes = ref_bytes;
    for &(name, _, quantized) in by_size.iter().skip(1) {
        let Some(&qp) = base.get(name).filter(|_| quantized) else {
            continue;
        };
        // Only this weight's NDU changes (NDUs are coded independently), so a try codes that
        // NDU's tensors alone: the stream's size moves by what that NDU's does.
        let unit = Unit::of(&input, name);
        let mut held = unit.encode(opts, &best)?.bytes.len();
        for offset in OFFSETS {
            let mut qps = best.clone();
            qps.insert(name.to_string(), qp + offset);
            let coded = unit.encode(opts, &qps)?;
            let bytes = (best_bytes + coded.bytes.len()).saturating_sub(held);
            let displaced = swap_in(&mut current, &position, &coded)?;
            let trial_score = score(&current)?;
            let cost =
                (ref_score - trial_score) + lambda * (bytes as i64 - ref_bytes as i64) as f64;
            if cost < best_cost {
                best = qps;
                best_cost = cost;
                best_bytes = bytes;
                held = coded.bytes.len();
            } else {
                for (i, t) in displaced {
                    current[i] = t;
                }
            }
        }
    }
    let stream = if best == base {
        reference
    } else {
        encode(&*input, &pinned(opts, &best))?
    };
    Ok(InferenceOptimised {
        qps: coded_qps(&stream),
        stream,
        evaluations,
    })
}

/// The tensors of one NDU (a weight, with its block's other members), as a model of their own.
struct Unit<'i> {
    input: EncodeInput<'i>,
}

impl<'i> Unit<'i> {
    fn of(input: &'i EncodeInput<'_>, weight: &str) -> Self {
        let block = input.block_identifier.get(weight);
        let member = |name: &str| {
            name == weight || (block.is_some() && input.block_identifier.get(name) == block)
        };
        let parameters = input
            .parameters
            .iter()
            .filter(|p| member(&p.name))
            .map(|p| ModelParameter {
                name: p.name.clone(),
                dims: p.dims.clone(),
                data: p.data.view(),
                parameter_type: p.parameter_type,
                parameter_index: p.parameter_index,
                original_dtype: p.original_dtype,
                original_shape: p.original_shape.clone(),
            })
            .collect();
        let block_identifier = input
            .block_identifier
            .iter()
            .filter(|(name, _)| member(name))
            .map(|(name, id)| (name.clone(), id.clone()))
            .collect();
        Unit {
            input: EncodeInput {
                parameters,
                decomposed_weights: Vec::new(),
                extra_tensors: Vec::new(),
                block_identifier,
                topology_storage_format: input.topology_storage_format,
                attributes: BTreeMap::new(),
                files: BTreeMap::new(),
            },
        }
    }

    /// The unit coded with its tensors' QPs from `qps`.
    fn encode(
        &self,
        opts: &EncodeOptions,
        qps: &BTreeMap<String, i32>,
    ) -> Result<EncodedStream, Error> {
        let own = self
            .input
            .parameters
            .iter()
            .filter_map(|p| qps.get(&p.name).map(|&qp| (p.name.clone(), qp)))
            .collect();
        encode(&self.input, &pinned(opts, &own))
    }
}

/// Puts the reconstructions of `coded`'s tensors into `current`; returns what they replaced.
fn swap_in(
    current: &mut [Tensor],
    position: &HashMap<String, usize>,
    coded: &EncodedStream,
) -> Result<Vec<(usize, Tensor)>, Error> {
    let mut displaced = Vec::with_capacity(coded.tensors.len());
    for t in &coded.tensors {
        let Some(&i) = position.get(&t.name) else {
            continue;
        };
        displaced.push((i, std::mem::replace(&mut current[i], t.reconstructed()?)));
    }
    Ok(displaced)
}

fn check(input: &EncodeInput<'_>, opts: &EncodeOptions) -> Result<(), Error> {
    let refuse = |what: &str| {
        Err(Error::InvalidArgument {
            what: format!("inference-optimised quantization {what}"),
        })
    };
    if opts.codebook_mode != CodebookMode::Off {
        return refuse("chooses uniform QPs: not with codebooks");
    }
    if opts.int_quant_bw.is_some_and(|b| b > 0) {
        return refuse("chooses QPs: not with a bit depth, which sets them");
    }
    if opts.bnf {
        return refuse("scores the model as given: not with batch-norm folding");
    }
    if !input.decomposed_weights.is_empty() {
        return refuse("cannot move the QP of a low-rank weight");
    }
    Ok(())
}

/// The options with every quantized tensor's QP fixed to `qps` (no further QP rule applies).
fn pinned(opts: &EncodeOptions, qps: &BTreeMap<String, i32>) -> EncodeOptions {
    let mut pinned = opts.clone();
    pinned.opt_qp = false;
    pinned.qp_per_tensor = qps.clone();
    pinned
}

/// The QP each quantized tensor of the stream was coded with.
fn coded_qps(stream: &EncodedStream) -> BTreeMap<String, i32> {
    stream
        .tensors
        .iter()
        .filter_map(|t| match t.approximation {
            Approximation::Uniform { qp, .. } => Some((t.name.clone(), qp)),
            _ => None,
        })
        .collect()
}

/// The coded tensors of `stream` as the decoder reconstructs them, in the input's order.
fn reconstruct(input: &EncodeInput<'_>, stream: &EncodedStream) -> Result<Vec<Tensor>, Error> {
    let coded: HashMap<&str, &super::EncodedTensor> = stream
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    input
        .parameters
        .iter()
        .filter_map(|p| coded.get(p.name.as_str()))
        .map(|t| t.reconstructed())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::CodebookMode;
    use crate::tensor::TensorData;

    fn model(scale: f32) -> Vec<Tensor> {
        (0..3)
            .map(|i| {
                let n = 64 * (i + 1);
                let v = (0..n)
                    .map(|k| scale * ((k * 37 % 101) as f32 - 50.0))
                    .collect();
                Tensor::try_new(format!("w{i}"), vec![i + 1, 64], TensorData::F32(v)).unwrap()
            })
            .collect()
    }

    fn never(_: &[Tensor]) -> Result<f64, String> {
        Err("not called".into())
    }

    #[test]
    fn what_the_search_cannot_move_is_refused_before_any_trial() {
        let tensors = model(1e-3);
        let input = EncodeInput::from_tensors(&tensors).unwrap();
        let refused = |opts: EncodeOptions| {
            let e = encode_inference_optimised(&input, &opts, never).unwrap_err();
            assert!(
                matches!(e, IoqError::Codec(Error::InvalidArgument { .. })),
                "{e}"
            );
        };
        refused(EncodeOptions {
            codebook_mode: CodebookMode::Auto,
            ..Default::default()
        });
        refused(EncodeOptions {
            int_quant_bw: Some(8),
            ..Default::default()
        });
        refused(EncodeOptions {
            bnf: true,
            ..Default::default()
        });
    }

    #[test]
    fn a_score_error_stops_the_search_and_a_flat_size_is_refused() {
        let tensors = model(1e-3);
        let input = EncodeInput::from_tensors(&tensors).unwrap();
        let e = encode_inference_optimised(&input, &EncodeOptions::default(), never).unwrap_err();
        assert!(matches!(e, IoqError::Evaluation(ref m) if m == "not called"));
        // All-zero weights code to the same size at any QP: the reference divides by zero.
        let zeros = model(0.0);
        let input = EncodeInput::from_tensors(&zeros).unwrap();
        let e = encode_inference_optimised(&input, &EncodeOptions::default(), |_| {
            Ok::<f64, String>(1.0)
        })
        .unwrap_err();
        assert!(e.to_string().contains("same size"), "{e}");
    }
}

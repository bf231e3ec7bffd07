//! The client side: decode the server's downstream message into the global model, and code the
//! local update (difference to that model, plus the residual of earlier messages) upstream.

use nnc_tensor::binary_form::packed_f32;
use nnc_tensor::IncrementalState;
use serde::{Deserialize, Serialize};

use crate::batch_norm::Folding;
use crate::error::{FlError, Result};
use crate::layout::{add_assign, decode_raw, encode_raw, sub, Layout};
use crate::message::{compress, decompress};
use crate::options::FlOptions;

/// Everything a client keeps between rounds (the reference's `client_ID<k>_internal_states.npz`
/// plus the downstream decoder state, which the reference shares with the server's file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientState {
    /// The client's `device_id` in its NDUs (1 or more; 0 is the server).
    pub device_id: u64,
    /// Updates sent so far (`comm_round`).
    pub comm_round: u64,
    /// The last global model received (`prev_mdl`): the base of the next update.
    #[serde(with = "packed_f32::option")]
    pub global: Option<Vec<f32>>,
    /// What the coding of earlier updates left out (`residuals`), added to the next update.
    #[serde(with = "packed_f32::option")]
    pub residual: Option<Vec<f32>>,
    /// Encoder state of this client's upstream messages; equal to the server's decoder state
    /// for this client after each message.
    pub upstream: IncrementalState,
    /// Decoder state of the server's downstream messages.
    pub downstream: IncrementalState,
    /// With `bnf`: the batch norms of the last local model sent (per batch norm: gamma, beta,
    /// running mean and variance), which the next global model's batch norms are blended with
    /// (the reference's `local_bn_params`).
    #[serde(default, with = "packed_f32::option")]
    pub local_norms: Option<Vec<f32>>,
}

/// Client-side codec. Holds no network or training code: it turns messages into models and
/// models into messages.
#[derive(Clone, Debug)]
pub struct ClientCodec {
    layout: Layout,
    opts: FlOptions,
    state: ClientState,
    folding: Option<Folding>,
}

impl ClientCodec {
    /// A client that has received nothing yet. `device_id` must be at least 1.
    pub fn new(layout: Layout, opts: FlOptions, device_id: u64) -> Result<Self> {
        let state = ClientState {
            device_id,
            comm_round: 0,
            global: None,
            residual: None,
            upstream: IncrementalState::default(),
            downstream: IncrementalState::default(),
            local_norms: None,
        };
        Self::resume(layout, opts, state)
    }

    /// A client continuing from a saved state.
    pub fn resume(layout: Layout, opts: FlOptions, state: ClientState) -> Result<Self> {
        opts.validate()?;
        if state.device_id == 0 {
            return Err(FlError::Options(
                "client device_id 0 is reserved for the server".into(),
            ));
        }
        let folding = opts.bnf.then(|| Folding::new(&layout)).transpose()?;
        match (&folding, &state.local_norms) {
            (Some(f), Some(n)) if n.len() != f.local_norms_len(&layout) => {
                return Err(FlError::ModelSize {
                    what: "saved local batch norms",
                    expected: f.local_norms_len(&layout),
                    actual: n.len(),
                })
            }
            (None, Some(_)) => {
                return Err(FlError::Options(
                    "the saved state holds batch norms of a bnf session, the options have no bnf"
                        .into(),
                ))
            }
            _ => {}
        }
        if let Some(g) = &state.global {
            layout.check("saved global model", g)?;
        }
        let upstream = folding.as_ref().map_or(&layout, Folding::upstream);
        if let Some(r) = &state.residual {
            upstream.check("saved residual", r)?;
        }
        Ok(ClientCodec {
            layout,
            opts,
            state,
            folding,
        })
    }

    /// The state to persist.
    pub fn state(&self) -> &ClientState {
        &self.state
    }

    /// Consumes the codec, giving its state.
    pub fn into_state(self) -> ClientState {
        self.state
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The last global model received.
    pub fn global_model(&self) -> Option<&[f32]> {
        self.state.global.as_deref()
    }

    /// Decodes a downstream message and returns the new global model, which local training
    /// starts from and the next update is taken against.
    ///
    /// The first message a client receives is always the uncompressed initial model (as the
    /// reference's Flower `initial_parameters`); later ones are NNC bitstreams when
    /// `compress_downstream` is set.
    ///
    /// With `bnf` the message is a folded difference: it is added to the folded last global
    /// model, and the batch norms are blended with those of the last local model sent (see
    /// `docs/fl.md#fedbnf`), so each client trains from its own batch norms.
    pub fn receive(&mut self, message: &[u8]) -> Result<Vec<f32>> {
        let global = match &self.state.global {
            Some(prev) if self.opts.compress_downstream => {
                let wire = self
                    .folding
                    .as_ref()
                    .map_or(&self.layout, Folding::downstream);
                let (decoded, changes) = decompress(
                    wire,
                    message,
                    0,
                    self.opts.compress_differences,
                    &self.state.downstream,
                    self.opts.threads,
                )?;
                let global = match &self.folding {
                    // bnf implies compress_differences.
                    Some(f) => {
                        let local = self.state.local_norms.as_deref().ok_or_else(|| {
                            FlError::Protocol(
                                "bnf: a compressed global model before any local model was sent \
                                 (its batch norms are blended with the last local model's)"
                                    .into(),
                            )
                        })?;
                        let folded = f
                            .message_to_upstream(&decoded)
                            .added_to(f.upstream(), &f.fold(&self.layout, prev));
                        f.unfold_blended(&self.layout, &folded, local)
                    }
                    None if self.opts.compress_differences => decoded.added_to(&self.layout, prev),
                    None => decoded.values,
                };
                self.layout.check_finite("global model", &global)?;
                changes.apply(&mut self.state.downstream)?;
                global
            }
            _ => {
                let g = decode_raw(&self.layout, message)?;
                self.layout.check_finite("global model", &g)?;
                g
            }
        };
        // Into the last global model's memory, which is already mapped.
        match &mut self.state.global {
            Some(kept) if kept.len() == global.len() => kept.copy_from_slice(&global),
            kept => *kept = Some(nnc_quant::buffer::copied(&global)),
        }
        Ok(global)
    }

    /// Codes the locally trained model `local` as this round's upstream message.
    ///
    /// Compressed: the update is `local − global` (with `compress_differences`) or `local`, plus
    /// the residual (with `err_accumulation`); the new residual is the update minus what the
    /// server will decode. Uncompressed: the raw local model. With `bnf` both models are folded
    /// before their difference is taken, and `local`'s batch norms are kept for the next
    /// [`ClientCodec::receive`].
    pub fn send(&mut self, local: &[f32]) -> Result<Vec<u8>> {
        let global =
            self.state.global.as_deref().ok_or_else(|| {
                FlError::Protocol("send before any global model was received".into())
            })?;
        self.layout.check_finite("local model", local)?;
        if !self.opts.compress_upstream {
            self.state.comm_round += 1;
            return Ok(encode_raw(local));
        }
        let mut update = match &self.folding {
            // Differences of the folded models (bnf implies compress_differences).
            Some(f) => sub(&f.fold(&self.layout, local), &f.fold(&self.layout, global)),
            None if self.opts.compress_differences => sub(local, global),
            None => nnc_quant::buffer::copied(local),
        };
        if self.opts.err_accumulation {
            if let Some(r) = &self.state.residual {
                add_assign(&mut update, r);
            }
        }
        let wire = self
            .folding
            .as_ref()
            .map_or(&self.layout, Folding::upstream);
        let (coded, changes) = compress(
            wire,
            &self.opts,
            self.state.device_id,
            &update,
            &self.state.upstream,
        )?;
        if self.opts.err_accumulation {
            // The update is not needed any more: the residual takes its memory.
            coded.subtract_reconstruction_from(wire, &mut update)?;
        }
        changes.apply(&mut self.state.upstream)?;
        if self.opts.err_accumulation {
            self.state.residual = Some(update);
        }
        if let Some(f) = &self.folding {
            self.state.local_norms = Some(f.local_norms(&self.layout, local));
        }
        self.state.comm_round += 1;
        Ok(coded.bytes)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::layout::TensorSpec;
    use crate::message::decompress;

    /// A two-tensor layout (36 values) shared by the client and server tests.
    pub(crate) fn layout() -> Layout {
        Layout::new(vec![
            TensorSpec::new("w", vec![4, 8]),
            TensorSpec::new("b", vec![4]),
        ])
        .unwrap()
    }

    fn model(scale: f32) -> Vec<f32> {
        (0..36)
            .map(|i| ((i * 7 % 11) as f32 - 5.0) * scale)
            .collect()
    }

    #[test]
    fn send_before_receive_is_a_protocol_error() {
        let mut c = ClientCodec::new(layout(), FlOptions::compressed(-32), 1).unwrap();
        assert!(matches!(c.send(&model(0.1)), Err(FlError::Protocol(_))));
        assert!(ClientCodec::new(layout(), FlOptions::default(), 0).is_err());
    }

    /// Without error accumulation a send keeps no residual, whether or not it verifies its
    /// messages (verification makes the values the residual would come from), and verifying
    /// changes neither the messages nor the state.
    #[test]
    fn sends_without_error_accumulation_keep_no_residual() {
        let plain = FlOptions {
            err_accumulation: false,
            tca: true,
            ..FlOptions::compressed(-32)
        };
        let verified = FlOptions {
            verify_messages: true,
            ..plain.clone()
        };
        let mut sent = Vec::new();
        for opts in [plain, verified] {
            let mut c = ClientCodec::new(layout(), opts, 1).unwrap();
            c.receive(&encode_raw(&model(0.1))).unwrap();
            let first = c.send(&model(0.13)).unwrap();
            let second = c.send(&model(0.17)).unwrap();
            assert!(c.state().residual.is_none());
            sent.push((first, second, c.into_state()));
        }
        assert_eq!(sent[0], sent[1]);
    }

    #[test]
    fn uncompressed_sends_the_raw_local_model() {
        let l = layout();
        let mut c = ClientCodec::new(l.clone(), FlOptions::default(), 1).unwrap();
        let g = model(0.1);
        assert_eq!(c.receive(&encode_raw(&g)).unwrap(), g);
        let local = model(0.2);
        let msg = c.send(&local).unwrap();
        assert_eq!(msg.len(), l.raw_message_len());
        assert_eq!(decode_raw(&l, &msg).unwrap(), local);
    }

    #[test]
    fn error_accumulation_arithmetic() {
        // Coarse qp: most of a small update is lost to quantization and must come back through
        // the residual, exactly: residual = (update + old residual) − reconstruction.
        let l = layout();
        let opts = FlOptions::compressed(-8);
        let mut c = ClientCodec::new(l.clone(), opts.clone(), 1).unwrap();
        let g = model(0.1);
        c.receive(&encode_raw(&g)).unwrap();
        let local: Vec<f32> = g
            .iter()
            .enumerate()
            .map(|(i, v)| v + 0.3 * ((i % 3) as f32 - 1.0))
            .collect();
        let msg = c.send(&local).unwrap();
        let mut server_state = IncrementalState::default();
        let (rec, changes) = decompress(&l, &msg, 1, true, &server_state, None).unwrap();
        changes.apply(&mut server_state).unwrap();
        let rec = rec.values;
        let update = sub(&local, &g);
        let r1 = c.state().residual.clone().unwrap();
        for i in 0..36 {
            assert_eq!(r1[i], update[i] - rec[i]);
        }
        assert_eq!(server_state, c.state().upstream);

        // Same global, same local model again: the input is update + r1.
        let msg = c.send(&local).unwrap();
        let (rec2, _) = decompress(&l, &msg, 1, true, &server_state, None).unwrap();
        let rec2 = rec2.values;
        let r2 = c.state().residual.clone().unwrap();
        for i in 0..36 {
            let input = update[i] + r1[i];
            assert_eq!(r2[i], input - rec2[i]);
        }
        // What reached the server over both messages plus what is still owed is twice the update.
        for i in 0..36 {
            let total = rec[i] + rec2[i] + r2[i];
            assert!((total - 2.0 * update[i]).abs() < 1e-5);
        }
        assert_eq!(c.state().comm_round, 2);
    }

    /// A codebook tensor decodes to float64: its residual is the update minus that, rounded
    /// once (`quirks.md#fl-codebook-residual`); the float32 tensors' stay float32 differences.
    #[test]
    fn error_accumulation_with_codebooks_rounds_each_residual_once() {
        let l = Layout::new(vec![
            TensorSpec::new("w", vec![32, 64]),
            TensorSpec::new("b", vec![32]),
        ])
        .unwrap();
        let opts = FlOptions {
            approx_method: crate::options::ApproxMethod::Codebook,
            ..FlOptions::compressed(-23)
        };
        let mut c = ClientCodec::new(l.clone(), opts, 1).unwrap();
        let g: Vec<f32> = (0..l.num_values())
            .map(|i| (i % 13) as f32 * 0.01)
            .collect();
        c.receive(&encode_raw(&g)).unwrap();
        // Local steps of four sizes, so that a codebook is the smaller payload.
        let local: Vec<f32> = g
            .iter()
            .enumerate()
            .map(|(i, v)| v + [-0.5f32, 0.0, 0.5, 0.25][(i * 7 + i / 5) % 4])
            .collect();
        let msg = c.send(&local).unwrap();
        let (rec, _) = decompress(&l, &msg, 1, true, &IncrementalState::default(), None).unwrap();
        assert!(!rec.wide.is_empty(), "no tensor was coded with a codebook");
        let update = sub(&local, &g);
        let residual = c.state().residual.clone().unwrap();
        for i in 0..l.specs().len() {
            let r = l.range(i);
            let expected: Vec<f32> = match rec.wide_of(i) {
                Some(w) => update[r.clone()]
                    .iter()
                    .zip(w)
                    .map(|(&u, &x)| (f64::from(u) - x) as f32)
                    .collect(),
                None => update[r.clone()]
                    .iter()
                    .zip(&rec.values[r.clone()])
                    .map(|(&u, &x)| u - x)
                    .collect(),
            };
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert!(bits(&residual[r]) == bits(&expected), "tensor {i}");
        }
    }

    #[test]
    fn without_error_accumulation_no_residual_is_kept() {
        let opts = FlOptions {
            err_accumulation: false,
            ..FlOptions::compressed(-8)
        };
        let mut c = ClientCodec::new(layout(), opts, 1).unwrap();
        c.receive(&encode_raw(&model(0.1))).unwrap();
        c.send(&model(0.15)).unwrap();
        assert!(c.state().residual.is_none());
    }

    #[test]
    fn opt_qp_update_in_which_no_weight_moved() {
        // Only the bias was trained (the weights frozen): every weight update is zero, which
        // leaves opt_qp's shares 0/0 (the reference crashes there).
        let l = Layout::new(vec![
            TensorSpec::new("fc.weight", vec![4, 8]),
            TensorSpec::new("fc.bias", vec![4]),
        ])
        .unwrap();
        let opts = FlOptions {
            opt_qp: true,
            ..FlOptions::compressed(-32)
        };
        let mut c = ClientCodec::new(l.clone(), opts, 1).unwrap();
        let g = model(0.1);
        c.receive(&encode_raw(&g)).unwrap();
        let mut local = g.clone();
        for v in &mut local[32..] {
            *v += 0.25;
        }
        let msg = c.send(&local).unwrap();
        let (rec, _) = decompress(&l, &msg, 1, true, &IncrementalState::default(), None).unwrap();
        let rec = rec.values;
        assert!(rec[..32].iter().all(|&v| v == 0.0));
        assert!(rec[32..].iter().all(|&v| (v - 0.25).abs() < 0.01));
    }

    #[test]
    fn failed_send_leaves_the_state_unchanged() {
        let mut c = ClientCodec::new(layout(), FlOptions::compressed(-32), 1).unwrap();
        c.receive(&encode_raw(&model(0.1))).unwrap();
        let before = c.state().clone();
        let mut bad = model(0.1);
        bad[0] = f32::NAN;
        assert!(matches!(c.send(&bad), Err(FlError::NonFinite { .. })));
        assert_eq!(c.state(), &before);
        assert!(matches!(c.send(&bad[..10]), Err(FlError::ModelSize { .. })));
    }

    #[test]
    fn resume_checks_the_saved_vectors() {
        let mut state = ClientCodec::new(layout(), FlOptions::default(), 2)
            .unwrap()
            .into_state();
        state.global = Some(vec![0.0; 5]);
        assert!(matches!(
            ClientCodec::resume(layout(), FlOptions::default(), state),
            Err(FlError::ModelSize { .. })
        ));
    }
}

//! The server side: decode each client's message with that client's own decoder state, average
//! them (FedAvg), and code the new global model's update downstream to all clients.

use std::collections::BTreeMap;

use nnc_tensor::binary_form::packed_f32;
use nnc_tensor::IncrementalState;
use serde::{Deserialize, Serialize};

use crate::batch_norm::Folding;
use crate::error::{FlError, Result};
use crate::fedavg::weighted_average_decoded;
use crate::layout::{add_assign, decode_raw, encode_raw, sub, Layout};
use crate::message::{compress, decompress, Decoded};
use crate::options::FlOptions;

/// One client's upstream message with its aggregation weight.
#[derive(Clone, Copy, Debug)]
pub struct ClientMessage<'a> {
    /// The sender's `device_id`.
    pub device_id: u64,
    /// FedAvg weight (the client's sample count, or whatever the session agreed on).
    pub weight: u64,
    /// The message.
    pub bytes: &'a [u8],
}

/// Everything the server keeps between rounds (the reference's `client_ID0_internal_states.npz`,
/// `base_mdl` and the clients' state files, which its decoder updates).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerState {
    /// Rounds aggregated so far.
    pub round: u64,
    /// The global model as every client reconstructs it (`base_mdl`). With `bnf`, after the
    /// first round, the folded global model with batch norms of the same effect (see
    /// [`ServerCodec::global_model`]).
    #[serde(with = "packed_f32")]
    pub global: Vec<f32>,
    /// What the coding of earlier downstream messages left out, added to the next one.
    #[serde(with = "packed_f32::option")]
    pub residual: Option<Vec<f32>>,
    /// Encoder state of the downstream messages (device 0); equal to every client's downstream
    /// decoder state after each message.
    pub downstream: IncrementalState,
    /// Decoder state of each client's upstream messages, by `device_id`.
    pub upstream: BTreeMap<u64, IncrementalState>,
    /// With `bnf`: the folded global model, in the order of the downstream messages (the
    /// reference's folded `base_mdl`); the base of each round's model.
    #[serde(default, with = "packed_f32::option")]
    pub folded_global: Option<Vec<f32>>,
}

/// Server-side codec and FedAvg.
#[derive(Clone, Debug)]
pub struct ServerCodec {
    layout: Layout,
    opts: FlOptions,
    state: ServerState,
    folding: Option<Folding>,
}

impl ServerCodec {
    /// A server starting from the `initial` global model.
    pub fn new(layout: Layout, opts: FlOptions, initial: Vec<f32>) -> Result<Self> {
        let folding = opts.bnf.then(|| Folding::new(&layout)).transpose()?;
        let folded_global = match &folding {
            Some(f) => {
                layout.check_finite("global model", &initial)?;
                let folded = f.fold(&layout, &initial);
                // A negative running variance folds to NaN.
                f.upstream().check_finite("folded initial model", &folded)?;
                Some(f.to_downstream(&folded))
            }
            None => None,
        };
        let state = ServerState {
            round: 0,
            global: initial,
            residual: None,
            downstream: IncrementalState::default(),
            upstream: BTreeMap::new(),
            folded_global,
        };
        opts.validate()?;
        Self::checked(layout, opts, state, folding)
    }

    /// A server continuing from a saved state.
    pub fn resume(layout: Layout, opts: FlOptions, state: ServerState) -> Result<Self> {
        opts.validate()?;
        let folding = opts.bnf.then(|| Folding::new(&layout)).transpose()?;
        Self::checked(layout, opts, state, folding)
    }

    /// A server over `state` once the state agrees with the (validated) options and their
    /// folding (`bnf`'s, built once by the caller).
    fn checked(
        layout: Layout,
        opts: FlOptions,
        state: ServerState,
        folding: Option<Folding>,
    ) -> Result<Self> {
        match (&folding, &state.folded_global) {
            (Some(_), Some(_)) | (None, None) => {}
            (Some(_), None) => {
                return Err(FlError::Options(
                    "bnf: the saved state has no folded global model (not a bnf session)".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(FlError::Options(
                    "the saved state is of a bnf session, the options have no bnf".into(),
                ))
            }
        }
        layout.check_finite("global model", &state.global)?;
        let downstream = folding.as_ref().map_or(&layout, Folding::downstream);
        if let Some(r) = &state.residual {
            downstream.check("saved residual", r)?;
        }
        if let Some(g) = &state.folded_global {
            downstream.check_finite("saved folded global model", g)?;
        }
        if state.upstream.contains_key(&0) {
            return Err(FlError::Options(
                "device_id 0 (the server) among the clients".into(),
            ));
        }
        Ok(ServerCodec {
            layout,
            opts,
            state,
            folding,
        })
    }

    /// The state to persist.
    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// Consumes the codec, giving its state.
    pub fn into_state(self) -> ServerState {
        self.state
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The current global model (what clients hold after the last downstream message).
    ///
    /// With `bnf` each client blends the batch norms with its own, so after the first round no
    /// client holds exactly this: it is the folded global model given back as batch norms of
    /// the same effect (gamma the scaling, beta the bias, mean 0, variance `1 − eps`, a layer's
    /// own bias 0), the model to evaluate.
    pub fn global_model(&self) -> &[f32] {
        &self.state.global
    }

    /// The uncompressed global model: the first message every client receives.
    pub fn initial_message(&self) -> Vec<u8> {
        encode_raw(&self.state.global)
    }

    /// Decodes all `messages`, averages them weighted by [`ClientMessage::weight`] and returns
    /// the downstream message for all clients. Nothing changes unless every message decodes.
    pub fn aggregate(&mut self, messages: &[ClientMessage<'_>]) -> Result<Vec<u8>> {
        if messages.is_empty() {
            return Err(FlError::Aggregation("no client messages".into()));
        }
        for (i, m) in messages.iter().enumerate() {
            if m.device_id == 0 {
                return Err(FlError::Aggregation(
                    "a client message from device 0 (the server)".into(),
                ));
            }
            if messages[..i].iter().any(|o| o.device_id == m.device_id) {
                return Err(FlError::Aggregation(format!(
                    "two messages from device {}",
                    m.device_id
                )));
            }
        }
        let opts = &self.opts;
        let deltas_up = opts.compress_upstream && opts.compress_differences;
        let mut decoded = Vec::with_capacity(messages.len());
        let mut new_upstream = Vec::with_capacity(messages.len());
        for m in messages {
            let values = if opts.compress_upstream {
                let fresh = IncrementalState::default();
                let st = self.state.upstream.get(&m.device_id).unwrap_or(&fresh);
                let wire = self
                    .folding
                    .as_ref()
                    .map_or(&self.layout, Folding::upstream);
                let (v, changes) = decompress(
                    wire,
                    m.bytes,
                    m.device_id,
                    opts.compress_differences,
                    st,
                    opts.threads,
                )?;
                new_upstream.push((m.device_id, changes));
                match &self.folding {
                    Some(f) => f.message_to_downstream(&v),
                    None => v,
                }
            } else {
                let v = decode_raw(&self.layout, m.bytes)?;
                self.layout.check_finite("client model", &v)?;
                Decoded {
                    values: v,
                    wide: Vec::new(),
                }
            };
            decoded.push((values, m.weight));
        }
        let wire = self
            .folding
            .as_ref()
            .map_or(&self.layout, Folding::downstream);
        let refs: Vec<(&Decoded, u64)> = decoded.iter().map(|(v, w)| (v, *w)).collect();
        let avg = weighted_average_decoded(wire, &refs)?;
        // The model the messages update: with bnf the folded one, in downstream order.
        let global = self
            .state
            .folded_global
            .as_ref()
            .unwrap_or(&self.state.global);

        let (bytes, new_global, residual, downstream) = if opts.compress_downstream {
            // The downstream input: the averaged update (differences) or the new model.
            let mut input = match (opts.compress_differences, deltas_up) {
                (true, true) => avg,
                (true, false) => sub(&avg, global),
                // The sums in the average's memory (the same in either order).
                (false, true) => {
                    let mut g = avg;
                    add_assign(&mut g, global);
                    g
                }
                (false, false) => avg,
            };
            if opts.err_accumulation {
                if let Some(r) = &self.state.residual {
                    add_assign(&mut input, r);
                }
            }
            let (mut coded, downstream) = compress(wire, opts, 0, &input, &self.state.downstream)?;
            let bytes = std::mem::take(&mut coded.bytes);
            let reconstruction = coded.into_reconstruction(wire)?;
            // The input is not needed any more: the residual takes its memory.
            let residual = opts.err_accumulation.then(|| {
                reconstruction.subtract_from(wire, &mut input);
                input
            });
            let new_global = if opts.compress_differences {
                reconstruction.added_to(wire, global)
            } else {
                reconstruction.values
            };
            (bytes, new_global, residual, Some(downstream))
        } else {
            let new_global = if deltas_up {
                let mut g = avg;
                add_assign(&mut g, global);
                g
            } else {
                avg
            };
            (encode_raw(&new_global), new_global, None, None)
        };
        wire.check_finite("new global model", &new_global)?;
        let (new_global, new_folded) = match &self.folding {
            Some(f) => (f.unfold_exact(&self.layout, &new_global), Some(new_global)),
            None => (new_global, None),
        };
        for (id, changes) in new_upstream {
            changes.apply(self.state.upstream.entry(id).or_default())?;
        }
        if let Some(changes) = downstream {
            changes.apply(&mut self.state.downstream)?;
        }
        self.state.residual = residual;
        self.state.global = new_global;
        self.state.folded_global = new_folded;
        self.state.round += 1;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::layout;
    use crate::client::ClientCodec;
    use crate::layout::TensorSpec;

    fn model(shift: f32) -> Vec<f32> {
        (0..36)
            .map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.05 + shift)
            .collect()
    }

    #[test]
    fn uncompressed_round_is_plain_fedavg() {
        let l = layout();
        let mut s = ServerCodec::new(l.clone(), FlOptions::default(), model(0.0)).unwrap();
        let a = encode_raw(&model(0.1));
        let b = encode_raw(&model(0.4));
        let down = s
            .aggregate(&[
                ClientMessage {
                    device_id: 1,
                    weight: 2,
                    bytes: &a,
                },
                ClientMessage {
                    device_id: 2,
                    weight: 1,
                    bytes: &b,
                },
            ])
            .unwrap();
        let g = decode_raw(&l, &down).unwrap();
        for (i, v) in g.iter().enumerate() {
            let want = (model(0.1)[i] * 2.0 + model(0.4)[i]) / 3.0;
            assert!((v - want).abs() < 1e-6);
        }
        assert_eq!(s.global_model(), g.as_slice());
    }

    fn run_round(
        s: &mut ServerCodec,
        clients: &mut [ClientCodec],
        down: &[u8],
        shift: f32,
    ) -> Vec<u8> {
        let mut msgs = Vec::new();
        for (k, c) in clients.iter_mut().enumerate() {
            let g = c.receive(down).unwrap();
            let local: Vec<f32> = g.iter().map(|v| v + shift * (k as f32 + 1.0)).collect();
            msgs.push((c.state().device_id, c.send(&local).unwrap()));
        }
        let cm: Vec<ClientMessage<'_>> = msgs
            .iter()
            .map(|(id, b)| ClientMessage {
                device_id: *id,
                weight: 1,
                bytes: b,
            })
            .collect();
        s.aggregate(&cm).unwrap()
    }

    /// A compressed TCA session at qp −24: the server from `model(0.0)` and clients 1..=n.
    fn tca_session(n: u64) -> (Layout, FlOptions, ServerCodec, Vec<ClientCodec>) {
        let l = layout();
        let opts = FlOptions {
            tca: true,
            ..FlOptions::compressed(-24)
        };
        let s = ServerCodec::new(l.clone(), opts.clone(), model(0.0)).unwrap();
        let clients = (1..=n)
            .map(|id| ClientCodec::new(l.clone(), opts.clone(), id).unwrap())
            .collect();
        (l, opts, s, clients)
    }

    #[test]
    fn compressed_rounds_keep_every_side_in_step() {
        let (_, _, mut s, mut clients) = tca_session(3);
        let mut down = s.initial_message();
        for round in 0..4 {
            down = run_round(&mut s, &mut clients, &down, 0.01 * (round as f32 + 1.0));
            for c in &clients {
                assert_eq!(
                    &c.state().upstream,
                    &s.state().upstream[&c.state().device_id]
                );
            }
        }
        for c in &mut clients {
            let g = c.receive(&down).unwrap();
            assert_eq!(g.as_slice(), s.global_model());
            assert_eq!(c.state().downstream, s.state().downstream);
        }
        // The average shift per round is 0.02·(r+1); after 4 rounds 0.2 in total.
        let g = s.global_model();
        let m0 = model(0.0);
        for i in 0..32 {
            let moved = g[i] - m0[i];
            assert!((moved - 0.2).abs() < 0.02, "{moved}");
        }
    }

    #[test]
    fn scalars_and_empty_tensors_take_part() {
        // A learnable scalar (CLIP's logit_scale), an empty buffer and a weight, under
        // differences with TCA and under whole models.
        let l = Layout::new(vec![
            TensorSpec::new("logit_scale", vec![]),
            TensorSpec::new("unused", vec![0, 8]),
            TensorSpec::new("fc.weight", vec![4, 8]),
        ])
        .unwrap();
        let initial: Vec<f32> = (0..33)
            .map(|i| ((i * 5 % 13) as f32 - 6.0) * 0.05)
            .collect();
        let whole = FlOptions {
            compress_differences: false,
            ..FlOptions::compressed(-24)
        };
        let tca = FlOptions {
            tca: true,
            ..FlOptions::compressed(-24)
        };
        for opts in [whole, tca] {
            let mut s = ServerCodec::new(l.clone(), opts.clone(), initial.clone()).unwrap();
            let mut clients: Vec<ClientCodec> = (1..=2)
                .map(|id| ClientCodec::new(l.clone(), opts.clone(), id).unwrap())
                .collect();
            let mut down = s.initial_message();
            for round in 0..3 {
                down = run_round(&mut s, &mut clients, &down, 0.05 * (round as f32 + 1.0));
            }
            for c in &mut clients {
                assert_eq!(c.receive(&down).unwrap().as_slice(), s.global_model());
            }
            // The scalar moved with the weights: 0.075 a round on average, 0.45 in all.
            let moved = s.global_model()[0] - initial[0];
            assert!((moved - 0.45).abs() < 0.03, "{moved} ({opts:?})");
        }
    }

    #[test]
    fn failed_aggregation_leaves_the_state_unchanged() {
        let l = layout();
        let opts = FlOptions::compressed(-24);
        let mut s = ServerCodec::new(l.clone(), opts.clone(), model(0.0)).unwrap();
        let mut c1 = ClientCodec::new(l.clone(), opts.clone(), 1).unwrap();
        c1.receive(&s.initial_message()).unwrap();
        let good = c1.send(&model(0.1)).unwrap();
        let before = s.state().clone();
        // Client 2's slot receives client 1's message: wrong sender.
        let bad = [
            ClientMessage {
                device_id: 1,
                weight: 1,
                bytes: &good,
            },
            ClientMessage {
                device_id: 2,
                weight: 1,
                bytes: &good,
            },
        ];
        assert!(matches!(s.aggregate(&bad), Err(FlError::StateMismatch(_))));
        assert_eq!(s.state(), &before);
        let dup = [bad[0], bad[0]];
        assert!(matches!(s.aggregate(&dup), Err(FlError::Aggregation(_))));
        assert!(matches!(s.aggregate(&[]), Err(FlError::Aggregation(_))));
        let zero = [ClientMessage {
            weight: 0,
            ..bad[0]
        }];
        assert!(matches!(s.aggregate(&zero), Err(FlError::Aggregation(_))));
        assert_eq!(s.state(), &before);
        s.aggregate(&bad[..1]).unwrap();
        // The same message again is a repeated update.
        assert!(matches!(
            s.aggregate(&bad[..1]),
            Err(FlError::StateMismatch(_))
        ));
    }

    #[test]
    fn client_missing_a_downstream_message_is_detected() {
        let (l, opts, mut s, mut clients) = tca_session(2);
        let init = s.initial_message();
        let d1 = run_round(&mut s, &mut clients, &init, 0.01);
        let d2 = run_round(&mut s, &mut clients, &d1, 0.02);
        let mut late = ClientCodec::new(l.clone(), opts.clone(), 3).unwrap();
        late.receive(&init).unwrap();
        let before = late.state().clone();
        assert!(matches!(late.receive(&d2), Err(FlError::StateMismatch(_))));
        assert_eq!(late.state(), &before);
    }

    #[test]
    fn state_survives_serde() {
        let l = layout();
        let opts = FlOptions {
            tca: true,
            sparsity: 0.5,
            ..FlOptions::compressed(-24)
        };
        let mut s = ServerCodec::new(l.clone(), opts.clone(), model(0.0)).unwrap();
        let mut clients: Vec<ClientCodec> = (1..=2)
            .map(|id| ClientCodec::new(l.clone(), opts.clone(), id).unwrap())
            .collect();
        let init = s.initial_message();
        let d1 = run_round(&mut s, &mut clients, &init, 0.01);
        // Persist everything, resume, and check the next round is identical.
        let sj = serde_json::to_string(s.state()).unwrap();
        let cj: Vec<String> = clients
            .iter()
            .map(|c| serde_json::to_string(c.state()).unwrap())
            .collect();
        let d2 = run_round(&mut s, &mut clients, &d1, 0.02);
        let mut s2 =
            ServerCodec::resume(l.clone(), opts.clone(), serde_json::from_str(&sj).unwrap())
                .unwrap();
        let mut c2: Vec<ClientCodec> = cj
            .iter()
            .map(|j| {
                ClientCodec::resume(l.clone(), opts.clone(), serde_json::from_str(j).unwrap())
                    .unwrap()
            })
            .collect();
        let d2b = run_round(&mut s2, &mut c2, &d1, 0.02);
        assert_eq!(d2, d2b);
        assert_eq!(s.state(), s2.state());
    }
}

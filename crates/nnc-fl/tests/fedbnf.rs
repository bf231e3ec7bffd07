//! FedBNF through the public API: what the options refuse, the protocol, and states that stop
//! and resume. That the messages and models are the reference's is `reference_sessions.rs`
//! (the `fl_bnf*` sessions).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use nnc_fl::{
    ClientCodec, ClientMessage, ClientState, FlError, FlOptions, Layout, ServerCodec, ServerState,
    TensorSpec,
};

fn layout() -> Layout {
    let t = |n: &str, s: &[usize]| TensorSpec::new(n, s.to_vec());
    Layout::new(vec![
        t("conv.weight", &[4, 2, 3, 3]),
        t("bn.weight", &[4]),
        t("bn.bias", &[4]),
        t("bn.running_mean", &[4]),
        t("bn.running_var", &[4]),
        t("fc.weight", &[3, 4]),
        t("fc.bias", &[3]),
    ])
    .unwrap()
}

fn opts() -> FlOptions {
    FlOptions {
        bnf: true,
        tca: true,
        ..FlOptions::compressed(-24)
    }
}

/// A model whose variances stay positive; `step` moves every value a little.
fn model(l: &Layout, step: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..l.num_values())
        .map(|i| ((i * 37 % 101) as f32 / 101.0 - 0.5) * 0.4 + step * ((i % 7) as f32 - 3.0))
        .collect();
    let var = l.range(l.index_of("bn.running_var").unwrap());
    v[var].iter_mut().for_each(|x| *x = 1.0 + x.abs());
    v
}

#[test]
fn bnf_needs_batch_norms_and_both_directions_coded_as_differences() {
    let plain = Layout::new(vec![TensorSpec::new("fc.weight", vec![3, 4])]).unwrap();
    let e = ClientCodec::new(plain.clone(), opts(), 1).unwrap_err();
    assert!(matches!(e, FlError::Options(_)), "{e}");
    assert!(ServerCodec::new(plain, opts(), vec![0.0; 12]).is_err());
    for o in [
        FlOptions {
            compress_differences: false,
            tca: false,
            ..opts()
        },
        FlOptions {
            compress_downstream: false,
            ..opts()
        },
        FlOptions {
            bnf: true,
            ..FlOptions::default()
        },
    ] {
        let e = ClientCodec::new(layout(), o, 1).unwrap_err();
        assert!(e.to_string().contains("bnf needs"), "{e}");
    }
}

#[test]
fn a_coded_global_model_before_any_local_one_is_a_protocol_error() {
    let l = layout();
    let initial = model(&l, 0.0);
    let mut server = ServerCodec::new(l.clone(), opts(), initial.clone()).unwrap();
    let mut a = ClientCodec::new(l.clone(), opts(), 1).unwrap();
    let mut b = ClientCodec::new(l.clone(), opts(), 2).unwrap();
    a.receive(&server.initial_message()).unwrap();
    b.receive(&server.initial_message()).unwrap();
    let up = a.send(&model(&l, 0.01)).unwrap();
    let down = server
        .aggregate(&[ClientMessage {
            device_id: 1,
            weight: 1,
            bytes: &up,
        }])
        .unwrap();
    // b never sent a local model, so it has no batch norms to blend with.
    let before = b.state().clone();
    let e = b.receive(&down).unwrap_err();
    assert!(matches!(e, FlError::Protocol(_)), "{e}");
    assert_eq!(b.state(), &before);
    a.receive(&down).unwrap();
}

/// Runs `rounds` rounds of two clients; with `save_every_step` each codec is written to bytes
/// and read back between every two calls. Returns every message.
fn session(rounds: usize, save_every_step: bool) -> (Vec<Vec<u8>>, Vec<f32>) {
    let l = layout();
    let initial = model(&l, 0.0);
    let mut server = ServerCodec::new(l.clone(), opts(), initial).unwrap();
    let mut clients: Vec<ClientCodec> = (1..=2)
        .map(|id| ClientCodec::new(l.clone(), opts(), id).unwrap())
        .collect();
    let reload_client = |c: ClientCodec| {
        let bytes = c.into_state().to_bytes().unwrap();
        ClientCodec::resume(layout(), opts(), ClientState::from_bytes(&bytes).unwrap()).unwrap()
    };
    let mut messages = Vec::new();
    let mut down = server.initial_message();
    for round in 0..rounds {
        let mut ups = Vec::new();
        for (k, slot) in clients.iter_mut().enumerate() {
            let mut c = slot.clone();
            let mut m = c.receive(&down).unwrap();
            if save_every_step {
                c = reload_client(c);
            }
            // Local training moves everything, batch-norm statistics included.
            let moved = model(&l, 0.01 * (round * 2 + k + 1) as f32);
            m.iter_mut().zip(&moved).for_each(|(a, b)| *a += 0.1 * b);
            let var = l.range(l.index_of("bn.running_var").unwrap());
            m[var].iter_mut().for_each(|x| *x = x.abs() + 0.5);
            ups.push(c.send(&m).unwrap());
            if save_every_step {
                c = reload_client(c);
            }
            *slot = c;
        }
        let msgs: Vec<ClientMessage<'_>> = ups
            .iter()
            .enumerate()
            .map(|(i, bytes)| ClientMessage {
                device_id: i as u64 + 1,
                weight: 3 + i as u64,
                bytes,
            })
            .collect();
        down = server.aggregate(&msgs).unwrap();
        if save_every_step {
            let bytes = server.state().to_bytes().unwrap();
            let state = ServerState::from_bytes(&bytes).unwrap();
            assert!(state.folded_global.is_some());
            server = ServerCodec::resume(layout(), opts(), state).unwrap();
        }
        messages.extend(ups);
        messages.push(down.clone());
    }
    (messages, server.global_model().to_vec())
}

#[test]
fn saved_and_resumed_codecs_send_the_same_messages() {
    let (straight, global) = session(3, false);
    let (resumed, global_resumed) = session(3, true);
    assert_eq!(straight, resumed);
    assert_eq!(global, global_resumed);
}

#[test]
fn the_servers_model_has_unfolded_batch_norms_in_the_models_layout() {
    let l = layout();
    let (_, global) = session(2, false);
    assert_eq!(global.len(), l.num_values());
    let at = |n: &str| &global[l.range(l.index_of(n).unwrap())];
    assert!(at("bn.running_mean").iter().all(|&m| m == 0.0));
    assert!(at("bn.running_var").iter().all(|&v| v == 1.0 - 1e-5));
    // The scaling is about the trained gamma / sqrt(var), not 1: the batch norm came back.
    assert!(at("bn.weight").iter().any(|&g| (g - 1.0).abs() > 0.01));
}

#[test]
fn a_bnf_state_is_refused_without_bnf_and_the_other_way_round() {
    let (client, server) = {
        let l = layout();
        let mut server = ServerCodec::new(l.clone(), opts(), model(&l, 0.0)).unwrap();
        let mut c = ClientCodec::new(l.clone(), opts(), 1).unwrap();
        c.receive(&server.initial_message()).unwrap();
        let up = c.send(&model(&l, 0.01)).unwrap();
        server
            .aggregate(&[ClientMessage {
                device_id: 1,
                weight: 1,
                bytes: &up,
            }])
            .unwrap();
        (c.into_state(), server.into_state())
    };
    let plain = FlOptions {
        bnf: false,
        ..opts()
    };
    assert!(matches!(
        ClientCodec::resume(layout(), plain.clone(), client),
        Err(FlError::Options(_))
    ));
    assert!(matches!(
        ServerCodec::resume(layout(), plain.clone(), server),
        Err(FlError::Options(_))
    ));
    let l = layout();
    let plain_server = ServerCodec::new(l.clone(), plain, model(&l, 0.0)).unwrap();
    assert!(matches!(
        ServerCodec::resume(layout(), opts(), plain_server.into_state()),
        Err(FlError::Options(_))
    ));
}

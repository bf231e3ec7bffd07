//! Federated learning, both directions, over a few rounds: a server and up to three clients on a
//! small layout (scalars and empty tensors included), under arbitrary FL options, with arbitrary
//! local models (huge values and NaN included), optional state saves and resumes, and optionally
//! one client message replaced by a corrupted copy or by arbitrary bytes (a hostile or broken
//! client).
//!
//! With `bnf` (FedBNF) the layout starts with a convolution and its batch norm.
//!
//! Checks: nothing panics; a call that fails leaves its codec's state as it was; after every
//! aggregation from genuine messages, each client receives exactly the server's global model
//! (with `bnf`: every tensor outside the batch-norm block, the batch norm being each client's
//! own blend) and holds the server's downstream state, and the server's upstream state of each
//! sender equals the sender's own; a saved state resumes to the same state; every sender's
//! reconstruction, taken from its levels, is what decoding its message gives (`verify_messages`);
//! a twin of the first client that does not verify (its residual dequantized from the levels
//! into the update, not subtracted from a decode) sends the same bytes and keeps the same state.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use nnc_fl::{
    ApproxMethod, ClientCodec, ClientMessage, ClientState, FlError, FlOptions, Layout, ServerCodec,
    ServerState, TensorSpec,
};
use nnc_tensor::IncrementalState;

#[derive(Arbitrary, Debug)]
struct Spec {
    /// Up to three dimensions, each 0..=8 (none: a scalar; a zero: an empty tensor).
    dims: Vec<u8>,
    /// ".weight", ".bias", ".running_mean" or no suffix.
    suffix: u8,
}

#[derive(Arbitrary, Debug)]
struct Options {
    compress_upstream: bool,
    compress_downstream: bool,
    err_accumulation: bool,
    compress_differences: bool,
    qp: i8,
    diff_qp: Option<i8>,
    nonweight_qp: i8,
    qp_density: u8,
    use_dq: bool,
    opt_qp: bool,
    sparsity: u8,
    struct_spars_factor: u8,
    row_skipping: bool,
    tca: bool,
    bitdepth: Option<u8>,
    two_threads: bool,
    /// FedBNF, with a convolution of this many output channels (and kernel width) first.
    bnf: Option<(u8, u8)>,
    /// `approx_method` codebook.
    codebook: bool,
    /// `param_opt` off.
    no_param_opt: bool,
}

#[derive(Arbitrary, Debug)]
enum Corruption {
    /// XOR one byte (position taken modulo the length) with a non-zero mask.
    Flip { at: u16, mask: u8 },
    /// Cut the message to a length (modulo its length).
    Truncate { len: u16 },
    /// Replace the message by these bytes.
    Replace(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Round {
    /// Per client: values added to the global model (tiled), scaled by `2^-scale`.
    deltas: Vec<Vec<i16>>,
    scale: u8,
    /// Per client: its FedAvg weight.
    weights: Vec<u8>,
    /// Raw bit patterns instead of scaled integers for the first client (NaN, infinities).
    raw_bits: bool,
    /// Save and resume every codec before the round.
    resume: bool,
    /// Corrupt the message of client `.0 % clients`.
    corrupt: Option<(u8, Corruption)>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    specs: Vec<Spec>,
    options: Options,
    clients: u8,
    initial: Vec<i16>,
    rounds: Vec<Round>,
}

/// The batch-norm block's tensors (`bnf`): checked per client, not against the server.
const NORM_BLOCK: [&str; 5] = [
    "conv.weight",
    "norm.weight",
    "norm.bias",
    "norm.running_mean",
    "norm.running_var",
];

fn layout(specs: &[Spec], norm: Option<(u8, u8)>) -> Option<Layout> {
    let mut all = Vec::new();
    if let Some((channels, width)) = norm {
        let c = usize::from(channels % 8) + 1;
        all.push(TensorSpec::new(
            NORM_BLOCK[0],
            vec![c, usize::from(width % 8) + 1],
        ));
        for name in &NORM_BLOCK[1..] {
            all.push(TensorSpec::new(*name, vec![c]));
        }
    }
    all.extend(specs.iter().take(3).enumerate().map(|(i, s)| {
        let shape: Vec<usize> = s.dims.iter().take(3).map(|&d| usize::from(d % 9)).collect();
        let suffix = [".weight", ".bias", ".running_mean", ""][usize::from(s.suffix % 4)];
        TensorSpec::new(format!("layer{i}{suffix}"), shape)
    }));
    Layout::new(all).ok()
}

fn options(o: &Options) -> FlOptions {
    FlOptions {
        compress_upstream: o.compress_upstream,
        compress_downstream: o.compress_downstream,
        err_accumulation: o.err_accumulation,
        compress_differences: o.compress_differences,
        qp: i32::from(o.qp),
        diff_qp: o.diff_qp.map(i32::from),
        nonweight_qp: i32::from(o.nonweight_qp),
        qp_density: o.qp_density % 9,
        use_dq: o.use_dq,
        opt_qp: o.opt_qp,
        sparsity: f64::from(o.sparsity) / 256.0,
        struct_spars_factor: f64::from(o.struct_spars_factor) / 64.0,
        row_skipping: o.row_skipping,
        tca: o.tca,
        bitdepth: o.bitdepth.map(|b| u32::from(b % 34)),
        param_opt: !o.no_param_opt,
        approx_method: if o.codebook {
            ApproxMethod::Codebook
        } else {
            ApproxMethod::Uniform
        },
        bnf: o.bnf.is_some(),
        threads: Some(if o.two_threads { 2 } else { 1 }),
        // Every sent message is decoded and compared with the sender's reconstruction from
        // its levels (which verification still computes).
        verify_messages: true,
    }
}

fn tiled(values: &[i16], n: usize, scale: u8) -> Vec<f32> {
    let factor = (-f32::from(scale % 48)).exp2();
    (0..n)
        .map(|k| f32::from(values.get(k % values.len().max(1)).copied().unwrap_or(0)) * factor)
        .collect()
}

fn server_bytes(s: &ServerCodec) -> Vec<u8> {
    s.state().to_bytes().expect("a server state writes")
}

fn client_bytes(c: &ClientCodec) -> Vec<u8> {
    c.state().to_bytes().expect("a client state writes")
}

fn same_state(a: &IncrementalState, b: &IncrementalState) -> bool {
    a.bases == b.bases && a.device_id == b.device_id
}

fuzz_target!(|input: Input| {
    let Some(layout) = layout(&input.specs, input.options.bnf) else {
        return;
    };
    let opts = options(&input.options);
    let n = layout.num_values();
    let initial = tiled(&input.initial, n, 8);
    let mut server = match ServerCodec::new(layout.clone(), opts.clone(), initial) {
        Ok(s) => s,
        Err(e) => {
            // Invalid options: the clients must refuse them too. (An initial model whose
            // batch norm does not fold to finite values is the server's alone to refuse.)
            if matches!(e, FlError::Options(_)) {
                assert!(ClientCodec::new(layout, opts, 1).is_err());
            }
            return;
        }
    };
    let mut clients: Vec<ClientCodec> = (1..=u64::from(input.clients % 3) + 1)
        .map(|id| ClientCodec::new(layout.clone(), opts.clone(), id).expect("valid options"))
        .collect();
    let mut twin = ClientCodec::new(
        layout.clone(),
        FlOptions {
            verify_messages: false,
            ..opts.clone()
        },
        1,
    )
    .expect("valid options");
    let mut down = server.initial_message();

    for round in input.rounds.iter().take(3) {
        if round.resume {
            let saved = ServerState::from_bytes(&server_bytes(&server)).expect("a saved server");
            let again = ServerCodec::resume(layout.clone(), opts.clone(), saved)
                .expect("a saved server resumes");
            assert_eq!(server_bytes(&again), server_bytes(&server));
            server = again;
            for c in &mut clients {
                let saved = ClientState::from_bytes(&client_bytes(c)).expect("a saved client");
                let again = ClientCodec::resume(layout.clone(), opts.clone(), saved)
                    .expect("a saved client resumes");
                assert_eq!(client_bytes(&again), client_bytes(c));
                *c = again;
            }
        }

        // Downstream: every client reconstructs the server's global model exactly.
        let twin_global = twin.receive(&down).map(|g| bits(&g));
        for c in &mut clients {
            let before = client_bytes(c);
            let received = c.receive(&down);
            if c.state().device_id == 1 {
                assert_eq!(
                    received.as_ref().map(|g| bits(g)).ok(),
                    twin_global.as_ref().ok().cloned(),
                    "the twin received another global model"
                );
            }
            let global = match received {
                Ok(g) => g,
                // FedBNF blends with the client's own batch norm, which may not be finite
                // (a negative running variance in its last local model).
                Err(_) if opts.bnf => {
                    assert_eq!(
                        client_bytes(c),
                        before,
                        "a failed receive changed the state"
                    );
                    return;
                }
                Err(e) => panic!("a client cannot decode the server's message: {e}"),
            };
            for (i, s) in layout.specs().iter().enumerate() {
                if opts.bnf && NORM_BLOCK.contains(&s.name.as_str()) {
                    continue;
                }
                let r = layout.range(i);
                assert_eq!(
                    bits(&global[r.clone()]),
                    bits(&server.global_model()[r]),
                    "client {} differs from the server's global model in {}",
                    c.state().device_id,
                    s.name
                );
            }
            assert!(same_state(
                &c.state().downstream,
                &server.state().downstream
            ));
        }

        // Upstream: local models, then the messages.
        let mut messages: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        for (k, c) in clients.iter_mut().enumerate() {
            let global = c.global_model().expect("received").to_vec();
            let delta = round.deltas.get(k).map(Vec::as_slice).unwrap_or(&[]);
            let local: Vec<f32> = if k == 0 && round.raw_bits {
                (0..n)
                    .map(|i| {
                        let bits = delta.get(i % delta.len().max(1)).copied().unwrap_or(0);
                        f32::from_bits((bits as u32) << 16 | (bits as u16 as u32))
                    })
                    .collect()
            } else {
                let d = tiled(delta, n, round.scale);
                global.iter().zip(&d).map(|(g, d)| g + d).collect()
            };
            let before = client_bytes(c);
            let sent = c.send(&local);
            if k == 0 {
                let twin_sent = twin.send(&local);
                assert_eq!(
                    sent.as_ref().ok(),
                    twin_sent.as_ref().ok(),
                    "the twin sent other bytes"
                );
                assert_eq!(
                    client_bytes(&twin),
                    client_bytes(c),
                    "the twin's state differs"
                );
            }
            match sent {
                Ok(bytes) => {
                    let weight = u64::from(round.weights.get(k).copied().unwrap_or(1));
                    messages.push((c.state().device_id, weight, bytes));
                }
                Err(_) => assert_eq!(client_bytes(c), before, "a failed send changed the state"),
            }
        }
        if messages.is_empty() {
            return;
        }

        if let Some((who, corruption)) = &round.corrupt {
            let mut bad: Vec<(u64, u64, Vec<u8>)> = messages.clone();
            let target = &mut bad[usize::from(*who) % messages.len()].2;
            match corruption {
                Corruption::Flip { at, mask } if !target.is_empty() && *mask != 0 => {
                    let i = usize::from(*at) % target.len();
                    target[i] ^= mask;
                }
                Corruption::Truncate { len } if !target.is_empty() => {
                    target.truncate(usize::from(*len) % target.len());
                }
                Corruption::Replace(bytes) => *target = bytes.clone(),
                _ => {}
            }
            let before = server_bytes(&server);
            let msgs: Vec<ClientMessage<'_>> = bad.iter().map(message).collect();
            match server.aggregate(&msgs) {
                // A corrupted message the decoder accepts: the states of this sender may
                // now differ, so the exchange cannot be checked further.
                Ok(_) => return,
                Err(_) => assert_eq!(
                    server_bytes(&server),
                    before,
                    "a failed aggregate changed the state"
                ),
            }
        }

        let before = server_bytes(&server);
        let msgs: Vec<ClientMessage<'_>> = messages.iter().map(message).collect();
        match server.aggregate(&msgs) {
            Ok(bytes) => down = bytes,
            Err(_) => {
                assert_eq!(
                    server_bytes(&server),
                    before,
                    "a failed aggregate changed the state"
                );
                return;
            }
        }
        if opts.compress_upstream {
            for c in &clients {
                let id = c.state().device_id;
                if messages.iter().any(|m| m.0 == id) {
                    let held = server.state().upstream.get(&id).expect("a sender's state");
                    assert!(
                        same_state(held, &c.state().upstream),
                        "the server's upstream state of client {id} differs from the client's"
                    );
                }
            }
        }
    }
});

fn message(m: &(u64, u64, Vec<u8>)) -> ClientMessage<'_> {
    ClientMessage {
        device_id: m.0,
        weight: m.1,
        bytes: &m.2,
    }
}

/// Values by bit pattern, so NaN compares equal to itself and -0 differs from 0.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

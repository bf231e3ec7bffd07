//! The codecs' states in nnc's compact binary form ([`nnc_tensor::binary_form`]): what a caller
//! writes to disk or pickles between rounds. A state holds whole models (the global model, the
//! residuals) and every tensor's last levels, so for a large model its JSON would be several
//! times larger and slower to read and write.

use nnc_tensor::binary_form::{self, Kind};

use crate::client::ClientState;
use crate::error::Result;
use crate::server::ServerState;

const CLIENT: Kind = Kind {
    magic: b"nnc-fl-client",
    version: 2,
    what: "nnc FL client state",
};

const SERVER: Kind = Kind {
    magic: b"nnc-fl-server",
    version: 2,
    what: "nnc FL server state",
};

/// A state of version 1 (before FedBNF) as the version-2 form of the same state. Version 2
/// appended one optional field to each state (`local_norms`, `folded_global`), so an old
/// state is its bytes with the version byte raised and postcard's `None` (one 0 byte) at the
/// end; anything else is passed on unchanged, for `from_bytes` to judge.
fn upgraded(kind: &Kind, bytes: &[u8]) -> Option<Vec<u8>> {
    if kind.version_of(bytes) != Some(1) {
        return None;
    }
    let mut out = bytes.to_vec();
    out[kind.magic.len()] = kind.version;
    out.push(0);
    Some(out)
}

impl ClientState {
    /// The state in nnc's binary form: `nnc-fl-client`, a version byte (2), then the fields in
    /// postcard's encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(binary_form::to_bytes(&CLIENT, self)?)
    }

    /// Reads [`ClientState::to_bytes`]'s output, also of version 1; anything else (another
    /// kind of state, a cut or extended copy, another version) is an
    /// [`FlError::Codec`](crate::FlError::Codec) error of kind `InvalidArgument`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let upgraded = upgraded(&CLIENT, bytes);
        Ok(binary_form::from_bytes(
            &CLIENT,
            upgraded.as_deref().unwrap_or(bytes),
        )?)
    }
}

impl ServerState {
    /// The state in nnc's binary form: `nnc-fl-server`, a version byte (2), then the fields in
    /// postcard's encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(binary_form::to_bytes(&SERVER, self)?)
    }

    /// Reads [`ServerState::to_bytes`]'s output, also of version 1; anything else (another
    /// kind of state, a cut or extended copy, another version) is an
    /// [`FlError::Codec`](crate::FlError::Codec) error of kind `InvalidArgument`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let upgraded = upgraded(&SERVER, bytes);
        Ok(binary_form::from_bytes(
            &SERVER,
            upgraded.as_deref().unwrap_or(bytes),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientCodec, ClientMessage, FlOptions, Layout, ServerCodec, TensorSpec};

    /// A client and a server after two compressed TCA rounds, so that every field is set.
    fn session() -> (ClientState, ServerState) {
        let layout = Layout::new(vec![
            TensorSpec::new("fc.weight", vec![6, 8]),
            TensorSpec::new("fc.bias", vec![6]),
        ])
        .unwrap();
        let opts = FlOptions {
            tca: true,
            sparsity: 0.3,
            ..FlOptions::compressed(-24)
        };
        let initial: Vec<f32> = (0..54).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut server = ServerCodec::new(layout.clone(), opts.clone(), initial).unwrap();
        let mut client = ClientCodec::new(layout, opts, 3).unwrap();
        let mut down = server.initial_message();
        for round in 0..2 {
            let mut model = client.receive(&down).unwrap();
            for (i, w) in model.iter_mut().enumerate() {
                *w += 0.01 * ((i + round) as f32).cos();
            }
            let up = client.send(&model).unwrap();
            let msg = ClientMessage {
                device_id: 3,
                weight: 5,
                bytes: &up,
            };
            down = server.aggregate(&[msg]).unwrap();
        }
        (client.into_state(), server.state().clone())
    }

    #[test]
    fn states_round_trip_and_refuse_other_bytes() {
        let (client, server) = session();
        assert!(client.residual.is_some() && !client.upstream.bases.is_empty());
        assert!(!server.upstream.is_empty() && !server.downstream.bases.is_empty());
        let (cb, sb) = (client.to_bytes().unwrap(), server.to_bytes().unwrap());
        assert_eq!(ClientState::from_bytes(&cb).unwrap(), client);
        assert_eq!(ServerState::from_bytes(&sb).unwrap(), server);
        // Neither kind is read as the other, nor cut, nor extended.
        assert!(ClientState::from_bytes(&sb).is_err());
        assert!(ServerState::from_bytes(&cb).is_err());
        assert!(ClientState::from_bytes(&cb[..cb.len() - 1]).is_err());
        let e = ServerState::from_bytes(&[&sb[..], &[0]].concat()).unwrap_err();
        assert!(e.to_string().contains("after its end"), "{e}");
    }

    #[test]
    fn version_1_states_are_read() {
        // Written by nnc before FedBNF: a client (device 1, global model [1.0], empty TCA
        // states) and a server (global [1.0], one client's empty upstream state).
        let client_v1 = b"nnc-fl-client\x01\x01\x00\x01\x04\x00\x00\x80\x3f\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        let server_v1 = b"nnc-fl-server\x01\x00\x04\x00\x00\x80\x3f\x00\x00\x00\x00\x00\x01\x01\x00\x00\x00\x00";
        let client = ClientState::from_bytes(client_v1).unwrap();
        assert_eq!(
            (client.device_id, client.global.as_deref()),
            (1, Some(&[1.0f32][..]))
        );
        assert_eq!(client.local_norms, None);
        let server = ServerState::from_bytes(server_v1).unwrap();
        assert_eq!(server.global, [1.0]);
        assert_eq!(server.upstream.len(), 1);
        assert_eq!(server.folded_global, None);
        // Written back in version 2: the old bytes, version 2, and the new field's None.
        let v2 = client.to_bytes().unwrap();
        assert_eq!(v2[13], 2);
        assert_eq!(v2[14..v2.len() - 1], client_v1[14..]);
        // A cut version-1 copy stays an error.
        assert!(ClientState::from_bytes(&client_v1[..client_v1.len() - 1]).is_err());
    }
}

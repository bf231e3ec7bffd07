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
    version: 1,
    what: "nnc FL client state",
};

const SERVER: Kind = Kind {
    magic: b"nnc-fl-server",
    version: 1,
    what: "nnc FL server state",
};

impl ClientState {
    /// The state in nnc's binary form: `nnc-fl-client`, a version byte (1), then the fields in
    /// postcard's encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(binary_form::to_bytes(&CLIENT, self)?)
    }

    /// Reads [`ClientState::to_bytes`]'s output; anything else (another kind of state, a cut
    /// or extended copy, another version) is an [`FlError::Codec`](crate::FlError::Codec)
    /// error of kind `InvalidArgument`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(binary_form::from_bytes(&CLIENT, bytes)?)
    }
}

impl ServerState {
    /// The state in nnc's binary form: `nnc-fl-server`, a version byte (1), then the fields in
    /// postcard's encoding.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        Ok(binary_form::to_bytes(&SERVER, self)?)
    }

    /// Reads [`ServerState::to_bytes`]'s output; anything else (another kind of state, a cut
    /// or extended copy, another version) is an [`FlError::Codec`](crate::FlError::Codec)
    /// error of kind `InvalidArgument`.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(binary_form::from_bytes(&SERVER, bytes)?)
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
}

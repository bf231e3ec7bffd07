//! Federated learning with NNC-coded model updates (ISO/IEC 15938-17 incremental coding): the
//! client and server codecs of the reference's `NNClient` / `NNCFedAvg`, FedAvg, and an
//! in-process simulation driver.
//!
//! Does not know about: networks or transports (messages are `Vec<u8>`), ML frameworks
//! (training is a [`LocalTrainer`]), model file formats, where state is stored (it is a serde
//! value the caller persists, or bytes from [`ClientState::to_bytes`] /
//! [`ServerState::to_bytes`]).
//!
//! Main types:
//! - [`ClientCodec`]: decodes the server's downstream message into the global model
//!   ([`ClientCodec::receive`]) and codes the local update upstream ([`ClientCodec::send`]):
//!   difference to the last global model, plus the residual the previous messages left out
//!   (error accumulation), sparsified and NNC-coded with temporal context adaptation (TCA)
//!   across rounds.
//! - [`ServerCodec`]: decodes each client's message with that client's own decoder state,
//!   averages them weighted by sample counts, and codes the downstream message (again with
//!   residual, sparsification and TCA) — one coherent incremental state per direction and sender.
//! - [`FlOptions`]: the reference's FL flags (`compress_upstream`, `qp`, `sparsity`, `tca`, ...),
//!   including FedBNF (`bnf`: batch norms folded before coding and blended back per client).
//! - [`Layout`]: tensor names and shapes; models, updates and residuals are flat `Vec<f32>`s.
//! - [`simulate`]: N clients and the server, deterministic from a seed.
//!
//! A message that does not follow from the receiver's state (wrong sender, skipped or repeated
//! round, other model) is a typed [`FlError`] found before anything is applied; on any error the
//! codec's state is unchanged. See `docs/fl.md` for the digits example and its figures and
//! `docs/incremental.md` for how the states map to the reference's `approx_param_base`.
//!
//! ```
//! use nnc_fl::{ClientCodec, ClientMessage, FlOptions, Layout, ServerCodec, TensorSpec};
//!
//! let layout = Layout::new(vec![
//!     TensorSpec::new("fc.weight", vec![4, 8]),
//!     TensorSpec::new("fc.bias", vec![4]),
//! ])?;
//! let opts = FlOptions { tca: true, ..FlOptions::compressed(-24) };
//! let mut server = ServerCodec::new(layout.clone(), opts.clone(), vec![0.0; 36])?;
//! let mut client = ClientCodec::new(layout.clone(), opts, 1)?;
//!
//! let mut model = client.receive(&server.initial_message())?; // round 1 starts from the raw model
//! model.iter_mut().for_each(|w| *w += 0.05); // "local training"
//! let up = client.send(&model)?;
//! let down = server.aggregate(&[ClientMessage { device_id: 1, weight: 10, bytes: &up }])?;
//! assert!(up.len() < layout.raw_message_len());
//!
//! let global = client.receive(&down)?;
//! assert_eq!(global.as_slice(), server.global_model());
//! assert!((global[0] - 0.05).abs() < 0.02);
//! # Ok::<(), nnc_fl::FlError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod batch_norm;
mod client;
mod error;
mod fedavg;
mod layout;
mod message;
mod options;
mod saved;
mod server;
mod simulate;

pub use client::{ClientCodec, ClientState};
pub use error::{BoxError, FlError, Result};
pub use fedavg::weighted_average;
pub use layout::{decode_raw, encode_raw, Layout, TensorSpec, MAX_LAYOUT_VALUES};
pub use options::{ApproxMethod, FlOptions};
pub use server::{ClientMessage, ServerCodec, ServerState};
pub use simulate::{
    job_seed, simulate, LocalTrainer, Metrics, RoundReport, SimConfig, SimReport, TrainJob,
};

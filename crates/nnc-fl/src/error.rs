//! Errors of the FL codecs: every inconsistency between a message, the options and the state
//! the receiver holds is reported before anything is applied.

/// A boxed error from a [`LocalTrainer`](crate::LocalTrainer).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of the client and server codecs and of the simulation driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FlError {
    /// The NNC encoder or decoder rejected the input or the bitstream.
    #[error("codec: {0}")]
    Codec(#[from] nnc_tensor::Error),
    /// The bitstream's unit syntax is invalid.
    #[error("bitstream: {0}")]
    Bitstream(#[from] nnc_bitstream::Error),
    /// The model layout is unusable (duplicate names, empty shapes, too large).
    #[error("layout: {0}")]
    Layout(String),
    /// The options are inconsistent or out of range.
    #[error("options: {0}")]
    Options(String),
    /// A parameter vector does not have the layout's number of values.
    #[error("{what} has {actual} values, the layout {expected}")]
    ModelSize {
        /// Which vector.
        what: &'static str,
        /// Values the layout holds.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// An uncompressed message does not hold exactly one float32 per parameter.
    #[error("uncompressed message of {actual} bytes, the layout needs {expected}")]
    MessageLength {
        /// 4 bytes per parameter.
        expected: usize,
        /// Bytes received.
        actual: usize,
    },
    /// A parameter is NaN or infinite (the coder would produce garbage).
    #[error("{what}: tensor {tensor:?} holds a non-finite value")]
    NonFinite {
        /// Which vector.
        what: &'static str,
        /// Tensor name.
        tensor: String,
    },
    /// The bitstream's tensors do not match the layout (unknown, repeated, missing, reshaped).
    #[error("tensor set: {0}")]
    TensorSet(String),
    /// The bitstream does not follow from the receiver's state (wrong sender, skipped or repeated
    /// update, wrong base).
    #[error("state mismatch: {0}")]
    StateMismatch(String),
    /// A call out of protocol order (e.g. sending an update before any global model arrived).
    #[error("protocol: {0}")]
    Protocol(String),
    /// The clients' results cannot be averaged (none, duplicate senders, zero total weight).
    #[error("aggregation: {0}")]
    Aggregation(String),
    /// A bug caught by a check: for instance, with [`crate::FlOptions::verify_messages`], the
    /// encoder's reconstruction or state after coding differs from what decoding its own
    /// bitstream gives; reported instead of sending a message the receiver would decode
    /// differently.
    #[error("internal: {0}")]
    Internal(String),
    /// Local training or evaluation failed (simulation driver).
    #[error("trainer: {0}")]
    Trainer(#[source] BoxError),
}

/// Result with [`FlError`].
pub type Result<T, E = FlError> = std::result::Result<T, E>;

//! Errors of the tensor pipeline: what went wrong, in which NNR unit, at which byte, for which tensor.

/// Broad class of an error, for tests and CLI exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bitstream is invalid.
    Malformed,
    /// The bitstream uses something neither we nor the reference implement.
    Unsupported,
    /// A configured resource limit would be exceeded.
    LimitExceeded,
    /// The caller's input or options are inconsistent.
    InvalidArgument,
    /// The decoder state does not fit the bitstream (wrong base, skipped step, ...).
    StateMismatch,
}

/// Where in the bitstream something happened.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Location {
    /// Index of the NNR unit (0-based).
    pub unit_index: usize,
    /// Byte offset of the unit's first byte.
    pub byte_offset: usize,
    /// Tensor concerned, if any.
    pub tensor: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NNR unit {} at byte {}",
            self.unit_index, self.byte_offset
        )?;
        if let Some(t) = &self.tensor {
            write!(f, ": tensor {t:?}")?;
        }
        Ok(())
    }
}

/// `at: source`, or only `source` when it names its unit itself.
fn syntax_message(at: &Location, source: &nnc_bitstream::Error) -> String {
    if source.names_its_unit() {
        source.to_string()
    } else {
        format!("{at}: {source}")
    }
}

/// Errors of decoding and encoding tensors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The unit syntax is invalid.
    #[error("{}", syntax_message(.at, .source))]
    Syntax {
        /// Where.
        at: Location,
        /// What the syntax layer found.
        #[source]
        source: nnc_bitstream::Error,
    },
    /// The arithmetic-coded payload is invalid.
    #[error("{at}: cabac: {source}")]
    Cabac {
        /// Where.
        at: Location,
        /// What the entropy decoder found.
        #[source]
        source: nnc_cabac::Error,
    },
    /// Quantization or reconstruction failed.
    #[error("{at}: {source}")]
    Quant {
        /// Where.
        at: Location,
        /// What the quantizer found.
        #[source]
        source: nnc_quant::Error,
    },
    /// The bitstream is inconsistent in a way only the pipeline can see.
    #[error("{at}: {what}")]
    Malformed {
        /// Where.
        at: Location,
        /// What is wrong.
        what: String,
    },
    /// A feature neither we nor the reference implement.
    #[error("{at}: unsupported: {what}")]
    Unsupported {
        /// Where.
        at: Location,
        /// What.
        what: String,
    },
    /// A resource limit of [`Limits`](crate::Limits) would be exceeded.
    #[error("{at}: {what} is {declared}, above the limit of {limit}")]
    LimitExceeded {
        /// Where.
        at: Location,
        /// Which quantity.
        what: &'static str,
        /// The value the bitstream declares.
        declared: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The decoder state does not match the bitstream.
    #[error("{at}: decoder state mismatch: {what}")]
    StateMismatch {
        /// Where.
        at: Location,
        /// What does not match.
        what: String,
    },
    /// The encoder's incremental state does not fit the update to code: it holds another
    /// device's updates, or a tensor's earlier update differs from what the update continues.
    #[error("the incremental state does not fit this update: {what}")]
    EncoderState {
        /// What does not fit.
        what: String,
    },
    /// [`StateChanges`](crate::StateChanges) applied to a state other than the one they were
    /// computed against (or applied twice).
    #[error("the state changes do not fit this state: {what}")]
    StaleChanges {
        /// What differs.
        what: String,
    },
    /// The caller's input or options are inconsistent.
    #[error("{what}")]
    InvalidArgument {
        /// What is wrong.
        what: String,
    },
}

impl Error {
    /// The broad class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Syntax { source, .. } => match source.kind() {
                nnc_bitstream::ErrorKind::Unsupported => ErrorKind::Unsupported,
                nnc_bitstream::ErrorKind::LimitExceeded => ErrorKind::LimitExceeded,
                nnc_bitstream::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                _ => ErrorKind::Malformed,
            },
            // Coded against a history the decoder was not given.
            Error::Cabac {
                source: nnc_cabac::Error::HdspNotAvailable,
                ..
            } => ErrorKind::StateMismatch,
            Error::Cabac { .. } | Error::Malformed { .. } => ErrorKind::Malformed,
            Error::Quant { .. } => ErrorKind::Malformed,
            Error::Unsupported { .. } => ErrorKind::Unsupported,
            Error::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            Error::StateMismatch { .. }
            | Error::EncoderState { .. }
            | Error::StaleChanges { .. } => ErrorKind::StateMismatch,
            Error::InvalidArgument { .. } => ErrorKind::InvalidArgument,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

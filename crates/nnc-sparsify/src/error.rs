//! The crate's error type.

/// Result alias used throughout `nnc-sparsify`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Coarse classification of an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument is out of range or inconsistent with another one.
    InvalidArgument,
}

/// What can go wrong while sparsifying.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The element count implied by a tensor's dimensions differs from its data length.
    #[error("tensor {name:?}: dims {dims:?} describe {expected} elements but {actual} were given")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Its dimensions.
        dims: Vec<usize>,
        /// Product of the dimensions (saturating).
        expected: usize,
        /// Data length.
        actual: usize,
    },
}

impl Error {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ShapeMismatch { .. } => ErrorKind::InvalidArgument,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let e = Error::ShapeMismatch {
            name: "w".into(),
            dims: vec![2, 3],
            expected: 6,
            actual: 5,
        };
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("\"w\""));
    }
}

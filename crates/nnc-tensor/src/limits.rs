//! Resource limits for decoding untrusted bitstreams.

/// Default maximum number of elements of one tensor (2^28: 1 GiB of f32).
pub const DEFAULT_MAX_TENSOR_ELEMENTS: u64 = 1 << 28;
/// Default maximum number of elements of all tensors of one bitstream (2^30).
pub const DEFAULT_MAX_TOTAL_ELEMENTS: u64 = 1 << 30;
/// Default maximum number of NNR units in one bitstream.
pub const DEFAULT_MAX_UNITS: u64 = 1 << 20;
/// Default maximum multiply-adds to recompose one low-rank weight W = G·H (2^34: a 2^28-element
/// weight of rank 64, some seconds of work).
const DEFAULT_MAX_RECOMPOSE_MULTIPLY_ADDS: u64 = 1 << 34;

/// Limits checked before anything is allocated. The defaults are safe for untrusted input.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Maximum elements of one tensor. Default: [`DEFAULT_MAX_TENSOR_ELEMENTS`].
    pub max_tensor_elements: u64,
    /// Maximum elements over all tensors of a bitstream. Default: [`DEFAULT_MAX_TOTAL_ELEMENTS`].
    pub max_total_elements: u64,
    /// Maximum NNR units in a bitstream. Default: [`DEFAULT_MAX_UNITS`].
    pub max_units: u64,
    /// Maximum multiply-adds for recomposing one low-rank weight (its elements times the rank);
    /// without it a few hundred bytes of row-skipped factors could ask for 2^42 of them.
    /// Default: 2^34 (a 2^28-element weight of rank 64).
    pub max_recompose_multiply_adds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tensor_elements: DEFAULT_MAX_TENSOR_ELEMENTS,
            max_total_elements: DEFAULT_MAX_TOTAL_ELEMENTS,
            max_units: DEFAULT_MAX_UNITS,
            max_recompose_multiply_adds: DEFAULT_MAX_RECOMPOSE_MULTIPLY_ADDS,
        }
    }
}

impl Limits {
    /// No limits: for streams from a trusted source, such as one this process just encoded.
    pub fn unlimited() -> Self {
        Limits {
            max_tensor_elements: u64::MAX,
            max_total_elements: u64::MAX,
            max_units: u64::MAX,
            max_recompose_multiply_adds: u64::MAX,
        }
    }

    /// Sets [`Limits::max_tensor_elements`].
    pub fn with_max_tensor_elements(mut self, n: u64) -> Self {
        self.max_tensor_elements = n;
        self
    }
    /// Sets [`Limits::max_total_elements`].
    pub fn with_max_total_elements(mut self, n: u64) -> Self {
        self.max_total_elements = n;
        self
    }
    /// Sets [`Limits::max_units`].
    pub fn with_max_units(mut self, n: u64) -> Self {
        self.max_units = n;
        self
    }
    /// Sets [`Limits::max_recompose_multiply_adds`].
    pub fn with_max_recompose_multiply_adds(mut self, n: u64) -> Self {
        self.max_recompose_multiply_adds = n;
        self
    }
}

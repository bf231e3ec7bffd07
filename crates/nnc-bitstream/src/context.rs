//! State carried from earlier units into the parsing of later ones, and out-of-band side
//! information.

use std::collections::HashMap;

/// Values in force from earlier units of the same bitstream, needed to parse (and write) later
/// units. [`parse_unit`](crate::parse_unit) maintains it: the STR resets it, the MPS fills the
/// MPS fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseContext {
    /// From the STR unit. Profile-1 syntax applies iff this is 1.
    pub general_profile_idc: u8,
    /// From the MPS.
    pub mps_topology_indexed_reference_flag: bool,
    /// From the MPS (false when absent, i.e. profile 0).
    pub mps_parent_signalling_enabled_flag: bool,
    /// Whether an MPS has been parsed (TPL and NDU units require one).
    pub mps_seen: bool,
}

impl ParseContext {
    /// The context the reference API's streams put in force: profile 1 with an MPS parsed,
    /// direct (non-indexed) topology references, and the given parent signalling flag.
    pub fn profile1(mps_parent_signalling_enabled_flag: bool) -> Self {
        Self {
            general_profile_idc: 1,
            mps_topology_indexed_reference_flag: false,
            mps_parent_signalling_enabled_flag,
            mps_seen: true,
        }
    }

    /// Whether profile-1 (second edition) syntax applies.
    pub fn is_profile1(&self) -> bool {
        self.general_profile_idc == 1
    }
}

/// Out-of-band information for NDUs that do not carry everything in-band.
///
/// Only tensor dimensions are needed by the syntax (for NDUs with `tensor_dimensions_flag = 0`
/// or `input_parameters_present_flag = 0`). They are keyed by the NDU's element name: the
/// `topology_elem_id`, or for a block NDU the first name of `topology_elem_id_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideInfo {
    /// Tensor dimensions by element name.
    pub tensor_dimensions: HashMap<String, Vec<u64>>,
}

impl SideInfo {
    /// Empty side information.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the dimensions of `name`.
    pub fn with_tensor_dimensions(mut self, name: impl Into<String>, dims: Vec<u64>) -> Self {
        self.tensor_dimensions.insert(name.into(), dims);
        self
    }

    /// Dimensions recorded for `name`.
    pub fn dimensions_of(&self, name: &str) -> Option<&[u64]> {
        self.tensor_dimensions.get(name).map(Vec::as_slice)
    }
}

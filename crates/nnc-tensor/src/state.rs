//! State carried from one bitstream to the next (incremental coding): the parameter update tree
//! bookkeeping, the base levels for temporal context adaptation (TCA) and the HDSP history.
//!
//! The reference keeps this in a shared mutable dict (`approx_param_base`) and in an `HdspTool`
//! object; here it is a plain value the caller owns, clones and persists (serde). See
//! `docs/incremental.md` for how the fields map to the reference's dict keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::binary_form::{self, Kind};
use crate::error::Result;

/// What the decoder (or encoder) remembers about one tensor from earlier updates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorBase {
    /// Levels of the last coded update, in reconstruction units (`parameters[name]`).
    #[serde(with = "binary_form::packed_i32")]
    pub levels: Vec<i32>,
    /// Depth of that update's node in the parameter update tree (`put_node_depth[name]`).
    pub put_node_depth: u64,
    /// The tensor's `parameter_id` (`parameter_id[name]`).
    pub parameter_id: u64,
}

/// Incremental coding state, kept by each side (encoder and decoder) between bitstreams. `Default`
/// is the state before the first bitstream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncrementalState {
    /// Per tensor name: the last update (TCA base and update-tree bookkeeping).
    pub bases: BTreeMap<String, TensorBase>,
    /// The `device_id` of the updates seen so far (`device_id`; 0 counts as unset, as in the
    /// reference).
    pub device_id: u64,
    /// Per tensor name: HDSP history, 1 where any earlier update had a non-zero level. Used only
    /// when decoding with [`DecodeOptions::hdsp`](crate::DecodeOptions::hdsp).
    pub hdsp_history: BTreeMap<String, Vec<i8>>,
    /// Per tensor name: the HDSP mode the encoder chose last (0 off, 1 on). Encoder only.
    pub hdsp_best_mode: BTreeMap<String, u8>,
}

/// The decoder's incremental state.
pub type DecoderState = IncrementalState;
/// The encoder's incremental state.
pub type EncoderState = IncrementalState;

/// The binary form of [`IncrementalState`] (see [`crate::binary_form`]).
const BINARY: Kind = Kind {
    magic: b"nnc-state",
    version: 2,
    what: "nnc state",
};

/// Version 1 of the binary form, still read: the levels as a plain sequence of varints.
const BINARY_V1: Kind = Kind {
    version: 1,
    ..BINARY
};

/// The state as version 1 of the binary form laid it out.
mod v1 {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) struct TensorBase {
        levels: Vec<i32>,
        put_node_depth: u64,
        parameter_id: u64,
    }

    #[derive(Deserialize)]
    pub(super) struct State {
        bases: BTreeMap<String, TensorBase>,
        device_id: u64,
        hdsp_history: BTreeMap<String, Vec<i8>>,
        hdsp_best_mode: BTreeMap<String, u8>,
    }

    impl From<State> for super::IncrementalState {
        fn from(s: State) -> Self {
            let bases = s.bases.into_iter().map(|(name, b)| {
                let base = super::TensorBase {
                    levels: b.levels,
                    put_node_depth: b.put_node_depth,
                    parameter_id: b.parameter_id,
                };
                (name, base)
            });
            Self {
                bases: bases.collect(),
                device_id: s.device_id,
                hdsp_history: s.hdsp_history,
                hdsp_best_mode: s.hdsp_best_mode,
            }
        }
    }
}

impl IncrementalState {
    /// The state in a compact binary form: `nnc-state`, a version byte (2), then the fields in
    /// postcard's encoding (variable-length integers), each tensor's levels as one byte string
    /// of zigzag varints ([`binary_form::packed_i32`]). A state holds every tensor's levels, so
    /// its form matters: for a ResNet-50-sized model this is 26 MB where the JSON of the serde
    /// derive is 70 MB, written in about 0.035 s instead of 0.31 s and read in 0.065 s instead
    /// of 0.53 s.
    ///
    /// ```
    /// use nnc_tensor::IncrementalState;
    /// let state = IncrementalState { device_id: 7, ..Default::default() };
    /// let bytes = state.to_bytes().unwrap();
    /// assert!(IncrementalState::is_binary(&bytes));
    /// assert_eq!(IncrementalState::from_bytes(&bytes).unwrap(), state);
    /// ```
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        binary_form::to_bytes(&BINARY, self)
    }

    /// Whether `bytes` start like [`IncrementalState::to_bytes`]'s output (of any version).
    pub fn is_binary(bytes: &[u8]) -> bool {
        BINARY.matches(bytes)
    }

    /// Reads [`IncrementalState::to_bytes`]'s output, and version 1 of the form (levels element
    /// by element), which nnc wrote before. Fails with [`crate::Error::InvalidArgument`] for
    /// anything else, including a cut or extended copy and another version of the form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if BINARY_V1.version_of(bytes) == Some(BINARY_V1.version) {
            return binary_form::from_bytes::<v1::State>(&BINARY_V1, bytes).map(Into::into);
        }
        binary_form::from_bytes(&BINARY, bytes)
    }
}

/// The changes one bitstream makes to an [`IncrementalState`], computed against the state and
/// not yet made: what [`crate::decode_stream_deferred`], [`crate::StreamDecoder::run_deferred`]
/// and [`crate::encode_incremental_deferred`] return beside their output, so that a caller can
/// check that output first and commit it with [`StateChanges::apply`] only if it accepts it,
/// without copying the state to have one to fall back on.
///
/// Each tensor update was checked against the state before the bitstream as it was collected.
/// That is exact: a tensor is coded at most once in a bitstream.
///
/// ```
/// use nnc_tensor::{decode_stream_deferred, encode_incremental, DecodeOptions, DecoderState,
///     EncodeInput, EncodeOptions, EncoderState, Tensor, TensorData};
/// let w = Tensor::try_new("w", vec![2, 2], TensorData::F32(vec![0.5, -0.25, 0.0, 1.0]))?;
/// let input = EncodeInput::from_tensors_owned(vec![w])?;
/// let bytes = encode_incremental(&input, &EncodeOptions::default(), &mut EncoderState::default(), true)?.bytes;
///
/// let mut state = DecoderState::default();
/// let (decoded, changes) = decode_stream_deferred(&bytes, &state, &DecodeOptions::new())?;
/// assert!(state.bases.is_empty()); // nothing changed yet
/// assert_eq!(changes.tensor_names().collect::<Vec<_>>(), ["w"]);
/// // ... check `decoded` ...
/// changes.apply(&mut state)?;
/// assert_eq!(state.bases["w"].put_node_depth, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default, PartialEq, Eq)]
#[must_use = "the state changes only once the changes are applied"]
pub struct StateChanges {
    /// The state's `device_id` when the changes were made.
    device_before: u64,
    /// The `device_id` of the updates so far, starting from the state's (0: none yet).
    device_id: u64,
    records: Vec<Record>,
    /// Levels whose non-zero positions join a tensor's HDSP history, after the records.
    hdsp_marks: Vec<(String, Vec<i32>)>,
    hdsp_best_modes: Vec<(String, u8)>,
}

/// Each tensor with the length of its levels: a model's levels are too many to print.
impl std::fmt::Debug for StateChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let levels = |l: &Option<Vec<i32>>| l.as_ref().map(Vec::len);
        let records: Vec<_> = self
            .records
            .iter()
            .map(|r| {
                (
                    &r.name,
                    levels(&r.levels),
                    r.parameter_id,
                    r.depth_before,
                    r.mark_hdsp,
                )
            })
            .collect();
        let marks: Vec<_> = self.hdsp_marks.iter().map(|(n, l)| (n, l.len())).collect();
        f.debug_struct("StateChanges")
            .field("device_before", &self.device_before)
            .field("device_id", &self.device_id)
            .field(
                "records (name, levels, parameter_id, depth_before, mark_hdsp)",
                &records,
            )
            .field("hdsp_marks (name, levels)", &marks)
            .field("hdsp_best_modes", &self.hdsp_best_modes)
            .finish()
    }
}

/// One tensor's update: the reference's `update_base_param`.
#[derive(PartialEq, Eq)]
struct Record {
    name: String,
    /// The new base; `None` only inside the crate: the levels [`StateChanges::apply_with`] is
    /// given for the tensor.
    levels: Option<Vec<i32>>,
    parameter_id: u64,
    /// The tensor's `put_node_depth` in the state the changes were made against (`None`: not in
    /// it). Applying advances it, so changes applied twice, or to another state, are told apart.
    depth_before: Option<u64>,
    /// Whether the levels' non-zero positions join the tensor's HDSP history too.
    mark_hdsp: bool,
}

impl StateChanges {
    /// No changes yet to `state`.
    pub(crate) fn new(state: &IncrementalState) -> Self {
        Self {
            device_before: state.device_id,
            device_id: state.device_id,
            ..Self::default()
        }
    }

    /// Whether applying changes nothing: no tensor was recorded (a decode with
    /// [`DecodeOptions::update_state`](crate::DecodeOptions::update_state) off, or a stream
    /// without tensors).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.hdsp_marks.is_empty() && self.hdsp_best_modes.is_empty()
    }

    /// The tensors whose base the changes set, in coding order.
    pub fn tensor_names(&self) -> impl Iterator<Item = &str> {
        self.records.iter().map(|r| r.name.as_str())
    }

    /// Makes the changes in `state`. `state` must be the state they were computed against, as it
    /// was: each tensor's update depth and `parameter_id` and the `device_id` are compared
    /// first, and where they differ (changes applied a second time, or to another state) this
    /// fails with [`Error::StaleChanges`](crate::Error::StaleChanges) and changes nothing.
    pub fn apply(self, state: &mut IncrementalState) -> Result<()> {
        self.verify(state)?;
        self.apply_with(state, |_| None);
        Ok(())
    }

    /// Why `state` is not the state these changes were computed against, if it is not.
    fn verify(&self, state: &IncrementalState) -> Result<()> {
        let stale = |what: String| Err(crate::Error::StaleChanges { what });
        if self.records.is_empty() {
            return Ok(());
        }
        if state.device_id != self.device_before {
            return stale(format!(
                "the state's device_id is {}, the changes were made against {}",
                state.device_id, self.device_before
            ));
        }
        for r in &self.records {
            let base = state.bases.get(&r.name);
            let depth = base.map(|b| b.put_node_depth);
            if depth != r.depth_before {
                let at = |d: Option<u64>| match d {
                    Some(d) => format!("at update depth {d}"),
                    None => "absent".to_string(),
                };
                return stale(format!(
                    "tensor {:?} is {} in the state, {} where the changes were made",
                    r.name,
                    at(depth),
                    at(r.depth_before)
                ));
            }
            if let Some(b) = base.filter(|b| b.parameter_id != r.parameter_id) {
                return stale(format!(
                    "tensor {:?} has parameter_id {} in the state, the changes {}",
                    r.name, b.parameter_id, r.parameter_id
                ));
            }
            if r.levels.is_none() {
                return Err(crate::Error::InvalidArgument {
                    what: format!("the changes hold no levels for tensor {:?}", r.name),
                });
            }
        }
        Ok(())
    }

    /// Checks an update of tensor `name` against `state` (the one given to
    /// [`StateChanges::new`]) and the updates so far, without recording it: the `device_id` must
    /// be the one seen so far, and the `parameter_id` the tensor's in the state.
    pub(crate) fn check(
        &mut self,
        state: &IncrementalState,
        name: &str,
        device_id: u64,
        parameter_id: u64,
    ) -> Result<(), String> {
        if self.device_id == 0 {
            self.device_id = device_id;
        } else if self.device_id != device_id {
            return Err(format!(
                "device_id {device_id} differs from the state's {}",
                self.device_id
            ));
        }
        match state.bases.get(name) {
            Some(base) if base.parameter_id != parameter_id => Err(format!(
                "parameter_id {parameter_id} differs from the state's {}",
                base.parameter_id
            )),
            _ => Ok(()),
        }
    }

    /// [`StateChanges::check`]s a decoded (or encoded) update of tensor `name` and records it:
    /// its levels become the tensor's base (and with `mark_hdsp` join its HDSP history) once
    /// applied. Levels left `None` are given to [`StateChanges::apply_with`] instead, which
    /// copies them into the old base's memory rather than holding a copy until then.
    pub(crate) fn record(
        &mut self,
        state: &IncrementalState,
        name: &str,
        levels: Option<Vec<i32>>,
        device_id: u64,
        parameter_id: u64,
        mark_hdsp: bool,
    ) -> Result<(), String> {
        self.check(state, name, device_id, parameter_id)?;
        self.records.push(Record {
            name: name.to_string(),
            levels,
            parameter_id,
            depth_before: state.bases.get(name).map(|b| b.put_node_depth),
            mark_hdsp,
        });
        Ok(())
    }

    /// Adds the non-zero positions of `levels` to the HDSP history of `name` once applied (after
    /// the records).
    pub(crate) fn mark_hdsp(&mut self, name: &str, levels: &[i32]) {
        self.hdsp_marks.push((name.to_string(), levels.to_vec()));
    }

    /// Sets the HDSP mode the encoder chose for `name` once applied.
    pub(crate) fn set_hdsp_best_mode(&mut self, name: &str, mode: u8) {
        self.hdsp_best_modes.push((name.to_string(), mode));
    }

    /// Gives each record without levels a copy of `given(name)` (none: no levels), so that the
    /// changes stand on their own.
    pub(crate) fn fill_levels<'g>(&mut self, given: impl Fn(&str) -> Option<&'g [i32]>) {
        for r in &mut self.records {
            if r.levels.is_none() {
                r.levels = Some(nnc_quant::buffer::copied(
                    given(&r.name).unwrap_or_default(),
                ));
            }
        }
    }

    /// These changes with the records and HDSP marks of `other` (changes to the same state)
    /// instead of their own; the encoder's HDSP modes stay.
    pub(crate) fn with_records_of(self, other: StateChanges) -> Self {
        Self {
            records: other.records,
            hdsp_marks: other.hdsp_marks,
            ..self
        }
    }

    /// [`StateChanges::apply`] without its check, for the crate's calls that computed the
    /// changes against `state` themselves. Every record must hold its levels.
    pub(crate) fn commit(self, state: &mut IncrementalState) {
        self.apply_with(state, |_| None);
    }

    /// Makes the changes in `state`, which must be the state they were computed against, taking
    /// the levels of a record that does not hold them from `given(name)` (none: no levels).
    pub(crate) fn apply_with<'g>(
        self,
        state: &mut IncrementalState,
        given: impl Fn(&str) -> Option<&'g [i32]>,
    ) {
        if !self.records.is_empty() {
            state.device_id = self.device_id;
        }
        for r in self.records {
            let given = given(&r.name).unwrap_or_default();
            let levels = match state.bases.get_mut(&r.name) {
                Some(base) => {
                    base.put_node_depth += 1;
                    match r.levels {
                        Some(levels) => base.levels = levels,
                        None => {
                            base.levels.clear();
                            base.levels.extend_from_slice(given);
                        }
                    }
                    &base.levels
                }
                None => {
                    let base = TensorBase {
                        levels: r.levels.unwrap_or_else(|| nnc_quant::buffer::copied(given)),
                        put_node_depth: 1,
                        parameter_id: r.parameter_id,
                    };
                    &state.bases.entry(r.name.clone()).or_insert(base).levels
                }
            };
            if r.mark_hdsp {
                mark_nonzero(&mut state.hdsp_history, &r.name, levels);
            }
        }
        for (name, levels) in self.hdsp_marks {
            mark_nonzero(&mut state.hdsp_history, &name, &levels);
        }
        for (name, mode) in self.hdsp_best_modes {
            state.hdsp_best_mode.insert(name, mode);
        }
    }
}

/// Marks in `name`'s HDSP history every position where `levels` is nonzero.
fn mark_nonzero(history: &mut BTreeMap<String, Vec<i8>>, name: &str, levels: &[i32]) {
    let hist = history
        .entry(name.to_string())
        .or_insert_with(|| vec![0; levels.len()]);
    if hist.len() != levels.len() {
        // A tensor whose shape changed starts a fresh history.
        *hist = vec![0; levels.len()];
    }
    for (h, &l) in hist.iter_mut().zip(levels) {
        if l != 0 {
            *h = 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IncrementalState {
        let mut s = IncrementalState::default();
        let mut update = StateChanges::new(&s);
        update
            .record(
                &s,
                "w",
                Some(vec![0, -3, 700_000, i32::MIN, i32::MAX]),
                9,
                4,
                false,
            )
            .unwrap();
        update
            .record(&s, "b", Some(Vec::new()), 9, 5, false)
            .unwrap();
        update.mark_hdsp("w", &[0, 1, 0, 2, 0]);
        update.set_hdsp_best_mode("w", 1);
        update.apply(&mut s).unwrap();
        s
    }

    #[test]
    fn bytes_round_trip_and_are_smaller_than_json() {
        let s = sample();
        let bytes = s.to_bytes().unwrap();
        assert!(bytes.starts_with(b"nnc-state\x02"));
        assert!(IncrementalState::is_binary(&bytes));
        assert_eq!(IncrementalState::from_bytes(&bytes).unwrap(), s);
        assert!(bytes.len() < serde_json::to_vec(&s).unwrap().len());
        let empty = IncrementalState::default();
        assert_eq!(
            IncrementalState::from_bytes(&empty.to_bytes().unwrap()).unwrap(),
            empty
        );
    }

    #[test]
    fn damaged_foreign_and_newer_bytes_are_refused() {
        let bytes = sample().to_bytes().unwrap();
        let refused = |b: &[u8]| {
            let e = IncrementalState::from_bytes(b).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
            e.to_string()
        };
        for cut in [0, 5, 9, 10, bytes.len() / 2, bytes.len() - 1] {
            refused(&bytes[..cut]);
        }
        assert!(refused(&[&bytes[..], &[0]].concat()).contains("after its end"));
        let mut newer = bytes.clone();
        newer[9] = 3;
        assert!(refused(&newer).contains("another version (3"));
        assert!(refused(b"{\"bases\": {}}").contains("no `nnc-state` header"));
        // A declared length far beyond the input is an error, not an allocation.
        for version in [1, 2] {
            let mut huge = vec![];
            huge.extend(b"nnc-state");
            huge.extend([version, 1, 1, b'w', 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
            assert!(refused(&huge).contains("not a valid nnc state"));
        }
        // Levels that are cut, too long or beyond 32 bits.
        let with_levels = |levels: &[u8]| {
            let mut b = b"nnc-state\x02\x01\x01w".to_vec();
            b.push(levels.len() as u8);
            b.extend(levels);
            b.extend([1, 1, 0, 0, 0]);
            b
        };
        let base = IncrementalState::from_bytes(&with_levels(&[0x80, 0x01, 3])).unwrap();
        assert_eq!(base.bases["w"].levels, vec![64, -2]);
        for bad in [&[3, 0x80][..], &[0x80; 6], &[0xFF, 0xFF, 0xFF, 0xFF, 0x1F]] {
            assert!(refused(&with_levels(bad)).contains("malformed value"));
        }
    }

    /// Version 1 (levels element by element through serde) is still read.
    #[test]
    fn version_1_bytes_are_read() {
        #[derive(Serialize)]
        struct Base<'a> {
            levels: &'a [i32],
            put_node_depth: u64,
            parameter_id: u64,
        }
        #[derive(Serialize)]
        struct V1<'a> {
            bases: BTreeMap<&'a str, Base<'a>>,
            device_id: u64,
            hdsp_history: &'a BTreeMap<String, Vec<i8>>,
            hdsp_best_mode: &'a BTreeMap<String, u8>,
        }
        let s = sample();
        let v1 = V1 {
            bases: s
                .bases
                .iter()
                .map(|(n, b)| {
                    let base = Base {
                        levels: &b.levels,
                        put_node_depth: b.put_node_depth,
                        parameter_id: b.parameter_id,
                    };
                    (n.as_str(), base)
                })
                .collect(),
            device_id: s.device_id,
            hdsp_history: &s.hdsp_history,
            hdsp_best_mode: &s.hdsp_best_mode,
        };
        let bytes = postcard::to_extend(&v1, b"nnc-state\x01".to_vec()).unwrap();
        assert_eq!(IncrementalState::from_bytes(&bytes).unwrap(), s);
        assert_ne!(bytes, s.to_bytes().unwrap());
    }
}

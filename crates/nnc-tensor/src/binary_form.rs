//! The compact binary form nnc saves its states in: a magic string naming the kind of value, a
//! version byte, then the value in postcard's encoding (variable-length integers).
//!
//! [`IncrementalState::to_bytes`](crate::IncrementalState::to_bytes) uses it, and so do the
//! federated-learning codecs' states one crate up, each kind with its own magic. Reading checks
//! the magic and the version and refuses cut or extended copies, so a file of one kind is never
//! taken for another or half read.
//!
//! ```
//! use nnc_tensor::binary_form::{from_bytes, to_bytes, Kind};
//!
//! const COUNTS: Kind = Kind { magic: b"my-counts", version: 1, what: "count table" };
//! let bytes = to_bytes(&COUNTS, &vec![3u32, 1, 4]).unwrap();
//! assert!(COUNTS.matches(&bytes));
//! assert_eq!(from_bytes::<Vec<u32>>(&COUNTS, &bytes).unwrap(), vec![3, 1, 4]);
//! assert!(from_bytes::<Vec<u32>>(&COUNTS, &bytes[..bytes.len() - 1]).is_err());
//! ```

use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// One kind of value in the binary form.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    /// The first bytes of every value of this kind; no kind's magic may start another's.
    pub magic: &'static [u8],
    /// The version this build writes and the only one it reads.
    pub version: u8,
    /// What the value is, for error messages ("nnc state").
    pub what: &'static str,
}

impl Kind {
    /// Whether `bytes` start with this kind's magic (of any version).
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.starts_with(self.magic)
    }
}

/// `value` in the binary form of `kind`.
pub fn to_bytes<T: Serialize + ?Sized>(kind: &Kind, value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(kind.magic.len() + 1);
    out.extend_from_slice(kind.magic);
    out.push(kind.version);
    postcard::to_extend(value, out).map_err(|e| Error::InvalidArgument {
        what: format!("the {} cannot be encoded: {e}", kind.what),
    })
}

/// Reads [`to_bytes`]'s output for `kind`. Fails with [`Error::InvalidArgument`] for anything
/// else, including a cut or extended copy and another version of the form.
pub fn from_bytes<T: DeserializeOwned>(kind: &Kind, bytes: &[u8]) -> Result<T> {
    let what = kind.what;
    let invalid = |what: String| Error::InvalidArgument { what };
    let Some(rest) = bytes.strip_prefix(kind.magic) else {
        let magic = String::from_utf8_lossy(kind.magic);
        return Err(invalid(format!("not an {what} (no `{magic}` header)")));
    };
    match rest {
        [v, payload @ ..] if *v == kind.version => {
            let (value, extra) = postcard::take_from_bytes(payload)
                .map_err(|e| invalid(format!("not a valid {what}: {e}")))?;
            if !extra.is_empty() {
                return Err(invalid(format!(
                    "not a valid {what}: {} bytes after its end",
                    extra.len()
                )));
            }
            Ok(value)
        }
        [v, ..] => Err(invalid(format!(
            "an {what} of another version ({v}; this nnc reads version {})",
            kind.version
        ))),
        [] => Err(invalid(format!("not a valid {what}: no version byte"))),
    }
}

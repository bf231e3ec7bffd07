//! Files: refusing to overwrite, atomic writes, and the incremental state file.

use std::path::Path;

use anyhow::{bail, Context};
use nnc_tensor::IncrementalState;

/// Fails if `path` exists and `force` is not set.
pub fn refuse_overwrite(path: &Path, force: bool) -> anyhow::Result<()> {
    if path.exists() && !force {
        bail!("{} exists (use --force to overwrite)", path.display());
    }
    Ok(())
}

/// Writes through a temporary file in the target directory, then renames it into place.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().context("output path has no file name")?;
    // Same extension as the target, so format detection by extension still works.
    let tmp = dir.join(format!(
        ".nnc-tmp-{}-{}",
        std::process::id(),
        file_name.to_string_lossy()
    ));
    let result = write(&tmp).and_then(|()| {
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// First bytes of a binary state file, then its format version. JSON state files start with `{`.
const BINARY_STATE_MAGIC: &[u8; 9] = b"nnc-state";
const BINARY_STATE_VERSION: u8 = 1;

/// Reads the incremental state file, or the empty state if it does not exist yet. Either form
/// is read whatever the file's name: binary (see [`save_state`]) or JSON.
pub fn load_state(path: Option<&Path>) -> anyhow::Result<IncrementalState> {
    let Some(p) = path.filter(|p| p.exists()) else {
        return Ok(IncrementalState::default());
    };
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    let not_a_state = || format!("{} is not an nnc state file", p.display());
    match bytes.strip_prefix(BINARY_STATE_MAGIC) {
        Some([BINARY_STATE_VERSION, payload @ ..]) => {
            postcard::from_bytes(payload).with_context(not_a_state)
        }
        Some(_) => bail!(
            "{} is an nnc state file of another version (this nnc reads version {})",
            p.display(),
            BINARY_STATE_VERSION
        ),
        None => serde_json::from_slice(&bytes).with_context(not_a_state),
    }
}

/// Writes the incremental state file (if one was given): JSON when its name ends in `.json`,
/// otherwise a compact binary form (the same fields, with postcard's variable-length integers)
/// that is written and read about ten times faster, since a state holds every tensor's levels.
pub fn save_state(path: Option<&Path>, state: &IncrementalState) -> anyhow::Result<()> {
    let Some(p) = path else {
        return Ok(());
    };
    let json = p
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let bytes = if json {
        serde_json::to_vec(state)?
    } else {
        let mut bytes = BINARY_STATE_MAGIC.to_vec();
        bytes.push(BINARY_STATE_VERSION);
        postcard::to_extend(state, bytes).context("encoding the state")?
    };
    write_atomically(p, |tmp| {
        std::fs::write(tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))
    })
}

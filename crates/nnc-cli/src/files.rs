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

/// Checks an output path before any work is done: its directory exists and it is none of the
/// `inputs` (with `--force` the output would otherwise replace an input, or the state file,
/// while it is still needed).
pub fn check_output(output: &Path, inputs: &[Option<&Path>]) -> anyhow::Result<()> {
    let dir = parent_dir(output);
    if !dir.is_dir() {
        bail!(
            "{}: the directory {} does not exist",
            output.display(),
            dir.display()
        );
    }
    // Files that exist are compared through their real paths; one that does not exist yet (a
    // new state file) by its absolute path.
    let same = |input: &Path| match (output.canonicalize(), input.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => match (std::path::absolute(output), std::path::absolute(input)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
    };
    if let Some(input) = inputs.iter().flatten().find(|i| same(i)) {
        bail!(
            "{} is also an input ({}); write the output elsewhere",
            output.display(),
            input.display()
        );
    }
    Ok(())
}

/// [`check_output`] for a model file: also a format nnc writes, by extension.
pub fn check_model_output(output: &Path, inputs: &[Option<&Path>]) -> anyhow::Result<()> {
    use nnc_nn::io::FileFormat;
    match FileFormat::from_path(output) {
        Some(FileFormat::Safetensors | FileFormat::Npz | FileFormat::Npy | FileFormat::PyTorch) => {
        }
        _ => bail!(
            "{}: unknown output format (use .safetensors, .npz, .npy or .pt/.pth/.bin)",
            output.display()
        ),
    }
    check_output(output, inputs)
}

/// The directory a path is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to a temporary file in the target directory, then renames it into place
/// ([`nnc_nn::io::write_file_atomically`]). Errors name `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    nnc_nn::io::write_file_atomically(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads the incremental state file, or the empty state if it does not exist yet. Either form
/// is read whatever the file's name: binary ([`IncrementalState::to_bytes`]) or JSON.
pub fn load_state(path: Option<&Path>) -> anyhow::Result<IncrementalState> {
    let Some(p) = path.filter(|p| p.exists()) else {
        return Ok(IncrementalState::default());
    };
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    if IncrementalState::is_binary(&bytes) {
        IncrementalState::from_bytes(&bytes).with_context(|| format!("reading {}", p.display()))
    } else {
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an nnc state file", p.display()))
    }
}

/// Writes the incremental state file (if one was given): JSON when its name ends in `.json`,
/// otherwise the compact binary form of [`IncrementalState::to_bytes`], which is written about
/// 9 and read about 8 times faster than the JSON (a state holds every tensor's levels).
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
        state.to_bytes()?
    };
    write_atomically(p, &bytes)
}

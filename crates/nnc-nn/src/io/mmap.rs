//! Read-only memory maps of model files: the crate's only unsafe code.
//!
//! Readers map one tensor's bytes at a time, copy them into the tensor and drop the map, so a
//! file is never held in memory whole (neither as a heap copy nor as resident mapped pages).

use std::fs::File;

/// Maps `len` bytes of `file` from byte `offset`, read-only. `len` 0 gives an empty map.
///
/// The caller must have checked that `offset + len` lies within the file.
#[allow(unsafe_code)] // the crate's one mapping, see SAFETY
pub(crate) fn map_range(file: &File, offset: u64, len: usize) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: memmap2 requires that the mapped bytes are not modified or truncated while the map
    // lives. The map is read-only and private to this process, and lives only while one
    // tensor is copied out of it. Another process truncating or rewriting the file in that
    // window is the caveat every mmap-based reader (safetensors, NumPy's memmap) shares: a
    // truncation would raise SIGBUS instead of an error. Nothing of the map outlives the copy.
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn maps_a_range_at_an_unaligned_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let file = File::open(&path).unwrap();
        let map = map_range(&file, 4099, 333).unwrap();
        assert_eq!(&map[..], &bytes[4099..4432]);
        assert!(map_range(&file, 17, 0).unwrap().is_empty());
        let whole = map_range(&file, 0, bytes.len()).unwrap();
        assert_eq!(&whole[..], &bytes[..]);
    }
}

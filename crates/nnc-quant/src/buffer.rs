//! Zeroed buffers for a whole tensor's levels or values.
//!
//! A decoder fills fresh level and value arrays of every tensor, and an encoder fresh level
//! arrays. A large one comes straight from the kernel: untouched pages, each faulted in and
//! cleared on its first write. On the virtual machines of `docs/benchmarks.md` that costs about
//! 0.4 ms per MiB in 4 KiB pages, an eighth of a sparse MiniLM update's decode (its 47 MB word
//! embeddings, levels and values). [`zeroed`] asks Linux for transparent huge pages on the
//! 2 MiB-aligned inside of a large buffer (`madvise(MADV_HUGEPAGE)`, honoured when the
//! system's `transparent_hugepage` setting is `madvise` or `always`): one fault per 2 MiB, about
//! a quarter of the time. The contents are zeros either way; where the advice is refused or
//! unsupported (other systems, THP off) the buffer is the plain `vec![0; n]`. The environment
//! variable `NNC_NO_HUGE_PAGES` (any value) turns the advice off, to compare or to rule it out.
//!
//! It knows nothing of what the elements mean.

/// Buffers of at least this many bytes get the huge-page advice: a smaller one holds at most
/// one aligned 2 MiB page, and is more often reused memory from the allocator.
pub const HUGE_PAGE_MIN_BYTES: usize = 4 << 20;

/// `n` zeros of `T` (`vec![0; n]`: for the integer and float types one zeroed allocation whose
/// pages the kernel has not touched yet), with transparent huge pages requested for its inside
/// when it is at least [`HUGE_PAGE_MIN_BYTES`] long (module doc).
///
/// ```
/// let levels: Vec<i32> = nnc_quant::buffer::zeroed(3 << 20);
/// assert_eq!(levels.len(), 3 << 20);
/// assert!(levels.iter().all(|&l| l == 0));
/// ```
pub fn zeroed<T: bytemuck::Zeroable + Copy>(n: usize) -> Vec<T> {
    let v = vec![T::zeroed(); n];
    advise_if_large(v.as_ptr().cast(), std::mem::size_of_val(v.as_slice()));
    v
}

/// An empty vector with room for `n` elements of `T`, with transparent huge pages requested
/// for the inside of that room when it is at least [`HUGE_PAGE_MIN_BYTES`] long: for buffers
/// filled by pushing (module doc).
///
/// ```
/// let mut steps: Vec<u16> = nnc_quant::buffer::with_capacity(5 << 20);
/// steps.extend(std::iter::repeat_n(7, 5 << 20));
/// assert_eq!(steps.len(), 5 << 20);
/// ```
pub fn with_capacity<T>(n: usize) -> Vec<T> {
    let v: Vec<T> = Vec::with_capacity(n);
    let bytes = v.capacity().saturating_mul(std::mem::size_of::<T>());
    advise_if_large(v.as_ptr().cast(), bytes);
    v
}

/// A copy of `values` in a vector made by [`with_capacity`].
///
/// ```
/// assert_eq!(nnc_quant::buffer::copied(&[1, -2, 3]), vec![1, -2, 3]);
/// ```
pub fn copied<T: Copy>(values: &[T]) -> Vec<T> {
    let mut v = with_capacity(values.len());
    v.extend_from_slice(values);
    v
}

/// The huge-page advice for the `len` bytes at `start`, if they are at least
/// [`HUGE_PAGE_MIN_BYTES`] and the advice is not turned off.
#[cfg(target_os = "linux")]
fn advise_if_large(start: *const u8, len: usize) {
    if len < HUGE_PAGE_MIN_BYTES {
        return;
    }
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *OFF.get_or_init(|| std::env::var_os("NNC_NO_HUGE_PAGES").is_some()) {
        return;
    }
    const HUGE: usize = 2 << 20;
    let first = (start as usize).next_multiple_of(HUGE);
    let end = (start as usize).saturating_add(len) & !(HUGE - 1);
    if end > first {
        // SAFETY: [first, end) lies inside the caller's live allocation. MADV_HUGEPAGE only
        // changes how the kernel backs those pages, never what they hold, so no Rust value is
        // affected; a refusal (EINVAL without THP) leaves the buffer as it was, and is ignored.
        #[allow(unsafe_code)]
        unsafe {
            libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_if_large(_start: *const u8, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_and_small_buffers_are_zeros_of_their_length() {
        for n in [0, 1, 1000, (HUGE_PAGE_MIN_BYTES / 4) + 12_345] {
            let v: Vec<f32> = zeroed(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|&x| x.to_bits() == 0));
            let w: Vec<i32> = zeroed(n);
            assert!(w.iter().all(|&x| x == 0));
        }
        assert_eq!(copied(&[0.5f32, -1.0]), vec![0.5, -1.0]);
    }

    /// The kernel's record of the mapping that holds `addr`: its `VmFlags` line in
    /// `/proc/self/smaps` (`hg` = MADV_HUGEPAGE given).
    #[cfg(target_os = "linux")]
    fn vm_flags_at(addr: usize) -> Option<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line
                .split_whitespace()
                .next()
                .and_then(|r| r.split_once('-'));
            if let Some((lo, hi)) = range {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(flags) = line.strip_prefix("VmFlags:") {
                    return Some(flags.to_string());
                }
            }
        }
        None
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn large_buffers_carry_the_huge_page_advice() {
        let thp = std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled");
        if !thp.exists() || std::env::var_os("NNC_NO_HUGE_PAGES").is_some() {
            return;
        }
        let inside = |p: *const u8| (p as usize).next_multiple_of(2 << 20) + 4096;
        let large: Vec<f32> = zeroed(HUGE_PAGE_MIN_BYTES);
        let flags = vm_flags_at(inside(large.as_ptr().cast())).expect("the buffer's mapping");
        assert!(flags.split_whitespace().any(|f| f == "hg"), "{flags}");
        let pushed: Vec<u16> = with_capacity(HUGE_PAGE_MIN_BYTES);
        let flags = vm_flags_at(inside(pushed.as_ptr().cast())).expect("the buffer's mapping");
        assert!(flags.split_whitespace().any(|f| f == "hg"), "{flags}");
    }
}

//! How many threads the parallel parts of this crate (and of the crates above it) may use.
//!
//! Normally that is rayon's: the pool the call runs in. A caller that wants one thread can
//! instead run the work [`sequentially`] on its own thread, with no pool at all: handing a call
//! to a pool's thread and back costs some tens of microseconds, as much as coding a few hundred
//! values. Inside [`sequentially`], [`worker_threads`] is 1 and every parallel part takes its
//! one-thread path, so nothing is sent to rayon's global pool.

use std::cell::Cell;

thread_local! {
    static SEQUENTIAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `op` on this thread with [`worker_threads`] at 1, whatever pool this thread is in.
pub fn sequentially<R>(op: impl FnOnce() -> R) -> R {
    /// Puts the flag back as it was, also when `op` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SEQUENTIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SEQUENTIAL.with(|s| s.replace(true)));
    op()
}

/// Whether this thread runs inside [`sequentially`].
pub fn is_sequential() -> bool {
    SEQUENTIAL.with(Cell::get)
}

/// The threads the parallel parts may use: 1 inside [`sequentially`] (or without the `rayon`
/// feature), else the current rayon pool's.
pub fn worker_threads() -> usize {
    #[cfg(feature = "rayon")]
    if !is_sequential() {
        return rayon::current_num_threads();
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_thread_inside_and_the_flag_restored_after() {
        assert!(!is_sequential());
        let inside = sequentially(|| (worker_threads(), sequentially(is_sequential)));
        assert_eq!(inside, (1, true));
        assert!(!is_sequential());
        let unwound = std::panic::catch_unwind(|| sequentially(|| panic!("inside")));
        assert!(unwound.is_err());
        assert!(
            !is_sequential(),
            "the flag is put back when the work panics"
        );
    }
}

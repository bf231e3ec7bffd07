//! The worker threads of one encode or decode call.
//!
//! `threads: None` runs the parallel parts on rayon's global pool (all cores); `Some(n)` on a pool
//! of `n` threads. Pools of up to as many threads as the machine has cores are kept for later
//! calls with the same count (see [`kept_pool`]); larger ones are built for the call and dropped
//! after it. A call is handed to a thread of its pool once, and its parallel parts run there. A
//! one-thread call on fewer than [`INLINE_MAX_ELEMENTS`] values, and any call of one part on
//! fewer than [`TINY_MAX_ELEMENTS`], runs on the calling thread instead
//! ([`nnc_cabac::threads::sequentially`]): handing it to a pool's thread and back would cost more
//! than coding it. Work is split the same way whatever the thread count, so the output never
//! depends on it.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// The most worker threads one call starts. Asking for more is an error: a pool's threads are
/// all started up front, and tens of thousands of them take minutes to start or exhaust the
/// process's threads.
pub const MAX_THREADS: usize = 1024;

/// Below this many values a one-thread call runs on the calling thread rather than on a pool
/// of one (whose hand-off costs some tens of microseconds; a large call keeps the pool, on
/// which a streaming decode's writes overlap the decoding).
pub(crate) const INLINE_MAX_ELEMENTS: u64 = 1 << 16;

/// Below this many values a call of one part (see [`Workers::for_call`]) runs on the calling
/// thread whatever its thread count: nothing in it splits, and the hand-off to a pool's thread
/// and back (50–60 µs on the VMs measured) would cost more than coding it. On Zen 5 a lone
/// tensor of 4 096 values encoded in 318–326 µs on the calling thread against 394 µs through a
/// two-thread pool, one of 16 384 values in 1.25 ms through the pool against 1.45 ms.
pub(crate) const TINY_MAX_ELEMENTS: u64 = 1 << 13;

/// Where the parallel parts of one call run.
pub(crate) enum Workers {
    /// Rayon's global pool.
    Global,
    /// A pool of `n` threads, kept between calls or the call's own.
    Pool(Arc<rayon::ThreadPool>),
    /// The calling thread, every parallel part on its one-thread path.
    Inline,
}

impl Workers {
    /// `None` or `Some(0)`: the global pool (in a forked child, a stand-in: see
    /// [`global_or_stand_in`]); `Some(n)`: a pool of `n` threads (at most [`MAX_THREADS`]), kept
    /// or new as [`kept_pool`] says.
    pub(crate) fn new(threads: Option<usize>) -> Result<Self> {
        check_count(threads)?;
        match threads {
            None | Some(0) => global_or_stand_in(),
            Some(n) => Ok(Workers::Pool(kept_pool(n)?)),
        }
    }

    /// As [`Workers::new`], except that the calling thread itself runs a call on `elements`
    /// values in `parts` pieces that could run in parallel (tensors, NDUs, codebook trials)
    /// when it asks for one thread and has fewer than [`INLINE_MAX_ELEMENTS`] values, or has
    /// one part and fewer than [`TINY_MAX_ELEMENTS`] values.
    pub(crate) fn for_call(threads: Option<usize>, elements: u64, parts: usize) -> Result<Self> {
        let one_thread = threads == Some(1) && elements < INLINE_MAX_ELEMENTS;
        let tiny = parts <= 1 && elements < TINY_MAX_ELEMENTS;
        if one_thread || tiny {
            check_count(threads)?;
            return Ok(Workers::Inline);
        }
        Self::new(threads)
    }

    /// Whether the call runs on the calling thread (see [`Workers::for_call`]).
    pub(crate) fn is_inline(&self) -> bool {
        matches!(self, Workers::Inline)
    }

    /// Runs `op` on one of these workers, so that the rayon calls inside it stay among them
    /// (a call's parallel parts started from a thread outside the pool would each be handed to
    /// it and back: a two-thread encode of four tensors of 1 024 values took 306 µs that way
    /// against 179 µs from inside). Already on a pool's thread, or inside
    /// [`nnc_cabac::threads::sequentially`], `op` runs where it is.
    pub(crate) fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        match self {
            Workers::Global if nnc_cabac::threads::is_sequential() => op(),
            // On a pool's thread already, `scope` runs `op` in place.
            Workers::Global => rayon::scope(|_| op()),
            Workers::Pool(pool) => pool.install(op),
            Workers::Inline => nnc_cabac::threads::sequentially(op),
        }
    }

    /// Runs `op` on the calling thread with a scope whose spawned work runs on these workers
    /// (an inline call's on a pool of one). Fails only when that pool cannot start.
    pub(crate) fn in_place_scope<'scope, R>(
        &self,
        op: impl FnOnce(&rayon::Scope<'scope>) -> R,
    ) -> Result<R> {
        match self {
            Workers::Global => Ok(rayon::in_place_scope(op)),
            Workers::Pool(pool) => Ok(pool.in_place_scope(op)),
            // Spawned work must not reach the global pool. The stream decoder takes another
            // path for inline calls, so this pool of one is a safeguard, not a cost it pays.
            Workers::Inline => Ok(pool_of(1)?.in_place_scope(op)),
        }
    }

    /// How many threads run the parallel parts.
    pub(crate) fn count(&self) -> usize {
        match self {
            Workers::Global => rayon::current_num_threads(),
            Workers::Pool(pool) => pool.current_num_threads(),
            Workers::Inline => 1,
        }
    }
}

/// An error for more than [`MAX_THREADS`] threads, however small the call.
fn check_count(threads: Option<usize>) -> Result<()> {
    match threads {
        Some(n) if n > MAX_THREADS => Err(Error::InvalidArgument {
            what: format!("{n} worker threads asked for; at most {MAX_THREADS}"),
        }),
        _ => Ok(()),
    }
}

/// The pools kept between calls (at most one per thread count), and which process first ran a
/// call on rayon's global pool. Both belong to one process: a child made by `fork` has none of
/// their threads (only the forking thread is copied), so work handed to them would wait for ever.
struct Kept {
    /// The process the pools were started in.
    pid: u32,
    pools: Vec<Arc<rayon::ThreadPool>>,
    /// The process that first ran a call on the global pool.
    global_pid: Option<u32>,
}

static KEPT: Mutex<Kept> = Mutex::new(Kept {
    pid: 0,
    pools: Vec::new(),
    global_pid: None,
});

/// [`KEPT`], emptied of another process's pools. Those are leaked, not dropped: their threads
/// are not in this process, and ending a pool would signal them through locks they may hold.
fn kept() -> std::sync::MutexGuard<'static, Kept> {
    // A panic while the lock was held cannot leave the lists half-changed.
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if kept.pid != pid {
        std::mem::forget(std::mem::take(&mut kept.pools));
        kept.pid = pid;
    }
    kept
}

/// The workers of `threads: None`: rayon's global pool, except in a child forked after a call
/// ran on it, whose global pool has no threads; there a kept pool of all cores stands in.
fn global_or_stand_in() -> Result<Workers> {
    let (pid, first_user) = {
        let mut kept = kept();
        let pid = kept.pid;
        (pid, *kept.global_pid.get_or_insert(pid))
    };
    if first_user == pid {
        return Ok(Workers::Global);
    }
    Ok(Workers::Pool(kept_pool(cores())?))
}

/// A pool of `n` threads. One of at most as many threads as the machine has cores is kept for
/// the process's later calls with the same count. A new pool's threads start with cold
/// allocator arenas: a two-thread encode of 64 Ki values in eight tensors took 5.3 ms on a new
/// pool against 3.0 ms on a kept one. Larger pools are the caller's alone and end with the
/// call, so a one-off request for many threads leaves none behind. Calls made at the same time
/// with the same count share its pool's threads, as calls with `threads: None` share the
/// global pool.
fn kept_pool(n: usize) -> Result<Arc<rayon::ThreadPool>> {
    if n > cores() {
        return Ok(Arc::new(pool_of(n)?));
    }
    let mut kept = kept();
    if let Some(pool) = kept.pools.iter().find(|p| p.current_num_threads() == n) {
        return Ok(Arc::clone(pool));
    }
    let pool = Arc::new(pool_of(n)?);
    kept.pools.push(Arc::clone(&pool));
    Ok(pool)
}

/// The machine's cores as the process may use them, read once: on Linux the standard library
/// reads the cgroup's quota files for it, which took tens of microseconds a call.
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// A new pool of `n` threads.
fn pool_of(n: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("nnc-worker-{i}"))
        .build()
        .map_err(|e| Error::InvalidArgument {
            what: format!("cannot start {n} worker threads: {e}"),
        })
}

/// `f` over `items` in parallel, the largest (by `size`) first and one item per rayon task, with
/// the results in the items' order. An indexed `par_iter` would instead give each thread a
/// contiguous part of the list, split further only when another thread steals from it, which
/// leaves one thread with most of the work when the sizes differ widely. Items are taken by
/// value, so they may be shared or exclusive references.
pub(crate) fn map_largest_first<I, R, S, F>(items: Vec<I>, size: S, f: F) -> Vec<R>
where
    I: Send,
    R: Send,
    S: Fn(&I) -> u64,
    F: Fn(I) -> R + Sync + Send,
{
    use rayon::prelude::*;
    if nnc_cabac::threads::worker_threads() == 1 {
        return items.into_iter().map(f).collect();
    }
    let mut order: Vec<(usize, I)> = items.into_iter().enumerate().collect();
    order.sort_by_key(|(_, item)| std::cmp::Reverse(size(item)));
    let mut done: Vec<(usize, R)> = order
        .into_par_iter()
        .with_max_len(1)
        .map(|(k, item)| (k, f(item)))
        .collect();
    done.sort_by_key(|d| d.0);
    done.into_iter().map(|d| d.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_first_keeps_the_items_order() {
        let items: Vec<u64> = vec![3, 50, 1, 50, 7, 0, 22];
        let w = Workers::new(Some(2)).unwrap();
        let out = w.install(|| map_largest_first(items, |&x| x, |x| x * 10 + 1));
        assert_eq!(out, vec![31, 501, 11, 501, 71, 1, 221]);
        assert!(map_largest_first(Vec::<u64>::new(), |&x| x, |x| x).is_empty());
    }

    #[test]
    fn small_one_thread_calls_and_tiny_one_part_calls_run_inline() {
        let small = Workers::for_call(Some(1), INLINE_MAX_ELEMENTS - 1, 8).unwrap();
        assert!(small.is_inline());
        assert_eq!(small.count(), 1);
        assert_eq!(
            small.install(|| (
                nnc_cabac::threads::worker_threads(),
                std::thread::current().id()
            )),
            (1, std::thread::current().id())
        );
        assert_eq!(small.in_place_scope(|_| 7).unwrap(), 7);
        assert!(!nnc_cabac::threads::is_sequential());
        for threads in [None, Some(0), Some(1), Some(2), Some(MAX_THREADS)] {
            let tiny = Workers::for_call(threads, TINY_MAX_ELEMENTS - 1, 1).unwrap();
            assert!(tiny.is_inline(), "{threads:?} on one small part");
        }
        for (threads, elements, parts) in [
            (Some(1), INLINE_MAX_ELEMENTS, 1),
            (Some(2), 10, 2),
            (None, 10, 2),
            (Some(0), 10, 2),
            (Some(2), TINY_MAX_ELEMENTS, 1),
            (None, TINY_MAX_ELEMENTS, 1),
        ] {
            let w = Workers::for_call(threads, elements, parts).unwrap();
            assert!(
                !w.is_inline(),
                "{threads:?} on {elements} values in {parts} parts"
            );
        }
        assert!(
            Workers::for_call(Some(MAX_THREADS + 1), 10, 1).is_err(),
            "too many threads is an error however small the call"
        );
        assert_eq!(
            Workers::for_call(Some(1), 1 << 20, 1)
                .unwrap()
                .install(rayon::current_num_threads),
            1
        );
    }

    #[test]
    fn the_global_pools_calls_run_on_its_threads() {
        let global = Workers::new(None).unwrap();
        assert!(rayon::current_thread_index().is_none());
        assert!(
            global.install(rayon::current_thread_index).is_some(),
            "handed to a worker"
        );
        let caller = std::thread::current().id();
        let inside =
            nnc_cabac::threads::sequentially(|| global.install(|| std::thread::current().id()));
        assert_eq!(inside, caller, "a sequential call stays where it is");
    }

    #[test]
    fn pools_up_to_the_cores_are_kept_and_larger_ones_are_not() {
        let pool_of = |w: Workers| {
            let Workers::Pool(pool) = w else {
                panic!("not a pool")
            };
            pool
        };
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let first = pool_of(Workers::new(Some(cores)).unwrap());
        let again = pool_of(Workers::new(Some(cores)).unwrap());
        assert!(Arc::ptr_eq(&first, &again), "one pool for both calls");
        assert_eq!(again.install(rayon::current_num_threads), cores);
        let kept = Arc::downgrade(&first);
        drop((first, again));
        assert!(kept.upgrade().is_some(), "the pool outlives its calls");
        let big = pool_of(Workers::new(Some(cores + 1)).unwrap());
        assert_eq!(big.current_num_threads(), cores + 1);
        let gone = Arc::downgrade(&big);
        drop(big);
        assert!(
            gone.upgrade().is_none(),
            "a pool above the cores ends with its call"
        );
    }

    #[test]
    fn a_pool_of_n_threads_runs_the_work() {
        let w = Workers::new(Some(3)).unwrap();
        assert_eq!(w.count(), 3);
        assert_eq!(w.install(rayon::current_num_threads), 3);
        let global = Workers::new(None).unwrap();
        assert_eq!(global.count(), rayon::current_num_threads());
        assert_eq!(
            Workers::new(Some(0)).unwrap().count(),
            rayon::current_num_threads()
        );
        let Err(e) = Workers::new(Some(MAX_THREADS + 1)) else {
            panic!("{} threads were started", MAX_THREADS + 1);
        };
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("at most 1024"), "{e}");
    }
}

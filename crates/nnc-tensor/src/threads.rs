//! The worker threads of one encode or decode call.
//!
//! `threads: None` runs the parallel parts on rayon's global pool (all cores); `Some(n)` builds a
//! pool of `n` threads for the call and drops it afterwards, so nothing global is changed or
//! cached. Work is split the same way whatever the thread count, so the output never depends on it.

use crate::error::{Error, Result};

/// The most worker threads one call starts. Asking for more is an error: a pool's threads are
/// all started up front, and tens of thousands of them take minutes to start or exhaust the
/// process's threads.
pub const MAX_THREADS: usize = 1024;

/// Where the parallel parts of one call run.
pub(crate) struct Workers {
    pool: Option<rayon::ThreadPool>,
}

impl Workers {
    /// `None` or `Some(0)`: the global pool; `Some(n)`: a new pool of `n` threads (at most
    /// [`MAX_THREADS`]).
    pub(crate) fn new(threads: Option<usize>) -> Result<Self> {
        let pool = match threads {
            None | Some(0) => None,
            Some(n) if n > MAX_THREADS => {
                return Err(Error::InvalidArgument {
                    what: format!("{n} worker threads asked for; at most {MAX_THREADS}"),
                })
            }
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| Error::InvalidArgument {
                        what: format!("cannot start {n} worker threads: {e}"),
                    })?,
            ),
        };
        Ok(Workers { pool })
    }

    /// Runs `op` so that the rayon calls inside it use these workers.
    pub(crate) fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(op),
            None => op(),
        }
    }

    /// Runs `op` on the calling thread with a scope whose spawned work runs on these workers.
    pub(crate) fn in_place_scope<'scope, R>(
        &self,
        op: impl FnOnce(&rayon::Scope<'scope>) -> R,
    ) -> R {
        match &self.pool {
            Some(pool) => pool.in_place_scope(op),
            None => rayon::in_place_scope(op),
        }
    }

    /// How many threads run the parallel parts.
    pub(crate) fn count(&self) -> usize {
        match &self.pool {
            Some(pool) => pool.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }
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

//! Named values in any container, put in name order: the step the ML-framework adapters share.
//!
//! An adapter (`nnc-candle`, `nnc-tch`) takes a model's tensors however the framework hands them
//! out: iterating a `HashMap<String, T>` or `BTreeMap` gives `(&String, &T)`, iterating a slice
//! gives `&(String, T)`, and a `Vec<(&str, T)>` gives owned pairs. [`Named<T>`] reads the name
//! and the value from each of these shapes, and [`sort_by_unique_name`] orders the entries by
//! name and rejects a name given twice. NNC codes tensors in that order, so the same map always
//! gives the same bytes even though a `HashMap`'s iteration order is random.
//!
//! Generic over the value type `T`: this module must not know any ML framework.
//!
//! ```
//! use std::collections::HashMap;
//! use nnc_tensor::named::{sort_by_unique_name, DuplicateName, Named};
//!
//! /// What an adapter does for its tensor type (here `f32`): accept any named container.
//! fn in_name_order<I>(items: I) -> Result<Vec<(String, f32)>, DuplicateName>
//! where
//!     I: IntoIterator,
//!     I::Item: Named<f32>,
//! {
//!     let sorted = sort_by_unique_name::<f32, _>(items)?;
//!     Ok(sorted.iter().map(|e| (e.name().to_string(), *e.value())).collect())
//! }
//!
//! let pairs = vec![("b".to_string(), 2.0), ("a".to_string(), 1.0)];
//! let map: HashMap<String, f32> = pairs.iter().cloned().collect();
//! let expected = [("a".to_string(), 1.0), ("b".to_string(), 2.0)];
//! assert_eq!(in_name_order(&map)?, expected); // (&String, &f32)
//! assert_eq!(in_name_order(pairs.iter())?, expected); // &(String, f32)
//! assert_eq!(in_name_order(pairs)?, expected); // (String, f32)
//! let twice = in_name_order([("x", 0.0), ("x", 1.0)]);
//! assert_eq!(twice, Err(DuplicateName("x".to_string())));
//! # Ok::<(), DuplicateName>(())
//! ```

/// One entry of a named container: a name and a value of type `T`.
///
/// Implemented for `(&K, &T)` (iterating a map), `&(K, T)` (iterating a slice or `&Vec`) and
/// owned `(K, T)` pairs, where the name `K` is anything that reads as a `str` (`String`, `&str`,
/// `Box<str>`, ...). A map entry `(&K, &T)` is also an owned pair whose value is `&T`, so it
/// implements `Named<&T>` too; a bound such as `I::Item: Named<Tensor>` picks the intended one.
pub trait Named<T: ?Sized> {
    /// The entry's name.
    fn name(&self) -> &str;
    /// The entry's value.
    fn value(&self) -> &T;
}

impl<K: AsRef<str> + ?Sized, T: ?Sized> Named<T> for (&K, &T) {
    fn name(&self) -> &str {
        self.0.as_ref()
    }
    fn value(&self) -> &T {
        self.1
    }
}

impl<K: AsRef<str>, T> Named<T> for &(K, T) {
    fn name(&self) -> &str {
        self.0.as_ref()
    }
    fn value(&self) -> &T {
        &self.1
    }
}

impl<K: AsRef<str>, T> Named<T> for (K, T) {
    fn name(&self) -> &str {
        self.0.as_ref()
    }
    fn value(&self) -> &T {
        &self.1
    }
}

/// Two entries of one container share a name (carried in the error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("name {0:?} appears more than once")]
pub struct DuplicateName(pub String);

/// Collects `items` and sorts them by name (byte order of the UTF-8 names), failing with the
/// smallest name that occurs more than once.
///
/// `T` is inferred from a caller's bound (`I::Item: Named<Tensor>`) or from an item type with a
/// single `Named` impl (owned pairs, slice entries); for map entries write
/// `sort_by_unique_name::<T, _>(&map)`.
pub fn sort_by_unique_name<T, I>(items: I) -> Result<Vec<I::Item>, DuplicateName>
where
    T: ?Sized,
    I: IntoIterator,
    I::Item: Named<T>,
{
    let mut entries: Vec<I::Item> = items.into_iter().collect();
    entries.sort_unstable_by(|a, b| a.name().cmp(b.name()));
    match entries.windows(2).find(|w| w[0].name() == w[1].name()) {
        Some(w) => Err(DuplicateName(w[0].name().to_string())),
        None => Ok(entries),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    fn names<T: ?Sized, N: Named<T>>(entries: &[N]) -> Vec<&str> {
        entries.iter().map(|e| e.name()).collect()
    }

    fn values<T: Copy, N: Named<T>>(entries: &[N]) -> Vec<T> {
        entries.iter().map(|e| *e.value()).collect()
    }

    #[test]
    fn map_entries_are_sorted_whatever_the_iteration_order() {
        let map: HashMap<String, i32> = (0..50).map(|i| (format!("t{:02}", 49 - i), i)).collect();
        let sorted = sort_by_unique_name::<i32, _>(&map).unwrap();
        let expected: Vec<String> = (0..50).map(|i| format!("t{i:02}")).collect();
        assert_eq!(names::<i32, _>(&sorted), expected);
        assert_eq!(values::<i32, _>(&sorted), (0..50).rev().collect::<Vec<_>>());
    }

    #[test]
    fn btree_map_of_unsized_values() {
        let map: BTreeMap<&str, Box<[u8]>> =
            [("y", vec![2u8].into()), ("x", vec![1u8, 1].into())].into();
        let entries: Vec<(&&str, &[u8])> = map.iter().map(|(k, v)| (k, &**v)).collect();
        let sorted = sort_by_unique_name::<[u8], _>(entries).unwrap();
        assert_eq!(names::<[u8], _>(&sorted), ["x", "y"]);
        assert_eq!(Named::<[u8]>::value(&sorted[0]), &[1, 1]);
    }

    #[test]
    fn slice_entries_are_sorted_and_borrowed() {
        let pairs = vec![
            ("b".to_string(), 2.0f32),
            ("a".to_string(), 1.0),
            ("c".into(), 3.0),
        ];
        let sorted = sort_by_unique_name(pairs.iter()).unwrap();
        assert_eq!(names(&sorted), ["a", "b", "c"]);
        assert_eq!(values(&sorted), [1.0, 2.0, 3.0]);
        assert!(std::ptr::eq(sorted[0], &pairs[1]));
        let from_slice = sort_by_unique_name(pairs.as_slice()).unwrap();
        assert_eq!(names(&from_slice), ["a", "b", "c"]);
    }

    #[test]
    fn owned_pairs_are_sorted_and_moved() {
        let sorted = sort_by_unique_name(vec![("z", 26u8), ("a", 1), ("m", 13)]).unwrap();
        assert_eq!(sorted, [("a", 1), ("m", 13), ("z", 26)]);
    }

    #[test]
    fn byte_order_not_natural_order() {
        let sorted = sort_by_unique_name(vec![("w10", ()), ("w9", ()), ("W", ()), ("é", ())]);
        assert_eq!(names(&sorted.unwrap()), ["W", "w10", "w9", "é"]);
    }

    #[test]
    fn empty_input_is_empty_output() {
        let sorted = sort_by_unique_name(Vec::<(String, u8)>::new()).unwrap();
        assert!(sorted.is_empty());
    }

    #[test]
    fn repeated_name_is_rejected_in_every_shape() {
        let owned = vec![("b", 1), ("a", 2), ("c", 3), ("a", 4)];
        let err = sort_by_unique_name(owned.clone()).unwrap_err();
        assert_eq!(err, DuplicateName("a".into()));
        assert_eq!(err.to_string(), "name \"a\" appears more than once");
        assert_eq!(
            sort_by_unique_name(owned.iter()),
            Err(DuplicateName("a".into()))
        );
        let refs: Vec<(&&str, &i32)> = owned.iter().map(|(k, v)| (k, v)).collect();
        assert_eq!(
            sort_by_unique_name::<i32, _>(refs),
            Err(DuplicateName("a".into()))
        );
    }

    #[test]
    fn smallest_repeated_name_is_reported() {
        let pairs = [("y", 0), ("x", 0), ("y", 0), ("x", 0), ("x", 0)];
        assert_eq!(
            sort_by_unique_name(pairs),
            Err(DuplicateName("x".to_string()))
        );
    }
}

//! The elements of one parameter as the encoder holds them: lent by the caller, owned, or kept
//! alive by a shared owner such as a memory-mapped file.
//!
//! The encoder reads a parameter's elements once, to quantize them (or to code integers as they
//! are), and lets them go right after. Owned elements are freed then; shared ones drop their
//! owner, so a tensor read in place from a mapped file gives its pages back as soon as it is
//! quantized, without ever being copied.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A shared owner of elements: anything that can lend them as a slice from several threads
/// (a memory map of a model file, an `Arc<Vec<T>>`, a buffer another library keeps).
pub type SharedSlice<T> = Arc<dyn AsRef<[T]> + Send + Sync>;

/// A parameter's elements, row-major: borrowed for `'a`, owned, or held by a [`SharedSlice`].
///
/// Dereferences to `[T]`; equality compares the elements, whoever holds them.
pub enum Elements<'a, T> {
    /// Borrowed from the caller for `'a`.
    Borrowed(&'a [T]),
    /// Owned; freed as soon as the encoder has quantized them (when it was given the input).
    Owned(Vec<T>),
    /// Kept alive by a shared owner, which the encoder drops as it would free owned elements.
    Shared(SharedSlice<T>),
}

impl<T> Elements<'_, T> {
    /// Elements held by `owner` (see [`SharedSlice`]).
    pub fn shared(owner: SharedSlice<T>) -> Self {
        Elements::Shared(owner)
    }

    /// The elements as a slice.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Elements::Borrowed(v) => v,
            Elements::Owned(v) => v,
            Elements::Shared(v) => (**v).as_ref(),
        }
    }
}

impl<T: Clone> Elements<'_, T> {
    /// The elements as a vector, copied unless they were owned.
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Elements::Owned(v) => v,
            other => other.as_slice().to_vec(),
        }
    }

    /// The same elements borrowing nothing: borrowed ones are copied, owned and shared ones
    /// are kept as they are.
    pub fn into_static(self) -> Elements<'static, T> {
        match self {
            Elements::Borrowed(v) => Elements::Owned(v.to_vec()),
            Elements::Owned(v) => Elements::Owned(v),
            Elements::Shared(v) => Elements::Shared(v),
        }
    }
}

impl<T> Deref for Elements<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> AsRef<[T]> for Elements<'_, T> {
    fn as_ref(&self) -> &[T] {
        self.as_slice()
    }
}

/// Cloning copies owned elements and shares the rest (a shared owner is not copied).
impl<T: Clone> Clone for Elements<'_, T> {
    fn clone(&self) -> Self {
        match self {
            Elements::Borrowed(v) => Elements::Borrowed(v),
            Elements::Owned(v) => Elements::Owned(v.clone()),
            Elements::Shared(v) => Elements::Shared(Arc::clone(v)),
        }
    }
}

impl<T: PartialEq> PartialEq for Elements<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: fmt::Debug> fmt::Debug for Elements<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice().fmt(f)
    }
}

impl<T> From<Vec<T>> for Elements<'static, T> {
    fn from(v: Vec<T>) -> Self {
        Elements::Owned(v)
    }
}

impl<'a, T: Clone> From<std::borrow::Cow<'a, [T]>> for Elements<'a, T> {
    fn from(v: std::borrow::Cow<'a, [T]>) -> Self {
        match v {
            std::borrow::Cow::Borrowed(v) => Elements::Borrowed(v),
            std::borrow::Cow::Owned(v) => Elements::Owned(v),
        }
    }
}

impl<'a, T> From<&'a [T]> for Elements<'a, T> {
    fn from(v: &'a [T]) -> Self {
        Elements::Borrowed(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_holder_lends_the_same_elements() {
        let v = vec![1.5f32, -2.0, 3.25];
        let shared: SharedSlice<f32> = Arc::new(v.clone());
        let held = [
            Elements::from(v.as_slice()),
            Elements::from(v.clone()),
            Elements::shared(shared.clone()),
        ];
        for e in &held {
            assert_eq!(&**e, v.as_slice());
            assert_eq!(e, &held[0]);
            assert_eq!(e.clone().into_vec(), v);
        }
        assert_ne!(held[0], Elements::from(vec![1.5f32]));
    }

    #[test]
    fn shared_elements_are_neither_copied_nor_kept_past_their_last_holder() {
        let owner: SharedSlice<i32> = Arc::new(vec![7, 8, 9]);
        let e = Elements::shared(owner.clone());
        let copy = e.clone().into_static();
        assert_eq!(copy.as_ptr(), (*owner).as_ref().as_ptr());
        assert_eq!(Arc::strong_count(&owner), 3);
        drop((e, copy));
        assert_eq!(Arc::strong_count(&owner), 1);
        // Borrowed elements become owned ones: a copy.
        let v = [1, 2];
        let owned = Elements::from(&v[..]).into_static();
        assert!(matches!(owned, Elements::Owned(_)));
        assert_ne!(owned.as_ptr(), v.as_ptr());
    }
}

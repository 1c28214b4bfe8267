//! An emptied vector kept for its capacity between uses, whatever its element type: a cycle's command list names
//! app memory through raw pointers (not `Send`), yet the shard that keeps the list moves between threads. Only
//! empty vectors are ever stored, so no element crosses a thread.
#![allow(unsafe_code)]

/// The capacity of a `Vec<T>`, without elements.
#[derive(Debug)]
pub struct Spare<T>(Vec<T>);

// SAFETY: the vector is always empty (`put` clears it and nothing else stores one): sending it sends an
// allocation, no `T`.
unsafe impl<T> Send for Spare<T> {}

impl<T> Default for Spare<T> {
    fn default() -> Self {
        Spare(Vec::new())
    }
}

impl<T> Spare<T> {
    /// The kept vector (empty), leaving none behind.
    pub fn take(&mut self) -> Vec<T> {
        std::mem::take(&mut self.0)
    }

    /// Keeps `v`'s capacity; its elements are dropped now.
    pub fn put(&mut self, mut v: Vec<T>) {
        v.clear();
        self.0 = v;
    }
}

#[cfg(test)]
mod tests {
    use super::Spare;

    #[test]
    fn keeps_capacity_not_elements() {
        let mut s: Spare<*const u8> = Spare::default();
        let mut v = s.take();
        v.extend([std::ptr::null(); 40]);
        let cap = v.capacity();
        s.put(v);
        let v = s.take();
        assert!(v.is_empty());
        assert_eq!(v.capacity(), cap);
        assert!(s.take().capacity() == 0);
    }
}

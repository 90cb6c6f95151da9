//! The handles a scheme daemon has given out, by id: the one table every
//! daemon and driver of this project keeps its clients' handles in.
//!
//! Ids start after [`ROOT_ID`] and are never reused, so an id a client kept
//! after closing its handle names nothing (`EBADF`) rather than another
//! client's handle; a table whose ids ran out refuses new ones (`ENFILE`)
//! instead of wrapping onto live ones.

use std::collections::BTreeMap;

use syscall::error::{Error, Result, ENFILE};

/// The id of the scheme's root, which paths are opened against; no handle
/// has it.
pub const ROOT_ID: usize = 0;

/// Handles of type `T` by id.
#[derive(Debug)]
pub struct HandleTable<T> {
    handles: BTreeMap<usize, T>,
    last_id: usize,
}

impl<T> Default for HandleTable<T> {
    fn default() -> Self {
        Self {
            handles: BTreeMap::new(),
            last_id: ROOT_ID,
        }
    }
}

impl<T> HandleTable<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `handle` under a fresh id and returns the id.
    pub fn insert(&mut self, handle: T) -> Result<usize> {
        let id = self.last_id.checked_add(1).ok_or(Error::new(ENFILE))?;
        self.last_id = id;
        self.handles.insert(id, handle);
        Ok(id)
    }

    pub fn get(&self, id: usize) -> Option<&T> {
        self.handles.get(&id)
    }

    pub fn get_mut(&mut self, id: usize) -> Option<&mut T> {
        self.handles.get_mut(&id)
    }

    pub fn contains(&self, id: usize) -> bool {
        self.handles.contains_key(&id)
    }

    pub fn remove(&mut self, id: usize) -> Option<T> {
        self.handles.remove(&id)
    }

    /// Every handle with its id, by id.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.handles.iter().map(|(&id, handle)| (id, handle))
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.handles.values()
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.handles.values_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_start_after_the_root_and_a_closed_id_is_never_given_again() {
        let mut table = HandleTable::new();
        let first = table.insert("a").unwrap();
        assert_eq!(first, ROOT_ID + 1);
        assert_eq!(table.remove(first), Some("a"));
        let second = table.insert("b").unwrap();
        assert_ne!(second, first, "a stale id must not reach the new handle");
        assert_eq!(table.get(first), None);
        assert_eq!(table.get(second), Some(&"b"));
        assert!(table.contains(second) && !table.contains(ROOT_ID));
        *table.get_mut(second).unwrap() = "c";
        assert_eq!(table.iter().collect::<Vec<_>>(), [(second, &"c")]);
    }

    #[test]
    fn a_table_whose_ids_ran_out_refuses_rather_than_wraps() {
        let mut table = HandleTable {
            handles: BTreeMap::new(),
            last_id: usize::MAX - 1,
        };
        assert_eq!(table.insert(1), Ok(usize::MAX));
        assert_eq!(table.insert(2), Err(Error::new(ENFILE)));
        assert_eq!(
            table.values().copied().collect::<Vec<_>>(),
            [1],
            "nothing added"
        );
        for value in table.values_mut() {
            *value = 3;
        }
        assert_eq!(table.get(usize::MAX), Some(&3));
    }
}

//! The storage of the keys of one compact form ([`Tier`]): a vector sorted by key in which
//! removed keys stay as dead entries until they come back or grow too many, plus a hash map of
//! the keys added since the vector was last rebuilt. Each key maps to a [`Slot`], the row's
//! file-table slot and row position; the thresholds that trigger a merge of the map into the
//! vector or the dropping of dead entries are the constants of this module.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::mem::size_of;

/// A row's location inside the index: file-table slot and row position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    /// The slot of the row's data file in the index's file table.
    pub(super) file: u32,
    /// The row's 0-based position in that file.
    pub(super) position: u32,
}

impl Slot {
    /// Marks a removed key in a [`Tier`]'s sorted vector (no file has this slot).
    const DEAD: Slot = Slot { file: u32::MAX, position: 0 };

    fn is_live(self) -> bool {
        self.file != u32::MAX
    }
}

/// A key as stored in a [`Tier`].
pub(super) trait StoredKey: Ord + Hash + Default {
    /// Heap bytes the key owns.
    fn heap(&self) -> usize {
        0
    }
}

impl StoredKey for [u8; 12] {}
impl StoredKey for i64 {}
impl StoredKey for Box<str> {
    /// The allocation, as a typical allocator rounds it (16-byte steps, an 8-byte header, at
    /// least 32 bytes).
    fn heap(&self) -> usize {
        if self.is_empty() { 0 } else { ((self.len() + 8).div_ceil(16) * 16).max(32) }
    }
}

/// The keys of one stored form and their slots: a vector sorted by key (binary search; no
/// per-entry overhead beyond the entry itself), in which removed keys are marked dead and
/// revived in place when they come back (an upsert's remove + add), plus a hash map of keys
/// added since the vector was last rebuilt. The map is merged into the vector once it holds
/// more than 1/16 of it, and dead entries are dropped once they are more than 1/8 of it, so
/// an ObjectId key costs 20 bytes plus at most about 5 bytes of overhead.
#[derive(Debug)]
pub(super) struct Tier<K> {
    sorted: Vec<(K, Slot)>,
    /// Entries of `sorted` marked dead.
    dead: usize,
    recent: HashMap<K, Slot>,
    /// Heap bytes owned by the keys stored (in `sorted`, dead or alive, and in `recent`).
    key_heap: usize,
}

impl<K> Default for Tier<K> {
    fn default() -> Self {
        Self { sorted: Vec::new(), dead: 0, recent: HashMap::new(), key_heap: 0 }
    }
}

/// `recent` is merged into `sorted` once it holds more than this many keys, or more than
/// 1/[`MERGE_FRACTION`] of `sorted`.
const MIN_RECENT: usize = 16 * 1024;
const MERGE_FRACTION: usize = 16;
/// Dead entries are dropped once there are more than this many, and more than
/// 1/[`DEAD_FRACTION`] of `sorted`.
const MIN_DEAD: usize = 4 * 1024;
const DEAD_FRACTION: usize = 8;

impl<K: StoredKey> Tier<K> {
    /// The number of live keys.
    pub(super) fn len(&self) -> usize {
        self.sorted.len() - self.dead + self.recent.len()
    }

    fn find<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.sorted.binary_search_by(|(k, _)| k.borrow().cmp(key)).ok()
    }

    /// The slot of `key`, if it is live.
    pub(super) fn get<Q>(&self, key: &Q) -> Option<Slot>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized,
    {
        if let Some(slot) = self.recent.get(key) {
            return Some(*slot);
        }
        let slot = self.sorted[self.find(key)?].1;
        slot.is_live().then_some(slot)
    }

    /// Sets the slot of `key` (made by `owned` if it must be stored anew); returns the slot it
    /// replaces, if the key was live.
    pub(super) fn insert<Q>(
        &mut self,
        key: &Q,
        owned: impl FnOnce() -> K,
        slot: Slot,
    ) -> Option<Slot>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized,
    {
        if let Some(i) = self.find(key) {
            let old = std::mem::replace(&mut self.sorted[i].1, slot);
            if old.is_live() {
                return Some(old);
            }
            self.dead -= 1;
            return None;
        }
        if let Some(current) = self.recent.get_mut(key) {
            return Some(std::mem::replace(current, slot));
        }
        let key = owned();
        self.key_heap += key.heap();
        self.recent.insert(key, slot);
        if self.recent.len() > MIN_RECENT.max(self.sorted.len() / MERGE_FRACTION) {
            self.merge();
        }
        None
    }

    /// Removes `key` and returns its slot, if it was live.
    pub(super) fn remove<Q>(&mut self, key: &Q) -> Option<Slot>
    where
        K: Borrow<Q>,
        Q: Ord + Hash + Eq + ?Sized,
    {
        if let Some((key, slot)) = self.recent.remove_entry(key) {
            self.key_heap -= key.heap();
            return Some(slot);
        }
        let i = self.find(key)?;
        let slot = std::mem::replace(&mut self.sorted[i].1, Slot::DEAD);
        if !slot.is_live() {
            return None;
        }
        self.dead += 1;
        if self.dead > MIN_DEAD.max(self.sorted.len() / DEAD_FRACTION) {
            self.drop_dead();
        }
        Some(slot)
    }

    /// Removes every live key whose slot `doomed` picks; returns their slots.
    pub(super) fn remove_where(&mut self, mut doomed: impl FnMut(Slot) -> bool) -> Vec<Slot> {
        let mut removed = Vec::new();
        for (_, slot) in &mut self.sorted {
            if slot.is_live() && doomed(*slot) {
                removed.push(std::mem::replace(slot, Slot::DEAD));
                self.dead += 1;
            }
        }
        let mut freed = 0;
        self.recent.retain(|key, slot| {
            let keep = !doomed(*slot);
            if !keep {
                removed.push(*slot);
                freed += key.heap();
            }
            keep
        });
        self.key_heap -= freed;
        if self.dead > MIN_DEAD.max(self.sorted.len() / DEAD_FRACTION) {
            self.drop_dead();
        }
        removed
    }

    /// Room for `additional` more keys appended by [`Self::push`].
    pub(super) fn reserve(&mut self, additional: usize) {
        self.sorted.reserve_exact(additional);
    }

    /// Appends `key` unsorted (a bulk load; see [`Self::finish_bulk`]).
    pub(super) fn push(&mut self, key: K, slot: Slot) -> Option<Slot> {
        self.key_heap += key.heap();
        self.sorted.push((key, slot));
        None
    }

    /// Sorts the keys appended by [`Self::push`]; of equal keys the last appended stays, and
    /// `dropped` is called for each of the others.
    pub(super) fn finish_bulk(&mut self, mut dropped: impl FnMut(&K, Slot)) {
        debug_assert!(self.recent.is_empty() && self.dead == 0);
        // Stable, so equal keys stay in the order appended.
        self.sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let len = self.sorted.len();
        let mut kept = 0;
        for i in 0..len {
            if i + 1 < len && self.sorted[i].0 == self.sorted[i + 1].0 {
                let (key, slot) = &self.sorted[i];
                dropped(key, *slot);
                self.key_heap -= key.heap();
                continue;
            }
            self.sorted.swap(kept, i);
            kept += 1;
        }
        self.sorted.truncate(kept);
        self.shrink();
    }

    /// Moves the keys of `recent` into `sorted`, merging from the back in place.
    fn merge(&mut self) {
        let mut fresh: Vec<(K, Slot)> = self.recent.drain().collect();
        fresh.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let old_len = self.sorted.len();
        self.sorted.reserve_exact(fresh.len());
        self.sorted.resize_with(old_len + fresh.len(), || (K::default(), Slot::DEAD));
        // Both runs are sorted and share no key: fill from the back with the larger head.
        let mut write = self.sorted.len();
        let mut old = old_len;
        while let Some(last) = fresh.last() {
            write -= 1;
            if old > 0 && self.sorted[old - 1].0 > last.0 {
                old -= 1;
                self.sorted.swap(old, write);
            } else if let Some(entry) = fresh.pop() {
                self.sorted[write] = entry;
            }
        }
    }

    /// Removes the dead entries from `sorted`.
    fn drop_dead(&mut self) {
        let mut freed = 0;
        self.sorted.retain(|(key, slot)| {
            let live = slot.is_live();
            if !live {
                freed += key.heap();
            }
            live
        });
        self.key_heap -= freed;
        self.dead = 0;
        self.shrink();
    }

    /// Gives back spare capacity of `sorted` beyond 1/8.
    fn shrink(&mut self) {
        if self.sorted.capacity() > self.sorted.len() + self.sorted.len() / 8 + 1024 {
            self.sorted.shrink_to_fit();
        }
    }

    /// Approximate heap bytes: the vector by capacity, the hash map, the keys' allocations.
    pub(super) fn heap_bytes(&self) -> usize {
        self.sorted.capacity() * size_of::<(K, Slot)>()
            + table_heap_bytes(&self.recent)
            + self.key_heap
    }
}

/// Approximate heap bytes of a std `HashMap`'s table: buckets (derived from the capacity as
/// hashbrown sizes them) times entry size plus one control byte each.
pub(super) fn table_heap_bytes<K, V>(map: &HashMap<K, V>) -> usize {
    let capacity = map.capacity();
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 { capacity + 1 } else { capacity / 7 * 8 };
    buckets * (size_of::<(K, V)>() + 1) + 16
}

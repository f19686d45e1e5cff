//! The flow table's index: a flow key to the slot of its flow.

use std::hash::BuildHasher;

use crate::flow::{Flow, FlowKey};

/// Maps a key to its flow's slot. An entry is the slot and the key's hash (8 bytes), not the key
/// (48 bytes with the slot): the key is in the flow. The index is a sixth of the memory to fault
/// in and copy as it grows, and the stored hash spares growing from reading every flow again.
#[derive(Debug, Default)]
pub(super) struct FlowIndex {
    entries: hashbrown::HashTable<IndexEntry>,
}

#[derive(Debug, Clone, Copy)]
struct IndexEntry {
    slot: u32,
    hash: u32,
}

impl FlowIndex {
    /// 32 bits of the key's hash, so that an entry stays 8 bytes.
    pub(super) fn hash_of(key: &FlowKey) -> u32 {
        let full = rustc_hash::FxBuildHasher.hash_one(key);
        (full ^ (full >> 32)) as u32
    }

    /// The table's own hash of an entry: its top 7 bits pick the tag and its low bits the
    /// bucket, so both halves carry the 32 bits.
    fn spread(hash: u32) -> u64 {
        u64::from(hash) << 32 | u64::from(hash)
    }

    pub(super) fn get(&self, flows: &[Flow], key: &FlowKey) -> Option<usize> {
        self.get_hashed(flows, key, Self::hash_of(key))
    }

    /// [`get`](Self::get) with the key's [`hash_of`](Self::hash_of) already made.
    pub(super) fn get_hashed(&self, flows: &[Flow], key: &FlowKey, hash: u32) -> Option<usize> {
        self.entries
            .find(Self::spread(hash), |e| e.hash == hash && flows[e.slot as usize].key == *key)
            .map(|e| e.slot as usize)
    }

    /// Indexes a key not yet in the index, by its [`hash_of`](Self::hash_of).
    pub(super) fn insert(&mut self, hash: u32, slot: u32) {
        self.entries
            .insert_unique(Self::spread(hash), IndexEntry { slot, hash }, |e| Self::spread(e.hash));
    }

    pub(super) fn remove(&mut self, flows: &[Flow], key: &FlowKey) -> Option<usize> {
        let hash = Self::hash_of(key);
        let entry = self
            .entries
            .find_entry(Self::spread(hash), |e| {
                e.hash == hash && flows[e.slot as usize].key == *key
            })
            .ok()?;
        Some(entry.remove().0.slot as usize)
    }

    /// The flow with `key` moved from slot `from` to `to`.
    pub(super) fn relocate(&mut self, key: &FlowKey, from: usize, to: u32) {
        let hash = Self::hash_of(key);
        let entry = self.entries.find_mut(Self::spread(hash), |e| e.slot as usize == from);
        debug_assert!(entry.is_some(), "a moved flow is indexed at its old slot");
        if let Some(entry) = entry {
            entry.slot = to;
        }
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }
}

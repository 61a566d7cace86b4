//! A bounded least-recently-used cache of response bodies (rendered PNGs, typed arrays).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Cached bytes with their content type.
#[derive(Debug, Clone)]
pub struct Entry {
    pub content_type: &'static str,
    pub bytes: Arc<Vec<u8>>,
}

struct Inner {
    map: HashMap<String, (Entry, u64)>,
    order: BTreeMap<u64, String>,
    tick: u64,
    used: usize,
}

/// An LRU cache bounded by the total size of its entries; safe to share between threads.
pub struct ByteCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

impl ByteCache {
    /// A cache holding at most `capacity` bytes (entries larger than a quarter of it are not kept).
    pub fn new(capacity: usize) -> Self {
        ByteCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
                used: 0,
            }),
            capacity,
        }
    }

    /// The entry under `key`, marking it as recently used.
    pub fn get(&self, key: &str) -> Option<Entry> {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        inner.tick += 1;
        let tick = inner.tick;
        let (entry, last) = inner.map.get_mut(key)?;
        inner.order.remove(last);
        *last = tick;
        inner.order.insert(tick, key.to_string());
        Some(entry.clone())
    }

    /// Stores an entry, evicting the least recently used ones beyond the capacity.
    pub fn insert(&self, key: String, entry: Entry) {
        let size = entry.bytes.len() + key.len();
        if size > self.capacity / 4 {
            return;
        }
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let inner = &mut *guard;
        inner.tick += 1;
        let tick = inner.tick;
        if let Some((old, last)) = inner.map.remove(&key) {
            inner.order.remove(&last);
            inner.used -= old.bytes.len() + key.len();
        }
        inner.used += size;
        inner.order.insert(tick, key.clone());
        inner.map.insert(key, (entry, tick));
        while inner.used > self.capacity {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = inner.map.remove(&oldest) {
                inner.used -= old.bytes.len() + oldest.len();
            }
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            content_type: "x",
            bytes: Arc::new(vec![0; n]),
        }
    }

    #[test]
    fn least_recently_used_entries_are_evicted_first() {
        let c = ByteCache::new(400);
        c.insert("a".into(), entry(99));
        c.insert("b".into(), entry(99));
        c.insert("c".into(), entry(99));
        assert!(c.get("a").is_some()); // a is now newer than b
        c.insert("d".into(), entry(99));
        c.insert("e".into(), entry(99));
        assert!(c.get("b").is_none());
        assert!(c.get("a").is_some());
        assert!(c.used() <= 400);
        c.insert("huge".into(), entry(300));
        assert!(c.get("huge").is_none());
    }
}

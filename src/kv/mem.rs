//! `mem`: an in-process multi-version store for tests. Same transaction
//! machinery as the embedded engine ([`LocalEngine`]), nothing on disk.
//! Engines opened by the same `mem://NAME` in one process share the data, so
//! tests can run several clients against one volume.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, Weak};

use super::local::{LocalEngine, LocalSnapshot, LocalStore};
use super::{Key, KeyRange, KvResult, Value};

pub type MemEngine = LocalEngine<SharedMemStore>;

/// Every committed version of every key, newest last; old versions are
/// dropped once no snapshot can see them.
type Versions = BTreeMap<Key, Vec<(u64, Option<Value>)>>;

/// Full sweeps of dead versions happen every this many commits.
const SWEEP_EVERY_COMMITS: u64 = 1024;

#[derive(Clone, Default)]
pub struct SharedMemStore {
    data: Arc<RwLock<Versions>>,
}

impl SharedMemStore {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Versions> {
        self.data.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Opens the `mem` engine named `name`, sharing data with every other open
/// engine of that name in this process. An empty name is always private.
pub fn open_mem(name: &str) -> Arc<MemEngine> {
    static REGISTRY: Mutex<Option<HashMap<String, Weak<MemEngine>>>> = Mutex::new(None);
    if name.is_empty() {
        return Arc::new(LocalEngine::new("mem", SharedMemStore::default()));
    }
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let map = registry.get_or_insert_with(HashMap::new);
    if let Some(engine) = map.get(name).and_then(Weak::upgrade) {
        return engine;
    }
    let engine = Arc::new(LocalEngine::new("mem", SharedMemStore::default()));
    map.insert(name.to_string(), Arc::downgrade(&engine));
    engine
}

fn visible(versions: &[(u64, Option<Value>)], at: u64) -> Option<&Value> {
    versions
        .iter()
        .rev()
        .find(|(v, _)| *v <= at)
        .and_then(|(_, value)| value.as_ref())
}

/// Keeps what a reader at `oldest_reader` (or later) can still see.
fn trim(versions: &mut Vec<(u64, Option<Value>)>, oldest_reader: Option<u64>) {
    let horizon = oldest_reader.unwrap_or(u64::MAX);
    // Index of the newest version visible at the horizon: everything before
    // it is invisible to every reader.
    if let Some(keep_from) = versions.iter().rposition(|(v, _)| *v <= horizon) {
        versions.drain(..keep_from);
    }
}

impl LocalStore for SharedMemStore {
    type Snapshot = MemSnapshot;

    fn snapshot(&self, version: u64) -> KvResult<MemSnapshot> {
        Ok(MemSnapshot {
            store: self.clone(),
            version,
        })
    }

    fn get_latest(&self, key: &[u8]) -> KvResult<Option<Value>> {
        Ok(self
            .read()
            .get(key)
            .and_then(|versions| versions.last())
            .and_then(|(_, v)| v.clone()))
    }

    fn apply(
        &self,
        version: u64,
        oldest_reader: Option<u64>,
        writes: &[(Key, Option<Value>)],
    ) -> KvResult<()> {
        let mut data = self.data.write().unwrap_or_else(|p| p.into_inner());
        for (key, value) in writes {
            let versions = data.entry(key.clone()).or_default();
            versions.push((version, value.clone()));
            trim(versions, oldest_reader);
            if matches!(versions.as_slice(), [(_, None)]) {
                data.remove(key);
            }
        }
        if version.is_multiple_of(SWEEP_EVERY_COMMITS) {
            data.retain(|_, versions| {
                trim(versions, oldest_reader);
                !matches!(versions.as_slice(), [(_, None)])
            });
        }
        Ok(())
    }

    fn sync(&self) -> KvResult<()> {
        Ok(())
    }
}

pub struct MemSnapshot {
    store: SharedMemStore,
    version: u64,
}

impl LocalSnapshot for MemSnapshot {
    fn get(&self, key: &[u8]) -> KvResult<Option<Value>> {
        Ok(self
            .store
            .read()
            .get(key)
            .and_then(|versions| visible(versions, self.version))
            .cloned())
    }

    fn scan(&self, range: &KeyRange, limit: usize, reverse: bool) -> KvResult<Vec<(Key, Value)>> {
        let data = self.store.read();
        let iter = data.range::<[u8], _>(range.bounds());
        let visible_entries = |(k, versions): (&Key, &Vec<(u64, Option<Value>)>)| {
            visible(versions, self.version).map(|v| (k.clone(), v.clone()))
        };
        Ok(if reverse {
            iter.rev().filter_map(visible_entries).take(limit).collect()
        } else {
            iter.filter_map(visible_entries).take(limit).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trim_keeps_the_version_the_oldest_reader_sees() {
        let mut v = vec![
            (1, Some(b"a".to_vec())),
            (3, Some(b"b".to_vec())),
            (5, None),
        ];
        trim(&mut v, Some(4));
        assert_eq!(v, vec![(3, Some(b"b".to_vec())), (5, None)]);
        trim(&mut v, None);
        assert_eq!(v, vec![(5, None)]);
    }
}

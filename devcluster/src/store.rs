//! The object store: current state, resourceVersions, the watch history, and persistence.
//!
//! ```text
//!  write (put/delete, optimistic on resourceVersion)
//!     │  one global counter: every write gets the next resourceVersion
//!     ├──▶ objects[resource][(namespace, name)] = StoredObject (serialized JSON)
//!     ├──▶ history (ring of recent events) ──▶ watchers read from their cursor
//!     └──▶ write-ahead log in the state directory (when persistent)
//! ```
//!
//! Objects are kept as serialized JSON: a list is a concatenation of stored bytes, and memory
//! stays close to the size of the data. Watchers are woken through a `tokio::sync::watch`
//! channel carrying the newest resourceVersion and then read the history themselves, so a slow
//! watcher never blocks writers; one that falls behind the history gets `410 Gone`, as with a
//! real API server's watch cache. With a state directory, a snapshot plus a write-ahead log
//! make the state (and the resourceVersion counter) survive a restart.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::resources::ResourceKey;

/// One stored object version.
#[derive(Debug)]
pub struct StoredObject {
    /// Its resourceVersion.
    pub rv: u64,
    /// The object, serialized (including `metadata.resourceVersion`).
    pub json: Bytes,
    /// uids in its ownerReferences (the garbage collector's index).
    pub owners: Vec<String>,
    /// Its `metadata.labels`, read from the text when a label selector first asks.
    labels: OnceLock<BTreeMap<String, String>>,
}

impl StoredObject {
    fn new(rv: u64, json: Bytes) -> Self {
        let owners =
            if memfind(&json, b"\"ownerReferences\"") { owners_of(&json) } else { Vec::new() };
        StoredObject { rv, json, owners, labels: OnceLock::new() }
    }

    /// Its labels (as [`crate::selectors::labels_of`] reads them), parsed once: every watch
    /// with a label selector tests every change of its resource.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        self.labels.get_or_init(|| labels_in(&self.json))
    }

    /// Parses the stored JSON.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// Whether `metadata.deletionTimestamp` is set. Every write is checked and few objects
    /// are being deleted, so the text is searched first and parsed only when it has the name.
    pub fn is_deleting(&self) -> bool {
        memfind(&self.json, b"\"deletionTimestamp\"")
            && self.value().pointer("/metadata/deletionTimestamp").is_some()
    }
}

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// The watch event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history.
#[derive(Debug)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Which resource.
    pub key: ResourceKey,
    /// Namespace ("" for cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for Deleted: the last state, with the deletion's rv).
    pub object: Arc<StoredObject>,
    /// The object before the change, if any.
    pub previous: Option<Arc<StoredObject>>,
}

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Create of an existing object.
    #[error("already exists")]
    AlreadyExists,
    /// The object is missing.
    #[error("not found")]
    NotFound,
    /// The object changed since it was read.
    #[error("resourceVersion mismatch")]
    Conflict,
    /// The state directory could not be read or written.
    #[error("state directory {path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A state file is corrupt.
    #[error("state file {path} is corrupt: {source}")]
    Corrupt {
        /// File involved.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
}

/// What a write expects to find.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// The object must not exist.
    Absent,
    /// The object must exist at this resourceVersion.
    Version(u64),
    /// The object must exist.
    Present,
}

type ObjectMap = BTreeMap<(String, String), Arc<StoredObject>>;
type Entry<'a> = (&'a (String, String), &'a Arc<StoredObject>);

struct State {
    rv: u64,
    objects: HashMap<ResourceKey, ObjectMap>,
    history: VecDeque<Arc<Event>>,
    /// Every event with rv greater than this is in `history`.
    history_floor: u64,
    wal: Option<BufWriter<File>>,
    /// owner uid → dependents.
    dependents: HashMap<String, HashSet<(ResourceKey, String, String)>>,
}

impl State {
    fn index(
        &mut self,
        key: &ResourceKey,
        ns: &str,
        name: &str,
        old: Option<&StoredObject>,
        new: Option<&StoredObject>,
    ) {
        let id = (key.clone(), ns.to_string(), name.to_string());
        for uid in old.map(|o| o.owners.as_slice()).unwrap_or_default() {
            if let Some(set) = self.dependents.get_mut(uid) {
                set.remove(&id);
                if set.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
        for uid in new.map(|o| o.owners.as_slice()).unwrap_or_default() {
            self.dependents.entry(uid.clone()).or_default().insert(id.clone());
        }
    }
}

/// The store.
pub struct Store {
    state: Mutex<State>,
    notify: tokio::sync::watch::Sender<u64>,
    history_limit: usize,
    dir: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    rv: u64,
    objects: Vec<SnapshotEntry>,
}

#[derive(Serialize, Deserialize)]
struct SnapshotEntry {
    group: String,
    resource: String,
    namespace: String,
    name: String,
    object: Box<serde_json::value::RawValue>,
}

#[derive(Serialize, Deserialize)]
struct WalRecord {
    rv: u64,
    group: String,
    resource: String,
    namespace: String,
    name: String,
    /// `None` for a deletion.
    object: Option<Box<serde_json::value::RawValue>>,
}

const SNAPSHOT: &str = "objects.json";
const WAL: &str = "objects.wal";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

impl Store {
    /// An empty in-memory store.
    pub fn in_memory(history_limit: usize) -> Self {
        Self::build(0, HashMap::new(), None, None, history_limit)
    }

    fn build(
        rv: u64,
        objects: HashMap<ResourceKey, ObjectMap>,
        wal: Option<BufWriter<File>>,
        dir: Option<PathBuf>,
        history_limit: usize,
    ) -> Self {
        let (notify, _) = tokio::sync::watch::channel(rv);
        Store {
            state: Mutex::new({
                let mut state = State {
                    rv,
                    objects,
                    history: VecDeque::new(),
                    history_floor: rv,
                    wal,
                    dependents: HashMap::new(),
                };
                let all: Vec<_> = state
                    .objects
                    .iter()
                    .flat_map(|(k, m)| {
                        m.iter().map(move |((n, name), o)| {
                            (k.clone(), n.clone(), name.clone(), o.clone())
                        })
                    })
                    .collect();
                for (k, n, name, o) in all {
                    state.index(&k, &n, &name, None, Some(&o));
                }
                state
            }),
            notify,
            history_limit,
            dir,
        }
    }

    /// Opens (or creates) a persistent store in `dir`: loads the snapshot, replays the log,
    /// compacts both into a new snapshot and starts a new log.
    pub fn open(dir: &Path, history_limit: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let snap_path = dir.join(SNAPSHOT);
        let wal_path = dir.join(WAL);
        let mut rv = 0;
        let mut objects: HashMap<ResourceKey, ObjectMap> = HashMap::new();
        if snap_path.exists() {
            let f = File::open(&snap_path).map_err(io_err(&snap_path))?;
            let snap: Snapshot = serde_json::from_reader(BufReader::new(f))
                .map_err(|source| StoreError::Corrupt { path: snap_path.clone(), source })?;
            rv = snap.rv;
            for e in snap.objects {
                let json = Bytes::from(e.object.get().to_string());
                let obj_rv = rv_of(&json).unwrap_or(rv);
                objects
                    .entry(ResourceKey::new(&e.group, &e.resource))
                    .or_default()
                    .insert((e.namespace, e.name), Arc::new(StoredObject::new(obj_rv, json)));
            }
        }
        if wal_path.exists() {
            let f = File::open(&wal_path).map_err(io_err(&wal_path))?;
            for line in BufReader::new(f).lines() {
                let line = line.map_err(io_err(&wal_path))?;
                // A torn last line (crash mid-write) ends the replay.
                let Ok(rec) = serde_json::from_str::<WalRecord>(&line) else { break };
                rv = rv.max(rec.rv);
                let map = objects.entry(ResourceKey::new(&rec.group, &rec.resource)).or_default();
                match rec.object {
                    Some(o) => {
                        let json = Bytes::from(o.get().to_string());
                        map.insert(
                            (rec.namespace, rec.name),
                            Arc::new(StoredObject::new(rec.rv, json)),
                        );
                    }
                    None => {
                        map.remove(&(rec.namespace, rec.name));
                    }
                }
            }
        }
        let store = Self::build(rv, objects, None, Some(dir.to_path_buf()), history_limit);
        store.compact()?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a snapshot of the current state and truncates the log.
    pub fn compact(&self) -> Result<(), StoreError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let mut state = self.lock();
        let snap_path = dir.join(SNAPSHOT);
        let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
        {
            let f = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut w = BufWriter::new(f);
            write!(w, "{{\"rv\":{},\"objects\":[", state.rv).map_err(io_err(&tmp))?;
            let mut first = true;
            for (key, map) in &state.objects {
                for ((ns, name), obj) in map {
                    if !first {
                        w.write_all(b",").map_err(io_err(&tmp))?;
                    }
                    first = false;
                    let head = serde_json::json!({"group": key.group, "resource": key.resource, "namespace": ns, "name": name});
                    let head = head.to_string();
                    w.write_all(&head.as_bytes()[..head.len() - 1]).map_err(io_err(&tmp))?;
                    w.write_all(b",\"object\":").map_err(io_err(&tmp))?;
                    w.write_all(&obj.json).map_err(io_err(&tmp))?;
                    w.write_all(b"}").map_err(io_err(&tmp))?;
                }
            }
            w.write_all(b"]}").map_err(io_err(&tmp))?;
            w.flush().map_err(io_err(&tmp))?;
            w.get_ref().sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &snap_path).map_err(io_err(&snap_path))?;
        let wal_path = dir.join(WAL);
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&wal_path)
            .map_err(io_err(&wal_path))?;
        state.wal = Some(BufWriter::new(f));
        Ok(())
    }

    /// Flushes the log (on shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let (Some(w), Some(dir)) = (state.wal.as_mut(), &self.dir) {
            let p = dir.join(WAL);
            w.flush().map_err(io_err(&p))?;
            w.get_ref().sync_all().map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// The newest resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// The oldest resourceVersion a watch may start from.
    pub fn history_floor(&self) -> u64 {
        self.lock().history_floor
    }

    /// Subscribes to "something changed" notifications (carrying the newest resourceVersion).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Gets one object.
    pub fn get(&self, key: &ResourceKey, ns: &str, name: &str) -> Option<Arc<StoredObject>> {
        self.lock().objects.get(key)?.get(&(ns.to_string(), name.to_string())).cloned()
    }

    /// Lists objects of a resource (in one namespace, or all), ordered by namespace and name,
    /// starting after `after`, with the resourceVersion the list is consistent with.
    pub fn list(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        after: Option<&(String, String)>,
    ) -> (u64, Vec<(String, String, Arc<StoredObject>)>) {
        let state = self.lock();
        let Some(map) = state.objects.get(key) else { return (state.rv, Vec::new()) };
        let range: Box<dyn Iterator<Item = Entry<'_>>> = match (ns, after) {
            (_, Some(a)) => Box::new(map.range::<(String, String), _>((
                std::ops::Bound::Excluded(a.clone()),
                std::ops::Bound::Unbounded,
            ))),
            (Some(n), None) => Box::new(map.range((n.to_string(), String::new())..)),
            (None, None) => Box::new(map.iter()),
        };
        let items = range
            .take_while(|((n, _), _)| ns.is_none_or(|want| want == n))
            .map(|((n, name), o)| (n.clone(), name.clone(), o.clone()))
            .collect();
        (state.rv, items)
    }

    /// Every resource key that has objects.
    pub fn keys(&self) -> Vec<ResourceKey> {
        self.lock().objects.iter().filter(|(_, m)| !m.is_empty()).map(|(k, _)| k.clone()).collect()
    }

    /// Creates or replaces an object; `object` gets the new resourceVersion in
    /// `metadata.resourceVersion` (also in the caller's copy).
    pub fn put(
        &self,
        key: &ResourceKey,
        ns: &str,
        name: &str,
        object: &mut Value,
        expect: Expect,
    ) -> Result<Arc<StoredObject>, StoreError> {
        let mut state = self.lock();
        let previous = state
            .objects
            .get(key)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned();
        check(&previous, expect)?;
        let rv = state.rv + 1;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let json = Bytes::from(serde_json::to_vec(&*object).unwrap_or_default());
        let stored = Arc::new(StoredObject::new(rv, json));
        state.rv = rv;
        state
            .objects
            .entry(key.clone())
            .or_default()
            .insert((ns.to_string(), name.to_string()), stored.clone());
        state.index(key, ns, name, previous.as_deref(), Some(&stored));
        let kind = if previous.is_some() { EventType::Modified } else { EventType::Added };
        self.record(&mut state, key, ns, name, kind, stored.clone(), previous, true);
        Ok(stored)
    }

    /// Removes an object; the Deleted event carries its last state with a new resourceVersion.
    pub fn delete(
        &self,
        key: &ResourceKey,
        ns: &str,
        name: &str,
        expect: Expect,
    ) -> Result<Arc<StoredObject>, StoreError> {
        let mut state = self.lock();
        let previous = state
            .objects
            .get(key)
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned();
        check(&previous, expect)?;
        let previous = previous.ok_or(StoreError::NotFound)?;
        let rv = state.rv + 1;
        state.rv = rv;
        if let Some(m) = state.objects.get_mut(key) {
            m.remove(&(ns.to_string(), name.to_string()));
        }
        state.index(key, ns, name, Some(&previous), None);
        let mut last = previous.value();
        if let Some(meta) = last.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
        }
        let json = Bytes::from(serde_json::to_vec(&last).unwrap_or_default());
        let stored = Arc::new(StoredObject::new(rv, json));
        self.record(
            &mut state,
            key,
            ns,
            name,
            EventType::Deleted,
            stored.clone(),
            Some(previous),
            false,
        );
        Ok(stored)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        state: &mut State,
        key: &ResourceKey,
        ns: &str,
        name: &str,
        kind: EventType,
        object: Arc<StoredObject>,
        previous: Option<Arc<StoredObject>>,
        present: bool,
    ) {
        let rv = object.rv;
        if let Some(w) = state.wal.as_mut() {
            let rec = serde_json::json!({
                "rv": rv, "group": key.group, "resource": key.resource, "namespace": ns, "name": name,
            });
            let rec = rec.to_string();
            let mut line = Vec::with_capacity(rec.len() + object.json.len() + 16);
            line.extend_from_slice(&rec.as_bytes()[..rec.len() - 1]);
            if present {
                line.extend_from_slice(b",\"object\":");
                line.extend_from_slice(&object.json);
            }
            line.extend_from_slice(b"}\n");
            if let Err(e) = w.write_all(&line).and_then(|_| w.flush()) {
                tracing::error!(error = %e, "writing the state log failed");
            }
        }
        state.history.push_back(Arc::new(Event {
            rv,
            key: key.clone(),
            namespace: ns.to_string(),
            name: name.to_string(),
            kind,
            object,
            previous,
        }));
        while state.history.len() > self.history_limit {
            if let Some(old) = state.history.pop_front() {
                state.history_floor = old.rv;
            }
        }
        self.notify.send_replace(rv);
    }

    /// Events after `since` (for any resource), or `Err(floor)` when `since` is older than
    /// the history keeps.
    pub fn events_since(&self, since: u64) -> Result<Vec<Arc<Event>>, u64> {
        let state = self.lock();
        if since < state.history_floor {
            return Err(state.history_floor);
        }
        let start = state.history.partition_point(|e| e.rv <= since);
        Ok(state.history.iter().skip(start).cloned().collect())
    }

    /// Names of the objects of every resource whose owner references name `uid`.
    pub fn dependents_of(&self, uid: &str) -> Vec<(ResourceKey, String, String)> {
        let state = self.lock();
        let mut out: Vec<_> =
            state.dependents.get(uid).map(|s| s.iter().cloned().collect()).unwrap_or_default();
        out.sort();
        out
    }
}

fn memfind(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The distinct owner uids of a stored object, read without parsing the rest of it.
fn owners_of(json: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Owner {
        uid: Option<String>,
    }
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "ownerReferences")]
        owner_references: Option<Vec<Owner>>,
    }
    #[derive(Deserialize)]
    struct Obj {
        metadata: Option<Meta>,
    }
    let refs = serde_json::from_slice::<Obj>(json).ok().and_then(|o| o.metadata?.owner_references);
    let mut uids: Vec<String> = refs.into_iter().flatten().filter_map(|r| r.uid).collect();
    uids.sort_unstable();
    uids.dedup();
    uids
}

/// `metadata.labels` of a stored object, read without building the rest of it.
fn labels_in(json: &[u8]) -> BTreeMap<String, String> {
    #[derive(Deserialize)]
    struct Meta {
        labels: Option<BTreeMap<String, Value>>,
    }
    #[derive(Deserialize)]
    struct Obj {
        metadata: Option<Meta>,
    }
    let labels = serde_json::from_slice::<Obj>(json).ok().and_then(|o| o.metadata?.labels);
    labels.into_iter().flatten().map(|(k, v)| (k, v.as_str().unwrap_or("").to_string())).collect()
}

fn rv_of(json: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
    }
    #[derive(Deserialize)]
    struct Obj {
        metadata: Option<Meta>,
    }
    serde_json::from_slice::<Obj>(json).ok()?.metadata?.resource_version?.parse().ok()
}

fn check(previous: &Option<Arc<StoredObject>>, expect: Expect) -> Result<(), StoreError> {
    match (previous, expect) {
        (Some(_), Expect::Absent) => Err(StoreError::AlreadyExists),
        (None, Expect::Version(_) | Expect::Present) => Err(StoreError::NotFound),
        (Some(p), Expect::Version(v)) if p.rv != v => Err(StoreError::Conflict),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_the_stored_text_once_each() {
        let json = br#"{"metadata": {"name": "c", "ownerReferences": [
            {"uid": "b", "kind": "Integration"}, {"uid": "a"}, {"uid": "b"}, {"kind": "NoUid"}]},
            "data": {"ownerReferences": "not these"}}"#;
        assert_eq!(StoredObject::new(1, Bytes::from_static(json)).owners, ["a", "b"]);
        let none = br#"{"metadata": {"name": "c", "ownerReferences": null}}"#;
        assert!(StoredObject::new(1, Bytes::from_static(none)).owners.is_empty());
    }

    #[test]
    fn labels_are_read_as_a_full_parse_reads_them() {
        for json in [
            &br#"{"metadata": {"name": "c", "labels": {"app": "web", "n": 1}}, "spec": {"labels": {"x": "y"}}}"#[..],
            br#"{"metadata": {"name": "c", "labels": null}}"#,
            br#"{"metadata": {"name": "c"}}"#,
            br#"{"kind": "X"}"#,
        ] {
            let stored = StoredObject::new(1, Bytes::copy_from_slice(json));
            assert_eq!(stored.labels(), &crate::selectors::labels_of(&stored.value()));
        }
    }

    #[test]
    fn deletion_is_read_from_the_metadata_only() {
        let deleting =
            br#"{"metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"}}"#;
        assert!(StoredObject::new(1, Bytes::from_static(deleting)).is_deleting());
        let mentioned = br#"{"metadata": {"name": "c"}, "data": {"deletionTimestamp": "x"}}"#;
        assert!(!StoredObject::new(1, Bytes::from_static(mentioned)).is_deleting());
        let live = br#"{"metadata": {"name": "c"}}"#;
        assert!(!StoredObject::new(1, Bytes::from_static(live)).is_deleting());
    }
}

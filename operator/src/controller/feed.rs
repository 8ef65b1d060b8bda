//! One watch per kind the controllers read, shared by every controller that cares about it.
//!
//! ```text
//!   watch(K) ─▶ cache of K ─▶ route: reference index ─▶ route: K's controller ─▶ route: a user of K …
//!                                 (references)          (uid, generation,        (what that user reads:
//!                                                        labels, deletion)        spec, hash, readiness)
//! ```
//!
//! A route sees an object again only when what it reads of the object changed (its "interest",
//! a hash), and always when the object is deleted. Status writes that no route reads — the
//! operator's own after each reconcile and runtime pass, a Credential's growing `consumers` —
//! therefore trigger nothing. Without this, each status write of a Credential used by 10,000
//! Integrations re-reconciled all of them, and every kind was watched once per controller.
//!
//! The index of references is a route too, the first of each feed: it is current before any
//! controller hears of the change, so a Credential reconciled because an Integration appeared
//! already counts that Integration among its consumers.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc::UnboundedSender;
use tracing::warn;

use super::object::Unchecked;
use super::run::QuickBackoff;

/// Where a route sends the objects it maps to: the trigger channel of one controller.
pub type Triggers<C> = UnboundedSender<ObjectRef<Unchecked<C>>>;

/// What a route does with an object: (object, gone).
type Fire<K> = Box<dyn FnMut(&K, bool) + Send>;

struct Route<K> {
    interest: fn(&K) -> u64,
    last: HashMap<u64, u64>,
    fire: Fire<K>,
}

/// The watch of one kind and its routes.
pub struct Feed<K> {
    routes: Vec<Route<K>>,
}

impl<K> Default for Feed<K> {
    fn default() -> Self {
        Feed { routes: Vec::new() }
    }
}

impl<K> Feed<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    /// Call `fire(object, gone)` when `interest` of an object changes or it is deleted; `gone`
    /// says it was deleted or is being deleted.
    pub fn on(
        mut self,
        interest: fn(&K) -> u64,
        fire: impl FnMut(&K, bool) + Send + 'static,
    ) -> Self {
        self.routes.push(Route { interest, last: HashMap::new(), fire: Box::new(fire) });
        self
    }

    /// Send what `map` names to the controller behind `triggers` when `interest` changes.
    pub fn route<C>(
        self,
        interest: fn(&K) -> u64,
        triggers: Triggers<C>,
        map: impl Fn(&K) -> Vec<ObjectRef<Unchecked<C>>> + Send + 'static,
    ) -> Self
    where
        C: Resource<DynamicType = ()> + 'static,
        Unchecked<C>: Resource<DynamicType = ()>,
    {
        self.on(interest, move |object, _| {
            for r in map(object) {
                let _ = triggers.send(r);
            }
        })
    }

    /// Watch `api` into `writer` and run the routes, until the process ends. Watch failures
    /// back off on their own (0.5 s doubling to 5 s) and are logged.
    pub async fn run(mut self, api: Api<K>, config: watcher::Config, mut writer: Writer<K>) {
        let reader = writer.as_reader();
        let stream = watcher(api, config)
            .backoff(QuickBackoff::default())
            // Nothing reads managedFields; cached, they would cost as much as the objects.
            .modify(|object| object.meta_mut().managed_fields = None);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(event) => event,
                Err(error) => {
                    warn!(%error, kind = %K::kind(&()), "watch failed; retrying");
                    continue;
                }
            };
            match &event {
                watcher::Event::Apply(object) => {
                    writer.apply_watcher_event(&event);
                    self.changed(object, false);
                }
                watcher::Event::Delete(object) => {
                    writer.apply_watcher_event(&event);
                    self.changed(object, true);
                }
                watcher::Event::InitDone => {
                    // A (re)list replaces the cache at its end: route what it brought, and
                    // what vanished while the watch was down as deleted.
                    let before = reader.state();
                    writer.apply_watcher_event(&event);
                    let after = reader.state();
                    let present: std::collections::HashSet<u64> =
                        after.iter().map(|o| key(o.as_ref())).collect();
                    for gone in before.iter().filter(|o| !present.contains(&key(o.as_ref()))) {
                        self.changed(gone, true);
                    }
                    for object in &after {
                        self.changed(object, false);
                    }
                }
                watcher::Event::Init | watcher::Event::InitApply(_) => {
                    writer.apply_watcher_event(&event);
                }
            }
        }
    }

    fn changed(&mut self, object: &K, deleted: bool) {
        let key = key(object);
        let gone = deleted || object.meta().deletion_timestamp.is_some();
        for route in &mut self.routes {
            if deleted {
                route.last.remove(&key);
                (route.fire)(object, true);
            } else {
                let interest = (route.interest)(object);
                if route.last.insert(key, interest) != Some(interest) {
                    (route.fire)(object, gone);
                }
            }
        }
    }
}

/// A cache of `K` and the writer that fills it.
pub fn cache<K>() -> (Store<K>, Writer<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let writer = Writer::default();
    (writer.as_reader(), writer)
}

fn key<K: Resource>(object: &K) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.meta().namespace.hash(&mut hasher);
    object.meta().name.hash(&mut hasher);
    hasher.finish()
}

fn hash_identity<K: Resource>(object: &K, hasher: &mut impl Hasher) {
    let meta = object.meta();
    meta.uid.hash(hasher);
    meta.generation.hash(hasher);
    meta.deletion_timestamp.is_some().hash(hasher);
}

/// What a controller reconciles its own kind for: a new object (uid), its spec (generation),
/// labels, annotations and deletion — not its status, which the operator itself writes.
pub fn own<K: Resource>(object: &K) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hash_identity(object, &mut hasher);
    object.meta().labels.hash(&mut hasher);
    object.meta().annotations.hash(&mut hasher);
    hasher.finish()
}

/// What a reader of the spec cares about: which object it is, and its generation.
pub fn spec<K: Resource>(object: &K) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hash_identity(object, &mut hasher);
    hasher.finish()
}

/// What a user of a Credential or OutboundMessage reads: its spec, its content hash and
/// whether (and why not) it is Ready.
pub fn usable<K: Resource<DynamicType = ()>>(object: &Unchecked<K>) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hash_identity(object, &mut hasher);
    let status = object.status_view();
    status.content_hash.hash(&mut hasher);
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    ready.map(|c| (&c.status, &c.reason)).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::api::Credential;

    fn credential(generation: i64, hash: &str, consumers: usize) -> Unchecked<Credential> {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "token", "namespace": "ns", "uid": "u1", "generation": generation},
            "spec": {"type": "bearer"},
            "status": {"contentHash": hash, "consumers": vec![serde_json::json!({}); consumers],
                "conditions": [{"type": "Ready", "status": "True", "reason": "Valid"}]},
        }))
        .unwrap()
    }

    #[test]
    fn a_route_fires_when_its_interest_changes_and_on_every_deletion() {
        let fired: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
        let seen = fired.clone();
        let mut feed = Feed::<Unchecked<Credential>>::default().on(usable, move |c, deleted| {
            let hash = c.status_view().content_hash.unwrap();
            seen.lock().unwrap().push((hash, deleted));
        });
        feed.changed(&credential(1, "a", 0), false);
        // Only the consumers grew: nobody who uses the Credential reads that.
        feed.changed(&credential(1, "a", 5), false);
        feed.changed(&credential(1, "b", 5), false);
        feed.changed(&credential(1, "b", 5), true);
        feed.changed(&credential(1, "b", 5), false);
        assert_eq!(
            *fired.lock().unwrap(),
            [("a".into(), false), ("b".into(), false), ("b".into(), true), ("b".into(), false)]
        );
    }

    #[test]
    fn interests_tell_spec_from_status() {
        let base = credential(1, "a", 0);
        assert_eq!(own(&base), own(&credential(1, "b", 3)));
        assert_ne!(own(&base), own(&credential(2, "a", 0)));
        assert_eq!(spec(&base), spec(&credential(1, "b", 0)));
        assert_ne!(usable(&base), usable(&credential(1, "b", 0)));
        assert_eq!(usable(&base), usable(&credential(1, "a", 9)));
    }
}

//! In-process controllers that a real control plane runs next to the API server: the
//! garbage collector (owner references, foreground and orphan deletion) and namespace
//! cleanup.
//!
//! They follow the store's event history like any watcher and act through [`Core`], so their
//! writes are admitted, versioned and watched like a client's. Later controllers (workloads,
//! a pod runner) plug in the same way.
//!
//! ```text
//!  store events ──▶ Deleted(uid) ──▶ dependents whose owners are all gone ──▶ delete (background)
//!               ──▶ deleting + "foregroundDeletion" ──▶ delete dependents; none left ──▶ drop finalizer
//!               ──▶ deleting + "orphan" ──▶ strip owner refs from dependents ──▶ drop finalizer
//!               ──▶ Namespace deleting ──▶ delete its content; empty ──▶ remove the namespace
//! ```

use std::sync::Arc;

use serde_json::{Value, json};

use crate::api::{
    Core, DeleteOptions, PatchType, Propagation, Subresource, WriteOptions, finalizers,
};
use crate::resources::{Resource, ResourceKey};
use crate::store::{EventType, Expect};

const MANAGER: &str = "devcluster-controller";

/// Runs the controllers until `shutdown` turns true.
pub async fn run(core: Arc<Core>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut notify = core.store.subscribe();
    let mut cursor = core.store.current_rv();
    full_pass(&core);
    loop {
        match core.store.events_since(cursor) {
            Ok(events) => {
                for e in events {
                    cursor = e.rv;
                    match e.kind {
                        EventType::Deleted => {
                            let obj = e.object.value();
                            if let Some(uid) = obj.pointer("/metadata/uid").and_then(Value::as_str)
                            {
                                collect_dependents(&core, uid);
                            }
                            // A dependent disappearing may unblock a foreground deletion or an
                            // emptied namespace.
                            for owner in owner_refs(&obj) {
                                if let Some((res, ns, name)) = locate(&core, &owner, &e.namespace) {
                                    process_deleting(&core, &res, &ns, &name);
                                }
                            }
                            if !e.namespace.is_empty() {
                                process_namespace(&core, &e.namespace);
                            }
                        }
                        _ => {
                            if e.object.is_deleting()
                                && let Some(res) = core.registry.by_key(&e.key)
                            {
                                process_deleting(&core, &res, &e.namespace, &e.name);
                            }
                        }
                    }
                }
            }
            Err(_) => {
                cursor = core.store.current_rv();
                full_pass(&core);
            }
        }
        tokio::select! {
            r = notify.changed() => if r.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// Looks at every object once (at start, or after falling behind the history).
fn full_pass(core: &Core) {
    for key in core.store.keys() {
        let Some(res) = core.registry.by_key(&key) else { continue };
        for (ns, name, obj) in core.store.list(&key, None, None).1 {
            let v = obj.value();
            if v.pointer("/metadata/deletionTimestamp").is_some() {
                process_deleting(core, &res, &ns, &name);
            }
            let refs = owner_refs(&v);
            if !refs.is_empty() && refs.iter().all(|r| locate(core, r, &ns).is_none()) {
                let _ = core.delete(&res, &ns, &name, &DeleteOptions::default());
            }
        }
    }
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// Finds the live owner an owner reference points to (matching uid), if it exists.
fn locate(core: &Core, owner: &Value, ns: &str) -> Option<(Arc<Resource>, String, String)> {
    let api_version = owner.get("apiVersion").and_then(Value::as_str)?;
    let kind = owner.get("kind").and_then(Value::as_str)?;
    let name = owner.get("name").and_then(Value::as_str)?;
    let uid = owner.get("uid").and_then(Value::as_str)?;
    let res = core.registry.by_kind(api_version, kind)?;
    let owner_ns = if res.namespaced { ns } else { "" };
    let obj = core.store.get(&res.key(), owner_ns, name)?;
    let v = obj.value();
    (v.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid))
        .then(|| (res, owner_ns.to_string(), name.to_string()))
}

fn collect_dependents(core: &Core, uid: &str) {
    for (key, ns, name) in core.store.dependents_of(uid) {
        let Some(res) = core.registry.by_key(&key) else { continue };
        let Some(obj) = core.store.get(&key, &ns, &name) else { continue };
        let v = obj.value();
        let refs = owner_refs(&v);
        let live: Vec<&Value> = refs.iter().filter(|r| locate(core, r, &ns).is_some()).collect();
        if live.is_empty() {
            let _ = core.delete(
                &res,
                &ns,
                &name,
                &DeleteOptions { propagation: Some(Propagation::Background), ..Default::default() },
            );
        } else if live.len() != refs.len() {
            let patch = json!({"metadata": {"ownerReferences": live}});
            let _ = core.patch(
                &res,
                &ns,
                &name,
                PatchType::Merge,
                &patch,
                &manager(),
                Subresource::Main,
                MANAGER,
            );
        }
    }
}

fn manager() -> WriteOptions {
    WriteOptions { field_manager: Some(MANAGER.into()), ..Default::default() }
}

fn remove_finalizer(core: &Core, res: &Resource, ns: &str, name: &str, finalizer: &str) {
    let Some(obj) = core.store.get(&res.key(), ns, name) else { return };
    let v = obj.value();
    let remaining: Vec<String> = finalizers(&v).into_iter().filter(|f| f != finalizer).collect();
    let patch =
        json!({"metadata": {"finalizers": remaining, "resourceVersion": obj.rv.to_string()}});
    let _ =
        core.patch(res, ns, name, PatchType::Merge, &patch, &manager(), Subresource::Main, MANAGER);
}

fn process_deleting(core: &Core, res: &Resource, ns: &str, name: &str) {
    let Some(obj) = core.store.get(&res.key(), ns, name) else { return };
    let v = obj.value();
    if v.pointer("/metadata/deletionTimestamp").is_none() {
        return;
    }
    if res.kind == "Namespace" && res.group.is_empty() {
        process_namespace(core, name);
        return;
    }
    let fins = finalizers(&v);
    let Some(uid) = v.pointer("/metadata/uid").and_then(Value::as_str) else { return };
    if fins.iter().any(|f| f == "orphan") {
        for (key, dns, dname) in core.store.dependents_of(uid) {
            let Some(dres) = core.registry.by_key(&key) else { continue };
            let Some(dep) = core.store.get(&key, &dns, &dname) else { continue };
            let refs: Vec<Value> = owner_refs(&dep.value())
                .into_iter()
                .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid))
                .collect();
            let patch = if refs.is_empty() {
                json!({"metadata": {"ownerReferences": null}})
            } else {
                json!({"metadata": {"ownerReferences": refs}})
            };
            let _ = core.patch(
                &dres,
                &dns,
                &dname,
                PatchType::Merge,
                &patch,
                &manager(),
                Subresource::Main,
                MANAGER,
            );
        }
        remove_finalizer(core, res, ns, name, "orphan");
    } else if fins.iter().any(|f| f == "foregroundDeletion") {
        let dependents = core.store.dependents_of(uid);
        if dependents.is_empty() {
            remove_finalizer(core, res, ns, name, "foregroundDeletion");
            return;
        }
        for (key, dns, dname) in dependents {
            let Some(dres) = core.registry.by_key(&key) else { continue };
            let _ = core.delete(
                &dres,
                &dns,
                &dname,
                &DeleteOptions { propagation: Some(Propagation::Foreground), ..Default::default() },
            );
        }
    }
}

fn process_namespace(core: &Core, ns: &str) {
    let ns_key = ResourceKey::new("", "namespaces");
    let Some(nsobj) = core.store.get(&ns_key, "", ns) else { return };
    if nsobj.value().pointer("/metadata/deletionTimestamp").is_none() {
        return;
    }
    let mut remaining = 0;
    for key in core.store.keys() {
        let Some(res) = core.registry.by_key(&key) else { continue };
        if !res.namespaced {
            continue;
        }
        for (_, name, obj) in core.store.list(&key, Some(ns), None).1 {
            remaining += 1;
            if obj.value().pointer("/metadata/deletionTimestamp").is_none() {
                let _ = core.delete(&res, ns, &name, &DeleteOptions::default());
            }
        }
    }
    if remaining == 0 {
        let _ = core.store.delete(&ns_key, "", ns, Expect::Version(nsobj.rv));
    }
}

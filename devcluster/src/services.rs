//! Services: cluster IPs on loopback, and a proxy that makes them reachable.
//!
//! ```text
//!  Service created ──▶ admission: spec.clusterIP = a free 127.96-103.x.y address
//!  Service watched ──▶ proxy: listen on clusterIP:port (each TCP port)
//!  connection ─────▶ pick a Ready Pod matching the selector (round robin)
//!                 ──▶ connect to podIP:targetPort (number or the container port's name)
//! ```
//!
//! So `http://<clusterIP>:<port>` works from processes and from a browser alike. A port
//! below 1024 that cannot be bound (no privilege) is served on port + 8000 instead (80 →
//! 8080), or on a free port when that is taken too; [`ServiceProxies::addresses`] says
//! where. DNS names (`<name>.<namespace>.svc`) cannot be made to resolve for ordinary
//! processes without privileges; Pods get the Kubernetes service link variables instead
//! (`<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`, `<NAME>_SERVICE_PORT_<PORT NAME>`),
//! pointing at the proxy. Services without a selector, headless Services and UDP ports get
//! no proxy.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::api::Core;
use crate::resources::ResourceKey;
use crate::store::EventType;

const FIRST: u32 = u32::from_be_bytes([127, 96, 0, 1]);
const LAST: u32 = u32::from_be_bytes([127, 103, 255, 254]);

/// Cluster IPs handed out, like the API server's allocator: filled from the stored Services
/// once, then kept in memory, so that creating a Service costs no list of all Services (that
/// made each create O(Services) and 10,000 of them quadratic). Addresses of deleted Services
/// return to the pool when the set is rebuilt from the store, at most once a minute.
#[derive(Default)]
pub struct ClusterIps {
    used: Mutex<Option<(std::time::Instant, std::collections::HashSet<u32>)>>,
}

const REBUILD_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Picks a cluster IP for a new Service: random in `127.96.0.0/13`, not used by another
/// Service of this cluster, and with its ports bindable.
pub fn allocate_cluster_ip(core: &Core, service: &Value) -> String {
    let mut guard = core.cluster_ips.used.lock().expect("cluster IP lock");
    let stale = guard.as_ref().is_none_or(|(built, _)| built.elapsed() > REBUILD_AFTER);
    if stale {
        let key = ResourceKey::new("", "services");
        let used = core
            .store
            .list(&key, None, None)
            .1
            .into_iter()
            .filter_map(|(_, _, o)| {
                let ip = o.value().pointer("/spec/clusterIP").and_then(Value::as_str)?.parse();
                ip.ok().map(|ip: Ipv4Addr| u32::from(ip))
            })
            .collect();
        *guard = Some((std::time::Instant::now(), used));
    }
    let used = &mut guard.as_mut().expect("just built").1;
    let ports: Vec<u16> = ports_of(service).iter().map(|p| p.port).collect();
    let span = LAST - FIRST;
    let mut chosen = FIRST;
    for attempt in 0..256u32 {
        let r =
            u32::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..4].try_into().unwrap_or_default());
        let candidate = FIRST + r % span;
        let last = Ipv4Addr::from(candidate).octets()[3];
        if last == 0 || last == 255 || used.contains(&candidate) {
            continue;
        }
        let ip = Ipv4Addr::from(candidate);
        let free = ports.iter().all(|p| bind_port(ip, *p).is_some());
        if free || attempt == 255 {
            chosen = candidate;
            break;
        }
    }
    used.insert(chosen);
    Ipv4Addr::from(chosen).to_string()
}

/// A Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Its name (may be empty).
    pub name: String,
    /// The service port.
    pub port: u16,
    /// The target port: a number or a container port name.
    pub target: Value,
}

fn ports_of(service: &Value) -> Vec<ServicePort> {
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|p| p.get("protocol").and_then(Value::as_str).unwrap_or("TCP") == "TCP")
        .filter_map(|p| {
            let port = u16::try_from(p.get("port")?.as_u64()?).ok()?;
            Some(ServicePort {
                name: p.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                port,
                target: p.get("targetPort").cloned().unwrap_or(Value::from(port)),
            })
        })
        .collect()
}

/// Where a Service port is reachable on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalPort {
    /// The port's name.
    pub name: String,
    /// The port as the Service declares it.
    pub port: u16,
    /// The address the proxy listens on.
    pub address: SocketAddr,
}

struct Proxy {
    /// What the listeners were made for (cluster IP, ports, selector).
    shape: Value,
    ports: Vec<LocalPort>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The proxies of every Service, by namespace and name.
#[derive(Default)]
pub struct ServiceProxies {
    proxies: Mutex<HashMap<(String, String), Proxy>>,
}

impl ServiceProxies {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Proxy>> {
        self.proxies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a Service's ports are reachable (empty when it has no proxy).
    pub fn addresses(&self, ns: &str, name: &str) -> Vec<LocalPort> {
        self.lock()
            .get(&(ns.to_string(), name.to_string()))
            .map(|p| p.ports.clone())
            .unwrap_or_default()
    }

    /// The service link variables of a namespace's Services.
    pub fn links(&self, core: &Core, ns: &str) -> Vec<(String, String)> {
        let key = ResourceKey::new("", "services");
        let mut out = Vec::new();
        for (_, name, obj) in core.store.list(&key, Some(ns), None).1 {
            let v = obj.value();
            let ip = v.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("None");
            if ip == "None" || ip.is_empty() {
                continue;
            }
            let prefix = name.to_uppercase().replace('-', "_");
            let local = self.addresses(ns, &name);
            let ports = ports_of(&v);
            let port_of = |p: &ServicePort| {
                local.iter().find(|l| l.port == p.port).map(|l| l.address.port()).unwrap_or(p.port)
            };
            if let Some(first) = ports.first() {
                out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
                out.push((format!("{prefix}_SERVICE_PORT"), port_of(first).to_string()));
                for p in &ports {
                    if !p.name.is_empty() {
                        let pname = p.name.to_uppercase().replace('-', "_");
                        out.push((
                            format!("{prefix}_SERVICE_PORT_{pname}"),
                            port_of(p).to_string(),
                        ));
                    }
                }
            }
        }
        out
    }
}

/// Keeps a proxy per Service until `shutdown` turns true.
pub async fn run(
    core: Arc<Core>,
    proxies: Arc<ServiceProxies>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let key = ResourceKey::new("", "services");
    let mut notify = core.store.subscribe();
    let mut cursor = core.store.current_rv();
    for (ns, name, obj) in core.store.list(&key, None, None).1 {
        sync(&core, &proxies, &ns, &name, Some(obj.value()));
    }
    loop {
        match core.store.events_since(cursor) {
            Ok(events) => {
                for e in events.iter().filter(|e| e.key == key) {
                    let obj = (e.kind != EventType::Deleted).then(|| e.object.value());
                    sync(&core, &proxies, &e.namespace, &e.name, obj);
                }
                if let Some(last) = events.last() {
                    cursor = last.rv;
                }
            }
            Err(_) => {
                cursor = core.store.current_rv();
                let live: Vec<(String, String, Value)> = core
                    .store
                    .list(&key, None, None)
                    .1
                    .into_iter()
                    .map(|(n, m, o)| (n, m, o.value()))
                    .collect();
                proxies.lock().retain(|(n, m), _| live.iter().any(|(a, b, _)| a == n && b == m));
                for (ns, name, v) in live {
                    sync(&core, &proxies, &ns, &name, Some(v));
                }
            }
        }
        tokio::select! {
            r = notify.changed() => if r.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    proxies.lock().clear();
}

fn sync(
    core: &Arc<Core>,
    proxies: &Arc<ServiceProxies>,
    ns: &str,
    name: &str,
    service: Option<Value>,
) {
    let id = (ns.to_string(), name.to_string());
    let Some(service) = service else {
        proxies.lock().remove(&id);
        return;
    };
    let ip = service.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("None");
    let selector = service.pointer("/spec/selector").cloned().unwrap_or(Value::Null);
    let Ok(ip) = ip.parse::<Ipv4Addr>() else {
        proxies.lock().remove(&id);
        return;
    };
    if selector.as_object().is_none_or(|m| m.is_empty()) {
        proxies.lock().remove(&id);
        return;
    }
    let ports = ports_of(&service);
    let shape = serde_json::json!({"ip": ip.to_string(), "selector": selector, "ports": ports.iter().map(|p| (p.port, p.target.clone())).collect::<Vec<_>>()});
    if proxies.lock().get(&id).is_some_and(|p| p.shape == shape) {
        return;
    }
    proxies.lock().remove(&id);
    let mut local = Vec::new();
    let mut tasks = Vec::new();
    let next = Arc::new(AtomicUsize::new(0));
    for p in ports {
        let Some(listener) = bind_port(ip, p.port)
            .or_else(|| {
                p.port
                    .checked_add(8000)
                    .filter(|_| p.port < 1024)
                    .and_then(|alt| bind_port(ip, alt))
            })
            .or_else(|| bind_port(ip, 0))
        else {
            tracing::warn!(
                namespace = ns,
                service = name,
                port = p.port,
                "cannot listen for a service port"
            );
            continue;
        };
        let Ok(address) = listener.local_addr() else { continue };
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { continue };
        local.push(LocalPort { name: p.name.clone(), port: p.port, address });
        tasks.push(tokio::spawn(serve(
            core.clone(),
            listener,
            ns.to_string(),
            selector.clone(),
            p.target.clone(),
            next.clone(),
        )));
    }
    proxies.lock().insert(id, Proxy { shape, ports: local, tasks });
}

fn bind_port(ip: Ipv4Addr, port: u16) -> Option<std::net::TcpListener> {
    let l = std::net::TcpListener::bind((ip, port)).ok()?;
    l.set_nonblocking(true).ok()?;
    Some(l)
}

async fn serve(
    core: Arc<Core>,
    listener: tokio::net::TcpListener,
    ns: String,
    selector: Value,
    target: Value,
    next: Arc<AtomicUsize>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let endpoints = endpoints(&core, &ns, &selector, &target);
        if endpoints.is_empty() {
            // No ready endpoint: refuse, as kube-proxy does.
            drop(inbound);
            continue;
        }
        let pick = endpoints[next.fetch_add(1, Ordering::Relaxed) % endpoints.len()];
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(pick).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// The addresses of the Ready Pods behind a Service port.
pub fn endpoints(core: &Core, ns: &str, selector: &Value, target: &Value) -> Vec<SocketAddr> {
    let key = ResourceKey::new("", "pods");
    let sel =
        crate::selectors::LabelSelector::from_object(&serde_json::json!({"matchLabels": selector}));
    let mut out = Vec::new();
    for (_, _, obj) in core.store.list(&key, Some(ns), None).1 {
        let pod = obj.value();
        if !sel.matches(&pod)
            || !crate::workloads::pods::is_ready(&pod)
            || crate::workloads::deleting(&pod)
        {
            continue;
        }
        let Some(ip) = pod
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        let port = match target {
            Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Value::String(s) => s.parse::<u16>().ok().or_else(|| {
                pod.pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|c| {
                        c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default()
                    })
                    .find(|p| p.get("name").and_then(Value::as_str) == Some(s))
                    .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
                    .and_then(|p| u16::try_from(p).ok())
            }),
            _ => None,
        };
        if let Some(port) = port {
            out.push(SocketAddr::from((ip, port)));
        }
    }
    out
}

//! A fake Kubernetes API server for the kubernetes driver's tests: plain
//! HTTP/1.1 on 127.0.0.1 port 0, reached by the real kube client through a
//! kubeconfig file the fake writes.
//!
//! It serves what the driver uses: server-side apply (`PATCH` with
//! `application/apply-patch+yaml`, `fieldManager`, `force`), `GET`, `LIST`
//! with label selectors (in a namespace and across all), `WATCH`
//! (`?watch=true&resourceVersion=N`, [`watch`]), `DELETE`, and enough
//! discovery for `kubectl get` by hand. Objects are JSON values; every
//! change takes the next `resourceVersion` of one global counter and is
//! kept as an `ADDED`/`MODIFIED`/`DELETED` event for watches; an apply
//! that changes nothing keeps `resourceVersion`, one that changes `spec`
//! bumps `generation`.
//!
//! A toy controller and kubelet ([`cluster`]) run in a task of their own,
//! woken by every change, and step until nothing changes (after
//! [`FakeKube::kubelet_delay`], zero unless set): a ReplicaSet or
//! Deployment whose generation is not yet observed gets its pods created
//! or removed, the next step makes pods ready (or, by image, fails them: an
//! image with `pull-fail` in its name never pulls, `crash` crash-loops,
//! `never-ready` runs and never gets ready), and the status follows.
//!
//! Faults: [`FakeKube::fail`] answers matching requests with a status code
//! (the next N, every Nth, or a percentage); watches can be cut after N
//! events or after a time, and [`FakeKube::expire_versions`] compacts the
//! history so that resuming from an older version gets 410 Gone. Every
//! request is logged, with its verb ([`FakeKube::calls`]).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

mod cluster;
mod watch;
use cluster::{discovery, run_kubelet};
pub use watch::Gone;
use watch::{WatchFaults, serve_watch};

/// What the fake answers with: a whole JSON document or a watch stream.
type Body = BoxBody<Bytes, std::io::Error>;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// `get`, `list`, `watch`, `patch`, `delete` (or `other`: discovery).
    pub verb: &'static str,
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    /// The status the fake answered with.
    pub status: u16,
}

/// Answers requests whose method and path match with `status`.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<Method>,
    /// Only calls of this verb (`watch`, `list`, …), when set.
    pub verb: Option<&'static str>,
    pub path_contains: String,
    pub status: u16,
    /// How many more times it fires (`u32::MAX`: for ever).
    pub remaining: u32,
    /// Fires on every `every`-th matching request (1: each one).
    pub every: u32,
    /// Or, when set, on this percentage of matching requests, drawn from a
    /// fixed-seed generator (the same run every time).
    pub percent: Option<u32>,
    seen: u32,
}

/// A stored object, by (resource, namespace, name); cluster-scoped
/// objects have an empty namespace.
type Key = (String, String, String);

/// One change, as a watch reports it.
struct Event {
    version: u64,
    kind: &'static str,
    key: Key,
    object: Value,
}

struct State {
    objects: BTreeMap<Key, Value>,
    /// The last `resourceVersion` given out: one counter for every object.
    next_version: u64,
    /// Every change since `compacted`, oldest first.
    history: std::collections::VecDeque<Event>,
    /// Watching from a version older than this is answered 410 Gone.
    compacted: u64,
    /// Bumped on every change, and to wake watches and the kubelet.
    changed: tokio::sync::watch::Sender<u64>,
    watch_faults: WatchFaults,
    next_ip: u32,
    log: Vec<Logged>,
    faults: Vec<Fault>,
    random: u64,
    /// While set, the kubelet leaves pods as they are (a slow cluster).
    held: bool,
    /// How long the kubelet waits after a change before it steps.
    kubelet_delay: Duration,
}

/// Watch history kept at most; older events are compacted away (a watch
/// from before them gets 410), as an API server's watch cache does.
const HISTORY: usize = 50_000;

pub struct FakeKube {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
    kubelet: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
        self.kubelet.abort();
    }
}

impl FakeKube {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            objects: BTreeMap::new(),
            next_version: 1000,
            history: Default::default(),
            compacted: 0,
            changed: tokio::sync::watch::channel(0).0,
            watch_faults: WatchFaults::default(),
            next_ip: 0,
            log: Vec::new(),
            faults: Vec::new(),
            random: 0x9E37_79B9_7F4A_7C15,
            held: false,
            kubelet_delay: Duration::ZERO,
        }));
        let kubelet = tokio::spawn(run_kubelet(state.clone()));
        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let fake = Self {
            addr,
            state,
            dir,
            task,
            kubelet,
        };
        std::fs::write(fake.kubeconfig(), fake.kubeconfig_text()).expect("write kubeconfig");
        fake
    }

    /// A kubeconfig whose context `fake` (the current one) reaches this
    /// server.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubeconfig_text(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\nusers:\n- name: fake\n  user:\n    token: fake-token\n",
            self.addr
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("fake state")
    }

    /// The stored object, if any.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(resource.into(), namespace.into(), name.into()))
            .cloned()
    }

    /// Every stored object of `resource`, by (namespace, name).
    pub fn all(&self, resource: &str) -> BTreeMap<(String, String), Value> {
        self.lock()
            .objects
            .iter()
            .filter(|((r, _, _), _)| r == resource)
            .map(|((_, ns, name), v)| ((ns.clone(), name.clone()), v.clone()))
            .collect()
    }

    /// Changes an object behind deployd's back (someone's `kubectl edit`).
    pub fn edit(&self, resource: &str, namespace: &str, name: &str, edit: impl FnOnce(&mut Value)) {
        let mut state = self.lock();
        let key = (resource.into(), namespace.into(), name.into());
        let mut object = state
            .objects
            .get(&key)
            .cloned()
            .expect("the object to edit exists");
        edit(&mut object);
        let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
        object["metadata"]["generation"] = json!(generation + 1);
        state.put(key, object);
    }

    /// Stores an object as if someone else had created it.
    pub fn insert(&self, resource: &str, object: Value) {
        let mut state = self.lock();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_string();
        state.put((resource.into(), namespace, name), object);
    }

    /// Deletes an object behind deployd's back; whether it existed.
    pub fn remove(&self, resource: &str, namespace: &str, name: &str) -> bool {
        self.lock()
            .delete(&(resource.into(), namespace.into(), name.into()))
            .is_some()
    }

    pub fn fail(&self, method: Option<Method>, path_contains: &str, status: u16, times: u32) {
        self.fail_every(method, path_contains, status, times, 1);
    }

    pub fn fail_every(
        &self,
        method: Option<Method>,
        path_contains: &str,
        status: u16,
        times: u32,
        every: u32,
    ) {
        self.lock().faults.push(Fault {
            method,
            verb: None,
            path_contains: path_contains.into(),
            status,
            remaining: times,
            every: every.max(1),
            percent: None,
            seen: 0,
        });
    }

    /// Fails `percent` % of all requests with `status`, at random (a fixed
    /// seed: every run draws the same).
    pub fn fail_percent(&self, status: u16, percent: u32) {
        self.lock().faults.push(Fault {
            method: None,
            verb: None,
            path_contains: "/".into(),
            status,
            remaining: u32::MAX,
            every: 1,
            percent: Some(percent),
            seen: 0,
        });
    }

    /// Answers the next `times` calls of `verb` (`watch`, `list`, …)
    /// with `status`.
    pub fn fail_verb(&self, verb: &'static str, status: u16, times: u32) {
        self.lock().faults.push(Fault {
            method: None,
            verb: Some(verb),
            path_contains: "/".into(),
            status,
            remaining: times,
            every: 1,
            percent: None,
            seen: 0,
        });
    }

    /// Stops (`true`) or resumes the kubelet: while stopped, no pod
    /// changes state.
    pub fn hold_pods(&self, held: bool) {
        let mut state = self.lock();
        state.held = held;
        state.wake();
    }

    /// The kubelet waits this long after a change before it steps (a
    /// slower cluster; zero by default).
    pub fn kubelet_delay(&self, delay: Duration) {
        self.lock().kubelet_delay = delay;
    }

    /// Cuts every watch after it sent `events` events (`None`: never),
    /// as a connection reset would.
    pub fn drop_watches_after_events(&self, events: Option<u32>) {
        self.lock().watch_faults.drop_after_events = events;
    }

    /// Cuts every watch after it has been open for `after` (`None`: never).
    pub fn drop_watches_after(&self, after: Option<Duration>) {
        self.lock().watch_faults.drop_after = after;
    }

    /// Compacts the history: every version seen so far is too old to
    /// watch from, and open watches learn it as `how` says.
    pub fn expire_versions(&self, how: Gone) {
        let mut state = self.lock();
        // A change nobody watches (another namespace's), so the versions
        // clients hold are all older than the compaction point and a new
        // list is not.
        state.next_version += 1;
        state.compacted = state.next_version;
        state.history.clear();
        state.watch_faults.expired.push(how);
        state.wake();
    }

    /// The current `resourceVersion` (the global counter).
    pub fn version(&self) -> u64 {
        self.lock().next_version
    }

    /// Calls answered by verb (`get`, `list`, `watch`, `patch`,
    /// `delete`), failed ones included.
    pub fn calls(&self) -> BTreeMap<&'static str, usize> {
        let mut calls = BTreeMap::new();
        for request in &self.lock().log {
            *calls.entry(request.verb).or_default() += 1;
        }
        calls
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// Requests that changed or removed something.
    pub fn writes(&self) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|r| r.method == Method::PATCH || r.method == Method::DELETE)
            .collect()
    }
}

impl State {
    fn bump(&mut self) -> u64 {
        self.next_version += 1;
        self.next_version
    }

    /// Stores `object` at the next version and tells the watches.
    fn put(&mut self, key: Key, mut object: Value) {
        let version = self.bump();
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        let kind = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.objects.insert(key.clone(), object.clone());
        self.record(version, kind, key, object);
    }

    /// Removes an object at the next version and tells the watches.
    fn delete(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        let version = self.bump();
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        self.record(version, "DELETED", key.clone(), object.clone());
        Some(object)
    }

    fn record(&mut self, version: u64, kind: &'static str, key: Key, object: Value) {
        self.history.push_back(Event {
            version,
            kind,
            key,
            object,
        });
        if self.history.len() > HISTORY {
            let dropped = self.history.len() - HISTORY / 2;
            for event in self.history.drain(..dropped) {
                self.compacted = event.version;
            }
        }
        self.wake();
    }

    /// Wakes watches and the kubelet to look again.
    fn wake(&self) {
        self.changed.send_modify(|changes| *changes += 1);
    }

    fn fault(&mut self, method: &Method, verb: &str, path: &str) -> Option<u16> {
        let State { faults, random, .. } = self;
        for fault in faults {
            let matches = fault.method.as_ref().is_none_or(|m| m == method)
                && fault.verb.is_none_or(|v| v == verb)
                && path.contains(&fault.path_contains)
                && fault.remaining > 0;
            if matches {
                fault.seen += 1;
                let fires = match fault.percent {
                    Some(percent) => {
                        // xorshift64: a cheap, fixed sequence.
                        *random ^= *random << 13;
                        *random ^= *random >> 7;
                        *random ^= *random << 17;
                        *random % 100 < u64::from(percent)
                    }
                    None => fault.seen % fault.every == 0,
                };
                if fires {
                    if fault.remaining != u32::MAX {
                        fault.remaining -= 1;
                    }
                    return Some(fault.status);
                }
            }
        }
        None
    }
}

async fn handle(state: Arc<Mutex<State>>, request: Request<Incoming>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let shared = state.clone();
    let Ok(mut state) = state.lock() else {
        return respond(
            500,
            status_body(500, "InternalError", "fake state poisoned"),
        );
    };
    let target = parse_target(&path);
    let watching = query_param(&query, "watch").as_deref() == Some("true");
    let verb = match (&method, &target) {
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        (&Method::GET, Some(target)) if target.name.is_some() => "get",
        (&Method::GET, Some(_)) if watching => "watch",
        (&Method::GET, Some(_)) => "list",
        _ => "other",
    };
    let (status, answer) = match state.fault(&method, verb, &path) {
        Some(code) => (
            code,
            respond(code, status_body(code, "Injected", "injected by the test")),
        ),
        None => match target {
            Some(target) if verb == "watch" => serve_watch(&mut state, &shared, &target, &query),
            _ => {
                let (status, answer) =
                    serve(&mut state, &method, &path, &query, &content_type, &body);
                (status, respond(status, answer))
            }
        },
    };
    state.log.push(Logged {
        verb,
        method,
        path,
        query,
        content_type,
        status,
    });
    answer
}

fn respond(status: u16, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| match never {})
                .boxed(),
        )
        .unwrap_or_default()
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    })
}

/// What a path names: a resource, its namespace (or none), and an object
/// name (or none, for a list).
struct Target {
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    kind: &'static str,
    api_version: &'static str,
}

fn kind_of(resource: &str) -> Option<(&'static str, &'static str)> {
    Some(match resource {
        "namespaces" => ("Namespace", "v1"),
        "services" => ("Service", "v1"),
        "pods" => ("Pod", "v1"),
        "replicasets" => ("ReplicaSet", "apps/v1"),
        "deployments" => ("Deployment", "apps/v1"),
        "networkpolicies" => ("NetworkPolicy", "networking.k8s.io/v1"),
        _ => return None,
    })
}

fn parse_target(path: &str) -> Option<Target> {
    let rest = path.strip_prefix("/api/v1/").or_else(|| {
        let rest = path.strip_prefix("/apis/")?;
        let mut parts = rest.splitn(3, '/');
        parts.next()?;
        parts.next()?;
        parts.next()
    })?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let (resource, namespace, name) = match parts.as_slice() {
        ["namespaces"] => ("namespaces", None, None),
        ["namespaces", name] => ("namespaces", None, Some(*name)),
        ["namespaces", ns, resource] => (*resource, Some(*ns), None),
        ["namespaces", ns, resource, name] => (*resource, Some(*ns), Some(*name)),
        [resource] => (*resource, None, None),
        _ => return None,
    };
    let (kind, api_version) = kind_of(resource)?;
    Some(Target {
        resource: resource.to_string(),
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        kind,
        api_version,
    })
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.push(b'%'),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `k=v,k2=v2` (equality terms only: what the driver sends).
fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let Some((key, value)) = term.split_once('=') else {
            return false;
        };
        object["metadata"]["labels"][key].as_str() == Some(value)
    })
}

fn serve(
    state: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value) {
    if let Some(discovery) = discovery(path) {
        return (200, discovery);
    }
    let Some(target) = parse_target(path) else {
        return (
            404,
            status_body(404, "NotFound", &format!("no route {path}")),
        );
    };
    let namespace = target.namespace.clone().unwrap_or_default();
    match (method.clone(), &target.name) {
        (Method::GET, Some(name)) => {
            let key = (target.resource.clone(), namespace, name.clone());
            match state.objects.get(&key) {
                Some(object) => (200, object.clone()),
                None => not_found(&target, name),
            }
        }
        (Method::GET, None) => {
            let selector = query_param(query, "labelSelector").unwrap_or_default();
            let items: Vec<Value> = state
                .objects
                .iter()
                .filter(|((r, ns, _), _)| {
                    *r == target.resource && (target.namespace.is_none() || *ns == namespace)
                })
                .map(|(_, v)| v)
                .filter(|v| matches_selector(v, &selector))
                .cloned()
                .collect();
            let version = state.next_version.to_string();
            (
                200,
                json!({
                    "kind": format!("{}List", target.kind),
                    "apiVersion": target.api_version,
                    "metadata": { "resourceVersion": version },
                    "items": items,
                }),
            )
        }
        (Method::PATCH, Some(name)) => {
            if content_type != "application/apply-patch+yaml" {
                return (415, status_body(415, "UnsupportedMediaType", content_type));
            }
            if query_param(query, "fieldManager").as_deref() != Some("deployd") {
                return (
                    400,
                    status_body(400, "BadRequest", "fieldManager is required"),
                );
            }
            // JSON is YAML; kube sends JSON.
            let Ok(applied) = serde_json::from_slice::<Value>(body) else {
                return (400, status_body(400, "BadRequest", "body is not JSON"));
            };
            if applied["metadata"]["name"].as_str() != Some(name.as_str())
                || applied["kind"].as_str() != Some(target.kind)
            {
                return (
                    422,
                    status_body(
                        422,
                        "Invalid",
                        "metadata.name or kind does not match the path",
                    ),
                );
            }
            let key = (target.resource.clone(), namespace, name.clone());
            (200, server_side_apply(state, key, applied))
        }
        (Method::DELETE, Some(name)) => {
            let key = (target.resource.clone(), namespace.clone(), name.clone());
            match state.delete(&key) {
                Some(object) => {
                    // Garbage collection of the pods it owned.
                    let owned: Vec<Key> = state
                        .objects
                        .keys()
                        .filter(|(r, ns, pod)| {
                            r == "pods" && *ns == namespace && owner_of(pod) == Some(name.as_str())
                        })
                        .cloned()
                        .collect();
                    for pod in &owned {
                        state.delete(pod);
                    }
                    (200, object)
                }
                None => not_found(&target, name),
            }
        }
        _ => (405, status_body(405, "MethodNotAllowed", method.as_str())),
    }
}

fn not_found(target: &Target, name: &str) -> (u16, Value) {
    (
        404,
        status_body(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", target.resource),
        ),
    )
}

/// Stores `applied` as the object's desired fields: a forced apply of a
/// whole object takes every field it names, and keeps what the server
/// owns (status, uid, creation time). Nothing changed: nothing is written.
fn server_side_apply(state: &mut State, key: Key, mut applied: Value) -> Value {
    let existing = state.objects.get(&key).cloned();
    let Some(mut object) = existing else {
        applied["metadata"]["uid"] = json!(format!("uid-{}", state.next_version + 1));
        applied["metadata"]["generation"] = json!(1);
        applied["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        applied["metadata"]["managedFields"] =
            json!([{ "manager": "deployd", "operation": "Apply" }]);
        state.put(key.clone(), applied);
        return state.objects.get(&key).cloned().unwrap_or_default();
    };
    let mut changed = false;
    let mut spec_changed = false;
    if let Some(fields) = applied.as_object() {
        for (field, value) in fields {
            match field.as_str() {
                "metadata" => {
                    if object["metadata"]["labels"] != value["labels"] {
                        object["metadata"]["labels"] = value["labels"].clone();
                        changed = true;
                    }
                }
                "status" | "apiVersion" | "kind" => {}
                _ => {
                    // Deep-merge: fields another manager set and deployd
                    // does not name stay.
                    let mut merged = object[field].clone();
                    merge(&mut merged, value);
                    if merged != object[field] {
                        object[field] = merged;
                        changed = true;
                        spec_changed |= field == "spec";
                    }
                }
            }
        }
    }
    if changed {
        if spec_changed {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
            object["metadata"]["generation"] = json!(generation + 1);
        }
        state.put(key.clone(), object);
        return state.objects.get(&key).cloned().unwrap_or_default();
    }
    object
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                merge(into.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (into, from) => *into = from.clone(),
    }
}

/// Pods are named `{owner}-{index}`.
fn owner_of(pod: &str) -> Option<&str> {
    pod.rsplit_once('-').map(|(owner, _)| owner)
}

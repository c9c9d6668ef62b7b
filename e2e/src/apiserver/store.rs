//! The object store: every object as JSON, one global resourceVersion counter, a bounded
//! history of watch events and the broadcast channel that feeds live watches. Owns the write
//! semantics (generation, status subresource, finalizers, preconditions, admission of custom
//! resources); does not know about HTTP.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::events;
use super::resources::{self, ResourceType};
use super::ssa::{self, ManagedOp};
use super::status::{ApiError, ApiResult, FieldError};
use super::validation;

/// Kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in history and sent to watchers.
#[derive(Debug)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// (group, plural).
    pub key: (String, String),
    /// Namespace, empty for cluster-scoped.
    pub namespace: String,
    /// Kind of change.
    pub type_: EventType,
    /// The object after the change (for DELETED, the last state with the deletion's rv).
    pub object: Value,
    /// The object before a MODIFIED change, so selector watches can see transitions.
    pub old: Option<Value>,
}

type ObjKey = (String, String);

/// Everything behind the store lock.
pub struct State {
    /// The last resourceVersion handed out.
    pub rv: u64,
    objects: HashMap<(String, String), BTreeMap<ObjKey, Value>>,
    history: VecDeque<Arc<Event>>,
    /// Events with rv > floor are all in history.
    floor: u64,
    types: Vec<ResourceType>,
    seq: u64,
}

/// How a write treats managed fields and which subresource it addresses.
pub struct WriteOpts<'a> {
    /// The type as addressed by the request (its version is what the client sees).
    pub rt: &'a ResourceType,
    /// Namespace from the URL, empty for cluster scope.
    pub namespace: &'a str,
    /// `status` when writing the status subresource.
    pub subresource: Option<&'a str>,
    /// Don't persist.
    pub dry_run: bool,
    /// Field manager bookkeeping.
    pub managed: ManagedOp,
    /// `fieldValidation=Strict`: unknown fields are an error instead of pruned.
    pub strict: bool,
}

/// The store.
pub struct Store {
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Event>>,
    history_limit: usize,
    expired: std::sync::atomic::AtomicU64,
}

/// `2024-01-02T03:04:05Z`.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable_meta(),
    }
}

#[allow(clippy::panic)]
fn unreachable_meta() -> ! {
    // NB: metadata was made an object just above; this cannot happen.
    panic!("metadata is an object")
}

fn str_field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn has_finalizers(obj: &Value) -> bool {
    meta(obj)["finalizers"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
}

/// The object without metadata and status: what `generation` tracks.
fn spec_part(obj: &Value, status_sub: bool) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        if status_sub {
            m.remove("status");
        }
    }
    o
}

/// The object minus fields that change on every write, for no-op detection.
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("generation");
        // Ownership changes count; the time of an entry alone does not.
        if let Some(Value::Array(entries)) = m.get_mut("managedFields") {
            for e in entries.iter_mut() {
                if let Some(e) = e.as_object_mut() {
                    e.remove("time");
                }
            }
        }
    }
    o
}

const GENERATE_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn dns_subdomain_errors(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
    (!ok).then(|| {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string()
    })
}

impl Store {
    /// A store that keeps the last `history_limit` events for watches to resume from.
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(65536);
        let mut state = State {
            rv: 0,
            objects: HashMap::new(),
            history: VecDeque::new(),
            floor: 0,
            types: resources::builtins(),
            seq: 0,
        };
        let ns_type = resources::builtins().remove(0);
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            state.rv += 1;
            let uid = state.next_uid();
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": uid, "resourceVersion": state.rv.to_string(),
                    "creationTimestamp": now_rfc3339(), "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            state
                .bucket(&ns_type)
                .insert((String::new(), ns.to_string()), obj);
        }
        state.floor = state.rv;
        Self {
            state: Mutex::new(state),
            tx,
            history_limit: history_limit.max(1),
            expired: Default::default(),
        }
    }

    /// Locks the state; a poisoned lock is taken over (a panicking request leaves no half-write).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to live events; call with the lock held so nothing is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Counts a watch answered with 410 Expired.
    pub fn note_expired(&self) {
        self.expired
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many watches were answered with 410 Expired so far.
    pub fn expired_watches(&self) -> u64 {
        self.expired.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// All served types.
    pub fn types(&self) -> Vec<ResourceType> {
        self.lock().types.clone()
    }

    fn emit(&self, st: &mut State, ev: Event) {
        let ev = Arc::new(ev);
        st.history.push_back(ev.clone());
        while st.history.len() > self.history_limit {
            if let Some(old) = st.history.pop_front() {
                st.floor = old.rv;
            }
        }
        // No receivers is fine.
        let _ = self.tx.send(ev);
    }

    // === reads ===

    /// One object.
    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        let st = self.lock();
        st.get(rt, ns, name).map(|o| present(rt, o.clone()))
    }

    /// Objects in a namespace (or all, when `ns` is None), and the list resourceVersion.
    pub fn list(&self, rt: &ResourceType, ns: Option<&str>) -> (Vec<Value>, u64) {
        let st = self.lock();
        (
            st.list(rt, ns)
                .into_iter()
                .map(|o| present(rt, o))
                .collect(),
            st.rv,
        )
    }

    // === writes ===

    /// POST: creates an object.
    pub fn create(&self, o: &WriteOpts<'_>, obj: Value) -> ApiResult<Value> {
        let rt = o.rt;
        let mut obj = stored_body(rt, obj)?;
        let mut st = self.lock();
        let body_ns = str_field(meta(&obj), "namespace").to_string();
        if rt.namespaced {
            if !body_ns.is_empty() && body_ns != o.namespace {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if st.get_ns(o.namespace).is_none() {
                return Err(ApiError::not_found("", "namespaces", o.namespace));
            }
            meta_mut(&mut obj).insert("namespace".into(), json!(o.namespace));
        } else {
            meta_mut(&mut obj).remove("namespace");
        }
        let mut name = str_field(meta(&obj), "name").to_string();
        if name.is_empty() {
            let prefix = str_field(meta(&obj), "generateName").to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    "",
                    &[FieldError::required_because(
                        "metadata.name",
                        "name or generateName is required",
                    )],
                ));
            }
            loop {
                st.seq += 1;
                let mut n = st.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (st.rv << 7);
                let mut suffix = String::new();
                for _ in 0..5 {
                    suffix.push(GENERATE_CHARS[(n % GENERATE_CHARS.len() as u64) as usize] as char);
                    n /= GENERATE_CHARS.len() as u64;
                }
                name = format!("{prefix}{suffix}");
                if st.get(rt, o.namespace, &name).is_err() {
                    break;
                }
            }
            meta_mut(&mut obj).insert("name".into(), json!(name));
        }
        if let Some(why) = dns_subdomain_errors(&name) {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                &name,
                &[FieldError::invalid(
                    "metadata.name",
                    &format!("\"{name}\""),
                    &why,
                )],
            ));
        }
        if st.get(rt, o.namespace, &name).is_ok() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        let uid = st.next_uid();
        {
            let m = meta_mut(&mut obj);
            for k in [
                "resourceVersion",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
            ] {
                m.remove(k);
            }
            m.insert("uid".into(), json!(uid));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            if rt.has_generation {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        obj["apiVersion"] = json!(storage_api_version(&st, rt));
        obj["kind"] = json!(rt.kind);
        if rt.status_subresource && rt.custom {
            // NB: custom resources drop status on create when /status is a subresource.
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        if rt.group.is_empty() && rt.plural == "namespaces" {
            obj["status"] = json!({"phase": "Active"});
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
        }
        self.admit(&st, rt, &mut obj, None, o.strict)?;
        ssa::record(
            &mut obj,
            None,
            &o.managed,
            o.subresource,
            &rt.api_version(),
            rt.schema.as_ref(),
        );
        if o.dry_run {
            return Ok(present(rt, obj));
        }
        st.rv += 1;
        let rv = st.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        st.bucket(rt)
            .insert((o.namespace.to_string(), name), obj.clone());
        self.emit(
            &mut st,
            Event {
                rv,
                key: rt.key(),
                namespace: o.namespace.to_string(),
                type_: EventType::Added,
                object: obj.clone(),
                old: None,
            },
        );
        if rt.group == "apiextensions.k8s.io" {
            st.refresh_types();
        }
        Ok(present(rt, obj))
    }

    /// PUT (and the end of every PATCH): replaces an object, honouring resourceVersion.
    pub fn update(&self, o: &WriteOpts<'_>, name: &str, obj: Value) -> ApiResult<(Value, bool)> {
        let mut st = self.lock();
        let old = st.get(o.rt, o.namespace, name)?.clone();
        self.update_locked(&mut st, o, name, old, obj, true)
    }

    /// Reads the object, lets `f` compute the new one from it, and writes it, all under the
    /// lock: PATCH never sees a conflict it did not ask for. With `create` set (server-side
    /// apply), `f` gets `None` for a missing object and the result is created.
    pub fn modify(
        &self,
        o: &WriteOpts<'_>,
        name: &str,
        create: bool,
        f: impl FnOnce(Option<&Value>) -> ApiResult<(Value, ManagedOp)>,
    ) -> ApiResult<(Value, bool)> {
        let mut st = self.lock();
        let old = match st.get(o.rt, o.namespace, name) {
            Ok(v) => Some(v.clone()),
            Err(e) if !create => return Err(e),
            Err(_) => None,
        };
        let presented = old.clone().map(|v| present(o.rt, v));
        let (new, managed) = f(presented.as_ref())?;
        let opts = WriteOpts { managed, ..*o };
        match old {
            Some(old) => self.update_locked(&mut st, &opts, name, old, new, false),
            None => {
                drop(st);
                let mut new = new;
                meta_mut(&mut new).insert("name".into(), json!(name));
                self.create(&opts, new).map(|v| (v, true))
            }
        }
    }

    fn update_locked(
        &self,
        st: &mut MutexGuard<'_, State>,
        o: &WriteOpts<'_>,
        name: &str,
        old: Value,
        obj: Value,
        require_rv: bool,
    ) -> ApiResult<(Value, bool)> {
        let rt = o.rt;
        let mut obj = stored_body(rt, obj)?;
        let body_name = str_field(meta(&obj), "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = str_field(meta(&obj), "namespace");
        if rt.namespaced && !body_ns.is_empty() && body_ns != o.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let old_rv = str_field(meta(&old), "resourceVersion").to_string();
        match str_field(meta(&obj), "resourceVersion") {
            "" if require_rv && rt.custom => {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    name,
                    &[FieldError::invalid(
                        "metadata.resourceVersion",
                        "0x0",
                        "must be specified for an update",
                    )],
                ));
            }
            "" => {}
            rv if rv != old_rv => {
                return Err(ApiError::conflict(
                    &rt.group,
                    &rt.plural,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            _ => {}
        }
        // Carry over what clients cannot change.
        {
            let om = meta(&old).clone();
            let m = meta_mut(&mut obj);
            m.insert("name".into(), json!(name));
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
            ] {
                match om.get(k) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
            if rt.namespaced {
                m.insert("namespace".into(), json!(o.namespace));
            }
            if let Some(v) = om.get("resourceVersion") {
                m.insert("resourceVersion".into(), v.clone());
            }
        }
        obj["apiVersion"] = old["apiVersion"].clone();
        obj["kind"] = json!(rt.kind);
        if o.subresource == Some("status") {
            // Only status changes through /status.
            let status = obj.get("status").cloned();
            let managed = obj["metadata"]["managedFields"].clone();
            obj = old.clone();
            obj["metadata"]["managedFields"] = managed;
            match status {
                Some(s) => obj["status"] = s,
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        } else if rt.status_subresource {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    if let Some(m) = obj.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        // Finalizers may only be removed once deletion started.
        let deleting = !meta(&old)["deletionTimestamp"].is_null();
        if deleting && o.subresource.is_none() {
            let old_f: Vec<Value> = meta(&old)["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let new_f: Vec<Value> = meta(&obj)["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if new_f.iter().any(|f| !old_f.contains(f)) {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    name,
                    &[FieldError::forbidden(
                        "metadata.finalizers",
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        self.admit(st, rt, &mut obj, Some(&old), o.strict)?;
        if rt.has_generation
            && spec_part(&obj, rt.status_subresource) != spec_part(&old, rt.status_subresource)
        {
            let g = meta(&old)["generation"].as_i64().unwrap_or(1) + 1;
            meta_mut(&mut obj).insert("generation".into(), json!(g));
        }
        ssa::record(
            &mut obj,
            Some(&old),
            &o.managed,
            o.subresource,
            &rt.api_version(),
            rt.schema.as_ref(),
        );
        let remove = deleting && !has_finalizers(&obj);
        if comparable(&obj) == comparable(&old) && !remove {
            // A no-op write keeps the resourceVersion, like the real server.
            return Ok((present(rt, old), false));
        }
        if o.dry_run {
            return Ok((present(rt, obj), false));
        }
        st.rv += 1;
        let rv = st.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let key = (o.namespace.to_string(), name.to_string());
        if remove {
            st.bucket(rt).remove(&key);
            self.emit(
                st,
                Event {
                    rv,
                    key: rt.key(),
                    namespace: key.0,
                    type_: EventType::Deleted,
                    object: obj.clone(),
                    old: Some(old),
                },
            );
        } else {
            st.bucket(rt).insert(key.clone(), obj.clone());
            self.emit(
                st,
                Event {
                    rv,
                    key: rt.key(),
                    namespace: key.0,
                    type_: EventType::Modified,
                    object: obj.clone(),
                    old: Some(old),
                },
            );
        }
        if rt.group == "apiextensions.k8s.io" {
            st.refresh_types();
        }
        Ok((present(rt, obj), false))
    }

    /// DELETE: removes the object, or marks it deleting while finalizers remain.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let mut st = self.lock();
        let old = st.get(rt, ns, name)?.clone();
        let pre = &options["preconditions"];
        if let Some(uid) = pre["uid"].as_str()
            && uid != str_field(meta(&old), "uid")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    str_field(meta(&old), "uid")
                ),
            ));
        }
        if let Some(rv) = pre["resourceVersion"].as_str()
            && rv != str_field(meta(&old), "resourceVersion")
        {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    str_field(meta(&old), "resourceVersion")
                ),
            ));
        }
        if dry_run {
            return Ok(present(rt, old));
        }
        if has_finalizers(&old) {
            if !meta(&old)["deletionTimestamp"].is_null() {
                return Ok(present(rt, old));
            }
            let mut obj = old.clone();
            st.rv += 1;
            let rv = st.rv;
            {
                let m = meta_mut(&mut obj);
                m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
                m.insert("resourceVersion".into(), json!(rv.to_string()));
                if rt.has_generation {
                    let g = m.get("generation").and_then(Value::as_i64).unwrap_or(1) + 1;
                    m.insert("generation".into(), json!(g));
                }
            }
            st.bucket(rt)
                .insert((ns.to_string(), name.to_string()), obj.clone());
            self.emit(
                &mut st,
                Event {
                    rv,
                    key: rt.key(),
                    namespace: ns.to_string(),
                    type_: EventType::Modified,
                    object: obj.clone(),
                    old: Some(old),
                },
            );
            return Ok(present(rt, obj));
        }
        // Deleting a namespace removes its contents at once; deleting a CRD removes its objects.
        if rt.group.is_empty() && rt.plural == "namespaces" {
            let keys: Vec<(String, String)> = st.objects.keys().cloned().collect();
            for k in keys {
                let victims: Vec<ObjKey> = st.objects[&k]
                    .keys()
                    .filter(|(n, _)| n == name)
                    .cloned()
                    .collect();
                for v in victims {
                    self.remove_locked(&mut st, &k, &v);
                }
            }
        }
        if rt.group == "apiextensions.k8s.io" {
            let key = (
                str_field(&old["spec"], "group").to_string(),
                str_field(&old["spec"]["names"], "plural").to_string(),
            );
            let victims: Vec<ObjKey> = st
                .objects
                .get(&key)
                .map(|b| b.keys().cloned().collect())
                .unwrap_or_default();
            for v in victims {
                self.remove_locked(&mut st, &key, &v);
            }
        }
        let obj = self.remove_locked(&mut st, &rt.key(), &(ns.to_string(), name.to_string()));
        if rt.group == "apiextensions.k8s.io" {
            st.refresh_types();
        }
        Ok(present(rt, obj.unwrap_or(old)))
    }

    fn remove_locked(
        &self,
        st: &mut State,
        key: &(String, String),
        obj_key: &ObjKey,
    ) -> Option<Value> {
        let mut obj = st.objects.get_mut(key)?.remove(obj_key)?;
        st.rv += 1;
        let rv = st.rv;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.emit(
            st,
            Event {
                rv,
                key: key.clone(),
                namespace: obj_key.0.clone(),
                type_: EventType::Deleted,
                object: obj.clone(),
                old: None,
            },
        );
        Some(obj)
    }

    /// Custom resources: prune, default and validate against the CRD schema and its CEL rules.
    fn admit(
        &self,
        st: &State,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
        strict: bool,
    ) -> ApiResult<()> {
        let name = str_field(meta(obj), "name").to_string();
        if rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions" {
            let errs = resources::validate_crd(obj);
            if !errs.is_empty() {
                return Err(ApiError::invalid(&rt.group, &rt.kind, &name, &errs));
            }
            // Established and NamesAccepted at once: the server serves a CRD as soon as it is stored.
            let names = obj["spec"]["names"].clone();
            let mut accepted = names.clone();
            if accepted["singular"].is_null() {
                accepted["singular"] = json!(str_field(&names, "kind").to_lowercase());
            }
            if accepted["listKind"].is_null() {
                accepted["listKind"] = json!(format!("{}List", str_field(&names, "kind")));
            }
            let stored: Vec<Value> = obj["spec"]["versions"]
                .as_array()
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v["storage"] == json!(true))
                        .map(|v| v["name"].clone())
                        .collect()
                })
                .unwrap_or_default();
            let ts = old
                .and_then(|o| o["status"]["conditions"].as_array())
                .and_then(|c| c.first())
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now_rfc3339()));
            obj["status"] = json!({
                "acceptedNames": accepted,
                "storedVersions": stored,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": ts},
                    {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": ts},
                ],
            });
            return Ok(());
        }
        if !rt.custom {
            return Ok(());
        }
        // Validate against the schema of the version the object is written in.
        let ty = st
            .types
            .iter()
            .find(|t| t.group == rt.group && t.plural == rt.plural && t.version == rt.version)
            .unwrap_or(rt);
        let Some(schema) = &ty.schema else {
            return Ok(());
        };
        let unknown = validation::prune_and_default(schema, obj);
        let mut errs = vec![];
        if strict && !unknown.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{}: {}",
                "strict decoding error",
                unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        validation::validate(schema, obj, old, "", &mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&rt.group, &rt.kind, &name, &errs))
        }
    }
}

fn check_type_meta(rt: &ResourceType, obj: &Value) -> ApiResult<()> {
    let kind = str_field(obj, "kind");
    if !kind.is_empty() && kind != rt.kind {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            str_field(obj, "apiVersion"),
            rt.api_version()
        )));
    }
    Ok(())
}

fn storage_api_version(st: &State, rt: &ResourceType) -> String {
    st.types
        .iter()
        .find(|t| t.key() == rt.key() && t.storage)
        .map(ResourceType::api_version)
        .unwrap_or_else(|| rt.api_version())
}

/// The object as a client of `rt`'s version sees it.
pub fn present(rt: &ResourceType, obj: Value) -> Value {
    let mut obj = events::present(rt, obj);
    obj["apiVersion"] = json!(rt.api_version());
    obj
}

impl State {
    fn next_uid(&mut self) -> String {
        self.seq += 1;
        let n = self.seq;
        let t = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            (t >> 16) as u32,
            (t & 0xffff) as u16,
            (n >> 12) & 0xfff,
            n & 0xfff,
            n.wrapping_mul(0x9E37_79B9) & 0xffff_ffff_ffff
        )
    }

    fn bucket(&mut self, rt: &ResourceType) -> &mut BTreeMap<ObjKey, Value> {
        self.objects.entry(rt.key()).or_default()
    }

    fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<&Value> {
        self.objects
            .get(&rt.key())
            .and_then(|b| b.get(&(ns.to_string(), name.to_string())))
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))
    }

    fn get_ns(&self, name: &str) -> Option<&Value> {
        self.objects
            .get(&(String::new(), "namespaces".to_string()))?
            .get(&(String::new(), name.to_string()))
    }

    fn list(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .get(&rt.key())
            .map(|b| {
                b.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn refresh_types(&mut self) {
        let mut types = resources::builtins();
        let crds = self.list(&types[types.len() - 1], None);
        for crd in &crds {
            types.extend(resources::from_crd(crd));
        }
        self.types = types;
    }

    /// Objects of a type for a watch's initial events.
    pub fn snapshot(&self, rt: &ResourceType, ns: Option<&str>) -> Vec<Value> {
        self.list(rt, ns)
    }

    /// Events after `rv`, or None when some of them are no longer kept.
    pub fn events_since(&self, rv: u64) -> Option<Vec<Arc<Event>>> {
        if rv < self.floor {
            return None;
        }
        Some(self.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    /// The oldest resourceVersion a watch can resume from.
    pub fn floor(&self) -> u64 {
        self.floor
    }
}

/// A request body as it is stored: a JSON object of the type the URL names, in the
/// storage form (core Events for both Event APIs).
fn stored_body(rt: &ResourceType, obj: Value) -> ApiResult<Value> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    check_type_meta(rt, &obj)?;
    Ok(events::to_storage(rt, obj))
}

//! One reconciler per kind, each a few named steps: read state, decide, call the engine,
//! write status. Owns the Kubernetes side (finalizers, status, events, backoff).
//! Holds no SQL: everything that touches a database goes through [`crate::engine`].

pub mod bluegreen;
pub mod database;
pub mod database_project;
pub mod environment;
pub mod fetch;
pub mod promotion;
pub mod review;
pub mod shared_database;
pub mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::api::conditions::reasons;
use crate::metrics::Metrics;
use crate::registry::Committer;

/// Read-only caches fed by watches, so that reconciles read referenced objects without API
/// requests (an idle controller makes none beyond its watches).
#[derive(Clone)]
pub struct Stores {
    /// Every DatabaseProject in scope.
    pub projects: Store<crate::api::DatabaseProject>,
    /// Every ConfigMap in scope (project sources).
    pub configmaps: Store<k8s_openapi::api::core::v1::ConfigMap>,
    /// Every Environment in scope (which ones share a database).
    pub environments: Store<crate::api::Environment>,
    /// Every Secret in scope (database connections, git credentials).
    pub secrets: Store<k8s_openapi::api::core::v1::Secret>,
}

impl Stores {
    /// Looks up `name` in `ns`.
    pub fn get<K>(store: &Store<K>, ns: &str, name: &str) -> Option<std::sync::Arc<K>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        store.get(&ObjectRef::new(name).within(ns))
    }
}

/// Shared by every reconcile.
pub struct Context {
    /// Caches of referenced objects.
    pub stores: Stores,
    /// The Kubernetes client.
    pub client: Client,
    /// Publishes Events.
    events: Events,
    /// The controller's metrics.
    pub metrics: Metrics,
    /// Where project files are unpacked, one directory per content digest, and the source
    /// cache lives (`git/`, `artifacts/`).
    pub workdir: PathBuf,
    /// Git repositories and their artifacts, under `workdir`.
    pub git: crate::source::GitCache,
    /// Flux artifacts, under `workdir`.
    pub flux: crate::source::flux::FluxCache,
    /// Projects held in ConfigMaps, under `workdir`.
    pub configmaps: crate::source::ConfigMapCache,
    /// Who the registry records as deployer.
    pub committer: Committer,
    /// Consecutive transient failures per object, for capped exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context for `client`.
    pub fn new(
        client: Client,
        stores: Stores,
        reporter: Reporter,
        metrics: Metrics,
        workdir: PathBuf,
        committer: Committer,
        limits: crate::source::Limits,
    ) -> Context {
        Context {
            stores,
            events: Events::new(client.clone(), reporter),
            client,
            metrics,
            git: crate::source::GitCache::new(&workdir, limits),
            flux: crate::source::flux::FluxCache::new(&workdir, limits),
            configmaps: crate::source::ConfigMapCache::new(&workdir, limits),
            workdir,
            committer,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The wait before the next retry of `key`: `base` doubled per consecutive failure,
    /// capped at `cap`.
    pub fn backoff(&self, key: &str, base: Duration, cap: Duration) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        let wait = backoff_delay(base, cap, *n);
        *n = n.saturating_add(1);
        wait
    }

    /// Forgets `key`'s failures after a success.
    pub fn reset_backoff(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Publishes an Event about `obj`; failures to publish are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(truncate_note(note)),
            action: action.to_string(),
            secondary: None,
        };
        let recorder = self
            .events
            .recorder(event.note.as_deref().unwrap_or_default());
        if let Err(error) = recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(%error, reason, "Publishing an event failed");
        }
    }
}

/// Event recorders, one per distinct note. kube's [`Recorder`] folds every event of one
/// reason and action on one object into a series that keeps the first note, so a second
/// `ApprovalPending` would still show the first digest, and a second drift finding would
/// not be seen at all. Kubernetes' own recorder keys on the message too; a recorder per
/// note does the same: a repeated note is a series, a new note a new Event.
struct Events {
    client: Client,
    reporter: Reporter,
    by_note: Mutex<HashMap<u64, Recorder>>,
}

impl Events {
    /// Notes remembered; past this the map starts afresh (kube's series last 6 minutes).
    const NOTES: usize = 1024;

    fn new(client: Client, reporter: Reporter) -> Events {
        Events {
            client,
            reporter,
            by_note: Mutex::new(HashMap::new()),
        }
    }

    fn recorder(&self, note: &str) -> Recorder {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        note.hash(&mut hasher);
        let mut by_note = self.by_note.lock().unwrap_or_else(|e| e.into_inner());
        if by_note.len() >= Self::NOTES {
            by_note.clear();
        }
        by_note
            .entry(hasher.finish())
            .or_insert_with(|| Recorder::new(self.client.clone(), self.reporter.clone()))
            .clone()
    }
}

/// `base * 2^n`, capped.
pub fn backoff_delay(base: Duration, cap: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX))
        .min(cap)
}

fn truncate_note(note: String) -> String {
    if note.len() <= 1000 {
        return note;
    }
    let mut end = 1000;
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

/// Error policy shared by every kind: log once, count by kind and reason, then wait for a
/// spec change (terminal) or retry with capped backoff (transient).
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> kube::runtime::controller::Action {
    use kube::runtime::controller::Action;
    tracing::warn!(%error, name = %obj.name_any(), "Reconcile failed");
    ctx.metrics.failure(&K::kind(&()), error.reason());
    if error.is_terminal() {
        Action::await_change()
    } else {
        Action::requeue(ctx.backoff(
            &object_key(obj.as_ref()),
            Duration::from_secs(1),
            Duration::from_secs(60),
        ))
    }
}

/// A key naming one object, for backoff bookkeeping.
pub fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Everything a reconcile can fail with that it does not report in status itself.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("kubernetes api: {0}")]
    Kube(#[from] kube::Error),
    /// The object lacks a key it must have.
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The condition and metric reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) | Error::Finalizer(_) => reasons::KUBE_ERROR,
            Error::MissingObjectKey(_) => reasons::MISSING_OBJECT_KEY,
        }
    }

    /// Terminal errors wait for a spec change; the rest are retried with backoff.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Error::MissingObjectKey(_))
    }
}

/// Parses a duration like `30s`, `5m`, `1h30m`, `250ms` (the CRD pattern guarantees the shape).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            'h' => 3600.0,
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    if !number.is_empty() || !any {
        return None;
    }
    Some(Duration::from_secs_f64(total))
}

/// The `switchyard.dev/requestedAt` annotation, when set.
pub fn requested_at<K: ResourceExt>(obj: &K) -> Option<String> {
    obj.annotations().get(crate::api::REQUESTED_AT).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_duration_reads_go_style_durations() {
        let cases = [
            ("30s", Some(30_000)),
            ("5m", Some(300_000)),
            ("1h30m", Some(5_400_000)),
            ("250ms", Some(250)),
            ("1.5s", Some(1_500)),
            ("", None),
            ("10", None),
            ("3d", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_duration(text).map(|d| d.as_millis() as u64),
                want,
                "{text:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(60);
        let got: Vec<u64> = (0..5)
            .map(|n| backoff_delay(base, cap, n).as_secs())
            .collect();
        assert_eq!(got, [10, 20, 40, 60, 60]);
        assert_eq!(backoff_delay(base, cap, 100), cap, "no overflow");
    }
}

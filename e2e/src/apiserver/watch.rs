//! Watch streams: initial events (for no resourceVersion, `0`, or `sendInitialEvents=true`
//! with its end-of-initial-events BOOKMARK), replay from the bounded history, `410 Expired` as
//! an ERROR event for a resourceVersion older than the history, live events filtered by
//! namespace and selectors (objects moving in or out of a selector appear as ADDED/DELETED),
//! periodic BOOKMARKs, and `timeoutSeconds`. Reads the store; never writes it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::resources::ResourceType;
use super::selector::Selector;
use super::status::{ApiError, ApiResult};
use super::store::{Event, EventType, Store, present};

/// What a watch asks for.
pub struct WatchParams {
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `sendInitialEvents=true`.
    pub send_initial_events: bool,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// Namespace, None for all.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: Selector,
    /// `fieldSelector`.
    pub fields: Selector,
}

struct Filter {
    rt: ResourceType,
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The line a watcher gets for an event, if any.
    fn render(&self, ev: &Event) -> Option<Bytes> {
        if ev.key != self.rt.key()
            || self
                .namespace
                .as_ref()
                .is_some_and(|ns| *ns != ev.namespace)
        {
            return None;
        }
        // Selectors see the object as this client's version shows it.
        let object = present(&self.rt, ev.object.clone());
        let now = self.matches(&object);
        let type_ = match ev.type_ {
            EventType::Modified => {
                let before = ev
                    .old
                    .as_ref()
                    .is_some_and(|o| self.matches(&present(&self.rt, o.clone())));
                match (before, now) {
                    (true, true) => EventType::Modified,
                    (false, true) => EventType::Added,
                    (true, false) => EventType::Deleted,
                    (false, false) => return None,
                }
            }
            t if now => t,
            _ => return None,
        };
        Some(line(type_.as_str(), &object))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": meta}),
        )
    }
}

fn line(type_: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": type_, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Starts a watch; the returned channel yields newline-delimited JSON events and closes when
/// the watch ends (timeout, expired history, lag, shutdown, or the client going away).
pub fn start(
    store: &Arc<Store>,
    rt: &ResourceType,
    p: WatchParams,
    bookmark_interval: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> ApiResult<mpsc::Receiver<Bytes>> {
    let filter = Filter {
        rt: rt.clone(),
        namespace: p.namespace.clone(),
        labels: p.labels,
        fields: p.fields,
    };
    let rv_param = p.resource_version.as_deref().filter(|s| !s.is_empty());
    let from: Option<u64> = match rv_param {
        None | Some("0") => None,
        Some(s) => Some(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}")))?,
        ),
    };
    let mut initial = vec![];
    let (mut rx, start_rv) = {
        let st = store.lock();
        let rx = store.subscribe();
        let snapshot = |initial: &mut Vec<Bytes>| {
            for obj in st.snapshot(rt, p.namespace.as_deref()) {
                let obj = present(rt, obj);
                if filter.matches(&obj) {
                    initial.push(line("ADDED", &obj));
                }
            }
        };
        if p.send_initial_events {
            snapshot(&mut initial);
            initial.push(filter.bookmark(st.rv, true));
        } else {
            match from {
                None => snapshot(&mut initial),
                Some(rv) => match st.events_since(rv) {
                    Some(events) => initial.extend(events.iter().filter_map(|e| filter.render(e))),
                    None => {
                        store.note_expired();
                        let err = ApiError::expired(format!(
                            "too old resource version: {rv} ({})",
                            st.floor() + 1
                        ));
                        initial.push(line("ERROR", &err.to_status()));
                        let (tx, out) = mpsc::channel(initial.len());
                        for l in initial {
                            let _ = tx.try_send(l);
                        }
                        return Ok(out);
                    }
                },
            }
        }
        (rx, st.rv)
    };
    let (tx, out) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        for l in initial {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        let mut last = start_rv;
        let deadline = p.timeout.map(|d| tokio::time::Instant::now() + d);
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + bookmark_interval,
            bookmark_interval,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(ev) => {
                        if ev.rv <= last {
                            continue;
                        }
                        last = ev.rv;
                        if let Some(l) = filter.render(&ev)
                            && tx.send(l).await.is_err()
                        {
                            return;
                        }
                    }
                    // A watcher that fell behind is closed; the client resumes from its last
                    // resourceVersion like after any dropped connection.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if p.bookmarks => {
                    if tx.send(filter.bookmark(last, false)).await.is_err() {
                        return;
                    }
                }
                _ = timeout => {
                    if p.bookmarks {
                        let _ = tx.send(filter.bookmark(last, false)).await;
                    }
                    return;
                }
                _ = tx.closed() => return,
                _ = shutdown.changed() => return,
            }
        }
    });
    Ok(out)
}

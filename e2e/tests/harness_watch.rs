//! Watch semantics of the harness API server, raw (replay, selectors, 410, streaming lists,
//! bookmarks) and through kube-rs (watcher + reflector through bursts of 1,000 objects, with
//! and without bookmarks, with streaming lists, across a forced 410 re-list; a Controller
//! that reconciles every object to its latest generation).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e::apiserver::testing::{fixture_docs, raw, raw_json};
use e2e::apiserver::{ApiServer, Config};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use serde_json::{Value, json};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"v": "0"}})
}

fn list_rv(url: &str, path: &str) -> String {
    raw(url, "GET", path, &[], b"").unwrap().json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

fn watch_lines(url: &str, query: &str) -> Vec<Value> {
    let r = raw(
        url,
        "GET",
        &format!("{CMS}?watch=true&timeoutSeconds=1&{query}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.code, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    r.lines()
}

fn summary(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["type"] != "BOOKMARK")
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn watch_replays_history_and_applies_selectors() {
    let srv = ApiServer::start().unwrap();
    let url = srv.url();
    let start = list_rv(url, CMS);
    raw_json(
        url,
        "POST",
        CMS,
        "application/json",
        &cm("a", json!({"app": "x"})),
    )
    .unwrap();
    raw_json(
        url,
        "POST",
        CMS,
        "application/json",
        &cm("b", json!({"app": "y"})),
    )
    .unwrap();
    let merge = "application/merge-patch+json";
    raw_json(
        url,
        "PATCH",
        &format!("{CMS}/a"),
        merge,
        &json!({"data": {"v": "1"}}),
    )
    .unwrap();
    raw_json(
        url,
        "PATCH",
        &format!("{CMS}/b"),
        merge,
        &json!({"metadata": {"labels": {"app": "x"}}}),
    )
    .unwrap();
    raw_json(
        url,
        "PATCH",
        &format!("{CMS}/a"),
        merge,
        &json!({"metadata": {"labels": {"app": "z"}}}),
    )
    .unwrap();
    raw(url, "DELETE", &format!("{CMS}/b"), &[], b"").unwrap();

    let all = watch_lines(url, &format!("resourceVersion={start}"));
    let s = |t: &str, n: &str| (t.to_string(), n.to_string());
    assert_eq!(
        summary(&all),
        [
            s("ADDED", "a"),
            s("ADDED", "b"),
            s("MODIFIED", "a"),
            s("MODIFIED", "b"),
            s("MODIFIED", "a"),
            s("DELETED", "b")
        ]
    );
    let rvs: Vec<u64> = all
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "{rvs:?}");

    // Objects moving into and out of a selector appear as ADDED and DELETED.
    let x = watch_lines(
        url,
        &format!("resourceVersion={start}&labelSelector=app%3Dx"),
    );
    assert_eq!(
        summary(&x),
        [
            s("ADDED", "a"),
            s("MODIFIED", "a"),
            s("ADDED", "b"),
            s("DELETED", "a"),
            s("DELETED", "b")
        ]
    );
    let named = watch_lines(
        url,
        &format!("resourceVersion={start}&fieldSelector=metadata.name%3Db"),
    );
    assert_eq!(
        summary(&named),
        [s("ADDED", "b"), s("MODIFIED", "b"), s("DELETED", "b")]
    );

    // No resourceVersion: the current state first.
    assert_eq!(summary(&watch_lines(url, "")), [s("ADDED", "a")]);
}

#[test]
fn too_old_resource_version_gets_410_as_an_error_event() {
    let srv = ApiServer::start_with(Config {
        history_limit: 5,
        ..Config::default()
    })
    .unwrap();
    let url = srv.url();
    let old = list_rv(url, CMS);
    for i in 0..10 {
        raw_json(
            url,
            "POST",
            CMS,
            "application/json",
            &cm(&format!("c{i}"), json!({})),
        )
        .unwrap();
    }
    let events = watch_lines(url, &format!("resourceVersion={old}"));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ERROR");
    let status = &events[0]["object"];
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("too old resource version")
    );
    assert_eq!(srv.store().expired_watches(), 1);
    let recent = list_rv(url, CMS);
    let events = watch_lines(url, &format!("resourceVersion={recent}"));
    assert!(events.iter().all(|e| e["type"] != "ERROR"), "{events:?}");
}

#[test]
fn streaming_list_sends_initial_events_then_a_marked_bookmark() {
    let srv = ApiServer::start_with(Config {
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .unwrap();
    let url = srv.url();
    for n in ["a", "b", "c"] {
        raw_json(url, "POST", CMS, "application/json", &cm(n, json!({}))).unwrap();
    }
    let rv = list_rv(url, CMS);
    let events = watch_lines(
        url,
        "sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true",
    );
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        &types[..4],
        ["ADDED", "ADDED", "ADDED", "BOOKMARK"],
        "{events:?}"
    );
    let end = &events[3]["object"];
    assert_eq!(
        end["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(end["metadata"]["resourceVersion"], rv.as_str());
    assert_eq!(end["kind"], "ConfigMap");
    // Periodic bookmarks afterwards (every 200ms over the 1s timeout).
    let later = events[4..]
        .iter()
        .filter(|e| e["type"] == "BOOKMARK")
        .count();
    assert!(later >= 3, "{events:?}");
    // Without allowWatchBookmarks there are none.
    let plain = watch_lines(url, &format!("resourceVersion={rv}"));
    assert!(plain.is_empty(), "{plain:?}");
}

// === kube-rs ===

async fn namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// Waits until the reflector's store holds exactly what the server lists.
async fn assert_converges(api: &Api<ConfigMap>, reader: &reflector::Store<ConfigMap>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let server: BTreeMap<String, String> = api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| {
                (
                    c.metadata.name.unwrap(),
                    c.metadata.resource_version.unwrap(),
                )
            })
            .collect();
        let local: BTreeMap<String, String> = reader
            .state()
            .iter()
            .map(|c| {
                (
                    c.metadata.name.clone().unwrap(),
                    c.metadata.resource_version.clone().unwrap(),
                )
            })
            .collect();
        if server == local {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "reflector diverged: {} on server, {} in store",
                server.len(),
                local.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn burst(api: &Api<ConfigMap>, n: usize) {
    let pp = PostParams::default();
    stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let pp = pp.clone();
            async move {
                let c: ConfigMap =
                    serde_json::from_value(cm(&format!("cm-{i}"), json!({"burst": "yes"})))
                        .unwrap();
                api.create(&pp, &c).await.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    stream::iter(0..n / 2)
        .map(|i| {
            let api = api.clone();
            async move {
                let p = Patch::Merge(json!({"data": {"v": format!("{i}")}}));
                api.patch(&format!("cm-{i}"), &PatchParams::default(), &p)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    stream::iter(n - n * 3 / 10..n)
        .map(|i| {
            let api = api.clone();
            async move {
                api.delete(&format!("cm-{i}"), &DeleteParams::default())
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
}

async fn reflect(
    api: &Api<ConfigMap>,
    wc: watcher::Config,
) -> (reflector::Store<ConfigMap>, tokio::task::JoinHandle<()>) {
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api.clone(), wc)).default_backoff();
    let task = tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while s.next().await.is_some() {}
    });
    tokio::time::timeout(Duration::from_secs(10), reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    (reader, task)
}

async fn reflector_through_burst(wc: watcher::Config, ns: &str) {
    let srv = ApiServer::start_with(Config {
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    })
    .unwrap();
    let client = srv.client().await.unwrap();
    namespace(&client, ns).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let (reader, task) = reflect(&api, wc).await;
    burst(&api, 1000).await;
    assert_converges(&api, &reader).await;
    assert_eq!(reader.state().len(), 700);
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_is_consistent_through_a_burst_with_bookmarks() {
    reflector_through_burst(watcher::Config::default(), "with-bookmarks").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_is_consistent_through_a_burst_without_bookmarks() {
    reflector_through_burst(
        watcher::Config::default().disable_bookmarks(),
        "no-bookmarks",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_is_consistent_through_a_burst_with_streaming_lists() {
    reflector_through_burst(watcher::Config::default().streaming_lists(), "streaming").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_recovers_through_a_forced_410_relist() {
    let srv = ApiServer::start_with(Config {
        history_limit: 100,
        ..Config::default()
    })
    .unwrap();
    let client = srv.client().await.unwrap();
    namespace(&client, "watched").await;
    namespace(&client, "noise").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "watched");
    let noise: Api<ConfigMap> = Api::namespaced(client.clone(), "noise");
    // No bookmarks and a 1s watch timeout: each re-watch resumes from the last event this
    // watcher saw, which the noise pushes out of the history.
    let (reader, task) = reflect(
        &api,
        watcher::Config::default().disable_bookmarks().timeout(1),
    )
    .await;
    burst(&api, 100).await;
    assert_converges(&api, &reader).await;
    burst(&noise, 400).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    burst_changes(&api).await;
    assert_converges(&api, &reader).await;
    assert!(
        srv.store().expired_watches() >= 1,
        "the watcher must have been sent a 410"
    );
    task.abort();
}

async fn burst_changes(api: &Api<ConfigMap>) {
    for i in 0..20 {
        api.patch(
            &format!("cm-{i}"),
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "late"}})),
        )
        .await
        .unwrap();
    }
    api.delete("cm-20", &DeleteParams::default()).await.unwrap();
}

#[derive(Debug)]
struct ReconcileError(String);

impl std::fmt::Display for ReconcileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReconcileError {}

struct Ctx {
    api: Api<DynamicObject>,
    seen: Mutex<HashMap<String, Vec<i64>>>,
}

async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, ReconcileError> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let generation = obj.metadata.generation.unwrap_or(0);
    ctx.seen
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_default()
        .push(generation);
    let status = Patch::Merge(json!({"status": {"observedGeneration": generation}}));
    ctx.api
        .patch_status(&name, &PatchParams::default(), &status)
        .await
        .map_err(|e| ReconcileError(e.to_string()))?;
    Ok(Action::await_change())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_reconciles_every_object_to_its_latest_generation() {
    let srv = ApiServer::start().unwrap();
    let client = srv.client().await.unwrap();
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject =
        serde_json::from_value(fixture_docs("widget-crd.yaml").unwrap().remove(0)).unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("test.switchyard.dev", "v1", "Widget"),
        "widgets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let ctx = Arc::new(Ctx {
        api: api.clone(),
        seen: Mutex::new(HashMap::new()),
    });
    let controller = Controller::new_with(api.clone(), watcher::Config::default(), ar.clone())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(200)),
            ctx.clone(),
        )
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    let n = 100;
    for i in 0..n {
        let w: DynamicObject = serde_json::from_value(
            json!({"apiVersion": "test.switchyard.dev/v1", "kind": "Widget",
            "metadata": {"name": format!("w{i}")}, "spec": {"size": 1, "configMap": "c"}}),
        )
        .unwrap();
        api.create(&PostParams::default(), &w).await.unwrap();
    }
    for round in 2..=4 {
        for i in 0..n {
            let p = Patch::Merge(json!({"spec": {"size": round}}));
            api.patch(&format!("w{i}"), &PatchParams::default(), &p)
                .await
                .unwrap();
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = api.list(&Default::default()).await.unwrap();
        let done = list.items.iter().all(|w| {
            w.metadata.generation == Some(4)
                && w.data["status"]["observedGeneration"].as_i64() == Some(4)
        });
        if done {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "controller did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = ctx.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), n);
    for (name, gens) in seen {
        assert!(
            gens.windows(2).all(|w| w[0] <= w[1]),
            "{name} went backwards: {gens:?}"
        );
        assert_eq!(gens.last(), Some(&4), "{name}: {gens:?}");
    }
    task.abort();
}

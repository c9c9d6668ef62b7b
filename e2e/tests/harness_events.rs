//! Core `v1` and `events.k8s.io/v1` Events are one store on the harness, converted between
//! the versions as a real server converts them (issue #12): what kube-rs's Recorder writes
//! through `events.k8s.io/v1` is read, listed by field selector, watched, updated and
//! patched through core `v1`, and the other way round; both print the server's event
//! columns.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::apiserver::ApiServer;
use e2e::apiserver::testing::raw;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use k8s_openapi::api::events::v1::Event as NewEvent;
use kube::Resource;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

async fn regarding(client: &kube::Client) -> ConfigMap {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dev"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap()
}

fn warning(note: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: "DeployFailed".into(),
        note: Some(note.into()),
        action: "Deploy".into(),
        secondary: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_events_are_core_events_with_every_field_converted() {
    let srv = ApiServer::start().unwrap();
    let client = srv.client().await.unwrap();
    let cm = regarding(&client).await;
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "switchyard-controller".into(),
            instance: Some("pod-1".into()),
        },
    );
    let reference = cm.object_ref(&());
    let note = "deploy/broken.sql:3: relation \"no_such_table\" does not exist";
    recorder.publish(&warning(note), &reference).await.unwrap();

    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let by_object = ListParams::default().fields(&format!(
        "involvedObject.kind=ConfigMap,involvedObject.name=dev,involvedObject.uid={}",
        cm.metadata.uid.clone().unwrap()
    ));
    let listed = core.list(&by_object).await.unwrap().items;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let e = &listed[0];
    assert_eq!(e.message.as_deref(), Some(note));
    assert_eq!(e.reason.as_deref(), Some("DeployFailed"));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.action.as_deref(), Some("Deploy"));
    assert_eq!(e.involved_object.name.as_deref(), Some("dev"));
    assert_eq!(e.involved_object.uid, cm.metadata.uid);
    assert_eq!(
        e.reporting_component.as_deref(),
        Some("switchyard-controller")
    );
    assert_eq!(e.reporting_instance.as_deref(), Some("pod-1"));
    assert!(e.event_time.is_some() && e.series.is_none());
    assert!(e.count.is_none() && e.first_timestamp.is_none());

    // A repeat is a merge patch of `series` through events.k8s.io/v1; core sees the series.
    recorder.publish(&warning(note), &reference).await.unwrap();
    let name = e.metadata.name.clone().unwrap();
    let again = core.get(&name).await.unwrap();
    assert_eq!(again.series.as_ref().unwrap().count, Some(2));
    assert_eq!(again.message.as_deref(), Some(note));
    assert_ne!(
        again.metadata.resource_version, e.metadata.resource_version,
        "the patch wrote the one stored object"
    );
    let newer: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let same = newer.get(&name).await.unwrap();
    assert_eq!(
        same.metadata.resource_version,
        again.metadata.resource_version
    );
    assert_eq!(same.note.as_deref(), Some(note));
    assert_eq!(
        same.regarding.as_ref().unwrap().uid,
        cm.metadata.uid,
        "regarding is involvedObject"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_writes_are_seen_through_events_k8s_io_and_back() {
    let srv = ApiServer::start().unwrap();
    let client = srv.client().await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let newer: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let written: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "old-style"},
        "involvedObject": {"kind": "Environment", "name": "dev", "namespace": "default"},
        "reason": "Deployed", "message": "deployed main@sha1:abc", "type": "Normal",
        "source": {"component": "kubelet", "host": "node-1"}, "count": 4,
        "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:10:00Z",
    }))
    .unwrap();
    core.create(&PostParams::default(), &written).await.unwrap();
    let seen = newer.get("old-style").await.unwrap();
    assert_eq!(seen.note.as_deref(), Some("deployed main@sha1:abc"));
    assert_eq!(
        seen.regarding.as_ref().unwrap().kind.as_deref(),
        Some("Environment")
    );
    assert_eq!(seen.deprecated_count, Some(4));
    let source = seen.deprecated_source.as_ref().unwrap();
    assert_eq!(source.component.as_deref(), Some("kubelet"));
    assert_eq!(source.host.as_deref(), Some("node-1"));
    assert!(seen.deprecated_first_timestamp.is_some() && seen.deprecated_last_timestamp.is_some());

    // Update (PUT) through events.k8s.io/v1, read through core.
    let mut changed = seen.clone();
    changed.note = Some("deployed main@sha1:def".into());
    changed.action = Some("Deploy".into());
    newer
        .replace("old-style", &PostParams::default(), &changed)
        .await
        .unwrap();
    let back = core.get("old-style").await.unwrap();
    assert_eq!(back.message.as_deref(), Some("deployed main@sha1:def"));
    assert_eq!(back.action.as_deref(), Some("Deploy"));
    assert_eq!(
        back.count,
        Some(4),
        "untouched fields survive the round trip"
    );

    // Patches in either version, each in its own names.
    core.patch(
        "old-style",
        &PatchParams::default(),
        &Patch::Merge(json!({"message": "from core"})),
    )
    .await
    .unwrap();
    assert_eq!(
        newer.get("old-style").await.unwrap().note.as_deref(),
        Some("from core")
    );
    newer
        .patch(
            "old-style",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/note", "value": "from newer"}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        core.get("old-style").await.unwrap().message.as_deref(),
        Some("from newer")
    );
    newer
        .patch(
            "old-style",
            &PatchParams::apply("tester").force(),
            &Patch::Apply(
                json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "reason": "Applied"}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        core.get("old-style").await.unwrap().reason.as_deref(),
        Some("Applied")
    );

    // Deleting through one version removes it from both.
    newer
        .delete("old-style", &Default::default())
        .await
        .unwrap();
    assert!(core.get_opt("old-style").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_in_one_version_sees_writes_in_the_other() {
    let srv = ApiServer::start().unwrap();
    let client = srv.client().await.unwrap();
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let newer: Api<NewEvent> = Api::namespaced(client.clone(), "default");
    let config = watcher::Config::default().fields("involvedObject.name=dev");
    let mut core_stream = watcher(core.clone(), config).applied_objects().boxed();
    let mut newer_stream = watcher(
        newer.clone(),
        watcher::Config::default().fields("regarding.name=dev"),
    )
    .applied_objects()
    .boxed();
    let created: NewEvent = serde_json::from_value(json!({
        "metadata": {"name": "w"}, "eventTime": "2024-01-01T00:00:00.000000Z",
        "regarding": {"kind": "Environment", "name": "dev"},
        "reportingController": "switchyard-controller", "reportingInstance": "pod-1",
        "reason": "Deployed", "action": "Deploy", "type": "Normal", "note": "one",
    }))
    .unwrap();
    newer
        .create(&PostParams::default(), &created)
        .await
        .unwrap();
    let wait = Duration::from_secs(10);
    let seen = tokio::time::timeout(wait, core_stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.message.as_deref(), Some("one"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("dev"));
    let seen = tokio::time::timeout(wait, newer_stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.note.as_deref(), Some("one"));

    core.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"message": "two"})),
    )
    .await
    .unwrap();
    let seen = tokio::time::timeout(wait, newer_stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.note.as_deref(), Some("two"));
}

#[test]
fn both_versions_print_the_server_event_columns() {
    let srv = ApiServer::start().unwrap();
    let event = json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "t"},
        "eventTime": "2024-01-01T00:00:00.000000Z",
        "series": {"count": 3, "lastObservedTime": "2024-01-01T00:05:00.000000Z"},
        "regarding": {"kind": "Environment", "name": "dev", "fieldPath": "spec"},
        "reportingController": "switchyard-controller", "reportingInstance": "pod-1",
        "reason": "DeployFailed", "action": "Deploy", "type": "Warning", "note": " deploy/x.sql:3 ",
    });
    let r = e2e::apiserver::testing::raw_json(
        srv.url(),
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "application/json",
        &event,
    )
    .unwrap();
    assert_eq!(r.code, 201, "{}", String::from_utf8_lossy(&r.body));
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    for path in [
        "/api/v1/namespaces/default/events",
        "/apis/events.k8s.io/v1/namespaces/default/events",
    ] {
        let t = raw(srv.url(), "GET", path, &[("Accept", table)], b"")
            .unwrap()
            .json();
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        let cells = &t["rows"][0]["cells"];
        let want: Value = json!([
            cells[0],
            "Warning",
            "DeployFailed",
            "environment/dev",
            "spec",
            "switchyard-controller, pod-1",
            "deploy/x.sql:3",
            cells[7],
            3,
            "t"
        ]);
        assert_eq!(cells, &want, "{path}");
    }
}

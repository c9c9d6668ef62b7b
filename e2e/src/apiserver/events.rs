//! Events: core `v1` and `events.k8s.io/v1` are two views of one stored object, as on a real
//! server, so an Event a controller records through `events.k8s.io/v1` is what `kubectl get
//! events` and `kubectl describe` list. Owns the conversion between the two versions and the
//! columns the server prints for events; `store` calls it on the way in and out, `table` for
//! its rows. Touches nothing else.
//!
//! Objects are stored in the core `v1` shape (Kubernetes keeps events in one etcd prefix, in
//! its internal form, which is the core one). The versions differ only in names:
//!
//! | core `v1`            | `events.k8s.io/v1`         |
//! |----------------------|----------------------------|
//! | `message`            | `note`                     |
//! | `involvedObject`     | `regarding`                |
//! | `source`             | `deprecatedSource`         |
//! | `firstTimestamp`     | `deprecatedFirstTimestamp` |
//! | `lastTimestamp`      | `deprecatedLastTimestamp`  |
//! | `count`              | `deprecatedCount`          |
//! | `reportingComponent` | `reportingController`      |
//!
//! `type`, `reason`, `action`, `related`, `eventTime`, `series` and `reportingInstance` keep
//! their names. NB: the server does not copy `eventTime` into `firstTimestamp` or
//! `reportingController` into `source.component`; readers fall back from one to the other
//! (the printers below, kubectl's `describe`), so an event written through one version is
//! shown the same through the other.

use serde_json::{Map, Value, json};

use super::resources::{PrinterColumn, ResourceType};
use super::table::human_age;

/// The group of the newer Events API.
pub const GROUP: &str = "events.k8s.io";

/// (core `v1` name, `events.k8s.io/v1` name) of every field the versions name differently.
const RENAMED: [(&str, &str); 7] = [
    ("message", "note"),
    ("involvedObject", "regarding"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// Whether `rt` is either version of Event.
pub fn is_event(rt: &ResourceType) -> bool {
    rt.plural == "events" && (rt.group.is_empty() || rt.group == GROUP)
}

/// Whether `(group, plural)` is `events.k8s.io` events, which live in core `v1`'s storage.
pub fn stored_as_core(group: &str, plural: &str) -> bool {
    group == GROUP && plural == "events"
}

/// An object as written through `rt`, in the stored (core `v1`) shape.
pub fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    if stored_as_core(&rt.group, &rt.plural) {
        to_core(obj)
    } else {
        obj
    }
}

/// A stored object as a client of `rt` sees it.
pub fn present(rt: &ResourceType, obj: Value) -> Value {
    if stored_as_core(&rt.group, &rt.plural) {
        to_events_v1(obj)
    } else {
        obj
    }
}

/// `events.k8s.io/v1` shape to core `v1`. Core names in the input are not part of
/// `events.k8s.io/v1`: they are dropped, as the server prunes unknown fields.
pub fn to_core(obj: Value) -> Value {
    rename(obj, false)
}

/// Core `v1` shape to `events.k8s.io/v1`.
pub fn to_events_v1(obj: Value) -> Value {
    rename(obj, true)
}

fn rename(obj: Value, to_newer: bool) -> Value {
    let Value::Object(mut m) = obj else {
        return obj;
    };
    let mut out = Map::new();
    for (core, newer) in RENAMED {
        let (from, to) = if to_newer {
            (core, newer)
        } else {
            (newer, core)
        };
        m.remove(to);
        if let Some(v) = m.remove(from) {
            out.insert(to.to_string(), v);
        }
    }
    m.extend(out);
    Value::Object(m)
}

// === the printed columns ===

fn column(name: &str, priority: i64, description: &str) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: "string".into(),
        format: if name == "Name" { "name" } else { "" }.into(),
        description: description.into(),
        priority,
        json_path: String::new(),
    }
}

/// The columns a real server prints for events, in its order; priority 1 only with `-o wide`.
pub fn columns() -> Vec<PrinterColumn> {
    vec![
        column("Last Seen", 0, "When the event was last observed."),
        column("Type", 0, "Type of this event (Normal, Warning)."),
        column("Reason", 0, "Why the action was taken, in one word."),
        column("Object", 0, "The object this event is about."),
        column("Subobject", 1, "The part of the object it is about."),
        column("Source", 1, "The component reporting this event."),
        column("Message", 0, "A human-readable description."),
        column("First Seen", 1, "When the event was first observed."),
        column("Count", 1, "How many times it occurred."),
        column("Name", 1, "Name must be unique within a namespace."),
    ]
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |cur, k| cur.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn age(ts: &str) -> String {
    if ts.is_empty() {
        "<unknown>".into()
    } else {
        human_age(ts)
    }
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

/// One row's cells for an event presented through `rt`, with the fallbacks the real
/// printer uses: `eventTime` when there is no `firstTimestamp`, the series' count and last
/// observation when there is a series, `reportingController` / `reportingInstance` when
/// there is no `source`.
pub fn cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let e = if stored_as_core(&rt.group, &rt.plural) {
        to_core(obj.clone())
    } else {
        obj.clone()
    };
    let first = match text(&e, &["firstTimestamp"]) {
        "" => age(text(&e, &["eventTime"])),
        t => age(t),
    };
    let mut last = match text(&e, &["lastTimestamp"]) {
        "" => first.clone(),
        t => age(t),
    };
    let mut count = e["count"].as_i64().unwrap_or(0);
    if e["series"].is_object() {
        last = age(text(&e, &["series", "lastObservedTime"]));
        count = e["series"]["count"].as_i64().unwrap_or(0);
    } else if count == 0 {
        // A singleton event of the newer API has no count.
        count = 1;
    }
    let kind = text(&e, &["involvedObject", "kind"]).to_lowercase();
    let object = match text(&e, &["involvedObject", "name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_non_empty(
        text(&e, &["source", "component"]),
        text(&e, &["reportingComponent"]),
    );
    let host = first_non_empty(
        text(&e, &["source", "host"]),
        text(&e, &["reportingInstance"]),
    );
    let source = match host {
        "" => component.to_string(),
        h => format!("{component}, {h}"),
    };
    vec![
        json!(last),
        json!(text(&e, &["type"])),
        json!(text(&e, &["reason"])),
        json!(object),
        json!(text(&e, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(text(&e, &["message"]).trim()),
        json!(first),
        json!(count),
        json!(text(&e, &["metadata", "name"])),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn events_v1() -> ResourceType {
        super::super::resources::builtins()
            .into_iter()
            .find(|t| t.group == GROUP && t.plural == "events")
            .unwrap()
    }

    /// What kube-rs's Recorder writes, in both shapes.
    fn recorded() -> (Value, Value) {
        let newer = json!({
            "metadata": {"name": "dev.1", "namespace": "ns"},
            "eventTime": "2024-01-02T03:04:05.123456Z",
            "series": {"count": 3, "lastObservedTime": "2024-01-02T03:05:00.000001Z"},
            "reportingController": "switchyard-controller", "reportingInstance": "pod-1",
            "regarding": {"kind": "Environment", "name": "dev", "namespace": "ns", "uid": "u1"},
            "related": {"kind": "DatabaseProject", "name": "shop"},
            "note": "deploy/broken.sql:3: relation does not exist",
            "type": "Warning", "reason": "DeployFailed", "action": "Deploy",
            "deprecatedSource": {"component": "old"}, "deprecatedCount": 2,
            "deprecatedFirstTimestamp": "2024-01-01T00:00:00Z",
            "deprecatedLastTimestamp": "2024-01-01T00:00:01Z",
        });
        let core = json!({
            "metadata": {"name": "dev.1", "namespace": "ns"},
            "eventTime": "2024-01-02T03:04:05.123456Z",
            "series": {"count": 3, "lastObservedTime": "2024-01-02T03:05:00.000001Z"},
            "reportingComponent": "switchyard-controller", "reportingInstance": "pod-1",
            "involvedObject": {"kind": "Environment", "name": "dev", "namespace": "ns", "uid": "u1"},
            "related": {"kind": "DatabaseProject", "name": "shop"},
            "message": "deploy/broken.sql:3: relation does not exist",
            "type": "Warning", "reason": "DeployFailed", "action": "Deploy",
            "source": {"component": "old"}, "count": 2,
            "firstTimestamp": "2024-01-01T00:00:00Z",
            "lastTimestamp": "2024-01-01T00:00:01Z",
        });
        (newer, core)
    }

    #[test]
    fn every_renamed_field_converts_both_ways() {
        let (newer, core) = recorded();
        assert_eq!(to_core(newer.clone()), core);
        assert_eq!(to_events_v1(core), newer);
    }

    #[test]
    fn names_of_the_other_version_are_pruned_not_mixed_in() {
        let written = json!({"note": "kept", "message": "not an events.k8s.io/v1 field"});
        assert_eq!(to_core(written), json!({"message": "kept"}));
        let written = json!({"message": "kept", "regarding": {"name": "x"}});
        assert_eq!(to_events_v1(written), json!({"note": "kept"}));
    }

    #[test]
    fn only_events_k8s_io_is_converted() {
        let rt = events_v1();
        let (newer, core) = recorded();
        assert_eq!(to_storage(&rt, newer.clone()), core);
        assert_eq!(present(&rt, core.clone()), newer);
        let core_rt = super::super::resources::builtins()
            .into_iter()
            .find(|t| t.group.is_empty() && t.plural == "events")
            .unwrap();
        assert_eq!(present(&core_rt, core.clone()), core);
        assert!(is_event(&core_rt) && is_event(&rt));
    }

    #[test]
    fn printed_row_falls_back_like_the_server_printer() {
        let rt = events_v1();
        let mut e = recorded().0;
        for k in [
            "deprecatedSource",
            "deprecatedCount",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
        ] {
            e.as_object_mut().unwrap().remove(k);
        }
        let row = cells(&rt, &e);
        assert_eq!(row[1], "Warning");
        assert_eq!(row[2], "DeployFailed");
        assert_eq!(row[3], "environment/dev");
        assert_eq!(row[5], "switchyard-controller, pod-1");
        assert_eq!(row[6], "deploy/broken.sql:3: relation does not exist");
        assert_eq!(row[8], 3, "the series' count");
        assert!(row[0].as_str().unwrap().ends_with('d'), "{row:?}");
        e.as_object_mut().unwrap().remove("series");
        assert_eq!(cells(&rt, &e)[8], 1, "a singleton counts once");
        assert_eq!(columns().len(), row.len());
    }
}

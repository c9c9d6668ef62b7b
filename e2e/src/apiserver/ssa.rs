//! Server-side apply and `metadata.managedFields`.
//!
//! A simplified model of Kubernetes' structured-merge-diff: field sets are leaf paths in the
//! `FieldsV1` notation (`f:spec`, `k:{"type":"Ready"}`, `.`). Lists are atomic unless the
//! schema says `x-kubernetes-list-type: map` with `x-kubernetes-list-map-keys`; maps are
//! granular unless `x-kubernetes-map-type: atomic`. Only `metadata.labels`,
//! `metadata.annotations` and `metadata.finalizers` (atomic) are tracked in metadata. Set
//! lists (`x-kubernetes-list-type: set`) are treated as atomic. There is one entry per
//! (manager, operation, subresource). Does not touch the store.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::status::{ApiError, ApiResult};
use super::store::now_rfc3339;

/// A set of owned field paths, each a list of FieldsV1 tokens.
pub type FieldSet = BTreeSet<Vec<String>>;

/// What a write does to managedFields.
#[derive(Clone, Debug)]
pub enum ManagedOp {
    /// Leave them as they are.
    Keep,
    /// A non-apply write by this manager: it takes over the fields it changed.
    Update(String),
    /// Server-side apply computed the whole new list.
    Applied(Value),
}

fn empty_schema() -> Value {
    Value::Null
}

fn child_schema(schema: &Value, key: &str) -> Value {
    if let Some(p) = schema["properties"].get(key) {
        return p.clone();
    }
    if schema["additionalProperties"].is_object() {
        return schema["additionalProperties"].clone();
    }
    empty_schema()
}

fn list_keys(schema: &Value) -> Option<Vec<String>> {
    if schema["x-kubernetes-list-type"].as_str() != Some("map") {
        return None;
    }
    let keys: Vec<String> = schema["x-kubernetes-list-map-keys"]
        .as_array()?
        .iter()
        .filter_map(|k| k.as_str().map(String::from))
        .collect();
    (!keys.is_empty()).then_some(keys)
}

fn key_token(item: &Value, keys: &[String]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), item.get(k)?.clone());
    }
    Some(format!("k:{}", Value::Object(m)))
}

fn walk(v: &Value, schema: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
    match v {
        Value::Object(m)
            if !m.is_empty() && schema["x-kubernetes-map-type"].as_str() != Some("atomic") =>
        {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                walk(child, &child_schema(schema, k), path, out);
                path.pop();
            }
        }
        Value::Array(items) if list_keys(schema).is_some() => {
            let keys = list_keys(schema).unwrap_or_default();
            for item in items {
                let Some(tok) = key_token(item, &keys) else {
                    continue;
                };
                path.push(tok);
                path.push(".".into());
                out.insert(path.clone());
                path.pop();
                walk(item, &schema["items"], path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The leaf fields an object sets.
pub fn leaves(obj: &Value, schema: Option<&Value>) -> FieldSet {
    let mut out = FieldSet::new();
    let null = Value::Null;
    let schema = schema.unwrap_or(&null);
    let Some(m) = obj.as_object() else { return out };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                for mk in ["labels", "annotations", "finalizers"] {
                    if let Some(mv) = v.get(mk) {
                        let mut path = vec!["f:metadata".to_string(), format!("f:{mk}")];
                        let s = if mk == "finalizers" {
                            Value::Null
                        } else {
                            json!({"additionalProperties": {}})
                        };
                        walk(mv, &s, &mut path, &mut out);
                    }
                }
            }
            _ => {
                let mut path = vec![format!("f:{k}")];
                walk(v, &child_schema(schema, k), &mut path, &mut out);
            }
        }
    }
    out
}

/// The value at a path, if present (for `.` the node itself).
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for tok in path {
        if tok == "." {
            return Some(cur);
        } else if let Some(f) = tok.strip_prefix("f:") {
            cur = cur.get(f)?;
        } else if let Some(k) = tok.strip_prefix("k:") {
            let want: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur
                .as_array()?
                .iter()
                .find(|item| want.iter().all(|(wk, wv)| item.get(wk) == Some(wv)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    if last == "." {
        // Remove the list element itself.
        let Some((elem, list_path)) = parent.split_last() else {
            return;
        };
        let Some(k) = elem.strip_prefix("k:") else {
            return;
        };
        let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else {
            return;
        };
        if let Some(Value::Array(items)) = value_mut(obj, list_path) {
            items.retain(|item| !want.iter().all(|(wk, wv)| item.get(wk) == Some(wv)));
        }
        return;
    }
    if let (Some(f), Some(Value::Object(m))) = (last.strip_prefix("f:"), value_mut(obj, parent)) {
        m.remove(f);
    }
}

fn value_mut<'a>(obj: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = obj;
    for tok in path {
        if let Some(f) = tok.strip_prefix("f:") {
            cur = cur.get_mut(f)?;
        } else if let Some(k) = tok.strip_prefix("k:") {
            let want: Map<String, Value> = serde_json::from_str(k).ok()?;
            cur = cur
                .as_array_mut()?
                .iter_mut()
                .find(|item| want.iter().all(|(wk, wv)| item.get(wk) == Some(wv)))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// FieldsV1 JSON from a set.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for tok in path {
            let next = cur.entry(tok.clone()).or_insert_with(|| json!({}));
            match next {
                Value::Object(m) => cur = m,
                _ => break,
            }
        }
    }
    Value::Object(root)
}

/// A set from FieldsV1 JSON.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn rec(v: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        for (k, child) in m {
            path.push(k.clone());
            if child.as_object().is_none_or(Map::is_empty) {
                out.insert(path.clone());
            } else {
                rec(child, path, out);
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    rec(v, &mut vec![], &mut out);
    out
}

struct Entry {
    manager: String,
    operation: String,
    subresource: String,
    api_version: String,
    time: String,
    set: FieldSet,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: e["manager"].as_str().unwrap_or("").to_string(),
                    operation: e["operation"].as_str().unwrap_or("").to_string(),
                    subresource: e["subresource"].as_str().unwrap_or("").to_string(),
                    api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
                    time: e["time"].as_str().unwrap_or("").to_string(),
                    set: from_fields_v1(&e["fieldsV1"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn render(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .filter(|e| !e.set.is_empty())
            .map(|e| {
                let mut v = json!({
                    "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                    "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.set),
                });
                if !e.subresource.is_empty() {
                    v["subresource"] = json!(e.subresource);
                }
                v
            })
            .collect(),
    )
}

/// Updates `new`'s managedFields for a write of `op` (`old` is the object before it).
pub fn record(
    new: &mut Value,
    old: Option<&Value>,
    op: &ManagedOp,
    sub: Option<&str>,
    api_version: &str,
    schema: Option<&Value>,
) {
    let mf = match op {
        ManagedOp::Keep => return,
        ManagedOp::Applied(v) => v.clone(),
        ManagedOp::Update(manager) => {
            let null = Value::Null;
            let old = old.unwrap_or(&null);
            let before = leaves(old, schema);
            let after = leaves(new, schema);
            let changed: FieldSet = after
                .iter()
                .filter(|p| {
                    if p.last().map(String::as_str) == Some(".") {
                        !before.contains(*p)
                    } else {
                        value_at(old, p) != value_at(new, p)
                    }
                })
                .chain(before.iter().filter(|p| !after.contains(*p)))
                .cloned()
                .collect();
            let mut es = entries(old);
            if changed.is_empty() {
                return;
            }
            let sub = sub.unwrap_or("");
            for e in es.iter_mut() {
                e.set.retain(|p| !changed.contains(p));
            }
            let mine: FieldSet = changed
                .iter()
                .filter(|p| after.contains(*p))
                .cloned()
                .collect();
            match es
                .iter_mut()
                .find(|e| e.manager == *manager && e.operation == "Update" && e.subresource == sub)
            {
                Some(e) => {
                    e.set.extend(mine);
                    e.time = now_rfc3339();
                }
                None => es.push(Entry {
                    manager: manager.clone(),
                    operation: "Update".into(),
                    subresource: sub.into(),
                    api_version: api_version.into(),
                    time: now_rfc3339(),
                    set: mine,
                }),
            }
            render(&es)
        }
    };
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("managedFields".into(), mf);
    }
}

fn merge(live: &mut Value, applied: &Value, schema: &Value) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a))
            if schema["x-kubernetes-map-type"].as_str() != Some("atomic") =>
        {
            for (k, av) in a {
                let cs = child_schema(schema, k);
                match l.get_mut(k) {
                    Some(lv)
                        if (lv.is_object() && av.is_object())
                            || (lv.is_array() && av.is_array()) =>
                    {
                        merge(lv, av, &cs)
                    }
                    _ => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) if list_keys(schema).is_some() => {
            let keys = list_keys(schema).unwrap_or_default();
            for item in a {
                let pos = l
                    .iter()
                    .position(|li| keys.iter().all(|k| li.get(k) == item.get(k)));
                match pos {
                    Some(i) => merge(&mut l[i], item, &schema["items"]),
                    None => l.push(item.clone()),
                }
            }
        }
        (l, a) => *l = a.clone(),
    }
}

/// Server-side apply of `applied` by `manager` onto `live` (None: create). Returns the new
/// object and its managedFields.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    mut applied: Value,
    manager: &str,
    force: bool,
    sub: Option<&str>,
    status_sub: bool,
    schema: Option<&Value>,
    ids: (&str, &str, &str),
) -> ApiResult<(Value, ManagedOp)> {
    let (group, kind, name) = ids;
    if manager.is_empty() {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml requests must have fieldManager",
        ));
    }
    if applied["apiVersion"].as_str().is_none_or(str::is_empty)
        || applied["kind"].as_str().is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(
            "apiVersion and kind must be set in an apply configuration",
        ));
    }
    let api_version = applied["apiVersion"].as_str().unwrap_or("").to_string();
    // What this apply may own: only status through /status, never status through the main resource.
    if let Some(m) = applied.as_object_mut() {
        if sub == Some("status") {
            m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace"));
            }
        } else if status_sub {
            m.remove("status");
        }
    }
    let null = Value::Null;
    let sch = schema.unwrap_or(&null);
    let mine = leaves(&applied, schema);
    let sub_s = sub.unwrap_or("");
    let mut es = live.map(entries).unwrap_or_default();
    let me = es
        .iter()
        .position(|e| e.manager == manager && e.operation == "Apply" && e.subresource == sub_s);
    let previous = me.map(|i| es[i].set.clone()).unwrap_or_default();
    let mut result = match live {
        None => applied.clone(),
        Some(live) => {
            let mut conflicts = vec![];
            for (i, e) in es.iter_mut().enumerate() {
                if Some(i) == me {
                    continue;
                }
                let contested: Vec<Vec<String>> = e
                    .set
                    .iter()
                    .filter(|p| mine.contains(*p) && p.last().map(String::as_str) != Some("."))
                    .filter(|p| value_at(live, p) != value_at(&applied, p))
                    .cloned()
                    .collect();
                if force {
                    e.set.retain(|p| !contested.contains(p));
                } else {
                    for p in contested {
                        conflicts.push((e.manager.clone(), display_path(&p)));
                    }
                }
            }
            if !conflicts.is_empty() {
                return Err(ApiError::apply_conflict(group, kind, name, conflicts));
            }
            let others: FieldSet = es
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != me)
                .flat_map(|(_, e)| e.set.iter().cloned())
                .collect();
            let mut gone: Vec<&Vec<String>> = previous
                .iter()
                .filter(|p| !mine.contains(*p) && !others.contains(*p))
                .collect();
            gone.sort_by_key(|p| std::cmp::Reverse(p.len()));
            let mut obj = live.clone();
            for p in &gone {
                remove_at(&mut obj, p);
            }
            // Parents left empty by the removal go too, unless someone still owns below them.
            for p in gone {
                for len in (1..p.len()).rev() {
                    let prefix = &p[..len];
                    if prefix.last().is_some_and(|t| t.starts_with("k:")) {
                        continue;
                    }
                    let owned = mine
                        .iter()
                        .chain(others.iter())
                        .any(|q| q.starts_with(prefix));
                    let empty = value_at(&obj, prefix)
                        .is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
                    if !owned && empty {
                        remove_at(&mut obj, prefix);
                    }
                }
            }
            merge(&mut obj, &applied, sch);
            obj
        }
    };
    if let Some(i) = me {
        es[i].set = mine;
        es[i].time = now_rfc3339();
        es[i].api_version = api_version;
    } else {
        es.push(Entry {
            manager: manager.into(),
            operation: "Apply".into(),
            subresource: sub_s.into(),
            api_version,
            time: now_rfc3339(),
            set: mine,
        });
    }
    let mf = render(&es);
    result["metadata"]["managedFields"] = mf.clone();
    Ok((result, ManagedOp::Applied(mf)))
}

fn display_path(p: &[String]) -> String {
    let mut s = String::new();
    for tok in p {
        if let Some(f) = tok.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = tok.strip_prefix("k:") {
            s.push('[');
            s.push_str(k);
            s.push(']');
        }
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"properties": {"status": {"properties": {"conditions": {
            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
            "items": {"type": "object"}}}}}})
    }

    #[test]
    fn list_map_entries_are_owned_per_key() {
        let s = schema();
        let a = json!({"apiVersion": "v1", "kind": "W", "metadata": {"name": "w"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let (obj, _) = apply(
            None,
            a,
            "one",
            false,
            None,
            false,
            Some(&s),
            ("g", "W", "w"),
        )
        .unwrap();
        let b = json!({"apiVersion": "v1", "kind": "W", "metadata": {"name": "w"},
            "status": {"conditions": [{"type": "Synced", "status": "False"}]}});
        let (obj, _) = apply(
            Some(&obj),
            b,
            "two",
            false,
            None,
            false,
            Some(&s),
            ("g", "W", "w"),
        )
        .unwrap();
        assert_eq!(obj["status"]["conditions"].as_array().unwrap().len(), 2);
        // "one" drops its condition; "two"'s stays.
        let c = json!({"apiVersion": "v1", "kind": "W", "metadata": {"name": "w"}, "status": {"conditions": []}});
        let (obj, _) = apply(
            Some(&obj),
            c,
            "one",
            false,
            None,
            false,
            Some(&s),
            ("g", "W", "w"),
        )
        .unwrap();
        let conds = obj["status"]["conditions"].as_array().unwrap();
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0]["type"], "Synced");
    }

    #[test]
    fn conflicting_value_from_other_manager_needs_force() {
        let a =
            json!({"apiVersion": "v1", "kind": "W", "metadata": {"name": "w"}, "spec": {"x": 1}});
        let (obj, _) = apply(None, a, "one", false, None, false, None, ("g", "W", "w")).unwrap();
        let b =
            json!({"apiVersion": "v1", "kind": "W", "metadata": {"name": "w"}, "spec": {"x": 2}});
        let err = apply(
            Some(&obj),
            b.clone(),
            "two",
            false,
            None,
            false,
            None,
            ("g", "W", "w"),
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        assert!(err.message.contains(".spec.x"), "{}", err.message);
        let (obj, _) = apply(
            Some(&obj),
            b,
            "two",
            true,
            None,
            false,
            None,
            ("g", "W", "w"),
        )
        .unwrap();
        assert_eq!(obj["spec"]["x"], 2);
    }
}

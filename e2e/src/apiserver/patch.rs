//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a strategic merge
//! patch approximation for built-in kinds (merge semantics; lists of objects merge by `name`
//! when both sides carry it; `$patch: delete|replace` and `$setElementOrder`/`$retainKeys`
//! directives are honoured or dropped). Server-side apply lives in `ssa`. Pure functions.

use serde_json::{Map, Value};

use super::status::{ApiError, ApiResult};

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The strategic merge patch approximation.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = p.clone();
        p.remove("$patch");
        *target = Value::Object(p);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        if v.get("$patch").and_then(Value::as_str) == Some("delete") {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(Value::Array(tl)), Value::Array(pl)) if by_name(tl) && by_name(pl) => {
                for item in pl {
                    let name = item.get("name").cloned();
                    let pos = tl.iter().position(|e| e.get("name") == name.as_ref());
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            tl.remove(i);
                        }
                        (Some(i), false) => strategic_merge_patch(&mut tl[i], item),
                        (None, false) => {
                            let mut fresh = Value::Null;
                            strategic_merge_patch(&mut fresh, item);
                            tl.push(fresh);
                        }
                        (None, true) => {}
                    }
                }
            }
            (Some(existing), Value::Object(_)) => strategic_merge_patch(existing, v),
            _ => {
                let mut fresh = Value::Null;
                strategic_merge_patch(&mut fresh, v);
                if !v.is_object() {
                    fresh = v.clone();
                }
                t.insert(k.clone(), fresh);
            }
        }
    }
}

fn by_name(items: &[Value]) -> bool {
    !items.is_empty()
        && items
            .iter()
            .all(|i| i.get("name").is_some_and(Value::is_string))
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn pointer_parts(path: &str) -> ApiResult<Vec<String>> {
    if path.is_empty() {
        return Ok(vec![]);
    }
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {path:?}")))?;
    Ok(rest.split('/').map(unescape).collect())
}

fn parent_mut<'a>(doc: &'a mut Value, parts: &[String]) -> ApiResult<&'a mut Value> {
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(move |i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| invalid_patch(format!("doc is missing path: /{}", parts.join("/"))))?;
    }
    Ok(cur)
}

fn invalid_patch(msg: String) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: msg,
        details: None,
    }
}

fn add(doc: &mut Value, path: &str, value: Value) -> ApiResult<()> {
    let parts = pointer_parts(path)?;
    let Some((last, parent)) = parts.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parent)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| invalid_patch(format!("invalid index {last}")))?
            };
            if i > a.len() {
                return Err(invalid_patch(format!(
                    "add operation does not apply: index {i} out of bounds"
                )));
            }
            a.insert(i, value);
        }
        _ => return Err(invalid_patch(format!("doc is missing path: {path}"))),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> ApiResult<Value> {
    let parts = pointer_parts(path)?;
    let Some((last, parent)) = parts.split_last() else {
        return Err(invalid_patch("cannot remove the whole document".into()));
    };
    let missing = || {
        invalid_patch(format!(
            "remove operation does not apply: doc is missing path: \"{path}\""
        ))
    };
    match parent_mut(doc, parent)? {
        Value::Object(m) => m.remove(last).ok_or_else(missing),
        Value::Array(a) => {
            let i = last.parse::<usize>().map_err(|_| missing())?;
            if i < a.len() {
                Ok(a.remove(i))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

fn get(doc: &Value, path: &str) -> ApiResult<Value> {
    doc.pointer(path)
        .cloned()
        .ok_or_else(|| invalid_patch(format!("doc is missing path: \"{path}\"")))
}

/// RFC 6902.
pub fn json_patch(doc: &mut Value, ops: &Value) -> ApiResult<()> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    for op in ops {
        let path = op["path"].as_str().unwrap_or("");
        match op["op"].as_str().unwrap_or("") {
            "add" => add(doc, path, op["value"].clone())?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path)?;
                add(doc, path, op["value"].clone())?;
            }
            "move" => {
                let v = remove(doc, op["from"].as_str().unwrap_or(""))?;
                add(doc, path, v)?;
            }
            "copy" => {
                let v = get(doc, op["from"].as_str().unwrap_or(""))?;
                add(doc, path, v)?;
            }
            "test" => {
                // As the real server (evanphx/json-patch): testing a missing member for
                // null succeeds. kube-rs's finalizer helper relies on it.
                let v = match get(doc, path) {
                    Ok(v) => v,
                    Err(_) if op["value"].is_null() => Value::Null,
                    Err(e) => return Err(e),
                };
                if v != op["value"] {
                    return Err(invalid_patch(format!(
                        "testing value {path} failed: test failed"
                    )));
                }
            }
            other => return Err(ApiError::bad_request(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_removes_nulls_and_replaces_lists() {
        let mut d = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut d, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(d, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut d = json!({"metadata": {"finalizers": ["a", "b"]}, "n": 1});
        json_patch(
            &mut d,
            &json!([
                {"op": "test", "path": "/n", "value": 1},
                {"op": "remove", "path": "/metadata/finalizers/0"},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "c"},
                {"op": "replace", "path": "/n", "value": 2},
            ]),
        )
        .unwrap();
        assert_eq!(d, json!({"metadata": {"finalizers": ["b", "c"]}, "n": 2}));
        assert!(json_patch(&mut d, &json!([{"op": "test", "path": "/n", "value": 1}])).is_err());
    }

    #[test]
    fn test_op_on_a_missing_member_matches_null() {
        // kube-rs `finalizer()` adds the first finalizer with test-null-then-add.
        let mut d = json!({"metadata": {"name": "x"}});
        json_patch(
            &mut d,
            &json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["f"]},
            ]),
        )
        .unwrap();
        assert_eq!(d["metadata"]["finalizers"], json!(["f"]));
        assert!(
            json_patch(
                &mut d,
                &json!([{"op": "test", "path": "/metadata/nope", "value": 1}])
            )
            .is_err()
        );
    }

    #[test]
    fn strategic_merges_named_lists() {
        let mut d = json!({"spec": {"containers": [{"name": "a", "image": "x", "port": 1}]}});
        strategic_merge_patch(
            &mut d,
            &json!({"spec": {"$setElementOrder/containers": [{"name": "a"}],
            "containers": [{"name": "a", "image": "y"}]}}),
        );
        assert_eq!(
            d,
            json!({"spec": {"containers": [{"name": "a", "image": "y", "port": 1}]}})
        );
    }
}

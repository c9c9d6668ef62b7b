//! `meta.k8s.io/v1` Table responses (what `kubectl get` asks for), built from a CRD's
//! `additionalPrinterColumns`, the server's columns for events, or Name/Age for everything
//! else. Includes the small JSONPath subset printer columns use: `.a.b`, `[n]`, `[*]`, `[?(@.k=="v")]`. Pure functions.

use serde_json::{Value, json};

use super::events;
use super::resources::{PrinterColumn, ResourceType};

#[derive(Debug)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter(Vec<String>, bool, Value),
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(p);
    let p = p.strip_prefix('$').unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut steps = vec![];
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if !name.is_empty() {
                    steps.push(Step::Field(name));
                }
            }
            '[' => {
                let close =
                    (i..chars.len()).find(|&j| chars[j] == ']' && !in_quotes(&chars[i..j]))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    steps.push(Step::All);
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
                    let (lhs, neg, rhs) = if let Some((l, r)) = f.split_once("!=") {
                        (l, true, r)
                    } else {
                        let (l, r) = f.split_once("==")?;
                        (l, false, r)
                    };
                    let lhs = lhs.trim().strip_prefix("@.")?;
                    let rhs = rhs.trim();
                    let val =
                        if let Some(s) = rhs.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                            json!(s)
                        } else if let Some(s) =
                            rhs.strip_prefix('\'').and_then(|s| s.strip_suffix('\''))
                        {
                            json!(s)
                        } else {
                            serde_json::from_str(rhs).ok()?
                        };
                    steps.push(Step::Filter(
                        lhs.split('.').map(String::from).collect(),
                        neg,
                        val,
                    ));
                } else if let Some(s) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\''))
                {
                    steps.push(Step::Field(s.to_string()));
                } else {
                    steps.push(Step::Index(inner.parse().ok()?));
                }
                i = close + 1;
            }
            _ => {
                // A leading bare field name, e.g. `status.phase`.
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                steps.push(Step::Field(chars[start..i].iter().collect()));
            }
        }
    }
    Some(steps)
}

fn in_quotes(chars: &[char]) -> bool {
    chars.iter().filter(|c| **c == '"').count() % 2 == 1
}

/// All values the path selects.
pub fn select(obj: &Value, path: &str) -> Vec<Value> {
    let Some(steps) = parse(path) else {
        return vec![];
    };
    let mut cur = vec![obj.clone()];
    for step in steps {
        let mut next = vec![];
        for v in cur {
            match &step {
                Step::Field(f) => {
                    if let Some(x) = v.get(f) {
                        next.push(x.clone());
                    }
                }
                Step::Index(n) => {
                    if let Some(x) = v.get(*n) {
                        next.push(x.clone());
                    }
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a),
                    Value::Object(m) => next.extend(m.into_iter().map(|(_, x)| x)),
                    _ => {}
                },
                Step::Filter(key, neg, want) => {
                    for item in v.as_array().cloned().unwrap_or_default() {
                        let mut got = Some(&item);
                        for k in key {
                            got = got.and_then(|g| g.get(k));
                        }
                        if (got == Some(want)) != *neg {
                            next.push(item.clone());
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

/// `5s`, `3m`, `2h`, `4d` like kubectl's Age column.
pub fn human_age(ts: &str) -> String {
    let Ok(t) = time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
    else {
        return "<invalid>".into();
    };
    let secs = (time::OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn columns(rt: &ResourceType) -> Vec<PrinterColumn> {
    let mut cols = vec![PrinterColumn {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: "Name must be unique within a namespace.".into(),
        priority: 0,
        json_path: ".metadata.name".into(),
    }];
    if rt.custom && !rt.printer_columns.is_empty() {
        cols.extend(rt.printer_columns.iter().cloned());
    } else {
        cols.push(PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: "CreationTimestamp is a timestamp representing the server time when this object was created.".into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        });
    }
    cols
}

fn cell(col: &PrinterColumn, obj: &Value) -> Value {
    let vals = select(obj, &col.json_path);
    let Some(first) = vals.first() else {
        return Value::Null;
    };
    if col.type_ == "date" {
        return match first.as_str() {
            Some(s) => json!(human_age(s)),
            None => Value::Null,
        };
    }
    if vals.len() > 1 {
        let parts: Vec<String> = vals
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect();
        return json!(parts.join(", "));
    }
    match (col.type_.as_str(), first) {
        ("string", Value::String(_))
        | ("integer", Value::Number(_))
        | ("number", Value::Number(_))
        | ("boolean", Value::Bool(_)) => first.clone(),
        ("string", v) if v.is_object() || v.is_array() => json!(v.to_string()),
        ("string", v) => json!(v.to_string()),
        (_, v) => v.clone(),
    }
}

/// A Table of `objects`; `include` is `None`, `Metadata` (default) or `Object`.
pub fn table(rt: &ResourceType, objects: &[Value], rv: Option<u64>, include: &str) -> Value {
    let event = events::is_event(rt);
    let cols = if event {
        events::columns()
    } else {
        columns(rt)
    };
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| json!({"name": c.name, "type": c.type_, "format": c.format, "description": c.description, "priority": c.priority}))
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let cells: Vec<Value> = if event {
                events::cells(rt, o)
            } else {
                cols.iter().map(|c| cell(c, o)).collect()
            };
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
                }
            }
            row
        })
        .collect();
    let mut meta = json!({});
    if let Some(rv) = rv {
        meta["resourceVersion"] = json!(rv.to_string());
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filters_conditions() {
        let o = json!({"status": {"conditions": [{"type": "Synced", "status": "False"}, {"type": "Ready", "status": "True"}]},
            "spec": {"l": [1, 2]}});
        assert_eq!(
            select(&o, ".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(select(&o, ".spec.l[1]"), vec![json!(2)]);
        assert_eq!(select(&o, ".spec.l[*]").len(), 2);
        assert!(select(&o, ".spec.missing").is_empty());
    }
}

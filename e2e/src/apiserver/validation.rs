//! Structural-schema admission of custom resources: pruning of unknown fields, defaulting and
//! validation against a CRD version's `openAPIV3Schema`, including its CEL
//! `x-kubernetes-validations`. Messages follow the real server's wording. Pure functions.

use serde_json::{Map, Value};

use super::cel;
use super::status::FieldError;

fn preserves(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Prunes fields the schema does not declare and applies defaults. Returns the pruned paths.
pub fn prune_and_default(schema: &Value, obj: &mut Value) -> Vec<String> {
    let mut unknown = vec![];
    if let Some(m) = obj.as_object_mut() {
        let props = schema["properties"].as_object();
        let keys: Vec<String> = m.keys().cloned().collect();
        for k in keys {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            match props.and_then(|p| p.get(&k)) {
                Some(ps) => {
                    if let Some(child) = m.get_mut(&k) {
                        prune(ps, child, &k, &mut unknown);
                    }
                }
                None if preserves(schema) => {}
                None => {
                    m.remove(&k);
                    unknown.push(k);
                }
            }
        }
    }
    default(schema, obj, true);
    unknown
}

fn prune(schema: &Value, v: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let embedded = schema["x-kubernetes-embedded-resource"] == Value::Bool(true);
            let props = schema["properties"].as_object();
            let additional = schema["additionalProperties"]
                .as_object()
                .map(|_| &schema["additionalProperties"]);
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_schema = props.and_then(|p| p.get(&k)).or(additional);
                match child_schema {
                    Some(cs) => {
                        if let Some(child) = m.get_mut(&k) {
                            prune(cs, child, &join(path, &k), unknown);
                        }
                    }
                    None if preserves(schema)
                        || schema["additionalProperties"] == Value::Bool(true) => {}
                    None => {
                        m.remove(&k);
                        unknown.push(join(path, &k));
                    }
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter_mut().enumerate() {
                prune(&schema["items"], item, &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

fn default(schema: &Value, v: &mut Value, root: bool) {
    match v {
        Value::Object(m) => {
            if let Some(props) = schema["properties"].as_object() {
                for (k, ps) in props {
                    if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    let Some(d) = ps.get("default") else { continue };
                    let nullable = ps["nullable"] == Value::Bool(true);
                    match m.get(k) {
                        None => {
                            m.insert(k.clone(), d.clone());
                        }
                        Some(Value::Null) if !nullable => {
                            m.insert(k.clone(), d.clone());
                        }
                        _ => {}
                    }
                }
                for (k, child) in m.iter_mut() {
                    if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    if let Some(ps) = props.get(k) {
                        default(ps, child, false);
                    }
                }
            } else if schema["additionalProperties"].is_object() {
                for child in m.values_mut() {
                    default(&schema["additionalProperties"], child, false);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                default(&schema["items"], item, false);
            }
        }
        _ => {}
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(want: &str, v: &Value) -> bool {
    match want {
        "" => true,
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => json_type(v) == other,
    }
}

fn field_name(path: &str) -> &str {
    if path.is_empty() { "<nil>" } else { path }
}

fn date_time_ok(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
        || time::PrimitiveDateTime::parse(
            s,
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )
        .is_ok()
}

/// Validates `v` (and its old value, for CEL transition rules) against `schema`.
pub fn validate(
    schema: &Value,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let f = field_name(path);
    if v.is_null() {
        if schema["nullable"] != Value::Bool(true) && !path.is_empty() {
            let t = schema["type"].as_str().unwrap_or("object");
            errs.push(FieldError {
                field: f.into(),
                reason: "FieldValueTypeInvalid",
                message: format!(
                    "Invalid value: \"null\": {f} in body must be of type {t}: \"null\""
                ),
            });
        }
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == Value::Bool(true);
    if int_or_string {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errs.push(FieldError {
                field: f.into(),
                reason: "FieldValueTypeInvalid",
                message: format!(
                    "Invalid value: \"{}\": {f} in body must be of type integer,string: \"{}\"",
                    json_type(v),
                    json_type(v)
                ),
            });
            return;
        }
    } else if let Some(t) = schema["type"].as_str()
        && !type_ok(t, v)
    {
        errs.push(FieldError {
            field: f.into(),
            reason: "FieldValueTypeInvalid",
            message: format!(
                "Invalid value: \"{}\": {f} in body must be of type {t}: \"{}\"",
                json_type(v),
                json_type(v)
            ),
        });
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(v)
    {
        let supported: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errs.push(FieldError::not_supported(f, &v.to_string(), &supported));
    }
    match v {
        Value::String(s) => {
            let n = s.chars().count() as u64;
            if let Some(min) = schema["minLength"].as_u64()
                && n < min
            {
                errs.push(FieldError::invalid(
                    f,
                    &v.to_string(),
                    &format!("{f} in body should be at least {min} chars long"),
                ));
            }
            if let Some(max) = schema["maxLength"].as_u64()
                && n > max
            {
                errs.push(FieldError {
                    field: f.into(),
                    reason: "FieldValueTooLong",
                    message: format!("Too long: may not be more than {max} bytes"),
                });
            }
            if let Some(p) = schema["pattern"].as_str() {
                match regex::Regex::new(p) {
                    Ok(re) if !re.is_match(s) => errs.push(FieldError::invalid(
                        f,
                        &v.to_string(),
                        &format!("{f} in body should match '{p}'"),
                    )),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(pattern = p, %e, "Unsupported schema pattern skipped"),
                }
            }
            if schema["format"].as_str() == Some("date-time") && !date_time_ok(s) {
                errs.push(FieldError::invalid(
                    f,
                    &v.to_string(),
                    &format!("{f} in body must be of type date-time: {v}"),
                ));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema["minimum"].as_f64() {
                let excl = schema["exclusiveMinimum"] == Value::Bool(true);
                if x < min || (excl && x == min) {
                    let word = if excl {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        f,
                        &n.to_string(),
                        &format!("{f} in body should be {word} {}", schema["minimum"]),
                    ));
                }
            }
            if let Some(max) = schema["maximum"].as_f64() {
                let excl = schema["exclusiveMaximum"] == Value::Bool(true);
                if x > max || (excl && x == max) {
                    let word = if excl {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errs.push(FieldError::invalid(
                        f,
                        &n.to_string(),
                        &format!("{f} in body should be {word} {}", schema["maximum"]),
                    ));
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema["minItems"].as_u64()
                && n < min
            {
                errs.push(FieldError::invalid(
                    f,
                    &n.to_string(),
                    &format!("{f} in body should have at least {min} items"),
                ));
            }
            if let Some(max) = schema["maxItems"].as_u64()
                && n > max
            {
                errs.push(FieldError {
                    field: f.into(),
                    reason: "FieldValueTooMany",
                    message: format!("Too many: {n}: must have at most {max} items"),
                });
            }
            if schema["items"].is_object() {
                for (i, item) in items.iter().enumerate() {
                    validate(&schema["items"], item, None, &format!("{path}[{i}]"), errs);
                }
            }
        }
        Value::Object(m) => {
            for r in schema["required"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if let Some(r) = r.as_str()
                    && !m.contains_key(r)
                {
                    errs.push(FieldError::required(&join(path, r)));
                }
            }
            if let Some(min) = schema["minProperties"].as_u64()
                && (m.len() as u64) < min
            {
                errs.push(FieldError::invalid(
                    f,
                    &m.len().to_string(),
                    &format!("{f} in body should have at least {min} properties"),
                ));
            }
            if let Some(max) = schema["maxProperties"].as_u64()
                && (m.len() as u64) > max
            {
                errs.push(FieldError {
                    field: f.into(),
                    reason: "FieldValueTooMany",
                    message: format!("Too many: {}: must have at most {max} items", m.len()),
                });
            }
            let props = schema["properties"].as_object();
            let additional = schema["additionalProperties"]
                .as_object()
                .map(|_| &schema["additionalProperties"]);
            for (k, child) in m {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let Some(cs) = props.and_then(|p| p.get(k)).or(additional) else {
                    continue;
                };
                let old_child = old.and_then(|o| o.get(k));
                validate(cs, child, old_child, &join(path, k), errs);
            }
        }
        _ => {}
    }
    run_rules(schema, v, old, path, errs);
}

fn run_rules(
    schema: &Value,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) {
    let Some(rules) = schema["x-kubernetes-validations"].as_array() else {
        return;
    };
    let type_name = if int_or_string(schema) {
        "string"
    } else {
        schema["type"].as_str().unwrap_or("object")
    };
    for rule in rules {
        let Some(src) = rule["rule"].as_str() else {
            continue;
        };
        let program = match cel::Program::compile(src) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(rule = src, error = %e, "Unsupported CEL rule skipped");
                continue;
            }
        };
        if program.uses_old_self() && old.is_none() {
            // Transition rules only run on updates.
            continue;
        }
        let field = match rule["fieldPath"].as_str() {
            Some(fp) if !fp.is_empty() => {
                let fp = fp.strip_prefix('.').unwrap_or(fp);
                join(path, fp)
            }
            _ => field_name(path).to_string(),
        };
        let message = |rule: &Value| -> String {
            if let Some(m) = rule["message"].as_str() {
                return m.to_string();
            }
            if let Some(me) = rule["messageExpression"].as_str() {
                if let Ok(p) = cel::Program::compile(me)
                    && let Ok(cel::Val::Str(s)) = p.eval(v, old)
                {
                    return s;
                }
                return me.to_string();
            }
            format!("failed rule: {src}")
        };
        match program.eval(v, old) {
            Ok(cel::Val::Bool(true)) => {}
            Ok(cel::Val::Bool(false)) => {
                let msg = message(rule);
                errs.push(
                    match rule["reason"].as_str().unwrap_or("FieldValueInvalid") {
                        "FieldValueRequired" => FieldError::required_because(&field, &msg),
                        "FieldValueForbidden" => FieldError::forbidden(&field, &msg),
                        "FieldValueDuplicate" => FieldError {
                            field: field.clone(),
                            reason: "FieldValueDuplicate",
                            message: format!("Duplicate value: {msg}"),
                        },
                        _ => FieldError::invalid(&field, &format!("\"{type_name}\""), &msg),
                    },
                );
            }
            Ok(other) => {
                tracing::warn!(rule = src, result = ?other, "CEL rule did not return a bool; skipped");
            }
            Err(cel::EvalError::Unsupported(e)) => {
                tracing::warn!(rule = src, error = %e, "Unsupported CEL rule skipped");
            }
            Err(cel::EvalError::Runtime(e)) => {
                errs.push(FieldError::invalid(
                    &field,
                    &format!("\"{type_name}\""),
                    &format!("{e} evaluating rule: {src}"),
                ));
            }
        }
    }
}

fn int_or_string(schema: &Value) -> bool {
    schema["x-kubernetes-int-or-string"] == Value::Bool(true)
}

/// An object schema that accepts anything, for types without one.
pub fn permissive() -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::String("object".into()));
    m.insert(
        "x-kubernetes-preserve-unknown-fields".into(),
        Value::Bool(true),
    );
    Value::Object(m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {
            "type": "object", "required": ["size"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "mode": {"type": "string", "enum": ["all", "tag"], "default": "all"},
                "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "port": {"x-kubernetes-int-or-string": true},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "git": {"type": "string"}, "configMap": {"type": "string"},
            },
            "x-kubernetes-validations": [
                {"rule": "has(self.git) != has(self.configMap)", "message": "exactly one of git or configMap"},
                {"rule": "self.size == oldSelf.size", "message": "size is immutable"},
            ],
        }}})
    }

    fn check(obj: Value, old: Option<Value>) -> (Value, Vec<String>) {
        let mut obj = obj;
        prune_and_default(&schema(), &mut obj);
        let mut errs = vec![];
        validate(&schema(), &obj, old.as_ref(), "", &mut errs);
        (obj, errs.iter().map(FieldError::line).collect())
    }

    #[test]
    fn prunes_defaults_and_validates() {
        let (obj, errs) = check(
            json!({"spec": {"size": 3, "git": "x", "junk": 1, "extra": {"a": 1}}}),
            None,
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(obj["spec"]["mode"], "all");
        assert!(obj["spec"].get("junk").is_none());
        assert_eq!(obj["spec"]["extra"]["a"], 1);
    }

    #[test]
    fn reports_field_paths_like_the_real_server() {
        let (_, errs) = check(
            json!({"spec": {"mode": "x", "name": "ABC", "port": true}}),
            None,
        );
        assert!(
            errs.contains(&"spec.size: Required value".to_string()),
            "{errs:?}"
        );
        assert!(errs.contains(
            &"spec.mode: Unsupported value: \"x\": supported values: \"all\", \"tag\"".to_string()
        ));
        assert!(
            errs.contains(
                &"spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'"
                    .to_string()
            )
        );
        assert!(errs.iter().any(|e| {
            e.starts_with("spec: Invalid value: \"object\": exactly one of git or configMap")
        }));
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.port: Invalid value: \"boolean\""))
        );
        let (_, errs) = check(json!({"spec": {"size": 11, "git": "x"}}), None);
        assert_eq!(
            errs,
            vec![
                "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
            ]
        );
    }

    #[test]
    fn transition_rules_run_only_on_update() {
        let (_, errs) = check(
            json!({"spec": {"size": 2, "git": "x"}}),
            Some(json!({"spec": {"size": 1, "git": "x"}})),
        );
        assert_eq!(
            errs,
            vec!["spec: Invalid value: \"object\": size is immutable"]
        );
    }
}

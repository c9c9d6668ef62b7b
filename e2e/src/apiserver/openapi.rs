//! OpenAPI documents: `/openapi/v3` (root and one document per group/version) and
//! `/openapi/v2` (JSON only), built from the served types and the stored CRDs' schemas.
//! kubectl reads the v3 PATCH operations to learn that the server does field validation
//! (`fieldValidation`) and which patch types a kind takes. No state.

use serde_json::{Map, Value, json};

use super::discovery::hash;
use super::resources::ResourceType;
use super::validation::permissive;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// `dev.switchyard.test.v1.Widget`, `io.k8s.api.core.v1.ConfigMap`.
pub fn definition_name(t: &ResourceType) -> String {
    if t.custom {
        let rev: Vec<&str> = t.group.split('.').rev().collect();
        format!("{}.{}.{}", rev.join("."), t.version, t.kind)
    } else {
        let short = match t.group.as_str() {
            "" => "core",
            g => g.split('.').next().unwrap_or(g),
        };
        let prefix = if t.group == "apiextensions.k8s.io" {
            "io.k8s.apiextensions-apiserver.pkg.apis"
        } else {
            "io.k8s.api"
        };
        format!("{prefix}.{short}.{}.{}", t.version, t.kind)
    }
}

fn gvk(t: &ResourceType) -> Value {
    json!({"group": t.group, "version": t.version, "kind": t.kind})
}

fn kind_schema(t: &ResourceType, ref_prefix: &str) -> Value {
    let mut s = t.schema.clone().unwrap_or_else(permissive);
    if !s.is_object() {
        s = permissive();
    }
    if s["properties"].is_object() || !t.custom {
        if !s["properties"].is_object() {
            s["properties"] = json!({});
        }
        s["properties"]["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
        s["properties"]["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
        s["properties"]["metadata"] = json!({"$ref": format!("{ref_prefix}{OBJECT_META}"), "description": "Standard object's metadata."});
    }
    s["type"] = json!("object");
    s["x-kubernetes-group-version-kind"] = json!([gvk(t)]);
    s
}

fn object_meta() -> Value {
    json!({
        "type": "object",
        "description": "ObjectMeta is metadata that all persisted resources must have.",
        "properties": {
            "name": {"type": "string"}, "generateName": {"type": "string"}, "namespace": {"type": "string"},
            "uid": {"type": "string"}, "resourceVersion": {"type": "string"}, "generation": {"type": "integer", "format": "int64"},
            "creationTimestamp": {"type": "string", "format": "date-time"}, "deletionTimestamp": {"type": "string", "format": "date-time"},
            "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        },
    })
}

fn query(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(t: &ResourceType, action: &str, verb: &str, sub: &str, body_types: &[&str]) -> Value {
    let ref_ = json!({"$ref": format!("#/components/schemas/{}", definition_name(t))});
    let scope = if t.namespaced { "Namespaced" } else { "" };
    let id = format!(
        "{action}{}{}{scope}{}{sub}",
        camel(&t.group),
        camel(&t.version),
        t.kind
    );
    let mut op = json!({
        "operationId": id,
        "description": format!("{verb} {}", t.kind),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref_}}},
                      "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": gvk(t),
    });
    let mut params = vec![query(
        "dryRun",
        "When present, indicates that modifications should not be persisted.",
    )];
    if matches!(verb, "patch" | "put" | "post") {
        params.push(query("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."));
        params.push(query("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields."));
    }
    if verb == "patch" {
        params.push(json!({"name": "force", "in": "query", "description": "Force is going to force Apply requests.", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    op["parameters"] = json!(params);
    if !body_types.is_empty() {
        let mut content = Map::new();
        for ct in body_types {
            let schema = if verb == "patch" {
                json!({"type": "object"})
            } else {
                ref_.clone()
            };
            content.insert(ct.to_string(), json!({"schema": schema}));
        }
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

fn camel(s: &str) -> String {
    s.split(['.', '-'])
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn patch_types(t: &ResourceType) -> Vec<&'static str> {
    // NB: kubectl uses strategic merge only when the PATCH operation lists it; custom
    // resources never take it on a real server, and built-ins get it from kubectl's own scheme.
    let _ = t;
    vec![
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ]
}

fn path_params(namespaced: bool, named: bool) -> Value {
    let mut ps = vec![];
    if named {
        ps.push(json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
    }
    if namespaced {
        ps.push(json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}}));
    }
    ps.push(query(
        "pretty",
        "If 'true', then the output is pretty printed.",
    ));
    ps.push(query("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields."));
    Value::Array(ps)
}

/// The v3 document for one group/version, or None when nothing is served there.
pub fn v3_group_version(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let ts: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if ts.is_empty() {
        return None;
    }
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(OBJECT_META.into(), object_meta());
    for t in ts {
        let ns = if t.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let coll = format!("{base}{ns}/{}", t.plural);
        let item = format!("{coll}/{{name}}");
        let json_body = ["application/json", "application/yaml"];
        paths.insert(
            coll.clone(),
            json!({
                "get": operation(t, "list", "list", "", &[]),
                "post": operation(t, "create", "post", "", &json_body),
                "delete": operation(t, "deletecollection", "deletecollection", "", &[]),
                "parameters": path_params(t.namespaced, false),
            }),
        );
        paths.insert(
            item.clone(),
            json!({
                "get": operation(t, "read", "get", "", &[]),
                "put": operation(t, "replace", "put", "", &json_body),
                "patch": operation(t, "patch", "patch", "", &patch_types(t)),
                "delete": operation(t, "delete", "delete", "", &[]),
                "parameters": path_params(t.namespaced, true),
            }),
        );
        if t.status_subresource {
            paths.insert(
                format!("{item}/status"),
                json!({
                    "get": operation(t, "read", "get", "Status", &[]),
                    "put": operation(t, "replace", "put", "Status", &json_body),
                    "patch": operation(t, "patch", "patch", "Status", &patch_types(t)),
                    "parameters": path_params(t.namespaced, true),
                }),
            );
        }
        schemas.insert(definition_name(t), kind_schema(t, "#/components/schemas/"));
        schemas.insert(
            format!("{}List", definition_name(t)),
            json!({"type": "object", "required": ["items"],
                "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                    "items": {"type": "array", "items": {"$ref": format!("#/components/schemas/{}", definition_name(t))}},
                    "metadata": {"type": "object"}},
                "x-kubernetes-group-version-kind": [{"group": t.group, "version": t.version, "kind": t.list_kind}]}),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `/openapi/v3`: one entry per group/version with a content hash in its URL.
pub fn v3_root(types: &[ResourceType]) -> Value {
    let mut gvs: Vec<(String, String)> = types
        .iter()
        .map(|t| (t.group.clone(), t.version.clone()))
        .collect();
    gvs.sort();
    gvs.dedup();
    let mut paths = Map::new();
    for (g, v) in gvs {
        let key = if g.is_empty() {
            format!("api/{v}")
        } else {
            format!("apis/{g}/{v}")
        };
        let doc = v3_group_version(types, &g, &v).unwrap_or(Value::Null);
        let h = hash(&doc.to_string());
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={h}")}),
        );
    }
    json!({"paths": paths})
}

/// `/openapi/v2` as JSON: definitions only.
pub fn v2(types: &[ResourceType]) -> Value {
    let mut defs = Map::new();
    defs.insert(OBJECT_META.into(), object_meta());
    for t in types {
        let mut s = kind_schema(t, "#/definitions/");
        strip_v3_only(&mut s);
        defs.insert(definition_name(t), s);
    }
    json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.37.0"}, "paths": {}, "definitions": defs})
}

fn strip_v3_only(s: &mut Value) {
    match s {
        Value::Object(m) => {
            m.remove("nullable");
            m.remove("x-kubernetes-validations");
            for v in m.values_mut() {
                strip_v3_only(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(strip_v3_only),
        _ => {}
    }
}

//! Discovery documents: `/version`, `/api`, `/apis`, `/api/v1`, `/apis/<group>[/<version>]`,
//! legacy and aggregated (`apidiscovery.k8s.io/v2`). Built from the served types; no state.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::resources::{ResourceType, version_priority};

/// The aggregated discovery media type.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "37", "gitVersion": "v1.37.0-switchyard-harness",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64",
    })
}

/// group -> versions, highest priority first.
fn groups(types: &[ResourceType]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in types {
        let vs = out.entry(t.group.clone()).or_default();
        if !vs.contains(&t.version) {
            vs.push(t.version.clone());
        }
    }
    for vs in out.values_mut() {
        vs.sort_by_key(|v| version_priority(v));
    }
    out
}

fn gv(group: &str, version: &str) -> Value {
    json!({"groupVersion": format!("{group}/{version}"), "version": version})
}

/// `/api`.
pub fn core_versions(addr: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]})
}

fn group_doc(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions.iter().map(|v| gv(name, v)).collect();
    json!({"name": name, "versions": vs, "preferredVersion": gv(name, &versions[0])})
}

/// `/apis`.
pub fn group_list(types: &[ResourceType]) -> Value {
    let groups: Vec<Value> = groups(types)
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(types: &[ResourceType], name: &str) -> Option<Value> {
    let gs = groups(types);
    let vs = gs.get(name)?;
    let mut d = group_doc(name, vs);
    d["kind"] = json!("APIGroup");
    d["apiVersion"] = json!("v1");
    Some(d)
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let ts: Vec<&ResourceType> = types
        .iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if ts.is_empty() {
        return None;
    }
    let mut resources = vec![];
    for t in ts {
        let mut r = json!({
            "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
            "verbs": ResourceType::verbs(), "storageVersionHash": hash(&format!("{}/{}/{}", t.group, t.version, t.plural)),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        if t.status_subresource {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// Aggregated discovery for `/api` (core) or `/apis` (everything else).
pub fn aggregated(types: &[ResourceType], core: bool) -> Value {
    let items: Vec<Value> = groups(types)
        .iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, vs)| {
            let versions: Vec<Value> = vs
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = types
                        .iter()
                        .filter(|t| &t.group == g && &t.version == v)
                        .map(|t| {
                            let mut r = json!({
                                "resource": t.plural, "singularResource": t.singular,
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                                "verbs": ResourceType::verbs(),
                            });
                            if !t.short_names.is_empty() {
                                r["shortNames"] = json!(t.short_names);
                            }
                            if !t.categories.is_empty() {
                                r["categories"] = json!(t.categories);
                            }
                            if t.status_subresource {
                                r["subresources"] = json!([{"subresource": "status",
                                    "responseKind": {"group": t.group, "version": t.version, "kind": t.kind},
                                    "verbs": ["get", "patch", "update"]}]);
                            }
                            r
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// A short stable hash, for storageVersionHash and openapi URLs.
pub fn hash(s: &str) -> String {
    // FNV-1a: stable across runs, no dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016X}")
}

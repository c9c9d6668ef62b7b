//! The harness API server over raw HTTP: discovery, CRD serving, CRUD semantics, Status
//! errors, generation and the status subresource, patch types, server-side apply, finalizers,
//! schema validation and CEL, authentication, and the `kube-harness` binary.

#![allow(clippy::unwrap_used)]

use std::io::BufRead as _;

use e2e::apiserver::testing::{RawResponse, fixture_docs, raw, raw_json};
use e2e::apiserver::{ApiServer, Config};
use serde_json::{Value, json};

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const WIDGETS: &str = "/apis/test.switchyard.dev/v1/namespaces/default/widgets";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn install_crds(url: &str) {
    for f in ["widget-crd.yaml", "gadget-crd.yaml"] {
        for doc in fixture_docs(f).unwrap() {
            let r = raw_json(
                url,
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                JSON,
                &doc,
            )
            .unwrap();
            assert_eq!(r.code, 201, "{}", String::from_utf8_lossy(&r.body));
        }
    }
}

fn widget(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "test.switchyard.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})
}

fn rv(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn get(url: &str, path: &str) -> RawResponse {
    raw(url, "GET", path, &[("Accept", JSON)], b"").unwrap()
}

fn assert_status(r: &RawResponse, code: u16, reason: &str) -> Value {
    let s = r.json();
    assert_eq!(r.code, code, "{s}");
    assert_eq!(s["kind"], "Status", "{s}");
    assert_eq!(s["apiVersion"], "v1");
    assert_eq!(s["status"], "Failure");
    assert_eq!(s["reason"], reason, "{s}");
    assert_eq!(s["code"], code);
    s
}

#[test]
fn crd_makes_its_kinds_discoverable_and_servable() {
    let srv = ApiServer::start().unwrap();
    let url = srv.url();
    assert_eq!(get(url, "/version").json()["major"], "1");
    assert_eq!(get(url, "/apis/test.switchyard.dev/v1").code, 404);
    assert_eq!(get(url, WIDGETS).code, 404);

    install_crds(url);
    let crd = get(
        url,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.switchyard.dev",
    )
    .json();
    let established = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established, "{crd}");

    let groups = get(url, "/apis").json();
    let g = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "test.switchyard.dev")
        .expect("group listed");
    assert_eq!(g["preferredVersion"]["version"], "v1");
    let versions: Vec<&str> = g["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["v1", "v1alpha1"]);

    let v1 = get(url, "/apis/test.switchyard.dev/v1").json();
    let res = v1["resources"].as_array().unwrap();
    let w = res.iter().find(|r| r["name"] == "widgets").unwrap();
    assert_eq!(w["namespaced"], true);
    assert_eq!(w["kind"], "Widget");
    assert_eq!(w["shortNames"], json!(["wd"]));
    assert!(res.iter().any(|r| r["name"] == "widgets/status"));
    let gadgets = get(url, "/apis/test.switchyard.dev/v1alpha1").json();
    assert_eq!(gadgets["resources"][0]["namespaced"], false);

    // Aggregated discovery when asked for it.
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let agg = raw(url, "GET", "/apis", &[("Accept", accept)], b"").unwrap();
    assert_eq!(
        agg.header("content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    let items = agg.json()["items"].as_array().unwrap().clone();
    let item = items
        .iter()
        .find(|i| i["metadata"]["name"] == "test.switchyard.dev")
        .unwrap();
    assert_eq!(item["versions"][0]["resources"][0]["resource"], "widgets");
    assert_eq!(item["versions"][0]["resources"][0]["scope"], "Namespaced");
    assert!(
        get(url, "/api/v1").json()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "configmaps")
    );

    // Both scopes serve.
    let r = raw_json(
        url,
        "POST",
        WIDGETS,
        JSON,
        &widget("w", json!({"size": 1, "configMap": "c"})),
    )
    .unwrap();
    assert_eq!(r.code, 201, "{}", r.json());
    let gadget = json!({"apiVersion": "test.switchyard.dev/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}, "anything": {"goes": 1}});
    let r = raw_json(
        url,
        "POST",
        "/apis/test.switchyard.dev/v1alpha1/gadgets",
        JSON,
        &gadget,
    )
    .unwrap();
    assert_eq!(r.code, 201);
    assert_eq!(r.json()["anything"]["goes"], 1);
    assert!(r.json()["metadata"].get("namespace").is_none());
    assert_eq!(
        get(
            url,
            "/apis/test.switchyard.dev/v1alpha1/namespaces/default/gadgets"
        )
        .code,
        404
    );

    // OpenAPI v3 knows the kind and tells kubectl the server validates fields.
    let root = get(url, "/openapi/v3").json();
    let rel = root["paths"]["apis/test.switchyard.dev/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = get(url, &rel).json();
    let patch = &doc["paths"]["/apis/test.switchyard.dev/v1/namespaces/{namespace}/widgets/{name}"]
        ["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Widget");
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation")
    );
    assert!(doc["components"]["schemas"]["dev.switchyard.test.v1.Widget"]["properties"]["spec"]["properties"]["size"].is_object());
    // v2 as JSON; protobuf is refused so clients fall back.
    assert!(
        get(url, "/openapi/v2").json()["definitions"]["dev.switchyard.test.v1.Widget"].is_object()
    );
    let pb = raw(
        url,
        "GET",
        "/openapi/v2",
        &[(
            "Accept",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )],
        b"",
    )
    .unwrap();
    assert_eq!(pb.code, 406);

    // Deleting the CRD takes its objects and its discovery with it.
    let r = raw(
        url,
        "DELETE",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.switchyard.dev",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.code, 200);
    assert_eq!(get(url, WIDGETS).code, 404);
    assert_eq!(get(url, "/apis/test.switchyard.dev/v1").code, 404);
}

#[test]
fn crud_semantics_and_status_errors() {
    let srv = ApiServer::start().unwrap();
    let url = srv.url();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cfg-", "labels": {"app": "a"}}, "data": {"k": "v"}});
    let a = raw_json(url, "POST", CMS, JSON, &cm).unwrap();
    assert_eq!(a.code, 201);
    let a = a.json();
    let name = a["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
    assert!(!a["metadata"]["uid"].as_str().unwrap().is_empty());
    assert!(
        a["metadata"]["creationTimestamp"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_eq!(a["metadata"]["namespace"], "default");
    let b = raw_json(url, "POST", CMS, JSON, &cm).unwrap().json();
    assert!(rv(&b) > rv(&a));
    assert_ne!(a["metadata"]["uid"], b["metadata"]["uid"]);

    let s = assert_status(&get(url, &format!("{CMS}/missing")), 404, "NotFound");
    assert_eq!(s["message"], "configmaps \"missing\" not found");
    assert_eq!(s["details"]["name"], "missing");
    assert_eq!(s["details"]["kind"], "configmaps");

    let named = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fixed"}});
    assert_eq!(raw_json(url, "POST", CMS, JSON, &named).unwrap().code, 201);
    let s = assert_status(
        &raw_json(url, "POST", CMS, JSON, &named).unwrap(),
        409,
        "AlreadyExists",
    );
    assert_eq!(s["message"], "configmaps \"fixed\" already exists");

    // Optimistic concurrency: an update with a stale resourceVersion is refused.
    let mut cur = get(url, &format!("{CMS}/fixed")).json();
    cur["data"] = json!({"x": "1"});
    let ok = raw_json(url, "PUT", &format!("{CMS}/fixed"), JSON, &cur).unwrap();
    assert_eq!(ok.code, 200);
    assert!(rv(&ok.json()) > rv(&cur));
    cur["data"] = json!({"x": "2"});
    let s = assert_status(
        &raw_json(url, "PUT", &format!("{CMS}/fixed"), JSON, &cur).unwrap(),
        409,
        "Conflict",
    );
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified"),
        "{s}"
    );
    // A write that changes nothing keeps the resourceVersion.
    let same = raw_json(url, "PUT", &format!("{CMS}/fixed"), JSON, &ok.json())
        .unwrap()
        .json();
    assert_eq!(rv(&same), rv(&ok.json()));

    let s = assert_status(
        &raw_json(
            url,
            "POST",
            "/api/v1/namespaces/nope/configmaps",
            JSON,
            &named,
        )
        .unwrap(),
        404,
        "NotFound",
    );
    assert_eq!(s["message"], "namespaces \"nope\" not found");

    // Lists carry a resourceVersion and honour selectors.
    let list = get(url, &format!("{CMS}?labelSelector=app%3Da")).json();
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(rv(&list) >= rv(&same));
    let list = get(url, &format!("{CMS}?fieldSelector=metadata.name%3Dfixed")).json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let all = get(url, "/api/v1/configmaps?labelSelector=app+notin+(a)").json();
    assert_eq!(all["items"].as_array().unwrap().len(), 1);

    let del = raw(url, "DELETE", &format!("{CMS}/fixed"), &[], b"").unwrap();
    assert_eq!(del.code, 200);
    assert_eq!(get(url, &format!("{CMS}/fixed")).code, 404);

    // Deleting a namespace removes what is in it.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "scratch"}});
    assert_eq!(
        raw_json(url, "POST", "/api/v1/namespaces", JSON, &ns)
            .unwrap()
            .code,
        201
    );
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    assert_eq!(
        raw_json(
            url,
            "POST",
            "/api/v1/namespaces/scratch/configmaps",
            JSON,
            &cm
        )
        .unwrap()
        .code,
        201
    );
    assert_eq!(
        raw(url, "DELETE", "/api/v1/namespaces/scratch", &[], b"")
            .unwrap()
            .code,
        200
    );
    assert_eq!(
        get(url, "/api/v1/namespaces/scratch/configmaps/c").code,
        404
    );
}

#[test]
fn custom_resources_are_validated_pruned_and_defaulted() {
    let srv = ApiServer::start().unwrap();
    let url = srv.url();
    install_crds(url);
    let bad = fixture_docs("widget-invalid.yaml").unwrap().remove(0);
    let s = assert_status(
        &raw_json(url, "POST", WIDGETS, JSON, &bad).unwrap(),
        422,
        "Invalid",
    );
    let msg = s["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Widget.test.switchyard.dev \"broken\" is invalid: ["),
        "{msg}"
    );
    assert!(
        msg.contains(
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        ),
        "{msg}"
    );
    assert!(
        msg.contains(
            "spec.mode: Unsupported value: \"sometimes\": supported values: \"all\", \"tag\""
        ),
        "{msg}"
    );
    assert!(
        msg.contains(
            "spec: Invalid value: \"object\": exactly one of git or configMap must be set"
        ),
        "{msg}"
    );
    assert_eq!(s["details"]["group"], "test.switchyard.dev");
    assert_eq!(s["details"]["kind"], "Widget");
    let fields: Vec<&str> = s["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"spec.size") && fields.contains(&"spec.mode") && fields.contains(&"spec"),
        "{fields:?}"
    );

    let s = assert_status(
        &raw_json(
            url,
            "POST",
            WIDGETS,
            JSON,
            &widget("w", json!({"configMap": "c"})),
        )
        .unwrap(),
        422,
        "Invalid",
    );
    assert_eq!(
        s["message"],
        "Widget.test.switchyard.dev \"w\" is invalid: spec.size: Required value"
    );
    assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");

    // fieldPath moves the error; nested rules see their own value.
    let s = assert_status(
        &raw_json(
            url,
            "POST",
            WIDGETS,
            JSON,
            &widget("w", json!({"size": 1, "configMap": "c", "mode": "tag"})),
        )
        .unwrap(),
        422,
        "Invalid",
    );
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("spec.tag: Invalid value: \"object\": tag is required when mode is tag"),
        "{s}"
    );
    let s = assert_status(
        &raw_json(
            url,
            "POST",
            WIDGETS,
            JSON,
            &widget("w", json!({"size": 1, "git": {"url": "ftp://x"}})),
        )
        .unwrap(),
        422,
        "Invalid",
    );
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("spec.git.url: Invalid value: \"string\": url must be https:// or git://"),
        "{s}"
    );

    // Unknown fields are pruned, unless preserved; defaults are applied.
    let w = widget(
        "w",
        json!({"size": 2, "configMap": "c", "junk": true, "extra": {"kept": [1]}, "name": "n1"}),
    );
    let created = raw_json(url, "POST", WIDGETS, JSON, &w).unwrap();
    assert_eq!(created.code, 201, "{}", created.json());
    let created = created.json();
    assert!(created["spec"].get("junk").is_none());
    assert_eq!(created["spec"]["extra"]["kept"], json!([1]));
    assert_eq!(created["spec"]["mode"], "all");
    // ...or refused with fieldValidation=Strict, as kubectl asks.
    let r = raw_json(
        url,
        "POST",
        &format!("{WIDGETS}?fieldValidation=Strict"),
        JSON,
        &widget("x", json!({"size": 2, "configMap": "c", "junk": 1})),
    )
    .unwrap();
    let s = assert_status(&r, 400, "BadRequest");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("unknown field \"spec.junk\""),
        "{s}"
    );

    // Transition rules run on update only.
    let r = raw_json(
        url,
        "PATCH",
        &format!("{WIDGETS}/w"),
        MERGE,
        &json!({"spec": {"name": "n2"}}),
    )
    .unwrap();
    let s = assert_status(&r, 422, "Invalid");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("spec.name: Invalid value: \"string\": name is immutable"),
        "{s}"
    );
    assert_eq!(
        raw_json(
            url,
            "PATCH",
            &format!("{WIDGETS}/w"),
            MERGE,
            &json!({"spec": {"size": 9}})
        )
        .unwrap()
        .code,
        200
    );

    // metadata.name must be a DNS subdomain.
    let s = assert_status(
        &raw_json(
            url,
            "POST",
            WIDGETS,
            JSON,
            &widget("Bad_Name", json!({"size": 1, "configMap": "c"})),
        )
        .unwrap(),
        422,
        "Invalid",
    );
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{s}"
    );
}

#[test]
fn generation_tracks_spec_and_status_subresource_isolates_status() {
    let srv = ApiServer::start().unwrap();
    let url = srv.url();
    install_crds(url);
    let mut w = widget("w", json!({"size": 1, "configMap": "c"}));
    w["status"] = json!({"message": "dropped on create"});
    let created = raw_json(url, "POST", WIDGETS, JSON, &w).unwrap().json();
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(created.get("status").is_none(), "{created}");

    let path = format!("{WIDGETS}/w");
    let mut cur = created.clone();
    cur["spec"]["size"] = json!(2);
    cur["status"] = json!({"message": "ignored on the main resource"});
    let updated = raw_json(url, "PUT", &path, JSON, &cur).unwrap().json();
    assert_eq!(updated["metadata"]["generation"], 2);
    assert!(updated.get("status").is_none());

    let mut st = updated.clone();
    st["status"] = json!({"observedGeneration": 2, "message": "hello"});
    st["spec"]["size"] = json!(50);
    let after = raw_json(url, "PUT", &format!("{path}/status"), JSON, &st)
        .unwrap()
        .json();
    assert_eq!(after["status"]["message"], "hello");
    assert_eq!(
        after["spec"]["size"], 2,
        "spec does not change through /status"
    );
    assert_eq!(after["metadata"]["generation"], 2);
    assert!(rv(&after) > rv(&updated));

    let labelled = raw_json(
        url,
        "PATCH",
        &path,
        MERGE,
        &json!({"metadata": {"labels": {"x": "y"}}}),
    )
    .unwrap()
    .json();
    assert_eq!(
        labelled["metadata"]["generation"], 2,
        "metadata changes keep the generation"
    );
    let patched = raw_json(
        url,
        "PATCH",
        &format!("{path}/status"),
        MERGE,
        &json!({"status": {"message": "bye"}}),
    )
    .unwrap()
    .json();
    assert_eq!(patched["status"]["message"], "bye");
    assert_eq!(patched["status"]["observedGeneration"], 2);
    // Status writes are validated too.
    let r = raw_json(
        url,
        "PATCH",
        &format!("{path}/status"),
        MERGE,
        &json!({"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}),
    )
    .unwrap();
    assert_status(&r, 422, "Invalid");
}

#[test]
fn patch_types_behave_like_the_real_server() {
    let srv = ApiServer::start().unwrap();
    let url = srv.url();
    install_crds(url);
    let path = format!("{WIDGETS}/w");
    raw_json(
        url,
        "POST",
        WIDGETS,
        JSON,
        &widget(
            "w",
            json!({"size": 1, "configMap": "c", "labels": {"a": "1"}}),
        ),
    )
    .unwrap();

    let r = raw_json(
        url,
        "PATCH",
        &path,
        MERGE,
        &json!({"spec": {"labels": {"a": null, "b": "2"}}}),
    )
    .unwrap()
    .json();
    assert_eq!(r["spec"]["labels"], json!({"b": "2"}));
    let ops = json!([{"op": "test", "path": "/spec/size", "value": 1}, {"op": "replace", "path": "/spec/size", "value": 7}]);
    let r = raw_json(url, "PATCH", &path, "application/json-patch+json", &ops)
        .unwrap()
        .json();
    assert_eq!(r["spec"]["size"], 7);
    let failing = json!([{"op": "test", "path": "/spec/size", "value": 1}]);
    assert_eq!(
        raw_json(url, "PATCH", &path, "application/json-patch+json", &failing)
            .unwrap()
            .code,
        422
    );
    // Custom resources do not take strategic merge patches; built-ins do.
    let r = raw_json(
        url,
        "PATCH",
        &path,
        "application/strategic-merge-patch+json",
        &json!({"spec": {"size": 2}}),
    )
    .unwrap();
    assert_status(&r, 415, "UnsupportedMediaType");
    raw_json(url, "POST", CMS, JSON, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}})).unwrap();
    let r = raw_json(
        url,
        "PATCH",
        &format!("{CMS}/c"),
        "application/strategic-merge-patch+json",
        &json!({"data": {"b": "2"}}),
    )
    .unwrap();
    assert_eq!(r.json()["data"], json!({"a": "1", "b": "2"}));
    // A patch carrying a stale resourceVersion conflicts.
    let r = raw_json(
        url,
        "PATCH",
        &path,
        MERGE,
        &json!({"metadata": {"resourceVersion": "1"}, "spec": {"size": 3}}),
    )
    .unwrap();
    assert_status(&r, 409, "Conflict");
    let r = raw_json(
        url,
        "PATCH",
        &format!("{WIDGETS}/missing"),
        MERGE,
        &json!({"spec": {}}),
    )
    .unwrap();
    assert_status(&r, 404, "NotFound");
}

fn apply(url: &str, path: &str, manager: &str, force: bool, body: &str) -> RawResponse {
    let p = format!("{path}?fieldManager={manager}&force={force}");
    raw(
        url,
        "PATCH",
        &p,
        &[("Content-Type", "application/apply-patch+yaml")],
        body.as_bytes(),
    )
    .unwrap()
}

#[test]
fn server_side_apply_tracks_managers() {
    let srv = ApiServer::start().unwrap();
    let url = srv.url();
    install_crds(url);
    let path = format!("{WIDGETS}/w");
    let doc = "apiVersion: test.switchyard.dev/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 1\n  configMap: c\n  labels:\n    a: '1'\n";
    let created = apply(url, &path, "alice", false, doc);
    assert_eq!(created.code, 201, "{}", created.json());
    let created = created.json();
    let mf = &created["metadata"]["managedFields"][0];
    assert_eq!(mf["manager"], "alice");
    assert_eq!(mf["operation"], "Apply");
    assert!(mf["fieldsV1"]["f:spec"]["f:size"].is_object(), "{mf}");

    // The same apply again changes nothing.
    let again = apply(url, &path, "alice", false, doc);
    assert_eq!(again.code, 200);
    assert_eq!(rv(&again.json()), rv(&created));

    // Another manager setting a different value conflicts, unless forced.
    let bob = "apiVersion: test.switchyard.dev/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 5\n";
    let s = assert_status(&apply(url, &path, "bob", false, bob), 409, "Conflict");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("conflict with \"alice\""),
        "{s}"
    );
    assert_eq!(s["details"]["causes"][0]["field"], ".spec.size");
    let forced = apply(url, &path, "bob", true, bob).json();
    assert_eq!(forced["spec"]["size"], 5);

    // Fields a manager stops applying are removed, unless someone else owns them.
    let alice2 = "apiVersion: test.switchyard.dev/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  configMap: c\n";
    let after = apply(url, &path, "alice", false, alice2).json();
    assert!(after["spec"].get("labels").is_none(), "{after}");
    assert_eq!(after["spec"]["size"], 5, "bob's field stays");

    // A merge patch by an updater takes ownership of what it changed.
    let r = raw_json(
        url,
        "PATCH",
        &format!("{path}?fieldManager=carol"),
        MERGE,
        &json!({"spec": {"size": 6}}),
    )
    .unwrap()
    .json();
    let carol = r["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "carol")
        .unwrap()
        .clone();
    assert_eq!(carol["operation"], "Update");
    assert!(carol["fieldsV1"]["f:spec"]["f:size"].is_object());

    // Status conditions as a list-map: two managers own one condition each.
    let st = |mgr: &str, ty: &str| {
        let body = format!(
            "{{\"apiVersion\":\"test.switchyard.dev/v1\",\"kind\":\"Widget\",\"metadata\":{{\"name\":\"w\"}},\"status\":{{\"conditions\":[{{\"type\":\"{ty}\",\"status\":\"True\"}}]}}}}"
        );
        apply(url, &format!("{path}/status"), mgr, true, &body)
    };
    assert_eq!(r["metadata"]["generation"], 4);
    assert_eq!(st("ctrl-a", "Ready").code, 200);
    let both = st("ctrl-b", "Synced").json();
    assert_eq!(
        both["status"]["conditions"].as_array().unwrap().len(),
        2,
        "{both}"
    );
    assert_eq!(
        both["metadata"]["generation"], 4,
        "status applies leave the generation alone"
    );
    let sub: Vec<&Value> = both["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["subresource"] == "status")
        .collect();
    assert_eq!(sub.len(), 2, "{both}");
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let srv = ApiServer::start().unwrap();
    let url = srv.url();
    install_crds(url);
    let mut w = widget("w", json!({"size": 1, "configMap": "c"}));
    w["metadata"]["finalizers"] = json!(["test.switchyard.dev/hold"]);
    raw_json(url, "POST", WIDGETS, JSON, &w).unwrap();
    let path = format!("{WIDGETS}/w");
    let del = raw(
        url,
        "DELETE",
        &path,
        &[("Content-Type", JSON)],
        br#"{"propagationPolicy":"Background"}"#,
    )
    .unwrap();
    assert_eq!(del.code, 200);
    let d = del.json();
    assert!(d["metadata"]["deletionTimestamp"].is_string(), "{d}");
    assert_eq!(d["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(get(url, &path).code, 200);
    let r = raw_json(
        url,
        "PATCH",
        &path,
        MERGE,
        &json!({"metadata": {"finalizers": ["test.switchyard.dev/hold", "new"]}}),
    )
    .unwrap();
    assert_status(&r, 422, "Invalid");
    let r = raw_json(
        url,
        "PATCH",
        &path,
        MERGE,
        &json!({"metadata": {"finalizers": null}}),
    )
    .unwrap();
    assert_eq!(r.code, 200);
    assert_eq!(get(url, &path).code, 404);
    // Preconditions on delete.
    raw_json(
        url,
        "POST",
        WIDGETS,
        JSON,
        &widget("p", json!({"size": 1, "configMap": "c"})),
    )
    .unwrap();
    let pre = json!({"preconditions": {"resourceVersion": "1"}});
    let r = raw(
        url,
        "DELETE",
        &format!("{WIDGETS}/p"),
        &[("Content-Type", JSON)],
        pre.to_string().as_bytes(),
    )
    .unwrap();
    assert_status(&r, 409, "Conflict");
}

#[test]
fn bearer_token_is_required_when_configured() {
    let srv = ApiServer::start_with(Config {
        token: Some("s3cret".into()),
        ..Config::default()
    })
    .unwrap();
    let url = srv.url();
    assert_status(&get(url, "/api/v1/namespaces"), 401, "Unauthorized");
    let r = raw(
        url,
        "GET",
        "/api/v1/namespaces",
        &[("Authorization", "Bearer s3cret")],
        b"",
    )
    .unwrap();
    assert_eq!(r.code, 200);
    let kc = std::fs::read_to_string(srv.kubeconfig()).unwrap();
    assert!(kc.contains("s3cret") && kc.contains(url), "{kc}");
}

#[test]
fn binary_writes_kubeconfig_prints_url_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kc");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kube-harness"))
        .args(["--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kc)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line.trim();
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    assert!(std::fs::read_to_string(&kc).unwrap().contains(url));
    assert_eq!(
        get(url, "/api/v1/namespaces/default").json()["metadata"]["name"],
        "default"
    );
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn cluster_is_the_harness_unless_kubeconfig_is_set() {
    let cluster = e2e::apiserver::cluster().unwrap();
    if std::env::var_os("KUBECONFIG").is_some() {
        assert!(
            cluster.harness().is_none(),
            "a given KUBECONFIG is used unchanged"
        );
        return;
    }
    let srv = cluster
        .harness()
        .expect("a harness server when KUBECONFIG is unset");
    assert!(
        std::fs::read_to_string(cluster.kubeconfig())
            .unwrap()
            .contains(srv.url())
    );
    let client = cluster.client().await.unwrap();
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    let default = namespaces.get("default").await.unwrap();
    assert_eq!(default.status.unwrap().phase.as_deref(), Some("Active"));
    let err = namespaces.get("missing").await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 404);
            assert_eq!(s.reason, "NotFound");
        }
        other => panic!("expected a Status error, got {other:?}"),
    }
}

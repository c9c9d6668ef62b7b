//! The kinds the server knows: the built-in ones it stores generically and the ones stored
//! CustomResourceDefinitions define. Owns the mapping from a URL's group/version/plural to a
//! [`ResourceType`]; does not touch stored objects.

use serde_json::Value;

/// One `additionalPrinterColumns` entry.
#[derive(Clone, Debug)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// `string`, `integer`, `number`, `boolean` or `date`.
    pub type_: String,
    /// Optional format.
    pub format: String,
    /// Description.
    pub description: String,
    /// 0 shows by default, >0 only with `-o wide`.
    pub priority: i64,
    /// JSONPath into the object.
    pub json_path: String,
}

/// One served group/version/resource.
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// API group, empty for core.
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name used in URLs.
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Kind of the list.
    pub list_kind: String,
    /// Namespaced or cluster scoped.
    pub namespaced: bool,
    /// Short names (`cm`, `wd`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether `/status` is a separate subresource.
    pub status_subresource: bool,
    /// Whether the kind keeps `metadata.generation`.
    pub has_generation: bool,
    /// The version's `openAPIV3Schema`, for custom resources.
    pub schema: Option<Value>,
    /// Printer columns, for custom resources.
    pub printer_columns: Vec<PrinterColumn>,
    /// Whether a CRD defines it.
    pub custom: bool,
    /// The storage version (the one objects are kept in).
    pub storage: bool,
}

impl ResourceType {
    /// `group/version` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key shared by all versions of one resource (and by `events.k8s.io` events
    /// with core ones).
    pub fn key(&self) -> (String, String) {
        if super::events::stored_as_core(&self.group, &self.plural) {
            return (String::new(), self.plural.clone());
        }
        (self.group.clone(), self.plural.clone())
    }

    /// Verbs for discovery.
    pub fn verbs() -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    generation: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        list_kind: format!("{kind}List"),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        status_subresource: status,
        has_generation: generation,
        schema: None,
        printer_columns: vec![],
        custom: false,
        storage: true,
    }
}

/// The built-in kinds: stored as they come, with no behaviour beyond storage.
pub fn builtins() -> Vec<ResourceType> {
    let rbac = "rbac.authorization.k8s.io";
    vec![
        builtin(
            "",
            "v1",
            "namespaces",
            "Namespace",
            false,
            &["ns"],
            true,
            false,
        ),
        builtin("", "v1", "secrets", "Secret", true, &[], false, false),
        builtin(
            "",
            "v1",
            "configmaps",
            "ConfigMap",
            true,
            &["cm"],
            false,
            false,
        ),
        builtin("", "v1", "events", "Event", true, &["ev"], false, false),
        builtin("", "v1", "services", "Service", true, &["svc"], true, false),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
            false,
        ),
        // Stored as core v1 Events (see `events`).
        ResourceType {
            storage: false,
            ..builtin(
                super::events::GROUP,
                "v1",
                "events",
                "Event",
                true,
                &["ev"],
                false,
                false,
            )
        },
        builtin(
            "coordination.k8s.io",
            "v1",
            "leases",
            "Lease",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            true,
            &["deploy"],
            true,
            true,
        ),
        builtin(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            &["pdb"],
            true,
            true,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"],
            false,
            true,
        ),
        builtin(rbac, "v1", "roles", "Role", true, &[], false, false),
        builtin(
            rbac,
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            rbac,
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            false,
            false,
        ),
        builtin(
            rbac,
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
            false,
        ),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
            true,
        ),
    ]
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn str_of<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut cur = v;
    for p in path {
        match cur.get(p) {
            Some(n) => cur = n,
            None => return "",
        }
    }
    cur.as_str().unwrap_or("")
}

/// The served versions a stored CRD defines. Invalid CRDs are refused on write, so this only
/// skips what it cannot read.
pub fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let group = str_of(spec, &["group"]).to_string();
    let names = &spec["names"];
    let plural = str_of(names, &["plural"]).to_string();
    let kind = str_of(names, &["kind"]).to_string();
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return vec![];
    }
    let singular = match str_of(names, &["singular"]) {
        "" => kind.to_lowercase(),
        s => s.to_string(),
    };
    let list_kind = match str_of(names, &["listKind"]) {
        "" => format!("{kind}List"),
        s => s.to_string(),
    };
    let namespaced = str_of(spec, &["scope"]) != "Cluster";
    let mut out = vec![];
    for v in spec["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if v["served"] == Value::Bool(false) {
            continue;
        }
        let columns = v["additionalPrinterColumns"]
            .as_array()
            .map(|cols| {
                cols.iter()
                    .map(|c| PrinterColumn {
                        name: str_of(c, &["name"]).to_string(),
                        type_: str_of(c, &["type"]).to_string(),
                        format: str_of(c, &["format"]).to_string(),
                        description: str_of(c, &["description"]).to_string(),
                        priority: c["priority"].as_i64().unwrap_or(0),
                        json_path: str_of(c, &["jsonPath"]).to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceType {
            group: group.clone(),
            version: str_of(v, &["name"]).to_string(),
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            list_kind: list_kind.clone(),
            namespaced,
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: v["subresources"].get("status").is_some(),
            has_generation: true,
            schema: v["schema"].get("openAPIV3Schema").cloned(),
            printer_columns: columns,
            custom: true,
            storage: v["storage"] == Value::Bool(true),
        });
    }
    out
}

/// Orders versions the way Kubernetes does: GA before beta before alpha, higher numbers first,
/// then anything else alphabetically.
pub fn version_priority(v: &str) -> (u8, i64, u8, i64, String) {
    let parse = |s: &str| -> Option<(i64, u8, i64)> {
        let rest = s.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 2, 0));
        }
        let (level, n) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        Some((major, level, n.parse().ok()?))
    };
    match parse(v) {
        // Lower tuples sort first: negate so that higher versions come first.
        Some((major, level, minor)) => {
            (0, -(level as i64), 0, -major * 1000 - minor, String::new())
        }
        None => (1, 0, 0, 0, v.to_string()),
    }
}

/// Checks the parts of a CRD the server relies on; returns field errors.
pub fn validate_crd(crd: &Value) -> Vec<super::status::FieldError> {
    use super::status::FieldError;
    let mut errs = vec![];
    let spec = &crd["spec"];
    let group = str_of(spec, &["group"]);
    let plural = str_of(spec, &["names", "plural"]);
    if group.is_empty() {
        errs.push(FieldError::required("spec.group"));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural"));
    }
    if str_of(spec, &["names", "kind"]).is_empty() {
        errs.push(FieldError::required("spec.names.kind"));
    }
    let name = str_of(crd, &["metadata", "name"]);
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            &format!("\"{name}\""),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match str_of(spec, &["scope"]) {
        "Namespaced" | "Cluster" => {}
        other => errs.push(FieldError::not_supported(
            "spec.scope",
            &format!("\"{other}\""),
            &["\"Cluster\"".into(), "\"Namespaced\"".into()],
        )),
    }
    let versions = spec["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            "null",
            "must have exactly one version marked as storage version",
        ));
    } else if versions
        .iter()
        .filter(|v| v["storage"] == Value::Bool(true))
        .count()
        != 1
    {
        errs.push(FieldError::invalid(
            "spec.versions",
            "[]apiextensions.CustomResourceDefinitionVersion{...}",
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if v["schema"].get("openAPIV3Schema").is_none() {
            errs.push(FieldError::required(&format!(
                "spec.versions[{i}].schema.openAPIV3Schema"
            )));
        }
    }
    errs
}

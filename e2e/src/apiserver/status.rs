//! `Status` errors in the shape Kubernetes clients parse (`kind: Status`, `reason`, `details`,
//! `code`). Every failure the server returns goes through [`ApiError`]; nothing else here.

use serde_json::{Value, json};

/// One field-level problem, as a `details.causes[]` entry and one line of an Invalid message.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// The field path, e.g. `spec.mode`.
    pub field: String,
    /// The cause reason, e.g. `FieldValueRequired`.
    pub reason: &'static str,
    /// What follows `<field>: `, e.g. `Required value`.
    pub message: String,
}

impl FieldError {
    /// `spec.x: Required value`.
    pub fn required(field: &str) -> Self {
        Self {
            field: field.to_string(),
            reason: "FieldValueRequired",
            message: "Required value".into(),
        }
    }

    /// `spec.x: Required value: <detail>`.
    pub fn required_because(field: &str, detail: &str) -> Self {
        Self {
            field: field.to_string(),
            reason: "FieldValueRequired",
            message: format!("Required value: {detail}"),
        }
    }

    /// `spec.x: Invalid value: <value>: <detail>`.
    pub fn invalid(field: &str, value: &str, detail: &str) -> Self {
        Self {
            field: field.to_string(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    /// `spec.x: Unsupported value: "y": supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &str, supported: &[String]) -> Self {
        Self {
            field: field.to_string(),
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                supported.join(", ")
            ),
        }
    }

    /// `spec.x: Forbidden: <detail>`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self {
            field: field.to_string(),
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {detail}"),
        }
    }

    /// The line as the real server prints it.
    pub fn line(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// A failed request: becomes a `Status` body with the matching HTTP code.
#[derive(Clone, Debug)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, …).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details`, when the error is about one object.
    pub details: Option<Value>,
}

/// Result of an API operation.
pub type ApiResult<T> = Result<T, ApiError>;

/// `widgets.test.switchyard.dev`, or `configmaps` for the core group: how the real server
/// names a resource in messages.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        let mut d = json!({"name": name, "kind": kind});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        self.details = Some(d);
        self
    }

    /// 404 for an object.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .with_details(name, group, plural)
    }

    /// 404 for a path nothing serves.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details_value(json!({}))
    }

    fn with_details_value(mut self, v: Value) -> Self {
        self.details = Some(v);
        self
    }

    /// 409 AlreadyExists.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, plural)),
        )
        .with_details(name, group, plural)
    }

    /// 409 Conflict on a stale resourceVersion or a failed precondition.
    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(group, plural)
            ),
        )
        .with_details(name, group, plural)
    }

    /// 409 Conflict of server-side apply, with one cause per contested field.
    pub fn apply_conflict(
        group: &str,
        kind: &str,
        name: &str,
        causes: Vec<(String, String)>,
    ) -> Self {
        let lines: Vec<String> = causes.iter().map(|(m, f)| format!("- {m}: {f}")).collect();
        let msg = if causes.len() == 1 {
            format!(
                "Apply failed with 1 conflict: conflict with \"{}\": {}",
                causes[0].0, causes[0].1
            )
        } else {
            format!(
                "Apply failed with {} conflicts: conflicts with \"{}\":\n{}",
                causes.len(),
                causes[0].0,
                lines.join("\n")
            )
        };
        let causes: Vec<Value> = causes
            .iter()
            .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": f}))
            .collect();
        let mut e = Self::new(409, "Conflict", msg).with_details(name, group, kind);
        if let Some(d) = e.details.as_mut() {
            d["causes"] = Value::Array(causes);
        }
        e
    }

    /// 422 Invalid with field causes; `kind` is the Kind (`Widget`), as the real server words it.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let lines: Vec<String> = errors.iter().map(FieldError::line).collect();
        let what = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let joined = if lines.len() == 1 {
            lines[0].clone()
        } else {
            format!("[{}]", lines.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{what} \"{name}\" is invalid: {joined}"),
        )
        .with_details(name, group, kind);
        let causes: Vec<Value> = errors
            .iter()
            .map(|f| json!({"reason": f.reason, "message": f.message, "field": f.field}))
            .collect();
        if let Some(d) = e.details.as_mut() {
            d["causes"] = Value::Array(causes);
        }
        e
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(verb: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({verb})"),
        )
    }

    /// 406 NotAcceptable.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// 410 Gone / Expired, as sent in a watch ERROR event.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

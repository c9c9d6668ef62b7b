//! The request log: one entry per resource request, named as Kubernetes authorization names
//! it (verb, API group, resource, subresource, namespace) plus the client's User-Agent, so a
//! test can compare what a client did with the RBAC rules it is given. Kept in memory, and
//! appended as JSON lines to `$KUBE_HARNESS_REQUEST_LOG` when that is set, so every harness
//! of a whole test run can add to one file. Owns nothing else.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The variable naming the file every harness appends its requests to.
pub const LOG_ENV: &str = "KUBE_HARNESS_REQUEST_LOG";

/// One request, as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Request {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
    /// API group, empty for core.
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// `status`, or empty.
    pub subresource: String,
    /// Namespace, empty for cluster-wide requests.
    pub namespace: String,
    /// The client's User-Agent header.
    pub user_agent: String,
}

/// The authorization verb of a request, as the API server derives it.
pub fn verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// What a server recorded.
#[derive(Default)]
pub struct RequestLog {
    entries: Mutex<Vec<Request>>,
    file: Option<PathBuf>,
}

impl RequestLog {
    /// A log that also appends to `file`.
    pub fn new(file: Option<PathBuf>) -> Self {
        Self {
            entries: Mutex::default(),
            file,
        }
    }

    /// Records one request.
    pub fn record(&self, request: Request) {
        if let Some(path) = &self.file {
            // One write per line: appends from several servers and processes stay whole.
            let mut line = serde_json::to_string(&request).unwrap_or_default();
            line.push('\n');
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if let Err(e) = written {
                tracing::warn!(%e, path = %path.display(), "Request log not written");
            }
        }
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request);
    }

    /// Everything recorded so far, in order.
    pub fn entries(&self) -> Vec<Request> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Reads a log file written through [`LOG_ENV`]; lines that are not requests are skipped.
pub fn read_file(path: &std::path::Path) -> std::io::Result<Vec<Request>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_the_authorization_verbs() {
        assert_eq!(verb("GET", false, true), "watch");
        assert_eq!(verb("GET", true, false), "get");
        assert_eq!(verb("GET", false, false), "list");
        assert_eq!(verb("DELETE", false, false), "deletecollection");
        assert_eq!(verb("PATCH", true, false), "patch");
    }
}

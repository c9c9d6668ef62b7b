//! Label and field selectors for list and watch. Owns parsing and matching only.

use serde_json::Value;

use super::status::ApiError;

#[derive(Clone, Debug)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` or `fieldSelector`.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    reqs: Vec<Req>,
    field: bool,
}

fn split_top(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Selector {
    /// Parses a label selector: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`.
    pub fn labels(s: &str) -> Result<Self, ApiError> {
        let mut reqs = vec![];
        for part in split_top(s) {
            let bad = || {
                ApiError::bad_request(format!(
                    "unable to parse requirement: invalid label selector: {part:?}"
                ))
            };
            if let Some(k) = part.strip_prefix('!') {
                reqs.push(Req::NotExists(k.trim().to_string()));
            } else if let Some((k, v)) = part.split_once("!=") {
                reqs.push(Req::NotEq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = part.split_once("==") {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = part.split_once('=') {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = part.split_once(" notin ") {
                reqs.push(Req::NotIn(k.trim().into(), set(v).ok_or_else(bad)?));
            } else if let Some((k, v)) = part.split_once(" in ") {
                reqs.push(Req::In(k.trim().into(), set(v).ok_or_else(bad)?));
            } else if part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                reqs.push(Req::Exists(part.clone()));
            } else {
                return Err(bad());
            }
        }
        Ok(Self { reqs, field: false })
    }

    /// Parses a field selector: `metadata.name=x`, `metadata.namespace!=y`, any dotted path.
    pub fn fields(s: &str) -> Result<Self, ApiError> {
        let mut reqs = vec![];
        for part in split_top(s) {
            if let Some((k, v)) = part.split_once("!=") {
                reqs.push(Req::NotEq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = part.split_once("==") {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = part.split_once('=') {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            }
        }
        Ok(Self { reqs, field: true })
    }

    /// Whether it selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    fn lookup(&self, obj: &Value, key: &str) -> Option<String> {
        if self.field {
            let mut cur = obj;
            for p in key.split('.') {
                cur = cur.get(p)?;
            }
            Some(match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            })
        } else {
            obj["metadata"]["labels"]
                .get(key)
                .and_then(Value::as_str)
                .map(String::from)
        }
    }

    /// Whether the object matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => {
                let got = self
                    .lookup(obj, k)
                    .or_else(|| (self.field && k == "metadata.namespace").then(String::new));
                got.as_deref() == Some(v.as_str())
            }
            Req::NotEq(k, v) => {
                let got = self
                    .lookup(obj, k)
                    .or_else(|| (self.field && k == "metadata.namespace").then(String::new));
                got.as_deref() != Some(v.as_str())
            }
            Req::In(k, vs) => self.lookup(obj, k).is_some_and(|g| vs.contains(&g)),
            Req::NotIn(k, vs) => self.lookup(obj, k).is_none_or(|g| !vs.contains(&g)),
            Req::Exists(k) => self.lookup(obj, k).is_some(),
            Req::NotExists(k) => self.lookup(obj, k).is_none(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_operators() {
        let o = json!({"metadata": {"name": "a", "labels": {"app": "web", "tier": "front"}}});
        let m = |s: &str| Selector::labels(s).unwrap().matches(&o);
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(!m("app!=web"));
        assert!(m("app in (db, web)"));
        assert!(!m("app notin (web)"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m("missing notin (x)"));
    }

    #[test]
    fn field_selector_on_metadata() {
        let o = json!({"metadata": {"name": "a", "namespace": "ns"}});
        assert!(Selector::fields("metadata.name=a").unwrap().matches(&o));
        assert!(!Selector::fields("metadata.name=b").unwrap().matches(&o));
        assert!(
            Selector::fields("metadata.namespace!=other")
                .unwrap()
                .matches(&o)
        );
    }
}

//! Decoding of the Kubernetes protobuf envelope (`application/vnd.kubernetes.protobuf`) for the
//! few built-in kinds kubectl's typed commands send that way (`kubectl create namespace`,
//! `create configmap`, `create secret generic`, `create serviceaccount`): Namespace,
//! ConfigMap, Secret and ServiceAccount, metadata limited to name, generateName, namespace,
//! labels, annotations and finalizers; and the DeleteOptions typed clients send with DELETE.
//! Anything else is refused by the caller with 415. Responses are always JSON. Pure functions.

use serde_json::{Map, Value, json};

/// One decoded field: number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut pos = 0;
    let mut out = vec![];
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (num, wire) = (key >> 3, key & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|e| *e <= buf.len())?;
                out.push((num, Field::Bytes(&buf[pos..end])));
                pos = end;
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return None,
        }
    }
    Some(out)
}

fn string(f: &Field<'_>) -> Option<String> {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
        Field::Varint(_) => None,
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A `map<string, string|bytes>` entry.
fn entry(f: &Field<'_>, binary: bool) -> Option<(String, Value)> {
    let Field::Bytes(b) = f else { return None };
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for (n, x) in fields(b)? {
        match (n, &x) {
            (1, _) => k = string(&x)?,
            (2, Field::Bytes(raw)) if binary => v = json!(base64(raw)),
            (2, _) => v = json!(string(&x)?),
            _ => {}
        }
    }
    Some((k, v))
}

fn insert_entry(
    obj: &mut Map<String, Value>,
    key: &str,
    f: &Field<'_>,
    binary: bool,
) -> Option<()> {
    let (k, v) = entry(f, binary)?;
    obj.entry(key.to_string()).or_insert_with(|| json!({}))[k] = v;
    Some(())
}

fn object_meta(buf: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    for (n, f) in fields(buf)? {
        match n {
            1 => m.insert("name".into(), json!(string(&f)?)),
            2 => m.insert("generateName".into(), json!(string(&f)?)),
            3 => m.insert("namespace".into(), json!(string(&f)?)),
            11 => {
                insert_entry(&mut m, "labels", &f, false)?;
                None
            }
            12 => {
                insert_entry(&mut m, "annotations", &f, false)?;
                None
            }
            14 => {
                let list = m.entry("finalizers").or_insert_with(|| json!([]));
                if let Value::Array(a) = list {
                    a.push(json!(string(&f)?));
                }
                None
            }
            _ => None,
        };
    }
    Some(Value::Object(m))
}

fn bytes_of<'a>(f: &Field<'a>) -> Option<&'a [u8]> {
    match f {
        Field::Bytes(b) => Some(b),
        Field::Varint(_) => None,
    }
}

/// The DeleteOptions a typed client (helm purging its release Secrets) sends with DELETE.
fn delete_options(raw: &[u8], api_version: &str) -> Option<Value> {
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!("DeleteOptions"));
    for (n, f) in fields(raw)? {
        match (n, &f) {
            (1, Field::Varint(v)) => {
                obj.insert("gracePeriodSeconds".into(), json!(*v as i64));
            }
            (2, Field::Bytes(b)) => {
                let mut pre = Map::new();
                for (pn, pf) in fields(b)? {
                    match pn {
                        1 => pre.insert("uid".into(), json!(string(&pf)?)),
                        2 => pre.insert("resourceVersion".into(), json!(string(&pf)?)),
                        _ => None,
                    };
                }
                obj.insert("preconditions".into(), Value::Object(pre));
            }
            (3, Field::Varint(v)) => {
                obj.insert("orphanDependents".into(), json!(*v != 0));
            }
            (4, _) => {
                obj.insert("propagationPolicy".into(), json!(string(&f)?));
            }
            (5, _) => {
                let list = obj.entry("dryRun").or_insert_with(|| json!([]));
                if let Value::Array(a) = list {
                    a.push(json!(string(&f)?));
                }
            }
            _ => {}
        }
    }
    Some(Value::Object(obj))
}

/// Decodes a protobuf request body into the JSON object it stands for, when the kind is one
/// of those listed above.
pub fn decode(body: &[u8]) -> Option<Value> {
    let envelope = body.strip_prefix(b"k8s\0")?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(envelope)? {
        match n {
            1 => {
                for (tn, tf) in fields(bytes_of(&f)?)? {
                    match tn {
                        1 => api_version = string(&tf)?,
                        2 => kind = string(&tf)?,
                        _ => {}
                    }
                }
            }
            2 => raw = bytes_of(&f)?,
            _ => {}
        }
    }
    if kind == "DeleteOptions" {
        return delete_options(raw, &api_version);
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    for (n, f) in fields(raw)? {
        if n == 1 {
            obj.insert("metadata".into(), object_meta(bytes_of(&f)?)?);
            continue;
        }
        match (kind.as_str(), n) {
            ("Namespace", 2) => {
                let mut fin = vec![];
                for (sn, sf) in fields(bytes_of(&f)?)? {
                    if sn == 1 {
                        fin.push(json!(string(&sf)?));
                    }
                }
                obj.insert("spec".into(), json!({"finalizers": fin}));
            }
            ("Namespace", 3) => {}
            ("ConfigMap", 2) => insert_entry(&mut obj, "data", &f, false)?,
            ("ConfigMap", 3) | ("Secret", 2) => insert_entry(
                &mut obj,
                if kind == "Secret" {
                    "data"
                } else {
                    "binaryData"
                },
                &f,
                true,
            )?,
            ("Secret", 3) => {
                obj.insert("type".into(), json!(string(&f)?));
            }
            ("Secret", 4) => insert_entry(&mut obj, "stringData", &f, false)?,
            ("ConfigMap", 4) | ("Secret", 5) | ("ServiceAccount", 4) => {
                let Field::Varint(v) = f else { return None };
                let key = if kind == "ServiceAccount" {
                    "automountServiceAccountToken"
                } else {
                    "immutable"
                };
                obj.insert(key.into(), json!(v != 0));
            }
            _ => return None,
        }
    }
    if !matches!(
        kind.as_str(),
        "Namespace" | "ConfigMap" | "Secret" | "ServiceAccount"
    ) || api_version != "v1"
    {
        return None;
    }
    Some(Value::Object(obj))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        let meta = [
            field(1, b"settings"),
            field(11, &[field(1, b"app"), field(2, b"web")].concat()),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"v")].concat()),
            field(3, &[field(1, b"b"), field(2, b"hi!")].concat()),
        ]
        .concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "labels": {"app": "web"}},
                "data": {"k": "v"}, "binaryData": {"b": "aGkh"}})
        );
    }

    #[test]
    fn refuses_other_kinds() {
        let type_meta = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        let body = [
            b"k8s\0".to_vec(),
            field(1, &type_meta),
            field(2, &field(1, &field(1, b"d"))),
        ]
        .concat();
        assert!(decode(&body).is_none());
    }
}

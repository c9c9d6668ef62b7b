//! TLS to PostgreSQL with libpq's meaning: the six sslmodes, `sslrootcert` (a file, PEM in
//! memory from a Secret's `ca.crt`, or `system`), client certificates (`sslcert` /
//! `sslkey`, or a Secret's `tls.crt` / `tls.key`), and the rustls configuration one
//! connection attempt uses. Errors read in the user's terms and hold no key material.
//!
//! `target` decides when to try TLS (allow, prefer); this module decides how.

mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use secrecy::ExposeSecret;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use super::error::InvalidTarget;
use super::material::{Key, KeySource, Pem, Source};
use super::params::{Defaults, Params};
use verify::{Check, Verifier};

/// libpq's sslmode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    const NAMES: [(&'static str, SslMode); 6] = [
        ("disable", SslMode::Disable),
        ("allow", SslMode::Allow),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
    ];

    /// The name libpq spells.
    pub(super) fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, m)| *m == self)
            .map_or("prefer", |(n, _)| n)
    }
}

/// Where the root certificates come from.
#[derive(Clone, Debug)]
enum Roots {
    /// The platform's (OpenSSL's default paths, `SSL_CERT_FILE`, `SSL_CERT_DIR`).
    System,
    Pem(Pem),
}

/// The TLS parameters of a target.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    pub mode: SslMode,
    roots: Option<Roots>,
    cert: Option<Pem>,
    key: Option<Key>,
    sni: bool,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
}

impl Settings {
    /// Reads `sslmode`, `sslrootcert`, `sslcert`, `sslkey` and their companions, with
    /// libpq's defaults under `~/.postgresql/` when the caller has a home.
    pub(super) fn read(params: &Params, defaults: &Defaults) -> Result<Settings, InvalidTarget> {
        let explicit = params.choice("sslmode", &SslMode::NAMES)?;
        let legacy = params
            .value("requiressl")
            .is_some_and(|g| g.value == "1")
            .then_some(SslMode::Require);
        let in_home = |file: &str| {
            defaults
                .home
                .as_ref()
                .map(|h| h.join(".postgresql").join(file))
        };
        let roots = roots(params, in_home("root.crt"))?;
        let system = matches!(roots, Some(Roots::System));
        let mode = match (explicit.or(legacy), system) {
            (None, true) => SslMode::VerifyFull,
            (Some(mode), true) if mode != SslMode::VerifyFull => {
                return Err(InvalidTarget(format!(
                    "weak sslmode \"{}\" may not be used with sslrootcert=system (use \"verify-full\")",
                    mode.name()
                )));
            }
            (mode, _) => mode.unwrap_or(SslMode::Prefer),
        };
        if let Some(g) = params.value("sslnegotiation")
            && g.value != "postgres"
        {
            return Err(InvalidTarget(format!(
                "sslnegotiation={} ({}) is not supported: it needs PostgreSQL 17; use postgres",
                g.value, g.from
            )));
        }
        let (cert, key) = client_certificate(params, in_home)?;
        Ok(Settings {
            mode,
            roots,
            cert,
            key,
            sni: params
                .choice("sslsni", &[("0", false), ("1", true)])?
                .unwrap_or(true),
            versions: versions(params)?,
        })
    }

    /// Where the root certificates come from, for messages: `sslrootcert=…`.
    fn roots_label(&self) -> String {
        match &self.roots {
            Some(Roots::System) => "sslrootcert=system".into(),
            Some(Roots::Pem(pem)) => format!("sslrootcert={}", pem.label),
            None => "no sslrootcert".into(),
        }
    }
}

fn roots(params: &Params, default: Option<PathBuf>) -> Result<Option<Roots>, InvalidTarget> {
    if let Some(ca) = &params.inline.ca {
        certificates(ca)?;
        return Ok(Some(Roots::Pem(ca.clone())));
    }
    Ok(match params.value("sslrootcert") {
        Some(g) if g.value == "system" => Some(Roots::System),
        Some(g) => Some(Roots::Pem(file_pem(Path::new(&g.value)))),
        None => default.map(|path| Roots::Pem(file_pem(&path))),
    })
}

fn file_pem(path: &Path) -> Pem {
    Pem {
        label: path.display().to_string(),
        source: Source::File(path.to_path_buf()),
    }
}

/// The client certificate and its key: a Secret's `tls.crt` and `tls.key` together, else
/// `sslcert` and `sslkey` (or their defaults), which are read when connecting.
fn client_certificate(
    params: &Params,
    in_home: impl Fn(&str) -> Option<PathBuf>,
) -> Result<(Option<Pem>, Option<Key>), InvalidTarget> {
    if params
        .choice("sslcertmode", &[("disable", true), ("allow", false)])?
        .unwrap_or(false)
    {
        return Ok((None, None));
    }
    let inline = &params.inline;
    match (&inline.cert, &inline.key) {
        (Some(cert), Some(key)) => {
            certificates(cert)?;
            private_key(key)?;
            return Ok((Some(cert.clone()), Some(key.clone())));
        }
        (Some(cert), None) => {
            return Err(InvalidTarget(format!(
                "{} is given without tls.key",
                cert.label
            )));
        }
        (None, Some(key)) => {
            return Err(InvalidTarget(format!(
                "{} is given without tls.crt",
                key.label
            )));
        }
        (None, None) => {}
    }
    let path = |keyword: &str, default: &str| match params.value(keyword) {
        Some(g) => Some(PathBuf::from(&g.value)),
        None => in_home(default),
    };
    let cert = path("sslcert", "postgresql.crt").map(|p| file_pem(&p));
    let key = path("sslkey", "postgresql.key").map(|p| Key {
        label: p.display().to_string(),
        source: KeySource::File(p),
    });
    Ok((cert, key))
}

fn versions(
    params: &Params,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, InvalidTarget> {
    use rustls::version::{TLS12, TLS13};
    // rustls speaks TLS 1.2 and 1.3 only; lower minimums change nothing.
    let names = [("TLSv1", 0), ("TLSv1.1", 1), ("TLSv1.2", 2), ("TLSv1.3", 3)];
    let min = params
        .choice("ssl_min_protocol_version", &names)?
        .unwrap_or(2);
    let max = params
        .choice("ssl_max_protocol_version", &names)?
        .unwrap_or(3);
    let versions: Vec<_> = [(2, &TLS12), (3, &TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, p)| p)
        .collect();
    if versions.is_empty() {
        return Err(InvalidTarget(
            "no TLS version between ssl_min_protocol_version and ssl_max_protocol_version is available (TLSv1.2 and TLSv1.3 are)".into(),
        ));
    }
    Ok(versions)
}

/// A failure to set TLS up for one attempt, in the user's terms.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct SetupError(String);

impl Settings {
    /// The rustls configuration for one attempt. Files are read now, as libpq reads them
    /// for each connection.
    pub(super) fn client_config(&self) -> Result<ClientConfig, SetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (roots, pinned) = self.load_roots()?;
        let check = match (self.mode, roots.is_some()) {
            (SslMode::VerifyFull, true) => Check::ChainAndHost,
            (_, true) => Check::Chain,
            (_, false) => Check::Nothing,
        };
        let verifier = Verifier {
            check,
            roots: Arc::new(roots.unwrap_or_else(RootCertStore::empty)),
            pinned,
            algorithms: provider.signature_verification_algorithms,
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&self.versions)
            .map_err(|e| SetupError(format!("TLS setup failed: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut config = match self.load_client_certificate()? {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key).map_err(|e| {
                SetupError(format!(
                    "client certificate {} and key {} do not go together: {e}",
                    self.cert.as_ref().map_or("", |c| &c.label),
                    self.key.as_ref().map_or("", |k| &k.label),
                ))
            })?,
            None => builder.with_no_client_auth(),
        };
        config.enable_sni = self.sni;
        Ok(config)
    }

    /// The trust store and the self-signed roots, or none when nothing is to be verified:
    /// a missing root file is an error only for verify-ca and verify-full, as in libpq.
    fn load_roots(
        &self,
    ) -> Result<(Option<RootCertStore>, Vec<CertificateDer<'static>>), SetupError> {
        let certs = match &self.roots {
            None => Vec::new(),
            Some(Roots::System) => {
                let found = rustls_native_certs::load_native_certs();
                if found.certs.is_empty() {
                    return Err(SetupError(
                        "no system root certificates found (sslrootcert=system)".into(),
                    ));
                }
                found.certs
            }
            Some(Roots::Pem(pem)) => match &pem.source {
                Source::File(path) if !path.exists() => Vec::new(),
                _ => certificates(pem).map_err(|e| SetupError(e.0))?,
            },
        };
        if certs.is_empty() {
            if matches!(self.mode, SslMode::VerifyCa | SslMode::VerifyFull) {
                return Err(SetupError(match &self.roots {
                    Some(Roots::Pem(pem)) => format!(
                        "root certificate file \"{}\" does not exist; provide it, use sslrootcert=system, or change sslmode (sslmode={})",
                        pem.label,
                        self.mode.name()
                    ),
                    _ => format!(
                        "no root certificate to verify the server with: give sslrootcert (sslmode={})",
                        self.mode.name()
                    ),
                }));
            }
            return Ok((None, Vec::new()));
        }
        let pinned = certs
            .iter()
            .filter(|c| verify::is_self_signed(c))
            .cloned()
            .collect();
        let mut store = RootCertStore::empty();
        let (_, unusable) = store.add_parsable_certificates(certs);
        if store.is_empty() {
            return Err(SetupError(format!(
                "no usable root certificate in {} ({unusable} unusable)",
                self.roots_label()
            )));
        }
        Ok((Some(store), pinned))
    }

    /// The client certificate chain and key, or none: a missing certificate file is no
    /// error (the server may not ask), a missing key beside a present certificate is.
    fn load_client_certificate(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, SetupError> {
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else {
            return Ok(None);
        };
        if let Source::File(path) = &cert.source
            && !path.exists()
        {
            return Ok(None);
        }
        let chain = certificates(cert).map_err(|e| SetupError(e.0))?;
        if let KeySource::File(path) = &key.source {
            check_key_file(path)?;
        }
        let key = private_key(key).map_err(|e| SetupError(e.0))?;
        Ok(Some((chain, key)))
    }
}

/// The certificates in `pem`; none is an error naming it.
fn certificates(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, InvalidTarget> {
    let bytes = match &pem.source {
        Source::Memory(bytes) => bytes.clone(),
        Source::File(path) => std::fs::read(path).map_err(|e| {
            InvalidTarget(format!("cannot read certificate file {}: {e}", pem.label))
        })?,
    };
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| InvalidTarget(format!("{} is not PEM: {e}", pem.label)))?;
    if certs.is_empty() {
        return Err(InvalidTarget(format!(
            "{} holds no certificate (want PEM: -----BEGIN CERTIFICATE-----)",
            pem.label
        )));
    }
    Ok(certs)
}

/// The private key in `key`. Its bytes never reach a message.
fn private_key(key: &Key) -> Result<PrivateKeyDer<'static>, InvalidTarget> {
    let parsed = match &key.source {
        KeySource::Memory(bytes) => PrivateKeyDer::from_pem_slice(bytes.expose_secret()),
        KeySource::File(path) => PrivateKeyDer::from_pem_file(path),
    };
    parsed.map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::Io(e) => format!("cannot be read: {e}"),
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no unencrypted private key (want PEM: PKCS#1, SEC1 or PKCS#8; encrypted keys are not supported)".into()
            }
            _ => "is not a PEM private key".into(),
        };
        InvalidTarget(format!("private key {} {why}", key.label))
    })
}

/// libpq's rule for key files: a regular file, no group or world access (root-owned files
/// may be group-readable).
fn check_key_file(path: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| {
        SetupError(match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "certificate present, but not private key file \"{}\"",
                path.display()
            ),
            _ => format!("cannot read private key file \"{}\": {e}", path.display()),
        })
    })?;
    if !meta.is_file() {
        return Err(SetupError(format!(
            "private key file \"{}\" is not a regular file",
            path.display()
        )));
    }
    let too_open = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if meta.mode() & too_open != 0 {
        return Err(SetupError(format!(
            "private key file \"{}\" has group or world access; permissions must be u=rw (0600) or less, or u=rw,g=r (0640) or less if owned by root",
            path.display()
        )));
    }
    Ok(())
}

/// A connector that records whether the server agreed to TLS and the handshake began:
/// `prefer` retries without TLS only then, as libpq does.
pub(super) struct Tracked<M> {
    inner: M,
    started: Arc<AtomicBool>,
}

impl<M> Tracked<M> {
    pub(super) fn new(inner: M) -> (Tracked<M>, Arc<AtomicBool>) {
        let started = Arc::new(AtomicBool::new(false));
        let tracked = Tracked {
            inner,
            started: started.clone(),
        };
        (tracked, started)
    }
}

impl<S, M: MakeTlsConnect<S>> MakeTlsConnect<S> for Tracked<M> {
    type Stream = M::Stream;
    type TlsConnect = Tracked<M::TlsConnect>;
    type Error = M::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        Ok(Tracked {
            inner: self.inner.make_tls_connect(domain)?,
            started: self.started.clone(),
        })
    }
}

impl<S, T: TlsConnect<S>> TlsConnect<S> for Tracked<T> {
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = T::Future;

    fn connect(self, stream: S) -> Self::Future {
        self.started.store(true, Ordering::SeqCst);
        self.inner.connect(stream)
    }
}

impl Settings {
    /// A TLS failure in the user's terms: which certificate, which host, which sslmode.
    pub(super) fn explain(&self, error: &rustls::Error) -> String {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        let mode = self.mode.name();
        match error {
            E::InvalidCertificate(C::UnknownIssuer) => format!(
                "server certificate signed by an unknown authority ({})",
                self.roots_label()
            ),
            E::InvalidCertificate(C::NotValidForNameContext {
                expected,
                presented,
            }) => {
                let host = match expected {
                    rustls::pki_types::ServerName::DnsName(d) => d.as_ref().to_string(),
                    rustls::pki_types::ServerName::IpAddress(ip) => {
                        std::net::IpAddr::from(*ip).to_string()
                    }
                    other => format!("{other:?}"),
                };
                match presented.is_empty() {
                    true => format!(
                        "server certificate names no host (no subjectAltName, no common name) to match {host} (sslmode={mode})"
                    ),
                    false => format!(
                        "server certificate for {} is not valid for host {host} (sslmode={mode})",
                        presented.join(", ")
                    ),
                }
            }
            E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
                format!("server certificate has expired (sslmode={mode})")
            }
            E::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
                format!("server certificate is not valid yet (sslmode={mode})")
            }
            E::InvalidCertificate(other) => format!(
                "server certificate refused: {other:?} ({}, sslmode={mode})",
                self.roots_label()
            ),
            E::AlertReceived(
                alert @ (A::BadCertificate
                | A::UnknownCA
                | A::CertificateRequired
                | A::UnsupportedCertificate
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::CertificateUnknown
                | A::AccessDenied),
            ) => format!(
                "the server refused the client certificate{} ({alert:?})",
                self.cert
                    .as_ref()
                    .map(|c| format!(" {}", c.label))
                    .unwrap_or_default()
            ),
            other => format!("TLS handshake failed: {other} (sslmode={mode})"),
        }
    }
}

/// The rustls error inside an error chain, if any (tokio-postgres wraps it in `io::Error`).
pub(super) fn rustls_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

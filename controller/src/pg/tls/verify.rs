//! How a server's certificate is checked, per sslmode: not at all (`require` without a
//! root certificate), its chain only (`verify-ca`, and `require` with one), or its chain
//! and the host name by libpq's rules (`verify-full`). The chain is webpki's; the name
//! check is libpq's own (subjectAltName entries of the host's kind, else the Common
//! Name), which webpki's does not match.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, TeletexStringRef, Utf8StringRef};
use x509_cert::der::oid::db::{rfc4519, rfc5280};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Check {
    /// Nothing: the connection is encrypted, the server unauthenticated.
    Nothing,
    /// Signed by a trusted root (libpq's verify-ca).
    Chain,
    /// Signed by a trusted root and issued for the host (libpq's verify-full).
    ChainAndHost,
}

/// The verifier one connection attempt uses.
#[derive(Debug)]
pub(super) struct Verifier {
    pub check: Check,
    pub roots: Arc<RootCertStore>,
    /// Self-signed certificates from the root file: a server presenting exactly one of
    /// them is trusted, as OpenSSL trusts it (webpki refuses a CA certificate as a server's).
    pub pinned: Vec<CertificateDer<'static>>,
    pub algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.check == Check::Nothing {
            return Ok(ServerCertVerified::assertion());
        }
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            within_validity(end_entity, now)?;
        } else {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                &self.roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        if self.check == Check::ChainAndHost {
            check_host(end_entity, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn parse(der: &CertificateDer<'_>) -> Result<Certificate, Error> {
    Certificate::from_der(der.as_ref())
        .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))
}

/// True when a certificate names itself as its issuer.
pub(super) fn is_self_signed(der: &CertificateDer<'_>) -> bool {
    parse(der).is_ok_and(|c| c.tbs_certificate.issuer == c.tbs_certificate.subject)
}

fn within_validity(der: &CertificateDer<'_>, now: UnixTime) -> Result<(), Error> {
    let validity = parse(der)?.tbs_certificate.validity;
    let now = now.as_secs();
    if now < validity.not_before.to_unix_duration().as_secs() {
        return Err(Error::InvalidCertificate(CertificateError::NotValidYet));
    }
    if now > validity.not_after.to_unix_duration().as_secs() {
        return Err(Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}

/// The names a certificate is issued for, as libpq reads them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Names {
    dns: Vec<String>,
    ips: Vec<IpAddr>,
    common_name: Option<String>,
}

impl Names {
    pub(super) fn of(der: &CertificateDer<'_>) -> Result<Names, Error> {
        let cert = parse(der)?;
        let tbs = cert.tbs_certificate;
        let mut names = Names::default();
        for ext in tbs.extensions.iter().flatten() {
            if ext.extn_id != rfc5280::ID_CE_SUBJECT_ALT_NAME {
                continue;
            }
            let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
                .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
            for name in san.0 {
                match name {
                    GeneralName::DnsName(d) => names.dns.push(d.to_string()),
                    GeneralName::IpAddress(o) => names.ips.extend(ip_from(o.as_bytes())),
                    _ => {}
                }
            }
        }
        names.common_name = tbs
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == rfc4519::CN)
            .and_then(|atv| {
                let v = &atv.value;
                v.decode_as::<Utf8StringRef<'_>>()
                    .map(|s| s.to_string())
                    .or_else(|_| {
                        v.decode_as::<PrintableStringRef<'_>>()
                            .map(|s| s.to_string())
                    })
                    .or_else(|_| v.decode_as::<Ia5StringRef<'_>>().map(|s| s.to_string()))
                    .or_else(|_| v.decode_as::<TeletexStringRef<'_>>().map(|s| s.to_string()))
                    .ok()
            });
        Ok(names)
    }

    /// libpq's rule: subjectAltName entries are checked; the Common Name only when there
    /// is no entry of the host's kind (DNS name or IP address).
    pub(super) fn matches(&self, host: &str) -> bool {
        let ip: Option<IpAddr> = host.parse().ok();
        self.dns.iter().any(|d| dns_matches(d, host))
            || ip.is_some_and(|ip| self.ips.contains(&ip))
            || (self.checks_common_name(host)
                && self
                    .common_name
                    .as_deref()
                    .is_some_and(|cn| dns_matches(cn, host)))
    }

    fn checks_common_name(&self, host: &str) -> bool {
        match host.parse::<IpAddr>() {
            Ok(_) => self.ips.is_empty(),
            Err(_) => self.dns.is_empty(),
        }
    }

    /// The names checked against `host`, for messages: subjectAltName entries, then the
    /// Common Name when it counts.
    pub(super) fn checked(&self, host: &str) -> Vec<String> {
        let mut all = self.dns.clone();
        all.extend(self.ips.iter().map(IpAddr::to_string));
        if self.checks_common_name(host) {
            all.extend(self.common_name.iter().cloned());
        }
        all
    }
}

fn ip_from(octets: &[u8]) -> Option<IpAddr> {
    match octets.len() {
        4 => <[u8; 4]>::try_from(octets).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(octets).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A certificate name against a host, ignoring case; `*.example.com` stands for exactly
/// one leading label, as libpq's `wildcard_certificate_match`.
fn dns_matches(name: &str, host: &str) -> bool {
    if name.contains('\0') {
        return false;
    }
    if name.eq_ignore_ascii_case(host) {
        return true;
    }
    let Some(suffix) = name
        .strip_prefix('*')
        .filter(|s| s.starts_with('.') && s.len() > 1)
    else {
        return false;
    };
    host.len() > suffix.len()
        && host.is_char_boundary(host.len() - suffix.len())
        && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
        && !host[..host.len() - suffix.len()].contains('.')
}

fn check_host(end_entity: &CertificateDer<'_>, server_name: &ServerName<'_>) -> Result<(), Error> {
    let host = match server_name {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => IpAddr::from(*ip).to_string(),
        _ => String::new(),
    };
    let names = Names::of(end_entity)?;
    if names.matches(&host) {
        return Ok(());
    }
    Err(Error::InvalidCertificate(
        CertificateError::NotValidForNameContext {
            expected: server_name.to_owned(),
            presented: names.checked(&host),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_by_libpq_rules() {
        let names = |dns: &[&str], ips: &[&str], cn: Option<&str>| Names {
            dns: dns.iter().map(|s| s.to_string()).collect(),
            ips: ips.iter().map(|s| s.parse().expect("ip")).collect(),
            common_name: cn.map(str::to_string),
        };
        let cases = [
            (
                "exact, any case",
                names(&["DB.example.com"], &[], None),
                "db.example.COM",
                true,
            ),
            (
                "wildcard, one label",
                names(&["*.example.com"], &[], None),
                "db.example.com",
                true,
            ),
            (
                "wildcard, two labels",
                names(&["*.example.com"], &[], None),
                "a.db.example.com",
                false,
            ),
            (
                "wildcard, bare domain",
                names(&["*.example.com"], &[], None),
                "example.com",
                false,
            ),
            (
                "wildcard only in front",
                names(&["db.*.com"], &[], None),
                "db.example.com",
                false,
            ),
            (
                "common name without SANs",
                names(&[], &[], Some("db")),
                "db",
                true,
            ),
            (
                "common name ignored beside a DNS SAN",
                names(&["other"], &[], Some("db")),
                "db",
                false,
            ),
            (
                "IP SAN",
                names(&["db"], &["10.0.0.5"], None),
                "10.0.0.5",
                true,
            ),
            ("IPv6 SAN", names(&[], &["::1"], None), "::1", true),
            (
                "IP host, CN checked when no IP SAN",
                names(&["db"], &[], Some("10.0.0.5")),
                "10.0.0.5",
                true,
            ),
            (
                "IP host, CN ignored beside an IP SAN",
                names(&[], &["10.0.0.6"], Some("10.0.0.5")),
                "10.0.0.5",
                false,
            ),
            (
                "another name",
                names(&["db.example.com"], &[], None),
                "10.0.0.5",
                false,
            ),
        ];
        for (name, names, host, want) in cases {
            assert_eq!(names.matches(host), want, "{name}");
        }
    }
}

//! Certificates and keys as a connection is given them: PEM files, or PEM held in memory
//! from a Secret (`ca.crt`, `tls.crt`, `tls.key`), each labelled for messages. A leaf; a
//! private key held in memory stays a `secrecy` value.

use std::path::PathBuf;

use secrecy::SecretSlice;

/// Certificates in PEM, from a file or held in memory; `label` names them in messages
/// (`/etc/db/ca.crt`, `key ca.crt of Secret db-ca`).
#[derive(Clone, Debug)]
pub(super) struct Pem {
    pub label: String,
    pub source: Source,
}

#[derive(Clone, Debug)]
pub(super) enum Source {
    File(PathBuf),
    Memory(Vec<u8>),
}

/// A private key in PEM (PKCS#1, SEC1 or PKCS#8: RSA, EC and Ed25519 keys).
#[derive(Clone, Debug)]
pub(super) struct Key {
    pub label: String,
    pub source: KeySource,
}

#[derive(Clone, Debug)]
pub(super) enum KeySource {
    File(PathBuf),
    Memory(SecretSlice<u8>),
}

/// TLS material a Secret carries in memory: `ca.crt`, `tls.crt`, `tls.key`.
#[derive(Clone, Debug, Default)]
pub(super) struct Inline {
    pub ca: Option<Pem>,
    pub cert: Option<Pem>,
    pub key: Option<Key>,
}

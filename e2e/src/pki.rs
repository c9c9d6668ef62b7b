//! Certificates for tests, made by the real `openssl`: a CA, server certificates for the
//! names a test wants, and client certificates with the key formats users have (RSA as
//! PKCS#1, EC as SEC1, Ed25519 as PKCS#8). Everything lives in a temp dir that goes with
//! the value; keys are 0600, as libpq and PostgreSQL insist.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A CA and what it issued.
pub struct Pki {
    dir: tempfile::TempDir,
}

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate.
    pub cert: PathBuf,
    /// The private key (mode 0600).
    pub key: PathBuf,
}

/// The kind and file format of a private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048, PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    Rsa,
    /// EC P-256, SEC1 (`BEGIN EC PRIVATE KEY`).
    Ec,
    /// Ed25519, PKCS#8 (`BEGIN PRIVATE KEY`).
    Ed25519,
}

impl Pki {
    /// A new CA named `name` (its certificate's CN).
    pub fn new(name: &str) -> Result<Pki> {
        let pki = Pki {
            dir: tempfile::tempdir()?,
        };
        pki.key("ca.key", KeyKind::Ec)?;
        pki.openssl(&[
            "req", "-x509", "-new", "-key", "ca.key", "-out", "ca.crt", "-days", "2", "-subj",
        ])
        .arg(format!("/CN={name}"))
        .ok()?;
        Ok(pki)
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir().join("ca.crt")
    }

    /// A server certificate named `stem` for `names` (DNS names or IP addresses; the first
    /// is also the Common Name), with an EC key.
    pub fn server(&self, stem: &str, names: &[&str]) -> Result<Issued> {
        let ext = format!(
            "subjectAltName={}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
            subject_alt_names(names)
        );
        self.issue(
            stem,
            names.first().copied().unwrap_or("server"),
            KeyKind::Ec,
            &ext,
        )
    }

    /// A self-signed server certificate named `stem` for `names`, as
    /// `openssl req -x509` makes it (a CA certificate, its own issuer): what PostgreSQL's
    /// documentation shows for a quick start.
    pub fn self_signed(&self, stem: &str, names: &[&str]) -> Result<Issued> {
        let key = format!("{stem}.key");
        let cert = format!("{stem}.crt");
        self.key(&key, KeyKind::Ec)?;
        self.openssl(&[
            "req", "-x509", "-new", "-key", &key, "-out", &cert, "-days", "2",
        ])
        .arg("-subj")
        .arg(format!(
            "/CN={}",
            names.first().copied().unwrap_or("server")
        ))
        .arg("-addext")
        .arg(format!("subjectAltName={}", subject_alt_names(names)))
        .ok()?;
        Ok(Issued {
            cert: self.dir().join(cert),
            key: self.dir().join(key),
        })
    }

    /// A client certificate named `stem` for user `cn`, with a key of `kind`.
    pub fn client(&self, stem: &str, cn: &str, kind: KeyKind) -> Result<Issued> {
        self.issue(
            stem,
            cn,
            kind,
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        )
    }

    fn issue(&self, stem: &str, cn: &str, kind: KeyKind, ext: &str) -> Result<Issued> {
        let (key, csr, cert, cnf) = (
            format!("{stem}.key"),
            format!("{stem}.csr"),
            format!("{stem}.crt"),
            format!("{stem}.cnf"),
        );
        self.key(&key, kind)?;
        self.openssl(&["req", "-new", "-key", &key, "-out", &csr, "-subj"])
            .arg(format!("/CN={cn}"))
            .ok()?;
        std::fs::write(self.dir().join(&cnf), ext)?;
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &cnf,
        ])
        .ok()?;
        Ok(Issued {
            cert: self.dir().join(cert),
            key: self.dir().join(key),
        })
    }

    fn key(&self, name: &str, kind: KeyKind) -> Result<()> {
        match kind {
            KeyKind::Rsa => self.openssl(&["genrsa", "-traditional", "-out", name, "2048"]),
            KeyKind::Ec => self.openssl(&[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                name,
            ]),
            KeyKind::Ed25519 => self.openssl(&["genpkey", "-algorithm", "ed25519", "-out", name]),
        }
        .ok()?;
        std::fs::set_permissions(
            self.dir().join(name),
            std::fs::Permissions::from_mode(0o600),
        )?;
        Ok(())
    }

    fn openssl(&self, args: &[&str]) -> Command {
        let mut command = Command::new("openssl");
        command.current_dir(self.dir()).args(args);
        command
    }
}

/// `DNS:a,IP:127.0.0.1` for `names`.
fn subject_alt_names(names: &[&str]) -> String {
    let san: Vec<String> = names
        .iter()
        .map(|n| match n.parse::<std::net::IpAddr>() {
            Ok(_) => format!("IP:{n}"),
            Err(_) => format!("DNS:{n}"),
        })
        .collect();
    san.join(",")
}

trait Succeeds {
    fn ok(&mut self) -> Result<()>;
}

impl Succeeds for Command {
    fn ok(&mut self) -> Result<()> {
        let out = self
            .output()
            .context("openssl (Debian's openssl package)")?;
        if !out.status.success() {
            bail!("{self:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

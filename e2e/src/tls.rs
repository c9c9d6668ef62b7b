//! The TLS PostgreSQL that the TLS tests of one test binary share: certificates made by
//! `openssl` ([`crate::pki`]), a server with `ssl=on`, and a `pg_hba.conf` that decides
//! per user what a connection must be:
//!
//! | user | pg_hba | password |
//! |---|---|---|
//! | `app` | `host … scram-sha-256` (TLS or not) | [`PASSWORD`] |
//! | `sslonly` | `hostnossl … reject`, then scram | [`PASSWORD`] |
//! | `plainonly` | `hostssl … reject`, then scram | [`PASSWORD`] |
//! | `certuser` | `hostssl … cert`, `host … reject` | none: a client certificate |
//! | `postgres` | `host … trust` (the tests' own admin connections) | none |
//!
//! The server's certificate is for `localhost` and `127.0.0.1`; client certificates for
//! `certuser` come with RSA (PKCS#1), EC (SEC1) and Ed25519 (PKCS#8) keys; a second CA
//! ([`TlsPg::stranger`]) signed nothing the server trusts.

use std::sync::OnceLock;

use crate::pki::{Issued, KeyKind, Pki};
use crate::postgres::{PgServer, ServerTls, Setup};

/// The password of `app`, `sslonly` and `plainonly`: every character a URL or a keyword
/// string must escape. No log, event, status or error may show it.
pub const PASSWORD: &str = "Tls-p@ss/wörd:%&?= 'q\\-never-print";

/// The shared TLS server and its certificates.
pub struct TlsPg {
    /// The server (`ssl=on`).
    pub server: PgServer,
    /// The CA that signed the server's and the clients' certificates.
    pub pki: Pki,
    /// Client certificates for `certuser`, one per key kind.
    pub clients: Vec<(KeyKind, Issued)>,
    /// Another CA, and a client certificate for `certuser` it signed.
    pub stranger: (Pki, Issued),
}

const HBA: &str = "\
local     all          all                     trust
host      replication  postgres  127.0.0.1/32  trust
hostssl   all          certuser  127.0.0.1/32  cert
host      all          certuser  127.0.0.1/32  reject
hostnossl all          sslonly   127.0.0.1/32  reject
hostssl   all          plainonly 127.0.0.1/32  reject
host      all          postgres  127.0.0.1/32  trust
host      all          all       127.0.0.1/32  scram-sha-256
";

static TLS_PG: OnceLock<TlsPg> = OnceLock::new();

/// The test binary's TLS server, started on first use (about 2 s: openssl and initdb).
pub fn tls_server() -> &'static TlsPg {
    TLS_PG.get_or_init(|| match start() {
        Ok(pg) => pg,
        Err(error) => panic!("cannot start the TLS PostgreSQL: {error:#}"),
    })
}

fn start() -> anyhow::Result<TlsPg> {
    let pki = Pki::new("switchyard test CA")?;
    let server_cert = pki.server("server", &["localhost", "127.0.0.1"])?;
    let clients = [KeyKind::Rsa, KeyKind::Ec, KeyKind::Ed25519]
        .into_iter()
        .map(|kind| Ok((kind, pki.client(&format!("{kind:?}"), "certuser", kind)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let stranger = Pki::new("stranger CA")?;
    let stranger_client = stranger.client("stranger", "certuser", KeyKind::Ec)?;
    let server = PgServer::start_with(&Setup {
        tls: Some(ServerTls {
            cert: server_cert.cert,
            key: server_cert.key,
            client_ca: pki.ca(),
        }),
        hba: Some(HBA.into()),
    })?;
    let sql = format!(
        "CREATE ROLE app LOGIN PASSWORD {pw}; CREATE ROLE sslonly LOGIN PASSWORD {pw};
         CREATE ROLE plainonly LOGIN PASSWORD {pw}; CREATE ROLE certuser LOGIN;",
        pw = literal(PASSWORD)
    );
    let url = server.url("postgres");
    std::thread::spawn(move || -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            crate::postgres::connect(&url)
                .await?
                .batch_execute(&sql)
                .await?;
            Ok(())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("creating the roles panicked"))??;
    Ok(TlsPg {
        server,
        pki,
        clients,
        stranger: (stranger, stranger_client),
    })
}

impl TlsPg {
    /// The client certificate of `kind`.
    pub fn client(&self, kind: KeyKind) -> &Issued {
        self.clients
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, issued)| issued)
            .unwrap_or_else(|| panic!("no {kind:?} client certificate"))
    }

    /// A fresh database owned by `owner`, on this server.
    pub async fn database_for(&self, owner: &str) -> crate::postgres::TestDb {
        let db = self.server.fresh_db().await.expect("fresh database");
        crate::postgres::connect(&self.server.url("postgres"))
            .await
            .expect("admin connection")
            .batch_execute(&format!("ALTER DATABASE {} OWNER TO {owner}", db.name))
            .await
            .expect("owner");
        db
    }
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `text` percent-encoded for any part of a URL (everything but unreserved characters).
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

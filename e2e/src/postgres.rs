//! A throwaway PostgreSQL server for tests: Debian's `postgresql` binaries, `initdb` and
//! `pg_ctl` in a temp dir, on a free loopback port, as a non-root user.
//!
//! One server per test binary ([`server`]), a fresh database per test ([`PgServer::fresh_db`]).
//! [`PgServer::start_with`] sets one up with TLS and a `pg_hba.conf` of the test's own;
//! [`PgServer::standby`] streams a hot standby from it. A watchdog process stops each server
//! and removes its directory when the test binary exits, so nothing is left running, even
//! after a panic or a kill.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};

/// A running throwaway server.
#[derive(Debug)]
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// The OS user the server runs as when the tests run as root.
    os_user: Option<String>,
    /// `-c name=value` settings beyond the defaults (TLS).
    settings: String,
}

/// How a server is set up beyond initdb's defaults.
#[derive(Clone, Debug, Default)]
pub struct Setup {
    /// TLS on (`ssl=on`): the server's certificate and key, and the CA whose client
    /// certificates it accepts (`ssl_ca_file`).
    pub tls: Option<ServerTls>,
    /// The whole `pg_hba.conf`, instead of initdb's trust for everyone.
    pub hba: Option<String>,
}

/// A server's TLS files (copied into its directory, owned by its user).
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// `ssl_cert_file`.
    pub cert: PathBuf,
    /// `ssl_key_file`.
    pub key: PathBuf,
    /// `ssl_ca_file`: the CA client certificates must be signed by.
    pub client_ca: PathBuf,
}

/// A database created for one test.
#[derive(Debug, Clone)]
pub struct TestDb {
    /// The database name.
    pub name: String,
    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub url: String,
    /// The server's port.
    pub port: u16,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The test binary's server, started on first use.
pub fn server() -> &'static PgServer {
    SERVER.get_or_init(|| match PgServer::start() {
        Ok(server) => server,
        Err(error) => panic!("cannot start a throwaway PostgreSQL: {error:#}"),
    })
}

/// Connects to `url` and drives the connection on the current runtime.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

impl PgServer {
    fn start() -> Result<PgServer> {
        PgServer::start_with(&Setup::default())
    }

    /// A new server set up as `setup` says; the caller keeps it for the test binary.
    pub fn start_with(setup: &Setup) -> Result<PgServer> {
        let mut server = PgServer::empty()?;
        let data = server.dir.join("data");
        server
            .pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .status_ok()
            .context("initdb")?;
        spawn_watchdog(&server)?;
        if let Some(hba) = &setup.hba {
            std::fs::write(data.join("pg_hba.conf"), hba)?;
        }
        if let Some(tls) = &setup.tls {
            server.settings = server.install_tls(tls)?;
        }
        server.start_on_a_free_port()?;
        Ok(server)
    }

    /// A server directory owned by the server's user, nothing in it yet.
    fn empty() -> Result<PgServer> {
        let os_user = running_as_root().then(|| "postgres".to_string());
        let dir = std::env::temp_dir().join(format!(
            "switchyard-pg-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir)?;
        if let Some(user) = &os_user {
            run(Command::new("chown").arg(user).arg(&dir))?;
        }
        Ok(PgServer {
            bin: find_bin_dir()?,
            dir,
            port: 0,
            os_user,
            settings: String::new(),
        })
    }

    fn start_on_a_free_port(&mut self) -> Result<()> {
        // A free port can be taken between probing and binding; try a few.
        let mut last = None;
        for _ in 0..5 {
            self.port = free_port()?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("postgres did not start")))
    }

    /// Copies the TLS files in (the key must belong to the server's user, mode 0600);
    /// returns the settings that turn TLS on.
    fn install_tls(&self, tls: &ServerTls) -> Result<String> {
        use std::os::unix::fs::PermissionsExt;
        let mut settings = " -c ssl=on".to_string();
        for (from, name, setting) in [
            (&tls.cert, "server.crt", "ssl_cert_file"),
            (&tls.key, "server.key", "ssl_key_file"),
            (&tls.client_ca, "client-ca.crt", "ssl_ca_file"),
        ] {
            let to = self.dir.join(name);
            std::fs::copy(from, &to)?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
            if let Some(user) = &self.os_user {
                run(Command::new("chown").arg(user).arg(&to))?;
            }
            settings.push_str(&format!(" -c {setting}={}", to.display()));
        }
        Ok(settings)
    }

    /// A hot standby streaming from this server (`pg_basebackup -R`), on its own port,
    /// with the same settings and `pg_hba.conf`: read-only, as a replica after a failover
    /// elsewhere would be.
    pub fn standby(&self) -> Result<PgServer> {
        let mut standby = PgServer::empty()?;
        standby.settings = self.settings.clone();
        standby
            .pg_command("pg_basebackup")
            .arg("-D")
            .arg(standby.dir.join("data"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"])
            .status_ok()
            .context("pg_basebackup")?;
        spawn_watchdog(&standby)?;
        standby.start_on_a_free_port()?;
        Ok(standby)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `db` as the superuser `postgres`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new empty database for one test.
    pub async fn fresh_db(&self) -> Result<TestDb> {
        let n = NEXT_DB.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let admin = connect(&self.url("postgres")).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .await?;
        Ok(TestDb {
            url: self.url(&name),
            name,
            port: self.port,
        })
    }

    /// Stops the server (fast shutdown), for tests of a database going away.
    pub fn stop(&self) -> Result<()> {
        self.stop_with("fast")
    }

    /// Stops the server with a `pg_ctl` shutdown mode: `smart`, `fast`, or `immediate`
    /// (no checkpoint: recovery runs at the next start, as after a crash).
    pub fn stop_with(&self, mode: &str) -> Result<()> {
        self.pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", mode, "-w", "stop"])
            .status_ok()
    }

    /// Starts the server again on the same port after [`PgServer::stop`].
    pub fn restart(&self) -> Result<()> {
        self.pg_ctl_start()
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300{}",
            self.port,
            self.dir.display(),
            self.settings
        );
        self.pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .status_ok()
            .with_context(|| format!("pg_ctl start (log in {})", self.dir.join("log").display()))
    }

    fn pg_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.os_user {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(path);
                command
            }
            None => Command::new(path),
        }
    }
}

trait StatusOk {
    fn status_ok(&mut self) -> Result<()>;
}

impl StatusOk for Command {
    fn status_ok(&mut self) -> Result<()> {
        let output = self.stdin(Stdio::null()).output()?;
        if !output.status.success() {
            bail!(
                "{:?} failed: {}\n{}",
                self,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

fn run(command: &mut Command) -> Result<()> {
    command.status_ok()
}

/// Debian installs the server binaries under /usr/lib/postgresql/<major>/bin, off PATH.
fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SWITCHYARD_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (apt-get install postgresql)")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors
        .pop()
        .map(|(_, bin)| bin)
        .context("no /usr/lib/postgresql/<major>/bin/initdb found")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A detached shell that waits for this test process to exit, then stops the server and
/// removes its directory.
fn spawn_watchdog(server: &PgServer) -> Result<()> {
    let data = server.dir.join("data");
    let pg_ctl = server.bin.join("pg_ctl");
    let as_user = match &server.os_user {
        Some(user) => format!("runuser -u {user} -- "),
        None => String::new(),
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         {as_user}{pg_ctl} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        pg_ctl = quote(&pg_ctl),
        data = quote(&data),
        dir = quote(&server.dir),
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning the postgres watchdog")?;
    Ok(())
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// Every user-visible object in the database, one `kind schema.name` line each, sorted:
/// schemas, relations (tables, views, indexes, sequences), functions and types. Compare two
/// snapshots to assert that something changed nothing.
pub async fn snapshot(url: &str) -> Result<Vec<String>> {
    let client = connect(url).await?;
    let rows = client
        .query(
            "SELECT 'schema ' || nspname FROM pg_namespace
              WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
             UNION ALL
             SELECT c.relkind::text || ' ' || n.nspname || '.' || c.relname FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
             UNION ALL
             SELECT 'function ' || n.nspname || '.' || p.proname FROM pg_proc p
               JOIN pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
             ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The first row of `sql` (columns joined by `|`), or "" when there is none; panics
/// naming the statement when it fails.
pub async fn one(url: &str, sql: &str) -> String {
    rows(url, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:#}"))
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// Rows of a query as text columns joined by `|`, for compact assertions.
pub async fn rows(url: &str, sql: &str) -> Result<Vec<String>> {
    let client = connect(url).await?;
    let rows = client.simple_query(sql).await?;
    Ok(rows
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL"))
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
            _ => None,
        })
        .collect())
}

/// The tables in `public`, by name: what a plan's changes created.
pub async fn public_tables(url: &str) -> Vec<String> {
    rows(
        url,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .await
    .unwrap_or_else(|e| panic!("listing tables: {e}"))
}

/// The schemas whose names match the regular expression `pattern`, by name.
pub async fn schemas_matching(url: &str, pattern: &str) -> Vec<String> {
    let sql = format!(
        "SELECT nspname::text FROM pg_namespace WHERE nspname ~ '{}' ORDER BY 1",
        pattern.replace('\'', "''")
    );
    rows(url, &sql)
        .await
        .unwrap_or_else(|e| panic!("listing schemas: {e}"))
}

/// Every relation, routine and type in the physical blue-green sets (`…__sy_<id>`), with
/// its OID: what a promotion that rebuilds nothing leaves exactly as it was.
pub async fn physical_objects(url: &str) -> Vec<String> {
    rows(
        url,
        "SELECT format('%s %s.%s', c.oid, n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname ~ '__sy_[0-9]+$' \
         UNION ALL SELECT format('%s %s.%s', p.oid, n.nspname, p.proname) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname ~ '__sy_[0-9]+$' \
         UNION ALL SELECT format('%s %s.%s', t.oid, n.nspname, t.typname) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname ~ '__sy_[0-9]+$' \
         ORDER BY 1",
    )
    .await
    .unwrap_or_else(|e| panic!("listing physical objects: {e}"))
}

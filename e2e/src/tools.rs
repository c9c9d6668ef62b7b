//! The real tools tests drive: the `switchyard` binary, Debian's `sqitch`, and project
//! fixtures written to temp dirs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The committer both tools record in tests.
pub const USER_NAME: &str = "Test Deployer";
/// The committer's email.
pub const USER_EMAIL: &str = "deployer@example.com";

/// The `switchyard` binary built beside the test binaries (`target/<profile>/switchyard`).
/// The test command builds it first (`cargo build -p switchyard`).
pub fn switchyard_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // Tests run from target/<profile>/deps/, binaries from target/<profile>/.
    let dir = exe.parent().expect("target dir");
    let bin = [dir.join("switchyard"), dir.join("../switchyard")]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| dir.join("switchyard"));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p switchyard` first",
        bin.display()
    );
    bin
}

/// A `switchyard` command with a fixed committer and no inherited database settings.
pub fn switchyard() -> Command {
    let mut command = Command::new(switchyard_bin());
    command
        .env("SWITCHYARD_USER_NAME", USER_NAME)
        .env("SWITCHYARD_USER_EMAIL", USER_EMAIL)
        .env_remove("SWITCHYARD_DB")
        .stdin(Stdio::null());
    // NB: the CLI reads every libpq variable (PGSSLMODE, PGSSLROOTCERT, …), as psql does.
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("PG") {
            command.env_remove(var);
        }
    }
    command
}

/// `switchyard ARGS --project <fixture> --db <db>`.
pub fn switchyard_on(fixture: &Fixture, db: &str, args: &[&str]) -> Command {
    let mut command = switchyard();
    command
        .args(args)
        .arg("--project")
        .arg(fixture.path())
        .arg("--db")
        .arg(db);
    command
}

/// Parses a command's JSON output, or panics showing it.
pub fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// A `sqitch` command run in `project`, isolated from any user or system config.
pub fn sqitch(project: &Path) -> Command {
    let home = std::env::temp_dir().join("switchyard-sqitch-home");
    let _ = std::fs::create_dir_all(&home);
    let mut command = Command::new("sqitch");
    command
        .current_dir(project)
        .env("HOME", &home)
        .env("SQITCH_FULLNAME", USER_NAME)
        .env("SQITCH_EMAIL", USER_EMAIL)
        .env("SQITCH_USER_CONFIG", home.join("none.conf"))
        .env("SQITCH_SYSTEM_CONFIG", home.join("none.conf"))
        .env_remove("SQITCH_TARGET")
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null());
    command
}

/// The Sqitch target URI for a database URL (`postgres://…` → `db:pg://…`).
pub fn sqitch_target(url: &str) -> String {
    format!(
        "db:pg:{}",
        url.trim_start_matches("postgres:")
            .trim_start_matches("postgresql:")
    )
}

/// Runs a command and returns its output, whatever its status.
pub fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

/// Runs a command and panics with its output unless it succeeds; returns stdout.
pub fn run_ok(command: &mut Command) -> String {
    let out = output(command);
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Sqitch project written to a temp dir, change by change.
pub struct Fixture {
    dir: tempfile::TempDir,
    project: String,
    plan: String,
    second: u32,
}

impl Fixture {
    /// An empty project named `project` with a `sqitch.conf` for PostgreSQL.
    pub fn new(project: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["deploy", "revert", "verify"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::write(dir.path().join("sqitch.conf"), "[core]\n\tengine = pg\n")
            .expect("write conf");
        let fixture = Fixture {
            dir,
            project: project.to_string(),
            plan: format!("%syntax-version=1.0.0\n%project={project}\n\n"),
            second: 0,
        };
        fixture.write_plan();
        fixture
    }

    /// The project directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The project name.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// Adds a change with its three scripts. `requires` are written as in a plan
    /// (`other`, `!conflict`, `proj:change`).
    pub fn change(
        &mut self,
        name: &str,
        requires: &[&str],
        deploy: &str,
        revert: &str,
        verify: &str,
    ) -> &mut Self {
        self.write_script("deploy", name, deploy);
        self.write_script("revert", name, revert);
        self.write_script("verify", name, verify);
        let deps = if requires.is_empty() {
            String::new()
        } else {
            format!("[{}] ", requires.join(" "))
        };
        let ts = self.next_timestamp();
        self.plan.push_str(&format!(
            "{name} {deps}{ts} {USER_NAME} <{USER_EMAIL}> # Add {name}\n"
        ));
        self.write_plan();
        self
    }

    /// Adds a change whose scripts create and drop a table of the same name.
    pub fn table(&mut self, name: &str) -> &mut Self {
        self.change(
            name,
            &[],
            &format!("BEGIN;\nCREATE TABLE {name} (id int);\nCOMMIT;\n"),
            &format!("BEGIN;\nDROP TABLE {name};\nCOMMIT;\n"),
            &format!("SELECT id FROM {name} WHERE false;\n"),
        )
    }

    /// A project `shop` whose `switchyard.yaml` makes `shop` a stable schema and `api` a
    /// blue-green one, with one change `schema`: `CREATE SCHEMA shop;` then `tables` (SQL
    /// creating and filling tables), verified by reading `shop.<table>`. Tests add the
    /// objects of `api`.
    pub fn shop_with_api(tables: &str, table: &str) -> Fixture {
        let mut fx = Fixture::new("shop");
        fx.write(
            "switchyard.yaml",
            "project: shop\nengine: postgres\nschemas:\n  shop: stable\n  api: blue-green\n",
        );
        fx.change(
            "schema",
            &[],
            &format!("CREATE SCHEMA shop;\n{tables}"),
            "DROP SCHEMA shop CASCADE;\n",
            &format!("SELECT 1 FROM shop.{table} WHERE false;\n"),
        );
        fx
    }

    /// Tags the last change.
    pub fn tag(&mut self, name: &str) -> &mut Self {
        let ts = self.next_timestamp();
        self.plan.push_str(&format!(
            "@{name} {ts} {USER_NAME} <{USER_EMAIL}> # Tag {name}\n"
        ));
        self.write_plan();
        self
    }

    /// Overwrites one script of a change.
    pub fn write_script(&self, kind: &str, name: &str, body: &str) {
        let path = self.dir.path().join(kind).join(format!("{name}.sql"));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, body).expect("write script");
    }

    /// Writes any file in the project.
    pub fn write(&self, relative: &str, body: &str) {
        let path = self.dir.path().join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, body).expect("write file");
    }

    fn next_timestamp(&mut self) -> String {
        self.second += 1;
        let s = self.second;
        format!(
            "2026-01-01T{:02}:{:02}:{:02}Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }

    fn write_plan(&self) {
        std::fs::write(self.dir.path().join("sqitch.plan"), &self.plan).expect("write plan");
    }
}

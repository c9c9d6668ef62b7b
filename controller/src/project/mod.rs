//! Reads a project directory at one revision: `switchyard.yaml` or a plain `sqitch.conf`,
//! the Sqitch plan, scripts, `objects/` and the development workflow files, into a
//! [`Project`] or an [`Error`] naming the file and line.
//! Never touches a database, git or Kubernetes.

mod chars;
mod error;
mod grammar;
mod load;
mod manifest;
pub mod objects;
mod plan;
mod sqitch_conf;
mod uri;
pub mod workflow;

#[cfg(test)]
pub(crate) mod testing;

pub use error::{Error, Result};
pub use manifest::{Cluster, Engine, Manifest, SchemaMode};
pub use plan::{Change, Dependency, FindError, Plan, SYNTAX_VERSION, Tag, parse};
pub use sqitch_conf::{SqitchConf, SqitchSettings};
pub use workflow::{Directive, FileKind, Workflow, WorkflowFile};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Which of a change's three scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScriptKind {
    /// `deploy/<change>.sql`
    Deploy,
    /// `revert/<change>.sql`
    Revert,
    /// `verify/<change>.sql`
    Verify,
}

impl ScriptKind {
    /// The directory name and the word used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ScriptKind::Deploy => "deploy",
            ScriptKind::Revert => "revert",
            ScriptKind::Verify => "verify",
        }
    }
}

/// Something a project may lack without being invalid, e.g. a change without a verify or
/// revert script (Sqitch only complains when it needs one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The file the warning is about (the plan, for scripts).
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// What is missing, lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// A project read from disk: the manifest, the parsed plan and where its scripts live.
#[derive(Clone, Debug)]
pub struct Project {
    /// The project's top directory (where `switchyard.yaml` or `sqitch.conf` is).
    pub root: PathBuf,
    /// `switchyard.yaml`, or one synthesised from `sqitch.conf` and the plan (engine
    /// postgres, no schemas, `sqitch.conf`'s deploy variables).
    pub manifest: Manifest,
    /// The parsed and validated plan.
    pub plan: Plan,
    /// Directory holding deploy scripts (default `<root>/deploy`).
    pub deploy_dir: PathBuf,
    /// Directory holding revert scripts (default `<root>/revert`).
    pub revert_dir: PathBuf,
    /// Directory holding verify scripts (default `<root>/verify`).
    pub verify_dir: PathBuf,
    /// Directory holding reworked changes' `name@tag` deploy scripts (Sqitch's
    /// `reworked_deploy_dir`; default `<reworked_dir>/deploy`, which is the deploy
    /// directory unless `sqitch.conf` moves only one of them).
    pub reworked_deploy_dir: PathBuf,
    /// Directory holding reworked changes' revert scripts (default `<reworked_dir>/revert`).
    pub reworked_revert_dir: PathBuf,
    /// Directory holding reworked changes' verify scripts (default `<reworked_dir>/verify`).
    pub reworked_verify_dir: PathBuf,
    /// Script file extension without the dot (`core.extension`, default `sql`).
    pub extension: String,
    /// Whether deploys run verify scripts unless told otherwise (`deploy.verify` in
    /// `sqitch.conf`; default false).
    pub default_verify: bool,
    /// Script variables: `sqitch.conf`'s deploy variables, overridden by the manifest's.
    pub variables: BTreeMap<String, String>,
    /// What `sqitch.conf` said, when the project has one.
    pub sqitch: Option<SqitchSettings>,
    /// The development workflow files (`deploy/C-ignore.sql`, …), checked.
    pub workflow: Workflow,
    /// Things missing that Sqitch tolerates: revert and verify scripts.
    pub warnings: Vec<Warning>,
    /// When set, scripts' `\i` and `\ir` may only read files inside this directory. The
    /// controller sets it to the checked tree it read from git, Flux or a ConfigMap; the
    /// CLI's `--project DIR` leaves it unset, as psql does.
    pub include_root: Option<PathBuf>,
}

impl Project {
    /// Reads and validates the project in `root`.
    pub fn load(root: &Path) -> Result<Project> {
        load::load_project(root)
    }

    /// The path of `change`'s script of `kind`. Reworked changes resolve to their
    /// `name@tag.sql` copy, as Sqitch does. The revert script of a change that keeps it
    /// beside its deploy script is `deploy/C-rollback.sql`.
    pub fn script_path(&self, change: &Change, kind: ScriptKind) -> PathBuf {
        if kind == ScriptKind::Revert
            && !change.is_reworked()
            && let Some(rollback) = self.workflow.rollback(&change.name)
        {
            return rollback.path.clone();
        }
        self.script_dir(change, kind).join(&change.script_file)
    }

    /// `path` relative to the project root, `/`-separated, for messages and the registry.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .replace('\\', "/")
    }

    /// The directory `change`'s script of `kind` is in (before any `/` in its name): the
    /// reworked directories for earlier instances of reworked changes.
    pub fn script_dir(&self, change: &Change, kind: ScriptKind) -> &Path {
        match (kind, change.is_reworked()) {
            (ScriptKind::Deploy, false) => &self.deploy_dir,
            (ScriptKind::Revert, false) => &self.revert_dir,
            (ScriptKind::Verify, false) => &self.verify_dir,
            (ScriptKind::Deploy, true) => &self.reworked_deploy_dir,
            (ScriptKind::Revert, true) => &self.reworked_revert_dir,
            (ScriptKind::Verify, true) => &self.reworked_verify_dir,
        }
    }

    /// The project name (the plan's `%project`).
    pub fn name(&self) -> &str {
        &self.plan.project
    }
}

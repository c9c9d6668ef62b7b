//! Reads a project directory at one revision: `switchyard.yaml` (or a plain Sqitch
//! `sqitch.conf`), the Sqitch plan, and the deploy / revert / verify scripts.
//!
//! Owns parsing and validation of what is on disk. It never touches a database, git or
//! Kubernetes: callers hand it a directory and get back a [`Project`] or an [`Error`] that
//! names the file and line.

mod error;
mod manifest;
mod plan;
pub mod objects;
mod sqitch_conf;

pub use error::{Error, Result};
pub use manifest::{Engine, Manifest, SchemaMode};
pub use plan::{Change, Dependency, Plan, Tag};

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

/// A project read from disk: the manifest, the parsed plan and where its scripts live.
#[derive(Clone, Debug)]
pub struct Project {
    /// The project's top directory (where `switchyard.yaml` or `sqitch.conf` is).
    pub root: PathBuf,
    /// `switchyard.yaml`, or one synthesised from `sqitch.conf` and the plan.
    pub manifest: Manifest,
    /// The parsed and validated plan.
    pub plan: Plan,
    /// Directory holding deploy scripts (default `<root>/deploy`).
    pub deploy_dir: PathBuf,
    /// Directory holding revert scripts (default `<root>/revert`).
    pub revert_dir: PathBuf,
    /// Directory holding verify scripts (default `<root>/verify`).
    pub verify_dir: PathBuf,
}

impl Project {
    /// Reads and validates the project in `root`.
    pub fn load(root: &Path) -> Result<Project> {
        plan::load_project(root)
    }

    /// The path of `change`'s script of `kind`. Reworked changes resolve to their
    /// `name@tag.sql` copy, as Sqitch does.
    pub fn script_path(&self, change: &Change, kind: ScriptKind) -> PathBuf {
        let dir = match kind {
            ScriptKind::Deploy => &self.deploy_dir,
            ScriptKind::Revert => &self.revert_dir,
            ScriptKind::Verify => &self.verify_dir,
        };
        dir.join(&change.script_file)
    }

    /// The project name (the plan's `%project`).
    pub fn name(&self) -> &str {
        &self.plan.project
    }
}

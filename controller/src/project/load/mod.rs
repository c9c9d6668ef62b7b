//! Reads a project directory: finds the manifest (or synthesises one from `sqitch.conf`),
//! works out where the plan and scripts live as Sqitch would, parses the plan and checks
//! that every change has its deploy script.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::manifest::{self, Engine, Manifest};
use super::sqitch_conf::{SqitchConf, SqitchSettings};
use super::{Error, Project, Result, ScriptKind, Warning, plan, workflow};

/// The manifest's file name.
pub(super) const MANIFEST_FILE: &str = "switchyard.yaml";
/// Sqitch's configuration file name.
pub(super) const SQITCH_CONF_FILE: &str = "sqitch.conf";

pub(super) fn load_project(root: &Path) -> Result<Project> {
    let manifest_path = root.join(MANIFEST_FILE);
    let conf_path = root.join(SQITCH_CONF_FILE);
    let manifest_file = if manifest_path.is_file() {
        Some(manifest::parse_manifest(
            &manifest_path,
            &read_text(&manifest_path)?,
        )?)
    } else {
        None
    };
    let conf = if conf_path.is_file() {
        Some(SqitchConf::load(&conf_path)?)
    } else {
        None
    };
    if manifest_file.is_none() && conf.is_none() {
        return Err(Error::File {
            path: root.to_owned(),
            message: format!("not a project: no {MANIFEST_FILE} or {SQITCH_CONF_FILE}"),
        });
    }
    let settings = conf.as_ref().map(SqitchConf::settings).transpose()?;
    if let (Some(conf), Some(settings)) = (&conf, &settings) {
        check_engine(conf, settings)?;
    }
    let layout = Layout::new(root, settings.as_ref());

    let plan_path = match &manifest_file {
        Some(file) if file.plan_line.is_some() => root.join(&file.manifest.plan),
        _ => layout.plan_file.clone(),
    };
    let plan_text = read_plan(root, &plan_path, manifest_file.as_ref(), settings.as_ref())?;
    let mut plan = plan::parse(&plan_path, &plan_text)?;
    plan.resolve_scripts(&layout.extension, |file| {
        layout.reworked_deploy_dir.join(file).exists()
    });

    let conf_variables = settings
        .as_ref()
        .map(|s| s.variables.clone())
        .unwrap_or_default();
    let manifest = match manifest_file {
        Some(file) => checked_manifest(root, file, &plan.project, &plan_path)?,
        None => Manifest {
            project: plan.project.clone(),
            engine: Engine::Postgres,
            plan: relative(root, &plan_path),
            schemas: Default::default(),
            clusters: Default::default(),
            variables: conf_variables.clone(),
        },
    };
    let mut variables = conf_variables;
    variables.extend(
        manifest
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );

    let mut project = Project {
        root: root.to_owned(),
        manifest,
        plan,
        deploy_dir: layout.deploy_dir,
        revert_dir: layout.revert_dir,
        verify_dir: layout.verify_dir,
        reworked_deploy_dir: layout.reworked_deploy_dir,
        reworked_revert_dir: layout.reworked_revert_dir,
        reworked_verify_dir: layout.reworked_verify_dir,
        extension: layout.extension,
        default_verify: settings
            .as_ref()
            .and_then(|s| s.deploy_verify)
            .unwrap_or(false),
        variables,
        sqitch: settings,
        workflow: workflow::Workflow::default(),
        warnings: Vec::new(),
        include_root: None,
    };
    let mut listing = Listing::default();
    project.workflow = scan_workflow(&project, &mut listing)?;
    project.warnings = check_scripts(&project, &mut listing)?;
    Ok(project)
}

/// The plan's text. A missing plan is blamed on the line that named it (or its
/// directory), when one did.
fn read_plan(
    root: &Path,
    plan_path: &Path,
    manifest_file: Option<&manifest::ManifestFile>,
    settings: Option<&SqitchSettings>,
) -> Result<String> {
    match std::fs::read(plan_path) {
        Ok(bytes) => decode(plan_path, bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let message = format!("plan file {} not found", relative(root, plan_path));
            let setting = |name: &str| settings.and_then(|s| s.lines.get(name).copied());
            let named_by = match manifest_file {
                Some(file) if file.plan_line.is_some() => {
                    file.plan_line.map(|line| (root.join(MANIFEST_FILE), line))
                }
                _ => setting("plan_file")
                    .or_else(|| setting("top_dir"))
                    .map(|line| (root.join(SQITCH_CONF_FILE), line)),
            };
            Err(match named_by {
                Some((path, line)) => Error::Invalid {
                    path,
                    line,
                    message,
                },
                None => Error::File {
                    path: plan_path.to_owned(),
                    message,
                },
            })
        }
        Err(source) => Err(Error::Io {
            path: plan_path.to_owned(),
            source,
        }),
    }
}

/// The manifest, checked against the plan's `%project`; its `plan` is where the plan
/// was found when the manifest did not name one.
fn checked_manifest(
    root: &Path,
    file: manifest::ManifestFile,
    project: &str,
    plan_path: &Path,
) -> Result<Manifest> {
    if file.manifest.project != project {
        return Err(Error::Invalid {
            path: root.join(MANIFEST_FILE),
            line: file.project_line,
            message: format!(
                "project \"{}\" does not match %project \"{}\" in {}",
                file.manifest.project,
                project,
                relative(root, plan_path)
            ),
        });
    }
    let mut manifest = file.manifest;
    if file.plan_line.is_none() {
        manifest.plan = relative(root, plan_path);
    }
    Ok(manifest)
}

/// The development workflow files in the deploy directory (see [`workflow`]).
fn scan_workflow(project: &Project, listing: &mut Listing) -> Result<workflow::Workflow> {
    let files: BTreeSet<String> = listing.files(&project.deploy_dir).iter().cloned().collect();
    let changes: BTreeSet<&str> = project
        .plan
        .changes
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let scripts: BTreeSet<&str> = project
        .plan
        .changes
        .iter()
        .map(|c| c.script_file.as_str())
        .collect();
    // The current instance's revert script, where Sqitch would look for it.
    let reverts = listing.dir(&project.revert_dir);
    let has_revert = |change: &str| {
        let file = format!("{change}.{}", project.extension);
        reverts.files.contains(&file)
            || (reverts.symlinks && project.revert_dir.join(&file).is_file())
    };
    workflow::scan(&workflow::ScanInput {
        root: &project.root,
        deploy_dir: &project.deploy_dir,
        files: &files,
        extension: &project.extension,
        changes: &changes,
        scripts: &scripts,
        has_revert: &has_revert,
    })
}

/// Sqitch projects for switchyard target PostgreSQL (Materialize speaks its protocol).
fn check_engine(conf: &SqitchConf, settings: &SqitchSettings) -> Result<()> {
    match settings.engine.as_deref() {
        None | Some("pg") => Ok(()),
        Some(other) => {
            let line = conf
                .line_of("core.engine")
                .or_else(|| conf.line_of("core.target"))
                .unwrap_or(1);
            Err(Error::Invalid {
                path: conf.path.clone(),
                line,
                message: format!(
                    "engine \"{other}\" is not supported; switchyard runs sqitch projects with engine pg"
                ),
            })
        }
    }
}

/// Every change needs its deploy script; a missing revert or verify script is only a
/// warning, as Sqitch complains about those only when it has to run them.
fn check_scripts(project: &Project, listing: &mut Listing) -> Result<Vec<Warning>> {
    let mut warnings = Vec::new();
    for change in &project.plan.changes {
        for kind in [ScriptKind::Deploy, ScriptKind::Revert, ScriptKind::Verify] {
            if kind == ScriptKind::Revert
                && !change.is_reworked()
                && project.workflow.rollback(&change.name).is_some()
            {
                // Kept beside the deploy script as `C-rollback.sql`, found by the scan.
                continue;
            }
            let path = project.script_path(change, kind);
            if listing.has_file(project.script_dir(change, kind), &change.script_file, &path) {
                continue;
            }
            let message = format!(
                "{} script {} for change \"{}\" does not exist",
                kind.as_str(),
                relative(&project.root, &path),
                change.name
            );
            if kind == ScriptKind::Deploy {
                return Err(Error::Invalid {
                    path: project.plan.path.clone(),
                    line: change.line,
                    message,
                });
            }
            warnings.push(Warning {
                path: project.plan.path.clone(),
                line: change.line,
                message,
            });
        }
    }
    Ok(warnings)
}

/// The files under each script directory, read once: a plan can have thousands of scripts,
/// and one directory walk costs less than a `stat` per script.
#[derive(Default)]
struct Listing {
    dirs: HashMap<PathBuf, DirListing>,
}

#[derive(Default)]
struct DirListing {
    /// Regular files, as `/`-separated paths relative to the directory.
    files: HashSet<String>,
    /// Symlinks were met: a file not listed may still exist through one.
    symlinks: bool,
}

impl Listing {
    /// True when `file` (relative to `dir`, the script at `path`) is a regular file.
    fn has_file(&mut self, dir: &Path, file: &str, path: &Path) -> bool {
        let listing = self.dir(dir);
        listing.files.contains(file) || (listing.symlinks && path.is_file())
    }

    /// The regular files under `dir`, `/`-separated, spelled as the directory lists them.
    fn files(&mut self, dir: &Path) -> &HashSet<String> {
        &self.dir(dir).files
    }

    fn dir(&mut self, dir: &Path) -> &DirListing {
        self.dirs.entry(dir.to_owned()).or_insert_with(|| {
            let mut listing = DirListing::default();
            walk(dir, "", &mut listing);
            listing
        })
    }
}

fn walk(dir: &Path, prefix: &str, listing: &mut DirListing) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let (Ok(kind), Some(name)) = (
            entry.file_type(),
            entry.file_name().to_str().map(str::to_owned),
        ) else {
            continue;
        };
        let relative = format!("{prefix}{name}");
        if kind.is_dir() {
            walk(&entry.path(), &format!("{relative}/"), listing);
        } else if kind.is_file() {
            listing.files.insert(relative);
        } else if kind.is_symlink() {
            listing.symlinks = true;
        }
    }
}

/// Where things live, as `App::Sqitch::Target` works it out, joined to the project root.
struct Layout {
    plan_file: PathBuf,
    deploy_dir: PathBuf,
    revert_dir: PathBuf,
    verify_dir: PathBuf,
    reworked_deploy_dir: PathBuf,
    reworked_revert_dir: PathBuf,
    reworked_verify_dir: PathBuf,
    extension: String,
}

impl Layout {
    fn new(root: &Path, settings: Option<&SqitchSettings>) -> Layout {
        let setting =
            |get: fn(&SqitchSettings) -> &Option<PathBuf>| settings.and_then(|s| get(s).clone());
        let top_dir = setting(|s| &s.top_dir).map_or_else(|| root.to_owned(), |d| root.join(d));
        let reworked_dir =
            setting(|s| &s.reworked_dir).map_or_else(|| top_dir.clone(), |d| root.join(d));
        let dir = |configured: Option<PathBuf>, base: &Path, name: &str| match configured {
            Some(d) => root.join(d),
            None => base.join(name),
        };
        Layout {
            plan_file: dir(setting(|s| &s.plan_file), &top_dir, "sqitch.plan"),
            deploy_dir: dir(setting(|s| &s.deploy_dir), &top_dir, "deploy"),
            revert_dir: dir(setting(|s| &s.revert_dir), &top_dir, "revert"),
            verify_dir: dir(setting(|s| &s.verify_dir), &top_dir, "verify"),
            reworked_deploy_dir: dir(setting(|s| &s.reworked_deploy_dir), &reworked_dir, "deploy"),
            reworked_revert_dir: dir(setting(|s| &s.reworked_revert_dir), &reworked_dir, "revert"),
            reworked_verify_dir: dir(setting(|s| &s.reworked_verify_dir), &reworked_dir, "verify"),
            extension: settings
                .and_then(|s| s.extension.clone())
                .unwrap_or_else(|| "sql".into()),
        }
    }
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    decode(path, bytes)
}

/// Strict UTF-8, as Sqitch opens files (`:utf8_strict`), with the line of the first bad byte.
fn decode(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Error::Invalid {
            path: path.to_owned(),
            line,
            message: "not valid UTF-8".into(),
        }
    })
}

/// `path` relative to `root` for messages and the manifest, `/`-separated.
fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests;

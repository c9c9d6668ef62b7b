//! Where a command reads its project: `--project DIR`, or `--git URL --ref REF [--path
//! DIR]` through the same `crate::source` code and cache the controller uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::CliError;
use crate::project::Project;
use crate::source::{self, Credentials, GitCache, GitRequest, Limits, Reference};

/// The flags naming a project.
#[derive(Debug, Args)]
pub struct ProjectArgs {
    /// Project directory (holding switchyard.yaml or sqitch.conf).
    #[arg(long, default_value = ".", conflicts_with = "git")]
    pub project: PathBuf,
    /// Read the project from this git repository instead (https://, ssh://, git:// or
    /// user@host:path), fetched into the cache the controller uses.
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// With --git: what to read. A branch or tag name (default main; a name that is both is
    /// refused), refs/heads/NAME or branch:NAME, refs/tags/NAME or tag:NAME, a semver range
    /// over tags (`>=1.2, <2` or semver:RANGE), or a 40-digit commit.
    #[arg(long = "ref", value_name = "REF", requires = "git")]
    pub git_ref: Option<String>,
    /// With --git: the directory inside the repository holding the project.
    #[arg(long, value_name = "DIR", requires = "git")]
    pub path: Option<String>,
    /// With --git: a directory holding credentials as files named like the controller's
    /// Secret keys (username, password, bearerToken, identity, known_hosts, ca.crt), such
    /// as a mounted Secret.
    #[arg(long, value_name = "DIR", requires = "git")]
    pub git_credentials: Option<PathBuf>,
    /// With --git: the cache directory (default $XDG_CACHE_HOME/switchyard, else
    /// ~/.cache/switchyard).
    #[arg(long, env = "SWITCHYARD_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// With --git: how long fetching may take, e.g. 60s.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub git_timeout: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A project and the revision it was read at (git only).
pub struct Loaded {
    /// The project.
    pub project: Project,
    /// `main@sha1:<commit>` for `--git`; None for a directory.
    pub revision: Option<String>,
}

impl ProjectArgs {
    /// Reads the project the flags name.
    pub async fn load(&self) -> Result<Loaded, CliError> {
        let Some(url) = &self.git else {
            return Ok(Loaded {
                project: Project::load(&self.project)?,
                revision: None,
            });
        };
        let reference = match &self.git_ref {
            Some(text) => Reference::parse_cli(text)?,
            None => Reference::Branch("main".into()),
        };
        let credentials = match &self.git_credentials {
            Some(dir) => credentials_from_dir(dir)?,
            None => Credentials::none(),
        };
        let timeout = crate::reconcile::parse_duration(&self.git_timeout).ok_or_else(|| {
            CliError::Target(format!(
                "--git-timeout {:?} is not a duration",
                self.git_timeout
            ))
        })?;
        let request = GitRequest {
            url: url.clone(),
            reference,
            path: self.path.clone().unwrap_or_default(),
            credentials,
            secret: self
                .git_credentials
                .as_ref()
                .map(|d| d.display().to_string()),
            timeout: timeout.max(Duration::from_secs(1)),
        };
        let cache = GitCache::new(&self.cache_dir(), Limits::default());
        let (artifact, _) = cache.fetch(request, source::git::Want::Latest).await?;
        tracing::info!(revision = %artifact.revision, digest = %artifact.digest, "Read the project from git");
        let mut project = Project::load(&artifact.dir)?;
        // As in the controller: files from git include only files from git.
        project.include_root = Some(artifact.dir.clone());
        Ok(Loaded {
            project,
            revision: Some(artifact.revision),
        })
    }

    fn cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache {
            return dir.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        base.join("switchyard")
    }
}

/// Reads the Secret-like files in `dir`.
fn credentials_from_dir(dir: &Path) -> Result<Credentials, CliError> {
    let mut data = BTreeMap::new();
    for key in [
        "username",
        "password",
        "bearerToken",
        "identity",
        "known_hosts",
        "ca.crt",
        "caFile",
    ] {
        match std::fs::read(dir.join(key)) {
            Ok(bytes) => {
                data.insert(key.to_string(), bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CliError::Target(format!(
                    "reading {}: {e}",
                    dir.join(key).display()
                )));
            }
        }
    }
    Ok(Credentials::from_secret_data(
        &dir.display().to_string(),
        &data,
    )?)
}

//! The Kubernetes side of reading a project: the ConfigMap, the credentials Secret and
//! the Flux `GitRepository` an object names, handed to [`crate::source`] as plain requests,
//! and the project parsed from what comes back. Fetching, caching and checking files is
//! `crate::source`'s; deciding what to do with the project is the reconcilers'.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, ResourceExt};

use super::status::Outcome;
use super::{Context, Stores, parse_duration};
use crate::api::conditions::reasons;
use crate::api::database_project::{ConfigMapSource, DatabaseProject, FluxSourceRef, GitSource};
use crate::project::Project;
use crate::source;
use tracing::debug;

/// A project read from its source.
pub struct Fetched {
    /// `main@sha1:<commit>` (git, Flux) or `cm:<name>@sha1:<digest>` (ConfigMap).
    pub revision: String,
    /// The digest of the files: `sha256:<hex>` (git, Flux) or `sha1:<hex>` (ConfigMap).
    pub digest: String,
    /// The directory holding the project (after the source's `path`).
    pub dir: PathBuf,
    /// The project, parsed.
    pub project: Project,
}

/// Which revision [`fetch`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want<'a> {
    /// Look at the source now: the ConfigMap from the API (not the cache, since a
    /// ConfigMap event may reach the project before the cache has the new content), the
    /// git remote (one ref lookup), the Flux source's current artifact. The
    /// DatabaseProject's own reconcile.
    Latest,
    /// The revision the DatabaseProject last reported (`status.revision`), from the cache
    /// when it is there. Environments; the ConfigMap comes from the watch cache and the
    /// caller compares revisions.
    Reported,
    /// A given revision (a Promotion's `from.revision`). Git keeps history, so any commit
    /// of the repository works; ConfigMap and Flux sources have only their current one.
    Exact(&'a str),
}

/// A failure to report: the outcome and the revision attempted, when one was read.
pub type FetchError = (Outcome, Option<String>);

/// Reads the project files of `dp` and parses them. Failures come back as the outcome to
/// report: a missing ConfigMap or Secret, an unreachable remote are transient; an invalid
/// project, refused files or an unusable spec are terminal.
pub async fn fetch(
    ctx: &Context,
    dp: &DatabaseProject,
    want: Want<'_>,
) -> Result<Fetched, FetchError> {
    let source = &dp.spec.source;
    let (revision, digest, dir) = if let Some(cm) = &source.config_map {
        from_configmap(ctx, dp, cm, want).await?
    } else if let Some(git) = &source.git {
        from_git(ctx, dp, git, want).await?
    } else if let Some(flux) = &source.source_ref {
        from_flux(ctx, dp, flux, want).await?
    } else {
        return Err((
            Outcome::Terminal {
                reason: reasons::INVALID_SOURCE,
                message: "spec.source names no source".into(),
            },
            None,
        ));
    };
    let mut project = Project::load(&dir).map_err(|e| {
        (
            Outcome::Terminal {
                reason: reasons::INVALID_PROJECT,
                message: relative(&e.to_string(), &dir),
            },
            Some(revision.clone()),
        )
    })?;
    // NB: files from a source may only include files of that source.
    project.include_root = Some(dir.clone());
    Ok(Fetched {
        revision,
        digest,
        dir,
        project,
    })
}

async fn from_configmap(
    ctx: &Context,
    dp: &DatabaseProject,
    cm_source: &ConfigMapSource,
    want: Want<'_>,
) -> Result<(String, String, PathBuf), FetchError> {
    let ns = dp.namespace().unwrap_or_default();
    let cm = if want == Want::Latest {
        match Api::<ConfigMap>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&cm_source.name)
            .await
        {
            Ok(cm) => cm.map(Arc::new),
            Err(error) => {
                let message = format!("reading ConfigMap {}: {error}", cm_source.name);
                return Err((
                    Outcome::Transient {
                        reason: reasons::KUBE_ERROR,
                        message,
                    },
                    None,
                ));
            }
        }
    } else {
        Stores::get(&ctx.stores.configmaps, &ns, &cm_source.name)
    };
    let Some(cm) = cm else {
        return Err((
            Outcome::Transient {
                reason: reasons::SOURCE_UNAVAILABLE,
                message: format!("ConfigMap {} not found", cm_source.name),
            },
            None,
        ));
    };
    let entries: source::configmap::Entries = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .chain(
            cm.binary_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone())),
        )
        .collect();
    let cache = ctx.configmaps.clone();
    let name = cm_source.name.clone();
    let path = cm_source.path.clone().unwrap_or_default();
    let artifact = tokio::task::spawn_blocking(move || cache.fetch(&name, &path, &entries))
        .await
        .map_err(|e| {
            (
                Outcome::Transient {
                    reason: reasons::SOURCE_UNAVAILABLE,
                    message: format!("unpacking ConfigMap {}: {e}", cm_source.name),
                },
                None,
            )
        })?
        // NB: a refused ConfigMap has no revision to record as attempted.
        .map_err(|e| (source_outcome(e).0, None))?;
    Ok((artifact.revision, artifact.digest, artifact.dir))
}

/// A source error as the outcome to report, with the revision it was about.
fn source_outcome(error: source::Error) -> FetchError {
    let attempted = match &error {
        source::Error::Refused { revision, .. }
        | source::Error::PathNotFound { revision, .. }
        | source::Error::DigestMismatch { revision, .. } => Some(revision.clone()),
        _ => None,
    };
    let outcome = Outcome::failed(error.is_terminal(), error.reason(), error.to_string());
    (outcome, attempted)
}

/// The git reference a spec names.
pub fn git_reference(git: &GitSource) -> source::Result<source::Reference> {
    let r = git.reference.clone().unwrap_or_default();
    source::Reference::from_parts(
        r.branch.as_deref(),
        r.tag.as_deref(),
        r.semver.as_deref(),
        r.commit.as_deref(),
    )
}

/// The Secret's keys, `data` and `stringData` merged.
pub fn secret_data(secret: &k8s_openapi::api::core::v1::Secret) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    data
}

async fn from_git(
    ctx: &Context,
    dp: &DatabaseProject,
    git: &GitSource,
    want: Want<'_>,
) -> Result<(String, String, PathBuf), FetchError> {
    let ns = dp.namespace().unwrap_or_default();
    let reference = git_reference(git).map_err(source_outcome)?;
    let credentials = match &git.secret_ref {
        None => source::Credentials::none(),
        Some(secret) => {
            let Some(found) = Stores::get(&ctx.stores.secrets, &ns, &secret.name) else {
                return Err((
                    Outcome::Transient {
                        reason: reasons::NOT_FOUND,
                        message: format!("Secret {} not found", secret.name),
                    },
                    None,
                ));
            };
            source::Credentials::from_secret_data(&secret.name, &secret_data(&found))
                .map_err(source_outcome)?
        }
    };
    let request = source::GitRequest {
        url: git.url.clone(),
        reference,
        path: git.path.clone().unwrap_or_default(),
        credentials,
        secret: git.secret_ref.as_ref().map(|s| s.name.clone()),
        timeout: parse_duration(&git.timeout).unwrap_or(Duration::from_secs(60)),
    };
    let reported = dp.status.as_ref().and_then(|s| s.revision.clone());
    let want = match want {
        Want::Latest => source::git::Want::Latest,
        Want::Reported => match reported {
            Some(rev) => source::git::Want::Revision(rev),
            None => {
                return Err((
                    Outcome::Transient {
                        reason: reasons::PROJECT_NOT_READY,
                        message: format!(
                            "DatabaseProject {} has fetched no revision yet",
                            dp.name_any()
                        ),
                    },
                    None,
                ));
            }
        },
        // NB: a revision this project did not report is checked against the remote with
        // the project's own credentials before the shared cache hands it out.
        Want::Exact(rev) if reported.as_deref() == Some(rev) => {
            source::git::Want::Revision(rev.to_string())
        }
        Want::Exact(rev) => source::git::Want::RevisionChecked(rev.to_string()),
    };
    let (artifact, stats) = ctx.git.fetch(request, want).await.map_err(source_outcome)?;
    ctx.metrics.git(stats.ref_lookups, stats.packs);
    debug!(
        revision = %artifact.revision,
        ref_lookups = stats.ref_lookups,
        packs = stats.packs,
        extracted = stats.extracted,
        "Git source read"
    );
    Ok((artifact.revision, artifact.digest, artifact.dir))
}

/// The Flux `GitRepository` kind, read without its Go types.
pub fn flux_git_repository() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "source.toolkit.fluxcd.io".into(),
        version: "v1".into(),
        api_version: "source.toolkit.fluxcd.io/v1".into(),
        kind: "GitRepository".into(),
        plural: "gitrepositories".into(),
    }
}

async fn from_flux(
    ctx: &Context,
    dp: &DatabaseProject,
    flux: &FluxSourceRef,
    want: Want<'_>,
) -> Result<(String, String, PathBuf), FetchError> {
    let ns = dp.namespace().unwrap_or_default();
    let path = flux.path.clone().unwrap_or_default();
    let status = dp.status.clone().unwrap_or_default();
    // An Environment reading the reported revision needs no API request when it is cached.
    if want == Want::Reported
        && let (Some(revision), Some(digest)) = (status.revision, status.digest)
    {
        let announced = source::flux::Announced {
            url: String::new(),
            revision,
            digest,
        };
        if let Some(found) = ctx.flux.cached(&announced, &path) {
            return Ok((found.revision, found.digest, found.dir));
        }
    }
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ns, &flux_git_repository());
    let object = match api.get_opt(&flux.name).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Err((
                Outcome::Transient {
                    reason: reasons::NOT_FOUND,
                    message: format!("GitRepository {} not found", flux.name),
                },
                None,
            ));
        }
        Err(error) => {
            return Err((
                Outcome::Transient {
                    reason: reasons::KUBE_ERROR,
                    message: format!("reading GitRepository {}: {error}", flux.name),
                },
                None,
            ));
        }
    };
    let artifact = &object.data["status"]["artifact"];
    let field = |key: &str| artifact[key].as_str().map(str::to_string);
    let (Some(url), Some(revision), Some(digest)) =
        (field("url"), field("revision"), field("digest"))
    else {
        return Err((
            Outcome::Transient {
                reason: reasons::ARTIFACT_NOT_READY,
                message: format!("GitRepository {} has no artifact yet", flux.name),
            },
            None,
        ));
    };
    let announced = source::flux::Announced {
        url,
        revision,
        digest,
    };
    let found = ctx
        .flux
        .fetch(&announced, &path, Duration::from_secs(60))
        .await
        .map_err(source_outcome)?;
    Ok((found.revision, found.digest, found.dir))
}

/// Makes paths inside `dir` relative in a message, so users see `deploy/x.sql:3`, and
/// names `dir` itself "the project".
pub fn relative(message: &str, dir: &std::path::Path) -> String {
    let prefix = format!("{}/", dir.display());
    // NB: the cache path means nothing to users; the directory itself is "the project".
    message
        .replace(&prefix, "")
        .replace(&dir.display().to_string(), "the project")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every reason the source module reports is in the condition vocabulary.
    #[test]
    fn source_reasons_are_condition_reasons() {
        use source::{Error as E, Refusal};
        let io = || std::io::Error::other("x");
        let refused = |refusal| E::Refused {
            revision: "r".into(),
            refusal,
        };
        let path = || "p".to_string();
        let cases = [
            (E::InvalidSpec(String::new()), reasons::INVALID_SOURCE),
            (
                E::InvalidCredentials(String::new()),
                reasons::INVALID_SECRET,
            ),
            (
                E::AuthenticationFailed {
                    url: path(),
                    message: path(),
                },
                reasons::AUTHENTICATION_FAILED,
            ),
            (
                E::RefNotFound {
                    reference: path(),
                    url: path(),
                },
                reasons::REF_NOT_FOUND,
            ),
            (
                E::PathNotFound {
                    path: path(),
                    revision: path(),
                },
                reasons::PATH_NOT_FOUND,
            ),
            (
                E::Timeout {
                    url: path(),
                    seconds: 1,
                },
                reasons::FETCH_FAILED,
            ),
            (
                refused(Refusal::GitDir { path: path() }),
                reasons::UNSAFE_PATH,
            ),
            (
                refused(Refusal::TooManyFiles {
                    path: path(),
                    limit: 1,
                }),
                reasons::SIZE_LIMIT_EXCEEDED,
            ),
            (
                refused(Refusal::NotUtf8 {
                    path: path(),
                    offset: 0,
                }),
                reasons::INVALID_ENCODING,
            ),
            (
                E::DigestMismatch {
                    revision: path(),
                    expected: path(),
                    actual: path(),
                },
                reasons::DIGEST_MISMATCH,
            ),
            (E::ArtifactNotReady(path()), reasons::ARTIFACT_NOT_READY),
            (
                E::Cache {
                    path: path(),
                    source: io(),
                },
                reasons::CACHE_ERROR,
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.reason(), want, "{error:?}");
        }
    }

    #[test]
    fn refused_files_name_the_revision_attempted() {
        let (outcome, attempted) = source_outcome(source::Error::Refused {
            revision: "main@sha1:ab".into(),
            refusal: source::Refusal::GitDir {
                path: ".git".into(),
            },
        });
        assert_eq!(attempted.as_deref(), Some("main@sha1:ab"));
        assert!(matches!(
            outcome,
            Outcome::Terminal {
                reason: "UnsafePath",
                ..
            }
        ));
        let (outcome, attempted) = source_outcome(source::Error::Fetch {
            url: "git://h/r".into(),
            message: "refused".into(),
        });
        assert_eq!(attempted, None);
        assert!(matches!(
            outcome,
            Outcome::Transient {
                reason: "FetchFailed",
                ..
            }
        ));
    }
}

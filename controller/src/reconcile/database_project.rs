//! Reconciles `DatabaseProject`: reads the source, checks the project is valid, and
//! reports the revision, digest and plan summary. Also [`fetch`], which Environments and
//! Promotions use to get the project files at a revision.
//!
//! The Kubernetes side of sources only: reading the ConfigMap, the credentials Secret and
//! the Flux `GitRepository`. Fetching, caching and checking files is `crate::source`'s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use tracing::{debug, info, instrument, warn};

use super::status::{self, Outcome, apply_status, mark_progressing, summarize};
use super::{Context, Error, Result, Stores, parse_duration, requested_at};
use crate::api::FINALIZER;
use crate::api::conditions::{reasons, types};
use crate::api::database_project::{
    ConfigMapSource, DatabaseProject, DatabaseProjectStatus, FluxSourceRef, GitSource, PlanSummary,
};
use crate::project::Project;
use crate::source;

/// The kind's name, for metrics and logs.
pub const KIND: &str = "DatabaseProject";

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

/// Makes paths inside `dir` relative in a message, so users see `deploy/x.sql:3`.
pub fn relative(message: &str, dir: &std::path::Path) -> String {
    let prefix = format!("{}/", dir.display());
    message.replace(&prefix, "")
}

/// Summarises a plan for status.
pub fn plan_summary(project: &Project) -> PlanSummary {
    let plan = &project.plan;
    let tags: Vec<String> = plan
        .changes
        .iter()
        .flat_map(|c| c.tags.iter().map(|t| format!("@{}", t.name)))
        .collect();
    PlanSummary {
        changes: plan.changes.len() as i64,
        tags: tags.len() as i64,
        last_change: plan.changes.last().map(|c| c.name.clone()),
        last_tag: tags.last().cloned(),
    }
}

/// Entry point from the Controller.
#[instrument(skip_all, fields(kind = KIND, name = %dp.name_any(), namespace = dp.namespace().unwrap_or_default()))]
pub async fn reconcile(dp: Arc<DatabaseProject>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.reconcile(KIND);
    let ns = dp
        .namespace()
        .ok_or(Error::MissingObjectKey(".metadata.namespace"))?;
    let api: Api<DatabaseProject> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, dp, |event| async {
        match event {
            Finalizer::Apply(dp) => apply(&dp, &api, &ctx).await,
            // Nothing is held for a project: its unpacked files are shared by content.
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(dp: &DatabaseProject, api: &Api<DatabaseProject>, ctx: &Context) -> Result<Action> {
    let name = dp.name_any();
    let now = status::now();
    let generation = dp.metadata.generation;
    let old = dp.status.clone().unwrap_or_default();
    let mut new = old.clone();
    let interval = parse_duration(&dp.spec.interval).unwrap_or(Duration::from_secs(300));

    if dp.spec.suspend {
        debug!("Suspended");
        return Ok(Action::await_change());
    }
    if mark_progressing(
        &mut new.conditions,
        old.observed_generation,
        generation,
        &now,
    ) {
        new.observed_generation = generation;
        apply_status(api, &name, &new).await?;
    }

    let outcome = match fetch(ctx, dp, Want::Latest).await {
        Ok(fetched) => {
            moved_tag(ctx, dp, old.revision.as_deref(), &fetched.revision).await;
            new.last_attempted_revision = Some(fetched.revision.clone());
            new.revision = Some(fetched.revision.clone());
            new.digest = Some(fetched.digest.clone());
            new.project = Some(fetched.project.name().to_string());
            new.plan = Some(plan_summary(&fetched.project));
            status::set_condition(
                &mut new.conditions,
                types::VALIDATED,
                true,
                reasons::FETCHED,
                &format!("valid project at {}", fetched.revision),
                generation,
                &now,
            );
            Outcome::Ready {
                reason: reasons::SUCCEEDED,
                message: format!("revision {}", fetched.revision),
            }
        }
        Err((outcome, attempted)) => {
            if attempted.is_some() {
                new.last_attempted_revision = attempted;
            }
            if let Outcome::Terminal { reason, message } = &outcome {
                status::set_condition(
                    &mut new.conditions,
                    types::VALIDATED,
                    false,
                    reason,
                    message,
                    generation,
                    &now,
                );
            }
            outcome
        }
    };
    summarize(&mut new.conditions, &outcome, generation, &now);
    new.observed_generation = generation;
    new.last_handled_reconcile_at = requested_at(dp).or(old.last_handled_reconcile_at.clone());

    let key = super::object_key(dp);
    let action = match &outcome {
        Outcome::Ready { .. } | Outcome::Progressing { .. } => {
            ctx.reset_backoff(&key);
            Action::requeue(interval)
        }
        Outcome::Transient { reason, .. } => {
            ctx.metrics.failure(KIND, reason);
            Action::requeue(ctx.backoff(&key, Duration::from_secs(5), interval))
        }
        // NB: a git repository is still looked at every interval: a push (the usual fix
        // for refused content) changes nothing a watch could see.
        Outcome::Terminal { reason, .. } if dp.spec.source.git.is_some() => {
            ctx.metrics.failure(KIND, reason);
            Action::requeue(interval)
        }
        Outcome::Terminal { reason, .. } => {
            ctx.metrics.failure(KIND, reason);
            Action::await_change()
        }
    };
    if !status::same_ignoring_time(&old, &new) {
        events(ctx, dp, &old, &new).await;
        apply_status(api, &name, &new).await?;
    }
    Ok(action)
}

/// A tag that now names another commit is followed, and said once, as a Warning.
async fn moved_tag(ctx: &Context, dp: &DatabaseProject, old: Option<&str>, new: &str) {
    let (Some(git), Some(old)) = (&dp.spec.source.git, old) else {
        return;
    };
    let Ok(reference) = git_reference(git) else {
        return;
    };
    if let Some(from) = source::reference::moved_tag(&reference, old, new) {
        let tag = source::reference::name_of(new).unwrap_or_default();
        let to = source::reference::commit_of(new).unwrap_or_default();
        warn!(tag, from, to, "Tag moved");
        ctx.event(
            dp,
            true,
            reasons::TAG_MOVED,
            "Fetch",
            format!("tag {tag} moved from sha1:{from} to sha1:{to}; following it to {new}"),
        )
        .await;
    }
}

/// One event per transition of Ready or of the revision.
async fn events(
    ctx: &Context,
    dp: &DatabaseProject,
    old: &DatabaseProjectStatus,
    new: &DatabaseProjectStatus,
) {
    let was = status::condition(&old.conditions, types::READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    let Some(now) = status::condition(&new.conditions, types::READY) else {
        return;
    };
    if was
        .as_ref()
        .map(|(s, r, m)| (s.as_str(), r.as_str(), m.as_str()))
        == Some((
            now.status.as_str(),
            now.reason.as_str(),
            now.message.as_str(),
        ))
    {
        return;
    }
    if now.status == "True" {
        info!(
            revision = new.revision.as_deref().unwrap_or_default(),
            "Project fetched"
        );
        ctx.event(
            dp,
            false,
            reasons::FETCHED,
            "Fetch",
            format!("fetched {}", new.revision.as_deref().unwrap_or_default()),
        )
        .await;
    } else if status::is_true(&new.conditions, types::STALLED) {
        ctx.event(dp, true, &now.reason, "Fetch", now.message.clone())
            .await;
    }
}

/// The Promotion and Environment controllers' mapper input: which projects read `cm`.
pub fn projects_reading_configmap(
    projects: &[Arc<DatabaseProject>],
    cm: &ConfigMap,
) -> Vec<kube::runtime::reflector::ObjectRef<DatabaseProject>> {
    let ns = cm.namespace();
    let name = cm.name_any();
    projects
        .iter()
        .filter(|p| {
            p.namespace() == ns
                && p.spec
                    .source
                    .config_map
                    .as_ref()
                    .is_some_and(|c| c.name == name)
        })
        .map(|p| kube::runtime::reflector::ObjectRef::from(p.as_ref()))
        .collect()
}

/// The DatabaseProject controller's mapper input: which projects read the Flux source
/// `obj`.
pub fn projects_reading_flux_source(
    projects: &[Arc<DatabaseProject>],
    obj: &kube::api::DynamicObject,
) -> Vec<kube::runtime::reflector::ObjectRef<DatabaseProject>> {
    let ns = obj.namespace();
    let name = obj.name_any();
    projects
        .iter()
        .filter(|p| {
            p.namespace() == ns
                && p.spec
                    .source
                    .source_ref
                    .as_ref()
                    .is_some_and(|s| s.name == name)
        })
        .map(|p| kube::runtime::reflector::ObjectRef::from(p.as_ref()))
        .collect()
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

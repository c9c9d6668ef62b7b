//! Reconciles `DatabaseProject`: reads the source, checks the project is valid, and
//! reports the revision, digest and plan summary. Also [`fetch`], which Environments and
//! Promotions use to get the project files at a revision.
//!
//! The Kubernetes side of sources only: reading the ConfigMap, the credentials Secret and
//! the Flux `GitRepository`. Fetching, caching and checking files is `crate::source`'s.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use tracing::{debug, info, instrument, warn};

use super::fetch::{Want, fetch, git_reference};
use super::status::{self, Outcome, apply_status, mark_progressing, summarize};
use super::{Context, Error, Result, parse_duration, requested_at};
use crate::api::FINALIZER;
use crate::api::conditions::{reasons, types};
use crate::api::database_project::{DatabaseProject, DatabaseProjectStatus, PlanSummary};
use crate::project::Project;
use crate::source;

/// The kind's name, for metrics and logs.
pub const KIND: &str = "DatabaseProject";

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
        Outcome::Ready { .. } | Outcome::Progressing { .. } | Outcome::Waiting { .. } => {
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
    projects_where(projects, cm.namespace(), |p| {
        p.spec
            .source
            .config_map
            .as_ref()
            .is_some_and(|c| c.name == cm.name_any())
    })
}

/// The projects in namespace `ns` for which `reads` holds, as references to reconcile.
fn projects_where(
    projects: &[Arc<DatabaseProject>],
    ns: Option<String>,
    reads: impl Fn(&DatabaseProject) -> bool,
) -> Vec<kube::runtime::reflector::ObjectRef<DatabaseProject>> {
    projects
        .iter()
        .filter(|p| p.namespace() == ns && reads(p))
        .map(|p| kube::runtime::reflector::ObjectRef::from(p.as_ref()))
        .collect()
}

/// The DatabaseProject controller's mapper input: which projects read the Flux source
/// `obj`.
pub fn projects_reading_flux_source(
    projects: &[Arc<DatabaseProject>],
    obj: &kube::api::DynamicObject,
) -> Vec<kube::runtime::reflector::ObjectRef<DatabaseProject>> {
    projects_where(projects, obj.namespace(), |p| {
        p.spec
            .source
            .source_ref
            .as_ref()
            .is_some_and(|s| s.name == obj.name_any())
    })
}

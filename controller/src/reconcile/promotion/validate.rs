//! Validating: the guards on the Kubernetes objects, the revision to promote, and what it
//! would change in the target database (the diff, and the guards that need the database).
//! Nothing changes in the database here.

use std::time::Instant;

use kube::{Api, ResourceExt};

use super::guards::{self, Input};
use super::{Plan, Run, kube_failed, ms};
use crate::api::conditions::{reasons, types};
use crate::api::environment::Environment;
use crate::api::promotion::PromotionStatus;
use crate::engine::bluegreen::PromoteOptions;
use crate::engine::bluegreen::guards::GuardInput;
use crate::project::objects::Objects;
use crate::reconcile::database::{connect, engine_outcome};
use crate::reconcile::fetch::{self, Fetched};
use crate::reconcile::status::{self, Outcome};
use crate::reconcile::{Stores, bluegreen};

/// What the Kubernetes side of validation found.
pub(super) struct Validated {
    /// The source Environment, when `from.environment` names one.
    pub source: Option<Environment>,
    /// The target Environment.
    pub target: Environment,
    /// The target's DatabaseProject.
    pub project: std::sync::Arc<crate::api::DatabaseProject>,
    /// The project at the revision it reports.
    pub fetched: Fetched,
    /// Its `objects/`.
    pub objects: Objects,
}

/// Reads both Environments and runs the guards on them; reads the project.
pub(super) async fn objects(
    run: &Run<'_>,
    new: &mut PromotionStatus,
) -> Result<Validated, Outcome> {
    let ns = run.promo.namespace().unwrap_or_default();
    let envs: Api<Environment> = Api::namespaced(run.ctx.client.clone(), &ns);
    let target_name = run.promo.spec.to.environment.as_str();
    let source_name = run.source_name();
    let target = envs.get_opt(target_name).await.map_err(kube_failed)?;
    let source = match source_name {
        Some(s) => envs.get_opt(s).await.map_err(kube_failed)?,
        None => None,
    };
    let project = target
        .as_ref()
        .and_then(|t| Stores::get(&run.ctx.stores.projects, &ns, &t.spec.project_ref.name));
    let input = Input {
        source: source.as_ref(),
        from_environment: source_name.is_some(),
        source_name,
        target: target.as_ref(),
        target_name,
        project_revision: project
            .as_ref()
            .and_then(|d| d.status.as_ref())
            .and_then(|s| s.revision.as_deref()),
        allow_drift: run.promo.spec.allow_drift,
    };
    if let Some((reason, message)) = guards::check(&input) {
        return Err(run.block(new, reason, message));
    }
    status::remove_condition(&mut new.conditions, types::BLOCKED);
    let (Some(target), Some(project)) = (target, project) else {
        return Err(Outcome::Transient {
            reason: reasons::NOT_FOUND,
            message: format!("the DatabaseProject of Environment {target_name} is not found"),
        });
    };
    let fetched = fetch::fetch(run.ctx, &project, fetch::Want::Reported)
        .await
        .map_err(|(outcome, _)| outcome)?;
    let objects = bluegreen::objects(&fetched)?;
    Ok(Validated {
        source,
        target,
        project,
        fetched,
        objects,
    })
}

/// The revision to promote (the source's, or `from.revision`) and how far (the source's
/// last change), with the project's files at that revision.
async fn wanted_revision(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    v: &mut Validated,
) -> Result<(String, Option<String>), Outcome> {
    let from_revision = run
        .promo
        .spec
        .from
        .as_ref()
        .and_then(|f| f.revision.clone());
    let (wanted, to) = match (&v.source, from_revision) {
        (Some(s), _) => {
            let st = s.status.clone().unwrap_or_default();
            (
                st.last_applied_revision.unwrap_or_default(),
                st.last_change_id,
            )
        }
        (None, Some(rev)) => (rev, None),
        (None, None) => {
            return Err(run.fail(
                new,
                types::VALIDATED,
                reasons::GUARD_SOURCE_NOT_FOUND,
                "from names nothing to promote".into(),
            ));
        }
    };
    if v.fetched.revision != wanted {
        // NB: git sources keep history: an earlier revision is fetched at its commit.
        v.fetched = fetch::fetch(run.ctx, &v.project, fetch::Want::Exact(&wanted))
            .await
            .map_err(|(outcome, _)| outcome)?;
    }
    if v.fetched.revision != wanted {
        return Err(run.block(
            new,
            reasons::GUARD_REVISION_UNAVAILABLE,
            format!(
                "revision {wanted} is no longer the project's content (now {}); only git sources keep history, so a ConfigMap or Flux source can promote only its current revision",
                v.fetched.revision
            ),
        ));
    }
    new.revision = Some(wanted.clone());
    Ok((wanted, to))
}

/// What the promotion would do to the target database and whether the guards that need
/// the database let it: the pending changes, the schemas that differ (`status.diff`),
/// and, for Environments sharing one database, the layers to repoint.
pub(super) async fn plan(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    mut v: Validated,
    started: Instant,
) -> Result<Plan, Outcome> {
    let (wanted, to) = wanted_revision(run, new, &mut v).await?;
    let Validated {
        source,
        target,
        fetched,
        objects,
        ..
    } = v;
    let engine = connect(run.ctx, &target).await?;
    // As the target would deploy it: workflow files only where it allows rework.
    let state = engine
        .status_with(&fetched.project, target.spec.allow_rework)
        .await
        .map_err(|e| engine_outcome(&e, &fetched, &wanted).0)?;
    let changes = pending_up_to(&fetched, &state.pending, to.as_deref());
    let shared_from = shared_from(run, new, source.as_ref(), &target, &objects)?;
    let options = PromoteOptions {
        select: run.promo.spec.select.clone(),
        include_stale_upstreams: run.promo.spec.include_stale_upstreams,
        allow_partial: run.promo.spec.allow_partial_promotion,
        suspended: target.spec.suspend,
        caller: GuardInput {
            reworked: state
                .refused
                .as_ref()
                .filter(|r| r.reason() == reasons::REWORK_NOT_ALLOWED)
                .map(|r| fetch::relative(&r.to_string(), &fetched.dir)),
            allow_rework: target.spec.allow_rework,
            ..GuardInput::default()
        },
        ..PromoteOptions::default()
    };
    let plan = Plan {
        target,
        fetched,
        objects,
        wanted,
        to,
        engine,
        changes,
        shared_from,
        options,
        deployed: 0,
    };
    preflight(run, new, &plan).await?;
    run.done(
        new,
        types::VALIDATED,
        true,
        reasons::SUCCEEDED,
        &format!(
            "guards passed; promoting {} to {}",
            plan.wanted, run.promo.spec.to.environment
        ),
        ms(started),
    );
    Ok(plan)
}

/// Environments serving layers in one database repoint, and rebuild nothing: the
/// source's schema suffix. Two Environments in one database without distinct suffixes
/// share their blue-green schemas, so nothing can move between them.
fn shared_from(
    run: &Run<'_>,
    new: &mut PromotionStatus,
    source: Option<&Environment>,
    target: &Environment,
    objects: &Objects,
) -> Result<Option<String>, Outcome> {
    let sharing = source.map_or(bluegreen::Sharing::Separate, |s| {
        bluegreen::sharing(run.ctx, s, target)
    });
    match sharing {
        bluegreen::Sharing::Clash if !objects.schemas.is_empty() => Err(run.block(
            new,
            reasons::GUARD_SHARED_DATABASE,
            format!(
                "{} and {} use one database without distinct schema suffixes, so their blue-green schemas are the same schemas; give each a schemaSuffix",
                run.source_name().unwrap_or_default(),
                target.name_any()
            ),
        )),
        bluegreen::Sharing::Layers(from) => Ok(Some(from)),
        _ => Ok(None),
    }
}

/// The diff into status, then the engine's guards on the target database.
async fn preflight(run: &Run<'_>, new: &mut PromotionStatus, plan: &Plan) -> Result<(), Outcome> {
    let bg = bluegreen::engine(run.ctx, &plan.target, &plan.engine);
    let schemas = bg
        .diff_project(&plan.fetched.project, &plan.objects)
        .await
        .map_err(|e| run.bg_failed(new, types::VALIDATED, &e, &plan.fetched))?;
    new.diff = Some(bluegreen::diff(plan.changes.clone(), schemas));
    let blocked = bg
        .preflight(
            &plan.fetched.project,
            &plan.objects,
            &plan.options,
            &run.promo.spec.redeploy_schemas,
            plan.shared_from.as_deref(),
        )
        .await
        .map_err(|e| run.bg_failed(new, types::VALIDATED, &e, &plan.fetched))?;
    match blocked {
        Some(blocked) => Err(run.block(new, blocked.reason, blocked.message)),
        None => Ok(()),
    }
}

/// The pending changes up to and including the change with id `to` (all when `None`).
fn pending_up_to(fetched: &Fetched, pending: &[String], to: Option<&str>) -> Vec<String> {
    let Some(last) = to.and_then(|id| {
        fetched
            .project
            .plan
            .changes
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.name.clone())
    }) else {
        return pending.to_vec();
    };
    match pending.iter().position(|c| *c == last) {
        Some(i) => pending[..=i].to_vec(),
        None => Vec::new(),
    }
}

//! `promote` and its guards: check what a promotion would meet before anything changes,
//! then stage what changed and swap it in, verify against live, and swap back on failure.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::guards::{self, Blocked, Chain, GuardInput};
use super::sql;
use super::*;
use crate::project::Project;
use crate::project::objects::Objects;
use crate::registry::bluegreen::{self as pointers, Pointer, Role};

/// Options for [`BlueGreen::promote`].
#[derive(Clone, Debug)]
pub struct PromoteOptions {
    /// The staged deployment to promote; the newest verified one when `None`.
    pub deployment: Option<String>,
    /// Schemas or objects to promote (`--select`); all staged when empty.
    pub select: Vec<String>,
    /// Pull changed upstreams of the selection in.
    pub include_stale_upstreams: bool,
    /// Allow promoting a subset.
    pub allow_partial: bool,
    /// `lock_timeout` for the swap transaction.
    pub lock_timeout: Duration,
    /// Swap attempts before giving up.
    pub attempts: u32,
    /// Retained sets to keep per schema.
    pub keep: usize,
    /// The target is suspended (a reconciler passes its Environment's `suspend`).
    pub suspended: bool,
    /// Guard facts only the caller knows (a reconciler: the source Environment not Ready
    /// at its revision, stale against the project's newest revision, reworked changes and
    /// the target's `allowRework`). Merged with what the engine gathers; the engine's own
    /// findings win where both say something.
    pub caller: GuardInput,
    /// Print the SQL instead of running it.
    pub dry_run: bool,
}

impl Default for PromoteOptions {
    fn default() -> Self {
        PromoteOptions {
            deployment: None,
            select: Vec::new(),
            include_stale_upstreams: false,
            allow_partial: false,
            lock_timeout: Duration::from_millis(500),
            attempts: 8,
            keep: 2,
            suspended: false,
            caller: GuardInput::default(),
            dry_run: false,
        }
    }
}

impl BlueGreen<'_> {
    /// The guards a stage-then-promote of the project's objects would meet, checked
    /// before anything changes: the selection against the schemas that would be staged
    /// (what changed against live, plus `redeploy`), or with `from` against what differs
    /// from the layers with that suffix ([`BlueGreen::promote_from`]); the caller's facts;
    /// the target's lock holder. Reads only.
    pub async fn preflight(
        &self,
        project: &Project,
        objects: &Objects,
        options: &PromoteOptions,
        redeploy: &[String],
        from: Option<&str>,
    ) -> Result<Option<Blocked>> {
        let state = self.state(project).await?;
        let caller = &options.caller;
        let locked_by = match caller.target_locked_by.clone() {
            Some(holder) => Some(holder),
            None => self
                .registry
                .lock_holder(self.client, project.name())
                .await?
                .map(|h| {
                    format!(
                        "{} on {} (pid {}, {} since {})",
                        h.holder, h.host, h.pid, h.operation, h.started_at
                    )
                }),
        };
        if let Some(source) = from {
            let (input, _) = self.gather_from(objects, &state, source, options, locked_by);
            return Ok(Chain::promotion().check(&input));
        }
        let would_stage: BTreeSet<String> = schemas_to_stage(objects, &self.live(&state), redeploy)
            .into_iter()
            .collect();
        let selection = guards::select(
            objects,
            &would_stage,
            &options.select,
            options.include_stale_upstreams,
        );
        let mut input = GuardInput {
            target_locked_by: locked_by,
            target_suspended: options.suspended || caller.target_suspended,
            partial: selection.partial,
            allow_partial: options.allow_partial,
            stale_upstreams: selection.stale_upstreams,
            ..caller.clone()
        };
        if !selection.unknown.is_empty() {
            input.source_not_finalized = Some(format!(
                "select {} names nothing that changed",
                selection.unknown.join(", ")
            ));
        }
        Ok(Chain::promotion().check(&input))
    }

    /// Gathers the guard input for promoting; pure checks happen in [`Chain`].
    pub(super) fn gather(
        &self,
        objects: &Objects,
        all: &[Pointer],
        options: &PromoteOptions,
        locked_by: Option<String>,
    ) -> (GuardInput, Option<String>, BTreeSet<String>) {
        let staged_sets = sets(all).staged;
        let candidate = match &options.deployment {
            Some(id) => staged_sets.iter().find(|s| &s.deployment == id),
            None => staged_sets.iter().find(|s| s.state == "verified"),
        };
        let caller = &options.caller;
        let mut input = GuardInput {
            target_locked_by: locked_by.or_else(|| caller.target_locked_by.clone()),
            target_suspended: options.suspended || caller.target_suspended,
            allow_partial: options.allow_partial,
            reworked: caller.reworked.clone(),
            allow_rework: caller.allow_rework,
            source_not_finalized: caller.source_not_finalized.clone(),
            source_stale: caller.source_stale.clone(),
            ..GuardInput::default()
        };
        let Some(candidate) = candidate else {
            input.source_not_finalized = Some(match &options.deployment {
                Some(id) => format!("deployment {id} is not staged"),
                None => "nothing verified is staged; run stage first".into(),
            });
            return (input, None, BTreeSet::new());
        };
        if candidate.state != "verified" {
            input.source_not_finalized = Some(format!(
                "deployment {} is {}, not verified",
                candidate.deployment, candidate.state
            ));
        }
        let staged: BTreeSet<String> = candidate.schemas.keys().cloned().collect();
        let selection = guards::select(
            objects,
            &staged,
            &options.select,
            options.include_stale_upstreams,
        );
        if !selection.unknown.is_empty() {
            input.source_not_finalized = Some(format!(
                "--select {} names nothing staged in deployment {}",
                selection.unknown.join(", "),
                candidate.deployment
            ));
        }
        input.partial = selection.partial;
        input.stale_upstreams = selection.stale_upstreams.clone();
        input.source_stale.extend(
            all.iter()
                .filter(|p| {
                    p.deployment == candidate.deployment
                        && p.role == Role::Staged
                        && selection.schemas.contains(&p.logical)
                })
                .filter(|p| p.definition_hash != objects.schema_hash(&p.logical))
                .map(|p| p.logical.clone()),
        );
        (input, Some(candidate.deployment.clone()), selection.schemas)
    }

    /// Promotes a staged deployment: guards, then one transaction renames live →
    /// `<schema>__sy_<previous id>` and staged → `<schema>` and moves the pointers;
    /// verify runs against live and a failure swaps back. Retained sets beyond
    /// `options.keep` are dropped when nothing outside depends on them.
    pub async fn promote(
        &self,
        project: &Project,
        objects: &Objects,
        options: &PromoteOptions,
    ) -> Result<SwapReport> {
        let locked_by = if options.dry_run {
            None
        } else {
            self.try_lock(project.name()).await?
        };
        let result = match self.suffix {
            Some(_) => {
                self.promote_layered(project, objects, options, locked_by.clone(), None)
                    .await
            }
            None => {
                self.promote_locked(project, objects, options, locked_by.clone())
                    .await
            }
        };
        if locked_by.is_none() && !options.dry_run {
            self.unlock(project.name()).await;
        }
        result
    }

    pub(super) async fn promote_locked(
        &self,
        project: &Project,
        objects: &Objects,
        options: &PromoteOptions,
        locked_by: Option<String>,
    ) -> Result<SwapReport> {
        let all = pointers::pointers(self.client, project.name()).await?;
        let (input, deployment, selected) = self.gather(objects, &all, options, locked_by);
        if let Some(blocked) = Chain::promotion().check(&input) {
            return Err(Error::Blocked { blocked });
        }
        let deployment = deployment.unwrap_or_default();
        let mut moves = Vec::new();
        for logical in &selected {
            let Some(staged) = all.iter().find(|p| {
                p.deployment == deployment && &p.logical == logical && p.role == Role::Staged
            }) else {
                continue;
            };
            let live = all
                .iter()
                .find(|p| p.role == Role::Live && &p.logical == logical)
                .cloned();
            moves.push(Move {
                logical: logical.clone(),
                incoming: staged.clone(),
                outgoing: live,
            });
        }
        let exists = self.existing_schemas(&selected).await?;
        let plan = swap_plan(project, objects, &moves, &exists, Role::Retained);
        if options.dry_run {
            return Ok(SwapReport {
                project: project.name().into(),
                deployment,
                sql: plan.statements(),
                live: plan.live.clone(),
                retained: plan.retained.clone(),
                ..SwapReport::default()
            });
        }
        let (swap_ms, attempts) = self.swap(project, &plan, options).await?;
        let mut report = SwapReport {
            project: project.name().into(),
            deployment: deployment.clone(),
            live: plan.live.clone(),
            retained: plan.retained.clone(),
            swap_ms,
            attempts,
            ..SwapReport::default()
        };
        if let Err(failure) = self.verify(objects, &selected, &BTreeMap::new()).await {
            let restored = moves
                .iter()
                .find_map(|m| m.outgoing.as_ref().map(|o| o.deployment.clone()))
                .unwrap_or_else(|| "none".into());
            let back = swap_back_plan(project, objects, &plan);
            self.swap(project, &back, options).await?;
            // The failed set goes: nothing should run it again.
            for m in &moves {
                let failed = sql::physical_name(&m.logical, &m.incoming.deployment);
                let _ = self.client.batch_execute(&sql::drop_schema(&failed)).await;
                let _ = pointers::forget(self.client, project.name(), &failed).await;
            }
            // Best effort: the rollback is what to report, not a registry hiccup after it.
            let _ = self
                .record_run(project, "promote", "rolled back", &failure.to_string())
                .await;
            return Err(Error::RolledBack { restored, failure });
        }
        self.record_run(
            project,
            "promote",
            "succeeded",
            &format!("deployment {deployment}"),
        )
        .await?;
        self.retire(project, options.keep, &mut report).await?;
        Ok(report)
    }
}

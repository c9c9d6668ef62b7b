//! `rollback`: swap the newest retained set back in, rebuilding nothing.

use std::collections::BTreeSet;

use super::guards::Blocked;
use super::*;
use crate::project::Project;
use crate::project::objects::Objects;
use crate::registry::bluegreen::{self as pointers, Role};

impl BlueGreen<'_> {
    /// Swaps back to the newest retained set, rebuilding nothing. The set that was live
    /// becomes a verified staged set, so `promote` can bring it back.
    pub async fn rollback(
        &self,
        project: &Project,
        objects: &Objects,
        dry_run: bool,
    ) -> Result<SwapReport> {
        if !dry_run && let Some(holder) = self.try_lock(project.name()).await? {
            return Err(Error::Blocked {
                blocked: Blocked {
                    reason: crate::api::conditions::reasons::GUARD_TARGET_LOCKED,
                    message: format!("the target is locked by {holder}"),
                },
            });
        }
        let result = match self.suffix {
            Some(_) => self.rollback_layered(project, objects, dry_run).await,
            None => self.rollback_locked(project, objects, dry_run).await,
        };
        if !dry_run {
            self.unlock(project.name()).await;
        }
        result
    }

    pub(super) async fn rollback_locked(
        &self,
        project: &Project,
        objects: &Objects,
        dry_run: bool,
    ) -> Result<SwapReport> {
        let all = pointers::pointers(self.client, project.name()).await?;
        let current = sets(&all);
        let target = current
            .retained
            .first()
            .ok_or_else(|| Error::NoRetained("no retained set".into()))?;
        let mut moves = Vec::new();
        for logical in target.schemas.keys() {
            let Some(incoming) = all.iter().find(|p| {
                p.deployment == target.deployment
                    && &p.logical == logical
                    && p.role == Role::Retained
            }) else {
                continue;
            };
            let outgoing = all
                .iter()
                .find(|p| p.role == Role::Live && &p.logical == logical)
                .cloned();
            moves.push(Move {
                logical: logical.clone(),
                incoming: incoming.clone(),
                outgoing,
            });
        }
        let selected: BTreeSet<String> = moves.iter().map(|m| m.logical.clone()).collect();
        let exists = self.existing_schemas(&selected).await?;
        let plan = swap_plan(project, objects, &moves, &exists, Role::Staged);
        if dry_run {
            return Ok(SwapReport {
                project: project.name().into(),
                deployment: target.deployment.clone(),
                sql: plan.statements(),
                live: plan.live.clone(),
                retained: plan.retained.clone(),
                ..SwapReport::default()
            });
        }
        let (swap_ms, attempts) = self
            .swap(project, &plan, &PromoteOptions::default())
            .await?;
        self.record_run(
            project,
            "rollback",
            "succeeded",
            &format!("deployment {}", target.deployment),
        )
        .await?;
        Ok(SwapReport {
            project: project.name().into(),
            deployment: target.deployment.clone(),
            live: plan.live.clone(),
            retained: plan.retained.clone(),
            swap_ms,
            attempts,
            ..SwapReport::default()
        })
    }
}

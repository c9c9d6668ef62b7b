//! The swap: one transaction of renames (or layer repoints) and pointer moves under a
//! short `lock_timeout`, retried when it loses a race; its inverse; and retiring retained
//! sets beyond what is kept.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::sql;
use super::*;
use crate::pg::{db_error_message, is_retryable};
use crate::project::objects::Objects;
use crate::project::{Project, SchemaMode};
use crate::registry::bluegreen::{self as pointers, Pointer, Role};

/// What `promote` or `rollback` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SwapReport {
    /// The project.
    pub project: String,
    /// The deployment now live.
    pub deployment: String,
    /// Logical schema → physical schema now live (always the logical name).
    pub live: BTreeMap<String, String>,
    /// Logical schema → the physical schema the previous live set was renamed to.
    pub retained: BTreeMap<String, String>,
    /// Retained schemas dropped beyond the kept count.
    pub dropped: Vec<String>,
    /// Retained schemas kept past the count because something outside depends on them.
    pub kept_for_dependents: BTreeMap<String, Vec<String>>,
    /// How long the swap transaction took, in milliseconds.
    pub swap_ms: u64,
    /// Layers: how long building the new layers before the swap took, in milliseconds
    /// (readers are not held up by it); 0 when renaming.
    pub prepare_ms: u64,
    /// Swap attempts (lock timeouts retried).
    pub attempts: u32,
    /// The SQL, in a dry run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sql: Vec<String>,
}

/// One logical schema changing hands.
pub(super) struct Move {
    pub(super) logical: String,
    pub(super) incoming: Pointer,
    pub(super) outgoing: Option<Pointer>,
}

/// The statements and pointer moves of one swap transaction.
#[derive(Default)]
pub(super) struct SwapPlan {
    pub(super) sql: Vec<String>,
    /// (physical now, physical after, role, state).
    pub(super) pointer_moves: Vec<(String, String, Role, String)>,
    pub(super) pointer_inserts: Vec<Pointer>,
    /// Layers: (logical, physical now live, its deployment); the previous live row is
    /// retained.
    pub(super) layer_moves: Vec<(String, String, String)>,
    /// Layers: (logical, physical) rows to forget, after the moves.
    pub(super) layer_forgets: Vec<(String, String)>,
    /// Layers renamed aside in the swap, dropped after it commits.
    pub(super) retired_layers: Vec<String>,
    /// Layers: statements run in their own transaction before the swap (building the new
    /// layers under temporary names), and those names.
    pub(super) prepare: Vec<String>,
    pub(super) prepared: Vec<String>,
    pub(super) live: BTreeMap<String, String>,
    pub(super) retained: BTreeMap<String, String>,
    /// For swap-back: (logical, incoming physical before the swap, where the outgoing set went).
    pub(super) undo: Vec<(String, String, Option<String>)>,
}

impl SwapPlan {
    pub(super) fn statements(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.prepare.is_empty() {
            out.push("BEGIN".to_string());
            out.extend(self.prepare.iter().cloned());
            out.push("COMMIT".to_string());
        }
        out.push("BEGIN".to_string());
        out.push("SET LOCAL lock_timeout = '500ms'".to_string());
        out.extend(self.sql.iter().cloned());
        out.push("-- and switchyard.schema_pointers moves in the same transaction".into());
        out.push("COMMIT".into());
        out
    }
}

impl BlueGreen<'_> {
    pub(super) async fn existing_schemas(
        &self,
        logical: &BTreeSet<String>,
    ) -> Result<BTreeSet<String>> {
        let names: Vec<String> = logical.iter().cloned().collect();
        let rows = self
            .client
            .query(
                "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1)",
                &[&names],
            )
            .await
            .map_err(db("reading schemas"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Runs a swap transaction with `lock_timeout`, retrying lock timeouts with backoff.
    pub(super) async fn swap(
        &self,
        project: &Project,
        plan: &SwapPlan,
        options: &PromoteOptions,
    ) -> Result<(u64, u32)> {
        let mut backoff = Duration::from_millis(50);
        let attempts = options.attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            let started = Instant::now();
            match self.swap_once(project, plan, options.lock_timeout).await {
                Ok(()) => return Ok((started.elapsed().as_millis() as u64, attempt)),
                Err(Error::Db { source, .. }) if is_retryable(&source) => {
                    last = db_error_message(&source);
                    tracing::debug!(attempt, error = %last, "Swap lost a race, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(other) => return Err(other),
            }
        }
        Err(Error::SwapTimeout {
            attempts,
            message: last,
        })
    }

    pub(super) async fn swap_once(
        &self,
        project: &Project,
        plan: &SwapPlan,
        lock_timeout: Duration,
    ) -> Result<()> {
        crate::pg::transaction(self.client, "BEGIN", db_error, async {
            self.client
                .batch_execute(&format!(
                    "SET LOCAL lock_timeout = '{}ms'",
                    lock_timeout.as_millis()
                ))
                .await
                .map_err(db("setting lock_timeout"))?;
            // One round trip: a layer's repoint is a few hundred statements.
            if !plan.sql.is_empty() {
                self.client
                    .batch_execute(&plan.sql.join(";\n"))
                    .await
                    .map_err(db("swapping schemas"))?;
            }
            for (physical, new_physical, role, state) in &plan.pointer_moves {
                pointers::repoint(
                    self.client,
                    project.name(),
                    physical,
                    new_physical,
                    *role,
                    state,
                )
                .await?;
            }
            for p in &plan.pointer_inserts {
                pointers::upsert(self.client, project.name(), p).await?;
            }
            let suffix = self.suffix.as_deref().unwrap_or_default();
            for (logical, physical, deployment) in &plan.layer_moves {
                pointers::set_layer_live(
                    self.client,
                    project.name(),
                    suffix,
                    logical,
                    physical,
                    deployment,
                )
                .await?;
            }
            for (logical, physical) in &plan.layer_forgets {
                pointers::forget_layer(self.client, project.name(), suffix, logical, physical)
                    .await?;
            }
            Ok(())
        })
        .await
    }

    /// Drops retained sets beyond `keep` per schema, unless something outside depends on
    /// them (pg_depend); those are kept and reported.
    pub(super) async fn retire(
        &self,
        project: &Project,
        keep: usize,
        report: &mut SwapReport,
    ) -> Result<()> {
        let all = pointers::pointers(self.client, project.name()).await?;
        let mut by_schema: BTreeMap<&str, Vec<&Pointer>> = BTreeMap::new();
        for p in all.iter().filter(|p| p.role == Role::Retained) {
            by_schema.entry(&p.logical).or_default().push(p);
        }
        for (_, retained) in by_schema {
            for old in retained.into_iter().skip(keep) {
                self.drop_set_unless_depended_on(project, &old.physical, report)
                    .await?;
            }
        }
        Ok(())
    }

    /// Drops a physical set and forgets its pointer, unless something outside it depends
    /// on it (pg_depend): then it is kept and reported.
    pub(super) async fn drop_set_unless_depended_on(
        &self,
        project: &Project,
        physical: &str,
        report: &mut SwapReport,
    ) -> Result<()> {
        let rows = self
            .client
            .query(sql::OUTSIDE_DEPENDENTS, &[&physical])
            .await
            .map_err(db("checking dependents"))?;
        let dependents: Vec<String> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
        if !dependents.is_empty() {
            report
                .kept_for_dependents
                .insert(physical.to_string(), dependents);
            return Ok(());
        }
        self.client
            .batch_execute(&sql::drop_schema(physical))
            .await
            .map_err(db("dropping a retired schema set"))?;
        pointers::forget(self.client, project.name(), physical).await?;
        report.dropped.push(physical.to_string());
        Ok(())
    }
}

/// The swap: outgoing live schemas renamed to `<schema>__sy_<their id>` with
/// `outgoing_role`, incoming ones renamed to the logical name; routines re-stamped with
/// logical search paths.
pub(super) fn swap_plan(
    project: &Project,
    objects: &Objects,
    moves: &[Move],
    exists: &BTreeSet<String>,
    outgoing_role: Role,
) -> SwapPlan {
    let mut plan = SwapPlan::default();
    for m in moves {
        let mut outgoing_physical = None;
        if exists.contains(&m.logical) {
            let id = m.outgoing.as_ref().map_or("0", |o| o.deployment.as_str());
            let to = sql::physical_name(&m.logical, id);
            plan.sql.push(sql::rename_schema(&m.logical, &to));
            let state = if outgoing_role == Role::Staged {
                "verified"
            } else {
                "ready"
            };
            match &m.outgoing {
                Some(o) => plan.pointer_moves.push((
                    o.physical.clone(),
                    to.clone(),
                    outgoing_role,
                    state.into(),
                )),
                None => plan.pointer_inserts.push(Pointer {
                    logical: m.logical.clone(),
                    physical: to.clone(),
                    deployment: "0".into(),
                    role: outgoing_role,
                    state: state.into(),
                    definition_hash: String::new(),
                    objects: serde_json::json!({}),
                    message: "adopted: the schema existed before switchyard managed it".into(),
                    updated_at: String::new(),
                    catalog: serde_json::json!({}),
                }),
            }
            plan.retained.insert(m.logical.clone(), to.clone());
            outgoing_physical = Some(to);
        }
        plan.sql
            .push(sql::rename_schema(&m.incoming.physical, &m.logical));
        plan.pointer_moves.push((
            m.incoming.physical.clone(),
            m.logical.clone(),
            Role::Live,
            "ready".into(),
        ));
        plan.sql.push(sql::stamp_routines(
            &m.logical,
            &logical_path(project, objects, &m.logical),
        ));
        plan.live.insert(m.logical.clone(), m.logical.clone());
        plan.undo.push((
            m.logical.clone(),
            m.incoming.physical.clone(),
            outgoing_physical,
        ));
    }
    plan
}

/// The inverse of a promotion's swap, after verify failed: the incoming set goes back to
/// its staging name (failed) and the previous live set returns.
pub(super) fn swap_back_plan(project: &Project, objects: &Objects, forward: &SwapPlan) -> SwapPlan {
    let mut plan = SwapPlan::default();
    for (logical, incoming_physical, outgoing_physical) in &forward.undo {
        plan.sql
            .push(sql::rename_schema(logical, incoming_physical));
        plan.pointer_moves.push((
            logical.clone(),
            incoming_physical.clone(),
            Role::Staged,
            "failed".into(),
        ));
        if let Some(previous) = outgoing_physical {
            plan.sql.push(sql::rename_schema(previous, logical));
            plan.pointer_moves.push((
                previous.clone(),
                logical.clone(),
                Role::Live,
                "ready".into(),
            ));
            plan.sql.push(sql::stamp_routines(
                logical,
                &logical_path(project, objects, logical),
            ));
            plan.live.insert(logical.clone(), logical.clone());
        }
    }
    plan
}

/// A live routine's `search_path`: its own schema, the other blue-green schemas, the
/// stable ones, `public`: all logical names.
pub(super) fn logical_path(project: &Project, objects: &Objects, own: &str) -> Vec<String> {
    let mut path = vec![own.to_string()];
    path.extend(objects.schemas.iter().filter(|s| *s != own).cloned());
    path.extend(
        project
            .manifest
            .schemas
            .iter()
            .filter(|(_, m)| **m == SchemaMode::Stable)
            .map(|(s, _)| s.clone()),
    );
    path.push("public".into());
    path
}

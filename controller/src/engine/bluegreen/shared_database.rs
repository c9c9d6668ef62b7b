//! Blue/green for Environments that share one database: promote, roll back and retire by
//! repointing layers ([`layer_sql`](super::layer_sql)) instead of renaming schemas, and
//! promote from another Environment's layer with nothing rebuilt.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long a repoint waits between building the new layers and swapping them in, so
/// statements in flight at the first commit end before the second.
const LAYER_SETTLE: Duration = Duration::from_millis(50);

use super::guards::{self as guards, Chain, GuardInput};
use super::layer_sql::{self as layer, Exposed, Routine};
use super::sql;
use super::{BlueGreen, Error, PromoteOptions, Result, State, SwapPlan, SwapReport, db};
use crate::engine::Failure;
use crate::pg::{db_error_message, is_retryable};
use crate::project::Project;
use crate::project::objects::Objects;
use crate::registry::bluegreen::{self as pointers, Pointer, Role};

/// One logical schema's layer moving to another physical set.
pub(super) struct LayerMove {
    logical: String,
    /// The physical set the layer will serve; `None` drops the layer (undoing a first
    /// promotion).
    incoming: Option<Pointer>,
    /// The physical set it serves now, if any.
    outgoing: Option<String>,
}

impl BlueGreen<'_> {
    fn suffix(&self) -> &str {
        self.suffix.as_deref().unwrap_or_default()
    }

    /// What `physical` exposes, read with `search_path = pg_catalog` so types print
    /// qualified.
    pub(super) async fn exposed(&self, physical: &str) -> Result<Exposed> {
        let read = async {
            let names = |rows: Vec<tokio_postgres::Row>| -> Vec<String> {
                rows.iter().map(|r| r.get(0)).collect()
            };
            let relations = names(
                self.client
                    .query(layer::EXPOSED_RELATIONS, &[&physical])
                    .await?,
            );
            let types = names(
                self.client
                    .query(layer::EXPOSED_TYPES, &[&physical])
                    .await?,
            );
            let routines = self
                .client
                .query(layer::EXPOSED_ROUTINES, &[&physical])
                .await?
                .iter()
                .map(|r| Routine {
                    name: r.get(0),
                    kind: first_char(r.get(1)),
                    arguments: r.get(2),
                    result: r.get(3),
                    modes: r
                        .get::<_, Vec<String>>(4)
                        .iter()
                        .map(|m| first_char(m))
                        .collect(),
                    inputs: r.get::<_, i32>(5) as usize,
                    volatility: first_char(r.get(6)),
                    strict: r.get(7),
                    parallel: first_char(r.get(8)),
                    polymorphic: r.get(9),
                    unwrappable: r.get(10),
                })
                .collect();
            Ok::<_, tokio_postgres::Error>(Exposed {
                relations,
                types,
                routines,
            })
        };
        crate::pg::rolled_back(
            self.client,
            "BEGIN READ ONLY; SET LOCAL search_path TO pg_catalog, pg_temp",
            |_, e| e,
            read,
        )
        .await
        .map_err(db("reading a physical set's catalog"))
    }

    /// After building, before verifying: every staged set must be servable by a layer.
    /// The failure names the object's file.
    pub(super) async fn check_servable(
        &self,
        objects: &Objects,
        staged: &BTreeMap<String, String>,
    ) -> std::result::Result<(), Failure> {
        for (logical, physical) in staged {
            let exposed = self.exposed(physical).await.map_err(|e| Failure {
                change: logical.clone(),
                path: "(staging)".into(),
                line: 0,
                message: e.to_string(),
            })?;
            if let Err(bad) = layer::layer_objects(&self.served(logical), physical, &exposed) {
                let object = objects
                    .ordered
                    .iter()
                    .find(|o| &o.name.schema == logical && o.name.name == bad.object);
                return Err(Failure {
                    change: format!("{logical}.{}", bad.object),
                    path: object.map(|o| o.path.clone()).unwrap_or_default(),
                    line: object
                        .and_then(|o| o.statements.first())
                        .map_or(1, |s| s.line),
                    message: format!("cannot be served through a layer: {}", bad.why),
                });
            }
        }
        Ok(())
    }

    /// Promotes into this Environment's layers: a staged deployment of its own
    /// (`from: None`), or whatever the layers with suffix `from` serve (`Some`), which
    /// rebuilds nothing. Runs under the project lock (or reports who holds it).
    // long-fn: the layered swap as one sequence (plan, prepare, swap, verify, swap back); each step needs the sets of the one before.
    pub(super) async fn promote_layered(
        &self,
        project: &Project,
        objects: &Objects,
        options: &PromoteOptions,
        locked_by: Option<String>,
        from: Option<&str>,
    ) -> Result<SwapReport> {
        let state = self.state(project).await?;
        let target_live = self.live(&state);
        let (input, moves) = match from {
            None => {
                let (input, deployment, selected) =
                    self.gather(objects, &state.all, options, locked_by);
                let deployment = deployment.unwrap_or_default();
                let moves = selected
                    .iter()
                    .filter_map(|logical| {
                        let incoming = state.all.iter().find(|p| {
                            p.deployment == deployment
                                && &p.logical == logical
                                && p.role == Role::Staged
                        })?;
                        Some(LayerMove {
                            logical: logical.clone(),
                            incoming: Some(incoming.clone()),
                            outgoing: target_live.get(logical).map(|p| p.physical.clone()),
                        })
                    })
                    .collect();
                (input, moves)
            }
            Some(source) => self.gather_from(objects, &state, source, options, locked_by),
        };
        if let Some(blocked) = Chain::promotion().check(&input) {
            return Err(Error::Blocked { blocked });
        }
        let report_of = |plan: &SwapPlan, moves: &[LayerMove]| SwapReport {
            project: project.name().into(),
            deployment: newest(moves.iter().filter_map(|m| m.incoming.as_ref())),
            live: plan.live.clone(),
            retained: plan.retained.clone(),
            ..SwapReport::default()
        };
        if moves.is_empty() {
            return Ok(report_of(&SwapPlan::default(), &moves));
        }
        if options.dry_run {
            let plan = self.layer_plan(&state, &moves, "<run>").await?;
            return Ok(SwapReport {
                sql: plan.statements(),
                ..report_of(&plan, &moves)
            });
        }
        let run = self.start_run(project, "promote").await?;
        let swapped = async {
            let plan = self.layer_plan(&state, &moves, &run.to_string()).await?;
            let done = self.repoint(project, &plan, options).await?;
            Ok::<_, Error>((plan, done))
        }
        .await;
        let (plan, (swap_ms, attempts, prepare_ms)) = match swapped {
            Ok(done) => done,
            Err(e) => {
                let _ = self
                    .registry
                    .finish_deployment(self.client, run, "failed", 0, &e.to_string())
                    .await;
                return Err(e);
            }
        };
        let mut report = SwapReport {
            swap_ms,
            attempts,
            prepare_ms,
            ..report_of(&plan, &moves)
        };
        self.drop_retired_layers(&plan, options, &mut report).await;
        let selected: BTreeSet<String> = moves.iter().map(|m| m.logical.clone()).collect();
        let served: BTreeMap<String, String> = objects
            .schemas
            .iter()
            .map(|s| (s.clone(), self.served(s)))
            .collect();
        if let Err(failure) = self.verify(objects, &selected, &served).await {
            let restored = self
                .swap_back(project, &state, &moves, from.is_none(), options, run)
                .await?;
            let _ = self
                .registry
                .finish_deployment(self.client, run, "rolled back", 0, &failure.to_string())
                .await;
            return Err(Error::RolledBack { restored, failure });
        }
        self.registry
            .finish_deployment(
                self.client,
                run,
                "succeeded",
                0,
                &format!("deployment {}", report.deployment),
            )
            .await?;
        self.retire_layered(project, options, &mut report).await?;
        Ok(report)
    }

    /// The guard input and moves of a promotion from the layers with suffix `source` into
    /// ours: what differs between the two is what a whole promotion moves.
    pub(super) fn gather_from(
        &self,
        objects: &Objects,
        state: &State,
        source: &str,
        options: &PromoteOptions,
        locked_by: Option<String>,
    ) -> (GuardInput, Vec<LayerMove>) {
        let caller = &options.caller;
        let mut input = GuardInput {
            target_locked_by: locked_by.or_else(|| caller.target_locked_by.clone()),
            target_suspended: options.suspended || caller.target_suspended,
            allow_partial: options.allow_partial,
            ..caller.clone()
        };
        let source_live: BTreeMap<&str, &Pointer> = state
            .layers
            .iter()
            .filter(|l| l.suffix == source && l.role == Role::Live)
            .filter_map(|l| {
                let p = state.all.iter().find(|p| p.physical == l.physical)?;
                Some((l.logical.as_str(), p))
            })
            .collect();
        if source.is_empty() && self.suffix().is_empty() || source == self.suffix() {
            input.source_not_finalized = Some("source and target are the same layers".into());
            return (input, Vec::new());
        }
        if source_live.is_empty() {
            input.source_not_finalized = Some(format!(
                "the Environment with schema suffix {source:?} serves nothing yet"
            ));
            return (input, Vec::new());
        }
        let target_live = self.live(state);
        let differing: BTreeSet<String> = objects
            .schemas
            .iter()
            .filter(|s| {
                source_live.get(s.as_str()).map(|p| &p.physical)
                    != target_live.get(*s).map(|p| &p.physical)
            })
            .cloned()
            .collect();
        let selection = guards::select(
            objects,
            &differing,
            &options.select,
            options.include_stale_upstreams,
        );
        if !selection.unknown.is_empty() {
            input.source_not_finalized = Some(format!(
                "select {} names nothing that differs between the two",
                selection.unknown.join(", ")
            ));
        }
        input.partial = selection.partial;
        input.stale_upstreams = selection.stale_upstreams.clone();
        // The source must serve the project's objects, whether or not they differ here.
        let in_play: Vec<&String> = if options.select.is_empty() {
            objects.schemas.iter().collect()
        } else {
            selection.schemas.iter().collect()
        };
        input.source_stale.extend(
            in_play
                .into_iter()
                .filter(|s| {
                    source_live
                        .get(s.as_str())
                        .is_none_or(|p| p.definition_hash != objects.schema_hash(s))
                })
                .cloned(),
        );
        let mut moves = Vec::new();
        for logical in &selection.schemas {
            let Some(incoming) = source_live.get(logical.as_str()) else {
                input.source_not_finalized = Some(format!(
                    "the Environment with schema suffix {source:?} serves no {logical}"
                ));
                continue;
            };
            moves.push(LayerMove {
                logical: logical.clone(),
                incoming: Some((*incoming).clone()),
                outgoing: target_live.get(logical).map(|p| p.physical.clone()),
            });
        }
        (input, moves)
    }

    /// The layer moves in two steps. Prepare (its own transaction): each new layer built
    /// under a temporary name over its incoming set, with the current layer's grants
    /// (checked), and those grants shared with the physical set, which invoker wrappers
    /// call into. Swap: the current layer renamed aside and the new one renamed in.
    ///
    /// NB: functions are not locked by their callers, so a reader whose cached list of a
    /// function name predates the swap would miss a wrapper created in the swap itself;
    /// created beforehand, as staged routines are, it is found under either name.
    async fn layer_plan(&self, state: &State, moves: &[LayerMove], run: &str) -> Result<SwapPlan> {
        let names: BTreeSet<String> = moves.iter().map(|m| self.served(&m.logical)).collect();
        let exists = self.existing_schemas(&names).await?;
        let mut plan = SwapPlan::default();
        for m in moves {
            let name = self.served(&m.logical);
            let retired = layer::retired_layer_name(&name, run);
            let next = layer::next_layer_name(&name, run);
            for long in [&retired, &next] {
                if long.len() > sql::MAX_IDENTIFIER {
                    return Err(Error::NameTooLong(long.clone()));
                }
            }
            let ours = state.layers.iter().any(|l| {
                l.suffix == self.suffix() && l.logical == m.logical && l.role == Role::Live
            });
            if exists.contains(&name) {
                if !ours {
                    return Err(Error::NotALayer(name));
                }
                plan.sql.push(sql::rename_schema(&name, &retired));
                plan.retired_layers.push(retired.clone());
            }
            if let Some(o) = &m.outgoing {
                plan.retained.insert(m.logical.clone(), o.clone());
            }
            let Some(incoming) = &m.incoming else {
                if let Some(o) = &m.outgoing {
                    plan.layer_forgets.push((m.logical.clone(), o.clone()));
                }
                continue;
            };
            let exposed = self.exposed(&incoming.physical).await?;
            let objects =
                layer::layer_objects(&next, &incoming.physical, &exposed).map_err(|bad| {
                    Error::Unservable {
                        schema: m.logical.clone(),
                        object: bad.object,
                        why: bad.why,
                    }
                })?;
            plan.prepare
                .push(format!("CREATE SCHEMA {}", crate::pg::quote_ident(&next)));
            plan.prepare.push(sql::copy_schema_privileges(&name, &next));
            plan.prepare.extend(objects);
            plan.prepare.push(sql::copy_object_privileges(&name, &next));
            plan.prepare.push(sql::check_privileges(&name, &next));
            plan.prepare
                .push(sql::copy_schema_privileges(&next, &incoming.physical));
            plan.prepare
                .push(sql::copy_object_privileges(&next, &incoming.physical));
            plan.prepared.push(next.clone());
            plan.sql.push(sql::rename_schema(&next, &name));
            if incoming.role == Role::Staged {
                plan.pointer_moves.push((
                    incoming.physical.clone(),
                    incoming.physical.clone(),
                    Role::Shared,
                    "ready".into(),
                ));
            }
            plan.layer_moves.push((
                m.logical.clone(),
                incoming.physical.clone(),
                incoming.deployment.clone(),
            ));
            plan.live
                .insert(m.logical.clone(), incoming.physical.clone());
        }
        // NB: wrappers run as their caller, and so do the physical functions they call: a
        // grant made on a layer since its last repoint must reach the set it serves too.
        let moving: BTreeSet<&str> = moves.iter().map(|m| m.logical.as_str()).collect();
        for row in state.layers.iter().filter(|l| {
            l.suffix == self.suffix()
                && l.role == Role::Live
                && !moving.contains(l.logical.as_str())
        }) {
            let name = self.served(&row.logical);
            plan.prepare
                .push(sql::copy_schema_privileges(&name, &row.physical));
            plan.prepare
                .push(sql::copy_object_privileges(&name, &row.physical));
        }
        Ok(plan)
    }

    /// Runs a plan's prepare step in one transaction, then lets readers catch up with it
    /// before the swap (see [`BlueGreen::layer_plan`]).
    async fn prepare(&self, plan: &SwapPlan) -> Result<()> {
        if plan.prepare.is_empty() {
            return Ok(());
        }
        let batch = plan.prepare.join(";\n");
        crate::pg::transaction(self.client, "BEGIN", |_, e| e, async {
            self.client.batch_execute(&batch).await
        })
        .await
        .map_err(db("preparing layers"))?;
        tokio::time::sleep(LAYER_SETTLE).await;
        Ok(())
    }

    /// Prepares and swaps a layer plan; a failed swap drops what prepare built. Returns
    /// the swap's milliseconds and attempts, and the prepare's milliseconds.
    async fn repoint(
        &self,
        project: &Project,
        plan: &SwapPlan,
        options: &PromoteOptions,
    ) -> Result<(u64, u32, u64)> {
        let started = std::time::Instant::now();
        self.prepare(plan).await?;
        let prepare_ms = started.elapsed().saturating_sub(LAYER_SETTLE).as_millis() as u64;
        match self.swap(project, plan, options).await {
            Ok((swap_ms, attempts)) => Ok((swap_ms, attempts, prepare_ms)),
            Err(e) => {
                for next in &plan.prepared {
                    let _ = self.client.batch_execute(&sql::drop_schema(next)).await;
                }
                Err(e)
            }
        }
    }

    /// Drops the layers earlier swaps renamed aside, unless something outside depends on
    /// them (kept and reported). The ones this swap renamed stay until the next: a reader
    /// that resolved the layer's name just before the commit still finds its functions,
    /// which no lock protects. Also drops layers earlier runs prepared and never swapped
    /// in (killed between the two, issue #17), which would pin the sets they read. Best
    /// effort: the swap has committed, so a failure here is reported, not raised.
    async fn drop_retired_layers(
        &self,
        plan: &SwapPlan,
        options: &PromoteOptions,
        report: &mut SwapReport,
    ) {
        let mut retired: BTreeSet<String> = BTreeSet::new();
        for logical in plan.live.keys().chain(plan.retained.keys()) {
            let served = self.served(logical);
            let retired_or_next = [
                layer::retired_layer_pattern(&served),
                layer::next_layer_pattern(&served),
            ];
            if let Ok(rows) = self
                .client
                .query(
                    "SELECT nspname::text FROM pg_catalog.pg_namespace WHERE nspname LIKE ANY($1)",
                    &[&retired_or_next.as_slice()],
                )
                .await
            {
                retired.extend(
                    rows.iter()
                        .map(|r| r.get::<_, String>(0))
                        .filter(|name| !plan.retired_layers.contains(name)),
                );
            }
        }
        for old in retired {
            let dependents: Vec<String> =
                match self.client.query(sql::OUTSIDE_DEPENDENTS, &[&old]).await {
                    Ok(rows) => rows.iter().filter_map(|r| r.try_get(0).ok()).collect(),
                    Err(e) => vec![format!("(could not check: {})", db_error_message(&e))],
                };
            if !dependents.is_empty() {
                report.kept_for_dependents.insert(old, dependents);
                continue;
            }
            match self.drop_schema_with_retries(&old, options).await {
                Ok(()) => report.dropped.push(old),
                Err(message) => {
                    report.kept_for_dependents.insert(old, vec![message]);
                }
            }
        }
    }

    /// `DROP SCHEMA … CASCADE` under the swap's `lock_timeout`, retried with backoff: a
    /// retired layer's readers finish their queries first.
    async fn drop_schema_with_retries(
        &self,
        schema: &str,
        options: &PromoteOptions,
    ) -> std::result::Result<(), String> {
        let mut backoff = Duration::from_millis(50);
        let mut last = String::new();
        for _ in 0..options.attempts.max(1) {
            let statement = format!(
                "SET LOCAL lock_timeout = '{}ms'; {}",
                options.lock_timeout.as_millis(),
                sql::drop_schema(schema)
            );
            let dropped = crate::pg::transaction(self.client, "BEGIN", |_, e| e, async {
                self.client.batch_execute(&statement).await
            })
            .await;
            match dropped {
                Ok(()) => return Ok(()),
                Err(e) => {
                    last = db_error_message(&e);
                    if !is_retryable(&e) {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
        Err(format!("not dropped: {last}"))
    }

    /// After verify failed on the new layers: point them back at what they served before
    /// (dropping a layer that served nothing), forget the failed rows, and drop the failed
    /// set when this promotion built it. Returns the deployment live again.
    async fn swap_back(
        &self,
        project: &Project,
        state: &State,
        moves: &[LayerMove],
        built_here: bool,
        options: &PromoteOptions,
        run: i64,
    ) -> Result<String> {
        let back: Vec<LayerMove> = moves
            .iter()
            .map(|m| LayerMove {
                logical: m.logical.clone(),
                incoming: m
                    .outgoing
                    .as_ref()
                    .and_then(|o| state.all.iter().find(|p| &p.physical == o).cloned()),
                outgoing: m.incoming.as_ref().map(|p| p.physical.clone()),
            })
            .collect();
        let after = self.state(project).await?;
        let mut plan = self.layer_plan(&after, &back, &format!("{run}b")).await?;
        for m in moves {
            if let Some(failed) = &m.incoming {
                plan.layer_forgets
                    .push((m.logical.clone(), failed.physical.clone()));
            }
        }
        self.repoint(project, &plan, options).await?;
        let mut ignored = SwapReport::default();
        self.drop_retired_layers(&plan, options, &mut ignored).await;
        if built_here {
            for failed in moves.iter().filter_map(|m| m.incoming.as_ref()) {
                let _ = self
                    .client
                    .batch_execute(&sql::drop_schema(&failed.physical))
                    .await;
                let _ = pointers::forget(self.client, project.name(), &failed.physical).await;
            }
        }
        Ok(newest(back.iter().filter_map(|m| m.incoming.as_ref())))
    }

    /// Swaps this Environment's layers back to their newest retained set, rebuilding no
    /// physical object. The set that was live leaves the layer's history; when no layer
    /// serves it any more it becomes a verified staged set again, so `promote` can bring
    /// it back.
    pub(super) async fn rollback_layered(
        &self,
        project: &Project,
        objects: &Objects,
        dry_run: bool,
    ) -> Result<SwapReport> {
        let _ = objects;
        let state = self.state(project).await?;
        let live = self.live(&state);
        let Some(newest_row) = state
            .layers
            .iter()
            .find(|l| l.suffix == self.suffix() && l.role == Role::Retained)
        else {
            return Err(Error::NoRetained("no retained set".into()));
        };
        let moves: Vec<LayerMove> = state
            .layers
            .iter()
            .filter(|l| {
                l.suffix == self.suffix()
                    && l.role == Role::Retained
                    && l.deployment == newest_row.deployment
            })
            .map(|l| LayerMove {
                logical: l.logical.clone(),
                incoming: state.all.iter().find(|p| p.physical == l.physical).cloned(),
                outgoing: live.get(&l.logical).map(|p| p.physical.clone()),
            })
            .filter(|m| m.incoming.is_some())
            .collect();
        let run = if dry_run {
            "<run>".to_string()
        } else {
            self.start_run(project, "rollback").await?.to_string()
        };
        let mut plan = self.layer_plan(&state, &moves, &run).await?;
        for m in &moves {
            let Some(outgoing) = &m.outgoing else {
                continue;
            };
            plan.layer_forgets
                .push((m.logical.clone(), outgoing.clone()));
            let served_elsewhere = state.layers.iter().any(|l| {
                &l.physical == outgoing && !(l.suffix == self.suffix() && l.logical == m.logical)
            });
            if !served_elsewhere {
                plan.pointer_moves.push((
                    outgoing.clone(),
                    outgoing.clone(),
                    Role::Staged,
                    "verified".into(),
                ));
            }
        }
        let mut report = SwapReport {
            project: project.name().into(),
            deployment: newest_row.deployment.clone(),
            live: plan.live.clone(),
            retained: BTreeMap::new(),
            ..SwapReport::default()
        };
        if dry_run {
            report.sql = plan.statements();
            return Ok(report);
        }
        let options = PromoteOptions::default();
        let (swap_ms, attempts, prepare_ms) = self.repoint(project, &plan, &options).await?;
        report.swap_ms = swap_ms;
        report.attempts = attempts;
        report.prepare_ms = prepare_ms;
        self.drop_retired_layers(&plan, &options, &mut report).await;
        if let Ok(id) = run.parse::<i64>() {
            self.registry
                .finish_deployment(
                    self.client,
                    id,
                    "succeeded",
                    0,
                    &format!("deployment {}", report.deployment),
                )
                .await?;
        }
        Ok(report)
    }

    /// Forgets this Environment's retained rows beyond `keep` per schema, then drops the
    /// shared physical sets no layer serves or retains any more, unless something outside
    /// depends on them (kept and reported).
    async fn retire_layered(
        &self,
        project: &Project,
        options: &PromoteOptions,
        report: &mut SwapReport,
    ) -> Result<()> {
        let state = self.state(project).await?;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for row in state
            .layers
            .iter()
            .filter(|l| l.suffix == self.suffix() && l.role == Role::Retained)
        {
            let n = seen.entry(&row.logical).or_default();
            *n += 1;
            if *n > options.keep {
                pointers::forget_layer(
                    self.client,
                    project.name(),
                    &row.suffix,
                    &row.logical,
                    &row.physical,
                )
                .await?;
            }
        }
        let state = self.state(project).await?;
        for p in state.all.iter().filter(|p| p.role == Role::Shared) {
            if state.layers.iter().any(|l| l.physical == p.physical) {
                continue;
            }
            self.drop_set_unless_depended_on(project, &p.physical, report)
                .await?;
        }
        Ok(())
    }

    /// Promotes what the layers with schema suffix `source` serve into this
    /// Environment's layers, in the same database: a pointer move, nothing rebuilt. The
    /// same guards as [`BlueGreen::promote`]; verify runs against the moved layers and a
    /// failure points them back.
    pub async fn promote_from(
        &self,
        project: &Project,
        objects: &Objects,
        source: &str,
        options: &PromoteOptions,
    ) -> Result<SwapReport> {
        if self.suffix.is_none() {
            return Err(Error::NotALayer(
                "promoting between layers needs a schema suffix on the target".into(),
            ));
        }
        let locked_by = if options.dry_run {
            None
        } else {
            self.try_lock(project.name()).await?
        };
        let result = self
            .promote_layered(project, objects, options, locked_by.clone(), Some(source))
            .await;
        if locked_by.is_none() && !options.dry_run {
            self.unlock(project.name()).await;
        }
        result
    }
}

fn first_char(s: &str) -> char {
    s.chars().next().unwrap_or(' ')
}

/// The newest deployment id among some pointers (ids are numbers).
fn newest<'a>(pointers: impl Iterator<Item = &'a Pointer>) -> String {
    pointers
        .max_by_key(|p| p.deployment.parse::<i64>().unwrap_or(0))
        .map(|p| p.deployment.clone())
        .unwrap_or_else(|| "none".into())
}

//! `stage`: build every changed (or named) blue-green schema into `<schema>__sy_<id>`,
//! copy and check grants, and run the schema's `verify.sql` against the staging copy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use super::guards::Blocked;
use super::sql;
use super::*;
use crate::engine::Failure;
use crate::pg::db_error_message;
use crate::project::objects::Objects;
use crate::project::{Project, SchemaMode};
use crate::registry::bluegreen::{self as pointers, Pointer, Role};

/// Options for [`BlueGreen::stage`].
#[derive(Clone, Debug, Default)]
pub struct StageOptions {
    /// Stage these schemas even when unchanged (`--redeploy-schema`).
    pub redeploy: Vec<String>,
    /// Keep the staging schemas when building or verifying fails.
    pub keep_failed: bool,
    /// Print the SQL instead of running it.
    pub dry_run: bool,
    /// Told when the stage moves from building to verifying, for callers that report
    /// progress (the Promotion reconciler's phase).
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<StageStep>>,
}

/// Where a running stage is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageStep {
    /// Building objects into the staging schemas.
    Building,
    /// Running the verify SQL against them.
    Verifying,
}

/// What `stage` did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StageReport {
    /// The project.
    pub project: String,
    /// The deployment id (`<id>` in a dry run).
    pub deployment: String,
    /// Logical schema → staging schema.
    pub schemas: BTreeMap<String, String>,
    /// Objects built.
    pub objects: usize,
    /// True when nothing changed and nothing was staged.
    pub up_to_date: bool,
    /// Milliseconds spent building the staging schemas.
    pub build_ms: u64,
    /// Milliseconds spent running the verify SQL against them.
    pub verify_ms: u64,
    /// The SQL, in a dry run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sql: Vec<String>,
}

/// One statement to run, with where it came from for failures.
pub(super) struct BuildStatement {
    sql: String,
    /// `(object, file, line)` for object statements; the file is the staging step otherwise.
    origin: (String, PathBuf, usize),
}

impl BlueGreen<'_> {
    /// Drops staging sets still `building`: a stage builds under the project lock, which
    /// the caller holds now, so their builder died (killed, connection lost) and nobody
    /// will finish them.
    pub(super) async fn drop_abandoned(&self, project: &Project) -> Result<()> {
        let all = pointers::pointers(self.client, project.name()).await?;
        for p in all
            .iter()
            .filter(|p| p.role == Role::Staged && p.state == "building")
        {
            self.drop_staging(project, &p.physical, "abandoned").await?;
        }
        Ok(())
    }

    /// Drops the oldest staged candidates of `schemas` so that, with the one about to be
    /// built, at most [`CANDIDATES_KEPT`] stay: one never promoted (the controller killed
    /// between stage and promote while the project moved on) would otherwise stay for ever.
    pub(super) async fn drop_superseded(
        &self,
        project: &Project,
        all: &[Pointer],
        schemas: &[String],
    ) -> Result<()> {
        for logical in schemas {
            for old in all
                .iter()
                .filter(|p| p.role == Role::Staged && &p.logical == logical)
                .skip(CANDIDATES_KEPT - 1)
            {
                self.drop_staging(project, &old.physical, "superseded")
                    .await?;
            }
        }
        Ok(())
    }

    /// Drops a staging set and forgets its pointer; `why` is for the log.
    pub(super) async fn drop_staging(
        &self,
        project: &Project,
        physical: &str,
        why: &str,
    ) -> Result<()> {
        tracing::info!(schema = %physical, why, "Dropping a staging set");
        self.client
            .batch_execute(&sql::drop_schema(physical))
            .await
            .map_err(db("dropping a staging schema left behind"))?;
        pointers::forget(self.client, project.name(), physical).await?;
        Ok(())
    }

    /// Builds every changed (or named) blue-green schema into `<schema>__sy_<id>`, copies
    /// and checks grants, and runs `objects/<schema>/verify.sql` against the staging
    /// schemas. On failure drops what it created unless `keep_failed`.
    pub async fn stage(
        &self,
        project: &Project,
        objects: &Objects,
        options: &StageOptions,
    ) -> Result<StageReport> {
        if options.dry_run {
            let state = self.state(project).await?;
            return self
                .stage_plan(project, objects, &state, options, "<id>")
                .map(|(mut report, _, steps)| {
                    report.sql = steps.into_iter().map(|s| s.sql).collect();
                    report
                });
        }
        if let Some(holder) = self.try_lock(project.name()).await? {
            return Err(Error::Blocked {
                blocked: Blocked {
                    reason: crate::api::conditions::reasons::GUARD_TARGET_LOCKED,
                    message: format!("the target is locked by {holder}"),
                },
            });
        }
        let result = self.stage_locked(project, objects, options).await;
        self.unlock(project.name()).await;
        result
    }

    // long-fn: build, verify, then keep or drop what was built; every exit path cleans up with the names the build made.
    pub(super) async fn stage_locked(
        &self,
        project: &Project,
        objects: &Objects,
        options: &StageOptions,
    ) -> Result<StageReport> {
        self.ensure_registry(project, "stage").await?;
        self.drop_abandoned(project).await?;
        let state = self.state(project).await?;
        let to_stage = schemas_to_stage(objects, &self.live(&state), &options.redeploy);
        if to_stage.is_empty() {
            return Ok(StageReport {
                project: project.name().into(),
                up_to_date: true,
                ..StageReport::default()
            });
        }
        if options.redeploy.is_empty()
            && let Some(report) = verified_candidate(project, objects, &state.all, &to_stage)
        {
            return Ok(report);
        }
        self.drop_superseded(project, &state.all, &to_stage).await?;
        let run = self.start_run(project, "stage").await?;
        let id = run.to_string();
        let (report, refs, steps) = self.stage_plan(project, objects, &state, options, &id)?;
        for (logical, physical) in &report.schemas {
            pointers::upsert(
                self.client,
                project.name(),
                &Pointer {
                    logical: logical.clone(),
                    physical: physical.clone(),
                    deployment: id.clone(),
                    role: Role::Staged,
                    state: "building".into(),
                    definition_hash: objects.schema_hash(logical),
                    objects: object_hashes(objects, logical),
                    message: String::new(),
                    updated_at: String::new(),
                    catalog: serde_json::json!({}),
                },
            )
            .await?;
        }
        let tell = |step| {
            if let Some(progress) = &options.progress {
                let _ = progress.send(step);
            }
        };
        tell(StageStep::Building);
        let started = Instant::now();
        let mut built = self.run_steps(&steps).await;
        if built.is_ok() && self.suffix.is_some() {
            // A layer must be able to serve what was built, or promoting it would fail.
            built = self.check_servable(objects, &report.schemas).await;
        }
        let mut report = report;
        report.build_ms = started.elapsed().as_millis() as u64;
        let verifying = built.is_ok();
        let outcome = match built {
            Ok(()) => {
                tell(StageStep::Verifying);
                let started = Instant::now();
                let staged: BTreeSet<String> = report.schemas.keys().cloned().collect();
                let verified = self.verify(objects, &staged, &refs).await;
                report.verify_ms = started.elapsed().as_millis() as u64;
                verified
            }
            Err(f) => Err(f),
        };
        let _ = self.client.batch_execute("RESET ALL").await;
        match outcome {
            Ok(()) => {
                for physical in report.schemas.values() {
                    pointers::set_state(self.client, project.name(), physical, "verified", "")
                        .await?;
                }
                self.record_catalog(project, &report.schemas).await?;
                self.registry
                    .finish_deployment(self.client, run, "succeeded", report.objects as i32, "")
                    .await?;
                Ok(report)
            }
            Err(failure) => {
                let message = failure.to_string();
                for physical in report.schemas.values() {
                    if options.keep_failed {
                        pointers::set_state(
                            self.client,
                            project.name(),
                            physical,
                            "failed",
                            &message,
                        )
                        .await?;
                    } else {
                        self.client
                            .batch_execute(&sql::drop_schema(physical))
                            .await
                            .map_err(db("dropping a failed staging schema"))?;
                        pointers::forget(self.client, project.name(), physical).await?;
                    }
                }
                let _ = self
                    .registry
                    .finish_deployment(self.client, run, "failed", 0, &message)
                    .await;
                Err(Error::StageFailed {
                    deployment: id,
                    failure,
                    verifying,
                    kept: options.keep_failed,
                })
            }
        }
    }

    /// Decides what a stage builds and writes its SQL, without touching the database.
    /// Also returns where every blue-green reference points while staging: staged
    /// schemas at their staging copies, the others at their live sets.
    #[allow(clippy::type_complexity)]
    // long-fn: the staging SQL in the order it runs (schemas, privileges, objects, stamps, checks), one script read top to bottom.
    pub(super) fn stage_plan(
        &self,
        project: &Project,
        objects: &Objects,
        state: &State,
        options: &StageOptions,
        id: &str,
    ) -> Result<(StageReport, BTreeMap<String, String>, Vec<BuildStatement>)> {
        let live = self.live(state);
        let staged = schemas_to_stage(objects, &live, &options.redeploy);
        let mut map = BTreeMap::new();
        for schema in &staged {
            let physical = sql::physical_name(schema, id);
            if physical.len() > sql::MAX_IDENTIFIER {
                return Err(Error::NameTooLong(physical));
            }
            map.insert(schema.clone(), physical);
        }
        let stable: Vec<String> = project
            .manifest
            .schemas
            .iter()
            .filter(|(_, m)| **m == SchemaMode::Stable)
            .map(|(s, _)| s.clone())
            .collect();
        // NB: renamed live sets carry their logical name; layered ones never do, so a
        // physical set only ever refers to other physical sets and any layer can serve it.
        let refs: BTreeMap<String, String> = objects
            .schemas
            .iter()
            .map(|s| {
                let physical = map
                    .get(s)
                    .or_else(|| live.get(s).map(|p| &p.physical))
                    .cloned()
                    .unwrap_or_else(|| s.clone());
                (s.clone(), physical)
            })
            .collect();
        let physical_of = |s: &String| refs.get(s).cloned().unwrap_or_else(|| s.clone());
        let path_for = |own: &String| {
            let mut path = vec![physical_of(own)];
            path.extend(
                objects
                    .schemas
                    .iter()
                    .filter(|s| *s != own)
                    .map(&physical_of),
            );
            path.extend(stable.iter().cloned());
            path.push("public".into());
            path
        };
        let origin = |what: &str| (what.to_string(), PathBuf::from("(staging)"), 0);
        let mut steps = Vec::new();
        for (logical, physical) in &map {
            steps.push(BuildStatement {
                sql: format!("CREATE SCHEMA {}", crate::pg::quote_ident(physical)),
                origin: origin(logical),
            });
            steps.push(BuildStatement {
                sql: sql::copy_schema_privileges(&self.served(logical), physical),
                origin: origin(logical),
            });
        }
        let mut count = 0;
        for object in objects
            .ordered
            .iter()
            .filter(|o| map.contains_key(&o.name.schema))
        {
            count += 1;
            let path = path_for(&object.name.schema);
            steps.push(BuildStatement {
                sql: sql::set_search_path(&path),
                origin: origin(&object.name.to_string()),
            });
            for statement in &object.statements {
                let late = sql::late_bound(object.kind, &statement.sql).then_some(&objects.schemas);
                steps.push(BuildStatement {
                    sql: sql::rewrite(&statement.sql, &refs, late),
                    origin: (object.name.to_string(), object.path.clone(), statement.line),
                });
            }
            if matches!(
                object.kind,
                crate::project::objects::ObjectKind::Function
                    | crate::project::objects::ObjectKind::Procedure
            ) {
                steps.push(BuildStatement {
                    sql: sql::stamp_routines(&map[&object.name.schema], &path),
                    origin: origin(&object.name.to_string()),
                });
            }
        }
        for (logical, physical) in &map {
            steps.push(BuildStatement {
                sql: sql::copy_object_privileges(&self.served(logical), physical),
                origin: origin(logical),
            });
            steps.push(BuildStatement {
                sql: sql::check_privileges(&self.served(logical), physical),
                origin: origin(logical),
            });
        }
        let report = StageReport {
            project: project.name().into(),
            deployment: id.into(),
            schemas: map,
            objects: count,
            up_to_date: staged.is_empty(),
            ..StageReport::default()
        };
        Ok((report, refs, steps))
    }

    pub(super) async fn run_steps(
        &self,
        steps: &[BuildStatement],
    ) -> std::result::Result<(), Failure> {
        for step in steps {
            if let Err(error) = self.client.batch_execute(&step.sql).await {
                let (object, path, line) = &step.origin;
                return Err(Failure {
                    change: object.clone(),
                    path: path.clone(),
                    line: *line,
                    message: db_error_message(&error),
                });
            }
        }
        Ok(())
    }

    /// Runs the `verify.sql` of each schema in `which`, in a transaction that is rolled
    /// back, with every blue-green reference pointed through `refs` (logical → the schema
    /// to read: a staging copy, a live set, a layer; unmapped: the logical name itself).
    pub(super) async fn verify(
        &self,
        objects: &Objects,
        which: &BTreeSet<String>,
        refs: &BTreeMap<String, String>,
    ) -> std::result::Result<(), Failure> {
        for logical in which {
            let Some(path) = objects.verify.get(logical) else {
                continue;
            };
            let fail = |line: usize, message: String| Failure {
                change: format!("{logical} verify"),
                path: path.clone(),
                line,
                message,
            };
            let text = std::fs::read_to_string(path).map_err(|e| fail(1, e.to_string()))?;
            let statements =
                pg_query::split_with_parser(&text).map_err(|e| fail(1, e.to_string()))?;
            let search = refs.get(logical).unwrap_or(logical).clone();
            let run = async {
                self.client
                    .batch_execute(&sql::set_search_path(&[search, "public".into()]))
                    .await
                    .map_err(|e| fail(1, db_error_message(&e)))?;
                for statement in statements {
                    let offset = statement.as_ptr() as usize - text.as_ptr() as usize;
                    let line = text[..offset + (statement.len() - statement.trim_start().len())]
                        .matches('\n')
                        .count()
                        + 1;
                    self.client
                        .batch_execute(&sql::rewrite_throughout(statement, refs))
                        .await
                        .map_err(|e| fail(line, db_error_message(&e)))?;
                }
                Ok(())
            };
            crate::pg::rolled_back(
                self.client,
                "BEGIN",
                |_, e| fail(1, db_error_message(&e)),
                run,
            )
            .await?;
        }
        Ok(())
    }
}

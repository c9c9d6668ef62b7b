//! Switchyard's record of the development workflow in one database: each reworked change's
//! state (`switchyard.workflow`) and the workflow events (`switchyard.workflow_events`),
//! written as Sqitch's own rows would read.

use tokio_postgres::GenericClient;

use super::{Committer, Result, query_error, ts};

/// The `switchyard` schema version this step brings a database to.
pub const VERSION: i32 = 4;

/// Migration step 4: idempotent, so every writer may run it.
pub fn migration_4() -> String {
    format!(
        r#"
SET LOCAL client_min_messages = warning;
CREATE TABLE IF NOT EXISTS switchyard.workflow (
    registry        TEXT        NOT NULL,
    project         TEXT        NOT NULL,
    change_id       TEXT        NOT NULL,
    change          TEXT        NOT NULL,
    state           TEXT        NOT NULL CHECK (state IN ('deployed', 'ignored', 'cleaned', 'replaced')),
    file            TEXT        NOT NULL,
    reason          TEXT        NOT NULL DEFAULT '',
    script_hash     TEXT            NULL,
    revision        TEXT            NULL,
    committer_name  TEXT        NOT NULL,
    committer_email TEXT        NOT NULL,
    changed_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (registry, project, change_id)
);
COMMENT ON TABLE switchyard.workflow IS 'Development workflow state of each change that has -ignore, -unignore, -cleanup or -replace files, per database.';
CREATE TABLE IF NOT EXISTS switchyard.workflow_events (
    id              BIGSERIAL   PRIMARY KEY,
    registry        TEXT        NOT NULL,
    project         TEXT        NOT NULL,
    change_id       TEXT        NOT NULL,
    change          TEXT        NOT NULL,
    event           TEXT        NOT NULL CHECK (event IN ('ignore', 'unignore', 'cleanup', 'replace')),
    file            TEXT        NOT NULL,
    reason          TEXT        NOT NULL DEFAULT '',
    script_hash     TEXT            NULL,
    revision        TEXT            NULL,
    committer_name  TEXT        NOT NULL,
    committer_email TEXT        NOT NULL,
    committed_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS workflow_events_project ON switchyard.workflow_events (registry, project, committed_at);
INSERT INTO switchyard.releases (version) VALUES ({VERSION}) ON CONFLICT DO NOTHING;
"#
    )
}

/// Brings the `switchyard` schema to [`VERSION`]. Run by
/// [`Registry::ensure`](super::Registry::ensure), in its transaction.
pub async fn migrate(db: &impl GenericClient) -> Result<()> {
    db.batch_execute(&migration_4())
        .await
        .map_err(query_error("migrating the switchyard schema to version 4"))
}

/// Where a change with workflow files stands in one database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Deployed as planned (after an unignore).
    Deployed,
    /// Abandoned: not deployed here any further; a copy deployed before stays.
    Ignored,
    /// Undone here by its cleanup script, and ignored.
    Cleaned,
    /// Deployed here with its `-replace` script.
    Replaced,
}

impl State {
    /// The word stored in the table and shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Deployed => "deployed",
            State::Ignored => "ignored",
            State::Cleaned => "cleaned",
            State::Replaced => "replaced",
        }
    }

    fn parse(s: &str) -> State {
        match s {
            "ignored" => State::Ignored,
            "cleaned" => State::Cleaned,
            "replaced" => State::Replaced,
            _ => State::Deployed,
        }
    }

    /// True for the states in which the change is not to be deployed here.
    pub fn ignores(self) -> bool {
        matches!(self, State::Ignored | State::Cleaned)
    }
}

/// A workflow event: what a workflow file did here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The change was marked ignored.
    Ignore,
    /// An ignore was taken back.
    Unignore,
    /// The cleanup script ran.
    Cleanup,
    /// The replacement ran (after the cleanup or revert script, where the change was
    /// deployed).
    Replace,
}

impl EventKind {
    /// The word stored in the events table.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Ignore => "ignore",
            EventKind::Unignore => "unignore",
            EventKind::Cleanup => "cleanup",
            EventKind::Replace => "replace",
        }
    }
}

/// One row of `switchyard.workflow`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    /// Sqitch change id (of the change's current instance).
    pub change_id: String,
    /// Change name.
    pub change: String,
    /// Where it stands.
    pub state: State,
    /// The workflow file that put it there, relative to the project.
    pub file: String,
    /// The reason (an ignore file's content).
    pub reason: String,
    /// SHA-1 of the script that ran for it (cleanup or replacement), if one did.
    pub script_hash: Option<String>,
    /// The project revision that did it, when the deployer said.
    pub revision: Option<String>,
    /// Who did it.
    pub committer_name: String,
    /// Who did it (email).
    pub committer_email: String,
    /// Since when, RFC 3339.
    pub changed_at: String,
}

/// A transition to write: the new state of one change and the event that put it there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The change's id.
    pub change_id: String,
    /// The change's name.
    pub change: String,
    /// The state it is in afterwards.
    pub state: State,
    /// The event to record, if any.
    pub event: Option<EventKind>,
    /// The workflow file acted on, relative to the project.
    pub file: String,
    /// The reason (an ignore file's content).
    pub reason: String,
    /// SHA-1 of the script that ran (cleanup or replacement).
    pub script_hash: Option<String>,
}

/// The workflow tables of one Sqitch registry schema and project.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The Sqitch registry schema (`sqitch`).
    pub registry: &'a str,
    /// The project.
    pub project: &'a str,
}

async fn exists(db: &impl GenericClient) -> Result<bool> {
    Ok(db
        .query_one("SELECT to_regclass('switchyard.workflow') IS NOT NULL", &[])
        .await
        .map_err(query_error("checking for the workflow table"))?
        .get(0))
}

/// Every recorded state of the project, by change name. Empty before the first workflow
/// step (or before migration 4).
pub async fn records(db: &impl GenericClient, scope: Scope<'_>) -> Result<Vec<Record>> {
    if !exists(db).await? {
        return Ok(Vec::new());
    }
    let rows = db
        .query(
            &format!(
                "SELECT change_id, change, state, file, reason, script_hash, revision, committer_name, committer_email, {} \
                   FROM switchyard.workflow WHERE registry = $1 AND project = $2 ORDER BY change, change_id",
                ts("changed_at")
            ),
            &[&scope.registry, &scope.project],
        )
        .await
        .map_err(query_error("reading workflow states"))?;
    Ok(rows
        .iter()
        .map(|r| Record {
            change_id: r.get(0),
            change: r.get(1),
            state: State::parse(r.get::<_, &str>(2)),
            file: r.get(3),
            reason: r.get(4),
            script_hash: r.get(5),
            revision: r.get(6),
            committer_name: r.get(7),
            committer_email: r.get(8),
            changed_at: r.get(9),
        })
        .collect())
}

/// Writes `transition` (the state row, and its event when it has one). Call in the
/// transaction that does the step, after [`migrate`].
pub async fn record(
    db: &impl GenericClient,
    scope: Scope<'_>,
    transition: &Transition,
    revision: Option<&str>,
    who: &Committer,
) -> Result<()> {
    let t = transition;
    db.execute(
        "INSERT INTO switchyard.workflow (registry, project, change_id, change, state, file, reason, script_hash, revision, committer_name, committer_email, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, clock_timestamp()) \
         ON CONFLICT (registry, project, change_id) DO UPDATE SET change = EXCLUDED.change, state = EXCLUDED.state, \
           file = EXCLUDED.file, reason = EXCLUDED.reason, script_hash = EXCLUDED.script_hash, revision = EXCLUDED.revision, \
           committer_name = EXCLUDED.committer_name, committer_email = EXCLUDED.committer_email, changed_at = EXCLUDED.changed_at",
        &[
            &scope.registry,
            &scope.project,
            &t.change_id,
            &t.change,
            &t.state.as_str(),
            &t.file,
            &t.reason,
            &t.script_hash,
            &revision,
            &who.name,
            &who.email,
        ],
    )
    .await
    .map_err(query_error("recording a workflow state"))?;
    if let Some(event) = t.event {
        db.execute(
            "INSERT INTO switchyard.workflow_events (registry, project, change_id, change, event, file, reason, script_hash, revision, committer_name, committer_email, committed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, clock_timestamp())",
            &[
                &scope.registry,
                &scope.project,
                &t.change_id,
                &t.change,
                &event.as_str(),
                &t.file,
                &t.reason,
                &t.script_hash,
                &revision,
                &who.name,
                &who.email,
            ],
        )
        .await
        .map_err(query_error("recording a workflow event"))?;
    }
    Ok(())
}

/// Puts a record back as it was (a failure mode undoing the step that changed it).
pub async fn put(db: &impl GenericClient, scope: Scope<'_>, record: &Record) -> Result<()> {
    let r = record;
    db.execute(
        "INSERT INTO switchyard.workflow (registry, project, change_id, change, state, file, reason, script_hash, revision, committer_name, committer_email, changed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::text::timestamptz) \
         ON CONFLICT (registry, project, change_id) DO UPDATE SET change = EXCLUDED.change, state = EXCLUDED.state, \
           file = EXCLUDED.file, reason = EXCLUDED.reason, script_hash = EXCLUDED.script_hash, revision = EXCLUDED.revision, \
           committer_name = EXCLUDED.committer_name, committer_email = EXCLUDED.committer_email, changed_at = EXCLUDED.changed_at",
        &[
            &scope.registry,
            &scope.project,
            &r.change_id,
            &r.change,
            &r.state.as_str(),
            &r.file,
            &r.reason,
            &r.script_hash,
            &r.revision,
            &r.committer_name,
            &r.committer_email,
            &r.changed_at,
        ],
    )
    .await
    .map_err(query_error("restoring a workflow state"))?;
    Ok(())
}

/// Forgets the state of a change that is being reverted (by `revert` or a failure mode):
/// afterwards it is simply not deployed, and its files decide again on the next deploy.
/// Ignored and cleaned states stay, as they say why the change is not deployed.
pub async fn forget_deployed(
    db: &impl GenericClient,
    scope: Scope<'_>,
    change_id: &str,
) -> Result<()> {
    if !exists(db).await? {
        return Ok(());
    }
    db.execute(
        "DELETE FROM switchyard.workflow WHERE registry = $1 AND project = $2 AND change_id = $3 AND state IN ('deployed', 'replaced')",
        &[&scope.registry, &scope.project, &change_id],
    )
    .await
    .map_err(query_error("forgetting a workflow state"))?;
    Ok(())
}

/// One row of `switchyard.workflow_events`, as `log` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkflowEvent {
    /// `ignore`, `unignore`, `cleanup` or `replace`.
    pub event: String,
    /// Change id.
    pub change_id: String,
    /// Change name.
    pub change: String,
    /// The workflow file.
    pub file: String,
    /// The reason, for ignores.
    pub reason: String,
    /// The script's SHA-1, for cleanups and replaces.
    pub script_hash: Option<String>,
    /// The revision.
    pub revision: Option<String>,
    /// When, RFC 3339.
    pub committed_at: String,
    /// Who.
    pub committer_name: String,
    /// Who (email).
    pub committer_email: String,
}

/// The project's workflow events, newest first.
pub async fn events(db: &impl GenericClient, scope: Scope<'_>) -> Result<Vec<WorkflowEvent>> {
    if !exists(db).await? {
        return Ok(Vec::new());
    }
    let rows = db
        .query(
            &format!(
                "SELECT event, change_id, change, file, reason, script_hash, revision, {}, committer_name, committer_email \
                   FROM switchyard.workflow_events WHERE registry = $1 AND project = $2 ORDER BY committed_at DESC, id DESC",
                ts("committed_at")
            ),
            &[&scope.registry, &scope.project],
        )
        .await
        .map_err(query_error("reading workflow events"))?;
    Ok(rows
        .iter()
        .map(|r| WorkflowEvent {
            event: r.get(0),
            change_id: r.get(1),
            change: r.get(2),
            file: r.get(3),
            reason: r.get(4),
            script_hash: r.get(5),
            revision: r.get(6),
            committed_at: r.get(7),
            committer_name: r.get(8),
            committer_email: r.get(9),
        })
        .collect())
}

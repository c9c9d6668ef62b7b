//! DDL for the two registry schemas.
//!
//! The `sqitch` schema follows Sqitch 1.3's PostgreSQL registry layout (version 1.1) table
//! for table, column for column, constraint for constraint, so Sqitch reads and writes it
//! as its own. The `switchyard` schema is versioned by its own `releases` table.

/// The Sqitch registry version this build creates and understands.
pub const REGISTRY_VERSION: &str = "1.1";

/// The version of the `switchyard` schema this build creates.
pub const SWITCHYARD_VERSION: i32 = 1;

/// Creates Sqitch's registry at version 1.1 in schema `s` (already quoted).
pub fn create_sqitch(s: &str) -> String {
    format!(
        r#"
SET LOCAL client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS {s};
COMMENT ON SCHEMA {s} IS 'Sqitch database deployment metadata v1.1.';

CREATE TABLE {s}.releases (
    version         REAL        PRIMARY KEY,
    installed_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    installer_name  TEXT        NOT NULL,
    installer_email TEXT        NOT NULL
);

CREATE TABLE {s}.projects (
    project         TEXT        PRIMARY KEY,
    uri             TEXT            NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    creator_name    TEXT        NOT NULL,
    creator_email   TEXT        NOT NULL
);

CREATE TABLE {s}.changes (
    change_id       TEXT        PRIMARY KEY,
    script_hash     TEXT            NULL,
    change          TEXT        NOT NULL,
    project         TEXT        NOT NULL REFERENCES {s}.projects(project) ON UPDATE CASCADE,
    note            TEXT        NOT NULL DEFAULT '',
    committed_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name  TEXT        NOT NULL,
    committer_email TEXT        NOT NULL,
    planned_at      TIMESTAMPTZ NOT NULL,
    planner_name    TEXT        NOT NULL,
    planner_email   TEXT        NOT NULL,
    UNIQUE(project, script_hash)
);

CREATE TABLE {s}.tags (
    tag_id          TEXT        PRIMARY KEY,
    tag             TEXT        NOT NULL,
    project         TEXT        NOT NULL REFERENCES {s}.projects(project) ON UPDATE CASCADE,
    change_id       TEXT        NOT NULL REFERENCES {s}.changes(change_id) ON UPDATE CASCADE,
    note            TEXT        NOT NULL DEFAULT '',
    committed_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name  TEXT        NOT NULL,
    committer_email TEXT        NOT NULL,
    planned_at      TIMESTAMPTZ NOT NULL,
    planner_name    TEXT        NOT NULL,
    planner_email   TEXT        NOT NULL,
    UNIQUE(project, tag)
);

CREATE TABLE {s}.dependencies (
    change_id       TEXT        NOT NULL REFERENCES {s}.changes(change_id) ON UPDATE CASCADE ON DELETE CASCADE,
    type            TEXT        NOT NULL,
    dependency      TEXT        NOT NULL,
    dependency_id   TEXT            NULL REFERENCES {s}.changes(change_id) ON UPDATE CASCADE CONSTRAINT dependencies_check CHECK (
            (type = 'require'  AND dependency_id IS NOT NULL)
         OR (type = 'conflict' AND dependency_id IS NULL)
    ),
    PRIMARY KEY (change_id, dependency)
);

CREATE TABLE {s}.events (
    event           TEXT        NOT NULL CONSTRAINT events_event_check CHECK (
        event IN ('deploy', 'revert', 'fail', 'merge')
    ),
    change_id       TEXT        NOT NULL,
    change          TEXT        NOT NULL,
    project         TEXT        NOT NULL REFERENCES {s}.projects(project) ON UPDATE CASCADE,
    note            TEXT        NOT NULL DEFAULT '',
    requires        TEXT[]      NOT NULL DEFAULT '{{}}',
    conflicts       TEXT[]      NOT NULL DEFAULT '{{}}',
    tags            TEXT[]      NOT NULL DEFAULT '{{}}',
    committed_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name  TEXT        NOT NULL,
    committer_email TEXT        NOT NULL,
    planned_at      TIMESTAMPTZ NOT NULL,
    planner_name    TEXT        NOT NULL,
    planner_email   TEXT        NOT NULL,
    PRIMARY KEY (change_id, committed_at)
);
"#
    )
}

/// Sqitch's upgrade from a pre-1.0 registry (no `releases` table, no `script_hash`).
pub fn upgrade_to_1_0(s: &str) -> String {
    format!(
        r#"
SET LOCAL client_min_messages = warning;
CREATE TABLE {s}.releases (
    version         REAL        PRIMARY KEY,
    installed_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    installer_name  TEXT        NOT NULL,
    installer_email TEXT        NOT NULL
);
ALTER TABLE {s}.changes ADD COLUMN script_hash TEXT NULL UNIQUE;
UPDATE {s}.changes SET script_hash = change_id;
ALTER TABLE {s}.events DROP CONSTRAINT events_event_check;
ALTER TABLE {s}.events ADD CONSTRAINT events_event_check
      CHECK (event IN ('deploy', 'revert', 'fail', 'merge'));
COMMENT ON SCHEMA {s} IS 'Sqitch database deployment metadata v1.0.';
"#
    )
}

/// Sqitch's upgrade from 1.0 to 1.1: `script_hash` unique per project.
pub fn upgrade_to_1_1(s: &str) -> String {
    format!(
        r#"
SET LOCAL client_min_messages = warning;
ALTER TABLE {s}.changes DROP CONSTRAINT changes_script_hash_key;
ALTER TABLE {s}.changes ADD UNIQUE (project, script_hash);
COMMENT ON SCHEMA {s} IS 'Sqitch database deployment metadata v1.1.';
"#
    )
}

/// Switchyard's own schema, created idempotently and upgraded by version.
pub fn switchyard_schema() -> String {
    format!(
        r#"
SET LOCAL client_min_messages = warning;
CREATE SCHEMA IF NOT EXISTS switchyard;
COMMENT ON SCHEMA switchyard IS 'Switchyard bookkeeping: lock holders, deployments, schema pointers.';
CREATE TABLE IF NOT EXISTS switchyard.releases (
    version       INTEGER     PRIMARY KEY,
    installed_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS switchyard.locks (
    project       TEXT        PRIMARY KEY,
    holder        TEXT        NOT NULL,
    host          TEXT        NOT NULL,
    pid           INTEGER     NOT NULL,
    backend_pid   INTEGER     NOT NULL,
    operation     TEXT        NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS switchyard.deployments (
    id             BIGSERIAL   PRIMARY KEY,
    project        TEXT        NOT NULL,
    operation      TEXT        NOT NULL,
    revision       TEXT            NULL,
    committer_name TEXT        NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at    TIMESTAMPTZ     NULL,
    result         TEXT        NOT NULL,
    changes        INTEGER     NOT NULL DEFAULT 0,
    message        TEXT        NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS switchyard.schema_pointers (
    project          TEXT        NOT NULL,
    logical_schema   TEXT        NOT NULL,
    physical_schema  TEXT        NOT NULL,
    deployment_id    TEXT        NOT NULL,
    role             TEXT        NOT NULL CHECK (role IN ('live', 'retained', 'staged')),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (project, physical_schema)
);
INSERT INTO switchyard.releases (version) VALUES ({SWITCHYARD_VERSION}) ON CONFLICT DO NOTHING;
"#
    )
}

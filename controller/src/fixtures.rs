//! Test builders for the custom resources (`env("dev").ready(..).build()`).

use crate::api::conditions::types;
use crate::api::database_project::LocalObjectReference;
use crate::api::environment::{
    DatabaseConnection, Environment, EnvironmentSpec, EnvironmentStatus, FailureMode,
};
use crate::reconcile::status::{now, set_condition};

/// Builds an Environment.
pub struct EnvBuilder(Environment);

/// An Environment named `name` in namespace `test`, deploying project `shop`.
pub fn env(name: &str) -> EnvBuilder {
    let mut e = Environment::new(
        name,
        EnvironmentSpec {
            project_ref: LocalObjectReference {
                name: "shop".into(),
            },
            database: DatabaseConnection {
                secret_ref: LocalObjectReference {
                    name: format!("{name}-db"),
                },
                registry: "sqitch".into(),
                ..Default::default()
            },
            schema_suffix: None,
            auto_deploy: false,
            failure_mode: FailureMode::All,
            verify: true,
            allow_rework: false,
            suspend: false,
            require_approval: false,
            approved_plan_digest: None,
            lock_timeout: None,
            statement_timeout: None,
            interval: "5m".into(),
            retry_interval: "10s".into(),
            variables: Default::default(),
        },
    );
    e.metadata.namespace = Some("test".into());
    e.metadata.generation = Some(1);
    EnvBuilder(e)
}

impl EnvBuilder {
    /// Deploys another project.
    pub fn project(mut self, name: &str) -> Self {
        self.0.spec.project_ref.name = name.into();
        self
    }
    /// Sets `spec.suspend`.
    pub fn suspended(mut self) -> Self {
        self.0.spec.suspend = true;
        self
    }
    /// Ready with `revision` deployed up to change id `change`.
    pub fn ready(mut self, revision: &str, change: &str) -> Self {
        let status = self.0.status.get_or_insert_with(EnvironmentStatus::default);
        set_condition(
            &mut status.conditions,
            types::READY,
            true,
            "UpToDate",
            "ok",
            Some(1),
            &now(),
        );
        status.last_applied_revision = Some(revision.into());
        status.last_change_id = Some(change.into());
        self
    }
    /// The database lock is held by `holder`.
    pub fn locked(mut self, holder: &str) -> Self {
        self.0
            .status
            .get_or_insert_with(EnvironmentStatus::default)
            .locked_by = Some(holder.into());
        self
    }
    /// Drifted from what was deployed, as `message` says.
    pub fn drifted(mut self, message: &str) -> Self {
        let status = self.0.status.get_or_insert_with(EnvironmentStatus::default);
        set_condition(
            &mut status.conditions,
            types::DRIFTED,
            true,
            crate::api::conditions::reasons::DRIFT_DETECTED,
            message,
            None,
            &now(),
        );
        self
    }
    /// The Environment.
    pub fn build(self) -> Environment {
        self.0
    }
}

//! `verify`: run each deployed change's verify script in a transaction that is rolled back.

use std::collections::BTreeMap;

use super::*;
use crate::engine::script::Script;
use crate::engine::{Error, Failure, Result};
use crate::pg::db_error_message;
use crate::project::{Project, ScriptKind};

/// The outcome of verifying one change.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VerifyResult {
    /// The change.
    pub change: String,
    /// `ok`, `failed`, `no verify script` or `not in plan`.
    pub result: String,
    /// The failure, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// What verify found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// The project.
    pub project: String,
    /// One entry per deployed change, in deploy order.
    pub changes: Vec<VerifyResult>,
    /// Planned changes not deployed.
    pub undeployed: Vec<String>,
}

impl Deployer {
    /// Runs the verify script of every deployed change, each in a transaction that is
    /// rolled back.
    pub async fn verify(
        &mut self,
        project: &Project,
        variables: &BTreeMap<String, String>,
    ) -> Result<VerifyReport> {
        let plan = &project.plan;
        let deployed = self.registry.deployed(&self.client, project.name()).await?;
        let variables = merged_variables(project, variables);
        let mut report = VerifyReport {
            project: project.name().to_string(),
            ..VerifyReport::default()
        };
        let mut failures = Vec::new();
        for row in &deployed {
            let Some(index) = plan.index_of_id(&row.id) else {
                report.changes.push(VerifyResult {
                    change: row.name.clone(),
                    result: "not in plan".into(),
                    failure: None,
                });
                continue;
            };
            let path = project.script_path(&plan.changes[index], ScriptKind::Verify);
            if !path.exists() {
                report.changes.push(VerifyResult {
                    change: row.name.clone(),
                    result: "no verify script".into(),
                    failure: None,
                });
                continue;
            }
            let script = Script::load_within(&path, &variables, project.include_root.as_deref())?;
            match self.run_verify(&script, &row.name).await {
                Ok(()) => report.changes.push(VerifyResult {
                    change: row.name.clone(),
                    result: "ok".into(),
                    failure: None,
                }),
                Err(failure) => {
                    failures.push(failure.clone());
                    report.changes.push(VerifyResult {
                        change: row.name.clone(),
                        result: "failed".into(),
                        failure: Some(failure),
                    });
                }
            }
        }
        let deployed_ids: std::collections::HashSet<&str> =
            deployed.iter().map(|d| d.id.as_str()).collect();
        report.undeployed = plan
            .changes
            .iter()
            .filter(|c| !deployed_ids.contains(c.id.as_str()))
            .map(|c| c.name.clone())
            .collect();
        if !failures.is_empty() {
            return Err(Error::VerifyFailed { failures });
        }
        Ok(report)
    }

    pub(super) async fn run_verify(
        &mut self,
        verify: &Script,
        change: &str,
    ) -> Result<(), Failure> {
        let tx = match self.client.transaction().await {
            Ok(tx) => tx,
            Err(e) => {
                return Err(Failure {
                    change: change.into(),
                    path: Default::default(),
                    line: 0,
                    message: db_error_message(&e),
                });
            }
        };
        let result = run_in_transaction(&tx, verify, change, true).await;
        let _ = tx.rollback().await;
        match result {
            Ok(()) => Ok(()),
            Err(RunError::Failed(f)) => Err(f),
            Err(RunError::Fatal(e)) => Err(Failure {
                change: change.into(),
                path: Default::default(),
                line: 0,
                message: e.to_string(),
            }),
        }
    }
}

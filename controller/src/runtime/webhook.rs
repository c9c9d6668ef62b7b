//! The webhook receiver: a signed push sets `switchyard.dev/requestedAt` on every
//! DatabaseProject that follows that repository and ref, so a merge deploys in seconds.
//! Owns only the HTTP side; authenticating payloads is `source::webhook`'s, reconciling is
//! the reconcilers'.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use secrecy::{ExposeSecret, SecretSlice};
use tracing::{debug, info, warn};

use super::admin::Hooks;
use crate::api::{DatabaseProject, REQUESTED_AT};
use crate::metrics::Metrics;
use crate::reconcile::fetch::git_reference;
use crate::source::webhook::{self, Provider};

/// The field manager of the receiver's annotation patches.
pub const FIELD_MANAGER: &str = "switchyard-webhook";

/// Turns authenticated push events into reconciles of the projects they concern.
pub struct Receiver {
    secret: SecretSlice<u8>,
    client: Client,
    namespace: Option<String>,
    metrics: Metrics,
}

impl Receiver {
    /// A receiver checking requests against `secret` and asking for reconciles of the
    /// projects in `namespace` (all when None).
    pub fn new(
        secret: Vec<u8>,
        client: Client,
        namespace: Option<String>,
        metrics: Metrics,
    ) -> Arc<Receiver> {
        Arc::new(Receiver {
            secret: SecretSlice::from(secret),
            client,
            namespace,
            metrics,
        })
    }

    async fn receive(
        &self,
        path: &str,
        headers: &BTreeMap<String, String>,
        body: &[u8],
    ) -> (u16, String) {
        let header = |name: &str| headers.get(&name.to_ascii_lowercase()).cloned();
        let Some(provider) = Provider::from_path(path) else {
            return (404, "not found\n".into());
        };
        if let Err(rejection) =
            webhook::authenticate(provider, self.secret.expose_secret(), &header, body)
        {
            self.metrics.webhook("rejected");
            warn!(?provider, %rejection, "Webhook refused");
            return (401, format!("{rejection}\n"));
        }
        let push = match webhook::parse(provider, &header, body) {
            Ok(Some(push)) => push,
            Ok(None) => {
                self.metrics.webhook("ignored");
                debug!(?provider, "Webhook event is not a push; ignored");
                return (200, "ignored: not a push event\n".into());
            }
            Err(rejection) => {
                self.metrics.webhook("rejected");
                return (400, format!("{rejection}\n"));
            }
        };
        let api: Api<DatabaseProject> = match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let projects = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(error) => {
                warn!(%error, "Webhook: listing DatabaseProjects failed");
                return (503, "cannot list DatabaseProjects; retry\n".into());
            }
        };
        let now = crate::reconcile::status::now().0.to_string();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let mut names = Vec::new();
        for dp in projects.iter().filter(|dp| concerns(&push, dp)) {
            let ns = dp.namespace().unwrap_or_default();
            let name = dp.name_any();
            let patch = serde_json::json!({"metadata": {"annotations": {REQUESTED_AT: now}}});
            let result = Api::<DatabaseProject>::namespaced(self.client.clone(), &ns)
                .patch(&name, &params, &Patch::Merge(&patch))
                .await;
            match result {
                Ok(_) => names.push(format!("{ns}/{name}")),
                Err(error) => {
                    warn!(%error, %name, namespace = %ns, "Webhook: requesting a reconcile failed")
                }
            }
        }
        self.metrics.webhook("accepted");
        info!(
            ?provider,
            repositories = ?push.repositories,
            reference = push.reference.as_deref().unwrap_or("*"),
            projects = names.len(),
            "Webhook push"
        );
        (
            202,
            serde_json::json!({ "projects": names }).to_string() + "\n",
        )
    }
}

/// True when `dp` follows the repository and ref `push` is about (and is not suspended).
pub fn concerns(push: &webhook::Push, dp: &DatabaseProject) -> bool {
    let Some(git) = &dp.spec.source.git else {
        return false;
    };
    !dp.spec.suspend && git_reference(git).is_ok_and(|r| push.concerns(&git.url, &r))
}

impl Hooks for Receiver {
    fn handle<'a>(
        &'a self,
        path: &'a str,
        headers: &'a BTreeMap<String, String>,
        body: &'a [u8],
    ) -> BoxFuture<'a, (u16, String)> {
        Box::pin(self.receive(path, headers, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::database_project::{GitReference, GitSource, ProjectSource};

    fn project(url: &str, branch: &str, suspend: bool) -> DatabaseProject {
        let mut dp = DatabaseProject::new(
            "shop",
            crate::api::DatabaseProjectSpec {
                source: ProjectSource {
                    git: Some(GitSource {
                        url: url.into(),
                        reference: Some(GitReference {
                            branch: Some(branch.into()),
                            ..Default::default()
                        }),
                        timeout: "60s".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                interval: "5m".into(),
                engine: Default::default(),
                suspend,
            },
        );
        dp.metadata.namespace = Some("ns".into());
        dp
    }

    #[test]
    fn a_push_concerns_projects_on_that_repository_and_branch_only() {
        let push = webhook::Push {
            repositories: vec!["github.com/org/shop".into()],
            reference: Some("refs/heads/main".into()),
        };
        assert!(concerns(
            &push,
            &project("https://github.com/org/shop.git", "main", false)
        ));
        assert!(concerns(
            &push,
            &project("git@github.com:org/shop.git", "main", false)
        ));
        assert!(!concerns(
            &push,
            &project("https://github.com/org/shop.git", "dev", false)
        ));
        assert!(!concerns(
            &push,
            &project("https://github.com/org/other.git", "main", false)
        ));
        assert!(
            !concerns(
                &push,
                &project("https://github.com/org/shop.git", "main", true)
            ),
            "suspended projects are left alone"
        );
    }
}

//! Running the operator: connect to the cluster, serve the admin port, win the leader
//! Lease, fill the caches, and run one kube-runtime controller per kind with its watches.
//!
//! Owns the wiring only: what a reconcile does is [`crate::reconcile`]'s, and nothing here
//! touches a database.

pub mod admin;
pub mod leader;
mod watches;
pub mod webhook;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::runtime::events::Reporter;

use crate::api::{DatabaseProject, Environment};
use crate::metrics::Metrics;
use crate::reconcile::{Context, Stores};
use crate::registry::Committer;
use crate::source::Limits;
use admin::Admin;
use leader::LeaderElector;
use watches::{api, cache, shutdown_signal};

/// How the operator runs: what `switchyard controller` was told.
#[derive(Clone, Debug)]
pub struct Config {
    /// Watch only this namespace; all when `None`.
    pub namespace: Option<String>,
    /// Address of the admin port.
    pub admin_addr: SocketAddr,
    /// The leader Lease, when running only while holding it.
    pub lease: Option<Lease>,
    /// This replica's identity (Lease holder, event reporter, registry committer).
    pub identity: String,
    /// How many objects of one kind are reconciled at once.
    pub concurrency: u16,
    /// Where project files and the source cache live.
    pub workdir: PathBuf,
    /// What a source may hold.
    pub limits: Limits,
    /// The webhook HMAC key; turns on `/hooks/*`.
    pub webhook_secret: Option<Vec<u8>>,
}

/// The leader Lease.
#[derive(Clone, Debug)]
pub struct Lease {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// How long it lasts without renewal.
    pub duration: Duration,
}

/// Runs the operator until a shutdown signal, or until the leader Lease is lost.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let client = client().await?;
    let ns = config.namespace.as_deref();
    watches::check_crds(&client, ns).await?;

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Metrics::register(&mut registry);
    let admin = start_admin(&config, &client, registry, &metrics);
    let admin_task = tokio::spawn(admin::serve(config.admin_addr, admin.clone()));

    let elector = config.lease.as_ref().map(|lease| {
        LeaderElector::new(
            client.clone(),
            &lease.namespace,
            &lease.name,
            &config.identity,
            lease.duration,
        )
    });
    admin.ready.store(true, Ordering::Relaxed);
    if let Some(elector) = &elector {
        tokio::select! {
            () = elector.acquire() => {}
            () = shutdown_signal() => return Ok(()),
        }
    }

    let ctx = context(&config, &client, metrics).await?;
    let controllers = run_controllers(&client, ns, &config, ctx).await;
    tracing::info!(namespace = ns.unwrap_or("*"), identity = %config.identity, "Controller started");
    let lost = async {
        match &elector {
            Some(e) => e.hold().await,
            None => futures::future::pending::<()>().await,
        }
    };
    let result = tokio::select! {
        () = controllers => Ok(()),
        () = lost => Err(anyhow::anyhow!("lost the leader Lease; exiting so a fresh start competes again")),
    };
    if let Some(e) = &elector {
        e.release().await;
    }
    admin_task.abort();
    tracing::info!("Controller stopped");
    result
}

/// A client for `$KUBECONFIG` or the in-cluster config that names itself
/// `switchyard/<version>`: audit logs, API priority and fairness, and field managers of
/// non-apply writes (the Recorder's) see the controller, not an anonymous client.
async fn client() -> anyhow::Result<Client> {
    use hyper::header::{HeaderValue, USER_AGENT};
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the cluster (KUBECONFIG or in-cluster): {e}"))?;
    let agent = concat!("switchyard/", env!("CARGO_PKG_VERSION"));
    config
        .headers
        .push((USER_AGENT, HeaderValue::from_static(agent)));
    Client::try_from(config).map_err(|e| anyhow::anyhow!("cannot build the client: {e}"))
}

/// The admin port's state, with the webhook receiver when a secret is configured.
/// NB: any replica takes webhooks, leader or not: they only annotate projects.
fn start_admin(
    config: &Config,
    client: &Client,
    registry: prometheus_client::registry::Registry,
    metrics: &Metrics,
) -> Arc<Admin> {
    let hooks = config.webhook_secret.clone().map(|secret| {
        tracing::info!("Webhook receiver on /hooks/github, /hooks/gitlab, /hooks/generic");
        webhook::Receiver::new(
            secret,
            client.clone(),
            config.namespace.clone(),
            metrics.clone(),
        ) as Arc<dyn admin::Hooks>
    });
    Arc::new(Admin {
        registry,
        ready: false.into(),
        hooks,
    })
}

/// What every reconcile shares, once the caches of referenced objects are filled.
async fn context(
    config: &Config,
    client: &Client,
    metrics: Metrics,
) -> anyhow::Result<Arc<Context>> {
    let ns = config.namespace.as_deref();
    let watch = kube::runtime::watcher::Config::default();
    let stores = Stores {
        projects: cache(api::<DatabaseProject>(client, ns), watch.clone()),
        configmaps: cache(api::<ConfigMap>(client, ns), watch.clone()),
        environments: cache(api::<Environment>(client, ns), watch.clone()),
        secrets: cache(api::<Secret>(client, ns), watch),
    };
    for ready in [
        stores.projects.wait_until_ready().boxed(),
        stores.configmaps.wait_until_ready().boxed(),
        stores.environments.wait_until_ready().boxed(),
        stores.secrets.wait_until_ready().boxed(),
    ] {
        ready
            .await
            .map_err(|e| anyhow::anyhow!("filling the caches: {e}"))?;
    }
    let reporter = Reporter {
        controller: "switchyard-controller".into(),
        instance: Some(config.identity.clone()),
    };
    let committer = Committer {
        name: "switchyard-controller".into(),
        email: format!("switchyard@{}", config.identity),
    };
    Ok(Arc::new(Context::new(
        client.clone(),
        stores,
        reporter,
        metrics,
        config.workdir.clone(),
        committer,
        config.limits,
    )))
}

/// The three controllers, running together until shutdown.
async fn run_controllers(
    client: &Client,
    ns: Option<&str>,
    config: &Config,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> {
    let limits = kube::runtime::controller::Config::default().concurrency(config.concurrency);
    let projects = watches::projects(client, ns, limits.clone(), ctx.clone()).await;
    let envs = watches::environments(client, ns, limits.clone(), ctx.clone());
    let promotions = watches::promotions(client, ns, limits, ctx);
    async {
        futures::join!(projects, envs, promotions);
    }
}

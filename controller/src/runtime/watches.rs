//! What wakes each reconciler: one kube-runtime controller per kind with the watches of
//! the objects it reads (a project's ConfigMap and Flux GitRepository, an Environment's
//! project and Promotions, a Promotion's Environments), the caches those reads go
//! through, and the start-up checks.

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, CustomResourceExt, Resource, ResourceExt};
use std::sync::Arc;

use crate::api::{DatabaseProject, Environment, Promotion};
use crate::reconcile::{Context, database_project, environment, fetch, promotion};

/// The API of a namespaced kind, in `ns` or in all namespaces.
pub fn api<K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>>(
    client: &Client,
    ns: Option<&str>,
) -> Api<K> {
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Exits with an install hint when a CRD is missing (the controller never installs CRDs).
pub async fn check_crds(client: &Client, ns: Option<&str>) -> anyhow::Result<()> {
    async fn one<K>(api: Api<K>) -> anyhow::Result<()>
    where
        K: Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + CustomResourceExt,
    {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => anyhow::bail!(
                "the CustomResourceDefinition {} is not installed; install the CRDs first: kubectl apply -k config/crd (or switchyard crds | kubectl apply -f -)",
                K::crd_name()
            ),
            Err(e) => Err(anyhow::anyhow!("listing {}: {e}", K::crd_name())),
        }
    }
    one(api::<DatabaseProject>(client, ns)).await?;
    one(api::<Environment>(client, ns)).await?;
    one(api::<Promotion>(client, ns)).await?;
    Ok(())
}

/// DatabaseProject, woken by its ConfigMap and its Flux GitRepository (webhooks annotate
/// the project itself).
pub async fn projects(
    client: &Client,
    ns: Option<&str>,
    limits: ControllerConfig,
    ctx: Arc<Context>,
) -> BoxFuture<'static, ()> {
    let config = watcher::Config::default();
    let projects =
        Controller::new(api::<DatabaseProject>(client, ns), config.clone()).with_config(limits);
    let project_store = projects.store();
    let projects = projects.watches(api::<ConfigMap>(client, ns), config.clone(), {
        let store = project_store.clone();
        move |cm| database_project::projects_reading_configmap(&store.state(), &cm)
    });
    let projects = match flux_api(client, ns).await {
        Some(flux) => {
            projects.watches_with(flux, fetch::flux_git_repository(), config, move |obj| {
                database_project::projects_reading_flux_source(&project_store.state(), &obj)
            })
        }
        None => projects,
    };
    projects
        .graceful_shutdown_on(shutdown_signal())
        .run(
            database_project::reconcile,
            crate::reconcile::error_policy,
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .boxed()
}

/// Environment, woken by its DatabaseProject and by Promotions into it.
pub fn environments(
    client: &Client,
    ns: Option<&str>,
    limits: ControllerConfig,
    ctx: Arc<Context>,
) -> BoxFuture<'static, ()> {
    let config = watcher::Config::default();
    let envs = Controller::new(api::<Environment>(client, ns), config.clone()).with_config(limits);
    let env_store = envs.store();
    envs.watches(
        api::<DatabaseProject>(client, ns),
        config.clone(),
        move |dp| {
            let ns = dp.namespace();
            env_store
                .state()
                .into_iter()
                .filter(|e| e.namespace() == ns && e.spec.project_ref.name == dp.name_any())
                .map(|e| ObjectRef::from_obj(e.as_ref()))
                .collect::<Vec<_>>()
        },
    )
    .watches(api::<Promotion>(client, ns), config, |p| {
        let target = ObjectRef::<Environment>::new(&p.spec.to.environment);
        match p.namespace() {
            Some(ns) => vec![target.within(&ns)],
            None => vec![target],
        }
    })
    .graceful_shutdown_on(shutdown_signal())
    .run(environment::reconcile, crate::reconcile::error_policy, ctx)
    .for_each(|_| futures::future::ready(()))
    .boxed()
}

/// Promotion, woken by both of its Environments and by changes to itself other than its
/// status (see [`promotion_trigger`]).
pub fn promotions(
    client: &Client,
    ns: Option<&str>,
    limits: ControllerConfig,
    ctx: Arc<Context>,
) -> BoxFuture<'static, ()> {
    let config = watcher::Config::default();
    let (promo_reader, promo_writer) = kube::runtime::reflector::store();
    let promo_trigger = kube::runtime::reflector(
        promo_writer,
        watcher(api::<Promotion>(client, ns), config.clone()),
    )
    .default_backoff()
    .touched_objects()
    .predicate_filter(promotion_trigger, Default::default());
    let promotions = Controller::for_stream(promo_trigger, promo_reader).with_config(limits);
    let promo_store = promotions.store();
    promotions
        .watches(api::<Environment>(client, ns), config, move |env| {
            promotion::promotions_for_environment(&promo_store.state(), &env)
        })
        .graceful_shutdown_on(shutdown_signal())
        .run(promotion::reconcile, crate::reconcile::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .boxed()
}

/// The Flux `GitRepository` API, when Flux's CRD is installed (looked for once, at start:
/// install Flux first, or restart the controller after).
async fn flux_api(client: &Client, ns: Option<&str>) -> Option<Api<kube::api::DynamicObject>> {
    let resource = fetch::flux_git_repository();
    let api: Api<kube::api::DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Some(api),
        Err(error) => {
            tracing::info!(%error, "Flux GitRepository not installed; sourceRef projects are read every interval");
            None
        }
    }
}

/// A reflector store fed by a watch that runs for the life of the process.
pub fn cache<K>(api: Api<K>, config: watcher::Config) -> kube::runtime::reflector::Store<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = kube::runtime::reflector(
        writer,
        kube::runtime::watcher(api, config).default_backoff(),
    );
    tokio::spawn(stream.for_each(|event| {
        if let Err(error) = event {
            tracing::debug!(%error, "Cache watch failed; retrying");
        }
        futures::future::ready(())
    }));
    reader
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return futures::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// What wakes a Promotion about itself: its spec (generation), annotations (requestedAt),
/// finalizers (the finalizer helper's first pass) and deletion; never its own status.
/// NB: a Promotion writes its phase while it acts; when each write woke it again, a
/// Blocked promotion re-checked its guards, and woke its Environments, in a hot loop.
fn promotion_trigger(p: &Promotion) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = &p.metadata;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut hasher);
    Some(hasher.finish())
}

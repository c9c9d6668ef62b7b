//! Reviewing and approving: `switchyard plan --db` (what a deploy into a database would
//! do, and the digest an approval names) and `switchyard approve KIND/NAME`, which shows
//! the plan the controller computed and writes its digest into the object's spec.

use std::io::{BufRead, Write};

use clap::Args;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::json;

use super::bluegreen::LayerArgs;
use super::{CliError, exit, target};
use crate::api::review::PlanStatus;
use crate::api::{Environment, Promotion};
use crate::engine::Deployer;
use crate::engine::bluegreen::BlueGreen;
use crate::engine::review::{ReviewInput, ReviewPlan, review};
use crate::project::Project;
use crate::project::objects::Objects;
use crate::registry::Registry;

/// Where `switchyard plan --db` plans a deploy into, and how.
#[derive(Debug, Args)]
pub struct PlanDbArgs {
    /// Also work out what a deploy into this database would do (the changes in order
    /// with their ids and script hashes, workflow actions, blue-green objects added,
    /// changed and removed) and the digest an approval names, as a Promotion's
    /// status.plan shows it.
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// With --db: the registry schema (Sqitch's --registry).
    #[arg(long, default_value = "sqitch", requires = "db")]
    pub registry: String,
    #[command(flatten)]
    pub layer: LayerArgs,
    /// With --db: plan a deploy up to and including this change or @tag.
    #[arg(long, requires = "db")]
    pub to: Option<String>,
    /// With --db: plan as `deploy --allow-rework` would run.
    #[arg(long, requires = "db")]
    pub allow_rework: bool,
    /// With --db: the revision the plan deploys (e.g. the DatabaseProject's
    /// status.revision, `cm:NAME@sha1:…` for a ConfigMap), part of the digest. Default with
    /// --git: the revision read.
    #[arg(long, requires = "db", value_name = "REV")]
    pub revision: Option<String>,
}

/// The plan of a deploy into `--db`: `switchyard plan --db`.
pub async fn plan(
    project: &Project,
    revision: Option<&str>,
    args: &PlanDbArgs,
    json: bool,
) -> Result<u8, CliError> {
    let objects = Objects::load(project)?;
    let target = target::resolve(args.db.as_deref()).map_err(CliError::Target)?;
    let engine =
        Deployer::connect(&target, Registry::new(&args.registry), target::committer()).await?;
    let to = match args.to.as_deref() {
        Some(to) => {
            let index = project
                .plan
                .resolve(to)
                .map_err(|e| CliError::Target(format!("--to {to}: {e}")))?;
            Some(project.plan.changes[index].id.clone())
        }
        None => None,
    };
    let input = ReviewInput {
        project,
        objects: &objects,
        revision: args.revision.as_deref().or(revision),
        to: to.as_deref(),
        allow_rework: args.allow_rework,
    };
    let plan = reviewed(&engine, &args.registry, &args.layer, &input).await?;
    print_plan(&plan, json);
    Ok(exit::OK)
}

/// The plan of `input` in `engine`'s database, as `layer` serves it.
pub async fn reviewed(
    engine: &Deployer,
    registry: &str,
    layer: &LayerArgs,
    input: &ReviewInput<'_>,
) -> Result<ReviewPlan, CliError> {
    let bg = BlueGreen::new(
        engine.client(),
        Registry::new(registry),
        target::committer(),
    )
    .layered(layer.schema_suffix.clone());
    review(engine, &bg, input).await.map_err(|e| match e {
        crate::engine::review::Error::Changes(e) => CliError::Engine(e),
        crate::engine::review::Error::BlueGreen(e) => CliError::Target(e.to_string()),
    })
}

/// Prints a plan: JSON as the controller's `status.plan` full form, or a summary.
pub fn print_plan(plan: &ReviewPlan, json: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(plan).unwrap_or_default());
        return;
    }
    println!("plan {}", plan.digest);
    println!(
        "  {} {} -> database at {}",
        plan.project,
        plan.source_revision.as_deref().unwrap_or("(working tree)"),
        plan.target_revision
            .as_deref()
            .unwrap_or("(no recorded revision)")
    );
    println!(
        "  from: registry head {}, catalog {}",
        plan.from
            .registry_head
            .as_deref()
            .unwrap_or("(nothing deployed)"),
        plan.from.catalog
    );
    if plan.changes.is_empty() {
        println!("changes: none");
    }
    for c in &plan.changes {
        let hash = c
            .script_hash
            .as_deref()
            .map_or("-", |h| &h[..h.len().min(12)]);
        println!(
            "  {:<8} {} {} ({} {hash})",
            c.action,
            c.name,
            &c.id[..c.id.len().min(12)],
            c.file
        );
    }
    for (schema, d) in &plan.schemas {
        for (sign, names) in [('+', &d.added), ('~', &d.changed), ('-', &d.removed)] {
            for name in names {
                println!("  {sign} {schema}.{name}");
            }
        }
    }
}

/// `switchyard approve`.
#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// What to approve: promotion/NAME, or environment/NAME (an autoDeploy Environment
    /// with requireApproval).
    #[arg(value_name = "KIND/NAME")]
    object: String,
    /// The namespace (default: the kubeconfig context's).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Approve only if the plan's digest is this one (what you reviewed).
    #[arg(long, value_name = "sha256:…")]
    digest: Option<String>,
    /// Do not ask.
    #[arg(long, short)]
    yes: bool,
}

/// `approve`: prints the plan in the object's status, asks, and writes its digest into
/// `spec.approvedPlanDigest` with the field manager `switchyard-approve/<user>`, which the
/// controller records as the approver.
pub async fn approve(args: ApproveArgs) -> Result<u8, CliError> {
    let fail = |m: String| CliError::Target(m);
    let (kind, name) = args.object.split_once('/').ok_or_else(|| {
        fail(format!(
            "{}: expected promotion/NAME or environment/NAME",
            args.object
        ))
    })?;
    let resource = match kind.to_ascii_lowercase().as_str() {
        "promotion" | "promotions" | "dbpromo" => ApiResource::erase::<Promotion>(&()),
        "environment" | "environments" | "dbenv" => ApiResource::erase::<Environment>(&()),
        other => {
            return Err(fail(format!(
                "cannot approve a {other}: expected promotion/NAME or environment/NAME"
            )));
        }
    };
    let client = kube::Client::try_default()
        .await
        .map_err(|e| fail(format!("cannot reach the cluster: {e}")))?;
    let ns = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &resource);
    let object = api
        .get(name)
        .await
        .map_err(|e| fail(format!("{kind}/{name} in {ns}: {e}")))?;
    let plan: PlanStatus = object
        .data
        .pointer("/status/plan")
        .cloned()
        .and_then(|p| serde_json::from_value(p).ok())
        .ok_or_else(|| fail(format!("{kind}/{name} has no plan to approve yet (status.plan is empty): the controller computes it when the object waits for approval")))?;
    print_status_plan(&plan);
    if let Some(want) = args.digest.as_deref().filter(|d| *d != plan.digest) {
        return Err(fail(format!(
            "the plan is now {}, not {want}; review it again",
            plan.digest
        )));
    }
    if !args.yes && !confirm(&plan.digest)? {
        eprintln!("not approved");
        return Ok(exit::FAILURE);
    }
    let manager = format!("switchyard-approve/{}", user());
    let patch = json!({ "spec": { "approvedPlanDigest": plan.digest } });
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(manager),
            ..PatchParams::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| fail(format!("writing the approval into {kind}/{name}: {e}")))?;
    println!("approved plan {} for {kind}/{name}", plan.digest);
    Ok(exit::OK)
}

fn print_status_plan(plan: &PlanStatus) {
    println!("plan {}", plan.digest);
    if let Some(revision) = &plan.source_revision {
        println!("  revision {revision}");
    }
    println!("  {} changes", plan.change_count);
    for c in &plan.changes {
        println!(
            "  {:<8} {} {}",
            c.action,
            c.name,
            &c.id[..c.id.len().min(12)]
        );
    }
    for (schema, d) in &plan.schemas {
        for (sign, names) in [('+', &d.added), ('~', &d.changed), ('-', &d.removed)] {
            for name in names {
                println!("  {sign} {schema}.{name}");
            }
        }
    }
    if let Some(cm) = &plan.config_map {
        println!(
            "  (the whole plan: kubectl get configmap {cm} -o jsonpath='{{.data.plan\\.json}}')"
        );
    }
}

/// Asks on the terminal (or reads stdin) whether to approve `digest`.
fn confirm(digest: &str) -> Result<bool, CliError> {
    eprint!("approve plan {digest}? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Target(format!("reading the answer: {e}")))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// Who is approving, as the login knows them.
fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into())
}

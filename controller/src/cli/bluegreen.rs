//! `switchyard stage | promote | rollback | diff`, and the blue/green part of `status`.
//!
//! Parses the blue/green arguments, calls [`BlueGreen`](crate::engine::bluegreen::BlueGreen)
//! and prints its outcome, short or as JSON. Blue/green failures are printed here and
//! mapped to exit codes (a blocked guard exits [`exit::BLOCKED`] naming the guard). Holds
//! no SQL.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::{CliError, DbArgs, exit, target};
use crate::engine::bluegreen::{self, BlueGreen, PromoteOptions, StageOptions, SwapReport};
use crate::engine::drift::{self, Drift};
use crate::engine::{Deployer, Status};
use crate::project::Project;
use crate::project::objects::Objects;
use crate::registry::Registry;

/// `--schema-suffix`: which Environment's layers, in a database several Environments share.
#[derive(Debug, Args, Default, Clone)]
pub struct LayerArgs {
    /// Serve the blue-green schemas as layers <schema><SUFFIX> over physical sets that
    /// never move, as an Environment with this schemaSuffix does when several share one
    /// database (the empty string serves the plain names as layers).
    #[arg(long, value_name = "SUFFIX", value_parser = suffix)]
    pub schema_suffix: Option<String>,
}

/// The rule an Environment's `schemaSuffix` follows (its CRD pattern). NB: without it an
/// over-long suffix staged a set, then failed promote with the database's "identifier
/// too long" (issue #17).
fn suffix(value: &str) -> Result<String, String> {
    let fits = value.len() <= 30
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    match fits {
        true => Ok(value.to_string()),
        false => Err(
            "a schema suffix is at most 30 of a-z, 0-9 and _, as an Environment's schemaSuffix"
                .into(),
        ),
    }
}

/// `switchyard stage`.
#[derive(Debug, Args)]
pub struct StageArgs {
    #[command(flatten)]
    target: DbArgs,
    #[command(flatten)]
    layer: LayerArgs,
    /// Stage this schema even when its objects did not change (repeatable).
    #[arg(long = "redeploy-schema", value_name = "SCHEMA")]
    redeploy_schema: Vec<String>,
    /// Keep the staging schemas when building or verifying fails, for debugging.
    #[arg(long)]
    keep_failed: bool,
    /// Print the SQL it would run, and run nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `switchyard promote`.
#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    target: DbArgs,
    #[command(flatten)]
    layer: LayerArgs,
    /// Promote what the layers with this schema suffix serve, in the same database:
    /// repoint, rebuild nothing (needs --schema-suffix for the target).
    #[arg(long, value_name = "SUFFIX", conflicts_with = "deployment", value_parser = suffix)]
    from_suffix: Option<String>,
    /// The staged deployment to promote (default: the newest verified one).
    #[arg(long)]
    deployment: Option<String>,
    /// Promote only this schema, or the schema of this object (repeatable).
    #[arg(long, value_name = "OBJECT|SCHEMA")]
    select: Vec<String>,
    /// Pull in changed upstream schemas the selection depends on.
    #[arg(long)]
    include_stale_upstreams: bool,
    /// Allow promoting a subset of the staged schemas.
    #[arg(long)]
    allow_partial_promotion: bool,
    /// lock_timeout for the swap transaction, in milliseconds; retried with backoff.
    #[arg(long, default_value_t = 500, value_name = "MS")]
    lock_timeout: u64,
    /// Retained sets to keep per schema for instant rollback.
    #[arg(long, default_value_t = 2, value_name = "N")]
    keep: usize,
    /// Print the SQL it would run, and run nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `switchyard rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    target: DbArgs,
    #[command(flatten)]
    layer: LayerArgs,
    /// Print the SQL it would run, and run nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `switchyard diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    target: DbArgs,
    #[command(flatten)]
    layer: LayerArgs,
    /// Compare with this database instead of the project: what promoting --db into it
    /// would change.
    #[arg(long, value_name = "URL")]
    against: Option<String>,
    /// Accepted for symmetry; diff never changes anything.
    #[arg(long)]
    dry_run: bool,
}

impl StageArgs {
    /// `--json`.
    pub fn json(&self) -> bool {
        self.target.common.json
    }
}
impl PromoteArgs {
    /// `--json`.
    pub fn json(&self) -> bool {
        self.target.common.json
    }
}
impl RollbackArgs {
    /// `--json`.
    pub fn json(&self) -> bool {
        self.target.common.json
    }
}
impl DiffArgs {
    /// `--json`.
    pub fn json(&self) -> bool {
        self.target.common.json
    }
}

async fn connect(args: &DbArgs, db: Option<&str>) -> Result<Deployer, CliError> {
    let target = target::resolve(db.or(args.db.as_deref())).map_err(CliError::Target)?;
    Ok(Deployer::connect(&target, Registry::new(&args.registry), target::committer()).await?)
}

async fn load(args: &DbArgs) -> Result<(Project, Objects), CliError> {
    let (project, objects, _) = load_with_revision(args).await?;
    Ok((project, objects))
}

/// The project, its objects, and the git revision it was read at (`--git`).
async fn load_with_revision(args: &DbArgs) -> Result<(Project, Objects, Option<String>), CliError> {
    let loaded = args.common.load().await?;
    let objects = Objects::load(&loaded.project)?;
    Ok((loaded.project, objects, loaded.revision))
}

fn bg<'c>(engine: &'c Deployer, args: &DbArgs, layer: &LayerArgs) -> BlueGreen<'c> {
    BlueGreen::new(
        engine.client(),
        Registry::new(&args.registry),
        target::committer(),
    )
    .layered(layer.schema_suffix.clone())
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Prints a blue/green failure and returns its exit code.
fn failed(error: &bluegreen::Error, json: bool) -> u8 {
    use bluegreen::Error as E;
    let code = match error {
        E::Blocked { .. } => exit::BLOCKED,
        E::RolledBack { .. } => exit::ROLLED_BACK,
        E::StageFailed { .. } => exit::CHANGE_FAILED,
        E::Project(_)
        | E::NameTooLong(_)
        | E::NoRetained(_)
        | E::NotALayer(_)
        | E::Unservable { .. } => exit::INVALID,
        E::SwapTimeout { .. } => exit::LOCKED,
        E::Db { .. } | E::Registry(_) => exit::FAILURE,
    };
    if json {
        let mut doc = json!({ "error": error.to_string(), "reason": error.reason() });
        match error {
            E::Blocked { blocked } => doc["guard"] = json!(blocked.reason),
            E::StageFailed {
                deployment,
                failure,
                kept,
                verifying,
            } => {
                doc["deployment"] = json!(deployment);
                doc["failure"] = json!(failure);
                doc["kept"] = json!(kept);
                doc["verifying"] = json!(verifying);
            }
            E::RolledBack { restored, failure } => {
                doc["restored"] = json!(restored);
                doc["failure"] = json!(failure);
            }
            _ => {}
        }
        print_json(&doc);
    } else {
        eprintln!("error: {error}");
        if let E::Blocked { blocked } = error {
            eprintln!("blocked: {}", blocked.reason);
        }
    }
    code
}

/// `stage`.
pub async fn stage(args: StageArgs) -> Result<u8, CliError> {
    let (project, objects) = load(&args.target).await?;
    let engine = connect(&args.target, None).await?;
    let options = StageOptions {
        redeploy: args.redeploy_schema.clone(),
        keep_failed: args.keep_failed,
        dry_run: args.dry_run,
        progress: None,
    };
    let json = args.json();
    match bg(&engine, &args.target, &args.layer)
        .stage(&project, &objects, &options)
        .await
    {
        Ok(report) => {
            if json {
                print_json(&serde_json::to_value(&report).unwrap_or_default());
            } else if args.dry_run {
                for statement in &report.sql {
                    println!("{statement};");
                }
            } else if report.up_to_date {
                println!("nothing to stage: every blue-green schema matches its live set");
            } else {
                println!(
                    "staged deployment {} ({} object(s))",
                    report.deployment, report.objects
                );
                for (logical, physical) in &report.schemas {
                    println!("  {logical} -> {physical}");
                }
            }
            Ok(exit::OK)
        }
        Err(error) => Ok(failed(&error, json)),
    }
}

/// `promote`.
pub async fn promote(args: PromoteArgs) -> Result<u8, CliError> {
    let (project, objects, revision) = load_with_revision(&args.target).await?;
    let engine = connect(&args.target, None).await?;
    let options = PromoteOptions {
        deployment: args.deployment.clone(),
        select: args.select.clone(),
        include_stale_upstreams: args.include_stale_upstreams,
        allow_partial: args.allow_partial_promotion,
        lock_timeout: Duration::from_millis(args.lock_timeout),
        keep: args.keep,
        dry_run: args.dry_run,
        ..PromoteOptions::default()
    };
    let json = args.json();
    // A dry run also shows the plan, with the digest a Promotion's approval names.
    let plan = match args.dry_run {
        true => Some(dry_run_plan(&engine, &args, &project, &objects, revision).await?),
        false => None,
    };
    let bg = bg(&engine, &args.target, &args.layer);
    let result = match &args.from_suffix {
        Some(source) => bg.promote_from(&project, &objects, source, &options).await,
        None => bg.promote(&project, &objects, &options).await,
    };
    match (result, plan) {
        (Ok(report), Some(plan)) if json => {
            let mut doc = serde_json::to_value(&report).unwrap_or_default();
            doc["plan"] = json!(plan);
            print_json(&doc);
            Ok(exit::OK)
        }
        (Ok(report), plan) => {
            if let Some(plan) = plan {
                super::review::print_plan(&plan, false);
            }
            swapped("promoted", &report, args.dry_run, json);
            Ok(exit::OK)
        }
        (Err(error), _) => Ok(failed(&error, json)),
    }
}

/// What a Promotion of this project into `--db` would do, and its digest.
async fn dry_run_plan(
    engine: &Deployer,
    args: &PromoteArgs,
    project: &Project,
    objects: &Objects,
    revision: Option<String>,
) -> Result<crate::engine::review::ReviewPlan, CliError> {
    let input = crate::engine::review::ReviewInput {
        project,
        objects,
        revision: revision.as_deref(),
        to: None,
        allow_rework: false,
    };
    super::review::reviewed(engine, &args.target.registry, &args.layer, &input).await
}

/// `rollback`.
pub async fn rollback(args: RollbackArgs) -> Result<u8, CliError> {
    let (project, objects) = load(&args.target).await?;
    let engine = connect(&args.target, None).await?;
    let json = args.json();
    match bg(&engine, &args.target, &args.layer)
        .rollback(&project, &objects, args.dry_run)
        .await
    {
        Ok(report) => {
            swapped("rolled back to", &report, args.dry_run, json);
            Ok(exit::OK)
        }
        Err(error) => Ok(failed(&error, json)),
    }
}

fn swapped(what: &str, report: &SwapReport, dry_run: bool, json: bool) {
    if json {
        print_json(&serde_json::to_value(report).unwrap_or_default());
    } else if dry_run {
        for statement in &report.sql {
            println!("{statement};");
        }
    } else {
        println!(
            "{what} deployment {} (swap {} ms, {} attempt(s))",
            report.deployment, report.swap_ms, report.attempts
        );
        for (logical, retained) in &report.retained {
            println!("  {logical}: previous set kept as {retained}");
        }
        for dropped in &report.dropped {
            println!("  dropped {dropped}");
        }
        for (schema, dependents) in &report.kept_for_dependents {
            println!("  kept {schema}: {} depend on it", dependents.join(", "));
        }
    }
}

/// `diff`: changes to deploy and objects added / changed / removed per schema.
pub async fn diff(args: DiffArgs) -> Result<u8, CliError> {
    let (project, objects) = load(&args.target).await?;
    let source = connect(&args.target, None).await?;
    let json = args.json();
    let result = async {
        match &args.against {
            None => {
                let status = source.status(&project).await?;
                let schemas = bg(&source, &args.target, &args.layer)
                    .diff_project(&project, &objects)
                    .await
                    .map_err(Box::new)?;
                Ok::<_, DiffError>((status.pending, schemas))
            }
            Some(against) => {
                let target = connect(&args.target, Some(against))
                    .await
                    .map_err(|e| DiffError::Cli(Box::new(e)))?;
                let from = source.status(&project).await?;
                let to = target.status(&project).await?;
                let pending: Vec<String> = from
                    .deployed
                    .iter()
                    .filter(|c| !to.deployed.contains(c))
                    .cloned()
                    .collect();
                let src = bg(&source, &args.target, &args.layer)
                    .live_objects(&project)
                    .await
                    .map_err(Box::new)?;
                let dst = bg(&target, &args.target, &args.layer)
                    .live_objects(&project)
                    .await
                    .map_err(Box::new)?;
                let schemas = objects
                    .schemas
                    .iter()
                    .map(|s| {
                        let empty = json!({});
                        (
                            s.clone(),
                            bluegreen::diff_objects(
                                src.get(s).unwrap_or(&empty),
                                dst.get(s).unwrap_or(&empty),
                            ),
                        )
                    })
                    .collect::<BTreeMap<_, _>>();
                Ok((pending, schemas))
            }
        }
    }
    .await;
    let (changes, schemas) = match result {
        Ok(r) => r,
        Err(DiffError::Engine(e)) => return Err(e.into()),
        Err(DiffError::Cli(e)) => return Err(*e),
        Err(DiffError::BlueGreen(e)) => return Ok(failed(&e, json)),
    };
    if json {
        print_json(&json!({ "project": project.name(), "changes": changes, "schemas": schemas }));
    } else {
        println!(
            "changes to deploy: {}",
            if changes.is_empty() {
                "none".to_string()
            } else {
                changes.join(", ")
            }
        );
        for (schema, d) in &schemas {
            println!(
                "{schema}: {} added, {} changed, {} removed",
                d.added.len(),
                d.changed.len(),
                d.removed.len()
            );
            for (sign, names) in [('+', &d.added), ('~', &d.changed), ('-', &d.removed)] {
                for name in names {
                    println!("  {sign} {name}");
                }
            }
        }
    }
    Ok(exit::OK)
}

#[derive(Debug)]
enum DiffError {
    Engine(crate::engine::Error),
    BlueGreen(bluegreen::Error),
    Cli(Box<CliError>),
}

impl From<crate::engine::Error> for DiffError {
    fn from(e: crate::engine::Error) -> Self {
        DiffError::Engine(e)
    }
}

impl From<Box<bluegreen::Error>> for DiffError {
    fn from(e: Box<bluegreen::Error>) -> Self {
        DiffError::BlueGreen(*e)
    }
}

/// `status`: the engine's status plus `live` (logical → physical) and `retained` (previous
/// sets, newest first) when the project has blue-green schemas, and `drift` (issue #16).
pub async fn status(
    project: &Project,
    engine: &Deployer,
    args: &DbArgs,
    layer: &LayerArgs,
    status: &Status,
) -> Result<(), CliError> {
    let sets = match bg(engine, args, layer).sets(project).await {
        Ok(sets) => sets,
        Err(error) => {
            tracing::debug!(%error, "No blue/green state");
            bluegreen::Sets::default()
        }
    };
    let drift = check_drift(project, engine, layer).await;
    if args.common.json {
        let mut doc = serde_json::to_value(status).unwrap_or_default();
        doc["live"] = json!(sets.live);
        doc["retained"] = json!(sets.retained);
        doc["staged"] = json!(sets.staged);
        doc["served"] = json!(sets.served);
        doc["drift"] = json!(drift);
        print_json(&doc);
        return Ok(());
    }
    super::output::status(status, false);
    print_sets(&sets);
    for (_, message) in drift.iter().flat_map(Drift::findings) {
        println!("drift: {message}");
    }
    Ok(())
}

/// The drift check of `status`. It never changes `status`'s outcome: a check that could
/// not run is a warning, and `drift` is `null` in JSON.
async fn check_drift(project: &Project, engine: &Deployer, layer: &LayerArgs) -> Option<Drift> {
    let checked = match Objects::load(project) {
        Ok(objects) => drift::check(engine, project, &objects, layer.schema_suffix.as_deref())
            .await
            .map_err(|e| e.to_string()),
        Err(error) => Err(error.to_string()),
    };
    checked
        .map_err(|error| eprintln!("warning: drift not checked: {error}"))
        .ok()
}

fn print_sets(sets: &bluegreen::Sets) {
    for (logical, physical) in &sets.live {
        let id = sets
            .live_deployments
            .get(logical)
            .map(String::as_str)
            .unwrap_or("?");
        match sets.served.get(logical).filter(|s| *s != logical) {
            Some(layer) => {
                println!("live: {logical} = {physical} served as {layer} (deployment {id})")
            }
            None => println!("live: {logical} = {physical} (deployment {id})"),
        }
    }
    for set in &sets.retained {
        println!(
            "retained: deployment {} ({})",
            set.deployment,
            set.schemas.values().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    for set in &sets.staged {
        println!(
            "staged: deployment {} {} ({})",
            set.deployment,
            set.state,
            set.schemas.values().cloned().collect::<Vec<_>>().join(", ")
        );
    }
}

//! The `switchyard` command line: the same engine as the controller, for people.
//!
//! Parses arguments, resolves the target database, calls the engine and prints its
//! outcome, short for humans or as JSON. Holds no SQL.

mod bluegreen;
mod chart;
mod controller;
mod output;
mod plan;
mod review;
mod source;
mod target;

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::api::conditions::reasons::REWORK_NOT_ALLOWED;
use crate::engine::{self, DeployOptions, Deployer, FailureMode, RevertOptions};
use crate::project::{self, Project};
use crate::registry::Registry;
use source::ProjectArgs;

/// Exit codes, one per outcome. Documented in `--help`.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A failure not covered below (a database error in the engine's own queries, …).
    pub const FAILURE: u8 = 1;
    /// Bad input: invalid arguments, project, plan or script. Nothing was changed.
    pub const INVALID: u8 = 2;
    /// Another deployer holds the project's lock. Nothing was changed.
    pub const LOCKED: u8 = 3;
    /// A change failed while deploying or reverting; the failure mode's reverts ran.
    pub const CHANGE_FAILED: u8 = 4;
    /// Verification failed.
    pub const VERIFY_FAILED: u8 = 5;
    /// The database could not be reached.
    pub const UNREACHABLE: u8 = 6;
    /// A promotion guard blocked; the message names the guard. Nothing was changed.
    pub const BLOCKED: u8 = 7;
    /// Verify failed after a swap; the previous set was swapped back in.
    pub const ROLLED_BACK: u8 = 8;
    /// The revision reworks changes (development workflow files) that this database has
    /// not deployed as planned, and rework is not allowed here. Nothing was changed.
    pub const REWORK_REFUSED: u8 = 9;
}

const EXIT_CODES: &str = "\
Exit status:
  0  success
  1  failure not listed below
  2  invalid arguments, project, plan or script (nothing was changed)
  3  locked by another deployer (nothing was changed)
  4  a change failed while deploying or reverting
  5  verification failed
  6  the database could not be reached
  7  a promotion guard blocked (the message names it; nothing was changed)
  8  verify failed after a swap and the previous set was swapped back
  9  the revision reworks changes this database has not deployed as planned, and
     --allow-rework was not given (the message names the change and the file;
     nothing was changed)

The target database is --db, else $SWITCHYARD_DB, else the libpq variables
(PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE). Sqitch-style db:pg:// URIs work.
The committer is $SWITCHYARD_USER_NAME / $SWITCHYARD_USER_EMAIL, else Sqitch's
$SQITCH_FULLNAME / $SQITCH_EMAIL, else the login name.";

/// Ship SQL database changes: Sqitch-compatible plans, registry and deploy / revert / verify.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the project's plan: changes, ids, tags and dependencies.
    Plan(PlanArgs),
    /// Compare the plan with what a database has deployed.
    Status(StatusArgs),
    /// Deploy pending changes.
    Deploy(DeployArgs),
    /// Revert deployed changes.
    Revert(RevertArgs),
    /// Run the verify scripts of deployed changes.
    Verify(VerifyArgs),
    /// Show the registry's events, newest first.
    Log(DbArgs),
    /// Build changed blue-green schemas into staging copies and verify them.
    Stage(bluegreen::StageArgs),
    /// Swap a verified staging set in (one transaction; verify after, swap back on failure).
    Promote(bluegreen::PromoteArgs),
    /// Swap back to the newest retained set, rebuilding nothing.
    Rollback(bluegreen::RollbackArgs),
    /// Show changes to deploy and blue-green objects added, changed and removed.
    Diff(bluegreen::DiffArgs),
    /// Show the plan a Promotion or Environment waits with, and approve exactly it.
    Approve(review::ApproveArgs),
    /// Run the Kubernetes controller (in-cluster, or from $KUBECONFIG).
    Controller(controller::ControllerArgs),
    /// Print the CustomResourceDefinitions as YAML, or write them into a directory.
    Crds(controller::CrdsArgs),
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    common: ProjectArgs,
    #[command(flatten)]
    db: review::PlanDbArgs,
}

#[derive(Debug, Args)]
struct DbArgs {
    #[command(flatten)]
    common: ProjectArgs,
    /// Target database URL (postgres://user@host:port/db); secrets are never printed.
    #[arg(long, env = "SWITCHYARD_DB", hide_env_values = true)]
    db: Option<String>,
    /// Registry schema (Sqitch's --registry).
    #[arg(long, default_value = "sqitch")]
    registry: String,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    target: DbArgs,
    #[command(flatten)]
    layer: bluegreen::LayerArgs,
    /// Show what a deploy with --allow-rework would do.
    #[arg(long)]
    allow_rework: bool,
}

#[derive(Debug, Args)]
struct DeployArgs {
    #[command(flatten)]
    target: DbArgs,
    /// Act on development workflow files (deploy/C-ignore.sql, -unignore, -cleanup,
    /// -replace), as an Environment with allowRework does. Without it, a revision with such
    /// files for changes this database has not deployed as planned is refused (exit 9).
    #[arg(long)]
    allow_rework: bool,
    /// The project revision being deployed (e.g. main@sha1:…), recorded with the run and
    /// with workflow states. Default with --git: the revision read.
    #[arg(long)]
    revision: Option<String>,
    /// Deploy up to and including this change or @tag.
    #[arg(long)]
    to: Option<String>,
    /// Run each change's verify script before committing it.
    #[arg(long, overrides_with = "no_verify")]
    verify: bool,
    /// Don't verify (the default unless sqitch.conf sets deploy.verify).
    #[arg(long)]
    no_verify: bool,
    /// On failure, revert all of this run's changes, back to the last tag, or just the change.
    #[arg(long, default_value = "all", value_parser = ["all", "tag", "change"])]
    mode: String,
    /// Record changes as deployed without running them, to adopt an existing database.
    #[arg(long)]
    log_only: bool,
    /// Set a script variable, as sqitch --set does.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_variable)]
    set: Vec<(String, String)>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("how_far").required(true).args(["to", "all"]))]
struct RevertArgs {
    #[command(flatten)]
    target: DbArgs,
    /// Revert the changes deployed after this change or @tag.
    #[arg(long)]
    to: Option<String>,
    /// Revert every deployed change. Required to revert everything.
    #[arg(long)]
    all: bool,
    /// Set a script variable.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_variable)]
    set: Vec<(String, String)>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    target: DbArgs,
    /// Set a script variable.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_variable)]
    set: Vec<(String, String)>,
}

fn parse_variable(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

/// Parses arguments, runs the command and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // NB: the controller sets up its own logging and runtime.
    let command = match cli.command {
        Command::Controller(args) => return controller::main(args),
        Command::Crds(args) => return controller::crds(args),
        other => other,
    };
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let json = command.json();
    match runtime.block_on(run(command)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            let code = exit_code(&error);
            output::error(&error, json);
            ExitCode::from(code)
        }
    }
}

impl Command {
    fn json(&self) -> bool {
        match self {
            Command::Plan(a) => a.common.json,
            Command::Status(a) => a.target.common.json,
            Command::Log(a) => a.common.json,
            Command::Deploy(a) => a.target.common.json,
            Command::Revert(a) => a.target.common.json,
            Command::Verify(a) => a.target.common.json,
            Command::Stage(a) => a.json(),
            Command::Promote(a) => a.json(),
            Command::Rollback(a) => a.json(),
            Command::Diff(a) => a.json(),
            Command::Approve(_) => false,
            Command::Controller(_) | Command::Crds(_) => false,
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHYARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The error a command ends with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// From the project reader.
    #[error(transparent)]
    Project(#[from] project::Error),
    /// From the engine.
    #[error(transparent)]
    Engine(#[from] engine::Error),
    /// The target could not be worked out.
    #[error("{0}")]
    Target(String),
    /// Reading the project from git failed.
    #[error(transparent)]
    Source(#[from] crate::source::Error),
}

fn exit_code(error: &CliError) -> u8 {
    use engine::Error as E;
    match error {
        CliError::Project(_) | CliError::Target(_) => exit::INVALID,
        CliError::Source(e) if e.is_terminal() => exit::INVALID,
        CliError::Source(_) => exit::FAILURE,
        CliError::Engine(e) => match e {
            E::Project(_)
            | E::Io { .. }
            | E::Script { .. }
            | E::Target { .. }
            | E::Dependency { .. }
            | E::Diverged { .. } => exit::INVALID,
            E::Refused(refusal) if refusal.reason() == REWORK_NOT_ALLOWED => exit::REWORK_REFUSED,
            E::Refused(_) => exit::INVALID,
            E::Connect { .. } => exit::UNREACHABLE,
            E::Locked { .. } => exit::LOCKED,
            E::ChangeFailed { .. } | E::RevertFailed { .. } => exit::CHANGE_FAILED,
            E::VerifyFailed { .. } => exit::VERIFY_FAILED,
            E::Db { .. } | E::Registry(_) => exit::FAILURE,
        },
    }
}

async fn run(command: Command) -> Result<u8, CliError> {
    match command {
        Command::Plan(args) => {
            let loaded = args.common.load().await?;
            if args.db.db.is_some() {
                let revision = loaded.revision.as_deref();
                return review::plan(&loaded.project, revision, &args.db, args.common.json).await;
            }
            print!("{}", plan::render(&loaded.project, args.common.json));
            Ok(exit::OK)
        }
        Command::Status(args) => {
            let ((project, _), engine) = open(&args.target).await?;
            let status = engine.status_with(&project, args.allow_rework).await?;
            bluegreen::status(&project, &engine, &args.target, &args.layer, &status).await?;
            Ok(exit::OK)
        }
        Command::Log(args) => {
            let ((project, _), engine) = open(&args).await?;
            let events = engine.log(&project).await?;
            let workflow = engine.workflow_log(&project).await?;
            output::log(project.name(), &events, &workflow, args.common.json);
            Ok(exit::OK)
        }
        Command::Deploy(args) => {
            let (project, mut engine) = open(&args.target).await?;
            let revision = project.1;
            let project = project.0;
            let options = DeployOptions {
                to: args.to,
                verify: !args.no_verify && (args.verify || project.default_verify),
                mode: args.mode.parse::<FailureMode>().map_err(CliError::Target)?,
                log_only: args.log_only,
                variables: args.set.into_iter().collect(),
                // An explicit --revision names what is deployed; else the git revision.
                revision: args.revision.or(revision),
                allow_rework: args.allow_rework,
            };
            let json = args.target.common.json;
            let mut progress = output::Progress::new(json);
            let report = engine
                .deploy(&project, &options, &mut |p| progress.show(p))
                .await?;
            output::deploy(&report, json);
            Ok(exit::OK)
        }
        Command::Revert(args) => {
            let ((project, _), mut engine) = open(&args.target).await?;
            let options = RevertOptions {
                to: if args.all { None } else { args.to },
                variables: args.set.into_iter().collect(),
            };
            let json = args.target.common.json;
            let mut progress = output::Progress::new(json);
            let report = engine
                .revert(&project, &options, &mut |p| progress.show(p))
                .await?;
            output::revert(&report, json);
            Ok(exit::OK)
        }
        Command::Verify(args) => {
            let ((project, _), mut engine) = open(&args.target).await?;
            let variables: BTreeMap<String, String> = args.set.into_iter().collect();
            let report = engine.verify(&project, &variables).await?;
            output::verify(&report, args.target.common.json);
            Ok(exit::OK)
        }
        Command::Stage(args) => bluegreen::stage(args).await,
        Command::Promote(args) => bluegreen::promote(args).await,
        Command::Rollback(args) => bluegreen::rollback(args).await,
        Command::Diff(args) => bluegreen::diff(args).await,
        Command::Approve(args) => review::approve(args).await,
        Command::Controller(_) | Command::Crds(_) => Ok(exit::FAILURE),
    }
}

/// The project (and its git revision, with `--git`) and an engine on the target database.
async fn open(args: &DbArgs) -> Result<((Project, Option<String>), Deployer), CliError> {
    let loaded = args.common.load().await?;
    let project = loaded.project;
    // What Sqitch tolerates until it needs it (a missing revert or verify script).
    for warning in &project.warnings {
        eprintln!("warning: {warning}");
    }
    let target = target::resolve(args.db.as_deref()).map_err(CliError::Target)?;
    let engine =
        Deployer::connect(&target, Registry::new(&args.registry), target::committer()).await?;
    Ok(((project, loaded.revision), engine))
}
